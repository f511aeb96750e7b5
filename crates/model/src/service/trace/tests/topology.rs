//! Topology: EndpointSlice hints as the EndpointSlice controller writes them for each
//! `trafficDistribution`, and kube-proxy's fallbacks.

use k8s_openapi::api::discovery::v1::Endpoint;

use crate::service::Origin::{External, Pod};
use crate::service::testutil::*;
use crate::service::{IpFamily, NodeFacts, ServiceState, TopologyMode, compile};

/// A Service with `trafficDistribution` and these endpoints, compiled on `node`.
fn distributed(distribution: &str, endpoints: Vec<Endpoint>, node: &NodeFacts) -> ServiceState {
    let svc = service("ns", "svc", "172.30.0.41", vec![port("p", "TCP", 80)])
        .traffic_distribution(distribution);
    let state = compile(
        &[svc],
        &[slice("ns", "svc", "svc-a", &[("p", "TCP", 80)], endpoints)],
        node,
    );
    assert!(state.warnings.is_empty(), "{:?}", state.warnings);
    state
}

fn to_service() -> crate::service::Packet {
    tcp(Pod, POD, "172.30.0.41", 80)
}

fn mode(state: &ServiceState) -> TopologyMode {
    state.port("ns/svc:p/TCP", IpFamily::V4).unwrap().topology
}

/// Endpoints hinted for zones only (PreferSameZone / PreferClose).
fn zoned() -> Vec<Endpoint> {
    vec![
        ep("10.1.2.3").on("node-a1").zones(&["zone-a"]),
        ep("10.1.2.4").on("node-b1").zones(&["zone-b"]),
        ep("10.1.2.5").on("node-c1").zones(&["zone-c"]),
        ep("10.1.2.6").on("node-a2").zones(&["zone-a"]),
    ]
}

#[test]
fn prefer_same_zone_and_its_alias_prefer_close_keep_the_zone() {
    for distribution in ["PreferSameZone", "PreferClose"] {
        let state = distributed(distribution, zoned(), &node());
        assert_eq!(mode(&state), TopologyMode::PreferSameZone);
        check_flows(
            &state,
            &[(
                distribution,
                to_service(),
                dnat(&["10.1.2.3:80", "10.1.2.6:80"], false),
            )],
        );
    }
}

#[test]
fn prefer_same_node_keeps_the_node() {
    // The controller hints both: forNodes for the node, forZones for older proxies.
    let endpoints = vec![
        ep("10.1.2.3").local().zones(&["zone-a"]).nodes(&[NODE]),
        ep("10.1.2.4")
            .on("node-a2")
            .zones(&["zone-a"])
            .nodes(&["node-a2"]),
        ep("10.1.2.5")
            .on("node-b1")
            .zones(&["zone-b"])
            .nodes(&["node-b1"]),
    ];
    let state = distributed("PreferSameNode", endpoints, &node());
    assert_eq!(mode(&state), TopologyMode::PreferSameNode);
    check_flows(
        &state,
        &[("this node's", to_service(), dnat(&["10.1.2.3:80"], false))],
    );
}

#[test]
fn prefer_same_node_falls_back_to_the_zone_then_the_cluster() {
    // No endpoint on this node: the zone hints decide.
    let endpoints = vec![
        ep("10.1.2.4")
            .on("node-a2")
            .zones(&["zone-a"])
            .nodes(&["node-a2"]),
        ep("10.1.2.5")
            .on("node-b1")
            .zones(&["zone-b"])
            .nodes(&["node-b1"]),
    ];
    let state = distributed("PreferSameNode", endpoints, &node());
    assert_eq!(mode(&state), TopologyMode::PreferSameZone);
    check_flows(
        &state,
        &[("same zone", to_service(), dnat(&["10.1.2.4:80"], false))],
    );

    // One ready endpoint without a node hint: node hints are not trusted, zones are.
    let endpoints = vec![
        ep("10.1.2.3").local().zones(&["zone-a"]).nodes(&[NODE]),
        ep("10.1.2.4").on("node-a2").zones(&["zone-a"]),
        ep("10.1.2.5")
            .on("node-b1")
            .zones(&["zone-b"])
            .nodes(&["node-b1"]),
    ];
    let state = distributed("PreferSameNode", endpoints, &node());
    check_flows(
        &state,
        &[(
            "same zone",
            to_service(),
            dnat(&["10.1.2.3:80", "10.1.2.4:80"], false),
        )],
    );

    // Nothing in this zone either: the whole cluster.
    let endpoints = vec![
        ep("10.1.2.4")
            .on("node-b2")
            .zones(&["zone-b"])
            .nodes(&["node-b2"]),
        ep("10.1.2.5")
            .on("node-b1")
            .zones(&["zone-b"])
            .nodes(&["node-b1"]),
    ];
    let state = distributed("PreferSameNode", endpoints, &node());
    assert_eq!(mode(&state), TopologyMode::None);
    check_flows(
        &state,
        &[(
            "anywhere",
            to_service(),
            dnat(&["10.1.2.4:80", "10.1.2.5:80"], false),
        )],
    );
}

#[test]
fn zone_hints_are_ignored_unless_every_ready_endpoint_has_one_and_one_names_this_zone() {
    let mut endpoints = zoned();
    endpoints[2].hints = None; // one endpoint without a hint
    let state = distributed("PreferSameZone", endpoints, &node());
    assert_eq!(mode(&state), TopologyMode::None);
    check_flows(
        &state,
        &[(
            "missing hint: all",
            to_service(),
            dnat(
                &["10.1.2.3:80", "10.1.2.4:80", "10.1.2.5:80", "10.1.2.6:80"],
                false,
            ),
        )],
    );

    let other_zone = NodeFacts {
        zone: Some("zone-d".to_owned()),
        ..node()
    };
    let state = distributed("PreferSameZone", zoned(), &other_zone);
    assert_eq!(mode(&state), TopologyMode::None);

    let no_zone = NodeFacts {
        zone: None,
        ..node()
    };
    let state = distributed("PreferSameZone", zoned(), &no_zone);
    assert_eq!(mode(&state), TopologyMode::None);
}

#[test]
fn only_ready_endpoints_decide_and_pass_the_zone_filter() {
    // zone-a's endpoints are not ready: zone-a has nothing to prefer, so no filtering.
    let endpoints = vec![
        ep("10.1.2.3").zones(&["zone-a"]).not_ready(),
        ep("10.1.2.4").zones(&["zone-b"]),
        ep("10.1.2.5").zones(&["zone-c"]),
    ];
    let state = distributed("PreferSameZone", endpoints, &node());
    check_flows(
        &state,
        &[(
            "all ready",
            to_service(),
            dnat(&["10.1.2.4:80", "10.1.2.5:80"], false),
        )],
    );

    // An endpoint hinted for several zones serves each of them.
    let endpoints = vec![
        ep("10.1.2.3").zones(&["zone-b", "zone-a"]),
        ep("10.1.2.4").zones(&["zone-b"]),
    ];
    let state = distributed("PreferSameZone", endpoints, &node());
    check_flows(
        &state,
        &[(
            "multi-zone hint",
            to_service(),
            dnat(&["10.1.2.3:80"], false),
        )],
    );
}

#[test]
fn terminating_fallback_ignores_topology() {
    let endpoints = vec![
        ep("10.1.2.3").zones(&["zone-a"]).terminating(),
        ep("10.1.2.4").zones(&["zone-b"]).terminating(),
    ];
    let state = distributed("PreferSameZone", endpoints, &node());
    check_flows(
        &state,
        &[(
            "all terminating",
            to_service(),
            dnat(&["10.1.2.3:80", "10.1.2.4:80"], false),
        )],
    );
}

#[test]
fn local_policies_override_topology() {
    let svc = service(
        "ns",
        "svc",
        "172.30.0.41",
        vec![node_port("p", "TCP", 80, 3001)],
    )
    .type_("NodePort")
    .external_local()
    .traffic_distribution("PreferSameZone");
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns",
            "svc",
            "svc-a",
            &[("p", "TCP", 80)],
            vec![
                ep("10.1.2.3").local().zones(&["zone-b"]),
                ep("10.1.2.4").on("node-a2").zones(&["zone-a"]),
            ],
        )],
    );
    check_flows(
        &state,
        &[
            (
                "external Local: the local one, whatever its hint",
                tcp(External, EXTERNAL_CLIENT, NODE_IP, 3001),
                dnat(&["10.1.2.3:80"], false),
            ),
            (
                "cluster IP: zone-filtered",
                to_service(),
                dnat(&["10.1.2.4:80"], false),
            ),
        ],
    );
}
