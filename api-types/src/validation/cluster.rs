//! Configuration and cluster objects: ConfigMap, Secret, Namespace, Node,
//! ServiceAccount and Lease.

use super::meta::{
    finalizer_name_errors, immutable, label_name_errors, object_meta_errors,
    object_meta_update_errors,
};
use super::names::{
    is_config_map_key, is_valid_label_value, name_is_dns_label, name_is_dns_subdomain,
};
use super::pods::taint_effect_errors;
use super::{BadValue, FieldError, Path};
use crate::k8s::api::coordination::v1::Lease;
use crate::k8s::api::core::v1::{ConfigMap, Namespace, Node, Secret, ServiceAccount};

/// The most bytes a ConfigMap's or Secret's data may hold.
const MAX_DATA_SIZE: usize = 1024 * 1024;

/// Validates a config map: keys are config keys (`[-._a-zA-Z0-9]+`), unique across
/// `data` and `binaryData`, and the values total at most 1 MiB.
pub fn validate_config_map(cm: &ConfigMap) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &cm.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    errs.extend(config_map_data_errors(cm));
    errs
}

fn config_map_data_errors(cm: &ConfigMap) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    let data_path = Path::new("data");
    let binary_path = Path::new("binaryData");
    for (key, value) in cm.data.iter().flatten() {
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(&data_path.key(key), key, msg));
        }
        if cm.binary_data.as_ref().is_some_and(|b| b.contains_key(key)) {
            errs.push(FieldError::invalid(
                &data_path.key(key),
                key,
                "duplicate of key present in binaryData",
            ));
        }
        total += value.len();
    }
    for (key, value) in cm.binary_data.iter().flatten() {
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(&binary_path.key(key), key, msg));
        }
        total += value.0.len();
    }
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long(&Path::new(""), MAX_DATA_SIZE));
    }
    errs
}

/// Validates a config map update: an immutable config map keeps its data.
pub fn validate_config_map_update(new: &ConfigMap, old: &ConfigMap) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            errs.push(FieldError::forbidden(
                &Path::new("immutable"),
                "field is immutable when `immutable` is set",
            ));
        }
        if new.data != old.data {
            errs.push(FieldError::forbidden(
                &Path::new("data"),
                "field is immutable when `immutable` is set",
            ));
        }
        if new.binary_data != old.binary_data {
            errs.push(FieldError::forbidden(
                &Path::new("binaryData"),
                "field is immutable when `immutable` is set",
            ));
        }
    }
    errs.extend(config_map_data_errors(new));
    errs
}

/// Validates a secret: keys are config keys, the data totals at most 1 MiB, and
/// typed secrets hold the keys their type requires.
pub fn validate_secret(secret: &Secret) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &secret.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    errs.extend(secret_body_errors(secret));
    errs
}

/// Validates a secret update: the type never changes, and an immutable secret keeps
/// its data.
pub fn validate_secret_update(new: &Secret, old: &Secret) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(secret_body_errors(new));
    let type_of = |s: &Secret| s.type_.clone().unwrap_or_default();
    errs.extend(immutable(
        &type_of(new),
        &type_of(old),
        || BadValue::from(type_of(new)),
        &Path::new("type"),
    ));
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            errs.push(FieldError::forbidden(
                &Path::new("immutable"),
                "field is immutable when `immutable` is set",
            ));
        }
        if new.data != old.data {
            errs.push(FieldError::forbidden(
                &Path::new("data"),
                "field is immutable when `immutable` is set",
            ));
        }
    }
    errs
}

fn secret_body_errors(secret: &Secret) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let data_path = Path::new("data");
    let mut total = 0usize;
    for (key, value) in secret.data.iter().flatten() {
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(&data_path.key(key), key, msg));
        }
        total += value.0.len();
    }
    // `stringData` is merged into `data` on write; check its keys the same way.
    for (key, value) in secret.string_data.iter().flatten() {
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(
                &Path::new("stringData").key(key),
                key,
                msg,
            ));
        }
        if !secret.data.as_ref().is_some_and(|d| d.contains_key(key)) {
            total += value.len();
        }
    }
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long(&data_path, MAX_DATA_SIZE));
    }
    let has = |key: &str| {
        secret.data.as_ref().is_some_and(|d| d.contains_key(key))
            || secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(key))
    };
    let non_empty = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .is_some_and(|v| !v.0.is_empty())
            || secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .is_some_and(|v| !v.is_empty())
    };
    let bytes_of = |key: &str| -> Option<Vec<u8>> {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.as_bytes().to_vec())
            .or_else(|| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|v| v.0.clone())
            })
    };
    match secret.type_.as_deref().unwrap_or_default() {
        "kubernetes.io/service-account-token" => {
            let name = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .map(String::as_str)
                .unwrap_or_default();
            if name.is_empty() {
                errs.push(FieldError::required(
                    &Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        t @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let key = if t == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match bytes_of(key) {
                None => errs.push(FieldError::required(&data_path.key(key), "")),
                Some(bytes) => {
                    if let Err(e) =
                        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
                    {
                        errs.push(FieldError::invalid(
                            &data_path.key(key),
                            "<secret contents redacted>",
                            e.to_string(),
                        ));
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required(&data_path.key("username"), ""));
            errs.push(FieldError::required(&data_path.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if !non_empty("ssh-privatekey") => {
            errs.push(FieldError::required(&data_path.key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errs.push(FieldError::required(&data_path.key(key), ""));
                }
            }
        }
        _ => {}
    }
    errs
}

/// Validates a namespace: its name is a DNS-1123 label, it has no namespace, and its
/// spec finalizers are valid finalizer names.
pub fn validate_namespace(ns: &Namespace) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &ns.metadata,
        false,
        name_is_dns_label,
        &Path::new("metadata"),
    );
    errs.extend(namespace_finalizer_errors(ns));
    errs
}

/// Validates a namespace update.
pub fn validate_namespace_update(new: &Namespace, old: &Namespace) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(namespace_finalizer_errors(new));
    errs
}

fn namespace_finalizer_errors(ns: &Namespace) -> Vec<FieldError> {
    let path = Path::new("spec").child("finalizers");
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|f| finalizer_name_errors(f, &path))
        .collect()
}

/// Validates a node: its name is a DNS-1123 subdomain, it has no namespace, its pod
/// CIDRs parse, and its taints are unique by key and effect with valid parts.
pub fn validate_node(node: &Node) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &node.metadata,
        false,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    errs.extend(node_spec_errors(node));
    errs
}

/// Validates a node update: a pod CIDR, once set, does not change.
pub fn validate_node_update(new: &Node, old: &Node) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(node_spec_errors(new));
    let cidrs = |n: &Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.pod_cidrs.clone())
            .unwrap_or_default()
    };
    let (new_cidrs, old_cidrs) = (cidrs(new), cidrs(old));
    if !old_cidrs.is_empty() && new_cidrs != old_cidrs {
        errs.push(FieldError::forbidden(
            &Path::new("spec").child("podCIDRs"),
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    errs
}

fn node_spec_errors(node: &Node) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &node.spec else {
        return errs;
    };
    let path = Path::new("spec");
    for (i, cidr) in spec.pod_cidrs.iter().flatten().enumerate() {
        if !is_cidr(cidr) {
            errs.push(FieldError::invalid(
                &path.child("podCIDRs").index(i),
                cidr,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    if spec.pod_cidrs.as_ref().is_some_and(|c| c.len() > 2) {
        errs.push(FieldError::invalid(
            &path.child("podCIDRs"),
            BadValue::string_list(spec.pod_cidrs.as_deref().unwrap_or_default()),
            "may specify no more than one CIDR for each IP family",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, taint) in spec.taints.iter().flatten().enumerate() {
        let p = path.child("taints").index(i);
        errs.extend(label_name_errors(&taint.key, &p.child("key")));
        let value = taint.value.as_deref().unwrap_or_default();
        let msgs = is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                &p.child("value"),
                value,
                msgs.join(";"),
            ));
        }
        if taint.effect.is_empty() {
            errs.push(FieldError::required(&p.child("effect"), ""));
        } else {
            errs.extend(taint_effect_errors(&taint.effect, &p.child("effect")));
        }
        if !seen.insert((taint.effect.as_str(), taint.key.as_str())) {
            let mut dup = FieldError::duplicate(&p, BadValue::json(taint));
            dup.detail = "taints must be unique by key and effect pair".to_owned();
            errs.push(dup);
        }
    }
    errs
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// Validates a service account (metadata only, as upstream).
pub fn validate_service_account(sa: &ServiceAccount) -> Vec<FieldError> {
    object_meta_errors(
        &sa.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    )
}

/// Validates a service account update.
pub fn validate_service_account_update(
    new: &ServiceAccount,
    old: &ServiceAccount,
) -> Vec<FieldError> {
    object_meta_update_errors(&new.metadata, &old.metadata)
}

/// Validates a lease: the duration is positive and the transition count is not
/// negative.
pub fn validate_lease(lease: &Lease) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &lease.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    errs.extend(lease_spec_errors(lease));
    errs
}

/// Validates a lease update.
pub fn validate_lease_update(new: &Lease, old: &Lease) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(lease_spec_errors(new));
    errs
}

fn lease_spec_errors(lease: &Lease) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &lease.spec else {
        return errs;
    };
    let path = Path::new("spec");
    if let Some(d) = spec.lease_duration_seconds.filter(|&d| d <= 0) {
        errs.push(FieldError::invalid(
            &path.child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec.lease_transitions.filter(|&t| t < 0) {
        errs.push(FieldError::invalid(
            &path.child("leaseTransitions"),
            t,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(strategy) = spec.strategy.as_deref()
        && strategy != "OldestEmulationVersion"
    {
        errs.push(FieldError::not_supported(
            &path.child("strategy"),
            strategy,
            &["OldestEmulationVersion"],
        ));
    }
    if spec
        .preferred_holder
        .as_deref()
        .is_some_and(|h| !h.is_empty())
        && spec.strategy.is_none()
    {
        errs.push(FieldError::forbidden(
            &path.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::ByteString;
    use serde_json::json;

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn config_map(data: serde_json::Value) -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": "cfg", "namespace": "d"}, "data": data}))
            .unwrap()
    }

    #[test]
    fn config_map_keys_are_config_keys() {
        assert!(
            validate_config_map(&config_map(json!({"app.yaml": "x", "A_B-c": "y"}))).is_empty()
        );
        assert_eq!(
            messages(validate_config_map(&config_map(
                json!({"a/b": "x", "..": "y"})
            ))),
            vec![
                r#"data[..]: Invalid value: "..": must not be '..'"#,
                r#"data[a/b]: Invalid value: "a/b": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#,
            ]
        );
    }

    #[test]
    fn config_maps_hold_at_most_one_mebibyte() {
        let big = "x".repeat(1024 * 1024 + 1);
        assert_eq!(
            messages(validate_config_map(&config_map(json!({"big": big})))),
            vec!["[]: Too long: may not be more than 1048576 bytes"]
        );
        let mut cm = config_map(json!({"a": "x"}));
        cm.binary_data = Some([("a".to_owned(), ByteString(vec![1]))].into());
        assert_eq!(
            messages(validate_config_map(&cm)),
            vec![r#"data[a]: Invalid value: "a": duplicate of key present in binaryData"#]
        );
    }

    #[test]
    fn immutable_config_maps_keep_their_data() {
        let mut old = config_map(json!({"a": "1"}));
        old.immutable = Some(true);
        let mut new = old.clone();
        new.data = Some([("a".to_owned(), "2".to_owned())].into());
        assert_eq!(
            messages(validate_config_map_update(&new, &old)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
    }

    fn secret(type_: Option<&str>, data: serde_json::Value) -> Secret {
        let mut s: Secret = serde_json::from_value(
            json!({"metadata": {"name": "s", "namespace": "d"}, "data": data}),
        )
        .unwrap();
        s.type_ = type_.map(str::to_owned);
        s
    }

    #[test]
    fn typed_secrets_need_their_keys() {
        assert!(validate_secret(&secret(None, json!({"k": "dg=="}))).is_empty());
        assert_eq!(
            messages(validate_secret(&secret(
                Some("kubernetes.io/tls"),
                json!({"tls.crt": "eA=="})
            ))),
            vec!["data[tls.key]: Required value"]
        );
        assert_eq!(
            messages(validate_secret(&secret(
                Some("kubernetes.io/dockerconfigjson"),
                json!({".dockerconfigjson": "eA=="})
            ))),
            vec![
                r#"data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": expected value at line 1 column 1"#
            ]
        );
        assert_eq!(
            messages(validate_secret(&secret(
                Some("kubernetes.io/service-account-token"),
                json!({})
            ))),
            vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
    }

    #[test]
    fn a_secrets_type_is_immutable() {
        let old = secret(Some("Opaque"), json!({}));
        let new = secret(
            Some("kubernetes.io/basic-auth"),
            json!({"username": "dQ=="}),
        );
        assert_eq!(
            messages(validate_secret_update(&new, &old)),
            vec![r#"type: Invalid value: "kubernetes.io/basic-auth": field is immutable"#]
        );
    }

    #[test]
    fn namespace_names_are_dns_labels() {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "team.a"}})).unwrap();
        assert_eq!(
            messages(validate_namespace(&ns)),
            vec![r#"metadata.name: Invalid value: "team.a": must not contain dots"#]
        );
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team-a"},
            "spec": {"finalizers": ["kubernetes", "weird"]}}))
        .unwrap();
        assert_eq!(
            messages(validate_namespace(&ns)),
            vec![
                r#"spec.finalizers: Invalid value: "weird": name is neither a standard finalizer name nor is it fully qualified"#
            ]
        );
    }

    #[test]
    fn node_taints_are_unique_by_key_and_effect() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-1"},
            "spec": {"podCIDRs": ["10.244.0.0/24", "10.244.1.0/33"], "taints": [
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                {"key": "dedicated", "value": "cpu", "effect": "NoSchedule"},
                {"key": "x", "effect": "Never"},
                {"key": "y", "effect": ""},
            ]},
        }))
        .unwrap();
        assert_eq!(
            messages(validate_node(&node)),
            vec![
                r#"spec.podCIDRs[1]: Invalid value: "10.244.1.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#,
                r#"spec.taints[1]: Duplicate value: {"effect":"NoSchedule","key":"dedicated","value":"cpu"}: taints must be unique by key and effect pair"#,
                r#"spec.taints[2].effect: Unsupported value: "Never": supported values: "NoExecute", "NoSchedule", "PreferNoSchedule""#,
                "spec.taints[3].effect: Required value",
            ]
        );
    }

    #[test]
    fn nodes_and_namespaces_are_cluster_scoped() {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": "n", "namespace": "d"}})).unwrap();
        assert_eq!(
            messages(validate_node(&node)),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn leases_need_a_positive_duration() {
        let lease: Lease = serde_json::from_value(
            json!({"metadata": {"name": "l", "namespace": "kube-system"},
            "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}),
        )
        .unwrap();
        assert_eq!(
            messages(validate_lease(&lease)),
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn service_accounts_need_a_namespace() {
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
        assert_eq!(
            messages(validate_service_account(&sa)),
            vec!["metadata.namespace: Required value"]
        );
    }
}
