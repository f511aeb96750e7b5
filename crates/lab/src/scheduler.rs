//! The lab's scheduler: binds pods to nodes. A pod naming `spec.nodeName` stays there; any
//! other goes to the node running the fewest pods (pods being deleted do not count), ties
//! broken by name. Used by `lab apply` for pods and by the controller-manager for the pods
//! Deployments want.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;

/// The lab's scheduler: a pod without `spec.nodeName` goes to the node running the fewest
/// pods (pods being deleted do not count), ties broken by name.
pub(crate) struct Scheduler {
    /// Pods per node.
    load: BTreeMap<String, usize>,
    /// Where each counted pod is, by `namespace/name`.
    placed: BTreeMap<String, String>,
}

// === impl Scheduler ===

impl Scheduler {
    /// A scheduler that counts the pods already bound to `nodes`.
    pub(crate) fn new(nodes: &[String], pods: &[Pod]) -> Self {
        let mut scheduler = Self {
            load: nodes.iter().map(|n| (n.clone(), 0)).collect(),
            placed: BTreeMap::new(),
        };
        for p in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                scheduler.count(&pod_ref(p), node);
            }
        }
        scheduler
    }

    /// Binds `pod` to a node unless it names one, counts it there, and marks it Pending.
    pub(crate) fn place(&mut self, pod: &mut Pod) -> Result<()> {
        let key = pod_ref(pod);
        let spec = pod.spec.get_or_insert_with(Default::default);
        let node = match spec.node_name.clone() {
            Some(node) => node,
            None => {
                let node = self
                    .load
                    .iter()
                    .min_by_key(|(name, count)| (**count, (*name).clone()))
                    .map(|(name, _)| name.clone())
                    .context("the lab has no nodes")?;
                spec.node_name = Some(node.clone());
                node
            }
        };
        self.count(&key, node);
        let status = pod.status.get_or_insert_with(Default::default);
        if status.phase.is_none() {
            status.phase = Some("Pending".into());
        }
        Ok(())
    }

    /// Stops counting a pod (it is being deleted).
    pub(crate) fn forget(&mut self, namespace: &str, name: &str) {
        if let Some(node) = self.placed.remove(&format!("{namespace}/{name}"))
            && let Some(count) = self.load.get_mut(&node)
        {
            *count = count.saturating_sub(1);
        }
    }

    fn count(&mut self, key: &str, node: String) {
        if let Some(old) = self.placed.insert(key.to_owned(), node.clone())
            && let Some(count) = self.load.get_mut(&old)
        {
            *count = count.saturating_sub(1);
        }
        if let Some(count) = self.load.get_mut(&node) {
            *count += 1;
        }
    }
}

/// `namespace/name` of a pod.
pub(crate) fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}
