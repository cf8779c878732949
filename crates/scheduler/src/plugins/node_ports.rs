//! NodePorts: a pod's host ports must be free on the node (by address and
//! protocol: `0.0.0.0` clashes with every address).

use std::collections::BTreeSet;

use crate::cache::Snapshot;
use crate::extension_points;
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, Plugin, PreFilterPlugin, Resource, Status, action,
};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub const NAME: &str = "NodePorts";
/// Upstream's reason.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// Filters out nodes where a requested host port is taken.
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(Resource::Pod, action::DELETE, "AssignedPodDelete"),
            ClusterEvent::new(Resource::Node, action::ADD, "NodeAdd"),
        ]
    }
    extension_points!(as_pre_filter: PreFilterPlugin, as_filter: FilterPlugin);
}

/// Whether every host port of `pod` is free on `node`.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    !pod.host_ports.iter().any(|p| node.used_ports.conflicts(p))
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<BTreeSet<String>>, Status) {
        if pod.host_ports.is_empty() {
            (None, Status::skip())
        } else {
            (None, Status::success())
        }
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::success()
        } else {
            Status::unschedulable(REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod};
    use serde_json::json;

    fn with_port(ip: Option<&str>, proto: &str, port: i32) -> serde_json::Value {
        json!({"spec": {"containers": [{"name": "c", "image": "i",
            "ports": [{"containerPort": 80, "hostPort": port, "protocol": proto, "hostIP": ip}]}]}})
    }

    #[test]
    fn taken_ports_reject_by_address_and_protocol() {
        let node = node_info(json!({}), vec![with_port(Some("10.0.0.1"), "TCP", 8080)]);
        let cases = [
            (with_port(None, "TCP", 8080), false),
            (with_port(Some("10.0.0.1"), "TCP", 8080), false),
            (with_port(Some("10.0.0.2"), "TCP", 8080), true),
            (with_port(None, "UDP", 8080), true),
            (with_port(None, "TCP", 8081), true),
        ];
        for (spec, want) in cases {
            let s = NodePorts.filter(&CycleState::default(), &pod(spec.clone()), &node);
            assert_eq!(s.is_success(), want, "{spec}");
            if !want {
                assert_eq!(s.message(), REASON);
            }
        }
    }
}
