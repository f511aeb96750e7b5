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

/// One UDP flow as conntrack lists it: where its first packet went, and who answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFlow {
    /// Original destination address.
    pub orig_dst: IpAddr,
    /// Original destination port.
    pub orig_dst_port: u16,
    /// Reply source: the address the flow was DNATed to (or the destination itself).
    pub reply_src: IpAddr,
}

/// Every UDP flow of the namespace.
pub fn list_udp() -> Result<Vec<UdpFlow>, ConntrackError> {
    let args = ["-L", "-p", "udp"];
    let out = Command::new("conntrack")
        .args(args)
        .output()
        .map_err(|e| ConntrackError {
            args: args.join(" "),
            message: format!("cannot run conntrack (install conntrack-tools): {e}"),
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(parse_flow)
        .collect())
}

/// `udp 17 29 src=A dst=B sport=1 dport=2 [UNREPLIED] src=C dst=D sport=3 dport=4 …`: the
/// first `dst`/`dport` are the original direction's, the second `src` the reply's.
fn parse_flow(line: &str) -> Option<UdpFlow> {
    let fields: Vec<(&str, &str)> = line
        .split_whitespace()
        .filter_map(|f| f.split_once('='))
        .collect();
    let nth = |key: &str, n: usize| {
        fields
            .iter()
            .filter(|(k, _)| *k == key)
            .nth(n)
            .map(|(_, v)| *v)
    };
    Some(UdpFlow {
        orig_dst: nth("dst", 0)?.parse().ok()?,
        orig_dst_port: nth("dport", 0)?.parse().ok()?,
        reply_src: nth("src", 1)?.parse().ok()?,
    })
}

/// Deletes the UDP flows to `dst` (any address when `None`) port `port` answered by
/// `reply_src`; returns how many were deleted.
pub fn delete_udp_flow(
    dst: Option<IpAddr>,
    port: u16,
    reply_src: IpAddr,
) -> Result<u64, ConntrackError> {
    let family = if reply_src.is_ipv4() { "ipv4" } else { "ipv6" };
    let mut args: Vec<String> = ["-D", "-p", "udp", "-f", family]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if let Some(dst) = dst {
        args.extend(["--orig-dst".to_owned(), dst.to_string()]);
    }
    args.extend([
        "--orig-port-dst".to_owned(),
        port.to_string(),
        "--reply-src".to_owned(),
        reply_src.to_string(),
    ]);
    run(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_read_from_conntrack_listings() {
        let line = "udp      17 28 src=10.244.1.3 dst=10.96.0.20 sport=43210 dport=53 src=10.244.2.4 dst=10.244.1.3 sport=53 dport=43210 mark=0 use=1";
        assert_eq!(
            parse_flow(line),
            Some(UdpFlow {
                orig_dst: "10.96.0.20".parse().unwrap(),
                orig_dst_port: 53,
                reply_src: "10.244.2.4".parse().unwrap(),
            })
        );
        let unreplied = "udp 17 29 src=1.1.1.1 dst=2.2.2.2 sport=5 dport=6 [UNREPLIED] src=2.2.2.2 dst=1.1.1.1 sport=6 dport=5 mark=0 use=1";
        assert_eq!(
            parse_flow(unreplied).map(|f| f.reply_src.to_string()),
            Some("2.2.2.2".to_owned())
        );
        assert_eq!(
            parse_flow("conntrack v1.4.7 (conntrack-tools): 1 flow entries"),
            None
        );
    }
}
