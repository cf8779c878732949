//! What taints a node's state calls for: upstream's condition taints
//! (NoSchedule, kept in step at once) and the NoExecute taints that evict
//! pods from a not-ready or unreachable node (added at a rate limit).

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub(crate) const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub(crate) const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub(crate) const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub(crate) const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub(crate) const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub(crate) const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub(crate) const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

pub(crate) const NO_SCHEDULE: &str = "NoSchedule";
pub(crate) const NO_EXECUTE: &str = "NoExecute";

/// The NoSchedule taints this controller owns.
const MANAGED_NO_SCHEDULE: &[&str] = &[
    NOT_READY,
    UNREACHABLE,
    UNSCHEDULABLE,
    MEMORY_PRESSURE,
    DISK_PRESSURE,
    PID_PRESSURE,
    NETWORK_UNAVAILABLE,
];

/// The node's condition of type `type_`.
pub(crate) fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The Ready condition's status: `True`, `False` or `Unknown` (`None` when
/// the kubelet never posted one).
pub(crate) fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// The NoSchedule taints the node's conditions and `spec.unschedulable`
/// call for (upstream's doNoScheduleTaintingPass).
pub(crate) fn wanted_no_schedule(node: &Node) -> Vec<&'static str> {
    let mut keys = Vec::new();
    match ready_status(node) {
        Some("False") => keys.push(NOT_READY),
        Some("Unknown") => keys.push(UNREACHABLE),
        _ => {}
    }
    for (type_, key) in [
        ("MemoryPressure", MEMORY_PRESSURE),
        ("DiskPressure", DISK_PRESSURE),
        ("PIDPressure", PID_PRESSURE),
        ("NetworkUnavailable", NETWORK_UNAVAILABLE),
    ] {
        if condition(node, type_).is_some_and(|c| c.status == "True") {
            keys.push(key);
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        keys.push(UNSCHEDULABLE);
    }
    keys
}

/// The NoExecute taint the node's readiness calls for: not-ready when
/// Ready is False, unreachable when Unknown, none when True (or never
/// posted).
pub(crate) fn wanted_no_execute(node: &Node) -> Option<&'static str> {
    match ready_status(node) {
        Some("False") => Some(NOT_READY),
        Some("Unknown") => Some(UNREACHABLE),
        _ => None,
    }
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// Whether the node carries the taint `key:effect`.
pub(crate) fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    taints(node)
        .iter()
        .any(|t| t.key == key && t.effect == effect)
}

/// The node's taints with the managed NoSchedule ones set to `wanted`;
/// `None` when they already are.
pub(crate) fn with_no_schedule(node: &Node, wanted: &[&str]) -> Option<Vec<Taint>> {
    let current = taints(node);
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !(t.effect == NO_SCHEDULE
                && MANAGED_NO_SCHEDULE.contains(&t.key.as_str())
                && !wanted.contains(&t.key.as_str()))
        })
        .cloned()
        .collect();
    for key in wanted {
        if !out.iter().any(|t| t.key == *key && t.effect == NO_SCHEDULE) {
            out.push(Taint {
                key: (*key).to_owned(),
                effect: NO_SCHEDULE.into(),
                ..Taint::default()
            });
        }
    }
    (out.as_slice() != current).then_some(out)
}

/// The node's taints with the NoExecute not-ready/unreachable taint set to
/// `wanted` (stamped `now`); `None` when it already is.
pub(crate) fn with_no_execute(
    node: &Node,
    wanted: Option<&str>,
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let current = taints(node);
    let is_ours =
        |t: &Taint| t.effect == NO_EXECUTE && (t.key == NOT_READY || t.key == UNREACHABLE);
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !is_ours(t) || Some(t.key.as_str()) == wanted)
        .cloned()
        .collect();
    if let Some(key) = wanted
        && !out.iter().any(|t| t.key == key && t.effect == NO_EXECUTE)
    {
        out.push(Taint {
            key: key.to_owned(),
            effect: NO_EXECUTE.into(),
            time_added: Some(Time(now)),
            value: None,
        });
    }
    (out.as_slice() != current).then_some(out)
}

/// Whether `toleration` tolerates `taint` (upstream's ToleratesTaint).
pub(crate) fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// When a pod must leave a node with NoExecute `taints`, counted from when
/// the taints came: `Some(ZERO)` at once (a taint it does not tolerate),
/// `Some(d)` after the shortest tolerationSeconds of the tolerations it
/// uses, `None` never.
pub(crate) fn eviction_delay(
    tolerations: &[Toleration],
    taints: &[&Taint],
) -> Option<std::time::Duration> {
    let mut min: Option<i64> = None;
    let mut bounded = false;
    for taint in taints {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Some(std::time::Duration::ZERO);
        }
        for t in used {
            if let Some(s) = t.toleration_seconds {
                bounded = true;
                min = Some(min.map_or(s, |m| m.min(s)));
            }
        }
    }
    if !bounded {
        return None;
    }
    Some(std::time::Duration::from_secs(
        min.unwrap_or(0).max(0) as u64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn ready(status: &str) -> Node {
        node(json!({"metadata": {"name": "n"}, "status": {"conditions": [
            {"type": "Ready", "status": status},
        ]}}))
    }

    #[test]
    fn readiness_picks_the_no_schedule_and_no_execute_taints() {
        assert_eq!(wanted_no_schedule(&ready("False")), [NOT_READY]);
        assert_eq!(wanted_no_schedule(&ready("Unknown")), [UNREACHABLE]);
        assert!(wanted_no_schedule(&ready("True")).is_empty());
        assert_eq!(wanted_no_execute(&ready("False")), Some(NOT_READY));
        assert_eq!(wanted_no_execute(&ready("Unknown")), Some(UNREACHABLE));
        assert_eq!(wanted_no_execute(&ready("True")), None);
        assert_eq!(wanted_no_execute(&node(json!({}))), None);
    }

    #[test]
    fn pressure_conditions_and_cordoning_add_their_taints() {
        let n = node(
            json!({"spec": {"unschedulable": true}, "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "MemoryPressure", "status": "True"},
                {"type": "DiskPressure", "status": "False"},
                {"type": "PIDPressure", "status": "True"},
                {"type": "NetworkUnavailable", "status": "True"},
            ]}}),
        );
        assert_eq!(
            wanted_no_schedule(&n),
            [
                MEMORY_PRESSURE,
                PID_PRESSURE,
                NETWORK_UNAVAILABLE,
                UNSCHEDULABLE
            ]
        );
    }

    #[test]
    fn the_registration_taint_goes_once_ready_and_foreign_taints_stay() {
        let n = node(json!({"spec": {"taints": [
            {"key": NOT_READY, "effect": "NoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": UNREACHABLE, "effect": "NoExecute"},
        ]}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        let taints = with_no_schedule(&n, &wanted_no_schedule(&n)).unwrap();
        let keys: Vec<&str> = taints.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["dedicated", UNREACHABLE]);
        let mut n2 = n.clone();
        n2.spec.as_mut().unwrap().taints = Some(taints);
        assert!(with_no_schedule(&n2, &wanted_no_schedule(&n2)).is_none());
        let taints = with_no_execute(&n2, None, Timestamp::now()).unwrap();
        assert_eq!(taints.len(), 1);
    }

    #[test]
    fn no_execute_taints_swap_and_carry_the_time_added() {
        let n = node(json!({"spec": {"taints": [{"key": NOT_READY, "effect": "NoExecute"}]}}));
        let now = Timestamp::now();
        let taints = with_no_execute(&n, Some(UNREACHABLE), now).unwrap();
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0].key, UNREACHABLE);
        assert_eq!(taints[0].time_added, Some(Time(now)));
        assert!(with_no_execute(&n, Some(NOT_READY), now).is_none());
    }

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: NO_EXECUTE.into(),
            ..Taint::default()
        };
        assert!(tolerates(
            &toleration(json!({"operator": "Exists"})),
            &taint
        ));
        assert!(tolerates(
            &toleration(json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
        assert!(!tolerates(
            &toleration(json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"})),
            &taint
        ));
        assert!(tolerates(&toleration(json!({"key": UNREACHABLE})), &taint));
        assert!(!tolerates(
            &toleration(json!({"key": UNREACHABLE, "value": "x"})),
            &taint
        ));
        assert!(!tolerates(
            &toleration(json!({"key": NOT_READY, "operator": "Exists"})),
            &taint
        ));
    }

    #[test]
    fn eviction_waits_for_the_shortest_toleration() {
        let unreachable = Taint {
            key: UNREACHABLE.into(),
            effect: NO_EXECUTE.into(),
            ..Taint::default()
        };
        let other = Taint {
            key: "x".into(),
            effect: NO_EXECUTE.into(),
            ..Taint::default()
        };
        let secs = |s: u64| Some(std::time::Duration::from_secs(s));
        assert_eq!(eviction_delay(&[], &[&unreachable]), secs(0));
        let t300 = toleration(
            json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
        );
        let t10 = toleration(json!({"operator": "Exists", "tolerationSeconds": 10}));
        let forever = toleration(json!({"operator": "Exists"}));
        assert_eq!(
            eviction_delay(std::slice::from_ref(&t300), &[&unreachable]),
            secs(300)
        );
        assert_eq!(
            eviction_delay(&[t300.clone(), t10], &[&unreachable]),
            secs(10)
        );
        assert_eq!(
            eviction_delay(std::slice::from_ref(&forever), &[&unreachable, &other]),
            None
        );
        assert_eq!(eviction_delay(&[t300], &[&unreachable, &other]), secs(0));
    }
}
