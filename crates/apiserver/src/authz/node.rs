//! The Node authorizer (upstream's plugin/pkg/auth/authorizer/node): what a
//! kubelet — user `system:node:<name>` in group `system:nodes` — may do.
//!
//! Secrets, ConfigMaps, PersistentVolumeClaims, PersistentVolumes,
//! ResourceClaims, VolumeAttachments and service-account tokens are granted
//! one object at a time, and only when the object is related to the node: a
//! pod bound to it (`spec.nodeName`) references it —
//!
//! ```text
//! node <- pod <- secret, configmap, pvc, serviceaccount, resourceclaim
//! node <- pod <- pvc <- pv <- secret          (through the PV's claimRef)
//! node <- volumeattachment, resourceslice     (through their spec.nodeName)
//! ```
//!
//! Leases in `kube-node-lease` and CSINodes are granted when named after the
//! node. Everything else a node asks is checked against the rules every node
//! gets (upstream's NodeRules, the `system:node` ClusterRole's), writes being
//! narrowed to the node's own objects by the NodeRestriction admission
//! plugin. What neither grants gets no opinion here: RBAC decides.
//!
//! Upstream keeps a graph of these relationships, fed by informers. Here the
//! relationships are read on demand from the watch cache: an index of which
//! pods are bound to which node is brought up to date from the cache's pod
//! events at every decision that needs it, and only the few pods bound to the
//! asking node are read (and parsed only when their JSON mentions the name
//! asked for). A pod bound a moment ago counts as soon as the cache has it.
//!
//! As upstream without the `AuthorizeNodeWithSelectors` feature (Skiff's
//! request attributes carry no field selectors), Nodes and Pods themselves
//! are decided by the static rules; NodeRestriction keeps each node to its
//! own.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use futures::FutureExt;
use serde_json::Value;
use skiff_api_types::registry::{self, ResourceInfo};
use tokio::sync::broadcast;

use super::Attributes;
use super::rules::PolicyRule;
use crate::Api;
use crate::cache::{Cache, CachedEvent, CachedObject, EventType};
use crate::server::User;

/// The group every kubelet is in.
pub(crate) const NODES_GROUP: &str = "system:nodes";
/// Kubelets are users `system:node:<nodeName>`.
const NODE_USER_PREFIX: &str = "system:node:";
/// Where node leases live (upstream's api.NamespaceNodeLease).
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Mirror pods (a kubelet's static pods) carry this annotation.
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

const CORE: &str = "";
const COORDINATION: &str = "coordination.k8s.io";
const RESOURCE: &str = "resource.k8s.io";
const STORAGE: &str = "storage.k8s.io";

/// What the Node authorizer thinks of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Opinion {
    Allow,
    /// Not for this authorizer to allow: the next one (RBAC) decides. The
    /// reason (often empty) joins the denial's if nothing allows.
    NoOpinion(String),
}

/// The kinds of objects a node reaches through the pods bound to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    ServiceAccount,
    ResourceClaim,
}

/// Which pods are bound to which node, as keys of the watch cache's pods,
/// kept current from the cache's pod events.
#[derive(Default)]
pub(crate) struct PodsByNode {
    state: Mutex<PodIndex>,
}

#[derive(Default)]
struct PodIndex {
    /// The cache's pod events not yet applied; `None` before the first
    /// decision, and after the stream lagged or closed (then the index is
    /// rebuilt from the cache's current pods).
    events: Option<broadcast::Receiver<Arc<CachedEvent>>>,
    pods: HashMap<Arc<str>, HashSet<Arc<str>>>,
    node_of: HashMap<Arc<str>, Arc<str>>,
}

/// The rules every node gets (upstream passes NodeRules to the authorizer).
static NODE_RULES: LazyLock<Vec<PolicyRule>> = LazyLock::new(super::policy::node_rules);

/// The name of the node `user` is: `None` for users who are not nodes,
/// `Some("")` for `system:node:` itself (upstream's NodeIdentity).
pub(crate) fn node_name(user: &User) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    user.groups.iter().any(|g| g == NODES_GROUP).then_some(name)
}

/// Decides a request as upstream's NodeAuthorizer.Authorize.
pub(crate) fn authorize(api: &Api, attrs: &Attributes<'_>) -> Opinion {
    let Some(node) = node_name(attrs.user) else {
        return no_opinion("");
    };
    if node.is_empty() {
        return Opinion::NoOpinion(format!("unknown node for user {:?}", attrs.user.name));
    }
    let check = Check { api, node, attrs };
    if attrs.resource_request {
        let subresource = attrs.subresource.unwrap_or("");
        match (attrs.api_group, attrs.resource) {
            (CORE, "secrets") => return check.read_namespaced(Kind::Secret),
            (CORE, "configmaps") => return check.read_namespaced(Kind::ConfigMap),
            (CORE, "persistentvolumeclaims") if subresource == "status" => {
                return check.status_update(Kind::PersistentVolumeClaim);
            }
            (CORE, "persistentvolumeclaims") => {
                return check.get(|c| c.related(Kind::PersistentVolumeClaim));
            }
            (CORE, "persistentvolumes") => return check.get(Check::persistent_volume),
            (RESOURCE, "resourceclaims") => {
                return check.get(|c| c.related(Kind::ResourceClaim));
            }
            (STORAGE, "volumeattachments") => {
                return check.get(|c| c.on_node(STORAGE, "volumeattachments"));
            }
            (CORE, "serviceaccounts") => return check.create_token(),
            (COORDINATION, "leases") => return check.lease(),
            (STORAGE, "csinodes") => return check.csi_node(),
            (RESOURCE, "resourceslices") => return check.resource_slice(),
            _ => {}
        }
    }
    if NODE_RULES.iter().any(|rule| rule.allows(attrs)) {
        Opinion::Allow
    } else {
        no_opinion("")
    }
}

fn no_opinion(reason: &str) -> Opinion {
    Opinion::NoOpinion(reason.to_owned())
}

/// One request of one node.
struct Check<'a> {
    api: &'a Api,
    node: &'a str,
    attrs: &'a Attributes<'a>,
}

impl Check<'_> {
    fn verb_in(&self, verbs: &[&str]) -> bool {
        verbs.contains(&self.attrs.verb)
    }

    fn subresource(&self) -> &str {
        self.attrs.subresource.unwrap_or("")
    }

    fn namespace(&self) -> &str {
        self.attrs.namespace.unwrap_or("")
    }

    fn name(&self) -> &str {
        self.attrs.name.unwrap_or("")
    }

    /// get, list and watch of single objects of a namespaced kind
    /// (upstream's authorizeReadNamespacedObject).
    fn read_namespaced(&self, kind: Kind) -> Opinion {
        if !self.verb_in(&["get", "list", "watch"]) {
            return no_opinion("can only read resources of this type");
        }
        if !self.subresource().is_empty() {
            return no_opinion("cannot read subresource");
        }
        if self.namespace().is_empty() {
            return no_opinion("can only read namespaced object of this type");
        }
        self.relationship(|c| c.related(kind))
    }

    /// get of single objects (upstream's authorizeGet).
    fn get(&self, related: impl FnOnce(&Self) -> bool) -> Opinion {
        if self.attrs.verb != "get" {
            return no_opinion("can only get individual resources of this type");
        }
        if !self.subresource().is_empty() {
            return no_opinion("cannot get subresource");
        }
        self.relationship(related)
    }

    /// update and patch of a related object's status (upstream's
    /// authorizeStatusUpdate).
    fn status_update(&self, kind: Kind) -> Opinion {
        if !self.verb_in(&["update", "patch"]) {
            return no_opinion("can only get/update/patch this type");
        }
        if self.subresource() != "status" {
            return no_opinion("can only update status subresource");
        }
        self.relationship(|c| c.related(kind))
    }

    /// Allowed if the named object is related to the node (upstream's
    /// authorize).
    fn relationship(&self, related: impl FnOnce(&Self) -> bool) -> Opinion {
        if self.name().is_empty() {
            return no_opinion("No Object name found");
        }
        if related(self) {
            Opinion::Allow
        } else {
            self.unrelated()
        }
    }

    fn unrelated(&self) -> Opinion {
        Opinion::NoOpinion(format!(
            "no relationship found between node '{}' and this object",
            self.node
        ))
    }

    /// TokenRequests for the service accounts of the node's pods (upstream's
    /// authorizeCreateToken).
    fn create_token(&self) -> Opinion {
        if self.attrs.verb != "create" || self.name().is_empty() {
            return no_opinion("can only create tokens for individual service accounts");
        }
        if self.subresource() != "token" {
            return no_opinion("can only create token subresource of serviceaccount");
        }
        if self.related(Kind::ServiceAccount) {
            Opinion::Allow
        } else {
            self.unrelated()
        }
    }

    /// The node's own Lease (upstream's authorizeLease). The name of a
    /// created Lease is not known here: NodeRestriction checks it.
    fn lease(&self) -> Opinion {
        if !self.verb_in(&["get", "create", "update", "patch", "delete"]) {
            return no_opinion("can only get, create, update, patch, or delete a node lease");
        }
        if self.namespace() != NODE_LEASE_NAMESPACE {
            return Opinion::NoOpinion(format!(
                "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
            ));
        }
        if self.attrs.verb != "create" && self.name() != self.node {
            return no_opinion(
                "can only access node lease with the same name as the requesting node",
            );
        }
        Opinion::Allow
    }

    /// The node's own CSINode (upstream's authorizeCSINode).
    fn csi_node(&self) -> Opinion {
        if !self.verb_in(&["get", "create", "update", "patch", "delete"]) {
            return no_opinion("can only get, create, update, patch, or delete a CSINode");
        }
        if !self.subresource().is_empty() {
            return no_opinion("cannot authorize CSINode subresources");
        }
        if self.attrs.verb != "create" && self.name() != self.node {
            return no_opinion("can only access CSINode with the same name as the requesting node");
        }
        Opinion::Allow
    }

    /// ResourceSlices (upstream's authorizeResourceSlice, without
    /// AuthorizeNodeWithSelectors): existing slices of the node; creates,
    /// lists and watches left to NodeRestriction.
    fn resource_slice(&self) -> Opinion {
        if !self.subresource().is_empty() {
            return no_opinion("cannot authorize ResourceSlice subresources");
        }
        match self.attrs.verb {
            "create" | "watch" | "list" | "deletecollection" => Opinion::Allow,
            "get" | "update" | "patch" | "delete" => {
                self.relationship(|c| c.on_node(RESOURCE, "resourceslices"))
            }
            _ => no_opinion(
                "only the following verbs are allowed for a ResourceSlice: get, watch, list, create, update, patch, delete, deletecollection",
            ),
        }
    }

    /// Whether a pod bound to the node references the named object of
    /// `kind` in the request's namespace (for secrets, also through a
    /// PersistentVolume).
    fn related(&self, kind: Kind) -> bool {
        let (namespace, name) = (self.namespace(), self.name());
        if namespace.is_empty() {
            return false;
        }
        let pods = self
            .api
            .rbac
            .nodes
            .pods_on(&self.api.cache, self.node, Some(namespace));
        if pods.iter().any(|pod| references(pod, kind, name)) {
            return true;
        }
        kind == Kind::Secret && self.secret_of_volume(namespace, name)
    }

    /// A PersistentVolume whose claimRef names a claim of a pod bound to the
    /// node.
    fn persistent_volume(&self) -> bool {
        let Some(pv) = cached(
            &self.api.cache,
            CORE,
            "persistentvolumes",
            None,
            self.name(),
        ) else {
            return false;
        };
        let pv = pv.value();
        let Some((namespace, claim)) = claim_ref(&pv) else {
            return false;
        };
        self.api
            .rbac
            .nodes
            .pods_on(&self.api.cache, self.node, Some(namespace))
            .iter()
            .any(|pod| references(pod, Kind::PersistentVolumeClaim, claim))
    }

    /// A secret a PersistentVolume lets kubelets read, the volume bound (by
    /// its claimRef) to a claim of a pod on the node.
    fn secret_of_volume(&self, namespace: &str, name: &str) -> bool {
        let claims: HashSet<(String, String)> = self
            .api
            .rbac
            .nodes
            .pods_on(&self.api.cache, self.node, None)
            .iter()
            .filter(|pod| {
                contains(&pod.raw, "\"persistentVolumeClaim\"")
                    || contains(&pod.raw, "\"ephemeral\"")
            })
            .flat_map(|pod| {
                let pod = pod.value();
                let ns = pod["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                names(&pod, Kind::PersistentVolumeClaim)
                    .into_iter()
                    .map(move |claim| (ns.clone(), claim))
            })
            .collect();
        if claims.is_empty() {
            return false;
        }
        let Some(pvs) = registry::lookup(CORE, "v1", "persistentvolumes") else {
            return false;
        };
        let needle = needle(name);
        let candidates = self
            .api
            .cache
            .list(pvs, &pvs.key_prefix(None), |pv| contains(&pv.raw, &needle))
            .objects;
        candidates.iter().any(|pv| {
            let pv = pv.value();
            claim_ref(&pv)
                .is_some_and(|(ns, claim)| claims.contains(&(ns.to_owned(), claim.to_owned())))
                && volume_secrets(&pv)
                    .iter()
                    .any(|(ns, secret)| ns == namespace && secret == name)
        })
    }

    /// An object whose `spec.nodeName` is the node (VolumeAttachments,
    /// ResourceSlices).
    fn on_node(&self, group: &str, plural: &str) -> bool {
        cached(&self.api.cache, group, plural, None, self.name())
            .is_some_and(|obj| obj.value()["spec"]["nodeName"] == self.node)
    }
}

/// An object of the watch cache, by group, plural and name (any served
/// version).
fn cached(
    cache: &Cache,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Option<Arc<CachedObject>> {
    let resource = registry::all()
        .iter()
        .find(|r| r.group == group && r.plural == plural && r.is_persisted())?;
    cache.get(resource, &resource.key(namespace, name))
}

fn pods() -> &'static ResourceInfo {
    registry::lookup(CORE, "v1", "pods").expect("pods are registered")
}

/// The node a cached pod is bound to ("" when unscheduled).
fn bound_to(pod: &CachedObject) -> &str {
    pod.fields
        .iter()
        .find(|(field, _)| *field == "spec.nodeName")
        .map_or("", |(_, node)| node.as_str())
}

impl PodsByNode {
    /// The pods bound to `node` (in `namespace`, or in every one), as the
    /// cache holds them now.
    fn pods_on(
        &self,
        cache: &Cache,
        node: &str,
        namespace: Option<&str>,
    ) -> Vec<Arc<CachedObject>> {
        let prefix = namespace.map(|ns| pods().key_prefix(Some(ns)));
        let keys: Vec<Arc<str>> = {
            let mut index = self.state.lock().unwrap();
            index.catch_up(cache);
            index
                .pods
                .get(node)
                .into_iter()
                .flatten()
                .filter(|key| prefix.as_ref().is_none_or(|p| key.starts_with(p.as_str())))
                .cloned()
                .collect()
        };
        keys.iter()
            .filter_map(|key| cache.get(pods(), key))
            // The cache may have moved on since the index did.
            .filter(|pod| bound_to(pod) == node)
            .collect()
    }
}

impl PodIndex {
    /// Applies every pending pod event (the cache sends an event before it
    /// advances its revision, so every write the cache holds is applied).
    fn catch_up(&mut self, cache: &Cache) {
        loop {
            let Some(events) = &mut self.events else {
                self.rebuild(cache);
                return;
            };
            match events.try_recv() {
                Ok(event) => self.apply(&event.object, event.kind == EventType::Deleted),
                Err(broadcast::error::TryRecvError::Empty) => return,
                Err(
                    broadcast::error::TryRecvError::Lagged(_)
                    | broadcast::error::TryRecvError::Closed,
                ) => {
                    self.rebuild(cache);
                    return;
                }
            }
        }
    }

    /// Follows the pod events from now on, and reads every cached pod bound
    /// to a node. Events that reach the stream before the list is read are
    /// applied again later: applying one is idempotent, and the stream
    /// brings each pod to its latest state in order.
    fn rebuild(&mut self, cache: &Cache) {
        // Resuming at the cache's own revision never waits and copies no
        // objects.
        self.events = cache
            .watch(pods(), Some(cache.revision()))
            .now_or_never()
            .and_then(Result::ok)
            .map(|start| start.live);
        self.pods.clear();
        self.node_of.clear();
        let bound = cache.list(pods(), &pods().key_prefix(None), |pod| {
            !bound_to(pod).is_empty()
        });
        for pod in &bound.objects {
            self.apply(pod, false);
        }
    }

    fn apply(&mut self, pod: &CachedObject, deleted: bool) {
        let node = if deleted { "" } else { bound_to(pod) };
        if let Some(old) = self.node_of.get(pod.key.as_str()) {
            if **old == *node {
                return;
            }
            let old = old.clone();
            if let Some(keys) = self.pods.get_mut(&old) {
                keys.remove(pod.key.as_str());
                if keys.is_empty() {
                    self.pods.remove(&old);
                }
            }
            self.node_of.remove(pod.key.as_str());
        }
        if node.is_empty() {
            return;
        }
        let key: Arc<str> = pod.key.as_str().into();
        let node: Arc<str> = match self.pods.get_key_value(node) {
            Some((existing, _)) => existing.clone(),
            None => node.into(),
        };
        self.pods
            .entry(node.clone())
            .or_default()
            .insert(key.clone());
        self.node_of.insert(key, node);
    }
}

/// Whether a cached pod references the object `name` of `kind`: only pods
/// whose JSON mentions the name (or, for claims, an ephemeral volume, whose
/// claim is named after the pod) are parsed.
fn references(pod: &CachedObject, kind: Kind, name: &str) -> bool {
    let mentioned = contains(&pod.raw, &needle(name))
        || (kind == Kind::PersistentVolumeClaim && contains(&pod.raw, "\"ephemeral\""));
    mentioned && names(&pod.value(), kind).iter().any(|n| n == name)
}

/// `name` as a JSON string, as it appears in a cached object's bytes.
fn needle(name: &str) -> String {
    serde_json::to_string(name).expect("a string serializes")
}

/// Whether cached JSON holds `needle` (std's substring search is several
/// times faster than comparing every window); bytes that are not UTF-8,
/// which the cache never holds, count as a match: the object is parsed.
fn contains(haystack: &[u8], needle: &str) -> bool {
    std::str::from_utf8(haystack).map_or(true, |s| s.contains(needle))
}

/// The objects of `kind` a pod references, as upstream's graph records them
/// (VisitPodSecretNames, VisitPodConfigmapNames, claims of volumes and
/// ephemeral volumes, resourceclaim.Name). A mirror pod references nothing:
/// a node must not gain access to anything by creating one.
fn names(pod: &Value, kind: Kind) -> Vec<String> {
    if pod["metadata"]["annotations"]
        .get(MIRROR_POD_ANNOTATION)
        .is_some()
    {
        return Vec::new();
    }
    let spec = &pod["spec"];
    let mut out = Vec::new();
    let mut add = |v: &Value| {
        if let Some(name) = v.as_str().filter(|n| !n.is_empty()) {
            out.push(name.to_owned());
        }
    };
    let containers = move || {
        ["initContainers", "containers", "ephemeralContainers"]
            .into_iter()
            .flat_map(move |field| list(&spec[field]))
    };
    let volumes = move || list(&spec["volumes"]);
    match kind {
        Kind::Secret => {
            for s in list(&spec["imagePullSecrets"]) {
                add(&s["name"]);
            }
            for c in containers() {
                for e in list(&c["envFrom"]) {
                    add(&e["secretRef"]["name"]);
                }
                for e in list(&c["env"]) {
                    add(&e["valueFrom"]["secretKeyRef"]["name"]);
                }
            }
            for v in volumes() {
                add(&v["secret"]["secretName"]);
                add(&v["azureFile"]["secretName"]);
                for source in [
                    "cephfs",
                    "cinder",
                    "flexVolume",
                    "rbd",
                    "scaleIO",
                    "iscsi",
                    "storageos",
                ] {
                    add(&v[source]["secretRef"]["name"]);
                }
                add(&v["csi"]["nodePublishSecretRef"]["name"]);
                for p in list(&v["projected"]["sources"]) {
                    add(&p["secret"]["name"]);
                }
            }
        }
        Kind::ConfigMap => {
            for c in containers() {
                for e in list(&c["envFrom"]) {
                    add(&e["configMapRef"]["name"]);
                }
                for e in list(&c["env"]) {
                    add(&e["valueFrom"]["configMapKeyRef"]["name"]);
                }
            }
            for v in volumes() {
                add(&v["configMap"]["name"]);
                for p in list(&v["projected"]["sources"]) {
                    add(&p["configMap"]["name"]);
                }
            }
        }
        Kind::PersistentVolumeClaim => {
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
            for v in volumes() {
                if v["persistentVolumeClaim"].is_object() {
                    add(&v["persistentVolumeClaim"]["claimName"]);
                } else if v["ephemeral"].is_object()
                    && let Some(volume) = v["name"].as_str()
                {
                    // The claim an ephemeral volume gets: <pod>-<volume>.
                    add(&Value::String(format!("{pod_name}-{volume}")));
                }
            }
        }
        Kind::ServiceAccount => add(&spec["serviceAccountName"]),
        Kind::ResourceClaim => {
            let statuses = list(&pod["status"]["resourceClaimStatuses"]);
            for claim in list(&spec["resourceClaims"]) {
                if claim["resourceClaimName"].is_string() {
                    add(&claim["resourceClaimName"]);
                } else if claim["resourceClaimTemplateName"].is_string() {
                    // Generated from a template: named in the pod's status
                    // once created.
                    if let Some(status) = statuses.clone().find(|s| s["name"] == claim["name"]) {
                        add(&status["resourceClaimName"]);
                    }
                }
            }
            add(&pod["status"]["extendedResourceClaimStatus"]["resourceClaimName"]);
        }
    }
    out
}

/// The items of a JSON array (none if it is not one).
fn list(v: &Value) -> std::slice::Iter<'_, Value> {
    v.as_array().map(Vec::as_slice).unwrap_or_default().iter()
}

/// A PersistentVolume's claimRef: (namespace, name).
fn claim_ref(pv: &Value) -> Option<(&str, &str)> {
    let claim = pv["spec"]["claimRef"].as_object()?;
    Some((
        claim.get("namespace")?.as_str()?,
        claim.get("name")?.as_str()?,
    ))
}

/// The secrets a PersistentVolume lets kubelets read, (namespace, name)
/// (upstream's VisitPVSecretNames, kubelet-visible ones): a reference
/// without a namespace is in the claim's.
fn volume_secrets(pv: &Value) -> Vec<(String, String)> {
    let spec = &pv["spec"];
    let claim_namespace = claim_ref(pv).map_or("", |(ns, _)| ns);
    let mut out = Vec::new();
    let mut add = |namespace: &Value, name: &Value, default_namespace: bool| {
        let Some(name) = name.as_str().filter(|n| !n.is_empty()) else {
            return;
        };
        let namespace = match namespace.as_str().filter(|ns| !ns.is_empty()) {
            Some(ns) => ns,
            None if default_namespace => claim_namespace,
            None => "",
        };
        out.push((namespace.to_owned(), name.to_owned()));
    };
    if spec["azureFile"].is_object() {
        let file = &spec["azureFile"];
        add(&file["secretNamespace"], &file["secretName"], true);
    } else if spec["csi"].is_object() {
        // Controller secrets are the controllers', not the kubelet's.
        for field in [
            "nodePublishSecretRef",
            "nodeStageSecretRef",
            "nodeExpandSecretRef",
        ] {
            let r = &spec["csi"][field];
            add(&r["namespace"], &r["name"], false);
        }
    } else {
        for (source, default_namespace) in [
            ("cephfs", true),
            ("cinder", false),
            ("flexVolume", true),
            ("rbd", true),
            ("scaleIO", true),
            ("iscsi", true),
            ("storageos", false),
        ] {
            let r = &spec[source]["secretRef"];
            if r.is_object() {
                add(&r["namespace"], &r["name"], default_namespace);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..User::default()
        }
    }

    #[test]
    fn only_system_node_users_in_system_nodes_are_nodes() {
        assert_eq!(
            node_name(&user("system:node:n1", &[NODES_GROUP])),
            Some("n1")
        );
        assert_eq!(node_name(&user("system:node:", &[NODES_GROUP])), Some(""));
        assert_eq!(
            node_name(&user("system:node:n1", &["system:authenticated"])),
            None
        );
        assert_eq!(node_name(&user("kubelet", &[NODES_GROUP])), None);
    }

    #[test]
    fn a_pod_references_secrets_configmaps_claims_and_its_account() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {
                "serviceAccountName": "robot",
                "imagePullSecrets": [{"name": "pull"}],
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
                "containers": [{"name": "c",
                    "env": [
                        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                    ],
                    "envFrom": [{"configMapRef": {"name": "from-cm"}}]}],
                "ephemeralContainers": [{"name": "e", "envFrom": [{"secretRef": {"name": "debug"}}]}],
                "volumes": [
                    {"name": "s", "secret": {"secretName": "vol-secret"}},
                    {"name": "p", "projected": {"sources": [
                        {"secret": {"name": "proj-secret"}},
                        {"configMap": {"name": "kube-root-ca.crt"}},
                        {"serviceAccountToken": {"path": "token"}},
                    ]}},
                    {"name": "cm", "configMap": {"name": "vol-cm"}},
                    {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-secret"}}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                ],
                "resourceClaims": [
                    {"name": "gpu", "resourceClaimName": "shared-gpu"},
                    {"name": "fpga", "resourceClaimTemplateName": "fpga-template"},
                    {"name": "pending", "resourceClaimTemplateName": "t"},
                ],
            },
            "status": {"resourceClaimStatuses": [{"name": "fpga", "resourceClaimName": "web-fpga-x7"}]},
        });
        let mut secrets = names(&pod, Kind::Secret);
        secrets.sort();
        assert_eq!(
            secrets,
            [
                "csi-secret",
                "debug",
                "env-secret",
                "init-env",
                "proj-secret",
                "pull",
                "vol-secret"
            ]
        );
        let mut maps = names(&pod, Kind::ConfigMap);
        maps.sort();
        assert_eq!(maps, ["env-cm", "from-cm", "kube-root-ca.crt", "vol-cm"]);
        assert_eq!(
            names(&pod, Kind::PersistentVolumeClaim),
            ["data", "web-scratch"]
        );
        assert_eq!(names(&pod, Kind::ServiceAccount), ["robot"]);
        assert_eq!(
            names(&pod, Kind::ResourceClaim),
            ["shared-gpu", "web-fpga-x7"]
        );

        let mut mirror = pod.clone();
        mirror["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "abc"});
        for kind in [
            Kind::Secret,
            Kind::ConfigMap,
            Kind::PersistentVolumeClaim,
            Kind::ServiceAccount,
        ] {
            assert!(names(&mirror, kind).is_empty(), "{kind:?}");
        }
    }

    #[test]
    fn a_volume_shows_kubelets_its_node_secrets_in_the_claims_namespace_by_default() {
        let claim = json!({"namespace": "team", "name": "data"});
        let rbd = json!({"spec": {"claimRef": claim, "rbd": {"secretRef": {"name": "ceph"}}}});
        assert_eq!(
            volume_secrets(&rbd),
            [("team".to_owned(), "ceph".to_owned())]
        );
        let csi = json!({"spec": {"claimRef": claim, "csi": {
            "controllerPublishSecretRef": {"namespace": "sys", "name": "controller"},
            "nodePublishSecretRef": {"namespace": "sys", "name": "publish"},
            "nodeStageSecretRef": {"namespace": "sys", "name": "stage"},
        }}});
        assert_eq!(
            volume_secrets(&csi),
            [
                ("sys".to_owned(), "publish".to_owned()),
                ("sys".to_owned(), "stage".to_owned())
            ]
        );
        let azure = json!({"spec": {"claimRef": claim, "azureFile": {"secretName": "az", "secretNamespace": "other"}}});
        assert_eq!(
            volume_secrets(&azure),
            [("other".to_owned(), "az".to_owned())]
        );
        assert_eq!(claim_ref(&azure), Some(("team", "data")));
        assert_eq!(claim_ref(&json!({"spec": {}})), None);
    }

    #[test]
    fn the_pre_filter_finds_names_as_json_strings() {
        let raw = br#"{"spec":{"volumes":[{"secret":{"secretName":"db-pass"}}]}}"#;
        assert!(contains(raw, &needle("db-pass")));
        assert!(!contains(raw, &needle("db")));
        assert!(!contains(raw, &needle("pass")));
    }
}
