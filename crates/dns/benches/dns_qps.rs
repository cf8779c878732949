//! Queries per second and latency of skiff-dns for Service names over UDP,
//! with 1,000 Services loaded through a real in-process API server, beside
//! the host's own resolver (the first nameserver of /etc/resolv.conf)
//! measured the same way in the same run.
//!
//! `cargo bench -p skiff-dns --bench dns_qps` (SKIFF_DNS_BENCH_SECONDS,
//! SKIFF_DNS_BENCH_CLIENTS and SKIFF_DNS_BENCH_HOST_NAME change the run).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comfy_table::Table;
use futures::StreamExt;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tokio::net::UdpSocket;

const SERVICES: usize = 1000;

struct Outcome {
    queries: usize,
    failures: usize,
    qps: f64,
    p50: Duration,
    p99: Duration,
    rcode: String,
}

/// Closed-loop load: `clients` sockets, each with one query in flight,
/// cycling through `names`, for `length`.
async fn load(
    server: SocketAddr,
    names: Arc<Vec<Vec<u8>>>,
    clients: usize,
    length: Duration,
) -> Outcome {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let names = names.clone();
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
            socket.connect(server).await.unwrap();
            let mut latencies = Vec::new();
            let mut failures = 0;
            let mut rcode = ResponseCode::NoError;
            let mut buf = vec![0u8; 4096];
            let mut i = c;
            while started.elapsed() < length {
                let mut packet = names[i % names.len()].clone();
                i += clients;
                let id = (i as u16).to_be_bytes();
                packet[0] = id[0];
                packet[1] = id[1];
                let sent = Instant::now();
                socket.send(&packet).await.unwrap();
                let reply = loop {
                    match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await
                    {
                        Ok(Ok(n)) if n >= 4 && buf[..2] == id => break Some(n),
                        Ok(_) => continue,
                        Err(_) => break None,
                    }
                };
                match reply {
                    Some(_) => {
                        latencies.push(sent.elapsed());
                        rcode = ResponseCode::from(0, buf[3] & 0x0f);
                    }
                    None => failures += 1,
                }
            }
            (latencies, failures, rcode)
        }));
    }
    let mut all = Vec::new();
    let mut failures = 0;
    let mut rcode = ResponseCode::NoError;
    for t in tasks {
        let (l, f, r) = t.await.unwrap();
        all.extend(l);
        failures += f;
        rcode = r;
    }
    let elapsed = started.elapsed();
    all.sort();
    let at = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Outcome {
        queries: all.len(),
        failures,
        qps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        rcode: rcode.to_string(),
    }
}

fn query(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

fn host_resolver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == "nameserver")
            .then(|| w.next()?.parse().ok().map(|ip| SocketAddr::new(ip, 53)))?
    })
}

fn main() {
    let seconds: u64 = std::env::var("SKIFF_DNS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let clients: usize = std::env::var("SKIFF_DNS_BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let host_name =
        std::env::var("SKIFF_DNS_BENCH_HOST_NAME").unwrap_or_else(|_| "index.crates.io.".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let apiserver = skiff_apiserver::start(skiff_apiserver::Config {
            data_dir: dir.path().join("apiserver"),
            secure_port: 0,
            bind_address: "127.0.0.1".parse().unwrap(),
            // The cluster's range (CLUSTER-DEFAULTS.md): room for 1,000.
            service_cluster_ip_range: "10.96.0.0/12".into(),
            ..Default::default()
        })
        .await
        .expect("the API server starts");
        let kubeconfig = Kubeconfig::read_from(&apiserver.admin_kubeconfig).unwrap();
        let kube = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(kube.clone()).unwrap();
        let resolv_conf = dir.path().join("resolv.conf");
        std::fs::write(&resolv_conf, "").unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let dns = skiff_dns::start(skiff_dns::Config {
            dns_address: any,
            health_address: None,
            ready_address: None,
            metrics_address: None,
            resolv_conf,
            ..skiff_dns::Config::new(kube)
        })
        .await
        .expect("skiff-dns starts");

        let loading = Instant::now();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "bench"}})).unwrap(),
            )
            .await
            .unwrap();
        let services: Api<Service> = Api::namespaced(client, "bench");
        futures::stream::iter(0..SERVICES)
            .map(|i| {
                let services = services.clone();
                async move {
                    let svc: Service = serde_json::from_value(json!({
                        "metadata": {"name": format!("svc-{i}")},
                        "spec": {"ports": [{"name": "http", "port": 80}]},
                    }))
                    .unwrap();
                    services.create(&PostParams::default(), &svc).await.unwrap();
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        let names: Vec<String> = (0..SERVICES)
            .map(|i| format!("svc-{i}.bench.svc.cluster.local."))
            .collect();
        // Every Service answers before the clock starts.
        loop {
            let mut missing = 0;
            for name in &names {
                let m = skiff_query(dns.bound.dns, name).await;
                if m.answers.is_empty() {
                    missing += 1;
                }
            }
            if missing == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "{SERVICES} Services created and served in {:?}",
            loading.elapsed()
        );

        let length = Duration::from_secs(seconds);
        let ours_names = Arc::new(names.iter().map(|n| query(n)).collect::<Vec<_>>());
        let host_names = Arc::new(vec![query(&host_name)]);
        let mut table = Table::new();
        table.set_header(vec![
            "server",
            "name(s)",
            "clients",
            "answered",
            "timeouts (1s)",
            "qps",
            "p50",
            "p99",
            "rcode",
        ]);
        let row = |table: &mut Table, server: String, names: &str, clients: usize, o: Outcome| {
            table.add_row(vec![
                server,
                names.to_string(),
                clients.to_string(),
                o.queries.to_string(),
                o.failures.to_string(),
                format!("{:.0}", o.qps),
                format!("{:.1?}", o.p50),
                format!("{:.1?}", o.p99),
                o.rcode,
            ]);
        };
        for n in [1, clients] {
            let ours = load(dns.bound.dns, ours_names.clone(), n, length).await;
            row(
                &mut table,
                format!("skiff-dns {}", dns.bound.dns),
                "1,000 Service names, round robin",
                n,
                ours,
            );
            match host_resolver() {
                Some(server) => {
                    let host = load(server, host_names.clone(), n, length).await;
                    row(
                        &mut table,
                        format!("host resolver {server}"),
                        &host_name,
                        n,
                        host,
                    );
                }
                None => {
                    table.add_row(vec!["host resolver", "no nameserver in /etc/resolv.conf"]);
                }
            }
        }
        println!(
            "UDP A queries, closed loop (one query in flight per client), {seconds}s per row; \
             the load generator shares the process and the cores with skiff-dns"
        );
        println!("{table}");
        dns.stop().await;
        apiserver.stop().await;
    });
}

async fn skiff_query(server: SocketAddr, name: &str) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&query(name), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}
