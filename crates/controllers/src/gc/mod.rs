//! An object whose owners are all gone is deleted; an owner deleted in the
//! foreground goes only once its blocking dependents are gone; an owner
//! deleted with orphaning first has its dependents' references to it
//! removed (upstream's garbage collector).
//!
//! Metadata-only watches of every listable, watchable, deletable resource
//! ([`discovery`], refreshed every 30 s so CustomResourceDefinitions join)
//! feed the ownerReferences [`graph`]; its changes queue work for the
//! workers, which decide against the API server (never a cache alone)
//! whether owners exist. Since every object is seen again when the watches
//! start, dependents of owners deleted while the controller manager was down
//! are collected too.

pub(crate) mod discovery;
pub(crate) mod graph;
pub(crate) mod queue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::cache::{self, Cache, Changed};
use crate::framework::{self, Backoff, Context};
use discovery::{Catalog, Resource};
use graph::{FOREGROUND, Graph, Identity, ORPHAN, Work};
use queue::Queue;

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "garbage-collector-controller";
/// How often discovery is read again.
const DISCOVERY_PERIOD: Duration = Duration::from_secs(30);
/// How long the workers wait for the first complete view of the cluster.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// Writes retried on a conflict before giving up for this attempt.
const CONFLICT_RETRIES: usize = 3;

/// Why an attempt failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("no resource serves {kind} of {api_version}")]
    UnknownKind { api_version: String, kind: String },
    #[error("{verb} {kind} {name}")]
    Api {
        verb: &'static str,
        kind: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// What an attempt came to.
#[derive(Debug, PartialEq)]
enum Outcome {
    Done,
    /// Look again later (a virtual node not yet observed).
    Later,
}

type Meta = PartialObjectMeta<DynamicObject>;

struct Gc {
    client: Client,
    graph: Mutex<Graph>,
    catalog: RwLock<Arc<Catalog>>,
    deletes: Queue<String>,
    orphans: Queue<String>,
    backoff: Backoff,
}

fn api_error(verb: &'static str, kind: &str, name: &str, source: kube::Error) -> Error {
    Error::Api {
        verb,
        kind: kind.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    }
}

fn has_finalizer(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

impl Gc {
    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog lock").clone()
    }

    fn queue(&self, work: impl IntoIterator<Item = Work>) {
        for w in work {
            match w {
                Work::Delete(uid) => self.deletes.add(uid),
                Work::Orphan(uid) => self.orphans.add(uid),
            }
        }
    }

    fn resource(&self, api_version: &str, kind: &str) -> Result<Resource, Error> {
        self.catalog()
            .lookup(api_version, kind)
            .cloned()
            .ok_or_else(|| Error::UnknownKind {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            })
    }

    fn api(&self, r: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
        match (r.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &r.api),
            _ => Api::all_with(self.client.clone(), &r.api),
        }
    }

    /// The object's metadata as the API server has it now.
    async fn get(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Meta>, Error> {
        self.api(r, namespace)
            .get_metadata_opt(name)
            .await
            .map_err(|e| api_error("reading", &r.api.kind, name, e))
    }

    /// Removes the node (if still virtual) and queues its dependents.
    fn virtual_delete(&self, uid: &str) {
        let work = self.graph.lock().expect("graph lock").remove(uid, true);
        self.queue(work);
    }

    /// Upstream's `attemptToDeleteItem`.
    async fn attempt_to_delete(&self, uid: &str) -> Result<Outcome, Error> {
        let Some(node) = self.graph.lock().expect("graph lock").node(uid).cloned() else {
            return Ok(Outcome::Done);
        };
        let id = &node.identity;
        let r = self.resource(&id.api_version, &id.kind)?;
        if r.namespaced && id.namespace.is_none() {
            // A cluster-scoped object names a namespaced owner: no such owner.
            self.virtual_delete(uid);
            return Ok(Outcome::Done);
        }
        let namespace = if r.namespaced {
            id.namespace.as_deref()
        } else {
            None
        };
        if !node.observed {
            return match self.get(&r, namespace, &id.name).await? {
                Some(o) if o.metadata.uid.as_deref() == Some(uid) => Ok(Outcome::Later),
                _ => {
                    debug!(kind = %id.kind, name = %id.name, %uid, "owner does not exist");
                    self.virtual_delete(uid);
                    Ok(Outcome::Done)
                }
            };
        }
        if node.being_deleted && !node.deleting_dependents {
            return Ok(Outcome::Done);
        }
        let Some(latest) = self.get(&r, namespace, &id.name).await? else {
            return Ok(Outcome::Done);
        };
        if latest.metadata.uid.as_deref() != Some(uid) {
            return Ok(Outcome::Done);
        }
        if node.deleting_dependents {
            return self
                .process_deleting_dependents(&r, namespace, uid, &latest)
                .await;
        }
        let refs = latest.metadata.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            return Ok(Outcome::Done);
        }
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for owner in &refs {
            if self
                .graph
                .lock()
                .expect("graph lock")
                .is_absent(owner, namespace)
            {
                dangling.push(owner.clone());
                continue;
            }
            let owner_resource = self.resource(&owner.api_version, &owner.kind)?;
            if owner_resource.namespaced && namespace.is_none() {
                // Invalid: a cluster-scoped object cannot have a namespaced owner.
                return Ok(Outcome::Done);
            }
            let owner_ns = if owner_resource.namespaced {
                namespace
            } else {
                None
            };
            match self.get(&owner_resource, owner_ns, &owner.name).await? {
                Some(o) if o.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                    if o.metadata.deletion_timestamp.is_some()
                        && has_finalizer(&o.metadata, FOREGROUND)
                    {
                        waiting.push(owner.clone());
                    } else {
                        solid.push(owner.clone());
                    }
                }
                _ => {
                    self.graph
                        .lock()
                        .expect("graph lock")
                        .mark_absent(owner, owner_ns);
                    dangling.push(owner.clone());
                }
            }
        }
        let name = id.name.clone();
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(Outcome::Done);
            }
            let gone: Vec<&str> = dangling
                .iter()
                .chain(&waiting)
                .map(|r| r.uid.as_str())
                .collect();
            info!(kind = %id.kind, %name, owners = ?gone, "removing references to owners that are gone or being deleted");
            self.rewrite_refs(&r, namespace, &name, uid, |refs| {
                refs.retain(|x| !gone.contains(&x.uid.as_str()))
            })
            .await?;
            return Ok(Outcome::Done);
        }
        let policy = if !waiting.is_empty() && !node.dependents.is_empty() {
            let cycle = {
                let graph = self.graph.lock().expect("graph lock");
                node.dependents
                    .iter()
                    .filter_map(|d| graph.node(d))
                    .any(|d| d.deleting_dependents)
            };
            if cycle {
                // Break a possible cycle: stop blocking the owners first.
                self.rewrite_refs(&r, namespace, &name, uid, |refs| {
                    for x in refs.iter_mut() {
                        x.block_owner_deletion = Some(false);
                    }
                })
                .await?;
            }
            PropagationPolicy::Foreground
        } else if has_finalizer(&latest.metadata, ORPHAN) {
            PropagationPolicy::Orphan
        } else if has_finalizer(&latest.metadata, FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        info!(kind = %id.kind, %name, namespace = namespace.unwrap_or_default(), policy = ?policy, "deleting: every owner is gone or being deleted in the foreground");
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: latest.metadata.resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        match self.api(&r, namespace).delete(&name, &params).await {
            Ok(_) => Ok(Outcome::Done),
            Err(e) if framework::is_not_found(&e) => Ok(Outcome::Done),
            Err(e) => Err(api_error("deleting", &id.kind, &name, e)),
        }
    }

    /// An owner being deleted in the foreground: done once no dependent
    /// blocks it, else its blocking dependents are looked at.
    async fn process_deleting_dependents(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        uid: &str,
        latest: &Meta,
    ) -> Result<Outcome, Error> {
        let blocking: Vec<(String, bool)> = {
            let graph = self.graph.lock().expect("graph lock");
            graph
                .blocking_dependents(uid)
                .iter()
                .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
                .collect()
        };
        if blocking.is_empty() {
            info!(kind = %r.api.kind, name = %latest.name_any(), "no dependents block it any more; removing the foregroundDeletion finalizer");
            self.remove_finalizer(r, namespace, &latest.name_any(), uid, FOREGROUND)
                .await?;
            return Ok(Outcome::Done);
        }
        for (dep, deleting) in blocking {
            if !deleting {
                self.deletes.add(dep);
            }
        }
        Ok(Outcome::Done)
    }

    /// Rewrites the object's ownerReferences with `change`, pinned to the
    /// resourceVersion read (retrying on conflicts).
    async fn rewrite_refs(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        uid: &str,
        change: impl Fn(&mut Vec<OwnerReference>),
    ) -> Result<(), Error> {
        for attempt in 0.. {
            let Some(latest) = self.get(r, namespace, name).await? else {
                return Ok(());
            };
            if latest.metadata.uid.as_deref() != Some(uid) {
                return Ok(());
            }
            let mut refs = latest.metadata.owner_references.clone().unwrap_or_default();
            let before = refs.clone();
            change(&mut refs);
            if refs == before {
                return Ok(());
            }
            let patch = json!({"metadata": {
                "resourceVersion": latest.metadata.resource_version,
                "ownerReferences": if refs.is_empty() { Value::Null } else { json!(refs) },
            }});
            match self
                .api(r, namespace)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if framework::is_not_found(&e) => return Ok(()),
                Err(e) if framework::is_conflict(&e) && attempt + 1 < CONFLICT_RETRIES => continue,
                Err(e) => {
                    return Err(api_error(
                        "updating the owner references of",
                        &r.api.kind,
                        name,
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Removes `finalizer` from the object (retrying on conflicts).
    async fn remove_finalizer(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        uid: &str,
        finalizer: &str,
    ) -> Result<(), Error> {
        for attempt in 0.. {
            let Some(latest) = self.get(r, namespace, name).await? else {
                return Ok(());
            };
            if latest.metadata.uid.as_deref() != Some(uid)
                || !has_finalizer(&latest.metadata, finalizer)
            {
                return Ok(());
            }
            let rest: Vec<String> = latest
                .metadata
                .finalizers
                .iter()
                .flatten()
                .filter(|f| *f != finalizer)
                .cloned()
                .collect();
            let patch = json!({"metadata": {
                "resourceVersion": latest.metadata.resource_version,
                "finalizers": if rest.is_empty() { Value::Null } else { json!(rest) },
            }});
            match self
                .api(r, namespace)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if framework::is_not_found(&e) => return Ok(()),
                Err(e) if framework::is_conflict(&e) && attempt + 1 < CONFLICT_RETRIES => continue,
                Err(e) => return Err(api_error("removing a finalizer of", &r.api.kind, name, e)),
            }
        }
        Ok(())
    }

    /// Upstream's `attemptToOrphan`: the dependents lose their references
    /// to the owner, then the owner its `orphan` finalizer.
    async fn attempt_to_orphan(&self, uid: &str) -> Result<Outcome, Error> {
        let Some(node) = self.graph.lock().expect("graph lock").node(uid).cloned() else {
            return Ok(Outcome::Done);
        };
        let dependents: Vec<Identity> = {
            let graph = self.graph.lock().expect("graph lock");
            node.dependents
                .iter()
                .filter_map(|d| graph.node(d))
                .filter(|d| d.observed)
                .map(|d| d.identity.clone())
                .collect()
        };
        for d in dependents {
            let r = self.resource(&d.api_version, &d.kind)?;
            let ns = if r.namespaced {
                d.namespace.as_deref()
            } else {
                None
            };
            self.rewrite_refs(&r, ns, &d.name, &d.uid, |refs| {
                refs.retain(|x| x.uid != uid)
            })
            .await?;
        }
        let id = &node.identity;
        let r = self.resource(&id.api_version, &id.kind)?;
        let ns = if r.namespaced {
            id.namespace.as_deref()
        } else {
            None
        };
        info!(kind = %id.kind, name = %id.name, "dependents orphaned; removing the orphan finalizer");
        self.remove_finalizer(&r, ns, &id.name, uid, ORPHAN).await?;
        Ok(Outcome::Done)
    }
}

/// A worker: takes items from `queue` and runs `attempt` on them, retrying
/// failures (and nodes to look at later) with backoff.
async fn worker<F, Fut>(gc: Arc<Gc>, queue: Queue<String>, attempt: F)
where
    F: Fn(Arc<Gc>, String) -> Fut,
    Fut: Future<Output = Result<Outcome, Error>>,
{
    while let Some(uid) = queue.next().await {
        let result = attempt(gc.clone(), uid.clone()).await;
        queue.done(&uid);
        match result {
            Ok(Outcome::Done) => gc.backoff.succeeded(&uid),
            Ok(Outcome::Later) => {
                let delay = gc.backoff.failed(&uid).max(Duration::from_secs(1));
                queue.add_after(uid, delay);
            }
            Err(error) => {
                let delay = gc.backoff.failed(&uid);
                let conflict =
                    matches!(&error, Error::Api { source, .. } if framework::is_conflict(source));
                if conflict {
                    debug!(%uid, %error, retry_in = ?delay, "changed meanwhile; retrying");
                } else {
                    warn!(%uid, %error, source = ?std::error::Error::source(&error), retry_in = ?delay, "garbage collection attempt failed");
                }
                queue.add_after(uid, delay);
            }
        }
    }
}

/// A metadata watch of one resource feeding the graph.
struct Monitor {
    cache: Cache<Meta>,
    task: JoinHandle<()>,
}

fn identity_of(obj: &Meta, r: &Resource) -> Identity {
    Identity {
        api_version: r.api.api_version.clone(),
        kind: r.api.kind.clone(),
        name: obj.name_any(),
        uid: obj.metadata.uid.clone().unwrap_or_default(),
        namespace: obj.metadata.namespace.clone(),
    }
}

fn start_monitor(gc: &Arc<Gc>, r: Resource) -> Monitor {
    let api: Api<Meta> = Api::all_with(gc.client.clone(), &r.api);
    let cache = Cache::<Meta>::default();
    let g = gc.clone();
    let events = cache::follow(
        cache.clone(),
        watcher(api, watcher::Config::default()).default_backoff(),
        move |change: &Changed<Meta>| {
            let mut graph = g.graph.lock().expect("graph lock");
            match change {
                Changed::Added(o) | Changed::Updated { new: o, .. } => {
                    graph.observe(identity_of(o, &r), &o.metadata)
                }
                Changed::Deleted(o) => {
                    graph.remove(o.metadata.uid.as_deref().unwrap_or_default(), false)
                }
            }
        },
    );
    let g = gc.clone();
    let task = tokio::spawn(events.for_each(move |work| {
        g.queue([work]);
        futures::future::ready(())
    }));
    Monitor { cache, task }
}

/// Starts monitors for newly discovered resources and stops those gone.
fn sync_monitors(gc: &Arc<Gc>, monitors: &mut HashMap<String, Monitor>, catalog: &Catalog) {
    let wanted: HashMap<String, &Resource> =
        catalog.monitored.iter().map(|r| (r.key(), r)).collect();
    monitors.retain(|key, m| {
        let keep = wanted.contains_key(key);
        if !keep {
            info!(resource = %key, "no longer served; not followed any more");
            m.task.abort();
        }
        keep
    });
    for (key, r) in wanted {
        if let std::collections::hash_map::Entry::Vacant(e) = monitors.entry(key) {
            debug!(resource = %e.key(), "following");
            e.insert(start_monitor(gc, r.clone()));
        }
    }
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let gc = Arc::new(Gc {
            client: ctx.client.clone(),
            graph: Mutex::new(Graph::default()),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            deletes: Queue::default(),
            orphans: Queue::default(),
            backoff: Backoff::default(),
        });
        let stopped = ctx.stopped();
        tokio::pin!(stopped);
        let mut monitors: HashMap<String, Monitor> = HashMap::new();
        // The first discovery, retried until it works.
        let mut delay = Duration::from_millis(500);
        loop {
            match discovery::discover(&gc.client).await {
                Ok(catalog) => {
                    sync_monitors(&gc, &mut monitors, &catalog);
                    *gc.catalog.write().expect("catalog lock") = Arc::new(catalog);
                    break;
                }
                Err(error) => warn!(%error, retry_in = ?delay, "discovery failed"),
            }
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
        // The workers wait for the first complete view of the cluster.
        let caches: Vec<Cache<Meta>> = monitors.values().map(|m| m.cache.clone()).collect();
        let synced = futures::future::join_all(caches.iter().map(|c| c.ready()));
        tokio::select! {
            () = &mut stopped => return,
            r = tokio::time::timeout(SYNC_TIMEOUT, synced) => {
                if r.is_err() {
                    warn!("not every resource was listed in time; collecting garbage anyway");
                }
            }
        }
        info!(
            resources = monitors.len(),
            "all resource monitors have synced; collecting garbage"
        );
        let workers = ctx.settings.concurrent_gc_syncs.max(1);
        let mut tasks = Vec::new();
        for _ in 0..workers {
            tasks.push(tokio::spawn(worker(
                gc.clone(),
                gc.deletes.clone(),
                |gc, uid| async move { gc.attempt_to_delete(&uid).await },
            )));
            tasks.push(tokio::spawn(worker(
                gc.clone(),
                gc.orphans.clone(),
                |gc, uid| async move { gc.attempt_to_orphan(&uid).await },
            )));
        }
        loop {
            tokio::select! {
                () = &mut stopped => break,
                () = tokio::time::sleep(DISCOVERY_PERIOD) => {}
            }
            match discovery::discover(&gc.client).await {
                Ok(catalog) => {
                    sync_monitors(&gc, &mut monitors, &catalog);
                    *gc.catalog.write().expect("catalog lock") = Arc::new(catalog);
                }
                Err(error) => warn!(%error, "discovery failed; keeping the resources followed"),
            }
        }
        gc.deletes.shut_down();
        gc.orphans.shut_down();
        for m in monitors.values() {
            m.task.abort();
        }
        for t in tasks {
            t.abort();
        }
    })
}
