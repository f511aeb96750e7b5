//! A small synchronous rtnetlink client: links (veth, bridge, vxlan), addresses, routes,
//! neighbours (ARP/NDP) and the forwarding database of vxlan devices.
//!
//! Synchronous on purpose: the CNI plugin is a one-shot process that must start in a millisecond,
//! and a blocking socket with one request in flight is all it needs. The message types come from
//! `netlink-packet-route`; this file only builds requests and reads acknowledgements.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth, InfoVxlan, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A failed netlink request: what we asked for, and the kernel's answer.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {error}")]
pub struct NetlinkError {
    op: String,
    /// The kernel's answer: in the message, so not also a `source` (error chains printed with
    /// `{:#}` would say it twice).
    error: io::Error,
}

impl NetlinkError {
    fn new(op: impl Into<String>, error: io::Error) -> Self {
        Self {
            op: op.into(),
            error,
        }
    }

    /// The kernel's errno, if the kernel answered with one.
    pub fn errno(&self) -> Option<i32> {
        self.error.raw_os_error()
    }

    /// The object already exists (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// The object (link, address, route) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
        )
    }
}

/// Shorthand for results of netlink requests.
pub type Result<T, E = NetlinkError> = std::result::Result<T, E>;

/// What podnet needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, if the link has one.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: u32,
    /// Index of the bridge (or other controller) the link is enslaved to.
    pub master: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// The link kind (`veth`, `bridge`, `vxlan`, …) when the kernel reports one.
    pub kind: Option<String>,
    /// The link group (0 unless set).
    pub group: u32,
}

/// One end of a veth pair to create.
#[derive(Debug, Clone, Default)]
pub struct VethEnd<'a> {
    /// Name of this end.
    pub name: &'a str,
    /// MTU; the kernel default when `None`.
    pub mtu: Option<u32>,
    /// Hardware address; random when `None`.
    pub mac: Option<[u8; 6]>,
    /// The namespace to create this end in; the socket's own namespace when `None`.
    pub netns: Option<BorrowedFd<'a>>,
    /// The bridge to enslave this end to on creation.
    pub master: Option<u32>,
    /// Bring this end up on creation (saves a request per end).
    pub up: bool,
}

/// Who installed a route: the kernel's `rtm_protocol`, shown by `ip route` as `proto …`.
///
/// The kernel keeps it with the route and can match on it when deleting, so a program that marks
/// its routes with its own number can find exactly its own again after a restart, and delete
/// them without touching anyone else's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteProto(pub u8);

impl RouteProto {
    /// `proto kernel`: routes the kernel derives itself (connected subnets).
    pub const KERNEL: Self = Self(2);
    /// `proto boot`: what `ip route add` uses by default; the CNI plugin's routes.
    pub const BOOT: Self = Self(3);
    /// `proto static`: routes an administrator added on purpose.
    pub const STATIC: Self = Self(4);
    /// podnet's node agent: the routes to other nodes' pod CIDRs.
    ///
    /// 112 (`0x70`, ASCII `p`) is unassigned in `/etc/iproute2/rt_protos` and used by none of the
    /// routing daemons a node is likely to run beside podnet (Calico's Felix uses 80, BIRD 12,
    /// FRR's daemons 186–192, keepalived 18).
    pub const PODNET: Self = Self(0x70);
}

impl std::fmt::Display for RouteProto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::KERNEL => f.write_str("kernel"),
            Self::BOOT => f.write_str("boot"),
            Self::STATIC => f.write_str("static"),
            Self::PODNET => f.write_str("podnet"),
            Self(n) => write!(f, "{n}"),
        }
    }
}

/// A route to install, change or delete (main table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination prefix.
    pub dst: IpNet,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Output interface index, if any.
    pub oif: Option<u32>,
    /// `scope link` instead of `scope global`.
    pub link_scope: bool,
    /// Route even when the gateway is not on a connected subnet (`onlink`).
    pub onlink: bool,
    /// Who owns the route; [`RouteProto::BOOT`] is what `ip route add` would use.
    pub protocol: RouteProto,
}

/// A route read back from the kernel (main table only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination prefix (`0.0.0.0/0` for a default route).
    pub dst: IpNet,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Output interface index, if any.
    pub oif: Option<u32>,
    /// Who installed it.
    pub protocol: RouteProto,
    /// `scope link`.
    pub link_scope: bool,
    /// Installed with `onlink` (the gateway need not be on a connected subnet).
    pub onlink: bool,
}

impl RouteInfo {
    /// True when this route is what `spec` asks for: same destination, protocol, gateway, scope
    /// and `onlink`, and the same output interface if `spec` names one (without one, the kernel
    /// picks the interface and any is fine).
    pub fn satisfies(&self, spec: &RouteSpec) -> bool {
        self.dst == spec.dst
            && self.protocol == spec.protocol
            && self.gateway == spec.gateway
            && self.link_scope == spec.link_scope
            && self.onlink == spec.onlink
            && spec.oif.is_none_or(|oif| self.oif == Some(oif))
    }
}

/// A vxlan device to create (the kernel's `ip link add … type vxlan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Interface name.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// Source address of the encapsulated packets: this node's underlay address.
    pub local: IpAddr,
    /// UDP destination port (Linux's historical default, and flannel's, is 8472; IANA's 4789).
    pub port: u16,
    /// The underlay link the tunnel runs over; the kernel then caps the device MTU by it.
    pub underlay_index: Option<u32>,
    /// MTU; the kernel derives one from the underlay when `None`.
    pub mtu: Option<u32>,
    /// Hardware address (the VTEP MAC peers point their neighbour entries at); random if `None`.
    pub mac: Option<[u8; 6]>,
    /// Learn remote MACs from received packets. Off for a static overlay (flannel's
    /// `nolearning`): every remote VTEP is programmed in the FDB, so nothing needs learning.
    pub learning: bool,
}

/// A vxlan device as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanInfo {
    /// The link itself.
    pub link: Link,
    /// VXLAN network identifier.
    pub vni: Option<u32>,
    /// Source address, if one is set.
    pub local: Option<IpAddr>,
    /// UDP destination port.
    pub port: Option<u16>,
    /// The underlay link, if one is set.
    pub underlay_index: Option<u32>,
    /// Whether the device learns remote MACs.
    pub learning: Option<bool>,
}

impl VxlanInfo {
    /// True when the device was made with what `spec` asks for in the parts that cannot be
    /// changed in place (VNI, local address, port, underlay link, learning); MTU and MAC can be.
    pub fn same_tunnel(&self, spec: &VxlanSpec) -> bool {
        self.vni == Some(spec.vni)
            && self.local == Some(spec.local)
            && self.port == Some(spec.port)
            && self.underlay_index == spec.underlay_index
            && self.learning == Some(spec.learning)
    }
}

/// A link named by index or by name (the kernel looks a name up when the index is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkId<'a> {
    /// By interface index.
    Index(u32),
    /// By interface name.
    Name(&'a str),
}

impl LinkId<'_> {
    fn apply(self, msg: &mut LinkMessage) {
        match self {
            LinkId::Index(i) => msg.header.index = i,
            LinkId::Name(n) => msg.attributes.push(LinkAttribute::IfName(n.to_owned())),
        }
    }
}

impl std::fmt::Display for LinkId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkId::Index(i) => write!(f, "link {i}"),
            LinkId::Name(n) => write!(f, "link {n}"),
        }
    }
}

/// One request for [`Netlink::batch`]: several go to the kernel in one message buffer and are
/// answered in one go, which saves a round trip per request on a path like CNI ADD.
#[derive(Debug, Clone)]
pub struct Request {
    message: RouteNetlinkMessage,
    /// Flags beyond `NLM_F_REQUEST | NLM_F_ACK` (e.g. `NLM_F_CREATE | NLM_F_EXCL`).
    flags: u16,
    op: String,
}

impl Request {
    /// Looks a link up by name; its answer is the [`Link`], or a not-found error.
    pub fn link(name: &str) -> Self {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        Self {
            message: RouteNetlinkMessage::GetLink(msg),
            flags: 0,
            op: format!("looking up link {name}"),
        }
    }

    /// Sets a link administratively up.
    pub fn set_up(link: LinkId<'_>) -> Self {
        let mut msg = LinkMessage::default();
        link.apply(&mut msg);
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        Self {
            message: RouteNetlinkMessage::SetLink(msg),
            flags: 0,
            op: format!("setting {link} up"),
        }
    }

    /// Turns hairpin mode on a bridge port on or off.
    pub fn set_hairpin(link: LinkId<'_>, on: bool) -> Self {
        let mut msg = LinkMessage::default();
        link.apply(&mut msg);
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::PortData(
                InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(on)]),
            )]));
        Self {
            message: RouteNetlinkMessage::NewLink(msg),
            flags: 0,
            op: format!("setting hairpin mode on {link}"),
        }
    }

    /// Creates a veth pair; see [`Netlink::add_veth`].
    pub fn add_veth(local: &VethEnd<'_>, peer: &VethEnd<'_>) -> Self {
        let mut peer_msg = LinkMessage::default();
        end_message(&mut peer_msg, peer);
        let mut msg = LinkMessage::default();
        end_message(&mut msg, local);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        Self {
            message: RouteNetlinkMessage::NewLink(msg),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            op: format!("creating veth pair {} / {}", local.name, peer.name),
        }
    }

    /// Adds an address to a link; see [`Netlink::add_address`].
    pub fn add_address(index: u32, addr: IpNet, nodad: bool) -> Self {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = addr.prefix_len();
        msg.header.family = family_of(addr.addr());
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        if let IpNet::V4(v4) = addr
            && v4.prefix_len() < 31
        {
            msg.attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        }
        if nodad && addr.addr().is_ipv6() {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        Self {
            message: RouteNetlinkMessage::NewAddress(msg),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            op: format!("adding address {addr} to link {index}"),
        }
    }

    /// Adds a route to the main table; fails with `EEXIST` if one with its destination and
    /// metric is there.
    pub fn add_route(route: &RouteSpec) -> Self {
        Self {
            message: RouteNetlinkMessage::NewRoute(route_message(route)),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            op: format!("adding route {}", describe_route(route)),
        }
    }

    /// Adds a route to the main table, or replaces the one with its destination and metric
    /// (whoever installed it); see [`Netlink::replace_route`].
    pub fn replace_route(route: &RouteSpec) -> Self {
        Self {
            message: RouteNetlinkMessage::NewRoute(route_message(route)),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            op: format!("replacing route {}", describe_route(route)),
        }
    }

    /// Deletes the route to `route.dst` of protocol `route.protocol`; see
    /// [`Netlink::delete_route`].
    pub fn delete_route(route: &RouteSpec) -> Self {
        let mut msg = route_message(route);
        // `scope nowhere` matches a route of any scope, as `ip route del` does; the protocol,
        // gateway and interface still have to match.
        msg.header.scope = RouteScope::NoWhere;
        msg.header.flags = RouteFlags::empty();
        Self {
            message: RouteNetlinkMessage::DelRoute(msg),
            flags: 0,
            op: format!("deleting route {}", describe_route(route)),
        }
    }

    /// Sets a permanent neighbour (ARP or NDP) entry: `ip` is at `mac` on link `index`.
    pub fn replace_neighbour(index: u32, ip: IpAddr, mac: [u8; 6]) -> Self {
        let mut msg = neighbour_message(family_of(ip), index);
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        Self {
            message: RouteNetlinkMessage::NewNeighbour(msg),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            op: format!(
                "setting neighbour {ip} lladdr {} on link {index}",
                format_mac(&mac)
            ),
        }
    }

    /// Deletes the neighbour entry for `ip` on link `index`.
    pub fn delete_neighbour(index: u32, ip: IpAddr) -> Self {
        let mut msg = neighbour_message(family_of(ip), index);
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
        Self {
            message: RouteNetlinkMessage::DelNeighbour(msg),
            flags: 0,
            op: format!("deleting neighbour {ip} on link {index}"),
        }
    }

    /// Adds a remote VTEP `dst` for `mac` to the forwarding database of vxlan device `index`
    /// (`bridge fdb append MAC dev DEV dst DST`); see [`Netlink::append_fdb`].
    pub fn append_fdb(index: u32, mac: [u8; 6], dst: IpAddr) -> Self {
        Self {
            message: RouteNetlinkMessage::NewNeighbour(fdb_message(index, mac, dst)),
            flags: NLM_F_CREATE | NLM_F_APPEND,
            op: format!(
                "adding fdb entry {} dst {dst} on link {index}",
                format_mac(&mac)
            ),
        }
    }

    /// Points `mac` at remote VTEP `dst` in the forwarding database of vxlan device `index`,
    /// creating the entry or moving it from the remote it had (`bridge fdb replace`); see
    /// [`Netlink::replace_fdb`].
    pub fn replace_fdb(index: u32, mac: [u8; 6], dst: IpAddr) -> Self {
        Self {
            message: RouteNetlinkMessage::NewNeighbour(fdb_message(index, mac, dst)),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            op: format!(
                "setting fdb entry {} dst {dst} on link {index}",
                format_mac(&mac)
            ),
        }
    }

    /// Removes the remote VTEP `dst` for `mac` from the forwarding database of link `index`.
    pub fn delete_fdb(index: u32, mac: [u8; 6], dst: IpAddr) -> Self {
        Self {
            message: RouteNetlinkMessage::DelNeighbour(fdb_message(index, mac, dst)),
            flags: 0,
            op: format!(
                "deleting fdb entry {} dst {dst} on link {index}",
                format_mac(&mac)
            ),
        }
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A netlink route socket bound to one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

// === impl Netlink ===

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Opens a socket inside the namespace `ns`; it keeps working there from any thread.
    pub fn open_in(ns: &File) -> io::Result<Self> {
        crate::netns::visit(ns, Self::open)?
    }

    /// Looks a link up by name; `None` if there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_REQUEST,
            &format!("looking up link {name}"),
        ) {
            Ok(replies) => Ok(replies.into_iter().find_map(link_from)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link in the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
            "listing links",
        )?;
        Ok(replies.into_iter().filter_map(link_from).collect())
    }

    /// Creates a bridge. Fails with `EEXIST` (see [`NetlinkError::is_exists`]) if the name is taken.
    pub fn add_bridge(&mut self, name: &str, mtu: Option<u32>, mac: Option<[u8; 6]>) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.ack(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating bridge {name}"),
        )
    }

    /// Creates a vxlan device (down). Fails with `EEXIST` if the name is taken. With an
    /// underlay link, the kernel silently caps the MTU at what that link can carry (its MTU
    /// minus the encapsulation), and later refuses a larger one with `EINVAL`.
    pub fn add_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        let mut data = vec![InfoVxlan::Id(spec.vni)];
        data.push(match spec.local {
            IpAddr::V4(v4) => InfoVxlan::Local(v4),
            IpAddr::V6(v6) => InfoVxlan::Local6(v6),
        });
        if let Some(index) = spec.underlay_index {
            data.push(InfoVxlan::Link(index));
        }
        data.push(InfoVxlan::Port(spec.port));
        data.push(InfoVxlan::Learning(spec.learning));
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(spec.name.clone()));
        if let Some(mtu) = spec.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = spec.mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(data)),
        ]));
        self.ack(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!(
                "creating vxlan {} (vni {}, local {}, port {})",
                spec.name, spec.vni, spec.local, spec.port
            ),
        )
    }

    /// Looks a vxlan device up by name; `None` if there is no link of that name. A link of
    /// another kind is returned with its tunnel fields `None`.
    pub fn vxlan(&mut self, name: &str) -> Result<Option<VxlanInfo>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let replies = match self.request(
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_REQUEST,
            &format!("looking up vxlan {name}"),
        ) {
            Ok(replies) => replies,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(replies.into_iter().find_map(vxlan_from))
    }

    /// Creates a veth pair in one request; each end may be placed in its own namespace.
    ///
    /// Creating the peer directly in the pod's namespace under its final name saves the move and
    /// the rename; the kernel refuses with `EEXIST` if either name is taken in its namespace.
    pub fn add_veth(&mut self, local: &VethEnd<'_>, peer: &VethEnd<'_>) -> Result<()> {
        self.send(Request::add_veth(local, peer)).map(drop)
    }

    /// Sets a link administratively up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.send(Request::set_up(LinkId::Index(index))).map(drop)
    }

    /// Sets a link down and moves it to link group `group`, in one request: a link on its way
    /// out then neither carries nor receives traffic (a bridge port that is down is disabled),
    /// the kernel drops routes through it, and [`Netlink::delete_group`] can later delete it
    /// with others. It stays on its bridge: taking it off costs an RCU grace period under the
    /// RTNL lock, which every other link change of the node waits for, and the deletion takes
    /// it off anyway.
    pub fn isolate(&mut self, index: u32, group: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::empty();
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::Group(group));
        self.ack(
            RouteNetlinkMessage::SetLink(msg),
            0,
            &format!("isolating link {index}"),
        )
    }

    /// Sets a link's MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.ack(
            RouteNetlinkMessage::SetLink(msg),
            0,
            &format!("setting the MTU of link {index} to {mtu}"),
        )
    }

    /// Sets a link's hardware address.
    pub fn set_address(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.ack(
            RouteNetlinkMessage::SetLink(msg),
            0,
            &format!(
                "setting the hardware address of link {index} to {}",
                format_mac(&mac)
            ),
        )
    }

    /// Turns promiscuous mode on a link on or off.
    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = if on {
            LinkFlags::Promisc
        } else {
            LinkFlags::empty()
        };
        msg.header.change_mask = LinkFlags::Promisc;
        self.ack(
            RouteNetlinkMessage::SetLink(msg),
            0,
            &format!("setting promiscuous mode on link {index}"),
        )
    }

    /// Turns hairpin mode on a bridge port on or off, so a pod can reach itself through a
    /// service address that its node translates back to it.
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        self.send(Request::set_hairpin(LinkId::Index(index), on))
            .map(drop)
    }

    /// Deletes a link by name; `Ok(false)` when there was none.
    pub fn delete_link_by_name(&mut self, name: &str) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.ack(
            RouteNetlinkMessage::DelLink(msg),
            0,
            &format!("deleting link {name}"),
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes every link in link group `group` in one request, so the kernel pays its RCU grace
    /// periods once for all of them; `Ok(false)` when the group is empty.
    pub fn delete_group(&mut self, group: u32) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Group(group));
        match self.ack(
            RouteNetlinkMessage::DelLink(msg),
            0,
            &format!("deleting link group {group}"),
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds an address to a link. With `nodad`, IPv6 addresses skip duplicate address detection
    /// (which would otherwise keep them unusable for about a second).
    pub fn add_address(&mut self, index: u32, addr: IpNet, nodad: bool) -> Result<()> {
        self.send(Request::add_address(index, addr, nodad))
            .map(drop)
    }

    /// Removes an address from a link; `Ok(false)` when the link did not have it.
    pub fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<bool> {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = addr.prefix_len();
        msg.header.family = family_of(addr.addr());
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        absent_is_ok(self.ack(
            RouteNetlinkMessage::DelAddress(msg),
            0,
            &format!("deleting address {addr} from link {index}"),
        ))
    }

    /// Every address in the namespace, as `(link index, address/prefix)`.
    pub fn addresses(&mut self) -> Result<Vec<(u32, IpNet)>> {
        let replies = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
            "listing addresses",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => {
                    let ip = a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Local(ip) => Some(*ip),
                        _ => None,
                    });
                    let ip = ip.or_else(|| {
                        a.attributes.iter().find_map(|attr| match attr {
                            AddressAttribute::Address(ip) => Some(*ip),
                            _ => None,
                        })
                    })?;
                    Some((a.header.index, IpNet::new(ip, a.header.prefix_len).ok()?))
                }
                _ => None,
            })
            .collect())
    }

    /// Adds a route to the main table.
    pub fn add_route(&mut self, route: &RouteSpec) -> Result<()> {
        self.send(Request::add_route(route)).map(drop)
    }

    /// Adds a route to the main table, or replaces the one with the same destination and
    /// metric — whichever protocol installed it: callers that must not take over other
    /// programs' routes look first (see [`Netlink::routes`]).
    pub fn replace_route(&mut self, route: &RouteSpec) -> Result<()> {
        self.send(Request::replace_route(route)).map(drop)
    }

    /// Deletes the route to `route.dst` that protocol `route.protocol` installed (and that has
    /// `route`'s gateway and output interface, where those are given); `Ok(false)` when there
    /// is none. The kernel matches the protocol, so another program's route to the same
    /// destination is never deleted.
    pub fn delete_route(&mut self, route: &RouteSpec) -> Result<bool> {
        absent_is_ok(self.send(Request::delete_route(route)).map(drop))
    }

    /// Sets a permanent neighbour entry: `ip` is at `mac` on link `index` (`ip neigh replace …
    /// nud permanent`), so the kernel never has to resolve it.
    pub fn replace_neighbour(&mut self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        self.send(Request::replace_neighbour(index, ip, mac))
            .map(drop)
    }

    /// Deletes the neighbour entry for `ip` on link `index`; `Ok(false)` when there is none.
    pub fn delete_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<bool> {
        absent_is_ok(self.send(Request::delete_neighbour(index, ip)).map(drop))
    }

    /// The permanent neighbour entries (IPv4 and IPv6) on link `index`, as `(ip, mac)`.
    /// Entries the kernel resolved itself come and go, so they are left out.
    pub fn neighbours(&mut self, index: u32) -> Result<Vec<(IpAddr, [u8; 6])>> {
        let mut msg = NeighbourMessage::default();
        // The kernel filters a neighbour dump by NDA_IFINDEX; the check below is for kernels
        // that ignore it.
        msg.attributes.push(NeighbourAttribute::IfIndex(index));
        let replies = self.request(
            RouteNetlinkMessage::GetNeighbour(msg),
            NLM_F_REQUEST | NLM_F_DUMP,
            &format!("listing neighbours on link {index}"),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n)
                    if n.header.ifindex == index
                        && n.header.state == NeighbourState::Permanent
                        && matches!(
                            n.header.family,
                            AddressFamily::Inet | AddressFamily::Inet6
                        ) =>
                {
                    let (ip, mac) = neighbour_fields(&n);
                    Some((ip?, mac?))
                }
                _ => None,
            })
            .collect())
    }

    /// Adds remote VTEP `dst` for `mac` to the forwarding database of vxlan device `index`, as
    /// a permanent entry (`bridge fdb append MAC dev DEV dst DST self permanent`). Appending
    /// what is already there succeeds and changes nothing. Only the all-zeros and multicast
    /// MACs (flood lists) take several remotes: for a unicast MAC that has one, the kernel
    /// ignores the append without an error — move it with [`Netlink::replace_fdb`].
    pub fn append_fdb(&mut self, index: u32, mac: [u8; 6], dst: IpAddr) -> Result<()> {
        self.send(Request::append_fdb(index, mac, dst)).map(drop)
    }

    /// Points `mac` at remote VTEP `dst` in the forwarding database of vxlan device `index`, as
    /// a permanent entry: created if missing, its remote changed in place if it had another
    /// (`bridge fdb replace MAC dev DEV dst DST self permanent`).
    pub fn replace_fdb(&mut self, index: u32, mac: [u8; 6], dst: IpAddr) -> Result<()> {
        self.send(Request::replace_fdb(index, mac, dst)).map(drop)
    }

    /// Removes remote VTEP `dst` for `mac` from the forwarding database of link `index`;
    /// `Ok(false)` when it is not there.
    pub fn delete_fdb(&mut self, index: u32, mac: [u8; 6], dst: IpAddr) -> Result<bool> {
        absent_is_ok(self.send(Request::delete_fdb(index, mac, dst)).map(drop))
    }

    /// The permanent forwarding-database entries with a remote address on link `index`, as
    /// `(mac, dst)`: one per remote, so a MAC with two remotes appears twice.
    pub fn fdb(&mut self, index: u32) -> Result<Vec<([u8; 6], IpAddr)>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        // The kernel ignores filters in a bridge-family dump of this shape: filter here.
        let replies = self.request(
            RouteNetlinkMessage::GetNeighbour(msg),
            NLM_F_REQUEST | NLM_F_DUMP,
            &format!("listing fdb entries on link {index}"),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n)
                    if n.header.ifindex == index
                        && n.header.family == AddressFamily::Bridge
                        && n.header.state == NeighbourState::Permanent =>
                {
                    let (dst, mac) = neighbour_fields(&n);
                    Some((mac?, dst?))
                }
                _ => None,
            })
            .collect())
    }

    /// The routes of the main table for one address family, each with the protocol that
    /// installed it (a program finds its own by [`RouteProto`]).
    pub fn routes(&mut self, ipv6: bool) -> Result<Vec<RouteInfo>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let replies = self.request(
            RouteNetlinkMessage::GetRoute(msg),
            NLM_F_REQUEST | NLM_F_DUMP,
            "listing routes",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.table == RouteHeader::RT_TABLE_MAIN =>
                {
                    route_from(&r)
                }
                _ => None,
            })
            .collect())
    }

    /// Sends one [`Request`] and waits for its answer.
    fn send(&mut self, request: Request) -> Result<Vec<RouteNetlinkMessage>> {
        self.request(
            request.message,
            NLM_F_REQUEST | NLM_F_ACK | request.flags,
            &request.op,
        )
    }

    /// Sends `requests` in one message buffer and returns each one's answer, in order: the link
    /// for a [`Request::link`], `None` for the others. The kernel runs them in order and keeps
    /// going past a failed one, so later requests should not depend on earlier ones succeeding
    /// (or their errors are read as consequences of the first).
    pub fn batch(&mut self, requests: Vec<Request>) -> Vec<Result<Option<Link>>> {
        let first_seq = self.seq.wrapping_add(1);
        let mut out = Vec::new();
        let mut ops = Vec::with_capacity(requests.len());
        for request in requests {
            self.seq = self.seq.wrapping_add(1);
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_ACK | request.flags;
            header.sequence_number = self.seq;
            let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request.message));
            packet.finalize();
            let start = out.len();
            out.resize(start + packet.buffer_len(), 0);
            packet.serialize(&mut out[start..]);
            ops.push(request.op);
        }
        let mut answers: Vec<Option<Result<Option<Link>>>> = Vec::new();
        answers.resize_with(ops.len(), || None);
        let fail_all = |e: io::Error, ops: &[String]| -> Vec<Result<Option<Link>>> {
            ops.iter()
                .map(|op| {
                    Err(NetlinkError::new(
                        op,
                        io::Error::new(e.kind(), e.to_string()),
                    ))
                })
                .collect()
        };
        if ops.is_empty() {
            return Vec::new();
        }
        if let Err(e) = self.socket.send(&out, 0) {
            return fail_all(e, &ops);
        }
        let mut links: Vec<Option<Link>> = vec![None; ops.len()];
        while answers.iter().any(Option::is_none) {
            let n = match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) => return fail_all(e, &ops),
            };
            let mut offset = 0;
            while offset < n {
                let bytes = &self.buf[offset..n];
                let framed = NetlinkBuffer::new_checked(bytes)
                    .map(|b| (b.length() as usize, b.sequence_number()));
                let (len, seq) = match framed {
                    Ok((len, seq)) if len > 0 => (len, seq),
                    // Unframeable bytes: nothing after them can be attributed, so rather than
                    // wait for answers that may never be recognised, fail what is left.
                    _ => {
                        return answers
                            .into_iter()
                            .zip(&ops)
                            .map(|(a, op)| {
                                a.unwrap_or_else(|| {
                                    Err(NetlinkError::new(
                                        op,
                                        io::Error::new(
                                            io::ErrorKind::InvalidData,
                                            "malformed netlink answer",
                                        ),
                                    ))
                                })
                            })
                            .collect();
                    }
                };
                offset += (len + 3) & !3;
                let k = seq.wrapping_sub(first_seq) as usize;
                if k >= ops.len() || answers[k].is_some() {
                    continue; // a late answer to an earlier request
                }
                let reply = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(
                    &bytes[..len.min(bytes.len())],
                ) {
                    Ok(reply) => reply,
                    Err(e) => {
                        answers[k] = Some(Err(NetlinkError::new(
                            &ops[k],
                            io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                        )));
                        continue;
                    }
                };
                match reply.payload {
                    NetlinkPayload::Error(err) => {
                        answers[k] = Some(match err.code {
                            None => Ok(links[k].take()),
                            Some(code) => Err(NetlinkError::new(
                                &ops[k],
                                io::Error::from_raw_os_error(-code.get()),
                            )),
                        });
                    }
                    NetlinkPayload::InnerMessage(inner) => links[k] = link_from(inner),
                    _ => {}
                }
            }
        }
        answers.into_iter().flatten().collect()
    }

    /// Sends a request that expects only an acknowledgement.
    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &str) -> Result<()> {
        self.request(msg, NLM_F_REQUEST | NLM_F_ACK | flags, op)
            .map(drop)
    }

    /// Sends one request and collects the data messages of its answer, up to the ACK or DONE.
    ///
    /// A dump that the kernel marks inconsistent (`NLM_F_DUMP_INTR`: the table changed while it
    /// was read, so entries may be missing or doubled) is read again, a few times at most.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        const DUMP_ATTEMPTS: usize = 5;
        let mut attempt = 1;
        loop {
            let (replies, interrupted) = self.request_once(msg.clone(), flags, op)?;
            if !interrupted {
                return Ok(replies);
            }
            if attempt == DUMP_ATTEMPTS {
                return Err(NetlinkError::new(
                    op,
                    io::Error::new(
                        io::ErrorKind::Interrupted,
                        format!("the dump changed while it was read, {DUMP_ATTEMPTS} times"),
                    ),
                ));
            }
            attempt += 1;
        }
    }

    /// One request: its data messages, and whether a dump was interrupted.
    fn request_once(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool)> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket
            .send(&out, 0)
            .map_err(|e| NetlinkError::new(op, e))?;

        let expect_ack = flags & NLM_F_ACK != 0;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let n = self
                .socket
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|e| NetlinkError::new(op, e))?;
            let mut offset = 0;
            while offset < n {
                let bytes = &self.buf[offset..n];
                let len = NetlinkBuffer::new_checked(bytes)
                    .map_err(|e| {
                        NetlinkError::new(
                            op,
                            io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                        )
                    })?
                    .length() as usize;
                if len == 0 {
                    break;
                }
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(
                    &bytes[..len.min(bytes.len())],
                )
                .map_err(|e| {
                    NetlinkError::new(
                        op,
                        io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                    )
                })?;
                offset += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue; // a late answer to an earlier request
                }
                interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
                match reply.payload {
                    NetlinkPayload::Error(err) => {
                        return match err.code {
                            None => Ok((replies, interrupted && dump)),
                            Some(code) => Err(NetlinkError::new(
                                op,
                                io::Error::from_raw_os_error(-code.get()),
                            )),
                        };
                    }
                    // A dump that failed part-way ends with a negative errno in DONE.
                    NetlinkPayload::Done(done) if done.code < 0 => {
                        return Err(NetlinkError::new(
                            op,
                            io::Error::from_raw_os_error(-done.code),
                        ));
                    }
                    NetlinkPayload::Done(_) => return Ok((replies, interrupted && dump)),
                    NetlinkPayload::InnerMessage(inner) => {
                        replies.push(inner);
                        if !dump && !expect_ack {
                            return Ok((replies, false));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

impl AsRawFd for Netlink {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

fn end_message(msg: &mut LinkMessage, end: &VethEnd<'_>) {
    if end.up {
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
    }
    let attrs = &mut msg.attributes;
    attrs.push(LinkAttribute::IfName(end.name.to_owned()));
    if let Some(mtu) = end.mtu {
        attrs.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = end.mac {
        attrs.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(fd) = end.netns {
        attrs.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
    }
    if let Some(master) = end.master {
        attrs.push(LinkAttribute::Controller(master));
    }
}

fn family_of(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Maps "there was nothing to delete" to `Ok(false)`.
fn absent_is_ok(result: Result<()>) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// `10.244.2.0/24 via 10.244.2.0 dev 7 onlink proto podnet`, for error messages.
fn describe_route(route: &RouteSpec) -> String {
    let mut out = route.dst.to_string();
    if let Some(gw) = route.gateway {
        out.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = route.oif {
        out.push_str(&format!(" dev {oif}"));
    }
    if route.onlink {
        out.push_str(" onlink");
    }
    out.push_str(&format!(" proto {}", route.protocol));
    out
}

fn route_message(route: &RouteSpec) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family_of(route.dst.addr());
    msg.header.destination_prefix_length = route.dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::from(route.protocol.0);
    msg.header.scope = if route.link_scope {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    msg.header.kind = RouteType::Unicast;
    if route.onlink {
        msg.header.flags = RouteFlags::Onlink;
    }
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(
            route.dst.network(),
        )));
    if let Some(gw) = route.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    msg
}

/// A neighbour message for a permanent entry on link `index`.
fn neighbour_message(family: AddressFamily, index: u32) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg
}

/// A forwarding-database entry of the device itself (`NTF_SELF`), not of a bridge it is in.
fn fdb_message(index: u32, mac: [u8; 6], dst: IpAddr) -> NeighbourMessage {
    let mut msg = neighbour_message(AddressFamily::Bridge, index);
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(dst)));
    msg
}

/// A neighbour message's destination address and 6-byte link-layer address, where present.
fn neighbour_fields(n: &NeighbourMessage) -> (Option<IpAddr>, Option<[u8; 6]>) {
    let mut ip = None;
    let mut mac = None;
    for attr in &n.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => ip = Some((*v4).into()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                ip = Some((*v6).into());
            }
            // In a bridge-family (fdb) message the parser cannot know the remote's family and
            // leaves the bytes raw; their length tells.
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(bytes.as_slice()).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(bytes.as_slice())
                        .ok()
                        .map(IpAddr::from),
                    _ => None,
                };
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice()).ok();
            }
            _ => {}
        }
    }
    (ip, mac)
}

fn vxlan_from(msg: RouteNetlinkMessage) -> Option<VxlanInfo> {
    let RouteNetlinkMessage::NewLink(m) = &msg else {
        return None;
    };
    let mut vni = None;
    let mut local = None;
    let mut port = None;
    let mut underlay_index = None;
    let mut learning = None;
    let data = m.attributes.iter().filter_map(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => Some(infos),
        _ => None,
    });
    for info in data.flatten() {
        if let LinkInfo::Data(InfoData::Vxlan(fields)) = info {
            for field in fields {
                match field {
                    InfoVxlan::Id(id) => vni = Some(*id),
                    InfoVxlan::Local(v4) => local = Some(IpAddr::V4(*v4)),
                    InfoVxlan::Local6(v6) => local = Some(IpAddr::V6(*v6)),
                    InfoVxlan::Port(p) => port = Some(*p),
                    // The kernel reports 0 when the device has no underlay link.
                    InfoVxlan::Link(i) if *i != 0 => underlay_index = Some(*i),
                    InfoVxlan::Learning(l) => learning = Some(*l),
                    _ => {}
                }
            }
        }
    }
    Some(VxlanInfo {
        link: link_from(msg)?,
        vni,
        local,
        port,
        underlay_index,
        learning,
    })
}

fn link_from(msg: RouteNetlinkMessage) -> Option<Link> {
    let RouteNetlinkMessage::NewLink(m) = msg else {
        return None;
    };
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        master: None,
        up: m.header.flags.contains(LinkFlags::Up),
        kind: None,
        group: 0,
    };
    for attr in m.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => link.mac = a.try_into().ok(),
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Controller(i) => link.master = Some(i),
            LinkAttribute::Group(g) => link.group = g,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

fn route_from(r: &RouteMessage) -> Option<RouteInfo> {
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    for attr in &r.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = ip_of(a),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    let v6 = r.header.address_family == AddressFamily::Inet6;
    let dst = dst.unwrap_or(if v6 {
        IpAddr::from([0u16; 8])
    } else {
        IpAddr::from([0u8; 4])
    });
    Some(RouteInfo {
        dst: IpNet::new(dst, r.header.destination_prefix_length).ok()?,
        gateway,
        oif,
        protocol: RouteProto(u8::from(r.header.protocol)),
        link_scope: r.header.scope == RouteScope::Link,
        onlink: r.header.flags.contains(RouteFlags::Onlink),
    })
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}
