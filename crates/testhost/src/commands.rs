//! `testhost`'s commands. Each returns the process's exit code.

use crate::args::Args;
use crate::{http, signals};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

const HELP: &str = "\
testhost: Skiff's test container tool (an agnhost for Skiff's tests).

  netexec [--http-port 8080]     HTTP server; also serve-hostname [--port 9376]:
      / and /hostname   the host name         /echo?msg=X      X
      /healthz /readyz  200, or what was set  /fail-healthz    /healthz answers 500
      /fail-readyz      /readyz answers 503   /set-healthz?status=N, /set-readyz?status=N
      /exit?code=N      answer, then exit N   /env             environment, one KEY=value a line
      /file?path=P      the file's content    /shell?cmd=C     output of /bin/sh -c C
      /clientip         the client's ip:port
  tcp-echo [--port 8081]         echoes every TCP connection back
  echo ARGS...                   prints ARGS to stdout
  stderr ARGS...                 prints ARGS to stderr
  sleep SECONDS|infinity [--ignore-sigterm]
  exit CODE [--stdout M] [--stderr M] [--termination-message M] [--termination-log PATH]
                                 writes M (termination log: /dev/termination-log), exits CODE
  log-lines [--count 10 (0: forever)] [--interval-ms 0] [--prefix 'line '] [--line-bytes B] [--stderr]
                                 numbered lines, padded with x to B bytes if given
  cat FILE...    ls DIR...    hostname
Every command exits 0 on SIGTERM or SIGINT (sleep --ignore-sigterm excepted).
";

/// Runs the command named by `args[0]` and returns the exit code.
pub fn run(args: &[String]) -> i32 {
    let Some((command, rest)) = args.split_first() else {
        eprint!("{HELP}");
        return 2;
    };
    let switches: &[&str] = match command.as_str() {
        "sleep" => &["ignore-sigterm"],
        "log-lines" => &["stderr"],
        _ => &[],
    };
    let result = Args::parse(rest, switches).and_then(|a| match command.as_str() {
        "netexec" => http::serve(a.number("http-port", 8080)?).map(|()| 0),
        "serve-hostname" => {
            http::serve(a.number("port", a.number("http-port", 9376)?)?).map(|()| 0)
        }
        "tcp-echo" => tcp_echo(a.number("port", 8081)?).map(|()| 0),
        "echo" => Ok(print_out(&mut std::io::stdout(), &a.positional)),
        "stderr" => Ok(print_out(&mut std::io::stderr(), &a.positional)),
        "sleep" => sleep(&a),
        "exit" => exit(&a),
        "log-lines" => log_lines(&a),
        "cat" => cat(&a.positional),
        "ls" => ls(&a.positional),
        "hostname" => Ok(print_out(&mut std::io::stdout(), &[http::hostname()])),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(0)
        }
        other => Err(format!("unknown command {other:?}; see `testhost help`")),
    });
    result.unwrap_or_else(|e| {
        eprintln!("testhost {command}: {e}");
        2
    })
}

fn print_out(out: &mut dyn Write, words: &[String]) -> i32 {
    let _ = writeln!(out, "{}", words.join(" "));
    let _ = out.flush();
    0
}

fn sleep(a: &Args) -> Result<i32, String> {
    if a.has("ignore-sigterm") {
        signals::ignore_sigterm();
    }
    match a.positional.first().map(String::as_str) {
        None | Some("infinity") => signals::wait_forever(),
        Some(s) => {
            let secs: f64 = s
                .parse()
                .ok()
                .filter(|s: &f64| *s >= 0.0 && s.is_finite())
                .ok_or(format!("{s:?} is not a number of seconds"))?;
            std::thread::sleep(Duration::from_secs_f64(secs));
            Ok(0)
        }
    }
}

fn exit(a: &Args) -> Result<i32, String> {
    let code: i32 = match a.positional.first() {
        None => 0,
        Some(c) => c
            .parse()
            .map_err(|_| format!("exit code {c:?} is not an integer"))?,
    };
    if let Some(m) = a.value("stdout") {
        print_out(&mut std::io::stdout(), &[m.to_string()]);
    }
    if let Some(m) = a.value("stderr") {
        print_out(&mut std::io::stderr(), &[m.to_string()]);
    }
    if let Some(m) = a.value("termination-message") {
        let path = a.value("termination-log").unwrap_or("/dev/termination-log");
        std::fs::write(path, m).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(code)
}

fn log_lines(a: &Args) -> Result<i32, String> {
    let count: u64 = a.number("count", 10)?;
    let interval = Duration::from_millis(a.number("interval-ms", 0)?);
    let line_bytes: usize = a.number("line-bytes", 0)?;
    let prefix = a.value("prefix").unwrap_or("line ");
    let mut out: Box<dyn Write> = if a.has("stderr") {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mut n = 0u64;
    while count == 0 || n < count {
        n += 1;
        let mut line = format!("{prefix}{n}");
        if line.len() < line_bytes {
            line.push_str(&"x".repeat(line_bytes - line.len()));
        }
        line.push('\n');
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(1);
        }
        if !interval.is_zero() && (count == 0 || n < count) {
            std::thread::sleep(interval);
        }
    }
    Ok(0)
}

fn tcp_echo(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = TcpListener::bind(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
    println!("Echoing TCP on {addr}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || echo_connection(stream));
    }
    Ok(())
}

fn echo_connection(mut stream: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn cat(files: &[String]) -> Result<i32, String> {
    let mut out = std::io::stdout().lock();
    let mut code = 0;
    for f in files {
        match std::fs::read(f) {
            Ok(content) => {
                let _ = out.write_all(&content);
            }
            Err(e) => {
                eprintln!("cat: {f}: {e}");
                code = 1;
            }
        }
    }
    let _ = out.flush();
    Ok(code)
}

fn ls(dirs: &[String]) -> Result<i32, String> {
    let dirs = if dirs.is_empty() {
        vec![".".to_string()]
    } else {
        dirs.to_vec()
    };
    let mut code = 0;
    for d in &dirs {
        match std::fs::read_dir(d) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .flatten()
                    .map(|e| {
                        let dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                        format!(
                            "{}{}",
                            e.file_name().to_string_lossy(),
                            if dir { "/" } else { "" }
                        )
                    })
                    .collect();
                names.sort();
                if dirs.len() > 1 {
                    println!("{d}:");
                }
                for n in names {
                    println!("{n}");
                }
            }
            Err(e) => {
                eprintln!("ls: {d}: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}
