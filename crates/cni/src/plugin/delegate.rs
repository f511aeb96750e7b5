//! Delegated IPAM: when `ipam.type` names another plugin (`dhcp`, `static`, `whereabouts`, …),
//! podnet-cni runs it as the spec says a main plugin must: found in `CNI_PATH`, the same
//! environment, the whole network config on stdin, its result on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::{CniError, Code, Result};
use crate::spec::{CniResult, Env};

/// Finds `plugin` in `CNI_PATH`.
fn find(env: &Env, plugin: &str) -> Result<PathBuf> {
    if plugin.contains('/') || plugin.is_empty() {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!("ipam.type: {plugin:?} is not a plugin name"),
        ));
    }
    env.path
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                format!(
                    "ipam.type: plugin {plugin:?} not found in CNI_PATH ({})",
                    env.path
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            )
        })
}

/// Runs the IPAM plugin `plugin` for `command` (`ADD`, `DEL`, `CHECK`, `GC`) with this
/// invocation's environment and `conf` on stdin; returns its result (ADD) or `None`. Its error
/// comes back as it reported it (code and message), prefixed with its name.
pub(super) fn run(
    env: &Env,
    plugin: &str,
    command: &str,
    conf: &Value,
) -> Result<Option<CniResult>> {
    let binary = find(env, plugin)?;
    let mut cmd = Command::new(&binary);
    cmd.env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| {
        CniError::new(
            Code::Io,
            format!("running IPAM plugin {}: {e}", binary.display()),
        )
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(conf.to_string().as_bytes()).map_err(|e| {
            CniError::new(Code::Io, format!("writing to IPAM plugin {plugin}: {e}"))
        })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(Code::Io, format!("waiting for IPAM plugin {plugin}: {e}")))?;
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        let (code, msg) = parsed
            .as_ref()
            .map(|v| {
                (
                    v["code"].as_u64().unwrap_or(999),
                    v["msg"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .unwrap_or((999, String::from_utf8_lossy(&out.stdout).into_owned()));
        return Err(CniError::new(
            Code::from_number(code),
            format!("IPAM plugin {plugin} failed {command}: {msg}"),
        ));
    }
    match (command, parsed) {
        ("ADD", Some(v)) => CniResult::from_json(&v).map(Some),
        ("ADD", None) => Err(CniError::new(
            Code::Decode,
            format!("IPAM plugin {plugin} printed no result for ADD"),
        )),
        _ => Ok(None),
    }
}
