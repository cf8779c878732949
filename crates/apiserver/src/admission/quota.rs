//! ResourceQuota (k8s.io/apiserver pkg/admission/plugin/resourcequota and
//! k8s.io/kubernetes pkg/quota/v1/evaluator/core): a write that would use
//! more than a namespace's ResourceQuotas allow is refused; one that fits is
//! **charged** to the quotas' `status.used` before it is stored.
//!
//! Atomicity: each namespace has one queue of pending writes; a single task
//! at a time drains it, checks the whole batch in order against the quotas
//! in memory, and writes each changed quota once, guarded by the revision it
//! read (a conflict — another server, the quota controller, a user editing
//! the quota — re-reads that quota and checks again). Only then are the
//! writes answered, so concurrent creates can never overshoot, and a batch
//! costs one quota write however many requests it holds (upstream's quota
//! evaluator works the same way).
//!
//! What a write was charged is recorded in its admission [`Request`]
//! ([`Ledger`]); if the write is then not stored (refused later, lost a
//! race, failed), dropping the request gives the charge back. Deleting an
//! object, or a pod reaching Succeeded/Failed, releases its usage (the work
//! of upstream's quota controller, which this server does not have yet). A
//! quota whose `status.used` lacks a resource is counted from the watch
//! cache first.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api_types::quantity::Quantity;
use skiff_api_types::registry::ResourceInfo;
use skiff_store::{Error as StoreError, Revision, Store};
use tokio::sync::oneshot;
use tracing::warn;

use super::resources::{self, ResourceList};
use super::{Operation, Request, lookup, namespace_of};
use crate::Api;
use crate::cache::{Cache, set_resource_version};
use crate::status::{ApiError, GroupResource};

pub const NAME: &str = "ResourceQuota";

/// How often a batch re-reads quotas that changed under it.
const MAX_ATTEMPTS: usize = 8;
/// How long a write waits for its quota check (upstream: 10 s).
const EVALUATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The legacy object-count names, beside `count/<resource>`.
const LEGACY_COUNTS: &[&str] = &[
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
];
/// What the pod evaluator counts.
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];
const SERVICE_RESOURCES: &[&str] = &[
    "count/services",
    "services",
    "services.loadbalancers",
    "services.nodeports",
];
const CLAIM_RESOURCES: &[&str] = &[
    "count/persistentvolumeclaims",
    "persistentvolumeclaims",
    "requests.storage",
];
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Usage charged to one quota by one write (negative: released).
#[derive(Clone, Debug)]
pub(super) struct Charge {
    namespace: String,
    quota: String,
    uid: String,
    delta: ResourceList,
}

impl Charge {
    fn negated(&self) -> Charge {
        Charge {
            delta: self.delta.iter().map(|(k, q)| (k.clone(), -*q)).collect(),
            ..self.clone()
        }
    }
}

/// What one admission request has charged, until it commits.
#[derive(Default)]
pub(super) struct Ledger {
    charges: Mutex<Vec<Charge>>,
}

impl Ledger {
    fn record(&self, charges: Vec<Charge>) {
        self.charges.lock().unwrap().extend(charges);
    }

    pub(super) fn commit(&self) {
        self.charges.lock().unwrap().clear();
    }

    /// Gives back whatever is still recorded.
    pub(super) fn refund(&self, quotas: &Quotas) {
        let charges = std::mem::take(&mut *self.charges.lock().unwrap());
        let mut by_namespace: HashMap<String, Vec<Charge>> = HashMap::new();
        for c in charges {
            by_namespace
                .entry(c.namespace.clone())
                .or_default()
                .push(c.negated());
        }
        for (namespace, charges) in by_namespace {
            quotas.enqueue(&namespace, Work::Adjust(charges));
        }
    }
}

/// The quota queues of every namespace.
pub(super) struct Quotas {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Store>,
    cache: Cache,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
}

/// One namespace's pending work.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    pending: Vec<Work>,
    /// Whether a task is draining the queue.
    running: bool,
    /// The last version of each quota this server wrote, by name: newer than
    /// the watch cache's until the cache catches up.
    written: HashMap<String, Value>,
}

/// What a queue does.
enum Work {
    /// Check a write against the quotas and charge it.
    Check(Box<Attrs>, oneshot::Sender<Result<Vec<Charge>, ApiError>>),
    /// Apply exact amounts, unchecked (refunds).
    Adjust(Vec<Charge>),
    /// An object is gone: release its usage.
    Release(&'static ResourceInfo, Box<Value>, oneshot::Sender<()>),
}

/// The write a check is about.
struct Attrs {
    resource: &'static ResourceInfo,
    operation: Operation,
    obj: Value,
    old: Option<Value>,
    dry_run: bool,
}

/// One quota as a batch works on it.
struct QuotaDoc {
    name: String,
    uid: String,
    key: String,
    obj: Value,
    revision: Revision,
    hard: ResourceList,
    used: ResourceList,
    scopes: Vec<Scope>,
    dirty: bool,
}

/// A scope selector requirement (`spec.scopes` entries are `Exists`).
#[derive(Clone, Debug)]
struct Scope {
    name: String,
    operator: String,
    values: Vec<String>,
}

impl Quotas {
    pub(super) fn new(store: Arc<dyn Store>, cache: Cache) -> Self {
        Quotas {
            shared: Arc::new(Shared {
                store,
                cache,
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Adds work to a namespace's queue, starting its drain if idle.
    fn enqueue(&self, namespace: &str, work: Work) {
        let queue = self
            .shared
            .queues
            .lock()
            .unwrap()
            .entry(namespace.to_owned())
            .or_default()
            .clone();
        let start = {
            let mut state = queue.state.lock().unwrap();
            state.pending.push(work);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            let shared = self.shared.clone();
            let namespace = namespace.to_owned();
            tokio::spawn(async move { drain(shared, namespace, queue).await });
        }
    }
}

/// Drains a queue batch by batch until it is empty.
async fn drain(shared: Arc<Shared>, namespace: String, queue: Arc<Queue>) {
    loop {
        let batch = {
            let mut state = queue.state.lock().unwrap();
            if state.pending.is_empty() {
                state.running = false;
                return;
            }
            std::mem::take(&mut state.pending)
        };
        process(&shared, &namespace, &queue, batch).await;
    }
}

/// The state of one batch item.
#[derive(Default)]
struct Outcome {
    charges: Vec<Charge>,
    error: Option<ApiError>,
}

async fn process(shared: &Shared, namespace: &str, queue: &Queue, batch: Vec<Work>) {
    let mut quotas = match load_quotas(shared, namespace, queue).await {
        Ok(q) => q,
        Err(e) => {
            answer(queue, batch, batch_failed(e));
            return;
        }
    };
    if let Err(e) = fill_usage(shared, namespace, &mut quotas).await {
        answer(queue, batch, batch_failed(e));
        return;
    }
    let mut outcomes: Vec<Outcome> = batch.iter().map(|_| Outcome::default()).collect();
    let mut active: Vec<usize> = (0..quotas.len()).collect();
    for attempt in 0.. {
        for (work, outcome) in batch.iter().zip(outcomes.iter_mut()) {
            if outcome.error.is_some() {
                continue;
            }
            match work {
                Work::Check(attrs, _) => match check(&mut quotas, &active, namespace, attrs) {
                    Ok(charges) => outcome.charges.extend(charges),
                    Err(e) => outcome.error = Some(e),
                },
                Work::Adjust(charges) => {
                    for c in charges {
                        if let Some(i) = active
                            .iter()
                            .copied()
                            .find(|i| quotas[*i].name == c.quota && quotas[*i].uid == c.uid)
                        {
                            apply(&mut quotas[i], &c.delta);
                        }
                    }
                }
                Work::Release(resource, obj, _) => {
                    for &i in &active {
                        let q = &mut quotas[i];
                        if matches(q, resource, obj) {
                            let usage = resources::mask(&usage(resource, obj), q.hard.keys());
                            let release: ResourceList =
                                usage.into_iter().map(|(k, v)| (k, -v)).collect();
                            apply(q, &release);
                        }
                    }
                }
            }
        }
        let failed = write_dirty(shared, queue, &mut quotas, &active).await;
        if failed.is_empty() {
            break;
        }
        // What was charged to the quotas that did not get written never
        // happened: forget it, re-read those quotas and check again.
        let failed_names: BTreeSet<String> =
            failed.iter().map(|i| quotas[*i].name.clone()).collect();
        for outcome in &mut outcomes {
            outcome.charges.retain(|c| !failed_names.contains(&c.quota));
        }
        if attempt + 1 >= MAX_ATTEMPTS {
            for (work, outcome) in batch.iter().zip(outcomes.iter_mut()) {
                if matches!(work, Work::Check(..)) && outcome.error.is_none() {
                    outcome.error = Some(ApiError::conflict(
                        GroupResource {
                            group: "",
                            resource: "resourcequotas",
                        },
                        failed_names.iter().next().map(String::as_str).unwrap_or(""),
                        "the quota is being changed by too many writers; try again",
                    ));
                }
            }
            break;
        }
        for &i in &failed {
            match reload(shared, &quotas[i]).await {
                Ok(Some(fresh)) => quotas[i] = fresh,
                Ok(None) => quotas[i].hard.clear(),
                Err(e) => warn!(error = %e, "re-reading a resource quota"),
            }
        }
        if let Err(e) = fill_usage(shared, namespace, &mut quotas).await {
            warn!(error = %e, "recounting a resource quota");
        }
        active = failed;
    }
    answer(queue, batch, Some(outcomes));
}

fn batch_failed(e: ApiError) -> Option<Vec<Outcome>> {
    warn!(error = %e, "resource quota evaluation failed");
    None
}

/// Sends each item its result. A refused write that was charged somewhere
/// before being refused elsewhere gets its charges given back; so does a
/// write whose requester is gone.
fn answer(queue: &Queue, batch: Vec<Work>, outcomes: Option<Vec<Outcome>>) {
    let outcomes = outcomes.unwrap_or_else(|| {
        batch
            .iter()
            .map(|_| Outcome {
                charges: Vec::new(),
                error: Some(ApiError::internal("resource quota evaluation failed")),
            })
            .collect()
    });
    let mut refunds = Vec::new();
    for (work, outcome) in batch.into_iter().zip(outcomes) {
        match work {
            Work::Check(_, reply) => {
                let result = match outcome.error {
                    Some(e) => {
                        refunds.extend(outcome.charges.iter().map(Charge::negated));
                        Err(e)
                    }
                    None => Ok(outcome.charges.clone()),
                };
                if reply.send(result).is_err() {
                    refunds.extend(outcome.charges.iter().map(Charge::negated));
                }
            }
            Work::Release(_, _, done) => {
                let _ = done.send(());
            }
            Work::Adjust(_) => {}
        }
    }
    if !refunds.is_empty() {
        // Given back by this queue's next batch.
        queue
            .state
            .lock()
            .unwrap()
            .pending
            .push(Work::Adjust(refunds));
    }
}

/// The quotas of a namespace: the watch cache's (or the store's, when the
/// cache has none), each at the newest of its cached and last-written
/// versions.
async fn load_quotas(
    shared: &Shared,
    namespace: &str,
    queue: &Queue,
) -> Result<Vec<QuotaDoc>, ApiError> {
    let rq = lookup::resource("", "resourcequotas");
    let prefix = rq.key_prefix(Some(namespace));
    let mut objects: Vec<Value> = shared
        .cache
        .list(rq, &prefix, |_| true)
        .objects
        .iter()
        .map(|o| o.value())
        .collect();
    if objects.is_empty() {
        let listed = shared
            .store
            .list(&prefix, Default::default())
            .await
            .map_err(crate::rest::store_error)?;
        objects = listed
            .items
            .iter()
            .filter_map(|kv| {
                let mut v: Value = serde_json::from_slice(&kv.value).ok()?;
                set_resource_version(&mut v, kv.mod_revision);
                Some(v)
            })
            .collect();
    }
    let mut state = queue.state.lock().unwrap();
    let names: BTreeSet<String> = objects
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    state.written.retain(|name, _| names.contains(name));
    Ok(objects
        .into_iter()
        .map(|cached| {
            let name = cached["metadata"]["name"].as_str().unwrap_or("");
            let newer = state.written.get(name).filter(|w| {
                w["metadata"]["uid"] == cached["metadata"]["uid"]
                    && revision_of(w) > revision_of(&cached)
            });
            QuotaDoc::new(newer.cloned().unwrap_or(cached), rq)
        })
        .collect())
}

fn revision_of(obj: &Value) -> Revision {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// A quota as stored now, `None` if it is gone.
async fn reload(shared: &Shared, q: &QuotaDoc) -> Result<Option<QuotaDoc>, ApiError> {
    let kv = shared
        .store
        .get(&q.key)
        .await
        .map_err(crate::rest::store_error)?;
    Ok(kv.and_then(|kv| {
        let mut v: Value = serde_json::from_slice(&kv.value).ok()?;
        set_resource_version(&mut v, kv.mod_revision);
        Some(QuotaDoc::new(v, lookup::resource("", "resourcequotas")))
    }))
}

impl QuotaDoc {
    fn new(obj: Value, rq: &ResourceInfo) -> QuotaDoc {
        let meta = &obj["metadata"];
        let name = meta["name"].as_str().unwrap_or("").to_owned();
        QuotaDoc {
            key: rq.key(meta["namespace"].as_str(), &name),
            uid: meta["uid"].as_str().unwrap_or("").to_owned(),
            revision: revision_of(&obj),
            hard: hard_of(&obj),
            used: resources::parse(&obj["status"]["used"]),
            scopes: scopes_of(&obj),
            name,
            obj,
            dirty: false,
        }
    }

    fn stored(&self) -> Value {
        let mut obj = self.obj.clone();
        obj["status"]["hard"] = resources::to_json(&self.hard);
        obj["status"]["used"] = resources::to_json(&self.used);
        obj
    }
}

/// What a quota limits: `spec.hard` (which its `status.hard` follows).
fn hard_of(quota: &Value) -> ResourceList {
    let spec = &quota["spec"]["hard"];
    if spec.is_object() {
        resources::parse(spec)
    } else {
        resources::parse(&quota["status"]["hard"])
    }
}

fn scopes_of(quota: &Value) -> Vec<Scope> {
    let spec = &quota["spec"];
    let mut scopes: Vec<Scope> = spec["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| Scope {
            name: s.to_owned(),
            operator: "Exists".into(),
            values: Vec::new(),
        })
        .collect();
    for e in spec["scopeSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        scopes.push(Scope {
            name: e["scopeName"].as_str().unwrap_or("").to_owned(),
            operator: e["operator"].as_str().unwrap_or("").to_owned(),
            values: e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        });
    }
    scopes
}

/// Writes every changed quota among `active`, guarded by the revision read;
/// answers the indices whose write lost a race.
async fn write_dirty(
    shared: &Shared,
    queue: &Queue,
    quotas: &mut [QuotaDoc],
    active: &[usize],
) -> Vec<usize> {
    let mut failed = Vec::new();
    for &i in active {
        let q = &mut quotas[i];
        if !q.dirty {
            continue;
        }
        let mut stored = q.stored();
        if let Some(m) = stored["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        let bytes = Bytes::from(serde_json::to_vec(&stored).expect("a quota serializes"));
        match shared.store.update(&q.key, bytes, Some(q.revision)).await {
            Ok(revision) => {
                set_resource_version(&mut stored, revision);
                q.obj = stored.clone();
                q.revision = revision;
                q.dirty = false;
                queue
                    .state
                    .lock()
                    .unwrap()
                    .written
                    .insert(q.name.clone(), stored);
            }
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => failed.push(i),
            Err(e) => {
                warn!(error = %e, quota = %q.name, "writing a resource quota's usage");
                failed.push(i);
            }
        }
    }
    failed
}

/// Adds `delta` to a quota's usage, never below zero.
fn apply(q: &mut QuotaDoc, delta: &ResourceList) {
    for (k, d) in delta {
        if d.is_zero() || !q.hard.contains_key(k) {
            continue;
        }
        let have = q.used.get(k).copied().unwrap_or_default();
        let mut now = have.checked_add(d).unwrap_or(Quantity::MAX);
        if now.is_negative() {
            now = Quantity::zero();
        }
        q.used.insert(k.clone(), now);
        q.dirty = true;
    }
}

/// Upstream's CheckRequest for one write against the quotas in `active`:
/// the charges it makes, or why it is refused. Applies them unless dry run.
fn check(
    quotas: &mut [QuotaDoc],
    active: &[usize],
    namespace: &str,
    a: &Attrs,
) -> Result<Vec<Charge>, ApiError> {
    let gr = GroupResource {
        group: a.resource.group,
        resource: a.resource.plural,
    };
    let name = super::name_of(&a.obj);
    let forbidden = |why: String| ApiError::forbidden(gr, name, &why);
    let mut interesting = Vec::new();
    for &i in active {
        let q = &quotas[i];
        if !matches(q, a.resource, &a.obj) {
            continue;
        }
        let restricted = matching_resources(a.resource, q.hard.keys());
        if let Err(why) = constraints(a.resource, &restricted, &a.obj) {
            return Err(forbidden(format!("failed quota: {}: {why}", q.name)));
        }
        let missing: Vec<&String> = restricted
            .iter()
            .filter(|r| !q.used.contains_key(*r))
            .collect();
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(forbidden(format!(
                "status unknown for quota: {}, resources: {}",
                q.name,
                names.join(",")
            )));
        }
        interesting.push(i);
    }
    if interesting.is_empty() {
        return Ok(Vec::new());
    }
    let new_usage = usage(a.resource, &a.obj);
    let old_usage = match (a.operation, &a.old) {
        (Operation::Update, Some(old)) => Some((old, usage(a.resource, old))),
        _ => None,
    };
    let mut deltas = Vec::new();
    for &i in &interesting {
        let q = &quotas[i];
        let mut delta = new_usage.clone();
        if let Some((old, old_usage)) = &old_usage
            && matches(q, a.resource, old)
        {
            for (k, v) in old_usage {
                let now = delta.get(k).copied().unwrap_or_default();
                delta.insert(k.clone(), now.checked_sub(v).unwrap_or_default());
            }
        }
        let delta: ResourceList = resources::mask(&delta, q.hard.keys())
            .into_iter()
            .filter(|(_, v)| !v.is_zero())
            .collect();
        let requested: ResourceList = delta
            .iter()
            .filter(|(_, v)| !v.is_negative())
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let exceeded: Vec<String> = requested
            .iter()
            .filter(|(k, v)| {
                let used = q.used.get(*k).copied().unwrap_or_default();
                used.checked_add(v).unwrap_or(Quantity::MAX) > q.hard[*k]
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !exceeded.is_empty() {
            return Err(forbidden(format!(
                "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                q.name,
                resources::pretty(&resources::mask(&requested, &exceeded)),
                resources::pretty(&resources::mask(&q.used, &exceeded)),
                resources::pretty(&resources::mask(&q.hard, &exceeded)),
            )));
        }
        deltas.push((i, delta));
    }
    if a.dry_run {
        return Ok(Vec::new());
    }
    let mut charges = Vec::new();
    for (i, delta) in deltas {
        if delta.is_empty() {
            continue;
        }
        let q = &mut quotas[i];
        // Record what was actually applied, so a refund undoes it exactly.
        let before = q.used.clone();
        apply(q, &delta);
        let applied: ResourceList = delta
            .keys()
            .filter_map(|k| {
                let b = before.get(k).copied().unwrap_or_default();
                let a = q.used.get(k).copied().unwrap_or_default();
                let d = a.checked_sub(&b)?;
                (!d.is_zero()).then(|| (k.clone(), d))
            })
            .collect();
        if !applied.is_empty() {
            charges.push(Charge {
                namespace: namespace.to_owned(),
                quota: q.name.clone(),
                uid: q.uid.clone(),
                delta: applied,
            });
        }
    }
    Ok(charges)
}

/// Counts the usage a quota lacks from the objects in the watch cache,
/// caught up with the store first.
async fn fill_usage(
    shared: &Shared,
    namespace: &str,
    quotas: &mut [QuotaDoc],
) -> Result<(), ApiError> {
    if quotas
        .iter()
        .all(|q| q.hard.keys().all(|k| q.used.contains_key(k)))
    {
        return Ok(());
    }
    shared
        .cache
        .sync()
        .await
        .map_err(crate::rest::store_error)?;
    for q in quotas.iter_mut() {
        let missing: Vec<String> = q
            .hard
            .keys()
            .filter(|k| !q.used.contains_key(*k))
            .cloned()
            .collect();
        if missing.is_empty() {
            continue;
        }
        let counted = count(&shared.cache, namespace, q, &missing);
        for name in missing {
            let value = counted.get(&name).copied().unwrap_or_default();
            q.used.insert(name, value);
        }
        q.dirty = true;
    }
    Ok(())
}

/// The usage of `names` by the objects in `namespace` that `q` covers.
fn count(cache: &Cache, namespace: &str, q: &QuotaDoc, names: &[String]) -> ResourceList {
    let mut kinds: Vec<&'static ResourceInfo> = Vec::new();
    let mut add = |r: Option<&'static ResourceInfo>| {
        if let Some(r) = r
            && !kinds.iter().any(|k| k.storage_prefix == r.storage_prefix)
        {
            kinds.push(r);
        }
    };
    for name in names {
        if let Some(counted) = name.strip_prefix("count/") {
            let (plural, group) = counted.split_once('.').unwrap_or((counted, ""));
            add(lookup::resource_named(group, plural));
        } else if LEGACY_COUNTS.contains(&name.as_str()) {
            add(lookup::resource_named("", name));
        }
    }
    for plural in ["pods", "services", "persistentvolumeclaims"] {
        let r = lookup::resource("", plural);
        if !matching_resources(r, names).is_empty() {
            add(Some(r));
        }
    }
    let mut total = ResourceList::new();
    for kind in kinds {
        let names: Vec<String> = matching_resources(kind, names);
        if names.is_empty() {
            continue;
        }
        let listed = cache.list(kind, &kind.key_prefix(Some(namespace)), |_| true);
        for obj in &listed.objects {
            let obj = obj.value();
            if matches(q, kind, &obj) {
                resources::add_into(&mut total, &resources::mask(&usage(kind, &obj), &names));
            }
        }
    }
    total
}

// ---------------------------------------------------------------------------
// Evaluators: what an object uses, and which quotas cover it.

/// `count/<plural>` or `count/<plural>.<group>`.
fn count_name(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        format!("count/{}", r.plural)
    } else {
        format!("count/{}.{}", r.plural, r.group)
    }
}

fn is_core(r: &ResourceInfo, plural: &str) -> bool {
    r.group.is_empty() && r.plural == plural
}

/// An extended resource (`example.com/gpu`): a domain other than
/// kubernetes.io, and not already prefixed with `requests.`.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// The resources of `names` that an evaluator for `r` counts.
fn matching_resources<'a>(
    r: &ResourceInfo,
    names: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let count = count_name(r);
    names
        .into_iter()
        .filter(|n| {
            let n = n.as_str();
            if is_core(r, "pods") {
                POD_RESOURCES.contains(&n)
                    || n.starts_with("hugepages-")
                    || n.starts_with("requests.hugepages-")
                    || n.strip_prefix("requests.").is_some_and(is_extended)
            } else if is_core(r, "services") {
                SERVICE_RESOURCES.contains(&n)
            } else if is_core(r, "persistentvolumeclaims") {
                CLAIM_RESOURCES.contains(&n)
                    || n.split_once(STORAGE_CLASS_SUFFIX).is_some_and(|(_, what)| {
                        what == "requests.storage" || what == "persistentvolumeclaims"
                    })
            } else {
                n == count || (r.group.is_empty() && LEGACY_COUNTS.contains(&n) && n == r.plural)
            }
        })
        .cloned()
        .collect()
}

/// Upstream's evaluator Matches: the quota limits something the object
/// uses, and the object is in each of its scopes (only pods have scopes).
fn matches(q: &QuotaDoc, r: &ResourceInfo, obj: &Value) -> bool {
    if matching_resources(r, q.hard.keys()).is_empty() {
        return false;
    }
    q.scopes
        .iter()
        .all(|s| is_core(r, "pods") && pod_in_scope(s, obj))
}

fn pod_in_scope(scope: &Scope, pod: &Value) -> bool {
    let spec = &pod["spec"];
    match scope.name.as_str() {
        "Terminating" => is_terminating(spec),
        "NotTerminating" => !is_terminating(spec),
        "BestEffort" => is_best_effort(spec),
        "NotBestEffort" => !is_best_effort(spec),
        "PriorityClass" => {
            let class = spec["priorityClassName"].as_str().unwrap_or("");
            match scope.operator.as_str() {
                "Exists" => !class.is_empty(),
                "In" => scope.values.iter().any(|v| v == class),
                "NotIn" => !scope.values.iter().any(|v| v == class),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => cross_namespace_affinity(spec),
        _ => false,
    }
}

fn is_terminating(spec: &Value) -> bool {
    spec["activeDeadlineSeconds"]
        .as_i64()
        .is_some_and(|s| s >= 0)
}

/// The BestEffort QoS class: no container asks for or limits cpu or memory.
fn is_best_effort(spec: &Value) -> bool {
    super::containers(spec).all(|c| {
        ["requests", "limits"].iter().all(|f| {
            let list = resources::parse(&c["resources"][*f]);
            !list.contains_key("cpu") && !list.contains_key("memory")
        })
    })
}

fn cross_namespace_affinity(spec: &Value) -> bool {
    let affinity = &spec["affinity"];
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let a = &affinity[*kind];
        let required = a["requiredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten();
        let preferred = a["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| &p["podAffinityTerm"]);
        required.chain(preferred).any(|t| {
            t["namespaces"].as_array().is_some_and(|n| !n.is_empty())
                || t["namespaceSelector"].is_object()
        })
    })
}

/// Upstream's pod Constraints: when a quota limits cpu or memory, every
/// container must say what it needs of them.
fn constraints(r: &ResourceInfo, required: &[String], pod: &Value) -> Result<(), String> {
    if !is_core(r, "pods") {
        return Ok(());
    }
    const VALIDATION: &[&str] = &[
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let required: BTreeSet<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|n| VALIDATION.contains(n))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for key in ["containers", "initContainers"] {
        for c in pod["spec"][key].as_array().into_iter().flatten() {
            let usage = compute_usage(
                &resources::parse(&c["resources"]["requests"]),
                &resources::parse(&c["resources"]["limits"]),
            );
            for r in &required {
                if !usage.contains_key(*r) {
                    missing
                        .entry((*r).to_owned())
                        .or_default()
                        .insert(c["name"].as_str().unwrap_or("").to_owned());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, containers)| {
            format!(
                "{r} for: {}",
                containers.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// Upstream's podComputeUsageHelper.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let one = Quantity::from_value(1, Default::default());
    let mut usage = ResourceList::new();
    usage.insert("pods".into(), one);
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            usage.insert(r.into(), *q);
            usage.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            usage.insert(format!("limits.{r}"), *q);
        }
    }
    for (name, q) in requests {
        if name.starts_with("hugepages-") {
            usage.insert(name.clone(), *q);
            usage.insert(format!("requests.{name}"), *q);
        } else if is_extended(name) {
            usage.insert(format!("requests.{name}"), *q);
        }
    }
    usage
}

/// What an object uses, by resource name.
fn usage(r: &ResourceInfo, obj: &Value) -> ResourceList {
    let one = Quantity::from_value(1, Default::default());
    let mut usage = ResourceList::new();
    usage.insert(count_name(r), one);
    if is_core(r, "pods") {
        // A pod that has finished uses nothing but its place in storage.
        let phase = obj["status"]["phase"].as_str().unwrap_or("");
        if phase != "Succeeded" && phase != "Failed" {
            let spec = &obj["spec"];
            resources::add_into(
                &mut usage,
                &compute_usage(&resources::pod_requests(spec), &resources::pod_limits(spec)),
            );
        }
    } else if is_core(r, "services") {
        usage.insert("services".into(), one);
        let spec = &obj["spec"];
        let ports = spec["ports"].as_array().map_or(0, Vec::len) as i128;
        match spec["type"].as_str() {
            Some("NodePort") => {
                usage.insert(
                    "services.nodeports".into(),
                    Quantity::from_value(ports, Default::default()),
                );
            }
            Some("LoadBalancer") => {
                let node_ports = if spec["allocateLoadBalancerNodePorts"] == false {
                    spec["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|p| p["nodePort"].as_i64().is_some_and(|n| n != 0))
                        .count() as i128
                } else {
                    ports
                };
                usage.insert(
                    "services.nodeports".into(),
                    Quantity::from_value(node_ports, Default::default()),
                );
                usage.insert("services.loadbalancers".into(), one);
            }
            _ => {}
        }
    } else if is_core(r, "persistentvolumeclaims") {
        usage.insert("persistentvolumeclaims".into(), one);
        let class = obj["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
            .as_str()
            .or_else(|| obj["spec"]["storageClassName"].as_str())
            .unwrap_or("");
        if !class.is_empty() {
            usage.insert(
                format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                one,
            );
        }
        let requested = resources::quantity(&obj["spec"]["resources"]["requests"]["storage"]);
        let allocated = resources::quantity(&obj["status"]["allocatedResources"]["storage"]);
        if let Some(storage) = requested.max(allocated) {
            usage.insert("requests.storage".into(), storage);
            if !class.is_empty() {
                usage.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                    storage,
                );
            }
        }
    } else if r.group.is_empty() && LEGACY_COUNTS.contains(&r.plural) {
        usage.insert(r.plural.to_owned(), one);
    }
    usage
}

// ---------------------------------------------------------------------------
// The plugin.

/// Whether a write can change quota usage: creations of namespaced objects;
/// updates of pods (spec, or status reaching a final phase), services and
/// claims.
fn handles(req: &Request<'_>) -> bool {
    if !req.resource.namespaced || !req.resource.is_persisted() {
        return false;
    }
    match req.operation {
        Operation::Create => req.subresource.is_none(),
        Operation::Update => match (req.resource.group, req.resource.plural) {
            ("", "pods") => matches!(req.subresource, None | Some("status")),
            ("", "services" | "persistentvolumeclaims") => req.subresource.is_none(),
            _ => false,
        },
        Operation::Delete => false,
    }
}

/// The quotas of a namespace that count `r`.
async fn quotas_for(api: &Api, r: &ResourceInfo, namespace: &str) -> Result<bool, ApiError> {
    let quotas = lookup::namespaced(api, lookup::resource("", "resourcequotas"), namespace).await?;
    Ok(quotas
        .iter()
        .any(|q| !matching_resources(r, hard_of(q).keys()).is_empty()))
}

/// The validating phase: checks and charges the write.
pub async fn validate(req: &Request<'_>, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    if !handles(req) {
        return Ok(());
    }
    let namespace = namespace_of(obj);
    if namespace.is_empty() || !quotas_for(req.api, req.resource, namespace).await? {
        return Ok(());
    }
    if req.operation == Operation::Update
        && let Some(old) = old
        && usage(req.resource, obj) == usage(req.resource, old)
    {
        return Ok(());
    }
    let attrs = Attrs {
        resource: req.resource,
        operation: req.operation,
        obj: obj.clone(),
        old: old.cloned(),
        dry_run: req.dry_run,
    };
    let (reply, answer) = oneshot::channel();
    req.api
        .admission
        .quota
        .enqueue(namespace, Work::Check(Box::new(attrs), reply));
    match tokio::time::timeout(EVALUATION_TIMEOUT, answer).await {
        Ok(Ok(Ok(charges))) => {
            req.charges.record(charges);
            Ok(())
        }
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err(ApiError::internal("resource quota evaluation failed")),
        Err(_) => Err(ApiError::internal("resource quota evaluation timed out")),
    }
}

/// An object left the store: its usage is free.
pub async fn release(api: &Api, resource: &'static ResourceInfo, last: &Value) {
    if !resource.namespaced {
        return;
    }
    let namespace = namespace_of(last);
    match quotas_for(api, resource, namespace).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            warn!(error = %e, "looking up resource quotas");
            return;
        }
    }
    let (done, finished) = oneshot::channel();
    api.admission.quota.enqueue(
        namespace,
        Work::Release(resource, Box::new(last.clone()), done),
    );
    let _ = tokio::time::timeout(EVALUATION_TIMEOUT, finished).await;
}

/// A ResourceQuota being created or having its limits changed: its
/// `status.hard` follows `spec.hard`, and the usage it lacks is counted now
/// (the quota controller's first pass).
pub async fn admit_quota_object(req: &Request<'_>, quota: &mut Value) -> Result<(), ApiError> {
    if !req.is("", "resourcequotas")
        || req.subresource.is_some()
        || req.operation == Operation::Delete
    {
        return Ok(());
    }
    let namespace = namespace_of(quota).to_owned();
    lookup::forget(req.api, req.resource, &namespace);
    let hard = hard_of(quota);
    let mut doc = QuotaDoc::new(quota.clone(), req.resource);
    doc.used.retain(|k, _| hard.contains_key(k));
    let missing: Vec<String> = hard
        .keys()
        .filter(|k| !doc.used.contains_key(*k))
        .cloned()
        .collect();
    if !missing.is_empty() {
        req.api
            .cache
            .sync()
            .await
            .map_err(crate::rest::store_error)?;
        let counted = count(&req.api.cache, &namespace, &doc, &missing);
        for name in missing {
            let value = counted.get(&name).copied().unwrap_or_default();
            doc.used.insert(name, value);
        }
    }
    quota["status"] = json!({
        "hard": resources::to_json(&hard),
        "used": resources::to_json(&doc.used),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> &'static ResourceInfo {
        lookup::resource("", "pods")
    }

    fn quota(hard: Value, used: Value) -> QuotaDoc {
        QuotaDoc::new(
            json!({
                "metadata": {"name": "q", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
                "spec": {"hard": hard},
                "status": {"hard": hard, "used": used},
            }),
            lookup::resource("", "resourcequotas"),
        )
    }

    fn pod(cpu: Option<&str>) -> Value {
        let resources = match cpu {
            Some(cpu) => json!({"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}),
            None => json!({}),
        };
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "c", "resources": resources}]}})
    }

    fn create(obj: Value) -> Attrs {
        Attrs {
            resource: pods(),
            operation: Operation::Create,
            obj,
            old: None,
            dry_run: false,
        }
    }

    #[test]
    fn a_pod_over_the_limit_is_refused_with_upstreams_message() {
        let mut quotas = [quota(json!({"pods": "2"}), json!({"pods": "2"}))];
        let e = check(&mut quotas, &[0], "ns", &create(pod(None))).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods \"p\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
    }

    #[test]
    fn an_admitted_pod_is_charged_exactly() {
        let mut quotas = [quota(
            json!({"pods": "5", "requests.cpu": "2", "count/pods": "10"}),
            json!({"pods": "1", "requests.cpu": "500m", "count/pods": "1"}),
        )];
        let charges = check(&mut quotas, &[0], "ns", &create(pod(Some("250m")))).unwrap();
        assert_eq!(
            resources::pretty(&charges[0].delta),
            "count/pods=1,pods=1,requests.cpu=250m"
        );
        assert_eq!(
            resources::pretty(&quotas[0].used),
            "count/pods=2,pods=2,requests.cpu=750m"
        );
        assert!(quotas[0].dirty);
        let refund = charges[0].negated();
        apply(&mut quotas[0], &refund.delta);
        assert_eq!(
            resources::pretty(&quotas[0].used),
            "count/pods=1,pods=1,requests.cpu=500m"
        );
    }

    #[test]
    fn dry_runs_are_checked_but_not_charged() {
        let mut quotas = [quota(json!({"pods": "5"}), json!({"pods": "1"}))];
        let mut a = create(pod(None));
        a.dry_run = true;
        assert!(check(&mut quotas, &[0], "ns", &a).unwrap().is_empty());
        assert!(!quotas[0].dirty);
    }

    #[test]
    fn a_cpu_quota_needs_every_container_to_ask_for_cpu() {
        let mut quotas = [quota(
            json!({"requests.cpu": "1"}),
            json!({"requests.cpu": "0"}),
        )];
        let e = check(&mut quotas, &[0], "ns", &create(pod(None))).unwrap_err();
        assert_eq!(
            e.message,
            "pods \"p\" is forbidden: failed quota: q: must specify requests.cpu for: c"
        );
    }

    #[test]
    fn finished_pods_use_only_their_count() {
        let mut p = pod(Some("1"));
        p["status"]["phase"] = json!("Succeeded");
        assert_eq!(resources::pretty(&usage(pods(), &p)), "count/pods=1");
        assert_eq!(
            resources::pretty(&usage(pods(), &pod(Some("1")))),
            "count/pods=1,cpu=1,limits.cpu=1,pods=1,requests.cpu=1"
        );
    }

    #[test]
    fn scopes_select_pods() {
        let mut q = quota(json!({"pods": "1"}), json!({"pods": "0"}));
        q.scopes = vec![Scope {
            name: "BestEffort".into(),
            operator: "Exists".into(),
            values: vec![],
        }];
        assert!(matches(&q, pods(), &pod(None)));
        assert!(!matches(&q, pods(), &pod(Some("1"))));
        q.scopes = vec![Scope {
            name: "PriorityClass".into(),
            operator: "In".into(),
            values: vec!["high".into()],
        }];
        let mut p = pod(None);
        assert!(!matches(&q, pods(), &p));
        p["spec"]["priorityClassName"] = json!("high");
        assert!(matches(&q, pods(), &p));
        // Other kinds have no scopes: a scoped quota does not cover them.
        let q = {
            let mut q = quota(json!({"count/configmaps": "1"}), json!({}));
            q.scopes = vec![Scope {
                name: "BestEffort".into(),
                operator: "Exists".into(),
                values: vec![],
            }];
            q
        };
        assert!(!matches(&q, lookup::resource("", "configmaps"), &json!({})));
    }

    #[test]
    fn services_count_their_node_ports_and_load_balancers() {
        let svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(
            resources::pretty(&usage(lookup::resource("", "services"), &svc)),
            "count/services=1,services=1,services.loadbalancers=1,services.nodeports=2"
        );
    }

    #[test]
    fn claims_count_storage_per_class() {
        let pvc = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "5Gi"}}}});
        let names: Vec<String> = vec![
            "requests.storage".into(),
            "fast.storageclass.storage.k8s.io/requests.storage".into(),
            "pods".into(),
        ];
        let claims = lookup::resource("", "persistentvolumeclaims");
        assert_eq!(matching_resources(claims, &names), names[..2]);
        assert_eq!(
            resources::pretty(&resources::mask(&usage(claims, &pvc), &names)),
            "fast.storageclass.storage.k8s.io/requests.storage=5Gi,requests.storage=5Gi"
        );
    }

    #[test]
    fn object_counts_use_count_names_and_legacy_names() {
        let cm = lookup::resource("", "configmaps");
        let deploy = lookup::resource("apps", "deployments");
        let names: Vec<String> = vec![
            "configmaps".into(),
            "count/configmaps".into(),
            "count/deployments.apps".into(),
        ];
        assert_eq!(matching_resources(cm, &names), names[..2]);
        assert_eq!(matching_resources(deploy, &names), names[2..]);
    }

    #[test]
    fn an_update_is_charged_only_its_growth_and_releases_its_shrinking() {
        let svc = lookup::resource("", "services");
        let mut quotas = [quota(
            json!({"services.nodeports": "3"}),
            json!({"services.nodeports": "1"}),
        )];
        let old = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let mut new = old.clone();
        new["spec"]["ports"] = json!([{"port": 80}, {"port": 81}]);
        let a = Attrs {
            resource: svc,
            operation: Operation::Update,
            obj: new.clone(),
            old: Some(old.clone()),
            dry_run: false,
        };
        check(&mut quotas, &[0], "ns", &a).unwrap();
        assert_eq!(resources::pretty(&quotas[0].used), "services.nodeports=2");
        let back = Attrs {
            resource: svc,
            operation: Operation::Update,
            obj: old,
            old: Some(new),
            dry_run: false,
        };
        check(&mut quotas, &[0], "ns", &back).unwrap();
        assert_eq!(resources::pretty(&quotas[0].used), "services.nodeports=1");
    }
}
