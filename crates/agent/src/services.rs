//! The service proxy: Services and EndpointSlices in, nftables rules out, as kube-proxy's
//! nftables mode does it (the pure part is `podnet_model::service`).
//!
//! The first sync after start renders the whole tables: their chains are rewritten in one
//! `nft -f` transaction, then their sets and maps emptied and refilled in one netlink
//! transaction, so a restarted agent adopts what a previous one left without a moment in
//! which Services are missing (between the two, the new rules run on the old elements).
//! Later syncs compile only the Services whose objects changed (by resourceVersion, as
//! kube-proxy's change trackers do) and send only their difference: usually a few elements.
//! After a sync that touched a UDP Service, conntrack entries that still lead to endpoints
//! that no longer serve are deleted, so a DNS-like client does not keep sending into the void.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use podnet_kernel::nft_elements::{
    self, ElementData, ElementWriter, NftFamily, SetOp, TableOps, Verdict,
};
use podnet_kernel::{conntrack, nft};
use podnet_model::service::{
    self, ConntrackEntry, Element, ElementChange, HealthCheck, IpFamily, MapVerdict, NodeFacts,
    Protocol, ServiceEntry, ServiceName, ServiceState, ServiceTracker, StaleFlow, Transaction,
    Value,
};
use tracing::{debug, info, warn};

use crate::serve::Metrics;

/// The proxy's memory between syncs: the compiled state, and whether the kernel holds it.
#[derive(Default)]
pub struct ServiceProxy {
    tracker: ServiceTracker,
    /// Whether the kernel holds the tracker's state (false before the first sync and after
    /// a failed one: the next sync is then a full one).
    in_kernel: bool,
    /// Each slice's last `endpoints.kubernetes.io/last-change-trigger-time` seen.
    triggers: HashMap<(String, String), String>,
    /// The netlink socket for element batches, kept open between syncs (see [`ElementWriter`]).
    writer: ElementWriter,
    /// How long the last transaction's steps took.
    last_steps: StepTimes,
}

/// The annotation endpoint controllers put on a slice: when the change it reflects happened.
const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// What went wrong programming Services.
#[derive(Debug, thiserror::Error)]
#[error("programming services: {0}")]
pub struct ProxyError(String);

impl ServiceProxy {
    /// A proxy that has applied nothing yet (its first sync is a full one).
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the kernel match `services` and `slices` for this node. Only the Services whose
    /// objects changed since the last sync are compiled and rendered again.
    pub fn sync(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        node: &NodeFacts,
        metrics: &Metrics,
    ) -> Result<(), ProxyError> {
        let started = Instant::now();
        let first_sync = !self.in_kernel;
        let old_node = self.tracker.state().node.clone();
        let changes = self.tracker.update(services, slices, node);
        let state = self.tracker.state();
        if changes.full {
            for w in &state.warnings {
                debug!(warning = %w, "service skipped in part");
            }
        }
        if self.in_kernel && changes.services.is_empty() && old_node == state.node {
            return Ok(());
        }
        let transaction = if first_sync {
            service::render_full(state)
        } else {
            service::render_changes(&old_node, state, &changes.services)
        };
        if !transaction.is_empty() {
            match apply_transaction(&mut self.writer, &transaction) {
                Ok(steps) => self.last_steps = steps,
                Err(e) => {
                    // A step may have landed before another failed: only a full sync knows
                    // what to do from any table.
                    self.in_kernel = false;
                    return Err(e);
                }
            }
            if first_sync {
                info!(services = state.services.len(), "service rules adopted");
            }
        }
        self.in_kernel = true;
        // Only UDP Services can leave stale flows; listing conntrack costs a process.
        let udp_changed = if first_sync || changes.full {
            has_udp(state.services.iter())
        } else {
            // The changed Services' entries before and now (found by name: the state is
            // sorted by it, and a scan of 30k names would cost milliseconds).
            let now = changes.services.iter().filter_map(|(name, _)| {
                let i = state.services.binary_search_by(|e| e.name.cmp(name)).ok()?;
                state.services.get(i)
            });
            has_udp(
                changes
                    .services
                    .iter()
                    .filter_map(|(_, old)| old.as_ref())
                    .chain(now),
            )
        };
        if udp_changed {
            clear_stale_udp(state);
        }
        let whole = first_sync || changes.full;
        let changed_slices = changes.slices.iter().filter_map(|&i| slices.get(i));
        self.observe_triggers(changed_slices, whole, first_sync, metrics);
        metrics.record_proxy_sync(started.elapsed(), unix_now());
        Ok(())
    }

    /// kube-proxy's network programming latency: from each endpoint change (the trigger time
    /// its controller wrote on the slice) to now, when the change is in the kernel. Changes
    /// older than this process's first sync are not its latency and are only remembered.
    /// `slices` are those of the Services compiled again; `whole`: they are all there are.
    fn observe_triggers<'a>(
        &mut self,
        slices: impl Iterator<Item = &'a Arc<EndpointSlice>>,
        whole: bool,
        first_sync: bool,
        metrics: &Metrics,
    ) {
        let now = unix_now();
        let mut seen = HashMap::new();
        for slice in slices {
            let Some(trigger) = slice
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LAST_CHANGE_TRIGGER_TIME))
            else {
                continue;
            };
            let key = (
                slice.metadata.namespace.clone().unwrap_or_default(),
                slice.metadata.name.clone().unwrap_or_default(),
            );
            let new = self.triggers.get(&key) != Some(trigger);
            if new
                && !first_sync
                && let Ok(at) = trigger.parse::<Timestamp>()
            {
                let at = at.as_second() as f64 + f64::from(at.subsec_nanosecond()) / 1e9;
                metrics.record_network_programming((now - at).max(0.0));
            }
            seen.insert(key, trigger.clone());
        }
        if whole {
            self.triggers = seen;
        } else {
            self.triggers.extend(seen);
        }
    }

    /// How long the steps of the last transaction applied took.
    pub fn last_steps(&self) -> StepTimes {
        self.last_steps
    }

    /// The health checks of the state last applied: `healthCheckNodePort` and local endpoint
    /// count of every Local LoadBalancer Service.
    pub fn health_checks(&self) -> impl Iterator<Item = (&ServiceName, HealthCheck)> {
        self.tracker
            .state()
            .services
            .iter()
            .filter_map(|s| Some((&s.name, s.health_check?)))
    }
}

/// How long each step of a transaction took.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepTimes {
    /// The `nft -f` script: declarations and rules.
    pub rules: Duration,
    /// The netlink transaction: elements.
    pub elements: Duration,
    /// The `nft -f` cleanup.
    pub cleanup: Duration,
}

/// Applies a sync's three steps in order (see [`Transaction`]): the rules through `nft -f`,
/// the elements through netlink, the removals through `nft -f`.
pub fn apply_transaction(
    writer: &mut ElementWriter,
    transaction: &Transaction,
) -> Result<StepTimes, ProxyError> {
    let mut times = StepTimes::default();
    let started = Instant::now();
    if !transaction.script.is_empty() {
        nft::apply(&transaction.script).map_err(|e| ProxyError(e.to_string()))?;
    }
    times.rules = started.elapsed();
    let started = Instant::now();
    if !transaction.elements.is_empty() {
        writer
            .apply(&element_ops(&transaction.elements))
            .map_err(|e| ProxyError(e.to_string()))?;
    }
    times.elements = started.elapsed();
    let started = Instant::now();
    if !transaction.cleanup.is_empty() {
        nft::apply(&transaction.cleanup).map_err(|e| ProxyError(e.to_string()))?;
    }
    times.cleanup = started.elapsed();
    debug!(
        rules_ms = times.rules.as_secs_f64() * 1e3,
        elements = transaction.elements.len(),
        elements_ms = times.elements.as_secs_f64() * 1e3,
        cleanup_ms = times.cleanup.as_secs_f64() * 1e3,
        "service transaction applied"
    );
    Ok(times)
}

/// The element changes as netlink set operations, per table, in order; runs of changes of
/// one kind to one set become one operation.
fn element_ops(changes: &[ElementChange]) -> Vec<TableOps> {
    let mut tables: Vec<TableOps> = [NftFamily::Ip, NftFamily::Ip6]
        .into_iter()
        .map(|family| TableOps {
            family,
            table: service::TABLE.to_owned(),
            ops: Vec::new(),
        })
        .collect();
    for change in changes {
        let (family, set) = match change {
            ElementChange::Flush { family, set } => (*family, *set),
            ElementChange::Add(e) | ElementChange::Delete(e) => (e.family, e.set),
        };
        let ops = &mut tables[usize::from(family == IpFamily::V6)].ops;
        match (change, ops.last_mut()) {
            (ElementChange::Add(e), Some(SetOp::Add { set: s, elements })) if s == set => {
                elements.push(kernel_element(e));
            }
            (ElementChange::Delete(e), Some(SetOp::Delete { set: s, keys })) if s == set => {
                keys.push(service::encode_fields(&e.key));
            }
            (ElementChange::Add(e), _) => ops.push(SetOp::Add {
                set: set.to_owned(),
                elements: vec![kernel_element(e)],
            }),
            (ElementChange::Delete(e), _) => ops.push(SetOp::Delete {
                set: set.to_owned(),
                keys: vec![service::encode_fields(&e.key)],
            }),
            (ElementChange::Flush { .. }, _) => ops.push(SetOp::Flush {
                set: set.to_owned(),
            }),
        }
    }
    tables.retain(|t| !t.ops.is_empty());
    tables
}

fn kernel_element(e: &Element) -> nft_elements::Element {
    nft_elements::Element {
        key: service::encode_fields(&e.key),
        data: e.value.as_ref().map(|v| match v {
            Value::Fields(fields) => ElementData::Value(service::encode_fields(fields)),
            Value::Verdict(MapVerdict::Drop) => ElementData::Verdict(Verdict::Drop),
            Value::Verdict(MapVerdict::Goto(chain)) => {
                ElementData::Verdict(Verdict::Goto(chain.clone()))
            }
        }),
        comment: e.comment.clone(),
    }
}

fn has_udp<'a>(mut entries: impl Iterator<Item = &'a ServiceEntry>) -> bool {
    entries.any(|s| s.ports.iter().any(|p| p.name.protocol == Protocol::Udp))
}

/// Deletes UDP flows the new state no longer serves (best effort: a failure leaves them to
/// expire).
fn clear_stale_udp(state: &ServiceState) {
    let flows = match conntrack::list_udp() {
        Ok(flows) => flows,
        Err(e) => {
            warn!(error = %e, "cannot list conntrack entries");
            return;
        }
    };
    let entries: Vec<ConntrackEntry> = flows
        .iter()
        .map(|f| ConntrackEntry {
            protocol: Protocol::Udp,
            orig_dst: f.orig_dst,
            orig_dst_port: f.orig_dst_port,
            reply_src: f.reply_src,
        })
        .collect();
    for stale in service::stale_udp_flows(state, &entries) {
        let outcome = match stale {
            StaleFlow::ServiceIp {
                dst,
                port,
                reply_src,
            } => conntrack::delete_udp_flow(Some(dst), port, reply_src),
            StaleFlow::NodePort { port, reply_src } => {
                conntrack::delete_udp_flow(None, port, reply_src)
            }
        };
        match outcome {
            Ok(n) => debug!(?stale, deleted = n, "stale UDP flows deleted"),
            Err(e) => warn!(error = %e, "cannot delete stale UDP flows"),
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
