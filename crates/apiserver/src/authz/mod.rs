//! Authorization (being written): what a user may do. Today every
//! authenticated user may do everything; anonymous users only read health
//! and version.

use crate::Api;
use crate::server::User;

/// What a request wants to do, as upstream's authorizer.Attributes.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub user: &'a User,
    pub verb: &'a str,
    pub resource_request: bool,
    pub api_group: &'a str,
    pub namespace: Option<&'a str>,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub name: Option<&'a str>,
    /// The request path, for non-resource requests.
    pub path: &'a str,
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied, with the reason shown to the client.
    Deny(String),
}

/// Decides a request.
pub fn authorize(_api: &Api, attrs: &Attributes<'_>) -> Decision {
    if attrs.user.is_anonymous() {
        let public = matches!(attrs.path, "/healthz" | "/livez" | "/readyz" | "/version")
            || ["/healthz/", "/livez/", "/readyz/"]
                .iter()
                .any(|p| attrs.path.starts_with(p));
        if !attrs.resource_request && public && attrs.verb == "get" {
            return Decision::Allow;
        }
        return Decision::Deny(String::new());
    }
    Decision::Allow
}

/// The 403 for a denied request, worded as upstream's.
pub fn forbidden(attrs: &Attributes<'_>, reason: &str) -> crate::status::ApiError {
    let user = &attrs.user.name;
    let why = if !attrs.resource_request {
        format!(
            "User \"{user}\" cannot {} path \"{}\"",
            attrs.verb, attrs.path
        )
    } else {
        let resource = match attrs.subresource {
            Some(sub) => format!("{}/{sub}", attrs.resource),
            None => attrs.resource.to_owned(),
        };
        let scope = match attrs.namespace {
            Some(ns) if !ns.is_empty() => format!(" in the namespace \"{ns}\""),
            _ => " at the cluster scope".to_owned(),
        };
        format!(
            "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\"{scope}",
            attrs.verb, attrs.api_group
        )
    };
    let why = if reason.is_empty() {
        why
    } else {
        format!("{why}: {reason}")
    };
    if attrs.resource_request {
        crate::status::ApiError::forbidden(
            crate::status::GroupResource {
                group: attrs.api_group,
                resource: attrs.resource,
            },
            attrs.name.unwrap_or(""),
            &why,
        )
    } else {
        crate::status::ApiError::forbidden_path(&why)
    }
}
