//! The generic REST verbs: one code path serves every kind in the registry —
//! get, list, create, update, patch, delete and deletecollection, and the
//! `status`, `scale`, `binding` and `eviction` subresources — on JSON objects
//! in the store, following upstream's generic registry (k8s.io/apiserver
//! pkg/registry/generic/registry/store.go).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::Response;
use serde_json::{Value, json};
use skiff_api_types::registry::{CellContext, ResourceInfo};
use skiff_api_types::selector::{FieldSelector, LabelSelector};
use skiff_api_types::{defaults, validation};
use skiff_store::{Error as StoreError, ListOptions, Revision};

use crate::Api;
use crate::cache::{CachedObject, set_resource_version};
use crate::http_util::{Body, BodyType, Output, Query, Shape, decode_object};
use crate::patch;
use crate::request::RequestInfo;
use crate::status::{ApiError, GroupResource, success};
use crate::strategy;

/// How often an unguarded update retries after losing a race.
const MAX_RETRIES: usize = 16;

/// The target of one resource request, resolved against the registry.
pub(crate) struct Target<'a> {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub subresource: Option<&'a str>,
}

impl Target<'_> {
    fn gr(&self) -> GroupResource<'static> {
        GroupResource {
            group: self.resource.group,
            resource: self.resource.plural,
        }
    }

    fn scope(&self) -> Option<&str> {
        if self.resource.namespaced {
            self.namespace
        } else {
            None
        }
    }

    fn key(&self) -> String {
        self.resource
            .key(self.scope(), self.name.unwrap_or_default())
    }

    fn name(&self) -> &str {
        self.name.unwrap_or_default()
    }
}

/// Everything a verb handler needs about its request.
pub(crate) struct Call<'a> {
    pub api: &'a Api,
    pub info: &'a RequestInfo,
    pub target: Target<'a>,
    pub query: &'a Query,
    pub output: Output,
    pub body_type: Option<BodyType>,
    pub body: Bytes,
    pub user_agent: &'a str,
    /// Who is asking.
    pub user: &'a crate::User,
    /// `Warning` headers to send with the response.
    pub warnings: std::sync::Mutex<Vec<String>>,
}

type Reply = Result<Response<Body>, ApiError>;

/// Resolves a resource request and runs its verb.
pub(crate) async fn serve(call: Call<'_>) -> Response<Body> {
    let output = call.output;
    let mut response = match dispatch(&call).await {
        Ok(response) => response,
        Err(e) => output.encode(e.code, &e.to_status()),
    };
    for warning in call.warnings.lock().unwrap().iter() {
        let value = format!("299 - {}", serde_json::Value::String(warning.clone()));
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

/// Checks a body for fields its kind lacks, per `fieldValidation`.
fn validate_fields(call: &Call<'_>, obj: &Value) -> Result<(), ApiError> {
    let policy = crate::typed::FieldValidation::from_query(call.query.get("fieldValidation"))?;
    let r = call.target.resource;
    let warnings = match call.api.crds.served(r) {
        // A custom resource's fields are those of its version's schema.
        Some(served) => {
            let unknown = served
                .schema
                .map(|schema| crate::crd::schema::unknown_fields(obj, &schema))
                .unwrap_or_default();
            crate::typed::apply_policy(policy, r.version, r.kind, &unknown)?
        }
        None => crate::typed::check(policy, r.group, r.version, r.kind, obj)?,
    };
    call.warnings.lock().unwrap().extend(warnings);
    Ok(())
}

async fn dispatch(call: &Call<'_>) -> Reply {
    let t = &call.target;
    let verb = call.info.verb.as_str();
    let allowed = match t.subresource {
        None => t.resource.has_verb(verb),
        Some(sub) => t
            .resource
            .subresource(sub)
            .is_some_and(|s| s.verbs.contains(&verb)),
    };
    if !allowed {
        return Err(
            if t.subresource.is_some() && t.resource.subresource(t.subresource.unwrap()).is_none() {
                ApiError::no_route()
            } else {
                ApiError::method_not_allowed()
            },
        );
    }
    match (verb, t.subresource) {
        ("get", None) => get(call).await,
        ("list", None) => list(call).await,
        ("watch", None) => crate::watch::serve(call).await,
        ("create", None) => create(call).await,
        ("update", None | Some("status" | "finalize" | "approval")) => update(call).await,
        ("patch", None | Some("status" | "approval")) => patch(call).await,
        ("delete", None) => delete(call).await,
        ("deletecollection", None) => delete_collection(call).await,
        ("get", Some("status" | "approval")) => get(call).await,
        ("get" | "update" | "patch", Some("scale")) => scale(call).await,
        ("create", Some("binding")) => bind(call).await,
        ("create", Some("eviction")) => evict(call).await,
        ("create", Some("token")) if t.resource.plural == "serviceaccounts" => {
            crate::authn::token_request(call).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

// ---------------------------------------------------------------------------
// Reads

async fn get(call: &Call<'_>) -> Reply {
    let t = &call.target;
    let rv = call.query.non_empty("resourceVersion");
    let obj = match rv {
        // resourceVersion=0: any version will do, the cache's.
        Some(_) => call
            .api
            .cache
            .get(t.resource, &t.key())
            .map(|o| o.value())
            .ok_or_else(|| ApiError::not_found(t.gr(), t.name()))?,
        None => return Ok(render_one(call, &load(call.api, t).await?.0, 200)),
    };
    let obj = crate::crd::to_served(call.api, t.resource, obj).await?;
    Ok(render_one(call, &obj, 200))
}

/// Reads one object from the store (a consistent read), in the version the
/// target serves (a custom resource stored in another is converted).
pub(crate) async fn load(api: &Api, t: &Target<'_>) -> Result<(Value, Revision), ApiError> {
    let kv = api
        .store
        .get(&t.key())
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(t.gr(), t.name()))?;
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    set_resource_version(&mut obj, kv.mod_revision);
    let obj = crate::crd::to_served(api, t.resource, obj).await?;
    Ok((obj, kv.mod_revision))
}

/// The selectors of a list, watch or deletecollection.
pub(crate) struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn from_query(resource: &ResourceInfo, query: &Query) -> Result<Selectors, ApiError> {
        let labels = match query.non_empty("labelSelector") {
            Some(s) => LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            None => LabelSelector::everything(),
        };
        let fields = match query.non_empty("fieldSelector") {
            Some(s) => FieldSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?,
            None => FieldSelector::everything(),
        };
        for term in fields.terms() {
            let known = matches!(term.field.as_str(), "metadata.name" | "metadata.namespace")
                || resource.field_selectors.contains(&term.field.as_str());
            if !known {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    term.field
                )));
            }
        }
        Ok(Selectors { labels, fields })
    }

    pub fn matches(&self, obj: &CachedObject) -> bool {
        self.labels.matches(&obj.labels) && self.fields.matches(|f| obj.field(f))
    }
}

/// The position a paginated list continues from (upstream's continue token:
/// base64 JSON of the revision and the next key relative to the prefix).
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, next_key: &str, prefix: &str) -> String {
    let token = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: next_key.strip_prefix(prefix).unwrap_or(next_key).to_owned(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&token).expect("serializes"))
}

fn decode_continue(token: &str, prefix: &str) -> Result<(Revision, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: malformed continue token");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let token: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if token.v != "meta.k8s.io/v1" || token.rv <= 0 || token.start.contains("..") {
        return Err(bad());
    }
    Ok((token.rv, format!("{prefix}{}", token.start)))
}

async fn list(call: &Call<'_>) -> Reply {
    let t = &call.target;
    let selectors = Selectors::from_query(t.resource, call.query)?;
    let prefix = t.resource.key_prefix(t.scope());
    let limit: usize = match call.query.non_empty("limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
        None => 0,
    };
    let rv = call.query.non_empty("resourceVersion");
    let exact = call.query.get("resourceVersionMatch") == Some("Exact");
    let continue_token = call.query.non_empty("continue");
    let paged = continue_token.is_some() || (limit > 0 && rv != Some("0")) || exact;

    let (objects, revision, next) = if paged {
        // Paged and exact lists read the store at one revision.
        let (revision, start) = match (continue_token, rv) {
            (Some(token), _) => {
                let (rv, start) = decode_continue(token, &prefix)?;
                (rv, Some(start))
            }
            (None, Some(rv)) if exact => (parse_rv(rv)?, None),
            _ => (0, None),
        };
        list_from_store(
            call.api, t.resource, &prefix, &selectors, limit, revision, start,
        )
        .await?
    } else {
        // Everything else is served by the cache; a read with no
        // resourceVersion must see every acknowledged write first.
        let cache = &call.api.cache;
        match rv {
            None => {
                if !cache.sync().await.map_err(store_error)? {
                    return Err(ApiError::service_unavailable(
                        "the watch cache is not ready",
                    ));
                }
            }
            Some("0") => {}
            Some(rv) => {
                let rv = parse_rv(rv)?;
                if !cache.wait_for(rv, crate::cache::CONSISTENT_READ_WAIT).await {
                    return Err(ApiError::new_timeout(format!(
                        "Too large resource version: {rv}, current: {}",
                        cache.revision()
                    )));
                }
            }
        }
        let snapshot = cache.list(t.resource, &prefix, |o| selectors.matches(o));
        (snapshot.objects, snapshot.revision, None)
    };
    let continue_value = next
        .as_ref()
        .map(|(key, _)| encode_continue(revision, key, &prefix));
    let remaining = next.map(|(_, remaining)| remaining);
    let objects = served_objects(call, objects).await?;
    Ok(render_list(
        call,
        &objects,
        revision,
        continue_value,
        remaining,
    ))
}

fn parse_rv(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version {rv:?}")))
}

/// Reads a page from the store, filling it with matching objects until the
/// limit; answers the objects, the revision, and where to continue (the next
/// key and how many keys remain after it, when known).
#[allow(clippy::type_complexity)]
async fn list_from_store(
    api: &Api,
    resource: &'static ResourceInfo,
    prefix: &str,
    selectors: &Selectors,
    limit: usize,
    revision: Revision,
    start: Option<String>,
) -> Result<
    (
        Vec<Arc<CachedObject>>,
        Revision,
        Option<(String, Option<i64>)>,
    ),
    ApiError,
> {
    let mut objects = Vec::new();
    let mut options = ListOptions {
        revision,
        limit,
        start,
    };
    loop {
        let page = api.store.list(prefix, options.clone()).await.map_err(|e| match e {
            StoreError::Compacted { .. } => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ),
            other => store_error(other),
        })?;
        for kv in page.items {
            if let Some(obj) =
                CachedObject::from_stored(resource, kv.key, &kv.value, kv.mod_revision)
                && selectors.matches(&obj)
            {
                objects.push(Arc::new(obj));
            }
        }
        let full = limit > 0 && objects.len() >= limit;
        match page.next_key {
            Some(next) if full => {
                let filtered = !selectors.labels.is_empty() || !selectors.fields.is_empty();
                let remaining = (!filtered).then_some(page.remaining as i64);
                return Ok((objects, page.revision, Some((next, remaining))));
            }
            Some(next) => {
                options = ListOptions {
                    revision: page.revision,
                    limit: limit.saturating_sub(objects.len()).max(limit.max(1)),
                    start: Some(next),
                };
            }
            None => return Ok((objects, page.revision, None)),
        }
    }
}

// ---------------------------------------------------------------------------
// Rendering

/// The `kind` of a resource's list.
fn list_kind(resource: &ResourceInfo) -> &'static str {
    resource.list_kind
}

pub(crate) fn render_one(call: &Call<'_>, obj: &Value, code: u16) -> Response<Body> {
    let resource = call.target.resource;
    let converted;
    let obj = if crate::crd::needs_version(call.api, resource, obj) {
        let mut o = obj.clone();
        o["apiVersion"] = json!(resource.api_version());
        converted = o;
        &converted
    } else {
        obj
    };
    match call.output.shape {
        Shape::Object => call.output.encode(code, obj),
        Shape::PartialObjectMetadata => call.output.encode(code, &partial_metadata(obj)),
        Shape::Table => {
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let custom = call.api.crds.served(resource).map(|s| s.columns);
            let table = table(
                resource,
                custom.as_deref().map(Vec::as_slice),
                std::slice::from_ref(obj),
                &rv,
                None,
                call.query,
            );
            call.output.encode(code, &table)
        }
    }
}

/// Listed objects as the client's version shows them: custom resources read
/// through a version other than the stored one are converted (not for
/// metadata-only lists, whose objects' version does not show).
async fn served_objects(
    call: &Call<'_>,
    objects: Vec<Arc<CachedObject>>,
) -> Result<Vec<Arc<CachedObject>>, ApiError> {
    if call.output.shape == Shape::PartialObjectMetadata {
        return Ok(objects);
    }
    crate::crd::cached_to_served(call.api, call.target.resource, objects).await
}

fn render_list(
    call: &Call<'_>,
    objects: &[Arc<CachedObject>],
    revision: Revision,
    continue_value: Option<String>,
    remaining: Option<Option<i64>>,
) -> Response<Body> {
    let resource = call.target.resource;
    let mut meta = json!({ "resourceVersion": revision.to_string() });
    if let Some(c) = &continue_value {
        meta["continue"] = json!(c);
    }
    if let Some(Some(n)) = remaining {
        meta["remainingItemCount"] = json!(n);
    }
    match (call.output.shape, call.output.encoding) {
        (Shape::Object, crate::http_util::Encoding::Json) => {
            // Write the cached bytes straight into the response.
            let mut out =
                Vec::with_capacity(128 + objects.iter().map(|o| o.raw.len() + 1).sum::<usize>());
            out.extend_from_slice(b"{\"kind\":");
            serde_json::to_writer(&mut out, list_kind(resource)).expect("serializes");
            out.extend_from_slice(b",\"apiVersion\":");
            serde_json::to_writer(&mut out, &resource.api_version()).expect("serializes");
            out.extend_from_slice(b",\"metadata\":");
            serde_json::to_writer(&mut out, &meta).expect("serializes");
            out.extend_from_slice(b",\"items\":[");
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&o.raw);
            }
            out.extend_from_slice(b"]}");
            crate::http_util::response(200, "application/json", out)
        }
        (Shape::Object, _) => {
            let list = json!({
                "kind": list_kind(resource),
                "apiVersion": resource.api_version(),
                "metadata": meta,
                "items": objects.iter().map(|o| o.value()).collect::<Vec<_>>(),
            });
            call.output.encode(200, &list)
        }
        (Shape::PartialObjectMetadata, _) => {
            let list = json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": objects.iter().map(|o| partial_metadata(&o.value())).collect::<Vec<_>>(),
            });
            call.output.encode(200, &list)
        }
        (Shape::Table, _) => {
            let values: Vec<Value> = objects.iter().map(|o| o.value()).collect();
            let custom = call.api.crds.served(resource).map(|s| s.columns);
            let mut table = table(
                resource,
                custom.as_deref().map(Vec::as_slice),
                &values,
                &revision.to_string(),
                continue_value.as_deref(),
                call.query,
            );
            if let Some(Some(n)) = remaining {
                table["metadata"]["remainingItemCount"] = json!(n);
            }
            call.output.encode(200, &table)
        }
    }
}

/// An object's `PartialObjectMetadata`.
pub(crate) fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"].clone(),
    })
}

/// A `meta.k8s.io/v1` Table of objects with the registry's columns, or a
/// custom resource's printer columns (`custom`).
pub(crate) fn table(
    resource: &ResourceInfo,
    custom: Option<&[crate::crd::PrinterColumn]>,
    objects: &[Value],
    rv: &str,
    continue_value: Option<&str>,
    query: &Query,
) -> Value {
    let ctx = CellContext::now();
    let include = query.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells = match custom {
                Some(columns) => {
                    let mut cells = vec![obj["metadata"]["name"].clone()];
                    cells.extend(crate::crd::cells(columns, obj, ctx.now));
                    cells
                }
                None => resource.table_row(obj, &ctx),
            };
            let mut row = json!({ "cells": cells });
            match include {
                "None" => {}
                "Object" => row["object"] = obj.clone(),
                _ => row["object"] = partial_metadata(obj),
            }
            row
        })
        .collect();
    let columns: Vec<Value> = match custom {
        Some(columns) => crate::crd::column_definitions(columns),
        None => resource.columns.iter().map(|c| c.definition()).collect(),
    };
    let mut meta = json!({ "resourceVersion": rv });
    if let Some(c) = continue_value {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

// ---------------------------------------------------------------------------
// Writes

fn dry_run(query: &Query) -> Result<bool, ApiError> {
    match query.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dry run value: {other:?}; supported values: \"All\""
        ))),
    }
}

/// The field manager of a write: `fieldManager`, else the client's name from
/// its User-Agent (as upstream derives it).
fn field_manager(call: &Call<'_>) -> String {
    match call.query.non_empty("fieldManager") {
        Some(m) => m.to_owned(),
        None => call
            .user_agent
            .split('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_owned(),
    }
}

/// Decodes the request body, JSON, YAML or protobuf, into a JSON object.
fn decode_request(call: &Call<'_>) -> Result<Value, ApiError> {
    match call.body_type {
        Some(BodyType::Protobuf) => skiff_api_types::protobuf::decode(&call.body)
            .map_err(|e| ApiError::bad_request(format!("decoding the protobuf body: {e}"))),
        Some(BodyType::Yaml) => decode_object(&call.body, true),
        _ => decode_object(&call.body, false),
    }
}

/// Reads the body as an object of this resource's kind, filling in and
/// checking apiVersion, kind, namespace and name against the URL.
fn decode_body(call: &Call<'_>) -> Result<Value, ApiError> {
    let t = &call.target;
    let mut obj = decode_request(call)?;
    check_kind(t.resource, &mut obj)?;
    validate_fields(call, &obj)?;
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta = &mut obj["metadata"];
    if t.resource.namespaced {
        match (meta["namespace"].as_str(), t.namespace) {
            (Some(body_ns), Some(url_ns)) if !body_ns.is_empty() && body_ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (_, Some(url_ns)) => meta["namespace"] = json!(url_ns),
            _ => {}
        }
    } else if let Some(m) = meta.as_object_mut() {
        m.remove("namespace");
    }
    if let (Some(url_name), Some(body_name)) = (t.name, meta["name"].as_str())
        && !body_name.is_empty()
        && body_name != url_name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
        )));
    }
    if let Some(url_name) = t.name {
        meta["name"] = json!(url_name);
    }
    Ok(obj)
}

fn check_kind(resource: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let api_version = resource.api_version();
    match obj["apiVersion"].as_str() {
        None | Some("") => obj["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match obj["kind"].as_str() {
        None | Some("") => obj["kind"] = json!(resource.kind),
        Some(k) if k == resource.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind
            )));
        }
    }
    Ok(())
}

/// Defaults an object as decoding does upstream (before the server fills in
/// its own metadata).
fn default(api: &Api, resource: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    if let Some(served) = api.crds.served(resource) {
        // A custom resource: its version's schema prunes unknown fields and
        // defaults. It stays in the request's version through admission and
        // validation, and is converted to the storage version as it is
        // stored (see `for_store`).
        if let Some(schema) = served.schema {
            crate::crd::schema::prune_and_default(obj, &schema);
        }
        return Ok(());
    }
    defaults::apply_defaults(resource.group, resource.kind, obj)
        .map_err(|e| ApiError::bad_request(format!("decoding {}: {e}", resource.kind)))
}

/// Validates an object about to be written (`old` on update).
fn validate(
    api: &Api,
    resource: &ResourceInfo,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .or_else(|| obj["metadata"]["generateName"].as_str())
        .unwrap_or("")
        .to_owned();
    let mut errors =
        match validation::validate(resource.group, resource.kind, obj, old, resource.namespaced) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.0,
        };
    if let Some(schema) = api.crds.served(resource).and_then(|s| s.schema) {
        errors.extend(crate::crd::schema::validate(obj, &schema));
    }
    if (resource.group, resource.kind) == ("scheduling.k8s.io", "PriorityClass") {
        errors.extend(crate::admission::priority::class_errors(obj, old));
    }
    errors.extend(crate::admission::expression_errors(resource, obj));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            resource.group,
            resource.kind,
            &name,
            &validation::FieldErrors(errors),
        ))
    }
}

/// What the store keeps of `obj` (see [`to_stored`]), a custom resource
/// converted to its storage version first; and the converted object when it
/// was converted.
async fn for_store(
    api: &Api,
    resource: &ResourceInfo,
    obj: &Value,
) -> Result<(Bytes, Option<Value>), ApiError> {
    match crate::crd::to_storage(api, resource, obj).await? {
        Some(stored) => Ok((to_stored(&stored), Some(stored))),
        None => Ok((to_stored(obj), None)),
    }
}

/// A written object as the writer's version shows it: `obj` as it was sent,
/// or — when it was converted for storage — what was stored, converted back
/// (as upstream answers writes through conversion webhooks).
async fn written(
    api: &Api,
    resource: &ResourceInfo,
    mut obj: Value,
    converted: Option<Value>,
    rev: Revision,
) -> Result<Value, ApiError> {
    match converted {
        Some(mut stored) => {
            set_resource_version(&mut stored, rev);
            crate::crd::to_served(api, resource, stored).await
        }
        None => {
            set_resource_version(&mut obj, rev);
            Ok(obj)
        }
    }
}

/// The JSON the store keeps: no resourceVersion (the store's revision is it).
fn to_stored(obj: &Value) -> Bytes {
    let mut obj = obj.clone();
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&obj).expect("serializes"))
}

pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random (version 4) UUID, as upstream's object uids.
pub(crate) fn new_uid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Five random characters, from upstream's alphabet for generated names.
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Checks that a namespaced object's namespace exists and is not terminating
/// (the NamespaceLifecycle admission rule).
async fn check_namespace(
    api: &Api,
    resource: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let Some(ns) = namespace.filter(|_| resource.namespaced) else {
        return Ok(());
    };
    let namespaces = skiff_api_types::registry::lookup("", "v1", "namespaces")
        .expect("namespaces are registered");
    let key = namespaces.key(None, ns);
    let found = match api.cache.get(namespaces, &key) {
        Some(obj) => Some(obj.value()),
        None => api
            .store
            .get(&key)
            .await
            .map_err(store_error)?
            .and_then(|kv| serde_json::from_slice(&kv.value).ok()),
    };
    let Some(found) = found else {
        return Err(ApiError::not_found(
            GroupResource {
                group: "",
                resource: "namespaces",
            },
            ns,
        ));
    };
    if found["status"]["phase"] == "Terminating"
        || found["metadata"].get("deletionTimestamp").is_some()
    {
        return Err(ApiError::forbidden(
            GroupResource {
                group: resource.group,
                resource: resource.plural,
            },
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

async fn create(call: &Call<'_>) -> Reply {
    let t = &call.target;
    let obj = decode_body(call)?;
    if t.resource.namespaced && t.namespace.is_none() {
        return Err(ApiError::no_route());
    }
    if !t.resource.is_persisted() {
        // Reviews are answered, never stored.
        return crate::reviews::create(call, obj).await;
    }
    let dry = dry_run(call.query)?;
    let obj = create_object_warned(
        call.api,
        Some(call.user),
        t.resource,
        obj,
        Some(&field_manager(call)),
        dry,
        Some(&call.warnings),
    )
    .await?;
    Ok(render_one(call, &obj, 201))
}

/// Creates an object: names it (generateName), fills in what the server
/// owns, defaults, validates and admits it, and writes it unless `dry`.
/// `manager` is recorded in managedFields as the owner of what it set; `None`
/// when the fields were tracked already (server-side apply). `user` is `None`
/// for the server's own writes.
pub(crate) async fn create_object(
    api: &Api,
    user: Option<&crate::User>,
    resource: &'static ResourceInfo,
    obj: Value,
    manager: Option<&str>,
    dry: bool,
) -> Result<Value, ApiError> {
    create_object_warned(api, user, resource, obj, manager, dry, None).await
}

/// [`create_object`], sending admission's warnings to `warnings`.
pub(crate) async fn create_object_warned(
    api: &Api,
    user: Option<&crate::User>,
    resource: &'static ResourceInfo,
    mut obj: Value,
    manager: Option<&str>,
    dry: bool,
    warnings: Option<&std::sync::Mutex<Vec<String>>>,
) -> Result<Value, ApiError> {
    let gr = GroupResource {
        group: resource.group,
        resource: resource.plural,
    };
    if obj["metadata"]["resourceVersion"]
        .as_str()
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let named = obj["metadata"]["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    if !named && let Some(prefix) = obj["metadata"]["generateName"].as_str().map(str::to_owned) {
        obj["metadata"]["name"] = json!(format!("{prefix}{}", name_suffix()));
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let namespace = obj["metadata"]["namespace"].as_str().map(str::to_owned);
    default(api, resource, &mut obj)?;
    strategy::prepare_for_create(resource, &mut obj);
    if let Some(user) = user {
        strategy::record_requester(resource, &mut obj, user);
    }
    obj["metadata"]["uid"] = json!(new_uid());
    obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
    strategy::prepare_created(resource, &mut obj)?;
    let mut admission = crate::admission::Request::new(
        api,
        user,
        crate::admission::Operation::Create,
        resource,
        None,
        dry,
    );
    if let Some(warnings) = warnings {
        admission = admission.with_warnings(warnings);
    }
    // As upstream, the manager owns what it sent (and its defaults), not
    // what admission adds.
    if let Some(manager) = manager {
        patch::track_update(resource, None, &mut obj, manager, None, &now_rfc3339());
    }
    crate::admission::mutate(&admission, &mut obj, None).await?;
    if let Some(user) = user {
        crate::authz::check_escalation(api, user, resource, &obj, None).await?;
    }
    validate(api, resource, &obj, None)?;
    crate::admission::validate(&admission, &obj, None).await?;
    check_namespace(api, resource, namespace.as_deref(), &name).await?;
    if dry {
        return Ok(obj);
    }
    let key = resource.key(
        if resource.namespaced {
            namespace.as_deref()
        } else {
            None
        },
        &name,
    );
    let is_service = is_service(resource);
    if is_service {
        if api.store.get(&key).await.map_err(store_error)?.is_some() {
            return Err(ApiError::already_exists(gr, &name));
        }
        crate::allocator::allocate(api, &mut obj).await?;
    }
    let (bytes, converted) = match for_store(api, resource, &obj).await {
        Ok(stored) => stored,
        Err(e) => {
            if is_service {
                crate::allocator::release(api, &obj).await;
            }
            return Err(e);
        }
    };
    let rev = match api.store.create(&key, bytes).await {
        Ok(rev) => rev,
        Err(e) => {
            if is_service {
                crate::allocator::release(api, &obj).await;
            }
            return Err(match e {
                StoreError::AlreadyExists { .. } => ApiError::already_exists(gr, &name),
                e => store_error(e),
            });
        }
    };
    admission.commit();
    written(api, resource, obj, converted, rev).await
}

fn is_service(resource: &ResourceInfo) -> bool {
    (resource.group, resource.plural) == ("", "services")
}

/// The outcome of a guarded read-modify-write.
enum Written {
    /// Written at this revision (or unchanged).
    Updated(Value),
    /// The write removed the last finalizer of an object being deleted: it is
    /// gone.
    Deleted(Value),
}

/// Upstream's GuaranteedUpdate: reads the object, lets `mutate` produce the
/// new one (recording the field manager's changes when `track`), and writes it guarded by the revision read, retrying when
/// another writer won the race — unless `precondition` pins a
/// resourceVersion, whose mismatch is a 409.
async fn guaranteed_update(
    call: &Call<'_>,
    track: bool,
    mut mutate: impl FnMut(&Value) -> Result<Value, ApiError>,
) -> Result<Written, ApiError> {
    let t = &call.target;
    let dry = dry_run(call.query)?;
    for _ in 0..MAX_RETRIES {
        let (current, rev) = load(call.api, t).await?;
        let mut new = mutate(&current)?;
        let pinned = new["metadata"]["resourceVersion"]
            .as_str()
            .filter(|rv| !rv.is_empty())
            .map(|rv| rv.parse::<Revision>().unwrap_or(-1));
        if let Some(pinned) = pinned
            && pinned != rev
        {
            return Err(ApiError::conflict_modified(t.gr(), t.name()));
        }
        default(call.api, t.resource, &mut new)?;
        strategy::prepare_for_update(t.resource, &mut new, &current, t.subresource);
        let admission = crate::admission::Request::new(
            call.api,
            Some(call.user),
            crate::admission::Operation::Update,
            t.resource,
            t.subresource,
            dry,
        )
        .with_warnings(&call.warnings);
        // As upstream, the manager owns what it changed, not what admission
        // adds.
        if track {
            patch::track_update(
                t.resource,
                Some(&current),
                &mut new,
                &field_manager(call),
                t.subresource,
                &now_rfc3339(),
            );
        }
        crate::admission::mutate(&admission, &mut new, Some(&current)).await?;
        crate::authz::check_escalation(call.api, call.user, t.resource, &new, Some(&current))
            .await?;
        // A binding sets the node of a pod, which a pod update may not do:
        // upstream's binding path writes it without update validation.
        if t.subresource != Some("binding") {
            validate(call.api, t.resource, &new, Some(&current))?;
        }
        crate::admission::validate(&admission, &new, Some(&current)).await?;
        if is_service(t.resource) && t.subresource.is_none() && !dry {
            crate::allocator::reallocate(call.api, &mut new, &current).await?;
        }
        set_resource_version(&mut new, rev);
        if new == current {
            return Ok(Written::Updated(current));
        }
        // A namespace also waits for its spec.finalizers (the namespace
        // controller's), as upstream's ShouldDeleteNamespaceDuringUpdate.
        let is_namespace = (t.resource.group, t.resource.plural) == ("", "namespaces");
        let finalized = new["metadata"].get("deletionTimestamp").is_some()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty())
            && (!is_namespace
                || new["spec"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty()))
            && new["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
                == 0;
        if dry {
            return Ok(Written::Updated(new));
        }
        if finalized {
            return match call.api.store.delete(&t.key(), Some(rev)).await {
                Ok((rev, _)) => {
                    admission.commit();
                    if is_service(t.resource) {
                        crate::allocator::release(call.api, &new).await;
                    }
                    crate::admission::deleted(call.api, t.resource, &new).await;
                    set_resource_version(&mut new, rev);
                    Ok(Written::Deleted(new))
                }
                Err(StoreError::Conflict { .. }) if pinned.is_none() => continue,
                Err(StoreError::Conflict { .. }) => {
                    Err(ApiError::conflict_modified(t.gr(), t.name()))
                }
                Err(StoreError::NotFound { .. }) => Err(ApiError::not_found(t.gr(), t.name())),
                Err(e) => Err(store_error(e)),
            };
        }
        let (bytes, converted) = for_store(call.api, t.resource, &new).await?;
        match call.api.store.update(&t.key(), bytes, Some(rev)).await {
            Ok(rev) => {
                admission.commit();
                let new = written(call.api, t.resource, new, converted, rev).await?;
                return Ok(Written::Updated(new));
            }
            Err(StoreError::Conflict { .. }) if pinned.is_none() => continue,
            Err(StoreError::Conflict { .. }) => {
                return Err(ApiError::conflict_modified(t.gr(), t.name()));
            }
            Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(t.gr(), t.name())),
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ApiError::conflict(
        call.target.gr(),
        call.target.name(),
        "too many concurrent writers; try again",
    ))
}

fn written_reply(call: &Call<'_>, written: Written) -> Reply {
    match written {
        Written::Updated(obj) | Written::Deleted(obj) => Ok(render_one(call, &obj, 200)),
    }
}

/// Whether the target object is stored (a consistent read).
async fn exists(api: &Api, t: &Target<'_>) -> Result<bool, ApiError> {
    Ok(api
        .store
        .get(&t.key())
        .await
        .map_err(store_error)?
        .is_some())
}

async fn update(call: &Call<'_>) -> Reply {
    let t = &call.target;
    let body = decode_body(call)?;
    let exists = exists(call.api, t).await?;
    if !exists {
        if t.subresource.is_none() && strategy::allows_create_on_update(t.resource) {
            let mut obj = body;
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            let create_call = Call {
                body: Bytes::from(serde_json::to_vec(&obj).expect("serializes")),
                body_type: Some(BodyType::Json),
                ..clone_call(call)
            };
            return create(&create_call).await;
        }
        return Err(ApiError::not_found(t.gr(), t.name()));
    }
    let written = guaranteed_update(call, true, |_| Ok(body.clone())).await?;
    written_reply(call, written)
}

fn clone_call<'a>(call: &Call<'a>) -> Call<'a> {
    Call {
        api: call.api,
        info: call.info,
        target: Target {
            resource: call.target.resource,
            namespace: call.target.namespace,
            name: call.target.name,
            subresource: call.target.subresource,
        },
        query: call.query,
        output: call.output,
        body_type: call.body_type,
        body: call.body.clone(),
        user_agent: call.user_agent,
        user: call.user,
        warnings: std::sync::Mutex::new(Vec::new()),
    }
}

async fn patch(call: &Call<'_>) -> Reply {
    let t = &call.target;
    let body_type = call.body_type.unwrap_or(BodyType::MergePatch);
    if body_type == BodyType::ApplyPatch {
        return apply(call).await;
    }
    let kind = match body_type {
        BodyType::JsonPatch => patch::PatchKind::Json,
        BodyType::MergePatch => patch::PatchKind::Merge,
        BodyType::StrategicMergePatch => patch::PatchKind::Strategic,
        _ => {
            return Err(ApiError::unsupported_media_type(
                "a patch needs Content-Type application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json or application/apply-patch+yaml",
            ));
        }
    };
    let written = guaranteed_update(call, true, |current| {
        let mut patched = patch::patch(kind, t.resource, current, &call.body)?;
        check_kind(t.resource, &mut patched)?;
        validate_fields(call, &patched)?;
        // A patch that does not mention resourceVersion applies to whatever
        // is current.
        if patched["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
            && let Some(m) = patched["metadata"].as_object_mut()
        {
            m.remove("resourceVersion");
        }
        Ok(patched)
    })
    .await?;
    written_reply(call, written)
}

/// Server-side apply: creates the object if absent, else merges the applied
/// configuration under the field manager's ownership.
async fn apply(call: &Call<'_>) -> Reply {
    let t = &call.target;
    let manager = call
        .query
        .non_empty("fieldManager")
        .ok_or_else(|| {
            ApiError::bad_request(
                "PATCH requests of type application/apply-patch+yaml require a fieldManager",
            )
        })?
        .to_owned();
    let force = call.query.flag("force");
    let mut applied = decode_object(&call.body, true)?;
    check_kind(t.resource, &mut applied)?;
    validate_fields(call, &applied)?;
    if let Some(url_name) = t.name {
        match applied["metadata"]["name"].as_str() {
            Some(n) if n != url_name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({url_name})"
                )));
            }
            _ => applied["metadata"]["name"] = json!(url_name),
        }
    }
    if t.resource.namespaced
        && let Some(ns) = t.namespace
    {
        applied["metadata"]["namespace"] = json!(ns);
    }
    let now = now_rfc3339();
    let exists = exists(call.api, t).await?;
    if !exists {
        if t.subresource.is_some() {
            return Err(ApiError::not_found(t.gr(), t.name()));
        }
        // The apply records the manager's fields itself.
        let obj =
            patch::apply_subresource(t.resource, None, None, &applied, &manager, force, &now)?;
        let obj = create_object_warned(
            call.api,
            Some(call.user),
            t.resource,
            obj,
            None,
            dry_run(call.query)?,
            Some(&call.warnings),
        )
        .await?;
        return Ok(render_one(call, &obj, 201));
    }
    let written = guaranteed_update(call, false, |current| {
        patch::apply_subresource(
            t.resource,
            t.subresource,
            Some(current),
            &applied,
            &manager,
            force,
            &now,
        )
    })
    .await?;
    written_reply(call, written)
}

// ---------------------------------------------------------------------------
// Deletion

/// DeleteOptions from the body or the query.
#[derive(Default)]
struct DeleteOptions {
    grace: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(call: &Call<'_>) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions::default();
    if !call.body.is_empty() {
        let body = decode_request(call)?;
        o.grace = body["gracePeriodSeconds"].as_i64();
        o.propagation = body["propagationPolicy"].as_str().map(str::to_owned);
        if body["orphanDependents"] == json!(true) && o.propagation.is_none() {
            o.propagation = Some("Orphan".into());
        }
        o.uid = body["preconditions"]["uid"].as_str().map(str::to_owned);
        o.resource_version = body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
    }
    if let Some(g) = call.query.non_empty("gracePeriodSeconds") {
        o.grace = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?,
        );
    }
    if let Some(p) = call.query.non_empty("propagationPolicy") {
        o.propagation = Some(p.to_owned());
    }
    if call.query.get("orphanDependents") == Some("true") && o.propagation.is_none() {
        o.propagation = Some("Orphan".into());
    }
    if let Some(p) = &o.propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            &validation::FieldErrors(vec![validation::FieldError {
                kind: validation::ErrorType::NotSupported,
                field: "propagationPolicy".into(),
                value: Some(p.clone()),
                detail: "supported values: \"Foreground\", \"Background\", \"Orphan\"".into(),
            }]),
        ));
    }
    Ok(o)
}

async fn delete(call: &Call<'_>) -> Reply {
    let options = delete_options(call)?;
    let t = &call.target;
    if let Some(why) = strategy::undeletable(t.resource, t.name()) {
        return Err(ApiError::forbidden(t.gr(), t.name(), why));
    }
    delete_one(call, &call.target, &options).await
}

async fn delete_one(call: &Call<'_>, t: &Target<'_>, options: &DeleteOptions) -> Reply {
    let dry = dry_run(call.query)?;
    for _ in 0..MAX_RETRIES {
        let (current, rev) = load(call.api, t).await?;
        let meta = &current["metadata"];
        let preconditions = [
            ("UID", options.uid.as_deref(), meta["uid"].as_str()),
            (
                "ResourceVersion",
                options.resource_version.as_deref(),
                meta["resourceVersion"].as_str(),
            ),
        ];
        for (what, want, have) in preconditions {
            if let Some(want) = want
                && have != Some(want)
            {
                return Err(ApiError::conflict(
                    t.gr(),
                    t.name(),
                    &format!(
                        "Precondition failed: {what} in precondition: {want}, {what} in object meta: {}",
                        have.unwrap_or("")
                    ),
                ));
            }
        }
        let admission = crate::admission::Request::new(
            call.api,
            Some(call.user),
            crate::admission::Operation::Delete,
            t.resource,
            None,
            dry,
        )
        .with_warnings(&call.warnings);
        crate::admission::validate_delete(&admission, &current).await?;
        let mut new = current.clone();
        let mut finalizers: Vec<Value> = meta["finalizers"].as_array().cloned().unwrap_or_default();
        let add_finalizer = match options.propagation.as_deref() {
            Some("Orphan") => Some("orphan"),
            Some("Foreground") => Some("foregroundDeletion"),
            _ => None,
        };
        if let Some(f) = add_finalizer
            && !finalizers.iter().any(|x| x == f)
        {
            finalizers.push(json!(f));
        }
        if (t.resource.group, t.resource.plural) == ("", "namespaces") {
            // A namespace terminates: its content goes first (the namespace
            // controller's work), then its `kubernetes` finalizer.
            if meta.get("deletionTimestamp").is_none() {
                new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            }
            new["status"]["phase"] = json!("Terminating");
            let spec_finalizers = new["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
            if spec_finalizers || !finalizers.is_empty() {
                new["metadata"]["finalizers"] = Value::Array(finalizers);
                return write_deleting(call, t, new, rev, dry)
                    .await
                    .map(|r| r.unwrap_or_else(|| ok_deleted(call, &current)));
            }
        }
        let grace = strategy::graceful_deletion(t.resource, &current, options.grace);
        let already_deleting = meta.get("deletionTimestamp").is_some();
        if let Some(grace) = grace {
            let shorter = meta["deletionGracePeriodSeconds"]
                .as_i64()
                .is_none_or(|g| grace < g);
            if !already_deleting || shorter {
                let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                new["metadata"]["deletionTimestamp"] =
                    json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            }
            if !finalizers.is_empty() {
                new["metadata"]["finalizers"] = Value::Array(finalizers);
            }
            if new == current {
                return Ok(render_one(call, &current, 200));
            }
            match write_deleting(call, t, new, rev, dry).await? {
                Some(r) => return Ok(r),
                None => continue,
            }
        }
        if !finalizers.is_empty() {
            if !already_deleting {
                new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            }
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            new["metadata"]["finalizers"] = Value::Array(finalizers);
            if new == current {
                return Ok(render_one(call, &current, 200));
            }
            match write_deleting(call, t, new, rev, dry).await? {
                Some(r) => return Ok(r),
                None => continue,
            }
        }
        if dry {
            return Ok(ok_deleted(call, &current));
        }
        match call.api.store.delete(&t.key(), Some(rev)).await {
            Ok((rev, _)) => {
                if is_service(t.resource) {
                    crate::allocator::release(call.api, &current).await;
                }
                crate::admission::deleted(call.api, t.resource, &current).await;
                let mut last = current;
                set_resource_version(&mut last, rev);
                return Ok(ok_deleted(call, &last));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(t.gr(), t.name())),
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ApiError::conflict(
        t.gr(),
        t.name(),
        "too many concurrent writers; try again",
    ))
}

/// Writes an object marked for deletion; `None` when another writer won.
async fn write_deleting(
    call: &Call<'_>,
    t: &Target<'_>,
    mut new: Value,
    rev: Revision,
    dry: bool,
) -> Result<Option<Response<Body>>, ApiError> {
    if dry {
        return Ok(Some(render_one(call, &new, 200)));
    }
    let (bytes, _) = for_store(call.api, t.resource, &new).await?;
    match call.api.store.update(&t.key(), bytes, Some(rev)).await {
        Ok(rev) => {
            set_resource_version(&mut new, rev);
            // Still present, awaiting its finalizers or its kubelet: 200 with
            // the object (upstream answers 202 only for async deletions).
            Ok(Some(render_one(call, &new, 200)))
        }
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(StoreError::NotFound { .. }) => Err(ApiError::not_found(t.gr(), t.name())),
        Err(e) => Err(store_error(e)),
    }
}

fn ok_deleted(call: &Call<'_>, last: &Value) -> Response<Body> {
    let t = &call.target;
    if strategy::returns_deleted_object(t.resource) {
        return render_one(call, last, 200);
    }
    let mut details = json!({
        "name": last["metadata"]["name"],
        "kind": t.resource.plural,
        "uid": last["metadata"]["uid"],
    });
    if !t.resource.group.is_empty() {
        details["group"] = json!(t.resource.group);
    }
    call.output.encode(200, &success(Some(details)))
}

async fn delete_collection(call: &Call<'_>) -> Reply {
    let t = &call.target;
    let options = delete_options(call)?;
    let selectors = Selectors::from_query(t.resource, call.query)?;
    let prefix = t.resource.key_prefix(t.scope());
    if !call.api.cache.sync().await.map_err(store_error)? {
        return Err(ApiError::service_unavailable(
            "the watch cache is not ready",
        ));
    }
    let snapshot = call
        .api
        .cache
        .list(t.resource, &prefix, |o| selectors.matches(o));
    let mut deleted = Vec::new();
    for obj in &snapshot.objects {
        let target = Target {
            resource: t.resource,
            namespace: obj.namespace.as_deref(),
            name: Some(&obj.name),
            subresource: None,
        };
        match delete_one(call, &target, &options).await {
            Ok(_) => deleted.push(obj.clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let deleted = served_objects(call, deleted).await?;
    Ok(render_list(call, &deleted, snapshot.revision, None, None))
}

// ---------------------------------------------------------------------------
// Subresources

/// The `autoscaling/v1` Scale of a scalable object.
fn scale_of(obj: &Value, custom: Option<&crate::crd::ScalePaths>) -> Value {
    let selector = match &obj["spec"]["selector"] {
        // A custom resource names where its selector string is.
        _ if custom.is_some() => custom
            .and_then(|c| c.label_selector.as_deref())
            .and_then(|p| crate::crd::json_path(obj, p))
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        // apps/v1 kinds carry a LabelSelector; ReplicationControllers a map.
        Value::Object(sel)
            if sel.contains_key("matchLabels") || sel.contains_key("matchExpressions") =>
        {
            serde_json::from_value(Value::Object(sel.clone()))
                .ok()
                .and_then(|s| LabelSelector::from_k8s(&s).ok())
                .map(|s| s.to_string())
                .unwrap_or_default()
        }
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    };
    let meta = &obj["metadata"];
    let (spec_replicas, status_replicas) = match custom {
        Some(c) => (
            crate::crd::json_path(obj, &c.spec_replicas)
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
            crate::crd::json_path(obj, &c.status_replicas)
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
        ),
        None => (
            obj["spec"]["replicas"].as_i64().unwrap_or(1),
            obj["status"]["replicas"].as_i64().unwrap_or(0),
        ),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": spec_replicas },
        "status": {
            "replicas": status_replicas,
            "selector": selector,
        },
    })
}

/// Sets the value at a simple JSON path (`.spec.size`), creating objects on
/// the way.
fn set_path(obj: &mut Value, path: &str, value: Value) {
    let mut at = obj;
    for key in path.trim_start_matches('.').split('.') {
        if !at.is_object() {
            *at = json!({});
        }
        at = at
            .as_object_mut()
            .expect("made an object")
            .entry(key)
            .or_insert(Value::Null);
    }
    *at = value;
}

async fn scale(call: &Call<'_>) -> Reply {
    let t = &call.target;
    let custom = call.api.crds.served(t.resource).and_then(|s| s.scale);
    let scale_reply = |obj: &Value| {
        let s = scale_of(obj, custom.as_ref());
        call.output.encode(200, &s)
    };
    match call.info.verb.as_str() {
        "get" => {
            let (obj, _) = load(call.api, t).await?;
            Ok(scale_reply(&obj))
        }
        verb => {
            let patch_kind = match (verb, call.body_type) {
                ("update", _) => None,
                (_, Some(BodyType::JsonPatch)) => Some(patch::PatchKind::Json),
                (_, Some(BodyType::StrategicMergePatch)) => Some(patch::PatchKind::Strategic),
                _ => Some(patch::PatchKind::Merge),
            };
            let scales =
                skiff_api_types::registry::lookup("autoscaling", "v1", "horizontalpodautoscalers")
                    .expect("autoscaling is registered");
            let main = Call {
                target: Target {
                    resource: t.resource,
                    namespace: t.namespace,
                    name: t.name,
                    subresource: None,
                },
                ..clone_call(call)
            };
            let written = guaranteed_update(&main, true, |current| {
                let scale = scale_of(current, custom.as_ref());
                let new_scale = match patch_kind {
                    None => decode_request(call)?,
                    Some(kind) => patch::patch(kind, scales, &scale, &call.body)?,
                };
                let replicas = new_scale["spec"]["replicas"].as_i64().ok_or_else(|| {
                    ApiError::invalid(
                        "autoscaling",
                        "Scale",
                        t.name(),
                        &validation::FieldErrors(vec![validation::FieldError {
                            kind: validation::ErrorType::Required,
                            field: "spec.replicas".into(),
                            value: None,
                            detail: String::new(),
                        }]),
                    )
                })?;
                let mut new = current.clone();
                match &custom {
                    Some(c) => set_path(&mut new, &c.spec_replicas, json!(replicas)),
                    None => new["spec"]["replicas"] = json!(replicas),
                }
                match new_scale["metadata"]["resourceVersion"].as_str() {
                    Some(rv)
                        if !rv.is_empty()
                            && Some(rv) != current["metadata"]["resourceVersion"].as_str() =>
                    {
                        new["metadata"]["resourceVersion"] = json!(rv);
                    }
                    _ => {
                        if let Some(m) = new["metadata"].as_object_mut() {
                            m.remove("resourceVersion");
                        }
                    }
                }
                Ok(new)
            })
            .await?;
            match written {
                Written::Updated(obj) | Written::Deleted(obj) => Ok(scale_reply(&obj)),
            }
        }
    }
}

/// `pods/binding`: assigns a pod to a node, once.
async fn bind(call: &Call<'_>) -> Reply {
    let t = &call.target;
    let binding = decode_request(call)?;
    let node = binding["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "",
                "Binding",
                t.name(),
                &validation::FieldErrors(vec![validation::FieldError {
                    kind: validation::ErrorType::Required,
                    field: "target.name".into(),
                    value: None,
                    detail: String::new(),
                }]),
            )
        })?
        .to_owned();
    let main = Call {
        target: Target {
            resource: t.resource,
            namespace: t.namespace,
            name: t.name,
            subresource: Some("binding"),
        },
        ..clone_call(call)
    };
    let now = now_rfc3339();
    guaranteed_update(&main, true, |current| {
        if current["metadata"].get("deletionTimestamp").is_some() {
            return Err(ApiError::conflict(t.gr(), t.name(), "pod is being deleted, cannot be assigned to a host"));
        }
        if let Some(assigned) = current["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict(
                t.gr(),
                t.name(),
                &format!("pod {} is already assigned to node \"{assigned}\"", t.name()),
            ));
        }
        let mut new = current.clone();
        new["spec"]["nodeName"] = json!(node);
        let conditions = new["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        new["status"]["conditions"] = Value::Array(conditions);
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        Ok(new)
    })
    .await?;
    Ok(call.output.encode(201, &success(None)))
}

/// `pods/eviction`: deletes a pod unless a PodDisruptionBudget forbids it.
async fn evict(call: &Call<'_>) -> Reply {
    let t = &call.target;
    let eviction = decode_request(call)?;
    let (pod, _) = load(call.api, t).await?;
    let pdbs = skiff_api_types::registry::lookup("policy", "v1", "poddisruptionbudgets")
        .expect("policy is registered");
    let namespace = t.namespace.unwrap_or_default();
    let labels = crate::cache::labels_of(&pod);
    let terminal = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !terminal {
        let budgets = call
            .api
            .cache
            .list(pdbs, &pdbs.key_prefix(Some(namespace)), |_| true);
        for budget in budgets.objects {
            let budget = budget.value();
            let selector = serde_json::from_value(budget["spec"]["selector"].clone())
                .ok()
                .and_then(|s| LabelSelector::from_k8s(&s).ok())
                .unwrap_or_else(LabelSelector::nothing);
            if !selector.matches(&labels) {
                continue;
            }
            let name = budget["metadata"]["name"].as_str().unwrap_or("").to_owned();
            let observed = budget["status"]["observedGeneration"].as_i64().unwrap_or(0);
            let generation = budget["metadata"]["generation"].as_i64().unwrap_or(0);
            let allowed = budget["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
            if observed < generation || allowed <= 0 {
                let why = if observed < generation {
                    format!(
                        "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {name} is still being processed by the server."
                    )
                } else {
                    format!(
                        "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {name} needs {} healthy pods and has {} currently",
                        budget["status"]["desiredHealthy"].as_i64().unwrap_or(0),
                        budget["status"]["currentHealthy"].as_i64().unwrap_or(0)
                    )
                };
                return Err(ApiError::too_many_requests(why));
            }
            // Spend one disruption, guarded against concurrent evictions.
            let budget_target = Target {
                resource: pdbs,
                namespace: Some(namespace),
                name: Some(&name),
                subresource: Some("status"),
            };
            let budget_call = Call {
                target: budget_target,
                ..clone_call(call)
            };
            let pinned = budget["metadata"]["resourceVersion"].clone();
            guaranteed_update(&budget_call, true, |current| {
                let mut new = current.clone();
                new["status"]["disruptionsAllowed"] = json!(allowed - 1);
                new["metadata"]["resourceVersion"] = pinned.clone();
                Ok(new)
            })
            .await
            .map_err(|e| if e.code == 409 { ApiError::too_many_requests("Cannot evict pod as it would violate the pod's disruption budget: the budget changed; try again") } else { e })?;
        }
    }
    let options = DeleteOptions {
        grace: eviction["deleteOptions"]["gracePeriodSeconds"].as_i64(),
        ..Default::default()
    };
    let main = Target {
        resource: t.resource,
        namespace: t.namespace,
        name: t.name,
        subresource: None,
    };
    delete_one(call, &main, &options).await?;
    Ok(call.output.encode(201, &success(None)))
}

/// A store failure as an API error.
pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::FutureRevision { requested, current } => ApiError::new_timeout(format!(
            "Too large resource version: {requested}, current: {current}"
        )),
        other => ApiError::internal(other.to_string()),
    }
}
