//! The node agent: the same library on a real node (a DaemonSet reading the Kubernetes API) and
//! in the lab (a process per node namespace reading the lab's object directory).
//!
//! It reads cluster state through one interface ([`source::ClusterSource`]), and on every change
//! makes its node match: routes to other nodes' pod CIDRs ([`routing`]), the CNI config the
//! runtime uses ([`cniconf`]), masquerade for traffic leaving the cluster ([`masq`]), who may
//! talk to whom ([`policy`]); it publishes its VTEP MAC and network readiness on its Node, and
//! serves `/healthz` and `/metrics` ([`serve`]) and the Services' health check node ports
//! ([`healthcheck`]).

pub mod agent;
pub mod cniconf;
pub mod healthcheck;
pub mod masq;
pub mod policy;
pub mod routing;
pub mod serve;
pub mod services;
pub mod source;
