//! The review kinds: questions put to the authorizer and the authenticator,
//! answered with the object sent back, its `status` filled in, never stored
//! (upstream's pkg/registry/authorization and pkg/registry/authentication).
//!
//! - SubjectAccessReview: may this user (with these groups) do this?
//! - LocalSubjectAccessReview: the same, in the namespace of the URL.
//! - SelfSubjectAccessReview: may I? (`kubectl auth can-i`)
//! - SelfSubjectRulesReview: what may I do in a namespace?
//!   (`kubectl auth can-i --list`)
//! - SelfSubjectReview: who am I? (`kubectl auth whoami`)
//! - TokenReview: whom does this token authenticate?

use std::collections::BTreeMap;

use http::Response;
use serde_json::{Value, json};
use skiff_api_types::validation::{ErrorType, FieldError, FieldErrors};

use crate::authz::{self, Attributes};
use crate::http_util::Body;
use crate::rest::{Call, now_rfc3339, render_one};
use crate::server::User;
use crate::status::ApiError;

/// Answers the creation of a review: 201 with the status filled in.
pub(crate) async fn create(call: &Call<'_>, mut obj: Value) -> Result<Response<Body>, ApiError> {
    let resource = call.target.resource;
    let status = match resource.plural {
        "subjectaccessreviews" => subject_access_review(call, &obj, None)?,
        "localsubjectaccessreviews" => {
            let namespace = call.target.namespace.unwrap_or("");
            if namespace.is_empty() {
                return Err(ApiError::bad_request(
                    "namespace is required on this type: ",
                ));
            }
            subject_access_review(call, &obj, Some(namespace))?
        }
        "selfsubjectaccessreviews" => {
            validate_access_spec(resource.kind, &obj["spec"], false)?;
            access_status(call, call.user, &obj["spec"])
        }
        "selfsubjectrulesreviews" => rules_status(call, &obj)?,
        "selfsubjectreviews" => {
            obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
            json!({ "userInfo": user_info(call.user) })
        }
        "tokenreviews" => token_status(call, &obj).await?,
        _ => return Err(ApiError::method_not_allowed()),
    };
    if obj["metadata"].get("creationTimestamp").is_none() {
        obj["metadata"]["creationTimestamp"] = Value::Null;
    }
    obj["status"] = status;
    Ok(render_one(call, &obj, 201))
}

/// SubjectAccessReview and, with the URL's namespace, LocalSubjectAccessReview.
fn subject_access_review(
    call: &Call<'_>,
    obj: &Value,
    local_namespace: Option<&str>,
) -> Result<Value, ApiError> {
    let kind = call.target.resource.kind;
    let spec = &obj["spec"];
    match local_namespace {
        None => validate_access_spec(kind, spec, true)?,
        Some(namespace) => {
            let mut errors = Vec::new();
            if no_subject(spec) {
                errors.push(invalid(
                    "spec.user",
                    quoted(&spec["user"]),
                    "at least one of user or group must be specified",
                ));
            }
            let attrs = &spec["resourceAttributes"];
            if attrs.is_object() && attrs["namespace"].as_str().unwrap_or("") != namespace {
                errors.push(invalid(
                    "spec.resourceAttributes.namespace",
                    quoted(&attrs["namespace"]),
                    "must match metadata.namespace",
                ));
            }
            if spec["nonResourceAttributes"].is_object() {
                errors.push(invalid(
                    "spec.nonResourceAttributes",
                    None,
                    "disallowed on this kind of request",
                ));
            }
            check(kind, errors)?;
        }
    }
    let user = User {
        name: str_of(&spec["user"]).to_owned(),
        uid: str_of(&spec["uid"]).to_owned(),
        groups: strings(&spec["groups"]),
        extra: spec["extra"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
            .unwrap_or_default(),
    };
    Ok(access_status(call, &user, spec))
}

/// Decides a SubjectAccessReviewSpec's question for `user`.
fn access_status(call: &Call<'_>, user: &User, spec: &Value) -> Value {
    let resource = &spec["resourceAttributes"];
    let attrs = if resource.is_object() {
        Attributes {
            user,
            verb: str_of(&resource["verb"]),
            resource_request: true,
            api_group: str_of(&resource["group"]),
            namespace: Some(str_of(&resource["namespace"])),
            resource: str_of(&resource["resource"]),
            subresource: Some(str_of(&resource["subresource"])).filter(|s| !s.is_empty()),
            name: Some(str_of(&resource["name"])).filter(|s| !s.is_empty()),
            path: "",
        }
    } else {
        let non_resource = &spec["nonResourceAttributes"];
        Attributes {
            user,
            verb: str_of(&non_resource["verb"]),
            resource_request: false,
            api_group: "",
            namespace: None,
            resource: "",
            subresource: None,
            name: None,
            path: str_of(&non_resource["path"]),
        }
    };
    let verdict = authz::review(call.api, &attrs);
    let mut status = json!({ "allowed": verdict.allowed });
    if !verdict.reason.is_empty() {
        status["reason"] = json!(verdict.reason);
    }
    status
}

/// SelfSubjectRulesReview: the caller's rules in `spec.namespace`.
fn rules_status(call: &Call<'_>, obj: &Value) -> Result<Value, ApiError> {
    let namespace = str_of(&obj["spec"]["namespace"]);
    if namespace.is_empty() {
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let index = call.api.rbac.index(&call.api.cache);
    let (rules, errors) = index.rules_for(call.user, Some(namespace));
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in &rules {
        if !rule.resources.is_empty() {
            let mut r = json!({ "verbs": rule.verbs });
            for (field, list) in [
                ("apiGroups", &rule.api_groups),
                ("resources", &rule.resources),
                ("resourceNames", &rule.resource_names),
            ] {
                if !list.is_empty() {
                    r[field] = json!(list);
                }
            }
            resource_rules.push(r);
        }
        if !rule.non_resource_urls.is_empty() {
            non_resource_rules.push(json!({
                "verbs": rule.verbs,
                "nonResourceURLs": rule.non_resource_urls,
            }));
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    Ok(status)
}

/// TokenReview: authenticates `spec.token` for `spec.audiences`.
async fn token_status(call: &Call<'_>, obj: &Value) -> Result<Value, ApiError> {
    let token = str_of(&obj["spec"]["token"]);
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in ",
        ));
    }
    let audiences = strings(&obj["spec"]["audiences"]);
    Ok(
        match call
            .api
            .authn
            .authenticate_token(call.api, token, &audiences)
            .await
        {
            Ok(Some((user, audiences))) => json!({
                "authenticated": true,
                "user": user_info(&user),
                "audiences": audiences,
            }),
            Ok(None) => json!({ "authenticated": false, "user": {} }),
            Err(e) => json!({ "authenticated": false, "user": {}, "error": e.message }),
        },
    )
}

/// A user as `authentication.k8s.io/v1` UserInfo, empty fields left out.
fn user_info(user: &User) -> Value {
    let mut info = json!({ "username": user.name });
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.groups.is_empty() {
        info["groups"] = json!(user.groups);
    }
    if !user.extra.is_empty() {
        let extra: BTreeMap<&String, &Vec<String>> = user.extra.iter().collect();
        info["extra"] = json!(extra);
    }
    info
}

/// Upstream's ValidateSubjectAccessReviewSpec (`needs_subject` for the
/// non-self kinds).
fn validate_access_spec(kind: &str, spec: &Value, needs_subject: bool) -> Result<(), ApiError> {
    let resource = spec["resourceAttributes"].is_object();
    let non_resource = spec["nonResourceAttributes"].is_object();
    let mut errors = Vec::new();
    if resource && non_resource {
        errors.push(invalid(
            "spec.nonResourceAttributes",
            None,
            "cannot be specified in combination with resourceAttributes",
        ));
    }
    if !resource && !non_resource {
        errors.push(invalid(
            "spec.resourceAttributes",
            Some("null".into()),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    if needs_subject && no_subject(spec) {
        errors.push(invalid(
            "spec.user",
            quoted(&spec["user"]),
            "at least one of user or group must be specified",
        ));
    }
    check(kind, errors)
}

fn no_subject(spec: &Value) -> bool {
    str_of(&spec["user"]).is_empty() && strings(&spec["groups"]).is_empty()
}

fn check(kind: &str, errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        "authorization.k8s.io",
        kind,
        "",
        &FieldErrors(errors),
    ))
}

fn invalid(field: &str, value: Option<String>, detail: &str) -> FieldError {
    FieldError {
        kind: ErrorType::Invalid,
        field: field.to_owned(),
        value,
        detail: detail.to_owned(),
    }
}

fn quoted(v: &Value) -> Option<String> {
    Some(format!("{:?}", str_of(v)))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
