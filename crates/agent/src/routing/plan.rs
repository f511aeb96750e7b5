//! The pure half of routing: which routes, neighbours, FDB entries and vxlan device a node
//! needs to reach its peers' pod CIDRs. No I/O, no clocks: same input, same output.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use podnet_kernel::netlink::{VxlanSpec, format_mac};

/// Name of the vxlan device (flannel's is `flannel.<VNI>`).
pub const VXLAN_DEVICE: &str = "podnet.1";

/// VXLAN network identifier of the overlay.
pub const VXLAN_VNI: u32 = 1;

/// UDP port of the overlay: Linux's historical VXLAN port, which flannel uses too, so a node
/// firewall opened for flannel lets podnet through.
pub const VXLAN_PORT: u16 = 8472;

/// Bytes VXLAN adds to each packet over an IPv4 underlay: outer IPv4 (20) + UDP (8) + VXLAN (8)
/// + inner Ethernet (14).
const VXLAN_OVERHEAD_V4: u32 = 50;

/// The same over an IPv6 underlay, whose header is 20 bytes longer.
const VXLAN_OVERHEAD_V6: u32 = 70;

/// How pod traffic crosses to other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Plain routes via the peer's underlay address; peers must share this node's L2 subnet.
    HostGw,
    /// A VXLAN overlay to every peer.
    Vxlan,
    /// host-gw to peers on this node's underlay subnet, vxlan to the others.
    CrossSubnet,
}

/// A backend name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown routing backend {value:?}: expected one of host-gw, vxlan, cross-subnet")]
pub struct UnknownBackend {
    /// The name that was given.
    pub value: String,
}

/// What [`desired`] needs to know about one node (this one or a peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRoute {
    /// Node name.
    pub name: String,
    /// The node's address on the underlay network (its `InternalIP`).
    pub underlay_ip: IpAddr,
    /// Prefix length of the node's underlay subnet; of this node's, it decides which peers are
    /// "on the same subnet" (reachable without a router).
    pub underlay_prefix: u8,
    /// The node's pod CIDRs (one per IP family).
    pub pod_cidrs: Vec<IpNet>,
    /// The MAC of the node's vxlan device, once its agent has published it. For this node,
    /// `None` means "derive it from the name" ([`vtep_mac`]).
    pub vtep_mac: Option<[u8; 6]>,
}

/// How a route reaches its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encap {
    /// host-gw: straight via the peer's underlay address.
    None,
    /// Through the vxlan device, via the peer's VTEP address, `onlink`.
    Vxlan,
}

/// A route to one peer pod CIDR.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// The peer's pod CIDR.
    pub dst: IpNet,
    /// Next hop: the peer's underlay address (host-gw) or its VTEP address (vxlan).
    pub gateway: IpAddr,
    /// How the route reaches the peer.
    pub encap: Encap,
}

/// A permanent neighbour entry on the vxlan device: a peer's VTEP address is at its VTEP MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Neighbour {
    /// The peer's VTEP address (the network address of its pod CIDR).
    pub ip: IpAddr,
    /// The peer's VTEP MAC.
    pub mac: [u8; 6],
}

/// A permanent FDB entry on the vxlan device: frames for a peer's VTEP MAC go to its underlay
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdbEntry {
    /// The peer's VTEP MAC.
    pub mac: [u8; 6],
    /// The peer's underlay address.
    pub dst: IpAddr,
}

/// The vxlan device this node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanPlan {
    /// Interface name ([`VXLAN_DEVICE`]).
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// UDP port.
    pub port: u16,
    /// This node's underlay address: the source of encapsulated packets.
    pub local: IpAddr,
    /// Underlay MTU minus the encapsulation overhead.
    pub mtu: u32,
    /// This node's VTEP MAC; the caller publishes it (a Node annotation) for peers to use.
    pub mac: [u8; 6],
    /// The device's addresses: the network address of each of this node's pod CIDRs as a host
    /// prefix (`10.244.1.0/32`), which peers use as the next hop to this node.
    pub addresses: Vec<IpNet>,
}

/// Something [`desired`] could not route, for the caller to log or surface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Warning {
    /// host-gw needs the peer on this node's L2 subnet; a route via a farther address would
    /// be refused by the kernel or black-holed by a router that knows no pod CIDRs.
    #[error(
        "host-gw cannot reach node {peer}: its underlay address {underlay_ip} is not on this \
         node's subnet{}; use the vxlan or cross-subnet backend",
        subnet.map(|s| format!(" {s}")).unwrap_or_default()
    )]
    NotOnSubnet {
        /// The peer.
        peer: String,
        /// Its underlay address.
        underlay_ip: IpAddr,
        /// This node's underlay subnet.
        subnet: Option<IpNet>,
    },
    /// host-gw cannot route a pod CIDR of one family via a next hop of the other.
    #[error(
        "host-gw cannot route pod CIDR {cidr} of node {peer} via its underlay address \
         {underlay_ip}, of the other IP family"
    )]
    FamilyMismatch {
        /// The peer.
        peer: String,
        /// Its pod CIDR that is left unrouted.
        cidr: IpNet,
        /// Its underlay address.
        underlay_ip: IpAddr,
    },
    /// The vxlan device tunnels over one underlay family: a peer on the other is unreachable.
    #[error(
        "vxlan cannot reach node {peer}: its underlay address {underlay_ip} and this node's \
         {local} are of different IP families"
    )]
    UnderlayFamilyMismatch {
        /// The peer.
        peer: String,
        /// Its underlay address.
        underlay_ip: IpAddr,
        /// This node's underlay address.
        local: IpAddr,
    },
    /// The peer's agent has not published its VTEP MAC yet; it will be routed once it has.
    #[error("node {peer} has not published its VTEP MAC yet; its pod CIDRs wait until it does")]
    NoVtepMac {
        /// The peer.
        peer: String,
    },
    /// The peer published a VTEP MAC that is all zeros or multicast.
    #[error("node {peer} published VTEP MAC {mac}, which is not a unicast address; not routed")]
    InvalidVtepMac {
        /// The peer.
        peer: String,
        /// The MAC it published.
        mac: String,
    },
    /// Two nodes published the same VTEP MAC; the one whose name sorts first (or this node)
    /// keeps it.
    #[error("node {peer} published VTEP MAC {mac}, which node {other} has too; not routed")]
    DuplicateVtepMac {
        /// The peer left unrouted.
        peer: String,
        /// The MAC.
        mac: String,
        /// The node that keeps it.
        other: String,
    },
    /// A peer claims addresses of this node's own pod CIDR.
    #[error("pod CIDR {cidr} of node {peer} overlaps this node's own {own}; not routed")]
    OverlapsOwn {
        /// The peer.
        peer: String,
        /// Its overlapping pod CIDR.
        cidr: IpNet,
        /// This node's pod CIDR it overlaps.
        own: IpNet,
    },
    /// Two peers claim overlapping pod CIDRs; the one whose node name sorts first wins.
    #[error("pod CIDR {cidr} of node {peer} overlaps {other_cidr} of node {other}; not routed")]
    OverlapsPeer {
        /// The peer left unrouted.
        peer: String,
        /// Its pod CIDR.
        cidr: IpNet,
        /// The peer that is routed.
        other: String,
        /// That peer's pod CIDR.
        other_cidr: IpNet,
    },
}

/// Everything this node's kernel should have to reach its peers' pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// One route per reachable peer pod CIDR, sorted by destination.
    pub routes: Vec<Route>,
    /// Permanent neighbour entries on the vxlan device, sorted.
    pub neighbours: Vec<Neighbour>,
    /// Permanent FDB entries on the vxlan device, sorted.
    pub fdb: Vec<FdbEntry>,
    /// The vxlan device, when the backend needs one (`None`: none should exist).
    pub vxlan: Option<VxlanPlan>,
    /// The MTU pod interfaces should have so that their packets fit every path to a peer: the
    /// underlay's with host-gw, the vxlan device's when some traffic may be encapsulated.
    pub pod_mtu: u32,
    /// Peers, or pod CIDRs of peers, that are left unrouted, and why.
    pub warnings: Vec<Warning>,
}

// === impl Backend ===

impl FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host-gw" => Ok(Self::HostGw),
            "vxlan" => Ok(Self::Vxlan),
            "cross-subnet" => Ok(Self::CrossSubnet),
            _ => Err(UnknownBackend {
                value: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HostGw => "host-gw",
            Self::Vxlan => "vxlan",
            Self::CrossSubnet => "cross-subnet",
        })
    }
}

// === impl NodeRoute ===

impl NodeRoute {
    /// The node's underlay subnet (`None` if the prefix length is too long for the address).
    pub fn underlay_subnet(&self) -> Option<IpNet> {
        IpNet::new(self.underlay_ip, self.underlay_prefix)
            .ok()
            .map(|n| n.trunc())
    }

    /// True when `peer`'s underlay address is on this node's underlay subnet.
    pub fn shares_subnet_with(&self, peer: &NodeRoute) -> bool {
        self.underlay_subnet()
            .is_some_and(|s| s.contains(&peer.underlay_ip))
    }
}

// === impl VxlanPlan ===

impl VxlanPlan {
    /// The device to create, over the underlay link `underlay_index`.
    pub fn spec(&self, underlay_index: Option<u32>) -> VxlanSpec {
        VxlanSpec {
            name: self.name.clone(),
            vni: self.vni,
            local: self.local,
            port: self.port,
            underlay_index,
            mtu: Some(self.mtu),
            mac: Some(self.mac),
            learning: false,
        }
    }
}

// === impl Neighbour, FdbEntry ===

impl fmt::Display for Neighbour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} lladdr {}", self.ip, format_mac(&self.mac))
    }
}

impl fmt::Display for FdbEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dst {}", format_mac(&self.mac), self.dst)
    }
}

/// This node's VTEP MAC, derived from its name: the same on every restart and every node that
/// computes it, so a restarted agent keeps the MAC its peers already programmed (flannel had
/// to persist it for that, flannel#1795). Locally administered and unicast.
pub fn vtep_mac(node_name: &str) -> [u8; 6] {
    // FNV-1a: tiny, and fixed forever (std's hasher may change between Rust releases, which
    // would change every node's MAC on upgrade).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node_name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = hash.to_be_bytes();
    // Bit 1 of the first octet: locally administered; bit 0 clear: unicast.
    [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

/// The vxlan device's MTU over an underlay of MTU `underlay_mtu` whose addresses are of
/// `underlay_ip`'s family.
pub fn vxlan_mtu(underlay_ip: IpAddr, underlay_mtu: u32) -> u32 {
    let overhead = if underlay_ip.is_ipv4() {
        VXLAN_OVERHEAD_V4
    } else {
        VXLAN_OVERHEAD_V6
    };
    underlay_mtu.saturating_sub(overhead)
}

/// What this node (`me`) needs to reach the pods of `peers` with `backend`, over an underlay of
/// MTU `underlay_mtu`.
///
/// `peers` may include `me` (skipped by name) and may come in any order: the result is the same.
/// Peers it cannot reach are left out and named in [`Desired::warnings`]. IPv6 pod CIDRs are
/// routed like IPv4 ones; over vxlan both families share the one device (the overlay is L2,
/// and each family's next hop gets its own neighbour entry), while host-gw and the direct half
/// of cross-subnet need a next hop of the CIDR's family — cross-subnet sends a CIDR of the
/// other family through the overlay instead.
pub fn desired(
    backend: Backend,
    me: &NodeRoute,
    peers: &[NodeRoute],
    underlay_mtu: u32,
) -> Desired {
    let mut out = Desired::default();
    let own: Vec<IpNet> = me.pod_cidrs.iter().map(IpNet::trunc).collect();
    out.pod_mtu = underlay_mtu;
    if backend != Backend::HostGw {
        out.pod_mtu = vxlan_mtu(me.underlay_ip, underlay_mtu);
        out.vxlan = Some(VxlanPlan {
            name: VXLAN_DEVICE.to_owned(),
            vni: VXLAN_VNI,
            port: VXLAN_PORT,
            local: me.underlay_ip,
            mtu: out.pod_mtu,
            mac: me.vtep_mac.unwrap_or_else(|| vtep_mac(&me.name)),
            addresses: own
                .iter()
                .map(|c| IpNet::from(c.network()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        });
    }

    // Name order makes the outcome independent of the input order, also for overlaps.
    let mut sorted: Vec<&NodeRoute> = peers.iter().filter(|p| p.name != me.name).collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut routed: Vec<(IpNet, &str)> = Vec::new();
    let mut neighbours = BTreeSet::new();
    let mut fdb = BTreeSet::new();
    // VTEP MACs in use, and by which node (mine first).
    let mut macs: BTreeMap<[u8; 6], String> =
        out.vxlan.iter().map(|v| (v.mac, me.name.clone())).collect();
    for peer in sorted {
        let same_subnet = me.shares_subnet_with(peer);
        let same_family = peer.underlay_ip.is_ipv4() == me.underlay_ip.is_ipv4();
        // Per-peer warnings are given once, however many CIDRs the peer has.
        let mut warned = false;
        let mut warn_once = |warnings: &mut Vec<Warning>, w: Warning| {
            if !std::mem::replace(&mut warned, true) {
                warnings.push(w);
            }
        };
        for cidr in peer.pod_cidrs.iter().map(IpNet::trunc) {
            if let Some(mine) = own.iter().find(|o| overlaps(o, &cidr)) {
                out.warnings.push(Warning::OverlapsOwn {
                    peer: peer.name.clone(),
                    cidr,
                    own: *mine,
                });
                continue;
            }
            if let Some((other_cidr, other)) = routed.iter().find(|(c, _)| overlaps(c, &cidr)) {
                out.warnings.push(Warning::OverlapsPeer {
                    peer: peer.name.clone(),
                    cidr,
                    other: (*other).to_owned(),
                    other_cidr: *other_cidr,
                });
                continue;
            }
            let direct_ok = same_subnet && cidr.addr().is_ipv4() == peer.underlay_ip.is_ipv4();
            let encap = match backend {
                Backend::HostGw if !same_subnet => {
                    warn_once(
                        &mut out.warnings,
                        Warning::NotOnSubnet {
                            peer: peer.name.clone(),
                            underlay_ip: peer.underlay_ip,
                            subnet: me.underlay_subnet(),
                        },
                    );
                    continue;
                }
                Backend::HostGw if !direct_ok => {
                    out.warnings.push(Warning::FamilyMismatch {
                        peer: peer.name.clone(),
                        cidr,
                        underlay_ip: peer.underlay_ip,
                    });
                    continue;
                }
                Backend::HostGw => Encap::None,
                Backend::CrossSubnet if direct_ok => Encap::None,
                Backend::Vxlan | Backend::CrossSubnet => Encap::Vxlan,
            };
            let route = match encap {
                Encap::None => Route {
                    dst: cidr,
                    gateway: peer.underlay_ip,
                    encap,
                },
                Encap::Vxlan => {
                    if !same_family {
                        warn_once(
                            &mut out.warnings,
                            Warning::UnderlayFamilyMismatch {
                                peer: peer.name.clone(),
                                underlay_ip: peer.underlay_ip,
                                local: me.underlay_ip,
                            },
                        );
                        continue;
                    }
                    let Some(mac) = peer.vtep_mac else {
                        warn_once(
                            &mut out.warnings,
                            Warning::NoVtepMac {
                                peer: peer.name.clone(),
                            },
                        );
                        continue;
                    };
                    // The FDB holds one remote per unicast MAC: a MAC that is not unicast, or
                    // that another node has, would send this peer's traffic astray.
                    if mac[0] & 0x01 != 0 || mac == [0; 6] {
                        warn_once(
                            &mut out.warnings,
                            Warning::InvalidVtepMac {
                                peer: peer.name.clone(),
                                mac: format_mac(&mac),
                            },
                        );
                        continue;
                    }
                    let owner = macs.entry(mac).or_insert_with(|| peer.name.clone());
                    if *owner != peer.name {
                        warn_once(
                            &mut out.warnings,
                            Warning::DuplicateVtepMac {
                                peer: peer.name.clone(),
                                mac: format_mac(&mac),
                                other: owner.clone(),
                            },
                        );
                        continue;
                    }
                    // The peer's VTEP address is its pod CIDR's network address (on its vxlan
                    // device); a permanent neighbour entry for it means the kernel never ARPs.
                    neighbours.insert(Neighbour {
                        ip: cidr.network(),
                        mac,
                    });
                    fdb.insert(FdbEntry {
                        mac,
                        dst: peer.underlay_ip,
                    });
                    Route {
                        dst: cidr,
                        gateway: cidr.network(),
                        encap,
                    }
                }
            };
            routed.push((cidr, &peer.name));
            out.routes.push(route);
        }
    }
    out.routes.sort();
    out.neighbours = neighbours.into_iter().collect();
    out.fdb = fdb.into_iter().collect();
    out
}

/// True when two prefixes share an address (of the same family).
fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}
