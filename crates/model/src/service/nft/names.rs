//! nft object names, derived from identity alone so that the same Service port or endpoint
//! always has the same chain: an incremental sync can name what it changes without reading
//! the kernel back.
//!
//! Like kube-proxy's: `service-<ns>/<svc>/<proto>/<port>` (and `local-`, `external-`,
//! `firewall-`), `endpoint-<ns>/<svc>/<proto>/<port>__<ip>/<port>`, and per-endpoint
//! affinity sets `affinity-<timeout>-…` (the timeout is part of the name because a set's
//! timeout cannot be changed in place: a new timeout is a new set). Namespaces, Service and
//! port names are DNS labels (checked when read), so every character is one nft accepts in
//! a name; `/` separates the parts because no label contains it. Unlike kube-proxy there is
//! no hash prefix: a name only needs one when it would exceed nft's 255 characters, and
//! then it gets one (FNV-1a of the full name) and is truncated.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::super::state::{Endpoint, ServicePortName};

/// The longest object name the kernel accepts (`NFT_NAME_MAXLEN` minus the NUL).
const NAME_MAX: usize = 255;

/// Prefix of the Cluster-policy chain of a Service port.
pub(super) const SERVICE_PREFIX: &str = "service-";
/// Prefix of the Local-policy chain of a Service port.
pub(super) const LOCAL_PREFIX: &str = "local-";
/// Prefix of the chain for NodePort, externalIP and load-balancer traffic.
pub(super) const EXTERNAL_PREFIX: &str = "external-";
/// Prefix of the `loadBalancerSourceRanges` chain.
pub(super) const FIREWALL_PREFIX: &str = "firewall-";
/// Prefix of per-endpoint DNAT chains.
pub(super) const ENDPOINT_PREFIX: &str = "endpoint-";
/// Prefix of per-endpoint affinity sets.
pub(super) const AFFINITY_PREFIX: &str = "affinity-";

/// `<ns>/<svc>/<proto>/<port name>`.
pub(super) fn port_base(name: &ServicePortName) -> String {
    format!(
        "{}/{}/{}/{}",
        name.service.namespace,
        name.service.name,
        name.protocol.nft_name(),
        name.port
    )
}

/// `<port base>__<ip>/<port>`, IPv6 colons written as `-` (nft names cannot hold `:`).
pub(super) fn endpoint_base(port_base: &str, endpoint: &Endpoint) -> String {
    let mut out = String::with_capacity(port_base.len() + 48);
    out.push_str(port_base);
    out.push_str("__");
    match endpoint.ip {
        IpAddr::V4(ip) => {
            let _ = write!(out, "{ip}");
        }
        IpAddr::V6(ip) => out.push_str(&ip.to_string().replace(':', "-")),
    }
    let _ = write!(out, "/{}", endpoint.port);
    out
}

/// The affinity set prefix for a timeout.
pub(super) fn affinity_prefix(timeout: u32) -> String {
    format!("{AFFINITY_PREFIX}{timeout}-")
}

/// `prefix` + `base`, hashed and truncated if that is too long for nft.
pub(super) fn object_name(prefix: &str, base: &str) -> String {
    if prefix.len() + base.len() <= NAME_MAX {
        let mut out = String::with_capacity(prefix.len() + base.len());
        out.push_str(prefix);
        out.push_str(base);
        return out;
    }
    // prefix + 16 hex digits + "-" + as much of base as fits.
    let keep = NAME_MAX.saturating_sub(prefix.len() + 17);
    let mut cut = keep.min(base.len());
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{prefix}{:016x}-{}", fnv1a(base), &base[..cut])
}

/// Whether a chain name is one of the per-Service chains (every one holds a `/`, no fixed
/// chain does).
pub(super) fn is_service_chain(name: &str) -> bool {
    name.contains('/')
}

/// Whether a set name is an affinity set.
pub(super) fn is_affinity_set(name: &str) -> bool {
    name.starts_with(AFFINITY_PREFIX)
}

/// 64-bit FNV-1a: a stable hash with no dependency, enough to keep truncated names apart.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
