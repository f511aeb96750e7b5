//! `podnet demo`: a node namespace, two pod namespaces, podnet-cni called exactly as a container
//! runtime calls it, and real pings between the pods.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use podnet_kernel::netns;

/// The node's CNI config: what a reference `bridge` config looks like with podnet-cni's type.
const CONFIG: &str = r#"{
  "cniVersion": "1.1.0",
  "name": "podnet-demo",
  "type": "podnet-cni",
  "bridge": "cni0",
  "isGateway": true,
  "isDefaultGateway": true,
  "hairpinMode": true,
  "mtu": 1500,
  "ipam": {
    "type": "host-local",
    "ranges": [[{ "subnet": "10.244.1.0/24" }], [{ "subnet": "fd00:10:244:1::/64" }]],
    "dataDir": "DATA_DIR"
  }
}"#;

/// The namespaces made by the demo; removed on drop, also on error.
struct Namespaces {
    names: Vec<String>,
    keep: bool,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for n in self.names.iter().rev() {
            let _ = netns::delete_named(n);
        }
    }
}

fn find_plugin(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let beside = std::env::current_exe()?.with_file_name("podnet-cni");
    for p in [beside, PathBuf::from("/opt/cni/bin/podnet-cni")] {
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "podnet-cni not found next to podnet or in /opt/cni/bin; build it with `cargo build --release --bins`"
    )
}

/// Runs `program args` inside the namespace at `ns` and returns stdout.
fn run_in(
    ns: &Path,
    program: &str,
    args: &[&str],
    stdin: Option<(&str, &[(&str, &str)])>,
) -> Result<(bool, String)> {
    let file = netns::open(ns).with_context(|| format!("opening {}", ns.display()))?;
    let out = netns::run_in(&file, || -> std::io::Result<_> {
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some((_, env)) = stdin {
            cmd.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(env.iter().copied());
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn()?;
        if let (Some((input, _)), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())?;
        }
        child.wait_with_output()
    })??;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    Ok((out.status.success(), text))
}

/// The `CNI_*` variables a runtime sets for `command` on the demo pod `cid` at `netns`.
fn cni_env<'a>(command: &'a str, cid: &'a str, netns: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// Runs the demo.
pub(crate) fn run(plugin: Option<PathBuf>, keep: bool) -> Result<()> {
    let plugin = find_plugin(plugin)?;
    let tag = std::process::id();
    let node = format!("podnet-demo-{tag}-node");
    let pods = [
        format!("podnet-demo-{tag}-web"),
        format!("podnet-demo-{tag}-client"),
    ];
    let mut made = Namespaces {
        names: Vec::new(),
        keep,
    };
    let data_dir = std::env::temp_dir().join(format!("podnet-demo-{tag}"));
    let config = CONFIG.replace("DATA_DIR", &data_dir.display().to_string());

    println!(
        "podnet demo: one node, two pods, wired by {}\n",
        plugin.display()
    );
    for name in std::iter::once(&node).chain(&pods) {
        netns::create_named(name)
            .with_context(|| format!("creating netns {name} (are you root?)"))?;
        made.names.push(name.clone());
    }
    let node_path = PathBuf::from(netns::NETNS_RUN_DIR).join(&node);
    println!(
        "1. network namespaces: node {node}, pods {} and {}",
        pods[0], pods[1]
    );
    println!(
        "2. the node's CNI config (a reference bridge config with type podnet-cni):\n{}",
        indent(&config)
    );

    // Runs podnet-cni in the node as a runtime does: the CNI_* environment, the config on stdin.
    let plugin_path = plugin.display().to_string();
    let call_plugin = |command: &str, cid: &str, pod_path: &str| {
        let env = cni_env(command, cid, pod_path);
        run_in(&node_path, &plugin_path, &[], Some((&config, &env)))
    };
    let mut ips = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let pod_path = format!("{}/{pod}", netns::NETNS_RUN_DIR);
        let cid = format!("demo{tag}pod{i}");
        let started = std::time::Instant::now();
        let (ok, out) = call_plugin("ADD", &cid, &pod_path)?;
        let took = started.elapsed();
        if !ok {
            bail!("podnet-cni ADD for {pod} failed:\n{out}");
        }
        let result: serde_json::Value =
            serde_json::from_str(&out).context("podnet-cni printed invalid JSON")?;
        println!(
            "3.{} ADD {pod} ({:.1} ms) → result:\n{}",
            i + 1,
            took.as_secs_f64() * 1e3,
            indent(&serde_json::to_string_pretty(&result)?)
        );
        let ip = result["ips"][0]["address"]
            .as_str()
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        ips.push(ip);
    }

    let pod0 = PathBuf::from(netns::NETNS_RUN_DIR).join(&pods[0]);
    let pod1 = PathBuf::from(netns::NETNS_RUN_DIR).join(&pods[1]);
    println!("4. inside {}: `ip -br addr` and `ip route`:", pods[0]);
    print!(
        "{}",
        indent(&run_in(&pod0, "ip", &["-br", "addr"], None)?.1)
    );
    print!("{}", indent(&run_in(&pod0, "ip", &["route"], None)?.1));
    println!("   on the node: `ip -br link` (the bridge and one veth per pod):");
    print!(
        "{}",
        indent(&run_in(&node_path, "ip", &["-br", "link"], None)?.1)
    );

    println!("5. traffic:");
    let checks = [
        (
            &pod1,
            ips[0].as_str(),
            "client → web (pod to pod, same node)",
        ),
        (
            &pod0,
            "10.244.1.1",
            "web → gateway (the node's bridge address)",
        ),
        (&pod1, "fd00:10:244:1::1", "client → gateway over IPv6"),
    ];
    let mut failed = 0;
    for (from, to, what) in checks {
        let (ok, _) = run_in(from, "ping", &["-c1", "-W2", "-n", to], None)?;
        println!("    {} {what}: ping {to}", if ok { "ok  " } else { "FAIL" });
        failed += usize::from(!ok);
    }

    for (i, pod) in pods.iter().enumerate() {
        let cid = format!("demo{tag}pod{i}");
        let pod_path = format!("{}/{pod}", netns::NETNS_RUN_DIR);
        if !keep {
            let (ok, out) = call_plugin("DEL", &cid, &pod_path)?;
            if !ok {
                bail!("podnet-cni DEL for {pod} failed:\n{out}");
            }
        }
    }
    if keep {
        println!(
            "\nkept: explore with `ip netns exec {node} ip link`; remove with `ip netns del` for each of {node} {} {}",
            pods[0], pods[1]
        );
    } else {
        println!("6. DEL for both pods, namespaces removed.");
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    if failed > 0 {
        bail!("{failed} connectivity check(s) failed");
    }
    Ok(())
}
