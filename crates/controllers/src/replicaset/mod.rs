//! A ReplicaSet (or ReplicationController) controls exactly `spec.replicas`
//! active pods matching its selector, and its status counts them (upstream's
//! ReplicaSetController and ReplicationManager, one code path for both).
//!
//! Each pass claims the namespace's pods (adopting matching orphans,
//! releasing its pods that stopped matching), then, once everything it
//! created or deleted before has shown up in the cache ([`Expectations`]),
//! creates the missing pods in slow-start batches (1, 2, 4, ...) or deletes
//! the surplus, those [`ranking`] puts first. Status: `replicas`,
//! `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas`
//! (minReadySeconds), `observedGeneration` and the `ReplicaFailure`
//! condition.

pub(crate) mod ranking;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{StreamExt, future};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use skiff_api_types::selector::LabelSelector;
use tracing::{debug, info, warn};

use crate::cache::{Cache, Changed};
use crate::claim;
use crate::events;
use crate::expectations::Expectations;
use crate::framework::{self, Backoff, Context};
use crate::pods;

/// The ReplicaSet controller's name in `--controllers`.
pub(crate) const NAME: &str = "replicaset-controller";
/// The ReplicationController controller's name in `--controllers`.
pub(crate) const RC_NAME: &str = "replicationcontroller-controller";
/// Upstream's `BurstReplicas`: at most this many creates or deletes a pass.
pub(crate) const BURST_REPLICAS: usize = 500;
/// Upstream's `SlowStartInitialBatchSize`.
pub(crate) const SLOW_START_INITIAL_BATCH: usize = 1;

/// A kind this controller runs: ReplicaSet or ReplicationController.
pub(crate) trait Replicated:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The object, seen as a ReplicaSet (the RC's map selector becomes
    /// `matchLabels`).
    /// The controller's name as its events' source (upstream's).
    const COMPONENT: &'static str;

    fn as_replica_set(&self) -> ReplicaSet;
    /// Its selector; `None` when invalid.
    fn selector(&self) -> Option<LabelSelector>;
    /// Whether `r` (a controller reference) points to this kind.
    fn is_kind_of(r: &OwnerReference) -> bool;
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";

    fn as_replica_set(&self) -> ReplicaSet {
        self.clone()
    }
    fn selector(&self) -> Option<LabelSelector> {
        LabelSelector::from_k8s(&self.spec.as_ref()?.selector).ok()
    }
    fn is_kind_of(r: &OwnerReference) -> bool {
        r.kind == "ReplicaSet" && r.api_version.starts_with("apps/")
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";

    fn as_replica_set(&self) -> ReplicaSet {
        let mut v = serde_json::to_value(self).expect("a ReplicationController serializes");
        let selector = v["spec"]["selector"].take();
        if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("selector".into(), json!({ "matchLabels": selector }));
        } else {
            v["spec"] = json!({"selector": {}});
        }
        v["apiVersion"] = json!("apps/v1");
        v["kind"] = json!("ReplicaSet");
        serde_json::from_value(v).unwrap_or_default()
    }
    fn selector(&self) -> Option<LabelSelector> {
        let empty = BTreeMap::new();
        let set = self
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .unwrap_or(&empty);
        LabelSelector::from_set(set).ok()
    }
    fn is_kind_of(r: &OwnerReference) -> bool {
        r.kind == "ReplicationController" && r.api_version == "v1"
    }
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("claiming pods")]
    Claim(#[from] claim::Error),
    #[error("creating pods for {namespace}/{name}")]
    Create {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pods of {namespace}/{name}")]
    Delete {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the status of {namespace}/{name}")]
    Status {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

struct Ctx<K: Replicated> {
    client: Client,
    pods: Cache<Pod>,
    owners: Store<K>,
    expectations: Arc<Expectations>,
    burst: usize,
    resync: Duration,
    backoff: Backoff,
}

/// The owner reference of `pod` that makes a `K` its controller.
fn owner_of<K: Replicated>(pod: &Pod) -> Option<&OwnerReference> {
    pods::controller_of(&pod.metadata).filter(|r| K::is_kind_of(r))
}

/// The `K`s of the pod's namespace whose selector matches it (for orphans).
fn matching_owners<K: Replicated>(pod: &Pod, owners: &Store<K>) -> Vec<ObjectRef<K>> {
    let Some(labels) = pod.metadata.labels.as_ref().filter(|l| !l.is_empty()) else {
        return Vec::new();
    };
    let ns = pod.metadata.namespace.as_deref();
    owners
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == ns)
        .filter(|o| {
            o.selector()
                .is_some_and(|s| !s.is_empty() && s.matches(labels))
        })
        .map(|o| ObjectRef::from_obj(&**o))
        .collect()
}

fn owner_ref<K: Replicated>(r: &OwnerReference, pod: &Pod) -> ObjectRef<K> {
    ObjectRef::new(&r.name).within(pod.metadata.namespace.as_deref().unwrap_or_default())
}

/// What a pod change means, as upstream's pod event handlers: it moves the
/// expectations of its controller, and names the controllers to sync.
fn on_pod_change<K: Replicated>(
    change: &Changed<Pod>,
    expectations: &Expectations,
    owners: &Store<K>,
) -> Vec<ObjectRef<K>> {
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    match change {
        Changed::Added(pod) => {
            if let Some(r) = owner_of::<K>(pod) {
                if pod.metadata.deletion_timestamp.is_some() {
                    expectations.deletion_observed(&r.uid, &uid(pod));
                } else {
                    expectations.creation_observed(&r.uid);
                }
                return vec![owner_ref(r, pod)];
            }
            if pod.metadata.deletion_timestamp.is_some() {
                return Vec::new();
            }
            matching_owners(pod, owners)
        }
        Changed::Updated { old, new } => {
            let (old_ref, new_ref) = (owner_of::<K>(old), owner_of::<K>(new));
            if new.metadata.deletion_timestamp.is_some() {
                for r in [new_ref, old_ref].into_iter().flatten() {
                    expectations.deletion_observed(&r.uid, &uid(new));
                }
            }
            let mut sync = Vec::new();
            let ref_changed = old_ref.map(|r| &r.uid) != new_ref.map(|r| &r.uid);
            if ref_changed && let Some(r) = old_ref {
                sync.push(owner_ref(r, old));
            }
            if let Some(r) = new_ref {
                sync.push(owner_ref(r, new));
                return sync;
            }
            if ref_changed || old.metadata.labels != new.metadata.labels {
                sync.extend(matching_owners(new, owners));
            }
            sync
        }
        Changed::Deleted(pod) => match owner_of::<K>(pod) {
            Some(r) => {
                expectations.deletion_observed(&r.uid, &uid(pod));
                vec![owner_ref(r, pod)]
            }
            None => Vec::new(),
        },
    }
}

/// Runs `count` calls of `f` in batches of 1, 2, 4, ... (upstream's
/// `slowStartBatch`), stopping after the first batch with a failure.
/// Answers how many succeeded, and the first error.
pub(crate) async fn slow_start_batch<E, Fut>(
    count: usize,
    initial: usize,
    f: impl Fn() -> Fut,
) -> (usize, Option<E>)
where
    Fut: Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial);
    while batch > 0 {
        let results = future::join_all((0..batch).map(|_| f())).await;
        let mut errors = results.into_iter().filter_map(Result::err);
        let first = errors.next();
        let failed = usize::from(first.is_some()) + errors.count();
        successes += batch - failed;
        if first.is_some() {
            return (successes, first);
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    (successes, None)
}

/// A pod from the template, named `<owner>-<random>` by the API server
/// (upstream's `GetPodFromTemplate`).
pub(crate) fn pod_from_template(rs: &ReplicaSet, controller: OwnerReference) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    // The API server adds five random characters; upstream's generator
    // keeps the prefix within 58 so the name fits 63.
    let mut prefix = format!("{}-", rs.name_any());
    if prefix.len() > 58 {
        let mut cut = 58;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The status the pods give (upstream's `calculateStatus`). `failure`:
/// the error of this pass's creates or deletes, and whether they were
/// creates.
pub(crate) fn calculate_status(
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    failure: Option<(&str, bool)>,
    now: Timestamp,
) -> Status {
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut status = Status {
        replicas: pods.len() as i32,
        observed_generation: rs.metadata.generation.unwrap_or(0),
        conditions: rs
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default(),
        ..Status::default()
    };
    for pod in pods {
        let labels = pod.metadata.labels.as_ref();
        if template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            status.fully_labeled_replicas += 1;
        }
        if pods::is_ready(pod) {
            status.ready_replicas += 1;
            if pods::is_available(pod, min_ready, now) {
                status.available_replicas += 1;
            }
        }
    }
    let has_failure = status
        .conditions
        .iter()
        .any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some((message, creating)) if !has_failure => {
            status.conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(
                    if creating {
                        "FailedCreate"
                    } else {
                        "FailedDelete"
                    }
                    .into(),
                ),
                message: Some(message.to_owned()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => status.conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    status
}

/// A ReplicaSet's (or RC's) status as this controller writes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Status {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    pub conditions: Vec<ReplicaSetCondition>,
}

impl Status {
    /// What the object's status says now.
    fn current(rs: &ReplicaSet) -> Status {
        let s = rs.status.clone().unwrap_or_default();
        Status {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: s.conditions.unwrap_or_default(),
        }
    }

    /// A merge patch setting every field (zeros removed, as upstream's
    /// `omitempty` leaves them out).
    fn patch(&self) -> Value {
        let or_null = |n: i32| if n == 0 { Value::Null } else { json!(n) };
        json!({"status": {
            "replicas": self.replicas,
            "fullyLabeledReplicas": or_null(self.fully_labeled_replicas),
            "readyReplicas": or_null(self.ready_replicas),
            "availableReplicas": or_null(self.available_replicas),
            "observedGeneration": self.observed_generation,
            "conditions": if self.conditions.is_empty() { Value::Null } else { json!(self.conditions) },
        }})
    }
}

/// When the earliest of the ready pods that are not yet available becomes
/// available.
fn next_availability(pods: &[Arc<Pod>], min_ready: i32, now: Timestamp) -> Option<Duration> {
    if min_ready <= 0 {
        return None;
    }
    pods.iter()
        .filter_map(|p| pods::available_at(p, min_ready))
        .filter(|at| *at >= now)
        .min()
        .map(|at| {
            let wait = at.as_millisecond() - now.as_millisecond();
            Duration::from_millis(wait.max(0) as u64) + Duration::from_secs(1)
        })
}

/// The active pods of every `K` controlled by the same controller as `rs`
/// (a Deployment's ReplicaSets), for ranking by node.
fn related_pods<K: Replicated>(obj: &K, ctx: &Ctx<K>, all: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    let mine: Vec<Arc<K>> = match pods::controller_of(obj.meta()) {
        None => vec![Arc::new(obj.clone())],
        Some(controller) => ctx
            .owners
            .state()
            .into_iter()
            .filter(|o| o.meta().namespace == obj.meta().namespace)
            .filter(|o| pods::controller_of(o.meta()).is_some_and(|r| r.uid == controller.uid))
            .collect(),
    };
    let selectors: Vec<LabelSelector> = mine.iter().filter_map(|o| o.selector()).collect();
    all.iter()
        .filter(|p| {
            let empty = BTreeMap::new();
            let labels = p.metadata.labels.as_ref().unwrap_or(&empty);
            selectors.iter().any(|s| s.matches(labels))
        })
        .cloned()
        .collect()
}

/// Creates or deletes pods so that `pods` (the claimed active ones) number
/// `replicas`.
async fn manage_replicas<K: Replicated>(
    obj: &K,
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    all: &[Arc<Pod>],
    ctx: &Ctx<K>,
) -> Result<(), Error> {
    let key = rs.uid().unwrap_or_default();
    let namespace = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let replicas = rs
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    if pods.len() < replicas {
        let count = (replicas - pods.len()).min(ctx.burst);
        ctx.expectations.expect_creations(&key, count);
        let controller = pods::controller_ref(&K::api_version(&()), &K::kind(&()), obj.meta());
        let pod = pod_from_template(rs, controller);
        let (created, error) = slow_start_batch(count, SLOW_START_INITIAL_BATCH, || {
            let api = api.clone();
            let pod = pod.clone();
            async move {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        debug!(pod = %p.name_any(), "created pod");
                        let note = format!("Created pod: {}", p.name_any());
                        events::record(
                            &ctx.client,
                            K::COMPONENT,
                            obj,
                            "Normal",
                            "SuccessfulCreate",
                            &note,
                        )
                        .await;
                        Ok(())
                    }
                    // Every create fails in a terminating namespace: nothing to do.
                    Err(e) if framework::is_namespace_terminating(&e) => Ok(()),
                    Err(e) => {
                        let note = format!("Error creating: {}", framework::api_message(&e));
                        events::record(
                            &ctx.client,
                            K::COMPONENT,
                            obj,
                            "Warning",
                            "FailedCreate",
                            &note,
                        )
                        .await;
                        Err(e)
                    }
                }
            }
        })
        .await;
        // What was never created will never be observed.
        for _ in created..count {
            ctx.expectations.creation_observed(&key);
        }
        info!(replicaset = %name, %namespace, created, wanted = count, "created pods");
        if let Some(source) = error {
            return Err(Error::Create {
                namespace,
                name,
                source,
            });
        }
    } else if pods.len() > replicas {
        let count = (pods.len() - replicas).min(ctx.burst);
        let related = related_pods(obj, ctx, all);
        let doomed = ranking::pods_to_delete(pods, &related, count, Timestamp::now());
        ctx.expectations.expect_deletions(
            &key,
            doomed
                .iter()
                .map(|p| p.metadata.uid.clone().unwrap_or_default()),
        );
        let results = future::join_all(doomed.iter().map(|p| {
            let api = api.clone();
            let uid = p.metadata.uid.clone();
            let pod_name = p.name_any();
            async move {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: uid.clone(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                let result = api.delete(&pod_name, &params).await;
                (uid, pod_name, result)
            }
        }))
        .await;
        let mut first = None;
        for (uid, pod_name, result) in results {
            match result {
                Ok(_) => {
                    debug!(pod = %pod_name, "deleted pod");
                    let note = format!("Deleted pod: {pod_name}");
                    events::record(
                        &ctx.client,
                        K::COMPONENT,
                        obj,
                        "Normal",
                        "SuccessfulDelete",
                        &note,
                    )
                    .await;
                }
                Err(e) => {
                    ctx.expectations
                        .deletion_observed(&key, uid.as_deref().unwrap_or_default());
                    if !framework::is_not_found(&e) {
                        first.get_or_insert(e);
                    }
                }
            }
        }
        info!(replicaset = %name, %namespace, deleted = count, "deleted pods");
        if let Some(source) = first {
            return Err(Error::Delete {
                namespace,
                name,
                source,
            });
        }
    }
    Ok(())
}

async fn reconcile<K: Replicated>(obj: Arc<K>, ctx: Arc<Ctx<K>>) -> Result<Action, Error> {
    let rs = obj.as_replica_set();
    let key = rs.uid().unwrap_or_default();
    let namespace = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    ctx.pods.ready().await;
    let Some(selector) = obj.selector() else {
        warn!(replicaset = %name, %namespace, "invalid selector; not syncing");
        return Ok(Action::await_change());
    };
    let all = ctx.pods.list(&namespace);
    let active: Vec<Arc<Pod>> = all.iter().filter(|p| pods::is_active(p)).cloned().collect();
    let needs_sync = ctx.expectations.satisfied(&key) && rs.metadata.deletion_timestamp.is_none();
    let controller = pods::controller_ref(&K::api_version(&()), &K::kind(&()), obj.meta());
    let empty = BTreeMap::new();
    let fresh_api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let claimed = claim::claim(
        &ctx.client,
        obj.meta(),
        &controller,
        |p: &Pod| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)),
        active,
        || async { claim::recheck(&fresh_api, obj.meta()).await },
    )
    .await?;

    let manage_error = if needs_sync {
        manage_replicas(&*obj, &rs, &claimed, &all, &ctx)
            .await
            .err()
    } else {
        None
    };
    let now = Timestamp::now();
    let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) as usize;
    let failure = manage_error.as_ref().map(|e| {
        let message = match std::error::Error::source(e) {
            Some(source) => source.to_string(),
            None => e.to_string(),
        };
        (message, claimed.len() < replicas)
    });
    let status = calculate_status(
        &rs,
        &claimed,
        failure.as_ref().map(|(m, c)| (m.as_str(), *c)),
        now,
    );
    let current = Status::current(&rs);
    if status != current || rs.metadata.generation.unwrap_or(0) != current.observed_generation {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(status.patch()),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if framework::is_not_found(&e) => return Ok(Action::await_change()),
            Err(source) => {
                return Err(manage_error.unwrap_or(Error::Status {
                    namespace,
                    name,
                    source,
                }));
            }
        }
    }
    if let Some(e) = manage_error {
        return Err(e);
    }
    ctx.backoff.succeeded(&key);
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let requeue =
        next_availability(&claimed, min_ready, now).map_or(ctx.resync, |d| d.min(ctx.resync));
    Ok(Action::requeue(requeue))
}

fn error_policy<K: Replicated>(obj: Arc<K>, error: &Error, ctx: Arc<Ctx<K>>) -> Action {
    let delay = ctx.backoff.failed(&obj.uid().unwrap_or_default());
    warn!(object.ref = %ObjectRef::from_obj(&*obj), error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

/// Runs the ReplicaSet controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    let concurrency = ctx.settings.concurrent_replicaset_syncs;
    Box::pin(run::<ReplicaSet>(ctx, concurrency))
}

/// Runs the ReplicationController controller until the controller manager
/// stops.
pub(crate) fn start_rc(ctx: Context) -> BoxFuture<'static, ()> {
    let concurrency = ctx.settings.concurrent_rc_syncs;
    Box::pin(run::<ReplicationController>(ctx, concurrency))
}

async fn run<K: Replicated>(ctx: Context, concurrency: u16) {
    let client = ctx.client.clone();
    let controller =
        crate::framework::controller(Api::<K>::all(client.clone()), watcher::Config::default());
    let owners = controller.store();
    let expectations = Arc::new(Expectations::default());
    let (pods, pod_events) = {
        let expectations = expectations.clone();
        let owners = owners.clone();
        ctx.informers
            .pods
            .subscribe(move |change| on_pod_change(change, &expectations, &owners))
    };
    let state = Arc::new(Ctx {
        client,
        pods,
        owners,
        expectations,
        burst: BURST_REPLICAS,
        resync: ctx.resync_period(),
        backoff: Backoff::default(),
    });
    controller
        .reconcile_on(pod_events)
        .with_config(controller::Config::default().concurrency(concurrency.max(1)))
        .graceful_shutdown_on(ctx.stopped())
        .run(reconcile::<K>, error_policy::<K>, state)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "reconcile");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::pod;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as K8sSelector;
    use std::sync::Mutex;

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("rs-uid".into()),
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                selector: K8sSelector {
                    match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
                    ..K8sSelector::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(
                            [
                                ("app".to_owned(), "web".to_owned()),
                                ("tier".to_owned(), "front".to_owned()),
                            ]
                            .into(),
                        ),
                        ..ObjectMeta::default()
                    }),
                    spec: None,
                }),
            }),
            status: None,
        }
    }

    fn labeled(mut p: Pod, labels: &[(&str, &str)]) -> Arc<Pod> {
        p.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        Arc::new(p)
    }

    #[tokio::test]
    async fn slow_start_doubles_the_batch_and_stops_at_the_first_failing_batch() {
        let batches = Mutex::new(Vec::new());
        let calls = Mutex::new(0usize);
        let (ok, err) = slow_start_batch(10, 1, || {
            let n = {
                let mut c = calls.lock().unwrap();
                *c += 1;
                *c
            };
            batches.lock().unwrap().push(n);
            async move { if n == 5 { Err("boom") } else { Ok(()) } }
        })
        .await;
        // Batches 1, 2, 4: the fifth call, in the third batch, fails.
        assert_eq!(*calls.lock().unwrap(), 7);
        assert_eq!(ok, 6);
        assert_eq!(err, Some("boom"));

        let (ok, err) = slow_start_batch(10, 1, || async { Ok::<(), ()>(()) }).await;
        assert_eq!((ok, err), (10, None));
    }

    #[test]
    fn status_counts_fully_labeled_ready_and_available_pods() {
        let now = Timestamp::from_second(1000).unwrap();
        let pods = vec![
            labeled(
                pod("a", "n", "Running", Some(900)),
                &[("app", "web"), ("tier", "front")],
            ),
            labeled(
                pod("b", "n", "Running", Some(995)),
                &[("app", "web"), ("tier", "front")],
            ),
            labeled(pod("c", "n", "Pending", None), &[("app", "web")]),
        ];
        let s = calculate_status(&rs(3, 10), &pods, None, now);
        assert_eq!(
            (
                s.replicas,
                s.fully_labeled_replicas,
                s.ready_replicas,
                s.available_replicas
            ),
            (3, 2, 2, 1)
        );
        assert_eq!(s.observed_generation, 3);
        assert_eq!(
            next_availability(&pods, 10, now),
            Some(Duration::from_secs(6))
        );
    }

    #[test]
    fn a_failed_create_sets_replica_failure_until_a_pass_succeeds() {
        let now = Timestamp::from_second(1000).unwrap();
        let s = calculate_status(&rs(3, 0), &[], Some(("quota exceeded", true)), now);
        let c = &s.conditions[0];
        assert_eq!(c.type_, "ReplicaFailure");
        assert_eq!(c.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(c.message.as_deref(), Some("quota exceeded"));
        let mut failed = rs(3, 0);
        failed.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
            conditions: Some(s.conditions.clone()),
            ..Default::default()
        });
        let s = calculate_status(&failed, &[], None, now);
        assert!(s.conditions.is_empty());
        let patch = s.patch();
        assert_eq!(patch["status"]["conditions"], Value::Null);
        assert_eq!(patch["status"]["readyReplicas"], Value::Null);
    }

    #[test]
    fn pods_come_from_the_template_with_a_controller_reference() {
        let r = rs(1, 0);
        let controller = pods::controller_ref("apps/v1", "ReplicaSet", &r.metadata);
        let p = pod_from_template(&r, controller);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(p.metadata.labels.as_ref().unwrap()["tier"], "front");
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ReplicaSet");
        assert_eq!(owner.uid, "rs-uid");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));

        let mut long = rs(1, 0);
        long.metadata.name = Some("x".repeat(70));
        let p = pod_from_template(&long, OwnerReference::default());
        assert_eq!(p.metadata.generate_name.unwrap().len(), 58);
    }

    #[test]
    fn pod_events_move_expectations_and_name_the_owner() {
        let (owners, _writer) = kube::runtime::reflector::store::<ReplicaSet>();
        let e = Expectations::default();
        e.expect_creations("rs-uid", 1);
        let mut p = pod("a", "", "Pending", None);
        p.metadata.owner_references = Some(vec![pods::controller_ref(
            "apps/v1",
            "ReplicaSet",
            &rs(1, 0).metadata,
        )]);
        let p = Arc::new(p);
        let refs = on_pod_change(&Changed::Added(p.clone()), &e, &owners);
        assert_eq!(refs, vec![ObjectRef::new("web").within("ns")]);
        assert!(e.satisfied("rs-uid"));

        e.expect_deletions("rs-uid", ["uid-a".to_owned()]);
        let mut deleting = (*p).clone();
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        on_pod_change(
            &Changed::Updated {
                old: p.clone(),
                new: Arc::new(deleting),
            },
            &e,
            &owners,
        );
        assert!(e.satisfied("rs-uid"));
    }

    #[test]
    fn a_replication_controller_is_seen_as_a_replica_set() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "rc", "namespace": "ns"},
            "spec": {"replicas": 2, "selector": {"app": "x"},
                     "template": {"metadata": {"labels": {"app": "x"}}}}
        }))
        .unwrap();
        let rs = rc.as_replica_set();
        let spec = rs.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(spec.selector.match_labels.unwrap()["app"], "x");
        assert!(
            rc.selector()
                .unwrap()
                .matches(&[("app".into(), "x".into())].into())
        );
    }
}
