//! What the binder decides, without I/O: which volume a claim gets, whether
//! a volume and a claim already point at each other, and the objects a
//! binding writes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use skiff_api_types::quantity::Quantity;
use skiff_api_types::selector::LabelSelector;

/// Set on a claim once the controller has bound it.
pub(crate) const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim (volumeName) or a volume (claimRef) the controller filled
/// in, so it may undo what it did.
pub(crate) const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a provisioned volume: the provisioner that made it.
pub(crate) const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// On a claim: the provisioner expected to make its volume.
pub(crate) const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub(crate) const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// On a claim: the node the scheduler chose for its first consumer.
pub(crate) const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The class a claim named before `storageClassName`.
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn has_annotation(annotations: Option<&BTreeMap<String, String>>, key: &str) -> bool {
    annotations.is_some_and(|a| a.contains_key(key))
}

/// The class a claim asks for ("" for none).
pub(crate) fn claim_class(claim: &PersistentVolumeClaim) -> String {
    if let Some(c) = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BETA_CLASS))
    {
        return c.clone();
    }
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// The class of a volume ("" for none).
pub(crate) fn volume_class(pv: &PersistentVolume) -> String {
    if let Some(c) = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BETA_CLASS))
    {
        return c.clone();
    }
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// Whether binding waits for the scheduler (`WaitForFirstConsumer`).
pub(crate) fn delays_binding(class: Option<&StorageClass>) -> bool {
    class.is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
}

/// Whether the scheduler has picked a node for the claim's first consumer.
pub(crate) fn has_selected_node(claim: &PersistentVolumeClaim) -> bool {
    has_annotation(claim.metadata.annotations.as_ref(), SELECTED_NODE)
}

fn bytes(q: Option<&K8sQuantity>) -> i128 {
    q.and_then(|q| Quantity::from_k8s(q).ok())
        .map(|q| q.value())
        .unwrap_or(0)
}

/// The storage a claim requests, in bytes.
pub(crate) fn requested(claim: &PersistentVolumeClaim) -> i128 {
    bytes(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    )
}

/// A volume's capacity, in bytes.
pub(crate) fn capacity(pv: &PersistentVolume) -> i128 {
    bytes(
        pv.spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage")),
    )
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map(String::as_str).unwrap_or("Filesystem")
}

/// The volume's claimRef names this claim (and, when it carries a UID,
/// this very claim, not a deleted one of the same name).
pub(crate) fn is_bound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.name.as_deref() != claim.metadata.name.as_deref()
        || r.namespace.as_deref() != claim.metadata.namespace.as_deref()
    {
        return false;
    }
    match r.uid.as_deref() {
        None | Some("") => true,
        uid => uid == claim.metadata.uid.as_deref(),
    }
}

fn phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether an unbound volume fits the claim: class, mode, access modes,
/// the claim's selector, and capacity.
fn fits(pv: &PersistentVolume, claim: &PersistentVolumeClaim, request: i128) -> bool {
    let (Some(ps), Some(cs)) = (&pv.spec, &claim.spec) else {
        return false;
    };
    if volume_class(pv) != claim_class(claim) {
        return false;
    }
    if volume_mode(ps.volume_mode.as_ref()) != volume_mode(cs.volume_mode.as_ref()) {
        return false;
    }
    let modes = ps.access_modes.as_deref().unwrap_or(&[]);
    if !cs.access_modes.iter().flatten().all(|m| modes.contains(m)) {
        return false;
    }
    if let Some(sel) = &cs.selector {
        let Ok(sel) = LabelSelector::from_k8s(sel) else {
            return false;
        };
        if !sel.matches(&pv.metadata.labels.clone().unwrap_or_default()) {
            return false;
        }
    }
    capacity(pv) >= request
}

/// The volume a claim should be bound to, as upstream's
/// `FindMatchingVolume`: a volume pre-bound to the claim (by its claimRef)
/// that is large enough wins; otherwise the smallest Available, unclaimed
/// volume that fits. Unclaimed volumes are not considered while binding
/// waits for the first consumer (the scheduler pre-binds one then).
pub(crate) fn best_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    delay_binding: bool,
) -> Option<&'a PersistentVolume> {
    let request = requested(claim);
    let claim_mode = volume_mode(claim.spec.as_ref().and_then(|s| s.volume_mode.as_ref()));
    let mut best: Option<&PersistentVolume> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(spec) = &pv.spec else { continue };
        if spec.claim_ref.is_some() {
            if is_bound_to(pv, claim)
                && capacity(pv) >= request
                && volume_mode(spec.volume_mode.as_ref()) == claim_mode
            {
                return Some(pv);
            }
            continue;
        }
        if delay_binding || phase(pv) != "Available" || !fits(pv, claim, request) {
            continue;
        }
        if best.is_none_or(|b| capacity(pv) < capacity(b)) {
            best = Some(pv);
        }
    }
    best
}

/// The claimRef a bound volume carries.
pub(crate) fn claim_ref(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The volume pointed at the claim, when it is not yet: `None` if nothing
/// changes.
pub(crate) fn volume_bound(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Option<PersistentVolume> {
    let current = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if current
        .is_some_and(|r| r.uid.as_deref().is_some_and(|u| !u.is_empty()) && is_bound_to(pv, claim))
    {
        return None;
    }
    let mut pv = pv.clone();
    if current.is_none() {
        pv.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
    }
    pv.spec.get_or_insert_with(Default::default).claim_ref = Some(claim_ref(claim));
    Some(pv)
}

/// The claim pointed at the volume, marked bound: `None` if nothing
/// changes.
pub(crate) fn claim_bound(
    claim: &PersistentVolumeClaim,
    volume: &str,
) -> Option<PersistentVolumeClaim> {
    let named = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    let completed = has_annotation(claim.metadata.annotations.as_ref(), BIND_COMPLETED);
    if named == Some(volume) && completed {
        return None;
    }
    let mut claim = claim.clone();
    let annotations = claim.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if named != Some(volume) {
        annotations.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
    }
    annotations.insert(BIND_COMPLETED.into(), "yes".into());
    claim.spec.get_or_insert_with(Default::default).volume_name = Some(volume.into());
    Some(claim)
}

/// A bound claim's status: phase Bound, the volume's capacity and access
/// modes. `None` if it already says so.
pub(crate) fn bound_claim_status(
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Option<PersistentVolumeClaimStatus> {
    let spec = pv.spec.as_ref();
    let mut status = claim.status.clone().unwrap_or_default();
    let want_capacity = spec.and_then(|s| s.capacity.clone());
    let want_modes = spec.and_then(|s| s.access_modes.clone());
    if status.phase.as_deref() == Some("Bound")
        && status.capacity == want_capacity
        && status.access_modes == want_modes
    {
        return None;
    }
    status.phase = Some("Bound".into());
    status.capacity = want_capacity;
    status.access_modes = want_modes;
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, modes: &[&str], class: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"disk": name}},
            "spec": {"capacity": {"storage": size}, "accessModes": modes,
                     "storageClassName": class, "hostPath": {"path": "/tmp/x"}},
            "status": {"phase": "Available"},
        }))
        .unwrap()
    }

    fn claim(size: &str, modes: &[&str], class: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "u1", "resourceVersion": "5"},
            "spec": {"accessModes": modes, "storageClassName": class,
                     "resources": {"requests": {"storage": size}}},
        }))
        .unwrap()
    }

    #[test]
    fn the_smallest_volume_that_fits_wins() {
        let vols = [
            pv("small", "1Gi", &["ReadWriteOnce"], ""),
            pv("huge", "100Gi", &["ReadWriteOnce"], ""),
            pv("right", "5Gi", &["ReadWriteOnce", "ReadOnlyMany"], ""),
            pv("bigger", "10Gi", &["ReadWriteOnce"], ""),
        ];
        let c = claim("2Gi", &["ReadWriteOnce"], "");
        assert_eq!(
            best_match(&c, &vols, false)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("right")
        );
    }

    #[test]
    fn class_access_modes_mode_selector_and_phase_must_match() {
        let c = claim("1Gi", &["ReadWriteMany"], "");
        assert!(best_match(&c, &[pv("a", "5Gi", &["ReadWriteOnce"], "")], false).is_none());
        let c = claim("1Gi", &["ReadWriteOnce"], "fast");
        assert!(best_match(&c, &[pv("a", "5Gi", &["ReadWriteOnce"], "")], false).is_none());
        assert!(best_match(&c, &[pv("a", "5Gi", &["ReadWriteOnce"], "fast")], false).is_some());
        let mut block = pv("a", "5Gi", &["ReadWriteOnce"], "fast");
        block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        assert!(best_match(&c, &[block], false).is_none());
        let mut released = pv("a", "5Gi", &["ReadWriteOnce"], "fast");
        released.status.as_mut().unwrap().phase = Some("Released".into());
        assert!(best_match(&c, &[released], false).is_none());
        let mut selective = claim("1Gi", &["ReadWriteOnce"], "");
        selective.spec.as_mut().unwrap().selector =
            serde_json::from_value(json!({"matchLabels": {"disk": "b"}})).unwrap();
        let vols = [
            pv("a", "1Gi", &["ReadWriteOnce"], ""),
            pv("b", "9Gi", &["ReadWriteOnce"], ""),
        ];
        assert_eq!(
            best_match(&selective, &vols, false)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("b")
        );
    }

    #[test]
    fn a_pre_bound_volume_wins_and_volumes_claimed_by_others_are_skipped() {
        let c = claim("1Gi", &["ReadWriteOnce"], "");
        let mut mine = pv("mine", "50Gi", &["ReadWriteOnce"], "other-class");
        mine.spec.as_mut().unwrap().claim_ref =
            serde_json::from_value(json!({"namespace": "ns", "name": "data"})).unwrap();
        let mut theirs = pv("theirs", "1Gi", &["ReadWriteOnce"], "");
        theirs.spec.as_mut().unwrap().claim_ref =
            serde_json::from_value(json!({"namespace": "ns", "name": "other"})).unwrap();
        let free = pv("free", "2Gi", &["ReadWriteOnce"], "");
        let vols = [theirs.clone(), free.clone(), mine.clone()];
        assert_eq!(
            best_match(&c, &vols, false)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("mine")
        );
        // Pre-bound to a deleted claim of the same name: not ours.
        mine.spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid = Some("old".into());
        let vols = [theirs, free, mine];
        assert_eq!(
            best_match(&c, &vols, false)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("free")
        );
    }

    #[test]
    fn waiting_for_the_first_consumer_matches_only_pre_bound_volumes() {
        let c = claim("1Gi", &["ReadWriteOnce"], "");
        assert!(best_match(&c, &[pv("free", "2Gi", &["ReadWriteOnce"], "")], true).is_none());
        let mut picked = pv("picked", "2Gi", &["ReadWriteOnce"], "");
        picked.spec.as_mut().unwrap().claim_ref =
            serde_json::from_value(json!({"namespace": "ns", "name": "data", "uid": "u1"}))
                .unwrap();
        assert!(best_match(&c, &[picked], true).is_some());
    }

    #[test]
    fn binding_writes_claim_ref_annotations_and_status() {
        let c = claim("1Gi", &["ReadWriteOnce"], "");
        let v = pv("v", "2Gi", &["ReadWriteOnce"], "");
        let bound = volume_bound(&v, &c).unwrap();
        let r = bound.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
        assert_eq!(
            (r.name.as_deref(), r.uid.as_deref()),
            (Some("data"), Some("u1"))
        );
        assert_eq!(
            bound.metadata.annotations.as_ref().unwrap()[BOUND_BY_CONTROLLER],
            "yes"
        );
        assert!(volume_bound(&bound, &c).is_none(), "already bound");
        let claimed = claim_bound(&c, "v").unwrap();
        let a = claimed.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            (a[BIND_COMPLETED].as_str(), a[BOUND_BY_CONTROLLER].as_str()),
            ("yes", "yes")
        );
        assert!(claim_bound(&claimed, "v").is_none());
        let status = bound_claim_status(&claimed, &bound).unwrap();
        assert_eq!(status.phase.as_deref(), Some("Bound"));
        assert_eq!(status.capacity.unwrap()["storage"].0, "2Gi");
    }
}
