//! DefaultTolerationSeconds (plugin/pkg/admission/defaulttolerationseconds):
//! a pod that does not tolerate `node.kubernetes.io/not-ready` or
//! `node.kubernetes.io/unreachable` NoExecute taints gets tolerations for 300
//! seconds, so it is evicted five minutes after its node fails.

use serde_json::{Value, json};

use super::{Operation, Request};

pub const NAME: &str = "DefaultTolerationSeconds";

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Upstream's `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`.
const SECONDS: i64 = 300;

/// Adds the tolerations to pods being created or updated.
pub fn admit(req: &Request<'_>, pod: &mut Value) {
    if req.is("", "pods") && req.subresource.is_none() && req.operation != Operation::Delete {
        add_default_tolerations(pod);
    }
}

fn add_default_tolerations(pod: &mut Value) {
    let tolerates = |key: &str| {
        pod["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                let k = t["key"].as_str().unwrap_or("");
                let effect = t["effect"].as_str().unwrap_or("");
                (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
            })
    };
    let missing: Vec<&str> = [NOT_READY, UNREACHABLE]
        .into_iter()
        .filter(|k| !tolerates(k))
        .collect();
    for key in missing {
        let toleration = json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": SECONDS});
        match pod["spec"]["tolerations"].as_array_mut() {
            Some(t) => t.push(toleration),
            None => pod["spec"]["tolerations"] = json!([toleration]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_tolerate_failed_nodes_for_five_minutes() {
        let mut pod = json!({"spec": {}});
        add_default_tolerations(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        add_default_tolerations(&mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_pod_tolerating_everything_gets_nothing_more() {
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_default_tolerations(&mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 1);
        let mut pod = json!({"spec": {"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}});
        add_default_tolerations(&mut pod);
        assert_eq!(pod["spec"]["tolerations"][1]["key"], NOT_READY);
        assert_eq!(pod["spec"]["tolerations"][0]["tolerationSeconds"], 10);
    }
}
