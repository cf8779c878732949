//! The HTTP server behind `netexec` and `serve-hostname`: one thread per
//! connection, one request per connection (`Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// The status `/healthz` answers with; 200 until switched.
static HEALTHZ: AtomicU16 = AtomicU16::new(200);
/// The status `/readyz` answers with; 200 until switched.
static READYZ: AtomicU16 = AtomicU16::new(200);

/// A response: status, body, and the exit code to leave with once it is sent.
struct Response {
    status: u16,
    body: Vec<u8>,
    exit_after: Option<i32>,
}

impl Response {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            body: body.into(),
            exit_after: None,
        }
    }
}

/// Serves on 0.0.0.0:`port` until the process exits.
pub(crate) fn serve(port: u16) -> Result<(), String> {
    // A SocketAddr, not a string: a string would go through getaddrinfo.
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = TcpListener::bind(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
    println!("Serving HTTP on {addr}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || handle(stream));
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}

fn handle(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream.take(64 * 1024));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    // Skip the headers.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.trim_end().is_empty() => break,
            Ok(_) => {}
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let response = route(path, query, &peer);
    println!("{method} {target} {} from {peer}", response.status);
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.body.len()
    );
    let _ = writer.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = writer.write_all(&response.body);
    }
    let _ = writer.flush();
    let _ = writer.shutdown(std::net::Shutdown::Both);
    if let Some(code) = response.exit_after {
        println!("Exiting with code {code}, as /exit asked");
        std::process::exit(code);
    }
}

fn route(path: &str, query: &str, peer: &str) -> Response {
    let param = |name: &str| query_param(query, name);
    let status_param = |default: u16| match param("status") {
        None => Ok(default),
        Some(s) => s
            .parse::<u16>()
            .ok()
            .filter(|s| (100..1000).contains(s))
            .ok_or(s),
    };
    match path {
        "/" | "/hostname" => Response::new(200, hostname()),
        "/echo" => Response::new(200, param("msg").unwrap_or_default()),
        "/clientip" => Response::new(200, peer),
        "/healthz" => switched(&HEALTHZ),
        "/readyz" => switched(&READYZ),
        "/fail-healthz" => set(&HEALTHZ, Ok(500)),
        "/fail-readyz" => set(&READYZ, Ok(503)),
        "/set-healthz" => set(&HEALTHZ, status_param(200)),
        "/set-readyz" => set(&READYZ, status_param(200)),
        "/exit" => match param("code").unwrap_or_else(|| "0".into()).parse::<i32>() {
            Ok(code) => Response {
                exit_after: Some(code),
                ..Response::new(200, format!("exiting with code {code}\n"))
            },
            Err(_) => Response::new(400, "code must be an integer\n"),
        },
        "/env" => {
            let mut vars: Vec<String> = std::env::vars_os()
                .map(|(k, v)| format!("{}={}\n", k.to_string_lossy(), v.to_string_lossy()))
                .collect();
            vars.sort();
            Response::new(200, vars.concat())
        }
        "/file" => match param("path") {
            None => Response::new(400, "missing ?path=\n"),
            Some(p) => match std::fs::read(&p) {
                Ok(content) => Response::new(200, content),
                Err(e) => Response::new(404, format!("{p}: {e}\n")),
            },
        },
        "/shell" => match param("cmd") {
            None => Response::new(400, "missing ?cmd=\n"),
            Some(cmd) => match std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&cmd)
                .output()
            {
                Ok(out) => {
                    let mut body = out.stdout;
                    body.extend_from_slice(&out.stderr);
                    Response::new(if out.status.success() { 200 } else { 500 }, body)
                }
                Err(e) => Response::new(500, format!("/bin/sh: {e}\n")),
            },
        },
        _ => Response::new(404, format!("404 page not found: {path}\n")),
    }
}

fn switched(flag: &AtomicU16) -> Response {
    let status = flag.load(Ordering::SeqCst);
    Response::new(status, if status < 400 { "ok\n" } else { "fail\n" })
}

fn set(flag: &AtomicU16, status: Result<u16, String>) -> Response {
    match status {
        Ok(s) => {
            flag.store(s, Ordering::SeqCst);
            Response::new(200, format!("now answering {s}\n"))
        }
        Err(s) => Response::new(400, format!("status {s:?} is not an HTTP status\n")),
    }
}

/// The host name of the UTS namespace this process is in.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The decoded value of `name` in a query string.
fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        s if s < 300 => "OK",
        s if s < 400 => "Redirect",
        s if s < 500 => "Client Error",
        _ => "Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(
            query_param("msg=hello%20there+you&x=1", "msg").as_deref(),
            Some("hello there you")
        );
        assert_eq!(query_param("cmd=ls%20%2F", "cmd").as_deref(), Some("ls /"));
        assert_eq!(query_param("a=%zz%4", "a").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("a=1", "b"), None);
    }

    #[test]
    fn failing_healthz_then_restoring_it_changes_its_status() {
        // The only test touching HEALTHZ, so the static is not shared.
        assert_eq!(route("/healthz", "", "").status, 200);
        assert_eq!(route("/fail-healthz", "", "").status, 200);
        assert_eq!(route("/healthz", "", "").status, 500);
        assert_eq!(route("/set-healthz", "status=200", "").status, 200);
        assert_eq!(route("/healthz", "", "").status, 200);
        assert_eq!(route("/set-healthz", "status=abc", "").status, 400);
    }

    #[test]
    fn echo_returns_its_message() {
        assert_eq!(route("/echo", "msg=hi%21", "").body, b"hi!");
    }
}
