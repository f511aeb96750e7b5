//! internalTrafficPolicy: Local.

use crate::service::Origin::{External, Pod};
use crate::service::testutil::*;
use crate::service::{Dispatch, IpFamily};

#[test]
fn internal_traffic_policy_local_uses_only_local_endpoints() {
    let svc = service("ns", "svc", "172.30.0.41", vec![port("p", "TCP", 80)]).internal_local();
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.0.1").local(), ep("10.180.2.1").on("node2")],
        )],
    );
    check_flows(
        &state,
        &[(
            "pod to cluster IP: local endpoint only",
            tcp(Pod, POD, "172.30.0.41", 80),
            dnat(&["10.180.0.1:80"], false),
        )],
    );
}

#[test]
fn internal_traffic_policy_local_without_local_endpoints_drops_cluster_ip_traffic() {
    // A NodePort with Cluster external policy still reaches the remote endpoint.
    let svc = service(
        "ns",
        "svc",
        "172.30.0.41",
        vec![node_port("p", "TCP", 80, 3001)],
    )
    .type_("NodePort")
    .internal_local();
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.2.1").on("node2")],
        )],
    );
    let p = state.port("ns/svc:p/TCP", IpFamily::V4).unwrap();
    assert_eq!(p.internal.to, Dispatch::Drop);
    check_flows(
        &state,
        &[
            (
                "pod to cluster IP: dropped, not rejected",
                tcp(Pod, POD, "172.30.0.41", 80),
                Outcome::Drop,
            ),
            (
                "external to NodePort: Cluster policy",
                tcp(External, EXTERNAL_CLIENT, NODE_IP, 3001),
                dnat(&["10.180.2.1:80"], true),
            ),
        ],
    );
}

#[test]
fn both_policies_local() {
    let svc = service(
        "ns",
        "svc",
        "172.30.0.41",
        vec![node_port("p", "TCP", 80, 3001)],
    )
    .type_("NodePort")
    .internal_local()
    .external_local();
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.0.1").local(), ep("10.180.2.1").on("node2")],
        )],
    );
    check_flows(
        &state,
        &[
            (
                "pod to cluster IP: local",
                tcp(Pod, POD, "172.30.0.41", 80),
                dnat(&["10.180.0.1:80"], false),
            ),
            (
                "external to NodePort: local, unmasqueraded",
                tcp(External, EXTERNAL_CLIENT, NODE_IP, 3001),
                dnat(&["10.180.0.1:80"], false),
            ),
            // Pods reaching an external frontend skip both policies (kube-proxy's
            // short-circuit goes to the cluster endpoints).
            (
                "pod to NodePort: all",
                tcp(Pod, POD, NODE_IP, 3001),
                dnat(&["10.180.0.1:80", "10.180.2.1:80"], false),
            ),
        ],
    );
}
