//! Every Service with a selector has EndpointSlices listing its pods
//! (terminating ones too, with upstream's ready/serving/terminating
//! conditions), at most `--max-endpoints-per-slice` (100) each, one port set
//! per slice, labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`
//! and owned by the Service; with no endpoints, one empty placeholder slice
//! (upstream's EndpointSliceController). Changes touch as few slices as
//! possible: kept endpoints stay where they are, new ones fill slices being
//! rewritten first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{
    families, find_port, hostname_for, labels_for, managed_selector, pod_ip, selected,
    services_for_pod_change, should_be_in_endpoints, target_ref,
};
use crate::cache::{self, Cache, Changed};
use crate::framework::{self, Backoff, Context};
use crate::pods;

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "endpointslice-controller";
/// `endpointslice.kubernetes.io/managed-by` of the slices made here.
pub(crate) const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub(crate) const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// How long to wait for the cache to show this controller's own writes.
const STALE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{verb} EndpointSlice for Service {namespace}/{service}")]
    Write {
        verb: &'static str,
        namespace: String,
        service: String,
        #[source]
        source: kube::Error,
    },
}

/// What to write.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<Arc<EndpointSlice>>,
}

impl Plan {
    /// Writes the plan through `api` (updates, then creates, then deletes
    /// by uid), recording each write in `tracker` under `key`; the first
    /// failed write is returned with what it was doing. A create refused
    /// because the namespace is terminating and a delete of a slice already
    /// gone are not failures.
    pub(crate) async fn apply(
        self,
        api: &Api<EndpointSlice>,
        tracker: &Tracker,
        key: &str,
    ) -> Result<(), (&'static str, kube::Error)> {
        for slice in self.update {
            let written = api
                .replace(&slice.name_any(), &PostParams::default(), &slice)
                .await
                .map_err(|e| ("updating", e))?;
            tracker.record(key, written.uid(), rv_of(&written));
        }
        for slice in self.create {
            match api.create(&PostParams::default(), &slice).await {
                Ok(written) => tracker.record(key, written.uid(), rv_of(&written)),
                Err(e) if framework::is_namespace_terminating(&e) => {}
                Err(e) => return Err(("creating", e)),
            }
        }
        for slice in self.delete {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: slice.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&slice.name_any(), &params).await {
                Ok(_) => tracker.record(key, slice.uid(), None),
                Err(e) if framework::is_not_found(&e) => {}
                Err(e) => return Err(("deleting", e)),
            }
        }
        Ok(())
    }
}

pub(crate) type PortsKey = String;
/// Endpoints by address type and port set, with the ports.
pub(crate) type Desired = BTreeMap<(String, PortsKey), (Vec<EndpointPort>, Vec<Endpoint>)>;

pub(crate) fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut keys: Vec<(String, i32, String, String)> = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    keys.sort();
    serde_json::to_string(&keys).unwrap_or_default()
}

/// An endpoint's identity: its address and its pod.
pub(crate) fn endpoint_key(e: &Endpoint) -> (String, String) {
    (
        e.addresses.first().cloned().unwrap_or_default(),
        e.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// The endpoints the Service's selected pods give, by address type and
/// port set (upstream's `podToEndpoint` and `getEndpointPorts`). `zones`:
/// node name → zone.
pub(crate) fn desired(
    svc: &Service,
    pods: &[Arc<Pod>],
    zones: &HashMap<String, String>,
) -> Desired {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut out: BTreeMap<(String, PortsKey), (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for family in families(svc) {
        for pod in pods {
            if !should_be_in_endpoints(pod, true) {
                continue;
            }
            let Some(ip) = pod_ip(pod, &family) else {
                continue;
            };
            let mut ports: Vec<EndpointPort> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|port| {
                    Some(EndpointPort {
                        name: Some(port.name.clone().unwrap_or_default()),
                        port: Some(find_port(pod, port)?),
                        protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                        app_protocol: port.app_protocol.clone(),
                    })
                })
                .collect();
            ports.sort_by_key(|p| (p.name.clone(), p.port, p.protocol.clone()));
            let ready_pod = pods::is_ready(pod);
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            let endpoint = Endpoint {
                addresses: vec![ip],
                conditions: Some(EndpointConditions {
                    ready: Some(publish || (ready_pod && !terminating)),
                    serving: Some(publish || ready_pod),
                    terminating: Some(terminating),
                }),
                hostname: hostname_for(pod, svc),
                zone: node.as_ref().and_then(|n| zones.get(n).cloned()),
                node_name: node,
                target_ref: Some(target_ref(pod)),
                ..Endpoint::default()
            };
            let key = (family.clone(), ports_key(&ports));
            out.entry(key)
                .or_insert_with(|| (ports, Vec::new()))
                .1
                .push(endpoint);
        }
    }
    for (_, endpoints) in out.values_mut() {
        endpoints.sort_by_key(endpoint_key);
    }
    out
}

/// What every slice of one owner carries: its name prefix, labels and
/// owner, and the address type of the placeholder kept when there are no
/// endpoints (none: no placeholder).
pub(crate) struct Template {
    pub generate_name: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub owner: OwnerReference,
    pub placeholder: Option<String>,
}

impl Template {
    /// The slices of a Service.
    pub fn for_service(svc: &Service) -> Template {
        let name = svc.name_any();
        Template {
            generate_name: generate_name(&name),
            namespace: svc.namespace(),
            labels: labels_for(
                svc,
                &[(SERVICE_NAME_LABEL, &name), (MANAGED_BY_LABEL, MANAGED_BY)],
            ),
            owner: pods::controller_ref("v1", "Service", &svc.metadata),
            placeholder: Some(families(svc).remove(0)),
        }
    }

    fn slice(
        &self,
        address_type: &str,
        ports: &[EndpointPort],
        endpoints: Vec<Endpoint>,
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(self.generate_name.clone()),
                namespace: self.namespace.clone(),
                labels: Some(self.labels.clone()),
                owner_references: Some(vec![self.owner.clone()]),
                ..ObjectMeta::default()
            },
            address_type: address_type.to_owned(),
            endpoints,
            ports: (!ports.is_empty()).then(|| ports.to_vec()),
        }
    }
}

/// `<name>-`, the name cut so that generated names stay valid.
pub(crate) fn generate_name(name: &str) -> String {
    let mut cut = name.len().min(57);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-", &name[..cut])
}

fn is_placeholder(s: &EndpointSlice) -> bool {
    s.endpoints.is_empty() && s.ports.as_ref().is_none_or(Vec::is_empty)
}

/// What turns `existing` (the Service's slices, as cached) into slices
/// holding `desired`, at most `max` endpoints each (upstream's
/// `reconciler.reconcile`).
pub(crate) fn plan(
    template: &Template,
    desired: Desired,
    existing: &[Arc<EndpointSlice>],
    max: usize,
) -> Plan {
    let max = max.max(1);
    let mut plan = Plan::default();
    let labels = &template.labels;
    let owner = &template.owner.uid;
    let mut mine: Vec<Arc<EndpointSlice>> = Vec::new();
    for s in existing {
        let owned = pods::controller_of(&s.metadata).is_some_and(|r| &r.uid == owner);
        if owned {
            mine.push(s.clone());
        } else {
            plan.delete.push(s.clone());
        }
    }
    mine.sort_by_key(|s| s.name_any());

    if desired.is_empty() {
        // One placeholder stays (if the owner keeps one); everything else goes.
        let mut kept = template.placeholder.is_none();
        for s in mine {
            if !kept && is_placeholder(&s) && Some(&s.address_type) == template.placeholder.as_ref()
            {
                kept = true;
                if s.metadata.labels.as_ref() != Some(labels) {
                    let mut copy = (*s).clone();
                    copy.metadata.labels = Some(labels.clone());
                    plan.update.push(copy);
                }
            } else {
                plan.delete.push(s);
            }
        }
        if let (false, Some(address_type)) = (kept, &template.placeholder) {
            plan.create
                .push(template.slice(address_type, &[], Vec::new()));
        }
        return plan;
    }

    let mut groups: BTreeMap<(String, PortsKey), Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    for s in mine {
        let key = (
            s.address_type.clone(),
            ports_key(s.ports.as_deref().unwrap_or_default()),
        );
        if desired.contains_key(&key) && !is_placeholder(&s) {
            groups.entry(key).or_default().push(s);
        } else {
            plan.delete.push(s);
        }
    }
    for (key, (ports, endpoints)) in desired {
        let mut wanted: BTreeMap<(String, String), Endpoint> = endpoints
            .into_iter()
            .map(|e| (endpoint_key(&e), e))
            .collect();
        let mut to_update: Vec<EndpointSlice> = Vec::new();
        let mut unchanged: Vec<Arc<EndpointSlice>> = Vec::new();
        for s in groups.remove(&key).unwrap_or_default() {
            let mut kept = Vec::new();
            let mut changed = s.metadata.labels.as_ref() != Some(labels);
            for e in &s.endpoints {
                match wanted.remove(&endpoint_key(e)) {
                    Some(want) => {
                        changed |= &want != e;
                        kept.push(want);
                    }
                    None => changed = true,
                }
            }
            if kept.is_empty() {
                plan.delete.push(s);
            } else if changed {
                let mut copy = (*s).clone();
                copy.endpoints = kept;
                copy.metadata.labels = Some(labels.clone());
                to_update.push(copy);
            } else {
                unchanged.push(s);
            }
        }
        let mut left: Vec<Endpoint> = wanted.into_values().collect();
        // Fill the slices being rewritten anyway.
        for s in &mut to_update {
            while s.endpoints.len() < max && !left.is_empty() {
                s.endpoints.push(left.remove(0));
            }
        }
        // Then, rather than a new slice, the fullest unchanged one that fits
        // the rest.
        if !left.is_empty() && left.len() < max {
            unchanged.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
            if let Some(i) = unchanged
                .iter()
                .position(|s| s.endpoints.len() + left.len() <= max)
            {
                let mut copy = (*unchanged.remove(i)).clone();
                copy.endpoints.append(&mut left);
                to_update.push(copy);
            }
        }
        while !left.is_empty() {
            let rest = left.split_off(left.len().min(max));
            let chunk = std::mem::replace(&mut left, rest);
            plan.create.push(template.slice(&key.0, &ports, chunk));
        }
        plan.update.extend(to_update);
    }
    plan
}

/// The controller's own writes, until the cache shows them (upstream's
/// `EndpointSliceTracker`): a pass on a cache older than what was written
/// would create slices twice.
/// When a Service's slices were last written, and slice UID →
/// resourceVersion written (`None`: deleted).
type Written = (Instant, HashMap<String, Option<u64>>);

#[derive(Default)]
pub(crate) struct Tracker {
    /// Service key → slice UID → resourceVersion written (`None`: deleted),
    /// and when.
    written: Mutex<HashMap<String, Written>>,
}

impl Tracker {
    pub fn record(&self, service: &str, uid: Option<String>, rv: Option<u64>) {
        let Some(uid) = uid else {
            return;
        };
        let mut written = self.written.lock().expect("tracker lock");
        let entry = written
            .entry(service.to_owned())
            .or_insert_with(|| (Instant::now(), HashMap::new()));
        entry.0 = Instant::now();
        entry.1.insert(uid, rv);
    }

    /// A slice went: nothing more to wait for about it.
    pub fn gone(&self, uid: &str) {
        let mut written = self.written.lock().expect("tracker lock");
        for (_, expected) in written.values_mut() {
            expected.remove(uid);
        }
    }

    /// Whether `slices` (the cache) show every write for `service`.
    pub fn caught_up(&self, service: &str, slices: &[Arc<EndpointSlice>]) -> bool {
        let mut written = self.written.lock().expect("tracker lock");
        let Some((at, expected)) = written.get_mut(service) else {
            return true;
        };
        let cached: HashMap<&str, u64> = slices
            .iter()
            .filter_map(|s| {
                Some((
                    s.metadata.uid.as_deref()?,
                    s.metadata.resource_version.as_ref()?.parse().ok()?,
                ))
            })
            .collect();
        expected.retain(|uid, rv| match rv {
            Some(rv) => cached.get(uid.as_str()).is_none_or(|c| c < rv),
            None => cached.contains_key(uid.as_str()),
        });
        if expected.is_empty() || at.elapsed() > STALE_TIMEOUT {
            written.remove(service);
            return true;
        }
        false
    }
}

struct Ctx {
    client: Client,
    pods: Cache<Pod>,
    slices: Cache<EndpointSlice>,
    nodes: Cache<Node>,
    tracker: Arc<Tracker>,
    max_per_slice: usize,
    resync: Duration,
    backoff: Backoff,
}

pub(crate) fn rv_of(s: &EndpointSlice) -> Option<u64> {
    s.metadata.resource_version.as_ref()?.parse().ok()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(selector) = managed_selector(&svc) else {
        return Ok(Action::await_change());
    };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    ctx.pods.ready().await;
    ctx.slices.ready().await;
    ctx.nodes.ready().await;
    let namespace = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let key = format!("{namespace}/{name}");
    let existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .list(&namespace)
        .into_iter()
        .filter(|s| s.labels().get(SERVICE_NAME_LABEL) == Some(&name))
        .collect();
    if !ctx.tracker.caught_up(&key, &existing) {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let zones: HashMap<String, String> = ctx
        .nodes
        .all()
        .iter()
        .filter_map(|n| Some((n.name_any(), n.labels().get(ZONE_LABEL)?.clone())))
        .collect();
    let pods = selected(&ctx.pods.list(&namespace), &selector);
    let plan = plan(
        &Template::for_service(&svc),
        desired(&svc, &pods, &zones),
        &existing,
        ctx.max_per_slice,
    );
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    let failed = |verb, source| Error::Write {
        verb,
        namespace: namespace.clone(),
        service: name.clone(),
        source,
    };
    plan.apply(&api, &ctx.tracker, &key)
        .await
        .map_err(|(verb, e)| failed(verb, e))?;
    ctx.backoff.succeeded(&key);
    Ok(Action::requeue(ctx.resync))
}

fn error_policy(svc: Arc<Service>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
    let delay = ctx.backoff.failed(&key);
    let Error::Write { source, .. } = error;
    if framework::is_conflict(source) {
        debug!(service = %key, error = %error, retry_in = ?delay, "stale cache; retrying");
    } else {
        warn!(service = %key, error = %error, source = ?std::error::Error::source(error), retry_in = ?delay, "sync failed");
    }
    Action::requeue(delay)
}

/// Which Service a change of one of its slices concerns (someone else
/// touched a slice of ours: put it right).
fn on_slice_change(change: &Changed<EndpointSlice>) -> Vec<ObjectRef<Service>> {
    let s = match change {
        Changed::Added(s) | Changed::Deleted(s) | Changed::Updated { new: s, .. } => s,
    };
    s.labels()
        .get(SERVICE_NAME_LABEL)
        .map(|svc| vec![ObjectRef::new(svc).within(&s.namespace().unwrap_or_default())])
        .unwrap_or_default()
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let controller = crate::framework::controller(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        );
        let services = controller.store();
        let (pods, pod_events) = ctx
            .informers
            .pods
            .subscribe(move |change| services_for_pod_change(change, &services));
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
                move |change| {
                    if let Changed::Deleted(s) = change {
                        tracker.gone(s.metadata.uid.as_deref().unwrap_or_default());
                    }
                    on_slice_change(change)
                },
            )
        };
        let (nodes, node_events) = ctx
            .informers
            .nodes
            .subscribe(|_: &Changed<Node>| Vec::<ObjectRef<Service>>::new());
        let state = Arc::new(Ctx {
            client,
            pods,
            slices,
            nodes,
            tracker,
            max_per_slice: ctx.settings.max_endpoints_per_slice.max(1) as usize,
            resync: ctx.resync_period(),
            backoff: Backoff::default(),
        });
        controller
            .reconcile_on(pod_events)
            .reconcile_on(slice_events)
            .reconcile_on(node_events)
            .with_config(
                controller::Config::default()
                    .concurrency(ctx.settings.concurrent_service_endpoint_syncs.max(1)),
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
    use super::super::testing::{pod, service};
    use super::*;
    use serde_json::json;

    fn pods(n: usize, ready: impl Fn(usize) -> bool) -> Vec<Arc<Pod>> {
        (0..n)
            .map(|i| {
                Arc::new(pod(
                    &format!("p{i:03}"),
                    &format!("10.1.{}.{}", i / 200, i % 200 + 1),
                    ready(i),
                ))
            })
            .collect()
    }

    /// Applies a plan as the API server would, naming created slices.
    fn apply(
        existing: &[Arc<EndpointSlice>],
        plan: Plan,
        counter: &mut usize,
    ) -> Vec<Arc<EndpointSlice>> {
        let mut out: BTreeMap<String, EndpointSlice> = existing
            .iter()
            .map(|s| (s.name_any(), (**s).clone()))
            .collect();
        for s in &plan.delete {
            out.remove(&s.name_any());
        }
        for s in plan.update {
            out.insert(s.name_any(), s);
        }
        for mut s in plan.create {
            *counter += 1;
            s.metadata.name = Some(format!("web-{counter}"));
            out.insert(s.name_any(), s);
        }
        out.into_values().map(Arc::new).collect()
    }

    #[test]
    fn endpoints_carry_conditions_node_zone_and_target() {
        let svc = service(json!("http"), false);
        let mut terminating = pod("t", "10.1.0.9", true);
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let pods = vec![
            Arc::new(pod("a", "10.1.0.1", true)),
            Arc::new(pod("b", "10.1.0.2", false)),
            Arc::new(terminating),
        ];
        let zones = HashMap::from([("node-a".to_owned(), "zone-1".to_owned())]);
        let d = desired(&svc, &pods, &zones);
        assert_eq!(d.len(), 1);
        let ((family, _), (ports, endpoints)) = d.into_iter().next().unwrap();
        assert_eq!(family, "IPv4");
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("http"), Some(8080))
        );
        let cond = |i: usize| {
            let c = endpoints[i].conditions.clone().unwrap();
            (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
        };
        assert_eq!(cond(0), (true, true, false));
        assert_eq!(cond(1), (false, false, false));
        assert_eq!(
            cond(2),
            (false, true, true),
            "terminating: not ready, still serving"
        );
        assert_eq!(endpoints[0].zone.as_deref(), Some("zone-1"));
        assert_eq!(endpoints[0].node_name.as_deref(), Some("node-a"));
        assert_eq!(
            endpoints[0].target_ref.as_ref().unwrap().name.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn slices_hold_at_most_the_maximum_and_carry_the_labels_and_owner() {
        let svc = service(json!("http"), false);
        let zones = HashMap::new();
        let plan = plan(
            &Template::for_service(&svc),
            desired(&svc, &pods(250, |_| true), &zones),
            &[],
            100,
        );
        let sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let s = &plan.create[0];
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(labels["team"], "a");
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Service", "svc-uid")
        );
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
    }

    #[test]
    fn a_change_rewrites_only_the_slice_holding_it_and_a_settled_service_writes_nothing() {
        let svc = service(json!("http"), false);
        let zones = HashMap::new();
        let mut n = 0;
        let first = plan(
            &Template::for_service(&svc),
            desired(&svc, &pods(150, |_| true), &zones),
            &[],
            100,
        );
        let slices = apply(&[], first, &mut n);
        let again = plan(
            &Template::for_service(&svc),
            desired(&svc, &pods(150, |_| true), &zones),
            &slices,
            100,
        );
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());
        // One pod turns unready: one slice rewritten.
        let changed = plan(
            &Template::for_service(&svc),
            desired(&svc, &pods(150, |i| i != 3), &zones),
            &slices,
            100,
        );
        assert!(changed.create.is_empty() && changed.delete.is_empty());
        assert_eq!(changed.update.len(), 1);
        // Ten more pods: they go into the slice with room.
        let grown = plan(
            &Template::for_service(&svc),
            desired(&svc, &pods(160, |_| true), &zones),
            &slices,
            100,
        );
        assert!(grown.create.is_empty());
        assert_eq!(grown.update.len(), 1);
        assert_eq!(grown.update[0].endpoints.len(), 60);
    }

    #[test]
    fn no_endpoints_leave_one_placeholder_slice() {
        let svc = service(json!("http"), false);
        let zones = HashMap::new();
        let mut n = 0;
        let slices = apply(
            &[],
            plan(
                &Template::for_service(&svc),
                desired(&svc, &pods(3, |_| true), &zones),
                &[],
                100,
            ),
            &mut n,
        );
        let empty = plan(
            &Template::for_service(&svc),
            desired(&svc, &[], &zones),
            &slices,
            100,
        );
        assert_eq!(empty.delete.len(), 1);
        assert_eq!(empty.create.len(), 1);
        assert!(is_placeholder(&empty.create[0]));
        let slices = apply(&slices, empty, &mut n);
        let settled = plan(
            &Template::for_service(&svc),
            desired(&svc, &[], &zones),
            &slices,
            100,
        );
        assert!(
            settled.create.is_empty() && settled.delete.is_empty() && settled.update.is_empty()
        );
        // Pods come: the placeholder goes.
        let back = plan(
            &Template::for_service(&svc),
            desired(&svc, &pods(2, |_| true), &zones),
            &slices,
            100,
        );
        assert_eq!((back.create.len(), back.delete.len()), (1, 1));
    }

    #[test]
    fn slices_of_a_previous_service_of_the_same_name_are_deleted() {
        let svc = service(json!("http"), false);
        let zones = HashMap::new();
        let mut n = 0;
        let slices = apply(
            &[],
            plan(
                &Template::for_service(&svc),
                desired(&svc, &pods(3, |_| true), &zones),
                &[],
                100,
            ),
            &mut n,
        );
        let mut again = svc.clone();
        again.metadata.uid = Some("other".into());
        let p = plan(
            &Template::for_service(&again),
            desired(&again, &pods(3, |_| true), &zones),
            &slices,
            100,
        );
        assert_eq!((p.delete.len(), p.create.len()), (1, 1));
    }
}
