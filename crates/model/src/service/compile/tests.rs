//! compile: bad objects are reported and skipped (never a panic, never a broken script),
//! conflicts are settled by name, and the result does not depend on input order.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;

use super::*;
use crate::service::testutil::generate::{cluster, objects};
use crate::service::testutil::ruleset::Ruleset;
use crate::service::testutil::*;
use crate::service::{CompileWarning, render_full};

fn problems(state: &ServiceState) -> Vec<String> {
    state.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn bad_services_are_reported_and_the_good_parts_kept() {
    let good = || service("ns", "ok", "172.30.0.1", vec![port("p", "TCP", 80)]);
    let cases: Vec<(Service, &str)> = vec![
        (
            service("NS", "svc", "172.30.0.2", vec![]),
            "metadata.namespace \"NS\" is not a DNS label",
        ),
        (
            service("ns", "a\"b", "172.30.0.2", vec![]),
            "metadata.name \"a\\\"b\" is not a DNS label",
        ),
        (
            service("ns", "svc", "not-an-ip", vec![port("p", "TCP", 80)]),
            "spec.clusterIPs entry \"not-an-ip\" is not an IP address",
        ),
        (
            service(
                "ns",
                "svc",
                "172.30.0.2",
                vec![port("p } ; flush ruleset", "TCP", 80)],
            ),
            "spec.ports[0].name \"p } ; flush ruleset\" is not a DNS label",
        ),
        (
            service("ns", "svc", "172.30.0.2", vec![port("p", "ICMP", 80)]),
            "spec.ports[0].protocol \"ICMP\" is not TCP, UDP or SCTP",
        ),
        (
            service("ns", "svc", "172.30.0.2", vec![port("p", "TCP", 70000)]),
            "spec.ports[0].port 70000 is not in 1-65535",
        ),
        (
            service(
                "ns",
                "svc",
                "172.30.0.2",
                vec![port("p", "TCP", 80), port("p", "TCP", 81)],
            ),
            "spec.ports[1] repeats the name \"p\" for TCP",
        ),
        (
            service(
                "ns",
                "svc",
                "172.30.0.2",
                vec![node_port("p", "TCP", 80, 30000)],
            ),
            "spec.ports[0].nodePort 30000 on a ClusterIP Service",
        ),
        (
            service("ns", "svc", "172.30.0.2", vec![port("p", "TCP", 80)]).external_ips(&["1.2.3"]),
            "spec.externalIPs entry \"1.2.3\" is not an IP address",
        ),
        (
            service("ns", "svc", "172.30.0.2", vec![port("p", "TCP", 80)])
                .type_("LoadBalancer")
                .lb_ingress(&["lb!"]),
            "status.loadBalancer.ingress ip \"lb!\" is not an IP address",
        ),
        (
            service("ns", "svc", "172.30.0.2", vec![port("p", "TCP", 80)])
                .source_ranges(&["10.0.0.0/33"]),
            "spec.loadBalancerSourceRanges entry \"10.0.0.0/33\" is not a CIDR",
        ),
        (
            service("ns", "svc", "172.30.0.2", vec![port("p", "TCP", 80)])
                .spec(|s| s.session_affinity = Some("Cookie".into())),
            "spec.sessionAffinity \"Cookie\" is not None or ClientIP",
        ),
        (
            service("ns", "svc", "172.30.0.2", vec![port("p", "TCP", 80)])
                .spec(|s| s.internal_traffic_policy = Some("Nearby".into())),
            "spec.internalTrafficPolicy \"Nearby\"",
        ),
        (
            service("ns", "svc", "172.30.0.2", vec![port("p", "TCP", 80)])
                .type_("LoadBalancer")
                .external_local(),
            "spec.healthCheckNodePort None",
        ),
        (
            service("ns", "svc", "172.30.0.2", vec![port("p", "TCP", 80)]).type_("Magic"),
            "spec.type \"Magic\"",
        ),
        (
            service("ns", "svc", "", vec![port("p", "TCP", 80)])
                .cluster_ips(&["172.30.0.2", "172.30.0.3"]),
            "spec.clusterIPs has a second IPv4 address 172.30.0.3",
        ),
        (
            Service {
                metadata: ObjectMeta::default(),
                spec: None,
                status: None,
            },
            "metadata.namespace \"\" is not a DNS label",
        ),
    ];
    for (bad, expected) in cases {
        let state = compile(&[bad.clone(), good()], NO_SLICES, &node());
        let found = problems(&state);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "expected {expected:?} for {bad:?}, got {found:#?}"
        );
        assert!(
            state.port("ns/ok:p/TCP", IpFamily::V4).is_some(),
            "the good Service survives"
        );
        let mut rules = Ruleset::default();
        rules.apply(&render_full(&state).to_script()).unwrap();
    }
}

#[test]
fn bad_slices_are_reported_and_the_good_parts_kept() {
    let svc = service("ns", "svc", "172.30.0.1", vec![port("p", "TCP", 80)]);
    let good = slice(
        "ns",
        "svc",
        "good",
        &[("p", "TCP", 80)],
        vec![ep("10.0.0.1")],
    );
    let mut no_label = good.clone();
    no_label.metadata.labels = None;
    let mut bad_type = good.clone();
    bad_type.address_type = "IPX".into();
    let mut no_namespace = good.clone();
    no_namespace.metadata.namespace = None;
    let mut unnamed_port = good.clone();
    if let Some(p) = unnamed_port.ports.as_mut() {
        p.push(EndpointPort {
            name: None,
            port: Some(81),
            ..EndpointPort::default()
        });
    }
    let bad_port = slice(
        "ns",
        "svc",
        "bad-port",
        &[("p", "TCP", 0)],
        vec![ep("10.0.0.2")],
    );
    let bad_address = slice(
        "ns",
        "svc",
        "bad-address",
        &[("p", "TCP", 80)],
        vec![ep("10.0.0.300")],
    );
    let no_address = slice(
        "ns",
        "svc",
        "no-address",
        &[("p", "TCP", 80)],
        vec![Endpoint::default()],
    );
    let cases: Vec<(EndpointSlice, &str)> = vec![
        (no_label, "no kubernetes.io/service-name label"),
        (bad_type, "addressType \"IPX\" is not IPv4, IPv6 or FQDN"),
        (no_namespace, "metadata.namespace or metadata.name is empty"),
        (unnamed_port, "ports[1] has no name"),
        (bad_port, "ports[0].port Some(0) is not in 1-65535"),
        (
            bad_address,
            "endpoints[0] address \"10.0.0.300\" is not an IP address",
        ),
        (no_address, "endpoints[0] has no addresses"),
    ];
    for (bad, expected) in cases {
        let state = compile(
            std::slice::from_ref(&svc),
            &[bad.clone(), good.clone()],
            &node(),
        );
        let found = problems(&state);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "expected {expected:?} for {bad:?}, got {found:#?}"
        );
        let p = state.port("ns/svc:p/TCP", IpFamily::V4).unwrap();
        assert!(p.cluster_endpoints.iter().any(|e| e.ip == ip("10.0.0.1")));
    }
    // FQDN slices are not for proxies: ignored without a word.
    let mut fqdn = good.clone();
    fqdn.address_type = "FQDN".into();
    assert!(compile(&[svc], &[fqdn], &node()).warnings.is_empty());
}

#[test]
fn conflicting_frontends_stay_with_the_first_service_by_name() {
    let a = service(
        "ns",
        "a",
        "172.30.0.1",
        vec![node_port("p", "TCP", 80, 30080)],
    )
    .type_("NodePort")
    .external_ips(&["192.168.99.1"]);
    let b = service("ns", "b", "172.30.0.1", vec![port("p", "TCP", 80)]);
    let c = service(
        "ns",
        "c",
        "172.30.0.3",
        vec![node_port("p", "TCP", 80, 30080)],
    )
    .type_("NodePort");
    let d =
        service("ns", "d", "172.30.0.4", vec![port("p", "TCP", 80)]).external_ips(&["172.30.0.1"]);
    // Reversed input: the outcome is decided by name, not by order.
    let state = compile(&[d, c, b, a], NO_SLICES, &node());
    let found = problems(&state);
    let expect = [
        "Service ns/b: cluster IP 172.30.0.1 is already used by Service ns/a",
        "Service ns/c: IPv4 NodePort TCP 30080 is already used by Service ns/a",
        "Service ns/d: 172.30.0.1 TCP 80 is already used by Service ns/a",
    ];
    for e in expect {
        assert!(
            found.iter().any(|f| f.starts_with(e)),
            "{e:?} not in {found:#?}"
        );
    }
    assert_eq!(
        state.port("ns/a:p/TCP", IpFamily::V4).unwrap().node_port,
        Some(30080)
    );
    assert!(state.port("ns/b:p/TCP", IpFamily::V4).is_none());
    assert_eq!(
        state.port("ns/c:p/TCP", IpFamily::V4).unwrap().node_port,
        None
    );
    assert!(
        state
            .port("ns/d:p/TCP", IpFamily::V4)
            .unwrap()
            .external_ips
            .is_empty()
    );
    let mut rules = Ruleset::default();
    rules.apply(&render_full(&state).to_script()).unwrap();
}

#[test]
fn a_duplicated_service_object_is_reported_and_the_choice_does_not_depend_on_order() {
    let one = service("ns", "a", "172.30.0.1", vec![port("p", "TCP", 80)]);
    let other = service("ns", "a", "172.30.0.9", vec![port("q", "TCP", 81)]);
    let state = compile(&[one.clone(), other.clone()], NO_SLICES, &node());
    assert_eq!(state, compile(&[other, one], NO_SLICES, &node()));
    assert_eq!(state.services.len(), 1);
    assert!(problems(&state)[0].contains("a second Service object with this namespace and name"));
}

#[test]
fn warnings_name_the_object_and_value() {
    let state = compile(
        &[service(
            "ns",
            "svc",
            "172.30.0.1",
            vec![port("p", "TCP", -1)],
        )],
        NO_SLICES,
        &node(),
    );
    assert_eq!(
        state.warnings,
        vec![CompileWarning::ServiceField {
            service: "ns/svc".into(),
            problem: "spec.ports[0].port -1 is not in 1-65535".into(),
        }]
    );
    assert_eq!(
        state.warnings[0].to_string(),
        "Service ns/svc: spec.ports[0].port -1 is not in 1-65535; ignored"
    );
}

#[test]
fn the_state_serializes() {
    let state = compile_clean(
        &[service(
            "ns",
            "svc",
            "172.30.0.1",
            vec![port("p", "UDP", 53)],
        )],
        &[slice(
            "ns",
            "svc",
            "a",
            &[("p", "UDP", 5353)],
            vec![ep("10.0.0.1").local()],
        )],
    );
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["services"][0]["ports"][0]["name"]["protocol"], "UDP");
    assert_eq!(
        json["services"][0]["ports"][0]["cluster_endpoints"][0]["port"],
        5353
    );
    assert_eq!(json["services"][0]["ports"][0]["internal"]["to"], "Cluster");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn input_order_does_not_matter(spec in cluster()) {
        let (mut services, mut slices) = objects(&spec);
        let state = compile(&services, &slices, &node());
        services.reverse();
        slices.reverse();
        prop_assert_eq!(compile(&services, &slices, &node()), state);
    }

    #[test]
    fn garbage_never_panics_and_never_breaks_the_script(
        services in prop::collection::vec(garbage_service(), 0..6),
        slices in prop::collection::vec(garbage_slice(), 0..6),
    ) {
        let state = compile(&services, &slices, &node());
        let mut rules = Ruleset::default();
        prop_assert!(rules.apply(&render_full(&state).to_script()).is_ok());
        for line in render_full(&state).to_script().lines() {
            // Only what the renderer writes: no quote, brace or semicolon from the input.
            prop_assert!(line.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{}", line);
        }
    }
}

/// Strings that are sometimes valid, often not, and sometimes try to break out of a rule.
fn text(valid: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(valid).prop_map(str::to_owned),
        "[a-zA-Z0-9 ./:\"{};-]{0,12}",
    ]
}

fn garbage_service() -> impl Strategy<Value = Service> {
    (
        (
            text(&["ns", "a"]),
            text(&["svc", "b"]),
            text(&["172.30.0.1", "None", "", "fd00::1"]),
            text(&["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]),
        ),
        prop::collection::vec(
            (
                text(&["p", ""]),
                text(&["TCP", "UDP", "SCTP"]),
                -2i32..70000,
                prop::option::of(-1i32..70000),
            ),
            0..3,
        ),
        (
            prop::collection::vec(text(&["192.168.99.1", "1.2.3.4"]), 0..2),
            text(&["1.2.3.4", "::1"]),
            prop::collection::vec(text(&["10.0.0.0/8", " 1.2.3.0/24"]), 0..2),
        ),
        (
            text(&["Local", "Cluster"]),
            text(&["Local", "Cluster"]),
            text(&["ClientIP", "None"]),
            prop::option::of(-5i32..100000),
            prop::option::of(-5i32..70000),
        ),
    )
        .prop_map(
            |(
                (ns, name, ip, kind),
                ports,
                (external, lb, ranges),
                (etp, itp, affinity, timeout, hc),
            )| Service {
                metadata: ObjectMeta {
                    namespace: Some(ns),
                    name: Some(name),
                    ..ObjectMeta::default()
                },
                spec: Some(ServiceSpec {
                    cluster_ip: Some(ip),
                    type_: Some(kind),
                    ports: Some(
                        ports
                            .into_iter()
                            .map(|(name, protocol, port, node_port)| ServicePort {
                                name: Some(name),
                                protocol: Some(protocol),
                                port,
                                node_port,
                                ..ServicePort::default()
                            })
                            .collect(),
                    ),
                    external_ips: Some(external),
                    load_balancer_source_ranges: Some(ranges),
                    external_traffic_policy: Some(etp),
                    internal_traffic_policy: Some(itp),
                    session_affinity: Some(affinity),
                    session_affinity_config: timeout.map(|t| {
                        k8s_openapi::api::core::v1::SessionAffinityConfig {
                            client_ip: Some(k8s_openapi::api::core::v1::ClientIPConfig {
                                timeout_seconds: Some(t),
                            }),
                        }
                    }),
                    health_check_node_port: hc,
                    ..ServiceSpec::default()
                }),
                status: Some(ServiceStatus {
                    load_balancer: Some(LoadBalancerStatus {
                        ingress: Some(vec![LoadBalancerIngress {
                            ip: Some(lb),
                            ..LoadBalancerIngress::default()
                        }]),
                    }),
                    ..ServiceStatus::default()
                }),
            },
        )
}

fn garbage_slice() -> impl Strategy<Value = EndpointSlice> {
    (
        (
            text(&["ns", "a"]),
            text(&["svc", "b"]),
            text(&["IPv4", "IPv6", "FQDN"]),
        ),
        prop::collection::vec(
            (
                prop::option::of(text(&["p", ""])),
                prop::option::of(text(&["TCP", "UDP"])),
                prop::option::of(-2i32..70000),
            ),
            0..3,
        ),
        prop::collection::vec(
            (
                prop::collection::vec(text(&["10.0.0.1", "fd00::1", "10.0.0.2"]), 0..2),
                prop::option::of(text(&[NODE, "x"])),
            ),
            0..4,
        ),
    )
        .prop_map(
            |((ns, svc, address_type), ports, endpoints)| EndpointSlice {
                address_type,
                metadata: ObjectMeta {
                    namespace: Some(ns),
                    name: Some("slice".into()),
                    labels: Some(BTreeMap::from([("kubernetes.io/service-name".into(), svc)])),
                    ..ObjectMeta::default()
                },
                ports: Some(
                    ports
                        .into_iter()
                        .map(|(name, protocol, port)| EndpointPort {
                            name,
                            protocol,
                            port,
                            ..EndpointPort::default()
                        })
                        .collect(),
                ),
                endpoints: Some(
                    endpoints
                        .into_iter()
                        .map(|(addresses, node_name)| Endpoint {
                            addresses,
                            node_name,
                            ..Endpoint::default()
                        })
                        .collect(),
                ),
            },
        )
}
