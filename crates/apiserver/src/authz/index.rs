//! The RBAC index: every binding's grants keyed by subject, built from the
//! watch cache, so that a decision is a few hash lookups — the user's name
//! and each of their groups, cluster-wide and in the request's namespace —
//! rather than a scan of every binding.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use skiff_api_types::registry::{self, ResourceInfo};

use super::Attributes;
use super::rules::PolicyRule;
use crate::cache::Cache;
use crate::server::User;
use crate::status::{ApiError, GroupResource};

pub(crate) const GROUP: &str = "rbac.authorization.k8s.io";

/// The four RBAC resources, in the order the index reads them.
pub(crate) fn resources() -> [&'static ResourceInfo; 4] {
    [
        "clusterroles",
        "roles",
        "clusterrolebindings",
        "rolebindings",
    ]
    .map(|plural| registry::lookup(GROUP, "v1", plural).expect("RBAC kinds are registered"))
}

/// What one binding grants one of its subjects.
struct Grant {
    /// Which binding, so that a binding naming a user twice (as a user and
    /// through a group) counts once when listing rules.
    binding: usize,
    /// The role's rules, or why they could not be found.
    rules: Result<Arc<[PolicyRule]>, Arc<str>>,
    /// `ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`.
    source: String,
}

/// Grants by subject, in one scope.
#[derive(Default)]
struct Grants {
    users: HashMap<String, Vec<Grant>>,
    groups: HashMap<String, Vec<Grant>>,
}

impl Grants {
    fn add(&mut self, subject: Subject, grant: Grant) {
        let map = match subject.kind {
            SubjectKind::User => &mut self.users,
            SubjectKind::Group => &mut self.groups,
        };
        map.entry(subject.name).or_default().push(grant);
    }

    /// The grants that apply to `user`, by name then by group.
    fn of<'s>(&'s self, user: &User) -> impl Iterator<Item = &'s Grant> {
        let by_name = self.users.get(&user.name).into_iter().flatten();
        let by_group = user
            .groups
            .iter()
            .filter_map(|g| self.groups.get(g))
            .flatten();
        by_name.chain(by_group)
    }
}

enum SubjectKind {
    User,
    Group,
}

/// A subject, service accounts resolved to their user names.
struct Subject {
    kind: SubjectKind,
    name: String,
    /// As upstream describes it: `User "alice"`, `ServiceAccount "sa/ns"`.
    description: String,
}

/// Everything RBAC grants, by subject.
#[derive(Default)]
pub(crate) struct Index {
    cluster: Grants,
    namespaces: HashMap<String, Grants>,
    cluster_roles: HashMap<String, Arc<[PolicyRule]>>,
    roles: HashMap<(String, String), Arc<[PolicyRule]>>,
}

/// The answer to one request.
pub(crate) struct Verdict {
    pub allowed: bool,
    /// Upstream's reason: `RBAC: allowed by ...`, or the errors met while
    /// resolving the user's roles.
    pub reason: String,
}

impl Index {
    /// Reads every role and binding the cache holds.
    pub fn build(cache: &Cache) -> Index {
        let [cluster_roles, roles, cluster_bindings, bindings] = resources();
        let all = |r: &ResourceInfo| -> Vec<Value> {
            cache
                .list(r, &r.key_prefix(None), |_| true)
                .objects
                .iter()
                .map(|o| o.value())
                .collect()
        };
        Index::from_objects(
            &all(cluster_roles),
            &all(roles),
            &all(cluster_bindings),
            &all(bindings),
        )
    }

    pub fn from_objects(
        cluster_roles: &[Value],
        roles: &[Value],
        cluster_bindings: &[Value],
        bindings: &[Value],
    ) -> Index {
        let mut index = Index::default();
        for role in cluster_roles {
            index
                .cluster_roles
                .insert(name_of(role).to_owned(), PolicyRule::list_from(role).into());
        }
        for role in roles {
            let key = (namespace_of(role).to_owned(), name_of(role).to_owned());
            index.roles.insert(key, PolicyRule::list_from(role).into());
        }
        let mut next_binding = 0;
        for (binding, namespaced) in cluster_bindings
            .iter()
            .map(|b| (b, false))
            .chain(bindings.iter().map(|b| (b, true)))
        {
            let namespace = if namespaced {
                namespace_of(binding)
            } else {
                ""
            };
            let role_ref = &binding["roleRef"];
            let kind = role_ref["kind"].as_str().unwrap_or("");
            let role = role_ref["name"].as_str().unwrap_or("");
            let rules = index
                .role_ref_rules(kind, role, namespace)
                .map_err(|e| Arc::<str>::from(e.message));
            let binding_kind = if namespaced {
                "RoleBinding"
            } else {
                "ClusterRoleBinding"
            };
            let binding_name = if namespaced {
                format!("{}/{namespace}", name_of(binding))
            } else {
                name_of(binding).to_owned()
            };
            for subject in binding["subjects"].as_array().into_iter().flatten() {
                let Some(subject) = Subject::read(subject, namespace) else {
                    continue;
                };
                let grant = Grant {
                    binding: next_binding,
                    rules: rules.clone(),
                    source: format!(
                        "{binding_kind} {binding_name:?} of {kind} {role:?} to {}",
                        subject.description
                    ),
                };
                let scope = if namespaced {
                    index.namespaces.entry(namespace.to_owned()).or_default()
                } else {
                    &mut index.cluster
                };
                scope.add(subject, grant);
            }
            next_binding += 1;
        }
        index
    }

    /// Calls `visit` with every grant that applies to `user` in `namespace`
    /// (cluster-wide ones first) until it answers false.
    fn visit<'s>(
        &'s self,
        user: &User,
        namespace: Option<&str>,
        mut visit: impl FnMut(&'s Grant) -> bool,
    ) {
        let local = namespace
            .filter(|ns| !ns.is_empty())
            .and_then(|ns| self.namespaces.get(ns));
        for grants in std::iter::once(&self.cluster).chain(local) {
            for grant in grants.of(user) {
                if !visit(grant) {
                    return;
                }
            }
        }
    }

    /// The grant that allows a request (upstream's RBAC authorizer), or the
    /// errors met looking for one (none when simply nothing grants it).
    pub fn allowed_by(&self, attrs: &Attributes<'_>) -> Result<&str, Vec<&str>> {
        let mut allowed_by = None;
        let mut errors: Vec<&str> = Vec::new();
        self.visit(attrs.user, attrs.namespace, |grant| match &grant.rules {
            Ok(rules) => {
                if rules.iter().any(|r| r.allows(attrs)) {
                    allowed_by = Some(grant.source.as_str());
                    return false;
                }
                true
            }
            Err(e) => {
                errors.push(e);
                true
            }
        });
        allowed_by.ok_or(errors)
    }

    /// Decides a request and says why, as upstream's RBAC authorizer does.
    pub fn decide(&self, attrs: &Attributes<'_>) -> Verdict {
        match self.allowed_by(attrs) {
            Ok(source) => Verdict {
                allowed: true,
                reason: format!("RBAC: allowed by {source}"),
            },
            Err(errors) => Verdict {
                allowed: false,
                reason: denial_reason(&errors),
            },
        }
    }

    /// Every rule that applies to `user` in `namespace` (cluster-wide rules
    /// alone for `None`), and the errors met resolving them.
    pub fn rules_for(
        &self,
        user: &User,
        namespace: Option<&str>,
    ) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        self.visit(user, namespace, |grant| {
            if seen.insert(grant.binding) {
                match &grant.rules {
                    Ok(r) => rules.extend(r.iter().cloned()),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            true
        });
        (rules, errors)
    }

    /// The rules a binding's roleRef names (upstream's GetRoleReferenceRules).
    pub fn role_ref_rules(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
    ) -> Result<Arc<[PolicyRule]>, ApiError> {
        let not_found = |resource| {
            ApiError::not_found(
                GroupResource {
                    group: GROUP,
                    resource,
                },
                name,
            )
        };
        match kind {
            "ClusterRole" => self
                .cluster_roles
                .get(name)
                .cloned()
                .ok_or_else(|| not_found("clusterrole")),
            "Role" => self
                .roles
                .get(&(namespace.to_owned(), name.to_owned()))
                .cloned()
                .ok_or_else(|| not_found("role")),
            other => Err(ApiError::bad_request(format!(
                "unsupported role reference kind: {other:?}"
            ))),
        }
    }
}

impl Subject {
    /// Reads a binding's subject; `namespace` is the binding's (empty for a
    /// ClusterRoleBinding), the default for service accounts.
    fn read(subject: &Value, namespace: &str) -> Option<Subject> {
        let name = subject["name"].as_str().filter(|n| !n.is_empty())?;
        match subject["kind"].as_str()? {
            "User" => Some(Subject {
                kind: SubjectKind::User,
                name: name.to_owned(),
                description: format!("User {name:?}"),
            }),
            "Group" => Some(Subject {
                kind: SubjectKind::Group,
                name: name.to_owned(),
                description: format!("Group {name:?}"),
            }),
            "ServiceAccount" => {
                let sa_namespace = subject["namespace"]
                    .as_str()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or(namespace);
                if sa_namespace.is_empty() {
                    return None;
                }
                Some(Subject {
                    kind: SubjectKind::User,
                    name: format!("system:serviceaccount:{sa_namespace}:{name}"),
                    description: format!("ServiceAccount {:?}", format!("{name}/{sa_namespace}")),
                })
            }
            _ => None,
        }
    }
}

/// Why RBAC denied a request: `""`, or the errors met resolving the user's
/// roles.
pub(crate) fn denial_reason(errors: &[&str]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!("RBAC: {}", aggregate(errors))
    }
}

/// Errors joined as upstream's utilerrors aggregate prints them: one alone,
/// several (duplicates dropped) as `[a, b]`.
fn aggregate(errors: &[&str]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(e) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [one] => (*one).to_owned(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

fn namespace_of(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..User::default()
        }
    }

    fn request<'a>(
        user: &'a User,
        verb: &'a str,
        resource: &'a str,
        namespace: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            user,
            verb,
            resource_request: true,
            api_group: "",
            namespace,
            resource,
            subresource: None,
            name: None,
            path: "",
        }
    }

    fn index() -> Index {
        let cluster_roles = [
            json!({"metadata": {"name": "reader"}, "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}),
            json!({"metadata": {"name": "nodes"}, "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["nodes"]}]}),
        ];
        let roles = [
            json!({"metadata": {"name": "cm", "namespace": "team"}, "rules": [{"verbs": ["create"], "apiGroups": [""], "resources": ["configmaps"]}]}),
        ];
        let cluster_bindings = [
            json!({"metadata": {"name": "nodes"}, "roleRef": {"kind": "ClusterRole", "name": "nodes"}, "subjects": [{"kind": "Group", "name": "ops"}]}),
            json!({"metadata": {"name": "sa-nodes"}, "roleRef": {"kind": "ClusterRole", "name": "nodes"}, "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "infra"}]}),
        ];
        let bindings = [
            json!({"metadata": {"name": "read", "namespace": "team"}, "roleRef": {"kind": "ClusterRole", "name": "reader"}, "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "builder"}]}),
            json!({"metadata": {"name": "cm", "namespace": "team"}, "roleRef": {"kind": "Role", "name": "cm"}, "subjects": [{"kind": "Group", "name": "devs"}, {"kind": "User", "name": "alice"}]}),
            json!({"metadata": {"name": "dangling", "namespace": "other"}, "roleRef": {"kind": "Role", "name": "gone"}, "subjects": [{"kind": "User", "name": "alice"}]}),
        ];
        Index::from_objects(&cluster_roles, &roles, &cluster_bindings, &bindings)
    }

    #[test]
    fn role_bindings_grant_in_their_namespace_only() {
        let index = index();
        let alice = user("alice", &["system:authenticated"]);
        let verdict = index.decide(&request(&alice, "list", "pods", Some("team")));
        assert!(verdict.allowed);
        assert_eq!(
            verdict.reason,
            r#"RBAC: allowed by RoleBinding "read/team" of ClusterRole "reader" to User "alice""#
        );
        assert!(
            !index
                .decide(&request(&alice, "list", "pods", Some("default")))
                .allowed
        );
        assert!(!index.decide(&request(&alice, "list", "pods", None)).allowed);
        assert!(
            index
                .decide(&request(&alice, "create", "configmaps", Some("team")))
                .allowed
        );
    }

    #[test]
    fn groups_and_service_accounts_are_subjects() {
        let index = index();
        let bob = user("bob", &["devs"]);
        assert!(
            index
                .decide(&request(&bob, "create", "configmaps", Some("team")))
                .allowed
        );
        assert!(
            !index
                .decide(&request(&bob, "list", "pods", Some("team")))
                .allowed
        );
        let op = user("carol", &["ops"]);
        assert!(index.decide(&request(&op, "list", "nodes", None)).allowed);
        // Cluster-wide grants hold in every namespace.
        assert!(
            index
                .decide(&request(&op, "list", "nodes", Some("team")))
                .allowed
        );
        let robot = user(
            "system:serviceaccount:infra:robot",
            &["system:serviceaccounts"],
        );
        let verdict = index.decide(&request(&robot, "list", "nodes", None));
        assert_eq!(
            verdict.reason,
            r#"RBAC: allowed by ClusterRoleBinding "sa-nodes" of ClusterRole "nodes" to ServiceAccount "robot/infra""#
        );
        // A service account without a namespace is the binding's.
        let builder = user("system:serviceaccount:team:builder", &[]);
        assert!(
            index
                .decide(&request(&builder, "get", "pods", Some("team")))
                .allowed
        );
        let elsewhere = user("system:serviceaccount:other:builder", &[]);
        assert!(
            !index
                .decide(&request(&elsewhere, "get", "pods", Some("team")))
                .allowed
        );
    }

    #[test]
    fn a_missing_role_is_the_reason_of_a_denial() {
        let index = index();
        let alice = user("alice", &[]);
        let verdict = index.decide(&request(&alice, "get", "secrets", Some("other")));
        assert!(!verdict.allowed);
        assert_eq!(
            verdict.reason,
            r#"RBAC: role.rbac.authorization.k8s.io "gone" not found"#
        );
    }

    #[test]
    fn rules_for_lists_each_binding_once() {
        let index = index();
        let alice = user("alice", &["devs"]);
        let (rules, errors) = index.rules_for(&alice, Some("team"));
        // reader (once, though alice is named twice) and cm (once, though she
        // is in it as a user and through devs).
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert!(errors.is_empty());
    }

    /// `cargo test --release -p skiff-apiserver --lib decisions_take -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn decisions_take_well_under_a_microsecond() {
        let mut cluster_bindings = Vec::new();
        let mut bindings = Vec::new();
        for i in 0..1000 {
            cluster_bindings.push(json!({"metadata": {"name": format!("c{i}")}, "roleRef": {"kind": "ClusterRole", "name": "reader"}, "subjects": [{"kind": "User", "name": format!("u{i}")}, {"kind": "Group", "name": format!("g{i}")}]}));
            bindings.push(json!({"metadata": {"name": format!("b{i}"), "namespace": format!("ns{}", i % 100)}, "roleRef": {"kind": "ClusterRole", "name": "reader"}, "subjects": [{"kind": "User", "name": format!("u{i}")}]}));
        }
        bindings.push(json!({"metadata": {"name": "alice", "namespace": "team"}, "roleRef": {"kind": "ClusterRole", "name": "reader"}, "subjects": [{"kind": "Group", "name": "devs"}]}));
        let roles = [json!({"metadata": {"name": "reader"}, "rules": [
            {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]},
            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]},
        ]})];
        let started = std::time::Instant::now();
        let index = Index::from_objects(&roles, &[], &cluster_bindings, &bindings);
        let built = started.elapsed();
        let alice = user("alice", &["devs", "system:authenticated"]);
        let n = 1_000_000;
        let started = std::time::Instant::now();
        let mut allowed = 0;
        for i in 0..n {
            let ns = if i % 2 == 0 { "team" } else { "default" };
            allowed += index
                .allowed_by(&request(&alice, "list", "pods", Some(ns)))
                .is_ok() as usize;
        }
        let per = started.elapsed() / n as u32;
        assert_eq!(allowed, n / 2);
        println!(
            "index of 2000 bindings built in {built:?}; one decision (half allowed, half denied) {per:?}"
        );
    }
}
