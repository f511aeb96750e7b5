//! The node's CNI network config: what the agent writes where the runtime reads it
//! (`/etc/cni/net.d/10-podnet.conflist` on a real node), so every pod the runtime creates is wired
//! by podnet-cni with addresses from this node's pod CIDR.

use std::path::Path;

use ipnet::IpNet;
use serde_json::{Value, json};

/// The file name; runtimes take the first config in name order.
pub const CONF_FILE: &str = "10-podnet.conflist";

/// What the config depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniSettings {
    /// The node's pod CIDRs (one per family).
    pub pod_cidrs: Vec<IpNet>,
    /// Pod MTU: the underlay's, less the overlay's encapsulation.
    pub mtu: u32,
    /// Where podnet-cni keeps its IPAM state (`dataDir`); `None` for the plugin's default.
    pub data_dir: Option<String>,
    /// The agent's endpoint, where ADD waits for a new pod's network policy (`policyGate`).
    pub policy_gate: Option<std::net::SocketAddr>,
}

/// The network config list: podnet-cni in bridge mode (gateway on `cni0`, default route, hairpin
/// so a pod reaches itself through a Service), IPAM from the pod CIDRs, and the `portMappings`
/// capability for hostPorts. Masquerade is the agent's job (it knows the cluster CIDR), so the
/// plugin's `ipMasq` stays off. With `policyGate` ADD returns only once this agent enforces the
/// new pod's network policy.
pub fn render(s: &CniSettings) -> Value {
    let ranges: Vec<Value> = s
        .pod_cidrs
        .iter()
        .map(|c| json!([{ "subnet": c.to_string() }]))
        .collect();
    let routes: Vec<Value> = s
        .pod_cidrs
        .iter()
        .map(|c| json!({ "dst": if c.addr().is_ipv4() { "0.0.0.0/0" } else { "::/0" } }))
        .collect();
    let mut ipam = json!({ "type": "podnet-cni", "ranges": ranges, "routes": routes });
    if let Some(dir) = &s.data_dir {
        ipam["dataDir"] = json!(dir);
    }
    let mut conf = json!({
        "cniVersion": "1.1.0",
        "name": "podnet",
        "plugins": [{
            "type": "podnet-cni",
            "mode": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "mtu": s.mtu,
            "ipam": ipam,
            "capabilities": { "portMappings": true }
        }]
    });
    if let Some(gate) = s.policy_gate {
        conf["plugins"][0]["policyGate"] = json!(gate.to_string());
    }
    conf
}

/// Writes the config into `dir` atomically (temp file + rename) if it differs from what is
/// there; true when it wrote.
pub fn write(dir: &Path, conf: &Value) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(CONF_FILE);
    let text = serde_json::to_string_pretty(conf).map_err(std::io::Error::other)? + "\n";
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    let tmp = dir.join(format!(".{CONF_FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_uses_the_pod_cidrs_and_the_overlay_mtu() {
        let conf = render(&CniSettings {
            pod_cidrs: vec![
                "10.244.1.0/24".parse().unwrap(),
                "fd00:1::/64".parse().unwrap(),
            ],
            mtu: 1450,
            data_dir: Some("/x".into()),
            policy_gate: Some("127.0.0.1:9765".parse().unwrap()),
        });
        let p = &conf["plugins"][0];
        assert_eq!(p["type"], "podnet-cni");
        assert_eq!(p["mtu"], 1450);
        assert_eq!(p["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(p["ipam"]["ranges"][1][0]["subnet"], "fd00:1::/64");
        assert_eq!(p["ipam"]["routes"][1]["dst"], "::/0");
        assert_eq!(p["ipam"]["dataDir"], "/x");
        assert_eq!(p["capabilities"]["portMappings"], true);
        assert_eq!(p["policyGate"], "127.0.0.1:9765");
    }

    #[test]
    fn write_is_atomic_and_skips_identical_content() {
        let dir = tempfile::tempdir().unwrap();
        let conf = render(&CniSettings {
            pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
            mtu: 1500,
            data_dir: None,
            policy_gate: None,
        });
        assert!(write(dir.path(), &conf).unwrap());
        assert!(!write(dir.path(), &conf).unwrap());
        let back: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(CONF_FILE)).unwrap())
                .unwrap();
        assert_eq!(back, conf);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temp file left: {names:?}");
    }
}
