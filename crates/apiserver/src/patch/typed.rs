//! Typed operations on JSON objects for server-side apply: the set of fields
//! a value sets, the comparison of two values, the merge of an applied
//! configuration into a live object, and the removal of fields
//! (sigs.k8s.io/structured-merge-diff typed).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldpath::{Path, PathElement, Scalar, Set, path_string};
use super::meta::{ListKind, Ty, Zero};

/// The fields that differ between two values.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

/// How a value of a type is walked.
enum Shape<'a> {
    /// Compared, owned and replaced as a whole.
    Leaf,
    /// An object: a struct (`fields`) or a map whose keys are elements.
    Object { fields: bool },
    /// A set or map-list.
    List(&'a ListKind),
}

fn shape(ty: &Ty) -> Shape<'_> {
    match ty {
        _ if ty.is_atomic() => Shape::Leaf,
        Ty::Struct(_) | Ty::Unknown => Shape::Object { fields: true },
        Ty::Map { .. } | Ty::Deduced => Shape::Object { fields: false },
        Ty::List { kind, .. } => Shape::List(kind),
        _ => Shape::Leaf,
    }
}

/// The path element naming `item` in a list of `kind`.
pub(crate) fn item_element(kind: &ListKind, item: &Value) -> Result<PathElement, String> {
    match kind {
        ListKind::Map(keys) => {
            let obj = item
                .as_object()
                .ok_or("associative list with keys may not have non-map elements")?;
            let mut fields: Vec<(String, Scalar)> = Vec::new();
            for key in keys {
                if let Some(v) = obj.get(key.name) {
                    fields.push((key.name.to_owned(), Scalar(v.clone())));
                } else if let Some(d) = &key.default {
                    fields.push((key.name.to_owned(), Scalar(d.clone())));
                }
            }
            if fields.is_empty() {
                let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
                return Err(format!(
                    "associative list with keys has an element that omits all key fields {names:?}"
                ));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
        _ => Ok(PathElement::Value(Scalar(item.clone()))),
    }
}

fn child_path(path: &Path, pe: PathElement) -> Path {
    let mut p = path.clone();
    p.push(pe);
    p
}

/// The set of fields `value` sets: the fields of a configuration a manager
/// applies (upstream's ToFieldSet).
pub(crate) fn field_set(value: &Value, ty: &'static Ty) -> Set {
    let mut set = Set::new();
    collect_fields(value, ty, &Vec::new(), &mut set);
    set
}

fn collect_fields(value: &Value, ty: &'static Ty, path: &Path, set: &mut Set) {
    match (shape(ty), value) {
        (Shape::Object { fields }, Value::Object(m)) => {
            for (k, v) in m {
                let p = child_path(path, PathElement::field(k));
                collect_fields(v, ty.child(k), &p, set);
                let empty = v.is_null() || v.as_object().is_some_and(Map::is_empty);
                if empty || !fields {
                    set.insert(&p);
                }
            }
        }
        (Shape::List(kind), Value::Array(items)) => {
            let mut seen = BTreeSet::new();
            let mut duplicates = BTreeSet::new();
            for item in items {
                if let Ok(pe) = item_element(kind, item)
                    && !seen.insert(pe.clone())
                    && duplicates.insert(pe.clone())
                {
                    set.insert(&child_path(path, pe));
                }
            }
            for item in items {
                let Ok(pe) = item_element(kind, item) else {
                    continue;
                };
                if duplicates.contains(&pe) {
                    continue;
                }
                let p = child_path(path, pe);
                collect_fields(item, ty.elem(), &p, set);
                set.insert(&p);
            }
        }
        (Shape::Object { .. } | Shape::List(_), _) => {
            if !value.is_null() && !path.is_empty() {
                set.insert(path);
            }
        }
        (Shape::Leaf, _) => {
            if !path.is_empty() {
                set.insert(path);
            }
        }
    }
}

/// Compares `lhs` (before) with `rhs` (after); `None` is an absent value.
pub(crate) fn compare(lhs: &Value, rhs: &Value, ty: &'static Ty) -> Comparison {
    let mut cmp = Comparison::default();
    compare_at(Some(lhs), Some(rhs), ty, &Vec::new(), &mut cmp);
    cmp
}

fn is_emptyish(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

fn compare_leaf(lhs: Option<&Value>, rhs: Option<&Value>, path: &Path, cmp: &mut Comparison) {
    if path.is_empty() {
        return;
    }
    match (lhs, rhs) {
        (None, Some(_)) => cmp.added.insert(path),
        (Some(_), None) => cmp.removed.insert(path),
        (Some(l), Some(r)) if l != r => cmp.modified.insert(path),
        _ => {}
    }
}

fn compare_at(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    ty: &'static Ty,
    path: &Path,
    cmp: &mut Comparison,
) {
    let fits = |v: Option<&Value>, object: bool| match v {
        None | Some(Value::Null) => true,
        Some(v) => v.is_object() == object && v.is_array() != object,
    };
    match shape(ty) {
        Shape::Object { .. } if fits(lhs, true) && fits(rhs, true) => {
            if is_emptyish(lhs) && is_emptyish(rhs) {
                return compare_leaf(lhs, rhs, path, cmp);
            }
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let keys: BTreeSet<&String> = l.keys().chain(r.keys()).collect();
            for k in keys {
                let p = child_path(path, PathElement::field(k));
                compare_at(l.get(k), r.get(k), ty.child(k), &p, cmp);
            }
        }
        Shape::List(kind) if fits(lhs, false) && fits(rhs, false) => {
            if is_emptyish(lhs) && is_emptyish(rhs) {
                return compare_leaf(lhs, rhs, path, cmp);
            }
            compare_items(lhs, rhs, kind, ty, path, cmp);
        }
        _ => return compare_leaf(lhs, rhs, path, cmp),
    }
    if !path.is_empty() {
        if lhs.is_none() {
            cmp.added.insert(path);
        } else if rhs.is_none() {
            cmp.removed.insert(path);
        }
    }
}

/// Indexes a list's items by path element, in order of first appearance.
fn index_items<'v>(
    kind: &ListKind,
    items: &'v [Value],
) -> (Vec<PathElement>, BTreeMap<PathElement, Vec<&'v Value>>) {
    let mut order = Vec::new();
    let mut by_pe: BTreeMap<PathElement, Vec<&Value>> = BTreeMap::new();
    for item in items {
        let Ok(pe) = item_element(kind, item) else {
            continue;
        };
        let entry = by_pe.entry(pe.clone()).or_default();
        if entry.is_empty() {
            order.push(pe);
        }
        entry.push(item);
    }
    (order, by_pe)
}

fn compare_items(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    kind: &ListKind,
    ty: &'static Ty,
    path: &Path,
    cmp: &mut Comparison,
) {
    let none: &[Value] = &[];
    let l = lhs.and_then(Value::as_array).map_or(none, Vec::as_slice);
    let r = rhs.and_then(Value::as_array).map_or(none, Vec::as_slice);
    let (l_order, l_items) = index_items(kind, l);
    let (r_order, r_items) = index_items(kind, r);
    let mut all = l_order;
    for pe in r_order {
        if !l_items.contains_key(&pe) {
            all.push(pe);
        }
    }
    for pe in all {
        let ls = l_items.get(&pe).map_or(&[][..], Vec::as_slice);
        let rs = r_items.get(&pe).map_or(&[][..], Vec::as_slice);
        let p = child_path(path, pe);
        match (ls.len(), rs.len()) {
            (0..=1, 0..=1) => {
                compare_at(ls.first().copied(), rs.first().copied(), ty.elem(), &p, cmp)
            }
            (2.., 2..) => {
                if ls != rs {
                    cmp.modified.insert(&p);
                }
            }
            (2.., _) => {
                if let Some(r) = rs.first() {
                    compare_at(None, Some(r), ty.elem(), &p, cmp);
                }
                cmp.removed.insert(&p);
            }
            (_, _) => {
                if let Some(l) = ls.first() {
                    compare_at(Some(l), None, ty.elem(), &p, cmp);
                }
                cmp.added.insert(&p);
            }
        }
    }
}

/// Merges an applied configuration `rhs` into `lhs` (either may be absent):
/// objects merge key by key, lists by their list type, everything else is
/// taken from `rhs`. A `null` in `rhs` clears the field.
pub(crate) fn merge(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    ty: &'static Ty,
) -> Result<Option<Value>, String> {
    merge_at(lhs, rhs, ty, &Vec::new())
}

fn merge_at(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    ty: &'static Ty,
    path: &Path,
) -> Result<Option<Value>, String> {
    let Some(r) = rhs else {
        return Ok(lhs.cloned());
    };
    match (shape(ty), lhs, r) {
        (Shape::Object { .. }, _, Value::Object(rm)) => {
            let live = lhs.and_then(Value::as_object);
            if rm.is_empty() && live.is_none_or(Map::is_empty) {
                return Ok(Some(r.clone()));
            }
            let empty = Map::new();
            let l = live.unwrap_or(&empty);
            let mut out = Map::new();
            let keys: BTreeSet<&String> = l.keys().chain(rm.keys()).collect();
            for k in keys {
                let rv = rm.get(k);
                if rv.is_some_and(Value::is_null) {
                    continue;
                }
                let p = child_path(path, PathElement::field(k));
                if let Some(v) = merge_at(l.get(k), rv, ty.child(k), &p)? {
                    out.insert(k.clone(), v);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        (Shape::List(kind), l, Value::Array(ri)) => {
            let li = match l {
                Some(Value::Array(li)) => li.as_slice(),
                _ => &[],
            };
            if li.is_empty() && ri.is_empty() {
                return Ok(Some(r.clone()));
            }
            merge_items(li, ri, kind, ty, path).map(|items| Some(Value::Array(items)))
        }
        _ => Ok(Some(r.clone())),
    }
}

/// Merges list items as upstream does: the applied items in their order,
/// with the live-only items kept where they were relative to them.
fn merge_items(
    lhs: &[Value],
    rhs: &[Value],
    kind: &ListKind,
    ty: &'static Ty,
    path: &Path,
) -> Result<Vec<Value>, String> {
    let element =
        |item: &Value| item_element(kind, item).map_err(|e| format!("{}: {e}", path_string(path)));
    let mut rhs_pes = Vec::new();
    let mut observed_rhs: BTreeMap<PathElement, &Value> = BTreeMap::new();
    for item in rhs {
        let pe = element(item)?;
        if observed_rhs.insert(pe.clone(), item).is_some() {
            return Err(format!(
                "{}: duplicate entries for key {pe}",
                path_string(path)
            ));
        }
        rhs_pes.push(pe);
    }
    let mut lhs_pes = Vec::new();
    let mut observed_lhs: BTreeMap<PathElement, Option<&Value>> = BTreeMap::new();
    for item in lhs {
        let pe = element(item)?;
        observed_lhs
            .entry(pe.clone())
            .and_modify(|v| *v = None)
            .or_insert(Some(item));
        lhs_pes.push(pe);
    }

    let mut shared = rhs_pes.iter().filter(|pe| observed_lhs.contains_key(pe));
    let mut next_shared = shared.next();
    let mut merged_rhs = BTreeSet::new();
    let mut out = Vec::new();
    let (mut li, mut ri) = (0, 0);
    let elem = ty.elem();
    let mut merge_one =
        |pe: &PathElement, l: Option<&Value>, r: Option<&Value>| -> Result<(), String> {
            let p = child_path(path, pe.clone());
            if let Some(v) = merge_at(l, r, elem, &p)? {
                out.push(v);
            }
            Ok(())
        };
    while li < lhs_pes.len() || ri < rhs_pes.len() {
        if li < lhs_pes.len() && ri < rhs_pes.len() {
            let pe = &lhs_pes[li];
            if *pe == rhs_pes[ri] {
                merged_rhs.insert(pe.clone());
                merge_one(pe, observed_lhs[pe], Some(observed_rhs[pe]))?;
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if observed_rhs.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < lhs_pes.len() {
            let pe = &lhs_pes[li];
            if !observed_rhs.contains_key(pe) {
                merge_one(pe, Some(&lhs[li]), None)?;
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < rhs_pes.len() {
            let pe = &rhs_pes[ri];
            merged_rhs.insert(pe.clone());
            merge_one(
                pe,
                observed_lhs.get(pe).copied().flatten(),
                Some(observed_rhs[pe]),
            )?;
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    Ok(out)
}

/// Adds the named fields that have paths below them to `set` (upstream's
/// EnsureNamedFieldsAreMembers): owning `.spec.replicas` means owning
/// `.spec` for pruning.
pub(crate) fn with_named_fields(set: &Set, ty: &'static Ty) -> Set {
    let mut out = Set::new();
    for m in set.members() {
        out.insert_member(m.clone());
    }
    for (pe, child) in set.children() {
        let child_ty = match pe {
            PathElement::Field(name) => {
                if ty.has_fields() {
                    out.insert_member(pe.clone());
                }
                ty.child(name)
            }
            _ => ty.elem(),
        };
        *out.child_mut(pe.clone()) = with_named_fields(child, child_ty);
    }
    out.tidy();
    out
}

/// `value` without the items (fields, map entries, list elements) in
/// `set`; a container left empty by the removal is dropped (`None`).
pub(crate) fn remove_items(value: &Value, set: &Set, ty: &'static Ty) -> Option<Value> {
    if set.is_empty() {
        return Some(value.clone());
    }
    match (shape(ty), value) {
        (Shape::Object { .. }, Value::Object(m)) if !m.is_empty() => {
            let mut out = Map::new();
            for (k, v) in m {
                let pe = PathElement::field(k);
                if set.is_member(&pe) {
                    continue;
                }
                let kept = match set.child(&pe) {
                    Some(sub) => remove_items(v, sub, ty.child(k)),
                    None => Some(v.clone()),
                };
                if let Some(v) = kept {
                    out.insert(k.clone(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (Shape::List(kind), Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::new();
            for item in items {
                let Ok(pe) = item_element(kind, item) else {
                    out.push(item.clone());
                    continue;
                };
                if set.is_member(&pe) {
                    continue;
                }
                match set.child(&pe) {
                    Some(sub) => out.push(
                        remove_items(item, sub, ty.elem()).unwrap_or(Value::Object(Map::new())),
                    ),
                    None => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        _ => Some(value.clone()),
    }
}

/// `value` with the fields Go always serializes filled in (`{}` for
/// non-pointer structs, `null` for slices and maps without omitempty), as
/// upstream's typed objects have them: the comparisons that decide who
/// changed what see the same shapes upstream sees.
pub(crate) fn with_zero_fields(value: &Value, ty: &'static Ty) -> Value {
    match (ty, value) {
        (Ty::Struct(_), Value::Object(m)) => {
            let mut out = m.clone();
            if let Some(def) = ty.def() {
                for (name, field) in &def.fields {
                    if out.contains_key(*name) {
                        continue;
                    }
                    match field.zero {
                        Zero::Empty => {
                            out.insert((*name).to_owned(), Value::Object(Map::new()));
                        }
                        Zero::Null => {
                            out.insert((*name).to_owned(), Value::Null);
                        }
                        Zero::Absent => {}
                    }
                }
            }
            for (k, v) in out.iter_mut() {
                if v.is_object() || v.is_array() {
                    *v = with_zero_fields(v, ty.child(k));
                }
            }
            Value::Object(out)
        }
        (Ty::Map { elem, .. }, Value::Object(m)) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), with_zero_fields(v, elem)))
                .collect(),
        ),
        (Ty::List { elem, .. }, Value::Array(items)) => {
            Value::Array(items.iter().map(|v| with_zero_fields(v, elem)).collect())
        }
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::meta;
    use serde_json::json;
    use skiff_api_types::registry;

    fn deployment() -> &'static Ty {
        meta::root(registry::by_kind("apps", "v1", "Deployment").unwrap())
    }

    fn f(name: &str) -> PathElement {
        PathElement::field(name)
    }

    fn web() -> PathElement {
        PathElement::Key(vec![("name".to_owned(), Scalar(json!("web")))])
    }

    #[test]
    fn field_set_of_an_applied_deployment_matches_upstreams_encoding() {
        let applied = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}
                ]}}
            }
        });
        let set = field_set(&applied, deployment());
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:apiVersion": {}, "f:kind": {},
                "f:metadata": {"f:labels": {"f:app": {}}, "f:name": {}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:containerPort": {}
                        }}
                    }}}}
                }
            })
        );
    }

    #[test]
    fn compare_reports_added_modified_and_removed_fields() {
        let before = json!({"spec": {"replicas": 1, "paused": true,
            "template": {"spec": {"containers": [{"name": "web", "image": "a"}]}}}});
        let after = json!({"spec": {"replicas": 2,
            "template": {"spec": {"containers": [{"name": "web", "image": "b"}, {"name": "side", "image": "c"}]}}}});
        let cmp = compare(&before, &after, deployment());
        let containers = vec![f("spec"), f("template"), f("spec"), f("containers")];
        let mut image = containers.clone();
        image.extend([web(), f("image")]);
        assert!(cmp.modified.has(&[f("spec"), f("replicas")]));
        assert!(cmp.modified.has(&image));
        assert!(cmp.removed.has(&[f("spec"), f("paused")]));
        let mut side = containers.clone();
        side.push(PathElement::Key(vec![(
            "name".to_owned(),
            Scalar(json!("side")),
        )]));
        assert!(cmp.added.has(&side));
        assert!(!cmp.added.has(&containers), "the list existed before");
    }

    #[test]
    fn merge_keeps_live_only_items_in_place_and_orders_by_the_applied_list() {
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "x", "image": "live"}, {"name": "b", "image": "2"}
        ]}}}});
        let applied = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "b", "image": "3"}, {"name": "a"}
        ]}}}});
        let merged = merge(Some(&live), Some(&applied), deployment())
            .unwrap()
            .unwrap();
        let names: Vec<_> = merged["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["image"].as_str().unwrap()))
            .collect();
        assert_eq!(names, [("x", "live"), ("b", "3"), ("a", "1")]);
    }

    #[test]
    fn merge_rejects_duplicate_keys_in_the_applied_list() {
        let applied =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}});
        let err = merge(Some(&json!({})), Some(&applied), deployment()).unwrap_err();
        assert!(
            err.contains("duplicate entries for key [name=\"a\"]"),
            "{err}"
        );
    }

    #[test]
    fn remove_items_drops_listed_items_and_emptied_containers() {
        let value =
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 2, "paused": true}});
        let mut set = Set::new();
        set.insert(&[f("metadata"), f("labels"), f("a")]);
        set.insert(&[f("spec"), f("paused")]);
        let out = remove_items(&value, &set, deployment()).unwrap();
        assert_eq!(out, json!({"spec": {"replicas": 2}}));
    }

    #[test]
    fn zero_fields_fill_non_pointer_structs() {
        let v = with_zero_fields(&json!({"spec": {}}), deployment());
        assert_eq!(v["spec"]["template"]["spec"]["containers"], Value::Null);
        assert_eq!(v["spec"]["strategy"], json!({}));
        assert!(
            v["spec"].get("selector").is_none(),
            "a pointer stays absent"
        );
    }
}
