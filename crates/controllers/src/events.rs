//! Core/v1 Events about an object, as upstream's event recorder writes them
//! (`reason`, `message`, `type`, `source.component`), best effort: a failed
//! write is logged, never retried.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use tracing::debug;

/// Records a `type_` ("Normal" or "Warning") event on `obj`.
pub(crate) async fn record<K>(
    client: &Client,
    component: &str,
    obj: &K,
    type_: &str,
    reason: &str,
    message: &str,
) where
    K: Resource<DynamicType = ()>,
{
    let namespace = obj.namespace().unwrap_or_else(|| "default".into());
    let now = Time(Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            // As upstream's recorder names them: the object and the time.
            name: Some(format!(
                "{}.{:x}",
                obj.name_any(),
                Timestamp::now().as_nanosecond()
            )),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(obj.name_any()),
            namespace: obj.namespace(),
            uid: obj.uid(),
            resource_version: obj.resource_version(),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Event::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        debug!(reason, error = %e, "recording an event failed");
    }
}
