//! Pure logic: Kubernetes objects in, a node's desired network state out. No I/O, no clocks, no
//! randomness, so everything here is tested exhaustively without root.

#[cfg(test)]
mod nft_check;
pub mod policy;
pub mod service;
