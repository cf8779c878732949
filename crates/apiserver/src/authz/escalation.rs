//! Escalation prevention (upstream's pkg/registry/rbac/*/policybased): a
//! user may write a Role or ClusterRole only with rules they hold themselves
//! (or with the `escalate` verb on it), and bind a role only if they hold
//! its rules (or with the `bind` verb on it). Members of `system:masters`
//! may do anything.

use serde_json::Value;
use skiff_api_types::registry::ResourceInfo;

use super::index::GROUP;
use super::rules::{self, PolicyRule};
use super::{Attributes, PRIVILEGED_GROUP, review};
use crate::Api;
use crate::server::User;
use crate::status::{ApiError, GroupResource};

/// Checks a create (`old` is `None`) or update of an RBAC object by `user`;
/// other kinds pass.
pub(crate) async fn check_escalation(
    api: &Api,
    user: &User,
    resource: &ResourceInfo,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if resource.group != GROUP
        || !matches!(
            resource.plural,
            "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings"
        )
        || user.groups.iter().any(|g| g == PRIVILEGED_GROUP)
        || old.is_some_and(|old| only_gc_fields_differ(obj, old))
    {
        return Ok(());
    }
    // Decide on what the store holds now, as upstream's registry-backed
    // rule resolver does (a role created a moment ago must be found).
    if let Ok(false) | Err(_) = api.cache.sync().await {
        return Err(ApiError::service_unavailable(
            "the watch cache is not ready",
        ));
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let namespace = if resource.namespaced {
        obj["metadata"]["namespace"].as_str().unwrap_or("")
    } else {
        ""
    };
    let gr = GroupResource {
        group: GROUP,
        resource: resource.plural,
    };
    let allowed = |verb: &str, resource: &str, name: &str| {
        review(
            api,
            &Attributes {
                user,
                verb,
                resource_request: true,
                api_group: GROUP,
                namespace: Some(namespace),
                resource,
                subresource: None,
                name: Some(name),
                path: "",
            },
        )
        .allowed
    };
    match resource.plural {
        "roles" | "clusterroles" => {
            if allowed("escalate", resource.plural, name) {
                return Ok(());
            }
            confirm_no_escalation(api, user, namespace, &PolicyRule::list_from(obj))
                .map_err(|why| ApiError::forbidden(gr, name, &why))?;
            let aggregates = obj["aggregationRule"]["clusterRoleSelectors"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            if aggregates && confirm_no_escalation(api, user, namespace, &full_authority()).is_err()
            {
                return Err(ApiError::forbidden(
                    gr,
                    name,
                    "must have cluster-admin privileges to use the aggregationRule",
                ));
            }
            Ok(())
        }
        _ => {
            let role_ref = &obj["roleRef"];
            let kind = role_ref["kind"].as_str().unwrap_or("");
            let role = role_ref["name"].as_str().unwrap_or("");
            let role_resource = match kind {
                "ClusterRole" => "clusterroles",
                "Role" => "roles",
                _ => "",
            };
            if !role_resource.is_empty() && allowed("bind", role_resource, role) {
                return Ok(());
            }
            let index = api.rbac.index(&api.cache);
            let granted = index.role_ref_rules(kind, role, namespace)?;
            confirm_no_escalation(api, user, namespace, &granted)
                .map_err(|why| ApiError::forbidden(gr, name, &why))
        }
    }
}

/// Fails, naming what is missing, unless `user` holds every one of `rules`
/// in `namespace` (upstream's ConfirmNoEscalation).
fn confirm_no_escalation(
    api: &Api,
    user: &User,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let index = api.rbac.index(&api.cache);
    let scope = Some(namespace).filter(|ns| !ns.is_empty());
    let (held, errors) = index.rules_for(user, scope);
    let (covered, missing) = rules::covers(&held, rules);
    if covered {
        return Ok(());
    }
    let mut lines: Vec<String> = rules::compact(missing)
        .iter()
        .map(PolicyRule::compact_string)
        .collect();
    lines.sort();
    lines.dedup();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        rules::go_quote_list(&user.groups),
        lines.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}

/// Everything: what an aggregationRule may gather.
fn full_authority() -> Vec<PolicyRule> {
    let all = || vec!["*".to_owned()];
    vec![
        PolicyRule {
            verbs: all(),
            api_groups: all(),
            resources: all(),
            ..PolicyRule::default()
        },
        PolicyRule {
            verbs: all(),
            non_resource_urls: all(),
            ..PolicyRule::default()
        },
    ]
}

/// Whether an update changes only what the garbage collector writes
/// (upstream's IsOnlyMutatingGCFields), or what the server fills in.
fn only_gc_fields_differ(obj: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v["metadata"].as_object_mut() {
            for field in [
                "ownerReferences",
                "finalizers",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "resourceVersion",
                "generation",
            ] {
                meta.remove(field);
            }
        }
        v
    };
    strip(obj) == strip(old)
}
