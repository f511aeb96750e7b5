//! The `ipam` section of a network config, spelled as host-local spells it, with its defaults and
//! validation, so an existing host-local config works unchanged with podnet-cni's built-in IPAM.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::error::{CniError, Code, Result};

/// The default `dataDir`; the store lives in `<dataDir>/<network name>`. Not host-local's
/// `/var/lib/cni/networks`: podnet does not read host-local's one-file-per-address records, so
/// sharing its directory on a node switched from host-local could hand out a live address.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/podnet";

/// The validated `ipam` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    /// Kept private: the allocator relies on the checks `parse` makes (same family in a set,
    /// start ≤ end, no overlaps).
    range_sets: Vec<RangeSet>,
    /// `routes`: added to the result as given.
    pub routes: Vec<Route>,
    /// `dataDir`: where the per-network store directory lives.
    pub data_dir: PathBuf,
    /// `resolvConf`: kept as given; reading the file is the plugin's business.
    pub resolv_conf: Option<String>,
}

/// One range set: a pool of one address family from which each attachment gets one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    /// Never empty.
    ranges: Vec<Range>,
}

/// One range of a range set: `rangeStart..=rangeEnd` inside `subnet`, with its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    subnet: IpNet,
    start: IpAddr,
    end: IpAddr,
    gateway: IpAddr,
}

/// A route from `ipam.routes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination; host bits are cleared, as Go's `ParseCIDR` does for host-local.
    pub dst: IpNet,
    /// Next hop; `None` means the default gateway of the interface's address.
    pub gw: Option<IpAddr>,
}

impl IpamConfig {
    /// Parses and validates the `ipam` object of a network config.
    pub fn parse(ipam: &Value) -> Result<Self> {
        let obj = ipam
            .as_object()
            .ok_or_else(|| invalid(format!("ipam: {ipam} is not an object")))?;

        match field(obj, "type") {
            None => {}
            Some(Value::String(t)) if t == "host-local" || t == "podnet-cni" => {}
            Some(other) => {
                return Err(CniError::new(
                    Code::UnsupportedField,
                    format!(
                        "ipam.type: {other} is not supported: podnet-cni has built-in IPAM \
                         (use \"host-local\" or \"podnet-cni\", or leave ipam.type out)"
                    ),
                ));
            }
        }

        let mut sets = Vec::new();
        // host-local accepts the older single range at top level and puts it first.
        if field(obj, "subnet").is_some() {
            sets.push(Parsed {
                set: RangeSet {
                    ranges: vec![parse_range(obj, "ipam")?],
                },
                paths: vec!["ipam".to_owned()],
            });
        }
        if let Some(ranges) = field(obj, "ranges") {
            sets.extend(parse_range_sets(ranges, "ipam.ranges")?);
        }
        if sets.is_empty() {
            return Err(invalid(
                "ipam: no addresses to allocate from (expected \"ranges\", a list of range sets, \
                 or \"subnet\")"
                    .to_owned(),
            ));
        }
        check_sets_disjoint(&sets)?;

        let routes = match field(obj, "routes") {
            None => Vec::new(),
            Some(v) => parse_routes(v)?,
        };
        let data_dir = match field(obj, "dataDir") {
            None => PathBuf::from(DEFAULT_DATA_DIR),
            Some(v) => PathBuf::from(string(v, "ipam.dataDir")?),
        };
        let resolv_conf = field(obj, "resolvConf")
            .map(|v| string(v, "ipam.resolvConf").map(str::to_owned))
            .transpose()?;

        Ok(Self {
            range_sets: sets.into_iter().map(|p| p.set).collect(),
            routes,
            data_dir,
            resolv_conf,
        })
    }

    /// Applies the `ipRanges` capability (`runtimeConfig.ipRanges`, same shape as `ranges`): it
    /// replaces the configured range sets. An empty list keeps them, as host-local does.
    pub fn with_runtime_ranges(&mut self, ip_ranges: &Value) -> Result<()> {
        let sets = parse_range_sets(ip_ranges, "runtimeConfig.ipRanges")?;
        if sets.is_empty() {
            return Ok(());
        }
        check_sets_disjoint(&sets)?;
        self.range_sets = sets.into_iter().map(|p| p.set).collect();
        Ok(())
    }

    /// The range sets; an attachment gets one address from each.
    pub fn range_sets(&self) -> &[RangeSet] {
        &self.range_sets
    }
}

impl RangeSet {
    /// The ranges, in the order the walk visits them.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// The gateway to report for an address of this set: the first range's, as the brief for
    /// results asks. [`RangeSet::range_of`] gives the gateway of the address's own range.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.ranges.first().map(|r| r.gateway)
    }

    /// Whether `ip` lies in one of the set's ranges (`rangeStart..=rangeEnd`).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_of(ip).is_some()
    }

    /// The range whose `rangeStart..=rangeEnd` holds `ip`.
    pub fn range_of(&self, ip: IpAddr) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(ip))
    }

    /// `ip` with the prefix length of the set's subnet that holds it (`10.0.0.5/24`): the form a
    /// result reports. `None` if no subnet of the set holds `ip` (the config changed since).
    pub fn address_of(&self, ip: IpAddr) -> Option<IpNet> {
        let range = self.ranges.iter().find(|r| r.subnet.contains(&ip))?;
        IpNet::new(ip, range.prefix_len()).ok()
    }

    /// How many addresses the set's ranges span, gateways included.
    pub(crate) fn size(&self) -> u128 {
        self.ranges
            .iter()
            .fold(0u128, |n, r| n.saturating_add(r.size()))
    }
}

impl fmt::Display for RangeSet {
    /// `10.0.0.0/24: 10.0.0.1-10.0.0.254, 10.0.1.0/24: …`, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl Range {
    /// `subnet`, always a network address (no host bits).
    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    /// `rangeStart`, defaulted to the subnet's network address + 1.
    pub fn range_start(&self) -> IpAddr {
        self.start
    }

    /// `rangeEnd`, defaulted to broadcast − 1 (IPv4) or the last address (IPv6).
    pub fn range_end(&self) -> IpAddr {
        self.end
    }

    /// `gateway`, defaulted to the network address + 1; never handed out.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// The subnet's prefix length: a pod address is reported as `ip/prefix_len`.
    pub fn prefix_len(&self) -> u8 {
        self.subnet.prefix_len()
    }

    /// Whether `ip` lies in `rangeStart..=rangeEnd`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (lo, hi) = self.bounds();
        ip.is_ipv4() == self.start.is_ipv4() && (lo..=hi).contains(&to_u128(ip))
    }

    /// `rangeStart..=rangeEnd` as integers, for the allocator's arithmetic.
    pub(crate) fn bounds(&self) -> (u128, u128) {
        (to_u128(self.start), to_u128(self.end))
    }

    /// Number of addresses in `rangeStart..=rangeEnd`; at most 2^128 − 1 since the network
    /// address is never in a range.
    pub(crate) fn size(&self) -> u128 {
        let (lo, hi) = self.bounds();
        (hi - lo).saturating_add(1)
    }

    fn overlaps(&self, other: &Range) -> bool {
        let (a_lo, a_hi) = self.bounds();
        let (b_lo, b_hi) = other.bounds();
        self.start.is_ipv4() == other.start.is_ipv4() && a_lo <= b_hi && b_lo <= a_hi
    }
}

impl fmt::Display for Range {
    /// `10.0.0.0/24: 10.0.0.1-10.0.0.254`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}-{}", self.subnet, self.start, self.end)
    }
}

/// An address as an integer, so IPv4 and IPv6 share the range arithmetic.
pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`to_u128`] in the family of `like`; callers stay within that family's range.
pub(crate) fn from_u128(n: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// A range set with the JSON path of each of its ranges, kept for the cross-set overlap message.
struct Parsed {
    set: RangeSet,
    paths: Vec<String>,
}

fn invalid(msg: String) -> CniError {
    CniError::new(Code::InvalidConfig, msg)
}

/// A field, with `null` treated as absent (as Go's decoder does for host-local).
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn string<'a>(v: &'a Value, path: &str) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| invalid(format!("{path}: {v} is not a string")))
}

fn parse_ip(v: &Value, path: &str) -> Result<IpAddr> {
    string(v, path)?.parse().map_err(|_| {
        invalid(format!(
            "{path}: {v} is not an IP address (expected e.g. \"10.0.0.1\" or \"fd00::1\")"
        ))
    })
}

fn parse_cidr(v: &Value, path: &str) -> Result<IpNet> {
    string(v, path)?.parse().map_err(|_| {
        invalid(format!(
            "{path}: {v} is not a CIDR (expected e.g. \"10.0.0.0/24\" or \"fd00::/64\")"
        ))
    })
}

fn parse_range_sets(v: &Value, path: &str) -> Result<Vec<Parsed>> {
    let sets = v
        .as_array()
        .ok_or_else(|| invalid(format!("{path}: {v} is not a list of range sets")))?;
    sets.iter()
        .enumerate()
        .map(|(i, set)| parse_range_set(set, &format!("{path}[{i}]")))
        .collect()
}

fn parse_range_set(v: &Value, path: &str) -> Result<Parsed> {
    let items = v
        .as_array()
        .ok_or_else(|| invalid(format!("{path}: {v} is not a list of ranges")))?;
    if items.is_empty() {
        return Err(invalid(format!(
            "{path}: [] is empty (expected at least one range)"
        )));
    }
    let mut ranges: Vec<Range> = Vec::with_capacity(items.len());
    let mut paths = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let rpath = format!("{path}[{j}]");
        let obj = item
            .as_object()
            .ok_or_else(|| invalid(format!("{rpath}: {item} is not an object")))?;
        let range = parse_range(obj, &rpath)?;
        if let Some(first) = ranges.first()
            && first.subnet.addr().is_ipv4() != range.subnet.addr().is_ipv4()
        {
            return Err(invalid(format!(
                "{rpath}.subnet: \"{}\" is {} but {path}[0].subnet \"{}\" is {}; the ranges of \
                 one set must be the same address family",
                range.subnet,
                family(range.subnet.addr()),
                first.subnet,
                family(first.subnet.addr()),
            )));
        }
        for (k, earlier) in ranges.iter().enumerate() {
            if range.overlaps(earlier) {
                return Err(invalid(format!(
                    "{rpath}: \"{range}\" overlaps {path}[{k}] \"{earlier}\"; the ranges of one \
                     set must not overlap"
                )));
            }
        }
        ranges.push(range);
        paths.push(rpath);
    }
    Ok(Parsed {
        set: RangeSet { ranges },
        paths,
    })
}

fn check_sets_disjoint(sets: &[Parsed]) -> Result<()> {
    for (i, later) in sets.iter().enumerate() {
        for earlier in &sets[..i] {
            for (r, rpath) in later.set.ranges.iter().zip(&later.paths) {
                for (e, epath) in earlier.set.ranges.iter().zip(&earlier.paths) {
                    if r.overlaps(e) {
                        return Err(invalid(format!(
                            "{rpath}: \"{r}\" overlaps {epath} \"{e}\" of another range set; \
                             range sets must not overlap"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// Parses one range at `path` (`ipam.ranges[0][1]`, or `ipam` for the top-level form) and fills
/// in host-local's defaults.
fn parse_range(obj: &Map<String, Value>, path: &str) -> Result<Range> {
    let subnet_path = format!("{path}.subnet");
    let subnet_v = field(obj, "subnet").ok_or_else(|| {
        invalid(format!(
            "{subnet_path}: missing (expected a CIDR such as \"10.0.0.0/24\")"
        ))
    })?;
    let subnet = parse_cidr(subnet_v, &subnet_path)?;
    if subnet.addr() != subnet.network() {
        return Err(invalid(format!(
            "{subnet_path}: {subnet_v} has host bits set (expected the network address \"{}\")",
            subnet.trunc()
        )));
    }
    // Below /30 (/126) there is no address left once the network, broadcast and gateway are out.
    if subnet.prefix_len() > subnet.max_prefix_len() - 2 {
        return Err(invalid(format!(
            "{subnet_path}: {subnet_v} is too small to allocate from (expected a prefix of at \
             most /{})",
            subnet.max_prefix_len() - 2
        )));
    }

    let network = to_u128(subnet.network());
    let last = to_u128(subnet.broadcast());
    let v4 = subnet.addr().is_ipv4();

    // A host address of the subnet: inside it, not its network address, not its IPv4 broadcast.
    let host = |name: &str| -> Result<Option<IpAddr>> {
        let Some(v) = field(obj, name) else {
            return Ok(None);
        };
        let fpath = format!("{path}.{name}");
        let ip = parse_ip(v, &fpath)?;
        if !subnet.contains(&ip) {
            return Err(invalid(format!(
                "{fpath}: {v} is outside subnet \"{subnet}\""
            )));
        }
        if to_u128(ip) == network {
            return Err(invalid(format!(
                "{fpath}: {v} is the network address of subnet \"{subnet}\" (expected a host \
                 address)"
            )));
        }
        if v4 && to_u128(ip) == last {
            return Err(invalid(format!(
                "{fpath}: {v} is the broadcast address of subnet \"{subnet}\" (expected a host \
                 address)"
            )));
        }
        Ok(Some(ip))
    };

    let first_host = from_u128(network + 1, subnet.addr());
    let gateway = host("gateway")?.unwrap_or(first_host);
    // The default start is the gateway's address too; the allocator skips gateways anyway.
    let start = host("rangeStart")?.unwrap_or(first_host);
    let default_end = from_u128(if v4 { last - 1 } else { last }, subnet.addr());
    let end = host("rangeEnd")?.unwrap_or(default_end);
    if to_u128(end) < to_u128(start) {
        return Err(invalid(format!(
            "{path}.rangeEnd: \"{end}\" is before rangeStart \"{start}\" (expected rangeStart <= \
             rangeEnd)"
        )));
    }
    Ok(Range {
        subnet,
        start,
        end,
        gateway,
    })
}

fn parse_routes(v: &Value) -> Result<Vec<Route>> {
    let items = v
        .as_array()
        .ok_or_else(|| invalid(format!("ipam.routes: {v} is not a list of routes")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("ipam.routes[{i}]");
            let obj = item
                .as_object()
                .ok_or_else(|| invalid(format!("{path}: {item} is not an object")))?;
            let dst_v = field(obj, "dst").ok_or_else(|| {
                invalid(format!(
                    "{path}.dst: missing (expected a CIDR such as \"0.0.0.0/0\")"
                ))
            })?;
            let dst = parse_cidr(dst_v, &format!("{path}.dst"))?.trunc();
            let gw = field(obj, "gw")
                .map(|v| parse_ip(v, &format!("{path}.gw")))
                .transpose()?;
            if let Some(gw) = gw
                && gw.is_ipv4() != dst.addr().is_ipv4()
            {
                return Err(invalid(format!(
                    "{path}.gw: \"{gw}\" is {} but dst \"{dst}\" is {}",
                    family(gw),
                    family(dst.addr())
                )));
            }
            Ok(Route { dst, gw })
        })
        .collect()
}

#[cfg(test)]
mod tests;
