//! A StatefulSet runs pods with stable identities `<set>-<ordinal>` (from
//! `spec.ordinals.start`), each with its own PersistentVolumeClaims
//! `<template>-<set>-<ordinal>`, hostname and subdomain (upstream's
//! StatefulSetControl). OrderedReady creates them one at a time in ordinal
//! order, each once the one before is Running and Ready, and removes them
//! from the highest ordinal down; Parallel does not wait. Template changes
//! are ControllerRevisions (`currentRevision`/`updateRevision`, pods
//! labelled with the revision name): RollingUpdate replaces pods from the
//! highest ordinal down to `partition`, OnDelete waits for the user.
//! `persistentVolumeClaimRetentionPolicy` hands claims to the set
//! (whenDeleted: Delete) or to their condemned pod (whenScaled: Delete) as
//! owner references, so the garbage collector removes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_api_types::selector::LabelSelector;
use tracing::{debug, info, warn};

use crate::cache::{Cache, Changed};
use crate::claim;
use crate::framework::{self, Backoff, Context};
use crate::history::{self, HASH_LABEL};
use crate::pods;

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "statefulset-controller";
/// The pod's own name, as a label (for per-pod Services).
pub(crate) const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod's ordinal, as a label.
pub(crate) const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("claiming pods or revisions")]
    Claim(#[from] claim::Error),
    #[error(transparent)]
    History(#[from] history::Error),
    #[error("creating pod {0}")]
    CreatePod(String, #[source] kube::Error),
    #[error("deleting pod {0}")]
    DeletePod(String, #[source] kube::Error),
    #[error("creating claim {0}")]
    CreateClaim(String, #[source] kube::Error),
    #[error("updating the owners of claim {0}")]
    ClaimOwners(String, #[source] kube::Error),
    #[error("updating the status")]
    Status(#[source] kube::Error),
}

struct Ctx {
    client: Client,
    pods: Cache<Pod>,
    claims: Cache<PersistentVolumeClaim>,
    revisions: Cache<ControllerRevision>,
    resync: Duration,
    backoff: Backoff,
}

fn sts_owner(meta: &ObjectMeta) -> Option<&OwnerReference> {
    pods::controller_of(meta)
        .filter(|r| r.kind == "StatefulSet" && r.api_version.starts_with("apps/"))
}

/// The ordinal of a pod of `set` (`<set>-<ordinal>`).
pub(crate) fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok().filter(|o: &i32| *o >= 0)
}

/// The claim name of a volume claim template for an ordinal.
pub(crate) fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

fn running_and_ready(pod: &Pod) -> bool {
    pods::phase(pod) == "Running" && pods::is_ready(pod)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod for an ordinal from `template`, at `revision` (upstream's
/// `newVersionedStatefulSetPod`).
pub(crate) fn pod_for(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Pod {
    let spec = set.spec.clone().unwrap_or_default();
    let set_name = set.name_any();
    let name = format!("{set_name}-{ordinal}");
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(HASH_LABEL.into(), revision.into());
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    if !spec.service_name.as_deref().unwrap_or("").is_empty() {
        pod_spec.subdomain = spec.service_name.clone();
    }
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for t in spec.volume_claim_templates.iter().flatten() {
        let tname = t.name_any();
        volumes.retain(|v| v.name != tname);
        volumes.push(Volume {
            name: tname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&tname, &set_name, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    if volumes.is_empty() {
        pod_spec.volumes = None;
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![pods::controller_ref(
                "apps/v1",
                "StatefulSet",
                &set.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// The claims an ordinal needs (upstream's `getPersistentVolumeClaims`):
/// the template's labels plus the set's selector labels.
pub(crate) fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = set.spec.clone().unwrap_or_default();
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&t.name_any(), &set.name_any(), ordinal)),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..ObjectMeta::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// Whether the pod at `ordinal` is made from the current revision (below
/// the partition) rather than the update revision.
pub(crate) fn uses_current_revision(set: &StatefulSet, ordinal: i32) -> bool {
    let spec = set.spec.clone().unwrap_or_default();
    let strategy = spec.update_strategy.unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return false;
    }
    let start = start_ordinal(set);
    match strategy.rolling_update.and_then(|r| r.partition) {
        Some(partition) => ordinal < start + partition,
        None => {
            ordinal
                < start
                    + set
                        .status
                        .as_ref()
                        .and_then(|s| s.current_replicas)
                        .unwrap_or(0)
        }
    }
}

/// The set's counts (upstream's `computeReplicaStatus`) over its pods.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Counts {
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub current: i32,
    pub updated: i32,
}

pub(crate) fn count(
    pods: &[Arc<Pod>],
    current: &str,
    update: &str,
    min_ready: i32,
    now: Timestamp,
) -> Counts {
    let mut c = Counts::default();
    for p in pods {
        c.replicas += 1;
        if running_and_ready(p) && !terminating(p) {
            c.ready += 1;
            if pods::is_available(p, min_ready, now) {
                c.available += 1;
            }
        }
        if !terminating(p) {
            if revision_of(p) == Some(current) {
                c.current += 1;
            }
            if revision_of(p) == Some(update) {
                c.updated += 1;
            }
        }
    }
    c
}

impl Ctx {
    /// Makes the ordinal's claims exist, owned as the retention policy
    /// says. `condemned`: the pod is about to be removed by a scale-down.
    async fn ensure_claims(
        &self,
        set: &StatefulSet,
        ordinal: i32,
        pod: Option<&Pod>,
        condemned: bool,
    ) -> Result<(), Error> {
        let namespace = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
        let policy = set
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_claim_retention_policy.clone())
            .unwrap_or_default();
        let set_ref = OwnerReference {
            controller: None,
            ..pods::controller_ref("apps/v1", "StatefulSet", &set.metadata)
        };
        for claim in claims_for(set, ordinal) {
            let name = claim.name_any();
            let existing = match self.claims.get(&namespace, &name) {
                Some(c) => c,
                None if condemned => continue,
                None => match api.create(&PostParams::default(), &claim).await {
                    Ok(c) => Arc::new(c),
                    Err(e) if framework::is_already_exists(&e) => continue,
                    Err(e) => return Err(Error::CreateClaim(name, e)),
                },
            };
            let mut refs: Vec<OwnerReference> = existing.owner_references().to_vec();
            let before = refs.clone();
            let by_set = policy.when_deleted.as_deref() == Some("Delete");
            refs.retain(|r| r.uid != set_ref.uid || by_set);
            // A claim handed to its condemned pod is taken back if the set
            // scales up again before the pod is gone.
            let pod_name = format!("{}-{ordinal}", set.name_any());
            if !condemned {
                refs.retain(|r| !(r.kind == "Pod" && r.api_version == "v1" && r.name == pod_name));
            }
            if by_set && !refs.iter().any(|r| r.uid == set_ref.uid) {
                refs.push(set_ref.clone());
            }
            if condemned
                && policy.when_scaled.as_deref() == Some("Delete")
                && let Some(pod) = pod
            {
                let pod_ref = OwnerReference {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    name: pod.name_any(),
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    controller: None,
                    block_owner_deletion: None,
                };
                if !refs.iter().any(|r| r.uid == pod_ref.uid) {
                    refs.push(pod_ref);
                }
            }
            if refs != before {
                let patch = json!({"metadata": {
                    "resourceVersion": existing.resource_version(),
                    "ownerReferences": if refs.is_empty() { Value::Null } else { json!(refs) },
                }});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| Error::ClaimOwners(name, e))?;
            }
        }
        Ok(())
    }

    async fn delete_pod(&self, pod: &Pod) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => {
                info!(pod = %pod.name_any(), "deleted pod");
                Ok(())
            }
            Err(e) if framework::is_not_found(&e) || framework::is_conflict(&e) => Ok(()),
            Err(e) => Err(Error::DeletePod(pod.name_any(), e)),
        }
    }
}

/// Creates, deletes and replaces pods toward the spec.
async fn manage(
    ctx: &Ctx,
    set: &StatefulSet,
    pods_by_ordinal: &BTreeMap<i32, Arc<Pod>>,
    condemned: &[Arc<Pod>],
    current: &ControllerRevision,
    update: &ControllerRevision,
) -> Result<(), Error> {
    let spec = set.spec.clone().unwrap_or_default();
    let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
    let start = start_ordinal(set);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let current_template = history::template_of(current).unwrap_or_else(|| spec.template.clone());
    let api: Api<Pod> = Api::namespaced(
        ctx.client.clone(),
        set.namespace().as_deref().unwrap_or_default(),
    );
    let mut all_healthy = true;
    for ordinal in start..start + replicas {
        match pods_by_ordinal.get(&ordinal) {
            None => {
                ctx.ensure_claims(set, ordinal, None, false).await?;
                let (template, revision) = if uses_current_revision(set, ordinal) {
                    (&current_template, current.name_any())
                } else {
                    (&spec.template, update.name_any())
                };
                let pod = pod_for(set, template, &revision, ordinal);
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => info!(pod = %pod.name_any(), "created pod"),
                    Err(e)
                        if framework::is_already_exists(&e)
                            || framework::is_namespace_terminating(&e) => {}
                    Err(e) => return Err(Error::CreatePod(pod.name_any(), e)),
                }
                all_healthy = false;
                if ordered {
                    return Ok(());
                }
            }
            Some(p) if matches!(pods::phase(p), "Failed" | "Succeeded") && !terminating(p) => {
                // Recreated at the next pass.
                ctx.delete_pod(p).await?;
                all_healthy = false;
                if ordered {
                    return Ok(());
                }
            }
            Some(p) => {
                ctx.ensure_claims(set, ordinal, Some(p), false).await?;
                let min_ready = spec.min_ready_seconds.unwrap_or(0);
                let healthy =
                    running_and_ready(p) && pods::is_available(p, min_ready, Timestamp::now());
                if !healthy || terminating(p) {
                    all_healthy = false;
                    if ordered {
                        return Ok(());
                    }
                }
            }
        }
    }
    // Scale down: highest ordinal first; OrderedReady one at a time and
    // only while the rest is healthy.
    let mut doomed: Vec<&Arc<Pod>> = condemned.iter().collect();
    doomed.sort_by_key(|p| std::cmp::Reverse(ordinal_of(&set.name_any(), &p.name_any())));
    for p in doomed {
        if terminating(p) {
            if ordered {
                return Ok(());
            }
            continue;
        }
        if ordered && !all_healthy {
            return Ok(());
        }
        let ordinal = ordinal_of(&set.name_any(), &p.name_any()).unwrap_or(-1);
        ctx.ensure_claims(set, ordinal, Some(p), true).await?;
        ctx.delete_pod(p).await?;
        if ordered {
            return Ok(());
        }
    }
    // Rolling update: from the highest ordinal down to the partition.
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" || !all_healthy {
        return Ok(());
    }
    let partition = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let update_name = update.name_any();
    for ordinal in (start + partition.max(0)..start + replicas).rev() {
        let Some(p) = pods_by_ordinal.get(&ordinal) else {
            continue;
        };
        if revision_of(p) != Some(update_name.as_str()) && !terminating(p) {
            info!(pod = %p.name_any(), revision = %update_name, "replacing pod with the update revision");
            return ctx.delete_pod(p).await;
        }
    }
    Ok(())
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let key = set.uid().unwrap_or_default();
    ctx.pods.ready().await;
    ctx.claims.ready().await;
    ctx.revisions.ready().await;
    let spec = set.spec.clone().unwrap_or_default();
    let Some(selector) = LabelSelector::from_k8s(&spec.selector)
        .ok()
        .filter(|s| !s.is_empty())
    else {
        warn!(statefulset = %name, %namespace, "invalid or empty selector; not syncing");
        return Ok(Action::await_change());
    };
    let controller = pods::controller_ref("apps/v1", "StatefulSet", &set.metadata);
    let empty = BTreeMap::new();
    let fresh_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let matches_labels = |m: &ObjectMeta| selector.matches(m.labels.as_ref().unwrap_or(&empty));
    // Upstream claims only pods named for the set.
    let claimed = claim::claim(
        &ctx.client,
        &set.metadata,
        &controller,
        |p: &Pod| matches_labels(&p.metadata) && ordinal_of(&name, &p.name_any()).is_some(),
        ctx.pods.list(&namespace),
        || async { claim::recheck(&fresh_api, &set.metadata).await },
    )
    .await?;
    let revisions = claim::claim(
        &ctx.client,
        &set.metadata,
        &controller,
        |r: &ControllerRevision| matches_labels(&r.metadata),
        ctx.revisions.list(&namespace),
        || async { claim::recheck(&fresh_api, &set.metadata).await },
    )
    .await?;
    let status = set.status.clone().unwrap_or_default();
    let next = history::max_revision(&revisions) + 1;
    let wanted = history::new_revision(
        &set.metadata,
        controller.clone(),
        &spec.template,
        next,
        status.collision_count,
    );
    let update = match history::ensure(&ctx.client, &revisions, wanted, next).await {
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
    let current = status
        .current_revision
        .as_deref()
        .and_then(|c| revisions.iter().find(|r| r.name_any() == c))
        .map(|r| (**r).clone())
        .unwrap_or_else(|| update.clone());

    let start = start_ordinal(&set);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let mut in_range = BTreeMap::new();
    let mut condemned = Vec::new();
    for p in &claimed {
        let Some(o) = ordinal_of(&name, &p.name_any()) else {
            continue;
        };
        if o >= start && o < start + replicas {
            in_range.insert(o, p.clone());
        } else {
            condemned.push(p.clone());
        }
    }
    let manage_error = if set.metadata.deletion_timestamp.is_none() {
        manage(&ctx, &set, &in_range, &condemned, &current, &update)
            .await
            .err()
    } else {
        None
    };

    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let c = count(
        &claimed,
        &current.name_any(),
        &update.name_any(),
        min_ready,
        now,
    );
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let (mut current_name, mut current_replicas) = (current.name_any(), c.current);
    if rolling && c.updated == c.replicas && c.ready == c.replicas && c.replicas == replicas {
        current_name = update.name_any();
        current_replicas = c.updated;
    }
    let patch = json!({"status": {
        "observedGeneration": set.metadata.generation,
        "replicas": c.replicas,
        "readyReplicas": c.ready,
        "availableReplicas": c.available,
        "currentReplicas": current_replicas,
        "updatedReplicas": c.updated,
        "currentRevision": current_name,
        "updateRevision": update.name_any(),
        "collisionCount": status.collision_count.unwrap_or(0),
    }});
    let have = json!({"status": {
        "observedGeneration": status.observed_generation,
        "replicas": status.replicas,
        "readyReplicas": status.ready_replicas.unwrap_or(0),
        "availableReplicas": status.available_replicas.unwrap_or(0),
        "currentReplicas": status.current_replicas.unwrap_or(0),
        "updatedReplicas": status.updated_replicas.unwrap_or(0),
        "currentRevision": status.current_revision,
        "updateRevision": status.update_revision,
        "collisionCount": status.collision_count.unwrap_or(0),
    }});
    if patch != have {
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
    let live: Vec<String> = claimed
        .iter()
        .filter_map(|p| revision_of(p).map(str::to_owned))
        .collect();
    let keep: Vec<String> = live.into_iter().chain([current_name.clone()]).collect();
    // Revisions are labelled by hash but pods by revision name: map back.
    let keep_hashes: Vec<String> = revisions
        .iter()
        .filter(|r| keep.contains(&r.name_any()))
        .map(|r| history::hash_of(r))
        .collect();
    history::truncate(
        &ctx.client,
        &revisions,
        &keep_hashes,
        &history::hash_of(&update),
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;
    ctx.backoff.succeeded(&key);
    let waiting = min_ready > 0
        && claimed
            .iter()
            .any(|p| pods::is_ready(p) && !pods::is_available(p, min_ready, now));
    Ok(Action::requeue(if waiting {
        Duration::from_secs(min_ready as u64 + 1).min(ctx.resync)
    } else {
        ctx.resync
    }))
}

fn on_pod_change(change: &Changed<Pod>) -> Vec<ObjectRef<StatefulSet>> {
    let to = |p: &Pod| {
        sts_owner(&p.metadata).map(|r| {
            ObjectRef::new(&r.name).within(p.metadata.namespace.as_deref().unwrap_or_default())
        })
    };
    match change {
        Changed::Added(p) | Changed::Deleted(p) => to(p).into_iter().collect(),
        Changed::Updated { old, new } => {
            let mut refs: Vec<_> = to(new).into_iter().collect();
            if let Some(r) = to(old)
                && !refs.contains(&r)
            {
                refs.push(r);
            }
            refs
        }
    }
}

fn on_revision_change(change: &Changed<ControllerRevision>) -> Vec<ObjectRef<StatefulSet>> {
    let r = change.latest();
    sts_owner(&r.metadata)
        .map(|o| {
            ObjectRef::new(&o.name).within(r.metadata.namespace.as_deref().unwrap_or_default())
        })
        .into_iter()
        .collect()
}

fn error_policy(set: Arc<StatefulSet>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let delay = ctx.backoff.failed(&set.uid().unwrap_or_default());
    warn!(object.ref = %ObjectRef::from_obj(&*set), error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let controller = crate::framework::controller(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default(),
        );
        let (pods, pod_events) = ctx.informers.pods.subscribe(on_pod_change);
        let (claims, claim_events) = ctx
            .informers
            .persistent_volume_claims
            .subscribe(|_: &Changed<PersistentVolumeClaim>| Vec::<ObjectRef<StatefulSet>>::new());
        let (revisions, revision_events) = ctx
            .informers
            .controller_revisions
            .subscribe(on_revision_change);
        let state = Arc::new(Ctx {
            client,
            pods,
            claims,
            revisions,
            resync: ctx.resync_period(),
            backoff: Backoff::default(),
        });
        controller
            .reconcile_on(pod_events)
            .reconcile_on(claim_events)
            .reconcile_on(revision_events)
            .with_config(
                controller::Config::default()
                    .concurrency(ctx.settings.concurrent_statefulset_syncs.max(1)),
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

    fn set(strategy: Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {
                "replicas": 3, "serviceName": "web", "ordinals": {"start": 1},
                "selector": {"matchLabels": {"app": "web"}},
                "updateStrategy": strategy,
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "db"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
            },
            "status": {"replicas": 3, "currentReplicas": 2}
        }))
        .unwrap()
    }

    #[test]
    fn ordinals_are_parsed_only_from_the_sets_own_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web-1", "web-1-2"), Some(2));
    }

    #[test]
    fn pods_get_their_identity_claims_and_revision() {
        let s = set(json!({"type": "RollingUpdate"}));
        let spec = s.spec.clone().unwrap();
        let p = pod_for(&s, &spec.template, "web-abc", 2);
        assert_eq!(p.name_any(), "web-2");
        let labels = p.labels();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[HASH_LABEL], "web-abc");
        let ps = p.spec.unwrap();
        assert_eq!(ps.hostname.as_deref(), Some("web-2"));
        assert_eq!(ps.subdomain.as_deref(), Some("web"));
        let vol = &ps.volumes.unwrap()[0];
        assert_eq!(
            vol.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-2"
        );
        let claims = claims_for(&s, 2);
        assert_eq!(claims[0].name_any(), "data-web-2");
        assert_eq!(claims[0].labels()["tier"], "db");
        assert_eq!(claims[0].labels()["app"], "web");
    }

    #[test]
    fn a_partition_keeps_lower_ordinals_on_the_current_revision() {
        let s = set(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}));
        // Ordinals start at 1: 1 and 2 are below the partition.
        assert!(uses_current_revision(&s, 1));
        assert!(uses_current_revision(&s, 2));
        assert!(!uses_current_revision(&s, 3));
        assert!(!uses_current_revision(&set(json!({"type": "OnDelete"})), 1));
    }

    #[test]
    fn counts_follow_revisions_and_readiness() {
        let mk = |name: &str, rev: &str, ready: bool| {
            let mut p = pod(name, "n", "Running", ready.then_some(0));
            p.metadata.labels = Some([(HASH_LABEL.to_owned(), rev.to_owned())].into());
            Arc::new(p)
        };
        let pods = vec![
            mk("web-1", "old", true),
            mk("web-2", "new", true),
            mk("web-3", "new", false),
        ];
        let c = count(&pods, "old", "new", 0, Timestamp::now());
        assert_eq!(
            c,
            Counts {
                replicas: 3,
                ready: 2,
                available: 2,
                current: 1,
                updated: 2
            }
        );
    }
}
