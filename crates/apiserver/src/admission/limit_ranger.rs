//! LimitRanger (plugin/pkg/admission/limitranger): the LimitRanges of a
//! namespace default the requests and limits of new pods' containers, and
//! refuse pods and claims outside their min, max and maxLimitRequestRatio.

use serde_json::{Value, json};
use skiff_api_types::quantity::Quantity;

use super::resources::{self, ResourceList};
use super::{Operation, Request, lookup, namespace_of};
use crate::status::ApiError;

pub const NAME: &str = "LimitRanger";

/// The annotation recording what the plugin defaulted.
const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// One `spec.limits[]` item with the defaults upstream gives a stored
/// LimitRange (SetDefaults_LimitRangeItem) filled in.
#[derive(Debug, Default)]
struct Item {
    kind: String,
    min: ResourceList,
    max: ResourceList,
    default: ResourceList,
    default_request: ResourceList,
    ratio: ResourceList,
}

impl Item {
    fn from_json(v: &Value) -> Item {
        let mut item = Item {
            kind: v["type"].as_str().unwrap_or("").to_owned(),
            min: resources::parse(&v["min"]),
            max: resources::parse(&v["max"]),
            default: resources::parse(&v["default"]),
            default_request: resources::parse(&v["defaultRequest"]),
            ratio: resources::parse(&v["maxLimitRequestRatio"]),
        };
        if item.kind == "Container" {
            for (k, q) in &item.max {
                item.default.entry(k.clone()).or_insert(*q);
            }
            for (k, q) in &item.default {
                item.default_request.entry(k.clone()).or_insert(*q);
            }
            for (k, q) in &item.min {
                item.default_request.entry(k.clone()).or_insert(*q);
            }
        }
        item
    }
}

/// Upstream's DefaultLimitRangerActions.SupportsAttributes: pods when
/// created, claims when created or updated; no subresources.
fn applies(req: &Request<'_>, old: Option<&Value>) -> bool {
    if req.subresource.is_some()
        || old.is_some_and(|o| o["metadata"].get("deletionTimestamp").is_some())
    {
        return false;
    }
    match req.operation {
        Operation::Create => req.is("", "pods") || req.is("", "persistentvolumeclaims"),
        Operation::Update => req.is("", "persistentvolumeclaims"),
        Operation::Delete => false,
    }
}

async fn items(req: &Request<'_>, obj: &Value) -> Result<Vec<Vec<Item>>, ApiError> {
    let ranges = lookup::namespaced(
        req.api,
        lookup::resource("", "limitranges"),
        namespace_of(obj),
    )
    .await?;
    Ok(ranges
        .iter()
        .map(|r| {
            r["spec"]["limits"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Item::from_json)
                .collect()
        })
        .collect())
}

/// The mutating half: default container resources.
pub async fn admit(
    req: &Request<'_>,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if req.is("", "limitranges") && req.operation == Operation::Create {
        // The live list this server may remember is stale now.
        lookup::forget(req.api, req.resource, namespace_of(obj));
    }
    if !applies(req, old) || !req.is("", "pods") {
        return Ok(());
    }
    for range in items(req, obj).await? {
        default_pod(obj, &range);
    }
    Ok(())
}

/// The validating half: min, max and ratio.
pub async fn validate(req: &Request<'_>, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    if !applies(req, old) {
        return Ok(());
    }
    for range in items(req, obj).await? {
        let errors = if req.is("", "pods") {
            check_pod(obj, &range)
        } else {
            check_claim(obj, &range)
        };
        if !errors.is_empty() {
            return Err(req.forbidden(obj, aggregate(&errors)));
        }
    }
    Ok(())
}

/// Fills in the Container defaults of one LimitRange and records them in
/// the `kubernetes.io/limit-ranger` annotation.
fn default_pod(pod: &mut Value, range: &[Item]) {
    let mut requests = ResourceList::new();
    let mut limits = ResourceList::new();
    for item in range.iter().filter(|i| i.kind == "Container") {
        requests.extend(item.default_request.clone());
        limits.extend(item.default.clone());
    }
    let mut notes = Vec::new();
    for (key, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(list) = pod["spec"].get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in list {
            let name = c["name"].as_str().unwrap_or("").to_owned();
            if !c["resources"].is_object() {
                c["resources"] = json!({});
            }
            let set_limits = fill(&mut c["resources"]["limits"], &limits);
            let set_requests = fill(&mut c["resources"]["requests"], &requests);
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {what} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
            }
        }
    }
    if !notes.is_empty() {
        if !pod["metadata"]["annotations"].is_object() {
            pod["metadata"]["annotations"] = json!({});
        }
        pod["metadata"]["annotations"][ANNOTATION] =
            json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

/// Adds the `defaults` a resource list lacks; answers the names added, sorted.
fn fill(list: &mut Value, defaults: &ResourceList) -> Vec<String> {
    if !list.is_object() {
        *list = json!({});
    }
    let mut set = Vec::new();
    for (k, q) in defaults {
        if list.get(k).is_none() {
            list[k] = json!(q.canonical());
            set.push(k.clone());
        }
    }
    set
}

/// PodValidateLimitFunc: each container against the Container items, the
/// whole pod against the Pod items.
fn check_pod(pod: &Value, range: &[Item]) -> Vec<String> {
    let spec = &pod["spec"];
    let mut errors = Vec::new();
    for item in range {
        match item.kind.as_str() {
            "Container" => {
                for key in ["containers", "initContainers"] {
                    for c in spec[key].as_array().into_iter().flatten() {
                        let requests = resources::parse(&c["resources"]["requests"]);
                        let limits = resources::parse(&c["resources"]["limits"]);
                        check(item, "Container", &requests, &limits, &mut errors);
                    }
                }
            }
            "Pod" => {
                let requests = resources::pod_total(spec, "requests");
                let limits = resources::pod_total(spec, "limits");
                check(item, "Pod", &requests, &limits, &mut errors);
            }
            _ => {}
        }
    }
    errors
}

/// The PersistentVolumeClaim items: min and max of the claim's requests.
fn check_claim(claim: &Value, range: &[Item]) -> Vec<String> {
    let requests = resources::parse(&claim["spec"]["resources"]["requests"]);
    let mut errors = Vec::new();
    for item in range.iter().filter(|i| i.kind == "PersistentVolumeClaim") {
        for (name, enforced) in &item.min {
            errors.extend(min(
                name,
                "PersistentVolumeClaim",
                enforced,
                &requests,
                &ResourceList::new(),
            ));
        }
        for (name, enforced) in &item.max {
            errors.extend(max_request(
                name,
                "PersistentVolumeClaim",
                enforced,
                &requests,
            ));
        }
    }
    errors
}

fn check(
    item: &Item,
    kind: &str,
    requests: &ResourceList,
    limits: &ResourceList,
    errors: &mut Vec<String>,
) {
    for (name, enforced) in &item.min {
        errors.extend(min(name, kind, enforced, requests, limits));
    }
    for (name, enforced) in &item.max {
        errors.extend(max(name, kind, enforced, requests, limits));
    }
    for (name, enforced) in &item.ratio {
        errors.extend(ratio(name, kind, enforced, requests, limits));
    }
}

fn min(
    name: &str,
    kind: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(request) = requests.get(name) else {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if request < enforced {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but request is {request}"
        ));
    }
    match limits.get(name) {
        Some(limit) if limit < enforced => Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but limit is {limit}"
        )),
        _ => None,
    }
}

fn max(
    name: &str,
    kind: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(limit) = limits.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if limit > enforced {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but limit is {limit}"
        ));
    }
    match requests.get(name) {
        Some(request) if request > enforced => Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {request}"
        )),
        _ => None,
    }
}

/// The max of a kind that has only requests (claims).
fn max_request(
    name: &str,
    kind: &str,
    enforced: &Quantity,
    requests: &ResourceList,
) -> Option<String> {
    match requests.get(name) {
        None => Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No request is specified"
        )),
        Some(request) if request > enforced => Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {request}"
        )),
        _ => None,
    }
}

fn ratio(
    name: &str,
    kind: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let request = requests.get(name).filter(|q| !q.is_zero());
    let limit = limits.get(name).filter(|q| !q.is_zero());
    let Some(request) = request else {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    };
    let Some(limit) = limit else {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    };
    // limit / request > enforced, in exact arithmetic: limit > enforced × request.
    let (l, r, e) = (
        limit.nano_value(),
        request.nano_value(),
        enforced.nano_value(),
    );
    let exceeds = match e.checked_mul(r) {
        Some(bound) => l
            .checked_mul(1_000_000_000)
            .is_none_or(|scaled| scaled > bound),
        None => false,
    };
    exceeds.then(|| {
        format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {:.6}",
            l as f64 / r as f64
        )
    })
}

/// Upstream's utilerrors.NewAggregate(...).Error(): one message as is,
/// several deduplicated in brackets.
fn aggregate(errors: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [one] => (*one).to_owned(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Vec<Item> {
        limits
            .as_array()
            .unwrap()
            .iter()
            .map(Item::from_json)
            .collect()
    }

    #[test]
    fn containers_get_the_default_requests_and_limits_they_lack() {
        let mut pod = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "a"},
                {"name": "b", "resources": {"requests": {"cpu": "50m"}}},
            ]},
        });
        let r = range(
            json!([{"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m", "memory": "64Mi"}}]),
        );
        default_pod(&mut pod, &r);
        let a = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(a["requests"], json!({"cpu": "100m", "memory": "64Mi"}));
        assert_eq!(a["limits"], json!({"cpu": "500m"}));
        assert_eq!(
            pod["spec"]["containers"][1]["resources"]["requests"]["cpu"],
            "50m"
        );
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container a; cpu limit for container a; memory request for container b; cpu limit for container b"
        );
    }

    #[test]
    fn a_max_alone_becomes_the_default_limit_and_request() {
        let r = range(json!([{"type": "Container", "max": {"memory": "1Gi"}}]));
        let mut pod = json!({"metadata": {}, "spec": {"containers": [{"name": "a"}]}});
        default_pod(&mut pod, &r);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["limits"]["memory"],
            "1Gi"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["memory"],
            "1Gi"
        );
    }

    #[test]
    fn limits_outside_the_range_are_refused_with_upstreams_words() {
        let r = range(
            json!([{"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"}, "maxLimitRequestRatio": {"cpu": "2"}}]),
        );
        let pod = |req: &str, lim: &str| json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": req}, "limits": {"cpu": lim}}}]}});
        assert!(check_pod(&pod("500m", "1"), &r).is_empty());
        assert_eq!(
            check_pod(&pod("500m", "2"), &r),
            [
                "maximum cpu usage per Container is 1, but limit is 2",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"
            ]
        );
        assert_eq!(
            check_pod(&pod("50m", "100m"), &r),
            ["minimum cpu usage per Container is 100m, but request is 50m"]
        );
        assert_eq!(
            aggregate(&check_pod(
                &json!({"spec": {"containers": [{"name": "a"}]}}),
                &r
            )),
            "[minimum cpu usage per Container is 100m.  No request is specified, maximum cpu usage per Container is 1.  No limit is specified, cpu max limit to request ratio per Container is 2, but no request is specified or request is 0]"
        );
    }

    #[test]
    fn pod_items_look_at_the_whole_pod_and_claims_at_their_storage() {
        let r = range(json!([{"type": "Pod", "max": {"memory": "1Gi"}}]));
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "768Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "512Mi"}}},
        ]}});
        assert_eq!(
            check_pod(&pod, &r),
            ["maximum memory usage per Pod is 1Gi, but limit is 1280Mi"]
        );
        let r = range(json!([{"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}}]));
        let claim = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}});
        assert_eq!(
            check_claim(&claim, &r),
            ["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"]
        );
    }
}
