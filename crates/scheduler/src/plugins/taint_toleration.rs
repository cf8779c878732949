//! TaintToleration: a node's NoSchedule and NoExecute taints keep off pods
//! that do not tolerate them; PreferNoSchedule taints a pod does not
//! tolerate lower the node's score.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::cache::Snapshot;
use crate::extension_points;
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, Plugin, PreScorePlugin, Resource,
    ScorePlugin, Status, action, default_normalize_score,
};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub const NAME: &str = "TaintToleration";
const STATE_KEY: &str = "PreScoreTaintToleration";

/// Filters by NoSchedule/NoExecute taints, scores by PreferNoSchedule ones.
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent::new(
            Resource::Node,
            action::ADD | action::UPDATE_NODE_TAINT,
            "NodeAddOrTaintChange",
        )]
    }
    extension_points!(as_filter: FilterPlugin, as_pre_score: PreScorePlugin, as_score: ScorePlugin);
}

/// Whether `t` tolerates `taint`, as upstream's `ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

fn taints(node: &NodeInfo) -> &[Taint] {
    &node.taints
}

/// The first taint passing `select` that no toleration tolerates.
pub fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    select: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| select(t))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// NoSchedule or NoExecute: the taints the filter honours.
pub fn do_not_schedule(t: &Taint) -> bool {
    t.effect == "NoSchedule" || t.effect == "NoExecute"
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match untolerated(taints(node), tolerations(pod), do_not_schedule) {
            None => Status::success(),
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )),
        }
    }
}

/// The pod's tolerations that can tolerate PreferNoSchedule taints.
#[derive(Clone)]
struct PreScoreState(Arc<Vec<Toleration>>);

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        let prefer: Vec<Toleration> = tolerations(pod)
            .iter()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
            })
            .cloned()
            .collect();
        state.write(STATE_KEY, PreScoreState(Arc::new(prefer)));
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(PreScoreState(tols)) = state.read::<PreScoreState>(STATE_KEY) else {
            return Err(Status::error("TaintToleration: no PreScore state"));
        };
        let n = taints(node)
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|taint| !tols.iter().any(|t| tolerates(t, taint)))
            .count();
        Ok(n as i64)
    }

    fn normalize(
        &self,
        _: &CycleState,
        _: &PodInfo,
        _: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod};
    use serde_json::json;

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(v: serde_json::Value) -> Taint {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn toleration_matching_follows_upstream() {
        let t = taint(json!({"key": "k", "value": "v", "effect": "NoSchedule"}));
        let cases = [
            (
                json!({"key": "k", "value": "v", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "k", "operator": "Equal", "value": "v"}), true),
            (json!({"key": "k", "value": "w"}), false),
            (json!({"key": "k", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (
                json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
                false,
            ),
            (json!({"key": "other", "operator": "Exists"}), false),
        ];
        for (tol, want) in cases {
            assert_eq!(tolerates(&toleration(tol.clone()), &t), want, "{tol}");
        }
    }

    #[test]
    fn untolerated_hard_taints_reject_with_upstreams_reason() {
        let node = node_info(
            json!({"spec": {"taints": [
                {"key": "soft", "value": "x", "effect": "PreferNoSchedule"},
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
            vec![],
        );
        let s = TaintToleration.filter(&CycleState::default(), &pod(json!({})), &node);
        assert_eq!(
            s.message(),
            "node(s) had untolerated taint {dedicated: gpu}"
        );
        let tolerant = pod(json!({"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}));
        assert!(
            TaintToleration
                .filter(&CycleState::default(), &tolerant, &node)
                .is_success()
        );
    }

    #[test]
    fn fewer_untolerated_soft_taints_score_higher() {
        let nodes: Vec<Arc<NodeInfo>> = [0, 1, 2]
            .iter()
            .map(|n| {
                let taints: Vec<_> = (0..*n)
                    .map(|i| json!({"key": format!("k{i}"), "effect": "PreferNoSchedule"}))
                    .collect();
                Arc::new(node_info(json!({"spec": {"taints": taints}}), vec![]))
            })
            .collect();
        let p = pod(json!({"spec": {"tolerations": [{"key": "k1", "operator": "Exists"}]}}));
        let mut state = CycleState::default();
        TaintToleration.pre_score(&mut state, &p, &nodes, &Snapshot::default());
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| TaintToleration.score(&state, &p, n).unwrap())
            .collect();
        assert_eq!(scores, [0, 1, 1]);
        TaintToleration.normalize(&state, &p, &nodes, &mut scores);
        assert_eq!(scores, [100, 0, 0]);
    }
}
