//! NetworkPolicy and ClusterNetworkPolicy enforcement: the cluster's policies, pods,
//! namespaces and nodes in, this node's `inet podnet_policy` table out (the pure part is
//! `podnet_model::policy`).
//!
//! Every sync compiles the whole policy state and renders the table for this node's pods; the
//! kernel hears of it only when it differs from the last one applied, and then only of the
//! difference (elements added and removed, chains refilled) in one transaction. The first sync
//! (and any whose changes the kernel refuses, say because the table was deleted behind the
//! agent's back) replaces the whole table in one transaction, so a restarted agent adopts
//! what its predecessor left without a moment in which pods are unprotected.
//!
//! After each successful sync the pods the kernel's ruleset now accounts for are published
//! ([`Programmed`], `GET /policy/programmed?ip=…` on the agent's endpoint). podnet-cni's ADD
//! reports a new pod's addresses before the API has them (`POST /policy/attach?…`,
//! [`Attachments`]) and returns only once they are programmed, as Calico's CNI plugin waits
//! for Felix: the runtime starts containers after ADD, so none runs unprotected. Until the
//! kubelet writes `status.podIPs`, the agent takes the addresses from the attachment.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use k8s_openapi::api::core::v1::{HostIP, Pod, PodIP};

use podnet_kernel::netlink::{Netlink, NetlinkError};
use podnet_kernel::nft::NftError;
use podnet_model::policy::{self, NodeView, PolicyInputs, PolicyState, PolicyTable};
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

/// The enforcer's memory between syncs: the last table the kernel accepted.
#[derive(Debug, Default)]
pub struct PolicyEnforcer {
    applied: Option<PolicyTable>,
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
        let node_ips = node_addresses()?;
        let pods = metrics.attachments.fill_in(&snapshot.pods, &node_ips);
        let inputs = PolicyInputs {
            network_policies: &snapshot.network_policies,
            cluster_network_policies: &snapshot.cluster_network_policies,
            pods: &pods,
            namespaces: &snapshot.namespaces,
            nodes: &snapshot.nodes,
        };
        let state = policy::compile(&inputs);
        let view = NodeView::for_node_ips(&state, &node_ips);
        let table = policy::render(&state, &view);
        if self.applied.as_ref() != Some(&table) {
            let changed = self.applied.as_ref().and_then(|old| {
                let changes = table.changes_from(old);
                match podnet_kernel::nft::apply(&changes) {
                    Ok(()) => Some(changes.len()),
                    Err(e) => {
                        warn!(error = %e, "policy changes refused; replacing the whole table");
                        None
                    }
                }
            });
            let bytes = match changed {
                Some(bytes) => bytes,
                None => {
                    let script = table.script();
                    podnet_kernel::nft::apply(&script)?;
                    script.len()
                }
            };
            metrics
                .policy_apply_duration
                .observe(started.elapsed().as_secs_f64());
            for w in &state.warnings {
                warn!(warning = %w, "network policy skipped in part");
            }
            info!(
                local_pod_addresses = view.local_pod_ips.len(),
                bytes,
                first = self.applied.is_none(),
                "network policy table applied"
            );
            self.applied = Some(table);
        }
        let local = local_pods(&state, &view);
        let pods: BTreeSet<&String> = local.values().collect();
        metrics.policy_pods.set(pods.len() as i64);
        metrics.programmed.set(local);
        Ok(())
    }
}

/// Every address of this node (the current network namespace) but those on `lo` and IPv6
/// link-local: the underlay address pods' `status.hostIPs` name, and the bridge gateway probes
/// come from. Addresses on `lo` are services the node hosts (the node-local DNS takes the
/// cluster DNS address there), not sources whose traffic is the node's own.
fn node_addresses() -> Result<Vec<IpAddr>, PolicyError> {
    let mut netlink = Netlink::open()?;
    let loopback: BTreeSet<u32> = netlink
        .links()?
        .into_iter()
        .filter(|l| l.name == "lo")
        .map(|l| l.index)
        .collect();
    let mut ips: Vec<IpAddr> = netlink
        .addresses()?
        .into_iter()
        .filter(|(index, _)| !loopback.contains(index))
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

/// Addresses podnet-cni reported for pods whose `status.podIPs` the agent has not seen yet,
/// by `(namespace, name)`. Shared between the endpoint and the sync loop.
#[derive(Debug, Default)]
pub struct Attachments {
    pods: RwLock<BTreeMap<(String, String), Vec<IpAddr>>>,
    generation: AtomicU64,
}

/// At most this many attachments wait for their pods' status (a node runs a few hundred pods).
const MAX_ATTACHMENTS: usize = 4096;

// === impl Attachments ===

impl Attachments {
    /// Records that pod `namespace/name` has `ips` on this node; false when full.
    pub fn attach(&self, namespace: &str, name: &str, ips: Vec<IpAddr>) -> bool {
        let Ok(mut pods) = self.pods.write() else {
            return false;
        };
        let key = (namespace.to_owned(), name.to_owned());
        if pods.len() >= MAX_ATTACHMENTS && !pods.contains_key(&key) {
            return false;
        }
        pods.insert(key, ips);
        self.generation.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Changes with every attachment, so the sync loop can wake for it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// `pods`, with the attached addresses (and this node as host) filled in where the status
    /// has none yet. Attachments whose pod has its own addresses by now, or is gone, are
    /// dropped.
    fn fill_in(&self, pods: &[Pod], node_ips: &[IpAddr]) -> Vec<Pod> {
        let Ok(mut attached) = self.pods.write() else {
            return pods.to_vec();
        };
        let mut still_waiting = BTreeMap::new();
        let filled = pods
            .iter()
            .map(|pod| {
                let key = (
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.metadata.name.clone().unwrap_or_default(),
                );
                let has_ips = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ips.as_ref())
                    .is_some_and(|ips| !ips.is_empty());
                match attached.remove(&key) {
                    Some(ips) if !has_ips => {
                        let mut pod = pod.clone();
                        let status = pod.status.get_or_insert_with(Default::default);
                        // Being (re)started, whatever an earlier failed start left.
                        status.phase = Some("Pending".to_owned());
                        status.pod_ip = ips.first().map(IpAddr::to_string);
                        status.pod_ips =
                            Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
                        status.host_ips = Some(
                            node_ips
                                .iter()
                                .map(|ip| HostIP { ip: ip.to_string() })
                                .collect(),
                        );
                        still_waiting.insert(key, ips);
                        pod
                    }
                    _ => pod.clone(),
                }
            })
            .collect();
        *attached = still_waiting;
        filled
    }
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

    #[test]
    fn attachments_fill_in_pods_without_addresses_until_their_status_has_them() {
        let attachments = Attachments::default();
        let before = attachments.generation();
        assert!(attachments.attach("x", "a", vec!["10.244.1.7".parse().unwrap()]));
        assert_ne!(attachments.generation(), before);
        let node: IpAddr = "192.168.100.11".parse().unwrap();

        // A pod whose earlier start failed: no addresses, phase Failed.
        let mut failed = pod("x", "a", "10.244.1.7", "192.168.100.11");
        let status = failed.status.as_mut().unwrap();
        status.pod_ips = None;
        status.host_ips = None;
        status.phase = Some("Failed".into());
        let filled = attachments.fill_in(std::slice::from_ref(&failed), &[node]);
        let status = filled[0].status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, "10.244.1.7");
        assert_eq!(status.host_ips.as_ref().unwrap()[0].ip, "192.168.100.11");
        let state = policy::compile(&PolicyInputs {
            pods: &filled,
            ..Default::default()
        });
        let view = NodeView::for_node_ips(&state, &[node]);
        assert_eq!(
            local_pods(&state, &view)
                .get(&"10.244.1.7".parse().unwrap())
                .map(String::as_str),
            Some("x/a")
        );

        // Once the kubelet wrote the addresses the attachment is no longer needed.
        let running = pod("x", "a", "10.244.1.7", "192.168.100.11");
        attachments.fill_in(std::slice::from_ref(&running), &[node]);
        assert!(
            attachments.fill_in(&[failed], &[node])[0]
                .status
                .as_ref()
                .unwrap()
                .pod_ips
                .is_none()
        );
    }
}
