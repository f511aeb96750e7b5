//! The lab: a whole multi-node cluster on one Linux machine, built from network namespaces and
//! driven by ordinary Kubernetes YAML. Nodes, an underlay switch, an outside host (and a router
//! for `cross-subnet`) are namespaces; each node runs podnet's agent and the lab's kubelet; pods
//! are namespaces wired by the real podnet-cni. The lab plays the control plane: `apply` defaults
//! and allocates as the API server does ([`services`]), schedules and rolls out Deployments
//! ([`deployments`]); a controller-manager ([`controller`]) keeps EndpointSlices
//! ([`endpointslices`]) and plays the cloud's load balancers ([`cloud`]); cluster DNS runs as
//! pods behind the `kube-dns` Service with a resolver on the outside host ([`dns`]). Nothing
//! touches the machine's own namespace.

pub mod check;
pub mod cloud;
pub mod cni;
pub mod control;
pub mod controller;
pub mod deployments;
pub mod dns;
pub mod endpointslices;
pub mod kubelet;
pub mod paths;
pub mod probe;
mod scheduler;
pub mod services;
pub mod topology;
