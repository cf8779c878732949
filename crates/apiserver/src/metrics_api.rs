//! `metrics.k8s.io/v1beta1`: the resource metrics API that metrics-server
//! serves upstream as an aggregated API, served here by the API server
//! itself. `kubectl top` and the HorizontalPodAutoscaler read it.
//!
//! Nothing is stored: each request reads the kubelets' `/stats/summary`
//! (node CPU and working-set memory; each container's), in parallel, one
//! request per node involved. Only `get` and `list` are served, as upstream.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use http::Method;
use serde_json::{Value, json};
use skiff_api_types::registry::{self, ResourceInfo};
use skiff_api_types::selector::LabelSelector;

use crate::Api;
use crate::cache::{CachedObject, labels_of};
use crate::http_util::{self, Body, Query};
use crate::request::RequestInfo;
use crate::status::{ApiError, GroupResource};

pub(crate) const GROUP: &str = "metrics.k8s.io";
pub(crate) const VERSION: &str = "v1beta1";

/// The window kubelets' usage rates are reported over (metrics-server's
/// default resolution).
const WINDOW: &str = "10s";

pub(crate) static NODE_METRICS: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: VERSION,
    kind: "NodeMetrics",
    list_kind: "NodeMetricsList",
    plural: "nodes",
    singular: "",
    short_names: &[],
    namespaced: false,
    verbs: &["get", "list"],
    subresources: &[],
    categories: &[],
    storage_prefix: "",
    columns: &[],
    field_selectors: &["metadata.name"],
    preferred: true,
};

pub(crate) static POD_METRICS: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: VERSION,
    kind: "PodMetrics",
    list_kind: "PodMetricsList",
    plural: "pods",
    singular: "",
    short_names: &[],
    namespaced: true,
    verbs: &["get", "list"],
    subresources: &[],
    categories: &[],
    storage_prefix: "",
    columns: &[],
    field_selectors: &["metadata.name", "metadata.namespace"],
    preferred: true,
};

/// The metrics resource a group/version/plural names, if any.
pub(crate) fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    if group != GROUP || version != VERSION {
        return None;
    }
    [&NODE_METRICS, &POD_METRICS]
        .into_iter()
        .find(|r| r.plural == plural)
}

/// Both resources, for discovery.
pub(crate) fn resources() -> [&'static ResourceInfo; 2] {
    [&NODE_METRICS, &POD_METRICS]
}

/// Answers a request for `nodes` or `pods` of metrics.k8s.io.
pub(crate) async fn serve(
    api: &Api,
    method: &Method,
    info: &RequestInfo,
    query: &Query,
) -> Response {
    match answer(api, method, info, query).await {
        Ok(v) => http_util::json(200, &v),
        Err(e) => http_util::error(&e),
    }
}

type Response = http::Response<Body>;

async fn answer(
    api: &Api,
    method: &Method,
    info: &RequestInfo,
    query: &Query,
) -> Result<Value, ApiError> {
    if *method != Method::GET || info.verb == "watch" || info.subresource.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    let selector = match query.non_empty("labelSelector") {
        Some(s) => LabelSelector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        None => LabelSelector::everything(),
    };
    let nodes = registry::lookup("", "v1", "nodes").expect("nodes are built in");
    let pods = registry::lookup("", "v1", "pods").expect("pods are built in");
    let name = info.name.as_deref();
    if info.resource == "nodes" {
        let wanted: Vec<Arc<CachedObject>> = match name {
            Some(n) => api
                .cache
                .get(nodes, &nodes.key(None, n))
                .into_iter()
                .collect(),
            None => {
                api.cache
                    .list(nodes, &nodes.key_prefix(None), |o| {
                        selector.matches(&labels_of(&o.value()))
                    })
                    .objects
            }
        };
        let node_names: Vec<String> = wanted.iter().map(|o| name_of(&o.value())).collect();
        let summaries = summaries(api, node_names.iter().cloned()).await;
        let mut items = Vec::new();
        for node in &wanted {
            let node = node.value();
            let n = name_of(&node);
            if let Some(Ok(summary)) = summaries.get(&n)
                && let Some(m) = node_metrics(&node, summary)
            {
                items.push(m);
            }
        }
        return match name {
            Some(n) => items.pop().ok_or_else(|| not_found("nodes", n)),
            None => Ok(list("NodeMetricsList", items)),
        };
    }
    let namespace = info.namespace.as_deref();
    let wanted: Vec<Value> = match (namespace, name) {
        (Some(ns), Some(n)) => api
            .cache
            .get(pods, &pods.key(Some(ns), n))
            .map(|o| o.value())
            .into_iter()
            .collect(),
        _ => api
            .cache
            .list(pods, &pods.key_prefix(namespace), |o| {
                selector.matches(&labels_of(&o.value()))
            })
            .objects
            .iter()
            .map(|o| o.value())
            .collect(),
    };
    let running: Vec<&Value> = wanted
        .iter()
        .filter(|p| p["status"]["phase"] == "Running" && p["spec"]["nodeName"].is_string())
        .collect();
    let mut node_names: Vec<String> = running
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
        .collect();
    node_names.sort();
    node_names.dedup();
    let summaries = summaries(api, node_names.into_iter()).await;
    let mut items = Vec::new();
    for pod in running {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        if let Some(Ok(summary)) = summaries.get(node)
            && let Some(m) = pod_metrics(pod, summary)
        {
            items.push(m);
        }
    }
    match name {
        Some(n) => items.pop().ok_or_else(|| not_found("pods", n)),
        None => Ok(list("PodMetricsList", items)),
    }
}

fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError::not_found(
        GroupResource {
            group: GROUP,
            resource,
        },
        name,
    )
}

fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Each node's `/stats/summary`, read at once; a kubelet that cannot be
/// reached leaves its node (and its pods) out, as metrics-server does.
async fn summaries(
    api: &Api,
    nodes: impl Iterator<Item = String>,
) -> HashMap<String, Result<Value, String>> {
    let reads = nodes.map(|node| async move {
        let summary = api
            .kubelet
            .get_json(api, &node, "/stats/summary?only_cpu_and_memory=true")
            .await;
        if let Err(e) = &summary {
            tracing::debug!(node, error = %e, "reading the node's stats summary");
        }
        (node, summary)
    });
    join_all(reads).await.into_iter().collect()
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": kind,
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    })
}

/// CPU in nanocores and memory in bytes as quantities, as metrics-server
/// writes them.
fn usage(stats: &Value) -> Option<Value> {
    let cpu = stats["cpu"]["usageNanoCores"].as_u64()?;
    let memory = stats["memory"]["workingSetBytes"].as_u64()?;
    Some(json!({
        "cpu": format!("{cpu}n"),
        "memory": format!("{}Ki", memory / 1024),
    }))
}

fn timestamp(stats: &Value) -> Value {
    stats["cpu"]["time"].clone()
}

/// A NodeMetrics from the node object and its kubelet's summary.
fn node_metrics(node: &Value, summary: &Value) -> Option<Value> {
    let stats = &summary["node"];
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {
            "name": node["metadata"]["name"],
            "creationTimestamp": timestamp(stats),
            "labels": labels_of(node),
        },
        "timestamp": timestamp(stats),
        "window": WINDOW,
        "usage": usage(stats)?,
    }))
}

/// A PodMetrics from the pod object and its node's summary; `None` when the
/// kubelet does not report the pod (yet).
fn pod_metrics(pod: &Value, summary: &Value) -> Option<Value> {
    let uid = pod["metadata"]["uid"].as_str()?;
    let stats = summary["pods"]
        .as_array()?
        .iter()
        .find(|p| p["podRef"]["uid"] == uid)?;
    let containers: Vec<Value> = stats["containers"]
        .as_array()?
        .iter()
        .filter_map(|c| Some(json!({"name": c["name"], "usage": usage(c)?})))
        .collect();
    if containers.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {
            "name": pod["metadata"]["name"],
            "namespace": pod["metadata"]["namespace"],
            "creationTimestamp": timestamp(stats),
            "labels": labels_of(pod),
        },
        "timestamp": timestamp(stats),
        "window": WINDOW,
        "containers": containers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Value {
        json!({
            "node": {"nodeName": "n1",
                "cpu": {"time": "2026-11-26T00:00:00Z", "usageNanoCores": 250_000_000u64},
                "memory": {"time": "2026-11-26T00:00:00Z", "workingSetBytes": 2_097_152u64}},
            "pods": [{
                "podRef": {"name": "web", "namespace": "default", "uid": "u1"},
                "cpu": {"time": "2026-11-26T00:00:01Z", "usageNanoCores": 5_000_000u64},
                "memory": {"time": "2026-11-26T00:00:01Z", "workingSetBytes": 1_048_576u64},
                "containers": [{
                    "name": "app",
                    "cpu": {"time": "2026-11-26T00:00:01Z", "usageNanoCores": 5_000_000u64},
                    "memory": {"time": "2026-11-26T00:00:01Z", "workingSetBytes": 1_048_576u64},
                }],
            }],
        })
    }

    #[test]
    fn node_metrics_carry_cpu_in_nanocores_and_working_set_in_kibibytes() {
        let node = json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}});
        let m = node_metrics(&node, &summary()).unwrap();
        assert_eq!(m["usage"], json!({"cpu": "250000000n", "memory": "2048Ki"}));
        assert_eq!(m["metadata"]["labels"]["zone"], "a");
        assert_eq!(m["window"], WINDOW);
        assert_eq!(m["timestamp"], "2026-11-26T00:00:00Z");
    }

    #[test]
    fn pod_metrics_are_per_container_and_matched_by_uid() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}});
        let m = pod_metrics(&pod, &summary()).unwrap();
        assert_eq!(m["kind"], "PodMetrics");
        assert_eq!(
            m["containers"],
            json!([{"name": "app", "usage": {"cpu": "5000000n", "memory": "1024Ki"}}])
        );
        let other = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u2"}});
        assert!(pod_metrics(&other, &summary()).is_none());
    }

    #[test]
    fn only_the_two_resources_of_v1beta1_are_served() {
        assert_eq!(lookup(GROUP, VERSION, "pods").unwrap().kind, "PodMetrics");
        assert_eq!(lookup(GROUP, VERSION, "nodes").unwrap().kind, "NodeMetrics");
        assert!(lookup(GROUP, "v1", "pods").is_none());
        assert!(lookup(GROUP, VERSION, "services").is_none());
    }
}
