//! What exists from the first start: the namespaces `default`, `kube-system`,
//! `kube-public` and `kube-node-lease`, and the `kubernetes` Service in
//! `default` with its Endpoints and EndpointSlice pointing at this server.
//! The system PriorityClasses `system-node-critical` and
//! `system-cluster-critical`, as upstream's scheduling post-start hook makes
//! them. Re-run at every start; existing objects are kept, the endpoints
//! updated. Then the default RBAC policy ([`crate::authz::policy`]).

use std::net::IpAddr;

use serde_json::{Value, json};
use skiff_api_types::registry;
use tracing::info;

use crate::Api;
use crate::rest::create_object;
use crate::status::ApiError;

const MANAGER: &str = "skiff-apiserver";

pub(crate) async fn ensure(
    api: &Api,
    service_ip: IpAddr,
    advertise: IpAddr,
    port: u16,
) -> Result<(), ApiError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        create_if_absent(
            api,
            "namespaces",
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}}),
        )
        .await?;
    }
    create_if_absent(
        api,
        "services",
        "",
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": service_ip.to_string(),
                "clusterIPs": [service_ip.to_string()],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                "sessionAffinity": "None",
                "ipFamilies": [if service_ip.is_ipv4() { "IPv4" } else { "IPv6" }],
                "ipFamilyPolicy": "SingleStack",
            },
        }),
    )
    .await?;
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    put(api, "endpoints", "", endpoints).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}},
        "addressType": if advertise.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [advertise.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    put(api, "endpointslices", "discovery.k8s.io", slice).await?;
    for class in crate::admission::priority::system_class_objects() {
        create_if_absent(api, "priorityclasses", "scheduling.k8s.io", class).await?;
    }
    crate::authz::policy::ensure(api).await?;
    info!(%service_ip, %advertise, "bootstrap objects in place");
    Ok(())
}

async fn create_if_absent(
    api: &Api,
    plural: &str,
    group: &str,
    obj: Value,
) -> Result<(), ApiError> {
    let resource = resource(plural, group);
    match create_object(api, None, resource, obj, Some(MANAGER), false).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the object, or replaces it when its content differs.
async fn put(api: &Api, plural: &str, group: &str, obj: Value) -> Result<(), ApiError> {
    let resource = resource(plural, group);
    let key = resource.key(
        obj["metadata"]["namespace"].as_str(),
        obj["metadata"]["name"].as_str().unwrap_or(""),
    );
    match api
        .store
        .get(&key)
        .await
        .map_err(crate::rest::store_error)?
    {
        None => create_if_absent(api, plural, group, obj).await,
        Some(kv) => {
            let mut stored: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
            let same = ["subsets", "endpoints", "ports"]
                .iter()
                .all(|f| stored.get(*f) == obj.get(*f));
            if same {
                return Ok(());
            }
            for f in ["subsets", "endpoints", "ports", "addressType"] {
                if let Some(v) = obj.get(f) {
                    stored[f] = v.clone();
                }
            }
            let bytes = bytes::Bytes::from(serde_json::to_vec(&stored).expect("serializes"));
            api.store
                .update(&key, bytes, Some(kv.mod_revision))
                .await
                .map(|_| ())
                .map_err(crate::rest::store_error)
        }
    }
}

fn resource(plural: &str, group: &str) -> &'static registry::ResourceInfo {
    registry::lookup(group, "v1", plural).expect("bootstrap kinds are registered")
}
