//! Priority (plugin/pkg/admission/priority): a new pod's `priority` (and
//! `preemptionPolicy`) come from its PriorityClass, or from the global
//! default class when it names none; at most one class is the global
//! default. `system-node-critical` and `system-cluster-critical` always
//! exist.

use serde_json::{Value, json};

use super::{Operation, Request, lookup};
use crate::status::ApiError;

pub const NAME: &str = "Priority";

/// The classes upstream creates at startup: name, value, description.
pub const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// What a pod gets from a PriorityClass.
#[derive(Debug, PartialEq)]
struct Resolved {
    class: String,
    value: i64,
    /// Upstream defaults a PriorityClass's policy to PreemptLowerPriority,
    /// and gives it to pods when there is no default class.
    preemption: String,
}

const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";

fn classes(req: &Request<'_>) -> Vec<Value> {
    lookup::list(
        req.api,
        lookup::resource("scheduling.k8s.io", "priorityclasses"),
        None,
    )
}

/// The PriorityClass `name`: stored, or one of the system classes.
async fn class(req: &Request<'_>, name: &str) -> Result<Option<Value>, ApiError> {
    let pcs = lookup::resource("scheduling.k8s.io", "priorityclasses");
    if let Some(pc) = lookup::get(req.api, pcs, None, name).await? {
        return Ok(Some(pc));
    }
    Ok(SYSTEM_CLASSES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(n, v, _)| json!({"metadata": {"name": n}, "value": v, "preemptionPolicy": PREEMPT_LOWER_PRIORITY})))
}

/// The global default class: the lowest-valued of those marked default.
fn global_default(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| c["globalDefault"] == true)
        .min_by_key(|c| c["value"].as_i64().unwrap_or(0))
}

fn resolved(pc: &Value) -> Resolved {
    Resolved {
        class: pc["metadata"]["name"].as_str().unwrap_or("").to_owned(),
        value: pc["value"].as_i64().unwrap_or(0),
        preemption: pc["preemptionPolicy"]
            .as_str()
            .unwrap_or(PREEMPT_LOWER_PRIORITY)
            .to_owned(),
    }
}

/// The mutating half: resolves new pods' priority.
pub async fn admit(
    req: &Request<'_>,
    pod: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if !req.is("", "pods") || req.subresource.is_some() {
        return Ok(());
    }
    match req.operation {
        Operation::Update => {
            // Set at creation; a client that leaves them out keeps them.
            if let Some(old) = old {
                for field in ["priority", "preemptionPolicy"] {
                    if pod["spec"].get(field).is_none_or(Value::is_null)
                        && !old["spec"][field].is_null()
                    {
                        pod["spec"][field] = old["spec"][field].clone();
                    }
                }
            }
            Ok(())
        }
        Operation::Create => {
            let wanted = pod["spec"]["priorityClassName"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_owned);
            let got = match wanted {
                None => global_default(&classes(req))
                    .map(resolved)
                    .unwrap_or(Resolved {
                        class: String::new(),
                        value: 0,
                        preemption: PREEMPT_LOWER_PRIORITY.into(),
                    }),
                Some(name) => match class(req, &name).await? {
                    Some(pc) => resolved(&pc),
                    None => {
                        return Err(req.forbidden(
                            pod,
                            format!("no PriorityClass with name {name} was found"),
                        ));
                    }
                },
            };
            apply(pod, &got).map_err(|why| req.forbidden(pod, why))
        }
        Operation::Delete => Ok(()),
    }
}

/// Writes the resolved priority into the pod, refusing values the pod set
/// differently itself.
fn apply(pod: &mut Value, got: &Resolved) -> Result<(), String> {
    if !got.class.is_empty() {
        pod["spec"]["priorityClassName"] = json!(got.class);
    }
    if let Some(p) = pod["spec"]["priority"].as_i64()
        && p != got.value
    {
        return Err(format!(
            "the integer value of priority ({p}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
            got.value
        ));
    }
    pod["spec"]["priority"] = json!(got.value);
    let policy = &got.preemption;
    if let Some(p) = pod["spec"]["preemptionPolicy"].as_str()
        && p != policy
    {
        return Err(format!(
            "the string value of PreemptionPolicy ({p}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        ));
    }
    pod["spec"]["preemptionPolicy"] = json!(policy);
    Ok(())
}

/// The validating half: one global default class.
pub fn validate(req: &Request<'_>, pc: &Value) -> Result<(), ApiError> {
    if !req.is("scheduling.k8s.io", "priorityclasses")
        || req.subresource.is_some()
        || req.operation == Operation::Delete
        || pc["globalDefault"] != true
    {
        return Ok(());
    }
    let all = classes(req);
    if let Some(existing) = global_default(&all) {
        let name = existing["metadata"]["name"].as_str().unwrap_or("");
        if req.operation == Operation::Create
            || name != pc["metadata"]["name"].as_str().unwrap_or("")
        {
            return Err(req.forbidden(
                pc,
                format!(
                    "PriorityClass {name} is already marked as default. Only one default can exist"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_global_default_wins() {
        let classes = [
            json!({"metadata": {"name": "a"}, "value": 100, "globalDefault": true}),
            json!({"metadata": {"name": "b"}, "value": 10, "globalDefault": true}),
            json!({"metadata": {"name": "c"}, "value": 1}),
        ];
        assert_eq!(global_default(&classes).unwrap()["metadata"]["name"], "b");
    }

    #[test]
    fn a_pod_may_not_claim_another_priority_than_its_class() {
        let got = Resolved {
            class: "high".into(),
            value: 1000,
            preemption: "Never".into(),
        };
        let mut pod = json!({"spec": {"priorityClassName": "high"}});
        apply(&mut pod, &got).unwrap();
        assert_eq!(pod["spec"]["priority"], 1000);
        assert_eq!(pod["spec"]["preemptionPolicy"], "Never");
        let mut pod = json!({"spec": {"priorityClassName": "high", "priority": 5}});
        assert_eq!(
            apply(&mut pod, &got).unwrap_err(),
            "the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
        );
    }

    #[test]
    fn without_a_default_class_pods_get_priority_zero() {
        let mut pod = json!({"spec": {}});
        let none = Resolved {
            class: String::new(),
            value: 0,
            preemption: PREEMPT_LOWER_PRIORITY.into(),
        };
        apply(&mut pod, &none).unwrap();
        assert_eq!(pod["spec"]["priority"], 0);
        assert_eq!(pod["spec"]["preemptionPolicy"], PREEMPT_LOWER_PRIORITY);
        assert!(pod["spec"].get("priorityClassName").is_none());
    }
}
