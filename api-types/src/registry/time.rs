//! Timestamps as the API carries them (RFC 3339) and upstream's
//! `duration.HumanDuration`, which prints every AGE column.

use serde_json::Value;

/// Seconds since the Unix epoch of an RFC 3339 timestamp such as
/// `2024-05-01T10:00:00Z` or `2024-05-01T10:00:00.123456+02:00`.
///
/// Fractions of a second are dropped (rounded towards the past). Returns
/// `None` for anything that is not a well-formed timestamp.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || rb[3] != b':' {
                return None;
            }
            let hh: i64 = rest.get(1..3)?.parse().ok()?;
            let mm: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rb[0] == b'-' { -1 } else { 1 };
            sign * (hh * 3600 + mm * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Seconds since the epoch of Go's zero `time.Time` (0001-01-01T00:00:00Z),
/// which `metav1.Time` treats as "unset".
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// Formats seconds since the epoch as RFC 3339 in UTC, as Go's
/// `time.Time.UTC().Format(time.RFC3339)` does.
pub(crate) fn format_rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The instant a JSON timestamp field names, or `None` when it is absent,
/// malformed or Go's zero time (all of which upstream prints as unset).
pub(crate) fn timestamp(v: Option<&Value>) -> Option<i64> {
    let secs = parse_rfc3339(v?.as_str()?)?;
    (secs != GO_ZERO_TIME).then_some(secs)
}

/// Upstream's `translateTimestampSince`: the age of `at` at `now`, or
/// `<unknown>` when the timestamp is unset.
pub(crate) fn since(at: Option<i64>, now: i64) -> String {
    match at {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// Upstream's `duration.HumanDuration` (k8s.io/apimachinery/pkg/util/duration),
/// the short form `kubectl get` prints in AGE columns: `"5s"`, `"9m59s"`,
/// `"10m"`, `"3h5m"`, `"2d3h"`, `"400d"`, `"2y1d"`, ...
///
/// Precision falls as the duration grows: seconds below 2 minutes, minutes
/// and seconds below 10 minutes, minutes below 3 hours, hours and minutes
/// below 8 hours, hours below 2 days, days and hours below 8 days, days
/// below 2 years, years and days below 8 years, then years. A duration of
/// -1 s still reads `"0s"` (clock skew); anything earlier is `"<invalid>"`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60;
    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;

    #[test]
    fn human_duration_follows_upstream_at_every_boundary() {
        let cases: &[(i64, &str)] = &[
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (2 * MIN, "2m"),
            (2 * MIN + 1, "2m1s"),
            (9 * MIN + 59, "9m59s"),
            (10 * MIN, "10m"),
            (10 * MIN + 30, "10m"),
            (3 * HOUR - 1, "179m"),
            (3 * HOUR, "3h"),
            (3 * HOUR + 5 * MIN, "3h5m"),
            (8 * HOUR - 1, "7h59m"),
            (8 * HOUR, "8h"),
            (48 * HOUR - 1, "47h"),
            (48 * HOUR, "2d"),
            (2 * DAY + 3 * HOUR, "2d3h"),
            (8 * DAY - 1, "7d23h"),
            (8 * DAY, "8d"),
            (400 * DAY, "400d"),
            (730 * DAY - 1, "729d"),
            (730 * DAY, "2y"),
            (731 * DAY, "2y1d"),
            (8 * 365 * DAY - 1, "7y364d"),
            (8 * 365 * DAY, "8y"),
            (20 * 365 * DAY + 40 * DAY, "20y"),
        ];
        for &(secs, want) in cases {
            assert_eq!(human_duration(secs), want, "human_duration({secs})");
        }
    }

    #[test]
    fn rfc3339_timestamps_parse_with_fractions_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-02-29T12:30:15Z"), Some(1_709_209_815));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:30:15.999999Z"),
            Some(1_709_209_815)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T14:30:15+02:00"),
            Some(1_709_209_815)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(parse_rfc3339("2024-02-29 12:30:15Z"), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2024-02-29T12:30:15"), None);
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        for secs in [0, 1_709_209_815, GO_ZERO_TIME, 951_782_400, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_rfc3339(secs)), Some(secs));
        }
        assert_eq!(format_rfc3339(GO_ZERO_TIME), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn go_zero_time_counts_as_unset() {
        let zero = Value::from("0001-01-01T00:00:00Z");
        assert_eq!(timestamp(Some(&zero)), None);
        assert_eq!(since(timestamp(Some(&zero)), 100), "<unknown>");
        assert_eq!(since(Some(40), 100), "60s");
        assert_eq!(timestamp(Some(&Value::Null)), None);
    }
}
