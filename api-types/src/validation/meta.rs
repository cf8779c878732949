//! Object metadata, labels, annotations and label selectors.

use std::collections::BTreeMap;

use super::names::{NameFn, is_dns1123_label, is_qualified_name, is_valid_label_value};
use super::{BadValue, FieldError, Path};
use crate::k8s::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};

/// The most bytes all of an object's annotation keys and values may take together.
pub(crate) const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// The message of upstream's `ValidateImmutableField`.
pub(crate) const FIELD_IMMUTABLE: &str = "field is immutable";

/// Finalizer names that need no domain prefix.
/// The finalizers that may go without a domain prefix. The last is the one
/// apiextensions-apiserver puts on CRDs; its generic metadata validation
/// accepts any qualified name there.
const STANDARD_FINALIZERS: [&str; 4] = [
    "kubernetes",
    "orphan",
    "foregroundDeletion",
    "customresourcecleanup.apiextensions.k8s.io",
];

/// Validates an object's metadata on create, at path `metadata`: `name` (or
/// `generateName`) by `name_fn`, `namespace` present exactly when `namespaced`,
/// labels, annotations, owner references and finalizers.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_fn: NameFn,
) -> Vec<FieldError> {
    object_meta_errors(meta, namespaced, name_fn, &Path::new("metadata"))
}

/// Validates an update of an object's metadata: `name`, `namespace`, `uid`,
/// `creationTimestamp`, `deletionTimestamp` and `deletionGracePeriodSeconds` keep
/// their values, no finalizer is added once deletion started, and labels,
/// annotations, owner references and finalizers are well-formed.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> Vec<FieldError> {
    object_meta_update_errors(new, old)
}

/// Validates label keys (qualified names) and values, all reported at `path`.
pub fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        errs.extend(label_name_errors(k, path));
        for msg in is_valid_label_value(v) {
            errs.push(FieldError::invalid(path, v, msg));
        }
    }
    errs
}

/// Validates annotation keys (qualified names, case-insensitive) and their total size
/// (at most 256 KiB).
pub fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k, msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Validates a label selector: `matchLabels` as labels, and each `matchExpressions`
/// entry's operator, key and values.
pub fn validate_label_selector(selector: &LabelSelector, path: &Path) -> Vec<FieldError> {
    let mut errs = validate_labels(selector.match_labels.as_ref(), &path.child("matchLabels"));
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        &p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        &p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                &p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        errs.extend(label_name_errors(&expr.key, &p.child("key")));
        for (j, value) in values.iter().enumerate() {
            for msg in is_valid_label_value(value) {
                errs.push(FieldError::invalid(&p.child("values").index(j), value, msg));
            }
        }
    }
    errs
}

/// Upstream's `ValidateLabelName`: a qualified name.
pub(crate) fn label_name_errors(name: &str, path: &Path) -> Vec<FieldError> {
    is_qualified_name(name)
        .into_iter()
        .map(|msg| FieldError::invalid(path, name, msg))
        .collect()
}

/// Upstream's `ValidateQualifiedName`.
pub(crate) fn qualified_name_errors(name: &str, path: &Path) -> Vec<FieldError> {
    label_name_errors(name, path)
}

/// Upstream's `ValidateDNS1123Label`.
pub(crate) fn dns1123_label_errors(value: &str, path: &Path) -> Vec<FieldError> {
    is_dns1123_label(value)
        .into_iter()
        .map(|msg| FieldError::invalid(path, value, msg))
        .collect()
}

/// Upstream's `ValidateNonnegativeField`.
pub(crate) fn nonnegative(value: i64, path: &Path) -> Vec<FieldError> {
    if value < 0 {
        vec![FieldError::invalid(
            path,
            value,
            "must be greater than or equal to 0",
        )]
    } else {
        Vec::new()
    }
}

/// Upstream's `ValidateImmutableField`: `new` must equal `old`.
pub(crate) fn immutable<T: PartialEq>(
    new: &T,
    old: &T,
    shown: impl FnOnce() -> BadValue,
    path: &Path,
) -> Option<FieldError> {
    (new != old).then(|| FieldError::invalid(path, shown(), FIELD_IMMUTABLE))
}

pub(crate) fn object_meta_errors(
    meta: &ObjectMeta,
    namespaced: bool,
    name_fn: NameFn,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or_default();
    if !generate_name.is_empty() {
        for msg in name_fn(generate_name, true) {
            errs.push(FieldError::invalid(
                &path.child("generateName"),
                generate_name,
                msg,
            ));
        }
    }
    let name = meta.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        // The API server names the object from `generateName` before storing it
        // (upstream does so before validating).
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                &path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        for msg in name_fn(name, false) {
            errs.push(FieldError::invalid(&path.child("name"), name, msg));
        }
    }
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            for msg in is_dns1123_label(namespace) {
                errs.push(FieldError::invalid(
                    &path.child("namespace"),
                    namespace,
                    msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    errs.extend(common_meta_errors(meta, path));
    errs
}

pub(crate) fn object_meta_update_errors(new: &ObjectMeta, old: &ObjectMeta) -> Vec<FieldError> {
    let path = Path::new("metadata");
    let mut errs = Vec::new();
    if old.deletion_timestamp.is_some() {
        let old_finalizers = old.finalizers.as_deref().unwrap_or_default();
        let added: Vec<String> = new
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !old_finalizers.contains(f))
            .cloned()
            .collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                &path.child("finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    BadValue::string_list(&added).as_str()
                ),
            ));
        }
    }
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    errs.extend(immutable(
        &s(&new.name),
        &s(&old.name),
        || s(&new.name).into(),
        &path.child("name"),
    ));
    errs.extend(immutable(
        &s(&new.namespace),
        &s(&old.namespace),
        || s(&new.namespace).into(),
        &path.child("namespace"),
    ));
    // An update without a uid or creation timestamp keeps the stored ones (upstream
    // copies them over before validating); a different one is an error.
    if new.uid.as_deref().is_some_and(|u| !u.is_empty()) {
        errs.extend(immutable(
            &s(&new.uid),
            &s(&old.uid),
            || s(&new.uid).into(),
            &path.child("uid"),
        ));
    }
    if new.creation_timestamp.is_some() {
        errs.extend(immutable(
            &new.creation_timestamp,
            &old.creation_timestamp,
            || go_time(new.creation_timestamp.as_ref()),
            &path.child("creationTimestamp"),
        ));
    }
    if new.deletion_timestamp.is_some() || old.deletion_timestamp.is_none() {
        errs.extend(immutable(
            &new.deletion_timestamp,
            &old.deletion_timestamp,
            || go_time(new.deletion_timestamp.as_ref()),
            &path.child("deletionTimestamp"),
        ));
    }
    if new.deletion_grace_period_seconds.is_some() {
        errs.extend(immutable(
            &new.deletion_grace_period_seconds,
            &old.deletion_grace_period_seconds,
            || {
                new.deletion_grace_period_seconds
                    .map_or_else(|| BadValue::raw("null"), BadValue::from)
            },
            &path.child("deletionGracePeriodSeconds"),
        ));
    }
    errs.extend(common_meta_errors(new, &path));
    errs
}

/// A timestamp printed as Go's `time.Time.String()`.
fn go_time(t: Option<&Time>) -> BadValue {
    match t {
        None => BadValue::raw("null"),
        Some(t) => BadValue::raw(t.0.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()),
    }
}

/// The checks shared by create and update: generation, labels, annotations, owner
/// references and finalizers.
fn common_meta_errors(meta: &ObjectMeta, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(generation) = meta.generation {
        errs.extend(nonnegative(generation, &path.child("generation")));
    }
    errs.extend(validate_labels(meta.labels.as_ref(), &path.child("labels")));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        &path.child("annotations"),
    ));
    errs.extend(owner_references_errors(
        meta.owner_references.as_deref().unwrap_or_default(),
        &path.child("ownerReferences"),
    ));
    errs.extend(finalizers_errors(
        meta.finalizers.as_deref().unwrap_or_default(),
        &path.child("finalizers"),
    ));
    errs
}

fn owner_references_errors(refs: &[OwnerReference], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        let (group, version) = match r.api_version.split('/').collect::<Vec<_>>().as_slice() {
            [version] => ("", *version),
            [group, version] => (*group, *version),
            _ => ("", ""),
        };
        if version.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("apiVersion"),
                &r.api_version,
                "version must not be empty",
            ));
        }
        if r.kind.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("kind"),
                &r.kind,
                "must not be empty",
            ));
        }
        if r.name.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("name"),
                &r.name,
                "must not be empty",
            ));
        }
        if r.uid.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("uid"),
                &r.uid,
                "must not be empty",
            ));
        }
        if group.is_empty() && version == "v1" && r.kind == "Event" {
            errs.push(FieldError::invalid(
                path,
                BadValue::json(r),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.controller == Some(true) {
            let this = format!("{}/{}", r.kind, r.name);
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    BadValue::json(refs),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"
                    ),
                )),
                None => first_controller = Some(this),
            }
        }
    }
    errs
}

fn finalizers_errors(finalizers: &[String], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in finalizers {
        errs.extend(finalizer_name_errors(f, path));
    }
    let has = |name: &str| finalizers.iter().any(|f| f == name);
    if has("orphan") && has("foregroundDeletion") {
        errs.push(FieldError::invalid(
            path,
            BadValue::string_list(finalizers),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// A finalizer is a qualified name, and one without a domain prefix must be one of the
/// standard finalizers.
pub(crate) fn finalizer_name_errors(name: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = label_name_errors(name, path);
    if errs.is_empty() && !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
        errs.push(FieldError::invalid(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
    errs
}

/// Whether a selector is empty (matches everything): no `matchLabels` and no
/// `matchExpressions`.
pub(crate) fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// Whether a selector (converted as upstream's `LabelSelectorAsSelector`) matches a
/// label set; `None` when the selector cannot be converted.
pub(crate) fn selector_matches(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> Option<bool> {
    let empty = BTreeMap::new();
    let sel = crate::selector::LabelSelector::from_k8s(selector).ok()?;
    Some(sel.matches(labels.unwrap_or(&empty)))
}

#[cfg(test)]
mod tests {
    use super::super::names::{name_is_dns_label, name_is_dns_subdomain};
    use super::*;
    use crate::k8s::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            ..Default::default()
        }
    }

    fn rendered(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_name_or_generate_name_is_required() {
        let errs = validate_object_meta(&ObjectMeta::default(), false, name_is_dns_subdomain);
        assert_eq!(
            rendered(&errs),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
    }

    #[test]
    fn names_must_follow_the_kinds_rule() {
        let errs = validate_object_meta(
            &meta("Foo_Bar", Some("default")),
            true,
            name_is_dns_subdomain,
        );
        assert_eq!(
            rendered(&errs),
            vec![
                r#"metadata.name: Invalid value: "Foo_Bar": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
            ]
        );
        let errs = validate_object_meta(&meta("a.b", None), false, name_is_dns_label);
        assert_eq!(
            rendered(&errs),
            vec![r#"metadata.name: Invalid value: "a.b": must not contain dots"#]
        );
    }

    #[test]
    fn generate_name_is_checked_as_a_prefix() {
        let m = ObjectMeta {
            generate_name: Some("web-".into()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        assert!(validate_object_meta(&m, true, name_is_dns_subdomain).is_empty());
        let m = ObjectMeta {
            generate_name: Some("Web-".into()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        let errs = validate_object_meta(&m, true, name_is_dns_subdomain);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .to_string()
                .starts_with(r#"metadata.generateName: Invalid value: "Web-""#)
        );
    }

    #[test]
    fn namespaces_are_required_exactly_for_namespaced_kinds() {
        assert_eq!(
            rendered(&validate_object_meta(
                &meta("a", None),
                true,
                name_is_dns_subdomain
            )),
            vec!["metadata.namespace: Required value"]
        );
        assert_eq!(
            rendered(&validate_object_meta(
                &meta("a", Some("x")),
                false,
                name_is_dns_subdomain
            )),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
        let errs = validate_object_meta(&meta("a", Some("Bad")), true, name_is_dns_subdomain);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.namespace");
    }

    #[test]
    fn labels_are_checked_key_and_value_at_the_labels_path() {
        let mut m = meta("a", Some("d"));
        m.labels = Some(BTreeMap::from([
            ("good/key".to_owned(), "ok".to_owned()),
            ("bad key".to_owned(), "-bad".to_owned()),
        ]));
        let errs = validate_object_meta(&m, true, name_is_dns_subdomain);
        assert_eq!(errs.len(), 2);
        assert!(errs[0].to_string().starts_with(
            r#"metadata.labels: Invalid value: "bad key": name part must consist of"#
        ));
        assert!(
            errs[1]
                .to_string()
                .starts_with(r#"metadata.labels: Invalid value: "-bad": a valid label must be"#)
        );
    }

    #[test]
    fn annotations_may_total_at_most_256_kib() {
        let mut m = meta("a", Some("d"));
        m.annotations = Some(BTreeMap::from([("k".to_owned(), "v".repeat(256 * 1024))]));
        assert_eq!(
            rendered(&validate_object_meta(&m, true, name_is_dns_subdomain)),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
        m.annotations = Some(BTreeMap::from([(
            "k".to_owned(),
            "v".repeat(256 * 1024 - 1),
        )]));
        assert!(validate_object_meta(&m, true, name_is_dns_subdomain).is_empty());
        m.annotations = Some(BTreeMap::from([(
            "Example.COM/Key".to_owned(),
            String::new(),
        )]));
        assert!(validate_object_meta(&m, true, name_is_dns_subdomain).is_empty());
    }

    #[test]
    fn finalizers_are_qualified_names_or_standard_ones() {
        let mut m = meta("a", Some("d"));
        m.finalizers = Some(vec![
            "kubernetes".into(),
            "example.com/cleanup".into(),
            "custom".into(),
        ]);
        assert_eq!(
            rendered(&validate_object_meta(&m, true, name_is_dns_subdomain)),
            vec![
                r#"metadata.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified"#
            ]
        );
        m.finalizers = Some(vec!["orphan".into(), "foregroundDeletion".into()]);
        assert_eq!(
            rendered(&validate_object_meta(&m, true, name_is_dns_subdomain)),
            vec![
                r#"metadata.finalizers: Invalid value: []string{"orphan", "foregroundDeletion"}: finalizer orphan and foregroundDeletion cannot be both set"#
            ]
        );
    }

    #[test]
    fn owner_references_need_their_identifying_fields() {
        let mut m = meta("a", Some("d"));
        m.owner_references = Some(vec![OwnerReference {
            api_version: "apps/".into(),
            ..Default::default()
        }]);
        assert_eq!(
            rendered(&validate_object_meta(&m, true, name_is_dns_subdomain)),
            vec![
                r#"metadata.ownerReferences.apiVersion: Invalid value: "apps/": version must not be empty"#,
                r#"metadata.ownerReferences.kind: Invalid value: "": must not be empty"#,
                r#"metadata.ownerReferences.name: Invalid value: "": must not be empty"#,
                r#"metadata.ownerReferences.uid: Invalid value: "": must not be empty"#,
            ]
        );
        let owner = |name: &str| OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(true),
            ..Default::default()
        };
        m.owner_references = Some(vec![owner("a"), owner("b")]);
        let errs = validate_object_meta(&m, true, name_is_dns_subdomain);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .detail
                .ends_with("Found \"true\" in references for ReplicaSet/a and ReplicaSet/b")
        );
    }

    #[test]
    fn identity_fields_are_immutable_on_update() {
        let old = ObjectMeta {
            uid: Some("1".into()),
            ..meta("a", Some("d"))
        };
        let new = ObjectMeta {
            uid: Some("2".into()),
            ..meta("b", Some("e"))
        };
        assert_eq!(
            rendered(&validate_object_meta_update(&new, &old)),
            vec![
                r#"metadata.name: Invalid value: "b": field is immutable"#,
                r#"metadata.namespace: Invalid value: "e": field is immutable"#,
                r#"metadata.uid: Invalid value: "2": field is immutable"#,
            ]
        );
        // Omitted uid and creationTimestamp keep the stored ones.
        assert!(validate_object_meta_update(&meta("a", Some("d")), &old).is_empty());
    }

    #[test]
    fn creation_timestamps_are_immutable_on_update() {
        let t = |s: &str| Time(s.parse().unwrap());
        let old = ObjectMeta {
            creation_timestamp: Some(t("2024-01-01T00:00:00Z")),
            ..meta("a", None)
        };
        let new = ObjectMeta {
            creation_timestamp: Some(t("2024-01-02T03:04:05Z")),
            ..meta("a", None)
        };
        assert_eq!(
            rendered(&validate_object_meta_update(&new, &old)),
            vec![
                "metadata.creationTimestamp: Invalid value: 2024-01-02 03:04:05 +0000 UTC: field is immutable"
            ]
        );
    }

    #[test]
    fn no_finalizer_may_be_added_once_deletion_started() {
        let old = ObjectMeta {
            deletion_timestamp: Some(Time("2024-01-01T00:00:00Z".parse().unwrap())),
            finalizers: Some(vec!["kubernetes".into()]),
            ..meta("a", None)
        };
        let new = ObjectMeta {
            finalizers: Some(vec!["kubernetes".into(), "example.com/x".into()]),
            ..old.clone()
        };
        assert_eq!(
            rendered(&validate_object_meta_update(&new, &old)),
            vec![
                r#"metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.com/x"}"#
            ]
        );
    }

    #[test]
    fn selector_requirements_follow_their_operator() {
        let req = |op: &str, values: &[&str]| LabelSelectorRequirement {
            key: "app".into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        };
        let sel = LabelSelector {
            match_expressions: Some(vec![
                req("In", &[]),
                req("Exists", &["x"]),
                req("Near", &[]),
            ]),
            match_labels: None,
        };
        assert_eq!(
            rendered(&validate_label_selector(
                &sel,
                &Path::new("spec").child("selector")
            )),
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                r#"spec.selector.matchExpressions[2].operator: Invalid value: "Near": not a valid selector operator"#,
            ]
        );
    }
}
