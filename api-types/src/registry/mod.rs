//! Every built-in resource Skiff serves, with every fact the generic API
//! server needs to serve it as a Kubernetes v1.33 API server does.
//!
//! For each resource the registry holds what discovery (`/api/v1`,
//! `/apis/<group>/<version>`, `kubectl api-resources`) reports — group,
//! version, kind, plural, singular, short names, scope, verbs, subresources,
//! categories — plus what discovery does not show but clients still see: the
//! etcd key prefix, the server-side `Table` columns `kubectl get` prints, the
//! fields a `fieldSelector` may name, and which version of a group-resource is
//! preferred.
//!
//! ```
//! use skiff_api_types::registry;
//!
//! let pods = registry::resolve("po").unwrap();
//! assert_eq!((pods.group, pods.version, pods.plural), ("", "v1", "pods"));
//! assert_eq!(pods.key(Some("default"), "web"), "/registry/pods/default/web");
//! let hpa = registry::resolve("horizontalpodautoscalers.autoscaling").unwrap();
//! assert_eq!(hpa.api_version(), "autoscaling/v2");
//! ```
//!
//! Objects are handled as JSON (`serde_json::Value`): table cells and
//! field-selector values read the stored object and treat a missing field as
//! absent, so no object can make them panic.

mod catalog;
mod fields;
mod printers;
mod time;

use serde_json::{Value, json};

pub use time::human_duration;

/// One resource of one group-version, e.g. `apps/v1` `deployments`.
#[derive(Debug, Clone, Copy)]
pub struct ResourceInfo {
    /// API group; `""` for the core group served under `/api`.
    pub group: &'static str,
    /// Version within the group, e.g. `"v1"`.
    pub version: &'static str,
    /// Kind of a single object, e.g. `"Deployment"`.
    pub kind: &'static str,
    /// Kind of a list of objects, e.g. `"DeploymentList"`.
    pub list_kind: &'static str,
    /// Plural name used in URLs, e.g. `"deployments"`.
    pub plural: &'static str,
    /// Singular name, e.g. `"deployment"`.
    pub singular: &'static str,
    /// Short names `kubectl` accepts, e.g. `["deploy"]`.
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// The verbs discovery lists for the resource itself, sorted.
    pub verbs: &'static [&'static str],
    /// The subresources (`<plural>/<name>` in discovery), sorted by name.
    pub subresources: &'static [SubresourceInfo],
    /// Categories the resource belongs to, e.g. `["all"]`.
    pub categories: &'static [&'static str],
    /// Upstream's etcd key prefix, e.g. `"/registry/pods"`; empty for
    /// resources that are never persisted (bindings, reviews, component statuses).
    pub storage_prefix: &'static str,
    /// The server-side `Table` columns, in upstream's order.
    pub columns: &'static [Column],
    /// The field labels a `fieldSelector` may use for this kind.
    pub field_selectors: &'static [&'static str],
    /// Whether this is the preferred version of its group (discovery's
    /// `preferredVersion`), which `kubectl` uses when no version is named.
    pub preferred: bool,
}

/// A subresource such as `status`, `scale` or `eviction`.
#[derive(Debug, Clone, Copy)]
pub struct SubresourceInfo {
    /// Name after the slash, e.g. `"status"` for `pods/status`.
    pub name: &'static str,
    /// Group of the subresource's kind (`"autoscaling"` for `scale`).
    pub group: &'static str,
    /// Version of the subresource's kind (`"v1"` for `scale`).
    pub version: &'static str,
    /// Kind the subresource accepts and returns (the parent's kind for `status`).
    pub kind: &'static str,
    /// Verbs discovery lists for the subresource.
    pub verbs: &'static [&'static str],
}

/// Computes one table cell from a stored object.
pub type CellFn = fn(&Value, &CellContext) -> Value;

/// One column of the server-side `Table` (`meta.k8s.io/v1`
/// `TableColumnDefinition`) and how to compute its cells.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Column name as upstream spells it (`kubectl` upper-cases it), e.g. `"Ready"`.
    pub name: &'static str,
    /// OpenAPI type: `"string"`, `"integer"`, `"number"`, `"boolean"` or `"date"`.
    pub type_: &'static str,
    /// OpenAPI format: `"name"` for the column naming the object, else `""`.
    pub format: &'static str,
    /// Human-readable description of the column.
    pub description: &'static str,
    /// 0 for the default output, 1 for columns shown only with `-o wide`.
    pub priority: i32,
    /// The cell of this column for an object.
    pub cell: CellFn,
}

/// What a cell may depend on besides the object: the current time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellContext {
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// An API group as discovery lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiGroup {
    /// Group name; `""` for the core group (served under `/api`).
    pub name: &'static str,
    /// Served versions, in discovery order (preferred first).
    pub versions: &'static [&'static str],
    /// The preferred version.
    pub preferred_version: &'static str,
}

impl CellContext {
    /// A context at `now` seconds since the Unix epoch.
    pub fn at(now: i64) -> CellContext {
        CellContext { now }
    }

    /// A context at the current time of the system clock.
    pub fn now() -> CellContext {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        CellContext { now }
    }
}

impl Column {
    /// The column as a `TableColumnDefinition` JSON object.
    pub fn definition(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

impl ResourceInfo {
    /// `"v1"` for the core group, `"<group>/<version>"` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group-resource as RBAC and error messages name it:
    /// `"pods"`, `"deployments.apps"`.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether discovery lists `verb` for the resource itself.
    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// The subresource called `name`, if the resource has it.
    pub fn subresource(&self, name: &str) -> Option<&'static SubresourceInfo> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether objects of this resource are stored (it has a key prefix).
    pub fn is_persisted(&self) -> bool {
        !self.storage_prefix.is_empty()
    }

    /// The storage key of one object: `<prefix>/<namespace>/<name>` for
    /// namespaced resources, `<prefix>/<name>` otherwise (a namespace passed
    /// for a cluster-scoped resource is ignored).
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.key_prefix(namespace))
    }

    /// The prefix under which a list finds its objects, ending in `/`:
    /// `<prefix>/<namespace>/` for one namespace, `<prefix>/` for all.
    pub fn key_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}/{ns}/", self.storage_prefix),
            _ => format!("{}/", self.storage_prefix),
        }
    }

    /// The `Table` cells of `obj`, one per entry of [`columns`](Self::columns).
    pub fn table_row(&self, obj: &Value, ctx: &CellContext) -> Vec<Value> {
        self.columns.iter().map(|c| (c.cell)(obj, ctx)).collect()
    }

    /// The value `field` has in `obj` for field-selector matching, formatted
    /// as upstream does (`"true"`/`"false"`, decimal counts, `""` when unset);
    /// `None` when the field cannot be selected on for this kind.
    pub fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        self.field_selectors
            .contains(&field)
            .then(|| fields::value(self, obj, field))
    }

    fn answers_to(&self, name: &str) -> bool {
        self.plural == name
            || self.singular == name
            || self.short_names.contains(&name)
            || self.kind.eq_ignore_ascii_case(name)
    }
}

/// Every resource, in discovery order: core `v1` first, then each group in
/// `/apis` order, each group-version's resources sorted by plural.
pub fn all() -> &'static [ResourceInfo] {
    catalog::RESOURCES
}

/// The API groups, in discovery order, starting with the core group `""`
/// (which discovery serves under `/api` rather than `/apis`).
pub fn groups() -> &'static [ApiGroup] {
    catalog::GROUPS
}

/// The resources of one group-version, in discovery order.
pub fn resources_in(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceInfo> {
    let (group, version) = (group.to_string(), version.to_string());
    all()
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// The resource served at `/apis/<group>/<version>/<plural>` (or `/api/v1/<plural>`).
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource whose objects have this group, version and kind.
pub fn by_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Resolves a name as `kubectl get <name>` does: a plural, singular, short
/// name or kind (case-insensitive), optionally qualified as
/// `<name>.<group>` or `<name>.<version>.<group>`. Without a version the
/// group's preferred version is chosen; without a group the first match in
/// discovery order wins, so the core group comes first (`ev` is core `events`).
pub fn resolve(name: &str) -> Option<&'static ResourceInfo> {
    let name = name.to_ascii_lowercase();
    let find = |resource: &str, group: Option<&str>, version: Option<&str>| {
        all().iter().find(|r| {
            r.answers_to(resource)
                && group.is_none_or(|g| r.group == g)
                && match version {
                    Some(v) => r.version == v,
                    None => r.preferred,
                }
        })
    };
    if let Some(found) = find(&name, None, None) {
        return Some(found);
    }
    let (resource, qualifier) = name.split_once('.')?;
    if let Some((version, group)) = qualifier.split_once('.')
        && let Some(found) = find(resource, Some(group), Some(version))
    {
        return Some(found);
    }
    find(resource, Some(qualifier), None)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use super::*;

    #[test]
    fn every_resource_has_a_unique_plural_and_kind_per_group_version() {
        let mut plurals = HashSet::new();
        let mut kinds = HashSet::new();
        for r in all() {
            assert!(
                plurals.insert((r.group, r.version, r.plural)),
                "duplicate {}",
                r.plural
            );
            assert!(
                kinds.insert((r.group, r.version, r.kind)),
                "duplicate {}",
                r.kind
            );
            assert_eq!(r.list_kind, format!("{}List", r.kind));
            assert!(!r.singular.is_empty() && !r.plural.is_empty());
            assert!(r.plural.chars().all(|c| c.is_ascii_lowercase()));
        }
        let core: Vec<&str> = resources_in("", "v1").map(|r| r.plural).collect();
        assert_eq!(
            core,
            [
                "bindings",
                "componentstatuses",
                "configmaps",
                "endpoints",
                "events",
                "limitranges",
                "namespaces",
                "nodes",
                "persistentvolumeclaims",
                "persistentvolumes",
                "pods",
                "podtemplates",
                "replicationcontrollers",
                "resourcequotas",
                "secrets",
                "serviceaccounts",
                "services",
            ]
        );
        let per_group_version: Vec<(String, usize)> = groups()
            .iter()
            .flat_map(|g| g.versions.iter().map(move |v| (g.name, *v)))
            .map(|(g, v)| (format!("{g}/{v}"), resources_in(g, v).count()))
            .collect();
        let expected = [
            ("/v1", 17),
            ("apps/v1", 5),
            ("events.k8s.io/v1", 1),
            ("authentication.k8s.io/v1", 2),
            ("authorization.k8s.io/v1", 4),
            ("autoscaling/v2", 1),
            ("autoscaling/v1", 1),
            ("batch/v1", 2),
            ("certificates.k8s.io/v1", 1),
            ("networking.k8s.io/v1", 5),
            ("policy/v1", 1),
            ("rbac.authorization.k8s.io/v1", 4),
            ("storage.k8s.io/v1", 5),
            ("admissionregistration.k8s.io/v1", 4),
            ("apiextensions.k8s.io/v1", 1),
            ("scheduling.k8s.io/v1", 1),
            ("coordination.k8s.io/v1", 1),
            ("node.k8s.io/v1", 1),
            ("discovery.k8s.io/v1", 1),
        ];
        let expected: Vec<(String, usize)> = expected
            .iter()
            .map(|(gv, n)| (gv.to_string(), *n))
            .collect();
        assert_eq!(per_group_version, expected);
    }

    #[test]
    fn every_group_version_is_announced_and_listed_in_discovery_order() {
        let mut order = Vec::new();
        for r in all() {
            if order.last() != Some(&(r.group, r.version)) {
                assert!(
                    !order.contains(&(r.group, r.version)),
                    "{} is split",
                    r.api_version()
                );
                order.push((r.group, r.version));
            }
        }
        let announced: Vec<(&str, &str)> = groups()
            .iter()
            .flat_map(|g| g.versions.iter().map(move |v| (g.name, *v)))
            .collect();
        assert_eq!(order, announced);
        for g in groups() {
            assert_eq!(g.versions[0], g.preferred_version);
        }
        for (group, version) in order {
            let plurals: Vec<&str> = resources_in(group, version).map(|r| r.plural).collect();
            let mut sorted = plurals.clone();
            sorted.sort();
            assert_eq!(plurals, sorted, "{group}/{version}");
        }
    }

    #[test]
    fn each_group_resource_has_exactly_one_preferred_version() {
        for r in all() {
            let preferred = all()
                .iter()
                .filter(|o| o.group == r.group && o.plural == r.plural && o.preferred)
                .count();
            assert_eq!(preferred, 1, "{}", r.group_resource());
            let group = groups().iter().find(|g| g.name == r.group).unwrap();
            assert_eq!(r.preferred, r.version == group.preferred_version);
        }
        assert!(
            !lookup("autoscaling", "v1", "horizontalpodautoscalers")
                .unwrap()
                .preferred
        );
        assert!(
            lookup("autoscaling", "v2", "horizontalpodautoscalers")
                .unwrap()
                .preferred
        );
    }

    #[test]
    fn verbs_match_upstream_discovery() {
        let full = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        for r in all() {
            let mut sorted = r.verbs.to_vec();
            sorted.sort();
            assert_eq!(sorted, r.verbs, "{}", r.plural);
            for s in r.subresources {
                assert!(!s.verbs.is_empty());
            }
        }
        let verbs = |g, v, p| lookup(g, v, p).unwrap().verbs;
        assert_eq!(verbs("", "v1", "pods"), full);
        assert_eq!(verbs("apps", "v1", "deployments"), full);
        assert_eq!(
            verbs("", "v1", "namespaces"),
            [
                "create", "delete", "get", "list", "patch", "update", "watch"
            ]
        );
        assert_eq!(verbs("", "v1", "componentstatuses"), ["get", "list"]);
        assert_eq!(verbs("", "v1", "bindings"), ["create"]);
        for (g, p) in [
            ("authentication.k8s.io", "tokenreviews"),
            ("authentication.k8s.io", "selfsubjectreviews"),
            ("authorization.k8s.io", "subjectaccessreviews"),
            ("authorization.k8s.io", "selfsubjectaccessreviews"),
            ("authorization.k8s.io", "localsubjectaccessreviews"),
            ("authorization.k8s.io", "selfsubjectrulesreviews"),
        ] {
            let r = lookup(g, "v1", p).unwrap();
            assert_eq!(r.verbs, ["create"]);
            assert!(!r.is_persisted());
        }
        assert!(
            lookup("authorization.k8s.io", "v1", "localsubjectaccessreviews")
                .unwrap()
                .namespaced
        );
    }

    #[test]
    fn subresources_name_the_kinds_upstream_serves() {
        let pods = lookup("", "v1", "pods").unwrap();
        let eviction = pods.subresource("eviction").unwrap();
        assert_eq!(
            (eviction.group, eviction.version, eviction.kind),
            ("policy", "v1", "Eviction")
        );
        assert_eq!(pods.subresource("binding").unwrap().kind, "Binding");
        assert_eq!(pods.subresource("status").unwrap().kind, "Pod");
        assert_eq!(pods.subresource("log").unwrap().verbs, ["get"]);
        assert_eq!(pods.subresource("exec").unwrap().verbs, ["create", "get"]);
        for (g, p) in [
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("", "replicationcontrollers"),
        ] {
            let scale = lookup(g, "v1", p).unwrap().subresource("scale").unwrap();
            assert_eq!(
                (scale.group, scale.version, scale.kind),
                ("autoscaling", "v1", "Scale")
            );
        }
        assert!(
            lookup("apps", "v1", "daemonsets")
                .unwrap()
                .subresource("scale")
                .is_none()
        );
        let token = lookup("", "v1", "serviceaccounts")
            .unwrap()
            .subresource("token")
            .unwrap();
        assert_eq!(
            (token.group, token.kind),
            ("authentication.k8s.io", "TokenRequest")
        );
        assert_eq!(
            lookup("", "v1", "namespaces")
                .unwrap()
                .subresource("finalize")
                .unwrap()
                .verbs,
            ["update"]
        );
        for r in all() {
            let names: Vec<&str> = r.subresources.iter().map(|s| s.name).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "{}", r.plural);
        }
    }

    #[test]
    fn names_resolve_as_kubectl_resolves_them() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("po", "", "v1", "pods"),
            ("pod", "", "v1", "pods"),
            ("pods", "", "v1", "pods"),
            ("Pod", "", "v1", "pods"),
            ("svc", "", "v1", "services"),
            ("cm", "", "v1", "configmaps"),
            ("ns", "", "v1", "namespaces"),
            ("no", "", "v1", "nodes"),
            ("pv", "", "v1", "persistentvolumes"),
            ("pvc", "", "v1", "persistentvolumeclaims"),
            ("sa", "", "v1", "serviceaccounts"),
            ("ep", "", "v1", "endpoints"),
            ("ev", "", "v1", "events"),
            ("events", "", "v1", "events"),
            ("cs", "", "v1", "componentstatuses"),
            ("limits", "", "v1", "limitranges"),
            ("quota", "", "v1", "resourcequotas"),
            ("rc", "", "v1", "replicationcontrollers"),
            ("deploy", "apps", "v1", "deployments"),
            ("rs", "apps", "v1", "replicasets"),
            ("sts", "apps", "v1", "statefulsets"),
            ("ds", "apps", "v1", "daemonsets"),
            ("hpa", "autoscaling", "v2", "horizontalpodautoscalers"),
            ("cj", "batch", "v1", "cronjobs"),
            ("jobs", "batch", "v1", "jobs"),
            (
                "csr",
                "certificates.k8s.io",
                "v1",
                "certificatesigningrequests",
            ),
            ("ing", "networking.k8s.io", "v1", "ingresses"),
            ("netpol", "networking.k8s.io", "v1", "networkpolicies"),
            ("pdb", "policy", "v1", "poddisruptionbudgets"),
            ("sc", "storage.k8s.io", "v1", "storageclasses"),
            (
                "crd",
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
            ),
            (
                "crds",
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
            ),
            ("pc", "scheduling.k8s.io", "v1", "priorityclasses"),
            ("leases", "coordination.k8s.io", "v1", "leases"),
            ("deployments.apps", "apps", "v1", "deployments"),
            ("deployments.v1.apps", "apps", "v1", "deployments"),
            (
                "horizontalpodautoscalers.v1.autoscaling",
                "autoscaling",
                "v1",
                "horizontalpodautoscalers",
            ),
            ("events.events.k8s.io", "events.k8s.io", "v1", "events"),
            ("ev.events.k8s.io", "events.k8s.io", "v1", "events"),
            (
                "clusterroles.rbac.authorization.k8s.io",
                "rbac.authorization.k8s.io",
                "v1",
                "clusterroles",
            ),
        ];
        for &(name, group, version, plural) in cases {
            let r = resolve(name).unwrap_or_else(|| panic!("{name} does not resolve"));
            assert_eq!(
                (r.group, r.version, r.plural),
                (group, version, plural),
                "{name}"
            );
        }
        assert!(resolve("nosuchthing").is_none());
        assert!(resolve("pods.apps").is_none());
        assert!(resolve("").is_none());
    }

    #[test]
    fn categories_collect_what_kubectl_get_all_shows() {
        let mut in_all: Vec<String> = all()
            .iter()
            .filter(|r| r.categories.contains(&"all"))
            .map(|r| format!("{}/{}", r.api_version(), r.plural))
            .collect();
        in_all.sort();
        assert_eq!(
            in_all,
            [
                "apps/v1/daemonsets",
                "apps/v1/deployments",
                "apps/v1/replicasets",
                "apps/v1/statefulsets",
                "autoscaling/v1/horizontalpodautoscalers",
                "autoscaling/v2/horizontalpodautoscalers",
                "batch/v1/cronjobs",
                "batch/v1/jobs",
                "v1/pods",
                "v1/replicationcontrollers",
                "v1/services",
            ]
        );
        assert_eq!(resolve("crd").unwrap().categories, ["api-extensions"]);
    }

    #[test]
    fn keys_follow_upstream_storage_names() {
        let key = |name: &str, ns: Option<&str>, obj: &str| resolve(name).unwrap().key(ns, obj);
        assert_eq!(
            key("pods", Some("default"), "web"),
            "/registry/pods/default/web"
        );
        assert_eq!(key("nodes", None, "node-1"), "/registry/minions/node-1");
        assert_eq!(
            key("nodes", Some("ignored"), "node-1"),
            "/registry/minions/node-1"
        );
        assert_eq!(
            key("services", Some("kube-system"), "dns"),
            "/registry/services/specs/kube-system/dns"
        );
        assert_eq!(
            key("endpoints", Some("default"), "web"),
            "/registry/services/endpoints/default/web"
        );
        assert_eq!(
            key("rc", Some("default"), "web"),
            "/registry/controllers/default/web"
        );
        assert_eq!(
            key("ing", Some("default"), "web"),
            "/registry/ingress/default/web"
        );
        assert_eq!(
            key("crd", None, "widgets.example.com"),
            "/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com"
        );
        assert_eq!(resolve("pods").unwrap().key_prefix(None), "/registry/pods/");
        assert_eq!(
            resolve("pods").unwrap().key_prefix(Some("a")),
            "/registry/pods/a/"
        );
        assert_eq!(
            lookup("events.k8s.io", "v1", "events")
                .unwrap()
                .storage_prefix,
            lookup("", "v1", "events").unwrap().storage_prefix
        );
        for r in all() {
            if r.has_verb("list") && r.plural != "componentstatuses" {
                assert!(r.storage_prefix.starts_with("/registry/"), "{}", r.plural);
            }
        }
    }

    #[test]
    fn api_versions_and_group_resources_are_spelled_as_upstream() {
        assert_eq!(resolve("pods").unwrap().api_version(), "v1");
        assert_eq!(resolve("deploy").unwrap().api_version(), "apps/v1");
        assert_eq!(
            resolve("deploy").unwrap().group_resource(),
            "deployments.apps"
        );
        assert_eq!(resolve("svc").unwrap().group_resource(), "services");
    }

    #[test]
    fn field_values_are_formatted_as_upstream() {
        let pods = resolve("pods").unwrap();
        let pod = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": "node-1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]},
        });
        let value = |f: &str| pods.field_value(&pod, f);
        assert_eq!(value("spec.nodeName").as_deref(), Some("node-1"));
        assert_eq!(value("status.phase").as_deref(), Some("Running"));
        assert_eq!(value("metadata.name").as_deref(), Some("web"));
        assert_eq!(value("metadata.namespace").as_deref(), Some("default"));
        assert_eq!(value("spec.hostNetwork").as_deref(), Some("false"));
        assert_eq!(value("status.podIP").as_deref(), Some("10.0.0.5"));
        assert_eq!(value("status.podIPs").as_deref(), Some("10.0.0.5,fd00::5"));
        assert_eq!(value("status.nominatedNodeName").as_deref(), Some(""));
        assert_eq!(value("spec.containers"), None);
        assert_eq!(
            pods.field_value(&json!({}), "spec.nodeName").as_deref(),
            Some("")
        );

        let nodes = resolve("nodes").unwrap();
        let node = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        assert_eq!(
            nodes.field_value(&node, "spec.unschedulable").as_deref(),
            Some("true")
        );
        assert_eq!(nodes.field_value(&node, "metadata.namespace"), None);

        let secret = json!({"type": "kubernetes.io/tls"});
        assert_eq!(
            resolve("secrets")
                .unwrap()
                .field_value(&secret, "type")
                .as_deref(),
            Some("kubernetes.io/tls")
        );
        let job = json!({"status": {"succeeded": 2}});
        assert_eq!(
            resolve("jobs")
                .unwrap()
                .field_value(&job, "status.successful")
                .as_deref(),
            Some("2")
        );
        let rs = json!({"status": {"replicas": 3}});
        assert_eq!(
            resolve("rs")
                .unwrap()
                .field_value(&rs, "status.replicas")
                .as_deref(),
            Some("3")
        );
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "web"}, "reportingComponent": "kubelet"});
        let events = resolve("events").unwrap();
        assert_eq!(
            events.field_value(&ev, "involvedObject.kind").as_deref(),
            Some("Pod")
        );
        assert_eq!(
            events.field_value(&ev, "source").as_deref(),
            Some("kubelet")
        );
        let csr = json!({"spec": {"signerName": "kubernetes.io/kubelet-serving"}});
        assert_eq!(
            resolve("csr")
                .unwrap()
                .field_value(&csr, "spec.signerName")
                .as_deref(),
            Some("kubernetes.io/kubelet-serving")
        );
        assert_eq!(
            resolve("ns")
                .unwrap()
                .field_value(&json!({"status": {"phase": "Active"}}), "status.phase")
                .as_deref(),
            Some("Active")
        );
    }

    #[test]
    fn tables_start_with_the_name_column_and_match_kubectl_headers() {
        let headers = |name: &str, wide: bool| -> Vec<String> {
            resolve(name)
                .unwrap()
                .columns
                .iter()
                .filter(|c| wide || c.priority == 0)
                .map(|c| c.name.to_uppercase())
                .collect()
        };
        assert_eq!(
            headers("pods", false),
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        );
        assert_eq!(
            headers("pods", true),
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ]
        );
        assert_eq!(
            headers("deploy", false),
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        );
        assert_eq!(
            headers("deploy", true),
            [
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ]
        );
        assert_eq!(
            headers("svc", false),
            [
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE"
            ]
        );
        assert_eq!(
            headers("no", false),
            ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        );
        assert_eq!(headers("ns", false), ["NAME", "STATUS", "AGE"]);
        assert_eq!(headers("cm", false), ["NAME", "DATA", "AGE"]);
        assert_eq!(headers("secrets", false), ["NAME", "TYPE", "DATA", "AGE"]);
        assert_eq!(
            headers("jobs", false),
            ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
        );
        assert_eq!(
            headers("ev", false),
            ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        );
        assert_eq!(headers("roles", false), ["NAME", "CREATED AT"]);
        assert_eq!(headers("crd", false), ["NAME", "CREATED AT"]);
        for r in all() {
            let name_columns: Vec<&Column> =
                r.columns.iter().filter(|c| c.format == "name").collect();
            assert!(!name_columns.is_empty(), "{}", r.plural);
            if r.kind != "Event" {
                assert_eq!(r.columns[0].format, "name", "{}", r.plural);
            }
            let mut names = HashSet::new();
            for c in r.columns {
                assert!(names.insert(c.name), "{} repeats {}", r.plural, c.name);
                assert!(["string", "integer", "number", "boolean", "date"].contains(&c.type_));
            }
        }
    }

    #[test]
    fn table_rows_have_one_cell_per_column() {
        let ctx = CellContext::at(1_700_000_000);
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2023-11-14T22:12:20Z"}});
        for r in all() {
            let row = r.table_row(&obj, &ctx);
            assert_eq!(row.len(), r.columns.len(), "{}", r.plural);
        }
        let row = resolve("cm").unwrap().table_row(&obj, &ctx);
        assert_eq!(row, vec![json!("x"), json!(0), json!("60s")]);
        let def = resolve("cm").unwrap().columns[0].definition();
        assert_eq!(def["name"], "Name");
        assert_eq!(def["format"], "name");
        assert_eq!(def["priority"], 0);
    }
}
