//! Strategic merge patch, as upstream's API server applies it
//! (k8s.io/apimachinery/pkg/util/strategicpatch): maps merge recursively and
//! `null` deletes; lists whose field has patch strategy `merge` merge element
//! by element (by the merge key, or by value for scalars), other lists are
//! replaced; and the directives kubectl's three-way patches use:
//! `$patch: replace | delete | merge`, `$deleteFromPrimitiveList/<field>`,
//! `$setElementOrder/<field>` and `$retainKeys`.

use serde_json::{Map, Value};
use skiff_api_types::registry::ResourceInfo;

use super::meta::{self, Ty};
use crate::status::ApiError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

type Result<T> = std::result::Result<T, ApiError>;

/// Applies the strategic merge patch `patch` (a JSON object) to `current`.
pub(crate) fn merge(resource: &ResourceInfo, current: &Value, patch: &Value) -> Result<Value> {
    let patch = patch
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the patch must be a JSON object"))?;
    let original = current.as_object().cloned().unwrap_or_default();
    let merged = merge_map(original, patch.clone(), meta::root(resource), "")?;
    Ok(Value::Object(merged))
}

/// A patch whose directives are malformed: 400, as upstream.
fn bad_format(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// A patch that is well-formed JSON but cannot be applied here: 422.
fn invalid(path: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError {
        code: 422,
        reason: "Invalid",
        message: if path.is_empty() {
            message
        } else {
            format!("{path}: {message}")
        },
        details: None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).expect("serializes")
}

/// The JSON kind of a value, as Go's reflect.Type tells patch values apart.
fn kind(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// A field's patch strategy without `retainKeys` (which only allows the
/// `$retainKeys` directive): `merge`, `replace` or none.
fn strategy(
    ty: &'static Ty,
    key: &str,
    path: &str,
) -> Result<(Option<&'static str>, Option<&'static str>)> {
    let field = ty.field(key);
    let parts: Vec<&str> = field
        .patch_strategy
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    let other = match parts.as_slice() {
        [] | ["retainKeys"] => None,
        [s] => Some(*s),
        ["retainKeys", s] | [s, "retainKeys"] => Some(*s),
        _ => {
            return Err(invalid(
                path,
                format!("unexpected patch strategy: {parts:?}"),
            ));
        }
    };
    Ok((other, field.patch_merge_key))
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: &'static Ty,
    path: &str,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                Ok(clean_map(patch))
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(invalid(
                path,
                format!(
                    "unknown patch type: {} in map: {}",
                    compact(directive),
                    compact(&Value::Object(patch.clone()))
                ),
            )),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, ty, path)?;

    for (k, patch_value) in patch {
        let (key, delete_list) = match k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(key) if !key.is_empty() => (key.to_owned(), true),
                _ => return Err(bad_format("invalid patch format of primitive list")),
            },
            None => (k, false),
        };
        let here = join(path, &key);
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let Some(original_value) = original.get_mut(&key) else {
            if !delete_list && let Some(v) = clean(patch_value) {
                original.insert(key, v);
            }
            continue;
        };
        if kind(original_value) != kind(&patch_value) {
            if !delete_list {
                match clean(patch_value) {
                    Some(v) => *original_value = v,
                    None => {
                        original.remove(&key);
                    }
                }
            }
            continue;
        }
        match patch_value {
            Value::Object(patch_map) => {
                let (strategy, _) = strategy(ty, &key, &here)?;
                let merged = if strategy == Some("replace") {
                    clean_map(patch_map)
                } else {
                    let current =
                        std::mem::take(original_value.as_object_mut().expect("same kind"));
                    merge_map(current, patch_map, ty.child(&key), &here)?
                };
                *original_value = Value::Object(merged);
            }
            Value::Array(patch_list) => {
                let (strategy, merge_key) = strategy(ty, &key, &here)?;
                let merged = if strategy == Some("merge") || delete_list {
                    let current = std::mem::take(original_value.as_array_mut().expect("same kind"));
                    merge_list(
                        current,
                        patch_list,
                        ty.child(&key).elem(),
                        merge_key,
                        delete_list,
                        &here,
                    )?
                } else {
                    clean_list(patch_list)
                };
                *original_value = Value::Array(merged);
            }
            scalar => *original_value = scalar,
        }
    }
    Ok(original)
}

/// `$retainKeys: [...]`: keys of `original` not listed are cleared; the
/// patch may set only listed keys.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let retain = retain
        .as_array()
        .ok_or_else(|| bad_format("invalid patch format of retainKeys"))?;
    let listed = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !listed(k) {
            return Err(bad_format("invalid patch format of retainKeys"));
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// `$setElementOrder/<field>: [...]`: merges the field's patch list (if any)
/// and orders the result: listed items in the listed order, the others
/// where they were relative to them.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: &'static Ty,
    path: &str,
) -> Result<()> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let order = patch.remove(&directive).expect("listed");
        let key = match directive[SET_ELEMENT_ORDER.len()..].strip_prefix('/') {
            Some(key) if !key.is_empty() => key.to_owned(),
            _ => return Err(bad_format("invalid patch format of setElementOrder list")),
        };
        let here = join(path, &key);
        let Value::Array(order) = order else {
            return Err(bad_format(format!("{directive} must be a list")));
        };
        let original_list = match original.get(&key) {
            None => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(_) => {
                return Err(invalid(
                    &here,
                    "the field $setElementOrder orders is not a list",
                ));
            }
        };
        let patch_list = match patch.remove(&key) {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(_) => {
                return Err(invalid(
                    &here,
                    "the patch for a field $setElementOrder orders must be a list",
                ));
            }
        };
        let (strategy, merge_key) = strategy(ty, &key, &here)?;
        if let Some(list) = &patch_list {
            validate_order(list, &order, merge_key, &here)?;
        }
        let merged = match (original_list.clone(), patch_list) {
            (Some(o), None) => o,
            (None, Some(p)) => clean_list(p),
            (Some(o), Some(p)) => {
                if strategy == Some("merge") {
                    merge_list(o, p, ty.child(&key).elem(), merge_key, false, &here)?
                } else {
                    clean_list(p)
                }
            }
            (None, None) => continue,
        };
        let (in_order, server_only) = partition(merged, &order, merge_key)?;
        let both = normalize_order(
            in_order,
            server_only,
            &order,
            original_list.as_deref().unwrap_or(&[]),
            merge_key,
        )?;
        original.insert(key, Value::Array(both));
    }
    Ok(())
}

/// Checks that the patch list's items come in the order `$setElementOrder`
/// lists them (deletions aside).
fn validate_order(
    patch: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
    path: &str,
) -> Result<()> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = match merge_key {
        Some(_) => patch.iter().filter(|v| !is_delete(v)).collect(),
        None => patch.iter().collect(),
    };
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        if items[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if key_of(items[p], merge_key, path)? == key_of(&order[o], merge_key, path)? {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        return Err(bad_format(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            compact(&Value::Array(patch.to_vec())),
            compact(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn is_delete(v: &Value) -> bool {
    v.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

/// What identifies a list item: its merge key's value, or (scalar lists)
/// itself.
fn key_of<'v>(item: &'v Value, merge_key: Option<&str>, path: &str) -> Result<&'v Value> {
    match merge_key {
        None => Ok(item),
        Some(k) => item.get(k).ok_or_else(|| {
            invalid(
                path,
                format!(
                    "map: {} does not contain declared merge key: {k}",
                    compact(item)
                ),
            )
        }),
    }
}

/// The items of `items` whose key `order` holds, and the others.
fn partition(
    items: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut keys = Vec::with_capacity(order.len());
    for o in order {
        // Keyless entries of the order list match nothing.
        if let Ok(k) = key_of(o, merge_key, "") {
            keys.push(k);
        }
    }
    let mut listed = Vec::new();
    let mut others = Vec::new();
    for item in items {
        let k = key_of(&item, merge_key, "")?;
        if keys.contains(&k) {
            listed.push(item);
        } else {
            others.push(item);
        }
    }
    Ok((listed, others))
}

/// upstream's normalizeElementOrder: `patch_items` sorted by `patch_order`,
/// `server_only` by `server_order`, then interleaved so each server-only
/// item stays before the patch items it preceded on the server.
fn normalize_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>> {
    let index = |list: &[Value], item: &Value| -> Option<usize> {
        let k = key_of(item, merge_key, "").ok()?;
        list.iter()
            .position(|v| key_of(v, merge_key, "").is_ok_and(|vk| vk == k))
    };
    let sort = |mut items: Vec<Value>, order: &[Value]| -> Result<Vec<Value>> {
        let mut deletions = Vec::new();
        if merge_key.is_some() {
            for v in items.iter().chain(order) {
                key_of(v, merge_key, "")?;
            }
            let (keep, delete): (Vec<Value>, Vec<Value>) =
                items.into_iter().partition(|v| !is_delete(v));
            items = keep;
            deletions = delete;
        }
        items.sort_by_key(|v| index(order, v).unwrap_or(usize::MAX));
        items.extend(deletions);
        Ok(items)
    };
    let right = sort(patch_items, patch_order)?;
    let left = sort(server_only, server_order)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut left, mut right) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (index(server_order, l), index(server_order, r)) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        out.push(if take_left { left.next() } else { right.next() }.expect("peeked"));
    }
    Ok(out)
}

/// Merges a patch list into a list whose field has patch strategy `merge`
/// (or deletes from a scalar list, for `$deleteFromPrimitiveList`).
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    elem: &'static Ty,
    merge_key: Option<&str>,
    delete_list: bool,
    path: &str,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let mut element_kind = None;
    for v in original.iter().chain(&patch) {
        if v.is_array() {
            return Err(invalid(path, "lists of lists are not supported"));
        }
        match element_kind {
            None => element_kind = Some(kind(v)),
            Some(k) if k != kind(v) => {
                return Err(invalid(path, "list element types are not identical"));
            }
            Some(_) => {}
        }
    }
    if element_kind != Some(kind(&Value::Object(Map::new()))) {
        if delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (patch_items, server_only) = partition(merged, &patch, None)?;
        return normalize_order(patch_items, server_only, &patch, &original, None);
    }

    let Some(merge_key) = merge_key else {
        return Err(invalid(path, "cannot merge lists without merge key"));
    };
    // Directive elements first: deletions and a whole-list replacement.
    let mut original = original;
    let mut items = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        match v.get(DIRECTIVE) {
            None => items.push(v),
            Some(directive) => match directive.as_str() {
                Some("delete") => {
                    let k = key_of(&v, Some(merge_key), path)?.clone();
                    original.retain(|o| o.get(merge_key) != Some(&k));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(invalid(
                        path,
                        "merging lists cannot yet be specified in the patch",
                    ));
                }
                _ => {
                    return Err(invalid(
                        path,
                        format!(
                            "unknown patch type: {} in map: {}",
                            compact(directive),
                            compact(&v)
                        ),
                    ));
                }
            },
        }
    }
    let patch = if replace {
        original = items.into_iter().filter_map(clean).collect();
        Vec::new()
    } else {
        items
    };

    let mut merged = original.clone();
    for item in &patch {
        let k = key_of(item, Some(merge_key), path)?;
        let mut found = None;
        for (i, o) in merged.iter().enumerate() {
            let Value::Object(o) = o else {
                return Err(invalid(path, format!("value for key {i} is not a map")));
            };
            if o.get(merge_key) == Some(k) {
                found = Some(i);
                break;
            }
        }
        let here = format!("{path}[{merge_key}={}]", compact(k));
        match found {
            Some(i) => {
                let current = std::mem::take(merged[i].as_object_mut().expect("checked"));
                let patch_map = item.as_object().cloned().unwrap_or_default();
                merged[i] = Value::Object(merge_map(current, patch_map, elem, &here)?);
            }
            None => {
                if let Some(v) = clean(item.clone()) {
                    merged.push(v);
                }
            }
        }
    }
    let (patch_items, server_only) = partition(merged, &patch, Some(merge_key))?;
    normalize_order(patch_items, server_only, &patch, &original, Some(merge_key))
}

/// A patch value that lands where nothing was: without nulls and
/// directives (`$patch: delete` drops it).
fn clean(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(mut m) => match m.remove(DIRECTIVE) {
            Some(d) if d.as_str() != Some("replace") => None,
            _ => Some(Value::Object(clean_map(m))),
        },
        Value::Array(items) => Some(Value::Array(clean_list(items))),
        v => Some(v),
    }
}

fn clean_map(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .filter_map(|(k, v)| clean(v).map(|v| (k, v)))
        .collect()
}

fn clean_list(items: Vec<Value>) -> Vec<Value> {
    items
        .into_iter()
        .filter(|v| v.get(DIRECTIVE).is_none())
        .filter_map(clean)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_api_types::registry;

    fn pods() -> &'static ResourceInfo {
        registry::by_kind("", "v1", "Pod").unwrap()
    }

    fn apply(resource: &ResourceInfo, current: Value, patch: Value) -> Value {
        merge(resource, &current, &patch).unwrap_or_else(|e| panic!("{}", e.message))
    }

    /// (description, original, patch, result) on a Pod.
    fn pod_cases() -> Vec<(&'static str, Value, Value, Value)> {
        vec![
            (
                "a container's image changes by name",
                json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}),
                json!({"spec": {"containers": [{"name": "b", "image": "3"}]}}),
                json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "3"}]}}),
            ),
            (
                "a new container goes first (without $setElementOrder, as upstream)",
                json!({"spec": {"containers": [{"name": "a", "image": "1"}]}}),
                json!({"spec": {"containers": [{"name": "b", "image": "2"}]}}),
                json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "a", "image": "1"}]}}),
            ),
            (
                "an env var is deleted with $patch: delete",
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}}),
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "$patch": "delete"}]}]}}),
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}]}}),
            ),
            (
                "null deletes a field of a list element",
                json!({"spec": {"containers": [{"name": "a", "image": "1", "command": ["x"]}]}}),
                json!({"spec": {"containers": [{"name": "a", "command": null}]}}),
                json!({"spec": {"containers": [{"name": "a", "image": "1"}]}}),
            ),
            (
                "$setElementOrder reorders the containers",
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}),
                json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {"containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}),
            ),
            (
                "$setElementOrder with a change keeps a server-only item before what followed it",
                json!({"spec": {"containers": [{"name": "a"}, {"name": "x"}, {"name": "b"}]}}),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                    "containers": [{"name": "a", "image": "new"}]
                }}),
                json!({"spec": {"containers": [{"name": "x"}, {"name": "b"}, {"name": "a", "image": "new"}]}}),
            ),
            (
                "$deleteFromPrimitiveList removes finalizers",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
                json!({"metadata": {"finalizers": ["a", "c"]}}),
            ),
            (
                "finalizers merge as a set",
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["b", "c"]}}),
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            ),
            (
                "add an item in a list of primitives and preserve order (upstream)",
                json!({"metadata": {"finalizers": ["1", "4", "2"]}}),
                json!({"metadata": {"$setElementOrder/finalizers": ["3", "1", "2"], "finalizers": ["3"]}}),
                json!({"metadata": {"finalizers": ["3", "1", "4", "2"]}}),
            ),
            (
                "add and delete items in lists of scalars (upstream)",
                json!({"metadata": {"finalizers": ["1", "2", "3", "4"]}}),
                json!({"metadata": {
                    "$setElementOrder/finalizers": ["1", "2", "4"],
                    "$deleteFromPrimitiveList/finalizers": ["3"]
                }}),
                json!({"metadata": {"finalizers": ["1", "2", "4"]}}),
            ),
            (
                "$deleteFromPrimitiveList of a missing list adds nothing",
                json!({"metadata": {"name": "p"}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
                json!({"metadata": {"name": "p"}}),
            ),
            (
                "$patch: replace on a list replaces it",
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}),
                json!({"spec": {"containers": [{"name": "c"}]}}),
            ),
            (
                "$patch: replace on a map replaces it",
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"c": "3", "$patch": "replace"}}}),
                json!({"metadata": {"labels": {"c": "3"}}}),
            ),
            (
                "$patch: delete on a map empties it",
                json!({"spec": {"securityContext": {"runAsUser": 1}}}),
                json!({"spec": {"securityContext": {"$patch": "delete"}}}),
                json!({"spec": {"securityContext": {}}}),
            ),
            (
                "lists without a merge strategy are replaced",
                json!({"spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "a", "args": ["1", "2"]}]}}),
                json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "a", "args": ["3"]}]}}),
                json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "a", "args": ["3"]}]}}),
            ),
            (
                "maps merge and null deletes a label",
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
                json!({"metadata": {"labels": {"b": "2", "c": "3"}}}),
            ),
            (
                "ports merge by containerPort",
                json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 443}]}]}}),
                json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 443, "name": "https"}]}]}}),
                json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 443, "name": "https"}]}]}}),
            ),
            (
                "$retainKeys clears the volume source kubectl switched away from",
                json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
                json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}}]}}),
                json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}}]}}),
            ),
            (
                "new values carry no directives or nulls",
                json!({"spec": {}}),
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": null}], "$setElementOrder/env": [{"name": "X"}]}]}}),
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}]}}),
            ),
        ]
    }

    #[test]
    fn pod_patches_merge_as_upstream() {
        for (description, original, patch, expected) in pod_cases() {
            let got = merge(pods(), &original, &patch)
                .unwrap_or_else(|e| panic!("{description}: {}", e.message));
            assert_eq!(got, expected, "{description}");
        }
    }

    #[test]
    fn deployment_template_containers_merge_by_name() {
        let deployments = registry::by_kind("apps", "v1", "Deployment").unwrap();
        let current = json!({"spec": {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "side", "image": "s"}]}}}});
        let patch = json!({"spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}
        }});
        assert_eq!(
            apply(deployments, current, patch),
            json!({"spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}, {"name": "side", "image": "s"}]}}}})
        );
    }

    #[test]
    fn cron_job_nested_templates_and_node_status_merge_by_key() {
        let cronjobs = registry::by_kind("batch", "v1", "CronJob").unwrap();
        let current = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}]}}}}}});
        let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "2"}]}}}}}});
        let got = apply(cronjobs, current, patch);
        assert_eq!(
            got["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            2
        );

        let nodes = registry::by_kind("", "v1", "Node").unwrap();
        let current = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(
            apply(nodes, current, patch)["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}])
        );
    }

    #[test]
    fn custom_resources_merge_maps_and_replace_lists() {
        let crds =
            registry::by_kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition").unwrap();
        let custom = ResourceInfo {
            group: "example.com",
            kind: "Widget",
            ..*crds
        };
        let got = apply(
            &custom,
            json!({"spec": {"a": 1, "l": [1, 2]}}),
            json!({"spec": {"b": 2, "l": [3]}}),
        );
        assert_eq!(got, json!({"spec": {"a": 1, "b": 2, "l": [3]}}));
    }

    #[test]
    fn malformed_patches_are_rejected_with_a_clear_message() {
        let cases = [
            (
                json!({"spec": {"containers": [{"image": "x"}]}}),
                422,
                "does not contain declared merge key: name",
            ),
            (
                json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
                400,
                "invalid patch format of primitive list",
            ),
            (
                json!({"spec": {"$setElementOrder": []}}),
                400,
                "invalid patch format of setElementOrder list",
            ),
            (
                json!({"metadata": {"labels": {"$retainKeys": "a"}}}),
                400,
                "invalid patch format of retainKeys",
            ),
            (
                json!({"metadata": {"labels": {"$retainKeys": ["a"], "b": "1"}}}),
                400,
                "invalid patch format of retainKeys",
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
                422,
                "merging lists cannot yet be specified",
            ),
            (
                json!({"spec": {"$patch": "frobnicate"}}),
                422,
                "unknown patch type",
            ),
            (
                json!({"spec": {"containers": [{"name": "a"}, [1]]}}),
                422,
                "lists of lists are not supported",
            ),
            (
                json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "containers": [{"name": "a"}, {"name": "b"}]}}),
                400,
                "doesn't match $setElementOrder list",
            ),
        ];
        let current = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "a", "image": "1"}]}});
        for (patch, code, needle) in cases {
            let err = merge(pods(), &current, &patch).expect_err(needle);
            assert_eq!(err.code, code, "{needle}: {}", err.message);
            assert!(err.message.contains(needle), "{needle}: {}", err.message);
        }
        let err = merge(
            pods(),
            &current,
            &json!({"spec": {"containers": [{"image": "x"}]}}),
        )
        .unwrap_err();
        assert!(
            err.message.starts_with("spec.containers: "),
            "{}",
            err.message
        );
    }
}
