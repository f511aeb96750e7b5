//! The rendered table as objects (sets, maps, chains), written whole or as the changes from
//! the table last applied: element additions and deletions, and the chains that differ
//! flushed and refilled, in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::TABLE;

/// One node's `inet podnet_policy` table, as [`render`](super::render) builds it: write it
/// whole ([`script`](Self::script)) or as the changes from the one the kernel has
/// ([`changes_from`](Self::changes_from)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyTable {
    /// In declaration order: every object after those it refers to, but for `goto`/`jump`
    /// targets (nft resolves chains at the end of the transaction).
    objects: Vec<Object>,
}

/// A set, a map or a chain of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Object {
    /// A set or a verdict map.
    Lookup {
        /// `set` or `map`.
        kind: &'static str,
        name: String,
        /// `type …`, then `flags …` if any.
        declaration: Vec<String>,
        /// `key` (set) or `key : verdict` (map).
        elements: Vec<String>,
    },
    /// A chain.
    Chain {
        name: String,
        /// A base chain's `type … hook …; policy …;`.
        hook: Option<&'static str>,
        rules: Vec<String>,
    },
}

/// Lookups by name: kind, declaration, elements.
type Lookups<'a> = BTreeMap<&'a str, (&'a str, &'a [String], &'a [String])>;

// === impl PolicyTable ===

impl PolicyTable {
    pub(super) fn push(&mut self, object: Object) {
        self.objects.push(object);
    }

    pub(super) fn extend(&mut self, other: PolicyTable) {
        self.objects.extend(other.objects);
    }

    /// The whole table for `nft -f -`: created if missing, deleted and declared again in one
    /// transaction.
    pub fn script(&self) -> String {
        let mut out = String::with_capacity(self.objects.len() * 256 + 1024);
        let _ = writeln!(out, "table inet {TABLE} {{}}");
        let _ = writeln!(out, "delete table inet {TABLE}");
        let _ = writeln!(out, "table inet {TABLE} {{");
        for object in &self.objects {
            match object {
                Object::Lookup {
                    kind,
                    name,
                    declaration,
                    elements,
                } => {
                    let _ = writeln!(out, "\t{kind} {name} {{");
                    for line in declaration {
                        let _ = writeln!(out, "\t\t{line}");
                    }
                    if !elements.is_empty() {
                        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
                    }
                }
                Object::Chain { name, hook, rules } => {
                    let _ = writeln!(out, "\tchain {name} {{");
                    if let Some(hook) = hook {
                        let _ = writeln!(out, "\t\t{hook}");
                    }
                    for rule in rules {
                        let _ = writeln!(out, "\t\t{rule}");
                    }
                }
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        out
    }

    /// A transaction turning `old` (what the kernel has) into this table: new chains and
    /// lookups declared, elements deleted and added, chains that differ flushed and
    /// refilled, what is gone flushed and deleted (chains emptied, then lookups, then
    /// chains), in an order in which nothing refers to an object missing at that point. Empty when the tables are equal. Base chains never
    /// change (their rules are fixed); lookups never change type (their names say it).
    pub fn changes_from(&self, old: &PolicyTable) -> String {
        let t = format!("inet {TABLE}");
        let (old_lookups, old_chains) = old.index();
        let (new_lookups, new_chains) = self.index();
        let mut out = String::new();
        // Chains first, empty: rules and map elements may jump to them.
        for name in new_chains.keys().filter(|n| !old_chains.contains_key(*n)) {
            let _ = writeln!(out, "add chain {t} {name}");
        }
        for (name, (kind, declaration, _)) in &new_lookups {
            if !old_lookups.contains_key(name) {
                let _ = writeln!(
                    out,
                    "add {kind} {t} {name} {{ {}; }}",
                    declaration.join("; ")
                );
            }
        }
        for (name, (kind, _, elements)) in &new_lookups {
            let before: BTreeSet<&str> = old_lookups
                .get(name)
                .map(|(_, _, e)| e.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let after: BTreeSet<&str> = elements.iter().map(String::as_str).collect();
            let gone: Vec<&str> = before
                .difference(&after)
                .map(|e| match *kind {
                    // A map element is deleted by its key.
                    "map" => e.split(" : ").next().unwrap_or(e),
                    _ => e,
                })
                .collect();
            let added: Vec<&str> = after.difference(&before).copied().collect();
            if !gone.is_empty() {
                let _ = writeln!(out, "delete element {t} {name} {{ {} }}", gone.join(", "));
            }
            if !added.is_empty() {
                let _ = writeln!(out, "add element {t} {name} {{ {} }}", added.join(", "));
            }
        }
        for (name, rules) in &new_chains {
            let previous = old_chains.get(name);
            if previous == Some(rules) {
                continue;
            }
            if previous.is_some() {
                let _ = writeln!(out, "flush chain {t} {name}");
            }
            for rule in *rules {
                let _ = writeln!(out, "add rule {t} {name} {rule}");
            }
        }
        let gone_chains: Vec<&&str> = old_chains
            .keys()
            .filter(|n| !new_chains.contains_key(**n))
            .collect();
        for name in &gone_chains {
            let _ = writeln!(out, "flush chain {t} {name}");
        }
        // Maps before chains: their elements may jump to the chains.
        for (name, (kind, _, _)) in &old_lookups {
            if !new_lookups.contains_key(name) {
                let _ = writeln!(out, "delete {kind} {t} {name}");
            }
        }
        for name in &gone_chains {
            let _ = writeln!(out, "delete chain {t} {name}");
        }
        out
    }

    /// Lookups and chains by name.
    fn index(&self) -> (Lookups<'_>, BTreeMap<&str, &[String]>) {
        let mut lookups = BTreeMap::new();
        let mut chains = BTreeMap::new();
        for object in &self.objects {
            match object {
                Object::Lookup {
                    kind,
                    name,
                    declaration,
                    elements,
                } => {
                    lookups.insert(
                        name.as_str(),
                        (*kind, declaration.as_slice(), elements.as_slice()),
                    );
                }
                Object::Chain { name, rules, .. } => {
                    chains.insert(name.as_str(), rules.as_slice());
                }
            }
        }
        (lookups, chains)
    }
}
