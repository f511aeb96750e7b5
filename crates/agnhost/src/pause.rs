//! `pause`: prints "Paused" and blocks, keeping a container alive, as upstream's `pause.go`.
//!
//! Difference from upstream: upstream catches SIGINT and SIGTERM and exits 1 and 2 respectively.
//! std has no signal handlers, so here their default action ends the process (killed by the
//! signal). Note that a process that is PID 1 of its PID namespace ignores signals it has no
//! handler for, so whoever runs `pause` as PID 1 must install handlers (or use SIGKILL).

use std::io::Write as _;

use clap::Parser;

use crate::flags;

/// `pause` takes no flags or arguments (only klog's, as every subcommand).
#[derive(Parser, Debug)]
#[command(name = "pause")]
struct Flags {}

/// Runs `pause`; returns only on a bad command line.
pub(crate) fn run(args: &[String]) -> i32 {
    if let Err(code) = flags::parse::<Flags>(args) {
        return code;
    }
    println!("Paused");
    // Whoever watches the logs waits for this line; a closed stdout is no reason not to pause.
    let _ = std::io::stdout().flush();
    crate::block_forever()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use crate::testutil::args;

    #[test]
    fn pause_blocks() {
        let (done_tx, done) = mpsc::channel();
        // The thread stays parked until the test binary exits; that is the behaviour under test.
        thread::spawn(move || done_tx.send(crate::run(&args(&["pause", "--v=1"]))));
        assert_eq!(
            done.recv_timeout(Duration::from_millis(300)),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
    }

    #[test]
    fn pause_with_arguments_exits_2() {
        assert_eq!(crate::run(&args(&["pause", "forever"])), 2);
        assert_eq!(crate::run(&args(&["pause", "--quiet"])), 2);
    }
}
