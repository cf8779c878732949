//! Which resources the garbage collector follows: every resource of every
//! group's preferred version that can be listed, watched and deleted
//! (CustomResourceDefinitions' included), but events, as upstream's
//! `GetDeletableResources` with its default ignored resources; and how an
//! ownerReference's apiVersion and kind map onto a resource.

use std::collections::HashMap;

use futures::{StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use kube::discovery::ApiResource;

/// One resource, and whether its objects live in namespaces.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Resource {
    pub api: ApiResource,
    pub namespaced: bool,
}

impl Resource {
    /// `plural.group`, a stable key.
    pub fn key(&self) -> String {
        format!("{}.{}", self.api.plural, self.api.group)
    }
}

/// What discovery found.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// Resources to watch.
    pub monitored: Vec<Resource>,
    /// (group, kind) → resource, for every resource served.
    by_kind: HashMap<(String, String), Resource>,
}

/// The group of an apiVersion (`apps/v1` → `apps`, `v1` → ``).
pub(crate) fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

impl Catalog {
    /// The resource of `kind` in `api_version`'s group.
    pub fn lookup(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        self.by_kind
            .get(&(group_of(api_version).to_owned(), kind.to_owned()))
    }

    /// Adds one group version's resources.
    pub fn add(&mut self, group_version: &str, list: &APIResourceList) {
        let (group, version) = match group_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", group_version),
        };
        for r in list.resources.iter().filter(|r| !r.name.contains('/')) {
            let resource = Resource {
                api: ApiResource {
                    group: r.group.clone().unwrap_or_else(|| group.to_owned()),
                    version: r.version.clone().unwrap_or_else(|| version.to_owned()),
                    api_version: group_version.to_owned(),
                    kind: r.kind.clone(),
                    plural: r.name.clone(),
                },
                namespaced: r.namespaced,
            };
            let verbs = |v: &str| r.verbs.iter().any(|x| x == v);
            let ignored = r.name == "events" && matches!(group, "" | "events.k8s.io");
            if verbs("list") && verbs("watch") && verbs("delete") && !ignored {
                self.monitored.push(resource.clone());
            }
            self.by_kind
                .entry((resource.api.group.clone(), r.kind.clone()))
                .or_insert(resource);
        }
    }
}

/// Discovers the server's resources. Fails only when the group lists
/// cannot be read; a group version that fails is left out (and logged).
pub(crate) async fn discover(client: &Client) -> Result<Catalog, kube::Error> {
    let core = client.list_core_api_versions().await?;
    let groups = client.list_api_groups().await?;
    let mut versions: Vec<String> = core.versions.into_iter().take(1).collect();
    for group in groups.groups {
        let preferred = group
            .preferred_version
            .map(|v| v.group_version)
            .or_else(|| group.versions.first().map(|v| v.group_version.clone()));
        versions.extend(preferred);
    }
    let lists: Vec<(String, Result<APIResourceList, kube::Error>)> = stream::iter(versions)
        .map(|gv| async move {
            let list = if gv.contains('/') {
                client.list_api_group_resources(&gv).await
            } else {
                client.list_core_api_resources(&gv).await
            };
            (gv, list)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut catalog = Catalog::default();
    for (gv, list) in lists {
        match list {
            Ok(list) => catalog.add(&gv, &list),
            Err(error) => {
                tracing::warn!(group_version = %gv, %error, "discovery failed; its resources are not followed")
            }
        }
    }
    catalog.monitored.sort_by_key(Resource::key);
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str]) -> APIResource {
        APIResource {
            name: name.into(),
            kind: kind.into(),
            namespaced,
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..APIResource::default()
        }
    }

    #[test]
    fn watchable_deletable_resources_are_followed_but_events() {
        let all = ["list", "watch", "delete", "get"];
        let mut c = Catalog::default();
        c.add(
            "v1",
            &APIResourceList {
                group_version: "v1".into(),
                resources: vec![
                    resource("pods", "Pod", true, &all),
                    resource("pods/status", "Pod", true, &["get"]),
                    resource("events", "Event", true, &all),
                    resource("namespaces", "Namespace", false, &all),
                    resource("bindings", "Binding", true, &["create"]),
                ],
            },
        );
        let keys: Vec<String> = c.monitored.iter().map(Resource::key).collect();
        assert_eq!(keys, ["pods.", "namespaces."]);
        let ns = c.lookup("v1", "Namespace").unwrap();
        assert!(!ns.namespaced);
        assert_eq!(c.lookup("v1", "Binding").unwrap().api.plural, "bindings");
        assert!(c.lookup("apps/v1", "Pod").is_none());
    }

    #[test]
    fn owner_kinds_resolve_whatever_their_version() {
        let mut c = Catalog::default();
        c.add(
            "apps/v1",
            &APIResourceList {
                group_version: "apps/v1".into(),
                resources: vec![resource(
                    "deployments",
                    "Deployment",
                    true,
                    &["list", "watch", "delete"],
                )],
            },
        );
        let d = c.lookup("apps/v1beta2", "Deployment").unwrap();
        assert_eq!(
            (d.api.group.as_str(), d.api.version.as_str()),
            ("apps", "v1")
        );
    }
}
