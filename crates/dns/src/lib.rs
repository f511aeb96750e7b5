//! Cluster DNS for podnet: the Kubernetes DNS-Based Service Discovery records (schema 1.1.0) plus
//! CoreDNS-style pod records, answered by a small UDP/TCP server that forwards everything else.
//!
//! Layers, bottom up:
//! - [`zone`]: pure — Services, EndpointSlices, Namespaces and Pods in, an immutable [`Zone`] out,
//!   which answers a question with records, authority and a response code.
//! - [`wire`]: pure — request bytes in, response bytes out (EDNS0, truncation, malformed input).
//! - [`server`]: sockets and threads — UDP and TCP listeners, an atomically swappable zone, and a
//!   forwarder with a TTL-honouring cache for names outside the zone.

mod cache;
mod names;
pub mod server;
pub mod wire;
pub mod zone;

/// The DNS types in this crate's API (`Name`, `RecordType`, `ResponseCode`, …).
pub use hickory_proto as proto;
pub use server::{Server, ServerConfig, ServerError, StopHandle, ZoneSetter, parse_resolv_conf};
pub use wire::{Transport, answer};
pub use zone::{Lookup, PodsMode, Zone, ZoneAnswer, ZoneBuilder, ZoneConfig, ZoneError};
