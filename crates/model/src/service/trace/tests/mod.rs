//! Tracer tests, one file per part of the semantics. Every case runs through the state
//! tracer and through the rendered ruleset (`check_flows`), like kube-proxy's packet-flow
//! tests, so each also checks that the nft rules mean what the state says.

mod affinity;
mod cluster_ip;
mod conditions;
mod dual_stack;
mod external;
mod internal_policy;
mod no_endpoints;
mod topology;
