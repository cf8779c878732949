//! PrioritySort: the active queue pops higher `spec.priority` first, and
//! among equals the pod that has waited longest.

use crate::extension_points;
use crate::framework::{Plugin, QueueSortPlugin};
use crate::queue::QueuedPodInfo;

pub const NAME: &str = "PrioritySort";

/// Orders pods by priority, then by when they were queued.
pub struct PrioritySort;

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        NAME
    }
    extension_points!(as_queue_sort: QueueSortPlugin);
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        let (pa, pb) = (a.pod.priority, b.pod.priority);
        pa > pb || (pa == pb && a.timestamp < b.timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod;
    use serde_json::json;
    use std::time::{Duration, Instant};

    #[test]
    fn priority_wins_then_age() {
        let queued = |priority: i32, age: u64| {
            let mut q = QueuedPodInfo::new(pod(json!({"spec": {"priority": priority}})));
            q.timestamp = Instant::now() - Duration::from_secs(age);
            q
        };
        let cases = [
            (queued(10, 0), queued(1, 100), true),
            (queued(1, 100), queued(10, 0), false),
            (queued(5, 10), queued(5, 5), true),
            (queued(5, 5), queued(5, 10), false),
        ];
        for (a, b, want) in cases {
            assert_eq!(PrioritySort.less(&a, &b), want);
        }
    }
}
