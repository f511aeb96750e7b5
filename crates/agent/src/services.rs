//! The service proxy: Services and EndpointSlices in, nftables rules out, as kube-proxy's
//! nftables mode does it (the pure part is `podnet_model::service`).
//!
//! The first sync after start renders the whole tables in one transaction: the tables are
//! emptied and refilled atomically, so a restarted agent adopts what a previous one left
//! without a moment in which Services are missing. Later syncs send only the difference to the
//! last state applied. After each sync, UDP conntrack entries that still lead to endpoints that
//! no longer serve are deleted, so a DNS-like client does not keep sending into the void.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use podnet_kernel::conntrack;
use podnet_model::service::{self, ConntrackEntry, NodeFacts, Protocol, ServiceState, StaleFlow};
use tracing::{debug, info, warn};

use crate::serve::Metrics;

/// The proxy's memory between syncs: the last state applied to the kernel.
#[derive(Default)]
pub struct ServiceProxy {
    applied: Option<ServiceState>,
}

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
            return Ok(());
        }
        let script = match &self.applied {
            None => service::render_full(&state),
            Some(old) => service::render_diff(old, &state),
        };
        if !script.is_empty() {
            podnet_kernel::nft::apply(&script).map_err(|e| ProxyError(e.to_string()))?;
            if self.applied.is_none() {
                info!(services = state.services.len(), "service rules adopted");
            }
        }
        // Only UDP Services can leave stale flows; listing conntrack costs a process.
        if has_udp(&state) {
            clear_stale_udp(&state);
        }
        self.applied = Some(state);
        metrics.record_proxy_sync(started.elapsed(), unix_now());
        Ok(())
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
