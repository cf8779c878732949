//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook
//! (k8s.io/apiserver pkg/admission/plugin/webhook): the webhooks of
//! MutatingWebhookConfigurations and ValidatingWebhookConfigurations whose
//! rules, namespace selector and object selector match a write are sent an
//! `admission.k8s.io/v1` AdmissionReview over HTTPS (trusting the
//! configured `caBundle`), within `timeoutSeconds`. A mutating webhook may
//! answer a JSONPatch, applied in turn; validating webhooks are called
//! together. A webhook that cannot be reached fails the write unless its
//! `failurePolicy` is Ignore. Writes to webhook configurations themselves
//! are never sent to webhooks (so a broken webhook cannot lock them).
//!
//! A webhook's `matchConditions` (CEL, see [`super::expressions`]) must all
//! be true for it to be called; one that fails to evaluate refuses the write
//! (403) unless the webhook's `failurePolicy` is Ignore, which skips it.
//!
//! Not done: the `authorizer` variable of matchConditions,
//! `reinvocationPolicy: IfNeeded`, `matchPolicy: Equivalent` across
//! versions, and client certificates for the server's own identity.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use skiff_api_types::selector::LabelSelector;

use super::expressions::{self, Inputs};
use super::{Operation, Request, lookup, namespace_of};
use crate::cache::Cache;
use crate::status::ApiError;

pub const MUTATING: &str = "MutatingAdmissionWebhook";
pub const VALIDATING: &str = "ValidatingAdmissionWebhook";

/// Upstream's default and largest `timeoutSeconds`.
const DEFAULT_TIMEOUT: u64 = 10;
const MAX_TIMEOUT: u64 = 30;
/// The most a webhook may answer.
const MAX_RESPONSE: usize = 3 * 1024 * 1024;
/// The system trust store, for webhooks without a caBundle.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Which kind of webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mutating,
    Validating,
}

/// Where a webhook is reached.
#[derive(Debug, PartialEq)]
pub(crate) struct Endpoint {
    /// `https://host:port/path?timeout=10s`, for messages.
    pub url: String,
    /// Where to connect.
    host: String,
    port: u16,
    /// The name the server's certificate must carry.
    server_name: String,
    path: String,
}

fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    }
}

/// Writes to the webhook and policy configurations are exempt.
pub(super) fn exempt(req: &Request<'_>) -> bool {
    req.resource.group == "admissionregistration.k8s.io"
}

/// The mutating webhooks, in order (configurations by name, then webhooks
/// as listed): each may patch the object.
pub async fn mutate(
    req: &Request<'_>,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if exempt(req) {
        return Ok(());
    }
    for hook in webhooks(req, Kind::Mutating, Some(&*obj), old)? {
        let review = call(req, &hook, Some(&*obj), old).await?;
        let Some(review) = review else { continue };
        let response = &review["response"];
        if let Some(patch) = response["patch"].as_str()
            && req.operation != Operation::Delete
        {
            apply_patch(&hook, obj, patch, response["patchType"].as_str())?;
        }
    }
    Ok(())
}

/// The validating webhooks, called together; the first refusal (in order)
/// refuses the write.
pub async fn validate(
    req: &Request<'_>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if exempt(req) {
        return Ok(());
    }
    let hooks = webhooks(req, Kind::Validating, obj, old)?;
    let calls = hooks.iter().map(|hook| call(req, hook, obj, old));
    for result in futures::future::join_all(calls).await {
        result?;
    }
    Ok(())
}

/// A deletion: the mutating webhooks that match DELETE see the object as
/// stored (`oldObject`); only their verdict counts. (The validating ones are
/// [`validate`] with no object.)
pub async fn mutate_delete(req: &Request<'_>, current: &Value) -> Result<(), ApiError> {
    if exempt(req) {
        return Ok(());
    }
    for hook in webhooks(req, Kind::Mutating, None, Some(current))? {
        call(req, &hook, None, Some(current)).await?;
    }
    Ok(())
}

/// A webhook as configured.
struct Hook {
    name: String,
    config: Value,
}

/// The webhooks of `kind` that match this write: their rules and
/// selectors, then their matchConditions.
fn webhooks(
    req: &Request<'_>,
    kind: Kind,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<Vec<Hook>, ApiError> {
    let plural = match kind {
        Kind::Mutating => "mutatingwebhookconfigurations",
        Kind::Validating => "validatingwebhookconfigurations",
    };
    let configs = lookup::list(
        req.api,
        lookup::resource("admissionregistration.k8s.io", plural),
        None,
    );
    if configs.is_empty() {
        return Ok(Vec::new());
    }
    let namespace_labels = namespace_labels(req, obj.or(old));
    let mut inputs: Option<Inputs> = None;
    let mut hooks = Vec::new();
    for config in configs {
        for hook in config["webhooks"].as_array().into_iter().flatten() {
            if !matches(req, hook, namespace_labels.as_ref(), obj, old) {
                continue;
            }
            let name = hook["name"].as_str().unwrap_or("").to_owned();
            if let Some(conditions) = hook["matchConditions"].as_array()
                && !conditions.is_empty()
            {
                let inputs = inputs.get_or_insert_with(|| {
                    Inputs::new(obj, old, &expressions::request(req, obj, old), None)
                });
                let params = cel::common::types::CelNull;
                match expressions::conditions_match(conditions, inputs, &params, None) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(why) if hook["failurePolicy"] == "Ignore" => {
                        tracing::warn!(webhook = %name, error = %why, "ignoring a webhook whose matchConditions failed");
                        continue;
                    }
                    Err(why) => {
                        let subject = obj.or(old).unwrap_or(&Value::Null);
                        let object_name = subject["metadata"]["name"].as_str().unwrap_or("");
                        return Err(ApiError::forbidden(req.gr(), object_name, &why));
                    }
                }
            }
            hooks.push(Hook {
                name,
                config: hook.clone(),
            });
        }
    }
    Ok(hooks)
}

/// The labels namespace selectors look at: the namespace's, or a
/// Namespace's own; `None` for other cluster-scoped objects (always match).
pub(super) fn namespace_labels(
    req: &Request<'_>,
    obj: Option<&Value>,
) -> Option<BTreeMap<String, String>> {
    let obj = obj?;
    if req.is("", "namespaces") {
        return Some(crate::cache::labels_of(obj));
    }
    if !req.resource.namespaced {
        return None;
    }
    let ns = lookup::cached(
        req.api,
        lookup::resource("", "namespaces"),
        None,
        namespace_of(obj),
    );
    Some(
        ns.map(|ns| crate::cache::labels_of(&ns))
            .unwrap_or_default(),
    )
}

/// A label selector as configured; none selects everything, a malformed
/// one nothing.
pub(super) fn selector(v: &Value) -> LabelSelector {
    if v.is_null() {
        return LabelSelector::everything();
    }
    serde_json::from_value(v.clone())
        .ok()
        .and_then(|s| LabelSelector::from_k8s(&s).ok())
        .unwrap_or_else(LabelSelector::nothing)
}

fn matches(
    req: &Request<'_>,
    hook: &Value,
    namespace_labels: Option<&BTreeMap<String, String>>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> bool {
    let rules = hook["rules"].as_array().into_iter().flatten();
    if !rules.into_iter().any(|r| rule_matches(req, r)) {
        return false;
    }
    if let Some(labels) = namespace_labels
        && !selector(&hook["namespaceSelector"]).matches(labels)
    {
        return false;
    }
    if hook["objectSelector"].is_null() {
        return true;
    }
    let objects = selector(&hook["objectSelector"]);
    [obj, old]
        .into_iter()
        .flatten()
        .any(|o| objects.matches(&crate::cache::labels_of(o)))
}

/// Upstream's rules.Matcher.
pub(super) fn rule_matches(req: &Request<'_>, rule: &Value) -> bool {
    let has = |field: &str, want: &str| {
        rule[field]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v == "*" || v == want)
    };
    if !has("operations", operation_name(req.operation))
        || !has("apiGroups", req.resource.group)
        || !has("apiVersions", req.resource.version)
    {
        return false;
    }
    let sub = req.subresource.unwrap_or("");
    let resource = rule["resources"].as_array().into_iter().flatten().any(|r| {
        let r = r.as_str().unwrap_or("");
        let (res, rsub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == req.resource.plural) && (rsub == "*" || rsub == sub)
    });
    let scope = match rule["scope"].as_str().unwrap_or("*") {
        "Cluster" => !req.resource.namespaced,
        "Namespaced" => req.resource.namespaced,
        _ => true,
    };
    resource && scope
}

/// Calls one webhook: the AdmissionReview it answered if it allowed the
/// write, `None` if it could not be called and may be ignored.
async fn call(
    req: &Request<'_>,
    hook: &Hook,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<Option<Value>, ApiError> {
    let cfg = &hook.config;
    let name = &hook.name;
    if req.dry_run && !matches!(cfg["sideEffects"].as_str(), Some("None" | "NoneOnDryRun")) {
        return Err(ApiError::bad_request(format!(
            "admission webhook {name:?} does not support dry run"
        )));
    }
    let ignore = cfg["failurePolicy"] == "Ignore";
    let failed = |why: String| -> Result<Option<Value>, ApiError> {
        if ignore {
            tracing::warn!(webhook = %name, error = %why, "ignoring a failed admission webhook");
            Ok(None)
        } else {
            Err(ApiError::internal(format!(
                "failed calling webhook {name:?}: {why}"
            )))
        }
    };
    let versions: Vec<&str> = cfg["admissionReviewVersions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let Some(version) = versions.iter().find(|v| matches!(**v, "v1" | "v1beta1")) else {
        return failed(format!(
            "webhook does not accept known AdmissionReview versions (accepts {versions:?})"
        ));
    };
    let timeout = cfg["timeoutSeconds"]
        .as_u64()
        .unwrap_or(DEFAULT_TIMEOUT)
        .clamp(1, MAX_TIMEOUT);
    let endpoint = match endpoint(&req.api.cache, &cfg["clientConfig"], timeout) {
        Ok(e) => e,
        Err(why) => return failed(why),
    };
    let uid = crate::rest::new_uid();
    let review = review(req, version, &uid, obj, old);
    let answer = tokio::time::timeout(
        Duration::from_secs(timeout),
        post(
            &endpoint,
            &cfg["clientConfig"]["caBundle"],
            serde_json::to_vec(&review).expect("serializes"),
        ),
    )
    .await;
    let body = match answer {
        Ok(Ok(body)) => body,
        Ok(Err(why)) => {
            return failed(format!(
                "failed to call webhook: Post {:?}: {why}",
                endpoint.url
            ));
        }
        Err(_) => {
            return failed(format!(
                "failed to call webhook: Post {:?}: context deadline exceeded",
                endpoint.url
            ));
        }
    };
    let answered: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return failed(format!("received invalid webhook response: {e}")),
    };
    let response = &answered["response"];
    if response["uid"] != uid.as_str() {
        return failed(format!(
            "expected response.uid={uid:?}, got {:?}",
            response["uid"].as_str().unwrap_or("")
        ));
    }
    for warning in response["warnings"].as_array().into_iter().flatten() {
        if let Some(w) = warning.as_str() {
            req.warn(w.to_owned());
        }
    }
    if response["allowed"] != true {
        return Err(denied(name, &response["status"]));
    }
    Ok(Some(answered))
}

/// Upstream's webhookerrors.ToStatusErr: the webhook's refusal, at least a
/// 400.
fn denied(name: &str, status: &Value) -> ApiError {
    let by = format!("admission webhook {name:?} denied the request");
    let message = status["message"].as_str().filter(|m| !m.is_empty());
    let reason = status["reason"].as_str().filter(|r| !r.is_empty());
    let text = match (message, reason) {
        (Some(m), _) => format!("{by}: {m}"),
        (None, Some(r)) => format!("{by}: {r}"),
        _ => format!("{by} without explanation"),
    };
    let code = status["code"]
        .as_u64()
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400) as u16;
    let mut e = ApiError::bad_request(text);
    e.code = code;
    e.reason = known_reason(reason.unwrap_or(""));
    e
}

/// A webhook's reason, if it is one of the API's.
fn known_reason(reason: &str) -> &'static str {
    const REASONS: &[&str] = &[
        "BadRequest",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    REASONS.iter().copied().find(|r| *r == reason).unwrap_or("")
}

fn apply_patch(
    hook: &Hook,
    obj: &mut Value,
    patch: &str,
    patch_type: Option<&str>,
) -> Result<(), ApiError> {
    let name = &hook.name;
    if patch_type != Some("JSONPatch") {
        return Err(ApiError::internal(format!(
            "failed calling webhook {name:?}: unsupported patch type {:?}",
            patch_type.unwrap_or("")
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| {
            ApiError::internal(format!(
                "failed calling webhook {name:?}: the patch is not base64: {e}"
            ))
        })?;
    let ops: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::internal(format!(
            "failed calling webhook {name:?}: the patch is not a JSON patch: {e}"
        ))
    })?;
    let mut patched = obj.clone();
    json_patch::patch(&mut patched, &ops).map_err(|e| {
        ApiError::internal(format!(
            "failed calling webhook {name:?}: applying its patch: {e}"
        ))
    })?;
    *obj = patched;
    Ok(())
}

/// The AdmissionReview sent.
fn review(
    req: &Request<'_>,
    version: &str,
    uid: &str,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Value {
    let r = req.resource;
    let subject = obj.or(old).unwrap_or(&Value::Null);
    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let resource = json!({"group": r.group, "version": r.version, "resource": r.plural});
    let user = req.user.map_or_else(
        || json!({"username": "system:apiserver", "groups": ["system:masters"]}),
        |u| json!({"username": u.name, "uid": u.uid, "groups": u.groups, "extra": u.extra}),
    );
    let options = match req.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
    };
    let mut request = json!({
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": subject["metadata"]["name"],
        "operation": operation_name(req.operation),
        "userInfo": user,
        "object": obj.cloned().unwrap_or(Value::Null),
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": req.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": options},
    });
    if r.namespaced {
        request["namespace"] = subject["metadata"]["namespace"].clone();
    }
    if let Some(sub) = req.subresource {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    json!({
        "apiVersion": format!("admission.k8s.io/{version}"),
        "kind": "AdmissionReview",
        "request": request,
    })
}

/// Where `clientConfig` points: its URL, or its Service (reached at a ready
/// endpoint, as kube-apiserver's endpoint routing does, else the cluster IP).
/// The conversion webhooks of CRDs are reached the same way.
pub(crate) fn endpoint(cache: &Cache, client: &Value, timeout: u64) -> Result<Endpoint, String> {
    if let Some(url) = client["url"].as_str() {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("invalid webhook URL {url:?}: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("webhook URL {url:?} must use https"));
        }
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        return Ok(Endpoint {
            url: with_timeout(url, timeout),
            port: uri.port_u16().unwrap_or(443),
            server_name: host.clone(),
            host,
            path: with_timeout(&path, timeout),
        });
    }
    let svc = &client["service"];
    let (ns, name) = (
        svc["namespace"].as_str().unwrap_or(""),
        svc["name"].as_str().unwrap_or(""),
    );
    let port = svc["port"].as_u64().unwrap_or(443) as u16;
    let path = svc["path"].as_str().unwrap_or("/");
    let server_name = format!("{name}.{ns}.svc");
    let url = with_timeout(&format!("https://{server_name}:{port}{path}"), timeout);
    let services = lookup::resource("", "services");
    let service = cache
        .get(services, &services.key(Some(ns), name))
        .map(|o| o.value())
        .ok_or_else(|| format!("service \"{name}\" not found"))?;
    let service_port = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_u64() == Some(port as u64))
        .cloned()
        .ok_or_else(|| format!("service {ns}/{name} has no port {port}"))?;
    let (host, target) = ready_endpoint(cache, ns, name, &service_port)
        .or_else(|| {
            let ip = service["spec"]["clusterIP"]
                .as_str()
                .filter(|ip| !ip.is_empty() && *ip != "None")?;
            Some((ip.to_owned(), port))
        })
        .ok_or_else(|| format!("no endpoints available for service \"{name}\""))?;
    Ok(Endpoint {
        url,
        host,
        port: target,
        server_name,
        path: with_timeout(path, timeout),
    })
}

/// A ready address of the Service's EndpointSlices for this port.
fn ready_endpoint(
    cache: &Cache,
    ns: &str,
    name: &str,
    service_port: &Value,
) -> Option<(String, u16)> {
    let resource = lookup::resource("discovery.k8s.io", "endpointslices");
    let slices: Vec<Value> = cache
        .list(resource, &resource.key_prefix(Some(ns)), |_| true)
        .objects
        .iter()
        .map(|o| o.value())
        .collect();
    let port_name = service_port["name"].as_str().unwrap_or("");
    for slice in slices {
        if slice["metadata"]["labels"]["kubernetes.io/service-name"] != name {
            continue;
        }
        let port = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64());
        let Some(port) = port else { continue };
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            if e["conditions"]["ready"] == false {
                continue;
            }
            if let Some(addr) = e["addresses"][0].as_str() {
                return Some((addr.to_owned(), port as u16));
            }
        }
    }
    None
}

fn with_timeout(url: &str, timeout: u64) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}timeout={timeout}s")
}

/// POSTs `body` over HTTPS, trusting `ca_bundle` (base64 PEM) or the
/// system's roots; the response body of a 200.
pub(crate) async fn post(
    endpoint: &Endpoint,
    ca_bundle: &Value,
    body: Vec<u8>,
) -> Result<Bytes, String> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = match ca_bundle.as_str().filter(|s| !s.is_empty()) {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("invalid caBundle: {e}"))?,
        None => std::fs::read(SYSTEM_ROOTS).unwrap_or_default(),
    };
    for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name =
        ServerName::try_from(endpoint.server_name.clone()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("dial tcp {}:{}: {e}", endpoint.host, endpoint.port))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = http::Request::post(endpoint.path.as_str())
        .header("host", endpoint.server_name.as_str())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("the server responded with {status}"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_which_webhook_and_are_at_least_400() {
        let e = denied("policy.example.com", &json!({"message": "no", "code": 200}));
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "admission webhook \"policy.example.com\" denied the request: no"
        );
        let e = denied("p", &json!({"code": 403, "reason": "Forbidden"}));
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "admission webhook \"p\" denied the request: Forbidden"
        );
        assert_eq!(
            denied("p", &Value::Null).message,
            "admission webhook \"p\" denied the request without explanation"
        );
    }

    #[test]
    fn urls_carry_the_timeout() {
        assert_eq!(
            with_timeout("https://h/validate", 10),
            "https://h/validate?timeout=10s"
        );
        assert_eq!(with_timeout("/v?x=1", 5), "/v?x=1&timeout=5s");
    }
}
