//! Every active namespace has a ServiceAccount named `default` (upstream's
//! ServiceAccountsController): pods that name no service account run as it.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

use crate::framework::{self, Backoff, Context};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "serviceaccount-controller";
/// The service accounts every namespace gets.
pub(crate) const ENSURED: &[&str] = &["default"];

/// Why a namespace could not be brought to the invariant.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("creating ServiceAccount {name} in namespace {namespace}")]
    Create {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the ServiceAccount cache stopped")]
    CacheGone,
}

struct Ctx {
    client: Client,
    accounts: Store<ServiceAccount>,
    resync: std::time::Duration,
    backoff: Backoff,
}

/// Whether the namespace is `Active` (only those get service accounts).
pub(crate) fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Active")
}

/// The service accounts of [`ENSURED`] the cache lacks in `namespace`.
pub(crate) fn missing<'a>(
    namespace: &str,
    has: impl Fn(&ObjectRef<ServiceAccount>) -> bool,
) -> Vec<&'a str> {
    ENSURED
        .iter()
        .copied()
        .filter(|name| !has(&ObjectRef::new(name).within(namespace)))
        .collect()
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = ns.name_any();
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    ctx.accounts
        .wait_until_ready()
        .await
        .map_err(|_| Error::CacheGone)?;
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    for name in missing(&namespace, |r| ctx.accounts.get(r).is_some()) {
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &account).await {
            Ok(_) => info!(%namespace, serviceaccount = name, "created service account"),
            Err(e)
                if framework::is_already_exists(&e)
                    || framework::is_not_found(&e)
                    || framework::is_namespace_terminating(&e) => {}
            Err(source) => {
                return Err(Error::Create {
                    namespace,
                    name: name.to_owned(),
                    source,
                });
            }
        }
    }
    ctx.backoff.succeeded(&namespace);
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
        let (accounts, writer) = reflector::store();
        let selector = ENSURED
            .iter()
            .map(|n| format!("metadata.name={n}"))
            .collect::<Vec<_>>()
            .join(",");
        let ensured = watcher(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default().fields(&selector),
        )
        .default_backoff()
        .modify(crate::framework::drop_managed_fields)
        .reflect(writer)
        .touched_objects();
        let state = Arc::new(Ctx {
            client: client.clone(),
            accounts,
            resync: ctx.resync_period(),
            backoff: Backoff::default(),
        });
        crate::framework::controller(Api::<Namespace>::all(client), watcher::Config::default())
            .watches_stream(ensured, |sa: ServiceAccount| {
                sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
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
    use k8s_openapi::api::core::v1::NamespaceStatus;

    fn ns(phase: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("team".into()),
                ..ObjectMeta::default()
            },
            status: Some(NamespaceStatus {
                phase: Some(phase.into()),
                ..NamespaceStatus::default()
            }),
            ..Namespace::default()
        }
    }

    #[test]
    fn only_active_namespaces_get_service_accounts() {
        assert!(is_active(&ns("Active")));
        assert!(!is_active(&ns("Terminating")));
    }

    #[test]
    fn the_default_account_is_missing_until_the_cache_has_it() {
        assert_eq!(missing("team", |_| false), ["default"]);
        assert!(
            missing("team", |r| r.name == "default"
                && r.namespace.as_deref() == Some("team"))
            .is_empty()
        );
    }
}
