//! Which nodes a DaemonSet's pod belongs on (upstream's
//! `NodeShouldRunDaemonPod`): the node selector and required node affinity
//! match, and every NoSchedule/NoExecute taint is tolerated, with the
//! tolerations the controller adds to every daemon pod. And how a daemon
//! pod is pinned to its node: a required node affinity on
//! `metadata.name`, which the default scheduler honours.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};

/// Whether the daemon pod should be placed on the node, and whether one
/// already there may stay (NoSchedule taints do not evict).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub should_run: bool,
    pub should_continue_running: bool,
}

/// The tolerations upstream's controller adds to every daemon pod.
pub(crate) fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        value: None,
        toleration_seconds: None,
    };
    let mut all = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        all.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    all
}

/// Adds `extra` to the spec's tolerations unless one with the same key,
/// operator, value and effect is there.
pub(crate) fn add_tolerations(spec: &mut PodSpec, extra: Vec<Toleration>) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in extra {
        let same = |x: &Toleration| {
            x.key == t.key
                && x.effect == t.effect
                && x.operator.as_deref().unwrap_or("Equal")
                    == t.operator.as_deref().unwrap_or("Equal")
        };
        if let Some(existing) = tolerations.iter_mut().find(|x| same(x)) {
            *existing = t;
        } else {
            tolerations.push(t);
        }
    }
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            key == taint.key
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == "metadata.name" && requirement_matches(r, node.metadata.name.as_deref())
        })
}

/// Whether the node selector and the required node affinity admit the node.
pub(crate) fn affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(selector) = &spec.node_selector
        && !selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// Where the DaemonSet's pod (from `template`) belongs.
pub(crate) fn placement(template: &PodSpec, node: &Node) -> Placement {
    let mut spec = template.clone();
    let host_network = spec.host_network == Some(true);
    add_tolerations(&mut spec, daemon_tolerations(host_network));
    if !affinity_matches(&spec, node) {
        return Placement {
            should_run: false,
            should_continue_running: false,
        };
    }
    let tolerations = spec.tolerations.unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
    };
    let no_execute = untolerated("NoExecute");
    let no_schedule = untolerated("NoSchedule");
    Placement {
        should_run: !no_execute && !no_schedule,
        should_continue_running: !no_execute,
    }
}

/// Pins the pod to `node` (upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`):
/// every required term gets `metadata.name In [node]` as its only field
/// requirement, or one such term is made.
pub(crate) fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let field = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![field.clone()]);
    }
}

/// The node a daemon pod is on, or is pinned to.
pub(crate) fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|f| {
            let values = f.values.as_deref().unwrap_or(&[]);
            (f.key == "metadata.name" && f.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}
        }))
        .unwrap()
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn selectors_and_required_affinity_pick_the_nodes() {
        let linux = node("a", json!({"os": "linux", "cores": "8"}), json!([]));
        let other = node("b", json!({"os": "windows"}), json!([]));
        let s = spec(json!({"nodeSelector": {"os": "linux"}}));
        assert!(placement(&s, &linux).should_run);
        assert!(!placement(&s, &other).should_run);
        let s = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}}}),
        );
        assert!(placement(&s, &linux).should_run);
        assert!(!placement(&s, &other).should_run);
    }

    #[test]
    fn taints_keep_pods_off_unless_tolerated_and_no_schedule_does_not_evict() {
        let tainted = node(
            "a",
            json!({}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        let p = placement(&spec(json!({})), &tainted);
        assert_eq!(
            p,
            Placement {
                should_run: false,
                should_continue_running: true
            }
        );
        let tolerating = spec(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}]}),
        );
        assert!(placement(&tolerating, &tainted).should_run);
        let evicting = node(
            "b",
            json!({}),
            json!([{"key": "gone", "effect": "NoExecute"}]),
        );
        assert_eq!(
            placement(&spec(json!({})), &evicting),
            Placement {
                should_run: false,
                should_continue_running: false
            }
        );
    }

    #[test]
    fn daemon_pods_tolerate_node_conditions_and_network_only_on_the_host_network() {
        let not_ready = node(
            "a",
            json!({}),
            json!([
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"}]),
        );
        assert!(placement(&spec(json!({})), &not_ready).should_run);
        let no_network = node(
            "b",
            json!({}),
            json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
        );
        assert!(!placement(&spec(json!({})), &no_network).should_run);
        assert!(placement(&spec(json!({"hostNetwork": true})), &no_network).should_run);
        let added = daemon_tolerations(false);
        assert!(added.iter().all(|t| t.toleration_seconds.is_none()));
        assert_eq!(added.len(), 6);
    }

    #[test]
    fn pinning_sets_the_node_name_field_in_every_term() {
        let mut s = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "os", "operator": "In", "values": ["linux"]}]},
                                  {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["x"]}]}]}}}}),
        );
        pin_to_node(&mut s, "a");
        let pod = Pod {
            spec: Some(s.clone()),
            ..Pod::default()
        };
        assert_eq!(node_of(&pod).as_deref(), Some("a"));
        let a = node("a", json!({"os": "linux"}), json!([]));
        let b = node("b", json!({"os": "linux"}), json!([]));
        assert!(affinity_matches(&s, &a));
        assert!(!affinity_matches(&s, &b));
        let mut plain = spec(json!({}));
        pin_to_node(&mut plain, "b");
        assert!(affinity_matches(&plain, &b));
    }
}
