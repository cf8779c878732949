//! ValidatingAdmissionPolicy (k8s.io/apiserver pkg/admission/plugin/policy/
//! validating): each ValidatingAdmissionPolicy whose `matchConstraints`
//! match a write is evaluated once for each ValidatingAdmissionPolicyBinding
//! naming it whose `matchResources` also match (and once per parameter
//! object its `paramRef` selects, when the policy has a `paramKind`). Its
//! `matchConditions` must all be true for it to apply; then each of its
//! `validations` that is not true is a failure, which the binding's
//! `validationActions` turn into a refusal (`Deny`: a 422 `Invalid`, or the
//! validation's `reason`), a `Warning` header (`Warn`), or a log line
//! (`Audit`: Skiff keeps no audit log). An expression that fails to
//! evaluate, or a binding whose parameters cannot be found, refuses the
//! write unless the policy's `failurePolicy` is Ignore.
//!
//! Policies and bindings are read from the watch cache, so a new one applies
//! as soon as the cache has it. Writes to admissionregistration.k8s.io
//! objects are exempt, as upstream. Not done: `auditAnnotations` (no audit
//! log), `matchPolicy: Equivalent` across versions (rules match the version
//! written), the `authorizer` variable, CONNECT requests (Skiff serves
//! none through admission), and cost limits.

use std::collections::BTreeMap;

use cel::common::types::CelNull;
use cel::common::value::Val;
use serde_json::{Value, json};
use skiff_api_types::registry::{self, ResourceInfo};
use skiff_api_types::validation::{FieldError, Path};

use super::expressions::{self, Compiled, Inputs, Variables};
use super::{Request, lookup, name_of, namespace_of, webhook};
use crate::status::ApiError;

pub const NAME: &str = "ValidatingAdmissionPolicy";

const GROUP: &str = "admissionregistration.k8s.io";

/// Upstream's `MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE: usize = 5 * 1024;

/// Upstream's limit on matchConditions per webhook or policy.
const MAX_MATCH_CONDITIONS: usize = 64;

/// A failed validation (or configuration) that refuses the write.
struct Denial {
    policy: String,
    binding: Option<String>,
    message: String,
    /// The validation's reason; `Invalid` when it names none.
    reason: String,
}

/// What one evaluation of a policy decided for one of its validations.
enum Decision {
    /// The validation failed: refuse, warn or log as the binding says.
    Failed { message: String, reason: String },
    /// The validation could not be evaluated and `failurePolicy` is Fail.
    Error(String),
}

/// A policy's `variables`: name, expression, compiled.
type Defined = Vec<(String, String, Compiled)>;

/// Evaluates the policies bound to this write; the first refusal refuses
/// it. `obj` is `None` on a deletion, `old` on a create.
pub async fn validate(
    req: &Request<'_>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if webhook::exempt(req) {
        return Ok(());
    }
    let policies = lookup::list(
        req.api,
        lookup::resource(GROUP, "validatingadmissionpolicies"),
        None,
    );
    if policies.is_empty() {
        return Ok(());
    }
    let bindings = lookup::list(
        req.api,
        lookup::resource(GROUP, "validatingadmissionpolicybindings"),
        None,
    );
    if bindings.is_empty() {
        return Ok(());
    }
    let namespace_labels = webhook::namespace_labels(req, obj.or(old));
    let mut inputs: Option<Inputs> = None;
    let mut denials: Vec<Denial> = Vec::new();
    for policy in &policies {
        let policy_name = policy["metadata"]["name"].as_str().unwrap_or("");
        let bound: Vec<&Value> = bindings
            .iter()
            .filter(|b| b["spec"]["policyName"] == policy_name)
            .collect();
        if bound.is_empty() {
            continue;
        }
        let spec = &policy["spec"];
        // A policy matches nothing without resource rules (its validation
        // requires them); a binding's matchResources may leave them out.
        let constraints = &spec["matchConstraints"];
        if constraints["resourceRules"]
            .as_array()
            .is_none_or(Vec::is_empty)
            || !resources_match(req, constraints, namespace_labels.as_ref(), obj, old)
        {
            continue;
        }
        let fail = spec["failurePolicy"] != "Ignore";
        let config_error = |binding: Option<&str>, why: String| -> Option<Denial> {
            if !fail {
                tracing::warn!(policy = %policy_name, error = %why, "ignoring a misconfigured ValidatingAdmissionPolicy");
                return None;
            }
            let what = if binding.is_some() {
                "binding"
            } else {
                "policy"
            };
            Some(Denial {
                policy: policy_name.to_owned(),
                binding: binding.map(str::to_owned),
                message: format!("failed to configure {what}: {why}"),
                reason: String::new(),
            })
        };
        let param_kind = match param_resource(req, &spec["paramKind"]) {
            Ok(kind) => kind,
            Err(why) => {
                denials.extend(config_error(None, why));
                continue;
            }
        };
        let defined: Defined = spec["variables"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                let source = v["expression"].as_str().unwrap_or("").to_owned();
                let compiled = expressions::compile(&source);
                (
                    v["name"].as_str().unwrap_or("").to_owned(),
                    source,
                    compiled,
                )
            })
            .collect();
        for binding in bound {
            let binding_name = binding["metadata"]["name"].as_str().unwrap_or("");
            let narrowed = &binding["spec"]["matchResources"];
            if !narrowed.is_null()
                && !resources_match(req, narrowed, namespace_labels.as_ref(), obj, old)
            {
                continue;
            }
            let params =
                match collect_params(req, param_kind, &binding["spec"]["paramRef"], obj.or(old)) {
                    Ok(params) => params,
                    Err(why) => {
                        denials.extend(config_error(Some(binding_name), why));
                        continue;
                    }
                };
            if inputs.is_none() {
                inputs = Some(build_inputs(req, obj, old).await?);
            }
            let inputs = inputs.as_ref().expect("built above");
            for param in &params {
                let params_val = param
                    .as_ref()
                    .map_or_else(|| Box::new(CelNull) as Box<dyn Val>, expressions::to_val);
                let decisions = evaluate(spec, &defined, inputs, params_val.as_ref(), fail);
                act(req, policy_name, binding, decisions, &mut denials);
            }
        }
    }
    match denials.first() {
        Some(d) => Err(refusal(req, obj, old, d)),
        None => Ok(()),
    }
}

/// Applies a binding's `validationActions` to the failed validations.
fn act(
    req: &Request<'_>,
    policy: &str,
    binding: &Value,
    decisions: Vec<Decision>,
    denials: &mut Vec<Denial>,
) {
    let binding_name = binding["metadata"]["name"].as_str().unwrap_or("");
    let actions: Vec<&str> = binding["spec"]["validationActions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for decision in decisions {
        let (message, reason) = match decision {
            Decision::Failed { message, reason } => (message, reason),
            Decision::Error(message) => (message, String::new()),
        };
        for action in &actions {
            match *action {
                "Deny" => denials.push(Denial {
                    policy: policy.to_owned(),
                    binding: Some(binding_name.to_owned()),
                    message: message.clone(),
                    reason: reason.clone(),
                }),
                "Warn" => req.warn(format!(
                    "Validation failed for ValidatingAdmissionPolicy '{policy}' with binding '{binding_name}': {message}"
                )),
                "Audit" => tracing::info!(
                    policy = %policy,
                    binding = %binding_name,
                    message = %message,
                    "validation.policy.admission.k8s.io/validation_failure"
                ),
                _ => {}
            }
        }
    }
}

/// Evaluates a policy for one binding and parameter: the validations that
/// failed (none when its matchConditions leave the write out).
fn evaluate(
    spec: &Value,
    defined: &Defined,
    inputs: &Inputs,
    params: &dyn Val,
    fail: bool,
) -> Vec<Decision> {
    let variables = Variables::new(defined);
    let conditions = spec["matchConditions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    match expressions::conditions_match(conditions, inputs, params, Some(&variables)) {
        Ok(true) => {}
        Ok(false) => return Vec::new(),
        Err(e) if fail => return vec![Decision::Error(e)],
        Err(_) => return Vec::new(),
    }
    let mut decisions = Vec::new();
    for validation in spec["validations"].as_array().into_iter().flatten() {
        let source = validation["expression"].as_str().unwrap_or("");
        let result = expressions::eval(
            source,
            &expressions::compile(source),
            inputs,
            params,
            Some(&variables),
        );
        match result {
            Ok(cel::Value::Bool(true)) => {}
            Ok(_) => decisions.push(Decision::Failed {
                message: failure_message(validation, inputs, params, &variables),
                reason: validation["reason"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                    .unwrap_or("Invalid")
                    .to_owned(),
            }),
            Err(e) if fail => decisions.push(Decision::Error(e)),
            Err(e) => {
                tracing::debug!(error = %e, "ignoring a failed ValidatingAdmissionPolicy expression");
            }
        }
    }
    decisions
}

/// What a failed validation says: its `messageExpression` if that gives a
/// one-line string, else its `message`, else `failed expression: <it>`.
fn failure_message(
    validation: &Value,
    inputs: &Inputs,
    params: &dyn Val,
    variables: &Variables<'_>,
) -> String {
    if let Some(source) = validation["messageExpression"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
    {
        match expressions::eval(
            source,
            &expressions::compile(source),
            inputs,
            params,
            Some(variables),
        ) {
            Ok(cel::Value::String(s)) => {
                let s = s.trim();
                if !s.is_empty() && s.len() <= MAX_MESSAGE && !s.contains('\n') {
                    return s.to_owned();
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "error while evaluating messageExpression"),
        }
    }
    if let Some(message) = validation["message"]
        .as_str()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        return message.to_owned();
    }
    format!(
        "failed expression: {}",
        validation["expression"].as_str().unwrap_or("").trim()
    )
}

/// Upstream's refusal: a Forbidden error re-labelled with the validation's
/// reason and its code.
fn refusal(req: &Request<'_>, obj: Option<&Value>, old: Option<&Value>, d: &Denial) -> ApiError {
    let message = match &d.binding {
        Some(binding) => format!(
            "ValidatingAdmissionPolicy '{}' with binding '{binding}' denied request: {}",
            d.policy, d.message
        ),
        None => format!(
            "ValidatingAdmissionPolicy '{}' denied request: {}",
            d.policy, d.message
        ),
    };
    // As upstream's admission.NewForbidden: the name, else the generated
    // name's prefix, else "Unknown".
    let name = obj.or(old).map_or("Unknown", name_of);
    let mut e = ApiError::forbidden(req.gr(), name, &message);
    (e.reason, e.code) = match d.reason.as_str() {
        "Forbidden" => ("Forbidden", 403),
        "Unauthorized" => ("Unauthorized", 401),
        "RequestEntityTooLarge" => ("RequestEntityTooLarge", 413),
        _ => ("Invalid", 422),
    };
    if let Some(details) = e.details.as_mut() {
        details["causes"] = json!([{ "message": message }]);
    }
    e
}

/// Upstream's matching.Matcher: namespace and object selectors, excluded
/// rules, then the resource rules (none match everything, as a binding's
/// `matchResources` may say).
fn resources_match(
    req: &Request<'_>,
    constraints: &Value,
    namespace_labels: Option<&BTreeMap<String, String>>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> bool {
    if let Some(labels) = namespace_labels
        && !webhook::selector(&constraints["namespaceSelector"]).matches(labels)
    {
        return false;
    }
    let objects = &constraints["objectSelector"];
    if !objects.is_null() {
        let selector = webhook::selector(objects);
        let any = [obj, old]
            .into_iter()
            .flatten()
            .any(|o| selector.matches(&crate::cache::labels_of(o)));
        if !any {
            return false;
        }
    }
    let name = obj
        .or(old)
        .map_or("", |o| o["metadata"]["name"].as_str().unwrap_or(""));
    let named_rule = |rule: &Value| {
        webhook::rule_matches(req, rule)
            && rule["resourceNames"]
                .as_array()
                .is_none_or(|names| names.is_empty() || names.iter().any(|n| n == name))
    };
    if constraints["excludeResourceRules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(named_rule)
    {
        return false;
    }
    match constraints["resourceRules"].as_array() {
        Some(rules) if !rules.is_empty() => rules.iter().any(named_rule),
        _ => true,
    }
}

/// The resource a policy's `paramKind` names, if it has one.
fn param_resource(
    req: &Request<'_>,
    kind: &Value,
) -> Result<Option<&'static ResourceInfo>, String> {
    if kind.is_null() {
        return Ok(None);
    }
    let api_version = kind["apiVersion"].as_str().unwrap_or("");
    let kind_name = kind["kind"].as_str().unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    registry::by_kind(group, version, kind_name)
        .or_else(|| {
            req.api
                .crds
                .all()
                .into_iter()
                .find(|r| r.group == group && r.version == version && r.kind == kind_name)
        })
        .map(Some)
        .ok_or_else(|| {
            format!(
                "failed to find resource referenced by paramKind: '{api_version}, Kind={kind_name}'"
            )
        })
}

/// Upstream's CollectParams: the parameter objects a binding's `paramRef`
/// selects (`[None]` when the policy takes none, or the binding gives none).
fn collect_params(
    req: &Request<'_>,
    kind: Option<&'static ResourceInfo>,
    param_ref: &Value,
    subject: Option<&Value>,
) -> Result<Vec<Option<Value>>, String> {
    let Some(resource) = kind else {
        return Ok(vec![None]);
    };
    if param_ref.is_null() {
        return Ok(vec![None]);
    }
    let ref_namespace = param_ref["namespace"].as_str().unwrap_or("");
    let namespace = if resource.namespaced {
        let request_namespace = if req.resource.namespaced {
            subject.map_or("", namespace_of)
        } else {
            ""
        };
        let ns = if ref_namespace.is_empty() {
            request_namespace
        } else {
            ref_namespace
        };
        if ns.is_empty() {
            return Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into());
        }
        Some(ns)
    } else if !ref_namespace.is_empty() {
        return Err(
            "paramRef.namespace must not be provided for a cluster-scoped `paramKind`".into(),
        );
    } else {
        None
    };
    let name = param_ref["name"].as_str().unwrap_or("");
    let params: Vec<Option<Value>> = if !name.is_empty() {
        if !param_ref["selector"].is_null() {
            return Err("paramRef.name and paramRef.selector are mutually exclusive".into());
        }
        lookup::cached(req.api, resource, namespace, name)
            .into_iter()
            .map(Some)
            .collect()
    } else if !param_ref["selector"].is_null() {
        let selector = webhook::selector(&param_ref["selector"]);
        lookup::list(req.api, resource, namespace)
            .into_iter()
            .filter(|p| selector.matches(&crate::cache::labels_of(p)))
            .map(Some)
            .collect()
    } else {
        return Err("one of name or selector must be provided".into());
    };
    if params.is_empty() && param_ref["parameterNotFoundAction"] == "Deny" {
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(params)
}

/// The variables every expression sees, converted once per write.
async fn build_inputs(
    req: &Request<'_>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<Inputs, ApiError> {
    let subject = obj.or(old).unwrap_or(&Value::Null);
    // As upstream, a Namespace is not its own namespaceObject.
    let namespace = if req.resource.namespaced && !req.is("", "namespaces") {
        let name = namespace_of(subject);
        lookup::get(req.api, lookup::resource("", "namespaces"), None, name)
            .await?
            .map(|ns| namespace_object(&ns))
    } else {
        None
    };
    Ok(Inputs::new(
        obj,
        old,
        &expressions::request(req, obj, old),
        namespace.as_ref(),
    ))
}

/// Upstream's CreateNamespaceObject: the namespace's spec, status and
/// metadata less its managed fields and owners.
fn namespace_object(ns: &Value) -> Value {
    let mut metadata = serde_json::Map::new();
    for key in [
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "finalizers",
    ] {
        if let Some(v) = ns["metadata"].get(key) {
            metadata.insert(key.to_owned(), v.clone());
        }
    }
    json!({"metadata": metadata, "spec": ns["spec"], "status": ns["status"]})
}

/// The checks of upstream's validation that need CEL: every expression of
/// a ValidatingAdmissionPolicy, and the matchConditions of webhook
/// configurations, must compile; bindings must name their policy and
/// valid actions. (The other kinds' checks need no CEL and are not done.)
pub(crate) fn field_errors(resource: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    if resource.group != GROUP {
        return Vec::new();
    }
    let mut errors = Vec::new();
    match resource.plural {
        "validatingadmissionpolicies" => {
            let spec = &obj["spec"];
            let at = Path::new("spec");
            let constraints = &spec["matchConstraints"];
            if constraints.is_null() {
                errors.push(FieldError::required(&at.child("matchConstraints"), ""));
            } else if constraints["resourceRules"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                errors.push(FieldError::required(
                    &at.child("matchConstraints").child("resourceRules"),
                    "",
                ));
            }
            match_condition_errors(
                &spec["matchConditions"],
                &at.child("matchConditions"),
                &mut errors,
            );
            for (i, v) in spec["variables"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = at.child("variables").index(i);
                if v["name"].as_str().is_none_or(|n| n.trim().is_empty()) {
                    errors.push(FieldError::required(
                        &at.child("name"),
                        "name is not specified",
                    ));
                }
                expression_error(
                    &v["expression"],
                    &at.child("expression"),
                    "expression is not specified",
                    &mut errors,
                );
            }
            for (i, v) in spec["validations"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = at.child("validations").index(i);
                expression_error(
                    &v["expression"],
                    &at.child("expression"),
                    "expression is not specified",
                    &mut errors,
                );
                if let Some(m) = v["messageExpression"].as_str() {
                    if m.trim().is_empty() && !m.is_empty() {
                        errors.push(FieldError::invalid(
                            &at.child("messageExpression"),
                            m,
                            "must be non-empty if specified",
                        ));
                    } else if !m.is_empty() {
                        expression_error(
                            &v["messageExpression"],
                            &at.child("messageExpression"),
                            "",
                            &mut errors,
                        );
                    }
                }
                if let Some(reason) = v["reason"].as_str() {
                    const REASONS: &[&str] = &[
                        "Forbidden",
                        "Invalid",
                        "RequestEntityTooLarge",
                        "Unauthorized",
                    ];
                    if !REASONS.contains(&reason) {
                        errors.push(FieldError::not_supported(
                            &at.child("reason"),
                            reason,
                            REASONS,
                        ));
                    }
                }
            }
            for (i, a) in spec["auditAnnotations"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = at
                    .child("auditAnnotations")
                    .index(i)
                    .child("valueExpression");
                expression_error(
                    &a["valueExpression"],
                    &at,
                    "valueExpression is not specified",
                    &mut errors,
                );
            }
            if let Some(policy) = spec["failurePolicy"].as_str()
                && !["Fail", "Ignore"].contains(&policy)
            {
                errors.push(FieldError::not_supported(
                    &at.child("failurePolicy"),
                    policy,
                    &["Fail", "Ignore"],
                ));
            }
        }
        "validatingadmissionpolicybindings" => {
            let spec = &obj["spec"];
            let at = Path::new("spec");
            if spec["policyName"].as_str().is_none_or(str::is_empty) {
                errors.push(FieldError::required(&at.child("policyName"), ""));
            }
            let at = at.child("validationActions");
            let actions: Vec<&str> = spec["validationActions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| a.as_str().unwrap_or(""))
                .collect();
            const ACTIONS: &[&str] = &["Audit", "Deny", "Warn"];
            for (i, action) in actions.iter().enumerate() {
                if !ACTIONS.contains(action) {
                    errors.push(FieldError::not_supported(&at.index(i), *action, ACTIONS));
                }
                if actions[..i].contains(action) {
                    errors.push(FieldError::duplicate(&at.index(i), *action));
                }
            }
            if actions.contains(&"Deny") && actions.contains(&"Warn") {
                errors.push(FieldError::invalid(
                    &at,
                    skiff_api_types::validation::BadValue::raw(format!("[{}]", actions.join(" "))),
                    "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
                ));
            }
            if actions.is_empty() {
                errors.push(FieldError::required(
                    &at,
                    "at least one validation action is required",
                ));
            }
        }
        "validatingwebhookconfigurations" | "mutatingwebhookconfigurations" => {
            for (i, hook) in obj["webhooks"].as_array().into_iter().flatten().enumerate() {
                let at = Path::new("webhooks").index(i).child("matchConditions");
                match_condition_errors(&hook["matchConditions"], &at, &mut errors);
            }
        }
        _ => {}
    }
    errors
}

/// Checks a list of matchConditions: at most 64, each named once, each
/// expression compiling.
fn match_condition_errors(conditions: &Value, at: &Path, errors: &mut Vec<FieldError>) {
    let Some(conditions) = conditions.as_array() else {
        return;
    };
    if conditions.len() > MAX_MATCH_CONDITIONS {
        errors.push(FieldError::too_many(
            at,
            conditions.len(),
            MAX_MATCH_CONDITIONS,
        ));
    }
    let mut names = Vec::new();
    for (i, c) in conditions.iter().enumerate() {
        let at = at.index(i);
        expression_error(&c["expression"], &at.child("expression"), "", errors);
        match c["name"].as_str().filter(|n| !n.is_empty()) {
            None => errors.push(FieldError::required(&at.child("name"), "")),
            Some(name) if names.contains(&name) => {
                errors.push(FieldError::duplicate(&at.child("name"), name));
            }
            Some(name) => names.push(name),
        }
    }
}

/// An expression that is missing or does not compile.
fn expression_error(expression: &Value, at: &Path, missing: &str, errors: &mut Vec<FieldError>) {
    let source = expression.as_str().unwrap_or("");
    if source.trim().is_empty() {
        errors.push(FieldError::required(at, missing));
    } else if let Err(why) = expressions::compile(source) {
        errors.push(FieldError::invalid(at, source, why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> &'static ResourceInfo {
        lookup::resource(GROUP, "validatingadmissionpolicies")
    }

    #[test]
    fn expressions_that_do_not_compile_are_named_by_field() {
        let policy = json!({"spec": {"matchConstraints": {"resourceRules": [{}]}, "validations": [
            {"expression": "object.spec.replicas <= 5"},
            {"expression": "object.spec.replicas <=", "messageExpression": "'x' +"},
        ]}});
        let errors = field_errors(policies(), &policy);
        assert_eq!(errors.len(), 2, "{errors:?}");
        let first = errors[0].to_string();
        assert!(
            first.starts_with("spec.validations[1].expression: Invalid value: \"object.spec.replicas <=\": compilation failed: ERROR: <input>:1:"),
            "{first}"
        );
        assert_eq!(errors[1].field, "spec.validations[1].messageExpression");
    }

    #[test]
    fn bindings_need_a_policy_and_valid_actions() {
        let bindings = lookup::resource(GROUP, "validatingadmissionpolicybindings");
        let errors = field_errors(
            bindings,
            &json!({"spec": {"validationActions": ["Deny", "Warn", "Deny", "Nope"]}}),
        );
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 4, "{text:?}");
        assert_eq!(text[0], "spec.policyName: Required value");
        assert!(
            text[1].starts_with("spec.validationActions[2]: Duplicate value"),
            "{text:?}"
        );
        assert!(
            text[2].starts_with("spec.validationActions[3]: Unsupported value: \"Nope\""),
            "{text:?}"
        );
    }

    #[test]
    fn failure_messages_prefer_the_message_expression() {
        let object = json!({"spec": {"replicas": 6}});
        let inputs = Inputs::new(Some(&object), None, &json!({}), None);
        let variables = Variables::new(&[]);
        let message = |v: Value| failure_message(&v, &inputs, &CelNull, &variables);
        assert_eq!(
            message(json!({"expression": " object.spec.replicas <= 5 "})),
            "failed expression: object.spec.replicas <= 5"
        );
        assert_eq!(
            message(json!({"expression": "x", "message": " too many "})),
            "too many"
        );
        assert_eq!(
            message(
                json!({"expression": "x", "message": "m", "messageExpression": "'replicas: ' + string(object.spec.replicas)"})
            ),
            "replicas: 6"
        );
        // A message expression that fails or is not one line falls back.
        assert_eq!(
            message(json!({"expression": "x", "message": "m", "messageExpression": "object.nope"})),
            "m"
        );
        assert_eq!(
            message(json!({"expression": "x", "message": "m", "messageExpression": "'a\\nb'"})),
            "m"
        );
    }
}
