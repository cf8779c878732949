//! The pod garbage collector and the TTL-after-finished controller against
//! a real API server.

use std::time::Duration;

use crate::common::{Cluster, Manager, SOON, eventually};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

async fn pod_on(client: &Client, name: &str, node: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "t");
    let pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

async fn finish(client: &Client, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "t");
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_pods_over_the_threshold_and_orphans_are_collected() {
    let cluster = Cluster::start().await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut config = cluster.config(&["podgc"]);
    config.infra.terminated_pod_gc_threshold = 2;
    config.infra.pod_gc_period = Duration::from_millis(200);
    config.infra.pod_gc_quarantine = Duration::from_secs(1);
    let manager = Manager::start(config);
    cluster.namespace("t").await;
    for name in ["done-1", "done-2", "done-3", "running"] {
        pod_on(&cluster.client, name, "n1").await;
        // creationTimestamp has a resolution of a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    for name in ["done-1", "done-2", "done-3"] {
        finish(&cluster.client, name).await;
    }
    let started = Timestamp::now();
    pod_on(&cluster.client, "orphan", "gone").await;

    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "t");
    eventually(
        "the oldest finished pod and the orphan collected",
        SOON,
        || async {
            let names: Vec<String> = pods
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|p| p.metadata.name.unwrap())
                .collect();
            (names == ["done-2", "done-3", "running"]).then_some(())
        },
    )
    .await;
    let waited = Timestamp::now().as_millisecond() - started.as_millisecond();
    assert!(
        waited >= 1000,
        "the orphan went after {waited} ms, before its node's quarantine ended"
    );

    manager.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_deleted_after_its_ttl() {
    let cluster = Cluster::start().await;
    let manager = Manager::start(cluster.config(&["ttl-after-finished", "garbagecollector"]));
    cluster.namespace("t").await;
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), "t");
    for (name, ttl) in [("short", 1), ("long", 3600)] {
        let job = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"ttlSecondsAfterFinished": ttl, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}},
        }))
        .unwrap();
        jobs.create(&PostParams::default(), &job).await.unwrap();
        let now = Timestamp::now().to_string();
        jobs.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {
                "startTime": now, "completionTime": now, "succeeded": 1,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                    {"type": "Complete", "status": "True", "lastTransitionTime": now},
                ],
            }})),
        )
        .await
        .unwrap();
    }
    // Times are stored to the second: the TTL counts from the stored one.
    let finished = jobs
        .get("short")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .unwrap()[1]
        .last_transition_time
        .clone()
        .unwrap()
        .0;
    eventually("job short deleted", SOON, || async {
        jobs.get_opt("short").await.unwrap().is_none().then_some(())
    })
    .await;
    let waited = Timestamp::now().as_millisecond() - finished.as_millisecond();
    assert!(
        waited >= 1000,
        "deleted {waited} ms after finishing, before its 1 s TTL"
    );
    assert!(jobs.get_opt("long").await.unwrap().is_some());

    manager.stop().await;
    cluster.stop().await;
}
