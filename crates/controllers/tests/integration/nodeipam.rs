//! The node IPAM controller against a real API server.

use std::collections::BTreeSet;

use crate::common::{Cluster, Manager, SOON, eventually};
use k8s_openapi::api::core::v1::{Event, Node};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

async fn node(client: &Client, name: &str, pod_cidr: Option<&str>) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut n = json!({"metadata": {"name": name}, "spec": {}});
    if let Some(c) = pod_cidr {
        n["spec"] = json!({"podCIDR": c, "podCIDRs": [c]});
    }
    nodes
        .create(&PostParams::default(), &serde_json::from_value(n).unwrap())
        .await
        .unwrap();
}

async fn cidr_of(client: &Client, name: &str) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(&format!("a pod CIDR for {name}"), SOON, || async {
        let spec = nodes.get(name).await.unwrap().spec?;
        let cidr = spec.pod_cidr?;
        assert_eq!(spec.pod_cidrs.as_deref(), Some(std::slice::from_ref(&cidr)));
        Some(cidr)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_cidrs_and_a_deleted_nodes_block_is_reused() {
    let cluster = Cluster::start().await;
    // Allocated before this controller manager started: rebuilt from the Node.
    node(&cluster.client, "old", Some("10.0.0.0/24")).await;
    let mut config = cluster.config(&["node-ipam-controller"]);
    config.infra.allocate_node_cidrs = true;
    config.infra.cluster_cidr = "10.0.0.0/22".into();
    config.infra.node_cidr_mask_size = Some(24);
    let manager = Manager::start(config);

    for n in ["a", "b", "c"] {
        node(&cluster.client, n, None).await;
    }
    let mut got = BTreeSet::new();
    for n in ["a", "b", "c"] {
        got.insert(cidr_of(&cluster.client, n).await);
    }
    let want: BTreeSet<String> = ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]
        .map(String::from)
        .into();
    assert_eq!(got, want);

    // The range is full: the node waits, and an event says why.
    node(&cluster.client, "d", None).await;
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    eventually("a CIDRNotAvailable event", SOON, || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("CIDRNotAvailable")
                && e.involved_object.name.as_deref() == Some("d")
        })
    })
    .await;

    let b = cidr_of(&cluster.client, "b").await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(cidr_of(&cluster.client, "d").await, b);

    manager.stop().await;
    cluster.stop().await;
}
