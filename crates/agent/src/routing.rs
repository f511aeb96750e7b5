//! Routes pod CIDRs between nodes, as flannel does, with three backends: `host-gw` (plain routes
//! via the peer's underlay address; peers must share an L2 subnet), `vxlan` (an overlay device
//! with static neighbour and FDB entries, no learning, no miss callouts) and `cross-subnet`
//! (host-gw to peers on this node's underlay subnet, vxlan to the others).
//!
//! Two halves, apart on purpose:
//! - [`desired`] is pure: this node and its peers in, the routes, neighbours, FDB entries and
//!   vxlan device this node should have out — plus [`Warning`]s for peers it cannot reach.
//! - [`RoutingApplier`] makes the kernel match a [`Desired`]: it reads what is there (routes of
//!   protocol [`RouteProto::PODNET`], the vxlan device's permanent neighbours and FDB entries),
//!   changes only the difference, and so adopts what a previous run left without flapping it.

mod apply;
mod plan;
#[cfg(test)]
mod tests;

pub use apply::{ApplyReport, Changes, DeviceChange, RouteConflict, RoutingApplier, RoutingError};
pub use plan::{
    Backend, Desired, Encap, FdbEntry, Neighbour, NodeRoute, Route, UnknownBackend, VXLAN_DEVICE,
    VXLAN_PORT, VXLAN_VNI, VxlanPlan, Warning, desired, vtep_mac, vxlan_mtu,
};
pub use podnet_kernel::netlink::RouteProto;
