//! NodeRestriction (plugin/pkg/admission/noderestriction): a kubelet — a
//! user `system:node:<name>` in the group `system:nodes` — may modify only
//! its own Node (not its taints, nor labels outside the kubelet's set), its
//! own Lease and CSINode, the status of pods bound to it, and only mirror
//! pods bound to it; it may delete (or evict) only pods bound to it.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Operation, Request, is_mirror_pod, lookup, service_account::secret_names};
use crate::server::User;
use crate::status::ApiError;

pub const NAME: &str = "NodeRestriction";

const NODE_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";

/// Labels a kubelet sets on its own Node (kubeletapis.IsKubeletLabel).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// The node a user is, if it is one (upstream's NodeIdentity, as the Node
/// authorizer reads it): a user `system:node:<name>` in `system:nodes`;
/// `Some("")` for `system:node:` itself. Other members of `system:nodes` are
/// not nodes.
fn node_of(user: &User) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    user.name.strip_prefix(NODE_PREFIX)
}

fn operation(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    }
}

/// Checks writes other than deletions (upstream runs it in the mutating
/// phase, before anything else looks at the object).
pub async fn admit(req: &Request<'_>, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(node) = req.user.and_then(node_of) else {
        return Ok(());
    };
    if node.is_empty() {
        return Err(req.forbidden(
            obj,
            format!(
                "could not determine node from user {:?}",
                req.user.map(|u| u.name.as_str()).unwrap_or("")
            ),
        ));
    }
    let why = match (req.resource.group, req.resource.plural) {
        ("", "pods") => match req.subresource {
            None => match req.operation {
                Operation::Create => pod_create(req, node, obj).await?,
                op => Some(format!(
                    "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
                    operation(op)
                )),
            },
            Some("status") => pod_status(node, obj, old),
            Some(other) => Some(format!(
                "unexpected pod subresource {other:?}, only 'status' and 'eviction' are allowed"
            )),
        },
        ("", "nodes") => node_write(req.operation, node, obj, old),
        ("", "persistentvolumeclaims") => match req.subresource {
            Some("status") if req.operation == Operation::Update => None,
            Some("status") => Some(format!(
                "unexpected operation {:?}",
                operation(req.operation)
            )),
            _ => Some("may only update PVC status".into()),
        },
        ("coordination.k8s.io", "leases") => own_lease(node, obj),
        ("storage.k8s.io", "csinodes") => own_csinode(node, obj),
        _ => None,
    };
    match why {
        Some(why) => Err(req.forbidden(obj, why)),
        None => Ok(()),
    }
}

/// Checks deletions (and evictions, which delete).
pub fn validate_delete(req: &Request<'_>, current: &Value) -> Result<(), ApiError> {
    let Some(node) = req.user.and_then(node_of) else {
        return Ok(());
    };
    if node.is_empty() {
        return Err(req.forbidden(
            current,
            format!(
                "could not determine node from user {:?}",
                req.user.map(|u| u.name.as_str()).unwrap_or("")
            ),
        ));
    }
    let why = match (req.resource.group, req.resource.plural) {
        ("", "pods") => (current["spec"]["nodeName"] != node).then(|| {
            format!("node {node:?} can only delete pods with spec.nodeName set to itself")
        }),
        ("", "nodes") => node_write(Operation::Delete, node, current, None),
        ("", "persistentvolumeclaims") => Some("may only update PVC status".into()),
        ("coordination.k8s.io", "leases") => own_lease(node, current),
        ("storage.k8s.io", "csinodes") => own_csinode(node, current),
        _ => None,
    };
    match why {
        Some(why) => Err(req.forbidden(current, why)),
        None => Ok(()),
    }
}

/// A node creates only mirror pods of its own, owned by its Node, that
/// reference nothing else in the API.
async fn pod_create(
    req: &Request<'_>,
    node: &str,
    pod: &Value,
) -> Result<Option<String>, ApiError> {
    if !is_mirror_pod(pod) {
        return Ok(Some(format!(
            "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
        )));
    }
    if pod["spec"]["nodeName"] != node {
        return Ok(Some(format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        )));
    }
    let owners = pod["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match owners.as_slice() {
        [] => {
            return Ok(Some(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            )));
        }
        [owner] => {
            if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
                return Ok(Some(format!(
                    "node {node:?} can only create pods with an owner reference set to itself"
                )));
            }
            if owner["controller"] != true {
                return Ok(Some(format!(
                    "node {node:?} can only create pods with a controller owner reference set to itself"
                )));
            }
            if owner["blockOwnerDeletion"] == true {
                return Ok(Some(format!(
                    "node {node:?} must not set blockOwnerDeletion on an owner reference"
                )));
            }
            let nodes = lookup::resource("", "nodes");
            let Some(found) = lookup::get(req.api, nodes, None, node).await? else {
                return Err(ApiError::not_found(
                    crate::status::GroupResource {
                        group: "",
                        resource: "nodes",
                    },
                    node,
                ));
            };
            let uid = found["metadata"]["uid"].as_str().unwrap_or("");
            if owner["uid"] != uid {
                return Ok(Some(format!(
                    "node {node} UID mismatch: expected {uid} got {}",
                    owner["uid"].as_str().unwrap_or("")
                )));
            }
        }
        _ => {
            return Ok(Some(format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            )));
        }
    }
    Ok(references_api_objects(node, pod))
}

/// What a node's mirror pod may not reference.
fn references_api_objects(node: &str, pod: &Value) -> Option<String> {
    let spec = &pod["spec"];
    if spec["serviceAccountName"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        return Some(format!(
            "node {node:?} can not create pods that reference a service account"
        ));
    }
    if !secret_names(pod).is_empty() {
        return Some(format!(
            "node {node:?} can not create pods that reference secrets"
        ));
    }
    let containers = super::containers(spec);
    let mut config_maps = false;
    for c in containers {
        config_maps |= c["envFrom"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["configMapRef"].is_object());
        config_maps |= c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["valueFrom"]["configMapKeyRef"].is_object());
    }
    let volumes: Vec<&Value> = spec["volumes"].as_array().into_iter().flatten().collect();
    config_maps |= volumes.iter().any(|v| {
        v["configMap"].is_object()
            || v["projected"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["configMap"].is_object())
    });
    if config_maps {
        return Some(format!(
            "node {node:?} can not create pods that reference configmaps"
        ));
    }
    if spec["resourceClaims"]
        .as_array()
        .is_some_and(|c| !c.is_empty())
    {
        return Some(format!(
            "node {node:?} can not create pods that reference resourceclaims"
        ));
    }
    if volumes
        .iter()
        .any(|v| v["persistentVolumeClaim"].is_object())
    {
        return Some(format!(
            "node {node:?} can not create pods that reference persistentvolumeclaims"
        ));
    }
    None
}

/// A node updates the status of its own pods, and not their labels.
fn pod_status(node: &str, new: &Value, old: Option<&Value>) -> Option<String> {
    let old = old?;
    if old["spec"]["nodeName"] != node {
        return Some(format!(
            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
        ));
    }
    let labels = |p: &Value| {
        p["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    (labels(old) != labels(new))
        .then(|| format!("node {node:?} cannot update labels through pod status"))
}

/// A node writes only its own Node, never its taints or labels outside the
/// kubelet's set.
fn node_write(op: Operation, node: &str, new: &Value, old: Option<&Value>) -> Option<String> {
    let requested = new["metadata"]["name"].as_str().unwrap_or("");
    if requested != node {
        return Some(format!(
            "node {node:?} is not allowed to modify node {requested:?}"
        ));
    }
    match (op, old) {
        (Operation::Create, _) => {
            if !new["spec"]["configSource"].is_null() {
                return Some(format!(
                    "node {node:?} is not allowed to create pods with a non-nil configSource"
                ));
            }
            let forbidden = forbidden_labels(&modified_labels(new, None));
            (!forbidden.is_empty()).then(|| {
                format!(
                    "node {node:?} is not allowed to set the following labels: {}",
                    forbidden.into_iter().collect::<Vec<_>>().join(", ")
                )
            })
        }
        (Operation::Update, Some(old)) => {
            let source = &new["spec"]["configSource"];
            if !source.is_null() && *source != old["spec"]["configSource"] {
                return Some(format!(
                    "node {node:?} is not allowed to update configSource to a new non-nil configSource"
                ));
            }
            let taints = |n: &Value| n["spec"]["taints"].as_array().cloned().unwrap_or_default();
            if taints(new) != taints(old) {
                return Some(format!("node {node:?} is not allowed to modify taints"));
            }
            let forbidden = forbidden_labels(&modified_labels(new, Some(old)));
            (!forbidden.is_empty()).then(|| {
                format!(
                    "is not allowed to modify labels: {}",
                    forbidden.into_iter().collect::<Vec<_>>().join(", ")
                )
            })
        }
        _ => None,
    }
}

/// Labels added, removed or changed.
fn modified_labels(new: &Value, old: Option<&Value>) -> BTreeSet<String> {
    let labels = |o: Option<&Value>| {
        o.and_then(|o| o["metadata"]["labels"].as_object().cloned())
            .unwrap_or_default()
    };
    let (new, old) = (labels(Some(new)), labels(old));
    new.keys()
        .chain(old.keys())
        .filter(|k| new.get(*k) != old.get(*k))
        .cloned()
        .collect()
}

fn label_namespace(label: &str) -> &str {
    label.split_once('/').map_or("", |(ns, _)| ns)
}

fn in_namespace(ns: &str, domain: &str) -> bool {
    ns == domain
        || ns
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

fn forbidden_labels(modified: &BTreeSet<String>) -> BTreeSet<String> {
    modified
        .iter()
        .filter(|label| {
            let ns = label_namespace(label);
            let restriction = in_namespace(ns, "node-restriction.kubernetes.io");
            let kubernetes = in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io");
            let kubelet = KUBELET_LABELS.contains(&label.as_str())
                || KUBELET_LABEL_NAMESPACES.iter().any(|d| in_namespace(ns, d));
            restriction || (kubernetes && !kubelet)
        })
        .cloned()
        .collect()
}

fn own_lease(node: &str, lease: &Value) -> Option<String> {
    if lease["metadata"]["namespace"] != "kube-node-lease" {
        return None;
    }
    (lease["metadata"]["name"] != node)
        .then(|| "can only access node lease with the same name as the requesting node".into())
}

fn own_csinode(node: &str, csinode: &Value) -> Option<String> {
    (csinode["metadata"]["name"] != node)
        .then(|| "can only access CSINode with the same name as the requesting node".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: Default::default(),
        }
    }

    #[test]
    fn only_members_of_system_nodes_are_nodes() {
        assert_eq!(
            node_of(&user("system:node:n1", &["system:nodes"])),
            Some("n1")
        );
        assert_eq!(
            node_of(&user("system:node:n1", &["system:authenticated"])),
            None
        );
        assert_eq!(node_of(&user("system:node:", &["system:nodes"])), Some(""));
        assert_eq!(node_of(&user("kubelet", &["system:nodes"])), None);
    }

    #[test]
    fn a_node_keeps_its_taints_and_sets_only_kubelet_labels() {
        let old = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}, "spec": {}});
        let mut new = old.clone();
        new["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"] =
            json!("true");
        new["metadata"]["labels"]["team"] = json!("a");
        assert_eq!(node_write(Operation::Update, "n1", &new, Some(&old)), None);
        new["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("");
        assert_eq!(
            node_write(Operation::Update, "n1", &new, Some(&old)).unwrap(),
            "is not allowed to modify labels: node-role.kubernetes.io/control-plane"
        );
        let mut untainted = old.clone();
        untainted["spec"]["taints"] = json!([]);
        let mut tainted = old.clone();
        tainted["spec"]["taints"] =
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]);
        assert_eq!(
            node_write(Operation::Update, "n1", &untainted, Some(&tainted)).unwrap(),
            "node \"n1\" is not allowed to modify taints"
        );
        assert_eq!(
            node_write(
                Operation::Update,
                "n1",
                &json!({"metadata": {"name": "n2"}}),
                Some(&old)
            )
            .unwrap(),
            "node \"n1\" is not allowed to modify node \"n2\""
        );
    }

    #[test]
    fn a_node_updates_status_only_of_its_own_pods() {
        let pod = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"nodeName": "n1"}});
        assert_eq!(pod_status("n1", &pod, Some(&pod)), None);
        assert!(
            pod_status("n2", &pod, Some(&pod))
                .unwrap()
                .contains("spec.nodeName set to itself")
        );
        let mut relabeled = pod.clone();
        relabeled["metadata"]["labels"]["a"] = json!("2");
        assert_eq!(
            pod_status("n1", &relabeled, Some(&pod)).unwrap(),
            "node \"n1\" cannot update labels through pod status"
        );
    }

    #[test]
    fn mirror_pods_may_not_reach_other_objects() {
        let pod = json!({"spec": {"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}}]}]}});
        assert_eq!(
            references_api_objects("n1", &pod).unwrap(),
            "node \"n1\" can not create pods that reference configmaps"
        );
        let pod = json!({"spec": {"containers": [{"name": "c"}], "volumes": [{"name": "v", "emptyDir": {}}]}});
        assert_eq!(references_api_objects("n1", &pod), None);
    }
}
