//! The agent's loop: read the cluster, work out this node's network, make the kernel match,
//! publish what other nodes need to know, repeat on every change.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use podnet_kernel::netlink::Netlink;
use podnet_kernel::sysctl;
use tracing::{info, warn};

use crate::cniconf::{self, CniSettings};
use crate::healthcheck::HealthCheckServer;
use crate::masq;
use crate::policy::{PolicyEnforcer, PolicyError};
use crate::routing::{self, Backend, NodeRoute, RoutingApplier, RoutingError};
use crate::serve::{self, Metrics};
use crate::services::{ProxyError, ServiceProxy};
use crate::source::{ClusterSource, SourceError};

/// The Node annotation carrying a node's VTEP MAC (flannel keeps it in `backend-data`).
pub const VTEP_MAC_ANNOTATION: &str = "podnet.dev/vtep-mac";

/// How the agent is configured (flags of `podnet agent`).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name.
    pub node: String,
    /// How pod CIDRs are routed between nodes.
    pub backend: Backend,
    /// The cluster's pod CIDRs (traffic to anything else is masqueraded).
    pub cluster_cidrs: Vec<IpNet>,
    /// The Service CIDRs (traffic to unallocated addresses in them is dropped).
    pub service_cidrs: Vec<IpNet>,
    /// Where the CNI config goes.
    pub cni_conf_dir: PathBuf,
    /// podnet-cni's IPAM directory, if not its default.
    pub cni_data_dir: Option<String>,
    /// Where `/healthz` and `/metrics` are served.
    pub serve_addr: SocketAddr,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Reading or writing cluster state.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Programming routes, neighbours, FDB entries or the vxlan device.
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// Reading the node's own addresses.
    #[error("reading this node's underlay: {0}")]
    Netlink(#[from] podnet_kernel::netlink::NetlinkError),
    /// Writing the CNI config.
    #[error("writing the CNI config: {0}")]
    Io(#[from] std::io::Error),
    /// Applying the masquerade rules.
    #[error("applying masquerade rules: {0}")]
    Nft(#[from] podnet_kernel::nft::NftError),
    /// Programming Services.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// Enforcing NetworkPolicy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// This node is not (fully) registered yet.
    #[error("{0}")]
    NotReady(String),
}

/// The sysctl that sends traffic between two ports of a bridge (two pods on one node) through
/// the IP hooks, where the policy table is. Per network namespace since Linux 5.3.
const BRIDGE_NF_CALL_IPTABLES: &str = "net/bridge/bridge-nf-call-iptables";
/// The same for IPv6.
const BRIDGE_NF_CALL_IP6TABLES: &str = "net/bridge/bridge-nf-call-ip6tables";

/// Pods on one node talk across the `cni0` bridge, which nftables' `inet` hooks only see with
/// `br_netfilter` (kube-proxy and every bridge CNI need it too). The agent turns the calls on
/// in its namespace; it does not load the module (that changes every bridge on the machine):
/// without it, it says loudly what is not enforced.
pub fn bridged_traffic_reaches_nftables() {
    for key in [BRIDGE_NF_CALL_IPTABLES, BRIDGE_NF_CALL_IP6TABLES] {
        match sysctl::get(key) {
            Ok(v) if v == "1" => {}
            Ok(_) => match sysctl::set(key, "1") {
                Ok(()) => info!(sysctl = key, "enabled, so policy sees pod-to-pod traffic"),
                Err(e) => warn!(
                    sysctl = key,
                    error = %e,
                    "cannot enable: NetworkPolicy between pods on this node is not enforced"
                ),
            },
            Err(_) => warn!(
                sysctl = key,
                "br_netfilter is not loaded (modprobe br_netfilter): NetworkPolicy between pods \
                 on this node is not enforced"
            ),
        }
    }
}

/// Runs the agent until the process ends. The kernel work happens in the calling thread's
/// network namespace (the node's).
pub fn run(config: AgentConfig, mut source: impl ClusterSource) -> Result<(), AgentError> {
    let metrics = Metrics::new();
    match serve::spawn(config.serve_addr, Arc::clone(&metrics)) {
        Ok(addr) => info!(%addr, "serving /healthz and /metrics"),
        Err(e) => {
            warn!(addr = %config.serve_addr, error = %e, "cannot serve /healthz and /metrics")
        }
    }
    let mut applier = RoutingApplier::new()?;
    let mut proxy = ServiceProxy::new();
    let mut policy = PolicyEnforcer::new();
    let mut health_checks = HealthCheckServer::new(Arc::clone(&metrics));
    let mut last_masq = String::new();
    info!(node = %config.node, backend = ?config.backend, "agent starting");
    bridged_traffic_reaches_nftables();
    loop {
        let started = Instant::now();
        // Read before the sync: an attachment arriving during it wakes the next one.
        let attached = metrics.attachments.generation();
        let outcome = sync(
            &config,
            &mut source,
            &mut applier,
            &mut proxy,
            &mut policy,
            &mut last_masq,
            &metrics,
        );
        metrics.record_sync(outcome.is_ok(), started.elapsed());
        health_checks.update(proxy.health_checks());
        if let Err(e) = &outcome {
            warn!(error = %format!("{e:#}"), "sync failed; retrying");
        }
        let wait = if outcome.is_ok() {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(1)
        };
        // A pod attached by the CNI plugin is a change too: its ADD waits for its policy.
        let deadline = Instant::now() + wait;
        while !source
            .wait_for_change(ATTACH_POLL.min(deadline.saturating_duration_since(Instant::now())))
            && metrics.attachments.generation() == attached
            && Instant::now() < deadline
        {}
    }
}

/// How often the loop looks for pods the CNI plugin attached while it waits for changes.
const ATTACH_POLL: Duration = Duration::from_millis(20);

/// One pass: routes, CNI config, Services, NetworkPolicy, masquerade, Node publication.
fn sync(
    config: &AgentConfig,
    source: &mut impl ClusterSource,
    applier: &mut RoutingApplier,
    proxy: &mut ServiceProxy,
    policy: &mut PolicyEnforcer,
    last_masq: &mut String,
    metrics: &Metrics,
) -> Result<(), AgentError> {
    let snapshot = source.snapshot()?;
    let me_node = snapshot
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(config.node.as_str()))
        .ok_or_else(|| {
            AgentError::NotReady(format!("Node {} is not in the cluster (yet)", config.node))
        })?;
    let mut me = node_route(me_node).ok_or_else(|| {
        AgentError::NotReady(format!(
            "Node {} has no podCIDR or InternalIP yet",
            config.node
        ))
    })?;
    let (underlay_prefix, underlay_mtu) = underlay_of(me.underlay_ip)?;
    me.underlay_prefix = underlay_prefix;
    me.vtep_mac = Some(routing::vtep_mac(&config.node));
    let peers: Vec<NodeRoute> = snapshot
        .nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(config.node.as_str()))
        .filter_map(node_route)
        .map(|mut p| {
            p.underlay_prefix = underlay_prefix;
            p
        })
        .collect();

    let desired = routing::desired(config.backend, &me, &peers, underlay_mtu);
    let report = applier.apply(&desired)?;
    if report.changed() {
        info!(?report, "routing updated");
    }
    metrics.routes.set(desired.routes.len() as i64);
    metrics.peers.set(peers.len() as i64);

    let conf = cniconf::render(&CniSettings {
        pod_cidrs: me.pod_cidrs.clone(),
        mtu: desired.pod_mtu,
        data_dir: config.cni_data_dir.clone(),
        policy_gate: Some(policy_gate_addr(config.serve_addr)),
    });
    if cniconf::write(&config.cni_conf_dir, &conf)? {
        info!(dir = %config.cni_conf_dir.display(), "CNI config written");
    }

    let facts = podnet_model::service::NodeFacts {
        name: config.node.clone(),
        zone: me_node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("topology.kubernetes.io/zone").cloned()),
        node_ips: vec![me.underlay_ip],
        cluster_cidrs: config.cluster_cidrs.clone(),
        service_cidrs: config.service_cidrs.clone(),
    };
    proxy.sync(
        &snapshot.services,
        &snapshot.endpoint_slices,
        &facts,
        metrics,
    )?;
    policy.sync(&snapshot, metrics)?;

    let tunnel_port = desired.vxlan.as_ref().map(|v| v.port);
    let script = masq::render(&me.pod_cidrs, &config.cluster_cidrs, tunnel_port);
    if *last_masq != script {
        podnet_kernel::nft::apply(&script)?;
        *last_masq = script;
    }

    let mut annotations = BTreeMap::new();
    if let Some(mac) = me.vtep_mac {
        annotations.insert(
            VTEP_MAC_ANNOTATION.to_owned(),
            podnet_kernel::netlink::format_mac(&mac),
        );
    }
    source.publish_node(&config.node, &annotations, true)?;
    Ok(())
}

/// Where podnet-cni reaches this agent: its endpoint, on loopback when it listens on every
/// address.
fn policy_gate_addr(serve: SocketAddr) -> SocketAddr {
    let ip = match serve.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, serve.port())
}

/// What routing needs to know about a Node; `None` until it has a pod CIDR and an address.
fn node_route(node: &Node) -> Option<NodeRoute> {
    let spec = node.spec.as_ref()?;
    let mut pod_cidrs: Vec<IpNet> = spec
        .pod_cidrs
        .iter()
        .flatten()
        .filter_map(|c| c.parse().ok())
        .collect();
    if pod_cidrs.is_empty() {
        pod_cidrs.push(spec.pod_cidr.as_ref()?.parse().ok()?);
    }
    let underlay_ip: IpAddr = node
        .status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()?;
    let vtep_mac = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(VTEP_MAC_ANNOTATION))
        .and_then(|m| parse_mac(m));
    Some(NodeRoute {
        name: node.metadata.name.clone()?,
        underlay_ip,
        underlay_prefix: 0,
        pod_cidrs,
        vtep_mac,
    })
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    bytes.try_into().ok()
}

/// The prefix length of the underlay subnet holding `ip`, and the MTU of its link, read from
/// the kernel.
fn underlay_of(ip: IpAddr) -> Result<(u8, u32), AgentError> {
    let mut nl = Netlink::open()?;
    let (index, net) = nl
        .addresses()?
        .into_iter()
        .find(|(_, a)| a.addr() == ip)
        .ok_or_else(|| {
            AgentError::NotReady(format!("no interface of this node has its InternalIP {ip}"))
        })?;
    let mtu = nl
        .links()?
        .into_iter()
        .find(|l| l.index == index)
        .map_or(1500, |l| l.mtu);
    Ok((net.prefix_len(), mtu))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    #[test]
    fn node_route_reads_pod_cidrs_address_and_vtep_mac() {
        let mut node = Node::default();
        node.metadata.name = Some("node-2".into());
        node.metadata.annotations = Some(BTreeMap::from([(
            VTEP_MAC_ANNOTATION.to_owned(),
            "02:aa:bb:cc:dd:ee".to_owned(),
        )]));
        node.spec = Some(NodeSpec {
            pod_cidr: Some("10.244.2.0/24".into()),
            ..Default::default()
        });
        node.status = Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: "192.168.100.12".into(),
            }]),
            ..Default::default()
        });
        let r = node_route(&node).unwrap();
        assert_eq!(r.pod_cidrs, vec!["10.244.2.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(r.underlay_ip.to_string(), "192.168.100.12");
        assert_eq!(r.vtep_mac, Some([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]));
        node.spec = None;
        assert!(node_route(&node).is_none());
    }
}
