//! The per-kind rules of an object's lifecycle that the generic REST code
//! follows, as upstream's registry strategies state them: what a create
//! resets, which writes may touch `spec` and which `status`, when
//! `generation` moves, which kinds an update may create, and which deletions
//! are graceful.

use serde_json::{Map, Value};
use skiff_api_types::registry::ResourceInfo;

/// The top-level fields that are not "spec" for generation purposes.
const NOT_SPEC: &[&str] = &["apiVersion", "kind", "metadata", "status"];

/// Kinds whose status is written only through the `status` subresource.
pub fn has_status_subresource(resource: &ResourceInfo) -> bool {
    resource.subresource("status").is_some()
}

/// Kinds whose strategies track `metadata.generation` upstream: some
/// built-in kinds, and every custom resource.
pub fn tracks_generation(resource: &ResourceInfo) -> bool {
    let custom =
        skiff_api_types::registry::lookup(resource.group, resource.version, resource.plural)
            .is_none();
    custom
        || matches!(
            (resource.group, resource.plural),
            (
                "apps",
                "deployments" | "replicasets" | "statefulsets" | "daemonsets"
            ) | ("", "replicationcontrollers")
                | ("batch", "jobs" | "cronjobs")
                | ("policy", "poddisruptionbudgets")
                | ("autoscaling", "horizontalpodautoscalers")
                | ("networking.k8s.io", "ingresses" | "networkpolicies")
                | ("apiextensions.k8s.io", "customresourcedefinitions")
                | (
                    "admissionregistration.k8s.io",
                    "validatingadmissionpolicies" | "validatingadmissionpolicybindings"
                )
        )
}

/// Kinds an update (PUT) may create, as upstream's AllowCreateOnUpdate says.
pub fn allows_create_on_update(resource: &ResourceInfo) -> bool {
    matches!(
        (resource.group, resource.plural),
        ("", "endpoints" | "events" | "limitranges")
            | ("coordination.k8s.io", "leases")
            | ("events.k8s.io", "events")
            | (
                "rbac.authorization.k8s.io",
                "roles" | "rolebindings" | "clusterroles" | "clusterrolebindings"
            )
    )
}

/// Why the object `name` may not be deleted, if it may not: the system
/// PriorityClasses (upstream's PriorityClass REST refuses their deletion —
/// one at a time; its deletecollection does not check).
pub fn undeletable(resource: &ResourceInfo, name: &str) -> Option<&'static str> {
    ((resource.group, resource.plural) == ("scheduling.k8s.io", "priorityclasses")
        && crate::admission::priority::is_system_class(name))
    .then_some("this is a system priority class and cannot be deleted")
}

/// Kinds whose deletion answers the deleted object rather than a `Status`.
pub fn returns_deleted_object(resource: &ResourceInfo) -> bool {
    matches!(
        (resource.group, resource.plural),
        ("", "pods" | "namespaces")
    )
}

/// Resets what a create must not carry over from the client.
pub fn prepare_for_create(resource: &ResourceInfo, obj: &mut Value) {
    let meta = obj["metadata"]
        .as_object_mut()
        .expect("checked to be an object");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("resourceVersion");
    if tracks_generation(resource) {
        obj["metadata"]["generation"] = Value::from(1);
    } else if let Some(meta) = obj["metadata"].as_object_mut() {
        meta.remove("generation");
    }
    match (resource.group, resource.plural) {
        // Nodes report their own status at registration; namespaces are
        // born Active (defaulting sets the phase).
        ("", "nodes" | "namespaces") => {}
        ("", "pods") => {
            let qos = qos_class(&obj["spec"]);
            obj["status"] = serde_json::json!({ "phase": "Pending", "qosClass": qos });
        }
        _ if has_status_subresource(resource) => {
            if let Some(o) = obj.as_object_mut()
                && o.contains_key("status")
            {
                o.insert("status".into(), Value::Object(Map::new()));
            }
        }
        _ => {}
    }
}

fn is_csr(resource: &ResourceInfo) -> bool {
    (resource.group, resource.plural) == ("certificates.k8s.io", "certificatesigningrequests")
}

/// A CertificateSigningRequest records who asked for it: `spec.username`,
/// `uid`, `groups` and `extra` are the requesting user's, whatever the
/// client sent (upstream's CSR strategy); approvers and signers decide on them.
pub fn record_requester(resource: &ResourceInfo, obj: &mut Value, user: &crate::User) {
    if !is_csr(resource) {
        return;
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert("username".into(), Value::from(user.name.clone()));
    spec.remove("uid");
    if !user.uid.is_empty() {
        spec.insert("uid".into(), Value::from(user.uid.clone()));
    }
    spec.insert("groups".into(), serde_json::json!(user.groups));
    spec.remove("extra");
    if !user.extra.is_empty() {
        spec.insert("extra".into(), serde_json::json!(user.extra));
    }
}

/// A CSR's approval and denial conditions.
fn is_approval(condition: &Value) -> bool {
    matches!(condition["type"].as_str(), Some("Approved" | "Denied"))
}

/// What a create fills in once the object has its uid: a Job's generated
/// selector and labels (upstream's job registry does this on create).
pub fn prepare_created(
    resource: &ResourceInfo,
    obj: &mut Value,
) -> Result<(), crate::status::ApiError> {
    if (resource.group, resource.plural) == ("apiextensions.k8s.io", "customresourcedefinitions") {
        // Held until its objects are deleted (see crd::follow).
        let finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let finalizer = Value::String(crate::crd::CLEANUP_FINALIZER.into());
        if !finalizers.contains(&finalizer) {
            let mut finalizers = finalizers;
            finalizers.push(finalizer);
            obj["metadata"]["finalizers"] = Value::Array(finalizers);
        }
    }
    if (resource.group, resource.plural) == ("batch", "jobs") {
        let mut job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(obj.clone())
            .map_err(|e| {
                crate::status::ApiError::bad_request(format!("Job cannot be decoded: {e}"))
            })?;
        skiff_api_types::defaults::generate_job_selector(&mut job);
        *obj = serde_json::to_value(job).expect("a Job serializes");
    }
    Ok(())
}

/// Carries over from `old` what an update of the main resource may not
/// change, and moves `generation` when the spec changed.
pub fn prepare_for_update(
    resource: &ResourceInfo,
    new: &mut Value,
    old: &Value,
    subresource: Option<&str>,
) {
    match subresource {
        Some("status") => {
            // A status write changes only the status (and, as upstream lets
            // status writers do, nothing in metadata but what follows).
            let status = new.get("status").cloned();
            let mut merged = old.clone();
            match status {
                Some(s) => merged["status"] = s,
                None => {
                    if let Some(o) = merged.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            if is_csr(resource) {
                // A status write (the signer's) keeps the approval
                // conditions as they were: only `approval` changes them.
                let kept: Vec<Value> = old["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| is_approval(c))
                    .cloned()
                    .collect();
                let mut conditions: Vec<Value> = merged["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| !is_approval(c))
                    .cloned()
                    .collect();
                conditions.extend(kept);
                if conditions.is_empty() {
                    if let Some(status) = merged["status"].as_object_mut() {
                        status.remove("conditions");
                    }
                } else {
                    merged["status"]["conditions"] = Value::Array(conditions);
                }
            }
            *new = merged;
        }
        Some("approval") => {
            // certificatesigningrequests/approval changes only the
            // conditions; the spec and the certificate stay.
            new["spec"] = old["spec"].clone();
            match old["status"].get("certificate") {
                Some(c) => new["status"]["certificate"] = c.clone(),
                None => {
                    if let Some(status) = new["status"].as_object_mut() {
                        status.remove("certificate");
                    }
                }
            }
        }
        Some("finalize") => {
            // namespaces/finalize changes only spec.finalizers.
            let finalizers = new["spec"].get("finalizers").cloned();
            let mut merged = old.clone();
            match finalizers {
                Some(f) => merged["spec"]["finalizers"] = f,
                None => {
                    if let Some(spec) = merged["spec"].as_object_mut() {
                        spec.remove("finalizers");
                    }
                }
            }
            *new = merged;
        }
        _ => {
            if (resource.group, resource.plural) == ("", "namespaces") {
                // Only the finalize subresource changes spec.finalizers.
                match old["spec"].get("finalizers") {
                    Some(f) => new["spec"]["finalizers"] = f.clone(),
                    None => {
                        if let Some(spec) = new["spec"].as_object_mut() {
                            spec.remove("finalizers");
                        }
                    }
                }
            }
            if has_status_subresource(resource) {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
        }
    }
    // System metadata is the server's.
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old["metadata"].get(field) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    if tracks_generation(resource) && spec_of(new) != spec_of(old) {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        new["metadata"]["generation"] = Value::from(generation);
    }
}

/// Everything but metadata and status.
fn spec_of(obj: &Value) -> Map<String, Value> {
    obj.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !NOT_SPEC.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The grace period a deletion of this object gets: `Some(seconds > 0)` for a
/// graceful deletion, `None` to delete at once.
pub fn graceful_deletion(
    resource: &ResourceInfo,
    obj: &Value,
    requested: Option<i64>,
) -> Option<i64> {
    if (resource.group, resource.plural) != ("", "pods") {
        return None;
    }
    // A pod no kubelet runs, or that has finished, goes at once.
    let scheduled = obj["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let phase = obj["status"]["phase"].as_str().unwrap_or("");
    if !scheduled || phase == "Succeeded" || phase == "Failed" {
        return None;
    }
    let grace = requested
        .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    (grace > 0).then_some(grace)
}

/// A pod's QoS class from its containers' requests and limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["initContainers"].as_array().into_iter().flatten());
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let requests = c["resources"]["requests"].as_object();
        let limits = c["resources"]["limits"].as_object();
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for resource in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(resource));
            let request = requests.and_then(|r| r.get(resource)).or(limit);
            match (request, limit) {
                (Some(r), Some(l)) if quantity_eq(r, l) => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn quantity_eq(a: &Value, b: &Value) -> bool {
    use skiff_api_types::quantity::Quantity;
    let parse = |v: &Value| match v {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    };
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        skiff_api_types::registry::lookup("", "v1", "pods").unwrap()
    }

    #[test]
    fn qos_follows_requests_and_limits() {
        assert_eq!(
            qos_class(&json!({"containers": [{"name": "a"}]})),
            "BestEffort"
        );
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn a_spec_change_moves_generation_and_a_label_change_does_not() {
        let deployments = skiff_api_types::registry::lookup("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "d", "generation": 3}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut relabeled =
            json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}});
        prepare_for_update(deployments, &mut relabeled, &old, None);
        assert_eq!(relabeled["metadata"]["generation"], 3);
        assert_eq!(
            relabeled["status"],
            json!({"replicas": 1}),
            "status kept from the stored object"
        );
        let mut scaled =
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}, "status": {"replicas": 9}});
        prepare_for_update(deployments, &mut scaled, &old, None);
        assert_eq!(scaled["metadata"]["generation"], 4);
        assert_eq!(scaled["status"], json!({"replicas": 1}));
    }

    #[test]
    fn a_status_write_changes_only_the_status() {
        let old = json!({"metadata": {"name": "p"}, "spec": {"nodeName": ""}, "status": {"phase": "Pending"}});
        let mut new = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "evil"}, "status": {"phase": "Running"}});
        prepare_for_update(pods(), &mut new, &old, Some("status"));
        assert_eq!(new["spec"]["nodeName"], "");
        assert_eq!(new["status"]["phase"], "Running");
    }

    #[test]
    fn only_running_pods_on_a_node_are_deleted_gracefully() {
        let unscheduled = json!({"spec": {}, "status": {"phase": "Pending"}});
        assert_eq!(graceful_deletion(pods(), &unscheduled, None), None);
        let running = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}, "status": {"phase": "Running"}});
        assert_eq!(graceful_deletion(pods(), &running, None), Some(30));
        assert_eq!(graceful_deletion(pods(), &running, Some(0)), None);
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(graceful_deletion(pods(), &done, None), None);
    }
}
