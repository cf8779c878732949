//! A DaemonSet runs one pod on every node its template fits
//! ([`eligibility`]), and none elsewhere (upstream's daemonset controller).
//! Pods are not bound here: each is pinned to its node by a required node
//! affinity on `metadata.name`, and the scheduler binds it. Template changes
//! roll out node by node (RollingUpdate within maxUnavailable, or maxSurge
//! new pods beside the old ones) or wait for the user (OnDelete); each
//! template is kept as a ControllerRevision ([`crate::history`]), so
//! `kubectl rollout history/undo/status daemonset` work.

pub(crate) mod eligibility;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::{self, BoxFuture};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_api_types::selector::LabelSelector;
use tracing::{debug, warn};

use crate::cache::{Cache, Changed};
use crate::claim;
use crate::deployment::util::scaled_value;
use crate::expectations::Expectations;
use crate::framework::{self, Backoff, Context};
use crate::history::{self, HASH_LABEL};
use crate::pods;

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "daemonset-controller";
/// The DaemonSet generation a pod was made from.
const GENERATION_LABEL: &str = "pod-template-generation";

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("claiming pods or revisions")]
    Claim(#[from] claim::Error),
    #[error(transparent)]
    History(#[from] history::Error),
    #[error("creating pods")]
    Create(#[source] kube::Error),
    #[error("deleting pods")]
    Delete(#[source] kube::Error),
    #[error("updating the status")]
    Status(#[source] kube::Error),
    #[error("invalid rolling update settings: {0}")]
    Strategy(String),
}

struct Ctx {
    client: Client,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    revisions: Cache<ControllerRevision>,
    expectations: Arc<Expectations>,
    resync: Duration,
    backoff: Backoff,
    failed_pods: std::sync::Mutex<FailedPodBackoff>,
}

/// Per DaemonSet and node: how long to wait before deleting the next
/// failed pod (upstream's 1 s doubling to 15 min), and since when.
#[derive(Debug, Default)]
pub(crate) struct FailedPodBackoff {
    entries: HashMap<String, (Duration, Timestamp)>,
}

impl FailedPodBackoff {
    const BASE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(15 * 60);

    /// `Ok`: go ahead (and the next wait doubles); `Err`: wait this long.
    pub fn next(&mut self, key: &str, now: Timestamp) -> Result<(), Duration> {
        if let Some((delay, since)) = self.entries.get(key) {
            let elapsed = now.duration_since(*since).unsigned_abs();
            if elapsed < *delay {
                return Err(*delay - elapsed);
            }
            // Forgotten after twice the longest wait, as upstream's GC.
            if elapsed > 2 * Self::MAX {
                self.entries.remove(key);
            }
        }
        let delay = match self.entries.get(key) {
            Some((d, _)) => (*d * 2).min(Self::MAX),
            None => Self::BASE,
        };
        self.entries.insert(key.to_owned(), (delay, now));
        Ok(())
    }
}

fn ds_owner(
    meta: &ObjectMeta,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    pods::controller_of(meta)
        .filter(|r| r.kind == "DaemonSet" && r.api_version.starts_with("apps/"))
}

fn selector_of(ds: &DaemonSet) -> Option<LabelSelector> {
    LabelSelector::from_k8s(&ds.spec.as_ref()?.selector).ok()
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

/// A pod from the template for `node` (upstream's daemon pod template plus
/// the node pinning).
fn pod_for(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let spec = ds.spec.clone().unwrap_or_default();
    let template = spec.template;
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    labels.insert(
        GENERATION_LABEL.into(),
        ds.metadata.generation.unwrap_or(0).to_string(),
    );
    let mut pod_spec = template.spec.unwrap_or_default();
    let host_network = pod_spec.host_network == Some(true);
    eligibility::add_tolerations(&mut pod_spec, eligibility::daemon_tolerations(host_network));
    eligibility::pin_to_node(&mut pod_spec, node);
    let mut prefix = format!("{}-", ds.name_any());
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
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![pods::controller_ref(
                "apps/v1",
                "DaemonSet",
                &ds.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// What a pass decided: pods to create (by node) and to delete.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    pub create: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
}

/// The rolling-update budget: (maxSurge, maxUnavailable) against the
/// desired number of pods (both rounded up, as upstream).
fn budget(ds: &DaemonSet, desired: i32) -> Result<(i32, i32), String> {
    let strategy = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.clone())
        .unwrap_or_default();
    let rolling = strategy.rolling_update.unwrap_or_default();
    let surge = rolling.max_surge.unwrap_or(IntOrString::Int(0));
    let unavailable = rolling.max_unavailable.unwrap_or(IntOrString::Int(1));
    let surge = scaled_value(&surge, desired, true)?;
    let mut unavailable = scaled_value(&unavailable, desired, true)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// Decides what to create and delete (upstream's `manage` and
/// `rollingUpdate`). `by_node`: every live, claimed pod by its node.
pub(crate) fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &HashMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: Timestamp,
) -> Result<Plan, String> {
    let spec = ds.spec.clone().unwrap_or_default();
    let pod_spec = spec.template.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    let available = |p: &Pod| pods::is_available(p, min_ready, now);
    let mut out = Plan::default();
    let mut desired = 0;
    let mut eligible = Vec::new();
    for node in nodes {
        let name = node.name_any();
        let here = by_node.get(&name).cloned().unwrap_or_default();
        let place = eligibility::placement(&pod_spec, node);
        if !place.should_continue_running {
            out.delete.extend(here);
            continue;
        }
        let (failed, mut running): (Vec<_>, Vec<_>) = here
            .into_iter()
            .partition(|p| matches!(pods::phase(p), "Failed" | "Succeeded"));
        out.delete.extend(failed);
        if !place.should_run {
            continue;
        }
        desired += 1;
        if running.is_empty() {
            out.create.push(name);
            continue;
        }
        // One pod a node: the oldest; with a surge, the oldest old and the
        // oldest new may stand side by side.
        running.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        let oldest_new = running.iter().position(|p| hash_of(p) == Some(hash));
        let oldest_old = running.iter().position(|p| hash_of(p) != Some(hash));
        let keep: Vec<usize> = match (oldest_old, oldest_new) {
            (Some(o), Some(n)) => vec![o, n],
            (Some(o), None) => vec![o],
            (None, Some(n)) => vec![n],
            (None, None) => vec![],
        };
        let keep: Vec<usize> = if keep.len() == 2 && budget(ds, 1).map(|b| b.0).unwrap_or(0) == 0 {
            vec![keep[0].min(keep[1])]
        } else {
            keep
        };
        for (i, p) in running.iter().enumerate() {
            if !keep.contains(&i) {
                out.delete.push(p.clone());
            }
        }
        let old = oldest_old
            .filter(|i| keep.contains(i))
            .map(|i| running[i].clone());
        let new = oldest_new
            .filter(|i| keep.contains(i))
            .map(|i| running[i].clone());
        eligible.push((name, old, new));
    }
    if !rolling {
        return Ok(out);
    }
    let (max_surge, max_unavailable) = budget(ds, desired)?;
    if max_surge == 0 {
        let mut unavailable = out.create.len() as i32;
        let mut candidates = Vec::new();
        for (_, old, new) in &eligible {
            match (old, new) {
                (Some(o), _) if !available(o) => {
                    unavailable += 1;
                    out.delete.push(o.clone());
                }
                (Some(o), _) => candidates.push(o.clone()),
                (None, Some(n)) if !available(n) => unavailable += 1,
                _ => {}
            }
        }
        for o in candidates {
            if unavailable >= max_unavailable {
                break;
            }
            unavailable += 1;
            out.delete.push(o);
        }
    } else {
        let mut surging = eligible
            .iter()
            .filter(|(_, o, n)| o.is_some() && n.is_some())
            .count() as i32;
        for (name, old, new) in &eligible {
            match (old, new) {
                (Some(o), None) if !available(o) => out.delete.push(o.clone()),
                (Some(_), None) if surging < max_surge => {
                    surging += 1;
                    out.create.push(name.clone());
                }
                (Some(o), Some(n)) if available(n) => out.delete.push(o.clone()),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The status the pods give (upstream's `updateDaemonSetStatus`).
fn status_patch(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &HashMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: Timestamp,
) -> Value {
    let spec = ds.spec.clone().unwrap_or_default();
    let pod_spec = spec.template.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) =
        (0, 0, 0, 0, 0, 0);
    for node in nodes {
        let mut here: Vec<Arc<Pod>> = by_node
            .get(&node.name_any())
            .into_iter()
            .flatten()
            .filter(|p| !matches!(pods::phase(p), "Failed" | "Succeeded"))
            .cloned()
            .collect();
        here.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        let place = eligibility::placement(&pod_spec, node);
        if place.should_run {
            desired += 1;
            if let Some(p) = here.first() {
                current += 1;
                if pods::is_ready(p) {
                    ready += 1;
                    if pods::is_available(p, min_ready, now) {
                        available += 1;
                    }
                }
                if here.iter().any(|p| hash_of(p) == Some(hash)) {
                    updated += 1;
                }
            }
        } else if !here.is_empty() {
            misscheduled += 1;
        }
    }
    let or_null = |n: i32| if n == 0 { Value::Null } else { json!(n) };
    json!({"status": {
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": or_null(available),
        "numberUnavailable": or_null(desired - available),
        "updatedNumberScheduled": or_null(updated),
        "observedGeneration": ds.metadata.generation,
    }})
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let key = ds.uid().unwrap_or_default();
    ctx.pods.ready().await;
    ctx.nodes.ready().await;
    ctx.revisions.ready().await;
    let Some(selector) = selector_of(&ds).filter(|s| !s.is_empty()) else {
        warn!(daemonset = %name, %namespace, "invalid or empty selector; not syncing");
        return Ok(Action::await_change());
    };
    let controller = pods::controller_ref("apps/v1", "DaemonSet", &ds.metadata);
    let empty = BTreeMap::new();
    let fresh_api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let matches_labels = |m: &ObjectMeta| selector.matches(m.labels.as_ref().unwrap_or(&empty));
    let claimed = claim::claim(
        &ctx.client,
        &ds.metadata,
        &controller,
        |p: &Pod| matches_labels(&p.metadata),
        ctx.pods.list(&namespace),
        || async { claim::recheck(&fresh_api, &ds.metadata).await },
    )
    .await?;
    let revisions = claim::claim(
        &ctx.client,
        &ds.metadata,
        &controller,
        |r: &ControllerRevision| matches_labels(&r.metadata),
        ctx.revisions.list(&namespace),
        || async { claim::recheck(&fresh_api, &ds.metadata).await },
    )
    .await?;

    // The current revision.
    let spec = ds.spec.clone().unwrap_or_default();
    let status = ds.status.clone().unwrap_or_default();
    let wanted = history::new_revision(
        &ds.metadata,
        controller.clone(),
        &spec.template,
        history::max_revision(&revisions) + 1,
        status.collision_count,
    );
    let current = match history::ensure(
        &ctx.client,
        &revisions,
        wanted,
        history::max_revision(&revisions) + 1,
    )
    .await
    {
        Ok(r) => r,
        Err(history::Error::Collision(_)) => {
            let patch =
                json!({"status": {"collisionCount": status.collision_count.unwrap_or(0) + 1}});
            fresh_api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::Status)?;
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
        Err(e) => return Err(e.into()),
    };
    let hash = history::hash_of(&current);

    let live: Vec<Arc<Pod>> = claimed
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for p in &live {
        if let Some(node) = eligibility::node_of(p) {
            by_node.entry(node).or_default().push(p.clone());
        }
    }
    let nodes = ctx.nodes.all();
    let now = Timestamp::now();
    let mut manage_error = None;
    let mut backing_off = None;
    if ds.metadata.deletion_timestamp.is_none() && ctx.expectations.satisfied(&key) {
        let mut plan = plan(&ds, &nodes, &by_node, &hash, now).map_err(Error::Strategy)?;
        // Failed pods go with a per-node backoff: a kubelet that keeps
        // rejecting the pod must not make a hot loop.
        plan.delete.retain(|p| {
            if pods::phase(p) != "Failed" {
                return true;
            }
            let node = eligibility::node_of(p).unwrap_or_default();
            match ctx
                .failed_pods
                .lock()
                .expect("failed pods")
                .next(&format!("{key}/{node}"), now)
            {
                Ok(()) => true,
                Err(wait) => {
                    backing_off = Some(backing_off.map_or(wait, |w: Duration| w.min(wait)));
                    false
                }
            }
        });
        if let Err(e) = apply(&ctx, &ds, &hash, plan).await {
            manage_error = Some(e);
        }
    }
    let patch = status_patch(&ds, &nodes, &by_node, &hash, now);
    let mut current_status = serde_json::to_value(&status).unwrap_or_default();
    let changed = patch["status"].as_object().is_some_and(|fields| {
        fields.iter().any(|(k, v)| {
            let have = current_status
                .get_mut(k)
                .map(Value::take)
                .unwrap_or(Value::Null);
            let zero = |x: &Value| x.is_null() || *x == json!(0);
            !(have == *v || (zero(&have) && zero(v)))
        })
    });
    if changed {
        match fresh_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if framework::is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(manage_error.unwrap_or(Error::Status(e))),
        }
    }
    if let Some(e) = manage_error {
        return Err(e);
    }
    let live_hashes: Vec<String> = live
        .iter()
        .filter_map(|p| hash_of(p).map(str::to_owned))
        .collect();
    history::truncate(
        &ctx.client,
        &revisions,
        &live_hashes,
        &hash,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;
    ctx.backoff.succeeded(&key);
    // Pods that turn available after minReadySeconds change the status.
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let waiting = min_ready > 0
        && live
            .iter()
            .any(|p| pods::is_ready(p) && !pods::is_available(p, min_ready, now));
    let mut requeue = if waiting {
        Duration::from_secs(min_ready as u64 + 1).min(ctx.resync)
    } else {
        ctx.resync
    };
    if let Some(wait) = backing_off {
        requeue = requeue.min(wait);
    }
    Ok(Action::requeue(requeue))
}

/// Creates and deletes what the plan says.
async fn apply(ctx: &Ctx, ds: &DaemonSet, hash: &str, plan: Plan) -> Result<(), Error> {
    let key = ds.uid().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(
        ctx.client.clone(),
        ds.namespace().as_deref().unwrap_or_default(),
    );
    if !plan.delete.is_empty() {
        ctx.expectations.expect_deletions(
            &key,
            plan.delete
                .iter()
                .map(|p| p.metadata.uid.clone().unwrap_or_default()),
        );
        let results = future::join_all(plan.delete.iter().map(|p| {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: p.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            let api = api.clone();
            let name = p.name_any();
            async move { api.delete(&name, &params).await }
        }))
        .await;
        for (p, r) in plan.delete.iter().zip(results) {
            if let Err(e) = r {
                ctx.expectations
                    .deletion_observed(&key, p.metadata.uid.as_deref().unwrap_or_default());
                if !framework::is_not_found(&e) {
                    return Err(Error::Delete(e));
                }
            }
        }
    }
    if !plan.create.is_empty() {
        let count = plan.create.len();
        ctx.expectations.expect_creations(&key, count);
        let queue = std::sync::Mutex::new(plan.create.into_iter());
        let (created, error) = crate::replicaset::slow_start_batch(count, 1, || {
            let node = queue.lock().expect("queue").next();
            let api = api.clone();
            let pod = node.map(|n| pod_for(ds, hash, &n));
            async move {
                let Some(pod) = pod else { return Ok(()) };
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => Ok(()),
                    Err(e) if framework::is_namespace_terminating(&e) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
        .await;
        for _ in created..count {
            ctx.expectations.creation_observed(&key);
        }
        if let Some(e) = error {
            return Err(Error::Create(e));
        }
    }
    Ok(())
}

fn on_pod_change(change: &Changed<Pod>, expectations: &Expectations) -> Vec<ObjectRef<DaemonSet>> {
    let to = |p: &Pod| {
        ds_owner(&p.metadata).map(|r| {
            (
                r.uid.clone(),
                ObjectRef::new(&r.name).within(p.metadata.namespace.as_deref().unwrap_or_default()),
            )
        })
    };
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    match change {
        Changed::Added(p) => to(p)
            .map(|(owner, r)| {
                if p.metadata.deletion_timestamp.is_some() {
                    expectations.deletion_observed(&owner, &uid(p));
                } else {
                    expectations.creation_observed(&owner);
                }
                r
            })
            .into_iter()
            .collect(),
        Changed::Updated { old, new } => {
            let mut refs = Vec::new();
            if let Some((owner, r)) = to(new) {
                if new.metadata.deletion_timestamp.is_some() {
                    expectations.deletion_observed(&owner, &uid(new));
                }
                refs.push(r);
            }
            if let Some((_, r)) = to(old)
                && !refs.contains(&r)
            {
                refs.push(r);
            }
            refs
        }
        Changed::Deleted(p) => to(p)
            .map(|(owner, r)| {
                expectations.deletion_observed(&owner, &uid(p));
                r
            })
            .into_iter()
            .collect(),
    }
}

/// A node change may concern every DaemonSet.
fn on_node_change(
    change: &Changed<Node>,
    daemonsets: &Store<DaemonSet>,
) -> Vec<ObjectRef<DaemonSet>> {
    if let Changed::Updated { old, new } = change
        && old.metadata.labels == new.metadata.labels
        && old.spec.as_ref().map(|s| &s.taints) == new.spec.as_ref().map(|s| &s.taints)
    {
        return Vec::new();
    }
    daemonsets
        .state()
        .iter()
        .map(|d| ObjectRef::from_obj(&**d))
        .collect()
}

fn on_revision_change(change: &Changed<ControllerRevision>) -> Vec<ObjectRef<DaemonSet>> {
    let r = change.latest();
    ds_owner(&r.metadata)
        .map(|o| {
            ObjectRef::new(&o.name).within(r.metadata.namespace.as_deref().unwrap_or_default())
        })
        .into_iter()
        .collect()
}

fn error_policy(ds: Arc<DaemonSet>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let delay = ctx.backoff.failed(&ds.uid().unwrap_or_default());
    warn!(object.ref = %ObjectRef::from_obj(&*ds), error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let controller = crate::framework::controller(
            Api::<DaemonSet>::all(client.clone()),
            watcher::Config::default(),
        );
        let daemonsets = controller.store();
        let expectations = Arc::new(Expectations::default());
        let (pods, pod_events) = {
            let expectations = expectations.clone();
            ctx.informers
                .pods
                .subscribe(move |change| on_pod_change(change, &expectations))
        };
        let (nodes, node_events) = ctx
            .informers
            .nodes
            .subscribe(move |change| on_node_change(change, &daemonsets));
        let (revisions, revision_events) = ctx
            .informers
            .controller_revisions
            .subscribe(on_revision_change);
        let state = Arc::new(Ctx {
            client,
            pods,
            nodes,
            revisions,
            expectations,
            resync: ctx.resync_period(),
            backoff: Backoff::default(),
            failed_pods: std::sync::Mutex::default(),
        });
        controller
            .reconcile_on(pod_events)
            .reconcile_on(node_events)
            .reconcile_on(revision_events)
            .with_config(
                controller::Config::default()
                    .concurrency(ctx.settings.concurrent_daemonset_syncs.max(1)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::pod;

    fn ds(strategy: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "ns", "uid": "ds-uid", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": strategy,
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }))
        .unwrap()
    }

    fn node(name: &str) -> Arc<Node> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name}})).unwrap())
    }

    fn daemon_pod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Pod> {
        let mut p = pod(name, node, "Running", ready.then_some(0));
        p.metadata.labels = Some([(HASH_LABEL.to_owned(), hash.to_owned())].into());
        Arc::new(p)
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        let mut n: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        n.sort();
        n
    }

    #[test]
    fn missing_pods_are_created_and_extra_ones_deleted() {
        let d = ds(json!({"type": "RollingUpdate"}));
        let nodes = vec![node("a"), node("b")];
        let mut by_node = HashMap::new();
        by_node.insert(
            "b".to_owned(),
            vec![
                daemon_pod("b1", "b", "h", true),
                daemon_pod("b2", "b", "h", true),
            ],
        );
        by_node.insert("gone".to_owned(), vec![daemon_pod("g", "gone", "h", true)]);
        let p = plan(&d, &nodes, &by_node, "h", Timestamp::now()).unwrap();
        assert_eq!(p.create, vec!["a".to_owned()]);
        assert_eq!(names(&p.delete), vec!["b2"]);
    }

    #[test]
    fn a_rolling_update_replaces_at_most_max_unavailable_pods_at_a_time() {
        let d = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}));
        let nodes = vec![node("a"), node("b"), node("c")];
        let by_node: HashMap<String, Vec<Arc<Pod>>> = ["a", "b", "c"]
            .iter()
            .map(|n| (n.to_string(), vec![daemon_pod(n, n, "old", true)]))
            .collect();
        let p = plan(&d, &nodes, &by_node, "new", Timestamp::now()).unwrap();
        assert_eq!(p.delete.len(), 1);
        assert!(p.create.is_empty());
        // With one node already missing its pod the budget is spent.
        let mut fewer = by_node.clone();
        fewer.remove("a");
        let p = plan(&d, &nodes, &fewer, "new", Timestamp::now()).unwrap();
        assert_eq!(p.create, vec!["a".to_owned()]);
        assert!(p.delete.is_empty());
        // OnDelete leaves old pods alone.
        let p = plan(
            &ds(json!({"type": "OnDelete"})),
            &nodes,
            &by_node,
            "new",
            Timestamp::now(),
        )
        .unwrap();
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn a_surge_starts_the_new_pod_before_the_old_one_goes() {
        let d = ds(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
        );
        let nodes = vec![node("a"), node("b")];
        let mut by_node: HashMap<String, Vec<Arc<Pod>>> = ["a", "b"]
            .iter()
            .map(|n| (n.to_string(), vec![daemon_pod(n, n, "old", true)]))
            .collect();
        let p = plan(&d, &nodes, &by_node, "new", Timestamp::now()).unwrap();
        assert_eq!(p.create.len(), 1);
        assert!(p.delete.is_empty());
        by_node
            .get_mut("a")
            .unwrap()
            .push(daemon_pod("a-new", "a", "new", true));
        let p = plan(&d, &nodes, &by_node, "new", Timestamp::now()).unwrap();
        assert_eq!(names(&p.delete), vec!["a"]);
        assert!(p.create.is_empty(), "the surge budget is in use");
    }

    #[test]
    fn failed_pods_are_deleted_with_a_doubling_wait_per_node() {
        let mut b = FailedPodBackoff::default();
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        assert_eq!(b.next("ds/a", t(0)), Ok(()));
        assert_eq!(b.next("ds/a", t(0)), Err(Duration::from_secs(1)));
        assert_eq!(b.next("ds/b", t(0)), Ok(()), "nodes back off apart");
        assert_eq!(b.next("ds/a", t(1)), Ok(()));
        assert_eq!(b.next("ds/a", t(2)), Err(Duration::from_secs(1)));
        assert_eq!(b.next("ds/a", t(3)), Ok(()));
        assert_eq!(b.next("ds/a", t(4)), Err(Duration::from_secs(3)));
    }

    #[test]
    fn status_counts_per_node() {
        let d = ds(json!({"type": "RollingUpdate"}));
        let nodes = vec![node("a"), node("b"), node("c")];
        let mut by_node = HashMap::new();
        by_node.insert("a".to_owned(), vec![daemon_pod("a", "a", "new", true)]);
        by_node.insert("b".to_owned(), vec![daemon_pod("b", "b", "old", false)]);
        let s = status_patch(&d, &nodes, &by_node, "new", Timestamp::now());
        let s = &s["status"];
        assert_eq!(s["desiredNumberScheduled"], 3);
        assert_eq!(s["currentNumberScheduled"], 2);
        assert_eq!(s["numberReady"], 1);
        assert_eq!(s["numberAvailable"], 1);
        assert_eq!(s["numberUnavailable"], 2);
        assert_eq!(s["updatedNumberScheduled"], 1);
        assert_eq!(s["observedGeneration"], 2);
    }

    #[test]
    fn daemon_pods_are_pinned_labelled_and_tolerant() {
        let p = pod_for(&ds(json!({})), "h1", "node-a");
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[HASH_LABEL], "h1");
        assert_eq!(labels[GENERATION_LABEL], "2");
        assert_eq!(eligibility::node_of(&p).as_deref(), Some("node-a"));
        assert!(p.spec.as_ref().unwrap().node_name.is_none());
        assert_eq!(
            p.spec.as_ref().unwrap().tolerations.as_ref().unwrap().len(),
            6
        );
    }
}
