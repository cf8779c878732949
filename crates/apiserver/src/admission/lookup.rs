//! The reads admission plugins make, as upstream's listers do: through the
//! watch cache, falling back to the store when the cache has nothing yet (a
//! "live lookup"), so an object written a moment ago is not missed.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_api_types::registry::{self, ResourceInfo};
use skiff_store::{KeyValue, ListOptions};

use crate::Api;
use crate::cache::set_resource_version;
use crate::rest::store_error;
use crate::status::ApiError;

/// How long a live list stands in for the cache's empty one (upstream's
/// `liveTTL`).
const LIVE_TTL: Duration = Duration::from_secs(30);

/// Lists read from the store, by resource and namespace, while the cache
/// shows none.
#[derive(Default)]
pub(super) struct LiveLists {
    entries: Mutex<HashMap<LiveKey, LiveList>>,
}

/// A resource's storage prefix and a namespace.
type LiveKey = (&'static str, String);
/// When a list was read, and what it held.
type LiveList = (Instant, Arc<Vec<Value>>);

/// The built-in resources by group and plural, each at its preferred
/// version (else its first).
static BUILT_IN: LazyLock<HashMap<(&'static str, &'static str), &'static ResourceInfo>> =
    LazyLock::new(|| {
        let mut map = HashMap::new();
        for r in registry::all() {
            let entry = map.entry((r.group, r.plural)).or_insert(r);
            if r.preferred && !entry.preferred {
                *entry = r;
            }
        }
        map
    });

/// The served resource `group`/`plural`, at its preferred version.
pub(super) fn resource(group: &str, plural: &str) -> &'static ResourceInfo {
    resource_named(group, plural)
        .unwrap_or_else(|| panic!("{plural}.{group} is a built-in resource"))
}

/// The built-in resource `group`/`plural`, if there is one.
pub(super) fn resource_named(group: &str, plural: &str) -> Option<&'static ResourceInfo> {
    BUILT_IN.get(&(group, plural)).copied()
}

fn parse(kv: &KeyValue) -> Option<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value).ok()?;
    set_resource_version(&mut obj, kv.mod_revision);
    Some(obj)
}

/// One object from the watch cache only.
pub(super) fn cached(
    api: &Api,
    resource: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> Option<Value> {
    api.cache
        .get(resource, &resource.key(namespace, name))
        .map(|o| o.value())
}

/// One object: from the watch cache, else read from the store.
pub(super) async fn get(
    api: &Api,
    resource: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    if let Some(obj) = cached(api, resource, namespace, name) {
        return Ok(Some(obj));
    }
    let kv = api
        .store
        .get(&resource.key(namespace, name))
        .await
        .map_err(store_error)?;
    Ok(kv.as_ref().and_then(parse))
}

/// Every object of `resource` in `namespace` (all of them for
/// cluster-scoped resources) that the watch cache holds.
pub(super) fn list(api: &Api, resource: &ResourceInfo, namespace: Option<&str>) -> Vec<Value> {
    api.cache
        .list(resource, &resource.key_prefix(namespace), |_| true)
        .objects
        .iter()
        .map(|o| o.value())
        .collect()
}

/// Every object of `resource` in `namespace` from the store.
pub(super) async fn list_live(
    api: &Api,
    resource: &ResourceInfo,
    namespace: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let listed = api
        .store
        .list(&resource.key_prefix(namespace), ListOptions::default())
        .await
        .map_err(store_error)?;
    Ok(listed.items.iter().filter_map(parse).collect())
}

/// Upstream's lister with live lookup: the cache's objects in `namespace`,
/// or when it holds none, the store's (remembered for [`LIVE_TTL`]).
pub(super) async fn namespaced(
    api: &Api,
    resource: &'static ResourceInfo,
    namespace: &str,
) -> Result<Arc<Vec<Value>>, ApiError> {
    let cached = list(api, resource, Some(namespace));
    if !cached.is_empty() {
        return Ok(Arc::new(cached));
    }
    let live = &api.admission.live;
    let key = (resource.storage_prefix, namespace.to_owned());
    if let Some((at, items)) = live.entries.lock().unwrap().get(&key)
        && at.elapsed() < LIVE_TTL
    {
        return Ok(items.clone());
    }
    let items = Arc::new(list_live(api, resource, Some(namespace)).await?);
    let mut entries = live.entries.lock().unwrap();
    entries.retain(|_, (at, _)| at.elapsed() < LIVE_TTL);
    entries.insert(key, (Instant::now(), items.clone()));
    Ok(items)
}

/// Forgets the live list of `resource` in `namespace`: this server is
/// writing one.
pub(super) fn forget(api: &Api, resource: &ResourceInfo, namespace: &str) {
    api.admission
        .live
        .entries
        .lock()
        .unwrap()
        .remove(&(resource.storage_prefix, namespace.to_owned()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_resolve_at_their_preferred_version() {
        assert_eq!(resource("", "pods").version, "v1");
        assert_eq!(
            resource("scheduling.k8s.io", "priorityclasses").kind,
            "PriorityClass"
        );
        assert!(resource_named("apps", "deployments").is_some());
        assert!(resource_named("apps", "nonsense").is_none());
    }
}
