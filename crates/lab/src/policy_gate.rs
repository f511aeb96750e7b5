//! No start-up leak: a new pod's containers start only once its node's agent has its
//! NetworkPolicy in the kernel.
//!
//! The agent learns of a pod's address from the store, so the kubelet first records it
//! (`status.podIP(s)` and `status.hostIP(s)`, phase `Pending`) right after CNI ADD, then asks
//! the agent on the node's localhost (`GET /policy/programmed?ip=…`) until the ruleset in the
//! kernel accounts for this pod at every address. An agent that does not answer in time (down,
//! restarting) does not hold the pod forever: after [`WAIT`] it starts with a warning, as
//! a pod would start on a node whose network plugin lags.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{HostIP, Pod, PodIP};
use podnet_store::dir::ObjectStore;
use podnet_store::object::{Kind, Object};
use tracing::{debug, warn};

/// How long a pod's containers wait for its policy at most.
pub const WAIT: Duration = Duration::from_secs(5);
/// Where the node's agent answers (its default `--serve`, on the node's localhost).
const AGENT: ([u8; 4], u16) = ([127, 0, 0, 1], 9765);
/// How often the agent is asked.
const POLL: Duration = Duration::from_millis(20);

/// Records the pod's addresses on its object, then returns once the node's agent reports its
/// policy programmed at every one of `ips` — or after [`WAIT`], with a warning.
pub fn hold_until_isolated(store: &ObjectStore, node: &str, pod: &Pod, ips: &[String]) {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    if let Err(e) = record_addresses(store, node, pod, ips) {
        warn!(pod = %id, error = %format!("{e:#}"), "cannot record the pod's addresses before starting it");
    }
    let started = Instant::now();
    let mut waiting: Vec<&String> = ips.iter().collect();
    while !waiting.is_empty() {
        waiting.retain(|ip| ask_agent(ip).as_deref() != Some(id.as_str()));
        if waiting.is_empty() {
            break;
        }
        if started.elapsed() >= WAIT {
            warn!(pod = %id, waiting = ?waiting, "network policy not programmed after {WAIT:?}; starting the containers anyway");
            return;
        }
        std::thread::sleep(POLL);
    }
    debug!(pod = %id, took = ?started.elapsed(), "network policy programmed");
}

/// Writes `status.podIP(s)` and `status.hostIP(s)` onto this incarnation of the pod (by uid),
/// leaving the rest of the status to the kubelet's usual writes.
fn record_addresses(
    store: &ObjectStore,
    node: &str,
    pod: &Pod,
    ips: &[String],
) -> anyhow::Result<()> {
    let host_ip = match store.get(Kind::Node, None, node)? {
        Some(Object::Node(n)) => n
            .status
            .and_then(|s| s.addresses)
            .into_iter()
            .flatten()
            .find(|a| a.type_ == "InternalIP")
            .map(|a| a.address),
        _ => None,
    };
    let namespace = pod.metadata.namespace.as_deref();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    store.update(Kind::Pod, namespace, name, |obj| {
        if let Object::Pod(p) = obj
            && p.metadata.uid == pod.metadata.uid
        {
            let status = p.status.get_or_insert_with(Default::default);
            status.phase.get_or_insert_with(|| "Pending".to_owned());
            status.pod_ip = ips.first().cloned();
            status.pod_ips = Some(ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect());
            status.host_ip.clone_from(&host_ip);
            status.host_ips = host_ip.clone().map(|ip| vec![HostIP { ip }]);
        }
        Ok(())
    })?;
    Ok(())
}

/// The agent's answer for `ip`: the `namespace/name` whose policy is programmed there, or
/// `None` (not yet, or no answer).
fn ask_agent(ip: &str) -> Option<String> {
    let timeout = Duration::from_millis(500);
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(AGENT), timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET /policy/programmed?ip={ip} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.trim().to_owned())
}
