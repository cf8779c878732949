//! VolumeRestrictions: in-line disks that cannot be shared (a GCE PD
//! mounted read-write, an AWS EBS volume, an RBD image, an iSCSI target)
//! keep a second pod using them off the node, and a ReadWriteOncePod
//! PersistentVolumeClaim may be used by one pod in the whole cluster.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Volume;

use crate::cache::Snapshot;
use crate::extension_points;
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, Handle, Plugin, PreFilterPlugin, Resource, Status,
    action,
};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub const NAME: &str = "VolumeRestrictions";
/// Upstream's reasons.
pub const REASON_DISK_CONFLICT: &str = "node(s) had no available disk";
pub const REASON_RWOP_CONFLICT: &str =
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";
const PRE_FILTER_KEY: &str = "PreFilterVolumeRestrictions";

/// Keeps exclusive volumes exclusive.
pub struct VolumeRestrictions {
    handle: Arc<Handle>,
}

impl VolumeRestrictions {
    pub fn new(handle: Arc<Handle>) -> VolumeRestrictions {
        VolumeRestrictions { handle }
    }
}

/// Whether two in-line volumes would clash on one node.
pub fn conflicts(a: &Volume, b: &Volume) -> bool {
    if let (Some(x), Some(y)) = (&a.gce_persistent_disk, &b.gce_persistent_disk) {
        return x.pd_name == y.pd_name && !(x.read_only == Some(true) && y.read_only == Some(true));
    }
    if let (Some(x), Some(y)) = (&a.aws_elastic_block_store, &b.aws_elastic_block_store) {
        return x.volume_id == y.volume_id;
    }
    if let (Some(x), Some(y)) = (&a.iscsi, &b.iscsi) {
        return x.iqn == y.iqn && !(x.read_only == Some(true) && y.read_only == Some(true));
    }
    if let (Some(x), Some(y)) = (&a.rbd, &b.rbd) {
        let shared_monitor = x.monitors.iter().any(|m| y.monitors.contains(m));
        return shared_monitor
            && x.pool == y.pool
            && x.image == y.image
            && !(x.read_only == Some(true) && y.read_only == Some(true));
    }
    false
}

fn volumes(pod: &PodInfo) -> &[Volume] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[])
}

fn exclusive(v: &Volume) -> bool {
    v.gce_persistent_disk.is_some()
        || v.aws_elastic_block_store.is_some()
        || v.iscsi.is_some()
        || v.rbd.is_some()
}

/// The pod's ReadWriteOncePod claims, and how many other pods use them.
#[derive(Clone, Default)]
struct PreFilterState {
    rwop_claims: Arc<Vec<String>>,
    conflicts: i64,
}

impl Plugin for VolumeRestrictions {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(Resource::Pod, action::DELETE, "AssignedPodDelete"),
            ClusterEvent::new(Resource::Node, action::ADD, "NodeAdd"),
            ClusterEvent::new(
                Resource::PersistentVolumeClaim,
                action::ADD | action::UPDATE,
                "PvcChange",
            ),
        ]
    }
    extension_points!(as_pre_filter: PreFilterPlugin, as_filter: FilterPlugin);
}

impl PreFilterPlugin for VolumeRestrictions {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<BTreeSet<String>>, Status) {
        if volumes(pod).is_empty() {
            return (None, Status::skip());
        }
        let rwop: Vec<String> = pod
            .pvcs
            .iter()
            .filter(|key| {
                self.handle.listers.pvcs.get(key).is_some_and(|c| {
                    c.spec
                        .as_ref()
                        .and_then(|s| s.access_modes.as_ref())
                        .is_some_and(|m| m.iter().any(|m| m == "ReadWriteOncePod"))
                })
            })
            .cloned()
            .collect();
        let conflicts: i64 = snapshot
            .nodes
            .iter()
            .map(|n| {
                rwop.iter()
                    .map(|c| n.pvc_refs.get(c).copied().unwrap_or(0) as i64)
                    .sum::<i64>()
            })
            .sum();
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                rwop_claims: Arc::new(rwop),
                conflicts,
            },
        );
        (None, Status::success())
    }

    fn has_extensions(&self) -> bool {
        true
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        other: &Arc<PodInfo>,
        _: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) {
            s.conflicts += other
                .pvcs
                .iter()
                .filter(|c| s.rwop_claims.contains(c))
                .count() as i64;
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        other: &Arc<PodInfo>,
        _: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) {
            s.conflicts -= other
                .pvcs
                .iter()
                .filter(|c| s.rwop_claims.contains(c))
                .count() as i64;
        }
        Status::success()
    }
}

impl FilterPlugin for VolumeRestrictions {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for v in volumes(pod).iter().filter(|v| exclusive(v)) {
            for other in &node.pods {
                if volumes(other).iter().any(|o| conflicts(v, o)) {
                    return Status::unschedulable(REASON_DISK_CONFLICT);
                }
            }
        }
        if let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY)
            && s.conflicts > 0
        {
            return Status::unschedulable(REASON_RWOP_CONFLICT);
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod};
    use serde_json::json;

    fn with_pd(name: &str, read_only: bool) -> serde_json::Value {
        json!({"spec": {"volumes": [{"name": "d", "gcePersistentDisk": {"pdName": name, "readOnly": read_only}}]}})
    }

    fn run(plugin: &VolumeRestrictions, p: &PodInfo, nodes: Vec<NodeInfo>) -> Vec<Status> {
        let snapshot = Snapshot::from_nodes(nodes);
        let mut state = CycleState::default();
        let (_, s) = plugin.pre_filter(&mut state, p, &snapshot);
        if s.code == crate::framework::Code::Skip {
            return snapshot.nodes.iter().map(|_| Status::success()).collect();
        }
        snapshot
            .nodes
            .iter()
            .map(|n| plugin.filter(&state, p, n))
            .collect()
    }

    #[test]
    fn a_read_write_disk_is_not_shared_on_a_node() {
        let plugin = VolumeRestrictions::new(Handle::for_tests());
        let node = || node_info(json!({}), vec![with_pd("disk-1", false)]);
        let got = run(&plugin, &pod(with_pd("disk-1", false)), vec![node()]);
        assert_eq!(got[0].message(), REASON_DISK_CONFLICT);
        assert!(run(&plugin, &pod(with_pd("disk-2", false)), vec![node()])[0].is_success());
        let ro = || node_info(json!({}), vec![with_pd("disk-1", true)]);
        assert!(run(&plugin, &pod(with_pd("disk-1", true)), vec![ro()])[0].is_success());
    }

    #[test]
    fn a_read_write_once_pod_claim_is_used_once_in_the_cluster() {
        let h = Handle::for_tests();
        h.listers.pvcs.set(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "default"},
                "spec": {"accessModes": ["ReadWriteOncePod"]}}))
            .unwrap(),
        ));
        let plugin = VolumeRestrictions::new(h);
        let user = json!({"spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]}});
        let busy = node_info(json!({"metadata": {"name": "a"}}), vec![user.clone()]);
        let idle = node_info(json!({"metadata": {"name": "b"}}), vec![]);
        let got = run(&plugin, &pod(user.clone()), vec![busy, idle.clone()]);
        assert!(got.iter().all(|s| s.message() == REASON_RWOP_CONFLICT));
        assert!(run(&plugin, &pod(user), vec![idle])[0].is_success());
    }
}
