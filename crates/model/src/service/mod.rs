//! The service proxy's logic: Services + EndpointSlices + node facts in, what the node does
//! with Service traffic out, then that state traced, rendered to nftables, and used for UDP
//! conntrack cleanup and health checks. kube-proxy's nftables mode is the reference
//! (KEP-3866; kubernetes/kubernetes `pkg/proxy/nftables/proxier.go`, `pkg/proxy/topology.go`,
//! `pkg/proxy/endpointslicecache.go`, `pkg/proxy/conntrack/cleanup.go`,
//! `pkg/proxy/healthcheck/service_health.go`); this is our own code, written from reading it.
//!
//! ```text
//! Service, EndpointSlice (k8s-openapi) ─┐
//! NodeFacts ────────────────────────────┴─▶ compile ─▶ ServiceState ─┬─▶ trace (Packet → Verdict)
//!                                                     (plain data)  ├─▶ render_full / render_diff (nft)
//!                                                                   ├─▶ stale_udp_flows (conntrack)
//!                                                                   └─▶ health_check_response
//! ```
//!
//! # Where kube-proxy and the API documentation differ, and what podnet follows
//!
//! - **Named `targetPort`**: the API docs describe the Service's `targetPort` naming a
//!   container port. kube-proxy never reads `targetPort`: an endpoint's port is the port of
//!   the EndpointSlice port whose *name* (and protocol) equals the Service port's name, so a
//!   named target port resolves per endpoint (two pods may use different numbers).
//!   Followed: kube-proxy. Selector-less Services work the same way with hand-made slices.
//! - **Topology**: the API docs describe `trafficDistribution` (`PreferSameZone`, its alias
//!   `PreferClose`, `PreferSameNode`) on the Service. kube-proxy reads only the EndpointSlice
//!   hints the EndpointSlice controller derives from it, and trusts any hints it finds.
//!   Followed: kube-proxy: hints decide, so hand-made slices with hints are honoured too.
//!   Node hints apply when every ready endpoint has one and one names this node; otherwise
//!   zone hints, when every ready endpoint has one and one names this node's zone;
//!   otherwise no filtering. Local policies and the terminating fallback ignore topology.
//! - **No endpoints**: the API docs only say such a Service does not work; kube-proxy
//!   rejects at once when no endpoint exists anywhere and drops when a Local policy has none
//!   on this node (the endpoint is probably restarting). Followed: kube-proxy. One
//!   difference: kube-proxy's `reject` answers TCP with ICMP port-unreachable too; podnet
//!   answers TCP with a reset (both fail a `connect` at once).
//! - **Terminating endpoints**: used only when no endpoint is ready, separately for the
//!   Cluster and the Local set (kube-proxy; the API docs describe the conditions only).
//! - **Conditions left unset** count as ready and serving, not terminating (API docs, and
//!   kube-proxy).
//! - **`externalTrafficPolicy: Local`** affects only NodePort and LoadBalancer Services (API
//!   docs and kube-proxy agree); pods reaching the external addresses are short-circuited to
//!   all endpoints and the node's own traffic is masqueraded (kube-proxy; the API docs say
//!   nothing of it).
//! - **NodePorts** are opened on [`NodeFacts::node_ips`] only (kube-proxy's nftables
//!   `--nodeport-addresses`; never on loopback).
//! - **UDP conntrack**: kube-proxy's reconciler, but matching Service addresses together with
//!   the port (upstream keys them by address alone), and NodePort entries only on NodePort
//!   addresses.
//! - **Health-check answer**: kube-proxy's exact body and status codes.
//!
//! # Where the nft rules differ from kube-proxy's
//!
//! Same tables-per-family, maps, base chains and masquerade marks, except: a Service port
//! without affinity, source ranges or a Local external policy gets no chain of its own:
//! its frontends lead to a chain shared by all ports with its protocol and endpoint count,
//! which DNATs through a `frontend . port . random slot → endpoint` map (so a Service is
//! only map elements, and 30k of them load in seconds rather than minutes); elements go to
//! the kernel over netlink rather than through `nft`; where chains remain, an endpoint is
//! chosen by a cascade of `numgen random mod k` rules instead of an anonymous
//! `numgen … vmap` per Service (each such map slows the kernel's check of every jump in
//! the table: 10k Services × 10 endpoints loaded in 3 minutes with them); chain names
//! carry no hash prefix; affinity set names carry their timeout (a set's timeout cannot
//! change in place).
//!
//! Not covered yet: incremental compile (`compile` always reads every object),
//! `service.kubernetes.io/topology-mode` (the EndpointSlice controller's concern),
//! `masqueradeAll`, kube-proxy's other local-traffic detectors (only the cluster-CIDR one),
//! localhost NodePorts, `ipMode: Proxy` load balancers beyond skipping them.

mod compile;
mod conntrack;
mod health;
mod input;
mod nft;
mod state;
mod topology;
mod trace;
mod tracker;
mod warning;

#[cfg(test)]
mod testutil;

pub use compile::compile;
pub use conntrack::{ConntrackEntry, StaleFlow, stale_udp_flows};
pub use health::{health_check_headers, health_check_response};
pub use input::NodeFacts;
pub use nft::{
    Element, ElementChange, Field, MapVerdict, TABLE, Transaction, Value, encode_fields,
    render_changes, render_diff, render_full, render_prune,
};
pub use state::{
    Dispatch, Endpoint, ExternalDispatch, HealthCheck, InternalDispatch, IpFamily, NodeView,
    Protocol, ServiceEntry, ServiceName, ServicePortName, ServicePortState, ServiceState,
    TopologyMode, TrafficPolicy,
};
pub use trace::{
    AffinityTable, DnatTarget, DropReason, Frontend, Origin, Packet, RejectReason, Verdict, trace,
    trace_with_affinity,
};
pub use tracker::{Changes, ServiceTracker};
pub use warning::CompileWarning;
