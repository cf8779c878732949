//! Patch metadata of the built-in types: for every list its strategic merge
//! patch strategy and merge key and its server-side apply list type and map
//! keys, for every map and struct whether it merges granularly or is atomic.
//!
//! The facts live in `schema.txt` (generated from upstream's published API
//! definitions by `scripts/gen-patch-schema.py`), keyed by OpenAPI definition name, e.g.
//! `io.k8s.api.core.v1.PodSpec`, so nested types are described once and
//! reused wherever they appear. A field the table does not name is a scalar
//! or unknown: unknown lists are atomic (replaced), unknown objects merge
//! field by field, as upstream treats objects.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;
use skiff_api_types::registry::ResourceInfo;

/// The type of a value, as the patch engine sees it.
#[derive(Debug, PartialEq)]
pub(crate) enum Ty {
    /// A string, number or boolean (or a type serialized as one).
    Scalar,
    /// Any JSON, replaced as a whole (`__untyped_atomic_`).
    Untyped,
    /// Any JSON: objects are maps merged key by key, lists are atomic
    /// (`__untyped_deduced_`).
    Deduced,
    /// Nothing is known: objects merge field by field, lists are atomic.
    Unknown,
    /// A struct, by definition name (possibly absent from the table: then a
    /// plain struct of scalars).
    Struct(&'static str),
    /// A map with string keys (`map[string]T`).
    Map { elem: Box<Ty>, atomic: bool },
    /// A list.
    List { elem: Box<Ty>, kind: ListKind },
}

/// How server-side apply treats a list (`x-kubernetes-list-type`).
#[derive(Debug, PartialEq)]
pub(crate) enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars, merged by value.
    Set,
    /// A list of objects merged by the values of these key fields.
    Map(Vec<ListKey>),
}

/// A key field of a map-list, with the value an element that omits it has.
#[derive(Debug, PartialEq)]
pub(crate) struct ListKey {
    pub name: &'static str,
    pub default: Option<Value>,
}

/// A struct type.
#[derive(Debug)]
pub(crate) struct TypeDef {
    /// Replaced as a whole by server-side apply (`x-kubernetes-map-type: atomic`).
    pub atomic: bool,
    pub fields: HashMap<&'static str, FieldDef>,
}

/// A field of a struct type.
#[derive(Debug)]
pub(crate) struct FieldDef {
    pub ty: Ty,
    /// What the field is in a Go zero value of the struct.
    pub zero: Zero,
    /// Strategic merge patch `patchStrategy` (`merge`, `retainKeys`,
    /// `merge,retainKeys`, `replace`).
    pub patch_strategy: Option<&'static str>,
    /// Strategic merge patch `patchMergeKey`.
    pub patch_merge_key: Option<&'static str>,
}

/// A field's value in the Go zero value of its struct, which upstream's
/// field tracking compares against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Zero {
    /// Absent (a pointer, or omitted when empty).
    Absent,
    /// `{}`: a struct that is not a pointer.
    Empty,
    /// `null`: a slice or map serialized even when empty.
    Null,
}

/// The facts about one field, for strategic merge patch, server-side apply
/// and the OpenAPI documents.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldMeta {
    /// The type of the field's value.
    pub ty: &'static Ty,
    /// `x-kubernetes-patch-strategy`.
    pub patch_strategy: Option<&'static str>,
    /// `x-kubernetes-patch-merge-key`.
    pub patch_merge_key: Option<&'static str>,
}

struct Schema {
    types: HashMap<&'static str, TypeDef>,
    /// `Ty::Struct(name)` for every definition in `types`, to hand out
    /// `&'static` references.
    named: HashMap<&'static str, Ty>,
}

static TEXT: &str = include_str!("schema.txt");
static SCHEMA: OnceLock<Schema> = OnceLock::new();
pub(crate) static UNKNOWN: Ty = Ty::Unknown;
static UNKNOWN_FIELD: FieldDef = FieldDef {
    ty: Ty::Unknown,
    zero: Zero::Absent,
    patch_strategy: None,
    patch_merge_key: None,
};

fn schema() -> &'static Schema {
    SCHEMA.get_or_init(|| parse(TEXT).expect("schema.txt is well-formed"))
}

impl Ty {
    /// The struct definition, for a struct the table describes.
    pub(crate) fn def(&self) -> Option<&'static TypeDef> {
        match self {
            Ty::Struct(name) => schema().types.get(name),
            _ => None,
        }
    }

    /// Whether server-side apply replaces values of this type as a whole.
    pub(crate) fn is_atomic(&self) -> bool {
        match self {
            Ty::Scalar | Ty::Untyped => true,
            Ty::Struct(_) => self.def().is_some_and(|d| d.atomic),
            Ty::Map { atomic, .. } => *atomic,
            Ty::List { kind, .. } => *kind == ListKind::Atomic,
            Ty::Deduced | Ty::Unknown => false,
        }
    }

    /// Whether the keys of an object of this type are declared fields (a
    /// struct) rather than the keys of a map.
    pub(crate) fn has_fields(&self) -> bool {
        matches!(self, Ty::Struct(_) | Ty::Unknown)
    }

    /// The definition of field (or map key) `name` of an object of this type.
    pub(crate) fn field(&'static self, name: &str) -> &'static FieldDef {
        match self {
            Ty::Struct(_) => self
                .def()
                .and_then(|d| d.fields.get(name))
                .unwrap_or(&UNKNOWN_FIELD),
            _ => &UNKNOWN_FIELD,
        }
    }

    /// The type of field (or map value) `name` of an object of this type.
    pub(crate) fn child(&'static self, name: &str) -> &'static Ty {
        match self {
            Ty::Struct(_) => &self.field(name).ty,
            Ty::Map { elem, .. } => elem,
            Ty::Deduced => &Ty::Deduced,
            _ => &UNKNOWN,
        }
    }

    /// The type of the elements of a list of this type.
    pub(crate) fn elem(&'static self) -> &'static Ty {
        match self {
            Ty::List { elem, .. } => elem,
            Ty::Deduced | Ty::Untyped => &Ty::Untyped,
            _ => &UNKNOWN,
        }
    }
}

impl FieldMeta {
    fn of(def: &'static FieldDef) -> Self {
        FieldMeta {
            ty: &def.ty,
            patch_strategy: def.patch_strategy,
            patch_merge_key: def.patch_merge_key,
        }
    }

    /// `x-kubernetes-list-type` (`atomic`, `set` or `map`), for a list.
    pub(crate) fn list_type(&self) -> Option<&'static str> {
        match self.ty {
            Ty::List { kind, .. } => Some(match kind {
                ListKind::Atomic => "atomic",
                ListKind::Set => "set",
                ListKind::Map(_) => "map",
            }),
            _ => None,
        }
    }

    /// `x-kubernetes-list-map-keys`, for a map-list.
    pub(crate) fn list_map_keys(&self) -> Vec<&'static str> {
        match self.ty {
            Ty::List {
                kind: ListKind::Map(keys),
                ..
            } => keys.iter().map(|k| k.name).collect(),
            _ => Vec::new(),
        }
    }

    /// `x-kubernetes-map-type` (`atomic` or `granular`), for a map or a
    /// struct.
    #[cfg(test)]
    pub(crate) fn map_type(&self) -> Option<&'static str> {
        match self.ty {
            Ty::Map { atomic, .. } => Some(if *atomic { "atomic" } else { "granular" }),
            Ty::Struct(_) => Some(if self.ty.is_atomic() {
                "atomic"
            } else {
                "granular"
            }),
            _ => None,
        }
    }

    /// The definition name of the field's struct type, or of its elements'
    /// (for a list or map of structs).
    #[cfg(test)]
    pub(crate) fn definition(&self) -> Option<&'static str> {
        let mut ty = self.ty;
        loop {
            match ty {
                Ty::Struct(name) => return Some(name),
                Ty::List { elem, .. } | Ty::Map { elem, .. } => ty = elem,
                _ => return None,
            }
        }
    }
}

/// The OpenAPI definition name of a kind, e.g.
/// `io.k8s.api.apps.v1.Deployment`.
pub(crate) fn definition_name(group: &str, version: &str, kind: &str) -> String {
    match group {
        "apiextensions.k8s.io" => {
            format!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}.{kind}")
        }
        "" => format!("io.k8s.api.core.{version}.{kind}"),
        "internal.apiserver.k8s.io" => format!("io.k8s.api.apiserverinternal.{version}.{kind}"),
        g => format!(
            "io.k8s.api.{}.{version}.{kind}",
            g.split('.').next().unwrap_or(g)
        ),
    }
}

/// The type of a whole object of this resource (`Ty::Unknown` for kinds the
/// table does not describe, such as custom resources).
pub(crate) fn root(resource: &ResourceInfo) -> &'static Ty {
    let name = definition_name(resource.group, resource.version, resource.kind);
    schema().named.get(name.as_str()).unwrap_or(&UNKNOWN)
}

/// The patch metadata of the field at `path` in objects of `resource`,
/// e.g. `["spec", "template", "spec", "containers", "ports"]` (list
/// elements are stepped into implicitly, map keys are path segments). A
/// field the table does not know answers no strategy and `Ty::Unknown`.
#[cfg(test)]
pub(crate) fn field(resource: &ResourceInfo, path: &[&str]) -> FieldMeta {
    let mut ty = root(resource);
    let mut def = &UNKNOWN_FIELD;
    for segment in path {
        while let Ty::List { elem, .. } = ty {
            ty = elem;
        }
        def = match ty {
            Ty::Struct(_) => ty.field(segment),
            Ty::Map { elem, .. } => {
                ty = elem;
                continue;
            }
            _ => &UNKNOWN_FIELD,
        };
        ty = &def.ty;
    }
    FieldMeta {
        ty,
        ..FieldMeta::of(def)
    }
}

/// The patch metadata of field `field` of the struct `definition` (an
/// OpenAPI definition name), for the OpenAPI documents.
pub(crate) fn definition_field(definition: &str, field: &str) -> FieldMeta {
    FieldMeta::of(
        schema()
            .types
            .get(definition)
            .and_then(|d| d.fields.get(field))
            .unwrap_or(&UNKNOWN_FIELD),
    )
}

/// Whether the struct `definition` is atomic (`x-kubernetes-map-type: atomic`).
pub(crate) fn definition_is_atomic(definition: &str) -> bool {
    schema().types.get(definition).is_some_and(|d| d.atomic)
}

fn parse(text: &'static str) -> Result<Schema, String> {
    let mut types: HashMap<&'static str, TypeDef> = HashMap::new();
    let mut current: Option<&'static str> = None;
    for (n, line) in text.lines().enumerate() {
        let err = |what: &str| format!("schema.txt line {}: {what}", n + 1);
        let mut words = line.split_whitespace();
        match words.next() {
            None => {}
            Some(w) if w.starts_with('#') => {}
            Some("T") => {
                let name = words.next().ok_or_else(|| err("no type name"))?;
                let atomic = words.next() == Some("atomic");
                types.insert(
                    name,
                    TypeDef {
                        atomic,
                        fields: HashMap::new(),
                    },
                );
                current = Some(name);
            }
            Some("F") => {
                let owner = current.ok_or_else(|| err("a field outside a type"))?;
                let name = words.next().ok_or_else(|| err("no field name"))?;
                let expr = words.next().ok_or_else(|| err("no field type"))?;
                let mut parser = TyParser { s: expr, pos: 0 };
                let ty = parser.ty().map_err(|e| err(&e))?;
                if parser.pos != expr.len() {
                    return Err(err("trailing characters in the type"));
                }
                let mut def = FieldDef {
                    ty,
                    zero: Zero::Absent,
                    patch_strategy: None,
                    patch_merge_key: None,
                };
                for w in words {
                    match w {
                        "zero" => def.zero = Zero::Empty,
                        "null" => def.zero = Zero::Null,
                        _ => {
                            if let Some(s) = w.strip_prefix("smp=") {
                                def.patch_strategy = Some(s);
                            } else if let Some(k) = w.strip_prefix("mk=") {
                                def.patch_merge_key = Some(k);
                            } else {
                                return Err(err("unknown field attribute"));
                            }
                        }
                    }
                }
                types
                    .get_mut(owner)
                    .expect("inserted")
                    .fields
                    .insert(name, def);
            }
            Some(_) => return Err(err("unknown line")),
        }
    }
    let named = types.keys().map(|&name| (name, Ty::Struct(name))).collect();
    Ok(Schema { types, named })
}

/// Parses the type expressions of `schema.txt` (see `scripts/gen-patch-schema.py`).
struct TyParser {
    s: &'static str,
    pos: usize,
}

impl TyParser {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "expected {:?} at {} in {:?}",
                c as char, self.pos, self.s
            ))
        }
    }

    fn name(&mut self) -> &'static str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn ty(&mut self) -> Result<Ty, String> {
        if self.eat(b'{') {
            let elem = Box::new(self.ty()?);
            self.expect(b'}')?;
            let atomic = self.eat(b'a');
            return Ok(Ty::Map { elem, atomic });
        }
        if self.eat(b'[') {
            let elem = Box::new(self.ty()?);
            self.expect(b']')?;
            let kind = if self.eat(b's') {
                ListKind::Set
            } else if self.eat(b'm') {
                self.expect(b'(')?;
                let mut keys = Vec::new();
                loop {
                    let name = self.name();
                    let default = if self.eat(b'=') {
                        let start = self.pos;
                        while !matches!(self.peek(), Some(b',' | b')') | None) {
                            self.pos += 1;
                        }
                        Some(
                            serde_json::from_str(&self.s[start..self.pos])
                                .map_err(|e| format!("bad key default in {:?}: {e}", self.s))?,
                        )
                    } else {
                        None
                    };
                    keys.push(ListKey { name, default });
                    if self.eat(b')') {
                        break;
                    }
                    self.expect(b',')?;
                }
                ListKind::Map(keys)
            } else {
                ListKind::Atomic
            };
            return Ok(Ty::List { elem, kind });
        }
        Ok(match self.name() {
            "" => return Err(format!("expected a type at {} in {:?}", self.pos, self.s)),
            "s" => Ty::Scalar,
            "u" => Ty::Untyped,
            "d" => Ty::Deduced,
            name => Ty::Struct(name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api_types::registry;

    fn resource(group: &str, kind: &str) -> &'static ResourceInfo {
        registry::all()
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .unwrap_or_else(|| panic!("{group}/{kind} is registered"))
    }

    #[test]
    fn the_schema_parses_and_names_the_root_of_every_builtin_kind() {
        let missing: Vec<_> = registry::all()
            .iter()
            .filter(|r| !r.storage_prefix.is_empty())
            .filter(|r| *root(r) == Ty::Unknown)
            .map(|r| r.kind)
            .collect();
        assert!(
            missing.is_empty(),
            "kinds without patch metadata: {missing:?}"
        );
    }

    #[test]
    fn pod_spec_lists_merge_by_their_keys() {
        let pod = resource("", "Pod");
        let containers = field(pod, &["spec", "containers"]);
        assert_eq!(containers.patch_strategy, Some("merge"));
        assert_eq!(containers.patch_merge_key, Some("name"));
        assert_eq!(containers.list_type(), Some("map"));
        assert_eq!(containers.list_map_keys(), ["name"]);
        assert_eq!(
            containers.definition(),
            Some("io.k8s.api.core.v1.Container")
        );

        let volumes = field(pod, &["spec", "volumes"]);
        assert_eq!(volumes.patch_strategy, Some("merge,retainKeys"));
        assert_eq!(volumes.patch_merge_key, Some("name"));

        let tolerations = field(pod, &["spec", "tolerations"]);
        assert_eq!(tolerations.patch_strategy, None);
        assert_eq!(tolerations.list_type(), Some("atomic"));

        let spread = field(pod, &["spec", "topologySpreadConstraints"]);
        assert_eq!(spread.patch_merge_key, Some("topologyKey"));
        assert_eq!(spread.list_map_keys(), ["topologyKey", "whenUnsatisfiable"]);

        let ports = field(pod, &["spec", "containers", "ports"]);
        assert_eq!(ports.patch_merge_key, Some("containerPort"));
        assert_eq!(ports.list_map_keys(), ["containerPort", "protocol"]);
        let Ty::List {
            kind: ListKind::Map(keys),
            ..
        } = ports.ty
        else {
            panic!("ports is a map-list")
        };
        assert_eq!(keys[1].default, Some(Value::from("TCP")));

        assert_eq!(
            field(pod, &["spec", "containers", "env"]).patch_merge_key,
            Some("name")
        );
        assert_eq!(
            field(pod, &["spec", "containers", "envFrom"]).list_type(),
            Some("atomic")
        );
        assert_eq!(
            field(pod, &["spec", "containers", "volumeMounts"]).patch_merge_key,
            Some("mountPath")
        );
        assert_eq!(
            field(pod, &["status", "conditions"]).patch_merge_key,
            Some("type")
        );
        assert_eq!(
            field(pod, &["spec", "nodeSelector"]).map_type(),
            Some("atomic")
        );
    }

    #[test]
    fn nested_pod_templates_reuse_the_pod_spec() {
        for (group, kind, path) in [
            (
                "apps",
                "Deployment",
                &["spec", "template", "spec", "containers"][..],
            ),
            (
                "apps",
                "StatefulSet",
                &["spec", "template", "spec", "containers"],
            ),
            (
                "apps",
                "DaemonSet",
                &["spec", "template", "spec", "containers"],
            ),
            ("batch", "Job", &["spec", "template", "spec", "containers"]),
            (
                "batch",
                "CronJob",
                &[
                    "spec",
                    "jobTemplate",
                    "spec",
                    "template",
                    "spec",
                    "containers",
                ],
            ),
            (
                "",
                "ReplicationController",
                &["spec", "template", "spec", "containers"],
            ),
            ("", "PodTemplate", &["template", "spec", "containers"]),
        ] {
            let meta = field(resource(group, kind), path);
            assert_eq!(meta.patch_merge_key, Some("name"), "{kind}");
        }
    }

    #[test]
    fn object_meta_service_and_others() {
        let cm = resource("", "ConfigMap");
        let finalizers = field(cm, &["metadata", "finalizers"]);
        assert_eq!(finalizers.patch_strategy, Some("merge"));
        assert_eq!(finalizers.list_type(), Some("set"));
        assert_eq!(
            field(cm, &["metadata", "ownerReferences"]).patch_merge_key,
            Some("uid")
        );
        assert_eq!(
            field(cm, &["metadata", "labels"]).map_type(),
            Some("granular")
        );
        assert_eq!(
            field(cm, &["metadata", "managedFields"]).list_type(),
            Some("atomic")
        );
        assert_eq!(field(cm, &["data"]).map_type(), Some("granular"));

        let svc = resource("", "Service");
        let ports = field(svc, &["spec", "ports"]);
        assert_eq!(ports.patch_merge_key, Some("port"));
        assert_eq!(ports.list_map_keys(), ["port", "protocol"]);

        let node = resource("", "Node");
        assert_eq!(
            field(node, &["status", "addresses"]).patch_merge_key,
            Some("type")
        );
        assert_eq!(
            field(node, &["status", "conditions"]).list_map_keys(),
            ["type"]
        );

        assert_eq!(
            field(resource("apps", "Deployment"), &["spec", "strategy"]).patch_strategy,
            Some("retainKeys")
        );
        assert_eq!(
            field(resource("apps", "Deployment"), &["spec", "selector"]).map_type(),
            Some("atomic")
        );
        assert_eq!(
            field(
                resource("discovery.k8s.io", "EndpointSlice"),
                &["endpoints"]
            )
            .list_type(),
            Some("atomic")
        );
        assert_eq!(
            field(
                resource("rbac.authorization.k8s.io", "ClusterRole"),
                &["rules"]
            )
            .list_type(),
            Some("atomic")
        );
        assert_eq!(
            field(
                resource("rbac.authorization.k8s.io", "RoleBinding"),
                &["subjects"]
            )
            .list_type(),
            Some("atomic")
        );
        assert!(definition_is_atomic(
            "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
        ));
        assert_eq!(
            definition_field("io.k8s.api.core.v1.PodSpec", "containers").patch_merge_key,
            Some("name")
        );
    }

    #[test]
    fn unknown_fields_are_unknown() {
        let meta = field(resource("", "Pod"), &["spec", "noSuchField", "deeper"]);
        assert_eq!(*meta.ty, Ty::Unknown);
        assert_eq!(meta.patch_strategy, None);
        assert_eq!(meta.list_type(), None);
    }
}
