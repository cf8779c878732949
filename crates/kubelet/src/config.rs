//! The kubelet's settings: upstream's flag names, and a `--config` file in
//! upstream's `KubeletConfiguration` shape (`kubelet.config.k8s.io/v1beta1`)
//! for the same settings; a flag given on the command line wins over the file.

use k8s_openapi::api::core::v1::Taint;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The settings a kubelet runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    pub root_dir: PathBuf,
    pub pod_logs_dir: PathBuf,
    pub pod_manifest_path: Option<PathBuf>,
    pub pod_cidr: Option<String>,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub register_with_taints: Vec<Taint>,
    pub node_labels: BTreeMap<String, String>,
    pub max_pods: u32,
    /// The HTTPS port (10250); 0 serves nothing (hollow nodes).
    pub port: u16,
    pub address: IpAddr,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// CA bundle that signs client certificates the server accepts
    /// (the API server's kubelet client certificate).
    pub client_ca_file: Option<PathBuf>,
    pub node_status_update_frequency: Duration,
    pub lease_duration_seconds: i32,
    /// Where the CNI configuration goes when the kubelet writes it.
    pub cni_conf_dir: PathBuf,
    /// Whether to write the node's CNI configuration when it is missing.
    pub write_cni_config: bool,
    /// The bridge the CNI configuration creates (one per simulated node).
    pub cni_bridge: String,
    /// Whether to manage cgroups and mounts (false for hollow nodes).
    pub manage_host: bool,
    /// `/kubepods` by default: the parent of every pod's cgroup.
    pub cgroup_root: String,
    /// Hard eviction thresholds (`--eviction-hard`).
    pub eviction_hard: Vec<crate::eviction::Threshold>,
}

impl Config {
    /// Settings for `node_name` with upstream's defaults.
    pub fn new(node_name: &str) -> Config {
        Config {
            node_name: node_name.to_string(),
            node_ip: None,
            root_dir: PathBuf::from("/var/lib/kubelet"),
            pod_logs_dir: PathBuf::from("/var/log/pods"),
            pod_manifest_path: None,
            pod_cidr: None,
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            register_with_taints: Vec::new(),
            node_labels: BTreeMap::new(),
            max_pods: 110,
            port: 10250,
            address: IpAddr::from([0, 0, 0, 0]),
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
            node_status_update_frequency: Duration::from_secs(10),
            lease_duration_seconds: 40,
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            write_cni_config: true,
            cni_bridge: "skiff0".into(),
            manage_host: true,
            cgroup_root: "/kubepods".into(),
            eviction_hard: crate::eviction::parse_thresholds(
                crate::eviction::DEFAULT_EVICTION_HARD,
            )
            .expect("valid default"),
        }
    }

    /// A pod's directory under the root dir.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root_dir.join("pods").join(uid)
    }
}

/// The parts of upstream's `KubeletConfiguration` file Skiff reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    pub authentication: Option<Authentication>,
    pub static_pod_path: Option<PathBuf>,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<IpAddr>>,
    pub cluster_domain: Option<String>,
    pub register_with_taints: Option<Vec<Taint>>,
    pub max_pods: Option<u32>,
    pub pod_logs_dir: Option<PathBuf>,
    pub container_runtime_endpoint: Option<String>,
    pub node_status_update_frequency: Option<String>,
    pub node_lease_duration_seconds: Option<i32>,
    pub cgroup_root: Option<String>,
    pub eviction_hard: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    pub x509: Option<X509>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509 {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<PathBuf>,
}

impl KubeletConfiguration {
    /// Reads a configuration file, refusing a kind or version it is not.
    pub fn load(path: &std::path::Path) -> anyhow::Result<KubeletConfiguration> {
        let text = std::fs::read_to_string(path)?;
        let config: KubeletConfiguration = serde_saphyr::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if let Some(kind) = &config.kind
            && kind != "KubeletConfiguration"
        {
            anyhow::bail!(
                "{}: kind is {kind}, want KubeletConfiguration",
                path.display()
            );
        }
        if let Some(v) = &config.api_version
            && v != "kubelet.config.k8s.io/v1beta1"
        {
            anyhow::bail!(
                "{}: apiVersion {v} is not kubelet.config.k8s.io/v1beta1",
                path.display()
            );
        }
        Ok(config)
    }
}

/// Parses a Go duration as the configuration file writes them (`10s`, `1m30s`, `500ms`).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    skiff_api_types::duration::parse_flag_duration(text).map_err(anyhow::Error::msg)
}

/// Parses `--register-with-taints` entries: `key=value:Effect` or `key:Effect`.
pub fn parse_taint(text: &str) -> anyhow::Result<Taint> {
    let (kv, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("invalid taint {text:?}: want key[=value]:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        anyhow::bail!(
            "invalid taint {text:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
        );
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        anyhow::bail!("invalid taint {text:?}: empty key");
    }
    Ok(Taint {
        key: key.into(),
        value,
        effect: effect.into(),
        time_added: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn taints() {
        let t = parse_taint("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let t = parse_taint("node.kubernetes.io/special:NoExecute").unwrap();
        assert_eq!(t.value, None);
        assert!(parse_taint("x=y:Sometimes").is_err());
        assert!(parse_taint("nocolon").is_err());
    }

    #[test]
    fn configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.yaml");
        std::fs::write(
            &path,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS: [10.0.0.10]\nclusterDomain: example.local\nnodeStatusUpdateFrequency: 5s\nauthentication:\n  x509:\n    clientCAFile: /x/ca.crt\n",
        )
        .unwrap();
        let c = KubeletConfiguration::load(&path).unwrap();
        assert_eq!(
            c.cluster_dns.unwrap(),
            vec!["10.0.0.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(c.cluster_domain.as_deref(), Some("example.local"));
        std::fs::write(&path, "kind: Pod\n").unwrap();
        assert!(KubeletConfiguration::load(&path).is_err());
    }
}
