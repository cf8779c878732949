//! Forwarding of names outside the cluster zone to the upstream resolvers
//! named in a resolv.conf: the client's query is relayed as it is, so the
//! upstream's answer (its ID, flags, EDNS) goes back unchanged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors reading the resolv.conf.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The upstream resolvers.
#[derive(Clone, Debug, Default)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
}

impl Forwarder {
    /// The `nameserver` lines of a resolv.conf (port 53, or `[addr]:port`
    /// and `addr#port` forms for tests and local resolvers).
    pub fn from_resolv_conf(path: &Path) -> Result<Forwarder, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Forwarder {
            upstreams: parse_resolv_conf(&text),
        })
    }

    /// Forwarding to these servers.
    pub fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder { upstreams }
    }

    /// The upstream servers, in the order they are tried.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Relays `query` to each upstream in turn until one answers.
    pub async fn forward(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        for upstream in &self.upstreams {
            let attempt = if tcp {
                tokio::time::timeout(UPSTREAM_TIMEOUT, over_tcp(*upstream, query)).await
            } else {
                tokio::time::timeout(UPSTREAM_TIMEOUT, over_udp(*upstream, query)).await
            };
            match attempt {
                Ok(Ok(reply)) => return Some(reply),
                Ok(Err(error)) => {
                    tracing::debug!(%upstream, %error, "upstream failed");
                }
                Err(_) => tracing::debug!(%upstream, "upstream timed out"),
            }
        }
        None
    }
}

/// One exchange over a fresh UDP socket, so concurrent relays never mix up
/// replies that share a query ID.
async fn over_udp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).into(),
        SocketAddr::V6(_) => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Only the reply to this query (same ID) counts.
        if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn over_tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut reply = vec![0u8; len.into()];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            parse_server(words.next()?)
        })
        .collect()
}

fn parse_server(word: &str) -> Option<SocketAddr> {
    if let Ok(addr) = word.parse::<SocketAddr>() {
        return Some(addr);
    }
    if let Some((ip, port)) = word.split_once('#') {
        return Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?));
    }
    // A scoped IPv6 address (`fe80::1%eth0`) keeps only the address.
    let ip = word.split('%').next()?;
    Some(SocketAddr::new(ip.parse().ok()?, 53))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_the_upstreams() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fd00::1\n\
                    nameserver 127.0.0.1#5353\noptions ndots:5\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[fd00::1]:53".parse().unwrap(),
                "127.0.0.1:5353".parse().unwrap(),
            ]
        );
    }
}
