//! The fixed layout of both tables: their sets, maps and fixed chains, kube-proxy's.

use super::super::state::{IpFamily, NodeView};
use super::elements::{Element, Field};
use super::objects::{ChainDef, Objects};
use super::script::family;

// Sets and maps of every table.
/// Active cluster IPs (traffic to them on an undefined port is rejected).
pub(super) const CLUSTER_IPS: &str = "cluster-ips";
/// Addresses that accept NodePort traffic.
pub(super) const NODEPORT_IPS: &str = "nodeport-ips";
/// `addr . proto . port : goto <chain>` for ClusterIPs, externalIPs and LB IPs with
/// chains of their own or many endpoints (the others are in group member sets).
pub(super) const SERVICE_IPS: &str = "service-ips";
/// `proto . port : goto <chain>` for NodePorts, likewise.
pub(super) const SERVICE_NODEPORTS: &str = "service-nodeports";
/// `addr . proto . port : drop | goto reject-chain` for frontends without endpoints.
pub(super) const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
/// `proto . port : drop | goto reject-chain` for NodePorts without endpoints.
pub(super) const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// `lbip . proto . port : goto firewall-<port>` for `loadBalancerSourceRanges`.
pub(super) const FIREWALL_IPS: &str = "firewall-ips";
/// `endpoint . endpoint . cluster IP` for the endpoints of grouped ports: a pod that
/// reached itself through its Service, to masquerade.
pub(super) const HAIRPIN: &str = "hairpin";

// Fixed regular chains.
/// Dispatch through `service-ips`, `service-nodeports` and `service-groups`.
pub(super) const SERVICES: &str = "services";
/// One rule per group chain with a member set (see `groups`): written with the groups.
pub(super) const SERVICE_GROUPS: &str = "service-groups";
/// `loadBalancerSourceRanges`, before DNAT.
pub(super) const FIREWALL_CHECK: &str = "firewall-check";
/// No-endpoint verdicts for service addresses.
pub(super) const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
/// No-endpoint verdicts for NodePorts.
pub(super) const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
/// Undefined ports of cluster IPs, unallocated cluster IPs.
pub(super) const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
/// `reject` is not a verdict a map can hold: map elements `goto` this chain instead.
pub(super) const REJECT_CHAIN: &str = "reject-chain";
/// Sets the masquerade mark.
pub(super) const MARK_MASQ: &str = "mark-for-masquerade";
/// Masquerades marked packets in postrouting.
pub(super) const MASQUERADING: &str = "masquerading";
/// The masquerade mark: kube-proxy's bit 14 (podnet-cni uses 0x2000 for hairpin).
pub(super) const MASQ_MARK: &str = "0x4000";

/// A base chain: (name, type, hook, priority).
pub(super) type BaseChain = (&'static str, &'static str, &'static str, i32);

/// The base chains, kube-proxy's layout: filters on the pre-DNAT address run before DNAT
/// (`dstnat - 10`), no-endpoint and cluster-IP checks after it (priority 0: a DNATed packet
/// no longer has a service address), DNAT at `dstnat`, masquerade at `srcnat`.
pub(super) const BASE_CHAINS: [BaseChain; 8] = [
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-input", "filter", "input", 0),
    ("filter-forward", "filter", "forward", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
];
/// The fixed part of both tables that depends on the node facts: every fixed chain with its
/// rules, and the NodePort addresses.
pub(super) fn fixed_objects(node: &NodeView) -> Objects {
    let mut out = Objects::default();
    for f in IpFamily::ALL {
        let fam = family(f);
        let new_conn = |target: &str| format!("ct state new jump {target}");
        let mut chain = |name: &str, rules: Vec<String>| {
            out.chains.push(ChainDef {
                family: f,
                name: name.to_owned(),
                rules,
            });
        };
        chain("filter-prerouting-pre-dnat", vec![new_conn(FIREWALL_CHECK)]);
        chain("filter-output-pre-dnat", vec![new_conn(FIREWALL_CHECK)]);
        chain(
            "filter-input",
            vec![
                new_conn(NODEPORT_ENDPOINTS_CHECK),
                new_conn(SERVICE_ENDPOINTS_CHECK),
            ],
        );
        for name in ["filter-forward", "filter-output"] {
            chain(
                name,
                vec![
                    new_conn(SERVICE_ENDPOINTS_CHECK),
                    new_conn(CLUSTER_IPS_CHECK),
                ],
            );
        }
        chain("nat-prerouting", vec![format!("jump {SERVICES}")]);
        chain("nat-output", vec![format!("jump {SERVICES}")]);
        chain("nat-postrouting", vec![format!("jump {MASQUERADING}")]);
        chain(
            SERVICES,
            vec![
                format!("{fam} daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
                format!(
                    "{fam} daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"
                ),
                format!("jump {SERVICE_GROUPS}"),
            ],
        );
        chain(SERVICE_GROUPS, Vec::new());
        chain(
            FIREWALL_CHECK,
            vec![format!(
                "{fam} daddr . meta l4proto . th dport vmap @{FIREWALL_IPS}"
            )],
        );
        chain(
            SERVICE_ENDPOINTS_CHECK,
            vec![format!(
                "{fam} daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"
            )],
        );
        chain(
            NODEPORT_ENDPOINTS_CHECK,
            vec![format!(
                "{fam} daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"
            )],
        );
        let mut cluster_ips_check = vec![format!(
            "{fam} daddr @{CLUSTER_IPS} goto {REJECT_CHAIN} comment \"undefined port of a cluster IP\""
        )];
        if let Some(cidrs) = cidr_set(&node.service_cidrs, f) {
            cluster_ips_check.push(format!(
                "{fam} daddr {cidrs} drop comment \"unallocated cluster IP\""
            ));
        }
        chain(CLUSTER_IPS_CHECK, cluster_ips_check);
        chain(
            REJECT_CHAIN,
            vec![
                "meta l4proto tcp reject with tcp reset".to_owned(),
                "reject".to_owned(),
            ],
        );
        chain(MARK_MASQ, vec![format!("mark set mark or {MASQ_MARK}")]);
        chain(
            MASQUERADING,
            vec![
                format!(
                    "ct status dnat {fam} saddr . {fam} daddr . ct original {fam} daddr @{HAIRPIN} jump {MARK_MASQ}"
                ),
                format!("mark and {MASQ_MARK} == 0 return"),
                format!("mark set mark xor {MASQ_MARK}"),
                "masquerade fully-random".to_owned(),
            ],
        );
        for ip in node
            .nodeport_ips
            .iter()
            .filter(|ip| IpFamily::of(**ip) == f)
        {
            out.elements.push(Element {
                family: f,
                set: NODEPORT_IPS,
                key: vec![Field::Addr(*ip)],
                comment: None,
                value: None,
            });
        }
    }
    out
}
/// The CIDRs of one family, if any: one as itself, several as an anonymous set
/// (`{ a, b }`; each anonymous set is one more set in the table, so only when needed).
pub(super) fn cidr_set(cidrs: &[ipnet::IpNet], f: IpFamily) -> Option<String> {
    let list: Vec<String> = cidrs
        .iter()
        .filter(|c| IpFamily::of(c.addr()) == f)
        .map(ToString::to_string)
        .collect();
    match list.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        _ => Some(format!("{{ {} }}", list.join(", "))),
    }
}
