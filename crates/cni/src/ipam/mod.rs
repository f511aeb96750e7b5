//! Built-in IPAM.
