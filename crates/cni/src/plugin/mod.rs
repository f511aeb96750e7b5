//! The CNI commands: what podnet-cni does for ADD, DEL, CHECK, STATUS, GC and VERSION.
//!
//! One binary plays the roles a reference setup splits over several plugins, chosen from the
//! request alone:
//! - **interface** (the usual one): a veth into the pod, bridge or routed, with built-in IPAM,
//!   hostPorts and `ipMasq` — the reference `bridge`/`ptp` + `host-local` + `portmap` in one step;
//! - **loopback**: `CNI_IFNAME=lo` and no `ipam` — brings `lo` up, as the reference `loopback`;
//! - **ipam**: the config's `type` is another plugin and `ipam.type` is podnet-cni — allocates
//!   addresses only, as `host-local` does when a main plugin delegates to it;
//! - **chained**: no `ipam` section — a plugin later in a conflist: applies `portMappings` to the
//!   addresses of `prevResult`, as the reference `portmap`.
//!
//! Every attachment is keyed by `(CNI_CONTAINERID, CNI_IFNAME)`. Before touching the kernel, ADD
//! records in the store what it is about to create, so a DEL or GC can undo it even after a crash
//! and without the runtime resending anything; kernel object names derive from the key.

mod delegate;
pub mod names;
pub mod nft;
mod policy_gate;
pub mod wire;

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CniError, Code, Result};
use crate::ipam::{AttachmentKey, DEFAULT_DATA_DIR, IpamConfig, IpamState, Store};
use crate::spec::{CniResult, Command, Env, Interface, IpConfig, Mode, NetConf, Route};
use nft::{AttachmentRules, HostPort, Masq};
use wire::{Plan, Topology};

/// The plugin's `type`, as runtimes find it in `CNI_PATH`.
pub const PLUGIN_TYPE: &str = "podnet-cni";

/// Which part a request asks podnet-cni to play (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Interface,
    /// An interface whose addresses come from another IPAM plugin (`ipam.type`).
    Delegated(String),
    Loopback,
    Ipam,
    Chained,
}

fn role(env: &Env, conf: &NetConf) -> Role {
    if conf.plugin_type != PLUGIN_TYPE && conf.ipam_type() == Some(PLUGIN_TYPE) {
        Role::Ipam
    } else if conf.ipam.is_none() && env.ifname.as_deref() == Some("lo") {
        Role::Loopback
    } else if conf.ipam.is_none() {
        Role::Chained
    } else if let Some(t) = conf
        .ipam_type()
        .filter(|t| !t.is_empty() && *t != PLUGIN_TYPE && *t != "host-local")
    {
        Role::Delegated(t.to_owned())
    } else {
        Role::Interface
    }
}

/// What the store remembers about an attachment besides its addresses: enough for DEL and GC
/// to undo ADD without the runtime's help.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    /// A veth was (or is about to be) created for this attachment.
    #[serde(default)]
    interface: bool,
    /// Its nft rules.
    #[serde(default)]
    rules: AttachmentRules,
}

impl Record {
    fn from_data(data: &Value) -> Record {
        serde_json::from_value(data.clone()).unwrap_or_default()
    }

    fn to_data(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Runs one command; returns the JSON to print on success (nothing for DEL, CHECK, GC, STATUS).
pub fn run(env: &Env, stdin: &[u8]) -> Result<Option<Value>> {
    if env.command == Command::Version {
        let requested = crate::spec::requested_version(stdin);
        return Ok(Some(crate::spec::version_answer(requested.as_deref())));
    }
    let conf = NetConf::parse(stdin)?;
    let version = conf.cni_version;
    match env.command {
        Command::Check if !version.supports_check() => {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!("cniVersion: CHECK needs 0.4.0 or later, the config says {version}"),
            ));
        }
        Command::Status | Command::Gc if !version.supports_status_and_gc() => {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "cniVersion: {} needs 1.1.0, the config says {version}",
                    env.command.as_str()
                ),
            ));
        }
        _ => {}
    }
    let role = role(env, &conf);
    match env.command {
        Command::Add => add(env, &conf, role).map(|r| Some(r.to_json(version))),
        Command::Del => del(env, &conf, role).map(|()| None),
        Command::Check => check(env, &conf, role).map(|()| None),
        Command::Status => status(env, &conf, role).map(|()| None),
        Command::Gc => gc(env, &conf, role).map(|()| None),
        Command::Version => Ok(None),
    }
}

// === the pieces every role uses ===

fn ipam_config(conf: &NetConf) -> Result<IpamConfig> {
    let raw = conf
        .ipam
        .as_ref()
        .ok_or_else(|| CniError::new(Code::InvalidConfig, "ipam: missing"))?;
    let mut cfg = IpamConfig::parse(raw)?;
    if let Some(ranges) = &conf.runtime_config.ip_ranges {
        cfg.with_runtime_ranges(ranges)?;
    }
    Ok(cfg)
}

/// The store for this network. Roles without an `ipam` section use the same default place
/// (`dataDir` at the top level may move it, for tests).
fn store_for(conf: &NetConf, ipam: Option<&IpamConfig>) -> Result<Store> {
    let dir = match ipam {
        Some(cfg) => cfg.data_dir.clone(),
        None => conf
            .raw
            .get("dataDir")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
    };
    Store::open(&dir, &conf.name)
}

fn key(env: &Env) -> Result<AttachmentKey> {
    Ok(AttachmentKey::new(env.container_id()?, env.ifname()?))
}

/// Static addresses asked for through `CNI_ARGS IP=`, the `ips` capability or `args.cni.ips`.
fn requested_ips(env: &Env, conf: &NetConf) -> Result<Vec<IpAddr>> {
    let mut ips = env.args.ips()?;
    for ip in conf.runtime_config.ips.iter().chain(&conf.args.ips) {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    Ok(ips)
}

/// Opens the pod's namespace, refusing the plugin's own (a recycled `/proc/PID/ns/net` can
/// point at the host; wiring or unwiring "the pod" would then change the node).
fn open_pod_netns(path: &Path) -> Result<File> {
    let ns = podnet_kernel::netns::open(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            Code::UnknownContainer
        } else {
            Code::Io
        };
        CniError::new(
            code,
            format!("CNI_NETNS: cannot open {}: {e}", path.display()),
        )
    })?;
    match podnet_kernel::netns::is_current(&ns) {
        Ok(false) => Ok(ns),
        Ok(true) => Err(CniError::new(
            Code::InvalidNetns,
            format!(
                "CNI_NETNS: {} is the plugin's own network namespace, not a pod's",
                path.display()
            ),
        )),
        Err(e) => Err(CniError::new(
            Code::Io,
            format!("CNI_NETNS: inspecting {}: {e}", path.display()),
        )),
    }
}

fn apply_rules(script: &str) -> Result<()> {
    podnet_kernel::nft::apply(script).map_err(|e| CniError::new(Code::Kernel, e.to_string()))
}

/// Removes an attachment's rules. A record can claim a hostPort that another pod holds (its ADD
/// was killed, or failed on that very conflict); then only the ports that really lead to this
/// attachment's chain are removed, as the table itself says.
fn remove_rules(rules: &AttachmentRules) -> Result<()> {
    if rules.is_empty() || apply_rules(&nft::render_del(rules)).is_ok() {
        return Ok(());
    }
    // Some of our map keys now lead to another attachment (it took the port after us):
    // remove only what is still ours.
    let listed = podnet_kernel::nft::list(&["table", "inet", nft::TABLE])
        .map_err(|e| CniError::new(Code::Kernel, e.to_string()))?;
    let owned = nft::owned_keys(&listed, &rules.id);
    let mut mine = rules.clone();
    mine.host_ports
        .retain(|hp| owned.contains(&nft::host_port_key(hp)));
    apply_rules(&nft::render_del(&mine))
}

/// The nft rules an attachment needs: its hostPorts and masquerade entries.
fn rules_for(
    env: &Env,
    conf: &NetConf,
    addresses: &[IpNet],
    masq: bool,
) -> Result<AttachmentRules> {
    let mut rules = AttachmentRules {
        id: names::attachment_id(env.container_id()?, env.ifname()?),
        ..Default::default()
    };
    for pm in &conf.runtime_config.port_mappings {
        for pod in addresses {
            // A mapping bound to one node address applies to pod addresses of its family only.
            if pm
                .host_ip
                .is_some_and(|h| h.is_ipv4() != pod.addr().is_ipv4())
            {
                continue;
            }
            rules.host_ports.push(HostPort {
                protocol: pm.protocol.as_str().to_owned(),
                host_port: pm.host_port,
                host_ip: pm.host_ip,
                pod: *pod,
                container_port: pm.container_port,
            });
        }
    }
    if masq {
        rules.masq = addresses.iter().map(|pod| Masq { pod: *pod }).collect();
    }
    Ok(rules)
}

fn route(dst: IpNet, gw: Option<IpAddr>) -> Route {
    Route {
        dst,
        gw,
        mtu: None,
        advmss: None,
        priority: None,
        table: None,
        scope: None,
    }
}

// === ADD ===

fn add(env: &Env, conf: &NetConf, role: Role) -> Result<CniResult> {
    match role {
        Role::Interface => add_interface(env, conf),
        Role::Delegated(ipam) => add_delegated(env, conf, &ipam),
        Role::Loopback => add_loopback(env),
        Role::Ipam => add_ipam_only(env, conf),
        Role::Chained => add_chained(env, conf),
    }
}

fn add_interface(env: &Env, conf: &NetConf) -> Result<CniResult> {
    let netns_path = env.netns()?;
    let pod_ns = open_pod_netns(netns_path)?;
    let ipam = ipam_config(conf)?;
    let requested = requested_ips(env, conf)?;
    let store = store_for(conf, Some(&ipam))?;
    let key = key(env)?;

    // Allocate and record what we are about to build, in one locked step. A record that already
    // says `interface` belongs to a live attachment (a repeated ADD): it is neither overwritten
    // nor undone if this ADD fails.
    let (addresses, rules, before, live_before) = store.update(|state| {
        let before = state.attachment(&key).cloned();
        let live_before = before
            .as_ref()
            .is_some_and(|a| Record::from_data(&a.data).interface);
        let allocated = state.allocate(&ipam, &key, &requested)?;
        let addresses = addresses_of(&ipam, &allocated)?;
        let nets: Vec<IpNet> = addresses.iter().map(|(a, _)| *a).collect();
        let rules = rules_for(env, conf, &nets, conf.ip_masq)?;
        if !live_before {
            let record = Record {
                interface: true,
                rules: rules.clone(),
            };
            state.attachments.entry(key.clone()).or_default().data = record.to_data();
        }
        Ok((addresses, rules, before, live_before))
    })?;

    let routes: Vec<(IpNet, Option<IpAddr>)> = ipam.routes.iter().map(|r| (r.dst, r.gw)).collect();
    let wired = wire_and_rule(env, conf, &routes, &pod_ns, netns_path, &addresses, &rules);
    match wired {
        Ok(result) => Ok(result),
        Err(e) if live_before => Err(e),
        Err(e) => {
            // Roll back everything this ADD made; the original error is what the runtime sees.
            // Addresses held before (an IPAM-only ADD for the same key) stay, with their record.
            if undo(env, &store, before.is_none()).is_ok()
                && let Some(before) = before
            {
                let _ = store.update(|s| {
                    s.attachments.insert(key.clone(), before);
                    Ok(())
                });
            }
            Err(e)
        }
    }
}

/// ADD with another IPAM plugin: it allocates (and remembers) the addresses; podnet-cni wires
/// them and records the attachment as usual, and gives them back through the plugin if wiring
/// fails.
fn add_delegated(env: &Env, conf: &NetConf, ipam_plugin: &str) -> Result<CniResult> {
    let netns_path = env.netns()?;
    let pod_ns = open_pod_netns(netns_path)?;
    let store = store_for(conf, None)?;
    let key = key(env)?;
    let allocated = delegate::run(env, ipam_plugin, "ADD", &conf.raw)?.unwrap_or_default();
    let release = |e: CniError| {
        let _ = delegate::run(env, ipam_plugin, "DEL", &conf.raw);
        e
    };
    let addresses: Vec<(IpNet, IpAddr)> = allocated
        .ips
        .iter()
        .map(|ip| {
            // Without a gateway from IPAM, the subnet's first address (as the reference bridge).
            let gateway = ip.gateway.unwrap_or_else(|| first_host(ip.address));
            (ip.address, gateway)
        })
        .collect();
    if addresses.is_empty() {
        return Err(release(CniError::new(
            Code::InvalidConfig,
            format!("ipam.type: {ipam_plugin} returned no addresses"),
        )));
    }
    let nets: Vec<IpNet> = addresses.iter().map(|(a, _)| *a).collect();
    let rules = rules_for(env, conf, &nets, conf.ip_masq).map_err(&release)?;
    let live_before = store
        .update(|state| {
            let live = state
                .attachment(&key)
                .is_some_and(|a| Record::from_data(&a.data).interface);
            if !live {
                let record = Record {
                    interface: true,
                    rules: rules.clone(),
                };
                state.attachments.entry(key.clone()).or_default().data = record.to_data();
            }
            Ok(live)
        })
        .map_err(&release)?;
    let routes: Vec<(IpNet, Option<IpAddr>)> =
        allocated.routes.iter().map(|r| (r.dst, r.gw)).collect();
    let wired = wire_and_rule(env, conf, &routes, &pod_ns, netns_path, &addresses, &rules);
    match wired {
        Ok(mut result) => {
            if result.dns == Default::default() {
                result.dns = allocated.dns;
            }
            Ok(result)
        }
        Err(e) if live_before => Err(e),
        Err(e) => {
            if undo(env, &store, true).is_ok() {
                let _ = delegate::run(env, ipam_plugin, "DEL", &conf.raw);
            }
            Err(e)
        }
    }
}

/// The first host address of `net`'s subnet.
fn first_host(net: IpNet) -> IpAddr {
    match net.trunc() {
        IpNet::V4(n) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(n.network()) + 1)),
        IpNet::V6(n) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(n.network()) + 1)),
    }
}

/// Each allocated address with its subnet's prefix, and its range's gateway.
fn addresses_of(
    ipam: &IpamConfig,
    allocated: &[crate::ipam::Allocated],
) -> Result<Vec<(IpNet, IpAddr)>> {
    allocated
        .iter()
        .map(|a| {
            let set = ipam.range_sets().get(a.range_set);
            let net = set.and_then(|s| s.address_of(a.ip));
            let gw = set.and_then(|s| s.range_of(a.ip).map(|r| r.gateway()).or_else(|| s.gateway()));
            match (net, gw) {
                (Some(net), Some(gw)) => Ok((net, gw)),
                _ => Err(CniError::new(
                    Code::InvalidConfig,
                    format!("ipam.ranges: address {} is held by this container but no longer inside any range", a.ip),
                )),
            }
        })
        .collect()
}

fn topology(conf: &NetConf) -> Topology {
    match conf.mode {
        Mode::Bridge => Topology::Bridge {
            name: conf.bridge.clone(),
            is_gateway: conf.is_gateway,
            is_default_gateway: conf.is_default_gateway,
            hairpin: conf.hairpin_mode,
            promisc: conf.promisc_mode,
        },
        Mode::Ptp => Topology::Ptp,
    }
}

fn plan<'a>(
    env: &'a Env,
    conf: &NetConf,
    routes: &[(IpNet, Option<IpAddr>)],
    netns_path: &'a str,
    addresses: &[(IpNet, IpAddr)],
) -> Result<Plan<'a>> {
    Ok(Plan {
        container_id: env.container_id()?,
        ifname: env.ifname()?,
        netns_path,
        topology: topology(conf),
        mtu: conf.mtu,
        addresses: addresses.to_vec(),
        routes: routes.to_vec(),
        enable_dad: conf.enable_dad,
    })
}

/// Wires the pod, adds its rules and, with `policyGate`, waits for its network policy: the
/// runtime starts the containers once ADD returns, so their policy comes first.
fn wire_and_rule(
    env: &Env,
    conf: &NetConf,
    routes: &[(IpNet, Option<IpAddr>)],
    pod_ns: &File,
    netns_path: &Path,
    addresses: &[(IpNet, IpAddr)],
    rules: &AttachmentRules,
) -> Result<CniResult> {
    let path = netns_path.display().to_string();
    let plan = plan(env, conf, routes, &path, addresses)?;
    let wired = wire::setup(&plan, pod_ns)?;
    if !rules.is_empty() {
        apply_rules(&nft::render_add(rules))?;
        prepare_host_ports(env, conf, rules)?;
    }
    if let Some(agent) = conf.policy_gate {
        let ips: Vec<IpAddr> = addresses.iter().map(|(net, _)| net.addr()).collect();
        policy_gate::wait_for_policy(env, agent, &ips)?;
    }
    let sandbox_index = wired.interfaces.len() - 1;
    let mut result = CniResult {
        interfaces: wired
            .interfaces
            .iter()
            .map(|(name, mac, sandbox)| Interface {
                name: name.clone(),
                mac: Some(mac.clone()),
                mtu: if sandbox.is_some() { conf.mtu } else { None },
                sandbox: sandbox.clone(),
                ..Default::default()
            })
            .collect(),
        ips: wired
            .addresses
            .iter()
            .map(|(address, gw)| IpConfig {
                address: *address,
                gateway: Some(*gw),
                interface: Some(sandbox_index),
            })
            .collect(),
        routes: routes.iter().map(|(dst, gw)| route(*dst, *gw)).collect(),
        dns: conf.dns.clone(),
    };
    if conf.is_default_gateway && conf.mode == Mode::Bridge {
        for (addr, gw) in addresses {
            let dst: IpNet = if addr.addr().is_ipv4() {
                "0.0.0.0/0"
            } else {
                "::/0"
            }
            .parse()
            .unwrap_or(*addr);
            if !result.routes.iter().any(|r| r.dst == dst) {
                result.routes.push(route(dst, Some(*gw)));
            }
        }
    }
    Ok(result)
}

/// What hostPorts need beyond their rules: `route_localnet` on the pod-facing device, so
/// 127.0.0.1:hostPort can be DNATed to the pod (as portmap does), and no stale UDP conntrack
/// entries for the ports, which would keep steering a client's packets to a previous pod.
fn prepare_host_ports(env: &Env, conf: &NetConf, rules: &AttachmentRules) -> Result<()> {
    let localhost = rules
        .host_ports
        .iter()
        .any(|hp| hp.pod.addr().is_ipv4() && hp.host_ip.is_none_or(|ip| ip.is_loopback()));
    if localhost {
        let device = match conf.mode {
            Mode::Bridge => conf.bridge.clone(),
            Mode::Ptp => names::host_veth(env.container_id()?, env.ifname()?),
        };
        podnet_kernel::sysctl::set(&format!("net/ipv4/conf/{device}/route_localnet"), "1")
            .map_err(|e| {
                CniError::new(
                    Code::Kernel,
                    format!("enabling route_localnet on {device}: {e}"),
                )
            })?;
    }
    for hp in rules.host_ports.iter().filter(|hp| hp.protocol == "udp") {
        // Best effort, as portmap: a failure leaves old flows to expire on their own.
        if let Err(e) = podnet_kernel::conntrack::delete_udp(hp.host_ip, hp.host_port) {
            eprintln!("podnet-cni: {e}");
        }
    }
    Ok(())
}

/// What the store remembers about `key`, if anything.
fn load_record(store: &Store, key: &AttachmentKey) -> Result<Option<Record>> {
    Ok(store
        .lock()?
        .load()?
        .attachment(key)
        .map(|a| Record::from_data(&a.data)))
}

/// Removes everything an attachment has (veth, rules) and, if `release`, its addresses: the veth
/// first, without the store's lock, then the rules and the addresses under it. Keeps going past
/// errors and reports the first; then nothing is released.
///
/// The retired veth is handed to its reaper only once the store is unlocked: starting a process
/// costs more than the rest of a DEL, and concurrent ADDs and DELs of the node wait for the lock.
fn undo(env: &Env, store: &Store, release: bool) -> Result<()> {
    let key = key(env)?;
    // The veth goes out of service first, outside the store's lock: its netlink requests are
    // most of a DEL's work, and concurrent DELs of other pods need not queue behind them. Its
    // names come from the key, not the record, and the runtime runs one operation at a time
    // per attachment, so nothing else acts on it meanwhile.
    let retired = wire::Teardown::new().and_then(|mut t| {
        t.retire(&key.container_id, &key.ifname)?;
        Ok(t)
    });
    let veth_retired = retired.is_ok();
    let undone = store.update(|state| {
        let record = state.attachment(&key).map(|a| Record::from_data(&a.data));
        if let Some(record) = &record
            && !record.rules.is_empty()
        {
            remove_rules(&record.rules)?;
        }
        // Forget the attachment only once its kernel side is out of service: the record is what
        // a retried DEL needs to find the rest. (The retired veth is down, so its address can go
        // to a new pod while the reaper finishes deleting it.)
        if release && veth_retired {
            state.release(&key);
        }
        Ok(())
    });
    match retired {
        // A failure here (no reaper, and deleting it at once failed too) is reported, but the
        // veth is out of service: its addresses stay released, and the next reaper deletes it
        // with its group.
        Ok(teardown) => undone.and(teardown.finish()),
        Err(e) => Err(e),
    }
}

fn add_loopback(env: &Env) -> Result<CniResult> {
    let netns_path = env.netns()?;
    let ns = open_pod_netns(netns_path)?;
    let mut nl = podnet_kernel::netlink::Netlink::open_in(&ns).map_err(|e| {
        CniError::new(
            Code::Kernel,
            format!("opening netlink in {}: {e}", netns_path.display()),
        )
    })?;
    let lo = nl
        .link("lo")
        .map_err(|e| CniError::new(Code::Kernel, e.to_string()))?
        .ok_or_else(|| CniError::new(Code::Kernel, format!("no lo in {}", netns_path.display())))?;
    nl.set_up(lo.index)
        .map_err(|e| CniError::new(Code::Kernel, e.to_string()))?;
    let net = |s: &str| {
        s.parse::<IpNet>()
            .map_err(|_| CniError::new(Code::Kernel, s.to_owned()))
    };
    Ok(CniResult {
        interfaces: vec![Interface {
            name: "lo".into(),
            mac: Some("00:00:00:00:00:00".into()),
            sandbox: Some(netns_path.display().to_string()),
            ..Default::default()
        }],
        ips: vec![
            IpConfig {
                address: net("127.0.0.1/8")?,
                gateway: None,
                interface: Some(0),
            },
            IpConfig {
                address: net("::1/128")?,
                gateway: None,
                interface: Some(0),
            },
        ],
        ..Default::default()
    })
}

fn add_ipam_only(env: &Env, conf: &NetConf) -> Result<CniResult> {
    let ipam = ipam_config(conf)?;
    let requested = requested_ips(env, conf)?;
    let key = key(env)?;
    let allocated =
        store_for(conf, Some(&ipam))?.update(|s| s.allocate(&ipam, &key, &requested))?;
    let addresses = addresses_of(&ipam, &allocated)?;
    Ok(CniResult {
        ips: addresses
            .iter()
            .map(|(a, gw)| IpConfig {
                address: *a,
                gateway: Some(*gw),
                interface: None,
            })
            .collect(),
        routes: ipam.routes.iter().map(|r| route(r.dst, r.gw)).collect(),
        dns: conf.dns.clone(),
        ..Default::default()
    })
}

/// The pod addresses of a previous result: those on the interface inside the sandbox.
fn sandbox_addresses(prev: &CniResult) -> Vec<IpNet> {
    prev.ips
        .iter()
        .filter(|ip| match ip.interface {
            Some(i) => prev
                .interfaces
                .get(i)
                .is_some_and(|iface| iface.sandbox.as_deref().is_some_and(|s| !s.is_empty())),
            None => true,
        })
        .map(|ip| ip.address)
        .collect()
}

fn add_chained(env: &Env, conf: &NetConf) -> Result<CniResult> {
    let prev = conf.prev_result.clone().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "prevResult: missing; without an ipam section podnet-cni runs chained after an \
             interface plugin (as portmap does) and needs that plugin's result",
        )
    })?;
    let rules = rules_for(env, conf, &sandbox_addresses(&prev), conf.ip_masq)?;
    if !rules.is_empty() {
        let store = store_for(conf, None)?;
        let key = key(env)?;
        store.update(|s| {
            let mut record = s
                .attachment(&key)
                .map(|a| Record::from_data(&a.data))
                .unwrap_or_default();
            record.rules = rules.clone();
            s.attachments.entry(key.clone()).or_default().data = record.to_data();
            Ok(())
        })?;
        if let Err(e) = apply_rules(&nft::render_add(&rules)) {
            let _ = remove_rules(&rules);
            let _ = store.update(|s| forget_rules(s, &key));
            return Err(e);
        }
    }
    Ok(prev)
}

fn forget_rules(state: &mut IpamState, key: &AttachmentKey) -> Result<()> {
    if let Some(a) = state.attachment(key) {
        let mut record = Record::from_data(&a.data);
        record.rules = AttachmentRules::default();
        if a.ips.is_empty() && !record.interface {
            state.release(key);
        } else {
            state.attachments.entry(key.clone()).or_default().data = record.to_data();
        }
    }
    Ok(())
}

// === DEL ===

fn del(env: &Env, conf: &NetConf, role: Role) -> Result<()> {
    match role {
        // `lo` goes with the namespace; downing it could down the node's own `lo` if the
        // runtime handed us a recycled path.
        Role::Loopback => Ok(()),
        Role::Ipam => {
            let ipam = ipam_config(conf)?;
            let key = key(env)?;
            store_for(conf, Some(&ipam))?
                .update(|s| Ok(s.release(&key)))
                .map(drop)
        }
        Role::Chained => {
            let store = store_for(conf, None)?;
            let key = key(env)?;
            let record = load_record(&store, &key)?;
            if let Some(record) = record.filter(|r| !r.rules.is_empty()) {
                remove_rules(&record.rules)?;
                store.update(|s| forget_rules(s, &key))?;
            }
            Ok(())
        }
        Role::Interface => {
            let ipam = ipam_config(conf)?;
            let store = store_for(conf, Some(&ipam))?;
            undo(env, &store, true)
        }
        Role::Delegated(ipam_plugin) => {
            undo(env, &store_for(conf, None)?, true)?;
            delegate::run(env, &ipam_plugin, "DEL", &conf.raw).map(drop)
        }
    }
}

// === CHECK ===

fn check(env: &Env, conf: &NetConf, role: Role) -> Result<()> {
    let key = key(env)?;
    match role {
        Role::Loopback | Role::Chained => Ok(()),
        Role::Delegated(ipam_plugin) => {
            delegate::run(env, &ipam_plugin, "CHECK", &conf.raw)?;
            let prev = conf.prev_result.clone().unwrap_or_default();
            let netns_path = env.netns()?;
            let pod_ns = open_pod_netns(netns_path)?;
            let addresses: Vec<(IpNet, IpAddr)> = prev
                .ips
                .iter()
                .map(|i| {
                    (
                        i.address,
                        i.gateway.unwrap_or_else(|| first_host(i.address)),
                    )
                })
                .collect();
            let path = netns_path.display().to_string();
            let plan = plan(env, conf, &[], &path, &addresses)?;
            let routes: Vec<IpNet> = prev.routes.iter().map(|r| r.dst).collect();
            wire::check(&plan, &pod_ns, &routes)
        }
        Role::Ipam | Role::Interface => {
            let ipam = ipam_config(conf)?;
            let state = store_for(conf, Some(&ipam))?.lock()?.load()?;
            let held = state.attachment(&key).ok_or_else(|| {
                CniError::new(
                    Code::Kernel,
                    format!(
                        "no addresses are allocated to container {} interface {}",
                        key.container_id, key.ifname
                    ),
                )
            })?;
            let prev = conf.prev_result.clone().unwrap_or_default();
            for ip in sandbox_addresses(&prev) {
                if !held.ips.iter().any(|a| a.ip == ip.addr()) {
                    return Err(CniError::new(
                        Code::Kernel,
                        format!(
                            "address {ip} of the ADD result is not allocated to container {}",
                            key.container_id
                        ),
                    ));
                }
            }
            if role == Role::Ipam {
                return Ok(());
            }
            let netns_path = env.netns()?;
            let pod_ns = open_pod_netns(netns_path)?;
            let addresses: Vec<(IpNet, IpAddr)> = sandbox_addresses(&prev)
                .into_iter()
                .map(|a| {
                    (
                        a,
                        prev.ips
                            .iter()
                            .find(|i| i.address == a)
                            .and_then(|i| i.gateway)
                            .unwrap_or(a.addr()),
                    )
                })
                .collect();
            let path = netns_path.display().to_string();
            let routes: Vec<_> = ipam.routes.iter().map(|r| (r.dst, r.gw)).collect();
            let mut plan = plan(env, conf, &routes, &path, &addresses)?;
            plan.addresses = addresses;
            let routes: Vec<IpNet> = prev.routes.iter().map(|r| r.dst).collect();
            wire::check(&plan, &pod_ns, &routes)
        }
    }
}

// === STATUS ===

fn status(env: &Env, conf: &NetConf, role: Role) -> Result<()> {
    match role {
        Role::Loopback | Role::Chained => return Ok(()),
        Role::Delegated(ipam_plugin) => {
            return delegate::run(env, &ipam_plugin, "STATUS", &conf.raw).map(drop);
        }
        Role::Ipam | Role::Interface => {}
    }
    let ipam = ipam_config(conf)?;
    let store = store_for(conf, Some(&ipam))?;
    store.is_writable().map_err(|e| {
        CniError::new(
            Code::NotAvailable,
            format!("IPAM store unusable: {}", e.msg),
        )
    })?;
    let state = store.lock()?.load()?;
    for (i, free) in state.free_counts(&ipam).iter().enumerate() {
        if *free == 0 {
            return Err(CniError::new(
                Code::NotAvailable,
                format!(
                    "ipam.ranges[{i}]: no free address left ({})",
                    ipam.range_sets()[i]
                ),
            ));
        }
    }
    Ok(())
}

// === GC ===

fn gc(env: &Env, conf: &NetConf, role: Role) -> Result<()> {
    let valid: Vec<AttachmentKey> = conf
        .valid_attachments()
        .unwrap_or_default()
        .into_iter()
        .map(|a| AttachmentKey::new(a.container_id, a.ifname))
        .collect();
    let store = match &role {
        Role::Loopback => return Ok(()),
        Role::Chained | Role::Delegated(_) => store_for(conf, None)?,
        Role::Ipam | Role::Interface => store_for(conf, Some(&ipam_config(conf)?))?,
    };
    // Undo the kernel side before forgetting, so an interrupted GC is simply run again.
    let stale: Vec<(AttachmentKey, Record)> = {
        let state = store.lock()?.load()?;
        state
            .attachments
            .iter()
            .filter(|(k, _)| !valid.contains(k))
            .map(|(k, a)| (k.clone(), Record::from_data(&a.data)))
            .collect()
    };
    let mut first_error = None;
    let mut keep = valid;
    let mut teardown = None;
    for (key, record) in &stale {
        let mut undone = Ok(());
        if record.interface && matches!(role, Role::Interface | Role::Delegated(_)) {
            undone = match &mut teardown {
                Some(t) => Ok(t),
                None => wire::Teardown::new().map(|t| teardown.insert(t)),
            }
            .and_then(|t| t.retire(&key.container_id, &key.ifname));
        }
        if undone.is_ok() && !record.rules.is_empty() {
            undone = remove_rules(&record.rules);
        }
        if let Err(e) = undone {
            // Kept, so the next GC tries again.
            keep.push(key.clone());
            first_error.get_or_insert(e);
        }
    }
    if let Some(Err(e)) = teardown.map(wire::Teardown::finish) {
        first_error.get_or_insert(e);
    }
    store.update(|s| Ok(s.gc(&keep)))?;
    if let Role::Delegated(ipam_plugin) = &role
        && let Err(e) = delegate::run(env, ipam_plugin, "GC", &conf.raw)
    {
        first_error.get_or_insert(e);
    }
    first_error.map_or(Ok(()), Err)
}
