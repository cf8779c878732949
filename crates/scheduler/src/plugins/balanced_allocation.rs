//! NodeResourcesBalancedAllocation: prefers nodes whose CPU and memory (or
//! the configured resources) would be used in equal fractions with the pod
//! on them: score = (1 - standard deviation of the fractions) × 100.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::cache::Snapshot;
use crate::extension_points;
use crate::framework::{
    ClusterEvent, CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, Resource, ScorePlugin,
    Status, action,
};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::plugins::resource_allocation::{
    ResourceSpec, allocatable_and_requested, default_resources, pod_request,
};

pub const NAME: &str = "NodeResourcesBalancedAllocation";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

#[derive(Deserialize, Default)]
struct Args {
    #[serde(default)]
    resources: Option<Vec<ResourceSpec>>,
}

/// Scores balance between resources.
pub struct BalancedAllocation {
    resources: Vec<ResourceSpec>,
}

impl BalancedAllocation {
    /// Reads `NodeResourcesBalancedAllocationArgs`.
    pub fn new(args: &Value) -> Result<BalancedAllocation, String> {
        let args: Args = if args.is_null() {
            Args::default()
        } else {
            serde_json::from_value(args.clone()).map_err(|e| e.to_string())?
        };
        Ok(BalancedAllocation {
            resources: args.resources.unwrap_or_else(default_resources),
        })
    }
}

/// upstream's `balancedResourceScorer`.
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let mut buf = [0f64; 8];
    let mut spill = Vec::new();
    let mut count = 0;
    for (r, a) in requested.iter().zip(allocatable).filter(|(_, a)| **a != 0) {
        let f = (*r as f64 / *a as f64).min(1.0);
        if count < buf.len() {
            buf[count] = f;
        } else {
            if spill.is_empty() {
                spill.extend_from_slice(&buf);
            }
            spill.push(f);
        }
        count += 1;
    }
    let fractions: &[f64] = if count <= buf.len() {
        &buf[..count]
    } else {
        &spill
    };
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>()
                / n as f64)
                .sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent::new(Resource::Node, action::ADD, "NodeAdd")]
    }
    extension_points!(as_pre_score: PreScorePlugin, as_score: ScorePlugin);
}

#[derive(Clone)]
struct PreScoreState(Arc<Vec<i64>>);

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        let requests: Vec<i64> = self
            .resources
            .iter()
            .map(|r| pod_request(pod, &r.name, false))
            .collect();
        // As upstream since 1.32: best-effort pods are not balanced, or they
        // would all pile onto one node.
        if requests.iter().all(|r| *r == 0) {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, PreScoreState(Arc::new(requests)));
        Status::success()
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(PreScoreState(requests)) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Ok(0);
        };
        let n = self.resources.len();
        let (mut req_buf, mut alloc_buf) = ([0i64; 8], [0i64; 8]);
        let (mut req_vec, mut alloc_vec) = (Vec::new(), Vec::new());
        let (requested, allocatable): (&mut [i64], &mut [i64]) = if n <= 8 {
            (&mut req_buf[..n], &mut alloc_buf[..n])
        } else {
            req_vec.resize(n, 0);
            alloc_vec.resize(n, 0);
            (&mut req_vec[..], &mut alloc_vec[..])
        };
        for (i, r) in self.resources.iter().enumerate() {
            let (a, q) = allocatable_and_requested(node, &r.name, requests[i], false);
            allocatable[i] = a;
            requested[i] = q;
        }
        Ok(balanced_score(requested, allocatable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod};
    use serde_json::json;

    #[test]
    fn equal_fractions_score_highest() {
        assert_eq!(balanced_score(&[2000, 4 << 30], &[4000, 8 << 30]), 100);
        // 0.75 and 0.25: std 0.25 → 75.
        assert_eq!(balanced_score(&[3000, 2 << 30], &[4000, 8 << 30]), 75);
        // Fractions above 1 count as 1.
        assert_eq!(balanced_score(&[8000, 8 << 30], &[4000, 8 << 30]), 100);
    }

    #[test]
    fn best_effort_pods_are_skipped() {
        let b = BalancedAllocation::new(&Value::Null).unwrap();
        let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}));
        let s = b.pre_score(&mut CycleState::default(), &p, &[], &Snapshot::default());
        assert_eq!(s.code, crate::framework::Code::Skip);
    }

    #[test]
    fn the_node_that_balances_the_pod_wins() {
        let b = BalancedAllocation::new(&Value::Null).unwrap();
        let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}}));
        let mut state = CycleState::default();
        assert!(
            b.pre_score(&mut state, &p, &[], &Snapshot::default())
                .is_success()
        );
        let cpu_heavy = node_info(
            json!({"status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"}}}),
            vec![json!({"spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": "2"}}}]}})],
        );
        let empty = node_info(
            json!({"status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"}}}),
            vec![],
        );
        assert!(b.score(&state, &p, &empty).unwrap() > b.score(&state, &p, &cpu_heavy).unwrap());
    }
}
