//! The PersistentVolume binder, the host-path provisioner and the
//! protection controllers against a real API server.

use std::time::Duration;

use crate::common::{Cluster, Manager, SOON, eventually};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// The controllers act as the controller manager's user, so that their
/// writes are checked against the RBAC roles a real cluster gives them.
fn as_controller_manager(mut config: skiff_controllers::Config) -> skiff_controllers::Config {
    config.kube.auth_info.impersonate = Some("system:kube-controller-manager".into());
    config
}

const CONTROLLERS: &[&str] = &[
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
];

async fn create_pv(client: &Client, name: &str, size: &str, class: &str) {
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": class, "hostPath": {"path": format!("/tmp/{name}")}},
    }))
    .unwrap();
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .unwrap();
}

async fn create_claim(
    client: &Client,
    ns: &str,
    name: &str,
    size: &str,
    class: Option<&str>,
) -> PersistentVolumeClaim {
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}});
    if let Some(class) = class {
        spec["storageClassName"] = json!(class);
    }
    let claim: PersistentVolumeClaim =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &claim)
        .await
        .unwrap()
}

async fn create_class(client: &Client, name: &str, provisioner: &str, mode: &str, default: bool) {
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {
            "storageclass.kubernetes.io/is-default-class": default.to_string()}},
        "provisioner": provisioner,
        "volumeBindingMode": mode,
    }))
    .unwrap();
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

async fn bound_claim(api: &Api<PersistentVolumeClaim>, name: &str) -> PersistentVolumeClaim {
    eventually(&format!("claim {name} bound"), SOON, || async {
        api.get(name)
            .await
            .ok()
            .filter(|c| phase_of_claim(c) == "Bound")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_binds_to_the_smallest_fitting_volume_which_is_released_after() {
    let c = Cluster::start().await;
    let manager = Manager::start(as_controller_manager(c.config(CONTROLLERS)));
    c.namespace("vol").await;
    create_pv(&c.client, "small", "1Gi", "").await;
    create_pv(&c.client, "big", "5Gi", "").await;
    create_pv(&c.client, "huge", "50Gi", "").await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "vol");
    create_claim(&c.client, "vol", "data", "2Gi", Some("")).await;

    let claim = bound_claim(&claims, "data").await;
    assert_eq!(
        claim.spec.as_ref().unwrap().volume_name.as_deref(),
        Some("big")
    );
    let a = claim.metadata.annotations.clone().unwrap();
    assert_eq!(a["pv.kubernetes.io/bind-completed"], "yes");
    assert_eq!(a["pv.kubernetes.io/bound-by-controller"], "yes");
    let status = claim.status.unwrap();
    assert_eq!(status.capacity.unwrap()["storage"].0, "5Gi");
    assert_eq!(status.access_modes.unwrap(), ["ReadWriteOnce"]);

    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());
    let big = eventually("volume big Bound", SOON, || async {
        pvs.get("big")
            .await
            .ok()
            .filter(|v| phase_of_volume(v) == "Bound")
    })
    .await;
    let r = big.spec.as_ref().unwrap().claim_ref.clone().unwrap();
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref()),
        (Some("vol"), Some("data"))
    );
    assert_eq!(r.uid, claim.metadata.uid);
    assert_eq!(
        big.annotations()["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    for name in ["small", "huge"] {
        let v = pvs.get(name).await.unwrap();
        assert_eq!(phase_of_volume(&v), "Available", "{name}");
        assert!(v.spec.unwrap().claim_ref.is_none(), "{name}");
    }
    // A claim too large for any volume stays Pending.
    create_claim(&c.client, "vol", "too-big", "100Gi", Some("")).await;
    eventually("claim too-big Pending", SOON, || async {
        claims
            .get("too-big")
            .await
            .ok()
            .filter(|c| phase_of_claim(c) == "Pending")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        claims
            .get("too-big")
            .await
            .unwrap()
            .spec
            .unwrap()
            .volume_name
            .is_none()
    );

    // WaitForFirstConsumer without a provisioner: the claim waits; the
    // scheduler then pre-binds a volume (claimRef) and names the node, and
    // the binder completes the binding.
    create_class(
        &c.client,
        "local",
        "kubernetes.io/no-provisioner",
        "WaitForFirstConsumer",
        false,
    )
    .await;
    create_pv(&c.client, "local-pv", "1Gi", "local").await;
    let local = create_claim(&c.client, "vol", "local-claim", "1Gi", Some("local")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = claims.get("local-claim").await.unwrap();
    assert_eq!(phase_of_claim(&waiting), "Pending");
    assert!(waiting.spec.unwrap().volume_name.is_none());
    pvs.patch(
        "local-pv",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "namespace": "vol", "name": "local-claim", "uid": local.metadata.uid}}}),
        ),
    )
    .await
    .unwrap();
    claims
        .patch(
            "local-claim",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "volume.kubernetes.io/selected-node": "node-a"}}})),
        )
        .await
        .unwrap();
    let bound = bound_claim(&claims, "local-claim").await;
    assert_eq!(bound.spec.unwrap().volume_name.as_deref(), Some("local-pv"));

    // Manually made volumes are retained: the claim's deletion releases it.
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    eventually("volume big Released", SOON, || async {
        pvs.get("big")
            .await
            .ok()
            .filter(|v| phase_of_volume(v) == "Released")
    })
    .await;
    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_path_provisioner_waits_for_the_first_consumer_and_deletes_what_it_made() {
    let c = Cluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = c.config(CONTROLLERS);
    config.enable_hostpath_provisioner = true;
    config.hostpath_provisioner_dir = dir.path().to_owned();
    let manager = Manager::start(as_controller_manager(config));
    c.namespace("vol").await;
    create_class(
        &c.client,
        "standard",
        "kubernetes.io/host-path",
        "Immediate",
        true,
    )
    .await;
    create_class(
        &c.client,
        "late",
        "kubernetes.io/host-path",
        "WaitForFirstConsumer",
        false,
    )
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "vol");
    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());

    // No class named: the default class's provisioner makes the volume.
    let made = create_claim(&c.client, "vol", "data", "1Gi", None).await;
    assert_eq!(
        made.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("standard")
    );
    let claim = bound_claim(&claims, "data").await;
    let pv_name = format!("pvc-{}", made.metadata.uid.clone().unwrap());
    assert_eq!(
        claim.spec.as_ref().unwrap().volume_name.as_deref(),
        Some(pv_name.as_str())
    );
    assert_eq!(
        claim.annotations()["volume.kubernetes.io/storage-provisioner"],
        "kubernetes.io/host-path"
    );
    let pv = pvs.get(&pv_name).await.unwrap();
    assert_eq!(
        pv.annotations()["pv.kubernetes.io/provisioned-by"],
        "kubernetes.io/host-path"
    );
    let spec = pv.spec.clone().unwrap();
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("standard"));
    assert_eq!(spec.capacity.unwrap()["storage"].0, "1Gi");
    let path = std::path::PathBuf::from(spec.host_path.unwrap().path);
    assert_eq!(path, dir.path().join(&pv_name));
    assert!(path.is_dir(), "the provisioner made {}", path.display());

    // A WaitForFirstConsumer claim waits for the scheduler's choice.
    create_claim(&c.client, "vol", "later", "1Gi", Some("late")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = claims.get("later").await.unwrap();
    assert_eq!(phase_of_claim(&waiting), "Pending");
    assert!(waiting.spec.unwrap().volume_name.is_none());
    assert_eq!(pvs.list(&Default::default()).await.unwrap().items.len(), 1);
    claims
        .patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "volume.kubernetes.io/selected-node": "node-a"}}})),
        )
        .await
        .unwrap();
    let later = bound_claim(&claims, "later").await;
    assert!(later.spec.unwrap().volume_name.unwrap().starts_with("pvc-"));

    // A claim in use by a scheduled pod is kept until the pod goes.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "vol");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "user"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "busybox"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = claims.get("data").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_some());
    assert_eq!(kept.finalizers(), ["kubernetes.io/pvc-protection"]);
    pods.delete(
        "user",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Then the claim goes, and with the Delete policy the volume and its
    // directory follow.
    eventually("claim data gone", SOON, || async {
        claims
            .get_opt("data")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    eventually("volume deleted", SOON, || async {
        pvs.get_opt(&pv_name).await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(!path.exists(), "{} removed", path.display());
    manager.stop().await;
    c.stop().await;
}
