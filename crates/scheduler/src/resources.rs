//! Resource amounts as the scheduler adds them up: a pod's effective requests
//! (containers, init and sidecar containers, overhead, pod-level resources)
//! and a node's allocatable, in upstream's units (milli-CPU, bytes, counts).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use skiff_api_types::quantity::Quantity;

/// `cpu`.
pub const CPU: &str = "cpu";
/// `memory`.
pub const MEMORY: &str = "memory";
/// `ephemeral-storage`.
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// `pods`.
pub const PODS: &str = "pods";

/// What a container without a CPU request counts as when spreading pods
/// (upstream's `DefaultMilliCPURequest`, 0.1 core).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// What a container without a memory request counts as when spreading pods
/// (upstream's `DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Only meaningful for allocatable: how many pods fit.
    pub allowed_pod_number: i64,
    /// Extended resources, hugepages and the like.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// The amount of `name`, in the scheduler's unit for it.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.allowed_pod_number,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }

    fn set(&mut self, name: &str, value: i64) {
        match name {
            CPU => self.milli_cpu = value,
            MEMORY => self.memory = value,
            EPHEMERAL_STORAGE => self.ephemeral_storage = value,
            PODS => self.allowed_pod_number = value,
            other => {
                self.scalar.insert(other.to_owned(), value);
            }
        }
    }

    /// Adds `other` to this.
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Takes `other` away from this.
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) -= v;
        }
    }

    /// Raises each amount to at least `other`'s.
    fn max_with(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    /// Whether every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }

    /// A resource list (`requests`, `allocatable`) in the scheduler's units.
    pub fn from_list(list: Option<&BTreeMap<String, K8sQuantity>>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list.into_iter().flatten() {
            r.set(name, quantity_value(name, q));
        }
        r
    }

    /// A node's allocatable resources (upstream reads `status.allocatable`).
    pub fn allocatable(node: &Node) -> Resource {
        Resource::from_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()))
    }
}

/// A quantity in the scheduler's unit for `name`: milli-cores for CPU, whole
/// units (rounded up) otherwise. Unparsable quantities count as zero (the
/// API server refuses them at creation).
pub fn quantity_value(name: &str, q: &K8sQuantity) -> i64 {
    let Ok(q) = Quantity::from_k8s(q) else {
        return 0;
    };
    let v = if name == CPU {
        q.milli_value()
    } else {
        q.value()
    };
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn container_requests(c: &Container, non_zero: bool) -> Resource {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = Resource::from_list(requests);
    if non_zero {
        let has = |name: &str| requests.is_some_and(|m| m.contains_key(name));
        if !has(CPU) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has(MEMORY) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

fn is_restartable_init(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// A pod's effective requests, as upstream's `resourcehelper.PodRequests`:
/// the sum of its containers and sidecars (restartable init containers),
/// raised to what any init container needs while it runs (with the sidecars
/// started before it), plus `spec.overhead`. Pod-level `spec.resources`
/// requests replace the container sum for the resources they name.
///
/// With `non_zero`, a container that requests no CPU or no memory counts as
/// requesting [`DEFAULT_MILLI_CPU_REQUEST`] / [`DEFAULT_MEMORY_REQUEST`]
/// (upstream's `NonMissingContainerRequests`, used for spreading).
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        if is_restartable_init(c) {
            reqs.add(&r);
            sidecars.add(&r);
            init_max.max_with(&sidecars);
        } else {
            let mut running = r;
            running.add(&sidecars);
            init_max.max_with(&running);
        }
    }
    reqs.max_with(&init_max);
    if let Some(pod_level) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        for (name, q) in pod_level {
            if name == CPU || name == MEMORY {
                reqs.set(name, quantity_value(name, q));
            }
        }
    }
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resource::from_list(Some(overhead)));
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn containers_add_up_and_init_containers_raise_the_peak() {
        let p = pod(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}},
            ],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}},
            ],
        }));
        let r = pod_requests(&p, false);
        assert_eq!(r.milli_cpu, 1000);
        assert_eq!(r.memory, 1 << 30);
    }

    #[test]
    fn sidecars_add_to_the_containers_and_to_later_init_containers() {
        let p = pod(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "250m"}}},
            ],
        }));
        // Containers + sidecar = 300m; init i runs beside the sidecar = 450m.
        assert_eq!(pod_requests(&p, false).milli_cpu, 450);
    }

    #[test]
    fn overhead_is_added_and_pod_level_requests_replace_the_sum() {
        let p = pod(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m", "example.com/gpu": "2"}}}],
            "overhead": {"cpu": "50m", "memory": "64Mi"},
        }));
        let r = pod_requests(&p, false);
        assert_eq!((r.milli_cpu, r.memory), (150, 64 << 20));
        assert_eq!(r.get("example.com/gpu"), 2);
        let p = pod(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "resources": {"requests": {"cpu": "2"}},
        }));
        assert_eq!(pod_requests(&p, false).milli_cpu, 2000);
    }

    #[test]
    fn missing_requests_count_as_the_defaults_only_when_asked() {
        let p = pod(json!({"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"requests": {"cpu": "0"}}},
        ]}));
        assert!(pod_requests(&p, false).is_zero());
        let r = pod_requests(&p, true);
        assert_eq!(r.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY_REQUEST);
    }
}
