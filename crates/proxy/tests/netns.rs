//! skiff-proxy against real iptables, inside network namespaces this test
//! makes (never the host's own tables): an in-process API server, a "node"
//! namespace where the proxy writes its rules, two endpoint namespaces with
//! HTTP servers and a client namespace, joined by veth pairs.
//!
//! Needs root, `ip` (iproute2), `iptables` (1.8, nf_tables or legacy),
//! `conntrack`, `python3` and `curl`.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use skiff_proxy::{Config, NodePortAddresses, RenderSettings, SyncReport};
use tokio::sync::oneshot;

const CLUSTER_IP: &str = "10.96.100.10";
const NODE_PORT: u16 = 30080;

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!("running {args:?}: {e} (install iproute2, iptables, conntrack, python3, curl)")
        });
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn require_tools() {
    for tool in [
        "ip",
        "iptables-restore",
        "iptables-save",
        "conntrack",
        "python3",
        "curl",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "this test needs `{tool}`: apt-get install iproute2 iptables conntrack python3 curl"
        );
    }
    let uid = run(&["id", "-u"]);
    assert_eq!(
        uid.trim(),
        "0",
        "this test needs root (it creates network namespaces)"
    );
}

/// Namespaces, links and server processes; removed on drop.
struct Net {
    node: String,
    client: String,
    endpoints: Vec<String>,
    servers: Vec<Child>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Net {
    fn new() -> Net {
        let id = std::process::id();
        let node = format!("skp{id}-node");
        let client = format!("skp{id}-cli");
        let endpoints: Vec<String> = (1..=2).map(|i| format!("skp{id}-ep{i}")).collect();
        let mut net = Net {
            node: node.clone(),
            client: client.clone(),
            endpoints: endpoints.clone(),
            servers: Vec::new(),
            _dirs: Vec::new(),
        };
        for ns in std::iter::once(&node).chain(&endpoints).chain([&client]) {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        run(&[
            "ip",
            "netns",
            "exec",
            &node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let peers: Vec<&String> = endpoints.iter().chain([&client]).collect();
        for (i, peer) in peers.iter().enumerate() {
            let subnet = i + 1;
            let (a, b) = (format!("sk{id}a{subnet}"), format!("sk{id}b{subnet}"));
            run(&[
                "ip", "link", "add", &a, "netns", &node, "type", "veth", "peer", "name", &b,
                "netns", peer,
            ]);
            run(&[
                "ip",
                "-n",
                &node,
                "addr",
                "add",
                &format!("10.201.{subnet}.1/24"),
                "dev",
                &a,
            ]);
            run(&["ip", "-n", &node, "link", "set", &a, "up"]);
            run(&[
                "ip",
                "-n",
                peer,
                "addr",
                "add",
                &format!("10.201.{subnet}.2/24"),
                "dev",
                &b,
            ]);
            run(&["ip", "-n", peer, "link", "set", &b, "up"]);
            run(&[
                "ip",
                "-n",
                peer,
                "route",
                "add",
                "default",
                "via",
                &format!("10.201.{subnet}.1"),
            ]);
        }
        // Cluster IPs are routed nowhere in particular; the node, like any
        // host, needs some route for the kernel to get as far as OUTPUT's DNAT.
        run(&[
            "ip",
            "-n",
            &node,
            "route",
            "add",
            "default",
            "via",
            "10.201.3.2",
        ]);
        for (i, ep) in endpoints.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("index.html"), format!("ep{}\n", i + 1)).unwrap();
            let child = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    ep,
                    "python3",
                    "-m",
                    "http.server",
                    "8080",
                    "--bind",
                ])
                .arg(format!("10.201.{}.2", i + 1))
                .arg("--directory")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 starts");
            net.servers.push(child);
            net._dirs.push(dir);
        }
        net
    }

    /// GET `url` from a namespace: Ok(body) or Err(curl's exit code).
    fn get(&self, ns: &str, url: &str) -> Result<String, i32> {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-sS", "--max-time", "3", url])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(out.status.code().unwrap_or(-1))
        }
    }

    fn save(&self) -> String {
        run(&["ip", "netns", "exec", &self.node, "iptables-save"])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        for ns in std::iter::once(&self.node)
            .chain(&self.endpoints)
            .chain([&self.client])
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

struct Proxy {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    reports: Arc<Mutex<Vec<SyncReport>>>,
}

impl Proxy {
    fn start(kube: &kube::Config, netns: &str) -> Proxy {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let mut config = Config::new(kube.clone(), "node-1".into());
        config.settings = RenderSettings {
            cluster_cidr: Some("10.244.0.0/16".into()),
            ..RenderSettings::default()
        };
        config.node_port_addresses = NodePortAddresses::All;
        config.min_sync_period = Duration::from_millis(100);
        config.sync_period = Duration::from_secs(2);
        config.netns = Some(netns.to_string());
        config.observer = Some(Arc::new(move |r: &SyncReport| {
            sink.lock().unwrap().push(r.clone())
        }));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            skiff_proxy::run(config, async {
                let _ = stopped.await;
            })
            .await
            .expect("the proxy runs");
        });
        Proxy {
            stop: Some(stop),
            task,
            reports,
        }
    }

    async fn wait_syncs(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.reports.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "the proxy did not sync");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

fn slice(ips: &[&str]) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "web-1",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// Chains and rules of an iptables-save dump, without its timestamps.
fn rules_of(save: &str) -> Vec<&str> {
    save.lines()
        .filter(|l| l.starts_with("-A") || l.starts_with(":KUBE") || l.starts_with('*'))
        .collect()
}

/// Retries `f` until it holds or 10 s pass.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_reachable_through_real_iptables_in_a_network_namespace() {
    require_tools();
    let net = Net::new();

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
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "clusterIP": CLUSTER_IP,
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": NODE_PORT}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    slices
        .create(
            &PostParams::default(),
            &slice(&["10.201.1.2", "10.201.2.2"]),
        )
        .await
        .unwrap();

    let proxy = Proxy::start(&kube, &net.node);
    proxy.wait_syncs(1).await;
    let route_localnet = run(&[
        "ip",
        "netns",
        "exec",
        &net.node,
        "sysctl",
        "-n",
        "net.ipv4.conf.all.route_localnet",
    ]);
    assert_eq!(route_localnet.trim(), "1");

    // The cluster IP, from the node itself, reaches both endpoints.
    let cluster_url = format!("http://{CLUSTER_IP}/");
    let mut seen = BTreeSet::new();
    eventually("both endpoints answer on the cluster IP", || {
        if let Ok(body) = net.get(&net.node, &cluster_url) {
            seen.insert(body);
        }
        seen.len() == 2
    })
    .await;
    assert_eq!(seen, BTreeSet::from(["ep1".to_string(), "ep2".to_string()]));

    // The node port, from another host and from the node's localhost.
    let body = net
        .get(&net.client, &format!("http://10.201.3.1:{NODE_PORT}/"))
        .unwrap();
    assert!(body == "ep1" || body == "ep2", "{body}");
    let body = net
        .get(&net.node, &format!("http://127.0.0.1:{NODE_PORT}/"))
        .unwrap();
    assert!(body == "ep1" || body == "ep2", "{body}");

    // No endpoints: connections are refused at once, not left hanging.
    let mut empty = slices.get("web-1").await.unwrap();
    empty.endpoints = Vec::new();
    slices
        .replace("web-1", &PostParams::default(), &empty)
        .await
        .unwrap();
    eventually("the cluster IP rejects", || {
        net.get(&net.node, &cluster_url) == Err(7)
    })
    .await;
    let started = Instant::now();
    assert_eq!(
        net.get(&net.node, &cluster_url),
        Err(7),
        "curl: connection refused"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        net.get(&net.client, &format!("http://10.201.3.1:{NODE_PORT}/")),
        Err(7)
    );

    // Back to one endpoint, then a restart: rules keep working, nothing doubles.
    let mut one = slices.get("web-1").await.unwrap();
    one.endpoints = slice(&["10.201.2.2"]).endpoints;
    slices
        .replace("web-1", &PostParams::default(), &one)
        .await
        .unwrap();
    eventually("the endpoint is back", || {
        net.get(&net.node, &cluster_url).as_deref() == Ok("ep2")
    })
    .await;
    proxy.stop().await;
    assert_eq!(
        net.get(&net.node, &cluster_url).as_deref(),
        Ok("ep2"),
        "rules outlive the proxy"
    );
    let proxy = Proxy::start(&kube, &net.node);
    proxy.wait_syncs(1).await;
    assert_eq!(net.get(&net.node, &cluster_url).as_deref(), Ok("ep2"));
    let saved = net.save();
    for table in saved.split("\n*").skip(1) {
        let lines: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with("-A") || l.starts_with(':'))
            .collect();
        let unique: BTreeSet<&str> = lines.iter().copied().collect();
        assert_eq!(
            lines.len(),
            unique.len(),
            "duplicate chains or rules:\n{saved}"
        );
    }
    assert_eq!(
        saved
            .matches(
                "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
            )
            .count(),
        1
    );
    let web_endpoints = saved
        .lines()
        .filter(|l| {
            l.starts_with("-A KUBE-SEP-") && l.contains("default/web:http") && l.contains("DNAT")
        })
        .count();
    assert_eq!(
        web_endpoints, 1,
        "the removed endpoints' chains are gone:\n{saved}"
    );

    // The periodic resync repairs flushed chains and a deleted jump.
    let svc_chain = saved
        .lines()
        .find_map(|l| l.strip_prefix(":KUBE-SVC-").filter(|_| l.len() > 10))
        .map(|rest| format!("KUBE-SVC-{}", rest.split(' ').next().unwrap()))
        .unwrap();
    run(&[
        "ip",
        "netns",
        "exec",
        &net.node,
        "iptables",
        "-t",
        "nat",
        "-F",
        "KUBE-SERVICES",
    ]);
    run(&[
        "ip", "netns", "exec", &net.node, "iptables", "-t", "nat", "-F", &svc_chain,
    ]);
    run(&[
        "ip",
        "netns",
        "exec",
        &net.node,
        "iptables",
        "-t",
        "nat",
        "-D",
        "OUTPUT",
        "-m",
        "comment",
        "--comment",
        "kubernetes service portals",
        "-j",
        "KUBE-SERVICES",
    ]);
    assert_eq!(net.get(&net.node, &cluster_url).ok(), None);
    eventually("the resync repairs the rules", || {
        net.get(&net.node, &cluster_url).as_deref() == Ok("ep2")
    })
    .await;
    assert_eq!(
        rules_of(&net.save()),
        rules_of(&saved),
        "the rules are back as they were"
    );
    proxy.stop().await;

    // --cleanup removes everything it made.
    let backends = skiff_proxy::Backends::host(Some(&net.node));
    skiff_proxy::proxier::cleanup(backends.iptables.as_ref()).unwrap();
    let saved = net.save();
    assert!(!saved.contains("KUBE-"), "left behind:\n{saved}");
}
