//! Node health as the node lifecycle controller judges it: when a node's
//! kubelet last showed signs of life (a new status heartbeat or a renewed
//! Lease, timed by this controller's own clock), the conditions of a node
//! silent for longer than the grace period, and the zones' disruption
//! states that set how fast nodes are tainted for eviction.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::taints::condition;

/// The conditions a silent node's kubelet no longer vouches for.
pub(crate) const MONITORED: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What was last seen of one node.
#[derive(Clone, Debug)]
pub(crate) struct Health {
    uid: String,
    /// When a sign of life was last seen (this controller's clock).
    pub probe: Timestamp,
    heartbeat: Option<Timestamp>,
    renewed: Option<Timestamp>,
}

/// Records what `node` and its `lease` show at `now`; answers the updated
/// record. A changed status heartbeat or a newer Lease renewal counts as a
/// sign of life; a node that never posted a status counts from its creation.
pub(crate) fn observe(
    before: Option<&Health>,
    node: &Node,
    lease: Option<&Lease>,
    now: Timestamp,
) -> Health {
    let uid = node.metadata.uid.clone().unwrap_or_default();
    let heartbeat =
        condition(node, "Ready").and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
    let renewed = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let Some(before) = before.filter(|b| b.uid == uid) else {
        let probe = if condition(node, "Ready").is_none() {
            node.metadata
                .creation_timestamp
                .as_ref()
                .map_or(now, |t| t.0)
        } else {
            now
        };
        return Health {
            uid,
            probe,
            heartbeat,
            renewed,
        };
    };
    let mut h = before.clone();
    if heartbeat != before.heartbeat {
        h.probe = now;
        h.heartbeat = heartbeat;
    }
    if renewed.is_some() && renewed > before.renewed {
        h.probe = now;
        h.renewed = renewed;
    }
    h
}

/// Whether a node last heard from at `probe` is overdue at `now`: after
/// `grace` (or `startup_grace` for a node that never posted a status).
pub(crate) fn overdue(
    h: &Health,
    node: &Node,
    now: Timestamp,
    grace: Duration,
    startup_grace: Duration,
) -> bool {
    let grace = if condition(node, "Ready").is_none() {
        startup_grace
    } else {
        grace
    };
    let limit = h
        .probe
        .as_millisecond()
        .saturating_add(grace.as_millis() as i64);
    now.as_millisecond() > limit
}

/// The conditions of a node that has gone silent: each of [`MONITORED`]
/// Unknown (reason NodeStatusUnknown, or NodeStatusNeverUpdated when the
/// kubelet never posted it); `None` when they already are.
pub(crate) fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in MONITORED {
        match conditions.iter_mut().find(|c| c.type_ == *type_) {
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            Some(_) => {}
            None => {
                conditions.push(NodeCondition {
                    type_: (*type_).to_owned(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// A zone's state, from how many of its nodes are ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ZoneState {
    Normal,
    /// At least 3 nodes, and at least --unhealthy-zone-threshold of them
    /// not ready.
    PartialDisruption,
    /// No node ready.
    FullDisruption,
}

pub(crate) fn zone_state(ready: usize, not_ready: usize, unhealthy_threshold: f64) -> ZoneState {
    let total = ready + not_ready;
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / total as f64 >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// How many nodes per second a zone may have tainted for eviction.
pub(crate) fn zone_rate(
    state: ZoneState,
    zone_size: usize,
    rate: f64,
    secondary_rate: f64,
    large_cluster: u32,
) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => rate,
        ZoneState::PartialDisruption if zone_size > large_cluster as usize => secondary_rate,
        ZoneState::PartialDisruption => 0.0,
    }
}

/// A node's zone: its region and zone labels, as upstream's GetZoneKey.
pub(crate) fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\u{0}:{zone}")
    }
}

/// A token bucket holding one token: `rate` per second (0: never).
#[derive(Debug)]
pub(crate) struct Limiter {
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl Limiter {
    pub fn new(rate: f64) -> Self {
        Limiter {
            rate,
            tokens: 1.0,
            last: std::time::Instant::now(),
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: std::time::Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(1.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(heartbeat: Option<&str>) -> Node {
        let conditions = match heartbeat {
            Some(t) => json!([{"type": "Ready", "status": "True", "lastHeartbeatTime": t}]),
            None => json!([]),
        };
        serde_json::from_value(json!({
            "metadata": {"name": "n", "uid": "u1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    fn lease(renew: &str) -> Lease {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"renewTime": renew}}))
            .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const GRACE: Duration = Duration::from_secs(40);
    const STARTUP: Duration = Duration::from_secs(60);

    #[test]
    fn a_renewed_lease_or_heartbeat_keeps_a_node_healthy() {
        let n = node(Some("2026-01-01T00:00:10Z"));
        let h = observe(
            None,
            &n,
            Some(&lease("2026-01-01T00:00:10.000000Z")),
            at("2026-01-01T00:01:00Z"),
        );
        assert!(!overdue(&h, &n, at("2026-01-01T00:01:40Z"), GRACE, STARTUP));
        assert!(overdue(&h, &n, at("2026-01-01T00:01:41Z"), GRACE, STARTUP));
        // The lease is renewed: a sign of life, though the status is old.
        let h = observe(
            Some(&h),
            &n,
            Some(&lease("2026-01-01T00:01:30.000000Z")),
            at("2026-01-01T00:01:30Z"),
        );
        assert!(!overdue(&h, &n, at("2026-01-01T00:02:05Z"), GRACE, STARTUP));
        // Nothing new: the clock keeps running.
        let h = observe(
            Some(&h),
            &n,
            Some(&lease("2026-01-01T00:01:30.000000Z")),
            at("2026-01-01T00:02:20Z"),
        );
        assert!(overdue(&h, &n, at("2026-01-01T00:02:20Z"), GRACE, STARTUP));
        // A new heartbeat in the status counts too.
        let n2 = node(Some("2026-01-01T00:02:19Z"));
        let h = observe(Some(&h), &n2, None, at("2026-01-01T00:02:20Z"));
        assert!(!overdue(
            &h,
            &n2,
            at("2026-01-01T00:02:30Z"),
            GRACE,
            STARTUP
        ));
    }

    #[test]
    fn a_node_that_never_posted_counts_from_its_creation_with_the_startup_grace() {
        let n = node(None);
        let h = observe(None, &n, None, at("2026-01-01T00:00:30Z"));
        assert!(!overdue(&h, &n, at("2026-01-01T00:01:00Z"), GRACE, STARTUP));
        assert!(overdue(&h, &n, at("2026-01-01T00:01:01Z"), GRACE, STARTUP));
    }

    #[test]
    fn a_silent_node_gets_every_monitored_condition_unknown() {
        let n = node(Some("2026-01-01T00:00:10Z"));
        let now = at("2026-01-01T00:05:00Z");
        let c = unknown_conditions(&n, now).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].type_, "Ready");
        assert_eq!(c[0].status, "Unknown");
        assert_eq!(c[0].reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(c[0].last_transition_time, Some(Time(now)));
        assert_eq!(c[1].reason.as_deref(), Some("NodeStatusNeverUpdated"));
        let mut n2 = n.clone();
        n2.status.as_mut().unwrap().conditions = Some(c);
        assert!(unknown_conditions(&n2, now).is_none());
    }

    #[test]
    fn zone_states_follow_upstream_thresholds() {
        assert_eq!(zone_state(3, 0, 0.55), ZoneState::Normal);
        assert_eq!(zone_state(0, 1, 0.55), ZoneState::FullDisruption);
        assert_eq!(zone_state(1, 2, 0.55), ZoneState::Normal);
        assert_eq!(zone_state(2, 3, 0.55), ZoneState::PartialDisruption);
        assert_eq!(zone_state(3, 3, 0.55), ZoneState::Normal);
        assert_eq!(zone_rate(ZoneState::Normal, 10, 0.1, 0.01, 50), 0.1);
        assert_eq!(
            zone_rate(ZoneState::PartialDisruption, 10, 0.1, 0.01, 50),
            0.0
        );
        assert_eq!(
            zone_rate(ZoneState::PartialDisruption, 51, 0.1, 0.01, 50),
            0.01
        );
        assert_eq!(zone_rate(ZoneState::FullDisruption, 10, 0.1, 0.01, 50), 0.1);
    }

    #[test]
    fn the_limiter_lets_one_through_then_refills_at_its_rate() {
        let mut l = Limiter::new(2.0);
        let t0 = std::time::Instant::now();
        assert!(l.try_take(t0));
        assert!(!l.try_take(t0));
        assert!(!l.try_take(t0 + Duration::from_millis(200)));
        assert!(l.try_take(t0 + Duration::from_millis(600)));
        assert!(!Limiter::new(0.0).try_take(t0));
    }
}
