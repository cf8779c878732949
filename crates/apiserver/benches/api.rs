//! API server benchmark: the real `skiff-apiserver` binary, on the embedded
//! store and on etcd, driven by kube-rs over HTTPS — beside raw store creates
//! on the same backend measured in the same run (the ceiling).
//!
//! `cargo bench -p skiff-apiserver --bench api` prints, per backend:
//! - create / get / update / list throughput and p50/p99 latency at
//!   concurrency 1, 16 and 128, with raw store creates at the same
//!   concurrency and the ratio of API creates to them (goal ≥ 0.70);
//! - watch delivery: events/s one watcher receives while writes stream in;
//! - mutating p99 under a paced load of 500 creates/s (goal < 50 ms);
//! - watch fan-out: 1,000 watchers on configmaps, one write → time until every
//!   watcher has it, p50/p99 over several writes (goal p99 < 100 ms);
//! - the server's RSS idle, and on a fresh server and store, idle and with
//!   10,000 pods stored (goal idle < 50 MB).
//!
//! Environment: `SKIFF_BENCH_SECONDS` (one phase, default 2),
//! `SKIFF_BENCH_WATCHERS` (default 1000; lowered to fit the open-files limit),
//! `SKIFF_BENCH_PODS` (default 10000), `SKIFF_BENCH_BACKENDS`
//! (`embedded,etcd`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::json;
use skiff_store::Store;

const CONCURRENCY: [usize; 3] = [1, 16, 128];

struct Phase {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `op(task, i)` from `concurrency` tasks for `seconds`, timing each.
async fn phase<F, Fut>(concurrency: usize, seconds: f64, op: F) -> Phase
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let began = Instant::now();
                op(t, i).await;
                latencies.push(began.elapsed());
                i += 1;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort();
    Phase {
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
    }
}

/// The API server as a child process.
struct Server {
    child: Child,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(etcd: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff-apiserver"));
        cmd.args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--secure-port",
            &port.to_string(),
            "--bind-address",
            "127.0.0.1",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        if let Some(endpoint) = etcd {
            cmd.args(["--etcd-servers", endpoint]);
        }
        let child = cmd.spawn().expect("starting skiff-apiserver");
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let client = loop {
            if let Ok(k) = Kubeconfig::read_from(&kubeconfig)
                && let Ok(config) =
                    kube::Config::from_custom_kubeconfig(k, &KubeConfigOptions::default()).await
            {
                let client = Client::try_from(config).unwrap();
                if client.apiserver_version().await.is_ok() {
                    break client;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Let bootstrap finish.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Server {
            child,
            client,
            _dir: dir,
        }
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": {"payload": "x".repeat(1024)},
    }))
    .unwrap()
}

/// Open-files limit, to size the fan-out.
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

async fn bench_backend(name: &str, etcd: Option<&skiff_store::testing::EtcdServer>, seconds: f64) {
    println!("\n== {name} ==");
    let server = Server::start(etcd.map(|e| e.endpoint()).as_deref()).await;
    let idle = server.rss_mb();
    let client = server.client.clone();

    // The ceiling: raw store creates of 1 KiB values, same backend, same disk.
    let raw_dir = tempfile::tempdir().unwrap();
    let raw: Arc<dyn Store> = match etcd {
        Some(e) => Arc::new(e.connect().await),
        None => Arc::new(
            skiff_store::Embedded::open(skiff_store::EmbeddedOptions {
                path: raw_dir.path().join("raw.redb"),
                ..Default::default()
            })
            .unwrap(),
        ),
    };

    println!(
        "{:<8} {:>5} {:>10} {:>9} {:>9}   {:>14} {:>9}",
        "op", "conc", "ops/s", "p50 ms", "p99 ms", "raw store/s", "api/raw"
    );
    for (round, &c) in CONCURRENCY.iter().enumerate() {
        let ns = format!("bench-{round}");
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        let raw_store = raw.clone();
        let raw_phase = phase(c, seconds, move |t, i| {
            let raw_store = raw_store.clone();
            async move {
                raw_store
                    .create(
                        &format!("/raw/{round}/{t}/{i}"),
                        Bytes::from(vec![b'x'; 1024]),
                    )
                    .await
                    .unwrap();
            }
        })
        .await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        // How many objects each task created: later phases touch only those.
        let created: Arc<Vec<AtomicUsize>> =
            Arc::new((0..c).map(|_| AtomicUsize::new(0)).collect());
        let (api, made) = (cms.clone(), created.clone());
        let create = phase(c, seconds, move |t, i| {
            let (api, made) = (api.clone(), made.clone());
            async move {
                api.create(&PostParams::default(), &configmap(&format!("cm-{t}-{i}")))
                    .await
                    .unwrap();
                made[t].fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
        let per_task = created
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .min()
            .unwrap_or(1);
        let total: usize = created.iter().map(|n| n.load(Ordering::Relaxed)).sum();
        let api = cms.clone();
        let get = phase(c, seconds, move |t, i| {
            let api = api.clone();
            async move {
                api.get(&format!("cm-{t}-{}", i % per_task.max(1)))
                    .await
                    .unwrap();
            }
        })
        .await;
        let api = cms.clone();
        let update = phase(c, seconds, move |t, i| {
            let api = api.clone();
            async move {
                let name = format!("cm-{t}-{}", i % per_task.max(1));
                let mut cm = api.get(&name).await.unwrap();
                cm.data
                    .get_or_insert_default()
                    .insert("n".into(), i.to_string());
                api.replace(&name, &PostParams::default(), &cm)
                    .await
                    .unwrap();
            }
        })
        .await;
        let api = cms.clone();
        let list = phase(c, seconds.min(1.0), move |_, _| {
            let api = api.clone();
            async move {
                api.list(&ListParams::default()).await.unwrap();
            }
        })
        .await;
        let ratio = create.per_second / raw_phase.per_second;
        let row = |op: &str, p: &Phase, extra: String| {
            println!(
                "{op:<8} {c:>5} {:>10.0} {:>9.2} {:>9.2}   {extra}",
                p.per_second,
                ms(p.p50),
                ms(p.p99)
            );
        };
        row(
            "create",
            &create,
            format!("{:>14.0} {:>9.2}", raw_phase.per_second, ratio),
        );
        row("get", &get, String::new());
        row("update", &update, "(get + replace)".into());
        row("list", &list, format!("({total} objects)"));
    }

    // Watch delivery: one watcher, writes streaming in.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let events = 3000;
    let mut watch = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let writer_api = cms.clone();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        futures::stream::iter(0..events)
            .for_each_concurrent(32, |i| {
                let api = writer_api.clone();
                async move {
                    api.create(&PostParams::default(), &configmap(&format!("w-{i}")))
                        .await
                        .unwrap();
                }
            })
            .await;
    });
    let mut seen = 0;
    while seen < events {
        if let Some(WatchEvent::Added(_)) = watch.try_next().await.unwrap() {
            seen += 1;
        }
    }
    writer.await.unwrap();
    println!(
        "watch delivery: {:.0} events/s to one watcher ({events} creates at concurrency 32)",
        events as f64 / start.elapsed().as_secs_f64()
    );

    // Mutating p99 under 500 creates/s.
    let paced: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut ticker = tokio::time::interval(Duration::from_millis(2));
    let mut handles = Vec::new();
    let paced_seconds = 4;
    for i in 0..(500 * paced_seconds) {
        ticker.tick().await;
        let api = paced.clone();
        handles.push(tokio::spawn(async move {
            let began = Instant::now();
            api.create(&PostParams::default(), &configmap(&format!("paced-{i}")))
                .await
                .unwrap();
            began.elapsed()
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.push(h.await.unwrap());
    }
    latencies.sort();
    println!(
        "paced 500 creates/s for {paced_seconds} s: p50 {:.2} ms, p99 {:.2} ms (goal p99 < 50 ms; upstream SLO 1 s)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );

    // Fan-out.
    let wanted = env_num("SKIFF_BENCH_WATCHERS", 1000.0) as usize;
    let watchers = wanted
        .min(open_files_limit().saturating_sub(200) / 2)
        .max(1);
    let fan: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    let rv = fan
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let ready = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::new();
    for _ in 0..watchers {
        let api = fan.clone();
        let rv = rv.clone();
        let tx = tx.clone();
        let ready = ready.clone();
        streams.push(tokio::spawn(async move {
            let mut watch = api
                .watch(&WatchParams::default(), &rv)
                .await
                .unwrap()
                .boxed();
            ready.fetch_add(1, Ordering::Relaxed);
            while let Ok(Some(event)) = watch.try_next().await {
                if let WatchEvent::Added(cm) = event {
                    let n: usize = cm
                        .metadata
                        .name
                        .unwrap()
                        .trim_start_matches("fan-")
                        .parse()
                        .unwrap();
                    let _ = tx.send((n, Instant::now()));
                }
            }
        }));
    }
    while ready.load(Ordering::Relaxed) < watchers {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut spreads = Vec::new();
    for n in 0..10 {
        let sent = Instant::now();
        fan.create(&PostParams::default(), &configmap(&format!("fan-{n}")))
            .await
            .unwrap();
        let mut got = 0;
        let mut last = sent;
        while got < watchers {
            let (m, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .unwrap()
                .unwrap();
            if m == n {
                got += 1;
                last = last.max(at);
            }
        }
        spreads.push(last - sent);
    }
    spreads.sort();
    println!(
        "fan-out to {watchers} watchers: write → last watcher p50 {:.1} ms, p99 {:.1} ms (10 writes; goal p99 < 100 ms)",
        ms(percentile(&spreads, 0.5)),
        ms(percentile(&spreads, 0.99))
    );
    for s in streams {
        s.abort();
    }

    println!("RSS idle: {idle:.1} MB (goal < 50 MB)");
}

/// Memory with pods stored, on a fresh server and store: the server's RSS
/// idle, then with `SKIFF_BENCH_PODS` pods.
async fn memory(etcd: Option<&skiff_store::testing::EtcdServer>) {
    let server = Server::start(etcd.map(|e| e.endpoint()).as_deref()).await;
    let idle = server.rss_mb();
    let pods_wanted = env_num("SKIFF_BENCH_PODS", 10000.0) as usize;
    let pods: Api<Pod> = Api::namespaced(server.client.clone(), "default");
    let start = Instant::now();
    futures::stream::iter(0..pods_wanted)
        .for_each_concurrent(64, |i| {
            let api = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
                    "spec": {"containers": [{"name": "c", "image": "skiff/testhost:1", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
                }))
                .unwrap();
                api.create(&PostParams::default(), &pod).await.unwrap();
            }
        })
        .await;
    let fill = start.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "RSS of a fresh server: idle {idle:.1} MB, with {pods_wanted} pods {:.1} MB ({pods_wanted} pod creates at concurrency 64 took {:.1} s)",
        server.rss_mb(),
        fill.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let seconds = env_num("SKIFF_BENCH_SECONDS", 2.0);
    let backends = std::env::var("SKIFF_BENCH_BACKENDS").unwrap_or_else(|_| "embedded,etcd".into());
    for backend in backends.split(',') {
        match backend {
            "embedded" => {
                bench_backend("embedded store", None, seconds).await;
                memory(None).await;
            }
            "etcd" => {
                let etcd = skiff_store::testing::EtcdServer::start();
                bench_backend("etcd", Some(&etcd), seconds).await;
                let fresh = skiff_store::testing::EtcdServer::start();
                memory(Some(&fresh)).await;
            }
            other => eprintln!("unknown backend {other:?}"),
        }
    }
}
