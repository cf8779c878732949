//! Which pods a ReplicaSet deletes first when it scales down, as upstream's
//! `ActivePodsWithRanks` orders them: unscheduled before scheduled, Pending
//! before Unknown before Running, not ready before ready, lower
//! `controller.kubernetes.io/pod-deletion-cost` first, pods on nodes crowded
//! with related pods first, ready for less time first (on a logarithmic
//! scale), more container restarts first, newer first.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::pods;

/// The annotation giving a pod's cost of deletion.
pub(crate) const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// `podPhaseToOrdinal`: Pending 0, Unknown 1, Running 2 (others 0).
fn phase_ordinal(pod: &Pod) -> u8 {
    match pods::phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// The pod's deletion cost (0 when absent or not an int32).
pub(crate) fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The highest restart count of the pod's regular containers, and of its
/// sidecars (init containers that restart always).
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let sidecar_names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecar_names.contains(&c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

/// The base-2 logarithm of the age at `now` in nanoseconds (upstream's
/// `logarithmicRankDiff` compares these); -1 for no age.
fn log_age(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d > 0 { (d as f64).log2() as i64 } else { -1 }
}

/// Where a pod sorts among those to delete: lower first. A key (not a
/// pairwise comparison) so the order is total; where upstream's comparison
/// is not (two ages of the same logarithmic rank fall back to the UID before
/// the restart count), the UID comes last here.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DeletionKey {
    scheduled: bool,
    phase: u8,
    ready: bool,
    cost: i32,
    /// More related pods on its node first.
    crowding: std::cmp::Reverse<usize>,
    /// Ready pods: an unknown ready time first, then the newest.
    ready_age: (bool, i64),
    /// More restarts first (regular containers, then sidecars).
    restarts: (std::cmp::Reverse<i32>, std::cmp::Reverse<i32>),
    /// No creation time first, then the newest.
    age: (bool, i64),
    uid: String,
}

/// The key of `pod`, `rank` related pods sharing its node.
pub(crate) fn deletion_key(pod: &Pod, rank: usize, now: Timestamp) -> DeletionKey {
    let ready = pods::is_ready(pod);
    let ready_age = if ready {
        match pods::ready_since(pod).flatten() {
            Some(t) => (true, log_age(t, now)),
            None => (false, 0),
        }
    } else {
        (false, 0)
    };
    let (regular, sidecar) = max_restarts(pod);
    let age = match pod.metadata.creation_timestamp.as_ref() {
        Some(t) => (true, log_age(t.0, now)),
        None => (false, 0),
    };
    DeletionKey {
        scheduled: !node(pod).is_empty(),
        phase: phase_ordinal(pod),
        ready,
        cost: deletion_cost(pod),
        crowding: std::cmp::Reverse(rank),
        ready_age,
        restarts: (std::cmp::Reverse(regular), std::cmp::Reverse(sidecar)),
        age,
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The `count` pods of `pods` to delete first. `related` are the active
/// pods of every ReplicaSet sharing this one's controller (this one's
/// included): a pod's rank is how many of them share its node.
pub(crate) fn pods_to_delete(
    pods: &[Arc<Pod>],
    related: &[Arc<Pod>],
    count: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| pods::is_active(p)) {
        *on_node.entry(node(p)).or_default() += 1;
    }
    let mut ranked: Vec<(DeletionKey, &Arc<Pod>)> = pods
        .iter()
        .map(|p| {
            let rank = on_node.get(node(p)).copied().unwrap_or(0);
            (deletion_key(p, rank, now), p)
        })
        .collect();
    ranked.sort_by(|(a, _), (b, _)| a.cmp(b));
    ranked
        .into_iter()
        .take(count)
        .map(|(_, p)| p.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::pod;
    use k8s_openapi::api::core::v1::ContainerStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn now() -> Timestamp {
        Timestamp::from_second(1_000_000).unwrap()
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    fn all(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
        pods.into_iter().map(Arc::new).collect()
    }

    #[test]
    fn unscheduled_pending_and_unready_pods_go_first() {
        let pods = all(vec![
            pod("running-ready", "n1", "Running", Some(10)),
            pod("running", "n1", "Running", None),
            pod("pending", "n1", "Pending", None),
            pod("unscheduled", "", "Pending", None),
            pod("unknown", "n1", "Unknown", None),
        ]);
        let order = pods_to_delete(&pods, &pods, 4, now());
        assert_eq!(
            names(&order),
            ["unscheduled", "pending", "unknown", "running"]
        );
    }

    #[test]
    fn pods_on_crowded_nodes_go_before_lonely_ones() {
        let pods = all(vec![
            pod("alone", "n1", "Running", Some(10)),
            pod("crowded-1", "n2", "Running", Some(10)),
            pod("crowded-2", "n2", "Running", Some(10)),
        ]);
        // A related ReplicaSet's pod also sits on n1... and two more on n2.
        let mut related = pods.clone();
        related.push(Arc::new(pod("other-1", "n2", "Running", Some(10))));
        let order = pods_to_delete(&pods, &related, 1, now());
        assert!(names(&order)[0].starts_with("crowded"));
    }

    #[test]
    fn a_lower_deletion_cost_goes_first() {
        let mut cheap = pod("cheap", "n1", "Running", Some(10));
        cheap.metadata.annotations =
            Some([(DELETION_COST_ANNOTATION.to_owned(), "-5".to_owned())].into());
        let mut dear = pod("dear", "n2", "Running", Some(10));
        dear.metadata.annotations =
            Some([(DELETION_COST_ANNOTATION.to_owned(), "100".to_owned())].into());
        let plain = pod("plain", "n3", "Running", Some(10));
        let pods = all(vec![dear, plain, cheap]);
        assert_eq!(
            names(&pods_to_delete(&pods, &pods, 2, now())),
            ["cheap", "plain"]
        );
    }

    #[test]
    fn recently_ready_pods_go_before_long_ready_ones_on_a_log_scale() {
        let n = now().as_second();
        let pods = all(vec![
            pod("old", "n1", "Running", Some(n - 100_000)),
            pod("new", "n2", "Running", Some(n - 10)),
        ]);
        assert_eq!(names(&pods_to_delete(&pods, &pods, 1, now())), ["new"]);
    }

    #[test]
    fn many_pods_ready_at_close_times_sort_without_contradiction() {
        let n = now().as_second();
        let pods: Vec<Arc<Pod>> = (0..300)
            .map(|i| {
                let mut p = pod(
                    &format!("p{i}"),
                    &format!("n{}", i % 7),
                    "Running",
                    Some(n - 1000 - (i * 37) % 900),
                );
                p.metadata.uid = Some(format!("uid-{}", (i * 7919) % 300));
                p.metadata.creation_timestamp = Some(Time(
                    Timestamp::from_second(n - 5000 + (i * 13) % 400).unwrap(),
                ));
                Arc::new(p)
            })
            .collect();
        let order = pods_to_delete(&pods, &pods, 150, now());
        assert_eq!(order.len(), 150);
        // Deterministic.
        assert_eq!(
            names(&order),
            names(&pods_to_delete(&pods, &pods, 150, now()))
        );
    }

    #[test]
    fn more_restarts_go_first_then_newer_pods() {
        let mut crashy = pod("crashy", "n1", "Running", None);
        crashy.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "app".into(),
            restart_count: 7,
            ..ContainerStatus::default()
        }]);
        let mut older = pod("older", "n2", "Running", None);
        older.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        let mut newer = pod("newer", "n3", "Running", None);
        newer.metadata.creation_timestamp = Some(Time(Timestamp::from_second(999_990).unwrap()));
        let pods = all(vec![older, newer, crashy]);
        assert_eq!(
            names(&pods_to_delete(&pods, &pods, 3, now())),
            ["older", "newer", "crashy"]
        );
        assert_eq!(
            names(&pods_to_delete(&pods, &pods, 2, now())),
            ["crashy", "newer"]
        );
    }
}
