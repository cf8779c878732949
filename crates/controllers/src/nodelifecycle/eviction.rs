//! The taint eviction controller (upstream's taint-eviction-controller,
//! once the node lifecycle controller's taint manager): a pod bound to a
//! node with NoExecute taints it does not tolerate is deleted at once; one
//! that tolerates them for a while (tolerationSeconds, 300 s by default
//! from the DefaultTolerationSeconds admission plugin) is deleted when the
//! shortest of those runs out, counted from when the taint was added.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::taints;
use crate::cache::{Cache, Changed};
use crate::framework::{self, Context};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "taint-eviction-controller";

type Key = (String, String);

enum Wake {
    Node(String),
    Pod(Key),
}

struct Evictor {
    client: Client,
    nodes: Cache<Node>,
    pods: Cache<Pod>,
    /// Pods to delete later, and when.
    scheduled: HashMap<Key, Timestamp>,
    /// Pods whose deletion was sent (by UID), so it is sent once.
    evicting: HashSet<String>,
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let (nodes, node_changes) = ctx
            .informers
            .nodes
            .subscribe(|c: &Changed<Node>| Some(Wake::Node(c.latest().name_any())));
        let (pods, pod_changes) = ctx.informers.pods.subscribe(|c: &Changed<Pod>| {
            let p = c.latest();
            Some(Wake::Pod((p.namespace().unwrap_or_default(), p.name_any())))
        });
        let changes = futures::stream::select(node_changes, pod_changes);
        let stopped = ctx.stopped();
        tokio::pin!(stopped, changes);
        tokio::select! {
            () = async { nodes.ready().await; pods.ready().await } => {}
            () = &mut stopped => return,
        }
        let mut e = Evictor {
            client: ctx.client.clone(),
            nodes,
            pods,
            scheduled: HashMap::new(),
            evicting: HashSet::new(),
        };
        for pod in e.pods.all() {
            e.evaluate(&pod);
        }
        loop {
            let next = e.scheduled.values().min().copied();
            let sleep = next.map_or(Duration::from_secs(3600), until);
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(sleep) => {
                    let now = Timestamp::now();
                    let due: Vec<Key> = e.scheduled.iter().filter(|(_, t)| **t <= now).map(|(k, _)| k.clone()).collect();
                    for key in due {
                        e.scheduled.remove(&key);
                        if let Some(pod) = e.pods.get(&key.0, &key.1) {
                            e.evaluate(&pod);
                        }
                    }
                }
                Some(wake) = changes.next() => match wake {
                    Wake::Pod((ns, name)) => match e.pods.get(&ns, &name) {
                        Some(pod) => e.evaluate(&pod),
                        None => { e.scheduled.remove(&(ns, name)); }
                    },
                    Wake::Node(node) => {
                        for pod in e.pods.all() {
                            if node_name(&pod) == Some(node.as_str()) {
                                e.evaluate(&pod);
                            }
                        }
                    }
                },
            }
        }
    })
}

fn until(t: Timestamp) -> Duration {
    let ms = t.as_millisecond() - Timestamp::now().as_millisecond();
    Duration::from_millis(ms.max(0) as u64)
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

impl Evictor {
    /// Deletes the pod now, schedules its deletion, or forgets it.
    fn evaluate(&mut self, pod: &Pod) {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            self.scheduled.remove(&key);
            self.evicting.remove(&uid);
            return;
        }
        let Some(delay) = self.delay(pod) else {
            self.scheduled.remove(&key);
            return;
        };
        let (delay, since) = delay;
        let deadline = Timestamp::from_millisecond(
            since
                .as_millisecond()
                .saturating_add(delay.as_millis() as i64),
        )
        .unwrap_or(since);
        if deadline > Timestamp::now() {
            self.scheduled.insert(key, deadline);
            return;
        }
        self.scheduled.remove(&key);
        if !self.evicting.insert(uid.clone()) {
            return;
        }
        let client = self.client.clone();
        tokio::spawn(async move { evict(client, key, uid).await });
    }

    /// How long after when the pod must go: `None` if it may stay.
    fn delay(&self, pod: &Pod) -> Option<(Duration, Timestamp)> {
        let node = self.nodes.get("", node_name(pod)?)?;
        let no_execute: Vec<&Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
            .iter()
            .filter(|t| t.effect == taints::NO_EXECUTE)
            .collect();
        if no_execute.is_empty() {
            return None;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        let delay = taints::eviction_delay(tolerations, &no_execute)?;
        let since = no_execute
            .iter()
            .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
            .min()
            .unwrap_or_else(Timestamp::now);
        Some((delay, since))
    }
}

/// Marks the pod as disrupted (upstream's DisruptionTarget condition) and
/// deletes it, with its own grace period.
async fn evict(client: Client, (ns, name): Key, uid: String) {
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let now = Timestamp::now().to_string();
    let condition = json!({"status": {"conditions": [{
        "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": now,
    }]}});
    if let Err(e) = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(&condition),
        )
        .await
        && !framework::is_not_found(&e)
    {
        warn!(namespace = %ns, pod = %name, error = %e, "setting the DisruptionTarget condition failed");
    }
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    // A failed delete is tried again a few times, backing off.
    let mut delay = Duration::from_secs(1);
    for _ in 0..5 {
        match api.delete(&name, &params).await {
            Ok(_) => {
                info!(namespace = %ns, pod = %name, "evicted the pod from a NoExecute-tainted node");
                return;
            }
            Err(e) if framework::is_not_found(&e) || framework::is_conflict(&e) => return,
            Err(e) => {
                warn!(namespace = %ns, pod = %name, error = %e, retry_in = ?delay, "evicting the pod failed");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}
