//! The Skiff kubelet: the agent on every node. It registers the node, renews
//! its lease, watches the pods bound to it and runs them through a CRI runtime
//! (containerd, or an in-process fake for hollow nodes), and reports their
//! status back to the API server.
//!
//! The pieces:
//! - [`cri`]: the runtime calls, behind a trait;
//! - [`node`]: registration, node status and the node lease;
//! - [`pods`]: one worker per pod, comparing what the API wants with what the
//!   runtime reports and acting on the difference;
//! - [`eviction`]: node-pressure eviction under hard thresholds;
//! - [`server`]: the HTTPS endpoint on :10250 (logs, exec, health, pods).

pub mod cgroups;
pub mod cni;
pub mod config;
pub mod cri;
pub mod events;
pub mod eviction;
pub mod node;
pub mod pods;
pub mod server;
mod sys;

pub use config::Config;

use anyhow::Context as _;
use std::sync::Arc;

/// Everything the kubelet's tasks share.
pub struct Kubelet {
    pub config: Config,
    pub client: kube::Client,
    pub runtime: Arc<dyn cri::Runtime>,
    pub events: events::Recorder,
    /// The node's address as reported in its status (`status.hostIP` of pods).
    pub host_ip: std::net::IpAddr,
    pub pods: pods::Manager,
}

/// Runs a kubelet until the process is stopped.
pub async fn run(
    config: Config,
    client: kube::Client,
    runtime: Arc<dyn cri::Runtime>,
) -> anyhow::Result<()> {
    let host_ip = config.node_ip.unwrap_or_else(sys::default_ip);
    let events = events::Recorder::new(client.clone(), &config.node_name);
    let kubelet = Arc::new(Kubelet {
        pods: pods::Manager::default(),
        config,
        client,
        runtime,
        events,
        host_ip,
    });
    sys::set_own_oom_score();
    tokio::fs::create_dir_all(kubelet.config.root_dir.join("pods"))
        .await
        .with_context(|| format!("creating {}", kubelet.config.root_dir.display()))?;

    wait_for_runtime(&kubelet).await;
    if kubelet.config.write_cni_config {
        cni::ensure_config(&kubelet).await?;
    }
    node::register(&kubelet)
        .await
        .context("registering the node")?;
    tokio::spawn(node::status_loop(kubelet.clone()));
    tokio::spawn(node::lease_loop(kubelet.clone()));
    tokio::spawn(eviction::run(kubelet.clone()));
    // The first sample the node's CPU rate is measured from.
    sys::cpu_usage_nano_cores();
    if kubelet.config.port != 0 {
        let k = kubelet.clone();
        tokio::spawn(async move {
            if let Err(err) = server::serve(k).await {
                tracing::error!("kubelet server stopped: {err:#}");
            }
        });
    }
    pods::run(kubelet).await
}

/// Waits until the runtime answers; a kubelet started before containerd
/// carries on once it is there.
async fn wait_for_runtime(kubelet: &Kubelet) {
    let mut warned = false;
    loop {
        match kubelet.runtime.version().await {
            Ok(v) => {
                tracing::info!(runtime = %v.runtime_name, version = %v.runtime_version, "container runtime is up");
                return;
            }
            Err(err) => {
                if !warned {
                    tracing::warn!("waiting for the container runtime: {err}");
                    warned = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}
