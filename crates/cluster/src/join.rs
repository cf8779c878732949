//! `skiffctl join`'s credentials: with a bootstrap token, submit a
//! CertificateSigningRequest for `system:node:<name>` (signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, as upstream's kubelet
//! does), wait for the controller manager to approve and sign it, and write
//! the kubelet's kubeconfig with the issued certificate.

use crate::config::{self, Credential, Layout, Settings};
use anyhow::Context as _;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// Whether `token` has a bootstrap token's shape: `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn valid_token(token: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(token.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

async fn client(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Gets the kubelet's certificate unless `kubelet.kubeconfig` exists.
pub async fn bootstrap(l: &Layout, s: &Settings, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    if l.kubelet_kubeconfig().exists() {
        return Ok(());
    }
    let server = s.server.as_deref().context("no --server")?;
    let token = s.token.as_deref().context("no --token")?;
    let ca = match &s.certificate_authority {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let boot = config::kubeconfig(
        server,
        ca.as_deref(),
        "kubelet-bootstrap",
        Credential::Token(token),
    );
    crate::pki::write_private(&l.bootstrap_kubeconfig(), &boot)?;
    let client = client(&boot).await?;
    // Without --certificate-authority, the cluster's CA bundle as the API
    // server publishes it (kube-public may be readable to bootstrappers).
    let ca = match ca {
        Some(ca) => ca,
        None => {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
            cms.get("kube-root-ca.crt")
                .await
                .ok()
                .and_then(|cm| cm.data?.get("ca.crt").cloned())
                .context("could not read the cluster CA (kube-public/kube-root-ca.crt); pass --certificate-authority")?
        }
    };
    std::fs::write(l.kubelet_ca(), &ca)?;

    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name =
        crate::pki::subject(&format!("system:node:{}", s.node_name), &["system:nodes"]);
    let request = params.serialize_request(&key)?.pem()?;
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let name = format!(
        "node-csr-{}-{}",
        s.node_name,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let csr = CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(request.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    csrs.create(&PostParams::default(), &csr)
        .await
        .with_context(|| format!("creating the CertificateSigningRequest {name}"))?;
    eprintln!(
        "submitted CertificateSigningRequest {name}; waiting for it to be approved and signed"
    );
    let cert = loop {
        anyhow::ensure!(
            !stop.load(Ordering::SeqCst),
            "stopped while waiting for {name}"
        );
        if let Ok(csr) = csrs.get(&name).await
            && let Some(status) = csr.status
        {
            for c in status.conditions.iter().flatten() {
                if (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True" {
                    anyhow::bail!(
                        "CertificateSigningRequest {name} {}: {}",
                        c.type_,
                        c.message.clone().unwrap_or_default()
                    );
                }
            }
            if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
                break String::from_utf8(cert.0)?;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let text = config::kubeconfig(
        server,
        Some(&ca),
        "kubelet",
        Credential::Certificate {
            cert: &cert,
            key: &key.serialize_pem(),
        },
    );
    crate::pki::write_private(&l.kubelet_kubeconfig(), &text)
}

/// How long a joined node waits for the node IPAM controller.
const POD_CIDR_WAIT: Duration = Duration::from_secs(60);

/// The pod CIDR the cluster allocates to this node, for the kubelet's
/// `--pod-cidr`. The kubelet writes its CNI configuration once, as it
/// starts, from `--pod-cidr` or else its Node's `spec.podCIDR`; on a first
/// join there is no Node yet, and it would fall back to a fixed
/// 10.244.0.0/24 whatever the cluster CIDR (the server node's subnet, with
/// the default one). So the Node is registered here first, with the
/// kubelet's own credentials (a node may create its own Node; the kubelet
/// finds it registered and reconciles its labels), and the controller
/// manager's node IPAM gives it a subnet. `None` (the kubelet's fallback)
/// when no subnet comes, as on a cluster that does not allocate them.
pub async fn pod_cidr(
    l: &Layout,
    s: &Settings,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Option<String>> {
    use k8s_openapi::api::core::v1::Node;
    let kubeconfig = std::fs::read_to_string(l.kubelet_kubeconfig())
        .with_context(|| format!("reading {}", l.kubelet_kubeconfig().display()))?;
    let nodes: Api<Node> = Api::all(client(&kubeconfig).await?);
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": s.node_name,
            "labels": {"kubernetes.io/hostname": s.node_name},
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(err) => return Err(err).context(format!("registering Node {}", s.node_name)),
    }
    let deadline = tokio::time::Instant::now() + POD_CIDR_WAIT;
    loop {
        anyhow::ensure!(
            !stop.load(Ordering::SeqCst),
            "stopped while waiting for the pod CIDR of {}",
            s.node_name
        );
        if let Ok(node) = nodes.get(&s.node_name).await
            && let Some(cidr) = node.spec.and_then(|spec| spec.pod_cidr)
        {
            eprintln!("node {}: pod CIDR {cidr}", s.node_name);
            return Ok(Some(cidr));
        }
        if tokio::time::Instant::now() > deadline {
            eprintln!(
                "node {}: no pod CIDR allocated in {} s; the kubelet picks its own",
                s.node_name,
                POD_CIDR_WAIT.as_secs()
            );
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_tokens_have_a_six_and_sixteen_character_shape() {
        assert!(valid_token("abcdef.0123456789abcdef"));
        assert!(!valid_token("abcdef0123456789abcdef"));
        assert!(!valid_token("ABCDEF.0123456789abcdef"));
        assert!(!valid_token("abcde.0123456789abcdef"));
        assert!(!valid_token("abcdef.0123456789abcde"));
    }
}
