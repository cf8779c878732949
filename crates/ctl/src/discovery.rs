//! The server's resource types, from aggregated discovery, and how a name
//! the user typed (`po`, `pods`, `Pod`, `deployments.apps`) resolves to one.

use anyhow::{Context as _, Result, bail};
use http::Request;
use kube::Client;
use serde_json::Value;

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// One resource type the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub subresources: Vec<String>,
    /// Whether this is the group's preferred version.
    pub preferred: bool,
}

/// Every resource type the server serves.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub types: Vec<ResourceType>,
}

impl ResourceType {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as kubectl names a type.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `pod` or `deployment.apps`, as `-o name` prints.
    pub fn name_prefix(&self) -> String {
        let kind = self.kind.to_lowercase();
        if self.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.group)
        }
    }

    /// The REST path of the collection or, with `name`, of one object.
    /// `namespace` is ignored for cluster-scoped types; `None` lists across
    /// all namespaces.
    pub fn path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if self.namespaced
            && let Some(ns) = namespace
        {
            p.push_str("/namespaces/");
            p.push_str(ns);
        }
        p.push('/');
        p.push_str(&self.plural);
        if let Some(n) = name {
            p.push('/');
            p.push_str(n);
        }
        p
    }

    /// kube's description of this type, for `Api<DynamicObject>`.
    pub fn api_resource(&self) -> kube::discovery::ApiResource {
        kube::discovery::ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}

impl Resources {
    /// Reads `/api` and `/apis` with aggregated discovery.
    pub async fn discover(client: &Client) -> Result<Resources> {
        let mut types = Vec::new();
        for root in ["/api", "/apis"] {
            let req = Request::get(root)
                .header(http::header::ACCEPT, AGGREGATED)
                .body(Vec::new())?;
            let doc: Value = client
                .request(req)
                .await
                .with_context(|| format!("discovering the server's resources ({root})"))?;
            if doc["kind"] != "APIGroupDiscoveryList" {
                bail!("the server does not serve aggregated discovery at {root}");
            }
            types.extend(Self::parse(&doc));
        }
        Ok(Resources { types })
    }

    /// The types an `APIGroupDiscoveryList` lists.
    pub fn parse(doc: &Value) -> Vec<ResourceType> {
        let mut out = Vec::new();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        for group in doc["items"].as_array().into_iter().flatten() {
            let gname = group["metadata"]["name"].as_str().unwrap_or("").to_string();
            for (i, version) in group["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let vname = version["version"].as_str().unwrap_or("").to_string();
                for r in version["resources"].as_array().into_iter().flatten() {
                    let plural = r["resource"].as_str().unwrap_or("").to_string();
                    let kind = r["responseKind"]["kind"].as_str().unwrap_or("").to_string();
                    let singular = r["singularResource"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| kind.to_lowercase());
                    let subresources = r["subresources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["subresource"].as_str().map(str::to_string))
                        .collect();
                    out.push(ResourceType {
                        group: gname.clone(),
                        version: vname.clone(),
                        kind,
                        plural,
                        singular,
                        short_names: strings(&r["shortNames"]),
                        categories: strings(&r["categories"]),
                        namespaced: r["scope"] == "Namespaced",
                        verbs: strings(&r["verbs"]),
                        subresources,
                        preferred: i == 0,
                    });
                }
            }
        }
        out
    }

    /// Resolves what a user typed: a plural, singular, short name or kind,
    /// optionally qualified as `plural.group` or `plural.version.group`.
    pub fn resolve(&self, typed: &str) -> Result<&ResourceType> {
        let lower = typed.to_lowercase();
        let matches_name = |t: &ResourceType, n: &str| {
            t.plural == n
                || t.singular == n
                || t.kind.to_lowercase() == n
                || t.short_names.iter().any(|s| s == n)
        };
        // Unqualified: the preferred version, core and well-known groups first
        // (the order discovery lists them in).
        if let Some(t) = self
            .types
            .iter()
            .find(|t| t.preferred && matches_name(t, &lower))
        {
            return Ok(t);
        }
        if let Some((name, rest)) = lower.split_once('.') {
            // plural.version.group
            if let Some((version, group)) = rest.split_once('.')
                && let Some(t) = self
                    .types
                    .iter()
                    .find(|t| t.version == version && t.group == group && matches_name(t, name))
            {
                return Ok(t);
            }
            if let Some(t) = self
                .types
                .iter()
                .filter(|t| t.group == rest && matches_name(t, name))
                .max_by_key(|t| t.preferred)
            {
                return Ok(t);
            }
        }
        bail!("the server doesn't have a resource type \"{typed}\"")
    }

    /// Resolves an apiVersion and kind, as manifests name their type.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Result<&ResourceType> {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .with_context(|| format!("no matches for kind \"{kind}\" in version \"{api_version}\""))
    }

    /// The preferred-version types with one of `categories` (`all`).
    pub fn in_category(&self, category: &str) -> Vec<&ResourceType> {
        self.types
            .iter()
            .filter(|t| t.preferred && t.categories.iter().any(|c| c == category))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn sample() -> Resources {
        let core = json!({"kind": "APIGroupDiscoveryList", "items": [{"metadata": {}, "versions": [{"version": "v1", "resources": [
            {"resource": "pods", "responseKind": {"kind": "Pod"}, "scope": "Namespaced", "singularResource": "pod",
             "shortNames": ["po"], "categories": ["all"], "verbs": ["get", "list"], "subresources": [{"subresource": "log"}]},
            {"resource": "nodes", "responseKind": {"kind": "Node"}, "scope": "Cluster", "singularResource": "node", "shortNames": ["no"]}
        ]}]}]});
        let apps = json!({"kind": "APIGroupDiscoveryList", "items": [{"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": [
            {"resource": "deployments", "responseKind": {"kind": "Deployment"}, "scope": "Namespaced", "singularResource": "deployment", "shortNames": ["deploy"], "categories": ["all"]}
        ]}]}]});
        let mut types = Resources::parse(&core);
        types.extend(Resources::parse(&apps));
        Resources { types }
    }

    #[test]
    fn names_resolve_by_plural_singular_short_name_kind_and_group() {
        let r = sample();
        for typed in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(r.resolve(typed).unwrap().plural, "pods", "{typed}");
        }
        for typed in [
            "deploy",
            "deployments.apps",
            "deployment.v1.apps",
            "Deployment",
        ] {
            assert_eq!(r.resolve(typed).unwrap().kind, "Deployment", "{typed}");
        }
        let err = r.resolve("widgets").unwrap_err().to_string();
        assert_eq!(err, "the server doesn't have a resource type \"widgets\"");
    }

    #[test]
    fn paths_follow_the_rest_layout() {
        let r = sample();
        let pods = r.resolve("po").unwrap();
        assert_eq!(
            pods.path(Some("ns"), Some("p")),
            "/api/v1/namespaces/ns/pods/p"
        );
        assert_eq!(pods.path(None, None), "/api/v1/pods");
        let nodes = r.resolve("no").unwrap();
        assert_eq!(nodes.path(Some("ns"), Some("n")), "/api/v1/nodes/n");
        let d = r.resolve("deploy").unwrap();
        assert_eq!(
            d.path(Some("a"), None),
            "/apis/apps/v1/namespaces/a/deployments"
        );
        assert_eq!(d.name_prefix(), "deployment.apps");
        assert_eq!(
            r.by_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
    }
}
