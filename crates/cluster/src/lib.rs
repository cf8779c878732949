//! Bringing a Skiff cluster up and down on this machine: `skiffctl up`,
//! `down`, `status` and `join`.
//!
//! Each is a clap argument struct (flattened into skiffctl's subcommands) and
//! an async function that carries it out. `up` and `join` write the cluster's
//! settings to `<data-dir>/cluster.json` and start a detached supervisor
//! (skiffctl itself, re-executed with [`supervisor::ENV`] set, in its own
//! session) that runs every component as its own process and restarts it
//! when it exits; `status` and `down` read what the supervisor records.
#![forbid(unsafe_code)]

pub mod cleanup;
pub mod config;
pub mod health;
pub mod join;
pub mod pki;
pub mod state;
pub mod supervisor;
mod up;

use config::{Layout, Mode, Settings};
use std::path::PathBuf;

/// containerd's sandbox ("pause") image: imported from the images directory,
/// since nothing can be pulled.
pub const SANDBOX_IMAGE: &str = "skiff.local/pause:3.10";

/// Flags `up` and `join` share: where things live and the node's wiring.
/// A data directory keeps the settings it was last started with
/// (`cluster.json`): a flag given again changes its setting, the others stay.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Where the cluster's data, certificates, logs and pid files live.
    #[arg(long, default_value = ".skiff")]
    pub data_dir: PathBuf,
    /// OCI archives (*.tar) imported into containerd at start, the pause
    /// image among them (`make images` builds them) [default: <data-dir>/images].
    #[arg(long)]
    pub images_dir: Option<PathBuf>,
    /// The node's name [default: the hostname].
    #[arg(long)]
    pub node_name: Option<String>,
    /// The Linux bridge the pods' network hangs off [default: skiff0]
    #[arg(long)]
    pub cni_bridge: Option<String>,
    /// The pods' address range (each node gets a subnet of it) [default: 10.244.0.0/16]
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// The cluster DNS Service's ClusterIP, given to pods as their resolver [default: 10.96.0.10]
    #[arg(long)]
    pub cluster_dns: Option<String>,
    /// The cluster's DNS domain [default: cluster.local]
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// The kubelet's HTTPS port [default: 10250]
    #[arg(long)]
    pub kubelet_port: Option<u16>,
    /// skiff-proxy's /healthz port [default: 10256]
    #[arg(long)]
    pub proxy_healthz_port: Option<u16>,
    /// skiff-proxy's metrics port (on 127.0.0.1) [default: 10249]
    #[arg(long)]
    pub proxy_metrics_port: Option<u16>,
    /// The kubelet's hard eviction thresholds, e.g.
    /// `memory.available<100Mi,nodefs.available<5%` [default: the kubelet's].
    #[arg(long)]
    pub eviction_hard: Option<String>,
    /// How long to wait for the cluster to come up, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// `skiffctl up`: start a single-node cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// The API server's HTTPS port [default: 6443]
    #[arg(long)]
    pub secure_port: Option<u16>,
    /// etcd client URLs (comma-separated) for the API server's store
    /// [default: its embedded store].
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// The range Service ClusterIPs come from [default: 10.96.0.0/12]
    #[arg(long)]
    pub service_cluster_ip_range: Option<String>,
    /// The size of each node's pod subnet [default: 24]
    #[arg(long)]
    pub node_cidr_mask_size: Option<u8>,
    /// The controller manager's HTTPS /healthz port [default: 10257]
    #[arg(long)]
    pub controller_manager_port: Option<u16>,
    /// The scheduler's HTTPS /healthz port [default: 10259]
    #[arg(long)]
    pub scheduler_port: Option<u16>,
    /// skiff-dns's DNS port (UDP and TCP) on every address [default: 53]
    #[arg(long)]
    pub dns_port: Option<u16>,
    /// skiff-dns's /health port [default: 8080]
    #[arg(long)]
    pub dns_health_port: Option<u16>,
    /// skiff-dns's /ready port [default: 8181]
    #[arg(long)]
    pub dns_ready_port: Option<u16>,
    /// skiff-dns's metrics port [default: 9153]
    #[arg(long)]
    pub dns_metrics_port: Option<u16>,
}

/// `skiffctl down`: stop the cluster this machine runs.
#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    /// Where the cluster's data, certificates and logs live.
    #[arg(long, default_value = ".skiff")]
    pub data_dir: PathBuf,
    /// Also delete the data.
    #[arg(long)]
    pub purge: bool,
}

/// `skiffctl status`: each component's health.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Where the cluster's data, certificates and logs live.
    #[arg(long, default_value = ".skiff")]
    pub data_dir: PathBuf,
}

/// `skiffctl join`: run a kubelet and proxy here for an existing cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct JoinArgs {
    /// The API server's URL.
    #[arg(long)]
    pub server: String,
    /// A bootstrap token (`abcdef.0123456789abcdef`).
    #[arg(long)]
    pub token: String,
    /// The cluster's CA certificate (PEM) [default: read from the cluster's
    /// kube-public/kube-root-ca.crt ConfigMap, the server unverified].
    #[arg(long)]
    pub certificate_authority: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_lowercase()
}

impl NodeArgs {
    /// The settings an earlier start of this data directory saved (when it
    /// was started the same way, `up` or `join`), else the defaults; then
    /// every flag given.
    fn settings(&self, l: &Layout, mode: Mode) -> Settings {
        let mut s = std::fs::read(l.settings())
            .ok()
            .and_then(|b| serde_json::from_slice::<Settings>(&b).ok())
            .filter(|s| s.mode == mode)
            .unwrap_or_else(|| Settings::defaults(mode, hostname(), l.images()));
        set(&mut s.node_name, &self.node_name);
        set(&mut s.bridge, &self.cni_bridge);
        set(&mut s.cluster_cidr, &self.cluster_cidr);
        set(&mut s.dns_service_ip, &self.cluster_dns);
        set(&mut s.cluster_domain, &self.cluster_domain);
        set(&mut s.kubelet_port, &self.kubelet_port);
        set(&mut s.proxy_healthz_port, &self.proxy_healthz_port);
        set(&mut s.proxy_metrics_port, &self.proxy_metrics_port);
        set(&mut s.eviction_hard, &self.eviction_hard);
        if let Some(d) = &self.images_dir {
            s.images_dir = Layout::new(d).map(|d| d.dir).unwrap_or_else(|_| d.clone());
        }
        s
    }
}

fn set<T: Clone>(field: &mut T, flag: &Option<T>) {
    if let Some(v) = flag {
        *field = v.clone();
    }
}

impl UpArgs {
    fn settings(&self, l: &Layout) -> Settings {
        let mut s = self.node.settings(l, Mode::Server);
        set(&mut s.secure_port, &self.secure_port);
        if !self.etcd_servers.is_empty() {
            s.etcd_servers = self.etcd_servers.clone();
        }
        set(&mut s.service_cidr, &self.service_cluster_ip_range);
        set(&mut s.node_cidr_mask_size, &self.node_cidr_mask_size);
        set(
            &mut s.controller_manager_port,
            &self.controller_manager_port,
        );
        set(&mut s.scheduler_port, &self.scheduler_port);
        set(&mut s.dns_port, &self.dns_port);
        set(&mut s.dns_health_port, &self.dns_health_port);
        set(&mut s.dns_ready_port, &self.dns_ready_port);
        set(&mut s.dns_metrics_port, &self.dns_metrics_port);
        s
    }
}

/// Starts a single-node cluster (or, run as the supervisor, supervises it).
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    if let Some(dir) = std::env::var_os(supervisor::ENV) {
        return supervisor::run(std::path::Path::new(&dir)).await;
    }
    let l = Layout::new(&args.node.data_dir)?;
    let settings = args.settings(&l);
    up::up(&l, settings, args.node.timeout).await
}

/// Stops the cluster: components, then the pods, then containerd, and what
/// they leave on the host.
pub async fn down(args: DownArgs) -> anyhow::Result<()> {
    let l = Layout::new(&args.data_dir)?;
    up::down(&l, args.purge).await
}

/// Shows each component's pid, restarts and health.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let l = Layout::new(&args.data_dir)?;
    up::status(&l).await
}

/// Runs containerd, a kubelet and the proxy here for the cluster at
/// `--server`, the kubelet's certificate obtained with the bootstrap token.
pub async fn join(args: JoinArgs) -> anyhow::Result<()> {
    if let Some(dir) = std::env::var_os(supervisor::ENV) {
        return supervisor::run(std::path::Path::new(&dir)).await;
    }
    anyhow::ensure!(
        join::valid_token(&args.token),
        "--token {:?} is not a bootstrap token (abcdef.0123456789abcdef)",
        args.token
    );
    let l = Layout::new(&args.node.data_dir)?;
    let mut settings = args.node.settings(&l, Mode::Node);
    settings.server = Some(args.server.clone());
    settings.token = Some(args.token.clone());
    settings.certificate_authority = match &args.certificate_authority {
        Some(p) => Some(Layout::new(p)?.dir),
        None => None,
    };
    up::up(&l, settings, args.node.timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        up: UpArgs,
    }

    fn up_settings(args: &[&str]) -> Settings {
        let cli =
            Cli::try_parse_from(std::iter::once("skiffctl").chain(args.iter().copied())).unwrap();
        let l = Layout::new(&cli.up.node.data_dir).unwrap();
        cli.up.settings(&l)
    }

    #[test]
    fn without_flags_up_uses_the_shared_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let s = up_settings(&["--data-dir", dir.path().to_str().unwrap()]);
        assert_eq!(s.service_cidr, "10.96.0.0/12");
        assert_eq!(s.cluster_cidr, "10.244.0.0/16");
        assert_eq!(s.dns_service_ip, "10.96.0.10");
        assert_eq!(
            (s.secure_port, s.kubelet_port, s.dns_port),
            (6443, 10250, 53)
        );
        assert_eq!(s.images_dir, dir.path().join("images"));
        assert_eq!(s.node_name, hostname());
    }

    #[test]
    fn a_data_dir_keeps_its_settings_and_flags_given_again_change_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let first = up_settings(&[
            "--data-dir",
            d,
            "--secure-port",
            "16443",
            "--dns-port",
            "10053",
            "--etcd-servers",
            "http://127.0.0.1:2379",
        ]);
        std::fs::write(
            dir.path().join("cluster.json"),
            serde_json::to_vec(&first).unwrap(),
        )
        .unwrap();
        let again = up_settings(&["--data-dir", d]);
        assert_eq!(again, first);
        let changed = up_settings(&["--data-dir", d, "--dns-port", "5353"]);
        assert_eq!((changed.secure_port, changed.dns_port), (16443, 5353));
        assert_eq!(changed.etcd_servers, ["http://127.0.0.1:2379"]);
    }
}
