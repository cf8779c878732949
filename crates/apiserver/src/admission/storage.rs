//! The storage plugins:
//! - DefaultStorageClass (plugin/pkg/admission/storage/storageclass/setdefault):
//!   a claim that names no class gets the default StorageClass;
//! - StorageObjectInUseProtection (.../storageobjectinuseprotection): new
//!   claims and volumes carry the `kubernetes.io/pvc-protection` /
//!   `kubernetes.io/pv-protection` finalizer, which their protection
//!   controllers remove once nothing uses them;
//! - PersistentVolumeClaimResize (.../persistentvolume/resize): a claim grows
//!   only when bound and when its StorageClass allows volume expansion.

use serde_json::{Value, json};

use super::ingress_class::newest_default;
use super::{Operation, Request, lookup, resources};
use crate::status::ApiError;

pub const DEFAULT_STORAGE_CLASS: &str = "DefaultStorageClass";
pub const IN_USE_PROTECTION: &str = "StorageObjectInUseProtection";
pub const CLAIM_RESIZE: &str = "PersistentVolumeClaimResize";

const DEFAULT_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The annotation that named a claim's class before `storageClassName`.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// DefaultStorageClass: fills in `storageClassName` of new claims.
pub fn default_class(req: &Request<'_>, claim: &mut Value) -> Result<(), ApiError> {
    if !(req.is("", "persistentvolumeclaims")
        && req.subresource.is_none()
        && req.operation == Operation::Create)
    {
        return Ok(());
    }
    if claim_class(claim).is_some() {
        return Ok(());
    }
    let classes = lookup::list(
        req.api,
        lookup::resource("storage.k8s.io", "storageclasses"),
        None,
    );
    let default = newest_default(&classes, DEFAULT_ANNOTATION)
        .or_else(|| newest_default(&classes, BETA_DEFAULT_ANNOTATION));
    if let Some(class) = default {
        claim["spec"]["storageClassName"] = json!(class);
    }
    Ok(())
}

/// The class a claim names, `""` included (which asks for no class).
fn claim_class(claim: &Value) -> Option<&str> {
    claim["metadata"]["annotations"][BETA_CLASS_ANNOTATION]
        .as_str()
        .or_else(|| claim["spec"]["storageClassName"].as_str())
}

/// StorageObjectInUseProtection: adds the protection finalizer to new claims
/// and volumes.
pub fn protect(req: &Request<'_>, obj: &mut Value) {
    if req.subresource.is_some() || req.operation != Operation::Create {
        return;
    }
    let finalizer = if req.is("", "persistentvolumeclaims") {
        "kubernetes.io/pvc-protection"
    } else if req.is("", "persistentvolumes") {
        "kubernetes.io/pv-protection"
    } else {
        return;
    };
    add_finalizer(obj, finalizer);
}

fn add_finalizer(obj: &mut Value, finalizer: &str) {
    match obj["metadata"]["finalizers"].as_array_mut() {
        Some(f) if f.iter().any(|x| x == finalizer) => {}
        Some(f) => f.push(json!(finalizer)),
        None => obj["metadata"]["finalizers"] = json!([finalizer]),
    }
}

/// PersistentVolumeClaimResize: refuses growing a claim that cannot grow.
pub fn validate_resize(
    req: &Request<'_>,
    claim: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(old) = old else {
        return Ok(());
    };
    if !(req.is("", "persistentvolumeclaims")
        && req.subresource.is_none()
        && req.operation == Operation::Update)
    {
        return Ok(());
    }
    let size = |c: &Value| {
        resources::quantity(&c["spec"]["resources"]["requests"]["storage"]).unwrap_or_default()
    };
    if size(claim) <= size(old) {
        return Ok(());
    }
    if old["status"]["phase"] != "Bound" {
        return Err(req.forbidden(claim, "Only bound persistent volume claims can be expanded"));
    }
    let expandable = match (claim_class(claim), claim_class(old)) {
        (Some(class), Some(old_class)) if class == old_class && !class.is_empty() => {
            lookup::cached(
                req.api,
                lookup::resource("storage.k8s.io", "storageclasses"),
                None,
                class,
            )
            .is_some_and(|c| c["allowVolumeExpansion"] == true)
        }
        _ => false,
    };
    if !expandable {
        return Err(req.forbidden(
            claim,
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_class_is_a_choice_and_the_beta_annotation_counts() {
        assert_eq!(
            claim_class(&json!({"spec": {"storageClassName": ""}})),
            Some("")
        );
        assert_eq!(claim_class(&json!({"spec": {}})), None);
        assert_eq!(
            claim_class(
                &json!({"metadata": {"annotations": {BETA_CLASS_ANNOTATION: "slow"}}, "spec": {}})
            ),
            Some("slow")
        );
    }

    #[test]
    fn the_protection_finalizer_is_added_once() {
        let mut pvc = json!({"metadata": {"finalizers": ["other"]}});
        add_finalizer(&mut pvc, "kubernetes.io/pvc-protection");
        add_finalizer(&mut pvc, "kubernetes.io/pvc-protection");
        assert_eq!(
            pvc["metadata"]["finalizers"],
            json!(["other", "kubernetes.io/pvc-protection"])
        );
    }
}
