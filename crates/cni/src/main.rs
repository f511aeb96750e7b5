//! The `podnet-cni` executable: the CNI protocol's process boundary.
//!
//! Reads the `CNI_*` environment and the config on stdin, runs the command, and prints the result
//! or the spec's error JSON on stdout (exit 1). Logs, if any, go to stderr.
//!
//! Invoked as `podnet-cni --reap-links` it is the detached process that finishes deleting
//! the veths a DEL retired (see `plugin::wire::Teardown`).

use std::io::{Read, Write};
use std::process::ExitCode;

use podnet_cni::error::{CniError, Code};
use podnet_cni::spec::{Env, requested_version};

fn main() -> ExitCode {
    use podnet_cni::plugin::wire::reaper;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(reaper::ARG) {
        // A detached reaper started by a DEL: nobody reads its output, so failures only set the
        // exit status.
        return match reaper::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    // The kernel's link to this process's own binary: exec'ing it starts the same file without
    // resolving its path first (a readlink ADD never needs), even if it was replaced on disk.
    reaper::install("/proc/self/exe".into());

    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    // Errors are reported in the version the config asked for, when it can be read at all.
    let version = requested_version(&stdin).unwrap_or_else(|| "1.1.0".to_owned());
    let outcome = match read {
        Err(e) => Err(CniError::new(
            Code::Io,
            format!("reading the network config from stdin: {e}"),
        )),
        Ok(_) => Env::from_process().and_then(|env| podnet_cni::plugin::run(&env, &stdin)),
    };
    let (json, code) = match outcome {
        Ok(Some(result)) => (Some(result), ExitCode::SUCCESS),
        Ok(None) => (None, ExitCode::SUCCESS),
        Err(e) => (Some(e.to_json(&version)), ExitCode::FAILURE),
    };
    if let Some(json) = json {
        let mut out = std::io::stdout().lock();
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        if writeln!(out, "{text}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    code
}
