//! The disruption controller against a real API server, with pods made and
//! run by the ReplicaSet controller and the simulated node agent.

use crate::common::{AgentOptions, Cluster, Manager, NodeAgent, SOON, eventually};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn numbers(pdb: &PodDisruptionBudget) -> Option<(i32, i32, i32, i32, String, String)> {
    let s = pdb.status.as_ref()?;
    let c = s
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "DisruptionAllowed")?;
    Some((
        s.expected_pods,
        s.current_healthy,
        s.desired_healthy,
        s.disruptions_allowed,
        c.status.clone(),
        c.reason.clone(),
    ))
}

async fn wait_for(
    pdbs: &Api<PodDisruptionBudget>,
    name: &str,
    want: (i32, i32, i32, i32, &str, &str),
) {
    let want = (
        want.0,
        want.1,
        want.2,
        want.3,
        want.4.to_string(),
        want.5.to_string(),
    );
    eventually(&format!("{name} status {want:?}"), SOON, || async {
        let pdb = pdbs.get(name).await.unwrap();
        let got = numbers(&pdb)?;
        let observed = pdb.status.as_ref()?.observed_generation == pdb.metadata.generation;
        (observed && got == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_count_healthy_pods_against_min_available_and_max_unavailable() {
    let cluster = Cluster::start().await;
    let manager = Manager::start(cluster.config(&["disruption", "replicaset"]));
    let _agent = NodeAgent::start(&cluster.client, AgentOptions::default());
    cluster.namespace("t").await;
    let rss: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "t");
    let rs = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    rss.create(&PostParams::default(), &rs).await.unwrap();

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(cluster.client.clone(), "t");
    for (name, spec) in [
        (
            "min",
            json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
        ),
        (
            "max",
            json!({"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}),
        ),
        (
            "none",
            json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}),
        ),
    ] {
        let pdb =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
        pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    }
    wait_for(&pdbs, "min", (3, 3, 2, 1, "True", "SufficientPods")).await;
    // 50% of 3 rounds up: at most 2 unavailable, so 1 must stay healthy.
    wait_for(&pdbs, "max", (3, 3, 1, 2, "True", "SufficientPods")).await;
    wait_for(&pdbs, "none", (0, 0, 1, 0, "False", "InsufficientPods")).await;

    // A new spec is observed, and the numbers follow it.
    pdbs.patch(
        "min",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"minAvailable": 3}})),
    )
    .await
    .unwrap();
    wait_for(&pdbs, "min", (3, 3, 3, 0, "False", "InsufficientPods")).await;

    // Scaling the ReplicaSet changes what maxUnavailable counts against.
    rss.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    wait_for(&pdbs, "max", (4, 4, 2, 2, "True", "SufficientPods")).await;

    manager.stop().await;
    cluster.stop().await;
}
