//! ControllerRevisions, as upstream's `controller/history` keeps them for
//! DaemonSets and StatefulSets: each distinct pod template is stored once,
//! named `<owner>-<hash>` and labelled `controller-revision-hash`, with a
//! revision number; going back to an earlier template (`kubectl rollout
//! undo`) renumbers its revision instead of making a new one. The data is
//! the strategic-merge patch that puts the template back, which is what
//! `kubectl rollout undo` applies.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::deployment::util::compute_hash;
use crate::framework;

/// The label naming a pod's (and a revision's) template hash.
pub(crate) const HASH_LABEL: &str = "controller-revision-hash";

/// Why a revision could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("creating ControllerRevision {0}")]
    Create(String, #[source] kube::Error),
    #[error("updating ControllerRevision {0}")]
    Update(String, #[source] kube::Error),
    #[error("deleting ControllerRevision {0}")]
    Delete(String, #[source] kube::Error),
    /// A revision of that name holds other data: the owner's
    /// `collisionCount` must go up.
    #[error("hash collision on ControllerRevision {0}")]
    Collision(String),
}

/// The patch a revision stores for `template`.
pub(crate) fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(obj) = t.as_object_mut() {
        obj.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision stores, if it stores one.
pub(crate) fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(obj) = t.as_object_mut() {
        obj.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The revision name for an owner and hash (upstream's
/// `ControllerRevisionName`: the owner's name cut to 223 characters).
pub(crate) fn revision_name(owner: &str, hash: &str) -> String {
    let mut prefix = owner.to_owned();
    if prefix.len() > 223 {
        let mut cut = 223;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    format!("{prefix}-{hash}")
}

/// A revision for `template`, not yet written.
pub(crate) fn new_revision(
    owner: &ObjectMeta,
    controller: OwnerReference,
    template: &PodTemplateSpec,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let hash = compute_hash(template, collision_count);
    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(
                owner.name.as_deref().unwrap_or_default(),
                &hash,
            )),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(template_patch(template))),
        revision,
    }
}

/// The hash label of a revision.
pub(crate) fn hash_of(rev: &ControllerRevision) -> String {
    rev.labels().get(HASH_LABEL).cloned().unwrap_or_default()
}

/// Whether two revisions store the same template.
pub(crate) fn same_data(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    match (template_of(a), template_of(b)) {
        (Some(x), Some(y)) => crate::deployment::util::equal_ignore_hash(&x, &y),
        _ => a.data == b.data,
    }
}

/// The highest revision number.
pub(crate) fn max_revision(revs: &[Arc<ControllerRevision>]) -> i64 {
    revs.iter().map(|r| r.revision).max().unwrap_or(0)
}

/// Makes `wanted` the current revision: renumbers an equal existing one to
/// `number` if it is not the newest, or creates it. Answers the revision.
pub(crate) async fn ensure(
    client: &Client,
    existing: &[Arc<ControllerRevision>],
    wanted: ControllerRevision,
    number: i64,
) -> Result<ControllerRevision, Error> {
    let namespace = wanted.metadata.namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let equal: Vec<&Arc<ControllerRevision>> =
        existing.iter().filter(|r| same_data(r, &wanted)).collect();
    if let Some(newest) = equal.iter().max_by_key(|r| r.revision) {
        if newest.revision == max_revision(existing) {
            return Ok((***newest).clone());
        }
        let patch = json!({"revision": number});
        return api
            .patch(
                &newest.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| Error::Update(newest.name_any(), e));
    }
    let name = wanted.name_any();
    let mut rev = wanted;
    rev.revision = number;
    match api.create(&PostParams::default(), &rev).await {
        Ok(created) => Ok(created),
        Err(e) if framework::is_already_exists(&e) => {
            let found = api
                .get(&name)
                .await
                .map_err(|e| Error::Create(name.clone(), e))?;
            let same_owner = found.owner_references().iter().any(|r| {
                rev.owner_references()
                    .first()
                    .is_some_and(|o| o.uid == r.uid)
            });
            if same_owner && same_data(&found, &rev) {
                Ok(found)
            } else {
                Err(Error::Collision(name))
            }
        }
        Err(e) => Err(Error::Create(name, e)),
    }
}

/// Deletes the oldest revisions beyond `limit` that no live pod uses
/// (`live`: their hashes), never the current one.
pub(crate) async fn truncate(
    client: &Client,
    revs: &[Arc<ControllerRevision>],
    live: &[String],
    current: &str,
    limit: i32,
) -> Result<(), Error> {
    let mut old: Vec<&Arc<ControllerRevision>> = revs
        .iter()
        .filter(|r| {
            let h = hash_of(r);
            h != current && !live.contains(&h)
        })
        .collect();
    let surplus = old.len().saturating_sub(limit.max(0) as usize);
    old.sort_by_key(|r| r.revision);
    for r in old.into_iter().take(surplus) {
        let api: Api<ControllerRevision> = Api::namespaced(
            client.clone(),
            r.metadata.namespace.as_deref().unwrap_or_default(),
        );
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if framework::is_not_found(&e) => {}
            Err(e) => return Err(Error::Delete(r.name_any(), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    #[test]
    fn revisions_store_a_replacing_template_patch_named_by_hash() {
        let owner = ObjectMeta {
            name: Some("ds".into()),
            namespace: Some("ns".into()),
            uid: Some("u".into()),
            ..ObjectMeta::default()
        };
        let controller = crate::pods::controller_ref("apps/v1", "DaemonSet", &owner);
        let a = new_revision(&owner, controller.clone(), &template("a"), 1, None);
        let b = new_revision(&owner, controller.clone(), &template("b"), 2, None);
        assert_eq!(
            a.metadata.name.as_deref(),
            Some(format!("ds-{}", hash_of(&a)).as_str())
        );
        assert_eq!(a.labels()["app"], "x");
        assert_eq!(
            a.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
            "replace"
        );
        assert_eq!(template_of(&a), Some(template("a")));
        assert!(!same_data(&a, &b));
        assert!(same_data(
            &a,
            &new_revision(&owner, controller.clone(), &template("a"), 5, None)
        ));
        // A collision count gives another name.
        let c = new_revision(&owner, controller, &template("a"), 1, Some(1));
        assert_ne!(hash_of(&a), hash_of(&c));
        assert_eq!(max_revision(&[Arc::new(a), Arc::new(b)]), 2);
    }
}
