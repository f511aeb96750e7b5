//! The kernel alone, shaped like a lab's cross-node path: the baseline that tells what the
//! path's shape costs (veth pairs, bridges, forwarding, encapsulation) from what podnet adds.
//!
//! Two nodes on a switch bridge (as the lab's underlay), each with one pod on a bridge `cni0`
//! (as podnet-cni's bridge mode); pod subnets routed through the other node (as host-gw) or
//! over a vxlan device between the nodes (as the vxlan backend, with its port and MTU). Built
//! with `ip` alone: no nftables, so no conntrack, no policy, no agent.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// How pod traffic crosses between the two nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// Routed through the other node's underlay address.
    None,
    /// Over a vxlan device (VNI 1, UDP 8472, MTU 1450; pods get 1450 too).
    Vxlan,
}

/// The namespaces of one kernel-only path; deleted on drop (their links go with them).
pub struct KernelPath {
    prefix: String,
    made: Vec<String>,
}

/// Node 2's underlay address (the raw path's target).
pub const NODE_2_IP: &str = "192.168.77.2";
/// The pod on node 2 (the cross-node path's target).
pub const POD_3_IP: &str = "10.77.2.2";

impl KernelPath {
    /// Builds the path; on failure, whatever was made is removed.
    pub fn build(encap: Encap) -> Result<KernelPath> {
        let mut path = KernelPath {
            prefix: format!("pnk-{}", std::process::id()),
            made: Vec::new(),
        };
        for name in ["sw", "n1", "n2", "p1", "p3"] {
            let ns = path.netns(name);
            ip(&["netns", "add", &ns])?;
            path.made.push(ns);
            ip(&["-n", &path.netns(name), "link", "set", "lo", "up"])?;
        }
        let sw = path.netns("sw");
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        let pod_mtu = match encap {
            Encap::None => "1500",
            Encap::Vxlan => "1450",
        };
        for (i, pod) in [(1, "p1"), (2, "p3")] {
            let node = path.netns(&format!("n{i}"));
            let pod = path.netns(pod);
            let port = format!("sw-n{i}");
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &node,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", &node, "link", "set", "eth0", "up"])?;
            let underlay = format!("192.168.77.{i}/24");
            ip(&["-n", &node, "addr", "add", &underlay, "dev", "eth0"])?;
            ip(&["-n", &node, "link", "add", "cni0", "type", "bridge"])?;
            let gateway = format!("10.77.{i}.1");
            let gateway_cidr = format!("{gateway}/24");
            ip(&["-n", &node, "addr", "add", &gateway_cidr, "dev", "cni0"])?;
            ip(&["-n", &node, "link", "set", "cni0", "up"])?;
            ip(&[
                "-n", &node, "link", "add", "veth-pod", "mtu", pod_mtu, "type", "veth", "peer",
                "name", "eth0", "mtu", pod_mtu, "netns", &pod,
            ])?;
            ip(&[
                "-n", &node, "link", "set", "veth-pod", "master", "cni0", "up",
            ])?;
            ip(&["-n", &pod, "link", "set", "eth0", "up"])?;
            let pod_ip = format!("10.77.{i}.2/24");
            ip(&["-n", &pod, "addr", "add", &pod_ip, "dev", "eth0"])?;
            ip(&["-n", &pod, "route", "add", "default", "via", &gateway])?;
            sysctl(&node, "net.ipv4.ip_forward=1")?;
        }
        for (i, j) in [(1, 2), (2, 1)] {
            let node = path.netns(&format!("n{i}"));
            let other_pods = format!("10.77.{j}.0/24");
            match encap {
                Encap::None => {
                    let via = format!("192.168.77.{j}");
                    ip(&["-n", &node, "route", "add", &other_pods, "via", &via])?;
                }
                Encap::Vxlan => {
                    let (local, remote) = (format!("192.168.77.{i}"), format!("192.168.77.{j}"));
                    ip(&[
                        "-n", &node, "link", "add", "vx0", "mtu", "1450", "type", "vxlan", "id",
                        "1", "local", &local, "remote", &remote, "dstport", "8472", "dev", "eth0",
                    ])?;
                    let tunnel = format!("10.78.0.{i}/24");
                    ip(&["-n", &node, "addr", "add", &tunnel, "dev", "vx0"])?;
                    ip(&["-n", &node, "link", "set", "vx0", "up"])?;
                    let via = format!("10.78.0.{j}");
                    ip(&[
                        "-n",
                        &node,
                        "route",
                        "add",
                        &other_pods,
                        "via",
                        &via,
                        "dev",
                        "vx0",
                    ])?;
                }
            }
        }
        Ok(path)
    }

    /// The full name of one of its namespaces: `sw`, `n1`, `n2`, `p1` or `p3`.
    pub fn netns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
}

impl Drop for KernelPath {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("removing {ns}: {e:#}");
            }
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn sysctl(netns: &str, setting: &str) -> Result<()> {
    ip(&["netns", "exec", netns, "sysctl", "-qw", setting])
}
