//! Where a lab keeps its state on disk and what its namespaces are called.
//!
//! Several labs can exist side by side (the tests run their own); each has a name, and everything
//! it makes carries that name: `/run/podnet/labs/<name>/` on disk and `podnet-<name>-…` network
//! namespaces, so `lab down` (or a test's cleanup) finds exactly what it made.

use std::path::{Path, PathBuf};

/// The default lab's name.
pub const DEFAULT_LAB: &str = "lab";

/// The on-disk layout and the namespace names of one lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPaths {
    name: String,
    root: PathBuf,
}

impl LabPaths {
    /// The lab called `name`, under `/run/podnet/labs` (tmpfs: a reboot removes it, as it
    /// removes the namespaces it describes).
    pub fn new(name: &str) -> Result<Self, String> {
        Self::with_base(name, Path::new("/run/podnet/labs"))
    }

    /// The lab called `name` under `base` (for tests).
    pub fn with_base(name: &str, base: &Path) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 20
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(format!(
                "lab name {name:?}: expected 1-20 characters of a-z, 0-9 and '-'"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            root: base.join(name),
        })
    }

    /// The lab's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lab's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lab's topology and process table (`lab.json`).
    pub fn config(&self) -> PathBuf {
        self.root.join("lab.json")
    }

    /// The object store (standard Kubernetes objects, one file each).
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// A node's own directory: its CNI config dir, IPAM data, logs of its daemons.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.root.join("nodes").join(node)
    }

    /// Where the node's agent writes the CNI config (a real node's `/etc/cni/net.d`).
    pub fn cni_conf_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("net.d")
    }

    /// A pod's directory: container logs and process ids.
    pub fn pod_dir(&self, namespace: &str, pod: &str) -> PathBuf {
        self.root.join("pods").join(format!("{namespace}_{pod}"))
    }

    /// The network namespace of a lab role (`switch`, `outside`, `router`, `node-1`, …).
    pub fn netns(&self, role: &str) -> String {
        format!("podnet-{}-{role}", self.name)
    }

    /// The files `ip netns exec` mounts over `/etc` in the namespace of a lab role (a node,
    /// `outside`): its `resolv.conf`, the node's resolver that `dnsPolicy: Default` pods get.
    pub fn netns_etc(&self, role: &str) -> PathBuf {
        Path::new("/etc/netns").join(self.netns(role))
    }

    /// The network namespace of a pod.
    pub fn pod_netns(&self, namespace: &str, pod: &str) -> String {
        format!("podnet-{}-pod-{namespace}-{pod}", self.name)
    }

    /// The prefix every namespace of this lab starts with.
    pub fn netns_prefix(&self) -> String {
        format!("podnet-{}-", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_lab_name() {
        let p = LabPaths::with_base("t1", Path::new("/tmp/x")).unwrap();
        assert_eq!(p.root(), Path::new("/tmp/x/t1"));
        assert_eq!(p.netns("node-1"), "podnet-t1-node-1");
        assert_eq!(
            p.pod_netns("default", "web-0"),
            "podnet-t1-pod-default-web-0"
        );
        assert!(p.netns("switch").starts_with(&p.netns_prefix()));
    }

    #[test]
    fn bad_lab_names_are_refused_with_the_rule() {
        for bad in ["", "Lab", "a/b", "..", "x".repeat(21).as_str()] {
            let e = LabPaths::new(bad).unwrap_err();
            assert!(e.contains("a-z"), "{e}");
        }
    }
}
