//! Aggregated ClusterRoles (upstream's clusterroleaggregation controller,
//! run inside the server): a ClusterRole with an `aggregationRule` gets as
//! `rules` the union of the rules of every ClusterRole its selectors match —
//! selector by selector, roles by name, each rule once. The rules are
//! written to the role, so clients see them and the authorizer reads them
//! like any other.
//!
//! Invariant: after every change to a ClusterRole, each aggregated
//! ClusterRole's stored rules equal that union. A task follows the watch
//! cache's ClusterRole events and recomputes all aggregated roles (there are
//! a handful) on each burst of changes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skiff_api_types::registry::{self, ResourceInfo};
use skiff_api_types::selector::LabelSelector;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use super::index::GROUP;
use super::rules::PolicyRule;
use crate::Api;
use crate::cache::CachedObject;

/// How long a burst of ClusterRole changes may take before aggregating.
const SETTLE: Duration = Duration::from_millis(20);

fn cluster_roles() -> &'static ResourceInfo {
    registry::lookup(GROUP, "v1", "clusterroles").expect("RBAC kinds are registered")
}

/// One ClusterRole, as aggregation reads it.
struct Role {
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    rules: Vec<PolicyRule>,
    /// `Some` for an aggregated role.
    selectors: Option<Vec<LabelSelector>>,
}

impl Role {
    fn read(obj: &CachedObject) -> Role {
        let value = obj.value();
        let selectors = value
            .get("aggregationRule")
            .filter(|a| a.is_object())
            .map(|a| {
                a["clusterRoleSelectors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        serde_json::from_value(s.clone())
                            .ok()
                            .and_then(|s| LabelSelector::from_k8s(&s).ok())
                            // A selector that does not parse selects nothing.
                            .unwrap_or_else(LabelSelector::nothing)
                    })
                    .collect()
            });
        Role {
            name: obj.name.clone(),
            labels: obj.labels.clone(),
            rules: PolicyRule::list_from(&value),
            selectors,
        }
    }
}

/// The rules an aggregated role gathers from `roles` (sorted by name).
fn aggregate(role: &Role, selectors: &[LabelSelector], roles: &[Role]) -> Vec<PolicyRule> {
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in selectors {
        for other in roles {
            if other.name == role.name || !selector.matches(&other.labels) {
                continue;
            }
            for rule in &other.rules {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    rules
}

/// Brings every aggregated ClusterRole up to date; repeats while a write
/// changed a role another one aggregates (admin gathers edit, which gathers
/// view). Answers how many roles it wrote.
pub(crate) async fn aggregate_all(api: &Api) -> usize {
    let resource = cluster_roles();
    let mut roles: Vec<Role> = api
        .cache
        .list(resource, &resource.key_prefix(None), |_| true)
        .objects
        .iter()
        .map(|o| Role::read(o))
        .collect();
    let mut written = 0;
    for _ in 0..8 {
        let mut changed = false;
        for i in 0..roles.len() {
            let Some(selectors) = &roles[i].selectors else {
                continue;
            };
            let rules = aggregate(&roles[i], selectors, &roles);
            if rules == roles[i].rules {
                continue;
            }
            match write_rules(api, resource, &roles[i].name, &rules).await {
                Ok(()) => {
                    debug!(object.ref = %roles[i].name, rules = rules.len(), "aggregated ClusterRole updated");
                    roles[i].rules = rules;
                    written += 1;
                    changed = true;
                }
                Err(e) => {
                    warn!(object.ref = %roles[i].name, error = %e.message, "updating an aggregated ClusterRole failed; will retry on the next change");
                }
            }
        }
        if !changed {
            break;
        }
    }
    written
}

/// Stores `rules` as the role's rules, guarded by the revision read.
async fn write_rules(
    api: &Api,
    resource: &ResourceInfo,
    name: &str,
    rules: &[PolicyRule],
) -> Result<(), crate::status::ApiError> {
    let key = resource.key(None, name);
    for _ in 0..5 {
        let Some(kv) = api
            .store
            .get(&key)
            .await
            .map_err(crate::rest::store_error)?
        else {
            return Ok(());
        };
        let mut obj: Value = serde_json::from_slice(&kv.value)
            .map_err(|e| crate::status::ApiError::internal(e.to_string()))?;
        obj["rules"] = rules.iter().map(PolicyRule::to_value).collect();
        let bytes = bytes::Bytes::from(serde_json::to_vec(&obj).expect("serializes"));
        match api.store.update(&key, bytes, Some(kv.mod_revision)).await {
            Ok(_) => return Ok(()),
            Err(skiff_store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(crate::rest::store_error(e)),
        }
    }
    Err(crate::status::ApiError::internal(
        "too many concurrent writers",
    ))
}

/// Runs the aggregation controller for as long as the server runs.
pub(crate) fn spawn(api: Arc<Api>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let resource = cluster_roles();
        loop {
            let Ok(start) = api.cache.watch(resource, None).await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let mut events = start.live;
            // Catch up with whatever changed before the watch began.
            aggregate_all(&api).await;
            loop {
                match events.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    // The cache reloaded: watch again.
                    Err(RecvError::Closed) => break,
                }
                tokio::time::sleep(SETTLE).await;
                while events.try_recv().is_ok() {}
                aggregate_all(&api).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn role(name: &str, labels: &[(&str, &str)], verbs: &[&str]) -> Role {
        Role {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            rules: verbs
                .iter()
                .map(|v| PolicyRule {
                    verbs: vec![v.to_string()],
                    api_groups: vec![String::new()],
                    resources: vec!["pods".into()],
                    ..PolicyRule::default()
                })
                .collect(),
            selectors: None,
        }
    }

    #[test]
    fn aggregation_unions_the_selected_roles_rules_once_each() {
        let roles = vec![
            role("a", &[("agg", "true")], &["get", "list"]),
            role("b", &[("agg", "true")], &["list", "watch"]),
            role("c", &[("other", "true")], &["delete"]),
        ];
        let target = role("target", &[("agg", "true")], &[]);
        let selectors = vec![LabelSelector::parse("agg=true").unwrap()];
        let verbs: Vec<String> = aggregate(&target, &selectors, &roles)
            .into_iter()
            .map(|r| r.verbs[0].clone())
            .collect();
        assert_eq!(verbs, ["get", "list", "watch"]);
    }
}
