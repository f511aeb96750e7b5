//! The service proxy: Services and EndpointSlices in, nftables rules out, as kube-proxy's
//! nftables mode does it (the pure part is `podnet_model::service`).
//!
//! The first sync after start renders the whole tables: their chains are rewritten in one
//! `nft -f` transaction, then their sets and maps emptied and refilled in one netlink
//! transaction, so a restarted agent adopts what a previous one left without a moment in
//! which Services are missing (between the two, the new rules run on the old elements).
//! Later syncs send only the difference to the last state applied: usually a few elements. After each sync, UDP conntrack entries that still lead to endpoints that
//! no longer serve are deleted, so a DNS-like client does not keep sending into the void.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use podnet_kernel::nft_elements::{self, ElementData, NftFamily, SetOp, TableOps, Verdict};
use podnet_kernel::{conntrack, nft};
use podnet_model::service::{
    self, ConntrackEntry, Element, ElementChange, HealthCheck, IpFamily, MapVerdict, NodeFacts,
    Protocol, ServiceName, ServiceState, StaleFlow, Transaction, Value,
};
use tracing::{debug, info, warn};

use crate::serve::Metrics;

/// The proxy's memory between syncs: the last state applied to the kernel.
#[derive(Default)]
pub struct ServiceProxy {
    applied: Option<ServiceState>,
    /// Each slice's last `endpoints.kubernetes.io/last-change-trigger-time` seen.
    triggers: HashMap<(String, String), String>,
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

    /// Makes the kernel match `services` and `slices` for this node.
    pub fn sync(
        &mut self,
        services: &[Service],
        slices: &[EndpointSlice],
        node: &NodeFacts,
        metrics: &Metrics,
    ) -> Result<(), ProxyError> {
        let started = Instant::now();
        let state = service::compile(services, slices, node);
        for w in &state.warnings {
            debug!(warning = %w, "service skipped in part");
        }
        if self.applied.as_ref() == Some(&state) {
            self.observe_triggers(slices, metrics);
            return Ok(());
        }
        let transaction = match &self.applied {
            None => service::render_full(&state),
            Some(old) => service::render_diff(old, &state),
        };
        if !transaction.is_empty() {
            if let Err(e) = apply_transaction(&transaction) {
                // A step may have landed before another failed: only a full sync knows
                // what to do from any table.
                self.applied = None;
                return Err(e);
            }
            if self.applied.is_none() {
                info!(services = state.services.len(), "service rules adopted");
            }
        }
        // Only UDP Services can leave stale flows; listing conntrack costs a process.
        if has_udp(&state) {
            clear_stale_udp(&state);
        }
        self.observe_triggers(slices, metrics);
        self.applied = Some(state);
        metrics.record_proxy_sync(started.elapsed(), unix_now());
        Ok(())
    }

    /// kube-proxy's network programming latency: from each endpoint change (the trigger time
    /// its controller wrote on the slice) to now, when the change is in the kernel. Changes
    /// older than this process's first sync are not its latency and are only remembered.
    fn observe_triggers(&mut self, slices: &[EndpointSlice], metrics: &Metrics) {
        let first_sync = self.applied.is_none();
        let now = unix_now();
        let mut seen = HashMap::with_capacity(slices.len());
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
        self.triggers = seen;
    }

    /// The health checks of the state last applied: `healthCheckNodePort` and local endpoint
    /// count of every Local LoadBalancer Service.
    pub fn health_checks(&self) -> impl Iterator<Item = (&ServiceName, HealthCheck)> {
        self.applied
            .iter()
            .flat_map(|state| &state.services)
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
pub fn apply_transaction(transaction: &Transaction) -> Result<StepTimes, ProxyError> {
    let mut times = StepTimes::default();
    let started = Instant::now();
    if !transaction.script.is_empty() {
        nft::apply(&transaction.script).map_err(|e| ProxyError(e.to_string()))?;
    }
    times.rules = started.elapsed();
    let started = Instant::now();
    if !transaction.elements.is_empty() {
        nft_elements::apply(&element_ops(&transaction.elements))
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

fn has_udp(state: &ServiceState) -> bool {
    state
        .services
        .iter()
        .flat_map(|s| &s.ports)
        .any(|p| p.name.protocol == Protocol::Udp)
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
