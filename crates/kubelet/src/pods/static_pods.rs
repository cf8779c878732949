//! Static pods from `--pod-manifest-path`: every `.yaml`, `.yml` or `.json`
//! file there is a Pod the kubelet runs without the API server. Each gets the
//! name `<name>-<node>`, a uid derived from its content (so an edited file is
//! a new pod), and a mirror pod in the API (annotation
//! `kubernetes.io/config.mirror`, owned by the Node) that carries its status,
//! as upstream's kubelet does. A deleted mirror pod comes back; a removed file
//! stops the pod and deletes its mirror.

use super::Desired;
use crate::Kubelet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// How often the manifest directory is read (upstream: 20 s).
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Whether a pod from the API is a mirror of a static pod.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// Whether a pod the kubelet runs came from a file.
pub fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_SOURCE))
        .is_some_and(|s| s == "file")
}

/// Reads one manifest into the pod the kubelet runs.
pub fn load(path: &Path, node: &str) -> anyhow::Result<Pod> {
    let text = std::fs::read_to_string(path)?;
    let mut pod: Pod = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text)?
    } else {
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow::anyhow!("metadata.name: Required value"))?;
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        anyhow::bail!("spec.containers: Required value");
    }
    // The uid is a hash of the manifest and the node, as upstream's.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    node.hash(&mut hasher);
    let hash = format!("{:016x}", hasher.finish());
    pod.metadata.name = Some(format!("{name}-{node}"));
    pod.metadata.namespace = Some(
        pod.metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into()),
    );
    pod.metadata.uid = Some(hash.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_SOURCE.into(), "file".into());
    annotations.insert(CONFIG_HASH.into(), hash);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_string());
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        c.termination_message_path
            .get_or_insert_with(|| "/dev/termination-log".into());
    }
    Ok(pod)
}

/// Watches the manifest directory and keeps workers and mirror pods in step.
pub async fn run(kubelet: Arc<Kubelet>, dir: std::path::PathBuf) {
    let mut running: HashMap<String, Arc<Pod>> = HashMap::new();
    loop {
        let mut found: HashMap<String, Arc<Pod>> = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let wanted = path
                    .extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
                if !wanted || entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                match load(&path, &kubelet.config.node_name) {
                    Ok(pod) => {
                        found.insert(pod.metadata.uid.clone().unwrap_or_default(), Arc::new(pod));
                    }
                    Err(err) => {
                        tracing::warn!(path = %path.display(), "ignoring static pod manifest: {err:#}")
                    }
                }
            }
        }
        for (uid, pod) in &found {
            if !running.contains_key(uid) {
                tracing::info!(pod = ?pod.metadata.name, "starting static pod");
                kubelet.pods.static_uids.lock().unwrap().insert(uid.clone());
                kubelet.pods.dispatch(&kubelet, Desired::Run(pod.clone()));
            }
            if let Err(err) = ensure_mirror(&kubelet, pod).await {
                tracing::debug!(pod = ?pod.metadata.name, "mirror pod: {err}");
            }
        }
        for (uid, pod) in &running {
            if !found.contains_key(uid) {
                tracing::info!(pod = ?pod.metadata.name, "static pod manifest removed; stopping the pod");
                kubelet.pods.dispatch(&kubelet, Desired::Gone(pod.clone()));
                kubelet.pods.static_uids.lock().unwrap().remove(uid);
                // The mirror goes unless a new version of the manifest took its name.
                if !found.values().any(|p| p.metadata.name == pod.metadata.name) {
                    let _ = delete_mirror(&kubelet, pod).await;
                }
            }
        }
        running = found;
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

async fn ensure_mirror(kubelet: &Kubelet, pod: &Pod) -> kube::Result<()> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(kubelet.client.clone(), &namespace);
    if let Some(existing) = pods.get_opt(&name).await? {
        let mirror_hash = existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_MIRROR))
            .cloned();
        if mirror_hash.as_deref() == Some(hash.as_str())
            && existing.metadata.deletion_timestamp.is_none()
        {
            return Ok(());
        }
        // A stale mirror (an older manifest), or a pod of the same name
        // that is not ours: replace it, as upstream does.
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        pods.delete(&name, &params).await?;
    }
    let nodes: Api<Node> = Api::all(kubelet.client.clone());
    let node_uid = nodes
        .get(&kubelet.config.node_name)
        .await?
        .metadata
        .uid
        .unwrap_or_default();
    let mut mirror = pod.clone();
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    mirror.status = None;
    mirror
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_MIRROR.into(), hash);
    mirror.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: kubelet.config.node_name.clone(),
        uid: node_uid,
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    pods.create(&PostParams::default(), &mirror).await?;
    Ok(())
}

async fn delete_mirror(kubelet: &Kubelet, pod: &Pod) -> kube::Result<()> {
    let pods: Api<Pod> = Api::namespaced(
        kubelet.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete(pod.metadata.name.as_deref().unwrap_or_default(), &params)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_pods_named_after_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yaml");
        std::fs::write(&path, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: skiff.local/testhost:1.0\n").unwrap();
        let pod = load(&path, "n1").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        assert!(is_static(&pod));
        let uid = pod.metadata.uid.clone().unwrap();
        assert_eq!(
            load(&path, "n1").unwrap().metadata.uid.unwrap(),
            uid,
            "same content, same uid"
        );
        assert_ne!(
            load(&path, "n2").unwrap().metadata.uid.unwrap(),
            uid,
            "another node, another uid"
        );
        std::fs::write(&path, "metadata: {name: web}\nspec: {containers: []}\n").unwrap();
        assert!(
            load(&path, "n1")
                .unwrap_err()
                .to_string()
                .contains("spec.containers")
        );
    }
}
