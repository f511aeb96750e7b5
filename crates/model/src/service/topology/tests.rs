//! kube-proxy's `TestCategorizeEndpoints` cases (pkg/proxy/topology_test.go), on
//! `categorize` directly.

use std::net::IpAddr;

use super::*;

/// An endpoint `10.0.0.<host>:80` with its facts.
struct Ep {
    host: u8,
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
    zones: &'static [&'static str],
    nodes: &'static [&'static str],
}

const fn ready(host: u8) -> Ep {
    Ep {
        host,
        ready: true,
        serving: true,
        terminating: false,
        local: false,
        zones: &[],
        nodes: &[],
    }
}

impl Ep {
    const fn local(mut self) -> Self {
        self.local = true;
        self
    }
    const fn zones(mut self, zones: &'static [&'static str]) -> Self {
        self.zones = zones;
        self
    }
    const fn nodes(mut self, nodes: &'static [&'static str]) -> Self {
        self.nodes = nodes;
        self
    }
    const fn unready(mut self) -> Self {
        self.ready = false;
        self.serving = false;
        self
    }
    const fn terminating(mut self) -> Self {
        self.ready = false;
        self.serving = true;
        self.terminating = true;
        self
    }
}

/// (uses_cluster, uses_local) of a port: kube-proxy's UsesClusterEndpoints and
/// UsesLocalEndpoints for its iTP/eTP and whether it has a NodePort.
fn uses(internal_local: bool, external_local: bool, node_port: bool) -> (bool, bool) {
    (
        !internal_local || node_port,
        internal_local || (external_local && node_port),
    )
}

fn run(
    eps: &[Ep],
    (uses_cluster, uses_local): (bool, bool),
    zone: &str,
) -> (Vec<u8>, Vec<u8>, bool) {
    let raws: Vec<RawEndpoint> = eps
        .iter()
        .map(|e| RawEndpoint {
            ip: IpAddr::from([10, 0, 0, e.host]),
            is_local: e.local,
            node_known: true,
            ready: e.ready,
            serving: e.serving,
            terminating: e.terminating,
            zone_hints: e.zones.iter().map(|z| (*z).to_owned()).collect(),
            node_hints: e.nodes.iter().map(|n| (*n).to_owned()).collect(),
        })
        .collect();
    let candidates: Vec<Candidate<'_>> = raws
        .iter()
        .map(|raw| Candidate {
            endpoint: Endpoint {
                ip: raw.ip,
                port: 80,
                is_local: raw.is_local,
                node_known: raw.node_known,
            },
            raw,
        })
        .collect();
    let out = categorize(&candidates, uses_cluster, uses_local, "this-node", zone);
    let hosts = |eps: &[Endpoint]| {
        eps.iter()
            .map(|e| match e.ip {
                IpAddr::V4(ip) => ip.octets()[3],
                IpAddr::V6(_) => 0,
            })
            .collect::<Vec<u8>>()
    };
    (hosts(&out.cluster), hosts(&out.local), out.has_any)
}

const CLUSTER: (bool, bool) = (true, false);

#[test]
fn uses_topology_when_every_endpoint_is_hinted_and_one_is_for_this_zone() {
    let eps = [
        ready(3).zones(&["zone-a"]),
        ready(4).zones(&["zone-b"]),
        ready(5).zones(&["zone-c"]),
        ready(6).zones(&["zone-a"]),
    ];
    assert_eq!(run(&eps, CLUSTER, "zone-a"), (vec![3, 6], vec![], true));
    // Node in a zone nobody is hinted for, or with no zone: no filtering.
    assert_eq!(run(&eps, CLUSTER, "zone-d").0, vec![3, 4, 5, 6]);
    assert_eq!(run(&eps, CLUSTER, "").0, vec![3, 4, 5, 6]);
}

#[test]
fn topology_is_ignored_for_local_endpoints() {
    let eps = [
        ready(3).zones(&["zone-a"]).local(),
        ready(4).zones(&["zone-b"]).local(),
        ready(5).zones(&["zone-c"]),
        ready(6).zones(&["zone-a"]),
    ];
    // eTP Local with a NodePort, and iTP Local with a NodePort: same answer.
    for policies in [uses(false, true, true), uses(true, false, true)] {
        assert_eq!(
            run(&eps, policies, "zone-a"),
            (vec![3, 6], vec![3, 4], true)
        );
    }
}

#[test]
fn unready_endpoints_neither_serve_nor_decide_topology() {
    let eps = [
        ready(3).zones(&["zone-a"]),
        ready(4).zones(&["zone-b"]),
        ready(5).zones(&["zone-c"]),
        ready(6).zones(&["zone-a"]).unready(),
    ];
    assert_eq!(run(&eps, CLUSTER, "zone-a").0, vec![3]);
    let eps = [
        ready(3).zones(&["zone-a"]).unready(),
        ready(4).zones(&["zone-b"]),
        ready(5).zones(&["zone-c"]),
        ready(6).zones(&["zone-a"]).unready(),
    ];
    assert_eq!(run(&eps, CLUSTER, "zone-a").0, vec![4, 5]);
}

#[test]
fn a_missing_hint_disables_filtering() {
    let eps = [
        ready(3).zones(&["zone-a"]),
        ready(4).zones(&["zone-b"]),
        ready(5),
        ready(6).zones(&["zone-a"]),
    ];
    assert_eq!(run(&eps, CLUSTER, "zone-a").0, vec![3, 4, 5, 6]);
}

#[test]
fn an_endpoint_hinted_for_several_zones_serves_each() {
    let eps = [
        ready(3).zones(&["zone-a", "zone-b", "zone-c"]),
        ready(4).zones(&["zone-b", "zone-c"]),
        ready(5).zones(&["zone-b", "zone-d"]),
        ready(6).zones(&["zone-c"]),
    ];
    assert_eq!(run(&eps, CLUSTER, "zone-c").0, vec![3, 4, 6]);
}

#[test]
fn node_hints_win_over_zone_hints_when_complete() {
    let eps = [
        ready(3).zones(&["zone-a"]).nodes(&["this-node"]),
        ready(4).zones(&["zone-a"]).nodes(&["node-2"]),
        ready(5).zones(&["zone-b"]).nodes(&["node-3"]),
    ];
    assert_eq!(run(&eps, CLUSTER, "zone-a").0, vec![3]);
    // Not for this node: zone hints.
    let eps = [
        ready(4).zones(&["zone-a"]).nodes(&["node-2"]),
        ready(5).zones(&["zone-b"]).nodes(&["node-3"]),
    ];
    assert_eq!(run(&eps, CLUSTER, "zone-a").0, vec![4]);
}

#[test]
fn conflicting_topology_and_locality() {
    let eps = [
        ready(0).zones(&["zone-a"]).local(),
        ready(1).zones(&["zone-b"]).local(),
        ready(2).zones(&["zone-a"]),
        ready(3).zones(&["zone-b"]),
    ];
    assert_eq!(
        run(&eps, uses(false, true, true), "zone-a"),
        (vec![0, 2], vec![0, 1], true)
    );
}

#[test]
fn internal_local_policy_sets() {
    let local_only = uses(true, false, false);
    assert_eq!(run(&[], local_only, ""), (vec![], vec![], false));
    // All remote: no local endpoints, but the Service has endpoints (so: drop, not reject).
    assert_eq!(
        run(&[ready(0), ready(1)], local_only, ""),
        (vec![], vec![], true)
    );
    assert_eq!(
        run(&[ready(0).local(), ready(1).local()], local_only, ""),
        (vec![], vec![0, 1], true)
    );
    assert_eq!(
        run(&[ready(0).local(), ready(1)], local_only, ""),
        (vec![], vec![0], true)
    );
}

#[test]
fn cluster_policy_readiness_and_terminating_fallback() {
    assert_eq!(
        run(&[ready(0).unready(), ready(1).unready()], CLUSTER, ""),
        (vec![], vec![], false)
    );
    assert_eq!(run(&[ready(0).unready(), ready(1)], CLUSTER, "").0, vec![1]);
    assert_eq!(
        run(
            &[ready(0).terminating().local(), ready(1).terminating()],
            CLUSTER,
            ""
        ),
        (vec![0, 1], vec![], true)
    );
}

#[test]
fn both_policies() {
    let eps = [ready(0).local(), ready(1)];
    assert_eq!(
        run(&eps, uses(true, false, true), ""),
        (vec![0, 1], vec![0], true)
    );
    assert_eq!(
        run(&eps, uses(false, true, true), ""),
        (vec![0, 1], vec![0], true)
    );
    assert_eq!(
        run(&eps, uses(true, true, true), ""),
        (vec![0, 1], vec![0], true)
    );
    assert_eq!(
        run(&[ready(0), ready(1)], uses(true, true, true), ""),
        (vec![0, 1], vec![], true)
    );
    assert_eq!(
        run(
            &[ready(0).terminating(), ready(1).terminating()],
            uses(true, true, true),
            ""
        ),
        (vec![0, 1], vec![], true)
    );
}

#[test]
fn local_terminating_fallback_is_independent_of_the_cluster_set() {
    let eps = [
        ready(0),
        ready(1).unready().local(),
        ready(2).terminating().local(),
        ready(3).terminating(),
    ];
    assert_eq!(
        run(&eps, uses(false, true, true), ""),
        (vec![0], vec![2], true)
    );
}

#[test]
fn external_policy_is_ignored_without_external_frontends() {
    let eps = [ready(0).local(), ready(1)];
    assert_eq!(
        run(&eps, uses(false, true, false), ""),
        (vec![0, 1], vec![], true)
    );
}
