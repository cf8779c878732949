//! An in-process CRI runtime: sandboxes and containers are records in memory,
//! a started container runs until it is stopped or a test makes it exit.
//! Unit tests drive the pod logic with it, and hollow nodes run on it.

use super::{Error, ExecResult, Result, Runtime, api};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The fake runtime. Cheap enough that one process holds hundreds.
#[derive(Default)]
pub struct Fake {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Every call made, by method name, for tests to assert on.
    calls: Mutex<Vec<String>>,
}

#[derive(Default)]
struct State {
    sandboxes: BTreeMap<String, Sandbox>,
    containers: BTreeMap<String, Container>,
    images: BTreeMap<String, api::Image>,
    /// Container name → exit code the next start of it exits with at once.
    exit_on_start: HashMap<String, i32>,
    /// Image references PullImage refuses.
    unpullable: Vec<String>,
}

struct Sandbox {
    config: api::PodSandboxConfig,
    state: i32,
    created_at: i64,
    ip: String,
}

struct Container {
    sandbox_id: String,
    config: api::ContainerConfig,
    image_ref: String,
    state: i32,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    reason: String,
}

fn now_nanos() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

impl Fake {
    pub fn new() -> Fake {
        Fake::default()
    }

    /// Makes `image` present, as if pulled.
    pub fn add_image(&self, image: &str) {
        let mut state = self.state.lock().unwrap();
        let id = format!("sha256:{:064x}", state.images.len() + 1);
        state.images.insert(
            image.to_string(),
            api::Image {
                id,
                repo_tags: vec![image.to_string()],
                size: 1 << 20,
                ..Default::default()
            },
        );
    }

    /// Makes every later start of containers named `name` exit at once with `code`.
    pub fn exit_on_start(&self, name: &str, code: i32) {
        self.state
            .lock()
            .unwrap()
            .exit_on_start
            .insert(name.to_string(), code);
    }

    /// Makes pulls of `image` fail.
    pub fn refuse_pull(&self, image: &str) {
        self.state
            .lock()
            .unwrap()
            .unpullable
            .push(image.to_string());
    }

    /// Makes a running container exit with `code`, as if its process ended.
    pub fn exit_container(&self, id: &str, code: i32) {
        let mut state = self.state.lock().unwrap();
        if let Some(c) = state.containers.get_mut(id)
            && c.state == api::ContainerState::ContainerRunning as i32
        {
            c.state = api::ContainerState::ContainerExited as i32;
            c.exit_code = code;
            c.finished_at = now_nanos();
            c.reason = if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            };
        }
    }

    /// The calls made so far, by method name.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// How many sandboxes and containers exist, in any state.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        (state.sandboxes.len(), state.containers.len())
    }

    /// Ids of containers named `name`, oldest first.
    pub fn containers_named(&self, name: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        let mut found: Vec<_> = state
            .containers
            .iter()
            .filter(|(_, c)| c.config.metadata.as_ref().is_some_and(|m| m.name == name))
            .map(|(id, c)| (c.created_at, id.clone()))
            .collect();
        found.sort();
        found.into_iter().map(|(_, id)| id).collect()
    }

    fn record(&self, call: &str) {
        let mut calls = self.calls.lock().unwrap();
        // Hollow nodes run for hours: keep the record bounded.
        if calls.len() > 10_000 {
            calls.drain(..5_000);
        }
        calls.push(call.to_string());
    }

    fn id(&self) -> String {
        format!("{:064x}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

fn not_found(what: &str, id: &str) -> Error {
    Error::Status(tonic::Status::not_found(format!("{what} {id} not found")))
}

fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[async_trait]
impl Runtime for Fake {
    async fn version(&self) -> Result<api::VersionResponse> {
        Ok(api::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "0.1.0".into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn status(&self) -> Result<api::RuntimeStatus> {
        let ready = |kind: &str| api::RuntimeCondition {
            r#type: kind.into(),
            status: true,
            ..Default::default()
        };
        Ok(api::RuntimeStatus {
            conditions: vec![ready("RuntimeReady"), ready("NetworkReady")],
        })
    }

    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<String> {
        self.record("RunPodSandbox");
        let id = self.id();
        let n = self.next_id.load(Ordering::Relaxed);
        let ip = format!("10.244.{}.{}", (n >> 8) & 0xff, (n & 0xff).max(2));
        let sandbox = Sandbox {
            config,
            state: api::PodSandboxState::SandboxReady as i32,
            created_at: now_nanos(),
            ip,
        };
        self.state
            .lock()
            .unwrap()
            .sandboxes
            .insert(id.clone(), sandbox);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        self.record("StopPodSandbox");
        let mut state = self.state.lock().unwrap();
        let Some(sandbox) = state.sandboxes.get_mut(id) else {
            return Ok(());
        };
        sandbox.state = api::PodSandboxState::SandboxNotready as i32;
        let now = now_nanos();
        for c in state.containers.values_mut().filter(|c| c.sandbox_id == id) {
            if c.state == api::ContainerState::ContainerRunning as i32 {
                c.state = api::ContainerState::ContainerExited as i32;
                c.exit_code = 137;
                c.finished_at = now;
                c.reason = "Error".into();
            }
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.record("RemovePodSandbox");
        let mut state = self.state.lock().unwrap();
        state.sandboxes.remove(id);
        state.containers.retain(|_, c| c.sandbox_id != id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        let state = self.state.lock().unwrap();
        let sandbox = state
            .sandboxes
            .get(id)
            .ok_or_else(|| not_found("sandbox", id))?;
        Ok(api::PodSandboxStatus {
            id: id.into(),
            metadata: sandbox.config.metadata.clone(),
            state: sandbox.state,
            created_at: sandbox.created_at,
            network: Some(api::PodSandboxNetworkStatus {
                ip: sandbox.ip.clone(),
                additional_ips: vec![],
            }),
            labels: sandbox.config.labels.clone(),
            annotations: sandbox.config.annotations.clone(),
            ..Default::default()
        })
    }

    async fn list_pod_sandbox(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>> {
        let filter = filter.unwrap_or_default();
        let state = self.state.lock().unwrap();
        Ok(state
            .sandboxes
            .iter()
            .filter(|(id, s)| {
                (filter.id.is_empty() || &filter.id == *id)
                    && filter.state.as_ref().is_none_or(|f| f.state == s.state)
                    && labels_match(&filter.label_selector, &s.config.labels)
            })
            .map(|(id, s)| api::PodSandbox {
                id: id.clone(),
                metadata: s.config.metadata.clone(),
                state: s.state,
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        _sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        self.record("CreateContainer");
        let id = self.id();
        let mut state = self.state.lock().unwrap();
        if !state.sandboxes.contains_key(sandbox_id) {
            return Err(not_found("sandbox", sandbox_id));
        }
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image_ref = state
            .images
            .get(&image)
            .map(|i| i.id.clone())
            .unwrap_or(image);
        state.containers.insert(
            id.clone(),
            Container {
                sandbox_id: sandbox_id.into(),
                config,
                image_ref,
                state: api::ContainerState::ContainerCreated as i32,
                created_at: now_nanos(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.record("StartContainer");
        let mut state = self.state.lock().unwrap();
        let exit = {
            let c = state
                .containers
                .get(id)
                .ok_or_else(|| not_found("container", id))?;
            let name = c
                .config
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            state.exit_on_start.get(&name).copied()
        };
        let c = state.containers.get_mut(id).expect("checked above");
        let now = now_nanos();
        c.started_at = now;
        c.state = api::ContainerState::ContainerRunning as i32;
        if let Some(code) = exit {
            c.state = api::ContainerState::ContainerExited as i32;
            c.exit_code = code;
            c.finished_at = now;
            c.reason = if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            };
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, _timeout_seconds: i64) -> Result<()> {
        self.record("StopContainer");
        let mut state = self.state.lock().unwrap();
        if let Some(c) = state.containers.get_mut(id)
            && c.state != api::ContainerState::ContainerExited as i32
        {
            c.state = api::ContainerState::ContainerExited as i32;
            c.exit_code = 137;
            c.finished_at = now_nanos();
            c.reason = "Error".into();
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.record("RemoveContainer");
        self.state.lock().unwrap().containers.remove(id);
        Ok(())
    }

    async fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Result<Vec<api::Container>> {
        let filter = filter.unwrap_or_default();
        let state = self.state.lock().unwrap();
        Ok(state
            .containers
            .iter()
            .filter(|(id, c)| {
                (filter.id.is_empty() || &filter.id == *id)
                    && (filter.pod_sandbox_id.is_empty() || filter.pod_sandbox_id == c.sandbox_id)
                    && filter.state.as_ref().is_none_or(|f| f.state == c.state)
                    && labels_match(&filter.label_selector, &c.config.labels)
            })
            .map(|(id, c)| api::Container {
                id: id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: c.image_ref.clone(),
                state: c.state,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                ..Default::default()
            })
            .collect())
    }

    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        let state = self.state.lock().unwrap();
        let c = state
            .containers
            .get(id)
            .ok_or_else(|| not_found("container", id))?;
        Ok(api::ContainerStatus {
            id: id.into(),
            metadata: c.config.metadata.clone(),
            state: c.state,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: c.config.image.clone(),
            image_ref: c.image_ref.clone(),
            reason: c.reason.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            log_path: c.config.log_path.clone(),
            ..Default::default()
        })
    }

    async fn exec_sync(
        &self,
        id: &str,
        _cmd: Vec<String>,
        _timeout_seconds: i64,
    ) -> Result<ExecResult> {
        let state = self.state.lock().unwrap();
        let c = state
            .containers
            .get(id)
            .ok_or_else(|| not_found("container", id))?;
        let exit_code = if c.state == api::ContainerState::ContainerRunning as i32 {
            0
        } else {
            1
        };
        Ok(ExecResult {
            exit_code,
            ..Default::default()
        })
    }

    async fn exec(&self, _request: api::ExecRequest) -> Result<String> {
        Err(Error::Status(tonic::Status::unimplemented(
            "the fake runtime does not stream",
        )))
    }

    async fn attach(&self, _request: api::AttachRequest) -> Result<String> {
        Err(Error::Status(tonic::Status::unimplemented(
            "the fake runtime does not stream",
        )))
    }

    async fn port_forward(&self, _request: api::PortForwardRequest) -> Result<String> {
        Err(Error::Status(tonic::Status::unimplemented(
            "the fake runtime does not stream",
        )))
    }

    async fn list_container_stats(&self) -> Result<Vec<api::ContainerStats>> {
        Ok(Vec::new())
    }

    async fn list_images(&self) -> Result<Vec<api::Image>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .images
            .values()
            .cloned()
            .collect())
    }

    async fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        Ok(self.state.lock().unwrap().images.get(image).cloned())
    }

    async fn pull_image(
        &self,
        image: &str,
        _auth: Option<api::AuthConfig>,
        _sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        self.record("PullImage");
        if self
            .state
            .lock()
            .unwrap()
            .unpullable
            .iter()
            .any(|i| i == image)
        {
            return Err(Error::Status(tonic::Status::not_found(format!(
                "failed to pull and unpack image \"{image}\": not found"
            ))));
        }
        self.add_image(image);
        Ok(self.state.lock().unwrap().images[image].id.clone())
    }

    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        Ok(Vec::new())
    }
}
