//! Writing nft commands, one per line, in the flat form `nft -f` reads (as knftables writes
//! kube-proxy's): `add chain ip podnet_services <name>`, `add rule …`, `add element …`.

use std::fmt::Write as _;

use super::super::state::IpFamily;
use super::TABLE;

/// nft's family keyword for a table of this IP family.
pub(super) fn family(f: IpFamily) -> &'static str {
    match f {
        IpFamily::V4 => "ip",
        IpFamily::V6 => "ip6",
    }
}

/// nft's address type for set keys of this family.
pub(super) fn addr_type(f: IpFamily) -> &'static str {
    match f {
        IpFamily::V4 => "ipv4_addr",
        IpFamily::V6 => "ipv6_addr",
    }
}

// Every `write!` below writes to a String, which cannot fail; the results are ignored.

/// `<verb> <object> <family> podnet_services <rest>`.
pub(super) fn command(out: &mut String, verb: &str, object: &str, f: IpFamily, rest: &str) {
    let _ = writeln!(out, "{verb} {object} {} {TABLE} {rest}", family(f));
}

/// `add rule <family> podnet_services <chain> <rule>`.
pub(super) fn add_rule(out: &mut String, f: IpFamily, chain: &str, rule: &str) {
    let _ = writeln!(out, "add rule {} {TABLE} {chain} {rule}", family(f));
}

/// An affinity set: client addresses, each remembered for `timeout` seconds after its last
/// packet (`dynamic` because rules add to it; some kernels add the flag themselves, and a
/// declaration that differs from the kernel's would then fail).
pub(super) fn add_affinity_set(out: &mut String, f: IpFamily, name: &str, timeout: u32) {
    let _ = writeln!(
        out,
        "add set {} {TABLE} {name} {{ type {} ; flags dynamic,timeout ; timeout {timeout}s ; }}",
        family(f),
        addr_type(f)
    );
}

/// `add element … { key [comment "…"] [: value] }`.
pub(super) fn add_element(
    out: &mut String,
    f: IpFamily,
    container: &str,
    key: &str,
    comment: Option<&str>,
    value: Option<&str>,
) {
    let _ = write!(
        out,
        "add element {} {TABLE} {container} {{ {key}",
        family(f)
    );
    if let Some(comment) = comment {
        let _ = write!(out, " comment \"{comment}\"");
    }
    if let Some(value) = value {
        let _ = write!(out, " : {value}");
    }
    out.push_str(" }\n");
}

/// `delete element … { key }`.
pub(super) fn delete_element(out: &mut String, f: IpFamily, container: &str, key: &str) {
    let _ = writeln!(
        out,
        "delete element {} {TABLE} {container} {{ {key} }}",
        family(f)
    );
}
