//! Defaulting, as upstream Kubernetes (v1.33) applies it when it decodes an object.
//!
//! Each `default_*` function fills the unset fields of one typed `k8s-openapi` object
//! the way upstream's `SetDefaults_*` functions (and the generated defaulters that
//! walk into nested pod templates, containers, probes and volumes) do. Defaulting is
//! idempotent: applying it twice gives the same object as applying it once.
//!
//! [`apply_defaults`] is the entry point for the generic API server: it decodes the
//! JSON of a known kind, defaults it and encodes it back (fields `k8s-openapi` does
//! not know are dropped, as upstream drops unknown fields). Other kinds are left
//! untouched.
//!
//! Fields upstream fills elsewhere are left alone: `clusterIP`, `ipFamilies` and node
//! ports (allocated by the service registry), `nodeName` (the scheduler), `priority`
//! (the Priority admission plugin), a job's selector ([`generate_job_selector`], which
//! the API server calls on create once the job has a uid). Two registry steps are
//! included because the generic server has no other hook for them: a secret's
//! `stringData` is merged into `data`, and a new namespace gets the `kubernetes`
//! finalizer.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::k8s::ByteString;
use crate::k8s::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use crate::k8s::api::batch::v1::{CronJob, Job, JobSpec};
use crate::k8s::api::core::v1::Endpoints;
use crate::k8s::api::core::v1::{
    Container, ContainerPort, EphemeralContainer, HTTPGetAction, Namespace, Node,
    ObjectFieldSelector, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod,
    PodSecurityContext, PodSpec, PodTemplate, PodTemplateSpec, Probe, ReplicationController,
    Secret, Service, Volume,
};
use crate::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;
use crate::k8s::apimachinery::pkg::util::intstr::IntOrString;

/// The file mode secret, config map, downward API and projected volumes default to
/// (0644).
pub const DEFAULT_VOLUME_MODE: i32 = 0o644;
/// The grace period a pod gets when it does not ask for one, in seconds.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// The scheduler a pod uses when it does not name one.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Where a container writes its termination message unless told otherwise.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// How long client-IP session affinity lasts by default, in seconds (3 hours).
pub const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i32 = 10800;
/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Defaults a JSON object of the given kind in place.
///
/// `group` is the API group (`""` for the core group). Known kinds are decoded into
/// their `k8s-openapi` type, defaulted and encoded back, keeping the object's
/// `apiVersion` and `kind` as they were; other kinds are left untouched. An object
/// that does not decode is left untouched and the decoding error returned.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) -> Result<(), serde_json::Error> {
    let group = if group == "core" { "" } else { group };
    match (group, kind) {
        ("", "Pod") => roundtrip(obj, default_pod),
        ("", "PodTemplate") => roundtrip(obj, default_pod_template),
        ("", "ReplicationController") => roundtrip(obj, default_replication_controller),
        ("", "Service") => roundtrip(obj, default_service),
        ("", "Namespace") => {
            let is_new = is_new_object(obj);
            roundtrip(obj, |ns: &mut Namespace| {
                default_namespace(ns);
                if is_new {
                    default_new_namespace(ns);
                }
            })
        }
        ("", "Secret") => roundtrip(obj, default_secret),
        ("", "PersistentVolumeClaim") => roundtrip(obj, default_persistent_volume_claim),
        ("", "PersistentVolume") => roundtrip(obj, default_persistent_volume),
        ("", "Node") => roundtrip(obj, default_node),
        ("", "Endpoints") => roundtrip(obj, default_endpoints),
        ("apps", "Deployment") => roundtrip(obj, default_deployment),
        ("apps", "ReplicaSet") => roundtrip(obj, default_replica_set),
        ("apps", "StatefulSet") => roundtrip(obj, default_stateful_set),
        ("apps", "DaemonSet") => roundtrip(obj, default_daemon_set),
        ("batch", "Job") => roundtrip(obj, default_job),
        ("batch", "CronJob") => roundtrip(obj, default_cron_job),
        // Everything else, Events and ConfigMaps included, has no defaults upstream.
        _ => Ok(()),
    }
}

/// Whether an object has not been stored yet (no uid, no resource version).
fn is_new_object(obj: &Value) -> bool {
    let meta = obj.get("metadata");
    let set = |key: &str| {
        meta.and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    !set("uid") && !set("resourceVersion")
}

/// Decodes `obj` as `T`, applies `f` and encodes it back, keeping `apiVersion` and
/// `kind` as they were (`k8s-openapi` only decodes its own version).
fn roundtrip<T: DeserializeOwned + Serialize>(
    obj: &mut Value,
    f: impl FnOnce(&mut T),
) -> Result<(), serde_json::Error> {
    let Value::Object(map) = obj else {
        return Err(serde::de::Error::custom("an object must be a JSON object"));
    };
    let mut stripped = map.clone();
    let api_version = stripped.remove("apiVersion");
    let kind = stripped.remove("kind");
    let mut typed: T = serde_json::from_value(Value::Object(stripped))?;
    f(&mut typed);
    let Value::Object(mut out) = serde_json::to_value(&typed)? else {
        return Err(serde::de::Error::custom(
            "a typed object encoded to a non-object",
        ));
    };
    out.remove("apiVersion");
    out.remove("kind");
    if let Some(v) = api_version {
        out.insert("apiVersion".to_owned(), v);
    }
    if let Some(v) = kind {
        out.insert("kind".to_owned(), v);
    }
    *obj = Value::Object(out);
    Ok(())
}

fn set_if_none<T>(field: &mut Option<T>, value: T) {
    if field.is_none() {
        *field = Some(value);
    }
}

fn set_str_if_empty(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_owned());
    }
}

/// The image pull policy a container gets when it sets none: `Always` for an image
/// tagged `latest` (or not tagged and not pinned by digest), else `IfNotPresent`.
pub fn image_pull_policy(image: &str) -> &'static str {
    if image_tag(image).as_deref() == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag of an image reference as upstream's `ParseImageName` sees it: `latest`
/// when there is neither tag nor digest, `""` for a digest alone, `None` when the
/// reference does not parse.
fn image_tag(image: &str) -> Option<String> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => {
            let (algorithm, hex) = digest.split_once(':')?;
            if algorithm.is_empty() || hex.is_empty() {
                return None;
            }
            (name, Some(digest))
        }
        None => (image, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return None;
        }
    }
    if !valid_repository(repository) {
        return None;
    }
    match (tag, digest) {
        (Some(tag), _) => Some(tag.to_owned()),
        (None, Some(_)) => Some(String::new()),
        (None, None) => Some("latest".to_owned()),
    }
}

/// A docker repository name: an optional registry host, then lowercase path
/// components joined by `.`, `_`, `__` or dashes.
fn valid_repository(repository: &str) -> bool {
    let mut components: Vec<&str> = repository.split('/').collect();
    if components.len() > 1 {
        let first = components[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            let (host, port) = match first.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (first, None),
            };
            let host_ok = !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !host_ok || !port_ok {
                return false;
            }
            components.remove(0);
        }
    }
    components.iter().all(|c| {
        let b = c.as_bytes();
        !b.is_empty()
            && b.iter().all(|&x| {
                x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
            })
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && !c.contains("..")
            && !c.contains("___")
    })
}

/// Defaults a pod: its spec (see [`default_pod_spec`]) and the pod-only defaults:
/// container requests copied from limits where unset, `enableServiceLinks: true`, and
/// host ports equal to container ports on the host network.
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    default_pod_spec(spec);
    let inits = spec.init_containers.iter_mut().flatten();
    for c in spec.containers.iter_mut().chain(inits) {
        let Some(resources) = &mut c.resources else {
            continue;
        };
        let Some(limits) = &resources.limits else {
            continue;
        };
        let requests = resources.requests.get_or_insert_with(BTreeMap::new);
        for (name, value) in limits {
            requests
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
    }
    set_if_none(&mut spec.enable_service_links, true);
    if spec.host_network == Some(true) {
        let inits = spec.init_containers.iter_mut().flatten();
        for c in spec.containers.iter_mut().chain(inits) {
            for port in c.ports.iter_mut().flatten() {
                if port.host_port.is_none_or(|h| h == 0) {
                    port.host_port = Some(port.container_port);
                }
            }
        }
    }
}

/// Defaults a pod spec wherever it is (a pod or any pod template): `restartPolicy:
/// Always`, `dnsPolicy: ClusterFirst`, an empty security context, a 30 s grace period,
/// the default scheduler, and the containers, probes and volumes within.
pub fn default_pod_spec(spec: &mut PodSpec) {
    set_str_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_str_if_empty(&mut spec.restart_policy, "Always");
    set_if_none(&mut spec.security_context, PodSecurityContext::default());
    set_if_none(
        &mut spec.termination_grace_period_seconds,
        DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
    );
    set_str_if_empty(&mut spec.scheduler_name, DEFAULT_SCHEDULER_NAME);
    let inits = spec.init_containers.iter_mut().flatten();
    for c in spec.containers.iter_mut().chain(inits) {
        default_container(c);
    }
    for c in spec.ephemeral_containers.iter_mut().flatten() {
        default_ephemeral_container(c);
    }
    for v in spec.volumes.iter_mut().flatten() {
        default_volume(v);
    }
}

/// Defaults a pod template: its spec, as [`default_pod_spec`].
pub fn default_pod_template_spec(template: &mut PodTemplateSpec) {
    default_pod_spec(template.spec.get_or_insert_with(Default::default));
}

/// Defaults a `PodTemplate` object.
pub fn default_pod_template(template: &mut PodTemplate) {
    default_pod_template_spec(template.template.get_or_insert_with(Default::default));
}

/// Defaults a container: the image pull policy (by tag), the termination message path
/// and policy, port protocols, probes, lifecycle hooks and downward-API references.
pub fn default_container(c: &mut Container) {
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        c.image_pull_policy =
            Some(image_pull_policy(c.image.as_deref().unwrap_or_default()).to_owned());
    }
    set_str_if_empty(
        &mut c.termination_message_path,
        DEFAULT_TERMINATION_MESSAGE_PATH,
    );
    set_str_if_empty(&mut c.termination_message_policy, "File");
    default_ports(c.ports.as_deref_mut());
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    if let Some(lifecycle) = &mut c.lifecycle {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            if let Some(http) = &mut handler.http_get {
                default_http_get(http);
            }
        }
    }
    for env in c.env.iter_mut().flatten() {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|f| f.field_ref.as_mut()) {
            default_field_selector(field_ref);
        }
    }
}

fn default_ephemeral_container(c: &mut EphemeralContainer) {
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        c.image_pull_policy =
            Some(image_pull_policy(c.image.as_deref().unwrap_or_default()).to_owned());
    }
    set_str_if_empty(
        &mut c.termination_message_path,
        DEFAULT_TERMINATION_MESSAGE_PATH,
    );
    set_str_if_empty(&mut c.termination_message_policy, "File");
    default_ports(c.ports.as_deref_mut());
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    for env in c.env.iter_mut().flatten() {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|f| f.field_ref.as_mut()) {
            default_field_selector(field_ref);
        }
    }
}

fn default_ports(ports: Option<&mut [ContainerPort]>) {
    for port in ports.into_iter().flatten() {
        set_str_if_empty(&mut port.protocol, "TCP");
    }
}

/// Probe timing defaults (timeout 1 s, period 10 s, success 1, failure 3; a zero
/// counts as unset) and handler defaults.
fn default_probe(probe: &mut Probe) {
    for (field, value) in [
        (&mut probe.timeout_seconds, 1),
        (&mut probe.period_seconds, 10),
        (&mut probe.success_threshold, 1),
        (&mut probe.failure_threshold, 3),
    ] {
        if field.is_none_or(|v| v == 0) {
            *field = Some(value);
        }
    }
    if let Some(http) = &mut probe.http_get {
        default_http_get(http);
    }
    if let Some(grpc) = &mut probe.grpc {
        set_if_none(&mut grpc.service, String::new());
    }
}

fn default_http_get(http: &mut HTTPGetAction) {
    set_str_if_empty(&mut http.path, "/");
    set_str_if_empty(&mut http.scheme, "HTTP");
}

fn default_field_selector(selector: &mut ObjectFieldSelector) {
    set_str_if_empty(&mut selector.api_version, "v1");
}

/// Volume defaults: an `emptyDir` when no source is given, file modes 0644, token
/// expiry of an hour, and the declarative defaults of the plugin sources.
fn default_volume(v: &mut Volume) {
    let name = std::mem::take(&mut v.name);
    if *v == (Volume::default()) {
        v.empty_dir = Some(Default::default());
    }
    v.name = name;
    if let Some(secret) = &mut v.secret {
        set_if_none(&mut secret.default_mode, DEFAULT_VOLUME_MODE);
    }
    if let Some(config_map) = &mut v.config_map {
        set_if_none(&mut config_map.default_mode, DEFAULT_VOLUME_MODE);
    }
    if let Some(downward) = &mut v.downward_api {
        set_if_none(&mut downward.default_mode, DEFAULT_VOLUME_MODE);
        for item in downward.items.iter_mut().flatten() {
            if let Some(field_ref) = &mut item.field_ref {
                default_field_selector(field_ref);
            }
        }
    }
    if let Some(projected) = &mut v.projected {
        set_if_none(&mut projected.default_mode, DEFAULT_VOLUME_MODE);
        for source in projected.sources.iter_mut().flatten() {
            if let Some(token) = &mut source.service_account_token {
                set_if_none(&mut token.expiration_seconds, 3600);
            }
            if let Some(downward) = &mut source.downward_api {
                for item in downward.items.iter_mut().flatten() {
                    if let Some(field_ref) = &mut item.field_ref {
                        default_field_selector(field_ref);
                    }
                }
            }
        }
    }
    if let Some(host_path) = &mut v.host_path {
        set_if_none(&mut host_path.type_, String::new());
    }
    if let Some(iscsi) = &mut v.iscsi {
        set_str_if_empty(&mut iscsi.iscsi_interface, "default");
    }
    if let Some(rbd) = &mut v.rbd {
        set_str_if_empty(&mut rbd.pool, "rbd");
        set_str_if_empty(&mut rbd.user, "admin");
        set_str_if_empty(&mut rbd.keyring, "/etc/ceph/keyring");
    }
    if let Some(azure) = &mut v.azure_disk {
        set_str_if_empty(&mut azure.caching_mode, "ReadWrite");
        set_str_if_empty(&mut azure.fs_type, "ext4");
        set_if_none(&mut azure.read_only, false);
        set_str_if_empty(&mut azure.kind, "Shared");
    }
    if let Some(scale_io) = &mut v.scale_io {
        set_str_if_empty(&mut scale_io.storage_mode, "ThinProvisioned");
        set_str_if_empty(&mut scale_io.fs_type, "xfs");
    }
    if let Some(template) = v
        .ephemeral
        .as_mut()
        .and_then(|e| e.volume_claim_template.as_mut())
    {
        default_persistent_volume_claim_spec(&mut template.spec);
    }
}

/// Defaults a replication controller: the selector and the object's labels from the
/// template's labels when unset, one replica, and the pod template.
pub fn default_replication_controller(rc: &mut ReplicationController) {
    let spec = rc.spec.get_or_insert_with(Default::default);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    if let Some(labels) = template_labels {
        if spec.selector.as_ref().is_none_or(BTreeMap::is_empty) {
            spec.selector = Some(labels.clone());
        }
        if rc.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            rc.metadata.labels = Some(labels);
        }
    }
    set_if_none(&mut spec.replicas, 1);
    if let Some(template) = &mut spec.template {
        default_pod_template_spec(template);
    }
}

/// Defaults a deployment: one replica, a `RollingUpdate` strategy with 25% surge and
/// 25% unavailable, 10 old replica sets kept, a 600 s progress deadline, and the pod
/// template.
pub fn default_deployment(d: &mut Deployment) {
    let spec = d.spec.get_or_insert_with(Default::default);
    set_if_none(&mut spec.replicas, 1);
    let strategy = spec.strategy.get_or_insert_with(Default::default);
    set_str_if_empty(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
        set_if_none(
            &mut rolling.max_unavailable,
            IntOrString::String("25%".into()),
        );
        set_if_none(&mut rolling.max_surge, IntOrString::String("25%".into()));
    }
    set_if_none(&mut spec.revision_history_limit, 10);
    set_if_none(&mut spec.progress_deadline_seconds, 600);
    default_pod_template_spec(&mut spec.template);
}

/// Defaults a replica set: one replica and the pod template.
pub fn default_replica_set(rs: &mut ReplicaSet) {
    let spec = rs.spec.get_or_insert_with(Default::default);
    set_if_none(&mut spec.replicas, 1);
    default_pod_template_spec(spec.template.get_or_insert_with(Default::default));
}

/// Defaults a stateful set: `OrderedReady` pod management, a `RollingUpdate` update
/// strategy with partition 0, claims retained when deleted or scaled down, one
/// replica, 10 revisions kept, the pod template and the claim templates.
pub fn default_stateful_set(sts: &mut StatefulSet) {
    let spec = sts.spec.get_or_insert_with(Default::default);
    set_str_if_empty(&mut spec.pod_management_policy, "OrderedReady");
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    if strategy.type_.as_deref().is_none_or(str::is_empty) {
        strategy.type_ = Some("RollingUpdate".to_owned());
        set_if_none(&mut strategy.rolling_update, Default::default());
    }
    if strategy.type_.as_deref() == Some("RollingUpdate")
        && let Some(rolling) = &mut strategy.rolling_update
    {
        set_if_none(&mut rolling.partition, 0);
    }
    let retention = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(Default::default);
    set_str_if_empty(&mut retention.when_deleted, "Retain");
    set_str_if_empty(&mut retention.when_scaled, "Retain");
    set_if_none(&mut spec.replicas, 1);
    set_if_none(&mut spec.revision_history_limit, 10);
    default_pod_template_spec(&mut spec.template);
    for claim in spec.volume_claim_templates.iter_mut().flatten() {
        default_persistent_volume_claim(claim);
    }
}

/// Defaults a daemon set: a `RollingUpdate` strategy with 1 unavailable and no
/// surge, 10 revisions kept, and the pod template.
pub fn default_daemon_set(ds: &mut DaemonSet) {
    let spec = ds.spec.get_or_insert_with(Default::default);
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    set_str_if_empty(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
        set_if_none(&mut rolling.max_unavailable, IntOrString::Int(1));
        set_if_none(&mut rolling.max_surge, IntOrString::Int(0));
    }
    set_if_none(&mut spec.revision_history_limit, 10);
    default_pod_template_spec(&mut spec.template);
}

/// Defaults a job: parallelism 1 (and completions 1 when neither is set), a backoff
/// limit of 6, `NonIndexed` completion, not suspended, pods replaced once
/// terminating or failed (`Failed` with a pod failure policy), the job's labels from
/// the template's, and the pod template.
pub fn default_job(job: &mut Job) {
    let spec = job.spec.get_or_insert_with(Default::default);
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
        spec.parallelism = Some(1);
    }
    set_if_none(&mut spec.parallelism, 1);
    if spec.backoff_limit.is_none() {
        spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        });
    }
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    if let Some(labels) = template_labels
        && job.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty)
    {
        job.metadata.labels = Some(labels);
    }
    set_str_if_empty(&mut spec.completion_mode, "NonIndexed");
    set_if_none(&mut spec.suspend, false);
    default_job_failure_policy(spec);
    if spec.pod_replacement_policy.is_none() {
        let policy = if spec.pod_failure_policy.is_some() {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        spec.pod_replacement_policy = Some(policy.to_owned());
    }
    default_pod_template_spec(&mut spec.template);
}

fn default_job_failure_policy(spec: &mut JobSpec) {
    let rules = spec
        .pod_failure_policy
        .iter_mut()
        .flat_map(|p| p.rules.iter_mut());
    for rule in rules {
        for pattern in rule.on_pod_conditions.iter_mut().flatten() {
            if pattern.status.is_empty() {
                pattern.status = "True".to_owned();
            }
        }
    }
}

/// Gives a job the selector upstream's job registry generates on create, unless
/// `spec.manualSelector` is true or the job has no uid yet: the template gets the
/// `batch.kubernetes.io/controller-uid` and `batch.kubernetes.io/job-name` labels
/// (and their legacy unprefixed forms) and the selector matches the uid.
pub fn generate_job_selector(job: &mut Job) {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let spec = job.spec.get_or_insert_with(Default::default);
    if spec.manual_selector == Some(true) || uid.is_empty() {
        return;
    }
    let labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    for key in ["job-name", "batch.kubernetes.io/job-name"] {
        labels.entry(key.to_owned()).or_insert_with(|| name.clone());
    }
    for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
        labels.entry(key.to_owned()).or_insert_with(|| uid.clone());
    }
    let selector = spec.selector.get_or_insert_with(LabelSelector::default);
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .entry("batch.kubernetes.io/controller-uid".to_owned())
        .or_insert(uid);
}

/// Defaults a cron job: `Allow` concurrency, not suspended, 3 successful and 1 failed
/// jobs kept, and the job template's pod template.
pub fn default_cron_job(cj: &mut CronJob) {
    let spec = cj.spec.get_or_insert_with(Default::default);
    set_str_if_empty(&mut spec.concurrency_policy, "Allow");
    set_if_none(&mut spec.suspend, false);
    set_if_none(&mut spec.successful_jobs_history_limit, 3);
    set_if_none(&mut spec.failed_jobs_history_limit, 1);
    let job_spec = spec.job_template.spec.get_or_insert_with(Default::default);
    default_job_failure_policy(job_spec);
    default_pod_template_spec(&mut job_spec.template);
}

/// Defaults a service: type `ClusterIP`, session affinity `None` (a 3-hour timeout for
/// `ClientIP`), port protocols `TCP` and target ports equal to the ports, traffic
/// policies `Cluster`, load balancer node ports allocated, and `SingleStack`
/// (`RequireDualStack` for a headless service without selector).
pub fn default_service(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(Default::default);
    set_str_if_empty(&mut spec.session_affinity, "None");
    match spec.session_affinity.as_deref() {
        Some("None") => spec.session_affinity_config = None,
        Some("ClientIP") => {
            let has_timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .is_some();
            if !has_timeout {
                spec.session_affinity_config =
                    Some(crate::k8s::api::core::v1::SessionAffinityConfig {
                        client_ip: Some(crate::k8s::api::core::v1::ClientIPConfig {
                            timeout_seconds: Some(DEFAULT_CLIENT_IP_AFFINITY_SECONDS),
                        }),
                    });
            }
        }
        _ => {}
    }
    set_str_if_empty(&mut spec.type_, "ClusterIP");
    for port in spec.ports.iter_mut().flatten() {
        set_str_if_empty(&mut port.protocol, "TCP");
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    let type_ = spec.type_.clone().unwrap_or_default();
    let externally_accessible = matches!(type_.as_str(), "LoadBalancer" | "NodePort")
        || (type_ == "ClusterIP"
            && spec
                .external_ips
                .as_ref()
                .is_some_and(|ips| !ips.is_empty()));
    if externally_accessible {
        set_str_if_empty(&mut spec.external_traffic_policy, "Cluster");
    }
    if matches!(type_.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        set_if_none(&mut spec.internal_traffic_policy, "Cluster".to_owned());
    }
    if type_ == "LoadBalancer" {
        set_if_none(&mut spec.allocate_load_balancer_node_ports, true);
    }
    if type_ != "ExternalName" && spec.ip_family_policy.is_none() {
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let selectorless = spec.selector.as_ref().is_none_or(BTreeMap::is_empty);
        let dual = spec.cluster_ips.as_ref().is_some_and(|ips| ips.len() == 2)
            || spec.ip_families.as_ref().is_some_and(|f| f.len() == 2);
        let policy = if (headless && selectorless) || dual {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        spec.ip_family_policy = Some(policy.to_owned());
    }
    if type_ == "LoadBalancer" {
        let ingresses = svc
            .status
            .iter_mut()
            .filter_map(|s| s.load_balancer.as_mut())
            .filter_map(|lb| lb.ingress.as_mut())
            .flatten();
        for ingress in ingresses {
            if ingress.ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
                set_if_none(&mut ingress.ip_mode, "VIP".to_owned());
            }
        }
    }
}

/// Defaults a namespace: the `kubernetes.io/metadata.name` label and phase `Active`.
pub fn default_namespace(ns: &mut Namespace) {
    if let Some(name) = ns.metadata.name.clone().filter(|n| !n.is_empty()) {
        ns.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(NAMESPACE_NAME_LABEL.to_owned(), name);
    }
    let status = ns.status.get_or_insert_with(Default::default);
    set_str_if_empty(&mut status.phase, "Active");
}

/// What a namespace gets on create only (upstream's registry, not its defaulting):
/// the `kubernetes` finalizer, which the namespace controller removes once the
/// namespace is empty.
pub fn default_new_namespace(ns: &mut Namespace) {
    let finalizers = ns
        .spec
        .get_or_insert_with(Default::default)
        .finalizers
        .get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == "kubernetes") {
        finalizers.push("kubernetes".to_owned());
    }
}

/// Defaults a secret: type `Opaque`, and `stringData` merged into `data` (a
/// `stringData` value wins), as upstream's conversion does on write.
pub fn default_secret(secret: &mut Secret) {
    set_str_if_empty(&mut secret.type_, "Opaque");
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in string_data {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
}

/// Defaults a persistent volume claim: `volumeMode: Filesystem` and phase `Pending`.
pub fn default_persistent_volume_claim(pvc: &mut PersistentVolumeClaim) {
    default_persistent_volume_claim_spec(pvc.spec.get_or_insert_with(Default::default));
    let status = pvc.status.get_or_insert_with(Default::default);
    set_str_if_empty(&mut status.phase, "Pending");
}

fn default_persistent_volume_claim_spec(spec: &mut PersistentVolumeClaimSpec) {
    set_if_none(&mut spec.volume_mode, "Filesystem".to_owned());
}

/// Defaults a persistent volume: reclaim policy `Retain`, `volumeMode: Filesystem`
/// and phase `Pending`.
pub fn default_persistent_volume(pv: &mut PersistentVolume) {
    let spec = pv.spec.get_or_insert_with(Default::default);
    set_str_if_empty(&mut spec.persistent_volume_reclaim_policy, "Retain");
    set_if_none(&mut spec.volume_mode, "Filesystem".to_owned());
    if let Some(host_path) = &mut spec.host_path {
        set_if_none(&mut host_path.type_, String::new());
    }
    let status = pv.status.get_or_insert_with(Default::default);
    set_str_if_empty(&mut status.phase, "Pending");
}

/// Defaults a node: allocatable resources equal to capacity when not reported.
pub fn default_node(node: &mut Node) {
    if let Some(status) = &mut node.status
        && status.allocatable.is_none()
    {
        status.allocatable.clone_from(&status.capacity);
    }
}

/// Defaults endpoints: port protocols `TCP`.
pub fn default_endpoints(endpoints: &mut Endpoints) {
    for subset in endpoints.subsets.iter_mut().flatten() {
        for port in subset.ports.iter_mut().flatten() {
            set_str_if_empty(&mut port.protocol, "TCP");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
        apply_defaults(group, kind, &mut obj).unwrap();
        obj
    }

    #[test]
    fn a_bare_deployment_gets_every_default() {
        let obj = defaulted(
            "apps",
            "Deployment",
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "web",
                            "image": "nginx",
                            "ports": [{"containerPort": 80}],
                            "readinessProbe": {"httpGet": {"port": 80}},
                        }]},
                    },
                },
            }),
        );
        assert_eq!(
            obj,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 1,
                    "revisionHistoryLimit": 10,
                    "progressDeadlineSeconds": 600,
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                    },
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {
                            "containers": [{
                                "name": "web",
                                "image": "nginx",
                                "imagePullPolicy": "Always",
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "readinessProbe": {
                                    "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                                    "timeoutSeconds": 1,
                                    "periodSeconds": 10,
                                    "successThreshold": 1,
                                    "failureThreshold": 3,
                                },
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File",
                            }],
                            "restartPolicy": "Always",
                            "terminationGracePeriodSeconds": 30,
                            "dnsPolicy": "ClusterFirst",
                            "securityContext": {},
                            "schedulerName": "default-scheduler",
                        },
                    },
                },
            })
        );
    }

    #[test]
    fn the_pull_policy_follows_the_image_tag() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("docker.io/library/nginx", "Always"),
            ("localhost:5000/team/app", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("localhost:5000/team/app:v2", "IfNotPresent"),
            (
                "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "IfNotPresent",
            ),
            (
                "nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "Always",
            ),
            ("Nginx", "IfNotPresent"),
            ("", "IfNotPresent"),
        ] {
            assert_eq!(image_pull_policy(image), policy, "{image}");
        }
    }

    #[test]
    fn an_explicit_pull_policy_is_kept() {
        let mut c = Container {
            name: "c".into(),
            image: Some("nginx".into()),
            image_pull_policy: Some("Never".into()),
            ..Default::default()
        };
        default_container(&mut c);
        assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
    }

    fn bare_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{
                    "name": "app", "image": "app:1.0",
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}},
                    "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    "livenessProbe": {"grpc": {"port": 9000}, "periodSeconds": 0},
                    "lifecycle": {"preStop": {"httpGet": {"port": "http"}}},
                }],
                "volumes": [
                    {"name": "cache"},
                    {"name": "cfg", "configMap": {"name": "cfg"}},
                    {"name": "creds", "secret": {"secretName": "creds"}},
                    {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                ],
            },
        })
    }

    #[test]
    fn pods_get_container_volume_and_pod_only_defaults() {
        let pod = defaulted("", "Pod", bare_pod());
        let spec = &pod["spec"];
        assert_eq!(spec["enableServiceLinks"], json!(true));
        assert_eq!(spec["restartPolicy"], json!("Always"));
        assert!(spec.get("priority").is_none());
        assert!(spec.get("nodeName").is_none());
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], json!("IfNotPresent"));
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(
            c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"],
            json!("v1")
        );
        assert_eq!(c["livenessProbe"]["periodSeconds"], json!(10));
        assert_eq!(c["livenessProbe"]["grpc"]["service"], json!(""));
        assert_eq!(
            c["lifecycle"]["preStop"]["httpGet"],
            json!({"port": "http", "path": "/", "scheme": "HTTP"})
        );
        assert_eq!(spec["volumes"][0], json!({"name": "cache", "emptyDir": {}}));
        assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], json!(420));
        assert_eq!(spec["volumes"][2]["secret"]["defaultMode"], json!(420));
        assert_eq!(spec["volumes"][3]["projected"]["defaultMode"], json!(420));
        assert_eq!(
            spec["volumes"][3]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            json!(3600)
        );
    }

    #[test]
    fn host_network_pods_publish_their_ports_on_the_host() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"hostNetwork": true,
                "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 53}]}]}}),
        );
        assert_eq!(
            pod["spec"]["containers"][0]["ports"][0]["hostPort"],
            json!(53)
        );
    }

    #[test]
    fn pod_templates_do_not_get_pod_only_defaults() {
        let mut t = PodTemplateSpec::default();
        default_pod_template_spec(&mut t);
        assert_eq!(t.spec.as_ref().unwrap().enable_service_links, None);
    }

    #[test]
    fn defaulting_is_idempotent() {
        let samples = [
            ("", "Pod", bare_pod()),
            (
                "apps",
                "Deployment",
                json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "b"}]}}}}),
            ),
            (
                "apps",
                "StatefulSet",
                json!({"metadata": {"name": "s"}, "spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}}]}}),
            ),
            ("apps", "DaemonSet", json!({"metadata": {"name": "ds"}})),
            ("apps", "ReplicaSet", json!({"metadata": {"name": "rs"}})),
            (
                "batch",
                "Job",
                json!({"metadata": {"name": "j", "uid": "u"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}}}}}),
            ),
            (
                "batch",
                "CronJob",
                json!({"metadata": {"name": "c"}, "spec": {"schedule": "@daily"}}),
            ),
            (
                "",
                "Service",
                json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
            ),
            ("", "Namespace", json!({"metadata": {"name": "team-a"}})),
            (
                "",
                "Secret",
                json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}),
            ),
            (
                "",
                "ReplicationController",
                json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}}}}}),
            ),
            (
                "",
                "PersistentVolumeClaim",
                json!({"metadata": {"name": "c"}}),
            ),
            ("", "PersistentVolume", json!({"metadata": {"name": "v"}})),
            (
                "",
                "Node",
                json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "4"}}}),
            ),
            (
                "",
                "Endpoints",
                json!({"metadata": {"name": "e"}, "subsets": [{"ports": [{"port": 80}]}]}),
            ),
            ("", "PodTemplate", json!({"metadata": {"name": "t"}})),
        ];
        for (group, kind, obj) in samples {
            let once = defaulted(group, kind, obj);
            let twice = defaulted(group, kind, once.clone());
            assert_eq!(once, twice, "{kind}");
        }
    }

    #[test]
    fn typed_defaulting_is_idempotent_for_arbitrary_pods() {
        use proptest::prelude::*;
        let image =
            prop::sample::select(vec!["nginx", "nginx:1.2", "a/b:latest", "", "x@sha256:ab"]);
        let restart = prop::option::of(prop::sample::select(vec![
            "Always",
            "Never",
            "OnFailure",
            "",
        ]));
        let grace = prop::option::of(-5i64..100);
        let host_network = prop::option::of(any::<bool>());
        let port = prop::option::of(1i32..65535);
        proptest!(|(image in image, restart in restart, grace in grace, host_network in host_network, port in port)| {
            let mut pod = Pod::default();
            let spec = pod.spec.get_or_insert_with(Default::default);
            spec.restart_policy = restart.map(str::to_owned);
            spec.termination_grace_period_seconds = grace;
            spec.host_network = host_network;
            spec.containers.push(Container {
                name: "c".into(),
                image: Some(image.to_owned()),
                ports: port.map(|p| vec![ContainerPort { container_port: p, ..Default::default() }]),
                ..Default::default()
            });
            default_pod(&mut pod);
            let once = pod.clone();
            default_pod(&mut pod);
            prop_assert_eq!(once, pod);
        });
    }

    #[test]
    fn stateful_sets_get_policies_and_claim_defaults() {
        let sts = defaulted(
            "apps",
            "StatefulSet",
            json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db",
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}}),
        );
        let spec = &sts["spec"];
        assert_eq!(spec["replicas"], json!(1));
        assert_eq!(spec["podManagementPolicy"], json!("OrderedReady"));
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(spec["revisionHistoryLimit"], json!(10));
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            json!("Filesystem")
        );
        // An OnDelete strategy gets no rolling-update block.
        let sts = defaulted(
            "apps",
            "StatefulSet",
            json!({"metadata": {"name": "db"}, "spec": {"updateStrategy": {"type": "OnDelete"}}}),
        );
        assert_eq!(sts["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    }

    #[test]
    fn daemon_sets_roll_one_pod_at_a_time() {
        let ds = defaulted("apps", "DaemonSet", json!({"metadata": {"name": "ds"}}));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], json!(10));
    }

    #[test]
    fn replica_sets_and_controllers_get_one_replica() {
        let rs = defaulted("apps", "ReplicaSet", json!({"metadata": {"name": "rs"}}));
        assert_eq!(rs["spec"]["replicas"], json!(1));
        let rc = defaulted(
            "",
            "ReplicationController",
            json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "x"}}}}}),
        );
        assert_eq!(rc["spec"]["replicas"], json!(1));
        assert_eq!(rc["spec"]["selector"], json!({"app": "x"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "x"}));
    }

    #[test]
    fn jobs_get_counts_modes_and_labels() {
        let job = defaulted(
            "batch",
            "Job",
            json!({"metadata": {"name": "pi"}, "spec": {"template": {"metadata": {"labels": {"app": "pi"}}}}}),
        );
        let spec = &job["spec"];
        assert_eq!(spec["parallelism"], json!(1));
        assert_eq!(spec["completions"], json!(1));
        assert_eq!(spec["backoffLimit"], json!(6));
        assert_eq!(spec["completionMode"], json!("NonIndexed"));
        assert_eq!(spec["suspend"], json!(false));
        assert_eq!(spec["podReplacementPolicy"], json!("TerminatingOrFailed"));
        assert!(spec.get("manualSelector").is_none());
        assert_eq!(job["metadata"]["labels"], json!({"app": "pi"}));
        let job = defaulted(
            "batch",
            "Job",
            json!({"metadata": {"name": "w"}, "spec": {"parallelism": 5}}),
        );
        assert_eq!(job["spec"]["parallelism"], json!(5));
        assert!(job["spec"].get("completions").is_none());
    }

    #[test]
    fn jobs_with_a_failure_policy_replace_failed_pods_only() {
        let job = defaulted(
            "batch",
            "Job",
            json!({"metadata": {"name": "j"}, "spec": {"podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}}),
        );
        assert_eq!(job["spec"]["podReplacementPolicy"], json!("Failed"));
        assert_eq!(
            job["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
            json!("True")
        );
    }

    #[test]
    fn generated_job_selectors_pass_validation() {
        let mut obj = json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "perl"}]}}}});
        apply_defaults("batch", "Job", &mut obj).unwrap();
        let mut job: Job = serde_json::from_value(obj).unwrap();
        generate_job_selector(&mut job);
        assert_eq!(
            job.spec
                .as_ref()
                .unwrap()
                .selector
                .as_ref()
                .unwrap()
                .match_labels,
            Some(BTreeMap::from([(
                "batch.kubernetes.io/controller-uid".to_owned(),
                "u-1".to_owned()
            )]))
        );
        assert_eq!(crate::validation::validate_job(&job), vec![]);
        let once = job.clone();
        generate_job_selector(&mut job);
        assert_eq!(once, job);
    }

    #[test]
    fn cron_jobs_get_policies_and_history_limits() {
        let cj = defaulted(
            "batch",
            "CronJob",
            json!({"metadata": {"name": "c"}, "spec": {"schedule": "@daily"}}),
        );
        let spec = &cj["spec"];
        assert_eq!(spec["concurrencyPolicy"], json!("Allow"));
        assert_eq!(spec["suspend"], json!(false));
        assert_eq!(spec["successfulJobsHistoryLimit"], json!(3));
        assert_eq!(spec["failedJobsHistoryLimit"], json!(1));
        assert_eq!(
            spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
            json!("ClusterFirst")
        );
        assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
    }

    #[test]
    fn services_get_type_affinity_ports_and_policies() {
        let svc = defaulted(
            "",
            "Service",
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
                "ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "TCP"}]}}),
        );
        assert_eq!(
            svc["spec"],
            json!({
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack",
                "selector": {"app": "web"},
                "ports": [
                    {"port": 80, "protocol": "TCP", "targetPort": 80},
                    {"port": 443, "protocol": "TCP", "targetPort": "https"},
                ],
            })
        );
        let svc = defaulted(
            "",
            "Service",
            json!({"metadata": {"name": "lb"}, "spec": {"type": "NodePort", "sessionAffinity": "ClientIP",
                "ports": [{"port": 80}]}}),
        );
        assert_eq!(svc["spec"]["externalTrafficPolicy"], json!("Cluster"));
        assert_eq!(
            svc["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        assert!(svc["spec"].get("clusterIP").is_none());
        let svc = defaulted(
            "",
            "Service",
            json!({"metadata": {"name": "db"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
        );
        assert!(svc["spec"].get("ipFamilyPolicy").is_none());
        assert!(svc["spec"].get("internalTrafficPolicy").is_none());
        let svc = defaulted(
            "",
            "Service",
            json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}}),
        );
        assert_eq!(svc["spec"]["ipFamilyPolicy"], json!("RequireDualStack"));
    }

    #[test]
    fn new_namespaces_are_active_with_the_kubernetes_finalizer() {
        let ns = defaulted(
            "",
            "Namespace",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
        );
        assert_eq!(
            ns,
            json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            })
        );
        // A stored namespace whose finalizer the controller removed keeps it removed.
        let stored = json!({"metadata": {"name": "team-a", "uid": "u", "resourceVersion": "5"},
            "spec": {"finalizers": []}, "status": {"phase": "Terminating"}});
        let ns = defaulted("", "Namespace", stored);
        assert_eq!(ns["spec"]["finalizers"], json!([]));
        assert_eq!(ns["status"]["phase"], json!("Terminating"));
    }

    #[test]
    fn secrets_are_opaque_and_merge_string_data() {
        let secret = defaulted(
            "",
            "Secret",
            json!({"metadata": {"name": "s"}, "data": {"a": "MQ==", "b": "Mg=="}, "stringData": {"b": "two"}}),
        );
        assert_eq!(secret["type"], json!("Opaque"));
        assert_eq!(secret["data"], json!({"a": "MQ==", "b": "dHdv"}));
        assert!(secret.get("stringData").is_none());
    }

    #[test]
    fn volumes_and_claims_get_storage_defaults() {
        let pvc = defaulted(
            "",
            "PersistentVolumeClaim",
            json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"]}}),
        );
        assert_eq!(pvc["spec"]["volumeMode"], json!("Filesystem"));
        assert_eq!(pvc["status"]["phase"], json!("Pending"));
        let pv = defaulted(
            "",
            "PersistentVolume",
            json!({"metadata": {"name": "v"}, "spec": {"hostPath": {"path": "/d"}}}),
        );
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], json!("Retain"));
        assert_eq!(pv["spec"]["volumeMode"], json!("Filesystem"));
        assert_eq!(pv["spec"]["hostPath"]["type"], json!(""));
    }

    #[test]
    fn nodes_report_capacity_as_allocatable_by_default() {
        let node = defaulted(
            "",
            "Node",
            json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "4", "pods": "110"}}}),
        );
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "4", "pods": "110"})
        );
        let node = defaulted("", "Node", json!({"metadata": {"name": "n"}}));
        assert_eq!(node, json!({"metadata": {"name": "n"}}));
    }

    #[test]
    fn unknown_kinds_and_events_are_untouched() {
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"x": 1}});
        assert_eq!(defaulted("example.com", "Widget", widget.clone()), widget);
        let event =
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "reason": "X"});
        assert_eq!(defaulted("", "Event", event.clone()), event);
    }

    #[test]
    fn an_undecodable_object_is_left_as_it_was() {
        let mut obj = json!({"metadata": {"name": "d"}, "spec": {"replicas": "three"}});
        let before = obj.clone();
        assert!(apply_defaults("apps", "Deployment", &mut obj).is_err());
        assert_eq!(obj, before);
    }

    #[test]
    fn defaulted_objects_pass_validation() {
        let cases = [
            ("", "Pod", bare_pod(), true),
            (
                "apps",
                "Deployment",
                json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}),
                true,
            ),
            (
                "",
                "Service",
                json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"type": "LoadBalancer",
                    "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
                true,
            ),
            (
                "",
                "Namespace",
                json!({"metadata": {"name": "team-a"}}),
                false,
            ),
        ];
        for (group, kind, obj, namespaced) in cases {
            let obj = defaulted(group, kind, obj);
            assert_eq!(
                crate::validation::validate(group, kind, &obj, None, namespaced),
                Ok(()),
                "{kind}"
            );
        }
    }
}
