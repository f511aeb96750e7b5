//! Test fixtures, on kube-proxy's test conventions (pkg/proxy/nftables/proxier_test.go):
//!
//! | what | addresses |
//! |---|---|
//! | pod IPs (cluster CIDR) | 10.0.0.0/8, fd00:10::/64 |
//! | Service cluster IPs (service CIDR) | 172.30.0.0/16, fd00:172:30::/112 |
//! | this node (NodePort address) | 192.168.0.2, 2001:db8::1; another of its IPs 192.168.1.2 |
//! | externalIPs | 192.168.99.0/24 |
//! | load-balancer IPs | 1.2.3.4, 5.6.7.8 |
//! | off-cluster clients | 203.0.113.0/24 (source range 203.0.113.0/25) |
//!
//! Every trace check runs the packet through both the state tracer and the rendered ruleset
//! (see [`ruleset`]), and both must agree.

pub(crate) mod generate;
pub(crate) mod ruleset;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec,
    ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForNode, ForZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{
    NodeFacts, Origin, Packet, Protocol, ServiceState, Verdict, compile, render_full, trace,
};
use ruleset::Ruleset;

pub(crate) const NODE: &str = "test-node";
pub(crate) const NODE_IP: &str = "192.168.0.2";
pub(crate) const NODE_IP_ALT: &str = "192.168.1.2";
pub(crate) const NODE_IP6: &str = "2001:db8::1";
/// A pod on this node.
pub(crate) const POD: &str = "10.0.0.2";
pub(crate) const EXTERNAL_CLIENT: &str = "203.0.113.2";
pub(crate) const BLOCKED_CLIENT: &str = "203.0.113.130";

/// This node: zone-a, NodePorts on its primary addresses.
pub(crate) fn node() -> NodeFacts {
    NodeFacts {
        name: NODE.to_owned(),
        zone: Some("zone-a".to_owned()),
        node_ips: vec![ip(NODE_IP), ip(NODE_IP6)],
        cluster_cidrs: vec![
            "10.0.0.0/8".parse().unwrap(),
            "fd00:10::/64".parse().unwrap(),
        ],
        service_cidrs: vec![
            "172.30.0.0/16".parse().unwrap(),
            "fd00:172:30::/112".parse().unwrap(),
        ],
    }
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Compiles with [`node`] and asserts nothing was wrong with the objects.
pub(crate) fn compile_clean(services: &[Service], slices: &[EndpointSlice]) -> ServiceState {
    let state = compile(services, slices, &node());
    assert!(state.warnings.is_empty(), "{:#?}", state.warnings);
    state
}

// === Services ===

/// A ClusterIP Service.
pub(crate) fn service(ns: &str, name: &str, cluster_ip: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(ns.to_owned()),
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.to_owned()),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

pub(crate) fn port(name: &str, protocol: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        protocol: Some(protocol.to_owned()),
        port,
        ..ServicePort::default()
    }
}

pub(crate) fn node_port(name: &str, protocol: &str, port: i32, node_port: i32) -> ServicePort {
    ServicePort {
        node_port: Some(node_port),
        ..self::port(name, protocol, port)
    }
}

/// Changes to a Service, chained.
pub(crate) trait ServiceExt: Sized {
    fn spec(self, f: impl FnOnce(&mut ServiceSpec)) -> Self;
    fn type_(self, t: &str) -> Self {
        self.spec(|s| s.type_ = Some(t.to_owned()))
    }
    fn external_local(self) -> Self {
        self.spec(|s| s.external_traffic_policy = Some("Local".to_owned()))
    }
    fn internal_local(self) -> Self {
        self.spec(|s| s.internal_traffic_policy = Some("Local".to_owned()))
    }
    fn external_ips(self, ips: &[&str]) -> Self {
        self.spec(|s| s.external_ips = Some(ips.iter().map(|i| (*i).to_owned()).collect()))
    }
    fn cluster_ips(self, ips: &[&str]) -> Self {
        self.spec(|s| {
            s.cluster_ip = ips.first().map(|i| (*i).to_owned());
            s.cluster_ips = Some(ips.iter().map(|i| (*i).to_owned()).collect());
        })
    }
    fn affinity(self, timeout: Option<i32>) -> Self {
        self.spec(|s| {
            s.session_affinity = Some("ClientIP".to_owned());
            s.session_affinity_config = timeout.map(|t| SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(t),
                }),
            });
        })
    }
    fn source_ranges(self, ranges: &[&str]) -> Self {
        self.spec(|s| {
            s.load_balancer_source_ranges = Some(ranges.iter().map(|r| (*r).to_owned()).collect());
        })
    }
    fn health_check_node_port(self, port: i32) -> Self {
        self.spec(|s| s.health_check_node_port = Some(port))
    }
    fn traffic_distribution(self, value: &str) -> Self {
        self.spec(|s| s.traffic_distribution = Some(value.to_owned()))
    }
    fn lb_ingress(self, ips: &[&str]) -> Self;
    fn label(self, key: &str, value: &str) -> Self;
}

impl ServiceExt for Service {
    fn spec(mut self, f: impl FnOnce(&mut ServiceSpec)) -> Self {
        f(self.spec.get_or_insert_with(ServiceSpec::default));
        self
    }
    fn lb_ingress(mut self, ips: &[&str]) -> Self {
        self.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(
                    ips.iter()
                        .map(|i| LoadBalancerIngress {
                            ip: Some((*i).to_owned()),
                            ..LoadBalancerIngress::default()
                        })
                        .collect(),
                ),
            }),
            ..ServiceStatus::default()
        });
        self
    }
    fn label(mut self, key: &str, value: &str) -> Self {
        self.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), value.to_owned());
        self
    }
}

// === EndpointSlices ===

/// An EndpointSlice of Service `ns/svc`, its address type from its first endpoint
/// (IPv4 when empty); ports are (name, protocol, port).
pub(crate) fn slice(
    ns: &str,
    svc: &str,
    name: &str,
    ports: &[(&str, &str, i32)],
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let v6 = endpoints
        .first()
        .and_then(|e| e.addresses.first())
        .is_some_and(|a| a.contains(':'));
    EndpointSlice {
        address_type: if v6 { "IPv6" } else { "IPv4" }.to_owned(),
        endpoints: Some(endpoints),
        metadata: ObjectMeta {
            namespace: Some(ns.to_owned()),
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_owned(),
                svc.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        ports: Some(
            ports
                .iter()
                .map(|(n, p, port)| EndpointPort {
                    name: Some((*n).to_owned()),
                    protocol: Some((*p).to_owned()),
                    port: Some(*port),
                    ..EndpointPort::default()
                })
                .collect(),
        ),
    }
}

/// An endpoint with unset conditions (ready) on no particular node.
pub(crate) fn ep(address: &str) -> Endpoint {
    Endpoint {
        addresses: vec![address.to_owned()],
        ..Endpoint::default()
    }
}

/// Changes to an endpoint, chained.
pub(crate) trait EndpointExt: Sized {
    fn on(self, node: &str) -> Self;
    /// On this node.
    fn local(self) -> Self {
        self.on(NODE)
    }
    fn conditions(self, ready: bool, serving: bool, terminating: bool) -> Self;
    /// Not ready, still serving, terminating: a pod shutting down gracefully.
    fn terminating(self) -> Self {
        self.conditions(false, true, true)
    }
    fn not_ready(self) -> Self {
        self.conditions(false, false, false)
    }
    fn zones(self, zones: &[&str]) -> Self;
    fn nodes(self, nodes: &[&str]) -> Self;
}

impl EndpointExt for Endpoint {
    fn on(mut self, node: &str) -> Self {
        self.node_name = Some(node.to_owned());
        self
    }
    fn conditions(mut self, ready: bool, serving: bool, terminating: bool) -> Self {
        self.conditions = Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        });
        self
    }
    fn zones(mut self, zones: &[&str]) -> Self {
        self.hints
            .get_or_insert_with(EndpointHints::default)
            .for_zones = Some(
            zones
                .iter()
                .map(|z| ForZone {
                    name: (*z).to_owned(),
                })
                .collect(),
        );
        self
    }
    fn nodes(mut self, nodes: &[&str]) -> Self {
        self.hints
            .get_or_insert_with(EndpointHints::default)
            .for_nodes = Some(
            nodes
                .iter()
                .map(|n| ForNode {
                    name: (*n).to_owned(),
                })
                .collect(),
        );
        self
    }
}

// === Packets and their outcomes ===

/// A packet's fate, as both tracers can tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Untouched.
    Pass,
    /// DNAT to one of these (endpoint, masqueraded), sorted.
    Dnat(Vec<(SocketAddr, bool)>),
    Reject,
    Drop,
}

impl From<&Verdict> for Outcome {
    fn from(v: &Verdict) -> Self {
        match v {
            Verdict::NotAService => Outcome::Pass,
            Verdict::Dnat { targets, .. } => {
                Outcome::Dnat(targets.iter().map(|t| (t.endpoint, t.masquerade)).collect())
            }
            Verdict::Reject { .. } => Outcome::Reject,
            Verdict::Drop { .. } => Outcome::Drop,
        }
    }
}

/// DNAT to these endpoints (`"ip:port"` or `"[v6]:port"`), all with masquerade `masq`.
pub(crate) fn dnat(endpoints: &[&str], masq: bool) -> Outcome {
    let mut list: Vec<(SocketAddr, bool)> = endpoints
        .iter()
        .map(|e| (e.parse().unwrap(), masq))
        .collect();
    list.sort();
    Outcome::Dnat(list)
}

/// DNAT with per-endpoint masquerade flags.
pub(crate) fn dnat_each(endpoints: &[(&str, bool)]) -> Outcome {
    let mut list: Vec<(SocketAddr, bool)> = endpoints
        .iter()
        .map(|(e, m)| (e.parse().unwrap(), *m))
        .collect();
    list.sort();
    Outcome::Dnat(list)
}

/// A TCP packet.
pub(crate) fn tcp(from: Origin, src: &str, dst: &str, port: u16) -> Packet {
    packet(Protocol::Tcp, from, src, dst, port)
}

/// A UDP packet.
pub(crate) fn udp(from: Origin, src: &str, dst: &str, port: u16) -> Packet {
    packet(Protocol::Udp, from, src, dst, port)
}

pub(crate) fn packet(protocol: Protocol, from: Origin, src: &str, dst: &str, port: u16) -> Packet {
    Packet {
        src: ip(src),
        src_port: 40000,
        dst: ip(dst),
        dst_port: port,
        protocol,
        from,
    }
}

/// Traces every packet through the state and through the rendered ruleset; both must give
/// the expected outcome. Cases are (name, packet, outcome), like kube-proxy's
/// `packetFlowTest`s.
pub(crate) fn check_flows(state: &ServiceState, cases: &[(&str, Packet, Outcome)]) {
    let mut rules = Ruleset::default();
    rules.apply(&render_full(state).to_script()).unwrap();
    let mut failures = Vec::new();
    for (name, packet, expected) in cases {
        let verdict = trace(state, packet);
        let from_state = Outcome::from(&verdict);
        let from_rules = rules.trace(packet);
        if from_state != *expected || from_rules != *expected {
            failures.push(format!(
                "{name}: {packet:?}\n  expected   {expected:?}\n  state      {from_state:?} ({verdict:?})\n  nft rules  {from_rules:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
