//! Every active namespace holds a ConfigMap `kube-root-ca.crt` whose `ca.crt`
//! is the cluster's root CA bundle and which carries upstream's
//! `kubernetes.io/description` annotation; a deleted one is created again, a
//! changed one is put right. (Upstream's root-ca-cert-publisher: pods'
//! projected service-account volumes read this ConfigMap.)

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

use crate::framework::{self, Backoff, Context};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "root-ca-certificate-publisher-controller";
/// The ConfigMap published in every namespace.
pub(crate) const CONFIGMAP: &str = "kube-root-ca.crt";
/// Its one key.
pub(crate) const KEY: &str = "ca.crt";
pub(crate) const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub(crate) const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Why a namespace could not be brought to the invariant.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("creating {CONFIGMAP} in namespace {namespace}")]
    Create {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating {CONFIGMAP} in namespace {namespace}")]
    Update {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("the ConfigMap cache stopped")]
    CacheGone,
}

/// What a namespace's `kube-root-ca.crt` needs.
#[derive(Debug, PartialEq)]
pub(crate) enum Change {
    None,
    Create(ConfigMap),
    /// The cached ConfigMap, copied and put right.
    Update(ConfigMap),
}

struct Ctx {
    client: Client,
    ca: String,
    configmaps: Store<ConfigMap>,
    resync: std::time::Duration,
    backoff: Backoff,
}

/// Compares the cached ConfigMap (if any) with what it must be.
pub(crate) fn change(existing: Option<&ConfigMap>, ca: &str) -> Change {
    let data = BTreeMap::from([(KEY.to_owned(), ca.to_owned())]);
    let Some(existing) = existing else {
        return Change::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIGMAP.into()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_owned(),
                    DESCRIPTION.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        });
    };
    let described = existing
        .annotations()
        .get(DESCRIPTION_ANNOTATION)
        .is_some_and(|d| !d.is_empty());
    if existing.data.as_ref() == Some(&data) && described {
        return Change::None;
    }
    // Never the cached object itself: a copy, then the write.
    let mut fixed = existing.clone();
    fixed.data = Some(data);
    fixed
        .annotations_mut()
        .insert(DESCRIPTION_ANNOTATION.to_owned(), DESCRIPTION.to_owned());
    Change::Update(fixed)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = ns.name_any();
    // Nothing is published into a namespace being deleted (its creates are
    // refused), as upstream only follows active namespaces.
    if ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
    {
        return Ok(Action::await_change());
    }
    ctx.configmaps
        .wait_until_ready()
        .await
        .map_err(|_| Error::CacheGone)?;
    let cached = ctx.configmaps.get(&ObjectRef::new(CONFIGMAP).within(&name));
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    match change(cached.as_deref(), &ctx.ca) {
        Change::None => {}
        Change::Create(cm) => match api.create(&PostParams::default(), &cm).await {
            Ok(_) => info!(namespace = %name, "published {CONFIGMAP}"),
            // The namespace went away or started terminating: nothing to do.
            Err(e) if framework::is_not_found(&e) || framework::is_namespace_terminating(&e) => {}
            Err(source) => {
                return Err(Error::Create {
                    namespace: name,
                    source,
                });
            }
        },
        Change::Update(cm) => match api.replace(CONFIGMAP, &PostParams::default(), &cm).await {
            Ok(_) => info!(namespace = %name, "put {CONFIGMAP} right"),
            Err(source) => {
                return Err(Error::Update {
                    namespace: name,
                    source,
                });
            }
        },
    }
    ctx.backoff.succeeded(&name);
    Ok(Action::requeue(ctx.resync))
}

fn error_policy(ns: Arc<Namespace>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let delay = ctx.backoff.failed(&ns.name_any());
    warn!(namespace = %ns.name_any(), error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    Action::requeue(delay)
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (configmaps, writer) = reflector::store();
        // Only the published ConfigMaps are cached, not every ConfigMap.
        let published = watcher(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP}")),
        )
        .default_backoff()
        .modify(crate::framework::drop_managed_fields)
        .reflect(writer)
        .touched_objects();
        let state = Arc::new(Ctx {
            client: client.clone(),
            ca: ctx.settings.root_ca.clone(),
            configmaps,
            resync: ctx.resync_period(),
            backoff: Backoff::default(),
        });
        crate::framework::controller(Api::<Namespace>::all(client), watcher::Config::default())
            .watches_stream(published, |cm: ConfigMap| {
                cm.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
            })
            .with_config(controller::Config::default().concurrency(1))
            .graceful_shutdown_on(ctx.stopped())
            .run(reconcile, error_policy, state)
            .for_each(|result| async move {
                if let Err(e) = result {
                    debug!(error = %e, "reconcile");
                }
            })
            .await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: Option<(&str, &str)>, annotation: Option<&str>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIGMAP.into()),
                namespace: Some("team".into()),
                resource_version: Some("7".into()),
                annotations: annotation
                    .map(|a| BTreeMap::from([(DESCRIPTION_ANNOTATION.to_owned(), a.to_owned())])),
                ..ObjectMeta::default()
            },
            data: data.map(|(k, v)| BTreeMap::from([(k.to_owned(), v.to_owned())])),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn a_missing_configmap_is_created_with_the_ca_and_the_description() {
        let Change::Create(created) = change(None, "PEM") else {
            panic!("expected a create");
        };
        assert_eq!(created.metadata.name.as_deref(), Some(CONFIGMAP));
        assert_eq!(created.data.unwrap()[KEY], "PEM");
        assert_eq!(
            created.metadata.annotations.unwrap()[DESCRIPTION_ANNOTATION],
            DESCRIPTION
        );
    }

    #[test]
    fn a_correct_configmap_is_left_alone() {
        let current = cm(Some((KEY, "PEM")), Some("anything non-empty"));
        assert_eq!(change(Some(&current), "PEM"), Change::None);
    }

    #[test]
    fn changed_data_is_replaced_on_a_copy_keeping_the_resource_version() {
        let current = cm(Some((KEY, "OLD")), Some(DESCRIPTION));
        let Change::Update(fixed) = change(Some(&current), "PEM") else {
            panic!("expected an update");
        };
        assert_eq!(
            fixed.data.unwrap(),
            BTreeMap::from([(KEY.into(), "PEM".into())])
        );
        assert_eq!(fixed.metadata.resource_version.as_deref(), Some("7"));
        // The cached object is untouched.
        assert_eq!(current.data.unwrap()[KEY], "OLD");
    }

    #[test]
    fn extra_keys_and_a_missing_description_are_put_right() {
        let mut current = cm(Some((KEY, "PEM")), None);
        current
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        let Change::Update(fixed) = change(Some(&current), "PEM") else {
            panic!("expected an update");
        };
        assert_eq!(fixed.data.unwrap().len(), 1);
        assert_eq!(
            fixed.metadata.annotations.unwrap()[DESCRIPTION_ANNOTATION],
            DESCRIPTION
        );
    }
}
