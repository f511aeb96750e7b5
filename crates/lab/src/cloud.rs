//! The lab's cloud: what a cloud provider's load-balancer controller does for type=LoadBalancer
//! Services, pure. Each gets an address from the lab's pool as
//! `status.loadBalancer.ingress[0].ip` (the lowest free one, or its `spec.loadBalancerIP` when
//! that is in the pool and free), keeps it while it is a LoadBalancer, and gives it back when it
//! is deleted or changes type. The outside host routes the whole pool to the nodes on its subnet
//! (one ECMP route), so traffic for any ingress IP reaches a node's service proxy.
//!
//! Services naming a `spec.loadBalancerClass` are another implementation's, as in Kubernetes:
//! the lab leaves them pending.
//!
//! For `externalTrafficPolicy: Local` Services the cloud does what cloud load balancers do
//! with `spec.healthCheckNodePort`: it probes that port on every node and sends the
//! Service's traffic only to the nodes that answer 200 (a host route for the ingress address,
//! more specific than the pool's). When no node passes, it falls back to all of them, as
//! cloud load balancers fail open.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Service;

use crate::services::service_key;

/// The ingress address each Service should have, by `namespace/name`: `Some` for
/// LoadBalancer Services the lab serves and can give one, `None` for every other Service.
pub fn ingress_ips(services: &[Service], pool: Ipv4Net) -> BTreeMap<String, Option<Ipv4Addr>> {
    let usable =
        |ip: &Ipv4Addr| pool.contains(ip) && *ip != pool.network() && *ip != pool.broadcast();
    let mut wanted: BTreeMap<String, Option<Ipv4Addr>> = BTreeMap::new();
    let mut pending = Vec::new();
    let mut taken = BTreeSet::new();
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by_key(|s| service_key(s));
    // Addresses already given out stay where they are.
    for service in sorted {
        let key = service_key(service);
        let spec = service.spec.as_ref();
        let served = spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
            && spec
                .and_then(|s| s.load_balancer_class.as_deref())
                .is_none_or(str::is_empty);
        if !served {
            wanted.insert(key, None);
            continue;
        }
        let requested = spec
            .and_then(|s| s.load_balancer_ip.as_deref())
            .filter(|ip| !ip.is_empty())
            .map(|ip| ip.parse::<Ipv4Addr>().ok());
        let current = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|i| i.first())
            .and_then(|i| i.ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            .filter(|ip| usable(ip) && requested.is_none_or(|r| r == Some(*ip)));
        match current {
            Some(ip) if taken.insert(ip) => {
                wanted.insert(key, Some(ip));
            }
            _ => pending.push((key, requested)),
        }
    }
    for (key, requested) in pending {
        let ip = match requested {
            // An address outside the pool, or someone else's, cannot be had: pending.
            Some(requested) => requested.filter(|ip| usable(ip) && !taken.contains(ip)),
            None => pool.hosts().find(|ip| usable(ip) && !taken.contains(ip)),
        };
        if let Some(ip) = ip {
            taken.insert(ip);
        }
        wanted.insert(key, ip);
    }
    wanted
}

/// The health-checked load balancers: the ingress address and `healthCheckNodePort` of
/// every `externalTrafficPolicy: Local` LoadBalancer Service that has both.
pub fn health_checked(services: &[Service]) -> BTreeMap<Ipv4Addr, u16> {
    services
        .iter()
        .filter_map(|service| {
            let spec = service.spec.as_ref()?;
            if spec.type_.as_deref() != Some("LoadBalancer")
                || spec.external_traffic_policy.as_deref() != Some("Local")
            {
                return None;
            }
            let port = u16::try_from(spec.health_check_node_port?).ok()?;
            let ip = service
                .status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?
                .first()?
                .ip
                .as_deref()?
                .parse()
                .ok()?;
            Some((ip, port))
        })
        .collect()
}

/// The `ip` arguments that make the outside host (namespace `netns`) route `pool` to
/// `nexthops`: one route, ECMP over several nodes; a deletion when there are none.
pub fn pool_route_args(netns: &str, pool: Ipv4Net, nexthops: &[Ipv4Addr]) -> Vec<String> {
    let verb = if nexthops.is_empty() {
        "del"
    } else {
        "replace"
    };
    let mut args: Vec<String> = [
        "-n",
        netns,
        "route",
        verb,
        &pool.to_string(),
        "proto",
        "static",
    ]
    .map(String::from)
    .to_vec();
    match nexthops {
        [] => {}
        [one] => args.extend(["via".into(), one.to_string()]),
        many => {
            for hop in many {
                args.extend(["nexthop".into(), "via".into(), hop.to_string()]);
            }
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };

    use super::*;

    fn service(name: &str, type_: &str, ingress: Option<&str>, requested: Option<&str>) -> Service {
        let mut s = Service::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("default".into());
        s.spec = Some(ServiceSpec {
            type_: Some(type_.into()),
            load_balancer_ip: requested.map(Into::into),
            ..Default::default()
        });
        s.status = ingress.map(|ip| ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(ip.into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        s
    }

    fn pool() -> Ipv4Net {
        "192.168.200.0/24".parse().unwrap()
    }

    fn ip(s: &str) -> Option<Ipv4Addr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn load_balancers_get_the_lowest_free_addresses_and_keep_theirs() {
        let services = [
            service("a", "LoadBalancer", None, None),
            service("b", "LoadBalancer", Some("192.168.200.1"), None),
            service("c", "ClusterIP", Some("192.168.200.9"), None),
            service("d", "LoadBalancer", None, None),
        ];
        let got = ingress_ips(&services, pool());
        assert_eq!(got["default/b"], ip("192.168.200.1"));
        assert_eq!(got["default/a"], ip("192.168.200.2"));
        assert_eq!(got["default/d"], ip("192.168.200.3"));
        // Not a LoadBalancer (any more): no ingress.
        assert_eq!(got["default/c"], None);
    }

    #[test]
    fn a_requested_address_is_honoured_when_free_and_in_the_pool() {
        let services = [
            service("a", "LoadBalancer", None, Some("192.168.200.50")),
            service("b", "LoadBalancer", None, Some("10.0.0.1")),
            service(
                "c",
                "LoadBalancer",
                Some("192.168.200.50"),
                Some("192.168.200.50"),
            ),
        ];
        let got = ingress_ips(&services, pool());
        assert_eq!(got["default/c"], ip("192.168.200.50"));
        assert_eq!(got["default/a"], None, "taken by c, which had it first");
        assert_eq!(got["default/b"], None, "outside the pool");
    }

    #[test]
    fn duplicate_ingress_addresses_are_resolved_to_one_owner() {
        let services = [
            service("a", "LoadBalancer", Some("192.168.200.7"), None),
            service("b", "LoadBalancer", Some("192.168.200.7"), None),
        ];
        let got = ingress_ips(&services, pool());
        assert_eq!(got["default/a"], ip("192.168.200.7"));
        assert_eq!(got["default/b"], ip("192.168.200.1"));
    }

    #[test]
    fn the_pool_route_is_ecmp_over_the_nodes() {
        let hops: Vec<Ipv4Addr> = vec![
            "192.168.100.11".parse().unwrap(),
            "192.168.100.12".parse().unwrap(),
        ];
        assert_eq!(
            pool_route_args("o", pool(), &hops).join(" "),
            "-n o route replace 192.168.200.0/24 proto static nexthop via 192.168.100.11 nexthop via 192.168.100.12"
        );
        assert_eq!(
            pool_route_args("o", pool(), &hops[..1]).join(" "),
            "-n o route replace 192.168.200.0/24 proto static via 192.168.100.11"
        );
        assert_eq!(
            pool_route_args("o", pool(), &[]).join(" "),
            "-n o route del 192.168.200.0/24 proto static"
        );
    }
}
