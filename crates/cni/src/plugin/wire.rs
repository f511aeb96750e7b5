//! The kernel side of an attachment: the veth pair, the node bridge or host routes, and the pod's
//! addresses and routes. Runs in the node's namespace (the plugin's own) and reaches into the
//! pod's through a netlink socket opened there.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsFd;

use ipnet::IpNet;
use podnet_kernel::netlink::{
    LinkId, Netlink, NetlinkError, Request, RouteProto, RouteSpec, VethEnd, format_mac,
};
use podnet_kernel::{netns, sysctl};

use crate::error::{CniError, Code, Result};
use crate::plugin::names;

/// How the pod is connected to its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// The host end joins a node bridge; pods of the node share one L2 segment.
    Bridge {
        /// The bridge's name.
        name: String,
        /// Put each range's gateway address on the bridge (the node routes for its pods).
        is_gateway: bool,
        /// Route the pod's default route through that gateway.
        is_default_gateway: bool,
        /// Let a pod's packets come back to it through the bridge port (hairpin).
        hairpin: bool,
        /// Put the bridge in promiscuous mode.
        promisc: bool,
    },
    /// Routed: a /32 (/128) per pod, a host route to its veth, no bridge.
    Ptp,
}

/// Everything needed to wire one pod interface.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// Container ID, from `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// Interface name inside the pod, from `CNI_IFNAME`.
    pub ifname: &'a str,
    /// The pod's namespace path, from `CNI_NETNS` (reported as the interface's sandbox).
    pub netns_path: &'a str,
    /// Bridge or routed.
    pub topology: Topology,
    /// MTU of both veth ends (and of a bridge this plugin creates).
    pub mtu: Option<u32>,
    /// The pod's addresses, each with its subnet's prefix and the range's gateway.
    pub addresses: Vec<(IpNet, IpAddr)>,
    /// Extra routes for the pod (`ipam.routes`); a missing gateway means the range's gateway.
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
    /// Keep IPv6 duplicate address detection on (`enabledad`).
    pub enable_dad: bool,
}

/// What [`setup`] made, for the CNI result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wired {
    /// `(name, mac, sandbox)` of each interface: the bridge (bridge mode), the host veth, the pod's.
    pub interfaces: Vec<(String, String, Option<String>)>,
    /// The address each pod address is configured with (`/32` in ptp mode).
    pub addresses: Vec<(IpNet, IpAddr)>,
}

/// The kernel gives `lo` index 1 in every network namespace.
const LOOPBACK_INDEX: u32 = 1;

fn kernel(e: NetlinkError) -> CniError {
    CniError::new(Code::Kernel, e.to_string())
}

/// The gateway and prefix to configure on the pod: its subnet in bridge mode, a host route in
/// ptp mode (the veth has no broadcast domain, so everything goes through the gateway).
fn pod_address(topology: &Topology, addr: IpNet) -> IpNet {
    match topology {
        Topology::Bridge { .. } => addr,
        Topology::Ptp => {
            IpNet::new(addr.addr(), if addr.addr().is_ipv4() { 32 } else { 128 }).unwrap_or(addr)
        }
    }
}

fn host_prefix(ip: IpAddr) -> IpNet {
    IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).unwrap_or_else(|_| IpNet::from(ip))
}

/// Wires the pod. On error the caller undoes it with [`teardown`] (everything made here hangs off
/// the host veth, whose name derives from the attachment).
///
/// Requests that do not depend on each other's answers go to the kernel in batches
/// ([`Netlink::batch`]): four round trips in bridge mode where one per request would be ten.
pub fn setup(plan: &Plan<'_>, pod_ns: &File) -> Result<Wired> {
    let mut host = Netlink::open()
        .map_err(|e| CniError::new(Code::Kernel, format!("opening netlink: {e}")))?;
    let mut pod = Netlink::open_in(pod_ns).map_err(|e| {
        CniError::new(
            Code::Kernel,
            format!("opening netlink in {}: {e}", plan.netns_path),
        )
    })?;
    let veth = names::host_veth(plan.container_id, plan.ifname);
    let mut interfaces = Vec::new();

    // The node side: the bridge, its gateway addresses, the veth pair and the bridge port.
    let mut node_side = Vec::new();
    let bridge = match &plan.topology {
        Topology::Bridge {
            name,
            is_gateway,
            promisc,
            ..
        } => {
            let br = ensure_bridge(&mut host, name, plan.mtu)?;
            if *promisc {
                host.set_promisc(br.0, true).map_err(kernel)?;
            }
            if *is_gateway {
                for (addr, gw) in &plan.addresses {
                    let gw_net = IpNet::new(*gw, addr.prefix_len()).unwrap_or(addr.trunc());
                    node_side.push((Request::add_address(br.0, gw_net, true), Expect::MayExist));
                }
            }
            interfaces.push((name.clone(), br.1, None));
            Some(br.0)
        }
        Topology::Ptp => None,
    };
    // The node routes for its pods when it is their gateway (as the reference bridge and ptp do).
    if matches!(
        plan.topology,
        Topology::Ptp
            | Topology::Bridge {
                is_gateway: true,
                ..
            }
    ) {
        enable_forwarding(&plan.addresses)?;
    }

    let host_mac = names::mac(&["host", plan.container_id, plan.ifname]);
    let pod_mac = names::mac(&["pod", plan.container_id, plan.ifname]);
    let local = VethEnd {
        name: &veth,
        mtu: plan.mtu,
        mac: Some(host_mac),
        netns: None,
        master: bridge,
        up: true,
    };
    let peer = VethEnd {
        name: plan.ifname,
        mtu: plan.mtu,
        mac: Some(pod_mac),
        netns: Some(pod_ns.as_fd()),
        master: None,
        // The kernel cannot open a veth end before its peer exists (ENOTCONN), and the pod end
        // is made first; it comes up below.
        up: false,
    };
    let hairpin = matches!(plan.topology, Topology::Bridge { hairpin: true, .. });
    let port_setup = |reqs: &mut Vec<(Request, Expect)>| {
        if hairpin {
            reqs.push((Request::set_hairpin(LinkId::Name(&veth), true), Expect::Ok));
        }
    };
    node_side.push((Request::add_veth(&local, &peer), Expect::Ok));
    port_setup(&mut node_side);
    let outcome = run_batch(&mut host, node_side);
    if let Err(e) = outcome {
        if !e.is_exists() {
            return Err(kernel(e));
        }
        // Our host end survived an interrupted earlier ADD (its name is ours alone), an earlier
        // incarnation is still being reaped (its pod end may still hold CNI_IFNAME), or the pod
        // already has the interface. Remove what is ours and try once more.
        if host
            .link(&veth)
            .map_err(kernel)?
            .is_some_and(|old| old.group == names::RETIRED_GROUP)
        {
            host.delete_link_by_name(&veth).map_err(kernel)?;
        }
        if pod.link(plan.ifname).map_err(kernel)?.is_some() {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "CNI_IFNAME: interface {:?} already exists in {}",
                    plan.ifname, plan.netns_path
                ),
            ));
        }
        host.delete_link_by_name(&veth).map_err(kernel)?;
        let mut retry = vec![(Request::add_veth(&local, &peer), Expect::Ok)];
        port_setup(&mut retry);
        run_batch(&mut host, retry).map_err(kernel)?;
    }
    interfaces.push((veth.clone(), format_mac(&host_mac), None));

    // Inside the pod: DAD off before the interface comes up, `lo` up, find the interface.
    let has_v6 = plan.addresses.iter().any(|(a, _)| a.addr().is_ipv6());
    if has_v6 && !plan.enable_dad {
        let ifname = plan.ifname;
        netns::visit(pod_ns, || {
            sysctl::set(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0")
        })
        .and_then(|r| r)
        .map_err(|e| CniError::new(Code::Kernel, format!("disabling DAD on {ifname}: {e}")))?;
    }
    let mut found = pod.batch(vec![
        // Every namespace's loopback device has index 1.
        Request::set_up(LinkId::Index(LOOPBACK_INDEX)),
        Request::link(plan.ifname),
    ]);
    let pod_link = found.pop().and_then(|r| r.transpose()).transpose();
    let lo_up = found.pop();
    let pod_link = pod_link.map_err(kernel)?.ok_or_else(|| {
        CniError::new(
            Code::Kernel,
            format!("{} did not appear in {}", plan.ifname, plan.netns_path),
        )
    })?;
    if let Some(Err(e)) = lo_up {
        return Err(kernel(e));
    }

    // Its addresses, up, and its routes, in one batch (the kernel applies them in order).
    let mut pod_side = Vec::new();
    let mut configured = Vec::new();
    for (addr, gw) in &plan.addresses {
        let addr = pod_address(&plan.topology, *addr);
        pod_side.push((
            Request::add_address(pod_link.index, addr, !plan.enable_dad),
            Expect::Ok,
        ));
        configured.push((addr, *gw));
    }
    pod_side.push((Request::set_up(LinkId::Index(pod_link.index)), Expect::Ok));
    let is_default_gw = matches!(
        plan.topology,
        Topology::Bridge {
            is_default_gateway: true,
            ..
        }
    );
    let route = |dst: IpNet, gateway: Option<IpAddr>, link_scope: bool| {
        (
            Request::add_route(&RouteSpec {
                dst,
                gateway,
                oif: Some(pod_link.index),
                link_scope,
                onlink: false,
                protocol: RouteProto::BOOT,
            }),
            Expect::MayExist,
        )
    };
    for (addr, gw) in &plan.addresses {
        if plan.topology == Topology::Ptp {
            // The gateway is reachable only through an explicit link route; the rest of the pod
            // subnet through the gateway (as the reference ptp plugin does), since the pod's /32
            // has no connected route.
            pod_side.push(route(host_prefix(*gw), None, true));
            pod_side.push(route(addr.trunc(), Some(*gw), false));
        }
        if is_default_gw {
            let any = if addr.addr().is_ipv4() {
                "0.0.0.0/0"
            } else {
                "::/0"
            };
            let dst: IpNet = any
                .parse()
                .map_err(|_| CniError::new(Code::Kernel, "default route"))?;
            pod_side.push(route(dst, Some(*gw), false));
        }
    }
    for (dst, gw) in &plan.routes {
        let gw = gw.or_else(|| {
            plan.addresses
                .iter()
                .find(|(a, _)| a.addr().is_ipv4() == dst.addr().is_ipv4())
                .map(|(_, g)| *g)
        });
        if is_default_gw && dst.prefix_len() == 0 {
            continue; // already added as the default route
        }
        pod_side.push(route(*dst, gw, false));
    }
    run_batch(&mut pod, pod_side).map_err(kernel)?;

    // ptp: the gateway address on the host end and a host route back to each pod address.
    if plan.topology == Topology::Ptp {
        let host_link = host.link(&veth).map_err(kernel)?.ok_or_else(|| {
            CniError::new(Code::Kernel, format!("veth {veth} vanished after creation"))
        })?;
        let mut back = Vec::new();
        for (addr, gw) in &plan.addresses {
            back.push((
                Request::add_address(host_link.index, host_prefix(*gw), true),
                Expect::MayExist,
            ));
            back.push((
                Request::add_route(&RouteSpec {
                    dst: host_prefix(addr.addr()),
                    gateway: None,
                    oif: Some(host_link.index),
                    link_scope: true,
                    onlink: false,
                    protocol: RouteProto::BOOT,
                }),
                Expect::MayExist,
            ));
        }
        run_batch(&mut host, back).map_err(kernel)?;
    }

    interfaces.push((
        plan.ifname.to_owned(),
        format_mac(&pod_mac),
        Some(plan.netns_path.to_owned()),
    ));
    Ok(Wired {
        interfaces,
        addresses: configured,
    })
}

/// Whether a request in a batch may find its object already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    MayExist,
}

/// Runs a batch and returns its first error that `Expect` does not allow; errors after it are
/// taken as its consequences.
fn run_batch(
    nl: &mut Netlink,
    requests: Vec<(Request, Expect)>,
) -> std::result::Result<(), NetlinkError> {
    let (requests, expects): (Vec<Request>, Vec<Expect>) = requests.into_iter().unzip();
    for (answer, expect) in nl.batch(requests).into_iter().zip(expects) {
        match answer {
            Ok(_) => {}
            Err(e) if expect == Expect::MayExist && e.is_exists() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Finds or creates the node bridge and sets it up; returns `(index, mac)`.
fn ensure_bridge(nl: &mut Netlink, name: &str, mtu: Option<u32>) -> Result<(u32, String)> {
    if let Some(br) = nl.link(name).map_err(kernel)? {
        if br.kind.as_deref() != Some("bridge") {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "bridge: {name:?} exists but is a {} device, not a bridge",
                    br.kind.unwrap_or_default()
                ),
            ));
        }
        if !br.up {
            nl.set_up(br.index).map_err(kernel)?;
        }
        return Ok((br.index, br.mac.map(|m| format_mac(&m)).unwrap_or_default()));
    }
    // An explicit MAC keeps the bridge's address fixed; otherwise it follows the lowest port MAC
    // and pods' ARP entries for the gateway go stale as pods come and go.
    let mac = names::mac(&["bridge", name]);
    match nl.add_bridge(name, mtu, Some(mac)) {
        Err(e) if !e.is_exists() => return Err(kernel(e)), // EEXIST: a concurrent ADD made it
        _ => {}
    }
    let br = nl.link(name).map_err(kernel)?.ok_or_else(|| {
        CniError::new(
            Code::Kernel,
            format!("bridge {name} vanished after creation"),
        )
    })?;
    nl.set_up(br.index).map_err(kernel)?;
    Ok((br.index, br.mac.map(|m| format_mac(&m)).unwrap_or_default()))
}

/// The node routes for its pods.
fn enable_forwarding(addresses: &[(IpNet, IpAddr)]) -> Result<()> {
    let err = |e: std::io::Error| CniError::new(Code::Kernel, format!("enabling forwarding: {e}"));
    if addresses.iter().any(|(a, _)| a.addr().is_ipv4()) {
        sysctl::set("net/ipv4/ip_forward", "1").map_err(err)?;
    }
    if addresses.iter().any(|(a, _)| a.addr().is_ipv6()) {
        sysctl::set("net/ipv6/conf/all/forwarding", "1").map_err(err)?;
    }
    Ok(())
}

/// Removes attachments' host veths (the pod end and the ptp host routes go with them); touches
/// nothing inside the pods' namespaces.
///
/// Deleting a veth costs the kernel some 16 ms (it waits out RCU grace periods), more than
/// everything else a DEL does. So each veth is taken out of service at once — set down (a down
/// bridge port is disabled) and moved to the retired link group, one request — and a detached
/// process deletes the whole group afterwards (see [`reaper`]), so the runtime does not wait for
/// it and concurrent DELs share one deletion. It keeps its name (a rename costs another RCU
/// grace period under the RTNL lock): a later ADD of the same attachment that finds it in the
/// retired group deletes it synchronously.
pub struct Teardown {
    host: Netlink,
    retired: Vec<String>,
}

impl Teardown {
    /// Opens a netlink socket in the node's namespace (the calling thread's).
    pub fn new() -> Result<Self> {
        let host = Netlink::open()
            .map_err(|e| CniError::new(Code::Kernel, format!("opening netlink: {e}")))?;
        Ok(Self {
            host,
            retired: Vec::new(),
        })
    }

    /// Takes the attachment's host veth out of service; succeeds when there is none.
    pub fn retire(&mut self, container_id: &str, ifname: &str) -> Result<()> {
        let veth = names::host_veth(container_id, ifname);
        let Some(link) = self.host.link(&veth).map_err(kernel)? else {
            return Ok(());
        };
        // Retired already (a repeated DEL): only the reaper is left to make sure of.
        let retired = link.group == names::RETIRED_GROUP && !link.up;
        let isolated = if retired {
            Ok(())
        } else {
            self.host.isolate(link.index, names::RETIRED_GROUP)
        };
        match isolated {
            Ok(()) => self.retired.push(veth),
            // A concurrent DEL's reaper deleted it meanwhile: done.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(kernel(e)),
        }
        Ok(())
    }

    /// Hands the retired veths to a detached reaper, or deletes them here if none can be started.
    pub fn finish(mut self) -> Result<()> {
        if self.retired.is_empty() || reaper::spawn().is_ok() {
            return Ok(());
        }
        // The whole group, not only ours: a DEL that saw this one about to start a reaper left
        // its veths to it.
        self.host
            .delete_group(names::RETIRED_GROUP)
            .map(drop)
            .map_err(kernel)
    }
}

/// Removes one attachment's host veth; see [`Teardown`].
pub fn teardown(container_id: &str, ifname: &str) -> Result<()> {
    let mut t = Teardown::new()?;
    t.retire(container_id, ifname)?;
    t.finish()
}

/// The detached process that deletes retired veths.
///
/// The plugin binary installs itself as the reaper ([`reaper::install`]) and serves
/// [`reaper::ARG`]; library users that do not (tests) get synchronous deletion.
///
/// One reaper per burst: a reaper that has not started deleting yet holds an exclusive `flock`
/// on its network namespace (the nsfs file, so there is one lock per namespace and no file to
/// leave behind; the reaper's membership keeps the namespace, and so the lock's inode, alive).
/// A DEL that retired its veths and finds the lock taken leaves them to that reaper, which
/// deletes the group only after letting the lock go. Otherwise it takes the lock itself and
/// passes it to the reaper it starts (as the reaper's stdin), so no other DEL starts one in
/// between. Starting a process costs more than the rest of a DEL: a burst of DELs pays it once.
pub mod reaper {
    use std::fs::{File, TryLockError};
    use std::os::fd::AsFd;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;

    use podnet_kernel::netlink::Netlink;

    use crate::plugin::names::RETIRED_GROUP;

    /// The argument that makes the plugin binary a reaper: `podnet-cni --reap-links`.
    pub const ARG: &str = "--reap-links";

    static EXECUTABLE: OnceLock<PathBuf> = OnceLock::new();

    /// Makes `executable` (the plugin binary itself) the reaper.
    pub fn install(executable: PathBuf) {
        let _ = EXECUTABLE.set(executable);
    }

    /// The calling thread's network namespace: its `flock` says a reaper is pending there.
    const PENDING_LOCK: &str = "/proc/thread-self/ns/net";

    /// Makes sure a reaper will delete the retired group of the calling thread's namespace after
    /// now: one that is pending already, or a new one, which is not waited for. Its own process
    /// group and no output streams: the runtime sees the plugin's output end when the plugin
    /// exits.
    pub(super) fn spawn() -> std::io::Result<()> {
        use std::os::unix::process::CommandExt;
        let exe = EXECUTABLE
            .get()
            .ok_or_else(|| std::io::Error::other("no reaper installed"))?;
        let pending = File::open(PENDING_LOCK)?;
        match pending.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        Command::new(exe)
            .arg(ARG)
            // The lock goes with the reaper; ours closes when the command is dropped.
            .stdin(Stdio::from(pending))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map(drop)
    }

    /// How long a reaper waits before deleting: DELs come in bursts (a rollout, a node drain),
    /// and one deletion of the whole group then holds the kernel's RTNL lock once instead of
    /// once per pod, while the burst's DELs are still running.
    const COALESCE: std::time::Duration = std::time::Duration::from_millis(50);

    /// The reaper's work: deletes every link in the retired group of the calling thread's
    /// namespace, in one request. Nothing but retired veths is ever in that group.
    pub fn run() -> Result<(), String> {
        std::thread::sleep(COALESCE);
        // Veths retired from here on may miss this deletion: their DELs must start a reaper.
        // (Unlocking a stdin that holds no lock, as from a reaper started by hand, does nothing;
        // should it fail, the lock still goes when this process exits, and deleting comes first.)
        if let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() {
            let _ = File::from(fd).unlock();
        }
        let mut nl = Netlink::open().map_err(|e| format!("opening netlink: {e}"))?;
        nl.delete_group(RETIRED_GROUP)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Verifies an attachment against what ADD reported: the host veth (on its bridge), the pod
/// interface, its addresses and routes. The error names the first thing that differs.
pub fn check(plan: &Plan<'_>, pod_ns: &File, expected_routes: &[IpNet]) -> Result<()> {
    let fail = |msg: String| CniError::new(Code::Kernel, msg);
    let mut host = Netlink::open().map_err(|e| fail(format!("opening netlink: {e}")))?;
    let veth = names::host_veth(plan.container_id, plan.ifname);
    let host_link = host.link(&veth).map_err(kernel)?.ok_or_else(|| {
        fail(format!(
            "host veth {veth} of {}/{} is missing",
            plan.container_id, plan.ifname
        ))
    })?;
    if let Topology::Bridge { name, .. } = &plan.topology {
        let br = host
            .link(name)
            .map_err(kernel)?
            .ok_or_else(|| fail(format!("bridge {name} is missing")))?;
        if host_link.master != Some(br.index) {
            return Err(fail(format!(
                "host veth {veth} is not attached to bridge {name}"
            )));
        }
    }
    let mut pod = Netlink::open_in(pod_ns)
        .map_err(|e| fail(format!("opening netlink in {}: {e}", plan.netns_path)))?;
    let link = pod.link(plan.ifname).map_err(kernel)?.ok_or_else(|| {
        fail(format!(
            "interface {} is missing in {}",
            plan.ifname, plan.netns_path
        ))
    })?;
    if !link.up {
        return Err(fail(format!(
            "interface {} in {} is down",
            plan.ifname, plan.netns_path
        )));
    }
    let have: Vec<IpNet> = pod
        .addresses()
        .map_err(kernel)?
        .into_iter()
        .filter(|(i, _)| *i == link.index)
        .map(|(_, a)| a)
        .collect();
    for (addr, _) in &plan.addresses {
        if !have.iter().any(|h| h.addr() == addr.addr()) {
            return Err(fail(format!(
                "interface {} in {} lacks address {addr} (from the ADD result); it has [{}]",
                plan.ifname,
                plan.netns_path,
                have.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    for dst in expected_routes {
        let routes = pod.routes(dst.addr().is_ipv6()).map_err(kernel)?;
        if !routes.iter().any(|r| r.dst == *dst) {
            return Err(fail(format!(
                "route to {dst} is missing in {}",
                plan.netns_path
            )));
        }
    }
    Ok(())
}
