//! Leader election under a crash: the controller manager holding the Lease
//! is killed in the middle of a rolling update, a second one takes the
//! Lease over when it expires and finishes the rollout, and nothing is
//! created twice.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{AgentOptions, Cluster, Manager, NodeAgent, eventually};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

const REPLICAS: i32 = 12;

fn manager(cluster: &Cluster, identity: &str) -> Manager {
    let mut config = cluster.config(&["deployment-controller", "replicaset-controller"]);
    config.leader_election = Some(skiff_controllers::LeaderElection {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
        identity: identity.into(),
        ..skiff_controllers::LeaderElection::for_lease("kube-controller-manager")
    });
    Manager::start(config)
}

fn rolled_out(d: &Deployment) -> bool {
    let (Some(spec), Some(status)) = (d.spec.as_ref(), d.status.as_ref()) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    status.observed_generation == d.metadata.generation
        && status.updated_replicas == Some(want)
        && status.replicas == Some(want)
        && status.ready_replicas == Some(want)
        && status.available_replicas == Some(want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_manager_finishes_a_rollout_the_killed_leader_started() {
    let cluster = Cluster::start().await;
    let _agent = NodeAgent::start(
        &cluster.client,
        AgentOptions {
            ready_after: Duration::from_millis(400),
            ..AgentOptions::default()
        },
    );
    let a = manager(&cluster, "manager-a");
    cluster.namespace("ha").await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "ha");
    let d = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "nginx:1"}]}}},
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let long = Duration::from_secs(60);
    eventually("the first rollout", long, || async {
        rolled_out(&deployments.get("web").await.unwrap()).then_some(())
    })
    .await;

    // Every pod created from now on, by name.
    let created: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let seen = created.clone();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "ha");
    let before: BTreeSet<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    let watch = tokio::spawn(async move {
        let mut events = watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Ok(Some(p)) = events.try_next().await {
            let name = p.metadata.name.unwrap();
            if !before.contains(&name) {
                seen.lock().unwrap().insert(name);
            }
        }
    });

    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}})),
        )
        .await
        .unwrap();
    eventually("the rollout under way", long, || async {
        (created.lock().unwrap().len() >= 3).then_some(())
    })
    .await;
    assert!(!rolled_out(&deployments.get("web").await.unwrap()));
    a.kill();

    let b = manager(&cluster, "manager-b");
    eventually(
        "the rollout finished by the second manager",
        long,
        || async { rolled_out(&deployments.get("web").await.unwrap()).then_some(()) },
    )
    .await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.client.clone(), "kube-system");
    let lease = leases.get("kube-controller-manager").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("manager-b")
    );

    let rss: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "ha");
    let sets = rss.list(&Default::default()).await.unwrap().items;
    assert_eq!(sets.len(), 2, "one ReplicaSet per template");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let created = created.lock().unwrap().len();
    assert_eq!(created, REPLICAS as usize, "each new pod created once");
    watch.abort();

    b.stop().await;
    cluster.stop().await;
}
