//! The policy gate of ADD: with `policyGate` set, a Kubernetes pod's new addresses go to the node
//! agent (`POST /policy/attach`), and ADD returns only once the agent reports the pod's network
//! policy in the kernel (`GET /policy/programmed`). The runtime starts containers after ADD, so
//! a pod that policies isolate never runs, not even for a millisecond, without its isolation.
//!
//! If the agent does not confirm in time, ADD fails with code 11 (try again later) and is
//! rolled back: failing closed, where an unprotected container would be the alternative.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::error::{CniError, Code, Result};
use crate::spec::Env;

/// How long ADD waits for the agent.
const WAIT: Duration = Duration::from_secs(10);
/// How often it asks.
const POLL: Duration = Duration::from_millis(10);
/// One HTTP exchange with the agent on the node's loopback.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Reports `ips` for the pod named in `CNI_ARGS` and waits until the agent programmed its
/// policy. Containers that are not Kubernetes pods (no `K8S_POD_NAME`) pass at once.
pub(crate) fn wait_for_policy(env: &Env, agent: SocketAddr, ips: &[IpAddr]) -> Result<()> {
    let (Some(namespace), Some(name)) = (
        env.args.get("K8S_POD_NAMESPACE"),
        env.args.get("K8S_POD_NAME"),
    ) else {
        return Ok(());
    };
    if ips.is_empty() {
        return Ok(());
    }
    for (key, value) in [("K8S_POD_NAMESPACE", namespace), ("K8S_POD_NAME", name)] {
        if !is_object_name(value) {
            return Err(CniError::new(
                Code::InvalidEnvironment,
                format!("CNI_ARGS {key}: {value:?} is not a Kubernetes object name"),
            ));
        }
    }
    let query: String = std::iter::once(format!("namespace={namespace}&name={name}"))
        .chain(ips.iter().map(|ip| format!("ip={ip}")))
        .collect::<Vec<_>>()
        .join("&");
    let deadline = Instant::now() + WAIT;
    let mut attached = false;
    let mut last = String::new();
    while Instant::now() < deadline {
        if !attached {
            match exchange(agent, "POST", &format!("/policy/attach?{query}")) {
                Ok((202, _)) => attached = true,
                Ok((status, body)) => last = format!("attach answered {status}: {}", body.trim()),
                Err(e) => last = format!("cannot reach the agent at {agent}: {e}"),
            }
        }
        if attached && programmed(agent, ips, &format!("{namespace}/{name}"), &mut last) {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
    Err(CniError::new(
        Code::TryAgainLater,
        format!(
            "policyGate: the node agent did not confirm the network policy of pod {namespace}/{name} within {}s ({last}); the pod is not started unprotected",
            WAIT.as_secs()
        ),
    ))
}

/// Whether the agent reports every one of `ips` programmed, for `pod`.
fn programmed(agent: SocketAddr, ips: &[IpAddr], pod: &str, last: &mut String) -> bool {
    ips.iter().all(
        |ip| match exchange(agent, "GET", &format!("/policy/programmed?ip={ip}")) {
            Ok((200, body)) if body.trim() == pod => true,
            Ok((status, body)) => {
                *last = format!("{ip}: {status} {}", body.trim());
                false
            }
            Err(e) => {
                *last = format!("cannot reach the agent at {agent}: {e}");
                false
            }
        },
    )
}

/// One HTTP/1.1 request; the status code and the body.
fn exchange(agent: SocketAddr, method: &str, target: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&agent, EXCHANGE_TIMEOUT)?;
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    stream.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {agent}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.take(64 * 1024).read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A DNS-1123 subdomain, as Kubernetes names namespaces and pods: safe in a query string.
fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    fn env(args: &str) -> Env {
        Env::from_lookup(|k| match k {
            "CNI_COMMAND" => Some("ADD".into()),
            "CNI_CONTAINERID" => Some("c1".into()),
            "CNI_NETNS" => Some("/var/run/netns/x".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_ARGS" => Some(args.into()),
            _ => None,
        })
        .unwrap()
    }

    /// A fake agent: programs the pod after `after` polls; records the request lines.
    fn agent(after: usize, pod: &'static str) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut polls = 0;
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut header = String::new();
                while reader.read_line(&mut header).unwrap() > 2 {
                    header.clear();
                }
                log.lock().unwrap().push(line.trim().to_owned());
                let answer = if line.starts_with("POST /policy/attach") {
                    "HTTP/1.1 202 Accepted\r\n\r\nattached\n".to_owned()
                } else {
                    polls += 1;
                    if polls > after {
                        format!("HTTP/1.1 200 OK\r\n\r\n{pod}\n")
                    } else {
                        "HTTP/1.1 404 Not Found\r\n\r\nnot yet\n".to_owned()
                    }
                };
                let mut stream = stream;
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        (addr, seen)
    }

    #[test]
    fn add_attaches_the_pod_and_waits_until_its_policy_is_programmed() {
        let (addr, seen) = agent(3, "x/a");
        let env = env("K8S_POD_NAMESPACE=x;K8S_POD_NAME=a");
        wait_for_policy(&env, addr, &["10.244.1.5".parse().unwrap()]).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0],
            "POST /policy/attach?namespace=x&name=a&ip=10.244.1.5 HTTP/1.1"
        );
        assert_eq!(
            seen.iter()
                .filter(|l| l.starts_with("GET /policy/programmed?ip=10.244.1.5"))
                .count(),
            4
        );
    }

    #[test]
    fn a_non_kubernetes_container_passes_without_asking() {
        // Nothing listens there: asking would fail.
        let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
        wait_for_policy(&env(""), nowhere, &["10.244.1.5".parse().unwrap()]).unwrap();
    }

    #[test]
    fn a_bad_pod_name_is_refused_before_anything_is_sent() {
        let (addr, seen) = agent(0, "x/a");
        let env = env("K8S_POD_NAMESPACE=x;K8S_POD_NAME=a&ip=1.2.3.4");
        let err = wait_for_policy(&env, addr, &["10.244.1.5".parse().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("K8S_POD_NAME"), "{err}");
        assert!(seen.lock().unwrap().is_empty());
    }
}
