//! CNI ADD/DEL latency: podnet-cni against the reference `bridge` + `host-local` plugins
//! (Debian's containernetworking-plugins), same machine, same run, interleaved so drift hits
//! both alike. Prints median and p95 of 50 sequential ADDs and DELs, the wall time of 20
//! concurrent ADDs and DELs (the median of 5 such batches), and the ratios podnet / reference.
//!
//! Usage: `cni-latency [PODNET_CNI] [REFERENCE_DIR]` (defaults: target/release/podnet-cni,
//! /usr/lib/cni). Needs root; everything happens in throwaway namespaces.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use podnet_testkit::{Netns, run_plugin, scratch_dir};
use serde_json::json;

const SEQUENTIAL: usize = 50;
const CONCURRENT: usize = 20;
/// Rounds of concurrent ADDs and DELs; the table gives each plugin's median batch.
const BATCHES: usize = 5;

struct Plugin {
    label: &'static str,
    binary: PathBuf,
    cni_path: String,
    node: Netns,
    conf: String,
    _data: tempfile::TempDir,
}

impl Plugin {
    fn new(
        label: &'static str,
        binary: PathBuf,
        cni_path: &str,
        plugin_type: &str,
        subnet: &str,
    ) -> Plugin {
        let data = scratch_dir();
        // The same config for both: a node bridge with the gateway on it, host-local IPAM.
        let conf = json!({
            "cniVersion": "1.0.0",
            "name": "benchnet",
            "type": plugin_type,
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": false,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": data.path()}
        })
        .to_string();
        Plugin {
            label,
            binary,
            cni_path: cni_path.to_owned(),
            node: Netns::new(label),
            conf,
            _data: data,
        }
    }

    /// Waits (untimed, up to 5 s) until the veths podnet-cni's DEL retired are deleted, so the
    /// kernel work its detached reaper does never lands inside the next measured call of either
    /// plugin.
    fn settle(&self) {
        for _ in 0..5000 {
            if !reaper_running() && self.retired_links_gone() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether no link is left in podnet-cni's retired group (always, for the reference).
    fn retired_links_gone(&self) -> bool {
        let group = podnet_cni::plugin::names::RETIRED_GROUP.to_string();
        let links = self.node.ip_json(&["link", "show", "group", &group]);
        // `ip -j` prints an empty object for every link the group filter leaves out.
        links
            .as_array()
            .is_none_or(|a| a.iter().all(|l| l.get("ifname").is_none()))
    }

    /// Runs one command for `cid` in `pod` and returns how long the plugin process took.
    fn call(&self, command: &str, cid: &str, pod: &Netns) -> Result<Duration> {
        let netns = pod.path().display().to_string();
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", self.cni_path.as_str()),
        ];
        let out = run_plugin(&self.binary, &self.node, &env, &self.conf);
        if out.code != 0 {
            bail!(
                "{} {command} {cid} failed: {} {}",
                self.label,
                out.stdout,
                out.stderr
            );
        }
        Ok(out.took)
    }
}

/// True while a `podnet-cni --reap-links` process exists (its kernel work may outlast the link's
/// disappearance from a dump).
fn reaper_running() -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        std::fs::read(p.path().join("cmdline"))
            .map(|c| c.windows(12).any(|w| w == b"--reap-links"))
            .unwrap_or(false)
    })
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn concurrent(plugin: &Plugin, command: &str, pods: &[Netns]) -> Result<Duration> {
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| s.spawn(move || plugin.call(command, &format!("conc{i}"), p)))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("thread panicked"))?
                .map(drop)
        })
    })?;
    Ok(start.elapsed())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let ours = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/podnet-cni"));
    let reference_dir = args.next().unwrap_or_else(|| "/usr/lib/cni".to_owned());
    let reference = Path::new(&reference_dir).join("bridge");
    for p in [&ours, &reference] {
        if !p.exists() {
            bail!(
                "{} not found (build with `cargo build --release`, install containernetworking-plugins)",
                p.display()
            );
        }
    }
    let ours = ours.canonicalize().context("podnet-cni path")?;
    let plugins = [
        Plugin::new(
            "reference",
            reference,
            &reference_dir,
            "bridge",
            "10.201.0.0/24",
        ),
        Plugin::new(
            "podnet",
            ours.clone(),
            ours.parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
                .as_str(),
            "podnet-cni",
            "10.202.0.0/24",
        ),
    ];

    // Sequential: interleaved, one pod namespace per plugin and round.
    let pods: Vec<[Netns; 2]> = (0..SEQUENTIAL)
        .map(|i| [Netns::new(&format!("r{i}")), Netns::new(&format!("p{i}"))])
        .collect();
    let mut add = [Vec::new(), Vec::new()];
    let mut del = [Vec::new(), Vec::new()];
    for (i, pair) in pods.iter().enumerate() {
        for (k, plugin) in plugins.iter().enumerate() {
            add[k].push(plugin.call("ADD", &format!("seq{i}"), &pair[k])?);
        }
    }
    for (i, pair) in pods.iter().enumerate() {
        for (k, plugin) in plugins.iter().enumerate() {
            del[k].push(plugin.call("DEL", &format!("seq{i}"), &pair[k])?);
            plugin.settle();
        }
    }
    drop(pods);

    // Concurrent batches: one is a single sample that the machine's drift moves by ±20%, so
    // several rounds, the plugins taking turns, and the median batch of each.
    let mut batches: [[Vec<Duration>; 2]; 2] = Default::default();
    for round in 0..BATCHES {
        for (k, plugin) in plugins.iter().enumerate() {
            let pods: Vec<Netns> = (0..CONCURRENT)
                .map(|i| Netns::new(&format!("c{round}-{i}")))
                .collect();
            batches[k][0].push(concurrent(plugin, "ADD", &pods)?);
            batches[k][1].push(concurrent(plugin, "DEL", &pods)?);
            plugin.settle();
        }
    }
    let [[mut ref_add, mut ref_del], [mut our_add, mut our_del]] = batches;

    println!(
        "CNI latency, {SEQUENTIAL} sequential and {CONCURRENT} concurrent pods (median of {BATCHES} batches), same node config"
    );
    println!(
        "(reference: {reference_dir}/bridge + host-local; podnet: {})\n",
        ours.display()
    );
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "", "reference", "podnet", "ratio"
    );
    let mut rows = Vec::new();
    for (name, which, p) in [
        ("ADD median (ms)", 0, 0.5),
        ("ADD p95 (ms)", 0, 0.95),
        ("DEL median (ms)", 1, 0.5),
        ("DEL p95 (ms)", 1, 0.95),
    ] {
        let samples = if which == 0 { &mut add } else { &mut del };
        let r = ms(percentile(&mut samples[0], p));
        let o = ms(percentile(&mut samples[1], p));
        rows.push((name.to_owned(), r, o));
    }
    rows.push((
        format!("{CONCURRENT} concurrent ADDs (ms)"),
        ms(percentile(&mut ref_add, 0.5)),
        ms(percentile(&mut our_add, 0.5)),
    ));
    rows.push((
        format!("{CONCURRENT} concurrent DELs (ms)"),
        ms(percentile(&mut ref_del, 0.5)),
        ms(percentile(&mut our_del, 0.5)),
    ));
    for (name, r, o) in rows {
        println!("{name:<28} {r:>12.2} {o:>12.2} {:>7.3}x", o / r);
    }
    println!("\ngoal: ADD ≤ 0.25x and DEL ≤ 0.20x of the reference");
    Ok(())
}
