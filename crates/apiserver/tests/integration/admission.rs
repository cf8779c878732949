//! The admission chain on a real server in-process, driven by kube-rs:
//! ServiceAccount, LimitRanger, Priority, ResourceQuota (including its
//! atomicity under concurrent creates), PodSecurity, the node and storage
//! plugins, and NodeRestriction with a kubelet's identity.

use std::time::Duration;

use base64::Engine;
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ResourceQuota, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Error};
use serde_json::{Value, json};

/// A server on a free port and its admin client.
struct Cluster {
    client: Client,
    server: Option<skiff_apiserver::Running>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        Self::start_with(skiff_apiserver::AuthnConfig::default()).await
    }

    async fn start_with(authn: skiff_apiserver::AuthnConfig) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let config = skiff_apiserver::Config {
            data_dir: dir.path().to_owned(),
            secure_port: 0,
            bind_address: "127.0.0.1".parse().unwrap(),
            authn,
            ..Default::default()
        };
        let server = skiff_apiserver::start(config)
            .await
            .expect("the server starts");
        let kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        Cluster {
            client: Client::try_from(config).unwrap(),
            server: Some(server),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// A client that authenticates with a bearer token.
    async fn client_with_token(&self, token: &str) -> Client {
        let running = self.server.as_ref().unwrap();
        let ca = base64::engine::general_purpose::STANDARD.encode(&running.ca_pem);
        let yaml = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: skiff\n  cluster:\n    server: https://{}\n    certificate-authority-data: {ca}\n\
             users:\n- name: u\n  user: {{token: {token:?}}}\n\
             contexts:\n- name: c\n  context:\n    cluster: skiff\n    user: u\n\
             current-context: c\n",
            running.addr
        );
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::from_yaml(&yaml).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        Client::try_from(config).unwrap()
    }

    /// Creates a namespace with these labels.
    async fn namespace(&self, name: &str, labels: Value) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }

    /// POSTs `obj` to `path` as the admin; the created object.
    async fn post(&self, path: &str, obj: Value) -> Result<Value, Error> {
        let request = http::Request::post(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&obj).unwrap())
            .unwrap();
        self.client.request(request).await
    }

    async fn get(&self, path: &str) -> Value {
        let request = http::Request::get(path).body(Vec::new()).unwrap();
        self.client.request(request).await.unwrap()
    }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
    }))
    .unwrap()
}

fn status(e: &Error) -> (u16, String, String) {
    match e {
        Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn pods_run_as_the_default_service_account_with_a_projected_token() {
    let c = Cluster::start().await;
    c.namespace("team", json!({})).await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "team");
    let created = pods
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();
    // As upstream, what admission adds is nobody's in managedFields.
    let managed = serde_json::to_string(&created.metadata.managed_fields).unwrap();
    assert!(
        managed.contains("f:containers") && !managed.contains("f:volumes"),
        "{managed}"
    );
    assert!(!managed.contains("f:serviceAccountName") && !managed.contains("f:tolerations"));
    let spec = created.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volume = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name.starts_with("kube-api-access-"))
        .expect("a token volume");
    assert_eq!(volume.name.len(), "kube-api-access-".len() + 5);
    let sources = volume.projected.unwrap().sources.unwrap();
    let token = sources[0].service_account_token.as_ref().unwrap();
    assert_eq!(token.path, "token");
    assert_eq!(token.expiration_seconds, Some(3607));
    assert_eq!(
        sources[1].config_map.as_ref().unwrap().name,
        "kube-root-ca.crt"
    );
    let downward = sources[2].downward_api.as_ref().unwrap();
    assert_eq!(
        downward.items.as_ref().unwrap()[0]
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.namespace"
    );
    let mount = &spec.containers[0].volume_mounts.as_ref().unwrap()[0];
    assert_eq!(mount.name, volume.name);
    assert_eq!(
        mount.mount_path,
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert_eq!(mount.read_only, Some(true));
    // The defaults the other pod plugins add.
    let tolerations = spec.tolerations.unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready")
                && t.toleration_seconds == Some(300))
    );
    assert_eq!(spec.priority, Some(0));

    // The account was made on demand, as its controller would have.
    let accounts: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "team");
    accounts.get("default").await.unwrap();

    // Opting out mounts nothing; a missing account refuses the pod.
    let mut quiet = pod("quiet");
    quiet.spec.as_mut().unwrap().automount_service_account_token = Some(false);
    let quiet = pods.create(&PostParams::default(), &quiet).await.unwrap();
    assert!(quiet.spec.unwrap().volumes.is_none());
    let mut other = pod("other");
    other.spec.as_mut().unwrap().service_account_name = Some("robot".into());
    let e = pods
        .create(&PostParams::default(), &other)
        .await
        .unwrap_err();
    assert_eq!(
        status(&e),
        (
            403,
            "Forbidden".into(),
            "pods \"other\" is forbidden: error looking up service account team/robot: serviceaccount \"robot\" not found".into()
        )
    );
    c.stop().await;
}

#[tokio::test]
async fn a_limit_range_defaults_and_bounds_container_resources() {
    let c = Cluster::start().await;
    c.namespace("limited", json!({})).await;
    c.post(
        "/api/v1/namespaces/limited/limitranges",
        json!({"metadata": {"name": "lr"}, "spec": {"limits": [{
            "type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
            "max": {"cpu": "1"},
        }]}}),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "limited");
    let created = pods
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();
    let resources = created.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let requests = resources.requests.unwrap();
    let limits = resources.limits.unwrap();
    assert_eq!(requests["cpu"].0, "100m");
    assert_eq!(requests["memory"].0, "128Mi");
    assert_eq!(limits["cpu"].0, "500m");
    assert_eq!(limits["memory"].0, "256Mi");
    assert_eq!(
        created.metadata.annotations.unwrap()["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    );

    let mut big = pod("big");
    big.spec.as_mut().unwrap().containers[0].resources =
        Some(serde_json::from_value(json!({"limits": {"cpu": "2"}})).unwrap());
    let e = pods.create(&PostParams::default(), &big).await.unwrap_err();
    assert_eq!(
        status(&e),
        (
            403,
            "Forbidden".into(),
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
                .into()
        )
    );
    c.stop().await;
}

#[tokio::test]
async fn the_system_priority_classes_exist_and_cannot_be_deleted_or_changed() {
    let c = Cluster::start().await;
    let classes = "/apis/scheduling.k8s.io/v1/priorityclasses";
    for (name, value, description) in [
        (
            "system-node-critical",
            2_000_001_000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            "system-cluster-critical",
            2_000_000_000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ] {
        let pc = c.get(&format!("{classes}/{name}")).await;
        assert_eq!(pc["value"], value, "{pc}");
        assert_eq!(pc["description"], description);
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
        assert!(pc.get("globalDefault").is_none_or(|d| d == false));
    }

    // Not deleted: upstream's PriorityClass REST refuses it.
    let request = http::Request::delete(format!("{classes}/system-node-critical"))
        .body(Vec::new())
        .unwrap();
    let e = c.client.request::<Value>(request).await.unwrap_err();
    assert_eq!(
        status(&e),
        (
            403,
            "Forbidden".to_owned(),
            "priorityclasses.scheduling.k8s.io \"system-node-critical\" is forbidden: this is a system priority class and cannot be deleted".to_owned()
        )
    );

    // Not changed: value and preemptionPolicy are immutable.
    let request = http::Request::patch(format!("{classes}/system-cluster-critical"))
        .header("content-type", "application/merge-patch+json")
        .body(serde_json::to_vec(&json!({"value": 1, "preemptionPolicy": "Never"})).unwrap())
        .unwrap();
    let e = c.client.request::<Value>(request).await.unwrap_err();
    let (code, reason, message) = status(&e);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(
        message,
        "PriorityClass.scheduling.k8s.io \"system-cluster-critical\" is invalid: [value: Forbidden: may not be changed in an update., preemptionPolicy: Invalid value: \"Never\": field is immutable]"
    );
    assert_eq!(
        c.get(&format!("{classes}/system-cluster-critical")).await["value"],
        2_000_000_000
    );
    // Nor forged: system- names are reserved, user classes stay below them.
    let e = c
        .post(
            classes,
            json!({"metadata": {"name": "system-mine"}, "value": 10}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status(&e).2,
        "PriorityClass.scheduling.k8s.io \"system-mine\" is invalid: metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"
    );
    let e = c
        .post(
            classes,
            json!({"metadata": {"name": "mine"}, "value": 2_000_000_000}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status(&e).2,
        "PriorityClass.scheduling.k8s.io \"mine\" is invalid: value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
    );

    // Pods naming them get their priority from the objects.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "kube-system");
    for (class, priority) in [
        ("system-node-critical", 2_000_001_000),
        ("system-cluster-critical", 2_000_000_000),
    ] {
        let mut p = pod(class);
        p.spec.as_mut().unwrap().priority_class_name = Some(class.into());
        let created = pods.create(&PostParams::default(), &p).await.unwrap();
        let spec = created.spec.unwrap();
        assert_eq!(spec.priority, Some(priority));
        assert_eq!(
            spec.preemption_policy.as_deref(),
            Some("PreemptLowerPriority")
        );
    }
    c.stop().await;
}

#[tokio::test]
async fn a_priority_class_sets_the_priority_of_its_pods() {
    let c = Cluster::start().await;
    c.post(
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"}),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let with_class = |name: &str, class: &str| {
        let mut p = pod(name);
        p.spec.as_mut().unwrap().priority_class_name = Some(class.into());
        p
    };
    let high = pods
        .create(&PostParams::default(), &with_class("high", "high"))
        .await
        .unwrap();
    let spec = high.spec.unwrap();
    assert_eq!(spec.priority, Some(1000));
    assert_eq!(spec.preemption_policy.as_deref(), Some("Never"));
    let critical = pods
        .create(
            &PostParams::default(),
            &with_class("critical", "system-node-critical"),
        )
        .await
        .unwrap();
    assert_eq!(critical.spec.unwrap().priority, Some(2_000_001_000));
    let e = pods
        .create(&PostParams::default(), &with_class("nope", "missing"))
        .await
        .unwrap_err();
    assert_eq!(
        status(&e).2,
        "pods \"nope\" is forbidden: no PriorityClass with name missing was found"
    );

    // One global default, which pods without a class get.
    c.post(
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        json!({"metadata": {"name": "normal"}, "value": 10, "globalDefault": true}),
    )
    .await
    .unwrap();
    let e = c
        .post(
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            json!({"metadata": {"name": "second"}, "value": 20, "globalDefault": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status(&e).2,
        "priorityclasses.scheduling.k8s.io \"second\" is forbidden: PriorityClass normal is already marked as default. Only one default can exist"
    );
    // The watch cache may be a moment behind the class just created.
    let mut plain = None;
    for i in 0..50 {
        let p = pods
            .create(&PostParams::default(), &pod(&format!("plain-{i}")))
            .await
            .unwrap();
        if p.spec.as_ref().unwrap().priority == Some(10) {
            plain = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let plain = plain.expect("pods get the global default class");
    assert_eq!(
        plain.spec.unwrap().priority_class_name.as_deref(),
        Some("normal")
    );
    c.stop().await;
}

async fn quota(c: &Cluster, namespace: &str, hard: Value) {
    c.post(
        &format!("/api/v1/namespaces/{namespace}/resourcequotas"),
        json!({"metadata": {"name": "q"}, "spec": {"hard": hard}}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_quota_of_two_pods_refuses_the_third() {
    let c = Cluster::start().await;
    c.namespace("small", json!({})).await;
    quota(&c, "small", json!({"pods": "2"})).await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "small");
    pods.create(&PostParams::default(), &pod("p1"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("p2"))
        .await
        .unwrap();
    let e = pods
        .create(&PostParams::default(), &pod("p3"))
        .await
        .unwrap_err();
    assert_eq!(
        status(&e),
        (
            403,
            "Forbidden".into(),
            "pods \"p3\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2".into()
        )
    );
    let quotas: Api<ResourceQuota> = Api::namespaced(c.client.clone(), "small");
    let q = quotas.get("q").await.unwrap().status.unwrap();
    assert_eq!(q.used.unwrap()["pods"].0, "2");
    assert_eq!(q.hard.unwrap()["pods"].0, "2");

    // A deletion frees a place; a create that then fails (the name is
    // taken) gives back what it was charged.
    pods.delete("p1", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let used = quotas.get("q").await.unwrap().status.unwrap().used.unwrap();
    assert_eq!(used["pods"].0, "1");
    let e = pods
        .create(&PostParams::default(), &pod("p2"))
        .await
        .unwrap_err();
    assert_eq!(status(&e).0, 409);
    pods.create(&PostParams::default(), &pod("p3"))
        .await
        .unwrap();
    let e = pods
        .create(&PostParams::default(), &pod("p4"))
        .await
        .unwrap_err();
    assert_eq!(status(&e).0, 403);
    let used = quotas.get("q").await.unwrap().status.unwrap().used.unwrap();
    assert_eq!(used["pods"].0, "2", "nothing leaked");
    c.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_creates_against_five_pods_admit_exactly_five() {
    let c = Cluster::start().await;
    c.namespace("race", json!({})).await;
    quota(&c, "race", json!({"pods": "5", "count/configmaps": "3"})).await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "race");
    let results = join_all((0..20).map(|i| {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &pod(&format!("p{i}")))
                .await
        }
    }))
    .await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(admitted, 5);
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        let (code, _, message) = status(e);
        assert_eq!(code, 403);
        assert!(
            message.ends_with(
                "is forbidden: exceeded quota: q, requested: pods=1, used: pods=5, limited: pods=5"
            ),
            "{message}"
        );
    }
    let listed = pods.list(&Default::default()).await.unwrap();
    assert_eq!(listed.items.len(), 5);
    let quotas: Api<ResourceQuota> = Api::namespaced(c.client.clone(), "race");
    let used = quotas.get("q").await.unwrap().status.unwrap().used.unwrap();
    assert_eq!(used["pods"].0, "5");

    // Object counts are as atomic.
    let results = join_all((0..10).map(|i| {
        c.post(
            "/api/v1/namespaces/race/configmaps",
            json!({"metadata": {"name": format!("cm{i}")}}),
        )
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    c.stop().await;
}

#[tokio::test]
async fn restricted_pod_security_refuses_a_privileged_pod() {
    let c = Cluster::start().await;
    c.namespace(
        "secure",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "secure");
    let mut privileged = pod("root");
    privileged.spec.as_mut().unwrap().containers[0].security_context =
        Some(serde_json::from_value(json!({"privileged": true})).unwrap());
    let e = pods
        .create(&PostParams::default(), &privileged)
        .await
        .unwrap_err();
    assert_eq!(
        status(&e),
        (
            403,
            "Forbidden".into(),
            "pods \"root\" is forbidden: violates PodSecurity \"restricted:latest\": \
             privileged (container \"app\" must not set securityContext.privileged=true), \
             allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
                .into()
        )
    );
    let hardened: Pod = serde_json::from_value(json!({
        "metadata": {"name": "ok"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": "nginx", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &hardened)
        .await
        .unwrap();

    // An invalid level is refused on the namespace itself.
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let bad = serde_json::from_value(json!({"metadata": {"name": "typo", "labels": {"pod-security.kubernetes.io/enforce": "strict"}}})).unwrap();
    let e = namespaces
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err();
    assert_eq!(status(&e).0, 422);
    c.stop().await;
}

#[tokio::test]
async fn the_warn_mode_sends_a_warning_header() {
    let c = Cluster::start().await;
    c.namespace(
        "watched",
        json!({"pod-security.kubernetes.io/warn": "baseline"}),
    )
    .await;
    let body = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "host"},
        "spec": {"hostNetwork": true, "containers": [{"name": "app", "image": "nginx"}]},
    });
    let request = http::Request::post("/api/v1/namespaces/watched/pods")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap().into())
        .unwrap();
    let response = c.client.send(request).await.unwrap();
    assert_eq!(response.status(), 201);
    let warnings: Vec<String> = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        warnings,
        [
            "299 - \"would violate PodSecurity \\\"baseline:latest\\\": host namespaces (hostNetwork=true)\""
        ]
    );
    c.stop().await;
}

#[tokio::test]
async fn nodes_claims_and_volumes_get_their_defaults() {
    let c = Cluster::start().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node = nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    let taints = node.spec.unwrap().taints.unwrap();
    assert_eq!(taints[0].key, "node.kubernetes.io/not-ready");
    assert_eq!(taints[0].effect, "NoSchedule");

    c.post(
        "/apis/storage.k8s.io/v1/storageclasses",
        json!({"metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
               "provisioner": "example.com/local"}),
    )
    .await
    .unwrap();
    let claim = json!({"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let mut created = None;
    for _ in 0..50 {
        let mut claim = claim.clone();
        claim["metadata"]["name"] = json!(format!("data-{}", rand_suffix()));
        let c = c
            .post("/api/v1/namespaces/default/persistentvolumeclaims", claim)
            .await
            .unwrap();
        if c["spec"]["storageClassName"] == "local" {
            created = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let created = created.expect("claims get the default class");
    assert_eq!(
        created["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"])
    );
    let volume = c
        .post(
            "/api/v1/persistentvolumes",
            json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"},
                   "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/pv1"}}}),
        )
        .await
        .unwrap();
    assert_eq!(
        volume["metadata"]["finalizers"],
        json!(["kubernetes.io/pv-protection"])
    );
    // An unbound claim may not grow.
    let name = created["metadata"]["name"].as_str().unwrap();
    let request = http::Request::patch(format!(
        "/api/v1/namespaces/default/persistentvolumeclaims/{name}"
    ))
    .header("content-type", "application/merge-patch+json")
    .body(
        serde_json::to_vec(&json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}}))
            .unwrap(),
    )
    .unwrap();
    let e = c.client.request::<Value>(request).await.unwrap_err();
    assert_eq!(
        status(&e).2,
        format!(
            "persistentvolumeclaims \"{name}\" is forbidden: Only bound persistent volume claims can be expanded"
        )
    );
    c.stop().await;
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 0xffffff
    )
}

#[tokio::test]
async fn a_kubelet_may_touch_only_its_own_node_and_mirror_pods() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "kubelet-n1,system:node:n1,uid-n1,\"system:nodes\"\n",
    )
    .unwrap();
    let c = Cluster::start_with(skiff_apiserver::AuthnConfig {
        token_auth_file: Some(tokens),
        ..Default::default()
    })
    .await;
    // Let RBAC allow everything, so what refuses is NodeRestriction.
    c.post(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({"metadata": {"name": "nodes-admin"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]}),
    )
    .await
    .unwrap();
    let kubelet = c.client_with_token("kubelet-n1").await;
    let nodes: Api<Node> = Api::all(kubelet.clone());
    let node = |name: &str| -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
    };
    // RBAC decisions may take a moment to follow the new binding.
    let mut own = None;
    for _ in 0..50 {
        match nodes.create(&PostParams::default(), &node("n1")).await {
            Ok(n) => {
                own = Some(n);
                break;
            }
            Err(e) if status(&e).2.contains("cannot create resource") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let own = own.expect("the kubelet registers its node");
    let e = nodes
        .create(&PostParams::default(), &node("n2"))
        .await
        .unwrap_err();
    assert_eq!(
        status(&e),
        (
            403,
            "Forbidden".into(),
            "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\"".into()
        )
    );
    let pods: Api<Pod> = Api::namespaced(kubelet.clone(), "default");
    let e = pods
        .create(&PostParams::default(), &pod("plain"))
        .await
        .unwrap_err();
    assert_eq!(
        status(&e).2,
        "pods \"plain\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods"
    );
    let mirror: Pod = serde_json::from_value(json!({
        "metadata": {"name": "static-web-n1", "annotations": {"kubernetes.io/config.mirror": "abc"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": own.metadata.uid.unwrap(), "controller": true}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "nginx"}]},
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &mirror).await.unwrap();
    let spec = created.spec.unwrap();
    assert!(
        spec.service_account_name.is_none(),
        "mirror pods get no account"
    );
    assert!(spec.volumes.is_none());

    // Pods bound elsewhere are not the kubelet's to delete.
    let admin_pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let mut elsewhere = pod("elsewhere");
    elsewhere.spec.as_mut().unwrap().node_name = Some("n2".into());
    admin_pods
        .create(&PostParams::default(), &elsewhere)
        .await
        .unwrap();
    let e = pods
        .delete("elsewhere", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(
        status(&e).2,
        "pods \"elsewhere\" is forbidden: node \"n1\" can only delete pods with spec.nodeName set to itself"
    );
    pods.delete("static-web-n1", &DeleteParams::default())
        .await
        .unwrap();
    c.stop().await;
    drop(dir);
}

#[tokio::test]
async fn the_quota_status_is_counted_when_a_quota_is_created() {
    let c = Cluster::start().await;
    c.namespace("late", json!({})).await;
    for i in 0..3 {
        c.post(
            "/api/v1/namespaces/late/configmaps",
            json!({"metadata": {"name": format!("cm{i}")}}),
        )
        .await
        .unwrap();
    }
    quota(&c, "late", json!({"configmaps": "4", "services": "2"})).await;
    let q = c.get("/api/v1/namespaces/late/resourcequotas/q").await;
    assert_eq!(
        q["status"]["used"],
        json!({"configmaps": "3", "services": "0"})
    );
    c.post(
        "/api/v1/namespaces/late/configmaps",
        json!({"metadata": {"name": "cm3"}}),
    )
    .await
    .unwrap();
    let e = c
        .post(
            "/api/v1/namespaces/late/configmaps",
            json!({"metadata": {"name": "cm4"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status(&e).2,
        "configmaps \"cm4\" is forbidden: exceeded quota: q, requested: configmaps=1, used: configmaps=4, limited: configmaps=4"
    );
    c.stop().await;
}

/// A webhook server on 127.0.0.1 with a certificate from its own CA: it
/// answers every AdmissionReview with `decide(request)` (the `response`
/// without its uid). Answers its base URL and the CA, base64.
async fn webhook_server(
    decide: impl Fn(&Value) -> Value + Send + Sync + 'static,
) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let decide = std::sync::Arc::new(decide);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, decide) = (acceptor.clone(), decide.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let decide = decide.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let review: Value = serde_json::from_slice(&body).unwrap();
                            let mut response = decide(&review["request"]);
                            response["uid"] = review["request"]["uid"].clone();
                            let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(
                                    serde_json::to_vec(&answer).unwrap(),
                                )),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (
        format!("https://{addr}"),
        base64::engine::general_purpose::STANDARD.encode(ca_cert.pem()),
    )
}

fn webhook(name: &str, url: &str, ca: &str, failure: &str) -> Value {
    json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "failurePolicy": failure,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "objectSelector": {"matchLabels": {"webhooks": "on"}},
    })
}

fn labeled_configmap(name: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"webhooks": "on"}}, "data": {"k": "v"}})
}

#[tokio::test]
async fn admission_webhooks_mutate_and_refuse_over_https() {
    let c = Cluster::start().await;
    let (stamper, stamper_ca) = webhook_server(|_| {
        let patch = json!([{"op": "add", "path": "/metadata/annotations", "value": {"seen": "yes"}}]);
        json!({
            "allowed": true,
            "patchType": "JSONPatch",
            "patch": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&patch).unwrap()),
            "warnings": ["stamped by the test webhook"],
        })
    })
    .await;
    let (url, ca) = webhook_server(|request| {
        let name = request["name"].as_str().unwrap_or("");
        assert_eq!(request["object"]["metadata"]["annotations"]["seen"], "yes", "validation sees the mutated object");
        if name.starts_with("bad") {
            json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "no bad configmaps"}})
        } else {
            json!({"allowed": true})
        }
    })
    .await;
    c.post(
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        json!({"metadata": {"name": "stamp"}, "webhooks": [webhook("stamp.example.com", &format!("{stamper}/mutate"), &stamper_ca, "Fail")]}),
    )
    .await
    .unwrap();
    c.post(
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        json!({"metadata": {"name": "policy"}, "webhooks": [webhook("policy.example.com", &format!("{url}/validate"), &ca, "Fail")]}),
    )
    .await
    .unwrap();

    // The configurations reach the watch cache in a moment.
    let mut stamped = None;
    for i in 0..100 {
        let cm = c
            .post(
                "/api/v1/namespaces/default/configmaps",
                labeled_configmap(&format!("good-{i}")),
            )
            .await
            .unwrap();
        if cm["metadata"]["annotations"]["seen"] == "yes" {
            stamped = Some(cm);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stamped.is_some(), "the mutating webhook stamps configmaps");
    let mut refused = None;
    for i in 0..100 {
        match c
            .post(
                "/api/v1/namespaces/default/configmaps",
                labeled_configmap(&format!("bad-{i}")),
            )
            .await
        {
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                refused = Some(status(&e));
                break;
            }
        }
    }
    let (code, reason, message) = refused.expect("the validating webhook refuses bad configmaps");
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "admission webhook \"policy.example.com\" denied the request: no bad configmaps"
    );
    // Objects the selectors leave out are not sent.
    c.post(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "bad-unlabeled"}}),
    )
    .await
    .unwrap();

    // A webhook nobody answers fails the write, unless it may be ignored.
    let dead = "https://127.0.0.1:1/validate";
    let mut required = webhook("required.example.com", dead, &ca, "Fail");
    required["objectSelector"] = json!({"matchLabels": {"dead": "required"}});
    let ignored = webhook("ignored.example.com", dead, &ca, "Ignore");
    c.post(
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        json!({"metadata": {"name": "dead"}, "webhooks": [ignored, required]}),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.post(
        "/api/v1/namespaces/default/configmaps",
        labeled_configmap("ignored"),
    )
    .await
    .unwrap();
    let mut cm = labeled_configmap("required");
    cm["metadata"]["labels"]["dead"] = json!("required");
    let e = c
        .post("/api/v1/namespaces/default/configmaps", cm)
        .await
        .unwrap_err();
    let (code, _, message) = status(&e);
    assert_eq!(code, 500);
    assert!(
        message.starts_with("Internal error occurred: failed calling webhook \"required.example.com\": failed to call webhook: Post \"https://127.0.0.1:1/validate?timeout=10s\""),
        "{message}"
    );
    c.stop().await;
}
