//! Converting custom resources between the versions of their CRD, as
//! upstream's apiextensions-apiserver does (pkg/apiserver/conversion).
//!
//! With `spec.conversion.strategy: None` only `apiVersion` changes. With
//! `Webhook`, the objects that are not in the wanted version already are
//! POSTed together to the CRD's conversion webhook in a ConversionReview
//! (`apiextensions.k8s.io/v1`, or v1beta1 if that is all the webhook
//! accepts), over HTTPS trusting the webhook's `caBundle` — the client the
//! admission webhooks use — and its `convertedObjects` replace them, once
//! checked as upstream checks them: as many as sent, each in the wanted
//! version with the same kind, name, namespace and uid; of the metadata only
//! labels and annotations may change (the rest is restored from the
//! original).
//!
//! A failure is the error upstream gives (`conversion webhook for
//! <group/version>, Kind=<kind> failed: ...`), answered as a 500.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::admission::webhook;
use crate::cache::Cache;

/// How long a conversion webhook has to answer (the `?timeout=30s`
/// upstream's webhook client sends).
const TIMEOUT: u64 = 30;

/// How a CRD's objects change version.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Strategy {
    /// Only `apiVersion` changes.
    #[default]
    None,
    /// A webhook converts them.
    Webhook(Arc<Webhook>),
}

/// A CRD's conversion webhook.
#[derive(Debug, PartialEq)]
pub struct Webhook {
    /// `spec.conversion.webhook.clientConfig`: `url` or `service`, and
    /// `caBundle`.
    client_config: Value,
    /// The ConversionReview versions it accepts, preferred first.
    review_versions: Vec<String>,
}

impl Strategy {
    /// The strategy a CRD's `spec.conversion` names.
    pub fn from_spec(conversion: &Value) -> Strategy {
        if conversion["strategy"] != "Webhook" {
            return Strategy::None;
        }
        let hook = &conversion["webhook"];
        Strategy::Webhook(Arc::new(Webhook {
            client_config: hook["clientConfig"].clone(),
            review_versions: hook["conversionReviewVersions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        }))
    }
}

/// Converts `objects` — custom resources of one CRD, each in any of its
/// versions — to `api_version` (`group/version`). Objects already in it are
/// left as they are (and a webhook is not called when all are).
pub async fn convert(
    cache: &Cache,
    strategy: &Strategy,
    mut objects: Vec<Value>,
    api_version: &str,
) -> Result<Vec<Value>, String> {
    let pending: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i]["apiVersion"] != api_version)
        .collect();
    if pending.is_empty() {
        return Ok(objects);
    }
    match strategy {
        Strategy::None => {
            for i in pending {
                objects[i]["apiVersion"] = Value::String(api_version.to_owned());
            }
        }
        Strategy::Webhook(hook) => {
            let sent: Vec<&Value> = pending.iter().map(|&i| &objects[i]).collect();
            let converted = hook.call(cache, &sent, api_version).await?;
            for (i, obj) in pending.into_iter().zip(converted) {
                objects[i] = obj;
            }
        }
    }
    Ok(objects)
}

impl Webhook {
    /// Sends `objects` (none in `api_version`) to the webhook; the converted
    /// objects, checked and with their metadata restored, in order.
    async fn call(
        &self,
        cache: &Cache,
        objects: &[&Value],
        api_version: &str,
    ) -> Result<Vec<Value>, String> {
        let first = objects[0];
        let gvk = format!(
            "{}, Kind={}",
            first["apiVersion"].as_str().unwrap_or(""),
            first["kind"].as_str().unwrap_or("")
        );
        let failed = |why: String| format!("conversion webhook for {gvk} failed: {why}");
        let review_version = self
            .review_versions
            .iter()
            .find(|v| matches!(v.as_str(), "v1" | "v1beta1"))
            .ok_or_else(|| "no supported conversion review versions".to_owned())?;
        let uid = crate::rest::new_uid();
        let review = json!({
            "apiVersion": format!("apiextensions.k8s.io/{review_version}"),
            "kind": "ConversionReview",
            "request": {"uid": uid, "desiredAPIVersion": api_version, "objects": objects},
        });
        let endpoint = webhook::endpoint(cache, &self.client_config, TIMEOUT).map_err(failed)?;
        let answer = tokio::time::timeout(
            Duration::from_secs(TIMEOUT),
            webhook::post(
                &endpoint,
                &self.client_config["caBundle"],
                serde_json::to_vec(&review).expect("serializes"),
            ),
        )
        .await;
        let body = match answer {
            Ok(Ok(body)) => body,
            Ok(Err(why)) => return Err(failed(format!("Post {:?}: {why}", endpoint.url))),
            Err(_) => {
                return Err(failed(format!(
                    "Post {:?}: context deadline exceeded",
                    endpoint.url
                )));
            }
        };
        let answer: Value = serde_json::from_slice(&body).map_err(|e| failed(e.to_string()))?;
        let converted = converted_objects(review_version, &uid, answer).map_err(failed)?;
        if converted.len() != objects.len() {
            return Err(format!(
                "conversion webhook for {gvk} returned {} objects, expected {}",
                converted.len(),
                objects.len()
            ));
        }
        let single = objects.len() == 1;
        objects
            .iter()
            .zip(converted)
            .enumerate()
            .map(|(i, (original, converted))| {
                checked(original, converted, api_version).map_err(|(metadata, why)| {
                    let what = match (metadata, single) {
                        (false, true) => "invalid object".to_owned(),
                        (false, false) => format!("invalid converted object at index {i}"),
                        (true, true) => "invalid metadata".to_owned(),
                        (true, false) => format!("invalid metadata in object at index {i}"),
                    };
                    format!("conversion webhook for {gvk} returned {what}: {why}")
                })
            })
            .collect()
    }
}

/// The `convertedObjects` of a successful ConversionReview, as upstream's
/// getConvertedObjectsFromResponse reads them.
fn converted_objects(
    review_version: &str,
    uid: &str,
    mut answer: Value,
) -> Result<Vec<Value>, String> {
    if review_version == "v1"
        && (answer["apiVersion"] != "apiextensions.k8s.io/v1"
            || answer["kind"] != "ConversionReview")
    {
        return Err(format!(
            "expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got {}, Kind={}",
            answer["apiVersion"].as_str().unwrap_or(""),
            answer["kind"].as_str().unwrap_or("")
        ));
    }
    let response = answer
        .get_mut("response")
        .filter(|r| r.is_object())
        .ok_or_else(|| "no response provided".to_owned())?;
    // v1beta1 reviews were never checked for their uid.
    if review_version == "v1" && response["uid"] != uid {
        return Err(format!(
            "expected response.uid={uid:?}, got {:?}",
            response["uid"].as_str().unwrap_or("")
        ));
    }
    let result = &response["result"];
    if result["status"] != "Success" {
        return Err(match result["message"].as_str().filter(|m| !m.is_empty()) {
            Some(message) => message.to_owned(),
            None => format!(
                "response.result.status was '{}', not 'Success'",
                result["status"].as_str().unwrap_or("")
            ),
        });
    }
    match response["convertedObjects"].take() {
        Value::Array(objects) => Ok(objects),
        Value::Null => Ok(Vec::new()),
        other => Err(format!("convertedObjects is not a list: {other}")),
    }
}

/// A converted object checked against its original (upstream's
/// validateConvertedObject) with the original's metadata back, but for the
/// labels and annotations the webhook answered (restoreObjectMeta). The
/// error says whether the metadata was at fault.
fn checked(
    original: &Value,
    mut converted: Value,
    api_version: &str,
) -> Result<Value, (bool, String)> {
    let invalid = |why: String| Err((false, why));
    let got = converted["apiVersion"].as_str().unwrap_or("");
    if got != api_version {
        return invalid(format!(
            "invalid groupVersion (expected {api_version}, received {got})"
        ));
    }
    let (want, got) = (
        original["kind"].as_str().unwrap_or(""),
        converted["kind"].as_str().unwrap_or(""),
    );
    if want != got {
        return invalid(format!("invalid kind (expected {want}, received {got})"));
    }
    for (field, what) in [("name", "name"), ("namespace", "namespace"), ("uid", "UID")] {
        let want = original["metadata"][field].as_str().unwrap_or("");
        let got = converted["metadata"][field].as_str().unwrap_or("");
        if want != got {
            return invalid(format!("must have the same {what}: {want} != {got}"));
        }
    }
    let answered = match converted.get_mut("metadata").map(Value::take) {
        None => return Err((true, "missing metadata in converted object".into())),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err((
                true,
                format!(
                    "invalid metadata of type {} in converted object",
                    type_name(&other)
                ),
            ));
        }
    };
    let mut metadata = original["metadata"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for field in ["labels", "annotations"] {
        match answered.get(field) {
            None | Some(Value::Null) => {
                metadata.remove(field);
            }
            Some(Value::Object(map)) => {
                if let Some((k, v)) = map.iter().find(|(_, v)| !v.is_string()) {
                    return Err((
                        true,
                        format!(
                            "metadata.{field}[{k}] must be a string, but is {} in converted object",
                            type_name(v)
                        ),
                    ));
                }
                metadata.insert(field.to_owned(), Value::Object(map.clone()));
            }
            Some(other) => {
                return Err((
                    true,
                    format!(
                        "invalid metadata.{field} of type {} in converted object",
                        type_name(other)
                    ),
                ));
            }
        }
    }
    converted["metadata"] = Value::Object(metadata);
    Ok(converted)
}

/// A JSON value's type, as Go's `%T` of a decoded value would name it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original() -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": {"a": "1"}, "managedFields": [{"manager": "m"}]},
            "spec": {"size": "3"}})
    }

    #[test]
    fn the_strategy_is_read_from_the_crd() {
        assert_eq!(Strategy::from_spec(&Value::Null), Strategy::None);
        assert_eq!(
            Strategy::from_spec(&json!({"strategy": "None"})),
            Strategy::None
        );
        let s = Strategy::from_spec(&json!({"strategy": "Webhook", "webhook": {
            "clientConfig": {"url": "https://h/convert"}, "conversionReviewVersions": ["v1", "v1beta1"]}}));
        let Strategy::Webhook(hook) = s else {
            panic!("a webhook")
        };
        assert_eq!(hook.review_versions, ["v1", "v1beta1"]);
        assert_eq!(hook.client_config["url"], "https://h/convert");
    }

    #[test]
    fn converted_objects_keep_their_metadata_but_labels_and_annotations() {
        let converted = json!({"apiVersion": "example.com/v2", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "ns", "uid": "u1", "labels": {"b": "2"},
                "annotations": {"x": "y"}, "generation": 99},
            "spec": {"sizeInt": 3}});
        let out = checked(&original(), converted, "example.com/v2").unwrap();
        assert_eq!(out["spec"], json!({"sizeInt": 3}));
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["metadata"]["annotations"], json!({"x": "y"}));
        assert_eq!(out["metadata"]["resourceVersion"], "7");
        assert_eq!(out["metadata"]["managedFields"], json!([{"manager": "m"}]));
        assert!(out["metadata"].get("generation").is_none());
    }

    #[test]
    fn converted_objects_must_keep_version_kind_and_identity() {
        let mut wrong = original();
        wrong["apiVersion"] = json!("example.com/v1");
        assert_eq!(
            checked(&original(), wrong, "example.com/v2").unwrap_err().1,
            "invalid groupVersion (expected example.com/v2, received example.com/v1)"
        );
        let mut renamed = original();
        renamed["apiVersion"] = json!("example.com/v2");
        renamed["metadata"]["name"] = json!("other");
        assert_eq!(
            checked(&original(), renamed, "example.com/v2")
                .unwrap_err()
                .1,
            "must have the same name: w != other"
        );
        let mut bad_labels = original();
        bad_labels["apiVersion"] = json!("example.com/v2");
        bad_labels["metadata"]["labels"] = json!({"a": 1});
        let (metadata, why) = checked(&original(), bad_labels, "example.com/v2").unwrap_err();
        assert!(metadata);
        assert_eq!(
            why,
            "metadata.labels[a] must be a string, but is float64 in converted object"
        );
    }

    #[test]
    fn reviews_must_answer_success_for_the_request_sent() {
        let ok = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": "u", "result": {"status": "Success"}, "convertedObjects": [{"a": 1}]}});
        assert_eq!(
            converted_objects("v1", "u", ok.clone()).unwrap(),
            [json!({"a": 1})]
        );
        assert_eq!(
            converted_objects("v1", "other", ok).unwrap_err(),
            "expected response.uid=\"other\", got \"u\""
        );
        let refused = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": "u", "result": {"status": "Failure", "message": "cannot"}}});
        assert_eq!(converted_objects("v1", "u", refused).unwrap_err(), "cannot");
        assert_eq!(
            converted_objects("v1", "u", json!({})).unwrap_err(),
            "expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got , Kind="
        );
    }
}
