//! The OpenAPI documents, built once (on first request) from the registry
//! and k8s-openapi's schemas, then served from memory:
//!
//! - `/openapi/v3`: the index, `{"paths": {"api/v1": {"serverRelativeURL":
//!   "/openapi/v3/api/v1?hash=…"}, "apis/apps/v1": …}}`;
//! - `/openapi/v3/<path>`: one OpenAPI 3.0 document per group-version (and
//!   for `api`, `apis`, `apis/<group>` and `version`), which `kubectl explain`
//!   renders and `kubectl` reads to learn that `fieldValidation` is supported;
//! - `/openapi/v2`: the Swagger 2.0 document of every path, as JSON (a client
//!   that accepts only protobuf gets 406), with the definitions and paths of
//!   every version CRDs serve (see [`custom`]) spliced into the built-in
//!   document; the result is kept per server and rebuilt, on the next
//!   request, after the CRDs change.
//!
//! Every answer carries its content hash as `ETag` and honours
//! `If-None-Match`; a v3 document fetched with its current `?hash=` is
//! `Cache-Control: public, immutable`.

mod custom;
mod paths;
mod render;
mod schemas;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use skiff_api_types::registry;

use crate::http_util::{self, Body};
use crate::status::ApiError;
use paths::PathItem;
use schemas::Catalog;

/// One serialized document and its content hash.
struct Document {
    bytes: Bytes,
    /// Upper-case hex digest of `bytes`.
    hash: String,
}

/// The v3 index and every document it lists, keyed as the index keys them
/// (`api/v1`, `apis/apps/v1`, ...).
struct V3 {
    index: Document,
    docs: BTreeMap<String, Document>,
}

/// How long a client may keep an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caching {
    /// Fetched by its content hash: it never changes.
    Immutable,
    /// Revalidate with `If-None-Match` each time.
    Revalidate,
}

/// The v2 document of the built-in kinds, and where custom resources'
/// definitions and paths are spliced into it.
struct V2Base {
    doc: Arc<Document>,
    /// The offsets of the closing braces of `definitions` and of `paths`
    /// (both non-empty objects).
    definitions_end: usize,
    paths_end: usize,
    /// The schema names of the built-in kinds.
    names: schemas::Names,
}

/// A server's v2 document with its CRDs, and the CRD generation it was
/// built at ([`crate::crd::Crds::generation`]).
#[derive(Default)]
pub(crate) struct V2Cache(Mutex<Option<(u64, Arc<Document>)>>);

static V3_DOCS: OnceLock<V3> = OnceLock::new();
static V2_BASE: OnceLock<V2Base> = OnceLock::new();

const JSON: &str = "application/json";

/// Answers `/openapi/v2`, `/openapi/v3` and `/openapi/v3/<path>`. `path`
/// may carry the query string (`?hash=`). CRD-defined group-versions are
/// added to the v3 index and served from `crds`, and added to the v2
/// document.
pub(crate) fn serve(path: &str, headers: &HeaderMap, crds: &crate::crd::Crds) -> Response<Body> {
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let hash = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("hash=")));
    if !accepts_json(headers) {
        return http_util::error(&ApiError::not_acceptable(
            "the OpenAPI documents are served as application/json only",
        ));
    }
    match path {
        "/openapi/v2" => respond(&v2(crds), headers, Caching::Revalidate),
        "/openapi/v3" | "/openapi/v3/" => {
            let custom = custom::keys(crds);
            if custom.is_empty() {
                return respond(&v3().index, headers, Caching::Revalidate);
            }
            let mut listed: Map<String, Value> = v3()
                .docs
                .iter()
                .map(|(key, doc)| (key.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{key}?hash={}", doc.hash) })))
                .collect();
            for key in custom {
                if let Some(doc) = custom::document(crds, &key) {
                    let url = format!("/openapi/v3/{key}?hash={}", doc.hash);
                    listed.insert(key, json!({ "serverRelativeURL": url }));
                }
            }
            respond(
                &Document::new(&json!({ "paths": listed })),
                headers,
                Caching::Revalidate,
            )
        }
        _ => {
            let key = path
                .strip_prefix("/openapi/v3/")
                .map(|k| k.trim_end_matches('/'));
            let custom_doc;
            let doc = match key {
                Some(key) => match v3().docs.get(key) {
                    Some(doc) => doc,
                    None => match custom::document(crds, key) {
                        Some(doc) => {
                            custom_doc = doc;
                            &custom_doc
                        }
                        None => return http_util::error(&ApiError::no_route()),
                    },
                },
                None => return http_util::error(&ApiError::no_route()),
            };
            match hash {
                None => respond(doc, headers, Caching::Revalidate),
                Some(h) if h == doc.hash => respond(doc, headers, Caching::Immutable),
                // An outdated hash: send the client to the current document.
                Some(_) => Response::builder()
                    .status(StatusCode::MOVED_PERMANENTLY)
                    .header(header::LOCATION, format!("{path}?hash={}", doc.hash))
                    .header(header::CACHE_CONTROL, "no-cache, private")
                    .body(http_util::full(Bytes::new()))
                    .expect("valid response parts"),
            }
        }
    }
}

fn v3() -> &'static V3 {
    V3_DOCS.get_or_init(build_v3)
}

/// The v2 document with `crds`' resources: the built-in one while there are
/// none, else the one cached for the current CRDs (built now if they
/// changed since).
fn v2(crds: &crate::crd::Crds) -> Arc<Document> {
    let base = V2_BASE.get_or_init(build_v2);
    let generation = crds.generation();
    if let Some((built, doc)) = &*crds.openapi_v2.0.lock().unwrap()
        && *built == generation
    {
        return doc.clone();
    }
    let start = Instant::now();
    let (definitions, paths) = custom::v2_parts(crds, &base.names);
    let doc = if paths.is_empty() {
        base.doc.clone()
    } else {
        let doc = Arc::new(spliced(base, &definitions, &paths));
        tracing::info!(
            elapsed_ms = start.elapsed().as_millis() as u64,
            bytes = doc.bytes.len(),
            definitions = definitions.len(),
            "built the OpenAPI v2 document with the CRDs"
        );
        doc
    };
    *crds.openapi_v2.0.lock().unwrap() = Some((generation, doc.clone()));
    doc
}

/// The built-in v2 document with more definitions and paths (whose names
/// it does not have).
fn spliced(
    base: &V2Base,
    definitions: &Map<String, Value>,
    paths: &Map<String, Value>,
) -> Document {
    /// A map's members, serialized without the braces.
    fn members(map: &Map<String, Value>) -> Vec<u8> {
        let mut out = serde_json::to_vec(map).expect("a JSON value serializes");
        out.pop();
        out.remove(0);
        out
    }
    let bytes = &base.doc.bytes;
    let mut inserts = [
        (base.definitions_end, members(definitions)),
        (base.paths_end, members(paths)),
    ];
    inserts.sort_by_key(|(at, _)| *at);
    let added: usize = inserts.iter().map(|(_, m)| m.len() + 1).sum();
    let mut out = Vec::with_capacity(bytes.len() + added);
    let mut from = 0;
    for (at, members) in inserts {
        out.extend_from_slice(&bytes[from..at]);
        if !members.is_empty() {
            out.push(b',');
            out.extend_from_slice(&members);
        }
        from = at;
    }
    out.extend_from_slice(&bytes[from..]);
    Document::from_bytes(out)
}

/// Whether `Accept` admits JSON (an absent header does). Protobuf, which
/// upstream also offers, is not served.
fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|candidate| {
        let mut params = candidate.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        let refused = params.any(
            |p| matches!(p.split_once('='), Some(("q", q)) if q.trim().parse::<f32>() == Ok(0.0)),
        );
        !refused && matches!(media, JSON | "application/*" | "*/*" | "")
    })
}

fn respond(doc: &Document, headers: &HeaderMap, caching: Caching) -> Response<Body> {
    let etag = format!("\"{}\"", doc.hash);
    let cache_control = match caching {
        Caching::Immutable => "public, immutable",
        Caching::Revalidate => "no-cache, private",
    };
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    let builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, cache_control)
        .header(header::VARY, "Accept");
    let response = if matches {
        builder
            .status(StatusCode::NOT_MODIFIED)
            .body(http_util::full(Bytes::new()))
    } else {
        builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, JSON)
            .body(http_util::full(doc.bytes.clone()))
    };
    response.expect("valid response parts")
}

impl Document {
    fn new(value: &Value) -> Document {
        Document::from_bytes(serde_json::to_vec(value).expect("a JSON value serializes"))
    }

    fn from_bytes(bytes: Vec<u8>) -> Document {
        let hash = format!("{:032X}", fnv1a_128(&bytes));
        Document {
            bytes: bytes.into(),
            hash,
        }
    }
}

/// FNV-1a, 128 bits: a content hash stable across builds and platforms.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME))
}

/// `api/v1`, `apis/apps/v1`: how the index and the URLs name a group-version.
fn group_version_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every document's paths, keyed as the v3 index keys them.
fn all_paths(catalog: &Catalog) -> BTreeMap<String, Vec<PathItem>> {
    let mut docs = BTreeMap::new();
    docs.insert("api".to_string(), paths::legacy_root());
    docs.insert("apis".to_string(), paths::groups_root());
    docs.insert("version".to_string(), paths::version_root());
    for g in registry::groups() {
        if !g.name.is_empty() {
            docs.insert(format!("apis/{}", g.name), paths::group_root(g.name));
        }
        for v in g.versions {
            docs.insert(
                group_version_key(g.name, v),
                paths::group_version(g.name, v, catalog.names()),
            );
        }
    }
    docs
}

fn build_v3() -> V3 {
    let start = Instant::now();
    let catalog = Catalog::build();
    let docs: BTreeMap<String, Document> = all_paths(&catalog)
        .into_iter()
        .map(|(key, items)| {
            let doc = Document::new(&render::v3(&items, &catalog));
            (key, doc)
        })
        .collect();
    let listed: Map<String, Value> = docs
        .iter()
        .map(|(key, doc)| {
            let url = format!("/openapi/v3/{key}?hash={}", doc.hash);
            (key.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    let index = Document::new(&json!({ "paths": listed }));
    tracing::info!(
        elapsed_ms = start.elapsed().as_millis() as u64,
        documents = docs.len(),
        bytes = docs.values().map(|d| d.bytes.len()).sum::<usize>(),
        "built the OpenAPI v3 documents"
    );
    V3 { index, docs }
}

fn build_v2() -> V2Base {
    let start = Instant::now();
    let catalog = Catalog::build();
    let items: Vec<PathItem> = all_paths(&catalog).into_values().flatten().collect();
    let Value::Object(doc) = render::v2(&items, &catalog) else {
        unreachable!("the document is an object")
    };
    // Serialized member by member (as a whole it would be) to note where
    // `definitions` and `paths` end.
    let mut bytes = vec![b'{'];
    let (mut definitions_end, mut paths_end) = (0, 0);
    for (i, (key, value)) in doc.iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        serde_json::to_writer(&mut bytes, key).expect("serializes");
        bytes.push(b':');
        serde_json::to_writer(&mut bytes, value).expect("serializes");
        match key.as_str() {
            "definitions" => definitions_end = bytes.len() - 1,
            "paths" => paths_end = bytes.len() - 1,
            _ => {}
        }
    }
    bytes.push(b'}');
    assert!(
        definitions_end > 0 && paths_end > 0,
        "the document has definitions and paths"
    );
    let doc = Document::from_bytes(bytes);
    tracing::info!(
        elapsed_ms = start.elapsed().as_millis() as u64,
        bytes = doc.bytes.len(),
        "built the OpenAPI v2 document"
    );
    V2Base {
        doc: Arc::new(doc),
        definitions_end,
        paths_end,
        names: catalog.names().clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use http::HeaderValue;
    use http_body_util::BodyExt;

    use super::*;

    fn get(path: &str, accept: Option<&str>) -> (StatusCode, HeaderMap, Bytes) {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        }
        send(path, headers)
    }

    fn send(path: &str, headers: HeaderMap) -> (StatusCode, HeaderMap, Bytes) {
        let response = serve(path, &headers, &crate::crd::Crds::default());
        let (parts, body) = response.into_parts();
        let bytes = futures::executor::block_on(body.collect())
            .unwrap()
            .to_bytes();
        (parts.status, parts.headers, bytes)
    }

    fn get_json(path: &str) -> Value {
        let (status, headers, body) = get(path, Some(JSON));
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], JSON);
        serde_json::from_slice(&body).unwrap()
    }

    /// Every `$ref` of `doc` names a schema that `doc` holds under `prefix`.
    fn assert_refs_resolve(doc: &Value, prefix: &str, holder: &Value) {
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => m.iter().for_each(|(k, v)| match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => walk(v, out),
                }),
                Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut refs = Vec::new();
        walk(doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{r} is not under {prefix}"));
            assert!(holder.get(name).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn the_v3_index_lists_every_group_version_with_its_hash() {
        let index = get_json("/openapi/v3");
        let paths = index["paths"].as_object().unwrap();
        for key in [
            "api",
            "apis",
            "api/v1",
            "apis/apps/v1",
            "apis/apps",
            "apis/autoscaling/v2",
            "version",
        ] {
            let url = paths[key]["serverRelativeURL"].as_str().unwrap();
            assert!(
                url.starts_with(&format!("/openapi/v3/{key}?hash=")),
                "{url}"
            );
        }
        let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        let (status, headers, _) = get(url, Some(JSON));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], "public, immutable");
        let (status, headers, _) = get("/openapi/v3/apis/apps/v1?hash=OLD", None);
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(headers[header::LOCATION], url);
    }

    #[test]
    fn the_apps_v1_document_describes_deployments_as_kubectl_reads_them() {
        let doc = get_json("/openapi/v3/apis/apps/v1");
        assert_eq!(doc["openapi"], "3.0.0");
        let schemas = &doc["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{ "group": "apps", "kind": "Deployment", "version": "v1" }])
        );
        assert!(deployment["properties"]["spec"]["description"].is_string());
        assert!(schemas.get("io.k8s.api.core.v1.PodSpec").is_some());
        assert!(
            schemas.get("io.k8s.api.core.v1.Pod").is_none(),
            "only reachable schemas"
        );
        assert_refs_resolve(&doc, "#/components/schemas/", schemas);

        let collection = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"];
        let post = &collection["post"];
        assert_eq!(post["operationId"], "createAppsV1NamespacedDeployment");
        let names: Vec<&str> = post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["dryRun", "fieldManager", "fieldValidation"]);
        assert_eq!(collection["get"]["x-kubernetes-action"], "list");

        // kubectl's QueryParamVerifierV3 and its apply patcher: every PATCH
        // of the kind lists fieldValidation and takes strategic merge patches.
        let gvk = json!({ "group": "apps", "kind": "Deployment", "version": "v1" });
        let patches: Vec<&Value> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|item| item.get("patch"))
            .filter(|op| op["x-kubernetes-group-version-kind"] == gvk)
            .collect();
        assert_eq!(patches.len(), 2, "the object and its status");
        for op in patches {
            assert!(
                op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
            );
            assert!(
                op["requestBody"]["content"]
                    .get("application/strategic-merge-patch+json")
                    .is_some()
            );
        }
        let scale =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"];
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
        assert!(schemas.get("io.k8s.api.autoscaling.v1.Scale").is_some());
    }

    #[test]
    fn the_core_document_serves_what_kubectl_explain_looks_for() {
        let doc = get_json("/openapi/v3/api/v1");
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(
            paths["/api/v1/pods"]["get"]["x-kubernetes-group-version-kind"],
            json!({ "group": "", "kind": "Pod", "version": "v1" })
        );
        let containers =
            &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["type"], "array");
        assert_eq!(
            containers["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Container"
        );
        assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/log"));
        assert!(paths.contains_key("/api/v1/nodes/{name}/proxy/{path}"));
        assert_refs_resolve(&doc, "#/components/schemas/", &doc["components"]["schemas"]);
    }

    #[test]
    fn every_v3_document_is_self_contained() {
        let index = get_json("/openapi/v3");
        for key in index["paths"].as_object().unwrap().keys() {
            let doc = get_json(&format!("/openapi/v3/{key}"));
            assert_refs_resolve(&doc, "#/components/schemas/", &doc["components"]["schemas"]);
        }
    }

    #[test]
    fn the_v2_document_is_swagger_with_definitions() {
        let doc = get_json("/openapi/v2");
        assert_eq!(doc["swagger"], "2.0");
        let definitions = &doc["definitions"];
        assert_eq!(
            definitions["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
            json!([{ "group": "", "kind": "Pod", "version": "v1" }])
        );
        assert_eq!(
            definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
            "string"
        );
        assert_refs_resolve(&doc, "#/definitions/", definitions);
        let post = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert_eq!(post["parameters"][0]["in"], "body");
        assert!(
            post["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let mut ids = HashSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for (method, op) in item.as_object().unwrap() {
                if method != "parameters" {
                    assert!(
                        ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                        "duplicate {}",
                        op["operationId"]
                    );
                }
            }
        }
    }

    #[test]
    fn the_v2_document_carries_the_crds_and_is_rebuilt_when_they_change() {
        let crds = crate::crd::Crds::default();
        let crd = json!({
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"cronSpec": {"type": "string"}}}}}}}]},
        });
        crds.register(&crd);
        let fetch = |crds: &crate::crd::Crds| {
            let response = serve("/openapi/v2", &HeaderMap::new(), crds);
            let body = futures::executor::block_on(response.into_body().collect())
                .unwrap()
                .to_bytes();
            serde_json::from_slice::<Value>(&body).unwrap()
        };
        let doc = fetch(&crds);
        let definitions = &doc["definitions"];
        let crontab = &definitions["com.example.stable.v1.CronTab"];
        assert_eq!(
            crontab["x-kubernetes-group-version-kind"],
            json!([{ "group": "stable.example.com", "kind": "CronTab", "version": "v1" }])
        );
        assert_eq!(
            crontab["properties"]["spec"]["properties"]["cronSpec"]["type"],
            "string"
        );
        assert!(definitions.get("io.k8s.api.core.v1.Pod").is_some());
        assert!(
            doc["paths"]
                .get("/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}")
                .is_some()
        );
        assert!(
            doc["paths"]
                .get("/api/v1/namespaces/{namespace}/pods")
                .is_some()
        );
        assert_refs_resolve(&doc, "#/definitions/", definitions);

        // Kept while the CRDs stay as they are (a status update changes
        // nothing served); rebuilt when they change.
        let cached = v2(&crds);
        crds.register(&crd);
        assert!(Arc::ptr_eq(&cached, &v2(&crds)));
        crds.unregister("crontabs.stable.example.com");
        let doc = fetch(&crds);
        assert!(
            doc["definitions"]
                .get("com.example.stable.v1.CronTab")
                .is_none()
        );
        assert_eq!(
            v2(&crds).hash,
            v2(&crate::crd::Crds::default()).hash,
            "without CRDs, the built-in document"
        );
    }

    #[test]
    fn protobuf_only_clients_are_refused_and_json_fallbacks_served() {
        let (status, _, _) = get(
            "/openapi/v2",
            Some("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
        );
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
        let (status, _, _) = get(
            "/openapi/v2",
            Some("application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json"),
        );
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = get("/openapi/v3/api/v1", None);
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = get("/openapi/v3/apis/nope/v1", None);
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_matching_etag_answers_not_modified() {
        let (_, headers, body) = get("/openapi/v3/apis/batch/v1", None);
        let etag = headers[header::ETAG].clone();
        assert!(!body.is_empty());
        let mut conditional = HeaderMap::new();
        conditional.insert(header::IF_NONE_MATCH, etag.clone());
        let (status, headers, body) = send("/openapi/v3/apis/batch/v1", conditional);
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert_eq!(headers[header::ETAG], etag);
        assert!(body.is_empty());
    }
}
