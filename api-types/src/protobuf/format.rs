//! How Go's encoding/json prints the values protobuf carries as numbers or bytes:
//! `metav1.Time`, `metav1.MicroTime`, `time.Duration` and `[]byte`.

/// `metav1.Time` in JSON: RFC 3339 in UTC, whole seconds ("2006-01-02T15:04:05Z").
/// `None` outside years 0–9999, which Go refuses to print as well.
pub(super) fn rfc3339(seconds: i64) -> Option<String> {
    let (date, secs_of_day) = civil(seconds)?;
    Some(format!("{date}T{}Z", clock(secs_of_day)))
}

/// `metav1.MicroTime` in JSON: RFC 3339 in UTC with six fractional digits.
/// Like Go's `time.Unix`, `nanos` outside 0..1e9 carries into the seconds.
pub(super) fn rfc3339_micro(seconds: i64, nanos: i64) -> Option<String> {
    let seconds = seconds.checked_add(nanos.div_euclid(1_000_000_000))?;
    let micros = nanos.rem_euclid(1_000_000_000) / 1_000;
    let (date, secs_of_day) = civil(seconds)?;
    Some(format!("{date}T{}.{micros:06}Z", clock(secs_of_day)))
}

/// Go's `time.Duration.String()`: "1h0m0s", "5m0s", "1.5s", "300ms", "2µs", "0s".
pub(super) fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let mut u = nanos.unsigned_abs();
    let body = if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let frac = fraction(&mut u, prec);
        format!("{u}{frac}{unit}")
    } else {
        let frac = fraction(&mut u, 9);
        let (secs, minutes) = (u % 60, u / 60);
        match (minutes / 60, minutes % 60) {
            (0, 0) => format!("{secs}{frac}s"),
            (0, m) => format!("{m}m{secs}{frac}s"),
            (h, m) => format!("{h}h{m}m{secs}{frac}s"),
        }
    };
    if nanos < 0 { format!("-{body}") } else { body }
}

/// Go's `encoding/base64.StdEncoding`, as encoding/json prints `[]byte`.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Splits `v` into `v / 10^prec` (left in `v`) and its fraction as ".123" without
/// trailing zeros ("" when the fraction is zero), like Go's `fmtFrac`.
fn fraction(v: &mut u64, prec: u32) -> String {
    let div = 10u64.pow(prec);
    let frac = *v % div;
    *v /= div;
    if frac == 0 {
        return String::new();
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    format!(".{}", digits.trim_end_matches('0'))
}

/// The date "YYYY-MM-DD" of a Unix time and the seconds into that day.
fn civil(seconds: i64) -> Option<(String, i64)> {
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some((format!("{year:04}-{month:02}-{day:02}"), secs_of_day))
}

fn clock(secs_of_day: i64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_go_prints_them() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(1_136_214_245).as_deref(),
            Some("2006-01-02T15:04:05Z")
        );
        assert_eq!(
            rfc3339(951_782_400).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(rfc3339(-1).as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(
            rfc3339(253_402_300_799).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(rfc3339(253_402_300_800), None);
        assert_eq!(
            rfc3339(-62_167_219_200).as_deref(),
            Some("0000-01-01T00:00:00Z")
        );
        assert_eq!(rfc3339(-62_167_219_201), None);
        assert_eq!(rfc3339(i64::MIN), None);
        assert_eq!(
            rfc3339_micro(1_136_214_245, 123_456_789).as_deref(),
            Some("2006-01-02T15:04:05.123456Z")
        );
        assert_eq!(
            rfc3339_micro(1_136_214_245, 0).as_deref(),
            Some("2006-01-02T15:04:05.000000Z")
        );
        assert_eq!(
            rfc3339_micro(1_136_214_245, -1_000).as_deref(),
            Some("2006-01-02T15:04:04.999999Z")
        );
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (300_000_000_000, "5m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (4_000_000_000_000, "1h6m40s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for &(nanos, want) in cases {
            assert_eq!(go_duration(nanos), want, "{nanos}ns");
        }
    }

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0x01]), "//4AAQ==");
    }
}
