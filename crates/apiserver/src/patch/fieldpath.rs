//! Field paths and sets of them, as server-side apply tracks ownership, and
//! their `FieldsV1` encoding in `metadata.managedFields`
//! (sigs.k8s.io/structured-merge-diff fieldpath).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// A JSON value with a total order, for list keys and set elements.
#[derive(Clone, Debug)]
pub(crate) struct Scalar(pub Value);

/// One step of a path: a field (or map key), a map-list element by its
/// keys, a set element by its value, or a list index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PathElement {
    Field(String),
    /// Key fields sorted by name.
    Key(Vec<(String, Scalar)>),
    Value(Scalar),
    Index(usize),
}

pub(crate) type Path = Vec<PathElement>;

/// A set of paths, stored as a tree: `members` are paths ending here,
/// `children` hold the paths going deeper (never empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl PartialEq for Scalar {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scalar {}

impl PartialOrd for Scalar {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scalar {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_values(&self.0, &other.0)
    }
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// A total order on JSON values: by kind, then by value.
pub(crate) fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.total_cmp(&y)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (x, y) in x.iter().zip(y) {
                let c = compare_values(x, y);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
                let c = kx.cmp(ky).then_with(|| compare_values(vx, vy));
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A value as upstream prints it in a path: strings quoted.
fn value_string(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::String(_) => serde_json::to_string(v).expect("serializes"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(value_string).collect::<Vec<_>>().join(",")
        ),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", value_string(v)))
            .collect(),
        _ => v.to_string(),
    }
}

impl fmt::Display for PathElement {
    /// As upstream prints paths in conflicts: `.spec`, `[name="web"]`,
    /// `[="a"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(keys) => {
                let parts: Vec<String> = keys
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_string(&v.0)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", value_string(&v.0)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as upstream prints it, e.g. `.spec.template.spec.containers[name="web"].image`.
pub(crate) fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

impl PathElement {
    pub(crate) fn field(name: &str) -> Self {
        PathElement::Field(name.to_owned())
    }

    /// The `FieldsV1` key: `f:name`, `k:{"name":"web"}`, `v:"a"`, `i:0`.
    fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(keys) => {
                let mut out = String::from("k:{");
                for (i, (k, v)) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).expect("serializes"));
                    out.push(':');
                    out.push_str(&serde_json::to_string(&v.0).expect("serializes"));
                }
                out.push('}');
                out
            }
            PathElement::Value(v) => {
                format!("v:{}", serde_json::to_string(&v.0).expect("serializes"))
            }
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Result<Self, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid field path element {s:?}"))?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_owned())),
            "k" => {
                let keys: Map<String, Value> =
                    serde_json::from_str(rest).map_err(|e| format!("invalid key {rest:?}: {e}"))?;
                let mut keys: Vec<(String, Scalar)> =
                    keys.into_iter().map(|(k, v)| (k, Scalar(v))).collect();
                keys.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(PathElement::Key(keys))
            }
            "v" => Ok(PathElement::Value(Scalar(
                serde_json::from_str(rest).map_err(|e| format!("invalid value {rest:?}: {e}"))?,
            ))),
            "i" => Ok(PathElement::Index(
                rest.parse()
                    .map_err(|e| format!("invalid index {rest:?}: {e}"))?,
            )),
            _ => Err(format!("unknown field path element kind in {s:?}")),
        }
    }
}

impl Set {
    pub(crate) fn new() -> Self {
        Set::default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    pub(crate) fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub(crate) fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// Whether `pe` itself is in the set (at this level).
    pub(crate) fn is_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// The paths below `pe`, relative to it.
    pub(crate) fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    pub(crate) fn children(&self) -> impl Iterator<Item = (&PathElement, &Set)> {
        self.children.iter()
    }

    /// Makes `pe` a member and keeps its children (used to build sets).
    pub(crate) fn insert_member(&mut self, pe: PathElement) {
        self.members.insert(pe);
    }

    pub(crate) fn child_mut(&mut self, pe: PathElement) -> &mut Set {
        self.children.entry(pe).or_default()
    }

    /// Drops empty children (after building with `child_mut`).
    pub(crate) fn tidy(&mut self) {
        self.children.retain(|_, c| {
            c.tidy();
            !c.is_empty()
        });
    }

    pub(crate) fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// The paths of `self` not in `other` (path by path: removing a path
    /// leaves the paths below it).
    pub(crate) fn difference(&self, other: &Set) -> Set {
        let mut out = Set {
            members: self.members.difference(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (pe, c) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    pub(crate) fn intersection(&self, other: &Set) -> Set {
        let mut out = Set {
            members: self.members.intersection(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (pe, c) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Every path, members of a level before the levels below, as upstream
    /// iterates.
    pub(crate) fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for m in &self.members {
            let mut p = prefix.clone();
            p.push(m.clone());
            out.push(p);
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON of the set: `{"f:spec":{"f:replicas":{}}}`, with
    /// `".": {}` marking a path that is both a member and has paths below.
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            let value = match self.children.get(pe) {
                Some(c) => {
                    let mut inner = Map::new();
                    if self.members.contains(pe) {
                        inner.insert(".".to_owned(), Value::Object(Map::new()));
                    }
                    if let Value::Object(m) = c.to_fields_v1() {
                        inner.extend(m);
                    }
                    Value::Object(inner)
                }
                None => Value::Object(Map::new()),
            };
            out.insert(pe.encode(), value);
        }
        Value::Object(out)
    }

    /// Parses `FieldsV1` JSON.
    pub(crate) fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let m = v.as_object().ok_or("FieldsV1 must be a JSON object")?;
        let mut set = Set::new();
        for (k, v) in m {
            if k == "." {
                continue;
            }
            let pe = PathElement::decode(k)?;
            let inner = v
                .as_object()
                .ok_or_else(|| format!("FieldsV1 {k:?} must hold an object"))?;
            if inner.is_empty() || inner.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let child = Set::from_fields_v1(v)?;
            if !child.is_empty() {
                set.children.insert(pe, child);
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str, v: Value) -> PathElement {
        PathElement::Key(vec![(name.to_owned(), Scalar(v))])
    }

    fn f(name: &str) -> PathElement {
        PathElement::field(name)
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_members_with_children() {
        let doc = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}},
            "f:finalizers": {"v:\"a\"": {}},
            "f:items": {"i:0": {}}
        });
        let set = Set::from_fields_v1(&doc).unwrap();
        assert!(set.has(&[f("metadata"), f("labels")]));
        assert!(set.has(&[f("metadata"), f("labels"), f("app")]));
        assert!(!set.has(&[f("metadata")]));
        assert!(set.has(&[f("spec"), f("containers"), key("name", json!("web"))]));
        assert!(set.has(&[f("finalizers"), PathElement::Value(Scalar(json!("a")))]));
        assert!(set.has(&[f("items"), PathElement::Index(0)]));
        assert_eq!(set.to_fields_v1(), doc);
    }

    #[test]
    fn paths_print_as_upstream_prints_them() {
        let path = vec![
            f("spec"),
            f("ports"),
            PathElement::Key(vec![
                ("port".to_owned(), Scalar(json!(80))),
                ("protocol".to_owned(), Scalar(json!("TCP"))),
            ]),
            f("targetPort"),
        ];
        assert_eq!(
            path_string(&path),
            ".spec.ports[port=80,protocol=\"TCP\"].targetPort"
        );
        assert_eq!(
            PathElement::Key(vec![("containerPort".to_owned(), Scalar(json!(80)))]).encode(),
            "k:{\"containerPort\":80}"
        );
    }

    #[test]
    fn difference_and_intersection_go_path_by_path() {
        let mut a = Set::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        let mut b = Set::new();
        b.insert(&[f("spec"), f("replicas")]);
        let d = a.difference(&b);
        assert_eq!(d.paths(), vec![vec![f("spec"), f("paused")]]);
        assert_eq!(a.intersection(&b), b);
        assert!(b.difference(&a).is_empty());
        assert_eq!(d.union(&b), a);
    }
}
