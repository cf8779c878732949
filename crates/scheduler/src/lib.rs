//! The Skiff scheduler: places pods on nodes, as kube-scheduler does.
//!
//! It watches pods and nodes through the API server, keeps an in-memory
//! snapshot of nodes and the pods on them ([`cache`]), and takes pending pods
//! from a priority queue with backoff ([`queue`]) one at a time through the
//! scheduling framework ([`framework`]): upstream's extension points as one
//! trait each, with upstream's default plugins and weights ([`plugins`]),
//! configured by a `KubeSchedulerConfiguration` file ([`config`]). The pod
//! is bound through the `pods/binding` subresource; when no node fits, it
//! gets a `PodScheduled=False` condition and a `FailedScheduling` event
//! saying why, per plugin, and preemption may evict lower-priority pods.
//!
//! [`run`] runs a scheduler (behind a leader-election Lease) until a
//! shutdown signal; [`start`] starts one in-process without election, for
//! tests and benchmarks.
#![forbid(unsafe_code)]

pub mod cache;
pub mod client;
pub mod config;
pub mod events;
pub mod framework;
pub mod health;
pub mod informers;
pub mod leader;
pub mod listers;
pub mod metrics;
pub mod nodeinfo;
pub mod parallel;
pub mod plugins;
pub mod queue;
pub mod resources;
pub mod scheduler;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use config::{ConfigError, KubeSchedulerConfiguration};
pub use health::{ServeError, Serving};
pub use leader::{LeaderConfigError, LeaderElection, parse_go_duration};

use crate::cache::Cache;
use crate::client::{ClusterClient, KubeClient};
use crate::framework::{BuildError, Handle};
use crate::listers::Listers;
use crate::queue::{Nominator, SchedulingQueue};
use crate::scheduler::Scheduler;

/// How to run the scheduler (kube-scheduler's flags and config file).
#[derive(Clone)]
pub struct Config {
    /// How to reach the API server (`--kubeconfig`).
    pub kube: kube::Config,
    /// `--config` (defaults when absent).
    pub scheduler: KubeSchedulerConfiguration,
    /// `--leader-elect` and its settings; `None` schedules at once, alone.
    pub leader_election: Option<LeaderElection>,
    /// `--secure-port` and friends; `None` serves nothing.
    pub serving: Option<Serving>,
}

impl Config {
    /// Upstream's defaults, reaching the API server through `kube`.
    pub fn new(kube: kube::Config) -> Config {
        Config {
            kube,
            scheduler: KubeSchedulerConfiguration::default(),
            leader_election: Some(LeaderElection::default()),
            serving: Some(Serving::default()),
        }
    }
}

/// Why the scheduler stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating the API client")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Profile(#[from] BuildError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    LeaderElectionConfig(#[from] LeaderConfigError),
    #[error("serving /healthz")]
    Serving(#[from] ServeError),
    #[error("profiles must all use the same QueueSort plugin")]
    QueueSortDiffers,
    /// The Lease could not be renewed in time: this replica must stop.
    #[error("leaderelection lost")]
    LeaderElectionLost,
}

/// A scheduler running in this process.
pub struct Running {
    scheduler: Arc<Scheduler>,
    tasks: Vec<JoinHandle<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Pods bound so far.
    pub fn scheduled(&self) -> u64 {
        self.scheduler.bound.load(Ordering::Relaxed)
    }

    /// Failed scheduling attempts so far.
    pub fn failed_attempts(&self) -> u64 {
        self.scheduler.failed.load(Ordering::Relaxed)
    }

    /// (active, backoff, unschedulable) queue sizes.
    pub fn queue_sizes(&self) -> (usize, usize, usize) {
        self.scheduler.queue.sizes()
    }

    /// Stops scheduling and watching.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        self.scheduler.queue.close();
        for t in &self.tasks {
            t.abort();
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.scheduler.queue.close();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a scheduler in-process, without leader election or `/healthz`:
/// it returns once its caches have synced and it is scheduling.
pub async fn start(config: Config) -> Result<Running, Error> {
    let client = Client::try_from(config.kube.clone()).map_err(Error::Client)?;
    start_with_client(client, &config.scheduler).await
}

async fn start_with_client(
    client: Client,
    cfg: &KubeSchedulerConfiguration,
) -> Result<Running, Error> {
    let listers = Arc::new(Listers::default());
    let nominator = Arc::new(Nominator::default());
    let api: Arc<dyn ClusterClient> = Arc::new(KubeClient::new(client.clone()));
    let parallelism = cfg
        .parallelism
        .map(|p| p.max(1) as usize)
        .unwrap_or_else(parallel::default_threads);
    let host = leader::default_identity()
        .split('_')
        .next()
        .unwrap_or("localhost")
        .to_owned();
    let recorder = events::Recorder::start(api.clone(), host);
    let handle = Arc::new(Handle {
        client: api.clone(),
        listers: listers.clone(),
        nominator: nominator.clone(),
        parallelism,
        recorder: Some(recorder.clone()),
        api_slots: Arc::new(tokio::sync::Semaphore::new(framework::API_CONCURRENCY)),
    });
    let mut profiles = HashMap::new();
    let mut sort = None;
    for p in cfg.profiles() {
        let fw = config::build_framework(&p, cfg.percentage_of_nodes_to_score, &handle)?;
        let this_sort = fw.queue_sort.clone().expect("checked by build_framework");
        match &sort {
            None => sort = Some(this_sort),
            Some(s) if s.name() != this_sort.name() => return Err(Error::QueueSortDiffers),
            Some(_) => {}
        }
        profiles.insert(fw.profile_name.clone(), Arc::new(fw));
    }
    let secs = |s: Option<i64>, default: Duration| {
        s.filter(|s| *s > 0)
            .map_or(default, |s| Duration::from_secs(s as u64))
    };
    let queue = Arc::new(
        SchedulingQueue::new(
            sort.expect("at least one profile"),
            profiles.clone(),
            nominator,
        )
        .with_backoff(
            secs(cfg.pod_initial_backoff_seconds, queue::INITIAL_BACKOFF),
            secs(cfg.pod_max_backoff_seconds, queue::MAX_BACKOFF),
        ),
    );
    let scheduler = Arc::new(Scheduler {
        cache: Mutex::new(Cache::new()),
        queue: queue.clone(),
        profiles,
        recorder,
        runtime: tokio::runtime::Handle::current(),
        bound: Default::default(),
        failed: Default::default(),
        binding: Default::default(),
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (mut tasks, watches) = informers::start(client, scheduler.clone(), listers, tx);
    let mut synced = 0;
    while synced < watches {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(_)) => synced += 1,
            Ok(None) => break,
            Err(_) => warn!(synced, watches, "still waiting for the informers to sync"),
        }
    }
    info!("caches synced; scheduling");
    let q = queue.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            q.flush_backoff();
            let (active, backoff, unschedulable) = q.sizes();
            metrics::get().queue_sizes(active, backoff, unschedulable);
            n += 1;
            if n.is_multiple_of(30) {
                q.flush_unschedulable();
            }
        }
    }));
    let s = scheduler.clone();
    let thread = std::thread::Builder::new()
        .name("scheduling-loop".into())
        .spawn(move || s.run_loop())
        .expect("starting the scheduling thread");
    Ok(Running {
        scheduler,
        tasks,
        thread: Some(thread),
    })
}

/// Runs the scheduler until `shutdown` resolves, or until it loses its
/// Lease ([`Error::LeaderElectionLost`]).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    if let Some(le) = &config.leader_election {
        le.validate()?;
    }
    let client = Client::try_from(config.kube.clone()).map_err(Error::Client)?;
    let _health = match &config.serving {
        Some(s) if s.secure_port != 0 => Some(health::start(s).await?),
        _ => None,
    };
    tokio::pin!(shutdown);
    let Some(le) = config.leader_election.clone() else {
        let mut running = start_with_client(client, &config.scheduler).await?;
        shutdown.await;
        running.shutdown().await;
        return Ok(());
    };
    let mut elector = leader::Elector::new(client.clone(), le);
    tokio::select! {
        () = elector.acquire() => {}
        () = &mut shutdown => return Ok(()),
    }
    let mut running = start_with_client(client, &config.scheduler).await?;
    tokio::select! {
        () = elector.hold() => {
            running.shutdown().await;
            warn!(identity = %elector.identity(), "could not renew the leader lease within the renew deadline");
            Err(Error::LeaderElectionLost)
        }
        () = &mut shutdown => {
            running.shutdown().await;
            elector.release().await;
            Ok(())
        }
    }
}
