//! Where the agent reads cluster state from, behind one interface: the lab's object directory
//! here, the Kubernetes API (kube-rs reflectors over the same k8s-openapi types) on a real
//! cluster. The reconcilers only ever see a [`Snapshot`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, NodeCondition, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podnet_model::policy::ClusterNetworkPolicy;
use podnet_store::dir::ObjectStore;
use podnet_store::object::{Kind, Object};

/// A failure to read or write cluster state.
#[derive(Debug, thiserror::Error)]
#[error("cluster state: {0}")]
pub struct SourceError(pub String);

/// A consistent view of the objects the agent needs.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every Node.
    pub nodes: Vec<Node>,
    /// Every Service. Shared: a source that caches objects (a watch cache) hands out the
    /// same `Arc` for an object that did not change, which the service proxy recognises
    /// without reading it.
    pub services: Vec<Arc<Service>>,
    /// Every EndpointSlice, shared likewise.
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// Every Pod (policy subjects and peers, DNS pod records).
    pub pods: Vec<Pod>,
    /// Every Namespace (policy namespace selectors).
    pub namespaces: Vec<Namespace>,
    /// Every NetworkPolicy.
    pub network_policies: Vec<NetworkPolicy>,
    /// Every ClusterNetworkPolicy.
    pub cluster_network_policies: Vec<ClusterNetworkPolicy>,
}

/// Cluster state as the agent sees it.
pub trait ClusterSource {
    /// The current state.
    fn snapshot(&mut self) -> Result<Snapshot, SourceError>;
    /// Returns when the state may have changed (true), or after `timeout` (false).
    fn wait_for_change(&mut self, timeout: Duration) -> bool;
    /// Publishes this agent's facts on its Node: `annotations` (e.g. the VTEP MAC) and the
    /// `NetworkUnavailable` condition, as flannel and Calico do.
    fn publish_node(
        &mut self,
        node: &str,
        annotations: &BTreeMap<String, String>,
        network_ready: bool,
    ) -> Result<(), SourceError>;
}

/// The lab's object directory as a [`ClusterSource`]: polls its revision counter.
pub struct DirSource {
    store: ObjectStore,
    seen: Option<u64>,
}

impl DirSource {
    /// Reads the store at `store`.
    pub fn new(store: ObjectStore) -> Self {
        Self { store, seen: None }
    }
}

/// Objects read afresh: every one at a new address, so the service proxy compares them by
/// resourceVersion.
fn shared<T>(objects: Vec<T>) -> Vec<Arc<T>> {
    objects.into_iter().map(Arc::new).collect()
}

fn err(e: impl std::fmt::Display) -> SourceError {
    SourceError(e.to_string())
}

impl ClusterSource for DirSource {
    fn snapshot(&mut self) -> Result<Snapshot, SourceError> {
        self.seen = Some(self.store.revision().map_err(err)?);
        Ok(Snapshot {
            nodes: self.store.nodes().map_err(err)?,
            services: shared(self.store.services().map_err(err)?),
            endpoint_slices: shared(self.store.endpoint_slices().map_err(err)?),
            pods: self.store.pods().map_err(err)?,
            namespaces: self.store.namespaces().map_err(err)?,
            network_policies: self.store.network_policies().map_err(err)?,
            cluster_network_policies: self.store.cluster_network_policies().map_err(err)?,
        })
    }

    fn wait_for_change(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.store.revision().ok() != self.seen {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    fn publish_node(
        &mut self,
        node: &str,
        annotations: &BTreeMap<String, String>,
        network_ready: bool,
    ) -> Result<(), SourceError> {
        let status = if network_ready { "False" } else { "True" };
        // Only write when something differs: every write wakes every watcher.
        let current = self.store.get(Kind::Node, None, node).map_err(err)?;
        let Some(Object::Node(current)) = current else {
            return Err(SourceError(format!("Node {node} does not exist")));
        };
        let have = current.metadata.annotations.clone().unwrap_or_default();
        let condition_ok = current
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "NetworkUnavailable"))
            .is_some_and(|c| c.status == status);
        if condition_ok && annotations.iter().all(|(k, v)| have.get(k) == Some(v)) {
            return Ok(());
        }
        self.store
            .update(Kind::Node, None, node, |obj| {
                if let Object::Node(n) = obj {
                    let ann = n.metadata.annotations.get_or_insert_with(BTreeMap::new);
                    ann.extend(annotations.clone());
                    let conditions = n
                        .status
                        .get_or_insert_with(Default::default)
                        .conditions
                        .get_or_insert_with(Vec::new);
                    conditions.retain(|c| c.type_ != "NetworkUnavailable");
                    let now = Time(podnet_store::now());
                    conditions.push(NodeCondition {
                        type_: "NetworkUnavailable".into(),
                        status: status.into(),
                        reason: Some(
                            if network_ready {
                                "PodnetIsUp"
                            } else {
                                "PodnetIsDown"
                            }
                            .into(),
                        ),
                        message: Some("podnet agent".into()),
                        last_transition_time: Some(now.clone()),
                        last_heartbeat_time: Some(now),
                    });
                }
                Ok(())
            })
            .map_err(err)?;
        Ok(())
    }
}
