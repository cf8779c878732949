//! The StatefulSet controller against a real API server, with the simulated
//! node agent running the pods (ready a moment after they start).

use std::time::Duration;

use crate::common::{
    AgentOptions, Cluster, Manager, NodeAgent, SOON, eventually, is_ready, live_pods,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

fn stateful_set(name: &str, replicas: i32, extra: serde_json::Value) -> StatefulSet {
    let mut spec = json!({
        "replicas": replicas,
        "serviceName": name,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "main", "image": "busybox:1"}]},
        },
        "volumeClaimTemplates": [{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// The set's live pods by ordinal: (ordinal, image, ready, revision).
async fn pods_of(client: &Client, set: &str) -> Vec<(i32, String, bool, String)> {
    let mut out: Vec<(i32, String, bool, String)> = live_pods(client, "sts", &format!("app={set}"))
        .await
        .iter()
        .map(|p: &Pod| {
            let ordinal = p.name_any().rsplit('-').next().unwrap().parse().unwrap();
            let image = p.spec.as_ref().unwrap().containers[0]
                .image
                .clone()
                .unwrap();
            let revision = p.labels()["controller-revision-hash"].clone();
            (ordinal, image, is_ready(p), revision)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_scales_up_in_order_with_claims_and_rolls_above_its_partition() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["statefulset-controller"]));
    c.namespace("sts").await;
    let _agent = NodeAgent::start(
        &c.client,
        AgentOptions {
            ready_after: Duration::from_millis(500),
            ..AgentOptions::default()
        },
    );
    let api: Api<StatefulSet> = Api::namespaced(c.client.clone(), "sts");
    api.create(&PostParams::default(), &stateful_set("web", 3, json!({})))
        .await
        .unwrap();

    // OrderedReady: web-k exists only once web-0 .. web-(k-1) are ready.
    eventually("three ready pods, made in order", SOON, || async {
        let pods = pods_of(&c.client, "web").await;
        for (i, (ordinal, _, _, _)) in pods.iter().enumerate() {
            assert_eq!(*ordinal, i as i32, "pods not made in order: {pods:?}");
        }
        let n = pods.len();
        if n > 1 {
            assert!(
                pods[..n - 1].iter().all(|p| p.2),
                "a pod made before the ones below it were ready: {pods:?}"
            );
        }
        let s = api.get("web").await.unwrap().status.unwrap_or_default();
        (n == 3 && s.ready_replicas == Some(3)).then_some(())
    })
    .await;
    let pod: Pod = Api::namespaced(c.client.clone(), "sts")
        .get("web-1")
        .await
        .unwrap();
    assert_eq!(pod.labels()["statefulset.kubernetes.io/pod-name"], "web-1");
    assert_eq!(pod.labels()["apps.kubernetes.io/pod-index"], "1");
    let spec = pod.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "sts");
    let mut names: Vec<String> = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    names.sort();
    assert_eq!(names, ["data-web-0", "data-web-1", "data-web-2"]);
    let s = api.get("web").await.unwrap().status.unwrap();
    assert_eq!(s.current_revision, s.update_revision);
    let first_revision = s.current_revision.clone().unwrap();

    // A new template with partition 2: only web-2 moves.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
            "template": {"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}}}})),
    )
    .await
    .unwrap();
    eventually("web-2 on the new template", SOON, || async {
        let pods = pods_of(&c.client, "web").await;
        let s = api.get("web").await.unwrap().status.unwrap_or_default();
        (pods.len() == 3
            && pods[2].1 == "busybox:2"
            && pods[2].2
            && s.updated_replicas == Some(1)
            && s.ready_replicas == Some(3))
        .then_some(pods)
    })
    .await;
    let pods = pods_of(&c.client, "web").await;
    assert_eq!(pods[0].1, "busybox:1");
    assert_eq!(pods[1].1, "busybox:1");
    assert_eq!(pods[0].3, first_revision);
    let s = api.get("web").await.unwrap().status.unwrap();
    assert_eq!(s.current_revision.as_deref(), Some(first_revision.as_str()));
    assert_ne!(s.update_revision, s.current_revision);
    let (ok, out) = c
        .kubectl(&[
            "-n",
            "sts",
            "rollout",
            "status",
            "statefulset/web",
            "--timeout=20s",
        ])
        .await;
    assert!(ok, "partitioned rollout status: {out}");

    // Partition 0: the rest follows, and the update becomes current.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})),
    )
    .await
    .unwrap();
    let (ok, out) = c
        .kubectl(&[
            "-n",
            "sts",
            "rollout",
            "status",
            "statefulset/web",
            "--timeout=30s",
        ])
        .await;
    assert!(ok, "rollout status: {out}");
    let pods = pods_of(&c.client, "web").await;
    assert!(pods.iter().all(|p| p.1 == "busybox:2"), "{pods:?}");
    let s = api.get("web").await.unwrap().status.unwrap();
    assert_eq!(s.current_revision, s.update_revision);
    assert_eq!(s.current_replicas, Some(3));

    // kubectl rollout undo brings the first template back.
    let (ok, out) = c
        .kubectl(&["-n", "sts", "rollout", "undo", "statefulset/web"])
        .await;
    assert!(ok, "rollout undo: {out}");
    let (ok, out) = c
        .kubectl(&[
            "-n",
            "sts",
            "rollout",
            "status",
            "statefulset/web",
            "--timeout=30s",
        ])
        .await;
    assert!(ok, "rollout status after undo: {out}");
    eventually("the first image back", SOON, || async {
        let pods = pods_of(&c.client, "web").await;
        (pods.len() == 3
            && pods
                .iter()
                .all(|p| p.1 == "busybox:1" && p.3 == first_revision))
        .then_some(())
    })
    .await;

    // Scale down: from the top; the claims stay (Retain).
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("one pod left", SOON, || async {
        let pods = pods_of(&c.client, "web").await;
        if pods.len() == 2 {
            assert_eq!(pods[1].0, 1, "web-2 goes first: {pods:?}");
        }
        (pods.len() == 1 && pods[0].0 == 0).then_some(())
    })
    .await;
    assert_eq!(
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_set_starts_at_its_first_ordinal_and_hands_claims_to_the_gc() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["statefulset-controller"]));
    c.namespace("sts").await;
    let _agent = NodeAgent::start(
        &c.client,
        AgentOptions {
            // Never ready: Parallel does not wait.
            never_ready: vec![("app".into(), "db".into())],
            ..AgentOptions::default()
        },
    );
    let api: Api<StatefulSet> = Api::namespaced(c.client.clone(), "sts");
    let extra = json!({
        "podManagementPolicy": "Parallel",
        "ordinals": {"start": 5},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
    });
    let set = api
        .create(&PostParams::default(), &stateful_set("db", 3, extra))
        .await
        .unwrap();
    eventually("three pods at once", SOON, || async {
        let pods = pods_of(&c.client, "db").await;
        (pods.iter().map(|p| p.0).collect::<Vec<_>>() == [5, 6, 7]).then_some(())
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "sts");
    let set_uid = set.uid().unwrap();
    eventually("claims owned by the set", SOON, || async {
        let all = claims.list(&ListParams::default()).await.unwrap().items;
        (all.len() == 3
            && all
                .iter()
                .all(|c| c.owner_references().iter().any(|r| r.uid == set_uid)))
        .then_some(())
    })
    .await;
    let doomed: Pod = Api::namespaced(c.client.clone(), "sts")
        .get("db-7")
        .await
        .unwrap();
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    eventually("db-7 gone, its claim handed to it", SOON, || async {
        let pods = pods_of(&c.client, "db").await;
        let claim = claims.get("data-db-7").await.unwrap();
        let to_pod = claim
            .owner_references()
            .iter()
            .any(|r| r.kind == "Pod" && Some(&r.uid) == doomed.metadata.uid.as_ref());
        (pods.len() == 2 && to_pod).then_some(())
    })
    .await;
    // Scaled back up before the claim went: the new db-7 gets it back.
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    eventually("db-7 back with its claim", SOON, || async {
        let pods = pods_of(&c.client, "db").await;
        let claim = claims.get("data-db-7").await.unwrap();
        let to_pod = claim.owner_references().iter().any(|r| r.kind == "Pod");
        (pods.len() == 3 && !to_pod).then_some(())
    })
    .await;
    manager.stop().await;
    c.stop().await;
}
