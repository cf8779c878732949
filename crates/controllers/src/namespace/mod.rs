//! A namespace being deleted loses everything in it, then its `kubernetes`
//! finalizer, after which the API server removes it (upstream's namespace
//! controller). Content still terminating (pods within their grace period,
//! objects held by finalizers) is waited for, and the namespace's status
//! conditions say what is left.

mod conditions;
mod deleter;
mod discovery;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{self, Action};
use kube::runtime::watcher;
use tracing::{debug, info, warn};

use crate::framework::{Backoff, Context};
use deleter::{Deleter, Outcome};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "namespace-controller";

struct Ctx {
    deleter: Deleter,
    sync_period: Duration,
    backoff: Backoff,
}

/// When to look at a namespace again after a pass.
pub(crate) fn requeue_after(outcome: &Outcome, sync_period: Duration) -> Action {
    match outcome {
        Outcome::Done => Action::requeue(sync_period),
        // Upstream: half the estimate, plus a second.
        Outcome::Remaining { estimate_seconds } => {
            Action::requeue(Duration::from_secs((*estimate_seconds / 2 + 1) as u64))
        }
    }
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, deleter::Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::requeue(ctx.sync_period));
    }
    let name = ns.name_any();
    let outcome = ctx.deleter.delete(&name).await?;
    match &outcome {
        Outcome::Done => ctx.backoff.succeeded(&name),
        Outcome::Remaining { estimate_seconds } => {
            info!(namespace = %name, estimate_seconds, "content remains; waiting for it to terminate");
        }
    }
    Ok(requeue_after(&outcome, ctx.sync_period))
}

fn error_policy(ns: Arc<Namespace>, error: &deleter::Error, ctx: Arc<Ctx>) -> Action {
    let delay = ctx.backoff.failed(&ns.name_any());
    warn!(namespace = %ns.name_any(), error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "namespace deletion pass failed");
    Action::requeue(delay)
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let state = Arc::new(Ctx {
            deleter: Deleter::new(client.clone()),
            sync_period: ctx.settings.namespace_sync_period,
            backoff: Backoff::default(),
        });
        crate::framework::controller(Api::<Namespace>::all(client), watcher::Config::default())
            .with_config(
                controller::Config::default()
                    .concurrency(ctx.settings.concurrent_namespace_syncs.max(1)),
            )
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

    #[test]
    fn remaining_content_is_looked_at_again_after_half_its_estimate() {
        let period = Duration::from_secs(300);
        assert_eq!(
            requeue_after(
                &Outcome::Remaining {
                    estimate_seconds: 30
                },
                period
            ),
            Action::requeue(Duration::from_secs(16))
        );
        assert_eq!(
            requeue_after(
                &Outcome::Remaining {
                    estimate_seconds: 1
                },
                period
            ),
            Action::requeue(Duration::from_secs(1))
        );
        assert_eq!(
            requeue_after(&Outcome::Done, period),
            Action::requeue(period)
        );
    }
}
