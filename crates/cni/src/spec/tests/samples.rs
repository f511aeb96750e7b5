//! The stdin and environment of every invocation captured from podman, ctr and containerd's CRI
//! path (`/work/shared/cni-samples`) must parse.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::spec::{Command, Env, NetConf, Protocol, requested_version, version_answer};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/cni-samples")
}

/// One captured invocation: its environment and its stdin line.
struct Sample {
    name: String,
    env: HashMap<String, String>,
    stdin: String,
}

fn load_samples() -> Vec<Sample> {
    let mut files = Vec::new();
    for runtime in ["podman", "ctr", "cri"] {
        let dir = samples_dir().join(runtime);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "log") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let env_at = lines.iter().position(|l| *l == "### env:").unwrap();
            let stdin_at = lines.iter().position(|l| *l == "### stdin:").unwrap();
            let env = lines[env_at + 1..stdin_at]
                .iter()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            Sample {
                name: path.display().to_string(),
                env,
                stdin: lines[stdin_at + 1].to_owned(),
            }
        })
        .collect()
}

#[test]
fn every_sample_environment_and_stdin_parses() {
    let samples = load_samples();
    assert!(samples.len() >= 25, "only {} samples found", samples.len());
    for s in &samples {
        let env = Env::from_lookup(|k| s.env.get(k).cloned())
            .unwrap_or_else(|e| panic!("{}: env: {e:?}", s.name));
        if env.command == Command::Version {
            let answer = version_answer(requested_version(s.stdin.as_bytes()).as_deref());
            assert_eq!(answer["cniVersion"], "1.0.0", "{}", s.name);
            continue;
        }
        let conf = NetConf::parse(s.stdin.as_bytes())
            .unwrap_or_else(|e| panic!("{}: stdin: {e:?}", s.name));
        assert!(!conf.name.is_empty());
        env.container_id().unwrap();
        env.ifname().unwrap();
        env.args.ips().unwrap();
    }
}

#[test]
fn cri_second_del_has_no_netns_and_no_prev_result() {
    let samples = load_samples();
    let s = samples
        .iter()
        .find(|s| s.name.ends_with("cri/11-DEL-host-local.log"))
        .unwrap();
    let env = Env::from_lookup(|k| s.env.get(k).cloned()).unwrap();
    assert_eq!(env.command, Command::Del);
    assert_eq!(env.netns, None);
    assert!(env.args.ignore_unknown());
    let conf = NetConf::parse(s.stdin.as_bytes()).unwrap();
    assert_eq!(conf.prev_result, None);
    assert_eq!(conf.ipam_type(), Some("host-local"));
}

#[test]
fn cri_portmap_sample_keeps_its_capitalised_port_mapping() {
    let samples = load_samples();
    let s = samples
        .iter()
        .find(|s| s.name.ends_with("cri/04-ADD-portmap.log"))
        .unwrap();
    let conf = NetConf::parse(s.stdin.as_bytes()).unwrap();
    let pm = &conf.runtime_config.port_mappings;
    assert_eq!(pm.len(), 1);
    assert_eq!((pm[0].host_port, pm[0].container_port), (18083, 80));
    assert_eq!(pm[0].protocol, Protocol::Tcp);
    assert_eq!(pm[0].host_ip, None);
    let prev = conf.prev_result.unwrap();
    assert_eq!(prev.ips[0].interface, Some(2));
    assert_eq!(prev.interfaces[2].name, "eth0");
}

#[test]
fn podman_bridge_sample_reads_the_bridge_options() {
    let samples = load_samples();
    let s = samples
        .iter()
        .find(|s| s.name.ends_with("podman/02-ADD-bridge.log"))
        .unwrap();
    let conf = NetConf::parse(s.stdin.as_bytes()).unwrap();
    assert_eq!(conf.bridge, "cntpodbr0");
    assert!(conf.hairpin_mode && conf.is_gateway && !conf.ip_masq);
    assert_eq!(conf.plugin_type, "bridge");
}
