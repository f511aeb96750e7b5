//! The lab's controller-manager: one process per lab (started by `lab up`, inside the outside
//! host's namespace, recorded so `lab down` stops it) that plays kube-controller-manager's and
//! the cloud's controllers on the store. It polls the store's revision and, on every change:
//!
//! - keeps the EndpointSlices of every Service with a selector ([`endpointslices::desired`]),
//!   removing the slices it manages whose Service is gone or no longer selects pods;
//! - gives type=LoadBalancer Services their ingress address from the lab's pool
//!   ([`cloud::ingress_ips`]) and routes the pool from the outside host to the nodes;
//! - creates the pods each Deployment is missing, as the ReplicaSet controller would
//!   ([`deployments::plan`]): new replicas, a deleted pod's replacement, an outdated pod's
//!   successor once it is gone; and keeps each Deployment's status counts
//!   ([`deployments::status`]);
//! - every second, probes the health check node port of `Local` load balancers on every node
//!   and routes each one's address to the nodes that pass ([`cloud::health_checked`]).
//!
//! Every write is of an object built deterministically from the store, and only when it differs
//! from the stored one, so a quiet cluster stays quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use podnet_store::dir::ObjectStore;
use podnet_store::object::{Kind, Object};
use tracing::{info, warn};

use crate::paths::LabPaths;
use crate::scheduler::{Scheduler, pod_ref};
use crate::services::service_key;
use crate::topology::LabConfig;
use crate::{cloud, deployments, endpointslices};

/// How often the store's revision is polled.
const POLL: Duration = Duration::from_millis(100);

/// How often the cloud probes load balancers' health check node ports, and how long it waits.
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_millis(300);

/// The lab's controller-manager.
pub struct ControllerManager {
    paths: LabPaths,
    store: ObjectStore,
    /// The nexthops the outside host's pool route has, once set.
    routed: Option<Vec<Ipv4Addr>>,
    /// The nexthops of each health-checked load balancer's host route.
    health_routed: BTreeMap<Ipv4Addr, Vec<Ipv4Addr>>,
}

// === impl ControllerManager ===

impl ControllerManager {
    /// The controller-manager of the lab at `paths`.
    pub fn new(paths: LabPaths) -> Result<Self> {
        let store = ObjectStore::open(&paths.store())?;
        Ok(Self {
            paths,
            store,
            routed: None,
            health_routed: BTreeMap::new(),
        })
    }

    /// Runs until the process is killed.
    pub fn run(mut self) -> Result<()> {
        info!(lab = %self.paths.name(), "controller-manager starting");
        let mut seen = None;
        let mut probed = Instant::now();
        loop {
            if probed.elapsed() >= HEALTH_CHECK_EVERY {
                probed = Instant::now();
                if let Err(e) = self.health_checked_routes() {
                    warn!(error = %format!("{e:#}"), "load balancer health checks failed");
                }
            }
            let revision = self.store.revision()?;
            if seen != Some(revision) {
                // Recorded before reconciling: a change made meanwhile (or by this pass) is
                // seen on the next poll, which converges without writing.
                seen = Some(revision);
                if let Err(e) = self.reconcile() {
                    warn!(error = %format!("{e:#}"), "reconcile failed");
                }
            }
            std::thread::sleep(POLL);
        }
    }

    /// One pass of every controller over the current store.
    pub fn reconcile(&mut self) -> Result<()> {
        let config = LabConfig::load(&self.paths)?.context("the lab's lab.json is gone")?;
        let nodes = self.store.nodes()?;
        // Each controller on its own: one failing does not hold up the others.
        let results = [
            ("endpointslice", self.endpoint_slices(&nodes)),
            ("load balancer", self.load_balancers(&config)),
            ("load-balancer pool route", self.pool_route(&config, &nodes)),
            ("deployment pods", self.deployment_pods(&config)),
            ("deployment status", self.deployment_status()),
        ];
        let mut failed = Vec::new();
        for (controller, result) in results {
            if let Err(e) = result {
                failed.push(format!("{controller}: {e:#}"));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", failed.join("; "))
        }
    }

    fn endpoint_slices(&self, nodes: &[Node]) -> Result<()> {
        let services = self.store.services()?;
        let pods = self.store.pods()?;
        let existing = self.store.endpoint_slices()?;
        let mut wanted = BTreeSet::new();
        for service in &services {
            let Some(slices) = endpointslices::desired(service, &pods, nodes) else {
                continue;
            };
            for slice in slices {
                let namespace = slice.metadata.namespace.clone().unwrap_or_default();
                let name = slice.metadata.name.clone().unwrap_or_default();
                let stored = existing.iter().find(|e| {
                    e.metadata.namespace.as_deref() == Some(namespace.as_str())
                        && e.metadata.name.as_deref() == Some(name.as_str())
                });
                if stored.is_none_or(|s| !same_slice(s, &slice)) {
                    let mut slice = slice;
                    slice
                        .metadata
                        .annotations
                        .get_or_insert_default()
                        .insert(LAST_CHANGE_TRIGGER_TIME.to_owned(), precise_now());
                    self.store.put(&Object::EndpointSlice(slice))?;
                    info!(slice = %format!("{namespace}/{name}"), "endpointslice written");
                }
                wanted.insert((namespace, name));
            }
        }
        for slice in existing.iter().filter(|s| endpointslices::is_managed(s)) {
            let key = (
                slice.metadata.namespace.clone().unwrap_or_default(),
                slice.metadata.name.clone().unwrap_or_default(),
            );
            if !wanted.contains(&key) {
                self.store
                    .delete(Kind::EndpointSlice, Some(&key.0), &key.1)?;
                info!(slice = %format!("{}/{}", key.0, key.1), "endpointslice removed");
            }
        }
        Ok(())
    }

    fn load_balancers(&self, config: &LabConfig) -> Result<()> {
        let services = self.store.services()?;
        let wanted = cloud::ingress_ips(&services, config.lb_pool);
        for service in &services {
            let key = service_key(service);
            let want = wanted.get(&key).copied().flatten();
            if current_ingress(service) == want.map(|ip| ip.to_string()) {
                continue;
            }
            let (namespace, name) = key.split_once('/').unwrap_or(("default", &key));
            self.store
                .update(Kind::Service, Some(namespace), name, |obj| {
                    if let Object::Service(s) = obj {
                        set_ingress(s, want);
                    }
                    Ok(())
                })?;
            match want {
                Some(ip) => info!(service = %key, %ip, "load balancer address assigned"),
                None => info!(service = %key, "load balancer address released"),
            }
        }
        Ok(())
    }

    /// Routes the pool from the outside host to every node on its subnet (ECMP), when that set
    /// of nodes changes.
    fn pool_route(&mut self, config: &LabConfig, nodes: &[Node]) -> Result<()> {
        let subnet = config.underlays.first().map(|u| u.subnet);
        let mut hops: Vec<Ipv4Addr> = nodes
            .iter()
            .filter_map(internal_ip)
            .filter(|ip| subnet.is_some_and(|s| s.contains(ip)))
            .collect();
        hops.sort();
        if self.routed.as_ref() == Some(&hops) {
            return Ok(());
        }
        let args = cloud::pool_route_args(&self.paths.netns("outside"), config.lb_pool, &hops);
        let out = Command::new("ip")
            .args(&args)
            .output()
            .context("running ip")?;
        // Deleting a route that is not there is no failure.
        if !out.status.success() && !hops.is_empty() {
            anyhow::bail!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        info!(pool = %config.lb_pool, nexthops = ?hops, "outside host routes the load-balancer pool");
        self.routed = Some(hops);
        Ok(())
    }

    /// Probes every health-checked load balancer on every node and routes its address to the
    /// nodes answering 200 (to all of them when none does).
    fn health_checked_routes(&mut self) -> Result<()> {
        let services = self.store.services()?;
        let mut nodes: Vec<Ipv4Addr> = self.store.nodes()?.iter().filter_map(internal_ip).collect();
        nodes.sort();
        let wanted = cloud::health_checked(&services);
        let outside = self.paths.netns("outside");
        for (ip, port) in &wanted {
            let healthy: Vec<Ipv4Addr> = nodes
                .iter()
                .copied()
                .filter(|node| health_check_passes(*node, *port))
                .collect();
            let hops = if healthy.is_empty() {
                nodes.clone()
            } else {
                healthy
            };
            if self.health_routed.get(ip) == Some(&hops) {
                continue;
            }
            let host = Ipv4Net::from(*ip);
            run_ip(&cloud::pool_route_args(&outside, host, &hops))?;
            info!(address = %ip, nexthops = ?hops, "load balancer routed to the nodes passing its health check");
            self.health_routed.insert(*ip, hops);
        }
        let gone: Vec<Ipv4Addr> = self
            .health_routed
            .keys()
            .filter(|ip| !wanted.contains_key(ip))
            .copied()
            .collect();
        for ip in gone {
            let _ = run_ip(&cloud::pool_route_args(&outside, Ipv4Net::from(ip), &[]));
            self.health_routed.remove(&ip);
        }
        Ok(())
    }

    fn deployment_pods(&self, config: &LabConfig) -> Result<()> {
        let pods = self.store.pods()?;
        let nodes: Vec<String> = config.nodes.iter().map(|n| n.name.clone()).collect();
        let mut scheduler = Scheduler::new(&nodes, &pods);
        for d in self.store.deployments()? {
            for mut pod in deployments::plan(&d, &pods).create {
                scheduler.place(&mut pod)?;
                let key = pod_ref(&pod);
                self.store.put(&Object::Pod(pod))?;
                info!(pod = %key, "pod created for its deployment");
            }
        }
        Ok(())
    }

    fn deployment_status(&self) -> Result<()> {
        let pods = self.store.pods()?;
        for d in self.store.deployments()? {
            let status = deployments::status(&d, &pods);
            if d.status.as_ref() == Some(&status) {
                continue;
            }
            let (Some(ns), Some(name)) = (d.metadata.namespace.as_deref(), &d.metadata.name) else {
                continue;
            };
            self.store.update(Kind::Deployment, Some(ns), name, |obj| {
                if let Object::Deployment(d) = obj {
                    d.status = Some(status.clone());
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// Whether the stored slice `stored` already is `desired` (the store's own metadata aside).
fn same_slice(stored: &EndpointSlice, desired: &EndpointSlice) -> bool {
    let mut desired = desired.clone();
    let meta = &stored.metadata;
    desired.metadata.uid.clone_from(&meta.uid);
    desired
        .metadata
        .creation_timestamp
        .clone_from(&meta.creation_timestamp);
    desired
        .metadata
        .resource_version
        .clone_from(&meta.resource_version);
    desired
        .metadata
        .deletion_timestamp
        .clone_from(&meta.deletion_timestamp);
    desired.metadata.annotations.clone_from(&meta.annotations);
    &desired == stored
}

/// The annotation on which a slice carries when the change it reflects happened; proxies
/// measure their network programming latency from it.
const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Now in RFC 3339 with nanoseconds, as the endpoint controllers write the trigger time.
fn precise_now() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    let nanos = i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0);
    k8s_openapi::jiff::Timestamp::new(seconds, nanos)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

/// Whether `GET /` on `node`'s `port` answers 200, as a cloud load balancer's probe asks.
fn health_check_passes(node: Ipv4Addr, port: u16) -> bool {
    let probe = || -> std::io::Result<bool> {
        let addr = std::net::SocketAddr::from((node, port));
        let mut stream = std::net::TcpStream::connect_timeout(&addr, HEALTH_CHECK_TIMEOUT)?;
        stream.set_read_timeout(Some(HEALTH_CHECK_TIMEOUT))?;
        stream.write_all(
            format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    probe().unwrap_or(false)
}

/// Runs `ip ARGS`; a failure names the command and what `ip` said.
fn run_ip(args: &[String]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        anyhow::bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The Service's first ingress IP.
fn current_ingress(service: &Service) -> Option<String> {
    service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?
        .ip
        .clone()
}

/// Sets (or clears) the Service's ingress address, as the cloud's controller writes it.
fn set_ingress(service: &mut Service, ip: Option<Ipv4Addr>) {
    let status = service.status.get_or_insert_with(Default::default);
    status.load_balancer = Some(LoadBalancerStatus {
        ingress: ip.map(|ip| {
            vec![LoadBalancerIngress {
                ip: Some(ip.to_string()),
                ip_mode: Some("VIP".into()),
                ..Default::default()
            }]
        }),
    });
}

/// A Node's InternalIP.
fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()
}
