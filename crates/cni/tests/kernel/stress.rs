//! Concurrency and crashes: parallel ADDs never share an address; ADDs killed at any point are
//! cleaned up completely by GC.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use podnet_testkit::Netns;
use serde_json::json;

use crate::{Node, first_ip, plugin};

#[test]
fn fifty_concurrent_adds_then_dels_share_no_address_and_leave_nothing() {
    let node = Node::bridge("10.96.0.0/24");
    let pods: Vec<Netns> = (0..50).map(|i| Netns::new(&format!("s{i}"))).collect();
    let results: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let node = &node;
                s.spawn(move || node.add(&format!("stress{i}"), p))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: HashSet<String> = results.iter().map(first_ip).collect();
    assert_eq!(ips.len(), 50, "duplicate addresses handed out");
    assert_eq!(node.allocated().len(), 50);
    assert_eq!(node.veths().len(), 50);
    // Every pod really has its address.
    for (p, r) in pods.iter().zip(&results) {
        assert!(
            p.addresses("eth0")
                .iter()
                .any(|a| a.starts_with(&first_ip(r)))
        );
    }
    std::thread::scope(|s| {
        for (i, p) in pods.iter().enumerate() {
            let node = &node;
            s.spawn(move || node.del(&format!("stress{i}"), Some(p), None));
        }
    });
    assert!(node.allocated().is_empty(), "left: {:?}", node.allocated());
    assert!(node.veths().is_empty(), "left: {:?}", node.veths());
}

#[test]
fn adds_killed_at_random_points_leave_nothing_after_gc() {
    let mut node = Node::bridge("10.96.1.0/24");
    node.conf["ipMasq"] = json!(true);
    node.conf["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 18082, "containerPort": 80}]});
    let stdin = node.conf.to_string();
    // A fixed pseudo-random sequence of kill delays spanning a whole ADD (a few ms).
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut killed = 0;
    let pods: Vec<Netns> = (0..24).map(|i| Netns::new(&format!("k{i}"))).collect();
    for (i, pod) in pods.iter().enumerate() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 6000);
        let cid = format!("killed{i}");
        let mut child = node
            .ns
            .run(|| {
                Command::new(plugin())
                    .env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("CNI_COMMAND", "ADD")
                    .env("CNI_CONTAINERID", &cid)
                    .env("CNI_NETNS", pod.path())
                    .env("CNI_IFNAME", "eth0")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        // Only one pod may hold the hostPort; later ADDs that got that far fail and roll back.
    }
    assert!(
        killed > 0,
        "no ADD was interrupted; the delays are too long for this machine"
    );
    let mut gc = node.conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    let out = node.call_with("GC", "", "", None, &gc);
    assert_eq!(out.code, 0, "GC failed: {}", out.stdout);
    assert!(
        node.allocated().is_empty(),
        "addresses leaked: {:?}",
        node.allocated()
    );
    assert!(node.veths().is_empty(), "veths leaked: {:?}", node.veths());
    for p in &pods {
        assert!(
            !p.link_names().contains(&"eth0".to_owned()),
            "pod interface leaked in {}",
            p.name()
        );
    }
    let table = node.nft_table();
    assert!(
        !table.contains("dnat") && !table.contains("hp_"),
        "rules leaked: {table}"
    );
    for set in ["masq_v4", "masq_skip_v4"] {
        let (_, out, _) = node
            .ns
            .exec("nft", &["list", "set", "inet", "podnet_cni", set]);
        assert!(!out.contains("10.96.1."), "{set} leaked: {out}");
    }
}
