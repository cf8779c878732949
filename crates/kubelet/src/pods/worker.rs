//! One pod's worker. Level-triggered: each pass reads what the runtime has for
//! the pod and what the API wants, acts on the difference (sandbox, init
//! containers in order, sidecars, app containers, restarts with crash-loop
//! backoff, probe-driven restarts, graceful termination) and posts the status
//! when it changed. A pass runs on a pod update, a runtime change, a probe
//! result, a backoff expiring, or every 10 s.

use super::status::{self, Observed};
use super::volumes::{self, Mounted};
use super::{Desired, probes, spec};
use crate::Kubelet;
use crate::cri::{api, labels, pod_uid_selector};
use crate::events::{Type, pod_ref};
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Upstream's crash-loop backoff: 10 s doubling to 5 min, forgotten after
/// 10 min without a restart.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often content volumes are refreshed from the API.
const VOLUME_REFRESH: Duration = Duration::from_secs(10);
const RESYNC: Duration = Duration::from_secs(10);

pub struct Worker {
    kubelet: Arc<Kubelet>,
    uid: String,
    rx: watch::Receiver<Desired>,
    wake: Arc<Notify>,
    /// Container name → (reason, message) while it cannot run.
    waiting: HashMap<String, (String, String)>,
    /// Container id → its probe tasks.
    probe_tasks: HashMap<String, Vec<tokio::task::JoinHandle<()>>>,
    probe_failed: Arc<Mutex<HashMap<String, String>>>,
    /// Container name → (current delay, when it was last used).
    backoff: HashMap<String, (Duration, Instant)>,
    image_backoff: HashMap<String, (Duration, Instant)>,
    volumes: Option<(HashMap<String, Mounted>, Instant)>,
    posted: Option<PodStatus>,
    start_time: Option<Time>,
    terminal: Option<String>,
    runtime_name: String,
    deleted_confirmed: bool,
}

/// What a pod asks of the kubelet, apart from its status: a pod update that
/// leaves this unchanged needs no pass.
#[derive(PartialEq)]
struct Intent {
    spec: serde_json::Value,
    labels: Option<std::collections::BTreeMap<String, String>>,
    annotations: Option<std::collections::BTreeMap<String, String>>,
    deletion: Option<Time>,
    phase: Option<String>,
}

impl Intent {
    fn of(pod: &Pod) -> Intent {
        Intent {
            spec: serde_json::to_value(&pod.spec).unwrap_or_default(),
            labels: pod.metadata.labels.clone(),
            annotations: pod.metadata.annotations.clone(),
            deletion: pod.metadata.deletion_timestamp.clone(),
            // A phase set by someone else (eviction) is an instruction.
            phase: pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .filter(|p| p == "Failed" || p == "Succeeded"),
        }
    }
}

/// Where a pass starts containers: the runtime's view and the pod's ready
/// sandbox with its configuration and IP.
#[derive(Clone, Copy)]
struct Sandbox<'a> {
    snap: &'a Snapshot,
    id: &'a str,
    config: &'a api::PodSandboxConfig,
    pod_ip: &'a str,
}

/// The runtime's view of one pod.
struct Snapshot {
    /// Newest first.
    sandboxes: Vec<api::PodSandbox>,
    /// Newest first.
    containers: Vec<Observed>,
}

impl Snapshot {
    fn ready_sandbox(&self) -> Option<&api::PodSandbox> {
        self.sandboxes
            .first()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
    }
    /// The newest container named `name` in sandbox `sandbox`.
    fn latest(&self, name: &str, sandbox: &str) -> Option<&Observed> {
        self.containers
            .iter()
            .find(|c| c.name == name && c.sandbox_id == sandbox)
    }
    fn next_attempt(&self, name: &str) -> u32 {
        self.containers
            .iter()
            .filter(|c| c.name == name)
            .map(|c| c.attempt + 1)
            .max()
            .unwrap_or(0)
    }
}

impl Worker {
    pub fn new(
        kubelet: Arc<Kubelet>,
        uid: String,
        rx: watch::Receiver<Desired>,
        wake: Arc<Notify>,
    ) -> Worker {
        Worker {
            kubelet,
            uid,
            rx,
            wake,
            waiting: HashMap::new(),
            probe_tasks: HashMap::new(),
            probe_failed: Arc::default(),
            backoff: HashMap::new(),
            image_backoff: HashMap::new(),
            volumes: None,
            posted: None,
            start_time: None,
            terminal: None,
            runtime_name: String::new(),
            deleted_confirmed: false,
        }
    }

    pub async fn run(mut self) {
        if let Ok(v) = self.kubelet.runtime.version().await {
            self.runtime_name = v.runtime_name;
        }
        let mut synced: Option<Intent>;
        loop {
            let desired = self.rx.borrow_and_update().clone();
            let wait = match desired {
                Desired::Run(pod) => {
                    synced = Some(Intent::of(&pod));
                    self.sync(&pod).await
                }
                Desired::Gone(pod) => {
                    self.terminate(&pod).await;
                    self.finish();
                    return;
                }
            };
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    changed = self.rx.changed() => {
                        if changed.is_err() {
                            self.finish();
                            return;
                        }
                        // The echo of our own status write changes nothing
                        // the pod asks for: no pass for it.
                        let unchanged = match &*self.rx.borrow() {
                            Desired::Run(pod) => synced.as_ref() == Some(&Intent::of(pod)),
                            Desired::Gone(_) => false,
                        };
                        if unchanged {
                            continue;
                        }
                    }
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
                break;
            }
        }
    }

    fn finish(&mut self) {
        for (id, tasks) in self.probe_tasks.drain() {
            tasks.iter().for_each(|t| t.abort());
            self.kubelet.pods.probes.forget(&id);
        }
        self.kubelet.pods.worker_done(&self.uid);
    }

    async fn snapshot(&self) -> crate::cri::Result<Snapshot> {
        let runtime = &self.kubelet.runtime;
        let mut sandboxes = runtime
            .list_pod_sandbox(Some(api::PodSandboxFilter {
                label_selector: pod_uid_selector(&self.uid),
                ..Default::default()
            }))
            .await?;
        sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let listed = runtime
            .list_containers(Some(api::ContainerFilter {
                label_selector: pod_uid_selector(&self.uid),
                ..Default::default()
            }))
            .await?;
        let mut containers = Vec::with_capacity(listed.len());
        for c in listed {
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let attempt = c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
            let mut o = Observed {
                id: c.id.clone(),
                name,
                attempt,
                sandbox_id: c.pod_sandbox_id.clone(),
                state: c.state,
                created_at: c.created_at,
                image: c.image.map(|i| i.image).unwrap_or_default(),
                image_ref: c.image_ref.clone(),
                ..Default::default()
            };
            match runtime.container_status(&c.id).await {
                Ok(s) => {
                    o.state = s.state;
                    o.started_at = s.started_at;
                    o.finished_at = s.finished_at;
                    o.exit_code = s.exit_code;
                    o.reason = s.reason;
                    o.message = s.message;
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
            containers.push(o);
        }
        containers.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.attempt)));
        Ok(Snapshot {
            sandboxes,
            containers,
        })
    }

    /// One pass; returns how long until the next one at the latest.
    async fn sync(&mut self, pod: &Arc<Pod>) -> Duration {
        if pod.metadata.deletion_timestamp.is_some() {
            self.terminate(pod).await;
            self.confirm_deletion(pod).await;
            return Duration::from_secs(2);
        }
        let snap = match self.snapshot().await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(pod = %name(pod), "reading the runtime: {err}");
                return Duration::from_secs(2);
            }
        };
        if self.start_time.is_none() {
            self.start_time = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .or_else(|| Some(Time(jiff::Timestamp::now())));
        }
        let api_phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if self.terminal.is_none()
            && matches!(api_phase.as_deref(), Some("Succeeded") | Some("Failed"))
        {
            self.terminal = api_phase;
        }
        if self.terminal.is_some() {
            self.stop_everything(pod, &snap, 0).await;
            let snap = self.snapshot().await.unwrap_or(snap);
            self.post_status(pod, &snap, None).await;
            return Duration::from_secs(60);
        }

        let mut next = RESYNC;
        // Volumes.
        if self.kubelet.config.manage_host || self.volumes.is_none() {
            let stale = self
                .volumes
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() >= VOLUME_REFRESH);
            if stale {
                let result = if self.kubelet.config.manage_host {
                    volumes::setup(&self.kubelet, pod).await
                } else {
                    Ok(HashMap::new())
                };
                match result {
                    Ok(v) => self.volumes = Some((v, Instant::now())),
                    Err(message) => {
                        self.kubelet.events.record(
                            pod_ref(pod, None),
                            Type::Warning,
                            "FailedMount",
                            message,
                        );
                        if self.volumes.is_none() {
                            self.post_status(pod, &snap, None).await;
                            return Duration::from_secs(2);
                        }
                    }
                }
            }
        }

        // The sandbox.
        let (sandbox_id, pod_ip, sandbox_config) = match snap.ready_sandbox() {
            Some(s) => {
                let attempt = s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
                let ip = self.sandbox_ip(pod, &s.id).await;
                (
                    s.id.clone(),
                    ip,
                    spec::sandbox_config(&self.kubelet, pod, attempt),
                )
            }
            None => {
                let spec_ = pod.spec.clone().unwrap_or_default();
                let ran_before = !snap.containers.is_empty();
                if ran_before && spec_.restart_policy.as_deref() == Some("Never") {
                    // The sandbox died under a pod that must not restart:
                    // what ran is final.
                    self.post_status(pod, &snap, None).await;
                    return next;
                }
                let attempt = snap
                    .sandboxes
                    .first()
                    .and_then(|s| s.metadata.as_ref())
                    .map(|m| m.attempt + 1)
                    .unwrap_or(0);
                if !snap.sandboxes.is_empty() {
                    self.kubelet.events.record(
                        pod_ref(pod, None),
                        Type::Normal,
                        "SandboxChanged",
                        "Pod sandbox changed, it will be killed and re-created.",
                    );
                    self.stop_everything(pod, &snap, 0).await;
                }
                let config = spec::sandbox_config(&self.kubelet, pod, attempt);
                let started = Instant::now();
                match self.kubelet.runtime.run_pod_sandbox(config.clone()).await {
                    Ok(id) => {
                        tracing::debug!(pod = %name(pod), took = ?started.elapsed(), "sandbox running");
                        let ip = self.sandbox_ip(pod, &id).await;
                        (id, ip, config)
                    }
                    Err(err) => {
                        self.kubelet.events.record(
                            pod_ref(pod, None),
                            Type::Warning,
                            "FailedCreatePodSandBox",
                            format!("Failed to create pod sandbox: {err}"),
                        );
                        self.post_status(pod, &snap, None).await;
                        return Duration::from_secs(5);
                    }
                }
            }
        };
        let snap = if snap.ready_sandbox().map(|s| &s.id) == Some(&sandbox_id) {
            snap
        } else {
            match self.snapshot().await {
                Ok(s) => s,
                Err(_) => return Duration::from_secs(1),
            }
        };
        let sandbox = Sandbox {
            snap: &snap,
            id: &sandbox_id,
            config: &sandbox_config,
            pod_ip: &pod_ip,
        };
        let spec_ = pod.spec.clone().unwrap_or_default();
        let policy = spec_
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());

        // Init containers in order; sidecars start in their place and keep running.
        let mut initialized = true;
        for c in spec_.init_containers.iter().flatten() {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let latest = snap.latest(&c.name, &sandbox_id).cloned();
            match latest {
                Some(o) if o.running() => {
                    self.ensure_probes(pod, c, &o, &pod_ip);
                    if sidecar {
                        if self.liveness_failed(c, &o) {
                            self.kill_for_restart(pod, c, &o).await;
                        }
                        if c.startup_probe.is_some()
                            && self.kubelet.pods.probes.get(&o.id, probes::Kind::Startup)
                                != Some(true)
                        {
                            initialized = false;
                            break;
                        }
                        continue;
                    }
                    initialized = false;
                    break;
                }
                Some(o) if o.succeeded() && !sidecar => continue,
                Some(o) if o.exited() && !sidecar && policy == "Never" => {
                    // A failed init container fails the pod.
                    self.terminal = Some("Failed".into());
                    initialized = false;
                    break;
                }
                other => {
                    if let Some(wait) = self
                        .start_or_backoff(pod, c, other.as_ref(), &sandbox)
                        .await
                    {
                        next = next.min(wait);
                    }
                    initialized = false;
                    break;
                }
            }
        }

        if initialized {
            for c in &spec_.containers {
                let latest = snap.latest(&c.name, &sandbox_id).cloned();
                match latest {
                    Some(o) if o.running() => {
                        self.waiting.remove(&c.name);
                        self.ensure_probes(pod, c, &o, &pod_ip);
                        if self.liveness_failed(c, &o) {
                            self.kill_for_restart(pod, c, &o).await;
                            next = Duration::ZERO;
                        }
                    }
                    Some(o) if o.exited() => {
                        let restart = match policy.as_str() {
                            "Always" => true,
                            "OnFailure" => o.exit_code != 0,
                            _ => false,
                        };
                        self.stop_probes(&o.id);
                        if restart
                            && let Some(wait) =
                                self.start_or_backoff(pod, c, Some(&o), &sandbox).await
                        {
                            next = next.min(wait);
                        }
                    }
                    other => {
                        if let Some(wait) = self
                            .start_or_backoff(pod, c, other.as_ref(), &sandbox)
                            .await
                        {
                            next = next.min(wait);
                        }
                    }
                }
            }
        }

        let snap = self.snapshot().await.unwrap_or(snap);
        self.collect_garbage(&snap, &sandbox_id).await;
        let status = self.post_status(pod, &snap, Some(pod_ip.clone())).await;
        if let Some(phase) = status
            .and_then(|s| s.phase)
            .filter(|p| p == "Succeeded" || p == "Failed")
        {
            self.terminal = Some(phase);
            self.stop_everything(pod, &snap, 0).await;
        }
        next
    }

    async fn sandbox_ip(&self, pod: &Pod, sandbox_id: &str) -> String {
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
        {
            return self.kubelet.host_ip.to_string();
        }
        match self.kubelet.runtime.pod_sandbox_status(sandbox_id).await {
            Ok(s) => s.network.map(|n| n.ip).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    fn liveness_failed(&self, c: &Container, o: &Observed) -> bool {
        let probes = &self.kubelet.pods.probes;
        (c.liveness_probe.is_some() && probes.get(&o.id, probes::Kind::Liveness) == Some(false))
            || (c.startup_probe.is_some()
                && probes.get(&o.id, probes::Kind::Startup) == Some(false))
    }

    fn ensure_probes(&mut self, pod: &Pod, c: &Container, o: &Observed, pod_ip: &str) {
        if self.probe_tasks.contains_key(&o.id) {
            return;
        }
        let tasks = probes::start(
            &self.kubelet,
            c,
            &o.id,
            pod_ip,
            &self.wake,
            self.probe_failed.clone(),
            pod_ref(pod, None),
        );
        self.probe_tasks.insert(o.id.clone(), tasks);
    }

    fn stop_probes(&mut self, id: &str) {
        if let Some(tasks) = self.probe_tasks.remove(id) {
            tasks.iter().for_each(|t| t.abort());
        }
    }

    async fn kill_for_restart(&mut self, pod: &Pod, c: &Container, o: &Observed) {
        let message = self
            .probe_failed
            .lock()
            .unwrap()
            .remove(&c.name)
            .unwrap_or_else(|| {
                format!(
                    "Container {} failed liveness probe, will be restarted",
                    c.name
                )
            });
        self.kubelet.events.record(
            pod_ref(pod, Some(field_path(c))),
            Type::Normal,
            "Killing",
            message,
        );
        self.stop_probes(&o.id);
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        self.stop_container(pod, c, &o.id, grace).await;
    }

    /// Starts a container unless its crash-loop backoff says wait; returns
    /// how long to wait when it does.
    async fn start_or_backoff(
        &mut self,
        pod: &Pod,
        c: &Container,
        previous: Option<&Observed>,
        sandbox: &Sandbox<'_>,
    ) -> Option<Duration> {
        let Sandbox {
            snap,
            id: sandbox_id,
            config: sandbox_config,
            pod_ip,
        } = *sandbox;
        if let Some(prev) = previous.filter(|p| p.exited()) {
            // How long ago it exited (a runtime that reports no finish time
            // counts as just now).
            let ago = Duration::from_nanos(
                (jiff::Timestamp::now().as_nanosecond() as i64 - prev.finished_at).max(0) as u64,
            );
            let finished = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
            let entry = self.backoff.get(&c.name).copied();
            match entry {
                Some((delay, last)) if last.elapsed() < BACKOFF_RESET => {
                    let since = finished.elapsed();
                    if since < delay {
                        let message = format!(
                            "back-off {}s restarting failed container={} pod={}_{}({})",
                            delay.as_secs(),
                            c.name,
                            pod.metadata.name.as_deref().unwrap_or_default(),
                            pod.metadata.namespace.as_deref().unwrap_or_default(),
                            self.uid
                        );
                        if self.waiting.get(&c.name).map(|w| w.0.as_str())
                            != Some("CrashLoopBackOff")
                        {
                            self.kubelet.events.record(
                                pod_ref(pod, Some(field_path(c))),
                                Type::Warning,
                                "BackOff",
                                format!(
                                    "Back-off restarting failed container {} in pod {}",
                                    c.name,
                                    name(pod)
                                ),
                            );
                        }
                        self.waiting
                            .insert(c.name.clone(), ("CrashLoopBackOff".into(), message));
                        return Some(delay - since);
                    }
                    self.backoff.insert(
                        c.name.clone(),
                        ((delay * 2).min(BACKOFF_MAX), Instant::now()),
                    );
                }
                _ => {
                    self.backoff
                        .insert(c.name.clone(), (BACKOFF_START, Instant::now()));
                }
            }
        }
        let attempt = snap.next_attempt(&c.name);
        let started = Instant::now();
        match self
            .start_container(pod, c, sandbox_id, sandbox_config, pod_ip, attempt)
            .await
        {
            Ok(()) => {
                tracing::debug!(pod = %name(pod), container = %c.name, took = ?started.elapsed(), "container started");
                self.waiting.remove(&c.name);
                None
            }
            Err((reason, message, retry)) => {
                self.waiting.insert(c.name.clone(), (reason, message));
                Some(retry)
            }
        }
    }

    /// Pulls the image if needed, then creates and starts the container and
    /// runs its postStart hook. An error is (waiting reason, message, retry in).
    async fn start_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
        pod_ip: &str,
        attempt: u32,
    ) -> Result<(), (String, String, Duration)> {
        let reference = pod_ref(pod, Some(field_path(c)));
        let events = self.kubelet.events.clone();
        let image = c.image.clone().unwrap_or_default();
        let image_ref = self.ensure_image(pod, c, &image, sandbox_config).await?;
        let volumes = self
            .volumes
            .as_ref()
            .map(|(v, _)| v.clone())
            .unwrap_or_default();
        let ctx = spec::ContainerContext {
            volumes: &volumes,
            pod_ip,
            attempt,
        };
        let config = spec::container_config(&self.kubelet, pod, c, &image_ref, &ctx)
            .await
            .map_err(|message| {
                events.record(
                    reference.clone(),
                    Type::Warning,
                    "Failed",
                    format!("Error: {message}"),
                );
                (
                    "CreateContainerConfigError".to_string(),
                    message,
                    Duration::from_secs(2),
                )
            })?;
        let runtime = &self.kubelet.runtime;
        let id = runtime
            .create_container(sandbox_id, config, sandbox_config.clone())
            .await
            .map_err(|err| {
                events.record(
                    reference.clone(),
                    Type::Warning,
                    "Failed",
                    format!("Error: {err}"),
                );
                (
                    "CreateContainerError".to_string(),
                    err.to_string(),
                    Duration::from_secs(2),
                )
            })?;
        events.record(
            reference.clone(),
            Type::Normal,
            "Created",
            format!("Created container {}", c.name),
        );
        if let Err(err) = runtime.start_container(&id).await {
            events.record(
                reference.clone(),
                Type::Warning,
                "Failed",
                format!("Error: {err}"),
            );
            return Err((
                "RunContainerError".into(),
                err.to_string(),
                Duration::from_secs(2),
            ));
        }
        events.record(
            reference.clone(),
            Type::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            let handler = probes::Handler {
                exec: hook.exec.and_then(|e| e.command),
                http: hook.http_get,
                tcp: hook.tcp_socket.map(|t| (t.host, t.port)),
                grpc: None,
            };
            if let Some(sleep) = hook.sleep {
                tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
            } else if let probes::Outcome::Failure(message) = probes::run_handler(
                runtime.as_ref(),
                c,
                &id,
                pod_ip,
                handler,
                Duration::from_secs(30),
            )
            .await
            {
                events.record(
                    reference.clone(),
                    Type::Warning,
                    "FailedPostStartHook",
                    message.clone(),
                );
                let _ = runtime.stop_container(&id, 0).await;
                return Err(("PostStartHookError".into(), message, Duration::from_secs(1)));
            }
        }
        Ok(())
    }

    /// The image reference to create the container from, pulling per
    /// `imagePullPolicy` with the pod's pull secrets.
    async fn ensure_image(
        &mut self,
        pod: &Pod,
        c: &Container,
        image: &str,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<String, (String, String, Duration)> {
        let reference = pod_ref(pod, Some(field_path(c)));
        let events = self.kubelet.events.clone();
        let runtime = &self.kubelet.runtime;
        let latest_tag = !image.contains('@')
            && image
                .rsplit('/')
                .next()
                .is_some_and(|last| !last.contains(':') || last.ends_with(":latest"));
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if latest_tag {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let present = runtime.image_status(image).await.ok().flatten();
        match (policy.as_str(), &present) {
            ("Never", None) => {
                let message =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                events.record(
                    reference,
                    Type::Warning,
                    "ErrImageNeverPull",
                    message.clone(),
                );
                return Err(("ErrImageNeverPull".into(), message, Duration::from_secs(10)));
            }
            ("Never", Some(i)) | ("IfNotPresent", Some(i)) => {
                events.record(
                    reference,
                    Type::Normal,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
                return Ok(if i.id.is_empty() {
                    image.to_string()
                } else {
                    i.id.clone()
                });
            }
            _ => {}
        }
        if let Some((delay, at)) = self.image_backoff.get(image).copied()
            && at.elapsed() < delay
        {
            let message = format!("Back-off pulling image \"{image}\"");
            return Err(("ImagePullBackOff".into(), message, delay - at.elapsed()));
        }
        events.record(
            reference.clone(),
            Type::Normal,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let started = Instant::now();
        let auth = self.pull_auth(pod, image).await;
        let mut result = runtime
            .pull_image(image, auth.first().cloned(), Some(sandbox_config.clone()))
            .await;
        for other in auth.iter().skip(1) {
            if result.is_ok() {
                break;
            }
            result = runtime
                .pull_image(image, Some(other.clone()), Some(sandbox_config.clone()))
                .await;
        }
        match result {
            Ok(image_ref) => {
                self.image_backoff.remove(image);
                events.record(
                    reference,
                    Type::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s",
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ok(image_ref)
            }
            Err(err) => {
                let delay = self
                    .image_backoff
                    .get(image)
                    .map(|(d, _)| (*d * 2).min(BACKOFF_MAX))
                    .unwrap_or(BACKOFF_START);
                self.image_backoff
                    .insert(image.to_string(), (delay, Instant::now()));
                let message = format!("Failed to pull image \"{image}\": {err}");
                events.record(reference.clone(), Type::Warning, "Failed", message.clone());
                events.record(reference, Type::Warning, "Failed", "Error: ErrImagePull");
                Err(("ErrImagePull".into(), message, delay))
            }
        }
    }

    async fn pull_auth(&self, pod: &Pod, image: &str) -> Vec<api::AuthConfig> {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let secrets: Api<Secret> = Api::namespaced(self.kubelet.client.clone(), &namespace);
        let mut found = Vec::new();
        for r in pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
        {
            let Ok(Some(secret)) = secrets.get_opt(&r.name).await else {
                continue;
            };
            let data = secret.data.unwrap_or_default();
            let Some(config) = data.get(".dockerconfigjson").or(data.get(".dockercfg")) else {
                continue;
            };
            if let Some((username, password)) = volumes::registry_auth(&config.0, image) {
                found.push(api::AuthConfig {
                    username,
                    password,
                    server_address: volumes::image_registry(image).to_string(),
                    ..Default::default()
                });
            }
        }
        found
    }

    /// Runs the preStop hook, then stops the container, giving it what is
    /// left of the grace period.
    async fn stop_container(&self, pod: &Pod, c: &Container, id: &str, grace: i64) {
        let started = Instant::now();
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone())
            && grace > 0
        {
            let budget = Duration::from_secs(grace as u64);
            let pod_ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_default();
            let run = async {
                if let Some(sleep) = hook.sleep {
                    tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
                    return probes::Outcome::Success;
                }
                let handler = probes::Handler {
                    exec: hook.exec.and_then(|e| e.command),
                    http: hook.http_get,
                    tcp: hook.tcp_socket.map(|t| (t.host, t.port)),
                    grpc: None,
                };
                probes::run_handler(
                    self.kubelet.runtime.as_ref(),
                    c,
                    id,
                    &pod_ip,
                    handler,
                    budget,
                )
                .await
            };
            if let Ok(probes::Outcome::Failure(message)) = tokio::time::timeout(budget, run).await {
                self.kubelet.events.record(
                    pod_ref(pod, Some(field_path(c))),
                    Type::Warning,
                    "FailedPreStopHook",
                    message,
                );
            }
        }
        let left = (grace - started.elapsed().as_secs() as i64).max(if grace > 0 { 2 } else { 0 });
        if let Err(err) = self.kubelet.runtime.stop_container(id, left).await
            && !err.is_not_found()
        {
            tracing::warn!(pod = %name(pod), container = %c.name, "stopping: {err}");
        }
    }

    /// Stops every running container (in parallel, with preStop hooks) and
    /// the sandboxes. `grace` 0 means the pod's own grace period.
    async fn stop_everything(&mut self, pod: &Pod, snap: &Snapshot, grace: i64) {
        let spec_ = pod.spec.clone().unwrap_or_default();
        let grace = if grace > 0 {
            grace
        } else {
            spec_.termination_grace_period_seconds.unwrap_or(30)
        };
        let running: Vec<&Observed> = snap
            .containers
            .iter()
            .filter(|c| c.running() || c.state == api::ContainerState::ContainerCreated as i32)
            .collect();
        let all: Vec<Container> = spec_
            .containers
            .iter()
            .chain(spec_.init_containers.iter().flatten())
            .cloned()
            .collect();
        let this = &*self;
        let stops = running.iter().map(|o| {
            let c = all
                .iter()
                .find(|c| c.name == o.name)
                .cloned()
                .unwrap_or(Container {
                    name: o.name.clone(),
                    ..Default::default()
                });
            this.kubelet.events.record(
                pod_ref(pod, Some(field_path(&c))),
                Type::Normal,
                "Killing",
                format!("Stopping container {}", c.name),
            );
            let id = o.id.clone();
            async move { this.stop_container(pod, &c, &id, grace).await }
        });
        futures::future::join_all(stops).await;
        for o in running {
            self.stop_probes(&o.id);
        }
        for s in snap
            .sandboxes
            .iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
        {
            if let Err(err) = self.kubelet.runtime.stop_pod_sandbox(&s.id).await {
                tracing::warn!(pod = %name(pod), "stopping sandbox: {err}");
            }
        }
    }

    /// Stops and removes everything the pod has on the node.
    async fn terminate(&mut self, pod: &Pod) {
        let Ok(snap) = self.snapshot().await else {
            return;
        };
        let grace = match pod.metadata.deletion_grace_period_seconds {
            Some(g) => g.max(0),
            None => pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30),
        };
        if !snap.sandboxes.is_empty() || !snap.containers.is_empty() {
            self.stop_everything(pod, &snap, grace.max(1)).await;
            let ids: Vec<String> = snap.sandboxes.iter().map(|s| s.id.clone()).collect();
            remove_pod_runtime_objects(&self.kubelet, &self.uid, &ids, 0).await;
        }
        if self.kubelet.config.manage_host
            && let Err(err) = volumes::teardown(&self.kubelet, &self.uid).await
        {
            tracing::warn!(pod = %name(pod), "tearing down volumes: {err}");
        }
    }

    /// Tells the API the pod is gone from the node (delete with grace 0 and
    /// the uid as precondition, as upstream's status manager does).
    async fn confirm_deletion(&mut self, pod: &Pod) {
        if self.deleted_confirmed {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(
            self.kubelet.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods
            .delete(pod.metadata.name.as_deref().unwrap_or_default(), &params)
            .await
        {
            Ok(_) => self.deleted_confirmed = true,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                self.deleted_confirmed = true
            }
            Err(err) => tracing::warn!(pod = %name(pod), "confirming deletion: {err}"),
        }
    }

    /// Keeps the newest two containers per name and removes exited ones
    /// beyond that, and sandboxes older than the current one once empty.
    async fn collect_garbage(&self, snap: &Snapshot, current_sandbox: &str) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for c in &snap.containers {
            let n = seen.entry(c.name.as_str()).or_default();
            *n += 1;
            if *n > 2 && c.exited() {
                let _ = self.kubelet.runtime.remove_container(&c.id).await;
                self.kubelet.pods.probes.forget(&c.id);
            }
        }
        for s in snap.sandboxes.iter().filter(|s| {
            s.id != current_sandbox && s.state != api::PodSandboxState::SandboxReady as i32
        }) {
            if !snap
                .containers
                .iter()
                .any(|c| c.sandbox_id == s.id && c.running())
            {
                let _ = self.kubelet.runtime.remove_pod_sandbox(&s.id).await;
            }
        }
    }

    /// Computes the status and patches it when it changed; returns it.
    async fn post_status(
        &mut self,
        pod: &Pod,
        snap: &Snapshot,
        pod_ip: Option<String>,
    ) -> Option<PodStatus> {
        let probe_results = &self.kubelet.pods.probes;
        let probe = |c: &Container, o: &Observed| {
            let started = c.startup_probe.is_none()
                || probe_results.get(&o.id, probes::Kind::Startup) == Some(true);
            let ready = started
                && (c.readiness_probe.is_none()
                    || probe_results.get(&o.id, probes::Kind::Readiness) == Some(true));
            (ready, started)
        };
        let sandbox_ready = snap.ready_sandbox().is_some();
        let pod_ip = pod_ip
            .filter(|ip| !ip.is_empty())
            .or_else(|| pod.status.as_ref().and_then(|s| s.pod_ip.clone()));
        let inputs = status::Inputs {
            containers: &snap.containers,
            sandbox_ready,
            pod_ip,
            host_ip: self.kubelet.host_ip.to_string(),
            waiting: &self.waiting,
            probe: &probe,
            runtime_name: if self.runtime_name.is_empty() {
                "containerd"
            } else {
                &self.runtime_name
            },
            start_time: self.start_time.clone(),
            terminal_phase: self.terminal.clone(),
        };
        let computed = status::compute(pod, &inputs);
        if self.posted.as_ref() == Some(&computed) {
            return Some(computed);
        }
        let current = pod.status.clone().unwrap_or_default();
        if same_ignoring_times(&current, &computed) && self.posted.is_some() {
            self.posted = Some(computed.clone());
            return Some(computed);
        }
        let pods: Api<Pod> = Api::namespaced(
            self.kubelet.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        // A static pod's status goes to its mirror pod, which has its own uid.
        let patch = if super::static_pods::is_static(pod) {
            serde_json::json!({ "status": computed })
        } else {
            serde_json::json!({"metadata": {"uid": self.uid}, "status": computed})
        };
        match pods
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.posted = Some(computed.clone()),
            Err(err) => tracing::debug!(pod = %name(pod), "posting status: {err}"),
        }
        Some(computed)
    }
}

fn same_ignoring_times(a: &PodStatus, b: &PodStatus) -> bool {
    let strip = |s: &PodStatus| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(conds) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for c in conds {
                if let Some(o) = c.as_object_mut() {
                    o.remove("lastTransitionTime");
                    o.remove("lastProbeTime");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

fn field_path(c: &Container) -> String {
    format!("spec.containers{{{}}}", c.name)
}

fn name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Stops and removes a pod's containers and sandboxes, and its cgroup.
pub async fn remove_pod_runtime_objects(
    kubelet: &Kubelet,
    uid: &str,
    sandbox_ids: &[String],
    grace: i64,
) {
    let runtime = &kubelet.runtime;
    let filter = api::ContainerFilter {
        label_selector: pod_uid_selector(uid),
        ..Default::default()
    };
    if let Ok(containers) = runtime.list_containers(Some(filter)).await {
        let stops = containers
            .iter()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .map(|c| {
                let grace = c
                    .annotations
                    .get(labels::GRACE_PERIOD)
                    .and_then(|g| g.parse().ok())
                    .unwrap_or(grace)
                    .min(grace.max(0));
                runtime.stop_container(&c.id, grace)
            });
        futures::future::join_all(stops).await;
        for c in &containers {
            let _ = runtime.remove_container(&c.id).await;
            kubelet.pods.probes.forget(&c.id);
        }
    }
    for id in sandbox_ids {
        if let Err(err) = runtime.stop_pod_sandbox(id).await
            && !err.is_not_found()
        {
            tracing::warn!(%uid, "stopping sandbox {id}: {err}");
        }
        if let Err(err) = runtime.remove_pod_sandbox(id).await
            && !err.is_not_found()
        {
            tracing::warn!(%uid, "removing sandbox {id}: {err}");
        }
    }
    if kubelet.config.manage_host {
        let root = &kubelet.config.cgroup_root;
        for path in [
            format!("{root}/pod{uid}"),
            format!("{root}/burstable/pod{uid}"),
            format!("{root}/besteffort/pod{uid}"),
        ] {
            if let Err(err) = crate::cgroups::remove_pod_cgroup(&path) {
                tracing::warn!(%uid, "removing cgroup {path}: {err}");
            }
        }
    }
}
