//! A small interpreter of the rulesets `render_full` writes (only the constructs it writes),
//! so that tests can send a packet through the rendered rules of every node on its path and
//! hold the result to `allows`.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::policy::{NodeView, PolicyState, render_full};
use crate::service::Protocol;

/// The nodes of the test worlds.
const NODE_IPS: [&str; 2] = ["192.168.0.1", "192.168.0.2"];

/// A parsed table.
#[derive(Debug, Default)]
pub(super) struct Table {
    lookups: HashMap<String, Lookup>,
    chains: HashMap<String, Vec<String>>,
}

/// A set or a verdict map.
#[derive(Debug, Default)]
struct Lookup {
    /// What each part of the key (`a . b . c`) is.
    key: Vec<Field>,
    interval: bool,
    /// Per element: each key part's inclusive range, and the verdict (maps).
    elements: Vec<(Key, Option<String>)>,
}

/// An element's key: each part's inclusive range.
type Key = Vec<(u128, u128)>;

/// A part of a lookup key, or what a rule's selector puts there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Addr { v6: bool },
    Protocol,
    Port,
}

/// A new connection's first packet.
struct Packet {
    src: IpAddr,
    dst: IpAddr,
    protocol: Protocol,
    port: u16,
}

enum Outcome {
    Accept,
    Drop,
    /// Fell off the end or `return`: the caller goes on.
    Continue,
}

fn num(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), false),
        IpAddr::V6(v6) => (u128::from(v6), true),
    }
}

fn proto_num(p: Protocol) -> u128 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// An address, prefix or `a-b` range; panics when it is not of the key's family.
fn parse_addr(e: &str, v6: bool) -> (u128, u128) {
    let (a, b, fam) = if let Some((a, b)) = e.split_once('-') {
        let (a, fam) = num(a.parse().unwrap());
        let (b, fam_b) = num(b.parse().unwrap());
        assert_eq!(fam, fam_b, "{e}: mixed families");
        (a, b, fam)
    } else if e.contains('/') {
        let net: IpNet = e.parse().unwrap();
        let (a, fam) = num(net.network());
        let (b, _) = num(net.broadcast());
        (a, b, fam)
    } else {
        let (a, fam) = num(e.parse().unwrap());
        (a, a, fam)
    };
    assert_eq!(fam, v6, "{e} in a key of the other family");
    assert!(a <= b, "{e}: empty range");
    (a, b)
}

fn parse_part(field: Field, e: &str) -> (u128, u128) {
    match field {
        Field::Addr { v6 } => parse_addr(e, v6),
        Field::Protocol => {
            let n = match e {
                "tcp" => 6,
                "udp" => 17,
                "sctp" => 132,
                other => panic!("protocol {other:?}"),
            };
            (n, n)
        }
        Field::Port => {
            let (a, b) = e.split_once('-').unwrap_or((e, e));
            let (a, b): (u16, u16) = (a.parse().unwrap(), b.parse().unwrap());
            assert!(a <= b, "{e}: empty range");
            (u128::from(a), u128::from(b))
        }
    }
}

// === impl Lookup ===

impl Lookup {
    /// `type …` (with ` : verdict` for maps).
    fn set_type(&mut self, line: &str) {
        let key = line.strip_suffix(" : verdict").unwrap_or(line);
        self.key = key
            .split(" . ")
            .map(|t| match t {
                "ipv4_addr" => Field::Addr { v6: false },
                "ipv6_addr" => Field::Addr { v6: true },
                "inet_proto" => Field::Protocol,
                "inet_service" => Field::Port,
                other => panic!("key type {other:?}"),
            })
            .collect();
    }

    /// One element, held to what the kernel accepts: ranges only with `flags interval`, and
    /// no element overlapping another (the kernel refuses with "File exists").
    fn add(&mut self, name: &str, map: bool, e: &str) {
        let (key, verdict) = if map {
            let (k, v) = e
                .split_once(" : ")
                .unwrap_or_else(|| panic!("{name}: {e:?}"));
            (k, Some(v.to_owned()))
        } else {
            assert!(!e.contains(" : "), "{name}: a verdict in a set: {e:?}");
            (e, None)
        };
        let parts: Vec<&str> = key.split(" . ").collect();
        assert_eq!(
            parts.len(),
            self.key.len(),
            "{name}: {e:?} against {:?}",
            self.key
        );
        let parts: Key = self
            .key
            .iter()
            .zip(parts)
            .map(|(f, p)| parse_part(*f, p))
            .collect();
        assert!(
            self.interval || parts.iter().all(|(a, b)| a == b),
            "{name}: range {e:?} without flags interval"
        );
        if let Some((other, _)) = self.elements.iter().find(|(o, _)| {
            o.iter()
                .zip(&parts)
                .all(|((a, b), (c, d))| a <= d && c <= b)
        }) {
            panic!("{name}: {e:?} overlaps {other:?}");
        }
        self.elements.push((parts, verdict));
    }

    /// The element holding `key`, if any.
    fn find(&self, key: &[u128]) -> Option<&Option<String>> {
        self.elements
            .iter()
            .find(|(parts, _)| parts.iter().zip(key).all(|((a, b), k)| a <= k && k <= b))
            .map(|(_, v)| v)
    }
}

// === impl Table ===

impl Table {
    pub(super) fn parse(text: &str) -> Table {
        let mut t = Table::default();
        let mut current: Option<(String, String)> = None; // (kind, name)
        for line in text.lines().skip(2).map(str::trim) {
            if let Some(head) = line.strip_suffix(" {") {
                let mut parts = head.split_whitespace();
                let kind = parts.next().unwrap().to_owned();
                let name = parts.next_back().unwrap().to_owned();
                let fresh = match kind.as_str() {
                    "chain" => t.chains.insert(name.clone(), Vec::new()).is_none(),
                    "set" | "map" => t.lookups.insert(name.clone(), Lookup::default()).is_none(),
                    _ => true,
                };
                assert!(fresh, "{kind} {name} declared twice");
                current = Some((kind, name));
                continue;
            }
            if line == "}" {
                current = None;
                continue;
            }
            let Some((kind, name)) = &current else {
                continue;
            };
            if kind == "chain" {
                if !line.starts_with("type ") {
                    let rule = line.split(" comment ").next().unwrap_or(line);
                    t.chains.get_mut(name).unwrap().push(rule.to_owned());
                }
                continue;
            }
            let lookup = t.lookups.get_mut(name).unwrap();
            if let Some(ty) = line.strip_prefix("type ") {
                assert_eq!(ty.ends_with(" : verdict"), kind == "map", "{name}: {ty}");
                lookup.set_type(ty);
            } else if line == "flags interval" {
                lookup.interval = true;
            } else if let Some(list) = line
                .strip_prefix("elements = { ")
                .and_then(|l| l.strip_suffix(" }"))
            {
                for e in list.split(", ") {
                    lookup.add(name, kind == "map", e);
                }
            } else {
                panic!("{name}: unknown line {line:?}");
            }
        }
        t
    }

    /// Runs a base chain; the table's base chains have policy accept.
    fn verdict(&self, base: &str, p: &Packet) -> bool {
        !matches!(self.run(base, p), Outcome::Drop)
    }

    /// The verdict of a rule the packet matches (`None`: it does not match).
    fn rule_verdict(&self, rule: &str, p: &Packet) -> Option<String> {
        let tokens: Vec<&str> = rule.split_whitespace().collect();
        if matches!(tokens[0], "ct" | "icmpv6") {
            // A new TCP/UDP/SCTP connection: neither established, related, invalid nor
            // ICMPv6.
            return None;
        }
        // The selector: `a . b . c` of packet fields.
        let mut fields = Vec::new();
        let mut key = Vec::new();
        let mut i = 0;
        loop {
            match (tokens[i], tokens.get(i + 1).copied()) {
                (fam @ ("ip" | "ip6"), Some(dir @ ("saddr" | "daddr"))) => {
                    let ip = if dir == "saddr" { p.src } else { p.dst };
                    let (n, v6) = num(ip);
                    if v6 != (fam == "ip6") {
                        return None;
                    }
                    fields.push(Field::Addr { v6 });
                    key.push(n);
                }
                ("meta", Some("l4proto")) => {
                    fields.push(Field::Protocol);
                    key.push(proto_num(p.protocol));
                }
                ("th", Some("dport")) => {
                    fields.push(Field::Port);
                    key.push(u128::from(p.port));
                }
                _ => break,
            }
            i += 2;
            if tokens.get(i) == Some(&".") {
                i += 1;
            } else {
                break;
            }
        }
        let rest = &tokens[i..];
        if fields.is_empty() {
            return Some(rest.join(" "));
        }
        let (map, name, verdict) = match rest {
            ["vmap", name, ..] => (true, name, None),
            [name, verdict @ ..] => (false, name, Some(verdict.join(" "))),
            [] => panic!("no lookup in {rule:?}"),
        };
        let name = name.strip_prefix('@').unwrap_or_else(|| panic!("{rule:?}"));
        let lookup = self
            .lookups
            .get(name)
            .unwrap_or_else(|| panic!("no set {name}"));
        assert_eq!(lookup.key, fields, "{rule:?}: the key of {name} differs");
        let found = lookup.find(&key)?;
        if map {
            assert!(verdict.is_none());
            found.clone()
        } else {
            verdict
        }
    }

    fn run(&self, chain: &str, p: &Packet) -> Outcome {
        let rules = self
            .chains
            .get(chain)
            .unwrap_or_else(|| panic!("no chain {chain}"));
        for rule in rules {
            let Some(verdict) = self.rule_verdict(rule, p) else {
                continue;
            };
            let mut words = verdict.split_whitespace();
            match (words.next(), words.next()) {
                (Some("accept"), _) => return Outcome::Accept,
                (Some("drop"), _) => return Outcome::Drop,
                (Some("return"), _) => return Outcome::Continue,
                (Some("goto"), Some(target)) => return self.run(target, p),
                (Some("jump"), Some(target)) => match self.run(target, p) {
                    Outcome::Continue => {}
                    other => return other,
                },
                _ => panic!("unknown verdict {verdict:?} in {rule:?}"),
            }
        }
        Outcome::Continue
    }
}

/// Whether the first packet from `src` to `dst` gets through every hook on its way, as the
/// rendered rulesets of the two test nodes (192.168.0.1, .2) decide: the source node's
/// forward (or input, when the destination is that node), then the destination node's.
/// Traffic a node sends itself passes no policy hook.
pub(super) fn simulate(
    state: &PolicyState,
    src: IpAddr,
    dst: IpAddr,
    protocol: Protocol,
    port: u16,
) -> bool {
    simulate_with(state, &render_full, src, dst, protocol, port)
}

/// [`simulate`] with the rulesets `render` writes (tests tamper with them).
pub(super) fn simulate_with(
    state: &PolicyState,
    render: &dyn Fn(&PolicyState, &NodeView) -> String,
    src: IpAddr,
    dst: IpAddr,
    protocol: Protocol,
    port: u16,
) -> bool {
    let p = Packet {
        src,
        dst,
        protocol,
        port,
    };
    let node_of_pod = |ip: IpAddr| {
        let pod = &state.pods[*state.by_ip.get(&ip)?];
        NODE_IPS
            .iter()
            .position(|n| pod.host_ips.contains(&n.parse().unwrap()))
    };
    let node_of_addr = |ip: IpAddr| {
        NODE_IPS
            .iter()
            .position(|n| ip == n.parse::<IpAddr>().unwrap())
    };
    let table = |n: usize| {
        let view = NodeView::for_node_ips(state, &[NODE_IPS[n].parse().unwrap()]);
        Table::parse(&render(state, &view))
    };
    // Hooks in order: (node, base chain).
    let mut hops: Vec<(usize, &str)> = Vec::new();
    let src_node = node_of_pod(src);
    if let Some(a) = src_node {
        hops.push((
            a,
            if node_of_addr(dst) == Some(a) {
                "input"
            } else {
                "forward"
            },
        ));
    }
    let dst_node = node_of_pod(dst)
        .map(|b| (b, "forward"))
        .or_else(|| node_of_addr(dst).map(|b| (b, "input")));
    if let Some((b, hook)) = dst_node {
        let from_itself = node_of_addr(src) == Some(b);
        if src_node != Some(b) && !from_itself {
            hops.push((b, hook));
        }
    }
    hops.into_iter().all(|(n, hook)| table(n).verdict(hook, &p))
}
