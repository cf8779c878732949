//! Service-account tokens: JWTs the server signs, issued through the
//! `serviceaccounts/token` subresource (TokenRequest) and verified on every
//! request — signature, issuer, audience, expiry, and that the ServiceAccount
//! and the object the token is bound to (Pod, Secret or Node) still exist
//! with the uids the token names. Follows upstream's pkg/serviceaccount
//! (claims.go, jwt.go) and pkg/registry/core/serviceaccount/storage/token.go.
//!
//! Signature checks are the expensive part, and a token's signature never
//! changes validity, so verified claims are cached by the token's SHA-256;
//! the live checks (expiry and the objects, from the watch cache) run on
//! every request.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use base64::Engine;
use http::Response;
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use skiff_api_types::registry::{self, ResourceInfo};
use skiff_api_types::validation::{ErrorType, FieldError, FieldErrors};
use tracing::debug;

use super::keys::{PublicKey, SigningKey};
use crate::Api;
use crate::http_util::{Body, BodyType, decode_object};
use crate::rest::{Call, Target};
use crate::server::User;
use crate::status::{ApiError, GroupResource};

/// Tokens requested with exactly this lifetime are the kubelet's projected
/// tokens: issued for a year, with `warnafter` at the requested time
/// (upstream's WarnOnlyBoundTokenExpirationSeconds).
const WARN_ONLY_EXPIRATION_SECONDS: i64 = 3607;
/// How long such tokens really last (ExpirationExtensionSeconds).
const EXTENDED_EXPIRATION_SECONDS: i64 = 24 * 365 * 60 * 60;
/// TokenRequest bounds (upstream's validation).
const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Clock skew allowed on `exp` and `nbf`, and on deletion timestamps
/// (go-jose's DefaultLeeway).
const LEEWAY_SECONDS: i64 = 60;
/// Verified tokens remembered at most.
const VERIFIED_CAPACITY: usize = 16_384;

const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";
const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// A service-account token's claims, in upstream's JSON (keys sorted as
/// go-jose writes them).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Claims {
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default)]
    pub iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(
        default,
        rename = "kubernetes.io",
        skip_serializing_if = "Option::is_none"
    )]
    pub kubernetes: Option<KubernetesClaims>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub sub: String,
}

/// The private `kubernetes.io` claim.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct KubernetesClaims {
    #[serde(default)]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    #[serde(default)]
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// An object a token names.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Ref {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: String,
}

/// `aud` is a string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// A token whose signature checked out, the user it names, and the objects
/// that must still exist for it to be valid.
pub(crate) struct Verified {
    claims: Claims,
    user: User,
    objects: Vec<Object>,
}

/// An object a token is valid only as long as it exists.
struct Object {
    kind: &'static ResourceInfo,
    /// Its key in the watch cache.
    key: String,
    /// `namespace/name`, for messages.
    name: String,
    uid: String,
    what: &'static str,
    /// The revision at which it was last found valid (0: not yet), so an
    /// unchanged object is not parsed again.
    valid_at: AtomicI64,
}

/// The kinds the verifier reads from the watch cache.
struct Kinds {
    service_accounts: &'static ResourceInfo,
    pods: &'static ResourceInfo,
    secrets: &'static ResourceInfo,
    nodes: &'static ResourceInfo,
}

/// Issues and verifies service-account tokens.
pub(crate) struct ServiceAccounts {
    /// `--service-account-issuer`: the first names issued tokens, all are
    /// accepted.
    issuers: Vec<String>,
    signing: SigningKey,
    keys: Vec<(PublicKey, Validation)>,
    max_expiration: Option<i64>,
    extend_expiration: bool,
    kinds: Kinds,
    verified: RwLock<HashMap<[u8; 32], Arc<Verified>>>,
}

/// The deletion-relevant metadata of a cached object.
#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    metadata: MetaFields,
}

#[derive(Default, Deserialize)]
struct MetaFields {
    #[serde(default)]
    uid: String,
    #[serde(default, rename = "deletionTimestamp")]
    deletion_timestamp: Option<String>,
}

/// Why a live check failed.
enum Invalid {
    /// The objects may be newer than the cache: worth a retry after syncing.
    Stale(String),
    Final(String),
}

impl ServiceAccounts {
    pub fn new(
        issuers: Vec<String>,
        signing: SigningKey,
        mut keys: Vec<PublicKey>,
        max_expiration: Option<i64>,
        extend_expiration: bool,
    ) -> ServiceAccounts {
        // The server always accepts what it signs.
        if !keys.iter().any(|k| k.kid == signing.public.kid) {
            keys.push(PublicKey {
                alg: signing.public.alg,
                decoding: signing.public.decoding.clone(),
                kid: signing.public.kid.clone(),
            });
        }
        let keys = keys
            .into_iter()
            .map(|k| {
                let mut v = Validation::new(k.alg);
                v.required_spec_claims.clear();
                v.validate_exp = false;
                v.validate_nbf = false;
                v.validate_aud = false;
                (k, v)
            })
            .collect();
        let kind = |plural| registry::lookup("", "v1", plural).expect("core kinds are registered");
        ServiceAccounts {
            issuers,
            signing,
            keys,
            max_expiration,
            extend_expiration,
            kinds: Kinds {
                service_accounts: kind("serviceaccounts"),
                pods: kind("pods"),
                secrets: kind("secrets"),
                nodes: kind("nodes"),
            },
            verified: RwLock::new(HashMap::new()),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuers[0]
    }

    /// Authenticates a token for `audiences`. `Ok(None)` when the token is
    /// not one of ours (not a JWT from our issuer); `Err` with the reason
    /// when it is ours but not valid.
    pub async fn authenticate(
        &self,
        api: &Api,
        token: &str,
        audiences: &[String],
    ) -> Result<Option<(User, Vec<String>)>, String> {
        let Some(verified) = self.verified(token)? else {
            return Ok(None);
        };
        let claims = &verified.claims;
        let now = jiff::Timestamp::now().as_second();
        if claims.exp.is_some_and(|exp| now > exp + LEEWAY_SECONDS) {
            return Err("service account token has expired".into());
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECONDS) {
            return Err("service account token is not valid yet".into());
        }
        let matched: Vec<String> = claims
            .aud
            .iter()
            .filter(|a| audiences.contains(a))
            .cloned()
            .collect();
        if matched.is_empty() {
            return Err(format!(
                "token audiences {:?} is invalid for the target audiences {audiences:?}",
                claims.aud
            ));
        }
        match self.check_live(api, &verified, now) {
            Ok(()) => {}
            Err(Invalid::Final(why)) => return Err(why),
            Err(Invalid::Stale(_)) => {
                // The objects may be newer than the cache (a token used right
                // after it was requested): catch up once, then decide.
                let _ = api.cache.sync().await;
                if let Err(Invalid::Final(why) | Invalid::Stale(why)) =
                    self.check_live(api, &verified, now)
                {
                    return Err(why);
                }
            }
        }
        Ok(Some((verified.user.clone(), matched)))
    }

    /// The verified claims of a token: from the cache, or by checking its
    /// signature against every key.
    fn verified(&self, token: &str) -> Result<Option<Arc<Verified>>, String> {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let key: [u8; 32] = digest.as_ref().try_into().expect("SHA-256 is 32 bytes");
        if let Some(v) = self.verified.read().unwrap().get(&key) {
            return Ok(Some(v.clone()));
        }
        let Some(claims) = self.verify_signature(token)? else {
            return Ok(None);
        };
        let user = user_of(&claims)?;
        let objects = self.objects(&claims);
        let verified = Arc::new(Verified {
            claims,
            user,
            objects,
        });
        let mut cache = self.verified.write().unwrap();
        if cache.len() >= VERIFIED_CAPACITY {
            let now = jiff::Timestamp::now().as_second();
            cache.retain(|_, v| v.claims.exp.is_none_or(|exp| exp + LEEWAY_SECONDS >= now));
            // Still full: forget an arbitrary eighth (the map's order is
            // random), rather than everything at once.
            if cache.len() >= VERIFIED_CAPACITY {
                let evicted: Vec<[u8; 32]> =
                    cache.keys().take(VERIFIED_CAPACITY / 8).copied().collect();
                for k in evicted {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(key, verified.clone());
        Ok(Some(verified))
    }

    /// Checks the signature. `Ok(None)` when the token is not a JWT of one
    /// of our issuers.
    fn verify_signature(&self, token: &str) -> Result<Option<Claims>, String> {
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        struct Issuer {
            #[serde(default)]
            iss: String,
        }
        let issuer = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()
            .and_then(|p| serde_json::from_slice::<Issuer>(&p).ok());
        match issuer {
            Some(i) if self.issuers.contains(&i.iss) => {}
            _ => return Ok(None),
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        // The key the header names first, then the others of its algorithm.
        let mut candidates: Vec<&(PublicKey, Validation)> = self
            .keys
            .iter()
            .filter(|(k, _)| k.alg == header.alg)
            .collect();
        candidates.sort_by_key(|(k, _)| header.kid.as_deref() != Some(k.kid.as_str()));
        for (key, validation) in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, validation) {
                Ok(data) => return Ok(Some(data.claims)),
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {}
                Err(e) => return Err(format!("service account token is malformed: {e}")),
            }
        }
        Err("invalid signature".into())
    }

    /// The ServiceAccount, and the Pod, Secret or Node the token is bound
    /// to, still exist (from the watch cache) with the uids it names.
    fn check_live(&self, api: &Api, verified: &Verified, now: i64) -> Result<(), Invalid> {
        for o in &verified.objects {
            let Some(obj) = api.cache.get(o.kind, &o.key) else {
                return Err(Invalid::Stale(match o.what {
                    "service account" => format!("serviceaccounts \"{}\" not found", o.name),
                    _ => "service account token has been invalidated".into(),
                }));
            };
            // Unchanged since it was last found valid.
            if obj.revision == o.valid_at.load(Ordering::Relaxed) {
                continue;
            }
            let meta = serde_json::from_slice::<Meta>(&obj.raw)
                .map(|m| m.metadata)
                .unwrap_or_default();
            if deleted_before(&meta, now - LEEWAY_SECONDS) {
                return Err(Invalid::Final(match o.what {
                    "service account" => format!("service account {} has been deleted", o.name),
                    _ => "service account token has been invalidated".into(),
                }));
            }
            if meta.uid != o.uid {
                return Err(Invalid::Stale(match o.what {
                    "service account" => format!(
                        "service account UID ({}) does not match claim ({})",
                        meta.uid, o.uid
                    ),
                    what => format!(
                        "{what} UID ({}) does not match service account {what} ref claim ({})",
                        meta.uid, o.uid
                    ),
                }));
            }
            // Being deleted, it may expire with time: check it each time.
            if meta.deletion_timestamp.is_none() {
                o.valid_at.store(obj.revision, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// The objects a token names, to look up on every request.
    fn objects(&self, claims: &Claims) -> Vec<Object> {
        let Some(k) = &claims.kubernetes else {
            return Vec::new();
        };
        let ns = Some(k.namespace.as_str());
        let sa = &k.serviceaccount;
        let object = |kind: &'static ResourceInfo, ns: Option<&str>, r: &Ref, what| Object {
            kind,
            key: kind.key(ns, &r.name),
            name: match ns {
                Some(ns) => format!("{ns}/{}", r.name),
                None => r.name.clone(),
            },
            uid: r.uid.clone(),
            what,
            valid_at: AtomicI64::new(0),
        };
        let mut objects = vec![object(
            self.kinds.service_accounts,
            ns,
            sa,
            "service account",
        )];
        if let Some(secret) = &k.secret {
            objects.push(object(self.kinds.secrets, ns, secret, "secret"));
        }
        if let Some(pod) = &k.pod {
            objects.push(object(self.kinds.pods, ns, pod, "pod"));
        } else if let Some(node) = &k.node {
            // A pod-bound token names its node for information only.
            objects.push(object(self.kinds.nodes, None, node, "node"));
        }
        objects
    }

    /// Signs a token with these claims.
    fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        let mut header = Header::new(self.signing.alg);
        header.typ = None;
        header.kid = Some(self.signing.public.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing.encoding)
            .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))
    }
}

/// Whether an object is being deleted since before `cutoff` (seconds).
fn deleted_before(meta: &MetaFields, cutoff: i64) -> bool {
    meta.deletion_timestamp
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| t.as_second() < cutoff)
}

/// The user a verified token names: `system:serviceaccount:<ns>:<name>` in
/// `system:serviceaccounts` and `system:serviceaccounts:<ns>`, the pod and
/// node it is bound to and its id as extra.
fn user_of(claims: &Claims) -> Result<User, String> {
    let Some(k) = &claims.kubernetes else {
        return Err("service account token lacks the kubernetes.io claim".into());
    };
    let sa = &k.serviceaccount;
    if k.namespace.is_empty() || sa.name.is_empty() {
        return Err("service account token names no namespace or service account".into());
    }
    let mut extra = BTreeMap::new();
    if let Some(pod) = &k.pod
        && !pod.name.is_empty()
        && !pod.uid.is_empty()
    {
        extra.insert(POD_NAME_KEY.to_owned(), vec![pod.name.clone()]);
        extra.insert(POD_UID_KEY.to_owned(), vec![pod.uid.clone()]);
    }
    if let Some(node) = &k.node
        && !node.name.is_empty()
    {
        extra.insert(NODE_NAME_KEY.to_owned(), vec![node.name.clone()]);
        if !node.uid.is_empty() {
            extra.insert(NODE_UID_KEY.to_owned(), vec![node.uid.clone()]);
        }
    }
    if let Some(jti) = claims.jti.as_deref().filter(|j| !j.is_empty()) {
        extra.insert(CREDENTIAL_ID_KEY.to_owned(), vec![format!("JTI={jti}")]);
    }
    Ok(User {
        name: format!("system:serviceaccount:{}:{}", k.namespace, sa.name),
        uid: sa.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
            "system:authenticated".into(),
        ],
        extra,
    })
}

// ---------------------------------------------------------------------------
// TokenRequest

fn invalid(name: &str, field: &str, value: String, detail: &str) -> ApiError {
    ApiError::invalid(
        "authentication.k8s.io",
        "TokenRequest",
        name,
        &FieldErrors(vec![FieldError {
            kind: ErrorType::Invalid,
            field: field.into(),
            value: Some(value),
            detail: detail.into(),
        }]),
    )
}

/// Reads the TokenRequest body (JSON, YAML or protobuf).
fn decode(call: &Call<'_>) -> Result<Value, ApiError> {
    let mut obj = match call.body_type {
        Some(BodyType::Protobuf) => skiff_api_types::protobuf::decode(&call.body)
            .map_err(|e| ApiError::bad_request(format!("decoding the protobuf body: {e}")))?,
        Some(BodyType::Yaml) => decode_object(&call.body, true)?,
        _ => decode_object(&call.body, false)?,
    };
    match (obj["apiVersion"].as_str(), obj["kind"].as_str()) {
        (
            None | Some("") | Some("authentication.k8s.io/v1"),
            None | Some("") | Some("TokenRequest"),
        ) => {}
        (v, k) => {
            return Err(ApiError::bad_request(format!(
                "expected a TokenRequest of authentication.k8s.io/v1, got {} of {}",
                k.unwrap_or(""),
                v.unwrap_or("")
            )));
        }
    }
    obj["apiVersion"] = json!("authentication.k8s.io/v1");
    obj["kind"] = json!("TokenRequest");
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    Ok(obj)
}

/// `POST .../serviceaccounts/{name}/token`: issues a token for the
/// ServiceAccount, optionally bound to a Pod, Secret or Node.
pub(crate) async fn token_request(call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let api = call.api;
    let sa_issuer = &api.authn.service_accounts;
    let namespace = call
        .target
        .namespace
        .ok_or_else(|| ApiError::bad_request("namespace is required"))?;
    let name = call.target.name.unwrap_or_default();
    let mut req = decode(call)?;

    // The name and namespace in the body, if any, are the URL's.
    for (field, want) in [("name", name), ("namespace", namespace)] {
        if let Some(given) = req["metadata"][field].as_str().filter(|s| !s.is_empty())
            && given != want
        {
            return Err(invalid(
                name,
                &format!("metadata.{field}"),
                format!("{given:?}"),
                &format!("must match the service account {field} if specified"),
            ));
        }
    }
    let core =
        |plural: &str| registry::lookup("", "v1", plural).expect("core kinds are registered");
    let target = |resource, name| Target {
        resource,
        namespace: Some(namespace),
        name: Some(name),
        subresource: None,
    };
    let (sa, _) = crate::rest::load(api, &target(core("serviceaccounts"), name)).await?;

    // Defaults: the API audiences, an hour.
    let audiences: Vec<String> = match req["spec"]["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::bad_request("spec.audiences must be strings"))?,
        _ => api.authn.api_audiences.clone(),
    };
    let mut expiration = match &req["spec"]["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION_SECONDS,
        v => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    let now = jiff::Timestamp::now();
    req["metadata"]["name"] = json!(name);
    req["metadata"]["namespace"] = json!(namespace);
    req["metadata"]["creationTimestamp"] = json!(rfc3339(now));
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(expiration);
    req["status"] = json!({});
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            expiration.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            expiration.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }

    // The object the token is bound to.
    let mut kube = KubernetesClaims {
        namespace: namespace.to_owned(),
        serviceaccount: Ref {
            name: name.to_owned(),
            uid: sa["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        },
        ..Default::default()
    };
    let bound = &req["spec"]["boundObjectRef"];
    let mut pod_bound = false;
    if bound.is_object() {
        let kind = bound["kind"].as_str().unwrap_or("");
        let api_version = bound["apiVersion"].as_str().unwrap_or("");
        let object = bound["name"].as_str().unwrap_or("");
        let want_uid = bound["uid"].as_str().unwrap_or("");
        let core_group = api_version.is_empty() || !api_version.contains('/');
        let (resource, uid) = match kind {
            "Pod" | "Secret" | "Node" if core_group && object.is_empty() => {
                return Err(ApiError::bad_request(format!(
                    "boundObjectRef.name is required to bind a token to a {kind}"
                )));
            }
            "Pod" if core_group => {
                let (pod, _) = crate::rest::load(api, &target(core("pods"), object)).await?;
                let runs_as = pod["spec"]["serviceAccountName"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("default");
                if runs_as != name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
                let uid = uid_of(&pod);
                kube.pod = Some(Ref {
                    name: object.to_owned(),
                    uid: uid.clone(),
                });
                // The node the pod runs on, for information.
                if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                    let nodes = core("nodes");
                    if let Some(obj) = api.cache.get(nodes, &nodes.key(None, node)) {
                        kube.node = Some(Ref {
                            name: node.to_owned(),
                            uid: uid_of(&obj.value()),
                        });
                    }
                }
                pod_bound = true;
                ("pods", uid)
            }
            "Secret" if core_group => {
                let (secret, _) = crate::rest::load(api, &target(core("secrets"), object)).await?;
                let uid = uid_of(&secret);
                kube.secret = Some(Ref {
                    name: object.to_owned(),
                    uid: uid.clone(),
                });
                ("secrets", uid)
            }
            "Node" if core_group => {
                let nodes = core("nodes");
                let node_target = Target {
                    resource: nodes,
                    namespace: None,
                    name: Some(object),
                    subresource: None,
                };
                let (node, _) = crate::rest::load(api, &node_target).await?;
                let uid = uid_of(&node);
                kube.node = Some(Ref {
                    name: object.to_owned(),
                    uid: uid.clone(),
                });
                ("nodes", uid)
            }
            _ => {
                let group = api_version.split_once('/').map_or("", |(g, _)| g);
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {group}/{api_version}, Kind={kind}"
                )));
            }
        };
        if !want_uid.is_empty() && want_uid != uid {
            return Err(ApiError::conflict(
                GroupResource {
                    group: "",
                    resource,
                },
                object,
                &format!(
                    "the UID in the bound object reference ({want_uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
    }

    if let Some(max) = sa_issuer.max_expiration
        && expiration > max
    {
        call.warnings.lock().unwrap().push(format!(
            "requested expiration of {expiration} seconds shortened to {max} seconds"
        ));
        expiration = max;
        req["spec"]["expirationSeconds"] = json!(expiration);
    }
    // The kubelet's projected tokens last a year and warn after an hour.
    let mut lifetime = expiration;
    let kube_audiences = !audiences.is_empty()
        && audiences
            .iter()
            .all(|a| api.authn.api_audiences.contains(a));
    if sa_issuer.extend_expiration
        && pod_bound
        && expiration == WARN_ONLY_EXPIRATION_SECONDS
        && kube_audiences
    {
        kube.warnafter = Some(now.as_second() + expiration);
        lifetime = EXTENDED_EXPIRATION_SECONDS;
    }

    let issued = now.as_second();
    let claims = Claims {
        aud: audiences,
        exp: Some(issued + lifetime),
        iat: Some(issued),
        iss: sa_issuer.issuer().to_owned(),
        jti: Some(crate::rest::new_uid()),
        kubernetes: Some(kube),
        nbf: Some(issued),
        sub: format!("system:serviceaccount:{namespace}:{name}"),
    };
    let token = sa_issuer.sign(&claims)?;
    let expires = now
        .checked_add(jiff::SignedDuration::from_secs(expiration))
        .unwrap_or(jiff::Timestamp::MAX);
    req["status"] = json!({"token": token, "expirationTimestamp": rfc3339(expires)});
    debug!(
        serviceaccount = %format!("{namespace}/{name}"),
        expiration_seconds = expiration,
        "issued a service account token"
    );
    Ok(call.output.encode(201, &req))
}

fn uid_of(obj: &Value) -> String {
    obj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(pod: bool) -> Claims {
        Claims {
            aud: vec!["https://kubernetes.default.svc.cluster.local".into()],
            exp: Some(2_000_000_000),
            iat: Some(1_999_996_400),
            iss: "https://kubernetes.default.svc.cluster.local".into(),
            jti: Some("f0e5d9b4-4a4e-4d8e-9d4e-3c1f0b7a9e21".into()),
            kubernetes: Some(KubernetesClaims {
                namespace: "team-a".into(),
                pod: pod.then(|| Ref {
                    name: "web-0".into(),
                    uid: "pod-uid".into(),
                }),
                node: pod.then(|| Ref {
                    name: "node-1".into(),
                    uid: "node-uid".into(),
                }),
                serviceaccount: Ref {
                    name: "robot".into(),
                    uid: "sa-uid".into(),
                },
                ..Default::default()
            }),
            nbf: Some(1_999_996_400),
            sub: "system:serviceaccount:team-a:robot".into(),
        }
    }

    #[test]
    fn a_token_names_its_service_account_in_upstreams_groups() {
        let user = user_of(&claims(false)).unwrap();
        assert_eq!(user.name, "system:serviceaccount:team-a:robot");
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team-a",
                "system:authenticated"
            ]
        );
        assert_eq!(
            user.extra[CREDENTIAL_ID_KEY],
            ["JTI=f0e5d9b4-4a4e-4d8e-9d4e-3c1f0b7a9e21"]
        );
        assert!(!user.extra.contains_key(POD_NAME_KEY));
    }

    #[test]
    fn a_pod_bound_token_carries_the_pod_and_node_as_extra() {
        let user = user_of(&claims(true)).unwrap();
        assert_eq!(user.extra[POD_NAME_KEY], ["web-0"]);
        assert_eq!(user.extra[POD_UID_KEY], ["pod-uid"]);
        assert_eq!(user.extra[NODE_NAME_KEY], ["node-1"]);
        assert_eq!(user.extra[NODE_UID_KEY], ["node-uid"]);
    }

    #[test]
    fn claims_serialize_as_upstream_writes_them() {
        let text = serde_json::to_string(&claims(true)).unwrap();
        let at: Vec<usize> = [
            "aud",
            "exp",
            "iat",
            "iss",
            "jti",
            "kubernetes.io",
            "nbf",
            "sub",
        ]
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert_eq!(v["kubernetes.io"]["pod"]["name"], "web-0");
        assert!(v["kubernetes.io"].get("secret").is_none());
        // `aud` may come as one string.
        let one: Claims = serde_json::from_value(json!({"aud": "x", "iss": "i"})).unwrap();
        assert_eq!(one.aud, ["x"]);
    }

    #[test]
    fn a_token_without_the_kubernetes_claim_names_no_one() {
        let mut c = claims(false);
        c.kubernetes = None;
        assert!(user_of(&c).is_err());
    }
}
