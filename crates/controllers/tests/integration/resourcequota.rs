//! The resource quota controller against a real API server: usage that
//! drifted from the namespace's objects is counted again.

use std::collections::BTreeMap;

use crate::common::{Cluster, Manager, SOON, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota};
use kube::api::{Api, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drifted_quota_usage_is_recounted_from_the_namespace() {
    let cluster = Cluster::start().await;
    let manager = Manager::start(cluster.config(&["resourcequota"]));
    cluster.namespace("t").await;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "t");
    for name in ["a", "b"] {
        let cm = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "t");
    let pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m"}}},
    ]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let quotas: Api<ResourceQuota> = Api::namespaced(cluster.client.clone(), "t");
    let quota = serde_json::from_value(json!({"metadata": {"name": "q"}, "spec": {"hard": {
        "configmaps": "10", "pods": "10", "requests.cpu": "2", "limits.cpu": "4", "services": "5",
    }}}))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    let want: BTreeMap<String, String> = [
        ("configmaps", "2"),
        ("pods", "1"),
        ("requests.cpu", "250m"),
        ("limits.cpu", "500m"),
        ("services", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let used = |q: &ResourceQuota| -> Option<BTreeMap<String, String>> {
        let s = q.status.as_ref()?;
        s.hard.as_ref()?;
        Some(
            s.used
                .as_ref()?
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
        )
    };
    eventually("the quota's usage counted", SOON, || async {
        (used(&quotas.get("q").await.unwrap())? == want).then_some(())
    })
    .await;

    // Usage drifts (here, written wrong by hand): it is counted again.
    let mut q = quotas.get("q").await.unwrap();
    let status = q.status.as_mut().unwrap();
    status.used.as_mut().unwrap().insert(
        "configmaps".into(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("7".into()),
    );
    quotas
        .replace_status("q", &PostParams::default(), &q)
        .await
        .unwrap();
    eventually("the drifted usage recounted", SOON, || async {
        (used(&quotas.get("q").await.unwrap())? == want).then_some(())
    })
    .await;

    manager.stop().await;
    cluster.stop().await;
}
