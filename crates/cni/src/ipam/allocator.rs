//! Address allocation over an in-memory [`IpamState`]: host-local's round-robin walk, requested
//! (static) addresses, release by attachment, and GC. Pure: the store does the I/O and locking.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{IpamConfig, RangeSet, from_u128, to_u128};
use crate::error::{CniError, Code, Result};

/// Everything the IPAM remembers for one network on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamState {
    /// Who holds which addresses. Stored as a list: JSON object keys must be strings.
    #[serde(default, with = "attachment_list")]
    pub attachments: BTreeMap<AttachmentKey, Attachment>,
    /// Per range set index, the address the round-robin walk handed out last; the next walk
    /// starts after it so a just-freed address is not reused at once.
    #[serde(default)]
    pub last_reserved: BTreeMap<usize, IpAddr>,
}

/// An attachment as the runtime names it: ADD, DEL and GC all carry these two.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttachmentKey {
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// What one attachment holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// One address per range set, in range set order; empty for an attachment that only
    /// carries `data` (see [`IpamState::record`]).
    pub ips: Vec<Allocated>,
    /// Opaque to IPAM: what the plugin created for the attachment (veth name, port mappings),
    /// so DEL and GC can undo it without the runtime resending it.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

/// One allocated address and the index of the range set it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocated {
    /// The address.
    pub ip: IpAddr,
    /// Index into [`IpamConfig::range_sets`] at allocation time.
    pub range_set: usize,
}

impl AttachmentKey {
    /// The key for `CNI_CONTAINERID` and `CNI_IFNAME`.
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Self {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }
}

impl IpamState {
    /// Allocates one address per range set for `key`, taking the `requested` addresses where
    /// given and walking round-robin elsewhere. If `key` already holds addresses they are
    /// returned unchanged: a runtime's IPAM-only call and the interface plugin's call for the
    /// same container must agree. Either every set gets an address or nothing changes.
    ///
    /// Errors: a requested address outside every range, a gateway, two in one set, or held by
    /// another attachment → `InvalidConfig`; a set with no free address → `TryAgainLater`, since
    /// addresses free up as pods go.
    pub fn allocate(
        &mut self,
        cfg: &IpamConfig,
        key: &AttachmentKey,
        requested: &[IpAddr],
    ) -> Result<Vec<Allocated>> {
        // An attachment without addresses only carries `data` (see `record`): allocate for it.
        if let Some(existing) = self.attachments.get(key)
            && !existing.ips.is_empty()
        {
            return Ok(existing.ips.clone());
        }
        let sets = cfg.range_sets();
        let holders: HashMap<IpAddr, &AttachmentKey> = self
            .attachments
            .iter()
            .flat_map(|(k, a)| a.ips.iter().map(move |x| (x.ip, k)))
            .collect();
        let gateways = gateways(cfg);

        let mut chosen: Vec<Option<IpAddr>> = vec![None; sets.len()];
        for &ip in requested {
            let Some(i) = sets.iter().position(|s| s.contains(ip)) else {
                return Err(invalid(format!(
                    "requested IP {ip} is outside every configured range ({})",
                    describe_sets(sets)
                )));
            };
            if gateways.contains(&ip) {
                return Err(invalid(format!(
                    "requested IP {ip} is a gateway of range set {i} ({})",
                    sets[i]
                )));
            }
            if let Some(holder) = holders.get(&ip) {
                return Err(invalid(format!(
                    "requested IP {ip} is already allocated to container {} interface {}",
                    holder.container_id, holder.ifname
                )));
            }
            if let Some(other) = chosen[i] {
                return Err(invalid(format!(
                    "requested IPs {other} and {ip} are both in range set {i} ({}); expected at \
                     most one per range set",
                    sets[i]
                )));
            }
            chosen[i] = Some(ip);
        }

        let mut walked = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            if chosen[i].is_some() {
                continue;
            }
            let taken = |ip: &IpAddr| gateways.contains(ip) || holders.contains_key(ip);
            let ip =
                next_free(set, self.last_reserved.get(&i).copied(), taken).ok_or_else(|| {
                    CniError::new(
                        Code::TryAgainLater,
                        format!("no free address in range set {i} ({set})"),
                    )
                })?;
            chosen[i] = Some(ip);
            walked.push((i, ip));
        }

        let ips: Vec<Allocated> = chosen
            .into_iter()
            .enumerate()
            .filter_map(|(range_set, ip)| ip.map(|ip| Allocated { ip, range_set }))
            .collect();
        // Only walked addresses move the cursor: a static address says nothing about where the
        // walk should continue.
        self.last_reserved.extend(walked);
        self.attachments.entry(key.clone()).or_default().ips = ips.clone();
        Ok(ips)
    }

    /// Releases what `key` holds and returns it; `None` if it holds nothing (DEL is idempotent).
    pub fn release(&mut self, key: &AttachmentKey) -> Option<Attachment> {
        self.attachments.remove(key)
    }

    /// What `key` holds, for CHECK and for DEL to read `data` before undoing it.
    pub fn attachment(&self, key: &AttachmentKey) -> Option<&Attachment> {
        self.attachments.get(key)
    }

    /// Stores the plugin's opaque `data` for `key`; `false` (and nothing stored) if `key` has
    /// no attachment.
    pub fn set_data(&mut self, key: &AttachmentKey, data: Value) -> bool {
        match self.attachments.get_mut(key) {
            Some(a) => {
                a.data = data;
                true
            }
            None => false,
        }
    }

    /// Stores `data` for `key`, creating an attachment without addresses if there is none: a
    /// chained plugin records its port mappings for containers whose addresses came from
    /// elsewhere. A later `allocate` for `key` keeps the data.
    pub fn record(&mut self, key: &AttachmentKey, data: Value) {
        self.attachments.entry(key.clone()).or_default().data = data;
    }

    /// Releases every attachment not in `valid` (an empty list releases all) and returns them,
    /// so the plugin can undo what their `data` records.
    pub fn gc(&mut self, valid: &[AttachmentKey]) -> Vec<(AttachmentKey, Attachment)> {
        let valid: BTreeSet<&AttachmentKey> = valid.iter().collect();
        let (keep, gone): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.attachments)
            .into_iter()
            .partition(|(k, _)| valid.contains(k));
        self.attachments = keep;
        gone.into_iter().collect()
    }

    /// Free addresses per range set (for STATUS): the set's size minus gateways and held
    /// addresses inside it. Cost is in the number of held addresses, not the range size.
    pub fn free_counts(&self, cfg: &IpamConfig) -> Vec<u128> {
        let mut unavailable = gateways(cfg).into_iter().collect::<BTreeSet<_>>();
        unavailable.extend(
            self.attachments
                .values()
                .flat_map(|a| a.ips.iter().map(|x| x.ip)),
        );
        cfg.range_sets()
            .iter()
            .map(|set| {
                let inside = unavailable.iter().filter(|ip| set.contains(**ip)).count();
                set.size().saturating_sub(inside as u128)
            })
            .collect()
    }
}

fn invalid(msg: String) -> CniError {
    CniError::new(Code::InvalidConfig, msg)
}

/// Gateways of every set: one set's gateway may sit inside another set's range.
fn gateways(cfg: &IpamConfig) -> HashSet<IpAddr> {
    cfg.range_sets()
        .iter()
        .flat_map(|s| s.ranges().iter().map(|r| r.gateway()))
        .collect()
}

fn describe_sets(sets: &[RangeSet]) -> String {
    sets.iter()
        .enumerate()
        .map(|(i, s)| format!("set {i}: {s}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The first address after `last` in the set's ranges, in order and wrapping around, that is
/// not `taken`; `None` once the walk is back where it started. Starts at the first range if
/// `last` is not in the set (first use, or the config changed). The walk ends after at most
/// (taken addresses + 1) steps when one is free, so large IPv6 ranges cost nothing extra.
fn next_free(
    set: &RangeSet,
    last: Option<IpAddr>,
    taken: impl Fn(&IpAddr) -> bool,
) -> Option<IpAddr> {
    let ranges = set.ranges();
    let bounds: Vec<(u128, u128)> = ranges.iter().map(|r| r.bounds()).collect();
    let step = |(ri, pos): (usize, u128)| {
        if pos < bounds[ri].1 {
            (ri, pos + 1)
        } else {
            let next = (ri + 1) % bounds.len();
            (next, bounds[next].0)
        }
    };
    let mut at = match last.and_then(|l| Some((ranges.iter().position(|r| r.contains(l))?, l))) {
        Some((ri, l)) => step((ri, to_u128(l))),
        None => (0, bounds.first()?.0),
    };
    let mut left = set.size();
    while left > 0 {
        let ip = from_u128(at.1, ranges[at.0].range_start());
        if !taken(&ip) {
            return Some(ip);
        }
        at = step(at);
        left -= 1;
    }
    None
}

/// `attachments` on disk: `[{"containerID", "ifname", "ips", "data"}]`.
mod attachment_list {
    use super::{Allocated, Attachment, AttachmentKey, BTreeMap, Value};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct EntryRef<'a> {
        #[serde(rename = "containerID")]
        container_id: &'a str,
        ifname: &'a str,
        ips: &'a [Allocated],
        #[serde(skip_serializing_if = "Value::is_null")]
        data: &'a Value,
    }

    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "containerID")]
        container_id: String,
        ifname: String,
        ips: Vec<Allocated>,
        #[serde(default)]
        data: Value,
    }

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<AttachmentKey, Attachment>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|(k, a)| EntryRef {
            container_id: &k.container_id,
            ifname: &k.ifname,
            ips: &a.ips,
            data: &a.data,
        }))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<AttachmentKey, Attachment>, D::Error> {
        let entries = Vec::<Entry>::deserialize(d)?;
        Ok(entries
            .into_iter()
            .map(|e| {
                (
                    AttachmentKey {
                        container_id: e.container_id,
                        ifname: e.ifname,
                    },
                    Attachment {
                        ips: e.ips,
                        data: e.data,
                    },
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
