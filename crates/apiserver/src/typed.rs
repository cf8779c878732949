//! Field validation (`fieldValidation=Strict|Warn|Ignore`): finds the fields
//! of a request body that its kind does not have. Each built-in kind's body is
//! decoded into its typed struct and encoded again; whatever the round trip
//! dropped was not a field of the kind.

use serde_json::Value;

use crate::status::ApiError;

/// What to do with unknown fields, from the `fieldValidation` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    /// Upstream's default, when the parameter is absent, is Warn.
    pub fn from_query(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}"
            ))),
        }
    }
}

macro_rules! kinds {
    ($($group:literal $version:literal $kind:literal => $ty:path,)*) => {
        /// The body as its typed struct encodes it, or `None` for kinds
        /// without a typed struct (custom resources).
        fn round_trip(group: &str, version: &str, kind: &str, obj: &Value) -> Option<Result<Value, serde_json::Error>> {
            match (group, version, kind) {
                $(($group, $version, $kind) => Some(
                    serde_json::from_value::<$ty>(obj.clone()).and_then(serde_json::to_value)
                ),)*
                _ => None,
            }
        }
    };
}

kinds! {
    "" "v1" "Binding" => k8s_openapi::api::core::v1::Binding,
    "" "v1" "ComponentStatus" => k8s_openapi::api::core::v1::ComponentStatus,
    "" "v1" "ConfigMap" => k8s_openapi::api::core::v1::ConfigMap,
    "" "v1" "Endpoints" => k8s_openapi::api::core::v1::Endpoints,
    "" "v1" "Event" => k8s_openapi::api::core::v1::Event,
    "" "v1" "LimitRange" => k8s_openapi::api::core::v1::LimitRange,
    "" "v1" "Namespace" => k8s_openapi::api::core::v1::Namespace,
    "" "v1" "Node" => k8s_openapi::api::core::v1::Node,
    "" "v1" "PersistentVolume" => k8s_openapi::api::core::v1::PersistentVolume,
    "" "v1" "PersistentVolumeClaim" => k8s_openapi::api::core::v1::PersistentVolumeClaim,
    "" "v1" "Pod" => k8s_openapi::api::core::v1::Pod,
    "" "v1" "PodTemplate" => k8s_openapi::api::core::v1::PodTemplate,
    "" "v1" "ReplicationController" => k8s_openapi::api::core::v1::ReplicationController,
    "" "v1" "ResourceQuota" => k8s_openapi::api::core::v1::ResourceQuota,
    "" "v1" "Secret" => k8s_openapi::api::core::v1::Secret,
    "" "v1" "Service" => k8s_openapi::api::core::v1::Service,
    "" "v1" "ServiceAccount" => k8s_openapi::api::core::v1::ServiceAccount,
    "apps" "v1" "ControllerRevision" => k8s_openapi::api::apps::v1::ControllerRevision,
    "apps" "v1" "DaemonSet" => k8s_openapi::api::apps::v1::DaemonSet,
    "apps" "v1" "Deployment" => k8s_openapi::api::apps::v1::Deployment,
    "apps" "v1" "ReplicaSet" => k8s_openapi::api::apps::v1::ReplicaSet,
    "apps" "v1" "StatefulSet" => k8s_openapi::api::apps::v1::StatefulSet,
    "autoscaling" "v1" "HorizontalPodAutoscaler" => k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
    "autoscaling" "v2" "HorizontalPodAutoscaler" => k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
    "autoscaling" "v1" "Scale" => k8s_openapi::api::autoscaling::v1::Scale,
    "batch" "v1" "CronJob" => k8s_openapi::api::batch::v1::CronJob,
    "batch" "v1" "Job" => k8s_openapi::api::batch::v1::Job,
    "certificates.k8s.io" "v1" "CertificateSigningRequest" => k8s_openapi::api::certificates::v1::CertificateSigningRequest,
    "coordination.k8s.io" "v1" "Lease" => k8s_openapi::api::coordination::v1::Lease,
    "discovery.k8s.io" "v1" "EndpointSlice" => k8s_openapi::api::discovery::v1::EndpointSlice,
    "events.k8s.io" "v1" "Event" => k8s_openapi::api::events::v1::Event,
    "networking.k8s.io" "v1" "Ingress" => k8s_openapi::api::networking::v1::Ingress,
    "networking.k8s.io" "v1" "IngressClass" => k8s_openapi::api::networking::v1::IngressClass,
    "networking.k8s.io" "v1" "NetworkPolicy" => k8s_openapi::api::networking::v1::NetworkPolicy,
    "networking.k8s.io" "v1" "IPAddress" => k8s_openapi::api::networking::v1::IPAddress,
    "networking.k8s.io" "v1" "ServiceCIDR" => k8s_openapi::api::networking::v1::ServiceCIDR,
    "node.k8s.io" "v1" "RuntimeClass" => k8s_openapi::api::node::v1::RuntimeClass,
    "policy" "v1" "PodDisruptionBudget" => k8s_openapi::api::policy::v1::PodDisruptionBudget,
    "policy" "v1" "Eviction" => k8s_openapi::api::policy::v1::Eviction,
    "rbac.authorization.k8s.io" "v1" "ClusterRole" => k8s_openapi::api::rbac::v1::ClusterRole,
    "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" => k8s_openapi::api::rbac::v1::ClusterRoleBinding,
    "rbac.authorization.k8s.io" "v1" "Role" => k8s_openapi::api::rbac::v1::Role,
    "rbac.authorization.k8s.io" "v1" "RoleBinding" => k8s_openapi::api::rbac::v1::RoleBinding,
    "scheduling.k8s.io" "v1" "PriorityClass" => k8s_openapi::api::scheduling::v1::PriorityClass,
    "storage.k8s.io" "v1" "CSIDriver" => k8s_openapi::api::storage::v1::CSIDriver,
    "storage.k8s.io" "v1" "CSINode" => k8s_openapi::api::storage::v1::CSINode,
    "storage.k8s.io" "v1" "CSIStorageCapacity" => k8s_openapi::api::storage::v1::CSIStorageCapacity,
    "storage.k8s.io" "v1" "StorageClass" => k8s_openapi::api::storage::v1::StorageClass,
    "storage.k8s.io" "v1" "VolumeAttachment" => k8s_openapi::api::storage::v1::VolumeAttachment,
    "admissionregistration.k8s.io" "v1" "MutatingWebhookConfiguration" => k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    "admissionregistration.k8s.io" "v1" "ValidatingWebhookConfiguration" => k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
    "admissionregistration.k8s.io" "v1" "ValidatingAdmissionPolicy" => k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy,
    "admissionregistration.k8s.io" "v1" "ValidatingAdmissionPolicyBinding" => k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    "apiextensions.k8s.io" "v1" "CustomResourceDefinition" => k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    "authentication.k8s.io" "v1" "TokenReview" => k8s_openapi::api::authentication::v1::TokenReview,
    "authentication.k8s.io" "v1" "SelfSubjectReview" => k8s_openapi::api::authentication::v1::SelfSubjectReview,
    "authorization.k8s.io" "v1" "SubjectAccessReview" => k8s_openapi::api::authorization::v1::SubjectAccessReview,
    "authorization.k8s.io" "v1" "SelfSubjectAccessReview" => k8s_openapi::api::authorization::v1::SelfSubjectAccessReview,
    "authorization.k8s.io" "v1" "LocalSubjectAccessReview" => k8s_openapi::api::authorization::v1::LocalSubjectAccessReview,
    "authorization.k8s.io" "v1" "SelfSubjectRulesReview" => k8s_openapi::api::authorization::v1::SelfSubjectRulesReview,
}

/// The paths of the body's fields its kind does not have, in upstream's
/// notation (`spec.template.spec.containers[0].imagez`). A body that does
/// not decode at all is a 400 naming the problem.
pub fn unknown_fields(
    group: &str,
    version: &str,
    kind: &str,
    obj: &Value,
) -> Result<Vec<String>, ApiError> {
    let Some(typed) = round_trip(group, version, kind, obj) else {
        return Ok(Vec::new());
    };
    let typed = typed.map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    let mut unknown = Vec::new();
    diff(obj, &typed, &mut String::new(), &mut unknown);
    Ok(unknown)
}

fn diff(given: &Value, kept: &Value, path: &mut String, out: &mut Vec<String>) {
    match (given, kept) {
        (Value::Object(g), Value::Object(k)) => {
            for (key, value) in g {
                if value.is_null() {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match k.get(key) {
                    Some(kept_value) => diff(value, kept_value, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                diff(gv, kv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Applies the policy to a body: Strict refuses unknown fields (400),
/// Warn returns them as warnings, Ignore drops them silently.
pub fn check(
    policy: FieldValidation,
    group: &str,
    version: &str,
    kind: &str,
    obj: &Value,
) -> Result<Vec<String>, ApiError> {
    if policy == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let unknown = unknown_fields(group, version, kind, obj)?;
    apply_policy(policy, version, kind, &unknown)
}

/// Applies the policy to the unknown fields found in a body.
pub fn apply_policy(
    policy: FieldValidation,
    version: &str,
    kind: &str,
    unknown: &[String],
) -> Result<Vec<String>, ApiError> {
    let messages: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    match (policy, messages.is_empty()) {
        (FieldValidation::Ignore, _) | (_, true) => Ok(Vec::new()),
        (FieldValidation::Strict, false) => Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            messages.join(", ")
        ))),
        _ => Ok(messages),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_by_their_path() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labelz": {}},
            "spec": {"replicaz": 1, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i", "imagez": "j"}]}}},
        });
        let unknown = unknown_fields("apps", "v1", "Deployment", &d).unwrap();
        assert_eq!(
            unknown,
            [
                "metadata.labelz",
                "spec.replicaz",
                "spec.template.spec.containers[0].imagez"
            ]
        );
    }

    #[test]
    fn strict_refuses_and_warn_reports() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "datum": {}});
        let err = check(FieldValidation::Strict, "", "v1", "ConfigMap", &cm).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .contains("strict decoding error: unknown field \"datum\""),
            "{}",
            err.message
        );
        assert_eq!(
            check(FieldValidation::Warn, "", "v1", "ConfigMap", &cm).unwrap(),
            ["unknown field \"datum\""]
        );
        assert!(
            check(FieldValidation::Ignore, "", "v1", "ConfigMap", &cm)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_known_object_with_nulls_and_free_form_parts_has_no_unknown_fields() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "b"}, "annotations": null}, "data": {"any-key": "v"}});
        assert!(
            unknown_fields("", "v1", "ConfigMap", &cm)
                .unwrap()
                .is_empty()
        );
        let wrong_type = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 5}});
        assert_eq!(
            unknown_fields("", "v1", "ConfigMap", &wrong_type)
                .unwrap_err()
                .code,
            400
        );
    }
}
