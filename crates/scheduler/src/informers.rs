//! Watches that keep the scheduler current: pods (unscheduled ones go to the
//! queue, bound ones to the cache), nodes (to the cache), and the other
//! kinds plugins read (to the listers). Each change that may make pending
//! pods fit is passed to the queue as a cluster event.
//!
//! Built on kube-runtime's watcher, which relists after a broken watch; a
//! relist's missing objects are treated as deleted.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::framework::{ClusterEvent, Resource, action};
use crate::listers::{Lister, Listers, key_of};
use crate::nodeinfo::PodInfo;
use crate::scheduler::Scheduler;

/// An object added, changed or deleted.
pub enum Change<K> {
    Applied { old: Option<Arc<K>>, new: Arc<K> },
    Deleted(Arc<K>),
}

fn object_key<K: kube::Resource>(o: &K) -> String {
    o.meta().uid.clone().unwrap_or_else(|| key_of(o))
}

/// Runs a watch on `api`, turning its events into [`Change`]s for `handler`;
/// says `name` on `synced` after the first complete list.
pub async fn run_informer<K>(
    name: &'static str,
    api: Api<K>,
    mut handler: impl FnMut(Change<K>) + Send,
    synced: mpsc::UnboundedSender<&'static str>,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut known: HashMap<String, Arc<K>> = HashMap::new();
    let mut relist: Option<HashSet<String>> = None;
    let mut first = true;
    let stream = watcher::watcher(api, watcher::Config::default().any_semantic()).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => relist = Some(HashSet::new()),
            Ok(Event::InitApply(mut o)) | Ok(Event::Apply(mut o)) => {
                // As upstream's informers: managed fields are never read
                // and are the bulk of many objects.
                o.meta_mut().managed_fields = None;
                let k = object_key(&o);
                if let Some(seen) = relist.as_mut() {
                    seen.insert(k.clone());
                }
                let new = Arc::new(o);
                let old = known.insert(k, new.clone());
                handler(Change::Applied { old, new });
            }
            Ok(Event::InitDone) => {
                if let Some(seen) = relist.take() {
                    let gone: Vec<String> = known
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        if let Some(o) = known.remove(&k) {
                            handler(Change::Deleted(o));
                        }
                    }
                }
                if first {
                    first = false;
                    let _ = synced.send(name);
                }
            }
            Ok(Event::Delete(o)) => {
                known.remove(&object_key(&o));
                handler(Change::Deleted(Arc::new(o)));
            }
            Err(e) => warn!(informer = name, error = %e, "watch failed; retrying"),
        }
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn is_assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

/// What changed in a bound pod, as [`action`] bits.
fn pod_change(old: &Pod, new: &Pod) -> u32 {
    let mut bits = 0;
    if old.metadata.labels != new.metadata.labels {
        bits |= action::UPDATE_POD_LABEL;
    }
    if crate::resources::pod_requests(old, false) != crate::resources::pod_requests(new, false) {
        bits |= action::UPDATE_POD_REQUEST;
    }
    bits
}

/// What changed in a node, as [`action`] bits.
pub fn node_change(old: &Node, new: &Node) -> u32 {
    let mut bits = 0;
    let status = |n: &Node| n.status.clone().unwrap_or_default();
    let (os, ns) = (status(old), status(new));
    if os.allocatable != ns.allocatable {
        bits |= action::UPDATE_NODE_ALLOCATABLE;
    }
    if old.metadata.labels != new.metadata.labels {
        bits |= action::UPDATE_NODE_LABEL;
    }
    let spec = |n: &Node| n.spec.clone().unwrap_or_default();
    let (osp, nsp) = (spec(old), spec(new));
    if osp.taints != nsp.taints || osp.unschedulable != nsp.unschedulable {
        bits |= action::UPDATE_NODE_TAINT;
    }
    let conditions = |s: &k8s_openapi::api::core::v1::NodeStatus| -> Vec<(String, String)> {
        s.conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect()
    };
    if conditions(&os) != conditions(&ns) {
        bits |= action::UPDATE_NODE_CONDITION;
    }
    if old.metadata.annotations != new.metadata.annotations {
        bits |= action::UPDATE_NODE_ANNOTATION;
    }
    bits
}

/// Applies a pod change to the cache and the queue.
pub fn on_pod(s: &Scheduler, change: Change<Pod>) {
    match change {
        Change::Applied { old, new } => {
            let uid = new.metadata.uid.clone().unwrap_or_default();
            if is_terminal(&new) {
                let was = s
                    .cache
                    .lock()
                    .expect("cache")
                    .pod_node(&uid)
                    .map(str::to_owned);
                s.cache.lock().expect("cache").remove_pod(&uid);
                s.queue.delete(&uid);
                if let Some(node) = was {
                    s.queue.move_all_after_delete(
                        &ClusterEvent::new(Resource::Pod, action::DELETE, "AssignedPodDelete"),
                        &node,
                    );
                }
                return;
            }
            if is_assigned(&new) {
                let info = Arc::new(PodInfo::new(new.clone()));
                let was_known = s.cache.lock().expect("cache").pod(&uid).is_some_and(|p| {
                    // An assumed pod confirmed is not news to other pods.
                    p.node_name() == info.node_name()
                });
                s.cache.lock().expect("cache").set_pod(info);
                s.queue.delete(&uid);
                let event = match &old {
                    Some(old) if is_assigned(old) => {
                        let bits = pod_change(old, &new);
                        (bits != 0)
                            .then(|| ClusterEvent::new(Resource::Pod, bits, "AssignedPodUpdate"))
                    }
                    _ if was_known => None,
                    _ => Some(ClusterEvent::new(
                        Resource::Pod,
                        action::ADD,
                        "AssignedPodAdd",
                    )),
                };
                if let Some(e) = event {
                    s.queue.move_all(&e);
                }
                return;
            }
            let info = Arc::new(PodInfo::new(new));
            if !s.queue.responsible_for(&info) {
                return;
            }
            if info.terminating() {
                s.queue.delete(&uid);
                return;
            }
            if old.is_some() {
                s.queue.update(info);
            } else {
                s.queue.add(info);
            }
        }
        Change::Deleted(pod) => {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            s.queue.delete(&uid);
            let was = s
                .cache
                .lock()
                .expect("cache")
                .pod_node(&uid)
                .map(str::to_owned);
            if let Some(node) = was {
                s.cache.lock().expect("cache").remove_pod(&uid);
                s.queue.move_all_after_delete(
                    &ClusterEvent::new(Resource::Pod, action::DELETE, "AssignedPodDelete"),
                    &node,
                );
            }
        }
    }
}

/// Applies a node change to the cache and the queue.
pub fn on_node(s: &Scheduler, change: Change<Node>) {
    match change {
        Change::Applied { old, new } => {
            let bits = match &old {
                None => action::ADD,
                Some(old) => node_change(old, &new),
            };
            s.cache.lock().expect("cache").set_node(new);
            if bits != 0 {
                let label = if bits == action::ADD {
                    "NodeAdd"
                } else {
                    "NodeUpdate"
                };
                s.queue
                    .move_all(&ClusterEvent::new(Resource::Node, bits, label));
            }
        }
        Change::Deleted(node) => {
            let name = node.metadata.name.clone().unwrap_or_default();
            s.cache.lock().expect("cache").remove_node(&name);
        }
    }
}

fn lister_handler<K: kube::Resource + 'static>(
    s: Arc<Scheduler>,
    lister: impl Fn(&Listers) -> &Lister<K> + Send + 'static,
    listers: Arc<Listers>,
    resource: Option<Resource>,
) -> impl FnMut(Change<K>) + Send {
    move |change| {
        let bits = match change {
            Change::Applied { old, new } => {
                lister(&listers).set(new);
                if old.is_none() {
                    action::ADD
                } else {
                    action::UPDATE_OTHER
                }
            }
            Change::Deleted(o) => {
                lister(&listers).remove(&key_of(o.as_ref()));
                action::DELETE
            }
        };
        if let Some(r) = resource {
            s.queue
                .move_all(&ClusterEvent::new(r, bits, "ObjectChange"));
        }
    }
}

/// Starts every watch; returns their tasks and how many will report synced.
pub fn start(
    client: Client,
    s: Arc<Scheduler>,
    listers: Arc<Listers>,
    synced: mpsc::UnboundedSender<&'static str>,
) -> (Vec<JoinHandle<()>>, usize) {
    let mut tasks = Vec::new();
    {
        let s = s.clone();
        tasks.push(tokio::spawn(run_informer(
            "pods",
            Api::<Pod>::all(client.clone()),
            move |c| on_pod(&s, c),
            synced.clone(),
        )));
    }
    {
        let s = s.clone();
        tasks.push(tokio::spawn(run_informer(
            "nodes",
            Api::<Node>::all(client.clone()),
            move |c| on_node(&s, c),
            synced.clone(),
        )));
    }
    macro_rules! lister {
        ($name:literal, $kind:ty, $field:ident, $resource:expr) => {
            tasks.push(tokio::spawn(run_informer(
                $name,
                Api::<$kind>::all(client.clone()),
                lister_handler(
                    s.clone(),
                    |l: &Listers| &l.$field,
                    listers.clone(),
                    $resource,
                ),
                synced.clone(),
            )));
        };
    }
    lister!(
        "namespaces",
        Namespace,
        namespaces,
        Some(Resource::Namespace)
    );
    lister!("services", Service, services, None);
    lister!(
        "replicationcontrollers",
        ReplicationController,
        replication_controllers,
        None
    );
    lister!("replicasets", ReplicaSet, replica_sets, None);
    lister!("statefulsets", StatefulSet, stateful_sets, None);
    lister!("poddisruptionbudgets", PodDisruptionBudget, pdbs, None);
    lister!(
        "persistentvolumeclaims",
        PersistentVolumeClaim,
        pvcs,
        Some(Resource::PersistentVolumeClaim)
    );
    lister!(
        "persistentvolumes",
        PersistentVolume,
        pvs,
        Some(Resource::PersistentVolume)
    );
    lister!(
        "storageclasses",
        StorageClass,
        storage_classes,
        Some(Resource::StorageClass)
    );
    let n = tasks.len();
    (tasks, n)
}
