//! Lab end-to-end tests: real labs (nodes, pods, agents, kubelets) built by the `podnet`
//! binary, real traffic between pods, nodes and the outside host. One test binary, one module
//! per concern; every lab is named after its test and torn down on drop, also on panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends;
mod bad_input;
mod dns;
mod lifecycle;
mod policy;
mod services;
mod services_churn;
mod services_control;
mod services_external;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use podnet_kernel::netns;

/// The `podnet` binary under test; `podnet-cni` must sit next to it (the workspace build puts
/// both in target/<profile>/).
pub fn podnet() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_podnet"));
    let cni = bin.with_file_name("podnet-cni");
    assert!(
        cni.exists(),
        "{} is missing: build it with `cargo build -p podnet-cni` (scripts/test builds the workspace)",
        cni.display()
    );
    bin
}

/// A lab for one test, removed on drop.
pub struct TestLab {
    pub name: String,
}

impl TestLab {
    /// `podnet lab up` with a name unique to this test run.
    pub fn up(tag: &str, nodes: u32, backend: &str) -> TestLab {
        let name = format!("t{}-{tag}", std::process::id() % 100_000);
        let lab = TestLab { name };
        let out = lab.podnet(&["up", "--nodes", &nodes.to_string(), "--backend", backend]);
        assert!(out.status.success(), "lab up failed: {}", text(&out));
        lab
    }

    /// Runs `podnet lab --lab NAME ARGS`.
    pub fn podnet(&self, args: &[&str]) -> Output {
        Command::new(podnet())
            .args(["lab", "--lab", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running podnet: {e}"))
    }

    /// `lab apply -f -` with `manifest`.
    pub fn apply(&self, manifest: &str) -> Output {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, manifest).unwrap();
        self.podnet(&["apply", "-f", path.to_str().unwrap()])
    }

    /// Waits until `count` pods outside `kube-system` are Running; returns `(namespace/name, node, ip)` of each.
    pub fn running_pods(&self, count: usize) -> Vec<(String, String, String)> {
        for _ in 0..300 {
            let out = self.podnet(&["get", "pods", "-A", "-o", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let items = v["items"].as_array().cloned().unwrap_or_default();
            let running: Vec<_> = items
                .iter()
                .filter(|p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string())
                // The cluster's own pods (DNS) are not the test's.
                .filter(|p| p["metadata"]["namespace"] != "kube-system")
                .map(|p| {
                    (
                        format!(
                            "{}/{}",
                            p["metadata"]["namespace"].as_str().unwrap_or_default(),
                            p["metadata"]["name"].as_str().unwrap_or_default()
                        ),
                        p["spec"]["nodeName"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        p["status"]["podIP"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            if running.len() >= count {
                return running;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "pods not running after 30s:\n{}",
            text(&self.podnet(&["get", "pods", "-A", "-o", "wide"]))
        );
    }

    /// The network namespace of a lab role or pod, open.
    pub fn netns(&self, role: &str) -> std::fs::File {
        netns::open(&Path::new(netns::NETNS_RUN_DIR).join(format!("podnet-{}-{role}", self.name)))
            .unwrap_or_else(|e| panic!("netns {role}: {e}"))
    }

    /// A pod's network namespace (`namespace/name`).
    pub fn pod_netns(&self, pod: &str) -> std::fs::File {
        let (ns, name) = pod.split_once('/').unwrap();
        self.netns(&format!("pod-{ns}-{name}"))
    }

    /// `ip netns exec <role netns> ARGS`.
    pub fn exec_in(&self, role: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("podnet-{}-{role}", self.name)])
            .args(args)
            .output()
            .unwrap()
    }
}

impl TestLab {
    /// Polls `f` until it returns `Ok`, for up to `secs` seconds; panics with its last error
    /// and the lab's daemon logs.
    pub fn eventually<T>(
        &self,
        what: &str,
        secs: u64,
        mut f: impl FnMut() -> Result<T, String>,
    ) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match f() {
                Ok(v) => return v,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("{what}: {e}\n{}", self.daemon_logs())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The last lines of the lab's controller-manager, kubelet and agent logs, for failure
    /// messages.
    pub fn daemon_logs(&self) -> String {
        let root = PathBuf::from(format!("/run/podnet/labs/{}", self.name));
        let mut files = vec![root.join("controller-manager.log")];
        for node in std::fs::read_dir(root.join("nodes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            files.push(node.path().join("kubelet.log"));
            files.push(node.path().join("agent.log"));
        }
        let mut out = String::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", file.display()));
            out.push_str(&lines[lines.len().saturating_sub(40)..].join("\n"));
            out.push('\n');
        }
        out
    }

    /// `lab get ARGS -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.podnet(&all);
        assert!(out.status.success(), "get {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let out = self.podnet(&["down"]);
        if !out.status.success() {
            eprintln!("lab down failed: {}", text(&out));
        }
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An HTTP GET from inside `ns`; the body, or the error (see [`connect`]).
pub fn http_get(ns: &std::fs::File, addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = connect(ns, addr)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(out))
}

/// A TCP connection opened from inside `ns` (it stays in that namespace). A refused
/// connection is retried for up to 3 s: a pod is Running as soon as its processes start, before
/// they listen (readiness probes are what tell the difference).
pub fn connect(ns: &std::fs::File, addr: SocketAddr) -> Result<TcpStream, String> {
    netns::run_in(ns, || {
        let mut tries = 0;
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                Ok(s) => return Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && tries < 30 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .map_err(|e| e.to_string())?
}

/// A UDP request from inside `ns`; the answer, or the error.
pub fn udp_ask(ns: &std::fs::File, addr: SocketAddr, msg: &str) -> Result<String, String> {
    netns::run_in(ns, || -> Result<String, String> {
        let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            s.send_to(msg.as_bytes(), addr).map_err(|e| e.to_string())?;
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        Err(format!("no UDP answer from {addr}"))
    })
    .map_err(|e| e.to_string())?
}
