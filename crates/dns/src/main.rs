//! `skiff-dns`, with CoreDNS's ports and the flags a kube component takes.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Skiff cluster DNS: the Kubernetes DNS-based service discovery records
/// for the cluster domain; other names go to the upstream resolvers.
#[derive(Parser)]
#[command(name = "skiff-dns", version)]
struct Options {
    /// kubeconfig with the API server's address and credentials (default:
    /// $KUBECONFIG, ~/.kube/config, then the in-cluster service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The API server's address, overriding the kubeconfig's.
    #[arg(long)]
    master: Option<String>,
    /// The cluster domain served authoritatively.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Where DNS is served, over UDP and TCP.
    #[arg(long, default_value = "0.0.0.0:53")]
    dns_address: SocketAddr,
    /// Where GET /health answers 200 while the process runs.
    #[arg(long, default_value = "0.0.0.0:8080")]
    health_address: SocketAddr,
    /// Where GET /ready answers 200 once the watches have synced.
    #[arg(long, default_value = "0.0.0.0:8181")]
    ready_address: SocketAddr,
    /// Where GET /metrics serves Prometheus metrics.
    #[arg(long, default_value = "0.0.0.0:9153")]
    metrics_address: SocketAddr,
    /// The resolv.conf whose nameservers get every other name.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// TTL, in seconds, of the records of the cluster zone.
    #[arg(long, default_value_t = 30)]
    ttl: u32,
}

async fn kube_config(o: &Options) -> anyhow::Result<kube::Config> {
    let mut config = match &o.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("using --kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no --kubeconfig, and none found in $KUBECONFIG, ~/.kube/config or the pod's service account")?,
    };
    if let Some(master) = &o.master {
        config.cluster_url = master
            .parse()
            .with_context(|| format!("--master {master:?}"))?;
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = skiff_dns::Config {
        cluster_domain: o.cluster_domain.clone(),
        dns_address: o.dns_address,
        health_address: Some(o.health_address),
        ready_address: Some(o.ready_address),
        metrics_address: Some(o.metrics_address),
        resolv_conf: o.resolv_conf.clone(),
        ttl: o.ttl,
        ..skiff_dns::Config::new(kube_config(&o).await?)
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    skiff_dns::run(config, shutdown)
        .await
        .context("skiff-dns failed")
}
