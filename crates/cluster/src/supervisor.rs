//! The supervisor: a detached process (skiffctl re-executed, in its own
//! session) that starts the cluster's components in order, restarts any that
//! exits with a growing delay, sends their output to `logs/<name>.log`, and
//! records pids and restarts in `state.json`. SIGTERM stops everything.

use crate::config::{self, Host, Layout, Mode, Settings};
use crate::state::{Component, State};
use anyhow::Context as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The environment variable that makes `skiffctl up`/`join` act as the
/// supervisor of the data directory it names.
pub const ENV: &str = "SKIFF_CLUSTER_SUPERVISE";

/// Restart delays: 1 s, doubling to 30 s; back to 1 s once a process has run
/// for a minute.
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(30);
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The next restart delay after a process that ran for `ran` exited.
pub fn next_delay(previous: Option<Duration>, ran: Duration) -> Duration {
    match previous {
        _ if ran >= STABLE_AFTER => FIRST_DELAY,
        None => FIRST_DELAY,
        Some(d) => (d * 2).min(MAX_DELAY),
    }
}

/// Where a component's executable is: next to skiffctl, else on PATH.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let p = dir.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    find_on_path(name)
}

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The executable of `component`, or why there is none ("not built").
pub fn resolve(component: &str) -> Result<PathBuf, String> {
    let name = config::program(component);
    let bin = if component == "containerd" {
        find_on_path(name)
    } else {
        find_binary(name)
    };
    bin.ok_or_else(|| "not built".to_string())
}

/// This machine's facts the command lines need.
pub fn host() -> anyhow::Result<Host> {
    Ok(Host {
        node_ip: local_ip().context("finding this host's address (is there a default route?)")?,
        pod_cidr: None,
    })
}

/// The address this host reaches others from (no packet is sent): the one
/// the kubelet would pick for the Node's InternalIP.
pub fn local_ip() -> Option<String> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:9").ok()?;
    Some(s.local_addr().ok()?.ip().to_string())
}

struct Running {
    child: Child,
    since: Instant,
}

struct Supervisor {
    layout: Layout,
    settings: Settings,
    host: Host,
    state: State,
    running: HashMap<String, Running>,
    /// When a component that exited starts again.
    due: HashMap<String, Instant>,
    /// The last restart delay of each component.
    delays: HashMap<String, Duration>,
    stop: Arc<AtomicBool>,
}

/// Runs the supervisor for the data directory `dir` until SIGTERM.
pub async fn run(dir: &Path) -> anyhow::Result<()> {
    let layout = Layout::new(dir)?;
    let settings: Settings =
        serde_json::from_slice(&std::fs::read(layout.settings()).context("reading cluster.json")?)
            .context("parsing cluster.json")?;
    std::fs::write(layout.supervisor_pid(), std::process::id().to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        // A closed terminal must not end the cluster.
        let mut hup = signal(SignalKind::hangup())?;
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => continue,
                }
            }
            stop.store(true, Ordering::SeqCst);
        });
    }
    let mut sup = Supervisor {
        state: State {
            supervisor_pid: std::process::id(),
            phase: "starting".into(),
            ..State::default()
        },
        host: host()?,
        layout,
        settings,
        running: HashMap::new(),
        due: HashMap::new(),
        delays: HashMap::new(),
        stop,
    };
    // Components a killed supervisor left running: stop them, start afresh.
    if let Some(old) = State::load(&sup.layout.state()) {
        crate::cleanup::stop_components(&sup.layout, &old, false).await;
    }
    for c in config::components(&sup.settings.mode) {
        sup.state.components.insert(
            c.to_string(),
            Component {
                status: "waiting".into(),
                ..Component::default()
            },
        );
    }
    sup.save();
    let result = sup.start_all().await;
    if let Err(err) = &result {
        tracing_line(&format!("start failed: {err:#}"));
        sup.state.error = Some(format!("{err:#}"));
        sup.save();
    } else {
        sup.set_phase("running");
        while !sup.stopping() {
            sup.tick();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    if sup.stopping() || result.is_err() {
        sup.set_phase("stopping");
        let snapshot = sup.state.clone();
        crate::cleanup::stop_components(&sup.layout, &snapshot, true).await;
        for (_, mut r) in sup.running.drain() {
            let _ = r.child.wait().await;
        }
        for c in sup.state.components.values_mut() {
            c.pid = None;
            c.status = "stopped".into();
        }
        sup.set_phase("stopped");
    }
    let _ = std::fs::remove_file(sup.layout.supervisor_pid());
    result
}

fn tracing_line(msg: &str) {
    eprintln!("{} skiffctl supervisor: {msg}", now());
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("[{secs}]")
}

impl Supervisor {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn save(&self) {
        if let Err(err) = self.state.save(&self.layout.state()) {
            tracing_line(&format!("writing state.json: {err}"));
        }
    }

    fn set_phase(&mut self, phase: &str) {
        tracing_line(phase);
        self.state.phase = phase.into();
        self.save();
    }

    fn component(&mut self, name: &str) -> &mut Component {
        self.state.components.entry(name.into()).or_default()
    }

    async fn start_all(&mut self) -> anyhow::Result<()> {
        let l = self.layout.clone();
        for d in [l.logs(), l.manifests(), l.kubelet()] {
            std::fs::create_dir_all(d)?;
        }
        for sub in [
            "root",
            "state",
            "runc",
            "opt",
            "cni/net.d",
            "certs.d",
            "pod-logs",
        ] {
            std::fs::create_dir_all(l.containerd().join(sub))?;
        }
        std::fs::write(
            l.containerd_config(),
            config::containerd_config(&l, crate::SANDBOX_IMAGE),
        )?;
        self.set_phase("starting containerd");
        let _ = std::fs::remove_file(l.containerd_socket());
        self.spawn("containerd")?;
        self.wait_for("containerd", Duration::from_secs(60), |s| {
            Box::pin(containerd_answers(s.layout.containerd_socket()))
        })
        .await?;

        self.set_phase("importing images");
        import_images(&l, &self.settings.images_dir).await?;

        match self.settings.mode {
            Mode::Server => {
                self.set_phase("starting the API server");
                self.spawn("apiserver")?;
                self.wait_for("apiserver", Duration::from_secs(90), |s| {
                    Box::pin(apiserver_ready(s.layout.clone(), s.settings.secure_port))
                })
                .await?;
                std::fs::copy(l.apiserver_admin_kubeconfig(), l.admin_kubeconfig())?;
                std::fs::copy(l.ca_cert(), l.kubelet_ca())?;
                crate::pki::ensure_node_kubeconfig(&l, &self.settings)?;
                self.set_phase(
                    "starting the controller manager, scheduler, kubelet, proxy and DNS",
                );
                for c in ["controller-manager", "scheduler", "kubelet", "proxy", "dns"] {
                    self.spawn(c)?;
                }
            }
            Mode::Node => {
                self.set_phase("getting the kubelet's certificate (bootstrap token, CSR)");
                let stop = self.stop.clone();
                crate::join::bootstrap(&l, &self.settings, &stop).await?;
                self.set_phase("waiting for the node's pod CIDR");
                self.host.pod_cidr = crate::join::pod_cidr(&l, &self.settings, &stop).await?;
                self.set_phase("starting the kubelet and proxy");
                for c in ["kubelet", "proxy"] {
                    self.spawn(c)?;
                }
            }
        }
        Ok(())
    }

    /// Waits until `check` passes, restarting crashed components meanwhile.
    async fn wait_for<F>(&mut self, what: &str, limit: Duration, check: F) -> anyhow::Result<()>
    where
        F: Fn(&Self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if check(self).await {
                return Ok(());
            }
            anyhow::ensure!(!self.stopping(), "stopped while waiting for {what}");
            anyhow::ensure!(
                Instant::now() < deadline,
                "{what} did not come up in {} s; see {}",
                limit.as_secs(),
                self.layout.log(what).display()
            );
            self.tick();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts `name`, or records why it cannot run.
    fn spawn(&mut self, name: &str) -> anyhow::Result<()> {
        let bin = match resolve(name) {
            Ok(bin) => bin,
            Err(why) => {
                tracing_line(&format!("{name}: {why}"));
                let c = self.component(name);
                c.status = why;
                c.pid = None;
                self.save();
                return Ok(());
            }
        };
        let args = config::args(name, &self.settings, &self.layout, &self.host);
        let log_path = self.layout.log(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = Command::new(&bin)
            .args(&args)
            .current_dir(&self.layout.dir)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().unwrap_or(0);
        tracing_line(&format!(
            "{name}: started pid {pid}: {} {}",
            bin.display(),
            args.join(" ")
        ));
        self.running.insert(
            name.into(),
            Running {
                child,
                since: Instant::now(),
            },
        );
        let c = self.component(name);
        c.pid = Some(pid);
        c.status = "running".into();
        self.save();
        Ok(())
    }

    /// Notices exited components and starts those whose delay has passed.
    fn tick(&mut self) {
        if self.stopping() {
            return;
        }
        let mut exited = Vec::new();
        for (name, r) in self.running.iter_mut() {
            if let Ok(Some(status)) = r.child.try_wait() {
                exited.push((name.clone(), status, r.since.elapsed()));
            }
        }
        for (name, status, ran) in exited {
            self.running.remove(&name);
            let delay = next_delay(self.delays.get(&name).copied(), ran);
            self.delays.insert(name.clone(), delay);
            tracing_line(&format!(
                "{name}: exited ({status}) after {} s; restarting in {} s",
                ran.as_secs(),
                delay.as_secs()
            ));
            self.due.insert(name.clone(), Instant::now() + delay);
            let c = self.component(&name);
            c.pid = None;
            c.status = "backoff".into();
            c.last_exit = Some(describe(status));
            self.save();
        }
        let now = Instant::now();
        let ready: Vec<String> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in ready {
            self.due.remove(&name);
            self.component(&name).restarts += 1;
            if name == "containerd" {
                let _ = std::fs::remove_file(self.layout.containerd_socket());
            }
            if let Err(err) = self.spawn(&name) {
                tracing_line(&format!("{name}: {err:#}"));
                let delay = self.delays.get(&name).copied().unwrap_or(FIRST_DELAY);
                self.due.insert(name, now + delay);
            }
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (_, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}

/// Whether the containerd at `socket` answers CRI Version.
pub async fn containerd_answers(socket: PathBuf) -> bool {
    use skiff_kubelet::cri::Runtime;
    if !socket.exists() {
        return false;
    }
    let endpoint = socket.display().to_string();
    let attempt = async {
        let rt = skiff_kubelet::cri::remote::Remote::connect(&endpoint)
            .await
            .ok()?;
        rt.version().await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), attempt).await,
        Ok(Some(_))
    )
}

async fn apiserver_ready(layout: Layout, port: u16) -> bool {
    let Some(cert) =
        crate::health::ClientCert::from_kubeconfig(&layout.apiserver_admin_kubeconfig())
    else {
        return false;
    };
    matches!(
        crate::health::get("https", port, "/readyz", Some(&cert)).await,
        Ok((200, _))
    )
}

/// Imports every `*.tar` of `dir` into containerd's k8s.io namespace with ctr.
async fn import_images(l: &Layout, dir: &Path) -> anyhow::Result<()> {
    let mut tars: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    tars.sort();
    for tar in tars {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(l.containerd_socket())
            .args(["-n", "k8s.io", "images", "import"])
            .arg(&tar)
            .output()
            .await
            .context("running ctr (it comes with containerd)")?;
        anyhow::ensure!(
            out.status.success(),
            "ctr images import {}: {}",
            tar.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        tracing_line(&format!("imported {}", tar.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_double_up_to_a_cap_and_reset_after_a_stable_run() {
        let quick = Duration::from_secs(1);
        let mut d = next_delay(None, quick);
        assert_eq!(d, Duration::from_secs(1));
        let mut seen = vec![d];
        for _ in 0..7 {
            d = next_delay(Some(d), quick);
            seen.push(d);
        }
        assert_eq!(
            seen.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 30, 30, 30]
        );
        assert_eq!(next_delay(Some(d), Duration::from_secs(120)), FIRST_DELAY);
    }

    #[test]
    fn a_missing_binary_is_not_built() {
        assert_eq!(resolve("no-such-component"), Err("not built".to_string()));
    }
}
