//! `skiff-controller-manager`, with kube-controller-manager's flag names.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Parser};
use skiff_controllers::{LeaderElection, parse_go_duration};

/// The Skiff controller manager: the control loops that keep the cluster at
/// its desired state.
#[derive(Parser)]
#[command(name = "skiff-controller-manager", version, after_help = controllers_help())]
struct Options {
    /// kubeconfig with the API server's address and credentials (default:
    /// $KUBECONFIG, ~/.kube/config, then the in-cluster service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The API server's address, overriding the kubeconfig's.
    #[arg(long)]
    master: Option<String>,
    /// Controllers to run: `*` (all on by default), `name` (on), `-name`
    /// (off), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// Run only while holding the leader Lease, so replicas can run for HA.
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    leader_elect: bool,
    /// How long others wait after the leader's last renewal before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading.
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    leader_elect_renew_deadline: Duration,
    /// How long candidates wait between attempts.
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    leader_elect_retry_period: Duration,
    /// The kind of lock: only `leases` (as upstream today).
    #[arg(long, default_value = "leases", value_parser = ["leases"])]
    leader_elect_resource_lock: String,
    /// The Lease's name.
    #[arg(long, default_value = "kube-controller-manager")]
    leader_elect_resource_name: String,
    /// The Lease's namespace.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// The CA bundle published to every namespace as the ConfigMap
    /// kube-root-ca.crt (default: the kubeconfig's certificate authority).
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    /// Namespaces deleted at once.
    #[arg(long, default_value_t = 10)]
    concurrent_namespace_syncs: u16,
    /// ReplicaSets synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_replicaset_syncs: u16,
    /// ReplicationControllers synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_rc_syncs: u16,
    /// Deployments synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_deployment_syncs: u16,
    /// Services whose Endpoints are synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_endpoint_syncs: u16,
    /// Services whose EndpointSlices are synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_service_endpoint_syncs: u16,
    /// Endpoints mirrored into EndpointSlices at once.
    #[arg(long, default_value_t = 5)]
    mirroring_concurrent_service_endpoint_syncs: u16,
    /// The most endpoints an EndpointSlice holds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    max_endpoints_per_slice: u16,
    /// Garbage collector workers.
    #[arg(long, default_value_t = 20)]
    concurrent_gc_syncs: u16,
    /// Jobs synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_job_syncs: u16,
    /// CronJobs synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_cron_job_syncs: u16,
    /// DaemonSets synced at once.
    #[arg(long, default_value_t = 2)]
    concurrent_daemonset_syncs: u16,
    /// StatefulSets synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_statefulset_syncs: u16,
    /// How often every namespace is looked at again by the namespace controller.
    #[arg(long, default_value = "5m0s", value_parser = parse_go_duration)]
    namespace_sync_period: Duration,
    /// Other controllers look at every object again after a random period
    /// between this and twice this.
    #[arg(long, default_value = "12h0m0s", value_parser = parse_go_duration)]
    min_resync_period: Duration,
    /// Provision hostPath volumes for claims whose StorageClass names the
    /// `kubernetes.io/host-path` provisioner (single-node clusters only).
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    enable_hostpath_provisioner: bool,
    /// The directory the host-path provisioner makes volumes in.
    #[arg(long, default_value = "/tmp/hostpath_pv")]
    hostpath_provisioner_dir: PathBuf,
    /// HorizontalPodAutoscalers synced at once.
    #[arg(long, default_value_t = 5)]
    concurrent_horizontal_pod_autoscaler_syncs: u16,
    /// How often each HorizontalPodAutoscaler is synced.
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    horizontal_pod_autoscaler_sync_period: Duration,
    /// The usage ratio's distance from 1.0 below which nothing is scaled.
    #[arg(long, default_value_t = 0.1)]
    horizontal_pod_autoscaler_tolerance: f64,
    /// After a pod starts, how long its CPU samples may be skipped.
    #[arg(long, default_value = "5m0s", value_parser = parse_go_duration)]
    horizontal_pod_autoscaler_cpu_initialization_period: Duration,
    /// After a pod starts, how long it may still turn unready as part of
    /// starting.
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    horizontal_pod_autoscaler_initial_readiness_delay: Duration,
    /// The highest recommendation over this window bounds a scale-down.
    #[arg(long, default_value = "5m0s", value_parser = parse_go_duration)]
    horizontal_pod_autoscaler_downscale_stabilization: Duration,
    /// The HTTPS port for /healthz; 0 serves nothing.
    #[arg(long, default_value_t = 10257)]
    secure_port: u16,
    /// The address to serve /healthz on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// A serving certificate (PEM) instead of a self-signed one.
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    #[command(flatten)]
    infra: skiff_controllers::InfraFlags,
}

fn controllers_help() -> String {
    let all = skiff_controllers::known_controllers();
    let running: Vec<&str> = all.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
    format!(
        "Controllers Skiff runs today: {}.\nOther upstream controller names are accepted and skipped until Skiff implements them.",
        running.join(", ")
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    o.infra.validate().map_err(anyhow::Error::msg)?;
    let config = skiff_controllers::Config {
        controllers: o.controllers.clone(),
        leader_election: o.leader_elect.then(|| LeaderElection {
            lease_duration: o.leader_elect_lease_duration,
            renew_deadline: o.leader_elect_renew_deadline,
            retry_period: o.leader_elect_retry_period,
            resource_namespace: o.leader_elect_resource_namespace.clone(),
            resource_name: o.leader_elect_resource_name.clone(),
            ..LeaderElection::for_lease("kube-controller-manager")
        }),
        root_ca_file: o.root_ca_file.clone(),
        concurrent_namespace_syncs: o.concurrent_namespace_syncs,
        concurrent_replicaset_syncs: o.concurrent_replicaset_syncs,
        concurrent_rc_syncs: o.concurrent_rc_syncs,
        concurrent_deployment_syncs: o.concurrent_deployment_syncs,
        concurrent_endpoint_syncs: o.concurrent_endpoint_syncs,
        concurrent_service_endpoint_syncs: o.concurrent_service_endpoint_syncs,
        mirroring_concurrent_service_endpoint_syncs: o.mirroring_concurrent_service_endpoint_syncs,
        max_endpoints_per_slice: o.max_endpoints_per_slice,
        concurrent_gc_syncs: o.concurrent_gc_syncs,
        concurrent_job_syncs: o.concurrent_job_syncs,
        concurrent_cron_job_syncs: o.concurrent_cron_job_syncs,
        concurrent_daemonset_syncs: o.concurrent_daemonset_syncs,
        concurrent_statefulset_syncs: o.concurrent_statefulset_syncs,
        namespace_sync_period: o.namespace_sync_period,
        min_resync_period: o.min_resync_period,
        infra: o.infra.clone(),
        enable_hostpath_provisioner: o.enable_hostpath_provisioner,
        hostpath_provisioner_dir: o.hostpath_provisioner_dir.clone(),
        concurrent_horizontal_pod_autoscaler_syncs: o.concurrent_horizontal_pod_autoscaler_syncs,
        horizontal_pod_autoscaler_sync_period: o.horizontal_pod_autoscaler_sync_period,
        horizontal_pod_autoscaler_tolerance: o.horizontal_pod_autoscaler_tolerance,
        horizontal_pod_autoscaler_cpu_initialization_period: o
            .horizontal_pod_autoscaler_cpu_initialization_period,
        horizontal_pod_autoscaler_initial_readiness_delay: o
            .horizontal_pod_autoscaler_initial_readiness_delay,
        horizontal_pod_autoscaler_downscale_stabilization: o
            .horizontal_pod_autoscaler_downscale_stabilization,
        serving: Some(skiff_controllers::Serving {
            secure_port: o.secure_port,
            bind_address: o.bind_address,
            tls_cert_file: o.tls_cert_file.clone(),
            tls_private_key_file: o.tls_private_key_file.clone(),
        }),
        ..skiff_controllers::Config::new(
            skiff_component::client_config(o.kubeconfig.as_deref(), o.master.as_deref()).await?,
        )
    };
    let shutdown = skiff_component::shutdown_signal()?;
    match skiff_controllers::run(config, shutdown).await {
        // As upstream: a replica that lost its Lease exits at once, and its
        // supervisor starts it again as a candidate.
        Err(skiff_controllers::Error::LeaderElectionLost) => {
            tracing::error!("leaderelection lost");
            std::process::exit(1);
        }
        result => result.context("skiff-controller-manager failed"),
    }
}
