//! Discovery: `/api`, `/apis`, `/apis/<group>`, `/api/v1`, `/apis/<g>/<v>`,
//! and aggregated discovery (`apidiscovery.k8s.io/v2`
//! `APIGroupDiscoveryList`) on `/api` and `/apis`, from the registry, the
//! CRDs and the metrics API.

use http::{HeaderMap, Response, header};
use serde_json::{Value, json};
use skiff_api_types::registry::{self, ApiGroup, ResourceInfo};

use crate::crd::Crds;
use crate::http_util::{self, Body};
use crate::request::Discovery;
use crate::status::ApiError;

/// The aggregated-discovery media types, newest first.
const AGGREGATED: [&str; 2] = ["v2", "v2beta1"];

/// Answers a discovery path.
pub(crate) fn serve(
    which: &Discovery,
    group: &str,
    version: &str,
    headers: &HeaderMap,
    server_address: &str,
    crds: &Crds,
) -> Response<Body> {
    if let Some(v) = aggregated_version(headers) {
        let list = match which {
            Discovery::LegacyVersions => Some(aggregated(crds, true, v)),
            Discovery::Groups => Some(aggregated(crds, false, v)),
            _ => None,
        };
        if let Some(list) = list {
            let content_type =
                format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList");
            return Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, content_type)
                .header(header::VARY, "Accept")
                .body(http_util::full(
                    serde_json::to_vec(&list).expect("serializes"),
                ))
                .expect("valid response parts");
        }
    }
    let body = match which {
        Discovery::LegacyVersions => Some(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
        })),
        Discovery::Groups => Some(json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": groups(crds)
                .iter()
                .filter(|g| !g.name.is_empty())
                .map(api_group)
                .collect::<Vec<_>>(),
        })),
        Discovery::Group(name) => groups(crds)
            .iter()
            .find(|g| !g.name.is_empty() && g.name == *name)
            .map(|g| {
                let mut v = api_group(g);
                v["kind"] = json!("APIGroup");
                v["apiVersion"] = json!("v1");
                v
            }),
        Discovery::Resources => resource_list(crds, group, version),
    };
    match body {
        Some(body) => http_util::json(200, &body),
        None => http_util::error(&ApiError::no_route()),
    }
}

/// Which aggregated-discovery version the client accepts first, if any.
fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for candidate in accept.split(',') {
        let params: Vec<&str> = candidate.split(';').map(str::trim).collect();
        if params.first() != Some(&"application/json") {
            continue;
        }
        let has = |p: &str| params.contains(&p);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            for v in AGGREGATED {
                if has(&format!("v={v}")) {
                    return Some(v);
                }
            }
        } else if params.len() == 1 {
            // Plain JSON comes first: the client prefers legacy discovery.
            return None;
        }
    }
    None
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// A served group: the built-in ones, then those CRDs add, then the
/// resource metrics API.
struct Group {
    name: String,
    /// Preferred first.
    versions: Vec<String>,
}

fn groups(crds: &Crds) -> Vec<Group> {
    let builtin = registry::groups().iter().map(|g: &ApiGroup| {
        let mut versions: Vec<String> = g.versions.iter().map(|v| v.to_string()).collect();
        versions.sort_by_key(|v| v != g.preferred_version);
        Group {
            name: g.name.to_owned(),
            versions,
        }
    });
    let custom = crds
        .groups()
        .into_iter()
        .filter(|(name, _)| registry::groups().iter().all(|g| g.name != name))
        .map(|(name, versions)| Group { name, versions });
    let metrics = Group {
        name: crate::metrics_api::GROUP.to_owned(),
        versions: vec![crate::metrics_api::VERSION.to_owned()],
    };
    builtin.chain(custom).chain([metrics]).collect()
}

/// The resources of one group-version: built-in, CRD-defined or metrics.
fn resources_in(crds: &Crds, group: &str, version: &str) -> Vec<&'static ResourceInfo> {
    let mut all: Vec<&'static ResourceInfo> = registry::resources_in(group, version).collect();
    all.extend(
        crds.all()
            .into_iter()
            .filter(|r| r.group == group && r.version == version),
    );
    all.extend(
        crate::metrics_api::resources()
            .into_iter()
            .filter(|r| r.group == group && r.version == version),
    );
    all
}

fn api_group(g: &Group) -> Value {
    json!({
        "name": g.name,
        "versions": g.versions.iter().map(|v| json!({
            "groupVersion": group_version(&g.name, v),
            "version": v,
        })).collect::<Vec<_>>(),
        "preferredVersion": {
            "groupVersion": group_version(&g.name, &g.versions[0]),
            "version": g.versions[0],
        },
    })
}

/// `APIResourceList` of one group-version, or `None` if it is not served.
fn resource_list(crds: &Crds, group: &str, version: &str) -> Option<Value> {
    let served = groups(crds)
        .iter()
        .any(|g| g.name == group && g.versions.iter().any(|v| v == version));
    if !served {
        return None;
    }
    let mut resources = Vec::new();
    for r in resources_in(crds, group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.group != r.group || s.version != r.version {
                sub["group"] = json!(s.group);
                sub["version"] = json!(s.version);
            }
            resources.push(sub);
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": resources,
    }))
}

/// The aggregated discovery document of the core group (`legacy`) or of the
/// named groups.
fn aggregated(crds: &Crds, legacy: bool, discovery_version: &str) -> Value {
    let items: Vec<Value> = groups(crds)
        .iter()
        .filter(|g| g.name.is_empty() == legacy)
        .map(|g| {
            json!({
                "metadata": { "name": g.name, "creationTimestamp": null },
                "versions": g.versions.iter().map(|v| json!({
                    "version": v,
                    "resources": resources_in(crds, &g.name, v).into_iter().map(aggregated_resource).collect::<Vec<_>>(),
                    "freshness": "Current",
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{discovery_version}"),
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(r: &'static ResourceInfo) -> Value {
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": { "group": r.group, "version": r.version, "kind": r.kind },
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        entry["subresources"] = json!(
            r.subresources
                .iter()
                .map(|s| json!({
                    "subresource": s.name,
                    "responseKind": { "group": s.group, "version": s.version, "kind": s.kind },
                    "verbs": s.verbs,
                }))
                .collect::<Vec<_>>()
        );
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_gets_aggregated_discovery_v2() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(aggregated_version(&headers), Some("v2"));
        let core = aggregated(&Crds::default(), true, "v2");
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap()
            .clone();
        assert_eq!(pods["scope"], "Namespaced");
        assert!(
            pods["shortNames"]
                .as_array()
                .unwrap()
                .contains(&json!("po"))
        );
        assert!(
            pods["subresources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["subresource"] == "status")
        );
    }

    #[test]
    fn plain_json_gets_legacy_discovery() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, "application/json, */*".parse().unwrap());
        assert_eq!(aggregated_version(&headers), None);
        let apps = resource_list(&Crds::default(), "apps", "v1").unwrap();
        assert!(
            apps["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "deployments/scale"
                    && r["kind"] == "Scale"
                    && r["group"] == "autoscaling")
        );
        assert!(resource_list(&Crds::default(), "apps", "v9").is_none());
    }
}
