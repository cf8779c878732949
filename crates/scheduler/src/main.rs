//! `skiff-scheduler`, with kube-scheduler's flag names.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Parser};
use skiff_scheduler::{KubeSchedulerConfiguration, LeaderElection, Serving, parse_go_duration};

/// The Skiff scheduler: places pods on nodes.
#[derive(Parser)]
#[command(name = "skiff-scheduler", version)]
struct Options {
    /// A KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1).
    #[arg(long)]
    config: Option<PathBuf>,
    /// kubeconfig with the API server's address and credentials (default:
    /// the config file's clientConnection.kubeconfig, $KUBECONFIG,
    /// ~/.kube/config, then the in-cluster service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The API server's address, overriding the kubeconfig's.
    #[arg(long)]
    master: Option<String>,
    /// Schedule only while holding the leader Lease, so replicas can run for HA.
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    leader_elect: bool,
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    leader_elect_lease_duration: Duration,
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    leader_elect_renew_deadline: Duration,
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    leader_elect_retry_period: Duration,
    /// The kind of lock: only `leases`.
    #[arg(long, default_value = "leases", value_parser = ["leases"])]
    leader_elect_resource_lock: String,
    #[arg(long, default_value = "kube-scheduler")]
    leader_elect_resource_name: String,
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// The HTTPS port for /healthz; 0 serves nothing.
    #[arg(long, default_value_t = 10259)]
    secure_port: u16,
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = Options::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let file = match &o.config {
        Some(path) => KubeSchedulerConfiguration::load(path)?,
        None => KubeSchedulerConfiguration::default(),
    };
    let from_file = file
        .client_connection
        .as_ref()
        .and_then(|c| c.kubeconfig.clone())
        .filter(|k| !k.is_empty())
        .map(PathBuf::from);
    let le_file = file.leader_election.clone().unwrap_or_default();
    let duration = |s: &Option<String>, flag: Duration| -> anyhow::Result<Duration> {
        match s {
            Some(s) => parse_go_duration(s).map_err(anyhow::Error::msg),
            None => Ok(flag),
        }
    };
    let leader_election = LeaderElection {
        lease_duration: duration(&le_file.lease_duration, o.leader_elect_lease_duration)?,
        renew_deadline: duration(&le_file.renew_deadline, o.leader_elect_renew_deadline)?,
        retry_period: duration(&le_file.retry_period, o.leader_elect_retry_period)?,
        resource_name: le_file
            .resource_name
            .clone()
            .unwrap_or(o.leader_elect_resource_name.clone()),
        resource_namespace: le_file
            .resource_namespace
            .clone()
            .unwrap_or(o.leader_elect_resource_namespace.clone()),
        ..LeaderElection::for_lease("kube-scheduler")
    };
    let config = skiff_scheduler::Config {
        kube: skiff_component::client_config(
            o.kubeconfig.clone().or(from_file).as_deref(),
            o.master.as_deref(),
        )
        .await?,
        leader_election: le_file
            .leader_elect
            .unwrap_or(o.leader_elect)
            .then_some(leader_election),
        serving: Some(Serving {
            secure_port: o.secure_port,
            bind_address: o.bind_address,
            tls_cert_file: o.tls_cert_file.clone(),
            tls_private_key_file: o.tls_private_key_file.clone(),
        }),
        scheduler: file,
    };
    let shutdown = skiff_component::shutdown_signal()?;
    match skiff_scheduler::run(config, shutdown).await {
        Err(skiff_scheduler::Error::LeaderElectionLost) => {
            tracing::error!("leaderelection lost");
            std::process::exit(1);
        }
        result => result.context("skiff-scheduler failed"),
    }
}
