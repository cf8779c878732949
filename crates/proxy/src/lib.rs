//! The Skiff proxy: upstream kube-proxy's iptables mode. It watches
//! Services, EndpointSlices and its own Node, renders the whole ruleset in
//! memory (the chains and rules kube-proxy writes: KUBE-SERVICES,
//! KUBE-SVC-*, KUBE-SEP-*, ...) and applies it with one
//! `iptables-restore --noflush` per sync. IPv4 only.
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::Notify;

pub mod conntrack;
mod host;
pub mod iptables;
mod localaddrs;
pub mod metrics;
pub mod model;
mod names;
pub mod options;
pub mod proxier;
pub mod render;
mod serve;
pub mod sysctl;

pub use proxier::{NodePortAddresses, Proxier, ProxierConfig, SyncMode, SyncReport};
pub use render::RenderSettings;

/// The side effects the proxy has on its host.
#[derive(Clone)]
pub struct Backends {
    pub iptables: Arc<dyn iptables::Iptables>,
    pub conntrack: Arc<dyn conntrack::Conntrack>,
    pub sysctl: Arc<dyn sysctl::Sysctl>,
}

impl Backends {
    /// The real tools, on this host or inside a named network namespace.
    pub fn host(netns: Option<&str>) -> Backends {
        Backends {
            iptables: Arc::new(match netns {
                Some(ns) => iptables::ExecIptables::in_netns(ns),
                None => iptables::ExecIptables::new(),
            }),
            conntrack: Arc::new(conntrack::ExecConntrack::new(netns)),
            sysctl: Arc::new(sysctl::ProcSysctl::new(netns)),
        }
    }
}

/// Called after every successful sync.
pub type SyncObserver = Arc<dyn Fn(&SyncReport) + Send + Sync>;

/// Everything `run` needs.
#[derive(Clone)]
pub struct Config {
    pub kube: kube::Config,
    /// This node's name (`--hostname-override`, else the host name).
    pub hostname: String,
    pub settings: RenderSettings,
    pub node_port_addresses: NodePortAddresses,
    /// `--iptables-min-sync-period`: syncs start at least this far apart.
    pub min_sync_period: Duration,
    /// `--iptables-sync-period`: a resync that reads the tables back and
    /// repairs them at least this often (a full rewrite runs hourly).
    pub sync_period: Duration,
    pub healthz_bind_address: Option<SocketAddr>,
    pub metrics_bind_address: Option<SocketAddr>,
    /// Run host tools inside this network namespace (tests, benchmarks).
    pub netns: Option<String>,
    /// Side effects; `None` uses the real tools.
    pub backends: Option<Backends>,
    pub observer: Option<SyncObserver>,
}

impl Config {
    /// Upstream's defaults.
    pub fn new(kube: kube::Config, hostname: String) -> Config {
        Config {
            kube,
            hostname,
            settings: RenderSettings::default(),
            node_port_addresses: NodePortAddresses::All,
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            healthz_bind_address: None,
            metrics_bind_address: None,
            netns: None,
            backends: None,
            observer: None,
        }
    }
}

impl Config {
    /// A configuration from resolved options.
    pub fn from_resolved(kube: kube::Config, r: options::Resolved) -> Config {
        Config {
            kube,
            hostname: r.hostname,
            settings: r.settings,
            node_port_addresses: r.node_port_addresses,
            min_sync_period: r.min_sync_period,
            sync_period: r.sync_period,
            healthz_bind_address: r.healthz_bind_address,
            metrics_bind_address: r.metrics_bind_address,
            netns: r.netns,
            backends: None,
            observer: None,
        }
    }
}

/// Failures that stop the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building the API client")]
    Client(#[source] kube::Error),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the proxy until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let client = Client::try_from(config.kube.clone()).map_err(Error::Client)?;
    let backends = config
        .backends
        .clone()
        .unwrap_or_else(|| Backends::host(config.netns.as_deref()));
    let localhost_node_ports =
        config.settings.localhost_node_ports && config.node_port_addresses.includes_loopback();
    sysctl::ensure(backends.sysctl.as_ref(), localhost_node_ports);
    if config.settings.cluster_cidr.is_none() && !config.settings.masquerade_all {
        tracing::warn!(
            "no --cluster-cidr: traffic to cluster IPs from outside the pod network is not masqueraded"
        );
    }

    let metrics = Arc::new(metrics::Metrics::new());
    let proxier = Arc::new(Proxier::new(
        ProxierConfig {
            hostname: config.hostname.clone(),
            settings: config.settings.clone(),
            node_port_addresses: config.node_port_addresses.clone(),
            tool_prefix: host::netns_prefix(config.netns.as_deref()),
        },
        backends.iptables.clone(),
        backends.conntrack.clone(),
        metrics.clone(),
    ));

    let mut servers = Vec::new();
    let endpoints = serve::Endpoints {
        proxier: proxier.clone(),
        metrics: metrics.clone(),
        health_timeout: config.sync_period * 2,
    };
    for addr in [config.healthz_bind_address, config.metrics_bind_address]
        .into_iter()
        .flatten()
    {
        let (bound, task) = serve::start(addr, endpoints.clone())
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        tracing::info!(address = %bound, "serving");
        servers.push(task);
    }

    let wake = Arc::new(Notify::new());
    let ready = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let watchers = vec![
        tokio::spawn(watch_services(
            client.clone(),
            proxier.clone(),
            wake.clone(),
            ready.clone(),
        )),
        tokio::spawn(watch_slices(
            client.clone(),
            proxier.clone(),
            wake.clone(),
            ready.clone(),
        )),
        tokio::spawn(watch_node(
            client,
            config.hostname.clone(),
            proxier.clone(),
            wake.clone(),
        )),
    ];

    let sync_loop = sync_loop(&config, proxier, wake, ready);
    tokio::select! {
        () = sync_loop => {}
        () = shutdown => {}
    }
    for task in watchers.into_iter().chain(servers) {
        task.abort();
    }
    Ok(())
}

/// Syncs when told, never more often than the min sync period, and fully
/// at least every sync period.
async fn sync_loop(
    config: &Config,
    proxier: Arc<Proxier>,
    wake: Arc<Notify>,
    ready: Arc<std::sync::atomic::AtomicU8>,
) {
    // Services and EndpointSlices must both be listed before the first sync.
    while ready.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        wake.notified().await;
    }
    let now = tokio::time::Instant::now();
    // The first sync is full (the proxier starts out needing one).
    let mut next_repair = now + config.sync_period;
    let mut next_full = now + proxier::FULL_SYNC_PERIOD;
    let mut last_start: Option<tokio::time::Instant> = None;
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep_until(next_repair.min(next_full)) => {}
            }
        }
        first = false;
        if let Some(last) = last_start {
            tokio::time::sleep_until(last + config.min_sync_period).await;
        }
        let now = tokio::time::Instant::now();
        let mode = if now >= next_full {
            proxier::SyncMode::Full
        } else if now >= next_repair {
            proxier::SyncMode::Repair
        } else {
            proxier::SyncMode::Partial
        };
        if mode == proxier::SyncMode::Partial && !proxier.pending() {
            continue;
        }
        last_start = Some(now);
        let p = proxier.clone();
        let started = Instant::now();
        match tokio::task::spawn_blocking(move || p.sync(mode)).await {
            Ok(Ok(report)) => {
                if report.mode != proxier::SyncMode::Partial {
                    next_repair = now + config.sync_period;
                }
                if report.mode == proxier::SyncMode::Full {
                    next_full = now + proxier::FULL_SYNC_PERIOD;
                }
                if let Some(observer) = &config.observer {
                    observer(&report);
                }
            }
            Ok(Err(error)) => {
                tracing::error!(
                    error = %error,
                    cause = %std::error::Error::source(&error).map(|e| e.to_string()).unwrap_or_default(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "sync failed; retrying"
                );
                wake.notify_one();
            }
            Err(join) => {
                tracing::error!(error = %join, "sync panicked");
                wake.notify_one();
            }
        }
    }
}

async fn watch_services(
    client: Client,
    proxier: Arc<Proxier>,
    wake: Arc<Notify>,
    ready: Arc<std::sync::atomic::AtomicU8>,
) {
    let api: Api<Service> = Api::all(client);
    let cfg = watcher::Config::default().labels("!service.kubernetes.io/service-proxy-name");
    let mut initial = Vec::new();
    let mut listed = false;
    let mut events = watcher(api, cfg).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(s)) => proxier.service_updated(&s),
            Ok(watcher::Event::Delete(s)) => proxier.service_deleted(&s),
            Ok(watcher::Event::Init) => initial.clear(),
            Ok(watcher::Event::InitApply(s)) => initial.push(s),
            Ok(watcher::Event::InitDone) => {
                proxier.services_replaced(std::mem::take(&mut initial));
                if !listed {
                    listed = true;
                    ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "watching Services");
                continue;
            }
        }
        wake.notify_one();
    }
}

async fn watch_slices(
    client: Client,
    proxier: Arc<Proxier>,
    wake: Arc<Notify>,
    ready: Arc<std::sync::atomic::AtomicU8>,
) {
    let api: Api<EndpointSlice> = Api::all(client);
    let cfg = watcher::Config::default()
        .labels("!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name");
    let mut initial = Vec::new();
    let mut listed = false;
    let mut events = watcher(api, cfg).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(s)) => proxier.slice_updated(&s),
            Ok(watcher::Event::Delete(s)) => proxier.slice_deleted(&s),
            Ok(watcher::Event::Init) => initial.clear(),
            Ok(watcher::Event::InitApply(s)) => initial.push(s),
            Ok(watcher::Event::InitDone) => {
                proxier.slices_replaced(std::mem::take(&mut initial));
                if !listed {
                    listed = true;
                    ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "watching EndpointSlices");
                continue;
            }
        }
        wake.notify_one();
    }
}

async fn watch_node(client: Client, name: String, proxier: Arc<Proxier>, wake: Arc<Notify>) {
    let api: Api<Node> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, cfg).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(n)) | Ok(watcher::Event::InitApply(n)) => {
                proxier.node_updated(&n);
                wake.notify_one();
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, node.name = %name, "watching the Node"),
        }
    }
}
