use super::*;

/// A command shaped like agnhost's: a Go boolean, an int, a port that -1 turns off.
#[derive(Parser, Debug)]
#[command(name = "demo", args_override_self = true)]
struct Demo {
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    tcp: bool,
    #[arg(long, default_value_t = 9376)]
    port: u16,
    #[arg(long, default_value = "8081", value_parser = port_or_off, allow_negative_numbers = true)]
    udp_port: PortOrOff,
    #[arg(long, default_value = "0", value_parser = go_duration)]
    timeout: Duration,
}

fn demo(args: &[&str]) -> Result<Demo, i32> {
    let args: Vec<String> = std::iter::once("demo")
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    parse(&args)
}

#[test]
fn accepts_equals_space_and_single_dash_forms() {
    for form in [
        &["--port=80"][..],
        &["--port", "80"],
        &["-port=80"],
        &["-port", "80"],
    ] {
        assert_eq!(demo(form).map(|d| d.port), Ok(80), "{form:?}");
    }
}

#[test]
fn booleans_take_go_spellings_only_with_equals() {
    assert!(!demo(&[]).map(|d| d.tcp).unwrap_or(true));
    assert_eq!(demo(&["--tcp"]).map(|d| d.tcp), Ok(true));
    assert_eq!(demo(&["-tcp=True"]).map(|d| d.tcp), Ok(true));
    assert_eq!(demo(&["--tcp=0"]).map(|d| d.tcp), Ok(false));
    // As in Go, `--tcp false` leaves "false" as a stray argument.
    assert_eq!(demo(&["--tcp", "false"]).map(|d| d.tcp), Err(USAGE_EXIT));
    assert_eq!(demo(&["--tcp=yes"]).map(|d| d.tcp), Err(USAGE_EXIT));
}

#[test]
fn minus_one_turns_a_port_off_in_both_forms() {
    assert_eq!(demo(&["--udp-port", "-1"]).map(|d| d.udp_port.0), Ok(None));
    assert_eq!(demo(&["-udp-port=-1"]).map(|d| d.udp_port.0), Ok(None));
    assert_eq!(demo(&[]).map(|d| d.udp_port.0), Ok(Some(8081)));
    assert_eq!(
        demo(&["--udp-port=-2"]).map(|d| d.udp_port.0),
        Err(USAGE_EXIT)
    );
}

#[test]
fn last_repeat_wins_as_in_go() {
    assert_eq!(demo(&["--port=1", "--port=2"]).map(|d| d.port), Ok(2));
}

#[test]
fn klog_flags_are_accepted_and_ignored() {
    assert_eq!(
        demo(&[
            "--v=4",
            "-logtostderr",
            "--alsologtostderr=false",
            "--port=7"
        ])
        .map(|d| d.port),
        Ok(7)
    );
}

#[test]
fn unknown_flags_and_bad_values_exit_2() {
    assert_eq!(demo(&["--nope"]).map(|d| d.port), Err(USAGE_EXIT));
    assert_eq!(demo(&["-nope"]).map(|d| d.port), Err(USAGE_EXIT));
    assert_eq!(demo(&["--port=70000"]).map(|d| d.port), Err(USAGE_EXIT));
}

#[test]
fn go_durations_parse() {
    let ms = Duration::from_millis;
    assert_eq!(go_duration("0"), Ok(Duration::ZERO));
    assert_eq!(go_duration("5s"), Ok(ms(5_000)));
    assert_eq!(go_duration("300ms"), Ok(ms(300)));
    assert_eq!(go_duration("1m30s"), Ok(ms(90_000)));
    assert_eq!(go_duration("1.5h"), Ok(ms(5_400_000)));
    assert_eq!(go_duration(".5s"), Ok(ms(500)));
    assert_eq!(go_duration("10us"), Ok(Duration::from_micros(10)));
    assert_eq!(demo(&["--timeout=2s"]).map(|d| d.timeout), Ok(ms(2_000)));
}

#[test]
fn bad_go_durations_name_the_value() {
    for bad in ["", "5", "s", "5x", "-1s", "1..5s", "9999999999h"] {
        let err = go_duration(bad).err().unwrap_or_default();
        assert!(err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
    }
}
