//! podnet's only door to the kernel: network namespaces, rtnetlink, sysctls and nftables.
//!
//! Everything here acts on the network namespace of the *calling thread* (or of a socket opened
//! inside another one), never on a namespace it was not handed. Callers choose the namespace with
//! [`netns::run_in`] or [`netns::visit`]; nothing in this crate leaves a thread in another
//! namespace behind its caller's back.

pub mod conntrack;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod nft_elements;
pub mod sysctl;
