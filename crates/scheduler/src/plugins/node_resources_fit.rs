//! NodeResourcesFit: the pod's requests (containers, init and sidecar
//! containers, overhead, extended resources) must fit in what the node has
//! left, and the pod count under `pods`; scoring follows the profile's
//! strategy: LeastAllocated (the default: spread), MostAllocated (pack) or
//! RequestedToCapacityRatio (a piecewise-linear shape).

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::cache::Snapshot;
use crate::extension_points;
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, Plugin, PreScorePlugin, Resource,
    ScorePlugin, Status, action,
};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::plugins::resource_allocation::{
    ResourceSpec, allocatable_and_requested, default_resources, pod_request,
};
use crate::resources::{CPU, EPHEMERAL_STORAGE, MEMORY};

pub const NAME: &str = "NodeResourcesFit";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesFit";
/// RequestedToCapacityRatio shapes score 0..=10.
const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;
const MAX_UTILIZATION: i64 = 100;

/// How nodes are scored.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    LeastAllocated,
    MostAllocated,
    /// (utilization 0..=100, score 0..=100) points, utilization ascending.
    RequestedToCapacityRatio(Vec<(i64, i64)>),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Args {
    #[serde(default)]
    ignored_resources: Vec<String>,
    #[serde(default)]
    ignored_resource_groups: Vec<String>,
    #[serde(default)]
    scoring_strategy: Option<StrategyArgs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StrategyArgs {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    resources: Option<Vec<ResourceSpec>>,
    #[serde(default)]
    requested_to_capacity_ratio: Option<RatioArgs>,
}

#[derive(Deserialize)]
struct RatioArgs {
    shape: Vec<ShapePoint>,
}

#[derive(Deserialize)]
struct ShapePoint {
    utilization: i64,
    score: i64,
}

/// Filters by free resources, scores by the configured strategy.
pub struct NodeResourcesFit {
    strategy: Strategy,
    resources: Vec<ResourceSpec>,
    ignored: HashSet<String>,
    ignored_groups: HashSet<String>,
}

/// One resource the pod needs more of than the node has left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insufficient {
    pub resource: String,
    pub reason: String,
}

impl NodeResourcesFit {
    /// Reads `NodeResourcesFitArgs`.
    pub fn new(args: &Value) -> Result<NodeResourcesFit, String> {
        let args: Args = if args.is_null() {
            Args::default()
        } else {
            serde_json::from_value(args.clone()).map_err(|e| e.to_string())?
        };
        let sa = args.scoring_strategy;
        let resources = sa
            .as_ref()
            .and_then(|s| s.resources.clone())
            .unwrap_or_else(default_resources);
        if resources.iter().any(|r| r.weight <= 0 || r.weight > 100) {
            return Err("scoringStrategy.resources weights must be in 1..=100".into());
        }
        let strategy = match sa
            .as_ref()
            .and_then(|s| s.kind.as_deref())
            .unwrap_or("LeastAllocated")
        {
            "LeastAllocated" => Strategy::LeastAllocated,
            "MostAllocated" => Strategy::MostAllocated,
            "RequestedToCapacityRatio" => {
                let shape = sa
                    .and_then(|s| s.requested_to_capacity_ratio)
                    .ok_or("RequestedToCapacityRatio needs requestedToCapacityRatio.shape")?
                    .shape;
                if shape.is_empty() {
                    return Err("requestedToCapacityRatio.shape must not be empty".into());
                }
                for w in shape.windows(2) {
                    if w[1].utilization <= w[0].utilization {
                        return Err(
                            "requestedToCapacityRatio.shape utilization must increase".into()
                        );
                    }
                }
                for p in &shape {
                    if !(0..=MAX_UTILIZATION).contains(&p.utilization)
                        || !(0..=MAX_CUSTOM_PRIORITY_SCORE).contains(&p.score)
                    {
                        return Err("shape utilization must be 0..=100 and score 0..=10".into());
                    }
                }
                Strategy::RequestedToCapacityRatio(
                    shape
                        .into_iter()
                        .map(|p| {
                            (
                                p.utilization,
                                p.score * (MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE),
                            )
                        })
                        .collect(),
                )
            }
            other => return Err(format!("unknown scoringStrategy.type {other:?}")),
        };
        Ok(NodeResourcesFit {
            strategy,
            resources,
            ignored: args.ignored_resources.into_iter().collect(),
            ignored_groups: args.ignored_resource_groups.into_iter().collect(),
        })
    }

    fn ignored(&self, name: &str) -> bool {
        self.ignored.contains(name)
            || name
                .split_once('/')
                .is_some_and(|(group, _)| self.ignored_groups.contains(group))
    }

    /// What the pod needs more of than `node` has left, as upstream's `fitsRequest`.
    pub fn insufficient(&self, pod: &PodInfo, node: &NodeInfo) -> Vec<Insufficient> {
        let mut out = Vec::new();
        let mut lack = |resource: &str| {
            out.push(Insufficient {
                resource: resource.to_owned(),
                reason: format!("Insufficient {resource}"),
            })
        };
        let req = &pod.requests;
        let (alloc, used) = (&node.allocatable, &node.requested);
        let too_many = node.pods.len() as i64 + 1 > alloc.allowed_pod_number;
        let mut result = Vec::new();
        if too_many {
            result.push(Insufficient {
                resource: "pods".into(),
                reason: "Too many pods".into(),
            });
        }
        if req.is_zero() {
            return result;
        }
        if req.milli_cpu > 0 && req.milli_cpu > alloc.milli_cpu - used.milli_cpu {
            lack(CPU);
        }
        if req.memory > 0 && req.memory > alloc.memory - used.memory {
            lack(MEMORY);
        }
        if req.ephemeral_storage > 0
            && req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
        {
            lack(EPHEMERAL_STORAGE);
        }
        for (name, want) in &req.scalar {
            if *want == 0 || self.ignored(name) {
                continue;
            }
            if *want > alloc.get(name) - used.get(name) {
                lack(name);
            }
        }
        result.extend(out);
        result
    }

    fn score_node(&self, requested: &[i64], allocatable: &[i64]) -> i64 {
        let mut node_score = 0i64;
        let mut weights = 0i64;
        for (i, r) in self.resources.iter().enumerate() {
            let (req, cap) = (requested[i], allocatable[i]);
            if cap == 0 {
                continue;
            }
            let s = match &self.strategy {
                Strategy::LeastAllocated => {
                    if req > cap {
                        0
                    } else {
                        (cap - req) * MAX_NODE_SCORE / cap
                    }
                }
                Strategy::MostAllocated => req.min(cap) * MAX_NODE_SCORE / cap,
                Strategy::RequestedToCapacityRatio(shape) => {
                    let utilization = if req > cap {
                        MAX_UTILIZATION
                    } else {
                        req * MAX_UTILIZATION / cap
                    };
                    let s = broken_linear(shape, utilization);
                    if s <= 0 {
                        continue;
                    }
                    s
                }
            };
            node_score += s * r.weight;
            weights += r.weight;
        }
        if weights == 0 {
            return 0;
        }
        match self.strategy {
            Strategy::RequestedToCapacityRatio(_) => {
                (node_score as f64 / weights as f64).round() as i64
            }
            _ => node_score / weights,
        }
    }
}

/// The piecewise-linear function through `shape` at `p`.
pub fn broken_linear(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, (u, s)) in shape.iter().enumerate() {
        if p <= *u {
            if i == 0 {
                return *s;
            }
            let (pu, ps) = shape[i - 1];
            return ps + (s - ps) * (p - pu) / (u - pu);
        }
    }
    shape.last().map_or(0, |(_, s)| *s)
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(
                Resource::Pod,
                action::DELETE | action::UPDATE_POD_REQUEST,
                "AssignedPodDeleteOrScaleDown",
            ),
            ClusterEvent::new(
                Resource::Node,
                action::ADD | action::UPDATE_NODE_ALLOCATABLE,
                "NodeAddOrAllocatableChange",
            ),
        ]
    }
    extension_points!(as_filter: FilterPlugin, as_pre_score: PreScorePlugin, as_score: ScorePlugin);
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let lacking = self.insufficient(pod, node);
        if lacking.is_empty() {
            Status::success()
        } else {
            Status::new(
                crate::framework::Code::Unschedulable,
                lacking.into_iter().map(|i| i.reason),
            )
        }
    }
}

#[derive(Clone)]
struct PreScoreState(Arc<Vec<i64>>);

impl PreScorePlugin for NodeResourcesFit {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        let requests = self
            .resources
            .iter()
            .map(|r| pod_request(pod, &r.name, true))
            .collect();
        state.write(PRE_SCORE_KEY, PreScoreState(Arc::new(requests)));
        Status::success()
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let computed;
        let requests: &[i64] = match state.read::<PreScoreState>(PRE_SCORE_KEY) {
            Some(PreScoreState(r)) => r,
            None => {
                computed = self
                    .resources
                    .iter()
                    .map(|r| pod_request(pod, &r.name, true))
                    .collect::<Vec<_>>();
                &computed
            }
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
            let (a, q) = allocatable_and_requested(node, &r.name, requests[i], true);
            allocatable[i] = a;
            requested[i] = q;
        }
        Ok(self.score_node(requested, allocatable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod};
    use serde_json::json;

    fn requesting(cpu: &str, mem: &str) -> serde_json::Value {
        json!({"spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}})
    }

    fn node(cpu: &str, mem: &str, pods: &str, running: Vec<serde_json::Value>) -> NodeInfo {
        node_info(
            json!({"status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": pods,
                "example.com/gpu": "1"}}}),
            running,
        )
    }

    #[test]
    fn the_filter_names_each_insufficient_resource() {
        let fit = NodeResourcesFit::new(&Value::Null).unwrap();
        let full = node("2", "2Gi", "2", vec![requesting("1500m", "1Gi")]);
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (requesting("500m", "1Gi"), vec![]),
            (requesting("600m", "1Gi"), vec!["Insufficient cpu"]),
            (
                requesting("600m", "2Gi"),
                vec!["Insufficient cpu", "Insufficient memory"],
            ),
            (
                json!({"spec": {"containers": [{"name": "c", "image": "i",
                    "resources": {"requests": {"example.com/gpu": "2"}}}]}}),
                vec!["Insufficient example.com/gpu"],
            ),
        ];
        for (spec, want) in cases {
            let s = fit.filter(&CycleState::default(), &pod(spec.clone()), &full);
            assert_eq!(s.reasons, want, "{spec}");
        }
        let crowded = node("2", "2Gi", "1", vec![requesting("100m", "1Mi")]);
        let s = fit.filter(
            &CycleState::default(),
            &pod(requesting("100m", "1Mi")),
            &crowded,
        );
        assert_eq!(s.reasons, ["Too many pods"]);
    }

    #[test]
    fn ignored_resources_are_not_checked() {
        let fit =
            NodeResourcesFit::new(&json!({"ignoredResourceGroups": ["example.com"]})).unwrap();
        let n = node("2", "2Gi", "10", vec![]);
        let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"example.com/gpu": "5"}}}]}}));
        assert!(fit.filter(&CycleState::default(), &p, &n).is_success());
    }

    fn score(args: Value, pod_spec: serde_json::Value, n: &NodeInfo) -> i64 {
        let fit = NodeResourcesFit::new(&args).unwrap();
        let p = pod(pod_spec);
        let mut state = CycleState::default();
        fit.pre_score(&mut state, &p, &[], &Snapshot::default());
        fit.score(&state, &p, n).unwrap()
    }

    #[test]
    fn strategies_score_like_upstream() {
        // 4 cores, 8Gi; 1 core and 2Gi in use; the pod asks 1 core and 2Gi.
        let n = node("4", "8Gi", "110", vec![requesting("1", "2Gi")]);
        let p = requesting("1", "2Gi");
        // Least: cpu (4-2)/4 = 50, mem (8-4)/8 = 50.
        assert_eq!(score(Value::Null, p.clone(), &n), 50);
        let most = json!({"scoringStrategy": {"type": "MostAllocated"}});
        assert_eq!(score(most, p.clone(), &n), 50);
        let n2 = node("4", "8Gi", "110", vec![]);
        assert_eq!(score(Value::Null, p.clone(), &n2), 75);
        assert_eq!(
            score(
                json!({"scoringStrategy": {"type": "MostAllocated"}}),
                p.clone(),
                &n2
            ),
            25
        );
        let ratio = json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
            "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]}}});
        assert_eq!(score(ratio, p.clone(), &n2), 25);
        let weighted = json!({"scoringStrategy": {"type": "LeastAllocated",
            "resources": [{"name": "cpu", "weight": 3}, {"name": "memory", "weight": 1}]}});
        // cpu 75 * 3 + mem 75 * 1 = 300 / 4 = 75.
        assert_eq!(score(weighted, p, &n2), 75);
    }

    #[test]
    fn pods_without_requests_score_as_the_defaults() {
        // 1000m / 100m default: (1000-100)*100/1000 = 90; memory 2Gi vs 200Mi.
        let n = node("1", "2Gi", "110", vec![]);
        let s = score(
            Value::Null,
            json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}),
            &n,
        );
        let mem = (2048 - 200) * 100 / 2048;
        assert_eq!(s, (90 + mem) / 2);
    }

    #[test]
    fn the_broken_linear_function_interpolates() {
        let shape = [(0, 100), (50, 50), (100, 0)];
        assert_eq!(broken_linear(&shape, 0), 100);
        assert_eq!(broken_linear(&shape, 25), 75);
        assert_eq!(broken_linear(&shape, 75), 25);
        assert_eq!(broken_linear(&shape, 100), 0);
    }

    #[test]
    fn bad_args_are_refused() {
        assert!(NodeResourcesFit::new(&json!({"scoringStrategy": {"type": "Nope"}})).is_err());
        assert!(
            NodeResourcesFit::new(
                &json!({"scoringStrategy": {"type": "RequestedToCapacityRatio"}})
            )
            .is_err()
        );
    }
}
