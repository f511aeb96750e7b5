//! Every invocation real runtimes made (`shared/cni-samples/`: podman, containerd's ctr, and the
//! CRI path kubelet uses), replayed against podnet-cni in order, each runtime's sequence on its
//! own node and pod.
//!
//! The replay changes only what must change on another machine: `CNI_NETNS` points at the test's
//! pod namespace, the plugin that was invoked is podnet-cni (top-level `type`, or `ipam.type` for
//! the IPAM-only calls), the IPAM store goes to a scratch `dataDir`, and a `prevResult` is the
//! one podnet-cni itself returned earlier in the sequence, as the runtime would have cached it.

use std::path::{Path, PathBuf};

use podnet_testkit::{Netns, run_plugin, scratch_dir};
use serde_json::{Value, json};

use crate::plugin;

struct Invocation {
    file: String,
    plugin: String,
    env: Vec<(String, String)>,
    stdin: Value,
    rc: i32,
}

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/cni-samples")
}

fn parse(path: &Path) -> Invocation {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut section = "";
    let mut inv = Invocation {
        file: path.file_name().unwrap().to_string_lossy().into_owned(),
        plugin: String::new(),
        env: Vec::new(),
        stdin: Value::Null,
        rc: -1,
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("### plugin: ") {
            let bin = rest.split_whitespace().next().unwrap_or_default();
            inv.plugin = bin.rsplit('/').next().unwrap_or_default().to_owned();
        } else if let Some(rc) = line.strip_prefix("### rc: ") {
            inv.rc = rc.trim().parse().unwrap();
        } else if let Some(name) = line.strip_prefix("### ") {
            section = name.trim_end_matches(':');
        } else if section == "env" {
            if let Some((k, v)) = line.split_once('=') {
                inv.env.push((k.to_owned(), v.to_owned()));
            }
        } else if section == "stdin" && !line.trim().is_empty() {
            inv.stdin = serde_json::from_str(line).unwrap();
        }
    }
    inv
}

fn replay(runtime: &str) {
    let dir = samples_dir().join(runtime);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let node = Netns::new("node");
    let pod = Netns::new("pod");
    let data = scratch_dir();
    let mut main_result: Option<Value> = None;
    for path in files {
        let inv = parse(&path);
        let mut stdin = inv.stdin.clone();
        if inv.plugin == "host-local" {
            stdin["ipam"]["type"] = json!("podnet-cni");
        } else {
            stdin["type"] = json!("podnet-cni");
        }
        if stdin.get("ipam").is_some() {
            stdin["ipam"]["dataDir"] = json!(data.path());
        } else if stdin.is_object() {
            stdin["dataDir"] = json!(data.path());
        }
        if stdin.get("prevResult").is_some()
            && let Some(prev) = &main_result
        {
            stdin["prevResult"] = prev.clone();
        }
        let command = inv
            .env
            .iter()
            .find(|(k, _)| k == "CNI_COMMAND")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let env: Vec<(String, String)> = inv
            .env
            .iter()
            .map(|(k, v)| {
                if k == "CNI_NETNS" && !v.is_empty() && command != "VERSION" {
                    (k.clone(), pod.path().display().to_string())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
        let env_ref: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let out = run_plugin(&plugin(), &node, &env_ref, &stdin.to_string());
        assert_eq!(
            out.code, inv.rc,
            "{runtime}/{}: {} {}",
            inv.file, out.stdout, out.stderr
        );
        let result = out.json();
        if command == "ADD" {
            assert_eq!(
                result["cniVersion"], stdin["cniVersion"],
                "{runtime}/{}",
                inv.file
            );
            assert!(
                !result["ips"].as_array().map(Vec::is_empty).unwrap_or(true),
                "{runtime}/{}: {result}",
                inv.file
            );
            if inv.plugin == "bridge" {
                // containerd maps ips[].interface to the sandbox's interface.
                let idx = result["ips"][0]["interface"].as_u64().unwrap() as usize;
                assert_eq!(result["interfaces"][idx]["name"], "eth0");
                assert!(result["interfaces"][idx]["sandbox"].as_str().is_some());
                main_result = Some(result);
            }
        }
    }
    // Everything the sequence made, it also removed.
    let veths = crate::podnet_veths(&node);
    assert!(veths.is_empty(), "{runtime}: veths left {veths:?}");
    let (_, table, _) = node.exec("nft", &["list", "table", "inet", "podnet_cni"]);
    assert!(
        !table.contains("dnat"),
        "{runtime}: hostPort rules left: {table}"
    );
    for entry in walk(data.path()) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("state.") && name.ends_with(".json") {
            let state: Value =
                serde_json::from_str(&std::fs::read_to_string(&entry).unwrap()).unwrap();
            assert!(
                !state.to_string().contains("\"ip\""),
                "{runtime}: addresses left in {}: {state}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[test]
fn podman_invocations_replay_successfully() {
    replay("podman");
}

#[test]
fn containerd_ctr_invocations_replay_successfully() {
    replay("ctr");
}

#[test]
fn containerd_cri_invocations_replay_successfully() {
    replay("cri");
}
