//! The scheduling queue (upstream's `PriorityQueue`): an active queue in the
//! order of the QueueSort plugin, a backoff queue (1 s doubling to 10 s per
//! failed attempt) and the unschedulable pods, which move back when a
//! cluster event one of the plugins that rejected them registered for
//! happens, or after five minutes. Also the nominator: pods that preemption
//! nominated to a node, which the filters count there.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::framework::{ClusterEvent, Framework, QueueSortPlugin};
use crate::nodeinfo::PodInfo;

/// The first backoff after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays unschedulable before it is retried anyway
/// (upstream's `podMaxInUnschedulablePodsDuration`).
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// A pod in the queue and its scheduling history.
#[derive(Clone, Debug)]
pub struct QueuedPodInfo {
    pub pod: Arc<PodInfo>,
    /// When it was (last) added to a queue: the order within a priority.
    pub timestamp: Instant,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// When it was first tried.
    pub initial_attempt: Option<Instant>,
    /// The plugins that rejected it in its last attempt.
    pub unschedulable_plugins: HashSet<&'static str>,
    /// A PreEnqueue plugin keeps it out of the active queue.
    pub gated: bool,
    /// The backoff after a failed attempt (set by the queue from its
    /// initial and maximum backoff).
    pub backoff: Duration,
    /// When its current scheduling attempt began (for the attempt-duration
    /// metric).
    pub cycle_started: Instant,
}

impl QueuedPodInfo {
    pub fn new(pod: Arc<PodInfo>) -> QueuedPodInfo {
        QueuedPodInfo {
            pod,
            timestamp: Instant::now(),
            attempts: 0,
            initial_attempt: None,
            unschedulable_plugins: HashSet::new(),
            gated: false,
            backoff: Duration::ZERO,
            cycle_started: Instant::now(),
        }
    }

    /// How long a pod waits after `attempts` failures: `initial` doubling
    /// up to `max` (upstream's `calculateBackoffDuration`).
    pub fn backoff_for(attempts: u32, initial: Duration, max: Duration) -> Duration {
        let mut d = initial;
        for _ in 1..attempts {
            if d > max.saturating_sub(d) {
                return max;
            }
            d *= 2;
        }
        d.min(max)
    }

    fn backoff_expiry(&self) -> Instant {
        self.timestamp + self.backoff
    }
}

/// The order of a heap: whether the first pod goes before the second.
type Less = Box<dyn Fn(&QueuedPodInfo, &QueuedPodInfo) -> bool + Send>;

/// A binary heap of pods keyed by UID, so they can be updated and removed.
struct KeyedHeap {
    items: Vec<QueuedPodInfo>,
    pos: HashMap<String, usize>,
    less: Less,
}

impl KeyedHeap {
    fn new(less: Less) -> KeyedHeap {
        KeyedHeap {
            items: Vec::new(),
            pos: HashMap::new(),
            less,
        }
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn contains(&self, uid: &str) -> bool {
        self.pos.contains_key(uid)
    }

    fn peek(&self) -> Option<&QueuedPodInfo> {
        self.items.first()
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.items.swap(a, b);
        self.pos.insert(self.items[a].pod.uid.clone(), a);
        self.pos.insert(self.items[b].pod.uid.clone(), b);
    }

    fn up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !(self.less)(&self.items[i], &self.items[parent]) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut best = i;
            if l < self.items.len() && (self.less)(&self.items[l], &self.items[best]) {
                best = l;
            }
            if r < self.items.len() && (self.less)(&self.items[r], &self.items[best]) {
                best = r;
            }
            if best == i {
                return;
            }
            self.swap(i, best);
            i = best;
        }
    }

    /// Adds or replaces (by UID).
    fn push(&mut self, qp: QueuedPodInfo) {
        if let Some(&i) = self.pos.get(&qp.pod.uid) {
            self.items[i] = qp;
            self.up(i);
            self.down(i);
            return;
        }
        let i = self.items.len();
        self.pos.insert(qp.pod.uid.clone(), i);
        self.items.push(qp);
        self.up(i);
    }

    fn remove(&mut self, uid: &str) -> Option<QueuedPodInfo> {
        let i = self.pos.remove(uid)?;
        let last = self.items.len() - 1;
        if i != last {
            self.items.swap(i, last);
            self.pos.insert(self.items[i].pod.uid.clone(), i);
        }
        let item = self.items.pop();
        if i < self.items.len() {
            self.up(i);
            self.down(i);
        }
        item
    }

    fn pop(&mut self) -> Option<QueuedPodInfo> {
        let uid = self.items.first()?.pod.uid.clone();
        self.remove(&uid)
    }

    fn get_mut(&mut self, uid: &str) -> Option<&mut QueuedPodInfo> {
        let i = *self.pos.get(uid)?;
        Some(&mut self.items[i])
    }
}

struct Inner {
    active: KeyedHeap,
    backoff: KeyedHeap,
    unschedulable: HashMap<String, QueuedPodInfo>,
    /// Popped and being scheduled (the latest version of each).
    in_flight: HashMap<String, QueuedPodInfo>,
    /// Bumped at each pop.
    scheduling_cycle: u64,
    /// Cluster events that arrived while pods were in flight (with the node
    /// a deleted pod was on): a pod that fails goes to backoff rather than
    /// among the unschedulable when one of them may help it (upstream's
    /// in-flight events), since it may have missed its chance.
    events: Vec<(ClusterEvent, Option<String>)>,
    /// The number of events dropped from the front of `events`.
    events_base: usize,
    /// For each in-flight pod, the event count when it was popped.
    in_flight_since: HashMap<String, usize>,
    closed: bool,
}

impl Inner {
    fn leave_flight(&mut self, uid: &str) -> Option<QueuedPodInfo> {
        self.in_flight_since.remove(uid);
        let qp = self.in_flight.remove(uid);
        if self.in_flight.is_empty() {
            self.events_base += self.events.len();
            self.events.clear();
        }
        qp
    }
}

/// The queue the scheduling loop pops from.
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
    profiles: HashMap<String, Arc<Framework>>,
    pub nominator: Arc<Nominator>,
    initial_backoff: Duration,
    max_backoff: Duration,
}

/// Where [`SchedulingQueue::add`] put a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    Active,
    Backoff,
    Unschedulable,
    /// Dropped (no profile for it, or deleted meanwhile).
    Nowhere,
}

impl SchedulingQueue {
    /// A queue ordered by `sort` for pods of `profiles`.
    pub fn new(
        sort: Arc<dyn QueueSortPlugin>,
        profiles: HashMap<String, Arc<Framework>>,
        nominator: Arc<Nominator>,
    ) -> SchedulingQueue {
        SchedulingQueue {
            inner: Mutex::new(Inner {
                active: KeyedHeap::new(Box::new(move |a, b| sort.less(a, b))),
                backoff: KeyedHeap::new(Box::new(|a, b| a.backoff_expiry() < b.backoff_expiry())),
                unschedulable: HashMap::new(),
                in_flight: HashMap::new(),
                scheduling_cycle: 0,
                events: Vec::new(),
                events_base: 0,
                in_flight_since: HashMap::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            profiles,
            nominator,
            initial_backoff: INITIAL_BACKOFF,
            max_backoff: MAX_BACKOFF,
        }
    }

    /// The same queue with other backoffs (`podInitialBackoffSeconds`,
    /// `podMaxBackoffSeconds`).
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> SchedulingQueue {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    fn framework(&self, pod: &PodInfo) -> Option<&Arc<Framework>> {
        let name = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler");
        self.profiles.get(name)
    }

    /// Whether a profile schedules this pod.
    pub fn responsible_for(&self, pod: &PodInfo) -> bool {
        self.framework(pod).is_some()
    }

    /// Runs PreEnqueue and puts the pod in the active queue, or among the
    /// unschedulable (gated) pods.
    fn enqueue(&self, inner: &mut Inner, mut qp: QueuedPodInfo) -> Placed {
        let Some(fw) = self.framework(&qp.pod) else {
            return Placed::Nowhere;
        };
        let s = fw.run_pre_enqueue(&qp.pod);
        if s.is_success() {
            qp.gated = false;
            inner.active.push(qp);
            self.ready.notify_one();
            Placed::Active
        } else {
            qp.gated = true;
            qp.unschedulable_plugins = HashSet::from([s.plugin]);
            inner.unschedulable.insert(qp.pod.uid.clone(), qp);
            Placed::Unschedulable
        }
    }

    /// A new pod to schedule.
    pub fn add(&self, pod: Arc<PodInfo>) -> Placed {
        let mut inner = self.inner.lock().expect("queue");
        let uid = pod.uid.clone();
        if inner.active.contains(&uid)
            || inner.backoff.contains(&uid)
            || inner.unschedulable.contains_key(&uid)
            || inner.in_flight.contains_key(&uid)
        {
            drop(inner);
            self.update(pod);
            return Placed::Active;
        }
        self.nominator.add(&pod, None);
        self.enqueue(&mut inner, QueuedPodInfo::new(pod))
    }

    /// A pending pod changed.
    pub fn update(&self, pod: Arc<PodInfo>) {
        let mut inner = self.inner.lock().expect("queue");
        let uid = pod.uid.clone();
        self.nominator.update(&pod);
        if let Some(qp) = inner.active.get_mut(&uid) {
            qp.pod = pod;
            return;
        }
        if let Some(qp) = inner.backoff.get_mut(&uid) {
            qp.pod = pod;
            return;
        }
        if let Some(qp) = inner.in_flight.get_mut(&uid) {
            qp.pod = pod;
            return;
        }
        if let Some(mut qp) = inner.unschedulable.remove(&uid) {
            let changed = spec_changed(&qp.pod, &pod);
            qp.pod = pod;
            if qp.gated || changed {
                if !qp.gated && Instant::now() < qp.backoff_expiry() {
                    inner.backoff.push(qp);
                } else {
                    self.enqueue(&mut inner, qp);
                }
            } else {
                inner.unschedulable.insert(uid, qp);
            }
            return;
        }
        drop(inner);
        self.add(pod);
    }

    /// A pending pod was deleted (or bound by someone else).
    pub fn delete(&self, uid: &str) {
        let mut inner = self.inner.lock().expect("queue");
        inner.active.remove(uid);
        inner.backoff.remove(uid);
        inner.unschedulable.remove(uid);
        inner.leave_flight(uid);
        self.nominator.delete(uid);
    }

    /// The next pod to schedule, waiting for one; `None` once closed.
    pub fn pop(&self) -> Option<(QueuedPodInfo, u64)> {
        let mut inner = self.inner.lock().expect("queue");
        loop {
            if inner.closed {
                return None;
            }
            if let Some(mut qp) = inner.active.pop() {
                inner.scheduling_cycle += 1;
                qp.attempts += 1;
                qp.backoff =
                    QueuedPodInfo::backoff_for(qp.attempts, self.initial_backoff, self.max_backoff);
                qp.initial_attempt.get_or_insert_with(Instant::now);
                inner.in_flight.insert(qp.pod.uid.clone(), qp.clone());
                let since = inner.events_base + inner.events.len();
                inner.in_flight_since.insert(qp.pod.uid.clone(), since);
                return Some((qp, inner.scheduling_cycle));
            }
            inner = self.ready.wait(inner).expect("queue");
        }
    }

    /// Like [`SchedulingQueue::pop`] but gives up after `timeout`.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<(QueuedPodInfo, u64)> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.inner.lock().expect("queue");
        loop {
            if inner.closed {
                return None;
            }
            if inner.active.len() > 0 {
                drop(inner);
                return self.pop();
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            inner = self
                .ready
                .wait_timeout(inner, deadline - now)
                .expect("queue")
                .0;
        }
    }

    /// The pod was scheduled (assumed): it leaves the queue.
    pub fn done(&self, uid: &str) {
        self.inner.lock().expect("queue").leave_flight(uid);
    }

    /// A scheduling attempt that started in `cycle` failed: the pod waits
    /// among the unschedulable pods, or in backoff when a cluster event
    /// arrived meanwhile (or the failure was an error). Pods deleted
    /// meanwhile are dropped.
    pub fn requeue_failed(
        &self,
        mut qp: QueuedPodInfo,
        _cycle: u64,
        unschedulable: bool,
    ) -> Placed {
        let mut inner = self.inner.lock().expect("queue");
        let uid = qp.pod.uid.clone();
        let since = inner.in_flight_since.get(&uid).copied().unwrap_or(0);
        let missed = {
            let start = since
                .saturating_sub(inner.events_base)
                .min(inner.events.len());
            let fw = self.framework(&qp.pod);
            inner.events[start..].iter().any(|(e, from)| {
                fw.is_some_and(|fw| fw.event_may_help(&qp.unschedulable_plugins, e))
                    && !self.nominated_elsewhere(&uid, from.as_deref())
            })
        };
        let Some(latest) = inner.leave_flight(&uid) else {
            return Placed::Nowhere;
        };
        qp.pod = latest.pod;
        qp.timestamp = Instant::now();
        if !unschedulable || missed {
            inner.backoff.push(qp);
            Placed::Backoff
        } else {
            inner.unschedulable.insert(uid, qp);
            Placed::Unschedulable
        }
    }

    /// Moves the unschedulable pods that `event` may help to the active
    /// queue (or backoff, while they still back off).
    pub fn move_all(&self, event: &ClusterEvent) -> usize {
        self.move_matching(event, None)
    }

    /// Like [`SchedulingQueue::move_all`] for a bound pod deleted from
    /// `node`: a pod nominated to another node by preemption stays put (a
    /// queueing hint: it waits for its own victims, and retrying it on every
    /// other deletion would only double its backoff).
    pub fn move_all_after_delete(&self, event: &ClusterEvent, node: &str) -> usize {
        self.move_matching(event, Some(node))
    }

    /// Whether `uid` is nominated to a node other than `from` (the node a
    /// deleted pod was on).
    fn nominated_elsewhere(&self, uid: &str, from: Option<&str>) -> bool {
        from.is_some_and(|node| {
            self.nominator
                .node_of(uid)
                .is_some_and(|nominated| nominated != node)
        })
    }

    fn move_matching(&self, event: &ClusterEvent, deleted_from: Option<&str>) -> usize {
        let mut inner = self.inner.lock().expect("queue");
        if !inner.in_flight.is_empty() {
            inner.events.push((*event, deleted_from.map(str::to_owned)));
        }
        let now = Instant::now();
        let elsewhere = |uid: &str| self.nominated_elsewhere(uid, deleted_from);
        let uids: Vec<String> = inner
            .unschedulable
            .iter()
            .filter(|(_, qp)| !qp.gated)
            .filter(|(_, qp)| {
                self.framework(&qp.pod)
                    .is_some_and(|fw| fw.event_may_help(&qp.unschedulable_plugins, event))
            })
            .filter(|(uid, _)| !elsewhere(uid))
            .map(|(k, _)| k.clone())
            .collect();
        for uid in &uids {
            let qp = inner.unschedulable.remove(uid).expect("listed");
            if now < qp.backoff_expiry() {
                inner.backoff.push(qp);
            } else {
                inner.active.push(qp);
                self.ready.notify_one();
            }
        }
        uids.len()
    }

    /// Moves pods whose backoff has expired to the active queue (every second).
    pub fn flush_backoff(&self) {
        let mut inner = self.inner.lock().expect("queue");
        let now = Instant::now();
        let mut moved = false;
        while inner
            .backoff
            .peek()
            .is_some_and(|qp| qp.backoff_expiry() <= now)
        {
            let qp = inner.backoff.pop().expect("peeked");
            inner.active.push(qp);
            moved = true;
        }
        if moved {
            self.ready.notify_all();
        }
    }

    /// Retries pods unschedulable for longer than [`MAX_IN_UNSCHEDULABLE`]
    /// (every 30 seconds).
    pub fn flush_unschedulable(&self) {
        let mut inner = self.inner.lock().expect("queue");
        let now = Instant::now();
        let uids: Vec<String> = inner
            .unschedulable
            .iter()
            .filter(|(_, qp)| !qp.gated && now.duration_since(qp.timestamp) > MAX_IN_UNSCHEDULABLE)
            .map(|(k, _)| k.clone())
            .collect();
        for uid in uids {
            let qp = inner.unschedulable.remove(&uid).expect("listed");
            if now < qp.backoff_expiry() {
                inner.backoff.push(qp);
            } else {
                inner.active.push(qp);
            }
        }
        self.ready.notify_all();
    }

    /// Wakes [`SchedulingQueue::pop`] for good.
    pub fn close(&self) {
        self.inner.lock().expect("queue").closed = true;
        self.ready.notify_all();
    }

    /// (active, backoff, unschedulable) sizes.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let inner = self.inner.lock().expect("queue");
        (
            inner.active.len(),
            inner.backoff.len(),
            inner.unschedulable.len(),
        )
    }

    /// Pods waiting anywhere in the queue or being scheduled.
    pub fn pending(&self) -> usize {
        let inner = self.inner.lock().expect("queue");
        inner.active.len() + inner.backoff.len() + inner.unschedulable.len() + inner.in_flight.len()
    }
}

/// Whether an update may change the pod's scheduling (anything but its
/// status and bookkeeping metadata).
fn spec_changed(old: &PodInfo, new: &PodInfo) -> bool {
    old.pod.spec != new.pod.spec
        || old.pod.metadata.labels != new.pod.metadata.labels
        || old.pod.metadata.annotations != new.pod.metadata.annotations
}

/// Pods nominated to nodes by preemption.
#[derive(Default)]
pub struct Nominator {
    inner: Mutex<NominatorInner>,
    count: AtomicUsize,
}

#[derive(Default)]
struct NominatorInner {
    by_node: HashMap<String, Vec<Arc<PodInfo>>>,
    by_pod: HashMap<String, String>,
}

impl Nominator {
    /// Records `pod` as nominated to `node`, or to its
    /// `status.nominatedNodeName` when `node` is `None`.
    pub fn add(&self, pod: &Arc<PodInfo>, node: Option<&str>) {
        let from_status = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        let Some(node) = node.or(from_status) else {
            return;
        };
        let mut inner = self.inner.lock().expect("nominator");
        Self::delete_locked(&mut inner, &pod.uid);
        inner.by_pod.insert(pod.uid.clone(), node.to_owned());
        inner
            .by_node
            .entry(node.to_owned())
            .or_default()
            .push(pod.clone());
        self.count.store(inner.by_pod.len(), Ordering::Relaxed);
    }

    /// Follows a pod update: keeps the nomination the scheduler made unless
    /// the pod's status names another node.
    pub fn update(&self, pod: &Arc<PodInfo>) {
        let node = {
            let inner = self.inner.lock().expect("nominator");
            inner.by_pod.get(&pod.uid).cloned()
        };
        let from_status = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
            .filter(|n| !n.is_empty());
        match from_status.or(node) {
            Some(n) => self.add(pod, Some(&n)),
            None => self.delete(&pod.uid),
        }
    }

    fn delete_locked(inner: &mut NominatorInner, uid: &str) {
        if let Some(node) = inner.by_pod.remove(uid)
            && let Some(pods) = inner.by_node.get_mut(&node)
        {
            pods.retain(|p| p.uid != uid);
            if pods.is_empty() {
                inner.by_node.remove(&node);
            }
        }
    }

    pub fn delete(&self, uid: &str) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut inner = self.inner.lock().expect("nominator");
        Self::delete_locked(&mut inner, uid);
        self.count.store(inner.by_pod.len(), Ordering::Relaxed);
    }

    /// The pods nominated to `node`.
    pub fn nominated_on(&self, node: &str) -> Vec<Arc<PodInfo>> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        self.inner
            .lock()
            .expect("nominator")
            .by_node
            .get(node)
            .cloned()
            .unwrap_or_default()
    }

    /// The node `uid` is nominated to.
    pub fn node_of(&self, uid: &str) -> Option<String> {
        self.inner
            .lock()
            .expect("nominator")
            .by_pod
            .get(uid)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Handle, Resource, action};
    use crate::plugins::priority_sort::PrioritySort;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": name},
                "spec": {"priority": priority, "containers": []},
            }))
            .unwrap(),
        )))
    }

    fn queue() -> SchedulingQueue {
        let handle = Handle::for_tests();
        let mut fw = Framework::empty("default-scheduler", handle);
        fw.events.insert(
            "NodeResourcesFit",
            vec![
                ClusterEvent::new(Resource::Node, action::ADD, "NodeAdd"),
                ClusterEvent::new(Resource::Pod, action::DELETE, "AssignedPodDelete"),
            ],
        );
        SchedulingQueue::new(
            Arc::new(PrioritySort),
            HashMap::from([("default-scheduler".into(), Arc::new(fw))]),
            Arc::default(),
        )
    }

    #[test]
    fn higher_priority_pops_first_then_the_oldest() {
        let q = queue();
        q.add(pod("low", 1));
        q.add(pod("high", 10));
        q.add(pod("low2", 1));
        let order: Vec<String> = (0..3)
            .map(|_| q.pop().unwrap().0.pod.name.clone())
            .collect();
        assert_eq!(order, ["high", "low", "low2"]);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        let mut seen = Vec::new();
        for attempts in 1..=6 {
            seen.push(QueuedPodInfo::backoff_for(attempts, INITIAL_BACKOFF, MAX_BACKOFF).as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_move_only_on_events_their_plugins_registered_for() {
        let q = queue();
        q.add(pod("p", 0));
        let (mut qp, cycle) = q.pop().unwrap();
        qp.unschedulable_plugins = HashSet::from(["NodeResourcesFit"]);
        assert_eq!(q.requeue_failed(qp, cycle, true), Placed::Unschedulable);
        let label = ClusterEvent::new(Resource::Node, action::UPDATE_NODE_LABEL, "NodeLabel");
        assert_eq!(q.move_all(&label), 0);
        let add = ClusterEvent::new(Resource::Node, action::ADD, "NodeAdd");
        assert_eq!(q.move_all(&add), 1);
        // Still backing off (1 s), so it waits in backoff.
        assert_eq!(q.sizes(), (0, 1, 0));
    }

    #[test]
    fn a_failure_after_a_move_request_goes_to_backoff() {
        let q = queue();
        q.add(pod("p", 0));
        let (qp, cycle) = q.pop().unwrap();
        q.move_all(&ClusterEvent::new(Resource::Node, action::ADD, "NodeAdd"));
        assert_eq!(q.requeue_failed(qp, cycle, true), Placed::Backoff);
    }

    #[test]
    fn a_nominated_pod_waits_for_deletions_on_its_own_node() {
        let q = queue();
        let p = pod("p", 0);
        q.add(p.clone());
        let (mut qp, cycle) = q.pop().unwrap();
        qp.unschedulable_plugins = HashSet::from(["NodeResourcesFit"]);
        let delete = ClusterEvent::new(Resource::Pod, action::DELETE, "AssignedPodDelete");
        q.nominator.add(&p, Some("n1"));
        // A deletion elsewhere while it was in flight does not count...
        q.move_all_after_delete(&delete, "n2");
        assert_eq!(q.requeue_failed(qp, cycle, true), Placed::Unschedulable);
        assert_eq!(q.move_all_after_delete(&delete, "n2"), 0);
        // ...one on its nominated node does.
        assert_eq!(q.move_all_after_delete(&delete, "n1"), 1);
    }

    #[test]
    fn a_pod_deleted_while_in_flight_is_not_requeued() {
        let q = queue();
        q.add(pod("p", 0));
        let (qp, cycle) = q.pop().unwrap();
        q.delete("p");
        assert_eq!(q.requeue_failed(qp, cycle, true), Placed::Nowhere);
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn the_keyed_heap_removes_from_the_middle() {
        let mut h = KeyedHeap::new(Box::new(|a, b| a.pod.priority > b.pod.priority));
        for (n, p) in [("a", 5), ("b", 9), ("c", 1), ("d", 7), ("e", 3)] {
            h.push(QueuedPodInfo::new(pod(n, p)));
        }
        h.remove("d");
        let order: Vec<i32> = std::iter::from_fn(|| h.pop())
            .map(|q| q.pod.priority)
            .collect();
        assert_eq!(order, [9, 5, 3, 1]);
    }

    #[test]
    fn nominated_pods_are_listed_per_node() {
        let n = Nominator::default();
        let p = pod("p", 5);
        n.add(&p, Some("node-1"));
        assert_eq!(n.nominated_on("node-1").len(), 1);
        n.add(&p, Some("node-2"));
        assert!(n.nominated_on("node-1").is_empty());
        n.delete("p");
        assert!(n.nominated_on("node-2").is_empty());
    }
}
