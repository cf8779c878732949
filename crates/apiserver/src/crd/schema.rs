//! Structural schemas of custom resources: validation, pruning of unknown
//! fields, and defaulting, as apiextensions-apiserver applies the
//! `openAPIV3Schema` of a CRD version.

use serde_json::{Map, Value};
use skiff_api_types::validation::{ErrorType, FieldError};

/// Fields at the root of every object that the schema does not describe.
const ROOT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true)
}

fn child<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    if let Some(p) = schema["properties"].get(key) {
        return Some(p);
    }
    match &schema["additionalProperties"] {
        v @ Value::Object(_) => Some(v),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn invalid(path: &str, v: &Value, detail: String) -> FieldError {
    FieldError {
        kind: ErrorType::Invalid,
        field: path.to_owned(),
        value: Some(shown(v)),
        detail,
    }
}

/// The paths of fields the schema does not know (what pruning would drop).
pub fn unknown_fields(obj: &Value, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Value::Object(map) = obj {
        for (k, v) in map {
            if ROOT_FIELDS.contains(&k.as_str()) {
                continue;
            }
            walk_unknown(
                v,
                child(schema, k),
                preserves_unknown(schema),
                &join("", k),
                &mut out,
            );
        }
    }
    out
}

fn walk_unknown(
    v: &Value,
    schema: Option<&Value>,
    parent_preserves: bool,
    path: &str,
    out: &mut Vec<String>,
) {
    let Some(schema) = schema else {
        if !parent_preserves {
            out.push(path.to_owned());
        }
        return;
    };
    if preserves_unknown(schema) && schema.get("properties").is_none() {
        return;
    }
    match v {
        Value::Object(map)
            if schema["x-kubernetes-embedded-resource"] != Value::Bool(true)
                || schema.get("properties").is_some() =>
        {
            for (k, cv) in map {
                if schema["x-kubernetes-embedded-resource"] == Value::Bool(true)
                    && ROOT_FIELDS.contains(&k.as_str())
                {
                    continue;
                }
                walk_unknown(
                    cv,
                    child(schema, k),
                    preserves_unknown(schema),
                    &join(path, k),
                    out,
                );
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk_unknown(item, Some(item_schema), false, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Drops the fields the schema does not know, and fills in defaults.
pub fn prune_and_default(obj: &mut Value, schema: &Value) {
    if let Value::Object(map) = obj {
        prune_fields(map, schema, true);
        add_defaults(map, schema);
    }
}

/// Prunes and defaults each field of an object; with `keep_meta`,
/// apiVersion, kind and metadata are left alone (the root, an embedded
/// resource).
fn prune_fields(map: &mut Map<String, Value>, schema: &Value, keep_meta: bool) {
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        if keep_meta && ROOT_FIELDS.contains(&k.as_str()) {
            continue;
        }
        match child(schema, &k) {
            Some(s) => apply(map.get_mut(&k).expect("present"), s),
            None if !preserves_unknown(schema) => {
                map.remove(&k);
            }
            None => {}
        }
    }
}

fn apply(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(map) => {
            if !(preserves_unknown(schema) && schema.get("properties").is_none()) {
                let embedded = schema["x-kubernetes-embedded-resource"] == Value::Bool(true);
                prune_fields(map, schema, embedded);
            }
            add_defaults(map, schema);
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn add_defaults(map: &mut Map<String, Value>, schema: &Value) {
    if let Some(props) = schema["properties"].as_object() {
        for (k, s) in props {
            if !map.contains_key(k)
                && let Some(d) = s.get("default")
            {
                let mut d = d.clone();
                apply(&mut d, s);
                map.insert(k.clone(), d);
            }
        }
    }
}

/// Checks a custom resource against its version's schema.
pub fn validate(obj: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Value::Object(map) = obj {
        for (k, v) in map {
            if ROOT_FIELDS.contains(&k.as_str()) {
                continue;
            }
            if let Some(s) = child(schema, k) {
                check(v, s, k, &mut errors);
            }
        }
        required(map, schema, "", &mut errors);
    }
    errors
}

fn required(map: &Map<String, Value>, schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    for r in schema["required"].as_array().into_iter().flatten() {
        if let Some(r) = r.as_str()
            && map.get(r).is_none_or(Value::is_null)
        {
            errors.push(FieldError {
                kind: ErrorType::Required,
                field: join(path, r),
                value: None,
                detail: String::new(),
            });
        }
    }
}

fn check(v: &Value, schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if v.is_null() {
        if schema["nullable"] != Value::Bool(true) && schema.get("type").is_some() {
            errors.push(invalid(
                path,
                v,
                format!(
                    "{path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == Value::Bool(true);
    let actual = type_of(v);
    if let Some(want) = schema["type"].as_str() {
        let ok = want == actual
            || (want == "number" && actual == "integer")
            || (int_or_string && matches!(actual, "integer" | "string"));
        if !ok {
            errors.push(FieldError {
                kind: ErrorType::TypeInvalid,
                field: path.to_owned(),
                value: Some(shown(v)),
                detail: format!("{path} in body must be of type {want}: \"{actual}\""),
            });
            return;
        }
    } else if int_or_string && !matches!(actual, "integer" | "string") {
        errors.push(invalid(
            path,
            v,
            format!("{path} in body must be of type integer or string: \"{actual}\""),
        ));
        return;
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(v)
    {
        let supported: Vec<String> = options.iter().map(shown).collect();
        errors.push(FieldError {
            kind: ErrorType::NotSupported,
            field: path.to_owned(),
            value: Some(shown(v)),
            detail: format!("supported values: {}", supported.join(", ")),
        });
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let bound = |k: &str| schema[k].as_f64();
            if let Some(max) = bound("maximum") {
                let exclusive = schema["exclusiveMaximum"] == Value::Bool(true);
                if x > max || (exclusive && x >= max) {
                    let rel = if exclusive {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errors.push(invalid(
                        path,
                        v,
                        format!("{path} in body should be {rel} {}", schema["maximum"]),
                    ));
                }
            }
            if let Some(min) = bound("minimum") {
                let exclusive = schema["exclusiveMinimum"] == Value::Bool(true);
                if x < min || (exclusive && x <= min) {
                    let rel = if exclusive {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errors.push(invalid(
                        path,
                        v,
                        format!("{path} in body should be {rel} {}", schema["minimum"]),
                    ));
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64().filter(|m| len > *m) {
                errors.push(FieldError {
                    kind: ErrorType::TooLong,
                    field: path.to_owned(),
                    value: None,
                    detail: format!("may not be more than {max} bytes"),
                });
            }
            if let Some(min) = schema["minLength"].as_u64().filter(|m| len < *m) {
                errors.push(invalid(
                    path,
                    v,
                    format!("{path} in body should be at least {min} chars long"),
                ));
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"]
                .as_u64()
                .filter(|m| items.len() as u64 > *m)
            {
                errors.push(FieldError {
                    kind: ErrorType::TooMany,
                    field: path.to_owned(),
                    value: Some(items.len().to_string()),
                    detail: format!("must have at most {max} items"),
                });
            }
            if let Some(min) = schema["minItems"]
                .as_u64()
                .filter(|m| (items.len() as u64) < *m)
            {
                errors.push(invalid(
                    path,
                    v,
                    format!("{path} in body should have at least {min} items"),
                ));
            }
            if schema["x-kubernetes-list-type"] == "set" {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        errors.push(FieldError {
                            kind: ErrorType::Duplicate,
                            field: format!("{path}[{i}]"),
                            value: Some(shown(item)),
                            detail: String::new(),
                        });
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item, item_schema, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => {
            for (k, cv) in map {
                if schema["x-kubernetes-embedded-resource"] == Value::Bool(true)
                    && ROOT_FIELDS.contains(&k.as_str())
                {
                    continue;
                }
                if let Some(s) = child(schema, k) {
                    check(cv, s, &join(path, k), errors);
                }
            }
            required(map, schema, path, errors);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["color"],
                    "properties": {
                        "color": {"type": "string", "enum": ["red", "blue"]},
                        "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
            },
        })
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_filled() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"color": "red", "bogus": 1, "extra": {"anything": {"goes": true}}}, "junk": 2});
        assert_eq!(unknown_fields(&obj, &schema()), ["junk", "spec.bogus"]);
        prune_and_default(&mut obj, &schema());
        assert_eq!(
            obj["spec"],
            json!({"color": "red", "replicas": 1, "extra": {"anything": {"goes": true}}})
        );
        assert!(obj.get("junk").is_none());
        assert_eq!(obj["metadata"], json!({"name": "w"}));
    }

    #[test]
    fn schema_violations_name_the_field_as_upstream() {
        let obj =
            json!({"spec": {"color": "pink", "replicas": 20, "port": true, "tags": ["a", "a"]}});
        let errors: Vec<String> = validate(&obj, &schema())
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.contains(
                &"spec.color: Unsupported value: \"pink\": supported values: \"red\", \"blue\""
                    .to_owned()
            ),
            "{errors:?}"
        );
        assert!(errors.contains(&"spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10".to_owned()), "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.port: Invalid value: true")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.tags[1]: Duplicate value")),
            "{errors:?}"
        );
        let missing = validate(&json!({"spec": {}}), &schema());
        assert_eq!(missing[0].to_string(), "spec.color: Required value");
        let typed = validate(
            &json!({"spec": {"color": "red", "replicas": "three"}}),
            &schema(),
        );
        assert!(
            typed[0]
                .to_string()
                .contains("spec.replicas in body must be of type integer: \"string\""),
            "{}",
            typed[0]
        );
    }
}
