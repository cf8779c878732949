//! The Job and CronJob controllers against a real API server, with a
//! simulated kubelet that runs each pod to completion: it exits with the
//! code in the pod's `exit-code` label (0 when absent), or fails the pods
//! of the completion index in its `fail-index` label.

use std::time::Duration;

use crate::common::{Cluster, Manager, SOON, eventually};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

/// Binds pods to `node-a`, runs them for a moment, then finishes them.
struct BatchAgent(JoinHandle<()>);

impl Drop for BatchAgent {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl BatchAgent {
    fn start(client: &Client, run_for: Duration) -> BatchAgent {
        let client = client.clone();
        BatchAgent(tokio::spawn(async move {
            let pods: Api<Pod> = Api::all(client.clone());
            let mut events = watcher(pods, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Ok(Some(pod)) = events.try_next().await {
                let client = client.clone();
                tokio::spawn(async move { act(&client, pod, run_for).await });
            }
        }))
    }
}

async fn act(client: &Client, pod: Pod, run_for: Duration) {
    let ns = pod.namespace().unwrap();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    if pod.metadata.deletion_timestamp.is_some() {
        let _ = api
            .delete(
                &name,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                },
            )
            .await;
        return;
    }
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none()
    {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"},
        });
        let _ = api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await;
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
    if phase.as_deref().is_some_and(|p| p != "Pending") {
        return;
    }
    let now = Timestamp::now().to_string();
    let running = json!({"status": {"phase": "Running", "startTime": now,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
    let _ = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&running))
        .await;
    tokio::time::sleep(run_for).await;
    let mut code: i32 = pod
        .labels()
        .get("exit-code")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // `fail-index`: only the pods of that completion index fail.
    if let Some(i) = pod.labels().get("fail-index") {
        let index = pod.labels().get("batch.kubernetes.io/job-completion-index");
        code = i32::from(index == Some(i));
    }
    let now = Timestamp::now().to_string();
    let done = json!({"status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
        "containerStatuses": [{"name": "main", "ready": false, "restartCount": 0,
            "image": "busybox", "imageID": "",
            "state": {"terminated": {"exitCode": code, "finishedAt": now}}}],
    }});
    let _ = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&done))
        .await;
}

fn job(name: &str, spec: serde_json::Value, exit_code: i32) -> Job {
    let mut spec = spec;
    spec["template"] = json!({
        "metadata": {"labels": {"exit-code": exit_code.to_string()}},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "main", "image": "busybox"}]},
    });
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn has_condition(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

async fn job_pods(client: &Client, ns: &str, job: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_five_completions_two_at_a_time_and_completes() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["job-controller"]));
    c.namespace("jobs").await;
    let _agent = BatchAgent::start(&c.client, Duration::from_millis(300));
    let api: Api<Job> = Api::namespaced(c.client.clone(), "jobs");
    api.create(
        &PostParams::default(),
        &job("five", json!({"completions": 5, "parallelism": 2}), 0),
    )
    .await
    .unwrap();

    let most_active = std::sync::atomic::AtomicI32::new(0);
    let done = eventually("the job to complete", SOON, || async {
        let j = api.get("five").await.unwrap();
        let active = j.status.as_ref().and_then(|s| s.active).unwrap_or(0);
        most_active.fetch_max(active, std::sync::atomic::Ordering::SeqCst);
        has_condition(&j, "Complete").map(|_| j)
    })
    .await;
    let most_active = most_active.into_inner();
    let s = done.status.clone().unwrap();
    assert_eq!(s.succeeded, Some(5));
    assert_eq!(s.failed, None);
    assert_eq!(s.active, None);
    assert!(s.start_time.is_some() && s.completion_time.is_some());
    assert_eq!(
        has_condition(&done, "SuccessCriteriaMet").as_deref(),
        Some("CompletionsReached")
    );
    assert!(most_active <= 2, "at most parallelism pods: {most_active}");
    let uncounted = s.uncounted_terminated_pods.unwrap_or_default();
    assert!(uncounted.succeeded.unwrap_or_default().is_empty());
    let pods = job_pods(&c.client, "jobs", "five").await;
    assert_eq!(pods.len(), 5);
    for p in &pods {
        assert!(
            p.finalizers()
                .iter()
                .all(|f| f != "batch.kubernetes.io/job-tracking"),
            "finalizer left on {}",
            p.name_any()
        );
        let owner = &p.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
    }
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(c.client.clone(), "jobs");
    eventually("the job's events", SOON, || async {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("five"))
            .filter_map(|e| e.reason.clone())
            .collect();
        (reasons.iter().any(|r| r == "SuccessfulCreate")
            && reasons.iter().any(|r| r == "Completed"))
        .then_some(())
    })
    .await;
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_runs_one_pod_per_index() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["job-controller"]));
    c.namespace("jobs").await;
    let _agent = BatchAgent::start(&c.client, Duration::from_millis(200));
    let api: Api<Job> = Api::namespaced(c.client.clone(), "jobs");
    api.create(
        &PostParams::default(),
        &job(
            "idx",
            json!({"completions": 4, "parallelism": 4, "completionMode": "Indexed"}),
            0,
        ),
    )
    .await
    .unwrap();
    let done = eventually("the indexed job to complete", SOON, || async {
        let j = api.get("idx").await.unwrap();
        has_condition(&j, "Complete").map(|_| j)
    })
    .await;
    let s = done.status.unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("0-3"));
    assert_eq!(s.succeeded, Some(4));
    let mut indexes: Vec<String> = job_pods(&c.client, "jobs", "idx")
        .await
        .iter()
        .map(|p| {
            let i = p.annotations()["batch.kubernetes.io/job-completion-index"].clone();
            assert_eq!(p.labels()["batch.kubernetes.io/job-completion-index"], i);
            let spec = p.spec.as_ref().unwrap();
            assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{i}").as_str()));
            let env = spec.containers[0].env.as_ref().unwrap();
            assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
            assert!(p.name_any().starts_with(&format!("idx-{i}-")));
            i
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2", "3"]);
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_fails_once_its_backoff_limit_is_exceeded_after_backing_off() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["job-controller"]));
    c.namespace("jobs").await;
    let _agent = BatchAgent::start(&c.client, Duration::from_millis(100));
    let api: Api<Job> = Api::namespaced(c.client.clone(), "jobs");
    api.create(
        &PostParams::default(),
        &job("flaky", json!({"backoffLimit": 1}), 1),
    )
    .await
    .unwrap();
    let done = eventually("the job to fail", Duration::from_secs(30), || async {
        let j = api.get("flaky").await.unwrap();
        has_condition(&j, "Failed").map(|_| j)
    })
    .await;
    assert_eq!(
        has_condition(&done, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(
        has_condition(&done, "FailureTarget").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(done.status.as_ref().unwrap().failed, Some(2));
    // The replacement waited out the 10 s backoff after the first failure.
    let mut starts: Vec<_> = job_pods(&c.client, "jobs", "flaky")
        .await
        .iter()
        .map(|p| p.metadata.creation_timestamp.clone().unwrap().0)
        .collect();
    starts.sort();
    assert_eq!(starts.len(), 2);
    let gap = starts[1].duration_since(starts[0]);
    assert!(gap.as_secs() >= 9, "replacement after {gap:?}");
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_job_rule_fails_the_job_on_the_first_matching_exit_code() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["job-controller"]));
    c.namespace("jobs").await;
    let _agent = BatchAgent::start(&c.client, Duration::from_millis(100));
    let api: Api<Job> = Api::namespaced(c.client.clone(), "jobs");
    let spec = json!({"backoffLimit": 6, "parallelism": 1, "completions": 3,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]}});
    api.create(&PostParams::default(), &job("fatal", spec, 42))
        .await
        .unwrap();
    let done = eventually("the job to fail", SOON, || async {
        let j = api.get("fatal").await.unwrap();
        has_condition(&j, "Failed").map(|_| j)
    })
    .await;
    assert_eq!(
        has_condition(&done, "Failed").as_deref(),
        Some("PodFailurePolicy")
    );
    assert_eq!(job_pods(&c.client, "jobs", "fatal").await.len(), 1);
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_job_deletes_its_pods_until_resumed() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["job-controller"]));
    c.namespace("jobs").await;
    // Pods run for a long time: they are still active when suspended.
    let _agent = BatchAgent::start(&c.client, Duration::from_secs(600));
    let api: Api<Job> = Api::namespaced(c.client.clone(), "jobs");
    api.create(
        &PostParams::default(),
        &job("pause", json!({"parallelism": 2, "completions": 2}), 0),
    )
    .await
    .unwrap();
    eventually("two active pods", SOON, || async {
        let j = api.get("pause").await.unwrap();
        (j.status.and_then(|s| s.active) == Some(2)).then_some(())
    })
    .await;
    api.patch(
        "pause",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    eventually("the job to be suspended with no pods", SOON, || async {
        let j = api.get("pause").await.unwrap();
        let pods = job_pods(&c.client, "jobs", "pause").await;
        (has_condition(&j, "Suspended").as_deref() == Some("JobSuspended")
            && j.status.as_ref().unwrap().active.is_none()
            && pods.is_empty())
        .then_some(())
    })
    .await;
    let j = api.get("pause").await.unwrap();
    assert_eq!(
        j.status.unwrap().failed,
        None,
        "deleted pods are not failures"
    );
    api.patch(
        "pause",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    eventually("pods again", SOON, || async {
        let j = api.get("pause").await.unwrap();
        (j.status.and_then(|s| s.active) == Some(2)).then_some(())
    })
    .await;
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_starts_its_missed_run_and_follows_the_job_to_success() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["cronjob-controller", "job-controller"]));
    c.namespace("cron").await;
    let _agent = BatchAgent::start(&c.client, Duration::from_millis(200));
    let api: Api<CronJob> = Api::namespaced(c.client.clone(), "cron");
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "tick"},
        "spec": {"schedule": "* * * * *", "timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid",
            "jobTemplate": {"metadata": {"labels": {"from": "cron"}}, "spec": {"template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &cj).await.unwrap();
    // The clock: pretend the last run was three minutes ago, so the latest
    // minute is due now rather than up to a minute from now.
    let before = Timestamp::now() - std::time::Duration::from_secs(180);
    api.patch_status(
        "tick",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"lastScheduleTime": before.to_string()}})),
    )
    .await
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "cron");
    let job = eventually("the cron job's job", SOON, || async {
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
    })
    .await;
    let minute = Timestamp::now().as_second() / 60;
    let name = job.name_any();
    let n: i64 = name.strip_prefix("tick-").unwrap().parse().unwrap();
    assert!(n == minute || n == minute - 1, "{name} for minute {minute}");
    let stamp = &job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"];
    let scheduled: Timestamp = stamp.parse().unwrap();
    assert_eq!(scheduled.as_second(), n * 60);
    assert!(
        stamp.ends_with("+01:00") || stamp.ends_with("+02:00"),
        "Berlin time: {stamp}"
    );
    assert_eq!(job.labels()["from"], "cron");
    assert_eq!(job.owner_references()[0].kind, "CronJob");

    let done = eventually("the job to succeed and leave active", SOON, || async {
        let cj = api.get("tick").await.unwrap();
        let s = cj.status.clone().unwrap_or_default();
        (s.last_successful_time.is_some() && s.active.is_none()).then_some(s)
    })
    .await;
    assert_eq!(done.last_schedule_time.unwrap().0, scheduled);
    // One run for the three missed minutes: none for the earlier ones.
    for j in jobs.list(&ListParams::default()).await.unwrap().items {
        let m: i64 = j.name_any().strip_prefix("tick-").unwrap().parse().unwrap();
        assert!(
            m >= n,
            "a run for an earlier missed minute: {}",
            j.name_any()
        );
    }
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_job_lets_its_pods_go() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["job-controller", "garbage-collector-controller"]));
    c.namespace("jobs").await;
    let _agent = BatchAgent::start(&c.client, Duration::from_secs(600));
    let api: Api<Job> = Api::namespaced(c.client.clone(), "jobs");
    api.create(
        &PostParams::default(),
        &job("doomed", json!({"parallelism": 2, "completions": 4}), 0),
    )
    .await
    .unwrap();
    eventually("two running pods", SOON, || async {
        let pods = job_pods(&c.client, "jobs", "doomed").await;
        (pods.len() == 2
            && pods
                .iter()
                .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")))
        .then_some(())
    })
    .await;
    // kubectl's default: background propagation.
    let (ok, out) = c
        .kubectl(&["-n", "jobs", "delete", "job", "doomed", "--wait=false"])
        .await;
    assert!(ok, "kubectl delete job: {out}");
    eventually("the pods gone, finalizers and all", SOON, || async {
        job_pods(&c.client, "jobs", "doomed")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_out_of_retries_fails_alone_and_the_job_after_the_rest() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["job-controller"]));
    c.namespace("jobs").await;
    let _agent = BatchAgent::start(&c.client, Duration::from_millis(100));
    let api: Api<Job> = Api::namespaced(c.client.clone(), "jobs");
    let mut j = job(
        "per-index",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
               "backoffLimitPerIndex": 0}),
        0,
    );
    let template = j.spec.as_mut().unwrap().template.metadata.as_mut().unwrap();
    template
        .labels
        .as_mut()
        .unwrap()
        .insert("fail-index".into(), "1".into());
    api.create(&PostParams::default(), &j).await.unwrap();
    let done = eventually("the job to fail", SOON, || async {
        let j = api.get("per-index").await.unwrap();
        has_condition(&j, "Failed").map(|_| j)
    })
    .await;
    assert_eq!(
        has_condition(&done, "Failed").as_deref(),
        Some("FailedIndexes")
    );
    let s = done.status.unwrap();
    assert_eq!(s.failed_indexes.as_deref(), Some("1"));
    assert_eq!(s.completed_indexes.as_deref(), Some("0,2"));
    assert_eq!((s.succeeded, s.failed), (Some(2), Some(1)));
    // No retry for index 1: three pods in all.
    assert_eq!(job_pods(&c.client, "jobs", "per-index").await.len(), 3);
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_keeps_only_its_newest_finished_jobs() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["cronjob-controller"]));
    c.namespace("cron").await;
    let api: Api<CronJob> = Api::namespaced(c.client.clone(), "cron");
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "tidy"},
        "spec": {"schedule": "@hourly", "suspend": true,
            "successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {"template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}}
    }))
    .unwrap();
    let cj = api.create(&PostParams::default(), &cj).await.unwrap();
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "cron");
    // Finished jobs of the cron job, oldest first: four succeeded, two failed.
    for (i, ok) in [true, true, false, true, false, true]
        .into_iter()
        .enumerate()
    {
        let name = format!("tidy-{i}");
        let j: Job = serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "CronJob", "name": "tidy",
                "uid": cj.uid().unwrap(), "controller": true}]},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox"}]}}},
        }))
        .unwrap();
        jobs.create(&PostParams::default(), &j).await.unwrap();
        let start = format!("2024-01-01T0{i}:00:00Z");
        let end = format!("2024-01-01T0{i}:30:00Z");
        let (target, last, reason) = if ok {
            ("SuccessCriteriaMet", "Complete", "CompletionsReached")
        } else {
            ("FailureTarget", "Failed", "BackoffLimitExceeded")
        };
        let conditions = json!([
            {"type": target, "status": "True", "reason": reason, "message": "m", "lastTransitionTime": end},
            {"type": last, "status": "True", "reason": reason, "message": "m", "lastTransitionTime": end},
        ]);
        let mut status = json!({"startTime": start, "conditions": conditions,
            "succeeded": i32::from(ok), "failed": i32::from(!ok)});
        if ok {
            status["completionTime"] = json!(end);
        }
        jobs.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
    }
    // Any change to the cron job makes it look at its jobs again.
    api.patch(
        "tidy",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    let left = eventually("the history trimmed", SOON, || async {
        let mut names: Vec<String> = jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .map(|j| j.name_any())
            .collect();
        names.sort();
        (names.len() == 3).then_some(names)
    })
    .await;
    assert_eq!(left, ["tidy-3", "tidy-4", "tidy-5"]);
    let status = api.get("tidy").await.unwrap().status.unwrap();
    assert_eq!(
        status.last_successful_time.unwrap().0.to_string(),
        "2024-01-01T05:30:00Z"
    );
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_active_deadline_fails_and_stops_its_pods() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["job-controller"]));
    c.namespace("jobs").await;
    let _agent = BatchAgent::start(&c.client, Duration::from_secs(600));
    let api: Api<Job> = Api::namespaced(c.client.clone(), "jobs");
    api.create(
        &PostParams::default(),
        &job(
            "slow",
            json!({"activeDeadlineSeconds": 2, "parallelism": 2, "completions": 2}),
            0,
        ),
    )
    .await
    .unwrap();
    let done = eventually("the job to fail", SOON, || async {
        let j = api.get("slow").await.unwrap();
        has_condition(&j, "Failed").map(|_| j)
    })
    .await;
    assert_eq!(
        has_condition(&done, "Failed").as_deref(),
        Some("DeadlineExceeded")
    );
    let s = done.status.unwrap();
    assert_eq!(s.active, None);
    assert!(
        s.completion_time.is_none(),
        "only a complete job has a completion time"
    );
    eventually("its pods gone", SOON, || async {
        job_pods(&c.client, "jobs", "slow")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    manager.stop().await;
    c.stop().await;
}
