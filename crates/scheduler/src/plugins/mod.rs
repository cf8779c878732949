//! The in-tree plugins, by name, and upstream's default set with weights.

use std::sync::Arc;

use serde_json::Value;

use crate::framework::{Handle, Plugin};

pub mod balanced_allocation;
pub mod default_binder;
pub mod default_preemption;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod priority_sort;
pub mod resource_allocation;
pub mod scheduling_gates;
pub mod taint_toleration;
pub mod volume_binding;
pub mod volume_restrictions;

/// Builds a plugin from its `pluginConfig` args (`null` when none).
pub type Constructor = fn(&Value, &Arc<Handle>) -> Result<Arc<dyn Plugin>, String>;

/// Every plugin this scheduler knows, by name.
pub fn registry() -> Vec<(&'static str, Constructor)> {
    vec![
        (priority_sort::NAME, |_, _| {
            Ok(Arc::new(priority_sort::PrioritySort))
        }),
        (scheduling_gates::NAME, |_, _| {
            Ok(Arc::new(scheduling_gates::SchedulingGates))
        }),
        (node_unschedulable::NAME, |_, _| {
            Ok(Arc::new(node_unschedulable::NodeUnschedulable))
        }),
        (node_name::NAME, |_, _| Ok(Arc::new(node_name::NodeName))),
        (taint_toleration::NAME, |_, _| {
            Ok(Arc::new(taint_toleration::TaintToleration))
        }),
        (node_affinity::NAME, |args, _| {
            Ok(Arc::new(node_affinity::NodeAffinity::new(args)?))
        }),
        (node_ports::NAME, |_, _| Ok(Arc::new(node_ports::NodePorts))),
        (node_resources_fit::NAME, |args, _| {
            Ok(Arc::new(node_resources_fit::NodeResourcesFit::new(args)?))
        }),
        (balanced_allocation::NAME, |args, _| {
            Ok(Arc::new(balanced_allocation::BalancedAllocation::new(
                args,
            )?))
        }),
        (image_locality::NAME, |_, _| {
            Ok(Arc::new(image_locality::ImageLocality))
        }),
        (volume_restrictions::NAME, |_, h| {
            Ok(Arc::new(volume_restrictions::VolumeRestrictions::new(
                h.clone(),
            )))
        }),
        (volume_binding::NAME, |args, h| {
            Ok(Arc::new(volume_binding::VolumeBinding::new(
                args,
                h.clone(),
            )?))
        }),
        (pod_topology_spread::NAME, |args, h| {
            Ok(Arc::new(pod_topology_spread::PodTopologySpread::new(
                args,
                h.clone(),
            )?))
        }),
        (inter_pod_affinity::NAME, |args, h| {
            Ok(Arc::new(inter_pod_affinity::InterPodAffinity::new(
                args,
                h.clone(),
            )?))
        }),
        (default_preemption::NAME, |args, h| {
            Ok(Arc::new(default_preemption::DefaultPreemption::new(
                args,
                h.clone(),
            )?))
        }),
        (default_binder::NAME, |_, h| {
            Ok(Arc::new(default_binder::DefaultBinder::new(h.clone())))
        }),
    ]
}

/// upstream's default `multiPoint` plugins, in order, with score weights.
pub fn default_plugins() -> Vec<(&'static str, i64)> {
    vec![
        (scheduling_gates::NAME, 0),
        (priority_sort::NAME, 0),
        (node_unschedulable::NAME, 0),
        (node_name::NAME, 0),
        (taint_toleration::NAME, 3),
        (node_affinity::NAME, 2),
        (node_ports::NAME, 0),
        (node_resources_fit::NAME, 1),
        (volume_restrictions::NAME, 0),
        (volume_binding::NAME, 0),
        (pod_topology_spread::NAME, 2),
        (inter_pod_affinity::NAME, 2),
        (default_preemption::NAME, 0),
        (balanced_allocation::NAME, 1),
        (image_locality::NAME, 1),
        (default_binder::NAME, 0),
    ]
}

/// Builders for plugin tests.
#[cfg(test)]
pub mod testing {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use crate::nodeinfo::{NodeInfo, PodInfo};

    /// Deep-merges `patch` into `base`.
    fn merge(base: &mut Value, patch: Value) {
        match (base, patch) {
            (Value::Object(b), Value::Object(p)) => {
                for (k, v) in p {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, p) => *b = p,
        }
    }

    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

    /// A pod: `default/p<n>` with one container unless `v` says otherwise.
    pub fn pod(v: Value) -> Arc<PodInfo> {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut base = json!({
            "metadata": {"name": format!("p{n}"), "namespace": "default", "uid": format!("uid-{n}")},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        });
        merge(&mut base, v);
        Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(base).expect("a pod"),
        )))
    }

    /// A node (`n1`, 4 CPUs, 8Gi, 110 pods unless `v` says otherwise)
    /// running `pods`.
    pub fn node_info(v: Value, pods: Vec<Value>) -> NodeInfo {
        let mut base = json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
        });
        merge(&mut base, v);
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(base).expect("a node");
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut info = NodeInfo::new(Arc::new(node));
        for mut p in pods {
            merge(&mut p, json!({"spec": {"nodeName": name}}));
            info.add_pod(pod(p));
        }
        info
    }
}
