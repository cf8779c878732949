//! The container runtime as the kubelet sees it: the CRI v1 calls it makes,
//! behind one trait so the same pod logic drives containerd ([`remote`]) or an
//! in-process fake ([`fake`], used by unit tests and hollow nodes).

pub mod fake;
pub mod remote;

use async_trait::async_trait;
pub use k8s_cri::v1 as api;

/// Label keys the kubelet puts on every sandbox and container it creates, as
/// upstream's kubelet does; they let it find a pod's objects again after a
/// restart.
pub mod labels {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// Annotation: how many times the container was restarted before this one.
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    /// Annotation: the grace period the pod asked for, used when stopping
    /// containers found without their pod.
    pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
}

/// A CRI failure, with the gRPC status when there was one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("connecting to the runtime: {0}")]
    Connect(String),
}

impl Error {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Status(s) if s.code() == tonic::Code::NotFound)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What an exec of a command in a container returned.
#[derive(Debug, Clone, Default)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// The CRI v1 runtime and image services, as far as the kubelet uses them.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's name and version (`containerd`, `1.6.20`).
    async fn version(&self) -> Result<api::VersionResponse>;
    /// Whether the runtime and its network are ready.
    async fn status(&self) -> Result<api::RuntimeStatus>;

    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<String>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus>;
    async fn list_pod_sandbox(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>>;

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Result<Vec<api::Container>>;
    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus>;

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_seconds: i64,
    ) -> Result<ExecResult>;
    /// Prepares a streaming exec and returns the URL serving it.
    async fn exec(&self, request: api::ExecRequest) -> Result<String>;
    /// Prepares a streaming attach and returns the URL serving it.
    async fn attach(&self, request: api::AttachRequest) -> Result<String>;
    /// Prepares port forwarding into a sandbox and returns the URL serving it.
    async fn port_forward(&self, request: api::PortForwardRequest) -> Result<String>;
    async fn list_container_stats(&self) -> Result<Vec<api::ContainerStats>>;

    async fn list_images(&self) -> Result<Vec<api::Image>>;
    /// The image if the runtime has it.
    async fn image_status(&self, image: &str) -> Result<Option<api::Image>>;
    /// Pulls an image and returns its reference (an id the runtime knows it by).
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String>;
    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>>;
}

/// A filter selecting a pod's sandboxes or containers by its uid label.
pub fn pod_uid_selector(uid: &str) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([(labels::POD_UID.to_string(), uid.to_string())])
}
