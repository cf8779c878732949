//! The TTL-after-finished controller (upstream's ttlafterfinished): a Job
//! with `spec.ttlSecondsAfterFinished` is deleted that many seconds after it
//! finished (its Complete or Failed condition's transition time), with
//! foreground propagation so its pods go first, as upstream.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use crate::cache::Changed;
use crate::framework::{self, Context};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "ttl-after-finished-controller";

type Key = (String, String);

/// When the Job finished: its Complete or Failed condition's transition
/// time (`None` while it runs).
pub(crate) fn finished_at(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .or(job
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref().map(|t| t.0)))
                .unwrap_or_else(Timestamp::now)
        })
}

/// When the Job is to be deleted (`None`: never, or not yet finished).
pub(crate) fn expires_at(job: &Job) -> Option<Timestamp> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let done = finished_at(job)?;
    Timestamp::from_second(done.as_second().saturating_add(i64::from(ttl.max(0)))).ok()
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let (jobs, changes) = ctx.informers.jobs.subscribe(|c: &Changed<Job>| {
            let j = c.latest();
            Some((j.namespace().unwrap_or_default(), j.name_any()))
        });
        let stopped = ctx.stopped();
        tokio::pin!(stopped, changes);
        tokio::select! {
            () = jobs.ready() => {}
            () = &mut stopped => return,
        }
        let mut due: HashMap<Key, Timestamp> = HashMap::new();
        for job in jobs.all() {
            if let Some(at) = expires_at(&job) {
                due.insert((job.namespace().unwrap_or_default(), job.name_any()), at);
            }
        }
        loop {
            let next = due.values().min().copied();
            let sleep = next.map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(
                    (t.as_millisecond() - Timestamp::now().as_millisecond()).max(0) as u64,
                )
            });
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(sleep) => {
                    let now = Timestamp::now();
                    let expired: Vec<Key> = due.iter().filter(|(_, t)| **t <= now).map(|(k, _)| k.clone()).collect();
                    for key in expired {
                        due.remove(&key);
                        if let Some(retry) = delete_if_expired(&ctx.client, &key).await {
                            due.insert(key, retry);
                        }
                    }
                }
                Some(key) = changes.next() => match jobs.get(&key.0, &key.1).as_deref().and_then(expires_at) {
                    Some(at) => { due.insert(key, at); }
                    None => { due.remove(&key); }
                },
            }
        }
    })
}

/// Deletes the Job if, read fresh from the API server, it has expired
/// (its TTL may have changed); answers when to look again on failure.
async fn delete_if_expired(client: &Client, (ns, name): &Key) -> Option<Timestamp> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let fresh = match api.get_opt(name).await {
        Ok(Some(j)) => j,
        Ok(None) => return None,
        Err(e) => {
            warn!(namespace = %ns, job = %name, error = %e, "reading the job failed; retrying");
            return Some(retry_at());
        }
    };
    let at = expires_at(&fresh)?;
    if at > Timestamp::now() {
        return Some(at);
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(kube::api::Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: fresh.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {
            info!(namespace = %ns, job = %name, "deleted the finished job: its ttlSecondsAfterFinished ran out");
            None
        }
        Err(e) if framework::is_not_found(&e) => None,
        Err(e) if framework::is_conflict(&e) => Some(Timestamp::now()),
        Err(e) => {
            warn!(namespace = %ns, job = %name, error = %e, "deleting the job failed; retrying");
            Some(retry_at())
        }
    }
}

fn retry_at() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() + 5).unwrap_or_else(|_| Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "d"},
            "spec": {"ttlSecondsAfterFinished": ttl, "template": {"spec": {"containers": []}}},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn a_finished_job_expires_its_ttl_after_its_finish() {
        let done = json!([{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        let at = expires_at(&job(Some(100), done.clone())).unwrap();
        assert_eq!(at, "2026-01-01T00:01:40Z".parse::<Timestamp>().unwrap());
        let failed = json!([{"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        assert_eq!(
            expires_at(&job(Some(0), failed)).unwrap(),
            "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert!(expires_at(&job(None, done)).is_none());
        let running = json!([{"type": "Suspended", "status": "False"}]);
        assert!(expires_at(&job(Some(1), running)).is_none());
    }
}
