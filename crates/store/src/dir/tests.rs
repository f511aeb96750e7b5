use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::testdata::{object, sample};

fn store() -> (tempfile::TempDir, ObjectStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ObjectStore::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

/// `obj` without the fields the store fills in, to compare what went in with what came out.
fn without_server_fields(mut obj: Object) -> Object {
    let meta = obj.metadata_mut();
    meta.uid = None;
    meta.resource_version = None;
    meta.creation_timestamp = None;
    obj
}

#[test]
fn every_kind_round_trips_through_the_store() {
    let (_dir, store) = store();
    for &kind in Kind::all() {
        let obj = sample(kind);
        let stored = store.put(&obj).unwrap();
        assert_eq!(
            without_server_fields(stored.clone()),
            without_server_fields(obj.clone())
        );
        let got = store.get(kind, obj.namespace(), obj.name()).unwrap();
        assert_eq!(got.as_ref(), Some(&stored), "{kind}");
        assert_eq!(store.list(kind).unwrap(), vec![stored], "{kind}");
    }
    assert_eq!(store.pods().unwrap().len(), 1);
    assert_eq!(store.nodes().unwrap().len(), 1);
    assert_eq!(store.namespaces().unwrap().len(), 1);
    assert_eq!(store.services().unwrap().len(), 1);
    assert_eq!(store.endpoint_slices().unwrap().len(), 1);
    assert_eq!(store.network_policies().unwrap().len(), 1);
    assert_eq!(store.deployments().unwrap().len(), 1);
    assert_eq!(store.ingresses().unwrap().len(), 1);
    assert_eq!(store.config_maps().unwrap().len(), 1);
}

#[test]
fn files_are_laid_out_by_plural_namespace_and_name() {
    let (_dir, store) = store();
    store.put(&sample(Kind::Pod)).unwrap();
    store.put(&sample(Kind::Node)).unwrap();
    assert!(store.root().join("pods/shop/web-0.yaml").is_file());
    assert!(store.root().join("nodes/n1.yaml").is_file());
    let text = fs::read_to_string(store.root().join("pods/shop/web-0.yaml")).unwrap();
    assert!(
        text.starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n"),
        "{text}"
    );
}

#[test]
fn put_fills_uid_creation_time_resource_version_and_default_namespace() {
    let (_dir, store) = store();
    let mut pod = sample(Kind::Pod);
    pod.metadata_mut().namespace = None;
    pod.metadata_mut().creation_timestamp = None;
    let stored = store.put(&pod).unwrap();
    let meta = stored.metadata();
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert_eq!(meta.uid.as_ref().map(String::len), Some(36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.resource_version.as_deref(), Some("1"));
    assert!(store.get(Kind::Pod, None, "web-0").unwrap().is_some());

    let other = store.put(&sample(Kind::Pod)).unwrap();
    assert_ne!(other.metadata().uid, meta.uid);
}

#[test]
fn cluster_scoped_objects_lose_a_namespace() {
    let (_dir, store) = store();
    let mut node = sample(Kind::Node);
    node.metadata_mut().namespace = Some("shop".into());
    let stored = store.put(&node).unwrap();
    assert_eq!(stored.namespace(), None);
    assert!(
        store
            .get(Kind::Node, Some("ignored"), "n1")
            .unwrap()
            .is_some()
    );
}

#[test]
fn replace_keeps_identity_and_status_and_bumps_the_revision() {
    let (_dir, store) = store();
    let first = store.put(&sample(Kind::Pod)).unwrap();
    let Object::Pod(mut pod) = sample(Kind::Pod) else {
        unreachable!()
    };
    pod.status = None;
    pod.metadata.labels = Some(BTreeMap::from([("app".into(), "web2".into())]));
    let second = store.put(&Object::Pod(pod)).unwrap();
    assert_eq!(second.metadata().uid, first.metadata().uid);
    assert_eq!(
        second.metadata().creation_timestamp,
        first.metadata().creation_timestamp
    );
    assert_eq!(second.metadata().resource_version.as_deref(), Some("2"));
    let Object::Pod(stored) = store
        .get(Kind::Pod, Some("shop"), "web-0")
        .unwrap()
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(stored.metadata.labels.unwrap()["app"], "web2");
    assert_eq!(stored.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(store.revision().unwrap(), 2);
}

#[test]
fn putting_an_identical_object_changes_nothing() {
    let (_dir, store) = store();
    let first = store.put(&sample(Kind::Service)).unwrap();
    let again = store.put(&sample(Kind::Service)).unwrap();
    assert_eq!(again, first);
    assert_eq!(store.revision().unwrap(), 1);
}

#[test]
fn revision_moves_on_every_change_and_only_then() {
    let (_dir, store) = store();
    assert_eq!(store.revision().unwrap(), 0);
    store.put(&sample(Kind::Node)).unwrap();
    assert_eq!(store.revision().unwrap(), 1);
    store.put(&sample(Kind::Pod)).unwrap();
    assert_eq!(store.revision().unwrap(), 2);
    let noop = store.update(Kind::Node, None, "n1", |_| Ok(())).unwrap();
    assert!(noop.is_some());
    assert_eq!(store.revision().unwrap(), 2);
    store
        .update(Kind::Node, None, "n1", |obj| {
            obj.metadata_mut().labels = Some(BTreeMap::from([("zone".into(), "a".into())]));
            Ok(())
        })
        .unwrap();
    assert_eq!(store.revision().unwrap(), 3);
    assert!(store.delete(Kind::Pod, Some("shop"), "web-0").unwrap());
    assert_eq!(store.revision().unwrap(), 4);
    assert!(!store.delete(Kind::Pod, Some("shop"), "web-0").unwrap());
    assert_eq!(store.revision().unwrap(), 4);
    assert_eq!(store.get(Kind::Pod, Some("shop"), "web-0").unwrap(), None);
}

#[test]
fn update_returns_the_stored_object_and_none_when_absent() {
    let (_dir, store) = store();
    assert_eq!(
        store
            .update(Kind::Pod, Some("shop"), "web-0", |_| Ok(()))
            .unwrap(),
        None
    );
    store.put(&sample(Kind::Pod)).unwrap();
    let updated = store
        .update(Kind::Pod, Some("shop"), "web-0", |obj| {
            obj.metadata_mut().uid = Some("forged".into());
            if let Object::Pod(pod) = obj {
                pod.status.get_or_insert_default().phase = Some("Succeeded".into());
            }
            Ok(())
        })
        .unwrap()
        .unwrap();
    assert_ne!(updated.metadata().uid.as_deref(), Some("forged"));
    assert_eq!(updated.metadata().resource_version.as_deref(), Some("2"));
    let stored = store.get(Kind::Pod, Some("shop"), "web-0").unwrap();
    assert_eq!(stored, Some(updated));
}

#[test]
fn update_may_not_rename_and_a_refusal_writes_nothing() {
    let (_dir, store) = store();
    store.put(&sample(Kind::Pod)).unwrap();
    let err = store
        .update(Kind::Pod, Some("shop"), "web-0", |obj| {
            obj.metadata_mut().name = Some("web-1".into());
            Ok(())
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("update of Pod shop/web-0 changed its name"),
        "{err}"
    );
    let err = store
        .update(Kind::Pod, Some("shop"), "web-0", |_| {
            Err(StoreError::Rejected("pod is gone".into()))
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "update rejected: pod is gone");
    assert_eq!(store.revision().unwrap(), 1);
}

#[test]
fn concurrent_updates_lose_nothing() {
    const THREADS: usize = 4;
    const INCREMENTS: usize = 25;
    let (_dir, store) = store();
    store.put(&sample(Kind::Node)).unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            // Each worker opens the store itself, as each lab process does.
            let store = ObjectStore::open(store.root()).unwrap();
            thread::spawn(move || {
                for _ in 0..INCREMENTS {
                    store
                        .update(Kind::Node, None, "n1", |obj| {
                            let annotations =
                                obj.metadata_mut().annotations.get_or_insert_default();
                            let count: usize =
                                annotations.get("counter").map_or(0, |c| c.parse().unwrap());
                            annotations.insert("counter".into(), (count + 1).to_string());
                            Ok(())
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let node = store.get(Kind::Node, None, "n1").unwrap().unwrap();
    let counter = &node.metadata().annotations.as_ref().unwrap()["counter"];
    assert_eq!(counter, &(THREADS * INCREMENTS).to_string());
    assert_eq!(store.revision().unwrap(), 1 + (THREADS * INCREMENTS) as u64);
}

#[test]
fn readers_never_see_a_partly_written_object() {
    let (_dir, store) = store();
    store.put(&sample(Kind::ConfigMap)).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = store.clone();
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                let got = store.get(Kind::ConfigMap, Some("shop"), "web-config");
                assert!(matches!(got, Ok(Some(_))), "{got:?}");
                assert_eq!(store.list(Kind::ConfigMap).unwrap().len(), 1);
                reads += 1;
            }
            reads
        })
    };
    for i in 0..200 {
        let mut cm = sample(Kind::ConfigMap);
        if let Object::ConfigMap(c) = &mut cm {
            // Values of very different sizes, so a torn write would show.
            c.data = Some(BTreeMap::from([(
                "blob".into(),
                "x".repeat(1 + (i % 7) * 4000),
            )]));
        }
        store.put(&cm).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let leftovers: Vec<_> = fs::read_dir(store.root().join("configmaps/shop"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["web-config.yaml"]);
}

#[test]
fn list_is_sorted_by_namespace_then_name() {
    let (_dir, store) = store();
    for (ns, name) in [
        ("shop", "b"),
        ("default", "z"),
        ("shop", "a"),
        ("alpha", "m"),
    ] {
        let mut cm = sample(Kind::ConfigMap);
        cm.metadata_mut().namespace = Some(ns.into());
        cm.metadata_mut().name = Some(name.into());
        store.put(&cm).unwrap();
    }
    let keys: Vec<_> = store
        .list(Kind::ConfigMap)
        .unwrap()
        .iter()
        .map(|o| format!("{}/{}", o.namespace().unwrap(), o.name()))
        .collect();
    assert_eq!(keys, ["alpha/m", "default/z", "shop/a", "shop/b"]);
}

#[test]
fn a_file_that_does_not_decode_is_an_error_naming_it() {
    let (_dir, store) = store();
    store.put(&sample(Kind::Pod)).unwrap();
    let path = store.root().join("pods/shop/web-0.yaml");
    fs::write(&path, "apiVersion: v1\nkind: Pod\nspec: [not, a, spec]\n").unwrap();
    for err in [
        store.list(Kind::Pod).unwrap_err(),
        store.get(Kind::Pod, Some("shop"), "web-0").unwrap_err(),
    ] {
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("field spec"), "{message}");
    }
    fs::write(&path, "kind: [").unwrap();
    assert!(matches!(store.pods(), Err(StoreError::Corrupt { .. })));
}

#[test]
fn a_file_holding_another_object_is_an_error() {
    let (_dir, store) = store();
    let dir = store.root().join("pods/shop");
    fs::create_dir_all(&dir).unwrap();
    let other = object(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "other", "namespace": "shop"}
    }));
    fs::write(dir.join("web-0.yaml"), other.to_yaml().unwrap()).unwrap();
    let err = store.list(Kind::Pod).unwrap_err().to_string();
    assert!(
        err.contains("it holds Pod shop/other, but its path is that of Pod shop/web-0"),
        "{err}"
    );
    let moved = dir.join("../default");
    fs::create_dir_all(&moved).unwrap();
    fs::rename(dir.join("web-0.yaml"), moved.join("other.yaml")).unwrap();
    let err = store.get(Kind::Pod, None, "other").unwrap_err().to_string();
    assert!(
        err.contains("it holds Pod shop/other, but its path is that of Pod default/other"),
        "{err}"
    );
}

#[test]
fn names_that_would_leave_the_directory_are_refused() {
    let (_dir, store) = store();
    for name in ["", "../etc", "a/b", ".hidden"] {
        let mut pod = sample(Kind::Pod);
        pod.metadata_mut().name = Some(name.into());
        let err = store.put(&pod).unwrap_err();
        assert!(matches!(err, StoreError::BadName { .. }), "{name}: {err}");
    }
    let err = store.get(Kind::Pod, Some(".."), "web").unwrap_err();
    assert!(err.to_string().contains(r#"name "..""#), "{err}");
}

#[test]
fn a_garbled_revision_is_an_error_naming_the_file() {
    let (_dir, store) = store();
    fs::write(store.root().join("revision"), "twelve").unwrap();
    let err = store.revision().unwrap_err().to_string();
    assert!(
        err.contains("revision") && err.contains(r#""twelve""#),
        "{err}"
    );
}

/// Strings YAML would read back as something else if written unquoted.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "null",
            "~",
            "yes",
            "off",
            "1.0",
            "0x1F",
            "1e3",
            "- a",
            "a: b",
            "#x",
            "'",
            "\"",
            "",
            " lead",
            "trail ",
            "line\nbreak",
            "@at",
            "`tick",
            "%pct",
            "*star",
            "&amp",
            "!bang",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,16}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_strings_survive_the_yaml_files(
        annotations in prop::collection::btree_map("[a-z]{1,8}", tricky_string(), 0..4),
        text in tricky_string(),
    ) {
        let (_dir, store) = store();
        let mut cm = sample(Kind::ConfigMap);
        cm.metadata_mut().annotations = Some(annotations);
        if let Object::ConfigMap(c) = &mut cm {
            c.data = Some(BTreeMap::from([("text".to_owned(), text)]));
        }
        let stored = store.put(&cm).unwrap();
        prop_assert_eq!(
            store.get(Kind::ConfigMap, Some("shop"), "web-config").unwrap(),
            Some(stored)
        );
    }
}
