//! The watch cache: one storage watch on all of `/registry/`, fanned out to
//! every client watch, and the current state of every resource in memory, so
//! that a thousand watchers cost one storage watch and lists need no storage
//! read.
//!
//! Each object is kept as the JSON the API answers with (its
//! `resourceVersion` already set), with its labels and the values of the field
//! selectors its kind supports read out once, when it arrives. Lists and
//! watches filter on those without parsing the object again, and write the
//! stored bytes straight into responses.
//!
//! The cache follows the store's revision. A read that must be consistent
//! (upstream's "consistent read from cache") asks the store for its current
//! revision and waits until the cache has applied it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use skiff_api_types::registry::ResourceInfo;
use skiff_store::{Event, ListOptions, Revision, Store};
use tokio::sync::{broadcast, watch};
use tracing::{debug, warn};

/// Where CRDs are stored.
const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// How many recent events each resource keeps for watches that resume from
/// an older resourceVersion.
const EVENT_HISTORY: usize = 1024;

/// How long a consistent read waits for the cache before reading the store.
pub(crate) const CONSISTENT_READ_WAIT: Duration = Duration::from_secs(3);

/// One object as the cache holds it.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub namespace: Option<String>,
    pub name: String,
    pub revision: Revision,
    /// The object's JSON, `metadata.resourceVersion` set.
    pub raw: Bytes,
    pub labels: BTreeMap<String, String>,
    /// The values of the kind's selectable fields.
    pub fields: Vec<(&'static str, String)>,
}

impl CachedObject {
    /// Reads a stored object: `value` is what the store holds, `revision` its
    /// `mod_revision`.
    pub fn from_stored(
        resource: &ResourceInfo,
        key: String,
        value: &[u8],
        revision: Revision,
    ) -> Option<CachedObject> {
        let mut obj: Value = match serde_json::from_slice(value) {
            Ok(obj) => obj,
            Err(e) => {
                warn!(object.key = %key, error = %e, "stored object is not JSON; ignoring it");
                return None;
            }
        };
        set_resource_version(&mut obj, revision);
        Some(Self::from_value(resource, key, &obj, revision))
    }

    /// Builds the cached form of an object whose resourceVersion is set.
    pub fn from_value(
        resource: &ResourceInfo,
        key: String,
        obj: &Value,
        revision: Revision,
    ) -> CachedObject {
        let meta = &obj["metadata"];
        let labels = labels_of(obj);
        let fields = resource
            .field_selectors
            .iter()
            .map(|f| (*f, resource.field_value(obj, f).unwrap_or_default()))
            .collect();
        CachedObject {
            key,
            namespace: meta["namespace"].as_str().map(str::to_owned),
            name: meta["name"].as_str().unwrap_or_default().to_owned(),
            revision,
            raw: Bytes::from(serde_json::to_vec(obj).expect("a JSON value serializes")),
            labels,
            fields,
        }
    }

    /// The value of a selectable field; unknown fields read as "".
    pub fn field(&self, name: &str) -> Option<String> {
        match name {
            "metadata.name" => Some(self.name.clone()),
            "metadata.namespace" => Some(self.namespace.clone().unwrap_or_default()),
            _ => self
                .fields
                .iter()
                .find(|(f, _)| *f == name)
                .map(|(_, v)| v.clone()),
        }
    }

    /// The object, parsed.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.raw).expect("cached objects are JSON")
    }
}

/// An object's labels (non-string values are not labels).
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object.
#[derive(Clone, Debug)]
pub struct CachedEvent {
    pub kind: EventType,
    /// The object after the change; for a deletion, its last state (with the
    /// deletion's revision as resourceVersion, as upstream sends it).
    pub object: Arc<CachedObject>,
    /// The object before the change, for selector transitions.
    pub prev: Option<Arc<CachedObject>>,
    pub revision: Revision,
}

/// The cache of all resources.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    /// storage prefix → resource (built-in kinds, then CRDs as they come).
    resources: RwLock<HashMap<&'static str, &'static ResourceInfo>>,
    crds: Arc<crate::crd::Crds>,
    state: RwLock<State>,
    progress: watch::Sender<Revision>,
}

#[derive(Default)]
struct State {
    revision: Revision,
    resources: HashMap<&'static str, ResourceCache>,
}

struct ResourceCache {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CachedEvent>>,
    /// Watches can resume from any revision at or after this one.
    oldest: Revision,
    live: broadcast::Sender<Arc<CachedEvent>>,
}

impl ResourceCache {
    fn new(revision: Revision) -> Self {
        ResourceCache {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            oldest: revision,
            live: broadcast::channel(EVENT_HISTORY).0,
        }
    }
}

/// A snapshot for a list: the matching objects and the revision they are at.
pub struct Snapshot {
    pub revision: Revision,
    pub objects: Vec<Arc<CachedObject>>,
}

/// Where a new client watch starts.
pub struct WatchStart {
    /// Events to send first (initial state or resumed history), in order.
    pub backlog: Vec<Arc<CachedEvent>>,
    pub live: broadcast::Receiver<Arc<CachedEvent>>,
    /// The cache revision when the watch started.
    pub revision: Revision,
}

/// Why a watch cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld {
        requested: Revision,
        oldest: Revision,
    },
    #[error("Timeout: Too large resource version: {requested}, current: {current}")]
    TooNew {
        requested: Revision,
        current: Revision,
    },
}

impl Cache {
    /// Loads every resource from the store and starts following it.
    pub async fn start(
        store: Arc<dyn Store>,
        resources: &'static [ResourceInfo],
        crds: Arc<crate::crd::Crds>,
    ) -> skiff_store::Result<Cache> {
        let mut by_prefix = HashMap::new();
        for r in resources.iter().filter(|r| r.is_persisted()) {
            // Several versions of one resource share storage; the first listed
            // (the registry lists preferred versions first) reads it.
            by_prefix.entry(r.storage_prefix).or_insert(r);
        }
        let cache = Cache {
            inner: Arc::new(Inner {
                store,
                resources: RwLock::new(by_prefix),
                crds,
                state: RwLock::new(State::default()),
                progress: watch::channel(0).0,
            }),
        };
        let revision = cache.reload().await?;
        let follower = cache.clone();
        tokio::spawn(async move { follower.follow(revision).await });
        Ok(cache)
    }

    /// Reads everything under `/registry/` at one revision and replaces the
    /// cached state (ending every client watch, which must resume).
    async fn reload(&self) -> skiff_store::Result<Revision> {
        let store = &self.inner.store;
        let mut options = ListOptions::default();
        let mut resources: HashMap<&'static str, ResourceCache> = HashMap::new();
        let revision = loop {
            let page = store.list("/registry/", options.clone()).await?;
            // CRDs first: their objects are stored under prefixes they define.
            for kv in page
                .items
                .iter()
                .filter(|kv| kv.key.starts_with(CRD_PREFIX))
            {
                if let Ok(crd) = serde_json::from_slice::<Value>(&kv.value) {
                    for resource in self.inner.crds.register(&crd) {
                        self.add_resource(resource);
                    }
                }
            }
            for kv in page.items {
                if let Some(resource) = self.resource_of(&kv.key)
                    && let Some(obj) = CachedObject::from_stored(
                        resource,
                        kv.key.clone(),
                        &kv.value,
                        kv.mod_revision,
                    )
                {
                    resources
                        .entry(resource.storage_prefix)
                        .or_insert_with(|| ResourceCache::new(page.revision))
                        .objects
                        .insert(kv.key, Arc::new(obj));
                }
            }
            match page.next_key {
                Some(next) => {
                    options = ListOptions {
                        revision: page.revision,
                        limit: 5000,
                        start: Some(next),
                    }
                }
                None => break page.revision,
            }
        };
        for r in self.inner.resources.read().unwrap().keys() {
            resources
                .entry(r)
                .or_insert_with(|| ResourceCache::new(revision));
        }
        for rc in resources.values_mut() {
            rc.oldest = revision;
        }
        let mut state = self.inner.state.write().unwrap();
        *state = State {
            revision,
            resources,
        };
        drop(state);
        self.inner.progress.send_replace(revision);
        debug!(revision, "watch cache loaded");
        Ok(revision)
    }

    /// Follows the store from `revision` forever, reloading when the watch
    /// breaks.
    async fn follow(&self, mut revision: Revision) {
        loop {
            match self.inner.store.watch("/registry/", revision).await {
                Ok(mut events) => {
                    while let Some(event) = events.next().await {
                        match event {
                            Ok(event) => {
                                revision = event.revision();
                                self.apply(event);
                            }
                            Err(e) => {
                                warn!(error = %e, "storage watch ended; reloading the cache");
                                break;
                            }
                        }
                    }
                }
                Err(e) => warn!(error = %e, "storage watch failed; reloading the cache"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            match self.reload().await {
                Ok(r) => revision = r,
                Err(e) => warn!(error = %e, "reloading the cache failed; retrying"),
            }
        }
    }

    fn resource_of(&self, key: &str) -> Option<&'static ResourceInfo> {
        // Keys are `<prefix>/<namespace>/<name>` or `<prefix>/<name>`, and
        // prefixes have two or three segments (`/registry/services/specs`).
        let mut ends = key.match_indices('/').map(|(i, _)| i).skip(2);
        let two = ends.next()?;
        let three = ends.next();
        let resources = self.inner.resources.read().unwrap();
        three
            .and_then(|i| resources.get(&key[..i]))
            .or_else(|| resources.get(&key[..two]))
            .copied()
    }

    /// Starts caching a resource defined at run time (a CRD's). Objects the
    /// store already holds under its prefix are picked up at the next load;
    /// a new CRD has none.
    pub fn add_resource(&self, resource: &'static ResourceInfo) {
        let mut resources = self.inner.resources.write().unwrap();
        resources.entry(resource.storage_prefix).or_insert(resource);
    }

    fn apply(&self, event: Event) {
        let revision = event.revision();
        let Some(resource) = self.resource_of(event.key()) else {
            self.advance(revision);
            return;
        };
        let (kind, object) = match &event {
            Event::Put { kv, .. } => {
                let kind = if kv.create_revision == kv.mod_revision {
                    EventType::Added
                } else {
                    EventType::Modified
                };
                let Some(obj) =
                    CachedObject::from_stored(resource, kv.key.clone(), &kv.value, revision)
                else {
                    self.advance(revision);
                    return;
                };
                (kind, Some(Arc::new(obj)))
            }
            Event::Delete { .. } => (EventType::Deleted, None),
        };
        let key = event.key().to_owned();
        let mut state = self.inner.state.write().unwrap();
        state.revision = revision;
        let rc = state
            .resources
            .entry(resource.storage_prefix)
            .or_insert_with(|| ResourceCache::new(revision));
        let prev = match &object {
            Some(obj) => rc.objects.insert(key, obj.clone()),
            None => rc.objects.remove(&key),
        };
        let object = match object {
            Some(obj) => obj,
            None => {
                let Some(last) = prev.clone() else {
                    drop(state);
                    self.advance(revision);
                    return;
                };
                // A deletion carries the object's last state at the deletion's
                // revision.
                let mut value = last.value();
                set_resource_version(&mut value, revision);
                Arc::new(CachedObject::from_value(
                    resource,
                    last.key.clone(),
                    &value,
                    revision,
                ))
            }
        };
        let event = Arc::new(CachedEvent {
            kind,
            object,
            prev,
            revision,
        });
        if rc.history.len() == EVENT_HISTORY
            && let Some(dropped) = rc.history.pop_front()
        {
            rc.oldest = dropped.revision;
        }
        rc.history.push_back(event.clone());
        let _ = rc.live.send(event);
        drop(state);
        self.inner.progress.send_replace(revision);
    }

    fn advance(&self, revision: Revision) {
        self.inner.state.write().unwrap().revision = revision;
        self.inner.progress.send_replace(revision);
    }

    /// The revision the cache has applied.
    pub fn revision(&self) -> Revision {
        *self.inner.progress.borrow()
    }

    /// Waits until the cache has applied `revision`; false on timeout.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut progress = self.inner.progress.subscribe();
        tokio::time::timeout(timeout, progress.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until the cache holds every write the store has acknowledged;
    /// false if it could not catch up in time.
    pub async fn sync(&self) -> skiff_store::Result<bool> {
        let current = self.inner.store.current_revision().await?;
        Ok(self.wait_for(current, CONSISTENT_READ_WAIT).await)
    }

    /// One object by key.
    pub fn get(&self, resource: &ResourceInfo, key: &str) -> Option<Arc<CachedObject>> {
        let state = self.inner.state.read().unwrap();
        state
            .resources
            .get(resource.storage_prefix)?
            .objects
            .get(key)
            .cloned()
    }

    /// The objects under `prefix` (a resource's key prefix, possibly narrowed
    /// to a namespace) that `filter` accepts, at the cache's revision.
    pub fn list(
        &self,
        resource: &ResourceInfo,
        prefix: &str,
        filter: impl Fn(&CachedObject) -> bool,
    ) -> Snapshot {
        let state = self.inner.state.read().unwrap();
        let objects = state
            .resources
            .get(resource.storage_prefix)
            .map(|rc| {
                rc.objects
                    .range::<str, _>((
                        std::ops::Bound::Included(prefix),
                        std::ops::Bound::Unbounded,
                    ))
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .filter(|(_, o)| filter(o))
                    .map(|(_, o)| o.clone())
                    .collect()
            })
            .unwrap_or_default();
        Snapshot {
            revision: state.revision,
            objects,
        }
    }

    /// Starts a client watch on `resource` after `after`: `None` starts with
    /// the current state as ADDED events, `Some(rv)` resumes after `rv`.
    pub async fn watch(
        &self,
        resource: &ResourceInfo,
        after: Option<Revision>,
    ) -> Result<WatchStart, WatchError> {
        if let Some(requested) = after
            && requested > self.revision()
            && !self.wait_for(requested, CONSISTENT_READ_WAIT).await
        {
            return Err(WatchError::TooNew {
                requested,
                current: self.revision(),
            });
        }
        let mut state = self.inner.state.write().unwrap();
        let revision = state.revision;
        let rc = state
            .resources
            .entry(resource.storage_prefix)
            .or_insert_with(|| ResourceCache::new(revision));
        let live = rc.live.subscribe();
        let backlog = match after {
            None => rc
                .objects
                .values()
                .map(|o| {
                    Arc::new(CachedEvent {
                        kind: EventType::Added,
                        object: o.clone(),
                        prev: None,
                        revision: o.revision,
                    })
                })
                .collect(),
            Some(requested) if requested < rc.oldest => {
                return Err(WatchError::TooOld {
                    requested,
                    oldest: rc.oldest,
                });
            }
            Some(requested) => rc
                .history
                .iter()
                .filter(|e| e.revision > requested)
                .cloned()
                .collect(),
        };
        Ok(WatchStart {
            backlog,
            live,
            revision,
        })
    }
}
