//! Goldens of small rulesets (insta snapshots under `snapshots/`).

use std::collections::HashSet;

use crate::service::testutil::*;
use crate::service::{ServiceState, compile, render_diff, render_full};

/// What a full render adds for the Services: its lines minus those of a render of none.
fn service_lines(state: &ServiceState) -> String {
    let fixed =
        render_full(&compile(compile::NO_SERVICES, compile::NO_SLICES, &node())).to_script();
    let fixed: HashSet<&str> = fixed.lines().collect();
    render_full(state)
        .to_script()
        .lines()
        .filter(|l| !fixed.contains(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn fixed_part_matches_golden() {
    insta::assert_snapshot!(
        render_full(&compile(compile::NO_SERVICES, compile::NO_SLICES, &node())).to_script()
    );
}

#[test]
fn cluster_ip_service_matches_golden() {
    let state = compile_clean(
        &[service(
            "ns1",
            "svc1",
            "172.30.0.41",
            vec![port("p80", "TCP", 80), port("dns", "UDP", 53)],
        )],
        &[slice(
            "ns1",
            "svc1",
            "svc1-a",
            &[("p80", "TCP", 8080), ("dns", "UDP", 5353)],
            vec![ep("10.180.0.1").local(), ep("10.180.2.1").on("node2")],
        )],
    );
    insta::assert_snapshot!(service_lines(&state));
}

#[test]
fn local_load_balancer_with_affinity_and_source_ranges_matches_golden() {
    let svc = service(
        "ns2",
        "svc2",
        "172.30.0.42",
        vec![node_port("p80", "TCP", 80, 3001)],
    )
    .type_("LoadBalancer")
    .external_local()
    .external_ips(&["192.168.99.22"])
    .lb_ingress(&["1.2.3.4"])
    .source_ranges(&["203.0.113.0/25", "192.168.0.0/24"])
    .affinity(Some(600))
    .health_check_node_port(30000);
    let state = compile_clean(
        &[svc],
        &[slice(
            "ns2",
            "svc2",
            "svc2-a",
            &[("p80", "TCP", 80)],
            vec![ep("10.180.0.2").local(), ep("10.180.2.2").on("node2")],
        )],
    );
    insta::assert_snapshot!(service_lines(&state));
}

#[test]
fn services_without_usable_endpoints_match_golden() {
    let state = compile_clean(
        &[
            // No endpoints at all: reject everywhere.
            service(
                "ns",
                "empty",
                "172.30.0.51",
                vec![node_port("p", "TCP", 80, 3005)],
            )
            .type_("NodePort")
            .external_ips(&["192.168.99.51"]),
            // internalTrafficPolicy Local, endpoints elsewhere: ClusterIP dropped.
            service("ns", "itp", "172.30.0.52", vec![port("p", "TCP", 80)]).internal_local(),
            // externalTrafficPolicy Local, endpoints elsewhere: external traffic dropped.
            service(
                "ns",
                "etp",
                "172.30.0.53",
                vec![node_port("p", "UDP", 53, 3006)],
            )
            .type_("NodePort")
            .external_local(),
        ],
        &[
            slice(
                "ns",
                "itp",
                "itp-a",
                &[("p", "TCP", 80)],
                vec![ep("10.180.2.3").on("node2")],
            ),
            slice(
                "ns",
                "etp",
                "etp-a",
                &[("p", "UDP", 53)],
                vec![ep("10.180.2.4").on("node2")],
            ),
        ],
    );
    insta::assert_snapshot!(service_lines(&state));
}

#[test]
fn dual_stack_service_matches_golden() {
    let svc = service("ns", "dual", "", vec![port("p", "TCP", 80)])
        .cluster_ips(&["172.30.0.60", "fd00:172:30::60"]);
    let state = compile_clean(
        &[svc],
        &[
            slice(
                "ns",
                "dual",
                "dual-v4",
                &[("p", "TCP", 80)],
                vec![ep("10.180.0.6")],
            ),
            slice(
                "ns",
                "dual",
                "dual-v6",
                &[("p", "TCP", 80)],
                vec![ep("fd00:10::180:6")],
            ),
        ],
    );
    insta::assert_snapshot!(service_lines(&state));
}

#[test]
fn diff_matches_golden() {
    // svc1 loses an endpoint and gains one, svc2 goes away, svc3 arrives.
    let svc1 = service("ns", "svc1", "172.30.0.41", vec![port("p", "TCP", 80)]);
    let old = compile_clean(
        &[
            svc1.clone(),
            service(
                "ns",
                "svc2",
                "172.30.0.42",
                vec![node_port("p", "UDP", 53, 3002)],
            )
            .type_("NodePort"),
        ],
        &[
            slice(
                "ns",
                "svc1",
                "svc1-a",
                &[("p", "TCP", 80)],
                vec![ep("10.180.0.1"), ep("10.180.0.2")],
            ),
            slice(
                "ns",
                "svc2",
                "svc2-a",
                &[("p", "UDP", 53)],
                vec![ep("10.180.0.9")],
            ),
        ],
    );
    let new = compile_clean(
        &[
            svc1,
            service("ns", "svc3", "172.30.0.43", vec![port("p", "TCP", 443)]),
        ],
        &[slice(
            "ns",
            "svc1",
            "svc1-a",
            &[("p", "TCP", 80)],
            vec![ep("10.180.0.2"), ep("10.180.0.3")],
        )],
    );
    insta::assert_snapshot!(render_diff(&old, &new).to_script());
}
