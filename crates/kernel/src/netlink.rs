//! A small synchronous rtnetlink client: links, addresses, routes.
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
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A failed netlink request: what we asked for, and the kernel's answer.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct NetlinkError {
    op: String,
    #[source]
    source: io::Error,
}

impl NetlinkError {
    fn new(op: impl Into<String>, source: io::Error) -> Self {
        Self {
            op: op.into(),
            source,
        }
    }

    /// The kernel's errno, if the kernel answered with one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
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

/// A route to install.
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

    /// Adds a route to the main table.
    pub fn add_route(route: &RouteSpec) -> Self {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family_of(route.dst.addr());
        msg.header.destination_prefix_length = route.dst.prefix_len();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = if route.link_scope {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
        msg.header.kind = RouteType::Unicast;
        if route.onlink {
            msg.header.flags = netlink_packet_route::route::RouteFlags::Onlink;
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
        Self {
            message: RouteNetlinkMessage::NewRoute(msg),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            op: format!(
                "adding route to {}{}",
                route.dst,
                route
                    .gateway
                    .map(|g| format!(" via {g}"))
                    .unwrap_or_default()
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

    /// Sets a link down, takes it off its bridge and moves it to link group `group`, in one
    /// request: a link on its way out then neither carries nor receives traffic, the kernel drops
    /// routes through it, and [`Netlink::delete_group`] can later delete it with others.
    pub fn isolate(&mut self, index: u32, group: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::empty();
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::Controller(0));
        msg.attributes.push(LinkAttribute::Group(group));
        self.ack(
            RouteNetlinkMessage::SetLink(msg),
            0,
            &format!("isolating link {index}"),
        )
    }

    /// Renames a link. The kernel refuses (`EBUSY`) while it is up, and `EEXIST` if the name is
    /// taken.
    pub fn rename(&mut self, index: u32, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        self.ack(
            RouteNetlinkMessage::SetLink(msg),
            0,
            &format!("renaming link {index} to {name}"),
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

    /// The routes of the main table for one address family.
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
    };
    for attr in m.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => link.mac = a.try_into().ok(),
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Controller(i) => link.master = Some(i),
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
    })
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}
