//! Test support: a real etcd, started for one test or benchmark in a fresh
//! directory on free loopback ports, and killed when dropped: one server
//! ([`EtcdServer`]) or a cluster of several members ([`EtcdCluster`]).
//!
//! The tests need a real etcd (Debian's `etcd-server` package); without it
//! they fail with a message saying what to install, they never skip.
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Etcd, EtcdOptions};

/// An etcd server running as a child process: a one-member cluster, or one
/// member of an [`EtcdCluster`].
///
/// It keeps its data (and its log, `etcd.log`) in a temporary directory that
/// lives as long as the value, so [`EtcdServer::restart`] finds its data again.
/// It runs with etcd's normal durability (`fsync` on every commit).
pub struct EtcdServer {
    dir: tempfile::TempDir,
    binary: PathBuf,
    name: String,
    /// etcd's `--initial-cluster`: every member's name and peer URL.
    initial_cluster: String,
    client_port: u16,
    peer_port: u16,
    process: Option<Process>,
}

/// A cluster of etcd members on this machine, for tests of what happens when
/// members fail. Each member is an [`EtcdServer`]; the cluster keeps quorum
/// while a majority runs.
pub struct EtcdCluster {
    members: Vec<EtcdServer>,
}

/// The running etcd. It is started under a small `sh` watchdog that holds the
/// read end of a pipe whose write end only we hold: when we close it (or our
/// process dies, however it dies) the watchdog kills etcd, so no test leaves
/// an etcd behind.
struct Process {
    watchdog: Child,
    lifeline: Option<ChildStdin>,
}

/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How many times a start is tried on fresh ports.
const START_ATTEMPTS: usize = 5;
/// Runs `$0 "$@"` (etcd) until stdin closes, then kills it; exits with its status.
const WATCHDOG: &str = r#"exec 3<&0 </dev/null
"$0" "$@" &
etcd=$!
( read -r _ <&3; kill -9 "$etcd" 2>/dev/null ) &
watcher=$!
exec 3<&-
wait "$etcd"
status=$?
kill "$watcher" 2>/dev/null
exit "$status""#;

impl EtcdServer {
    /// Starts etcd and waits until it answers.
    ///
    /// # Panics
    /// If etcd is not installed, or does not start within 20 s (the panic
    /// message includes the end of its log).
    pub fn start() -> Self {
        let mut members = start_members(1);
        members.pop().expect("one member")
    }

    /// The client URL, such as `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The directory holding etcd's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Options for [`Etcd::connect`] to this server, with short timeouts
    /// suited to tests.
    pub fn options(&self) -> EtcdOptions {
        EtcdOptions {
            endpoints: vec![self.endpoint()],
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            // etcd refuses pings more often than every 5 s.
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            ..Default::default()
        }
    }

    /// A store backend connected to this server.
    ///
    /// # Panics
    /// If it cannot connect.
    pub async fn connect(&self) -> Etcd {
        match Etcd::connect(self.options()).await {
            Ok(etcd) => etcd,
            Err(e) => panic!(
                "cannot connect to the test etcd at {}: {e:?}",
                self.endpoint()
            ),
        }
    }

    /// Kills etcd at once (SIGKILL, as `kill -9`), keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Kills etcd if it runs, and starts it again on the same ports and data.
    ///
    /// # Panics
    /// If it does not answer again within 20 s (a cluster member answers only
    /// once its cluster has a quorum).
    pub fn restart(&mut self) {
        self.kill();
        let outcome = self
            .spawn()
            .and_then(|()| self.wait_ready(Instant::now() + START_TIMEOUT));
        if let Err(failure) = outcome {
            panic!("etcd did not restart: {failure}");
        }
    }

    /// Whether etcd runs (it may still be starting).
    pub fn is_running(&mut self) -> bool {
        match &mut self.process {
            Some(process) => matches!(process.watchdog.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Reads one sample of a Prometheus metric from etcd's `/metrics`
    /// (the sum of its series); 0 when etcd does not report it.
    ///
    /// # Panics
    /// If etcd does not answer.
    pub fn metric(&self, name: &str) -> f64 {
        let body = http_get(self.client_port, "/metrics")
            .unwrap_or_else(|e| panic!("cannot read etcd's metrics: {e}"));
        body.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// A server not started yet, in a fresh directory.
    fn new(binary: &Path, name: String, initial_cluster: String, ports: (u16, u16)) -> Self {
        EtcdServer {
            dir: tempfile::Builder::new()
                .prefix("skiff-etcd-")
                .tempdir()
                .expect("cannot create a temporary directory for etcd"),
            binary: binary.to_path_buf(),
            name,
            initial_cluster,
            client_port: ports.0,
            peer_port: ports.1,
            process: None,
        }
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Starts etcd on this server's ports and data, without waiting.
    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let client = self.endpoint();
        let peer = self.peer_url();
        let data_dir = self.dir.path().join("data");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&self.binary)
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=skiff-test")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let mut watchdog = command
            .spawn()
            .map_err(|e| format!("cannot run sh to start etcd: {e}"))?;
        let lifeline = watchdog.stdin.take();
        self.process = Some(Process { watchdog, lifeline });
        Ok(())
    }

    /// Waits until etcd answers healthy; on failure, stops it and says why
    /// (with the end of its log).
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            let exited = match &mut self.process {
                Some(process) => process.watchdog.try_wait().ok().flatten(),
                None => return Err("etcd is not running".to_string()),
            };
            if let Some(status) = exited {
                self.process = None;
                return Err(format!(
                    "etcd {} exited with {status}; its log ends with:\n{}",
                    self.name,
                    log_tail(&self.log_path())
                ));
            }
            if http_get(self.client_port, "/health")
                .is_ok_and(|body| body.contains(r#""health":"true""#))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "etcd {} did not answer on {} within {START_TIMEOUT:?}; its log ends with:\n{}",
                    self.name,
                    self.endpoint(),
                    log_tail(&self.log_path())
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl EtcdCluster {
    /// Starts a cluster of `size` members (3, 5 or 7 for quorum tests) and
    /// waits until every member answers.
    ///
    /// # Panics
    /// If etcd is not installed, or the cluster does not form within 20 s.
    pub fn start(size: usize) -> Self {
        assert!(size > 0, "a cluster needs a member");
        EtcdCluster {
            members: start_members(size),
        }
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::endpoint).collect()
    }

    /// The members, to kill or restart one.
    pub fn members(&mut self) -> &mut [EtcdServer] {
        &mut self.members
    }

    /// Options for [`Etcd::connect`] to every member, with short timeouts
    /// suited to tests.
    pub fn options(&self) -> EtcdOptions {
        EtcdOptions {
            endpoints: self.endpoints(),
            ..self.members[0].options()
        }
    }

    /// A store backend connected to every member.
    ///
    /// # Panics
    /// If it cannot connect.
    pub async fn connect(&self) -> Etcd {
        match Etcd::connect(self.options()).await {
            Ok(etcd) => etcd,
            Err(e) => panic!("cannot connect to the test etcd cluster: {e:?}"),
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Process {
    /// Kills etcd (by closing the watchdog's pipe) and reaps the watchdog.
    fn stop(&mut self) {
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.watchdog.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The watchdog is stuck: kill it (etcd dies when our process does).
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The etcd binary: `etcd` on `PATH`, else `/usr/bin/etcd`.
fn find_etcd() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("etcd"))
            .find(|candidate| candidate.is_file())
    });
    let fallback = PathBuf::from("/usr/bin/etcd");
    match on_path {
        Some(binary) => binary,
        None if fallback.is_file() => fallback,
        None => panic!(
            "etcd is not installed: apt-get install etcd-server (the tests need a real etcd)"
        ),
    }
}

/// Starts `size` members of one cluster and waits until all answer; tries
/// again on fresh ports when a start fails (a port taken in the meantime).
fn start_members(size: usize) -> Vec<EtcdServer> {
    let binary = find_etcd();
    let mut last_failure = String::new();
    for _ in 0..START_ATTEMPTS {
        let ports = free_ports(2 * size);
        let names: Vec<String> = (0..size)
            .map(|i| match size {
                1 => "skiff-test".to_string(),
                _ => format!("skiff-test-{i}"),
            })
            .collect();
        let initial_cluster = names
            .iter()
            .zip(ports.chunks(2))
            .map(|(name, p)| format!("{name}=http://127.0.0.1:{}", p[1]))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<EtcdServer> = names
            .into_iter()
            .zip(ports.chunks(2))
            .map(|(name, p)| EtcdServer::new(&binary, name, initial_cluster.clone(), (p[0], p[1])))
            .collect();
        // Every member must run before any can answer: health needs a leader.
        let deadline = Instant::now() + START_TIMEOUT;
        let outcome = members
            .iter_mut()
            .try_for_each(EtcdServer::spawn)
            .and_then(|()| {
                members
                    .iter_mut()
                    .try_for_each(|member| member.wait_ready(deadline))
            });
        match outcome {
            Ok(()) => return members,
            Err(failure) => last_failure = failure,
        }
    }
    panic!("etcd did not start: {last_failure}");
}

/// `count` distinct loopback ports that were free a moment ago (all are held
/// at once, so they differ).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("a bound socket has an address")
                .port()
        })
        .collect()
}

/// A plain HTTP GET on the loopback port; answers the body.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    // HTTP/1.0: the answer is not chunked and ends when the server closes.
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.split(' ').nth(1) == Some("200") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!(
            "unexpected answer to GET {path}: {}",
            response.lines().next().unwrap_or("nothing")
        ))),
    }
}

/// The last lines of etcd's log, for failure messages.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
