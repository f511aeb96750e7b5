//! Kernel tests for podnet-cni: the real binary, run the way a runtime runs it, inside a
//! throwaway "node" namespace, wiring throwaway "pod" namespaces; asserted on `ip -j` output and
//! on real traffic. Needs root. All tests compile into this one binary (faster to link).

// Test helpers panic on the unexpected by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod commands;
mod samples;
mod stress;
mod traffic;

use std::path::{Path, PathBuf};

use podnet_testkit::{Netns, PluginOutput, run_plugin, scratch_dir};
use serde_json::{Value, json};

/// The plugin under test.
pub fn plugin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_podnet-cni"))
}

/// A node namespace, an IPAM data directory, and a network config to call the plugin with.
pub struct Node {
    pub ns: Netns,
    pub data: tempfile::TempDir,
    pub conf: Value,
}

impl Node {
    /// A node whose config is a reference bridge config (gateway, default route, hairpin) on
    /// `subnet`, with its IPAM store in a scratch directory.
    pub fn bridge(subnet: &str) -> Node {
        let data = scratch_dir();
        let conf = json!({
            "cniVersion": "1.1.0",
            "name": "testnet",
            "type": "podnet-cni",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": subnet }]],
                "dataDir": data.path(),
            }
        });
        Node {
            ns: Netns::new("node"),
            data,
            conf,
        }
    }

    /// Calls the plugin with `command` for `(cid, ifname)` in `netns` (None = empty `CNI_NETNS`).
    pub fn call_with(
        &self,
        command: &str,
        cid: &str,
        ifname: &str,
        netns: Option<&Path>,
        conf: &Value,
    ) -> PluginOutput {
        let netns = netns.map(|p| p.display().to_string()).unwrap_or_default();
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", ifname),
            // Where delegated IPAM plugins are found (Debian puts the reference ones in /usr/lib/cni).
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ];
        run_plugin(&plugin(), &self.ns, &env, &conf.to_string())
    }

    /// ADD with this node's config; panics unless it succeeds.
    pub fn add(&self, cid: &str, pod: &Netns) -> Value {
        let out = self.call_with("ADD", cid, "eth0", Some(pod.path()), &self.conf);
        assert_eq!(
            out.code, 0,
            "ADD {cid} failed: {} {}",
            out.stdout, out.stderr
        );
        out.json()
    }

    /// DEL with this node's config and `prevResult`; panics unless it succeeds.
    pub fn del(&self, cid: &str, pod: Option<&Netns>, prev: Option<&Value>) {
        let mut conf = self.conf.clone();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        let out = self.call_with("DEL", cid, "eth0", pod.map(Netns::path), &conf);
        assert_eq!(
            out.code, 0,
            "DEL {cid} failed: {} {}",
            out.stdout, out.stderr
        );
        assert!(out.stdout.trim().is_empty(), "DEL printed {}", out.stdout);
    }

    /// The addresses the IPAM store holds, as strings.
    pub fn allocated(&self) -> Vec<String> {
        let store = podnet_cni::ipam::Store::open(self.data.path(), "testnet").unwrap();
        let Some(path) = store.state_file().unwrap() else {
            return Vec::new();
        };
        let text = std::fs::read_to_string(path).unwrap();
        let state: Value = serde_json::from_str(&text).unwrap_or_default();
        let mut ips = Vec::new();
        collect_ips(&state, &mut ips);
        ips
    }

    /// Host-side veths in the node; see [`podnet_veths`].
    pub fn veths(&self) -> Vec<String> {
        podnet_veths(&self.ns)
    }

    /// The node's `podnet_cni` nft table as text (empty if none).
    pub fn nft_table(&self) -> String {
        let (_, out, _) = self
            .ns
            .exec("nft", &["list", "table", "inet", "podnet_cni"]);
        out
    }
}

/// podnet's host-side veths (`pn…`) in `node`, once the reaper a DEL started has deleted the
/// retired ones (those in the retired link group; waited for up to 5 s, and any still there are
/// returned too).
pub fn podnet_veths(node: &Netns) -> Vec<String> {
    for _ in 0..500 {
        if retired_links(node).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    node.link_names()
        .into_iter()
        .filter(|l| l.starts_with("pn"))
        .collect()
}

/// The links in podnet-cni's retired link group: taken out of service, waiting for the reaper.
pub fn retired_links(node: &Netns) -> Vec<String> {
    let group = podnet_cni::plugin::names::RETIRED_GROUP.to_string();
    // `ip -j` prints an empty object for every link the group filter leaves out.
    let links = node.ip_json(&["link", "show", "group", &group]);
    links
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn collect_ips(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "ip" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_owned());
                    }
                } else {
                    collect_ips(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_ips(v, out)),
        _ => {}
    }
}

/// The first address of an ADD result, without its prefix.
pub fn first_ip(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}
