//! The lab's Deployment controller, pure: which pods a Deployment wants, what `lab apply` must do
//! to get there from the pods it has, and the Deployment's status.
//!
//! The lab has no ReplicaSets: a Deployment's pods are `<name>-0` … `<name>-<replicas-1>`
//! ([`manifest::expand_deployment`]), labelled `pod-template-hash` with a hash of the template,
//! as the ReplicaSet a real Deployment makes would label them.
//!
//! - Scaling up creates the missing pods; scaling down marks the extra ones (highest index first)
//!   for deletion, and their kubelets stop them with their grace period.
//! - A changed template replaces every pod at once, like strategy `Recreate`: the old pods are
//!   marked for deletion, and each replacement (same name) is created once its predecessor is
//!   gone.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::core::v1::Pod;
use podnet_store::manifest;
use sha2::{Digest, Sha256};

/// The label carrying the hash of the template a pod was made from.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The characters of the hash (those of Kubernetes' `SafeEncodeString`).
const HASH_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// What `lab apply` does for one Deployment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollout {
    /// Pods to create now (not yet scheduled).
    pub create: Vec<Pod>,
    /// Pods to mark for deletion, by name, highest index first.
    pub delete: Vec<String>,
    /// Pods to create once the pod of the same name is gone.
    pub replace: Vec<Pod>,
}

/// The pods `d` wants: its expansion, labelled with the template's hash.
pub fn desired_pods(d: &Deployment) -> Vec<Pod> {
    let hash = template_hash(d);
    let mut pods = manifest::expand_deployment(d);
    for pod in &mut pods {
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(TEMPLATE_HASH_LABEL.into(), hash.clone());
    }
    pods
}

/// A short hash of the Deployment's pod template, in Kubernetes' safe characters.
pub fn template_hash(d: &Deployment) -> String {
    let template = serde_json::to_string(&d.spec.template).unwrap_or_default();
    Sha256::digest(template)
        .iter()
        .take(10)
        .map(|b| char::from(HASH_ALPHABET[usize::from(*b) % HASH_ALPHABET.len()]))
        .collect()
}

/// Whether `pod` belongs to the Deployment `d` (same namespace, owned by it).
pub fn owns(d: &Deployment, pod: &Pod) -> bool {
    pod.metadata.namespace == d.metadata.namespace
        && pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Deployment" && Some(&o.name) == d.metadata.name.as_ref())
}

/// What to do to turn `existing` (every pod of the cluster) into the pods `d` wants.
pub fn plan(d: &Deployment, existing: &[Pod]) -> Rollout {
    let desired = desired_pods(d);
    let hash = template_hash(d);
    let owned: Vec<&Pod> = existing.iter().filter(|p| owns(d, p)).collect();
    let wanted: BTreeSet<&str> = desired
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    let mut rollout = Rollout::default();
    let mut delete: Vec<(usize, String)> = Vec::new();
    for pod in &owned {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let current = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TEMPLATE_HASH_LABEL))
            == Some(&hash);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        if !terminating && (!wanted.contains(name.as_str()) || !current) {
            delete.push((index_of(&name), name));
        }
    }
    delete.sort_by(|a, b| b.cmp(a));
    rollout.delete = delete.into_iter().map(|(_, name)| name).collect();
    for pod in desired {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match owned
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
        {
            None => rollout.create.push(pod),
            Some(old) => {
                let current = old
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(TEMPLATE_HASH_LABEL))
                    == Some(&hash);
                if old.metadata.deletion_timestamp.is_some() || !current {
                    rollout.replace.push(pod);
                }
            }
        }
    }
    rollout
}

/// The Deployment's status from the pods it owns: pods not being deleted count, and those
/// Ready are ready and available.
pub fn status(d: &Deployment, pods: &[Pod]) -> DeploymentStatus {
    let hash = template_hash(d);
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| owns(d, p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(live.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let ready = count(&|p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    });
    let total = count(&|_| true);
    let updated = count(&|p| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TEMPLATE_HASH_LABEL))
            == Some(&hash)
    });
    DeploymentStatus {
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        unavailable_replicas: (total > ready).then_some(total - ready),
        observed_generation: d.metadata.generation,
        ..d.status.clone().unwrap_or_default()
    }
}

/// The index of a `<deployment>-<i>` pod (0 when the name has none).
fn index_of(name: &str) -> usize {
    name.rsplit_once('-')
        .and_then(|(_, i)| i.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
