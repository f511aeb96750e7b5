//! Policy tests: NetworkPolicy semantics on the upstream e2e model (`netpol.rs`,
//! `ports.rs`), ClusterNetworkPolicy tiers (`cluster.rs`), the nft rendering (`render.rs`,
//! with `nftsim.rs` running rendered rules packet by packet; `diff.rs`, incremental changes)
//! and property tests against the reference evaluator (`prop.rs`). Fixtures live here.
//!
//! The model is upstream's (kubernetes/kubernetes `test/e2e/network/netpol/model.go`):
//! namespaces x, y, z (label `ns=<name>`), each with pods a, b, c (label `pod=<name>`), each
//! serving on 80 and 81 over TCP, UDP and SCTP with named ports `serve-<port>-<proto>`.
//! Addresses: x/a = 10.0.1.1 … z/c = 10.0.3.3; pods a, b, c run on nodes 1, 2, 3
//! (192.168.0.1–3).

mod cluster;
mod diff;
mod netpol;
mod nftsim;
mod ports;
mod prop;
mod render;
mod scale;

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::{
    ClusterNetworkPolicy, PolicyInputs, PolicyState, Verdict, allows, compile, reachability,
    reference_allows,
};
use crate::service::Protocol;

pub(super) const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub(super) const PODS: [&str; 3] = ["a", "b", "c"];

/// The objects of one test cluster.
#[derive(Debug, Clone, Default)]
pub(super) struct World {
    pub(super) nps: Vec<NetworkPolicy>,
    pub(super) cnps: Vec<ClusterNetworkPolicy>,
    pub(super) pods: Vec<Pod>,
    pub(super) namespaces: Vec<Namespace>,
    pub(super) nodes: Vec<Node>,
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The address of upstream model pod `ns/pod`.
pub(super) fn addr(id: &str) -> IpAddr {
    let (ns, pod) = id.split_once('/').unwrap();
    let n = NAMESPACES.iter().position(|x| *x == ns).unwrap() + 1;
    let p = PODS.iter().position(|x| *x == pod).unwrap() + 1;
    ip(&format!("10.0.{n}.{p}"))
}

/// A running pod with these addresses, labels and named container ports.
pub(super) fn pod_json(
    ns: &str,
    name: &str,
    ips: &[&str],
    labels: Value,
    ports: &[(&str, &str, u16)],
    host_ip: &str,
) -> Pod {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, proto, port)| json!({"name": n, "protocol": proto, "containerPort": port}))
        .collect();
    let pod_ips: Vec<Value> = ips.iter().map(|i| json!({ "ip": i })).collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "ports": ports}]},
        "status": {"phase": "Running", "podIPs": pod_ips, "hostIPs": [{"ip": host_ip}]},
    }))
    .unwrap()
}

pub(super) fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

pub(super) fn node(name: &str, addr: &str, labels: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"addresses": [{"type": "InternalIP", "address": addr}]},
    }))
    .unwrap()
}

/// A NetworkPolicy in `ns` with this spec.
pub(super) fn netpol(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
        .unwrap()
}

/// A ClusterNetworkPolicy with this spec.
pub(super) fn cnp(name: &str, spec: Value) -> ClusterNetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

// === impl World ===

impl World {
    /// Upstream's 3 × 3 model.
    pub(super) fn upstream() -> World {
        let mut w = World::default();
        for ns in NAMESPACES {
            w.namespaces.push(namespace(ns, json!({ "ns": ns })));
            for (i, pod) in PODS.iter().enumerate() {
                let mut ports = Vec::new();
                for proto in ["TCP", "UDP", "SCTP"] {
                    for port in [80, 81] {
                        ports.push((
                            format!("serve-{port}-{}", proto.to_lowercase()),
                            proto,
                            port,
                        ));
                    }
                }
                let ports: Vec<(&str, &str, u16)> =
                    ports.iter().map(|(n, p, o)| (n.as_str(), *p, *o)).collect();
                w.pods.push(pod_json(
                    ns,
                    pod,
                    &[&addr(&format!("{ns}/{pod}")).to_string()],
                    json!({ "pod": pod }),
                    &ports,
                    &format!("192.168.0.{}", i + 1),
                ));
            }
        }
        for i in 1..=3 {
            w.nodes.push(node(
                &format!("node-{i}"),
                &format!("192.168.0.{i}"),
                json!({"rack": if i == 1 { "r1" } else { "r2" }}),
            ));
        }
        w
    }

    pub(super) fn np(mut self, ns: &str, name: &str, spec: Value) -> World {
        self.nps.push(netpol(ns, name, spec));
        self
    }

    pub(super) fn cnp(mut self, name: &str, spec: Value) -> World {
        self.cnps.push(cnp(name, spec));
        self
    }

    pub(super) fn inputs(&self) -> PolicyInputs<'_> {
        PolicyInputs {
            network_policies: &self.nps,
            cluster_network_policies: &self.cnps,
            pods: &self.pods,
            namespaces: &self.namespaces,
            nodes: &self.nodes,
        }
    }

    pub(super) fn state(&self) -> PolicyState {
        let state = compile(&self.inputs());
        assert!(state.warnings.is_empty(), "{:?}", state.warnings);
        state
    }

    /// Both evaluators' verdict, which must agree.
    pub(super) fn verdict(&self, src: &str, dst: &str, proto: Protocol, port: u16) -> Verdict {
        let (src, dst) = (ip(src), ip(dst));
        let compiled = allows(&self.state(), src, dst, proto, port);
        let reference = reference_allows(&self.inputs(), src, dst, proto, port);
        assert_eq!(compiled, reference, "{src} → {dst} {proto}/{port}");
        compiled
    }

    /// The truth table, one row per source pod, `.` allowed and `X` denied (upstream's
    /// notation), checked cell by cell against the reference evaluator.
    pub(super) fn table(&self, proto: Protocol, port: u16) -> Vec<String> {
        let state = self.state();
        let table = reachability(&state, proto, port);
        let inputs = self.inputs();
        for (i, from) in state.pods.iter().enumerate() {
            for (j, to) in state.pods.iter().enumerate() {
                let reference = reference_allows(&inputs, from.ips[0], to.ips[0], proto, port);
                assert_eq!(
                    table.allowed[i][j],
                    reference.is_allowed(),
                    "{} → {} {proto}/{port}",
                    from.id(),
                    to.id()
                );
            }
        }
        table
            .allowed
            .iter()
            .map(|row| row.iter().map(|a| if *a { '.' } else { 'X' }).collect())
            .collect()
    }
}

/// A 9 × 9 table written as text: rows are sources x/a … z/c, columns destinations.
pub(super) fn grid(rows: [&str; 9]) -> Vec<String> {
    rows.iter().map(|r| r.replace(' ', "")).collect()
}

pub(super) const ALL_ALLOWED: [&str; 9] = ["... ... ..."; 9];
