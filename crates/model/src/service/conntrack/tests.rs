use super::*;
use crate::service::compile;
use crate::service::testutil::*;

fn entry(dst: &str, port: u16, reply_src: &str) -> ConntrackEntry {
    ConntrackEntry {
        protocol: Protocol::Udp,
        orig_dst: ip(dst),
        orig_dst_port: port,
        reply_src: ip(reply_src),
    }
}

fn dns(endpoints: &[&str]) -> ServiceState {
    let svc = service(
        "kube-system",
        "dns",
        "172.30.0.10",
        vec![
            node_port("dns", "UDP", 53, 30053),
            node_port("tcp", "TCP", 53, 30054),
        ],
    )
    .type_("NodePort")
    .external_ips(&["192.168.99.10"]);
    let eps = endpoints.iter().map(|e| ep(e)).collect();
    compile(
        &[svc],
        &[slice(
            "kube-system",
            "dns",
            "dns-a",
            &[("dns", "UDP", 53), ("tcp", "TCP", 53)],
            eps,
        )],
        &node(),
    )
}

#[test]
fn udp_entries_to_endpoints_that_went_away_are_stale() {
    // The endpoint moved from 10.0.0.1 to 10.0.0.2: flows still DNATed to .1 are stale,
    // on the cluster IP, the external IP and the NodePort alike.
    let state = dns(&["10.0.0.2"]);
    let entries = [
        entry("172.30.0.10", 53, "10.0.0.1"),
        entry("172.30.0.10", 53, "10.0.0.2"),
        entry("192.168.99.10", 53, "10.0.0.1"),
        entry(NODE_IP, 30053, "10.0.0.1"),
        entry(NODE_IP, 30053, "10.0.0.2"),
    ];
    assert_eq!(
        stale_udp_flows(&state, &entries),
        vec![
            StaleFlow::ServiceIp {
                dst: ip("172.30.0.10"),
                port: 53,
                reply_src: ip("10.0.0.1")
            },
            StaleFlow::ServiceIp {
                dst: ip("192.168.99.10"),
                port: 53,
                reply_src: ip("10.0.0.1")
            },
            StaleFlow::NodePort {
                port: 30053,
                reply_src: ip("10.0.0.1")
            },
        ]
    );
}

#[test]
fn a_service_scaled_to_zero_has_all_its_udp_entries_stale() {
    // kubernetes#139628: the reconciler skipped Services with no endpoints.
    let state = dns(&[]);
    let entries = [entry("172.30.0.10", 53, "10.0.0.1")];
    assert_eq!(stale_udp_flows(&state, &entries).len(), 1);
}

#[test]
fn tcp_other_ports_and_other_addresses_are_left_alone() {
    let state = dns(&["10.0.0.2"]);
    let tcp = ConntrackEntry {
        protocol: Protocol::Tcp,
        ..entry("172.30.0.10", 53, "10.0.0.1")
    };
    let entries = [
        tcp,
        entry("172.30.0.10", 5353, "10.0.0.1"), // not a port of the Service
        entry("10.0.0.7", 53, "10.0.0.1"),      // not a Service address
        entry("10.0.0.7", 30053, "10.0.0.1"),   // NodePort number, but not a NodePort address
    ];
    assert_eq!(stale_udp_flows(&state, &entries), vec![]);
}

#[test]
fn terminating_but_serving_endpoints_keep_their_flows() {
    // Policies, topology and termination are ignored: a flow lives as long as its
    // endpoint serves, like a TCP connection would.
    let svc = service("ns", "svc", "172.30.0.20", vec![port("p", "UDP", 53)]).internal_local();
    let state = compile(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "a",
            &[("p", "UDP", 53)],
            vec![ep("10.0.0.1").terminating(), ep("10.0.0.2").on("elsewhere")],
        )],
        &node(),
    );
    let entries = [
        entry("172.30.0.20", 53, "10.0.0.1"),
        entry("172.30.0.20", 53, "10.0.0.2"),
    ];
    assert_eq!(stale_udp_flows(&state, &entries), vec![]);
}
