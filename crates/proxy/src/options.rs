//! Command-line flags and the `--config` file, under kube-proxy's names.
//! Flags given on the command line override the file; both override
//! upstream's defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use skiff_api_types::duration::parse_flag_duration;

use crate::proxier::NodePortAddresses;
use crate::render::RenderSettings;

/// The Skiff proxy: kube-proxy's iptables mode.
#[derive(Parser, Debug, Default)]
#[command(name = "skiff-proxy", version)]
pub struct Options {
    /// Path to a kubeconfig file with authorization and master location.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The address of the API server (overrides the kubeconfig's).
    #[arg(long)]
    pub master: Option<String>,
    /// The name of this node, instead of the host name.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The pods' CIDR: traffic to cluster IPs from outside it is masqueraded.
    #[arg(long = "cluster-cidr")]
    pub cluster_cidr: Option<String>,
    /// Minimum time between syncs of the rules (Go duration).
    #[arg(long, value_parser = parse_flag_duration)]
    pub iptables_min_sync_period: Option<Duration>,
    /// Maximum time between full syncs of the rules (Go duration).
    #[arg(long, value_parser = parse_flag_duration)]
    pub iptables_sync_period: Option<Duration>,
    /// The bit of the fwmark that marks packets for SNAT (0-31).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=31))]
    pub iptables_masquerade_bit: Option<u32>,
    /// Masquerade all traffic sent to cluster IPs.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub masquerade_all: Option<bool>,
    /// Accept node ports on 127.0.0.1 (sets route_localnet).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub iptables_localhost_nodeports: Option<bool>,
    /// Where node ports are accepted: CIDRs, or "primary"; empty means every local address.
    #[arg(long, value_delimiter = ',')]
    pub nodeport_addresses: Option<Vec<String>>,
    /// The proxy mode; only "iptables" is implemented.
    #[arg(long)]
    pub proxy_mode: Option<String>,
    /// A KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Remove every rule and chain the proxy makes, then exit.
    #[arg(long)]
    pub cleanup: bool,
    /// Address of /healthz and /livez (ip:port; empty disables).
    #[arg(long)]
    pub healthz_bind_address: Option<String>,
    /// Address of /metrics (ip:port; empty disables).
    #[arg(long)]
    pub metrics_bind_address: Option<String>,
    /// Log verbosity (klog's -v): 0-1 info, 2-3 debug, 4+ trace.
    #[arg(short = 'v', long = "v")]
    pub verbosity: Option<u8>,
    /// Run iptables, conntrack and sysctl inside this network namespace
    /// (`ip netns exec`), for tests.
    #[arg(long, hide = true)]
    pub netns: Option<String>,
}

/// The parts of KubeProxyConfiguration that apply.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubeProxyConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub client_connection: Option<ClientConnection>,
    pub hostname_override: Option<String>,
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    pub mode: Option<String>,
    pub healthz_bind_address: Option<String>,
    pub metrics_bind_address: Option<String>,
    pub node_port_addresses: Option<Vec<String>>,
    pub iptables: Option<IptablesConfiguration>,
}

/// `clientConnection`.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnection {
    pub kubeconfig: Option<String>,
}

/// `iptables`.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct IptablesConfiguration {
    pub masquerade_all: Option<bool>,
    pub masquerade_bit: Option<u32>,
    pub min_sync_period: Option<String>,
    pub sync_period: Option<String>,
    pub localhost_nodeports: Option<bool>,
}

/// Options and file merged, with defaults: what `main` turns into a
/// [`crate::Config`] once it has an API client configuration.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub kubeconfig: Option<PathBuf>,
    pub master: Option<String>,
    pub hostname: String,
    pub settings: RenderSettings,
    pub node_port_addresses: NodePortAddresses,
    pub min_sync_period: Duration,
    pub sync_period: Duration,
    pub healthz_bind_address: Option<SocketAddr>,
    pub metrics_bind_address: Option<SocketAddr>,
    pub netns: Option<String>,
}

/// Reads a `--config` file.
pub fn read_config_file(path: &Path) -> Result<KubeProxyConfiguration, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading --config {}: {e}", path.display()))?;
    parse_config(&text).map_err(|e| format!("--config {}: {e}", path.display()))
}

/// Parses a KubeProxyConfiguration document.
pub fn parse_config(text: &str) -> Result<KubeProxyConfiguration, String> {
    let cfg: KubeProxyConfiguration = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if let Some(v) = &cfg.api_version
        && v != "kubeproxy.config.k8s.io/v1alpha1"
    {
        return Err(format!(
            "apiVersion {v:?} is not supported; want kubeproxy.config.k8s.io/v1alpha1"
        ));
    }
    if let Some(k) = &cfg.kind
        && k != "KubeProxyConfiguration"
    {
        return Err(format!("kind {k:?}: want KubeProxyConfiguration"));
    }
    Ok(cfg)
}

/// `ip:port`, a bare IP (with `default_port`), or empty (disabled).
fn bind_address(flag: &str, value: &str, default_port: u16) -> Result<Option<SocketAddr>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(Some(SocketAddr::new(ip, default_port)));
    }
    Err(format!("invalid {flag} {value:?}: want ip:port"))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

impl Options {
    /// Merges flags over `file` over defaults, and checks the result.
    pub fn resolve(&self, file: Option<KubeProxyConfiguration>) -> Result<Resolved, String> {
        let file = file.unwrap_or_default();
        let ipt = file.iptables.unwrap_or_default();
        let mode = self.proxy_mode.clone().or(file.mode).unwrap_or_default();
        if !(mode.is_empty() || mode == "iptables") {
            return Err(format!(
                "proxy mode {mode:?} is not supported; skiff-proxy implements \"iptables\""
            ));
        }
        let duration = |flag: Option<Duration>, file: Option<String>, name: &str, default| match (
            flag, file,
        ) {
            (Some(d), _) => Ok(d),
            (None, Some(s)) => parse_flag_duration(&s).map_err(|e| format!("iptables.{name}: {e}")),
            (None, None) => Ok(default),
        };
        let min_sync_period = duration(
            self.iptables_min_sync_period,
            ipt.min_sync_period,
            "minSyncPeriod",
            Duration::from_secs(1),
        )?;
        let sync_period = duration(
            self.iptables_sync_period,
            ipt.sync_period,
            "syncPeriod",
            Duration::from_secs(30),
        )?;
        if sync_period.is_zero() {
            return Err("--iptables-sync-period must be greater than 0".into());
        }
        let masquerade_bit = self
            .iptables_masquerade_bit
            .or(ipt.masquerade_bit)
            .unwrap_or(14);
        if masquerade_bit > 31 {
            return Err(format!(
                "iptables.masqueradeBit {masquerade_bit} must be 0-31"
            ));
        }
        let cluster_cidr = self
            .cluster_cidr
            .clone()
            .or(file.cluster_cidr)
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        if let Some(c) = &cluster_cidr {
            // IPv4 only: of a dual-stack list, the IPv4 CIDR applies.
            let v4 = c.split(',').map(str::trim).find(|c| !c.contains(':'));
            match v4 {
                Some(v4)
                    if crate::localaddrs::cidr_contains(v4, std::net::Ipv4Addr::UNSPECIFIED)
                        .is_some() => {}
                _ => return Err(format!("invalid --cluster-cidr {c:?}: want an IPv4 CIDR")),
            }
        }
        let cluster_cidr = cluster_cidr.map(|c| {
            c.split(',')
                .map(str::trim)
                .find(|c| !c.contains(':'))
                .unwrap_or_default()
                .to_string()
        });
        let node_port_addresses = NodePortAddresses::parse(
            &self
                .nodeport_addresses
                .clone()
                .or(file.node_port_addresses)
                .unwrap_or_default(),
        )?;
        let localhost_node_ports = self
            .iptables_localhost_nodeports
            .or(ipt.localhost_nodeports)
            .unwrap_or(true);
        let healthz = self
            .healthz_bind_address
            .clone()
            .or(file.healthz_bind_address)
            .unwrap_or_else(|| "0.0.0.0:10256".into());
        let metrics = self
            .metrics_bind_address
            .clone()
            .or(file.metrics_bind_address)
            .unwrap_or_else(|| "127.0.0.1:10249".into());
        Ok(Resolved {
            kubeconfig: self.kubeconfig.clone().or(file
                .client_connection
                .and_then(|c| c.kubeconfig)
                .filter(|k| !k.is_empty())
                .map(PathBuf::from)),
            master: self.master.clone(),
            hostname: self
                .hostname_override
                .clone()
                .or(file.hostname_override)
                .map(|h| h.trim().to_lowercase())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(host_name),
            settings: RenderSettings {
                cluster_cidr,
                masquerade_all: self.masquerade_all.or(ipt.masquerade_all).unwrap_or(false),
                masquerade_bit,
                masquerade_random_fully: false,
                node_ports: crate::render::NodePortDestinations::AllLocal,
                localhost_node_ports,
            },
            node_port_addresses,
            min_sync_period,
            sync_period,
            healthz_bind_address: bind_address("--healthz-bind-address", &healthz, 10256)?,
            metrics_bind_address: bind_address("--metrics-bind-address", &metrics, 10249)?,
            netns: self.netns.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_upstreams() {
        let r = Options::default().resolve(None).unwrap();
        assert_eq!(r.min_sync_period, Duration::from_secs(1));
        assert_eq!(r.sync_period, Duration::from_secs(30));
        assert_eq!(r.settings.masquerade_bit, 14);
        assert_eq!(r.settings.mark(), "0x4000");
        assert_eq!(
            r.healthz_bind_address,
            Some("0.0.0.0:10256".parse().unwrap())
        );
        assert_eq!(
            r.metrics_bind_address,
            Some("127.0.0.1:10249".parse().unwrap())
        );
        assert_eq!(r.node_port_addresses, NodePortAddresses::All);
    }

    #[test]
    fn flags_parse_under_kube_proxys_names() {
        let o = Options::try_parse_from([
            "skiff-proxy",
            "--kubeconfig=/k",
            "--hostname-override=Node-1",
            "--cluster-cidr=10.244.0.0/16",
            "--iptables-min-sync-period=250ms",
            "--iptables-sync-period=1m",
            "--iptables-masquerade-bit=15",
            "--nodeport-addresses=10.0.0.0/8,127.0.0.0/8",
            "--healthz-bind-address=127.0.0.1:0",
            "--metrics-bind-address=",
        ])
        .unwrap();
        let r = o.resolve(None).unwrap();
        assert_eq!(r.hostname, "node-1");
        assert_eq!(r.settings.cluster_cidr.as_deref(), Some("10.244.0.0/16"));
        assert_eq!(r.min_sync_period, Duration::from_millis(250));
        assert_eq!(r.sync_period, Duration::from_secs(60));
        assert_eq!(r.settings.mark(), "0x8000");
        assert_eq!(
            r.node_port_addresses,
            NodePortAddresses::Cidrs(vec!["10.0.0.0/8".into(), "127.0.0.0/8".into()])
        );
        assert_eq!(r.metrics_bind_address, None);
    }

    #[test]
    fn the_config_file_applies_and_flags_override_it() {
        let file = parse_config(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclientConnection:\n  kubeconfig: /etc/k.conf\nclusterCIDR: 10.244.0.0/16\nmode: iptables\nhostnameOverride: n1\nnodePortAddresses: [primary]\nmetricsBindAddress: 0.0.0.0:10249\niptables:\n  masqueradeBit: 12\n  minSyncPeriod: 2s\n  syncPeriod: 45s\nconntrack:\n  maxPerCore: 0\n",
        )
        .unwrap();
        let o = Options::try_parse_from(["skiff-proxy", "--iptables-sync-period=10s"]).unwrap();
        let r = o.resolve(Some(file)).unwrap();
        assert_eq!(r.kubeconfig, Some(PathBuf::from("/etc/k.conf")));
        assert_eq!(r.hostname, "n1");
        assert_eq!(r.settings.masquerade_bit, 12);
        assert_eq!(r.min_sync_period, Duration::from_secs(2));
        assert_eq!(r.sync_period, Duration::from_secs(10));
        assert_eq!(r.node_port_addresses, NodePortAddresses::Primary);
        assert_eq!(
            r.metrics_bind_address,
            Some("0.0.0.0:10249".parse().unwrap())
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        assert!(
            parse_config("apiVersion: v1\n")
                .unwrap_err()
                .contains("not supported")
        );
        let o = Options::try_parse_from(["skiff-proxy", "--proxy-mode=ipvs"]).unwrap();
        assert!(o.resolve(None).unwrap_err().contains("ipvs"));
        let o = Options::try_parse_from(["skiff-proxy", "--cluster-cidr=banana"]).unwrap();
        assert!(o.resolve(None).unwrap_err().contains("--cluster-cidr"));
        assert!(Options::try_parse_from(["skiff-proxy", "--iptables-sync-period=-1s"]).is_err());
        assert!(Options::try_parse_from(["skiff-proxy", "--iptables-masquerade-bit=32"]).is_err());
    }
}
