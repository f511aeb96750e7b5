//! Which UDP conntrack entries are stale: kube-proxy's conntrack reconciler
//! (pkg/proxy/conntrack/cleanup.go), rewritten.
//!
//! A UDP "connection" is a conntrack entry every packet refreshes, so a client that keeps
//! sending to a Service whose endpoint went away keeps being DNATed to the dead endpoint.
//! After each sync the applier lists the UDP entries and deletes those whose original
//! destination is a UDP Service's address (ClusterIP, externalIP, load-balancer IP) or
//! NodePort but whose reply comes from an address that is not a *serving* endpoint of that
//! port. Traffic policies, topology and terminating state are deliberately ignored, so UDP
//! flows live exactly as long as TCP ones would. A Service scaled to zero has no serving
//! endpoint, so all of its entries are stale (the upstream regression kubernetes#139628).
//!
//! Unlike upstream, which keys service addresses by IP alone (two UDP ports of one Service
//! overwrite each other's endpoint sets), entries are matched by address *and* port.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use super::state::{IpFamily, Protocol, ServiceState};

/// A conntrack entry, as much of it as the reconciler reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ConntrackEntry {
    /// The entry's protocol.
    pub protocol: Protocol,
    /// Original direction destination address (`--orig-dst`).
    pub orig_dst: IpAddr,
    /// Original direction destination port (`--orig-port-dst`).
    pub orig_dst_port: u16,
    /// Reply direction source address (`--reply-src`): where the flow was DNATed to.
    pub reply_src: IpAddr,
}

/// A stale entry to delete, with the filter that selects it (and its like).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum StaleFlow {
    /// UDP entries to `dst:port` answered by `reply_src`.
    ServiceIp {
        /// `--orig-dst`.
        dst: IpAddr,
        /// `--orig-port-dst`.
        port: u16,
        /// `--reply-src`.
        reply_src: IpAddr,
    },
    /// UDP entries to NodePort `port` answered by `reply_src`.
    NodePort {
        /// `--orig-port-dst`.
        port: u16,
        /// `--reply-src`.
        reply_src: IpAddr,
    },
}

/// The stale UDP flows among `entries`, each filter once, sorted.
pub fn stale_udp_flows(state: &ServiceState, entries: &[ConntrackEntry]) -> Vec<StaleFlow> {
    let mut by_address: HashMap<(IpAddr, u16), HashSet<IpAddr>> = HashMap::new();
    let mut by_node_port: HashMap<(IpFamily, u16), HashSet<IpAddr>> = HashMap::new();
    for port in state.ports().filter(|p| p.name.protocol == Protocol::Udp) {
        let serving: HashSet<IpAddr> = port.serving_endpoint_ips.iter().copied().collect();
        let addresses = std::iter::once(&port.cluster_ip)
            .chain(&port.external_ips)
            .chain(&port.load_balancer_ips);
        for ip in addresses {
            by_address.insert((*ip, port.port), serving.clone());
        }
        if let Some(node_port) = port.node_port {
            by_node_port.insert((port.family, node_port), serving);
        }
    }

    let mut stale = Vec::new();
    for entry in entries.iter().filter(|e| e.protocol == Protocol::Udp) {
        if let Some(serving) = by_address.get(&(entry.orig_dst, entry.orig_dst_port))
            && !serving.contains(&entry.reply_src)
        {
            stale.push(StaleFlow::ServiceIp {
                dst: entry.orig_dst,
                port: entry.orig_dst_port,
                reply_src: entry.reply_src,
            });
        }
        let family = IpFamily::of(entry.orig_dst);
        if let Some(serving) = by_node_port.get(&(family, entry.orig_dst_port))
            && state.node.nodeport_ips.contains(&entry.orig_dst)
            && !serving.contains(&entry.reply_src)
        {
            stale.push(StaleFlow::NodePort {
                port: entry.orig_dst_port,
                reply_src: entry.reply_src,
            });
        }
    }
    stale.sort_unstable();
    stale.dedup();
    stale
}

#[cfg(test)]
mod tests;
