//! Events about pods (`Scheduled`, `FailedScheduling`, `Preempted`), written
//! as core/v1 Events by a background task so the scheduling loop never waits
//! on the API server. A repeat of the same event for the same pod bumps its
//! `count`, as upstream's correlator does.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;

use crate::client::ClusterClient;

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

struct Pending {
    object: ObjectReference,
    kind: EventType,
    reason: &'static str,
    action: &'static str,
    message: String,
    /// The profile (schedulerName) that reports it.
    component: String,
}

/// Sends events; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
}

/// The reference to a pod its events carry.
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    /// Starts the writer on the current Tokio runtime.
    pub fn start(client: Arc<dyn ClusterClient>, instance: String) -> Recorder {
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(write_events(client, instance, rx));
        Recorder { tx }
    }

    /// Records an event about `pod`; dropped (with a log line) when the
    /// queue is full rather than blocking the caller.
    pub fn record(
        &self,
        pod: &Pod,
        kind: EventType,
        reason: &'static str,
        action: &'static str,
        component: &str,
        message: String,
    ) {
        let pending = Pending {
            object: pod_ref(pod),
            kind,
            reason,
            action,
            message,
            component: component.to_owned(),
        };
        if self.tx.try_send(pending).is_err() {
            tracing::warn!("event queue full; dropping an event");
        }
    }
}

type EventKey = (String, &'static str, String);

async fn write_events(
    client: Arc<dyn ClusterClient>,
    instance: String,
    mut rx: mpsc::Receiver<Pending>,
) {
    // (uid, reason, message) → (name, namespace, count)
    let mut seen: HashMap<EventKey, (String, String, i32)> = HashMap::new();
    while let Some(p) = rx.recv().await {
        let namespace = p
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = (
            p.object.uid.clone().unwrap_or_default(),
            p.reason,
            p.message.clone(),
        );
        let now = Timestamp::now();
        if let Some((name, ns, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({"count": *count, "lastTimestamp": Time(now)});
            match client.patch_event(ns, name, &patch).await {
                Ok(()) => continue,
                Err(e) => tracing::debug!(error = %e, "updating an event; writing a new one"),
            }
        }
        let name = format!(
            "{}.{:x}",
            p.object.name.as_deref().unwrap_or(""),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: p.object,
            reason: Some(p.reason.into()),
            message: Some(p.message),
            type_: Some(
                match p.kind {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            action: Some(p.action.into()),
            source: Some(EventSource {
                component: Some(p.component.clone()),
                host: None,
            }),
            reporting_component: Some(p.component.clone()),
            reporting_instance: Some(format!("{}-{instance}", p.component)),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(1),
            ..Event::default()
        };
        match client.create_event(&event).await {
            Ok(()) => {
                if seen.len() > 16384 {
                    seen.clear();
                }
                seen.insert(key, (name, namespace, 1));
            }
            Err(e) => tracing::debug!(error = %e, "writing an event"),
        }
    }
}
