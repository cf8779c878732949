//! OpenAPI v3 documents of the group-versions CRDs serve, built from each
//! version's `openAPIV3Schema` whenever they are asked for (CRDs come and go;
//! the documents are small), so `kubectl explain` and kubectl's
//! field-validation check see custom resources as soon as they are served.
//!
//! And their part of the OpenAPI v2 document, as upstream's CRD OpenAPI
//! builder makes it (apiextensions-apiserver pkg/controller/openapi/builder,
//! with `V2: true`): per served version, the definitions
//! `<reversed group>.<version>.<Kind>` and `…List` — the structural schema
//! made v2-compatible (no `nullable`, `allOf`/`anyOf`/`oneOf`/`not`; fields
//! that preserve unknown fields lose their properties, so kubectl's
//! client-side validation does not refuse those), with `apiVersion`, `kind`
//! and `metadata` (ObjectMeta) added and `x-kubernetes-group-version-kind`
//! — and the same paths and operations as a built-in kind's.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Document;
use super::paths;
use super::schemas::{Names, V2_PREFIX};
use crate::crd::Crds;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DESCRIPTION: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// `com.example.v1.Widget`: upstream's definition name for a custom kind.
fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The custom group-versions, keyed as the index keys them.
pub(super) fn keys(crds: &Crds) -> Vec<String> {
    let mut keys: Vec<String> = crds
        .all()
        .iter()
        .map(|r| format!("apis/{}/{}", r.group, r.version))
        .collect();
    keys.dedup();
    keys
}

/// The document of one custom group-version (`apis/<group>/<version>`).
pub(super) fn document(crds: &Crds, key: &str) -> Option<Document> {
    let (group, version) = key.strip_prefix("apis/")?.split_once('/')?;
    let resources: Vec<_> = crds
        .all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let mut schemas = Map::new();
    let mut paths = BTreeMap::new();
    for r in resources {
        let served = crds.served(r)?;
        let name = definition_name(group, version, r.kind);
        let gvk = json!([{ "group": group, "version": version, "kind": r.kind }]);
        let mut schema = served
            .schema
            .as_deref()
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        if !schema.is_object() {
            schema = json!({"type": "object"});
        }
        let props = schema
            .as_object_mut()
            .expect("an object")
            .entry("properties")
            .or_insert_with(|| json!({}));
        if let Some(props) = props.as_object_mut() {
            props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            props.insert(
                "metadata".into(),
                json!({"type": "object", "description": "Standard object's metadata."}),
            );
        }
        schema["x-kubernetes-group-version-kind"] = gvk.clone();
        schemas.insert(name.clone(), schema);
        let list = format!("{name}List");
        schemas.insert(
            list.clone(),
            json!({
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}},
                },
                "x-kubernetes-group-version-kind": [{ "group": group, "version": version, "kind": r.list_kind }],
            }),
        );
        let base = if r.namespaced {
            format!(
                "/apis/{group}/{version}/namespaces/{{namespace}}/{}",
                r.plural
            )
        } else {
            format!("/apis/{group}/{version}/{}", r.plural)
        };
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let body =
            json!({"required": true, "content": {"application/json": {"schema": reference}}});
        let write_params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ]);
        let ok = |schema: Value| json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}});
        let action = |verb: &str| json!({ "x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk[0].clone() });
        let op = |verb: &str, extra: Value| {
            let mut o = action(verb);
            for (k, v) in extra.as_object().into_iter().flatten() {
                o[k] = v.clone();
            }
            o
        };
        paths.insert(
            base.clone(),
            json!({
                "get": op("list", json!({"responses": ok(json!({"$ref": format!("#/components/schemas/{list}")}))})),
                "post": op("post", json!({"parameters": write_params, "requestBody": body, "responses": ok(reference.clone())})),
            }),
        );
        let patch_body = json!({"required": true, "content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }});
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": op("get", json!({"responses": ok(reference.clone())})),
                "put": op("put", json!({"parameters": write_params, "requestBody": body, "responses": ok(reference.clone())})),
                "patch": op("patch", json!({"parameters": write_params, "requestBody": patch_body, "responses": ok(reference.clone())})),
                "delete": op("delete", json!({"responses": ok(json!({"type": "object"}))})),
            }),
        );
    }
    let doc = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    });
    Some(Document::new(&doc))
}

/// The definitions and the paths the served CRD versions add to the v2
/// document; `names` names the built-in kinds' schemas.
pub(super) fn v2_parts(crds: &Crds, names: &Names) -> (Map<String, Value>, Map<String, Value>) {
    let resources = crds.all();
    let mut definitions = Map::new();
    let mut names = names.clone();
    for &r in &resources {
        let Some(served) = crds.served(r) else {
            continue;
        };
        let name = definition_name(r.group, r.version, r.kind);
        let list = format!("{name}List");
        definitions.insert(
            name.clone(),
            object_v2(r.group, r.version, r.kind, served.schema.as_deref()),
        );
        definitions.insert(
            list.clone(),
            json!({
                "description": format!("{} is a list of {}", r.list_kind, r.kind),
                "required": ["items"],
                "properties": {
                    "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
                    "items": {
                        "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", r.plural),
                        "type": "array",
                        "items": {"$ref": format!("{V2_PREFIX}{name}")},
                    },
                    "kind": {"description": KIND_DESCRIPTION, "type": "string"},
                    "metadata": {"description": LIST_METADATA_DESCRIPTION, "$ref": format!("{V2_PREFIX}{LIST_META}")},
                },
                "x-kubernetes-group-version-kind": [{"group": r.group, "kind": r.list_kind, "version": r.version}],
            }),
        );
        names.insert(r.group, r.version, r.kind, name);
        names.insert(r.group, r.version, r.list_kind, list);
    }
    let items: Vec<paths::PathItem> = resources
        .iter()
        .flat_map(|r| paths::custom_resource(r, &names))
        .collect();
    // What the paths reference besides the CRDs' own definitions (Status,
    // DeleteOptions, Patch, WatchEvent, Scale) the built-in document holds.
    let mut roots = Vec::new();
    let paths = super::render::paths_v2(&items, &mut roots);
    (definitions, paths)
}

/// The v2 definition of a custom kind from its version's schema (upstream's
/// buildKubeNative with `V2: true`).
fn object_v2(group: &str, version: &str, kind: &str, schema: Option<&Value>) -> Value {
    let gvk = json!([{ "group": group, "kind": kind, "version": version }]);
    let preserves = |s: &Value| s["x-kubernetes-preserve-unknown-fields"] == true;
    let mut out = match schema.filter(|s| s.is_object() && !preserves(s)) {
        // Without a schema, or with one that keeps unknown fields, kubectl
        // must not be told of any property (it would refuse the others).
        None => json!({"type": "object"}),
        Some(schema) => {
            let mut out = schema.clone();
            to_v2(&mut out);
            add_embedded_properties(&mut out);
            let props = out
                .as_object_mut()
                .expect("an object")
                .entry("properties")
                .or_insert_with(|| json!({}));
            if let Some(props) = props.as_object_mut() {
                props.insert(
                    "apiVersion".into(),
                    json!({"description": API_VERSION_DESCRIPTION, "type": "string"}),
                );
                props.insert(
                    "kind".into(),
                    json!({"description": KIND_DESCRIPTION, "type": "string"}),
                );
                props.insert("metadata".into(), object_meta());
            }
            out
        }
    };
    out["x-kubernetes-group-version-kind"] = gvk;
    out
}

fn object_meta() -> Value {
    json!({"description": METADATA_DESCRIPTION, "$ref": format!("{V2_PREFIX}{OBJECT_META}")})
}

/// Makes a structural schema v2-compatible, as upstream's
/// ToStructuralOpenAPIV2.
fn to_v2(schema: &mut Value) {
    let Some(s) = schema.as_object_mut() else {
        return;
    };
    for keyword in ["allOf", "oneOf", "anyOf", "not"] {
        s.remove(keyword);
    }
    if s.remove("nullable") == Some(Value::Bool(true)) {
        // Untyped values break kubectl when they have items or properties.
        for key in ["type", "items", "properties"] {
            s.remove(key);
        }
    }
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        s.remove("items");
        s.remove("properties");
    }
    if s.get("type").and_then(Value::as_str) == Some("array") && !s.contains_key("items") {
        // kubectl cannot cope with an array without an item schema.
        s.remove("type");
    }
    let nullable: Vec<String> = s
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, p)| p["nullable"] == true)
        .map(|(name, _)| name.clone())
        .collect();
    if let Some(Value::Array(required)) = s.get_mut("required") {
        required.retain(|r| !r.as_str().is_some_and(|r| nullable.iter().any(|n| n == r)));
        if required.is_empty() {
            s.remove("required");
        }
    }
    if let Some(Value::Object(props)) = s.get_mut("properties") {
        props.values_mut().for_each(to_v2);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = s.get_mut(key) {
            to_v2(sub);
        }
    }
}

/// Gives embedded resources (`x-kubernetes-embedded-resource`) their
/// apiVersion, kind and metadata, as upstream's addEmbeddedProperties — but
/// not those that keep unknown fields.
fn add_embedded_properties(schema: &mut Value) {
    let Some(s) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(props)) = s.get_mut("properties") {
        props.values_mut().for_each(add_embedded_properties);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = s.get_mut(key) {
            add_embedded_properties(sub);
        }
    }
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || s.get("x-kubernetes-embedded-resource") != Some(&Value::Bool(true))
    {
        return;
    }
    let props = s
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(props) = props {
        props.insert(
            "apiVersion".into(),
            json!({"description": API_VERSION_DESCRIPTION, "type": "string"}),
        );
        props.insert(
            "kind".into(),
            json!({"description": KIND_DESCRIPTION, "type": "string"}),
        );
        props.insert("metadata".into(), object_meta());
    }
    let required = s.entry("required").or_insert_with(|| json!([]));
    if let Some(required) = required.as_array_mut() {
        for field in ["kind", "apiVersion"] {
            if !required.iter().any(|r| r == field) {
                required.push(json!(field));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crd_version_gets_a_document_kubectl_explain_can_read() {
        let crds = Crds::default();
        crds.register(&json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "description": "The widget."}}}}}]},
        }));
        assert_eq!(keys(&crds), ["apis/example.com/v1"]);
        let doc: Value =
            serde_json::from_slice(&document(&crds, "apis/example.com/v1").unwrap().bytes).unwrap();
        let widget = &doc["components"]["schemas"]["com.example.v1.Widget"];
        assert_eq!(
            widget["x-kubernetes-group-version-kind"][0]["kind"],
            "Widget"
        );
        assert_eq!(widget["properties"]["spec"]["description"], "The widget.");
        let post = &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets"]["post"];
        assert!(
            post["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(document(&crds, "apis/example.com/v2").is_none());
    }
}

#[cfg(test)]
mod v2_tests {
    use super::*;

    #[test]
    fn v2_definitions_drop_what_swagger_and_kubectl_cannot_read() {
        let schema = json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size", "note"],
                    "properties": {
                        "size": {"type": "integer", "oneOf": [{"minimum": 1}]},
                        "note": {"type": "string", "nullable": true},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                            "properties": {"a": {"type": "string"}}},
                        "raw": {"type": "array", "x-kubernetes-preserve-unknown-fields": true,
                            "items": {"type": "string"}},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                            "properties": {"spec": {"type": "object"}}},
                    },
                },
            },
        });
        let def = object_v2("example.com", "v1", "Widget", Some(&schema));
        let spec = &def["properties"]["spec"];
        assert!(spec["properties"]["size"].get("oneOf").is_none());
        assert_eq!(spec["properties"]["note"], json!({}));
        assert_eq!(spec["required"], json!(["size"]));
        assert_eq!(
            spec["properties"]["extra"],
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(
            spec["properties"]["raw"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        let template = &spec["properties"]["template"];
        assert_eq!(
            template["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(template["required"], json!(["kind", "apiVersion"]));
        assert_eq!(
            def["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(def["properties"]["kind"]["type"], "string");
        assert_eq!(
            def["x-kubernetes-group-version-kind"],
            json!([{"group": "example.com", "kind": "Widget", "version": "v1"}])
        );
        // A kind that keeps unknown fields at its root is just an object.
        let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        assert_eq!(
            object_v2("example.com", "v1", "Open", Some(&open)),
            json!({"type": "object", "x-kubernetes-group-version-kind": [{"group": "example.com", "kind": "Open", "version": "v1"}]})
        );
    }

    #[test]
    fn a_crd_version_adds_definitions_and_upstream_named_operations() {
        let crds = Crds::default();
        crds.register(&json!({
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}}}]},
        }));
        let mut names = Names::default();
        names.insert(
            "autoscaling",
            "v1",
            "Scale",
            "io.k8s.api.autoscaling.v1.Scale".into(),
        );
        let (definitions, paths) = v2_parts(&crds, &names);
        assert!(definitions.contains_key("com.example.stable.v1.CronTab"));
        assert_eq!(
            definitions["com.example.stable.v1.CronTabList"]["properties"]["items"]["items"]["$ref"],
            "#/definitions/com.example.stable.v1.CronTab"
        );
        let collection = &paths["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs"];
        assert_eq!(
            collection["post"]["operationId"],
            "createStableExampleComV1NamespacedCronTab"
        );
        assert_eq!(
            collection["post"]["parameters"][0]["schema"]["$ref"],
            "#/definitions/com.example.stable.v1.CronTab"
        );
        assert_eq!(
            collection["get"]["responses"]["200"]["schema"]["$ref"],
            "#/definitions/com.example.stable.v1.CronTabList"
        );
        assert!(paths.contains_key("/apis/stable.example.com/v1/crontabs"));
        let scale =
            &paths["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/scale"];
        assert_eq!(
            scale["get"]["responses"]["200"]["schema"]["$ref"],
            "#/definitions/io.k8s.api.autoscaling.v1.Scale"
        );
        let status =
            &paths["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/status"];
        assert_eq!(
            status["put"]["operationId"],
            "replaceStableExampleComV1NamespacedCronTabStatus"
        );
    }
}
