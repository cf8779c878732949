//! `--event-ttl` (1 h by default): an Event is deleted that long after it
//! was last observed. Upstream writes events to etcd under a lease of that
//! TTL; here a sweep does it, so it works on the embedded store and on etcd
//! alike. core/v1 and events.k8s.io/v1 Events are one stored kind.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use tracing::{debug, info};

use crate::Api;

/// When an Event was last observed: the latest of its timestamps.
fn last_observed(event: &Value) -> Option<Timestamp> {
    [
        &event["lastTimestamp"],
        &event["eventTime"],
        &event["series"]["lastObservedTime"],
        &event["deprecatedLastTimestamp"],
        &event["metadata"]["creationTimestamp"],
    ]
    .into_iter()
    .filter_map(|v| v.as_str()?.parse::<Timestamp>().ok())
    .max()
}

/// Whether an Event last observed at `event`'s time has outlived `ttl` at `now`.
fn expired(event: &Value, ttl: Duration, now: Timestamp) -> bool {
    last_observed(event).is_some_and(|t| {
        now.duration_since(t)
            .try_into()
            .is_ok_and(|age: Duration| age > ttl)
    })
}

/// Sweeps expired Events every `ttl / 10` (between 1 s and a minute) until
/// the process ends.
pub(crate) fn spawn(api: Arc<Api>, ttl: Duration) {
    let period = (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let events = skiff_api_types::registry::lookup("", "v1", "events")
            .expect("events are a built-in kind");
        loop {
            tokio::time::sleep(period).await;
            let now = Timestamp::now();
            let stale = api
                .cache
                .list(events, &events.key_prefix(None), |o| {
                    serde_json::from_slice::<Value>(&o.raw).is_ok_and(|e| expired(&e, ttl, now))
                })
                .objects;
            let mut deleted = 0;
            for event in stale {
                // Only the revision seen: an Event written again since is kept.
                match api.store.delete(&event.key, Some(event.revision)).await {
                    Ok(_) => deleted += 1,
                    Err(e) => debug!(key = %event.key, error = %e, "not deleting an expired event"),
                }
            }
            if deleted > 0 {
                info!(deleted, "deleted events older than --event-ttl");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_expires_after_its_last_observation_not_its_creation() {
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let hour = Duration::from_secs(3600);
        let old = json!({"metadata": {"creationTimestamp": "2026-11-26T10:00:00Z"},
                         "lastTimestamp": "2026-11-26T10:30:00Z"});
        assert!(expired(&old, hour, now));
        let repeated = json!({"metadata": {"creationTimestamp": "2026-11-26T10:00:00Z"},
                              "lastTimestamp": "2026-11-26T11:30:00Z"});
        assert!(!expired(&repeated, hour, now));
        let series = json!({"metadata": {"creationTimestamp": "2026-11-26T09:00:00Z"},
                            "eventTime": "2026-11-26T09:00:00.000000Z",
                            "series": {"count": 4, "lastObservedTime": "2026-11-26T11:59:00.000000Z"}});
        assert!(!expired(&series, hour, now));
        assert!(!expired(&json!({}), hour, now), "no time: kept");
    }
}
