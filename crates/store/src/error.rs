//! The one error type of the object model and the object directory.

use std::path::PathBuf;

/// What went wrong reading, writing or decoding objects. Each message names the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A resource type given by a user (`podnet lab get <type>`) is not one podnet knows.
    #[error(
        "unknown resource type {input:?}: expected a kind, its plural or its short name, in any case: {accepted}"
    )]
    UnknownKind {
        /// What the user typed.
        input: String,
        /// Every accepted form, for the message.
        accepted: String,
    },

    /// An object lacks `apiVersion` or `kind`, so its type cannot be known.
    #[error(
        "object has no {field}: every object needs apiVersion and kind (e.g. apiVersion: v1, kind: Pod)"
    )]
    MissingType {
        /// `apiVersion` or `kind`.
        field: &'static str,
    },

    /// An object's `kind`/`apiVersion` pair is not one podnet stores.
    #[error("unknown object type: kind {kind:?} in apiVersion {api_version:?}: {expected}")]
    UnknownType {
        /// The object's `kind`.
        kind: String,
        /// The object's `apiVersion`.
        api_version: String,
        /// What would have been accepted.
        expected: String,
    },

    /// An object's fields do not decode into its Kubernetes type.
    #[error("{kind} ({api_version}): field {path}: {message}")]
    Decode {
        /// The object's kind, e.g. `Pod`.
        kind: &'static str,
        /// Its apiVersion, e.g. `v1`.
        api_version: &'static str,
        /// Where in the object the bad value is, e.g. `spec.containers[0].ports[0].containerPort`.
        path: String,
        /// What serde found there and what it expected.
        message: String,
    },

    /// An object cannot be stored under this name (empty, or not usable as a file name).
    #[error("{kind} name {name:?} cannot be stored: {reason}")]
    BadName {
        /// The object's kind.
        kind: &'static str,
        /// The offending name.
        name: String,
        /// Why.
        reason: &'static str,
    },

    /// An `update` closure changed what the object is rather than what it holds.
    #[error(
        "update of {kind} {key} changed its {what}: an update may not rename or move an object"
    )]
    IdentityChanged {
        /// The object's kind.
        kind: &'static str,
        /// `namespace/name` or `name`.
        key: String,
        /// `kind`, `namespace` or `name`.
        what: &'static str,
    },

    /// An `update` closure refused the change; the message is the caller's.
    #[error("update rejected: {0}")]
    Rejected(String),

    /// A file or directory of the store could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error (in the message, so not also a `source`).
        error: std::io::Error,
    },

    /// A file in the store does not hold a valid object (or revision counter).
    #[error("{}: not a valid stored object: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// An object could not be encoded as YAML or JSON.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// What was being encoded, e.g. `Pod default/web`.
        what: String,
        /// The encoder's message.
        message: String,
    },
}

impl StoreError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }
}
