//! Pods, pod specs, pod templates and replication controllers.

use std::collections::{BTreeMap, BTreeSet};

use super::meta::{
    dns1123_label_errors, label_name_errors, nonnegative, object_meta_errors,
    object_meta_update_errors, qualified_name_errors, validate_annotations, validate_labels,
};
use super::names::{
    inclusive_range_error, is_config_map_key, is_dns1123_subdomain, is_http_header_name,
    is_qualified_name, is_relaxed_env_var_name, is_valid_ip, is_valid_label_value,
    is_valid_port_name, is_valid_port_num, name_is_dns_subdomain,
};
use super::{BadValue, FieldError, Path};
use crate::k8s::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, EphemeralContainer, HTTPGetAction, Lifecycle,
    LifecycleHandler, Pod, PodSpec, PodTemplate, PodTemplateSpec, Probe, ReplicationController,
    ResourceRequirements, Toleration, Volume, VolumeDevice, VolumeMount,
};
use crate::k8s::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use crate::k8s::apimachinery::pkg::util::intstr::IntOrString;
use crate::quantity::Quantity;

const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MAX_INT32: i64 = i32::MAX as i64;
const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

/// Validates a pod on create: metadata (namespaced, DNS-1123 subdomain name) and spec.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &pod.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    errs.extend(pod_body_errors(pod));
    let spec_path = Path::new("spec");
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            &spec_path.child("ephemeralContainers"),
            "cannot be set on create",
        ));
    }
    errs
}

/// Validates a pod update. Besides the metadata rules, only container images,
/// `activeDeadlineSeconds` (lowered, or set), added tolerations and a negative
/// `terminationGracePeriodSeconds` turned into 1 may change, as upstream.
pub fn validate_pod_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(pod_body_errors(new));
    let default_spec = PodSpec::default();
    let new_spec = new.spec.as_ref().unwrap_or(&default_spec);
    let old_spec = old.spec.as_ref().unwrap_or(&default_spec);
    let spec_path = Path::new("spec");

    for (new_list, old_list, name) in [
        (
            Some(&new_spec.containers),
            Some(&old_spec.containers),
            "containers",
        ),
        (
            new_spec.init_containers.as_ref(),
            old_spec.init_containers.as_ref(),
            "initContainers",
        ),
    ] {
        let new_list = new_list.map(Vec::as_slice).unwrap_or_default();
        let old_list = old_list.map(Vec::as_slice).unwrap_or_default();
        let path = spec_path.child(name);
        if new_list.len() != old_list.len() {
            errs.push(FieldError::forbidden(
                &path,
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
        for (i, c) in new_list.iter().enumerate() {
            let image = c.image.as_deref().unwrap_or_default();
            if image.is_empty() {
                errs.push(FieldError::required(&path.index(i).child("image"), ""));
            }
        }
    }

    let deadline_path = spec_path.child("activeDeadlineSeconds");
    match (
        new_spec.active_deadline_seconds,
        old_spec.active_deadline_seconds,
    ) {
        (Some(new_deadline), old_deadline) => {
            if !(0..=MAX_INT32).contains(&new_deadline) {
                errs.push(FieldError::invalid(
                    &deadline_path,
                    new_deadline,
                    inclusive_range_error(0, MAX_INT32),
                ));
                return errs;
            }
            if old_deadline.is_some_and(|old| old < new_deadline) {
                errs.push(FieldError::invalid(
                    &deadline_path,
                    new_deadline,
                    "must be less than or equal to previous value",
                ));
                return errs;
            }
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            &deadline_path,
            BadValue::raw("null"),
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }

    errs.extend(only_added_tolerations(
        new_spec.tolerations.as_deref().unwrap_or_default(),
        old_spec.tolerations.as_deref().unwrap_or_default(),
        &spec_path.child("tolerations"),
    ));

    if new_spec == old_spec {
        return errs;
    }
    let mut munged = new_spec.clone();
    for (c, old_c) in munged.containers.iter_mut().zip(&old_spec.containers) {
        c.image.clone_from(&old_c.image);
    }
    if let (Some(init), Some(old_init)) = (&mut munged.init_containers, &old_spec.init_containers) {
        for (c, old_c) in init.iter_mut().zip(old_init) {
            c.image.clone_from(&old_c.image);
        }
    }
    munged.active_deadline_seconds = old_spec.active_deadline_seconds;
    munged
        .scheduling_gates
        .clone_from(&old_spec.scheduling_gates);
    munged.tolerations.clone_from(&old_spec.tolerations);
    if old_spec
        .termination_grace_period_seconds
        .is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
    }
    if &munged != old_spec {
        let diff = json_diff(old_spec, &munged, "spec");
        errs.push(FieldError::forbidden(
            &spec_path,
            format!("pod updates may not change fields other than {POD_UPDATABLE_FIELDS}\n{diff}"),
        ));
    }
    errs
}

/// Validates a pod spec found at `path` (`spec`, `spec.template.spec`, ...).
pub fn validate_pod_spec(spec: &PodSpec, path: &Path) -> Vec<FieldError> {
    pod_spec_errors(spec, path, false, &[])
}

/// Validates a pod template (the `template` of a workload) at `path`: its labels,
/// annotations and spec; ephemeral containers are not allowed.
pub fn validate_pod_template_spec(template: &PodTemplateSpec, path: &Path) -> Vec<FieldError> {
    pod_template_spec_errors(template, path, &[])
}

/// [`validate_pod_template_spec`], where volume mounts may also name `extra_volumes`
/// (a stateful set's claim templates).
pub(crate) fn pod_template_spec_errors(
    template: &PodTemplateSpec,
    path: &Path,
    extra_volumes: &[String],
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = template.metadata.as_ref();
    let meta_path = path.child("metadata");
    errs.extend(validate_labels(
        meta.and_then(|m| m.labels.as_ref()),
        &meta_path.child("labels"),
    ));
    errs.extend(validate_annotations(
        meta.and_then(|m| m.annotations.as_ref()),
        &meta_path.child("annotations"),
    ));
    let default_spec = PodSpec::default();
    let spec = template.spec.as_ref().unwrap_or(&default_spec);
    errs.extend(pod_spec_errors(
        spec,
        &path.child("spec"),
        false,
        extra_volumes,
    ));
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// Validates a `PodTemplate` object.
pub fn validate_pod_template(template: &PodTemplate) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &template.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    errs.extend(pod_template_body(template));
    errs
}

/// Validates a `PodTemplate` update.
pub fn validate_pod_template_update(new: &PodTemplate, old: &PodTemplate) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(pod_template_body(new));
    errs
}

fn pod_template_body(template: &PodTemplate) -> Vec<FieldError> {
    let default = PodTemplateSpec::default();
    validate_pod_template_spec(
        template.template.as_ref().unwrap_or(&default),
        &Path::new("template"),
    )
}

/// Validates a replication controller: replicas, a non-empty selector matching the
/// template's labels, and a template whose pods restart `Always`.
pub fn validate_replication_controller(rc: &ReplicationController) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &rc.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    errs.extend(replication_controller_spec_errors(rc));
    errs
}

/// Validates a replication controller update.
pub fn validate_replication_controller_update(
    new: &ReplicationController,
    old: &ReplicationController,
) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    errs.extend(replication_controller_spec_errors(new));
    errs
}

fn replication_controller_spec_errors(rc: &ReplicationController) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = Path::new("spec");
    let default = Default::default();
    let spec = rc.spec.as_ref().unwrap_or(&default);
    errs.extend(nonnegative(
        spec.min_ready_seconds.unwrap_or_default().into(),
        &path.child("minReadySeconds"),
    ));
    errs.extend(nonnegative(
        spec.replicas.unwrap_or_default().into(),
        &path.child("replicas"),
    ));
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty());
    if selector.is_none() {
        errs.push(FieldError::required(&path.child("selector"), ""));
    } else {
        errs.extend(validate_labels(selector, &path.child("selector")));
    }
    let template_path = path.child("template");
    match &spec.template {
        None => errs.push(FieldError::required(&template_path, "")),
        Some(template) => {
            let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
            if let Some(selector) = selector {
                let empty = BTreeMap::new();
                let labels_or_empty = labels.unwrap_or(&empty);
                if !selector
                    .iter()
                    .all(|(k, v)| labels_or_empty.get(k) == Some(v))
                {
                    errs.push(FieldError::invalid(
                        &template_path.child("metadata").child("labels"),
                        BadValue::string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            errs.extend(validate_pod_template_spec(template, &template_path));
            errs.extend(workload_template_rules(
                template,
                &template_path,
                "ReplicationController",
            ));
        }
    }
    errs
}

/// The rules every controller that keeps pods running applies to its template: the
/// pods restart `Always` and have no deadline.
pub(crate) fn workload_template_rules(
    template: &PodTemplateSpec,
    path: &Path,
    kind: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = template.spec.as_ref();
    let restart = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or_default();
    if !restart.is_empty() && restart != "Always" {
        errs.push(FieldError::not_supported(
            &path.child("spec").child("restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if spec.and_then(|s| s.active_deadline_seconds).is_some() {
        errs.push(FieldError::forbidden(
            &path.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
    errs
}

/// Metadata-independent pod checks shared by create and update.
fn pod_body_errors(pod: &Pod) -> Vec<FieldError> {
    let default = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default);
    let spec_path = Path::new("spec");
    let mut errs = pod_spec_errors(spec, &spec_path, true, &[]);
    for (i, c) in spec.containers.iter().enumerate() {
        errs.extend(image_whitespace(
            c.image.as_deref(),
            &spec_path.child("containers").index(i),
        ));
    }
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        errs.extend(image_whitespace(
            c.image.as_deref(),
            &spec_path.child("initContainers").index(i),
        ));
    }
    errs
}

fn image_whitespace(image: Option<&str>, path: &Path) -> Option<FieldError> {
    let image = image.unwrap_or_default();
    (image.trim() != image).then(|| {
        FieldError::invalid(
            &path.child("image"),
            image,
            "must not have leading or trailing whitespace",
        )
    })
}

fn pod_spec_errors(
    spec: &PodSpec,
    path: &Path,
    is_pod: bool,
    extra_volumes: &[String],
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let grace = spec.termination_grace_period_seconds;
    if let Some(grace) = grace {
        errs.extend(nonnegative(
            grace,
            &path.child("terminationGracePeriodSeconds"),
        ));
    }

    let (mut volumes, volume_errs) = volumes_errors(
        spec.volumes.as_deref().unwrap_or_default(),
        &path.child("volumes"),
    );
    errs.extend(volume_errs);
    volumes.extend(extra_volumes.iter().cloned());

    // Regular containers.
    let containers_path = path.child("containers");
    if spec.containers.is_empty() {
        errs.push(FieldError::required(&containers_path, ""));
    }
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let p = containers_path.index(i);
        errs.extend(container_common_errors(c, &volumes, &p));
        if !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(&p.child("name"), &c.name));
        }
        if let Some(lifecycle) = &c.lifecycle {
            errs.extend(lifecycle_errors(lifecycle, grace, &p.child("lifecycle")));
        }
        errs.extend(probes_errors(c, &p));
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                &p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs.extend(host_port_conflicts(
        spec.containers.iter().enumerate(),
        &containers_path,
    ));

    // Init containers: names unique across regular and init containers.
    let init_path = path.child("initContainers");
    let mut all_names: BTreeSet<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let p = init_path.index(i);
        errs.extend(container_common_errors(c, &volumes, &p));
        let mut restart_always = false;
        if let Some(policy) = &c.restart_policy {
            if policy == "Always" {
                restart_always = true;
            } else {
                errs.push(FieldError::not_supported(
                    &p.child("restartPolicy"),
                    policy,
                    &["Always"],
                ));
            }
        }
        if all_names.contains(c.name.as_str()) {
            errs.push(FieldError::duplicate(&p.child("name"), &c.name));
        } else if !c.name.is_empty() {
            all_names.insert(&c.name);
        }
        errs.extend(host_port_conflicts(std::iter::once((i, c)), &init_path));
        if restart_always {
            if let Some(lifecycle) = &c.lifecycle {
                errs.extend(lifecycle_errors(lifecycle, grace, &p.child("lifecycle")));
            }
            errs.extend(probes_errors(c, &p));
        } else {
            for (set, name) in [
                (c.lifecycle.is_some(), "lifecycle"),
                (c.liveness_probe.is_some(), "livenessProbe"),
                (c.readiness_probe.is_some(), "readinessProbe"),
                (c.startup_probe.is_some(), "startupProbe"),
            ] {
                if set {
                    errs.push(FieldError::forbidden(
                        &p.child(name),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }

    // Ephemeral containers: names unique across all containers, targets must exist.
    let ephemeral_path = path.child("ephemeralContainers");
    let others = all_names.clone();
    for (i, ec) in spec.ephemeral_containers.iter().flatten().enumerate() {
        let p = ephemeral_path.index(i);
        let c = ephemeral_as_container(ec);
        errs.extend(container_common_errors(&c, &volumes, &p));
        errs.extend(image_whitespace(c.image.as_deref(), &p));
        if all_names.contains(ec.name.as_str()) {
            errs.push(FieldError::duplicate(&p.child("name"), &ec.name));
        } else {
            all_names.insert(&ec.name);
        }
        if let Some(target) = ec
            .target_container_name
            .as_deref()
            .filter(|t| !t.is_empty())
            && !others.contains(target)
        {
            errs.push(FieldError::not_found(
                &p.child("targetContainerName"),
                target,
            ));
        }
        let resources_set = ec
            .resources
            .as_ref()
            .is_some_and(|r| r.limits.is_some() || r.requests.is_some() || r.claims.is_some());
        for (set, name) in [
            (ec.lifecycle.is_some(), "lifecycle"),
            (ec.liveness_probe.is_some(), "livenessProbe"),
            (ec.ports.as_ref().is_some_and(|p| !p.is_empty()), "ports"),
            (ec.readiness_probe.is_some(), "readinessProbe"),
            (resources_set, "resources"),
            (
                ec.resize_policy.as_ref().is_some_and(|r| !r.is_empty()),
                "resizePolicy",
            ),
            (ec.restart_policy.is_some(), "restartPolicy"),
            (ec.startup_probe.is_some(), "startupProbe"),
        ] {
            if set {
                errs.push(FieldError::forbidden(
                    &p.child(name),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, mount) in ec.volume_mounts.iter().flatten().enumerate() {
            let mp = p.child("volumeMounts").index(j);
            if mount.sub_path.as_deref().is_some_and(|s| !s.is_empty()) {
                errs.push(FieldError::forbidden(
                    &mp.child("subPath"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
            if mount
                .sub_path_expr
                .as_deref()
                .is_some_and(|s| !s.is_empty())
            {
                errs.push(FieldError::forbidden(
                    &mp.child("subPathExpr"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
    }

    // Host network: host ports must equal container ports.
    if spec.host_network == Some(true) {
        for (i, c) in spec.containers.iter().enumerate() {
            for (j, port) in c.ports.iter().flatten().enumerate() {
                let host_port = port.host_port.unwrap_or_default();
                if (is_pod || host_port != 0) && host_port != port.container_port {
                    errs.push(FieldError::invalid(
                        &containers_path
                            .index(i)
                            .child("ports")
                            .index(j)
                            .child("hostPort"),
                        host_port,
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }

    if let Some(policy) = spec.restart_policy.as_deref().filter(|p| !p.is_empty())
        && !matches!(policy, "Always" | "OnFailure" | "Never")
    {
        errs.push(FieldError::not_supported(
            &path.child("restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    let dns_policy = spec.dns_policy.as_deref().unwrap_or_default();
    if !dns_policy.is_empty()
        && !matches!(
            dns_policy,
            "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
        )
    {
        errs.push(FieldError::not_supported(
            &path.child("dnsPolicy"),
            dns_policy,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ));
    }
    errs.extend(validate_labels(
        spec.node_selector.as_ref(),
        &path.child("nodeSelector"),
    ));
    errs.extend(dns_config_errors(
        spec,
        dns_policy,
        &path.child("dnsConfig"),
    ));

    for (i, gate) in spec.readiness_gates.iter().flatten().enumerate() {
        errs.extend(qualified_name_errors(
            &gate.condition_type,
            &path.child("readinessGates").index(i).child("conditionType"),
        ));
    }
    let mut gates = BTreeSet::new();
    for (i, gate) in spec.scheduling_gates.iter().flatten().enumerate() {
        let p = path.child("schedulingGates").index(i);
        errs.extend(qualified_name_errors(&gate.name, &p));
        if !gates.insert(gate.name.as_str()) {
            errs.push(FieldError::duplicate(&p, &gate.name));
        }
    }
    for (field, value) in [
        ("serviceAccountName", spec.service_account_name.as_deref()),
        ("nodeName", spec.node_name.as_deref()),
        ("priorityClassName", spec.priority_class_name.as_deref()),
    ] {
        let value = value.unwrap_or_default();
        if !value.is_empty() {
            for msg in is_dns1123_subdomain(value) {
                errs.push(FieldError::invalid(&path.child(field), value, msg));
            }
        }
    }
    if let Some(deadline) = spec.active_deadline_seconds
        && !(1..=MAX_INT32).contains(&deadline)
    {
        errs.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            deadline,
            inclusive_range_error(1, MAX_INT32),
        ));
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            errs.extend(dns1123_label_errors(value, &path.child(field)));
        }
    }
    errs.extend(tolerations_errors(
        spec.tolerations.as_deref().unwrap_or_default(),
        &path.child("tolerations"),
    ));
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        let p = path.child("hostAliases").index(i);
        for msg in is_valid_ip(&alias.ip) {
            errs.push(FieldError::invalid(&p.child("ip"), &alias.ip, msg));
        }
        for (j, host) in alias.hostnames.iter().flatten().enumerate() {
            for msg in is_dns1123_subdomain(host) {
                errs.push(FieldError::invalid(
                    &p.child("hostnames").index(j),
                    host,
                    msg,
                ));
            }
        }
    }
    if let Some(policy) = spec.preemption_policy.as_deref()
        && !matches!(policy, "PreemptLowerPriority" | "Never")
    {
        errs.push(FieldError::not_supported(
            &path.child("preemptionPolicy"),
            policy,
            &["PreemptLowerPriority", "Never"],
        ));
    }
    errs
}

fn dns_config_errors(spec: &PodSpec, dns_policy: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if dns_policy == "None" {
        match &spec.dns_config {
            None => {
                errs.push(FieldError::required(
                    path,
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                ));
                return errs;
            }
            Some(c) if c.nameservers.as_ref().is_none_or(Vec::is_empty) => {
                errs.push(FieldError::required(
                    &path.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return errs;
            }
            Some(_) => {}
        }
    }
    if let Some(config) = &spec.dns_config {
        let nameservers = config.nameservers.as_deref().unwrap_or_default();
        if nameservers.len() > 3 {
            errs.push(FieldError::invalid(
                &path.child("nameservers"),
                BadValue::string_list(nameservers),
                "must not have more than 3 nameservers",
            ));
        }
        for (i, ns) in nameservers.iter().enumerate() {
            for msg in is_valid_ip(ns) {
                errs.push(FieldError::invalid(
                    &path.child("nameservers").index(i),
                    ns,
                    msg,
                ));
            }
        }
        let searches = config.searches.as_deref().unwrap_or_default();
        if searches.len() > 32 {
            errs.push(FieldError::invalid(
                &path.child("searches"),
                BadValue::string_list(searches),
                "must not have more than 32 search paths",
            ));
        }
        for (i, option) in config.options.iter().flatten().enumerate() {
            if option.name.as_deref().unwrap_or_default().is_empty() {
                errs.push(FieldError::required(
                    &path.child("options").index(i),
                    "must not be empty",
                ));
            }
        }
    }
    errs
}

fn ephemeral_as_container(ec: &EphemeralContainer) -> Container {
    Container {
        args: ec.args.clone(),
        command: ec.command.clone(),
        env: ec.env.clone(),
        env_from: ec.env_from.clone(),
        image: ec.image.clone(),
        image_pull_policy: ec.image_pull_policy.clone(),
        name: ec.name.clone(),
        termination_message_path: ec.termination_message_path.clone(),
        termination_message_policy: ec.termination_message_policy.clone(),
        volume_devices: ec.volume_devices.clone(),
        volume_mounts: ec.volume_mounts.clone(),
        working_dir: ec.working_dir.clone(),
        ..Default::default()
    }
}

/// Checks shared by regular, init and ephemeral containers.
fn container_common_errors(
    c: &Container,
    volumes: &BTreeSet<String>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name_path = path.child("name");
    if c.name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else {
        errs.extend(dns1123_label_errors(&c.name, &name_path));
    }
    if c.image.as_deref().unwrap_or_default().is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    }
    if let Some(policy) = c
        .termination_message_policy
        .as_deref()
        .filter(|p| !p.is_empty())
        && !matches!(policy, "File" | "FallbackToLogsOnError")
    {
        errs.push(FieldError::not_supported(
            &path.child("terminationMessagePolicy"),
            policy,
            &["File", "FallbackToLogsOnError"],
        ));
    }
    errs.extend(container_ports_errors(
        c.ports.as_deref().unwrap_or_default(),
        &path.child("ports"),
    ));
    errs.extend(env_errors(
        c.env.as_deref().unwrap_or_default(),
        &path.child("env"),
    ));
    errs.extend(env_from_errors(
        c.env_from.as_deref().unwrap_or_default(),
        &path.child("envFrom"),
    ));
    let devices = c.volume_devices.as_deref().unwrap_or_default();
    errs.extend(volume_mounts_errors(
        c.volume_mounts.as_deref().unwrap_or_default(),
        devices,
        volumes,
        &path.child("volumeMounts"),
    ));
    errs.extend(volume_devices_errors(
        devices,
        volumes,
        &path.child("volumeDevices"),
    ));
    if let Some(policy) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty())
        && !matches!(policy, "Always" | "IfNotPresent" | "Never")
    {
        errs.push(FieldError::not_supported(
            &path.child("imagePullPolicy"),
            policy,
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    if let Some(resources) = &c.resources {
        errs.extend(resource_requirements_errors(
            resources,
            &path.child("resources"),
        ));
    }
    errs
}

fn container_ports_errors(ports: &[ContainerPort], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(FieldError::invalid(&p.child("name"), name, msg));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(&p.child("containerPort"), ""));
        } else {
            for msg in is_valid_port_num(port.container_port.into()) {
                errs.push(FieldError::invalid(
                    &p.child("containerPort"),
                    port.container_port,
                    msg,
                ));
            }
        }
        if let Some(host_port) = port.host_port.filter(|&h| h != 0) {
            for msg in is_valid_port_num(host_port.into()) {
                errs.push(FieldError::invalid(&p.child("hostPort"), host_port, msg));
            }
        }
        errs.extend(protocol_errors(
            port.protocol.as_deref(),
            &p.child("protocol"),
        ));
    }
    errs
}

/// Upstream's `ValidateProtocol`, tolerating an unset protocol (defaulted to TCP).
pub(crate) fn protocol_errors(protocol: Option<&str>, path: &Path) -> Option<FieldError> {
    let protocol = protocol.unwrap_or_default();
    (!protocol.is_empty() && !matches!(protocol, "TCP" | "UDP" | "SCTP"))
        .then(|| FieldError::not_supported(path, protocol, &["TCP", "UDP", "SCTP"]))
}

/// Upstream's `AccumulateUniqueHostPorts`: a host port (per protocol and host IP) is
/// used once.
fn host_port_conflicts<'a>(
    containers: impl Iterator<Item = (usize, &'a Container)>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, c) in containers {
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let Some(host_port) = port.host_port.filter(|&h| h != 0) else {
                continue;
            };
            let key = format!(
                "{}/{}/{}",
                port.protocol.as_deref().unwrap_or("TCP"),
                port.host_ip.as_deref().unwrap_or_default(),
                host_port
            );
            if seen.contains(&key) {
                errs.push(FieldError::duplicate(
                    &path.index(i).child("ports").index(j).child("hostPort"),
                    key,
                ));
            } else {
                seen.insert(key);
            }
        }
    }
    errs
}

fn env_errors(vars: &[EnvVar], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, ev) in vars.iter().enumerate() {
        let p = path.index(i);
        if ev.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else {
            for msg in is_relaxed_env_var_name(&ev.name) {
                errs.push(FieldError::invalid(&p.child("name"), &ev.name, msg));
            }
        }
        let Some(from) = &ev.value_from else { continue };
        let from_path = p.child("valueFrom");
        let mut sources = 0;
        if let Some(field_ref) = &from.field_ref {
            sources += 1;
            let fp = from_path.child("fieldRef");
            if field_ref.api_version.as_deref().is_some_and(str::is_empty) {
                errs.push(FieldError::required(&fp.child("apiVersion"), ""));
            } else if field_ref.field_path.is_empty() {
                errs.push(FieldError::required(&fp.child("fieldPath"), ""));
            } else {
                errs.extend(env_field_path_errors(&field_ref.field_path, &fp));
            }
        }
        if let Some(resource_ref) = &from.resource_field_ref {
            sources += 1;
            if resource_ref.resource.is_empty() {
                errs.push(FieldError::required(
                    &from_path.child("resourceFieldRef").child("resource"),
                    "",
                ));
            }
        }
        for (present, key, name, field) in [
            (
                from.config_map_key_ref.is_some(),
                from.config_map_key_ref.as_ref().map(|r| r.key.as_str()),
                from.config_map_key_ref.as_ref().map(|r| r.name.as_str()),
                "configMapKeyRef",
            ),
            (
                from.secret_key_ref.is_some(),
                from.secret_key_ref.as_ref().map(|r| r.key.as_str()),
                from.secret_key_ref.as_ref().map(|r| r.name.as_str()),
                "secretKeyRef",
            ),
        ] {
            if !present {
                continue;
            }
            sources += 1;
            let rp = from_path.child(field);
            let key = key.unwrap_or_default();
            if name.unwrap_or_default().is_empty() {
                errs.push(FieldError::required(&rp.child("name"), ""));
            }
            if key.is_empty() {
                errs.push(FieldError::required(&rp.child("key"), ""));
            } else {
                for msg in is_config_map_key(key) {
                    errs.push(FieldError::invalid(&rp.child("key"), key, msg));
                }
            }
        }
        if sources == 0 {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !ev.value.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

/// The downward-API fields an environment variable may read.
fn env_field_path_errors(field_path: &str, path: &Path) -> Vec<FieldError> {
    const VALID: [&str; 9] = [
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    ];
    if let Some((base, rest)) = field_path.split_once('[') {
        let subscript = rest
            .strip_suffix(']')
            .and_then(|s| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
        return match (base, subscript) {
            ("metadata.annotations", Some(key)) => qualified_name_errors(&key.to_lowercase(), path),
            ("metadata.labels", Some(key)) => qualified_name_errors(key, path),
            _ => vec![FieldError::invalid(
                path,
                base,
                "does not support subscript",
            )],
        };
    }
    if VALID.contains(&field_path) {
        Vec::new()
    } else {
        vec![FieldError::not_supported(
            &path.child("fieldPath"),
            field_path,
            &VALID,
        )]
    }
}

fn env_from_errors(sources: &[EnvFromSource], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let p = path.index(i);
        if let Some(prefix) = source.prefix.as_deref().filter(|s| !s.is_empty()) {
            for msg in is_relaxed_env_var_name(prefix) {
                errs.push(FieldError::invalid(&p.child("prefix"), prefix, msg));
            }
        }
        let mut count = 0;
        for (name, field) in [
            (
                source.config_map_ref.as_ref().map(|r| r.name.as_str()),
                "configMapRef",
            ),
            (
                source.secret_ref.as_ref().map(|r| r.name.as_str()),
                "secretRef",
            ),
        ] {
            let Some(name) = name else { continue };
            count += 1;
            let np = p.child(field).child("name");
            if name.is_empty() {
                errs.push(FieldError::required(&np, ""));
            } else {
                for msg in name_is_dns_subdomain(name, true) {
                    errs.push(FieldError::invalid(&np, name, msg));
                }
            }
        }
        if count == 0 {
            errs.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if count > 1 {
            errs.push(FieldError::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

/// The volume sources a volume sets, in upstream's checking order.
fn volume_sources(v: &Volume) -> Vec<&'static str> {
    [
        (v.host_path.is_some(), "hostPath"),
        (v.empty_dir.is_some(), "emptyDir"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.secret.is_some(), "secret"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephfs"),
        (v.flocker.is_some(), "flocker"),
        (v.persistent_volume_claim.is_some(), "persistentVolumeClaim"),
        (v.rbd.is_some(), "rbd"),
        (v.quobyte.is_some(), "quobyte"),
        (v.downward_api.is_some(), "downwardAPI"),
        (v.fc.is_some(), "fc"),
        (v.azure_file.is_some(), "azureFile"),
        (v.config_map.is_some(), "configMap"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.projected.is_some(), "projected"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
        (v.csi.is_some(), "csi"),
        (v.ephemeral.is_some(), "ephemeral"),
        (v.image.is_some(), "image"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect()
}

/// Validates the volumes; returns the names of the valid ones (which mounts may use).
fn volumes_errors(volumes: &[Volume], path: &Path) -> (BTreeSet<String>, Vec<FieldError>) {
    let mut names = BTreeSet::new();
    let mut errs = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = path.index(i);
        let mut el = volume_source_errors(v, &p);
        let name_path = p.child("name");
        if v.name.is_empty() {
            el.push(FieldError::required(&name_path, ""));
        } else {
            el.extend(dns1123_label_errors(&v.name, &name_path));
        }
        if names.contains(&v.name) {
            el.push(FieldError::duplicate(&name_path, &v.name));
        }
        if el.is_empty() {
            names.insert(v.name.clone());
        } else {
            errs.extend(el);
        }
    }
    (names, errs)
}

fn volume_source_errors(v: &Volume, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sources = volume_sources(v);
    if sources.is_empty() {
        errs.push(FieldError::required(path, "must specify a volume type"));
    }
    for extra in sources.iter().skip(1) {
        errs.push(FieldError::forbidden(
            &path.child(extra),
            "may not specify more than 1 volume type",
        ));
    }
    if let Some(host_path) = &v.host_path {
        let p = path.child("hostPath");
        if host_path.path.is_empty() {
            errs.push(FieldError::required(&p.child("path"), ""));
        } else if host_path.path.split('/').any(|part| part == "..") {
            errs.push(FieldError::invalid(
                &p.child("path"),
                &host_path.path,
                "must not contain '..'",
            ));
        }
        const TYPES: [&str; 8] = [
            "",
            "DirectoryOrCreate",
            "Directory",
            "FileOrCreate",
            "File",
            "Socket",
            "CharDevice",
            "BlockDevice",
        ];
        if let Some(t) = host_path.type_.as_deref().filter(|t| !TYPES.contains(t)) {
            errs.push(FieldError::not_supported(&p.child("type"), t, &TYPES));
        }
    }
    if let Some(secret) = &v.secret {
        let p = path.child("secret");
        if secret.secret_name.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(&p.child("secretName"), ""));
        }
        errs.extend(file_mode(secret.default_mode, &p.child("defaultMode")));
        for (j, item) in secret.items.iter().flatten().enumerate() {
            errs.extend(key_to_path_errors(
                &item.key,
                &item.path,
                item.mode,
                &p.child("items").index(j),
            ));
        }
    }
    if let Some(config_map) = &v.config_map {
        let p = path.child("configMap");
        if config_map.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        }
        errs.extend(file_mode(config_map.default_mode, &p.child("defaultMode")));
        for (j, item) in config_map.items.iter().flatten().enumerate() {
            errs.extend(key_to_path_errors(
                &item.key,
                &item.path,
                item.mode,
                &p.child("items").index(j),
            ));
        }
    }
    if let Some(claim) = &v.persistent_volume_claim
        && claim.claim_name.is_empty()
    {
        errs.push(FieldError::required(
            &path.child("persistentVolumeClaim").child("claimName"),
            "",
        ));
    }
    if let Some(empty_dir) = &v.empty_dir
        && let Some(limit) = &empty_dir.size_limit
        && parse_quantity(limit).is_ok_and(|q| q.is_negative())
    {
        errs.push(FieldError::forbidden(
            &path.child("emptyDir").child("sizeLimit"),
            "SizeLimit field must be a valid resource quantity",
        ));
    }
    if let Some(nfs) = &v.nfs {
        let p = path.child("nfs");
        if nfs.server.is_empty() {
            errs.push(FieldError::required(&p.child("server"), ""));
        }
        if nfs.path.is_empty() {
            errs.push(FieldError::required(&p.child("path"), ""));
        } else if !nfs.path.starts_with('/') {
            errs.push(FieldError::invalid(
                &p.child("path"),
                &nfs.path,
                "must be an absolute path",
            ));
        }
    }
    if let Some(projected) = &v.projected {
        errs.extend(file_mode(
            projected.default_mode,
            &path.child("projected").child("defaultMode"),
        ));
    }
    if let Some(downward) = &v.downward_api {
        errs.extend(file_mode(
            downward.default_mode,
            &path.child("downwardAPI").child("defaultMode"),
        ));
    }
    errs
}

fn file_mode(mode: Option<i32>, path: &Path) -> Option<FieldError> {
    mode.filter(|m| !(0..=0o777).contains(m))
        .map(|m| FieldError::invalid(path, m, FILE_MODE_ERROR))
}

fn key_to_path_errors(key: &str, rel: &str, mode: Option<i32>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if key.is_empty() {
        errs.push(FieldError::required(&path.child("key"), ""));
    }
    if rel.is_empty() {
        errs.push(FieldError::required(&path.child("path"), ""));
    }
    errs.extend(local_descending_path(rel, &path.child("path")));
    errs.extend(file_mode(mode, &path.child("mode")));
    errs
}

/// A relative path without `..` (upstream's `validateLocalDescendingPath`).
fn local_descending_path(target: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if target.starts_with('/') {
        errs.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    if target.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(path, target, "must not contain '..'"));
    }
    errs
}

fn volume_mounts_errors(
    mounts: &[VolumeMount],
    devices: &[VolumeDevice],
    volumes: &BTreeSet<String>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut mount_points = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = path.index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        }
        if !volumes.contains(&m.name) {
            errs.push(FieldError::not_found(&p.child("name"), &m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(&p.child("mountPath"), ""));
        }
        if !mount_points.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                &p.child("mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
        if devices.iter().any(|d| d.name == m.name) {
            errs.push(FieldError::invalid(
                &p.child("name"),
                &m.name,
                "must not already exist in volumeDevices",
            ));
        }
        if devices.iter().any(|d| d.device_path == m.mount_path) {
            errs.push(FieldError::invalid(
                &p.child("mountPath"),
                &m.mount_path,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub_path = m.sub_path.as_deref().unwrap_or_default();
        if !sub_path.is_empty() {
            // Upstream reports these against the list, not the item.
            errs.extend(local_descending_path(sub_path, &path.child("subPath")));
        }
        if let Some(expr) = m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid(
                    &p.child("subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(local_descending_path(expr, &path.child("subPathExpr")));
        }
        if let Some(propagation) = &m.mount_propagation
            && !matches!(
                propagation.as_str(),
                "None" | "HostToContainer" | "Bidirectional"
            )
        {
            errs.push(FieldError::not_supported(
                &path.child("mountPropagation"),
                propagation,
                &["Bidirectional", "HostToContainer", "None"],
            ));
        }
    }
    errs
}

fn volume_devices_errors(
    devices: &[VolumeDevice],
    volumes: &BTreeSet<String>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    let mut paths = BTreeSet::new();
    for (i, d) in devices.iter().enumerate() {
        let p = path.index(i);
        if d.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        }
        if !names.insert(d.name.as_str()) {
            errs.push(FieldError::invalid(
                &p.child("name"),
                &d.name,
                "must be unique",
            ));
        }
        if !volumes.contains(&d.name) {
            errs.push(FieldError::not_found(&p.child("name"), &d.name));
        }
        if d.device_path.is_empty() {
            errs.push(FieldError::required(&p.child("devicePath"), ""));
        }
        if !paths.insert(d.device_path.as_str()) {
            errs.push(FieldError::invalid(
                &p.child("devicePath"),
                &d.device_path,
                "must be unique",
            ));
        }
    }
    errs
}

fn probes_errors(c: &Container, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (probe, kind, name) in [
        (&c.liveness_probe, ProbeKind::Liveness, "livenessProbe"),
        (&c.readiness_probe, ProbeKind::Readiness, "readinessProbe"),
        (&c.startup_probe, ProbeKind::Startup, "startupProbe"),
    ] {
        if let Some(probe) = probe {
            errs.extend(probe_errors(probe, kind, &path.child(name)));
        }
    }
    errs
}

fn probe_errors(probe: &Probe, kind: ProbeKind, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut handlers = HandlerCount::default();
    if let Some(exec) = &probe.exec
        && handlers.first(&mut errs, path, "exec")
        && exec.command.as_ref().is_none_or(Vec::is_empty)
    {
        errs.push(FieldError::required(
            &path.child("exec").child("command"),
            "",
        ));
    }
    if let Some(http) = &probe.http_get
        && handlers.first(&mut errs, path, "httpGet")
    {
        errs.extend(http_get_errors(http, &path.child("httpGet")));
    }
    if let Some(tcp) = &probe.tcp_socket
        && handlers.first(&mut errs, path, "tcpSocket")
    {
        errs.extend(port_num_or_name_errors(
            &tcp.port,
            &path.child("tcpSocket").child("port"),
        ));
    }
    if let Some(grpc) = &probe.grpc
        && handlers.first(&mut errs, path, "grpc")
    {
        for msg in is_valid_port_num(grpc.port.into()) {
            errs.push(FieldError::invalid(
                &path.child("grpc").child("port"),
                grpc.port,
                msg,
            ));
        }
    }
    handlers.finish(&mut errs, path);
    for (value, field) in [
        (probe.initial_delay_seconds, "initialDelaySeconds"),
        (probe.timeout_seconds, "timeoutSeconds"),
        (probe.period_seconds, "periodSeconds"),
        (probe.success_threshold, "successThreshold"),
        (probe.failure_threshold, "failureThreshold"),
    ] {
        errs.extend(nonnegative(
            value.unwrap_or_default().into(),
            &path.child(field),
        ));
    }
    if let Some(g) = probe.termination_grace_period_seconds.filter(|&g| g <= 0) {
        errs.push(FieldError::invalid(
            &path.child("terminationGracePeriodSeconds"),
            g,
            "must be greater than 0",
        ));
    }
    match kind {
        ProbeKind::Liveness | ProbeKind::Startup => {
            // 0 (or unset) is defaulted to 1.
            if let Some(t) = probe.success_threshold.filter(|&t| t != 0 && t != 1) {
                errs.push(FieldError::invalid(
                    &path.child("successThreshold"),
                    t,
                    "must be 1",
                ));
            }
        }
        ProbeKind::Readiness => {
            if let Some(g) = probe.termination_grace_period_seconds {
                errs.push(FieldError::invalid(
                    &path.child("terminationGracePeriodSeconds"),
                    g,
                    "must not be set for readinessProbes",
                ));
            }
        }
    }
    errs
}

/// Counts the handlers of a probe or lifecycle hook: exactly one may be set.
#[derive(Default)]
struct HandlerCount(usize);

impl HandlerCount {
    /// Records a set handler; true when it is the first (and so gets validated), else
    /// reports it as one too many.
    fn first(&mut self, errs: &mut Vec<FieldError>, path: &Path, name: &str) -> bool {
        self.0 += 1;
        if self.0 > 1 {
            errs.push(FieldError::forbidden(
                &path.child(name),
                "may not specify more than 1 handler type",
            ));
        }
        self.0 == 1
    }

    fn finish(self, errs: &mut Vec<FieldError>, path: &Path) {
        if self.0 == 0 {
            errs.push(FieldError::required(path, "must specify a handler type"));
        }
    }
}

fn lifecycle_errors(lifecycle: &Lifecycle, grace: Option<i64>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (handler, name) in [
        (&lifecycle.post_start, "postStart"),
        (&lifecycle.pre_stop, "preStop"),
    ] {
        if let Some(handler) = handler {
            errs.extend(lifecycle_handler_errors(handler, grace, &path.child(name)));
        }
    }
    errs
}

fn lifecycle_handler_errors(
    h: &LifecycleHandler,
    grace: Option<i64>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut handlers = HandlerCount::default();
    if let Some(exec) = &h.exec
        && handlers.first(&mut errs, path, "exec")
        && exec.command.as_ref().is_none_or(Vec::is_empty)
    {
        errs.push(FieldError::required(
            &path.child("exec").child("command"),
            "",
        ));
    }
    if let Some(http) = &h.http_get
        && handlers.first(&mut errs, path, "httpGet")
    {
        errs.extend(http_get_errors(http, &path.child("httpGet")));
    }
    if let Some(tcp) = &h.tcp_socket
        && handlers.first(&mut errs, path, "tcpSocket")
    {
        errs.extend(port_num_or_name_errors(
            &tcp.port,
            &path.child("tcpSocket").child("port"),
        ));
    }
    if let Some(sleep) = &h.sleep
        && handlers.first(&mut errs, path, "sleep")
        && let Some(grace) = grace.filter(|&g| sleep.seconds < 0 || sleep.seconds > g)
    {
        errs.push(FieldError::invalid(
            &path.child("sleep"),
            sleep.seconds,
            format!("must be non-negative and less than terminationGracePeriodSeconds ({grace})"),
        ));
    }
    handlers.finish(&mut errs, path);
    errs
}

fn http_get_errors(http: &HTTPGetAction, path: &Path) -> Vec<FieldError> {
    let mut errs = port_num_or_name_errors(&http.port, &path.child("port"));
    if let Some(scheme) = http.scheme.as_deref().filter(|s| !s.is_empty())
        && !matches!(scheme, "HTTP" | "HTTPS")
    {
        errs.push(FieldError::not_supported(
            &path.child("scheme"),
            scheme,
            &["HTTP", "HTTPS"],
        ));
    }
    for header in http.http_headers.iter().flatten() {
        for msg in is_http_header_name(&header.name) {
            errs.push(FieldError::invalid(
                &path.child("httpHeaders"),
                &header.name,
                msg,
            ));
        }
    }
    errs
}

/// Upstream's `ValidatePortNumOrName`.
pub(crate) fn port_num_or_name_errors(port: &IntOrString, path: &Path) -> Vec<FieldError> {
    match port {
        IntOrString::Int(n) => is_valid_port_num((*n).into())
            .into_iter()
            .map(|msg| FieldError::invalid(path, *n, msg))
            .collect(),
        IntOrString::String(s) => is_valid_port_name(s)
            .into_iter()
            .map(|msg| FieldError::invalid(path, s, msg))
            .collect(),
    }
}

pub(crate) fn tolerations_errors(tolerations: &[Toleration], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = t.key.as_deref().unwrap_or_default();
        let operator = t.operator.as_deref().unwrap_or_default();
        let effect = t.effect.as_deref().unwrap_or_default();
        let value = t.value.as_deref().unwrap_or_default();
        if !key.is_empty() {
            errs.extend(label_name_errors(key, &p.child("key")));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                &p.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                &p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        &p.child("operator"),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        &p.child("operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                &p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() {
            errs.extend(taint_effect_errors(effect, &p.child("effect")));
        }
    }
    errs
}

pub(crate) fn taint_effect_errors(effect: &str, path: &Path) -> Option<FieldError> {
    (!matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")).then(|| {
        FieldError::not_supported(
            path,
            effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        )
    })
}

fn only_added_tolerations(new: &[Toleration], old: &[Toleration], path: &Path) -> Vec<FieldError> {
    for o in old {
        let found = new.iter().any(|n| {
            let mut o = o.clone();
            o.toleration_seconds = n.toleration_seconds;
            &o == n
        });
        if !found {
            return vec![FieldError::forbidden(
                path,
                "existing toleration can not be modified except its tolerationSeconds",
            )];
        }
    }
    Vec::new()
}

/// Reads a `k8s-openapi` quantity with [`crate::quantity`].
pub(crate) fn parse_quantity(q: &K8sQuantity) -> Result<Quantity, crate::quantity::QuantityError> {
    Quantity::from_k8s(q)
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn is_standard_resource(name: &str) -> bool {
    const STANDARD: [&str; 22] = [
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "storage",
        "requests.storage",
        "services.nodeports",
        "services.loadbalancers",
        "count/pods",
        "count/services",
    ];
    STANDARD.contains(&name)
        || is_hugepages(name)
        || name.starts_with("requests.hugepages-")
        || name.starts_with("limits.hugepages-")
}

fn container_resource_name_errors(name: &str, path: &Path) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = is_qualified_name(name)
        .into_iter()
        .map(|msg| FieldError::invalid(path, name, msg))
        .collect();
    if !errs.is_empty() {
        return errs;
    }
    if !name.contains('/') {
        if !is_standard_resource(name) {
            errs.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource type or fully qualified",
            ));
        }
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_hugepages(name) {
            errs.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(FieldError::invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
    errs
}

/// Resource names and quantities, and each request at most its limit (equal to it for
/// resources that cannot be overcommitted: extended resources and huge pages).
fn resource_requirements_errors(r: &ResourceRequirements, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let empty = BTreeMap::new();
    let limits = r.limits.as_ref().unwrap_or(&empty);
    let requests = r.requests.as_ref().unwrap_or(&empty);
    let mut parsed_limits = BTreeMap::new();
    let cpu_or_memory = |name: &str| matches!(name, "cpu" | "memory");
    let mut has_cpu_or_memory = false;
    let mut has_hugepages = false;
    for (name, q) in limits {
        let p = lim_path.key(name);
        errs.extend(container_resource_name_errors(name, &p));
        has_cpu_or_memory |= cpu_or_memory(name);
        has_hugepages |= is_hugepages(name);
        if let Some(q) = quantity_value_errors(name, q, &p, &mut errs) {
            parsed_limits.insert(name.as_str(), q);
        }
    }
    for (name, q) in requests {
        let p = req_path.key(name);
        errs.extend(container_resource_name_errors(name, &p));
        has_cpu_or_memory |= cpu_or_memory(name);
        has_hugepages |= is_hugepages(name);
        let Some(request) = quantity_value_errors(name, q, &p, &mut errs) else {
            continue;
        };
        let overcommit = is_native_resource(name) && !is_hugepages(name);
        match parsed_limits.get(name.as_str()) {
            Some(limit) => {
                if request != *limit && !overcommit {
                    errs.push(FieldError::invalid(
                        &req_path,
                        request.to_string(),
                        format!("must be equal to {name} limit of {limit}"),
                    ));
                } else if request > *limit {
                    errs.push(FieldError::invalid(
                        &req_path,
                        request.to_string(),
                        format!("must be less than or equal to {name} limit of {limit}"),
                    ));
                }
            }
            None if !overcommit && !limits.contains_key(name) => errs.push(FieldError::required(
                &lim_path,
                "Limit must be set for non overcommitable resources",
            )),
            None => {}
        }
    }
    if has_hugepages && !has_cpu_or_memory {
        errs.push(FieldError::forbidden(
            path,
            "HugePages require cpu or memory",
        ));
    }
    errs
}

/// Parses a resource quantity, reporting an unparseable, negative or (for integer
/// resources) fractional one. Returns the quantity when it parsed.
fn quantity_value_errors(
    name: &str,
    q: &K8sQuantity,
    path: &Path,
    errs: &mut Vec<FieldError>,
) -> Option<Quantity> {
    match parse_quantity(q) {
        Err(e) => {
            errs.push(FieldError::invalid(path, &q.0, e.to_string()));
            None
        }
        Ok(value) => {
            if value.is_negative() {
                errs.push(FieldError::invalid(
                    path,
                    value.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
            if is_extended_resource(name) && value.milli_value() % 1000 != 0 {
                errs.push(FieldError::invalid(
                    path,
                    value.to_string(),
                    "must be an integer",
                ));
            }
            Some(value)
        }
    }
}

/// A short description of how two values differ, one changed field per line, in the
/// spirit of upstream's `cmp.Diff` in the pod-update message.
pub(crate) fn json_diff<T: serde::Serialize>(old: &T, new: &T, root: &str) -> String {
    fn walk(old: &serde_json::Value, new: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        use serde_json::Value;
        if out.len() >= 20 || old == new {
            return;
        }
        match (old, new) {
            (Value::Object(a), Value::Object(b)) => {
                let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    let null = Value::Null;
                    walk(
                        a.get(k).unwrap_or(&null),
                        b.get(k).unwrap_or(&null),
                        &format!("{path}.{k}"),
                        out,
                    );
                }
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(x, y, &format!("{path}[{i}]"), out);
                }
            }
            _ => {
                if !old.is_null() {
                    out.push(format!("- {path}: {old}"));
                }
                if !new.is_null() {
                    out.push(format!("+ {path}: {new}"));
                }
            }
        }
    }
    let (Ok(old), Ok(new)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return String::new();
    };
    let mut lines = Vec::new();
    walk(&old, &new, root, &mut lines);
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::api::core::v1::{
        ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource,
    };
    use crate::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn errors_of(pod: &Pod) -> Vec<String> {
        validate_pod(pod).iter().map(ToString::to_string).collect()
    }

    fn one_container(extra: serde_json::Value) -> serde_json::Value {
        let mut c = json!({"name": "app", "image": "nginx:1.27"});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                c.insert(k.clone(), v.clone());
            }
        }
        json!({"containers": [c]})
    }

    #[test]
    fn a_minimal_pod_is_valid() {
        assert_eq!(
            errors_of(&pod(one_container(json!({})))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_pod_needs_containers_with_images() {
        assert_eq!(
            errors_of(&pod(json!({"containers": []}))),
            vec!["spec.containers: Required value"]
        );
        assert_eq!(
            errors_of(&pod(json!({"containers": [{"name": "app"}]}))),
            vec!["spec.containers[0].image: Required value"]
        );
        assert_eq!(
            errors_of(&pod(
                json!({"containers": [{"name": "app", "image": " nginx"}]})
            )),
            vec![
                r#"spec.containers[0].image: Invalid value: " nginx": must not have leading or trailing whitespace"#
            ]
        );
    }

    #[test]
    fn container_names_are_unique_dns_labels_across_init_and_regular_containers() {
        let errs = errors_of(&pod(json!({
            "containers": [{"name": "app", "image": "a"}, {"name": "app", "image": "b"}],
            "initContainers": [{"name": "app", "image": "c"}, {"name": "Init", "image": "d"}],
        })));
        assert_eq!(
            errs,
            vec![
                r#"spec.containers[1].name: Duplicate value: "app""#,
                r#"spec.initContainers[0].name: Duplicate value: "app""#,
                r#"spec.initContainers[1].name: Invalid value: "Init": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
            ]
        );
    }

    #[test]
    fn container_ports_are_checked() {
        let errs = errors_of(&pod(one_container(json!({"ports": [
            {"containerPort": 0},
            {"containerPort": 70000, "protocol": "ICMP"},
            {"containerPort": 80, "name": "a-very-long-port-name"},
            {"containerPort": 81, "name": "http"},
            {"containerPort": 82, "name": "http"},
        ]}))));
        assert_eq!(
            errs,
            vec![
                "spec.containers[0].ports[0].containerPort: Required value",
                "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                r#"spec.containers[0].ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#,
                r#"spec.containers[0].ports[2].name: Invalid value: "a-very-long-port-name": must be no more than 15 characters"#,
                r#"spec.containers[0].ports[4].name: Duplicate value: "http""#,
            ]
        );
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let errs = errors_of(&pod(one_container(json!({"resources": {
            "limits": {"cpu": "1", "memory": "1Gi"},
            "requests": {"cpu": "1500m", "memory": "512Mi"},
        }}))));
        assert_eq!(
            errs,
            vec![
                r#"spec.containers[0].resources.requests: Invalid value: "1500m": must be less than or equal to cpu limit of 1"#
            ]
        );
    }

    #[test]
    fn resource_quantities_must_parse_and_be_non_negative() {
        let errs = errors_of(&pod(one_container(json!({"resources": {
            "requests": {"cpu": "-1", "memory": "lots"},
        }}))));
        assert_eq!(
            errs,
            vec![
                r#"spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0"#,
                r#"spec.containers[0].resources.requests[memory]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#,
            ]
        );
    }

    #[test]
    fn resource_names_must_be_standard_or_extended() {
        let errs = errors_of(&pod(one_container(json!({"resources": {
            "limits": {"gpu": "1", "example.com/gpu": "1"},
            "requests": {"example.com/gpu": "500m"},
        }}))));
        assert_eq!(
            errs,
            vec![
                r#"spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard resource type or fully qualified"#,
                r#"spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard resource for containers"#,
                r#"spec.containers[0].resources.requests[example.com/gpu]: Invalid value: "500m": must be an integer"#,
                r#"spec.containers[0].resources.requests: Invalid value: "500m": must be equal to example.com/gpu limit of 1"#,
            ]
        );
    }

    #[test]
    fn pod_level_enumerations_are_checked() {
        let mut spec = one_container(json!({"imagePullPolicy": "Sometimes"}));
        spec["restartPolicy"] = json!("Sometimes");
        spec["dnsPolicy"] = json!("Google");
        assert_eq!(
            errors_of(&pod(spec)),
            vec![
                r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#,
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#,
                r#"spec.dnsPolicy: Unsupported value: "Google": supported values: "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None""#,
            ]
        );
    }

    #[test]
    fn volumes_are_unique_and_have_exactly_one_source() {
        let p = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("d".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("x".into()),
                    volume_mounts: Some(vec![
                        VolumeMount {
                            name: "data".into(),
                            mount_path: "/data".into(),
                            ..Default::default()
                        },
                        VolumeMount {
                            name: "missing".into(),
                            mount_path: "/m".into(),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }],
                volumes: Some(vec![
                    Volume {
                        name: "data".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    },
                    Volume {
                        name: "data".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    },
                    Volume {
                        name: "none".into(),
                        ..Default::default()
                    },
                    Volume {
                        name: "two".into(),
                        host_path: Some(HostPathVolumeSource {
                            path: "/x".into(),
                            ..Default::default()
                        }),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "cm".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            errors_of(&p),
            vec![
                r#"spec.volumes[1].name: Duplicate value: "data""#,
                "spec.volumes[2]: Required value: must specify a volume type",
                "spec.volumes[3].configMap: Forbidden: may not specify more than 1 volume type",
                r#"spec.containers[0].volumeMounts[1].name: Not found: "missing""#,
            ]
        );
    }

    #[test]
    fn environment_variables_are_checked() {
        let errs = errors_of(&pod(one_container(json!({"env": [
            {"name": ""},
            {"name": "A=B"},
            {"name": "OK", "valueFrom": {}},
            {"name": "REF", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "BADPATH", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}},
            {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        ]}))));
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert_eq!(errs[0], "spec.containers[0].env[0].name: Required value");
        assert_eq!(
            errs[1],
            r#"spec.containers[0].env[1].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#
        );
        assert_eq!(
            errs[2],
            r#"spec.containers[0].env[2].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"#
        );
        assert_eq!(
            errs[3],
            r#"spec.containers[0].env[3].valueFrom: Invalid value: "": may not be specified when `value` is not empty"#
        );
        assert!(errs[4].starts_with(r#"spec.containers[0].env[4].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.nope""#));
    }

    #[test]
    fn probes_need_one_handler_and_sane_numbers() {
        let errs = errors_of(&pod(one_container(json!({
            "livenessProbe": {"successThreshold": 2, "failureThreshold": -1,
                              "httpGet": {"port": 0}, "tcpSocket": {"port": "http"}},
            "readinessProbe": {"terminationGracePeriodSeconds": 5, "exec": {"command": ["true"]}},
            "startupProbe": {},
        }))));
        assert_eq!(
            errs,
            vec![
                "spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
                "spec.containers[0].livenessProbe.failureThreshold: Invalid value: -1: must be greater than or equal to 0",
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: Invalid value: 5: must not be set for readinessProbes",
                "spec.containers[0].startupProbe: Required value: must specify a handler type",
            ]
        );
    }

    #[test]
    fn init_containers_without_restart_always_may_not_have_probes() {
        let errs = errors_of(&pod(json!({
            "containers": [{"name": "app", "image": "x"}],
            "initContainers": [
                {"name": "init", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}}},
                {"name": "sidecar", "image": "x", "restartPolicy": "Always",
                 "readinessProbe": {"exec": {"command": ["true"]}}},
            ],
        })));
        assert_eq!(
            errs,
            vec![
                "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always"
            ]
        );
    }

    #[test]
    fn pod_fields_with_formats_and_ranges() {
        let mut spec = one_container(json!({}));
        spec["terminationGracePeriodSeconds"] = json!(-1);
        spec["activeDeadlineSeconds"] = json!(0);
        spec["nodeSelector"] = json!({"disk": "ssd!"});
        spec["serviceAccountName"] = json!("Bad_SA");
        spec["hostname"] = json!("a.b");
        assert_eq!(
            errors_of(&pod(spec)),
            vec![
                "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0",
                r#"spec.nodeSelector: Invalid value: "ssd!": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#,
                r#"spec.serviceAccountName: Invalid value: "Bad_SA": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
                r#"spec.hostname: Invalid value: "a.b": must not contain dots"#,
            ]
        );
    }

    #[test]
    fn tolerations_use_known_operators_and_effects() {
        let mut spec = one_container(json!({}));
        spec["tolerations"] = json!([
            {"operator": "Exists"},
            {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
            {"key": "k", "operator": "Maybe"},
            {"key": "k", "operator": "Exists", "value": "v"},
            {"operator": "Equal", "value": "v"},
            {"key": "k", "effect": "Sometimes"},
            {"key": "k", "tolerationSeconds": 5, "effect": "NoSchedule"},
        ]);
        assert_eq!(
            errors_of(&pod(spec)),
            vec![
                r#"spec.tolerations[2].operator: Unsupported value: "Maybe": supported values: "Equal", "Exists""#,
                r#"spec.tolerations[3].operator: Invalid value: "v": value must be empty when `operator` is 'Exists'"#,
                r#"spec.tolerations[4].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which means "match all values and all keys""#,
                r#"spec.tolerations[5].effect: Unsupported value: "Sometimes": supported values: "NoExecute", "NoSchedule", "PreferNoSchedule""#,
                r#"spec.tolerations[6].effect: Invalid value: "NoSchedule": effect must be 'NoExecute' when `tolerationSeconds` is set"#,
            ]
        );
    }

    #[test]
    fn host_ports_may_be_used_once() {
        let errs = errors_of(&pod(json!({"containers": [
            {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]},
            {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 8080}]},
        ]})));
        assert_eq!(
            errs,
            vec![r#"spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080""#]
        );
    }

    #[test]
    fn ephemeral_containers_cannot_be_set_on_create() {
        let mut spec = one_container(json!({}));
        spec["ephemeralContainers"] =
            json!([{"name": "debug", "image": "busybox", "targetContainerName": "nope"}]);
        assert_eq!(
            errors_of(&pod(spec)),
            vec![
                r#"spec.ephemeralContainers[0].targetContainerName: Not found: "nope""#,
                "spec.ephemeralContainers: Forbidden: cannot be set on create",
            ]
        );
    }

    fn stored_pod() -> Pod {
        let mut p = pod(json!({
            "containers": [{"name": "app", "image": "nginx:1.26"}],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}],
            "activeDeadlineSeconds": 100,
        }));
        p.metadata.uid = Some("u1".into());
        p
    }

    #[test]
    fn pod_updates_may_change_images_deadlines_and_add_tolerations() {
        let old = stored_pod();
        let mut new = old.clone();
        let spec = new.spec.as_mut().unwrap();
        spec.containers[0].image = Some("nginx:1.27".into());
        spec.active_deadline_seconds = Some(50);
        spec.tolerations.as_mut().unwrap()[0].toleration_seconds = Some(20);
        spec.tolerations.as_mut().unwrap().push(Toleration {
            key: Some("other".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        });
        assert_eq!(validate_pod_update(&new, &old), vec![]);
    }

    #[test]
    fn pod_updates_may_not_change_other_fields() {
        let old = stored_pod();
        let mut new = old.clone();
        new.spec.as_mut().unwrap().node_name = Some("node-1".into());
        let errs = validate_pod_update(&new, &old);
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            msg.starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"),
            "{msg}"
        );
        assert!(msg.ends_with(r#"+ spec.nodeName: "node-1""#), "{msg}");
    }

    #[test]
    fn pod_updates_may_not_add_containers_raise_deadlines_or_drop_tolerations() {
        let old = stored_pod();
        let mut new = old.clone();
        new.spec.as_mut().unwrap().containers.push(Container {
            name: "b".into(),
            image: Some("x".into()),
            ..Default::default()
        });
        assert_eq!(
            validate_pod_update(&new, &old)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
        let mut new = old.clone();
        new.spec.as_mut().unwrap().active_deadline_seconds = Some(200);
        assert_eq!(
            validate_pod_update(&new, &old)[0].to_string(),
            "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"
        );
        let mut new = old.clone();
        new.spec.as_mut().unwrap().tolerations = None;
        assert_eq!(
            validate_pod_update(&new, &old)[0].to_string(),
            "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
        );
    }

    #[test]
    fn pod_templates_forbid_ephemeral_containers() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "a", "image": "x"}],
                     "ephemeralContainers": [{"name": "d", "image": "x"}]}
        }))
        .unwrap();
        assert_eq!(
            validate_pod_template_spec(&t, &Path::new("template"))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![
                "template.spec.ephemeralContainers: Forbidden: ephemeral containers not allowed in pod template"
            ]
        );
    }

    #[test]
    fn replication_controllers_need_a_matching_selector() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "rc", "namespace": "d"},
            "spec": {"replicas": -1, "selector": {"app": "web"},
                     "template": {"metadata": {"labels": {"app": "api"}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "a", "image": "x"}]}}}
        }))
        .unwrap();
        assert_eq!(
            validate_replication_controller(&rc)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"api"}: `selector` does not match template `labels`"#,
                r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#,
            ]
        );
    }

    #[test]
    fn tcp_socket_ports_may_be_named() {
        let ok = port_num_or_name_errors(&IntOrString::String("http".into()), &Path::new("p"));
        assert!(ok.is_empty());
        let bad = port_num_or_name_errors(&IntOrString::String("HTTP".into()), &Path::new("p"));
        assert_eq!(bad.len(), 2);
    }
}
