//! What can be wrong with the objects `compile` reads. A bad object is skipped (or its bad
//! field ignored) and reported here: one broken Service must never stop the others.

use serde::Serialize;

/// A problem found in a Service, an EndpointSlice or the node facts. The message names the
/// object, the field and the bad value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, thiserror::Error)]
pub enum CompileWarning {
    /// The whole Service is skipped: no rules for any of its ports.
    #[error("Service {service}: {problem}; the Service is not proxied")]
    ServiceSkipped {
        /// `namespace/name` (as far as it is known).
        service: String,
        /// What is wrong.
        problem: String,
    },
    /// Part of a Service (a port, an address) is ignored; the rest is proxied.
    #[error("Service {service}: {problem}; ignored")]
    ServiceField {
        /// `namespace/name`.
        service: String,
        /// What is wrong.
        problem: String,
    },
    /// The whole EndpointSlice is skipped.
    #[error("EndpointSlice {slice}: {problem}; the slice is ignored")]
    SliceSkipped {
        /// `namespace/name` (as far as it is known).
        slice: String,
        /// What is wrong.
        problem: String,
    },
    /// Part of an EndpointSlice (a port, an endpoint) is ignored.
    #[error("EndpointSlice {slice}: {problem}; ignored")]
    SliceField {
        /// `namespace/name`.
        slice: String,
        /// What is wrong.
        problem: String,
    },
    /// Two Services claim the same frontend; the one sorting first by name keeps it.
    #[error("Service {service}: {frontend} is already used by Service {owner}; ignored")]
    Conflict {
        /// The Service losing the frontend.
        service: String,
        /// The frontend (`172.30.0.1 TCP 80`, `NodePort TCP 30080`, `cluster IP 172.30.0.1`).
        frontend: String,
        /// The Service keeping it.
        owner: String,
    },
    /// A node fact is unusable.
    #[error("node {node}: {problem}; ignored")]
    Node {
        /// The node's name.
        node: String,
        /// What is wrong.
        problem: String,
    },
}
