//! A model of the nft ruleset our scripts build, for tests.
//!
//! `apply` runs a script command by command, with the checks the kernel makes: what a
//! command refers to must exist, a chain or set still referred to cannot be deleted, a map
//! key cannot change its value in place, base chains cannot change hooks. A script that
//! fails here would fail in `nft -f` too. `trace` follows a packet through the result the
//! way kube-proxy's `nftablesTracer` (pkg/proxy/nftables/helpers_test.go) does: it knows
//! exactly the rule shapes the renderer writes, and panics on anything else.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::super::{IpFamily, Origin, Packet, TABLE};
use super::Outcome;

/// Tables by (family, name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ruleset {
    pub(crate) tables: BTreeMap<(String, String), Table>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) chains: BTreeMap<String, Chain>,
    pub(crate) sets: BTreeMap<String, Set>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Chain {
    pub(crate) hook: Option<String>,
    pub(crate) rules: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Set {
    pub(crate) decl: String,
    /// key → (comment, value)
    pub(crate) elements: BTreeMap<String, (Option<String>, Option<String>)>,
}

impl Ruleset {
    /// Applies a script as one transaction: all of it, or (on the first error) none of it.
    pub(crate) fn apply(&mut self, script: &str) -> Result<(), String> {
        let mut next = self.clone();
        for (n, line) in script.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            next.command(line)
                .map_err(|e| format!("line {}: {e}\n  {line}", n + 1))?;
        }
        *self = next;
        Ok(())
    }

    pub(crate) fn table(&self, family: &str) -> Option<&Table> {
        self.tables.get(&(family.to_owned(), TABLE.to_owned()))
    }

    fn command(&mut self, line: &str) -> Result<(), String> {
        let mut words = line.splitn(5, ' ');
        let verb = words.next().unwrap_or_default();
        let object = words.next().unwrap_or_default();
        let family = words.next().unwrap_or_default().to_owned();
        let table_name = words.next().unwrap_or_default().to_owned();
        let rest = words.next().unwrap_or_default();
        let key = (family, table_name);
        if object == "table" {
            match verb {
                "add" => {
                    self.tables.entry(key).or_default();
                }
                "flush" => {
                    let t = self.tables.get_mut(&key).ok_or("no such table")?;
                    t.chains.values_mut().for_each(|c| c.rules.clear());
                }
                "delete" => {
                    self.tables.remove(&key).ok_or("no such table")?;
                }
                _ => return Err(format!("unknown verb {verb}")),
            }
            return Ok(());
        }
        let table = self.tables.get_mut(&key).ok_or("no such table")?;
        let (name, body) = match rest.split_once(' ') {
            Some((n, b)) => (n.to_owned(), b),
            None => (rest.to_owned(), ""),
        };
        match (verb, object) {
            ("add", "chain") => {
                let hook = (!body.is_empty()).then(|| body.to_owned());
                match table.chains.get(&name) {
                    Some(c) if hook.is_some() && c.hook != hook => {
                        return Err("chain exists with other hook".into());
                    }
                    Some(_) => {}
                    None => {
                        table.chains.insert(
                            name,
                            Chain {
                                hook,
                                rules: vec![],
                            },
                        );
                    }
                }
            }
            ("flush", "chain") => table
                .chains
                .get_mut(&name)
                .ok_or("no such chain")?
                .rules
                .clear(),
            ("delete", "chain") => {
                if !table.chains.contains_key(&name) {
                    return Err("no such chain".into());
                }
                if let Some(user) = table.chain_user(&name) {
                    return Err(format!("chain {name} still used by {user}"));
                }
                table.chains.remove(&name);
            }
            ("add", "rule") => {
                for r in references(body) {
                    table.check_reference(&r)?;
                }
                table
                    .chains
                    .get_mut(&name)
                    .ok_or("no such chain")?
                    .rules
                    .push(body.to_owned());
            }
            ("add", "set" | "map") => match table.sets.get(&name) {
                Some(s) if s.decl != body => return Err("set exists with other properties".into()),
                Some(_) => {}
                None => {
                    table.sets.insert(
                        name,
                        Set {
                            decl: body.to_owned(),
                            elements: BTreeMap::new(),
                        },
                    );
                }
            },
            ("flush", "set" | "map") => table
                .sets
                .get_mut(&name)
                .ok_or("no such set")?
                .elements
                .clear(),
            ("delete", "set" | "map") => {
                let set_ref = Reference::Set(name.clone());
                let used = table
                    .chains
                    .values()
                    .any(|c| c.rules.iter().any(|r| references(r).contains(&set_ref)));
                if used {
                    return Err(format!("set {name} still used"));
                }
                table.sets.remove(&name).ok_or("no such set")?;
            }
            ("add", "element") => {
                let (key, comment, value) = parse_element(body)?;
                if let Some(target) = value.as_deref().and_then(|v| v.strip_prefix("goto ")) {
                    table.check_reference(&Reference::Chain(target.to_owned()))?;
                }
                let set = table.sets.get_mut(&name).ok_or("no such set")?;
                match set.elements.get(&key) {
                    Some((_, old)) if *old != value => {
                        return Err(format!("element {key} exists with another value"));
                    }
                    _ => {
                        set.elements.insert(key, (comment, value));
                    }
                }
            }
            ("delete", "element") => {
                let (key, _, _) = parse_element(body)?;
                let set = table.sets.get_mut(&name).ok_or("no such set")?;
                set.elements
                    .remove(&key)
                    .ok_or(format!("no element {key}"))?;
            }
            _ => return Err(format!("unknown command {verb} {object}")),
        }
        Ok(())
    }

    /// Follows a packet's first packet through the service table of its family.
    pub(crate) fn trace(&self, packet: &Packet) -> Outcome {
        let family = match IpFamily::of(packet.dst) {
            IpFamily::V4 => "ip",
            IpFamily::V6 => "ip6",
        };
        if IpFamily::of(packet.src) != IpFamily::of(packet.dst) {
            return Outcome::Pass;
        }
        let Some(table) = self.table(family) else {
            return Outcome::Pass;
        };
        let tracer = Tracer { table, packet };
        let node = packet.from == Origin::Node;
        // Before DNAT: the source-range firewall.
        let pre = if node {
            "filter-output-pre-dnat"
        } else {
            "filter-prerouting-pre-dnat"
        };
        let mut path = Path::default();
        match tracer.run_chain(pre, &mut path) {
            Exit::Terminal(t) => return t.outcome(path),
            Exit::Fallthrough => {}
        }
        // DNAT.
        let nat = if node { "nat-output" } else { "nat-prerouting" };
        let mut path = Path::default();
        if let Exit::Terminal(t) = tracer.run_chain(nat, &mut path) {
            return t.outcome(path);
        }
        // Not DNATed: the filter checks. A packet to a local address reaches input (the
        // node's own packets after output, through loopback).
        let local = table
            .sets
            .get("nodeport-ips")
            .is_some_and(|s| s.elements.contains_key(&packet.dst.to_string()));
        let mut hooks = Vec::new();
        if node {
            hooks.push("filter-output");
        }
        if local {
            hooks.push("filter-input");
        } else if !node {
            hooks.push("filter-forward");
        }
        for hook in hooks {
            let mut path = Path::default();
            if let Exit::Terminal(t) = tracer.run_chain(hook, &mut path) {
                return t.outcome(path);
            }
        }
        Outcome::Pass
    }
}

impl Table {
    /// Who still refers to chain `name` (a rule of another chain, or a map element).
    fn chain_user(&self, name: &str) -> Option<String> {
        for (chain, c) in &self.chains {
            if chain == name {
                continue;
            }
            for rule in &c.rules {
                if references(rule).contains(&Reference::Chain(name.to_owned())) {
                    return Some(format!("a rule of {chain}"));
                }
            }
        }
        for (set, s) in &self.sets {
            for (key, (_, value)) in &s.elements {
                if value.as_deref() == Some(&format!("goto {name}")) {
                    return Some(format!("{set} element {key}"));
                }
            }
        }
        None
    }

    fn check_reference(&self, r: &Reference) -> Result<(), String> {
        match r {
            Reference::Chain(c) if !self.chains.contains_key(c) => Err(format!("no chain {c}")),
            Reference::Set(s) if !self.sets.contains_key(s) => Err(format!("no set {s}")),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reference {
    Chain(String),
    Set(String),
}

/// The chains (after `jump`/`goto`) and sets (`@name`) a rule refers to.
fn references(rule: &str) -> Vec<Reference> {
    let words: Vec<&str> = rule.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if let Some(set) = w.strip_prefix('@') {
            out.push(Reference::Set(set.to_owned()));
        } else if i > 0 && matches!(words[i - 1], "jump" | "goto") {
            out.push(Reference::Chain(w.trim_end_matches(',').to_owned()));
        }
    }
    out
}

/// `{ key [comment "c"] [: value] }` → (key, comment, value).
fn parse_element(body: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let inner = body
        .strip_prefix("{ ")
        .and_then(|b| b.strip_suffix(" }"))
        .ok_or("element not in braces")?;
    let (left, value) = match inner.split_once(" : ") {
        Some((l, v)) => (l, Some(v.to_owned())),
        None => (inner, None),
    };
    let (key, comment) = match left.split_once(" comment ") {
        Some((k, c)) => (k, Some(c.trim_matches('"').to_owned())),
        None => (left, None),
    };
    Ok((key.to_owned(), comment, value))
}

/// How a packet left a chain.
enum Exit {
    Terminal(Terminal),
    /// The chain ended or returned: the caller goes on (unless it reached us by `goto`).
    Fallthrough,
}

#[derive(Debug, Clone, Copy)]
enum Terminal {
    Drop,
    Reject,
    Dnat,
}

impl Terminal {
    fn outcome(self, path: Path) -> Outcome {
        match self {
            Terminal::Drop => Outcome::Drop,
            Terminal::Reject => Outcome::Reject,
            Terminal::Dnat => {
                let mut targets = path.dnat;
                targets.sort();
                Outcome::Dnat(targets)
            }
        }
    }
}

/// What a path through the rules has done so far.
#[derive(Debug, Clone, Default)]
struct Path {
    masquerade: bool,
    dnat: Vec<(SocketAddr, bool)>,
}

struct Tracer<'a> {
    table: &'a Table,
    packet: &'a Packet,
}

/// How one rule ended.
enum Step {
    /// Did not match, or matched and went on: the next rule runs.
    Next,
    /// Left the chain (a `goto` came back, or `return`).
    Leave,
    Terminal(Terminal),
}

impl Tracer<'_> {
    fn run_chain(&self, name: &str, path: &mut Path) -> Exit {
        let chain = self
            .table
            .chains
            .get(name)
            .unwrap_or_else(|| panic!("no chain {name}"));
        for rule in &chain.rules {
            match self.run_rule(rule, path) {
                Step::Next => {}
                Step::Leave => return Exit::Fallthrough,
                Step::Terminal(t) => return Exit::Terminal(t),
            }
        }
        Exit::Fallthrough
    }

    fn run_rule(&self, rule: &str, path: &mut Path) -> Step {
        let p = self.packet;
        let w: Vec<&str> = rule.split_whitespace().collect();
        let mut i = 0;
        while let Some(word) = w.get(i).copied() {
            match word {
                "comment" => return Step::Next,
                "ct" => i += 3, // ct state new: every traced packet is new
                "ip" | "ip6" => {
                    let addr = match w[i + 1] {
                        "daddr" => p.dst,
                        "saddr" => p.src,
                        other => panic!("unknown field {other} in {rule}"),
                    };
                    i += 2;
                    match w[i] {
                        "." => {
                            assert_eq!(
                                &w[i..i + 6],
                                [".", "meta", "l4proto", ".", "th", "dport"],
                                "{rule}"
                            );
                            let key =
                                format!("{} . {} . {}", p.dst, p.protocol.nft_name(), p.dst_port);
                            match self.key_lookup(&w, i + 6, &key, rule, path) {
                                Ok(next) => i = next,
                                Err(step) => return step,
                            }
                        }
                        "!=" => {
                            let (hit, next) = self.address_match(&w, i + 1, addr);
                            if hit {
                                return Step::Next;
                            }
                            i = next;
                        }
                        _ => {
                            let (hit, next) = self.address_match(&w, i, addr);
                            if !hit {
                                return Step::Next;
                            }
                            i = next;
                        }
                    }
                }
                "meta" => {
                    assert_eq!(w[i + 1], "l4proto", "{rule}");
                    if w[i + 2] == "." {
                        assert_eq!(&w[i + 2..i + 5], [".", "th", "dport"], "{rule}");
                        let key = format!("{} . {}", p.protocol.nft_name(), p.dst_port);
                        match self.key_lookup(&w, i + 5, &key, rule, path) {
                            Ok(next) => i = next,
                            Err(step) => return step,
                        }
                        continue;
                    }
                    if w[i + 2] != p.protocol.nft_name() {
                        return Step::Next;
                    }
                    i += 3;
                }
                "fib" => {
                    assert_eq!(&w[i..i + 4], ["fib", "saddr", "type", "local"], "{rule}");
                    if p.from != Origin::Node {
                        return Step::Next;
                    }
                    i += 4;
                }
                "numgen" => {
                    // `numgen random mod k == 0 goto X`: the draw may take X or go on, so
                    // follow X with a copy of the path, keep its DNAT as one possibility,
                    // and go on.
                    assert_eq!(
                        &w[i..i + 4],
                        ["numgen", "random", "mod", w[i + 3]],
                        "{rule}"
                    );
                    assert_eq!(&w[i + 4..i + 7], ["==", "0", "goto"], "{rule}");
                    let mut branch = path.clone();
                    let before = branch.dnat.len();
                    match self.run_chain(w[i + 7], &mut branch) {
                        Exit::Terminal(Terminal::Dnat) => {
                            path.dnat.extend_from_slice(&branch.dnat[before..])
                        }
                        _ => panic!("endpoint chain {} did not DNAT", w[i + 7]),
                    }
                    return Step::Next;
                }
                "jump" | "goto" => {
                    let target = w[i + 1];
                    if target == "mark-for-masquerade" {
                        path.masquerade = true;
                    } else {
                        match self.run_chain(target, path) {
                            Exit::Terminal(t) => return Step::Terminal(t),
                            Exit::Fallthrough if word == "goto" => return Step::Leave,
                            Exit::Fallthrough => {}
                        }
                    }
                    i += 2;
                }
                "update" => {
                    // Affinity bookkeeping: no effect on this packet.
                    i = w.iter().position(|x| *x == "}").unwrap_or(w.len()) + 1;
                }
                "dnat" if w[i + 1] == "to" => {
                    let to: SocketAddr = w[i + 2].parse().unwrap();
                    path.dnat.push((to, path.masquerade));
                    return Step::Terminal(Terminal::Dnat);
                }
                "dnat" => return self.dnat_map(&w[i + 1..], rule, path),
                "drop" => return Step::Terminal(Terminal::Drop),
                "reject" => return Step::Terminal(Terminal::Reject),
                "return" => return Step::Leave,
                other => panic!("cannot trace {other:?} in rule {rule:?}"),
            }
        }
        Step::Next
    }

    /// `dnat ip to [ip daddr .] tcp dport . numgen random mod N map @m`: every slot is a
    /// possible target, and each must exist (a missing one would make the kernel skip the
    /// rule, sending the packet on un-DNATed). The hairpin set (postrouting) masquerades a
    /// pod that reached itself.
    fn dnat_map(&self, w: &[&str], rule: &str, path: &mut Path) -> Step {
        let p = self.packet;
        let proto = p.protocol.nft_name();
        let (front, rest) = match w {
            [_, "to", _, "daddr", ".", pr, "dport", ".", rest @ ..] if *pr == proto => {
                (format!("{} . {}", p.dst, p.dst_port), rest)
            }
            [_, "to", pr, "dport", ".", rest @ ..] if *pr == proto => {
                (p.dst_port.to_string(), rest)
            }
            _ => panic!("cannot trace {rule:?}"),
        };
        let [.., "numgen", "random", "mod", n, "map", map] = rest else {
            panic!("cannot trace {rule:?}");
        };
        let n: u32 = n.parse().unwrap();
        let backends = self
            .table
            .sets
            .get(&map[1..])
            .unwrap_or_else(|| panic!("no map {map}"));
        let hairpin = self.table.sets.get("hairpin");
        for slot in 0..n {
            let key = format!("{front} . {slot}");
            let Some((_, Some(value))) = backends.elements.get(&key) else {
                panic!("{map} has no element {key} for {rule:?}");
            };
            let (ip, port) = value.split_once(" . ").unwrap();
            let to = SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap());
            let hairpin_key = format!("{} . {} . {}", p.src, to.ip(), p.dst);
            let hairpinned = hairpin.is_some_and(|h| h.elements.contains_key(&hairpin_key));
            path.dnat.push((to, path.masquerade || hairpinned));
        }
        Step::Terminal(Terminal::Dnat)
    }

    /// What follows a concatenated key at `w[at]`: `@set` (not a member: no match) or
    /// `vmap @map`. `Ok`: the rule goes on at that word; `Err`: the rule's step.
    fn key_lookup(
        &self,
        w: &[&str],
        at: usize,
        key: &str,
        rule: &str,
        path: &mut Path,
    ) -> Result<usize, Step> {
        if let Some(set) = w[at].strip_prefix('@') {
            let member = self
                .table
                .sets
                .get(set)
                .unwrap_or_else(|| panic!("no set {set}"))
                .elements
                .contains_key(key);
            return if member { Ok(at + 1) } else { Err(Step::Next) };
        }
        assert_eq!(w[at], "vmap", "{rule}");
        Err(self.vmap(&w[at + 1][1..], key, path))
    }

    /// A verdict-map lookup: no element, no match.
    fn vmap(&self, map: &str, key: &str, path: &mut Path) -> Step {
        let set = self
            .table
            .sets
            .get(map)
            .unwrap_or_else(|| panic!("no map {map}"));
        let Some((_, Some(value))) = set.elements.get(key) else {
            return Step::Next;
        };
        match value.split_once(' ') {
            Some(("goto", target)) => match self.run_chain(target, path) {
                Exit::Terminal(t) => Step::Terminal(t),
                Exit::Fallthrough => Step::Leave,
            },
            None if value == "drop" => Step::Terminal(Terminal::Drop),
            _ => panic!("unknown verdict {value}"),
        }
    }

    /// Matches `addr` against what starts at `w[i]`: `{ set }`, `@set` or a literal.
    fn address_match(&self, w: &[&str], i: usize, addr: IpAddr) -> (bool, usize) {
        if w[i] == "{" {
            let end = i + w[i..].iter().position(|x| *x == "}").unwrap();
            let hit = w[i + 1..end]
                .iter()
                .any(|item| contains(item.trim_end_matches(','), addr));
            (hit, end + 1)
        } else if let Some(set) = w[i].strip_prefix('@') {
            let set = self
                .table
                .sets
                .get(set)
                .unwrap_or_else(|| panic!("no set {set}"));
            (set.elements.contains_key(&addr.to_string()), i + 1)
        } else {
            (contains(w[i], addr), i + 1)
        }
    }
}

fn contains(item: &str, addr: IpAddr) -> bool {
    if item.contains('/') {
        item.parse::<IpNet>().unwrap().contains(&addr)
    } else {
        item.parse::<IpAddr>().unwrap() == addr
    }
}
