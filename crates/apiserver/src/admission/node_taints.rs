//! TaintNodesByCondition (plugin/pkg/admission/nodetaint): a Node is
//! registered with the `node.kubernetes.io/not-ready:NoSchedule` taint, so no
//! pod lands on it before the node lifecycle controller has seen it Ready and
//! removed the taint.

use serde_json::{Value, json};

use super::{Operation, Request};

pub const NAME: &str = "TaintNodesByCondition";

const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// Taints new Nodes.
pub fn admit(req: &Request<'_>, node: &mut Value) {
    if req.is("", "nodes") && req.subresource.is_none() && req.operation == Operation::Create {
        add_not_ready_taint(node);
    }
}

fn add_not_ready_taint(node: &mut Value) {
    let present = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["key"] == NOT_READY && t["effect"] == "NoSchedule");
    if present {
        return;
    }
    let taint = json!({"key": NOT_READY, "effect": "NoSchedule"});
    match node["spec"]["taints"].as_array_mut() {
        Some(taints) => taints.push(taint),
        None => node["spec"]["taints"] = json!([taint]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_nodes_are_tainted_not_ready_once() {
        let mut node = json!({"metadata": {"name": "n"}});
        add_not_ready_taint(&mut node);
        add_not_ready_taint(&mut node);
        assert_eq!(
            node["spec"]["taints"],
            json!([{"key": NOT_READY, "effect": "NoSchedule"}])
        );
        let mut node = json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
        add_not_ready_taint(&mut node);
        assert_eq!(node["spec"]["taints"].as_array().unwrap().len(), 2);
    }
}
