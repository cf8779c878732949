//! The disruption controller (upstream's disruption): keeps each
//! PodDisruptionBudget's status — expectedPods, currentHealthy,
//! desiredHealthy, disruptionsAllowed, the DisruptionAllowed condition and
//! observedGeneration — so that the eviction API knows how many of its pods
//! may go. `minAvailable` as a number counts the selected pods; a percentage,
//! or `maxUnavailable`, counts against the scale of the pods' controllers
//! (Deployment, ReplicaSet, ReplicationController, StatefulSet).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_api_types::selector::LabelSelector;
use tracing::{debug, warn};

use crate::cache::{Cache, Changed, Shared};
use crate::deployment::util::scaled_value;
use crate::framework::{self, Context};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "disruption-controller";

/// How long an eviction's entry in `status.disruptedPods` holds before the
/// pod counts again if it was not deleted (upstream's DeletionTimeout).
const DELETION_TIMEOUT: i64 = 2 * 60;

/// The budget's numbers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    pub expected: i32,
    pub desired_healthy: i32,
    pub current_healthy: i32,
    pub disruptions_allowed: i32,
}

/// Upstream's arithmetic: `expected_scale` is the pods' controllers' scale
/// (needed for maxUnavailable and a minAvailable percentage).
pub(crate) fn budget(
    pdb: &PodDisruptionBudget,
    selected: i32,
    healthy: i32,
    expected_scale: impl FnOnce() -> Result<i32, String>,
) -> Result<Budget, String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let (expected, desired) = match (&spec.max_unavailable, &spec.min_available) {
        (Some(max), _) => {
            let expected = expected_scale()?;
            let max = scaled_value(max, expected, true)?;
            (expected, (expected - max).max(0))
        }
        (None, Some(IntOrString::Int(min))) => (selected, *min),
        (None, Some(min)) => {
            let expected = expected_scale()?;
            (expected, scaled_value(min, expected, true)?)
        }
        (None, None) => (selected, 0),
    };
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    Ok(Budget {
        expected,
        desired_healthy: desired,
        current_healthy: healthy,
        disruptions_allowed: allowed,
    })
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let watch = Shared::<PodDisruptionBudget>::new(Api::all(ctx.client.clone()));
        let (pdbs, pdb_changes) = watch.subscribe(|c: &Changed<PodDisruptionBudget>| {
            Some(c.latest().namespace().unwrap_or_default())
        });
        let (pods, pod_changes) = ctx
            .informers
            .pods
            .subscribe(|c: &Changed<Pod>| Some(c.latest().namespace().unwrap_or_default()));
        let changes = futures::stream::select(pdb_changes, pod_changes);
        let stopped = ctx.stopped();
        tokio::pin!(stopped, changes);
        tokio::select! {
            () = async { pdbs.ready().await; pods.ready().await } => {}
            () = &mut stopped => return,
        }
        // Namespaces to look at again; every budget is looked at each
        // resync so a stale disruptedPods entry expires.
        let mut dirty: BTreeSet<String> = pdbs.all().iter().filter_map(|p| p.namespace()).collect();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut resync = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                () = &mut stopped => return,
                Some(ns) = changes.next() => { dirty.insert(ns); }
                _ = resync.tick() => dirty.extend(pdbs.all().iter().filter_map(|p| p.namespace())),
                _ = tick.tick() => {
                    for ns in std::mem::take(&mut dirty) {
                        for pdb in pdbs.list(&ns) {
                            if let Err(e) = sync(&ctx.client, &pods, &pdb).await {
                                warn!(namespace = %ns, pdb = %pdb.name_any(), error = %e, "updating the budget's status failed");
                                dirty.insert(ns.clone());
                            }
                        }
                    }
                }
            }
        }
    })
}

async fn sync(
    client: &Client,
    pods: &Cache<Pod>,
    pdb: &PodDisruptionBudget,
) -> Result<(), kube::Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let selector =
        LabelSelector::from_k8s_option(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
            .unwrap_or_else(|_| LabelSelector::nothing());
    let empty = BTreeMap::new();
    let selected: Vec<_> = pods
        .list(&ns)
        .into_iter()
        .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
        .collect();
    let now = Timestamp::now().as_second();
    let disrupted: BTreeMap<String, _> = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, at)| {
            at.0.as_second() + DELETION_TIMEOUT > now
                && selected
                    .iter()
                    .any(|p| p.name_any() == *name && p.metadata.deletion_timestamp.is_none())
        })
        .collect();
    let healthy = selected
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && is_ready(p)
                && !disrupted.contains_key(&p.name_any())
        })
        .count() as i32;
    let scale = expected_scale(client, &ns, &selected).await;
    let generation = pdb.metadata.generation;
    let status = match budget(pdb, selected.len() as i32, healthy, || scale) {
        Ok(b) => {
            let (cond, reason) = if b.disruptions_allowed > 0 {
                ("True", "SufficientPods")
            } else {
                ("False", "InsufficientPods")
            };
            json!({
                "expectedPods": b.expected, "currentHealthy": b.current_healthy,
                "desiredHealthy": b.desired_healthy, "disruptionsAllowed": b.disruptions_allowed,
                "observedGeneration": generation, "disruptedPods": disrupted,
                "conditions": [condition(pdb, cond, reason, "")],
            })
        }
        // As upstream's failSafe: no disruption is allowed.
        Err(e) => json!({
            "expectedPods": selected.len(), "currentHealthy": healthy, "desiredHealthy": 0,
            "disruptionsAllowed": 0, "observedGeneration": generation, "disruptedPods": disrupted,
            "conditions": [condition(pdb, "False", "SyncFailed", &e)],
        }),
    };
    let current = serde_json::to_value(pdb.status.clone().unwrap_or_default()).unwrap_or_default();
    let same = [
        "expectedPods",
        "currentHealthy",
        "desiredHealthy",
        "disruptionsAllowed",
        "observedGeneration",
    ]
    .iter()
    .all(|k| current[k] == status[k])
        && current["disruptedPods"].as_object().map_or(0, |m| m.len()) == disrupted.len()
        && current["conditions"][0]["status"] == status["conditions"][0]["status"]
        && current["conditions"][0]["reason"] == status["conditions"][0]["reason"];
    if same {
        return Ok(());
    }
    debug!(namespace = %ns, pdb = %pdb.name_any(), %status, "updating the budget's status");
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    // A merge patch replaces disruptedPods' keys one by one: null the ones
    // that expired.
    let mut status = status;
    for name in current["disruptedPods"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        if !disrupted.contains_key(name) {
            status["disruptedPods"][name] = serde_json::Value::Null;
        }
    }
    match api
        .patch_status(
            &pdb.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if framework::is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The DisruptionAllowed condition, keeping its transition time while its
/// status stays.
fn condition(
    pdb: &PodDisruptionBudget,
    status: &str,
    reason: &str,
    message: &str,
) -> serde_json::Value {
    let before = pdb
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "DisruptionAllowed"));
    let since = match before {
        Some(c) if c.status == status => c.last_transition_time.0.to_string(),
        _ => Timestamp::now().to_string(),
    };
    json!({"type": "DisruptionAllowed", "status": status, "reason": reason, "message": message,
           "lastTransitionTime": since, "observedGeneration": pdb.metadata.generation})
}

/// The summed scale of the selected pods' controllers (each counted once);
/// an error when a pod has no controller whose scale is known.
async fn expected_scale(
    client: &Client,
    ns: &str,
    pods: &[std::sync::Arc<Pod>],
) -> Result<i32, String> {
    let mut seen = HashSet::new();
    let mut total = 0;
    for pod in pods {
        let Some(owner) = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
        else {
            return Err(format!(
                "found no controller ref for pod {:?}",
                pod.name_any()
            ));
        };
        let (kind, name) = (owner.kind.as_str(), owner.name.as_str());
        // Each controller counts once (a ReplicaSet's pods as its Deployment).
        if !seen.insert(owner.uid.clone()) {
            continue;
        }
        let scale = match kind {
            "ReplicaSet" => {
                let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                    .get(name)
                    .await
                    .map_err(|e| e.to_string())?;
                match rs
                    .owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true) && o.kind == "Deployment")
                {
                    Some(d) => {
                        if !seen.insert(d.uid.clone()) {
                            continue;
                        }
                        let d = Api::<Deployment>::namespaced(client.clone(), ns)
                            .get(&d.name)
                            .await
                            .map_err(|e| e.to_string())?;
                        d.spec.and_then(|s| s.replicas).unwrap_or(1)
                    }
                    None => rs.spec.and_then(|s| s.replicas).unwrap_or(1),
                }
            }
            "ReplicationController" => Api::<ReplicationController>::namespaced(client.clone(), ns)
                .get(name)
                .await
                .map_err(|e| e.to_string())?
                .spec
                .and_then(|s| s.replicas)
                .unwrap_or(1),
            "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get(name)
                .await
                .map_err(|e| e.to_string())?
                .spec
                .and_then(|s| s.replicas)
                .unwrap_or(1),
            other => return Err(format!("pods controlled by a {other} have no known scale")),
        };
        total += scale;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(spec: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn b(expected: i32, desired: i32, healthy: i32, allowed: i32) -> Budget {
        Budget {
            expected,
            desired_healthy: desired,
            current_healthy: healthy,
            disruptions_allowed: allowed,
        }
    }

    #[test]
    fn min_available_as_a_number_counts_the_selected_pods() {
        let p = pdb(json!({"minAvailable": 2}));
        let never = || -> Result<i32, String> { panic!("no scale needed") };
        assert_eq!(budget(&p, 3, 3, never).unwrap(), b(3, 2, 3, 1));
        assert_eq!(budget(&p, 3, 2, never).unwrap(), b(3, 2, 2, 0));
        assert_eq!(budget(&p, 0, 0, never).unwrap(), b(0, 2, 0, 0));
    }

    #[test]
    fn percentages_and_max_unavailable_count_against_the_scale() {
        assert_eq!(
            budget(&pdb(json!({"minAvailable": "50%"})), 4, 4, || Ok(5)).unwrap(),
            b(5, 3, 4, 1)
        );
        assert_eq!(
            budget(&pdb(json!({"maxUnavailable": 1})), 5, 5, || Ok(5)).unwrap(),
            b(5, 4, 5, 1)
        );
        assert_eq!(
            budget(&pdb(json!({"maxUnavailable": "25%"})), 10, 9, || Ok(10)).unwrap(),
            b(10, 7, 9, 2)
        );
        assert_eq!(
            budget(&pdb(json!({"maxUnavailable": 0})), 3, 3, || Ok(3)).unwrap(),
            b(3, 3, 3, 0)
        );
        assert!(
            budget(&pdb(json!({"maxUnavailable": 1})), 1, 1, || Err(
                "no controller".into()
            ))
            .is_err()
        );
    }
}
