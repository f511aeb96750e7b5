//! The answer of a Service's `healthCheckNodePort`, as kube-proxy's service health server
//! (pkg/proxy/healthcheck/service_health.go) gives it: cloud load balancers probe it on
//! every node of a `externalTrafficPolicy: Local` LoadBalancer Service and send traffic only
//! to nodes answering 200.

use super::state::ServiceName;

/// The response headers kube-proxy sets: JSON, no sniffing, and the local endpoint count as
/// a load-balancing weight.
pub fn health_check_headers(local_endpoints: usize) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json".to_owned()),
        ("X-Content-Type-Options", "nosniff".to_owned()),
        (
            "X-Load-Balancing-Endpoint-Weight",
            local_endpoints.to_string(),
        ),
    ]
}

/// The status code and body for a probe of `service`'s health check: 200 when this node has
/// ready local endpoints and the proxy itself is healthy (its last sync succeeded), 503
/// otherwise. The body is byte for byte kube-proxy's (tab-indented JSON, no final newline).
pub fn health_check_response(
    service: &ServiceName,
    local_endpoints: usize,
    proxy_healthy: bool,
) -> (u16, String) {
    let status = if local_endpoints != 0 && proxy_healthy {
        200
    } else {
        503
    };
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {local_endpoints},\n\t\"serviceProxyHealthy\": {proxy_healthy}\n}}",
        json_string(&service.namespace),
        json_string(&service.name),
    );
    (status, body)
}

/// A JSON string literal. (kube-proxy uses Go's `%q`, which is the same for the DNS labels
/// Service names are.)
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests;
