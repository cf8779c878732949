//! What a request asks for, read from its method and path as upstream's
//! RequestInfoFactory reads it: the API group and version, the namespace, the
//! resource, the name, the subresource, and the verb.

use http::Method;

/// One request's target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// True for `/api/...` and `/apis/...`; false for `/healthz`, `/version`,
    /// `/openapi/...` and other non-resource paths.
    pub is_resource_request: bool,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or for non-resource paths the lower-case method.
    pub verb: String,
    pub path: String,
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// What follows the subresource (for `proxy` paths), without a leading `/`.
    pub rest: Option<String>,
    /// Which discovery document a path short of a resource asks for.
    pub discovery: Option<Discovery>,
}

/// Discovery paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// `/api`: the legacy versions.
    LegacyVersions,
    /// `/apis`: the groups.
    Groups,
    /// `/apis/<group>`: one group.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: the resources of a group version.
    Resources,
}

impl RequestInfo {
    /// Reads a request. `watch` is whether the query asks to watch.
    pub fn parse(method: &Method, path: &str, watch: bool) -> RequestInfo {
        let mut info = RequestInfo {
            path: path.to_owned(),
            verb: method.as_str().to_ascii_lowercase(),
            ..RequestInfo::default()
        };
        let segments: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let mut rest: &[&str] = match segments.split_first() {
            Some((&"api", rest)) => {
                info.is_resource_request = true;
                rest
            }
            Some((&"apis", rest)) => {
                info.is_resource_request = true;
                match rest {
                    [] => {
                        info.discovery = Some(Discovery::Groups);
                        return info;
                    }
                    [group] => {
                        info.discovery = Some(Discovery::Group((*group).to_owned()));
                        return info;
                    }
                    [group, rest @ ..] => {
                        info.group = (*group).to_owned();
                        rest
                    }
                }
            }
            _ => return info,
        };
        let Some((version, after)) = rest.split_first() else {
            info.discovery = Some(Discovery::LegacyVersions);
            return info;
        };
        info.version = (*version).to_owned();
        rest = after;
        if rest.is_empty() {
            info.discovery = Some(Discovery::Resources);
            return info;
        }
        // The deprecated `/watch/` path prefix.
        let mut watch = watch;
        if rest[0] == "watch" {
            watch = true;
            rest = &rest[1..];
        }
        // `namespaces/<ns>/<resource>...`, except the namespace object itself
        // (`namespaces/<name>` and its subresources `status` and `finalize`).
        if rest.len() >= 3 && rest[0] == "namespaces" && !matches!(rest[2], "status" | "finalize") {
            info.namespace = Some(rest[1].to_owned());
            rest = &rest[2..];
        }
        if let Some((resource, after)) = rest.split_first() {
            info.resource = (*resource).to_owned();
            rest = after;
        }
        if let Some((name, after)) = rest.split_first() {
            info.name = Some((*name).to_owned());
            rest = after;
        }
        if let Some((sub, after)) = rest.split_first() {
            info.subresource = Some((*sub).to_owned());
            if !after.is_empty() {
                info.rest = Some(after.join("/"));
            }
        }
        if info.resource == "namespaces" && info.namespace.is_none() {
            // A namespace is named by itself.
            info.namespace = info.name.clone();
        }
        info.verb = match (method.as_str(), info.name.is_some()) {
            ("GET" | "HEAD", _) if watch => "watch",
            ("GET" | "HEAD", true) => "get",
            ("GET" | "HEAD", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            (other, _) => {
                return RequestInfo {
                    verb: other.to_ascii_lowercase(),
                    ..info
                };
            }
        }
        .to_owned();
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, path: &str) -> RequestInfo {
        RequestInfo::parse(&method, path, false)
    }

    #[test]
    fn namespaced_paths_name_namespace_resource_and_name() {
        let i = parse(Method::GET, "/api/v1/namespaces/default/pods/web");
        assert_eq!(
            (
                i.group.as_str(),
                i.version.as_str(),
                i.namespace.as_deref(),
                i.resource.as_str(),
                i.name.as_deref(),
                i.verb.as_str()
            ),
            ("", "v1", Some("default"), "pods", Some("web"), "get")
        );
        let i = parse(
            Method::PUT,
            "/apis/apps/v1/namespaces/ns1/deployments/web/scale",
        );
        assert_eq!(
            (i.group.as_str(), i.subresource.as_deref(), i.verb.as_str()),
            ("apps", Some("scale"), "update")
        );
    }

    #[test]
    fn verbs_follow_method_and_name() {
        assert_eq!(parse(Method::GET, "/api/v1/pods").verb, "list");
        assert_eq!(
            RequestInfo::parse(&Method::GET, "/api/v1/pods", true).verb,
            "watch"
        );
        assert_eq!(
            parse(Method::GET, "/api/v1/watch/namespaces/a/pods").verb,
            "watch"
        );
        assert_eq!(
            parse(Method::POST, "/api/v1/namespaces/a/pods").verb,
            "create"
        );
        assert_eq!(parse(Method::PATCH, "/api/v1/nodes/n1").verb, "patch");
        assert_eq!(
            parse(Method::DELETE, "/api/v1/namespaces/a/pods").verb,
            "deletecollection"
        );
        assert_eq!(
            parse(Method::DELETE, "/api/v1/namespaces/a/pods/p").verb,
            "delete"
        );
    }

    #[test]
    fn a_namespace_is_its_own_namespace() {
        let i = parse(Method::GET, "/api/v1/namespaces/kube-system");
        assert_eq!(
            (
                i.resource.as_str(),
                i.name.as_deref(),
                i.namespace.as_deref()
            ),
            ("namespaces", Some("kube-system"), Some("kube-system"))
        );
        let i = parse(Method::PUT, "/api/v1/namespaces/kube-system/finalize");
        assert_eq!(
            (i.name.as_deref(), i.subresource.as_deref()),
            (Some("kube-system"), Some("finalize"))
        );
        let i = parse(Method::GET, "/api/v1/namespaces");
        assert_eq!(
            (i.resource.as_str(), i.name, i.verb.as_str()),
            ("namespaces", None, "list")
        );
    }

    #[test]
    fn discovery_paths_are_recognised() {
        assert_eq!(
            parse(Method::GET, "/api").discovery,
            Some(Discovery::LegacyVersions)
        );
        assert_eq!(
            parse(Method::GET, "/apis").discovery,
            Some(Discovery::Groups)
        );
        assert_eq!(
            parse(Method::GET, "/apis/apps").discovery,
            Some(Discovery::Group("apps".into()))
        );
        assert_eq!(
            parse(Method::GET, "/apis/apps/v1").discovery,
            Some(Discovery::Resources)
        );
        assert_eq!(
            parse(Method::GET, "/api/v1").discovery,
            Some(Discovery::Resources)
        );
        assert!(!parse(Method::GET, "/healthz").is_resource_request);
    }

    #[test]
    fn proxy_paths_keep_what_follows_the_subresource() {
        let i = parse(Method::GET, "/api/v1/namespaces/a/pods/p:8080/proxy/x/y");
        assert_eq!(
            (i.subresource.as_deref(), i.rest.as_deref()),
            (Some("proxy"), Some("x/y"))
        );
    }
}
