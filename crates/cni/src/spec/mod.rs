//! The CNI wire format: spec versions, the `CNI_*` environment, the network config on stdin and
//! the result on stdout. Pure code, no I/O, so every rule is unit-tested.

mod config;
mod env;
mod json;
mod result;
mod validate;
mod version;

#[cfg(test)]
mod tests;

pub use config::{Attachment, Mode, NetConf, PortMapping, Protocol, RuntimeConfig, StructuredArgs};
pub use env::{CniArgs, Command, Env};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{Version, requested_version, version_answer};
