//! The Deployment controller's pure parts, as upstream's `deploymentutil`:
//! maxSurge/maxUnavailable resolution, how many replicas the new
//! ReplicaSet may have, proportional scaling, the pod-template hash and
//! template equality, revision and replica annotations, conditions and the
//! status a set of ReplicaSets gives.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetCondition,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// The revision of a Deployment's ReplicaSet (and of the Deployment).
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions of a ReplicaSet rolled back to.
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus maxSurge then.
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label (and selector term) telling a Deployment's ReplicaSets apart.
pub(crate) const HASH_LABEL: &str = "pod-template-hash";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Upstream's cap on the revision-history annotation.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Condition reasons, as upstream's.
pub(crate) mod reason {
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    pub const PAUSED: &str = "DeploymentPaused";
    pub const RESUMED: &str = "DeploymentResumed";
    pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

/// The Deployment's desired replicas.
pub(crate) fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's desired replicas.
pub(crate) fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub(crate) fn set_rs_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.as_ref();
    (
        s.map_or(0, |s| s.replicas),
        s.and_then(|s| s.ready_replicas).unwrap_or(0),
        s.and_then(|s| s.available_replicas).unwrap_or(0),
    )
}

/// `status.availableReplicas`.
pub(crate) fn rs_available(rs: &ReplicaSet) -> i32 {
    rs_status(rs).2
}

/// `status.replicas`.
pub(crate) fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs_status(rs).0
}

/// Sum of `spec.replicas`.
pub(crate) fn replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_replicas(rs)).sum()
}

/// Sum of `status.replicas`.
pub(crate) fn actual_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_actual(rs)).sum()
}

/// Sum of `status.availableReplicas`.
pub(crate) fn available_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_available(rs)).sum()
}

fn ready_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_status(rs).1).sum()
}

/// The strategy is RollingUpdate (the default).
pub(crate) fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// The strategy is Recreate.
pub(crate) fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// An int or a percentage of `total`, rounded up or down (upstream's
/// `GetScaledValueFromIntOrPercent`).
pub(crate) fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(percent) = s.strip_suffix('%') else {
                return Err(format!(
                    "invalid value {s:?}: not an integer or a percentage"
                ));
            };
            let p: i64 = percent
                .parse()
                .map_err(|_| format!("invalid value for IntOrString: {s:?}"))?;
            let scaled = p * i64::from(total);
            Ok(if round_up {
                scaled.div_euclid(100) + i64::from(scaled.rem_euclid(100) != 0)
            } else {
                scaled.div_euclid(100)
            } as i32)
        }
    }
}

/// maxSurge (rounded up) and maxUnavailable (rounded down) against
/// `desired`; both zero makes maxUnavailable 1 (upstream's
/// `ResolveFenceposts`).
pub(crate) fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
    .unwrap_or((0, 1))
}

/// The resolved maxSurge (0 unless RollingUpdate).
pub(crate) fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// The resolved maxUnavailable, at most the replicas (0 unless
/// RollingUpdate or with no replicas).
pub(crate) fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// How many replicas the new ReplicaSet should have now (upstream's
/// `NewRSNewReplicas`): Recreate, all of them; RollingUpdate, as many as
/// maxSurge allows, never more than desired.
pub(crate) fn new_rs_new_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Result<i32, String> {
    if is_recreate(d) {
        return Ok(replicas(d));
    }
    if !is_rolling(d) {
        return Err("deployment strategy isn't supported".into());
    }
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let zero = IntOrString::Int(0);
    let surge = scaled_value(
        ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&zero),
        replicas(d),
        true,
    )?;
    let current = replica_count(all);
    let max_total = replicas(d) + surge;
    if current >= max_total {
        return Ok(rs_replicas(new_rs));
    }
    let up = (max_total - current).min(replicas(d) - rs_replicas(new_rs));
    Ok(rs_replicas(new_rs) + up)
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The ReplicaSet's revision (0 when absent or not a number).
pub(crate) fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The highest revision among `rss`.
pub(crate) fn max_revision(rss: &[&ReplicaSet]) -> i64 {
    rss.iter().map(|rs| revision(rs)).max().unwrap_or(0)
}

/// The `desired-replicas` annotation.
pub(crate) fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, DESIRED_REPLICAS)?.parse().ok()
}

fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, MAX_REPLICAS)?.parse().ok()
}

/// Sets `desired-replicas` and `max-replicas`; answers whether they changed.
pub(crate) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_owned(), value);
            changed = true;
        }
    }
    changed
}

/// Whether `desired-replicas` or `max-replicas` differ from these.
pub(crate) fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(rs, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(rs, MAX_REPLICAS) != Some(max.to_string().as_str())
}

fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

/// Copies the Deployment's annotations (but the controller's own and
/// kubectl's last-applied) onto the ReplicaSet; answers whether any changed.
fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Upstream's `SetNewReplicaSetAnnotations`: the Deployment's annotations,
/// the revision (never lowered; a raised one keeps the old in
/// `revision-history`), and for a ReplicaSet about to be created the
/// replica annotations. Answers whether anything changed.
pub(crate) fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = copy_annotations(d, rs);
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old = annotations.get(REVISION).cloned();
    let old_revision = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return false,
        },
    };
    if old_revision < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY.into(), old);
            } else {
                let mut revisions: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REVISION_HISTORY_CHARS && start < revisions.len() {
                    total -= revisions[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REVISION_HISTORY_CHARS {
                    revisions = revisions.split_off(start);
                    revisions.push(&old);
                    annotations.insert(REVISION_HISTORY.into(), revisions.join(","));
                }
            }
        }
    }
    if !exists {
        let desired = replicas(d);
        if set_replicas_annotations(rs, desired, desired + max_surge(d)) {
            changed = true;
        }
    }
    changed
}

/// Sets the Deployment's revision annotation; answers whether it changed.
pub(crate) fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let annotations = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if annotations.get(REVISION).map(String::as_str) == Some(revision) {
        return false;
    }
    annotations.insert(REVISION.into(), revision.to_owned());
    true
}

/// A template as JSON with what carries no meaning dropped (nulls, empty
/// lists and maps), and optionally without the `pod-template-hash` label:
/// semantic equality, as upstream's `Semantic.DeepEqual` treats nil and empty
/// alike.
fn normalized(template: &PodTemplateSpec, drop_hash: bool) -> Value {
    let mut t = template.clone();
    if drop_hash && let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    prune(serde_json::to_value(t).expect("a pod template serializes")).unwrap_or(Value::Null)
}

fn prune(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(items) => {
            let items: Vec<Value> = items
                .into_iter()
                .map(|i| prune(i).unwrap_or(Value::Null))
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(map) => {
            let map: serde_json::Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        other => Some(other),
    }
}

/// Whether two templates are equal but for the `pod-template-hash` label
/// (upstream's `EqualIgnoreHash`).
pub(crate) fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a, true) == normalized(b, true)
}

/// Writes `v` as JSON with object keys sorted, whatever serde_json's map.
fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(k).expect("a string serializes"));
                out.push(b':');
                canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend(serde_json::to_vec(other).expect("a value serializes")),
    }
}

/// FNV-1a, 32 bits.
fn fnv32a(bytes: &[u8], mut hash: u32) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Upstream's `rand.SafeEncodeString`: each character mapped onto an
/// alphabet without vowels (no words) or look-alikes.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` of a template: FNV-32a of the template (here its
/// canonical JSON, as upstream hashes its Go dump), then the collision
/// count as 8 little-endian bytes, printed in decimal and safe-encoded, as
/// upstream's `ComputeHash`.
pub(crate) fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = Vec::new();
    canonical(&normalized(template, false), &mut bytes);
    let mut hash = fnv32a(&bytes, 0x811c_9dc5);
    if let Some(c) = collision_count {
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&(c as u32).to_le_bytes());
        hash = fnv32a(&buf, hash);
    }
    safe_encode(&hash.to_string())
}

/// Orders ReplicaSets oldest first, by name on a tie.
pub(crate) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    t(a).cmp(&t(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Larger first; on a tie older first (scaling down).
pub(crate) fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(a, b))
}

/// Larger first; on a tie newer first (scaling up).
pub(crate) fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(b, a))
}

/// Lowest revision first, then oldest.
pub(crate) fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a)
        .cmp(&revision(b))
        .then_with(|| by_creation(a, b))
}

/// How many replicas to add to (or, negative, remove from) `rs` when
/// `to_add` are shared out proportionally, `added` of them already given
/// (upstream's `GetReplicaSetProportion`).
pub(crate) fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// `getReplicaSetFraction`: the ReplicaSet's share of the new maximum,
/// against the maximum it was sized for.
fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let max = replicas(d) + max_surge(d);
    let before = match max_replicas_annotation(rs) {
        Some(n) if n != 0 => n,
        _ => {
            let n = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if n == 0 {
                return 0;
            }
            n
        }
    };
    let scaled = f64::from(rs_replicas(rs) * max) / f64::from(before);
    scaled.round() as i32 - rs_replicas(rs)
}

/// The only active ReplicaSet, or with none active the newest (upstream's
/// `FindActiveOrLatest`); `None` with several active.
pub(crate) fn find_active_or_latest<'a>(
    new_rs: Option<&'a ReplicaSet>,
    old: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let mut old = old.to_vec();
    old.sort_by(|a, b| by_creation(b, a));
    let active: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .chain(new_rs)
        .filter(|rs| rs_replicas(rs) > 0)
        .collect();
    match active.len() {
        0 => new_rs.or_else(|| old.first().copied()),
        1 => Some(active[0]),
        _ => None,
    }
}

/// The new ReplicaSet has every replica, as desired and available.
pub(crate) fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else {
        return false;
    };
    let Some(desired) = desired_replicas_annotation(rs) else {
        return false;
    };
    rs_replicas(rs) == replicas(d) && desired == replicas(d) && rs_available(rs) == replicas(d)
}

/// A condition stamped `now`.
pub(crate) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The condition of `type_`.
pub(crate) fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Sets a condition, keeping its transition time when only the reason
/// changes, and nothing when neither status nor reason does.
pub(crate) fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(current) = get_condition(status, &c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &c.type_.clone());
    status.conditions.get_or_insert_with(Vec::new).push(c);
}

/// Removes the condition of `type_`.
pub(crate) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
        if c.is_empty() {
            status.conditions = None;
        }
    }
}

/// A ReplicaSet's `ReplicaFailure` as a Deployment condition.
pub(crate) fn from_rs_condition(c: &ReplicaSetCondition) -> DeploymentCondition {
    DeploymentCondition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_update_time: c.last_transition_time.clone(),
        last_transition_time: c.last_transition_time.clone(),
    }
}

/// progressDeadlineSeconds is set (and not "never").
pub(crate) fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some_and(|s| s != i32::MAX)
}

/// The status `all` (new included) give (upstream's `calculateStatus`).
pub(crate) fn calculate_status(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available = available_count(all);
    let total = replica_count(all);
    let current = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: Some(d.metadata.generation.unwrap_or(0)),
        replicas: Some(actual_count(all)),
        updated_replicas: Some(new_rs.map_or(0, rs_actual)),
        ready_replicas: Some(ready_count(all)),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: current.collision_count,
        conditions: current.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "True",
                reason::MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "False",
                reason::MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    status
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Every replica updated and available, the spec observed.
pub(crate) fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = replicas(d);
    n(s.updated_replicas) == want
        && n(s.replicas) == want
        && n(s.available_replicas) == want
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Some progress since the status the Deployment carries.
pub(crate) fn deployment_progressing(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(s.replicas) - n(s.updated_replicas);
    n(s.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(s.ready_replicas) > n(old.ready_replicas)
        || n(s.available_replicas) > n(old.available_replicas)
}

/// No progress for progressDeadlineSeconds.
pub(crate) fn deployment_timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(c) = get_condition(s, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some(reason::NEW_RS_AVAILABLE) => return false,
        Some(reason::TIMED_OUT) => return true,
        _ => {}
    }
    let Some(from) = c.last_update_time.as_ref() else {
        return false;
    };
    let deadline = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    from.0 + SignedDuration::from_secs(deadline.into()) < now
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus,
        RollingUpdateDeployment,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn int(i: i32) -> IntOrString {
        IntOrString::Int(i)
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    pub(crate) fn deployment(
        replicas: i32,
        surge: IntOrString,
        unavailable: IntOrString,
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    fn rs(name: &str, replicas: i32, available: i32, created: i64) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..ReplicaSetSpec::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                available_replicas: Some(available),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    #[test]
    fn percentages_round_surge_up_and_unavailability_down() {
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10),
            Ok((3, 2))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 3),
            Ok((1, 0))
        );
        assert_eq!(
            resolve_fenceposts(Some(&int(2)), Some(&int(1)), 3),
            Ok((2, 1))
        );
        // Both zero after rounding: one may be unavailable.
        assert_eq!(
            resolve_fenceposts(Some(&pct("0%")), Some(&pct("10%")), 5),
            Ok((0, 1))
        );
        assert_eq!(resolve_fenceposts(None, None, 5), Ok((0, 1)));
        assert!(resolve_fenceposts(Some(&pct("abc")), None, 5).is_err());
        assert!(resolve_fenceposts(Some(&pct("5")), None, 5).is_err());
    }

    #[test]
    fn max_unavailable_never_exceeds_the_replicas_and_is_zero_for_recreate() {
        let d = deployment(2, int(0), int(5));
        assert_eq!(max_unavailable(&d), 2);
        let mut r = deployment(2, int(1), int(1));
        r.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        assert_eq!((max_surge(&r), max_unavailable(&r)), (0, 0));
    }

    #[test]
    fn the_new_replica_set_grows_within_max_surge() {
        let d = deployment(10, pct("25%"), pct("25%"));
        let old = rs("old", 10, 10, 1);
        let new = rs("new", 0, 0, 2);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), Ok(3));
        let new = rs("new", 3, 0, 2);
        let old = rs("old", 8, 8, 1);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), Ok(5));
        let old = rs("old", 0, 0, 1);
        let new = rs("new", 9, 9, 2);
        // Never past the desired count.
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), Ok(10));
    }

    #[test]
    fn proportional_scaling_shares_by_the_max_replicas_annotation() {
        // 10 replicas, surge 3: 8 old + 5 new = 13; scaled to 20 (max 25).
        let mut d = deployment(20, pct("25%"), pct("25%"));
        d.status = Some(DeploymentStatus {
            replicas: Some(13),
            ..DeploymentStatus::default()
        });
        let mut old = rs("old", 8, 8, 1);
        let mut new = rs("new", 5, 0, 2);
        set_replicas_annotations(&mut old, 10, 13);
        set_replicas_annotations(&mut new, 10, 13);
        let to_add = 25 - 13;
        let a = proportion(&old, &d, to_add, 0);
        let b = proportion(&new, &d, to_add, a);
        // 8*25/13 = 15.38 → 15 (+7); 5*25/13 = 9.6 → 10 (+5)
        assert_eq!((a, b), (7, 5));
    }

    #[test]
    fn the_hash_depends_on_the_template_and_collision_count_only() {
        let t: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "a", "image": "nginx"}]},
        }))
        .unwrap();
        let h = compute_hash(&t, None);
        assert!(h.len() <= 10 && !h.is_empty());
        assert!(
            h.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
            "{h}"
        );
        assert_eq!(h, compute_hash(&t.clone(), None));
        assert_ne!(h, compute_hash(&t, Some(1)));
        let mut other = t.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert_ne!(h, compute_hash(&other, None));
        // Empty lists and nulls do not count.
        let mut same = t.clone();
        same.spec.as_mut().unwrap().volumes = Some(vec![]);
        assert_eq!(h, compute_hash(&same, None));
    }

    #[test]
    fn templates_compare_equal_without_the_hash_label() {
        let t: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "a", "image": "nginx"}]},
        }))
        .unwrap();
        let mut hashed = t.clone();
        hashed
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), "abc".into());
        assert!(equal_ignore_hash(&t, &hashed));
        let mut changed = t.clone();
        changed.spec.as_mut().unwrap().containers[0].image = Some("x".into());
        assert!(!equal_ignore_hash(&t, &changed));
    }

    #[test]
    fn a_rollback_raises_the_revision_and_keeps_the_old_one_in_history() {
        let mut d = deployment(3, int(1), int(0));
        d.metadata.annotations = Some(
            [
                ("team".to_owned(), "a".to_owned()),
                (REVISION.to_owned(), "9".to_owned()),
                (LAST_APPLIED.to_owned(), "{}".to_owned()),
            ]
            .into(),
        );
        let mut r = rs("old", 0, 0, 1);
        r.metadata.annotations = Some([(REVISION.to_owned(), "1".to_owned())].into());
        assert!(set_new_rs_annotations(&d, &mut r, 3, true));
        let a = r.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[REVISION_HISTORY], "1");
        assert_eq!(a["team"], "a");
        assert!(!a.contains_key(LAST_APPLIED));
        assert!(
            !a.contains_key(DESIRED_REPLICAS),
            "only new ReplicaSets get them"
        );
        // Again: nothing to change. A lower revision is never written.
        assert!(!set_new_rs_annotations(&d, &mut r, 3, true));
        assert!(!set_new_rs_annotations(&d, &mut r, 2, true));
        assert!(set_new_rs_annotations(&d, &mut r, 5, true));
        assert_eq!(
            r.metadata.annotations.as_ref().unwrap()[REVISION_HISTORY],
            "1,3"
        );

        let mut fresh = rs("new", 0, 0, 1);
        assert!(set_new_rs_annotations(&d, &mut fresh, 1, false));
        let a = fresh.metadata.annotations.unwrap();
        assert_eq!(
            (a[DESIRED_REPLICAS].as_str(), a[MAX_REPLICAS].as_str()),
            ("3", "4")
        );
        assert!(!a.contains_key(REVISION_HISTORY));
    }

    #[test]
    fn only_one_active_replica_set_is_scaled_directly() {
        let a = rs("a", 0, 0, 1);
        let b = rs("b", 3, 3, 2);
        let c = rs("c", 0, 0, 3);
        assert_eq!(
            find_active_or_latest(Some(&c), &[&a, &b])
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("b")
        );
        let b0 = rs("b", 0, 0, 2);
        assert_eq!(
            find_active_or_latest(None, &[&a, &b0])
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("b"),
            "with none active, the newest"
        );
        let c1 = rs("c", 1, 0, 3);
        assert!(find_active_or_latest(Some(&c1), &[&a, &b]).is_none());
    }

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_holds() {
        let t0 = Timestamp::from_second(100).unwrap();
        let t1 = Timestamp::from_second(200).unwrap();
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            new_condition(
                "Progressing",
                "True",
                reason::NEW_RS_CREATED,
                "a".into(),
                t0,
            ),
        );
        set_condition(
            &mut s,
            new_condition("Progressing", "True", reason::RS_UPDATED, "b".into(), t1),
        );
        let c = get_condition(&s, "Progressing").unwrap();
        assert_eq!(c.reason.as_deref(), Some(reason::RS_UPDATED));
        assert_eq!(c.last_transition_time, Some(Time(t0)));
        assert_eq!(c.last_update_time, Some(Time(t1)));
        // Same status and reason: left as it was.
        set_condition(
            &mut s,
            new_condition("Progressing", "True", reason::RS_UPDATED, "c".into(), t1),
        );
        assert_eq!(
            get_condition(&s, "Progressing").unwrap().message.as_deref(),
            Some("b")
        );
    }

    #[test]
    fn a_deployment_times_out_after_its_deadline_without_progress() {
        let mut d = deployment(3, int(1), int(0));
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(10);
        let t0 = Timestamp::from_second(100).unwrap();
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            new_condition("Progressing", "True", reason::RS_UPDATED, "m".into(), t0),
        );
        assert!(!deployment_timed_out(
            &d,
            &s,
            Timestamp::from_second(110).unwrap()
        ));
        assert!(deployment_timed_out(
            &d,
            &s,
            Timestamp::from_second(111).unwrap()
        ));
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(i32::MAX);
        assert!(!deployment_timed_out(
            &d,
            &s,
            Timestamp::from_second(100_000).unwrap()
        ));
    }

    #[test]
    fn status_counts_replicas_across_replica_sets() {
        let d = deployment(4, int(1), int(1));
        let old = rs("old", 2, 2, 1);
        let new = rs("new", 3, 1, 2);
        let s = calculate_status(&[&old, &new], Some(&new), &d, Timestamp::UNIX_EPOCH);
        assert_eq!(s.replicas, Some(5));
        assert_eq!(s.updated_replicas, Some(3));
        assert_eq!(s.available_replicas, Some(3));
        assert_eq!(s.unavailable_replicas, Some(2));
        let a = get_condition(&s, "Available").unwrap();
        assert_eq!(
            (a.status.as_str(), a.reason.as_deref()),
            ("True", Some(reason::MIN_AVAILABLE))
        );
    }
}
