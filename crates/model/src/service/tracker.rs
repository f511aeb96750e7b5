//! Incremental compile: kube-proxy's change trackers. Between two syncs usually one Service
//! or one EndpointSlice changed; compiling all 30k Services again for it costs ~200 ms, so
//! the tracker recompiles only the Services whose inputs changed, by resourceVersion, and
//! says which, so that [`render_changes`](super::render_changes) touches only those.
//!
//! The result is always what [`compile`] would return for the same objects (a property test
//! checks it). Where a Service's compile depends on others, the tracker compiles everything:
//! when the node facts change, when an object has no resourceVersion (nothing tells its
//! changes then), or when two Services claim one frontend (the first by name wins, so a change
//! to one can change the other). Two objects with one name (which only a hand-made store can
//! hold) share a key, so they are compiled together, as `compile` would.
//!
//! What is left at 30k Services is the scan itself: reading 60k objects' names and versions
//! from a snapshot costs ~25 ms, memory-bound. A source that hands over changes (watch events)
//! would make it O(changes).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::compile::compile;
use super::input::NodeFacts;
use super::state::{IpFamily, Protocol, ServiceEntry, ServiceName, ServiceState};
use super::warning::CompileWarning;

#[cfg(test)]
mod tests;

/// The key of the node facts' warnings (no Service key is empty of a `/`).
const NODE_WARNINGS: &str = "node";

/// The label naming an EndpointSlice's Service.
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// What changed in one [`ServiceTracker::update`].
#[derive(Debug, Default)]
pub struct Changes {
    /// Whether everything was compiled again (the node facts or a frontend conflict
    /// changed, or nothing identifies object versions).
    pub full: bool,
    /// Every Service whose compiled entry may have changed, with its entry before (`None`:
    /// it is new; a Service gone has no entry in the new state).
    pub services: Vec<(ServiceName, Option<ServiceEntry>)>,
}

/// The compiled state, kept up to date one changed Service at a time.
#[derive(Debug, Default)]
pub struct ServiceTracker {
    facts: Option<NodeFacts>,
    state: ServiceState,
    /// Per Service key (by its hash): a second hash of the key, to tell two keys with one
    /// hash apart, and a hash of its inputs: its object's and its slices' identities and
    /// versions. The key is the Service's (for slices, the one their label names, whether or
    /// not it exists). Plain numbers: comparing 30k of them costs no pointer chasing.
    inputs: HashMap<u64, (u64, u64), KeyHashes>,
    /// `namespace/name` of each key, by its hash.
    key_names: HashMap<u64, String, KeyHashes>,
    /// The warnings of each Service key's compile; node warnings under [`NODE_WARNINGS`].
    warnings: HashMap<String, Vec<CompileWarning>>,
    /// Frontends in the state, with the Service holding each.
    claims: HashMap<Frontend, ServiceName>,
}

/// A frontend that only one Service may hold (compile's conflict rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Frontend {
    ClusterIp(IpAddr),
    Address(IpAddr, Protocol, u16),
    NodePort(IpFamily, Protocol, u16),
}

impl ServiceTracker {
    /// A tracker that has compiled nothing (its first update compiles everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// The state as of the last update: always equal to `compile` of its objects.
    pub fn state(&self) -> &ServiceState {
        &self.state
    }

    /// Brings the state up to date with these objects and says which Services changed.
    pub fn update(
        &mut self,
        services: &[Service],
        slices: &[EndpointSlice],
        facts: &NodeFacts,
    ) -> Changes {
        let Some(inputs) = Inputs::read(services, slices) else {
            return self.compile_all(services, slices, facts, None);
        };
        let has_conflicts = self
            .state
            .warnings
            .iter()
            .any(|w| matches!(w, CompileWarning::Conflict { .. }));
        if self.facts.as_ref() != Some(facts) || has_conflicts {
            return self.compile_all(services, slices, facts, Some(&inputs));
        }
        // The keys whose inputs differ, as `namespace/name`.
        let mut changed: HashMap<u64, String, KeyHashes> = HashMap::default();
        for (hash, (ns, name, check, fingerprint)) in &inputs.by_key {
            match self.inputs.get(hash) {
                Some((stored_check, stored)) if stored_check == check => {
                    if stored != fingerprint {
                        changed.insert(*hash, format!("{ns}/{name}"));
                    }
                }
                // Two keys with one hash: only a full compile is sure to be right.
                Some(_) => return self.compile_all(services, slices, facts, Some(&inputs)),
                None => {
                    changed.insert(*hash, format!("{ns}/{name}"));
                }
            }
        }
        for hash in self.inputs.keys() {
            if !inputs.by_key.contains_key(hash) {
                let name = self.key_names.get(hash).cloned().unwrap_or_default();
                changed.insert(*hash, name);
            }
        }
        if changed.is_empty() {
            return Changes::default();
        }
        if changed.len() > 64 && changed.len() * 4 > inputs.by_key.len() {
            // Most of it changed: one compile of everything is cheaper.
            return self.compile_all(services, slices, facts, Some(&inputs));
        }
        let keys: HashSet<&str> = changed.values().map(String::as_str).collect();
        let mut own_services: HashMap<&str, Vec<&Service>> = HashMap::new();
        for (svc, hash) in services.iter().zip(&inputs.service_keys) {
            if let Some(key) = changed.get(hash) {
                own_services.entry(key).or_default().push(svc);
            }
        }
        let mut own_slices: HashMap<&str, Vec<&EndpointSlice>> = HashMap::new();
        for (slice, hash) in slices.iter().zip(&inputs.slice_keys) {
            if let Some(key) = changed.get(hash) {
                own_slices.entry(key).or_default().push(slice);
            }
        }
        let changed_hashes: Vec<u64> = changed.keys().copied().collect();
        let mut changed: Vec<&String> = changed.values().collect();
        changed.sort_unstable();

        let mut out = Changes::default();
        let mut compiled = Vec::with_capacity(changed.len());
        for key in &changed {
            let svcs: Vec<Service> = own_services
                .get(key.as_str())
                .map(|v| v.iter().map(|s| (*s).clone()).collect())
                .unwrap_or_default();
            let slcs: Vec<EndpointSlice> = own_slices
                .get(key.as_str())
                .map(|v| v.iter().map(|s| (*s).clone()).collect())
                .unwrap_or_default();
            let mut one = compile(&svcs, &slcs, facts);
            one.warnings
                .retain(|w| !matches!(w, CompileWarning::Node { .. }));
            compiled.push(((*key).clone(), one));
        }
        // A frontend now claimed by two Services: compile's order decides, so compile all.
        let mut claimed_now: HashSet<Frontend> = HashSet::new();
        for (key, one) in &compiled {
            for entry in &one.services {
                for frontend in frontends(entry) {
                    let held_elsewhere = self.claims.get(&frontend).is_some_and(|owner| {
                        let owner = service_key_of(owner);
                        owner != *key && !keys.contains(owner.as_str())
                    });
                    if held_elsewhere || !claimed_now.insert(frontend) {
                        return self.compile_all(services, slices, facts, Some(&inputs));
                    }
                }
            }
            if one
                .warnings
                .iter()
                .any(|w| matches!(w, CompileWarning::Conflict { .. }))
            {
                return self.compile_all(services, slices, facts, Some(&inputs));
            }
        }

        // Out with the old entries, in with the new.
        for key in &changed {
            if let Some(i) = self.position(key) {
                let old = self.state.services.remove(i);
                for frontend in frontends(&old) {
                    self.claims.remove(&frontend);
                }
                out.services.push((old.name.clone(), Some(old)));
            }
        }
        for (key, one) in compiled {
            for entry in one.services {
                for frontend in frontends(&entry) {
                    self.claims.insert(frontend, entry.name.clone());
                }
                if !out.services.iter().any(|(name, _)| *name == entry.name) {
                    out.services.push((entry.name.clone(), None));
                }
                let at = self
                    .state
                    .services
                    .binary_search_by(|e| e.name.cmp(&entry.name))
                    .unwrap_or_else(|i| i);
                self.state.services.insert(at, entry);
            }
            if one.warnings.is_empty() {
                self.warnings.remove(&key);
            } else {
                self.warnings.insert(key, one.warnings);
            }
        }
        let mut warnings: Vec<CompileWarning> = self.warnings.values().flatten().cloned().collect();
        warnings.sort();
        self.state.warnings = warnings;
        for hash in changed_hashes {
            match inputs.by_key.get(&hash) {
                Some((ns, name, check, fingerprint)) => {
                    self.inputs.insert(hash, (*check, *fingerprint));
                    self.key_names.insert(hash, format!("{ns}/{name}"));
                }
                None => {
                    self.inputs.remove(&hash);
                    self.key_names.remove(&hash);
                }
            }
        }
        out
    }

    /// Compiles everything and reports every Service that differs.
    fn compile_all(
        &mut self,
        services: &[Service],
        slices: &[EndpointSlice],
        facts: &NodeFacts,
        inputs: Option<&Inputs<'_>>,
    ) -> Changes {
        let new = compile(services, slices, facts);
        let old = std::mem::replace(&mut self.state, new);
        let node_changed = old.node != self.state.node;
        let mut out = Changes {
            full: true,
            services: Vec::new(),
        };
        let mut olds: HashMap<ServiceName, ServiceEntry> = old
            .services
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        for entry in &self.state.services {
            match olds.remove(&entry.name) {
                Some(o) if o == *entry && !node_changed => {}
                o => out.services.push((entry.name.clone(), o)),
            }
        }
        out.services
            .extend(olds.into_iter().map(|(name, e)| (name, Some(e))));
        self.claims = self
            .state
            .services
            .iter()
            .flat_map(|e| frontends(e).into_iter().map(|f| (f, e.name.clone())))
            .collect();
        let slice_owner: HashMap<String, String> = slices
            .iter()
            .map(|s| {
                let owner = slice_key(&s.metadata);
                (service_key(&s.metadata), owner)
            })
            .collect();
        self.warnings.clear();
        for w in &self.state.warnings {
            self.warnings
                .entry(warning_key(w, &slice_owner))
                .or_default()
                .push(w.clone());
        }
        self.facts = Some(facts.clone());
        self.inputs.clear();
        self.key_names.clear();
        if let Some(inputs) = inputs {
            for (hash, (ns, name, check, fingerprint)) in &inputs.by_key {
                self.inputs.insert(*hash, (*check, *fingerprint));
                self.key_names.insert(*hash, format!("{ns}/{name}"));
            }
        }
        out
    }

    fn position(&self, key: &str) -> Option<usize> {
        let (namespace, name) = key.split_once('/')?;
        self.state
            .services
            .binary_search_by(|e| {
                (e.name.namespace.as_str(), e.name.name.as_str()).cmp(&(namespace, name))
            })
            .ok()
    }
}

/// What identifies the objects' versions, grouped by Service key.
struct Inputs<'a> {
    /// Per key (by its hash): its namespace and name, a second hash of them, and the hash of
    /// its objects' identities and versions.
    by_key: HashMap<u64, (&'a str, &'a str, u64, u64), KeyHashes>,
    /// Each Service's key hash, in input order.
    service_keys: Vec<u64>,
    /// Each slice's key hash, in input order.
    slice_keys: Vec<u64>,
}

impl<'a> Inputs<'a> {
    /// `None` when an object has no resourceVersion or two keys share a hash (then only a
    /// full compile is right). One pass, no allocation per object: at 30k Services this is
    /// most of an incremental update's cost.
    fn read(services: &'a [Service], slices: &'a [EndpointSlice]) -> Option<Self> {
        let mut out = Inputs {
            by_key: HashMap::with_capacity_and_hasher(services.len(), KeyHashes),
            service_keys: Vec::with_capacity(services.len()),
            slice_keys: Vec::with_capacity(slices.len()),
        };
        let mut add = |ns: &'a str, name: &'a str, meta: &ObjectMeta, is_service: bool| {
            let version = meta.resource_version.as_deref()?;
            let key = hash_of(&(ns, name));
            let object = hash_of(&(
                is_service,
                meta.name.as_deref(),
                meta.uid.as_deref(),
                version,
            ));
            let slot = out
                .by_key
                .entry(key)
                .or_insert_with(|| (ns, name, hash_of(&(name, ns, "check")), 0));
            if (slot.0, slot.1) != (ns, name) {
                return None;
            }
            // XOR: the order of a Service's slices does not matter.
            slot.3 ^= object;
            Some(key)
        };
        for svc in services {
            let meta = &svc.metadata;
            let ns = meta.namespace.as_deref().unwrap_or_default();
            let key = add(ns, meta.name.as_deref().unwrap_or_default(), meta, true)?;
            out.service_keys.push(key);
        }
        for slice in slices {
            let meta = &slice.metadata;
            let ns = meta.namespace.as_deref().unwrap_or_default();
            let service = meta
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SERVICE_NAME))
                .map_or("", String::as_str);
            // Unlabelled slices all go under one key: the namespace and "".
            let key = add(ns, service, meta, false)?;
            out.slice_keys.push(key);
        }
        Some(out)
    }
}

/// Maps keyed by a key's hash need not hash it again.
#[derive(Debug, Clone, Copy, Default)]
struct KeyHashes;

impl BuildHasher for KeyHashes {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// Passes a `u64` key through (it is a hash already).
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with this; anything else still gets a fair hash.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// `namespace/name` of a Service.
fn service_key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// `namespace/service` of the Service a slice's label names (`namespace/` without one).
fn slice_key(meta: &ObjectMeta) -> String {
    let service = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SERVICE_NAME))
        .map_or("", String::as_str);
    format!(
        "{}/{service}",
        meta.namespace.as_deref().unwrap_or_default()
    )
}

fn service_key_of(name: &ServiceName) -> String {
    format!("{}/{}", name.namespace, name.name)
}

/// The key a warning belongs to: its Service's (for a slice, the one its label names).
fn warning_key(w: &CompileWarning, slice_owner: &HashMap<String, String>) -> String {
    match w {
        CompileWarning::ServiceSkipped { service, .. }
        | CompileWarning::ServiceField { service, .. }
        | CompileWarning::Conflict { service, .. } => service.clone(),
        CompileWarning::SliceSkipped { slice, .. } | CompileWarning::SliceField { slice, .. } => {
            slice_owner.get(slice).cloned().unwrap_or_default()
        }
        CompileWarning::Node { .. } => NODE_WARNINGS.to_owned(),
    }
}

/// The frontends an entry holds.
fn frontends(entry: &ServiceEntry) -> Vec<Frontend> {
    let mut out = Vec::new();
    for p in &entry.ports {
        let proto = p.name.protocol;
        out.push(Frontend::ClusterIp(p.cluster_ip));
        for ip in p.external_ips.iter().chain(&p.load_balancer_ips) {
            out.push(Frontend::Address(*ip, proto, p.port));
        }
        if let Some(np) = p.node_port {
            out.push(Frontend::NodePort(p.family, proto, np));
        }
    }
    out.sort_unstable_by_key(|f| format!("{f:?}"));
    out.dedup();
    out
}
