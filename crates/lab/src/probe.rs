//! Readiness probes, as kubelet's prober runs them: one thread per probed container, probing
//! from the node (the kubelet's namespace) to the pod's IP, or running a command inside the pod.
//!
//! - `httpGet`: `GET <path>` to `host` (default: the pod IP) and a port given by number or by
//!   the name of one of the container's ports; a status from 200 to 399 succeeds. Only plain
//!   HTTP: an `HTTPS` probe fails, saying so.
//! - `tcpSocket`: a TCP connection opens.
//! - `exec`: the command, run in the pod as a container would run
//!   (`ip netns exec <pod netns> podnet lab container-init …`), exits 0.
//! - `grpc`: the lab has no gRPC client; it checks that the port accepts a TCP connection.
//!
//! Timing is the manifest's, in Kubernetes' units and defaults: first probe after
//! `initialDelaySeconds` (0), then every `periodSeconds` (10), each allowed `timeoutSeconds` (1).
//! A container starts unready; `successThreshold` (1) successes in a row make it ready,
//! `failureThreshold` (3) failures in a row unready again.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use tracing::info;

/// How often a sleeping prober checks whether it should stop.
const TICK: Duration = Duration::from_millis(50);

/// Where a probe reaches its container.
#[derive(Debug, Clone)]
pub struct Target {
    /// `namespace/pod/container`, for logs.
    pub name: String,
    /// The pod's IP (the default host of network probes).
    pub pod_ip: Option<String>,
    /// The pod's network namespace (for exec probes).
    pub netns: String,
    /// The `podnet` binary (for exec probes, through `container-init`).
    pub podnet: PathBuf,
    /// The pod's hostname.
    pub hostname: String,
    /// The container's environment (exec probes run with it).
    pub env: Vec<(String, String)>,
}

/// A running readiness prober; dropping it stops its thread.
#[derive(Debug)]
pub struct Prober {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    ready: AtomicBool,
    stop: AtomicBool,
    /// When readiness last changed, in seconds since the epoch.
    since: AtomicI64,
}

/// What one probe does.
#[derive(Debug, Clone)]
enum Action {
    Http {
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Exec {
        argv: Vec<String>,
    },
    /// A probe that cannot work, with the reason it fails.
    Broken(String),
}

/// The probe's timing, from the manifest with Kubernetes' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timing {
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

// === impl Prober ===

impl Prober {
    /// Starts probing `container` with `probe`. `changed` is bumped whenever readiness flips, so
    /// the kubelet knows to write the pod's status.
    pub fn start(
        probe: &Probe,
        container: &Container,
        target: Target,
        changed: Arc<AtomicU64>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            ready: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            since: AtomicI64::new(podnet_store::now().as_second()),
        });
        let action = action(probe, container, &target);
        let timing = timing(probe);
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("probe {}", target.name))
            .spawn(move || run(&action, timing, &target, &thread_shared, &changed))?;
        Ok(Self { shared })
    }

    /// Whether the container is ready by its probe.
    pub fn ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
    }

    /// When readiness last changed.
    pub fn since(&self) -> Timestamp {
        Timestamp::from_second(self.shared.since.load(Ordering::Relaxed))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// The prober thread: probe, count, flip readiness, sleep; until stopped.
fn run(action: &Action, timing: Timing, target: &Target, shared: &Shared, changed: &AtomicU64) {
    let stopped = || shared.stop.load(Ordering::Relaxed);
    if !sleep_unless(timing.initial_delay, &stopped) {
        return;
    }
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut reported_failure = false;
    loop {
        let started = Instant::now();
        let result = check(action, timing.timeout, target);
        if stopped() {
            return;
        }
        let ready = shared.ready.load(Ordering::Relaxed);
        match result {
            Ok(()) => {
                successes += 1;
                failures = 0;
                reported_failure = false;
                if !ready && successes >= timing.success_threshold {
                    flip(shared, changed, true);
                    info!(container = %target.name, "readiness probe succeeded: ready");
                }
            }
            Err(why) => {
                failures += 1;
                successes = 0;
                if ready && failures >= timing.failure_threshold {
                    flip(shared, changed, false);
                    info!(container = %target.name, %why, "readiness probe failed: not ready");
                } else if !reported_failure {
                    info!(container = %target.name, %why, "readiness probe failed");
                }
                reported_failure = true;
            }
        }
        if !sleep_unless(timing.period.saturating_sub(started.elapsed()), &stopped) {
            return;
        }
    }
}

fn flip(shared: &Shared, changed: &AtomicU64, ready: bool) {
    shared.ready.store(ready, Ordering::Relaxed);
    shared
        .since
        .store(podnet_store::now().as_second(), Ordering::Relaxed);
    changed.fetch_add(1, Ordering::Relaxed);
}

/// Sleeps `d`, waking early to return false if `stopped()` turns true.
fn sleep_unless(d: Duration, stopped: &dyn Fn() -> bool) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if stopped() {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(TICK));
    }
}

/// The probe's timing: the manifest's values, Kubernetes' defaults and minimums.
fn timing(probe: &Probe) -> Timing {
    let seconds = |v: Option<i32>, default: i32, min: i32| {
        Duration::from_secs(u64::try_from(v.unwrap_or(default).max(min)).unwrap_or(0))
    };
    let count =
        |v: Option<i32>, default: i32| u32::try_from(v.unwrap_or(default).max(1)).unwrap_or(1);
    Timing {
        initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
        period: seconds(probe.period_seconds, 10, 1),
        timeout: seconds(probe.timeout_seconds, 1, 1),
        success_threshold: count(probe.success_threshold, 1),
        failure_threshold: count(probe.failure_threshold, 3),
    }
}

/// What `probe` does for `container`, its ports and hosts resolved.
fn action(probe: &Probe, container: &Container, target: &Target) -> Action {
    let host = |h: Option<&String>| {
        h.filter(|h| !h.is_empty())
            .cloned()
            .or_else(|| target.pod_ip.clone())
            .unwrap_or_default()
    };
    if let Some(http) = &probe.http_get {
        if http
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
        {
            return Action::Broken("HTTPS probes are not supported by the lab's kubelet".into());
        }
        let port = match resolve_port(&http.port, container) {
            Ok(port) => port,
            Err(why) => return Action::Broken(why),
        };
        let path = http
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_default();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        return Action::Http {
            host: host(http.host.as_ref()),
            port,
            path,
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        return match resolve_port(&tcp.port, container) {
            Ok(port) => Action::Tcp {
                host: host(tcp.host.as_ref()),
                port,
            },
            Err(why) => Action::Broken(why),
        };
    }
    if let Some(grpc) = &probe.grpc {
        return match u16::try_from(grpc.port).ok().filter(|p| *p != 0) {
            Some(port) => Action::Tcp {
                host: host(None),
                port,
            },
            None => Action::Broken(format!("grpc port {} is not a port number", grpc.port)),
        };
    }
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Action::Broken("exec probe has no command".into());
        }
        let mut argv: Vec<String> = ["ip", "netns", "exec", &target.netns]
            .map(String::from)
            .to_vec();
        argv.push(target.podnet.display().to_string());
        argv.extend(
            [
                "lab",
                "container-init",
                "--hostname",
                &target.hostname,
                "--",
            ]
            .map(String::from),
        );
        argv.extend(command);
        return Action::Exec { argv };
    }
    Action::Broken("the probe has no handler (httpGet, tcpSocket, exec or grpc)".into())
}

/// A probe's port: a number, or the name of one of the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| {
                    format!(
                        "couldn't find port {name:?} in container {}",
                        container.name
                    )
                })?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// Runs one probe; the reason it failed, if it did.
fn check(action: &Action, timeout: Duration, target: &Target) -> Result<(), String> {
    match action {
        Action::Http {
            host,
            port,
            path,
            headers,
        } => http_get(host, *port, path, headers, timeout),
        Action::Tcp { host, port } => connect(host, *port, timeout).map(drop),
        Action::Exec { argv } => exec(argv, &target.env, timeout),
        Action::Broken(why) => Err(why.clone()),
    }
}

fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("dial tcp {addr}: {e}"))
}

/// kubelet's HTTP probe: one GET, success on 2xx and 3xx.
fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(host, port, timeout)?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .and_then(|()| stream.set_write_timeout(Some(left)))
        .map_err(|e| e.to_string())?;
    let host_header = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or_else(|| format!("{host}:{port}"), |(_, v)| v.clone());
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("reading the response: {e}"))?;
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {:?}", line.trim_end()))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Runs the exec probe's command line; success is exit status 0 within `timeout`.
fn exec(argv: &[String], env: &[(String, String)], timeout: Duration) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("no command")?;
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .process_group(0)
        .spawn()
        .map_err(|e| format!("running {program}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("command failed: {status}")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.wait();
                return Err(format!("command timed out after {timeout:?}"));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
