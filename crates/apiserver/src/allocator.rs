//! Service ClusterIPs and NodePorts, allocated when a Service is written and
//! released when it goes.
//!
//! As upstream's allocator does since v1.33, every allocated ClusterIP is an
//! `networking.k8s.io/v1` IPAddress object named by the address, whose
//! `parentRef` is the Service; NodePorts are one key each under
//! `/registry/ranges/servicenodeports/`. Both are taken with the store's
//! create-if-absent, so two Services racing for one address cannot both win.

use std::net::Ipv4Addr;

use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api_types::validation::{ErrorType, FieldError, FieldErrors};
use skiff_store::Error as StoreError;

use crate::Api;
use crate::status::ApiError;

pub(crate) mod repair;

/// The default NodePort range (`--service-node-port-range`).
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

const NODE_PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// The labels upstream's allocator puts on the IPAddress objects it owns.
const MANAGED_BY_LABEL: &str = "ipaddress.kubernetes.io/managed-by";
const MANAGED_BY: &str = "ipallocator.k8s.io";
const IP_FAMILY_LABEL: &str = "ipaddress.kubernetes.io/ip-family";

/// An IPv4 service range.
#[derive(Clone, Copy, Debug)]
pub struct ServiceRange {
    network: u32,
    size: u32,
}

impl ServiceRange {
    pub fn parse(cidr: &str) -> Option<ServiceRange> {
        let (ip, bits) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let bits: u32 = bits.parse().ok()?;
        if !(1..=30).contains(&bits) {
            return None;
        }
        let mask = u32::MAX << (32 - bits);
        Some(ServiceRange {
            network: u32::from(ip) & mask,
            size: 1 << (32 - bits),
        })
    }

    /// The first usable address: the `kubernetes` Service's.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.network && ip < self.network + self.size - 1
    }

    /// Usable addresses: all but the network and broadcast addresses.
    fn usable(&self) -> u32 {
        self.size - 2
    }
}

fn invalid(svc: &Value, field: &str, value: &str, detail: String) -> ApiError {
    ApiError::invalid(
        "",
        "Service",
        svc["metadata"]["name"].as_str().unwrap_or(""),
        &FieldErrors(vec![FieldError {
            kind: ErrorType::Invalid,
            field: field.into(),
            value: Some(format!("{value:?}")),
            detail,
        }]),
    )
}

/// Whether a Service gets a ClusterIP.
fn wants_cluster_ip(svc: &Value) -> bool {
    svc["spec"]["type"].as_str() != Some("ExternalName")
        && svc["spec"]["clusterIP"].as_str() != Some("None")
}

/// Whether a Service's ports get NodePorts.
fn wants_node_ports(svc: &Value) -> bool {
    matches!(
        svc["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    )
}

/// Allocates what a new Service needs, writing the addresses into it. On
/// error nothing stays allocated.
pub async fn allocate(api: &Api, svc: &mut Value) -> Result<(), ApiError> {
    if wants_cluster_ip(svc) {
        let ip = match svc["spec"]["clusterIP"].as_str().filter(|s| !s.is_empty()) {
            Some(requested) => {
                let ip: Ipv4Addr = requested.parse().map_err(|_| {
                    invalid(
                        svc,
                        "spec.clusterIPs",
                        requested,
                        "must be a valid IP address".into(),
                    )
                })?;
                if !api.service_range.contains(ip) {
                    return Err(invalid(
                        svc,
                        "spec.clusterIPs",
                        requested,
                        format!(
                            "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range"
                        ),
                    ));
                }
                if !claim_ip(api, svc, ip).await? {
                    return Err(invalid(
                        svc,
                        "spec.clusterIPs",
                        requested,
                        format!("failed to allocate IP {ip}: provided IP is already allocated"),
                    ));
                }
                ip
            }
            None => pick_ip(api, svc).await?,
        };
        svc["spec"]["clusterIP"] = json!(ip.to_string());
        svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        svc["spec"]["ipFamilies"] = json!(["IPv4"]);
    }
    // On error allocate_node_ports has released what it took; the ports
    // it was refused belong to other Services and are not released here.
    if let Err(e) = allocate_node_ports(api, svc, &[]).await {
        release_ip(api, svc).await;
        return Err(e);
    }
    Ok(())
}

/// On update: takes NodePorts the new spec needs and releases those it
/// dropped. The ClusterIP is immutable (validation says so).
pub async fn reallocate(api: &Api, new: &mut Value, old: &Value) -> Result<(), ApiError> {
    let old_ports = node_ports(old);
    allocate_node_ports(api, new, &old_ports).await?;
    let kept = node_ports(new);
    for port in old_ports.into_iter().filter(|p| !kept.contains(p)) {
        let _ = api
            .store
            .delete(&format!("{NODE_PORT_PREFIX}{port}"), None)
            .await;
    }
    Ok(())
}

/// Releases everything a Service held.
pub async fn release(api: &Api, svc: &Value) {
    release_ip(api, svc).await;
    for port in node_ports(svc) {
        let _ = api
            .store
            .delete(&format!("{NODE_PORT_PREFIX}{port}"), None)
            .await;
    }
}

/// Releases a Service's ClusterIP, if its IPAddress object names it.
async fn release_ip(api: &Api, svc: &Value) {
    if let Some(ip) = svc["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| *ip != "None" && !ip.is_empty())
    {
        let resource = ip_addresses();
        let key = resource.key(None, ip);
        if let Ok(Some(kv)) = api.store.get(&key).await {
            let owned = serde_json::from_slice::<Value>(&kv.value)
                .map(|v| {
                    v["spec"]["parentRef"]["name"] == svc["metadata"]["name"]
                        && v["spec"]["parentRef"]["namespace"] == svc["metadata"]["namespace"]
                })
                .unwrap_or(false);
            if owned {
                let _ = api.store.delete(&key, Some(kv.mod_revision)).await;
            }
        }
    }
}

fn ip_addresses() -> &'static skiff_api_types::registry::ResourceInfo {
    skiff_api_types::registry::lookup("networking.k8s.io", "v1", "ipaddresses")
        .expect("ipaddresses are registered")
}

/// The IPAddress object that allocates `ip` to the Service `namespace/name`.
fn ip_address_object(ip: &str, namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": ip,
            "labels": {
                IP_FAMILY_LABEL: "IPv4",
                MANAGED_BY_LABEL: MANAGED_BY,
            },
        },
        "spec": {
            "parentRef": {
                "group": "",
                "resource": "services",
                "namespace": namespace,
                "name": name,
            },
        },
    })
}

/// Creates the IPAddress object for `ip`; false if it is taken.
async fn claim_ip(api: &Api, svc: &Value, ip: Ipv4Addr) -> Result<bool, ApiError> {
    let object = ip_address_object(
        &ip.to_string(),
        svc["metadata"]["namespace"].as_str().unwrap_or(""),
        svc["metadata"]["name"].as_str().unwrap_or(""),
    );
    match Box::pin(crate::rest::create_object(
        api,
        None,
        ip_addresses(),
        object,
        Some("skiff-apiserver"),
        false,
    ))
    .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.reason == "AlreadyExists" => {
            // Ours already (a retried or repeated create of the same Service)?
            let key = ip_addresses().key(None, &ip.to_string());
            let existing = api
                .store
                .get(&key)
                .await
                .map_err(crate::rest::store_error)?;
            Ok(existing
                .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
                .is_some_and(|v| {
                    v["spec"]["parentRef"]["name"] == svc["metadata"]["name"]
                        && v["spec"]["parentRef"]["namespace"] == svc["metadata"]["namespace"]
                }))
        }
        Err(e) => Err(e),
    }
}

async fn pick_ip(api: &Api, svc: &Value) -> Result<Ipv4Addr, ApiError> {
    let range = api.service_range;
    let usable = range.usable();
    // Random probes first (cheap while the range is sparse), then a scan.
    let start = rand::random_range(0..usable);
    for i in 0..usable {
        let offset = if i < 32 {
            rand::random_range(0..usable)
        } else {
            (start + i) % usable
        };
        let ip = Ipv4Addr::from(range.network + 1 + offset);
        // The first address is the kubernetes Service's.
        if ip == range.first() {
            continue;
        }
        if claim_ip(api, svc, ip).await? {
            return Ok(ip);
        }
    }
    Err(ApiError::internal(
        "failed to allocate a serviceIP: range is full",
    ))
}

fn node_ports(svc: &Value) -> Vec<u16> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect()
}

async fn claim_port(api: &Api, port: u16) -> Result<bool, ApiError> {
    match api
        .store
        .create(
            &format!("{NODE_PORT_PREFIX}{port}"),
            Bytes::from_static(b"{}"),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(crate::rest::store_error(e)),
    }
}

/// Gives every port of a NodePort/LoadBalancer Service a NodePort, keeping
/// those in `held` (already this Service's).
async fn allocate_node_ports(api: &Api, svc: &mut Value, held: &[u16]) -> Result<(), ApiError> {
    if !wants_node_ports(svc) {
        return Ok(());
    }
    let Some(ports) = svc["spec"]["ports"].as_array().cloned() else {
        return Ok(());
    };
    let mut taken = Vec::new();
    let mut out = Vec::with_capacity(ports.len());
    for (i, mut port) in ports.into_iter().enumerate() {
        match port["nodePort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
        {
            Some(p) if held.contains(&p) => {}
            Some(p) => {
                if !NODE_PORTS.contains(&p) || !claim_port(api, p).await? {
                    for t in taken {
                        let _ = api
                            .store
                            .delete(&format!("{NODE_PORT_PREFIX}{t}"), None)
                            .await;
                    }
                    let why = if NODE_PORTS.contains(&p) {
                        "provided port is already allocated".to_owned()
                    } else {
                        format!(
                            "provided port is not in the valid range. The range of valid ports is {}-{}",
                            NODE_PORTS.start(),
                            NODE_PORTS.end()
                        )
                    };
                    return Err(invalid(
                        svc,
                        &format!("spec.ports[{i}].nodePort"),
                        &p.to_string(),
                        why,
                    ));
                }
                taken.push(p);
            }
            None => {
                let span = (NODE_PORTS.end() - NODE_PORTS.start()) as u32 + 1;
                let start = rand::random_range(0..span);
                let mut got = None;
                for j in 0..span {
                    let p = NODE_PORTS.start() + ((start + j) % span) as u16;
                    if claim_port(api, p).await? {
                        got = Some(p);
                        break;
                    }
                }
                let Some(p) = got else {
                    return Err(ApiError::internal(
                        "failed to allocate a nodePort: range is full",
                    ));
                };
                taken.push(p);
                port["nodePort"] = json!(p);
            }
        }
        out.push(port);
    }
    svc["spec"]["ports"] = Value::Array(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_excludes_its_network_and_broadcast_addresses() {
        let r = ServiceRange::parse("10.0.0.0/24").unwrap();
        assert_eq!(r.first(), Ipv4Addr::new(10, 0, 0, 1));
        assert!(!r.contains(Ipv4Addr::new(10, 0, 0, 0)));
        assert!(r.contains(Ipv4Addr::new(10, 0, 0, 254)));
        assert!(!r.contains(Ipv4Addr::new(10, 0, 0, 255)));
        assert!(!r.contains(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(r.usable(), 254);
        assert!(ServiceRange::parse("10.0.0.0/33").is_none());
    }
}
