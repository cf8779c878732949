//! Go's duration syntax (`time.ParseDuration`), which upstream's flags,
//! configuration files and API fields (CronJob time zones aside, `metav1.Duration`)
//! all use: one parser for every component.

use std::time::Duration;

/// Go's `time.ParseDuration` (without a sign): `1h30m`, `90s`, `1.5h`.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let quoted = crate::validation::go_quote(s);
    let invalid = || format!("time: invalid duration {quoted}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if number_len == 0 {
            return Err(invalid());
        }
        let value: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration {quoted}")),
            other => {
                return Err(format!(
                    "time: unknown unit {} in duration {quoted}",
                    crate::validation::go_quote(other)
                ));
            }
        };
        total += value * scale;
    }
    Ok(Duration::from_secs_f64(total))
}

/// A duration given on a command line or in a configuration file: Go's
/// syntax, surrounding spaces ignored, an optional leading `+`; negative
/// durations are refused.
pub fn parse_flag_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    parse_go_duration(s.strip_prefix('+').unwrap_or(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_go_duration("5m0s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_go_duration("15"),
            Err("time: missing unit in duration \"15\"".into())
        );
        assert_eq!(
            parse_go_duration("3d"),
            Err("time: unknown unit \"d\" in duration \"3d\"".into())
        );
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn flag_durations() {
        assert_eq!(parse_flag_duration(" +10s "), Ok(Duration::from_secs(10)));
        assert!(parse_flag_duration("-10s").is_err());
        assert!(parse_flag_duration(" ").is_err());
    }
}
