//! NodeAffinity: `spec.nodeSelector` and required node affinity decide
//! which nodes a pod may use (plus the profile's `addedAffinity`);
//! preferred terms add their weights to the node's score.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeAffinity as K8sNodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PreferredSchedulingTerm,
};
use serde_json::Value;

use crate::cache::Snapshot;
use crate::extension_points;
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, Plugin, PreFilterPlugin,
    PreScorePlugin, Resource, ScorePlugin, Status, action, default_normalize_score,
};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeAffinity";
/// Upstream's reason for a node the pod's own rules exclude.
pub const REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
/// Upstream's reason for a node the profile's `addedAffinity` excludes.
pub const REASON_ENFORCED: &str = "node(s) didn't match scheduler-enforced node affinity";
const REASON_CONFLICT: &str = "pod affinity terms conflict";
const PRE_FILTER_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_KEY: &str = "PreScoreNodeAffinity";

/// The nodeSelector and required node affinity of a pod.
#[derive(Clone, Debug, Default)]
pub struct RequiredNodeAffinity {
    selector: Option<BTreeMap<String, String>>,
    terms: Option<Vec<NodeSelectorTerm>>,
}

impl RequiredNodeAffinity {
    /// What `pod` requires.
    pub fn of(pod: &Pod) -> RequiredNodeAffinity {
        let spec = pod.spec.as_ref();
        RequiredNodeAffinity {
            selector: spec
                .and_then(|s| s.node_selector.clone())
                .filter(|s| !s.is_empty()),
            terms: spec
                .and_then(|s| s.affinity.as_ref())
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|r| r.node_selector_terms.clone()),
        }
    }

    /// Whether `node` satisfies both.
    pub fn matches(&self, node: &Node) -> bool {
        if let Some(sel) = &self.selector {
            let labels = node.metadata.labels.as_ref();
            if !sel
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            {
                return false;
            }
        }
        match &self.terms {
            None => true,
            Some(terms) => terms_match(terms, node),
        }
    }

    /// Whether it requires anything.
    pub fn is_empty(&self) -> bool {
        self.selector.is_none() && self.terms.is_none()
    }
}

/// Whether any of `terms` matches `node` (terms are ORed).
pub fn terms_match(terms: &[NodeSelectorTerm], node: &Node) -> bool {
    terms.iter().any(|t| term_matches(t, node))
}

/// Whether every requirement of `term` matches; an empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let name = node.metadata.name.as_deref();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, name))
}

/// One `matchExpressions` requirement against the value of its key.
pub fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) => {
                    if op == "Gt" {
                        v > b
                    } else {
                        v < b
                    }
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Filters by required node affinity, scores by preferred.
pub struct NodeAffinity {
    added: Option<K8sNodeAffinity>,
}

impl NodeAffinity {
    /// Reads `addedAffinity` from the plugin's args.
    pub fn new(args: &Value) -> Result<NodeAffinity, String> {
        let added = match args.get("addedAffinity") {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(serde_json::from_value(v.clone()).map_err(|e| format!("addedAffinity: {e}"))?)
            }
        };
        Ok(NodeAffinity { added })
    }

    fn added_required(&self) -> Option<&Vec<NodeSelectorTerm>> {
        self.added
            .as_ref()
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|r| &r.node_selector_terms)
    }

    fn added_preferred(&self) -> &[PreferredSchedulingTerm] {
        self.added
            .as_ref()
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or(&[])
    }
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent::new(
            Resource::Node,
            action::ADD | action::UPDATE_NODE_LABEL,
            "NodeAddOrLabelChange",
        )]
    }
    extension_points!(
        as_pre_filter: PreFilterPlugin,
        as_filter: FilterPlugin,
        as_pre_score: PreScorePlugin,
        as_score: ScorePlugin,
    );
}

#[derive(Clone)]
struct PreFilterState(Arc<RequiredNodeAffinity>);

#[derive(Clone)]
struct PreScoreState(Arc<Vec<PreferredSchedulingTerm>>);

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<BTreeSet<String>>, Status) {
        let required = RequiredNodeAffinity::of(&pod.pod);
        if required.is_empty() && self.added_required().is_none() {
            return (None, Status::skip());
        }
        let terms = required.terms.clone();
        state.write(PRE_FILTER_KEY, PreFilterState(Arc::new(required)));
        let Some(terms) = terms.filter(|t| !t.is_empty()) else {
            return (None, Status::success());
        };
        // Terms that pin metadata.name narrow the search to those nodes.
        let mut names: Option<BTreeSet<String>> = None;
        for t in &terms {
            let mut term_names: Option<BTreeSet<String>> = None;
            for r in t.match_fields.iter().flatten() {
                if r.key == "metadata.name" && r.operator == "In" {
                    let s: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                    term_names = Some(match term_names {
                        None => s,
                        Some(prev) => prev.intersection(&s).cloned().collect(),
                    });
                }
            }
            let Some(term_names) = term_names else {
                return (None, Status::success());
            };
            names.get_or_insert_with(BTreeSet::new).extend(term_names);
        }
        match names {
            Some(n) if n.is_empty() => (None, Status::unresolvable(REASON_CONFLICT)),
            other => (other, Status::success()),
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let node = node.node();
        if let Some(terms) = self.added_required()
            && !terms_match(terms, node)
        {
            return Status::unresolvable(REASON_ENFORCED);
        }
        let fits = match state.read::<PreFilterState>(PRE_FILTER_KEY) {
            Some(PreFilterState(r)) => r.matches(node),
            None => RequiredNodeAffinity::of(&pod.pod).matches(node),
        };
        if fits {
            Status::success()
        } else {
            Status::unresolvable(REASON_POD)
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        let mut terms: Vec<PreferredSchedulingTerm> = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .clone()
            })
            .unwrap_or_default();
        terms.extend(self.added_preferred().iter().cloned());
        if terms.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, PreScoreState(Arc::new(terms)));
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(PreScoreState(terms)) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Ok(0);
        };
        let node = node.node();
        Ok(terms
            .iter()
            .filter(|t| t.weight != 0 && term_matches(&t.preference, node))
            .map(|t| t.weight as i64)
            .sum())
    }

    fn normalize(
        &self,
        _: &CycleState,
        _: &PodInfo,
        _: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod};
    use serde_json::json;

    fn node(labels: Value) -> NodeInfo {
        node_info(
            json!({"metadata": {"name": "n1", "labels": labels}}),
            vec![],
        )
    }

    fn filter(plugin: &NodeAffinity, p: &PodInfo, n: &NodeInfo) -> Status {
        let mut state = CycleState::default();
        let (_, s) = plugin.pre_filter(&mut state, p, &Snapshot::default());
        if s.code == crate::framework::Code::Skip {
            return Status::success();
        }
        plugin.filter(&state, p, n)
    }

    #[test]
    fn node_selector_and_required_terms_filter_like_upstream() {
        let plugin = NodeAffinity::new(&Value::Null).unwrap();
        let n = node(json!({"disk": "ssd", "zone": "a", "gen": "5"}));
        let term = |exprs: Value| {
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}})
        };
        let cases = [
            (json!({}), true),
            (json!({"nodeSelector": {"disk": "ssd"}}), true),
            (json!({"nodeSelector": {"disk": "hdd"}}), false),
            (
                term(json!([{"key": "zone", "operator": "In", "values": ["a", "b"]}])),
                true,
            ),
            (
                term(json!([{"key": "zone", "operator": "NotIn", "values": ["a"]}])),
                false,
            ),
            (
                term(json!([{"key": "gpu", "operator": "DoesNotExist"}])),
                true,
            ),
            (term(json!([{"key": "gpu", "operator": "Exists"}])), false),
            (
                term(json!([{"key": "gen", "operator": "Gt", "values": ["4"]}])),
                true,
            ),
            (
                term(json!([{"key": "gen", "operator": "Lt", "values": ["4"]}])),
                false,
            ),
        ];
        for (spec, want) in cases {
            let p = pod(json!({ "spec": spec }));
            let s = filter(&plugin, &p, &n);
            assert_eq!(s.is_success(), want, "{spec}");
            if !want {
                assert_eq!(s.message(), REASON_POD);
            }
        }
    }

    #[test]
    fn metadata_name_fields_narrow_the_nodes() {
        let plugin = NodeAffinity::new(&Value::Null).unwrap();
        let p = pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1", "n2"]}]}]}}}}}),
        );
        let (nodes, s) = plugin.pre_filter(&mut CycleState::default(), &p, &Snapshot::default());
        assert!(s.is_success());
        assert_eq!(nodes.unwrap().into_iter().collect::<Vec<_>>(), ["n1", "n2"]);
    }

    #[test]
    fn added_affinity_is_enforced_for_every_pod() {
        let plugin = NodeAffinity::new(&json!({"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["batch"]}]}]}}}))
        .unwrap();
        let s = filter(&plugin, &pod(json!({})), &node(json!({"pool": "web"})));
        assert_eq!(s.message(), REASON_ENFORCED);
        assert!(filter(&plugin, &pod(json!({})), &node(json!({"pool": "batch"}))).is_success());
    }

    #[test]
    fn preferred_terms_score_their_weights() {
        let plugin = NodeAffinity::new(&Value::Null).unwrap();
        let p = pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 2, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}}}),
        );
        let nodes: Vec<Arc<NodeInfo>> = [
            json!({"disk": "ssd", "zone": "a"}),
            json!({"zone": "a"}),
            json!({}),
        ]
        .into_iter()
        .map(|l| Arc::new(node(l)))
        .collect();
        let mut state = CycleState::default();
        assert!(
            plugin
                .pre_score(&mut state, &p, &nodes, &Snapshot::default())
                .is_success()
        );
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| plugin.score(&state, &p, n).unwrap())
            .collect();
        assert_eq!(scores, [7, 2, 0]);
        plugin.normalize(&state, &p, &nodes, &mut scores);
        assert_eq!(scores, [100, 28, 0]);
    }
}
