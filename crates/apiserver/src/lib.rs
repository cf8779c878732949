//! The Skiff API server: the Kubernetes REST API over HTTPS.
//!
//! It is the only component that touches storage (the embedded store by
//! default, etcd with `--etcd-servers`); every other component and every user
//! reads and writes cluster state through it. One generic, registry-driven
//! code path ([`rest`]) serves every kind that `skiff-api-types` lists; a
//! watch cache ([`cache`]) fans one storage watch out to every client watch
//! and serves lists from memory.
//!
//! [`start`] runs a server in-process (tests use it); [`run`] runs one until
//! a shutdown signal.
#![forbid(unsafe_code)]

mod admission;
mod allocator;
mod authn;
mod authz;
mod bootstrap;
pub mod cache;
mod crd;
mod discovery;
mod event_ttl;
#[cfg(test)]
mod fuzz_tests;
mod http_util;
mod kubelet_proxy;
mod metrics;
mod metrics_api;
mod openapi;
mod patch;
pub mod pki;
mod request;
mod rest;
mod reviews;
mod router;
mod server;
mod status;
mod strategy;
mod typed;
mod versions;
mod watch;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use skiff_store::Store;
use tokio::sync::oneshot;
use tracing::{info, warn};

pub use admission::Config as AdmissionConfig;
pub use allocator::repair::RepairReport;
pub use authn::{AuthnConfig, DEFAULT_ISSUER};
pub use server::User;

/// How to run the API server. Field names follow kube-apiserver's flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the embedded store, certificates and `admin.kubeconfig` live.
    pub data_dir: PathBuf,
    /// `--secure-port` (6443; 0 picks a free port).
    pub secure_port: u16,
    /// `--bind-address`.
    pub bind_address: IpAddr,
    /// `--advertise-address`: the address other components reach this server
    /// at (the `kubernetes` Service's endpoint). Default: the host's first
    /// non-loopback IPv4 address.
    pub advertise_address: Option<IpAddr>,
    /// `--etcd-servers`: use etcd instead of the embedded store.
    pub etcd_servers: Vec<String>,
    /// `--service-cluster-ip-range`.
    pub service_cluster_ip_range: String,
    /// `--tls-cert-file` / `--tls-private-key-file`: a serving certificate to
    /// use instead of the generated one.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// `--client-ca-file`: the CA client certificates are checked against
    /// (default: the generated cluster CA).
    pub client_ca_file: Option<PathBuf>,
    /// Token and service-account authentication settings.
    pub authn: AuthnConfig,
    /// `--enable-admission-plugins` / `--disable-admission-plugins`.
    pub admission: AdmissionConfig,
    /// `--kubelet-client-certificate` / `--kubelet-client-key`: the client
    /// certificate presented to kubelets (default: the generated
    /// `pki/apiserver-kubelet-client.{crt,key}`, user
    /// `kube-apiserver-kubelet-client`).
    pub kubelet_client_certificate: Option<PathBuf>,
    pub kubelet_client_key: Option<PathBuf>,
    /// `--kubelet-certificate-authority`: the CA kubelets' serving
    /// certificates are verified against (default: none, not verified).
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// `--kubelet-preferred-address-types`: which Node address to reach a
    /// kubelet at, in order.
    pub kubelet_preferred_address_types: Vec<String>,
    /// `--kubelet-timeout`: for connecting to a kubelet.
    pub kubelet_timeout: Duration,
    /// `--event-ttl`: how long Events are kept after they were last
    /// observed.
    pub event_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".skiff/apiserver"),
            secure_port: 6443,
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise_address: None,
            etcd_servers: Vec::new(),
            service_cluster_ip_range: "10.0.0.0/24".into(),
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
            authn: AuthnConfig::default(),
            admission: AdmissionConfig::default(),
            kubelet_client_certificate: None,
            kubelet_client_key: None,
            kubelet_certificate_authority: None,
            kubelet_preferred_address_types: ["InternalIP", "ExternalIP", "Hostname"]
                .map(String::from)
                .to_vec(),
            kubelet_timeout: Duration::from_secs(5),
            event_ttl: Duration::from_secs(3600),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the store")]
    Store(#[source] skiff_store::Error),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("preparing certificates")]
    Pki(#[from] pki::PkiError),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuring TLS")]
    Tls(#[from] server::TlsError),
    #[error("invalid --service-cluster-ip-range {0:?}: expected an IPv4 CIDR such as 10.0.0.0/24")]
    ServiceRange(String),
    #[error("configuring authentication: {0}")]
    Authn(String),
    #[error("configuring admission: {0}")]
    Admission(String),
    #[error("creating the bootstrap objects: {0}")]
    Bootstrap(String),
    #[error("configuring the kubelet client")]
    KubeletClient(#[from] kubelet_proxy::KubeletClientError),
}

/// What every request handler shares.
pub(crate) struct Api {
    pub store: Arc<dyn Store>,
    pub cache: cache::Cache,
    pub metrics: metrics::Metrics,
    /// `host:port` clients should use, for `/api`'s serverAddressByClientCIDRs.
    pub server_address: String,
    /// `--service-cluster-ip-range`.
    pub service_range: allocator::ServiceRange,
    pub authn: authn::Authenticator,
    /// The RBAC index the authorizer decides with.
    pub rbac: authz::Rbac,
    /// Resources defined by CustomResourceDefinitions.
    pub crds: Arc<crd::Crds>,
    /// The admission chain and its state (quota queues).
    pub admission: admission::Admission,
    /// How to reach kubelets (logs, exec, attach, port-forward, node proxy).
    pub kubelet: kubelet_proxy::KubeletClient,
}

impl Api {
    /// A served resource: built-in, or defined by a CRD.
    pub fn lookup(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static skiff_api_types::registry::ResourceInfo> {
        skiff_api_types::registry::lookup(group, version, plural)
            .or_else(|| self.crds.lookup(group, version, plural))
            .or_else(|| crate::metrics_api::lookup(group, version, plural))
    }
}

/// A server running in this process.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The admin kubeconfig it wrote.
    pub admin_kubeconfig: PathBuf,
    /// The cluster CA, PEM.
    pub ca_pem: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    repairer: Arc<allocator::repair::Repairer>,
    repair_loop: Option<allocator::repair::Loop>,
}

impl Running {
    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        if let Some(repair) = self.repair_loop.take() {
            repair.stop().await;
        }
    }

    /// Runs one pass of the Service ClusterIP and NodePort repair now (the
    /// server runs one at start and then every 3 minutes): releases
    /// allocations seen leaked on consecutive passes, recreates those a
    /// Service holds but lost, and reports conflicts as Events.
    pub async fn repair_service_allocations(&self) -> Result<RepairReport, skiff_store::Error> {
        self.repairer.run_once().await
    }

    /// The store this server keeps its objects in. Writes to it skip
    /// validation and admission (tests use it to break things on purpose).
    pub fn store(&self) -> Arc<dyn Store> {
        self.repairer.api().store.clone()
    }
}

/// Starts a server and answers once it accepts connections.
pub async fn start(config: Config) -> Result<Running, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::Read {
        path: config.data_dir.clone(),
        source,
    })?;
    let service_range = allocator::ServiceRange::parse(&config.service_cluster_ip_range)
        .ok_or_else(|| StartError::ServiceRange(config.service_cluster_ip_range.clone()))?;
    let service_ip = IpAddr::V4(service_range.first());
    let store: Arc<dyn Store> = if config.etcd_servers.is_empty() {
        Arc::new(
            skiff_store::Embedded::open(skiff_store::EmbeddedOptions {
                path: config.data_dir.join("store.redb"),
                ..Default::default()
            })
            .map_err(StartError::Store)?,
        )
    } else {
        Arc::new(
            skiff_store::Etcd::connect(skiff_store::EtcdOptions {
                endpoints: config.etcd_servers.clone(),
                ..Default::default()
            })
            .await
            .map_err(StartError::Store)?,
        )
    };

    let addr = SocketAddr::new(config.bind_address, config.secure_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let advertise = config
        .advertise_address
        .or_else(|| (!config.bind_address.is_unspecified()).then_some(config.bind_address))
        .or_else(pki::first_host_address)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let names = pki::ServingNames::for_host(Some(service_ip), &[advertise]);
    let local = if config.bind_address.is_unspecified() || config.bind_address.is_loopback() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        config.bind_address
    };
    let server_url = format!("https://{}", SocketAddr::new(local, addr.port()));
    let generated = pki::ensure(&config.data_dir, &names, &server_url)?;
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|source| StartError::Read {
            path: path.clone(),
            source,
        })
    };
    let (cert, key) = match (&config.tls_cert_file, &config.tls_private_key_file) {
        (Some(c), Some(k)) => (read(c)?, read(k)?),
        _ => (
            generated.serving_cert_pem.clone(),
            generated.serving_key_pem.clone(),
        ),
    };
    let client_ca = match &config.client_ca_file {
        Some(path) => read(path)?,
        None => generated.ca_cert_pem.clone(),
    };
    let tls = server::tls_config(&cert, &key, &client_ca)?;
    let (kubelet_cert, kubelet_key) = match (
        &config.kubelet_client_certificate,
        &config.kubelet_client_key,
    ) {
        (Some(c), Some(k)) => (read(c)?, read(k)?),
        _ => (
            generated.kubelet_client_cert_pem.clone(),
            generated.kubelet_client_key_pem.clone(),
        ),
    };
    let kubelet_ca = config
        .kubelet_certificate_authority
        .as_ref()
        .map(read)
        .transpose()?;
    let kubelet = kubelet_proxy::KubeletClient::new(
        &kubelet_cert,
        &kubelet_key,
        kubelet_ca.as_deref(),
        config.kubelet_preferred_address_types.clone(),
        config.kubelet_timeout,
    )?;

    let crds = Arc::new(crd::Crds::default());
    let cache = cache::Cache::start(
        store.clone(),
        skiff_api_types::registry::all(),
        crds.clone(),
    )
    .await
    .map_err(StartError::Store)?;
    let chain = admission::Admission::new(&config.admission, store.clone(), cache.clone())
        .map_err(StartError::Admission)?;
    let api = Arc::new(Api {
        store,
        cache,
        metrics: metrics::Metrics::default(),
        server_address: SocketAddr::new(advertise, addr.port()).to_string(),
        service_range,
        authn: authn::Authenticator::new(&config.authn, &generated.service_account_key_pem)
            .map_err(StartError::Authn)?,
        rbac: authz::Rbac::default(),
        admission: chain,
        crds,
        kubelet,
    });
    bootstrap::ensure(&api, service_ip, advertise, addr.port())
        .await
        .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    authz::aggregation::spawn(api.clone());

    tokio::spawn(crd::follow(api.clone()));
    event_ttl::spawn(api.clone(), config.event_ttl);
    // The first repair pass before serving: allocations lost or leaked
    // while no server ran are put right before new ones are made.
    let repairer = Arc::new(allocator::repair::Repairer::new(api.clone()));
    if let Err(e) = repairer.run_once().await {
        warn!(error = %e, "repairing Service allocations failed; retrying next pass");
    }
    let repair_loop = allocator::repair::spawn(repairer.clone(), allocator::repair::INTERVAL);

    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server::serve(listener, tls, api, async {
        let _ = stopped.await;
    }));
    info!(%addr, kubeconfig = %generated.admin_kubeconfig.display(), "skiff-apiserver is serving");
    Ok(Running {
        addr,
        admin_kubeconfig: generated.admin_kubeconfig,
        ca_pem: generated.ca_cert_pem,
        stop: Some(stop),
        task,
        repairer,
        repair_loop: Some(repair_loop),
    })
}

/// Runs a server until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let running = start(config).await?;
    shutdown.await;
    running.stop().await;
    Ok(())
}
