//! Node-pressure eviction, as upstream's eviction manager with hard
//! thresholds: every 10 s the kubelet compares `memory.available` and
//! `nodefs.available` with `--eviction-hard` (default
//! `memory.available<100Mi,nodefs.available<10%`); while one is crossed it
//! evicts one pod per pass, ranked as upstream ranks them — pods using more
//! than they requested first, then lower priority, then the largest use above
//! request. An evicted pod fails with reason `Evicted`, a `DisruptionTarget`
//! condition and an event; its worker then stops its containers. Static pods
//! and critical pods (priority ≥ 2,000,000,000) are never evicted.

use crate::Kubelet;
use crate::cri::labels;
use crate::events::{Type, pod_ref};
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One hard threshold: a signal and the quantity below which it fires.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Amount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Bytes(f64),
    /// A fraction of capacity.
    Percent(f64),
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
        }
    }
    fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable => "ephemeral-storage",
        }
    }
}

/// Upstream's default hard thresholds.
pub const DEFAULT_EVICTION_HARD: &str = "memory.available<100Mi,nodefs.available<10%";

/// Parses `--eviction-hard` (`memory.available<100Mi,nodefs.available<10%`).
pub fn parse_thresholds(text: &str) -> anyhow::Result<Vec<Threshold>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (signal, value) = part.split_once('<').ok_or_else(|| {
            anyhow::anyhow!("invalid eviction threshold {part:?}: want <signal><<quantity>")
        })?;
        let signal = match signal.trim() {
            "memory.available" => Signal::MemoryAvailable,
            "nodefs.available" => Signal::NodeFsAvailable,
            other => anyhow::bail!(
                "unsupported eviction signal {other:?} (memory.available and nodefs.available are)"
            ),
        };
        let value = value.trim();
        let amount = match value.strip_suffix('%') {
            Some(p) => Amount::Percent(
                p.parse::<f64>()
                    .map_err(|_| anyhow::anyhow!("invalid percentage {value:?}"))?
                    / 100.0,
            ),
            None => Amount::Bytes(
                crate::pods::spec::parse_quantity(value)
                    .ok_or_else(|| anyhow::anyhow!("invalid quantity {value:?}"))?,
            ),
        };
        out.push(Threshold {
            signal,
            value: amount,
        });
    }
    Ok(out)
}

/// What the node has: (capacity, available) per signal.
pub type Observations = HashMap<Signal, (f64, f64)>;

impl std::hash::Hash for Signal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (*self as u8).hash(state);
    }
}

/// The thresholds crossed by `observed`, with the amount each stands at.
pub fn crossed(thresholds: &[Threshold], observed: &Observations) -> Vec<(Threshold, f64, f64)> {
    thresholds
        .iter()
        .filter_map(|t| {
            let (capacity, available) = *observed.get(&t.signal)?;
            let limit = match t.value {
                Amount::Bytes(b) => b,
                Amount::Percent(p) => capacity * p,
            };
            (available < limit).then(|| (t.clone(), limit, available))
        })
        .collect()
}

fn request(pod: &Pod, resource: &str) -> f64 {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get(resource))
        .filter_map(|q| crate::pods::spec::parse_quantity(&q.0))
        .sum()
}

/// Orders candidates for eviction, first to go first: usage above requests,
/// then lower priority, then more usage above requests.
pub fn rank(pods: &mut [(Arc<Pod>, f64)], resource: &str) {
    pods.sort_by(|(a, ua), (b, ub)| {
        let over_a = *ua > request(a, resource);
        let over_b = *ub > request(b, resource);
        let pa = a.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        let pb = b.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        over_b
            .cmp(&over_a)
            .then(pa.cmp(&pb))
            .then((ub - request(b, resource)).total_cmp(&(ua - request(a, resource))))
    });
}

/// The node's memory and root-filesystem capacity and availability: the
/// host's, or for hollow nodes a fixed machine, half used. Node status reports
/// the same figures.
pub fn observe(kubelet: &Kubelet) -> Observations {
    if kubelet.config.manage_host {
        observe_host(&kubelet.config.root_dir)
    } else {
        let mut observed = Observations::new();
        observed.insert(
            Signal::MemoryAvailable,
            ((16u64 << 30) as f64, (8u64 << 30) as f64),
        );
        observed.insert(
            Signal::NodeFsAvailable,
            ((100u64 << 30) as f64, (50u64 << 30) as f64),
        );
        observed
    }
}

/// The host's memory and the filesystem holding `root_dir` (the nodefs).
pub fn observe_host(root_dir: &std::path::Path) -> Observations {
    let mut observed = Observations::new();
    let (total, available) = crate::sys::memory_bytes();
    observed.insert(Signal::MemoryAvailable, (total as f64, available as f64));
    if let Some((total, available)) = crate::sys::filesystem_bytes(root_dir) {
        observed.insert(Signal::NodeFsAvailable, (total as f64, available as f64));
    }
    observed
}

/// Checks the thresholds every 10 s and evicts while one is crossed.
pub async fn run(kubelet: Arc<Kubelet>) {
    if kubelet.config.eviction_hard.is_empty() {
        return;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let observed = observe(&kubelet);
        let Some((threshold, limit, available)) = crossed(&kubelet.config.eviction_hard, &observed)
            .into_iter()
            .next()
        else {
            continue;
        };
        let resource = threshold.signal.resource();
        // Usage per pod from the runtime's container stats.
        let mut usage: HashMap<String, f64> = HashMap::new();
        for s in kubelet
            .runtime
            .list_container_stats()
            .await
            .unwrap_or_default()
        {
            let Some(attributes) = &s.attributes else {
                continue;
            };
            let Some(uid) = attributes.labels.get(labels::POD_UID) else {
                continue;
            };
            let bytes = match threshold.signal {
                Signal::MemoryAvailable => {
                    s.memory.and_then(|m| m.working_set_bytes).map(|v| v.value)
                }
                Signal::NodeFsAvailable => {
                    s.writable_layer.and_then(|w| w.used_bytes).map(|v| v.value)
                }
            };
            *usage.entry(uid.clone()).or_default() += bytes.unwrap_or(0) as f64;
        }
        let mut candidates: Vec<(Arc<Pod>, f64)> = kubelet
            .pods
            .known
            .lock()
            .unwrap()
            .values()
            .filter(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded") | Some("Failed"))
                    && p.metadata.deletion_timestamp.is_none()
                    && !crate::pods::static_pods::is_static(p)
                    && p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0) < 2_000_000_000
            })
            .map(|p| {
                (
                    p.clone(),
                    usage
                        .get(p.metadata.uid.as_deref().unwrap_or_default())
                        .copied()
                        .unwrap_or(0.0),
                )
            })
            .collect();
        rank(&mut candidates, resource);
        let Some((victim, used)) = candidates.into_iter().next() else {
            continue;
        };
        let message = format!(
            "The node was low on resource: {resource}. Threshold quantity: {}, available: {}Ki. ",
            quantity(limit),
            (available / 1024.0) as i64
        );
        tracing::warn!(pod = ?victim.metadata.name, signal = threshold.signal.name(), used, "evicting a pod");
        if let Err(err) = evict(&kubelet, &victim, &message).await {
            tracing::warn!(pod = ?victim.metadata.name, "evicting: {err}");
        }
    }
}

fn quantity(bytes: f64) -> String {
    if bytes >= (1u64 << 30) as f64 && bytes % (1u64 << 30) as f64 == 0.0 {
        format!("{}Gi", bytes as u64 >> 30)
    } else if bytes >= (1u64 << 20) as f64 {
        format!("{}Mi", (bytes / (1u64 << 20) as f64).round() as u64)
    } else {
        format!("{}", bytes as u64)
    }
}

/// Fails the pod with reason Evicted; its worker stops it on the update.
async fn evict(kubelet: &Kubelet, pod: &Pod, message: &str) -> kube::Result<()> {
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("TerminationByKubelet".into()),
        message: Some(message.to_string()),
        last_transition_time: Some(Time(jiff::Timestamp::now())),
        ..Default::default()
    });
    let patch = serde_json::json!({
        "metadata": {"uid": pod.metadata.uid},
        "status": {"phase": "Failed", "reason": "Evicted", "message": message, "conditions": conditions}
    });
    let pods: Api<Pod> = Api::namespaced(
        kubelet.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    pods.patch_status(
        pod.metadata.name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    kubelet.events.record(
        pod_ref(pod, None),
        Type::Warning,
        "Evicted",
        message.to_string(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_fire() {
        let t = parse_thresholds("memory.available<100Mi,nodefs.available<10%").unwrap();
        assert_eq!(
            t[0],
            Threshold {
                signal: Signal::MemoryAvailable,
                value: Amount::Bytes(100.0 * 1024.0 * 1024.0)
            }
        );
        assert_eq!(
            t[1],
            Threshold {
                signal: Signal::NodeFsAvailable,
                value: Amount::Percent(0.1)
            }
        );
        assert!(parse_thresholds("cpu.available<1").is_err());
        assert!(parse_thresholds("memory.available=1").is_err());
        let mut observed = Observations::new();
        observed.insert(Signal::MemoryAvailable, (1e9, 50.0 * 1024.0 * 1024.0));
        observed.insert(Signal::NodeFsAvailable, (1000.0, 500.0));
        let fired = crossed(&t, &observed);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].0.signal, Signal::MemoryAvailable);
    }

    fn pod(name: &str, priority: i32, request: Option<&str>) -> Arc<Pod> {
        let resources = request
            .map(|r| serde_json::json!({"requests": {"memory": r}}))
            .unwrap_or(serde_json::json!({}));
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"priority": priority, "containers": [{"name": "c", "image": "i", "resources": resources}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn ranking_follows_upstream() {
        let mut pods = vec![
            (pod("within-request", 0, Some("1Gi")), 100.0),
            (pod("high-priority-over", 1000, None), 50.0),
            (pod("low-priority-over-small", 0, None), 10.0),
            (pod("low-priority-over-big", 0, None), 500.0),
        ];
        rank(&mut pods, "memory");
        let order: Vec<_> = pods
            .iter()
            .map(|(p, _)| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "low-priority-over-big",
                "low-priority-over-small",
                "high-priority-over",
                "within-request"
            ]
        );
    }
}
