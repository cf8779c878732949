//! The API server driven by a real client (kube-rs), in-process, on both
//! storage backends. The etcd run starts a real etcd per test.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Error};
use serde_json::json;

use crate::common::{Cluster, embedded, etcd};

fn status_code(e: &Error) -> u16 {
    match e {
        Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn api_reason(e: &Error) -> String {
    match e {
        Error::Api(status) => status.reason.clone(),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn configmap(name: &str, data: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "data": {"k": data},
    }))
    .unwrap()
}

mod suite {
    use super::*;

    pub async fn the_bootstrap_namespaces_and_kubernetes_service_exist(c: &Cluster) {
        let namespaces: Api<Namespace> = Api::all(c.client.clone());
        let names: Vec<String> = namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(
                names.contains(&ns.to_owned()),
                "{ns} missing from {names:?}"
            );
        }
        let services: Api<Service> = Api::namespaced(c.client.clone(), "default");
        let kubernetes = services.get("kubernetes").await.unwrap();
        assert_eq!(
            kubernetes.spec.unwrap().cluster_ip.as_deref(),
            Some("10.0.0.1")
        );
    }

    pub async fn a_configmap_lives_through_create_update_conflict_and_delete(c: &Cluster) {
        let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
        let created = cms
            .create(&PostParams::default(), &configmap("web", "1"))
            .await
            .unwrap();
        let meta = &created.metadata;
        assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
        let rv1 = meta.resource_version.clone().unwrap();

        let again = cms
            .create(&PostParams::default(), &configmap("web", "1"))
            .await
            .unwrap_err();
        assert_eq!(
            (status_code(&again), api_reason(&again).as_str()),
            (409, "AlreadyExists")
        );

        let mut changed = created.clone();
        changed.data = Some([("k".to_owned(), "2".to_owned())].into());
        let updated = cms
            .replace("web", &PostParams::default(), &changed)
            .await
            .unwrap();
        assert_ne!(
            updated.metadata.resource_version.as_deref(),
            Some(rv1.as_str())
        );

        // The same stale resourceVersion again: 409 Conflict, nothing changes.
        let mut stale = changed.clone();
        stale.data = Some([("k".to_owned(), "3".to_owned())].into());
        let conflict = cms
            .replace("web", &PostParams::default(), &stale)
            .await
            .unwrap_err();
        assert_eq!(
            (status_code(&conflict), api_reason(&conflict).as_str()),
            (409, "Conflict")
        );
        assert_eq!(cms.get("web").await.unwrap().data.unwrap()["k"], "2");

        // A delete whose preconditions do not hold: 409, nothing deleted.
        for preconditions in [
            kube::api::Preconditions {
                uid: Some("not-its-uid".into()),
                resource_version: None,
            },
            kube::api::Preconditions {
                uid: None,
                resource_version: Some(rv1.clone()),
            },
        ] {
            let params = DeleteParams {
                preconditions: Some(preconditions),
                ..DeleteParams::default()
            };
            let refused = cms.delete("web", &params).await.unwrap_err();
            assert_eq!(status_code(&refused), 409);
            let Error::Api(status) = &refused else {
                unreachable!()
            };
            assert!(
                status.message.contains("Precondition failed"),
                "{}",
                status.message
            );
        }
        assert!(cms.get("web").await.is_ok());

        cms.delete("web", &DeleteParams::default()).await.unwrap();
        let gone = cms.get("web").await.unwrap_err();
        assert_eq!(
            (status_code(&gone), api_reason(&gone).as_str()),
            (404, "NotFound")
        );
    }

    pub async fn an_invalid_pod_gets_422_naming_the_field(c: &Cluster) {
        let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "bad"},
            "spec": {"containers": [{"name": "web"}]},
        }))
        .unwrap();
        let err = pods.create(&PostParams::default(), &pod).await.unwrap_err();
        assert_eq!(
            (status_code(&err), api_reason(&err).as_str()),
            (422, "Invalid")
        );
        let Error::Api(status) = &err else {
            unreachable!()
        };
        assert!(
            status
                .message
                .contains("spec.containers[0].image: Required value"),
            "{}",
            status.message
        );
    }

    pub async fn lists_page_with_limit_and_continue(c: &Cluster) {
        let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
        for i in 0..7 {
            cms.create(&PostParams::default(), &configmap(&format!("cm-{i}"), "x"))
                .await
                .unwrap();
        }
        let mut names = Vec::new();
        let mut params = ListParams::default().limit(3);
        loop {
            let page = cms.list(&params).await.unwrap();
            assert!(page.items.len() <= 3);
            names.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => {
                    params = ListParams::default().limit(3).continue_token(&token)
                }
                _ => break,
            }
        }
        let expected: Vec<String> = (0..7).map(|i| format!("cm-{i}")).collect();
        assert_eq!(names, expected);
    }

    pub async fn label_and_field_selectors_filter_lists(c: &Cluster) {
        let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
        cms.create(&PostParams::default(), &configmap("a", "x"))
            .await
            .unwrap();
        let mut other = configmap("b", "x");
        other.metadata.labels = Some([("app".to_owned(), "db".to_owned())].into());
        cms.create(&PostParams::default(), &other).await.unwrap();
        let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
            list.items
                .into_iter()
                .filter_map(|c| c.metadata.name)
                .collect()
        };
        assert_eq!(
            names(
                cms.list(&ListParams::default().labels("app=db"))
                    .await
                    .unwrap()
            ),
            ["b"]
        );
        assert_eq!(
            names(
                cms.list(&ListParams::default().labels("app in (web,x)"))
                    .await
                    .unwrap()
            ),
            ["a"]
        );
        assert_eq!(
            names(
                cms.list(&ListParams::default().fields("metadata.name=a"))
                    .await
                    .unwrap()
            ),
            ["a"]
        );
        let bad = cms
            .list(&ListParams::default().fields("spec.nope=1"))
            .await
            .unwrap_err();
        assert_eq!(status_code(&bad), 400);
    }

    pub async fn a_watch_sees_creations_updates_and_deletions(c: &Cluster) {
        let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
        let list = cms.list(&ListParams::default()).await.unwrap();
        let rv = list.metadata.resource_version.unwrap();
        let mut watch = cms
            .watch(&WatchParams::default(), &rv)
            .await
            .unwrap()
            .boxed();
        cms.create(&PostParams::default(), &configmap("w", "1"))
            .await
            .unwrap();
        cms.patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "2"}})),
        )
        .await
        .unwrap();
        cms.delete("w", &DeleteParams::default()).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let event = tokio::time::timeout(Duration::from_secs(10), watch.try_next())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the watch goes on");
            seen.push(match event {
                WatchEvent::Added(cm) => ("ADDED", cm.data.unwrap()["k"].clone()),
                WatchEvent::Modified(cm) => ("MODIFIED", cm.data.unwrap()["k"].clone()),
                WatchEvent::Deleted(cm) => ("DELETED", cm.data.unwrap()["k"].clone()),
                other => panic!("unexpected {other:?}"),
            });
        }
        assert_eq!(
            seen,
            [
                ("ADDED", "1".into()),
                ("MODIFIED", "2".into()),
                ("DELETED", "2".into())
            ]
        );
    }

    pub async fn a_watch_from_a_forgotten_revision_is_gone(c: &Cluster) {
        let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
        let first = cms
            .create(&PostParams::default(), &configmap("busy", "0"))
            .await
            .unwrap();
        let first_rv = first.metadata.resource_version.unwrap();
        // More changes than the watch cache remembers for one resource.
        for i in 1..=1100 {
            cms.patch(
                "busy",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"k": i.to_string()}})),
            )
            .await
            .unwrap();
        }
        let mut watch = cms
            .watch(&WatchParams::default().timeout(10), &first_rv)
            .await
            .unwrap()
            .boxed();
        match watch.try_next().await {
            Ok(Some(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
            Err(e) => assert_eq!(status_code(&e), 410),
            other => panic!("expected 410 Gone, got {other:?}"),
        }
    }

    pub async fn patches_of_every_type_apply(c: &Cluster) {
        let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "testhost:1"}, {"name": "side", "image": "side:1"}]},
                },
            },
        }))
        .unwrap();
        let created = deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        let pp = PatchParams::default();
        let merged = deployments
            .patch(
                "web",
                &pp,
                &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
            )
            .await
            .unwrap();
        assert_eq!(merged.metadata.labels.unwrap()["tier"], "front");
        assert_eq!(
            merged.metadata.generation,
            Some(1),
            "a label change is not a spec change"
        );
        let strategic = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "testhost:2"}]}}}});
        let patched = deployments
            .patch("web", &pp, &Patch::Strategic(strategic))
            .await
            .unwrap();
        let containers = patched.spec.unwrap().template.spec.unwrap().containers;
        let images: Vec<_> = containers
            .iter()
            .map(|c| (c.name.as_str(), c.image.as_deref().unwrap()))
            .collect();
        assert_eq!(
            images,
            [("web", "testhost:2"), ("side", "side:1")],
            "merged by container name"
        );
        assert_eq!(patched.metadata.generation, Some(2));
        let ops = serde_json::from_value(
            json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
        )
        .unwrap();
        let jp = deployments
            .patch("web", &pp, &Patch::<()>::Json(ops))
            .await
            .unwrap();
        assert_eq!(jp.spec.unwrap().replicas, Some(3));
    }

    pub async fn deployments_scale_through_the_scale_subresource(c: &Cluster) {
        let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "s"},
            "spec": {
                "selector": {"matchLabels": {"app": "s"}},
                "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            },
        }))
        .unwrap();
        let created = deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        assert_eq!(
            created.spec.as_ref().unwrap().replicas,
            Some(1),
            "defaulted"
        );
        let scale = deployments.get_scale("s").await.unwrap();
        assert_eq!(scale.spec.unwrap().replicas, Some(1));
        assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=s"));
        deployments
            .patch_scale(
                "s",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 4}})),
            )
            .await
            .unwrap();
        assert_eq!(
            deployments.get("s").await.unwrap().spec.unwrap().replicas,
            Some(4)
        );
    }

    pub async fn a_running_pod_is_deleted_gracefully_and_a_pending_one_at_once(c: &Cluster) {
        let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
        let pod = |name: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            }))
            .unwrap()
        };
        pods.create(&PostParams::default(), &pod("pending"))
            .await
            .unwrap();
        pods.delete("pending", &DeleteParams::default())
            .await
            .unwrap();
        assert_eq!(status_code(&pods.get("pending").await.unwrap_err()), 404);

        pods.create(&PostParams::default(), &pod("bound"))
            .await
            .unwrap();
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bound"}, "target": {"kind": "Node", "name": "n1"}});
        let request = http::Request::post("/api/v1/namespaces/default/pods/bound/binding")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&binding).unwrap())
            .unwrap();
        let _: serde_json::Value = c.client.request(request).await.unwrap();
        let bound = pods.get("bound").await.unwrap();
        assert_eq!(
            bound.spec.as_ref().unwrap().node_name.as_deref(),
            Some("n1")
        );
        pods.delete("bound", &DeleteParams::default())
            .await
            .unwrap();
        let deleting = pods.get("bound").await.unwrap();
        assert!(deleting.metadata.deletion_timestamp.is_some());
        assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(30));
        // The kubelet's confirmation: a deletion with grace 0.
        pods.delete("bound", &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
        assert_eq!(status_code(&pods.get("bound").await.unwrap_err()), 404);
    }
}

macro_rules! suite {
    ($backend:ident: $($name:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let cluster = super::$backend().await;
                    suite::$name(&cluster).await;
                    cluster.stop().await;
                }
            )*
        }
    };
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        suite!(embedded: $($name),*);
        suite!(etcd: $($name),*);
    };
}

both!(
    the_bootstrap_namespaces_and_kubernetes_service_exist,
    a_configmap_lives_through_create_update_conflict_and_delete,
    an_invalid_pod_gets_422_naming_the_field,
    lists_page_with_limit_and_continue,
    label_and_field_selectors_filter_lists,
    a_watch_sees_creations_updates_and_deletions,
    a_watch_from_a_forgotten_revision_is_gone,
    patches_of_every_type_apply,
    deployments_scale_through_the_scale_subresource,
    a_running_pod_is_deleted_gracefully_and_a_pending_one_at_once,
);

#[tokio::test]
async fn an_anonymous_client_is_unauthorized_except_for_health() {
    let dir = tempfile::tempdir().unwrap();
    let server = skiff_apiserver::start(skiff_apiserver::Config {
        data_dir: dir.path().to_owned(),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
    for user in &mut kubeconfig.auth_infos {
        if let Some(auth) = user.auth_info.as_mut() {
            auth.client_certificate_data = None;
            auth.client_key_data = None;
        }
    }
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    assert_eq!(
        status_code(&cms.list(&ListParams::default()).await.unwrap_err()),
        401
    );
    server.stop().await;
}

#[tokio::test]
async fn impersonation_runs_a_request_as_the_impersonated_user() {
    let cluster = embedded().await;
    let as_user = |user: &str| {
        http::Request::get("/api/v1/namespaces/default/configmaps")
            .header("impersonate-user", user)
            .body(Vec::new())
            .unwrap()
    };
    // The admin (system:masters) may impersonate; nobody was granted anything.
    let refused = cluster
        .client
        .request::<serde_json::Value>(as_user("nobody"))
        .await
        .unwrap_err();
    assert_eq!(status_code(&refused), 403);
    let Error::Api(status) = &refused else {
        unreachable!()
    };
    assert!(
        status
            .message
            .contains("User \"nobody\" cannot list resource \"configmaps\""),
        "{}",
        status.message
    );
    // Groups without a user are refused.
    let request = http::Request::get("/api/v1/namespaces/default/configmaps")
        .header("impersonate-group", "system:masters")
        .body(Vec::new())
        .unwrap();
    let refused = cluster
        .client
        .request::<serde_json::Value>(request)
        .await
        .unwrap_err();
    assert_eq!(status_code(&refused), 400);
    cluster.stop().await;
}

#[tokio::test]
async fn events_are_deleted_once_they_outlive_the_event_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let server = skiff_apiserver::start(skiff_apiserver::Config {
        data_dir: dir.path().to_owned(),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        event_ttl: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let event = serde_json::from_value(json!({
        "metadata": {"name": "short-lived"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Testing",
        "message": "kept for --event-ttl",
        "type": "Normal",
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    // Kept while younger than the TTL...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(events.get_opt("short-lived").await.unwrap().is_some());
    // ...and gone within a sweep period after it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while events.get_opt("short-lived").await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the event outlived --event-ttl"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
}
