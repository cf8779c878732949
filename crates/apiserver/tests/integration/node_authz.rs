//! The Node authorizer end to end, on a real server in-process: kubelets
//! (client certificates CN=system:node:<name>, O=system:nodes, signed by the
//! cluster CA) read the secrets, configmaps, claims and volumes of the pods
//! bound to them and nothing else, write their own Node and Lease, request
//! tokens for their pods' service accounts, and keep what RBAC and the node
//! rules give every kubelet; SubjectAccessReviews answer as the requests are
//! decided.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};

const NODES: &str = "system:nodes";

/// A server on a free port, its admin client, and where it keeps its data.
struct Cluster {
    admin: Client,
    server: Option<skiff_apiserver::Running>,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let server = skiff_apiserver::start(skiff_apiserver::Config {
            data_dir: tmp.path().to_owned(),
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
            dir: tmp.path().to_owned(),
            _tmp: tmp,
        }
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// A client with a certificate signed by the cluster CA: CN = `name`,
    /// O = each of `groups`.
    async fn client_for(&self, name: &str, groups: &[&str]) -> Client {
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
        let url = format!("https://{}", self.server.as_ref().unwrap().addr);
        let yaml =
            skiff_apiserver::pki::kubeconfig(&url, &ca_cert, &cert.pem(), &key.serialize_pem());
        client_from(Kubeconfig::from_yaml(&yaml).unwrap()).await
    }

    /// The kubelet of `node`.
    async fn kubelet(&self, node: &str) -> Client {
        self.client_for(&format!("system:node:{node}"), &[NODES])
            .await
    }
}

async fn client_from(kubeconfig: Kubeconfig) -> Client {
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The answer to one request: the object, or the error's code and message.
async fn send(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, (u16, String)> {
    let content_type = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(
            body.map(|b| serde_json::to_vec(&b).unwrap())
                .unwrap_or_default(),
        )
        .unwrap();
    client.request::<Value>(req).await.map_err(|e| match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    })
}

async fn get(client: &Client, path: &str) -> Result<Value, (u16, String)> {
    send(client, "GET", path, None).await
}

async fn create(client: &Client, path: &str, body: Value) -> Value {
    send(client, "POST", path, Some(body))
        .await
        .unwrap_or_else(|e| panic!("creating at {path}: {e:?}"))
}

/// The code of a refusal (panics if the request succeeded).
fn refused(answer: Result<Value, (u16, String)>) -> (u16, String) {
    match answer {
        Ok(v) => panic!("expected a refusal, got {v}"),
        Err(e) => e,
    }
}

/// Retries `check` until it holds, for at most `within`; how long it took.
async fn within<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

async fn secret(admin: &Client, name: &str) {
    create(
        admin,
        "/api/v1/namespaces/default/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": "v"}}),
    )
    .await;
}

async fn config_map(admin: &Client, name: &str) {
    create(
        admin,
        "/api/v1/namespaces/default/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}),
    )
    .await;
}

/// A pod in `default` with this spec (and one container), bound to `node`
/// if given.
async fn pod(admin: &Client, name: &str, node: Option<&str>, mut spec: Value) -> Value {
    spec["containers"] = json!([{
        "name": "c",
        "image": "busybox",
        "envFrom": spec.get("envFrom").cloned().unwrap_or(json!([])),
        "env": spec.get("env").cloned().unwrap_or(json!([])),
    }]);
    for moved in ["envFrom", "env"] {
        spec.as_object_mut().unwrap().remove(moved);
    }
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    create(
        admin,
        "/api/v1/namespaces/default/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}),
    )
    .await
}

/// A SubjectAccessReview, by the admin: (allowed, reason).
async fn review(admin: &Client, user: &str, groups: &[&str], attrs: Value) -> (bool, String) {
    let answer = create(
        admin,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
               "spec": {"user": user, "groups": groups, "resourceAttributes": attrs}}),
    )
    .await;
    (
        answer["status"]["allowed"] == true,
        answer["status"]["reason"].as_str().unwrap_or("").to_owned(),
    )
}

const UNRELATED_A: &str = "no relationship found between node 'node-a' and this object";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reads_only_what_the_pods_bound_to_it_reference() {
    let c = Cluster::start().await;
    let admin = &c.admin;
    for name in ["s-a", "s-b", "s-free", "pull-a"] {
        secret(admin, name).await;
    }
    for name in ["cm-a", "cm-b"] {
        config_map(admin, name).await;
    }
    pod(
        admin,
        "p-a",
        Some("node-a"),
        json!({
            "volumes": [{"name": "s", "secret": {"secretName": "s-a"}}],
            "envFrom": [{"configMapRef": {"name": "cm-a"}}],
            "imagePullSecrets": [{"name": "pull-a"}],
        }),
    )
    .await;
    pod(
        admin,
        "p-b",
        Some("node-b"),
        json!({
            "volumes": [{"name": "cm", "configMap": {"name": "cm-b"}}],
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s-b", "key": "k"}}}],
        }),
    )
    .await;
    let node_a = c.kubelet("node-a").await;
    let node_b = c.kubelet("node-b").await;
    let path = |kind: &str, name: &str| format!("/api/v1/namespaces/default/{kind}/{name}");

    within(Duration::from_secs(5), "node-a reads s-a", || async {
        get(&node_a, &path("secrets", "s-a")).await.is_ok()
    })
    .await;
    assert_eq!(
        get(&node_a, &path("secrets", "s-a")).await.unwrap()["data"]["k"],
        "dg=="
    );
    get(&node_a, &path("secrets", "pull-a")).await.unwrap();
    get(&node_a, &path("configmaps", "cm-a")).await.unwrap();
    get(&node_b, &path("secrets", "s-b")).await.unwrap();
    get(&node_b, &path("configmaps", "cm-b")).await.unwrap();

    // Another node's objects, and objects no pod references, are refused
    // with upstream's message.
    let (code, message) = refused(get(&node_a, &path("secrets", "s-b")).await);
    assert_eq!(code, 403);
    assert_eq!(
        message,
        format!(
            r#"secrets "s-b" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "default": {UNRELATED_A}"#
        )
    );
    assert_eq!(
        refused(get(&node_a, &path("secrets", "s-free")).await).0,
        403
    );
    assert_eq!(
        refused(get(&node_a, &path("configmaps", "cm-b")).await).0,
        403
    );
    assert_eq!(refused(get(&node_b, &path("secrets", "s-a")).await).0, 403);
    // Read only, one object at a time.
    let (code, message) = refused(get(&node_a, "/api/v1/namespaces/default/secrets").await);
    assert_eq!(code, 403);
    assert!(message.ends_with(": No Object name found"), "{message}");
    let (code, message) = refused(
        send(
            &node_a,
            "PATCH",
            &path("secrets", "s-a"),
            Some(json!({"data": {}})),
        )
        .await,
    );
    assert_eq!(code, 403);
    assert!(
        message.ends_with(": can only read resources of this type"),
        "{message}"
    );

    // A SubjectAccessReview answers as the request is decided.
    let groups = [NODES, "system:authenticated"];
    let secret_attrs = |name: &str| json!({"verb": "get", "resource": "secrets", "namespace": "default", "name": name});
    assert_eq!(
        review(admin, "system:node:node-a", &groups, secret_attrs("s-a")).await,
        (true, String::new())
    );
    assert_eq!(
        review(admin, "system:node:node-a", &groups, secret_attrs("s-b")).await,
        (false, UNRELATED_A.to_owned())
    );
    // Who is not a node is RBAC's alone.
    assert_eq!(
        review(admin, "kubelet", &groups, secret_attrs("s-a")).await,
        (false, String::new())
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_follows_a_pod_as_soon_as_it_is_bound_and_ends_with_it() {
    let c = Cluster::start().await;
    let admin = &c.admin;
    secret(admin, "late").await;
    pod(
        admin,
        "p-late",
        None,
        json!({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "late", "key": "k"}}}]}),
    )
    .await;
    let node_a = c.kubelet("node-a").await;
    let path = "/api/v1/namespaces/default/secrets/late";
    // Unscheduled, the pod gives no node anything.
    assert_eq!(refused(get(&node_a, path).await).0, 403);

    create(
        admin,
        "/api/v1/namespaces/default/pods/p-late/binding",
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p-late"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}}),
    )
    .await;
    // The decision reads the watch cache, which has the binding within
    // milliseconds.
    let took = within(
        Duration::from_secs(2),
        "node-a reads the secret",
        || async { get(&node_a, path).await.is_ok() },
    )
    .await;
    println!("allowed {took:?} after the binding");

    send(
        admin,
        "DELETE",
        "/api/v1/namespaces/default/pods/p-late?gracePeriodSeconds=0",
        None,
    )
    .await
    .unwrap();
    within(
        Duration::from_secs(2),
        "node-a no longer reads it",
        || async { get(&node_a, path).await.is_err_and(|(code, _)| code == 403) },
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_writes_its_own_node_status_and_lease_only() {
    let c = Cluster::start().await;
    let admin = &c.admin;
    let node_a = c.kubelet("node-a").await;
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});

    // A kubelet registers its Node and reports its status.
    create(&node_a, "/api/v1/nodes", node("node-a")).await;
    create(admin, "/api/v1/nodes", node("node-b")).await;
    get(&node_a, "/api/v1/nodes/node-a").await.unwrap();
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}]}});
    let status = send(
        &node_a,
        "PATCH",
        "/api/v1/nodes/node-a/status",
        Some(ready.clone()),
    )
    .await
    .unwrap();
    assert_eq!(status["status"]["conditions"][0]["reason"], "KubeletReady");
    // Not another node's.
    let (code, message) = refused(
        send(
            &node_a,
            "PATCH",
            "/api/v1/nodes/node-b/status",
            Some(ready.clone()),
        )
        .await,
    );
    assert_eq!(code, 403);
    assert!(
        message.contains(r#"node "node-a" is not allowed to modify node "node-b""#),
        "{message}"
    );
    let (code, message) =
        refused(send(&node_a, "POST", "/api/v1/nodes", Some(node("node-c"))).await);
    assert_eq!(code, 403);
    assert!(
        message.contains(r#"node "node-a" is not allowed to modify node "node-c""#),
        "{message}"
    );

    // Its Lease in kube-node-lease: created, then renewed.
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let lease = |name: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
               "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": "2025-01-01T00:00:00.000000Z"}})
    };
    let mut own = create(&node_a, leases, lease("node-a")).await;
    own["spec"]["renewTime"] = json!("2025-01-01T00:00:10.000000Z");
    let renewed = send(&node_a, "PUT", &format!("{leases}/node-a"), Some(own))
        .await
        .unwrap();
    assert_eq!(renewed["spec"]["renewTime"], "2025-01-01T00:00:10.000000Z");
    send(
        &node_a,
        "PATCH",
        &format!("{leases}/node-a"),
        Some(json!({"spec": {"renewTime": "2025-01-01T00:00:20.000000Z"}})),
    )
    .await
    .unwrap();
    // Not another node's: its creation is refused by NodeRestriction, the
    // rest by the authorizer.
    let (code, message) = refused(send(&node_a, "POST", leases, Some(lease("node-b"))).await);
    assert_eq!(code, 403);
    assert!(
        message.ends_with("can only access node lease with the same name as the requesting node"),
        "{message}"
    );
    create(admin, leases, lease("node-b")).await;
    let (code, message) = refused(get(&node_a, &format!("{leases}/node-b")).await);
    assert_eq!(code, 403);
    assert_eq!(
        message,
        r#"leases.coordination.k8s.io "node-b" is forbidden: User "system:node:node-a" cannot get resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease": can only access node lease with the same name as the requesting node"#
    );
    let (code, _) = refused(
        send(
            &node_a,
            "PATCH",
            &format!("{leases}/node-b"),
            Some(json!({"spec": {"holderIdentity": "node-a"}})),
        )
        .await,
    );
    assert_eq!(code, 403);
    // Nor leases elsewhere.
    let (code, message) = refused(
        send(
            &node_a,
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/default/leases",
            Some(lease("node-a")),
        )
        .await,
    );
    assert_eq!(code, 403);
    assert!(
        message.ends_with(r#"can only access leases in the "kube-node-lease" system namespace"#),
        "{message}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_requests_tokens_for_the_service_accounts_of_its_pods_only() {
    let c = Cluster::start().await;
    let admin = &c.admin;
    for sa in ["robot", "other"] {
        create(
            admin,
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}),
        )
        .await;
    }
    let running = pod(
        admin,
        "worker",
        Some("node-a"),
        json!({"serviceAccountName": "robot"}),
    )
    .await;
    let node_a = c.kubelet("node-a").await;
    let token_request = |sa: &str| {
        (
            format!("/api/v1/namespaces/default/serviceaccounts/{sa}/token"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600,
                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "worker", "uid": running["metadata"]["uid"]}}}),
        )
    };
    let (path, body) = token_request("robot");
    within(
        Duration::from_secs(5),
        "node-a may request a token",
        || async {
            review(
                admin,
                "system:node:node-a",
                &[NODES],
                json!({"verb": "create", "resource": "serviceaccounts", "subresource": "token",
                   "namespace": "default", "name": "robot"}),
            )
            .await
            .0
        },
    )
    .await;
    let token = send(&node_a, "POST", &path, Some(body)).await.unwrap();
    assert!(
        token["status"]["token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "{token}"
    );

    // No token for an account none of its pods runs as.
    let (path, body) = token_request("other");
    let (code, message) = refused(send(&node_a, "POST", &path, Some(body)).await);
    assert_eq!(code, 403);
    assert!(message.ends_with(UNRELATED_A), "{message}");
    // The account itself is not the node's to read.
    let (code, message) =
        refused(get(&node_a, "/api/v1/namespaces/default/serviceaccounts/robot").await);
    assert_eq!(code, 403);
    assert!(
        message.ends_with("can only create tokens for individual service accounts"),
        "{message}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_leads_a_node_to_its_volume_and_the_volumes_secrets() {
    let c = Cluster::start().await;
    let admin = &c.admin;
    secret(admin, "csi-publish").await;
    secret(admin, "csi-other").await;
    create(
        admin,
        "/api/v1/namespaces/default/persistentvolumeclaims",
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv-data"}}),
    )
    .await;
    let pv = |name: &str, claim: &str, secret: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                        "claimRef": {"namespace": "default", "name": claim},
                        "csi": {"driver": "example.csi", "volumeHandle": name,
                                "nodePublishSecretRef": {"namespace": "default", "name": secret}}}})
    };
    create(
        admin,
        "/api/v1/persistentvolumes",
        pv("pv-data", "data", "csi-publish"),
    )
    .await;
    create(
        admin,
        "/api/v1/persistentvolumes",
        pv("pv-other", "other", "csi-other"),
    )
    .await;
    pod(
        admin,
        "db",
        Some("node-a"),
        json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}),
    )
    .await;
    let node_a = c.kubelet("node-a").await;
    let node_b = c.kubelet("node-b").await;

    within(Duration::from_secs(5), "node-a reads its claim", || async {
        get(
            &node_a,
            "/api/v1/namespaces/default/persistentvolumeclaims/data",
        )
        .await
        .is_ok()
    })
    .await;
    get(&node_a, "/api/v1/persistentvolumes/pv-data")
        .await
        .unwrap();
    get(&node_a, "/api/v1/namespaces/default/secrets/csi-publish")
        .await
        .unwrap();
    // It reports the claim's status.
    send(
        &node_a,
        "PATCH",
        "/api/v1/namespaces/default/persistentvolumeclaims/data/status",
        Some(json!({"status": {"conditions": []}})),
    )
    .await
    .unwrap();

    for (client, path) in [
        (&node_a, "/api/v1/persistentvolumes/pv-other"),
        (&node_a, "/api/v1/namespaces/default/secrets/csi-other"),
        (&node_b, "/api/v1/persistentvolumes/pv-data"),
        (
            &node_b,
            "/api/v1/namespaces/default/persistentvolumeclaims/data",
        ),
        (&node_b, "/api/v1/namespaces/default/secrets/csi-publish"),
    ] {
        assert_eq!(refused(get(client, path).await).0, 403, "{path}");
    }
    // Volumes are read one at a time.
    let (code, message) = refused(get(&node_a, "/api/v1/persistentvolumes").await);
    assert_eq!(code, 403);
    assert!(
        message.ends_with("can only get individual resources of this type"),
        "{message}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelets_keep_what_rbac_and_the_node_rules_give_them() {
    let c = Cluster::start().await;
    let admin = &c.admin;
    // As upstream, nodes are not bound to system:node.
    let binding = get(
        admin,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:node",
    )
    .await
    .unwrap();
    assert!(binding.get("subjects").is_none(), "{binding}");
    assert_eq!(binding["roleRef"]["name"], "system:node");

    let groups = [NODES, "system:authenticated"];
    let ask = |verb: &str, group: &str, resource: &str, sub: &str, namespace: &str, name: &str| {
        json!({"verb": verb, "group": group, "resource": resource, "subresource": sub,
               "namespace": namespace, "name": name})
    };
    for (attrs, allowed) in [
        // The node rules.
        (ask("list", "", "pods", "", "", ""), true),
        (ask("watch", "", "services", "", "", ""), true),
        (ask("get", "", "nodes", "", "", "node-a"), true),
        (ask("create", "", "events", "", "default", ""), true),
        (ask("update", "", "pods", "status", "default", "p"), true),
        (ask("create", "", "pods", "eviction", "default", "p"), true),
        (ask("create", "", "pods", "", "default", ""), true),
        (ask("delete", "", "pods", "", "default", "p"), true),
        (
            ask(
                "create",
                "certificates.k8s.io",
                "certificatesigningrequests",
                "",
                "",
                "",
            ),
            true,
        ),
        (
            ask(
                "create",
                "authentication.k8s.io",
                "tokenreviews",
                "",
                "",
                "",
            ),
            true,
        ),
        (
            ask("get", "storage.k8s.io", "csinodes", "", "", "node-a"),
            true,
        ),
        (
            ask("list", "node.k8s.io", "runtimeclasses", "", "", ""),
            true,
        ),
        // RBAC: certificate rotation, as kubeadm binds it; discovery.
        (
            ask(
                "create",
                "certificates.k8s.io",
                "certificatesigningrequests",
                "selfnodeclient",
                "",
                "",
            ),
            true,
        ),
        (
            ask(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "",
                "",
                "",
            ),
            true,
        ),
        // Neither.
        (ask("list", "", "secrets", "", "", ""), false),
        (
            ask("get", "storage.k8s.io", "csinodes", "", "", "node-b"),
            false,
        ),
        (ask("delete", "", "namespaces", "", "", "default"), false),
        (ask("update", "", "pods", "", "default", "p"), false),
        (ask("list", "apps", "deployments", "", "", ""), false),
    ] {
        let (got, reason) = review(admin, "system:node:node-a", &groups, attrs.clone()).await;
        assert_eq!(got, allowed, "{attrs}: {reason}");
    }

    // And the real requests.
    let node_a = c.kubelet("node-a").await;
    get(&node_a, "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a")
        .await
        .unwrap();
    get(&node_a, "/api/v1/services").await.unwrap();
    let (code, _) = refused(get(&node_a, "/apis/apps/v1/deployments").await);
    assert_eq!(code, 403);
    c.stop().await;
}

/// The kubelet client-certificate flow's API side: a CSR records who asked
/// for it, `approval` changes only its conditions, and the signer's status
/// write keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_records_its_requester_and_approval_is_its_own_subresource() {
    let c = Cluster::start().await;
    let kubelet = c.client_for("system:node:n1", &[NODES]).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "system:node:n1");
    dn.push(DnType::OrganizationName, NODES);
    params.distinguished_name = dn;
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let request = base64::engine::general_purpose::STANDARD.encode(pem);
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    let csr = create(
        &kubelet,
        path,
        json!({
            "metadata": {"name": "node-csr-n1"},
            "spec": {
                "request": request,
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["digital signature", "client auth"],
                // Whatever the client claims, the server records who it is.
                "username": "someone-else",
                "groups": ["system:masters"],
            },
        }),
    )
    .await;
    assert_eq!(csr["spec"]["username"], "system:node:n1");
    assert_eq!(
        csr["spec"]["groups"],
        json!([NODES, "system:authenticated"])
    );

    // kubectl certificate approve: an update of the approval subresource.
    let mut approved = csr.clone();
    approved["status"] = json!({"conditions": [{
        "type": "Approved", "status": "True", "reason": "KubectlApprove",
        "message": "approved by the test",
    }]});
    approved["spec"]["usages"] = json!(["server auth"]);
    let approved = send(
        &c.admin,
        "PUT",
        &format!("{path}/node-csr-n1/approval"),
        Some(approved),
    )
    .await
    .unwrap();
    assert_eq!(approved["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(
        approved["spec"]["usages"],
        json!(["digital signature", "client auth"]),
        "the approval subresource leaves the spec alone"
    );

    // The signer writes the certificate through status; the approval stays.
    let mut signed = approved.clone();
    signed["status"] = json!({"certificate": "LS0tLQ=="});
    let signed = send(
        &c.admin,
        "PUT",
        &format!("{path}/node-csr-n1/status"),
        Some(signed),
    )
    .await
    .unwrap();
    assert_eq!(signed["status"]["certificate"], "LS0tLQ==");
    assert_eq!(signed["status"]["conditions"][0]["type"], "Approved");
    let read = get(&c.admin, &format!("{path}/node-csr-n1/approval"))
        .await
        .unwrap();
    assert_eq!(read["status"]["conditions"][0]["type"], "Approved");
    c.stop().await;
}
