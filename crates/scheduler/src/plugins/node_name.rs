//! NodeName: a pod that names a node in `spec.nodeName` fits only there.

use crate::extension_points;
use crate::framework::CycleState;
use crate::framework::{ClusterEvent, FilterPlugin, Plugin, Resource, Status, action};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeName";
/// Upstream's reason.
pub const REASON: &str = "node(s) didn't match the requested node name";

/// Filters out nodes other than the one the pod names.
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent::new(Resource::Node, action::ADD, "NodeAdd")]
    }
    extension_points!(as_filter: FilterPlugin);
}

/// Whether `pod` may run on `node` by name.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.node_name().is_none_or(|n| n == node.name)
}

impl FilterPlugin for NodeName {
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
    fn only_the_named_node_fits() {
        let n = node_info(json!({"metadata": {"name": "n1"}}), vec![]);
        for (spec, want) in [
            (json!({}), true),
            (json!({"nodeName": "n1"}), true),
            (json!({"nodeName": "n2"}), false),
        ] {
            let p = pod(json!({ "spec": spec }));
            assert_eq!(
                NodeName.filter(&CycleState::default(), &p, &n).is_success(),
                want
            );
        }
    }
}
