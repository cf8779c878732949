//! A CronJob creates a Job from its template at each time its schedule
//! names (in `spec.timeZone`), named `<cronjob>-<minutes since the epoch>`,
//! as upstream's cronjob controller (v2): only the most recent missed start
//! runs, and not at all once `startingDeadlineSeconds` has passed;
//! `concurrencyPolicy` Forbid skips a start while a job runs, Replace
//! deletes the running ones first; finished jobs beyond the history limits
//! are deleted. `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime` follow the jobs.

pub(crate) mod schedule;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::cache::{Cache, Changed};
use crate::framework::{self, Backoff, Context};
use crate::job::is_finished;
use crate::pods;
use schedule::Schedule;

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "cronjob-controller";
/// When the job was scheduled to start, RFC 3339 in the CronJob's zone.
pub(crate) const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream warns beyond this many missed starts.
const TOO_MANY_MISSED: u64 = 100;

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("creating job {0}")]
    Create(String, #[source] kube::Error),
    #[error("deleting job {0}")]
    Delete(String, #[source] kube::Error),
    #[error("updating the status")]
    Status(#[source] kube::Error),
}

struct Ctx {
    client: Client,
    jobs: Cache<Job>,
    recorder: Recorder,
    local: TimeZone,
    backoff: Backoff,
}

fn owner_of(job: &Job) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    pods::controller_of(&job.metadata)
        .filter(|r| r.kind == "CronJob" && r.api_version.starts_with("batch/"))
}

fn succeeded(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

/// The job's name for a start: `<cronjob>-<minutes since the epoch>`.
pub(crate) fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The job for a start (upstream's `getJobFromTemplate2`).
fn job_for(cj: &CronJob, scheduled: Timestamp, sched: &Schedule) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), sched.format(scheduled));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![pods::controller_ref(
                "batch/v1",
                "CronJob",
                &cj.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

impl Ctx {
    async fn event(&self, cj: &CronJob, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &cj.object_ref(&())).await {
            debug!(error = %e, "publishing an event");
        }
    }
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let key = cj.uid().unwrap_or_default();
    ctx.jobs.ready().await;
    let spec = cj.spec.clone().unwrap_or_default();
    let status = cj.status.clone().unwrap_or_default();
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let mine: Vec<Arc<Job>> = ctx
        .jobs
        .list(&namespace)
        .into_iter()
        .filter(|j| owner_of(j).is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref()))
        .collect();

    // Follow the jobs: finished ones leave `active`, vanished ones too.
    let mut active: Vec<ObjectReference> = status.active.clone().unwrap_or_default();
    let mut last_successful = status.last_successful_time.clone().map(|t| t.0);
    for job in &mine {
        let uid = job.metadata.uid.clone();
        let listed = active.iter().any(|r| r.uid == uid);
        if listed && is_finished(job) {
            active.retain(|r| r.uid != uid);
            ctx.event(
                &cj,
                EventType::Normal,
                "SawCompletedJob",
                format!(
                    "Saw completed job: {}, condition: {}",
                    job.name_any(),
                    if succeeded(job) { "Complete" } else { "Failed" }
                ),
            )
            .await;
        } else if !listed && !is_finished(job) {
            ctx.event(
                &cj,
                EventType::Warning,
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    job.name_any()
                ),
            )
            .await;
        }
        if succeeded(job)
            && let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.as_ref())
            && last_successful.is_none_or(|t| done.0 > t)
        {
            last_successful = Some(done.0);
        }
    }
    let mut missing = Vec::new();
    for r in &active {
        if !mine.iter().any(|j| j.metadata.uid == r.uid) {
            let name = r.name.clone().unwrap_or_default();
            match job_api.get_opt(&name).await {
                Ok(Some(j)) if j.metadata.uid == r.uid => {}
                Ok(_) => missing.push(r.uid.clone()),
                Err(e) => debug!(error = %e, job = %name, "reading a job"),
            }
        }
    }
    for uid in missing {
        active.retain(|r| r.uid != uid);
    }
    let mut last_schedule = status.last_schedule_time.clone().map(|t| t.0);

    let mut requeue = None;
    if cj.metadata.deletion_timestamp.is_none() {
        requeue = start_due(&cj, &ctx, &job_api, &mut active, &mut last_schedule).await?;
    }

    let patch = json!({"status": {
        "active": if active.is_empty() { Value::Null } else { json!(active) },
        "lastScheduleTime": last_schedule.map(Time),
        "lastSuccessfulTime": last_successful.map(Time),
    }});
    let current = json!({"status": {
        "active": status.active.clone().filter(|a| !a.is_empty()),
        "lastScheduleTime": status.last_schedule_time,
        "lastSuccessfulTime": status.last_successful_time,
    }});
    if patch != current {
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &namespace);
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if framework::is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(Error::Status(e)),
        }
    }
    clean_up_history(
        &ctx,
        &job_api,
        &mine,
        spec.successful_jobs_history_limit,
        spec.failed_jobs_history_limit,
    )
    .await;
    ctx.backoff.succeeded(&key);
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Starts the job that is due, if any. Answers when to look again.
async fn start_due(
    cj: &CronJob,
    ctx: &Ctx,
    job_api: &Api<Job>,
    active: &mut Vec<ObjectReference>,
    last_schedule: &mut Option<Timestamp>,
) -> Result<Option<Duration>, Error> {
    let spec = cj.spec.clone().unwrap_or_default();
    let sched = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref(), &ctx.local) {
        Ok(s) => s,
        Err(e @ schedule::Error::UnknownTimeZone(_)) => {
            ctx.event(cj, EventType::Warning, "UnknownTimeZone", e.to_string())
                .await;
            return Ok(None);
        }
        Err(e) => {
            ctx.event(cj, EventType::Warning, "UnparseableSchedule", e.to_string())
                .await;
            return Ok(None);
        }
    };
    if spec.suspend == Some(true) {
        return Ok(None);
    }
    let now = Timestamp::now();
    let until = |t: Option<Timestamp>| {
        t.map(|t| {
            Duration::from_millis((t.as_millisecond() - now.as_millisecond()).max(0) as u64)
                + Duration::from_millis(100)
        })
    };
    let created = cj.metadata.creation_timestamp.clone().map_or(now, |t| t.0);
    let mut earliest = last_schedule.unwrap_or(created);
    if let Some(sds) = spec.starting_deadline_seconds {
        let horizon = schedule::before(now, sds);
        if horizon > earliest {
            earliest = horizon;
        }
    }
    let (due, missed) = sched.most_recent(earliest, now);
    let next = until(sched.next_after(now));
    if missed > TOO_MANY_MISSED {
        ctx.event(cj, EventType::Warning, "TooManyMissedTimes", format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew")).await;
    }
    let Some(scheduled) = due else {
        return Ok(next);
    };
    if let Some(sds) = spec.starting_deadline_seconds
        && schedule::before(now, sds) > scheduled
    {
        ctx.event(
            cj,
            EventType::Warning,
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                sched.format(scheduled)
            ),
        )
        .await;
        return Ok(next);
    }
    let name = job_name(&cj.name_any(), scheduled);
    if active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
    {
        return Ok(next);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            debug!(cronjob = %cj.name_any(), "a job is still running; skipping this start");
            return Ok(next);
        }
        Some("Replace") => {
            for r in active.clone() {
                let job = r.name.clone().unwrap_or_default();
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                match job_api.delete(&job, &params).await {
                    Ok(_) => {
                        ctx.event(
                            cj,
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("Deleted job {job}"),
                        )
                        .await;
                    }
                    Err(e) if framework::is_not_found(&e) => {}
                    Err(e) => return Err(Error::Delete(job, e)),
                }
                active.retain(|a| a.uid != r.uid);
            }
        }
        _ => {}
    }
    let job = job_for(cj, scheduled, &sched);
    let created = match job_api.create(&PostParams::default(), &job).await {
        Ok(j) => j,
        Err(e) if framework::is_already_exists(&e) => {
            // Made by an earlier pass whose status write was lost: ours if
            // it points to us.
            match job_api.get_opt(&name).await {
                Ok(Some(j))
                    if owner_of(&j).is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref()) =>
                {
                    if !is_finished(&j) && !active.iter().any(|r| r.uid == j.metadata.uid) {
                        active.push(reference(&j));
                    }
                    *last_schedule = Some(scheduled);
                }
                _ => {}
            }
            return Ok(next);
        }
        Err(e) if framework::is_namespace_terminating(&e) => return Ok(None),
        Err(e) => {
            ctx.event(
                cj,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating job: {e}"),
            )
            .await;
            return Err(Error::Create(name, e));
        }
    };
    info!(cronjob = %cj.name_any(), job = %name, "created job");
    ctx.event(
        cj,
        EventType::Normal,
        "SuccessfulCreate",
        format!("Created job {name}"),
    )
    .await;
    active.push(reference(&created));
    *last_schedule = Some(scheduled);
    Ok(next)
}

/// Deletes the oldest finished jobs beyond the history limits.
async fn clean_up_history(
    ctx: &Ctx,
    api: &Api<Job>,
    jobs: &[Arc<Job>],
    keep_ok: Option<i32>,
    keep_failed: Option<i32>,
) {
    let started = |j: &Arc<Job>| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .or_else(|| j.metadata.creation_timestamp.clone())
            .map(|t| t.0)
    };
    let mut groups: BTreeMap<bool, Vec<&Arc<Job>>> = BTreeMap::new();
    for j in jobs
        .iter()
        .filter(|j| is_finished(j) && j.metadata.deletion_timestamp.is_none())
    {
        groups.entry(succeeded(j)).or_default().push(j);
    }
    for (ok, mut group) in groups {
        let Some(limit) = (if ok { keep_ok } else { keep_failed }) else {
            continue;
        };
        group.sort_by_key(|j| started(j));
        let surplus = group.len().saturating_sub(limit.max(0) as usize);
        for j in group.into_iter().take(surplus) {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match api.delete(&j.name_any(), &params).await {
                Ok(_) => debug!(job = %j.name_any(), "deleted an old job"),
                Err(e) if framework::is_not_found(&e) => {}
                Err(e) => warn!(job = %j.name_any(), error = %e, "deleting an old job"),
            }
        }
    }
    let _ = ctx;
}

fn on_job_change(change: &Changed<Job>) -> Vec<ObjectRef<CronJob>> {
    let to = |j: &Job| {
        owner_of(j).map(|r| {
            ObjectRef::new(&r.name).within(j.metadata.namespace.as_deref().unwrap_or_default())
        })
    };
    match change {
        Changed::Added(j) | Changed::Deleted(j) => to(j).into_iter().collect(),
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

fn error_policy(cj: Arc<CronJob>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let delay = ctx.backoff.failed(&cj.uid().unwrap_or_default());
    warn!(object.ref = %ObjectRef::from_obj(&*cj), error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let controller = crate::framework::controller(
            Api::<CronJob>::all(client.clone()),
            watcher::Config::default(),
        );
        let (jobs, job_events) = ctx.informers.jobs.subscribe(on_job_change);
        let state = Arc::new(Ctx {
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: NAME.into(),
                    instance: None,
                },
            ),
            client,
            jobs,
            local: TimeZone::try_system().unwrap_or(TimeZone::UTC),
            backoff: Backoff::default(),
        });
        controller
            .reconcile_on(job_events)
            .with_config(
                controller::Config::default()
                    .concurrency(ctx.settings.concurrent_cron_job_syncs.max(1)),
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

    #[test]
    fn jobs_are_named_by_their_scheduled_minute_and_annotated_in_the_zone() {
        let t: Timestamp = "2024-01-02T00:00:00Z".parse().unwrap();
        assert_eq!(
            job_name("nightly", t),
            format!("nightly-{}", 1_704_153_600 / 60)
        );
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "nightly", "namespace": "ns", "uid": "u"},
            "spec": {"schedule": "0 9 * * *", "timeZone": "Asia/Tokyo",
                     "jobTemplate": {"metadata": {"labels": {"a": "b"}}, "spec": {"template": {}}}}
        }))
        .unwrap();
        let sched = Schedule::parse("0 9 * * *", Some("Asia/Tokyo"), &TimeZone::UTC).unwrap();
        let job = job_for(&cj, t, &sched);
        assert_eq!(
            job.annotations()[SCHEDULED_TIMESTAMP],
            "2024-01-02T09:00:00+09:00"
        );
        assert_eq!(job.labels()["a"], "b");
        assert_eq!(job.owner_references()[0].kind, "CronJob");
    }
}
