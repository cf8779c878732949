//! The Skiff controller manager: the control loops that keep the cluster at
//! its desired state.
//!
//! Each controller is a module with a name (upstream's, so that
//! `--controllers=*,-namespace` means what it means to kube-controller-manager)
//! registered in one table ([`framework`]). Each is built on kube-runtime:
//! a watcher feeds a reflector store, the store feeds a `Controller`, whose
//! `reconcile` reads the cache, never mutates it, and writes the difference
//! back through the API server. Every object is reconciled again after a
//! resync period, so a missed event cannot leave the cluster wrong.
//!
//! All controllers run behind one `coordination.k8s.io/v1` Lease
//! ([`leader`]): of several replicas only the holder acts, and a holder that
//! cannot renew in time stops ([`Error::LeaderElectionLost`]; the binary
//! exits, as upstream's does).
//!
//! [`run`] runs a controller manager until a shutdown signal; tests and
//! `skiffctl up` call it in-process.
#![forbid(unsafe_code)]

mod cache;
mod certificates;
mod claim;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod events;
mod expectations;
mod framework;
mod gc;
mod history;
mod hpa;
mod infra;
mod job;
mod namespace;
mod nodeipam;
mod nodelifecycle;
mod podgc;
mod pods;
mod replicaset;
mod resourcequota;
mod root_ca;
mod serviceaccount;
mod statefulset;
mod ttlafterfinished;
mod volume;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tracing::{info, warn};

pub use framework::{SelectError, known_controllers, parse_go_duration};
pub use infra::InfraFlags;
pub use skiff_component::{LeaderElection, LeaderElectionConfigError, ServeError, Serving};

/// How to run the controller manager. Field names follow
/// kube-controller-manager's flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// How to reach the API server (from `--kubeconfig`).
    pub kube: kube::Config,
    /// `--controllers`: `*` (every controller on by default), `name` (on),
    /// `-name` (off); canonical names or upstream's aliases.
    pub controllers: Vec<String>,
    /// `--leader-elect` and its settings; `None` acts at once, alone.
    pub leader_election: Option<LeaderElection>,
    /// `--root-ca-file`: the CA bundle published as `kube-root-ca.crt`
    /// (default: the CA the kubeconfig trusts).
    pub root_ca_file: Option<PathBuf>,
    /// `--concurrent-namespace-syncs`.
    pub concurrent_namespace_syncs: u16,
    /// `--concurrent-replicaset-syncs`.
    pub concurrent_replicaset_syncs: u16,
    /// `--concurrent-rc-syncs`.
    pub concurrent_rc_syncs: u16,
    /// `--concurrent-deployment-syncs`.
    pub concurrent_deployment_syncs: u16,
    /// `--concurrent-endpoint-syncs` (the Endpoints controller).
    pub concurrent_endpoint_syncs: u16,
    /// `--concurrent-service-endpoint-syncs` (the EndpointSlice controller).
    pub concurrent_service_endpoint_syncs: u16,
    /// `--mirroring-concurrent-service-endpoint-syncs`.
    pub mirroring_concurrent_service_endpoint_syncs: u16,
    /// `--max-endpoints-per-slice`.
    pub max_endpoints_per_slice: u16,
    /// `--concurrent-gc-syncs`.
    pub concurrent_gc_syncs: u16,
    /// `--concurrent-job-syncs`.
    pub concurrent_job_syncs: u16,
    /// `--concurrent-cron-job-syncs`.
    pub concurrent_cron_job_syncs: u16,
    /// `--concurrent-daemonset-syncs`.
    pub concurrent_daemonset_syncs: u16,
    /// `--concurrent-statefulset-syncs`.
    pub concurrent_statefulset_syncs: u16,
    /// `--namespace-sync-period`.
    pub namespace_sync_period: Duration,
    /// `--min-resync-period`: every object is reconciled again after a
    /// random period between this and twice this.
    pub min_resync_period: Duration,
    /// `--enable-hostpath-provisioner`: provision hostPath volumes for
    /// claims whose class names `kubernetes.io/host-path` (single-node
    /// clusters only).
    pub enable_hostpath_provisioner: bool,
    /// `--hostpath-provisioner-dir`: where those volumes' directories go.
    pub hostpath_provisioner_dir: PathBuf,
    /// `--concurrent-horizontal-pod-autoscaler-syncs`.
    pub concurrent_horizontal_pod_autoscaler_syncs: u16,
    /// `--horizontal-pod-autoscaler-sync-period`.
    pub horizontal_pod_autoscaler_sync_period: Duration,
    /// `--horizontal-pod-autoscaler-tolerance`.
    pub horizontal_pod_autoscaler_tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period`.
    pub horizontal_pod_autoscaler_cpu_initialization_period: Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay`.
    pub horizontal_pod_autoscaler_initial_readiness_delay: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`.
    pub horizontal_pod_autoscaler_downscale_stabilization: Duration,
    /// `--secure-port` and friends; `None` (or port 0) serves nothing.
    pub serving: Option<Serving>,
    /// The cluster-infrastructure controllers' flags (node lifecycle, node
    /// IPAM, ...).
    pub infra: InfraFlags,
}

impl Config {
    /// Upstream's defaults, reaching the API server through `kube`.
    pub fn new(kube: kube::Config) -> Self {
        Config {
            kube,
            controllers: vec!["*".into()],
            leader_election: Some(LeaderElection::for_lease("kube-controller-manager")),
            root_ca_file: None,
            concurrent_namespace_syncs: 10,
            concurrent_replicaset_syncs: 5,
            concurrent_rc_syncs: 5,
            concurrent_deployment_syncs: 5,
            concurrent_endpoint_syncs: 5,
            concurrent_service_endpoint_syncs: 5,
            mirroring_concurrent_service_endpoint_syncs: 5,
            max_endpoints_per_slice: 100,
            concurrent_gc_syncs: 20,
            concurrent_job_syncs: 5,
            concurrent_cron_job_syncs: 5,
            concurrent_daemonset_syncs: 2,
            concurrent_statefulset_syncs: 5,
            namespace_sync_period: Duration::from_secs(5 * 60),
            min_resync_period: Duration::from_secs(12 * 3600),
            enable_hostpath_provisioner: false,
            hostpath_provisioner_dir: PathBuf::from("/tmp/hostpath_pv"),
            concurrent_horizontal_pod_autoscaler_syncs: 5,
            horizontal_pod_autoscaler_sync_period: Duration::from_secs(15),
            horizontal_pod_autoscaler_tolerance: 0.1,
            horizontal_pod_autoscaler_cpu_initialization_period: Duration::from_secs(5 * 60),
            horizontal_pod_autoscaler_initial_readiness_delay: Duration::from_secs(30),
            horizontal_pod_autoscaler_downscale_stabilization: Duration::from_secs(5 * 60),
            serving: Some(Serving::on_port(10257)),
            infra: InfraFlags::default(),
        }
    }
}

/// Why the controller manager stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Controllers(#[from] SelectError),
    #[error(
        "reading --root-ca-file {path}: {reason}; pass a PEM bundle of the cluster's CA certificates"
    )]
    RootCa { path: PathBuf, reason: String },
    #[error(
        "no root CA to publish: --root-ca-file is unset and the kubeconfig names no certificate authority"
    )]
    NoRootCa,
    #[error("creating the API client")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    LeaderElectionConfig(#[from] LeaderElectionConfigError),
    #[error("serving /healthz")]
    Serving(#[from] ServeError),
    /// This replica led, and could not renew its Lease within the renew
    /// deadline: it must stop acting (upstream exits the process).
    #[error("leaderelection lost")]
    LeaderElectionLost,
}

/// Runs the controller manager until `shutdown` resolves, or until it loses
/// its Lease ([`Error::LeaderElectionLost`]).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let selected = framework::select(&config.controllers)?;
    let root_ca = if selected.iter().any(|d| d.name == root_ca::NAME) {
        root_ca_pem(&config)?
    } else {
        String::new()
    };
    if let Some(le) = &config.leader_election {
        le.validate()?;
    }
    let client = Client::try_from(config.kube.clone()).map_err(Error::Client)?;
    let _health = match &config.serving {
        Some(s) if s.secure_port != 0 => Some(skiff_component::serving::start(s, None).await?),
        _ => None,
    };
    let settings = Arc::new(framework::Settings {
        root_ca,
        concurrent_namespace_syncs: config.concurrent_namespace_syncs,
        concurrent_replicaset_syncs: config.concurrent_replicaset_syncs,
        concurrent_rc_syncs: config.concurrent_rc_syncs,
        concurrent_deployment_syncs: config.concurrent_deployment_syncs,
        concurrent_endpoint_syncs: config.concurrent_endpoint_syncs,
        concurrent_service_endpoint_syncs: config.concurrent_service_endpoint_syncs,
        mirroring_concurrent_service_endpoint_syncs: config
            .mirroring_concurrent_service_endpoint_syncs,
        max_endpoints_per_slice: config.max_endpoints_per_slice,
        concurrent_gc_syncs: config.concurrent_gc_syncs,
        concurrent_job_syncs: config.concurrent_job_syncs,
        concurrent_cron_job_syncs: config.concurrent_cron_job_syncs,
        concurrent_daemonset_syncs: config.concurrent_daemonset_syncs,
        concurrent_statefulset_syncs: config.concurrent_statefulset_syncs,
        namespace_sync_period: config.namespace_sync_period,
        min_resync_period: config.min_resync_period,
        infra: config.infra.clone(),
        enable_hostpath_provisioner: config.enable_hostpath_provisioner,
        hostpath_provisioner_dir: config.hostpath_provisioner_dir.clone(),
        concurrent_horizontal_pod_autoscaler_syncs: config
            .concurrent_horizontal_pod_autoscaler_syncs,
        horizontal_pod_autoscaler_sync_period: config.horizontal_pod_autoscaler_sync_period,
        horizontal_pod_autoscaler_tolerance: config.horizontal_pod_autoscaler_tolerance,
        horizontal_pod_autoscaler_cpu_initialization_period: config
            .horizontal_pod_autoscaler_cpu_initialization_period,
        horizontal_pod_autoscaler_initial_readiness_delay: config
            .horizontal_pod_autoscaler_initial_readiness_delay,
        horizontal_pod_autoscaler_downscale_stabilization: config
            .horizontal_pod_autoscaler_downscale_stabilization,
    });
    tokio::pin!(shutdown);

    let Some(le) = config.leader_election.clone() else {
        let running = framework::start(&selected, client, settings);
        shutdown.await;
        running.stop().await;
        return Ok(());
    };
    let mut elector = skiff_component::Elector::new(client.clone(), le);
    info!(identity = %elector.identity(), lease = %elector.lease_name(), "attempting to acquire the leader lease");
    tokio::select! {
        () = elector.acquire() => {}
        () = &mut shutdown => return Ok(()),
    }
    info!(identity = %elector.identity(), "acquired the leader lease; starting controllers");
    let running = framework::start(&selected, client, settings);
    tokio::select! {
        () = elector.hold() => {
            running.abort();
            warn!(identity = %elector.identity(), "could not renew the leader lease within the renew deadline");
            Err(Error::LeaderElectionLost)
        }
        () = &mut shutdown => {
            running.stop().await;
            elector.release().await;
            Ok(())
        }
    }
}

/// The PEM bundle `kube-root-ca.crt` carries: `--root-ca-file`, else the CA
/// the kubeconfig trusts (upstream: the client config's CAData).
fn root_ca_pem(config: &Config) -> Result<String, Error> {
    if let Some(path) = &config.root_ca_file {
        let pem = std::fs::read_to_string(path).map_err(|e| Error::RootCa {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::RootCa {
                path: path.clone(),
                reason: "no PEM certificate in it".into(),
            });
        }
        return Ok(pem);
    }
    match &config.kube.root_cert {
        Some(certs) if !certs.is_empty() => Ok(certs.iter().map(|der| der_to_pem(der)).collect()),
        _ => Err(Error::NoRootCa),
    }
}

/// A DER certificate as PEM.
fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_certificates_become_pem_wrapped_at_64_columns() {
        let pem = der_to_pem(&[0u8; 60]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2], "AAAAAAAAAAAAAAAA");
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
    }

    #[test]
    fn the_root_ca_falls_back_to_the_kubeconfig_authority() {
        let mut kube = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        let config = Config::new(kube.clone());
        assert!(matches!(root_ca_pem(&config), Err(Error::NoRootCa)));
        kube.root_cert = Some(vec![vec![1, 2, 3]]);
        let pem = root_ca_pem(&Config::new(kube)).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\nAQID\n"));
    }

    #[test]
    fn a_root_ca_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        std::fs::write(&path, "not a certificate").unwrap();
        let mut config = Config::new(kube::Config::new("https://127.0.0.1".parse().unwrap()));
        config.root_ca_file = Some(path);
        let err = root_ca_pem(&config).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
