use super::*;
use serde_json::json;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Parses `ipam` expecting an error; returns it for the code and message checks.
fn err(ipam: Value) -> CniError {
    IpamConfig::parse(&ipam).unwrap_err()
}

/// The invalid cases all promise the same thing: code 7, the JSON path and the value named.
fn assert_invalid(ipam: Value, path: &str, value: &str) {
    let e = err(ipam);
    assert_eq!(e.code, Code::InvalidConfig, "{}", e.msg);
    assert!(e.msg.starts_with(&format!("{path}:")), "{}", e.msg);
    assert!(e.msg.contains(value), "{} should name {value}", e.msg);
}

#[test]
fn every_field_is_parsed() {
    let cfg = IpamConfig::parse(&json!({
        "type": "host-local",
        "ranges": [[{
            "subnet": "10.1.0.0/16",
            "rangeStart": "10.1.2.10",
            "rangeEnd": "10.1.2.200",
            "gateway": "10.1.0.254"
        }]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.1"}],
        "dataDir": "/run/podnet/ipam",
        "resolvConf": "/etc/resolv.conf"
    }))
    .unwrap();
    let sets = cfg.range_sets();
    assert_eq!(sets.len(), 1);
    let r = sets[0].ranges()[0];
    assert_eq!(r.subnet(), net("10.1.0.0/16"));
    assert_eq!(r.range_start(), ip("10.1.2.10"));
    assert_eq!(r.range_end(), ip("10.1.2.200"));
    assert_eq!(r.gateway(), ip("10.1.0.254"));
    assert_eq!(r.prefix_len(), 16);
    assert_eq!(sets[0].gateway(), Some(ip("10.1.0.254")));
    assert_eq!(
        cfg.routes,
        vec![
            Route {
                dst: net("0.0.0.0/0"),
                gw: None
            },
            Route {
                dst: net("192.168.0.0/16"),
                gw: Some(ip("10.1.0.1"))
            },
        ]
    );
    assert_eq!(cfg.data_dir, PathBuf::from("/run/podnet/ipam"));
    assert_eq!(cfg.resolv_conf.as_deref(), Some("/etc/resolv.conf"));
}

#[test]
fn defaults_gateway_start_and_end_for_ipv4() {
    let cfg = IpamConfig::parse(&json!({"ranges": [[{"subnet": "10.0.0.0/24"}]]})).unwrap();
    let r = cfg.range_sets()[0].ranges()[0];
    assert_eq!(r.gateway(), ip("10.0.0.1"));
    assert_eq!(r.range_start(), ip("10.0.0.1"));
    assert_eq!(
        r.range_end(),
        ip("10.0.0.254"),
        "IPv4 ends before broadcast"
    );
    assert_eq!(cfg.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert!(cfg.routes.is_empty());
    assert_eq!(cfg.resolv_conf, None);
}

#[test]
fn defaults_end_at_the_last_address_for_ipv6() {
    let cfg = IpamConfig::parse(&json!({"ranges": [[{"subnet": "fd00::/120"}]]})).unwrap();
    let r = cfg.range_sets()[0].ranges()[0];
    assert_eq!(r.gateway(), ip("fd00::1"));
    assert_eq!(r.range_start(), ip("fd00::1"));
    assert_eq!(r.range_end(), ip("fd00::ff"));
}

#[test]
fn accepts_podnet_cni_and_absent_type() {
    for t in [json!("podnet-cni"), json!(null)] {
        IpamConfig::parse(&json!({"type": t, "subnet": "10.0.0.0/24"})).unwrap();
    }
}

#[test]
fn legacy_top_level_range_becomes_the_first_range_set() {
    let cfg = IpamConfig::parse(&json!({
        "subnet": "10.0.0.0/24",
        "rangeStart": "10.0.0.100",
        "gateway": "10.0.0.254",
        "ranges": [[{"subnet": "fd00::/64"}]]
    }))
    .unwrap();
    let sets = cfg.range_sets();
    assert_eq!(sets.len(), 2);
    let r = sets[0].ranges()[0];
    assert_eq!(r.subnet(), net("10.0.0.0/24"));
    assert_eq!(r.range_start(), ip("10.0.0.100"));
    assert_eq!(r.range_end(), ip("10.0.0.254"));
    assert_eq!(r.gateway(), ip("10.0.0.254"));
    assert_eq!(sets[1].ranges()[0].subnet(), net("fd00::/64"));
}

#[test]
fn legacy_errors_name_top_level_paths() {
    assert_invalid(
        json!({"subnet": "10.0.0.0/24", "rangeStart": "10.1.0.5"}),
        "ipam.rangeStart",
        "\"10.1.0.5\"",
    );
}

#[test]
fn dual_stack_has_one_v4_and_one_v6_set() {
    let cfg = IpamConfig::parse(&json!({"ranges": [
        [{"subnet": "10.244.1.0/24"}],
        [{"subnet": "fd00:10:244:1::/64", "gateway": "fd00:10:244:1::1"}]
    ]}))
    .unwrap();
    let sets = cfg.range_sets();
    assert_eq!(sets.len(), 2);
    assert!(sets[0].ranges()[0].subnet().addr().is_ipv4());
    assert!(sets[1].ranges()[0].subnet().addr().is_ipv6());
    assert_eq!(sets[1].ranges()[0].prefix_len(), 64);
    assert_eq!(
        sets[0].address_of(ip("10.244.1.7")),
        Some(net("10.244.1.7/24"))
    );
    assert_eq!(
        sets[1].address_of(ip("fd00:10:244:1::7")),
        Some(net("fd00:10:244:1::7/64"))
    );
}

#[test]
fn a_set_may_hold_several_disjoint_subnets() {
    let cfg = IpamConfig::parse(&json!({"ranges": [[
        {"subnet": "10.0.0.0/24"},
        {"subnet": "10.0.1.0/24", "gateway": "10.0.1.254"}
    ]]}))
    .unwrap();
    let set = &cfg.range_sets()[0];
    assert_eq!(set.gateway(), Some(ip("10.0.0.1")), "first range's gateway");
    assert_eq!(
        set.range_of(ip("10.0.1.9")).map(|r| r.gateway()),
        Some(ip("10.0.1.254"))
    );
    assert!(!set.contains(ip("10.0.2.1")));
}

#[test]
fn rejects_a_subnet_that_is_not_a_cidr() {
    assert_invalid(
        json!({"ranges": [[{"subnet": "10.0.0.0/33"}]]}),
        "ipam.ranges[0][0].subnet",
        "\"10.0.0.0/33\"",
    );
    assert_invalid(
        json!({"ranges": [[{"subnet": "10.0.0.0"}]]}),
        "ipam.ranges[0][0].subnet",
        "\"10.0.0.0\"",
    );
    assert_invalid(
        json!({"ranges": [[{"subnet": 24}]]}),
        "ipam.ranges[0][0].subnet",
        "24",
    );
}

#[test]
fn rejects_host_bits_in_subnet_naming_the_network() {
    let e = err(json!({"ranges": [[{"subnet": "10.0.0.5/24"}]]}));
    assert_eq!(e.code, Code::InvalidConfig);
    assert!(e.msg.contains("\"10.0.0.5/24\""), "{}", e.msg);
    assert!(e.msg.contains("\"10.0.0.0/24\""), "{}", e.msg);
}

#[test]
fn rejects_subnets_too_small_to_allocate_from() {
    assert_invalid(
        json!({"ranges": [[{"subnet": "10.0.0.0/31"}]]}),
        "ipam.ranges[0][0].subnet",
        "\"10.0.0.0/31\" is too small",
    );
    assert_invalid(
        json!({"ranges": [[{"subnet": "fd00::/127"}]]}),
        "ipam.ranges[0][0].subnet",
        "\"fd00::/127\" is too small",
    );
    IpamConfig::parse(&json!({"ranges": [[{"subnet": "10.0.0.0/30"}]]})).unwrap();
    IpamConfig::parse(&json!({"ranges": [[{"subnet": "fd00::/126"}]]})).unwrap();
}

#[test]
fn rejects_range_start_outside_subnet() {
    let e = err(json!({"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.1.0.5"}]]}));
    assert_eq!(e.code, Code::InvalidConfig);
    assert_eq!(
        e.msg,
        "ipam.ranges[0][0].rangeStart: \"10.1.0.5\" is outside subnet \"10.0.0.0/24\""
    );
}

#[test]
fn rejects_network_and_broadcast_as_range_bounds() {
    assert_invalid(
        json!({"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.0"}]]}),
        "ipam.ranges[0][0].rangeStart",
        "\"10.0.0.0\" is the network address",
    );
    assert_invalid(
        json!({"ranges": [[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.255"}]]}),
        "ipam.ranges[0][0].rangeEnd",
        "\"10.0.0.255\" is the broadcast address",
    );
}

#[test]
fn rejects_range_end_before_range_start() {
    assert_invalid(
        json!({"ranges": [[{
            "subnet": "10.0.0.0/24", "rangeStart": "10.0.0.50", "rangeEnd": "10.0.0.20"
        }]]}),
        "ipam.ranges[0][0].rangeEnd",
        "\"10.0.0.20\" is before rangeStart \"10.0.0.50\"",
    );
}

#[test]
fn rejects_gateway_outside_subnet() {
    assert_invalid(
        json!({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}]]}),
        "ipam.ranges[0][0].gateway",
        "\"10.0.1.1\" is outside subnet \"10.0.0.0/24\"",
    );
}

#[test]
fn rejects_ranges_overlapping_in_one_set() {
    assert_invalid(
        json!({"ranges": [[
            {"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.100"},
            {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.100"}
        ]]}),
        "ipam.ranges[0][1]",
        "overlaps ipam.ranges[0][0]",
    );
}

#[test]
fn accepts_disjoint_pieces_of_one_subnet_in_one_set() {
    IpamConfig::parse(&json!({"ranges": [[
        {"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.99"},
        {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.100"}
    ]]}))
    .unwrap();
}

#[test]
fn rejects_overlapping_range_sets() {
    assert_invalid(
        json!({"ranges": [
            [{"subnet": "10.0.0.0/16"}],
            [{"subnet": "10.0.5.0/24"}]
        ]}),
        "ipam.ranges[1][0]",
        "\"10.0.5.0/24: 10.0.5.1-10.0.5.254\" overlaps ipam.ranges[0][0]",
    );
    assert_invalid(
        json!({"subnet": "10.0.0.0/24", "ranges": [[{"subnet": "10.0.0.0/24"}]]}),
        "ipam.ranges[0][0]",
        "overlaps ipam \"10.0.0.0/24",
    );
}

#[test]
fn rejects_mixed_families_in_one_set() {
    assert_invalid(
        json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}),
        "ipam.ranges[0][1].subnet",
        "\"fd00::/64\" is IPv6",
    );
}

#[test]
fn rejects_unknown_ipam_type_as_unsupported_field() {
    let e = err(json!({"type": "dhcp", "subnet": "10.0.0.0/24"}));
    assert_eq!(e.code, Code::UnsupportedField);
    assert!(e.msg.starts_with("ipam.type: \"dhcp\""), "{}", e.msg);
    assert!(e.msg.contains("built-in IPAM"), "{}", e.msg);
}

#[test]
fn rejects_config_without_ranges() {
    assert_invalid(json!({}), "ipam", "\"ranges\"");
    assert_invalid(json!({"ranges": [[]]}), "ipam.ranges[0]", "[]");
    assert_invalid(json!("10.0.0.0/24"), "ipam", "\"10.0.0.0/24\"");
}

#[test]
fn rejects_bad_routes() {
    assert_invalid(
        json!({"subnet": "10.0.0.0/24", "routes": [{"dst": "default"}]}),
        "ipam.routes[0].dst",
        "\"default\"",
    );
    assert_invalid(
        json!({"subnet": "10.0.0.0/24", "routes": [{"dst": "0.0.0.0/0", "gw": "fd00::1"}]}),
        "ipam.routes[0].gw",
        "\"fd00::1\"",
    );
}

#[test]
fn runtime_ip_ranges_replace_configured_ranges() {
    let mut cfg = IpamConfig::parse(&json!({"subnet": "10.0.0.0/24"})).unwrap();
    cfg.with_runtime_ranges(&json!([[{"subnet": "192.168.7.0/24", "rangeStart": "192.168.7.10"}]]))
        .unwrap();
    assert_eq!(cfg.range_sets().len(), 1);
    let r = cfg.range_sets()[0].ranges()[0];
    assert_eq!(r.subnet(), net("192.168.7.0/24"));
    assert_eq!(r.range_start(), ip("192.168.7.10"));

    cfg.with_runtime_ranges(&json!([])).unwrap();
    assert_eq!(
        cfg.range_sets()[0].ranges()[0].subnet(),
        net("192.168.7.0/24"),
        "an empty ipRanges keeps the ranges"
    );
}

#[test]
fn runtime_ip_ranges_errors_name_the_runtime_path() {
    let mut cfg = IpamConfig::parse(&json!({"subnet": "10.0.0.0/24"})).unwrap();
    let e = cfg
        .with_runtime_ranges(&json!([[{"subnet": "10.9.0.0/24", "gateway": "10.8.0.1"}]]))
        .unwrap_err();
    assert_eq!(e.code, Code::InvalidConfig);
    assert!(
        e.msg
            .starts_with("runtimeConfig.ipRanges[0][0].gateway: \"10.8.0.1\""),
        "{}",
        e.msg
    );
    assert_eq!(
        cfg.range_sets()[0].ranges()[0].subnet(),
        net("10.0.0.0/24"),
        "a bad ipRanges leaves the config as it was"
    );
}
