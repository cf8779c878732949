//! Deleting what a Terminating namespace holds, as upstream's
//! `namespacedResourcesDeleter`: every deletable namespaced resource is
//! deleted (a collection at a time where the resource allows it), what
//! remains is counted into the namespace's status conditions, and once
//! nothing remains the `kubernetes` finalizer is removed through the
//! `finalize` subresource, after which the API server deletes the namespace.

use std::collections::BTreeMap;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, NamespaceStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use tracing::{debug, info, warn};

use super::conditions::{ConditionUpdater, aggregate};
use super::discovery::{self, Deletable};
use crate::framework;

/// The finalizer this controller owns in `spec.finalizers`.
pub(crate) const FINALIZER: &str = "kubernetes";
/// How long to wait for objects held only by finalizers (upstream's
/// `finalizerEstimateSeconds`).
const FINALIZER_ESTIMATE_SECONDS: i64 = 15;
/// How many resources are deleted at once.
const PARALLEL_RESOURCES: usize = 8;
/// Attempts at a namespace write that loses to other writers.
const CONFLICT_RETRIES: usize = 5;

/// Why a pass over a namespace did not finish it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("reading namespace {namespace}")]
    Get {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing namespace {namespace}")]
    Write {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    /// Content deletion failed somewhere (discovery, a delete, leftovers).
    #[error("deleting the content of namespace {namespace}: {message}")]
    Content { namespace: String, message: String },
}

/// Where a namespace stands after a pass.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Gone, not being deleted, or finalized: nothing more to do.
    Done,
    /// Content is still terminating (graceful pods, finalizers); look again
    /// after about this many seconds.
    Remaining { estimate_seconds: i64 },
}

/// What deleting one resource's objects left behind.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Leftovers {
    /// Seconds until what remains should be gone.
    pub estimate_seconds: i64,
    pub remaining: usize,
    /// Finalizer → how many remaining objects carry it.
    pub finalizers: BTreeMap<String, usize>,
}

/// The namespace's content, deleted through the API server.
pub(crate) struct Deleter {
    client: Client,
}

/// The longest grace period of the namespace's non-terminal pods, less the
/// time since the namespace's deletion began (upstream's
/// estimateGracefulTermination): how long kubelets may still take.
pub(crate) fn pod_grace_estimate(pods: &[Pod], deleted_at: Timestamp, now: Timestamp) -> i64 {
    let estimate = pods
        .iter()
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .filter_map(|p| p.spec.as_ref()?.termination_grace_period_seconds)
        .max()
        .unwrap_or(0);
    let elapsed = now.as_second() - deleted_at.as_second();
    if elapsed >= estimate { 0 } else { estimate }
}

/// Judges what is left of one resource after its deletion: remaining
/// objects are expected while an estimate runs or finalizers hold them;
/// otherwise they should not be there (an error, retried with backoff).
pub(crate) fn judge(
    estimate_seconds: i64,
    remaining_finalizers: &[Vec<String>],
    namespace: &str,
    resource: &Deletable,
) -> (Leftovers, Option<String>) {
    if remaining_finalizers.is_empty() {
        return (Leftovers::default(), None);
    }
    let mut finalizers = BTreeMap::new();
    for f in remaining_finalizers.iter().flatten() {
        *finalizers.entry(f.clone()).or_insert(0) += 1;
    }
    let remaining = remaining_finalizers.len();
    if estimate_seconds != 0 {
        return (
            Leftovers {
                estimate_seconds,
                remaining,
                finalizers,
            },
            None,
        );
    }
    if !finalizers.is_empty() {
        return (
            Leftovers {
                estimate_seconds: FINALIZER_ESTIMATE_SECONDS,
                remaining,
                finalizers,
            },
            None,
        );
    }
    (
        Leftovers {
            estimate_seconds,
            remaining,
            finalizers,
        },
        Some(format!(
            "unexpected items still remain in namespace: {namespace} for gvr: {}",
            resource.gvr()
        )),
    )
}

/// The namespace with `kubernetes` gone from spec.finalizers (sorted, as
/// upstream's set).
pub(crate) fn without_finalizer(ns: &Namespace) -> Namespace {
    let mut finalized = ns.clone();
    let spec = finalized.spec.get_or_insert_with(Default::default);
    let mut rest: Vec<String> = spec
        .finalizers
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect();
    rest.sort();
    rest.dedup();
    spec.finalizers = Some(rest);
    finalized
}

/// Whether this controller's finalizer is gone.
pub(crate) fn finalized(ns: &Namespace) -> bool {
    !ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

impl Deleter {
    pub fn new(client: Client) -> Self {
        Deleter { client }
    }

    fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.client.clone())
    }

    /// One pass over namespace `name`.
    pub async fn delete(&self, name: &str) -> Result<Outcome, Error> {
        let Some(ns) = self.get(name).await? else {
            return Ok(Outcome::Done);
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(Outcome::Done);
        }
        let Some(ns) = self.mark_terminating(ns).await? else {
            return Ok(Outcome::Done);
        };
        if finalized(&ns) {
            return Ok(Outcome::Done);
        }
        let estimate_seconds = self.delete_all_content(&ns).await?;
        if estimate_seconds > 0 {
            return Ok(Outcome::Remaining { estimate_seconds });
        }
        self.finalize(ns).await?;
        info!(namespace = name, "namespace content deleted; finalized");
        Ok(Outcome::Done)
    }

    async fn get(&self, name: &str) -> Result<Option<Namespace>, Error> {
        self.namespaces()
            .get_opt(name)
            .await
            .map_err(|source| Error::Get {
                namespace: name.to_owned(),
                source,
            })
    }

    /// Sets phase Terminating if it is not yet (the API server normally
    /// already has); `None` when the namespace is gone.
    async fn mark_terminating(&self, mut ns: Namespace) -> Result<Option<Namespace>, Error> {
        let name = ns.metadata.name.clone().unwrap_or_default();
        for _ in 0..CONFLICT_RETRIES {
            if ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating") {
                return Ok(Some(ns));
            }
            let mut terminating = ns.clone();
            terminating
                .status
                .get_or_insert_with(NamespaceStatus::default)
                .phase = Some("Terminating".into());
            match self
                .namespaces()
                .replace_status(&name, &PostParams::default(), &terminating)
                .await
            {
                Ok(updated) => return Ok(Some(updated)),
                Err(e) if framework::is_not_found(&e) => return Ok(None),
                Err(e) if framework::is_conflict(&e) => match self.get(&name).await? {
                    Some(latest) => ns = latest,
                    None => return Ok(None),
                },
                Err(source) => {
                    return Err(Error::Write {
                        namespace: name,
                        source,
                    });
                }
            }
        }
        Ok(Some(ns))
    }

    /// Removes the `kubernetes` finalizer through `namespaces/{name}/finalize`.
    async fn finalize(&self, mut ns: Namespace) -> Result<(), Error> {
        let name = ns.metadata.name.clone().unwrap_or_default();
        let mut last = None;
        for _ in 0..CONFLICT_RETRIES {
            let body = without_finalizer(&ns);
            match self
                .namespaces()
                .replace_subresource("finalize", &name, &PostParams::default(), &body)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if framework::is_not_found(&e) => return Ok(()),
                Err(e) if framework::is_conflict(&e) => {
                    last = Some(e);
                    match self.get(&name).await? {
                        Some(latest) => ns = latest,
                        None => return Ok(()),
                    }
                }
                Err(source) => {
                    return Err(Error::Write {
                        namespace: name,
                        source,
                    });
                }
            }
        }
        Err(Error::Write {
            namespace: name,
            source: last.expect("a conflict was seen"),
        })
    }

    /// Deletes everything in the namespace once, records the conditions, and
    /// answers how many seconds what remains should still take.
    async fn delete_all_content(&self, ns: &Namespace) -> Result<i64, Error> {
        let namespace = ns.metadata.name.clone().unwrap_or_default();
        let deleted_at = ns
            .metadata
            .deletion_timestamp
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0);
        let mut errors: Vec<String> = Vec::new();
        let mut updater = ConditionUpdater::default();
        let resources = match discovery::discover(&self.client).await {
            Ok(found) => {
                if !found.failed.is_empty() {
                    updater.discovery_failed(&found.failed);
                    errors.extend(
                        found
                            .failed
                            .iter()
                            .map(|(gv, e)| format!("discovering {gv}: {e}")),
                    );
                }
                found.resources
            }
            Err(e) => {
                let message = format!("discovering the API's resources: {e}");
                updater.discovery_error(message.clone());
                errors.push(message);
                Vec::new()
            }
        };

        let results: Vec<(Deletable, Leftovers, Option<String>)> = stream::iter(resources)
            .map(|r| {
                let namespace = namespace.clone();
                async move {
                    let (left, error) = self.delete_resource(&r, &namespace, deleted_at).await;
                    (r, left, error)
                }
            })
            .buffer_unordered(PARALLEL_RESOURCES)
            .collect()
            .await;

        let mut estimate = 0;
        let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
        let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
        let mut content_errors = Vec::new();
        for (resource, left, error) in results {
            content_errors.extend(error);
            estimate = estimate.max(left.estimate_seconds);
            if left.remaining > 0 {
                *remaining.entry(resource.group_resource()).or_insert(0) += left.remaining;
                for (f, n) in left.finalizers {
                    *finalizers.entry(f).or_insert(0) += n;
                }
            }
        }
        if !content_errors.is_empty() {
            content_errors.sort();
            updater.content_deletion_failed(&content_errors);
            errors.extend(content_errors);
        }
        updater.content_totals(&remaining, &finalizers);

        // The conditions are written whenever they change, so a namespace
        // that was stuck says so, and says when it no longer is.
        let mut updated = ns.clone();
        let conditions = updated
            .status
            .get_or_insert_with(NamespaceStatus::default)
            .conditions
            .get_or_insert_with(Vec::new);
        if updater.apply(conditions, &Time(Timestamp::now()))
            && let Err(e) = self
                .namespaces()
                .replace_status(&namespace, &PostParams::default(), &updated)
                .await
        {
            warn!(%namespace, error = %e, "could not update the namespace's status conditions");
        }
        if !errors.is_empty() {
            return Err(Error::Content {
                namespace,
                message: aggregate(&errors),
            });
        }
        Ok(estimate)
    }

    /// Deletes one resource's objects in the namespace and reports what is
    /// left, with an error message when something failed.
    async fn delete_resource(
        &self,
        r: &Deletable,
        namespace: &str,
        deleted_at: Timestamp,
    ) -> (Leftovers, Option<String>) {
        let failed = |estimate_seconds: i64, what: &str, e: kube::Error| {
            (
                Leftovers {
                    estimate_seconds,
                    ..Leftovers::default()
                },
                Some(format!("{what} {}: {e}", r.gvr())),
            )
        };
        let estimate = if (r.resource.group.as_str(), r.resource.plural.as_str()) == ("", "pods") {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            match pods.list(&ListParams::default()).await {
                Ok(list) => pod_grace_estimate(&list.items, deleted_at, Timestamp::now()),
                Err(e) => return failed(0, "estimating the graceful termination of", e),
            }
        } else {
            0
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &r.resource);
        // Dependents are left to the garbage collector, as upstream.
        let delete = DeleteParams::background();
        let mut each = !r.delete_collection;
        if r.delete_collection {
            match api.delete_collection(&delete, &ListParams::default()).await {
                Ok(_) => {}
                Err(e) if framework::is_method_not_supported(&e) || framework::is_not_found(&e) => {
                    each = true;
                }
                Err(e) => return failed(estimate, "deleting the collection of", e),
            }
        }
        if each && r.list {
            match api.list_metadata(&ListParams::default()).await {
                Ok(list) => {
                    for item in list.items {
                        let name = item.metadata.name.unwrap_or_default();
                        match api.delete(&name, &delete).await {
                            Ok(_) => {}
                            Err(e) if framework::is_not_found(&e) => {}
                            Err(e) => return failed(estimate, "deleting an object of", e),
                        }
                    }
                }
                Err(e) if framework::is_method_not_supported(&e) || framework::is_not_found(&e) => {
                }
                Err(e) => return failed(estimate, "listing", e),
            }
        }
        if !r.list {
            return (
                Leftovers {
                    estimate_seconds: estimate,
                    ..Leftovers::default()
                },
                None,
            );
        }
        let left = match api.list_metadata(&ListParams::default()).await {
            Ok(list) => list,
            Err(e) if framework::is_method_not_supported(&e) || framework::is_not_found(&e) => {
                return (
                    Leftovers {
                        estimate_seconds: estimate,
                        ..Leftovers::default()
                    },
                    None,
                );
            }
            Err(e) => return failed(estimate, "listing what remains of", e),
        };
        let finalizers: Vec<Vec<String>> = left
            .items
            .into_iter()
            .map(|i| i.metadata.finalizers.unwrap_or_default())
            .collect();
        if !finalizers.is_empty() {
            debug!(%namespace, resource = %r.gvr(), remaining = finalizers.len(), "objects remain");
        }
        judge(estimate, &finalizers, namespace, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NamespaceSpec, PodSpec, PodStatus};
    use kube::discovery::ApiResource;

    fn pod(grace: i64, phase: &str) -> Pod {
        Pod {
            spec: Some(PodSpec {
                termination_grace_period_seconds: Some(grace),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn configmaps() -> Deletable {
        Deletable {
            resource: ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                plural: "configmaps".into(),
            },
            delete_collection: true,
            list: true,
        }
    }

    #[test]
    fn the_pod_estimate_is_the_longest_grace_of_running_pods_less_the_time_elapsed() {
        let t0 = Timestamp::from_second(1000).unwrap();
        let pods = [pod(30, "Running"), pod(60, "Succeeded"), pod(10, "Pending")];
        assert_eq!(pod_grace_estimate(&pods, t0, t0), 30);
        assert_eq!(
            pod_grace_estimate(&pods, t0, Timestamp::from_second(1029).unwrap()),
            30
        );
        assert_eq!(
            pod_grace_estimate(&pods, t0, Timestamp::from_second(1030).unwrap()),
            0
        );
        assert_eq!(pod_grace_estimate(&[], t0, t0), 0);
    }

    #[test]
    fn nothing_left_is_done() {
        assert_eq!(
            judge(30, &[], "ns", &configmaps()),
            (Leftovers::default(), None)
        );
    }

    #[test]
    fn leftovers_under_an_estimate_are_expected() {
        let (left, error) = judge(30, &[vec![], vec![]], "ns", &configmaps());
        assert_eq!(error, None);
        assert_eq!(left.remaining, 2);
        assert_eq!(left.estimate_seconds, 30);
    }

    #[test]
    fn leftovers_held_by_finalizers_get_the_finalizer_estimate() {
        let (left, error) = judge(0, &[vec!["a/b".into()], vec![]], "ns", &configmaps());
        assert_eq!(error, None);
        assert_eq!(left.estimate_seconds, FINALIZER_ESTIMATE_SECONDS);
        assert_eq!(left.finalizers, BTreeMap::from([("a/b".into(), 1)]));
    }

    #[test]
    fn unexplained_leftovers_are_an_error() {
        let (left, error) = judge(0, &[vec![]], "ns", &configmaps());
        assert_eq!(left.remaining, 1);
        assert_eq!(
            error.as_deref(),
            Some(
                "unexpected items still remain in namespace: ns for gvr: /v1, Resource=configmaps"
            )
        );
    }

    #[test]
    fn finalizing_removes_only_the_kubernetes_finalizer() {
        let ns = Namespace {
            spec: Some(NamespaceSpec {
                finalizers: Some(vec!["z/other".into(), FINALIZER.into(), "a/other".into()]),
            }),
            ..Namespace::default()
        };
        assert!(!finalized(&ns));
        let done = without_finalizer(&ns);
        assert_eq!(
            done.spec.as_ref().unwrap().finalizers.as_deref(),
            Some(&["a/other".to_owned(), "z/other".to_owned()][..])
        );
        assert!(finalized(&done));
        // The input is untouched.
        assert_eq!(ns.spec.unwrap().finalizers.unwrap().len(), 3);
    }
}
