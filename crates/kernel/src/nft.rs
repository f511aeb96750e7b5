//! nftables through the `nft` binary: one script, one atomic transaction.
//!
//! We feed `nft -f -` text we render ourselves (as kube-proxy's knftables does): the text form is
//! the best-documented interface, it can declare verdict maps, and the kernel applies a whole
//! script as one transaction, so a failed script changes nothing.

use std::io::{self, Write};
use std::process::{Command, Stdio};

/// A failed `nft` run: what nft printed, with the script for context.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be started (not installed?).
    #[error("running nft: {0} (is the nftables package installed?)")]
    Spawn(io::Error),
    /// `nft` rejected the script; the kernel state is unchanged.
    #[error("nft rejected the ruleset: {stderr}")]
    Rejected {
        /// nft's own message.
        stderr: String,
    },
}

/// Applies `script` atomically with `nft -f -` in the calling thread's network namespace.
pub fn apply(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Rejected {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Lists one table as nft's JSON (`nft -j list table FAMILY NAME`); `None` if it does not exist.
pub fn list_table_json(family: &str, name: &str) -> Result<Option<String>, NftError> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", family, name])
        .stderr(Stdio::piped())
        .output()
        .map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file or directory") {
            Ok(None)
        } else {
            Err(NftError::Rejected {
                stderr: stderr.trim().to_owned(),
            })
        }
    }
}

/// Runs `nft list ARGS` (e.g. `["map", "inet", "t", "m"]`) and returns its text; empty when the
/// object does not exist.
pub fn list(args: &[&str]) -> Result<String, NftError> {
    let out = Command::new("nft")
        .arg("list")
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file or directory") {
            Ok(String::new())
        } else {
            Err(NftError::Rejected {
                stderr: stderr.trim().to_owned(),
            })
        }
    }
}
