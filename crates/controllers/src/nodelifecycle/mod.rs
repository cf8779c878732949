//! The node lifecycle controller (upstream's nodelifecycle): watches Nodes
//! and their Leases in `kube-node-lease`; a node silent for longer than
//! `--node-monitor-grace-period` has its conditions set Unknown. It keeps
//! the condition taints (NoSchedule) in step with each node's conditions at
//! once, and taints not-ready and unreachable nodes NoExecute at a per-zone
//! rate limit, from which the taint eviction controller ([`eviction`])
//! evicts the pods that do not tolerate it.

pub(crate) mod eviction;
pub(crate) mod health;
pub(crate) mod taints;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::cache::{Cache, Changed, Shared};
use crate::framework::{self, Context};
use crate::infra::InfraFlags;
use health::{Health, Limiter, ZoneState};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "node-lifecycle-controller";
/// Where kubelets keep their Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often the NoExecute tainting queues are worked (upstream's
/// nodeEvictionPeriod).
const TAINTING_PERIOD: Duration = Duration::from_millis(100);

struct Monitor {
    client: Client,
    flags: InfraFlags,
    nodes: Cache<Node>,
    leases: Cache<Lease>,
    pods: Cache<Pod>,
    health: HashMap<String, Health>,
    zones: BTreeMap<String, Zone>,
    /// Every zone was fully disrupted at the last pass: evictions stop.
    all_disrupted: bool,
}

struct Zone {
    state: ZoneState,
    limiter: Limiter,
    /// Nodes waiting to be tainted NoExecute, first come first served.
    queue: VecDeque<String>,
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let lease_watch = Shared::<Lease>::new(Api::namespaced(client.clone(), LEASE_NAMESPACE));
        let (nodes, node_changes) = ctx.informers.nodes.subscribe(|c: &Changed<Node>| match c {
            Changed::Deleted(_) => None,
            c => Some(c.latest().name_any()),
        });
        let (leases, _) = lease_watch.subscribe(|_: &Changed<Lease>| None::<()>);
        let (pods, _) = ctx.informers.pods.subscribe(|_: &Changed<Pod>| None::<()>);
        let stopped = ctx.stopped();
        tokio::pin!(stopped, node_changes);
        tokio::select! {
            () = async { nodes.ready().await; leases.ready().await; pods.ready().await } => {}
            () = &mut stopped => return,
        }
        let mut m = Monitor {
            client,
            flags: ctx.settings.infra.clone(),
            nodes,
            leases,
            pods,
            health: HashMap::new(),
            zones: BTreeMap::new(),
            all_disrupted: false,
        };
        let mut monitor = tokio::time::interval(m.flags.node_monitor_period);
        monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tainting = tokio::time::interval(TAINTING_PERIOD);
        tainting.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stopped => return,
                _ = monitor.tick() => m.monitor().await,
                _ = tainting.tick() => m.work_tainting_queues().await,
                Some(name) = node_changes.next() => {
                    if let Some(node) = m.nodes.get("", &name) {
                        m.no_schedule_pass(&node).await;
                    }
                }
            }
        }
    })
}

impl Monitor {
    /// Upstream's monitorNodeHealth: every node's health, the zones'
    /// states, and the NoExecute decisions that follow.
    async fn monitor(&mut self) {
        let now = Timestamp::now();
        let nodes = self.nodes.all();
        self.health
            .retain(|name, _| nodes.iter().any(|n| n.name_any() == *name));
        let mut per_zone: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut current = Vec::with_capacity(nodes.len());
        for node in nodes {
            let name = node.name_any();
            let lease = self.leases.get(LEASE_NAMESPACE, &name);
            let h = health::observe(self.health.get(&name), &node, lease.as_deref(), now);
            let overdue = health::overdue(
                &h,
                &node,
                now,
                self.flags.node_monitor_grace_period,
                self.flags.node_startup_grace_period,
            );
            self.health.insert(name.clone(), h);
            let mut node = node;
            if overdue && let Some(conditions) = health::unknown_conditions(&node, now) {
                let was_ready = taints::ready_status(&node) == Some("True");
                let mut updated = (*node).clone();
                updated.status.get_or_insert_default().conditions = Some(conditions);
                match self.update_status(&updated).await {
                    Ok(n) => {
                        info!(node = %name, "node stopped posting its status; its conditions are Unknown");
                        node = Arc::new(n);
                        if was_ready {
                            self.mark_pods_not_ready(&name).await;
                        }
                    }
                    Err(e) => {
                        warn!(node = %name, error = %e, "setting the node's conditions Unknown failed; retrying at the next pass");
                        continue;
                    }
                }
            }
            let counts = per_zone.entry(health::zone_of(&node)).or_default();
            if taints::ready_status(&node) == Some("True") {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
            current.push(node);
        }
        self.handle_disruption(&per_zone, &current).await;
        for node in &current {
            self.no_schedule_pass(node).await;
            self.no_execute_decision(node).await;
        }
    }

    /// Upstream's handleDisruption: zone states set the zones' tainting
    /// rates; when every zone has no ready node the controller assumes the
    /// fault is its own (or the network's) and stops evicting altogether.
    async fn handle_disruption(
        &mut self,
        per_zone: &BTreeMap<String, (usize, usize)>,
        nodes: &[Arc<Node>],
    ) {
        let f = self.flags.clone();
        self.zones.retain(|z, _| per_zone.contains_key(z));
        let states: BTreeMap<&String, ZoneState> = per_zone
            .iter()
            .map(|(z, (r, n))| (z, health::zone_state(*r, *n, f.unhealthy_zone_threshold)))
            .collect();
        let all_disrupted =
            !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
        if all_disrupted && !self.all_disrupted {
            warn!("no node in any zone is ready: entering master disruption mode, evictions stop");
            for node in nodes {
                self.mark_reachable(node).await;
            }
        }
        if !all_disrupted && self.all_disrupted {
            info!("a node is ready again: leaving master disruption mode");
            let now = Timestamp::now();
            for h in self.health.values_mut() {
                h.probe = now;
            }
        }
        self.all_disrupted = all_disrupted;
        for (zone, state) in states {
            let (r, n) = per_zone[zone];
            let rate = if all_disrupted {
                0.0
            } else {
                health::zone_rate(
                    state,
                    r + n,
                    f.node_eviction_rate,
                    f.secondary_node_eviction_rate,
                    f.large_cluster_size_threshold,
                )
            };
            let z = self.zones.entry(zone.clone()).or_insert_with(|| Zone {
                state,
                limiter: Limiter::new(rate),
                queue: VecDeque::new(),
            });
            if z.state != state {
                info!(zone = %zone.replace('\u{0}', ""), from = ?z.state, to = ?state, "zone state changed");
                z.state = state;
            }
            if z.limiter.rate() != rate {
                z.limiter = Limiter::new(rate);
            }
        }
    }

    /// Upstream's processTaintBaseEviction: a ready node loses its NoExecute
    /// taints at once; a not-ready or unreachable one already tainted for the
    /// other reason has the taint swapped at once; else it waits its turn
    /// in its zone's queue.
    async fn no_execute_decision(&mut self, node: &Arc<Node>) {
        let name = node.name_any();
        let Some(wanted) = taints::wanted_no_execute(node) else {
            if taints::ready_status(node) == Some("True") {
                self.mark_reachable(node).await;
            }
            return;
        };
        if self.all_disrupted {
            return;
        }
        let other = if wanted == taints::NOT_READY {
            taints::UNREACHABLE
        } else {
            taints::NOT_READY
        };
        if taints::has_taint(node, wanted, taints::NO_EXECUTE) {
            return;
        }
        if taints::has_taint(node, other, taints::NO_EXECUTE) {
            self.set_no_execute(node, Some(wanted)).await;
            return;
        }
        let zone = self
            .zones
            .get_mut(&health::zone_of(node))
            .expect("zones are made for every node's zone");
        if !zone.queue.contains(&name) {
            debug!(node = %name, taint = wanted, "queued for NoExecute tainting");
            zone.queue.push_back(name);
        }
    }

    /// Removes the node's NoExecute not-ready/unreachable taints and takes
    /// it off the tainting queue.
    async fn mark_reachable(&mut self, node: &Arc<Node>) {
        let name = node.name_any();
        for zone in self.zones.values_mut() {
            zone.queue.retain(|n| *n != name);
        }
        self.set_no_execute(node, None).await;
    }

    /// Upstream's doNoExecuteTaintingPass: each zone taints the nodes at the
    /// head of its queue as fast as its limiter lets it.
    async fn work_tainting_queues(&mut self) {
        let now = std::time::Instant::now();
        let mut due = Vec::new();
        for zone in self.zones.values_mut() {
            while let Some(name) = zone.queue.front() {
                if !zone.limiter.try_take(now) {
                    break;
                }
                due.push(name.clone());
                zone.queue.pop_front();
            }
        }
        for name in due {
            let Some(node) = self.nodes.get("", &name) else {
                continue;
            };
            // Its readiness may have changed while it waited.
            let wanted = taints::wanted_no_execute(&node);
            if wanted.is_some() {
                info!(node = %name, taint = wanted, "tainting the node NoExecute: pods that do not tolerate it will be evicted");
                self.set_no_execute(&node, wanted).await;
            }
        }
    }

    async fn set_no_execute(&self, node: &Node, wanted: Option<&str>) {
        if let Some(t) = taints::with_no_execute(node, wanted, Timestamp::now()) {
            self.replace_taints(node, t).await;
        }
    }

    /// Upstream's doNoScheduleTaintingPass.
    async fn no_schedule_pass(&self, node: &Node) {
        if node.metadata.deletion_timestamp.is_some() {
            return;
        }
        let wanted = taints::wanted_no_schedule(node);
        if let Some(t) = taints::with_no_schedule(node, &wanted) {
            debug!(node = %node.name_any(), ?wanted, "updating condition taints");
            self.replace_taints(node, t).await;
        }
    }

    /// Writes the node's taints, guarded by its resourceVersion: on a
    /// conflict the next event or pass decides again from the newer node.
    async fn replace_taints(&self, node: &Node, taints: Vec<k8s_openapi::api::core::v1::Taint>) {
        let name = node.name_any();
        let mut updated = node.clone();
        updated.spec.get_or_insert_default().taints = Some(taints);
        let api: Api<Node> = Api::all(self.client.clone());
        match api.replace(&name, &PostParams::default(), &updated).await {
            Ok(_) => {}
            Err(e) if framework::is_conflict(&e) || framework::is_not_found(&e) => {
                debug!(node = %name, error = %e, "taint update raced; deciding again later");
            }
            Err(e) => warn!(node = %name, error = %e, "updating the node's taints failed"),
        }
    }

    async fn update_status(&self, node: &Node) -> Result<Node, kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        api.replace_status(&node.name_any(), &PostParams::default(), node)
            .await
    }

    /// Upstream's MarkPodsNotReady: the pods of a node that went silent are
    /// no longer ready (Services stop sending them traffic).
    async fn mark_pods_not_ready(&self, node: &str) {
        let now = Timestamp::now().to_string();
        for pod in self.pods.all() {
            let on_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node);
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if !on_node || !ready {
                continue;
            }
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let patch = json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": now},
            ]}});
            if let Err(e) = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
                && !framework::is_not_found(&e)
            {
                warn!(pod = %pod.name_any(), error = %e, "marking the pod not ready failed");
            }
        }
    }
}
