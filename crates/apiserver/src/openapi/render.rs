//! Renders path items, with the schemas they reach, as an OpenAPI 3.0
//! document or as a Swagger 2.0 document.

use serde_json::{Map, Value, json};

use super::paths::{Operation, Param, PathItem, Payload};
use super::schemas::{Catalog, Flavor, V2_PREFIX, V3_PREFIX};

/// The Kubernetes version the documents describe.
const INFO_VERSION: &str = "v1.33.0";

fn info() -> Value {
    json!({ "title": "Kubernetes", "version": INFO_VERSION })
}

fn bearer_token() -> Value {
    json!({
        "BearerToken": {
            "description": "Bearer Token authentication",
            "in": "header",
            "name": "authorization",
            "type": "apiKey",
        }
    })
}

/// An OpenAPI 3.0 document: `paths` and the `components.schemas` they reach.
pub(super) fn v3(items: &[PathItem], catalog: &Catalog) -> Value {
    let mut roots = Vec::new();
    let mut paths = Map::new();
    for item in items {
        let mut entry = Map::new();
        if !item.params.is_empty() {
            entry.insert(
                "parameters".into(),
                item.params.iter().map(param_v3).collect(),
            );
        }
        for op in &item.ops {
            entry.insert(op.method.into(), operation_v3(op, &mut roots));
        }
        paths.insert(item.path.clone(), Value::Object(entry));
    }
    let schemas = catalog.closure(roots.iter().map(String::as_str), Flavor::V3);
    json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": bearer_token(),
        },
        "security": [{ "BearerToken": [] }],
    })
}

/// A Swagger 2.0 document: `paths` and the `definitions` they reach.
pub(super) fn v2(items: &[PathItem], catalog: &Catalog) -> Value {
    let mut roots = Vec::new();
    let paths = paths_v2(items, &mut roots);
    let definitions = catalog.closure(roots.iter().map(String::as_str), Flavor::V2);
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": bearer_token(),
        "security": [{ "BearerToken": [] }],
    })
}

/// The `paths` of a Swagger 2.0 document; pushes the schema names they
/// reference to `roots`.
pub(super) fn paths_v2(items: &[PathItem], roots: &mut Vec<String>) -> Map<String, Value> {
    let mut paths = Map::new();
    for item in items {
        let mut entry = Map::new();
        if !item.params.is_empty() {
            entry.insert(
                "parameters".into(),
                item.params.iter().map(param_v2).collect(),
            );
        }
        for op in &item.ops {
            entry.insert(op.method.into(), operation_v2(op, roots));
        }
        paths.insert(item.path.clone(), Value::Object(entry));
    }
    paths
}

fn param_v3(p: &Param) -> Value {
    let mut v = json!({
        "description": p.description,
        "in": p.location,
        "name": p.name,
        "schema": { "type": p.ty, "uniqueItems": true },
    });
    if p.location == "path" {
        v["required"] = json!(true);
    }
    v
}

fn param_v2(p: &Param) -> Value {
    let mut v = json!({
        "description": p.description,
        "in": p.location,
        "name": p.name,
        "type": p.ty,
        "uniqueItems": true,
    });
    if p.location == "path" {
        v["required"] = json!(true);
    }
    v
}

fn payload(p: &Payload, prefix: &str, roots: &mut Vec<String>) -> Value {
    match p {
        Payload::Schema(name) => {
            roots.push(name.clone());
            json!({ "$ref": format!("{prefix}{name}") })
        }
        Payload::Text => json!({ "type": "string" }),
    }
}

fn status_text(code: u16) -> &'static str {
    match code {
        201 => "Created",
        202 => "Accepted",
        401 => "Unauthorized",
        _ => "OK",
    }
}

/// The vendor extensions every operation carries.
fn extensions(op: &Operation, out: &mut Map<String, Value>) {
    out.insert("tags".into(), json!([op.tag]));
    if let Some(action) = op.action {
        out.insert("x-kubernetes-action".into(), json!(action));
    }
    if let Some((group, version, kind)) = op.gvk {
        out.insert(
            "x-kubernetes-group-version-kind".into(),
            json!({ "group": group, "kind": kind, "version": version }),
        );
    }
}

fn operation_v3(op: &Operation, roots: &mut Vec<String>) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), json!(op.description));
    out.insert("operationId".into(), json!(op.id));
    if !op.params.is_empty() {
        out.insert(
            "parameters".into(),
            op.params.iter().map(param_v3).collect(),
        );
    }
    if let Some(body) = &op.body {
        let schema = payload(body, V3_PREFIX, roots);
        let content: Map<String, Value> = op
            .consumes
            .iter()
            .map(|m| (m.to_string(), json!({ "schema": schema })))
            .collect();
        let mut request = json!({ "content": content });
        if op.method != "delete" {
            request["required"] = json!(true);
        }
        out.insert("requestBody".into(), request);
    }
    let mut responses = Map::new();
    for (code, body) in &op.responses {
        let schema = payload(body, V3_PREFIX, roots);
        let content: Map<String, Value> = op
            .produces
            .iter()
            .map(|m| (m.to_string(), json!({ "schema": schema })))
            .collect();
        responses.insert(
            code.to_string(),
            json!({ "content": content, "description": status_text(*code) }),
        );
    }
    responses.insert("401".into(), json!({ "description": status_text(401) }));
    out.insert("responses".into(), Value::Object(responses));
    extensions(op, &mut out);
    Value::Object(out)
}

fn operation_v2(op: &Operation, roots: &mut Vec<String>) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), json!(op.description));
    out.insert("operationId".into(), json!(op.id));
    let mut params: Vec<Value> = Vec::new();
    if let Some(body) = &op.body {
        out.insert("consumes".into(), json!(op.consumes));
        let mut param = json!({
            "in": "body",
            "name": "body",
            "schema": payload(body, V2_PREFIX, roots),
        });
        if op.method != "delete" {
            param["required"] = json!(true);
        }
        params.push(param);
    }
    params.extend(op.params.iter().map(param_v2));
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    out.insert("produces".into(), json!(op.produces));
    let mut responses = Map::new();
    for (code, body) in &op.responses {
        responses.insert(
            code.to_string(),
            json!({ "description": status_text(*code), "schema": payload(body, V2_PREFIX, roots) }),
        );
    }
    responses.insert("401".into(), json!({ "description": status_text(401) }));
    out.insert("responses".into(), Value::Object(responses));
    out.insert("schemes".into(), json!(["https"]));
    extensions(op, &mut out);
    Value::Object(out)
}
