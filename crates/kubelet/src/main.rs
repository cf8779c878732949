//! `skiff-kubelet`: the node agent, with upstream's kubelet flag names.

use clap::Parser;
use skiff_kubelet::config::{KubeletConfiguration, parse_duration, parse_taint};
use skiff_kubelet::cri;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The Skiff kubelet: runs the pods bound to this node through a CRI runtime.
#[derive(Parser)]
#[command(name = "skiff-kubelet", version)]
struct Options {
    /// kubeconfig with the API server's address and this node's credentials.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// kubeconfig used to obtain credentials when --kubeconfig does not exist yet.
    #[arg(long)]
    bootstrap_kubeconfig: Option<PathBuf>,
    /// A KubeletConfiguration file (kubelet.config.k8s.io/v1beta1); flags win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The CRI endpoint.
    #[arg(long, default_value = "unix:///run/containerd/containerd.sock")]
    container_runtime_endpoint: String,
    /// `remote` (CRI over gRPC) or `fake` (an in-process runtime, for hollow nodes).
    #[arg(long, default_value = "remote")]
    runtime: String,
    /// The node's name instead of the hostname.
    #[arg(long)]
    hostname_override: Option<String>,
    /// The kubelet's state directory.
    #[arg(long, default_value = "/var/lib/kubelet")]
    root_dir: PathBuf,
    /// Where pod logs go (KubeletConfiguration podLogsDir).
    #[arg(long)]
    pod_logs_dir: Option<PathBuf>,
    /// Static pod manifests.
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,
    #[arg(long)]
    pod_cidr: Option<String>,
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Comma-separated cluster DNS server addresses.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<IpAddr>,
    #[arg(long)]
    cluster_domain: Option<String>,
    /// Comma-separated `key=value:Effect` taints the node registers with.
    #[arg(long, value_delimiter = ',')]
    register_with_taints: Vec<String>,
    /// Comma-separated `key=value` labels the node registers with.
    #[arg(long, value_delimiter = ',')]
    node_labels: Vec<String>,
    /// The HTTPS port; 0 disables the server.
    #[arg(long)]
    port: Option<u16>,
    #[arg(long)]
    address: Option<IpAddr>,
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// CA that signs the client certificates the server accepts.
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    #[arg(long)]
    max_pods: Option<u32>,
    #[arg(long)]
    node_status_update_frequency: Option<String>,
    /// Where to write the node's CNI configuration when it is missing.
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// The bridge device that configuration creates.
    #[arg(long, default_value = "skiff0")]
    cni_bridge: String,
    #[arg(long)]
    cgroup_root: Option<String>,
    /// Hard eviction thresholds, e.g. `memory.available<100Mi,nodefs.available<10%`; empty turns eviction off.
    #[arg(long)]
    eviction_hard: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let file = match &options.config {
        Some(path) => KubeletConfiguration::load(path)?,
        None => KubeletConfiguration::default(),
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let node_name = options.hostname_override.clone().unwrap_or(hostname);
    let mut config = skiff_kubelet::Config::new(&node_name);
    config.root_dir = options.root_dir.clone();
    config.pod_logs_dir = options
        .pod_logs_dir
        .clone()
        .or(file.pod_logs_dir)
        .unwrap_or(config.pod_logs_dir);
    config.pod_manifest_path = options.pod_manifest_path.clone().or(file.static_pod_path);
    config.pod_cidr = options.pod_cidr.clone().or(file.pod_cidr);
    config.node_ip = options.node_ip;
    config.cluster_dns = if options.cluster_dns.is_empty() {
        file.cluster_dns.unwrap_or_default()
    } else {
        options.cluster_dns.clone()
    };
    config.cluster_domain = options
        .cluster_domain
        .clone()
        .or(file.cluster_domain)
        .unwrap_or(config.cluster_domain);
    config.register_with_taints = if options.register_with_taints.is_empty() {
        file.register_with_taints.unwrap_or_default()
    } else {
        options
            .register_with_taints
            .iter()
            .map(|t| parse_taint(t))
            .collect::<anyhow::Result<_>>()?
    };
    for label in &options.node_labels {
        let (k, v) = label.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("invalid --node-labels entry {label:?}: want key=value")
        })?;
        config.node_labels.insert(k.into(), v.into());
    }
    config.port = options.port.or(file.port).unwrap_or(config.port);
    config.address = options.address.or(file.address).unwrap_or(config.address);
    config.tls_cert_file = options.tls_cert_file.clone().or(file.tls_cert_file);
    config.tls_private_key_file = options
        .tls_private_key_file
        .clone()
        .or(file.tls_private_key_file);
    config.client_ca_file = options.client_ca_file.clone().or(file
        .authentication
        .and_then(|a| a.x509)
        .and_then(|x| x.client_ca_file));
    config.max_pods = options
        .max_pods
        .or(file.max_pods)
        .unwrap_or(config.max_pods);
    if let Some(f) = options
        .node_status_update_frequency
        .clone()
        .or(file.node_status_update_frequency)
    {
        config.node_status_update_frequency = parse_duration(&f)?;
    }
    if let Some(d) = file.node_lease_duration_seconds {
        config.lease_duration_seconds = d;
    }
    config.cni_conf_dir = options.cni_conf_dir.clone();
    config.cni_bridge = options.cni_bridge.clone();
    config.cgroup_root = options
        .cgroup_root
        .clone()
        .or(file.cgroup_root)
        .unwrap_or(config.cgroup_root);
    if let Some(text) = &options.eviction_hard {
        config.eviction_hard = skiff_kubelet::eviction::parse_thresholds(text)?;
    } else if let Some(map) = &file.eviction_hard {
        let text: Vec<String> = map.iter().map(|(k, v)| format!("{k}<{v}")).collect();
        config.eviction_hard = skiff_kubelet::eviction::parse_thresholds(&text.join(","))?;
    }
    let endpoint = file
        .container_runtime_endpoint
        .filter(|_| options.container_runtime_endpoint == "unix:///run/containerd/containerd.sock")
        .unwrap_or(options.container_runtime_endpoint.clone());
    let fake = options.runtime == "fake";
    if fake {
        config.manage_host = false;
        config.write_cni_config = false;
    }

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let kubeconfig = options
            .kubeconfig
            .clone()
            .or(options.bootstrap_kubeconfig.clone());
        let client = match kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(&path)?;
                let c = kube::Config::from_custom_kubeconfig(
                    kc,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await?;
                kube::Client::try_from(c)?
            }
            None => kube::Client::try_default().await?,
        };
        let rt: Arc<dyn cri::Runtime> = if fake {
            let f = cri::fake::Fake::new();
            for image in ["skiff.local/pause:3.10", "skiff.local/testhost:1.0"] {
                f.add_image(image);
            }
            Arc::new(f)
        } else {
            loop {
                match cri::remote::Remote::connect(&endpoint).await {
                    Ok(r) => break Arc::new(r),
                    Err(err) => {
                        tracing::warn!("waiting for the container runtime: {err}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        };
        skiff_kubelet::run(config, client, rt).await
    })
}
