//! Events about pods and the node, written as core/v1 Events by a background
//! task so a slow API server never stalls a pod worker. A repeat of the same
//! event for the same object bumps its `count` instead of adding an object, as
//! upstream's event correlator does.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Normal or Warning, as Events say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Normal,
    Warning,
}

struct Pending {
    object: ObjectReference,
    kind: Type,
    reason: String,
    message: String,
}

/// Sends events; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
}

impl Recorder {
    pub fn new(client: kube::Client, node: &str) -> Recorder {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(write_events(client, node.to_string(), rx));
        Recorder { tx }
    }

    /// Records an event about `object`; dropped (with a log line) when the
    /// queue is full rather than blocking the caller.
    pub fn record(
        &self,
        object: ObjectReference,
        kind: Type,
        reason: &str,
        message: impl Into<String>,
    ) {
        let message = message.into();
        tracing::debug!(object = ?object.name, reason, %message, "event");
        let pending = Pending {
            object,
            kind,
            reason: reason.into(),
            message,
        };
        if self.tx.try_send(pending).is_err() {
            tracing::warn!("event queue full; dropping an event");
        }
    }
}

/// The reference to a pod that its events carry.
pub fn pod_ref(
    pod: &k8s_openapi::api::core::v1::Pod,
    field_path: Option<String>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path,
    }
}

/// The reference to a node that its events carry.
pub fn node_ref(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid: Some(name.into()),
        ..Default::default()
    }
}

/// (object uid, field path, reason, message): what makes two events the same.
type EventKey = (String, String, String, String);

async fn write_events(client: kube::Client, node: String, mut rx: mpsc::Receiver<Pending>) {
    // (object uid, field path, reason, message) → (event name, namespace, count)
    let mut seen: HashMap<EventKey, (String, String, i32)> = HashMap::new();
    while let Some(p) = rx.recv().await {
        let namespace = p
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = (
            p.object.uid.clone().unwrap_or_default(),
            p.object.field_path.clone().unwrap_or_default(),
            p.reason.clone(),
            p.message.clone(),
        );
        let now = jiff::Timestamp::now();
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Some((name, ns, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({"count": *count, "lastTimestamp": Time(now)});
            let api: Api<Event> = Api::namespaced(client.clone(), ns);
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                Err(err) => tracing::debug!("updating event {name}: {err}; writing a new one"),
            }
        }
        let object_name = p.object.name.clone().unwrap_or_default();
        let name = format!("{object_name}.{:x}", now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: p.object,
            reason: Some(p.reason),
            message: Some(p.message),
            type_: Some(match p.kind {
                Type::Normal => "Normal".into(),
                Type::Warning => "Warning".into(),
            }),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            count: Some(1),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if seen.len() > 4096 {
                    seen.clear();
                }
                seen.insert(key, (name, namespace, 1));
            }
            Err(err) => tracing::debug!("writing event: {err}"),
        }
    }
}
