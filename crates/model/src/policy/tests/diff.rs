//! Incremental changes (`PolicyTable::changes_from`): their shape, and, when the kernel can
//! be asked, that the old table plus the changes lists exactly as the new table loaded whole.

use std::collections::BTreeSet;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::json;

use super::{World, ip};
use crate::nft_check::{can_check, nft_apply_and_list};
use crate::policy::{NodeView, PolicyTable, TABLE, render};

fn table(w: &World) -> PolicyTable {
    let state = w.state();
    render(
        &state,
        &NodeView::for_node_ips(&state, &[ip("192.168.0.1")]),
    )
}

/// A listing as a set of objects, each with its elements sorted: the kernel lists elements
/// and objects in the order they were added, which differs between the two ways.
fn normalize(listing: &str) -> BTreeSet<String> {
    let mut objects = BTreeSet::new();
    let mut current: Vec<String> = Vec::new();
    let mut elements: Option<String> = None;
    for line in listing.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(list) = elements.as_mut() {
            list.push_str(line);
        } else if line.starts_with("elements = {") {
            elements = Some(line.to_owned());
        } else if line == "}" {
            objects.insert(current.join("\n"));
            current.clear();
            continue;
        } else {
            current.push(line.to_owned());
            continue;
        }
        if let Some(list) = elements.take_if(|l| l.ends_with('}')) {
            let inner = list
                .trim_start_matches("elements = {")
                .trim_end_matches('}');
            let mut items: Vec<&str> = inner.split(',').map(str::trim).collect();
            items.sort_unstable();
            current.push(format!("elements: {}", items.join(", ")));
        }
    }
    objects
}

#[test]
fn equal_tables_need_no_change() {
    let w = World::upstream().np("x", "deny", json!({"podSelector": {}}));
    assert_eq!(table(&w).changes_from(&table(&w)), "");
}

#[test]
fn a_changed_policy_becomes_element_changes() {
    let policy = |port: u16| {
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                         "ports": [{"port": port}]}]})
    };
    let old = table(&World::upstream().np("x", "web", policy(80)));
    let new = table(&World::upstream().np("x", "web", policy(8080)));
    let changes = new.changes_from(&old);
    assert_eq!(
        changes,
        format!(
            "delete element inet {TABLE} ingress-x/a/allow-v4 {{ 10.0.2.1-10.0.2.3 . tcp . 80 }}\n\
             add element inet {TABLE} ingress-x/a/allow-v4 {{ 10.0.2.1-10.0.2.3 . tcp . 8080 }}\n"
        )
    );
}

#[test]
fn changes_turn_the_old_table_into_the_new_one_in_the_kernel() {
    if !can_check() {
        eprintln!("skipped: needs root, nft and unshare");
        return;
    }
    let mut runner = TestRunner::deterministic();
    let strategy = super::prop::world();
    let mut worlds: Vec<World> = (0..8)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    // Small changes too: one policy less, one pod less.
    let mut fewer = worlds[0].clone();
    fewer.nps.pop();
    fewer.cnps.pop();
    let mut smaller = worlds[1].clone();
    smaller.pods.remove(0);
    worlds.extend([fewer, smaller, World::default()]);
    let target = format!("inet {TABLE}");
    let steps = (1..worlds.len())
        .map(|i| (i - 1, i))
        .chain([(0, 8), (10, 0)]);
    for (from, to) in steps {
        let (old, new) = (table(&worlds[from]), table(&worlds[to]));
        let changes = new.changes_from(&old);
        let stepped = nft_apply_and_list(&[&old.script(), &changes], &target)
            .unwrap_or_else(|e| panic!("{e}\n{changes}"));
        let whole = nft_apply_and_list(&[&new.script()], &target).unwrap();
        assert_eq!(normalize(&stepped), normalize(&whole), "{changes}");
    }
    // The comparison sees a difference.
    let (a, b) = (table(&worlds[0]), table(&worlds[1]));
    let both = |t: &PolicyTable| normalize(&nft_apply_and_list(&[&t.script()], &target).unwrap());
    assert_ne!(both(&a), both(&b));
}
