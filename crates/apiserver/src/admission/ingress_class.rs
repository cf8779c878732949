//! DefaultIngressClass (plugin/pkg/admission/network/defaultingressclass):
//! an Ingress that names no class gets the IngressClass annotated
//! `ingressclass.kubernetes.io/is-default-class: "true"` (the newest, if
//! several are).

use serde_json::{Value, json};

use super::{Operation, Request, lookup};

pub const NAME: &str = "DefaultIngressClass";

const DEFAULT_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The annotation that named an ingress's class before `ingressClassName`.
const LEGACY_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Sets the class of new ingresses that have none.
pub fn admit(req: &Request<'_>, ingress: &mut Value) {
    if !(req.is("networking.k8s.io", "ingresses")
        && req.subresource.is_none()
        && req.operation == Operation::Create)
    {
        return;
    }
    if ingress["spec"]["ingressClassName"].is_string()
        || ingress["metadata"]["annotations"]
            .get(LEGACY_ANNOTATION)
            .is_some()
    {
        return;
    }
    let classes = lookup::list(
        req.api,
        lookup::resource("networking.k8s.io", "ingressclasses"),
        None,
    );
    if let Some(class) = newest_default(&classes, DEFAULT_ANNOTATION) {
        ingress["spec"]["ingressClassName"] = json!(class);
    }
}

/// The name of the newest object annotated `annotation: "true"` (by
/// creation time, then name).
pub(super) fn newest_default<'a>(objects: &'a [Value], annotation: &str) -> Option<&'a str> {
    objects
        .iter()
        .filter(|o| o["metadata"]["annotations"][annotation] == "true")
        .max_by(|a, b| {
            let key = |o: &'a Value| {
                (
                    o["metadata"]["creationTimestamp"].as_str().unwrap_or(""),
                    std::cmp::Reverse(o["metadata"]["name"].as_str().unwrap_or("")),
                )
            };
            key(a).cmp(&key(b))
        })
        .and_then(|o| o["metadata"]["name"].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_default_wins() {
        let class = |name: &str, at: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": at,
                "annotations": {DEFAULT_ANNOTATION: if default { "true" } else { "false" }}}})
        };
        let classes = [
            class("old", "2024-01-01T00:00:00Z", true),
            class("new", "2024-06-01T00:00:00Z", true),
            class("newest-but-not-default", "2025-01-01T00:00:00Z", false),
        ];
        assert_eq!(newest_default(&classes, DEFAULT_ANNOTATION), Some("new"));
        assert_eq!(newest_default(&classes[2..], DEFAULT_ANNOTATION), None);
    }
}
