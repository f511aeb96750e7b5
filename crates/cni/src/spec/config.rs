//! The plugin's network configuration on stdin: podnet's options, the reference `bridge` keys it
//! understands, and what the runtime injects (`runtimeConfig`, `args`, `prevResult`, GC keys).
//!
//! Parsing walks the JSON by hand (see `json.rs`) so every error names the field path, the value
//! and what was expected. Unknown top-level keys are ignored: chained plugin configs carry keys
//! meant for other plugins (portmap's `snat`, `backend`, ...).

use std::net::IpAddr;

use serde_json::Value;

use super::json::{Field, Obj, show};
use super::result::{CniResult, Dns};
use super::validate::{ID_PATTERN, ifname_problem, ip_ignoring_prefix, is_valid_id};
use super::version::Version;
use crate::error::{CniError, Code, Result};

/// How the pod's veth is wired on the host side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Host end enslaved to a bridge (the reference `bridge` plugin's model).
    #[default]
    Bridge,
    /// Routed point-to-point veth, no bridge (the reference `ptp` plugin's model).
    Ptp,
}

impl Mode {
    /// The mode as spelled in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Ptp => "ptp",
        }
    }
}

/// A transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Protocol {
    /// TCP (the default when unset).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The protocol in lower case, as nftables and the portmap plugin spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One `runtimeConfig.portMappings` entry (a pod's hostPort).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// Port on the host, 1-65535.
    pub host_port: u16,
    /// Port in the container, 1-65535.
    pub container_port: u16,
    /// Protocol; TCP when unset.
    pub protocol: Protocol,
    /// Host address to bind; `None` (also for `""`) means every address.
    pub host_ip: Option<IpAddr>,
}

/// The capability arguments the runtime passed in `runtimeConfig`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConfig {
    /// `portMappings` capability.
    pub port_mappings: Vec<PortMapping>,
    /// `ips` capability: requested addresses (any `/prefix` is ignored, as host-local does).
    pub ips: Vec<IpAddr>,
    /// `ipRanges` capability, left raw for the IPAM module (same shape as host-local `ranges`).
    pub ip_ranges: Option<Value>,
}

/// The structured `args` key (CONVENTIONS.md), namespaced under `args.cni`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StructuredArgs {
    /// `args.cni.ips`: requested addresses (any `/prefix` is ignored).
    pub ips: Vec<IpAddr>,
}

/// One attachment the runtime still considers valid, from a GC request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attachment {
    /// `containerID`.
    pub container_id: String,
    /// `ifname`.
    pub ifname: String,
}

/// A parsed network (plugin) configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`: the version of the request, and of the result to print.
    pub cni_version: Version,
    /// `name`: the network name.
    pub name: String,
    /// `type`: the plugin binary name.
    pub plugin_type: String,
    /// `mode`: bridge (default) or ptp.
    pub mode: Mode,
    /// `bridge`: bridge device name, default `cni0`.
    pub bridge: String,
    /// `isGateway`: give the bridge the gateway address (also true when `isDefaultGateway` is).
    pub is_gateway: bool,
    /// `isDefaultGateway`: add a default route via the gateway.
    pub is_default_gateway: bool,
    /// `forceAddress`: replace a different address already on the bridge.
    pub force_address: bool,
    /// `ipMasq`: masquerade traffic leaving the pod subnet (`ipMasqBackend` may only be nftables).
    pub ip_masq: bool,
    /// `mtu`: veth/bridge MTU; `None` when absent or 0 (kernel default).
    pub mtu: Option<u32>,
    /// `hairpinMode`: let a pod reach itself through the bridge.
    pub hairpin_mode: bool,
    /// `promiscMode`: put the bridge in promiscuous mode.
    pub promisc_mode: bool,
    /// `enabledad`: keep duplicate address detection on the container interface.
    pub enable_dad: bool,
    /// `ipam`, raw: the IPAM module parses it (see [`NetConf::ipam_type`]).
    pub ipam: Option<Value>,
    /// `dns`.
    pub dns: Dns,
    /// `runtimeConfig`.
    pub runtime_config: RuntimeConfig,
    /// `args`.
    pub args: StructuredArgs,
    /// `prevResult`, from any supported version.
    pub prev_result: Option<CniResult>,
    /// `policyGate`: the node agent's endpoint (`host:port`). When set, ADD reports a
    /// Kubernetes pod's addresses to the agent and returns only once the agent enforces the
    /// pod's network policy, so no container runs unprotected (Calico's CNI waits for Felix
    /// the same way).
    pub policy_gate: Option<std::net::SocketAddr>,
    /// The whole config as received (IPAM parsing needs its own view of it).
    pub raw: Value,
    /// GC's valid attachments: the union of both keys, `None` if neither was present.
    valid_attachments: Option<Vec<Attachment>>,
}

/// The GC key of the spec at HEAD, and the one of the `spec-v1.1.0` tag (libcni sends both).
const GC_KEYS: [&str; 2] = ["cni.dev/valid-attachments", "cni.dev/attachments"];

/// Reference-bridge options podnet does not implement; accepted only when unset.
const UNSUPPORTED: [&str; 5] = [
    "vlan",
    "vlanTrunk",
    "macspoofchk",
    "disableContainerInterface",
    "portIsolation",
];

/// Lowest and highest MTU accepted (IPv4's minimum; the largest a `u16` length field allows).
const MTU_RANGE: std::ops::RangeInclusive<u64> = 68..=65535;

fn invalid(msg: String) -> CniError {
    CniError::new(Code::InvalidConfig, msg)
}

fn unsupported(msg: String) -> CniError {
    CniError::new(Code::UnsupportedField, msg)
}

/// Whether an option we do not implement is effectively off: absent, null, false, 0 or empty.
fn is_unset(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Bool(true)) => false,
    }
}

impl NetConf {
    /// Parses the config bytes from stdin.
    pub fn parse(bytes: &[u8]) -> Result<NetConf> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(Code::Decode, "network config on stdin is not valid JSON").with_details(e)
        })?;
        NetConf::from_value(raw)
    }

    /// Parses an already-decoded config.
    pub fn from_value(raw: Value) -> Result<NetConf> {
        let obj = Obj::new(&raw, String::new())?;

        let cni_version = Version::parse(
            obj.required("cniVersion", "a CNI version such as \"1.1.0\"")?
                .str()?,
        )?;

        let name = obj.required("name", "the network name")?.str()?.to_owned();
        if !is_valid_id(&name) {
            return Err(invalid(format!(
                "name: {name:?} is not a valid network name; expected {ID_PATTERN}"
            )));
        }

        let plugin_type = obj
            .required("type", "the plugin binary name")?
            .str()?
            .to_owned();

        let mode = match obj.str("mode")? {
            None | Some("bridge") => Mode::Bridge,
            Some("ptp") => Mode::Ptp,
            Some(other) => {
                return Err(unsupported(format!(
                    "mode: {other:?} is not supported; expected \"bridge\" or \"ptp\""
                )));
            }
        };

        let bridge = obj.str("bridge")?.unwrap_or("cni0").to_owned();
        if let Some(problem) = ifname_problem(&bridge) {
            return Err(invalid(format!(
                "bridge: {bridge:?} is not a valid interface name: {problem}"
            )));
        }

        let is_default_gateway = obj.bool("isDefaultGateway")?.unwrap_or(false);
        // The reference bridge forces isGateway on with isDefaultGateway: the default route
        // needs the gateway address on the bridge.
        let is_gateway = obj.bool("isGateway")?.unwrap_or(false) || is_default_gateway;

        match obj.str("ipMasqBackend")? {
            None | Some("") | Some("nftables") => {}
            Some("iptables") => {
                return Err(unsupported(
                    "ipMasqBackend: \"iptables\" is not supported; podnet programs nftables \
                     only (use \"nftables\" or leave the key out)"
                        .into(),
                ));
            }
            Some(other) => {
                return Err(unsupported(format!(
                    "ipMasqBackend: {other:?} is not supported; expected \"nftables\""
                )));
            }
        }

        let mtu = match obj.field("mtu") {
            None => None,
            Some(f) => match f.u64()? {
                0 => None,
                m if MTU_RANGE.contains(&m) => u32::try_from(m).ok(),
                m => {
                    return Err(invalid(format!(
                        "mtu: {m} is out of range; expected 68-65535, or 0 for the default"
                    )));
                }
            },
        };

        let hairpin_mode = obj.bool("hairpinMode")?.unwrap_or(false);
        let promisc_mode = obj.bool("promiscMode")?.unwrap_or(false);
        if hairpin_mode && promisc_mode {
            return Err(invalid(
                "hairpinMode: true and promiscMode: true cannot both be set; expected at most \
                 one of them"
                    .into(),
            ));
        }

        for key in UNSUPPORTED {
            let value = obj.field(key).map(|f| f.value);
            if !is_unset(value) {
                let shown = value.map(show).unwrap_or_default();
                return Err(unsupported(format!(
                    "{key}: {shown} is not supported by podnet; expected it absent, false, 0 or empty"
                )));
            }
        }

        let ipam = match obj.object("ipam")? {
            None => None,
            Some(ipam) => {
                ipam.str("type")?; // ipam.type must be a string if present
                obj.field("ipam").map(|f| f.value.clone())
            }
        };

        let dns = match obj.object("dns")? {
            Some(d) => Dns::from_obj(&d)?,
            None => Dns::default(),
        };

        let runtime_config = match obj.object("runtimeConfig")? {
            Some(rc) => parse_runtime_config(&rc)?,
            None => RuntimeConfig::default(),
        };

        let args = parse_args(&obj)?;

        let prev_result = obj
            .field("prevResult")
            .map(|f| CniResult::from_json_at(f.value, &f.path))
            .transpose()?;

        let valid_attachments = parse_attachments(&obj)?;

        let policy_gate = match obj.str("policyGate")? {
            None | Some("") => None,
            Some(addr) => Some(addr.parse().map_err(|_| {
                invalid(format!(
                    "policyGate: {addr:?} is not an address; expected host:port of the node agent, such as \"127.0.0.1:9765\""
                ))
            })?),
        };

        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            mode,
            bridge,
            is_gateway,
            is_default_gateway,
            force_address: obj.bool("forceAddress")?.unwrap_or(false),
            ip_masq: obj.bool("ipMasq")?.unwrap_or(false),
            mtu,
            hairpin_mode,
            promisc_mode,
            enable_dad: obj.bool("enabledad")?.unwrap_or(false),
            ipam,
            dns,
            runtime_config,
            args,
            prev_result,
            valid_attachments,
            policy_gate,
            raw,
        })
    }

    /// `ipam.type`, the IPAM plugin to use, if the config has one.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }

    /// GC's valid attachments: the union of `cni.dev/valid-attachments` and the older
    /// `cni.dev/attachments` (libcni sends both), or `None` if neither key was present.
    pub fn valid_attachments(&self) -> Option<Vec<Attachment>> {
        self.valid_attachments.clone()
    }
}

fn parse_runtime_config(rc: &Obj<'_>) -> Result<RuntimeConfig> {
    let port_mappings = rc
        .array("portMappings")?
        .iter()
        .map(parse_port_mapping)
        .collect::<Result<_>>()?;
    let ips = rc
        .array("ips")?
        .iter()
        .map(requested_ip)
        .collect::<Result<_>>()?;
    Ok(RuntimeConfig {
        port_mappings,
        ips,
        ip_ranges: rc.field("ipRanges").map(|f| f.value.clone()),
    })
}

/// A requested address string (`10.0.0.5` or `10.0.0.5/24`).
fn requested_ip(field: &Field<'_>) -> Result<IpAddr> {
    let s = field.str()?;
    ip_ignoring_prefix(s).ok_or_else(|| {
        invalid(format!(
            "{}: {s:?} is not an IP address; expected e.g. 10.0.0.5 or fd00::5/64",
            field.path
        ))
    })
}

/// A port: keys matched case-insensitively (containerd's CRI path sends `HostPort`).
fn port(pm: &Obj<'_>, key: &str) -> Result<u16> {
    let Some(field) = pm.field_ci(key) else {
        return Err(invalid(format!(
            "{}: missing; expected a port 1-65535",
            pm.path_of(key)
        )));
    };
    let p = field.u64()?;
    u16::try_from(p).ok().filter(|&p| p != 0).ok_or_else(|| {
        invalid(format!(
            "{}: {p} is not a valid port; expected 1-65535",
            field.path
        ))
    })
}

fn parse_port_mapping(field: &Field<'_>) -> Result<PortMapping> {
    let pm = field.object()?;
    let protocol = match pm.field_ci("protocol") {
        None => Protocol::Tcp,
        Some(f) => {
            let s = f.str()?;
            match s.to_ascii_lowercase().as_str() {
                "" | "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                _ => {
                    return Err(invalid(format!(
                        "{}: {s:?} is not a protocol; expected \"tcp\", \"udp\" or \"sctp\"",
                        f.path
                    )));
                }
            }
        }
    };
    let host_ip = match pm.field_ci("hostIP") {
        None => None,
        Some(f) => {
            let s = f.str()?;
            if s.is_empty() {
                None
            } else {
                Some(s.parse().map_err(|_| {
                    invalid(format!(
                        "{}: {s:?} is not an IP address; expected e.g. 127.0.0.1, or \"\" for any",
                        f.path
                    ))
                })?)
            }
        }
    };
    Ok(PortMapping {
        host_port: port(&pm, "hostPort")?,
        container_port: port(&pm, "containerPort")?,
        protocol,
        host_ip,
    })
}

fn parse_args(obj: &Obj<'_>) -> Result<StructuredArgs> {
    let Some(args) = obj.object("args")? else {
        return Ok(StructuredArgs::default());
    };
    let Some(cni) = args.object("cni")? else {
        return Ok(StructuredArgs::default());
    };
    let ips = cni
        .array("ips")?
        .iter()
        .map(requested_ip)
        .collect::<Result<_>>()?;
    Ok(StructuredArgs { ips })
}

fn parse_attachments(obj: &Obj<'_>) -> Result<Option<Vec<Attachment>>> {
    let mut union: Option<Vec<Attachment>> = None;
    for key in GC_KEYS {
        let Some(field) = obj.field(key) else {
            continue;
        };
        let list = union.get_or_insert_with(Vec::new);
        for item in field.array()? {
            let a = item.object()?;
            let attachment = Attachment {
                container_id: a
                    .required("containerID", "a container ID")?
                    .str()?
                    .to_owned(),
                ifname: a.required("ifname", "an interface name")?.str()?.to_owned(),
            };
            if !list.contains(&attachment) {
                list.push(attachment);
            }
        }
    }
    Ok(union)
}
