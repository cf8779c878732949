//! The front door: reads each request, authenticates it, and hands it to
//! health, version, metrics, OpenAPI, discovery or the REST verbs.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use tracing::{Instrument, debug, info_span};

use crate::Api;
use crate::http_util::{self, Body, BodyType, MAX_BODY, Output, Query};
use crate::request::RequestInfo;
use crate::rest::{self, Call, Target};
use crate::server::User;
use crate::status::ApiError;

/// Paths anyone may read, authenticated or not (upstream's
/// system:public-info-viewer).
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

pub(crate) async fn route(
    api: &Api,
    req: Request<Incoming>,
    user: Option<&User>,
    peer: SocketAddr,
) -> Response<Body> {
    let start = Instant::now();
    let query = Query::parse(req.uri().query());
    let info = RequestInfo::parse(req.method(), req.uri().path(), query.flag("watch"));
    // The user is recorded once authentication has run.
    let span = info_span!("request", verb = %info.verb, path = %info.path, user = tracing::field::Empty, %peer);
    let response = handle(api, req, user, &info, &query).instrument(span).await;
    let code = response.status().as_u16();
    api.metrics.observe(&info, code, start.elapsed());
    debug!(verb = %info.verb, path = %info.path, code, elapsed_ms = start.elapsed().as_millis() as u64, "request");
    response
}

async fn handle(
    api: &Api,
    req: Request<Incoming>,
    cert_user: Option<&User>,
    info: &RequestInfo,
    query: &Query,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let user = match api.authn.authenticate(api, req.headers(), cert_user).await {
        Ok(Some(user)) => user,
        Ok(None) => User::anonymous(),
        Err(e) => return http_util::error(&e),
    };
    let user = match impersonate(api, req.headers(), user) {
        Ok(user) => user,
        Err(e) => return http_util::error(&e),
    };
    tracing::Span::current().record("user", user.name.as_str());
    let attrs = crate::authz::Attributes {
        user: &user,
        verb: if info.is_resource_request {
            &info.verb
        } else {
            non_resource_verb(req.method())
        },
        resource_request: info.is_resource_request && info.discovery.is_none(),
        api_group: &info.group,
        namespace: info.namespace.as_deref(),
        resource: &info.resource,
        subresource: info.subresource.as_deref(),
        name: info.name.as_deref(),
        path: path.trim_end_matches('/'),
    };
    if let crate::authz::Decision::Deny(reason) = crate::authz::authorize(api, &attrs) {
        // Upstream answers an anonymous request it may not serve with 401,
        // an authenticated one with 403 naming what was refused.
        if user.is_anonymous() {
            return http_util::error(&ApiError::unauthorized());
        }
        return http_util::error(&crate::authz::forbidden(&attrs, &reason));
    }
    if !info.is_resource_request {
        return non_resource(api, &req, &path).await;
    }
    if let Some(which) = &info.discovery {
        return crate::discovery::serve(
            which,
            &info.group,
            &info.version,
            req.headers(),
            &api.server_address,
            &api.crds,
        );
    }
    let Some(resource) = api.lookup(&info.group, &info.version, &info.resource) else {
        return http_util::error(&ApiError::no_route());
    };
    // A namespaced path for a cluster-scoped kind, or the reverse for
    // anything but list and watch, does not exist.
    let namespace_segment = info.namespace.is_some() && info.resource != "namespaces";
    if namespace_segment && !resource.namespaced {
        return http_util::error(&ApiError::no_route());
    }
    if resource.group == crate::metrics_api::GROUP {
        return crate::metrics_api::serve(api, req.method(), info, query).await;
    }
    // Logs, exec, attach, port-forward and node proxy stream to a kubelet.
    if let Some(route) = crate::kubelet_proxy::Route::of(resource, info) {
        return crate::kubelet_proxy::serve(api, req, info, route).await;
    }
    let output = match Output::negotiate(req.headers()) {
        Ok(o) => o,
        Err(e) => return http_util::error(&e),
    };
    let writes = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let body_type = if writes {
        match BodyType::of(req.headers()) {
            Ok(t) => Some(t),
            Err(e) => return http_util::error(&e),
        }
    } else {
        None
    };
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return http_util::error(&e),
    };
    let call = Call {
        api,
        info,
        target: Target {
            resource,
            namespace: info.namespace.as_deref(),
            name: info.name.as_deref(),
            subresource: info.subresource.as_deref(),
        },
        query,
        output,
        body_type,
        body,
        user_agent: &user_agent,
        user: &user,
        warnings: Default::default(),
    };
    rest::serve(call).await
}

/// Impersonation (`Impersonate-User`, `Impersonate-Group`,
/// `Impersonate-Uid`, `Impersonate-Extra-<key>`), as upstream: the
/// authenticated user needs the `impersonate` verb on each users, groups,
/// uids and userextras/<key> it asks for; the request then runs as the
/// impersonated user.
fn impersonate(api: &Api, headers: &http::HeaderMap, user: User) -> Result<User, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    };
    let names = values("impersonate-user");
    let groups = values("impersonate-group");
    let uids = values("impersonate-uid");
    let extras: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix("impersonate-extra-")?;
            Some((percent_decode_key(key), v.to_str().ok()?.to_owned()))
        })
        .collect();
    if names.is_empty() {
        if groups.is_empty() && uids.is_empty() && extras.is_empty() {
            return Ok(user);
        }
        return Err(ApiError::bad_request(
            "requested impersonation without a user: Impersonate-User is required",
        ));
    }
    let check = |resource: &str, subresource: Option<&str>, name: &str| -> Result<(), ApiError> {
        let attrs = crate::authz::Attributes {
            user: &user,
            verb: "impersonate",
            resource_request: true,
            api_group: if resource == "users" || resource == "groups" {
                ""
            } else {
                "authentication.k8s.io"
            },
            namespace: None,
            resource,
            subresource,
            name: Some(name),
            path: "",
        };
        match crate::authz::authorize(api, &attrs) {
            crate::authz::Decision::Allow => Ok(()),
            crate::authz::Decision::Deny(reason) => Err(crate::authz::forbidden(&attrs, &reason)),
        }
    };
    let name = &names[0];
    // A service account is impersonated through the serviceaccounts resource.
    match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, sa)) => {
            let attrs = crate::authz::Attributes {
                user: &user,
                verb: "impersonate",
                resource_request: true,
                api_group: "",
                namespace: Some(ns),
                resource: "serviceaccounts",
                subresource: None,
                name: Some(sa),
                path: "",
            };
            if let crate::authz::Decision::Deny(reason) = crate::authz::authorize(api, &attrs) {
                return Err(crate::authz::forbidden(&attrs, &reason));
            }
        }
        None => check("users", None, name)?,
    }
    for g in &groups {
        check("groups", None, g)?;
    }
    for u in &uids {
        check("uids", None, u)?;
    }
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (k, v) in extras {
        check("userextras", Some(&k), &v)?;
        extra.entry(k).or_default().push(v);
    }
    let mut impersonated_groups = groups;
    if name != "system:anonymous"
        && !impersonated_groups
            .iter()
            .any(|g| g == "system:authenticated")
    {
        impersonated_groups.push("system:authenticated".into());
    }
    Ok(User {
        name: name.clone(),
        uid: uids.into_iter().next().unwrap_or_default(),
        groups: impersonated_groups,
        extra,
    })
}

/// Header names carry extra keys percent-encoded.
fn percent_decode_key(key: &str) -> String {
    Query::parse(Some(&format!("k={}", key.replace('+', "%2B"))))
        .get("k")
        .unwrap_or(key)
        .to_owned()
}

/// The verb of a non-resource request: the method, lower-cased as upstream.
fn non_resource_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large()),
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}

async fn non_resource(api: &Api, req: &Request<Incoming>, path: &str) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return http_util::error(&ApiError::method_not_allowed());
    }
    // `/version/` is `/version` (clients ask for both).
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    match path {
        p if is_public(p) && p != "/version" => {
            http_util::response(200, "text/plain; charset=utf-8", "ok")
        }
        "/version" => http_util::json(200, &version()),
        "/metrics" => http_util::response(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            api.metrics.render(),
        ),
        p if p == "/openapi/v2" || p == "/openapi/v3" || p.starts_with("/openapi/v3/") => {
            // With the query: `?hash=` makes a document immutable.
            let with_query = req
                .uri()
                .path_and_query()
                .map_or(p, |pq| pq.as_str())
                .to_owned();
            // The first request builds the documents (hundreds of ms of CPU):
            // off the runtime's workers.
            let headers = req.headers().clone();
            let crds = api.crds.clone();
            tokio::task::spawn_blocking(move || crate::openapi::serve(&with_query, &headers, &crds))
                .await
                .unwrap_or_else(|e| http_util::error(&ApiError::internal(e.to_string())))
        }
        _ => http_util::error(&ApiError::no_route()),
    }
}

/// `/version`: the Kubernetes version Skiff speaks (v1.33).
pub(crate) fn version() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": format!("v1.33.0+skiff{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
