//! Name helpers shared by the zone builder and lookups: DNS names from Kubernetes strings, the
//! dashed-IP labels used for endpoints without a hostname and for pod records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

/// Builds `label1.label2…<origin>` from raw ASCII labels, or `None` if a label is empty, longer
/// than 63 bytes or the whole name longer than 255 bytes.
///
/// Raw bytes rather than `&str` labels: hickory runs `&str` through IDNA, which we neither need
/// (Kubernetes names are DNS-1123/1035 already) nor want on the hot path.
pub(crate) fn name_under(labels: &[&str], origin: &Name) -> Option<Name> {
    if labels.iter().any(|l| l.is_empty() || !l.is_ascii()) {
        return None;
    }
    let relative = Name::from_labels(labels.iter().map(|l| l.as_bytes())).ok()?;
    let mut name = relative.append_domain(origin).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// The label CoreDNS gives an endpoint without a hostname: its address with `.`/`:` turned into `-`
/// (`10-1-2-3`, `fd00--1`). A leading or trailing `-` (from `::`) gets a `0` so the label never
/// starts or ends with a hyphen.
pub(crate) fn dashed_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let mut label = v6.to_string().replace(':', "-");
            if label.starts_with('-') {
                label.insert(0, '0');
            }
            if label.ends_with('-') {
                label.push('0');
            }
            label
        }
    }
}

/// Parses a pod label (`10-1-2-3` or `fd00--1`) back to the address it encodes.
pub(crate) fn parse_dashed_ip(label: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(label).ok()?;
    if text.is_empty() || text.len() > 63 {
        return None;
    }
    if text.bytes().filter(|b| *b == b'-').count() == 3
        && let Ok(v4) = text.replace('-', ".").parse::<Ipv4Addr>()
    {
        return Some(IpAddr::V4(v4));
    }
    text.replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The address a full-length reverse name (`4.3.2.1.in-addr.arpa.`, 32 nibbles `.ip6.arpa.`)
/// stands for; `None` for partial or malformed reverse names.
pub(crate) fn parse_reverse(name: &Name) -> Option<IpAddr> {
    let net = name.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

/// The reverse-zone apex for a CIDR, rounded out to the enclosing octet (IPv4) or nibble (IPv6)
/// boundary, e.g. `10.96.0.0/12` → `10.in-addr.arpa.`; used as the owner of negative answers' SOA.
pub(crate) fn reverse_zone(net: &ipnet::IpNet) -> Option<Name> {
    let full = Name::from(net.network());
    let keep_from_right = match net {
        ipnet::IpNet::V4(v4) => 2 + usize::from(v4.prefix_len() / 8),
        ipnet::IpNet::V6(v6) => 2 + usize::from(v6.prefix_len() / 4),
    };
    let labels = usize::from(full.num_labels());
    let mut zone = full.trim_to(keep_from_right.min(labels));
    zone.set_fqdn(true);
    Some(zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_ip_round_trips_both_families() {
        for ip in [
            "10.1.2.3",
            "fd00::1",
            "::1",
            "fd00::",
            "2001:db8:1:2:3:4:5:6",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let label = dashed_ip(ip);
            assert!(!label.starts_with('-') && !label.ends_with('-'), "{label}");
            assert_eq!(parse_dashed_ip(label.as_bytes()), Some(ip), "{label}");
        }
        assert_eq!(dashed_ip("10.1.2.3".parse().unwrap()), "10-1-2-3");
    }

    #[test]
    fn parse_dashed_ip_rejects_non_addresses() {
        for label in ["", "a-b-c-d", "1-2-3", "256-1-1-1", "x", "1-2-3-4-5"] {
            assert_eq!(parse_dashed_ip(label.as_bytes()), None, "{label}");
        }
    }

    #[test]
    fn reverse_names_parse_only_at_full_length() {
        let v4 = Name::from_ascii("4.3.2.10.in-addr.arpa.").unwrap();
        assert_eq!(parse_reverse(&v4), Some("10.2.3.4".parse().unwrap()));
        let partial = Name::from_ascii("2.10.in-addr.arpa.").unwrap();
        assert_eq!(parse_reverse(&partial), None);
        let v6 = Name::from(IpAddr::from("fd00::1".parse::<Ipv6Addr>().unwrap()));
        assert_eq!(parse_reverse(&v6), Some("fd00::1".parse().unwrap()));
    }

    #[test]
    fn reverse_zone_rounds_to_octet_and_nibble() {
        let net: ipnet::IpNet = "10.96.0.0/12".parse().unwrap();
        assert_eq!(reverse_zone(&net).unwrap().to_ascii(), "10.in-addr.arpa.");
        let net: ipnet::IpNet = "fd00:10::/108".parse().unwrap();
        let zone = reverse_zone(&net).unwrap();
        assert_eq!(zone.num_labels(), 2 + 27);
        assert!(zone.to_ascii().ends_with(".ip6.arpa."));
    }

    #[test]
    fn name_under_rejects_bad_labels() {
        let origin = Name::from_ascii("cluster.local.").unwrap();
        assert!(name_under(&["_http", "_tcp", "svc"], &origin).is_some());
        assert!(name_under(&[""], &origin).is_none());
        assert!(name_under(&[&"a".repeat(64)], &origin).is_none());
    }
}
