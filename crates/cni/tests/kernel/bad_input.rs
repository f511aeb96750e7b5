//! Malformed input gets the right CNI error code, a message naming the field and value, and
//! leaves nothing behind: no link, no address, no allocation, no rule.

use podnet_testkit::{Netns, PluginOutput, run_plugin};
use serde_json::{Value, json};

use crate::{Node, plugin};

fn assert_clean(node: &Node, pod: &Netns, case: &str) {
    assert!(
        node.veths().is_empty(),
        "{case}: veth left {:?}",
        node.veths()
    );
    assert!(
        !pod.link_names().contains(&"eth0".to_owned()),
        "{case}: eth0 left in the pod"
    );
    assert!(
        node.allocated().is_empty(),
        "{case}: addresses left {:?}",
        node.allocated()
    );
}

/// The plugin failed with `code` and a message naming `needle`.
fn assert_error(out: &PluginOutput, code: u64, needle: &str, case: &str) {
    assert_eq!(out.error_code(), Some(code), "{case}: {}", out.stdout);
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains(needle),
        "{case}: message {msg:?} does not name {needle:?}"
    );
}

#[test]
fn malformed_configs_get_the_right_code_and_leave_nothing_behind() {
    let node = Node::bridge("10.97.1.0/24");
    let pod = Netns::new("pod");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = node.conf.clone();
        f(&mut c);
        c.to_string()
    };
    let cases: Vec<(&str, String, u64, &str)> = vec![
        ("bad JSON", "{\"cniVersion\": \"1.1.0\", ".to_owned(), 6, ""),
        (
            "unknown mode",
            with(&|c| c["mode"] = json!("vxlan")),
            2,
            "vxlan",
        ),
        (
            "bad CIDR",
            with(&|c| c["ipam"]["ranges"] = json!([[{"subnet": "10.0.0.0/33"}]])),
            7,
            "10.0.0.0/33",
        ),
        (
            "rangeStart outside subnet",
            with(&|c| {
                c["ipam"]["ranges"] =
                    json!([[{"subnet": "10.97.1.0/24", "rangeStart": "10.97.2.5"}]])
            }),
            7,
            "10.97.2.5",
        ),
        (
            "unsupported version",
            with(&|c| c["cniVersion"] = json!("0.2.0")),
            1,
            "0.2.0",
        ),
        (
            "unknown version",
            with(&|c| c["cniVersion"] = json!("9.9.9")),
            1,
            "9.9.9",
        ),
        (
            "ipam plugin not in CNI_PATH",
            with(&|c| c["ipam"]["type"] = json!("no-such-ipam")),
            7,
            "no-such-ipam",
        ),
        (
            "iptables masquerade backend",
            with(&|c| c["ipMasqBackend"] = json!("iptables")),
            2,
            "iptables",
        ),
        (
            "hairpin with promisc",
            with(&|c| c["promiscMode"] = json!(true)),
            7,
            "promiscMode",
        ),
        ("bad MTU", with(&|c| c["mtu"] = json!(20)), 7, "20"),
        (
            "bad port mapping",
            with(&|c| {
                c["runtimeConfig"] = json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]})
            }),
            7,
            "hostPort",
        ),
    ];
    for (case, stdin, code, needle) in cases {
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "bad"),
            ("CNI_NETNS", pod.path().to_str().unwrap()),
            ("CNI_IFNAME", "eth0"),
        ];
        let out = run_plugin(&plugin(), &node.ns, &env, &stdin);
        assert_error(&out, code, needle, case);
        assert_clean(&node, &pod, case);
    }
}

#[test]
fn bad_environments_get_code_4_naming_the_variable() {
    let node = Node::bridge("10.97.2.0/24");
    let pod = Netns::new("pod");
    let conf = node.conf.to_string();
    let p = pod.path().to_str().unwrap();
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "no CNI_COMMAND",
            vec![
                ("CNI_CONTAINERID", "c"),
                ("CNI_NETNS", p),
                ("CNI_IFNAME", "eth0"),
            ],
            "CNI_COMMAND",
        ),
        (
            "unknown command",
            vec![
                ("CNI_COMMAND", "JUMP"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_NETNS", p),
                ("CNI_IFNAME", "eth0"),
            ],
            "JUMP",
        ),
        (
            "ADD without CNI_NETNS",
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
            ],
            "CNI_NETNS",
        ),
        (
            "bad container id",
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "-x/y"),
                ("CNI_NETNS", p),
                ("CNI_IFNAME", "eth0"),
            ],
            "-x/y",
        ),
        (
            "ifname too long",
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_NETNS", p),
                ("CNI_IFNAME", "eth0123456789abc"),
            ],
            "CNI_IFNAME",
        ),
    ];
    for (case, env, needle) in cases {
        let out = run_plugin(&plugin(), &node.ns, &env, &conf);
        assert_error(&out, 4, needle, case);
        assert_clean(&node, &pod, case);
    }
}

#[test]
fn missing_netns_is_an_unknown_container() {
    let node = Node::bridge("10.97.3.0/24");
    let out = node.call_with(
        "ADD",
        "c",
        "eth0",
        Some(std::path::Path::new("/run/netns/podnet-no-such-ns")),
        &node.conf,
    );
    assert_eq!(out.error_code(), Some(3), "{}", out.stdout);
    assert!(
        out.json()["msg"]
            .as_str()
            .unwrap()
            .contains("/run/netns/podnet-no-such-ns")
    );
    assert!(node.veths().is_empty() && node.allocated().is_empty());
}

#[test]
fn exhausted_range_is_try_again_later_and_takes_nothing() {
    let mut node = Node::bridge("10.97.4.0/30");
    node.conf["ipam"]["ranges"] = json!([[{"subnet": "10.97.4.0/30"}]]);
    let first = Netns::new("first");
    node.add("first", &first);
    let pod = Netns::new("pod");
    let out = node.call_with("ADD", "second", "eth0", Some(pod.path()), &node.conf);
    assert_eq!(out.error_code(), Some(11), "{}", out.stdout);
    assert!(out.json()["msg"].as_str().unwrap().contains("10.97.4.0/30"));
    assert_eq!(node.allocated().len(), 1);
    assert_eq!(node.veths().len(), 1);
    assert!(!pod.link_names().contains(&"eth0".to_owned()));
}

#[test]
fn add_failing_halfway_rolls_back_its_veth_address_and_rules() {
    // The second pod asks for a hostPort the first holds: wiring succeeds, the nft step fails.
    let mut node = Node::bridge("10.97.5.0/24");
    node.conf["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 18081, "containerPort": 80}]});
    let first = Netns::new("first");
    node.add("first", &first);
    let pod = Netns::new("pod");
    let out = node.call_with("ADD", "second", "eth0", Some(pod.path()), &node.conf);
    assert_ne!(out.code, 0, "two pods got hostPort 18081: {}", out.stdout);
    assert_eq!(node.allocated().len(), 1, "the failed ADD kept its address");
    assert_eq!(node.veths().len(), 1, "the failed ADD kept its veth");
    assert!(!pod.link_names().contains(&"eth0".to_owned()));
    assert_eq!(
        node.nft_table().matches("dnat ip to").count(),
        1,
        "{}",
        node.nft_table()
    );

    // An interface that already exists in the pod: the ADD fails and takes nothing.
    let taken = Netns::new("taken");
    taken.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    let mut plain = node.conf.clone();
    plain.as_object_mut().unwrap().remove("runtimeConfig");
    let out = node.call_with("ADD", "third", "eth0", Some(taken.path()), &plain);
    assert_ne!(out.code, 0);
    assert!(
        out.json()["msg"].as_str().unwrap().contains("eth0"),
        "{}",
        out.stdout
    );
    assert_eq!(node.allocated().len(), 1);
    assert_eq!(node.veths().len(), 1);
}

#[test]
fn a_repeated_add_fails_without_touching_the_live_attachment() {
    let node = Node::bridge("10.97.6.0/24");
    let pod = Netns::new("pod");
    let first = node.add("pod", &pod);
    let out = node.call_with("ADD", "pod", "eth0", Some(pod.path()), &node.conf);
    assert_ne!(out.code, 0, "a second ADD for a live attachment succeeded");
    assert_eq!(node.veths().len(), 1, "the live veth was removed");
    assert_eq!(node.allocated().len(), 1, "the live address was released");
    assert!(
        pod.addresses("eth0")
            .iter()
            .any(|a| a.starts_with(&crate::first_ip(&first)))
    );
    assert!(
        pod.ping("10.97.6.1", 2),
        "the live pod lost its connectivity"
    );
}

#[test]
fn a_bridge_name_that_is_not_a_bridge_is_refused_and_left_alone() {
    let mut node = Node::bridge("10.97.7.0/24");
    node.ns.ip(&[
        "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
    ]);
    node.conf["bridge"] = json!("uplink0");
    let pod = Netns::new("pod");
    let out = node.call_with("ADD", "c", "eth0", Some(pod.path()), &node.conf);
    assert_eq!(out.error_code(), Some(7), "{}", out.stdout);
    assert!(out.json()["msg"].as_str().unwrap().contains("uplink0"));
    assert!(
        node.ns.addresses("uplink0").is_empty(),
        "the gateway address went onto uplink0"
    );
    assert_clean(&node, &pod, "not a bridge");
}

#[test]
fn chained_without_a_previous_result_is_invalid_config() {
    let node = Node::bridge("10.97.8.0/24");
    let pod = Netns::new("pod");
    let conf = json!({"cniVersion": "1.0.0", "name": "testnet", "type": "podnet-cni",
                      "capabilities": {"portMappings": true}, "dataDir": node.data.path()});
    let out = node.call_with("ADD", "c", "eth0", Some(pod.path()), &conf);
    assert_eq!(out.error_code(), Some(7), "{}", out.stdout);
    assert!(out.json()["msg"].as_str().unwrap().contains("prevResult"));
}
