//! NodePort, externalIPs and load-balancer IPs; externalTrafficPolicy; source ranges.

use crate::service::Origin::{External, Node, Pod};
use crate::service::testutil::*;
use crate::service::{HealthCheck, IpFamily, NodeFacts, compile};

fn node_port_service() -> (
    k8s_openapi::api::core::v1::Service,
    k8s_openapi::api::discovery::v1::EndpointSlice,
) {
    (
        service(
            "ns1",
            "svc1",
            "172.30.0.41",
            vec![node_port("p80", "TCP", 80, 3001)],
        )
        .type_("NodePort"),
        slice(
            "ns1",
            "svc1",
            "svc1-a",
            &[("p80", "TCP", 80)],
            vec![ep("10.180.0.1"), ep("10.180.2.1").local()],
        ),
    )
}

#[test]
fn node_ports_answer_on_the_node_port_addresses_only() {
    let (svc, eps) = node_port_service();
    let state = compile_clean(&[svc], &[eps]);
    let all = ["10.180.0.1:80", "10.180.2.1:80"];
    check_flows(
        &state,
        &[
            (
                "pod to cluster IP",
                tcp(Pod, POD, "172.30.0.41", 80),
                dnat(&all, false),
            ),
            (
                "external to NodePort",
                tcp(External, EXTERNAL_CLIENT, NODE_IP, 3001),
                dnat(&all, true),
            ),
            (
                "node to its own NodePort",
                tcp(Node, NODE_IP, NODE_IP, 3001),
                dnat(&all, true),
            ),
            (
                "pod to NodePort",
                tcp(Pod, POD, NODE_IP, 3001),
                dnat(&all, true),
            ),
            (
                "another node IP ignores NodePorts",
                tcp(External, EXTERNAL_CLIENT, NODE_IP_ALT, 3001),
                Outcome::Pass,
            ),
            (
                "loopback ignores NodePorts",
                tcp(Node, "127.0.0.1", "127.0.0.1", 3001),
                Outcome::Pass,
            ),
            (
                "UDP on a TCP NodePort",
                udp(External, EXTERNAL_CLIENT, NODE_IP, 3001),
                Outcome::Pass,
            ),
        ],
    );

    // nodePortAddresses covering both addresses (loopback refused).
    let node = NodeFacts {
        node_ips: vec![ip(NODE_IP), ip(NODE_IP_ALT), ip("127.0.0.1")],
        ..node()
    };
    let (svc, eps) = node_port_service();
    let state = compile(&[svc], &[eps], &node);
    assert_eq!(state.warnings.len(), 1, "{:?}", state.warnings);
    check_flows(
        &state,
        &[(
            "external to NodePort on the second address",
            tcp(External, EXTERNAL_CLIENT, NODE_IP_ALT, 3001),
            dnat(&all, true),
        )],
    );
}

fn load_balancer(policy_local: bool) -> crate::service::ServiceState {
    let mut svc = service(
        "ns1",
        "svc1",
        "172.30.0.41",
        vec![node_port("p80", "TCP", 80, 3001)],
    )
    .type_("LoadBalancer")
    .external_ips(&["192.168.99.11"])
    .lb_ingress(&["1.2.3.4"])
    .health_check_node_port(30000);
    if policy_local {
        svc = svc.external_local();
    }
    compile_clean(
        &[svc],
        &[slice(
            "ns1",
            "svc1",
            "svc1-a",
            &[("p80", "TCP", 80)],
            vec![ep("10.180.0.1"), ep("10.180.2.1").local()],
        )],
    )
}

#[test]
fn external_traffic_policy_local_keeps_the_source_and_uses_local_endpoints() {
    let state = load_balancer(true);
    let all = ["10.180.0.1:80", "10.180.2.1:80"];
    let local = ["10.180.2.1:80"];
    check_flows(
        &state,
        &[
            (
                "pod to cluster IP: all endpoints",
                tcp(Pod, POD, "172.30.0.41", 80),
                dnat(&all, false),
            ),
            (
                "pod to external IP: short-circuit to all",
                tcp(Pod, POD, "192.168.99.11", 80),
                dnat(&all, false),
            ),
            (
                "external to external IP: local only",
                tcp(External, EXTERNAL_CLIENT, "192.168.99.11", 80),
                dnat(&local, false),
            ),
            (
                "pod to LB IP: short-circuit to all",
                tcp(Pod, POD, "1.2.3.4", 80),
                dnat(&all, false),
            ),
            (
                "external to LB IP: local only",
                tcp(External, EXTERNAL_CLIENT, "1.2.3.4", 80),
                dnat(&local, false),
            ),
            (
                "pod to NodePort: short-circuit to all",
                tcp(Pod, POD, NODE_IP, 3001),
                dnat(&all, false),
            ),
            (
                "external to NodePort: local only",
                tcp(External, EXTERNAL_CLIENT, NODE_IP, 3001),
                dnat(&local, false),
            ),
            (
                "node to NodePort: all, masqueraded",
                tcp(Node, NODE_IP, NODE_IP, 3001),
                dnat(&all, true),
            ),
            (
                "node to LB IP: all, masqueraded",
                tcp(Node, NODE_IP, "1.2.3.4", 80),
                dnat(&all, true),
            ),
        ],
    );
    let entry = &state.services[0];
    assert_eq!(
        entry.health_check,
        Some(HealthCheck {
            node_port: 30000,
            local_endpoints: 1
        })
    );
}

#[test]
fn external_traffic_policy_cluster_masquerades_all_external_traffic() {
    let state = load_balancer(false);
    let all = ["10.180.0.1:80", "10.180.2.1:80"];
    check_flows(
        &state,
        &[
            (
                "pod to cluster IP: unmasqueraded",
                tcp(Pod, POD, "172.30.0.41", 80),
                dnat(&all, false),
            ),
            (
                "pod to external IP",
                tcp(Pod, POD, "192.168.99.11", 80),
                dnat(&all, true),
            ),
            (
                "external to external IP",
                tcp(External, EXTERNAL_CLIENT, "192.168.99.11", 80),
                dnat(&all, true),
            ),
            (
                "pod to LB IP",
                tcp(Pod, POD, "1.2.3.4", 80),
                dnat(&all, true),
            ),
            (
                "external to LB IP",
                tcp(External, EXTERNAL_CLIENT, "1.2.3.4", 80),
                dnat(&all, true),
            ),
            (
                "pod to NodePort",
                tcp(Pod, POD, NODE_IP, 3001),
                dnat(&all, true),
            ),
            (
                "external to NodePort",
                tcp(External, EXTERNAL_CLIENT, NODE_IP, 3001),
                dnat(&all, true),
            ),
        ],
    );
    // Only Local LoadBalancer Services have a health check.
    assert_eq!(state.services[0].health_check, None);
}

#[test]
fn external_traffic_policy_local_without_local_endpoints_drops_external_traffic() {
    let svc = service(
        "ns1",
        "svc1",
        "172.30.0.41",
        vec![node_port("p80", "TCP", 80, 3001)],
    )
    .type_("LoadBalancer")
    .external_local()
    .external_ips(&["192.168.99.11"])
    .lb_ingress(&["1.2.3.4"])
    .health_check_node_port(30000);
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns1",
            "svc1",
            "svc1-a",
            &[("p80", "TCP", 80)],
            vec![ep("10.180.0.1").on("node2")],
        )],
    );
    let remote = ["10.180.0.1:80"];
    check_flows(
        &state,
        &[
            (
                "external to external IP: dropped",
                tcp(External, EXTERNAL_CLIENT, "192.168.99.11", 80),
                Outcome::Drop,
            ),
            (
                "external to LB IP: dropped",
                tcp(External, EXTERNAL_CLIENT, "1.2.3.4", 80),
                Outcome::Drop,
            ),
            (
                "external to NodePort: dropped",
                tcp(External, EXTERNAL_CLIENT, NODE_IP, 3001),
                Outcome::Drop,
            ),
            (
                "pod to LB IP: still served",
                tcp(Pod, POD, "1.2.3.4", 80),
                dnat(&remote, false),
            ),
            (
                "node to NodePort: still served",
                tcp(Node, NODE_IP, NODE_IP, 3001),
                dnat(&remote, true),
            ),
            (
                "pod to cluster IP: served",
                tcp(Pod, POD, "172.30.0.41", 80),
                dnat(&remote, false),
            ),
        ],
    );
    assert_eq!(
        state.services[0].health_check.map(|h| h.local_endpoints),
        Some(0)
    );
}

#[test]
fn external_traffic_policy_is_ignored_on_cluster_ip_services() {
    // externalIPs on a ClusterIP Service: eTP Local only applies to NodePort/LoadBalancer.
    let svc = service("ns", "svc", "172.30.0.41", vec![port("p", "TCP", 80)])
        .external_ips(&["192.168.99.11"])
        .external_local();
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.0.1").on("node2")],
        )],
    );
    check_flows(
        &state,
        &[(
            "external to external IP: Cluster policy",
            tcp(External, EXTERNAL_CLIENT, "192.168.99.11", 80),
            dnat(&["10.180.0.1:80"], true),
        )],
    );
}

#[test]
fn load_balancer_source_ranges_filter_load_balancer_ips_not_node_ports() {
    let svc = service(
        "ns1",
        "svc1",
        "172.30.0.41",
        vec![node_port("p80", "TCP", 80, 3001)],
    )
    .type_("LoadBalancer")
    .lb_ingress(&["1.2.3.4", "5.6.7.8"])
    // Whitespace is let through by the API and trimmed by kube-proxy.
    .source_ranges(&["192.168.0.0/24", " 203.0.113.0/25"]);
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns1",
            "svc1",
            "svc1-a",
            &[("p80", "TCP", 80)],
            vec![ep("10.180.0.1")],
        )],
    );
    let ep = ["10.180.0.1:80"];
    check_flows(
        &state,
        &[
            (
                "pod to cluster IP",
                tcp(Pod, POD, "172.30.0.41", 80),
                dnat(&ep, false),
            ),
            (
                "external to NodePort",
                tcp(External, EXTERNAL_CLIENT, NODE_IP, 3001),
                dnat(&ep, true),
            ),
            (
                "NodePort bypasses the source ranges",
                tcp(External, BLOCKED_CLIENT, NODE_IP, 3001),
                dnat(&ep, true),
            ),
            (
                "allowed client to LB1",
                tcp(External, EXTERNAL_CLIENT, "1.2.3.4", 80),
                dnat(&ep, true),
            ),
            (
                "allowed client to LB2",
                tcp(External, EXTERNAL_CLIENT, "5.6.7.8", 80),
                dnat(&ep, true),
            ),
            (
                "blocked client to LB1",
                tcp(External, BLOCKED_CLIENT, "1.2.3.4", 80),
                Outcome::Drop,
            ),
            (
                "blocked client to LB2",
                tcp(External, BLOCKED_CLIENT, "5.6.7.8", 80),
                Outcome::Drop,
            ),
            (
                "pod to LB1, not in the ranges",
                tcp(Pod, POD, "1.2.3.4", 80),
                Outcome::Drop,
            ),
            (
                "node to LB1, in the ranges",
                tcp(Node, NODE_IP, "1.2.3.4", 80),
                dnat(&ep, true),
            ),
            // The node's address is in a range, so the VIP itself is allowed as a source
            // (a node reaching its own VIP comes from the VIP).
            (
                "node to LB1 from the VIP",
                tcp(Node, "1.2.3.4", "1.2.3.4", 80),
                dnat(&ep, true),
            ),
        ],
    );
}

#[test]
fn proxy_mode_load_balancer_ips_are_not_captured() {
    let mut svc = service("ns", "svc", "172.30.0.41", vec![port("p", "TCP", 80)])
        .type_("LoadBalancer")
        .lb_ingress(&["1.2.3.4", "5.6.7.8"]);
    if let Some(ingress) = svc
        .status
        .as_mut()
        .and_then(|s| s.load_balancer.as_mut())
        .and_then(|l| l.ingress.as_mut())
    {
        ingress[1].ip_mode = Some("Proxy".to_owned());
    }
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.0.1")],
        )],
    );
    let p = state.port("ns/svc:p/TCP", IpFamily::V4).unwrap();
    assert_eq!(p.load_balancer_ips, vec![ip("1.2.3.4")]);
    check_flows(
        &state,
        &[
            (
                "VIP mode",
                tcp(External, EXTERNAL_CLIENT, "1.2.3.4", 80),
                dnat(&["10.180.0.1:80"], true),
            ),
            (
                "Proxy mode",
                tcp(External, EXTERNAL_CLIENT, "5.6.7.8", 80),
                Outcome::Pass,
            ),
        ],
    );
}
