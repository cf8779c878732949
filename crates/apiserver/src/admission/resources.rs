//! Resource lists (`{"cpu": "500m", "memory": "1Gi"}`) as exact quantities,
//! and what a pod asks for in total, as upstream's resource helpers count it
//! (k8s.io/component-helpers/resource).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use skiff_api_types::quantity::Quantity;

/// A `ResourceList`, sorted by name.
pub(super) type ResourceList = BTreeMap<String, Quantity>;

/// Reads a resource list; entries that are not quantities are skipped
/// (validation has refused them already).
pub(super) fn parse(v: &Value) -> ResourceList {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), quantity(v)?)))
        .collect()
}

/// One quantity, written as a string (or, leniently, a number).
pub(super) fn quantity(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

/// A resource list as JSON, each quantity in its canonical form.
pub(super) fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, q)| (k.clone(), Value::String(q.canonical())))
            .collect::<Map<_, _>>(),
    )
}

/// `a + b`, per resource.
pub(super) fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut sum = a.clone();
    add_into(&mut sum, b);
    sum
}

pub(super) fn add_into(into: &mut ResourceList, b: &ResourceList) {
    for (k, q) in b {
        let total = match into.get(k) {
            Some(have) => have.checked_add(q).unwrap_or(Quantity::MAX),
            None => *q,
        };
        into.insert(k.clone(), total);
    }
}

/// Raises each resource of `into` to at least `b`'s.
fn max_into(into: &mut ResourceList, b: &ResourceList) {
    for (k, q) in b {
        if into.get(k).is_none_or(|have| have < q) {
            into.insert(k.clone(), *q);
        }
    }
}

/// The entries of `list` named in `names`.
pub(super) fn mask<'a>(
    list: &ResourceList,
    names: impl IntoIterator<Item = &'a String>,
) -> ResourceList {
    names
        .into_iter()
        .filter_map(|n| Some((n.clone(), *list.get(n)?)))
        .collect()
}

/// `"cpu=1,memory=1Gi"`: upstream's prettyPrint of a resource list.
pub(super) fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, q)| format!("{k}={q}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What a pod's containers ask for in total under `field` (`"requests"` or
/// `"limits"`): regular and sidecar containers add up, each other init
/// container runs alone beside the sidecars started before it, and the pod
/// needs the larger of the two. Without overhead.
pub(super) fn pod_total(spec: &Value, field: &str) -> ResourceList {
    let mut total = ResourceList::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        add_into(&mut total, &parse(&c["resources"][field]));
    }
    let mut sidecars = ResourceList::new();
    let mut init = ResourceList::new();
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        let own = parse(&c["resources"][field]);
        let running = if c["restartPolicy"] == "Always" {
            add_into(&mut total, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            add(&own, &sidecars)
        };
        max_into(&mut init, &running);
    }
    max_into(&mut total, &init);
    total
}

/// Upstream's PodRequests: [`pod_total`] of requests plus the pod overhead.
pub(super) fn pod_requests(spec: &Value) -> ResourceList {
    add(&pod_total(spec, "requests"), &parse(&spec["overhead"]))
}

/// Upstream's PodLimits: [`pod_total`] of limits, plus the overhead of the
/// resources that have a limit.
pub(super) fn pod_limits(spec: &Value) -> ResourceList {
    let mut limits = pod_total(spec, "limits");
    let overhead = parse(&spec["overhead"]);
    for (k, q) in limits.iter_mut() {
        if let Some(o) = overhead.get(k) {
            *q = q.checked_add(o).unwrap_or(Quantity::MAX);
        }
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn pods_request_the_sum_of_containers_or_their_largest_init_container() {
        let spec = json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}},
            ],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "1"}}},
            ],
            "overhead": {"cpu": "10m"},
        });
        let r = pod_requests(&spec);
        assert_eq!(r["cpu"], q("1010m"));
        assert_eq!(r["memory"], q("64Mi"));
    }

    #[test]
    fn sidecars_add_to_the_pod_and_to_later_init_containers() {
        let spec = json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "100m"}}},
            ],
        });
        assert_eq!(pod_total(&spec, "requests")["cpu"], q("150m"));
    }

    #[test]
    fn lists_print_sorted_and_canonical() {
        let list = parse(&json!({"pods": "2", "cpu": "0.5", "memory": 1024}));
        assert_eq!(pretty(&list), "cpu=500m,memory=1024,pods=2");
        assert_eq!(to_json(&list)["cpu"], "500m");
    }
}
