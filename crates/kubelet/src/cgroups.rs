//! Pod cgroups under the cgroupfs driver (cgroup v1): every pod lives at
//! `<cgroup-root>/<qos>/pod<uid>` (Guaranteed pods directly under the root, as
//! upstream lays them out); runc creates the directories when the sandbox and
//! containers start, and the kubelet removes them once the pod is torn down.

use k8s_openapi::api::core::v1::Pod;
use std::path::Path;

/// A pod's QoS class, computed from its containers' requests and limits as
/// upstream's `GetPodQOS` does.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut any_set = false;
    let mut guaranteed = true;
    for c in containers {
        let resources = c.resources.clone().unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        for name in ["cpu", "memory"] {
            let request = requests.get(name).filter(|q| !is_zero(&q.0));
            let limit = limits.get(name).filter(|q| !is_zero(&q.0));
            if request.is_some() || limit.is_some() {
                any_set = true;
            }
            match (request, limit) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r.0 != l.0 => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any_set, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn is_zero(quantity: &str) -> bool {
    skiff_api_types::quantity::Quantity::parse(quantity).is_ok_and(|q| q.is_zero())
}

/// The pod's cgroup parent path, as CRI's `cgroup_parent` takes it.
pub fn pod_cgroup(root: &str, pod: &Pod) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    match qos_class(pod) {
        "Guaranteed" => format!("{root}/pod{uid}"),
        "Burstable" => format!("{root}/burstable/pod{uid}"),
        _ => format!("{root}/besteffort/pod{uid}"),
    }
}

/// Removes a pod's cgroup from every mounted v1 hierarchy, innermost first.
/// Missing directories are fine; a busy one (processes still in it) is
/// reported.
pub fn remove_pod_cgroup(cgroup: &str) -> std::io::Result<()> {
    let base = Path::new("/sys/fs/cgroup");
    let Ok(entries) = std::fs::read_dir(base) else {
        return Ok(());
    };
    let mut result = Ok(());
    for entry in entries.flatten() {
        let dir = entry.path().join(cgroup.trim_start_matches('/'));
        if !dir.is_dir() {
            continue;
        }
        if let Err(err) = remove_tree(&dir) {
            result = Err(err);
        }
    }
    result
}

fn remove_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether any hierarchy still has the pod's cgroup.
pub fn pod_cgroup_exists(cgroup: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return false;
    };
    entries
        .flatten()
        .any(|e| e.path().join(cgroup.trim_start_matches('/')).is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]}
        }))
        .unwrap()
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&pod(serde_json::json!({}))), "BestEffort");
        let g = pod(
            serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}),
        );
        assert_eq!(qos_class(&g), "Guaranteed");
        assert_eq!(pod_cgroup("/kubepods", &g), "/kubepods/podu1");
        let b = pod(serde_json::json!({"requests": {"cpu": "100m"}}));
        assert_eq!(qos_class(&b), "Burstable");
        assert_eq!(pod_cgroup("/kubepods", &b), "/kubepods/burstable/podu1");
        assert_eq!(
            qos_class(&pod(serde_json::json!({"requests": {"cpu": "0"}}))),
            "BestEffort"
        );
    }
}
