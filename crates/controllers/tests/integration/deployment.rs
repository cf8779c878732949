//! The Deployment controller (with the ReplicaSet controller) against a
//! real API server, pods run by a simulated node agent, and judged by the
//! real kubectl: `rollout status`, `rollout undo`, `rollout history`,
//! `scale`, `rollout pause/resume`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{
    AgentOptions, Cluster, Manager, NodeAgent, SOON, eventually, is_ready, live_pods,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

const CONTROLLERS: &[&str] = &["deployment-controller", "replicaset-controller"];

fn deployment(name: &str, replicas: i32, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1"}]},
            },
        },
    }))
    .unwrap()
}

fn rolling(surge: serde_json::Value, unavailable: serde_json::Value) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

async fn replica_sets(client: &Client, ns: &str) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    api.list(&Default::default()).await.unwrap().items
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<String> {
    rs.metadata.annotations.as_ref()?.get(key).cloned()
}

fn image_of(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

async fn rollout_status(c: &Cluster, ns: &str, name: &str) -> String {
    let (ok, out) = c
        .kubectl(&[
            "rollout",
            "status",
            "-n",
            ns,
            &format!("deployment/{name}"),
            "--timeout=60s",
        ])
        .await;
    assert!(ok, "kubectl rollout status failed: {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_of_three_becomes_available_and_kubectl_sees_it_rolled_out() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(CONTROLLERS));
    c.namespace("apps").await;
    let _agent = NodeAgent::start(&c.client, AgentOptions::default());
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "apps");
    api.create(
        &PostParams::default(),
        &deployment("web", 3, rolling(json!("25%"), json!("25%"))),
    )
    .await
    .unwrap();

    let out = rollout_status(&c, "apps", "web").await;
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );

    let d = api.get("web").await.unwrap();
    let s = d.status.clone().unwrap();
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.unavailable_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3), None)
    );
    assert_eq!(s.observed_generation, d.metadata.generation);
    let conditions: BTreeMap<String, (String, String)> = s
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, (c.status, c.reason.unwrap())))
        .collect();
    assert_eq!(
        conditions["Available"],
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    assert_eq!(
        conditions["Progressing"],
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "1");

    let rss = replica_sets(&c.client, "apps").await;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs.labels()["pod-template-hash"].clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/revision").as_deref(),
        Some("1")
    );
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("4")
    );
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Deployment", Some(true))
    );
    for pod in live_pods(&c.client, "apps", "app=web").await {
        assert!(
            pod.name_any().starts_with(&format!("web-{hash}-")),
            "{}",
            pod.name_any()
        );
        assert_eq!(pod.labels()["pod-template-hash"], hash);
    }

    // kubectl get shows it as upstream's printer columns do.
    let (ok, out) = c.kubectl(&["get", "deployment", "web", "-n", "apps"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("3/3") && out.contains("web"), "{out}");

    // Scaling down through the scale subresource.
    let (ok, out) = c
        .kubectl(&["scale", "-n", "apps", "deployment/web", "--replicas=1"])
        .await;
    assert!(ok, "{out}");
    eventually("one pod left", SOON, || async {
        (live_pods(&c.client, "apps", "app=web").await.len() == 1).then_some(())
    })
    .await;
    rollout_status(&c, "apps", "web").await;
    let rss = replica_sets(&c.client, "apps").await;
    assert_eq!(
        annotation(&rss[0], "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("1")
    );

    manager.stop().await;
    c.stop().await;
}

/// Watches the namespace's ReplicaSets and pods, recording the most
/// ReplicaSet replicas ever asked for at once and the fewest ready pods ever
/// serving once `armed`.
#[derive(Default)]
struct Bounds {
    rss: BTreeMap<String, i32>,
    most_replicas: i32,
    pods: BTreeMap<String, bool>,
    armed: bool,
    fewest_ready: Option<i32>,
}

fn watch_bounds(client: &Client, ns: &str) -> Arc<Mutex<Bounds>> {
    let bounds = Arc::new(Mutex::new(Bounds::default()));
    let b = bounds.clone();
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let mut events = watcher(rss, watcher::Config::default())
            .default_backoff()
            .touched_objects()
            .boxed();
        while let Ok(Some(rs)) = events.try_next().await {
            let mut b = b.lock().unwrap();
            let replicas = if rs.metadata.deletion_timestamp.is_some() {
                0
            } else {
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
            };
            b.rss.insert(rs.name_any(), replicas);
            let total = b.rss.values().sum();
            b.most_replicas = b.most_replicas.max(total);
        }
    });
    let b = bounds.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let mut events = watcher(pods, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Ok(Some(event)) = events.try_next().await {
            let mut b = b.lock().unwrap();
            match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let serving = p.metadata.deletion_timestamp.is_none() && is_ready(&p);
                    b.pods.insert(p.name_any(), serving);
                }
                watcher::Event::Delete(p) => {
                    b.pods.remove(&p.name_any());
                }
                _ => continue,
            }
            if b.armed {
                let ready = b.pods.values().filter(|r| **r).count() as i32;
                b.fewest_ready = Some(b.fewest_ready.map_or(ready, |f| f.min(ready)));
            }
        }
    });
    bounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_keeps_surge_and_unavailability_in_bounds_and_undo_goes_back() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(CONTROLLERS));
    c.namespace("roll").await;
    let _agent = NodeAgent::start(
        &c.client,
        AgentOptions {
            ready_after: Duration::from_millis(300),
            ..AgentOptions::default()
        },
    );
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "roll");
    api.create(
        &PostParams::default(),
        &deployment("web", 4, rolling(json!(1), json!(1))),
    )
    .await
    .unwrap();
    rollout_status(&c, "roll", "web").await;
    let bounds = watch_bounds(&c.client, "roll");
    eventually("the watches caught up", SOON, || async {
        let b = bounds.lock().unwrap();
        (b.pods.values().filter(|r| **r).count() == 4 && b.rss.values().sum::<i32>() == 4)
            .then_some(())
    })
    .await;
    bounds.lock().unwrap().armed = true;

    let (ok, out) = c
        .kubectl(&[
            "set",
            "image",
            "-n",
            "roll",
            "deployment/web",
            "app=nginx:2",
        ])
        .await;
    assert!(ok, "{out}");
    let out = rollout_status(&c, "roll", "web").await;
    assert!(out.contains("successfully rolled out"), "{out}");
    {
        let b = bounds.lock().unwrap();
        assert!(
            b.most_replicas <= 5,
            "maxSurge 1 over 4: saw {} replicas",
            b.most_replicas
        );
        let fewest = b.fewest_ready.expect("pod events during the rollout");
        assert!(
            fewest >= 3,
            "maxUnavailable 1 of 4: saw {fewest} ready pods"
        );
    }
    let rss = replica_sets(&c.client, "roll").await;
    assert_eq!(rss.len(), 2);
    let new = rss.iter().find(|rs| image_of(rs) == "nginx:2").unwrap();
    let old = rss.iter().find(|rs| image_of(rs) == "nginx:1").unwrap();
    assert_eq!(
        annotation(new, "deployment.kubernetes.io/revision").as_deref(),
        Some("2")
    );
    assert_eq!(new.spec.as_ref().unwrap().replicas, Some(4));
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));
    let pods = live_pods(&c.client, "roll", "app=web").await;
    assert_eq!(pods.len(), 4);
    assert!(
        pods.iter()
            .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("nginx:2"))
    );

    // `kubectl rollout undo`: back to revision 1's template, as revision 3.
    let (ok, out) = c
        .kubectl(&["rollout", "undo", "-n", "roll", "deployment/web"])
        .await;
    assert!(ok, "{out}");
    assert!(out.contains("rolled back"), "{out}");
    rollout_status(&c, "roll", "web").await;
    let rss = replica_sets(&c.client, "roll").await;
    assert_eq!(rss.len(), 2, "the old ReplicaSet is reused");
    let back = rss.iter().find(|rs| image_of(rs) == "nginx:1").unwrap();
    assert_eq!(
        annotation(back, "deployment.kubernetes.io/revision").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(back, "deployment.kubernetes.io/revision-history").as_deref(),
        Some("1")
    );
    assert_eq!(back.spec.as_ref().unwrap().replicas, Some(4));
    let d = api.get("web").await.unwrap();
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "3");
    let (ok, out) = c
        .kubectl(&["rollout", "history", "-n", "roll", "deployment/web"])
        .await;
    assert!(ok, "{out}");
    let revisions: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["2", "3"], "{out}");

    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_a_rollout_and_a_stuck_rollout_exceeds_its_deadline() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(CONTROLLERS));
    c.namespace("hold").await;
    let _agent = NodeAgent::start(
        &c.client,
        AgentOptions {
            never_ready: vec![("release".into(), "broken".into())],
            ..AgentOptions::default()
        },
    );
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "hold");
    let mut d = deployment("web", 2, rolling(json!(1), json!(0)));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(3);
    api.create(&PostParams::default(), &d).await.unwrap();
    rollout_status(&c, "hold", "web").await;

    let (ok, out) = c
        .kubectl(&["rollout", "pause", "-n", "hold", "deployment/web"])
        .await;
    assert!(ok, "{out}");
    let (ok, out) = c
        .kubectl(&[
            "set",
            "image",
            "-n",
            "hold",
            "deployment/web",
            "app=nginx:2",
        ])
        .await;
    assert!(ok, "{out}");
    eventually("the Paused condition", SOON, || async {
        let d = api.get("web").await.unwrap();
        let s = d.status?;
        let p = s
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Progressing")?;
        (p.reason.as_deref() == Some("DeploymentPaused")
            && s.observed_generation == d.metadata.generation)
            .then_some(())
    })
    .await;
    assert_eq!(
        replica_sets(&c.client, "hold").await.len(),
        1,
        "no rollout while paused"
    );
    let (ok, out) = c
        .kubectl(&["rollout", "resume", "-n", "hold", "deployment/web"])
        .await;
    assert!(ok, "{out}");
    rollout_status(&c, "hold", "web").await;
    assert_eq!(replica_sets(&c.client, "hold").await.len(), 2);

    // A template whose pods never turn ready: past 3 s without progress.
    let (ok, out) = c
        .kubectl(&[
            "patch",
            "-n",
            "hold",
            "deployment/web",
            "-p",
            r#"{"spec":{"template":{"metadata":{"labels":{"release":"broken"}}}}}"#,
        ])
        .await;
    assert!(ok, "{out}");
    let (ok, out) = c
        .kubectl(&[
            "rollout",
            "status",
            "-n",
            "hold",
            "deployment/web",
            "--timeout=30s",
        ])
        .await;
    assert!(!ok, "{out}");
    assert!(out.contains("exceeded its progress deadline"), "{out}");
    let d = api.get("web").await.unwrap();
    let p = d
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
    // maxUnavailable 0: the two old pods still serve.
    let ready = live_pods(&c.client, "hold", "app=web")
        .await
        .iter()
        .filter(|p| is_ready(p))
        .count();
    assert_eq!(ready, 2);

    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_every_old_pod_before_the_first_new_one() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(CONTROLLERS));
    c.namespace("again").await;
    let _agent = NodeAgent::start(&c.client, AgentOptions::default());
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "again");
    api.create(
        &PostParams::default(),
        &deployment("web", 3, json!({"type": "Recreate"})),
    )
    .await
    .unwrap();
    rollout_status(&c, "again", "web").await;

    // Record, at every pod event, whether old and new pods coexisted.
    let overlap = Arc::new(Mutex::new((BTreeMap::<String, String>::new(), false)));
    let o = overlap.clone();
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "again");
    let watch = tokio::spawn(async move {
        let mut events = watcher(pods, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Ok(Some(event)) = events.try_next().await {
            let mut o = o.lock().unwrap();
            match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let image = p.spec.as_ref().unwrap().containers[0]
                        .image
                        .clone()
                        .unwrap();
                    o.0.insert(p.name_any(), image);
                }
                watcher::Event::Delete(p) => {
                    o.0.remove(&p.name_any());
                }
                _ => continue,
            }
            let images: std::collections::BTreeSet<&String> = o.0.values().collect();
            if images.len() > 1 {
                o.1 = true;
            }
        }
    });
    let (ok, out) = c
        .kubectl(&[
            "set",
            "image",
            "-n",
            "again",
            "deployment/web",
            "app=nginx:2",
        ])
        .await;
    assert!(ok, "{out}");
    rollout_status(&c, "again", "web").await;
    eventually("three new pods", SOON, || async {
        let pods = live_pods(&c.client, "again", "app=web").await;
        (pods.len() == 3
            && pods.iter().all(|p| {
                p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("nginx:2")
            }))
        .then_some(())
    })
    .await;
    assert!(
        !overlap.lock().unwrap().1,
        "old and new pods ran at the same time"
    );
    watch.abort();

    manager.stop().await;
    c.stop().await;
}
