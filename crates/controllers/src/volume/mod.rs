//! The PersistentVolume controllers: the binder (claims to volumes, volume
//! phases, reclaiming released volumes, and the host-path provisioner of
//! `--enable-hostpath-provisioner`), and the PVC and PV protection
//! controllers that lift the in-use finalizers.

pub(crate) mod binding;
pub(crate) mod protection;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    PersistentVolumeStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::framework::{self, Backoff, Context};
use binding::*;

/// The binder's name in `--controllers`.
pub(crate) const BINDER_NAME: &str = "persistentvolume-binder-controller";
/// The host-path provisioner's name, as StorageClasses name it.
pub(crate) const HOST_PATH_PROVISIONER: &str = "kubernetes.io/host-path";
/// The component its events are reported by, as upstream.
const COMPONENT: &str = "persistentvolume-controller";

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("provisioning volume {name}: {reason}")]
    Provision { name: String, reason: String },
    #[error("the caches stopped")]
    CacheGone,
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

struct Ctx {
    client: Client,
    volumes: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    classes: Store<StorageClass>,
    /// `--enable-hostpath-provisioner` and `--hostpath-provisioner-dir`.
    host_path_dir: Option<PathBuf>,
    recorder: Recorder,
    resync: std::time::Duration,
    backoff: Backoff,
}

impl Ctx {
    async fn ready(&self) -> Result<(), Error> {
        for ready in [
            self.volumes.wait_until_ready().await,
            self.claims.wait_until_ready().await,
            self.classes.wait_until_ready().await,
        ] {
            ready.map_err(|_| Error::CacheGone)?;
        }
        Ok(())
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        if name.is_empty() {
            return None;
        }
        self.classes.get(&ObjectRef::new(name))
    }

    /// Publishes an event; a failure to do so only logs.
    async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        record(&self.recorder, obj, warning, reason, note).await;
    }
}

/// Publishes an event (events.k8s.io/v1) about `obj`; best effort.
pub(crate) async fn record<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    warning: bool,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&ev, &obj.object_ref(&())).await {
        debug!(%error, reason, "could not publish an event");
    }
}

/// An event recorder reporting as `component`.
pub(crate) fn recorder(client: &Client, component: &str) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: component.into(),
            instance: std::env::var("HOSTNAME").ok(),
        },
    )
}

async fn set_claim_phase(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    phase: &str,
) -> Result<(), Error> {
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    // Updates, not patches: what the binder's RBAC role allows.
    let mut updated = claim.clone();
    updated.status.get_or_insert_with(Default::default).phase = Some(phase.into());
    api.replace_status(&claim.name_any(), &PostParams::default(), &updated)
        .await
        .map_err(api_err(format!(
            "setting claim {} phase {phase}",
            claim.name_any()
        )))?;
    Ok(())
}

async fn set_volume_phase(
    ctx: &Ctx,
    pv: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> Result<(), Error> {
    let status = pv.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) == Some(phase)
        && status.and_then(|s| s.message.as_deref()) == message
    {
        return Ok(());
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let mut updated = pv.clone();
    updated.status = Some(PersistentVolumeStatus {
        phase: Some(phase.into()),
        message: message.map(String::from),
        reason: None,
        last_phase_transition_time: Some(Time(Timestamp::now())),
    });
    api.replace_status(&pv.name_any(), &PostParams::default(), &updated)
        .await
        .map_err(api_err(format!(
            "setting volume {} phase {phase}",
            pv.name_any()
        )))?;
    Ok(())
}

/// Points the volume and the claim at each other and marks both Bound,
/// in upstream's order: volume, volume status, claim, claim status.
async fn bind(
    ctx: &Ctx,
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), Error> {
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    let mut pv = pv.clone();
    if let Some(updated) = volume_bound(&pv, claim) {
        pv = pvs
            .replace(&pv.name_any(), &PostParams::default(), &updated)
            .await
            .map_err(api_err(format!(
                "binding volume {} to claim {}",
                pv.name_any(),
                claim.name_any()
            )))?;
    }
    set_volume_phase(ctx, &pv, "Bound", None).await?;
    let mut claim = claim.clone();
    if let Some(updated) = claim_bound(&claim, &pv.name_any()) {
        claim = claims
            .replace(&claim.name_any(), &PostParams::default(), &updated)
            .await
            .map_err(api_err(format!(
                "binding claim {} to volume {}",
                claim.name_any(),
                pv.name_any()
            )))?;
    }
    if let Some(status) = bound_claim_status(&claim, &pv) {
        claim.status = Some(status);
        claims
            .replace_status(&claim.name_any(), &PostParams::default(), &claim)
            .await
            .map_err(api_err(format!(
                "setting claim {} status",
                claim.name_any()
            )))?;
        info!(claim = %format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any()), volume = %pv.name_any(), "bound");
    }
    Ok(())
}

async fn sync_claim(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.ready().await?;
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let completed = claim
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(BIND_COMPLETED));
    match volume_name {
        None => sync_unbound_claim(&claim, &ctx).await?,
        Some(name) => {
            let pv = ctx.volumes.get(&ObjectRef::new(&name));
            match pv {
                None if completed => {
                    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Lost") {
                        ctx.event(&*claim, true, "ClaimLost", "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!".into()).await;
                    }
                    set_claim_phase(&ctx, &claim, "Lost").await?;
                }
                None => {
                    ctx.event(
                        &*claim,
                        true,
                        "FailedBinding",
                        format!("volume {name:?} not found"),
                    )
                    .await;
                    set_claim_phase(&ctx, &claim, "Pending").await?;
                }
                Some(pv) => {
                    let claimed = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
                    if claimed.is_none() || is_bound_to(&pv, &claim) {
                        bind(&ctx, &pv, &claim).await?;
                    } else if completed {
                        ctx.event(&*claim, true, "ClaimMisbound", "Two claims are bound to the same volume, this one is bound incorrectly".into()).await;
                        set_claim_phase(&ctx, &claim, "Lost").await?;
                    } else {
                        ctx.event(
                            &*claim,
                            true,
                            "FailedBinding",
                            "volume already bound to a different claim.".into(),
                        )
                        .await;
                        set_claim_phase(&ctx, &claim, "Pending").await?;
                    }
                }
            }
        }
    }
    ctx.backoff.succeeded(&key(&*claim));
    Ok(Action::requeue(ctx.resync))
}

async fn sync_unbound_claim(claim: &PersistentVolumeClaim, ctx: &Ctx) -> Result<(), Error> {
    let class_name = claim_class(claim);
    let class = ctx.class(&class_name);
    let delay = delays_binding(class.as_deref());
    let volumes = ctx.volumes.state();
    if let Some(pv) = best_match(claim, volumes.iter().map(|v| &**v), delay) {
        return bind(ctx, pv, claim).await;
    }
    if delay && !has_selected_node(claim) {
        ctx.event(
            claim,
            false,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        )
        .await;
    } else if !class_name.is_empty() {
        match class {
            None => {
                ctx.event(
                    claim,
                    true,
                    "ProvisioningFailed",
                    format!("storageclass.storage.k8s.io {class_name:?} not found"),
                )
                .await;
            }
            Some(class) => provision(ctx, claim, &class).await?,
        }
    } else {
        ctx.event(
            claim,
            false,
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set".into(),
        )
        .await;
    }
    set_claim_phase(ctx, claim, "Pending").await
}

/// Asks the class's provisioner for a volume: the host-path provisioner
/// (when enabled) makes one here; any other is an external provisioner,
/// told by the claim's annotation.
async fn provision(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
) -> Result<(), Error> {
    let provisioner = class.provisioner.as_str();
    let annotated = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STORAGE_PROVISIONER))
        .is_some_and(|p| p == provisioner);
    let mut claim = claim.clone();
    if !annotated {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
        let a = claim.metadata.annotations.get_or_insert_with(BTreeMap::new);
        a.insert(STORAGE_PROVISIONER.into(), provisioner.into());
        a.insert(BETA_STORAGE_PROVISIONER.into(), provisioner.into());
        claim = api
            .replace(&claim.name_any(), &PostParams::default(), &claim)
            .await
            .map_err(api_err(format!("annotating claim {}", claim.name_any())))?;
    }
    let Some(dir) = ctx
        .host_path_dir
        .as_deref()
        .filter(|_| provisioner == HOST_PATH_PROVISIONER)
    else {
        if !annotated {
            ctx.event(&claim, false, "ExternalProvisioning", format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.")).await;
        }
        return Ok(());
    };
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    if ctx.volumes.get(&ObjectRef::new(&name)).is_some() {
        return Ok(());
    }
    let path = dir.join(&name);
    let pv = host_path_volume(&claim, class, &name, &path);
    if let Err(e) = make_dir(&path) {
        let reason = format!("creating {}: {e}", path.display());
        ctx.event(
            &claim,
            true,
            "ProvisioningFailed",
            format!(
                "Failed to provision volume with StorageClass {:?}: {reason}",
                class.name_any()
            ),
        )
        .await;
        return Err(Error::Provision { name, reason });
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {
            info!(volume = %name, path = %path.display(), "provisioned a host-path volume");
            ctx.event(
                &claim,
                false,
                "ProvisioningSucceeded",
                format!("Successfully provisioned volume {name} using {HOST_PATH_PROVISIONER}"),
            )
            .await;
            Ok(())
        }
        Err(e) if framework::is_already_exists(&e) => Ok(()),
        Err(source) => Err(Error::Api {
            what: format!("creating volume {name}"),
            source,
        }),
    }
}

fn make_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)?;
    // Any container user may write: the volume cannot be chowned to a
    // pod's fsGroup.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
}

/// The PersistentVolume the host-path provisioner makes for a claim,
/// pre-bound to it.
pub(crate) fn host_path_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    name: &str,
    path: &Path,
) -> PersistentVolume {
    let spec = claim.spec.clone().unwrap_or_default();
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_owned(),
                HOST_PATH_PROVISIONER.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| {
                    r.get("storage")
                        .map(|q| BTreeMap::from([("storage".to_owned(), q.clone())]))
                }),
            access_modes: spec.access_modes.clone(),
            volume_mode: spec.volume_mode.clone(),
            storage_class_name: Some(class.name_any()),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            mount_options: class.mount_options.clone(),
            claim_ref: Some(claim_ref(claim)),
            host_path: Some(HostPathVolumeSource {
                path: path.display().to_string(),
                type_: None,
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    }
}

async fn sync_volume(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.ready().await?;
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.clone());
    let Some(r) = claim_ref else {
        set_volume_phase(&ctx, &pv, "Available", None).await?;
        ctx.backoff.succeeded(&pv.name_any());
        return Ok(Action::requeue(ctx.resync));
    };
    let uid = r.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        // Pre-bound by a user (or the scheduler) to a claim not yet bound:
        // the claim's sync binds it.
        set_volume_phase(&ctx, &pv, "Available", None).await?;
        ctx.backoff.succeeded(&pv.name_any());
        return Ok(Action::requeue(ctx.resync));
    }
    let (ns, name) = (
        r.namespace.clone().unwrap_or_default(),
        r.name.clone().unwrap_or_default(),
    );
    // Read live, not from the cache: the claim watch that triggered this
    // sync is not the one feeding the cache, and a stale claim would keep
    // a released volume Bound.
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let claim = api
        .get_opt(&name)
        .await
        .map_err(api_err(format!("reading claim {ns}/{name}")))?;
    match claim.filter(|c| c.metadata.uid.as_deref() == Some(&uid)) {
        None => reclaim(&ctx, &pv).await?,
        Some(claim) => {
            let claim_volume = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .unwrap_or("");
            if claim_volume == pv.name_any() {
                set_volume_phase(&ctx, &pv, "Bound", None).await?;
            } else if claim_volume.is_empty() {
                // The claim's sync finishes the binding.
            } else {
                // The claim is bound to another volume: let this one go.
                let mut freed = (*pv).clone();
                let by_us = freed
                    .annotations_mut()
                    .remove(BOUND_BY_CONTROLLER)
                    .is_some();
                let spec = freed.spec.get_or_insert_with(Default::default);
                if by_us {
                    spec.claim_ref = None;
                } else if let Some(r) = spec.claim_ref.as_mut() {
                    r.uid = None;
                    r.resource_version = None;
                }
                let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
                let freed = api
                    .replace(&pv.name_any(), &PostParams::default(), &freed)
                    .await
                    .map_err(api_err(format!("unbinding volume {}", pv.name_any())))?;
                set_volume_phase(&ctx, &freed, "Available", None).await?;
            }
        }
    }
    ctx.backoff.succeeded(&pv.name_any());
    Ok(Action::requeue(ctx.resync))
}

/// The claim of a bound volume is gone: Released, then what the reclaim
/// policy says (Retain keeps it; Delete deletes it, and the host-path
/// provisioner's directory with it).
async fn reclaim(ctx: &Ctx, pv: &PersistentVolume) -> Result<(), Error> {
    let phase = pv
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    if phase != "Released" && phase != "Failed" {
        set_volume_phase(ctx, pv, "Released", None).await?;
        info!(volume = %pv.name_any(), "released: its claim is gone");
    }
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    match policy {
        "Delete" => delete_volume(ctx, pv).await,
        "Recycle" => {
            let msg = "No recycler plugin found for the volume!";
            if phase != "Failed" {
                ctx.event(pv, true, "VolumeFailedRecycle", msg.into()).await;
            }
            set_volume_phase(ctx, pv, "Failed", Some(msg)).await
        }
        _ => Ok(()),
    }
}

async fn delete_volume(ctx: &Ctx, pv: &PersistentVolume) -> Result<(), Error> {
    let provisioned_by = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .map(String::as_str);
    let host_path = pv
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| PathBuf::from(&h.path));
    match (provisioned_by, host_path, ctx.host_path_dir.as_deref()) {
        (Some(HOST_PATH_PROVISIONER), Some(path), Some(dir)) => {
            // Only directories this provisioner made are removed.
            if path.parent() != Some(dir) {
                let msg = format!(
                    "host_path deleter only supports {}/.+ but received provided {}",
                    dir.display(),
                    path.display()
                );
                ctx.event(pv, true, "VolumeFailedDelete", msg.clone()).await;
                return set_volume_phase(ctx, pv, "Failed", Some(&msg)).await;
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let msg = format!("removing {}: {e}", path.display());
                    ctx.event(pv, true, "VolumeFailedDelete", msg.clone()).await;
                    return set_volume_phase(ctx, pv, "Failed", Some(&msg)).await;
                }
            }
        }
        (Some(p), _, _) if p != HOST_PATH_PROVISIONER => {
            // An external provisioner deletes its own volumes.
            return Ok(());
        }
        _ => {
            let msg = "error getting deleter volume plugin for volume: no deletable volume plugin matched";
            if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed") {
                ctx.event(pv, true, "VolumeFailedDelete", msg.into()).await;
            }
            return set_volume_phase(ctx, pv, "Failed", Some(msg)).await;
        }
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api.delete(&pv.name_any(), &DeleteParams::default()).await {
        Ok(_) => {
            info!(volume = %pv.name_any(), "deleted, as its reclaim policy says");
            Ok(())
        }
        Err(e) if framework::is_not_found(&e) => Ok(()),
        Err(source) => Err(Error::Api {
            what: format!("deleting volume {}", pv.name_any()),
            source,
        }),
    }
}

fn key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

fn error_policy<K: Resource>(obj: Arc<K>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = key(&*obj);
    let delay = ctx.backoff.failed(&key);
    warn!(object = %key, error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

/// Runs the binder until the controller manager stops: one loop over
/// claims, one over volumes, sharing their caches.
pub(crate) fn start_binder(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let claims_ctl = crate::framework::controller(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        );
        let volumes_ctl = crate::framework::controller(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
        );
        let (classes, writer) = reflector::store();
        let class_changes = watcher(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(crate::framework::drop_managed_fields)
        .reflect(writer)
        .touched_objects();
        let settings = &ctx.settings;
        let state = Arc::new(Ctx {
            client: client.clone(),
            volumes: volumes_ctl.store(),
            claims: claims_ctl.store(),
            classes: classes.clone(),
            host_path_dir: settings
                .enable_hostpath_provisioner
                .then(|| settings.hostpath_provisioner_dir.clone()),
            recorder: recorder(&client, COMPONENT),
            resync: ctx.resync_period(),
            backoff: Backoff::default(),
        });
        // A class made after its claims lets them provision.
        let claims_store = claims_ctl.store();
        let claims_loop = claims_ctl
            .watches(
                Api::<PersistentVolume>::all(client.clone()),
                watcher::Config::default(),
                |pv: PersistentVolume| {
                    pv.spec
                        .and_then(|s| s.claim_ref)
                        .and_then(|r| Some(ObjectRef::new(&r.name?).within(&r.namespace?)))
                },
            )
            .watches_stream(class_changes, move |class: StorageClass| {
                let name = class.name_any();
                claims_store
                    .state()
                    .into_iter()
                    .filter(|c| {
                        claim_class(c) == name
                            && c.spec
                                .as_ref()
                                .and_then(|s| s.volume_name.as_ref())
                                .is_none()
                    })
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            })
            .with_config(controller::Config::default().concurrency(1))
            .graceful_shutdown_on(ctx.stopped())
            .run(sync_claim, error_policy, state.clone())
            .for_each(|r| async move {
                if let Err(e) = r {
                    debug!(error = %e, "claim sync");
                }
            });
        let volumes_loop = volumes_ctl
            .watches(
                Api::<PersistentVolumeClaim>::all(client.clone()),
                watcher::Config::default(),
                |c: PersistentVolumeClaim| {
                    c.spec
                        .and_then(|s| s.volume_name)
                        .filter(|v| !v.is_empty())
                        .map(|v| ObjectRef::new(&v))
                },
            )
            .with_config(controller::Config::default().concurrency(1))
            .graceful_shutdown_on(ctx.stopped())
            .run(sync_volume, error_policy, state)
            .for_each(|r| async move {
                if let Err(e) = r {
                    debug!(error = %e, "volume sync");
                }
            });
        tokio::join!(claims_loop, volumes_loop);
    })
}
