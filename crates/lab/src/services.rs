//! The API server's part for Services, as the lab plays it on `lab apply`: defaulting (type,
//! affinity, traffic policies, IP families, port protocols and target ports) and allocation
//! (cluster IPs from the service CIDR, node ports and health-check node ports from
//! 30000–32767), checked against every Service already stored.
//!
//! Allocation is deterministic, unlike the API server's random pick, but keeps its bands
//! (KEP-3070, KEP-3668): addresses and ports are handed out from above a low "static" band first,
//! so the ones users choose themselves there rarely collide with allocated ones. The first host
//! address (the `kubernetes` Service's) and the tenth (the cluster DNS Service's, the kubelets'
//! `--cluster-dns`) are never handed out: only a Service that asks for one gets it.
//!
//! Re-applying a Service keeps what it was given: its cluster IP (immutable, as in Kubernetes),
//! and the node ports of ports that are still there.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Node ports Services get (kube-apiserver's default `--service-node-port-range`).
pub const NODE_PORT_RANGE: RangeInclusive<i32> = 30000..=32767;

/// What `lab apply` refuses in a Service, naming the Service, the field and the value.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A requested cluster IP outside the service CIDR.
    #[error(
        "Service {service}: {field}: {ip} is not in the lab's service CIDR {cidr} (leave it empty to have one allocated)"
    )]
    IpOutOfRange {
        /// `namespace/name`.
        service: String,
        /// `spec.clusterIP`.
        field: &'static str,
        /// The address asked for.
        ip: String,
        /// The service CIDR.
        cidr: Ipv4Net,
    },

    /// A requested cluster IP another Service holds.
    #[error("Service {service}: {field}: {ip} is already allocated to Service {owner}")]
    IpTaken {
        /// `namespace/name`.
        service: String,
        /// `spec.clusterIP`.
        field: &'static str,
        /// The address asked for.
        ip: Ipv4Addr,
        /// The Service holding it.
        owner: String,
    },

    /// A stored Service's field that may not change.
    #[error(
        "Service {service}: {field}: cannot change {old:?} to {new:?}: the field is immutable (delete the Service to change it)"
    )]
    Immutable {
        /// `namespace/name`.
        service: String,
        /// `spec.clusterIP`.
        field: &'static str,
        /// The stored value.
        old: String,
        /// The value applied.
        new: String,
    },

    /// Every cluster IP is taken.
    #[error("Service {service}: no cluster IP is left in {cidr}")]
    IpsExhausted {
        /// `namespace/name`.
        service: String,
        /// The service CIDR.
        cidr: Ipv4Net,
    },

    /// A requested node port outside 30000–32767.
    #[error("Service {service}: {field}: {port} is not in the node port range 30000-32767")]
    NodePortOutOfRange {
        /// `namespace/name`.
        service: String,
        /// E.g. `spec.ports[0].nodePort`.
        field: String,
        /// The port asked for.
        port: i32,
    },

    /// A requested node port something else holds.
    #[error("Service {service}: {field}: node port {port} is already allocated to {owner}")]
    NodePortTaken {
        /// `namespace/name`.
        service: String,
        /// E.g. `spec.ports[0].nodePort`.
        field: String,
        /// The port asked for.
        port: i32,
        /// `Service ns/name`, or the field of this Service that has it.
        owner: String,
    },

    /// Every node port is taken.
    #[error("Service {service}: no node port is left in 30000-32767")]
    NodePortsExhausted {
        /// `namespace/name`.
        service: String,
    },

    /// A field the lab's single-stack IPv4 cluster (or Kubernetes) does not accept.
    #[error("Service {service}: {field}: {value} is not valid: expected {expected}")]
    Invalid {
        /// `namespace/name`.
        service: String,
        /// The field.
        field: String,
        /// The value found.
        value: String,
        /// What would be accepted.
        expected: String,
    },
}

/// Cluster IPs and node ports in use, and by which Service (`namespace/name`).
#[derive(Debug, Clone)]
pub struct ServiceAllocator {
    cidr: Ipv4Net,
    ips: BTreeMap<Ipv4Addr, String>,
    node_ports: BTreeMap<i32, String>,
}

// === impl ServiceAllocator ===

impl ServiceAllocator {
    /// The allocations of `existing` (the stored Services) in the service CIDR `cidr`.
    pub fn new(cidr: Ipv4Net, existing: &[Service]) -> Self {
        let mut allocator = Self {
            cidr,
            ips: BTreeMap::new(),
            node_ports: BTreeMap::new(),
        };
        for service in existing {
            let owner = service_key(service);
            let Some(spec) = &service.spec else { continue };
            for ip in cluster_ips(spec) {
                if let Ok(ip) = ip.parse() {
                    allocator.ips.insert(ip, owner.clone());
                }
            }
            let node_ports = spec.ports.iter().flatten().filter_map(|p| p.node_port);
            for port in node_ports.chain(spec.health_check_node_port) {
                allocator.node_ports.insert(port, owner.clone());
            }
        }
        allocator
    }

    /// The Service as the API server would store it: defaulted, with its cluster IP, node ports
    /// and health-check node port allocated (or kept from `stored`, the Service of the same
    /// name already in the store). The allocations are recorded, so the next Service of the same
    /// manifest sees them.
    pub fn allocate(
        &mut self,
        mut service: Service,
        stored: Option<&Service>,
    ) -> Result<Service, ServiceError> {
        let key = service_key(&service);
        // What this Service held is its own to keep or give back.
        self.ips.retain(|_, owner| *owner != key);
        self.node_ports.retain(|_, owner| *owner != key);
        let stored_spec = stored.and_then(|s| s.spec.as_ref());
        let spec = service.spec.get_or_insert_with(Default::default);
        default_spec(spec);
        let type_ = spec.type_.clone().unwrap_or_default();

        if type_ == "ExternalName" {
            if let Some(ip) = cluster_ips(spec).into_iter().next() {
                return Err(invalid(
                    &key,
                    "spec.clusterIP",
                    &ip,
                    "none: an ExternalName Service has no cluster IP",
                ));
            }
            spec.cluster_ip = None;
            spec.cluster_ips = None;
            spec.ip_families = None;
            spec.ip_family_policy = None;
        } else {
            self.allocate_cluster_ip(&key, spec, stored_spec)?;
            set_ip_families(&key, spec)?;
        }
        self.allocate_node_ports(&key, spec, stored_spec)?;
        Ok(service)
    }

    fn allocate_cluster_ip(
        &mut self,
        key: &str,
        spec: &mut ServiceSpec,
        stored: Option<&ServiceSpec>,
    ) -> Result<(), ServiceError> {
        let requested = cluster_ips(spec);
        if requested.len() > 1 {
            return Err(invalid(
                key,
                "spec.clusterIPs",
                &requested.join(","),
                "one address: the lab's cluster is single-stack IPv4",
            ));
        }
        let requested = requested.into_iter().next();
        let kept = stored
            .filter(|s| s.type_.as_deref() != Some("ExternalName"))
            .and_then(|s| cluster_ips(s).into_iter().next());
        let chosen = match (requested, kept) {
            (Some(new), Some(old)) if new != old => {
                return Err(ServiceError::Immutable {
                    service: key.to_owned(),
                    field: "spec.clusterIP",
                    old,
                    new,
                });
            }
            (Some(ip), _) | (None, Some(ip)) => Some(ip),
            (None, None) => None,
        };
        let ip = match chosen.as_deref() {
            Some("None") => {
                if spec.type_.as_deref() != Some("ClusterIP") {
                    return Err(invalid(
                        key,
                        "spec.clusterIP",
                        "None",
                        "an address: only type ClusterIP Services may be headless",
                    ));
                }
                spec.cluster_ip = Some("None".into());
                spec.cluster_ips = Some(vec!["None".into()]);
                return Ok(());
            }
            Some(text) => {
                let ip = text
                    .parse::<Ipv4Addr>()
                    .ok()
                    .filter(|ip| self.usable(*ip))
                    .ok_or_else(|| ServiceError::IpOutOfRange {
                        service: key.to_owned(),
                        field: "spec.clusterIP",
                        ip: text.to_owned(),
                        cidr: self.cidr,
                    })?;
                if let Some(owner) = self.ips.get(&ip) {
                    return Err(ServiceError::IpTaken {
                        service: key.to_owned(),
                        field: "spec.clusterIP",
                        ip,
                        owner: owner.clone(),
                    });
                }
                ip
            }
            None => self.free_ip().ok_or_else(|| ServiceError::IpsExhausted {
                service: key.to_owned(),
                cidr: self.cidr,
            })?,
        };
        self.ips.insert(ip, key.to_owned());
        spec.cluster_ip = Some(ip.to_string());
        spec.cluster_ips = Some(vec![ip.to_string()]);
        Ok(())
    }

    /// Whether `ip` is an address of the range a Service may have (not the network or broadcast
    /// address).
    fn usable(&self, ip: Ipv4Addr) -> bool {
        self.cidr.contains(&ip) && ip != self.cidr.network() && ip != self.cidr.broadcast()
    }

    /// The lowest free address above the static band, else the lowest free one in it; never a
    /// reserved one.
    fn free_ip(&self) -> Option<Ipv4Addr> {
        let base = u32::from(self.cidr.network());
        let size = 1u64 << (32 - u32::from(self.cidr.prefix_len()));
        let size = u32::try_from(size.min(u64::from(u32::MAX))).unwrap_or(u32::MAX);
        let band = (size / 16).clamp(16, 256).min(size);
        let reserved = reserved_ips(self.cidr);
        (band..size)
            .chain(1..band)
            .map(|offset| Ipv4Addr::from(base.wrapping_add(offset)))
            .find(|ip| self.usable(*ip) && !reserved.contains(ip) && !self.ips.contains_key(ip))
    }

    fn allocate_node_ports(
        &mut self,
        key: &str,
        spec: &mut ServiceSpec,
        stored: Option<&ServiceSpec>,
    ) -> Result<(), ServiceError> {
        let type_ = spec.type_.clone().unwrap_or_default();
        let load_balancer = type_ == "LoadBalancer";
        let allocate = type_ == "NodePort"
            || (load_balancer && spec.allocate_load_balancer_node_ports != Some(false));
        let stored_ports = stored
            .filter(|s| matches!(s.type_.as_deref(), Some("NodePort" | "LoadBalancer")))
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        let ports = spec.ports.get_or_insert_with(Vec::new);
        // This Service's own ports, by number: (protocol, field).
        let mut own: BTreeMap<i32, Vec<(String, String)>> = BTreeMap::new();
        // Requested ports first, so an allocated one never takes a port asked for further down.
        for (i, port) in ports.iter_mut().enumerate() {
            let field = format!("spec.ports[{i}].nodePort");
            match port.node_port.filter(|p| *p != 0) {
                Some(number) => {
                    if !NODE_PORT_RANGE.contains(&number) {
                        return Err(ServiceError::NodePortOutOfRange {
                            service: key.to_owned(),
                            field,
                            port: number,
                        });
                    }
                    self.claim_node_port(key, &field, number, protocol(port), &mut own)?;
                }
                None => port.node_port = None,
            }
        }
        for (i, port) in ports.iter_mut().enumerate() {
            if port.node_port.is_some() || !allocate {
                continue;
            }
            let field = format!("spec.ports[{i}].nodePort");
            let kept = stored_ports
                .iter()
                .find(|p| p.port == port.port && protocol(p) == protocol(port))
                .and_then(|p| p.node_port)
                .filter(|n| !self.node_ports.contains_key(n));
            let number = match kept {
                Some(number) => number,
                None => self.free_node_port(key)?,
            };
            self.claim_node_port(key, &field, number, protocol(port), &mut own)?;
            port.node_port = Some(number);
        }

        let needs_health_check =
            load_balancer && spec.external_traffic_policy.as_deref() == Some("Local");
        match spec.health_check_node_port.filter(|p| *p != 0) {
            Some(number) if !needs_health_check => {
                return Err(invalid(
                    key,
                    "spec.healthCheckNodePort",
                    &number.to_string(),
                    "none: only a LoadBalancer Service with externalTrafficPolicy Local has one",
                ));
            }
            Some(number) => {
                let field = "spec.healthCheckNodePort";
                if !NODE_PORT_RANGE.contains(&number) {
                    return Err(ServiceError::NodePortOutOfRange {
                        service: key.to_owned(),
                        field: field.into(),
                        port: number,
                    });
                }
                // It serves HTTP on every node: no protocol shares it.
                self.claim_node_port(key, field, number, "health check", &mut own)?;
            }
            None if needs_health_check => {
                let kept = stored
                    .and_then(|s| s.health_check_node_port)
                    .filter(|n| !self.node_ports.contains_key(n));
                let number = match kept {
                    Some(number) => number,
                    None => self.free_node_port(key)?,
                };
                self.claim_node_port(
                    key,
                    "spec.healthCheckNodePort",
                    number,
                    "health check",
                    &mut own,
                )?;
                spec.health_check_node_port = Some(number);
            }
            None => spec.health_check_node_port = None,
        }
        Ok(())
    }

    /// Records `number` for `key`'s `field`: free, or used by this Service only for another
    /// protocol (one node port may carry a port's TCP and UDP, as for DNS).
    fn claim_node_port(
        &mut self,
        key: &str,
        field: &str,
        number: i32,
        protocol: &str,
        own: &mut BTreeMap<i32, Vec<(String, String)>>,
    ) -> Result<(), ServiceError> {
        if let Some(owner) = self.node_ports.get(&number).filter(|o| *o != key) {
            return Err(ServiceError::NodePortTaken {
                service: key.to_owned(),
                field: field.to_owned(),
                port: number,
                owner: format!("Service {owner}"),
            });
        }
        let users = own.entry(number).or_default();
        if let Some((_, other)) = users
            .iter()
            .find(|(p, _)| p == protocol || p == "health check" || protocol == "health check")
        {
            return Err(ServiceError::NodePortTaken {
                service: key.to_owned(),
                field: field.to_owned(),
                port: number,
                owner: format!("{other} of the same Service"),
            });
        }
        users.push((protocol.to_owned(), field.to_owned()));
        self.node_ports.insert(number, key.to_owned());
        Ok(())
    }

    /// The lowest free node port above the static band (30000–30127), else in it.
    fn free_node_port(&self, key: &str) -> Result<i32, ServiceError> {
        let (start, end) = (*NODE_PORT_RANGE.start(), *NODE_PORT_RANGE.end());
        let band = ((end - start + 1) / 32).clamp(16, 128);
        (start + band..=end)
            .chain(start..start + band)
            .find(|n| !self.node_ports.contains_key(n))
            .ok_or_else(|| ServiceError::NodePortsExhausted {
                service: key.to_owned(),
            })
    }
}

/// The service CIDR's addresses no Service gets unless it asks: the first host address (the
/// `kubernetes` Service's) and the tenth (cluster DNS, as kubeadm and the lab's kubelets have it).
pub fn reserved_ips(cidr: Ipv4Net) -> [Ipv4Addr; 2] {
    let base = u32::from(cidr.network());
    [
        Ipv4Addr::from(base.wrapping_add(1)),
        Ipv4Addr::from(base.wrapping_add(10)),
    ]
}

/// `namespace/name` of a Service (`default` when it names no namespace).
pub fn service_key(service: &Service) -> String {
    format!(
        "{}/{}",
        service
            .metadata
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default"),
        service.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The cluster IPs a spec asks for or holds: `clusterIPs`, else `clusterIP`; empty ones dropped.
fn cluster_ips(spec: &ServiceSpec) -> Vec<String> {
    let listed: Vec<String> = spec
        .cluster_ips
        .iter()
        .flatten()
        .filter(|ip| !ip.is_empty())
        .cloned()
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    spec.cluster_ip
        .iter()
        .filter(|ip| !ip.is_empty())
        .cloned()
        .collect()
}

/// A port's protocol, TCP when unset.
fn protocol(port: &ServicePort) -> &str {
    port.protocol.as_deref().unwrap_or("TCP")
}

fn invalid(service: &str, field: &str, value: &str, expected: &str) -> ServiceError {
    ServiceError::Invalid {
        service: service.to_owned(),
        field: field.to_owned(),
        value: format!("{value:?}"),
        expected: expected.to_owned(),
    }
}

/// The API server's defaults (`SetDefaults_Service` and the registry's type-dependent ones).
fn default_spec(spec: &mut ServiceSpec) {
    let type_ = spec.type_.get_or_insert_with(|| "ClusterIP".into()).clone();
    if spec.session_affinity.is_none() {
        spec.session_affinity = Some("None".into());
    }
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        let config = spec
            .session_affinity_config
            .get_or_insert_with(SessionAffinityConfig::default);
        let client_ip = config.client_ip.get_or_insert_with(ClientIPConfig::default);
        client_ip.timeout_seconds.get_or_insert(10800);
    }
    if type_ != "ExternalName" && spec.internal_traffic_policy.is_none() {
        spec.internal_traffic_policy = Some("Cluster".into());
    }
    let external = type_ == "NodePort" || type_ == "LoadBalancer";
    if external && spec.external_traffic_policy.is_none() {
        spec.external_traffic_policy = Some("Cluster".into());
    }
    if !external && spec.external_ips.as_ref().is_none_or(Vec::is_empty) {
        spec.external_traffic_policy = None;
    }
    if type_ == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        spec.allocate_load_balancer_node_ports = Some(true);
    }
    for port in spec.ports.iter_mut().flatten() {
        if port.protocol.is_none() {
            port.protocol = Some("TCP".into());
        }
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
}

/// `ipFamilies` and `ipFamilyPolicy` for the lab's single-stack IPv4 cluster: `[IPv4]` and
/// `SingleStack`, or `RequireDualStack` for a headless Service without a selector (as the API
/// server defaults it; it then gets the one family there is).
fn set_ip_families(key: &str, spec: &mut ServiceSpec) -> Result<(), ServiceError> {
    let families = spec.ip_families.clone().unwrap_or_default();
    if let Some(other) = families.iter().find(|f| *f != "IPv4") {
        return Err(invalid(
            key,
            "spec.ipFamilies",
            other,
            "IPv4: the lab's cluster is single-stack IPv4",
        ));
    }
    if families.len() > 1 {
        return Err(invalid(
            key,
            "spec.ipFamilies",
            &families.join(","),
            "one family (IPv4): the lab's cluster is single-stack IPv4",
        ));
    }
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let selectorless = spec.selector.as_ref().is_none_or(BTreeMap::is_empty);
    let policy = match spec.ip_family_policy.as_deref() {
        None if headless && selectorless => "RequireDualStack",
        None => "SingleStack",
        Some(p @ ("SingleStack" | "PreferDualStack")) => p,
        Some("RequireDualStack") if headless && selectorless => "RequireDualStack",
        Some(other) => {
            return Err(invalid(
                key,
                "spec.ipFamilyPolicy",
                other,
                "SingleStack or PreferDualStack: the lab's cluster is single-stack IPv4",
            ));
        }
    };
    spec.ip_family_policy = Some(policy.into());
    spec.ip_families = Some(vec!["IPv4".into()]);
    Ok(())
}

#[cfg(test)]
mod tests;
