//! Skiff cluster DNS: an authoritative server for the cluster domain that
//! serves the records of the Kubernetes DNS-based service discovery
//! specification (Services, headless endpoints, SRV, PTR, ExternalName,
//! pod names, `dns-version`), built from watches of Services and
//! EndpointSlices, and forwards every other name to the upstream resolvers
//! of a resolv.conf. Health, readiness and metrics are served on CoreDNS's
//! ports and paths.
#![forbid(unsafe_code)]

mod forward;
mod http;
mod index;
mod metrics;
mod server;
mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use forward::Forwarder;
pub use index::{Index, SCHEMA_VERSION};

/// What `run` serves, and where.
#[derive(Clone)]
pub struct Config {
    /// The API server client configuration.
    pub kube: kube::Config,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// DNS over UDP and TCP.
    pub dns_address: SocketAddr,
    /// `GET /health`; `None` serves none.
    pub health_address: Option<SocketAddr>,
    /// `GET /ready`; `None` serves none.
    pub ready_address: Option<SocketAddr>,
    /// `GET /metrics`; `None` serves none.
    pub metrics_address: Option<SocketAddr>,
    /// The upstream resolvers for names outside the cluster zone.
    pub resolv_conf: PathBuf,
    /// TTL of every record served from the cluster zone.
    pub ttl: u32,
}

impl Config {
    /// CoreDNS's defaults, with `kube` as the client configuration.
    pub fn new(kube: kube::Config) -> Config {
        Config {
            kube,
            cluster_domain: "cluster.local".into(),
            dns_address: ([0, 0, 0, 0], 53).into(),
            health_address: Some(([0, 0, 0, 0], 8080).into()),
            ready_address: Some(([0, 0, 0, 0], 8181).into()),
            metrics_address: Some(([0, 0, 0, 0], 9153).into()),
            resolv_conf: "/etc/resolv.conf".into(),
            ttl: 30,
        }
    }
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listening for DNS on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("listening for HTTP on {address}")]
    BindHttp {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the upstream resolvers")]
    ResolvConf(#[from] forward::Error),
    #[error("creating the API client")]
    Client(#[source] kube::Error),
}

/// Addresses the server actually bound (useful when port 0 was asked for).
#[derive(Clone, Debug)]
pub struct Bound {
    pub dns: SocketAddr,
    pub health: Option<SocketAddr>,
    pub ready: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// A server started by `start`.
pub struct Running {
    pub bound: Bound,
    pub index: Arc<Index>,
    tasks: tokio::task::JoinSet<()>,
}

impl Running {
    /// Stops every listener and watch.
    pub async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds every listener and starts the watches; returns at once.
pub async fn start(config: Config) -> Result<Running, Error> {
    let forwarder = Forwarder::from_resolv_conf(&config.resolv_conf)?;
    if forwarder.upstreams().is_empty() {
        tracing::warn!(path = %config.resolv_conf.display(), "no nameserver: names outside the cluster zone get SERVFAIL");
    }
    let client = kube::Client::try_from(config.kube.clone()).map_err(Error::Client)?;
    let index = Arc::new(Index::new(&config.cluster_domain));
    let metrics = Arc::new(metrics::Metrics::new());
    let responder = Arc::new(server::Responder::new(
        index.clone(),
        forwarder,
        metrics.clone(),
        config.ttl,
    ));
    let (udp, tcp) = server::bind(config.dns_address)
        .await
        .map_err(|source| Error::Bind {
            address: config.dns_address,
            source,
        })?;
    let dns = udp.local_addr().map_err(|source| Error::Bind {
        address: config.dns_address,
        source,
    })?;
    let mut tasks = tokio::task::JoinSet::new();
    let mut listen = |address: Option<SocketAddr>, route: http::Route| {
        let Some(address) = address else {
            return Ok(None);
        };
        let listener = std::net::TcpListener::bind(address)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|source| Error::BindHttp { address, source })?;
        let bound = listener.local_addr().ok();
        tasks.spawn(http::serve(listener, route, index.clone(), metrics.clone()));
        Ok::<_, Error>(bound)
    };
    let bound = Bound {
        dns,
        health: listen(config.health_address, http::Route::Health)?,
        ready: listen(config.ready_address, http::Route::Ready)?,
        metrics: listen(config.metrics_address, http::Route::Metrics)?,
    };
    tasks.spawn(server::serve_udp(udp, responder.clone()));
    tasks.spawn(server::serve_tcp(tcp, responder));
    tasks.spawn(watch::services(client.clone(), index.clone()));
    tasks.spawn(watch::endpoint_slices(client, index.clone()));
    tracing::info!(%dns, domain = %config.cluster_domain, "serving DNS");
    Ok(Running {
        bound,
        index,
        tasks,
    })
}

/// Serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let running = start(config).await?;
    shutdown.await;
    running.stop().await;
    Ok(())
}
