//! The CNI verbs beyond ADD: CHECK, DEL's idempotence, GC, STATUS, VERSION, loopback.

use podnet_testkit::Netns;
use serde_json::json;

use crate::{Node, first_ip, plugin, retired_links};

#[test]
fn check_passes_on_a_healthy_pod_and_names_a_removed_address() {
    let node = Node::bridge("10.98.1.0/24");
    let pod = Netns::new("pod");
    let result = node.add("pod", &pod);
    let mut conf = node.conf.clone();
    conf["prevResult"] = result.clone();
    let ok = node.call_with("CHECK", "pod", "eth0", Some(pod.path()), &conf);
    assert_eq!(ok.code, 0, "CHECK on a healthy pod failed: {}", ok.stdout);

    let addr = result["ips"][0]["address"].as_str().unwrap();
    pod.ip(&["addr", "del", addr, "dev", "eth0"]);
    let bad = node.call_with("CHECK", "pod", "eth0", Some(pod.path()), &conf);
    assert_ne!(bad.code, 0, "CHECK passed with the address removed");
    let msg = bad.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains(&first_ip(&result)) && msg.contains("eth0"),
        "unclear message: {msg}"
    );
}

#[test]
fn del_twice_succeeds_and_frees_everything() {
    let node = Node::bridge("10.98.2.0/24");
    let pod = Netns::new("pod");
    let result = node.add("pod", &pod);
    assert_eq!(node.allocated().len(), 1);
    node.del("pod", Some(&pod), Some(&result));
    node.del("pod", Some(&pod), Some(&result));
    assert!(node.allocated().is_empty());
    assert!(node.veths().is_empty(), "veth left: {:?}", node.veths());
    assert!(!pod.link_names().contains(&"eth0".to_owned()));
}

#[test]
fn del_takes_the_veth_out_of_service_at_once_and_a_reaper_deletes_it() {
    let node = Node::bridge("10.98.9.0/24");
    let pod = Netns::new("pod");
    let result = node.add("pod", &pod);
    node.del("pod", Some(&pod), Some(&result));
    // Right after DEL: every `pn…` veth left is retired (in the retired group, for the reaper)
    // and down: a bridge port the bridge has disabled, so it forwards nothing to it or from it.
    let retired = retired_links(&node.ns);
    let links = node.ns.ip_json(&["-d", "link", "show"]);
    for link in links.as_array().unwrap() {
        let name = link["ifname"].as_str().unwrap();
        if name.starts_with("pn") {
            assert!(
                retired.iter().any(|r| r == name),
                "live veth {name} after DEL"
            );
            let flags = link["flags"].as_array().unwrap();
            assert!(!flags.iter().any(|f| f == "UP"), "{name} still up: {link}");
            let port_state = &link["linkinfo"]["info_slave_data"]["state"];
            assert!(
                link["master"].is_null() || port_state == "disabled",
                "{name} is a bridge port in state {port_state}: {link}"
            );
        }
    }
    // Shortly after: deleted, the pod end with it.
    assert!(node.veths().is_empty(), "not reaped: {:?}", node.veths());
    assert!(!pod.link_names().contains(&"eth0".to_owned()));
}

#[test]
fn add_right_after_del_of_the_same_attachment_succeeds() {
    let node = Node::bridge("10.98.10.0/24");
    let pod = Netns::new("pod");
    for round in 0..5 {
        let result = node.add("pod", &pod);
        assert!(pod.ping("10.98.10.1", 3), "round {round}: no gateway");
        node.del("pod", Some(&pod), Some(&result));
    }
    assert!(node.veths().is_empty(), "left: {:?}", node.veths());
    assert!(node.allocated().is_empty());
}

#[test]
fn ptp_del_removes_the_host_route_before_returning() {
    let mut node = Node::bridge("10.98.11.0/24");
    node.conf["mode"] = json!("ptp");
    let pod = Netns::new("pod");
    let result = node.add("pod", &pod);
    let ip = first_ip(&result);
    assert!(node.ns.ip(&["route"]).contains(&ip));
    node.del("pod", Some(&pod), Some(&result));
    let routes = node.ns.ip(&["route"]);
    assert!(
        !routes.contains(&ip),
        "route to {ip} outlived DEL: {routes}"
    );
}

#[test]
fn del_succeeds_when_the_netns_is_gone() {
    let node = Node::bridge("10.98.3.0/24");
    let pod = Netns::new("pod");
    let result = node.add("pod", &pod);
    let path = pod.path().to_owned();
    drop(pod);
    let out = node.call_with("DEL", "pod", "eth0", Some(&path), &{
        let mut c = node.conf.clone();
        c["prevResult"] = result;
        c
    });
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(node.allocated().is_empty());
    assert!(node.veths().is_empty());
}

#[test]
fn del_with_empty_netns_and_no_prev_result_releases_the_address() {
    // Exactly the CRI path's second DEL.
    let node = Node::bridge("10.98.4.0/24");
    let pod = Netns::new("pod");
    node.add("pod", &pod);
    node.del("pod", None, None);
    assert!(node.allocated().is_empty());
    assert!(node.veths().is_empty());
}

#[test]
fn loopback_del_on_the_nodes_own_netns_leaves_its_lo_up() {
    // A recycled netns path can point at the node itself (plugins#714).
    let node = Node::bridge("10.98.5.0/24");
    let lo = json!({"cniVersion": "0.3.1", "name": "cni-loopback", "type": "podnet-cni"});
    let own = format!("/proc/{}/ns/net", std::process::id());
    let _ = own;
    let out = node.call_with("DEL", "c1", "lo", Some(node.ns.path()), &lo);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        node.ns.ip_json(&["link", "show", "lo"])[0]["operstate"],
        "UNKNOWN"
    );
    let add = node.call_with("ADD", "c1", "eth0", Some(node.ns.path()), &node.conf);
    assert_eq!(
        add.error_code(),
        Some(8),
        "ADD into the plugin's own netns: {}",
        add.stdout
    );
    assert!(node.veths().is_empty() && node.allocated().is_empty());
}

#[test]
fn loopback_add_brings_lo_up() {
    let node = Node::bridge("10.98.6.0/24");
    let pod = Netns::new("pod");
    pod.ip(&["link", "set", "lo", "down"]);
    let lo = json!({"cniVersion": "1.0.0", "name": "cni-loopback", "type": "podnet-cni"});
    let out = node.call_with("ADD", "c1", "lo", Some(pod.path()), &lo);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(out.json()["interfaces"][0]["name"], "lo");
    assert!(pod.ping("127.0.0.1", 1));
}

#[test]
fn gc_releases_exactly_the_attachments_not_listed_as_valid() {
    let node = Node::bridge("10.98.7.0/24");
    let pods: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("p{i}"))).collect();
    for (i, p) in pods.iter().enumerate() {
        node.add(&format!("c{i}"), p);
    }
    let mut conf = node.conf.clone();
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    let out = node.call_with("GC", "", "", None, &conf);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(node.allocated().len(), 1);
    assert_eq!(node.veths().len(), 1);
    assert!(
        pods[1].link_names().contains(&"eth0".to_owned()),
        "GC removed a valid attachment"
    );
    // The older key works too, and an empty list releases everything.
    let mut conf = node.conf.clone();
    conf["cni.dev/attachments"] = json!([]);
    assert_eq!(node.call_with("GC", "", "", None, &conf).code, 0);
    assert!(node.allocated().is_empty() && node.veths().is_empty());
}

#[test]
fn status_is_ok_until_the_range_is_exhausted() {
    let mut node = Node::bridge("10.98.8.0/30"); // one usable address besides the gateway
    node.conf["ipam"]["ranges"] = json!([[{"subnet": "10.98.8.0/30"}]]);
    assert_eq!(node.call_with("STATUS", "", "", None, &node.conf).code, 0);
    let pod = Netns::new("pod");
    node.add("pod", &pod);
    let out = node.call_with("STATUS", "", "", None, &node.conf);
    assert_eq!(out.error_code(), Some(50), "{}", out.stdout);
}

#[test]
fn version_lists_the_five_supported_versions() {
    let node = Node::bridge("10.98.9.0/24");
    let out = podnet_testkit::run_plugin(
        &plugin(),
        &node.ns,
        &[("CNI_COMMAND", "VERSION")],
        r#"{"cniVersion":"1.0.0"}"#,
    );
    assert_eq!(out.code, 0);
    assert_eq!(
        out.json()["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
fn results_are_converted_to_the_requested_version() {
    let mut node = Node::bridge("10.98.10.0/24");
    for (i, v) in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        node.conf["cniVersion"] = json!(v);
        let pod = Netns::new("pod");
        let r = node.add(&format!("c{i}"), &pod);
        assert_eq!(r["cniVersion"], *v);
        let has_version_field = r["ips"][0].get("version").is_some();
        assert_eq!(has_version_field, v.starts_with("0."), "{v}: {r}");
        assert!(
            r["interfaces"][2].get("mtu").is_none(),
            "no mtu configured, {v}: {r}"
        );
    }
}

#[test]
fn another_ipam_plugin_allocates_and_podnet_cni_wires_and_gives_back() {
    // The reference `static` IPAM plugin (containernetworking-plugins) in CNI_PATH.
    assert!(
        std::path::Path::new("/usr/lib/cni/static").exists(),
        "install containernetworking-plugins"
    );
    let mut node = Node::bridge("10.98.12.0/24");
    // Debian's reference plugins speak up to CNI 1.0.0.
    node.conf["cniVersion"] = json!("1.0.0");
    node.conf["ipam"] = json!({
        "type": "static",
        "addresses": [{"address": "10.98.12.77/24", "gateway": "10.98.12.1"}],
        "routes": [{"dst": "0.0.0.0/0"}]
    });
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    let ra = node.add("pod-a", &a);
    assert_eq!(ra["ips"][0]["address"], "10.98.12.77/24", "{ra}");
    assert_eq!(ra["ips"][0]["gateway"], "10.98.12.1", "{ra}");
    assert!(
        a.ping("10.98.12.1", 3),
        "no gateway through the delegated address"
    );
    let mut check = node.conf.clone();
    check["prevResult"] = ra.clone();
    let out = node.call_with("CHECK", "pod-a", "eth0", Some(a.path()), &check);
    assert_eq!(out.code, 0, "{}", out.stdout);
    // A second pod gets its own static address through the same plugin.
    node.conf["ipam"]["addresses"][0]["address"] = json!("10.98.12.78/24");
    node.add("pod-b", &b);
    assert!(
        b.ping("10.98.12.77", 3),
        "pods on delegated addresses do not reach each other"
    );
    node.del("pod-a", Some(&a), Some(&ra));
    assert_eq!(node.veths().len(), 1);
}

#[test]
fn the_policy_gate_holds_add_with_another_ipam_plugin_too() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::{Arc, Mutex};

    assert!(
        std::path::Path::new("/usr/lib/cni/static").exists(),
        "install containernetworking-plugins"
    );
    let mut node = Node::bridge("10.98.13.0/24");
    node.conf["cniVersion"] = json!("1.0.0");
    node.conf["ipam"] = json!({
        "type": "static",
        "addresses": [{"address": "10.98.13.77/24", "gateway": "10.98.13.1"}],
    });
    // A node agent in the node's namespace that takes the attach and confirms at once.
    let listener = node
        .ns
        .run(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    node.conf["policyGate"] = json!(listener.local_addr().unwrap().to_string());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            let answer = if line.starts_with("POST /policy/attach") {
                "HTTP/1.1 202 Accepted\r\n\r\nattached\n"
            } else {
                "HTTP/1.1 200 OK\r\n\r\nns1/pod1\n"
            };
            seen.lock().unwrap().push(line.trim().to_owned());
            let _ = (&stream).write_all(answer.as_bytes());
        }
    });
    let pod = Netns::new("a");
    let netns = pod.path().display().to_string();
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "pod-1"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod1",
        ),
    ];
    let out = podnet_testkit::run_plugin(&plugin(), &node.ns, &env, &node.conf.to_string());
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    let requests = requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("POST /policy/attach?namespace=ns1&name=pod1&ip=10.98.13.77 ")),
        "the agent never heard of the pod's delegated address: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /policy/programmed?ip=10.98.13.77 ")),
        "{requests:?}"
    );
}
