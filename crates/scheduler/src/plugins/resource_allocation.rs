//! What NodeResourcesFit and NodeResourcesBalancedAllocation share when
//! scoring: the resources they look at, with weights, and how much of each
//! a node would have in use with the pod on it.

use serde::Deserialize;

use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::resources::{CPU, EPHEMERAL_STORAGE, MEMORY};

/// A resource and its weight in a score.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ResourceSpec {
    pub name: String,
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

/// CPU and memory, weight 1 each.
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: CPU.into(),
            weight: 1,
        },
        ResourceSpec {
            name: MEMORY.into(),
            weight: 1,
        },
    ]
}

/// What the pod asks of `resource` for scoring: with `non_zero`, missing
/// CPU/memory requests count at their defaults.
pub fn pod_request(pod: &PodInfo, resource: &str, non_zero: bool) -> i64 {
    if non_zero {
        pod.non_zero_requests.get(resource)
    } else {
        pod.requests.get(resource)
    }
}

/// (allocatable, requested with the pod) of `resource` on `node`, as
/// upstream's `calculateResourceAllocatableRequest`: (0, 0) for an extended
/// resource the pod does not ask for or the node does not have, which
/// scorers skip.
pub fn allocatable_and_requested(
    node: &NodeInfo,
    resource: &str,
    pod_request: i64,
    non_zero: bool,
) -> (i64, i64) {
    let requested = if non_zero {
        &node.non_zero_requested
    } else {
        &node.requested
    };
    match resource {
        CPU => (
            node.allocatable.milli_cpu,
            requested.milli_cpu + pod_request,
        ),
        MEMORY => (node.allocatable.memory, requested.memory + pod_request),
        EPHEMERAL_STORAGE => (
            node.allocatable.ephemeral_storage,
            node.requested.ephemeral_storage + pod_request,
        ),
        other => {
            if pod_request == 0 {
                return (0, 0);
            }
            match node.allocatable.scalar.get(other) {
                Some(a) => (*a, node.requested.get(other) + pod_request),
                None => (0, 0),
            }
        }
    }
}
