//! The lab's machines and wires: nodes, an underlay switch, an outside host and (for the
//! `cross-subnet` backend) a router, each a network namespace.
//!
//! ```text
//!               switch namespace: br0 (192.168.100.0/24)   [br1 (192.168.101.0/24)]
//!                 │port1   │port2   │port3     │outside   │router-a │router-b
//!   node-1 eth0 ──┘        │        │          │          │         │
//!   node-2 eth0 ───────────┘        │          │          └─ router ┘  (cross-subnet only:
//!   node-3 eth0 ────────────────────┘          │                         node-3 sits on br1)
//!   outside eth0 ──────────────────────────────┘
//! ```
//!
//! The plan ([`LabConfig`]) is pure data, saved as `lab.json`; [`build_node`] and friends turn it
//! into namespaces and links with podnet's own netlink client.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;

use anyhow::{Context, Result, bail};
use ipnet::{IpNet, Ipv4Net};
use podnet_kernel::netlink::{Netlink, RouteProto, RouteSpec, VethEnd};
use podnet_kernel::{netns, sysctl};
use serde::{Deserialize, Serialize};

use crate::paths::LabPaths;

/// The pod-to-pod routing backends the agent offers.
pub const BACKENDS: &[&str] = &["host-gw", "vxlan", "cross-subnet"];

/// The lab's plan: what exists, with which addresses. Saved as `lab.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabConfig {
    /// `host-gw`, `vxlan` or `cross-subnet`.
    pub backend: String,
    /// Pod addresses of the whole cluster; each node gets a slice.
    pub cluster_cidr: Ipv4Net,
    /// The prefix length of a node's pod CIDR.
    pub node_cidr_prefix: u8,
    /// ClusterIP range (for Services).
    pub service_cidr: Ipv4Net,
    /// The nodes, in order of creation.
    pub nodes: Vec<NodeConfig>,
    /// How many nodes were ever added (names and addresses are never reused).
    pub nodes_created: u32,
    /// Underlay subnets: one, or two joined by the router for `cross-subnet`.
    pub underlays: Vec<Underlay>,
    /// The outside host's underlay address.
    pub outside_ip: Ipv4Addr,
    /// The cloud's pool of load-balancer addresses: type=LoadBalancer Services get their
    /// `status.loadBalancer.ingress` IP from it, and the outside host routes it to the nodes.
    /// (Labs saved before it existed load with the default.)
    #[serde(default = "default_lb_pool")]
    pub lb_pool: Ipv4Net,
    /// Processes the lab started (agents, kubelets, the controller-manager), to stop on `down`.
    #[serde(default)]
    pub processes: Vec<Process>,
}

/// The load-balancer pool of a lab whose `lab.json` names none.
fn default_lb_pool() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(192, 168, 200, 0), 24).unwrap_or_default()
}

/// One underlay subnet: a bridge in the switch namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Underlay {
    /// The bridge's name in the switch namespace.
    pub bridge: String,
    /// The subnet.
    pub subnet: Ipv4Net,
    /// The router's address on it, when there is a router.
    pub router_ip: Option<Ipv4Addr>,
    /// The zone its nodes are labelled with.
    pub zone: String,
}

/// One node of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfig {
    /// The Node's name.
    pub name: String,
    /// Its number (1-based), which fixes its addresses.
    pub number: u32,
    /// Which underlay it is on (index into `underlays`).
    pub underlay: usize,
    /// Its underlay address, with the subnet's prefix.
    pub ip: Ipv4Net,
    /// Its pod CIDR (the Node's `spec.podCIDR`).
    pub pod_cidr: Ipv4Net,
}

/// A process the lab started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// What it is (`agent node-1`, `kubelet node-1`).
    pub role: String,
    /// Its process id (and process group id: each is started as a group leader).
    pub pid: i32,
}

impl LabConfig {
    /// A plan for `nodes` nodes with `backend`: one underlay, or two for `cross-subnet`.
    pub fn plan(nodes: u32, backend: &str) -> Result<Self> {
        if !BACKENDS.contains(&backend) {
            bail!(
                "--backend {backend:?}: expected one of {}",
                BACKENDS.join(", ")
            );
        }
        if nodes == 0 || nodes > 50 {
            bail!("--nodes {nodes}: expected 1 to 50");
        }
        let two = backend == "cross-subnet";
        let mut underlays = vec![Underlay {
            bridge: "br0".into(),
            subnet: "192.168.100.0/24".parse()?,
            router_ip: two.then(|| Ipv4Addr::new(192, 168, 100, 1)),
            zone: "zone-a".into(),
        }];
        if two {
            underlays.push(Underlay {
                bridge: "br1".into(),
                subnet: "192.168.101.0/24".parse()?,
                router_ip: Some(Ipv4Addr::new(192, 168, 101, 1)),
                zone: "zone-b".into(),
            });
        }
        let mut config = LabConfig {
            backend: backend.to_owned(),
            cluster_cidr: "10.244.0.0/16".parse()?,
            node_cidr_prefix: 24,
            service_cidr: "10.96.0.0/16".parse()?,
            nodes: Vec::new(),
            nodes_created: 0,
            underlays,
            outside_ip: Ipv4Addr::new(192, 168, 100, 200),
            lb_pool: default_lb_pool(),
            processes: Vec::new(),
        };
        for _ in 0..nodes {
            config.add_node()?;
        }
        // cross-subnet: the first half of the nodes on one subnet, the rest across the router.
        if two {
            let half = nodes.div_ceil(2) as usize;
            for (i, node) in config.nodes.iter_mut().enumerate() {
                if i >= half {
                    node.underlay = 1;
                    node.ip = underlay_ip(&config.underlays[1], node.number)?;
                }
            }
        }
        Ok(config)
    }

    /// Plans one more node (`node-<n>`) on the first underlay and returns it.
    pub fn add_node(&mut self) -> Result<NodeConfig> {
        let number = self.nodes_created + 1;
        let pod_cidr = self
            .cluster_cidr
            .subnets(self.node_cidr_prefix)
            .context("node CIDR prefix")?
            .nth(number as usize)
            .with_context(|| {
                format!(
                    "cluster CIDR {} has no pod CIDR left for node {number}",
                    self.cluster_cidr
                )
            })?;
        let node = NodeConfig {
            name: format!("node-{number}"),
            number,
            underlay: 0,
            ip: underlay_ip(&self.underlays[0], number)?,
            pod_cidr,
        };
        self.nodes_created = number;
        self.nodes.push(node.clone());
        Ok(node)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The saved plan of the lab at `paths`; `None` if the lab is not up.
    pub fn load(paths: &LabPaths) -> Result<Option<Self>> {
        let path = paths.config();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                Ok(Some(serde_json::from_str(&text).with_context(|| {
                    format!("{} is not a lab config", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("reading the lab config"),
        }
    }
}

/// A node's underlay address: `.10 + number` on its subnet.
fn underlay_ip(underlay: &Underlay, number: u32) -> Result<Ipv4Net> {
    let base = u32::from(underlay.subnet.network());
    let ip = Ipv4Addr::from(base + 10 + number);
    if !underlay.subnet.contains(&ip) || number > 180 {
        bail!(
            "underlay {} has no address for node {number}",
            underlay.subnet
        );
    }
    Ok(Ipv4Net::new(ip, underlay.subnet.prefix_len())?)
}

// === building ===

/// Creates the named namespace with `lo` up and returns it open.
fn new_netns(name: &str) -> Result<File> {
    let path = netns::create_named(name).with_context(|| format!("creating netns {name}"))?;
    let file = netns::open(&path).with_context(|| format!("opening netns {name}"))?;
    let mut nl = Netlink::open_in(&file)?;
    nl.set_up(1)
        .with_context(|| format!("setting lo up in {name}"))?;
    Ok(file)
}

/// Opens an existing namespace of the lab.
pub fn open_netns(name: &str) -> Result<File> {
    netns::open(&std::path::Path::new(netns::NETNS_RUN_DIR).join(name))
        .with_context(|| format!("opening netns {name}"))
}

/// Sets a sysctl inside a namespace.
fn sysctl_in(ns: &File, key: &str, value: &str) -> Result<()> {
    netns::run_in(ns, || sysctl::set(key, value))?.with_context(|| format!("setting {key}={value}"))
}

/// A veth from the switch's `bridge` (port `port`) to `ifname` inside `host`, which gets `ip` and
/// comes up.
fn plug(
    switch: &File,
    bridge: &str,
    port: &str,
    host: &File,
    ifname: &str,
    ip: Ipv4Net,
) -> Result<u32> {
    let mut sw = Netlink::open_in(switch)?;
    let br = sw
        .link(bridge)?
        .with_context(|| format!("switch bridge {bridge} is missing"))?;
    sw.add_veth(
        &VethEnd {
            name: port,
            master: Some(br.index),
            up: true,
            ..Default::default()
        },
        &VethEnd {
            name: ifname,
            netns: Some(host.as_fd()),
            ..Default::default()
        },
    )
    .with_context(|| format!("wiring {port} on {bridge}"))?;
    let mut nl = Netlink::open_in(host)?;
    let link = nl
        .link(ifname)?
        .with_context(|| format!("{ifname} did not appear"))?;
    nl.add_address(link.index, IpNet::V4(ip), true)?;
    nl.set_up(link.index)?;
    Ok(link.index)
}

fn default_route(ns: &File, via: Ipv4Addr) -> Result<()> {
    let mut nl = Netlink::open_in(ns)?;
    nl.add_route(&RouteSpec {
        dst: "0.0.0.0/0".parse()?,
        gateway: Some(IpAddr::V4(via)),
        oif: None,
        link_scope: false,
        onlink: false,
        protocol: RouteProto::STATIC,
    })
    .with_context(|| format!("default route via {via}"))
}

/// Builds the shared part: the switch with its bridges, the outside host, the router.
pub fn build_fabric(paths: &LabPaths, config: &LabConfig) -> Result<()> {
    let switch = new_netns(&paths.netns("switch"))?;
    {
        let mut sw = Netlink::open_in(&switch)?;
        for u in &config.underlays {
            sw.add_bridge(&u.bridge, None, None)?;
            let br = sw.link(&u.bridge)?.context("bridge vanished")?;
            sw.set_up(br.index)?;
        }
    }
    let outside = new_netns(&paths.netns("outside"))?;
    let first = &config.underlays[0];
    plug(
        &switch,
        &first.bridge,
        "outside",
        &outside,
        "eth0",
        Ipv4Net::new(config.outside_ip, first.subnet.prefix_len())?,
    )?;
    crate::dns::write_host_resolv_conf(paths, "outside", config)?;
    if config.underlays.len() > 1 {
        let router = new_netns(&paths.netns("router"))?;
        for (i, u) in config.underlays.iter().enumerate() {
            let ip = u
                .router_ip
                .context("an underlay without a router address")?;
            plug(
                &switch,
                &u.bridge,
                &format!("router-{i}"),
                &router,
                &format!("eth{i}"),
                Ipv4Net::new(ip, u.subnet.prefix_len())?,
            )?;
        }
        sysctl_in(&router, "net/ipv4/ip_forward", "1")?;
        if let Some(via) = first.router_ip {
            default_route(&outside, via)?;
        }
    }
    Ok(())
}

/// Builds one node: its namespace, plugged into its underlay, forwarding on, a default route
/// (through the router, or to the outside host on a single underlay), and its resolv.conf
/// naming the outside host's resolver.
pub fn build_node(paths: &LabPaths, config: &LabConfig, node: &NodeConfig) -> Result<()> {
    let switch = open_netns(&paths.netns("switch"))?;
    let ns = new_netns(&paths.netns(&node.name))?;
    let underlay = &config.underlays[node.underlay];
    plug(
        &switch,
        &underlay.bridge,
        &format!("port{}", node.number),
        &ns,
        "eth0",
        node.ip,
    )?;
    sysctl_in(&ns, "net/ipv4/ip_forward", "1")?;
    default_route(&ns, underlay.router_ip.unwrap_or(config.outside_ip))?;
    crate::dns::write_host_resolv_conf(paths, &node.name, config)?;
    std::fs::create_dir_all(paths.cni_conf_dir(&node.name))?;
    Ok(())
}

/// Removes a node's namespace and its switch port (the veth goes with the namespace).
pub fn destroy_node(paths: &LabPaths, node: &str) -> Result<()> {
    let _ = std::fs::remove_dir_all(paths.netns_etc(node));
    remove_netns(&paths.netns(node))
}

/// Removes a namespace if it exists.
pub fn remove_netns(name: &str) -> Result<()> {
    match netns::delete_named(name) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting netns {name}")),
    }
}

/// Every namespace of the lab: those whose name starts with the lab's prefix, except those of
/// another lab (beside it on disk) whose name extends this one's: lab `t1-svc`'s prefix
/// `podnet-t1-svc-` also starts every namespace of lab `t1-svc-term`.
pub fn lab_namespaces(paths: &LabPaths) -> Vec<String> {
    let names = std::fs::read_dir(netns::NETNS_RUN_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok());
    let labs: Vec<String> = paths
        .root()
        .parent()
        .and_then(|base| std::fs::read_dir(base).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    own_namespaces(paths, names, &labs)
}

/// The namespaces among `names` that are the lab's, given the `labs` beside it.
fn own_namespaces(
    paths: &LabPaths,
    names: impl Iterator<Item = String>,
    labs: &[String],
) -> Vec<String> {
    let prefix = paths.netns_prefix();
    let others: Vec<String> = labs
        .iter()
        .filter(|lab| lab.as_str() != paths.name())
        // Only a lab's name makes its namespaces' names.
        .filter_map(|lab| LabPaths::with_base(lab, std::path::Path::new("")).ok())
        .map(|other| other.netns_prefix())
        .filter(|other| other.starts_with(&prefix))
        .collect();
    names
        .filter(|n| n.starts_with(&prefix) && !others.iter().any(|o| n.starts_with(o)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_gives_each_node_an_address_and_a_pod_cidr() {
        let c = LabConfig::plan(3, "vxlan").unwrap();
        let names: Vec<_> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["node-1", "node-2", "node-3"]);
        assert_eq!(c.nodes[0].ip.to_string(), "192.168.100.11/24");
        assert_eq!(c.nodes[0].pod_cidr.to_string(), "10.244.1.0/24");
        assert_eq!(c.nodes[2].pod_cidr.to_string(), "10.244.3.0/24");
        assert_eq!(c.underlays.len(), 1);
    }

    #[test]
    fn cross_subnet_splits_the_nodes_across_the_router() {
        let c = LabConfig::plan(3, "cross-subnet").unwrap();
        assert_eq!(c.underlays.len(), 2);
        let subnets: Vec<_> = c.nodes.iter().map(|n| n.underlay).collect();
        assert_eq!(subnets, [0, 0, 1]);
        assert_eq!(c.nodes[2].ip.to_string(), "192.168.101.13/24");
    }

    #[test]
    fn added_nodes_never_reuse_a_name_or_cidr() {
        let mut c = LabConfig::plan(2, "host-gw").unwrap();
        c.nodes.remove(1);
        let n = c.add_node().unwrap();
        assert_eq!(n.name, "node-3");
        assert_eq!(n.pod_cidr.to_string(), "10.244.3.0/24");
    }

    #[test]
    fn a_lab_json_without_a_load_balancer_pool_loads_with_the_default() {
        let c = LabConfig::plan(1, "vxlan").unwrap();
        let mut json = serde_json::to_value(&c).unwrap();
        json.as_object_mut().unwrap().remove("lbPool");
        let old: LabConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old.lb_pool.to_string(), "192.168.200.0/24");
        assert_eq!(old, c);
    }

    #[test]
    fn a_labs_namespaces_exclude_those_of_a_lab_whose_name_extends_its_own() {
        let paths = LabPaths::with_base("t1-svc", std::path::Path::new("/x")).unwrap();
        let names = [
            "podnet-t1-svc-node-1",
            "podnet-t1-svc-pod-default-web-0",
            "podnet-t1-svc-term-node-1",
            "podnet-t1-svc-term-outside",
            "podnet-t1-other-node-1",
        ]
        .map(String::from);
        let labs = ["t1-svc", "t1-svc-term", "t1-other"].map(String::from);
        assert_eq!(
            own_namespaces(&paths, names.clone().into_iter(), &labs),
            ["podnet-t1-svc-node-1", "podnet-t1-svc-pod-default-web-0"]
        );
        // Once the other lab is gone, whatever it left matches the prefix again.
        assert_eq!(
            own_namespaces(&paths, names.into_iter(), &labs[..1]).len(),
            4
        );
    }

    #[test]
    fn bad_plans_name_the_flag() {
        let e = LabConfig::plan(3, "flannel").unwrap_err().to_string();
        assert!(e.contains("--backend") && e.contains("host-gw"), "{e}");
        let e = LabConfig::plan(0, "vxlan").unwrap_err().to_string();
        assert!(e.contains("--nodes"), "{e}");
    }
}
