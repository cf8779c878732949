//! Controller manager benchmark (issue 7), against the in-process API
//! server with the simulated node agent of tests/integration/common:
//! - the API server's own write ceiling: plain pod creates/s (concurrency 16);
//! - a 1,000-replica Deployment: time until all its pods are created;
//! - its rolling update (maxSurge 25%, maxUnavailable 0) to completion;
//! - deleting a namespace holding 5,000 ConfigMaps, until it is gone;
//! - pods evicted per second from a node whose Lease stops;
//! - the controller manager binary's RSS with 10,000 pods in its caches.
//!
//! `cargo bench -p skiff-controllers --bench cluster`. Sizes from the
//! environment: `SKIFF_BENCH_REPLICAS` (1000), `SKIFF_BENCH_NS_OBJECTS`
//! (5000), `SKIFF_BENCH_EVICT_PODS` (500), `SKIFF_BENCH_RSS_PODS` (10000).
//! `SKIFF_BENCH_ONLY=rss` runs only the last (the RSS figure);
//! `SKIFF_BENCH_RSS_CONTROLLERS` (`;`-separated `--controllers` values)
//! measures several controller sets, `SKIFF_BENCH_CM_BIN` another binary.

#[path = "../tests/integration/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{AgentOptions, Cluster, Manager, NodeAgent};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `n` creates through `make`, 16 at a time; the rate per second.
async fn create_many<F, Fut>(n: usize, make: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(make)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    n as f64 / start.elapsed().as_secs_f64()
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !probe().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

fn pod(name: &str, node: Option<&str>, tolerate_unreachable: bool) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    if tolerate_unreachable {
        spec["tolerations"] = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                      "effect": "NoExecute", "tolerationSeconds": 0}]);
    }
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"bench": "yes"}}, "spec": spec}),
    )
    .unwrap()
}

async fn heartbeat(client: &Client, name: &str) {
    let now = Timestamp::now().to_string();
    let nodes: Api<Node> = Api::all(client.clone());
    let _ = nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "lastHeartbeatTime": now, "lastTransitionTime": now}]}})),
        )
        .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renew = Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let lease =
        json!({"metadata": {"name": name}, "spec": {"holderIdentity": name, "renewTime": renew}});
    if leases.get_opt(name).await.ok().flatten().is_none() {
        let _ = leases
            .create(
                &PostParams::default(),
                &serde_json::from_value(lease).unwrap(),
            )
            .await;
    } else {
        let _ = leases
            .patch(name, &PatchParams::default(), &Patch::Merge(&lease))
            .await;
    }
}

/// Does again what the simulated kubelets' dropped writes left undone
/// (under load the API server answers some with 429): binds unbound pods of
/// the `bench` namespace and reports bound ones running and ready.
async fn sweep(client: Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Ok(list) = pods.list(&ListParams::default()).await else {
            continue;
        };
        for p in list.items {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = p.metadata.name.clone().unwrap_or_default();
            match p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                None => {
                    let binding = json!({"apiVersion": "v1", "kind": "Binding",
                        "metadata": {"name": name, "namespace": "bench"},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}});
                    let _ = pods
                        .create_subresource::<_, serde_json::Value>(
                            "binding",
                            &name,
                            &PostParams::default(),
                            &binding,
                        )
                        .await;
                }
                Some(node) if !common::is_ready(&p) => {
                    common::set_status(&pods, &p, &node, &common::pod_ip(&p), true).await;
                }
                Some(_) => {}
            }
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let replicas = size("SKIFF_BENCH_REPLICAS", 1000);
    let ns_objects = size("SKIFF_BENCH_NS_OBJECTS", 5000);
    let evict_pods = size("SKIFF_BENCH_EVICT_PODS", 500);
    let rss_pods = size("SKIFF_BENCH_RSS_PODS", 10000);
    let cluster = Cluster::start().await;
    let client = cluster.client.clone();
    let long = Duration::from_secs(180);
    if std::env::var("SKIFF_BENCH_ONLY").as_deref() == Ok("rss") {
        // A namespace is ready once its default ServiceAccount exists.
        let manager = Manager::start(cluster.config(&["serviceaccount"]));
        cluster.namespace("rss").await;
        manager.stop().await;
        measure_rss(&cluster, &client, rss_pods).await;
        cluster.stop().await;
        return;
    }

    // The API server's write ceiling, before any controller runs.
    let mut config = cluster.config(&[
        "deployment",
        "replicaset",
        "namespace",
        "garbagecollector",
        "node-lifecycle-controller",
        "taint-eviction-controller",
    ]);
    config.infra.node_monitor_period = Duration::from_millis(500);
    config.infra.node_monitor_grace_period = Duration::from_secs(3);
    config.infra.node_eviction_rate = 100.0;
    let manager = Manager::start(config);
    cluster.namespace("ceiling").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ceiling");
    let ceiling = create_many(replicas, |i| {
        let pods = pods.clone();
        async move {
            pods.create(
                &PostParams::default(),
                &pod(&format!("p{i}"), Some("elsewhere"), false),
            )
            .await
            .unwrap();
        }
    })
    .await;
    println!("API server ceiling: {ceiling:.0} pod creates/s ({replicas} pods, concurrency 16)");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("ceiling", &DeleteParams::default())
        .await
        .unwrap();

    let _agent = NodeAgent::start(&client, AgentOptions::default());
    let _sweeper = tokio::spawn(sweep(client.clone()));
    cluster.namespace("bench").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "bench");
    let d = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "nginx:1"}]}}},
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let status = |d: &Deployment| d.status.clone().unwrap_or_default();
    let want = replicas as i32;
    let created = wait_until("all pods created", long, || async {
        status(&deployments.get("web").await.unwrap()).replicas == Some(want)
    })
    .await;
    println!(
        "Deployment of {replicas}: all pods created in {:.2} s ({:.0} pods/s, {:.0}% of the ceiling)",
        created.as_secs_f64(),
        replicas as f64 / created.as_secs_f64(),
        100.0 * replicas as f64 / created.as_secs_f64() / ceiling
    );
    let rolled = |d: &Deployment| {
        let s = status(d);
        s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(want)
            && s.replicas == Some(want)
            && s.available_replicas == Some(want)
    };
    wait_until("all pods available", long, || async {
        rolled(&deployments.get("web").await.unwrap())
    })
    .await;
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}})),
        )
        .await
        .unwrap();
    let rollout = wait_until("the rolling update", long, || async {
        rolled(&deployments.get("web").await.unwrap())
    })
    .await;
    println!(
        "Rolling update of {replicas} (maxSurge 25%): {:.2} s ({:.0} pods replaced/s)",
        rollout.as_secs_f64(),
        replicas as f64 / rollout.as_secs_f64()
    );
    namespaces
        .delete("bench", &DeleteParams::default())
        .await
        .unwrap();

    // A namespace full of objects, deleted.
    cluster.namespace("bulk").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bulk");
    create_many(ns_objects, |i| {
        let cms = cms.clone();
        async move {
            let cm = serde_json::from_value(
                json!({"metadata": {"name": format!("cm{i}")}, "data": {"k": "v"}}),
            )
            .unwrap();
            cms.create(&PostParams::default(), &cm).await.unwrap();
        }
    })
    .await;
    namespaces
        .delete("bulk", &DeleteParams::default())
        .await
        .unwrap();
    let gone = wait_until("the namespace gone", long, || async {
        namespaces.get_opt("bulk").await.unwrap().is_none()
    })
    .await;
    println!(
        "Namespace with {ns_objects} objects deleted in {:.2} s ({:.0} objects/s)",
        gone.as_secs_f64(),
        ns_objects as f64 / gone.as_secs_f64()
    );

    // Evictions from a node that stops renewing its Lease.
    let nodes: Api<Node> = Api::all(client.clone());
    for n in ["doomed", "healthy"] {
        let node = serde_json::from_value(json!({"metadata": {"name": n}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let doomed_alive = Arc::new(AtomicBool::new(true));
    let (alive, c) = (doomed_alive.clone(), client.clone());
    let beats = tokio::spawn(async move {
        loop {
            heartbeat(&c, "healthy").await;
            if alive.load(Ordering::SeqCst) {
                heartbeat(&c, "doomed").await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    cluster.namespace("evict").await;
    let epods: Api<Pod> = Api::namespaced(client.clone(), "evict");
    create_many(evict_pods, |i| {
        let epods = epods.clone();
        async move {
            epods
                .create(
                    &PostParams::default(),
                    &pod(&format!("e{i}"), Some("doomed"), true),
                )
                .await
                .unwrap();
        }
    })
    .await;
    wait_until("the doomed node untainted", long, || async {
        nodes
            .get("doomed")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .is_empty()
    })
    .await;
    doomed_alive.store(false, Ordering::SeqCst);
    wait_until("the NoExecute taint", long, || async {
        nodes
            .get("doomed")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .any(|t| t.effect == "NoExecute")
    })
    .await;
    // Evicted: deleted by the controller (the simulated kubelet finishing
    // the deletion is not the controller's work).
    let evicted = wait_until("every pod evicted", long, || async {
        let list = epods.list_metadata(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    println!(
        "Evictions from a failed node: {evict_pods} pods in {:.2} s after its NoExecute taint ({:.0} pods/s)",
        evicted.as_secs_f64(),
        evict_pods as f64 / evicted.as_secs_f64()
    );
    beats.abort();
    cluster.namespace("rss").await;
    manager.stop().await;
    measure_rss(&cluster, &client, rss_pods).await;
    cluster.stop().await;
}

/// The controller manager binary's memory with `rss_pods` pods (created in
/// the `rss` namespace) in its caches.
async fn measure_rss(cluster: &Cluster, client: &Client, rss_pods: usize) {
    let rpods: Api<Pod> = Api::namespaced(client.clone(), "rss");
    create_many(rss_pods, |i| {
        let rpods = rpods.clone();
        async move {
            rpods
                .create(
                    &PostParams::default(),
                    &pod(&format!("r{i}"), Some("elsewhere"), false),
                )
                .await
                .unwrap();
        }
    })
    .await;
    // `SKIFF_BENCH_RSS_CONTROLLERS`: `--controllers` values to measure one
    // after another, separated by `;` (default: all controllers).
    let sets = std::env::var("SKIFF_BENCH_RSS_CONTROLLERS").unwrap_or_else(|_| "*".into());
    // `SKIFF_BENCH_CM_BIN`: other builds of the binary, `;`-separated, to
    // compare them on the same pods.
    let binaries = std::env::var("SKIFF_BENCH_CM_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_skiff-controller-manager").into());
    let runs = binaries
        .split(';')
        .flat_map(|b| sets.split(';').map(move |c| (b, c)));
    for (binary, controllers) in runs {
        let mut child = std::process::Command::new(binary)
            .args(["--kubeconfig"])
            .arg(&cluster.kubeconfig)
            .args([
                "--leader-elect=false",
                "--secure-port",
                "0",
                &format!("--controllers={controllers}"),
                "--root-ca-file",
            ])
            .arg(&cluster.ca_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the controller manager binary starts");
        tokio::time::sleep(Duration::from_secs(15)).await;
        let rss = rss_kib(child.id()).unwrap_or(0);
        let mut which = if controllers == "*" {
            "all controllers".to_owned()
        } else {
            format!("controllers {controllers}")
        };
        if binaries.contains(';') {
            which = format!("{binary}, {which}");
        }
        println!(
            "Controller manager RSS with {rss_pods} pods: {:.1} MiB ({which}, after 15 s)",
            rss as f64 / 1024.0
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
