//! The default RBAC policy upstream bootstraps
//! (plugin/pkg/auth/authorizer/rbac/bootstrappolicy), created at every start
//! when missing and reconciled as upstream's storage_rbac post-start hook
//! does: an object annotated `rbac.authorization.kubernetes.io/autoupdate:
//! "false"` is left alone; any other gets its missing rules, aggregation
//! selectors, subjects, labels and annotations added back (what a user added
//! stays); a binding whose roleRef changed is recreated.
//!
//! As upstream, the `system:node` ClusterRoleBinding has no subjects: what
//! kubelets (group `system:nodes`) may do is decided by the Node authorizer
//! ([`super::node`]), which grants the `system:node` rules narrowed to each
//! node's own objects. Through RBAC, nodes get only what every authenticated
//! user gets, and certificate rotation (below).
//!
//! Where Skiff departs from upstream (its controller manager runs under one
//! identity, and it sets up TLS bootstrap as kubeadm does):
//! - every `system:controller:*` ClusterRole is bound to the user
//!   `system:kube-controller-manager` as well as to the controller's service
//!   account in `kube-system`;
//! - the bindings kubeadm adds for TLS bootstrap exist from the start, named
//!   `skiff:*`: `system:node-bootstrapper` and CSR auto-approval to
//!   `system:bootstrappers`, certificate rotation to `system:nodes`;
//! - reconciling removes the group `system:nodes` from the `system:node`
//!   binding, where earlier Skiff versions put it (upstream keeps subjects a
//!   user added; this one would let every node read every secret).

use std::collections::BTreeMap;

use futures::future::join_all;
use serde_json::{Map, Value, json};
use skiff_api_types::registry::{self, ResourceInfo};
use tracing::{info, warn};

use super::index::GROUP;
use super::rules::{self, PolicyRule};
use crate::Api;
use crate::rest::create_object;
use crate::status::ApiError;

const MANAGER: &str = "skiff-apiserver";
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const BOOTSTRAPPING: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

const CORE: &str = "";
const APPS: &str = "apps";
const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";
const AUTOSCALING: &str = "autoscaling";
const BATCH: &str = "batch";
const CERTIFICATES: &str = "certificates.k8s.io";
const COORDINATION: &str = "coordination.k8s.io";
const DISCOVERY: &str = "discovery.k8s.io";
const EXTENSIONS: &str = "extensions";
const NETWORKING: &str = "networking.k8s.io";
const POLICY: &str = "policy";
const STORAGE: &str = "storage.k8s.io";

/// A rule on resources (lists sorted, as upstream's rule builder does).
fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: sorted(verbs),
        api_groups: sorted(groups),
        resources: sorted(resources),
        ..PolicyRule::default()
    }
}

/// A rule on named objects.
fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        resource_names: sorted(names),
        ..rule(verbs, groups, resources)
    }
}

/// A rule on non-resource URLs.
fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: sorted(verbs),
        non_resource_urls: sorted(urls),
        ..PolicyRule::default()
    }
}

/// Upstream's eventsRule: writing events in both event groups.
fn events() -> PolicyRule {
    rule(
        &["create", "update", "patch"],
        &[CORE, "events.k8s.io"],
        &["events"],
    )
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// One role of the default policy.
struct Role {
    name: String,
    /// `None` for a ClusterRole.
    namespace: Option<&'static str>,
    labels: Vec<(&'static str, &'static str)>,
    /// The label an aggregated ClusterRole gathers roles by.
    aggregates: Option<&'static str>,
    rules: Vec<PolicyRule>,
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        name: name.to_owned(),
        namespace: None,
        labels: Vec::new(),
        aggregates: None,
        rules,
    }
}

fn labelled(label: &'static str, mut role: Role) -> Role {
    role.labels.push((label, "true"));
    role
}

fn aggregated(name: &str, selector_label: &'static str) -> Role {
    Role {
        aggregates: Some(selector_label),
        ..cluster_role(name, Vec::new())
    }
}

fn namespaced(namespace: &'static str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        namespace: Some(namespace),
        ..cluster_role(name, rules)
    }
}

/// The ClusterRoles and Roles of the default policy.
fn roles() -> Vec<Role> {
    let mut roles = vec![
        aggregated("admin", AGGREGATE_TO_ADMIN),
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        labelled(AGGREGATE_TO_ADMIN, aggregated("edit", AGGREGATE_TO_EDIT)),
        labelled(AGGREGATE_TO_EDIT, aggregated("view", AGGREGATE_TO_VIEW)),
        labelled(
            AGGREGATE_TO_ADMIN,
            cluster_role(
                "system:aggregate-to-admin",
                vec![
                    rule(
                        &["create"],
                        &[AUTHORIZATION],
                        &["localsubjectaccessreviews"],
                    ),
                    rule(READ_WRITE, &[GROUP], &["rolebindings", "roles"]),
                ],
            ),
        ),
        labelled(
            AGGREGATE_TO_EDIT,
            cluster_role("system:aggregate-to-edit", aggregate_to_edit()),
        ),
        labelled(
            AGGREGATE_TO_VIEW,
            cluster_role("system:aggregate-to-view", aggregate_to_view()),
        ),
        // What metrics-server installs upstream: reading the resource
        // metrics API, aggregated into view, edit and admin.
        labelled(
            AGGREGATE_TO_ADMIN,
            labelled(
                AGGREGATE_TO_EDIT,
                labelled(
                    AGGREGATE_TO_VIEW,
                    cluster_role(
                        "system:aggregated-metrics-reader",
                        vec![rule(READ, &["metrics.k8s.io"], &["nodes", "pods"])],
                    ),
                ),
            ),
        ),
        cluster_role(
            "system:auth-delegator",
            vec![
                rule(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
                rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
            ],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(
                    &["create"],
                    &[AUTHORIZATION],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(&["create"], &[AUTHENTICATION], &["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(
                &["create"],
                &[CERTIFICATES],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(
                &["create"],
                &[CERTIFICATES],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
    ];
    for (role, signer) in [
        ("kube-apiserver-client-approver", "kube-apiserver-client"),
        (
            "kube-apiserver-client-kubelet-approver",
            "kube-apiserver-client-kubelet",
        ),
        ("kubelet-serving-approver", "kubelet-serving"),
        ("legacy-unknown-approver", "legacy-unknown"),
    ] {
        roles.push(cluster_role(
            &format!("system:certificates.k8s.io:{role}"),
            vec![named(
                &["approve"],
                &[CERTIFICATES],
                &["signers"],
                &[&format!("kubernetes.io/{signer}")],
            )],
        ));
    }
    roles.extend([
        cluster_role(
            "system:discovery",
            vec![urls(
                &["get"],
                &[
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/version",
                    "/version/",
                    "/openapi",
                    "/openapi/*",
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                ],
            )],
        ),
        cluster_role(
            "system:heapster",
            vec![
                rule(READ, &[CORE], &["events", "pods", "nodes", "namespaces"]),
                rule(READ, &[EXTENSIONS], &["deployments"]),
            ],
        ),
        cluster_role(
            "system:kube-aggregator",
            vec![rule(READ, &[CORE], &["services", "endpoints"])],
        ),
        cluster_role("system:kube-controller-manager", kube_controller_manager()),
        cluster_role(
            "system:kube-dns",
            vec![rule(
                &["list", "watch"],
                &[CORE],
                &["endpoints", "services"],
            )],
        ),
        cluster_role("system:kube-scheduler", kube_scheduler()),
        cluster_role(
            "system:kubelet-api-admin",
            vec![
                rule(READ, &[CORE], &["nodes"]),
                rule(&["proxy"], &[CORE], &["nodes"]),
                rule(
                    &["*"],
                    &[CORE],
                    &["nodes/proxy", "nodes/metrics", "nodes/stats", "nodes/log"],
                ),
            ],
        ),
        cluster_role(
            "system:monitoring",
            vec![urls(
                &["get"],
                &[
                    "/metrics",
                    "/metrics/slis",
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/livez/*",
                    "/readyz/*",
                    "/healthz/*",
                ],
            )],
        ),
        cluster_role("system:node", node_rules()),
        cluster_role(
            "system:node-bootstrapper",
            vec![rule(
                &["create", "get", "list", "watch"],
                &[CERTIFICATES],
                &["certificatesigningrequests"],
            )],
        ),
        cluster_role(
            "system:node-problem-detector",
            vec![
                rule(&["get"], &[CORE], &["nodes"]),
                rule(&["patch"], &[CORE], &["nodes/status"]),
                events(),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            vec![
                rule(&["list", "watch"], &[CORE], &["services", "endpoints"]),
                rule(READ, &[CORE], &["nodes"]),
                events(),
                rule(&["list", "watch"], &[DISCOVERY], &["endpointslices"]),
            ],
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            vec![
                rule(
                    &["get", "list", "watch", "create", "delete"],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                rule(READ, &[STORAGE], &["storageclasses"]),
                rule(&["watch"], &[CORE], &["events"]),
                events(),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![urls(
                &["get"],
                &["/livez", "/readyz", "/healthz", "/version", "/version/"],
            )],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![urls(
                &["get"],
                &["/.well-known/openid-configuration", "/openid/v1/jwks"],
            )],
        ),
        cluster_role(
            "system:volume-scheduler",
            vec![
                rule(
                    &["get", "list", "watch", "patch", "update"],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                rule(READ, &[STORAGE], &["storageclasses"]),
                rule(
                    &["get", "list", "watch", "patch", "update"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
            ],
        ),
    ]);
    for (name, rules) in controller_roles() {
        roles.push(cluster_role(&format!("system:controller:{name}"), rules));
    }
    roles.extend(namespace_roles());
    roles
}

fn aggregate_to_edit() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[CORE],
            &[
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
                "secrets",
                "services/proxy",
            ],
        ),
        rule(&["impersonate"], &[CORE], &["serviceaccounts"]),
        rule(
            WRITE,
            &[CORE],
            &[
                "pods",
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
            ],
        ),
        rule(&["create"], &[CORE], &["pods/eviction"]),
        rule(
            WRITE,
            &[CORE],
            &[
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ],
        ),
        rule(&["create"], &[CORE], &["serviceaccounts/token"]),
        rule(
            WRITE,
            &[APPS],
            &[
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ],
        ),
        rule(WRITE, &[AUTOSCALING], &["horizontalpodautoscalers"]),
        rule(WRITE, &[BATCH], &["jobs", "cronjobs"]),
        rule(
            WRITE,
            &[EXTENSIONS],
            &[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "ingresses",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        rule(WRITE, &[POLICY], &["poddisruptionbudgets"]),
        rule(WRITE, &[NETWORKING], &["networkpolicies", "ingresses"]),
        rule(READ_WRITE, &[COORDINATION], &["leases"]),
    ]
}

fn aggregate_to_view() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[CORE],
            &[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ],
        ),
        rule(
            READ,
            &[CORE],
            &[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ],
        ),
        // Reading namespaces at the namespace scope means reading *this*
        // namespace: a sign of which namespaces one has access to.
        rule(READ, &[CORE], &["namespaces"]),
        rule(READ, &[DISCOVERY], &["endpointslices"]),
        rule(
            READ,
            &[APPS],
            &[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/status",
                "statefulsets/scale",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
            ],
        ),
        rule(
            READ,
            &[AUTOSCALING],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &[BATCH],
            &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
        ),
        rule(
            READ,
            &[EXTENSIONS],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        rule(
            READ,
            &[POLICY],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            &[NETWORKING],
            &["networkpolicies", "ingresses", "ingresses/status"],
        ),
    ]
}

fn kube_controller_manager() -> Vec<PolicyRule> {
    vec![
        events(),
        // Leader election.
        rule(&["create"], &[COORDINATION], &["leases"]),
        named(
            &["get", "update"],
            &[COORDINATION],
            &["leases"],
            &["kube-controller-manager"],
        ),
        // Creating the controllers' service accounts and their tokens.
        rule(&["create"], &[CORE], &["secrets", "serviceaccounts"]),
        rule(&["delete"], &[CORE], &["secrets"]),
        rule(
            &["get"],
            &[CORE],
            &["namespaces", "secrets", "serviceaccounts", "configmaps"],
        ),
        rule(&["update"], &[CORE], &["secrets", "serviceaccounts"]),
        // Delegated authentication and authorization.
        rule(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
        rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
        // Shared informers.
        rule(&["list", "watch"], &["*"], &["*"]),
        rule(&["create"], &[CORE], &["serviceaccounts/token"]),
    ]
}

fn kube_scheduler() -> Vec<PolicyRule> {
    vec![
        events(),
        rule(&["create"], &[COORDINATION], &["leases"]),
        named(
            &["get", "update"],
            &[COORDINATION],
            &["leases"],
            &["kube-scheduler"],
        ),
        rule(READ, &[CORE], &["nodes"]),
        rule(&["get", "list", "watch", "delete"], &[CORE], &["pods"]),
        rule(&["create"], &[CORE], &["pods/binding", "bindings"]),
        rule(&["patch", "update"], &[CORE], &["pods/status"]),
        rule(READ, &[CORE], &["replicationcontrollers", "services"]),
        rule(READ, &[APPS, EXTENSIONS], &["replicasets"]),
        rule(READ, &[APPS], &["statefulsets"]),
        rule(READ, &[POLICY], &["poddisruptionbudgets"]),
        rule(
            READ,
            &[CORE],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
        rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
        rule(READ, &[STORAGE], &["csinodes"]),
        rule(READ, &[CORE], &["namespaces"]),
        rule(READ, &[STORAGE], &["csidrivers"]),
        rule(READ, &[STORAGE], &["csistoragecapacities"]),
    ]
}

/// Upstream's NodeRules: the `system:node` ClusterRole's rules, and what the
/// Node authorizer allows any node beyond the objects it relates to nodes.
pub(crate) fn node_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
        rule(
            &["create"],
            &[AUTHORIZATION],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        rule(READ, &[CORE], &["services"]),
        rule(&["create", "get", "list", "watch"], &[CORE], &["nodes"]),
        rule(&["update", "patch"], &[CORE], &["nodes/status"]),
        rule(&["update", "patch"], &[CORE], &["nodes"]),
        rule(&["create", "update", "patch"], &[CORE], &["events"]),
        rule(READ, &[CORE], &["pods"]),
        rule(&["create", "delete"], &[CORE], &["pods"]),
        rule(&["update", "patch"], &[CORE], &["pods/status"]),
        rule(&["create"], &[CORE], &["pods/eviction"]),
        rule(READ, &[CORE], &["secrets", "configmaps"]),
        rule(
            &["get"],
            &[CORE],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["get"], &[CORE], &["endpoints"]),
        rule(
            &["create", "get", "list", "watch"],
            &[CERTIFICATES],
            &["certificatesigningrequests"],
        ),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &[COORDINATION],
            &["leases"],
        ),
        rule(&["get"], &[STORAGE], &["volumeattachments"]),
        rule(&["create"], &[CORE], &["serviceaccounts/token"]),
        rule(
            &["get", "update", "patch"],
            &[CORE],
            &["persistentvolumeclaims/status"],
        ),
        rule(READ, &[STORAGE], &["csidrivers"]),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &[STORAGE],
            &["csinodes"],
        ),
        rule(READ, &["node.k8s.io"], &["runtimeclasses"]),
    ]
}

/// The controllers' roles (upstream's controller_policy.go), by controller.
fn controller_roles() -> Vec<(&'static str, Vec<PolicyRule>)> {
    let apps_ext: &[&str] = &[APPS, EXTENSIONS];
    let all_verbs_but_dc: &[&str] = &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    vec![
        (
            "attachdetach-controller",
            vec![
                rule(
                    &["list", "watch"],
                    &[CORE],
                    &["persistentvolumes", "persistentvolumeclaims"],
                ),
                rule(READ, &[CORE], &["nodes"]),
                rule(&["patch", "update"], &[CORE], &["nodes/status"]),
                rule(&["list", "watch"], &[CORE], &["pods"]),
                events(),
                rule(
                    &["get", "create", "delete", "list", "watch"],
                    &[STORAGE],
                    &["volumeattachments"],
                ),
                rule(READ, &[STORAGE], &["csidrivers"]),
                rule(READ, &[STORAGE], &["csinodes"]),
            ],
        ),
        (
            "certificate-controller",
            vec![
                rule(
                    &["get", "list", "watch", "delete"],
                    &[CERTIFICATES],
                    &["certificatesigningrequests"],
                ),
                rule(
                    &["update"],
                    &[CERTIFICATES],
                    &[
                        "certificatesigningrequests/status",
                        "certificatesigningrequests/approval",
                    ],
                ),
                named(
                    &["approve"],
                    &[CERTIFICATES],
                    &["signers"],
                    &["kubernetes.io/kube-apiserver-client-kubelet"],
                ),
                named(
                    &["sign"],
                    &[CERTIFICATES],
                    &["signers"],
                    &[
                        "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                        "kubernetes.io/legacy-unknown",
                    ],
                ),
                rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
                events(),
            ],
        ),
        (
            "clusterrole-aggregation-controller",
            vec![rule(
                &["escalate", "get", "list", "watch", "update", "patch"],
                &[GROUP],
                &["clusterroles"],
            )],
        ),
        (
            "cronjob-controller",
            vec![
                rule(&["get", "list", "watch", "update"], &[BATCH], &["cronjobs"]),
                rule(all_verbs_but_dc, &[BATCH], &["jobs"]),
                rule(&["update"], &[BATCH], &["cronjobs/status"]),
                rule(&["update"], &[BATCH], &["cronjobs/finalizers"]),
                rule(&["list", "watch", "delete"], &[CORE], &["pods"]),
                events(),
            ],
        ),
        (
            "daemon-set-controller",
            vec![
                rule(READ, apps_ext, &["daemonsets"]),
                rule(&["update"], apps_ext, &["daemonsets/status"]),
                rule(&["update"], apps_ext, &["daemonsets/finalizers"]),
                rule(&["list", "watch"], &[CORE], &["nodes"]),
                rule(
                    &["list", "watch", "create", "delete", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                rule(&["create"], &[CORE], &["pods/binding"]),
                rule(all_verbs_but_dc, &[APPS], &["controllerrevisions"]),
                events(),
            ],
        ),
        (
            "deployment-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    apps_ext,
                    &["deployments"],
                ),
                rule(&["update"], apps_ext, &["deployments/status"]),
                rule(&["update"], apps_ext, &["deployments/finalizers"]),
                rule(all_verbs_but_dc, apps_ext, &["replicasets"]),
                // Only to relabel old pods (kubectl rollout undo of old replicasets).
                rule(&["get", "list", "watch", "update"], &[CORE], &["pods"]),
                events(),
            ],
        ),
        (
            "disruption-controller",
            vec![
                rule(READ, apps_ext, &["deployments"]),
                rule(READ, apps_ext, &["replicasets"]),
                rule(READ, &[CORE], &["replicationcontrollers"]),
                rule(READ, &[POLICY], &["poddisruptionbudgets"]),
                rule(READ, &[APPS], &["statefulsets"]),
                rule(&["update"], &[POLICY], &["poddisruptionbudgets/status"]),
                rule(&["patch", "update"], &[CORE], &["pods/status"]),
                rule(&["get"], &["*"], &["*/scale"]),
                events(),
            ],
        ),
        (
            "endpoint-controller",
            vec![
                rule(READ, &[CORE], &["services", "pods"]),
                rule(
                    &["get", "list", "create", "update", "delete", "watch"],
                    &[CORE],
                    &["endpoints"],
                ),
                rule(&["create"], &[CORE], &["endpoints/restricted"]),
                events(),
            ],
        ),
        (
            "endpointslice-controller",
            vec![
                rule(READ, &[CORE], &["services", "pods", "nodes"]),
                rule(&["update"], &[CORE], &["services/finalizers"]),
                rule(
                    &["get", "list", "create", "update", "delete", "watch"],
                    &[DISCOVERY],
                    &["endpointslices"],
                ),
                events(),
            ],
        ),
        (
            "endpointslicemirroring-controller",
            vec![
                rule(READ, &[CORE], &["services", "endpoints"]),
                rule(&["update"], &[CORE], &["services/finalizers"]),
                rule(&["update"], &[CORE], &["endpoints/finalizers"]),
                rule(
                    &["get", "list", "create", "update", "delete", "watch"],
                    &[DISCOVERY],
                    &["endpointslices"],
                ),
                events(),
            ],
        ),
        (
            "ephemeral-volume-controller",
            vec![
                rule(READ, &[CORE], &["pods"]),
                rule(&["update"], &[CORE], &["pods/finalizers"]),
                rule(
                    &["get", "list", "watch", "create"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                events(),
            ],
        ),
        (
            "expand-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update", "patch"],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                rule(
                    &["update", "patch"],
                    &[CORE],
                    &["persistentvolumeclaims/status"],
                ),
                rule(READ, &[CORE], &["persistentvolumeclaims"]),
                events(),
            ],
        ),
        (
            "generic-garbage-collector",
            vec![
                rule(
                    &["get", "list", "watch", "patch", "update", "delete"],
                    &["*"],
                    &["*"],
                ),
                events(),
            ],
        ),
        (
            "horizontal-pod-autoscaler",
            vec![
                rule(READ, &[AUTOSCALING], &["horizontalpodautoscalers"]),
                rule(
                    &["update"],
                    &[AUTOSCALING],
                    &["horizontalpodautoscalers/status"],
                ),
                rule(&["get", "update"], &["*"], &["*/scale"]),
                rule(&["list", "watch"], &[CORE], &["pods"]),
                rule(&["list", "watch"], &["metrics.k8s.io"], &["pods"]),
                rule(READ, &["custom.metrics.k8s.io"], &["*"]),
                rule(READ, &["external.metrics.k8s.io"], &["*"]),
                events(),
            ],
        ),
        (
            "job-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update", "patch"],
                    &[BATCH],
                    &["jobs"],
                ),
                rule(&["update"], &[BATCH], &["jobs/status"]),
                rule(&["update"], &[BATCH], &["jobs/finalizers"]),
                rule(
                    &["list", "watch", "create", "delete", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                events(),
            ],
        ),
        (
            "legacy-service-account-token-cleaner",
            vec![
                named(
                    &["get"],
                    &[CORE],
                    &["configmaps"],
                    &["kube-apiserver-legacy-service-account-token-tracking"],
                ),
                rule(&["delete", "patch"], &[CORE], &["secrets"]),
            ],
        ),
        (
            "namespace-controller",
            vec![
                rule(
                    &["get", "list", "watch", "delete"],
                    &[CORE],
                    &["namespaces"],
                ),
                rule(
                    &["update"],
                    &[CORE],
                    &["namespaces/finalize", "namespaces/status"],
                ),
                rule(
                    &["get", "list", "delete", "deletecollection", "watch"],
                    &["*"],
                    &["*"],
                ),
            ],
        ),
        (
            "node-controller",
            vec![
                rule(
                    &["get", "list", "update", "delete", "patch", "watch"],
                    &[CORE],
                    &["nodes"],
                ),
                rule(&["patch", "update"], &[CORE], &["nodes/status"]),
                rule(&["patch", "update"], &[CORE], &["pods/status"]),
                rule(&["list", "get", "delete", "watch"], &[CORE], &["pods"]),
                events(),
            ],
        ),
        (
            "persistent-volume-binder",
            vec![
                rule(
                    &["get", "list", "watch", "update", "create", "delete"],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                rule(&["update"], &[CORE], &["persistentvolumes/status"]),
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                rule(&["update"], &[CORE], &["persistentvolumeclaims/status"]),
                rule(
                    &["list", "watch", "get", "create", "delete"],
                    &[CORE],
                    &["pods"],
                ),
                rule(READ, &[STORAGE], &["storageclasses"]),
                rule(&["list", "watch"], &[CORE], &["nodes"]),
                events(),
                rule(&["watch"], &[CORE], &["events"]),
            ],
        ),
        (
            "pod-garbage-collector",
            vec![
                rule(&["list", "watch", "delete"], &[CORE], &["pods"]),
                rule(READ, &[CORE], &["nodes"]),
                rule(&["patch"], &[CORE], &["pods/status"]),
            ],
        ),
        (
            "pv-protection-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                events(),
            ],
        ),
        (
            "pvc-protection-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                rule(&["update"], &[CORE], &["persistentvolumeclaims/status"]),
                rule(READ, &[CORE], &["pods"]),
                events(),
            ],
        ),
        (
            "replicaset-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    apps_ext,
                    &["replicasets"],
                ),
                rule(&["update"], apps_ext, &["replicasets/status"]),
                rule(&["update"], apps_ext, &["replicasets/finalizers"]),
                rule(
                    &["list", "watch", "patch", "create", "delete"],
                    &[CORE],
                    &["pods"],
                ),
                events(),
            ],
        ),
        (
            "replication-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["replicationcontrollers"],
                ),
                rule(&["update"], &[CORE], &["replicationcontrollers/status"]),
                rule(&["update"], &[CORE], &["replicationcontrollers/finalizers"]),
                rule(
                    &["list", "watch", "patch", "create", "delete"],
                    &[CORE],
                    &["pods"],
                ),
                events(),
            ],
        ),
        (
            "resourcequota-controller",
            vec![
                rule(&["list", "watch"], &["*"], &["*"]),
                rule(&["update"], &[CORE], &["resourcequotas/status"]),
                events(),
            ],
        ),
        (
            "root-ca-cert-publisher",
            vec![
                rule(&["create", "update"], &[CORE], &["configmaps"]),
                events(),
            ],
        ),
        (
            "route-controller",
            vec![
                rule(&["list", "watch"], &[CORE], &["nodes"]),
                rule(&["patch"], &[CORE], &["nodes/status"]),
                events(),
            ],
        ),
        (
            "selinux-warning-controller",
            vec![
                events(),
                rule(READ, &[CORE], &["persistentvolumes"]),
                rule(READ, &[CORE], &["persistentvolumeclaims"]),
                rule(READ, &[CORE], &["pods"]),
                rule(READ, &[STORAGE], &["csidrivers"]),
            ],
        ),
        (
            "service-account-controller",
            vec![rule(&["create"], &[CORE], &["serviceaccounts"]), events()],
        ),
        (
            "service-cidrs-controller",
            vec![
                rule(
                    &["get", "list", "watch", "patch", "update"],
                    &[NETWORKING],
                    &["servicecidrs"],
                ),
                rule(
                    &["patch", "update"],
                    &[NETWORKING],
                    &["servicecidrs/finalizers"],
                ),
                rule(
                    &["patch", "update"],
                    &[NETWORKING],
                    &["servicecidrs/status"],
                ),
                rule(READ, &[NETWORKING], &["ipaddresses"]),
                events(),
            ],
        ),
        (
            "service-controller",
            vec![
                rule(READ, &[CORE], &["services"]),
                rule(&["patch", "update"], &[CORE], &["services/status"]),
                rule(&["list", "watch"], &[CORE], &["nodes"]),
                events(),
            ],
        ),
        (
            "statefulset-controller",
            vec![
                rule(&["list", "watch"], &[CORE], &["pods"]),
                rule(READ, &[APPS], &["statefulsets"]),
                rule(&["update"], &[APPS], &["statefulsets/status"]),
                rule(&["update"], &[APPS], &["statefulsets/finalizers"]),
                rule(
                    &["get", "create", "delete", "update", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                rule(all_verbs_but_dc, &[APPS], &["controllerrevisions"]),
                rule(
                    &["get", "create", "list", "watch"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                rule(&["update", "delete"], &[CORE], &["persistentvolumeclaims"]),
                rule(&["update"], &[CORE], &["pods/finalizers"]),
                events(),
            ],
        ),
        (
            "ttl-after-finished-controller",
            vec![
                rule(&["get", "list", "watch", "delete"], &[BATCH], &["jobs"]),
                events(),
            ],
        ),
        (
            "ttl-controller",
            vec![
                rule(&["update", "patch", "list", "watch"], &[CORE], &["nodes"]),
                events(),
            ],
        ),
        (
            "validatingadmissionpolicy-status-controller",
            vec![
                rule(
                    READ,
                    &["admissionregistration.k8s.io"],
                    &["validatingadmissionpolicies"],
                ),
                rule(
                    &["get", "patch", "update"],
                    &["admissionregistration.k8s.io"],
                    &["validatingadmissionpolicies/status"],
                ),
                events(),
            ],
        ),
        (
            "volumeattributesclass-protection-controller",
            vec![
                rule(READ, &[CORE], &["persistentvolumeclaims"]),
                rule(READ, &[CORE], &["persistentvolumes"]),
                rule(
                    &["get", "list", "watch", "update"],
                    &[STORAGE],
                    &["volumeattributesclasses"],
                ),
                events(),
            ],
        ),
    ]
}

/// Roles in `kube-system` and `kube-public` (upstream's namespace_policy.go).
fn namespace_roles() -> Vec<Role> {
    let leader_locking = || {
        vec![
            rule(
                &["watch", "get", "list", "create", "update"],
                &[COORDINATION],
                &["leases"],
            ),
            rule(
                &["watch", "get", "list", "create", "update"],
                &[COORDINATION],
                &["leasecandidates"],
            ),
        ]
    };
    vec![
        namespaced(
            "kube-public",
            "system:controller:bootstrap-signer",
            vec![
                rule(READ, &[CORE], &["configmaps"]),
                named(&["update"], &[CORE], &["configmaps"], &["cluster-info"]),
                events(),
            ],
        ),
        namespaced(
            "kube-system",
            "extension-apiserver-authentication-reader",
            vec![named(
                READ,
                &[CORE],
                &["configmaps"],
                &["extension-apiserver-authentication"],
            )],
        ),
        namespaced(
            "kube-system",
            "system::leader-locking-kube-controller-manager",
            leader_locking(),
        ),
        namespaced(
            "kube-system",
            "system::leader-locking-kube-scheduler",
            leader_locking(),
        ),
        namespaced(
            "kube-system",
            "system:controller:bootstrap-signer",
            vec![rule(READ, &[CORE], &["secrets"])],
        ),
        namespaced(
            "kube-system",
            "system:controller:cloud-provider",
            vec![rule(
                &["create", "get", "list", "watch"],
                &[CORE],
                &["configmaps"],
            )],
        ),
        namespaced(
            "kube-system",
            "system:controller:token-cleaner",
            vec![
                rule(&["delete", "get", "list", "watch"], &[CORE], &["secrets"]),
                events(),
            ],
        ),
    ]
}

/// A subject of a default binding.
enum Subject {
    User(&'static str),
    Group(&'static str),
    ServiceAccount(&'static str, String),
}

impl Subject {
    fn to_value(&self) -> Value {
        match self {
            Subject::User(name) => json!({"apiGroup": GROUP, "kind": "User", "name": name}),
            Subject::Group(name) => json!({"apiGroup": GROUP, "kind": "Group", "name": name}),
            Subject::ServiceAccount(namespace, name) => {
                json!({"kind": "ServiceAccount", "name": name, "namespace": namespace})
            }
        }
    }
}

/// One binding of the default policy.
struct Binding {
    name: String,
    namespace: Option<&'static str>,
    role_kind: &'static str,
    role: String,
    subjects: Vec<Subject>,
}

fn cluster_binding(name: &str, role: &str, subjects: Vec<Subject>) -> Binding {
    Binding {
        name: name.to_owned(),
        namespace: None,
        role_kind: "ClusterRole",
        role: role.to_owned(),
        subjects,
    }
}

fn bindings() -> Vec<Binding> {
    use Subject::{Group, ServiceAccount as Sa, User};
    let same = |name: &str, subjects| cluster_binding(name, name, subjects);
    let mut bindings = vec![
        same("cluster-admin", vec![Group("system:masters")]),
        same("system:monitoring", vec![Group("system:monitoring")]),
        same("system:discovery", vec![Group("system:authenticated")]),
        same("system:basic-user", vec![Group("system:authenticated")]),
        same(
            "system:public-info-viewer",
            vec![
                Group("system:authenticated"),
                Group("system:unauthenticated"),
            ],
        ),
        same("system:node-proxier", vec![User("system:kube-proxy")]),
        same(
            "system:kube-controller-manager",
            vec![User("system:kube-controller-manager")],
        ),
        same(
            "system:kube-dns",
            vec![Sa("kube-system", "kube-dns".into())],
        ),
        same("system:kube-scheduler", vec![User("system:kube-scheduler")]),
        same(
            "system:volume-scheduler",
            vec![User("system:kube-scheduler")],
        ),
        // No subjects: the Node authorizer decides for nodes.
        same("system:node", vec![]),
        same(
            "system:service-account-issuer-discovery",
            vec![Group("system:serviceaccounts")],
        ),
        cluster_binding(
            "skiff:kubelet-bootstrap",
            "system:node-bootstrapper",
            vec![Group("system:bootstrappers")],
        ),
        cluster_binding(
            "skiff:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![Group("system:bootstrappers")],
        ),
        cluster_binding(
            "skiff:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![Group("system:nodes")],
        ),
        // The API server's own client certificate towards kubelets (logs,
        // exec, node proxy), as kubeadm and k3s bind it.
        cluster_binding(
            "skiff:kube-apiserver-kubelet-api-admin",
            "system:kubelet-api-admin",
            vec![User(crate::pki::KUBELET_CLIENT_USER)],
        ),
    ];
    for (controller, _) in controller_roles() {
        let name = format!("system:controller:{controller}");
        bindings.push(cluster_binding(
            &name,
            &name,
            vec![
                Sa("kube-system", controller.to_owned()),
                User("system:kube-controller-manager"),
            ],
        ));
    }
    let role_binding = |namespace, name: &str, role: &str, subjects| Binding {
        name: name.to_owned(),
        namespace: Some(namespace),
        role_kind: "Role",
        role: role.to_owned(),
        subjects,
    };
    bindings.extend([
        role_binding(
            "kube-public",
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            vec![Sa("kube-system", "bootstrap-signer".into())],
        ),
        role_binding(
            "kube-system",
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            vec![
                User("system:kube-controller-manager"),
                User("system:kube-scheduler"),
            ],
        ),
        role_binding(
            "kube-system",
            "system::leader-locking-kube-controller-manager",
            "system::leader-locking-kube-controller-manager",
            vec![
                User("system:kube-controller-manager"),
                Sa("kube-system", "kube-controller-manager".into()),
                Sa("kube-system", "leader-election-controller".into()),
            ],
        ),
        role_binding(
            "kube-system",
            "system::leader-locking-kube-scheduler",
            "system::leader-locking-kube-scheduler",
            vec![
                User("system:kube-scheduler"),
                Sa("kube-system", "kube-scheduler".into()),
            ],
        ),
        role_binding(
            "kube-system",
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            vec![Sa("kube-system", "bootstrap-signer".into())],
        ),
        role_binding(
            "kube-system",
            "system:controller:cloud-provider",
            "system:controller:cloud-provider",
            vec![Sa("kube-system", "cloud-provider".into())],
        ),
        role_binding(
            "kube-system",
            "system:controller:token-cleaner",
            "system:controller:token-cleaner",
            vec![Sa("kube-system", "token-cleaner".into())],
        ),
    ]);
    bindings
}

fn metadata(name: &str, namespace: Option<&str>, labels: &[(&str, &str)]) -> Value {
    let mut label_map = Map::new();
    label_map.insert(BOOTSTRAPPING.0.into(), json!(BOOTSTRAPPING.1));
    for (k, v) in labels {
        label_map.insert((*k).into(), json!(v));
    }
    let mut meta = json!({
        "name": name,
        "labels": label_map,
        "annotations": {AUTOUPDATE: "true"},
    });
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    meta
}

impl Role {
    fn to_value(&self) -> Value {
        let kind = if self.namespace.is_some() {
            "Role"
        } else {
            "ClusterRole"
        };
        let mut obj = json!({
            "apiVersion": format!("{GROUP}/v1"),
            "kind": kind,
            "metadata": metadata(&self.name, self.namespace, &self.labels),
        });
        if !self.rules.is_empty() {
            obj["rules"] = self.rules.iter().map(PolicyRule::to_value).collect();
        }
        if let Some(label) = self.aggregates {
            obj["aggregationRule"] =
                json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
        }
        obj
    }
}

impl Binding {
    fn to_value(&self) -> Value {
        let kind = if self.namespace.is_some() {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        let mut obj = json!({
            "apiVersion": format!("{GROUP}/v1"),
            "kind": kind,
            "metadata": metadata(&self.name, self.namespace, &[]),
            "roleRef": {"apiGroup": GROUP, "kind": self.role_kind, "name": self.role},
        });
        // A binding without subjects has none in its JSON, as upstream's.
        if !self.subjects.is_empty() {
            obj["subjects"] = self.subjects.iter().map(Subject::to_value).collect();
        }
        obj
    }
}

/// Subjects earlier Skiff versions put on default ClusterRoleBindings and
/// upstream does not, removed when reconciling: (binding, kind, name).
const RETIRED_SUBJECTS: &[(&str, &str, &str)] = &[("system:node", "Group", "system:nodes")];

/// Every object of the default policy, roles before bindings.
pub(crate) fn objects() -> Vec<(&'static ResourceInfo, Value)> {
    let lookup = |plural| registry::lookup(GROUP, "v1", plural).expect("RBAC kinds are registered");
    let mut out = Vec::new();
    for role in roles() {
        let plural = if role.namespace.is_some() {
            "roles"
        } else {
            "clusterroles"
        };
        out.push((lookup(plural), role.to_value()));
    }
    for binding in bindings() {
        let plural = if binding.namespace.is_some() {
            "rolebindings"
        } else {
            "clusterrolebindings"
        };
        out.push((lookup(plural), binding.to_value()));
    }
    out
}

/// What reconciling one object did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Unchanged,
    Created,
    Updated,
    Recreated,
    Protected,
}

/// Creates the default policy's missing objects and reconciles the others,
/// then brings aggregated ClusterRoles up to date.
pub(crate) async fn ensure(api: &Api) -> Result<(), ApiError> {
    let roles_first = objects();
    let (roles, bindings): (Vec<_>, Vec<_>) = roles_first
        .into_iter()
        .partition(|(r, _)| r.plural.ends_with("roles"));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    // Concurrently, so that the store commits them in a few batches.
    for batch in [roles, bindings] {
        let outcomes = join_all(
            batch
                .into_iter()
                .map(|(resource, obj)| reconcile(api, resource, obj)),
        )
        .await;
        for outcome in outcomes {
            *counts.entry(format!("{:?}", outcome?)).or_default() += 1;
        }
    }
    info!(?counts, "default RBAC policy in place");
    if !api.cache.sync().await.map_err(crate::rest::store_error)? {
        warn!("the watch cache lags the store; aggregated ClusterRoles will catch up");
    }
    super::aggregation::aggregate_all(api).await;
    Ok(())
}

/// Creates `expected` if missing, else merges it into what is stored.
async fn reconcile(
    api: &Api,
    resource: &'static ResourceInfo,
    expected: Value,
) -> Result<Outcome, ApiError> {
    let key = resource.key(
        expected["metadata"]["namespace"].as_str(),
        expected["metadata"]["name"].as_str().unwrap_or(""),
    );
    for _ in 0..5 {
        let Some(kv) = api
            .store
            .get(&key)
            .await
            .map_err(crate::rest::store_error)?
        else {
            match create_object(api, None, resource, expected.clone(), Some(MANAGER), false).await {
                Ok(_) => return Ok(Outcome::Created),
                Err(e) if e.reason == "AlreadyExists" => continue,
                Err(e) => return Err(e),
            }
        };
        let existing: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        if existing["metadata"]["annotations"][AUTOUPDATE] == "false" {
            return Ok(Outcome::Protected);
        }
        let reconciled = if resource.plural.ends_with("bindings") {
            if existing["roleRef"]["kind"] != expected["roleRef"]["kind"]
                || existing["roleRef"]["name"] != expected["roleRef"]["name"]
            {
                // The roleRef cannot change: recreate the binding.
                match api.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(_) => {
                        create_object(api, None, resource, expected.clone(), Some(MANAGER), false)
                            .await?;
                        return Ok(Outcome::Recreated);
                    }
                    Err(skiff_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(crate::rest::store_error(e)),
                }
            }
            reconcile_binding(&existing, &expected)
        } else {
            reconcile_role(&existing, &expected)
        };
        if reconciled == existing {
            return Ok(Outcome::Unchanged);
        }
        let bytes = bytes::Bytes::from(serde_json::to_vec(&reconciled).expect("serializes"));
        match api.store.update(&key, bytes, Some(kv.mod_revision)).await {
            Ok(_) => return Ok(Outcome::Updated),
            Err(skiff_store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(crate::rest::store_error(e)),
        }
    }
    Err(ApiError::conflict(
        crate::status::GroupResource {
            group: GROUP,
            resource: resource.plural,
        },
        expected["metadata"]["name"].as_str().unwrap_or(""),
        "too many concurrent writers while reconciling the default RBAC policy",
    ))
}

/// Expected labels and annotations added where missing (what is stored
/// wins).
fn merge_metadata(obj: &mut Value, expected: &Value) {
    for field in ["labels", "annotations"] {
        let Some(wanted) = expected["metadata"][field].as_object() else {
            continue;
        };
        if !obj["metadata"][field].is_object() {
            obj["metadata"][field] = json!({});
        }
        let have = obj["metadata"][field].as_object_mut().expect("an object");
        for (k, v) in wanted {
            have.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// Upstream's computeReconciledRole (union mode): missing rules and
/// aggregation selectors added.
fn reconcile_role(existing: &Value, expected: &Value) -> Value {
    let mut out = existing.clone();
    merge_metadata(&mut out, expected);
    let (_, missing) = rules::covers(
        &PolicyRule::list_from(existing),
        &PolicyRule::list_from(expected),
    );
    if !missing.is_empty() {
        let mut all: Vec<Value> = out["rules"].as_array().cloned().unwrap_or_default();
        all.extend(missing.iter().map(PolicyRule::to_value));
        out["rules"] = Value::Array(all);
    }
    let selectors = |v: &Value| -> Vec<Value> {
        v["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    match (
        expected.get("aggregationRule"),
        existing.get("aggregationRule"),
    ) {
        (None, Some(_)) => {
            if let Some(m) = out.as_object_mut() {
                m.remove("aggregationRule");
            }
        }
        (Some(_), _) => {
            let mut have = selectors(existing);
            let before = have.len();
            for s in selectors(expected) {
                if !have.contains(&s) {
                    have.push(s);
                }
            }
            if have.len() != before || existing.get("aggregationRule").is_none() {
                out["aggregationRule"] = json!({"clusterRoleSelectors": have});
            }
        }
        (None, None) => {}
    }
    out
}

/// Upstream's computeReconciledRoleBinding (union mode): missing subjects
/// added; and Skiff's [`RETIRED_SUBJECTS`] removed.
fn reconcile_binding(existing: &Value, expected: &Value) -> Value {
    let mut out = existing.clone();
    merge_metadata(&mut out, expected);
    let key = |s: &Value| {
        (
            s["kind"].as_str().unwrap_or("").to_owned(),
            s["name"].as_str().unwrap_or("").to_owned(),
            s["namespace"].as_str().unwrap_or("").to_owned(),
        )
    };
    let before: Vec<Value> = out["subjects"].as_array().cloned().unwrap_or_default();
    let mut subjects = before.clone();
    for s in expected["subjects"].as_array().into_iter().flatten() {
        if !subjects.iter().any(|have| key(have) == key(s)) {
            subjects.push(s.clone());
        }
    }
    if expected["kind"] == "ClusterRoleBinding" {
        let binding = expected["metadata"]["name"].as_str().unwrap_or("");
        subjects.retain(|s| {
            !RETIRED_SUBJECTS
                .iter()
                .any(|&(b, kind, name)| b == binding && s["kind"] == kind && s["name"] == name)
        });
    }
    if subjects != before {
        match out.as_object_mut() {
            Some(obj) if subjects.is_empty() => {
                obj.remove("subjects");
            }
            _ => out["subjects"] = Value::Array(subjects),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_has_upstreams_main_roles_and_bindings() {
        let objects = objects();
        let find = |plural: &str, name: &str| {
            objects
                .iter()
                .find(|(r, o)| r.plural == plural && o["metadata"]["name"] == name)
                .map(|(_, o)| o.clone())
                .unwrap_or_else(|| panic!("{plural}/{name} missing"))
        };
        for role in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:basic-user",
            "system:discovery",
            "system:public-info-viewer",
            "system:node",
            "system:node-proxier",
            "system:kube-scheduler",
            "system:kube-controller-manager",
            "system:node-bootstrapper",
            "system:controller:replicaset-controller",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        ] {
            let obj = find("clusterroles", role);
            assert_eq!(obj["metadata"]["annotations"][AUTOUPDATE], "true");
            assert_eq!(
                obj["metadata"]["labels"]["kubernetes.io/bootstrapping"],
                "rbac-defaults"
            );
        }
        assert_eq!(
            find("clusterroles", "edit")["metadata"]["labels"][AGGREGATE_TO_ADMIN],
            "true"
        );
        assert_eq!(
            find("clusterroles", "view")["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
                [AGGREGATE_TO_VIEW],
            "true"
        );
        let admin = find("clusterrolebindings", "cluster-admin");
        assert_eq!(admin["subjects"][0]["name"], "system:masters");
        let public = find("clusterrolebindings", "system:public-info-viewer");
        assert_eq!(public["subjects"][1]["name"], "system:unauthenticated");
        find("rolebindings", "system::leader-locking-kube-scheduler");
        // Every binding's role is in the policy.
        for (r, b) in objects
            .iter()
            .filter(|(r, _)| r.plural.ends_with("bindings"))
        {
            let role_plural = if b["roleRef"]["kind"] == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            let role = b["roleRef"]["name"].as_str().unwrap();
            let found = objects.iter().any(|(rr, o)| {
                rr.plural == role_plural
                    && o["metadata"]["name"] == role
                    && o["metadata"]["namespace"] == b["metadata"]["namespace"]
            });
            assert!(
                found,
                "{} {}: no {role_plural}/{role}",
                r.plural, b["metadata"]["name"]
            );
        }
    }

    #[test]
    fn reconciling_a_role_adds_back_missing_rules_and_keeps_additions() {
        let expected = json!({
            "metadata": {"name": "r", "labels": {"a": "1"}, "annotations": {AUTOUPDATE: "true"}},
            "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}],
        });
        let existing = json!({
            "metadata": {"name": "r", "labels": {"mine": "x"}},
            "rules": [
                {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]},
            ],
        });
        let out = reconcile_role(&existing, &expected);
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "mine": "x"}));
        assert_eq!(out["metadata"]["annotations"][AUTOUPDATE], "true");
        assert_eq!(
            out["rules"],
            json!([
                {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]},
                {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]},
            ])
        );
        // Reconciling again changes nothing.
        assert_eq!(reconcile_role(&out, &expected), out);
    }

    #[test]
    fn reconciling_a_binding_adds_back_missing_subjects() {
        let expected = json!({
            "metadata": {"name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "Group", "name": "g"}, {"kind": "User", "name": "u"}],
        });
        let existing = json!({
            "metadata": {"name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "User", "name": "u", "apiGroup": GROUP}, {"kind": "User", "name": "extra"}],
        });
        let out = reconcile_binding(&existing, &expected);
        let names: Vec<&str> = out["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["u", "extra", "g"]);
    }

    #[test]
    fn nodes_are_not_bound_to_system_node_and_an_old_binding_loses_them() {
        let expected = objects()
            .into_iter()
            .find(|(r, o)| {
                r.plural == "clusterrolebindings" && o["metadata"]["name"] == "system:node"
            })
            .map(|(_, o)| o)
            .expect("the system:node binding");
        assert!(expected.get("subjects").is_none(), "{expected}");
        assert_eq!(expected["roleRef"]["name"], "system:node");
        let mut old = expected.clone();
        old["subjects"] = json!([{"apiGroup": GROUP, "kind": "Group", "name": "system:nodes"}]);
        let out = reconcile_binding(&old, &expected);
        assert!(out.get("subjects").is_none(), "{out}");
        assert_eq!(reconcile_binding(&out, &expected), out);
        // What a user added stays.
        old["subjects"] = json!([
            {"apiGroup": GROUP, "kind": "Group", "name": "system:nodes"},
            {"apiGroup": GROUP, "kind": "User", "name": "system:node:special"},
        ]);
        let out = reconcile_binding(&old, &expected);
        assert_eq!(
            out["subjects"],
            json!([{"apiGroup": GROUP, "kind": "User", "name": "system:node:special"}])
        );
    }
}
