//! Cluster state as standard Kubernetes objects (k8s-openapi types).
//!
//! Layout: `object` names the kinds podnet knows and holds any one of them in [`object::Object`];
//! `dir` is the lab's object directory, shared by every lab process through files and a lock;
//! `manifest` reads and checks the YAML a user applies; `table` prints objects as kubectl does.

pub mod dir;
pub mod error;
pub mod labels;
pub mod manifest;
pub mod object;
pub mod table;
#[cfg(test)]
mod testdata;

pub use error::StoreError;

use k8s_openapi::jiff::Timestamp;

/// The current time as the store and the tables use it, in whole seconds: what a Kubernetes
/// `Time` field holds once written (RFC 3339 without fractions). A value with nanoseconds would
/// differ from its own stored copy, so every unchanged status would look changed and be written
/// again (and wake every watcher).
///
/// k8s-openapi builds jiff without its `std` feature, so `Timestamp::now()` may not exist; this
/// reads the system clock directly. A clock before 1970 reads as 1970.
pub fn now() -> Timestamp {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}
