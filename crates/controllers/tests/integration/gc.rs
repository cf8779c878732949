//! The garbage collector against a real API server: background, foreground
//! and orphan deletion (through the real kubectl), any kind of owner, and
//! dependents of owners deleted while the controller manager was down.

use std::time::Duration;

use crate::common::{AgentOptions, Cluster, Manager, NodeAgent, SOON, eventually, live_pods};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use serde_json::json;

const CONTROLLERS: &[&str] = &[
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
];

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1"}]},
            },
        },
    }))
    .unwrap()
}

async fn replica_sets(client: &Client, ns: &str) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default()).await.unwrap().items
}

async fn all_pods(client: &Client, ns: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default()).await.unwrap().items
}

/// A Deployment of `replicas` running in `ns`.
async fn running_deployment(c: &Cluster, ns: &str, replicas: i32) {
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), ns);
    api.create(&PostParams::default(), &deployment("web", replicas))
        .await
        .unwrap();
    eventually("the pods running", SOON, || async {
        (live_pods(&c.client, ns, "app=web").await.len() == replicas as usize).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_of_a_deployment_removes_its_replica_sets_and_pods() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(CONTROLLERS));
    c.namespace("bg").await;
    let _agent = NodeAgent::start(&c.client, AgentOptions::default());
    running_deployment(&c, "bg", 3).await;

    let (ok, out) = c
        .kubectl(&["delete", "-n", "bg", "deployment/web", "--wait=false"])
        .await;
    assert!(ok, "{out}");
    eventually("the ReplicaSets and pods gone", SOON, || async {
        (replica_sets(&c.client, "bg").await.is_empty()
            && all_pods(&c.client, "bg").await.is_empty())
        .then_some(())
    })
    .await;

    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_removes_the_dependents_before_the_owner() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(CONTROLLERS));
    c.namespace("fg").await;
    let _agent = NodeAgent::start(&c.client, AgentOptions::default());
    running_deployment(&c, "fg", 2).await;

    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "fg");
    api.delete(
        "web",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    // The owner stays, held by the foregroundDeletion finalizer, while its
    // dependents go; it goes only after them.
    let d = api.get("web").await.unwrap();
    assert!(d.metadata.deletion_timestamp.is_some());
    assert!(d.finalizers().contains(&"foregroundDeletion".to_owned()));
    loop {
        let gone = api.get_opt("web").await.unwrap().is_none();
        let rss = replica_sets(&c.client, "fg").await;
        let pods = all_pods(&c.client, "fg").await;
        if gone {
            assert!(rss.is_empty(), "the Deployment went before its ReplicaSets");
            assert!(pods.is_empty(), "the Deployment went before its pods");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // kubectl's --cascade=foreground, on a ReplicaSet of its own.
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "solo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "solo"}},
                 "template": {"metadata": {"labels": {"app": "solo"}},
                              "spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
    }))
    .unwrap();
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "fg");
    rss.create(&PostParams::default(), &rs).await.unwrap();
    eventually("two pods", SOON, || async {
        (live_pods(&c.client, "fg", "app=solo").await.len() == 2).then_some(())
    })
    .await;
    let (ok, out) = c
        .kubectl(&[
            "delete",
            "-n",
            "fg",
            "rs/solo",
            "--cascade=foreground",
            "--timeout=30s",
        ])
        .await;
    assert!(ok, "{out}");
    assert!(rss.get_opt("solo").await.unwrap().is_none());
    assert!(all_pods(&c.client, "fg").await.is_empty());

    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_leaves_the_dependents_without_the_reference() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(CONTROLLERS));
    c.namespace("orph").await;
    let _agent = NodeAgent::start(&c.client, AgentOptions::default());
    running_deployment(&c, "orph", 2).await;
    let rs_name = replica_sets(&c.client, "orph").await[0].name_any();

    let (ok, out) = c
        .kubectl(&[
            "delete",
            "-n",
            "orph",
            "deployment/web",
            "--cascade=orphan",
            "--timeout=30s",
        ])
        .await;
    assert!(ok, "{out}");
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "orph");
    assert!(api.get_opt("web").await.unwrap().is_none());
    // The ReplicaSet stays, no longer owned, and keeps its pods.
    let rss = replica_sets(&c.client, "orph").await;
    assert_eq!(rss.len(), 1);
    assert_eq!(rss[0].name_any(), rs_name);
    assert!(rss[0].owner_references().is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(replica_sets(&c.client, "orph").await.len(), 1);
    assert_eq!(live_pods(&c.client, "orph", "app=web").await.len(), 2);

    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_of_an_owner_deleted_while_the_manager_was_down_are_collected() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(CONTROLLERS));
    c.namespace("down").await;
    let _agent = NodeAgent::start(&c.client, AgentOptions::default());
    running_deployment(&c, "down", 2).await;
    manager.stop().await;

    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "down");
    api.delete("web", &DeleteParams::background())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        replica_sets(&c.client, "down").await.len(),
        1,
        "nobody collected them yet"
    );

    let manager = Manager::start(c.config(CONTROLLERS));
    eventually(
        "the ReplicaSet and pods collected after the restart",
        SOON,
        || async {
            (replica_sets(&c.client, "down").await.is_empty()
                && all_pods(&c.client, "down").await.is_empty())
            .then_some(())
        },
    )
    .await;

    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_kind_can_own_any_other_even_across_scopes() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["garbage-collector-controller"]));
    c.namespace("kinds").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "kinds");
    let roles: Api<ClusterRole> = Api::all(c.client.clone());
    let parent = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "parent"}})).unwrap(),
        )
        .await
        .unwrap();
    let role = roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "gc-test-owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let child = |name: &str, api_version: &str, kind: &str, owner: &str, uid: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [
            {"apiVersion": api_version, "kind": kind, "name": owner, "uid": uid}
        ]}}))
        .unwrap()
    };
    cms.create(
        &PostParams::default(),
        &child(
            "of-configmap",
            "v1",
            "ConfigMap",
            "parent",
            &parent.uid().unwrap(),
        ),
    )
    .await
    .unwrap();
    cms.create(
        &PostParams::default(),
        &child(
            "of-clusterrole",
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "gc-test-owner",
            &role.uid().unwrap(),
        ),
    )
    .await
    .unwrap();
    // An owner that never existed: collected at once.
    cms.create(
        &PostParams::default(),
        &child(
            "of-nobody",
            "v1",
            "ConfigMap",
            "ghost",
            "00000000-0000-0000-0000-000000000000",
        ),
    )
    .await
    .unwrap();
    eventually("the child of a missing owner collected", SOON, || async {
        cms.get_opt("of-nobody")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cms.get_opt("of-configmap").await.unwrap().is_some(),
        "its owner lives"
    );
    assert!(
        cms.get_opt("of-clusterrole").await.unwrap().is_some(),
        "its owner lives"
    );

    cms.delete("parent", &DeleteParams::default())
        .await
        .unwrap();
    roles
        .delete("gc-test-owner", &DeleteParams::default())
        .await
        .unwrap();
    eventually("both children collected", SOON, || async {
        (cms.get_opt("of-configmap").await.unwrap().is_none()
            && cms.get_opt("of-clusterrole").await.unwrap().is_none())
        .then_some(())
    })
    .await;

    manager.stop().await;
    c.stop().await;
}
