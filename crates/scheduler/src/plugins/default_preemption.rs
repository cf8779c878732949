//! DefaultPreemption: when no node fits a pod, find nodes where evicting
//! lower-priority pods would make room (as few and as unimportant as
//! possible, sparing pods a PodDisruptionBudget protects where it can),
//! pick the best such node, evict its victims, and nominate the pod to it
//! (`status.nominatedNodeName`) so it lands there once they are gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{Value, json};
use skiff_api_types::selector::LabelSelector;
use tracing::{info, warn};

use crate::cache::Snapshot;
use crate::events::EventType;
use crate::extension_points;
use crate::framework::{
    Code, CycleState, Diagnosis, FitError, Framework, Handle, Plugin, PostFilterPlugin,
    PostFilterResult, Status,
};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::parallel;

pub const NAME: &str = "DefaultPreemption";
/// Upstream's messages.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Evicts lower-priority pods to make room.
pub struct DefaultPreemption {
    handle: Arc<Handle>,
    min_candidate_nodes_percentage: i64,
    min_candidate_nodes_absolute: i64,
}

/// A node where preemption would work, and what it costs.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

impl DefaultPreemption {
    /// Reads `DefaultPreemptionArgs`.
    pub fn new(args: &Value, handle: Arc<Handle>) -> Result<DefaultPreemption, String> {
        let pct = args
            .get("minCandidateNodesPercentage")
            .and_then(Value::as_i64)
            .unwrap_or(10);
        let abs = args
            .get("minCandidateNodesAbsolute")
            .and_then(Value::as_i64)
            .unwrap_or(100);
        if !(0..=100).contains(&pct) || abs < 0 || (pct == 0 && abs == 0) {
            return Err("minCandidateNodesPercentage must be 0..=100, minCandidateNodesAbsolute ≥ 0, not both 0".into());
        }
        Ok(DefaultPreemption {
            handle,
            min_candidate_nodes_percentage: pct,
            min_candidate_nodes_absolute: abs,
        })
    }

    fn num_candidates(&self, potential: usize) -> usize {
        let n = (potential as i64 * self.min_candidate_nodes_percentage / 100)
            .max(self.min_candidate_nodes_absolute);
        (n as usize).min(potential)
    }
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
    extension_points!(as_post_filter: PostFilterPlugin);
}

fn start_time(p: &PodInfo) -> i128 {
    p.pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.as_nanosecond())
        .unwrap_or(i128::MAX)
}

/// Higher priority first, then the pod that started earlier.
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| start_time(a).cmp(&start_time(b)))
}

/// Splits pods into those whose eviction would violate a
/// PodDisruptionBudget and the rest, as upstream's `filterPodsWithPDBViolation`.
pub fn split_by_pdb(
    pods: &[Arc<PodInfo>],
    pdbs: &[Arc<PodDisruptionBudget>],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = pdbs
        .iter()
        .map(|p| p.status.as_ref().map_or(0, |s| s.disruptions_allowed))
        .collect();
    let selectors: Vec<Option<LabelSelector>> = pdbs
        .iter()
        .map(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| LabelSelector::from_k8s(s).ok())
                .filter(|s| !s.is_empty())
        })
        .collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for p in pods {
        let mut violated = false;
        if !p.labels.is_empty() {
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.metadata.namespace.as_deref() != Some(p.namespace.as_str()) {
                    continue;
                }
                let Some(sel) = &selectors[i] else { continue };
                if !sel.matches(&p.labels) {
                    continue;
                }
                if pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .is_some_and(|d| d.contains_key(&p.name))
                {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated {
            violating.push(p.clone());
        } else {
            fine.push(p.clone());
        }
    }
    (violating, fine)
}

/// The fewest, least important pods on `node` whose eviction lets `pod`
/// pass the filters (upstream's `SelectVictimsOnNode`).
pub fn select_victims(
    fw: &Framework,
    state: &mut CycleState,
    pod: &PodInfo,
    node: &mut NodeInfo,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Result<(Vec<Arc<PodInfo>>, usize), Status> {
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(NO_VICTIMS));
    }
    for p in &potential {
        let s = fw.remove_pod_from_state(state, pod, p, node);
        if !s.is_success() {
            return Err(s);
        }
    }
    let s = fw.run_filter_with_nominated(state, pod, node);
    if !s.is_success() {
        return Err(s);
    }
    potential.sort_by(|a, b| more_important(a, b));
    let (violating, fine) = split_by_pdb(&potential, pdbs);
    let mut victims = Vec::new();
    let mut violations = 0;
    let mut reprieve =
        |p: &Arc<PodInfo>, state: &mut CycleState, node: &mut NodeInfo| -> Result<bool, Status> {
            let s = fw.add_pod_to_state(state, pod, p, node);
            if !s.is_success() {
                return Err(s);
            }
            if fw.run_filter_with_nominated(state, pod, node).is_success() {
                return Ok(true);
            }
            let s = fw.remove_pod_from_state(state, pod, p, node);
            if !s.is_success() {
                return Err(s);
            }
            victims.push(p.clone());
            Ok(false)
        };
    for p in &violating {
        if !reprieve(p, state, node)? {
            violations += 1;
        }
    }
    for p in &fine {
        reprieve(p, state, node)?;
    }
    victims.sort_by(|a, b| more_important(a, b));
    Ok((victims, violations))
}

/// The best candidate, as upstream's `pickOneNodeForPreemption`: fewest
/// PDB violations, then the lowest highest-priority victim, the lowest sum
/// of priorities, the fewest victims, the latest-started important victims.
pub fn pick_one(candidates: &[Candidate]) -> Option<&Candidate> {
    let highest = |c: &Candidate| c.victims.first().map_or(i32::MIN, |v| v.priority) as i64;
    let sum = |c: &Candidate| -> i64 {
        c.victims
            .iter()
            .map(|v| v.priority as i64 + i32::MAX as i64 + 1)
            .sum()
    };
    let earliest_top = |c: &Candidate| -> i128 {
        let top = highest(c);
        c.victims
            .iter()
            .filter(|v| v.priority as i64 == top)
            .map(|v| start_time(v))
            .min()
            .unwrap_or(i128::MAX)
    };
    candidates.iter().min_by(|a, b| {
        a.pdb_violations
            .cmp(&b.pdb_violations)
            .then_with(|| highest(a).cmp(&highest(b)))
            .then_with(|| sum(a).cmp(&sum(b)))
            .then_with(|| a.victims.len().cmp(&b.victims.len()))
            .then_with(|| earliest_top(b).cmp(&earliest_top(a)))
    })
}

fn not_eligible(
    pod: &PodInfo,
    snapshot: &Snapshot,
    statuses: &HashMap<String, Status>,
) -> Option<&'static str> {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Some("not eligible due to preemptionPolicy=Never.");
    }
    let nominated = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())?;
    if statuses
        .get(nominated)
        .is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable)
    {
        return None;
    }
    let node = snapshot.get(nominated)?;
    node.pods
        .iter()
        .any(|p| p.priority < pod.priority && p.terminating())
        .then_some("not eligible due to a terminating pod on the nominated node.")
}

#[async_trait]
impl PostFilterPlugin for DefaultPreemption {
    async fn post_filter(
        &self,
        fw: &Framework,
        state: &CycleState,
        pod: &Arc<PodInfo>,
        snapshot: &Snapshot,
        statuses: &HashMap<String, Status>,
    ) -> (Option<PostFilterResult>, Status) {
        if let Some(why) = not_eligible(pod, snapshot, statuses) {
            return (None, Status::unschedulable(format!("preemption: {why}")));
        }
        let mut out: HashMap<String, Status> = HashMap::new();
        let mut potential: Vec<&Arc<NodeInfo>> = Vec::new();
        for n in &snapshot.nodes {
            if statuses
                .get(&n.name)
                .is_some_and(|s| s.code == Code::Unschedulable)
            {
                potential.push(n);
            } else {
                out.insert(n.name.clone(), Status::unresolvable(NOT_HELPFUL));
            }
        }
        let mut candidates = Vec::new();
        if !potential.is_empty() {
            let pdbs = self.handle.listers.pdbs.list();
            let wanted = self.num_candidates(potential.len());
            let offset = rand::random_range(0..potential.len());
            let found: Mutex<Vec<Candidate>> = Mutex::new(Vec::new());
            let rejected: Mutex<Vec<(String, Status)>> = Mutex::new(Vec::new());
            let non_violating = AtomicUsize::new(0);
            let total = AtomicUsize::new(0);
            parallel::until(potential.len(), fw.handle.parallelism, |i| {
                let node = potential[(offset + i) % potential.len()];
                let mut node_copy = (**node).clone();
                let mut state_copy = state.clone();
                match select_victims(fw, &mut state_copy, pod, &mut node_copy, &pdbs) {
                    Ok((victims, violations)) if !victims.is_empty() => {
                        if violations == 0 {
                            non_violating.fetch_add(1, Ordering::Relaxed);
                        }
                        found.lock().expect("candidates").push(Candidate {
                            node: node.name.clone(),
                            victims,
                            pdb_violations: violations,
                        });
                        let t = total.fetch_add(1, Ordering::Relaxed) + 1;
                        !(non_violating.load(Ordering::Relaxed) > 0 && t >= wanted)
                    }
                    Ok(_) => {
                        rejected.lock().expect("rejected").push((
                            node.name.clone(),
                            Status::error(format!(
                                "expected at least one victim pod on node {:?}",
                                node.name
                            )),
                        ));
                        true
                    }
                    Err(s) => {
                        rejected
                            .lock()
                            .expect("rejected")
                            .push((node.name.clone(), s));
                        true
                    }
                }
            });
            candidates = found.into_inner().expect("candidates");
            out.extend(rejected.into_inner().expect("rejected"));
        }
        let Some(best) = pick_one(&candidates).cloned() else {
            let fit = FitError {
                num_all_nodes: out.len(),
                diagnosis: Diagnosis {
                    node_statuses: out,
                    ..Diagnosis::default()
                },
            };
            let message = fit.message();
            let message = message.strip_suffix('.').unwrap_or(&message);
            return (
                Some(PostFilterResult {
                    nominated_node_name: Some(String::new()),
                }),
                Status::unschedulable(format!("preemption: {message}")),
            );
        };
        crate::metrics::get().preemption(best.victims.len());
        // The evictions run in the background (as upstream's asynchronous
        // preemption): the nomination already keeps the room for the pod.
        tokio::spawn(prepare(
            self.handle.clone(),
            fw.profile_name.clone(),
            pod.clone(),
            best.clone(),
        ));
        (
            Some(PostFilterResult {
                nominated_node_name: Some(best.node.clone()),
            }),
            Status::success(),
        )
    }
}

/// Evicts the victims and clears lower-priority nominations to the node.
async fn prepare(handle: Arc<Handle>, profile: String, pod: Arc<PodInfo>, c: Candidate) {
    let client = &handle.client;
    let evictions = c.victims.iter().map(|v| {
        let (pod, c, profile, handle) = (&pod, &c, &profile, &handle);
        async move {
            let _slot = handle.api_slots.clone().acquire_owned().await;
            info!(preemptor = %pod.key(), victim = %v.key(), node = %c.node, "preempting");
            let condition = json!({"status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "PreemptionByScheduler",
                "message": format!("{profile}: preempting to accommodate a higher priority pod"),
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            }]}});
            if let Err(e) = client
                .patch_pod_status(&v.namespace, &v.name, &condition)
                .await
            {
                warn!(victim = %v.key(), error = %e, "marking a preemption victim");
            }
            match client.delete_pod(&v.namespace, &v.name, &v.uid).await {
                Ok(()) => {
                    if let Some(r) = &handle.recorder {
                        r.record(
                            &v.pod,
                            EventType::Normal,
                            "Preempted",
                            "Preempting",
                            profile,
                            format!("Preempted by pod {} on node {}", pod.uid, c.node),
                        );
                    }
                }
                Err(e) => warn!(victim = %v.key(), error = %e, "deleting a preemption victim"),
            }
        }
    });
    futures::future::join_all(evictions).await;
    let lower: Vec<Arc<PodInfo>> = handle
        .nominator
        .nominated_on(&c.node)
        .into_iter()
        .filter(|p| p.priority < pod.priority && p.uid != pod.uid)
        .collect();
    for p in lower {
        handle.nominator.delete(&p.uid);
        let patch = json!({"status": {"nominatedNodeName": null}});
        if let Err(e) = client.patch_pod_status(&p.namespace, &p.name, &patch).await {
            warn!(pod = %p.key(), error = %e, "clearing a nomination");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Call, FakeClient};
    use crate::plugins::testing::{node_info, pod};
    use serde_json::json;

    fn framework(client: Arc<FakeClient>) -> Framework {
        let handle = Arc::new(Handle {
            client,
            listers: Default::default(),
            nominator: Default::default(),
            parallelism: 1,
            recorder: None,
            api_slots: Arc::new(tokio::sync::Semaphore::new(64)),
        });
        let mut fw = Framework::empty("default-scheduler", handle.clone());
        let fit: Arc<dyn Plugin> = Arc::new(
            crate::plugins::node_resources_fit::NodeResourcesFit::new(&Value::Null).unwrap(),
        );
        fw.filter.push(fit.as_filter().unwrap());
        fw.post_filter.push(Arc::new(
            DefaultPreemption::new(&Value::Null, handle).unwrap(),
        ));
        fw
    }

    fn running(name: &str, priority: i32, cpu: &str) -> Value {
        json!({"metadata": {"name": name, "uid": name, "labels": {"app": name}},
            "spec": {"priority": priority, "containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": cpu}}}]}})
    }

    fn statuses(fw: &Framework, p: &PodInfo, snapshot: &Snapshot) -> HashMap<String, Status> {
        let state = CycleState::default();
        snapshot
            .nodes
            .iter()
            .map(|n| (n.name.clone(), fw.run_filter(&state, p, n)))
            .collect()
    }

    #[tokio::test]
    async fn the_cheapest_node_is_preempted_and_the_pod_nominated() {
        let client = Arc::new(FakeClient::default());
        let fw = framework(client.clone());
        let alloc = |name: &str| json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "2", "memory": "8Gi", "pods": "10"}}});
        let snapshot = Snapshot::from_nodes(vec![
            node_info(alloc("n1"), vec![running("mid", 50, "2")]),
            node_info(
                alloc("n2"),
                vec![running("low-a", 1, "1"), running("low-b", 1, "1")],
            ),
            node_info(
                alloc("n3"),
                vec![running("low-c", 1, "1"), running("high", 200, "1")],
            ),
        ]);
        let p = pod(
            json!({"spec": {"priority": 100, "containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        let st = statuses(&fw, &p, &snapshot);
        let (result, s) = fw.post_filter[0]
            .post_filter(&fw, &CycleState::default(), &p, &snapshot, &st)
            .await;
        assert!(s.is_success(), "{s:?}");
        // n3 needs one low victim (its high pod stays); n2 needs one of two
        // low pods; n1 would evict priority 50. n2 and n3 tie on everything
        // but n3's is the only way with one victim of priority 1 — both have
        // one; the first minimum wins deterministically by the ordering.
        let node = result.unwrap().nominated_node_name.unwrap();
        assert!(node == "n2" || node == "n3", "{node}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let deletes: Vec<Call> = client
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Delete { .. }))
            .collect();
        assert_eq!(deletes.len(), 1, "{deletes:?}");
    }

    #[tokio::test]
    async fn nothing_to_preempt_says_why_per_node() {
        let client = Arc::new(FakeClient::default());
        let fw = framework(client.clone());
        let snapshot = Snapshot::from_nodes(vec![node_info(
            json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}}),
            vec![running("peer", 100, "1")],
        )]);
        let p = pod(
            json!({"spec": {"priority": 100, "containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        let st = statuses(&fw, &p, &snapshot);
        let (result, s) = fw.post_filter[0]
            .post_filter(&fw, &CycleState::default(), &p, &snapshot, &st)
            .await;
        assert_eq!(s.code, Code::Unschedulable);
        assert_eq!(
            s.message(),
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod"
        );
        assert_eq!(result.unwrap().nominated_node_name.as_deref(), Some(""));
        assert!(client.calls().is_empty());
    }

    #[test]
    fn pdb_protected_pods_are_counted_as_violations() {
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}},
            "status": {"disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2}}))
        .unwrap();
        let pods = vec![
            pod(json!({"metadata": {"labels": {"app": "db"}}})),
            pod(json!({"metadata": {"labels": {"app": "db"}}})),
            pod(json!({"metadata": {"labels": {"app": "web"}}})),
        ];
        let (violating, fine) = split_by_pdb(&pods, &[Arc::new(pdb)]);
        assert_eq!(violating.len(), 1);
        assert_eq!(fine.len(), 2);
    }

    #[test]
    fn candidates_are_ranked_like_upstream() {
        let v = |p: i32| pod(json!({"spec": {"priority": p}}));
        let c = |node: &str, victims: Vec<Arc<PodInfo>>, pdb| Candidate {
            node: node.into(),
            victims,
            pdb_violations: pdb,
        };
        let cands = vec![
            c("violates", vec![v(1)], 1),
            c("high", vec![v(50)], 0),
            c("many", vec![v(5), v(5)], 0),
            c("few", vec![v(5)], 0),
        ];
        assert_eq!(pick_one(&cands).unwrap().node, "few");
        assert_eq!(pick_one(&cands[..2]).unwrap().node, "high");
    }
}
