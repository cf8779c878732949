//! InterPodAffinity: required pod affinity (the pod must share a topology
//! domain with pods it selects), required anti-affinity (it must not, and
//! existing pods' anti-affinity must not select it), and the preferred
//! forms as scores. Terms look in their namespaces, in the pod's own by
//! default, and in those a `namespaceSelector` selects.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::cache::Snapshot;
use crate::extension_points;
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, Handle, MAX_NODE_SCORE, Plugin, PreFilterPlugin,
    PreScorePlugin, Resource, ScorePlugin, Status, action,
};
use crate::nodeinfo::{AffinityTerm, NodeInfo, PodInfo, WeightedAffinityTerm};
use skiff_api_types::selector::LabelSelector;

pub const NAME: &str = "InterPodAffinity";
/// Upstream's reasons.
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
const PRE_FILTER_KEY: &str = "PreFilterInterPodAffinity";
const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";

type Pair = (String, String);

/// Filters by required (anti-)affinity, scores by preferred.
pub struct InterPodAffinity {
    handle: Arc<Handle>,
    hard_pod_affinity_weight: i64,
    ignore_preferred_terms_of_existing_pods: bool,
}

impl InterPodAffinity {
    /// Reads `InterPodAffinityArgs`.
    pub fn new(args: &Value, handle: Arc<Handle>) -> Result<InterPodAffinity, String> {
        let weight = args
            .get("hardPodAffinityWeight")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if !(0..=100).contains(&weight) {
            return Err(format!("hardPodAffinityWeight {weight} must be in 0..=100"));
        }
        Ok(InterPodAffinity {
            handle,
            hard_pod_affinity_weight: weight,
            ignore_preferred_terms_of_existing_pods: args
                .get("ignorePreferredTermsOfExistingPods")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// The term with the namespaces its namespaceSelector selects merged
    /// into `namespaces` (upstream's `mergeAffinityTermNamespacesIfNotEmpty`).
    fn merged(&self, term: &AffinityTerm) -> AffinityTerm {
        let mut t = term.clone();
        if t.namespace_selector.matches_nothing() {
            return t;
        }
        for ns in self.handle.listers.namespaces.list() {
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            if t.namespace_selector.matches(&labels)
                && let Some(name) = &ns.metadata.name
            {
                t.namespaces.insert(name.clone());
            }
        }
        t.namespace_selector = LabelSelector::nothing();
        t
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(
                Resource::Pod,
                action::ADD | action::DELETE | action::UPDATE_POD_LABEL,
                "AssignedPodChange",
            ),
            ClusterEvent::new(
                Resource::Node,
                action::ADD | action::UPDATE_NODE_LABEL,
                "NodeAddOrLabelChange",
            ),
            ClusterEvent::new(
                Resource::Namespace,
                action::ADD | action::UPDATE,
                "NamespaceChange",
            ),
        ]
    }
    extension_points!(
        as_pre_filter: PreFilterPlugin,
        as_filter: FilterPlugin,
        as_pre_score: PreScorePlugin,
        as_score: ScorePlugin,
    );
}

fn bump(m: &mut HashMap<Pair, i64>, node: &NodeInfo, key: &str, delta: i64) {
    if let Some(v) = node.label(key) {
        let pair = (key.to_owned(), v.to_owned());
        let e = m.entry(pair.clone()).or_insert(0);
        *e += delta;
        if *e == 0 {
            m.remove(&pair);
        }
    }
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, None))
}

/// What PreFilter counted.
#[derive(Clone, Default)]
struct PreFilterState {
    /// Topology pairs where an existing pod's required anti-affinity selects the pod.
    existing_anti_affinity: HashMap<Pair, i64>,
    /// Pairs holding pods that match all of the pod's required affinity terms.
    affinity: HashMap<Pair, i64>,
    /// Pairs holding pods its required anti-affinity terms select.
    anti_affinity: HashMap<Pair, i64>,
    affinity_terms: Arc<Vec<AffinityTerm>>,
    anti_affinity_terms: Arc<Vec<AffinityTerm>>,
    namespace_labels: Arc<std::collections::BTreeMap<String, String>>,
}

impl PreFilterState {
    fn update_with(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        for t in &other.required_anti_affinity_terms {
            if t.matches(pod, Some(&self.namespace_labels)) {
                bump(
                    &mut self.existing_anti_affinity,
                    node,
                    &t.topology_key,
                    delta,
                );
            }
        }
        if matches_all(&self.affinity_terms, other) {
            for t in self.affinity_terms.iter() {
                bump(&mut self.affinity, node, &t.topology_key, delta);
            }
        }
        for t in self.anti_affinity_terms.iter() {
            if t.matches(other, None) {
                bump(&mut self.anti_affinity, node, &t.topology_key, delta);
            }
        }
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<BTreeSet<String>>, Status) {
        let has_own =
            !pod.required_affinity_terms.is_empty() || !pod.required_anti_affinity_terms.is_empty();
        if !has_own && snapshot.with_required_anti_affinity.is_empty() {
            return (None, Status::skip());
        }
        let mut s = PreFilterState {
            affinity_terms: Arc::new(
                pod.required_affinity_terms
                    .iter()
                    .map(|t| self.merged(t))
                    .collect(),
            ),
            anti_affinity_terms: Arc::new(
                pod.required_anti_affinity_terms
                    .iter()
                    .map(|t| self.merged(t))
                    .collect(),
            ),
            namespace_labels: Arc::new(self.handle.listers.namespace_labels(&pod.namespace)),
            ..PreFilterState::default()
        };
        for &i in &snapshot.with_required_anti_affinity {
            let node = &snapshot.nodes[i];
            for other in &node.pods_with_required_anti_affinity {
                for t in &other.required_anti_affinity_terms {
                    if t.matches(pod, Some(&s.namespace_labels)) {
                        bump(&mut s.existing_anti_affinity, node, &t.topology_key, 1);
                    }
                }
            }
        }
        if has_own {
            for node in &snapshot.nodes {
                for other in &node.pods {
                    if matches_all(&s.affinity_terms, other) {
                        for t in s.affinity_terms.iter() {
                            bump(&mut s.affinity, node, &t.topology_key, 1);
                        }
                    }
                    for t in s.anti_affinity_terms.iter() {
                        if t.matches(other, None) {
                            bump(&mut s.anti_affinity, node, &t.topology_key, 1);
                        }
                    }
                }
            }
        }
        state.write(PRE_FILTER_KEY, s);
        (None, Status::success())
    }

    fn has_extensions(&self) -> bool {
        true
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) {
            s.update_with(pod, other, node, 1);
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) {
            s.update_with(pod, other, node, -1);
        }
        Status::success()
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return Status::error("InterPodAffinity: no PreFilter state");
        };
        // Affinity: every term's topology must be on the node and hold a
        // matching pod, unless no pod matches anywhere and the pod matches
        // its own terms (the first of a group that likes itself).
        let mut pods_exist = true;
        for t in s.affinity_terms.iter() {
            match node.label(&t.topology_key) {
                Some(v) => {
                    if s.affinity
                        .get(&(t.topology_key.clone(), v.to_owned()))
                        .copied()
                        .unwrap_or(0)
                        <= 0
                    {
                        pods_exist = false;
                    }
                }
                None => return Status::unresolvable(REASON_AFFINITY),
            }
        }
        if !(pods_exist || s.affinity.is_empty() && matches_all(&s.affinity_terms, pod)) {
            return Status::unresolvable(REASON_AFFINITY);
        }
        if !s.anti_affinity.is_empty() {
            for t in s.anti_affinity_terms.iter() {
                if let Some(v) = node.label(&t.topology_key)
                    && s.anti_affinity
                        .get(&(t.topology_key.clone(), v.to_owned()))
                        .copied()
                        .unwrap_or(0)
                        > 0
                {
                    return Status::unschedulable(REASON_ANTI_AFFINITY);
                }
            }
        }
        if !s.existing_anti_affinity.is_empty()
            && let Some(labels) = node.labels()
        {
            for (k, v) in labels {
                if s.existing_anti_affinity
                    .get(&(k.clone(), v.clone()))
                    .copied()
                    .unwrap_or(0)
                    > 0
                {
                    return Status::unschedulable(REASON_EXISTING_ANTI_AFFINITY);
                }
            }
        }
        Status::success()
    }
}

/// topology key → value → score.
#[derive(Clone, Default)]
struct PreScoreState(Arc<HashMap<String, HashMap<String, i64>>>);

fn add_term(
    scores: &mut HashMap<String, HashMap<String, i64>>,
    term: &AffinityTerm,
    weight: i64,
    target: &PodInfo,
    ns_labels: Option<&std::collections::BTreeMap<String, String>>,
    node: &NodeInfo,
) {
    if term.matches(target, ns_labels)
        && let Some(v) = node.label(&term.topology_key)
    {
        *scores
            .entry(term.topology_key.clone())
            .or_default()
            .entry(v.to_owned())
            .or_insert(0) += weight;
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let has_constraints = !pod.preferred_affinity_terms.is_empty()
            || !pod.preferred_anti_affinity_terms.is_empty();
        if self.ignore_preferred_terms_of_existing_pods && !has_constraints {
            return Status::skip();
        }
        if !has_constraints && snapshot.with_affinity.is_empty() {
            return Status::skip();
        }
        let merge = |terms: &[WeightedAffinityTerm]| -> Vec<WeightedAffinityTerm> {
            terms
                .iter()
                .map(|w| WeightedAffinityTerm {
                    term: self.merged(&w.term),
                    weight: w.weight,
                })
                .collect()
        };
        let preferred = merge(&pod.preferred_affinity_terms);
        let preferred_anti = merge(&pod.preferred_anti_affinity_terms);
        let ns_labels = self.handle.listers.namespace_labels(&pod.namespace);
        let mut scores: HashMap<String, HashMap<String, i64>> = HashMap::new();
        let nodes: Box<dyn Iterator<Item = &Arc<NodeInfo>>> = if has_constraints {
            Box::new(snapshot.nodes.iter())
        } else {
            Box::new(snapshot.with_affinity.iter().map(|i| &snapshot.nodes[*i]))
        };
        for node in nodes {
            if node.labels().is_none_or(|l| l.is_empty()) {
                continue;
            }
            let existing = if has_constraints {
                &node.pods
            } else {
                &node.pods_with_affinity
            };
            for other in existing {
                for w in &preferred {
                    add_term(&mut scores, &w.term, w.weight as i64, other, None, node);
                }
                for w in &preferred_anti {
                    add_term(&mut scores, &w.term, -(w.weight as i64), other, None, node);
                }
                if self.hard_pod_affinity_weight > 0 {
                    for t in &other.required_affinity_terms {
                        add_term(
                            &mut scores,
                            t,
                            self.hard_pod_affinity_weight,
                            pod,
                            Some(&ns_labels),
                            node,
                        );
                    }
                }
                for w in &other.preferred_affinity_terms {
                    add_term(
                        &mut scores,
                        &w.term,
                        w.weight as i64,
                        pod,
                        Some(&ns_labels),
                        node,
                    );
                }
                for w in &other.preferred_anti_affinity_terms {
                    add_term(
                        &mut scores,
                        &w.term,
                        -(w.weight as i64),
                        pod,
                        Some(&ns_labels),
                        node,
                    );
                }
            }
        }
        if scores.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, PreScoreState(Arc::new(scores)));
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(PreScoreState(s)) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Ok(0);
        };
        Ok(s.iter()
            .filter_map(|(k, values)| node.label(k).and_then(|v| values.get(v)))
            .sum())
    }

    fn normalize(
        &self,
        state: &CycleState,
        _: &PodInfo,
        _: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        if state.read::<PreScoreState>(PRE_SCORE_KEY).is_none() {
            return Status::success();
        }
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return Status::success();
        };
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node_info, pod};
    use serde_json::json;

    fn handle() -> Arc<Handle> {
        Handle::for_tests()
    }

    fn node(name: &str, zone: &str, pods: Vec<Value>) -> NodeInfo {
        node_info(
            json!({"metadata": {"name": name, "labels": {"zone": zone, "kubernetes.io/hostname": name}}}),
            pods,
        )
    }

    fn app(label: &str) -> Value {
        json!({"metadata": {"labels": {"app": label}}})
    }

    fn with_terms(kind: &str, key: &str, app: &str) -> Value {
        json!({"metadata": {"labels": {"app": "new"}}, "spec": {"affinity": {kind: {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}}})
    }

    fn run(plugin: &InterPodAffinity, p: &PodInfo, nodes: &[NodeInfo]) -> Vec<Status> {
        let snapshot = Snapshot::from_nodes(nodes.to_vec());
        let mut state = CycleState::default();
        let (_, s) = plugin.pre_filter(&mut state, p, &snapshot);
        if s.code == Code::Skip {
            return nodes.iter().map(|_| Status::success()).collect();
        }
        snapshot
            .nodes
            .iter()
            .map(|n| plugin.filter(&state, p, n))
            .collect()
    }

    #[test]
    fn required_affinity_and_anti_affinity_filter_by_topology() {
        let plugin = InterPodAffinity::new(&Value::Null, handle()).unwrap();
        let nodes = vec![
            node("a1", "a", vec![app("db")]),
            node("a2", "a", vec![]),
            node("b1", "b", vec![app("web")]),
        ];
        let ok = |v: Vec<Status>| v.iter().map(Status::is_success).collect::<Vec<_>>();
        // Affinity to db in the same zone: both zone-a nodes.
        let p = pod(with_terms("podAffinity", "zone", "db"));
        assert_eq!(ok(run(&plugin, &p, &nodes)), [true, true, false]);
        assert_eq!(run(&plugin, &p, &nodes)[2].message(), REASON_AFFINITY);
        // Anti-affinity to web on the same host: all but b1.
        let p = pod(with_terms(
            "podAntiAffinity",
            "kubernetes.io/hostname",
            "web",
        ));
        let got = run(&plugin, &p, &nodes);
        assert_eq!(ok(got.clone()), [true, true, false]);
        assert_eq!(got[2].message(), REASON_ANTI_AFFINITY);
        // Affinity to a group with no pods yet, matching itself: allowed.
        let p = pod(with_terms("podAffinity", "zone", "new"));
        assert_eq!(ok(run(&plugin, &p, &nodes)), [true, true, true]);
    }

    #[test]
    fn existing_pods_anti_affinity_keeps_matching_pods_away() {
        let plugin = InterPodAffinity::new(&Value::Null, handle()).unwrap();
        let guard = json!({"metadata": {"labels": {"app": "guard"}}, "spec": {"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "new"}}, "topologyKey": "zone"}]}}}});
        let nodes = vec![
            node("a1", "a", vec![guard]),
            node("a2", "a", vec![]),
            node("b1", "b", vec![]),
        ];
        let got = run(&plugin, &pod(app("new")), &nodes);
        assert_eq!(got[0].message(), REASON_EXISTING_ANTI_AFFINITY);
        assert_eq!(got[1].message(), REASON_EXISTING_ANTI_AFFINITY);
        assert!(got[2].is_success());
        // A pod the guard does not select goes anywhere.
        assert!(
            run(&plugin, &pod(app("other")), &nodes)
                .iter()
                .all(Status::is_success)
        );
    }

    #[test]
    fn namespace_selectors_look_in_the_selected_namespaces() {
        let h = handle();
        for (name, team) in [("prod", "x"), ("dev", "y")] {
            h.listers.namespaces.set(Arc::new(
                serde_json::from_value(
                    json!({"metadata": {"name": name, "labels": {"team": team}}}),
                )
                .unwrap(),
            ));
        }
        let plugin = InterPodAffinity::new(&Value::Null, h).unwrap();
        let db_in = |ns: &str| json!({"metadata": {"namespace": ns, "labels": {"app": "db"}}});
        let nodes = vec![
            node("a1", "a", vec![db_in("prod")]),
            node("b1", "b", vec![db_in("dev")]),
        ];
        let p = pod(
            json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone",
             "namespaceSelector": {"matchLabels": {"team": "x"}}}]}}}}),
        );
        let got: Vec<bool> = run(&plugin, &p, &nodes)
            .iter()
            .map(Status::is_success)
            .collect();
        assert_eq!(got, [true, false]);
    }

    #[test]
    fn preferred_terms_score_and_normalize() {
        let plugin = InterPodAffinity::new(&Value::Null, handle()).unwrap();
        let nodes = vec![
            node("a1", "a", vec![app("cache")]),
            node("b1", "b", vec![app("noisy")]),
            node("c1", "c", vec![]),
        ];
        let p = pod(json!({"spec": {"affinity": {
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10,
                "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10,
                "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": "zone"}}]}}}}));
        let snapshot = Snapshot::from_nodes(nodes);
        let mut state = CycleState::default();
        assert!(
            plugin
                .pre_score(&mut state, &p, &snapshot.nodes, &snapshot)
                .is_success()
        );
        let mut scores: Vec<i64> = snapshot
            .nodes
            .iter()
            .map(|n| plugin.score(&state, &p, n).unwrap())
            .collect();
        assert_eq!(scores, [10, -10, 0]);
        plugin.normalize(&state, &p, &snapshot.nodes, &mut scores);
        assert_eq!(scores, [100, 0, 50]);
    }

    #[test]
    fn preemption_updates_the_counts_when_pods_leave() {
        let plugin = InterPodAffinity::new(&Value::Null, handle()).unwrap();
        let nodes = vec![node("a1", "a", vec![app("web")])];
        let snapshot = Snapshot::from_nodes(nodes);
        let p = pod(with_terms(
            "podAntiAffinity",
            "kubernetes.io/hostname",
            "web",
        ));
        let mut state = CycleState::default();
        plugin.pre_filter(&mut state, &p, &snapshot);
        let mut n = (*snapshot.nodes[0]).clone();
        assert!(!plugin.filter(&state, &p, &n).is_success());
        let victim = n.pods[0].clone();
        n.remove_pod(&victim.uid);
        plugin.remove_pod(&mut state, &p, &victim, &n);
        assert!(plugin.filter(&state, &p, &n).is_success());
    }
}
