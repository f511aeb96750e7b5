//! podnet-cni's nft table: hostPort DNAT and `ipMasq`, rendered as text for `nft -f -`.
//!
//! One table, `inet podnet_cni`, shared by every attachment on the node. Each attachment owns
//! elements in shared sets and maps plus, for hostPorts, one chain `hp_<id>`; nothing else. The
//! scripts are idempotent: the base objects are declared with `add` (a no-op when present), and
//! removal first `add`s what it deletes, so a DEL after a half-done ADD or a second DEL succeeds
//! in one atomic transaction instead of failing on a missing element.

use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;

/// The table every rule of podnet-cni lives in.
pub const TABLE: &str = "podnet_cni";

/// The packet mark bit that asks postrouting to masquerade hostPort traffic coming from the pod
/// network itself (hairpin: without it the reply would bypass the node and be dropped).
const HAIRPIN_MARK: u32 = 0x2000;

/// A hostPort mapping for one pod address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostPort {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The node port.
    pub host_port: u16,
    /// Only packets to this node address, when set.
    pub host_ip: Option<IpAddr>,
    /// The pod address and its subnet (sources in it are masqueraded, for hairpin).
    pub pod: IpNet,
    /// The pod port.
    pub container_port: u16,
}

/// A pod address whose traffic leaving `subnet` is masqueraded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Masq {
    /// The pod address with its subnet's prefix.
    pub pod: IpNet,
}

/// Everything one attachment owns in the table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttachmentRules {
    /// The attachment's identifier (see `names::attachment_id`).
    pub id: String,
    /// hostPort mappings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<HostPort>,
    /// Masqueraded pod addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masq: Vec<Masq>,
}

impl AttachmentRules {
    /// True when the attachment needs nothing in the table (no nft call at all).
    pub fn is_empty(&self) -> bool {
        self.host_ports.is_empty() && self.masq.is_empty()
    }
}

/// The idempotent declaration of the table's shared objects and fixed rules.
fn base(s: &mut String) {
    let t = format!("inet {TABLE}");
    let _ = writeln!(s, "add table {t}");
    for (chain, hook, prio) in [
        ("nat_prerouting", "prerouting", "-100"),
        ("nat_output", "output", "-100"),
        ("nat_postrouting", "postrouting", "100"),
    ] {
        let _ = writeln!(
            s,
            "add chain {t} {chain} {{ type nat hook {hook} priority {prio}; policy accept; }}"
        );
    }
    let _ = writeln!(s, "add chain {t} hostports");
    // hostPorts bound to one node address (`hostIP`) are looked up first, by address; the rest
    // by protocol and port alone. Two pods may share a port on different host addresses.
    let _ = writeln!(
        s,
        "add map {t} hostport_dispatch {{ type inet_proto . inet_service : verdict; }}"
    );
    let _ = writeln!(
        s,
        "add map {t} hostport_ip_v4 {{ type ipv4_addr . inet_proto . inet_service : verdict; }}"
    );
    let _ = writeln!(
        s,
        "add map {t} hostport_ip_v6 {{ type ipv6_addr . inet_proto . inet_service : verdict; }}"
    );
    let _ = writeln!(s, "add set {t} masq_v4 {{ type ipv4_addr; }}");
    let _ = writeln!(s, "add set {t} masq_v6 {{ type ipv6_addr; }}");
    let _ = writeln!(
        s,
        "add set {t} masq_skip_v4 {{ type ipv4_addr . ipv4_addr; flags interval; }}"
    );
    let _ = writeln!(
        s,
        "add set {t} masq_skip_v6 {{ type ipv6_addr . ipv6_addr; flags interval; }}"
    );
    // The fixed rules are rewritten whole (flush + add in the same transaction), so they never
    // duplicate and a table from an older version is brought up to date.
    let _ = writeln!(s, "flush chain {t} nat_prerouting");
    let _ = writeln!(
        s,
        "add rule {t} nat_prerouting fib daddr type local jump hostports"
    );
    let _ = writeln!(s, "flush chain {t} nat_output");
    let _ = writeln!(
        s,
        "add rule {t} nat_output fib daddr type local jump hostports"
    );
    let _ = writeln!(s, "flush chain {t} hostports");
    let _ = writeln!(
        s,
        "add rule {t} hostports ip daddr . meta l4proto . th dport vmap @hostport_ip_v4"
    );
    let _ = writeln!(
        s,
        "add rule {t} hostports ip6 daddr . meta l4proto . th dport vmap @hostport_ip_v6"
    );
    let _ = writeln!(
        s,
        "add rule {t} hostports meta l4proto . th dport vmap @hostport_dispatch"
    );
    let _ = writeln!(s, "flush chain {t} nat_postrouting");
    let _ = writeln!(
        s,
        "add rule {t} nat_postrouting meta mark & {HAIRPIN_MARK:#x} == {HAIRPIN_MARK:#x} masquerade"
    );
    let _ = writeln!(
        s,
        "add rule {t} nat_postrouting ip saddr . ip daddr @masq_skip_v4 return"
    );
    let _ = writeln!(
        s,
        "add rule {t} nat_postrouting ip daddr 224.0.0.0/4 return"
    );
    let _ = writeln!(
        s,
        "add rule {t} nat_postrouting ip saddr @masq_v4 masquerade"
    );
    let _ = writeln!(
        s,
        "add rule {t} nat_postrouting ip6 saddr . ip6 daddr @masq_skip_v6 return"
    );
    let _ = writeln!(s, "add rule {t} nat_postrouting ip6 daddr ff00::/8 return");
    let _ = writeln!(
        s,
        "add rule {t} nat_postrouting ip6 saddr @masq_v6 masquerade"
    );
}

fn fam(ip: IpAddr) -> (&'static str, &'static str) {
    if ip.is_ipv4() {
        ("ip", "v4")
    } else {
        ("ip6", "v6")
    }
}

/// `ip:port`, bracketed for IPv6.
fn addr_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// The elements of one attachment in the shared sets and maps, as `(set, element)` pairs.
fn elements(rules: &AttachmentRules) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for hp in &rules.host_ports {
        let (set, key) = host_port_key(hp);
        let element = (set, format!("{key} : goto hp_{}", rules.id));
        if !out.contains(&element) {
            out.push(element);
        }
    }
    for m in &rules.masq {
        let (_, v) = fam(m.pod.addr());
        out.push((format!("masq_{v}"), m.pod.addr().to_string()));
        out.push((
            format!("masq_skip_{v}"),
            format!("{} . {}", m.pod.addr(), m.pod.trunc()),
        ));
    }
    out
}

/// The script that installs an attachment's rules (and the base objects, if missing).
pub fn render_add(rules: &AttachmentRules) -> String {
    let t = format!("inet {TABLE}");
    let mut s = String::new();
    base(&mut s);
    if !rules.host_ports.is_empty() {
        let chain = format!("hp_{}", rules.id);
        let _ = writeln!(s, "add chain {t} {chain}");
        let _ = writeln!(s, "flush chain {t} {chain}");
        for hp in &rules.host_ports {
            let (ipf, _) = fam(hp.pod.addr());
            let dst = hp
                .host_ip
                .map(|ip| format!("{} daddr {ip} ", fam(ip).0))
                .unwrap_or_default();
            let nfproto = if hp.pod.addr().is_ipv4() {
                "ipv4"
            } else {
                "ipv6"
            };
            let m = format!(
                "meta nfproto {nfproto} {dst}meta l4proto {} th dport {}",
                hp.protocol, hp.host_port
            );
            let _ = writeln!(
                s,
                "add rule {t} {chain} {m} {ipf} saddr {} meta mark set meta mark | {HAIRPIN_MARK:#x}",
                hp.pod.trunc()
            );
            // From the node to 127.0.0.1:hostPort (as portmap allows): the DNATed packet leaves
            // with a loopback source, which only masquerade (and route_localnet on the way out)
            // makes routable. IPv6 has no equivalent.
            if hp.pod.addr().is_ipv4() && hp.host_ip.is_none_or(|ip| ip.is_loopback()) {
                let _ = writeln!(
                    s,
                    "add rule {t} {chain} {m} ip saddr 127.0.0.0/8 meta mark set meta mark | {HAIRPIN_MARK:#x}"
                );
            }
            let _ = writeln!(
                s,
                "add rule {t} {chain} {m} dnat {ipf} to {}",
                addr_port(hp.pod.addr(), hp.container_port)
            );
        }
    }
    for (set, element) in elements(rules) {
        let _ = writeln!(s, "add element {t} {set} {{ {element} }}");
    }
    s
}

/// The script that removes an attachment's rules; it succeeds whether or not they exist.
pub fn render_del(rules: &AttachmentRules) -> String {
    let t = format!("inet {TABLE}");
    let mut s = String::new();
    base(&mut s);
    let chain = format!("hp_{}", rules.id);
    if !rules.host_ports.is_empty() {
        let _ = writeln!(s, "add chain {t} {chain}");
    }
    let elements = elements(rules);
    for (set, element) in &elements {
        let _ = writeln!(s, "add element {t} {set} {{ {element} }}");
    }
    for (set, element) in &elements {
        // Map elements are deleted by key alone.
        let key = element.split(" : ").next().unwrap_or(element);
        let _ = writeln!(s, "delete element {t} {set} {{ {key} }}");
    }
    if !rules.host_ports.is_empty() {
        let _ = writeln!(s, "flush chain {t} {chain}");
        let _ = writeln!(s, "delete chain {t} {chain}");
    }
    s
}

/// The hostPort map keys that lead to attachment `id`'s chain, as `(map, key)`, read from an
/// `nft list table` listing (elements look like `tcp . 8080 : goto hp_<id>` or
/// `10.0.0.1 . tcp . 8080 : goto hp_<id>`).
pub fn owned_keys(listing: &str, id: &str) -> Vec<(String, String)> {
    let target = format!("goto hp_{id}");
    let mut map = String::new();
    let mut out = Vec::new();
    for line in listing.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("map ") {
            map = name.trim_end_matches('{').trim().to_owned();
            continue;
        }
        for element in line.split([',', '{', '}']) {
            // Split at the last " : " (IPv6 keys contain colons).
            let Some((key, verdict)) = element.rsplit_once(" : ") else {
                continue;
            };
            if verdict.trim() == target {
                out.push((
                    map.clone(),
                    key.trim().trim_start_matches("elements = ").to_owned(),
                ));
            }
        }
    }
    out
}

/// The hostPort map a mapping's element lives in and its key (as [`owned_keys`] reports them).
pub fn host_port_key(hp: &HostPort) -> (String, String) {
    match hp.host_ip {
        Some(ip) => (
            format!("hostport_ip_{}", fam(ip).1),
            format!("{ip} . {} . {}", hp.protocol, hp.host_port),
        ),
        None => (
            "hostport_dispatch".to_owned(),
            format!("{} . {}", hp.protocol, hp.host_port),
        ),
    }
}

#[cfg(test)]
mod tests;
