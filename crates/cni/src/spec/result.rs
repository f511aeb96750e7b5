//! The ADD result, held in the 1.1.0 shape and converted to whichever version was asked for.
//!
//! Output mirrors what the reference plugins print (Go's `omitempty`): empty lists and unset
//! fields are left out, except `dns`, which Go always prints (`"dns": {}`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use super::json::{Field, Obj};
use super::version::Version;
use crate::error::{CniError, Code, Result};

/// A plugin's result: interfaces, addresses, routes and DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces created or used (host side and in the sandbox).
    pub interfaces: Vec<Interface>,
    /// Addresses assigned; `interface` indexes `interfaces`.
    pub ips: Vec<IpConfig>,
    /// Routes installed in the sandbox.
    pub routes: Vec<Route>,
    /// DNS settings for the container.
    pub dns: Dns,
}

/// One interface in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
    /// MTU (1.1.0+).
    pub mtu: Option<u32>,
    /// Netns path for a sandbox interface; `None` for a host interface.
    pub sandbox: Option<String>,
    /// vhost-user socket path (1.1.0+).
    pub socket_path: Option<String>,
    /// PCI address of a device (1.1.0+).
    pub pci_id: Option<String>,
}

/// One assigned address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.0.0.5/24` (host bits kept).
    pub address: IpNet,
    /// Default gateway of the address's subnet.
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`]; IPAM results leave it unset.
    pub interface: Option<usize>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub dst: IpNet,
    /// Next hop; `None` means the interface's default gateway.
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0+).
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0+).
    pub advmss: Option<u32>,
    /// Route priority/metric (1.1.0+).
    pub priority: Option<u32>,
    /// Routing table (1.1.0+).
    pub table: Option<u32>,
    /// Route scope: 0 universe, 253 link, 254 host (1.1.0+).
    pub scope: Option<u8>,
}

/// DNS settings, both in a config's `dns` key and in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    /// Name server addresses, as given.
    pub nameservers: Vec<String>,
    /// Local domain.
    pub domain: Option<String>,
    /// Search domains.
    pub search: Vec<String>,
    /// resolv.conf options.
    pub options: Vec<String>,
}

impl Dns {
    /// Reads a `dns` object at `obj`'s path.
    pub(crate) fn from_obj(obj: &Obj<'_>) -> Result<Dns> {
        Ok(Dns {
            nameservers: obj.strings("nameservers")?,
            domain: obj.nonempty_string("domain")?,
            search: obj.strings("search")?,
            options: obj.strings("options")?,
        })
    }

    /// The JSON object, empty fields left out.
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        put_list(&mut m, "nameservers", &self.nameservers);
        if let Some(d) = &self.domain {
            m.insert("domain".into(), json!(d));
        }
        put_list(&mut m, "search", &self.search);
        put_list(&mut m, "options", &self.options);
        Value::Object(m)
    }
}

fn put_list(m: &mut Map<String, Value>, key: &str, list: &[String]) {
    if !list.is_empty() {
        m.insert(key.into(), json!(list));
    }
}

fn put_opt<T: serde::Serialize>(m: &mut Map<String, Value>, key: &str, v: &Option<T>) {
    if let Some(v) = v {
        m.insert(key.into(), json!(v));
    }
}

/// A `Decode` error for a string that should have been a CIDR or an address.
fn bad_value(field: &Field<'_>, s: &str, expected: &str) -> CniError {
    CniError::new(
        Code::Decode,
        format!("{}: {s:?} is not {expected}", field.path),
    )
}

fn cidr(field: &Field<'_>) -> Result<IpNet> {
    let s = field.str()?;
    s.parse()
        .map_err(|_| bad_value(field, s, "a CIDR address like 10.0.0.5/24"))
}

fn opt_ip(obj: &Obj<'_>, key: &str) -> Result<Option<IpAddr>> {
    let Some(field) = obj.field(key) else {
        return Ok(None);
    };
    let s = field.str()?;
    // Go prints an unset net.IP as nothing, but accept "" from hand-written results too.
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| bad_value(&field, s, "an IP address"))
}

fn required<'a>(obj: &Obj<'a>, key: &str, expected: &str) -> Result<Field<'a>> {
    // A result is decoded content, not config, so a missing field is a Decode error.
    obj.field(key).ok_or_else(|| {
        CniError::new(
            Code::Decode,
            format!("{}: missing; expected {expected}", obj.path_of(key)),
        )
    })
}

impl CniResult {
    /// Reads a result of any supported version (e.g. a `prevResult` or a cached result).
    ///
    /// Tolerates the pre-1.0 `version` field on IPs and unknown fields; a result with nothing
    /// but `cniVersion` is the empty result. A `cniVersion` outside the supported set is an
    /// `IncompatibleVersion` error.
    pub fn from_json(value: &Value) -> Result<CniResult> {
        CniResult::from_json_at(value, "")
    }

    /// [`CniResult::from_json`] with error paths under `path` (e.g. `prevResult`).
    pub(crate) fn from_json_at(value: &Value, path: &str) -> Result<CniResult> {
        let obj = Obj::new(value, path.to_owned())?;
        if let Some(v) = obj.str("cniVersion")? {
            Version::parse(v)
                .map_err(|e| CniError::new(e.code, format!("{}{}", prefix(path), e.msg)))?;
        }

        let interfaces = obj
            .array("interfaces")?
            .iter()
            .map(|f| {
                let o = f.object()?;
                Ok(Interface {
                    name: required(&o, "name", "an interface name")?.str()?.to_owned(),
                    mac: o.nonempty_string("mac")?,
                    mtu: o.uint("mtu")?,
                    sandbox: o.nonempty_string("sandbox")?,
                    socket_path: o.nonempty_string("socketPath")?,
                    pci_id: o.nonempty_string("pciID")?,
                })
            })
            .collect::<Result<_>>()?;

        let ips = obj
            .array("ips")?
            .iter()
            .map(|f| {
                let o = f.object()?;
                Ok(IpConfig {
                    address: cidr(&required(&o, "address", "a CIDR address")?)?,
                    gateway: opt_ip(&o, "gateway")?,
                    interface: o.uint("interface")?,
                })
            })
            .collect::<Result<_>>()?;

        let routes = obj
            .array("routes")?
            .iter()
            .map(|f| {
                let o = f.object()?;
                Ok(Route {
                    dst: cidr(&required(&o, "dst", "a destination CIDR")?)?,
                    gw: opt_ip(&o, "gw")?,
                    mtu: o.uint("mtu")?,
                    advmss: o.uint("advmss")?,
                    priority: o.uint("priority")?,
                    table: o.uint("table")?,
                    scope: o.uint("scope")?,
                })
            })
            .collect::<Result<_>>()?;

        let dns = match obj.object("dns")? {
            Some(d) => Dns::from_obj(&d)?,
            None => Dns::default(),
        };

        Ok(CniResult {
            interfaces,
            ips,
            routes,
            dns,
        })
    }

    /// The result as `version` prints it: 1.1.0 has every field; 1.0.0 drops the 1.1.0
    /// interface and route fields; 0.4.0 and 0.3.x also add `"version": "4"|"6"` to each IP.
    pub fn to_json(&self, version: Version) -> Value {
        let v1_1 = version >= Version::V1_1_0;
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version.as_str()));

        if !self.interfaces.is_empty() {
            let list = self
                .interfaces
                .iter()
                .map(|i| {
                    let mut m = Map::new();
                    m.insert("name".into(), json!(i.name));
                    put_opt(&mut m, "mac", &i.mac);
                    put_opt(&mut m, "sandbox", &i.sandbox);
                    if v1_1 {
                        put_opt(&mut m, "mtu", &i.mtu);
                        put_opt(&mut m, "socketPath", &i.socket_path);
                        put_opt(&mut m, "pciID", &i.pci_id);
                    }
                    Value::Object(m)
                })
                .collect();
            out.insert("interfaces".into(), Value::Array(list));
        }

        if !self.ips.is_empty() {
            let list = self
                .ips
                .iter()
                .map(|ip| {
                    let mut m = Map::new();
                    m.insert("address".into(), json!(ip.address.to_string()));
                    put_opt(&mut m, "gateway", &ip.gateway.map(|g| g.to_string()));
                    put_opt(&mut m, "interface", &ip.interface);
                    if version < Version::V1_0_0 {
                        let family = match ip.address {
                            IpNet::V4(_) => "4",
                            IpNet::V6(_) => "6",
                        };
                        m.insert("version".into(), json!(family));
                    }
                    Value::Object(m)
                })
                .collect();
            out.insert("ips".into(), Value::Array(list));
        }

        if !self.routes.is_empty() {
            let list = self
                .routes
                .iter()
                .map(|r| {
                    let mut m = Map::new();
                    m.insert("dst".into(), json!(r.dst.to_string()));
                    put_opt(&mut m, "gw", &r.gw.map(|g| g.to_string()));
                    if v1_1 {
                        put_opt(&mut m, "mtu", &r.mtu);
                        put_opt(&mut m, "advmss", &r.advmss);
                        put_opt(&mut m, "priority", &r.priority);
                        put_opt(&mut m, "table", &r.table);
                        put_opt(&mut m, "scope", &r.scope);
                    }
                    Value::Object(m)
                })
                .collect();
            out.insert("routes".into(), Value::Array(list));
        }

        out.insert("dns".into(), self.dns.to_json());
        Value::Object(out)
    }
}

/// `"path: "` for nesting an error message under `path`, or nothing at the root.
fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result using every field, including the 1.1.0-only ones.
    fn full() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: Some("92:f3:b6:18:ca:0f".into()),
                    mtu: Some(1500),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("a6:d4:d5:5c:ca:02".into()),
                    mtu: Some(1450),
                    sandbox: Some("/run/netns/x".into()),
                    socket_path: Some("/run/vhost.sock".into()),
                    pci_id: Some("0000:00:1f.6".into()),
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.235.0.30/24".parse().unwrap(),
                    gateway: Some("10.235.0.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00::1e/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            routes: vec![
                Route {
                    dst: "0.0.0.0/0".parse().unwrap(),
                    gw: Some("10.235.0.1".parse().unwrap()),
                    mtu: Some(1400),
                    advmss: Some(1360),
                    priority: Some(100),
                    table: Some(254),
                    scope: Some(0),
                },
                Route {
                    dst: "::/0".parse().unwrap(),
                    gw: None,
                    mtu: None,
                    advmss: None,
                    priority: None,
                    table: None,
                    scope: None,
                },
            ],
            dns: Dns {
                nameservers: vec!["10.235.0.1".into()],
                domain: Some("cluster.local".into()),
                search: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            },
        }
    }

    fn full_1_1_json() -> Value {
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "cni0", "mac": "92:f3:b6:18:ca:0f", "mtu": 1500},
                {"name": "eth0", "mac": "a6:d4:d5:5c:ca:02", "mtu": 1450,
                 "sandbox": "/run/netns/x", "socketPath": "/run/vhost.sock",
                 "pciID": "0000:00:1f.6"},
            ],
            "ips": [
                {"address": "10.235.0.30/24", "gateway": "10.235.0.1", "interface": 1},
                {"address": "fd00::1e/64", "interface": 1},
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.235.0.1", "mtu": 1400, "advmss": 1360,
                 "priority": 100, "table": 254, "scope": 0},
                {"dst": "::/0"},
            ],
            "dns": {
                "nameservers": ["10.235.0.1"],
                "domain": "cluster.local",
                "search": ["default.svc.cluster.local"],
                "options": ["ndots:5"],
            },
        })
    }

    /// The 1.0.0 body: no 1.1.0 interface/route fields.
    fn full_1_0_json(version: &str) -> Value {
        json!({
            "cniVersion": version,
            "interfaces": [
                {"name": "cni0", "mac": "92:f3:b6:18:ca:0f"},
                {"name": "eth0", "mac": "a6:d4:d5:5c:ca:02", "sandbox": "/run/netns/x"},
            ],
            "ips": [
                {"address": "10.235.0.30/24", "gateway": "10.235.0.1", "interface": 1},
                {"address": "fd00::1e/64", "interface": 1},
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.235.0.1"},
                {"dst": "::/0"},
            ],
            "dns": {
                "nameservers": ["10.235.0.1"],
                "domain": "cluster.local",
                "search": ["default.svc.cluster.local"],
                "options": ["ndots:5"],
            },
        })
    }

    #[test]
    fn to_json_1_1_0_prints_every_field() {
        assert_eq!(full().to_json(Version::V1_1_0), full_1_1_json());
    }

    #[test]
    fn to_json_1_0_0_drops_the_1_1_interface_and_route_fields() {
        assert_eq!(full().to_json(Version::V1_0_0), full_1_0_json("1.0.0"));
    }

    #[test]
    fn to_json_before_1_0_adds_ip_version_to_each_ip() {
        for v in [Version::V0_4_0, Version::V0_3_1, Version::V0_3_0] {
            let mut want = full_1_0_json(v.as_str());
            want["ips"][0]["version"] = json!("4");
            want["ips"][1]["version"] = json!("6");
            assert_eq!(full().to_json(v), want, "{v}");
        }
    }

    #[test]
    fn empty_result_prints_version_and_empty_dns_only() {
        for v in Version::ALL {
            assert_eq!(
                CniResult::default().to_json(v),
                json!({"cniVersion": v.as_str(), "dns": {}})
            );
        }
    }

    #[test]
    fn to_json_matches_the_reference_bridge_output_shape() {
        // podman/02-ADD-bridge.log stdout, byte for byte in content.
        let sample = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cntpodbr0", "mac": "92:f3:b6:18:ca:0f"},
                {"name": "vethec1c8242", "mac": "66:6b:69:c6:a3:c6"},
                {"name": "eth0", "mac": "a6:d4:d5:5c:ca:02",
                 "sandbox": "/run/netns/netns-f31ea93e-529a-e2bd-f145-96c99aaeda9f"},
            ],
            "ips": [{"interface": 2, "address": "10.235.0.30/24", "gateway": "10.235.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {},
        });
        let parsed = CniResult::from_json(&sample).unwrap();
        assert_eq!(parsed.to_json(Version::V1_0_0), sample);
    }

    #[test]
    fn round_trip_1_1_0_is_lossless() {
        let r = full();
        assert_eq!(
            CniResult::from_json(&r.to_json(Version::V1_1_0)).unwrap(),
            r
        );
    }

    #[test]
    fn from_json_reads_every_version_and_tolerates_ip_version_and_unknown_fields() {
        for v in Version::ALL {
            let mut j = full().to_json(v);
            j["somethingNew"] = json!({"x": 1});
            j["ips"][0]["extra"] = json!(true);
            let r = CniResult::from_json(&j).unwrap();
            assert_eq!(r.ips, full().ips, "{v}");
            assert_eq!(r.dns, full().dns, "{v}");
            assert_eq!(r.interfaces.len(), 2);
            assert_eq!(r.routes.len(), 2);
        }
    }

    #[test]
    fn result_with_only_cni_version_is_empty() {
        let r = CniResult::from_json(&json!({"cniVersion": "1.0.0"})).unwrap();
        assert_eq!(r, CniResult::default());
        assert_eq!(
            CniResult::from_json(&json!({})).unwrap(),
            CniResult::default()
        );
    }

    #[test]
    fn empty_strings_read_as_unset() {
        let r = CniResult::from_json(&json!({
            "interfaces": [{"name": "eth0", "mac": "", "sandbox": ""}],
            "ips": [{"address": "10.0.0.2/24", "gateway": ""}],
        }))
        .unwrap();
        assert_eq!(r.interfaces[0].mac, None);
        assert_eq!(r.interfaces[0].sandbox, None);
        assert_eq!(r.ips[0].gateway, None);
    }

    #[test]
    fn unsupported_result_version_is_incompatible() {
        let e = CniResult::from_json_at(&json!({"cniVersion": "0.2.0"}), "prevResult").unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert!(
            e.msg.starts_with("prevResult.cniVersion: \"0.2.0\""),
            "{}",
            e.msg
        );
    }

    #[test]
    fn bad_fields_are_decode_errors_naming_the_path() {
        let cases = [
            (
                json!({"ips": [{"address": "10.0.0.300/24"}]}),
                "prevResult.ips[0].address",
                "10.0.0.300/24",
            ),
            (
                json!({"ips": [{"address": "10.0.0.3/24", "gateway": "nope"}]}),
                "prevResult.ips[0].gateway",
                "nope",
            ),
            (
                json!({"ips": [{"gateway": "10.0.0.1"}]}),
                "prevResult.ips[0].address",
                "missing",
            ),
            (
                json!({"routes": [{"dst": 5}]}),
                "prevResult.routes[0].dst",
                "5",
            ),
            (
                json!({"interfaces": [{"mac": "x"}]}),
                "prevResult.interfaces[0].name",
                "missing",
            ),
            (
                json!({"interfaces": [{"name": "eth0", "mtu": -1}]}),
                "prevResult.interfaces[0].mtu",
                "-1",
            ),
            (
                json!({"routes": [{"dst": "0.0.0.0/0", "scope": 300}]}),
                "prevResult.routes[0].scope",
                "300",
            ),
            (json!({"dns": []}), "prevResult.dns", "[]"),
            (json!([]), "prevResult", "[]"),
        ];
        for (j, path, value) in cases {
            let e = CniResult::from_json_at(&j, "prevResult").unwrap_err();
            assert_eq!(e.code, Code::Decode, "{j}");
            assert!(e.msg.contains(path), "{}", e.msg);
            assert!(e.msg.contains(value), "{}", e.msg);
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::option::of;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        ]
    }

    fn net() -> impl Strategy<Value = IpNet> {
        (ip(), 0u8..=128).prop_map(|(addr, len)| {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            IpNet::new(addr, len % (max + 1)).unwrap_or_else(|_| IpNet::from(addr))
        })
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-z0-9:/._-]{1,12}"
    }

    fn result() -> impl Strategy<Value = CniResult> {
        let interface = (
            text(),
            of(text()),
            of(any::<u32>()),
            of(text()),
            of(text()),
            of(text()),
        )
            .prop_map(|(name, mac, mtu, sandbox, socket_path, pci_id)| Interface {
                name,
                mac,
                mtu,
                sandbox,
                socket_path,
                pci_id,
            });
        let ip_config =
            (net(), of(ip()), of(0usize..8)).prop_map(|(address, gateway, interface)| IpConfig {
                address,
                gateway,
                interface,
            });
        let route = (
            net(),
            of(ip()),
            of(any::<u32>()),
            of(any::<u32>()),
            of(any::<u32>()),
            of(any::<u32>()),
            of(any::<u8>()),
        )
            .prop_map(|(dst, gw, mtu, advmss, priority, table, scope)| Route {
                dst,
                gw,
                mtu,
                advmss,
                priority,
                table,
                scope,
            });
        let dns = (
            prop::collection::vec(text(), 0..3),
            of(text()),
            prop::collection::vec(text(), 0..3),
            prop::collection::vec(text(), 0..3),
        )
            .prop_map(|(nameservers, domain, search, options)| Dns {
                nameservers,
                domain,
                search,
                options,
            });
        (
            prop::collection::vec(interface, 0..4),
            prop::collection::vec(ip_config, 0..4),
            prop::collection::vec(route, 0..4),
            dns,
        )
            .prop_map(|(interfaces, ips, routes, dns)| CniResult {
                interfaces,
                ips,
                routes,
                dns,
            })
    }

    proptest! {
        #[test]
        fn any_result_round_trips_through_1_1_0(r in result()) {
            let back = CniResult::from_json(&r.to_json(Version::V1_1_0)).unwrap();
            prop_assert_eq!(back, r);
        }

        #[test]
        fn older_versions_keep_addresses_routes_and_dns(r in result()) {
            for v in Version::ALL {
                let back = CniResult::from_json(&r.to_json(v)).unwrap();
                prop_assert_eq!(&back.ips, &r.ips);
                prop_assert_eq!(&back.dns, &r.dns);
                let dsts: Vec<_> = back.routes.iter().map(|x| (x.dst, x.gw)).collect();
                let want: Vec<_> = r.routes.iter().map(|x| (x.dst, x.gw)).collect();
                prop_assert_eq!(dsts, want);
            }
        }
    }
}
