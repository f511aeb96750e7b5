//! kubectl-style output, pure: `get` tables with kubectl's columns, cells and ages, and the
//! `-o yaml` / `-o json` forms. Every function takes `now` rather than reading a clock, so the
//! output is the same on every run for the same input.
//!
//! The cells follow kubectl's printers (k8s.io/kubernetes/pkg/printers/internalversion). Where
//! the API server would have defaulted a field the lab leaves empty, the default is shown: a
//! Service without `type` is `ClusterIP`, ports without `protocol` are TCP, a Deployment without
//! `replicas` wants 1, and a Namespace without a phase is `Active`.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerState, ContainerStatus, Namespace, Node, Pod, PodStatus, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::StoreError;
use crate::labels::{format_labels, format_selector};
use crate::object::{Kind, Object};

#[cfg(test)]
mod tests;

/// kubectl's tabwriter: cells padded to the widest in their column plus 3, at least 6 wide.
const PADDING: usize = 3;
const MIN_WIDTH: usize = 6;
/// Longest load-balancer address list shown without `-o wide`.
const LOAD_BALANCER_WIDTH: usize = 16;
/// Items listed in a cell before "+ N more...".
const LIST_MAX: usize = 3;
/// kubectl's placeholder for an empty cell.
const NONE: &str = "<none>";

/// The `kubectl get <kind>` table of `objects` (those of another kind are skipped), with the
/// `-o wide` columns if `wide`, and a `NAMESPACE` column first if `all_namespaces` and the
/// kind is namespaced. Ages are measured to `now`. Empty when there are no objects: print
/// [`no_resources`] instead, as kubectl does.
///
/// Nodes' wide output adds one column after kubectl's: `POD-CIDRS`, the node's
/// `spec.podCIDRs` (or `spec.podCIDR`).
pub fn render(
    kind: Kind,
    objects: &[Object],
    wide: bool,
    all_namespaces: bool,
    now: Timestamp,
) -> String {
    let namespace_column = all_namespaces && kind.namespaced();
    let rows: Vec<Vec<String>> = objects
        .iter()
        .filter(|o| o.kind() == kind)
        .map(|o| {
            let mut cells = Vec::new();
            if namespace_column {
                cells.push(o.namespace().unwrap_or("").to_owned());
            }
            cells.extend(row(o, wide, now));
            cells
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut header: Vec<String> = Vec::new();
    if namespace_column {
        header.push("NAMESPACE".to_owned());
    }
    header.extend(columns(kind, wide).iter().map(|c| (*c).to_owned()));
    align(&header, &rows)
}

/// kubectl's message when a `get` finds nothing: `No resources found in <namespace> namespace.`,
/// or without the namespace for cluster-scoped kinds and `--all-namespaces` (`None`).
pub fn no_resources(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("No resources found in {ns} namespace."),
        None => "No resources found".to_owned(),
    }
}

/// `-o yaml`: the object itself when one was asked for by name (`one`), otherwise a `v1` `List`
/// (also of one object, as `kubectl get pods -o yaml` prints it). Keys are sorted, as kubectl's
/// YAML is.
pub fn to_yaml(objects: &[Object], one: bool) -> Result<String, StoreError> {
    if let ([single], true) = (objects, one) {
        return single.to_yaml();
    }
    let items = objects
        .iter()
        .map(Object::try_to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let list = serde_json::json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": { "resourceVersion": "" },
    });
    serde_yaml::to_string(&list).map_err(|e| StoreError::Encode {
        what: "List".to_owned(),
        message: e.to_string(),
    })
}

/// `-o json`: the object itself when one was asked for by name (`one`), otherwise a `v1` `List`;
/// indented by four spaces with a final newline, as kubectl prints it.
pub fn to_json(objects: &[Object], one: bool) -> Result<String, StoreError> {
    /// kubectl's list wrapper, fields in its order.
    #[derive(Serialize)]
    struct List<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'static str,
        items: &'a [Object],
        kind: &'static str,
        metadata: ListMeta,
    }
    #[derive(Serialize)]
    struct ListMeta {
        #[serde(rename = "resourceVersion")]
        resource_version: &'static str,
    }

    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    let result = match (objects, one) {
        ([single], true) => single.serialize(&mut serializer),
        _ => List {
            api_version: "v1",
            items: objects,
            kind: "List",
            metadata: ListMeta {
                resource_version: "",
            },
        }
        .serialize(&mut serializer),
    };
    let encode_error = |message: String| StoreError::Encode {
        what: "JSON output".to_owned(),
        message,
    };
    result.map_err(|e| encode_error(e.to_string()))?;
    let mut text = String::from_utf8(out).map_err(|e| encode_error(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// How long ago, as kubectl's `duration.HumanDuration` says it: `45s`, `3m2s`, `25m`, `4h5m`,
/// `20h`, `2d3h`, `30d`, `2y100d`, `9y`. A little in the future (clock skew) is `0s`; more is
/// `<invalid>`.
pub fn human_duration(nanoseconds: i128) -> String {
    const SECOND: i128 = 1_000_000_000;
    let seconds = nanoseconds / SECOND;
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

/// kubectl's `translateTimestampSince`: the age of `time` at `now`, `<unknown>` without one.
fn since(time: Option<&Time>, now: Timestamp) -> String {
    match time {
        Some(Time(t)) => human_duration(now.as_nanosecond() - t.as_nanosecond()),
        None => "<unknown>".to_owned(),
    }
}

/// Lays out `rows` under `header` as kubectl's tabwriter does; the last column is not padded.
fn align(header: &[String], rows: &[Vec<String>]) -> String {
    let lines: Vec<&[String]> = std::iter::once(header)
        .chain(rows.iter().map(Vec::as_slice))
        .collect();
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            let widest = lines
                .iter()
                .filter_map(|cells| cells.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0);
            (widest + PADDING).max(MIN_WIDTH)
        })
        .collect();
    let mut out = String::new();
    for cells in lines {
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let width = widths.get(i).copied().unwrap_or(MIN_WIDTH);
                let pad = width.saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// The column titles of `kind`.
fn columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    let (normal, extra): (&[&str], &[&str]) = match kind {
        Kind::Pod => (
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        ),
        Kind::Node => (
            &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            &[
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
                "POD-CIDRS",
            ],
        ),
        Kind::Service => (
            &[
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            &["SELECTOR"],
        ),
        Kind::Deployment => (
            &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::Namespace => (&["NAME", "STATUS", "AGE"], &[]),
        Kind::EndpointSlice => (&["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], &[]),
        Kind::NetworkPolicy => (&["NAME", "POD-SELECTOR", "AGE"], &[]),
        Kind::Ingress => (&["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], &[]),
        Kind::ConfigMap => (&["NAME", "DATA", "AGE"], &[]),
        Kind::ClusterNetworkPolicy => (&["NAME", "TIER", "PRIORITY", "AGE"], &[]),
    };
    let mut all = normal.to_vec();
    if wide {
        all.extend_from_slice(extra);
    }
    all
}

/// The cells of one object, in the order of [`columns`].
fn row(obj: &Object, wide: bool, now: Timestamp) -> Vec<String> {
    match obj {
        Object::Pod(pod) => pod_row(pod, wide, now),
        Object::Node(node) => node_row(node, wide, now),
        Object::Service(service) => service_row(service, wide, now),
        Object::Deployment(d) => deployment_row(d, wide, now),
        Object::Namespace(ns) => namespace_row(ns, now),
        Object::EndpointSlice(slice) => endpoint_slice_row(slice, now),
        Object::NetworkPolicy(policy) => network_policy_row(policy, now),
        Object::Ingress(ingress) => ingress_row(ingress, wide, now),
        Object::ConfigMap(cm) => config_map_row(cm, now),
        Object::ClusterNetworkPolicy(policy) => vec![
            name_of(&policy.metadata),
            policy.spec.tier.to_string(),
            policy.spec.priority.to_string(),
            since(policy.metadata.creation_timestamp.as_ref(), now),
        ],
    }
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn or_none(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or(NONE).to_owned()
}

/// When a container last stopped, if it has restarted.
fn last_finished(status: &ContainerStatus) -> Option<Timestamp> {
    status
        .last_state
        .as_ref()?
        .terminated
        .as_ref()?
        .finished_at
        .as_ref()
        .map(|t| t.0)
}

fn condition_true(status: Option<&PodStatus>, type_: &str) -> bool {
    status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .is_some_and(|c| c.status == "True")
}

/// The reason a terminated container shows: its `reason`, else its signal or exit code.
fn terminated_reason(state: &ContainerState, prefix: &str) -> Option<String> {
    let t = state.terminated.as_ref()?;
    Some(match t.reason.as_deref().filter(|r| !r.is_empty()) {
        Some(reason) => format!("{prefix}{reason}"),
        None => match t.signal.filter(|&s| s != 0) {
            Some(signal) => format!("{prefix}Signal:{signal}"),
            None => format!("{prefix}ExitCode:{}", t.exit_code),
        },
    })
}

/// kubectl's `printPod`: READY counts ready containers (and started sidecars), STATUS is the
/// most telling reason among phase, init containers and containers, RESTARTS adds when the
/// last restart was.
fn pod_row(pod: &Pod, wide: bool, now: Timestamp) -> Vec<String> {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let init_specs = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
    };
    let total = spec.map_or(0, |s| s.containers.len())
        + init_specs
            .iter()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"))
            .count();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    let mut reason = status
        .and_then(|s| s.reason.as_deref())
        .filter(|r| !r.is_empty())
        .unwrap_or(phase)
        .to_owned();
    let gated = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"));
    if gated {
        reason = "SchedulingGated".to_owned();
    }

    let mut initializing = false;
    let init_statuses = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or_default();
    for (i, c) in init_statuses.iter().enumerate() {
        restarts += i64::from(c.restart_count);
        last_restart = last_restart.max(last_finished(c));
        if is_sidecar(&c.name) {
            sidecar_restarts += i64::from(c.restart_count);
            last_sidecar_restart = last_sidecar_restart.max(last_finished(c));
        }
        let state = c.state.clone().unwrap_or_default();
        let waiting_reason = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing");
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if is_sidecar(&c.name) && c.started == Some(true) {
            if c.ready {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(r) = terminated_reason(&state, "Init:") {
            r
        } else if let Some(r) = waiting_reason {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(status, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        let statuses = status
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default();
        // Backwards, as kubectl does: the first container's reason wins.
        for c in statuses.iter().rev() {
            restarts += i64::from(c.restart_count);
            last_restart = last_restart.max(last_finished(c));
            let state = c.state.clone().unwrap_or_default();
            let waiting = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.as_deref())
                .filter(|r| !r.is_empty());
            if let Some(r) = waiting {
                reason = r.to_owned();
            } else if let Some(r) = terminated_reason(&state, "") {
                reason = r;
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(status, "Ready") {
                "Running".to_owned()
            } else {
                "NotReady".to_owned()
            };
        }
    }

    if pod.metadata.deletion_timestamp.is_some() {
        if status.and_then(|s| s.reason.as_deref()) == Some("NodeLost") {
            reason = "Unknown".to_owned();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_owned();
        }
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration(now.as_nanosecond() - t.as_nanosecond())
        ),
        _ => restarts.to_string(),
    };
    let mut cells = vec![
        name_of(&pod.metadata),
        format!("{ready}/{total}"),
        reason,
        restarts_cell,
        since(pod.metadata.creation_timestamp.as_ref(), now),
    ];
    if wide {
        let ip = status
            .and_then(|s| s.pod_ips.as_ref())
            .and_then(|ips| ips.first())
            .map(|ip| ip.ip.as_str())
            .or_else(|| status.and_then(|s| s.pod_ip.as_deref()));
        let gates = spec
            .and_then(|s| s.readiness_gates.as_deref())
            .unwrap_or_default();
        let gates_cell = if gates.is_empty() {
            NONE.to_owned()
        } else {
            let passed = gates
                .iter()
                .filter(|g| condition_true(status, &g.condition_type))
                .count();
            format!("{passed}/{}", gates.len())
        };
        cells.extend([
            or_none(ip),
            or_none(spec.and_then(|s| s.node_name.as_deref())),
            or_none(status.and_then(|s| s.nominated_node_name.as_deref())),
            gates_cell,
        ]);
    }
    cells
}

/// kubectl's `printNode`.
fn node_row(node: &Node, wide: bool, now: Timestamp) -> Vec<String> {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready");
    let mut state = vec![match ready {
        Some(c) if c.status == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        state.push("SchedulingDisabled");
    }
    let roles: BTreeSet<&str> = node
        .metadata
        .labels
        .iter()
        .flatten()
        .filter_map(|(key, value)| {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                Some(role).filter(|r| !r.is_empty())
            } else if key == "kubernetes.io/role" {
                Some(value.as_str()).filter(|v| !v.is_empty())
            } else {
                None
            }
        })
        .collect();
    let roles_cell = if roles.is_empty() {
        NONE.to_owned()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let info = status.and_then(|s| s.node_info.as_ref());
    let mut cells = vec![
        name_of(&node.metadata),
        state.join(","),
        roles_cell,
        since(node.metadata.creation_timestamp.as_ref(), now),
        info.map(|i| i.kubelet_version.clone()).unwrap_or_default(),
    ];
    if wide {
        let address = |type_: &str| {
            status
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .find(|a| a.type_ == type_)
                .map_or_else(|| NONE.to_owned(), |a| a.address.clone())
        };
        let unknown = |s: Option<&String>| {
            s.filter(|s| !s.is_empty())
                .map_or_else(|| "<unknown>".to_owned(), Clone::clone)
        };
        let spec = node.spec.as_ref();
        let cidrs = match spec.and_then(|s| s.pod_cidrs.as_ref()) {
            Some(cidrs) if !cidrs.is_empty() => cidrs.join(","),
            _ => or_none(spec.and_then(|s| s.pod_cidr.as_deref())),
        };
        cells.extend([
            address("InternalIP"),
            address("ExternalIP"),
            unknown(info.map(|i| &i.os_image)),
            unknown(info.map(|i| &i.kernel_version)),
            unknown(info.map(|i| &i.container_runtime_version)),
            cidrs,
        ]);
    }
    cells
}

/// kubectl's `loadBalancerStatusStringer`: IPs or hostnames, sorted, clipped unless wide.
fn load_balancer_addresses<'a>(addresses: impl Iterator<Item = &'a str>, wide: bool) -> String {
    let set: BTreeSet<&str> = addresses.filter(|a| !a.is_empty()).collect();
    let joined = set.into_iter().collect::<Vec<_>>().join(",");
    if !wide && joined.len() > LOAD_BALANCER_WIDTH {
        let clipped: String = joined.chars().take(LOAD_BALANCER_WIDTH - 3).collect();
        format!("{clipped}...")
    } else {
        joined
    }
}

/// kubectl's `printService`.
fn service_row(service: &Service, wide: bool, now: Timestamp) -> Vec<String> {
    let spec = service.spec.clone().unwrap_or_default();
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    let cluster_ip = spec
        .cluster_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .or(spec.cluster_ip.as_ref())
        .map(String::as_str);
    let external_ips = spec.external_ips.clone().unwrap_or_default();
    let external = match service_type {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => NONE.to_owned(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let ingress = service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref());
            let lb = load_balancer_addresses(
                ingress.into_iter().flatten().filter_map(|i| {
                    i.ip.as_deref()
                        .filter(|ip| !ip.is_empty())
                        .or(i.hostname.as_deref())
                }),
                wide,
            );
            match (lb.is_empty(), external_ips.is_empty()) {
                (true, true) => "<pending>".to_owned(),
                (false, true) => lb,
                (true, false) => external_ips.join(","),
                (false, false) => format!("{lb},{}", external_ips.join(",")),
            }
        }
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        _ => "<unknown>".to_owned(),
    };
    let ports: Vec<String> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port.filter(|&n| n > 0) {
                Some(node_port) => format!("{}:{node_port}/{protocol}", p.port),
                None => format!("{}/{protocol}", p.port),
            }
        })
        .collect();
    let mut cells = vec![
        name_of(&service.metadata),
        service_type.to_owned(),
        or_none(cluster_ip),
        external,
        if ports.is_empty() {
            NONE.to_owned()
        } else {
            ports.join(",")
        },
        since(service.metadata.creation_timestamp.as_ref(), now),
    ];
    if wide {
        let selector = spec
            .selector
            .as_ref()
            .map(format_labels)
            .unwrap_or_default();
        cells.push(or_none(Some(&selector)));
    }
    cells
}

/// kubectl's `printDeployment`.
fn deployment_row(d: &Deployment, wide: bool, now: Timestamp) -> Vec<String> {
    let status = d.status.clone().unwrap_or_default();
    let mut cells = vec![
        name_of(&d.metadata),
        format!(
            "{}/{}",
            status.ready_replicas.unwrap_or(0),
            d.spec.replicas.unwrap_or(1)
        ),
        status.updated_replicas.unwrap_or(0).to_string(),
        status.available_replicas.unwrap_or(0).to_string(),
        since(d.metadata.creation_timestamp.as_ref(), now),
    ];
    if wide {
        let containers = d
            .spec
            .template
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        cells.extend([
            containers
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            containers
                .iter()
                .map(|c| c.image.as_deref().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(","),
            format_selector(&d.spec.selector),
        ]);
    }
    cells
}

fn namespace_row(ns: &Namespace, now: Timestamp) -> Vec<String> {
    let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
    vec![
        name_of(&ns.metadata),
        phase.unwrap_or("Active").to_owned(),
        since(ns.metadata.creation_timestamp.as_ref(), now),
    ]
}

/// kubectl's `listWithMoreString`: the first three, then `+ N more...`; `<unset>` if none.
fn list_with_more(all: &[String]) -> String {
    let shown = all
        .iter()
        .take(LIST_MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if all.len() > LIST_MAX {
        format!("{shown} + {} more...", all.len() - LIST_MAX)
    } else if shown.is_empty() {
        "<unset>".to_owned()
    } else {
        shown
    }
}

fn endpoint_slice_row(slice: &EndpointSlice, now: Timestamp) -> Vec<String> {
    let ports: Vec<String> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| match (p.port, &p.name) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.clone(),
            (None, None) => "*".to_owned(),
        })
        .collect();
    let addresses: Vec<String> = slice
        .endpoints
        .iter()
        .flatten()
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    vec![
        name_of(&slice.metadata),
        slice.address_type.clone(),
        list_with_more(&ports),
        list_with_more(&addresses),
        since(slice.metadata.creation_timestamp.as_ref(), now),
    ]
}

fn network_policy_row(policy: &NetworkPolicy, now: Timestamp) -> Vec<String> {
    let selector = policy
        .spec
        .as_ref()
        .and_then(|s| s.pod_selector.as_ref())
        .map(format_selector)
        .unwrap_or_default();
    vec![
        name_of(&policy.metadata),
        or_none(Some(&selector)),
        since(policy.metadata.creation_timestamp.as_ref(), now),
    ]
}

/// kubectl's `printIngress`.
fn ingress_row(ingress: &Ingress, wide: bool, now: Timestamp) -> Vec<String> {
    let spec = ingress.spec.clone().unwrap_or_default();
    let rules = spec.rules.unwrap_or_default();
    // kubectl's formatHosts, quirks kept: up to three hosts; "+ N more..." counts rules.
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in &rules {
        more |= hosts.len() == LIST_MAX;
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty() && !more) {
            hosts.push(host);
        }
    }
    let hosts_cell = if hosts.is_empty() {
        "*".to_owned()
    } else if more {
        format!("{} + {} more...", hosts.join(","), rules.len() - LIST_MAX)
    } else {
        hosts.join(",")
    };
    let address = load_balancer_addresses(
        ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| {
                i.ip.as_deref()
                    .filter(|ip| !ip.is_empty())
                    .or(i.hostname.as_deref())
            }),
        wide,
    );
    let ports = if spec.tls.is_some_and(|tls| !tls.is_empty()) {
        "80, 443"
    } else {
        "80"
    };
    vec![
        name_of(&ingress.metadata),
        or_none(spec.ingress_class_name.as_deref()),
        hosts_cell,
        address,
        ports.to_owned(),
        since(ingress.metadata.creation_timestamp.as_ref(), now),
    ]
}

fn config_map_row(cm: &ConfigMap, now: Timestamp) -> Vec<String> {
    let count =
        cm.data.as_ref().map_or(0, |d| d.len()) + cm.binary_data.as_ref().map_or(0, |d| d.len());
    vec![
        name_of(&cm.metadata),
        count.to_string(),
        since(cm.metadata.creation_timestamp.as_ref(), now),
    ]
}
