//! NetworkPolicy and ClusterNetworkPolicy enforcement: the cluster's policies, pods,
//! namespaces and nodes in, this node's `inet podnet_policy` table out (the pure part is
//! `podnet_model::policy`).
//!
//! Every sync compiles the whole policy state and renders the table for this node's pods; the
//! script goes to the kernel only when it differs from the last one applied. The script
//! replaces the table in one transaction, so the first sync of a restarted agent adopts what
//! its predecessor left without a moment in which pods are unprotected.
//!
//! After each successful sync the pods the kernel's ruleset now accounts for are published
//! ([`Programmed`]), so the kubelet can hold a new pod's containers until its isolation is in
//! place (`GET /policy/programmed?ip=…` on the agent's endpoint).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::RwLock;
use std::time::Instant;

use podnet_kernel::netlink::{Netlink, NetlinkError};
use podnet_kernel::nft::NftError;
use podnet_model::policy::{self, NodeView, PolicyInputs, PolicyState};
use tracing::{info, warn};

use crate::serve::Metrics;
use crate::source::Snapshot;

/// Why policy could not be enforced.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Opening a netlink socket to read this node's addresses.
    #[error("opening netlink to read this node's addresses for policy: {0}")]
    Open(#[from] std::io::Error),
    /// Reading this node's addresses (they decide which pods are local).
    #[error("reading this node's addresses for policy: {0}")]
    Netlink(#[from] NetlinkError),
    /// `nft` rejected the rendered table; the kernel keeps the previous one.
    #[error("applying the network policy table: {0}")]
    Nft(#[from] NftError),
}

/// The enforcer's memory between syncs: the last script the kernel accepted.
#[derive(Debug, Default)]
pub struct PolicyEnforcer {
    applied: Option<String>,
}

/// The local pods whose policy is in the kernel, by address: what the ruleset last applied
/// was rendered from. Shared between the sync loop and the endpoint.
#[derive(Debug, Default)]
pub struct Programmed {
    pods: RwLock<BTreeMap<IpAddr, String>>,
}

// === impl PolicyEnforcer ===

impl PolicyEnforcer {
    /// An enforcer that has applied nothing yet (its first sync always applies).
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes this node's policy table match `snapshot`. `metrics.programmed` names the local
    /// pods the kernel's ruleset accounts for once this returns `Ok`.
    pub fn sync(&mut self, snapshot: &Snapshot, metrics: &Metrics) -> Result<(), PolicyError> {
        let started = Instant::now();
        let inputs = PolicyInputs {
            network_policies: &snapshot.network_policies,
            cluster_network_policies: &snapshot.cluster_network_policies,
            pods: &snapshot.pods,
            namespaces: &snapshot.namespaces,
            nodes: &snapshot.nodes,
        };
        let state = policy::compile(&inputs);
        let view = NodeView::for_node_ips(&state, &node_addresses()?);
        let script = policy::render_full(&state, &view);
        if self.applied.as_deref() != Some(script.as_str()) {
            podnet_kernel::nft::apply(&script)?;
            metrics
                .policy_apply_duration
                .observe(started.elapsed().as_secs_f64());
            for w in &state.warnings {
                warn!(warning = %w, "network policy skipped in part");
            }
            info!(
                local_pod_addresses = view.local_pod_ips.len(),
                bytes = script.len(),
                first = self.applied.is_none(),
                "network policy table applied"
            );
            self.applied = Some(script);
        }
        let local = local_pods(&state, &view);
        let pods: BTreeSet<&String> = local.values().collect();
        metrics.policy_pods.set(pods.len() as i64);
        metrics.programmed.set(local);
        Ok(())
    }
}

/// Every address of this node (the current network namespace) but loopback and IPv6
/// link-local: the underlay address pods' `status.hostIPs` name, and the bridge gateway
/// probes come from.
fn node_addresses() -> Result<Vec<IpAddr>, PolicyError> {
    let mut ips: Vec<IpAddr> = Netlink::open()?
        .addresses()?
        .into_iter()
        .map(|(_, net)| net.addr())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback(),
            // Link-local: one per veth, never a forwarded packet's source.
            IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local(),
        })
        .collect();
    ips.sort();
    ips.dedup();
    Ok(ips)
}

/// `address → namespace/name` of the pods the view renders chains for.
fn local_pods(state: &PolicyState, view: &NodeView) -> BTreeMap<IpAddr, String> {
    state
        .pods
        .iter()
        .flat_map(|p| {
            p.ips
                .iter()
                .filter(|ip| view.local_pod_ips.contains(ip))
                .map(|ip| (*ip, p.id()))
        })
        .collect()
}

// === impl Programmed ===

impl Programmed {
    /// Replaces the published pods.
    pub fn set(&self, pods: BTreeMap<IpAddr, String>) {
        if let Ok(mut current) = self.pods.write() {
            *current = pods;
        }
    }

    /// `namespace/name` of the local pod with address `ip`, if the ruleset in the kernel
    /// accounts for it.
    pub fn pod(&self, ip: IpAddr) -> Option<String> {
        self.pods.read().ok()?.get(&ip).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HostIP, Pod, PodIP, PodSpec, PodStatus};

    fn pod(ns: &str, name: &str, ip: &str, host: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.spec = Some(PodSpec::default());
        p.status = Some(PodStatus {
            pod_ips: Some(vec![PodIP { ip: ip.into() }]),
            host_ips: Some(vec![HostIP { ip: host.into() }]),
            ..Default::default()
        });
        p
    }

    #[test]
    fn programmed_names_only_this_nodes_pods() {
        let pods = [
            pod("x", "a", "10.244.1.2", "192.168.100.11"),
            pod("x", "b", "10.244.2.2", "192.168.100.12"),
        ];
        let inputs = PolicyInputs {
            pods: &pods,
            ..Default::default()
        };
        let state = policy::compile(&inputs);
        let view = NodeView::for_node_ips(&state, &["192.168.100.11".parse().unwrap()]);
        let programmed = Programmed::default();
        programmed.set(local_pods(&state, &view));
        assert_eq!(
            programmed.pod("10.244.1.2".parse().unwrap()).as_deref(),
            Some("x/a")
        );
        assert_eq!(programmed.pod("10.244.2.2".parse().unwrap()), None);
    }
}
