//! Go-style command-line flags on top of clap.
//!
//! agnhost parses flags with Go's pflag, and upstream manifests rely on its spellings:
//! `--flag=value` and `--flag value`, `-flag` with one dash, booleans as `--tcp` or `--tcp=false`
//! (never `--tcp false`), Go durations such as `1m30s`, and klog's logging flags (`--v=2`) on every
//! subcommand. clap handles the first two; this module adds the rest.

use std::time::Duration;

use clap::{Arg, ArgAction, Command, Parser};

/// The exit code for a bad command line, as Go's flag package uses.
pub(crate) const USAGE_EXIT: i32 = 2;

/// klog's flags that take a value. agnhost registers klog's flags on its root command because
/// "some tests are passing logging related flags"; podnet logs plainly, so they are accepted and
/// ignored.
const KLOG_VALUE_FLAGS: [&str; 7] = [
    "v",
    "vmodule",
    "log_dir",
    "log_file",
    "log_file_max_size",
    "stderrthreshold",
    "log_backtrace_at",
];

/// klog's boolean flags, accepted and ignored like [`KLOG_VALUE_FLAGS`].
const KLOG_BOOL_FLAGS: [&str; 6] = [
    "logtostderr",
    "alsologtostderr",
    "add_dir_header",
    "skip_headers",
    "skip_log_headers",
    "one_output",
];

/// Parses `args` (starting with the subcommand name) into `T`. On a bad command line, prints
/// clap's message naming the bad flag or value and returns the exit code: 2, or 0 for `--help`.
pub(crate) fn parse<T: Parser>(args: &[String]) -> Result<T, i32> {
    let command = with_klog_flags(T::command());
    let args = normalise_single_dash(&command, args);
    let parsed = command
        .try_get_matches_from(args)
        .and_then(|matches| T::from_arg_matches(&matches));
    parsed.map_err(|err| {
        // Through the print macros rather than `err.print()`, so tests capture the message.
        if err.use_stderr() {
            eprint!("{}", err.render());
            USAGE_EXIT
        } else {
            print!("{}", err.render());
            0
        }
    })
}

/// Adds klog's flags, hidden, to a subcommand.
fn with_klog_flags(mut command: Command) -> Command {
    for name in KLOG_VALUE_FLAGS {
        command = command.arg(Arg::new(name).long(name).hide(true).action(ArgAction::Set));
    }
    for name in KLOG_BOOL_FLAGS {
        command = command.arg(
            Arg::new(name)
                .long(name)
                .hide(true)
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .value_parser(go_bool)
                .action(ArgAction::Set),
        );
    }
    command
}

/// Rewrites Go's single-dash long flags (`-http-port=8080`) to clap's `--http-port=8080`.
/// Only names the command knows are rewritten, so values such as `-1` pass through untouched;
/// nothing after `--` is rewritten.
fn normalise_single_dash(command: &Command, args: &[String]) -> Vec<String> {
    let longs: Vec<&str> = command.get_arguments().filter_map(Arg::get_long).collect();
    let mut flags_ended = false;
    let mut out = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        // The first arg is the subcommand name, which clap takes as the program name.
        if i > 0 && !flags_ended {
            if arg == "--" {
                flags_ended = true;
            } else if let Some(rest) = arg.strip_prefix('-')
                && !rest.starts_with('-')
            {
                let name = rest.split_once('=').map_or(rest, |(name, _)| name);
                if longs.contains(&name) {
                    out.push(format!("-{arg}"));
                    continue;
                }
            }
        }
        out.push(arg.clone());
    }
    out
}

/// Parses a boolean as Go's `strconv.ParseBool` does.
pub(crate) fn go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {value:?}: expected true or false")),
    }
}

/// Parses a Go duration (`time.ParseDuration`): `0`, or numbers with units such as `5s`, `1.5m`,
/// `300ms`, `1h2m3s`. Negative durations are refused: no flag of ours has a use for one.
pub(crate) fn go_duration(value: &str) -> Result<Duration, String> {
    let invalid = |why: &str| {
        Err(format!(
            "invalid duration {value:?}: {why} (expected a Go duration such as 5s, 300ms or 1m30s)"
        ))
    };
    let unsigned = value.strip_prefix('+').unwrap_or(value);
    if unsigned == "0" {
        return Ok(Duration::ZERO);
    }
    if unsigned.starts_with('-') {
        return invalid("negative durations are not supported");
    }
    if unsigned.is_empty() {
        return invalid("empty");
    }
    let mut total: u128 = 0;
    let mut rest = unsigned;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return invalid("missing unit"),
            _ => return invalid(&format!("unknown unit {unit:?}")),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return invalid(&format!("bad number {number:?}"));
        }
        let parse = |digits: &str| -> Result<u128, String> {
            if digits.is_empty() {
                Ok(0)
            } else {
                digits.parse().map_err(|_| format!("bad number {number:?}"))
            }
        };
        let (whole, fraction_value) = match (parse(whole), parse(fraction)) {
            (Ok(whole), Ok(fraction)) => (whole, fraction),
            (Err(why), _) | (_, Err(why)) => return invalid(&why),
        };
        let scale = u32::try_from(fraction.len())
            .ok()
            .and_then(|len| 10u128.checked_pow(len));
        let Some(scale) = scale else {
            return invalid("too many decimals");
        };
        let part = whole
            .checked_mul(unit_nanos)
            .and_then(|nanos| nanos.checked_add(fraction_value * unit_nanos / scale));
        match part.and_then(|part| total.checked_add(part)) {
            // Go durations are int64 nanoseconds.
            Some(sum) if sum <= i64::MAX as u128 => total = sum,
            _ => return invalid("overflows 292 years"),
        }
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).unwrap_or(u64::MAX);
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// A port that `-1` turns off, as netexec's `--udp-port` and `--sctp-port` take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PortOrOff(pub(crate) Option<u16>);

/// Parses a [`PortOrOff`]: `-1`, or a port number.
pub(crate) fn port_or_off(value: &str) -> Result<PortOrOff, String> {
    let bad = || format!("invalid port {value:?}: expected -1 (off) or 0..=65535");
    match value.parse::<i64>() {
        Ok(-1) => Ok(PortOrOff(None)),
        Ok(port) => u16::try_from(port)
            .map(|port| PortOrOff(Some(port)))
            .map_err(|_| bad()),
        Err(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests;
