//! Services + EndpointSlices + node facts → [`ServiceState`]: kube-proxy's service and
//! endpoint change trackers, `CategorizeEndpoints` and the decisions of its nftables
//! `syncProxyRules`, as one pure function.
//!
//! O(Services + endpoints × ports): slices are grouped by Service in one hash map, each
//! Service is compiled from its own slices, and frontend conflicts are found with hash maps.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::input::{
    NodeFacts, PortView, ServiceView, SliceView, read_node, read_service, read_slice,
};
use super::state::{
    Dispatch, Endpoint, ExternalDispatch, HealthCheck, InternalDispatch, IpFamily, NodeView,
    Protocol, ServiceEntry, ServiceName, ServicePortName, ServicePortState, ServiceState,
    TrafficPolicy,
};
use super::topology::{Candidate, categorize};
use super::warning::CompileWarning;

/// No Services, typed (an empty `&[]` names no type for `compile`).
#[cfg(test)]
pub(crate) const NO_SERVICES: &[Service] = &[];
/// No EndpointSlices, typed.
#[cfg(test)]
pub(crate) const NO_SLICES: &[EndpointSlice] = &[];

/// Compiles what this node does with Service traffic. Never fails: a bad object (or a bad
/// part of one) is skipped and reported in [`ServiceState::warnings`].
///
/// Takes the objects owned or shared (`Arc<Service>`, as a watch cache holds them).
pub fn compile<S, E>(services: &[S], slices: &[E], node: &NodeFacts) -> ServiceState
where
    S: Borrow<Service>,
    E: Borrow<EndpointSlice>,
{
    let services: Vec<&Service> = services.iter().map(Borrow::borrow).collect();
    let slices: Vec<&EndpointSlice> = slices.iter().map(Borrow::borrow).collect();
    let mut warnings = Vec::new();
    let node_view = read_node(node, &mut warnings);

    let mut slices_by_service: HashMap<(String, String), Vec<SliceView>> = HashMap::new();
    for slice in in_name_order(&slices, |s| &s.metadata) {
        if let Some(view) = read_slice(slice, &node.name, &mut warnings) {
            slices_by_service
                .entry((view.namespace.clone(), view.service.clone()))
                .or_default()
                .push(view);
        }
    }

    // In name order: the output is ordered, and when two Services claim one frontend the
    // first by name keeps it, whatever order the objects came in.
    let views: Vec<ServiceView> = in_name_order(&services, |s| &s.metadata)
        .into_iter()
        .filter_map(|svc| read_service(svc, &mut warnings))
        .collect();

    let ctx = Context {
        node_name: &node.name,
        zone: node.zone.as_deref().unwrap_or_default(),
        node: &node_view,
    };
    let mut claims = Claims::default();
    let mut entries = Vec::with_capacity(views.len());
    for (index, view) in views.iter().enumerate() {
        if index > 0 && views[index - 1].name == view.name {
            warnings.push(CompileWarning::ServiceSkipped {
                service: view.name.to_string(),
                problem: "a second Service object with this namespace and name".to_owned(),
            });
            continue;
        }
        let key = (view.name.namespace.clone(), view.name.name.clone());
        // In name order (they were read in that order): the order decides which copy of
        // a duplicated endpoint wins.
        let own_slices = slices_by_service.remove(&key).unwrap_or_default();
        let mut compiler = ServiceCompiler {
            ctx: &ctx,
            view,
            views: &views,
            index,
            claims: &mut claims,
            warnings: &mut warnings,
        };
        if let Some(entry) = compiler.compile(&own_slices) {
            entries.push(entry);
        }
    }

    warnings.sort();
    ServiceState {
        node: node_view,
        services: entries,
        warnings,
    }
}

/// Objects sorted by namespace and name. Two objects with the same name (which the API
/// never holds, but a hand-written store might) are ordered by their content, so which one
/// wins never depends on input order.
fn in_name_order<T: serde::Serialize>(objects: &[T], meta: impl Fn(&T) -> &ObjectMeta) -> Vec<&T> {
    let mut sorted: Vec<&T> = objects.iter().collect();
    sorted.sort_by(|a, b| {
        let (ma, mb) = (meta(a), meta(b));
        (ma.namespace.as_deref(), ma.name.as_deref())
            .cmp(&(mb.namespace.as_deref(), mb.name.as_deref()))
            .then_with(|| {
                let json = |o: &T| serde_json::to_string(o).unwrap_or_default();
                json(a).cmp(&json(b))
            })
    });
    sorted
}

/// Node facts every Service compile reads.
struct Context<'a> {
    node_name: &'a str,
    zone: &'a str,
    node: &'a NodeView,
}

/// Frontends already taken, each with the index (in the sorted views) of its Service.
#[derive(Default)]
struct Claims {
    cluster_ips: HashMap<IpAddr, usize>,
    addresses: HashMap<(IpAddr, Protocol, u16), usize>,
    node_ports: HashMap<(IpFamily, Protocol, u16), usize>,
}

struct ServiceCompiler<'a, 'c> {
    ctx: &'c Context<'c>,
    view: &'a ServiceView,
    views: &'a [ServiceView],
    index: usize,
    claims: &'c mut Claims,
    warnings: &'c mut Vec<CompileWarning>,
}

impl ServiceCompiler<'_, '_> {
    fn compile(&mut self, slices: &[SliceView]) -> Option<ServiceEntry> {
        let mut ports = Vec::new();
        let mut local_ready = 0;
        for &cluster_ip in &self.view.cluster_ips {
            let family = IpFamily::of(cluster_ip);
            if let Some(&owner) = self.claims.cluster_ips.get(&cluster_ip) {
                self.conflict(format!("cluster IP {cluster_ip}"), owner);
                continue;
            }
            self.claims.cluster_ips.insert(cluster_ip, self.index);
            let family_slices: Vec<&SliceView> =
                slices.iter().filter(|s| s.family == family).collect();
            local_ready = local_ready.max(count_local_ready(&family_slices));
            let candidates = candidates_by_port(&family_slices);
            for port in &self.view.ports {
                let found = candidates
                    .get(&(port.name.as_str(), port.protocol))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                if let Some(state) = self.compile_port(cluster_ip, port, found) {
                    ports.push(state);
                }
            }
        }
        if ports.is_empty() {
            return None;
        }
        ports.sort_by(|a, b| {
            (a.family, &a.name.port, a.name.protocol).cmp(&(
                b.family,
                &b.name.port,
                b.name.protocol,
            ))
        });
        Some(ServiceEntry {
            name: self.view.name.clone(),
            health_check: self
                .view
                .health_check_node_port
                .map(|node_port| HealthCheck {
                    node_port,
                    local_endpoints: local_ready,
                }),
            ports,
        })
    }

    fn compile_port(
        &mut self,
        cluster_ip: IpAddr,
        port: &PortView,
        candidates: &[Candidate<'_>],
    ) -> Option<ServicePortState> {
        let view = self.view;
        let family = IpFamily::of(cluster_ip);
        let protocol = port.protocol;
        let name = ServicePortName {
            service: view.name.clone(),
            port: port.name.clone(),
            protocol,
        };

        // The ClusterIP frontend is the port's identity in the maps: without it, no port.
        if !self.claim_address(cluster_ip, protocol, port.port) {
            return None;
        }
        let node_port = port
            .node_port
            .filter(|np| self.claim_node_port(family, protocol, *np));
        let mut external_ips = Vec::new();
        for &ip in view
            .external_ips
            .iter()
            .filter(|ip| IpFamily::of(**ip) == family)
        {
            if self.claim_address(ip, protocol, port.port) {
                external_ips.push(ip);
            }
        }
        let mut load_balancer_ips = Vec::new();
        for &ip in view
            .load_balancer_ips
            .iter()
            .filter(|ip| IpFamily::of(**ip) == family)
        {
            // An address that is both an externalIP and a load-balancer IP of this Service
            // is one frontend with one meaning: keep it once.
            if external_ips.contains(&ip) {
                continue;
            }
            if self.claim_address(ip, protocol, port.port) {
                load_balancer_ips.push(ip);
            }
        }
        external_ips.sort_unstable();
        load_balancer_ips.sort_unstable();
        let load_balancer_source_ranges: Vec<_> = if load_balancer_ips.is_empty() {
            Vec::new()
        } else {
            view.source_ranges
                .iter()
                .filter(|r| IpFamily::of(r.addr()) == family)
                .copied()
                .collect()
        };
        let source_ranges_allow_node = load_balancer_source_ranges
            .iter()
            .any(|r| self.ctx.node.nodeport_ips.iter().any(|ip| r.contains(ip)));

        let externally_accessible =
            node_port.is_some() || !external_ips.is_empty() || !load_balancer_ips.is_empty();
        // kube-proxy's UsesClusterEndpoints / UsesLocalEndpoints: Local external traffic
        // still needs the cluster set for the short-circuits.
        let uses_cluster = !view.internal_local || externally_accessible;
        let uses_local = view.internal_local || (view.external_local && externally_accessible);
        let sets = categorize(
            candidates,
            uses_cluster,
            uses_local,
            self.ctx.node_name,
            self.ctx.zone,
        );

        let masquerade_off_cluster = self
            .ctx
            .node
            .cluster_cidrs
            .iter()
            .any(|c| IpFamily::of(c.addr()) == family);
        let has_cluster = !sets.cluster.is_empty();
        let has_local = !sets.local.is_empty();
        let internal_to = match (view.internal_local, has_local, has_cluster, sets.has_any) {
            (true, true, _, _) => Dispatch::Local,
            (false, _, true, _) => Dispatch::Cluster,
            (_, _, _, true) => Dispatch::Drop,
            _ => Dispatch::Reject,
        };
        let dispatch = {
            if !sets.has_any {
                ExternalDispatch {
                    to: Dispatch::Reject,
                    masquerade: false,
                    short_circuit_pods: false,
                    short_circuit_node: false,
                }
            } else if view.external_local {
                ExternalDispatch {
                    to: if has_local {
                        Dispatch::Local
                    } else {
                        Dispatch::Drop
                    },
                    masquerade: false,
                    short_circuit_pods: masquerade_off_cluster && has_cluster,
                    short_circuit_node: has_cluster,
                }
            } else {
                ExternalDispatch {
                    to: if has_cluster {
                        Dispatch::Cluster
                    } else {
                        Dispatch::Reject
                    },
                    masquerade: true,
                    short_circuit_pods: false,
                    short_circuit_node: false,
                }
            }
        };
        let external = externally_accessible.then_some(dispatch);

        let mut serving_endpoint_ips: Vec<IpAddr> = candidates
            .iter()
            .filter(|c| c.raw.serving)
            .map(|c| c.endpoint.ip)
            .collect();
        serving_endpoint_ips.sort_unstable();
        serving_endpoint_ips.dedup();

        Some(ServicePortState {
            name,
            family,
            cluster_ip,
            port: port.port,
            node_port,
            external_ips,
            load_balancer_ips,
            load_balancer_source_ranges,
            source_ranges_allow_node,
            affinity_timeout: view.affinity_timeout,
            internal_policy: policy(view.internal_local),
            external_policy: policy(view.external_local),
            topology: sets.topology,
            cluster_endpoints: sets.cluster,
            local_endpoints: sets.local,
            internal: InternalDispatch {
                to: internal_to,
                masquerade_off_cluster,
            },
            external,
            serving_endpoint_ips,
        })
    }

    /// Takes `ip proto port` for this Service, or reports who has it.
    fn claim_address(&mut self, ip: IpAddr, protocol: Protocol, port: u16) -> bool {
        match self.claims.addresses.get(&(ip, protocol, port)) {
            Some(&owner) => {
                self.conflict(format!("{ip} {protocol} {port}"), owner);
                false
            }
            None => {
                self.claims
                    .addresses
                    .insert((ip, protocol, port), self.index);
                true
            }
        }
    }

    fn claim_node_port(&mut self, family: IpFamily, protocol: Protocol, port: u16) -> bool {
        match self.claims.node_ports.get(&(family, protocol, port)) {
            Some(&owner) => {
                self.conflict(format!("{family} NodePort {protocol} {port}"), owner);
                false
            }
            None => {
                self.claims
                    .node_ports
                    .insert((family, protocol, port), self.index);
                true
            }
        }
    }

    fn conflict(&mut self, frontend: String, owner: usize) {
        let owner: &ServiceName = self
            .views
            .get(owner)
            .map(|v| &v.name)
            .unwrap_or(&self.view.name);
        self.warnings.push(CompileWarning::Conflict {
            service: self.view.name.to_string(),
            frontend,
            owner: owner.to_string(),
        });
    }
}

fn policy(local: bool) -> TrafficPolicy {
    if local {
        TrafficPolicy::Local
    } else {
        TrafficPolicy::Cluster
    }
}

/// The endpoints of each (port name, protocol) across a Service's slices of one family,
/// each address:port once. An endpoint seen in two slices (it moved, or a new pod reuses a
/// terminating pod's IP) keeps its non-terminating copy, as kube-proxy does.
fn candidates_by_port<'a>(
    slices: &[&'a SliceView],
) -> HashMap<(&'a str, Protocol), Vec<Candidate<'a>>> {
    let mut by_port: HashMap<(&str, Protocol), Vec<Candidate<'a>>> = HashMap::new();
    for slice in slices {
        for port in &slice.ports {
            let list = by_port
                .entry((port.name.as_str(), port.protocol))
                .or_default();
            list.extend(slice.endpoints.iter().map(|raw| Candidate {
                endpoint: Endpoint {
                    ip: raw.ip,
                    port: port.port,
                    is_local: raw.is_local,
                    node_known: raw.node_known,
                },
                raw,
            }));
        }
    }
    for list in by_port.values_mut() {
        // Stable: among equal copies the first slice (by name) wins; non-terminating first.
        list.sort_by_key(|c| (c.endpoint.ip, c.endpoint.port, c.raw.terminating));
        list.dedup_by_key(|c| (c.endpoint.ip, c.endpoint.port));
    }
    by_port
}

/// Ready endpoints on this node, by address, across a family's slices (kube-proxy's
/// `LocalReadyEndpoints`: only endpoints listed under some port count).
fn count_local_ready(slices: &[&SliceView]) -> usize {
    let mut ips: Vec<IpAddr> = slices
        .iter()
        .filter(|s| !s.ports.is_empty())
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.is_local && e.ready)
        .map(|e| e.ip)
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips.len()
}

#[cfg(test)]
mod tests;
