//! Collections of nft objects (chains with their rules, affinity sets, set and map
//! elements) and the transaction that turns one collection into another.
//!
//! A Service's objects are a function of its `ServiceEntry` and the node facts alone, so an
//! incremental sync recomputes only the Services that changed and compares them object by
//! object: unchanged chains and elements are not touched.

use std::collections::HashMap;

use super::super::state::IpFamily;
use super::script;

/// A collection of nft objects.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Objects {
    pub(super) sets: Vec<SetDecl>,
    pub(super) chains: Vec<ChainDef>,
    pub(super) elements: Vec<Element>,
}

/// An affinity set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SetDecl {
    pub(super) family: IpFamily,
    pub(super) name: String,
    pub(super) timeout: u32,
}

/// A regular chain and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChainDef {
    pub(super) family: IpFamily,
    pub(super) name: String,
    pub(super) rules: Vec<String>,
}

/// An element of a set (`value: None`) or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Element {
    pub(super) family: IpFamily,
    pub(super) container: &'static str,
    pub(super) key: String,
    pub(super) comment: Option<String>,
    pub(super) value: Option<String>,
}

/// The transaction of a diff, in the order that keeps every command valid: new sets and
/// chains are declared before rules use them, changed chains are flushed and refilled,
/// map elements are deleted before new ones take their keys, and chains and sets go last,
/// when nothing refers to them any more.
#[derive(Debug, Default)]
pub(super) struct Phases {
    add_sets: String,
    add_chains: String,
    write_rules: String,
    delete_elements: String,
    add_elements: String,
    flush_removed: String,
    delete_chains: String,
    delete_sets: String,
}

// === impl Objects ===

impl Objects {
    /// Writes commands creating every object (for a table whose fixed part exists).
    pub(super) fn write_add(&self, out: &mut String) {
        for set in &self.sets {
            script::add_affinity_set(out, set.family, &set.name, set.timeout);
        }
        for chain in &self.chains {
            script::command(out, "add", "chain", chain.family, &chain.name);
        }
        for chain in &self.chains {
            for rule in &chain.rules {
                script::add_rule(out, chain.family, &chain.name, rule);
            }
        }
        for e in &self.elements {
            e.write_add(out);
        }
    }
}

// === impl Element ===

impl Element {
    pub(super) fn write_add(&self, out: &mut String) {
        script::add_element(
            out,
            self.family,
            self.container,
            &self.key,
            self.comment.as_deref(),
            self.value.as_deref(),
        );
    }

    fn write_delete(&self, out: &mut String) {
        script::delete_element(out, self.family, self.container, &self.key);
    }
}

// === impl Phases ===

impl Phases {
    /// Adds the commands turning `old` into `new`.
    pub(super) fn diff(&mut self, old: &Objects, new: &Objects) {
        let old_sets: HashMap<(IpFamily, &str), &SetDecl> = old
            .sets
            .iter()
            .map(|s| ((s.family, s.name.as_str()), s))
            .collect();
        let new_sets: HashMap<(IpFamily, &str), &SetDecl> = new
            .sets
            .iter()
            .map(|s| ((s.family, s.name.as_str()), s))
            .collect();
        for set in &new.sets {
            if !old_sets.contains_key(&(set.family, set.name.as_str())) {
                script::add_affinity_set(&mut self.add_sets, set.family, &set.name, set.timeout);
            }
        }
        for set in &old.sets {
            if !new_sets.contains_key(&(set.family, set.name.as_str())) {
                script::command(
                    &mut self.delete_sets,
                    "delete",
                    "set",
                    set.family,
                    &set.name,
                );
            }
        }

        let old_chains: HashMap<(IpFamily, &str), &ChainDef> = old
            .chains
            .iter()
            .map(|c| ((c.family, c.name.as_str()), c))
            .collect();
        let new_chains: HashMap<(IpFamily, &str), &ChainDef> = new
            .chains
            .iter()
            .map(|c| ((c.family, c.name.as_str()), c))
            .collect();
        for chain in &new.chains {
            match old_chains.get(&(chain.family, chain.name.as_str())) {
                Some(old) if old.rules == chain.rules => continue,
                Some(_) => {
                    script::command(
                        &mut self.write_rules,
                        "flush",
                        "chain",
                        chain.family,
                        &chain.name,
                    );
                }
                None => {
                    script::command(
                        &mut self.add_chains,
                        "add",
                        "chain",
                        chain.family,
                        &chain.name,
                    );
                }
            }
            for rule in &chain.rules {
                script::add_rule(&mut self.write_rules, chain.family, &chain.name, rule);
            }
        }
        for chain in &old.chains {
            if !new_chains.contains_key(&(chain.family, chain.name.as_str())) {
                // Flushed first so that no removed chain still jumps to another one being
                // removed when the deletions run.
                script::command(
                    &mut self.flush_removed,
                    "flush",
                    "chain",
                    chain.family,
                    &chain.name,
                );
                script::command(
                    &mut self.delete_chains,
                    "delete",
                    "chain",
                    chain.family,
                    &chain.name,
                );
            }
        }

        let old_elements: HashMap<(IpFamily, &str, &str), &Element> = old
            .elements
            .iter()
            .map(|e| ((e.family, e.container, e.key.as_str()), e))
            .collect();
        let new_elements: HashMap<(IpFamily, &str, &str), &Element> = new
            .elements
            .iter()
            .map(|e| ((e.family, e.container, e.key.as_str()), e))
            .collect();
        for e in &old.elements {
            match new_elements.get(&(e.family, e.container, e.key.as_str())) {
                Some(n) if *n == e => {}
                // A changed value cannot be replaced in place: delete, then add.
                _ => e.write_delete(&mut self.delete_elements),
            }
        }
        for e in &new.elements {
            match old_elements.get(&(e.family, e.container, e.key.as_str())) {
                Some(o) if *o == e => {}
                _ => e.write_add(&mut self.add_elements),
            }
        }
    }

    /// The transaction.
    pub(super) fn finish(self) -> String {
        let mut out = String::with_capacity(
            self.add_sets.len()
                + self.add_chains.len()
                + self.write_rules.len()
                + self.delete_elements.len()
                + self.add_elements.len()
                + self.flush_removed.len()
                + self.delete_chains.len()
                + self.delete_sets.len(),
        );
        for part in [
            self.add_sets,
            self.add_chains,
            self.write_rules,
            self.delete_elements,
            self.add_elements,
            self.flush_removed,
            self.delete_chains,
            self.delete_sets,
        ] {
            out.push_str(&part);
        }
        out
    }
}
