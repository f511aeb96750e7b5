//! ClusterIP dispatch: ports, protocols, named target ports, masquerade and hairpin.

use crate::service::Origin::{External, Node, Pod};
use crate::service::testutil::*;
use crate::service::{IpFamily, NodeFacts, ServiceState, compile};

fn two_services() -> ServiceState {
    compile_clean(
        &[
            service("ns1", "svc1", "172.30.0.41", vec![port("http", "TCP", 80)]),
            service(
                "ns2",
                "svc2",
                "172.30.0.42",
                vec![
                    port("http", "TCP", 80),
                    port("https", "TCP", 443),
                    port("dns-udp", "UDP", 53),
                    port("dns-tcp", "TCP", 53),
                    port("dns-sctp", "SCTP", 53),
                ],
            ),
        ],
        &[
            slice(
                "ns1",
                "svc1",
                "svc1-a",
                &[("http", "TCP", 80)],
                vec![ep("10.180.0.1").local()],
            ),
            slice(
                "ns2",
                "svc2",
                "svc2-a",
                &[
                    ("http", "TCP", 80),
                    ("https", "TCP", 8443),
                    ("dns-udp", "UDP", 53),
                    ("dns-tcp", "TCP", 5353),
                    ("dns-sctp", "SCTP", 53),
                ],
                vec![ep("10.180.0.1").local(), ep("10.180.2.1").on("node2")],
            ),
        ],
    )
}

#[test]
fn cluster_ip_dnats_by_address_protocol_and_port() {
    let both = |port: u16| {
        let a = format!("10.180.0.1:{port}");
        let b = format!("10.180.2.1:{port}");
        dnat(&[&a, &b], false)
    };
    check_flows(
        &two_services(),
        &[
            (
                "simple clusterIP",
                tcp(Pod, "10.180.0.2", "172.30.0.41", 80),
                dnat(&["10.180.0.1:80"], false),
            ),
            (
                "several endpoints",
                tcp(Pod, "10.180.0.2", "172.30.0.42", 80),
                both(80),
            ),
            (
                "port to a different target port",
                tcp(Pod, "10.180.0.2", "172.30.0.42", 443),
                both(8443),
            ),
            (
                "TCP on port 53",
                tcp(Pod, "10.180.0.2", "172.30.0.42", 53),
                both(5353),
            ),
            (
                "UDP on port 53",
                udp(Pod, "10.180.0.2", "172.30.0.42", 53),
                both(53),
            ),
            (
                "SCTP on port 53",
                packet(
                    crate::service::Protocol::Sctp,
                    Pod,
                    "10.180.0.2",
                    "172.30.0.42",
                    53,
                ),
                both(53),
            ),
            (
                "UDP to a TCP-only port is rejected",
                udp(Pod, "10.180.0.2", "172.30.0.42", 80),
                Outcome::Reject,
            ),
            (
                "svc1 does not take svc2's ports",
                tcp(Pod, "10.180.0.2", "172.30.0.41", 443),
                Outcome::Reject,
            ),
            (
                "unallocated cluster IP is dropped",
                tcp(Pod, "10.180.0.2", "172.30.0.50", 80),
                Outcome::Drop,
            ),
            (
                "not a service address",
                tcp(Pod, "10.180.0.2", "8.8.8.8", 53),
                Outcome::Pass,
            ),
        ],
    );
}

#[test]
fn named_target_port_resolves_per_endpoint_by_slice_port_name() {
    // Two pods whose container port named "web" has different numbers: the EndpointSlice
    // controller puts them in two slices, each with its own number for port "http".
    let svc = service("ns", "web", "172.30.0.10", vec![port("http", "TCP", 80)]).spec(|s| {
        if let Some(p) = s.ports.as_mut().and_then(|p| p.first_mut()) {
            p.target_port = Some(
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("web".to_owned()),
            );
        }
    });
    let state = compile_clean(
        &[svc],
        &[
            slice(
                "ns",
                "web",
                "web-1",
                &[("http", "TCP", 8080)],
                vec![ep("10.180.0.1")],
            ),
            slice(
                "ns",
                "web",
                "web-2",
                &[("http", "TCP", 9090)],
                vec![ep("10.180.0.2")],
            ),
            // A port of another name carries nothing for "http".
            slice(
                "ns",
                "web",
                "web-3",
                &[("metrics", "TCP", 9100)],
                vec![ep("10.180.0.3")],
            ),
        ],
    );
    check_flows(
        &state,
        &[(
            "each endpoint on its own number",
            tcp(Pod, POD, "172.30.0.10", 80),
            dnat(&["10.180.0.1:8080", "10.180.0.2:9090"], false),
        )],
    );
}

#[test]
fn selectorless_service_uses_hand_made_slices() {
    // No selector: the slice is written by hand (here: an address outside the cluster).
    let state = compile_clean(
        &[service(
            "ns",
            "db",
            "172.30.0.20",
            vec![port("", "TCP", 5432)],
        )],
        &[slice(
            "ns",
            "db",
            "db-manual",
            &[("", "TCP", 5432)],
            vec![ep("192.168.50.7")],
        )],
    );
    check_flows(
        &state,
        &[(
            "to the hand-made endpoint",
            tcp(Pod, POD, "172.30.0.20", 5432),
            dnat(&["192.168.50.7:5432"], false),
        )],
    );
}

#[test]
fn masquerade_for_off_cluster_sources_and_hairpin_only() {
    let state = compile_clean(
        &[service(
            "ns",
            "svc",
            "172.30.0.41",
            vec![port("p", "TCP", 80)],
        )],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.0.1").local(), ep("10.180.2.1").on("node2")],
        )],
    );
    let all = ["10.180.0.1:80", "10.180.2.1:80"];
    check_flows(
        &state,
        &[
            (
                "pod to ClusterIP is not masqueraded",
                tcp(Pod, POD, "172.30.0.41", 80),
                dnat(&all, false),
            ),
            (
                "pod on another node, routed here, is not masqueraded",
                tcp(External, "10.1.2.3", "172.30.0.41", 80),
                dnat(&all, false),
            ),
            (
                "off-cluster source is masqueraded",
                tcp(External, EXTERNAL_CLIENT, "172.30.0.41", 80),
                dnat(&all, true),
            ),
            (
                "the node itself is masqueraded",
                tcp(Node, NODE_IP, "172.30.0.41", 80),
                dnat(&all, true),
            ),
            (
                "hairpin: a pod reaching itself is masqueraded, on that endpoint only",
                tcp(Pod, "10.180.0.1", "172.30.0.41", 80),
                dnat_each(&[("10.180.0.1:80", true), ("10.180.2.1:80", false)]),
            ),
        ],
    );
}

#[test]
fn without_cluster_cidrs_off_cluster_sources_are_not_masqueraded() {
    // kube-proxy with no local-traffic detector cannot tell, and does not masquerade.
    let node = NodeFacts {
        cluster_cidrs: vec![],
        ..node()
    };
    let state = compile(
        &[service(
            "ns",
            "svc",
            "172.30.0.41",
            vec![port("p", "TCP", 80)],
        )],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.0.1")],
        )],
        &node,
    );
    let p = state.port("ns/svc:p/TCP", IpFamily::V4).unwrap();
    assert!(!p.internal.masquerade_off_cluster);
    check_flows(
        &state,
        &[
            (
                "off-cluster source",
                tcp(External, EXTERNAL_CLIENT, "172.30.0.41", 80),
                dnat(&["10.180.0.1:80"], false),
            ),
            (
                "hairpin still masquerades",
                tcp(Pod, "10.180.0.1", "172.30.0.41", 80),
                dnat(&["10.180.0.1:80"], true),
            ),
        ],
    );
}
