//! core/v1 and events.k8s.io/v1 Events are one kind stored once: an event
//! recorded through one group reads, lists (with upstream's field
//! selectors) and watches through the other in that group's shape.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

#[tokio::test]
async fn an_event_recorded_through_either_group_reads_through_the_other() {
    let cluster = crate::common::embedded().await;
    let client = cluster.client.clone();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let mut watch = events
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();

    // Through events.k8s.io, as kube-rs' recorder (and upstream's
    // scheduler and kubelet) write them.
    let recorded: Event = serde_json::from_value(json!({
        "metadata": {"name": "web.1", "namespace": "default"},
        "eventTime": "2026-11-26T04:00:00.000000Z",
        "reportingController": "default-scheduler",
        "reportingInstance": "default-scheduler-n1",
        "action": "Binding",
        "reason": "Scheduled",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "default", "uid": "pod-uid"},
        "note": "Successfully assigned default/web to n1",
        "type": "Normal",
    }))
    .unwrap();
    let written = events
        .create(&PostParams::default(), &recorded)
        .await
        .unwrap();
    assert_eq!(
        written.note.as_deref(),
        Some("Successfully assigned default/web to n1")
    );

    // kubectl describe's query: core/v1 with an involvedObject selector.
    let listed = core
        .list(&ListParams::default().fields("involvedObject.uid=pod-uid"))
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 1);
    let e = &listed[0];
    assert_eq!(e.involved_object.name.as_deref(), Some("web"));
    assert_eq!(
        e.message.as_deref(),
        Some("Successfully assigned default/web to n1")
    );
    assert_eq!(e.reporting_component.as_deref(), Some("default-scheduler"));
    assert_eq!(e.reason.as_deref(), Some("Scheduled"));

    // Through core/v1, as the controllers' recorder writes them.
    let legacy: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "web.2", "namespace": "default"},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "namespace": "default"},
        "reason": "SuccessfulCreate",
        "message": "Created pod: web-1-abcde",
        "type": "Normal",
        "source": {"component": "replicaset-controller"},
        "firstTimestamp": "2026-11-26T04:00:00Z",
        "lastTimestamp": "2026-11-26T04:00:01Z",
        "count": 2,
    }))
    .unwrap();
    core.create(&PostParams::default(), &legacy).await.unwrap();
    let e = events.get("web.2").await.unwrap();
    assert_eq!(
        e.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("web-1")
    );
    assert_eq!(e.note.as_deref(), Some("Created pod: web-1-abcde"));
    assert_eq!(e.deprecated_count, Some(2));
    assert_eq!(
        e.deprecated_source
            .as_ref()
            .and_then(|s| s.component.as_deref()),
        Some("replicaset-controller")
    );
    assert_eq!(core.get("web.2").await.unwrap().message, legacy.message);

    // A watch through events.k8s.io sees both in its own shape.
    let mut notes = Vec::new();
    while notes.len() < 2 {
        match watch.try_next().await.unwrap().expect("the watch goes on") {
            WatchEvent::Added(e) => notes.push(e.note.unwrap_or_default()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        notes,
        [
            "Successfully assigned default/web to n1",
            "Created pod: web-1-abcde"
        ]
    );
    cluster.stop().await;
}
