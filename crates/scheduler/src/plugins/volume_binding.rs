//! VolumeBinding: a pod's PersistentVolumeClaims decide where it may run.
//! A claim bound to a PersistentVolume with node affinity allows only the
//! nodes that affinity selects; an unbound claim of an `Immediate` class
//! keeps the pod pending until the volume controller binds it; an unbound
//! `WaitForFirstConsumer` claim needs, on the node, an available volume
//! that matches it, or a provisioner whose allowed topologies include the
//! node. At PreBind the chosen volume is claimed (or the claim annotated
//! with the selected node for the provisioner) and the binding waits until
//! the claims are bound, as upstream's does.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

use crate::cache::Snapshot;
use crate::extension_points;
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, Handle, Plugin, PreBindPlugin, PreFilterPlugin,
    ReservePlugin, Resource, Status, action,
};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::plugins::node_affinity::{requirement_matches, terms_match};
use crate::resources::quantity_value;

pub const NAME: &str = "VolumeBinding";
/// Upstream's reasons.
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const REASON_IMMEDIATE_UNBOUND: &str = "pod has unbound immediate PersistentVolumeClaims";
const PRE_FILTER_KEY: &str = "PreFilterVolumeBinding";
/// The annotation that tells a provisioner where the pod goes.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Places pods where their volumes can be.
pub struct VolumeBinding {
    handle: Arc<Handle>,
    bind_timeout: Duration,
}

impl VolumeBinding {
    /// Reads `VolumeBindingArgs` (`bindTimeoutSeconds`, 600 by default).
    pub fn new(args: &Value, handle: Arc<Handle>) -> Result<VolumeBinding, String> {
        let secs = args
            .get("bindTimeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(600);
        Ok(VolumeBinding {
            handle,
            bind_timeout: Duration::from_secs(secs),
        })
    }
}

/// What PreBind must do for the pod on a node.
#[derive(Clone, Debug, Default, PartialEq)]
struct Decision {
    /// (claim key, volume name) pairs to bind.
    bind: Vec<(String, String)>,
    /// Claims to provision on the node.
    provision: Vec<String>,
}

/// An unbound WaitForFirstConsumer claim and its class.
type DelayedClaim = (Arc<PersistentVolumeClaim>, Option<Arc<StorageClass>>);

#[derive(Clone, Default)]
struct PreFilterState {
    /// Bound claims' volumes.
    bound: Arc<Vec<Arc<PersistentVolume>>>,
    /// Unbound WaitForFirstConsumer claims, with their class.
    delayed: Arc<Vec<DelayedClaim>>,
    /// What Filter found per node.
    decisions: Arc<Mutex<HashMap<String, Decision>>>,
    /// What Reserve took.
    reserved: Option<Decision>,
}

fn pv_fits_node(pv: &PersistentVolume, node: &NodeInfo) -> bool {
    match pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    {
        Some(sel) => terms_match(&sel.node_selector_terms, node.node()),
        None => true,
    }
}

fn claim_key(c: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or("default"),
        c.metadata.name.as_deref().unwrap_or("")
    )
}

/// Whether `pv` can be bound to `claim`, as upstream's `FindMatchingVolume`.
fn pv_matches_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let (Some(ps), Some(cs)) = (&pv.spec, &claim.spec) else {
        return false;
    };
    if pv.metadata.deletion_timestamp.is_some() {
        return false;
    }
    if let Some(r) = &ps.claim_ref {
        let same = r.name.as_deref() == claim.metadata.name.as_deref()
            && r.namespace.as_deref() == claim.metadata.namespace.as_deref();
        if !same {
            return false;
        }
    } else if pv
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Available")
        != "Available"
    {
        return false;
    }
    if ps.storage_class_name.as_deref().unwrap_or("")
        != cs.storage_class_name.as_deref().unwrap_or("")
    {
        return false;
    }
    if ps.volume_mode.as_deref().unwrap_or("Filesystem")
        != cs.volume_mode.as_deref().unwrap_or("Filesystem")
    {
        return false;
    }
    let pv_modes = ps.access_modes.as_deref().unwrap_or(&[]);
    if !cs
        .access_modes
        .iter()
        .flatten()
        .all(|m| pv_modes.contains(m))
    {
        return false;
    }
    let want = cs
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| quantity_value("storage", q))
        .unwrap_or(0);
    let have = ps
        .capacity
        .as_ref()
        .and_then(|c| c.get("storage"))
        .map(|q| quantity_value("storage", q))
        .unwrap_or(0);
    if have < want {
        return false;
    }
    if let Some(sel) = &cs.selector {
        let Ok(sel) = skiff_api_types::selector::LabelSelector::from_k8s(sel) else {
            return false;
        };
        if !sel.matches(&pv.metadata.labels.clone().unwrap_or_default()) {
            return false;
        }
    }
    true
}

fn capacity(pv: &PersistentVolume) -> i64 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(|q| quantity_value("storage", q))
        .unwrap_or(0)
}

/// Whether a class's allowedTopologies admit the node.
fn topology_allows(class: &StorageClass, node: &NodeInfo) -> bool {
    let Some(terms) = class.allowed_topologies.as_ref().filter(|t| !t.is_empty()) else {
        return true;
    };
    terms.iter().any(|t| {
        t.match_label_expressions.iter().flatten().all(|e| {
            let req = k8s_openapi::api::core::v1::NodeSelectorRequirement {
                key: e.key.clone(),
                operator: "In".into(),
                values: Some(e.values.clone()),
            };
            requirement_matches(&req, node.label(&e.key))
        })
    })
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(
                Resource::PersistentVolumeClaim,
                action::ADD | action::UPDATE,
                "PvcChange",
            ),
            ClusterEvent::new(
                Resource::PersistentVolume,
                action::ADD | action::UPDATE,
                "PvChange",
            ),
            ClusterEvent::new(
                Resource::StorageClass,
                action::ADD | action::UPDATE,
                "StorageClassChange",
            ),
            ClusterEvent::new(
                Resource::Node,
                action::ADD | action::UPDATE_NODE_LABEL,
                "NodeAddOrLabelChange",
            ),
        ]
    }
    extension_points!(
        as_pre_filter: PreFilterPlugin,
        as_filter: FilterPlugin,
        as_reserve: ReservePlugin,
        as_pre_bind: PreBindPlugin,
    );
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<BTreeSet<String>>, Status) {
        if pod.pvcs.is_empty() {
            return (None, Status::skip());
        }
        let listers = &self.handle.listers;
        let mut bound = Vec::new();
        let mut delayed = Vec::new();
        for key in &pod.pvcs {
            let name = key.split_once('/').map_or(key.as_str(), |(_, n)| n);
            let Some(claim) = listers.pvcs.get(key) else {
                return (
                    None,
                    Status::unresolvable(format!("persistentvolumeclaim \"{name}\" not found")),
                );
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return (
                    None,
                    Status::unresolvable(format!(
                        "persistentvolumeclaim \"{name}\" is being deleted"
                    )),
                );
            }
            let spec = claim.spec.clone().unwrap_or_default();
            if let Some(volume) = spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
                let Some(pv) = listers.pvs.get(volume) else {
                    return (
                        None,
                        Status::unresolvable(format!("persistentvolume \"{volume}\" not found")),
                    );
                };
                bound.push(pv);
                continue;
            }
            let class = spec
                .storage_class_name
                .as_deref()
                .filter(|c| !c.is_empty())
                .and_then(|c| listers.storage_classes.get(c));
            let delayed_binding = class
                .as_ref()
                .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
            if !delayed_binding {
                return (None, Status::unresolvable(REASON_IMMEDIATE_UNBOUND));
            }
            delayed.push((claim, class));
        }
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                bound: Arc::new(bound),
                delayed: Arc::new(delayed),
                ..PreFilterState::default()
            },
        );
        (None, Status::success())
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return Status::success();
        };
        if s.bound.iter().any(|pv| !pv_fits_node(pv, node)) {
            return Status::unresolvable(REASON_NODE_CONFLICT);
        }
        if s.delayed.is_empty() {
            return Status::success();
        }
        let mut decision = Decision::default();
        let mut pvs: Vec<Arc<PersistentVolume>> = self.handle.listers.pvs.list();
        pvs.sort_by_key(|pv| capacity(pv));
        for (claim, class) in s.delayed.iter() {
            let taken = |name: &str| decision.bind.iter().any(|(_, v)| v == name);
            let found = pvs.iter().find(|pv| {
                let name = pv.metadata.name.as_deref().unwrap_or("");
                !taken(name) && pv_fits_node(pv, node) && pv_matches_claim(pv, claim)
            });
            if let Some(pv) = found {
                decision.bind.push((
                    claim_key(claim),
                    pv.metadata.name.clone().unwrap_or_default(),
                ));
                continue;
            }
            let provisionable = class
                .as_ref()
                .is_some_and(|c| c.provisioner != NO_PROVISIONER && topology_allows(c, node));
            if !provisionable {
                return Status::unresolvable(REASON_BIND_CONFLICT);
            }
            decision.provision.push(claim_key(claim));
        }
        s.decisions
            .lock()
            .expect("decisions")
            .insert(node.name.clone(), decision);
        Status::success()
    }
}

impl ReservePlugin for VolumeBinding {
    fn reserve(&self, state: &mut CycleState, _: &PodInfo, node: &str) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) {
            let d = s.decisions.lock().expect("decisions").get(node).cloned();
            s.reserved = d;
        }
        Status::success()
    }

    fn unreserve(&self, state: &mut CycleState, _: &PodInfo, _: &str) {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) {
            s.reserved = None;
        }
    }
}

#[async_trait]
impl PreBindPlugin for VolumeBinding {
    async fn pre_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return Status::success();
        };
        let Some(d) = s
            .reserved
            .clone()
            .filter(|d| !d.bind.is_empty() || !d.provision.is_empty())
        else {
            return Status::success();
        };
        let client = &self.handle.client;
        for (claim, pv) in &d.bind {
            let Some(c) = self.handle.listers.pvcs.get(claim) else {
                return Status::error(format!("persistentvolumeclaim {claim} is gone"));
            };
            let patch = json!({"spec": {"claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": c.metadata.namespace, "name": c.metadata.name, "uid": c.metadata.uid,
            }}});
            if let Err(e) = client.patch_pv(pv, &patch).await {
                return Status::error(format!("binding volumes: {e}"));
            }
        }
        for claim in &d.provision {
            let (ns, name) = claim.split_once('/').unwrap_or(("default", claim));
            let patch = json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
            if let Err(e) = client.patch_pvc(ns, name, &patch).await {
                return Status::error(format!("binding volumes: {e}"));
            }
        }
        // Wait for the volume controller (and provisioner) to bind them.
        let deadline = tokio::time::Instant::now() + self.bind_timeout;
        loop {
            let all_bound = pod.pvcs.iter().all(|k| {
                self.handle.listers.pvcs.get(k).is_some_and(|c| {
                    c.spec
                        .as_ref()
                        .and_then(|s| s.volume_name.as_deref())
                        .is_some_and(|v| !v.is_empty())
                })
            });
            if all_bound {
                return Status::success();
            }
            if tokio::time::Instant::now() >= deadline {
                return Status::error("binding volumes: timed out waiting for the condition");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node_info, pod};

    fn set<K: kube::Resource + serde::de::DeserializeOwned>(
        l: &crate::listers::Lister<K>,
        v: Value,
    ) {
        l.set(Arc::new(serde_json::from_value(v).unwrap()));
    }

    fn local_pv(name: &str, host: &str, class: &str, claim: Option<&str>) -> Value {
        json!({"metadata": {"name": name}, "spec": {
            "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "claimRef": claim.map(|c| json!({"namespace": "default", "name": c})),
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}}},
            "status": {"phase": if claim.is_some() { "Bound" } else { "Available" }}})
    }

    fn node(name: &str) -> NodeInfo {
        node_info(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
            vec![],
        )
    }

    fn user(claim: &str) -> Arc<PodInfo> {
        pod(
            json!({"spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}}),
        )
    }

    fn run(plugin: &VolumeBinding, p: &PodInfo) -> Result<Vec<Status>, Status> {
        let snapshot = Snapshot::from_nodes(vec![node("a"), node("b")]);
        let mut state = CycleState::default();
        let (_, s) = plugin.pre_filter(&mut state, p, &snapshot);
        if !s.is_success() {
            return Err(s);
        }
        Ok(snapshot
            .nodes
            .iter()
            .map(|n| plugin.filter(&state, p, n))
            .collect())
    }

    #[test]
    fn a_bound_local_volume_pins_the_pod_to_its_node() {
        let h = Handle::for_tests();
        set(&h.listers.pvs, local_pv("pv-a", "a", "local", Some("data")));
        set(
            &h.listers.pvcs,
            json!({"metadata": {"name": "data", "namespace": "default"},
            "spec": {"volumeName": "pv-a", "storageClassName": "local"}}),
        );
        let plugin = VolumeBinding::new(&Value::Null, h).unwrap();
        let got = run(&plugin, &user("data")).unwrap();
        assert!(got[0].is_success());
        assert_eq!(got[1].message(), REASON_NODE_CONFLICT);
    }

    #[test]
    fn unbound_claims_follow_their_binding_mode() {
        let h = Handle::for_tests();
        set(
            &h.listers.storage_classes,
            json!({"metadata": {"name": "local"},
            "provisioner": NO_PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer"}),
        );
        set(
            &h.listers.storage_classes,
            json!({"metadata": {"name": "now"}, "provisioner": "x"}),
        );
        set(&h.listers.pvs, local_pv("pv-b", "b", "local", None));
        set(
            &h.listers.pvcs,
            json!({"metadata": {"name": "late", "namespace": "default"},
            "spec": {"storageClassName": "local", "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "5Gi"}}}}),
        );
        set(
            &h.listers.pvcs,
            json!({"metadata": {"name": "eager", "namespace": "default"},
            "spec": {"storageClassName": "now", "accessModes": ["ReadWriteOnce"]}}),
        );
        let plugin = VolumeBinding::new(&Value::Null, h).unwrap();
        let got = run(&plugin, &user("late")).unwrap();
        assert_eq!(got[0].message(), REASON_BIND_CONFLICT);
        assert!(got[1].is_success());
        let err = run(&plugin, &user("eager")).err().unwrap();
        assert_eq!(err.message(), REASON_IMMEDIATE_UNBOUND);
        let missing = run(&plugin, &user("nope")).err().unwrap();
        assert_eq!(missing.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(
            missing.message(),
            "persistentvolumeclaim \"nope\" not found"
        );
    }
}
