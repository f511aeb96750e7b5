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
    sets: HashMap<String, Vec<(u128, u128, bool)>>,
    maps: HashMap<String, HashMap<IpAddr, String>>,
    chains: HashMap<String, Vec<String>>,
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

fn parse_element(e: &str) -> (u128, u128, bool) {
    if let Some((a, b)) = e.split_once('-') {
        let (a, v6) = num(a.parse().unwrap());
        let (b, _) = num(b.parse().unwrap());
        return (a, b, v6);
    }
    if e.contains('/') {
        let net: IpNet = e.parse().unwrap();
        let (a, v6) = num(net.network());
        let (b, _) = num(net.broadcast());
        return (a, b, v6);
    }
    let (a, v6) = num(e.parse().unwrap());
    (a, a, v6)
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
                if kind == "chain" {
                    t.chains.insert(name.clone(), Vec::new());
                }
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
            if let Some(list) = line
                .strip_prefix("elements = { ")
                .and_then(|l| l.strip_suffix(" }"))
            {
                for e in list.split(", ") {
                    if kind == "map" {
                        let (key, verdict) = e.split_once(" : ").unwrap();
                        t.maps
                            .entry(name.clone())
                            .or_default()
                            .insert(key.parse().unwrap(), verdict.to_owned());
                    } else {
                        t.sets
                            .entry(name.clone())
                            .or_default()
                            .push(parse_element(e));
                    }
                }
            } else if kind == "chain" && !line.starts_with("type ") {
                let rule = line.split(" comment ").next().unwrap_or(line);
                t.chains.get_mut(name).unwrap().push(rule.to_owned());
            }
        }
        t
    }

    fn in_set(&self, set: &str, ip: IpAddr) -> bool {
        let (n, v6) = num(ip);
        self.sets
            .get(set)
            .is_some_and(|s| s.iter().any(|(a, b, f)| *f == v6 && *a <= n && n <= *b))
    }

    /// Runs a base chain; the table's base chains have policy accept.
    fn verdict(&self, base: &str, p: &Packet) -> bool {
        !matches!(self.run(base, p), Outcome::Drop)
    }

    fn run(&self, chain: &str, p: &Packet) -> Outcome {
        let rules = self
            .chains
            .get(chain)
            .unwrap_or_else(|| panic!("no chain {chain}"));
        for rule in rules {
            let mut verdict: Option<String> = None;
            let mut ok = true;
            let tokens: Vec<&str> = rule.split_whitespace().collect();
            let mut i = 0;
            while ok && i < tokens.len() {
                match tokens[i] {
                    "ct" | "icmpv6" => {
                        // A new TCP/UDP/SCTP connection: neither established, related,
                        // invalid nor ICMPv6.
                        ok = false;
                    }
                    fam @ ("ip" | "ip6") => {
                        let ip = if tokens[i + 1] == "saddr" {
                            p.src
                        } else {
                            p.dst
                        };
                        if (fam == "ip6") != ip.is_ipv6() {
                            ok = false;
                        } else if tokens[i + 2] == "vmap" {
                            let map = &tokens[i + 3][1..];
                            match self.maps.get(map).and_then(|m| m.get(&ip)) {
                                Some(v) => verdict = Some(v.clone()),
                                None => ok = false,
                            }
                            i += 1;
                        } else {
                            ok = self.in_set(&tokens[i + 2][1..], ip);
                        }
                        i += 3;
                    }
                    proto @ ("tcp" | "udp" | "sctp") => {
                        let (a, b) = match tokens[i + 2].split_once('-') {
                            Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                            None => {
                                let n: u16 = tokens[i + 2].parse().unwrap();
                                (n, n)
                            }
                        };
                        ok = proto == p.protocol.nft_name() && a <= p.port && p.port <= b;
                        i += 3;
                    }
                    "meta" => {
                        ok = tokens[i + 2] == p.protocol.nft_name();
                        i += 3;
                    }
                    _ => {
                        verdict = Some(tokens[i..].join(" "));
                        break;
                    }
                }
            }
            if !ok {
                continue;
            }
            let Some(verdict) = verdict else { continue };
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
        Table::parse(&render_full(state, &view))
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
