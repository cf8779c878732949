//! One scheduling cycle after another (upstream's `scheduleOne`): pop a pod,
//! snapshot the cache, run PreFilter and the filters over enough nodes (in
//! parallel), score the feasible ones, pick the best (ties round-robin),
//! assume the pod there, Reserve and Permit; then bind in the background
//! (PreBind, Bind, PostBind) while the next cycle starts. When no node
//! fits, PostFilter (preemption) runs and the pod gets a `PodScheduled=False`
//! condition and a `FailedScheduling` event saying why, per plugin.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::cache::{Cache, Snapshot};
use crate::events::{EventType, Recorder};
use crate::framework::{
    ClusterEvent, Code, CycleState, Diagnosis, FitError, Framework, Resource, Status, action,
};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::parallel;
use crate::queue::{Placed, QueuedPodInfo, SchedulingQueue};

/// Below this many nodes every node is looked at.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: i64 = 5;

/// How many feasible nodes to find before scoring, as upstream's
/// `numFeasibleNodesToFind`: all below 100 nodes; otherwise `percentage`
/// of them, adaptive (50 - nodes/125, at least 5) when 0, never fewer than 100.
pub fn num_feasible_nodes_to_find(percentage: i32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut pct = percentage as i64;
    if pct <= 0 {
        pct = (50 - num_all_nodes as i64 / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    let n = (num_all_nodes as i64 * pct / 100) as usize;
    n.max(MIN_FEASIBLE_NODES_TO_FIND).min(num_all_nodes)
}

/// A scheduling attempt that did not place the pod.
#[derive(Debug)]
pub enum ScheduleError {
    /// No node fits.
    Fit(Box<FitError>),
    /// The snapshot has no nodes at all.
    NoNodes,
    /// A plugin failed.
    Plugin(Status),
}

impl ScheduleError {
    pub fn message(&self) -> String {
        match self {
            ScheduleError::Fit(f) => f.message(),
            ScheduleError::NoNodes => "no nodes available to schedule pods".into(),
            ScheduleError::Plugin(s) => {
                if s.plugin.is_empty() {
                    s.message()
                } else {
                    format!("running {} plugin: {}", s.plugin, s.message())
                }
            }
        }
    }
}

/// Where a pod goes, and how the choice was made.
#[derive(Debug)]
pub struct ScheduleResult {
    pub node: String,
    pub evaluated: usize,
    pub feasible: usize,
}

/// What the loop remembers between cycles.
#[derive(Default)]
pub struct LoopState {
    pub snapshot: Snapshot,
    /// Where the next partial search starts (upstream's `nextStartNodeIndex`).
    pub next_start: usize,
    /// Round-robin counter for ties.
    pub tie_break: u64,
}

/// The scheduler: cache, queue, profiles, and what it writes with.
pub struct Scheduler {
    pub cache: Mutex<Cache>,
    pub queue: Arc<SchedulingQueue>,
    pub profiles: HashMap<String, Arc<Framework>>,
    pub recorder: Recorder,
    pub runtime: tokio::runtime::Handle,
    /// Pods bound so far (for benchmarks and logs).
    pub bound: AtomicU64,
    /// Scheduling attempts that failed.
    pub failed: AtomicU64,
    /// Binding cycles in flight.
    pub binding: AtomicUsize,
}

impl Scheduler {
    fn profile(&self, pod: &Pod) -> Option<&Arc<Framework>> {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(crate::config::DEFAULT_SCHEDULER_NAME);
        self.profiles.get(name)
    }

    /// Runs cycles until the queue closes. Call on a dedicated thread.
    pub fn run_loop(self: &Arc<Self>) {
        let mut state = LoopState::default();
        while let Some((qp, cycle)) = self.queue.pop() {
            self.schedule_one(qp, cycle, &mut state);
        }
    }

    /// One scheduling cycle for `qp` (popped in `cycle`).
    pub fn schedule_one(self: &Arc<Self>, mut qp: QueuedPodInfo, cycle: u64, ls: &mut LoopState) {
        qp.cycle_started = std::time::Instant::now();
        let pod = qp.pod.clone();
        let Some(fw) = self.profile(&pod.pod).cloned() else {
            self.queue.done(&pod.uid);
            return;
        };
        if pod.terminating() || self.cache.lock().expect("cache").is_assumed(&pod.uid) {
            self.queue.done(&pod.uid);
            return;
        }
        self.cache
            .lock()
            .expect("cache")
            .update_snapshot(&mut ls.snapshot);
        let mut state = CycleState::default();
        let result = schedule_pod(&fw, &mut state, &pod, ls);
        match result {
            Ok(r) => self.assume_and_bind(fw, state, qp, cycle, r),
            Err(ScheduleError::Fit(mut fit)) => {
                let mut nominated = None;
                if !fw.post_filter.is_empty() {
                    let (result, s) = self.runtime.block_on(run_post_filter(
                        &fw,
                        &state,
                        &pod,
                        &ls.snapshot,
                        &fit.diagnosis.node_statuses,
                    ));
                    if !s.reasons.is_empty() && s.code != Code::Success {
                        fit.diagnosis.post_filter_msg = Some(s.message());
                    }
                    if s.is_success() || s.code == Code::Unschedulable {
                        nominated = result.and_then(|r| r.nominated_node_name);
                    }
                }
                self.handle_failure(&fw, qp, cycle, ScheduleError::Fit(fit), nominated);
            }
            Err(e) => self.handle_failure(&fw, qp, cycle, e, None),
        }
    }

    fn assume_and_bind(
        self: &Arc<Self>,
        fw: Arc<Framework>,
        mut state: CycleState,
        qp: QueuedPodInfo,
        cycle: u64,
        r: ScheduleResult,
    ) {
        let pod = qp.pod.clone();
        let mut assumed_pod: Pod = (*pod.pod).clone();
        assumed_pod
            .spec
            .get_or_insert_with(Default::default)
            .node_name = Some(r.node.clone());
        let assumed = Arc::new(PodInfo::new(Arc::new(assumed_pod)));
        self.cache
            .lock()
            .expect("cache")
            .assume_pod(assumed.clone(), &r.node);
        let s = fw.run_reserve(&mut state, &pod, &r.node);
        if !s.is_success() {
            fw.run_unreserve(&mut state, &pod, &r.node);
            self.cache.lock().expect("cache").forget_pod(&pod.uid);
            let e = if s.is_rejected() {
                ScheduleError::Fit(Box::new(single_plugin_fit(s, 1, &r.node)))
            } else {
                ScheduleError::Plugin(s)
            };
            self.handle_failure(&fw, qp, cycle, e, None);
            return;
        }
        let (permit, timeout) = fw.run_permit(&state, &pod, &r.node);
        if !permit.is_success() && permit.code != Code::Wait {
            fw.run_unreserve(&mut state, &pod, &r.node);
            self.cache.lock().expect("cache").forget_pod(&pod.uid);
            let e = if permit.is_rejected() {
                ScheduleError::Fit(Box::new(single_plugin_fit(permit, 1, &r.node)))
            } else {
                ScheduleError::Plugin(permit)
            };
            self.handle_failure(&fw, qp, cycle, e, None);
            return;
        }
        // An assumed pod is no longer nominated anywhere.
        fw.handle.nominator.delete(&pod.uid);
        debug!(pod = %pod.key(), node = %r.node, evaluated = r.evaluated, feasible = r.feasible, "scheduled");
        let this = self.clone();
        self.binding.fetch_add(1, Ordering::Relaxed);
        self.runtime.spawn(async move {
            let wait = permit.code == Code::Wait;
            let binding = this.clone();
            this.binding_cycle(fw, state, qp, cycle, r.node, wait, timeout)
                .await;
            binding.binding.fetch_sub(1, Ordering::Relaxed);
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn binding_cycle(
        self: Arc<Self>,
        fw: Arc<Framework>,
        mut state: CycleState,
        qp: QueuedPodInfo,
        cycle: u64,
        node: String,
        wait: bool,
        timeout: std::time::Duration,
    ) {
        let pod = qp.pod.clone();
        let mut s = Status::success();
        if wait {
            s = fw.wait_on_permit(&pod, timeout).await;
        }
        if s.is_success() {
            s = fw.run_pre_bind(&state, &pod, &node).await;
        }
        if s.is_success() {
            // PreBind may wait long (volumes); only the write holds a slot.
            let _slot = fw.handle.api_slots.clone().acquire_owned().await;
            s = fw.run_bind(&state, &pod, &node).await;
        }
        if s.is_success() {
            self.bound.fetch_add(1, Ordering::Relaxed);
            crate::metrics::get().attempt(
                "scheduled",
                &fw.profile_name,
                qp.cycle_started.elapsed(),
            );
            self.queue.done(&pod.uid);
            self.recorder.record(
                &pod.pod,
                EventType::Normal,
                "Scheduled",
                "Binding",
                &fw.profile_name,
                format!("Successfully assigned {} to {node}", pod.key()),
            );
            fw.run_post_bind(&state, &pod, &node).await;
            return;
        }
        fw.run_unreserve(&mut state, &pod, &node);
        self.cache.lock().expect("cache").forget_pod(&pod.uid);
        // The node it held is free again: others may fit now.
        self.queue.move_all(&ClusterEvent::new(
            Resource::Pod,
            action::DELETE,
            "AssignedPodDelete",
        ));
        let e = if s.is_rejected() {
            ScheduleError::Fit(Box::new(single_plugin_fit(s, 1, &node)))
        } else {
            ScheduleError::Plugin(s)
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.handle_failure(&fw, qp, cycle, e, None));
    }

    /// Puts the pod back in the queue and tells the API why it is pending.
    pub fn handle_failure(
        &self,
        fw: &Framework,
        mut qp: QueuedPodInfo,
        cycle: u64,
        err: ScheduleError,
        nominated: Option<String>,
    ) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let pod = qp.pod.clone();
        let (reason, unschedulable) = match &err {
            ScheduleError::Fit(f) => {
                qp.unschedulable_plugins = f.diagnosis.unschedulable_plugins.clone();
                ("Unschedulable", true)
            }
            ScheduleError::NoNodes => {
                qp.unschedulable_plugins = HashSet::new();
                ("Unschedulable", true)
            }
            ScheduleError::Plugin(_) => ("SchedulerError", false),
        };
        crate::metrics::get().attempt(
            if unschedulable {
                "unschedulable"
            } else {
                "error"
            },
            &fw.profile_name,
            qp.cycle_started.elapsed(),
        );
        let message = err.message();
        match &nominated {
            Some(n) if !n.is_empty() => fw.handle.nominator.add(&pod, Some(n)),
            Some(_) => fw.handle.nominator.delete(&pod.uid),
            None => {}
        }
        let placed = self.queue.requeue_failed(qp, cycle, unschedulable);
        if placed == Placed::Nowhere {
            return;
        }
        info!(pod = %pod.key(), %message, "unable to schedule pod");
        self.recorder.record(
            &pod.pod,
            EventType::Warning,
            "FailedScheduling",
            "Scheduling",
            &fw.profile_name,
            message.clone(),
        );
        let current = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let current_nominated = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
            .unwrap_or_default();
        let condition_same = current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message.as_str())
        });
        let nomination_same = nominated.as_ref().is_none_or(|n| *n == current_nominated);
        if condition_same && nomination_same {
            return;
        }
        let mut status = json!({
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": Timestamp::now().to_string(),
            }],
        });
        if let Some(n) = &nominated
            && *n != current_nominated
        {
            status["nominatedNodeName"] = if n.is_empty() { json!(null) } else { json!(n) };
        }
        let patch = json!({ "status": status });
        let client = fw.handle.client.clone();
        let slots = fw.handle.api_slots.clone();
        let (ns, name) = (pod.namespace.clone(), pod.name.clone());
        self.runtime.spawn(async move {
            let _slot = slots.acquire_owned().await;
            if let Err(e) = client.patch_pod_status(&ns, &name, &patch).await {
                warn!(pod = %format!("{ns}/{name}"), error = %e, "updating the pod's PodScheduled condition");
            }
        });
    }
}

/// A fit error for a rejection after the node was chosen.
fn single_plugin_fit(s: Status, nodes: usize, node: &str) -> FitError {
    let mut d = Diagnosis::default();
    d.unschedulable_plugins.insert(s.plugin);
    d.node_statuses.insert(node.to_owned(), s);
    FitError {
        num_all_nodes: nodes,
        diagnosis: d,
    }
}

async fn run_post_filter(
    fw: &Framework,
    state: &CycleState,
    pod: &Arc<PodInfo>,
    snapshot: &Snapshot,
    statuses: &HashMap<String, Status>,
) -> (Option<crate::framework::PostFilterResult>, Status) {
    let mut last = Status::new(Code::Unschedulable, Vec::<String>::new());
    for p in &fw.post_filter {
        let (result, s) = p.post_filter(fw, state, pod, snapshot, statuses).await;
        if s.is_success() {
            return (result, s.with_plugin(p.name()));
        }
        if s.code != Code::Unschedulable && s.code != Code::UnschedulableAndUnresolvable {
            return (result, s.with_plugin(p.name()));
        }
        last = s.with_plugin(p.name());
        if result.is_some() {
            return (result, last);
        }
    }
    (None, last)
}

/// Finds the best node for `pod` in `ls.snapshot` (upstream's `schedulePod`).
pub fn schedule_pod(
    fw: &Framework,
    state: &mut CycleState,
    pod: &PodInfo,
    ls: &mut LoopState,
) -> Result<ScheduleResult, ScheduleError> {
    let snapshot = &ls.snapshot;
    if snapshot.is_empty() {
        return Err(ScheduleError::NoNodes);
    }
    let (feasible, diagnosis, evaluated) = find_nodes_that_fit(fw, state, pod, ls)?;
    let snapshot = &ls.snapshot;
    if feasible.is_empty() {
        return Err(ScheduleError::Fit(Box::new(FitError {
            num_all_nodes: snapshot.len(),
            diagnosis,
        })));
    }
    if feasible.len() == 1 {
        return Ok(ScheduleResult {
            node: feasible[0].name.clone(),
            evaluated,
            feasible: 1,
        });
    }
    let s = fw.run_pre_score(state, pod, &feasible, snapshot);
    if !s.is_success() {
        return Err(ScheduleError::Plugin(s));
    }
    let totals = fw
        .run_score(state, pod, &feasible)
        .map_err(ScheduleError::Plugin)?;
    let best = *totals.iter().max().expect("feasible nodes");
    let ties: Vec<usize> = (0..totals.len()).filter(|i| totals[*i] == best).collect();
    let pick = ties[(ls.tie_break % ties.len() as u64) as usize];
    ls.tie_break = ls.tie_break.wrapping_add(1);
    Ok(ScheduleResult {
        node: feasible[pick].name.clone(),
        evaluated,
        feasible: feasible.len(),
    })
}

type FitResult = (Vec<Arc<NodeInfo>>, Diagnosis, usize);

fn find_nodes_that_fit(
    fw: &Framework,
    state: &mut CycleState,
    pod: &PodInfo,
    ls: &mut LoopState,
) -> Result<FitResult, ScheduleError> {
    let snapshot = &ls.snapshot;
    let mut diagnosis = Diagnosis::default();
    let (restricted, s) = fw.run_pre_filter(state, pod, snapshot);
    if !s.is_success() {
        if !s.is_rejected() {
            return Err(ScheduleError::Plugin(s));
        }
        diagnosis.pre_filter_msg = Some(s.message());
        diagnosis.unschedulable_plugins.insert(s.plugin);
        for n in &snapshot.nodes {
            diagnosis.node_statuses.insert(n.name.clone(), s.clone());
        }
        return Ok((Vec::new(), diagnosis, 0));
    }
    // A nominated node (from an earlier preemption) is tried first.
    if let Some(nominated) = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
        && let Some(node) = snapshot.get(nominated)
        && restricted.as_ref().is_none_or(|r| r.contains(nominated))
    {
        let s = fw.run_filter_with_nominated(state, pod, node);
        if s.is_success() {
            return Ok((vec![node.clone()], diagnosis, 1));
        }
        if s.code == Code::Error {
            return Err(ScheduleError::Plugin(s));
        }
    }
    let candidates: Vec<&Arc<NodeInfo>> = match &restricted {
        None => snapshot.nodes.iter().collect(),
        Some(names) => {
            let c: Vec<&Arc<NodeInfo>> = snapshot
                .nodes
                .iter()
                .filter(|n| names.contains(&n.name))
                .collect();
            // Nodes the PreFilter result left out are rejected as such.
            for n in &snapshot.nodes {
                if !names.contains(&n.name) {
                    let s = Status::unresolvable("node(s) didn't satisfy plugin(s) [NodeAffinity]")
                        .with_plugin("NodeAffinity");
                    diagnosis.node_statuses.insert(n.name.clone(), s);
                }
            }
            c
        }
    };
    let num_all = candidates.len();
    if num_all == 0 {
        return Ok((Vec::new(), diagnosis, 0));
    }
    let pct = fw.percentage_of_nodes_to_score.unwrap_or(0);
    let to_find = num_feasible_nodes_to_find(pct, num_all);
    let start = if restricted.is_none() {
        ls.next_start % num_all
    } else {
        0
    };
    let feasible: Mutex<Vec<(usize, Arc<NodeInfo>)>> = Mutex::new(Vec::with_capacity(to_find));
    let rejected: Mutex<Vec<(String, Status)>> = Mutex::new(Vec::new());
    let found = AtomicUsize::new(0);
    let error: Mutex<Option<Status>> = Mutex::new(None);
    let state_ref: &CycleState = state;
    let threads = if fw.filter.is_empty() {
        1
    } else {
        fw.handle.parallelism
    };
    parallel::until(num_all, threads, |i| {
        let idx = (start + i) % num_all;
        let node = candidates[idx];
        let s = if fw.filter.is_empty() {
            Status::success()
        } else {
            fw.run_filter_with_nominated(state_ref, pod, node)
        };
        if s.is_success() {
            let n = found.fetch_add(1, Ordering::Relaxed) + 1;
            if n > to_find {
                return false;
            }
            feasible.lock().expect("feasible").push((i, node.clone()));
            n < to_find
        } else if s.code == Code::Error {
            *error.lock().expect("error") = Some(s);
            false
        } else {
            rejected
                .lock()
                .expect("rejected")
                .push((node.name.clone(), s));
            true
        }
    });
    if let Some(s) = error.into_inner().expect("error") {
        return Err(ScheduleError::Plugin(s));
    }
    let mut feasible = feasible.into_inner().expect("feasible");
    feasible.sort_by_key(|(i, _)| *i);
    let rejected = rejected.into_inner().expect("rejected");
    let processed = feasible.len() + rejected.len();
    if restricted.is_none() {
        ls.next_start = (start + processed) % num_all;
    }
    for (name, s) in rejected {
        diagnosis.unschedulable_plugins.insert(s.plugin);
        diagnosis.node_statuses.insert(name, s);
    }
    Ok((
        feasible.into_iter().map(|(_, n)| n).collect(),
        diagnosis,
        processed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_of_nodes_to_score_adapts_like_upstream() {
        let cases = [
            (0, 50, 50),
            (0, 100, 100),
            (0, 1000, 420),
            (0, 5000, 500),
            (0, 6000, 300),
            (0, 2000, 680),
            (10, 5000, 500),
            (1, 5000, 100),
            (100, 5000, 5000),
        ];
        for (pct, nodes, want) in cases {
            assert_eq!(
                num_feasible_nodes_to_find(pct, nodes),
                want,
                "{pct}% of {nodes}"
            );
        }
    }
}
