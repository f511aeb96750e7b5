//! podnet-cni: a CNI 1.1.0 plugin that wires a pod's network namespace into its node.
//!
//! Layout: `spec` is the CNI wire format (config, environment, results, versions); `ipam` is the
//! built-in, host-local-compatible address allocator and its crash-safe store; `error` is the
//! spec's error result. The commands that touch the kernel live in `plugin`.

pub mod error;
pub mod ipam;
pub mod plugin;
pub mod spec;
