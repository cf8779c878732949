//! What controllers ask of a pod and of ownerReferences, as upstream's
//! `podutil` and `metav1.GetControllerOf` answer it.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The owner reference with `controller: true`, if any.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A reference making `owner` the controller of what carries it, blocking
/// the owner's foreground deletion (upstream's `NewControllerRef`).
pub(crate) fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pod's phase ("" when unset).
pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Not finished and not being deleted (upstream's `IsPodActive`).
pub(crate) fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// Since when the pod's Ready condition has been True, if it is.
pub(crate) fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When a ready pod becomes available: at once without `min_ready_seconds`,
/// else that long after it turned ready. `None`: not ready (or ready at an
/// unknown time with a minimum to wait).
pub(crate) fn available_at(pod: &Pod, min_ready_seconds: i32) -> Option<Timestamp> {
    let since = ready_since(pod)?;
    if min_ready_seconds <= 0 {
        return Some(since.unwrap_or(Timestamp::UNIX_EPOCH));
    }
    since.map(|t| t + SignedDuration::from_secs(min_ready_seconds.into()))
}

/// Ready for at least `min_ready_seconds` (upstream's `IsPodAvailable`:
/// strictly after the ready time plus the minimum).
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match available_at(pod, min_ready_seconds) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(at) => at < now,
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Pods for tests.
    use k8s_openapi::api::core::v1::{Pod, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    /// A pod named `name`, on `node` ("" unscheduled), in `phase`, ready
    /// since `ready` (seconds after the epoch).
    pub fn pod(name: &str, node: &str, phase: &str, ready: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_owned()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(t).unwrap())),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pod;
    use super::*;

    #[test]
    fn availability_waits_strictly_past_min_ready_seconds() {
        let p = pod("a", "n", "Running", Some(100));
        let at = |s| Timestamp::from_second(s).unwrap();
        assert!(is_available(&p, 0, at(0)));
        assert!(!is_available(&p, 10, at(110)));
        assert!(is_available(&p, 10, at(111)));
        assert_eq!(available_at(&p, 10), Some(at(110)));
        let not_ready = pod("b", "n", "Running", None);
        assert!(!is_available(&not_ready, 0, at(1000)));
    }

    #[test]
    fn finished_and_terminating_pods_are_not_active() {
        assert!(is_active(&pod("a", "", "Pending", None)));
        assert!(!is_active(&pod("a", "", "Succeeded", None)));
        let mut deleting = pod("a", "n", "Running", None);
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        );
        assert!(!is_active(&deleting));
    }
}
