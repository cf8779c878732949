//! Server-side apply and `managedFields` tracking, as upstream's field
//! manager does them:
//!
//! - [`track_update`]: every create, update and patch records, in the
//!   writer's `Update` entry, the fields it changed, taking them from the
//!   other managers.
//! - [`apply`]: merges an applied configuration into the live object,
//!   removes the fields the applier applied before and no longer applies
//!   (unless another manager owns them), and refuses (409) to change a
//!   field another manager owns to a different value unless forced.

use serde_json::{Value, json};
use skiff_api_types::registry::ResourceInfo;

use super::fieldpath::{Path, PathElement, Set, path_string};
use super::managed::{Entry, Managed, ManagerId, Operation, stripped_fields};
use super::meta::{self, Ty};
use super::typed::{self, Comparison};
use crate::status::ApiError;

/// The manager `kubectl apply --server-side` uses, which inherits the
/// ownership of `kubectl apply`'s last-applied configuration.
const KUBECTL: &str = "kubectl";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The updater that owns what an object held before its first apply.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Which part of an applied configuration the apply may own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// All of it.
    Everything,
    /// All but `status` (the main resource of a kind with a status
    /// subresource).
    AllButStatus,
    /// Only `status` (the status subresource).
    StatusOnly,
}

/// Server-side apply of `applied` by `manager` onto `current` (`None`:
/// the object is created), answering the new object with its
/// `managedFields`. Fields of `status` are applied like any other; see
/// [`apply_subresource`] to apply as upstream does to a main resource or its
/// status subresource (what the server calls).
#[cfg(test)]
pub(crate) fn apply(
    resource: &ResourceInfo,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApiError> {
    apply_in(
        resource,
        Scope::Everything,
        "",
        current,
        applied,
        manager,
        force,
        now,
    )
}

/// Server-side apply through the main resource (`subresource` `None`: the
/// applied `status`, which that write cannot change, is ignored when the
/// kind has a status subresource) or a subresource (`Some("status")`: only
/// the applied `status` counts, and the entry names the subresource).
pub(crate) fn apply_subresource(
    resource: &ResourceInfo,
    subresource: Option<&str>,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApiError> {
    let scope = match subresource {
        None if resource.subresources.iter().any(|s| s.name == "status") => Scope::AllButStatus,
        None => Scope::Everything,
        Some("status") => Scope::StatusOnly,
        Some(_) => Scope::Everything,
    };
    apply_in(
        resource,
        scope,
        subresource.unwrap_or(""),
        current,
        applied,
        manager,
        force,
        now,
    )
}

#[allow(clippy::too_many_arguments)]
fn apply_in(
    resource: &ResourceInfo,
    scope: Scope,
    subresource: &str,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApiError> {
    if applied
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|f| !f.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let ty = meta::root(resource);
    let version = api_version(resource);
    let live = current.map_or_else(|| json!({}), without_managed_fields);
    let mut managed = current
        .and_then(|c| Managed::decode(managed_fields(c)).ok())
        .unwrap_or_default();
    if managed.is_empty() && current.is_some() {
        attribute_to_before_first_apply(&mut managed, &live, ty, &version, subresource, now);
    }
    let me = ManagerId::new(manager, Operation::Apply, &version, subresource);
    let config = scoped(applied, scope);

    let previous = managed.entries.get(&me).cloned();
    let mut merged = typed::merge(Some(&live), Some(&config), ty)
        .map_err(|e| typed_patch_error(resource, applied, &e))?
        .unwrap_or_else(|| json!({}));
    managed.entries.insert(
        me.clone(),
        Entry {
            set: typed::field_set(&config, ty),
            api_version: version.clone(),
            time: previous.as_ref().and_then(|p| p.time.clone()),
        },
    );
    if let Some(last) = previous.as_ref().filter(|p| !p.set.is_empty()) {
        merged = prune(&merged, &managed, &last.set, ty);
    }

    let cmp = typed::compare(
        &typed::with_zero_fields(&live, ty),
        &typed::with_zero_fields(&merged, ty),
        ty,
    );
    if let Err(conflicts) = managed.take_changes(&me, &cmp, force) {
        // `kubectl apply --server-side` after `kubectl apply`: the fields
        // the last-applied configuration still holds are kubectl's own.
        let allowed = if me.manager == KUBECTL {
            last_applied_fields(&live, ty, &version)
        } else {
            None
        };
        let remaining: Vec<_> = conflicts
            .into_iter()
            .filter(|(_, path)| !allowed.as_ref().is_some_and(|a| a.has(path)))
            .collect();
        if !remaining.is_empty() {
            return Err(conflict_error(&remaining));
        }
        managed
            .take_changes(&me, &cmp, true)
            .expect("a forced operation has no conflicts");
    }
    if let Some(entry) = managed.entries.get_mut(&me) {
        entry.set = entry.set.difference(&stripped_fields());
        if merged != live {
            entry.time = Some(now.to_owned());
        }
        if entry.set.is_empty() {
            managed.entries.remove(&me);
        }
    }

    if me.manager == KUBECTL {
        refresh_last_applied(&mut merged, applied);
    }
    set_managed_fields(&mut merged, managed.encode());
    Ok(merged)
}

/// Records in `new`'s `managedFields` the fields `manager` changed from
/// `old` (`None`: `new` is being created), as an `Update` entry, taking
/// them from every other manager; removed fields are owned by nobody.
///
/// As upstream: `managedFields` the request itself carries are the starting
/// point (an empty list, or a list holding one empty entry, clears them),
/// except on a subresource; an existing object without `managedFields` is
/// not tracked; the identity and server-set metadata are never owned. When
/// `new` carries the entry a server-side apply by `manager` just wrote,
/// the apply has done the bookkeeping and nothing more is recorded.
pub(crate) fn track_update(
    resource: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    if !new.is_object() || just_applied(old, new, manager, now) {
        return;
    }
    let ty = meta::root(resource);
    let version = api_version(resource);
    let subresource = subresource.unwrap_or("");
    let from_old = || {
        old.and_then(|o| Managed::decode(managed_fields(o)).ok())
            .unwrap_or_default()
    };
    let requested = managed_fields(new);
    let mut managed = if !subresource.is_empty() {
        from_old()
    } else if is_reset(requested) {
        Managed::default()
    } else {
        match Managed::decode(requested) {
            Ok(m) if !m.is_empty() => m,
            _ => from_old(),
        }
    };
    set_managed_fields(new, None);
    let exists = old.is_some_and(|o| o["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    if managed.is_empty() && exists {
        return;
    }
    let before = old.map_or_else(|| json!({}), without_managed_fields);
    let me = ManagerId::new(manager, Operation::Update, &version, subresource);
    record_update(&mut managed, &me, &before, new, ty, &version, now);
    managed.cap_updaters();
    set_managed_fields(new, managed.encode());
}

/// Gives `me` the fields that differ between `before` and `after`.
fn record_update(
    managed: &mut Managed,
    me: &ManagerId,
    before: &Value,
    after: &Value,
    ty: &'static Ty,
    version: &str,
    now: &str,
) {
    let cmp = typed::compare(
        &typed::with_zero_fields(before, ty),
        &typed::with_zero_fields(after, ty),
        ty,
    );
    let _ = managed.take_changes(me, &cmp, true);
    let changed = cmp
        .modified
        .union(&cmp.added)
        .difference(&stripped_fields());
    let previous = managed.entries.remove(me);
    let kept = previous.as_ref().map(|p| p.set.difference(&cmp.removed));
    if changed.is_empty() {
        if let Some(mut entry) = previous.filter(|_| kept.as_ref().is_some_and(|k| !k.is_empty())) {
            entry.set = kept.expect("checked");
            managed.entries.insert(me.clone(), entry);
        }
        return;
    }
    let set = match kept {
        Some(k) => k.union(&changed),
        None => changed,
    };
    managed.entries.insert(
        me.clone(),
        Entry {
            set,
            api_version: version.to_owned(),
            time: Some(now.to_owned()),
        },
    );
}

/// The first apply to an object nobody tracked yet: what it holds is owned
/// by `before-first-apply`, so the applier conflicts with it as with any
/// other owner.
fn attribute_to_before_first_apply(
    managed: &mut Managed,
    live: &Value,
    ty: &'static Ty,
    version: &str,
    subresource: &str,
    now: &str,
) {
    let me = ManagerId::new(BEFORE_FIRST_APPLY, Operation::Update, version, subresource);
    let zero = typed::with_zero_fields(&json!({}), ty);
    record_update(managed, &me, &zero, live, ty, version, now);
}

/// Removes from `merged` the fields the applier applied last time and no
/// longer does, unless some manager (the applier included) still owns
/// them: structured-merge-diff's prune, with its "add back owned items".
fn prune(merged: &Value, managed: &Managed, last: &Set, ty: &'static Ty) -> Value {
    let owned = managed
        .entries
        .values()
        .fold(Set::new(), |acc, e| acc.union(&e.set));
    let removable =
        typed::with_named_fields(last, ty).difference(&typed::with_named_fields(&owned, ty));
    typed::remove_items(merged, &removable, ty).unwrap_or_else(|| json!({}))
}

/// The fields of kubectl's last-applied configuration whose values the
/// live object still holds: those a server-side apply by kubectl takes over
/// without a conflict.
fn last_applied_fields(live: &Value, ty: &'static Ty, version: &str) -> Option<Set> {
    let text = live["metadata"]["annotations"][LAST_APPLIED].as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last["apiVersion"].as_str() != Some(version) {
        return None;
    }
    let cmp: Comparison = typed::compare(&last, live, ty);
    Some(
        typed::field_set(&last, ty)
            .difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    )
}

/// After a server-side apply by kubectl, an object that carries kubectl's
/// last-applied annotation gets the applied configuration as its new value,
/// so a later client-side `kubectl apply` computes from it.
fn refresh_last_applied(merged: &mut Value, applied: &Value) {
    let has = merged["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .is_some_and(|s| !s.is_empty());
    if !has {
        return;
    }
    let mut config = applied.clone();
    if let Some(a) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    merged["metadata"]["annotations"][LAST_APPLIED] =
        json!(serde_json::to_string(&config).expect("serializes"));
}

/// Whether `new` carries an `Apply` entry of `manager` written by this
/// request: one `old` does not have, or stamped this very second.
fn just_applied(old: Option<&Value>, new: &Value, manager: &str, now: &str) -> bool {
    let old_entries = old
        .and_then(managed_fields)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    managed_fields(new)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e["operation"] == "Apply" && e["manager"] == manager)
        .any(|e| !old_entries.contains(e) || e["time"] == now)
}

/// upstream's isResetManagedFields: `[]` or `[{}]`.
fn is_reset(fields: Option<&Value>) -> bool {
    match fields.and_then(Value::as_array).map(Vec::as_slice) {
        Some([]) => true,
        Some([only]) => only.as_object().is_some_and(|m| m.is_empty()),
        _ => false,
    }
}

fn scoped(applied: &Value, scope: Scope) -> Value {
    let mut config = applied.clone();
    let Some(obj) = config.as_object_mut() else {
        return config;
    };
    match scope {
        Scope::Everything => {}
        Scope::AllButStatus => {
            obj.remove("status");
        }
        Scope::StatusOnly => {
            obj.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| {
                    matches!(k.as_str(), "name" | "namespace" | "resourceVersion" | "uid")
                });
            }
        }
    }
    config
}

fn api_version(resource: &ResourceInfo) -> String {
    if resource.group.is_empty() {
        resource.version.to_owned()
    } else {
        format!("{}/{}", resource.group, resource.version)
    }
}

fn managed_fields(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    set_managed_fields(&mut out, None);
    out
}

fn set_managed_fields(obj: &mut Value, fields: Option<Value>) {
    match fields {
        Some(f) => {
            if !obj["metadata"].is_object() {
                obj["metadata"] = json!({});
            }
            obj["metadata"]["managedFields"] = f;
        }
        None => {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("managedFields");
            }
        }
    }
}

/// An applied configuration that is not a valid object of its kind (a
/// duplicate list key, a list element without keys): upstream answers 500.
fn typed_patch_error(resource: &ResourceInfo, applied: &Value, why: &str) -> ApiError {
    let name = |k: &str| applied["metadata"][k].as_str().unwrap_or("").to_owned();
    ApiError {
        code: 500,
        reason: "InternalError",
        message: format!(
            "failed to create typed patch object ({}/{}; {}, Kind={}): {why}",
            name("namespace"),
            name("name"),
            api_version(resource),
            resource.kind
        ),
        details: None,
    }
}

/// upstream's apply conflict: 409 Conflict with one `FieldManagerConflict`
/// cause per field.
fn conflict_error(conflicts: &[(ManagerId, Path)]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(id, path)| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", id.describe()),
                "field": path_string(path),
            })
        })
        .collect();
    let message = if let [(id, path)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            id.describe(),
            path_string(path)
        )
    } else {
        let mut by_manager: Vec<(&ManagerId, Vec<&[PathElement]>)> = Vec::new();
        for (id, path) in conflicts {
            match by_manager.iter_mut().find(|(m, _)| *m == id) {
                Some((_, paths)) => paths.push(path),
                None => by_manager.push((id, vec![path])),
            }
        }
        by_manager.sort_by_key(|(m, _)| m.describe());
        let mut lines = Vec::new();
        for (id, paths) in by_manager {
            lines.push(format!("conflicts with {}:", id.describe()));
            lines.extend(paths.into_iter().map(|p| format!("- {}", path_string(p))));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        details: Some(json!({ "causes": causes })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api_types::registry;

    const T0: &str = "2024-05-01T10:00:00Z";
    const T1: &str = "2024-05-01T10:00:01Z";
    const T2: &str = "2024-05-01T10:00:02Z";

    fn deployments() -> &'static ResourceInfo {
        registry::by_kind("apps", "v1", "Deployment").unwrap()
    }

    fn config_maps() -> &'static ResourceInfo {
        registry::by_kind("", "v1", "ConfigMap").unwrap()
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}
                }
            }
        })
    }

    /// As the API server stores it: with a uid.
    fn stored(mut obj: Value) -> Value {
        obj["metadata"]["uid"] = json!("u-1");
        obj["metadata"]["creationTimestamp"] = json!(T0);
        obj
    }

    fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
    }

    #[test]
    fn apply_creates_the_object_with_the_appliers_fields() {
        let obj = apply(
            deployments(),
            None,
            &deployment(2, "nginx"),
            "kubectl",
            false,
            T0,
        )
        .unwrap();
        assert_eq!(obj["spec"]["replicas"], 2);
        let e = entry(&obj, "kubectl", "Apply").expect("an Apply entry");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["time"], T0);
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert_eq!(
            e["fieldsV1"],
            json!({
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                            ".": {}, "f:image": {}, "f:name": {}
                        }}}
                    }
                }
            })
        );
    }

    #[test]
    fn a_small_deployment_encodes_as_upstream_does() {
        let applied = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
        });
        let obj = apply(deployments(), None, &applied, "m", false, T0).unwrap();
        assert_eq!(
            entry(&obj, "m", "Apply").unwrap()["fieldsV1"],
            json!({"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{}}}}}}})
        );
    }

    #[test]
    fn reapplying_without_a_field_removes_it() {
        let mut first = deployment(2, "nginx");
        first["spec"]["paused"] = json!(true);
        first["metadata"]["labels"] = json!({"a": "1", "b": "2"});
        let live = stored(apply(deployments(), None, &first, "kubectl", false, T0).unwrap());
        let mut second = deployment(2, "nginx");
        second["metadata"]["labels"] = json!({"a": "1"});
        let obj = apply(deployments(), Some(&live), &second, "kubectl", false, T1).unwrap();
        assert!(obj["spec"].get("paused").is_none(), "{obj}");
        assert_eq!(obj["metadata"]["labels"], json!({"a": "1"}));
        let fields = &entry(&obj, "kubectl", "Apply").unwrap()["fieldsV1"];
        assert!(fields["f:spec"].get("f:paused").is_none());
    }

    #[test]
    fn reapplying_the_same_configuration_changes_nothing() {
        let live = stored(
            apply(
                deployments(),
                None,
                &deployment(2, "nginx"),
                "kubectl",
                false,
                T0,
            )
            .unwrap(),
        );
        let again = apply(
            deployments(),
            Some(&live),
            &deployment(2, "nginx"),
            "kubectl",
            false,
            T1,
        )
        .unwrap();
        assert_eq!(again, live, "same object, same managedFields, same time");
    }

    #[test]
    fn a_container_no_longer_applied_is_removed_and_ports_keep_their_default_protocol() {
        let mut first = deployment(1, "nginx");
        first["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox"}
        ]);
        let live = stored(apply(deployments(), None, &first, "kubectl", false, T0).unwrap());
        let mut second = deployment(1, "nginx");
        second["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
        ]);
        let obj = apply(deployments(), Some(&live), &second, "kubectl", false, T1).unwrap();
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}]}])
        );
    }

    #[test]
    fn a_field_another_manager_still_owns_is_not_removed() {
        let mut first = deployment(2, "nginx");
        first["spec"]["paused"] = json!(true);
        let live = stored(apply(deployments(), None, &first, "a", false, T0).unwrap());
        let live = stored(apply(deployments(), Some(&live), &first, "b", false, T1).unwrap());
        let obj = apply(
            deployments(),
            Some(&live),
            &deployment(2, "nginx"),
            "a",
            false,
            T2,
        )
        .unwrap();
        assert_eq!(obj["spec"]["paused"], true, "b still applies it");
    }

    #[test]
    fn a_differing_value_owned_by_another_manager_conflicts() {
        let live = stored(
            apply(
                deployments(),
                None,
                &deployment(2, "nginx"),
                "kubectl",
                false,
                T0,
            )
            .unwrap(),
        );
        let err = apply(
            deployments(),
            Some(&live),
            &deployment(3, "nginx"),
            "other",
            false,
            T1,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(err.reason, "Conflict");
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
        );
        assert_eq!(
            err.details.unwrap()["causes"],
            json!([{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".spec.replicas"}])
        );
    }

    #[test]
    fn a_conflict_with_an_updater_names_its_api_version() {
        let created = stored(
            apply(
                deployments(),
                None,
                &deployment(2, "nginx"),
                "kubectl",
                false,
                T0,
            )
            .unwrap(),
        );
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        track_update(
            deployments(),
            Some(&created),
            &mut scaled,
            "kubectl-client-side-apply",
            None,
            T1,
        );
        let err = apply(
            deployments(),
            Some(&scaled),
            &deployment(3, "nginx"),
            "kubectl",
            false,
            T2,
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        assert_eq!(
            err.details.unwrap()["causes"][0]["message"],
            "conflict with \"kubectl-client-side-apply\" using apps/v1"
        );
    }

    #[test]
    fn force_takes_ownership() {
        let live = stored(
            apply(
                deployments(),
                None,
                &deployment(2, "nginx"),
                "kubectl",
                false,
                T0,
            )
            .unwrap(),
        );
        let mut config = deployment(3, "nginx");
        config["spec"]
            .as_object_mut()
            .unwrap()
            .retain(|k, _| k == "replicas");
        let obj = apply(deployments(), Some(&live), &config, "hpa", true, T1).unwrap();
        assert_eq!(obj["spec"]["replicas"], 3);
        assert!(
            entry(&obj, "hpa", "Apply").unwrap()["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_some()
        );
        assert!(
            entry(&obj, "kubectl", "Apply").unwrap()["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_none()
        );
    }

    #[test]
    fn equal_values_are_shared_not_conflicts() {
        let live = stored(
            apply(
                deployments(),
                None,
                &deployment(2, "nginx"),
                "kubectl",
                false,
                T0,
            )
            .unwrap(),
        );
        let obj = apply(
            deployments(),
            Some(&live),
            &deployment(2, "nginx"),
            "other",
            false,
            T1,
        )
        .unwrap();
        for m in ["kubectl", "other"] {
            assert!(
                entry(&obj, m, "Apply").unwrap()["fieldsV1"]["f:spec"]
                    .get("f:replicas")
                    .is_some()
            );
        }
    }

    #[test]
    fn server_side_apply_after_client_side_apply_takes_over_without_conflicts() {
        // `kubectl apply` (client side) creates with the last-applied annotation.
        let mut csa = deployment(2, "nginx");
        let last = serde_json::to_string(&csa).unwrap();
        csa["metadata"]["annotations"] = json!({ LAST_APPLIED: last });
        let mut created = stored(csa);
        track_update(
            deployments(),
            None,
            &mut created,
            "kubectl-client-side-apply",
            None,
            T0,
        );
        assert!(entry(&created, "kubectl-client-side-apply", "Update").is_some());

        // `kubectl apply --server-side` changes the image kubectl had set.
        let obj = apply(
            deployments(),
            Some(&created),
            &deployment(2, "httpd"),
            "kubectl",
            false,
            T1,
        )
        .unwrap();
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"][0]["image"],
            "httpd"
        );
        let last: Value = serde_json::from_str(
            obj["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(last, deployment(2, "httpd"));

        // Someone else may not.
        let err = apply(
            deployments(),
            Some(&created),
            &deployment(2, "httpd"),
            "x",
            false,
            T1,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
    }

    #[test]
    fn the_first_apply_to_an_untracked_object_conflicts_with_what_it_held() {
        let live = stored(deployment(2, "nginx"));
        let err = apply(
            deployments(),
            Some(&live),
            &deployment(3, "nginx"),
            "kubectl-x",
            false,
            T1,
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("\"before-first-apply\" using apps/v1: .spec.replicas"),
            "{}",
            err.message
        );
    }

    #[test]
    fn applied_managed_fields_are_rejected() {
        let mut config = deployment(1, "x");
        config["metadata"]["managedFields"] = json!([]);
        assert_eq!(
            apply(deployments(), None, &config, "m", false, T0)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn applying_status_through_the_main_resource_ignores_it() {
        let mut config = deployment(1, "x");
        config["status"] = json!({"replicas": 7});
        let obj = apply_subresource(deployments(), None, None, &config, "m", false, T0).unwrap();
        assert!(obj.get("status").is_none());
        let status = apply_subresource(
            deployments(),
            Some("status"),
            Some(&stored(obj)),
            &config,
            "m",
            false,
            T1,
        )
        .unwrap();
        assert_eq!(status["status"]["replicas"], 7);
        let e = status["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["subresource"] == "status")
            .unwrap();
        assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    }

    #[test]
    fn track_update_on_create_owns_every_field_set() {
        let mut obj = stored(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default", "labels": {"a": "1"}},
            "data": {"k": "v"}
        }));
        track_update(config_maps(), None, &mut obj, "kubectl-create", None, T0);
        let e = entry(&obj, "kubectl-create", "Update").unwrap();
        assert_eq!(e["time"], T0);
        assert_eq!(e["apiVersion"], "v1");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
        );
    }

    #[test]
    fn a_deployment_created_by_update_matches_upstreams_shape() {
        let mut obj = stored(deployment(2, "nginx"));
        track_update(deployments(), None, &mut obj, "kubectl-create", None, T0);
        let fields = &entry(&obj, "kubectl-create", "Update").unwrap()["fieldsV1"];
        let containers = &fields["f:spec"]["f:template"]["f:spec"]["f:containers"];
        assert!(
            containers.get(".").is_none(),
            "containers is null in a zero PodSpec: {fields}"
        );
        assert!(containers["k:{\"name\":\"web\"}"].get(".").is_some());
        assert!(fields["f:spec"].get(".").is_none());
        assert_eq!(fields["f:spec"]["f:selector"], json!({}));
    }

    #[test]
    fn changed_fields_move_to_the_updater_and_empty_entries_go() {
        let mut obj = stored(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default"},
            "data": {"k": "v"}
        }));
        track_update(config_maps(), None, &mut obj, "creator", None, T0);
        let mut edited = obj.clone();
        edited["data"]["k"] = json!("w");
        track_update(config_maps(), Some(&obj), &mut edited, "editor", None, T1);
        assert!(entry(&edited, "editor", "Update").is_some());
        let creator = &entry(&edited, "creator", "Update").unwrap()["fieldsV1"];
        assert_eq!(*creator, json!({"f:data": {}}), "the editor took data.k");

        let mut removed = edited.clone();
        removed.as_object_mut().unwrap().remove("data");
        track_update(
            config_maps(),
            Some(&edited),
            &mut removed,
            "remover",
            None,
            T2,
        );
        assert!(
            removed["metadata"].get("managedFields").is_none(),
            "{removed}"
        );
    }

    #[test]
    fn untracked_objects_stay_untracked_and_reset_clears() {
        let old = stored(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}),
        );
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        track_update(config_maps(), Some(&old), &mut new, "x", None, T1);
        assert!(new["metadata"].get("managedFields").is_none());

        let mut tracked = old.clone();
        track_update(config_maps(), None, &mut tracked, "creator", None, T0);
        let mut reset = tracked.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        track_update(config_maps(), Some(&tracked), &mut reset, "x", None, T1);
        assert!(reset["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn managed_fields_stay_out_of_the_sets_and_the_request_cannot_drop_them() {
        let mut obj = stored(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}),
        );
        track_update(config_maps(), None, &mut obj, "creator", None, T0);
        let mut new = obj.clone();
        new["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        new["data"]["b"] = json!("2");
        new["metadata"]["resourceVersion"] = json!("5");
        track_update(config_maps(), Some(&obj), &mut new, "editor", None, T1);
        assert!(
            entry(&new, "creator", "Update").is_some(),
            "kept from the old object"
        );
        let editor = &entry(&new, "editor", "Update").unwrap()["fieldsV1"];
        assert_eq!(*editor, json!({"f:data": {"f:b": {}}}));
    }

    #[test]
    fn track_update_after_apply_in_the_same_request_records_nothing_more() {
        let obj = apply(
            deployments(),
            None,
            &deployment(2, "nginx"),
            "kubectl",
            false,
            T0,
        )
        .unwrap();
        let mut created = stored(obj);
        created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        track_update(deployments(), None, &mut created, "kubectl", None, T0);
        assert!(entry(&created, "kubectl", "Update").is_none());

        let live = created.clone();
        let mut updated = apply(
            deployments(),
            Some(&live),
            &deployment(3, "nginx"),
            "kubectl",
            false,
            T1,
        )
        .unwrap();
        track_update(
            deployments(),
            Some(&live),
            &mut updated,
            "kubectl",
            None,
            T1,
        );
        assert!(entry(&updated, "kubectl", "Update").is_none());
        assert_eq!(updated["spec"]["replicas"], 3);
    }

    #[test]
    fn updates_on_a_subresource_are_their_own_entries() {
        let mut obj = stored(deployment(1, "x"));
        track_update(deployments(), None, &mut obj, "creator", None, T0);
        let mut new = obj.clone();
        new["status"] = json!({"replicas": 1});
        track_update(
            deployments(),
            Some(&obj),
            &mut new,
            "controller",
            Some("status"),
            T1,
        );
        let e = entry(&new, "controller", "Update").unwrap();
        assert_eq!(e["subresource"], "status");
        assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    }
}
