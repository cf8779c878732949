//! The Endpoints and EndpointSlice controllers against a real API server,
//! pods run by a simulated node agent.

use crate::common::{AgentOptions, Cluster, Manager, NodeAgent, SOON, eventually, live_pods};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const CONTROLLERS: &[&str] = &["endpoints-controller", "endpointslice-controller"];

fn pod(name: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web", "ready": if ready { "yes" } else { "no" }}},
        "spec": {"containers": [{"name": "app", "image": "nginx",
            "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))
    .unwrap()
}

fn service() -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "web", "port": 80, "targetPort": "http"}]},
    }))
    .unwrap()
}

async fn slices(c: &Cluster, ns: &str) -> Vec<EndpointSlice> {
    let api: Api<EndpointSlice> = Api::namespaced(c.client.clone(), ns);
    api.list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap()
        .items
}

fn ready_ips(slices: &[EndpointSlice]) -> Vec<String> {
    let mut ips: Vec<String> = slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .flat_map(|e| e.addresses.clone())
        .collect();
    ips.sort();
    ips
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_gets_endpoints_and_a_slice_of_its_ready_pods_on_the_named_port() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(CONTROLLERS));
    c.namespace("svc").await;
    let _agent = NodeAgent::start(
        &c.client,
        AgentOptions {
            never_ready: vec![("ready".into(), "no".into())],
            ..AgentOptions::default()
        },
    );
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "svc");
    for (name, ready) in [("a", true), ("b", true), ("c", false)] {
        pods.create(&PostParams::default(), &pod(name, ready))
            .await
            .unwrap();
    }
    let services: Api<Service> = Api::namespaced(c.client.clone(), "svc");
    services
        .create(&PostParams::default(), &service())
        .await
        .unwrap();
    let running = eventually("three running pods with IPs", SOON, || async {
        let live = live_pods(&c.client, "svc", "app=web").await;
        let with_ip = live
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
            .count();
        (with_ip == 3).then_some(live)
    })
    .await;
    let ip = |name: &str| {
        running
            .iter()
            .find(|p| p.name_any() == name)
            .unwrap()
            .status
            .as_ref()
            .unwrap()
            .pod_ip
            .clone()
            .unwrap()
    };
    let mut want_ready = vec![ip("a"), ip("b")];
    want_ready.sort();

    let endpoints: Api<Endpoints> = Api::namespaced(c.client.clone(), "svc");
    let e = eventually("Endpoints with two ready addresses", SOON, || async {
        let e = endpoints.get_opt("web").await.unwrap()?;
        let subset = e.subsets.as_ref()?.first()?.clone();
        (subset.addresses.as_ref()?.len() == 2 && subset.not_ready_addresses.as_ref()?.len() == 1)
            .then_some(e)
    })
    .await;
    let subset = &e.subsets.as_ref().unwrap()[0];
    let mut ready: Vec<String> = subset
        .addresses
        .iter()
        .flatten()
        .map(|a| a.ip.clone())
        .collect();
    ready.sort();
    assert_eq!(ready, want_ready);
    assert_eq!(subset.not_ready_addresses.as_ref().unwrap()[0].ip, ip("c"));
    let port = &subset.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("web"), 8080));
    let address = &subset.addresses.as_ref().unwrap()[0];
    assert!(address.node_name.is_some());
    let target = address.target_ref.as_ref().unwrap();
    assert_eq!(target.kind.as_deref(), Some("Pod"));
    assert_eq!(e.labels()["team"], "a");
    assert_eq!(
        e.labels()["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );

    let s = eventually(
        "an EndpointSlice with two ready endpoints",
        SOON,
        || async {
            let s = slices(&c, "svc").await;
            (ready_ips(&s) == want_ready && s.iter().map(|s| s.endpoints.len()).sum::<usize>() == 3)
                .then_some(s)
        },
    )
    .await;
    assert_eq!(s.len(), 1);
    let slice = &s[0];
    assert_eq!(slice.address_type, "IPv4");
    assert!(slice.name_any().starts_with("web-"));
    assert_eq!(
        slice.labels()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("web"), Some(8080)));
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Service", Some(true))
    );
    let unready = slice
        .endpoints
        .iter()
        .find(|e| e.addresses[0] == ip("c"))
        .unwrap();
    let cond = unready.conditions.clone().unwrap();
    assert_eq!(
        (cond.ready, cond.serving, cond.terminating),
        (Some(false), Some(false), Some(false))
    );
    assert_eq!(
        unready.target_ref.as_ref().unwrap().name.as_deref(),
        Some("c")
    );
    assert!(unready.node_name.is_some());

    // A deleted pod leaves both.
    pods.delete("a", &Default::default()).await.unwrap();
    eventually("a gone from the Endpoints", SOON, || async {
        let e = endpoints.get("web").await.unwrap();
        let subset = e.subsets?.first()?.clone();
        (subset
            .addresses?
            .iter()
            .map(|a| a.ip.clone())
            .collect::<Vec<_>>()
            == [ip("b")])
        .then_some(())
    })
    .await;
    eventually("a gone from the slice", SOON, || async {
        (ready_ips(&slices(&c, "svc").await) == [ip("b")]).then_some(())
    })
    .await;

    // The API server's own `kubernetes` Endpoints are left alone.
    let default: Api<Endpoints> = Api::namespaced(c.client.clone(), "default");
    let kubernetes = default.get("kubernetes").await.unwrap();
    assert!(
        !kubernetes
            .labels()
            .contains_key("endpointslice.kubernetes.io/skip-mirror")
            || kubernetes.labels()["endpointslice.kubernetes.io/skip-mirror"] == "true"
    );
    assert!(kubernetes.subsets.is_some());

    // Deleting the Service deletes its Endpoints.
    services.delete("web", &Default::default()).await.unwrap();
    eventually("the Endpoints gone", SOON, || async {
        endpoints
            .get_opt("web")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_of_a_service_deleted_while_the_manager_was_down_are_removed_at_start() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(CONTROLLERS));
    c.namespace("svc").await;
    let _agent = NodeAgent::start(&c.client, AgentOptions::default());
    let services: Api<Service> = Api::namespaced(c.client.clone(), "svc");
    services
        .create(&PostParams::default(), &service())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "svc");
    pods.create(&PostParams::default(), &pod("a", true))
        .await
        .unwrap();
    let endpoints: Api<Endpoints> = Api::namespaced(c.client.clone(), "svc");
    eventually("Endpoints with the pod", SOON, || async {
        let e = endpoints.get_opt("web").await.unwrap()?;
        e.subsets?.first()?.addresses.as_ref()?.first().map(|_| ())
    })
    .await;
    manager.stop().await;

    services.delete("web", &Default::default()).await.unwrap();
    // Endpoints the user made for a Service without a selector stay.
    let manual: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}],
    }))
    .unwrap();
    let bare: Service = serde_json::from_value(json!({
        "metadata": {"name": "manual"},
        "spec": {"ports": [{"port": 80}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &bare)
        .await
        .unwrap();
    endpoints
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();

    let manager = Manager::start(c.config(CONTROLLERS));
    eventually("the leftover Endpoints gone", SOON, || async {
        endpoints
            .get_opt("web")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let kept = endpoints.get("manual").await.unwrap();
    assert_eq!(
        kept.subsets.unwrap()[0].addresses.as_ref().unwrap()[0].ip,
        "192.0.2.1"
    );

    manager.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_endpoints_of_a_service_without_selector_are_mirrored_into_slices() {
    let c = Cluster::start().await;
    let manager = Manager::start(c.config(&[
        "endpointslice-mirroring-controller",
        "garbage-collector-controller",
    ]));
    c.namespace("ext").await;
    let services: Api<Service> = Api::namespaced(c.client.clone(), "ext");
    let endpoints: Api<Endpoints> = Api::namespaced(c.client.clone(), "ext");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"ports": [{"name": "sql", "port": 5432}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let custom: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "db", "labels": {"team": "data"}},
        "subsets": [{
            "addresses": [{"ip": "192.0.2.10"}],
            "notReadyAddresses": [{"ip": "192.0.2.11"}],
            "ports": [{"name": "sql", "port": 5432}],
        }],
    }))
    .unwrap();
    let e = endpoints
        .create(&PostParams::default(), &custom)
        .await
        .unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "ext");
    let mirrored = || async {
        slices
            .list(&ListParams::default().labels(
                "kubernetes.io/service-name=db,endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io",
            ))
            .await
            .unwrap()
            .items
    };
    let s = eventually("a mirrored slice", SOON, || async {
        let s = mirrored().await;
        (s.len() == 1 && s[0].endpoints.len() == 2).then_some(s)
    })
    .await;
    let slice = &s[0];
    assert_eq!(slice.labels()["team"], "data");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Endpoints", e.uid().unwrap().as_str())
    );
    let ready: Vec<(String, Option<bool>)> = slice
        .endpoints
        .iter()
        .map(|e| (e.addresses[0].clone(), e.conditions.as_ref().unwrap().ready))
        .collect();
    assert_eq!(
        ready,
        [
            ("192.0.2.10".into(), Some(true)),
            ("192.0.2.11".into(), Some(false))
        ]
    );
    assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(5432));

    // The Service gains a selector: the Endpoints are no longer mirrored.
    services
        .patch(
            "db",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"selector": {"app": "db"}}})),
        )
        .await
        .unwrap();
    eventually("the mirrored slice removed", SOON, || async {
        mirrored().await.is_empty().then_some(())
    })
    .await;

    // The API server's own slice for `kubernetes` is left alone.
    let default: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    assert!(default.get_opt("kubernetes").await.unwrap().is_some());

    manager.stop().await;
    c.stop().await;
}
