//! Priority (plugin/pkg/admission/priority): a new pod's `priority` (and
//! `preemptionPolicy`) come from its PriorityClass object, or from the
//! global default class when it names none; at most one class is the global
//! default.
//!
//! Here too are upstream's facts about the system classes
//! `system-node-critical` and `system-cluster-critical`, which the server
//! creates at its first start (see `bootstrap`), and the PriorityClass
//! validation that keeps them as they are ([`class_errors`]).

use serde_json::{Value, json};
use skiff_api_types::validation::{FieldError, Path};

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

/// The PriorityClass `name`, as stored (the system classes included).
async fn class(req: &Request<'_>, name: &str) -> Result<Option<Value>, ApiError> {
    let pcs = lookup::resource("scheduling.k8s.io", "priorityclasses");
    lookup::get(req.api, pcs, None, name).await
}

/// Upstream's HighestUserDefinablePriority.
const HIGHEST_USER_DEFINABLE: i64 = 1_000_000_000;
/// Names only the system classes may have.
const SYSTEM_PREFIX: &str = "system-";

/// Whether `name` is one of the system classes.
pub fn is_system_class(name: &str) -> bool {
    SYSTEM_CLASSES.iter().any(|(n, _, _)| *n == name)
}

/// The system classes as the server creates them.
pub fn system_class_objects() -> impl Iterator<Item = Value> {
    SYSTEM_CLASSES.iter().map(|(name, value, description)| {
        json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
            "preemptionPolicy": PREEMPT_LOWER_PRIORITY,
        })
    })
}

/// Upstream's PriorityClass validation (pkg/apis/scheduling/validation): on
/// create, names starting with `system-` are reserved for the system classes
/// with their own value and globalDefault, and other classes may not go
/// above 1000000000; on update (`old`), value and preemptionPolicy are
/// immutable — so the system classes keep what they are.
pub fn class_errors(pc: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let value = pc["value"].as_i64().unwrap_or(0);
    let policy = |pc: &Value| {
        pc["preemptionPolicy"]
            .as_str()
            .unwrap_or(PREEMPT_LOWER_PRIORITY)
            .to_owned()
    };
    if let Some(old) = old {
        if value != old["value"].as_i64().unwrap_or(0) {
            errors.push(FieldError::forbidden(
                &Path::new("value"),
                "may not be changed in an update.",
            ));
        }
        let (new_policy, old_policy) = (policy(pc), policy(old));
        if new_policy != old_policy {
            errors.push(FieldError::invalid(
                &Path::new("preemptionPolicy"),
                new_policy.as_str(),
                "field is immutable",
            ));
        }
        return errors;
    }
    let name = pc["metadata"]["name"].as_str().unwrap_or("");
    if name.starts_with(SYSTEM_PREFIX) {
        if let Err(why) = known_system_class(name, value, pc["globalDefault"] == true) {
            errors.push(FieldError::forbidden(
                &Path::new("metadata").child("name"),
                format!(
                    "priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only. error: {why}"
                ),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE {
        errors.push(FieldError::forbidden(
            &Path::new("value"),
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"),
        ));
    }
    if let Some(p) = pc["preemptionPolicy"].as_str()
        && !matches!(p, PREEMPT_LOWER_PRIORITY | "Never")
    {
        errors.push(FieldError::not_supported(
            &Path::new("preemptionPolicy"),
            p,
            &[PREEMPT_LOWER_PRIORITY, "Never"],
        ));
    }
    errors
}

/// Upstream's IsKnownSystemPriorityClass.
fn known_system_class(name: &str, value: i64, global_default: bool) -> Result<(), String> {
    let Some((_, want, _)) = SYSTEM_CLASSES.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("{name} is not a known system priority class"));
    };
    if value != *want {
        return Err(format!("value of {name} PriorityClass must be {want}"));
    }
    if global_default {
        return Err(format!(
            "globalDefault of {name} PriorityClass must be false"
        ));
    }
    Ok(())
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
    fn system_names_are_reserved_and_values_immutable() {
        let messages = |errors: Vec<FieldError>| {
            errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.detail))
                .collect::<Vec<_>>()
        };
        for pc in system_class_objects() {
            assert_eq!(class_errors(&pc, None), []);
        }
        let forged = json!({"metadata": {"name": "system-node-critical"}, "value": 5});
        assert_eq!(
            messages(class_errors(&forged, None)),
            [
                "metadata.name: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000"
            ]
        );
        let unknown = json!({"metadata": {"name": "system-mine"}, "value": 5});
        assert_eq!(
            messages(class_errors(&unknown, None)),
            [
                "metadata.name: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"
            ]
        );
        let high = json!({"metadata": {"name": "mine"}, "value": 1_000_000_001});
        assert_eq!(
            messages(class_errors(&high, None)),
            ["value: maximum allowed value of a user defined priority is 1000000000"]
        );
        let old = system_class_objects().next().unwrap();
        let mut changed = old.clone();
        changed["value"] = json!(1);
        changed["preemptionPolicy"] = json!("Never");
        assert_eq!(
            messages(class_errors(&changed, Some(&old))),
            [
                "value: may not be changed in an update.",
                "preemptionPolicy: field is immutable"
            ]
        );
        let mut described = old.clone();
        described["description"] = json!("mine now");
        assert_eq!(class_errors(&described, Some(&old)), []);
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
