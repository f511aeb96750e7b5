//! The lab's object directory: cluster state as one YAML file per object, shared by every lab
//! process (the CLI, one kubelet and one agent per node) without a server.
//!
//! Layout under the root:
//!
//! ```text
//! lock                              flock(2)ed by every writer for the whole read-modify-write
//! revision                          a counter bumped by every change; watchers poll it
//! <plural>/<namespace>/<name>.yaml  a namespaced object, e.g. pods/default/web.yaml
//! <plural>/<name>.yaml              a cluster-scoped object, e.g. nodes/n1.yaml
//! ```
//!
//! Each file is written to a temporary name in the same directory and renamed into place, so a
//! reader never sees half an object and needs no lock. Writers take the lock, write the object,
//! then the revision: a watcher that sees a new revision finds the change already in place.
//! Files are not fsynced: the lab's state is rebuilt from manifests, and only visibility between
//! processes — which rename gives — matters.

use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use podnet_model::policy::ClusterNetworkPolicy;
use serde_json::Value;

use crate::StoreError;
use crate::object::{Kind, Object};

#[cfg(test)]
mod tests;

/// The file every writer locks.
const LOCK_FILE: &str = "lock";
/// The file holding the revision counter.
const REVISION_FILE: &str = "revision";
/// The namespace of a namespaced object that names none, as in Kubernetes.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A directory of Kubernetes objects, safe to share between threads and processes.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    root: PathBuf,
}

// === impl ObjectStore ===

impl ObjectStore {
    /// Opens the store at `root`, creating the directory if needed.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(|e| StoreError::io(root, e))?;
        let store = Self {
            root: root.to_path_buf(),
        };
        // Creates the lock file now, so that a read-only problem shows at open, not mid-write.
        drop(store.lock()?);
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates or replaces an object and returns it as stored.
    ///
    /// The store owns some metadata, as the API server does: `uid` and `creationTimestamp` are
    /// set on create and kept on replace, `resourceVersion` becomes the new revision, and a
    /// namespaced object without `metadata.namespace` goes to `default`. On replace, a `status`
    /// or `deletionTimestamp` the new object lacks is kept from the stored one, so re-applying a
    /// manifest does not wipe what kubelets wrote. Replacing an object with an identical one
    /// changes nothing and does not bump the revision.
    pub fn put(&self, obj: &Object) -> Result<Object, StoreError> {
        let mut obj = obj.clone();
        let kind = obj.kind();
        let meta = obj.metadata_mut();
        meta.namespace = if kind.namespaced() {
            Some(
                meta.namespace
                    .take()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            )
        } else {
            None
        };
        let path = self.object_path(kind, obj.namespace(), obj.name())?;

        let _lock = self.lock()?;
        let existing = read_object(&path, kind)?;
        match &existing {
            Some(old) => {
                keep_server_fields(&mut obj, old);
                if &obj == old {
                    return Ok(obj);
                }
            }
            None => {
                let meta = obj.metadata_mut();
                meta.uid = Some(new_uid());
                meta.creation_timestamp = Some(Time(now_in_seconds()));
                meta.deletion_timestamp = None;
            }
        }
        self.commit(&path, obj)
    }

    /// The object `kind` `namespace`/`name`, if it exists. `namespace` defaults to `default` for
    /// namespaced kinds and is ignored for cluster-scoped ones.
    pub fn get(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Object>, StoreError> {
        read_object(&self.object_path(kind, namespace, name)?, kind)
    }

    /// Every object of `kind`, sorted by namespace, then name.
    pub fn list(&self, kind: Kind) -> Result<Vec<Object>, StoreError> {
        let dir = self.root.join(kind.plural());
        let mut files = Vec::new();
        if kind.namespaced() {
            for namespace_dir in entries(&dir)? {
                if namespace_dir.is_dir() {
                    files.extend(entries(&namespace_dir)?);
                }
            }
        } else {
            files = entries(&dir)?;
        }
        let mut objects = Vec::new();
        for file in files {
            let is_object = file
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".yaml") && !n.starts_with('.'));
            // `None`: deleted since the directory was read.
            if is_object && let Some(obj) = read_object(&file, kind)? {
                objects.push(obj);
            }
        }
        objects.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
        Ok(objects)
    }

    /// Deletes an object; `false` if there was none.
    pub fn delete(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool, StoreError> {
        let path = self.object_path(kind, namespace, name)?;
        let _lock = self.lock()?;
        match fs::remove_file(&path) {
            Ok(()) => {
                let next = self.revision()? + 1;
                self.write_revision(next)?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Reads an object, lets `f` change it, and writes it back, all under the lock, so
    /// concurrent updates from other processes are never lost. Returns the object as stored, or
    /// `None` if it does not exist.
    ///
    /// `f` may change anything but the object's kind, namespace and name; the store's own
    /// fields (`uid`, `creationTimestamp`, `resourceVersion`) are restored. When `f` changes
    /// nothing, nothing is written and the revision stays: watchers are not woken for nothing.
    pub fn update(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Object) -> Result<(), StoreError>,
    ) -> Result<Option<Object>, StoreError> {
        let path = self.object_path(kind, namespace, name)?;
        let _lock = self.lock()?;
        let Some(old) = read_object(&path, kind)? else {
            return Ok(None);
        };
        let mut obj = old.clone();
        f(&mut obj)?;
        let changed = if obj.kind() != kind {
            Some("kind")
        } else if obj.namespace() != old.namespace() {
            Some("namespace")
        } else if obj.name() != old.name() {
            Some("name")
        } else {
            None
        };
        if let Some(what) = changed {
            return Err(StoreError::IdentityChanged {
                kind: kind.kind_name(),
                key: key(old.namespace(), old.name()),
                what,
            });
        }
        restore_store_fields(&mut obj, &old);
        if obj == old {
            return Ok(Some(obj));
        }
        self.commit(&path, obj).map(Some)
    }

    /// The revision counter: it changes whenever any object does. Reads one small file, so
    /// watchers can poll it often and re-read the objects only when it moves.
    pub fn revision(&self) -> Result<u64, StoreError> {
        let path = self.root.join(REVISION_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::io(path, e)),
        };
        text.trim().parse().map_err(|_| StoreError::Corrupt {
            reason: format!("revision {:?} is not a number", text.trim()),
            path,
        })
    }

    /// Every Pod.
    pub fn pods(&self) -> Result<Vec<Pod>, StoreError> {
        self.list_typed(Kind::Pod)
    }

    /// Every Node.
    pub fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        self.list_typed(Kind::Node)
    }

    /// Every Namespace.
    pub fn namespaces(&self) -> Result<Vec<Namespace>, StoreError> {
        self.list_typed(Kind::Namespace)
    }

    /// Every Service.
    pub fn services(&self) -> Result<Vec<Service>, StoreError> {
        self.list_typed(Kind::Service)
    }

    /// Every EndpointSlice.
    pub fn endpoint_slices(&self) -> Result<Vec<EndpointSlice>, StoreError> {
        self.list_typed(Kind::EndpointSlice)
    }

    /// Every NetworkPolicy.
    pub fn network_policies(&self) -> Result<Vec<NetworkPolicy>, StoreError> {
        self.list_typed(Kind::NetworkPolicy)
    }

    /// Every ClusterNetworkPolicy.
    pub fn cluster_network_policies(&self) -> Result<Vec<ClusterNetworkPolicy>, StoreError> {
        self.list_typed(Kind::ClusterNetworkPolicy)
    }

    /// Every Deployment.
    pub fn deployments(&self) -> Result<Vec<Deployment>, StoreError> {
        self.list_typed(Kind::Deployment)
    }

    /// Every Ingress.
    pub fn ingresses(&self) -> Result<Vec<Ingress>, StoreError> {
        self.list_typed(Kind::Ingress)
    }

    /// Every ConfigMap.
    pub fn config_maps(&self) -> Result<Vec<ConfigMap>, StoreError> {
        self.list_typed(Kind::ConfigMap)
    }

    fn list_typed<T: TryFrom<Object>>(&self, kind: Kind) -> Result<Vec<T>, StoreError> {
        // `list` checks every file holds `kind`, so no object is dropped here.
        Ok(self
            .list(kind)?
            .into_iter()
            .filter_map(|o| T::try_from(o).ok())
            .collect())
    }

    /// Writes `obj` at the next revision, then the revision. The caller holds the lock.
    fn commit(&self, path: &Path, mut obj: Object) -> Result<Object, StoreError> {
        let next = self.revision()? + 1;
        obj.metadata_mut().resource_version = Some(next.to_string());
        write_atomic(path, obj.to_yaml()?.as_bytes())?;
        self.write_revision(next)?;
        Ok(obj)
    }

    fn write_revision(&self, revision: u64) -> Result<(), StoreError> {
        write_atomic(
            &self.root.join(REVISION_FILE),
            format!("{revision}\n").as_bytes(),
        )
    }

    /// Takes the writers' lock; it is released when the returned file is dropped.
    fn lock(&self) -> Result<File, StoreError> {
        let path = self.root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        file.lock().map_err(|e| StoreError::io(&path, e))?;
        Ok(file)
    }

    /// Where `kind` `namespace`/`name` lives, refusing names that would escape the directory.
    fn object_path(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<PathBuf, StoreError> {
        check_file_name(kind, name)?;
        let dir = self.root.join(kind.plural());
        if kind.namespaced() {
            let namespace = namespace
                .filter(|ns| !ns.is_empty())
                .unwrap_or(DEFAULT_NAMESPACE);
            check_file_name(kind, namespace)?;
            Ok(dir.join(namespace).join(format!("{name}.yaml")))
        } else {
            Ok(dir.join(format!("{name}.yaml")))
        }
    }
}

/// Puts back the metadata only the store writes: `uid`, `creationTimestamp`, `resourceVersion`.
fn restore_store_fields(new: &mut Object, old: &Object) {
    let (meta, old_meta) = (new.metadata_mut(), old.metadata());
    meta.uid.clone_from(&old_meta.uid);
    meta.creation_timestamp
        .clone_from(&old_meta.creation_timestamp);
    meta.resource_version.clone_from(&old_meta.resource_version);
}

/// Carries what a replacement keeps from the stored object `old` to `new`: the store's own
/// fields, and a deletion mark and status that `new` does not carry itself.
fn keep_server_fields(new: &mut Object, old: &Object) {
    restore_store_fields(new, old);
    let (meta, old_meta) = (new.metadata_mut(), old.metadata());
    if meta.deletion_timestamp.is_none() {
        meta.deletion_timestamp
            .clone_from(&old_meta.deletion_timestamp);
    }
    // Status is the status subresource's to write; a manifest that carries none keeps it.
    match (new, old) {
        (Object::Namespace(n), Object::Namespace(o)) if n.status.is_none() => {
            n.status.clone_from(&o.status);
        }
        (Object::Node(n), Object::Node(o)) if n.status.is_none() => n.status.clone_from(&o.status),
        (Object::Pod(n), Object::Pod(o)) if n.status.is_none() => n.status.clone_from(&o.status),
        (Object::Deployment(n), Object::Deployment(o)) if n.status.is_none() => {
            n.status.clone_from(&o.status);
        }
        (Object::Service(n), Object::Service(o)) if n.status.is_none() => {
            n.status.clone_from(&o.status);
        }
        (Object::Ingress(n), Object::Ingress(o)) if n.status.is_none() => {
            n.status.clone_from(&o.status);
        }
        _ => {}
    }
}

/// `namespace/name`, or `name` for cluster-scoped objects.
fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// Refuses a name or namespace that cannot be one path component of ours. Kubernetes' own
/// name rules are stricter and are checked on manifests; this only guards the directory.
fn check_file_name(kind: Kind, name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') || name.contains('\0') {
        "it contains '/' or NUL"
    } else if name.starts_with('.') {
        "it starts with '.'"
    } else {
        return Ok(());
    };
    Err(StoreError::BadName {
        kind: kind.kind_name(),
        name: name.to_owned(),
        reason,
    })
}

/// Reads the object stored at `path`; `None` if there is no such file. A file that does not
/// hold a `kind` object is an error naming the file.
fn read_object(path: &Path, kind: Kind) -> Result<Option<Object>, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let value: Value = serde_yaml::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    let obj = Object::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    // The path says what the file must hold: <plural>/[<namespace>/]<name>.yaml.
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let namespace = kind
        .namespaced()
        .then(|| {
            path.parent()
                .and_then(Path::file_name)
                .and_then(|s| s.to_str())
        })
        .flatten();
    if obj.kind() != kind || obj.name() != name || obj.namespace() != namespace {
        return Err(corrupt(format!(
            "it holds {}, but its path is that of {kind} {}",
            obj.describe(),
            key(namespace, name)
        )));
    }
    Ok(Some(obj))
}

/// The entries of `dir`; none if it does not exist yet.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    read.map(|entry| entry.map(|e| e.path()).map_err(|e| StoreError::io(dir, e)))
        .collect()
}

/// Replaces `path` with `contents` in one step: readers see the old file or the new one.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    // Starts with '.', so `list` never mistakes it for an object.
    let tmp = dir.join(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = fs::write(&tmp, contents)
        .map_err(|e| StoreError::io(&tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e)));
    if result.is_err() {
        // Best effort: the temporary name is ignored by readers either way.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A fresh UID in the usual 8-4-4-4-12 hex form (a version-4 UUID layout). Random enough: the
/// hasher's keys are random per process and thread, and time, pid and a counter are mixed in.
fn new_uid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = (
        nanos,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    );
    let hash = |salt: u8| std::hash::RandomState::new().hash_one((seed, salt));
    let (a, b) = (hash(0), hash(1));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// Now, to the second: `Time` serializes whole seconds, so a finer stamp would not round-trip.
fn now_in_seconds() -> Timestamp {
    Timestamp::from_second(crate::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}
