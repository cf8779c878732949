//! CustomResourceDefinitions: every served version of every CRD becomes a
//! resource the generic REST code serves, within moments of the CRD's
//! creation (discovery included), and stops being one when the CRD goes.
//!
//! [`Crds`] is the per-server registry of those resources. A follower task
//! ([`follow`]) watches CRDs through the watch cache: it registers each CRD's
//! versions, writes the CRD's conditions (NamesAccepted, Established) and
//! stored versions, and — when a CRD is deleted — deletes its objects, then
//! drops the `customresourcecleanup.apiextensions.k8s.io` finalizer so the CRD
//! itself goes (upstream's finalizer controller).
//!
//! Objects are stored in the CRD's storage version and converted to the
//! version a request names ([`conversion`]: the `None` or `Webhook`
//! strategy) on reads, and to the storage version on writes.
//!
//! A resource is described by a `&'static ResourceInfo` like the built-in
//! ones; each distinct description is allocated once and reused, so the
//! memory kept is bounded by the number of distinct CRD shapes seen.

pub mod conversion;
pub mod schema;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api_types::registry::{Column, ResourceInfo, SubresourceInfo};
use tracing::{info, warn};

use crate::Api;
use crate::cache::{CachedObject, EventType};
use crate::status::ApiError;

/// The finalizer that holds a deleted CRD until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

const ALL_VERBS: &[&str] = &[
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// A printer column of a CRD version.
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    pub json_path: String,
}

/// The JSON paths of a CRD's scale subresource.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One served version of one CRD.
#[derive(Clone, Debug)]
pub struct Served {
    pub resource: &'static ResourceInfo,
    pub crd_name: String,
    pub schema: Option<Arc<Value>>,
    pub columns: Arc<Vec<PrinterColumn>>,
    pub scale: Option<ScalePaths>,
    /// The version objects are stored as.
    pub storage_version: String,
    /// How objects change version (`spec.conversion`).
    pub conversion: conversion::Strategy,
}

/// The per-server registry of CRD-defined resources.
#[derive(Default)]
pub struct Crds {
    served: RwLock<HashMap<(String, String, String), Served>>,
    /// Every ResourceInfo ever made, by its content, for reuse.
    interned: Mutex<HashMap<String, &'static ResourceInfo>>,
    /// A hash of each registered CRD's spec, to tell a change from an
    /// event that changed nothing served (a status update).
    specs: Mutex<HashMap<String, u64>>,
    /// Counts the changes to what is served.
    generation: AtomicU64,
    /// The OpenAPI v2 document with these CRDs, as last built.
    pub(crate) openapi_v2: crate::openapi::V2Cache,
}

fn leak_strs(v: Vec<String>) -> &'static [&'static str] {
    Box::leak(
        v.into_iter()
            .map(|s| &*Box::leak(s.into_boxed_str()))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

impl Crds {
    /// A CRD-defined resource by group, version and plural.
    pub fn lookup(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static ResourceInfo> {
        let served = self.served.read().unwrap();
        served
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
            .map(|s| s.resource)
    }

    /// What the server knows of a CRD-defined resource (None for built-ins).
    pub fn served(&self, resource: &ResourceInfo) -> Option<Served> {
        let served = self.served.read().unwrap();
        served
            .get(&(
                resource.group.to_owned(),
                resource.version.to_owned(),
                resource.plural.to_owned(),
            ))
            .cloned()
    }

    /// Changes whenever what is served changes (CRDs registered with a new
    /// spec, or unregistered), for what is built from it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Every served CRD version's resource.
    pub fn all(&self) -> Vec<&'static ResourceInfo> {
        let mut all: Vec<_> = self
            .served
            .read()
            .unwrap()
            .values()
            .map(|s| s.resource)
            .collect();
        all.sort_by_key(|r| (r.group, r.version, r.plural));
        all
    }

    /// The groups CRDs add, with their versions (preferred first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let served = self.served.read().unwrap();
        let mut groups: HashMap<String, Vec<(bool, String)>> = HashMap::new();
        for s in served.values() {
            let versions = groups.entry(s.resource.group.to_owned()).or_default();
            if !versions.iter().any(|(_, v)| v == s.resource.version) {
                versions.push((!s.resource.preferred, s.resource.version.to_owned()));
            }
        }
        let mut out: Vec<(String, Vec<String>)> = groups
            .into_iter()
            .map(|(g, mut v)| {
                v.sort_by(|a, b| {
                    a.0.cmp(&b.0)
                        .then_with(|| version_priority(&b.1).cmp(&version_priority(&a.1)))
                });
                (g, v.into_iter().map(|(_, v)| v).collect())
            })
            .collect();
        out.sort();
        out
    }

    /// Registers the served versions of a CRD (replacing what it served
    /// before); answers the resources now served.
    pub fn register(&self, crd: &Value) -> Vec<&'static ResourceInfo> {
        let name = crd["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or("");
        let names = &spec["names"];
        let plural = names["plural"].as_str().unwrap_or("");
        if group.is_empty() || plural.is_empty() {
            return Vec::new();
        }
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let versions: Vec<&Value> = spec["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["served"] == true)
            .collect();
        let storage_version = spec["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["storage"] == true)
            .and_then(|v| v["name"].as_str())
            .unwrap_or("")
            .to_owned();
        let preferred = versions
            .iter()
            .filter_map(|v| v["name"].as_str())
            .max_by_key(|v| version_priority(v))
            .unwrap_or("")
            .to_owned();
        let strategy = conversion::Strategy::from_spec(&spec["conversion"]);
        let mut now_served = Vec::new();
        let mut entries = Vec::new();
        for v in versions {
            let version = v["name"].as_str().unwrap_or("");
            let subresources = &v["subresources"];
            let mut subs = Vec::new();
            if subresources.get("status").is_some() {
                subs.push((
                    "status",
                    names["kind"].as_str().unwrap_or(""),
                    group,
                    version,
                ));
            }
            let scale = subresources.get("scale").map(|s| ScalePaths {
                spec_replicas: s["specReplicasPath"]
                    .as_str()
                    .unwrap_or(".spec.replicas")
                    .to_owned(),
                status_replicas: s["statusReplicasPath"]
                    .as_str()
                    .unwrap_or(".status.replicas")
                    .to_owned(),
                label_selector: s["labelSelectorPath"].as_str().map(str::to_owned),
            });
            if scale.is_some() {
                subs.push(("scale", "Scale", "autoscaling", "v1"));
            }
            let selectable: Vec<String> = v["selectableFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["jsonPath"].as_str())
                .map(|p| p.trim_start_matches('.').to_owned())
                .chain(["metadata.name".to_owned(), "metadata.namespace".to_owned()])
                .collect();
            let key = json!([
                group,
                version,
                plural,
                names,
                namespaced,
                subs,
                selectable,
                version == preferred
            ])
            .to_string();
            let info = {
                let mut interned = self.interned.lock().unwrap();
                *interned.entry(key).or_insert_with(|| {
                    let subresources: Vec<SubresourceInfo> = subs
                        .iter()
                        .map(|(n, kind, g, v)| SubresourceInfo {
                            name: leak(n),
                            group: leak(g),
                            version: leak(v),
                            kind: leak(kind),
                            verbs: STATUS_VERBS,
                        })
                        .collect();
                    Box::leak(Box::new(ResourceInfo {
                        group: leak(group),
                        version: leak(version),
                        kind: leak(names["kind"].as_str().unwrap_or("")),
                        list_kind: leak(
                            names["listKind"]
                                .as_str()
                                .map_or_else(
                                    || format!("{}List", names["kind"].as_str().unwrap_or("")),
                                    str::to_owned,
                                )
                                .as_str(),
                        ),
                        plural: leak(plural),
                        singular: leak(
                            names["singular"]
                                .as_str()
                                .map_or_else(
                                    || names["kind"].as_str().unwrap_or("").to_lowercase(),
                                    str::to_owned,
                                )
                                .as_str(),
                        ),
                        short_names: leak_strs(strings(&names["shortNames"])),
                        namespaced,
                        verbs: ALL_VERBS,
                        subresources: Box::leak(subresources.into_boxed_slice()),
                        categories: leak_strs(strings(&names["categories"])),
                        storage_prefix: leak(&format!("/registry/{group}/{plural}")),
                        columns: NO_COLUMNS,
                        field_selectors: leak_strs(selectable),
                        preferred: version == preferred,
                    }))
                })
            };
            let columns = printer_columns(&v["additionalPrinterColumns"]);
            let schema = v["schema"].get("openAPIV3Schema").cloned().map(Arc::new);
            now_served.push(info);
            entries.push((
                (group.to_owned(), version.to_owned(), plural.to_owned()),
                Served {
                    resource: info,
                    crd_name: name.clone(),
                    schema,
                    columns: Arc::new(columns),
                    scale,
                    storage_version: storage_version.clone(),
                    conversion: strategy.clone(),
                },
            ));
        }
        let mut served = self.served.write().unwrap();
        served.retain(|_, s| s.crd_name != name);
        served.extend(entries);
        drop(served);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        spec.to_string().hash(&mut hasher);
        let hash = hasher.finish();
        if self.specs.lock().unwrap().insert(name, hash) != Some(hash) {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        now_served
    }

    /// Stops serving a CRD's versions.
    pub fn unregister(&self, crd_name: &str) {
        self.served
            .write()
            .unwrap()
            .retain(|_, s| s.crd_name != crd_name);
        if self.specs.lock().unwrap().remove(crd_name).is_some() {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// CRD resources build their tables from printer columns, not from these.
const NO_COLUMNS: &[Column] = &[];

/// Upstream's version ordering: GA > beta > alpha, then by number.
fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or("");
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major: u32 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if digits.is_empty() {
        return (0, 0, 0);
    }
    match tail {
        "" => (3, major, 0),
        t if t.starts_with("beta") => (2, major, t[4..].parse().unwrap_or(0)),
        t if t.starts_with("alpha") => (1, major, t[5..].parse().unwrap_or(0)),
        _ => (0, 0, 0),
    }
}

fn printer_columns(columns: &Value) -> Vec<PrinterColumn> {
    let mut out: Vec<PrinterColumn> = columns
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| PrinterColumn {
            name: c["name"].as_str().unwrap_or("").to_owned(),
            type_: c["type"].as_str().unwrap_or("string").to_owned(),
            format: c["format"].as_str().unwrap_or("").to_owned(),
            description: c["description"].as_str().unwrap_or("").to_owned(),
            priority: c["priority"].as_i64().unwrap_or(0) as i32,
            json_path: c["jsonPath"].as_str().unwrap_or("").to_owned(),
        })
        .collect();
    // Upstream defaults a version without printer columns to an Age column.
    if out.is_empty() {
        out.push(PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        });
    }
    out
}

/// Evaluates the simple JSONPaths CRDs use: `.a.b`, `.a[0].b`, `.a[*].b`,
/// `.conditions[?(@.type=="Ready")].status`. Several matches join with ",".
pub fn json_path(obj: &Value, path: &str) -> Option<Value> {
    let mut current = vec![obj];
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            current = current.into_iter().filter_map(|v| v.get(key)).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let selector = &r[..end];
            rest = &r[end + 1..];
            current = if selector == "*" {
                current
                    .into_iter()
                    .flat_map(|v| v.as_array().into_iter().flatten())
                    .collect()
            } else if let Ok(i) = selector.parse::<usize>() {
                current.into_iter().filter_map(|v| v.get(i)).collect()
            } else if let Some(filter) = selector
                .strip_prefix("?(@.")
                .and_then(|f| f.strip_suffix(')'))
            {
                let (field, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches('"').trim_matches('\'');
                current
                    .into_iter()
                    .flat_map(|v| v.as_array().into_iter().flatten())
                    .filter(|item| match &item[field.trim()] {
                        Value::String(s) => s == want,
                        other => serde_json::to_string(other).ok().as_deref() == Some(want),
                    })
                    .collect()
            } else {
                return None;
            };
        } else {
            return None;
        }
    }
    match current.as_slice() {
        [] => None,
        [one] => Some((*one).clone()),
        many => Some(Value::String(
            many.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
        )),
    }
}

/// Whether `obj` is a custom resource stored at another version than the
/// one `resource` serves (and so needs its apiVersion rewritten).
pub fn needs_version(api: &Api, resource: &ResourceInfo, obj: &Value) -> bool {
    api.crds.served(resource).is_some()
        && obj["apiVersion"].as_str() != Some(resource.api_version().as_str())
}

/// Whether a cached object is in `api_version` already.
fn cached_in(api_version: &str, obj: &CachedObject) -> bool {
    let prefix = format!("{{\"apiVersion\":{}", Value::String(api_version.to_owned()));
    obj.raw.starts_with(prefix.as_bytes()) || obj.value()["apiVersion"] == api_version
}

/// A conversion failure, as upstream answers it.
fn failed(why: String) -> ApiError {
    ApiError::unexpected(why)
}

/// An object as `resource`'s version shows it: a custom resource in another
/// version is converted (its CRD's conversion strategy), as is a built-in
/// kind stored in another version (see [`crate::versions`]); anything else
/// is answered as it is.
pub async fn to_served(api: &Api, resource: &ResourceInfo, obj: Value) -> Result<Value, ApiError> {
    let wanted = resource.api_version();
    if obj["apiVersion"] == wanted.as_str() {
        return Ok(obj);
    }
    let Some(served) = api.crds.served(resource) else {
        return Ok(crate::versions::convert(&obj, &wanted).unwrap_or(obj));
    };
    let mut converted = conversion::convert(&api.cache, &served.conversion, vec![obj], &wanted)
        .await
        .map_err(failed)?;
    Ok(converted.pop().expect("as many objects out as in"))
}

/// An object about to be stored, converted to its storage version (a
/// custom resource's CRD's, or a built-in kind's, see [`crate::versions`]);
/// `None` when it is in it already.
pub async fn to_storage(
    api: &Api,
    resource: &ResourceInfo,
    obj: &Value,
) -> Result<Option<Value>, ApiError> {
    let Some(served) = api.crds.served(resource) else {
        return Ok(crate::versions::storage_version(resource)
            .and_then(|version| crate::versions::convert(obj, version)));
    };
    let wanted = format!("{}/{}", resource.group, served.storage_version);
    if served.storage_version.is_empty() || obj["apiVersion"] == wanted.as_str() {
        return Ok(None);
    }
    let mut converted =
        conversion::convert(&api.cache, &served.conversion, vec![obj.clone()], &wanted)
            .await
            .map_err(failed)?;
    Ok(converted.pop())
}

/// Cached objects as `resource`'s version shows them (one webhook call for
/// all custom resources that need converting).
pub async fn cached_to_served(
    api: &Api,
    resource: &ResourceInfo,
    objects: Vec<Arc<CachedObject>>,
) -> Result<Vec<Arc<CachedObject>>, ApiError> {
    match api.crds.served(resource) {
        Some(served) => cached_in_version(&api.cache, &served, resource, objects).await,
        None => Ok(builtin_in_version(resource, objects)),
    }
}

/// Cached built-in objects in `resource`'s version, for the kinds stored
/// in another (see [`crate::versions`]).
pub fn builtin_in_version(
    resource: &ResourceInfo,
    mut objects: Vec<Arc<CachedObject>>,
) -> Vec<Arc<CachedObject>> {
    if !crate::versions::converts(resource) {
        return objects;
    }
    let wanted = resource.api_version();
    for o in &mut objects {
        if cached_in(&wanted, o) {
            continue;
        }
        if let Some(value) = crate::versions::convert(&o.value(), &wanted) {
            *o = Arc::new(CachedObject::from_value(
                resource,
                o.key.clone(),
                &value,
                o.revision,
            ));
        }
    }
    objects
}

/// [`cached_to_served`] for a CRD's version already looked up (a watch
/// keeps it).
pub async fn cached_in_version(
    cache: &crate::cache::Cache,
    served: &Served,
    resource: &ResourceInfo,
    mut objects: Vec<Arc<CachedObject>>,
) -> Result<Vec<Arc<CachedObject>>, ApiError> {
    let wanted = resource.api_version();
    let pending: Vec<usize> = (0..objects.len())
        .filter(|&i| !cached_in(&wanted, &objects[i]))
        .collect();
    if pending.is_empty() {
        return Ok(objects);
    }
    let values = pending.iter().map(|&i| objects[i].value()).collect();
    let converted = conversion::convert(cache, &served.conversion, values, &wanted)
        .await
        .map_err(failed)?;
    for (i, value) in pending.into_iter().zip(converted) {
        let o = &objects[i];
        objects[i] = Arc::new(CachedObject::from_value(
            resource,
            o.key.clone(),
            &value,
            o.revision,
        ));
    }
    Ok(objects)
}

/// A table row's cells for a custom resource.
pub fn cells(columns: &[PrinterColumn], obj: &Value, now: i64) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            let v = json_path(obj, &c.json_path).unwrap_or(Value::Null);
            match (c.type_.as_str(), &v) {
                ("date", Value::String(s)) => match s.parse::<jiff::Timestamp>() {
                    Ok(t) => Value::String(skiff_api_types::registry::human_duration(
                        now - t.as_second(),
                    )),
                    Err(_) => v,
                },
                ("string", Value::Null) => Value::String("<none>".into()),
                (_, Value::Object(_) | Value::Array(_)) => Value::String(v.to_string()),
                _ => v,
            }
        })
        .collect()
}

/// The column definitions of a custom resource's table.
pub fn column_definitions(columns: &[PrinterColumn]) -> Vec<Value> {
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    defs.extend(columns.iter().map(|c| {
        json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
    }));
    defs
}

/// Follows CRDs for the server's lifetime.
pub async fn follow(api: Arc<Api>) {
    let crds = skiff_api_types::registry::lookup(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
    )
    .expect("CRDs are registered");
    loop {
        let start = match api.cache.watch(crds, None).await {
            Ok(start) => start,
            Err(e) => {
                warn!(error = %e, "watching CRDs failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        for event in start.backlog {
            handle(&api, event.kind, &event.object.value()).await;
        }
        let mut live = start.live;
        // Until lagged or closed; then start over from the current state.
        while let Ok(event) = live.recv().await {
            handle(&api, event.kind, &event.object.value()).await;
        }
    }
}

async fn handle(api: &Api, kind: EventType, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if kind == EventType::Deleted {
        api.crds.unregister(&name);
        info!(crd = %name, "stopped serving");
        return;
    }
    if crd["metadata"].get("deletionTimestamp").is_some() {
        cleanup(api, crd).await;
        return;
    }
    for resource in api.crds.register(crd) {
        api.cache.add_resource(resource);
    }
    establish(api, crd).await;
}

/// Writes NamesAccepted/Established, accepted names and stored versions.
async fn establish(api: &Api, crd: &Value) {
    let established = crd["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    let storage = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
        .unwrap_or("");
    let stored: Vec<String> = strings(&crd["status"]["storedVersions"]);
    if established
        && crd["status"]["acceptedNames"] == crd["spec"]["names"]
        && stored.iter().any(|v| v == storage)
    {
        return;
    }
    let key = crd_key(crd);
    let Ok(Some(kv)) = api.store.get(&key).await else {
        return;
    };
    let Ok(mut current) = serde_json::from_slice::<Value>(&kv.value) else {
        return;
    };
    let now = crate::rest::now_rfc3339();
    let mut stored = strings(&current["status"]["storedVersions"]);
    if !storage.is_empty() && !stored.iter().any(|v| v == storage) {
        stored.push(storage.to_owned());
    }
    current["status"] = json!({
        "acceptedNames": current["spec"]["names"].clone(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": stored,
    });
    let bytes = Bytes::from(serde_json::to_vec(&current).expect("serializes"));
    // A lost race is fine: the next event brings this back here.
    let _ = api.store.update(&key, bytes, Some(kv.mod_revision)).await;
}

fn crd_key(crd: &Value) -> String {
    format!(
        "/registry/apiextensions.k8s.io/customresourcedefinitions/{}",
        crd["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// A deleted CRD: delete its objects, then let it go.
async fn cleanup(api: &Api, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or("");
    let group = crd["spec"]["group"].as_str().unwrap_or("");
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or("");
    api.crds.unregister(name);
    let prefix = format!("/registry/{group}/{plural}/");
    loop {
        let Ok(page) = api
            .store
            .list(
                &prefix,
                skiff_store::ListOptions {
                    limit: 500,
                    ..Default::default()
                },
            )
            .await
        else {
            return;
        };
        if page.items.is_empty() {
            break;
        }
        for kv in page.items {
            let _ = api.store.delete(&kv.key, None).await;
        }
    }
    let key = crd_key(crd);
    let Ok(Some(kv)) = api.store.get(&key).await else {
        return;
    };
    let Ok(mut current) = serde_json::from_slice::<Value>(&kv.value) else {
        return;
    };
    let finalizers: Vec<Value> = current["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| *f != CLEANUP_FINALIZER)
        .cloned()
        .collect();
    if finalizers.is_empty() {
        let _ = api.store.delete(&key, Some(kv.mod_revision)).await;
    } else {
        current["metadata"]["finalizers"] = Value::Array(finalizers);
        let bytes = Bytes::from(serde_json::to_vec(&current).expect("serializes"));
        let _ = api.store.update(&key, bytes, Some(kv.mod_revision)).await;
    }
    info!(crd = %name, "deleted the CRD's objects");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                     "additionalPrinterColumns": [{"name": "Color", "type": "string", "jsonPath": ".spec.color"}],
                     "selectableFields": [{"jsonPath": ".spec.color"}]},
                    {"name": "v2alpha1", "served": false, "storage": false},
                ],
            },
        })
    }

    #[test]
    fn a_crd_serves_each_served_version_and_prefers_the_ga_one() {
        let crds = Crds::default();
        let served = crds.register(&crd());
        assert_eq!(served.len(), 2);
        let v1 = crds.lookup("example.com", "v1", "widgets").unwrap();
        assert!(v1.preferred && v1.namespaced);
        assert_eq!(v1.storage_prefix, "/registry/example.com/widgets");
        assert_eq!(
            v1.key(Some("ns"), "w"),
            "/registry/example.com/widgets/ns/w"
        );
        assert!(v1.subresource("status").is_some() && v1.subresource("scale").is_some());
        assert_eq!(
            v1.field_selectors,
            ["spec.color", "metadata.name", "metadata.namespace"]
        );
        assert!(crds.lookup("example.com", "v2alpha1", "widgets").is_none());
        assert_eq!(
            crds.groups(),
            [(
                "example.com".to_owned(),
                vec!["v1".to_owned(), "v1beta1".to_owned()]
            )]
        );
        // Registering the same CRD again reuses the same descriptions.
        crds.register(&crd());
        assert!(std::ptr::eq(
            v1,
            crds.lookup("example.com", "v1", "widgets").unwrap()
        ));
        crds.unregister("widgets.example.com");
        assert!(crds.lookup("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn json_paths_read_fields_indexes_and_filters() {
        let obj = json!({"spec": {"color": "red", "ports": [{"port": 80}, {"port": 443}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]}});
        assert_eq!(json_path(&obj, ".spec.color"), Some(json!("red")));
        assert_eq!(json_path(&obj, ".spec.ports[1].port"), Some(json!(443)));
        assert_eq!(
            json_path(&obj, ".spec.ports[*].port"),
            Some(json!("80,443"))
        );
        assert_eq!(
            json_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("True"))
        );
        assert_eq!(json_path(&obj, ".spec.missing"), None);
    }
}
