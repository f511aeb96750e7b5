//! Masquerade for traffic leaving the cluster: packets from this node's pods to anything outside
//! the cluster CIDR take the node's address (flannel's rule); pod-to-pod traffic, on one node or
//! across nodes, keeps the pod's address.
//!
//! The rules live in the agent's own table, replaced in one `nft -f -` transaction (the table is
//! declared, flushed and refilled atomically), so a restarted agent re-applies them without a
//! moment in which they are missing.

use ipnet::IpNet;

/// The agent's nft table (family `inet`).
pub const TABLE: &str = "podnet_agent";

/// The whole table as an nft script for `nft -f -`.
pub fn render(pod_cidrs: &[IpNet], cluster_cidrs: &[IpNet]) -> String {
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
    format!(
        "table inet {TABLE} {{}}\nflush table inet {TABLE}\ntable inet {TABLE} {{\n\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n{rules}\t}}\n}}\n"
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
        );
        assert!(
            script.contains("ip6 saddr fd00:1::/64 ip6 daddr != { fd00::/48 }"),
            "{script}"
        );
    }
}
