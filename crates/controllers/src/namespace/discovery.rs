//! Which namespaced resources can be deleted: the preferred version of every
//! API group the server serves (CustomResourceDefinitions' too), as
//! upstream's `ServerPreferredNamespacedResources` filtered by the `delete`
//! verb. A group whose discovery fails is reported, not fatal: the rest is
//! still deleted.

use std::collections::BTreeMap;

use futures::{StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use kube::discovery::ApiResource;

/// A resource whose objects the namespace controller deletes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Deletable {
    pub resource: ApiResource,
    /// It supports `deletecollection` (else: list, then delete each).
    pub delete_collection: bool,
    /// It supports `list` (else what remains cannot be checked).
    pub list: bool,
}

impl Deletable {
    /// `resource.group`, as upstream's condition messages name it.
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.resource.plural, self.resource.group)
    }

    /// `group/version, Resource=plural`, as upstream prints a GVR.
    pub fn gvr(&self) -> String {
        format!(
            "{}/{}, Resource={}",
            self.resource.group, self.resource.version, self.resource.plural
        )
    }
}

/// What discovery found.
#[derive(Debug, Default)]
pub(crate) struct Discovered {
    pub resources: Vec<Deletable>,
    /// `group/version` → why its resources could not be listed.
    pub failed: BTreeMap<String, String>,
}

/// The namespaced, deletable resources of one group version's list
/// (subresources left out).
pub(crate) fn deletable(group_version: &str, list: &APIResourceList) -> Vec<Deletable> {
    let (group, version) = match group_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", group_version),
    };
    list.resources
        .iter()
        .filter(|r| r.namespaced && !r.name.contains('/'))
        .filter(|r| r.verbs.iter().any(|v| v == "delete"))
        .map(|r| Deletable {
            resource: ApiResource {
                group: r.group.clone().unwrap_or_else(|| group.to_owned()),
                version: r.version.clone().unwrap_or_else(|| version.to_owned()),
                api_version: group_version.to_owned(),
                kind: r.kind.clone(),
                plural: r.name.clone(),
            },
            delete_collection: r.verbs.iter().any(|v| v == "deletecollection"),
            list: r.verbs.iter().any(|v| v == "list"),
        })
        .collect()
}

/// Discovers every deletable namespaced resource. Fails only when the
/// server's group lists themselves cannot be read.
pub(crate) async fn discover(client: &Client) -> Result<Discovered, kube::Error> {
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
    let mut found = Discovered::default();
    for (gv, list) in lists {
        match list {
            Ok(list) => found.resources.extend(deletable(&gv, &list)),
            Err(e) => {
                found.failed.insert(gv, e.to_string());
            }
        }
    }
    found.resources.sort_by(|a, b| {
        (&a.resource.group, &a.resource.plural).cmp(&(&b.resource.group, &b.resource.plural))
    });
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn resource(name: &str, namespaced: bool, verbs: &[&str]) -> APIResource {
        APIResource {
            name: name.into(),
            kind: "Kind".into(),
            namespaced,
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..APIResource::default()
        }
    }

    #[test]
    fn only_namespaced_deletable_resources_are_kept_and_subresources_dropped() {
        let list = APIResourceList {
            group_version: "apps/v1".into(),
            resources: vec![
                resource("deployments", true, &["list", "delete", "deletecollection"]),
                resource("deployments/status", true, &["get", "update"]),
                resource("deployments/scale", true, &["get", "update", "delete"]),
                resource("bindings", true, &["create"]),
                resource("nodes", false, &["list", "delete"]),
                resource("leases", true, &["delete"]),
            ],
        };
        let found = deletable("apps/v1", &list);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].resource.plural, "deployments");
        assert_eq!(found[0].resource.group, "apps");
        assert_eq!(found[0].resource.version, "v1");
        assert!(found[0].delete_collection && found[0].list);
        assert_eq!(found[1].resource.plural, "leases");
        assert!(!found[1].delete_collection && !found[1].list);
    }

    #[test]
    fn the_core_group_is_the_empty_group() {
        let list = APIResourceList {
            group_version: "v1".into(),
            resources: vec![resource(
                "pods",
                true,
                &["delete", "list", "deletecollection"],
            )],
        };
        let pods = &deletable("v1", &list)[0];
        assert_eq!(pods.resource.group, "");
        assert_eq!(pods.resource.api_version, "v1");
        assert_eq!(pods.group_resource(), "pods.");
        assert_eq!(pods.gvr(), "/v1, Resource=pods");
    }
}
