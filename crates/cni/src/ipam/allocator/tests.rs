use super::*;
use crate::ipam::config::{from_u128, to_u128};
use proptest::prelude::*;
use serde_json::json;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cfg(ipam: Value) -> IpamConfig {
    IpamConfig::parse(&ipam).unwrap()
}

fn key(n: u8) -> AttachmentKey {
    AttachmentKey::new(format!("c{}", n / 2), format!("eth{}", n % 2))
}

/// The small configs the properties run over: two subnets in one set; dual-stack with the later
/// (v6) set smaller, so it runs out while the earlier one still has room; a range that leaves
/// the gateway outside it.
fn configs() -> Vec<IpamConfig> {
    vec![
        cfg(json!({"ranges": [[
            {"subnet": "10.0.0.0/28"},
            {"subnet": "10.0.1.0/29", "rangeStart": "10.0.1.2", "gateway": "10.0.1.6"}
        ]]})),
        cfg(json!({"ranges": [
            [{"subnet": "10.0.0.0/29"}],
            [{"subnet": "fd00::/125", "rangeStart": "fd00::4"}]
        ]})),
        cfg(json!({"ranges": [[
            {"subnet": "10.0.0.0/28", "rangeStart": "10.0.0.4", "rangeEnd": "10.0.0.9"}
        ]]})),
    ]
}

/// Every address of a set in walk order, gateways included (brute force: the sets are small).
fn walk_order(set: &RangeSet) -> Vec<IpAddr> {
    set.ranges()
        .iter()
        .flat_map(|r| {
            let (lo, hi) = r.bounds();
            (lo..=hi).map(move |n| from_u128(n, r.range_start()))
        })
        .collect()
}

fn all_gateways(cfg: &IpamConfig) -> BTreeSet<IpAddr> {
    cfg.range_sets()
        .iter()
        .flat_map(|s| s.ranges().iter().map(|r| r.gateway()))
        .collect()
}

fn held(state: &IpamState) -> BTreeSet<IpAddr> {
    state
        .attachments
        .values()
        .flat_map(|a| a.ips.iter().map(|x| x.ip))
        .collect()
}

/// Free addresses of each set in walk order, starting after `last_reserved` as round-robin must.
fn brute_free(state: &IpamState, cfg: &IpamConfig) -> Vec<Vec<IpAddr>> {
    let gws = all_gateways(cfg);
    let used = held(state);
    cfg.range_sets()
        .iter()
        .enumerate()
        .map(|(i, set)| {
            let order = walk_order(set);
            let start = state
                .last_reserved
                .get(&i)
                .and_then(|l| order.iter().position(|x| x == l))
                .map_or(0, |p| p + 1);
            order[start..]
                .iter()
                .chain(&order[..start])
                .copied()
                .filter(|x| !gws.contains(x) && !used.contains(x))
                .collect()
        })
        .collect()
}

fn check_invariants(state: &IpamState, cfg: &IpamConfig) -> Result<(), TestCaseError> {
    let gws = all_gateways(cfg);
    let mut seen = BTreeSet::new();
    for (k, a) in &state.attachments {
        prop_assert!(
            a.ips.is_empty() || a.ips.len() == cfg.range_sets().len(),
            "{:?}: {:?}",
            k,
            a.ips
        );
        for (i, x) in a.ips.iter().enumerate() {
            prop_assert_eq!(x.range_set, i);
            prop_assert!(seen.insert(x.ip), "{} handed out twice", x.ip);
            prop_assert!(
                cfg.range_sets()[i].contains(x.ip),
                "{} outside set {}",
                x.ip,
                i
            );
            prop_assert!(!gws.contains(&x.ip), "gateway {} handed out", x.ip);
        }
    }
    let free: Vec<u128> = brute_free(state, cfg)
        .iter()
        .map(|f| f.len() as u128)
        .collect();
    prop_assert_eq!(state.free_counts(cfg), free);
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Alloc { key: u8, request: Option<u8> },
    Release { key: u8 },
    Gc { valid: Vec<u8> },
    SetData { key: u8 },
    Record { key: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..14, prop::option::weighted(0.3, 0u8..18))
            .prop_map(|(key, request)| Op::Alloc { key, request }),
        3 => (0u8..14).prop_map(|key| Op::Release { key }),
        1 => prop::collection::vec(0u8..14, 0..10).prop_map(|valid| Op::Gc { valid }),
        1 => (0u8..14).prop_map(|key| Op::SetData { key }),
        1 => (0u8..14).prop_map(|key| Op::Record { key }),
    ]
}

/// The requested address: an offset from the first subnet of the first set, so requests land
/// on the network address, gateways, held addresses, free ones, and outside the ranges.
fn requested_ip(cfg: &IpamConfig, offset: u8) -> IpAddr {
    let base = cfg.range_sets()[0].ranges()[0].subnet().network();
    from_u128(to_u128(base) + u128::from(offset), base)
}

fn apply(state: &mut IpamState, cfg: &IpamConfig, op: &Op) -> Result<(), TestCaseError> {
    let before = state.clone();
    match op {
        Op::Alloc { key: k, request } => {
            let k = key(*k);
            let requested: Vec<IpAddr> =
                request.map(|o| requested_ip(cfg, o)).into_iter().collect();
            let got = state.allocate(cfg, &k, &requested);
            let existing = before.attachments.get(&k);
            if let Some(existing) = existing.filter(|a| !a.ips.is_empty()) {
                prop_assert_eq!(got, Ok(existing.ips.clone()), "allocate is idempotent");
                prop_assert_eq!(&*state, &before);
                return Ok(());
            }
            let gws = all_gateways(cfg);
            let used = held(&before);
            let free = brute_free(&before, cfg);
            let req_set = requested
                .first()
                .and_then(|r| cfg.range_sets().iter().position(|s| s.contains(*r)));
            let req_ok = requested
                .first()
                .is_none_or(|r| req_set.is_some() && !gws.contains(r) && !used.contains(r));
            let exhausted = (0..free.len()).any(|i| Some(i) != req_set && free[i].is_empty());
            match got {
                Err(e) => {
                    let want = if !req_ok {
                        Code::InvalidConfig
                    } else {
                        Code::TryAgainLater
                    };
                    prop_assert!(!req_ok || exhausted, "unexpected error {:?}", e);
                    prop_assert_eq!(e.code, want, "{}", e.msg);
                    prop_assert_eq!(&*state, &before, "a failed allocate changes nothing");
                }
                Ok(ips) => {
                    prop_assert!(
                        req_ok && !exhausted,
                        "allocate should have failed: {:?}",
                        ips
                    );
                    for x in &ips {
                        if Some(x.range_set) == req_set {
                            prop_assert_eq!(Some(&x.ip), requested.first());
                        } else {
                            prop_assert_eq!(
                                Some(x.ip),
                                free[x.range_set].first().copied(),
                                "round-robin picks the first free address after the last one"
                            );
                        }
                    }
                    prop_assert_eq!(&state.attachments[&k].ips, &ips);
                    prop_assert_eq!(
                        &state.attachments[&k].data,
                        &existing.map(|a| a.data.clone()).unwrap_or_default(),
                        "allocate keeps recorded data"
                    );
                }
            }
        }
        Op::Release { key: k } => {
            let k = key(*k);
            let got = state.release(&k);
            prop_assert_eq!(got, before.attachments.get(&k).cloned());
            let mut want = before.attachments.clone();
            want.remove(&k);
            prop_assert_eq!(&state.attachments, &want);
        }
        Op::Gc { valid } => {
            let valid: Vec<AttachmentKey> = valid.iter().map(|k| key(*k)).collect();
            let released: BTreeMap<_, _> = state.gc(&valid).into_iter().collect();
            let (want_kept, want_released): (BTreeMap<_, _>, BTreeMap<_, _>) = before
                .attachments
                .clone()
                .into_iter()
                .partition(|(k, _)| valid.contains(k));
            prop_assert_eq!(released, want_released, "GC frees exactly the invalid ones");
            prop_assert_eq!(
                &state.attachments,
                &want_kept,
                "GC keeps the others untouched"
            );
        }
        Op::SetData { key: k } => {
            let k = key(*k);
            let data = json!({"veth": format!("veth{}", k.container_id)});
            let stored = state.set_data(&k, data.clone());
            prop_assert_eq!(stored, before.attachments.contains_key(&k));
            if stored {
                prop_assert_eq!(&state.attachments[&k].data, &data);
                prop_assert_eq!(&state.attachments[&k].ips, &before.attachments[&k].ips);
            } else {
                prop_assert_eq!(&*state, &before);
            }
        }
        Op::Record { key: k } => {
            let k = key(*k);
            let data = json!({"ports": [k.container_id.clone()]});
            state.record(&k, data.clone());
            prop_assert_eq!(&state.attachments[&k].data, &data);
            prop_assert_eq!(
                &state.attachments[&k].ips,
                &before
                    .attachments
                    .get(&k)
                    .map(|a| a.ips.clone())
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operations_keep_addresses_unique_inside_ranges_and_off_gateways(
        which in 0usize..3,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let cfg = &configs()[which];
        let mut state = IpamState::default();
        for op in &ops {
            apply(&mut state, cfg, op)?;
            check_invariants(&state, cfg)?;
        }
    }

    #[test]
    fn a_just_released_address_is_not_reused_while_others_are_free(
        which in 0usize..3,
        before in 0u8..20,
    ) {
        let cfg = &configs()[which];
        let mut state = IpamState::default();
        for n in 0..before {
            let _ = state.allocate(cfg, &key(100 + n), &[]);
        }
        let first = key(0);
        if let Ok(ips) = state.allocate(cfg, &first, &[]) {
            state.release(&first);
            let free = state.free_counts(cfg);
            let again = state.allocate(cfg, &key(1), &[]);
            prop_assert!(again.is_ok() || free.contains(&0));
            if let Ok(again) = again {
                for (old, new) in ips.iter().zip(&again) {
                    if free[old.range_set] > 1 {
                        prop_assert_ne!(old.ip, new.ip);
                    }
                }
            }
        }
    }
}

#[test]
fn allocates_one_address_per_set_skipping_the_gateway() {
    let cfg = cfg(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/64"}]]}));
    let mut state = IpamState::default();
    let ips = state.allocate(&cfg, &key(0), &[]).unwrap();
    assert_eq!(
        ips,
        vec![
            Allocated {
                ip: ip("10.0.0.2"),
                range_set: 0
            },
            Allocated {
                ip: ip("fd00::2"),
                range_set: 1
            },
        ]
    );
    assert_eq!(state.last_reserved[&0], ip("10.0.0.2"));
}

#[test]
fn allocate_for_a_held_key_returns_the_same_addresses_ignoring_requests() {
    let cfg = cfg(json!({"subnet": "10.0.0.0/24"}));
    let mut state = IpamState::default();
    let first = state.allocate(&cfg, &key(0), &[]).unwrap();
    let again = state.allocate(&cfg, &key(0), &[ip("10.0.0.77")]).unwrap();
    assert_eq!(first, again);
    assert_eq!(state.attachments.len(), 1);
}

#[test]
fn requested_address_is_honoured_and_does_not_move_the_cursor() {
    let cfg = cfg(json!({"subnet": "10.0.0.0/24"}));
    let mut state = IpamState::default();
    let got = state.allocate(&cfg, &key(0), &[ip("10.0.0.3")]).unwrap();
    assert_eq!(got[0].ip, ip("10.0.0.3"));
    assert!(state.last_reserved.is_empty());
    assert_eq!(
        state.allocate(&cfg, &key(1), &[]).unwrap()[0].ip,
        ip("10.0.0.2")
    );
    assert_eq!(
        state.allocate(&cfg, &key(2), &[]).unwrap()[0].ip,
        ip("10.0.0.4"),
        "the walk skips the requested address"
    );
}

#[test]
fn requested_address_held_by_another_container_names_it() {
    let cfg = cfg(json!({"subnet": "10.0.0.0/24"}));
    let mut state = IpamState::default();
    state
        .allocate(&cfg, &AttachmentKey::new("abc", "eth0"), &[ip("10.0.0.9")])
        .unwrap();
    let before = state.clone();
    let e = state
        .allocate(&cfg, &key(1), &[ip("10.0.0.9")])
        .unwrap_err();
    assert_eq!(e.code, Code::InvalidConfig);
    assert_eq!(
        e.msg,
        "requested IP 10.0.0.9 is already allocated to container abc interface eth0"
    );
    assert_eq!(state, before);
}

#[test]
fn requested_address_outside_ranges_or_a_gateway_is_invalid() {
    let cfg = cfg(json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10"}));
    let mut state = IpamState::default();
    for (bad, why) in [
        ("10.0.1.5", "outside every configured range"),
        ("10.0.0.5", "outside every configured range"),
        ("10.0.0.0", "outside every configured range"),
        ("10.0.0.255", "outside every configured range"),
        ("fd00::5", "outside every configured range"),
    ] {
        let e = state.allocate(&cfg, &key(0), &[ip(bad)]).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig, "{bad}");
        assert!(e.msg.contains(bad) && e.msg.contains(why), "{}", e.msg);
    }
    let cfg = self::cfg(json!({"subnet": "10.0.0.0/24", "gateway": "10.0.0.50"}));
    let e = state
        .allocate(&cfg, &key(0), &[ip("10.0.0.50")])
        .unwrap_err();
    assert_eq!(e.code, Code::InvalidConfig);
    assert!(e.msg.contains("10.0.0.50 is a gateway"), "{}", e.msg);
    assert!(state.attachments.is_empty());
}

#[test]
fn two_requested_addresses_in_one_set_are_invalid() {
    let cfg = cfg(json!({"subnet": "10.0.0.0/24"}));
    let mut state = IpamState::default();
    let e = state
        .allocate(&cfg, &key(0), &[ip("10.0.0.5"), ip("10.0.0.6")])
        .unwrap_err();
    assert_eq!(e.code, Code::InvalidConfig);
    assert!(e.msg.contains("10.0.0.5 and 10.0.0.6"), "{}", e.msg);
}

#[test]
fn exhaustion_is_try_again_later_naming_the_set_and_changes_nothing() {
    let cfg = cfg(json!({"ranges": [[{"subnet": "10.0.0.0/30"}], [{"subnet": "fd00::/126"}]]}));
    let mut state = IpamState::default();
    state.allocate(&cfg, &key(0), &[]).unwrap();
    state.allocate(&cfg, &key(1), &[ip("fd00::3")]).unwrap_err(); // v4 set is full
    let e = state.allocate(&cfg, &key(1), &[]).unwrap_err();
    assert_eq!(u32::from(e.code), 11);
    assert_eq!(
        e.msg,
        "no free address in range set 0 (10.0.0.0/30: 10.0.0.1-10.0.0.2)"
    );

    // A later set running out must not leave the earlier set's address taken.
    let cfg =
        self::cfg(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/126"}]]}));
    let mut state = IpamState::default();
    state.allocate(&cfg, &key(0), &[]).unwrap();
    state.allocate(&cfg, &key(1), &[]).unwrap();
    let before = state.clone();
    let e = state.allocate(&cfg, &key(2), &[]).unwrap_err();
    assert_eq!(e.code, Code::TryAgainLater);
    assert!(e.msg.contains("range set 1 (fd00::/126"), "{}", e.msg);
    assert_eq!(state, before);
}

#[test]
fn round_robin_wraps_to_the_start_after_the_last_range() {
    let cfg = cfg(json!({"ranges": [[
        {"subnet": "10.0.0.0/29"},
        {"subnet": "10.0.1.0/30"}
    ]]}));
    let mut state = IpamState::default();
    let got: Vec<IpAddr> = (0..6)
        .map(|n| state.allocate(&cfg, &key(n), &[]).unwrap()[0].ip)
        .collect();
    let want: Vec<IpAddr> = [
        "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.1.2",
    ]
    .map(ip)
    .to_vec();
    assert_eq!(got, want);
    state.release(&key(1));
    state.release(&key(4));
    assert_eq!(
        state.allocate(&cfg, &key(10), &[]).unwrap()[0].ip,
        ip("10.0.0.3"),
        "wraps past the end to the first free address"
    );
    assert_eq!(
        state.allocate(&cfg, &key(11), &[]).unwrap()[0].ip,
        ip("10.0.0.6")
    );
}

#[test]
fn changed_ranges_keep_old_allocations_and_never_reuse_held_addresses() {
    let wide = cfg(json!({"subnet": "10.0.0.0/24"}));
    let mut state = IpamState::default();
    let a = state.allocate(&wide, &key(0), &[]).unwrap(); // 10.0.0.2
    let b = state.allocate(&wide, &key(1), &[]).unwrap(); // 10.0.0.3

    let narrow =
        cfg(json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.3", "rangeEnd": "10.0.0.4"}));
    assert_eq!(state.allocate(&narrow, &key(0), &[]).unwrap(), a, "kept");
    assert_eq!(
        state.allocate(&narrow, &key(2), &[]).unwrap()[0].ip,
        ip("10.0.0.4"),
        "10.0.0.3 is still held"
    );
    assert_eq!(
        state.allocate(&narrow, &key(3), &[]).unwrap_err().code,
        Code::TryAgainLater
    );
    assert_eq!(state.free_counts(&narrow), vec![0]);
    assert_eq!(state.release(&key(1)).map(|x| x.ips), Some(b));
    assert_eq!(state.free_counts(&narrow), vec![1]);
}

#[test]
fn release_of_an_unknown_key_is_none() {
    let mut state = IpamState::default();
    assert_eq!(state.release(&key(0)), None);
}

#[test]
fn gc_with_an_empty_valid_list_releases_everything() {
    let cfg = cfg(json!({"subnet": "10.0.0.0/24"}));
    let mut state = IpamState::default();
    for n in 0..3 {
        state.allocate(&cfg, &key(n), &[]).unwrap();
    }
    let released = state.gc(&[]);
    assert_eq!(
        released.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        vec![key(0), key(1), key(2)]
    );
    assert!(state.attachments.is_empty());
}

#[test]
fn free_counts_are_computed_not_iterated_for_large_ranges() {
    let cfg = cfg(json!({"ranges": [[{"subnet": "10.0.0.0/16"}], [{"subnet": "fd00::/64"}]]}));
    let mut state = IpamState::default();
    state.allocate(&cfg, &key(0), &[]).unwrap();
    // /16: 65534 hosts minus the gateway; /64: 2^64 − 1 addresses after the network address.
    assert_eq!(
        state.free_counts(&cfg),
        vec![65534 - 1 - 1, (1u128 << 64) - 1 - 1 - 1]
    );
}

#[test]
fn state_json_lists_attachments_with_their_data() {
    let cfg = cfg(json!({"subnet": "10.0.0.0/24"}));
    let mut state = IpamState::default();
    let k = AttachmentKey::new("abc", "eth0");
    state.allocate(&cfg, &k, &[]).unwrap();
    assert!(state.set_data(&k, json!({"hostVeth": "veth1234"})));
    let j = serde_json::to_value(&state).unwrap();
    assert_eq!(
        j,
        json!({
            "attachments": [{
                "containerID": "abc",
                "ifname": "eth0",
                "ips": [{"ip": "10.0.0.2", "rangeSet": 0}],
                "data": {"hostVeth": "veth1234"}
            }],
            "lastReserved": {"0": "10.0.0.2"}
        })
    );
    let back: IpamState = serde_json::from_value(j).unwrap();
    assert_eq!(back, state);
}

#[test]
fn record_creates_a_data_only_attachment_that_allocate_then_fills() {
    let cfg = cfg(json!({"subnet": "10.0.0.0/24"}));
    let mut state = IpamState::default();
    let k = key(0);
    assert!(!state.set_data(&k, json!(1)), "set_data does not create");
    assert!(state.attachments.is_empty());
    state.record(&k, json!({"ports": [80]}));
    assert_eq!(state.attachment(&k).map(|a| a.ips.len()), Some(0));
    let ips = state.allocate(&cfg, &k, &[]).unwrap();
    assert_eq!(ips[0].ip, ip("10.0.0.2"));
    assert_eq!(state.attachments[&k].data, json!({"ports": [80]}));
    assert_eq!(state.allocate(&cfg, &k, &[]).unwrap(), ips);
}
