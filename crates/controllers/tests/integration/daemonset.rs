//! The DaemonSet controller against a real API server: Node objects, and a
//! simulated scheduler and kubelet that bind each pod to the node its
//! required node affinity names and run it.

use std::time::Duration;

use crate::common::{Cluster, Manager, SOON, eventually, set_status};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

struct Agent(JoinHandle<()>);

impl Drop for Agent {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The node a pod's required node affinity pins it to.
fn pinned_node(pod: &Pod) -> Option<String> {
    let v = serde_json::to_value(pod.spec.as_ref()?).ok()?;
    let terms = v["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()?
        .clone();
    terms.iter().find_map(|t| {
        t["matchFields"].as_array()?.iter().find_map(|f| {
            (f["key"] == "metadata.name" && f["operator"] == "In")
                .then(|| f["values"][0].as_str().map(str::to_owned))?
        })
    })
}

impl Agent {
    fn start(client: &Client) -> Agent {
        let client = client.clone();
        Agent(tokio::spawn(async move {
            let pods: Api<Pod> = Api::all(client.clone());
            let mut events = watcher(pods, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Ok(Some(pod)) = events.try_next().await {
                let client = client.clone();
                tokio::spawn(async move {
                    let api: Api<Pod> = Api::namespaced(client, &pod.namespace().unwrap());
                    let name = pod.name_any();
                    if pod.metadata.deletion_timestamp.is_some() {
                        let params = DeleteParams {
                            grace_period_seconds: Some(0),
                            ..DeleteParams::default()
                        };
                        let _ = api.delete(&name, &params).await;
                        return;
                    }
                    match pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                        None => {
                            let Some(node) = pinned_node(&pod) else {
                                return;
                            };
                            let binding = json!({
                                "apiVersion": "v1", "kind": "Binding",
                                "metadata": {"name": name},
                                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                            });
                            let _ = api
                                .create_subresource::<_, serde_json::Value>(
                                    "binding",
                                    &name,
                                    &PostParams::default(),
                                    &binding,
                                )
                                .await;
                        }
                        Some(node) => {
                            let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                            if phase.as_deref() != Some("Running") {
                                set_status(&api, &pod, &node, "10.244.0.9", true).await;
                            }
                        }
                    }
                });
            }
        }))
    }
}

async fn node(client: &Client, name: &str, taints: serde_json::Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    // The API server taints a new node not-ready (NoSchedule, which daemon
    // pods do not tolerate); the node lifecycle controller would lift it
    // once the node reports Ready.
    let patch = json!({"spec": {"taints": taints}});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn daemon_set(image: &str) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }))
    .unwrap()
}

async fn pods_by_node(client: &Client) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = crate::common::live_pods(client, "ds", "app=agent")
        .await
        .iter()
        .map(|p| {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            (
                node,
                p.spec.as_ref().unwrap().containers[0]
                    .image
                    .clone()
                    .unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_runs_one_pod_per_eligible_node_and_rolls_its_template() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&["daemonset-controller"]));
    c.namespace("ds").await;
    let _agent = Agent::start(&c.client);
    node(&c.client, "node-a", json!([])).await;
    node(&c.client, "node-b", json!([])).await;
    node(
        &c.client,
        "node-c",
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    )
    .await;
    // Conditions the daemon pods tolerate do not keep them off.
    node(
        &c.client,
        "node-d",
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
    )
    .await;
    let api: Api<DaemonSet> = Api::namespaced(c.client.clone(), "ds");
    api.create(&PostParams::default(), &daemon_set("busybox:1"))
        .await
        .unwrap();

    eventually("three ready daemon pods", SOON, || async {
        let s = api.get("agent").await.unwrap().status.unwrap_or_default();
        (s.desired_number_scheduled == 3 && s.number_ready == 3 && s.number_available == Some(3))
            .then_some(())
    })
    .await;
    let placed = pods_by_node(&c.client).await;
    let nodes: Vec<&str> = placed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        nodes,
        ["node-a", "node-b", "node-d"],
        "none on the tainted node"
    );
    let pod = &crate::common::live_pods(&c.client, "ds", "app=agent").await[0];
    let tolerations = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready"))
    );
    assert!(pod.labels().contains_key("controller-revision-hash"));
    assert_eq!(pod.labels()["pod-template-generation"], "1");

    // A new template rolls out node by node.
    api.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}}}})),
    )
    .await
    .unwrap();
    let (ok, out) = c
        .kubectl(&[
            "-n",
            "ds",
            "rollout",
            "status",
            "daemonset/agent",
            "--timeout=30s",
        ])
        .await;
    assert!(ok, "kubectl rollout status: {out}");
    let placed = pods_by_node(&c.client).await;
    assert!(
        placed.iter().all(|(_, image)| image == "busybox:2"),
        "{placed:?}"
    );
    assert_eq!(placed.len(), 3);
    let revisions: Api<ControllerRevision> = Api::namespaced(c.client.clone(), "ds");
    let revs = revisions.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(revs.len(), 2);

    // kubectl rollout undo goes back to the first template.
    let (ok, out) = c
        .kubectl(&["-n", "ds", "rollout", "undo", "daemonset/agent"])
        .await;
    assert!(ok, "kubectl rollout undo: {out}");
    eventually(
        "the first image back everywhere",
        Duration::from_secs(30),
        || async {
            let placed = pods_by_node(&c.client).await;
            let s = api.get("agent").await.unwrap().status.unwrap_or_default();
            (placed.len() == 3
                && placed.iter().all(|(_, i)| i == "busybox:1")
                && s.updated_number_scheduled == Some(3))
            .then_some(())
        },
    )
    .await;
    let mut numbers: Vec<i64> = revisions
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.revision)
        .collect();
    numbers.sort();
    assert_eq!(
        numbers,
        [2, 3],
        "the old revision is renumbered, not copied"
    );

    // A node that goes away takes nothing with it; a new one gets a pod.
    node(&c.client, "node-e", json!([])).await;
    eventually("a pod on the new node", SOON, || async {
        pods_by_node(&c.client)
            .await
            .iter()
            .any(|(n, _)| n == "node-e")
            .then_some(())
    })
    .await;
    manager.stop().await;
    c.stop().await;
}
