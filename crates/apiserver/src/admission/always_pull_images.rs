//! AlwaysPullImages (plugin/pkg/admission/alwayspullimages), off unless
//! enabled: every container of a pod pulls its image on every start, so a
//! pod cannot use a private image some other pod pulled onto its node.

use serde_json::{Value, json};

use super::{Operation, Request, containers, for_each_container_mut};
use crate::status::ApiError;
use skiff_api_types::validation::{FieldError, Path};

pub const NAME: &str = "AlwaysPullImages";

fn applies(req: &Request<'_>) -> bool {
    req.is("", "pods")
        && matches!(req.subresource, None | Some("ephemeralcontainers"))
        && req.operation != Operation::Delete
}

/// Sets `imagePullPolicy: Always`, on update only where an image changed.
pub fn admit(req: &Request<'_>, pod: &mut Value, old: Option<&Value>) {
    if !applies(req) {
        return;
    }
    if req.operation == Operation::Update
        && old.is_some_and(|old| images(old).is_superset(&images(pod)))
    {
        return;
    }
    for_each_container_mut(&mut pod["spec"], |c| c["imagePullPolicy"] = json!("Always"));
}

/// Refuses containers that would not pull.
pub fn validate(req: &Request<'_>, pod: &Value) -> Result<(), ApiError> {
    if !applies(req) {
        return Ok(());
    }
    match not_always(pod).as_slice() {
        [] => Ok(()),
        [one] => Err(req.forbidden(pod, one.to_string())),
        many => {
            // Upstream aggregates one Forbidden error per container.
            let mut e = req.forbidden(pod, many[0].to_string());
            let all: Vec<String> = many
                .iter()
                .map(|f| req.forbidden(pod, f.to_string()).message)
                .collect();
            e.message = format!("[{}]", all.join(", "));
            Err(e)
        }
    }
}

/// A NotSupported error per container whose pull policy is not Always.
fn not_always(pod: &Value) -> Vec<FieldError> {
    let spec = &pod["spec"];
    let mut wrong = Vec::new();
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in spec[key].as_array().into_iter().flatten().enumerate() {
            let policy = c["imagePullPolicy"].as_str().unwrap_or("");
            if policy != "Always" {
                let path = Path::new("spec")
                    .child(key)
                    .index(i)
                    .child("imagePullPolicy");
                wrong.push(FieldError::not_supported(&path, policy, &["Always"]));
            }
        }
    }
    wrong
}

fn images(pod: &Value) -> std::collections::BTreeSet<String> {
    containers(&pod["spec"])
        .filter_map(|c| c["image"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_always_passes() {
        let pod = json!({"spec": {
            "containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}],
            "initContainers": [{"name": "i", "image": "y", "imagePullPolicy": "Always"}],
        }});
        let wrong = not_always(&pod);
        assert_eq!(wrong.len(), 1);
        assert_eq!(
            wrong[0].to_string(),
            "spec.containers[0].imagePullPolicy: Unsupported value: \"IfNotPresent\": supported values: \"Always\""
        );
        let mut pod = pod;
        for_each_container_mut(&mut pod["spec"], |c| c["imagePullPolicy"] = json!("Always"));
        assert!(not_always(&pod).is_empty());
    }
}
