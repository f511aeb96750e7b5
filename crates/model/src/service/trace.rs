//! The packet tracer: what the service proxy does with one new connection's first packet,
//! read from the [`ServiceState`] alone.
//!
//! It walks the same steps as the nft ruleset (and as kube-proxy's nftables mode), in hook
//! order: the load-balancer source-range firewall (before DNAT), service dispatch (DNAT,
//! with masquerade marks), then the filter checks for packets nothing DNATed (no endpoints,
//! undefined ports of a ClusterIP, unallocated ClusterIPs). The renderer's tests check that
//! the rendered ruleset traces the same way.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use super::state::{
    Dispatch, Endpoint, ExternalDispatch, IpFamily, Protocol, ServicePortName, ServicePortState,
    ServiceState,
};

/// Where a packet comes from.
///
/// Only `Node` changes the outcome (kube-proxy's `fib saddr type local`: the node's own
/// traffic). Pods and outside hosts are told apart by their source address, as kube-proxy's
/// cluster-CIDR detector does, so a pod on another node routed through this one counts as
/// in the cluster too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Origin {
    /// A pod on this node; the packet's `src` is its IP.
    Pod,
    /// This node itself (a host-network process).
    Node,
    /// Anything else: another node, a pod elsewhere, a host outside the cluster.
    External,
}

/// A virtual packet: the first packet of a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub dst_port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Where it comes from.
    pub from: Origin,
}

/// What the proxy does with a packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Not service traffic: the proxy lets it pass untouched.
    NotAService,
    /// DNAT to one of `targets`, drawn at random (or the client's sticky endpoint).
    Dnat {
        /// The Service port that caught it.
        service: ServicePortName,
        /// Which of its frontends the packet was sent to.
        frontend: Frontend,
        /// The endpoints the random choice draws from, sorted.
        targets: Vec<DnatTarget>,
        /// `sessionAffinity: ClientIP` timeout: the chosen endpoint is remembered for the
        /// client's address for this many seconds.
        affinity_timeout: Option<u32>,
    },
    /// Rejected at once: TCP reset for TCP, ICMP port unreachable otherwise.
    Reject {
        /// Why.
        reason: RejectReason,
    },
    /// Dropped silently.
    Drop {
        /// Why.
        reason: DropReason,
    },
}

/// The kind of address a packet reached a Service port by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Frontend {
    /// The cluster IP.
    ClusterIp,
    /// An `spec.externalIPs` address.
    ExternalIp,
    /// A `status.loadBalancer.ingress` address.
    LoadBalancerIp,
    /// A NodePort on a NodePort address of this node.
    NodePort,
}

/// One endpoint a DNAT may pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DnatTarget {
    /// The new destination.
    pub endpoint: SocketAddr,
    /// Whether the source is masqueraded to the node's address on the way out.
    pub masquerade: bool,
}

/// Why a packet is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RejectReason {
    /// The Service port has no usable endpoint anywhere.
    NoEndpoints(ServicePortName),
    /// A cluster IP, but not on a port (and protocol) the Service defines.
    UndefinedPort,
}

/// Why a packet is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DropReason {
    /// A Local traffic policy and no endpoint on this node (the Service has some elsewhere).
    NoLocalEndpoints(ServicePortName),
    /// A load-balancer IP, from a source outside `loadBalancerSourceRanges`.
    SourceRange(ServicePortName),
    /// An address in a Service CIDR that no Service has.
    UnallocatedClusterIp,
}

/// Endpoints clients stick to (`sessionAffinity: ClientIP`), as the nft affinity sets
/// remember them. The model has no clock: `forget` plays the timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AffinityTable {
    entries: BTreeMap<(ServicePortName, IpAddr), SocketAddr>,
}

/// Traces a packet with no remembered affinity.
pub fn trace(state: &ServiceState, packet: &Packet) -> Verdict {
    trace_with_affinity(state, packet, &AffinityTable::default())
}

/// Traces a packet; a client that `affinity` remembers for the Service port goes to its
/// endpoint again while that endpoint is still in the set the packet is dispatched to.
pub fn trace_with_affinity(
    state: &ServiceState,
    packet: &Packet,
    affinity: &AffinityTable,
) -> Verdict {
    let family = IpFamily::of(packet.dst);
    if IpFamily::of(packet.src) != family {
        return Verdict::NotAService;
    }
    let tracer = Tracer {
        state,
        packet,
        affinity,
        family,
    };
    tracer.run()
}

// === impl AffinityTable ===

impl AffinityTable {
    /// Remembers that `client` was sent to `endpoint` by `service`.
    pub fn remember(&mut self, service: &ServicePortName, client: IpAddr, endpoint: SocketAddr) {
        self.entries.insert((service.clone(), client), endpoint);
    }

    /// Forgets `client`'s endpoint for `service` (its timeout expired).
    pub fn forget(&mut self, service: &ServicePortName, client: IpAddr) {
        self.entries.remove(&(service.clone(), client));
    }

    fn get(&self, service: &ServicePortName, client: IpAddr) -> Option<SocketAddr> {
        self.entries.get(&(service.clone(), client)).copied()
    }
}

// === impl Verdict ===

impl Verdict {
    /// The endpoints of a DNAT verdict (empty otherwise).
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        match self {
            Verdict::Dnat { targets, .. } => targets.iter().map(|t| t.endpoint).collect(),
            _ => Vec::new(),
        }
    }
}

struct Tracer<'a> {
    state: &'a ServiceState,
    packet: &'a Packet,
    affinity: &'a AffinityTable,
    family: IpFamily,
}

impl Tracer<'_> {
    fn run(&self) -> Verdict {
        if let Some(verdict) = self.firewall() {
            return verdict;
        }
        if let Some(verdict) = self.dispatch() {
            return verdict;
        }
        self.unallocated()
    }

    /// `loadBalancerSourceRanges`, checked before DNAT on load-balancer IPs only (NodePorts
    /// are not subject to it, as in kube-proxy).
    fn firewall(&self) -> Option<Verdict> {
        let p = self.packet;
        let port = self.ports().find(|s| {
            !s.load_balancer_source_ranges.is_empty()
                && s.load_balancer_ips.contains(&p.dst)
                && self.matches_port(s)
        })?;
        let allowed = port
            .load_balancer_source_ranges
            .iter()
            .any(|r| r.contains(&p.src))
            || (port.source_ranges_allow_node && port.load_balancer_ips.contains(&p.src));
        (!allowed).then(|| Verdict::Drop {
            reason: DropReason::SourceRange(port.name.clone()),
        })
    }

    /// The `services` chain: ClusterIPs, externalIPs and load-balancer IPs by address,
    /// then NodePorts on the NodePort addresses.
    fn dispatch(&self) -> Option<Verdict> {
        let p = self.packet;
        for port in self.ports().filter(|s| self.matches_port(s)) {
            if port.cluster_ip == p.dst {
                return Some(self.internal(port));
            }
            if port.external_ips.contains(&p.dst) {
                return Some(self.external(port, Frontend::ExternalIp));
            }
            if port.load_balancer_ips.contains(&p.dst) {
                return Some(self.external(port, Frontend::LoadBalancerIp));
            }
        }
        if !self.state.node.nodeport_ips.contains(&p.dst) {
            return None;
        }
        let port = self
            .ports()
            .find(|s| s.node_port == Some(p.dst_port) && s.name.protocol == p.protocol)?;
        Some(self.external(port, Frontend::NodePort))
    }

    fn internal(&self, port: &ServicePortState) -> Verdict {
        let masquerade = port.internal.masquerade_off_cluster && !self.in_cluster();
        self.to(port, Frontend::ClusterIp, port.internal.to, masquerade)
    }

    fn external(&self, port: &ServicePortState, frontend: Frontend) -> Verdict {
        let Some(ext) = port.external else {
            return Verdict::NotAService;
        };
        let ExternalDispatch {
            to,
            masquerade,
            short_circuit_pods,
            short_circuit_node,
        } = ext;
        if to == Dispatch::Reject {
            return self.to(port, frontend, to, false);
        }
        if short_circuit_pods && self.in_cluster() {
            return self.to(port, frontend, Dispatch::Cluster, false);
        }
        if short_circuit_node && self.packet.from == Origin::Node {
            return self.to(port, frontend, Dispatch::Cluster, true);
        }
        self.to(port, frontend, to, masquerade)
    }

    fn to(
        &self,
        port: &ServicePortState,
        frontend: Frontend,
        to: Dispatch,
        masquerade: bool,
    ) -> Verdict {
        match to {
            Dispatch::Reject => Verdict::Reject {
                reason: RejectReason::NoEndpoints(port.name.clone()),
            },
            Dispatch::Drop => Verdict::Drop {
                reason: DropReason::NoLocalEndpoints(port.name.clone()),
            },
            Dispatch::Cluster | Dispatch::Local => {
                let endpoints = port.endpoints_for(to);
                let sticky = port
                    .affinity_timeout
                    .and_then(|_| self.affinity.get(&port.name, self.packet.src))
                    .and_then(|addr| endpoints.iter().find(|e| e.addr() == addr));
                let chosen: Vec<&Endpoint> = match sticky {
                    Some(e) => vec![e],
                    None => endpoints.iter().collect(),
                };
                let mut targets: Vec<DnatTarget> = chosen
                    .into_iter()
                    .map(|e| DnatTarget {
                        endpoint: e.addr(),
                        // Hairpin: a pod reaching itself through its Service must see the
                        // reply come from the Service, so it is masqueraded. (Only a pod on
                        // this node can: elsewhere its own node's proxy DNATs.)
                        masquerade: masquerade || (e.ip == self.packet.src && e.may_be_local()),
                    })
                    .collect();
                targets.sort_unstable();
                Verdict::Dnat {
                    service: port.name.clone(),
                    frontend,
                    targets,
                    affinity_timeout: port.affinity_timeout,
                }
            }
        }
    }

    /// Nothing DNATed the packet: a cluster IP on an undefined port is rejected, an
    /// unallocated address in a Service CIDR dropped, anything else passes.
    fn unallocated(&self) -> Verdict {
        let dst = self.packet.dst;
        if self.ports().any(|s| s.cluster_ip == dst) {
            return Verdict::Reject {
                reason: RejectReason::UndefinedPort,
            };
        }
        if self
            .state
            .node
            .service_cidrs
            .iter()
            .any(|c| c.contains(&dst))
        {
            return Verdict::Drop {
                reason: DropReason::UnallocatedClusterIp,
            };
        }
        Verdict::NotAService
    }

    fn ports(&self) -> impl Iterator<Item = &ServicePortState> {
        let family = self.family;
        self.state.ports().filter(move |s| s.family == family)
    }

    fn matches_port(&self, port: &ServicePortState) -> bool {
        port.port == self.packet.dst_port && port.name.protocol == self.packet.protocol
    }

    fn in_cluster(&self) -> bool {
        self.state
            .node
            .cluster_cidrs
            .iter()
            .any(|c| c.contains(&self.packet.src))
    }
}

#[cfg(test)]
mod tests;
