//! A Job runs pods until `completions` of them succeed (or, Indexed, one per
//! completion index), at most `parallelism` at once, and fails once
//! `backoffLimit` failures, `activeDeadlineSeconds` or a podFailurePolicy
//! rule say so (upstream's job controller).
//!
//! Every pod is created with the `batch.kubernetes.io/job-tracking`
//! finalizer, so a finished pod cannot vanish before it is counted: its UID
//! goes into `status.uncountedTerminatedPods` first, then the finalizer is
//! removed, then it moves into `succeeded`/`failed`. A failing (or
//! successPolicy-satisfied) job first gets `FailureTarget`
//! (`SuccessCriteriaMet`), its remaining pods are deleted, and once none is
//! left it gets `Failed` (`Complete`), as 1.33 does. Replacement pods wait
//! out an exponential backoff after failures (10 s doubling, at most 6 min).

pub(crate) mod logic;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::{self, BoxFuture};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use skiff_api_types::selector::LabelSelector;
use tracing::{debug, info, warn};

use crate::cache::{Cache, Changed};
use crate::claim;
use crate::expectations::Expectations;
use crate::framework::{self, Backoff, Context};
use crate::pods;
use crate::replicaset::slow_start_batch;
use logic::FailureAction;

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "job-controller";
/// The completion index of an Indexed job's pod (annotation and label).
pub(crate) const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// Keeps a pod until the controller has counted it.
pub(crate) const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// How often the pod's index failed before (backoffLimitPerIndex).
const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// The `spec.managedBy` this controller acts for.
const MANAGED_BY: &str = "kubernetes.io/job-controller";

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("claiming pods")]
    Claim(#[from] claim::Error),
    #[error("creating pods")]
    Create(#[source] kube::Error),
    #[error("deleting pods")]
    Delete(#[source] kube::Error),
    #[error("removing the tracking finalizer of pod {0}")]
    Finalizer(String, #[source] kube::Error),
    #[error("updating the status")]
    Status(#[source] kube::Error),
}

/// The resourceVersions a status write made stale, and the job it wrote.
type Written = (HashSet<String>, Arc<Job>);

/// Failures since the last success, and when the last one was seen.
#[derive(Clone, Copy, Debug)]
struct FailureRecord {
    failures: u32,
    last: Timestamp,
}

struct Ctx {
    client: Client,
    pods: Cache<Pod>,
    expectations: Arc<Expectations>,
    /// Per job UID.
    records: Mutex<HashMap<String, FailureRecord>>,
    /// Per job UID: pods whose finalizer was removed after counting them;
    /// a stale cache may still show the finalizer, they are not counted
    /// twice (upstream's finalizer expectations).
    counted: Mutex<HashMap<String, HashSet<String>>>,
    /// Per job UID: the job as this controller last wrote it, and the
    /// resourceVersions that write made stale. A cache still showing one
    /// of those would have the job count again what it has counted.
    written: Mutex<HashMap<String, Written>>,
    recorder: Recorder,
    resync: Duration,
    backoff: Backoff,
}

impl Ctx {
    /// Records an event about the job (`kubectl describe job` shows them).
    async fn event(&self, job: &Job, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &job.object_ref(&())).await {
            debug!(error = %e, "publishing an event");
        }
    }

    /// The newest copy of the job: the cached one, unless this controller
    /// has written a newer one the cache has not shown yet.
    fn newest(&self, cached: Arc<Job>) -> Arc<Job> {
        let key = cached.uid().unwrap_or_default();
        let mut written = self.written.lock().expect("written");
        match written.get(&key) {
            Some((stale, job))
                if stale.contains(&cached.resource_version().unwrap_or_default()) =>
            {
                job.clone()
            }
            Some(_) => {
                written.remove(&key);
                cached
            }
            None => cached,
        }
    }

    /// Records a status write: `before` is now stale.
    fn wrote(&self, before: &Job, after: Job) {
        let key = before.uid().unwrap_or_default();
        let mut written = self.written.lock().expect("written");
        let entry = written
            .entry(key)
            .or_insert_with(|| (HashSet::new(), Arc::new(before.clone())));
        entry
            .0
            .insert(before.resource_version().unwrap_or_default());
        // An earlier write of this pass is stale too.
        entry
            .0
            .insert(entry.1.resource_version().unwrap_or_default());
        entry.1 = Arc::new(after);
    }
}

fn is_job_owner(r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
    r.kind == "Job" && r.api_version.starts_with("batch/")
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// Failed, as the job counts it (upstream's `isPodFailed`): phase Failed,
/// or (unless only failed pods are replaced) deleted before it succeeded.
fn is_failed(pod: &Pod, spec: &JobSpec) -> bool {
    if pods::phase(pod) == "Failed" {
        return true;
    }
    if spec.pod_replacement_policy.as_deref() == Some("Failed") {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && pods::phase(pod) != "Succeeded"
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(pods::phase(pod), "Succeeded" | "Failed")
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Finished: `Complete` or `Failed` is True.
pub(crate) fn is_finished(job: &Job) -> bool {
    condition(job, "Complete").is_some() || condition(job, "Failed").is_some()
}

fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> Value {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastProbeTime": Time(now), "lastTransitionTime": Time(now),
    })
}

/// Sets a condition in `conditions` (JSON), keeping the transition time
/// when the status does not change. Answers whether anything changed.
fn set_condition(conditions: &mut Vec<Value>, c: Value) -> bool {
    match conditions.iter_mut().find(|x| x["type"] == c["type"]) {
        Some(old) if old["status"] == c["status"] && old["reason"] == c["reason"] => false,
        Some(old) => {
            *old = c;
            true
        }
        None => {
            conditions.push(c);
            true
        }
    }
}

/// A pod for the job, index `index` when Indexed (upstream's pod template
/// plus the index annotation/label, hostname and `JOB_COMPLETION_INDEX`).
fn pod_for(job: &Job, index: Option<i32>, failures: i32) -> Pod {
    let spec = job.spec.clone().unwrap_or_default();
    let template = spec.template;
    let meta = template.metadata.unwrap_or_default();
    let name = job.name_any();
    let mut prefix = match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    };
    if prefix.len() > 58 {
        let mut cut = 58;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut pod_spec = template.spec.unwrap_or_default();
    if let Some(i) = index {
        labels.insert(INDEX_KEY.into(), i.to_string());
        annotations.insert(INDEX_KEY.into(), i.to_string());
        if spec.backoff_limit_per_index.is_some() {
            annotations.insert(INDEX_FAILURE_COUNT.into(), failures.to_string());
        }
        pod_spec.hostname = Some(format!("{name}-{i}"));
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{INDEX_KEY}']"),
                }),
                ..EnvVarSource::default()
            }),
        };
        let containers = pod_spec
            .containers
            .iter_mut()
            .chain(pod_spec.init_containers.iter_mut().flatten());
        for c in containers {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == env.name) {
                vars.push(env.clone());
            }
        }
    }
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![pods::controller_ref("batch/v1", "Job", &job.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// Removes the tracking finalizer, pinned to the cached resourceVersion.
async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    if !has_finalizer(pod) {
        return Ok(());
    }
    let rest: Vec<&String> = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != TRACKING_FINALIZER)
        .collect();
    let patch = json!({"metadata": {
        "resourceVersion": pod.metadata.resource_version,
        "finalizers": if rest.is_empty() { Value::Null } else { json!(rest) },
    }});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Err(e) if framework::is_not_found(&e) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// What one pass decided to finish the job with: (final type, reason,
/// message).
type Finish = (&'static str, String, String);

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let job = ctx.newest(job);
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let key = job.uid().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    if spec.managed_by.as_deref().is_some_and(|m| m != MANAGED_BY) {
        return Ok(Action::await_change());
    }
    ctx.pods.ready().await;
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let Ok(selector) = LabelSelector::from_k8s_option(spec.selector.as_ref()) else {
        warn!(job = %name, %namespace, "invalid selector; not syncing");
        return Ok(Action::await_change());
    };
    let controller = pods::controller_ref("batch/v1", "Job", &job.metadata);
    let empty = BTreeMap::new();
    let fresh_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let candidates = ctx.pods.list(&namespace);
    let claimed = claim::claim(
        &ctx.client,
        &job.metadata,
        &controller,
        |p: &Pod| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)),
        candidates,
        || async { claim::recheck(&fresh_api, &job.metadata).await },
    )
    .await?;
    if is_finished(&job) || job.metadata.deletion_timestamp.is_some() {
        // Nothing more to count: let the remaining pods go.
        for p in claimed.iter().filter(|p| has_finalizer(p)) {
            remove_finalizer(&pod_api, p)
                .await
                .map_err(|e| Error::Finalizer(p.name_any(), e))?;
        }
        ctx.records.lock().expect("records").remove(&key);
        ctx.counted.lock().expect("counted").remove(&key);
        ctx.written.lock().expect("written").remove(&key);
        return Ok(Action::await_change());
    }

    let now = Timestamp::now();
    let status = job.status.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let per_index = spec.backoff_limit_per_index;
    let range = completions.unwrap_or(0);
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_s: BTreeSet<String> = uncounted
        .succeeded
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut unc_f: BTreeSet<String> = uncounted.failed.unwrap_or_default().into_iter().collect();
    let mut completed_idx =
        logic::parse_indexes(status.completed_indexes.as_deref().unwrap_or(""), range);
    let mut failed_idx =
        logic::parse_indexes(status.failed_indexes.as_deref().unwrap_or(""), range);
    let mut conditions: Vec<Value> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| serde_json::to_value(c).unwrap_or_default())
        .collect();
    let mut finish: Option<Finish> = None;
    if let Some(c) = condition(&job, "FailureTarget") {
        finish = Some((
            "Failed",
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        ));
    } else if let Some(c) = condition(&job, "SuccessCriteriaMet") {
        finish = Some((
            "Complete",
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        ));
    }

    // Count what finished since the last pass, in the order pods finished.
    let counted: HashSet<String> = {
        let mut all = ctx.counted.lock().expect("counted");
        let set = all.entry(key.clone()).or_default();
        set.retain(|u| claimed.iter().any(|p| &uid(p) == u && has_finalizer(p)));
        set.clone()
    };
    let mut finished: Vec<&Arc<Pod>> = claimed
        .iter()
        .filter(|p| has_finalizer(p) && !counted.contains(&uid(p)))
        .filter(|p| pods::phase(p) == "Succeeded" || is_failed(p, &spec))
        .collect();
    finished.sort_by_key(|p| finish_time(p));
    let mut ignored: Vec<Arc<Pod>> = Vec::new();
    let (mut new_failures, mut new_success) = (0u32, false);
    for p in finished {
        let u = uid(p);
        if unc_s.contains(&u) || unc_f.contains(&u) {
            continue;
        }
        let index = logic::pod_index(p).filter(|i| indexed && *i < range);
        if pods::phase(p) == "Succeeded" {
            unc_s.insert(u);
            new_success = true;
            if let Some(i) = index {
                completed_idx.insert(i);
            }
            continue;
        }
        match logic::failure_action(&spec, p) {
            FailureAction::Ignore => ignored.push(p.clone()),
            FailureAction::FailJob(message) => {
                unc_f.insert(u);
                new_failures += 1;
                finish.get_or_insert(("Failed", "PodFailurePolicy".into(), message));
            }
            FailureAction::FailIndex => {
                unc_f.insert(u);
                if let (Some(i), Some(_)) = (index, per_index) {
                    failed_idx.insert(i);
                }
            }
            FailureAction::Count => {
                unc_f.insert(u);
                new_failures += 1;
                if let (Some(i), Some(limit)) = (index, per_index)
                    && index_failures(p) + 1 > limit
                {
                    failed_idx.insert(i);
                }
            }
        }
    }
    let succeeded = status.succeeded.unwrap_or(0) + unc_s.len() as i32;
    let failed = status.failed.unwrap_or(0) + unc_f.len() as i32;
    let mut active: Vec<Arc<Pod>> = claimed
        .iter()
        .filter(|p| pods::is_active(p))
        .cloned()
        .collect();
    let terminating = claimed.iter().filter(|p| is_terminating(p)).count() as i32;
    let suspended = spec.suspend == Some(true);
    let mut start_time = status.start_time.clone().map(|t| t.0);
    if !suspended && start_time.is_none() {
        start_time = Some(now);
    }
    let mut requeue = ctx.resync;

    if finish.is_none()
        && let (Some(ads), Some(start)) = (spec.active_deadline_seconds, start_time)
        && !suspended
    {
        let deadline = start + SignedDuration::from_secs(ads);
        if now >= deadline {
            finish = Some((
                "Failed",
                "DeadlineExceeded".into(),
                "Job was active longer than specified deadline".into(),
            ));
        } else {
            let left = deadline.duration_since(now).unsigned_abs();
            requeue = requeue.min(left + Duration::from_millis(100));
        }
    }
    if finish.is_none()
        && per_index.is_none()
        && (failed > spec.backoff_limit.unwrap_or(6)
            || past_backoff_limit_on_failure(&spec, &claimed))
    {
        finish = Some((
            "Failed",
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into(),
        ));
    }
    if finish.is_none()
        && let Some(max) = spec.max_failed_indexes
        && failed_idx.len() as i32 > max
    {
        finish = Some((
            "Failed",
            "MaxFailedIndexesExceeded".into(),
            "Job has exceeded the specified maximal number of failed indexes".into(),
        ));
    }
    if finish.is_none()
        && indexed
        && let Some(policy) = &spec.success_policy
        && let Some(rule) = logic::success_rule_met(policy, &completed_idx, range)
    {
        finish = Some((
            "Complete",
            "SuccessPolicy".into(),
            format!("Matched rules at index {rule}"),
        ));
    }
    if finish.is_none() {
        let done = if indexed {
            (completed_idx.len() + failed_idx.len()) as i32 >= range
        } else {
            match completions {
                Some(c) => succeeded >= c,
                None => succeeded > 0 && active.is_empty(),
            }
        };
        if done && indexed && !failed_idx.is_empty() {
            finish = Some((
                "Failed",
                "FailedIndexes".into(),
                "Job has failed indexes".into(),
            ));
        } else if done {
            finish = Some((
                "Complete",
                "CompletionsReached".into(),
                "Reached expected number of succeeded pods".into(),
            ));
        }
    }

    let mut manage_error = None;
    if let Some((final_type, reason, message)) = &finish {
        let target = if *final_type == "Failed" {
            "FailureTarget"
        } else {
            "SuccessCriteriaMet"
        };
        set_condition(
            &mut conditions,
            new_condition(target, "True", reason, message, now),
        );
        if let Err(e) = delete_pods(&ctx, &pod_api, &job, &active).await {
            manage_error = Some(e);
        }
        active.clear();
    } else if suspended {
        if let Err(e) = delete_pods(&ctx, &pod_api, &job, &active).await {
            manage_error = Some(e);
        }
        active.clear();
        set_condition(
            &mut conditions,
            new_condition("Suspended", "True", "JobSuspended", "Job suspended", now),
        );
    } else {
        if conditions
            .iter()
            .any(|c| c["type"] == "Suspended" && c["status"] == "True")
        {
            set_condition(
                &mut conditions,
                new_condition("Suspended", "False", "JobResumed", "Job resumed", now),
            );
            // A resumed job's activeDeadlineSeconds counts from now.
            start_time = Some(now);
        }
        let record = {
            let mut records = ctx.records.lock().expect("records");
            let r = records.entry(key.clone()).or_insert(FailureRecord {
                failures: 0,
                last: now,
            });
            if new_success {
                r.failures = 0;
            }
            if new_failures > 0 {
                r.failures += new_failures;
                r.last = now;
            }
            *r
        };
        if ctx.expectations.satisfied(&key) {
            let ready_at = record.last
                + SignedDuration::try_from(logic::failure_backoff(record.failures))
                    .unwrap_or(SignedDuration::ZERO);
            let wait = (ready_at > now).then(|| ready_at.duration_since(now).unsigned_abs());
            let replace_terminating = spec.pod_replacement_policy.as_deref() != Some("Failed");
            let busy = active.len() as i32 + if replace_terminating { 0 } else { terminating };
            let outcome = if indexed {
                manage_indexed(
                    &ctx,
                    &job,
                    &pod_api,
                    &active,
                    &claimed,
                    &completed_idx,
                    &failed_idx,
                    parallelism,
                    busy,
                    wait,
                )
                .await
            } else {
                let want = match completions {
                    Some(c) => parallelism.min((c - succeeded).max(0)),
                    None if succeeded > 0 => 0,
                    None => parallelism,
                };
                manage_non_indexed(&ctx, &job, &pod_api, &active, want, busy, wait).await
            };
            match outcome {
                Ok(Some(w)) => requeue = requeue.min(w + Duration::from_millis(100)),
                Ok(None) => {}
                Err(e) => manage_error = Some(e),
            }
        }
    }

    // Record the newly finished pods before letting them go.
    let old_unc = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let old_s: BTreeSet<String> = old_unc.succeeded.unwrap_or_default().into_iter().collect();
    let old_f: BTreeSet<String> = old_unc.failed.unwrap_or_default().into_iter().collect();
    let indexes = |set: &BTreeSet<i32>| logic::format_indexes(set);
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    if old_s != unc_s || old_f != unc_f {
        let mut patch =
            json!({"status": {"uncountedTerminatedPods": uncounted_json(&unc_s, &unc_f)}});
        if indexed {
            patch["status"]["completedIndexes"] = json!(indexes(&completed_idx));
            if per_index.is_some() {
                patch["status"]["failedIndexes"] = json!(indexes(&failed_idx));
            }
        }
        let after = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::Status)?;
        ctx.wrote(&job, after);
    }
    // Let the counted (and the ignored) pods go.
    let by_uid: HashMap<String, &Arc<Pod>> = claimed.iter().map(|p| (uid(p), p)).collect();
    let releasing: Vec<Arc<Pod>> = unc_s
        .iter()
        .chain(unc_f.iter())
        .filter_map(|u| by_uid.get(u).map(|p| (*p).clone()))
        .chain(ignored)
        .collect();
    let results = future::join_all(releasing.iter().map(|p| remove_finalizer(&pod_api, p))).await;
    let mut released = HashSet::new();
    let mut finalizer_error = None;
    for (p, r) in releasing.iter().zip(results) {
        match r {
            Ok(()) => {
                released.insert(uid(p));
            }
            Err(e) => {
                finalizer_error.get_or_insert(Error::Finalizer(p.name_any(), e));
            }
        }
    }
    ctx.counted
        .lock()
        .expect("counted")
        .entry(key.clone())
        .or_default()
        .extend(released.iter().cloned());
    let gone = |u: &String| released.contains(u) || !by_uid.contains_key(u);
    let moved_s = unc_s.iter().filter(|u| gone(u)).count() as i32;
    let moved_f = unc_f.iter().filter(|u| gone(u)).count() as i32;
    unc_s.retain(|u| !gone(u));
    unc_f.retain(|u| !gone(u));

    // Finished once nothing is left running or uncounted.
    let mut completion_time = status.completion_time.clone().map(|t| t.0);
    if let Some((final_type, reason, message)) = &finish
        && active.is_empty()
        && terminating == 0
        && unc_s.is_empty()
        && unc_f.is_empty()
        && manage_error.is_none()
    {
        set_condition(
            &mut conditions,
            new_condition(final_type, "True", reason, message, now),
        );
        if *final_type == "Complete" {
            completion_time = Some(now);
        }
        info!(job = %name, %namespace, condition = *final_type, reason = %reason, "job finished");
        if *final_type == "Complete" {
            ctx.event(&job, EventType::Normal, "Completed", "Job completed".into())
                .await;
        } else {
            ctx.event(&job, EventType::Warning, reason, message.clone())
                .await;
        }
    }
    let ready = active.iter().filter(|p| pods::is_ready(p)).count() as i32;
    let or_null = |n: i32| if n == 0 { Value::Null } else { json!(n) };
    let mut patch = json!({"status": {
        "active": or_null(active.len() as i32),
        "ready": ready,
        "terminating": terminating,
        "succeeded": or_null(status.succeeded.unwrap_or(0) + moved_s),
        "failed": or_null(status.failed.unwrap_or(0) + moved_f),
        "uncountedTerminatedPods": uncounted_json(&unc_s, &unc_f),
        "conditions": if conditions.is_empty() { Value::Null } else { json!(conditions) },
        "startTime": start_time.map(Time),
        "completionTime": completion_time.map(Time),
    }});
    if indexed {
        patch["status"]["completedIndexes"] = json!(indexes(&completed_idx));
        if per_index.is_some() {
            patch["status"]["failedIndexes"] = json!(indexes(&failed_idx));
        }
    }
    if status_changed(&job, &patch) {
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(after) => ctx.wrote(&job, after),
            Err(e) if framework::is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(Error::Status(e)),
        }
    }
    if let Some(e) = manage_error.or(finalizer_error) {
        return Err(e);
    }
    ctx.backoff.succeeded(&key);
    Ok(Action::requeue(requeue))
}

/// `uncountedTerminatedPods` as upstream writes it: empty lists left out.
fn uncounted_json(succeeded: &BTreeSet<String>, failed: &BTreeSet<String>) -> Value {
    let list = |set: &BTreeSet<String>| {
        if set.is_empty() {
            Value::Null
        } else {
            json!(set)
        }
    };
    json!({"succeeded": list(succeeded), "failed": list(failed)})
}

/// Whether the patch would change the job's status.
fn status_changed(job: &Job, patch: &Value) -> bool {
    let current = serde_json::to_value(job.status.clone().unwrap_or_default()).unwrap_or_default();
    let Some(fields) = patch["status"].as_object() else {
        return false;
    };
    fields.iter().any(|(k, v)| {
        let have = current.get(k).cloned().unwrap_or(Value::Null);
        match (k.as_str(), v) {
            ("uncountedTerminatedPods", v) => {
                let empty = |x: &Value| x.as_array().is_none_or(Vec::is_empty);
                empty(&v["succeeded"]) != empty(&have["succeeded"])
                    || empty(&v["failed"]) != empty(&have["failed"])
                    || (v["succeeded"] != have["succeeded"] && !empty(&v["succeeded"]))
                    || (v["failed"] != have["failed"] && !empty(&v["failed"]))
            }
            ("conditions", Value::Array(new)) => {
                let old = have.as_array().cloned().unwrap_or_default();
                new.len() != old.len()
                    || new.iter().zip(&old).any(|(a, b)| {
                        a["type"] != b["type"]
                            || a["status"] != b["status"]
                            || a["reason"] != b["reason"]
                    })
            }
            ("startTime" | "completionTime", v) => v.is_null() != have.is_null(),
            (_, v) => *v != have,
        }
    })
}

/// When the pod finished (its latest container termination), for counting
/// failures in order.
fn finish_time(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max()
}

/// With `restartPolicy: OnFailure` failures are container restarts: the
/// job fails once its running pods have restarted backoffLimit times.
fn past_backoff_limit_on_failure(spec: &JobSpec, pods: &[Arc<Pod>]) -> bool {
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if !on_failure {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(pods::phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    match spec.backoff_limit.unwrap_or(6) {
        0 => restarts > 0,
        limit => restarts >= limit,
    }
}

/// The failures the pod's index had before it (backoffLimitPerIndex).
fn index_failures(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_FAILURE_COUNT))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Deletes pods the job no longer wants, releasing them first so that they
/// are not counted as failures.
async fn delete_pods(
    ctx: &Ctx,
    api: &Api<Pod>,
    job: &Job,
    doomed: &[Arc<Pod>],
) -> Result<(), Error> {
    if doomed.is_empty() {
        return Ok(());
    }
    let key = &job.uid().unwrap_or_default();
    ctx.expectations
        .expect_deletions(key, doomed.iter().map(|p| uid(p)));
    let results = future::join_all(doomed.iter().map(|p| async move {
        remove_finalizer(api, p).await?;
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: p.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        api.delete(&p.name_any(), &params).await.map(|_| ())
    }))
    .await;
    let mut first = None;
    for (p, r) in doomed.iter().zip(results) {
        match r {
            Ok(()) => {
                let note = format!("Deleted pod: {}", p.name_any());
                ctx.event(job, EventType::Normal, "SuccessfulDelete", note)
                    .await;
            }
            Err(e) => {
                ctx.expectations.deletion_observed(key, &uid(p));
                if !framework::is_not_found(&e) {
                    first.get_or_insert(Error::Delete(e));
                }
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Creates `pods` in slow-start batches.
async fn create_pods(ctx: &Ctx, api: &Api<Pod>, job: &Job, pods: Vec<Pod>) -> Result<(), Error> {
    let count = pods.len();
    if count == 0 {
        return Ok(());
    }
    let key = &job.uid().unwrap_or_default();
    ctx.expectations.expect_creations(key, count);
    let queue = Mutex::new(pods.into_iter());
    let (created, error) = slow_start_batch(count, 1, || {
        let pod = queue.lock().expect("queue").next();
        async move {
            let Some(pod) = pod else { return Ok(()) };
            match api.create(&PostParams::default(), &pod).await {
                Ok(created) => {
                    let note = format!("Created pod: {}", created.name_any());
                    ctx.event(job, EventType::Normal, "SuccessfulCreate", note)
                        .await;
                    Ok(())
                }
                Err(e) if framework::is_namespace_terminating(&e) => Ok(()),
                Err(e) => Err(e),
            }
        }
    })
    .await;
    for _ in created..count {
        ctx.expectations.creation_observed(key);
    }
    debug!(created, wanted = count, "created job pods");
    match error {
        Some(e) => Err(Error::Create(e)),
        None => Ok(()),
    }
}

/// Answers how long a backoff still holds back creations (if it does).
#[allow(clippy::too_many_arguments)]
async fn manage_non_indexed(
    ctx: &Ctx,
    job: &Job,
    api: &Api<Pod>,
    active: &[Arc<Pod>],
    want: i32,
    busy: i32,
    wait: Option<Duration>,
) -> Result<Option<Duration>, Error> {
    if (active.len() as i32) > want {
        // Not-ready and newest pods go first.
        let mut ranked: Vec<Arc<Pod>> = active.to_vec();
        ranked.sort_by_key(|p| {
            (
                pods::is_ready(p),
                std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)),
            )
        });
        let surplus = active.len() - want.max(0) as usize;
        ranked.truncate(surplus);
        delete_pods(ctx, api, job, &ranked).await?;
        return Ok(None);
    }
    let missing = (want - busy).max(0) as usize;
    if missing == 0 {
        return Ok(None);
    }
    if let Some(w) = wait {
        return Ok(Some(w));
    }
    create_pods(ctx, api, job, vec![pod_for(job, None, 0); missing]).await?;
    Ok(None)
}

#[allow(clippy::too_many_arguments)]
async fn manage_indexed(
    ctx: &Ctx,
    job: &Job,
    api: &Api<Pod>,
    active: &[Arc<Pod>],
    all: &[Arc<Pod>],
    completed: &BTreeSet<i32>,
    failed: &BTreeSet<i32>,
    parallelism: i32,
    busy: i32,
    wait: Option<Duration>,
) -> Result<Option<Duration>, Error> {
    let range = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    // Pods of done or unknown indexes, and duplicates, go.
    let mut seen = BTreeSet::new();
    let mut doomed = Vec::new();
    let mut ranked: Vec<Arc<Pod>> = active.to_vec();
    ranked.sort_by_key(|p| (logic::pod_index(p), std::cmp::Reverse(pods::is_ready(p))));
    for p in &ranked {
        match logic::pod_index(p) {
            Some(i)
                if i < range
                    && !completed.contains(&i)
                    && !failed.contains(&i)
                    && seen.insert(i) => {}
            _ => doomed.push(p.clone()),
        }
    }
    // Beyond parallelism, the highest indexes go.
    let mut keep: Vec<i32> = seen.iter().copied().collect();
    while keep.len() as i32 > parallelism {
        let i = keep.pop().unwrap_or_default();
        doomed.extend(
            ranked
                .iter()
                .filter(|p| logic::pod_index(p) == Some(i))
                .cloned(),
        );
    }
    if !doomed.is_empty() {
        delete_pods(ctx, api, job, &doomed).await?;
        return Ok(None);
    }
    let mut taken: BTreeSet<i32> = completed | failed;
    taken.extend(seen.iter().copied());
    let missing = (parallelism - busy).max(0) as usize;
    let indexes = logic::first_free_indexes(&taken, range, missing);
    if indexes.is_empty() {
        return Ok(None);
    }
    if let Some(w) = wait {
        return Ok(Some(w));
    }
    let new_pods = indexes
        .into_iter()
        .map(|i| {
            let failures = all
                .iter()
                .filter(|p| logic::pod_index(p) == Some(i) && pods::phase(p) == "Failed")
                .map(|p| index_failures(p) + 1)
                .max()
                .unwrap_or(0);
            pod_for(job, Some(i), failures)
        })
        .collect();
    create_pods(ctx, api, job, new_pods).await?;
    Ok(None)
}

/// Removes the tracking finalizer of a pod whose job is gone (checked with
/// the API server, not only the cache), as upstream does: nothing else
/// would, and the pod could never be deleted.
fn release_orphan(client: &Client, jobs: &Store<Job>, pod: &Arc<Pod>) {
    let Some(owner) = pods::controller_of(&pod.metadata).filter(|r| is_job_owner(r)) else {
        return;
    };
    if !has_finalizer(pod) {
        return;
    }
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let cached = jobs.get(&ObjectRef::new(&owner.name).within(&namespace));
    if cached.is_some_and(|j| j.metadata.uid.as_deref() == Some(owner.uid.as_str())) {
        return;
    }
    let (client, pod, owner) = (client.clone(), pod.clone(), owner.clone());
    tokio::spawn(async move {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
        match jobs.get_opt(&owner.name).await {
            Ok(Some(j)) if j.metadata.uid.as_deref() == Some(owner.uid.as_str()) => return,
            Ok(_) => {}
            Err(e) => {
                debug!(error = %e, "reading the job of a pod");
                return;
            }
        }
        let api: Api<Pod> = Api::namespaced(client, &namespace);
        let mut result = remove_finalizer(&api, &pod).await;
        if matches!(&result, Err(e) if framework::is_conflict(e))
            && let Ok(Some(fresh)) = api.get_opt(&pod.name_any()).await
        {
            result = remove_finalizer(&api, &fresh).await;
        }
        match result {
            Ok(()) => debug!(pod = %pod.name_any(), "released a pod whose job is gone"),
            Err(e) => warn!(pod = %pod.name_any(), error = %e, "releasing a pod whose job is gone"),
        }
    });
}

/// What a pod change means: it moves its job's expectations and names the
/// job to sync.
fn on_pod_change(change: &Changed<Pod>, expectations: &Expectations) -> Vec<ObjectRef<Job>> {
    let owner = |p: &Pod| {
        pods::controller_of(&p.metadata)
            .filter(|r| is_job_owner(r))
            .cloned()
    };
    let to = |r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference, p: &Pod| {
        ObjectRef::new(&r.name).within(p.metadata.namespace.as_deref().unwrap_or_default())
    };
    match change {
        Changed::Added(p) => {
            let Some(r) = owner(p) else { return Vec::new() };
            if p.metadata.deletion_timestamp.is_some() {
                expectations.deletion_observed(&r.uid, &uid(p));
            } else {
                expectations.creation_observed(&r.uid);
            }
            vec![to(&r, p)]
        }
        Changed::Updated { old, new } => {
            let mut refs = Vec::new();
            if let Some(r) = owner(new) {
                if new.metadata.deletion_timestamp.is_some() {
                    expectations.deletion_observed(&r.uid, &uid(new));
                }
                refs.push(to(&r, new));
            }
            if let Some(r) = owner(old)
                && refs.first().is_none_or(|n| n.name != r.name)
            {
                refs.push(to(&r, old));
            }
            refs
        }
        Changed::Deleted(p) => match owner(p) {
            Some(r) => {
                expectations.deletion_observed(&r.uid, &uid(p));
                vec![to(&r, p)]
            }
            None => Vec::new(),
        },
    }
}

fn error_policy(job: Arc<Job>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let delay = ctx.backoff.failed(&job.uid().unwrap_or_default());
    warn!(object.ref = %ObjectRef::from_obj(&*job), error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let controller = crate::framework::controller(
            Api::<Job>::all(client.clone()),
            watcher::Config::default(),
        );
        let expectations = Arc::new(Expectations::default());
        let (pods, pod_events) = {
            let expectations = expectations.clone();
            let jobs = controller.store();
            let client = client.clone();
            ctx.informers.pods.subscribe(move |change| {
                release_orphan(&client, &jobs, change.latest());
                on_pod_change(change, &expectations)
            })
        };
        let state = Arc::new(Ctx {
            client: client.clone(),
            pods,
            expectations,
            records: Mutex::default(),
            counted: Mutex::default(),
            written: Mutex::default(),
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: NAME.into(),
                    instance: None,
                },
            ),
            resync: ctx.resync_period(),
            backoff: Backoff::default(),
        });
        controller
            .reconcile_on(pod_events)
            .with_config(
                controller::Config::default().concurrency(ctx.settings.concurrent_job_syncs.max(1)),
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

    fn job(spec: Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "ns", "uid": "job-uid"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn pod(phase: &str, restarts: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "p"},
                "status": {"phase": phase, "containerStatuses": [{"name": "c", "ready": false,
                    "restartCount": restarts, "image": "i", "imageID": ""}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn indexed_pods_carry_their_index_hostname_finalizer_and_env() {
        let j = job(json!({"completionMode": "Indexed", "completions": 3,
            "template": {"metadata": {"labels": {"a": "b"}},
                         "spec": {"containers": [{"name": "c", "image": "i"}]}}}));
        let p = pod_for(&j, Some(2), 0);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(p.labels()[INDEX_KEY], "2");
        assert_eq!(p.annotations()[INDEX_KEY], "2");
        assert!(p.finalizers().iter().any(|f| f == TRACKING_FINALIZER));
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
        let field = env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(
            field.field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        let plain = pod_for(&job(json!({"template": {}})), None, 0);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(plain.annotations().is_empty());
    }

    #[test]
    fn on_failure_restarts_count_toward_the_backoff_limit() {
        let spec = |limit: i32| -> JobSpec {
            serde_json::from_value(json!({"backoffLimit": limit,
                "template": {"spec": {"restartPolicy": "OnFailure", "containers": []}}}))
            .unwrap()
        };
        assert!(!past_backoff_limit_on_failure(
            &spec(3),
            &[pod("Running", 2)]
        ));
        assert!(past_backoff_limit_on_failure(
            &spec(3),
            &[pod("Running", 2), pod("Pending", 1)]
        ));
        assert!(past_backoff_limit_on_failure(
            &spec(0),
            &[pod("Running", 1)]
        ));
        // Finished pods' restarts do not count.
        assert!(!past_backoff_limit_on_failure(
            &spec(1),
            &[pod("Succeeded", 4)]
        ));
        let never: JobSpec = serde_json::from_value(json!({"backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": []}}}))
        .unwrap();
        assert!(!past_backoff_limit_on_failure(&never, &[pod("Running", 9)]));
    }

    #[test]
    fn deleted_pods_count_as_failed_unless_only_failed_pods_are_replaced() {
        let mut p = (*pod("Running", 0)).clone();
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let default: JobSpec = serde_json::from_value(json!({"template": {}})).unwrap();
        assert!(is_failed(&p, &default));
        let failed_only: JobSpec =
            serde_json::from_value(json!({"template": {}, "podReplacementPolicy": "Failed"}))
                .unwrap();
        assert!(!is_failed(&p, &failed_only));
        assert!(is_terminating(&p));
    }
}
