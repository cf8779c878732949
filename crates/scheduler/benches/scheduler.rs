//! Scheduler throughput, modelled on upstream's scheduler_perf, against the
//! real API server in this process and the real `skiff-scheduler` binary in
//! another (so its RSS is its own). For each workload: start an API server
//! on a fresh embedded store, create the nodes (Ready, 4 CPUs, 32Gi, 110
//! pods, as scheduler_perf's node template), schedule the workload's
//! initial pods, then create the measured pods, start the scheduler and
//! time from its first action (a binding, or for preemption an eviction) to
//! its last binding, as seen through a watch. The
//! API server's own bind ceiling (raw `pods/binding` POSTs per second, 64
//! in flight) is measured in the same run and printed beside it.
//!
//! `SKIFF_BENCH_NODES` (1000), `SKIFF_BENCH_PODS` (3000) and
//! `SKIFF_BENCH_WORKLOADS` (all: basic, node-affinity, anti-affinity,
//! affinity, spread, preemption) choose what runs; upstream's gates are for
//! 5000 nodes (SchedulingBasic: 5000 nodes, 10000 pods).

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const CONCURRENCY: usize = 64;

struct Workload {
    name: &'static str,
    /// Upstream's gate at 5000 nodes (pods/s), if it publishes one.
    gate: Option<&'static str>,
    nodes: usize,
    init_pods: usize,
    pods: usize,
    node: fn(usize) -> Value,
    init_pod: fn(usize) -> Value,
    pod: fn(usize) -> Value,
}

fn node_template(i: usize) -> Value {
    json!({
        "metadata": {"name": format!("node-{i}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i}"),
            "topology.kubernetes.io/zone": format!("zone{}", i % 3 + 1),
        }},
        "status": {
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

fn pod_template(name: String, cpu: &str, extra: Value) -> Value {
    let mut p = json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": "500Mi"}}}]},
    });
    merge(&mut p, extra);
    p
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

fn basic_pod(i: usize) -> Value {
    pod_template(format!("pod-{i}"), "100m", json!({}))
}

fn init_basic_pod(i: usize) -> Value {
    pod_template(format!("init-{i}"), "100m", json!({}))
}

fn workloads(nodes: usize, pods: usize) -> Vec<Workload> {
    vec![
        Workload {
            name: "basic",
            gate: Some("680-810"),
            nodes,
            init_pods: 0,
            pods,
            node: node_template,
            init_pod: init_basic_pod,
            pod: basic_pod,
        },
        Workload {
            name: "node-affinity",
            gate: Some("220"),
            nodes,
            init_pods: 0,
            pods,
            node: node_template,
            init_pod: init_basic_pod,
            pod: |i| {
                pod_template(
                    format!("pod-{i}"),
                    "100m",
                    json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone",
                            "operator": "In", "values": ["zone1", "zone2"]}]}]}}}}}),
                )
            },
        },
        Workload {
            name: "anti-affinity",
            gate: Some("60"),
            nodes,
            init_pods: (nodes / 4).min(pods),
            pods: (nodes / 2).min(pods),
            node: node_template,
            init_pod: |i| {
                pod_template(
                    format!("init-{i}"),
                    "100m",
                    json!({"metadata": {"labels": {"color": "green"}}, "spec": {"affinity": {"podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"color": "green"}},
                            "topologyKey": "kubernetes.io/hostname"}]}}}}),
                )
            },
            pod: |i| {
                pod_template(
                    format!("pod-{i}"),
                    "100m",
                    json!({"metadata": {"labels": {"color": "green"}}, "spec": {"affinity": {"podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"color": "green"}},
                            "topologyKey": "kubernetes.io/hostname"}]}}}}),
                )
            },
        },
        Workload {
            name: "affinity",
            gate: Some("35"),
            nodes,
            init_pods: (nodes / 4).min(pods),
            pods,
            node: node_template,
            init_pod: |i| {
                pod_template(
                    format!("init-{i}"),
                    "100m",
                    json!({"metadata": {"labels": {"color": "blue"}}}),
                )
            },
            pod: |i| {
                pod_template(
                    format!("pod-{i}"),
                    "100m",
                    json!({"metadata": {"labels": {"color": "blue"}}, "spec": {"affinity": {"podAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"color": "blue"}},
                            "topologyKey": "topology.kubernetes.io/zone"}]}}}}),
                )
            },
        },
        Workload {
            name: "spread",
            gate: None,
            nodes,
            init_pods: (nodes / 4).min(pods),
            pods,
            node: node_template,
            init_pod: |i| {
                pod_template(
                    format!("init-{i}"),
                    "100m",
                    json!({"metadata": {"labels": {"app": "spread"}}}),
                )
            },
            pod: |i| {
                pod_template(
                    format!("pod-{i}"),
                    "100m",
                    json!({"metadata": {"labels": {"app": "spread"}}, "spec": {"topologySpreadConstraints": [
                        {"maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                         "labelSelector": {"matchLabels": {"app": "spread"}}}]}}),
                )
            },
        },
        Workload {
            name: "preemption",
            gate: Some("570"),
            nodes: (nodes / 2).max(1),
            init_pods: (nodes / 2).max(1) * 4,
            pods: (nodes / 2).max(1).min(pods),
            node: node_template,
            init_pod: |i| {
                pod_template(
                    format!("init-{i}"),
                    "900m",
                    json!({"spec": {"priorityClassName": "low"}}),
                )
            },
            pod: |i| {
                pod_template(
                    format!("pod-{i}"),
                    "3",
                    json!({"spec": {"priorityClassName": "high"}}),
                )
            },
        },
    ]
}

struct Server {
    client: Client,
    kubeconfig: std::path::PathBuf,
    running: Option<skiff_apiserver::Running>,
    _dir: tempfile::TempDir,
}

async fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("a temp dir");
    let running = skiff_apiserver::start(skiff_apiserver::Config {
        data_dir: dir.path().to_owned(),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    })
    .await
    .expect("the API server starts");
    let kubeconfig = running.admin_kubeconfig.clone();
    let kc = Kubeconfig::read_from(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Server {
        client: Client::try_from(config).unwrap(),
        kubeconfig,
        running: Some(running),
        _dir: dir,
    }
}

async fn create_nodes(client: &Client, n: usize, template: fn(usize) -> Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    stream::iter(0..n)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let node: Node = serde_json::from_value(template(i)).unwrap();
                let name = node.metadata.name.clone().unwrap();
                nodes.create(&PostParams::default(), &node).await.unwrap();
                // Lift the not-ready taint the API server adds at creation,
                // as the node lifecycle controller does for a Ready node.
                nodes
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"taints": null}})),
                    )
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
}

async fn create_pods(client: &Client, n: usize, template: fn(usize) -> Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    stream::iter(0..n)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(template(i)).unwrap();
                pods.create(&PostParams::default(), &pod).await.unwrap();
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
}

/// Raw binding POSTs per second on `n` fresh pods no scheduler handles.
async fn bind_ceiling(client: &Client, nodes: usize, n: usize) -> f64 {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    stream::iter(0..n)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(pod_template(
                    format!("ceiling-{i}"),
                    "0",
                    json!({"spec": {"schedulerName": "nobody"}}),
                ))
                .unwrap();
                pods.create(&PostParams::default(), &pod).await.unwrap();
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let started = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let name = format!("ceiling-{i}");
                let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"kind": "Node", "name": format!("node-{}", i % nodes)}});
                let _: Value = pods
                    .create_subresource("binding", &name, &PostParams::default(), &binding)
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    stream::iter(0..n)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let _ = pods
                    .delete(
                        &format!("ceiling-{i}"),
                        &DeleteParams::default().grace_period(0),
                    )
                    .await;
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    rate
}

/// Bindings seen through a watch: how many, when the scheduler was first
/// seen acting (a binding, a pod marked unschedulable or nominated, a
/// victim evicted) and when the last binding was seen. Like a kubelet, it
/// finishes the deletion of pods being deleted.
struct Observer {
    bound: Arc<AtomicUsize>,
    times: Arc<Mutex<(Option<Instant>, Option<Instant>)>>,
    /// Measured pods seen nominated (preemption), and when the last was.
    nominated: Arc<Mutex<(HashSet<String>, Option<Instant>)>>,
    task: tokio::task::JoinHandle<()>,
}

fn observe(client: &Client, prefix: &'static str) -> Observer {
    let bound = Arc::new(AtomicUsize::new(0));
    let times = Arc::new(Mutex::new((None, None)));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nominated = Arc::new(Mutex::new((HashSet::new(), None)));
    let (b, t, nom) = (bound.clone(), times.clone(), nominated.clone());
    let task = tokio::spawn(async move {
        let mut seen: HashSet<String> = HashSet::new();
        let mut deleting: HashSet<String> = HashSet::new();
        let stream = watcher::watcher(pods.clone(), watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        // A watch that breaks (a timeout, an expired resourceVersion) is
        // resumed by the watcher; its errors are skipped.
        while let Some(event) = stream.next().await {
            let list = match event {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => vec![p],
                _ => continue,
            };
            for p in list {
                let name = p.metadata.name.clone().unwrap_or_default();
                let measured = name.starts_with(prefix);
                let touched = p.status.as_ref().is_some_and(|s| {
                    s.nominated_node_name.is_some()
                        || s.conditions
                            .iter()
                            .flatten()
                            .any(|c| c.type_ == "PodScheduled")
                });
                if p.metadata.deletion_timestamp.is_some() || (measured && touched) {
                    t.lock().await.0.get_or_insert_with(Instant::now);
                }
                let is_nominated = p
                    .status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                if measured && is_nominated {
                    let mut nom = nom.lock().await;
                    if nom.0.insert(name.clone()) {
                        nom.1 = Some(Instant::now());
                    }
                }
                if p.metadata.deletion_timestamp.is_some() && deleting.insert(name.clone()) {
                    let pods = pods.clone();
                    tokio::spawn(async move {
                        let _ = pods
                            .delete(&name, &DeleteParams::default().grace_period(0))
                            .await;
                    });
                    continue;
                }
                let assigned = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                if assigned && name.starts_with(prefix) && seen.insert(name) {
                    b.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    let mut times = t.lock().await;
                    times.0.get_or_insert(now);
                    times.1 = Some(now);
                }
            }
        }
    });
    Observer {
        bound,
        times,
        nominated,
        task,
    }
}

fn spawn_scheduler(kubeconfig: &std::path::Path) -> Child {
    // SKIFF_BENCH_WRAPPER (e.g. "valgrind --tool=massif") runs the
    // scheduler under a profiler.
    let wrapper = std::env::var("SKIFF_BENCH_WRAPPER").unwrap_or_default();
    let mut words: Vec<String> = wrapper.split_whitespace().map(String::from).collect();
    words.push(env!("CARGO_BIN_EXE_skiff-scheduler").into());
    Command::new(&words[0])
        .args(&words[1..])
        .args(["--leader-elect=false", "--secure-port", "0", "--kubeconfig"])
        .arg(kubeconfig)
        .env(
            "RUST_LOG",
            std::env::var("SKIFF_BENCH_SCHEDULER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(match std::env::var("SKIFF_BENCH_SCHEDULER_LOG_FILE") {
            Ok(path) => std::fs::File::create(path).map_or(Stdio::null(), Stdio::from),
            Err(_) => Stdio::null(),
        })
        .spawn()
        .expect("starting skiff-scheduler")
}

/// Stops the scheduler with SIGTERM (so a profiler wrapping it can write
/// its report), and SIGKILL if it does not exit within ten seconds.
fn stop_scheduler(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// VmHWM (peak RSS) of `pid` in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn wait_bound(o: &Observer, n: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while o.bound.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

struct Outcome {
    name: &'static str,
    nodes: usize,
    pods: usize,
    rate: Option<f64>,
    rss: Option<f64>,
    gate: Option<&'static str>,
}

async fn run(w: &Workload, ceiling: &mut Option<f64>) -> Outcome {
    let mut server = start_server().await;
    let client = server.client.clone();
    if w.name == "preemption" {
        let classes: Api<PriorityClass> = Api::all(client.clone());
        for (name, value) in [("low", 10), ("high", 1000)] {
            let pc: PriorityClass =
                serde_json::from_value(json!({"metadata": {"name": name}, "value": value}))
                    .unwrap();
            classes.create(&PostParams::default(), &pc).await.unwrap();
        }
    }
    create_nodes(&client, w.nodes, w.node).await;
    if ceiling.is_none() {
        *ceiling = Some(bind_ceiling(&client, w.nodes, 2000.min(w.pods.max(500))).await);
    }
    let limit = Duration::from_secs(600);
    if w.init_pods > 0 {
        let init = observe(&client, "init-");
        let sched = spawn_scheduler(&server.kubeconfig);
        create_pods(&client, w.init_pods, w.init_pod).await;
        let ok = wait_bound(&init, w.init_pods, limit).await;
        tokio::task::block_in_place(|| stop_scheduler(sched));
        init.task.abort();
        if !ok {
            eprintln!("{}: the initial pods were not all scheduled", w.name);
        }
    }
    create_pods(&client, w.pods, w.pod).await;
    let measured = observe(&client, "pod-");
    let sched = spawn_scheduler(&server.kubeconfig);
    let ok = wait_bound(&measured, w.pods, limit).await;
    let rss = peak_rss_mib(sched.id());
    tokio::task::block_in_place(|| stop_scheduler(sched));
    measured.task.abort();
    let (first, last) = *measured.times.lock().await;
    {
        let nom = measured.nominated.lock().await;
        if let (Some(f), Some(n), Some(l)) = (first, nom.1, last) {
            println!(
                "    {}: {} pods nominated within {:.2}s of the first action; last binding after {:.2}s",
                w.name,
                nom.0.len(),
                (n - f).as_secs_f64(),
                (l - f).as_secs_f64()
            );
        }
    }
    let rate = match (ok, first, last) {
        (true, Some(f), Some(l)) if l > f => Some(w.pods as f64 / (l - f).as_secs_f64()),
        _ => {
            eprintln!(
                "{}: only {} of {} pods were bound",
                w.name,
                measured.bound.load(Ordering::Relaxed),
                w.pods
            );
            None
        }
    };
    if let Some(r) = server.running.take() {
        r.stop().await;
    }
    Outcome {
        name: w.name,
        nodes: w.nodes,
        pods: w.pods,
        rate,
        rss,
        gate: w.gate,
    }
}

/// A client that writes nothing (the in-memory algorithm run).
struct NoClient;

#[async_trait::async_trait]
impl skiff_scheduler::client::ClusterClient for NoClient {
    async fn bind(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<(), skiff_scheduler::client::ClientError> {
        Ok(())
    }
    async fn patch_pod_status(
        &self,
        _: &str,
        _: &str,
        _: &Value,
    ) -> Result<(), skiff_scheduler::client::ClientError> {
        Ok(())
    }
    async fn delete_pod(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<(), skiff_scheduler::client::ClientError> {
        Ok(())
    }
    async fn create_event(
        &self,
        _: &k8s_openapi::api::core::v1::Event,
    ) -> Result<(), skiff_scheduler::client::ClientError> {
        Ok(())
    }
    async fn patch_event(
        &self,
        _: &str,
        _: &str,
        _: &Value,
    ) -> Result<(), skiff_scheduler::client::ClientError> {
        Ok(())
    }
    async fn patch_pv(
        &self,
        _: &str,
        _: &Value,
    ) -> Result<(), skiff_scheduler::client::ClientError> {
        Ok(())
    }
    async fn patch_pvc(
        &self,
        _: &str,
        _: &str,
        _: &Value,
    ) -> Result<(), skiff_scheduler::client::ClientError> {
        Ok(())
    }
}

/// Scheduling cycles per second of the default profile on an in-memory
/// cache (no API server): the algorithm's own ceiling.
fn algorithm_rate(w: &Workload) -> f64 {
    use skiff_scheduler::cache::Cache;
    use skiff_scheduler::framework::{CycleState, Handle};
    use skiff_scheduler::nodeinfo::PodInfo;
    use skiff_scheduler::scheduler::{LoopState, schedule_pod};
    let handle = Arc::new(Handle {
        client: Arc::new(NoClient),
        listers: Default::default(),
        nominator: Default::default(),
        parallelism: skiff_scheduler::parallel::default_threads(),
        recorder: None,
        api_slots: Arc::new(tokio::sync::Semaphore::new(
            skiff_scheduler::framework::API_CONCURRENCY,
        )),
    });
    let fw = skiff_scheduler::config::build_framework(&Default::default(), None, &handle).unwrap();
    let mut cache = Cache::new();
    for i in 0..w.nodes {
        let node: Node = serde_json::from_value((w.node)(i)).unwrap();
        cache.set_node(Arc::new(node));
    }
    let mut ls = LoopState::default();
    let mut place = |template: fn(usize) -> Value, n: usize, prefix: &str| -> Duration {
        let started = Instant::now();
        for i in 0..n {
            let mut v = template(i);
            v["metadata"]["uid"] = json!(format!("{prefix}{i}"));
            // What the Priority admission plugin would fill in.
            match v["spec"]["priorityClassName"].as_str() {
                Some("low") => v["spec"]["priority"] = json!(10),
                Some("high") => v["spec"]["priority"] = json!(1000),
                _ => {}
            }
            let pod = Arc::new(PodInfo::new(Arc::new(serde_json::from_value(v).unwrap())));
            cache.update_snapshot(&mut ls.snapshot);
            let mut state = CycleState::default();
            match schedule_pod(&fw, &mut state, &pod, &mut ls) {
                Ok(r) => {
                    let mut placed: Pod = (*pod.pod).clone();
                    placed.spec.as_mut().unwrap().node_name = Some(r.node.clone());
                    cache.assume_pod(Arc::new(PodInfo::new(Arc::new(placed))), &r.node);
                }
                // Preemption: the PostFilter's dry run and choice (the
                // evictions themselves go to a client that writes nothing).
                Err(skiff_scheduler::scheduler::ScheduleError::Fit(fit)) => {
                    let (result, _) =
                        tokio::runtime::Handle::current().block_on(fw.post_filter[0].post_filter(
                            &fw,
                            &state,
                            &pod,
                            &ls.snapshot,
                            &fit.diagnosis.node_statuses,
                        ));
                    if let Some(n) = result.and_then(|r| r.nominated_node_name) {
                        handle.nominator.add(&pod, Some(&n));
                    }
                }
                Err(_) => {}
            }
        }
        started.elapsed()
    };
    place(w.init_pod, w.init_pods, "init-");
    let took = place(w.pod, w.pods, "pod-");
    w.pods as f64 / took.as_secs_f64()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let nodes = env_usize("SKIFF_BENCH_NODES", 1000);
    let pods = env_usize("SKIFF_BENCH_PODS", 3000);
    let wanted: Vec<String> = std::env::var("SKIFF_BENCH_WORKLOADS")
        .unwrap_or_else(|_| "basic,node-affinity,anti-affinity,affinity,spread,preemption".into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    println!(
        "scheduler benchmark: {nodes} nodes, {pods} pods (SKIFF_BENCH_NODES / SKIFF_BENCH_PODS), workloads {}",
        wanted.join(",")
    );
    println!(
        "upstream's gates are for 5000 nodes; the API server runs in this process, the scheduler in its own"
    );
    let mut ceiling = None;
    let mut outcomes = Vec::new();
    let selected: Vec<Workload> = workloads(nodes, pods)
        .into_iter()
        .filter(|w| wanted.iter().any(|n| n == w.name))
        .collect();
    // The algorithm alone first, before any API server runs in this process.
    let algorithms: Vec<Option<f64>> = selected
        .iter()
        .map(|w| Some(tokio::task::block_in_place(|| algorithm_rate(w))))
        .collect();
    for (w, algorithm) in selected.iter().zip(algorithms) {
        if std::env::var("SKIFF_BENCH_ALGORITHM_ONLY").is_ok() {
            println!(
                "  {:<14} algorithm alone: {:.0} cycles/s",
                w.name,
                algorithm.unwrap_or(0.0)
            );
            continue;
        }
        let o = run(w, &mut ceiling).await;
        println!(
            "  {:<14} {:>5} nodes {:>6} pods  {:>8} pods/s   (algorithm alone: {} cycles/s)",
            o.name,
            o.nodes,
            o.pods,
            o.rate.map_or("failed".into(), |r| format!("{r:.0}")),
            algorithm.map_or("n/a".into(), |a| format!("{a:.0}")),
        );
        outcomes.push((o, algorithm));
    }
    let ceiling = ceiling.unwrap_or(0.0);
    println!();
    println!(
        "| workload | nodes | pods | skiff pods/s | upstream gate pods/s (5k nodes) | API bind ceiling binds/s | algorithm alone cycles/s | scheduler peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (o, algorithm) in &outcomes {
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            o.name,
            o.nodes,
            o.pods,
            o.rate.map_or("failed".into(), |r| format!("{r:.0}")),
            o.gate.unwrap_or("n/a"),
            ceiling,
            algorithm.map_or("n/a".into(), |a| format!("{a:.0}")),
            o.rss.map_or("?".into(), |r| format!("{r:.0} MiB")),
        );
    }
}
