//! Go's text formats: the strings upstream agnhost prints (times, socket errors, JSON, host:port
//! errors), so e2e tests and people reading logs see the same thing from podnet's agnhost.

use std::io;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A wall-clock instant broken down in UTC. Containers run in UTC, so this is what Go's local time
/// shows there too.
struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    nanos: u32,
    /// 0 is Sunday, as Go counts.
    weekday: u64,
}

// === impl Utc ===

impl Utc {
    fn now() -> Self {
        // A clock before 1970 is a broken clock; showing the epoch is the least surprising answer.
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since_epoch.as_secs();
        let days = secs / 86_400;
        let (year, month, day) = civil_from_days(days);
        let in_day = secs % 86_400;
        Utc {
            year,
            month,
            day,
            hour: in_day / 3600,
            minute: in_day % 3600 / 60,
            second: in_day % 60,
            nanos: since_epoch.subsec_nanos(),
            // 1970-01-01 was a Thursday.
            weekday: (days + 4) % 7,
        }
    }
}

/// Converts days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (i64, u32, u32) {
    let z = i64::try_from(days).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are small by construction (1..=31, 1..=12).
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// The prefix Go's `log` package puts on each line: `2006/01/02 15:04:05`.
pub(crate) fn log_timestamp() -> String {
    let t = Utc::now();
    format!(
        "{}/{:02}/{:02} {:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// What Go's `time.Now().String()` prints, as netexec's `/` returns it:
/// `2006-01-02 15:04:05.999999999 +0000 UTC m=+0.000000001`, where `m=` is the monotonic clock
/// reading, which Go counts from process start and we count from `start`.
pub(crate) fn go_now(start: Instant) -> String {
    let t = Utc::now();
    let mut fraction = format!(".{:09}", t.nanos);
    // Go's ".999999999" layout drops trailing zeros, and the dot with them.
    while fraction.ends_with('0') {
        fraction.pop();
    }
    if fraction == "." {
        fraction.clear();
    }
    let monotonic = start.elapsed();
    format!(
        "{}-{:02}-{:02} {:02}:{:02}:{:02}{fraction} +0000 UTC m=+{}.{:09}",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        monotonic.as_secs(),
        monotonic.subsec_nanos()
    )
}

/// The `Date` header value: `Mon, 02 Jan 2006 15:04:05 GMT`.
pub(crate) fn http_date() -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = Utc::now();
    let weekday = usize::try_from(t.weekday).unwrap_or(0);
    let month = usize::try_from(t.month).unwrap_or(1);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS.get(weekday).unwrap_or(&"Sun"),
        t.day,
        MONTHS.get(month - 1).unwrap_or(&"Jan"),
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

/// An I/O error as Go's net package words it: `connection refused`, `i/o timeout`, without Rust's
/// capital letter and ` (os error 111)` suffix, since tests and people grep for Go's words.
pub(crate) fn go_error_text(err: &io::Error) -> String {
    let deadline_passed = err.kind() == io::ErrorKind::WouldBlock
        || (err.kind() == io::ErrorKind::TimedOut && err.raw_os_error().is_none());
    if deadline_passed {
        // std reports an expired socket timeout as EAGAIN or as its own TimedOut; Go says this.
        return "i/o timeout".to_string();
    }
    let text = err.to_string();
    let text = text
        .rfind(" (os error ")
        .map_or(text.as_str(), |end| &text[..end]);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Serialises `value` as Go's `json.Marshal` does: compact, and `<`, `>`, `&`, U+2028, U+2029
/// escaped, which Go does so the JSON is safe inside HTML. Go sorts map keys; serde_json keeps
/// them sorted too unless some crate in the build turns on its `preserve_order`, so callers insert
/// keys in sorted order to be safe either way.
pub(crate) fn go_json(value: &serde_json::Value) -> String {
    let compact = value.to_string();
    // Compact JSON has these characters only inside strings, so a textual swap is exact.
    let mut escaped = String::with_capacity(compact.len());
    for c in compact.chars() {
        match c {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Splits `host:port` or `[v6]:port` as Go's `net.SplitHostPort` does, with its error texts.
pub(crate) fn split_host_port(address: &str) -> Result<(String, String), String> {
    let fail = |reason: &str| Err(format!("address {address}: {reason}"));
    let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
        let Some((host, rest)) = bracketed.split_once(']') else {
            return fail("missing ']' in address");
        };
        match rest.strip_prefix(':') {
            Some(port) => (host, port),
            None if rest.is_empty() => return fail("missing port in address"),
            None => return fail("too many colons in address"),
        }
    } else {
        let Some((host, port)) = address.rsplit_once(':') else {
            return fail("missing port in address");
        };
        if host.contains(':') {
            return fail("too many colons in address");
        }
        (host, port)
    };
    if host.contains(['[', ']']) || port.contains(['[', ']']) {
        return fail("unexpected '[' or ']' in address");
    }
    Ok((host.to_string(), port.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_from_days_matches_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2000-02-29, a leap day in a century year.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn go_now_has_go_layout() {
        let now = go_now(Instant::now());
        assert!(now.contains(" +0000 UTC m=+0."), "{now}");
        assert_eq!(now.as_bytes()[4], b'-');
    }

    #[test]
    fn http_date_is_rfc1123() {
        let date = http_date();
        assert!(date.ends_with(" GMT"), "{date}");
        assert_eq!(date.len(), "Mon, 02 Jan 2006 15:04:05 GMT".len(), "{date}");
    }

    #[test]
    fn go_error_text_uses_go_words() {
        let refused = io::Error::from_raw_os_error(111);
        assert_eq!(go_error_text(&refused), "connection refused");
        let timeout = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(go_error_text(&timeout), "i/o timeout");
    }

    #[test]
    fn go_json_is_compact_and_escapes_html() {
        let value = serde_json::json!({"errors": ["x"], "responses": ["<a&b>"]});
        assert_eq!(
            go_json(&value),
            r#"{"errors":["x"],"responses":["\u003ca\u0026b\u003e"]}"#
        );
    }

    #[test]
    fn split_host_port_accepts_v4_v6_and_names() {
        assert_eq!(
            split_host_port("10.0.0.1:80"),
            Ok(("10.0.0.1".into(), "80".into()))
        );
        assert_eq!(split_host_port("[::1]:53"), Ok(("::1".into(), "53".into())));
        assert_eq!(
            split_host_port("svc.ns:8080"),
            Ok(("svc.ns".into(), "8080".into()))
        );
        assert_eq!(split_host_port(":80"), Ok(("".into(), "80".into())));
    }

    #[test]
    fn split_host_port_rejects_as_go_does() {
        assert_eq!(
            split_host_port("10.0.0.1"),
            Err("address 10.0.0.1: missing port in address".into())
        );
        assert_eq!(
            split_host_port("::1:53"),
            Err("address ::1:53: too many colons in address".into())
        );
    }
}
