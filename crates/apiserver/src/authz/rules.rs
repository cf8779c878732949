//! RBAC policy rules: matching a request against a rule (upstream's
//! `RuleAllows`), and deciding whether one set of rules covers another
//! (upstream's `Covers`, used to refuse privilege escalation).

use serde_json::{Value, json};

use super::Attributes;

/// `rbac.authorization.k8s.io/v1` PolicyRule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

/// `*`: every verb, group, resource or non-resource URL.
const ALL: &str = "*";

impl PolicyRule {
    /// Reads a rule; missing or `null` lists are empty.
    pub fn from_value(v: &Value) -> PolicyRule {
        PolicyRule {
            verbs: strings(&v["verbs"]),
            api_groups: strings(&v["apiGroups"]),
            resources: strings(&v["resources"]),
            resource_names: strings(&v["resourceNames"]),
            non_resource_urls: strings(&v["nonResourceURLs"]),
        }
    }

    /// The rules of a Role or ClusterRole.
    pub fn list_from(obj: &Value) -> Vec<PolicyRule> {
        obj["rules"]
            .as_array()
            .map(|rules| rules.iter().map(PolicyRule::from_value).collect())
            .unwrap_or_default()
    }

    /// The rule as JSON, empty lists left out (verbs always present).
    pub fn to_value(&self) -> Value {
        let mut v = json!({ "verbs": self.verbs });
        for (field, list) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !list.is_empty() {
                v[field] = json!(list);
            }
        }
        v
    }

    /// Whether the rule allows the request (upstream's RuleAllows).
    pub fn allows(&self, attrs: &Attributes<'_>) -> bool {
        if !self.verb_matches(attrs.verb) {
            return false;
        }
        if attrs.resource_request {
            self.api_group_matches(attrs.api_group)
                && self.resource_matches(attrs.resource, attrs.subresource)
                && self.resource_name_matches(attrs.name.unwrap_or(""))
        } else {
            self.non_resource_url_matches(attrs.path)
        }
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    fn api_group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == ALL || g == group)
    }

    /// `resource`, `resource/subresource`, `*` and `*/subresource`.
    fn resource_matches(&self, resource: &str, subresource: Option<&str>) -> bool {
        let sub = subresource.filter(|s| !s.is_empty());
        self.resources.iter().any(|r| {
            if r == ALL {
                return true;
            }
            match sub {
                None => r == resource,
                Some(sub) => {
                    let exact = r.len() == resource.len() + 1 + sub.len()
                        && r.starts_with(resource)
                        && r[resource.len()..].starts_with('/')
                        && r.ends_with(sub);
                    exact || r.strip_prefix("*/") == Some(sub)
                }
            }
        })
    }

    /// No names in the rule means every name.
    fn resource_name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    /// Exact paths, and prefixes written with a trailing `*`.
    fn non_resource_url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| {
            u == ALL
                || u == path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
        })
    }

    /// The rule split into rules of one group, resource, name and verb each
    /// (upstream's BreakdownRule).
    pub fn breakdown(&self) -> Vec<PolicyRule> {
        let mut out = Vec::new();
        let one = |s: &String| vec![s.clone()];
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    if self.resource_names.is_empty() {
                        out.push(PolicyRule {
                            verbs: one(verb),
                            api_groups: one(group),
                            resources: one(resource),
                            ..PolicyRule::default()
                        });
                    } else {
                        for name in &self.resource_names {
                            out.push(PolicyRule {
                                verbs: one(verb),
                                api_groups: one(group),
                                resources: one(resource),
                                resource_names: one(name),
                                ..PolicyRule::default()
                            });
                        }
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                out.push(PolicyRule {
                    verbs: one(verb),
                    non_resource_urls: one(url),
                    ..PolicyRule::default()
                });
            }
        }
        out
    }

    /// Whether this rule grants everything `sub` does (upstream's ruleCovers).
    fn covers(&self, sub: &PolicyRule) -> bool {
        let has = |set: &[String], v: &str| set.iter().any(|s| s == v);
        let has_all = |set: &[String], vs: &[String]| vs.iter().all(|v| has(set, v));
        let verbs = has(&self.verbs, ALL) || has_all(&self.verbs, &sub.verbs);
        let groups = has(&self.api_groups, ALL) || has_all(&self.api_groups, &sub.api_groups);
        let resources = sub.resources.iter().all(|r| {
            has(&self.resources, ALL)
                || has(&self.resources, r)
                || r.split_once('/')
                    .is_some_and(|(_, sub)| has(&self.resources, &format!("*/{sub}")))
        });
        let urls = sub.non_resource_urls.iter().all(|u| {
            self.non_resource_urls.iter().any(|owner| {
                owner == u
                    || owner
                        .strip_suffix('*')
                        .is_some_and(|prefix| u.starts_with(prefix.trim_end_matches('*')))
            })
        });
        let names = if sub.resource_names.is_empty() {
            self.resource_names.is_empty()
        } else {
            self.resource_names.is_empty() || has_all(&self.resource_names, &sub.resource_names)
        };
        verbs && groups && resources && names && urls
    }

    /// The rule as upstream prints it in escalation errors (CompactString):
    /// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
    pub fn compact_string(&self) -> String {
        let mut parts = Vec::new();
        for (label, list) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}:{}", go_quote_list(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// Whether `owner` grants everything in `servant`; when not, the atomic
/// rules it lacks (upstream's Covers).
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let mut missing = Vec::new();
    for rule in servant {
        for sub in rule.breakdown() {
            if !owner.iter().any(|o| o.covers(&sub)) {
                missing.push(sub);
            }
        }
    }
    (missing.is_empty(), missing)
}

/// Merges rules that name one group and one resource (at most one name)
/// into one rule per resource with all their verbs (upstream's
/// CompactRules), for shorter escalation errors.
pub fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        let is_simple = rule.api_groups.len() == 1
            && rule.resources.len() == 1
            && rule.resource_names.len() <= 1
            && rule.non_resource_urls.is_empty();
        if !is_simple {
            out.push(rule);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == rule.api_groups
                && s.resources == rule.resources
                && s.resource_names == rule.resource_names
        }) {
            Some(existing) => existing.verbs.extend(rule.verbs),
            None => simple.push(rule),
        }
    }
    out.extend(simple);
    out
}

/// A list as Go's `%q` prints a `[]string`: `["a" "b"]`.
pub fn go_quote_list(list: &[String]) -> String {
    let quoted: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::User;

    fn rule(v: Value) -> PolicyRule {
        PolicyRule::from_value(&v)
    }

    struct Request {
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        subresource: Option<&'static str>,
        name: Option<&'static str>,
    }

    fn resource(verb: &'static str, group: &'static str, resource: &'static str) -> Request {
        Request {
            verb,
            group,
            resource,
            subresource: None,
            name: None,
        }
    }

    fn allows(rule: &PolicyRule, r: &Request) -> bool {
        let user = User::default();
        rule.allows(&Attributes {
            user: &user,
            verb: r.verb,
            resource_request: true,
            api_group: r.group,
            namespace: Some("default"),
            resource: r.resource,
            subresource: r.subresource,
            name: r.name,
            path: "",
        })
    }

    fn allows_path(rule: &PolicyRule, verb: &str, path: &str) -> bool {
        let user = User::default();
        rule.allows(&Attributes {
            user: &user,
            verb,
            resource_request: false,
            api_group: "",
            namespace: None,
            resource: "",
            subresource: None,
            name: None,
            path,
        })
    }

    #[test]
    fn resource_rules_match_as_upstream() {
        let sub = |mut r: Request, s: &'static str| {
            r.subresource = Some(s);
            r
        };
        let named = |mut r: Request, n: &'static str| {
            r.name = Some(n);
            r
        };
        let cases: Vec<(Value, Request, bool)> = vec![
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
                resource("get", "", "pods"),
                true,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
                resource("list", "", "pods"),
                false,
            ),
            (
                json!({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}),
                resource("deletecollection", "", "pods"),
                true,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["pods"]}),
                resource("get", "", "pods"),
                false,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*"]}),
                resource("get", "apps", "deployments"),
                true,
            ),
            // A resource does not grant its subresources, nor the reverse.
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
                sub(resource("get", "", "pods"), "log"),
                false,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}),
                sub(resource("get", "", "pods"), "log"),
                true,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}),
                resource("get", "", "pods"),
                false,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/status"]}),
                sub(resource("get", "", "pods"), "log"),
                false,
            ),
            // `*/scale` grants every resource's scale subresource.
            (
                json!({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*/scale"]}),
                sub(resource("get", "apps", "deployments"), "scale"),
                true,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*/scale"]}),
                resource("get", "apps", "deployments"),
                false,
            ),
            // `*` grants subresources too.
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["*"]}),
                sub(resource("get", "", "pods"), "exec"),
                true,
            ),
            // Resource names narrow a rule; a list has no name.
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}),
                named(resource("get", "", "configmaps"), "a"),
                true,
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}),
                named(resource("get", "", "configmaps"), "b"),
                false,
            ),
            (
                json!({"verbs": ["list"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}),
                resource("list", "", "configmaps"),
                false,
            ),
            // A rule without groups grants nothing.
            (
                json!({"verbs": ["get"], "resources": ["pods"]}),
                resource("get", "", "pods"),
                false,
            ),
            // Non-resource rules do not grant resources.
            (
                json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
                resource("get", "", "pods"),
                false,
            ),
        ];
        for (i, (r, req, want)) in cases.iter().enumerate() {
            assert_eq!(allows(&rule(r.clone()), req), *want, "case {i}: {r}");
        }
    }

    #[test]
    fn non_resource_rules_match_exact_paths_and_star_prefixes() {
        let cases = [
            (json!(["/healthz"]), "get", "/healthz", true),
            (json!(["/healthz"]), "get", "/healthz/etcd", false),
            (json!(["/healthz/*"]), "get", "/healthz/etcd", true),
            (json!(["/healthz/*"]), "get", "/healthz", false),
            (json!(["/apis/*"]), "get", "/apis/apps/v1", true),
            (json!(["/apis*"]), "get", "/apis", true),
            (json!(["*"]), "get", "/anything", true),
            (json!(["/version"]), "post", "/version", false),
        ];
        for (urls, verb, path, want) in cases {
            let r = rule(json!({"verbs": ["get"], "nonResourceURLs": urls}));
            assert_eq!(allows_path(&r, verb, path), want, "{urls} {verb} {path}");
        }
        let resource_rule = rule(json!({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*"]}));
        assert!(!allows_path(&resource_rule, "get", "/healthz"));
    }

    #[test]
    fn covers_finds_the_atomic_rules_the_owner_lacks() {
        let owner = vec![
            rule(
                json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]}),
            ),
            rule(json!({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*/scale"]})),
            rule(
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"]}),
            ),
            rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz/*"]})),
        ];
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
                vec![],
            ),
            (
                json!({"verbs": ["get", "create"], "apiGroups": [""], "resources": ["pods"]}),
                vec![r#"{APIGroups:[""], Resources:["pods"], Verbs:["create"]}"#],
            ),
            (
                json!({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments/scale"]}),
                vec![],
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"]}),
                vec![],
            ),
            (
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}),
                vec![r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#],
            ),
            (
                json!({"verbs": ["get"], "nonResourceURLs": ["/healthz/etcd"]}),
                vec![],
            ),
            (
                json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]}),
                vec![r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#],
            ),
        ];
        for (servant, want) in cases {
            let (ok, missing) = covers(&owner, &[rule(servant.clone())]);
            let got: Vec<String> = missing.iter().map(PolicyRule::compact_string).collect();
            assert_eq!(got, want, "{servant}");
            assert_eq!(ok, want.is_empty());
        }
        let admin = vec![
            rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})),
            rule(json!({"verbs": ["*"], "nonResourceURLs": ["*"]})),
        ];
        assert!(covers(&admin, &owner).0);
    }

    #[test]
    fn compact_merges_the_verbs_of_one_resource() {
        let rules = vec![
            rule(json!({"verbs": ["create"], "apiGroups": [""], "resources": ["pods"]})),
            rule(json!({"verbs": ["get"], "nonResourceURLs": ["/x"]})),
            rule(json!({"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]})),
        ];
        let got: Vec<String> = compact(rules)
            .iter()
            .map(PolicyRule::compact_string)
            .collect();
        assert_eq!(
            got,
            [
                r#"{NonResourceURLs:["/x"], Verbs:["get"]}"#,
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["create" "delete"]}"#,
            ]
        );
    }

    #[test]
    fn rules_read_null_lists_as_empty_and_write_them_back_out() {
        let r = rule(json!({"verbs": ["get"], "apiGroups": null, "resources": ["pods"]}));
        assert!(r.api_groups.is_empty());
        assert_eq!(
            r.to_value(),
            json!({"verbs": ["get"], "resources": ["pods"]})
        );
    }
}
