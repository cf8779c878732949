//! A Deployment runs its pod template through ReplicaSets named
//! `<deployment>-<pod-template-hash>`: the one whose template matches is the
//! new one, scaled up as the strategy allows (RollingUpdate within
//! maxSurge/maxUnavailable, or Recreate once the old pods are gone) while
//! the old ones are scaled down; resizes are shared out proportionally;
//! revisions, rollbacks (`kubectl rollout undo`), pause, revisionHistoryLimit
//! and progressDeadlineSeconds behave as upstream's DeploymentController,
//! so `kubectl rollout status` and `history` read what they expect.

mod sync;
pub(crate) mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_api_types::selector::LabelSelector;
use tracing::{debug, warn};

use crate::cache::{Cache, Changed};
use crate::claim;
use crate::framework::{self, Backoff, Context};
use crate::pods;
use sync::{Pass, Writes};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "deployment-controller";

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("claiming ReplicaSets")]
    Claim(#[from] claim::Error),
    #[error(transparent)]
    Sync(#[from] sync::Error),
    #[error("listing the pods of old ReplicaSets")]
    ListPods(#[source] kube::Error),
    #[error("updating the status")]
    Status(#[source] kube::Error),
}

struct Ctx {
    client: Client,
    rss: Cache<ReplicaSet>,
    resync: Duration,
    backoff: Backoff,
}

/// Writes through the API server.
struct KubeWrites {
    client: Client,
    namespace: String,
    rss: Cache<ReplicaSet>,
}

/// The status as a merge patch pinned to the resourceVersion, every field
/// set (zeros removed, as upstream's `omitempty` leaves them out).
fn status_patch(d: &Deployment) -> Value {
    let s = d.status.clone().unwrap_or_default();
    let or_null = |n: Option<i32>| match n {
        None | Some(0) => Value::Null,
        Some(n) => json!(n),
    };
    json!({
        "metadata": {"resourceVersion": d.metadata.resource_version},
        "status": {
            "observedGeneration": match s.observed_generation { None | Some(0) => Value::Null, Some(g) => json!(g) },
            "replicas": or_null(s.replicas),
            "updatedReplicas": or_null(s.updated_replicas),
            "readyReplicas": or_null(s.ready_replicas),
            "availableReplicas": or_null(s.available_replicas),
            "unavailableReplicas": or_null(s.unavailable_replicas),
            "terminatingReplicas": or_null(s.terminating_replicas),
            "collisionCount": match s.collision_count { None => Value::Null, Some(c) => json!(c) },
            "conditions": match &s.conditions { Some(c) if !c.is_empty() => json!(c), _ => Value::Null },
        },
    })
}

#[async_trait]
impl Writes for KubeWrites {
    async fn update_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.namespace);
        api.replace(&rs.name_any(), &PostParams::default(), rs)
            .await
    }

    async fn create_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.namespace);
        api.create(&PostParams::default(), rs).await
    }

    fn cached_rs(&self, namespace: &str, name: &str) -> Option<ReplicaSet> {
        self.rss.get(namespace, name).map(|rs| (*rs).clone())
    }

    async fn delete_rs(&self, namespace: &str, name: &str) -> Result<(), kube::Error> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        api.delete(name, &DeleteParams::default()).await.map(|_| ())
    }

    async fn update_status(&self, d: &Deployment) -> Result<Option<String>, kube::Error> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let written = api
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status_patch(d)),
            )
            .await?;
        Ok(written.metadata.resource_version)
    }

    async fn set_revision(
        &self,
        d: &Deployment,
        revision: &str,
    ) -> Result<Option<String>, kube::Error> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let patch = json!({"metadata": {"annotations": {util::REVISION: revision}}});
        let written = api
            .patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(written.metadata.resource_version)
    }
}

/// The Deployment's selector (`None`: invalid).
fn selector_of(d: &Deployment) -> Option<LabelSelector> {
    LabelSelector::from_k8s(&d.spec.as_ref()?.selector).ok()
}

fn owner_of(
    rs: &ReplicaSet,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    pods::controller_of(&rs.metadata)
        .filter(|r| r.kind == "Deployment" && r.api_version.starts_with("apps/"))
}

/// The Deployments of the ReplicaSet's namespace whose selector matches it.
fn matching_deployments(
    rs: &ReplicaSet,
    deployments: &Store<Deployment>,
) -> Vec<ObjectRef<Deployment>> {
    let Some(labels) = rs.metadata.labels.as_ref().filter(|l| !l.is_empty()) else {
        return Vec::new();
    };
    deployments
        .state()
        .iter()
        .filter(|d| d.metadata.namespace == rs.metadata.namespace)
        .filter(|d| selector_of(d).is_some_and(|s| !s.is_empty() && s.matches(labels)))
        .map(|d| ObjectRef::from_obj(&**d))
        .collect()
}

/// Which Deployments a ReplicaSet change concerns (upstream's ReplicaSet
/// event handlers).
fn on_rs_change(
    change: &Changed<ReplicaSet>,
    deployments: &Store<Deployment>,
) -> Vec<ObjectRef<Deployment>> {
    let to = |r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
              rs: &ReplicaSet| {
        ObjectRef::new(&r.name).within(rs.metadata.namespace.as_deref().unwrap_or_default())
    };
    match change {
        Changed::Added(rs) => match owner_of(rs) {
            Some(r) => vec![to(r, rs)],
            None if rs.metadata.deletion_timestamp.is_none() => {
                matching_deployments(rs, deployments)
            }
            None => Vec::new(),
        },
        Changed::Updated { old, new } => {
            let (old_ref, new_ref) = (owner_of(old), owner_of(new));
            let mut sync = Vec::new();
            let changed = old_ref.map(|r| &r.uid) != new_ref.map(|r| &r.uid);
            if changed && let Some(r) = old_ref {
                sync.push(to(r, old));
            }
            if let Some(r) = new_ref {
                sync.push(to(r, new));
                return sync;
            }
            if changed || old.metadata.labels != new.metadata.labels {
                sync.extend(matching_deployments(new, deployments));
            }
            sync
        }
        Changed::Deleted(rs) => owner_of(rs).map(|r| vec![to(r, rs)]).unwrap_or_default(),
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let key = d.uid().unwrap_or_default();
    ctx.rss.ready().await;
    let Some(selector) = selector_of(&d) else {
        warn!(deployment = %name, %namespace, "invalid selector; not syncing");
        return Ok(Action::await_change());
    };
    if selector.is_empty() {
        // Upstream: a selector selecting everything is refused, and only
        // the observed generation moves.
        warn!(deployment = %name, %namespace, "empty selector selects all pods; not syncing");
        let observed = d.status.as_ref().and_then(|s| s.observed_generation);
        if observed < d.metadata.generation {
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({"status": {"observedGeneration": d.metadata.generation}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(Error::Status)?;
        }
        return Ok(Action::await_change());
    }
    let controller = pods::controller_ref("apps/v1", "Deployment", &d.metadata);
    let empty = BTreeMap::new();
    let fresh_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let candidates = ctx.rss.list(&namespace);
    let claimed = claim::claim(
        &ctx.client,
        &d.metadata,
        &controller,
        |rs: &ReplicaSet| selector.matches(rs.metadata.labels.as_ref().unwrap_or(&empty)),
        candidates,
        || async { claim::recheck(&fresh_api, &d.metadata).await },
    )
    .await?;
    let rss: Vec<ReplicaSet> = claimed.iter().map(|rs| (**rs).clone()).collect();

    // Recreate waits for the old pods to be gone: read them only then.
    let mut pod_map = Vec::new();
    if util::is_recreate(&d) {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        let listed = pods
            .list(&ListParams::default().labels(&selector.to_string()))
            .await
            .map_err(Error::ListPods)?;
        for rs in &rss {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            let mine: Vec<Arc<Pod>> = listed
                .items
                .iter()
                .filter(|p| pods::controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
                .map(|p| Arc::new(p.clone()))
                .collect();
            pod_map.push((uid, mine));
        }
    }

    let writes = KubeWrites {
        client: ctx.client.clone(),
        namespace: namespace.clone(),
        rss: ctx.rss.clone(),
    };
    let mut pass = Pass {
        w: &writes,
        d: (*d).clone(),
        rss,
        pods: pod_map,
        now: Timestamp::now(),
        requeue: None,
    };
    pass.run().await?;
    ctx.backoff.succeeded(&key);
    Ok(Action::requeue(
        pass.requeue.map_or(ctx.resync, |r| r.min(ctx.resync)),
    ))
}

fn error_policy(d: Arc<Deployment>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let delay = ctx.backoff.failed(&d.uid().unwrap_or_default());
    let conflict = match error {
        Error::Sync(sync::Error::Scale { source, .. } | sync::Error::Status(source)) => {
            framework::is_conflict(source)
        }
        _ => false,
    };
    if conflict {
        debug!(object.ref = %ObjectRef::from_obj(&*d), error = %error, retry_in = ?delay, "stale cache; retrying");
    } else {
        warn!(object.ref = %ObjectRef::from_obj(&*d), error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    }
    Action::requeue(delay)
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let controller = crate::framework::controller(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        );
        let deployments = controller.store();
        let (rss, rs_events) = ctx
            .informers
            .replica_sets
            .subscribe(move |change| on_rs_change(change, &deployments));
        let state = Arc::new(Ctx {
            client,
            rss,
            resync: ctx.resync_period(),
            backoff: Backoff::default(),
        });
        controller
            .reconcile_on(rs_events)
            .with_config(
                controller::Config::default()
                    .concurrency(ctx.settings.concurrent_deployment_syncs.max(1)),
            )
            .graceful_shutdown_on(ctx.stopped())
            .run(reconcile, error_policy, state)
            .for_each(|result| async move {
                if let Err(e) = result {
                    debug!(error = %e, "reconcile");
                }
            })
            .await;
    })
}
