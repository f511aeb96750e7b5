//! Names and hardware addresses derived from the attachment, so they are stable across retries
//! and never collide between pods.

use sha2::{Digest, Sha256};

/// The prefix of host-side veth names; `pn` + 13 hex digits fills the kernel's 15-byte limit.
const VETH_PREFIX: &str = "pn";

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]); // separator: ("ab","c") and ("a","bc") must differ
    }
    h.finalize().into()
}

/// The host-side veth name of the attachment `(container_id, ifname)`: 52 bits of a hash, so a
/// node would need tens of millions of pods before two could collide.
pub fn host_veth(container_id: &str, ifname: &str) -> String {
    let d = digest(&[container_id, ifname]);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("{VETH_PREFIX}{}", &hex[..13])
}

/// The link group retired host veths are moved to, so the reaper deletes them all in one request
/// and a later ADD tells a retired veth from a live one ("pnz" in ASCII; links start in group 0,
/// and nothing else uses this one).
pub const RETIRED_GROUP: u32 = 0x0070_6e7a;

/// A short, stable identifier of the attachment for nft chain names (`hp_<id>`).
pub fn attachment_id(container_id: &str, ifname: &str) -> String {
    host_veth(container_id, ifname)[VETH_PREFIX.len()..].to_owned()
}

/// A locally administered unicast MAC derived from `parts`: setting it ourselves saves asking
/// the kernel for it afterwards, and keeps it stable for the same attachment.
pub fn mac(parts: &[&str]) -> [u8; 6] {
    let d = digest(parts);
    let mut m = [0u8; 6];
    m.copy_from_slice(&d[..6]);
    m[0] = (m[0] & 0xfe) | 0x02; // unicast, locally administered
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_name_fits_the_kernel_limit_and_is_stable() {
        let a = host_veth(
            "8d054cb189c3daa21823c8e50b2dc30a324ac39cb251cecdf01cd82df08049d7",
            "eth0",
        );
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("pn"));
        assert_eq!(
            a,
            host_veth(
                "8d054cb189c3daa21823c8e50b2dc30a324ac39cb251cecdf01cd82df08049d7",
                "eth0"
            )
        );
    }

    #[test]
    fn host_veth_name_differs_per_interface_and_container() {
        assert_ne!(host_veth("c1", "eth0"), host_veth("c1", "eth1"));
        assert_ne!(host_veth("c1", "eth0"), host_veth("c2", "eth0"));
        assert_ne!(host_veth("ab", "c"), host_veth("a", "bc"));
    }

    #[test]
    fn derived_macs_are_local_unicast() {
        for i in 0..64 {
            let m = mac(&["x", &i.to_string()]);
            assert_eq!(m[0] & 0x01, 0, "multicast bit set in {m:?}");
            assert_eq!(m[0] & 0x02, 0x02, "local bit missing in {m:?}");
        }
    }
}
