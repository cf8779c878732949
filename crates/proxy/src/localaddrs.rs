//! This host's local IPv4 addresses, from /proc/net/fib_trie (the `local`
//! routing table), for `--nodeport-addresses` with CIDRs.

use std::net::Ipv4Addr;

/// Addresses with a `/32 host LOCAL` entry in `fib_trie` text.
pub(crate) fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '-', '+']).trim();
        if let Ok(ip) = t.parse::<Ipv4Addr>() {
            last = Some(ip);
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out.sort();
    out
}

/// This network namespace's local addresses (or a named one's).
pub(crate) fn local_addresses(prefix: &[String]) -> Vec<Ipv4Addr> {
    let text = if prefix.is_empty() {
        std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default()
    } else {
        crate::host::command(prefix, "cat")
            .arg("/proc/net/fib_trie")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    parse_fib_trie(&text)
}

/// Whether `ip` is inside `cidr` (`a.b.c.d/n`).
pub(crate) fn cidr_contains(cidr: &str, ip: Ipv4Addr) -> Option<bool> {
    let (net, len) = cidr.split_once('/')?;
    let net: Ipv4Addr = net.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some(u32::from(net) & mask == u32::from(ip) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_come_from_the_local_table() {
        let text = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.0.0\n        /24 link UNICAST\n     |-- 10.0.0.5\n        /32 host LOCAL\nLocal:\n  +-- 127.0.0.0/8 2 0 2\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 10.0.0.5\n        /32 host LOCAL\n";
        assert_eq!(
            parse_fib_trie(text),
            vec![Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(127, 0, 0, 1)]
        );
    }

    #[test]
    fn cidrs_contain_their_addresses() {
        assert_eq!(
            cidr_contains("10.0.0.0/8", "10.1.2.3".parse().unwrap()),
            Some(true)
        );
        assert_eq!(
            cidr_contains("10.0.0.0/8", "11.1.2.3".parse().unwrap()),
            Some(false)
        );
        assert_eq!(
            cidr_contains("0.0.0.0/0", "1.2.3.4".parse().unwrap()),
            Some(true)
        );
        assert_eq!(cidr_contains("bad", "1.2.3.4".parse().unwrap()), None);
    }
}
