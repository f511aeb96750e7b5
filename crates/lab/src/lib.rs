//! The lab: a whole multi-node cluster on one Linux machine, built from network namespaces and
//! driven by ordinary Kubernetes YAML. Nodes, an underlay switch, an outside host (and a router
//! for `cross-subnet`) are namespaces; each node runs podnet's agent and the lab's kubelet; pods
//! are namespaces wired by the real podnet-cni. Nothing touches the machine's own namespace.

pub mod check;
pub mod cni;
pub mod control;
pub mod kubelet;
pub mod paths;
pub mod topology;
