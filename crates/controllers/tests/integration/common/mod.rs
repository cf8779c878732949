//! What the workload controllers' integration tests share: a real Skiff API
//! server in-process, a controller manager running chosen controllers, and a
//! simulated node agent that does to pods what kubelets would.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// An API server on a free port and an admin client.
pub struct Cluster {
    server: Option<skiff_apiserver::Running>,
    pub kube: kube::Config,
    pub client: Client,
    pub kubeconfig: std::path::PathBuf,
    /// The cluster CA, as the root CA publisher must publish it.
    pub ca_pem: String,
    pub ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let server = skiff_apiserver::start(skiff_apiserver::Config {
            data_dir: dir.path().join("apiserver"),
            secure_port: 0,
            bind_address: "127.0.0.1".parse().unwrap(),
            ..Default::default()
        })
        .await
        .expect("the API server starts");
        let kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
        let kube = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, &server.ca_pem).unwrap();
        Cluster {
            client: Client::try_from(kube.clone()).unwrap(),
            kube,
            kubeconfig: server.admin_kubeconfig.clone(),
            ca_pem: server.ca_pem.clone(),
            ca_file,
            server: Some(server),
            _dir: dir,
        }
    }

    /// A controller manager running `controllers` (and the service account
    /// controller, which pods' admission needs), alone, without /healthz.
    pub fn config(&self, controllers: &[&str]) -> skiff_controllers::Config {
        let mut names: Vec<String> = controllers.iter().map(|c| c.to_string()).collect();
        names.push("serviceaccount-controller".into());
        skiff_controllers::Config {
            controllers: names,
            leader_election: None,
            root_ca_file: Some(self.ca_file.clone()),
            serving: None,
            ..skiff_controllers::Config::new(self.kube.clone())
        }
    }

    /// Creates namespace `name` and waits for its default service account.
    pub async fn namespace(&self, name: &str) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), name);
        eventually("the default service account", SOON, || async {
            sas.get_opt("default").await.unwrap()
        })
        .await;
    }

    /// Runs the real kubectl against this cluster: (succeeded, stdout and
    /// stderr).
    pub async fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .await
            .expect("kubectl runs (it is preinstalled at /usr/bin/kubectl on these machines)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

/// A controller manager running in this process.
pub struct Manager {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), skiff_controllers::Error>>,
}

impl Manager {
    pub fn start(config: skiff_controllers::Config) -> Manager {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(skiff_controllers::run(config, async {
            let _ = stopped.await;
        }));
        Manager {
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task)
            .await
            .unwrap()
            .expect("the controller manager stops cleanly");
    }

    /// Like a crash: nothing is released.
    pub fn kill(self) {
        self.task.abort();
    }
}

pub const SOON: Duration = Duration::from_secs(20);

/// Polls `probe` until it answers `Some`, failing after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How the simulated kubelets treat pods.
#[derive(Clone)]
pub struct AgentOptions {
    /// The nodes pods are bound to, round robin.
    pub nodes: Vec<String>,
    /// How long a running pod takes to turn ready.
    pub ready_after: Duration,
    /// Pods whose labels contain one of these never turn ready.
    pub never_ready: Vec<(String, String)>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            nodes: vec!["node-a".into(), "node-b".into(), "node-c".into()],
            ready_after: Duration::ZERO,
            never_ready: Vec::new(),
        }
    }
}

/// A simulated node agent: binds unscheduled pods to its nodes (the
/// scheduler's job), runs them (phase Running, an IP, ready containers and
/// the Ready condition, as kubelets report), and finishes the deletion of
/// terminating pods at once.
pub struct NodeAgent {
    task: JoinHandle<()>,
    pub options: Arc<Mutex<AgentOptions>>,
}

impl NodeAgent {
    pub fn start(client: &Client, options: AgentOptions) -> NodeAgent {
        let options = Arc::new(Mutex::new(options));
        let opts = options.clone();
        let client = client.clone();
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::all(client.clone());
            let mut events = watcher(pods, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Ok(Some(pod)) = events.try_next().await {
                let client = client.clone();
                let opts = opts.lock().unwrap().clone();
                let next = next.clone();
                tokio::spawn(async move { act(&client, pod, &opts, &next).await });
            }
        });
        NodeAgent { task, options }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn act(client: &Client, pod: Pod, opts: &AgentOptions, next: &AtomicUsize) {
    let ns = pod.namespace().unwrap();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    if pod.metadata.deletion_timestamp.is_some() {
        if node.is_some() {
            let _ = api
                .delete(
                    &name,
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..DeleteParams::default()
                    },
                )
                .await;
        }
        return;
    }
    let Some(node) = node else {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let target = &opts.nodes[n % opts.nodes.len()];
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": target},
        });
        let _ = api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await;
        return;
    };
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let never = opts
        .never_ready
        .iter()
        .any(|(k, v)| labels.get(k) == Some(v));
    if phase != "Running" {
        let ip = pod_ip(&pod);
        set_status(&api, &pod, &node, &ip, false).await;
        if never || opts.ready_after.is_zero() {
            if !never {
                set_status(&api, &pod, &node, &ip, true).await;
            }
            return;
        }
        tokio::time::sleep(opts.ready_after).await;
        set_status(&api, &pod, &node, &ip, true).await;
    }
}

/// A stable IP for the pod, from its UID.
pub fn pod_ip(pod: &Pod) -> String {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let h = uid
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    format!("10.244.{}.{}", h % 250, 2 + (h / 250) % 250)
}

/// Sets the pod's status as a kubelet reports a running pod.
pub async fn set_status(api: &Api<Pod>, pod: &Pod, node: &str, ip: &str, ready: bool) {
    let now = Timestamp::now().to_string();
    let containers: Vec<serde_json::Value> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            json!({"name": c, "ready": ready, "restartCount": 0, "image": "busybox", "imageID": "",
                   "started": true, "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {
        "phase": "Running",
        "hostIP": "192.168.0.1",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
            {"type": "Ready", "status": status, "lastTransitionTime": now},
        ],
        "containerStatuses": containers,
    }});
    let _ = node;
    let _ = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await;
}

/// Pods of `namespace` matching `selector` that are not being deleted.
pub async fn live_pods(client: &Client, namespace: &str, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.list(&kube::api::ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
