//! Masquerade for traffic leaving the cluster: packets from this node's pods to anything outside
//! the cluster CIDR take the node's address (flannel's rule); pod-to-pod traffic, on one node or
//! across nodes, keeps the pod's address.
//!
//! With an overlay, the tunnel's own UDP packets (to the vxlan port of this node, and those this
//! node sends) skip conntrack, as Cilium's `NOTRACK` rules for its tunnel port do: the pod
//! packets inside are tracked where they are forwarded, so tracking their envelopes as well is
//! a second conntrack lookup per packet on each node for nothing (a fifth of the cross-node
//! vxlan throughput in the lab).
//!
//! The rules live in the agent's own table, replaced in one `nft -f -` transaction (the table is
//! declared, flushed and refilled atomically), so a restarted agent re-applies them without a
//! moment in which they are missing.

use ipnet::IpNet;

/// The agent's nft table (family `inet`).
pub const TABLE: &str = "podnet_agent";

/// The whole table as an nft script for `nft -f -`; `tunnel_port`: the overlay's UDP port, if
/// this node has one.
pub fn render(pod_cidrs: &[IpNet], cluster_cidrs: &[IpNet], tunnel_port: Option<u16>) -> String {
    let mut rules = String::new();
    for pod in pod_cidrs {
        let fam = if pod.addr().is_ipv4() { "ip" } else { "ip6" };
        let cluster: Vec<String> = cluster_cidrs
            .iter()
            .filter(|c| c.addr().is_ipv4() == pod.addr().is_ipv4())
            .map(ToString::to_string)
            .collect();
        let not_cluster = if cluster.is_empty() {
            String::new()
        } else {
            format!(" {fam} daddr != {{ {} }}", cluster.join(", "))
        };
        let multicast = if pod.addr().is_ipv4() {
            "224.0.0.0/4"
        } else {
            "ff00::/8"
        };
        rules.push_str(&format!(
            "\t\t{fam} saddr {pod}{not_cluster} {fam} daddr != {multicast} masquerade fully-random\n"
        ));
    }
    let notrack = tunnel_port.map_or(String::new(), |port| {
        format!(
            "\tchain raw-prerouting {{\n\t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tudp dport {port} fib daddr type local notrack\n\t}}\n\
             \tchain raw-output {{\n\t\ttype filter hook output priority raw; policy accept;\n\
             \t\tudp dport {port} notrack\n\t}}\n"
        )
    });
    format!(
        "table inet {TABLE} {{}}\nflush table inet {TABLE}\ntable inet {TABLE} {{\n\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n{rules}\t}}\n{notrack}}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_masquerade_only_beyond_the_cluster() {
        let script = render(
            &["10.244.1.0/24".parse().unwrap()],
            &["10.244.0.0/16".parse().unwrap()],
            None,
        );
        assert!(
            script.contains(
                "ip saddr 10.244.1.0/24 ip daddr != { 10.244.0.0/16 } ip daddr != 224.0.0.0/4 masquerade"
            ),
            "{script}"
        );
        assert!(script.starts_with("table inet podnet_agent {}\nflush table inet podnet_agent\n"));
    }

    #[test]
    fn each_family_uses_its_own_cluster_cidr() {
        let script = render(
            &[
                "10.244.1.0/24".parse().unwrap(),
                "fd00:1::/64".parse().unwrap(),
            ],
            &[
                "10.244.0.0/16".parse().unwrap(),
                "fd00::/48".parse().unwrap(),
            ],
            None,
        );
        assert!(
            script.contains("ip6 saddr fd00:1::/64 ip6 daddr != { fd00::/48 }"),
            "{script}"
        );
    }

    #[test]
    fn only_an_overlay_leaves_its_envelopes_untracked() {
        let pods = ["10.244.1.0/24".parse().unwrap()];
        let cluster = ["10.244.0.0/16".parse().unwrap()];
        assert!(!render(&pods, &cluster, None).contains("notrack"));
        let script = render(&pods, &cluster, Some(8472));
        assert!(
            script.contains("udp dport 8472 fib daddr type local notrack"),
            "{script}"
        );
        assert!(script.contains("priority raw"), "{script}");
    }
}
