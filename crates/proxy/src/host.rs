//! Running host tools, optionally inside a network namespace.

use std::process::Command;

/// `program`, prefixed by `prefix` (such as `ip netns exec NAME`) if any.
pub(crate) fn command(prefix: &[String], program: &str) -> Command {
    match prefix.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
    }
}

/// The `ip netns exec NAME` prefix for a namespace.
pub(crate) fn netns_prefix(netns: Option<&str>) -> Vec<String> {
    netns
        .map(|n| vec!["ip".into(), "netns".into(), "exec".into(), n.into()])
        .unwrap_or_default()
}
