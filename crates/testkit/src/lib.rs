//! Throwaway network namespaces for kernel tests: a fake node, pods, all removed on drop.
//!
//! Nothing a test does may touch the machine's own network namespace. A test makes a [`Netns`]
//! for its "node" and one per "pod", runs the code under test inside them (a closure with
//! [`Netns::run`], a process with [`Netns::command_output`]), and lets them drop: dropping removes
//! the namespace, and with it every link, address, route and nft table made inside — also when the
//! test panics, because drops run during unwinding. Namespaces left by a killed test run are swept
//! the next time a test creates one (their names carry the pid of the process that made them).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

pub use podnet_kernel::netns::NETNS_RUN_DIR;

/// Prefix of every namespace the test kit makes: `pnt-<pid>-<n>-<label>`.
const PREFIX: &str = "pnt-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace that exists for as long as this value does.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    file: File,
}

impl Netns {
    /// Creates a fresh, empty namespace with `lo` up. `label` (a few letters) makes its name readable.
    ///
    /// Panics if the namespace cannot be made: a kernel test cannot run without one.
    pub fn new(label: &str) -> Netns {
        sweep_stale();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{label}", std::process::id());
        let path = podnet_kernel::netns::create_named(&name)
            .unwrap_or_else(|e| panic!("creating test netns {name}: {e} (kernel tests need root)"));
        let file = File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        let ns = Netns { name, path, file };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name under `/run/netns` (usable with `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's path, as a runtime passes it in `CNI_NETNS`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An open handle to the namespace.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        podnet_kernel::netns::run_in(&self.file, f)
            .unwrap_or_else(|e| panic!("entering netns {}: {e}", self.name))
    }

    /// Runs a command inside this namespace (it inherits the namespace of the thread that forks
    /// it) and returns its output, feeding `stdin` if given.
    pub fn command_output(&self, cmd: &mut Command, stdin: Option<&[u8]>) -> io::Result<Output> {
        self.run(|| {
            cmd.stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            let mut child = cmd.spawn()?;
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(input)?;
            }
            child.wait_with_output()
        })
    }

    /// Runs a program with arguments inside this namespace; returns (success, stdout, stderr).
    pub fn exec(&self, program: &str, args: &[&str]) -> (bool, String, String) {
        let out = self
            .command_output(Command::new(program).args(args), None)
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", self.name));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `ip ARGS` inside this namespace and returns its stdout; panics if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.exec("ip", args);
        assert!(ok, "ip {} in {} failed: {err}", args.join(" "), self.name);
        out
    }

    /// `ip -j ARGS` parsed as JSON.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let out = self.ip(&full);
        serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out })
            .unwrap_or_else(|e| panic!("ip -j {} printed invalid JSON: {e}: {out}", args.join(" ")))
    }

    /// Names of the links in this namespace.
    pub fn link_names(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .map(|links| {
                links
                    .iter()
                    .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The addresses (`ip/prefix`) on a link in this namespace; empty if the link does not exist.
    pub fn addresses(&self, link: &str) -> Vec<String> {
        let (ok, out, _) = self.exec("ip", &["-j", "addr", "show", "dev", link]);
        if !ok {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["scope"] != "link")
            .filter_map(|a| {
                Some(format!(
                    "{}/{}",
                    a["local"].as_str()?,
                    a["prefixlen"].as_u64()?
                ))
            })
            .collect()
    }

    /// Pings `target` once (up to `tries` attempts, one second each); true if it answered.
    pub fn ping(&self, target: &str, tries: u32) -> bool {
        (0..tries).any(|_| self.exec("ping", &["-c1", "-W1", "-n", target]).0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = podnet_kernel::netns::delete_named(&self.name) {
            eprintln!("warning: removing test netns {}: {e}", self.name);
        }
    }
}

/// Removes namespaces left by test processes that no longer run (killed before their drops ran).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = podnet_kernel::netns::delete_named(&name);
        }
    }
}

/// What one plugin invocation returned.
#[derive(Debug)]
pub struct PluginOutput {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output (the result or the error JSON).
    pub stdout: String,
    /// Standard error (logs).
    pub stderr: String,
    /// From spawning the plugin to its exit, as the runtime waits for it.
    pub took: std::time::Duration,
}

impl PluginOutput {
    /// Standard output parsed as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// The CNI error code in the error JSON, if the plugin failed with one.
    pub fn error_code(&self) -> Option<u64> {
        if self.code == 0 {
            None
        } else {
            self.json()["code"].as_u64()
        }
    }
}

/// Runs a CNI plugin binary the way a runtime does: inside `node`, with exactly the given `CNI_*`
/// environment (nothing inherited but `PATH`), the config on stdin.
pub fn run_plugin(plugin: &Path, node: &Netns, env: &[(&str, &str)], stdin: &str) -> PluginOutput {
    let mut cmd = Command::new(plugin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (out, took) = node
        .run(|| {
            let start = Instant::now();
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut pipe) = child.stdin.take() {
                pipe.write_all(stdin.as_bytes())?;
            }
            let out = child.wait_with_output()?;
            io::Result::Ok((out, start.elapsed()))
        })
        .unwrap_or_else(|e| panic!("running {}: {e}", plugin.display()));
    PluginOutput {
        took,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A scratch directory (for IPAM stores) removed on drop.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("podnet-test-")
        .tempdir()
        .unwrap_or_else(|e| panic!("tempdir: {e}"))
}
