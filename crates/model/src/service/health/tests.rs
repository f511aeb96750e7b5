use super::*;

#[test]
fn healthy_with_local_endpoints_answers_200_like_kube_proxy() {
    let (status, body) = health_check_response(&ServiceName::new("ns", "web"), 2, true);
    assert_eq!(status, 200);
    // kube-proxy's exact bytes: tab-indented, no trailing newline.
    assert_eq!(
        body,
        "{\n\t\"service\": {\n\t\t\"namespace\": \"ns\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["localEndpoints"], 2);
}

#[test]
fn no_local_endpoints_or_an_unhealthy_proxy_answers_503() {
    let name = ServiceName::new("ns", "web");
    assert_eq!(health_check_response(&name, 0, true).0, 503);
    let (status, body) = health_check_response(&name, 3, false);
    assert_eq!(status, 503);
    assert!(body.contains("\"serviceProxyHealthy\": false"));
}

#[test]
fn headers_carry_the_endpoint_count_as_weight() {
    let headers = health_check_headers(4);
    assert!(headers.contains(&("X-Load-Balancing-Endpoint-Weight", "4".to_owned())));
    assert!(headers.contains(&("Content-Type", "application/json".to_owned())));
}
