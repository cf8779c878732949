//! PodSecurity (k8s.io/pod-security-admission): the Pod Security Standards
//! — privileged, baseline, restricted — chosen per namespace by the labels
//! `pod-security.kubernetes.io/<mode>` and `<mode>-version` for the modes
//! `enforce` (pods that violate it are refused), `warn` (the client gets a
//! `Warning` header) and `audit` (no audit log here: evaluated like warn but
//! reported nowhere). Workload objects with pod templates get warnings only.
//! A namespace with an invalid label value is refused; pods in it are held
//! to `restricted:latest` for that mode, failing closed as upstream.

use std::collections::BTreeSet;

use serde_json::Value;
use skiff_api_types::validation::{FieldError, FieldErrors, Path};

use super::{Operation, Request, lookup, namespace_of};
use crate::status::ApiError;

pub const NAME: &str = "PodSecurity";

const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// A Pod Security Standard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

/// A policy version: `latest` or `v1.<minor>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Latest,
    Minor(u32),
}

/// A level at a version, as `restricted:latest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

/// A namespace's policy, one level per mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

/// One failed check: upstream's ForbiddenReason and ForbiddenDetail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl Version {
    fn parse(s: &str) -> Option<Version> {
        if s == "latest" {
            return Some(Version::Latest);
        }
        let minor = s.strip_prefix("v1.")?;
        if minor.is_empty()
            || !minor.bytes().all(|b| b.is_ascii_digit())
            || (minor.len() > 1 && minor.starts_with('0'))
        {
            return None;
        }
        minor.parse().ok().map(Version::Minor)
    }

    /// Whether checks introduced in 1.`minor` apply.
    fn at_least(self, minor: u32) -> bool {
        match self {
            Version::Latest => true,
            Version::Minor(m) => m >= minor,
        }
    }
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Version::Latest => write!(f, "{}:latest", self.level.as_str()),
            Version::Minor(m) => write!(f, "{}:v1.{m}", self.level.as_str()),
        }
    }
}

const PRIVILEGED: LevelVersion = LevelVersion {
    level: Level::Privileged,
    version: Version::Latest,
};
#[cfg(test)]
const RESTRICTED: LevelVersion = LevelVersion {
    level: Level::Restricted,
    version: Version::Latest,
};

/// Upstream's api.PolicyToEvaluate: the policy of a namespace's labels and
/// the errors in them. An invalid level counts as restricted, an invalid
/// version as latest; warn follows a stricter enforce unless set itself.
pub fn policy_of(labels: &serde_json::Map<String, Value>) -> (Policy, Vec<FieldError>) {
    let mut errors = Vec::new();
    let mut policy = Policy {
        enforce: PRIVILEGED,
        audit: PRIVILEGED,
        warn: PRIVILEGED,
    };
    let path = |label: &str| Path::new("metadata").child("labels").key(label);
    let mut level_of = |mode: &str, lv: &mut LevelVersion| -> (bool, bool) {
        let key = format!("{LABEL_PREFIX}{mode}");
        let mut has_level = false;
        if let Some(value) = labels.get(&key) {
            let value = value.as_str().unwrap_or("");
            match Level::parse(value) {
                Some(l) => {
                    lv.level = l;
                    has_level = true;
                }
                None => {
                    lv.level = Level::Restricted;
                    errors.push(FieldError::not_supported(
                        &path(&key),
                        value,
                        &["privileged", "baseline", "restricted"],
                    ));
                }
            }
        }
        let key = format!("{LABEL_PREFIX}{mode}-version");
        let has_version = labels.contains_key(&key);
        if let Some(value) = labels.get(&key) {
            let value = value.as_str().unwrap_or("");
            match Version::parse(value) {
                Some(v) => lv.version = v,
                None => {
                    lv.version = Version::Latest;
                    errors.push(FieldError::invalid(
                        &path(&key),
                        value,
                        "must be \"latest\" or \"v1.x\"",
                    ));
                }
            }
        }
        (has_level, has_version)
    };
    let (has_enforce, _) = level_of("enforce", &mut policy.enforce);
    level_of("audit", &mut policy.audit);
    let (has_warn, has_warn_version) = level_of("warn", &mut policy.warn);
    if !has_warn && has_enforce && policy.enforce.level != Level::Privileged {
        policy.warn.level = policy.enforce.level;
        if !has_warn_version {
            policy.warn.version = policy.enforce.version;
        }
    }
    (policy, errors)
}

/// The validating plugin.
pub async fn validate(req: &Request<'_>, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    if req.operation == Operation::Delete {
        return Ok(());
    }
    match (req.resource.group, req.resource.plural) {
        ("", "namespaces") if req.subresource.is_none() => validate_namespace(req, obj, old),
        ("", "pods") => validate_pod(req, obj, old),
        _ => {
            warn_template(req, obj, old);
            Ok(())
        }
    }
}

fn namespace_policy(req: &Request<'_>, namespace: &str) -> Option<(Policy, bool)> {
    let namespaces = lookup::resource("", "namespaces");
    // A missing namespace is NamespaceLifecycle's to refuse.
    let ns = lookup::cached(req.api, namespaces, None, namespace)?;
    let labels = ns["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let (policy, errors) = policy_of(&labels);
    Some((policy, errors.is_empty()))
}

fn validate_pod(req: &Request<'_>, pod: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    if !matches!(req.subresource, None | Some("ephemeralcontainers")) {
        return Ok(());
    }
    if req.operation == Operation::Update && old.is_some_and(|old| !significant_update(pod, old)) {
        return Ok(());
    }
    let Some((policy, valid)) = namespace_policy(req, namespace_of(pod)) else {
        return Ok(());
    };
    let fully_privileged = policy.enforce.level == Level::Privileged
        && policy.warn.level == Level::Privileged
        && policy.audit.level == Level::Privileged;
    if valid && fully_privileged {
        return Ok(());
    }
    let violations = evaluate(policy.enforce, pod);
    if !violations.is_empty() {
        return Err(req.forbidden(
            pod,
            format!(
                "violates PodSecurity \"{}\": {}",
                policy.enforce,
                reasons(&violations)
            ),
        ));
    }
    if policy.warn.level != Level::Privileged {
        let violations = evaluate(policy.warn, pod);
        if !violations.is_empty() {
            req.warn(format!(
                "would violate PodSecurity \"{}\": {}",
                policy.warn,
                reasons(&violations)
            ));
        }
    }
    Ok(())
}

/// Workloads are not refused, but warned about: their pods would be.
fn warn_template(req: &Request<'_>, obj: &Value, old: Option<&Value>) {
    if req.subresource.is_some() {
        return;
    }
    let template = match (req.resource.group, req.resource.plural) {
        ("", "replicationcontrollers" | "podtemplates")
        | ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => template_of(req.resource.plural, obj),
        ("batch", "cronjobs") => Some(&obj["spec"]["jobTemplate"]["spec"]["template"]),
        _ => None,
    };
    let Some(template) = template.filter(|t| t.is_object()) else {
        return;
    };
    if let Some(old) = old {
        let old_template =
            template_of(req.resource.plural, old).filter(|_| req.resource.plural != "cronjobs");
        let old_template = old_template.or_else(|| {
            (req.resource.plural == "cronjobs")
                .then(|| &old["spec"]["jobTemplate"]["spec"]["template"])
        });
        if old_template.is_some_and(|o| !significant_update(template, o)) {
            return;
        }
    }
    let Some((policy, _)) = namespace_policy(req, namespace_of(obj)) else {
        return;
    };
    if policy.warn.level == Level::Privileged {
        return;
    }
    let violations = evaluate(policy.warn, template);
    if !violations.is_empty() {
        req.warn(format!(
            "would violate PodSecurity \"{}\": {}",
            policy.warn,
            reasons(&violations)
        ));
    }
}

fn template_of<'a>(plural: &str, obj: &'a Value) -> Option<&'a Value> {
    match plural {
        "podtemplates" => Some(&obj["template"]),
        "cronjobs" => None,
        _ => Some(&obj["spec"]["template"]),
    }
}

/// Refuses invalid policy labels; warns when a new enforce level would
/// refuse pods already running in the namespace.
fn validate_namespace(req: &Request<'_>, ns: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let labels = ns["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let (policy, errors) = policy_of(&labels);
    let name = ns["metadata"]["name"].as_str().unwrap_or("");
    if !errors.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Namespace",
            name,
            &FieldErrors(errors),
        ));
    }
    let Some(old) = old else {
        return Ok(());
    };
    let old_labels = old["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let (old_policy, _) = policy_of(&old_labels);
    if policy.enforce == old_policy.enforce || policy.enforce.level == Level::Privileged {
        return Ok(());
    }
    let pods = lookup::list(req.api, lookup::resource("", "pods"), Some(name));
    let mut offenders: Vec<(String, String)> = Vec::new();
    for pod in &pods {
        let violations = evaluate(policy.enforce, pod);
        if !violations.is_empty() {
            offenders.push((
                pod["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                reasons(&violations),
            ));
        }
    }
    if offenders.is_empty() {
        return Ok(());
    }
    req.warn(format!(
        "existing pods in namespace {name:?} violate the new PodSecurity enforce level \"{}\"",
        policy.enforce
    ));
    // One warning per distinct set of reasons, naming the first pod.
    let mut seen: Vec<(&str, &str, usize)> = Vec::new();
    for (pod, why) in &offenders {
        match seen.iter_mut().find(|(_, w, _)| w == why) {
            Some(entry) => entry.2 += 1,
            None => seen.push((pod, why, 0)),
        }
    }
    for (pod, why, others) in seen {
        match others {
            0 => req.warn(format!("{pod}: {why}")),
            1 => req.warn(format!("{pod} (and 1 other pod): {why}")),
            n => req.warn(format!("{pod} (and {n} other pods): {why}")),
        }
    }
    Ok(())
}

/// Upstream's isSignificantPodUpdate: a change other than container images.
fn significant_update(new: &Value, old: &Value) -> bool {
    let strip = |pod: &Value| {
        let mut spec = pod["spec"].clone();
        for key in ["initContainers", "containers", "ephemeralContainers"] {
            if let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) {
                for c in list {
                    if let Some(c) = c.as_object_mut() {
                        c.remove("image");
                    }
                }
            }
        }
        let annotations: Vec<(String, Value)> = pod["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.contains("seccomp") || k.contains("apparmor"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (spec, annotations)
    };
    strip(new) != strip(old)
}

/// `reason (detail), reason (detail)`: upstream's AggregateCheckResult.
fn reasons(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Evaluates a pod (or pod template: anything with `metadata` and `spec`)
/// against a level, in upstream's check order: baseline checks by ID, then
/// restricted checks by ID, without the baseline checks restricted ones
/// replace.
pub fn evaluate(lv: LevelVersion, pod: &Value) -> Vec<Violation> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    let v = lv.version;
    let restricted = lv.level == Level::Restricted;
    let p = PodView::new(pod);
    let mut checks: Vec<Option<Violation>> = vec![
        app_armor(&p),
        (!restricted).then(|| capabilities_baseline(&p)).flatten(),
        host_namespaces(&p),
        (!restricted).then(|| host_path_volumes(&p)).flatten(),
        host_ports(&p),
        privileged(&p),
        proc_mount(&p),
        se_linux_options(&p),
        (!restricted).then(|| seccomp_baseline(&p, v)).flatten(),
        sysctls(&p, v),
        windows_host_process(&p),
    ];
    if restricted {
        checks.extend([
            allow_privilege_escalation(&p, v),
            v.at_least(22)
                .then(|| capabilities_restricted(&p, v))
                .flatten(),
            restricted_volumes(&p),
            run_as_non_root(&p),
            v.at_least(23).then(|| run_as_user(&p)).flatten(),
            seccomp_restricted(&p, v),
        ]);
        // Before 1.22 restricted kept the baseline capabilities check.
        if !v.at_least(22) {
            checks.insert(1, capabilities_baseline(&p));
        }
    }
    checks.into_iter().flatten().collect()
}

/// The parts of a pod the checks read.
struct PodView<'a> {
    meta: &'a Value,
    spec: &'a Value,
    containers: Vec<&'a Value>,
}

impl<'a> PodView<'a> {
    fn new(pod: &'a Value) -> Self {
        let spec = &pod["spec"];
        PodView {
            meta: &pod["metadata"],
            spec,
            containers: super::containers(spec).collect(),
        }
    }

    fn pod_context(&self) -> &'a Value {
        &self.spec["securityContext"]
    }

    fn is_windows(&self) -> bool {
        self.spec["os"]["name"] == "windows"
    }

    /// The names of the containers `f` picks.
    fn names(&self, mut f: impl FnMut(&Value) -> bool) -> Vec<String> {
        self.containers
            .iter()
            .filter(|c| f(c))
            .map(|c| c["name"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", items.join("\", \""))
}

fn pluralize<'s>(singular: &'s str, plural: &'s str, n: usize) -> &'s str {
    if n == 1 { singular } else { plural }
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

fn app_armor(p: &PodView<'_>) -> Option<Violation> {
    let allowed = |t: &Value| matches!(t.as_str(), Some("RuntimeDefault" | "Localhost"));
    let mut setters = Vec::new();
    let mut bad = BTreeSet::new();
    let pod_profile = &p.pod_context()["appArmorProfile"];
    if pod_profile.is_object() && !allowed(&pod_profile["type"]) {
        setters.push("pod".to_owned());
        bad.insert(pod_profile["type"].as_str().unwrap_or("").to_owned());
    }
    let containers = p.names(|c| {
        let profile = &c["securityContext"]["appArmorProfile"];
        profile.is_object() && !allowed(&profile["type"])
    });
    for c in &p.containers {
        let profile = &c["securityContext"]["appArmorProfile"];
        if profile.is_object() && !allowed(&profile["type"]) {
            bad.insert(profile["type"].as_str().unwrap_or("").to_owned());
        }
    }
    if !containers.is_empty() {
        setters.push(containers_phrase(&containers));
    }
    let mut bad: Vec<String> = bad.into_iter().collect();
    let mut annotations: Vec<String> = p.meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("container.apparmor.security.beta.kubernetes.io/"))
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or("");
            let ok = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (!ok).then(|| format!("{k}={v:?}"))
        })
        .collect();
    annotations.sort();
    if !annotations.is_empty() {
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_owned());
        bad.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            bad.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&bad)
        ),
    )
}

const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities(c: &Value) -> impl Iterator<Item = &str> {
    c["securityContext"]["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn capabilities_baseline(p: &PodView<'_>) -> Option<Violation> {
    let mut caps = BTreeSet::new();
    let bad = p.names(|c| {
        let mut bad = false;
        for cap in added_capabilities(c) {
            if !DEFAULT_CAPABILITIES.contains(&cap) {
                caps.insert(cap.to_owned());
                bad = true;
            }
        }
        bad
    });
    if bad.is_empty() {
        return None;
    }
    let caps: Vec<String> = caps.into_iter().collect();
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&caps)
        ),
    )
}

fn host_namespaces(p: &PodView<'_>) -> Option<Violation> {
    let on: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|k| p.spec[*k] == true)
        .collect();
    if on.is_empty() {
        return None;
    }
    let detail: Vec<String> = on.iter().map(|k| format!("{k}=true")).collect();
    violation("host namespaces", detail.join(", "))
}

fn volumes<'a>(p: &PodView<'a>) -> impl Iterator<Item = &'a Value> {
    p.spec["volumes"].as_array().into_iter().flatten()
}

fn host_path_volumes(p: &PodView<'_>) -> Option<Violation> {
    let names: Vec<&str> = volumes(p)
        .filter(|v| v["hostPath"].is_object())
        .map(|v| v["name"].as_str().unwrap_or(""))
        .collect();
    if names.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names)
        ),
    )
}

fn host_ports(p: &PodView<'_>) -> Option<Violation> {
    let mut ports = BTreeSet::new();
    let bad = p.names(|c| {
        let mut bad = false;
        for port in c["ports"].as_array().into_iter().flatten() {
            if let Some(hp) = port["hostPort"].as_i64().filter(|hp| *hp != 0) {
                ports.insert(hp.to_string());
                bad = true;
            }
        }
        bad
    });
    if bad.is_empty() {
        return None;
    }
    // Sorted as strings, as upstream's sets.String.
    let ports: Vec<String> = ports.into_iter().collect();
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn privileged(p: &PodView<'_>) -> Option<Violation> {
    let bad = p.names(|c| c["securityContext"]["privileged"] == true);
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

fn proc_mount(p: &PodView<'_>) -> Option<Violation> {
    let mut kinds = BTreeSet::new();
    let bad = p.names(|c| match c["securityContext"]["procMount"].as_str() {
        Some(kind) if kind != "Default" => {
            kinds.insert(kind.to_owned());
            true
        }
        _ => false,
    });
    if bad.is_empty() {
        return None;
    }
    let kinds: Vec<String> = kinds.into_iter().collect();
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&kinds)
        ),
    )
}

fn se_linux_options(p: &PodView<'_>) -> Option<Violation> {
    const TYPES: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |o: &Value| {
        if !o.is_object() {
            return true;
        }
        let mut ok = true;
        let t = o["type"].as_str().unwrap_or("");
        if !TYPES.contains(&t) {
            bad_types.insert(t.to_owned());
            ok = false;
        }
        if o["user"].as_str().is_some_and(|u| !u.is_empty()) {
            set_user = true;
            ok = false;
        }
        if o["role"].as_str().is_some_and(|r| !r.is_empty()) {
            set_role = true;
            ok = false;
        }
        ok
    };
    let mut setters = Vec::new();
    if !valid(&p.pod_context()["seLinuxOptions"]) {
        setters.push("pod".to_owned());
    }
    let bad = p.names(|c| !valid(&c["securityContext"]["seLinuxOptions"]));
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        let types: Vec<String> = bad_types.into_iter().collect();
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
        // Upstream mentions user and role only beside a bad type.
        if set_user {
            data.push("user may not be set".to_owned());
        }
        if set_role {
            data.push("role may not be set".to_owned());
        }
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

fn valid_seccomp(t: &Value) -> bool {
    matches!(t.as_str(), Some("RuntimeDefault" | "Localhost"))
}

fn seccomp_baseline(p: &PodView<'_>, v: Version) -> Option<Violation> {
    if !v.at_least(19) {
        let valid = |s: &str| {
            s == "runtime/default" || s == "docker/default" || s.starts_with("localhost/")
        };
        let mut forbidden = BTreeSet::new();
        let annotations = &p.meta["annotations"];
        let pod_key = "seccomp.security.alpha.kubernetes.io/pod";
        if let Some(val) = annotations[pod_key].as_str()
            && !valid(val)
        {
            forbidden.insert(format!("{pod_key}={val:?}"));
        }
        for c in &p.containers {
            let key = format!(
                "container.seccomp.security.alpha.kubernetes.io/{}",
                c["name"].as_str().unwrap_or("")
            );
            if let Some(val) = annotations[&key].as_str()
                && !valid(val)
            {
                forbidden.insert(format!("{key}={val:?}"));
            }
        }
        if forbidden.is_empty() {
            return None;
        }
        let forbidden: Vec<String> = forbidden.into_iter().collect();
        return violation(
            "seccompProfile",
            format!(
                "forbidden {} {}",
                pluralize("annotation", "annotations", forbidden.len()),
                forbidden.join(", ")
            ),
        );
    }
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let pod_profile = &p.pod_context()["seccompProfile"];
    if pod_profile.is_object() && !valid_seccomp(&pod_profile["type"]) {
        setters.push("pod".to_owned());
        bad_values.insert(pod_profile["type"].as_str().unwrap_or("").to_owned());
    }
    let bad = p.names(|c| {
        let profile = &c["securityContext"]["seccompProfile"];
        let bad = profile.is_object() && !valid_seccomp(&profile["type"]);
        if bad {
            bad_values.insert(profile["type"].as_str().unwrap_or("").to_owned());
        }
        bad
    });
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let bad_values: Vec<String> = bad_values.into_iter().collect();
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&bad_values)
        ),
    )
}

fn sysctls(p: &PodView<'_>, v: Version) -> Option<Violation> {
    let mut allowed = vec![
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    ];
    if v.at_least(27) {
        allowed.push("net.ipv4.ip_local_reserved_ports");
    }
    if v.at_least(29) {
        allowed.extend([
            "net.ipv4.tcp_keepalive_time",
            "net.ipv4.tcp_fin_timeout",
            "net.ipv4.tcp_keepalive_intvl",
            "net.ipv4.tcp_keepalive_probes",
        ]);
    }
    if v.at_least(32) {
        allowed.extend(["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]);
    }
    let forbidden: Vec<&str> = p.pod_context()["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !allowed.contains(n))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

fn windows_host_process(p: &PodView<'_>) -> Option<Violation> {
    let mut setters = Vec::new();
    if p.pod_context()["windowsOptions"]["hostProcess"] == true {
        setters.push("pod".to_owned());
    }
    let bad = p.names(|c| c["securityContext"]["windowsOptions"]["hostProcess"] == true);
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

fn allow_privilege_escalation(p: &PodView<'_>, v: Version) -> Option<Violation> {
    if v.at_least(25) && p.is_windows() {
        return None;
    }
    let bad = p.names(|c| c["securityContext"]["allowPrivilegeEscalation"] != false);
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

fn capabilities_restricted(p: &PodView<'_>, v: Version) -> Option<Violation> {
    if v.at_least(25) && p.is_windows() {
        return None;
    }
    let missing_drop = p.names(|c| {
        !c["securityContext"]["capabilities"]["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d == "ALL")
    });
    let mut caps = BTreeSet::new();
    let adding = p.names(|c| {
        let mut bad = false;
        for cap in added_capabilities(c) {
            if cap != "NET_BIND_SERVICE" {
                caps.insert(cap.to_owned());
                bad = true;
            }
        }
        bad
    });
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = caps.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&caps)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn restricted_volumes(p: &PodView<'_>) -> Option<Violation> {
    const ALLOWED: &[&str] = &[
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    const KNOWN: &[&str] = &[
        "hostPath",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "nfs",
        "iscsi",
        "glusterfs",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "fc",
        "azureFile",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "storageos",
    ];
    let mut names = Vec::new();
    let mut kinds = BTreeSet::new();
    for v in volumes(p) {
        if ALLOWED.iter().any(|k| v[*k].is_object()) {
            continue;
        }
        names.push(v["name"].as_str().unwrap_or("").to_owned());
        let kind = KNOWN
            .iter()
            .find(|k| v[**k].is_object())
            .copied()
            .unwrap_or("unknown");
        kinds.insert(kind.to_owned());
    }
    if names.is_empty() {
        return None;
    }
    let kinds: Vec<String> = kinds.into_iter().collect();
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names),
            pluralize("uses", "use", names.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                kinds.len()
            ),
            join_quote(&kinds)
        ),
    )
}

fn run_as_non_root(p: &PodView<'_>) -> Option<Violation> {
    let mut setters = Vec::new();
    let pod_value = &p.pod_context()["runAsNonRoot"];
    let pod_non_root = *pod_value == true;
    if *pod_value == false {
        setters.push("pod".to_owned());
    }
    let explicit = p.names(|c| c["securityContext"]["runAsNonRoot"] == false);
    let implicit = p.names(|c| !c["securityContext"]["runAsNonRoot"].is_boolean() && !pod_non_root);
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if !implicit.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn run_as_user(p: &PodView<'_>) -> Option<Violation> {
    let mut setters = Vec::new();
    if p.pod_context()["runAsUser"] == 0 {
        setters.push("pod".to_owned());
    }
    let bad = p.names(|c| c["securityContext"]["runAsUser"] == 0);
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

fn seccomp_restricted(p: &PodView<'_>, v: Version) -> Option<Violation> {
    if v.at_least(25) && p.is_windows() {
        return None;
    }
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let pod_profile = &p.pod_context()["seccompProfile"];
    let mut pod_set = false;
    if pod_profile.is_object() {
        if valid_seccomp(&pod_profile["type"]) {
            pod_set = true;
        } else {
            setters.push("pod".to_owned());
            bad_values.insert(pod_profile["type"].as_str().unwrap_or("").to_owned());
        }
    }
    let explicit = p.names(|c| {
        let profile = &c["securityContext"]["seccompProfile"];
        let bad = profile.is_object() && !valid_seccomp(&profile["type"]);
        if bad {
            bad_values.insert(profile["type"].as_str().unwrap_or("").to_owned());
        }
        bad
    });
    let implicit = p.names(|c| !c["securityContext"]["seccompProfile"].is_object() && !pod_set);
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        let bad_values: Vec<String> = bad_values.into_iter().collect();
        return violation(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&bad_values)
            ),
        );
    }
    if !implicit.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn lv(level: Level) -> LevelVersion {
        LevelVersion {
            level,
            version: Version::Latest,
        }
    }

    #[test]
    fn labels_choose_levels_and_warn_follows_a_stricter_enforce() {
        let (p, errors) = policy_of(&labels(json!({
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/enforce-version": "v1.25",
        })));
        assert!(errors.is_empty());
        assert_eq!(p.enforce.to_string(), "baseline:v1.25");
        assert_eq!(p.warn.to_string(), "baseline:v1.25");
        assert_eq!(p.audit, PRIVILEGED);
        let (p, _) = policy_of(&labels(json!({
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
        })));
        assert_eq!(p.warn.to_string(), "restricted:latest");
    }

    #[test]
    fn invalid_labels_are_errors_and_fail_closed() {
        let (p, errors) = policy_of(&labels(json!({
            "pod-security.kubernetes.io/enforce": "strict",
            "pod-security.kubernetes.io/warn-version": "1.25",
        })));
        assert_eq!(p.enforce, RESTRICTED);
        assert_eq!(
            errors[0].to_string(),
            "metadata.labels[pod-security.kubernetes.io/enforce]: Unsupported value: \"strict\": supported values: \"baseline\", \"privileged\", \"restricted\""
        );
        assert_eq!(
            errors[1].to_string(),
            "metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: \"1.25\": must be \"latest\" or \"v1.x\""
        );
        assert_eq!(Version::parse("v1.07"), None);
        assert_eq!(Version::parse("v1.32"), Some(Version::Minor(32)));
    }

    fn nginx() -> Value {
        json!({
            "metadata": {"name": "nginx"},
            "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
        })
    }

    #[test]
    fn a_plain_pod_is_baseline_but_not_restricted() {
        assert!(evaluate(lv(Level::Baseline), &nginx()).is_empty());
        assert_eq!(
            reasons(&evaluate(lv(Level::Restricted), &nginx())),
            "allowPrivilegeEscalation != false (container \"nginx\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"nginx\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"nginx\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"nginx\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
    }

    #[test]
    fn a_privileged_pod_violates_baseline_first() {
        let mut pod = nginx();
        pod["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
        pod["spec"]["hostNetwork"] = json!(true);
        pod["spec"]["volumes"] = json!([{"name": "root", "hostPath": {"path": "/"}}]);
        assert_eq!(
            reasons(&evaluate(lv(Level::Baseline), &pod)),
            "host namespaces (hostNetwork=true), hostPath volumes (volume \"root\"), privileged (container \"nginx\" must not set securityContext.privileged=true)"
        );
        let restricted = reasons(&evaluate(lv(Level::Restricted), &pod));
        assert!(restricted.starts_with("host namespaces (hostNetwork=true), privileged (container \"nginx\" must not set securityContext.privileged=true), allowPrivilegeEscalation != false"));
        assert!(restricted.contains(
            "restricted volume types (volume \"root\" uses restricted volume type \"hostPath\")"
        ));
        assert!(!restricted.contains("hostPath volumes"));
    }

    #[test]
    fn a_hardened_pod_passes_restricted() {
        let pod = json!({
            "metadata": {"name": "ok"},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "app", "image": "app", "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                }}],
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tok", "projected": {"sources": []}}],
            },
        });
        assert_eq!(evaluate(lv(Level::Restricted), &pod), []);
    }

    #[test]
    fn several_containers_and_ports_are_listed_the_upstream_way() {
        let pod = json!({"metadata": {}, "spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}, {"containerPort": 8080, "hostPort": 8080}],
             "securityContext": {"capabilities": {"add": ["NET_ADMIN", "SYS_TIME"]}}},
            {"name": "b", "ports": [{"containerPort": 443, "hostPort": 443}], "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
        ]}});
        assert_eq!(
            reasons(&evaluate(lv(Level::Baseline), &pod)),
            "non-default capabilities (containers \"a\", \"b\" must not include \"NET_ADMIN\", \"SYS_TIME\" in securityContext.capabilities.add), \
             hostPort (containers \"a\", \"b\" use hostPorts 443, 80, 8080)"
        );
    }

    #[test]
    fn versions_before_a_check_do_not_apply_it() {
        let mut pod = nginx();
        pod["spec"]["securityContext"] = json!({"runAsUser": 0, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
        pod["spec"]["containers"][0]["securityContext"] =
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
        let at = |minor| LevelVersion {
            level: Level::Restricted,
            version: Version::Minor(minor),
        };
        assert_eq!(reasons(&evaluate(at(22), &pod)), "");
        assert_eq!(
            reasons(&evaluate(at(23), &pod)),
            "runAsUser=0 (pod must not set runAsUser=0)"
        );
    }

    #[test]
    fn image_changes_are_not_significant() {
        let old = nginx();
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert!(!significant_update(&new, &old));
        new["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
        assert!(significant_update(&new, &old));
    }
}
