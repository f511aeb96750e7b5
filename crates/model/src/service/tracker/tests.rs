//! The tracker must always hold what a full compile would, and its changes, rendered, must
//! turn the old table into the new one.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;

use crate::service::testutil::generate::{ServiceSpec, cluster, objects, service_spec};
use crate::service::testutil::ruleset::Ruleset;
use crate::service::testutil::*;
use crate::service::tracker::shared;
use crate::service::{ServiceTracker, compile, render_changes, render_full};

/// Objects as an API server would hand them out: each with a resourceVersion that changes
/// when (and only when) its content does.
fn versioned(specs: &[ServiceSpec]) -> (Vec<Service>, Vec<EndpointSlice>) {
    let (mut services, mut slices) = objects(specs);
    fn stamp<T: serde::Serialize>(object: &T, meta: &mut ObjectMeta) {
        let mut h = DefaultHasher::new();
        serde_json::to_string(object).unwrap().hash(&mut h);
        meta.resource_version = Some(h.finish().to_string());
    }
    for s in &mut services {
        let copy = s.clone();
        stamp(&copy, &mut s.metadata);
    }
    for s in &mut slices {
        let copy = s.clone();
        stamp(&copy, &mut s.metadata);
    }
    (services, slices)
}

fn script(rules: &mut Ruleset, script: &str) {
    if let Err(e) = rules.apply(script) {
        panic!("{e}\n--- script ---\n{script}");
    }
}

fn fresh(state: &crate::service::ServiceState) -> Ruleset {
    let mut rules = Ruleset::default();
    script(&mut rules, &render_full(state).to_script());
    rules
}

/// Hands out objects as a watch cache does: an object equal to one of the previous step is
/// the same `Arc` (when `share`), any other a new one.
#[derive(Default)]
struct WatchCache {
    share: bool,
    services: HashMap<String, Arc<Service>>,
    slices: HashMap<String, Arc<EndpointSlice>>,
}

impl WatchCache {
    fn hand_out(
        &mut self,
        services: &[Service],
        slices: &[EndpointSlice],
    ) -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
        fn one<T: Clone + serde::Serialize>(
            share: bool,
            previous: &mut HashMap<String, Arc<T>>,
            objects: &[T],
        ) -> Vec<Arc<T>> {
            let mut now = HashMap::new();
            let out = objects
                .iter()
                .map(|o| {
                    let json = serde_json::to_string(o).unwrap();
                    let arc = match previous.get(&json) {
                        Some(arc) if share => Arc::clone(arc),
                        _ => Arc::new(o.clone()),
                    };
                    now.insert(json, Arc::clone(&arc));
                    arc
                })
                .collect();
            *previous = now;
            out
        }
        (
            one(self.share, &mut self.services, services),
            one(self.share, &mut self.slices, slices),
        )
    }
}

/// Runs a sequence of clusters through one tracker, checking each step.
fn follow(steps: &[Vec<ServiceSpec>], share: bool) -> Result<(), TestCaseError> {
    let mut tracker = ServiceTracker::new();
    let mut rules: Option<Ruleset> = None;
    let mut cache = WatchCache {
        share,
        ..WatchCache::default()
    };
    for specs in steps {
        let (services, slices) = versioned(specs);
        let old_node = tracker.state().node.clone();
        let (shared_services, shared_slices) = cache.hand_out(&services, &slices);
        let changes = tracker.update(&shared_services, &shared_slices, &node());
        let want = compile(&services, &slices, &node());
        prop_assert_eq!(tracker.state(), &want);
        match &mut rules {
            None => rules = Some(fresh(&want)),
            Some(rules) => {
                let diff = render_changes(&old_node, tracker.state(), &changes.services);
                script(rules, &diff.to_script());
                prop_assert_eq!(&*rules, &fresh(&want));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_clusters_in_turn_compile_and_render_as_a_full_compile(
        steps in prop::collection::vec(cluster(), 1..5),
        share in any::<bool>(),
    ) {
        follow(&steps, share)?;
    }

    #[test]
    fn one_service_changing_at_a_time_compiles_and_renders_as_a_full_compile(
        start in cluster(),
        edits in prop::collection::vec((0usize..8, prop::option::of(service_spec())), 1..6),
        share in any::<bool>(),
    ) {
        // Each edit replaces (or removes, or appends) one Service of the previous step.
        let mut steps = vec![start];
        for (at, spec) in edits {
            let mut next = steps.last().unwrap().clone();
            match spec {
                Some(spec) if at < next.len() => next[at] = spec,
                Some(spec) => next.push(spec),
                None if at < next.len() => {
                    next.remove(at);
                }
                None => {}
            }
            steps.push(next);
        }
        follow(&steps, share)?;
    }
}

#[test]
fn an_unchanged_cluster_reports_no_change_and_one_edit_only_its_service() {
    let specs = |endpoint: &str| {
        let services = vec![
            service("ns", "a", "172.30.0.1", vec![port("p", "TCP", 80)]),
            service("ns", "b", "172.30.0.2", vec![port("p", "TCP", 80)]),
        ];
        let slices = vec![
            slice("ns", "a", "a-1", &[("p", "TCP", 80)], vec![ep("10.0.1.1")]),
            slice("ns", "b", "b-1", &[("p", "TCP", 80)], vec![ep(endpoint)]),
        ];
        (services, slices)
    };
    let stamp = |(mut services, mut slices): (Vec<Service>, Vec<EndpointSlice>), v: &str| {
        for s in &mut services {
            s.metadata.resource_version = Some("1".into());
        }
        for s in &mut slices {
            s.metadata.resource_version = Some(v.into());
        }
        (services, slices)
    };
    let mut tracker = ServiceTracker::new();
    let (services, slices) = stamp(specs("10.0.2.1"), "1");
    assert!(
        tracker
            .update(&shared(&services), &shared(&slices), &node())
            .full
    );

    let again = tracker.update(&shared(&services), &shared(&slices), &node());
    assert!(!again.full && again.services.is_empty(), "{again:?}");

    // Only b's slice has a new version (a's too, but with the same content it is a new
    // version all the same: both are recompiled, only b differs in the rendered diff).
    let (services, mut slices) = stamp(specs("10.0.2.9"), "1");
    slices[1].metadata.resource_version = Some("2".into());
    let old_node = tracker.state().node.clone();
    let changes = tracker.update(&shared(&services), &shared(&slices), &node());
    assert!(!changes.full);
    let names: Vec<String> = changes
        .services
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(names, ["ns/b"]);
    let diff = render_changes(&old_node, tracker.state(), &changes.services);
    assert!(diff.script.is_empty() && diff.cleanup.is_empty());
    assert!(
        diff.to_script().contains("10.0.2.9"),
        "{}",
        diff.to_script()
    );

    // Without versions nothing tells what changed: everything is compiled.
    let (services, slices) = specs("10.0.2.9");
    assert!(
        tracker
            .update(&shared(&services), &shared(&slices), &node())
            .full
    );
}

#[test]
fn warnings_of_unchanged_objects_survive_an_incremental_update() {
    let objects = |a_endpoint: &str| {
        let mut services = vec![
            service("ns", "a", "172.30.0.1", vec![port("p", "TCP", 80)]),
            service("ns", "b", "172.30.0.2", vec![port("p", "TCP", 80)]),
        ];
        let mut slices = vec![
            slice("ns", "a", "a-1", &[("p", "TCP", 80)], vec![ep(a_endpoint)]),
            // A bad address: a warning that belongs to b.
            slice("ns", "b", "b-1", &[("p", "TCP", 80)], vec![ep("10.0.2.x")]),
            // No Service label at all.
            slice(
                "ns",
                "c",
                "orphan",
                &[("p", "TCP", 80)],
                vec![ep("10.0.3.x")],
            ),
        ];
        slices[2].metadata.labels = None;
        for s in &mut services {
            s.metadata.resource_version = Some("1".into());
        }
        for s in &mut slices {
            s.metadata.resource_version = Some(format!("v-{a_endpoint}"));
        }
        // b's slice stays the same; a's and the orphan's get new versions.
        slices[1].metadata.resource_version = Some("1".into());
        (services, slices)
    };
    let mut tracker = ServiceTracker::new();
    let (services, slices) = objects("10.0.1.1");
    tracker.update(&shared(&services), &shared(&slices), &node());
    let want = compile(&services, &slices, &node());
    assert_eq!(want.warnings.len(), 2, "{:?}", want.warnings);
    assert_eq!(tracker.state(), &want);

    for endpoint in ["10.0.1.2", "10.0.1.3"] {
        let (services, slices) = objects(endpoint);
        let changes = tracker.update(&shared(&services), &shared(&slices), &node());
        assert!(!changes.full);
        assert_eq!(tracker.state(), &compile(&services, &slices, &node()));
    }
}

#[test]
fn reordered_and_repeated_objects_are_told_apart_by_address() {
    let services = vec![
        service("ns", "a", "172.30.0.1", vec![port("p", "TCP", 80)]),
        service("ns", "b", "172.30.0.2", vec![port("p", "TCP", 80)]),
    ];
    let slices = vec![
        slice("ns", "a", "a-1", &[("p", "TCP", 80)], vec![ep("10.0.1.1")]),
        slice("ns", "b", "b-1", &[("p", "TCP", 80)], vec![ep("10.0.2.1")]),
    ];
    let (mut services, mut slices) = (services, slices);
    for s in &mut services {
        s.metadata.resource_version = Some("1".into());
    }
    for s in &mut slices {
        s.metadata.resource_version = Some("1".into());
    }
    let (services, slices) = (shared(&services), shared(&slices));
    let plain = |arcs: &[Arc<EndpointSlice>]| -> Vec<EndpointSlice> {
        arcs.iter().map(|a| EndpointSlice::clone(a)).collect()
    };
    let mut tracker = ServiceTracker::new();
    assert!(tracker.update(&services, &slices, &node()).full);

    // The same objects in another order: nothing changed.
    let reversed: Vec<_> = slices.iter().rev().cloned().collect();
    let changes = tracker.update(&services, &reversed, &node());
    assert!(!changes.full && changes.services.is_empty(), "{changes:?}");

    // b's slice twice, a's gone: as many objects as before, but not the same ones.
    let repeated = vec![Arc::clone(&slices[1]), Arc::clone(&slices[1])];
    let changes = tracker.update(&services, &repeated, &node());
    let names: Vec<String> = changes
        .services
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert!(names.contains(&"ns/a".to_owned()), "{names:?}");
    assert_eq!(
        tracker.state(),
        &compile(&services, &plain(&repeated), &node())
    );

    // And back.
    tracker.update(&services, &slices, &node());
    assert_eq!(
        tracker.state(),
        &compile(&services, &plain(&slices), &node())
    );
}

#[test]
fn objects_inserted_removed_or_swapped_anywhere_are_found_by_the_ordered_walk() {
    let one = |i: u8| {
        let mut svc = service(
            "ns",
            &format!("s{i}"),
            &format!("172.30.0.{i}"),
            vec![port("p", "TCP", 80)],
        );
        let mut sl = slice(
            "ns",
            &format!("s{i}"),
            &format!("s{i}-1"),
            &[("p", "TCP", 80)],
            vec![ep(&format!("10.0.{i}.1"))],
        );
        svc.metadata.resource_version = Some("1".into());
        sl.metadata.resource_version = Some("1".into());
        (Arc::new(svc), Arc::new(sl))
    };
    let all: Vec<_> = (1..=9).map(one).collect();
    let pick = |indexes: &[usize]| -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
        indexes.iter().map(|&i| all[i].clone()).unzip()
    };
    let mut tracker = ServiceTracker::new();
    let (services, slices) = pick(&[0, 1, 2, 3, 4, 5]);
    assert!(tracker.update(&services, &slices, &node()).full);
    let mut before: Vec<usize> = vec![0, 1, 2, 3, 4, 5];
    // Each step: the objects in order, and so the Services that changed.
    let steps: [&[usize]; 9] = [
        &[0, 1, 2, 6, 3, 4, 5],    // one inserted in the middle
        &[0, 1, 2, 3, 4, 5],       // and removed
        &[7, 0, 1, 2, 3, 4, 5, 8], // at both ends
        &[0, 1, 2, 3, 4, 5],       // removed at both ends
        &[0, 2, 1, 3, 4, 5],       // two swapped: nothing changed
        &[0, 2, 3, 4, 5],          // one removed next to the swap
        &[5, 4, 3, 2, 0],          // reversed
        &[5, 6, 7, 8, 0],          // most replaced
        &[0, 1, 2, 3, 4, 5],       // and back
    ];
    for step in steps {
        let (services, slices) = pick(step);
        let changes = tracker.update(&services, &slices, &node());
        let mut changed: Vec<String> = changes
            .services
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        changed.sort();
        let mut expected: Vec<String> = before
            .iter()
            .filter(|i| !step.contains(i))
            .chain(step.iter().filter(|i| !before.contains(i)))
            .map(|i| format!("ns/s{}", i + 1))
            .collect();
        expected.sort();
        assert!(!changes.full, "step {step:?}");
        assert_eq!(changed, expected, "step {step:?}");
        let plain_services: Vec<Service> = services.iter().map(|s| Service::clone(s)).collect();
        let plain_slices: Vec<EndpointSlice> =
            slices.iter().map(|s| EndpointSlice::clone(s)).collect();
        assert_eq!(
            tracker.state(),
            &compile(&plain_services, &plain_slices, &node()),
            "step {step:?}"
        );
        before = step.to_vec();
    }
}
