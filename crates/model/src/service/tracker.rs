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
//! Finding what changed must not read every object: at 30k Services, reading 60k objects'
//! names and versions costs ~30 ms, memory-bound. So objects come shared (`Arc`), as a watch
//! cache (kube-runtime's reflector store) holds them: an unchanged object is the same `Arc`
//! in every snapshot, and the tracker, which keeps the `Arc`s it has seen, recognises it by
//! address without reading it. Only objects at a new address are read, and only the keys
//! they (or objects that vanished) belong to are compared by version.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

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
    /// The slices (indexes into the update's) of the Services compiled again, so that what
    /// looks at changed slices need not look at all of them. After a full compile: all.
    pub slices: Vec<usize>,
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
    inputs: HashMap<u64, (u64, u64), WordHashes>,
    /// `namespace/name` of each key, by its hash.
    key_names: HashMap<u64, String, WordHashes>,
    /// The warnings of each Service key's compile; node warnings under [`NODE_WARNINGS`].
    warnings: HashMap<String, Vec<CompileWarning>>,
    /// Frontends in the state, with the Service holding each.
    claims: HashMap<Frontend, ServiceName>,
    /// The objects of the last update, by address and in its order, with their hashes.
    known_services: KnownObjects<Service>,
    known_slices: KnownObjects<EndpointSlice>,
    /// Counts updates: marks the objects each one saw.
    epoch: u64,
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
    ///
    /// Objects are recognised by address first: one this tracker saw before (the same `Arc`,
    /// as a watch cache hands out for an object that did not change) is not read at all, so
    /// finding one change among 30k Services costs a comparison per object (a lookup where the
    /// order differs from last time). Any other object is compared by its identity and
    /// resourceVersion.
    pub fn update(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        facts: &NodeFacts,
    ) -> Changes {
        let has_conflicts = self
            .state
            .warnings
            .iter()
            .any(|w| matches!(w, CompileWarning::Conflict { .. }));
        if self.facts.as_ref() != Some(facts) || has_conflicts {
            return self.compile_all(services, slices, facts);
        }
        self.epoch += 1;
        let epoch = self.epoch;
        let Some(services_seen) = self.known_services.see(services, epoch, service_ids) else {
            return self.compile_all(services, slices, facts);
        };
        let Some(slices_seen) = self.known_slices.see(slices, epoch, slice_ids) else {
            return self.compile_all(services, slices, facts);
        };
        // Keys with a new, changed or vanished object: only these can have changed.
        let mut candidates: HashSet<u64, WordHashes> = HashSet::default();
        candidates.extend(
            services_seen
                .fresh
                .iter()
                .map(|&i| services_seen.ids[i].key),
        );
        candidates.extend(slices_seen.fresh.iter().map(|&i| slices_seen.ids[i].key));
        candidates.extend(
            services_seen
                .gone
                .iter()
                .chain(&slices_seen.gone)
                .map(|&(_, key)| key),
        );
        if candidates.is_empty() {
            // The same objects, perhaps in another order.
            self.remember(services, slices, services_seen, slices_seen);
            return Changes::default();
        }

        // The candidates' inputs now: a hash of their objects' versions, and where to read
        // their names.
        let mut now: HashMap<u64, KeyInputs, WordHashes> = HashMap::default();
        let objects = services_seen
            .ids
            .iter()
            .enumerate()
            .map(|(i, ids)| (ids, Source::Service(i)))
            .chain(
                slices_seen
                    .ids
                    .iter()
                    .enumerate()
                    .map(|(i, ids)| (ids, Source::Slice(i))),
            );
        for (ids, source) in objects {
            if !candidates.contains(&ids.key) {
                continue;
            }
            let slot = now.entry(ids.key).or_insert(KeyInputs {
                check: ids.check,
                fingerprint: 0,
                source,
            });
            if slot.check != ids.check {
                // Two keys with one hash: only a full compile is sure to be right.
                return self.compile_all(services, slices, facts);
            }
            // XOR: the order of a Service's slices does not matter.
            slot.fingerprint ^= ids.object;
        }
        // The keys whose inputs differ, as `namespace/name`.
        let mut changed: HashMap<u64, String, WordHashes> = HashMap::default();
        for &key in &candidates {
            match (self.inputs.get(&key), now.get(&key)) {
                (Some(&(check, _)), Some(new)) if check != new.check => {
                    return self.compile_all(services, slices, facts);
                }
                (Some(&(_, fingerprint)), Some(new)) if fingerprint == new.fingerprint => {}
                (_, Some(new)) => {
                    let name = match new.source {
                        Source::Service(i) => service_key(&services[i].metadata),
                        Source::Slice(i) => slice_key(&slices[i].metadata),
                    };
                    changed.insert(key, name);
                }
                (_, None) => {
                    let name = self.key_names.get(&key).cloned().unwrap_or_default();
                    changed.insert(key, name);
                }
            }
        }
        if changed.is_empty() {
            // New copies of unchanged objects: remember them, and that is all.
            self.remember(services, slices, services_seen, slices_seen);
            return Changes::default();
        }
        if changed.len() > 64 && changed.len() * 4 > services.len() {
            // Most of it changed: one compile of everything is cheaper.
            return self.compile_all(services, slices, facts);
        }
        let keys: HashSet<&str> = changed.values().map(String::as_str).collect();
        let mut own_services: HashMap<&str, Vec<&Service>> = HashMap::new();
        for (svc, ids) in services.iter().zip(&services_seen.ids) {
            if let Some(key) = changed.get(&ids.key) {
                own_services.entry(key).or_default().push(svc);
            }
        }
        let mut own_slices: HashMap<&str, Vec<&EndpointSlice>> = HashMap::new();
        let mut changed_slices = Vec::new();
        for (i, (slice, ids)) in slices.iter().zip(&slices_seen.ids).enumerate() {
            if let Some(key) = changed.get(&ids.key) {
                own_slices.entry(key).or_default().push(slice);
                changed_slices.push(i);
            }
        }
        let changed_hashes: Vec<u64> = changed.keys().copied().collect();
        let mut changed: Vec<&String> = changed.values().collect();
        changed.sort_unstable();

        let mut out = Changes {
            slices: changed_slices,
            ..Changes::default()
        };
        let mut compiled = Vec::with_capacity(changed.len());
        for key in &changed {
            let svcs = own_services
                .get(key.as_str())
                .map_or(&[][..], Vec::as_slice);
            let slcs = own_slices.get(key.as_str()).map_or(&[][..], Vec::as_slice);
            let mut one = compile(svcs, slcs, facts);
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
                        return self.compile_all(services, slices, facts);
                    }
                }
            }
            if one
                .warnings
                .iter()
                .any(|w| matches!(w, CompileWarning::Conflict { .. }))
            {
                return self.compile_all(services, slices, facts);
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
            match now.get(&hash) {
                Some(new) => {
                    self.inputs.insert(hash, (new.check, new.fingerprint));
                    let name = match new.source {
                        Source::Service(i) => service_key(&services[i].metadata),
                        Source::Slice(i) => slice_key(&slices[i].metadata),
                    };
                    self.key_names.insert(hash, name);
                }
                None => {
                    self.inputs.remove(&hash);
                    self.key_names.remove(&hash);
                }
            }
        }
        self.remember(services, slices, services_seen, slices_seen);
        out
    }

    /// Remembers the objects of this update by address, and forgets those it lacked.
    fn remember(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        services_seen: Seen,
        slices_seen: Seen,
    ) {
        let epoch = self.epoch;
        self.known_services.remember(services, services_seen, epoch);
        self.known_slices.remember(slices, slices_seen, epoch);
    }

    /// Compiles everything and reports every Service that differs.
    fn compile_all(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        facts: &NodeFacts,
    ) -> Changes {
        let new = compile(services, slices, facts);
        let old = std::mem::replace(&mut self.state, new);
        let node_changed = old.node != self.state.node;
        let mut out = Changes {
            full: true,
            services: Vec::new(),
            slices: (0..slices.len()).collect(),
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
        self.remember_all(services, slices);
        out
    }

    /// Remembers every object and every key's inputs, after a full compile. When an object
    /// has no resourceVersion, or two keys share a hash, nothing is remembered: the next
    /// update compiles everything again.
    fn remember_all(&mut self, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) {
        self.inputs.clear();
        self.key_names.clear();
        self.known_services.clear();
        self.known_slices.clear();
        self.epoch += 1;
        let epoch = self.epoch;
        let mut inputs: HashMap<u64, (u64, u64), WordHashes> = HashMap::default();
        let mut key_names: HashMap<u64, String, WordHashes> = HashMap::default();
        let mut add_all = |ids: Vec<Option<ObjectIds>>, name: &dyn Fn(usize) -> String| {
            let ids: Vec<ObjectIds> = ids.into_iter().collect::<Option<_>>()?;
            for (i, &one) in ids.iter().enumerate() {
                if !add_inputs(&mut inputs, &mut key_names, one, || name(i)) {
                    return None;
                }
            }
            Some(ids)
        };
        let Some(service_ids_all) =
            add_all(services.iter().map(|s| service_ids(s)).collect(), &|i| {
                service_key(&services[i].metadata)
            })
        else {
            return;
        };
        let Some(slice_ids_all) = add_all(slices.iter().map(|s| slice_ids(s)).collect(), &|i| {
            slice_key(&slices[i].metadata)
        }) else {
            return;
        };
        self.known_services
            .remember(services, Seen::all(service_ids_all), epoch);
        self.known_slices
            .remember(slices, Seen::all(slice_ids_all), epoch);
        self.inputs = inputs;
        self.key_names = key_names;
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

/// Adds one object's hashes to its key's inputs; `false` when two keys share a hash.
fn add_inputs(
    inputs: &mut HashMap<u64, (u64, u64), WordHashes>,
    key_names: &mut HashMap<u64, String, WordHashes>,
    ids: ObjectIds,
    name: impl FnOnce() -> String,
) -> bool {
    let slot = inputs.entry(ids.key).or_insert_with(|| {
        key_names.insert(ids.key, name());
        (ids.check, 0)
    });
    if slot.0 != ids.check {
        return false;
    }
    slot.1 ^= ids.object;
    true
}

/// What identifies one object's version, as hashes.
#[derive(Debug, Clone, Copy)]
struct ObjectIds {
    /// Its key: the namespace and name of its Service (for a slice, the one its label names).
    key: u64,
    /// A second hash of the key, to tell two keys with one hash apart.
    check: u64,
    /// Its kind, name, uid and resourceVersion.
    object: u64,
}

/// `None` without a resourceVersion: nothing tells this object's changes then.
fn object_ids(ns: &str, key_name: &str, meta: &ObjectMeta, is_service: bool) -> Option<ObjectIds> {
    let version = meta.resource_version.as_deref()?;
    Some(ObjectIds {
        key: hash_of(&(ns, key_name)),
        check: hash_of(&(key_name, ns, "check")),
        object: hash_of(&(
            is_service,
            meta.name.as_deref(),
            meta.uid.as_deref(),
            version,
        )),
    })
}

fn service_ids(svc: &Service) -> Option<ObjectIds> {
    let meta = &svc.metadata;
    let ns = meta.namespace.as_deref().unwrap_or_default();
    object_ids(ns, meta.name.as_deref().unwrap_or_default(), meta, true)
}

fn slice_ids(slice: &EndpointSlice) -> Option<ObjectIds> {
    let meta = &slice.metadata;
    let ns = meta.namespace.as_deref().unwrap_or_default();
    // Unlabelled slices all go under one key: the namespace and "".
    let service = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SERVICE_NAME))
        .map_or("", String::as_str);
    object_ids(ns, service, meta, false)
}

/// An object the tracker has seen, by its address.
struct Known<T> {
    /// Held so that no other object can take this address while it is remembered.
    _object: Arc<T>,
    ids: ObjectIds,
    /// The last update that saw it.
    epoch: u64,
}

impl<T> Known<T> {
    fn new(object: &Arc<T>, ids: ObjectIds, epoch: u64) -> Self {
        Self {
            _object: Arc::clone(object),
            ids,
            epoch,
        }
    }
}

impl<T> std::fmt::Debug for Known<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Known")
            .field("ids", &self.ids)
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// What one update saw of one kind of object.
struct Seen {
    /// Each object's hashes, in input order.
    ids: Vec<ObjectIds>,
    /// Objects not seen before (by address), by index.
    fresh: Vec<usize>,
    /// The remembered objects that are gone: their addresses and keys.
    gone: Vec<(usize, u64)>,
    /// Every object was where it was last time: the remembered order stands.
    same_order: bool,
}

impl Seen {
    /// Every object new.
    fn all(ids: Vec<ObjectIds>) -> Self {
        Self {
            fresh: (0..ids.len()).collect(),
            ids,
            gone: Vec::new(),
            same_order: false,
        }
    }
}

/// The objects of one kind the tracker has seen.
struct KnownObjects<T> {
    by_address: HashMap<usize, Known<T>, WordHashes>,
    /// The last update's objects' addresses and hashes, in its order (empty when it held one
    /// object twice). A watch cache keeps its order, so most objects come at the same
    /// position, and comparing addresses in order costs no lookup at all.
    order: Vec<usize>,
    order_ids: Vec<ObjectIds>,
}

impl<T> Default for KnownObjects<T> {
    fn default() -> Self {
        Self {
            by_address: HashMap::default(),
            order: Vec::new(),
            order_ids: Vec::new(),
        }
    }
}

impl<T> std::fmt::Debug for KnownObjects<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownObjects")
            .field("objects", &self.by_address.len())
            .field("in_order", &self.order.len())
            .finish()
    }
}

impl<T> KnownObjects<T> {
    fn clear(&mut self) {
        *self = Self::default();
    }

    /// Looks every object up by address: known ones are not read; the others are read with
    /// `read`. `None` when one has no resourceVersion.
    fn see(
        &mut self,
        objects: &[Arc<T>],
        epoch: u64,
        read: impl Fn(&T) -> Option<ObjectIds>,
    ) -> Option<Seen> {
        if !self.order.is_empty() {
            return self.see_in_order(objects, read);
        }
        let mut seen = Seen {
            ids: Vec::with_capacity(objects.len()),
            fresh: Vec::new(),
            gone: Vec::new(),
            same_order: false,
        };
        // Known ones are marked seen in this `epoch`; those left unmarked are gone.
        let mut matched = 0;
        for (i, object) in objects.iter().enumerate() {
            match self.by_address.get_mut(&address(object)) {
                Some(k) => {
                    if k.epoch != epoch {
                        k.epoch = epoch;
                        matched += 1;
                    }
                    seen.ids.push(k.ids);
                }
                None => {
                    seen.ids.push(read(object)?);
                    seen.fresh.push(i);
                }
            }
        }
        if matched < self.by_address.len() {
            seen.gone = self
                .by_address
                .iter()
                .filter(|(_, k)| k.epoch != epoch)
                .map(|(&a, k)| (a, k.ids.key))
                .collect();
        }
        Some(seen)
    }

    /// [`see`](Self::see) against the last update's order: the two lists are walked side by
    /// side, and an object at the position of its old self is known without a lookup. An
    /// object inserted or removed shifts the rest by one: looking one step ahead on either
    /// side finds the walk's footing again, so one Service added among 30k costs one lookup,
    /// not 30k. Other objects are looked up; the old objects passed over are gone unless
    /// they turn up elsewhere.
    fn see_in_order(
        &self,
        objects: &[Arc<T>],
        read: impl Fn(&T) -> Option<ObjectIds>,
    ) -> Option<Seen> {
        let mut seen = Seen {
            ids: Vec::with_capacity(objects.len()),
            fresh: Vec::new(),
            gone: Vec::new(),
            same_order: objects.len() == self.order.len(),
        };
        let mut passed_over = Vec::new();
        let mut moved: HashSet<usize, WordHashes> = HashSet::default();
        let (mut i, mut j) = (0, 0);
        while let Some(object) = objects.get(i) {
            let a = address(object);
            let old = self.order.get(j).copied();
            if old == Some(a) {
                seen.ids.push(self.order_ids[j]);
                i += 1;
                j += 1;
                continue;
            }
            seen.same_order = false;
            let next_new = objects.get(i + 1).map(address);
            match old {
                // The old object here was removed (or moved): step over it.
                Some(old) if self.order.get(j + 1) == Some(&a) && next_new != Some(old) => {
                    passed_over.push(old);
                    j += 1;
                    continue;
                }
                // This object was inserted (or moved here): the old one is next.
                Some(old) if next_new == Some(old) => {}
                // Replaced: the old one is passed over.
                Some(old) => {
                    passed_over.push(old);
                    j += 1;
                }
                None => {}
            }
            match self.by_address.get(&a) {
                Some(k) => {
                    seen.ids.push(k.ids);
                    moved.insert(a);
                }
                None => {
                    seen.ids.push(read(object)?);
                    seen.fresh.push(i);
                }
            }
            i += 1;
        }
        passed_over.extend_from_slice(self.order.get(j..).unwrap_or_default());
        seen.gone = passed_over
            .into_iter()
            .filter(|a| !moved.contains(a))
            .filter_map(|a| Some((a, self.by_address.get(&a)?.ids.key)))
            .collect();
        Some(seen)
    }

    /// Remembers `seen`'s fresh objects, forgets the gone ones, and keeps this update's order.
    fn remember(&mut self, objects: &[Arc<T>], seen: Seen, epoch: u64) {
        for (a, _) in &seen.gone {
            self.by_address.remove(a);
        }
        for &i in &seen.fresh {
            let object = &objects[i];
            self.by_address
                .insert(address(object), Known::new(object, seen.ids[i], epoch));
        }
        if seen.same_order {
            return;
        }
        if self.by_address.len() == objects.len() {
            self.order = objects.iter().map(address).collect();
            self.order_ids = seen.ids;
        } else {
            // One object twice: positions would not tell objects apart.
            self.order.clear();
            self.order_ids.clear();
        }
    }
}

/// Where a key's name can be read: one of its objects, by index.
#[derive(Debug, Clone, Copy)]
enum Source {
    Service(usize),
    Slice(usize),
}

/// A key's inputs in this update.
struct KeyInputs {
    check: u64,
    fingerprint: u64,
    source: Source,
}

fn address<T>(object: &Arc<T>) -> usize {
    Arc::as_ptr(object) as usize
}

/// Fresh shared copies of `objects`: each update sees them at new addresses.
#[cfg(test)]
pub(crate) fn shared<T: Clone>(objects: &[T]) -> Vec<Arc<T>> {
    objects.iter().cloned().map(Arc::new).collect()
}

/// Hashes one machine word, a key's hash or an object's address, without SipHash's cost.
/// Addresses are aligned and close together, so the word is mixed before the table uses it.
#[derive(Debug, Clone, Copy, Default)]
struct WordHashes;

impl BuildHasher for WordHashes {
    type Hasher = WordHasher;
    fn build_hasher(&self) -> WordHasher {
        WordHasher(0)
    }
}

/// Multiplies, then folds the high half (where the product's entropy is) into the low.
#[derive(Debug, Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        let product = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = product ^ (product >> 29);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
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
