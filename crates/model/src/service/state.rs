//! The compiled service state: plain data saying what this node does with traffic to Services.
//!
//! Produced by [`compile`](super::compile), read by the tracer, the nft renderer, the UDP
//! conntrack reconciler and the health-check server. Everything is sorted, so two compiles of
//! the same objects are equal (`==`) and serialize identically.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::Serialize;

use super::warning::CompileWarning;

/// An IP family: each family has its own cluster IP, endpoints and nft table, as kube-proxy
/// runs one proxier per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A Service port protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Protocol {
    /// TCP (the API default when `protocol` is unset).
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

/// A Service's identity: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ServiceName {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

/// One port of a Service, as kube-proxy names it: the Service, the port's name (empty for
/// a single unnamed port) and its protocol. EndpointSlice ports with the same name and
/// protocol carry its endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ServicePortName {
    /// The Service.
    pub service: ServiceName,
    /// `spec.ports[].name`.
    pub port: String,
    /// `spec.ports[].protocol`.
    pub protocol: Protocol,
}

/// One endpoint a Service port can DNAT to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    /// The endpoint's address (`endpoints[].addresses[0]`).
    pub ip: IpAddr,
    /// The port from the EndpointSlice port with the Service port's name: a named
    /// `targetPort` resolved per endpoint.
    pub port: u16,
    /// Whether the endpoint runs on this node (`nodeName` is this node).
    pub is_local: bool,
    /// Whether the slice names the endpoint's node (hand-made slices may not).
    pub node_known: bool,
}

/// A traffic policy (`internalTrafficPolicy`, `externalTrafficPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TrafficPolicy {
    /// Any endpoint in the cluster.
    Cluster,
    /// Only endpoints on this node.
    Local,
}

/// Which topology filter kube-proxy's `CategorizeEndpoints` applied to the cluster endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TopologyMode {
    /// No filtering: every ready endpoint.
    None,
    /// Endpoints hinted (`hints.forZones`) for this node's zone.
    PreferSameZone,
    /// Endpoints hinted (`hints.forNodes`) for this node.
    PreferSameNode,
}

/// Where one class of traffic to a Service port goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Dispatch {
    /// DNAT to one of the port's `cluster_endpoints`.
    Cluster,
    /// DNAT to one of the port's `local_endpoints`.
    Local,
    /// Dropped: the Service has endpoints, but none this traffic may use (a Local policy and
    /// none on this node). kube-proxy drops rather than rejects here on purpose: the
    /// endpoint is probably restarting, and a client should retry, not give up.
    Drop,
    /// Rejected at once (ICMP unreachable, TCP reset): the Service has no usable endpoints
    /// anywhere, so a client fails fast instead of timing out.
    Reject,
}

/// How ClusterIP traffic is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct InternalDispatch {
    /// Where it goes.
    pub to: Dispatch,
    /// Masquerade ClusterIP traffic from sources outside the cluster CIDRs (someone routed
    /// the service range to this node). Needs the cluster CIDRs: kube-proxy without a
    /// local-traffic detector does not masquerade here either.
    pub masquerade_off_cluster: bool,
}

/// How traffic to the "external" frontends (NodePort, externalIPs, load-balancer IPs) is
/// handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ExternalDispatch {
    /// Where traffic goes that no short-circuit below takes.
    pub to: Dispatch,
    /// Masquerade everything (`externalTrafficPolicy: Cluster`: the endpoint may be on
    /// another node, and its reply must come back through this one).
    pub masquerade: bool,
    /// `externalTrafficPolicy: Local`: traffic from inside the cluster CIDRs (pods) goes to
    /// the cluster endpoints unmasqueraded, as if it had gone out to the load balancer and
    /// come back in. Needs the cluster CIDRs.
    pub short_circuit_pods: bool,
    /// `externalTrafficPolicy: Local`: traffic from this node itself goes to the cluster
    /// endpoints, masqueraded (its source would be the node's own address otherwise).
    pub short_circuit_node: bool,
}

/// One Service port in one IP family, with its frontends, endpoints and decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePortState {
    /// The port's identity.
    pub name: ServicePortName,
    /// The family of every address below.
    pub family: IpFamily,
    /// The Service's cluster IP in this family.
    pub cluster_ip: IpAddr,
    /// `spec.ports[].port`.
    pub port: u16,
    /// `spec.ports[].nodePort`, opened on the node's NodePort addresses.
    pub node_port: Option<u16>,
    /// `spec.externalIPs` of this family.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` of this family (VIP mode only; `ipMode: Proxy`
    /// addresses are the load balancer's business).
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.loadBalancerSourceRanges` of this family: who may use the load-balancer IPs.
    pub load_balancer_source_ranges: Vec<IpNet>,
    /// Whether a node address lies in the source ranges: then the load-balancer IPs are
    /// allowed as sources too (a node reaching its own VIP comes from the VIP).
    pub source_ranges_allow_node: bool,
    /// `sessionAffinity: ClientIP`: seconds a client sticks to its endpoint.
    pub affinity_timeout: Option<u32>,
    /// `internalTrafficPolicy`.
    pub internal_policy: TrafficPolicy,
    /// `externalTrafficPolicy` (Cluster unless the Service is NodePort or LoadBalancer).
    pub external_policy: TrafficPolicy,
    /// The topology filter applied to `cluster_endpoints`.
    pub topology: TopologyMode,
    /// Endpoints for Cluster policy: ready ones (topology-filtered), else serving and
    /// terminating ones. Empty when the port never uses Cluster policy.
    pub cluster_endpoints: Vec<Endpoint>,
    /// Endpoints for Local policy: this node's ready ones, else its serving and terminating
    /// ones. Empty when the port never uses Local policy.
    pub local_endpoints: Vec<Endpoint>,
    /// ClusterIP traffic.
    pub internal: InternalDispatch,
    /// NodePort, externalIP and load-balancer traffic; `None` when the port has none of
    /// those frontends.
    pub external: Option<ExternalDispatch>,
    /// Every serving endpoint address, whatever the policies: UDP conntrack entries to the
    /// port's addresses that lead elsewhere are stale.
    pub serving_endpoint_ips: Vec<IpAddr>,
}

/// A health check for `externalTrafficPolicy: Local` LoadBalancer Services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    /// `spec.healthCheckNodePort`.
    pub node_port: u16,
    /// Ready endpoints on this node, counted by address (a pod serving two ports counts
    /// once); terminating ones do not count, so load balancers drain this node.
    pub local_endpoints: usize,
}

/// One Service with everything compiled for it: the unit the nft renderer diffs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceEntry {
    /// The Service.
    pub name: ServiceName,
    /// Its health check, for Local LoadBalancer Services.
    pub health_check: Option<HealthCheck>,
    /// Its ports, per family, sorted by (family, port name, protocol).
    pub ports: Vec<ServicePortState>,
}

/// The node facts the rules need, cleaned up (sorted, deduplicated, host bits cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// Addresses that accept NodePort traffic (never loopback).
    pub nodeport_ips: Vec<IpAddr>,
    /// The cluster's pod CIDRs: sources inside them are "in the cluster".
    pub cluster_cidrs: Vec<IpNet>,
    /// The Service CIDRs: traffic to an unallocated address inside them is dropped.
    pub service_cidrs: Vec<IpNet>,
}

/// What this node does with Service traffic: the output of [`compile`](super::compile).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    /// The node facts the rules use.
    pub node: NodeView,
    /// Every proxied Service, sorted by name.
    pub services: Vec<ServiceEntry>,
    /// What was wrong with the input objects (each skipped or ignored, never fatal).
    pub warnings: Vec<CompileWarning>,
}

// === impl IpFamily ===

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// Both families, IPv4 first.
    pub const ALL: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

// === impl Protocol ===

impl Protocol {
    /// The protocol's name in nft rules (`tcp`, `udp`, `sctp`).
    pub fn nft_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Every protocol.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// The IANA protocol number (`inet_proto` in nft keys).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// Parses the API's spelling (`TCP`, `UDP`, `SCTP`); unset means TCP, the API default.
    pub fn from_api(value: Option<&str>) -> Option<Protocol> {
        match value {
            None | Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            Some("SCTP") => Some(Protocol::Sctp),
            Some(_) => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

// === impl ServiceName ===

impl ServiceName {
    /// A Service name from its namespace and name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

// === impl ServicePortName ===

impl ServicePortName {
    /// A port name from its parts.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        port: impl Into<String>,
        protocol: Protocol,
    ) -> Self {
        ServicePortName {
            service: ServiceName::new(namespace, name),
            port: port.into(),
            protocol,
        }
    }
}

/// `namespace/name:port/PROTOCOL` (kube-proxy's `namespace/name:port`, plus the protocol,
/// which tells apart ports sharing a name across protocols).
impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.service, self.port, self.protocol)
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// The address DNAT rewrites to.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// Whether the endpoint may run on this node, and so may be the very pod that sent a
    /// packet DNATed here (hairpin): a pod elsewhere has its own node's proxy DNAT its
    /// packets.
    pub fn may_be_local(&self) -> bool {
        self.is_local || !self.node_known
    }
}

// === impl ServicePortState ===

impl ServicePortState {
    /// The endpoints a dispatch leads to (none for `Drop` and `Reject`).
    pub fn endpoints_for(&self, to: Dispatch) -> &[Endpoint] {
        match to {
            Dispatch::Cluster => &self.cluster_endpoints,
            Dispatch::Local => &self.local_endpoints,
            Dispatch::Drop | Dispatch::Reject => &[],
        }
    }

    /// Whether ClusterIP or external traffic can reach the Cluster endpoint set.
    pub fn uses_cluster_set(&self) -> bool {
        self.internal.to == Dispatch::Cluster
            || self.external.is_some_and(|e| {
                e.to == Dispatch::Cluster || e.short_circuit_pods || e.short_circuit_node
            })
    }

    /// Whether ClusterIP or external traffic can reach the Local endpoint set.
    pub fn uses_local_set(&self) -> bool {
        self.internal.to == Dispatch::Local
            || self.external.is_some_and(|e| e.to == Dispatch::Local)
    }

    /// Every endpoint some traffic can reach, each once, sorted: one DNAT chain each.
    pub fn reachable_endpoints(&self) -> Vec<Endpoint> {
        let mut all = Vec::new();
        if self.uses_cluster_set() {
            all.extend_from_slice(&self.cluster_endpoints);
        }
        if self.uses_local_set() {
            all.extend_from_slice(&self.local_endpoints);
        }
        all.sort_unstable();
        // The same endpoint is in both sets with the same locality, so equal addresses are
        // equal endpoints.
        all.dedup_by_key(|e| e.addr());
        all
    }
}

// === impl ServiceState ===

impl ServiceState {
    /// Every compiled Service port, in order.
    pub fn ports(&self) -> impl Iterator<Item = &ServicePortState> {
        self.services.iter().flat_map(|s| s.ports.iter())
    }

    /// A port by its display name (`ns/name:port/TCP`) and family, for tests and tools.
    pub fn port(&self, name: &str, family: IpFamily) -> Option<&ServicePortState> {
        self.ports()
            .find(|p| p.family == family && p.name.to_string() == name)
    }
}
