//! Endpoint conditions: ready endpoints serve; with none ready, serving-terminating ones do.

use crate::service::Origin::{External, Pod};
use crate::service::testutil::*;
use crate::service::{IpFamily, compile};

#[test]
fn only_ready_endpoints_serve() {
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
            vec![
                ep("10.180.0.1"),
                ep("10.180.0.2").not_ready(),
                ep("10.180.0.3").terminating(),
                ep("10.180.0.4").conditions(true, true, false),
            ],
        )],
    );
    check_flows(
        &state,
        &[(
            "ready ones only",
            tcp(Pod, POD, "172.30.0.41", 80),
            dnat(&["10.180.0.1:80", "10.180.0.4:80"], false),
        )],
    );
}

#[test]
fn serving_terminating_endpoints_serve_when_none_is_ready() {
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
            vec![
                ep("10.180.0.1").not_ready(),
                ep("10.180.0.2").terminating(),
                // Terminating and no longer serving: never.
                ep("10.180.0.3").conditions(false, false, true),
            ],
        )],
    );
    check_flows(
        &state,
        &[(
            "terminating fallback",
            tcp(Pod, POD, "172.30.0.41", 80),
            dnat(&["10.180.0.2:80"], false),
        )],
    );
}

#[test]
fn local_and_cluster_sets_fall_back_independently() {
    // kube-proxy's "iTP: Cluster, eTP: Local, with terminating endpoints": the cluster set
    // has a ready remote endpoint; this node has only a terminating one, which the Local set
    // uses.
    let svc = service(
        "ns",
        "svc",
        "172.30.0.41",
        vec![node_port("p", "TCP", 80, 3001)],
    )
    .type_("NodePort")
    .external_local();
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "TCP", 80)],
            vec![
                ep("10.0.0.10").on("node2"),
                ep("10.0.0.11").local().conditions(false, false, false),
                ep("10.0.0.12").local().terminating(),
                ep("10.0.0.13").on("node2").terminating(),
            ],
        )],
    );
    check_flows(
        &state,
        &[
            (
                "cluster IP: the ready one",
                tcp(Pod, POD, "172.30.0.41", 80),
                dnat(&["10.0.0.10:80"], false),
            ),
            (
                "external: the local terminating one",
                tcp(External, EXTERNAL_CLIENT, NODE_IP, 3001),
                dnat(&["10.0.0.12:80"], false),
            ),
        ],
    );
}

#[test]
fn health_check_counts_ready_local_endpoints_by_address() {
    let svc = service(
        "ns",
        "svc",
        "172.30.0.41",
        vec![
            node_port("a", "TCP", 80, 3001),
            node_port("b", "TCP", 443, 3002),
        ],
    )
    .type_("LoadBalancer")
    .external_local()
    .health_check_node_port(30000);
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("a", "TCP", 80), ("b", "TCP", 443)],
            vec![
                ep("10.180.0.1").local(),
                ep("10.180.0.2").local(),
                ep("10.180.0.3").local().terminating(),
                ep("10.180.0.4").on("node2"),
            ],
        )],
    );
    // Two ports, two ready local pods: 2 (not 4); the terminating one does not count.
    assert_eq!(
        state.services[0].health_check.map(|h| h.local_endpoints),
        Some(2)
    );
}

#[test]
fn a_duplicated_endpoint_keeps_its_non_terminating_copy() {
    // An endpoint moving between slices, or a new pod reusing a terminating pod's IP.
    let state = compile_clean(
        &[service(
            "ns",
            "svc",
            "172.30.0.41",
            vec![port("p", "TCP", 80)],
        )],
        &[
            slice(
                "ns",
                "svc",
                "svc-a",
                &[("p", "TCP", 80)],
                vec![ep("10.180.0.1").terminating()],
            ),
            slice(
                "ns",
                "svc",
                "svc-b",
                &[("p", "TCP", 80)],
                vec![ep("10.180.0.1"), ep("10.180.0.2").not_ready()],
            ),
        ],
    );
    let p = state.port("ns/svc:p/TCP", IpFamily::V4).unwrap();
    assert_eq!(p.cluster_endpoints.len(), 1);
    check_flows(
        &state,
        &[(
            "the ready copy counts",
            tcp(Pod, POD, "172.30.0.41", 80),
            dnat(&["10.180.0.1:80"], false),
        )],
    );
}

#[test]
fn unset_conditions_mean_ready() {
    let mut endpoint = ep("10.180.0.1");
    endpoint.conditions = Some(k8s_openapi::api::discovery::v1::EndpointConditions::default());
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
            vec![endpoint],
        )],
        &node(),
    );
    check_flows(
        &state,
        &[(
            "ready by default",
            tcp(Pod, POD, "172.30.0.41", 80),
            dnat(&["10.180.0.1:80"], false),
        )],
    );
}
