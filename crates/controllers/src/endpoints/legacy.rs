//! The core/v1 Endpoints API (superseded by EndpointSlices upstream, still
//! served and still read by many clients).
//!
//! Every Service with a selector has an Endpoints object of its name listing
//! its pods' addresses (ready ones in `addresses`, the others in
//! `notReadyAddresses`, all ready with publishNotReadyAddresses) per
//! resolved port set, in upstream's canonical (repacked, sorted) layout,
//! labelled with the Service's labels and `endpointslice.kubernetes.io/skip-mirror`;
//! an Endpoints object whose Service is gone is deleted (upstream's
//! EndpointsController).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

use super::{
    LEADER_ANNOTATION, SKIP_MIRROR_LABEL, families, find_port, hostname_for, is_headless,
    labels_for, managed_selector, pod_ip, selected, services_for_pod_change,
    should_be_in_endpoints, target_ref,
};
use crate::cache::{Cache, Changed};
use crate::framework::{self, Backoff, Context};
use crate::pods;

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "endpoints-controller";
/// Endpoints list at most this many addresses (upstream's `maxCapacity`).
pub(crate) const MAX_CAPACITY: usize = 1000;
/// Set on Endpoints truncated to [`MAX_CAPACITY`].
pub(crate) const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("writing Endpoints {namespace}/{name}")]
    Write {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

struct Ctx {
    client: Client,
    pods: Cache<Pod>,
    endpoints: Cache<Endpoints>,
    resync: Duration,
    backoff: Backoff,
}

/// An address's identity: its IP and the pod behind it.
type AddressKey = (String, String);
/// A port's identity: name, number, protocol.
type PortKey = (String, i32, String);
/// A set of addresses with their readiness, as a key.
type AddressSetKey = Vec<(AddressKey, bool)>;
/// Addresses by identity, with their readiness.
type Addresses = BTreeMap<AddressKey, (EndpointAddress, bool)>;

fn address_key(a: &EndpointAddress) -> AddressKey {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
    )
}

/// Upstream's `RepackSubsets`: addresses offering the same ports share one
/// subset; addresses and ports sorted, subsets in a stable order.
pub(crate) fn repack(
    entries: Vec<(EndpointAddress, Option<EndpointPort>, bool)>,
) -> Vec<EndpointSubset> {
    // Port (None: no ports) → address key → (address, ready).
    let mut by_port: BTreeMap<Option<PortKey>, (Option<EndpointPort>, Addresses)> = BTreeMap::new();
    for (address, port, ready) in entries {
        let entry = by_port
            .entry(port.as_ref().map(port_key))
            .or_insert_with(|| (port.clone(), BTreeMap::new()));
        entry.1.insert(address_key(&address), (address, ready));
    }
    // Address set → ports.
    let mut by_addresses: BTreeMap<AddressSetKey, (Addresses, Vec<EndpointPort>)> = BTreeMap::new();
    for (_, (port, addresses)) in by_port {
        let key: AddressSetKey = addresses
            .iter()
            .map(|(k, (_, r))| (k.clone(), *r))
            .collect();
        let entry = by_addresses
            .entry(key)
            .or_insert_with(|| (addresses.clone(), Vec::new()));
        entry.1.extend(port);
    }
    let mut subsets: Vec<EndpointSubset> = by_addresses
        .into_values()
        .map(|(addresses, mut ports)| {
            ports.sort_by_key(port_key);
            let (ready, not_ready): (Vec<_>, Vec<_>) =
                addresses.into_values().partition(|(_, r)| *r);
            let list = |v: Vec<(EndpointAddress, bool)>| {
                (!v.is_empty()).then(|| v.into_iter().map(|(a, _)| a).collect())
            };
            EndpointSubset {
                addresses: list(ready),
                not_ready_addresses: list(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    subsets.sort_by_key(|s| serde_json::to_string(s).unwrap_or_default());
    subsets
}

/// The subsets the Service's selected pods give (upstream's
/// `syncService`).
pub(crate) fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let tolerate_unready = spec.publish_not_ready_addresses.unwrap_or(false);
    let family = families(svc).remove(0);
    let ports = spec.ports.unwrap_or_default();
    let mut entries = Vec::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = pod_ip(pod, &family) else {
            continue;
        };
        let address = EndpointAddress {
            ip,
            hostname: hostname_for(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
        };
        let ready = tolerate_unready || pods::is_ready(pod);
        if ports.is_empty() {
            if is_headless(svc) {
                entries.push((address, None, ready));
            }
            continue;
        }
        for port in &ports {
            let Some(number) = find_port(pod, port) else {
                continue;
            };
            entries.push((
                address.clone(),
                Some(EndpointPort {
                    name: port.name.clone().filter(|n| !n.is_empty()),
                    port: number,
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: port.app_protocol.clone(),
                }),
                ready,
            ));
        }
    }
    repack(entries)
}

/// Upstream's `truncateEndpoints`: at most [`MAX_CAPACITY`] addresses,
/// not-ready ones dropped first, each subset keeping its share. Answers
/// whether anything was dropped.
pub(crate) fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut room = max;
    for s in subsets.iter_mut() {
        let n = if truncate_ready {
            count(&s.addresses)
        } else {
            count(&s.not_ready_addresses)
        };
        let share = ((n as f64 / total as f64) * max as f64).ceil() as usize;
        let keep = share.min(room);
        let list = if truncate_ready {
            s.not_ready_addresses = None;
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        if let Some(l) = list.as_mut() {
            l.truncate(keep);
            room -= l.len();
        }
    }
    true
}

/// The Endpoints the Service should have, `current` (if any) copied and
/// changed; `None` when it is right already.
pub(crate) fn desired_endpoints(
    svc: &Service,
    pods: &[Arc<Pod>],
    current: Option<&Endpoints>,
) -> Option<Endpoints> {
    let mut subsets = desired_subsets(svc, pods);
    let truncated = truncate(&mut subsets);
    let labels = labels_for(svc, &[(SKIP_MIRROR_LABEL, "true")]);
    let mut annotations = current
        .and_then(|c| c.metadata.annotations.clone())
        .unwrap_or_default();
    annotations.remove(OVER_CAPACITY_ANNOTATION);
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
    }
    let subsets = (!subsets.is_empty()).then_some(subsets);
    if let Some(c) = current {
        let same_subsets = c.subsets.as_ref().filter(|s| !s.is_empty()) == subsets.as_ref();
        let same_labels = c.metadata.labels.clone().unwrap_or_default() == labels;
        let same_annotations = c.metadata.annotations.clone().unwrap_or_default() == annotations;
        if same_subsets && same_labels && same_annotations {
            return None;
        }
    }
    let mut endpoints = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        subsets: None,
    });
    endpoints.subsets = subsets;
    endpoints.metadata.labels = Some(labels);
    endpoints.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Some(endpoints)
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(selector) = managed_selector(&svc) else {
        return Ok(Action::await_change());
    };
    ctx.pods.ready().await;
    ctx.endpoints.ready().await;
    let namespace = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods = selected(&ctx.pods.list(&namespace), &selector);
    let current = ctx.endpoints.get(&namespace, &name);
    let Some(endpoints) = desired_endpoints(&svc, &pods, current.as_deref()) else {
        ctx.backoff.succeeded(&namespace_name(&namespace, &name));
        return Ok(Action::requeue(ctx.resync));
    };
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = if current.is_some() {
        api.replace(&name, &PostParams::default(), &endpoints).await
    } else {
        api.create(&PostParams::default(), &endpoints).await
    };
    match result {
        Ok(_) => debug!(service = %name, %namespace, "wrote Endpoints"),
        Err(e) if framework::is_namespace_terminating(&e) => {}
        Err(source) => {
            return Err(Error::Write {
                namespace,
                name,
                source,
            });
        }
    }
    ctx.backoff.succeeded(&namespace_name(&namespace, &name));
    Ok(Action::requeue(ctx.resync))
}

fn namespace_name(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn error_policy(svc: Arc<Service>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = namespace_name(&svc.namespace().unwrap_or_default(), &svc.name_any());
    let delay = ctx.backoff.failed(&key);
    let Error::Write { source, .. } = error;
    if framework::is_conflict(source) || framework::is_already_exists(source) {
        debug!(service = %key, error = %error, retry_in = ?delay, "stale cache; retrying");
    } else {
        warn!(service = %key, error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    }
    Action::requeue(delay)
}

/// Deletes Endpoints whose Service is gone: those left at startup, then
/// those of each deleted Service.
async fn janitor(
    client: Client,
    services: Store<Service>,
    endpoints: Cache<Endpoints>,
    mut deleted: mpsc::UnboundedReceiver<(String, String)>,
) {
    if services.wait_until_ready().await.is_err() {
        return;
    }
    endpoints.ready().await;
    let mut pending: BTreeSet<(String, String)> = endpoints
        .all()
        .iter()
        .map(|e| (e.namespace().unwrap_or_default(), e.name_any()))
        .collect();
    loop {
        let mut retry = BTreeSet::new();
        for (namespace, name) in std::mem::take(&mut pending) {
            if services
                .get(&ObjectRef::new(&name).within(&namespace))
                .is_some()
            {
                continue;
            }
            let Some(e) = endpoints.get(&namespace, &name) else {
                continue;
            };
            if e.annotations().contains_key(LEADER_ANNOTATION) {
                continue;
            }
            let api: Api<Endpoints> = Api::namespaced(client.clone(), &namespace);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: e.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    info!(%namespace, endpoints = %name, "deleted Endpoints of a deleted Service")
                }
                Err(e) if framework::is_not_found(&e) || framework::is_conflict(&e) => {}
                Err(error) => {
                    warn!(%namespace, endpoints = %name, %error, "deleting Endpoints failed; retrying");
                    retry.insert((namespace, name));
                }
            }
        }
        pending = retry;
        let next = if pending.is_empty() {
            deleted.next().await
        } else {
            tokio::time::timeout(Duration::from_secs(1), deleted.next())
                .await
                .unwrap_or(Some((String::new(), String::new())))
        };
        match next {
            None => return,
            Some((namespace, name)) if !name.is_empty() => {
                pending.insert((namespace, name));
            }
            Some(_) => {}
        }
    }
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let (services, writer) = reflector::store::<Service>();
        let (deleted_tx, deleted_rx) = mpsc::unbounded();
        let service_events = watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(crate::framework::drop_managed_fields)
        .map_ok(move |event| {
            if let watcher::Event::Delete(svc) = &event {
                let _ = deleted_tx
                    .unbounded_send((svc.namespace().unwrap_or_default(), svc.name_any()));
            }
            event
        })
        .reflect(writer)
        .touched_objects();
        let (pods, pod_events) = {
            let services = services.clone();
            ctx.informers
                .pods
                .subscribe(move |change| services_for_pod_change(change, &services))
        };
        let (endpoints, endpoint_events) =
            ctx.informers
                .endpoints
                .subscribe(|change: &Changed<Endpoints>| match change {
                    Changed::Added(_) => Vec::new(),
                    Changed::Updated { new: e, .. } | Changed::Deleted(e) => {
                        vec![
                            ObjectRef::<Service>::new(&e.name_any())
                                .within(&e.namespace().unwrap_or_default()),
                        ]
                    }
                });
        let state = Arc::new(Ctx {
            client: client.clone(),
            pods,
            endpoints: endpoints.clone(),
            resync: ctx.resync_period(),
            backoff: Backoff::default(),
        });
        let controller = Controller::for_stream(service_events, services.clone())
            .reconcile_on(pod_events)
            .reconcile_on(endpoint_events)
            .with_config(
                controller::Config::default()
                    .concurrency(ctx.settings.concurrent_endpoint_syncs.max(1)),
            )
            .graceful_shutdown_on(ctx.stopped())
            .run(reconcile, error_policy, state)
            .for_each(|result| async move {
                if let Err(e) = result {
                    debug!(error = %e, "reconcile");
                }
            });
        let stopped = ctx.stopped();
        tokio::select! {
            () = controller => {}
            () = async {
                janitor(client, services, endpoints, deleted_rx).await;
                stopped.await;
            } => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{pod, service};
    use super::*;
    use serde_json::json;

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<String> {
        list.iter().flatten().map(|a| a.ip.clone()).collect()
    }

    #[test]
    fn ready_and_unready_pods_share_a_subset_with_the_resolved_port() {
        let svc = service(json!("http"), false);
        let pods = vec![
            Arc::new(pod("b", "10.1.0.2", true)),
            Arc::new(pod("a", "10.1.0.1", true)),
            Arc::new(pod("c", "10.1.0.3", false)),
        ];
        let subsets = desired_subsets(&svc, &pods);
        assert_eq!(subsets.len(), 1);
        let s = &subsets[0];
        assert_eq!(ips(&s.addresses), ["10.1.0.1", "10.1.0.2"]);
        assert_eq!(ips(&s.not_ready_addresses), ["10.1.0.3"]);
        let port = &s.ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
        let a = &s.addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("node-a"));
        let r = a.target_ref.as_ref().unwrap();
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref()),
            (Some("Pod"), Some("a"))
        );
    }

    #[test]
    fn publish_not_ready_addresses_lists_every_pod_as_ready() {
        let svc = service(json!(80), true);
        let pods = vec![Arc::new(pod("c", "10.1.0.3", false))];
        let subsets = desired_subsets(&svc, &pods);
        assert_eq!(ips(&subsets[0].addresses), ["10.1.0.3"]);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn pods_lacking_a_named_port_form_no_subset_for_it() {
        let svc = service(json!("http"), false);
        let mut bare = pod("x", "10.1.0.9", true);
        bare.spec.as_mut().unwrap().containers[0].ports = None;
        let subsets = desired_subsets(
            &svc,
            &[Arc::new(bare), Arc::new(pod("a", "10.1.0.1", true))],
        );
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), ["10.1.0.1"]);
    }

    #[test]
    fn unchanged_endpoints_are_not_rewritten_and_labels_follow_the_service() {
        let svc = service(json!("http"), false);
        let pods = vec![Arc::new(pod("a", "10.1.0.1", true))];
        let first = desired_endpoints(&svc, &pods, None).unwrap();
        let labels = first.metadata.labels.clone().unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[SKIP_MIRROR_LABEL], "true");
        assert!(desired_endpoints(&svc, &pods, Some(&first)).is_none());
        assert!(desired_endpoints(&svc, &[], Some(&first)).is_some());
    }

    #[test]
    fn more_than_a_thousand_addresses_are_truncated_not_ready_first() {
        let address = |i: usize| EndpointAddress {
            ip: format!("10.0.{}.{}", i / 250, i % 250),
            ..EndpointAddress::default()
        };
        let mut subsets = vec![EndpointSubset {
            addresses: Some((0..900).map(address).collect()),
            not_ready_addresses: Some((900..1200).map(address).collect()),
            ports: None,
        }];
        assert!(truncate(&mut subsets));
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 900);
        assert_eq!(subsets[0].not_ready_addresses.as_ref().unwrap().len(), 100);
    }
}
