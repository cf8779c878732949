//! The component schemas: every kind the registry serves, as k8s-openapi
//! describes it (through its `schemars` implementations), under upstream's
//! names (`io.k8s.api.core.v1.Pod`), with the extensions upstream adds —
//! `x-kubernetes-group-version-kind` on top-level kinds and the list and patch
//! metadata on fields — and the `…List` kinds k8s-openapi has no schema for.
//!
//! References are kept in OpenAPI 3 form (`#/components/schemas/<name>`);
//! the v2 rendering rewrites them.

use std::borrow::Cow;
use std::collections::HashMap;

use k8s_openapi::Resource;
use k8s_openapi::api::{
    admissionregistration::v1 as admissionregistration, apps::v1 as apps,
    authentication::v1 as authentication, authorization::v1 as authorization,
    autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling_v2, batch::v1 as batch,
    certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, networking::v1 as networking,
    node::v1 as node, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
    storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};
use skiff_api_types::registry;

/// Where component schemas live in an OpenAPI 3 document.
pub(super) const V3_PREFIX: &str = "#/components/schemas/";
/// Where definitions live in a Swagger 2.0 document.
pub(super) const V2_PREFIX: &str = "#/definitions/";

pub(super) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(super) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(super) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(super) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub(super) const API_GROUP: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup";
pub(super) const API_GROUP_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList";
pub(super) const API_VERSIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions";
pub(super) const VERSION_INFO: &str = "io.k8s.apimachinery.pkg.version.Info";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
/// Schemas upstream leaves untyped: any JSON value.
const UNTYPED: [&str; 4] = [
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray",
];

/// The two document flavours, which differ in how they spell a few schemas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flavor {
    V2,
    V3,
}

/// One Rust type with a schema and the kind it is served as.
struct KindType {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    add: fn(&mut SchemaGenerator),
    name: fn() -> Cow<'static, str>,
}

/// Every schema the documents may reference.
pub(super) struct Catalog {
    /// Schema name → schema, `$ref`s in OpenAPI 3 form.
    defs: Map<String, Value>,
    by_gvk: Names,
}

/// The schema names of kinds: `group/version/kind` → schema name.
#[derive(Clone, Debug, Default)]
pub(super) struct Names(HashMap<String, String>);

impl Names {
    /// The schema name of a kind, when it has a schema.
    pub(super) fn name_of(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.0
            .get(&gvk_key(group, version, kind))
            .map(String::as_str)
    }

    /// Names the schema of a kind.
    pub(super) fn insert(&mut self, group: &str, version: &str, kind: &str, name: String) {
        self.0.insert(gvk_key(group, version, kind), name);
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
}

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

macro_rules! kinds {
    ($($ty:ty),* $(,)?) => {
        &[$(KindType {
            group: <$ty as Resource>::GROUP,
            version: <$ty as Resource>::VERSION,
            kind: <$ty as Resource>::KIND,
            add: add::<$ty>,
            name: <$ty as JsonSchema>::schema_name,
        }),*]
    };
}

/// The Rust type of every kind the registry names (resources and the kinds
/// of subresources); the option kinds of `exec`, `attach`, `portforward` and
/// `proxy` have none, as upstream publishes none.
static KINDS: &[KindType] = kinds![
    core::Binding,
    core::ComponentStatus,
    core::ConfigMap,
    core::Endpoints,
    core::Event,
    core::LimitRange,
    core::Namespace,
    core::Node,
    core::PersistentVolumeClaim,
    core::PersistentVolume,
    core::Pod,
    core::PodTemplate,
    core::ReplicationController,
    core::ResourceQuota,
    core::Secret,
    core::ServiceAccount,
    core::Service,
    apps::ControllerRevision,
    apps::DaemonSet,
    apps::Deployment,
    apps::ReplicaSet,
    apps::StatefulSet,
    events::Event,
    authentication::SelfSubjectReview,
    authentication::TokenReview,
    authentication::TokenRequest,
    authorization::LocalSubjectAccessReview,
    authorization::SelfSubjectAccessReview,
    authorization::SelfSubjectRulesReview,
    authorization::SubjectAccessReview,
    autoscaling_v2::HorizontalPodAutoscaler,
    autoscaling_v1::HorizontalPodAutoscaler,
    autoscaling_v1::Scale,
    batch::CronJob,
    batch::Job,
    certificates::CertificateSigningRequest,
    networking::IPAddress,
    networking::IngressClass,
    networking::Ingress,
    networking::NetworkPolicy,
    networking::ServiceCIDR,
    policy::Eviction,
    policy::PodDisruptionBudget,
    rbac::ClusterRoleBinding,
    rbac::ClusterRole,
    rbac::RoleBinding,
    rbac::Role,
    storage::CSIDriver,
    storage::CSINode,
    storage::CSIStorageCapacity,
    storage::StorageClass,
    storage::VolumeAttachment,
    admissionregistration::MutatingWebhookConfiguration,
    admissionregistration::ValidatingAdmissionPolicy,
    admissionregistration::ValidatingAdmissionPolicyBinding,
    admissionregistration::ValidatingWebhookConfiguration,
    apiextensions::CustomResourceDefinition,
    scheduling::PriorityClass,
    coordination::Lease,
    node::RuntimeClass,
    discovery::EndpointSlice,
    meta::APIGroup,
    meta::APIGroupList,
    meta::APIResourceList,
    meta::APIVersions,
    meta::Status,
];

impl Catalog {
    /// Generates every schema (takes some tens of milliseconds).
    pub(super) fn build() -> Catalog {
        let settings = SchemaSettings::draft07().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
            s.transforms.clear();
        });
        let mut generator = settings.into_generator();
        let mut by_gvk = Names::default();
        for k in KINDS {
            (k.add)(&mut generator);
            by_gvk.insert(k.group, k.version, k.kind, (k.name)().into_owned());
        }
        add::<meta::DeleteOptions>(&mut generator);
        add::<meta::WatchEvent<core::Pod>>(&mut generator);
        add::<meta::Patch>(&mut generator);
        add::<meta::ListMeta>(&mut generator);
        add::<k8s_openapi::apimachinery::pkg::version::Info>(&mut generator);
        let defs = generator.take_definitions(false);
        let mut catalog = Catalog { defs, by_gvk };
        catalog.add_lists();
        catalog.add_group_version_kinds();
        catalog.normalize();
        catalog
    }

    /// The schema name of a kind, when it has a schema.
    pub(super) fn name_of(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.by_gvk.name_of(group, version, kind)
    }

    /// The schema names of every kind.
    pub(super) fn names(&self) -> &Names {
        &self.by_gvk
    }

    /// The schema called `name`, in OpenAPI 3 form.
    #[cfg(test)]
    pub(super) fn get(&self, name: &str) -> Option<&Value> {
        self.defs.get(name)
    }

    /// The schemas reachable from `roots` (names), each as `flavor` spells
    /// it, keyed by name.
    pub(super) fn closure<'a>(
        &self,
        roots: impl IntoIterator<Item = &'a str>,
        flavor: Flavor,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        let mut pending: Vec<String> = roots.into_iter().map(str::to_owned).collect();
        while let Some(name) = pending.pop() {
            if out.contains_key(&name) {
                continue;
            }
            let Some(schema) = self.defs.get(&name) else {
                continue;
            };
            collect_refs(schema, &mut pending);
            out.insert(name.clone(), spelled(&name, schema, flavor));
        }
        out
    }

    /// Adds `<Kind>List` for every resource that can be listed.
    fn add_lists(&mut self) {
        for r in registry::all().iter().filter(|r| r.has_verb("list")) {
            let Some(item) = self.name_of(r.group, r.version, r.kind).map(str::to_owned) else {
                continue;
            };
            let (package, _) = item.rsplit_once('.').unwrap_or(("", ""));
            let name = format!("{package}.{}", r.list_kind);
            let schema = json!({
                "description": format!("{} is a list of {} objects.", r.list_kind, r.kind),
                "type": "object",
                "properties": {
                    "apiVersion": {
                        "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                        "type": "string",
                    },
                    "items": {
                        "description": format!("The {} objects of the list.", r.kind),
                        "type": "array",
                        "items": { "$ref": format!("{V3_PREFIX}{item}") },
                    },
                    "kind": {
                        "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                        "type": "string",
                    },
                    "metadata": {
                        "$ref": format!("{V3_PREFIX}{LIST_META}"),
                        "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                    },
                },
                "required": ["items"],
            });
            self.defs.insert(name.clone(), schema);
            self.by_gvk.insert(r.group, r.version, r.list_kind, name);
        }
    }

    /// `x-kubernetes-group-version-kind` on every top-level kind: the kinds
    /// of the table, the lists, and the meta kinds every group-version shares.
    fn add_group_version_kinds(&mut self) {
        let mut tagged: Vec<(String, Value)> = self
            .by_gvk
            .iter()
            .map(|(key, name)| {
                let mut parts = key.splitn(3, '/');
                let mut next = || parts.next().unwrap_or("");
                let (g, v, k) = (next(), next(), next());
                (name.clone(), gvk(g, v, k))
            })
            .collect();
        // DeleteOptions and WatchEvent are registered in every group-version.
        let mut group_versions: Vec<(&str, &str)> = registry::groups()
            .iter()
            .flat_map(|g| g.versions.iter().map(move |v| (g.name, *v)))
            .collect();
        group_versions.sort();
        for (g, v) in group_versions {
            tagged.push((DELETE_OPTIONS.to_string(), gvk(g, v, "DeleteOptions")));
            tagged.push((WATCH_EVENT.to_string(), gvk(g, v, "WatchEvent")));
        }
        for (name, value) in tagged {
            let Some(Value::Object(schema)) = self.defs.get_mut(&name) else {
                continue;
            };
            let list = schema
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = list
                && !list.contains(&value)
            {
                list.push(value);
            }
        }
        for schema in self.defs.values_mut() {
            if let Some(Value::Array(list)) = schema.get_mut("x-kubernetes-group-version-kind") {
                list.sort_by_key(|v| {
                    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
                    (s("group"), s("version"), s("kind"))
                });
            }
        }
    }

    /// Fixes what k8s-openapi spells differently from upstream, and adds
    /// the list and patch metadata of every field.
    fn normalize(&mut self) {
        for name in UNTYPED {
            if let Some(Value::Object(schema)) = self.defs.get_mut(name) {
                schema.remove("type");
                schema.remove("oneOf");
            }
        }
        for name in [QUANTITY, INT_OR_STRING] {
            if let Some(Value::Object(schema)) = self.defs.get_mut(name) {
                schema.remove("x-kubernetes-int-or-string");
            }
        }
        for (name, schema) in self.defs.iter_mut() {
            if let Value::Object(map) = schema
                && crate::patch::meta::definition_is_atomic(name)
            {
                map.insert("x-kubernetes-map-type".into(), json!("atomic"));
            }
            let Some(Value::Object(properties)) = schema.get_mut("properties") else {
                continue;
            };
            for (field, property) in properties.iter_mut() {
                if let Value::Object(property) = property {
                    property.extend(field_extensions(name, field));
                }
            }
        }
    }
}

/// List and patch metadata of one field: the extensions
/// `x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy`,
/// `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and (for an atomic
/// map) `x-kubernetes-map-type` that property `field` of the schema called
/// `schema` (e.g. `io.k8s.api.core.v1.PodSpec`, `containers`) carries.
/// `kubectl apply` reads the patch keys from the v3 documents to compute
/// strategic merge patches. The facts are `crate::patch::meta`'s, which the
/// patch engine itself uses.
fn field_extensions(schema: &str, field: &str) -> Map<String, Value> {
    let meta = crate::patch::meta::definition_field(schema, field);
    let mut out = Map::new();
    if let Some(key) = meta.patch_merge_key {
        out.insert("x-kubernetes-patch-merge-key".into(), json!(key));
    }
    if let Some(strategy) = meta.patch_strategy {
        out.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
    }
    if let Some(list_type) = meta.list_type() {
        out.insert("x-kubernetes-list-type".into(), json!(list_type));
        let keys = meta.list_map_keys();
        if !keys.is_empty() {
            out.insert("x-kubernetes-list-map-keys".into(), json!(keys));
        }
    }
    if matches!(meta.ty, crate::patch::meta::Ty::Map { atomic: true, .. }) {
        out.insert("x-kubernetes-map-type".into(), json!("atomic"));
    }
    out
}

fn gvk_key(group: &str, version: &str, kind: &str) -> String {
    format!("{group}/{version}/{kind}")
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

/// Pushes the schema name of every `$ref` in `value`.
pub(super) fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref"
                    && let Some(name) = v.as_str().and_then(|r| r.strip_prefix(V3_PREFIX))
                {
                    out.push(name.to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A schema as `flavor` spells it: v2 points at `#/definitions/` and types
/// Quantity and IntOrString as strings; v3 gives them `oneOf` their types.
fn spelled(name: &str, schema: &Value, flavor: Flavor) -> Value {
    let mut schema = schema.clone();
    if let Value::Object(map) = &mut schema {
        match (name, flavor) {
            (QUANTITY, Flavor::V2) => {
                map.insert("type".into(), json!("string"));
            }
            (QUANTITY, Flavor::V3) => {
                map.insert(
                    "oneOf".into(),
                    json!([{ "type": "string" }, { "type": "number" }]),
                );
            }
            (INT_OR_STRING, Flavor::V2) => {
                map.insert("type".into(), json!("string"));
                map.insert("format".into(), json!("int-or-string"));
            }
            (INT_OR_STRING, Flavor::V3) => {
                map.insert("format".into(), json!("int-or-string"));
                map.insert(
                    "oneOf".into(),
                    json!([{ "type": "integer" }, { "type": "string" }]),
                );
            }
            _ => {}
        }
    }
    if flavor == Flavor::V2 {
        rewrite_refs(&mut schema);
    }
    schema
}

/// Points every `$ref` at `#/definitions/`.
pub(super) fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(r) if k == "$ref" => {
                        if let Some(name) = r.strip_prefix(V3_PREFIX) {
                            *r = format!("{V2_PREFIX}{name}");
                        }
                    }
                    _ => rewrite_refs(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_the_registry_serves_has_a_schema() {
        let catalog = Catalog::build();
        let mut missing = Vec::new();
        for r in registry::all() {
            if catalog.name_of(r.group, r.version, r.kind).is_none() {
                missing.push(format!("{}/{} {}", r.group, r.version, r.kind));
            }
            if r.has_verb("list") && catalog.name_of(r.group, r.version, r.list_kind).is_none() {
                missing.push(format!("{}/{} {}", r.group, r.version, r.list_kind));
            }
            for s in r.subresources {
                let connect_options = s.kind.ends_with("Options");
                if !connect_options && catalog.name_of(s.group, s.version, s.kind).is_none() {
                    missing.push(format!("{}/{} {} ({})", s.group, s.version, s.kind, s.name));
                }
            }
        }
        assert!(missing.is_empty(), "kinds without a schema: {missing:?}");
    }

    #[test]
    fn schemas_are_named_as_upstream_names_them_and_carry_their_kind() {
        let catalog = Catalog::build();
        assert_eq!(
            catalog.name_of("apps", "v1", "Deployment"),
            Some("io.k8s.api.apps.v1.Deployment")
        );
        assert_eq!(
            catalog.name_of("apps", "v1", "DeploymentList"),
            Some("io.k8s.api.apps.v1.DeploymentList")
        );
        let deployment = catalog.get("io.k8s.api.apps.v1.Deployment").unwrap();
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{ "group": "apps", "kind": "Deployment", "version": "v1" }])
        );
        assert_eq!(
            deployment["properties"]["metadata"]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let delete_options =
            &catalog.get(DELETE_OPTIONS).unwrap()["x-kubernetes-group-version-kind"];
        assert_eq!(delete_options[0], gvk("", "v1", "DeleteOptions"));
        assert!(
            delete_options
                .as_array()
                .unwrap()
                .contains(&gvk("apps", "v1", "DeleteOptions"))
        );
    }

    #[test]
    fn fields_carry_their_list_and_patch_metadata() {
        let catalog = Catalog::build();
        let containers =
            &catalog.get("io.k8s.api.core.v1.PodSpec").unwrap()["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let ports = &catalog.get("io.k8s.api.core.v1.ServiceSpec").unwrap()["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "port");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["port", "protocol"])
        );
        let selector = catalog
            .get("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector")
            .unwrap();
        assert_eq!(selector["x-kubernetes-map-type"], "atomic");
    }

    #[test]
    fn quantity_and_int_or_string_are_spelled_per_flavor() {
        let catalog = Catalog::build();
        let v2 = catalog.closure([QUANTITY, INT_OR_STRING], Flavor::V2);
        assert_eq!(v2[QUANTITY]["type"], "string");
        assert_eq!(v2[INT_OR_STRING]["format"], "int-or-string");
        let v3 = catalog.closure([QUANTITY, INT_OR_STRING], Flavor::V3);
        assert!(v3[QUANTITY].get("type").is_none());
        assert_eq!(v3[INT_OR_STRING]["oneOf"].as_array().unwrap().len(), 2);
        assert!(v3[QUANTITY].get("x-kubernetes-int-or-string").is_none());
    }

    #[test]
    fn the_closure_of_a_kind_resolves_every_ref() {
        let catalog = Catalog::build();
        let v2 = catalog.closure(["io.k8s.api.core.v1.Pod"], Flavor::V2);
        assert!(v2.contains_key("io.k8s.api.core.v1.Container"));
        let text = serde_json::to_string(&v2).unwrap();
        assert!(!text.contains(V3_PREFIX));
        let mut refs = Vec::new();
        for schema in catalog
            .closure(["io.k8s.api.core.v1.Pod"], Flavor::V3)
            .values()
        {
            collect_refs(schema, &mut refs);
        }
        assert!(refs.iter().all(|r| v2.contains_key(r)), "dangling refs");
    }
}
