//! RBAC end to end, on a real server in-process, driven by kube-rs over
//! HTTPS: the admin (client certificate in `system:masters`) grants alice
//! (client certificate CN=alice, O=devs) rights through Roles and bindings;
//! what she may do follows, escalation is refused, the review kinds answer,
//! aggregated ClusterRoles gather their parts, and the default policy is
//! reconciled on restart.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenReview};
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Error};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// A server on a free port, its admin client, and where it keeps its data.
struct Cluster {
    admin: Client,
    server: Option<skiff_apiserver::Running>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Cluster {
    async fn start() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = Cluster::start_in(tmp.path()).await;
        c._tmp = Some(tmp);
        c
    }

    async fn start_in(dir: &Path) -> Cluster {
        let server = skiff_apiserver::start(skiff_apiserver::Config {
            data_dir: dir.to_owned(),
            secure_port: 0,
            bind_address: "127.0.0.1".parse().unwrap(),
            ..Default::default()
        })
        .await
        .expect("the server starts");
        let admin = client_from(Kubeconfig::read_from(&server.admin_kubeconfig).unwrap()).await;
        Cluster {
            admin,
            server: Some(server),
            dir: dir.to_owned(),
            _tmp: None,
        }
    }

    fn server(&self) -> &skiff_apiserver::Running {
        self.server.as_ref().unwrap()
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// A kubeconfig for a user with a client certificate signed by the
    /// cluster CA: CN = `name`, O = each of `groups`.
    fn kubeconfig_for(&self, name: &str, groups: &[&str]) -> String {
        let pki = self.dir.join("pki");
        let ca_cert = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_cert, ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        for g in groups {
            dn.push(DnType::OrganizationName, *g);
        }
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let url = format!("https://{}", self.server().addr);
        skiff_apiserver::pki::kubeconfig(&url, &ca_cert, &cert.pem(), &key.serialize_pem())
    }

    async fn client_for(&self, name: &str, groups: &[&str]) -> Client {
        let kubeconfig = Kubeconfig::from_yaml(&self.kubeconfig_for(name, groups)).unwrap();
        client_from(kubeconfig).await
    }

    /// A client with no credentials.
    async fn anonymous(&self) -> Client {
        let mut kubeconfig = Kubeconfig::read_from(&self.server().admin_kubeconfig).unwrap();
        for user in &mut kubeconfig.auth_infos {
            if let Some(auth) = user.auth_info.as_mut() {
                auth.client_certificate_data = None;
                auth.client_key_data = None;
            }
        }
        client_from(kubeconfig).await
    }
}

async fn client_from(kubeconfig: Kubeconfig) -> Client {
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn from<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn status(e: &Error) -> (u16, String) {
    match e {
        Error::Api(s) => (s.code, s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Retries `check` until it holds (RBAC changes reach the authorizer through
/// the watch cache, a moment after the write).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod(name: &str) -> Pod {
    from(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
}

async fn create_namespace(admin: &Client, name: &str) {
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": name}})),
        )
        .await
        .unwrap();
}

/// Role `pod-reader` in `team` (get and list pods), bound to alice.
async fn grant_alice_pod_reading(admin: &Client) {
    let roles: Api<Role> = Api::namespaced(admin.clone(), "team");
    roles
        .create(
            &PostParams::default(),
            &from(json!({
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            })),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "team");
    bindings
        .create(
            &PostParams::default(),
            &from(json!({
                "metadata": {"name": "alice-reads-pods"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
            })),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_binding_grants_its_role_in_its_namespace_only() {
    let c = Cluster::start().await;
    create_namespace(&c.admin, "team").await;
    let alice = c.client_for("alice", &["devs"]).await;
    let team_pods: Api<Pod> = Api::namespaced(alice.clone(), "team");

    // Nothing is granted yet.
    let (code, message) = status(&team_pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(code, 403);
    assert_eq!(
        message,
        r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team""#
    );

    grant_alice_pod_reading(&c.admin).await;
    eventually("alice may list pods in team", || async {
        team_pods.list(&ListParams::default()).await.is_ok()
    })
    .await;

    // Not in another namespace, nor across the cluster.
    let default_pods: Api<Pod> = Api::namespaced(alice.clone(), "default");
    let (code, message) = status(&default_pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(code, 403);
    assert_eq!(
        message,
        r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    let all_pods: Api<Pod> = Api::all(alice.clone());
    let (_, message) = status(&all_pods.list(&ListParams::default()).await.unwrap_err());
    assert!(message.ends_with("at the cluster scope"), "{message}");

    // Reading is not writing.
    let (code, message) = status(
        &team_pods
            .create(&PostParams::default(), &pod("p"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert_eq!(
        message,
        r#"pods is forbidden: User "alice" cannot create resource "pods" in API group "" in the namespace "team""#
    );

    // A group is a subject: devs may now create pods in team.
    let bindings: Api<RoleBinding> = Api::namespaced(c.admin.clone(), "team");
    bindings
        .create(
            &PostParams::default(),
            &from(json!({
                "metadata": {"name": "devs-edit"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}],
            })),
        )
        .await
        .unwrap();
    eventually("devs may create pods in team", || async {
        team_pods
            .create(&PostParams::default(), &pod("p"))
            .await
            .is_ok()
    })
    .await;

    // Removing the binding takes the right away.
    bindings
        .delete("devs-edit", &Default::default())
        .await
        .unwrap();
    eventually("devs may no longer delete pods", || async {
        team_pods
            .delete("p", &Default::default())
            .await
            .is_err_and(|e| status(&e).0 == 403)
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregated_cluster_role_gathers_the_rules_of_the_roles_it_selects() {
    let c = Cluster::start().await;
    let roles: Api<ClusterRole> = Api::all(c.admin.clone());

    // The default aggregated roles are filled from the start.
    let view = roles.get("view").await.unwrap();
    let view_rules = serde_json::to_value(view.rules.unwrap_or_default()).unwrap();
    assert!(
        view_rules
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"].as_array().unwrap().contains(&json!("pods"))),
        "{view_rules}"
    );
    let admin_rules = serde_json::to_value(roles.get("admin").await.unwrap().rules).unwrap();
    let admin_rules = admin_rules.to_string();
    assert!(
        admin_rules.contains("rolebindings"),
        "admin lacks its own part"
    );
    assert!(admin_rules.contains("pods/exec"), "admin lacks edit's part");
    assert!(admin_rules.contains("pods/log"), "admin lacks view's part");

    roles
        .create(
            &PostParams::default(),
            &from(json!({
                "metadata": {"name": "monitoring"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"example.com/aggregate-to-monitoring": "true"}}]},
            })),
        )
        .await
        .unwrap();
    roles
        .create(
            &PostParams::default(),
            &from(json!({
                "metadata": {"name": "monitoring-endpoints", "labels": {"example.com/aggregate-to-monitoring": "true"}},
                "rules": [{"apiGroups": [""], "resources": ["services", "endpoints", "pods"], "verbs": ["get", "list", "watch"]}],
            })),
        )
        .await
        .unwrap();
    eventually("monitoring gathers monitoring-endpoints' rules", || async {
        roles
            .get("monitoring")
            .await
            .unwrap()
            .rules
            .is_some_and(|r| r.len() == 1 && r[0].resources.as_ref().unwrap().len() == 3)
    })
    .await;

    // A role that stops matching is dropped from the union.
    roles
        .patch(
            "monitoring-endpoints",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"example.com/aggregate-to-monitoring": null}}}),
            ),
        )
        .await
        .unwrap();
    eventually("monitoring loses monitoring-endpoints' rules", || async {
        roles
            .get("monitoring")
            .await
            .unwrap()
            .rules
            .is_none_or(|r| r.is_empty())
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_bindings_grant_only_what_their_author_holds() {
    let c = Cluster::start().await;
    create_namespace(&c.admin, "team").await;
    grant_alice_pod_reading(&c.admin).await;
    // alice may manage roles and bindings in team, and bind `view`.
    let admin_roles: Api<Role> = Api::namespaced(c.admin.clone(), "team");
    admin_roles
        .create(
            &PostParams::default(),
            &from(json!({
                "metadata": {"name": "rbac-manager"},
                "rules": [
                    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "get", "update"]},
                    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["view"]},
                ],
            })),
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(c.admin.clone(), "team")
        .create(
            &PostParams::default(),
            &from(json!({
                "metadata": {"name": "alice-manages-rbac"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rbac-manager"},
                "subjects": [{"kind": "User", "name": "alice"}],
            })),
        )
        .await
        .unwrap();
    let alice = c.client_for("alice", &["devs"]).await;
    let roles: Api<Role> = Api::namespaced(alice.clone(), "team");
    let bindings: Api<RoleBinding> = Api::namespaced(alice.clone(), "team");
    eventually("alice may read roles", || async {
        roles.get("pod-reader").await.is_ok()
    })
    .await;

    // A role with what she holds: allowed.
    roles
        .create(
            &PostParams::default(),
            &from(json!({
                "metadata": {"name": "pod-getter"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
            })),
        )
        .await
        .unwrap();
    // A role with more: refused, naming what is missing.
    let (code, message) = status(
        &roles
            .create(
                &PostParams::default(),
                &from(json!({
                    "metadata": {"name": "pod-deleter"},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}],
                })),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "roles.rbac.authorization.k8s.io \"pod-deleter\" is forbidden: user \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
    );
    // Nor by updating a role she may update.
    let mut getter = roles.get("pod-getter").await.unwrap();
    getter.rules.as_mut().unwrap()[0].verbs = vec!["*".into()];
    let (code, _) = status(
        &roles
            .replace("pod-getter", &PostParams::default(), &getter)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);

    // Binding a role she holds: allowed; binding `edit`: refused; binding
    // `view`, which she may `bind`: allowed though she does not hold it.
    let binding = |name: &str, kind: &str, role: &str| -> RoleBinding {
        from(json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "User", "name": "bob"}],
        }))
    };
    bindings
        .create(
            &PostParams::default(),
            &binding("bob-reads", "Role", "pod-reader"),
        )
        .await
        .unwrap();
    let (code, message) = status(
        &bindings
            .create(
                &PostParams::default(),
                &binding("bob-edits", "ClusterRole", "edit"),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert!(
        message.starts_with("rolebindings.rbac.authorization.k8s.io \"bob-edits\" is forbidden: user \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n"),
        "{message}"
    );
    bindings
        .create(
            &PostParams::default(),
            &binding("bob-views", "ClusterRole", "view"),
        )
        .await
        .unwrap();

    // ClusterRoles and their bindings need cluster-wide rights she lacks.
    let cluster_roles: Api<ClusterRole> = Api::all(alice.clone());
    let (code, _) = status(
        &cluster_roles
            .create(
                &PostParams::default(),
                &from(json!({"metadata": {"name": "mine"}, "rules": []})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(alice);
    let (code, _) = status(
        &cluster_bindings
            .create(
                &PostParams::default(),
                &from(json!({
                    "metadata": {"name": "alice-admin"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"kind": "User", "name": "alice"}],
                })),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_kinds_answer_for_the_caller_and_for_others() {
    let c = Cluster::start().await;
    create_namespace(&c.admin, "team").await;
    grant_alice_pod_reading(&c.admin).await;
    let alice = c.client_for("alice", &["devs"]).await;
    let access = |namespace: &str, verb: &str| -> SelfSubjectAccessReview {
        from(
            json!({"spec": {"resourceAttributes": {"namespace": namespace, "verb": verb, "resource": "pods"}}}),
        )
    };
    let ssar: Api<SelfSubjectAccessReview> = Api::all(alice.clone());
    eventually("alice may list pods in team", || async {
        let answer = ssar
            .create(&PostParams::default(), &access("team", "list"))
            .await
            .unwrap();
        answer.status.unwrap().allowed
    })
    .await;
    let answer = ssar
        .create(&PostParams::default(), &access("team", "get"))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        answer.reason.as_deref(),
        Some(
            r#"RBAC: allowed by RoleBinding "alice-reads-pods/team" of Role "pod-reader" to User "alice""#
        )
    );
    for (namespace, verb) in [("default", "list"), ("team", "delete")] {
        let answer = ssar
            .create(&PostParams::default(), &access(namespace, verb))
            .await
            .unwrap();
        assert!(!answer.status.unwrap().allowed, "{verb} in {namespace}");
    }
    let path: SelfSubjectAccessReview =
        from(json!({"spec": {"nonResourceAttributes": {"path": "/apis/apps", "verb": "get"}}}));
    assert!(
        ssar.create(&PostParams::default(), &path)
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );

    // What alice may do in team.
    let rules: Api<SelfSubjectRulesReview> = Api::all(alice.clone());
    let review = rules
        .create(
            &PostParams::default(),
            &from(json!({"spec": {"namespace": "team"}})),
        )
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(!review.incomplete);
    let resource_rules = serde_json::to_value(&review.resource_rules).unwrap();
    assert!(
        resource_rules
            .as_array()
            .unwrap()
            .contains(&json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]})),
        "{resource_rules}"
    );
    assert!(review.non_resource_rules.iter().any(|r| {
        r.non_resource_urls
            .as_ref()
            .is_some_and(|u| u.contains(&"/apis/*".to_owned()))
    }),);

    // Who alice is.
    let whoami = Api::<SelfSubjectReview>::all(alice.clone())
        .create(&PostParams::default(), &from(json!({})))
        .await
        .unwrap();
    let info = whoami.status.unwrap().user_info.unwrap();
    assert_eq!(info.username.as_deref(), Some("alice"));
    assert_eq!(
        info.groups.unwrap(),
        ["devs".to_owned(), "system:authenticated".to_owned()]
    );

    // The admin may ask about alice; alice may not ask about others.
    let question: SubjectAccessReview = from(json!({"spec": {
        "user": "alice",
        "groups": ["devs"],
        "resourceAttributes": {"namespace": "team", "verb": "list", "resource": "pods"},
    }}));
    let answer = Api::<SubjectAccessReview>::all(c.admin.clone())
        .create(&PostParams::default(), &question)
        .await
        .unwrap();
    assert!(answer.status.unwrap().allowed);
    let (code, _) = status(
        &Api::<SubjectAccessReview>::all(alice.clone())
            .create(&PostParams::default(), &question)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    // The same question, asked in team (LocalSubjectAccessReview); the
    // namespaces must agree.
    let local: Api<LocalSubjectAccessReview> = Api::namespaced(c.admin.clone(), "team");
    let ask = |namespace: &str| -> LocalSubjectAccessReview {
        from(json!({"spec": {
            "user": "alice",
            "resourceAttributes": {"namespace": namespace, "verb": "get", "resource": "pods"},
        }}))
    };
    let answer = local
        .create(&PostParams::default(), &ask("team"))
        .await
        .unwrap();
    assert!(answer.status.unwrap().allowed);
    let (code, message) = status(
        &local
            .create(&PostParams::default(), &ask("default"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert!(
        message.contains("must match metadata.namespace"),
        "{message}"
    );
    // A token nobody issued authenticates no one.
    let review = Api::<TokenReview>::all(c.admin.clone())
        .create(
            &PostParams::default(),
            &from(json!({"spec": {"token": "not-a-token"}})),
        )
        .await
        .unwrap();
    assert!(!review.status.unwrap().authenticated.unwrap_or(false));
    // A question without a subject is invalid.
    let invalid: SubjectAccessReview =
        from(json!({"spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}}}));
    let (code, message) = status(
        &Api::<SubjectAccessReview>::all(c.admin.clone())
            .create(&PostParams::default(), &invalid)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("at least one of user or group must be specified"));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_get_only_public_information() {
    let c = Cluster::start().await;
    let anonymous = c.anonymous().await;
    let get = |path: &str| http::Request::get(path).body(Vec::new()).unwrap();
    assert_eq!(anonymous.request_text(get("/healthz")).await.unwrap(), "ok");
    assert!(anonymous.request_text(get("/version")).await.is_ok());
    let pods: Api<Pod> = Api::all(anonymous.clone());
    assert_eq!(
        status(&pods.list(&ListParams::default()).await.unwrap_err()).0,
        401
    );
    // Discovery is for authenticated users (system:discovery).
    assert_eq!(
        status(&anonymous.request_text(get("/api")).await.unwrap_err()).0,
        401
    );
    c.stop().await;
}

#[test]
fn the_default_policy_is_reconciled_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    // Each server in its own runtime, so that nothing of the first one
    // (which holds the store open) outlives it.
    let run = |f: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
        std::thread::spawn(move || tokio::runtime::Runtime::new().unwrap().block_on(f))
            .join()
            .unwrap()
    };
    let first = dir.clone();
    run(Box::pin(async move {
        let c = Cluster::start_in(&first).await;
        let roles: Api<ClusterRole> = Api::all(c.admin.clone());
        // Rules removed from an auto-updated role come back; a role marked
        // autoupdate=false keeps its edits; a deleted role is recreated.
        roles
            .patch(
                "system:basic-user",
                &PatchParams::default(),
                &Patch::Merge(json!({"rules": [{"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews"], "verbs": ["create"]}]})),
            )
            .await
            .unwrap();
        roles
            .patch(
                "system:monitoring",
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"annotations": {"rbac.authorization.kubernetes.io/autoupdate": "false"}},
                    "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
                })),
            )
            .await
            .unwrap();
        roles
            .delete("system:kube-dns", &Default::default())
            .await
            .unwrap();
        c.stop().await;
    }));
    run(Box::pin(async move {
        let c = Cluster::start_in(&dir).await;
        let roles: Api<ClusterRole> = Api::all(c.admin.clone());
        let basic =
            serde_json::to_string(&roles.get("system:basic-user").await.unwrap().rules).unwrap();
        assert!(basic.contains("selfsubjectrulesreviews"), "{basic}");
        assert!(basic.contains("selfsubjectreviews"), "{basic}");
        let monitoring = roles.get("system:monitoring").await.unwrap();
        assert_eq!(monitoring.rules.unwrap().len(), 1);
        roles.get("system:kube-dns").await.unwrap();
        c.stop().await;
    }));
    drop(tmp);
}

/// The cost of RBAC: gets by a user whose rights come from a RoleBinding
/// (among 500 namespaces' worth of unrelated roles and bindings) beside gets
/// by the admin (`system:masters`, allowed before RBAC is consulted).
///
/// `cargo test --release -p skiff-apiserver --test rbac -- --ignored
/// --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn rbac_costs_little_per_request() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let c = Cluster::start().await;
    create_namespace(&c.admin, "team").await;
    let bindings: Api<RoleBinding> = Api::namespaced(c.admin.clone(), "team");
    bindings
        .create(
            &PostParams::default(),
            &from(json!({
                "metadata": {"name": "devs-edit"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"kind": "Group", "name": "devs"}],
            })),
        )
        .await
        .unwrap();
    let others: Api<ClusterRoleBinding> = Api::all(c.admin.clone());
    for i in 0..500 {
        others
            .create(
                &PostParams::default(),
                &from(json!({
                    "metadata": {"name": format!("other-{i}")},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                    "subjects": [{"kind": "User", "name": format!("user-{i}")}, {"kind": "Group", "name": format!("group-{i}")}],
                })),
            )
            .await
            .unwrap();
    }
    Api::<ConfigMap>::namespaced(c.admin.clone(), "team")
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "cm"}})),
        )
        .await
        .unwrap();
    let alice = c.client_for("alice", &["devs"]).await;
    let alice_cms: Api<ConfigMap> = Api::namespaced(alice.clone(), "team");
    eventually("alice may read configmaps", || async {
        alice_cms.get("cm").await.is_ok()
    })
    .await;
    // Gets, and creates (each of which moves the cache's revision, so the
    // next decision checks whether RBAC changed).
    let round = std::sync::atomic::AtomicUsize::new(0);
    let rate = |client: Client, create: bool| {
        let round = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let cms: Api<ConfigMap> = Api::namespaced(client, "team");
            let deadline = Instant::now() + Duration::from_secs(3);
            let tasks: Vec<_> = (0..16)
                .map(|task| {
                    let cms = cms.clone();
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while Instant::now() < deadline {
                            if create {
                                let name = format!("cm-{round}-{task}-{n}");
                                let cm = from(json!({"metadata": {"name": name}}));
                                cms.create(&PostParams::default(), &cm).await.unwrap();
                            } else {
                                cms.get("cm").await.unwrap();
                            }
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total as f64 / 3.0
        }
    };
    for (what, create) in [("gets", false), ("creates", true)] {
        // Warm up both, then measure each twice, interleaved.
        rate(c.admin.clone(), create).await;
        rate(alice.clone(), create).await;
        let (mut admin, mut rbac) = (0.0, 0.0);
        for _ in 0..2 {
            admin += rate(c.admin.clone(), create).await / 2.0;
            rbac += rate(alice.clone(), create).await / 2.0;
        }
        println!(
            "configmap {what} at concurrency 16: admin (system:masters) {admin:.0}/s, alice (RoleBinding, 1000 other subjects) {rbac:.0}/s, ratio {:.3}",
            rbac / admin
        );
    }
    c.stop().await;
}
