//! `skiff-dns`, with CoreDNS's ports and the flags a kube component takes.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

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
        ..skiff_dns::Config::new(
            skiff_component::client_config(o.kubeconfig.as_deref(), o.master.as_deref()).await?,
        )
    };
    let shutdown = skiff_component::shutdown_signal()?;
    skiff_dns::run(config, shutdown)
        .await
        .context("skiff-dns failed")
}
