//! The pod garbage collector (upstream's podgc), every 20 s: beyond
//! `--terminated-pod-gc-threshold` finished pods (Succeeded or Failed), the
//! oldest are deleted; pods bound to a node that has not existed for the
//! quarantine (40 s, checked again with the API server) are failed and
//! deleted; pods being deleted that were never scheduled are deleted at
//! once (no kubelet will finish them).

use std::collections::HashMap;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cache::Changed;
use crate::framework::{self, Context};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "pod-garbage-collector-controller";

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub(crate) fn is_terminated(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// The finished pods to delete so that at most `threshold` remain: the
/// oldest first (0 turns this off).
pub(crate) fn over_threshold(pods: &[std::sync::Arc<Pod>], threshold: u32) -> Vec<&Pod> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut done: Vec<&Pod> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| is_terminated(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    let excess = done.len().saturating_sub(threshold as usize);
    if excess == 0 {
        return Vec::new();
    }
    done.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.name_any(),
        )
    });
    done.truncate(excess);
    done
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let (nodes, _) = ctx
            .informers
            .nodes
            .subscribe(|_: &Changed<Node>| None::<()>);
        let (pods, _) = ctx.informers.pods.subscribe(|_: &Changed<Pod>| None::<()>);
        let stopped = ctx.stopped();
        tokio::pin!(stopped);
        tokio::select! {
            () = async { nodes.ready().await; pods.ready().await } => {}
            () = &mut stopped => return,
        }
        let f = ctx.settings.infra.clone();
        // Missing nodes, and when they were first seen missing.
        let mut quarantine: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(f.pod_gc_period);
        loop {
            tokio::select! {
                () = &mut stopped => return,
                _ = tick.tick() => {}
            }
            let all = pods.all();
            for pod in over_threshold(&all, f.terminated_pod_gc_threshold) {
                info!(namespace = %pod.namespace().unwrap_or_default(), pod = %pod.name_any(), "deleting a finished pod over --terminated-pod-gc-threshold");
                force_delete(&ctx.client, pod).await;
            }
            // Orphans: bound to a node that is gone.
            let now = Instant::now();
            let mut missing: HashMap<String, Vec<&Pod>> = HashMap::new();
            for pod in &all {
                if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
                    && nodes.get("", node).is_none()
                {
                    missing.entry(node.to_owned()).or_default().push(pod);
                }
            }
            quarantine.retain(|n, _| missing.contains_key(n));
            for (node, orphans) in missing {
                let since = *quarantine.entry(node.clone()).or_insert(now);
                if now.duration_since(since) < f.pod_gc_quarantine {
                    continue;
                }
                // The cache may lag: ask the API server before acting.
                let api: Api<Node> = Api::all(ctx.client.clone());
                match api.get_opt(&node).await {
                    Ok(None) => {}
                    Ok(Some(_)) => continue,
                    Err(e) => {
                        warn!(%node, error = %e, "checking a missing node failed");
                        continue;
                    }
                }
                for pod in orphans {
                    info!(namespace = %pod.namespace().unwrap_or_default(), pod = %pod.name_any(), %node, "deleting a pod whose node no longer exists");
                    fail(&ctx.client, pod, "PodGC: node no longer exists").await;
                    force_delete(&ctx.client, pod).await;
                }
            }
            // Being deleted and never scheduled: nothing else will finish it.
            for pod in &all {
                let unscheduled = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(str::is_empty);
                if unscheduled && pod.metadata.deletion_timestamp.is_some() {
                    info!(namespace = %pod.namespace().unwrap_or_default(), pod = %pod.name_any(), "deleting an unscheduled terminating pod");
                    force_delete(&ctx.client, pod).await;
                }
            }
        }
    })
}

/// Marks a pod that will never run again Failed, with the
/// DisruptionTarget condition saying why (as upstream's podgc).
async fn fail(client: &Client, pod: &Pod, message: &str) {
    if is_terminated(pod) {
        return;
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let now = Timestamp::now().to_string();
    let patch = json!({"status": {"phase": "Failed", "conditions": [{
        "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
        "message": message, "lastTransitionTime": now,
    }]}});
    if let Err(e) = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        && !framework::is_not_found(&e)
    {
        warn!(pod = %pod.name_any(), error = %e, "marking the pod Failed failed");
    }
}

/// Deletes at once (grace period 0), this UID only.
async fn force_delete(client: &Client, pod: &Pod) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: pod
            .metadata
            .uid
            .clone()
            .map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => {}
        Err(e) if framework::is_not_found(&e) || framework::is_conflict(&e) => {}
        Err(e) => warn!(pod = %pod.name_any(), error = %e, "deleting the pod failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pod(name: &str, created: &str, phase: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "d", "creationTimestamp": created},
                "status": {"phase": phase},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn the_oldest_finished_pods_beyond_the_threshold_go() {
        let pods = vec![
            pod("new-done", "2026-01-03T00:00:00Z", "Succeeded"),
            pod("running", "2026-01-01T00:00:00Z", "Running"),
            pod("old-failed", "2026-01-01T00:00:00Z", "Failed"),
            pod("mid-done", "2026-01-02T00:00:00Z", "Succeeded"),
        ];
        let names = |v: Vec<&Pod>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(over_threshold(&pods, 1)), ["old-failed", "mid-done"]);
        assert_eq!(names(over_threshold(&pods, 2)), ["old-failed"]);
        assert!(over_threshold(&pods, 3).is_empty());
        assert!(over_threshold(&pods, 0).is_empty());
    }
}
