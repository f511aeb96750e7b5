use super::*;
use crate::ipam::{AttachmentKey, IpamConfig};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::IpAddr;

fn cfg() -> IpamConfig {
    IpamConfig::parse(&json!({"subnet": "10.0.0.0/24"})).unwrap()
}

fn sample_state() -> IpamState {
    let mut state = IpamState::default();
    let k = AttachmentKey::new("abc", "eth0");
    state.allocate(&cfg(), &k, &[]).unwrap();
    assert!(state.set_data(&k, json!({"hostVeth": "veth0"})));
    state
}

#[test]
fn save_then_load_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "podnet").unwrap();
    assert_eq!(store.dir(), tmp.path().join("podnet"));
    let locked = store.lock().unwrap();
    assert_eq!(locked.load().unwrap(), IpamState::default(), "missing file");
    let state = sample_state();
    locked.save(&state).unwrap();
    assert_eq!(locked.load().unwrap(), state);
    drop(locked);
    let reopened = Store::open(tmp.path(), "podnet").unwrap();
    assert_eq!(reopened.lock().unwrap().load().unwrap(), state);
}

#[test]
fn open_creates_parents_and_rejects_names_that_escape_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("a/b"), "net").unwrap();
    assert!(store.dir().is_dir());
    for bad in ["", ".", "..", "a/b", "../x"] {
        let e = Store::open(tmp.path(), bad).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig, "{bad:?}");
        assert!(e.msg.contains(&format!("{bad:?}")), "{}", e.msg);
    }
}

#[test]
fn open_reports_io_errors_with_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, b"").unwrap();
    let e = Store::open(&file, "net").unwrap_err();
    assert_eq!(e.code, Code::Io);
    assert!(e.msg.contains(&file.display().to_string()), "{}", e.msg);
}

#[test]
fn a_partially_written_temp_file_is_ignored_and_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    let committed = sample_state();
    store.lock().unwrap().save(&committed).unwrap();

    // A crash in the middle of writing the next state.
    fs::write(
        store.dir().join(TEMP_FILE),
        b"{\"version\": 1, \"state\": {\"attach",
    )
    .unwrap();
    let locked = store.lock().unwrap();
    assert_eq!(locked.load().unwrap(), committed);

    let mut next = committed.clone();
    next.release(&AttachmentKey::new("abc", "eth0"));
    locked.save(&next).unwrap();
    assert_eq!(locked.load().unwrap(), next);
    assert!(
        !store.dir().join(TEMP_FILE).exists(),
        "temp file left behind"
    );
}

#[test]
fn a_complete_temp_file_never_renamed_is_not_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    // A crash after writing and syncing the temp file, before the rename: the new state was
    // never committed, so the old (here: none) stands.
    let uncommitted = sample_state();
    let bytes = serde_json::to_vec(&StateFileRef {
        version: VERSION,
        state: &uncommitted,
    })
    .unwrap();
    fs::write(store.dir().join(TEMP_FILE), bytes).unwrap();
    let out = store.update(|s| Ok(s.clone())).unwrap();
    assert_eq!(out, IpamState::default());

    let got = store
        .update(|s| s.allocate(&cfg(), &AttachmentKey::new("x", "eth0"), &[]))
        .unwrap();
    assert_eq!(got[0].ip, "10.0.0.2".parse::<IpAddr>().unwrap());
    assert!(!store.dir().join(TEMP_FILE).exists());
}

#[test]
fn a_corrupt_state_file_is_an_error_naming_it_not_an_empty_state() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    let path = store.dir().join("state.1.json");
    for corrupt in [&b"{\"version\": 1, \"sta"[..], b"", b"[]"] {
        fs::write(&path, corrupt).unwrap();
        let e = store.lock().unwrap().load().unwrap_err();
        assert_eq!(e.code, Code::Decode);
        assert!(e.msg.contains(&path.display().to_string()), "{}", e.msg);
        // update must not paper over it by saving an empty state either.
        assert!(store.update(|_| Ok(())).is_err());
        assert_eq!(fs::read(&path).unwrap(), corrupt);
    }
}

#[test]
fn a_state_file_of_another_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    fs::write(
        store.dir().join("state.1.json"),
        br#"{"version": 2, "state": {"attachments": []}}"#,
    )
    .unwrap();
    let e = store.lock().unwrap().load().unwrap_err();
    assert_eq!(e.code, Code::Decode);
    assert!(e.msg.contains("version 2"), "{}", e.msg);
}

#[test]
fn update_writes_only_when_the_state_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    store.update(|s| Ok(s.free_counts(&cfg()))).unwrap();
    assert_eq!(
        store.state_file().unwrap(),
        None,
        "a read-only update wrote the state"
    );

    let k = AttachmentKey::new("abc", "eth0");
    store.update(|s| s.allocate(&cfg(), &k, &[])).unwrap();
    let path = store.state_file().unwrap().unwrap();
    // Make a write detectable: a read-only update must leave even the formatting alone.
    fs::write(&path, fs::read_to_string(&path).unwrap().replace('\n', " ")).unwrap();
    let before = fs::read(&path).unwrap();
    store.update(|s| s.allocate(&cfg(), &k, &[])).unwrap();
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn update_saves_nothing_when_the_closure_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    let e = store
        .update(|s| {
            s.allocate(&cfg(), &AttachmentKey::new("abc", "eth0"), &[])?;
            Err::<(), _>(CniError::new(Code::Kernel, "veth creation failed"))
        })
        .unwrap_err();
    assert_eq!(e.code, Code::Kernel);
    assert_eq!(store.lock().unwrap().load().unwrap(), IpamState::default());
}

#[test]
fn concurrent_updates_from_eight_threads_hand_out_distinct_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().to_path_buf();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let data_dir = data_dir.clone();
            std::thread::spawn(move || {
                // Each thread opens its own Store, as separate plugin processes would.
                let store = Store::open(&data_dir, "net").unwrap();
                (0..25)
                    .map(|n| {
                        let k = AttachmentKey::new(format!("t{t}-{n}"), "eth0");
                        store.update(|s| s.allocate(&cfg(), &k, &[])).unwrap()[0].ip
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ips: Vec<IpAddr> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(ips.len(), 200);
    assert_eq!(
        ips.iter().collect::<BTreeSet<_>>().len(),
        200,
        "duplicate IPs"
    );

    let store = Store::open(&data_dir, "net").unwrap();
    let state = store.lock().unwrap().load().unwrap();
    assert_eq!(state.attachments.len(), 200, "a lost update");

    let keys: Vec<AttachmentKey> = state.attachments.keys().cloned().collect();
    store
        .update(|s| {
            for k in &keys {
                s.release(k);
            }
            Ok(())
        })
        .unwrap();
    assert!(store.lock().unwrap().load().unwrap().attachments.is_empty());
}

#[test]
fn is_writable_succeeds_on_a_fresh_store_and_fails_once_the_dir_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    store.is_writable().unwrap();
    assert!(!store.dir().join(PROBE_FILE).exists());
    fs::remove_dir_all(store.dir()).unwrap();
    let e = store.is_writable().unwrap_err();
    assert_eq!(e.code, Code::Io);
    assert!(
        e.msg.contains(&store.dir().display().to_string()),
        "{}",
        e.msg
    );
}

#[test]
fn an_unreadable_state_file_is_an_io_error_not_an_empty_state() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    let path = store.dir().join("state.1.json");
    // A directory in its place fails the read (EISDIR) whatever the user's privileges.
    fs::create_dir(&path).unwrap();
    let e = store.lock().unwrap().load().unwrap_err();
    assert_eq!(e.code, Code::Io);
    assert!(e.msg.contains(&path.display().to_string()), "{}", e.msg);
}

/// A store whose "current boot" is the content of a file the test controls.
fn store_in_boot(tmp: &tempfile::TempDir, boot: &str) -> Store {
    let boot_path = tmp.path().join("current-boot");
    fs::write(&boot_path, format!("{boot}\n")).unwrap();
    Store::open(&tmp.path().join("data"), "net")
        .unwrap()
        .with_boot_id_path(boot_path)
}

#[test]
fn the_first_save_of_a_boot_records_it_and_later_saves_keep_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in_boot(&tmp, "boot-a");
    let boot_file = store.dir().join(BOOT_FILE);
    assert!(!boot_file.exists());
    store.lock().unwrap().save(&sample_state()).unwrap();
    assert_eq!(fs::read_to_string(&boot_file).unwrap(), "boot-a");
    store.lock().unwrap().save(&IpamState::default()).unwrap();
    assert_eq!(fs::read_to_string(&boot_file).unwrap(), "boot-a");
    let store = store_in_boot(&tmp, "boot-b");
    store.lock().unwrap().save(&sample_state()).unwrap();
    assert_eq!(fs::read_to_string(&boot_file).unwrap(), "boot-b");
    assert_eq!(store.lock().unwrap().load().unwrap(), sample_state());
}

#[test]
fn a_state_torn_in_an_earlier_boot_starts_afresh_but_not_one_torn_in_this_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in_boot(&tmp, "boot-a");
    store.lock().unwrap().save(&sample_state()).unwrap();
    let path = store.state_file().unwrap().unwrap();
    // A power loss tears an unsynced save: in the same boot that is corruption, an error.
    fs::write(&path, b"{\"version\": 1, \"sta").unwrap();
    let e = store.lock().unwrap().load().unwrap_err();
    assert_eq!(e.code, Code::Decode, "{}", e.msg);
    // After the reboot the torn file is recognised as the old boot's and replaced.
    let store = store_in_boot(&tmp, "boot-b");
    assert_eq!(store.lock().unwrap().load().unwrap(), IpamState::default());
    let got = store
        .update(|s| s.allocate(&cfg(), &AttachmentKey::new("new", "eth0"), &[]))
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(store.lock().unwrap().load().unwrap().attachments.len(), 1);
}

#[test]
fn without_a_readable_boot_id_every_save_is_durable_and_corruption_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net")
        .unwrap()
        .with_boot_id_path(tmp.path().join("no-such-file"));
    store.lock().unwrap().save(&sample_state()).unwrap();
    assert!(!store.dir().join(BOOT_FILE).exists());
    fs::write(store.state_file().unwrap().unwrap(), b"").unwrap();
    assert!(store.lock().unwrap().load().is_err());
}

#[test]
fn each_save_is_a_new_generation_and_older_ones_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    store.lock().unwrap().save(&sample_state()).unwrap();
    store.lock().unwrap().save(&IpamState::default()).unwrap();
    assert_eq!(
        store.state_file().unwrap(),
        Some(store.dir().join("state.2.json"))
    );
    assert!(!store.dir().join("state.1.json").exists());
    // A crash between the rename and the removal leaves two: the newest counts, the next save
    // removes the rest.
    fs::write(
        store.dir().join("state.1.json"),
        serde_json::to_vec(&StateFileRef {
            version: VERSION,
            state: &sample_state(),
        })
        .unwrap(),
    )
    .unwrap();
    assert_eq!(store.lock().unwrap().load().unwrap(), IpamState::default());
    store.lock().unwrap().save(&sample_state()).unwrap();
    let names: BTreeSet<String> = fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("state."))
        .collect();
    assert_eq!(names, BTreeSet::from(["state.3.json".to_owned()]));
}
