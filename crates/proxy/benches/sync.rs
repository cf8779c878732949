//! skiff-proxy's sync costs with 1,000 Services and 10,000 endpoints, into
//! a network namespace this benchmark makes (never the host's tables):
//! a full sync, a one-endpoint change (partial sync), and network
//! programming latency (EndpointSlice write in the API server to rules
//! applied) p50/p99. Anchors, measured in the same run: rendering alone and
//! `iptables-restore` of the same batch alone.
//!
//! Run: `cargo bench -p skiff-proxy --bench sync` (as root; needs `ip`,
//! `iptables-restore`, `conntrack`).

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use skiff_proxy::iptables::{ExecIptables, Iptables};
use skiff_proxy::render::{RenderInput, ServiceTable, render};
use skiff_proxy::{NodePortAddresses, Proxier, ProxierConfig, RenderSettings, SyncReport};

const SERVICES: usize = 1000;
const ENDPOINTS_PER_SERVICE: usize = 10;
const ROUNDS: usize = 9;

fn service(i: usize) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
        "spec": {"clusterIP": format!("10.96.{}.{}", 10 + i / 250, 1 + i % 250),
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
    .unwrap()
}

fn slice(i: usize, generation: usize) -> EndpointSlice {
    let endpoints: Vec<_> = (0..ENDPOINTS_PER_SERVICE)
        .map(|e| {
            let n = i * ENDPOINTS_PER_SERVICE + e + generation * 7;
            json!({"addresses": [format!("10.244.{}.{}", n / 250 % 250, 1 + n % 250)],
                   "conditions": {"ready": true}, "nodeName": format!("node-{}", e % 5)})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}-abcde"),
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")},
                     "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": k8s_openapi::jiff::Timestamp::now().to_string()}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

fn settings() -> RenderSettings {
    RenderSettings {
        cluster_cidr: Some("10.244.0.0/16".into()),
        ..RenderSettings::default()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "`ip netns add` failed: run as root with iproute2 installed"
        );
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn proxier(netns: &str) -> Proxier {
    Proxier::new(
        ProxierConfig {
            hostname: "node-1".into(),
            settings: settings(),
            node_port_addresses: NodePortAddresses::All,
            tool_prefix: vec!["ip".into(), "netns".into(), "exec".into(), netns.into()],
        },
        Arc::new(ExecIptables::in_netns(netns)),
        Arc::new(skiff_proxy::conntrack::ExecConntrack::new(Some(netns))),
        Arc::new(skiff_proxy::metrics::Metrics::new()),
    )
}

/// Sync costs, without an API server.
fn sync_costs() {
    let ns = Netns::new(format!("skiff-bench-{}", std::process::id()));
    let services: Vec<Service> = (0..SERVICES).map(service).collect();
    let slices: Vec<EndpointSlice> = (0..SERVICES).map(|i| slice(i, 0)).collect();

    // Anchor 1: rendering alone.
    let mut table = ServiceTable::new();
    for (svc, sl) in services.iter().zip(&slices) {
        let eps = skiff_proxy::model::slice_endpoints([sl], "node-1");
        for p in skiff_proxy::model::service_ports(svc) {
            let e = eps
                .get(&(p.name.port.clone(), p.protocol))
                .cloned()
                .unwrap_or_default();
            table.insert(p.name.clone(), (p, e));
        }
    }
    let empty = BTreeSet::new();
    let mut render_times = Vec::new();
    let mut text = String::new();
    let mut rules = (0, 0);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let out = render(
            &settings(),
            &RenderInput {
                services: &table,
                changed: None,
                existing_nat_chains: &empty,
                missing_jumps: &[],
            },
        );
        render_times.push(start.elapsed());
        rules = (out.nat_rules, out.filter_rules);
        text = out.text;
    }

    // Anchor 2: iptables-restore of the same batch alone.
    let ipt = ExecIptables::in_netns(&ns.0);
    let mut restore_times = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        ipt.restore(&text)
            .expect("iptables-restore works in the namespace");
        restore_times.push(start.elapsed());
    }

    // The proxier: full syncs (save + render + restore), then one-endpoint changes.
    let p = proxier(&ns.0);
    for s in &services {
        p.service_updated(s);
    }
    for s in &slices {
        p.slice_updated(s);
    }
    let mut full = Vec::new();
    for _ in 0..ROUNDS {
        full.push(
            p.sync(skiff_proxy::SyncMode::Full)
                .expect("a full sync")
                .duration,
        );
    }
    let mut repair = Vec::new();
    for _ in 0..ROUNDS {
        repair.push(
            p.sync(skiff_proxy::SyncMode::Repair)
                .expect("a repair sync")
                .duration,
        );
    }
    let mut partial = Vec::new();
    let mut partial_bytes = 0;
    for round in 0..ROUNDS {
        let mut changed = slices[round * 37 % SERVICES].clone();
        changed.endpoints[0].addresses = vec![format!("10.250.0.{}", round + 1)];
        p.slice_updated(&changed);
        let report = p
            .sync(skiff_proxy::SyncMode::Partial)
            .expect("a partial sync");
        assert!(!report.full);
        partial_bytes = report.restore_bytes;
        partial.push(report.duration);
    }
    println!(
        "ruleset: {SERVICES} services, {} endpoints: {} nat + {} filter rules, {} KiB of restore input",
        SERVICES * ENDPOINTS_PER_SERVICE,
        rules.0,
        rules.1,
        text.len() / 1024
    );
    println!(
        "render only (anchor)                  median {}",
        ms(median(render_times))
    );
    println!(
        "iptables-restore only (anchor)        median {}",
        ms(median(restore_times))
    );
    println!(
        "full sync (save+render+restore)       median {}",
        ms(median(full))
    );
    println!(
        "periodic resync (save+check+partial)  median {}",
        ms(median(repair))
    );
    println!(
        "one-endpoint change (partial sync)    median {}  ({} KiB restored)",
        ms(median(partial)),
        partial_bytes / 1024
    );
}

/// EndpointSlice write in the API server to rules applied, through watches.
async fn programming_latency() {
    let ns = Netns::new(format!("skiff-bench-npl-{}", std::process::id()));
    let dir = tempfile::tempdir().unwrap();
    let server = skiff_apiserver::start(skiff_apiserver::Config {
        data_dir: dir.path().join("apiserver"),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        service_cluster_ip_range: "10.96.0.0/12".into(),
        ..Default::default()
    })
    .await
    .expect("the API server starts");
    let kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
    let kube = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(kube.clone()).unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bench"}})).unwrap(),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "bench");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "bench");
    let loaded = Instant::now();
    futures::stream::iter(0..SERVICES)
        .map(|i| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                services
                    .create(&PostParams::default(), &service(i))
                    .await
                    .unwrap();
                slices
                    .create(&PostParams::default(), &slice(i, 0))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    println!(
        "loaded {SERVICES} services + slices into the API server in {:.1} s",
        loaded.elapsed().as_secs_f64()
    );

    let reports: Arc<Mutex<Vec<SyncReport>>> = Arc::default();
    let sink = reports.clone();
    let mut config = skiff_proxy::Config::new(kube, "node-1".into());
    config.settings = settings();
    config.netns = Some(ns.0.clone());
    config.observer = Some(Arc::new(move |r: &SyncReport| {
        sink.lock().unwrap().push(r.clone())
    }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let proxy = tokio::spawn(skiff_proxy::run(config, async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(60);
    while reports.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the proxy never synced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = reports.lock().unwrap()[0].clone();
    println!("proxy start: first full sync {}", ms(first.duration));

    for (label, spacing, changes) in [
        (
            "changes 1.2 s apart (above the 1 s min sync period)",
            Duration::from_millis(1200),
            20,
        ),
        (
            "changes 0.2 s apart (rate limited to one sync per second)",
            Duration::from_millis(200),
            40,
        ),
    ] {
        reports.lock().unwrap().clear();
        for round in 0..changes {
            let i = (round * 53) % SERVICES;
            let mut s = slices.get(&format!("svc-{i}-abcde")).await.unwrap();
            let fresh = slice(i, round + 1);
            s.endpoints = fresh.endpoints;
            s.metadata.annotations = fresh.metadata.annotations;
            slices
                .replace(&format!("svc-{i}-abcde"), &PostParams::default(), &s)
                .await
                .unwrap();
            tokio::time::sleep(spacing).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let latencies: Vec<Duration> = reports
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.programming_latencies.clone())
            .collect();
        assert_eq!(latencies.len(), changes, "every change was applied");
        println!(
            "network programming latency, {label}: p50 {}  p99 {}  (n={})",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            latencies.len()
        );
    }
    let _ = stop.send(());
    proxy.await.unwrap().unwrap();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too, quickly.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    sync_costs();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(programming_latency());
}
