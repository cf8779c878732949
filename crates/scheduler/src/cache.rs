//! The scheduler's cache of nodes and the pods on them (upstream's
//! `internal/cache`), fed by watch events and by assumed pods: a pod the
//! scheduler has placed counts on its node from Reserve until the watch
//! shows it bound (confirmed) or the binding fails (forgotten). Each
//! scheduling cycle works on a [`Snapshot`] taken from it, copied
//! incrementally: only nodes that changed since the last snapshot are
//! replaced.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::nodeinfo::{NodeInfo, PodInfo};

/// `topology.kubernetes.io/zone`.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// `topology.kubernetes.io/region`.
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";

/// The nodes as one scheduling cycle sees them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every node with a Node object, zones interleaved (as upstream's node
    /// tree lists them, so a partial search samples every zone).
    pub nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    /// Indexes of nodes with pods that have pod (anti-)affinity.
    pub with_affinity: Vec<usize>,
    /// Indexes of nodes with pods that have required pod anti-affinity.
    pub with_required_anti_affinity: Vec<usize>,
    /// How many nodes have each image.
    pub image_nodes: Arc<HashMap<String, usize>>,
}

impl Snapshot {
    /// A snapshot of exactly these nodes (for tests and dry runs).
    pub fn from_nodes(nodes: Vec<NodeInfo>) -> Snapshot {
        let mut images: HashMap<String, usize> = HashMap::new();
        for n in &nodes {
            for name in n.images.keys() {
                *images.entry(name.clone()).or_insert(0) += 1;
            }
        }
        let mut s = Snapshot {
            nodes: nodes.into_iter().map(Arc::new).collect(),
            image_nodes: Arc::new(images),
            ..Snapshot::default()
        };
        s.reindex();
        s
    }

    fn reindex(&mut self) {
        self.index = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        self.relist_affinity();
    }

    fn relist_affinity(&mut self) {
        self.with_affinity.clear();
        self.with_required_anti_affinity.clear();
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.pods_with_affinity.is_empty() {
                self.with_affinity.push(i);
            }
            if !n.pods_with_required_anti_affinity.is_empty() {
                self.with_required_anti_affinity.push(i);
            }
        }
    }

    /// The node called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// The position of `name` in [`Snapshot::nodes`].
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[derive(Debug)]
struct PodState {
    info: Arc<PodInfo>,
    node: String,
    /// Placed by this scheduler, not yet seen bound.
    assumed: bool,
}

/// Nodes and the pods on them.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: HashMap<String, Arc<NodeInfo>>,
    /// Names of nodes with a Node object, in snapshot order.
    order: Vec<String>,
    order_changed: bool,
    /// Nodes changed since the last snapshot.
    dirty: HashSet<String>,
    pods: HashMap<String, PodState>,
    image_nodes: HashMap<String, usize>,
    images_changed: bool,
}

fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    format!("{}:\u{0}:{}", get(LABEL_REGION), get(LABEL_ZONE))
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    fn node_mut(&mut self, name: &str) -> &mut NodeInfo {
        self.dirty.insert(name.to_owned());
        Arc::make_mut(
            self.nodes
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(NodeInfo::without_node(name))),
        )
    }

    fn count_images(&mut self, info: &NodeInfo, delta: isize) {
        for name in info.images.keys() {
            let e = self.image_nodes.entry(name.clone()).or_insert(0);
            *e = (*e as isize + delta).max(0) as usize;
            if *e == 0 {
                self.image_nodes.remove(name);
            }
            self.images_changed = true;
        }
    }

    /// Adds or replaces a Node.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let old = self.nodes.get(&name).cloned();
        let had_node = old.as_ref().and_then(|o| o.node_opt().cloned());
        if let Some(old) = &old {
            self.count_images(&old.clone(), -1);
        }
        let zone_changed = had_node
            .as_ref()
            .is_none_or(|o| zone_of(o) != zone_of(&node));
        let info = self.node_mut(&name);
        info.set_node(node);
        let info = info.clone();
        self.count_images(&info, 1);
        if zone_changed {
            self.order_changed = true;
        }
    }

    /// Forgets a Node; its pods stay counted until they are deleted.
    pub fn remove_node(&mut self, name: &str) {
        let Some(old) = self.nodes.get(name).cloned() else {
            return;
        };
        self.count_images(&old, -1);
        if old.pods.is_empty() {
            self.nodes.remove(name);
            self.dirty.insert(name.to_owned());
        } else {
            self.node_mut(name).clear_node();
        }
        self.order_changed = true;
    }

    /// A pod the watch shows on a node (added or changed): confirms an
    /// assumed pod, or moves or replaces a known one.
    pub fn set_pod(&mut self, info: Arc<PodInfo>) {
        let Some(node) = info.node_name().map(str::to_owned) else {
            return;
        };
        self.remove_pod(&info.uid.clone());
        self.node_mut(&node).add_pod(info.clone());
        self.pods.insert(
            info.uid.clone(),
            PodState {
                info,
                node,
                assumed: false,
            },
        );
    }

    /// A pod deleted (or finished): it no longer counts.
    pub fn remove_pod(&mut self, uid: &str) {
        let Some(state) = self.pods.remove(uid) else {
            return;
        };
        let node = self.node_mut(&state.node);
        node.remove_pod(uid);
        if node.pods.is_empty() && node.node_opt().is_none() {
            self.nodes.remove(&state.node);
        }
    }

    /// Counts `info` on `node` before the binding is written.
    pub fn assume_pod(&mut self, info: Arc<PodInfo>, node: &str) {
        self.remove_pod(&info.uid.clone());
        self.node_mut(node).add_pod(info.clone());
        self.pods.insert(
            info.uid.clone(),
            PodState {
                info,
                node: node.to_owned(),
                assumed: true,
            },
        );
    }

    /// Undoes [`Cache::assume_pod`] after a failed binding (a pod the watch
    /// has meanwhile confirmed stays).
    pub fn forget_pod(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|s| s.assumed) {
            self.remove_pod(uid);
        }
    }

    /// Whether the pod is assumed and not yet confirmed.
    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|s| s.assumed)
    }

    /// The node a pod counts on.
    pub fn pod_node(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|s| s.node.as_str())
    }

    /// The pod as the cache holds it.
    pub fn pod(&self, uid: &str) -> Option<&Arc<PodInfo>> {
        self.pods.get(uid).map(|s| &s.info)
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Nodes with a Node object.
    pub fn node_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.node_opt().is_some())
            .count()
    }

    fn rebuild_order(&mut self) {
        let mut zones: Vec<(String, Vec<String>)> = Vec::new();
        let mut names: Vec<&String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.node_opt().is_some())
            .map(|(k, _)| k)
            .collect();
        // Keep the previous order for nodes already listed, new ones after.
        let pos: HashMap<&String, usize> =
            self.order.iter().enumerate().map(|(i, n)| (n, i)).collect();
        names.sort_by(|a, b| {
            let pa = pos.get(a).copied().unwrap_or(usize::MAX);
            let pb = pos.get(b).copied().unwrap_or(usize::MAX);
            pa.cmp(&pb).then_with(|| a.cmp(b))
        });
        for name in names {
            let zone = zone_of(self.nodes[name].node());
            match zones.iter_mut().find(|(z, _)| *z == zone) {
                Some((_, v)) => v.push(name.clone()),
                None => zones.push((zone, vec![name.clone()])),
            }
        }
        let mut order = Vec::with_capacity(self.order.len() + 1);
        let longest = zones.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        for i in 0..longest {
            for (_, v) in &zones {
                if let Some(n) = v.get(i) {
                    order.push(n.clone());
                }
            }
        }
        self.order = order;
    }

    /// Brings `snapshot` up to date with the cache, copying only what changed.
    pub fn update_snapshot(&mut self, snapshot: &mut Snapshot) {
        if self.images_changed {
            snapshot.image_nodes = Arc::new(self.image_nodes.clone());
            self.images_changed = false;
        }
        if self.order_changed || snapshot.nodes.len() != self.order.len() {
            self.rebuild_order();
            self.order_changed = false;
            snapshot.nodes = self.order.iter().map(|n| self.nodes[n].clone()).collect();
            snapshot.reindex();
            self.dirty.clear();
            return;
        }
        if self.dirty.is_empty() {
            return;
        }
        let mut affinity_changed = false;
        for name in self.dirty.drain() {
            if let (Some(i), Some(info)) = (snapshot.index.get(&name), self.nodes.get(&name)) {
                let old = &snapshot.nodes[*i];
                affinity_changed |= old.pods_with_affinity.is_empty()
                    != info.pods_with_affinity.is_empty()
                    || old.pods_with_required_anti_affinity.is_empty()
                        != info.pods_with_required_anti_affinity.is_empty();
                snapshot.nodes[*i] = info.clone();
            }
        }
        if affinity_changed {
            snapshot.relist_affinity();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, zone: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {LABEL_ZONE: zone}},
                "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"},
                    "images": [{"names": ["img:1"], "sizeBytes": 1000}]},
            }))
            .unwrap(),
        )
    }

    fn pod(uid: &str, node: Option<&str>) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": uid, "namespace": "default", "uid": uid},
                "spec": {"nodeName": node, "containers": [{"name": "c",
                    "resources": {"requests": {"cpu": "500m"}}}]},
            }))
            .unwrap(),
        )))
    }

    #[test]
    fn snapshots_interleave_zones_and_follow_changes() {
        let mut cache = Cache::new();
        for (n, z) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")] {
            cache.set_node(node(n, z));
        }
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        let names: Vec<&str> = snap.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a1", "b1", "a2", "b2"]);
        assert_eq!(snap.image_nodes.get("img:1"), Some(&4));

        let before = snap.get("b1").unwrap().clone();
        cache.set_pod(pod("p1", Some("b1")));
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("b1").unwrap().requested.milli_cpu, 500);
        // The old snapshot's copy is untouched.
        assert_eq!(before.requested.milli_cpu, 0);
        cache.remove_node("a2");
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.len(), 3);
        assert_eq!(snap.image_nodes.get("img:1"), Some(&3));
    }

    #[test]
    fn an_assumed_pod_counts_until_forgotten_or_confirmed() {
        let mut cache = Cache::new();
        cache.set_node(node("n", "z"));
        let mut snap = Snapshot::default();
        cache.assume_pod(pod("p", None), "n");
        assert!(cache.is_assumed("p"));
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n").unwrap().pods.len(), 1);
        cache.forget_pod("p");
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n").unwrap().pods.len(), 0);

        cache.assume_pod(pod("p", None), "n");
        cache.set_pod(pod("p", Some("n")));
        assert!(!cache.is_assumed("p"));
        cache.forget_pod("p");
        cache.update_snapshot(&mut snap);
        assert_eq!(
            snap.get("n").unwrap().pods.len(),
            1,
            "a confirmed pod stays"
        );
        cache.remove_pod("p");
        cache.update_snapshot(&mut snap);
        assert!(snap.get("n").unwrap().requested.is_zero());
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_their_node() {
        let mut cache = Cache::new();
        cache.set_pod(pod("p", Some("later")));
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        assert!(snap.is_empty());
        cache.set_node(node("later", "z"));
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("later").unwrap().pods.len(), 1);
    }
}
