//! The node lifecycle and taint eviction controllers against a real API
//! server: nodes are simulated by renewing (or not) their Lease and status,
//! with grace periods shortened through the controller manager's flags.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{Cluster, Manager, SOON, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::task::JoinHandle;

fn fast(cluster: &Cluster) -> skiff_controllers::Config {
    let mut config = cluster.config(&["node-lifecycle-controller", "taint-eviction-controller"]);
    config.infra.node_monitor_period = Duration::from_millis(200);
    config.infra.node_monitor_grace_period = Duration::from_secs(2);
    config.infra.node_startup_grace_period = Duration::from_secs(2);
    config.infra.node_eviction_rate = 100.0;
    config
}

/// A simulated kubelet's heartbeat: the node's Lease renewed and its
/// status posted (Ready, with `conditions` besides) every 300 ms while
/// `alive`.
struct Kubelet {
    alive: Arc<AtomicBool>,
    conditions: Arc<std::sync::Mutex<serde_json::Value>>,
    task: JoinHandle<()>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn register(client: &Client, name: &str, labels: serde_json::Value) -> Kubelet {
    let nodes: Api<Node> = Api::all(client.clone());
    let node =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let alive = Arc::new(AtomicBool::new(true));
    let conditions = Arc::new(std::sync::Mutex::new(json!([])));
    let (a, c, client, name) = (
        alive.clone(),
        conditions.clone(),
        client.clone(),
        name.to_owned(),
    );
    let task = tokio::spawn(async move {
        loop {
            if a.load(Ordering::SeqCst) {
                let extra = c.lock().unwrap().clone();
                heartbeat(&client, &name, &extra).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    Kubelet {
        alive,
        conditions,
        task,
    }
}

async fn heartbeat(client: &Client, name: &str, extra: &serde_json::Value) {
    let now = Timestamp::now().to_string();
    let mut conditions = vec![
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
        "lastHeartbeatTime": now, "lastTransitionTime": now}),
    ];
    for c in extra.as_array().unwrap() {
        let mut c = c.clone();
        c["lastHeartbeatTime"] = json!(now);
        c["lastTransitionTime"] = json!(now);
        if c["type"] == "Ready" {
            conditions[0] = c;
        } else {
            conditions.push(c);
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": conditions}})),
        )
        .await
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renew = Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let lease = json!({"metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew}});
    if leases.get_opt(name).await.unwrap().is_none() {
        let lease: Lease = serde_json::from_value(lease).unwrap();
        let _ = leases.create(&PostParams::default(), &lease).await;
    } else {
        leases
            .patch(name, &PatchParams::default(), &Patch::Merge(&lease))
            .await
            .unwrap();
    }
}

fn taints(node: &Node) -> Vec<String> {
    let mut t: Vec<String> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    t.sort();
    t
}

async fn wait_taints(client: &Client, name: &str, want: &[&str]) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    eventually(&format!("node {name} tainted {want:?}"), SOON, || async {
        let node = nodes.get(name).await.unwrap();
        (taints(&node) == want).then_some(node)
    })
    .await
}

fn ready_condition(node: &Node) -> (String, String) {
    let c = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .unwrap();
    (c.status.clone(), c.reason.clone().unwrap_or_default())
}

async fn pod_on(client: &Client, ns: &str, name: &str, node: &str, tolerations: serde_json::Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "tolerations": tolerations,
                 "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_goes_unknown_is_tainted_and_its_pods_are_evicted() {
    let cluster = Cluster::start().await;
    let zone = json!({"topology.kubernetes.io/zone": "z1"});
    let a = register(&cluster.client, "node-a", zone.clone()).await;
    let _b = register(&cluster.client, "node-b", zone).await;
    let manager = Manager::start(fast(&cluster));

    // The kubelet registers tainted not-ready; a Ready node loses the taint.
    wait_taints(&cluster.client, "node-a", &[]).await;
    wait_taints(&cluster.client, "node-b", &[]).await;

    cluster.namespace("t").await;
    let short = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 2}]);
    pod_on(&cluster.client, "t", "short", "node-a", short).await;
    pod_on(
        &cluster.client,
        "t",
        "forever",
        "node-a",
        json!([{"operator": "Exists"}]),
    )
    .await;
    pod_on(&cluster.client, "t", "defaulted", "node-a", json!([])).await;
    pod_on(&cluster.client, "t", "elsewhere", "node-b", json!([])).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "t");
    // DefaultTolerationSeconds admission gives a pod 300 s on an
    // unreachable or not-ready node.
    let defaulted = pods.get("defaulted").await.unwrap();
    let seconds: Vec<Option<i64>> = defaulted
        .spec
        .unwrap()
        .tolerations
        .unwrap()
        .iter()
        .map(|t| t.toleration_seconds)
        .collect();
    assert_eq!(seconds, [Some(300), Some(300)]);

    a.alive.store(false, Ordering::SeqCst);
    let node = wait_taints(
        &cluster.client,
        "node-a",
        &[
            "node.kubernetes.io/unreachable:NoExecute",
            "node.kubernetes.io/unreachable:NoSchedule",
        ],
    )
    .await;
    assert_eq!(
        ready_condition(&node),
        ("Unknown".into(), "NodeStatusUnknown".into())
    );
    // Counted from the taint's timeAdded (stored to the second).
    let tainted_at = node
        .spec
        .as_ref()
        .unwrap()
        .taints
        .as_ref()
        .unwrap()
        .iter()
        .find(|t| t.effect == "NoExecute")
        .and_then(|t| t.time_added.clone())
        .unwrap()
        .0;

    let evicted = eventually("pod short evicted", SOON, || async {
        let p = pods.get("short").await.unwrap();
        p.metadata.deletion_timestamp.is_some().then_some(p)
    })
    .await;
    let waited = Timestamp::now().as_millisecond() - tainted_at.as_millisecond();
    assert!(
        waited >= 2000,
        "evicted {waited} ms after the taint, before its 2 s toleration ran out"
    );
    let disruption = evicted
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .unwrap();
    assert_eq!(disruption.reason.as_deref(), Some("DeletionByTaintManager"));
    // Marked not ready when its node went silent.
    let ready = pods
        .get("forever")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .unwrap_or_default();
    assert!(
        !ready
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    for name in ["forever", "defaulted", "elsewhere"] {
        let p = pods.get(name).await.unwrap();
        assert!(
            p.metadata.deletion_timestamp.is_none(),
            "{name} was evicted"
        );
    }

    // The kubelet comes back: Ready again, and untainted.
    a.alive.store(true, Ordering::SeqCst);
    let node = wait_taints(&cluster.client, "node-a", &[]).await;
    assert_eq!(ready_condition(&node).0, "True");

    manager.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_and_cordoning_set_the_matching_taints() {
    let cluster = Cluster::start().await;
    let a = register(&cluster.client, "node-a", json!({})).await;
    let _b = register(&cluster.client, "node-b", json!({})).await;
    let manager = Manager::start(fast(&cluster));
    wait_taints(&cluster.client, "node-a", &[]).await;

    *a.conditions.lock().unwrap() = json!([
        {"type": "Ready", "status": "False", "reason": "KubeletNotReady"},
        {"type": "MemoryPressure", "status": "True"},
        {"type": "DiskPressure", "status": "True"},
    ]);
    wait_taints(
        &cluster.client,
        "node-a",
        &[
            "node.kubernetes.io/disk-pressure:NoSchedule",
            "node.kubernetes.io/memory-pressure:NoSchedule",
            "node.kubernetes.io/not-ready:NoExecute",
            "node.kubernetes.io/not-ready:NoSchedule",
        ],
    )
    .await;

    *a.conditions.lock().unwrap() = json!([]);
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes
        .patch(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    wait_taints(
        &cluster.client,
        "node-a",
        &["node.kubernetes.io/unschedulable:NoSchedule"],
    )
    .await;

    manager.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_node_is_down_nothing_is_evicted() {
    let cluster = Cluster::start().await;
    let a = register(&cluster.client, "only", json!({})).await;
    let manager = Manager::start(fast(&cluster));
    wait_taints(&cluster.client, "only", &[]).await;
    cluster.namespace("t").await;
    pod_on(
        &cluster.client,
        "t",
        "p",
        "only",
        json!([{"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}]),
    )
    .await;

    a.alive.store(false, Ordering::SeqCst);
    let node = wait_taints(
        &cluster.client,
        "only",
        &["node.kubernetes.io/unreachable:NoSchedule"],
    )
    .await;
    assert_eq!(ready_condition(&node).0, "Unknown");
    // Master disruption mode: the controller suspects itself, not the node.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    assert_eq!(
        taints(&nodes.get("only").await.unwrap()),
        ["node.kubernetes.io/unreachable:NoSchedule"]
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "t");
    assert!(
        pods.get("p")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    manager.stop().await;
    cluster.stop().await;
}
