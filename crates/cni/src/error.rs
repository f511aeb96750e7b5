//! The CNI error result: a well-known code, a message that names what was wrong, and details.
//!
//! Every failure leaves the plugin as `{"cniVersion", "code", "msg", "details"}` on stdout with a
//! non-zero exit (SPEC.md "Error"). Codes 0–99 are the spec's well-known ones; 100+ are ours.

use serde::Serialize;

/// A well-known CNI error code (SPEC.md, "Error" table) or one of podnet's own (100+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u32")]
pub enum Code {
    /// 1: the requested `cniVersion` is not one this plugin speaks.
    IncompatibleVersion,
    /// 2: a field in the network config has a value the plugin does not support.
    UnsupportedField,
    /// 3: the container (its network namespace) is unknown or does not exist.
    UnknownContainer,
    /// 4: a required `CNI_*` environment variable is missing or invalid.
    InvalidEnvironment,
    /// 5: reading stdin or another I/O failure.
    Io,
    /// 6: the input could not be decoded (not JSON, wrong types).
    Decode,
    /// 7: the network config is invalid (bad CIDR, range outside subnet, …).
    InvalidConfig,
    /// 8: the netns given is the plugin's own (the skel library's `ErrInvalidNetNS`).
    InvalidNetns,
    /// 11: a transient failure; the runtime should try again later.
    TryAgainLater,
    /// 50: STATUS: the plugin cannot serve ADDs now.
    NotAvailable,
    /// 51: STATUS: not available, and existing containers may have limited connectivity.
    NotAvailableLimited,
    /// 100: podnet: a kernel operation (netlink, sysctl, nft) failed.
    Kernel,
    /// Another plugin's code, passed on as it reported it (a delegated IPAM plugin's error).
    Other(u32),
}

impl Code {
    /// The code for a number a plugin reported.
    pub fn from_number(n: u64) -> Code {
        match n {
            1 => Code::IncompatibleVersion,
            2 => Code::UnsupportedField,
            3 => Code::UnknownContainer,
            4 => Code::InvalidEnvironment,
            5 => Code::Io,
            6 => Code::Decode,
            7 => Code::InvalidConfig,
            8 => Code::InvalidNetns,
            11 => Code::TryAgainLater,
            50 => Code::NotAvailable,
            51 => Code::NotAvailableLimited,
            100 => Code::Kernel,
            n => Code::Other(u32::try_from(n).unwrap_or(999)),
        }
    }
}

impl From<Code> for u32 {
    fn from(code: Code) -> u32 {
        match code {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnvironment => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::InvalidNetns => 8,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::NotAvailableLimited => 51,
            Code::Kernel => 100,
            Code::Other(n) => n,
        }
    }
}

/// A failure to report to the runtime. `msg` names the offending field or variable and its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    /// The CNI error code.
    pub code: Code,
    /// One line for a human: what was wrong, with the field and value.
    pub msg: String,
    /// Longer context (an underlying OS error, a list of errors), may be empty.
    pub details: String,
}

impl CniError {
    /// An error with a code and a message, no details.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds details (for example the underlying OS error).
    pub fn with_details(mut self, details: impl ToString) -> Self {
        self.details = details.to_string();
        self
    }

    /// The spec's error JSON for `cni_version` (the version the config asked for).
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut v = serde_json::json!({
            "cniVersion": cni_version,
            "code": u32::from(self.code),
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = serde_json::Value::String(self.details.clone());
        }
        v
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = CniError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_spec_fields_and_numeric_code() {
        let e = CniError::new(
            Code::InvalidConfig,
            "ipam.ranges[0][0].subnet: \"10.0.0.0/33\" is not a CIDR",
        )
        .with_details("invalid prefix length");
        let j = e.to_json("1.1.0");
        assert_eq!(j["cniVersion"], "1.1.0");
        assert_eq!(j["code"], 7);
        assert_eq!(
            j["msg"],
            "ipam.ranges[0][0].subnet: \"10.0.0.0/33\" is not a CIDR"
        );
        assert_eq!(j["details"], "invalid prefix length");
    }

    #[test]
    fn error_json_omits_empty_details() {
        let j = CniError::new(Code::TryAgainLater, "busy").to_json("0.4.0");
        assert!(j.get("details").is_none());
        assert_eq!(j["code"], 11);
    }

    #[test]
    fn codes_match_the_spec_table() {
        let table = [
            (Code::IncompatibleVersion, 1),
            (Code::UnsupportedField, 2),
            (Code::UnknownContainer, 3),
            (Code::InvalidEnvironment, 4),
            (Code::Io, 5),
            (Code::Decode, 6),
            (Code::InvalidConfig, 7),
            (Code::InvalidNetns, 8),
            (Code::TryAgainLater, 11),
            (Code::NotAvailable, 50),
            (Code::NotAvailableLimited, 51),
        ];
        for (code, n) in table {
            assert_eq!(u32::from(code), n, "{code:?}");
        }
    }
}
