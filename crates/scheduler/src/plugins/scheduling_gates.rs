//! SchedulingGates: a pod with `spec.schedulingGates` waits outside the
//! active queue until its gates are removed.

use crate::extension_points;
use crate::framework::{Plugin, PreEnqueuePlugin, Status};
use crate::nodeinfo::PodInfo;

pub const NAME: &str = "SchedulingGates";

/// Keeps gated pods out of the active queue.
pub struct SchedulingGates;

impl Plugin for SchedulingGates {
    fn name(&self) -> &'static str {
        NAME
    }
    extension_points!(as_pre_enqueue: PreEnqueuePlugin);
}

/// The names of the pod's scheduling gates.
pub fn gates(pod: &PodInfo) -> Vec<&str> {
    pod.pod
        .spec
        .iter()
        .flat_map(|s| s.scheduling_gates.iter().flatten())
        .map(|g| g.name.as_str())
        .collect()
}

impl PreEnqueuePlugin for SchedulingGates {
    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        let gates = gates(pod);
        if gates.is_empty() {
            Status::success()
        } else {
            Status::unresolvable(format!(
                "waiting for scheduling gates: [{}]",
                gates.join(" ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::pod;
    use serde_json::json;

    #[test]
    fn gated_pods_wait_and_say_for_what() {
        let ungated = pod(json!({}));
        assert!(SchedulingGates.pre_enqueue(&ungated).is_success());
        let gated = pod(json!({"spec": {"schedulingGates": [{"name": "a"}, {"name": "b"}]}}));
        let s = SchedulingGates.pre_enqueue(&gated);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.message(), "waiting for scheduling gates: [a b]");
    }
}
