//! PodTopologySpread: `topologySpreadConstraints` keep matching pods spread
//! over topology domains. `DoNotSchedule` constraints filter (a node is
//! refused when placing the pod there would make its domain exceed the
//! emptiest one by more than `maxSkew`), `ScheduleAnyway` ones score. Pods
//! without constraints get the cluster defaults (upstream's system defaults:
//! hostname skew 3, zone skew 5, both ScheduleAnyway) over the pods of the
//! same Service, ReplicaSet, StatefulSet or ReplicationController.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use serde_json::Value;
use skiff_api_types::selector::{LabelSelector, Operator, Requirement};

use crate::cache::{LABEL_ZONE, Snapshot};
use crate::extension_points;
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, Handle, MAX_NODE_SCORE, Plugin, PreFilterPlugin,
    PreScorePlugin, Resource, ScorePlugin, Status, action,
};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::plugins::node_affinity::RequiredNodeAffinity;
use crate::plugins::taint_toleration::{do_not_schedule, untolerated};

pub const NAME: &str = "PodTopologySpread";
/// Upstream's reasons.
pub const REASON_CONSTRAINTS: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
/// `kubernetes.io/hostname`.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";
const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";

/// A constraint, parsed.
#[derive(Clone, Debug)]
pub struct Constraint {
    pub max_skew: i32,
    pub topology_key: String,
    pub selector: LabelSelector,
    pub min_domains: i32,
    /// nodeAffinityPolicy Honor (the default).
    pub honor_node_affinity: bool,
    /// nodeTaintsPolicy Honor (default Ignore).
    pub honor_node_taints: bool,
}

impl Constraint {
    fn parse(
        c: &TopologySpreadConstraint,
        pod_labels: &std::collections::BTreeMap<String, String>,
    ) -> Constraint {
        let mut selector = LabelSelector::from_k8s_option(c.label_selector.as_ref())
            .unwrap_or_else(|_| LabelSelector::nothing());
        let extra: Vec<Requirement> = c
            .match_label_keys
            .iter()
            .flatten()
            .filter_map(|k| {
                let v = pod_labels.get(k)?;
                Requirement::new(k.as_str(), Operator::In, [v.as_str()]).ok()
            })
            .collect();
        if !extra.is_empty() && !selector.matches_nothing() {
            let mut reqs = selector.requirements().to_vec();
            reqs.extend(extra);
            selector = LabelSelector::new(reqs);
        }
        Constraint {
            max_skew: c.max_skew,
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.unwrap_or(1),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Whether `node` counts for this constraint given the pod's affinity
    /// and tolerations (the node inclusion policies).
    fn includes(&self, pod: &PodInfo, node: &NodeInfo, required: &RequiredNodeAffinity) -> bool {
        if self.honor_node_affinity && !required.matches(node.node()) {
            return false;
        }
        if self.honor_node_taints {
            let taints = &node.taints;
            let tolerations = pod
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or(&[]);
            if untolerated(taints, tolerations, do_not_schedule).is_some() {
                return false;
            }
        }
        true
    }
}

/// Spreads pods over topology domains.
pub struct PodTopologySpread {
    handle: Arc<Handle>,
    /// Constraints for pods that have none.
    defaults: Vec<TopologySpreadConstraint>,
    /// Whether `defaults` are upstream's system defaults.
    system_defaulted: bool,
}

fn system_defaults() -> Vec<TopologySpreadConstraint> {
    vec![
        TopologySpreadConstraint {
            topology_key: LABEL_HOSTNAME.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            max_skew: 3,
            ..TopologySpreadConstraint::default()
        },
        TopologySpreadConstraint {
            topology_key: LABEL_ZONE.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            max_skew: 5,
            ..TopologySpreadConstraint::default()
        },
    ]
}

impl PodTopologySpread {
    /// Reads `PodTopologySpreadArgs` (`defaultConstraints`, `defaultingType`).
    pub fn new(args: &Value, handle: Arc<Handle>) -> Result<PodTopologySpread, String> {
        let kind = args
            .get("defaultingType")
            .and_then(Value::as_str)
            .unwrap_or("System");
        let listed: Vec<TopologySpreadConstraint> = match args.get("defaultConstraints") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| format!("defaultConstraints: {e}"))?
            }
        };
        for c in &listed {
            if c.label_selector.is_some() {
                return Err("defaultConstraints must not set labelSelector".into());
            }
            if c.max_skew <= 0 {
                return Err("defaultConstraints maxSkew must be greater than 0".into());
            }
        }
        let (defaults, system) = match kind {
            "System" => {
                if !listed.is_empty() {
                    return Err(
                        "defaultConstraints must be empty with defaultingType System".into(),
                    );
                }
                (system_defaults(), true)
            }
            "List" => (listed, false),
            other => return Err(format!("unknown defaultingType {other:?}")),
        };
        Ok(PodTopologySpread {
            handle,
            defaults,
            system_defaulted: system,
        })
    }

    /// The pod's own constraints with `action`, or the defaults over the
    /// selector of the workloads it belongs to.
    fn constraints(&self, pod: &PodInfo, action: &str) -> Vec<Constraint> {
        let own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or(&[]);
        if !own.is_empty() {
            return own
                .iter()
                .filter(|c| c.when_unsatisfiable == action)
                .map(|c| Constraint::parse(c, &pod.labels))
                .collect();
        }
        let wanted: Vec<&TopologySpreadConstraint> = self
            .defaults
            .iter()
            .filter(|c| c.when_unsatisfiable == action)
            .collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        let selector = self.default_selector(pod);
        if selector.is_empty() || selector.matches_nothing() {
            return Vec::new();
        }
        wanted
            .into_iter()
            .map(|c| {
                let mut parsed = Constraint::parse(c, &pod.labels);
                parsed.selector = selector.clone();
                parsed
            })
            .collect()
    }

    /// upstream's `DefaultSelector`: the selectors of the Services selecting
    /// the pod, and of its controlling ReplicaSet, StatefulSet or
    /// ReplicationController.
    fn default_selector(&self, pod: &PodInfo) -> LabelSelector {
        let listers = &self.handle.listers;
        let mut set: std::collections::BTreeMap<String, String> = Default::default();
        for svc in listers.services.list_namespace(&pod.namespace) {
            let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            if sel.is_empty() {
                continue;
            }
            if sel.iter().all(|(k, v)| pod.labels.get(k) == Some(v)) {
                set.extend(sel.clone());
            }
        }
        let mut reqs: Vec<Requirement> = Vec::new();
        let owner = pod
            .pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        if let Some(owner) = owner {
            let key = format!("{}/{}", pod.namespace, owner.name);
            match (owner.api_version.as_str(), owner.kind.as_str()) {
                ("v1", "ReplicationController") => {
                    if let Some(rc) = listers.replication_controllers.get(&key)
                        && let Some(sel) = rc.spec.as_ref().and_then(|s| s.selector.clone())
                    {
                        set.extend(sel);
                    }
                }
                ("apps/v1", "ReplicaSet") => {
                    if let Some(rs) = listers.replica_sets.get(&key)
                        && let Some(spec) = &rs.spec
                        && let Ok(sel) = LabelSelector::from_k8s(&spec.selector)
                    {
                        reqs.extend(sel.requirements().iter().cloned());
                    }
                }
                ("apps/v1", "StatefulSet") => {
                    if let Some(ss) = listers.stateful_sets.get(&key)
                        && let Some(spec) = &ss.spec
                        && let Ok(sel) = LabelSelector::from_k8s(&spec.selector)
                    {
                        reqs.extend(sel.requirements().iter().cloned());
                    }
                }
                _ => {}
            }
        }
        for (k, v) in &set {
            if let Ok(r) = Requirement::new(k.as_str(), Operator::Equals, [v.as_str()]) {
                reqs.push(r);
            }
        }
        LabelSelector::new(reqs)
    }
}

/// Whether the node has every constraint's topology key.
fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| node.label(&c.topology_key).is_some())
}

/// Pods on `node` in `namespace` that `selector` selects, not terminating.
fn count_matching(node: &NodeInfo, selector: &LabelSelector, namespace: &str) -> i64 {
    node.pods
        .iter()
        .filter(|p| !p.terminating() && p.namespace == namespace && selector.matches(&p.labels))
        .count() as i64
}

impl Plugin for PodTopologySpread {
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
                action::ADD
                    | action::DELETE
                    | action::UPDATE_NODE_LABEL
                    | action::UPDATE_NODE_TAINT,
                "NodeChange",
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

type Pair = (String, String);

#[derive(Clone, Default)]
struct PreFilterState {
    constraints: Arc<Vec<Constraint>>,
    match_num: HashMap<Pair, i64>,
    domains: HashMap<String, usize>,
    /// The lowest count per topology key.
    min: HashMap<String, i64>,
    required: Arc<RequiredNodeAffinity>,
}

impl PreFilterState {
    fn recompute_min(&mut self, key: &str) {
        let m = self
            .match_num
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|(_, n)| *n)
            .min()
            .unwrap_or(0);
        self.min.insert(key.to_owned(), m);
    }

    fn update_with(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if other.namespace != pod.namespace || !has_all_keys(node, &self.constraints) {
            return;
        }
        let constraints = self.constraints.clone();
        for c in constraints.iter() {
            if !c.selector.matches(&other.labels) || !c.includes(pod, node, &self.required) {
                continue;
            }
            let v = node.label(&c.topology_key).unwrap_or("").to_owned();
            let pair = (c.topology_key.clone(), v);
            if !self.match_num.contains_key(&pair) {
                *self.domains.entry(c.topology_key.clone()).or_insert(0) += 1;
            }
            *self.match_num.entry(pair).or_insert(0) += delta;
            self.recompute_min(&c.topology_key);
        }
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<BTreeSet<String>>, Status) {
        let constraints = self.constraints(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return (None, Status::skip());
        }
        let required = Arc::new(RequiredNodeAffinity::of(&pod.pod));
        let mut s = PreFilterState {
            constraints: Arc::new(constraints),
            required: required.clone(),
            ..PreFilterState::default()
        };
        for node in &snapshot.nodes {
            if !has_all_keys(node, &s.constraints) {
                continue;
            }
            for c in s.constraints.iter() {
                if !c.includes(pod, node, &required) {
                    continue;
                }
                let pair = (
                    c.topology_key.clone(),
                    node.label(&c.topology_key).unwrap_or("").to_owned(),
                );
                *s.match_num.entry(pair).or_insert(0) +=
                    count_matching(node, &c.selector, &pod.namespace);
            }
        }
        for (k, _) in s.match_num.keys() {
            *s.domains.entry(k.clone()).or_insert(0) += 1;
        }
        let keys: HashSet<String> = s
            .constraints
            .iter()
            .map(|c| c.topology_key.clone())
            .collect();
        for k in keys {
            s.recompute_min(&k);
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

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return Status::error("PodTopologySpread: no PreFilter state");
        };
        for c in s.constraints.iter() {
            let Some(value) = node.label(&c.topology_key) else {
                return Status::unresolvable(REASON_MISSING_LABEL);
            };
            let mut min = s.min.get(&c.topology_key).copied().unwrap_or(0);
            if (s.domains.get(&c.topology_key).copied().unwrap_or(0) as i32) < c.min_domains {
                min = 0;
            }
            let self_match = i64::from(c.selector.matches(&pod.labels));
            let matched = s
                .match_num
                .get(&(c.topology_key.clone(), value.to_owned()))
                .copied()
                .unwrap_or(0);
            if matched + self_match - min > c.max_skew as i64 {
                return Status::unschedulable(REASON_CONSTRAINTS);
            }
        }
        Status::success()
    }
}

#[derive(Clone, Default)]
struct PreScoreState {
    constraints: Arc<Vec<Constraint>>,
    ignored: Arc<HashSet<String>>,
    /// Counts per (key, value), except for hostname (counted per node).
    pair_counts: Arc<HashMap<Pair, i64>>,
    weights: Arc<Vec<f64>>,
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        filtered: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        if filtered.is_empty() || snapshot.is_empty() {
            return Status::skip();
        }
        let constraints = self.constraints(pod, "ScheduleAnyway");
        if constraints.is_empty() {
            return Status::skip();
        }
        let own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let require_all = own || !self.system_defaulted;
        let mut ignored = HashSet::new();
        let mut counts: HashMap<Pair, i64> = HashMap::new();
        let mut sizes = vec![0usize; constraints.len()];
        for node in filtered {
            if require_all && !has_all_keys(node, &constraints) {
                ignored.insert(node.name.clone());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                let Some(v) = node.label(&c.topology_key) else {
                    continue;
                };
                let pair = (c.topology_key.clone(), v.to_owned());
                if let std::collections::hash_map::Entry::Vacant(e) = counts.entry(pair) {
                    e.insert(0);
                    sizes[i] += 1;
                }
            }
        }
        let weights: Vec<f64> = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    filtered.len() - ignored.len()
                } else {
                    sizes[i]
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let required = RequiredNodeAffinity::of(&pod.pod);
        for node in &snapshot.nodes {
            if require_all && !has_all_keys(node, &constraints) {
                continue;
            }
            for c in &constraints {
                if !c.includes(pod, node, &required) {
                    continue;
                }
                let Some(v) = node.label(&c.topology_key) else {
                    continue;
                };
                if let Some(n) = counts.get_mut(&(c.topology_key.clone(), v.to_owned())) {
                    *n += count_matching(node, &c.selector, &pod.namespace);
                }
            }
        }
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                constraints: Arc::new(constraints),
                ignored: Arc::new(ignored),
                pair_counts: Arc::new(counts),
                weights: Arc::new(weights),
            },
        );
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Ok(0);
        };
        if s.ignored.contains(&node.name) {
            return Ok(0);
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = node.label(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                count_matching(node, &c.selector, &pod.namespace)
            } else {
                s.pair_counts
                    .get(&(c.topology_key.clone(), v.to_owned()))
                    .copied()
                    .unwrap_or(0)
            };
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        Ok(score.round() as i64)
    }

    fn normalize(
        &self,
        state: &CycleState,
        _: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Status::success();
        };
        let mut min = i64::MAX;
        let mut max = 0i64;
        for (i, n) in nodes.iter().enumerate() {
            if s.ignored.contains(&n.name) {
                continue;
            }
            min = min.min(scores[i]);
            max = max.max(scores[i]);
        }
        for (i, n) in nodes.iter().enumerate() {
            if s.ignored.contains(&n.name) {
                scores[i] = 0;
            } else if max == 0 {
                scores[i] = MAX_NODE_SCORE;
            } else {
                scores[i] = MAX_NODE_SCORE * (max + min - scores[i]) / max;
            }
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

    fn node(name: &str, zone: Option<&str>, web_pods: usize) -> NodeInfo {
        let mut labels = json!({LABEL_HOSTNAME: name});
        if let Some(z) = zone {
            labels[LABEL_ZONE] = json!(z);
        }
        node_info(
            json!({"metadata": {"name": name, "labels": labels}}),
            (0..web_pods)
                .map(|_| json!({"metadata": {"labels": {"app": "web"}}}))
                .collect(),
        )
    }

    fn spread(key: &str, skew: i32, when: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"topologySpreadConstraints": [
            {"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
             "labelSelector": {"matchLabels": {"app": "web"}}}]}})
    }

    fn filter_all(plugin: &PodTopologySpread, p: &PodInfo, nodes: Vec<NodeInfo>) -> Vec<Status> {
        let snapshot = Snapshot::from_nodes(nodes);
        let mut state = CycleState::default();
        let (_, s) = plugin.pre_filter(&mut state, p, &snapshot);
        assert_eq!(s.code, Code::Success);
        snapshot
            .nodes
            .iter()
            .map(|n| plugin.filter(&state, p, n))
            .collect()
    }

    #[test]
    fn do_not_schedule_keeps_the_skew_within_max_skew() {
        let plugin = PodTopologySpread::new(&Value::Null, handle()).unwrap();
        let p = pod(spread(LABEL_ZONE, 1, "DoNotSchedule"));
        // Zone a has 2 web pods, zone b has 1: only b may take the next.
        let got = filter_all(
            &plugin,
            &p,
            vec![
                node("a1", Some("a"), 1),
                node("a2", Some("a"), 1),
                node("b1", Some("b"), 1),
                node("x", None, 0),
            ],
        );
        let ok: Vec<bool> = got.iter().map(Status::is_success).collect();
        assert_eq!(ok, [false, false, true, false]);
        assert_eq!(got[0].message(), REASON_CONSTRAINTS);
        assert_eq!(got[0].code, Code::Unschedulable);
        assert_eq!(got[3].message(), REASON_MISSING_LABEL);
        assert_eq!(got[3].code, Code::UnschedulableAndUnresolvable);
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let plugin = PodTopologySpread::new(&Value::Null, handle()).unwrap();
        let mut v = spread(LABEL_ZONE, 1, "DoNotSchedule");
        v["spec"]["topologySpreadConstraints"][0]["minDomains"] = json!(3);
        let p = pod(v);
        // Two zones with one pod each; three domains are wanted, so the
        // global minimum is 0 and both zones are full at skew 1.
        let got = filter_all(
            &plugin,
            &p,
            vec![node("a1", Some("a"), 1), node("b1", Some("b"), 1)],
        );
        assert!(got.iter().all(|s| !s.is_success()));
    }

    #[test]
    fn schedule_anyway_prefers_the_emptier_domain() {
        let plugin = PodTopologySpread::new(&Value::Null, handle()).unwrap();
        let p = pod(spread(LABEL_HOSTNAME, 1, "ScheduleAnyway"));
        let snapshot = Snapshot::from_nodes(vec![
            node("a", Some("z"), 3),
            node("b", Some("z"), 1),
            node("c", Some("z"), 0),
        ]);
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
        plugin.normalize(&state, &p, &snapshot.nodes, &mut scores);
        assert!(scores[2] > scores[1] && scores[1] > scores[0], "{scores:?}");
        assert_eq!(scores[2], 100);
    }

    #[test]
    fn system_defaults_apply_to_pods_of_a_service() {
        let h = handle();
        h.listers.services.set(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"}}}))
            .unwrap(),
        ));
        let plugin = PodTopologySpread::new(&Value::Null, h).unwrap();
        let p = pod(json!({"metadata": {"labels": {"app": "web"}}}));
        let cs = plugin.constraints(&p, "ScheduleAnyway");
        assert_eq!(cs.len(), 2);
        assert!(cs[0].selector.matches(&p.labels));
        // A pod no workload selects gets no default spreading.
        assert!(
            plugin
                .constraints(&pod(json!({})), "ScheduleAnyway")
                .is_empty()
        );
        assert!(plugin.constraints(&p, "DoNotSchedule").is_empty());
    }

    #[test]
    fn removing_a_victim_updates_the_counts() {
        let plugin = PodTopologySpread::new(&Value::Null, handle()).unwrap();
        let p = pod(spread(LABEL_HOSTNAME, 1, "DoNotSchedule"));
        let snapshot = Snapshot::from_nodes(vec![node("a", Some("z"), 1), node("b", Some("z"), 0)]);
        let mut state = CycleState::default();
        plugin.pre_filter(&mut state, &p, &snapshot);
        let mut b = (*snapshot.nodes[1]).clone();
        let extra = crate::plugins::testing::pod(json!({"metadata": {"labels": {"app": "web"}}}));
        b.add_pod(extra.clone());
        plugin.add_pod(&mut state, &p, &extra, &b);
        // Now a:1, b:1 → min 1: both fit again at skew 1.
        assert!(plugin.filter(&state, &p, &snapshot.nodes[0]).is_success());
    }

    #[test]
    fn bad_args_are_refused() {
        assert!(PodTopologySpread::new(&json!({"defaultingType": "Nope"}), handle()).is_err());
        assert!(
            PodTopologySpread::new(
                &json!({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 0, "topologyKey": "k", "whenUnsatisfiable": "DoNotSchedule"}]}),
                handle()
            )
            .is_err()
        );
        let p = PodTopologySpread::new(
            &json!({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
            handle(),
        )
        .unwrap();
        assert!(!p.system_defaulted);
    }
}
