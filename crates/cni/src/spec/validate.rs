//! Name and address checks shared by the environment and config parsers.
//!
//! The rules are libcni's `pkg/utils` ones, so a value the reference plugins accept is accepted
//! here and vice versa.

use std::net::IpAddr;

use ipnet::IpNet;

/// The pattern container IDs and network names must match, quoted in error messages.
pub(crate) const ID_PATTERN: &str = r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$";

/// Longest interface name Linux accepts (`IFNAMSIZ` - 1 for the NUL).
const IFNAME_MAX: usize = 15;

/// Whether `s` matches [`ID_PATTERN`] (container IDs and network names).
pub(crate) fn is_valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphanumeric() => {
            chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        }
        _ => false,
    }
}

/// Why `name` cannot be a Linux interface name, or `None` if it can.
pub(crate) fn ifname_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > IFNAME_MAX {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("it is \".\" or \"..\"")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("it contains '/', ':' or whitespace")
    } else {
        None
    }
}

/// Parses `10.0.0.5` or `10.0.0.5/24` as the address alone: requested-IP conventions
/// (`CNI_ARGS IP=`, `args.cni.ips`, `runtimeConfig.ips`) allow a prefix that host-local ignores.
pub(crate) fn ip_ignoring_prefix(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<IpNet>().ok().map(|net| net.addr()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_libcni_pattern() {
        for ok in ["a", "8d054cb189c3", "default-cnt-ctr1", "a_b.c-d", "0"] {
            assert!(is_valid_id(ok), "{ok}");
        }
        for bad in ["", "-a", "_a", ".a", "a/b", "a b", "a:b", "é"] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn ifnames_follow_the_kernel_rules() {
        for ok in ["eth0", "lo", "cni0", "a23456789012345"] {
            assert_eq!(ifname_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a234567890123456",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            assert!(ifname_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn requested_ips_may_carry_an_ignored_prefix() {
        let v4: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(ip_ignoring_prefix("10.0.0.5"), Some(v4));
        assert_eq!(ip_ignoring_prefix("10.0.0.5/24"), Some(v4));
        let v6: IpAddr = "fd00::5".parse().unwrap();
        assert_eq!(ip_ignoring_prefix("fd00::5/64"), Some(v6));
        assert_eq!(ip_ignoring_prefix("10.0.0.300"), None);
        assert_eq!(ip_ignoring_prefix("10.0.0.5/33"), None);
    }
}
