//! Conntrack entries: deleting the stale ones when where a port leads changes.
//!
//! A UDP "connection" is only an entry with a timeout that every packet refreshes, so a client
//! sending to a port whose destination moved (a hostPort now mapped to a new pod, a Service whose
//! endpoint went away) keeps following the old entry for as long as it keeps sending. Deleting
//! the entries makes its next packet take the new path. Uses the `conntrack` tool
//! (conntrack-tools), in the calling thread's network namespace.

use std::net::IpAddr;
use std::process::Command;

/// A failure to run `conntrack`.
#[derive(Debug, thiserror::Error)]
#[error("conntrack {args}: {message}")]
pub struct ConntrackError {
    args: String,
    message: String,
}

/// Deletes the UDP entries to destination port `port` (and, if given, destination `dst`);
/// returns how many were deleted.
pub fn delete_udp(dst: Option<IpAddr>, port: u16) -> Result<u64, ConntrackError> {
    let mut args = vec!["-D".to_owned(), "-p".to_owned(), "udp".to_owned()];
    if let Some(ip) = dst {
        args.push("-f".to_owned());
        args.push(if ip.is_ipv4() { "ipv4" } else { "ipv6" }.to_owned());
        args.push("--orig-dst".to_owned());
        args.push(ip.to_string());
    }
    args.push("--orig-port-dst".to_owned());
    args.push(port.to_string());
    run(&args)
}

/// Deletes the UDP entries whose reply comes from `endpoint` (entries DNATed to it); returns how
/// many were deleted.
pub fn delete_udp_to_endpoint(endpoint: IpAddr) -> Result<u64, ConntrackError> {
    let family = if endpoint.is_ipv4() { "ipv4" } else { "ipv6" };
    run(&[
        "-D".to_owned(),
        "-p".to_owned(),
        "udp".to_owned(),
        "-f".to_owned(),
        family.to_owned(),
        "--reply-src".to_owned(),
        endpoint.to_string(),
    ])
}

fn run(args: &[String]) -> Result<u64, ConntrackError> {
    let fail = |message: String| ConntrackError {
        args: args.join(" "),
        message,
    };
    let out = Command::new("conntrack").args(args).output().map_err(|e| {
        fail(format!(
            "cannot run conntrack (install conntrack-tools): {e}"
        ))
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted." — exit status 1
    // when there were none, which is not a failure here.
    let deleted = stderr
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(3)
        .find(|w| w[1] == "flow" && w[2] == "entries")
        .and_then(|w| w[0].parse().ok());
    match deleted {
        Some(n) => Ok(n),
        None if out.status.success() => Ok(0),
        None => Err(fail(stderr.trim().to_owned())),
    }
}
