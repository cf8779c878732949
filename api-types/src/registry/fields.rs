//! Field-selector values: what upstream's `GetAttrs` / `ToSelectableFields`
//! functions put in an object's `fields.Set`, formatted as upstream formats
//! them (booleans as `true`/`false`, counts in decimal, unset as `""`).

use serde_json::Value;

use super::ResourceInfo;
use super::printers::{arr_at, bool_at, get, int_at, str_at};

/// Field labels every kind supports (upstream's default field-label conversion).
pub(crate) const META: &[&str] = &["metadata.name", "metadata.namespace"];

pub(crate) const POD: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];

pub(crate) const NODE: &[&str] = &["metadata.name", "spec.unschedulable"];

pub(crate) const NAMESPACE: &[&str] = &["metadata.name", "status.phase"];

pub(crate) const SECRET: &[&str] = &["metadata.name", "metadata.namespace", "type"];

pub(crate) const SERVICE: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.clusterIP",
    "spec.type",
];

pub(crate) const EVENT: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

pub(crate) const REPLICAS: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];

pub(crate) const JOB: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];

pub(crate) const CERTIFICATE_SIGNING_REQUEST: &[&str] = &["metadata.name", "spec.signerName"];

/// The value of `field` in `obj`, for a field `info` supports.
pub(crate) fn value(info: &ResourceInfo, obj: &Value, field: &str) -> String {
    let s = |path: &[&str]| str_at(obj, path).to_string();
    match (info.kind, field) {
        (_, "metadata.name") => s(&["metadata", "name"]),
        (_, "metadata.namespace") => s(&["metadata", "namespace"]),
        ("Pod", "spec.hostNetwork") => bool_at(obj, &["spec", "hostNetwork"]).to_string(),
        ("Pod", "status.podIP") => match arr_at(obj, &["status", "podIPs"]).first() {
            Some(ip) => str_at(ip, &["ip"]).to_string(),
            None => s(&["status", "podIP"]),
        },
        ("Pod", "status.podIPs") => {
            let ips: Vec<&str> = arr_at(obj, &["status", "podIPs"])
                .iter()
                .map(|ip| str_at(ip, &["ip"]))
                .collect();
            if ips.is_empty() {
                s(&["status", "podIP"])
            } else {
                ips.join(",")
            }
        }
        ("Node", "spec.unschedulable") => bool_at(obj, &["spec", "unschedulable"]).to_string(),
        ("Event", "source") => {
            let component = str_at(obj, &["source", "component"]);
            if component.is_empty() {
                s(&["reportingComponent"])
            } else {
                component.to_string()
            }
        }
        ("ReplicaSet" | "ReplicationController", "status.replicas") => {
            int_at(obj, &["status", "replicas"]).to_string()
        }
        ("Job", "status.successful") => int_at(obj, &["status", "succeeded"]).to_string(),
        (_, path) => {
            let parts: Vec<&str> = path.split('.').collect();
            match get(obj, &parts) {
                Some(Value::String(v)) => v.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            }
        }
    }
}
