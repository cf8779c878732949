//! The CRI client for a real runtime (containerd) over its unix socket.

use super::{Error, ExecResult, Result, Runtime, api};
use api::image_service_client::ImageServiceClient;
use api::runtime_service_client::RuntimeServiceClient;
use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// A CRI runtime reached over gRPC.
#[derive(Clone)]
pub struct Remote {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// Messages such as a full image list or container stats can exceed tonic's
/// 4 MiB default; upstream's kubelet allows 16 MiB.
const MAX_MESSAGE: usize = 16 << 20;

impl Remote {
    /// Connects to `endpoint`: `unix:///run/containerd/containerd.sock` or a
    /// plain socket path, as upstream's `--container-runtime-endpoint` takes.
    pub async fn connect(endpoint: &str) -> Result<Remote> {
        let path = PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint));
        let channel = Endpoint::try_from("http://[::]:50051")
            .map_err(|e| Error::Connect(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| Error::Connect(format!("{endpoint}: {e}")))?;
        Ok(Remote {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        })
    }
}

#[async_trait]
impl Runtime for Remote {
    async fn version(&self) -> Result<api::VersionResponse> {
        let req = api::VersionRequest {
            version: "v1".into(),
        };
        Ok(self.runtime.clone().version(req).await?.into_inner())
    }

    async fn status(&self) -> Result<api::RuntimeStatus> {
        let resp = self
            .runtime
            .clone()
            .status(api::StatusRequest { verbose: false })
            .await?;
        Ok(resp.into_inner().status.unwrap_or_default())
    }

    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<String> {
        let req = api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        Ok(self
            .runtime
            .clone()
            .run_pod_sandbox(req)
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime.clone().stop_pod_sandbox(req).await?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime.clone().remove_pod_sandbox(req).await?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        let resp = self
            .runtime
            .clone()
            .pod_sandbox_status(req)
            .await?
            .into_inner();
        Ok(resp.status.unwrap_or_default())
    }

    async fn list_pod_sandbox(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>> {
        let req = api::ListPodSandboxRequest { filter };
        Ok(self
            .runtime
            .clone()
            .list_pod_sandbox(req)
            .await?
            .into_inner()
            .items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        let req = api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(self
            .runtime
            .clone()
            .create_container(req)
            .await?
            .into_inner()
            .container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let req = api::StartContainerRequest {
            container_id: id.into(),
        };
        self.runtime.clone().start_container(req).await?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        let req = api::StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_seconds,
        };
        let mut request = tonic::Request::new(req);
        // The runtime waits up to the grace period before it kills.
        request.set_timeout(Duration::from_secs(timeout_seconds.max(0) as u64 + 30));
        self.runtime.clone().stop_container(request).await?;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let req = api::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.runtime.clone().remove_container(req).await?;
        Ok(())
    }

    async fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Result<Vec<api::Container>> {
        let req = api::ListContainersRequest { filter };
        Ok(self
            .runtime
            .clone()
            .list_containers(req)
            .await?
            .into_inner()
            .containers)
    }

    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        let req = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let resp = self
            .runtime
            .clone()
            .container_status(req)
            .await?
            .into_inner();
        Ok(resp.status.unwrap_or_default())
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_seconds: i64,
    ) -> Result<ExecResult> {
        let req = api::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: timeout_seconds,
        };
        let resp = self.runtime.clone().exec_sync(req).await?.into_inner();
        Ok(ExecResult {
            stdout: resp.stdout,
            stderr: resp.stderr,
            exit_code: resp.exit_code,
        })
    }

    async fn exec(&self, request: api::ExecRequest) -> Result<String> {
        Ok(self.runtime.clone().exec(request).await?.into_inner().url)
    }

    async fn attach(&self, request: api::AttachRequest) -> Result<String> {
        Ok(self.runtime.clone().attach(request).await?.into_inner().url)
    }

    async fn port_forward(&self, request: api::PortForwardRequest) -> Result<String> {
        Ok(self
            .runtime
            .clone()
            .port_forward(request)
            .await?
            .into_inner()
            .url)
    }

    async fn list_container_stats(&self) -> Result<Vec<api::ContainerStats>> {
        let req = api::ListContainerStatsRequest { filter: None };
        Ok(self
            .runtime
            .clone()
            .list_container_stats(req)
            .await?
            .into_inner()
            .stats)
    }

    async fn list_images(&self) -> Result<Vec<api::Image>> {
        let req = api::ListImagesRequest { filter: None };
        Ok(self
            .images
            .clone()
            .list_images(req)
            .await?
            .into_inner()
            .images)
    }

    async fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        let req = api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        Ok(self
            .images
            .clone()
            .image_status(req)
            .await?
            .into_inner()
            .image)
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        let req = api::PullImageRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth,
            sandbox_config,
        };
        Ok(self
            .images
            .clone()
            .pull_image(req)
            .await?
            .into_inner()
            .image_ref)
    }

    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        let resp = self
            .images
            .clone()
            .image_fs_info(api::ImageFsInfoRequest {})
            .await?;
        Ok(resp.into_inner().image_filesystems)
    }
}
