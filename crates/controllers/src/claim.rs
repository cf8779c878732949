//! Claiming dependents by selector, as upstream's `ControllerRefManager`:
//! a controller keeps what it controls and its selector still matches,
//! adopts orphans its selector matches (an ownerReference with
//! `controller: true` and `blockOwnerDeletion: true`), and releases what it
//! controls but no longer matches. Every write is pinned to the cached
//! resourceVersion, so a concurrent change makes it fail and retry rather
//! than overwrite.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::framework;
use crate::pods::controller_of;

/// What to do with one candidate dependent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Ours, and the selector matches.
    Keep,
    /// An orphan the selector matches.
    Adopt,
    /// Ours, but the selector no longer matches.
    Release,
    /// Someone else's, or nothing to do.
    Ignore,
}

/// Why claiming failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("adopting {kind} {namespace}/{name}")]
    Adopt {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("releasing {kind} {namespace}/{name}")]
    Release {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot adopt: {0}")]
    CannotAdopt(String),
}

/// Upstream's `ClaimObject` decision for `child`, given the owner and
/// whether the owner's selector matches the child.
pub(crate) fn decide(child: &ObjectMeta, owner: &ObjectMeta, matches: bool) -> Decision {
    let owner_deleting = owner.deletion_timestamp.is_some();
    if let Some(r) = controller_of(child) {
        if Some(&r.uid) != owner.uid.as_ref() {
            return Decision::Ignore;
        }
        if matches {
            return Decision::Keep;
        }
        if owner_deleting {
            return Decision::Ignore;
        }
        return Decision::Release;
    }
    if owner_deleting || !matches || child.deletion_timestamp.is_some() {
        return Decision::Ignore;
    }
    if owner.namespace.is_some() && owner.namespace != child.namespace {
        return Decision::Ignore;
    }
    Decision::Adopt
}

/// The owner references `child` should have once adopted by `controller`.
pub(crate) fn adopted_refs(child: &ObjectMeta, controller: &OwnerReference) -> Vec<OwnerReference> {
    let mut refs: Vec<OwnerReference> = child
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != controller.uid)
        .cloned()
        .collect();
    refs.push(controller.clone());
    refs
}

/// The owner references `child` keeps once released by `owner_uid`.
pub(crate) fn released_refs(child: &ObjectMeta, owner_uid: &str) -> Vec<OwnerReference> {
    child
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect()
}

/// Claims `candidates` for the owner described by `controller` (the
/// reference its dependents carry) and `owner` (its metadata as cached).
/// `fresh_owner` is asked once, before the first adoption, whether the owner
/// still exists with the same UID and is not being deleted (upstream's
/// `RecheckDeletionTimestamp`).
pub(crate) async fn claim<K, F, Fut>(
    client: &Client,
    owner: &ObjectMeta,
    controller: &OwnerReference,
    matches: impl Fn(&K) -> bool,
    candidates: Vec<Arc<K>>,
    fresh_owner: F,
) -> Result<Vec<Arc<K>>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let namespace = owner.namespace.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let mut claimed = Vec::new();
    let mut fresh_owner = Some(fresh_owner);
    let mut can_adopt: Option<Result<(), String>> = None;
    let mut first_error = None;
    for child in candidates {
        let decision = decide(child.meta(), owner, matches(&child));
        match decision {
            Decision::Keep => claimed.push(child),
            Decision::Ignore => {}
            Decision::Release => {
                let refs = released_refs(child.meta(), &controller.uid);
                let patch = json!({"metadata": {
                    "resourceVersion": child.resource_version(),
                    "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
                }});
                match api
                    .patch(
                        &child.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if framework::is_not_found(&e) || framework::is_invalid(&e) => {}
                    Err(source) => {
                        first_error.get_or_insert(Error::Release {
                            kind: K::kind(&()).into_owned(),
                            namespace: namespace.clone(),
                            name: child.name_any(),
                            source,
                        });
                    }
                }
            }
            Decision::Adopt => {
                if can_adopt.is_none() {
                    let check = fresh_owner.take().expect("asked once");
                    can_adopt = Some(check().await);
                }
                if let Some(Err(why)) = &can_adopt {
                    first_error.get_or_insert(Error::CannotAdopt(why.clone()));
                    continue;
                }
                let refs = adopted_refs(child.meta(), controller);
                let patch = json!({"metadata": {
                    "resourceVersion": child.resource_version(),
                    "ownerReferences": refs,
                }});
                match api
                    .patch(
                        &child.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(adopted) => claimed.push(Arc::new(adopted)),
                    Err(e) if framework::is_not_found(&e) => {}
                    Err(source) => {
                        first_error.get_or_insert(Error::Adopt {
                            kind: K::kind(&()).into_owned(),
                            namespace: namespace.clone(),
                            name: child.name_any(),
                            source,
                        });
                    }
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(claimed),
    }
}

/// Checks that the owner read afresh from the API server is the cached one
/// (same UID) and is not being deleted.
pub(crate) async fn recheck<O>(api: &Api<O>, cached: &ObjectMeta) -> Result<(), String>
where
    O: Resource + Clone + DeserializeOwned + Debug,
{
    let name = cached.name.clone().unwrap_or_default();
    let fresh = api
        .get(&name)
        .await
        .map_err(|e| format!("could not read {name} afresh: {e}"))?;
    if fresh.meta().uid != cached.uid {
        return Err(format!(
            "original {name} is gone: got uid {:?}, wanted {:?}",
            fresh.meta().uid,
            cached.uid
        ));
    }
    if fresh.meta().deletion_timestamp.is_some() {
        return Err(format!("{name} has just been deleted"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn meta(uid: &str, owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(uid.into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            owner_references: owner.map(|o| {
                vec![OwnerReference {
                    uid: o.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        }
    }

    fn deleting(mut m: ObjectMeta) -> ObjectMeta {
        m.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        m
    }

    #[test]
    fn owned_matching_children_are_kept_even_while_the_owner_is_deleted() {
        let owner = meta("rs", None);
        assert_eq!(decide(&meta("p", Some("rs")), &owner, true), Decision::Keep);
        assert_eq!(
            decide(&meta("p", Some("rs")), &deleting(owner), true),
            Decision::Keep
        );
    }

    #[test]
    fn owned_children_that_stop_matching_are_released_unless_the_owner_is_deleted() {
        let owner = meta("rs", None);
        assert_eq!(
            decide(&meta("p", Some("rs")), &owner, false),
            Decision::Release
        );
        assert_eq!(
            decide(&meta("p", Some("rs")), &deleting(owner), false),
            Decision::Ignore
        );
    }

    #[test]
    fn matching_orphans_are_adopted_unless_either_side_is_being_deleted() {
        let owner = meta("rs", None);
        assert_eq!(decide(&meta("p", None), &owner, true), Decision::Adopt);
        assert_eq!(decide(&meta("p", None), &owner, false), Decision::Ignore);
        assert_eq!(
            decide(&deleting(meta("p", None)), &owner, true),
            Decision::Ignore
        );
        assert_eq!(
            decide(&meta("p", None), &deleting(owner), true),
            Decision::Ignore
        );
    }

    #[test]
    fn children_of_another_controller_are_left_alone() {
        let owner = meta("rs", None);
        assert_eq!(
            decide(&meta("p", Some("other")), &owner, true),
            Decision::Ignore
        );
    }

    #[test]
    fn adoption_adds_the_controller_reference_and_release_removes_it() {
        let mut child = meta("p", None);
        child.owner_references = Some(vec![OwnerReference {
            uid: "keep".into(),
            ..OwnerReference::default()
        }]);
        let controller = OwnerReference {
            uid: "rs".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
            ..OwnerReference::default()
        };
        let refs = adopted_refs(&child, &controller);
        assert_eq!(refs.len(), 2);
        child.owner_references = Some(refs);
        let left = released_refs(&child, "rs");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].uid, "keep");
    }
}
