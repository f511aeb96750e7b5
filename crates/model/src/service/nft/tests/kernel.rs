//! The kernel's own verdict on our scripts: `nft -c` (check mode: the kernel validates the
//! whole transaction, then discards it) in a throwaway network namespace, so nothing on
//! this machine is touched. Runs only as root with `nft` and `unshare` installed; skipped
//! (with a note) otherwise.

use crate::nft_check::{can_check, nft_check};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use crate::service::testutil::generate::{cluster, objects};
use crate::service::testutil::ruleset::Ruleset;
use crate::service::testutil::*;
use crate::service::{IpFamily, compile, render_diff, render_full, render_prune};

#[test]
fn the_kernel_accepts_full_renders_diffs_and_prunes() {
    if !can_check() {
        eprintln!("skipped: needs root, nft and unshare");
        return;
    }
    let mut runner = TestRunner::deterministic();
    let strategy = cluster();
    let mut previous = compile(compile::NO_SERVICES, compile::NO_SLICES, &node());
    for round in 0..12 {
        let spec = strategy.new_tree(&mut runner).unwrap().current();
        let (services, slices) = objects(&spec);
        let state = compile(&services, &slices, &node());

        let full = render_full(&state).to_script();
        nft_check(&full).unwrap_or_else(|e| panic!("round {round}, full render: {e}\n{full}"));

        let then_diff = format!(
            "{}{}",
            render_full(&previous).to_script(),
            render_diff(&previous, &state).to_script()
        );
        nft_check(&then_diff).unwrap_or_else(|e| panic!("round {round}, diff: {e}\n{then_diff}"));

        // A restart: the new full render over the old table, then the prune of what it
        // left, named as the model says `nft list` would name them.
        let mut rules = Ruleset::default();
        rules.apply(&render_full(&previous).to_script()).unwrap();
        let mut adopt = format!("{}{}", render_full(&previous).to_script(), full);
        for (f, fam) in [(IpFamily::V4, "ip"), (IpFamily::V6, "ip6")] {
            let table = rules.table(fam).unwrap();
            let chains: Vec<String> = table.chains.keys().cloned().collect();
            let sets: Vec<String> = table.sets.keys().cloned().collect();
            adopt.push_str(&render_prune(&state, f, &chains, &sets));
        }
        nft_check(&adopt).unwrap_or_else(|e| panic!("round {round}, adoption: {e}\n{adopt}"));
        previous = state;
    }
}

#[test]
fn the_kernel_rejects_a_broken_script() {
    // The check itself must be able to fail, or the test above proves nothing.
    if !can_check() {
        eprintln!("skipped: needs root, nft and unshare");
        return;
    }
    let state = compile_clean(
        &[service("ns", "a", "172.30.0.1", vec![port("p", "TCP", 80)])],
        &[slice(
            "ns",
            "a",
            "a-1",
            &[("p", "TCP", 80)],
            vec![ep("10.0.1.1")],
        )],
    );
    let broken = render_full(&state).to_script().replace(
        "add chain ip podnet_services lb-",
        "add chain ip podnet_services x-",
    );
    assert!(nft_check(&broken).is_err());
}
