//! What the scheduler knows about each node (upstream's `NodeInfo`): the Node
//! object, the pods on it (bound and assumed), what they request, the host
//! ports they hold, which of them carry (anti-)affinity, the images the node
//! has; and about each pod (`PodInfo`): the parts of its spec the plugins
//! read, parsed once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, Taint};
use skiff_api_types::selector::LabelSelector;

use crate::resources::{self, Resource};

/// One (anti-)affinity term of a pod, parsed: upstream's `framework.AffinityTerm`.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    /// The namespaces the term looks in (the pod's own when it names none
    /// and has no namespace selector).
    pub namespaces: BTreeSet<String>,
    /// Which pods it is about; an absent selector matches nothing.
    pub selector: LabelSelector,
    pub topology_key: String,
    /// Namespaces by label, besides `namespaces`; absent matches nothing,
    /// empty matches every namespace.
    pub namespace_selector: LabelSelector,
}

/// A preferred term and its weight.
#[derive(Clone, Debug)]
pub struct WeightedAffinityTerm {
    pub term: AffinityTerm,
    pub weight: i32,
}

impl AffinityTerm {
    /// Parses `term` as written in `pod`'s spec.
    pub fn new(pod: &Pod, term: &PodAffinityTerm) -> AffinityTerm {
        let namespaces: BTreeSet<String> = match (&term.namespaces, &term.namespace_selector) {
            (ns, None) if ns.as_ref().is_none_or(|n| n.is_empty()) => {
                BTreeSet::from([pod_namespace(pod).to_owned()])
            }
            (ns, _) => ns.iter().flatten().cloned().collect(),
        };
        let selector = LabelSelector::from_k8s_option(term.label_selector.as_ref())
            .unwrap_or_else(|_| LabelSelector::nothing());
        let namespace_selector = LabelSelector::from_k8s_option(term.namespace_selector.as_ref())
            .unwrap_or_else(|_| LabelSelector::nothing());
        AffinityTerm {
            namespaces,
            selector,
            topology_key: term.topology_key.clone(),
            namespace_selector,
        }
    }

    /// Whether `pod` (whose namespace carries `ns_labels`, when known) is
    /// one of the pods this term is about.
    pub fn matches(&self, pod: &PodInfo, ns_labels: Option<&BTreeMap<String, String>>) -> bool {
        let in_namespace = self.namespaces.contains(&pod.namespace)
            || ns_labels.is_some_and(|l| self.namespace_selector.matches(l));
        in_namespace && self.selector.matches(&pod.labels)
    }
}

/// A host port a container asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `0.0.0.0` when unset.
    pub ip: String,
    /// `TCP` when unset.
    pub protocol: String,
    pub port: i32,
}

/// A pod and what the scheduler reads from it, parsed once.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// Effective requests (see [`resources::pod_requests`]).
    pub requests: Resource,
    /// The same, with missing CPU/memory requests at their defaults.
    pub non_zero_requests: Resource,
    pub host_ports: Vec<HostPort>,
    pub required_affinity_terms: Vec<AffinityTerm>,
    pub required_anti_affinity_terms: Vec<AffinityTerm>,
    pub preferred_affinity_terms: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity_terms: Vec<WeightedAffinityTerm>,
    /// The PVCs it mounts, as `namespace/claim`.
    pub pvcs: Vec<String>,
}

/// The namespace of a pod (`default` when unset, as the API server defaults it).
pub fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

impl PodInfo {
    /// Parses `pod`.
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let namespace = pod_namespace(&pod).to_owned();
        let spec = pod.spec.as_ref();
        let mut host_ports = Vec::new();
        if let Some(spec) = spec {
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            for c in spec.containers.iter().chain(sidecars) {
                for p in c.ports.iter().flatten() {
                    if let Some(port) = p.host_port.filter(|p| *p > 0) {
                        host_ports.push(HostPort {
                            ip: p
                                .host_ip
                                .clone()
                                .filter(|s| !s.is_empty())
                                .unwrap_or_else(|| "0.0.0.0".into()),
                            protocol: p
                                .protocol
                                .clone()
                                .filter(|s| !s.is_empty())
                                .unwrap_or_else(|| "TCP".into()),
                            port,
                        });
                    }
                }
            }
        }
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(&pod, t))
                .collect()
        };
        let preferred =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .map(|w| WeightedAffinityTerm {
                        term: AffinityTerm::new(&pod, &w.pod_affinity_term),
                        weight: w.weight,
                    })
                    .collect::<Vec<_>>()
            };
        let pvcs = spec
            .into_iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| format!("{namespace}/{}", c.claim_name))
            .collect();
        PodInfo {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            requests: resources::pod_requests(&pod, false),
            non_zero_requests: resources::pod_requests(&pod, true),
            host_ports,
            required_affinity_terms: required(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity_terms: required(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity_terms: preferred(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity_terms: preferred(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            pvcs,
            namespace,
            pod,
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether it has any pod affinity or anti-affinity.
    pub fn has_affinity(&self) -> bool {
        !self.required_affinity_terms.is_empty()
            || !self.required_anti_affinity_terms.is_empty()
            || !self.preferred_affinity_terms.is_empty()
            || !self.preferred_anti_affinity_terms.is_empty()
    }

    /// Whether it is being deleted.
    pub fn terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// `spec.nodeName`, when set.
    pub fn node_name(&self) -> Option<&str> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }
}

/// The host ports in use on a node, with how many pods use each.
#[derive(Clone, Debug, Default)]
pub struct HostPortInfo {
    /// (protocol, port) → [(ip, users)].
    ports: HashMap<(String, i32), Vec<(String, u32)>>,
}

impl HostPortInfo {
    fn add(&mut self, p: &HostPort) {
        let ips = self.ports.entry((p.protocol.clone(), p.port)).or_default();
        match ips.iter_mut().find(|(ip, _)| *ip == p.ip) {
            Some((_, n)) => *n += 1,
            None => ips.push((p.ip.clone(), 1)),
        }
    }

    fn remove(&mut self, p: &HostPort) {
        let key = (p.protocol.clone(), p.port);
        if let Some(ips) = self.ports.get_mut(&key) {
            if let Some(i) = ips.iter().position(|(ip, _)| *ip == p.ip) {
                ips[i].1 -= 1;
                if ips[i].1 == 0 {
                    ips.remove(i);
                }
            }
            if ips.is_empty() {
                self.ports.remove(&key);
            }
        }
    }

    /// Whether `p` clashes with a port in use: `0.0.0.0` clashes with the
    /// same protocol and port on any address, another address with itself
    /// and with `0.0.0.0`.
    pub fn conflicts(&self, p: &HostPort) -> bool {
        if p.port <= 0 {
            return false;
        }
        let Some(ips) = self.ports.get(&(p.protocol.clone(), p.port)) else {
            return false;
        };
        if p.ip == "0.0.0.0" {
            return !ips.is_empty();
        }
        ips.iter().any(|(ip, _)| ip == "0.0.0.0" || *ip == p.ip)
    }

    /// How many distinct (address, protocol, port) are in use.
    pub fn len(&self) -> usize {
        self.ports.values().map(Vec::len).sum()
    }

    /// Whether no host port is in use.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
}

/// What the scheduler knows about one node.
///
/// Laid out in declaration order (`repr(C)`) with what every Filter reads
/// first and together, so that looking at a node costs a few adjacent
/// cache lines rather than a miss per field.
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub struct NodeInfo {
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Bound and assumed pods on the node.
    pub pods: Vec<Arc<PodInfo>>,
    /// `spec.taints`, copied from the Node.
    pub taints: Vec<Taint>,
    pub allocatable: Resource,
    /// The sum of the pods' requests.
    pub requested: Resource,
    /// The same with missing CPU/memory requests at their defaults.
    pub non_zero_requested: Resource,
    pub name: String,
    node: Option<Arc<Node>>,
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    pub used_ports: HostPortInfo,
    /// Images on the node (normalized name → size in bytes).
    pub images: HashMap<String, i64>,
    /// PVCs used by its pods (`namespace/claim` → pods using it).
    pub pvc_refs: HashMap<String, u32>,
    /// Bumped on each change.
    pub generation: u64,
}

/// An image reference with `:latest` added when it names no tag, as the
/// kubelet reports them.
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    if colon <= slash {
        format!("{name}:latest")
    } else {
        name.to_owned()
    }
}

impl NodeInfo {
    /// A node with no pods.
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut info = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            ..NodeInfo::default()
        };
        info.set_node(node);
        info
    }

    /// An entry for pods that name a node the scheduler has not seen.
    pub fn without_node(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_owned(),
            ..NodeInfo::default()
        }
    }

    /// The Node object. Only nodes the snapshot holds are passed to
    /// plugins, and those always have one.
    pub fn node(&self) -> &Node {
        self.node.as_deref().expect("snapshot nodes have a Node")
    }

    /// The Node object, if the scheduler has seen it.
    pub fn node_opt(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    /// The node's labels.
    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref())
    }

    /// The value of the node's label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels().and_then(|l| l.get(key)).map(String::as_str)
    }

    /// Replaces the Node object.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = Resource::allocatable(&node);
        self.unschedulable = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        self.taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        self.images.clear();
        for image in node.status.iter().flat_map(|s| s.images.iter().flatten()) {
            for name in image.names.iter().flatten() {
                self.images
                    .insert(normalized_image_name(name), image.size_bytes.unwrap_or(0));
            }
        }
        self.node = Some(node);
        self.generation += 1;
    }

    /// Forgets the Node object (its pods stay until they go).
    pub fn clear_node(&mut self) {
        self.node = None;
        self.taints.clear();
        self.unschedulable = false;
        self.allocatable = Resource::default();
        self.images.clear();
        self.generation += 1;
    }

    /// Counts `pod` on this node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        for p in &pod.host_ports {
            self.used_ports.add(p);
        }
        for c in &pod.pvcs {
            *self.pvc_refs.entry(c.clone()).or_insert(0) += 1;
        }
        if pod.has_affinity() {
            self.pods_with_affinity.push(pod.clone());
        }
        if !pod.required_anti_affinity_terms.is_empty() {
            self.pods_with_required_anti_affinity.push(pod.clone());
        }
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Stops counting the pod with `uid`; false when it was not here.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.uid == uid) else {
            return false;
        };
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero_requests);
        for p in &pod.host_ports {
            self.used_ports.remove(p);
        }
        for c in &pod.pvcs {
            if let Some(n) = self.pvc_refs.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    self.pvc_refs.remove(c);
                }
            }
        }
        self.pods_with_affinity.retain(|p| p.uid != uid);
        self.pods_with_required_anti_affinity
            .retain(|p| p.uid != uid);
        self.generation += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(serde_json::from_value(v).unwrap())))
    }

    #[test]
    fn adding_and_removing_a_pod_restores_the_node() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
        }))
        .unwrap();
        let mut info = NodeInfo::new(Arc::new(node));
        assert_eq!(info.allocatable.milli_cpu, 4000);
        assert_eq!(info.allocatable.allowed_pod_number, 110);
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}},
                "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "k"}]}}},
        }));
        info.add_pod(p);
        assert_eq!(info.requested.milli_cpu, 1000);
        assert_eq!(
            info.non_zero_requested.memory,
            crate::resources::DEFAULT_MEMORY_REQUEST
        );
        assert_eq!(info.used_ports.len(), 1);
        assert_eq!(info.pods_with_required_anti_affinity.len(), 1);
        assert!(info.remove_pod("u1"));
        assert!(info.requested.is_zero() && info.non_zero_requested.is_zero());
        assert_eq!(info.used_ports.len(), 0);
        assert!(info.pods_with_affinity.is_empty());
        assert!(!info.remove_pod("u1"));
    }

    #[test]
    fn host_ports_clash_by_address_protocol_and_port() {
        let mut ports = HostPortInfo::default();
        let hp = |ip: &str, proto: &str, port| HostPort {
            ip: ip.into(),
            protocol: proto.into(),
            port,
        };
        ports.add(&hp("10.0.0.1", "TCP", 80));
        assert!(ports.conflicts(&hp("10.0.0.1", "TCP", 80)));
        assert!(ports.conflicts(&hp("0.0.0.0", "TCP", 80)));
        assert!(!ports.conflicts(&hp("10.0.0.2", "TCP", 80)));
        assert!(!ports.conflicts(&hp("10.0.0.1", "UDP", 80)));
        ports.add(&hp("0.0.0.0", "UDP", 53));
        assert!(ports.conflicts(&hp("10.0.0.9", "UDP", 53)));
        ports.remove(&hp("0.0.0.0", "UDP", 53));
        assert!(!ports.conflicts(&hp("10.0.0.9", "UDP", 53)));
    }

    #[test]
    fn affinity_terms_default_to_the_pods_namespace() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "x"}},
            "spec": {"containers": [], "affinity": {"podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "zone"},
                    {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "zone",
                     "namespaceSelector": {}},
                ]}}},
        }));
        let own = &p.required_affinity_terms[0];
        assert_eq!(own.namespaces, BTreeSet::from(["ns".to_owned()]));
        assert!(own.matches(&p, None));
        let any = &p.required_affinity_terms[1];
        assert!(any.namespaces.is_empty());
        assert!(!any.matches(&p, None));
        assert!(any.matches(&p, Some(&BTreeMap::new())));
    }

    #[test]
    fn image_names_without_a_tag_get_latest() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(
            normalized_image_name("reg:5000/nginx"),
            "reg:5000/nginx:latest"
        );
        assert_eq!(normalized_image_name("nginx:1.2"), "nginx:1.2");
    }
}
