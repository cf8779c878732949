//! The kubelet's pod logic against the in-process fake runtime and a real
//! (in-process) API server: what it asks the runtime to do and what it
//! reports back, without containerd.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use skiff_kubelet::cri::fake::Fake;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Cluster {
    client: Client,
    fake: Arc<Fake>,
    _server: skiff_apiserver::Running,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    cluster_with(|_| {}).await
}

async fn cluster_with(adjust: impl FnOnce(&mut skiff_kubelet::Config)) -> Cluster {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let server = skiff_apiserver::start(skiff_apiserver::Config {
        data_dir: dir.path().join("api"),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    })
    .await
    .expect("the API server starts");
    let kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let fake = Arc::new(Fake::new());
    fake.add_image("skiff.local/testhost:1.0");
    let mut config = skiff_kubelet::Config::new("fake-node");
    config.manage_host = false;
    config.write_cni_config = false;
    config.port = 0;
    config.root_dir = dir.path().join("kubelet");
    adjust(&mut config);
    let runtime: Arc<dyn skiff_kubelet::cri::Runtime> = fake.clone();
    tokio::spawn(skiff_kubelet::run(config, client.clone(), runtime));
    Cluster {
        client,
        fake,
        _server: server,
        _dir: dir,
    }
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn pod(name: &str, extra: serde_json::Value) -> Pod {
    let mut value = serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": "fake-node",
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "skiff.local/testhost:1.0"}]
        }
    });
    json_patch::merge(&mut value, &extra);
    serde_json::from_value(value).unwrap()
}

async fn phase(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name)
        .await
        .ok()
        .and_then(|p| p.status)
        .and_then(|s| s.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_node_and_lease_then_runs_restarts_and_removes_a_pod() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    eventually("node Ready", Duration::from_secs(10), || async {
        nodes
            .get("fake-node")
            .await
            .ok()
            .and_then(|n| n.status)
            .and_then(|s| s.conditions)
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-node-lease");
    eventually("lease", Duration::from_secs(10), || async {
        leases.get_opt("fake-node").await.ok().flatten().is_some()
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web", serde_json::json!({})))
        .await
        .unwrap();
    eventually("web Running", Duration::from_secs(10), || async {
        phase(&pods, "web").await.as_deref() == Some("Running")
    })
    .await;
    let calls = c.fake.calls();
    let first = |name: &str| {
        calls
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no {name} call"))
    };
    assert!(first("RunPodSandbox") < first("CreateContainer"));
    assert!(first("CreateContainer") < first("StartContainer"));
    let status = pods.get("web").await.unwrap().status.unwrap();
    assert!(status.pod_ip.is_some(), "the sandbox's IP is reported");
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));

    // The container exits: with restartPolicy Always it is restarted at
    // once (the first restart has no backoff) and the count goes up.
    let id = c.fake.containers_named("c").pop().unwrap();
    c.fake.exit_container(&id, 1);
    eventually("restartCount 1", Duration::from_secs(10), || async {
        pods.get("web")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.container_statuses)
            .is_some_and(|cs| cs[0].restart_count == 1)
    })
    .await;
    let web = pods.get("web").await.unwrap();
    let last = web.status.unwrap().container_statuses.unwrap()[0]
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(last.exit_code, 1);

    // Deleting the pod stops and removes everything, and the kubelet
    // confirms the deletion so the object goes.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("web gone", Duration::from_secs(10), || async {
        pods.get_opt("web").await.ok().flatten().is_none()
    })
    .await;
    assert_eq!(c.fake.counts(), (0, 0), "no sandbox or container is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failure_policy_and_pull_errors() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");

    // restartPolicy Never: a failing init container fails the pod, and the
    // app container never starts.
    c.fake.exit_on_start("init-fails", 2);
    let failing = pod(
        "init-fail",
        serde_json::json!({"spec": {"restartPolicy": "Never", "initContainers": [{"name": "init-fails", "image": "skiff.local/testhost:1.0"}]}}),
    );
    pods.create(&PostParams::default(), &failing).await.unwrap();
    eventually("init-fail Failed", Duration::from_secs(10), || async {
        phase(&pods, "init-fail").await.as_deref() == Some("Failed")
    })
    .await;
    assert!(
        c.fake.containers_named("c").is_empty(),
        "the app container never ran"
    );

    // A container that exits 0 under OnFailure completes the pod.
    c.fake.exit_on_start("done", 0);
    let job = pod(
        "job",
        serde_json::json!({"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "done", "image": "skiff.local/testhost:1.0"}]}}),
    );
    pods.create(&PostParams::default(), &job).await.unwrap();
    eventually("job Succeeded", Duration::from_secs(10), || async {
        phase(&pods, "job").await.as_deref() == Some("Succeeded")
    })
    .await;

    // An image that cannot be pulled: ErrImagePull, then ImagePullBackOff
    // while the next attempt waits; the pod stays Pending.
    c.fake.refuse_pull("registry.invalid/nope:1");
    let bad = pod(
        "bad-image",
        serde_json::json!({"spec": {"containers": [{"name": "c", "image": "registry.invalid/nope:1"}]}}),
    );
    pods.create(&PostParams::default(), &bad).await.unwrap();
    eventually(
        "ErrImagePull or ImagePullBackOff",
        Duration::from_secs(10),
        || async {
            pods.get("bad-image")
                .await
                .ok()
                .and_then(|p| p.status)
                .and_then(|s| s.container_statuses)
                .is_some_and(|cs| {
                    matches!(
                        cs[0]
                            .state
                            .as_ref()
                            .and_then(|s| s.waiting.as_ref())
                            .and_then(|w| w.reason.as_deref()),
                        Some("ErrImagePull") | Some("ImagePullBackOff")
                    )
                })
        },
    )
    .await;
    assert_eq!(
        phase(&pods, "bad-image").await.as_deref(),
        Some("Pending"),
        "{:?}",
        pods.get("bad-image").await.unwrap().status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_evicts_the_pod_over_its_request() {
    // The hollow node reports 8 GiB of 16 GiB available: a 10 GiB threshold
    // is crossed from the start.
    let c = cluster_with(|config| {
        config.eviction_hard =
            skiff_kubelet::eviction::parse_thresholds("memory.available<10Gi").unwrap();
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let critical = pod(
        "critical",
        serde_json::json!({"spec": {"priorityClassName": "system-node-critical", "priority": 2000001000}}),
    );
    pods.create(&PostParams::default(), &critical)
        .await
        .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("victim", serde_json::json!({})),
    )
    .await
    .unwrap();
    eventually("victim evicted", Duration::from_secs(30), || async {
        phase(&pods, "victim").await.as_deref() == Some("Failed")
    })
    .await;
    let status = pods.get("victim").await.unwrap().status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert!(
        status
            .message
            .unwrap()
            .starts_with("The node was low on resource: memory.")
    );
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
    );
    eventually(
        "victim's containers stopped",
        Duration::from_secs(10),
        || async {
            c.fake.containers_named("c").len() == 2
                && c.fake.calls().iter().any(|call| call == "StopContainer")
        },
    )
    .await;
    assert_ne!(
        phase(&pods, "critical").await.as_deref(),
        Some("Failed"),
        "critical pods are never evicted"
    );
}
