//! Set and map elements as typed data: written as nft text for scripts and tests, and
//! encoded as the kernel stores them, so that a loader can send them over netlink.
//!
//! Elements are most of a large ruleset (at 30k Services × 10 endpoints, 330k of them and a
//! few dozen rules), and `nft -f` spends about half its time parsing them; sending them as
//! bytes skips that. The encoding is nftables' register layout: in a concatenation every
//! field takes a multiple of 4 bytes, zero-padded; addresses and ports are big-endian,
//! `numgen` slots are host-endian (the kernel writes them as a host `u32`).

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use super::super::state::{IpFamily, Protocol};
use super::script;

/// One field of an element's key or value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// An address (`ipv4_addr`, `ipv6_addr`).
    Addr(IpAddr),
    /// A layer-4 protocol (`inet_proto`).
    Proto(Protocol),
    /// A port (`inet_service`).
    Port(u16),
    /// A `numgen random mod n` result: which of a Service's endpoints.
    Slot(u32),
}

/// What a map element maps its key to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// Data (a DNAT target: address . port).
    Fields(Vec<Field>),
    /// A verdict.
    Verdict(MapVerdict),
}

/// A verdict map's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MapVerdict {
    /// `drop`.
    Drop,
    /// `goto <chain>`.
    Goto(String),
}

/// One element of a set (`value: None`) or map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Element {
    /// The table's family.
    pub family: IpFamily,
    /// The set or map.
    pub set: &'static str,
    /// Its key.
    pub key: Vec<Field>,
    /// A comment shown by `nft list` (kube-proxy's on no-endpoint elements).
    pub comment: Option<String>,
    /// Its value, in a map.
    pub value: Option<Value>,
}

/// One change to the elements of a set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementChange {
    /// Removes every element.
    Flush {
        /// The table's family.
        family: IpFamily,
        /// The set or map.
        set: &'static str,
    },
    /// Adds an element.
    Add(Element),
    /// Deletes the element with this one's key.
    Delete(Element),
}

// === impl Field ===

impl Field {
    /// The field's bytes as the kernel stores them, padded to 4 bytes when `padded`.
    fn encode(&self, out: &mut Vec<u8>, padded: bool) {
        let start = out.len();
        match self {
            Field::Addr(IpAddr::V4(ip)) => out.extend_from_slice(&ip.octets()),
            Field::Addr(IpAddr::V6(ip)) => out.extend_from_slice(&ip.octets()),
            Field::Proto(p) => out.push(p.number()),
            Field::Port(port) => out.extend_from_slice(&port.to_be_bytes()),
            Field::Slot(slot) => out.extend_from_slice(&slot.to_ne_bytes()),
        }
        if padded {
            let len = out.len() - start;
            out.resize(start + len.next_multiple_of(4), 0);
        }
    }
}

/// The kernel's bytes for a key or data value: a single field as it is, a concatenation
/// with every field padded to 4 bytes.
pub fn encode_fields(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.len() * 16);
    let padded = fields.len() > 1;
    for f in fields {
        f.encode(&mut out, padded);
    }
    out
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Addr(ip) => write!(f, "{ip}"),
            Field::Proto(p) => f.write_str(p.nft_name()),
            Field::Port(port) => write!(f, "{port}"),
            Field::Slot(slot) => write!(f, "{slot}"),
        }
    }
}

/// Fields as nft writes a concatenation: `a . b . c`.
pub(super) fn write_fields(out: &mut String, fields: &[Field]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(" . ");
        }
        let _ = write!(out, "{field}");
    }
}

// === impl Value ===

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Fields(fields) => {
                let mut s = String::new();
                write_fields(&mut s, fields);
                f.write_str(&s)
            }
            Value::Verdict(MapVerdict::Drop) => f.write_str("drop"),
            Value::Verdict(MapVerdict::Goto(chain)) => write!(f, "goto {chain}"),
        }
    }
}

// === impl ElementChange ===

impl ElementChange {
    /// The change as one nft command.
    pub fn write_nft(&self, out: &mut String) {
        match self {
            ElementChange::Flush { family, set } => {
                let kind = if is_map(set) { "map" } else { "set" };
                script::command(out, "flush", kind, *family, set);
            }
            ElementChange::Add(e) => {
                let mut key = String::with_capacity(48);
                write_fields(&mut key, &e.key);
                let value = e.value.as_ref().map(ToString::to_string);
                script::add_element(
                    out,
                    e.family,
                    e.set,
                    &key,
                    e.comment.as_deref(),
                    value.as_deref(),
                );
            }
            ElementChange::Delete(e) => {
                let mut key = String::with_capacity(48);
                write_fields(&mut key, &e.key);
                script::delete_element(out, e.family, e.set, &key);
            }
        }
    }
}

/// Whether a container of the service tables is a map (the rest are sets).
fn is_map(name: &str) -> bool {
    !matches!(
        name,
        super::layout::CLUSTER_IPS | super::layout::NODEPORT_IPS | super::layout::HAIRPIN
    ) && !name.starts_with(super::groups::GROUP_PREFIX)
}
