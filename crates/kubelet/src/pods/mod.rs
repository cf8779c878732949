//! The pods bound to this node: a watch on `spec.nodeName`, one worker per
//! pod ([`worker`]), a relist of the runtime every second that wakes the
//! workers whose containers changed (upstream's PLEG; containerd 1.6 has no
//! container events), and housekeeping that removes sandboxes no pod owns.

pub mod probes;
pub mod spec;
pub mod static_pods;
pub mod status;
pub mod volumes;
pub mod worker;

use crate::Kubelet;
use crate::cri::labels;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// What the API wants for a pod.
#[derive(Clone)]
pub enum Desired {
    /// The pod as last seen.
    Run(Arc<Pod>),
    /// The pod is gone from the API: stop and remove everything it had.
    Gone(Arc<Pod>),
}

struct Handle {
    tx: watch::Sender<Desired>,
    wake: Arc<Notify>,
}

/// The workers and what they share.
#[derive(Default)]
pub struct Manager {
    workers: Mutex<HashMap<String, Handle>>,
    pub probes: probes::Results,
    pub tokens: volumes::Tokens,
    /// Uids of the static pods (from files) now running.
    pub static_uids: Mutex<HashSet<String>>,
    /// Pods as the workers last saw them, for the HTTP server's `/pods`.
    pub known: Mutex<HashMap<String, Arc<Pod>>>,
}

impl Manager {
    /// Hands the pod to its worker, starting one for a pod not seen before.
    pub(crate) fn dispatch(&self, kubelet: &Arc<Kubelet>, desired: Desired) {
        let pod = match &desired {
            Desired::Run(p) | Desired::Gone(p) => p.clone(),
        };
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        // A mirror pod only reflects a static pod, which runs from its file.
        if static_pods::is_mirror(&pod) {
            return;
        }
        let mut workers = self.workers.lock().unwrap();
        if let Desired::Run(p) = &desired {
            self.known.lock().unwrap().insert(uid.clone(), p.clone());
        }
        if let Some(handle) = workers.get(&uid) {
            handle.tx.send_replace(desired);
            return;
        }
        if matches!(desired, Desired::Gone(_)) {
            // A pod deleted before we ever ran it: the housekeeping pass
            // removes anything it might have left.
            return;
        }
        let (tx, rx) = watch::channel(desired);
        let wake = Arc::new(Notify::new());
        workers.insert(
            uid.clone(),
            Handle {
                tx,
                wake: wake.clone(),
            },
        );
        let worker = worker::Worker::new(kubelet.clone(), uid, rx, wake);
        tokio::spawn(worker.run());
    }

    /// Called by a worker that has finished with its pod.
    pub(crate) fn worker_done(&self, uid: &str) {
        self.workers.lock().unwrap().remove(uid);
        self.known.lock().unwrap().remove(uid);
    }

    fn wake(&self, uid: &str) {
        if let Some(h) = self.workers.lock().unwrap().get(uid) {
            h.wake.notify_one();
        }
    }

    fn has_worker(&self, uid: &str) -> bool {
        self.workers.lock().unwrap().contains_key(uid)
    }

    /// How many pods have workers.
    pub fn len(&self) -> usize {
        self.workers.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Watches the node's pods and keeps a worker per pod until the process ends.
pub async fn run(kubelet: Arc<Kubelet>) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(kubelet.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", kubelet.config.node_name));
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    let mut listing: Option<HashSet<String>> = None;
    let mut housekeeping_started = false;
    tokio::spawn(relist_loop(kubelet.clone()));
    if let Some(dir) = kubelet.config.pod_manifest_path.clone() {
        tokio::spawn(static_pods::run(kubelet.clone(), dir));
    }
    while let Some(event) = stream.try_next().await.unwrap_or_else(|err| {
        tracing::warn!("pod watch: {err}");
        Some(watcher::Event::Init)
    }) {
        match event {
            watcher::Event::Init => listing = Some(HashSet::new()),
            watcher::Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                kubelet.pods.dispatch(&kubelet, Desired::Run(Arc::new(pod)));
            }
            watcher::Event::InitDone => {
                // Pods that vanished while the watch was down are gone.
                if let Some(seen) = listing.take() {
                    let stale: Vec<Arc<Pod>> = kubelet
                        .pods
                        .known
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|(uid, _)| {
                            !seen.contains(*uid)
                                && !kubelet.pods.static_uids.lock().unwrap().contains(*uid)
                        })
                        .map(|(_, p)| p.clone())
                        .collect();
                    for pod in stale {
                        kubelet.pods.dispatch(&kubelet, Desired::Gone(pod));
                    }
                }
                if !housekeeping_started {
                    housekeeping_started = true;
                    tokio::spawn(housekeeping_loop(kubelet.clone()));
                }
            }
            watcher::Event::Apply(pod) => {
                kubelet.pods.dispatch(&kubelet, Desired::Run(Arc::new(pod)))
            }
            watcher::Event::Delete(pod) => kubelet
                .pods
                .dispatch(&kubelet, Desired::Gone(Arc::new(pod))),
        }
    }
    Ok(())
}

/// Relists the runtime every second and wakes the workers of pods whose
/// containers or sandboxes changed state.
async fn relist_loop(kubelet: Arc<Kubelet>) {
    let mut previous: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (Ok(containers), Ok(sandboxes)) = (
            kubelet.runtime.list_containers(None).await,
            kubelet.runtime.list_pod_sandbox(None).await,
        ) else {
            continue;
        };
        let mut current: HashMap<String, Vec<(String, i32)>> = HashMap::new();
        for c in &containers {
            if let Some(uid) = c.labels.get(labels::POD_UID) {
                current
                    .entry(uid.clone())
                    .or_default()
                    .push((c.id.clone(), c.state));
            }
        }
        for s in &sandboxes {
            if let Some(uid) = s.labels.get(labels::POD_UID) {
                current
                    .entry(uid.clone())
                    .or_default()
                    .push((s.id.clone(), s.state + 100));
            }
        }
        for list in current.values_mut() {
            list.sort();
        }
        for (uid, list) in &current {
            if previous.get(uid) != Some(list) {
                kubelet.pods.wake(uid);
            }
        }
        previous = current;
    }
}

/// Every 10 s: sandboxes and containers whose pod has no worker (left by a
/// kubelet that stopped, or a pod deleted while it was down) are stopped and
/// removed.
async fn housekeeping_loop(kubelet: Arc<Kubelet>) {
    loop {
        if let Ok(sandboxes) = kubelet.runtime.list_pod_sandbox(None).await {
            let mut orphans: HashMap<String, Vec<String>> = HashMap::new();
            for s in sandboxes {
                let Some(uid) = s.labels.get(labels::POD_UID) else {
                    continue;
                };
                if !kubelet.pods.has_worker(uid) {
                    orphans.entry(uid.clone()).or_default().push(s.id.clone());
                }
            }
            for (uid, ids) in orphans {
                tracing::info!(%uid, "removing the sandboxes of a pod this node no longer runs");
                worker::remove_pod_runtime_objects(&kubelet, &uid, &ids, 2).await;
                if kubelet.config.manage_host {
                    let _ = volumes::teardown(&kubelet, &uid).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
