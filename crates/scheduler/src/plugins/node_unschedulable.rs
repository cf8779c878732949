//! NodeUnschedulable: nodes with `spec.unschedulable` (cordoned) take only
//! pods that tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use crate::extension_points;
use crate::framework::{ClusterEvent, CycleState, FilterPlugin, Plugin, Resource, Status, action};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::plugins::taint_toleration::tolerates;
use k8s_openapi::api::core::v1::Taint;

pub const NAME: &str = "NodeUnschedulable";
/// Upstream's reason.
pub const REASON: &str = "node(s) were unschedulable";
/// The taint a cordoned node carries.
pub const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

/// Filters out cordoned nodes.
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent::new(
            Resource::Node,
            action::ADD | action::UPDATE_NODE_TAINT,
            "NodeAddOrUnschedulableChange",
        )]
    }
    extension_points!(as_filter: FilterPlugin);
}

/// Whether `pod` may run on `node` as far as cordoning goes.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    if !node.unschedulable {
        return true;
    }
    let taint = Taint {
        key: TAINT_KEY.into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    pod.pod
        .spec
        .iter()
        .flat_map(|s| s.tolerations.iter().flatten())
        .any(|t| tolerates(t, &taint))
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_take_only_tolerating_pods() {
        let cordoned = node_info(json!({"spec": {"unschedulable": true}}), vec![]);
        let open = node_info(json!({}), vec![]);
        let plain = pod(json!({}));
        let tolerant = pod(json!({"spec": {"tolerations": [
            {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]}}));
        let cases = [
            (&plain, &open, true),
            (&plain, &cordoned, false),
            (&tolerant, &cordoned, true),
        ];
        for (p, n, want) in cases {
            assert_eq!(
                NodeUnschedulable
                    .filter(&CycleState::default(), p, n)
                    .is_success(),
                want
            );
        }
        assert_eq!(
            NodeUnschedulable
                .filter(&CycleState::default(), &plain, &cordoned)
                .message(),
            REASON
        );
    }
}
