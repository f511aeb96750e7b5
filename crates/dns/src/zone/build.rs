//! Turns Services, EndpointSlices, Namespaces and Pods into the zone's records (spec §2.2–2.5
//! plus CoreDNS's pod records). Objects may arrive in any order; records are made in `build`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{PodsMode, ReverseZone, Zone, ZoneConfig, ZoneError};
use crate::names::{dashed_ip, name_under, reverse_zone};

/// The schema version served at `dns-version.<zone>` (spec §2.2).
const SCHEMA_VERSION: &str = "1.1.0";
/// CoreDNS hard-codes this TTL for `dns-version`.
const SCHEMA_VERSION_TTL: u32 = 28800;
/// The label EndpointSlices carry naming their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What a Service contributes, read once from the object.
#[derive(Debug)]
enum ServiceKind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    ExternalName(Name),
}

#[derive(Debug)]
struct ServiceInfo {
    kind: ServiceKind,
    /// Named ports only (unnamed ports get no SRV): `(name, protocol, port)`.
    ports: Vec<(String, String, u16)>,
    publish_not_ready: bool,
}

/// One endpoint of an EndpointSlice: addresses, hostname, readiness.
#[derive(Debug)]
struct EndpointInfo {
    addresses: Vec<IpAddr>,
    hostname: Option<String>,
    ready: bool,
}

#[derive(Debug)]
struct SliceInfo {
    endpoints: Vec<EndpointInfo>,
    ports: Vec<(String, String, u16)>,
}

/// Collects cluster objects, then [`build`](Self::build)s a [`Zone`].
#[derive(Debug)]
pub struct ZoneBuilder {
    config: ZoneConfig,
    origin: Name,
    serial: u32,
    namespaces: HashSet<String>,
    services: BTreeMap<(String, String), ServiceInfo>,
    slices: HashMap<(String, String), Vec<SliceInfo>>,
    pod_ips: HashSet<(String, IpAddr)>,
}

// === impl ZoneBuilder ===

impl ZoneBuilder {
    /// Starts a zone for `config`; fails if the cluster domain is not a DNS name.
    pub fn new(config: &ZoneConfig) -> Result<Self, ZoneError> {
        let bad = |reason: String| ZoneError::Domain {
            domain: config.domain.clone(),
            reason,
        };
        let domain = config.domain.trim_end_matches('.');
        if domain.is_empty() {
            return Err(bad("it is empty".to_owned()));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let origin = name_under(&labels, &Name::root())
            .ok_or_else(|| bad("a label is empty, not ASCII or too long".to_owned()))?
            .to_lowercase();
        Ok(Self {
            config: config.clone(),
            origin,
            serial: 1,
            namespaces: HashSet::new(),
            services: BTreeMap::new(),
            slices: HashMap::new(),
            pod_ips: HashSet::new(),
        })
    }

    /// Sets the SOA serial (e.g. the snapshot generation), so secondaries and caches can tell
    /// zones apart. Defaults to 1.
    pub fn serial(&mut self, serial: u32) -> &mut Self {
        self.serial = serial;
        self
    }

    /// Makes `<ns>.svc.<zone>` exist (NODATA rather than NXDOMAIN) even with no Services in it.
    pub fn add_namespace(&mut self, namespace: &Namespace) -> &mut Self {
        if let Some(name) = &namespace.metadata.name {
            self.namespaces.insert(name.to_ascii_lowercase());
        }
        self
    }

    /// Adds a Service; ignored if it has no name, namespace, or usable address.
    pub fn add_service(&mut self, service: &Service) -> &mut Self {
        let (Some(ns), Some(name)) = (&service.metadata.namespace, &service.metadata.name) else {
            return self;
        };
        let Some(spec) = &service.spec else {
            return self;
        };
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            let target = spec.external_name.as_deref().unwrap_or_default();
            // CoreDNS serves a CNAME only when externalName is a hostname, not an address.
            if target.parse::<IpAddr>().is_ok() {
                return self;
            }
            let labels: Vec<&str> = target.trim_end_matches('.').split('.').collect();
            let Some(target) = name_under(&labels, &Name::root()) else {
                return self;
            };
            ServiceKind::ExternalName(target)
        } else {
            let ips: Vec<&String> = match &spec.cluster_ips {
                Some(ips) if !ips.is_empty() => ips.iter().collect(),
                _ => spec.cluster_ip.iter().collect(),
            };
            if ips.iter().any(|ip| ip.as_str() == "None") {
                ServiceKind::Headless
            } else {
                let ips: Vec<IpAddr> = ips.iter().filter_map(|ip| ip.parse().ok()).collect();
                if ips.is_empty() {
                    return self;
                }
                ServiceKind::ClusterIp(ips)
            }
        };
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| named_port(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
            .collect();
        let info = ServiceInfo {
            kind,
            ports,
            publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
        };
        self.namespaces.insert(ns.to_ascii_lowercase());
        self.services
            .insert((ns.to_ascii_lowercase(), name.to_ascii_lowercase()), info);
        self
    }

    /// Adds an EndpointSlice; it counts only for the Service its `kubernetes.io/service-name`
    /// label names. FQDN slices are ignored.
    pub fn add_endpoint_slice(&mut self, slice: &EndpointSlice) -> &mut Self {
        let ns = slice.metadata.namespace.as_deref();
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL));
        let (Some(ns), Some(service)) = (ns, service) else {
            return self;
        };
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            return self;
        }
        let endpoints = slice
            .endpoints
            .iter()
            .flatten()
            .map(|e| EndpointInfo {
                addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                hostname: e.hostname.clone().filter(|h| !h.is_empty()),
                // The API says a nil `ready` means ready.
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
            })
            .collect();
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| named_port(p.name.as_deref(), p.protocol.as_deref(), p.port))
            .collect();
        self.slices
            .entry((ns.to_ascii_lowercase(), service.to_ascii_lowercase()))
            .or_default()
            .push(SliceInfo { endpoints, ports });
        self
    }

    /// Adds a Pod's addresses for `pods verified`. Host-network pods are skipped: their address
    /// is the node's, which no pod name should claim.
    pub fn add_pod(&mut self, pod: &Pod) -> &mut Self {
        let Some(ns) = &pod.metadata.namespace else {
            return self;
        };
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            return self;
        }
        let Some(status) = &pod.status else {
            return self;
        };
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return self;
        }
        let ips = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
        for ip in ips.chain(status.pod_ip.as_deref()) {
            if let Ok(ip) = ip.parse() {
                self.pod_ips.insert((ns.to_ascii_lowercase(), ip));
            }
        }
        self
    }

    /// Generates every record and indexes it.
    pub fn build(&self) -> Zone {
        let ttl = self.config.ttl;
        let mut records = Records::default();
        let origin = &self.origin;
        let under = |labels: &[&str]| name_under(labels, origin);

        let ns_name = under(&["ns", "dns"]).unwrap_or_else(|| origin.clone());
        let hostmaster = under(&["hostmaster"]).unwrap_or_else(|| origin.clone());
        let soa_data = SOA::new(
            ns_name.clone(),
            hostmaster,
            self.serial,
            7200,
            1800,
            86400,
            ttl,
        );
        let soa = Record::from_rdata(origin.clone(), ttl, RData::SOA(soa_data.clone()));
        records.add(soa.clone());
        records.add(Record::from_rdata(
            origin.clone(),
            ttl,
            RData::NS(NS(ns_name.clone())),
        ));
        records.add_node(ns_name.clone());
        for ip in &self.config.nameserver_ips {
            records.add(address(ns_name.clone(), ttl, *ip));
        }
        if let Some(version) = under(&["dns-version"]) {
            let txt = TXT::new(vec![SCHEMA_VERSION.to_owned()]);
            records.add(Record::from_rdata(
                version,
                SCHEMA_VERSION_TTL,
                RData::TXT(txt),
            ));
        }
        records.add_node(under(&["svc"]).unwrap_or_else(|| origin.clone()));
        let mut pod_namespaces = HashSet::new();
        if self.config.pods != PodsMode::Disabled {
            records.add_node(under(&["pod"]).unwrap_or_else(|| origin.clone()));
            pod_namespaces = self.pod_ips.iter().map(|(ns, _)| ns.clone()).collect();
        }
        for ns in &self.namespaces {
            if let Some(name) = under(&[ns, "svc"]) {
                records.add_node(name);
            }
        }
        for ((ns, name), service) in &self.services {
            let Some(service_name) = under(&[name, ns, "svc"]) else {
                continue;
            };
            let slices = self
                .slices
                .get(&(ns.clone(), name.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            add_service_records(&mut records, ttl, &service_name, service, slices);
        }

        let reverse = self
            .config
            .reverse_cidrs
            .iter()
            .filter_map(|net| {
                let owner = reverse_zone(net)?;
                let soa = Record::from_rdata(owner, ttl, RData::SOA(soa_data.clone()));
                Some(ReverseZone { net: *net, soa })
            })
            .collect();

        Zone {
            pods_mode: self.config.pods,
            ttl,
            pod_origin: under(&["pod"]).unwrap_or_else(|| origin.clone()),
            origin: origin.clone(),
            soa,
            nodes: records.finish(origin),
            reverse,
            pod_ips: self.pod_ips.clone(),
            pod_namespaces,
        }
    }
}

/// `(name, protocol label, port)` for a named port with a valid number.
fn named_port(
    name: Option<&str>,
    protocol: Option<&str>,
    port: Option<i32>,
) -> Option<(String, String, u16)> {
    let name = name.filter(|n| !n.is_empty())?;
    let port = u16::try_from(port?).ok()?;
    let protocol = protocol.unwrap_or("TCP").to_ascii_lowercase();
    Some((
        format!("_{}", name.to_ascii_lowercase()),
        format!("_{protocol}"),
        port,
    ))
}

fn address(name: Name, ttl: u32, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name, ttl, RData::AAAA(AAAA(v6))),
    }
}

fn ptr(ip: IpAddr, ttl: u32, target: &Name) -> Record {
    Record::from_rdata(Name::from(ip), ttl, RData::PTR(PTR(target.clone())))
}

/// SRV weight is filled in by [`Records::finish`] once all SRVs of an owner are known.
fn srv(owner: Name, ttl: u32, port: u16, target: &Name) -> Record {
    Record::from_rdata(owner, ttl, RData::SRV(SRV::new(0, 0, port, target.clone())))
}

fn add_service_records(
    records: &mut Records,
    ttl: u32,
    service_name: &Name,
    service: &ServiceInfo,
    slices: &[SliceInfo],
) {
    let port_name = |(port, proto): (&str, &str)| {
        let mut name = service_name.prepend_label(proto.as_bytes()).ok()?;
        name = name.prepend_label(port.as_bytes()).ok()?;
        Some(name)
    };
    match &service.kind {
        ServiceKind::ExternalName(target) => {
            let cname = RData::CNAME(CNAME(target.clone()));
            records.add(Record::from_rdata(service_name.clone(), ttl, cname));
        }
        ServiceKind::ClusterIp(ips) => {
            for ip in ips {
                records.add(address(service_name.clone(), ttl, *ip));
                records.add(ptr(*ip, ttl, service_name));
            }
            for (port, proto, number) in &service.ports {
                if let Some(owner) = port_name((port, proto)) {
                    records.add(srv(owner, ttl, *number, service_name));
                }
            }
        }
        ServiceKind::Headless => {
            // Spec §2.4: only ready endpoints; none at all leaves the name absent (NXDOMAIN).
            for slice in slices {
                for endpoint in &slice.endpoints {
                    if !endpoint.ready && !service.publish_not_ready {
                        continue;
                    }
                    for ip in &endpoint.addresses {
                        let label = endpoint.hostname.clone().unwrap_or_else(|| dashed_ip(*ip));
                        let Ok(host) = service_name.prepend_label(label.as_bytes()) else {
                            continue;
                        };
                        records.add(address(service_name.clone(), ttl, *ip));
                        records.add(address(host.clone(), ttl, *ip));
                        records.add(ptr(*ip, ttl, &host));
                        for (port, proto, number) in &slice.ports {
                            if let Some(owner) = port_name((port, proto)) {
                                records.add(srv(owner, ttl, *number, &host));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Records grouped by owner, plus owners that exist without records (empty non-terminals).
#[derive(Default)]
struct Records {
    nodes: HashMap<Name, Vec<Record>>,
}

impl Records {
    fn add(&mut self, record: Record) {
        // Room for one: most owners have one record, and a first push would make room for four.
        self.nodes
            .entry(record.name.clone())
            .or_insert_with(|| Vec::with_capacity(1))
            .push(record);
    }

    fn add_node(&mut self, name: Name) {
        self.nodes.entry(name).or_default();
    }

    /// Dedups, sets SRV weights, and adds every in-zone ancestor up to `origin` as an empty
    /// non-terminal so that `ns.svc.<zone>` and `_tcp.svc.ns.svc.<zone>` are NODATA.
    fn finish(mut self, origin: &Name) -> HashMap<Name, Box<[Record]>> {
        let mut ancestors = Vec::new();
        for (name, records) in &mut self.nodes {
            records.sort();
            records.dedup();
            let srv_count = records
                .iter()
                .filter(|r| r.record_type() == RecordType::SRV)
                .count();
            // Equal priority, equal share of 100 (CoreDNS does the same).
            let weight = u16::try_from(100 / srv_count.max(1)).unwrap_or(1).max(1);
            for record in records.iter_mut() {
                if let RData::SRV(srv) = &mut record.data {
                    srv.weight = weight;
                }
            }
            if origin.zone_of(name) {
                let mut parent = name.base_name();
                while parent.num_labels() > origin.num_labels() {
                    ancestors.push(parent.clone());
                    parent = parent.base_name();
                }
            }
        }
        for name in ancestors {
            self.nodes.entry(name).or_default();
        }
        self.nodes.entry(origin.clone()).or_default();
        // Exactly sized slices, in a table sized for the final count.
        self.nodes
            .into_iter()
            .map(|(name, records)| (name, records.into_boxed_slice()))
            .collect()
    }
}
