//! Conversion between built-in versions that share one stored kind. Upstream
//! keeps core/v1 and events.k8s.io/v1 Events in one store, as core Events,
//! and converts on the way in and out: an event a controller records through
//! events.k8s.io shows in `kubectl describe` (which reads core/v1 with an
//! `involvedObject` field selector), and one written through core/v1 reads
//! through events.k8s.io with `regarding` and `note`.

use serde_json::{Map, Value};
use skiff_api_types::registry::ResourceInfo;

const CORE: &str = "v1";
const EVENTS: &str = "events.k8s.io/v1";

/// The fields renamed between the two: (events.k8s.io/v1, core/v1). The
/// rest (metadata, eventTime, series, reportingInstance, action, reason,
/// type, related) keep their names.
const EVENT_FIELDS: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// The apiVersion `resource`'s objects are stored in when that is not the
/// resource's own.
pub fn storage_version(resource: &ResourceInfo) -> Option<&'static str> {
    (resource.group == "events.k8s.io" && resource.plural == "events").then_some(CORE)
}

/// Whether `resource` has objects stored in another version.
pub fn converts(resource: &ResourceInfo) -> bool {
    resource.plural == "events" && matches!(resource.group, "" | "events.k8s.io")
}

/// `obj` in `api_version`, when it is in the other version of a kind
/// converted here; `None` when there is nothing to convert.
pub fn convert(obj: &Value, api_version: &str) -> Option<Value> {
    if obj["kind"] != "Event" {
        return None;
    }
    let from = obj["apiVersion"].as_str()?;
    let to_core = match (from, api_version) {
        (EVENTS, CORE) => true,
        (CORE, EVENTS) => false,
        _ => return None,
    };
    let fields = obj.as_object()?;
    let mut out = Map::with_capacity(fields.len());
    for (key, value) in fields {
        if key == "apiVersion" {
            out.insert(key.clone(), Value::String(api_version.to_owned()));
            continue;
        }
        let renamed = EVENT_FIELDS.iter().find_map(|&(events, core)| {
            let (this, that) = if to_core {
                (events, core)
            } else {
                (core, events)
            };
            (key == this).then_some(that)
        });
        out.insert(renamed.unwrap_or(key).to_owned(), value.clone());
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events_k8s_io() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "p.1", "namespace": "ns", "resourceVersion": "7"},
            "eventTime": "2026-11-26T04:00:00.000000Z",
            "series": {"count": 3, "lastObservedTime": "2026-11-26T04:01:00.000000Z"},
            "reportingController": "default-scheduler",
            "reportingInstance": "default-scheduler-node1",
            "action": "Scheduling",
            "reason": "Scheduled",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "ns", "uid": "u1"},
            "related": {"kind": "Node", "name": "node1"},
            "note": "Successfully assigned ns/p to node1",
            "type": "Normal",
            "deprecatedSource": {"component": "default-scheduler"},
            "deprecatedFirstTimestamp": "2026-11-26T04:00:00Z",
            "deprecatedLastTimestamp": "2026-11-26T04:01:00Z",
            "deprecatedCount": 3,
        })
    }

    #[test]
    fn an_events_k8s_io_event_reads_as_a_core_event_and_back() {
        let core = convert(&events_k8s_io(), "v1").unwrap();
        assert_eq!(
            core,
            json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "p.1", "namespace": "ns", "resourceVersion": "7"},
                "eventTime": "2026-11-26T04:00:00.000000Z",
                "series": {"count": 3, "lastObservedTime": "2026-11-26T04:01:00.000000Z"},
                "reportingComponent": "default-scheduler",
                "reportingInstance": "default-scheduler-node1",
                "action": "Scheduling",
                "reason": "Scheduled",
                "involvedObject": {"kind": "Pod", "name": "p", "namespace": "ns", "uid": "u1"},
                "related": {"kind": "Node", "name": "node1"},
                "message": "Successfully assigned ns/p to node1",
                "type": "Normal",
                "source": {"component": "default-scheduler"},
                "firstTimestamp": "2026-11-26T04:00:00Z",
                "lastTimestamp": "2026-11-26T04:01:00Z",
                "count": 3,
            })
        );
        assert_eq!(convert(&core, "events.k8s.io/v1").unwrap(), events_k8s_io());
    }

    #[test]
    fn nothing_is_converted_within_a_version_or_for_other_kinds() {
        assert!(convert(&events_k8s_io(), "events.k8s.io/v1").is_none());
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "message": "x"});
        assert!(convert(&pod, "events.k8s.io/v1").is_none());
        let other = json!({"apiVersion": "events.k8s.io/v1beta1", "kind": "Event"});
        assert!(convert(&other, "v1").is_none());
    }
}
