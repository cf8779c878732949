//! A watched cache of one resource, indexed by namespace, that tells its
//! owner what changed as an informer's event handlers do: an object was
//! added, updated (old and new) or deleted. A relist (the watch restarted)
//! is diffed against what the cache held, so a change missed while the
//! watch was down still reaches the handler.
//!
//! The handler runs after the cache has the change and maps it to the
//! objects a controller must look at again; [`follow`] yields those, so the
//! stream plugs into `Controller::reconcile_on`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::channel::mpsc;
use futures::{Stream, StreamExt, stream};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

/// One change, as an informer reports it.
#[derive(Debug)]
pub(crate) enum Changed<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

impl<K> Clone for Changed<K> {
    fn clone(&self) -> Self {
        match self {
            Changed::Added(o) => Changed::Added(o.clone()),
            Changed::Updated { old, new } => Changed::Updated {
                old: old.clone(),
                new: new.clone(),
            },
            Changed::Deleted(o) => Changed::Deleted(o.clone()),
        }
    }
}

impl<K> Changed<K> {
    /// The object as it is now (or was, when deleted).
    pub fn latest(&self) -> &Arc<K> {
        match self {
            Changed::Added(o) | Changed::Deleted(o) => o,
            Changed::Updated { new, .. } => new,
        }
    }
}

type Objects<K> = HashMap<String, BTreeMap<String, Arc<K>>>;

/// A read handle on the cache; clones share it.
pub(crate) struct Cache<K> {
    shared: Arc<Inner<K>>,
}

struct Inner<K> {
    /// namespace ("" for cluster-scoped kinds) → name → object.
    objects: RwLock<Objects<K>>,
    /// True once the first complete list is in.
    ready: watch::Sender<bool>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            shared: self.shared.clone(),
        }
    }
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            shared: Arc::new(Inner {
                objects: RwLock::new(HashMap::new()),
                ready: watch::channel(false).0,
            }),
        }
    }
}

fn key_of<K: Resource>(obj: &K) -> (String, String) {
    let meta = obj.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// `obj` as it is cached: without what no controller reads.
fn strip<K: Resource>(mut obj: K) -> K {
    crate::framework::drop_managed_fields(&mut obj);
    obj
}

fn same_version<K: Resource>(a: &K, b: &K) -> bool {
    let (a, b) = (a.meta(), b.meta());
    a.resource_version.is_some() && a.resource_version == b.resource_version && a.uid == b.uid
}

impl<K: Resource> Cache<K> {
    /// The object `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let objects = self.shared.objects.read().expect("cache lock");
        objects.get(namespace)?.get(name).cloned()
    }

    /// Every object of `namespace`, by name.
    pub fn list(&self, namespace: &str) -> Vec<Arc<K>> {
        let objects = self.shared.objects.read().expect("cache lock");
        objects
            .get(namespace)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every object.
    pub fn all(&self) -> Vec<Arc<K>> {
        let objects = self.shared.objects.read().expect("cache lock");
        objects.values().flat_map(|m| m.values().cloned()).collect()
    }

    /// How many objects the cache holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let objects = self.shared.objects.read().expect("cache lock");
        objects.values().map(BTreeMap::len).sum()
    }

    /// Resolves once the first complete list is in (at once after that).
    pub async fn ready(&self) {
        let mut ready = self.shared.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Applies one watch event; answers what changed. `buffer` collects a
    /// relist until it is complete.
    pub(crate) fn apply(
        &self,
        event: watcher::Event<K>,
        buffer: &mut Option<HashMap<(String, String), Arc<K>>>,
    ) -> Vec<Changed<K>> {
        match event {
            watcher::Event::Apply(obj) => {
                let (ns, name) = key_of(&obj);
                let new = Arc::new(strip(obj));
                let old = {
                    let mut objects = self.shared.objects.write().expect("cache lock");
                    objects.entry(ns).or_default().insert(name, new.clone())
                };
                match old {
                    None => vec![Changed::Added(new)],
                    Some(old) if same_version(&*old, &*new) => Vec::new(),
                    Some(old) => vec![Changed::Updated { old, new }],
                }
            }
            watcher::Event::Delete(obj) => {
                let (ns, name) = key_of(&obj);
                {
                    let mut objects = self.shared.objects.write().expect("cache lock");
                    if let Some(m) = objects.get_mut(&ns) {
                        m.remove(&name);
                        if m.is_empty() {
                            objects.remove(&ns);
                        }
                    }
                }
                // The final state the watch reported.
                vec![Changed::Deleted(Arc::new(strip(obj)))]
            }
            watcher::Event::Init => {
                *buffer = Some(HashMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                buffer
                    .get_or_insert_with(HashMap::new)
                    .insert(key_of(&obj), Arc::new(strip(obj)));
                Vec::new()
            }
            watcher::Event::InitDone => {
                let listed = buffer.take().unwrap_or_default();
                let mut fresh: Objects<K> = HashMap::new();
                for ((ns, name), obj) in listed {
                    fresh.entry(ns).or_default().insert(name, obj);
                }
                let old = {
                    let mut objects = self.shared.objects.write().expect("cache lock");
                    std::mem::replace(&mut *objects, fresh.clone())
                };
                let changes = diff(&old, &fresh);
                self.shared.ready.send_replace(true);
                changes
            }
        }
    }
}

/// What turned `old` into `new`, as an informer's relist reports it.
fn diff<K: Resource>(old: &Objects<K>, new: &Objects<K>) -> Vec<Changed<K>> {
    let mut changes = Vec::new();
    for (ns, objects) in new {
        for (name, obj) in objects {
            match old.get(ns).and_then(|m| m.get(name)) {
                None => changes.push(Changed::Added(obj.clone())),
                Some(before) if same_version(&**before, &**obj) => {}
                Some(before) => changes.push(Changed::Updated {
                    old: before.clone(),
                    new: obj.clone(),
                }),
            }
        }
    }
    for (ns, objects) in old {
        for (name, obj) in objects {
            if new.get(ns).and_then(|m| m.get(name)).is_none() {
                changes.push(Changed::Deleted(obj.clone()));
            }
        }
    }
    changes
}

/// Feeds `events` into `cache` and yields what `handler` makes of every
/// change. Watch errors are logged (the watcher retries with backoff).
pub(crate) fn follow<K, R, I>(
    cache: Cache<K>,
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    mut handler: impl FnMut(&Changed<K>) -> I + Send + 'static,
) -> impl Stream<Item = R> + Send + 'static
where
    K: Resource + Send + Sync + 'static,
    R: Send + 'static,
    I: IntoIterator<Item = R>,
{
    let mut buffer = None;
    events
        .filter_map(|event| async move {
            match event {
                Ok(event) => Some(event),
                Err(error) => {
                    warn!(%error, "watch failed; retrying");
                    None
                }
            }
        })
        .flat_map(move |event| {
            let out: Vec<R> = cache
                .apply(event, &mut buffer)
                .iter()
                .flat_map(&mut handler)
                .collect();
            stream::iter(out)
        })
}

/// One watch of a resource shared by every controller that needs it (an
/// informer of upstream's shared informer factory): one cache, and every
/// change handed to each subscriber's handler. The watch starts with the
/// first subscriber and stops when this is dropped.
pub(crate) struct Shared<K> {
    api: Api<K>,
    cache: Cache<K>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Changed<K>>>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl<K> Shared<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Clone + Eq + std::hash::Hash,
{
    pub fn new(api: Api<K>) -> Self {
        Shared {
            api,
            cache: Cache::default(),
            subscribers: Arc::default(),
            task: Mutex::new(None),
        }
    }

    /// The shared cache, and the stream of what `handler` makes of each
    /// change from now on. A subscriber that comes after the cache has
    /// objects is first told of each as added (as upstream's informers do
    /// when a handler is added late), so every subscriber sees the same
    /// changes as with a watch of its own.
    pub fn subscribe<R, I>(
        &self,
        mut handler: impl FnMut(&Changed<K>) -> I + Send + 'static,
    ) -> (Cache<K>, impl Stream<Item = R> + Send + 'static)
    where
        R: Send + 'static,
        I: IntoIterator<Item = R>,
    {
        let (tx, rx) = mpsc::unbounded();
        {
            // Changes are sent under this lock after the cache has them: an
            // object is in this snapshot or its change comes after it.
            let mut subscribers = self.subscribers.lock().expect("subscribers lock");
            for obj in self.cache.all() {
                let _ = tx.unbounded_send(Changed::Added(obj));
            }
            subscribers.push(tx);
        }
        let mut task = self.task.lock().expect("task lock");
        if task.is_none() {
            let subscribers = self.subscribers.clone();
            let changes = follow(
                self.cache.clone(),
                watcher(self.api.clone(), watcher::Config::default()).default_backoff(),
                move |change: &Changed<K>| {
                    subscribers
                        .lock()
                        .expect("subscribers lock")
                        .retain(|s| s.unbounded_send(change.clone()).is_ok());
                    std::iter::empty::<()>()
                },
            );
            *task = Some(tokio::spawn(changes.for_each(|()| async {})));
        }
        let stream = rx.flat_map(move |change| {
            let out: Vec<R> = handler(&change).into_iter().collect();
            stream::iter(out)
        });
        (self.cache.clone(), stream)
    }
}

impl<K> Drop for Shared<K> {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().expect("task lock").take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn cm(ns: &str, name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                uid: Some(format!("{ns}-{name}")),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn kinds(changes: &[Changed<ConfigMap>]) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                let m = &c.latest().metadata;
                let what = match c {
                    Changed::Added(_) => "add",
                    Changed::Updated { .. } => "update",
                    Changed::Deleted(_) => "delete",
                };
                format!(
                    "{what} {}/{}",
                    m.namespace.as_deref().unwrap(),
                    m.name.as_deref().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn watch_events_become_adds_updates_and_deletes() {
        let cache = Cache::default();
        let mut buf = None;
        let c = cache.apply(watcher::Event::Apply(cm("a", "x", "1")), &mut buf);
        assert_eq!(kinds(&c), ["add a/x"]);
        let c = cache.apply(watcher::Event::Apply(cm("a", "x", "2")), &mut buf);
        assert_eq!(kinds(&c), ["update a/x"]);
        let c = cache.apply(watcher::Event::Apply(cm("a", "x", "2")), &mut buf);
        assert!(c.is_empty());
        assert_eq!(cache.list("a").len(), 1);
        let c = cache.apply(watcher::Event::Delete(cm("a", "x", "3")), &mut buf);
        assert_eq!(kinds(&c), ["delete a/x"]);
        assert!(cache.get("a", "x").is_none());
    }

    #[test]
    fn a_relist_is_diffed_against_the_cache() {
        let cache = Cache::default();
        let mut buf = None;
        cache.apply(watcher::Event::Apply(cm("a", "gone", "1")), &mut buf);
        cache.apply(watcher::Event::Apply(cm("a", "same", "1")), &mut buf);
        cache.apply(watcher::Event::Apply(cm("b", "changed", "1")), &mut buf);
        cache.apply(watcher::Event::Init, &mut buf);
        for obj in [
            cm("a", "same", "1"),
            cm("b", "changed", "5"),
            cm("c", "new", "6"),
        ] {
            assert!(
                cache
                    .apply(watcher::Event::InitApply(obj), &mut buf)
                    .is_empty()
            );
        }
        // Until the list is complete the cache answers as before.
        assert!(cache.get("a", "gone").is_some());
        let mut c = kinds(&cache.apply(watcher::Event::InitDone, &mut buf));
        c.sort();
        assert_eq!(c, ["add c/new", "delete a/gone", "update b/changed"]);
        assert!(cache.get("a", "gone").is_none());
        assert_eq!(cache.len(), 3);
    }
}
