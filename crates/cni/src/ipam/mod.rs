//! Built-in IPAM, compatible with host-local's config: which addresses a pod gets, and a
//! crash-safe per-node record of who holds them.
//!
//! `config` parses and validates the `ipam` section; `allocator` decides addresses over an
//! in-memory state without I/O; `store` loads and saves that state under a file lock.

mod allocator;
mod config;
mod store;

pub use allocator::{Allocated, Attachment, AttachmentKey, IpamState};
pub use config::{DEFAULT_DATA_DIR, IpamConfig, Range, RangeSet, Route};
pub use store::{Locked, Store};
