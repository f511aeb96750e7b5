//! NetworkPolicy ports: numbers, named ports (resolved on the destination pod), `endPort`
//! ranges, protocol-only and empty entries, and protocols kept apart.

use serde_json::json;

use super::netpol::X_INGRESS_DENIED;
use super::{ALL_ALLOWED, World, grid, pod_json};
use crate::service::Protocol::{Sctp, Tcp, Udp};

#[test]
fn named_ingress_port_resolves_on_the_destination_pod_with_its_protocol() {
    let w = World::upstream().np(
        "x",
        "named",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]}),
    );
    assert!(w.verdict("10.0.2.1", "10.0.1.1", Udp, 81).is_allowed());
    assert!(!w.verdict("10.0.2.1", "10.0.1.1", Udp, 80).is_allowed());
    assert!(!w.verdict("10.0.2.1", "10.0.1.1", Tcp, 81).is_allowed());
    // The name with the wrong protocol resolves to nothing.
    let w = World::upstream().np(
        "x",
        "named",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-udp"}]}]}),
    );
    assert!(!w.verdict("10.0.2.1", "10.0.1.1", Udp, 81).is_allowed());
    assert!(!w.verdict("10.0.2.1", "10.0.1.1", Tcp, 81).is_allowed());
}

#[test]
fn named_egress_port_resolves_per_destination_pod() {
    // Two destinations give "web" different numbers.
    let mut w = World::upstream().np(
        "x",
        "to-web",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "web"}]}]}),
    );
    w.pods.push(pod_json(
        "y",
        "w1",
        &["10.0.2.10"],
        json!({}),
        &[("web", "TCP", 8080)],
        "192.168.0.1",
    ));
    w.pods.push(pod_json(
        "y",
        "w2",
        &["10.0.2.11"],
        json!({}),
        &[("web", "TCP", 9090)],
        "192.168.0.2",
    ));
    assert!(w.verdict("10.0.1.1", "10.0.2.10", Tcp, 8080).is_allowed());
    assert!(!w.verdict("10.0.1.1", "10.0.2.10", Tcp, 9090).is_allowed());
    assert!(w.verdict("10.0.1.1", "10.0.2.11", Tcp, 9090).is_allowed());
    assert!(!w.verdict("10.0.1.1", "10.0.2.11", Tcp, 8080).is_allowed());
    // A pod without the name gets nothing through.
    assert!(!w.verdict("10.0.1.1", "10.0.2.1", Tcp, 8080).is_allowed());
}

#[test]
fn end_port_allows_the_whole_range() {
    let w = World::upstream().np(
        "x",
        "range",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 82}]}]}),
    );
    for (port, ok) in [(79, false), (80, true), (81, true), (82, true), (83, false)] {
        assert_eq!(
            w.verdict("10.0.2.1", "10.0.1.1", Tcp, port).is_allowed(),
            ok,
            "{port}"
        );
    }
}

#[test]
fn a_protocol_only_entry_allows_every_port_of_that_protocol_only() {
    let w = World::upstream().np(
        "x",
        "udp",
        json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}]}]}),
    );
    assert_eq!(w.table(Udp, 81), grid(ALL_ALLOWED));
    assert_eq!(w.table(Tcp, 81), grid(X_INGRESS_DENIED));
}

#[test]
fn an_empty_port_entry_is_every_tcp_port() {
    // `{}` defaults to protocol TCP (the API's defaulting), with no port: all TCP ports.
    let w = World::upstream().np(
        "x",
        "empty-port",
        json!({"podSelector": {}, "ingress": [{"ports": [{}, {"port": 80, "protocol": "UDP"}]}]}),
    );
    assert!(w.verdict("10.0.2.1", "10.0.1.1", Tcp, 81).is_allowed());
    assert!(w.verdict("10.0.2.1", "10.0.1.1", Tcp, 9999).is_allowed());
    assert!(w.verdict("10.0.2.1", "10.0.1.1", Udp, 80).is_allowed());
    assert!(!w.verdict("10.0.2.1", "10.0.1.1", Udp, 81).is_allowed());
    assert!(!w.verdict("10.0.2.1", "10.0.1.1", Sctp, 80).is_allowed());
}

#[test]
fn missing_or_empty_ports_allow_every_protocol() {
    let w = World::upstream().np(
        "x",
        "any",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}], "ports": []}]}),
    );
    for proto in [Tcp, Udp, Sctp] {
        assert!(w.verdict("10.0.1.2", "10.0.1.1", proto, 1234).is_allowed());
    }
}

#[test]
fn sctp_is_isolated_and_never_treated_as_tcp() {
    let w = World::upstream().np(
        "x",
        "tcp-80",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}),
    );
    assert_eq!(w.table(Tcp, 80), grid(ALL_ALLOWED));
    assert_eq!(w.table(Sctp, 80), grid(X_INGRESS_DENIED));
    let w = World::upstream().np(
        "x",
        "sctp-80",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "SCTP"}]}]}),
    );
    assert_eq!(w.table(Sctp, 80), grid(ALL_ALLOWED));
    assert_eq!(w.table(Tcp, 80), grid(X_INGRESS_DENIED));
}
