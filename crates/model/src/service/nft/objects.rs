//! Collections of nft objects (chains with their rules, affinity sets, set and map
//! elements) and the transaction that turns one collection into another.
//!
//! A Service's objects are a function of its `ServiceEntry` and the node facts alone, so an
//! incremental sync recomputes only the Services that changed and compares them object by
//! object: unchanged chains and elements are not touched.

use std::collections::HashMap;

use super::super::state::IpFamily;
use super::Transaction;
use super::elements::{Element, ElementChange, Field};
use super::groups::Group;
use super::script;

/// A collection of nft objects.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Objects {
    pub(super) sets: Vec<SetDecl>,
    pub(super) chains: Vec<ChainDef>,
    pub(super) elements: Vec<Element>,
    /// The shared load-balancing chains the elements lead to (not owned: see `groups`).
    pub(super) groups: Vec<Group>,
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

/// The transaction of a diff, in the order that keeps every command valid: new sets and
/// chains are declared before rules use them, changed chains are flushed and refilled,
/// map elements are deleted before new ones take their keys, and chains and sets go last,
/// when nothing refers to them any more.
#[derive(Debug, Default)]
pub(super) struct Phases {
    pub(super) add_sets: String,
    pub(super) add_chains: String,
    pub(super) write_rules: String,
    delete_elements: Vec<ElementChange>,
    add_elements: Vec<ElementChange>,
    pub(super) flush_removed: String,
    pub(super) delete_chains: String,
    pub(super) delete_sets: String,
}

// === impl Objects ===

impl Objects {
    /// Writes commands creating (or emptying and refilling) every chain and declaring
    /// every set, for a table whose fixed part exists; the elements go to `elements`.
    pub(super) fn write_add(self, out: &mut String, elements: &mut Vec<ElementChange>) {
        for set in &self.sets {
            script::add_affinity_set(out, set.family, &set.name, set.timeout);
        }
        for chain in &self.chains {
            chain.write_declare(out);
        }
        for chain in &self.chains {
            chain.write_rules(out);
        }
        elements.extend(self.elements.into_iter().map(ElementChange::Add));
    }
}

// === impl ChainDef ===

impl ChainDef {
    /// Declares the chain and empties it: whether or not it existed, it then has no rules.
    pub(super) fn write_declare(&self, out: &mut String) {
        script::command(out, "add", "chain", self.family, &self.name);
        script::command(out, "flush", "chain", self.family, &self.name);
    }

    pub(super) fn write_rules(&self, out: &mut String) {
        for rule in &self.rules {
            script::add_rule(out, self.family, &self.name, rule);
        }
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

        type Key<'a> = (IpFamily, &'a str, &'a [Field]);
        let old_elements: HashMap<Key<'_>, &Element> = old
            .elements
            .iter()
            .map(|e| ((e.family, e.set, e.key.as_slice()), e))
            .collect();
        let new_elements: HashMap<Key<'_>, &Element> = new
            .elements
            .iter()
            .map(|e| ((e.family, e.set, e.key.as_slice()), e))
            .collect();
        for e in &old.elements {
            match new_elements.get(&(e.family, e.set, e.key.as_slice())) {
                Some(n) if *n == e => {}
                // A changed value cannot be replaced in place: delete, then add.
                _ => self.delete_elements.push(ElementChange::Delete(e.clone())),
            }
        }
        for e in &new.elements {
            match old_elements.get(&(e.family, e.set, e.key.as_slice())) {
                Some(o) if *o == e => {}
                _ => self.add_elements.push(ElementChange::Add(e.clone())),
            }
        }
    }

    /// The transaction: declarations and rules first, then the elements (which may lead to
    /// the new chains), then the removal of what nothing refers to any more.
    pub(super) fn finish(self) -> Transaction {
        let mut script = self.add_sets;
        script.push_str(&self.add_chains);
        script.push_str(&self.write_rules);
        let mut elements = self.delete_elements;
        elements.extend(self.add_elements);
        let mut cleanup = self.flush_removed;
        cleanup.push_str(&self.delete_chains);
        cleanup.push_str(&self.delete_sets);
        Transaction {
            script,
            elements,
            cleanup,
        }
    }
}
