//! Kernel tests for the agent's routing: the netlink primitives it uses, then whole clusters of
//! throwaway namespaces — "node" namespaces on an underlay bridge in a "switch" namespace, each
//! with a `cni0` bridge and a "pod" behind it — routed by the applier running inside each node,
//! and proven with real pings between pods. Needs root. Nothing touches the machine's own
//! namespace; every namespace is removed on drop, also when a test fails. All tests compile
//! into this one binary (faster to link).

// Test helpers panic on the unexpected by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cross_subnet;
mod host_gw;
mod netlink;
mod policy;
mod vxlan;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ipnet::IpNet;
use podnet_agent::routing::{
    ApplyReport, Backend, Desired, NodeRoute, RoutingApplier, desired, vtep_mac,
};
use podnet_testkit::Netns;
use serde_json::Value;

/// One node: its namespace, underlay address and pod CIDR(s), and one pod behind `cni0`.
pub struct Node {
    pub name: String,
    pub ns: Netns,
    pub underlay: IpAddr,
    pub pod_cidrs: Vec<IpNet>,
    pub pod: Netns,
    /// The pod's addresses, one per pod CIDR.
    pub pod_ips: Vec<IpAddr>,
}

/// Nodes on one or two underlay subnets (`192.168.50.0/24`, `192.168.51.0/24`); with two, a
/// router namespace joins them and each node's default route points at it.
pub struct Cluster {
    pub nodes: Vec<Node>,
    // Kept for their lifetime: dropping them removes the underlay.
    _switches: Vec<Netns>,
    _router: Option<Netns>,
}

impl Cluster {
    /// Node `i` (named `node-<i+1>`) joins underlay subnet `subnets[i]` (0 or 1); its pod CIDR
    /// is `10.244.<i+1>.0/24` (plus `fd00:10:244:<i+1>::/64` with `dual_stack`).
    pub fn new(subnets: &[u8], dual_stack: bool) -> Cluster {
        let two = subnets.contains(&1);
        let switches: Vec<Netns> = (0..if two { 2 } else { 1 })
            .map(|_| {
                let sw = Netns::new("sw");
                sw.ip(&["link", "add", "br0", "type", "bridge"]);
                sw.ip(&["link", "set", "br0", "up"]);
                sw
            })
            .collect();
        let router = two.then(|| {
            let rt = Netns::new("rt");
            for (s, sw) in switches.iter().enumerate() {
                plug(sw, &rt, &format!("rt{s}"), &format!("eth{s}"));
                rt.ip(&[
                    "addr",
                    "add",
                    &format!("192.168.5{s}.254/24"),
                    "dev",
                    &format!("eth{s}"),
                ]);
                rt.ip(&["link", "set", &format!("eth{s}"), "up"]);
            }
            forward(&rt, false);
            rt
        });
        let nodes = subnets
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let n = i + 1;
                let ns = Netns::new("node");
                plug(&switches[usize::from(s)], &ns, &format!("n{n}"), "eth0");
                let underlay: IpAddr = format!("192.168.5{s}.{n}").parse().unwrap();
                ns.ip(&["addr", "add", &format!("{underlay}/24"), "dev", "eth0"]);
                ns.ip(&["link", "set", "eth0", "up"]);
                if two {
                    ns.ip(&[
                        "route",
                        "add",
                        "default",
                        "via",
                        &format!("192.168.5{s}.254"),
                    ]);
                }
                forward(&ns, dual_stack);

                let mut pod_cidrs: Vec<IpNet> = vec![format!("10.244.{n}.0/24").parse().unwrap()];
                if dual_stack {
                    pod_cidrs.push(format!("fd00:10:244:{n}::/64").parse().unwrap());
                }
                ns.ip(&["link", "add", "cni0", "type", "bridge"]);
                ns.ip(&["link", "set", "cni0", "up"]);
                let pod = Netns::new("pod");
                plug(&ns, &pod, "veth0", "eth0");
                ns.ip(&["link", "set", "veth0", "master", "cni0"]);
                pod.ip(&["link", "set", "eth0", "up"]);
                let mut pod_ips = Vec::new();
                for cidr in &pod_cidrs {
                    let gw = host(cidr, 1);
                    let ip = host(cidr, 10);
                    let (v6, nodad): (&[&str], &[&str]) = if cidr.addr().is_ipv6() {
                        (&["-6"], &["nodad"])
                    } else {
                        (&[], &[])
                    };
                    let len = cidr.prefix_len().to_string();
                    ns.ip(&[
                        &["addr", "add", &format!("{gw}/{len}"), "dev", "cni0"],
                        nodad,
                    ]
                    .concat());
                    pod.ip(&[
                        &["addr", "add", &format!("{ip}/{len}"), "dev", "eth0"],
                        nodad,
                    ]
                    .concat());
                    pod.ip(&[v6, &["route", "add", "default", "via", &gw.to_string()]].concat());
                    pod_ips.push(ip);
                }
                Node {
                    name: format!("node-{n}"),
                    ns,
                    underlay,
                    pod_cidrs,
                    pod,
                    pod_ips,
                }
            })
            .collect();
        Cluster {
            nodes,
            _switches: switches,
            _router: router,
        }
    }

    /// What routing knows about node `i`, with the VTEP MAC its agent would publish.
    pub fn route_of(&self, i: usize) -> NodeRoute {
        let node = &self.nodes[i];
        NodeRoute {
            name: node.name.clone(),
            underlay_ip: node.underlay,
            underlay_prefix: 24,
            pod_cidrs: node.pod_cidrs.clone(),
            vtep_mac: Some(vtep_mac(&node.name)),
        }
    }

    /// Node `i`'s desired state with `backend`, its peers being the nodes in `peers`.
    pub fn desired_with(&self, backend: Backend, i: usize, peers: &[usize]) -> Desired {
        let peers: Vec<NodeRoute> = peers.iter().map(|&p| self.route_of(p)).collect();
        desired(backend, &self.route_of(i), &peers, 1500)
    }

    /// Node `i`'s desired state with `backend`, every other node a peer.
    pub fn desired(&self, backend: Backend, i: usize) -> Desired {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.desired_with(backend, i, &all)
    }

    /// Runs a fresh applier (as a restarted agent would) inside node `i`.
    pub fn apply(&self, i: usize, desired: &Desired) -> ApplyReport {
        self.nodes[i].ns.run(|| {
            RoutingApplier::new()
                .unwrap()
                .apply(desired)
                .unwrap_or_else(|e| panic!("apply on node {}: {e}", i + 1))
        })
    }

    /// Applies `backend` on every node.
    pub fn apply_all(&self, backend: Backend) {
        for i in 0..self.nodes.len() {
            self.apply(i, &self.desired(backend, i));
        }
    }

    /// True when the pod of node `from` gets an answer from the pod of node `to` at its
    /// address number `family` (0: IPv4, 1: IPv6).
    pub fn pods_reach(&self, from: usize, to: usize, family: usize, tries: u32) -> bool {
        self.nodes[from]
            .pod
            .ping(&self.nodes[to].pod_ips[family].to_string(), tries)
    }

    /// Asserts that every pod reaches every other pod over every family.
    ///
    /// A first ping resolves neighbours on two bridges; IPv6 neighbour discovery retransmits a
    /// lost solicitation after a whole second and gives up after three, so a ping that meets a
    /// lost first solicitation fails before it succeeds. Hence up to eight one-second tries,
    /// which a route or neighbour entry that is wrong still fails.
    pub fn assert_full_mesh(&self) {
        for from in 0..self.nodes.len() {
            for to in 0..self.nodes.len() {
                for family in 0..self.nodes[to].pod_ips.len() {
                    if from != to {
                        assert!(
                            self.pods_reach(from, to, family, 8),
                            "pod on node {} cannot reach {} on node {}",
                            from + 1,
                            self.nodes[to].pod_ips[family],
                            to + 1
                        );
                    }
                }
            }
        }
    }
}

/// Node `i`'s routing state as `ip`/`bridge` print it: routes of protocol podnet (both
/// families), neighbours and FDB entries on `podnet.1`, and the device itself.
pub fn routing_dump(ns: &Netns) -> Value {
    let vxlan = ns.link_names().iter().any(|l| l == "podnet.1");
    let on_device = |program: &str, args: &[&str]| -> Value {
        if !vxlan {
            return Value::Null;
        }
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let (ok, out, err) = ns.exec(program, &full);
        assert!(ok, "{program} {args:?}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    serde_json::json!({
        "routes4": ns.ip_json(&["route", "show", "proto", "112"]),
        "routes6": ns.ip_json(&["-6", "route", "show", "proto", "112"]),
        "neigh": on_device("ip", &["neigh", "show", "dev", "podnet.1", "nud", "permanent"]),
        "fdb": on_device("bridge", &["fdb", "show", "dev", "podnet.1"]),
        "device": on_device("ip", &["-d", "addr", "show", "dev", "podnet.1"]),
    })
}

/// The routes of protocol podnet in `ns` (IPv4), as `DST via GATEWAY dev DEV`.
pub fn podnet_routes(ns: &Netns) -> Vec<String> {
    ns.ip_json(&["route", "show", "proto", "112"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
            format!(
                "{} via {} dev {}",
                field("dst"),
                field("gateway"),
                field("dev")
            )
        })
        .collect()
}

/// Records the route, neighbour, link and FDB events of a namespace while it lives.
pub struct Monitor {
    children: Vec<Child>,
}

impl Monitor {
    /// Starts `ip monitor` and `bridge monitor fdb` inside `ns`, and gives them time to
    /// subscribe.
    pub fn start(ns: &Netns) -> Monitor {
        let children = ns.run(|| {
            [
                (
                    "ip",
                    &["-o", "monitor", "route", "neigh", "link", "address"][..],
                ),
                ("bridge", &["monitor", "fdb"][..]),
            ]
            .into_iter()
            .map(|(program, args)| {
                Command::new(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect()
        });
        std::thread::sleep(Duration::from_millis(300));
        Monitor { children }
    }

    /// Stops the monitors (after a moment for late events) and returns the event lines that
    /// concern podnet: the vxlan device, its entries, and routes of protocol podnet.
    pub fn stop(mut self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        let mut lines = Vec::new();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            lines.extend(
                out.lines()
                    .filter(|l| l.contains("podnet.1") || l.contains("proto 112"))
                    .map(str::to_owned),
            );
        }
        lines
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A veth pair with end `a_end` in `a` and `b_end` in `b`; the `a` end is brought up (and put on
/// `br0` when `a` is a switch).
fn plug(a: &Netns, b: &Netns, a_end: &str, b_end: &str) {
    a.ip(&[
        "link",
        "add",
        a_end,
        "type",
        "veth",
        "peer",
        "name",
        b_end,
        "netns",
        b.name(),
    ]);
    if a.link_names().iter().any(|l| l == "br0") {
        a.ip(&["link", "set", a_end, "master", "br0"]);
    }
    a.ip(&["link", "set", a_end, "up"]);
}

/// Turns forwarding on inside `ns` (its own sysctls only).
fn forward(ns: &Netns, ipv6: bool) {
    ns.run(|| {
        podnet_kernel::sysctl::set("net/ipv4/ip_forward", "1").unwrap();
        if ipv6 {
            podnet_kernel::sysctl::set("net/ipv6/conf/all/forwarding", "1").unwrap();
        }
    });
}

/// Host number `n` of `cidr`.
fn host(cidr: &IpNet, n: u8) -> IpAddr {
    match cidr.network() {
        IpAddr::V4(v4) => Ipv4Addr::from(u32::from(v4) + u32::from(n)).into(),
        IpAddr::V6(v6) => Ipv6Addr::from(u128::from(v6) + u128::from(n)).into(),
    }
}
