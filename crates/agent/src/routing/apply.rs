//! The kernel half of routing: make the calling thread's network namespace match a [`Desired`].
//!
//! Every apply reads the kernel afresh (routes of protocol [`RouteProto::PODNET`], the vxlan
//! device and its permanent neighbour and FDB entries) and changes only the difference. Nothing
//! is remembered between applies, so a restarted agent, or one whose entries someone deleted,
//! converges the same way — and an unchanged desired state changes nothing, not even briefly.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use podnet_kernel::netlink::{
    Link, Netlink, NetlinkError, Request, RouteInfo, RouteProto, RouteSpec,
};

use super::plan::{Desired, Encap, FdbEntry, Neighbour, Route, VXLAN_DEVICE, VxlanPlan};

/// Requests per netlink batch: small enough that the kernel's acknowledgements of one batch
/// fit the socket's receive buffer.
const BATCH: usize = 128;

/// Makes the kernel's routes, neighbours, FDB entries and vxlan device match a [`Desired`].
pub struct RoutingApplier {
    netlink: Netlink,
}

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// No netlink socket could be opened.
    #[error("opening a netlink socket for routing: {0}")]
    Socket(#[source] io::Error),
    /// Reading the kernel's state, or setting up the vxlan device, failed.
    #[error("routing: {0}")]
    Netlink(#[from] NetlinkError),
    /// The vxlan device's source address is on none of this node's links.
    #[error("the vxlan device's local address {ip} is on no link of this node")]
    UnderlayAddressMissing {
        /// The address the plan names.
        ip: IpAddr,
    },
    /// The vxlan device could not be found right after it was created.
    #[error("vxlan device {name} vanished right after it was created")]
    DeviceVanished {
        /// The device name.
        name: String,
    },
    /// The desired state asks for vxlan entries without a vxlan device.
    #[error("the desired state has {what} but no vxlan device to put it on")]
    NoVxlanDevice {
        /// The first such entry.
        what: String,
    },
    /// Some of the changes failed (the others were made; the next apply retries the rest).
    #[error(
        "{} of {attempted} routing changes failed: {}",
        errors.len(),
        errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Changes {
        /// How many changes were sent.
        attempted: usize,
        /// What failed, one error per change.
        errors: Vec<NetlinkError>,
    },
}

/// What an apply changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// What happened to the vxlan device, if anything.
    pub device: Option<DeviceChange>,
    /// Routes, by destination.
    pub routes: Changes<IpNet>,
    /// Neighbour entries on the vxlan device.
    pub neighbours: Changes<Neighbour>,
    /// FDB entries on the vxlan device.
    pub fdb: Changes<FdbEntry>,
    /// Desired routes left alone because another program has a route to the same destination.
    pub conflicts: Vec<RouteConflict>,
}

/// Entries added, replaced (present but different) and deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes<T> {
    /// Missing, now added.
    pub added: Vec<T>,
    /// Present but different, now replaced.
    pub replaced: Vec<T>,
    /// No longer desired, now deleted.
    pub deleted: Vec<T>,
}

/// What happened to the vxlan device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChange {
    /// It did not exist and was created.
    Created,
    /// It existed with other tunnel parameters (VNI, local address, port, underlay link) and
    /// was deleted and created again.
    Recreated,
    /// It was changed in place; one line per change (`mtu 1500 -> 1450`, …).
    Updated(Vec<String>),
    /// The backend needs none, and it was deleted (its routes, neighbours and FDB with it).
    Deleted,
}

/// A desired route that another program's route to the same destination stands in the way of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConflict {
    /// The destination.
    pub dst: IpNet,
    /// The protocol of the route that is there.
    pub protocol: RouteProto,
}

/// One change to send, and what to record once it is sent.
struct Change {
    request: Request,
    /// A delete whose object is already gone has done its job.
    delete: bool,
}

// === impl RoutingApplier ===

impl RoutingApplier {
    /// An applier for the calling thread's network namespace (the socket stays bound to it,
    /// whichever thread uses the applier later).
    pub fn new() -> Result<Self, RoutingError> {
        Netlink::open()
            .map(Self::with_netlink)
            .map_err(RoutingError::Socket)
    }

    /// An applier for the namespace `netlink` was opened in (see `Netlink::open_in`).
    pub fn with_netlink(netlink: Netlink) -> Self {
        Self { netlink }
    }

    /// Makes the kernel match `desired`: creates, updates or deletes the vxlan device, then adds
    /// what is missing, replaces what differs and deletes what is no longer desired among the
    /// routes of protocol [`RouteProto::PODNET`] and the device's permanent neighbour and FDB
    /// entries. Routes of other protocols are never changed: a desired route whose destination
    /// another program routes is reported in [`ApplyReport::conflicts`] instead.
    ///
    /// Changes go to the kernel in batches, in an order that never leaves a route without its
    /// neighbour and FDB entries: FDB and neighbour additions, routes, route deletions, then
    /// neighbour and FDB deletions. A failed change does not stop the others; all failures are
    /// returned together.
    pub fn apply(&mut self, desired: &Desired) -> Result<ApplyReport, RoutingError> {
        check_consistent(desired)?;
        let mut report = ApplyReport::default();
        let vxlan_index = match &desired.vxlan {
            Some(plan) => Some(self.ensure_device(plan, &mut report)?),
            None => {
                if self.netlink.delete_link_by_name(VXLAN_DEVICE)? {
                    report.device = Some(DeviceChange::Deleted);
                }
                None
            }
        };

        let mut adds = Vec::new();
        let mut deletes = Vec::new();
        if let Some(index) = vxlan_index {
            self.diff_fdb(index, desired, &mut report, &mut adds, &mut deletes)?;
            self.diff_neighbours(index, desired, &mut report, &mut adds, &mut deletes)?;
        }
        // Route deletions go before neighbour and FDB deletions, so no route is left pointing at
        // a VTEP the kernel can no longer resolve.
        let mut route_changes = Vec::new();
        self.diff_routes(vxlan_index, desired, &mut report, &mut route_changes)?;
        route_changes.append(&mut deletes);
        adds.append(&mut route_changes);

        self.send(adds)?;
        if report.changed() {
            tracing::info!(
                device = ?report.device,
                routes_added = report.routes.added.len(),
                routes_replaced = report.routes.replaced.len(),
                routes_deleted = report.routes.deleted.len(),
                neighbours_changed = report.neighbours.len(),
                fdb_changed = report.fdb.len(),
                "routing applied"
            );
        }
        for conflict in &report.conflicts {
            tracing::warn!(
                dst = %conflict.dst,
                protocol = %conflict.protocol,
                "another program routes this pod CIDR; left alone"
            );
        }
        Ok(report)
    }

    /// Makes the vxlan device match `plan` (creating or re-creating it when needed) and returns
    /// its index.
    fn ensure_device(
        &mut self,
        plan: &VxlanPlan,
        report: &mut ApplyReport,
    ) -> Result<u32, RoutingError> {
        let addresses = self.netlink.addresses()?;
        // Bind the tunnel to the link that holds the local address, as flannel does: the kernel
        // then checks the device MTU against that link's.
        let underlay = addresses
            .iter()
            .find(|(_, a)| a.addr() == plan.local)
            .map(|(index, _)| *index)
            .ok_or(RoutingError::UnderlayAddressMissing { ip: plan.local })?;
        let spec = plan.spec(Some(underlay));
        let existing = self.netlink.vxlan(&plan.name)?;
        let link = match existing {
            Some(info) if info.link.kind.as_deref() == Some("vxlan") && info.same_tunnel(&spec) => {
                info.link
            }
            stale => {
                if stale.is_some() {
                    self.netlink.delete_link_by_name(&plan.name)?;
                    report.device = Some(DeviceChange::Recreated);
                } else {
                    report.device = Some(DeviceChange::Created);
                }
                self.netlink.add_vxlan(&spec)?;
                self.created_link(&plan.name)?
            }
        };

        let mut updates = Vec::new();
        if link.mtu != plan.mtu {
            self.netlink.set_mtu(link.index, plan.mtu)?;
            updates.push(format!("mtu {} -> {}", link.mtu, plan.mtu));
        }
        if link.mac != Some(plan.mac) {
            self.netlink.set_address(link.index, plan.mac)?;
            updates.push(format!(
                "address {}",
                podnet_kernel::netlink::format_mac(&plan.mac)
            ));
        }
        let have: BTreeSet<IpNet> = addresses
            .iter()
            .filter(|(index, a)| *index == link.index && !is_link_local(a))
            .map(|(_, a)| *a)
            .collect();
        let want: BTreeSet<IpNet> = plan.addresses.iter().copied().collect();
        for addr in want.difference(&have) {
            // No duplicate address detection: the address is this node's own by construction,
            // and DAD would keep an IPv6 one unusable for a second.
            self.netlink.add_address(link.index, *addr, true)?;
            updates.push(format!("add {addr}"));
        }
        for addr in have.difference(&want) {
            self.netlink.delete_address(link.index, *addr)?;
            updates.push(format!("delete {addr}"));
        }
        if !link.up {
            self.netlink.set_up(link.index)?;
            updates.push("up".to_owned());
        }
        if report.device.is_none() && !updates.is_empty() {
            report.device = Some(DeviceChange::Updated(updates));
        }
        Ok(link.index)
    }

    fn created_link(&mut self, name: &str) -> Result<Link, RoutingError> {
        self.netlink
            .link(name)?
            .ok_or_else(|| RoutingError::DeviceVanished {
                name: name.to_owned(),
            })
    }

    fn diff_fdb(
        &mut self,
        index: u32,
        desired: &Desired,
        report: &mut ApplyReport,
        adds: &mut Vec<Change>,
        deletes: &mut Vec<Change>,
    ) -> Result<(), RoutingError> {
        let have: Vec<FdbEntry> = self
            .netlink
            .fdb(index)?
            .into_iter()
            .map(|(mac, dst)| FdbEntry { mac, dst })
            .collect();
        // A unicast MAC has one remote in a vxlan FDB (desired MACs are unicast, see
        // `desired`): a peer that moved gets its entry replaced in place, never a moment
        // without one.
        let want: BTreeMap<[u8; 6], IpAddr> = desired.fdb.iter().map(|f| (f.mac, f.dst)).collect();
        for (&mac, &dst) in &want {
            let entry = FdbEntry { mac, dst };
            if have.contains(&entry) {
                continue;
            } else if have.iter().any(|h| h.mac == mac) {
                report.fdb.replaced.push(entry);
            } else {
                report.fdb.added.push(entry);
            }
            adds.push(Change::set(Request::replace_fdb(index, mac, dst)));
        }
        for entry in have.into_iter().filter(|h| !want.contains_key(&h.mac)) {
            deletes.push(Change::delete(Request::delete_fdb(
                index, entry.mac, entry.dst,
            )));
            report.fdb.deleted.push(entry);
        }
        Ok(())
    }

    fn diff_neighbours(
        &mut self,
        index: u32,
        desired: &Desired,
        report: &mut ApplyReport,
        adds: &mut Vec<Change>,
        deletes: &mut Vec<Change>,
    ) -> Result<(), RoutingError> {
        let have: BTreeMap<IpAddr, [u8; 6]> = self.netlink.neighbours(index)?.into_iter().collect();
        let want: BTreeMap<IpAddr, [u8; 6]> =
            desired.neighbours.iter().map(|n| (n.ip, n.mac)).collect();
        for (ip, mac) in &want {
            let entry = Neighbour { ip: *ip, mac: *mac };
            match have.get(ip) {
                Some(current) if current == mac => continue,
                Some(_) => report.neighbours.replaced.push(entry),
                None => report.neighbours.added.push(entry),
            }
            adds.push(Change::set(Request::replace_neighbour(index, *ip, *mac)));
        }
        for (ip, mac) in &have {
            if !want.contains_key(ip) {
                deletes.push(Change::delete(Request::delete_neighbour(index, *ip)));
                report
                    .neighbours
                    .deleted
                    .push(Neighbour { ip: *ip, mac: *mac });
            }
        }
        Ok(())
    }

    fn diff_routes(
        &mut self,
        vxlan_index: Option<u32>,
        desired: &Desired,
        report: &mut ApplyReport,
        changes: &mut Vec<Change>,
    ) -> Result<(), RoutingError> {
        let mut ours: BTreeMap<IpNet, RouteInfo> = BTreeMap::new();
        let mut theirs: BTreeMap<IpNet, RouteProto> = BTreeMap::new();
        for ipv6 in [false, true] {
            for route in self.netlink.routes(ipv6)? {
                if route.protocol == RouteProto::PODNET {
                    // Two of ours to one destination (different metrics) only happen if someone
                    // else uses our protocol number; the first is the one kept up to date.
                    ours.entry(route.dst).or_insert(route);
                } else {
                    theirs.entry(route.dst).or_insert(route.protocol);
                }
            }
        }
        let mut deletes = Vec::new();
        for route in &desired.routes {
            let spec = route_spec(route, vxlan_index);
            match ours.remove(&route.dst) {
                Some(current) if current.satisfies(&spec) => continue,
                Some(_) => report.routes.replaced.push(route.dst),
                None => {
                    if let Some(protocol) = theirs.get(&route.dst) {
                        // NLM_F_REPLACE would take the other program's route over: leave it.
                        report.conflicts.push(RouteConflict {
                            dst: route.dst,
                            protocol: *protocol,
                        });
                        continue;
                    }
                    report.routes.added.push(route.dst);
                }
            }
            changes.push(Change::set(Request::replace_route(&spec)));
        }
        for (dst, current) in ours {
            deletes.push(Change::delete(Request::delete_route(&RouteSpec {
                dst,
                gateway: current.gateway,
                oif: current.oif,
                link_scope: current.link_scope,
                onlink: current.onlink,
                protocol: RouteProto::PODNET,
            })));
            report.routes.deleted.push(dst);
        }
        changes.append(&mut deletes);
        Ok(())
    }

    /// Sends `changes` in batches; collects every failure (a delete of something already gone
    /// is no failure).
    fn send(&mut self, changes: Vec<Change>) -> Result<(), RoutingError> {
        let attempted = changes.len();
        let mut errors = Vec::new();
        let mut changes = changes.into_iter().peekable();
        while changes.peek().is_some() {
            let (requests, deletes): (Vec<Request>, Vec<bool>) = changes
                .by_ref()
                .take(BATCH)
                .map(|c| (c.request, c.delete))
                .unzip();
            for (result, delete) in self.netlink.batch(requests).into_iter().zip(deletes) {
                match result {
                    Ok(_) => {}
                    Err(e) if delete && e.is_not_found() => {}
                    Err(e) => errors.push(e),
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RoutingError::Changes { attempted, errors })
        }
    }
}

// === impl ApplyReport ===

impl ApplyReport {
    /// True when the apply changed something in the kernel.
    pub fn changed(&self) -> bool {
        self.device.is_some()
            || !self.routes.is_empty()
            || !self.neighbours.is_empty()
            || !self.fdb.is_empty()
    }
}

// === impl Changes ===

impl<T> Changes<T> {
    /// Nothing added, replaced or deleted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries changed.
    pub fn len(&self) -> usize {
        self.added.len() + self.replaced.len() + self.deleted.len()
    }
}

impl<T> Default for Changes<T> {
    fn default() -> Self {
        Self {
            added: Vec::new(),
            replaced: Vec::new(),
            deleted: Vec::new(),
        }
    }
}

// === impl Change ===

impl Change {
    fn set(request: Request) -> Self {
        Self {
            request,
            delete: false,
        }
    }

    fn delete(request: Request) -> Self {
        Self {
            request,
            delete: true,
        }
    }
}

/// Refuses a desired state with vxlan entries but no device, before anything is changed.
fn check_consistent(desired: &Desired) -> Result<(), RoutingError> {
    if desired.vxlan.is_some() {
        return Ok(());
    }
    let what = if let Some(route) = desired.routes.iter().find(|r| r.encap == Encap::Vxlan) {
        format!("a vxlan route to {}", route.dst)
    } else if let Some(n) = desired.neighbours.first() {
        format!("neighbour {n}")
    } else if let Some(f) = desired.fdb.first() {
        format!("fdb entry {f}")
    } else {
        return Ok(());
    };
    Err(RoutingError::NoVxlanDevice { what })
}

/// The kernel route for `route`; `vxlan_index` is the vxlan device's (present whenever a vxlan
/// route is, see [`check_consistent`]).
fn route_spec(route: &Route, vxlan_index: Option<u32>) -> RouteSpec {
    let overlay = route.encap == Encap::Vxlan;
    RouteSpec {
        dst: route.dst,
        gateway: Some(route.gateway),
        // host-gw routes name no device: the kernel picks the one with the connected route to
        // the gateway, as `ip route add DST via GW` does.
        oif: if overlay { vxlan_index } else { None },
        link_scope: false,
        // The VTEP address is on no connected subnet (the device only has a /32); `onlink` tells
        // the kernel to take it as a neighbour on the device anyway.
        onlink: overlay,
        protocol: RouteProto::PODNET,
    }
}

/// IPv6 link-local addresses are the kernel's own on every device: not ours to manage.
fn is_link_local(addr: &IpNet) -> bool {
    match addr {
        IpNet::V6(v6) => v6.addr().segments()[0] & 0xffc0 == 0xfe80,
        IpNet::V4(_) => false,
    }
}
