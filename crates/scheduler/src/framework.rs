//! The scheduling framework: one trait per upstream extension point, the
//! status plugins answer with, the per-cycle state they share, and
//! [`Framework`], one profile's plugins in order with the code that runs
//! each extension point.

use std::any::Any;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;

use crate::cache::Snapshot;
use crate::client::ClusterClient;
use crate::listers::Listers;
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::parallel;
use crate::queue::{Nominator, QueuedPodInfo};

/// The highest score a Score plugin gives (after normalizing).
pub const MAX_NODE_SCORE: i64 = 100;

/// What a plugin answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    Success,
    /// Something went wrong (not the pod's fault).
    Error,
    /// The pod does not fit now; preemption may help.
    Unschedulable,
    /// The pod does not fit, and preemption cannot change that.
    UnschedulableAndUnresolvable,
    /// Permit: hold the pod until allowed.
    Wait,
    /// PreFilter/PreScore: this plugin has nothing to do for the pod.
    Skip,
    /// The pod waits for something outside the scheduler.
    Pending,
}

/// A plugin's answer: a code and the reasons, with the plugin that gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    pub plugin: &'static str,
}

impl Status {
    pub fn success() -> Status {
        Status::new(Code::Success, Vec::<String>::new())
    }

    pub fn new(code: Code, reasons: impl IntoIterator<Item = impl Into<String>>) -> Status {
        Status {
            code,
            reasons: reasons.into_iter().map(Into::into).collect(),
            plugin: "",
        }
    }

    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status::new(Code::Unschedulable, [reason])
    }

    pub fn unresolvable(reason: impl Into<String>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, [reason])
    }

    pub fn error(message: impl Into<String>) -> Status {
        Status::new(Code::Error, [message])
    }

    pub fn skip() -> Status {
        Status::new(Code::Skip, Vec::<String>::new())
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Unschedulable, unresolvable or pending: the pod cannot go here.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable | Code::Pending
        )
    }

    /// The reasons, joined.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }

    /// The same status, naming the plugin that gave it.
    pub fn with_plugin(mut self, plugin: &'static str) -> Status {
        if self.plugin.is_empty() {
            self.plugin = plugin;
        }
        self
    }
}

/// Data a plugin keeps for one scheduling cycle (cloned for preemption's
/// dry runs).
pub trait StateData: Any + Send + Sync {
    fn clone_data(&self) -> Box<dyn StateData>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// What the plugins share during one scheduling cycle.
///
/// Plugins keep a handful of entries each, so they live in a small vector
/// searched by key (cheaper than hashing on every Filter and Score call).
#[derive(Default)]
pub struct CycleState {
    data: Vec<(&'static str, Box<dyn StateData>)>,
    /// Filter plugins whose PreFilter said Skip.
    pub skip_filter: HashSet<&'static str>,
    /// Score plugins whose PreScore said Skip.
    pub skip_score: HashSet<&'static str>,
    /// Per Filter plugin (in profile order): whether it runs this cycle.
    filter_enabled: Vec<bool>,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self
                .data
                .iter()
                .map(|(k, v)| (*k, (**v).clone_data()))
                .collect(),
            skip_filter: self.skip_filter.clone(),
            skip_score: self.skip_score.clone(),
            filter_enabled: self.filter_enabled.clone(),
        }
    }
}

impl CycleState {
    fn position(&self, key: &str) -> Option<usize> {
        self.data
            .iter()
            .position(|(k, _)| std::ptr::eq(*k, key) || *k == key)
    }

    pub fn write<T: StateData>(&mut self, key: &'static str, value: T) {
        match self.position(key) {
            Some(i) => self.data[i].1 = Box::new(value),
            None => self.data.push((key, Box::new(value))),
        }
    }

    pub fn read<T: 'static>(&self, key: &'static str) -> Option<&T> {
        let i = self.position(key)?;
        (*self.data[i].1).as_any().downcast_ref()
    }

    pub fn read_mut<T: 'static>(&mut self, key: &'static str) -> Option<&mut T> {
        let i = self.position(key)?;
        (*self.data[i].1).as_any_mut().downcast_mut()
    }
}

/// What kind of object a cluster event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A pod bound to a node (an unscheduled pod's own changes are
    /// handled by the queue).
    Pod,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    Namespace,
    Service,
    /// Anything: matches every resource.
    Wildcard,
}

/// What happened to it, as bits.
pub mod action {
    pub const ADD: u32 = 1;
    pub const DELETE: u32 = 1 << 1;
    pub const UPDATE_NODE_ALLOCATABLE: u32 = 1 << 2;
    pub const UPDATE_NODE_LABEL: u32 = 1 << 3;
    pub const UPDATE_NODE_TAINT: u32 = 1 << 4;
    pub const UPDATE_NODE_CONDITION: u32 = 1 << 5;
    pub const UPDATE_NODE_ANNOTATION: u32 = 1 << 6;
    pub const UPDATE_POD_LABEL: u32 = 1 << 7;
    pub const UPDATE_POD_REQUEST: u32 = 1 << 8;
    /// Any other update.
    pub const UPDATE_OTHER: u32 = 1 << 9;
    pub const UPDATE: u32 = UPDATE_NODE_ALLOCATABLE
        | UPDATE_NODE_LABEL
        | UPDATE_NODE_TAINT
        | UPDATE_NODE_CONDITION
        | UPDATE_NODE_ANNOTATION
        | UPDATE_POD_LABEL
        | UPDATE_POD_REQUEST
        | UPDATE_OTHER;
    pub const ALL: u32 = ADD | DELETE | UPDATE;
}

/// A change in the cluster that may make unschedulable pods fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterEvent {
    pub resource: Resource,
    /// [`action`] bits.
    pub action: u32,
    /// For logs.
    pub label: &'static str,
}

impl ClusterEvent {
    pub const fn new(resource: Resource, action: u32, label: &'static str) -> ClusterEvent {
        ClusterEvent {
            resource,
            action,
            label,
        }
    }

    /// Whether `self` (what a plugin registered for) covers `event`.
    pub fn covers(&self, event: &ClusterEvent) -> bool {
        (self.resource == Resource::Wildcard || self.resource == event.resource)
            && self.action & event.action != 0
    }
}

/// Any change at all (a flush, or an event nobody registered for).
pub const WILDCARD_EVENT: ClusterEvent =
    ClusterEvent::new(Resource::Wildcard, action::ALL, "WildCardEvent");
/// The periodic flush of pods left unschedulable too long.
pub const UNSCHEDULABLE_TIMEOUT: ClusterEvent =
    ClusterEvent::new(Resource::Wildcard, action::ALL, "UnschedulableTimeout");

/// What every plugin is; the `as_*` methods say which extension points it
/// implements (use [`extension_points!`](crate::extension_points)).
pub trait Plugin: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The cluster events that may make a pod this plugin rejected fit.
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        Vec::new()
    }
    fn as_pre_enqueue(self: Arc<Self>) -> Option<Arc<dyn PreEnqueuePlugin>> {
        None
    }
    fn as_queue_sort(self: Arc<Self>) -> Option<Arc<dyn QueueSortPlugin>> {
        None
    }
    fn as_pre_filter(self: Arc<Self>) -> Option<Arc<dyn PreFilterPlugin>> {
        None
    }
    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        None
    }
    fn as_post_filter(self: Arc<Self>) -> Option<Arc<dyn PostFilterPlugin>> {
        None
    }
    fn as_pre_score(self: Arc<Self>) -> Option<Arc<dyn PreScorePlugin>> {
        None
    }
    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        None
    }
    fn as_reserve(self: Arc<Self>) -> Option<Arc<dyn ReservePlugin>> {
        None
    }
    fn as_permit(self: Arc<Self>) -> Option<Arc<dyn PermitPlugin>> {
        None
    }
    fn as_pre_bind(self: Arc<Self>) -> Option<Arc<dyn PreBindPlugin>> {
        None
    }
    fn as_bind(self: Arc<Self>) -> Option<Arc<dyn BindPlugin>> {
        None
    }
    fn as_post_bind(self: Arc<Self>) -> Option<Arc<dyn PostBindPlugin>> {
        None
    }
}

/// Implements the `as_*` casts of [`Plugin`] for the listed extension points:
/// `extension_points!(as_filter: FilterPlugin, as_score: ScorePlugin);`
#[macro_export]
macro_rules! extension_points {
    ($($method:ident : $trait:ident),* $(,)?) => {
        $(
            fn $method(self: ::std::sync::Arc<Self>) -> Option<::std::sync::Arc<dyn $crate::framework::$trait>> {
                Some(self)
            }
        )*
    };
}

/// Decides whether a pod may enter the active queue at all.
pub trait PreEnqueuePlugin: Plugin {
    fn pre_enqueue(&self, pod: &PodInfo) -> Status;
}

/// Orders the active queue.
pub trait QueueSortPlugin: Plugin {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool;
}

/// Runs once per cycle before the filters; may narrow the nodes to look at.
pub trait PreFilterPlugin: Plugin {
    /// `Ok(Some(nodes))` restricts the cycle to those nodes.
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<BTreeSet<String>>, Status);

    /// Whether [`PreFilterPlugin::add_pod`] / `remove_pod` do anything.
    fn has_extensions(&self) -> bool {
        false
    }

    /// Updates this plugin's cycle state as if `other` ran on `node`
    /// (preemption and nominated pods).
    fn add_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _other: &Arc<PodInfo>,
        _node: &NodeInfo,
    ) -> Status {
        Status::success()
    }

    /// Updates this plugin's cycle state as if `other` left `node`.
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _other: &Arc<PodInfo>,
        _node: &NodeInfo,
    ) -> Status {
        Status::success()
    }
}

/// Says whether the pod may run on one node.
pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// What a PostFilter plugin found: the node the pod is nominated to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostFilterResult {
    /// `Some("")` clears a nomination.
    pub nominated_node_name: Option<String>,
}

/// Runs when no node fits (preemption).
#[async_trait]
pub trait PostFilterPlugin: Plugin {
    async fn post_filter(
        &self,
        fw: &Framework,
        state: &CycleState,
        pod: &Arc<PodInfo>,
        snapshot: &Snapshot,
        statuses: &HashMap<String, Status>,
    ) -> (Option<PostFilterResult>, Status);
}

/// Runs once before scoring, over the nodes that passed the filters.
pub trait PreScorePlugin: Plugin {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status;
}

/// Scores one node (0..=100 after normalizing).
pub trait ScorePlugin: Plugin {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;

    /// Rescales the scores of `nodes` (same order) to 0..=100.
    fn normalize(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _scores: &mut [i64],
    ) -> Status {
        Status::success()
    }
}

/// Reserves what the pod needs on the chosen node; undone on failure.
pub trait ReservePlugin: Plugin {
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str);
}

/// Allows, rejects or holds a pod before it is bound.
pub trait PermitPlugin: Plugin {
    /// `Code::Wait` with a timeout holds the pod.
    fn permit(&self, state: &CycleState, pod: &PodInfo, node: &str) -> (Status, Duration);
}

/// Prepares the binding (volumes, ...).
#[async_trait]
pub trait PreBindPlugin: Plugin {
    async fn pre_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status;
}

/// Binds; a plugin that returns `Skip` leaves it to the next.
#[async_trait]
pub trait BindPlugin: Plugin {
    async fn bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status;
}

/// Told after a successful binding.
#[async_trait]
pub trait PostBindPlugin: Plugin {
    async fn post_bind(&self, state: &CycleState, pod: &PodInfo, node: &str);
}

/// What plugins may use besides their arguments: the API, the informer
/// caches, the nominated pods.
pub struct Handle {
    pub client: Arc<dyn ClusterClient>,
    pub listers: Arc<Listers>,
    pub nominator: Arc<Nominator>,
    /// Threads for filters and scores.
    pub parallelism: usize,
    /// Where plugins record events (`None` in unit tests).
    pub recorder: Option<crate::events::Recorder>,
    /// Bounds the scheduler's concurrent writes to the API server (bindings,
    /// status patches, evictions): each holds a connection, and thousands
    /// at once cost more than they gain (client-go's QPS limit bounds
    /// upstream's the same way).
    pub api_slots: Arc<tokio::sync::Semaphore>,
}

/// Writes to the API server in flight at once.
pub const API_CONCURRENCY: usize = 64;

impl Handle {
    /// A handle on a fake client, for tests.
    #[cfg(test)]
    pub fn for_tests() -> Arc<Handle> {
        Arc::new(Handle {
            client: Arc::new(crate::client::FakeClient::default()),
            listers: Default::default(),
            nominator: Default::default(),
            parallelism: 1,
            recorder: None,
            api_slots: Arc::new(tokio::sync::Semaphore::new(API_CONCURRENCY)),
        })
    }
}

/// A pod held by a Permit plugin.
struct WaitingPod {
    pending: HashSet<&'static str>,
    tx: Option<tokio::sync::oneshot::Sender<Status>>,
    rx: Option<tokio::sync::oneshot::Receiver<Status>>,
}

/// One profile: its plugins per extension point, in order.
pub struct Framework {
    pub profile_name: String,
    pub pre_enqueue: Vec<Arc<dyn PreEnqueuePlugin>>,
    pub queue_sort: Option<Arc<dyn QueueSortPlugin>>,
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    pub post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    /// With their weights.
    pub score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    pub reserve: Vec<Arc<dyn ReservePlugin>>,
    pub permit: Vec<Arc<dyn PermitPlugin>>,
    pub pre_bind: Vec<Arc<dyn PreBindPlugin>>,
    pub bind: Vec<Arc<dyn BindPlugin>>,
    pub post_bind: Vec<Arc<dyn PostBindPlugin>>,
    /// `percentageOfNodesToScore` for this profile (0 or `None`: adaptive).
    pub percentage_of_nodes_to_score: Option<i32>,
    /// The events each enabled plugin registered for.
    pub events: HashMap<&'static str, Vec<ClusterEvent>>,
    pub handle: Arc<Handle>,
    waiting: Mutex<HashMap<String, WaitingPod>>,
}

/// Why a profile could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("profile {profile}: plugin {plugin} is not known; known plugins: {known}")]
    UnknownPlugin {
        profile: String,
        plugin: String,
        known: String,
    },
    #[error("profile {profile}: plugin {plugin} does not implement the {point} extension point")]
    NotImplemented {
        profile: String,
        plugin: String,
        point: &'static str,
    },
    #[error("profile {profile}: plugin {plugin}: bad pluginConfig args: {reason}")]
    Args {
        profile: String,
        plugin: String,
        reason: String,
    },
    #[error("profile {profile}: {reason}")]
    Invalid { profile: String, reason: String },
}

/// The scores of the nodes that passed the filters.
#[derive(Clone, Debug)]
pub struct NodeScore {
    pub index: usize,
    pub total: i64,
}

impl Framework {
    /// An empty profile (plugins are pushed by [`crate::config`]).
    pub fn empty(profile_name: &str, handle: Arc<Handle>) -> Framework {
        Framework {
            profile_name: profile_name.to_owned(),
            pre_enqueue: Vec::new(),
            queue_sort: None,
            pre_filter: Vec::new(),
            filter: Vec::new(),
            post_filter: Vec::new(),
            pre_score: Vec::new(),
            score: Vec::new(),
            reserve: Vec::new(),
            permit: Vec::new(),
            pre_bind: Vec::new(),
            bind: Vec::new(),
            post_bind: Vec::new(),
            percentage_of_nodes_to_score: None,
            events: HashMap::new(),
            handle,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// PreEnqueue: the first plugin that does not say Success keeps the pod out.
    pub fn run_pre_enqueue(&self, pod: &PodInfo) -> Status {
        for p in &self.pre_enqueue {
            let s = p.pre_enqueue(pod);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// PreFilter: returns the nodes the cycle is restricted to (if any).
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<BTreeSet<String>>, Status) {
        let mut restricted: Option<BTreeSet<String>> = None;
        for p in &self.pre_filter {
            let (result, s) = p.pre_filter(state, pod, snapshot);
            match s.code {
                Code::Success => {}
                Code::Skip => {
                    state.skip_filter.insert(p.name());
                    continue;
                }
                _ => return (None, s.with_plugin(p.name())),
            }
            if let Some(nodes) = result {
                restricted = Some(match restricted {
                    None => nodes,
                    Some(r) => r.intersection(&nodes).cloned().collect(),
                });
                if restricted.as_ref().is_some_and(|r| r.is_empty()) {
                    return (
                        restricted,
                        Status::unresolvable(format!(
                            "node(s) didn't satisfy plugin(s) [{}] simultaneously",
                            p.name()
                        ))
                        .with_plugin(p.name()),
                    );
                }
            }
        }
        state.filter_enabled = self
            .filter
            .iter()
            .map(|p| !state.skip_filter.contains(p.name()))
            .collect();
        (restricted, Status::success())
    }

    /// Filter: the first plugin that rejects the node decides.
    pub fn run_filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let mask =
            (state.filter_enabled.len() == self.filter.len()).then_some(&state.filter_enabled);
        for (i, p) in self.filter.iter().enumerate() {
            let enabled = match mask {
                Some(m) => m[i],
                None => !state.skip_filter.contains(p.name()),
            };
            if !enabled {
                continue;
            }
            let s = p.filter(state, pod, node);
            if !s.is_success() {
                let s = if s.code == Code::Error || s.is_rejected() {
                    s
                } else {
                    Status::error(format!("unexpected status {:?}", s.code))
                };
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Adds `other` to `node` and to every PreFilter extension's state.
    pub fn add_pod_to_state(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &mut NodeInfo,
    ) -> Status {
        node.add_pod(other.clone());
        for p in self.pre_filter.iter().filter(|p| p.has_extensions()) {
            if state.skip_filter.contains(p.name()) {
                continue;
            }
            let s = p.add_pod(state, pod, other, node);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Removes `other` from `node` and from every PreFilter extension's state.
    pub fn remove_pod_from_state(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &mut NodeInfo,
    ) -> Status {
        node.remove_pod(&other.uid);
        for p in self.pre_filter.iter().filter(|p| p.has_extensions()) {
            if state.skip_filter.contains(p.name()) {
                continue;
            }
            let s = p.remove_pod(state, pod, other, node);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Filter, counting the pods nominated to this node with at least the
    /// pod's priority as if they ran there, as upstream's
    /// `RunFilterPluginsWithNominatedPods`: the node must fit the pod both
    /// with them and without them.
    pub fn run_filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let nominated: Vec<Arc<PodInfo>> = self
            .handle
            .nominator
            .nominated_on(&node.name)
            .into_iter()
            .filter(|p| p.uid != pod.uid && p.priority >= pod.priority)
            .collect();
        if !nominated.is_empty() {
            let mut state_with = state.clone();
            let mut node_with = node.clone();
            for p in &nominated {
                let s = self.add_pod_to_state(&mut state_with, pod, p, &mut node_with);
                if !s.is_success() {
                    return s;
                }
            }
            let s = self.run_filter(&state_with, pod, &node_with);
            if !s.is_success() {
                return s;
            }
        }
        self.run_filter(state, pod, node)
    }

    /// PreScore over the feasible nodes.
    pub fn run_pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        for p in &self.pre_score {
            let s = p.pre_score(state, pod, nodes, snapshot);
            match s.code {
                Code::Success => {}
                Code::Skip => {
                    state.skip_score.insert(p.name());
                }
                _ => return s.with_plugin(p.name()),
            }
        }
        Status::success()
    }

    /// Score, NormalizeScore and weights: the total per node, in `nodes` order.
    pub fn run_score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let plugins: Vec<&(Arc<dyn ScorePlugin>, i64)> = self
            .score
            .iter()
            .filter(|(p, _)| !state.skip_score.contains(p.name()))
            .collect();
        let mut totals = vec![0i64; nodes.len()];
        if plugins.is_empty() {
            return Ok(totals);
        }
        let threads = if nodes.len() * plugins.len() >= 256 {
            self.handle.parallelism
        } else {
            1
        };
        let mut by_plugin = vec![vec![0i64; nodes.len()]; plugins.len()];
        if threads <= 1 || nodes.len() < 512 {
            for (j, (p, _)) in plugins.iter().enumerate() {
                for (i, n) in nodes.iter().enumerate() {
                    by_plugin[j][i] = p
                        .score(state, pod, n)
                        .map_err(|s| s.with_plugin(p.name()))?;
                }
            }
        } else {
            let per_node: Vec<Result<Vec<i64>, Status>> =
                parallel::map(nodes.len(), threads, |i| {
                    plugins
                        .iter()
                        .map(|(p, _)| {
                            p.score(state, pod, &nodes[i])
                                .map_err(|s| s.with_plugin(p.name()))
                        })
                        .collect()
                });
            for (i, r) in per_node.into_iter().enumerate() {
                for (j, s) in r?.into_iter().enumerate() {
                    by_plugin[j][i] = s;
                }
            }
        }
        for (j, (p, weight)) in plugins.iter().enumerate() {
            let scores = &mut by_plugin[j];
            let s = p.normalize(state, pod, nodes, scores);
            if !s.is_success() {
                return Err(s.with_plugin(p.name()));
            }
            for (i, score) in scores.iter().enumerate() {
                if !(0..=MAX_NODE_SCORE).contains(score) {
                    return Err(Status::error(format!(
                        "plugin {} returns an invalid score {score}, it should in the range of [0, {MAX_NODE_SCORE}] after normalizing",
                        p.name()
                    ))
                    .with_plugin(p.name()));
                }
                totals[i] += score * weight;
            }
        }
        Ok(totals)
    }

    /// Reserve, in order; on failure the caller runs [`Framework::run_unreserve`].
    pub fn run_reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.reserve {
            let s = p.reserve(state, pod, node);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Unreserve, in reverse order.
    pub fn run_unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {
        for p in self.reserve.iter().rev() {
            p.unreserve(state, pod, node);
        }
    }

    /// Permit: Success, a rejection, or Wait with the longest the pod may
    /// wait (it is then registered as waiting; [`Framework::wait_on_permit`]
    /// waits for it).
    pub fn run_permit(&self, state: &CycleState, pod: &PodInfo, node: &str) -> (Status, Duration) {
        let mut pending = HashSet::new();
        let mut timeout = Duration::MAX;
        for p in &self.permit {
            let (s, t) = p.permit(state, pod, node);
            match s.code {
                Code::Success => {}
                Code::Wait => {
                    pending.insert(p.name());
                    timeout = timeout.min(t);
                }
                _ => return (s.with_plugin(p.name()), Duration::ZERO),
            }
        }
        if pending.is_empty() {
            return (Status::success(), Duration::ZERO);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting.lock().expect("waiting pods").insert(
            pod.uid.clone(),
            WaitingPod {
                pending,
                tx: Some(tx),
                rx: Some(rx),
            },
        );
        (Status::new(Code::Wait, Vec::<String>::new()), timeout)
    }

    /// Waits until every Permit plugin that said Wait allows the pod
    /// ([`Framework::allow`]), one rejects it, or `timeout` passes.
    pub async fn wait_on_permit(&self, pod: &PodInfo, timeout: Duration) -> Status {
        let rx = {
            let mut waiting = self.waiting.lock().expect("waiting pods");
            match waiting.get_mut(&pod.uid).and_then(|w| w.rx.take()) {
                Some(rx) => rx,
                None => return Status::success(),
            }
        };
        let result = tokio::time::timeout(timeout, rx).await;
        self.waiting.lock().expect("waiting pods").remove(&pod.uid);
        match result {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => Status::unschedulable("rejected while waiting on permit"),
            Err(_) => Status::unschedulable("rejected due to timeout after waiting on permit"),
        }
    }

    /// A Permit plugin lets a waiting pod go (once all have, it is bound).
    pub fn allow(&self, uid: &str, plugin: &'static str) {
        let mut waiting = self.waiting.lock().expect("waiting pods");
        if let Some(w) = waiting.get_mut(uid) {
            w.pending.remove(plugin);
            if w.pending.is_empty()
                && let Some(tx) = w.tx.take()
            {
                let _ = tx.send(Status::success());
            }
        }
    }

    /// A Permit plugin rejects a waiting pod.
    pub fn reject(&self, uid: &str, plugin: &'static str, reason: &str) {
        let mut waiting = self.waiting.lock().expect("waiting pods");
        if let Some(w) = waiting.get_mut(uid)
            && let Some(tx) = w.tx.take()
        {
            let _ = tx.send(Status::unschedulable(reason).with_plugin(plugin));
        }
    }

    /// PreBind, in order.
    pub async fn run_pre_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.pre_bind {
            let s = p.pre_bind(state, pod, node).await;
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Bind: the first plugin that does not skip binds.
    pub async fn run_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.bind {
            let s = p.bind(state, pod, node).await;
            if s.code == Code::Skip {
                continue;
            }
            return s.with_plugin(p.name());
        }
        Status::error("no bind plugin bound the pod")
    }

    /// PostBind, in order.
    pub async fn run_post_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) {
        for p in &self.post_bind {
            p.post_bind(state, pod, node).await;
        }
    }

    /// Whether a pod rejected by `plugins` may fit after `event`.
    pub fn event_may_help(&self, plugins: &HashSet<&'static str>, event: &ClusterEvent) -> bool {
        if event.resource == Resource::Wildcard || plugins.is_empty() {
            return true;
        }
        plugins.iter().any(|p| {
            self.events
                .get(p)
                .is_some_and(|evs| evs.iter().any(|e| e.covers(event)))
        })
    }

    /// Whether the profile is meant for this pod (its schedulerName).
    pub fn handles(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler");
        name == self.profile_name
    }
}

/// Why a pod fits nowhere: upstream's `FitError`.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    /// Each rejected node's status.
    pub node_statuses: HashMap<String, Status>,
    /// Plugins that rejected the pod somewhere.
    pub unschedulable_plugins: HashSet<&'static str>,
    /// Set when a PreFilter plugin rejected the pod outright.
    pub pre_filter_msg: Option<String>,
    /// What PostFilter (preemption) said.
    pub post_filter_msg: Option<String>,
}

/// No node fits the pod.
#[derive(Clone, Debug)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

impl FitError {
    /// upstream's message: `0/5 nodes are available: 2 Insufficient cpu, 3
    /// node(s) had untolerated taint {k: v}. preemption: ...`
    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        match &self.diagnosis.pre_filter_msg {
            Some(pre) => msg.push_str(&format!(" {pre}.")),
            None => {
                let histogram = reasons_histogram(self.diagnosis.node_statuses.values());
                if !histogram.is_empty() {
                    msg.push_str(&format!(" {}.", histogram.join(", ")));
                }
            }
        }
        if let Some(post) = &self.diagnosis.post_filter_msg {
            msg.push_str(&format!(" {post}."));
        }
        msg
    }
}

/// "`count` `reason`" for each distinct reason, sorted as strings.
pub fn reasons_histogram<'a>(statuses: impl Iterator<Item = &'a Status>) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in statuses {
        for r in &s.reasons {
            *counts.entry(r.as_str()).or_insert(0) += 1;
        }
    }
    let mut out: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    out.sort();
    out
}

/// upstream's `DefaultNormalizeScore`: scales to 0..=`max` by the highest
/// score, reversed when `reverse`.
pub fn default_normalize_score(max: i64, reverse: bool, scores: &mut [i64]) {
    let highest = scores.iter().copied().max().unwrap_or(0);
    if highest == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = max * *s / highest;
        *s = if reverse { max - v } else { v };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_error_message_counts_reasons_like_upstream() {
        let mut statuses = HashMap::new();
        for n in ["a", "b"] {
            statuses.insert(n.to_owned(), Status::unschedulable("Insufficient cpu"));
        }
        for n in ["c", "d", "e"] {
            statuses.insert(
                n.to_owned(),
                Status::unresolvable("node(s) had untolerated taint {k: v}"),
            );
        }
        let e = FitError {
            num_all_nodes: 5,
            diagnosis: Diagnosis {
                node_statuses: statuses,
                post_filter_msg: Some("preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling".into()),
                ..Diagnosis::default()
            },
        };
        assert_eq!(
            e.message(),
            "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {k: v}. preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn a_prefilter_rejection_is_reported_once() {
        let e = FitError {
            num_all_nodes: 3,
            diagnosis: Diagnosis {
                pre_filter_msg: Some("pod has unbound immediate PersistentVolumeClaims".into()),
                node_statuses: HashMap::from([(
                    "a".into(),
                    Status::unresolvable("pod has unbound immediate PersistentVolumeClaims"),
                )]),
                ..Diagnosis::default()
            },
        };
        assert_eq!(
            e.message(),
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        );
    }

    #[test]
    fn default_normalize_scales_and_reverses() {
        let mut s = vec![0, 5, 10];
        default_normalize_score(100, false, &mut s);
        assert_eq!(s, [0, 50, 100]);
        let mut s = vec![0, 5, 10];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, [100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, [100, 100]);
    }

    #[test]
    fn cycle_state_clones_deeply() {
        let mut a = CycleState::default();
        a.write("k", vec![1, 2]);
        let mut b = a.clone();
        b.read_mut::<Vec<i32>>("k").unwrap().push(3);
        assert_eq!(a.read::<Vec<i32>>("k").unwrap().len(), 2);
        assert_eq!(b.read::<Vec<i32>>("k").unwrap().len(), 3);
    }

    #[test]
    fn registered_events_decide_whether_a_pod_moves() {
        let ev = ClusterEvent::new(Resource::Node, action::ADD | action::UPDATE_NODE_TAINT, "x");
        assert!(ev.covers(&ClusterEvent::new(Resource::Node, action::ADD, "NodeAdd")));
        assert!(!ev.covers(&ClusterEvent::new(
            Resource::Node,
            action::UPDATE_NODE_LABEL,
            "l"
        )));
        assert!(!ev.covers(&ClusterEvent::new(Resource::Pod, action::ADD, "p")));
    }
}
