//! The lab's controller-manager: one process per lab (started by `lab up`, inside the outside
//! host's namespace, recorded so `lab down` stops it) that plays kube-controller-manager's and
//! the cloud's controllers on the store. It polls the store's revision and, on every change:
//!
//! - keeps the EndpointSlices of every Service with a selector ([`endpointslices::desired`]),
//!   removing the slices it manages whose Service is gone or no longer selects pods;
//! - gives type=LoadBalancer Services their ingress address from the lab's pool
//!   ([`cloud::ingress_ips`]) and routes the pool from the outside host to the nodes;
//! - keeps each Deployment's status counts ([`deployments::status`]).
//!
//! Every write is of an object built deterministically from the store, and only when it differs
//! from the stored one, so a quiet cluster stays quiet.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use podnet_store::dir::ObjectStore;
use podnet_store::object::{Kind, Object};
use tracing::{info, warn};

use crate::paths::LabPaths;
use crate::services::service_key;
use crate::topology::LabConfig;
use crate::{cloud, deployments, endpointslices};

/// How often the store's revision is polled.
const POLL: Duration = Duration::from_millis(100);

/// The lab's controller-manager.
pub struct ControllerManager {
    paths: LabPaths,
    store: ObjectStore,
    /// The nexthops the outside host's pool route has, once set.
    routed: Option<Vec<Ipv4Addr>>,
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
        })
    }

    /// Runs until the process is killed.
    pub fn run(mut self) -> Result<()> {
        info!(lab = %self.paths.name(), "controller-manager starting");
        let mut seen = None;
        loop {
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
    &desired == stored
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
