//! The CNI spec versions podnet speaks, and the answer to the VERSION command.
//!
//! Only the "rich result" versions (0.3.0 onwards) are supported: 0.1/0.2 results have a
//! different shape (`ip4`/`ip6`) that no runtime we target still sends.

use std::fmt;

use crate::error::{CniError, Code, Result};

/// A supported CNI spec version, ordered oldest to newest so features can be gated with `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// 0.3.0: rich results and plugin chaining.
    V0_3_0,
    /// 0.3.1: clarifications of 0.3.0, same wire shape.
    V0_3_1,
    /// 0.4.0: adds CHECK and `prevResult` on DEL.
    V0_4_0,
    /// 1.0.0: drops the `version` field of result IPs.
    V1_0_0,
    /// 1.1.0: adds STATUS, GC and the new route/interface result fields.
    V1_1_0,
}

impl Version {
    /// Every supported version, oldest first (the order VERSION reports them in).
    pub const ALL: [Version; 5] = [
        Version::V0_3_0,
        Version::V0_3_1,
        Version::V0_4_0,
        Version::V1_0_0,
        Version::V1_1_0,
    ];

    /// The newest version, used when nothing else was asked for.
    pub const LATEST: Version = Version::V1_1_0;

    /// Parses a `cniVersion` string; anything but the five supported values is an
    /// `IncompatibleVersion` error naming the value.
    pub fn parse(s: &str) -> Result<Version> {
        Version::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                let supported: Vec<&str> = Version::ALL.iter().map(|v| v.as_str()).collect();
                CniError::new(
                    Code::IncompatibleVersion,
                    format!(
                        "cniVersion: {s:?} is not supported; expected one of {}",
                        supported.join(", ")
                    ),
                )
            })
    }

    /// The version as it appears on the wire, e.g. `"1.1.0"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Whether the CHECK command exists in this version (0.4.0 and later).
    pub fn supports_check(self) -> bool {
        self >= Version::V0_4_0
    }

    /// Whether the STATUS and GC commands exist in this version (1.1.0 and later).
    pub fn supports_status_and_gc(self) -> bool {
        self >= Version::V1_1_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VERSION command's output: `{"cniVersion", "supportedVersions"}`.
///
/// `cniVersion` echoes the requested version when it is one we support, otherwise (absent or
/// unknown) it is 1.1.0. VERSION must never fail: podman drops the whole network if it does.
pub fn version_answer(requested: Option<&str>) -> serde_json::Value {
    let version = requested
        .and_then(|r| Version::parse(r).ok())
        .unwrap_or(Version::LATEST);
    let supported: Vec<&str> = Version::ALL.iter().map(|v| v.as_str()).collect();
    serde_json::json!({
        "cniVersion": version.as_str(),
        "supportedVersions": supported,
    })
}

/// The `cniVersion` string of a stdin document, read leniently (no other validation).
///
/// Used where the full config may not parse but the reply should still carry the version the
/// runtime asked for: VERSION's answer and the error JSON.
pub fn requested_version(stdin: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(stdin).ok()?;
    value.get("cniVersion")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_the_five_supported_versions() {
        let parsed: Vec<Version> = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
            .iter()
            .map(|s| Version::parse(s).unwrap())
            .collect();
        assert_eq!(parsed, Version::ALL);
        for v in Version::ALL {
            assert_eq!(Version::parse(v.as_str()).unwrap(), v);
            assert_eq!(v.to_string(), v.as_str());
        }
    }

    #[test]
    fn unsupported_version_is_incompatible_and_lists_supported_ones() {
        for bad in ["0.2.0", "0.1.0", "1.2.0", "", "1.1", "v1.1.0"] {
            let e = Version::parse(bad).unwrap_err();
            assert_eq!(e.code, Code::IncompatibleVersion, "{bad}");
            assert!(e.msg.contains(&format!("{bad:?}")), "{}", e.msg);
            assert!(
                e.msg.contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
                "{}",
                e.msg
            );
        }
    }

    #[test]
    fn versions_are_ordered_and_gate_features() {
        assert!(Version::V0_3_0 < Version::V0_3_1);
        assert!(Version::V1_0_0 < Version::V1_1_0);
        assert!(!Version::V0_3_1.supports_check());
        assert!(Version::V0_4_0.supports_check());
        assert!(Version::V1_0_0.supports_check());
        assert!(!Version::V1_0_0.supports_status_and_gc());
        assert!(Version::V1_1_0.supports_status_and_gc());
    }

    #[test]
    fn version_answer_echoes_a_supported_request() {
        let v = version_answer(Some("1.0.0"));
        assert_eq!(
            v,
            serde_json::json!({
                "cniVersion": "1.0.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
            })
        );
    }

    #[test]
    fn version_answer_falls_back_to_latest_when_absent_or_unknown() {
        assert_eq!(version_answer(None)["cniVersion"], "1.1.0");
        assert_eq!(version_answer(Some("0.2.0"))["cniVersion"], "1.1.0");
        assert_eq!(version_answer(Some("garbage"))["cniVersion"], "1.1.0");
    }

    #[test]
    fn requested_version_reads_cni_version_leniently() {
        assert_eq!(
            requested_version(br#"{"cniVersion":"1.0.0"}"#).as_deref(),
            Some("1.0.0")
        );
        assert_eq!(requested_version(b"").as_deref(), None);
        assert_eq!(requested_version(b"{}").as_deref(), None);
        assert_eq!(requested_version(br#"{"cniVersion":1}"#).as_deref(), None);
    }
}
