//! The PVC and PV protection controllers: the API server's
//! StorageObjectInUseProtection admission puts `kubernetes.io/pvc-protection`
//! on every claim and `kubernetes.io/pv-protection` on every volume; once a
//! deleted claim is used by no pod, or a deleted volume is bound to no claim,
//! its finalizer is removed and the deletion completes.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::cache::Changed;
use crate::framework::{self, Backoff, Context};

pub(crate) const PVC_NAME: &str = "persistentvolumeclaim-protection-controller";
pub(crate) const PV_NAME: &str = "persistentvolume-protection-controller";
pub(crate) const PVC_FINALIZER: &str = "kubernetes.io/pvc-protection";
pub(crate) const PV_FINALIZER: &str = "kubernetes.io/pv-protection";

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

struct Ctx {
    client: Client,
    backoff: Backoff,
}

/// The claims a pod uses: its persistentVolumeClaim volumes and the claims
/// of its generic ephemeral volumes (`<pod>-<volume>`).
pub(crate) fn claims_of(pod: &Pod) -> Vec<String> {
    let pod_name = pod.name_any();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{pod_name}-{}", v.name))
            }
        })
        .collect()
}

/// Whether the pod holds its claims: scheduled (a kubelet refuses to start
/// a pod whose claim is being deleted, so an unscheduled pod never gets
/// it) and not finished, as upstream.
fn pod_uses_claims(pod: &Pod) -> bool {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    scheduled && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The finalizers without `finalizer`, if it is there.
fn without(meta: &kube::api::ObjectMeta, finalizer: &str) -> Option<Vec<String>> {
    let f = meta.finalizers.as_ref()?;
    f.iter()
        .any(|x| x == finalizer)
        .then(|| f.iter().filter(|x| *x != finalizer).cloned().collect())
}

/// Removes a finalizer, guarded by the resourceVersion the decision was
/// made on.
async fn remove_finalizer<K>(
    api: &Api<K>,
    obj: &K,
    finalizers: Vec<String>,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    // An update, not a patch: what the protection controllers' RBAC roles
    // allow; the cached resourceVersion guards the decision.
    let mut updated = obj.clone();
    updated.meta_mut().finalizers = Some(finalizers);
    match api
        .replace(
            &obj.meta().name.clone().unwrap_or_default(),
            &PostParams::default(),
            &updated,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if framework::is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn sync_claim(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = format!(
        "{}/{}",
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    );
    if claim.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let Some(finalizers) = without(&claim.metadata, PVC_FINALIZER) else {
        return Ok(Action::await_change());
    };
    // A live list, not a cache: a pod just made must not be missed.
    let ns = claim.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::Api {
            what: format!("listing pods of {ns}"),
            source,
        })?;
    let name = claim.name_any();
    let user = list
        .items
        .iter()
        .find(|p| pod_uses_claims(p) && claims_of(p).contains(&name));
    if let Some(user) = user {
        debug!(claim = %key, pod = %user.name_any(), "claim still in use; keeping its finalizer");
        return Ok(Action::await_change());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    remove_finalizer(&api, &claim, finalizers)
        .await
        .map_err(|source| Error::Api {
            what: format!("removing {PVC_FINALIZER} from {key}"),
            source,
        })?;
    info!(claim = %key, "no pod uses the claim; removed {PVC_FINALIZER}");
    ctx.backoff.succeeded(&key);
    Ok(Action::await_change())
}

async fn sync_volume(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pv.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let Some(finalizers) = without(&pv.metadata, PV_FINALIZER) else {
        return Ok(Action::await_change());
    };
    // A volume is in use while it is bound to a claim.
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
        return Ok(Action::await_change());
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    remove_finalizer(&api, &pv, finalizers)
        .await
        .map_err(|source| Error::Api {
            what: format!("removing {PV_FINALIZER} from {}", pv.name_any()),
            source,
        })?;
    info!(volume = %pv.name_any(), "volume not bound; removed {PV_FINALIZER}");
    ctx.backoff.succeeded(&pv.name_any());
    Ok(Action::await_change())
}

fn error_policy<K: Resource>(obj: Arc<K>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    );
    let delay = ctx.backoff.failed(&key);
    warn!(object = %key, error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

/// Runs the PVC protection controller; a pod that goes (or finishes)
/// brings its claims back for another look.
pub(crate) fn start_pvc(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let (_pods, pod_events) = ctx.informers.pods.subscribe(|change: &Changed<Pod>| {
            let pod = change.latest();
            let ended = matches!(change, Changed::Deleted(_)) || !pod_uses_claims(pod);
            let ns = pod.namespace().unwrap_or_default();
            let claims = if ended { claims_of(pod) } else { Vec::new() };
            claims
                .into_iter()
                .map(move |c| ObjectRef::<PersistentVolumeClaim>::new(&c).within(&ns))
                .collect::<Vec<_>>()
        });
        let state = Arc::new(Ctx {
            client: ctx.client.clone(),
            backoff: Backoff::default(),
        });
        crate::framework::controller(
            Api::<PersistentVolumeClaim>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
        .reconcile_on(pod_events)
        .with_config(controller::Config::default().concurrency(1))
        .graceful_shutdown_on(ctx.stopped())
        .run(sync_claim, error_policy, state)
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "pvc protection");
            }
        })
        .await;
    })
}

/// Runs the PV protection controller.
pub(crate) fn start_pv(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let state = Arc::new(Ctx {
            client: ctx.client.clone(),
            backoff: Backoff::default(),
        });
        crate::framework::controller(
            Api::<PersistentVolume>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
        .with_config(controller::Config::default().concurrency(1))
        .graceful_shutdown_on(ctx.stopped())
        .run(sync_volume, error_policy, state)
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "pv protection");
            }
        })
        .await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_uses_its_claims_and_its_ephemeral_volumes_claims() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0"},
            "spec": {"nodeName": "n1", "containers": [], "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "tmp", "emptyDir": {}},
            ]},
        }))
        .unwrap();
        assert_eq!(claims_of(&pod), ["data-web-0", "web-0-scratch"]);
        assert!(pod_uses_claims(&pod));
        let unscheduled = Pod {
            spec: pod
                .spec
                .clone()
                .map(|s| k8s_openapi::api::core::v1::PodSpec {
                    node_name: None,
                    ..s
                }),
            ..pod
        };
        assert!(!pod_uses_claims(&unscheduled));
    }

    #[test]
    fn only_our_finalizer_is_removed() {
        let meta = kube::api::ObjectMeta {
            finalizers: Some(vec!["a".into(), PVC_FINALIZER.into()]),
            ..Default::default()
        };
        assert_eq!(without(&meta, PVC_FINALIZER), Some(vec!["a".to_owned()]));
        assert_eq!(without(&meta, PV_FINALIZER), None);
    }
}
