//! podnet's own agnhost: the subcommands of Kubernetes' e2e test image
//! (registry.k8s.io/e2e-test-images/agnhost) that the network e2e tests use, so that pod manifests
//! written for upstream tests run unchanged in podnet's lab.
//!
//! Each subcommand lives in its own module and matches upstream's flags, defaults, wire output and
//! exit codes; where it cannot (no SCTP, no signal handlers with std only) its module says so.
//! Servers are built as `start` functions that bind, return the bound addresses and serve on
//! background threads, so tests can drive them on loopback with ephemeral ports; `run` calls them
//! and then blocks. Underneath: `flags` (Go-style flags on clap), `http` (a small HTTP/1.1 server
//! and client), `sock` (binding and addresses as Go shows them) and `compat` (Go's text formats).

/// Logs one line to stderr the way Go's `log` package does, so logs read like upstream's.
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("{} {}", $crate::compat::log_timestamp(), format_args!($($arg)*))
    };
}

mod compat;
mod connect;
mod flags;
mod http;
mod netexec;
mod pause;
mod serve_hostname;
mod sock;
#[cfg(test)]
mod testutil;

/// The subcommands podnet's agnhost implements, as upstream names them.
const SUBCOMMANDS: [&str; 4] = ["connect", "netexec", "pause", "serve-hostname"];

/// Runs one agnhost subcommand. `args` are the container's args, starting with the subcommand
/// name (e.g. `["netexec", "--http-port=8080", "--udp-port=8081"]`). Returns the process exit code:
/// the subcommand's own, or 2 for an unknown subcommand or a bad flag. Servers (`netexec`,
/// `serve-hostname`) and `pause` only return when asked to exit (netexec's `/exit`, `/shutdown`)
/// or when they cannot start.
pub fn run(args: &[String]) -> i32 {
    let Some(name) = args.first() else {
        eprintln!(
            "agnhost: missing subcommand: expected one of {}",
            SUBCOMMANDS.join(", ")
        );
        return flags::USAGE_EXIT;
    };
    match name.as_str() {
        "connect" => connect::run(args),
        "netexec" => netexec::run(args),
        "pause" => pause::run(args),
        "serve-hostname" => serve_hostname::run(args),
        other => {
            eprintln!(
                "agnhost: unknown subcommand {other:?}: podnet's agnhost implements {}",
                SUBCOMMANDS.join(", ")
            );
            flags::USAGE_EXIT
        }
    }
}

/// Blocks the calling thread for good: what a server's `run` does once its threads serve, since
/// upstream's only way out is a signal, whose default action ends the process.
fn block_forever() -> ! {
    loop {
        // park() may return spuriously; nothing ever unparks this thread on purpose.
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_subcommand_exits_2() {
        assert_eq!(run(&args(&["porter"])), 2);
    }

    #[test]
    fn missing_subcommand_exits_2() {
        assert_eq!(run(&[]), 2);
    }
}
