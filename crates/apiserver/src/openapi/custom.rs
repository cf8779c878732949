//! OpenAPI v3 documents of the group-versions CRDs serve, built from each
//! version's `openAPIV3Schema` whenever they are asked for (CRDs come and go;
//! the documents are small), so `kubectl explain` and kubectl's
//! field-validation check see custom resources as soon as they are served.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Document;
use crate::crd::Crds;

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
