//! The agent's health and metrics endpoint: `GET /healthz` and `GET /metrics` (Prometheus text
//! format), on its node's localhost like kube-proxy's `:10256`/`:10249`; and
//! `GET /policy/programmed?ip=ADDR`: 200 with the pod's `namespace/name` once the network
//! policy ruleset in the kernel accounts for the local pod with that address, else 404 (the
//! ADD of podnet-cni waits for it, so a pod's containers never start unprotected); and
//! `POST /policy/attach?namespace=NS&name=NAME&ip=ADDR[&ip=ADDR]`: podnet-cni's report of a new
//! pod's addresses, before the API has them.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::policy::{Attachments, Programmed};

/// How long after the last successful sync the agent still reports healthy.
const HEALTHY_FOR: Duration = Duration::from_secs(60);

/// Labels of the sync counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// `ok` or `error`.
    pub result: String,
}

/// The agent's metrics, shared between the sync loop and the endpoint.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Syncs by result.
    pub syncs: Family<SyncLabels, Counter>,
    /// How long a sync took.
    pub sync_duration: Histogram,
    /// Routes to other nodes' pod CIDRs that the agent maintains.
    pub routes: Gauge,
    /// Other nodes known.
    pub peers: Gauge,
    /// kube-proxy's `sync_proxy_rules_duration_seconds`: how long a service rules sync took.
    proxy_sync_duration: Histogram,
    /// kube-proxy's `sync_proxy_rules_last_timestamp_seconds`: when rules were last synced.
    proxy_last_sync: Gauge<f64, AtomicU64>,
    /// kube-proxy's `network_programming_duration_seconds`: from an endpoint change to its
    /// rules being in the kernel.
    network_programming: Histogram,
    /// The local pods whose network policy is in the kernel (kept by the policy enforcer).
    pub programmed: Programmed,
    /// Pods podnet-cni attached, waiting for their policy (`POST /policy/attach`).
    pub attachments: Attachments,
    /// How long compiling, rendering and applying a changed policy table took.
    pub policy_apply_duration: Histogram,
    /// Local pods the policy table accounts for.
    pub policy_pods: Gauge,
    last_ok_unix: AtomicI64,
    requests: AtomicU64,
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Arc<Self> {
        // No common prefix: kube-proxy's metrics keep kube-proxy's names.
        let mut registry = Registry::default();
        let syncs = Family::<SyncLabels, Counter>::default();
        let sync_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let routes = Gauge::default();
        let peers = Gauge::default();
        registry.register(
            "podnet_agent_syncs",
            "Syncs of the node's network, by result",
            syncs.clone(),
        );
        registry.register(
            "podnet_agent_sync_duration_seconds",
            "How long a sync of the node's network took",
            sync_duration.clone(),
        );
        registry.register(
            "podnet_agent_routes",
            "Routes to other nodes' pod CIDRs the agent maintains",
            routes.clone(),
        );
        registry.register(
            "podnet_agent_peers",
            "Other nodes the agent routes to",
            peers.clone(),
        );
        let proxy_sync_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let proxy_last_sync = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            proxy_sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            proxy_last_sync.clone(),
        );
        let network_programming = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            network_programming.clone(),
        );
        let policy_apply_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let policy_pods = Gauge::default();
        registry.register(
            "podnet_agent_policy_apply_duration_seconds",
            "How long compiling and applying a changed network policy table took",
            policy_apply_duration.clone(),
        );
        registry.register(
            "podnet_agent_policy_pods",
            "Local pods the network policy table accounts for",
            policy_pods.clone(),
        );
        Arc::new(Self {
            registry: Mutex::new(registry),
            syncs,
            sync_duration,
            routes,
            peers,
            proxy_sync_duration,
            proxy_last_sync,
            network_programming,
            programmed: Programmed::default(),
            attachments: Attachments::default(),
            policy_apply_duration,
            policy_pods,
            last_ok_unix: AtomicI64::new(0),
            requests: AtomicU64::new(0),
        })
    }

    /// Records a sync's outcome.
    pub fn record_sync(&self, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" }.to_owned();
        self.syncs.get_or_create(&SyncLabels { result }).inc();
        self.sync_duration.observe(took.as_secs_f64());
        if ok {
            self.last_ok_unix.store(unix_now(), Ordering::Relaxed);
        }
    }

    /// Records a successful service rules sync (kube-proxy's metrics).
    pub fn record_proxy_sync(&self, took: Duration, at_unix: f64) {
        self.proxy_sync_duration.observe(took.as_secs_f64());
        self.proxy_last_sync.set(at_unix);
    }

    /// Records how long an endpoint change took to reach the kernel.
    pub fn record_network_programming(&self, seconds: f64) {
        self.network_programming.observe(seconds);
    }

    /// Healthy while the last successful sync is recent.
    pub fn healthy(&self) -> bool {
        let last = self.last_ok_unix.load(Ordering::Relaxed);
        last > 0 && unix_now() - last <= HEALTHY_FOR.as_secs() as i64
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Serves `/healthz` and `/metrics` on `addr` from a background thread; returns the bound
/// address.
pub fn spawn(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, &metrics);
        }
    });
    Ok(bound)
}

fn answer(stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    metrics.requests.fetch_add(1, Ordering::Relaxed);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Read the headers too: closing with unread bytes makes the kernel reset the connection,
    // and the client could lose the answer.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, content_type, body) = match path {
        "/healthz" if metrics.healthy() => ("200 OK", "text/plain", "ok\n".to_owned()),
        "/healthz" => (
            "503 Service Unavailable",
            "text/plain",
            "no successful sync yet\n".to_owned(),
        ),
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/policy/programmed" => programmed(metrics, query),
        "/policy/attach" if request_line.starts_with("POST ") => attach(metrics, query),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `POST /policy/attach?namespace=NS&name=NAME&ip=ADDR…`: records a pod's addresses.
fn attach(metrics: &Metrics, query: &str) -> (&'static str, &'static str, String) {
    let mut namespace = None;
    let mut name = None;
    let mut ips = Vec::new();
    for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        match key {
            "namespace" => namespace = Some(value),
            "name" => name = Some(value),
            "ip" => match value.parse() {
                Ok(ip) => ips.push(ip),
                Err(_) => {
                    return (
                        "400 Bad Request",
                        "text/plain",
                        format!("ip: {value:?} is not an IP address\n"),
                    );
                }
            },
            _ => {}
        }
    }
    let (Some(namespace), Some(name)) = (
        namespace.filter(|n| !n.is_empty()),
        name.filter(|n| !n.is_empty()),
    ) else {
        return (
            "400 Bad Request",
            "text/plain",
            "expected ?namespace=NS&name=NAME&ip=ADDRESS\n".to_owned(),
        );
    };
    if ips.is_empty() {
        return (
            "400 Bad Request",
            "text/plain",
            "expected at least one ip=ADDRESS\n".to_owned(),
        );
    }
    if metrics.attachments.attach(namespace, name, ips) {
        ("202 Accepted", "text/plain", "attached\n".to_owned())
    } else {
        (
            "503 Service Unavailable",
            "text/plain",
            "too many pods waiting for their policy\n".to_owned(),
        )
    }
}

/// `/policy/programmed?ip=ADDR`: whether the policy in the kernel accounts for that pod.
fn programmed(metrics: &Metrics, query: &str) -> (&'static str, &'static str, String) {
    let ip = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("ip="))
        .and_then(|v| v.parse().ok());
    match ip.map(|ip| metrics.programmed.pod(ip)) {
        None => (
            "400 Bad Request",
            "text/plain",
            "expected ?ip=ADDRESS\n".to_owned(),
        ),
        Some(Some(pod)) => ("200 OK", "text/plain", format!("{pod}\n")),
        Some(None) => (
            "404 Not Found",
            "text/plain",
            "no policy programmed for that address yet\n".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn healthz_follows_syncs_and_metrics_are_prometheus_text() {
        let metrics = Metrics::new();
        let addr = spawn("127.0.0.1:0".parse().unwrap(), metrics.clone()).unwrap();
        assert!(get(addr, "/healthz").starts_with("HTTP/1.1 503"));
        metrics.record_sync(true, Duration::from_millis(3));
        metrics.routes.set(2);
        assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200"));
        let text = get(addr, "/metrics");
        assert!(
            text.contains("podnet_agent_syncs_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("podnet_agent_routes 2"), "{text}");
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn policy_programmed_answers_for_published_pods_only() {
        let metrics = Metrics::new();
        let addr = spawn("127.0.0.1:0".parse().unwrap(), metrics.clone()).unwrap();
        let ask = |q: &str| get(addr, &format!("/policy/programmed{q}"));
        assert!(ask("?ip=10.244.1.5").starts_with("HTTP/1.1 404"));
        assert!(ask("?ip=nope").starts_with("HTTP/1.1 400"));
        assert!(ask("").starts_with("HTTP/1.1 400"));
        metrics.programmed.set(std::collections::BTreeMap::from([(
            "10.244.1.5".parse().unwrap(),
            "x/a".to_owned(),
        )]));
        let answer = ask("?ip=10.244.1.5");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nx/a\n"), "{answer}");
    }
}
