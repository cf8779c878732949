//! The `apps` group: Deployment, ReplicaSet, StatefulSet and DaemonSet.

use super::meta::{
    immutable, nonnegative, object_meta_errors, object_meta_update_errors, selector_is_empty,
    selector_matches, validate_label_selector,
};
use super::names::{is_valid_percent, name_is_dns_subdomain};
use super::pods::{pod_template_spec_errors, validate_pod_template_spec, workload_template_rules};
use super::{BadValue, FieldError, Path};
use crate::k8s::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec, StatefulSet,
    StatefulSetSpec,
};
use crate::k8s::api::core::v1::PodTemplateSpec;
use crate::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;
use crate::k8s::apimachinery::pkg::util::intstr::IntOrString;

const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

/// Validates a deployment: replicas, a non-empty selector that matches the template's
/// labels, the pod template, the strategy and the history and deadline settings.
pub fn validate_deployment(d: &Deployment) -> Vec<FieldError> {
    deployment_errors(d, true)
}

/// Validates a deployment update; the selector is immutable.
pub fn validate_deployment_update(new: &Deployment, old: &Deployment) -> Vec<FieldError> {
    deployment_update_errors(new, old, true)
}

/// Validates a replica set: replicas, a non-empty selector matching the template.
pub fn validate_replica_set(rs: &ReplicaSet) -> Vec<FieldError> {
    replica_set_errors(rs, true)
}

/// Validates a replica set update; the selector is immutable.
pub fn validate_replica_set_update(new: &ReplicaSet, old: &ReplicaSet) -> Vec<FieldError> {
    replica_set_update_errors(new, old, true)
}

/// Validates a stateful set: pod management policy, update strategy, replicas, a
/// selector matching the template, and the claim retention policy.
pub fn validate_stateful_set(sts: &StatefulSet) -> Vec<FieldError> {
    stateful_set_errors(sts, true)
}

/// Validates a stateful set update: only replicas, ordinals, template, update
/// strategy, revision history limit, claim retention policy and minReadySeconds may
/// change.
pub fn validate_stateful_set_update(new: &StatefulSet, old: &StatefulSet) -> Vec<FieldError> {
    stateful_set_update_errors(new, old, true)
}

/// Validates a daemon set: a non-empty selector matching the template, the update
/// strategy and the history settings.
pub fn validate_daemon_set(ds: &DaemonSet) -> Vec<FieldError> {
    daemon_set_errors(ds, true)
}

/// Validates a daemon set update; the selector is immutable.
pub fn validate_daemon_set_update(new: &DaemonSet, old: &DaemonSet) -> Vec<FieldError> {
    daemon_set_update_errors(new, old, true)
}

pub(crate) fn deployment_errors(d: &Deployment, selector_present: bool) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &d.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    errs.extend(deployment_spec_errors(d.spec.as_ref(), selector_present));
    errs
}

pub(crate) fn deployment_update_errors(
    new: &Deployment,
    old: &Deployment,
    selector_present: bool,
) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(deployment_spec_errors(new.spec.as_ref(), selector_present));
    errs.extend(selector_immutable(
        new.spec.as_ref().map(|s| &s.selector),
        old.spec.as_ref().map(|s| &s.selector),
    ));
    errs
}

pub(crate) fn replica_set_errors(rs: &ReplicaSet, selector_present: bool) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &rs.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    errs.extend(replica_set_spec_errors(rs.spec.as_ref(), selector_present));
    errs
}

pub(crate) fn replica_set_update_errors(
    new: &ReplicaSet,
    old: &ReplicaSet,
    selector_present: bool,
) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(replica_set_spec_errors(new.spec.as_ref(), selector_present));
    errs.extend(selector_immutable(
        new.spec.as_ref().map(|s| &s.selector),
        old.spec.as_ref().map(|s| &s.selector),
    ));
    errs
}

pub(crate) fn stateful_set_errors(sts: &StatefulSet, selector_present: bool) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &sts.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    errs.extend(stateful_set_spec_errors(
        sts.spec.as_ref(),
        selector_present,
    ));
    errs
}

pub(crate) fn stateful_set_update_errors(
    new: &StatefulSet,
    old: &StatefulSet,
    selector_present: bool,
) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(stateful_set_spec_errors(
        new.spec.as_ref(),
        selector_present,
    ));
    let default = StatefulSetSpec::default();
    let old_spec = old.spec.as_ref().unwrap_or(&default);
    let mut clone = new.spec.clone().unwrap_or_default();
    clone.replicas = old_spec.replicas;
    clone.ordinals.clone_from(&old_spec.ordinals);
    clone.template.clone_from(&old_spec.template);
    clone.update_strategy.clone_from(&old_spec.update_strategy);
    clone.revision_history_limit = old_spec.revision_history_limit;
    clone
        .persistent_volume_claim_retention_policy
        .clone_from(&old_spec.persistent_volume_claim_retention_policy);
    clone.min_ready_seconds = old_spec.min_ready_seconds;
    if &clone != old_spec {
        errs.push(FieldError::forbidden(
            &Path::new("spec"),
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
    errs
}

pub(crate) fn daemon_set_errors(ds: &DaemonSet, selector_present: bool) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &ds.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    errs.extend(daemon_set_spec_errors(ds.spec.as_ref(), selector_present));
    errs
}

pub(crate) fn daemon_set_update_errors(
    new: &DaemonSet,
    old: &DaemonSet,
    selector_present: bool,
) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(daemon_set_spec_errors(new.spec.as_ref(), selector_present));
    errs.extend(selector_immutable(
        new.spec.as_ref().map(|s| &s.selector),
        old.spec.as_ref().map(|s| &s.selector),
    ));
    errs
}

fn selector_immutable(
    new: Option<&LabelSelector>,
    old: Option<&LabelSelector>,
) -> Option<FieldError> {
    let default = LabelSelector::default();
    let new = new.unwrap_or(&default);
    let old = old.unwrap_or(&default);
    immutable(
        new,
        old,
        || BadValue::json(new),
        &Path::new("spec").child("selector"),
    )
}

/// The selector rules shared by the workload kinds: present, valid, non-empty, and
/// matching the template's labels.
fn selector_and_template_errors(
    selector: &LabelSelector,
    present: bool,
    template: &PodTemplateSpec,
    kind: &str,
    unconvertible_detail: Option<&str>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sel_path = path.child("selector");
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    let mismatch = || {
        FieldError::invalid(
            &path.child("template").child("metadata").child("labels"),
            BadValue::string_map(labels),
            SELECTOR_MISMATCH,
        )
    };
    if !present {
        // Upstream's nil selector matches nothing, so the template cannot match it either.
        errs.push(FieldError::required(&sel_path, ""));
        errs.push(mismatch());
        return errs;
    }
    errs.extend(validate_label_selector(selector, &sel_path));
    if selector_is_empty(selector) {
        errs.push(FieldError::invalid(
            &sel_path,
            BadValue::json(selector),
            format!("empty selector is invalid for {kind}"),
        ));
    }
    match selector_matches(selector, labels) {
        None => {
            if let Some(detail) = unconvertible_detail {
                errs.push(FieldError::invalid(
                    &sel_path,
                    BadValue::json(selector),
                    detail,
                ));
            }
        }
        Some(false) if !selector_is_empty(selector) => errs.push(mismatch()),
        Some(_) => {}
    }
    errs
}

fn deployment_spec_errors(
    spec: Option<&DeploymentSpec>,
    selector_present: bool,
) -> Vec<FieldError> {
    let default = DeploymentSpec::default();
    let spec = spec.unwrap_or(&default);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    errs.extend(nonnegative(
        spec.replicas.unwrap_or_default().into(),
        &path.child("replicas"),
    ));
    errs.extend(selector_and_template_errors(
        &spec.selector,
        selector_present,
        &spec.template,
        "deployment",
        Some("invalid label selector"),
        &path,
    ));
    let template_path = path.child("template");
    errs.extend(validate_pod_template_spec(&spec.template, &template_path));
    errs.extend(workload_template_rules(
        &spec.template,
        &template_path,
        "ReplicaSet",
    ));

    if let Some(strategy) = &spec.strategy {
        let sp = path.child("strategy");
        match strategy.type_.as_deref().unwrap_or_default() {
            "Recreate" => {
                if strategy.rolling_update.is_some() {
                    errs.push(FieldError::forbidden(
                        &sp.child("rollingUpdate"),
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            // Unset is defaulted to RollingUpdate.
            "RollingUpdate" | "" => {
                if let Some(ru) = &strategy.rolling_update {
                    let rp = sp.child("rollingUpdate");
                    let default_pct = IntOrString::String("25%".into());
                    let max_unavailable = ru.max_unavailable.as_ref().unwrap_or(&default_pct);
                    let max_surge = ru.max_surge.as_ref().unwrap_or(&default_pct);
                    errs.extend(positive_int_or_percent(
                        max_unavailable,
                        &rp.child("maxUnavailable"),
                    ));
                    errs.extend(positive_int_or_percent(max_surge, &rp.child("maxSurge")));
                    if int_or_percent_value(max_unavailable) == 0
                        && int_or_percent_value(max_surge) == 0
                    {
                        errs.push(FieldError::invalid(
                            &rp.child("maxUnavailable"),
                            max_unavailable,
                            "may not be 0 when `maxSurge` is 0",
                        ));
                    }
                    errs.extend(not_more_than_100_percent(
                        max_unavailable,
                        &rp.child("maxUnavailable"),
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                &sp.child("type"),
                other,
                &["Recreate", "RollingUpdate"],
            )),
        }
    }
    let min_ready = spec.min_ready_seconds.unwrap_or_default();
    errs.extend(nonnegative(
        min_ready.into(),
        &path.child("minReadySeconds"),
    ));
    if let Some(limit) = spec.revision_history_limit {
        errs.extend(nonnegative(
            limit.into(),
            &path.child("revisionHistoryLimit"),
        ));
    }
    if let Some(deadline) = spec.progress_deadline_seconds {
        let p = path.child("progressDeadlineSeconds");
        errs.extend(nonnegative(deadline.into(), &p));
        if deadline <= min_ready {
            errs.push(FieldError::invalid(
                &p,
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

fn replica_set_spec_errors(
    spec: Option<&ReplicaSetSpec>,
    selector_present: bool,
) -> Vec<FieldError> {
    let default = ReplicaSetSpec::default();
    let spec = spec.unwrap_or(&default);
    let default_template = PodTemplateSpec::default();
    let template = spec.template.as_ref().unwrap_or(&default_template);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    errs.extend(nonnegative(
        spec.replicas.unwrap_or_default().into(),
        &path.child("replicas"),
    ));
    errs.extend(nonnegative(
        spec.min_ready_seconds.unwrap_or_default().into(),
        &path.child("minReadySeconds"),
    ));
    // Upstream's message says "deployment" here too.
    errs.extend(selector_and_template_errors(
        &spec.selector,
        selector_present,
        template,
        "deployment",
        Some("invalid label selector"),
        &path,
    ));
    let template_path = path.child("template");
    errs.extend(validate_pod_template_spec(template, &template_path));
    errs.extend(workload_template_rules(
        template,
        &template_path,
        "ReplicaSet",
    ));
    errs
}

fn stateful_set_spec_errors(
    spec: Option<&StatefulSetSpec>,
    selector_present: bool,
) -> Vec<FieldError> {
    let default = StatefulSetSpec::default();
    let spec = spec.unwrap_or(&default);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    if let Some(policy) = spec
        .pod_management_policy
        .as_deref()
        .filter(|p| !p.is_empty())
        && !matches!(policy, "OrderedReady" | "Parallel")
    {
        errs.push(FieldError::invalid(
            &path.child("podManagementPolicy"),
            policy,
            "must be 'OrderedReady' or 'Parallel'",
        ));
    }
    if let Some(strategy) = &spec.update_strategy {
        let sp = path.child("updateStrategy");
        match strategy.type_.as_deref().unwrap_or_default() {
            "OnDelete" => {
                if let Some(ru) = &strategy.rolling_update {
                    errs.push(FieldError::invalid(
                        &sp.child("rollingUpdate"),
                        BadValue::json(ru),
                        "only allowed for updateStrategy 'RollingUpdate'",
                    ));
                }
            }
            "RollingUpdate" | "" => {
                if let Some(ru) = &strategy.rolling_update {
                    let rp = sp.child("rollingUpdate");
                    if let Some(partition) = ru.partition {
                        errs.extend(nonnegative(partition.into(), &rp.child("partition")));
                    }
                    if let Some(max_unavailable) = &ru.max_unavailable {
                        let mp = rp.child("maxUnavailable");
                        errs.extend(positive_int_or_percent(max_unavailable, &mp));
                        if int_or_percent_value(max_unavailable) == 0 {
                            errs.push(FieldError::invalid(&mp, max_unavailable, "cannot be 0"));
                        } else {
                            errs.extend(not_more_than_100_percent(max_unavailable, &mp));
                        }
                    }
                }
            }
            _ => errs.push(FieldError::invalid(
                &sp,
                BadValue::json(strategy),
                "must be 'RollingUpdate' or 'OnDelete'",
            )),
        }
    }
    if let Some(limit) = spec.revision_history_limit {
        errs.extend(nonnegative(
            limit.into(),
            &path.child("revisionHistoryLimit"),
        ));
    }
    errs.extend(nonnegative(
        spec.replicas.unwrap_or_default().into(),
        &path.child("replicas"),
    ));
    errs.extend(nonnegative(
        spec.min_ready_seconds.unwrap_or_default().into(),
        &path.child("minReadySeconds"),
    ));
    if let Some(start) = spec.ordinals.as_ref().and_then(|o| o.start) {
        errs.extend(nonnegative(start.into(), &path.child("ordinals.start")));
    }
    errs.extend(selector_and_template_errors(
        &spec.selector,
        selector_present,
        &spec.template,
        "statefulset",
        Some(""),
        &path,
    ));
    // Volume mounts may name the claim templates as well as the pod's volumes.
    let claims: Vec<String> = spec
        .volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    let template_path = path.child("template");
    errs.extend(pod_template_spec_errors(
        &spec.template,
        &template_path,
        &claims,
    ));
    errs.extend(workload_template_rules(
        &spec.template,
        &template_path,
        "StatefulSet",
    ));
    if let Some(policy) = &spec.persistent_volume_claim_retention_policy {
        let pp = path.child("persistentVolumeClaimRetentionPolicy");
        for (value, field) in [
            (&policy.when_deleted, "whenDeleted"),
            (&policy.when_scaled, "whenScaled"),
        ] {
            if let Some(v) = value
                .as_deref()
                .filter(|v| !matches!(*v, "Retain" | "Delete" | ""))
            {
                errs.push(FieldError::not_supported(
                    &pp.child(field),
                    v,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    errs
}

fn daemon_set_spec_errors(spec: Option<&DaemonSetSpec>, selector_present: bool) -> Vec<FieldError> {
    let default = DaemonSetSpec::default();
    let spec = spec.unwrap_or(&default);
    let path = Path::new("spec");
    let mut errs = selector_and_template_errors(
        &spec.selector,
        selector_present,
        &spec.template,
        "daemonset",
        None,
        &path,
    );
    let template_path = path.child("template");
    errs.extend(validate_pod_template_spec(&spec.template, &template_path));
    errs.extend(workload_template_rules(
        &spec.template,
        &template_path,
        "DaemonSet",
    ));
    errs.extend(nonnegative(
        spec.min_ready_seconds.unwrap_or_default().into(),
        &path.child("minReadySeconds"),
    ));
    if let Some(strategy) = &spec.update_strategy {
        let sp = path.child("updateStrategy");
        match strategy.type_.as_deref().unwrap_or_default() {
            "OnDelete" => {}
            "RollingUpdate" | "" => {
                if let Some(ru) = &strategy.rolling_update {
                    let rp = sp.child("rollingUpdate");
                    let one = IntOrString::Int(1);
                    let zero = IntOrString::Int(0);
                    let max_unavailable = ru.max_unavailable.as_ref().unwrap_or(&one);
                    let max_surge = ru.max_surge.as_ref().unwrap_or(&zero);
                    errs.extend(positive_int_or_percent(
                        max_unavailable,
                        &rp.child("maxUnavailable"),
                    ));
                    errs.extend(positive_int_or_percent(max_surge, &rp.child("maxSurge")));
                    errs.extend(not_more_than_100_percent(
                        max_unavailable,
                        &rp.child("maxUnavailable"),
                    ));
                    errs.extend(not_more_than_100_percent(max_surge, &rp.child("maxSurge")));
                    let has_unavailable = int_or_percent_value(max_unavailable) != 0;
                    let has_surge = int_or_percent_value(max_surge) != 0;
                    if has_unavailable && has_surge {
                        errs.push(FieldError::invalid(
                            &rp.child("maxSurge"),
                            max_surge,
                            "may not be set when maxUnavailable is non-zero",
                        ));
                    } else if !has_unavailable && !has_surge {
                        errs.push(FieldError::required(
                            &rp.child("maxUnavailable"),
                            "cannot be 0 when maxSurge is 0",
                        ));
                    }
                }
            }
            other => errs.push(FieldError::not_supported(
                &sp.child("type"),
                other,
                &["RollingUpdate", "OnDelete"],
            )),
        }
    }
    if let Some(limit) = spec.revision_history_limit {
        errs.extend(nonnegative(
            limit.into(),
            &path.child("revisionHistoryLimit"),
        ));
    }
    errs
}

/// Upstream's `ValidatePositiveIntOrPercent`: a non-negative integer or `N%`.
fn positive_int_or_percent(v: &IntOrString, path: &Path) -> Vec<FieldError> {
    match v {
        IntOrString::Int(i) => nonnegative((*i).into(), path),
        IntOrString::String(s) => is_valid_percent(s)
            .into_iter()
            .map(|msg| FieldError::invalid(path, v, msg))
            .collect(),
    }
}

/// The number in `N%`, if `v` is a percentage.
fn percent_value(v: &IntOrString) -> Option<i64> {
    match v {
        IntOrString::String(s) if is_valid_percent(s).is_empty() => {
            s.trim_end_matches('%').parse().ok()
        }
        _ => None,
    }
}

/// Upstream's `getIntOrPercentValue`: the percentage's number or the integer (a
/// string that is neither counts as its integer value, or 0).
fn int_or_percent_value(v: &IntOrString) -> i64 {
    if let Some(p) = percent_value(v) {
        return p;
    }
    match v {
        IntOrString::Int(i) => (*i).into(),
        IntOrString::String(s) => s.parse().unwrap_or(0),
    }
}

fn not_more_than_100_percent(v: &IntOrString, path: &Path) -> Option<FieldError> {
    percent_value(v)
        .filter(|&p| p > 100)
        .map(|_| FieldError::invalid(path, v, "must not be greater than 100%"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn deployment(spec: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn good_spec() -> Value {
        json!({
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
        })
    }

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_well_formed_deployment_is_valid() {
        assert_eq!(
            messages(validate_deployment(&deployment(good_spec()))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_selector_must_match_the_template_labels() {
        let mut spec = good_spec();
        spec["template"]["metadata"]["labels"] = json!({"app": "api"});
        assert_eq!(
            messages(validate_deployment(&deployment(spec))),
            vec![
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"api"}: `selector` does not match template `labels`"#
            ]
        );
    }

    #[test]
    fn the_selector_is_required_and_may_not_be_empty() {
        let mut spec = good_spec();
        spec["selector"] = json!({});
        assert_eq!(
            messages(validate_deployment(&deployment(spec.clone()))),
            vec!["spec.selector: Invalid value: {}: empty selector is invalid for deployment"]
        );
        assert_eq!(
            messages(deployment_errors(&deployment(spec), false)),
            vec![
                "spec.selector: Required value",
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`"#,
            ]
        );
    }

    #[test]
    fn replicas_and_history_may_not_be_negative() {
        let mut spec = good_spec();
        spec["replicas"] = json!(-1);
        spec["revisionHistoryLimit"] = json!(-2);
        spec["minReadySeconds"] = json!(10);
        spec["progressDeadlineSeconds"] = json!(5);
        assert_eq!(
            messages(validate_deployment(&deployment(spec))),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0",
                "spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds",
            ]
        );
    }

    #[test]
    fn the_strategy_is_checked() {
        let mut spec = good_spec();
        spec["strategy"] = json!({"type": "Canary"});
        assert_eq!(
            messages(validate_deployment(&deployment(spec.clone()))),
            vec![
                r#"spec.strategy.type: Unsupported value: "Canary": supported values: "Recreate", "RollingUpdate""#
            ]
        );
        spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        assert_eq!(
            messages(validate_deployment(&deployment(spec.clone()))),
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0"
            ]
        );
        spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x", "maxUnavailable": "150%"}});
        assert_eq!(
            messages(validate_deployment(&deployment(spec.clone()))),
            vec![
                "spec.strategy.rollingUpdate.maxSurge: Invalid value: x: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 150%: must not be greater than 100%",
            ]
        );
        spec["strategy"] = json!({"type": "Recreate", "rollingUpdate": {}});
        assert_eq!(
            messages(validate_deployment(&deployment(spec))),
            vec![
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
            ]
        );
    }

    #[test]
    fn templates_must_restart_always_and_be_valid_pods() {
        let mut spec = good_spec();
        spec["template"]["spec"] =
            json!({"restartPolicy": "OnFailure", "containers": [{"name": "web"}]});
        assert_eq!(
            messages(validate_deployment(&deployment(spec))),
            vec![
                "spec.template.spec.containers[0].image: Required value",
                r#"spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always""#,
            ]
        );
    }

    #[test]
    fn the_deployment_selector_is_immutable() {
        let old = deployment(good_spec());
        let mut spec = good_spec();
        spec["selector"] = json!({"matchLabels": {"app": "web", "tier": "x"}});
        spec["template"]["metadata"]["labels"] = json!({"app": "web", "tier": "x"});
        let new = deployment(spec);
        assert_eq!(
            messages(validate_deployment_update(&new, &old)),
            vec![
                r#"spec.selector: Invalid value: {"matchLabels":{"app":"web","tier":"x"}}: field is immutable"#
            ]
        );
        let mut scaled = old.clone();
        scaled.spec.as_mut().unwrap().replicas = Some(5);
        assert!(validate_deployment_update(&scaled, &old).is_empty());
    }

    #[test]
    fn replica_sets_share_the_template_rules() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "rs", "namespace": "d"},
            "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]},
                     "template": {"metadata": {"labels": {"app": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}],
                                           "activeDeadlineSeconds": 5}}}
        }))
        .unwrap();
        assert_eq!(
            messages(validate_replica_set(&rs)),
            vec![
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"b"}: `selector` does not match template `labels`"#,
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
            ]
        );
    }

    fn stateful_set(extra: Value) -> StatefulSet {
        let mut spec = good_spec();
        spec["serviceName"] = json!("web");
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "d"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn stateful_sets_check_policies_and_strategies() {
        assert!(validate_stateful_set(&stateful_set(json!({}))).is_empty());
        let sts = stateful_set(json!({
            "podManagementPolicy": "Random",
            "updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Keep"},
        }));
        assert_eq!(
            messages(validate_stateful_set(&sts)),
            vec![
                r#"spec.podManagementPolicy: Invalid value: "Random": must be 'OrderedReady' or 'Parallel'"#,
                r#"spec.updateStrategy.rollingUpdate: Invalid value: {"partition":1}: only allowed for updateStrategy 'RollingUpdate'"#,
                r#"spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: "Keep": supported values: "Delete", "Retain""#,
            ]
        );
        let sts = stateful_set(
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": -1}}}),
        );
        assert_eq!(
            messages(validate_stateful_set(&sts)),
            vec![
                "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
    }

    #[test]
    fn stateful_set_mounts_may_name_claim_templates() {
        let sts = stateful_set(json!({
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "db", "image": "pg",
                                  "volumeMounts": [{"name": "data", "mountPath": "/var/lib/pg"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
        }));
        assert!(validate_stateful_set(&sts).is_empty());
    }

    #[test]
    fn stateful_set_updates_may_only_touch_some_fields() {
        let old = stateful_set(json!({}));
        let mut new = old.clone();
        new.spec.as_mut().unwrap().replicas = Some(7);
        assert!(validate_stateful_set_update(&new, &old).is_empty());
        new.spec.as_mut().unwrap().service_name = Some("other".into());
        assert_eq!(
            messages(validate_stateful_set_update(&new, &old)),
            vec![
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
            ]
        );
    }

    fn daemon_set(strategy: Value) -> DaemonSet {
        let mut spec = good_spec();
        spec.as_object_mut().unwrap().remove("replicas");
        spec["updateStrategy"] = strategy;
        serde_json::from_value(json!({"metadata": {"name": "ds", "namespace": "d"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn daemon_set_rolling_updates_need_exactly_one_of_surge_and_unavailable() {
        assert!(
            validate_daemon_set(&daemon_set(json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})))
            .is_empty()
        );
        assert_eq!(
            messages(validate_daemon_set(&daemon_set(
                json!({"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})
            ))),
            vec![
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
            ]
        );
        assert_eq!(
            messages(validate_daemon_set(&daemon_set(
                json!({"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "10%"}})
            ))),
            vec![
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 10%: may not be set when maxUnavailable is non-zero"
            ]
        );
        assert_eq!(
            messages(validate_daemon_set(&daemon_set(
                json!({"type": "Sometimes"})
            ))),
            vec![
                r#"spec.updateStrategy.type: Unsupported value: "Sometimes": supported values: "OnDelete", "RollingUpdate""#
            ]
        );
    }

    #[test]
    fn the_daemon_set_selector_is_immutable() {
        let old = daemon_set(json!({"type": "OnDelete"}));
        let mut new = old.clone();
        new.spec.as_mut().unwrap().selector = LabelSelector::default();
        let errs = messages(validate_daemon_set_update(&new, &old));
        assert!(
            errs.contains(&"spec.selector: Invalid value: {}: field is immutable".to_owned()),
            "{errs:?}"
        );
    }
}
