//! The ReplicaSet and ReplicationController controllers against a real API
//! server, with a simulated node agent running the pods.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{AgentOptions, Cluster, Manager, NodeAgent, SOON, eventually, live_pods};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn replica_set(name: &str, replicas: i32, min_ready: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "web"}},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]},
            },
        },
    }))
    .unwrap()
}

fn owner_uid(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

async fn status_of(api: &Api<ReplicaSet>, name: &str) -> (i32, i32, i32, i32, i64) {
    let s = api.get(name).await.unwrap().status.unwrap_or_default();
    (
        s.replicas,
        s.fully_labeled_replicas.unwrap_or(0),
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
        s.observed_generation.unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_creates_its_pods_once_and_counts_them_available_after_min_ready_seconds() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["replicaset-controller"]));
    c.namespace("rs").await;
    let _agent = NodeAgent::start(&c.client, AgentOptions::default());
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "rs");
    let rs = api
        .create(&PostParams::default(), &replica_set("web", 10, 2))
        .await
        .unwrap();

    eventually("10 ready pods", SOON, || async {
        let (replicas, labeled, ready, _, generation) = status_of(&api, "web").await;
        (replicas == 10 && labeled == 10 && ready == 10 && generation == 1).then_some(())
    })
    .await;
    // Ready, but not yet for minReadySeconds.
    let (_, _, _, available, _) = status_of(&api, "web").await;
    assert!(
        available < 10,
        "available {available} before minReadySeconds"
    );
    eventually("10 available pods", SOON, || async {
        (status_of(&api, "web").await.3 == 10).then_some(())
    })
    .await;

    let pods = live_pods(&c.client, "rs", "app=web").await;
    assert_eq!(pods.len(), 10, "never more pods than replicas");
    for pod in &pods {
        let name = pod.name_any();
        assert!(
            name.starts_with("web-") && name.len() == "web-".len() + 5,
            "{name}"
        );
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.api_version.as_str()),
            ("ReplicaSet", "apps/v1")
        );
        assert_eq!(Some(&owner.uid), rs.metadata.uid.as_ref());
        assert_eq!(owner.block_owner_deletion, Some(true));
    }
    // Nothing more is created once the count is right.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all: Api<Pod> = Api::namespaced(c.client.clone(), "rs");
    assert_eq!(all.list(&Default::default()).await.unwrap().items.len(), 10);
    // One SuccessfulCreate event per pod, as `kubectl describe rs` shows.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.client.clone(), "rs");
    let mut created: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
        .inspect(|e| {
            assert_eq!(e.involved_object.name.as_deref(), Some("web"));
            assert_eq!(
                e.source.as_ref().and_then(|s| s.component.as_deref()),
                Some("replicaset-controller")
            );
        })
        .filter_map(|e| e.message?.strip_prefix("Created pod: ").map(str::to_owned))
        .collect();
    created.sort();
    let mut names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    names.sort();
    assert_eq!(created, names);

    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_deletes_unready_pods_then_pods_on_crowded_nodes() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["replicaset-controller"]));
    c.namespace("rs").await;
    // Two pods on node-a, one on node-b, one on node-c.
    let _agent = NodeAgent::start(
        &c.client,
        AgentOptions {
            nodes: ["node-a", "node-b", "node-a", "node-c"]
                .map(String::from)
                .to_vec(),
            ..AgentOptions::default()
        },
    );
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "rs");
    api.create(&PostParams::default(), &replica_set("web", 4, 0))
        .await
        .unwrap();
    eventually("4 ready pods", SOON, || async {
        (status_of(&api, "web").await.2 == 4).then_some(())
    })
    .await;
    let pods = live_pods(&c.client, "rs", "app=web").await;
    let on = |node: &str| -> Vec<String> {
        pods.iter()
            .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(node))
            .map(|p| p.name_any())
            .collect()
    };
    assert_eq!(on("node-a").len(), 2);
    // The pod on node-c fails its readiness probe.
    let unready = on("node-c")[0].clone();
    let pod_api: Api<Pod> = Api::namespaced(c.client.clone(), "rs");
    let pod = pod_api.get(&unready).await.unwrap();
    crate::common::set_status(&pod_api, &pod, "node-c", "10.0.0.9", false).await;
    eventually("3 ready pods", SOON, || async {
        (status_of(&api, "web").await.2 == 3).then_some(())
    })
    .await;

    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    let left = eventually("2 pods left", SOON, || async {
        let pods = live_pods(&c.client, "rs", "app=web").await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    let mut nodes: Vec<String> = left
        .iter()
        .map(|p| p.spec.as_ref().unwrap().node_name.clone().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["node-a", "node-b"], "kept one per node");
    assert!(left.iter().all(|p| p.name_any() != unready));
    eventually("the status says 2", SOON, || async {
        (status_of(&api, "web").await == (2, 2, 2, 2, 2)).then_some(())
    })
    .await;

    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_orphans_are_adopted_and_pods_that_stop_matching_are_released() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["replicaset-controller"]));
    c.namespace("rs").await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "rs");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "rs");
    let rs = api
        .create(&PostParams::default(), &replica_set("web", 2, 0))
        .await
        .unwrap();
    let uid = rs.metadata.uid.clone();

    let both = eventually("the orphan adopted and one pod created", SOON, || async {
        let live = live_pods(&c.client, "rs", "app=web").await;
        (live.len() == 2 && live.iter().all(|p| owner_uid(p) == uid)).then_some(live)
    })
    .await;
    assert!(both.iter().any(|p| p.name_any() == "orphan"));
    let adopted = pods.get("orphan").await.unwrap();
    let r = &adopted.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(r.block_owner_deletion, Some(true));
    // Only one pod was ever created.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pods.list(&Default::default()).await.unwrap().items.len(), 2);

    // Relabelled out of the selector: released, and replaced.
    pods.patch(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "elsewhere"}}})),
    )
    .await
    .unwrap();
    eventually("the relabelled pod released", SOON, || async {
        let p = pods.get("orphan").await.unwrap();
        owner_uid(&p).is_none().then_some(())
    })
    .await;
    eventually("a replacement", SOON, || async {
        (live_pods(&c.client, "rs", "app=web").await.len() == 2).then_some(())
    })
    .await;

    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_controller_keeps_its_replicas_through_the_same_code() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["replicationcontroller-controller"]));
    c.namespace("rc").await;
    let _agent = NodeAgent::start(&c.client, AgentOptions::default());
    let api: Api<ReplicationController> = Api::namespaced(c.client.clone(), "rc");
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "legacy"},
        "spec": {
            "replicas": 3,
            "selector": {"app": "legacy"},
            "template": {
                "metadata": {"labels": {"app": "legacy"}},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]},
            },
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &rc).await.unwrap();
    eventually("3 ready replicas", SOON, || async {
        let s = api.get("legacy").await.unwrap().status?;
        (s.replicas == 3 && s.ready_replicas == Some(3) && s.available_replicas == Some(3))
            .then_some(())
    })
    .await;
    let pods = live_pods(&c.client, "rc", "app=legacy").await;
    assert_eq!(pods.len(), 3);
    let owner = &pods[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.api_version.as_str()),
        ("ReplicationController", "v1")
    );

    // A deleted pod is replaced.
    let pod_api: Api<Pod> = Api::namespaced(c.client.clone(), "rc");
    pod_api
        .delete(&pods[0].name_any(), &Default::default())
        .await
        .unwrap();
    let gone = pods[0].name_any();
    eventually("a replacement", SOON, || async {
        let live = live_pods(&c.client, "rc", "app=legacy").await;
        (live.len() == 3 && live.iter().all(|p| p.name_any() != gone)).then_some(())
    })
    .await;
    let labels: BTreeMap<String, String> = pods[1].labels().clone();
    assert_eq!(labels["app"], "legacy");

    manager.stop().await;
    c.stop().await;
}
