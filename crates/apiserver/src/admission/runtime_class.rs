//! RuntimeClass (plugin/pkg/admission/runtimeclass): a new pod that names a
//! RuntimeClass gets the class's pod overhead and its scheduling
//! constraints (node selector, tolerations), and may not claim an overhead
//! of its own.

use serde_json::{Map, Value, json};

use super::{Operation, Request, lookup, resources};
use crate::status::ApiError;

pub const NAME: &str = "RuntimeClass";

fn applies(req: &Request<'_>) -> bool {
    req.is("", "pods") && req.subresource.is_none() && req.operation == Operation::Create
}

/// The pod's RuntimeClass, if it names one; a missing class refuses the pod.
async fn runtime_class(req: &Request<'_>, pod: &Value) -> Result<Option<Value>, ApiError> {
    let Some(name) = pod["spec"]["runtimeClassName"]
        .as_str()
        .filter(|n| !n.is_empty())
    else {
        return Ok(None);
    };
    let classes = lookup::resource("node.k8s.io", "runtimeclasses");
    match lookup::get(req.api, classes, None, name).await? {
        Some(rc) => Ok(Some(rc)),
        None => Err(req.forbidden(
            pod,
            format!("pod rejected: RuntimeClass {name:?} not found"),
        )),
    }
}

/// The mutating half: overhead and scheduling from the class.
pub async fn admit(req: &Request<'_>, pod: &mut Value) -> Result<(), ApiError> {
    if !applies(req) {
        return Ok(());
    }
    let Some(rc) = runtime_class(req, pod).await? else {
        return Ok(());
    };
    set_overhead(pod, &rc).map_err(|why| req.forbidden(pod, why))?;
    set_scheduling(pod, &rc).map_err(|why| req.forbidden(pod, why))
}

/// The validating half: the overhead is the class's.
pub async fn validate(req: &Request<'_>, pod: &Value) -> Result<(), ApiError> {
    if !applies(req) {
        return Ok(());
    }
    let rc = runtime_class(req, pod).await?;
    check_overhead(pod, rc.as_ref()).map_err(|why| req.forbidden(pod, why))
}

fn class_overhead(rc: &Value) -> Option<&Value> {
    rc["overhead"]["podFixed"]
        .as_object()
        .map(|_| &rc["overhead"]["podFixed"])
}

fn same_resources(a: &Value, b: &Value) -> bool {
    resources::parse(a) == resources::parse(b)
        && a.as_object().map(Map::len) == b.as_object().map(Map::len)
}

const OVERHEAD_MISMATCH: &str =
    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead";

fn set_overhead(pod: &mut Value, rc: &Value) -> Result<(), &'static str> {
    let Some(overhead) = class_overhead(rc) else {
        return Ok(());
    };
    let own = &pod["spec"]["overhead"];
    if own.as_object().is_some_and(|o| !o.is_empty()) && !same_resources(own, overhead) {
        return Err(OVERHEAD_MISMATCH);
    }
    pod["spec"]["overhead"] = overhead.clone();
    Ok(())
}

fn check_overhead(pod: &Value, rc: Option<&Value>) -> Result<(), &'static str> {
    let own = &pod["spec"]["overhead"];
    match rc.and_then(class_overhead) {
        Some(overhead) if !same_resources(own, overhead) => Err(OVERHEAD_MISMATCH),
        Some(_) => Ok(()),
        None if !own.is_null() => Err(
            "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead",
        ),
        None => Ok(()),
    }
}

fn set_scheduling(pod: &mut Value, rc: &Value) -> Result<(), String> {
    let scheduling = &rc["scheduling"];
    if !scheduling.is_object() {
        return Ok(());
    }
    if let Some(selector) = scheduling["nodeSelector"].as_object() {
        if !pod["spec"]["nodeSelector"].is_object() {
            pod["spec"]["nodeSelector"] = json!({});
        }
        let own = &mut pod["spec"]["nodeSelector"];
        for (key, value) in selector {
            if let Some(have) = own.get(key)
                && have != value
            {
                return Err(format!(
                    "conflict: runtimeClass.scheduling.nodeSelector[{key}] = {}; pod.spec.nodeSelector[{key}] = {}",
                    value.as_str().unwrap_or(""),
                    have.as_str().unwrap_or("")
                ));
            }
            own[key] = value.clone();
        }
    }
    for toleration in scheduling["tolerations"].as_array().into_iter().flatten() {
        let present = pod["spec"]["tolerations"]
            .as_array()
            .is_some_and(|t| t.contains(toleration));
        if present {
            continue;
        }
        match pod["spec"]["tolerations"].as_array_mut() {
            Some(t) => t.push(toleration.clone()),
            None => pod["spec"]["tolerations"] = json!([toleration]),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gvisor() -> Value {
        json!({
            "metadata": {"name": "gvisor"},
            "handler": "runsc",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "120Mi"}},
            "scheduling": {
                "nodeSelector": {"runtime": "gvisor"},
                "tolerations": [{"key": "sandboxed", "operator": "Exists", "effect": "NoSchedule"}],
            },
        })
    }

    #[test]
    fn the_class_brings_overhead_and_scheduling() {
        let mut pod =
            json!({"spec": {"runtimeClassName": "gvisor", "nodeSelector": {"zone": "a"}}});
        set_overhead(&mut pod, &gvisor()).unwrap();
        set_scheduling(&mut pod, &gvisor()).unwrap();
        assert_eq!(
            pod["spec"]["overhead"],
            json!({"cpu": "250m", "memory": "120Mi"})
        );
        assert_eq!(
            pod["spec"]["nodeSelector"],
            json!({"zone": "a", "runtime": "gvisor"})
        );
        assert_eq!(pod["spec"]["tolerations"][0]["key"], "sandboxed");
        assert_eq!(check_overhead(&pod, Some(&gvisor())), Ok(()));
    }

    #[test]
    fn conflicting_pods_are_refused() {
        let mut pod = json!({"spec": {"overhead": {"cpu": "1"}}});
        assert_eq!(set_overhead(&mut pod, &gvisor()), Err(OVERHEAD_MISMATCH));
        let mut pod = json!({"spec": {"nodeSelector": {"runtime": "runc"}}});
        assert_eq!(
            set_scheduling(&mut pod, &gvisor()).unwrap_err(),
            "conflict: runtimeClass.scheduling.nodeSelector[runtime] = gvisor; pod.spec.nodeSelector[runtime] = runc"
        );
        let pod = json!({"spec": {"overhead": {"cpu": "1"}}});
        assert_eq!(
            check_overhead(&pod, None),
            Err(
                "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
            )
        );
    }
}
