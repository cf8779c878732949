//! Endpoints written by hand (or by another controller) for a Service
//! without a selector are mirrored into EndpointSlices, so that consumers of
//! slices (kube-proxy) see them too (upstream's
//! EndpointSliceMirroringController): ready and not-ready addresses become
//! endpoints with their `ready` condition, one slice per address type and
//! port set, at most 1000 addresses per subset and 100 per slice, labelled
//! `endpointslice.kubernetes.io/managed-by:
//! endpointslicemirroring-controller.k8s.io` and owned by the Endpoints.
//! Endpoints the Endpoints controller manages carry
//! `endpointslice.kubernetes.io/skip-mirror: "true"` and are left alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::api::Api;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tracing::{debug, warn};

use super::slices::{
    self, Desired, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, Template, Tracker, ports_key,
};
use super::{LEADER_ANNOTATION, SKIP_MIRROR_LABEL};
use crate::cache::{self, Cache, Changed};
use crate::framework::{self, Backoff, Context};
use crate::pods;

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "endpointslice-mirroring-controller";
/// `endpointslice.kubernetes.io/managed-by` of mirrored slices.
pub(crate) const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
/// Upstream's `--mirroring-max-endpoints-per-subset`.
const MAX_PER_SUBSET: usize = 1000;
/// Mirrored slices hold at most this many endpoints.
const MAX_PER_SLICE: usize = 100;

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{verb} a mirrored EndpointSlice of {namespace}/{name}")]
    Write {
        verb: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Whether `endpoints` are mirrored: its Service exists without a
/// selector, and neither the skip-mirror label nor a leader-election
/// annotation says otherwise.
pub(crate) fn should_mirror(endpoints: &Endpoints, service: Option<&Service>) -> bool {
    let Some(svc) = service else {
        return false;
    };
    let selector = svc.spec.as_ref().and_then(|s| s.selector.as_ref());
    selector.is_none_or(BTreeMap::is_empty)
        && endpoints
            .labels()
            .get(SKIP_MIRROR_LABEL)
            .map(String::as_str)
            != Some("true")
        && !endpoints.annotations().contains_key(LEADER_ANNOTATION)
}

/// The endpoints the Endpoints' subsets give, by address type and port set.
pub(crate) fn desired(endpoints: &Endpoints) -> Desired {
    let mut out = Desired::new();
    for subset in endpoints.subsets.iter().flatten() {
        let mut ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        ports.sort_by_key(|p| (p.name.clone(), p.port, p.protocol.clone()));
        let key = ports_key(&ports);
        let addresses = subset
            .addresses
            .iter()
            .flatten()
            .map(|a| (a, true))
            .chain(
                subset
                    .not_ready_addresses
                    .iter()
                    .flatten()
                    .map(|a| (a, false)),
            )
            .take(MAX_PER_SUBSET);
        for (a, ready) in addresses {
            let Ok(ip) = a.ip.parse::<std::net::IpAddr>() else {
                continue;
            };
            let address_type = if ip.is_ipv6() { "IPv6" } else { "IPv4" };
            let endpoint = Endpoint {
                addresses: vec![a.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    ..EndpointConditions::default()
                }),
                hostname: a.hostname.clone().filter(|h| !h.is_empty()),
                node_name: a.node_name.clone(),
                target_ref: a.target_ref.clone(),
                ..Endpoint::default()
            };
            out.entry((address_type.to_owned(), key.clone()))
                .or_insert_with(|| (ports.clone(), Vec::new()))
                .1
                .push(endpoint);
        }
    }
    for (_, endpoints) in out.values_mut() {
        endpoints.sort_by_key(slices::endpoint_key);
    }
    out
}

/// What the mirrored slices of `endpoints` carry.
pub(crate) fn template(endpoints: &Endpoints) -> Template {
    let name = endpoints.name_any();
    let mut labels = endpoints.labels().clone();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    Template {
        generate_name: slices::generate_name(&name),
        namespace: endpoints.namespace(),
        labels,
        owner: pods::controller_ref("v1", "Endpoints", &endpoints.metadata),
        placeholder: None,
    }
}

struct Ctx {
    client: Client,
    services: Cache<Service>,
    slices: Cache<EndpointSlice>,
    tracker: Arc<Tracker>,
    resync: Duration,
    backoff: Backoff,
}

async fn reconcile(endpoints: Arc<Endpoints>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.services.ready().await;
    ctx.slices.ready().await;
    let namespace = endpoints.namespace().unwrap_or_default();
    let name = endpoints.name_any();
    let key = format!("{namespace}/{name}");
    let existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .list(&namespace)
        .into_iter()
        .filter(|s| s.labels().get(SERVICE_NAME_LABEL) == Some(&name))
        // Only slices this controller made (owned by an Endpoints): the API
        // server's own slice for `default/kubernetes` carries the label too.
        .filter(|s| pods::controller_of(&s.metadata).is_some_and(|r| r.kind == "Endpoints"))
        .collect();
    if !ctx.tracker.caught_up(&key, &existing) {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let service = ctx.services.get(&namespace, &name);
    let wanted = if should_mirror(&endpoints, service.as_deref())
        && endpoints.metadata.deletion_timestamp.is_none()
    {
        desired(&endpoints)
    } else {
        Desired::new()
    };
    let plan = slices::plan(&template(&endpoints), wanted, &existing, MAX_PER_SLICE);
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    let failed = |verb, source| Error::Write {
        verb,
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    };
    plan.apply(&api, &ctx.tracker, &key)
        .await
        .map_err(|(verb, e)| failed(verb, e))?;
    ctx.backoff.succeeded(&key);
    Ok(Action::requeue(ctx.resync))
}

fn error_policy(endpoints: Arc<Endpoints>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = format!(
        "{}/{}",
        endpoints.namespace().unwrap_or_default(),
        endpoints.name_any()
    );
    let delay = ctx.backoff.failed(&key);
    let Error::Write { source, .. } = error;
    if framework::is_conflict(source) {
        debug!(endpoints = %key, error = %error, retry_in = ?delay, "stale cache; retrying");
    } else {
        warn!(endpoints = %key, error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    }
    Action::requeue(delay)
}

/// The Endpoints of the same name as a changed Service or mirrored slice.
fn same_name<K: kube::Resource>(obj: &K, name: Option<&String>) -> Vec<ObjectRef<Endpoints>> {
    name.map(|n| {
        vec![ObjectRef::new(n).within(obj.meta().namespace.as_deref().unwrap_or_default())]
    })
    .unwrap_or_default()
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let services = Cache::default();
        let service_events = cache::follow(
            services.clone(),
            watcher(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff(),
            |change: &Changed<Service>| {
                let svc = change.latest();
                same_name(&**svc, svc.metadata.name.as_ref())
            },
        );
        let slices = Cache::default();
        let tracker = Arc::new(Tracker::default());
        let slice_events = {
            let tracker = tracker.clone();
            cache::follow(
                slices.clone(),
                watcher(
                    Api::<EndpointSlice>::all(client.clone()),
                    watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
                )
                .default_backoff(),
                move |change: &Changed<EndpointSlice>| {
                    if let Changed::Deleted(s) = change {
                        tracker.gone(s.metadata.uid.as_deref().unwrap_or_default());
                    }
                    let s = change.latest();
                    same_name(&**s, s.labels().get(SERVICE_NAME_LABEL))
                },
            )
        };
        let state = Arc::new(Ctx {
            client: client.clone(),
            services,
            slices,
            tracker,
            resync: ctx.resync_period(),
            backoff: Backoff::default(),
        });
        crate::framework::controller(Api::<Endpoints>::all(client), watcher::Config::default())
            .reconcile_on(service_events)
            .reconcile_on(slice_events)
            .with_config(
                controller::Config::default().concurrency(
                    ctx.settings
                        .mirroring_concurrent_service_endpoint_syncs
                        .max(1),
                ),
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
    use serde_json::json;

    fn endpoints(labels: serde_json::Value) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"name": "ext", "namespace": "ns", "uid": "ep-uid", "labels": labels},
            "subsets": [{
                "addresses": [{"ip": "192.0.2.1", "nodeName": "n1"}, {"ip": "2001:db8::1"}],
                "notReadyAddresses": [{"ip": "192.0.2.2"}, {"ip": "not-an-ip"}],
                "ports": [{"name": "http", "port": 80}],
            }],
        }))
        .unwrap()
    }

    fn service(selector: Option<serde_json::Value>) -> Service {
        let mut spec = json!({"ports": [{"port": 80}]});
        if let Some(s) = selector {
            spec["selector"] = s;
        }
        serde_json::from_value(
            json!({"metadata": {"name": "ext", "namespace": "ns"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn only_endpoints_of_a_service_without_selector_are_mirrored() {
        let e = endpoints(json!({}));
        assert!(should_mirror(&e, Some(&service(None))));
        assert!(should_mirror(&e, Some(&service(Some(json!({}))))));
        assert!(!should_mirror(
            &e,
            Some(&service(Some(json!({"app": "x"}))))
        ));
        assert!(!should_mirror(&e, None));
        let skipped = endpoints(json!({SKIP_MIRROR_LABEL: "true"}));
        assert!(!should_mirror(&skipped, Some(&service(None))));
    }

    #[test]
    fn addresses_become_endpoints_per_address_type_with_their_readiness() {
        let d = desired(&endpoints(json!({})));
        let v4 = d.iter().find(|((t, _), _)| t == "IPv4").unwrap().1;
        let v6 = d.iter().find(|((t, _), _)| t == "IPv6").unwrap().1;
        assert_eq!(v4.0[0].port, Some(80));
        let ready: Vec<(String, Option<bool>)> =
            v4.1.iter()
                .map(|e| (e.addresses[0].clone(), e.conditions.as_ref().unwrap().ready))
                .collect();
        assert_eq!(
            ready,
            [
                ("192.0.2.1".into(), Some(true)),
                ("192.0.2.2".into(), Some(false))
            ]
        );
        assert_eq!(v4.1[0].node_name.as_deref(), Some("n1"));
        assert_eq!(v6.1.len(), 1);
    }

    #[test]
    fn mirrored_slices_carry_the_endpoints_labels_and_are_owned_by_it() {
        let t = template(&endpoints(json!({"team": "a"})));
        assert_eq!(t.labels["team"], "a");
        assert_eq!(t.labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(t.labels[SERVICE_NAME_LABEL], "ext");
        assert_eq!(
            (t.owner.kind.as_str(), t.owner.uid.as_str()),
            ("Endpoints", "ep-uid")
        );
        assert!(t.placeholder.is_none());
        let plan = slices::plan(&t, Desired::new(), &[], MAX_PER_SLICE);
        assert!(plan.create.is_empty(), "no placeholder for mirrored slices");
    }
}
