//! The cluster zone: an immutable index of the Kubernetes DNS records (spec schema 1.1.0) that
//! answers one question with answers, authority and a response code. Pure: no I/O, no clocks.

mod build;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

pub use build::ZoneBuilder;

use crate::names::{parse_dashed_ip, parse_reverse};

/// How many in-zone CNAME hops a lookup follows before it stops (loops cannot come from
/// Kubernetes objects, but a bound keeps every lookup finite).
const MAX_CNAME_HOPS: usize = 8;

/// What the zone serves and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The cluster domain, e.g. `cluster.local` (a trailing dot is optional).
    pub domain: String,
    /// TTL of every record except `dns-version` (CoreDNS's `ttl`; kubeadm uses 30).
    pub ttl: u32,
    /// Whether and how `a-b-c-d.<ns>.pod.<zone>` names are answered.
    pub pods: PodsMode,
    /// Reverse ranges (service CIDRs, pod CIDRs) this server is authoritative for: a PTR query for
    /// an unknown address inside them gets NXDOMAIN instead of being forwarded.
    pub reverse_cidrs: Vec<ipnet::IpNet>,
    /// Addresses of this DNS service, served at `ns.dns.<zone>` (the SOA's and NS's target).
    pub nameserver_ips: Vec<IpAddr>,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        Self {
            domain: "cluster.local".to_owned(),
            ttl: 30,
            pods: PodsMode::default(),
            reverse_cidrs: Vec::new(),
            nameserver_ips: Vec::new(),
        }
    }
}

/// CoreDNS's `pods` option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PodsMode {
    /// `a-b-c-d.<ns>.pod.<zone>` is NXDOMAIN.
    Disabled,
    /// Any well-formed dashed address answers with that address, without checking for a pod.
    Insecure,
    /// Answers only when a pod in that namespace has that address.
    #[default]
    Verified,
}

/// The configuration was unusable.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The cluster domain is not a valid DNS name.
    #[error("cluster domain {domain:?} is not a valid DNS name: {reason}")]
    Domain {
        /// The domain as configured.
        domain: String,
        /// Why hickory rejected it.
        reason: String,
    },
}

/// The zone's reply to one question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The name is outside the cluster zone and the owned reverse ranges: forward it.
    NotOurs,
    /// An authoritative answer (positive, NODATA, NXDOMAIN or REFUSED).
    Answer(ZoneAnswer),
}

/// An authoritative answer from the zone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneAnswer {
    /// NOERROR (answers or NODATA), NXDOMAIN, or REFUSED for a non-IN class.
    pub rcode: ResponseCode,
    /// The answer section, CNAMEs first.
    pub answers: Vec<Record>,
    /// The zone's SOA on negative answers, for negative caching (RFC 2308).
    pub authority: Vec<Record>,
    /// A/AAAA of in-zone SRV targets.
    pub additionals: Vec<Record>,
    /// The answers end in a CNAME to this out-of-zone name, which a recursive server should
    /// resolve and append (ExternalName services).
    pub chase: Option<Name>,
}

/// An owned reverse range and the SOA its negative answers carry.
#[derive(Clone, Debug)]
struct ReverseZone {
    net: ipnet::IpNet,
    soa: Record,
}

/// The immutable record index. Build it with [`ZoneBuilder`]; swap a new one in on every change.
#[derive(Clone, Debug)]
pub struct Zone {
    pods_mode: PodsMode,
    ttl: u32,
    origin: Name,
    pod_origin: Name,
    soa: Record,
    /// Every owner name in the zone and its reverse names, ancestors included (empty
    /// non-terminals have no records). `Name`'s `Eq`/`Hash` are case-insensitive.
    nodes: HashMap<Name, Box<[Record]>>,
    reverse: Vec<ReverseZone>,
    /// `(namespace, address)` of running pods, for `pods verified`; namespaces lower-cased.
    pod_ips: HashSet<(String, IpAddr)>,
    pod_namespaces: HashSet<String>,
}

// === impl Zone ===

impl Zone {
    /// The zone apex, e.g. `cluster.local.`.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// An empty zone for `config` (only the apex, `dns-version`, SOA and NS).
    pub fn empty(config: &ZoneConfig) -> Result<Self, ZoneError> {
        Ok(ZoneBuilder::new(config)?.build())
    }

    /// Answers `name`/`rtype`/`class`. Names compare case-insensitively; a relative `name` is
    /// taken as fully qualified.
    pub fn lookup(&self, name: &Name, rtype: RecordType, class: DNSClass) -> Lookup {
        if !name.is_fqdn() {
            let mut fqdn = name.clone();
            fqdn.set_fqdn(true);
            return self.lookup(&fqdn, rtype, class);
        }
        if self.origin.zone_of(name) {
            if class != DNSClass::IN && class != DNSClass::ANY {
                return Lookup::Answer(ZoneAnswer {
                    rcode: ResponseCode::Refused,
                    ..ZoneAnswer::default()
                });
            }
            if self.pod_origin.zone_of(name) && name.num_labels() > self.pod_origin.num_labels() {
                return Lookup::Answer(self.lookup_pod(name, rtype));
            }
            return Lookup::Answer(self.lookup_node(name, rtype, &self.soa));
        }
        let Some(soa) = self.reverse_soa(name) else {
            return Lookup::NotOurs;
        };
        if class != DNSClass::IN && class != DNSClass::ANY {
            return Lookup::Answer(ZoneAnswer {
                rcode: ResponseCode::Refused,
                ..ZoneAnswer::default()
            });
        }
        Lookup::Answer(self.lookup_node(name, rtype, soa))
    }

    /// The SOA for a reverse name we answer: a known PTR owner or an address in an owned range.
    fn reverse_soa(&self, name: &Name) -> Option<&Record> {
        let ip = parse_reverse(name)?;
        let owned = self.reverse.iter().find(|r| r.net.contains(&ip));
        match owned {
            Some(zone) => Some(&zone.soa),
            // A PTR we generated for an address outside the configured ranges (e.g. a headless
            // endpoint in a pod CIDR nobody listed) is still ours to answer.
            None if self.nodes.contains_key(name) => Some(&self.soa),
            None => None,
        }
    }

    fn lookup_node(&self, name: &Name, rtype: RecordType, soa: &Record) -> ZoneAnswer {
        let mut answer = ZoneAnswer::default();
        let mut current = name.clone();
        for _ in 0..MAX_CNAME_HOPS {
            let Some(records) = self.nodes.get(&current) else {
                answer.rcode = ResponseCode::NXDomain;
                answer.authority.push(soa.clone());
                return answer;
            };
            let cname = records.iter().find_map(|r| match &r.data {
                RData::CNAME(target) if rtype != RecordType::CNAME => Some((r, target.0.clone())),
                _ => None,
            });
            if let Some((record, target)) = cname {
                answer.answers.push(record.clone());
                if self.origin.zone_of(&target) {
                    current = target;
                    continue;
                }
                answer.chase = Some(target);
                return answer;
            }
            answer.answers.extend(
                records
                    .iter()
                    .filter(|r| rtype == RecordType::ANY || r.record_type() == rtype)
                    .cloned(),
            );
            break;
        }
        if answer.answers.is_empty() {
            answer.authority.push(soa.clone());
        }
        self.add_srv_targets(&mut answer);
        answer
    }

    /// RFC 2782 / spec §2.3.2: the Additional section may carry the SRV targets' addresses.
    fn add_srv_targets(&self, answer: &mut ZoneAnswer) {
        for record in &answer.answers {
            let RData::SRV(srv) = &record.data else {
                continue;
            };
            let Some(records) = self.nodes.get(&srv.target) else {
                continue;
            };
            for address in records
                .iter()
                .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
            {
                if !answer.additionals.contains(address) {
                    answer.additionals.push(address.clone());
                }
            }
        }
    }

    /// `<dashed-ip>.<ns>.pod.<zone>`, and the empty non-terminal `<ns>.pod.<zone>`.
    fn lookup_pod(&self, name: &Name, rtype: RecordType) -> ZoneAnswer {
        let negative = |rcode| ZoneAnswer {
            rcode,
            authority: vec![self.soa.clone()],
            ..ZoneAnswer::default()
        };
        if self.pods_mode == PodsMode::Disabled {
            return negative(ResponseCode::NXDomain);
        }
        let depth = name.num_labels() - self.pod_origin.num_labels();
        let mut labels = name.iter();
        let (ip_label, ns_label) = match depth {
            1 => (None, labels.next()),
            2 => (labels.next(), labels.next()),
            _ => return negative(ResponseCode::NXDomain),
        };
        let Some(namespace) = ns_label.and_then(|l| std::str::from_utf8(l).ok()) else {
            return negative(ResponseCode::NXDomain);
        };
        let namespace = namespace.to_ascii_lowercase();
        let Some(ip_label) = ip_label else {
            // `<ns>.pod.<zone>` exists (NODATA) when pods in it can have records.
            return match self.pods_mode {
                PodsMode::Verified if !self.pod_namespaces.contains(&namespace) => {
                    negative(ResponseCode::NXDomain)
                }
                _ => negative(ResponseCode::NoError),
            };
        };
        let Some(ip) = parse_dashed_ip(ip_label) else {
            return negative(ResponseCode::NXDomain);
        };
        if self.pods_mode == PodsMode::Verified && !self.pod_ips.contains(&(namespace, ip)) {
            return negative(ResponseCode::NXDomain);
        }
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        if rtype != RecordType::ANY && rtype != data.record_type() {
            return negative(ResponseCode::NoError);
        }
        ZoneAnswer {
            answers: vec![Record::from_rdata(name.clone(), self.ttl, data)],
            ..ZoneAnswer::default()
        }
    }
}
