//! A tiny command-line parser: positional arguments and `--flag value`,
//! `--flag=value` or (for the flags a command names as switches) `--flag`.

/// One command's parsed arguments.
#[derive(Debug, Default)]
pub struct Args {
    /// The arguments that are not flags, in order.
    pub positional: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

impl Args {
    /// Parses `raw`; the flags listed in `switches` take no value. A lone
    /// `--` ends the flags.
    pub fn parse(raw: &[String], switches: &[&str]) -> Result<Args, String> {
        let mut args = Args::default();
        let mut it = raw.iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                args.positional.extend(it.by_ref().cloned());
                break;
            }
            let Some(flag) = arg.strip_prefix("--").or_else(|| {
                arg.strip_prefix('-')
                    .filter(|f| f.len() > 1 && !f.starts_with(|c: char| c.is_ascii_digit()))
            }) else {
                args.positional.push(arg.clone());
                continue;
            };
            if let Some((name, value)) = flag.split_once('=') {
                args.flags.push((name.to_string(), Some(value.to_string())));
            } else if switches.contains(&flag) {
                args.flags.push((flag.to_string(), None));
            } else {
                let value = it
                    .next()
                    .ok_or_else(|| format!("flag --{flag} needs a value"))?;
                args.flags.push((flag.to_string(), Some(value.clone())));
            }
        }
        Ok(args)
    }

    /// The last value given for `--name`, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether `--name` was given (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.flags
            .iter()
            .any(|(n, v)| n == name && v.as_deref() != Some("false"))
    }

    /// `--name` parsed as a number, or `default` when absent.
    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: {v:?} is not a number")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[&str], switches: &[&str]) -> Args {
        let raw: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        Args::parse(&raw, switches).unwrap()
    }

    #[test]
    fn flags_take_values_with_or_without_an_equals_sign() {
        let a = parse(&["--http-port=8080", "--count", "3", "x"], &[]);
        assert_eq!(a.value("http-port"), Some("8080"));
        assert_eq!(a.number("count", 0u32).unwrap(), 3);
        assert_eq!(a.positional, ["x"]);
    }

    #[test]
    fn switches_take_no_value_and_negative_numbers_are_positional() {
        let a = parse(&["--stderr", "-1", "--", "--not-a-flag"], &["stderr"]);
        assert!(a.has("stderr"));
        assert_eq!(a.positional, ["-1", "--not-a-flag"]);
    }

    #[test]
    fn a_flag_missing_its_value_is_an_error() {
        assert!(Args::parse(&["--port".to_string()], &[]).is_err());
    }
}
