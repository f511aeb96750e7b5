//! Every network config field: present, absent (default), and bad values.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::assert_error;
use crate::error::Code;
use crate::spec::{Attachment, Mode, NetConf, PortMapping, Protocol, Version};

/// A minimal valid config with `extra` keys merged in.
fn conf(extra: Value) -> crate::error::Result<NetConf> {
    let mut base = json!({"cniVersion": "1.1.0", "name": "podnet", "type": "podnet-cni"});
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    NetConf::from_value(base)
}

fn ok(extra: Value) -> NetConf {
    conf(extra).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = ok(json!({}));
    assert_eq!(c.cni_version, Version::V1_1_0);
    assert_eq!(c.name, "podnet");
    assert_eq!(c.plugin_type, "podnet-cni");
    assert_eq!(c.mode, Mode::Bridge);
    assert_eq!(c.bridge, "cni0");
    assert!(!c.is_gateway && !c.is_default_gateway && !c.force_address && !c.ip_masq);
    assert!(!c.hairpin_mode && !c.promisc_mode && !c.enable_dad);
    assert_eq!(c.mtu, None);
    assert_eq!(c.ipam, None);
    assert_eq!(c.ipam_type(), None);
    assert_eq!(c.dns, Default::default());
    assert_eq!(c.runtime_config, Default::default());
    assert_eq!(c.args, Default::default());
    assert_eq!(c.prev_result, None);
    assert_eq!(c.valid_attachments(), None);
}

#[test]
fn bool_fields_are_read_and_type_checked() {
    let keys = [
        "isGateway",
        "isDefaultGateway",
        "forceAddress",
        "ipMasq",
        "hairpinMode",
        "promiscMode",
        "enabledad",
    ];
    for key in keys {
        let c = ok(json!({ key: true }));
        let got = match key {
            "isGateway" => c.is_gateway,
            "isDefaultGateway" => c.is_default_gateway,
            "forceAddress" => c.force_address,
            "ipMasq" => c.ip_masq,
            "hairpinMode" => c.hairpin_mode,
            "promiscMode" => c.promisc_mode,
            _ => c.enable_dad,
        };
        assert!(got, "{key}");
        let (mut off, mut default) = (ok(json!({ key: false })), ok(json!({})));
        (off.raw, default.raw) = (Value::Null, Value::Null);
        assert_eq!(off, default, "{key}: false is the default");
        assert_error(
            conf(json!({ key: "yes" })).unwrap_err(),
            Code::Decode,
            &[key, "\"yes\"", "boolean"],
        );
    }
}

#[test]
fn is_default_gateway_implies_is_gateway() {
    let c = ok(json!({"isDefaultGateway": true, "isGateway": false}));
    assert!(c.is_gateway && c.is_default_gateway);
}

#[test]
fn mode_accepts_bridge_and_ptp() {
    assert_eq!(ok(json!({"mode": "bridge"})).mode, Mode::Bridge);
    assert_eq!(ok(json!({"mode": "ptp"})).mode, Mode::Ptp);
    assert_eq!(Mode::Ptp.as_str(), "ptp");
}

#[test]
fn unknown_mode_is_unsupported_field() {
    let e = conf(json!({"mode": "vxlan"})).unwrap_err();
    assert_eq!(e.code, Code::UnsupportedField);
    assert_eq!(
        e.msg,
        "mode: \"vxlan\" is not supported; expected \"bridge\" or \"ptp\""
    );
    assert_error(
        conf(json!({"mode": 1})).unwrap_err(),
        Code::Decode,
        &["mode", "1"],
    );
}

#[test]
fn bridge_name_is_validated_as_an_interface_name() {
    assert_eq!(ok(json!({"bridge": "cntpodbr0"})).bridge, "cntpodbr0");
    for bad in ["", "br/0", "a-very-long-bridge0", "br 0", ".."] {
        assert_error(
            conf(json!({ "bridge": bad })).unwrap_err(),
            Code::InvalidConfig,
            &["bridge", &format!("{bad:?}")],
        );
    }
    assert_error(
        conf(json!({"bridge": 7})).unwrap_err(),
        Code::Decode,
        &["bridge", "7"],
    );
}

#[test]
fn ip_masq_backend_allows_only_nftables() {
    assert!(ok(json!({"ipMasq": true, "ipMasqBackend": "nftables"})).ip_masq);
    ok(json!({"ipMasqBackend": ""}));
    assert_error(
        conf(json!({"ipMasqBackend": "iptables"})).unwrap_err(),
        Code::UnsupportedField,
        &["ipMasqBackend", "\"iptables\"", "nftables only"],
    );
    assert_error(
        conf(json!({"ipMasqBackend": "ebpf"})).unwrap_err(),
        Code::UnsupportedField,
        &["ipMasqBackend", "\"ebpf\"", "\"nftables\""],
    );
}

#[test]
fn mtu_zero_means_unset_and_range_is_checked() {
    assert_eq!(ok(json!({"mtu": 0})).mtu, None);
    assert_eq!(ok(json!({"mtu": 1450})).mtu, Some(1450));
    assert_eq!(ok(json!({"mtu": 68})).mtu, Some(68));
    assert_eq!(ok(json!({"mtu": 65535})).mtu, Some(65535));
    for bad in [67u64, 65536, 1 << 40] {
        assert_error(
            conf(json!({ "mtu": bad })).unwrap_err(),
            Code::InvalidConfig,
            &["mtu", &bad.to_string(), "68-65535"],
        );
    }
    for bad in [json!(-1), json!("1500"), json!(1500.5)] {
        assert_error(
            conf(json!({ "mtu": bad })).unwrap_err(),
            Code::Decode,
            &["mtu", &bad.to_string()],
        );
    }
}

#[test]
fn hairpin_and_promisc_together_are_invalid() {
    assert_error(
        conf(json!({"hairpinMode": true, "promiscMode": true})).unwrap_err(),
        Code::InvalidConfig,
        &["hairpinMode", "promiscMode", "true"],
    );
}

#[test]
fn unimplemented_bridge_options_are_accepted_only_when_unset() {
    let unset = [
        json!({"vlan": 0}),
        json!({"vlanTrunk": []}),
        json!({"macspoofchk": false}),
        json!({"disableContainerInterface": false}),
        json!({"portIsolation": false}),
        json!({"vlan": null}),
    ];
    for extra in unset {
        ok(extra);
    }
    let set = [
        ("vlan", json!(100), "100"),
        ("vlanTrunk", json!([{"id": 101}]), "[{\"id\":101}]"),
        ("macspoofchk", json!(true), "true"),
        ("disableContainerInterface", json!(true), "true"),
        ("portIsolation", json!(true), "true"),
    ];
    for (key, value, shown) in set {
        assert_error(
            conf(json!({ key: value })).unwrap_err(),
            Code::UnsupportedField,
            &[key, shown, "not supported"],
        );
    }
}

#[test]
fn ipam_is_kept_raw_and_its_type_exposed() {
    let ipam = json!({"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/24"}]]});
    let c = ok(json!({ "ipam": ipam.clone() }));
    assert_eq!(c.ipam, Some(ipam));
    assert_eq!(c.ipam_type(), Some("host-local"));
    assert_eq!(ok(json!({"ipam": {}})).ipam_type(), None);
    assert_error(
        conf(json!({"ipam": "host-local"})).unwrap_err(),
        Code::Decode,
        &["ipam", "\"host-local\"", "object"],
    );
    assert_error(
        conf(json!({"ipam": {"type": 1}})).unwrap_err(),
        Code::Decode,
        &["ipam.type", "1"],
    );
}

#[test]
fn dns_fields_are_all_optional() {
    let c = ok(json!({"dns": {
        "nameservers": ["10.96.0.10"],
        "domain": "cluster.local",
        "search": ["svc.cluster.local"],
        "options": ["ndots:5"],
    }}));
    assert_eq!(c.dns.nameservers, vec!["10.96.0.10"]);
    assert_eq!(c.dns.domain.as_deref(), Some("cluster.local"));
    assert_eq!(c.dns.search, vec!["svc.cluster.local"]);
    assert_eq!(c.dns.options, vec!["ndots:5"]);
    assert_eq!(ok(json!({"dns": {}})).dns, Default::default());
    assert_error(
        conf(json!({"dns": {"nameservers": "10.96.0.10"}})).unwrap_err(),
        Code::Decode,
        &["dns.nameservers", "\"10.96.0.10\"", "array"],
    );
}

#[test]
fn capabilities_cni_versions_and_unknown_keys_are_ignored() {
    let c = ok(json!({
        "capabilities": {"portMappings": true, "whatever": [1]},
        "cniVersions": ["1.0.0", "1.1.0"],
        "snat": true,
        "backend": "nftables",
    }));
    assert_eq!(c.raw["snat"], json!(true));
}

#[test]
fn raw_keeps_the_whole_config() {
    let c = ok(json!({"ipam": {"type": "host-local"}, "custom": 1}));
    assert_eq!(c.raw["custom"], json!(1));
    assert_eq!(c.raw["ipam"]["type"], "host-local");
    assert_eq!(c.raw["name"], "podnet");
}

#[test]
fn required_fields_missing_are_invalid_config() {
    for key in ["cniVersion", "name", "type"] {
        let mut v = json!({"cniVersion": "1.1.0", "name": "podnet", "type": "podnet-cni"});
        v.as_object_mut().unwrap().remove(key);
        assert_error(
            NetConf::from_value(v).unwrap_err(),
            Code::InvalidConfig,
            &[key, "missing"],
        );
    }
}

#[test]
fn unsupported_cni_version_is_incompatible() {
    assert_error(
        conf(json!({"cniVersion": "0.2.0"})).unwrap_err(),
        Code::IncompatibleVersion,
        &["cniVersion", "\"0.2.0\"", "1.1.0"],
    );
    assert_eq!(
        ok(json!({"cniVersion": "0.3.1"})).cni_version,
        Version::V0_3_1
    );
}

#[test]
fn bad_network_name_is_invalid_config() {
    for bad in ["-net", "my net", "net/1", ""] {
        assert_error(
            conf(json!({ "name": bad })).unwrap_err(),
            Code::InvalidConfig,
            &["name", &format!("{bad:?}")],
        );
    }
}

#[test]
fn bad_json_is_decode_with_serde_details() {
    let e = NetConf::parse(b"{\"cniVersion\": ").unwrap_err();
    assert_eq!(e.code, Code::Decode);
    assert!(e.msg.contains("not valid JSON"), "{}", e.msg);
    assert!(e.details.contains("EOF"), "{}", e.details);
    assert_error(
        NetConf::parse(b"[1]").unwrap_err(),
        Code::Decode,
        &["object", "[1]"],
    );
}

#[test]
fn port_mappings_with_spec_keys() {
    let c = ok(json!({"runtimeConfig": {"portMappings": [
        {"hostPort": 18090, "containerPort": 8080, "protocol": "tcp", "hostIP": "127.0.0.1"},
        {"hostPort": 53, "containerPort": 53, "protocol": "UDP"},
        {"hostPort": 9, "containerPort": 9, "protocol": "sctp", "hostIP": "::1"},
    ]}}));
    assert_eq!(
        c.runtime_config.port_mappings,
        vec![
            PortMapping {
                host_port: 18090,
                container_port: 8080,
                protocol: Protocol::Tcp,
                host_ip: Some(ip("127.0.0.1")),
            },
            PortMapping {
                host_port: 53,
                container_port: 53,
                protocol: Protocol::Udp,
                host_ip: None,
            },
            PortMapping {
                host_port: 9,
                container_port: 9,
                protocol: Protocol::Sctp,
                host_ip: Some(ip("::1")),
            },
        ]
    );
}

#[test]
fn port_mappings_with_capitalised_keys_as_cri_sends_them() {
    // cri/04-ADD-portmap.log: containerd's CRI path, Go field names.
    let c = ok(json!({"runtimeConfig": {"portMappings": [
        {"HostPort": 18083, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""},
        {"hostPort": 1, "containerPort": 2, "hostIp": "10.0.0.1"},
    ]}}));
    assert_eq!(
        c.runtime_config.port_mappings,
        vec![
            PortMapping {
                host_port: 18083,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: None,
            },
            PortMapping {
                host_port: 1,
                container_port: 2,
                protocol: Protocol::Tcp,
                host_ip: Some(ip("10.0.0.1")),
            },
        ]
    );
}

#[test]
fn port_mapping_zero_or_missing_port_is_invalid_config_naming_the_path() {
    let cases = [
        (
            json!({"hostPort": 0, "containerPort": 80}),
            "runtimeConfig.portMappings[0].hostPort",
            "0",
        ),
        (
            json!({"HostPort": 0, "ContainerPort": 80}),
            "runtimeConfig.portMappings[0].HostPort",
            "0",
        ),
        (
            json!({"hostPort": 80, "containerPort": 0}),
            "runtimeConfig.portMappings[0].containerPort",
            "0",
        ),
        (
            json!({"hostPort": 70000, "containerPort": 80}),
            "runtimeConfig.portMappings[0].hostPort",
            "70000",
        ),
        (
            json!({"containerPort": 80}),
            "runtimeConfig.portMappings[0].hostPort",
            "missing",
        ),
    ];
    for (pm, path, value) in cases {
        assert_error(
            conf(json!({"runtimeConfig": {"portMappings": [pm]}})).unwrap_err(),
            Code::InvalidConfig,
            &[path, value],
        );
    }
    assert_error(
        conf(json!({"runtimeConfig": {"portMappings": [{"hostPort": "80", "containerPort": 80}]}}))
            .unwrap_err(),
        Code::Decode,
        &["runtimeConfig.portMappings[0].hostPort", "\"80\""],
    );
}

#[test]
fn port_mapping_bad_protocol_or_host_ip_is_invalid_config() {
    assert_error(
        conf(json!({"runtimeConfig": {"portMappings": [
            {"hostPort": 1, "containerPort": 1, "protocol": "icmp"}]}}))
        .unwrap_err(),
        Code::InvalidConfig,
        &["runtimeConfig.portMappings[0].protocol", "\"icmp\""],
    );
    assert_error(
        conf(json!({"runtimeConfig": {"portMappings": [
            {"hostPort": 1, "containerPort": 1, "hostIP": "localhost"}]}}))
        .unwrap_err(),
        Code::InvalidConfig,
        &["runtimeConfig.portMappings[0].hostIP", "\"localhost\""],
    );
}

#[test]
fn runtime_config_ips_and_ip_ranges() {
    let ranges = json!([[{"subnet": "10.1.0.0/24"}]]);
    let c = ok(json!({"runtimeConfig": {
        "ips": ["10.1.0.5/24", "fd00::5"],
        "ipRanges": ranges.clone(),
        "bandwidth": {"ingressRate": 1},
    }}));
    assert_eq!(c.runtime_config.ips, vec![ip("10.1.0.5"), ip("fd00::5")]);
    assert_eq!(c.runtime_config.ip_ranges, Some(ranges));
    assert_error(
        conf(json!({"runtimeConfig": {"ips": ["10.1.0.500"]}})).unwrap_err(),
        Code::InvalidConfig,
        &["runtimeConfig.ips[0]", "\"10.1.0.500\""],
    );
}

#[test]
fn structured_args_cni_ips() {
    let c =
        ok(json!({"args": {"cni": {"ips": ["10.2.0.7"], "labels": [{"key": "a"}]}, "other": 1}}));
    assert_eq!(c.args.ips, vec![ip("10.2.0.7")]);
    assert_eq!(ok(json!({"args": {}})).args.ips, Vec::<IpAddr>::new());
    assert_error(
        conf(json!({"args": {"cni": {"ips": ["ten"]}}})).unwrap_err(),
        Code::InvalidConfig,
        &["args.cni.ips[0]", "\"ten\""],
    );
}

#[test]
fn prev_result_is_parsed_from_any_version() {
    let c = ok(json!({"prevResult": {
        "cniVersion": "0.4.0",
        "ips": [{"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
        "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
    }}));
    let prev = c.prev_result.unwrap();
    assert_eq!(prev.ips[0].address.to_string(), "10.0.0.2/24");
    assert_eq!(prev.ips[0].interface, Some(0));
    assert_eq!(prev.interfaces[0].sandbox.as_deref(), Some("/run/netns/x"));
}

#[test]
fn prev_result_with_only_cni_version_is_empty() {
    let c = ok(json!({"prevResult": {"cniVersion": "1.1.0"}}));
    assert_eq!(c.prev_result, Some(Default::default()));
}

#[test]
fn bad_prev_result_names_the_nested_path() {
    assert_error(
        conf(json!({"prevResult": {"ips": [{"address": "bogus"}]}})).unwrap_err(),
        Code::Decode,
        &["prevResult.ips[0].address", "\"bogus\""],
    );
}

#[test]
fn gc_valid_attachments_under_either_key_are_merged() {
    let a = |c: &str, i: &str| Attachment {
        container_id: c.into(),
        ifname: i.into(),
    };
    let new_key =
        ok(json!({"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}));
    assert_eq!(new_key.valid_attachments(), Some(vec![a("c1", "eth0")]));

    let old_key = ok(json!({"cni.dev/attachments": [{"containerID": "c2", "ifname": "eth1"}]}));
    assert_eq!(old_key.valid_attachments(), Some(vec![a("c2", "eth1")]));

    // libcni sends both keys with the same list; the union has no duplicates.
    let both = ok(json!({
        "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
        "cni.dev/attachments": [
            {"containerID": "c1", "ifname": "eth0"},
            {"containerID": "c3", "ifname": "eth0"},
        ],
    }));
    assert_eq!(
        both.valid_attachments(),
        Some(vec![a("c1", "eth0"), a("c3", "eth0")])
    );

    // An empty list means "nothing is valid", which differs from no key at all.
    let empty = ok(json!({"cni.dev/valid-attachments": []}));
    assert_eq!(empty.valid_attachments(), Some(vec![]));
}

#[test]
fn malformed_gc_attachment_names_the_path() {
    assert_error(
        conf(json!({"cni.dev/valid-attachments": [{"ifname": "eth0"}]})).unwrap_err(),
        Code::InvalidConfig,
        &["cni.dev/valid-attachments[0].containerID", "missing"],
    );
    assert_error(
        conf(json!({"cni.dev/attachments": {"containerID": "c"}})).unwrap_err(),
        Code::Decode,
        &["cni.dev/attachments", "array"],
    );
}
