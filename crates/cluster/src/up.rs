//! The foreground side of `up`/`join`, `down` and `status`: checks, starting
//! the supervisor, progress, the objects `up` creates, and the status table.

use crate::config::{self, Layout, Mode, Settings};
use crate::health::{self, ClientCert};
use crate::state::{self, State};
use crate::{cleanup, supervisor};
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use k8s_openapi::api::core::v1::{Endpoints, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use std::path::Path;
use std::time::{Duration, Instant};

const FIELD_MANAGER: &str = "skiffctl";

fn spinner(msg: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
            .expect("static template"),
    );
    // Not a terminal (a log, CI): indicatif draws nothing, so say each
    // step in a plain line instead.
    if bar.is_hidden() {
        println!("… {msg}");
    }
    bar.set_message(msg);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn done(bar: &ProgressBar, msg: &str) {
    if bar.is_hidden() {
        println!("✔ {msg}");
    }
    bar.set_style(ProgressStyle::with_template("✔ {msg}").expect("static template"));
    bar.finish_with_message(msg.to_string());
}

fn failed(bar: &ProgressBar, msg: &str) {
    if bar.is_hidden() {
        println!("✘ {msg}");
    }
    bar.set_style(ProgressStyle::with_template("✘ {msg}").expect("static template"));
    bar.abandon_with_message(msg.to_string());
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

/// What must be there before anything starts; each failure says what to do.
fn preflight(l: &Layout, s: &Settings) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (containerd, CNI and iptables need it): run as root".to_string());
    }
    for tool in ["containerd", "runc", "ctr", "ip"] {
        if supervisor::find_on_path(tool).is_none() {
            missing.push(format!("{tool}: run scripts/install-prereqs.sh"));
        }
    }
    for plugin in ["bridge", "host-local", "portmap"] {
        if !Path::new("/usr/lib/cni").join(plugin).exists() {
            missing.push(format!(
                "the CNI plugin /usr/lib/cni/{plugin}: apt-get install containernetworking-plugins"
            ));
        }
    }
    if !s.images_dir.join("pause.tar").exists() {
        missing.push(format!(
            "{}/pause.tar (the sandbox image): run make images",
            s.images_dir.display()
        ));
    }
    for c in config::components(&s.mode) {
        if matches!(*c, "containerd" | "proxy" | "dns") {
            continue;
        }
        if supervisor::find_binary(config::program(c)).is_none() {
            missing.push(format!(
                "{} (next to skiffctl or on PATH): run make build",
                config::program(c)
            ));
        }
    }
    let sock = l.containerd().join("containerd.sock.ttrpc");
    if sock.as_os_str().len() > 107 {
        missing.push(format!(
            "a shorter --data-dir: {} is longer than a unix socket path may be",
            sock.display()
        ));
    }
    anyhow::ensure!(
        missing.is_empty(),
        "cannot start the cluster; missing:\n  {}",
        missing.join("\n  ")
    );
    Ok(())
}

/// `up` and `join`: start the supervisor unless it runs, and follow it.
pub async fn up(l: &Layout, settings: Settings, timeout: u64) -> anyhow::Result<()> {
    if let Some(pid) = state::supervisor(l) {
        println!(
            "Skiff is already up in {} (supervisor pid {pid}); nothing changed.",
            l.dir.display()
        );
        if let Ok(s) = load_settings(l) {
            usage(l, &s);
        }
        return Ok(());
    }
    preflight(l, &settings)?;
    std::fs::create_dir_all(l.logs())?;
    warn_pressure(l, &settings);
    std::fs::write(l.settings(), serde_json::to_vec_pretty(&settings)?)?;
    let _ = std::fs::remove_file(l.state());
    let pid = spawn_supervisor(l, &settings)?;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    follow_supervisor(l, pid, deadline).await?;
    let st = State::load(&l.state()).unwrap_or_default();
    let not_built: Vec<&str> = st
        .components
        .iter()
        .filter(|(_, c)| c.status == "not built")
        .map(|(n, _)| config::program(n))
        .collect();
    if !not_built.is_empty() {
        println!("- not built, not started: {}", not_built.join(", "));
    }
    match settings.mode {
        Mode::Server => server_objects(l, &settings, &st, deadline).await?,
        Mode::Node => node_ready(l, &settings, deadline).await?,
    }
    usage(l, &settings);
    Ok(())
}

/// Says so when the host already crosses one of the kubelet's hard eviction
/// thresholds: the node would then report DiskPressure or MemoryPressure, and
/// its taint keeps every pod off it, which otherwise shows only as pods
/// Pending with a FailedScheduling event.
fn warn_pressure(l: &Layout, s: &Settings) {
    use skiff_kubelet::eviction;
    let text = if s.eviction_hard.is_empty() {
        eviction::DEFAULT_EVICTION_HARD
    } else {
        &s.eviction_hard
    };
    let Ok(thresholds) = eviction::parse_thresholds(text) else {
        return; // the kubelet refuses it with the reason
    };
    let observed = eviction::observe_host(&l.dir);
    for (t, limit, available) in eviction::crossed(&thresholds, &observed) {
        let (condition, what) = match t.signal {
            eviction::Signal::MemoryAvailable => ("MemoryPressure", "memory".to_string()),
            eviction::Signal::NodeFsAvailable => (
                "DiskPressure",
                format!("disk on the filesystem of {}", l.dir.display()),
            ),
        };
        eprintln!(
            "warning: {:.1} GiB of {what} is free, below the kubelet's eviction threshold \
             {}<{:.1} GiB: the node will report {condition} and no pod will be scheduled \
             on it. Free some, or pass --eviction-hard with a lower threshold \
             (e.g. '{}<1Gi').",
            available / GIB,
            t.signal.name(),
            limit / GIB,
            t.signal.name(),
        );
    }
}

const GIB: f64 = (1u64 << 30) as f64;

fn load_settings(l: &Layout) -> anyhow::Result<Settings> {
    let bytes = std::fs::read(l.settings())
        .with_context(|| format!("no cluster in {} (no cluster.json)", l.dir.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn spawn_supervisor(l: &Layout, s: &Settings) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding skiffctl's own executable")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(l.log("supervisor"))?;
    let mut cmd = match supervisor::find_on_path("setsid") {
        Some(setsid) => {
            let mut c = std::process::Command::new(setsid);
            c.arg(&exe);
            c
        }
        None => {
            let mut c = std::process::Command::new(&exe);
            c.process_group(0);
            c
        }
    };
    match s.mode {
        Mode::Server => cmd.arg("up"),
        Mode::Node => cmd
            .arg("join")
            .arg("--server")
            .arg(s.server.as_deref().unwrap_or_default())
            .arg("--token")
            .arg(s.token.as_deref().unwrap_or_default()),
    };
    let child = cmd
        .arg("--data-dir")
        .arg(&l.dir)
        .env(supervisor::ENV, &l.dir)
        .current_dir(&l.dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the supervisor")?;
    Ok(child.id())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Shows the supervisor's phases as they pass, until everything is started.
async fn follow_supervisor(l: &Layout, pid: u32, deadline: Instant) -> anyhow::Result<()> {
    let mut phase = String::new();
    let mut bar: Option<ProgressBar> = None;
    loop {
        let st = State::load(&l.state()).unwrap_or_default();
        if !st.phase.is_empty() && st.phase != phase {
            if let Some(b) = bar.take() {
                done(&b, &phase);
            }
            phase = st.phase.clone();
            if phase == "running" {
                return Ok(());
            }
            bar = Some(spinner(phase.clone()));
        }
        let problem = if let Some(err) = &st.error {
            Some(err.clone())
        } else if !state::alive(pid) {
            Some("the supervisor exited".into())
        } else if Instant::now() > deadline {
            Some("timed out".into())
        } else {
            None
        };
        if let Some(problem) = problem {
            if let Some(b) = bar.take() {
                failed(&b, &phase);
            }
            anyhow::bail!(
                "{problem}\nthe end of {}:\n{}\n(run skiffctl down --data-dir {} to clean up)",
                l.log("supervisor").display(),
                tail(&l.log("supervisor"), 15),
                l.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn admin_client(l: &Layout) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(l.admin_kubeconfig())?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Waits for `what` under a spinner, trying `attempt` every half second.
async fn step<T, F, Fut>(what: &str, deadline: Instant, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let bar = spinner(what.to_string());
    loop {
        match attempt().await {
            Ok(v) => {
                done(&bar, what);
                return Ok(v);
            }
            Err(err) if Instant::now() > deadline => {
                failed(&bar, what);
                return Err(err.context(format!("{what}: timed out")));
            }
            Err(err) => bar.set_message(format!("{what} ({err:#})")),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The node's Ready condition, the kube-dns Service and its endpoints, the
/// default StorageClass, a bootstrap token for `join`, and a DNS answer when
/// skiff-dns runs.
async fn server_objects(
    l: &Layout,
    s: &Settings,
    st: &State,
    deadline: Instant,
) -> anyhow::Result<()> {
    let client = admin_client(l).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let node_ip = step(
        &format!("node {} registers", s.node_name),
        deadline,
        || async {
            let node = nodes.get(&s.node_name).await?;
            node.status
                .and_then(|st| st.addresses)
                .into_iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address)
                .context("no InternalIP yet")
        },
    )
    .await?;
    step("kube-dns Service and endpoints", deadline, || {
        ensure_kube_dns(client.clone(), s, &node_ip)
    })
    .await?;
    step("default StorageClass", deadline, || {
        ensure_default_storage_class(client.clone())
    })
    .await?;
    wait_ready(&nodes, &s.node_name, deadline).await?;
    if let Err(err) = ensure_join_token(l, client.clone()).await {
        println!("- no bootstrap token for skiffctl join: {err:#}");
    }
    if let Err(err) = ensure_bootstrap_ca_reader(client.clone()).await {
        println!("- skiffctl join will need --certificate-authority: {err:#}");
    }
    if let Err(err) = ensure_node_proxier(client.clone()).await {
        println!("- joined nodes' skiff-proxy will lack permissions: {err:#}");
    }
    let dns_runs = st
        .components
        .get("dns")
        .is_some_and(|c| c.status != "not built");
    if dns_runs {
        // Through the kube-dns Service, as pods ask (the proxy's rules
        // send it on to skiff-dns).
        let name = format!("kubernetes.default.svc.{}", s.cluster_domain);
        step(&format!("DNS answers {name}"), deadline, || {
            health::dns_answers(&s.dns_service_ip, 53, &name)
        })
        .await?;
    } else {
        println!("- skiff-dns not built: cluster DNS does not answer yet");
    }
    Ok(())
}

/// The kube-dns Service (no selector) and its endpoints at the node's IP,
/// where skiff-dns listens on the host.
pub async fn ensure_kube_dns(
    client: kube::Client,
    s: &Settings,
    node_ip: &str,
) -> anyhow::Result<()> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    services
        .patch("kube-dns", &pp, &Patch::Apply(kube_dns_service(s)))
        .await
        .context("applying Service kube-system/kube-dns")?;
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "kube-system");
    endpoints
        .patch(
            "kube-dns",
            &pp,
            &Patch::Apply(kube_dns_endpoints(s, node_ip)),
        )
        .await
        .context("applying Endpoints kube-system/kube-dns")?;
    let slices: Api<EndpointSlice> = Api::namespaced(client, "kube-system");
    slices
        .patch(
            "kube-dns-skiffctl",
            &pp,
            &Patch::Apply(kube_dns_slice(s, node_ip)),
        )
        .await
        .context("applying EndpointSlice kube-system/kube-dns-skiffctl")?;
    Ok(())
}

pub fn kube_dns_service(s: &Settings) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
        },
        "spec": {
            "clusterIP": s.dns_service_ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": s.dns_port},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": s.dns_port},
            ],
        },
    })
}

pub fn kube_dns_endpoints(s: &Settings, node_ip: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {
                "k8s-app": "kube-dns",
                // The EndpointSlice below is written directly; no mirror.
                "endpointslice.kubernetes.io/skip-mirror": "true",
            },
        },
        "subsets": [{
            "addresses": [{"ip": node_ip, "nodeName": s.node_name}],
            "ports": [
                {"name": "dns", "port": s.dns_port, "protocol": "UDP"},
                {"name": "dns-tcp", "port": s.dns_port, "protocol": "TCP"},
            ],
        }],
    })
}

pub fn kube_dns_slice(s: &Settings, node_ip: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-skiffctl",
            "namespace": "kube-system",
            "labels": {
                "kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "skiffctl",
                "k8s-app": "kube-dns",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [node_ip],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": s.node_name,
        }],
        "ports": [
            {"name": "dns", "port": s.dns_port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": s.dns_port, "protocol": "TCP"},
        ],
    })
}

/// A random `[a-z0-9]` string of `n` characters.
fn random_token_part(n: usize) -> anyhow::Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::new();
    let mut f = std::fs::File::open("/dev/urandom")?;
    let mut b = [0u8; 1];
    while out.len() < n {
        f.read_exact(&mut b)?;
        // 252 = 7 × 36: reject the rest so every character is equally likely.
        if b[0] < 252 {
            out.push(ALPHABET[(b[0] % 36) as usize] as char);
        }
    }
    Ok(out)
}

/// A bootstrap token for `skiffctl join`, kept in `<data-dir>/join-token`
/// and as its kube-system Secret (the default RBAC lets the
/// `system:bootstrappers` group create node CSRs, which are auto-approved).
async fn ensure_join_token(l: &Layout, client: kube::Client) -> anyhow::Result<String> {
    let path = l.dir.join("join-token");
    let token = match std::fs::read_to_string(&path) {
        Ok(t) if crate::join::valid_token(t.trim()) => t.trim().to_string(),
        _ => {
            let t = format!("{}.{}", random_token_part(6)?, random_token_part(16)?);
            crate::pki::write_private(&path, &t)?;
            t
        }
    };
    let (id, secret) = token.split_once('.').expect("valid token");
    let secrets: Api<Secret> = Api::namespaced(client, "kube-system");
    let obj = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "token-id": id,
            "token-secret": secret,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
            "description": "skiffctl join",
        },
    });
    secrets
        .patch(
            &format!("bootstrap-token-{id}"),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?;
    Ok(token)
}

/// StorageClass `standard`, the default: the controller manager's host-path
/// provisioner makes a directory volume on the node for each claim (as
/// minikube's and k3s's local-path classes do).
pub fn default_storage_class() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "standard",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kubernetes.io/host-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    })
}

async fn ensure_default_storage_class(client: kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::api::storage::v1::StorageClass;
    let classes: Api<StorageClass> = Api::all(client);
    classes
        .patch(
            "standard",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(default_storage_class()),
        )
        .await
        .context("applying StorageClass standard")?;
    Ok(())
}

/// `skiffctl join` without `--certificate-authority` reads the cluster CA
/// from kube-public/kube-root-ca.crt with its bootstrap token; the default
/// policy gives bootstrappers no read access to kube-public, so this Role
/// grants `get` on that one ConfigMap.
async fn ensure_bootstrap_ca_reader(client: kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let name = "skiff:bootstrap-ca-reader";
    let role = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": "kube-public"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kube-root-ca.crt"], "verbs": ["get"]}],
    });
    Api::<Role>::namespaced(client.clone(), "kube-public")
        .patch(name, &pp, &Patch::Apply(role))
        .await?;
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": "kube-public"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:bootstrappers"}],
    });
    Api::<RoleBinding>::namespaced(client, "kube-public")
        .patch(name, &pp, &Patch::Apply(binding))
        .await?;
    Ok(())
}

/// A joined node's skiff-proxy runs with the kubelet's credentials (user
/// `system:node:<name>`, group `system:nodes`); the Node authorizer does not
/// let it list Services and EndpointSlices, so nodes get kube-proxy's role.
async fn ensure_node_proxier(client: kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let bindings: Api<ClusterRoleBinding> = Api::all(client);
    let obj = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "skiff:node-proxier"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-proxier"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}],
    });
    bindings
        .patch(
            "skiff:node-proxier",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?;
    Ok(())
}

/// `join`: wait until the kubelet's Node is Ready (asked with its own
/// credentials, which may read their Node).
/// Waits (as a progress step) until the Node's Ready condition is True.
async fn wait_ready(nodes: &Api<Node>, name: &str, deadline: Instant) -> anyhow::Result<()> {
    step(&format!("node {name} Ready"), deadline, || async {
        let node = nodes.get(name).await?;
        let ready = node
            .status
            .and_then(|st| st.conditions)
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status);
        anyhow::ensure!(ready.as_deref() == Some("True"), "Ready is {ready:?}");
        Ok(())
    })
    .await
}

async fn node_ready(l: &Layout, s: &Settings, deadline: Instant) -> anyhow::Result<()> {
    let kc = kube::config::Kubeconfig::read_from(l.kubelet_kubeconfig())?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    let nodes: Api<Node> = Api::all(kube::Client::try_from(config)?);
    wait_ready(&nodes, &s.node_name, deadline).await
}

fn usage(l: &Layout, s: &Settings) {
    println!();
    match s.mode {
        Mode::Server => {
            println!("Use the cluster with kubectl:");
            println!("  export KUBECONFIG={}", l.admin_kubeconfig().display());
            println!("  kubectl get nodes");
            let data = if l.dir.ends_with(".skiff") {
                String::new()
            } else {
                format!(" --data-dir {}", l.dir.display())
            };
            println!("Health: skiffctl status{data}    Stop: skiffctl down{data}");
            if let Ok(token) = std::fs::read_to_string(l.dir.join("join-token")) {
                let ip =
                    crate::supervisor::local_ip().unwrap_or_else(|| "<this machine's IP>".into());
                println!(
                    "Join another machine: skiffctl join --server https://{ip}:{} --token {} --certificate-authority {}{}",
                    s.secure_port,
                    token.trim(),
                    l.ca_cert().display(),
                    cluster_flags(s)
                );
            }
        }
        Mode::Node => {
            println!(
                "This machine runs a kubelet and proxy for {}.",
                s.server.as_deref().unwrap_or("")
            );
            println!("Health: skiffctl status --data-dir {}", l.dir.display());
        }
    }
}

/// The cluster-wide settings a joining node must share and cannot learn
/// from the server (the proxy's cluster CIDR, the pods' resolver and
/// domain), as `join` flags, for those that are not the defaults.
fn cluster_flags(s: &Settings) -> String {
    let d = Settings::defaults(s.mode.clone(), String::new(), Default::default());
    let mut out = String::new();
    for (flag, value, default) in [
        ("--cluster-cidr", &s.cluster_cidr, &d.cluster_cidr),
        ("--cluster-dns", &s.dns_service_ip, &d.dns_service_ip),
        ("--cluster-domain", &s.cluster_domain, &d.cluster_domain),
    ] {
        if value != default {
            out.push_str(&format!(" {flag} {value}"));
        }
    }
    out
}

/// `down`: the supervisor stops the components (pods removed through CRI
/// before containerd goes); then what is left on the host is removed.
pub async fn down(l: &Layout, purge: bool) -> anyhow::Result<()> {
    let settings = load_settings(l).ok();
    if settings.is_none() && !l.dir.exists() {
        println!("no cluster in {}", l.dir.display());
        return Ok(());
    }
    let bar = spinner("stopping the components, the pods and containerd".into());
    if let Some(pid) = state::supervisor(l) {
        state::signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(150);
        while state::alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if state::alive(pid) {
            state::signal(pid, "KILL");
        }
    }
    // Whatever still runs (no supervisor, or it was killed): stop it here.
    if let Some(mut st) = State::load(&l.state()) {
        cleanup::stop_components(l, &st, true).await;
        for c in st.components.values_mut() {
            c.pid = None;
            if c.status != "not built" {
                c.status = "stopped".into();
            }
        }
        st.phase = "stopped".into();
        let _ = st.save(&l.state());
    }
    let _ = std::fs::remove_file(l.supervisor_pid());
    done(&bar, "stopped the components, the pods and containerd");
    let problems = cleanup::leftovers(l, settings.as_ref()).await;
    for p in &problems {
        eprintln!("warning: {p}");
    }
    if purge {
        let mounts = cleanup::mounts_under(&l.dir);
        anyhow::ensure!(
            mounts.is_empty(),
            "not deleting {}: still mounted below it: {}",
            l.dir.display(),
            mounts.join(", ")
        );
        std::fs::remove_dir_all(&l.dir).with_context(|| format!("deleting {}", l.dir.display()))?;
        println!("deleted {}", l.dir.display());
    }
    println!("Skiff is down.");
    Ok(())
}

/// `status`: one row per component.
pub async fn status(l: &Layout) -> anyhow::Result<()> {
    let s = load_settings(l)?;
    let st = State::load(&l.state()).unwrap_or_default();
    let sup = state::supervisor(l);
    let cert = match s.mode {
        Mode::Server => ClientCert::from_kubeconfig(&l.admin_kubeconfig()),
        Mode::Node => ClientCert::from_kubeconfig(&l.kubelet_kubeconfig()),
    };
    let mut table = comfy_table::Table::new();
    table.set_header([
        "COMPONENT",
        "PID",
        "RESTARTS",
        "STATE",
        "HEALTH",
        "LAST EXIT",
    ]);
    let mut all_ok = sup.is_some();
    for name in config::components(&s.mode) {
        let c = st.components.get(*name).cloned().unwrap_or_default();
        let pid = c.pid.filter(|p| state::ours(*p, &l.dir));
        let health = if c.status == "not built" {
            "-".to_string()
        } else if *name == "containerd" {
            if supervisor::containerd_answers(l.containerd_socket()).await {
                "ok (CRI)".into()
            } else {
                all_ok = false;
                "no answer".into()
            }
        } else if let Some((scheme, port, path)) = config::health_endpoint(name, &s) {
            match health::get(scheme, port, path, cert.as_ref()).await {
                Ok((200, _)) => format!("ok ({scheme} :{port}{path})"),
                Ok((code, body)) => {
                    all_ok = false;
                    format!("HTTP {code} {}", body.chars().take(40).collect::<String>())
                }
                Err(err) => {
                    all_ok = false;
                    format!("{err:#}").chars().take(50).collect()
                }
            }
        } else {
            "-".into()
        };
        table.add_row([
            name.to_string(),
            pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            c.restarts.to_string(),
            if c.status.is_empty() {
                "-".into()
            } else {
                c.status.clone()
            },
            health,
            c.last_exit.clone().unwrap_or_default(),
        ]);
    }
    match sup {
        Some(pid) => println!("supervisor: pid {pid}, {}", st.phase),
        None => println!("supervisor: not running ({})", l.dir.display()),
    }
    println!("{table}");
    anyhow::ensure!(all_ok, "not every component is healthy");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_dns_points_at_the_node_on_the_dns_port() {
        let mut s = config::tests_settings();
        s.dns_port = 10053;
        let svc: Service = serde_json::from_value(kube_dns_service(&s)).unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert!(spec.selector.is_none());
        let ports = spec.ports.unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(
            (
                ports[0].name.as_deref(),
                ports[0].port,
                ports[0].protocol.as_deref()
            ),
            (Some("dns"), 53, Some("UDP"))
        );
        assert_eq!(
            (ports[1].name.as_deref(), ports[1].protocol.as_deref()),
            (Some("dns-tcp"), Some("TCP"))
        );
        let ep: Endpoints = serde_json::from_value(kube_dns_endpoints(&s, "192.0.2.2")).unwrap();
        let subset = &ep.subsets.unwrap()[0];
        assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "192.0.2.2");
        assert_eq!(subset.ports.as_ref().unwrap()[0].port, 10053);
        let slice: EndpointSlice = serde_json::from_value(kube_dns_slice(&s, "192.0.2.2")).unwrap();
        assert_eq!(
            slice.metadata.labels.unwrap()["kubernetes.io/service-name"],
            "kube-dns"
        );
        assert_eq!(slice.endpoints[0].addresses, ["192.0.2.2"]);
        assert_eq!(slice.ports.unwrap()[1].port, Some(10053));
    }

    #[test]
    fn the_join_command_carries_the_cluster_settings_that_are_not_defaults() {
        let mut s = config::tests_settings();
        assert_eq!(cluster_flags(&s), "");
        s.cluster_cidr = "10.247.0.0/16".into();
        s.dns_service_ip = "10.97.0.10".into();
        assert_eq!(
            cluster_flags(&s),
            " --cluster-cidr 10.247.0.0/16 --cluster-dns 10.97.0.10"
        );
    }

    #[test]
    fn generated_join_tokens_are_bootstrap_tokens() {
        let t = format!(
            "{}.{}",
            random_token_part(6).unwrap(),
            random_token_part(16).unwrap()
        );
        assert!(crate::join::valid_token(&t), "{t}");
    }
}
