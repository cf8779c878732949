//! In-memory copies of the other objects plugins read (namespaces for
//! namespaceSelector, the workloads that give pods default spreading,
//! PodDisruptionBudgets, volumes), kept current by the informers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolume, PersistentVolumeClaim, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Resource;

/// Objects of one kind by `namespace/name` (or `name` for cluster-scoped).
#[derive(Debug)]
pub struct Lister<K> {
    items: RwLock<HashMap<String, Arc<K>>>,
}

impl<K> Default for Lister<K> {
    fn default() -> Self {
        Lister {
            items: RwLock::new(HashMap::new()),
        }
    }
}

/// The key an object is stored under.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
        None => meta.name.clone().unwrap_or_default(),
    }
}

impl<K: Resource> Lister<K> {
    /// Adds or replaces `obj`; returns the object it replaced.
    pub fn set(&self, obj: Arc<K>) -> Option<Arc<K>> {
        self.items
            .write()
            .expect("lister")
            .insert(key_of(obj.as_ref()), obj)
    }

    pub fn remove(&self, key: &str) -> Option<Arc<K>> {
        self.items.write().expect("lister").remove(key)
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.items.read().expect("lister").get(key).cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.items
            .read()
            .expect("lister")
            .values()
            .cloned()
            .collect()
    }

    /// The objects in `namespace`.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.items
            .read()
            .expect("lister")
            .values()
            .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
            .cloned()
            .collect()
    }

    pub fn keys(&self) -> Vec<String> {
        self.items.read().expect("lister").keys().cloned().collect()
    }
}

/// Every lister the plugins use.
#[derive(Debug, Default)]
pub struct Listers {
    pub namespaces: Lister<Namespace>,
    pub services: Lister<Service>,
    pub replication_controllers: Lister<ReplicationController>,
    pub replica_sets: Lister<ReplicaSet>,
    pub stateful_sets: Lister<StatefulSet>,
    pub pdbs: Lister<PodDisruptionBudget>,
    pub pvcs: Lister<PersistentVolumeClaim>,
    pub pvs: Lister<PersistentVolume>,
    pub storage_classes: Lister<StorageClass>,
}

impl Listers {
    /// The labels of namespace `name` (empty when unknown).
    pub fn namespace_labels(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        self.namespaces
            .get(name)
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default()
    }
}
