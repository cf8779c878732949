//! The node's CNI configuration: when none is there, the kubelet writes a
//! bridge + host-local + portmap chain over the node's `spec.podCIDR`, which
//! containerd picks up from its CNI configuration directory.

use crate::Kubelet;
use anyhow::Context as _;
use k8s_openapi::api::core::v1::Node;
use kube::Api;

/// The name of the file the kubelet writes.
pub const FILE: &str = "10-skiff.conflist";

/// Writes the CNI configuration unless one exists. The pod CIDR comes from
/// `--pod-cidr`, else from the Node (set by the node IPAM controller), else
/// a default.
pub async fn ensure_config(kubelet: &Kubelet) -> anyhow::Result<()> {
    let dir = &kubelet.config.cni_conf_dir;
    if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
        while let Some(e) = entries.next_entry().await? {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".conf") || name.ends_with(".conflist") || name.ends_with(".json") {
                return Ok(());
            }
        }
    }
    let mut cidr = kubelet.config.pod_cidr.clone();
    if cidr.is_none() {
        let nodes: Api<Node> = Api::all(kubelet.client.clone());
        if let Ok(Some(node)) = nodes.get_opt(&kubelet.config.node_name).await {
            cidr = node.spec.and_then(|s| s.pod_cidr);
        }
    }
    let cidr = cidr.unwrap_or_else(|| "10.244.0.0/24".into());
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    let text = render(
        &kubelet.config.cni_bridge,
        &cidr,
        &kubelet.config.root_dir.join("cni-ipam"),
    );
    let path = dir.join(FILE);
    tokio::fs::write(&path, text)
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), %cidr, "wrote the node's CNI configuration");
    Ok(())
}

/// The CNI network name of the pods' network; the bridge plugin tags the
/// iptables rules it makes for a pod with it.
pub const NETWORK_NAME: &str = "skiff";

/// The configuration list for `cidr` on `bridge`.
pub fn render(bridge: &str, cidr: &str, ipam_dir: &std::path::Path) -> String {
    let config = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    serde_json::to_string_pretty(&config).expect("static JSON")
}
