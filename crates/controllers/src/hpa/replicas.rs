//! The replica count one metric asks for (upstream's ReplicaCalculator):
//! the usage ratio against the target over the pods that have metrics,
//! within a tolerance of 1.0 nothing changes, and pods that are missing
//! metrics or not yet ready are counted so that they damp the change
//! rather than drive it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use skiff_api_types::quantity::Quantity;

/// One pod's usage of a resource.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    /// In milli-units (millicores, or bytes × 1000).
    pub value: i64,
    /// When the usage was measured, and over how long.
    pub timestamp: Timestamp,
    pub window: Duration,
}

/// Usage by pod name.
pub(crate) type Samples = HashMap<String, Sample>;

/// What a resource metric aims at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Usage per pod, in milli-units.
    AverageValue(i64),
}

/// The calculation's outcome for one metric.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Proposal {
    pub replicas: i32,
    /// Percent of request, for Utilization targets.
    pub utilization: Option<i32>,
    /// Average usage per pod, milli-units.
    pub average: i64,
}

/// `--horizontal-pod-autoscaler-tolerance`,
/// `--horizontal-pod-autoscaler-cpu-initialization-period` and
/// `--horizontal-pod-autoscaler-initial-readiness-delay`.
#[derive(Clone, Debug)]
pub(crate) struct Calculator {
    pub tolerance: f64,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// The pods sorted by how they count: ready with metrics, unready,
/// missing metrics, ignored (deleted or finished).
struct Groups {
    ready: usize,
    unready: HashSet<String>,
    missing: HashSet<String>,
    ignored: HashSet<String>,
}

impl Calculator {
    fn group(&self, pods: &[Pod], samples: &Samples, resource: &str, now: Timestamp) -> Groups {
        let mut g = Groups {
            ready: 0,
            unready: HashSet::new(),
            missing: HashSet::new(),
            ignored: HashSet::new(),
        };
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let status = pod.status.as_ref();
            let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
            if pod.metadata.deletion_timestamp.is_some()
                || phase == "Failed"
                || phase == "Succeeded"
            {
                g.ignored.insert(name);
                continue;
            }
            if phase == "Pending" {
                g.unready.insert(name);
                continue;
            }
            let Some(sample) = samples.get(&name) else {
                g.missing.insert(name);
                continue;
            };
            if resource == "cpu" {
                let ready = status
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
                let start = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
                let unready = match (ready, start) {
                    (Some(ready), Some(start)) => {
                        let not_ready = ready.status == "False";
                        let transition = ready
                            .last_transition_time
                            .as_ref()
                            .map(|t| t.0)
                            .unwrap_or(start);
                        if start + signed(self.cpu_initialization_period) > now {
                            // Still starting: skip an unready pod, or a sample
                            // not a whole window after its last transition.
                            not_ready || sample.timestamp < transition + signed(sample.window)
                        } else {
                            // Skip a pod that has never been ready.
                            not_ready && start + signed(self.initial_readiness_delay) > transition
                        }
                    }
                    _ => true,
                };
                if unready {
                    g.unready.insert(name);
                    continue;
                }
            }
            g.ready += 1;
        }
        g
    }

    /// The replicas a Resource (or, with a container, ContainerResource)
    /// metric asks for: `source` is the resource and the container.
    pub fn resource_replicas(
        &self,
        current: i32,
        target: Target,
        (resource, container): (&str, Option<&str>),
        pods: &[Pod],
        mut samples: Samples,
        now: Timestamp,
    ) -> Result<Proposal, String> {
        if pods.is_empty() {
            return Err("no pods returned by selector while calculating replica count".into());
        }
        let g = self.group(pods, &samples, resource, now);
        samples.retain(|name, _| !g.ignored.contains(name) && !g.unready.contains(name));
        if samples.is_empty() {
            return Err("did not receive metrics for targeted pods (pods might be unready)".into());
        }
        let requests = match target {
            Target::Utilization(_) => requests(pods, resource, container)?,
            Target::AverageValue(_) => HashMap::new(),
        };
        let ratio = |samples: &Samples| -> Result<(f64, Option<i32>, i64), String> {
            match target {
                Target::Utilization(t) => {
                    utilization_ratio(samples, &requests, t).map(|(r, u, a)| (r, Some(u), a))
                }
                Target::AverageValue(t) => {
                    let (r, a) = usage_ratio(samples, t);
                    Ok((r, None, a))
                }
            }
        };
        let (usage_ratio, utilization, average) = ratio(&samples)?;
        let scale_up_with_unready = !g.unready.is_empty() && usage_ratio > 1.0;
        let keep = Proposal {
            replicas: current,
            utilization,
            average,
        };
        if !scale_up_with_unready && g.missing.is_empty() {
            if (1.0 - usage_ratio).abs() <= self.tolerance {
                return Ok(keep);
            }
            return Ok(Proposal {
                replicas: (usage_ratio * g.ready as f64).ceil() as i32,
                ..keep
            });
        }
        if !g.missing.is_empty() {
            for name in &g.missing {
                let value = if usage_ratio < 1.0 {
                    // Scaling down: a missing pod counts as using its share.
                    match target {
                        Target::Utilization(t) => {
                            requests.get(name).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                        }
                        Target::AverageValue(t) => t,
                    }
                } else {
                    // Scaling up: as using nothing.
                    0
                };
                if usage_ratio != 1.0 {
                    samples.insert(
                        name.clone(),
                        Sample {
                            value,
                            timestamp: now,
                            window: Duration::ZERO,
                        },
                    );
                }
            }
        }
        if scale_up_with_unready {
            for name in &g.unready {
                samples.insert(
                    name.clone(),
                    Sample {
                        value: 0,
                        timestamp: now,
                        window: Duration::ZERO,
                    },
                );
            }
        }
        let (new_ratio, _, _) = ratio(&samples)?;
        if (1.0 - new_ratio).abs() <= self.tolerance
            || (usage_ratio < 1.0 && new_ratio > 1.0)
            || (usage_ratio > 1.0 && new_ratio < 1.0)
        {
            return Ok(keep);
        }
        let replicas = (new_ratio * samples.len() as f64).ceil() as i32;
        if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
            return Ok(keep);
        }
        Ok(Proposal { replicas, ..keep })
    }
}

/// Each pod's request of `resource` (milli-units), summed over its
/// containers or of one container.
fn requests(
    pods: &[Pod],
    resource: &str,
    container: Option<&str>,
) -> Result<HashMap<String, i64>, String> {
    let mut out = HashMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut total = 0i64;
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| Quantity::from_k8s(q).ok());
            let Some(request) = request else {
                return Err(format!(
                    "missing request for {resource} in container {} of Pod {name}",
                    c.name
                ));
            };
            total += request.milli_value() as i64;
        }
        out.insert(name, total);
    }
    Ok(out)
}

/// (usage / target utilization, utilization percent, average usage) over
/// the pods with both a sample and a request.
fn utilization_ratio(
    samples: &Samples,
    requests: &HashMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (name, s) in samples {
        if let Some(r) = requests.get(name) {
            used += s.value;
            requested += r;
            n += 1;
        }
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = (used * 100 / requested) as i32;
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        used / n,
    ))
}

/// (average usage / target, average usage).
fn usage_ratio(samples: &Samples, target: i64) -> (f64, i64) {
    let total: i64 = samples.values().map(|s| s.value).sum();
    let average = total / samples.len().max(1) as i64;
    (average as f64 / target as f64, average)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-11-26T01:00:00Z".parse().unwrap()
    }

    /// A running pod requesting 100m cpu, started `age` ago and ready since.
    fn pod(name: &str, phase: &str, ready: bool, age: i64) -> Pod {
        let start = now() - SignedDuration::from_secs(age);
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]},
            "status": {"phase": phase, "startTime": start.to_string(), "conditions": [
                {"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": start.to_string()}]},
        }))
        .unwrap()
    }

    fn samples(values: &[(&str, i64)]) -> Samples {
        values
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    Sample {
                        value: *v,
                        timestamp: now() - SignedDuration::from_secs(5),
                        window: Duration::from_secs(10),
                    },
                )
            })
            .collect()
    }

    fn calc() -> Calculator {
        Calculator {
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
        }
    }

    const OLD: i64 = 3600;

    #[test]
    fn utilization_scales_by_the_ratio_and_rounds_up() {
        let pods = [
            pod("a", "Running", true, OLD),
            pod("b", "Running", true, OLD),
            pod("c", "Running", true, OLD),
        ];
        // 90% of request against a 50% target: 3 × 1.8 = 5.4 → 6.
        let p = calc()
            .resource_replicas(
                3,
                Target::Utilization(50),
                ("cpu", None),
                &pods,
                samples(&[("a", 90), ("b", 90), ("c", 90)]),
                now(),
            )
            .unwrap();
        assert_eq!(
            p,
            Proposal {
                replicas: 6,
                utilization: Some(90),
                average: 90
            }
        );
        // 20% against 50%: 3 × 0.4 = 1.2 → 2.
        let p = calc()
            .resource_replicas(
                3,
                Target::Utilization(50),
                ("cpu", None),
                &pods,
                samples(&[("a", 20), ("b", 20), ("c", 20)]),
                now(),
            )
            .unwrap();
        assert_eq!(p.replicas, 2);
    }

    #[test]
    fn within_the_tolerance_nothing_changes() {
        let pods = [
            pod("a", "Running", true, OLD),
            pod("b", "Running", true, OLD),
        ];
        let p = calc()
            .resource_replicas(
                2,
                Target::Utilization(50),
                ("cpu", None),
                &pods,
                samples(&[("a", 54), ("b", 54)]),
                now(),
            )
            .unwrap();
        assert_eq!(p.replicas, 2);
        let p = calc()
            .resource_replicas(
                2,
                Target::Utilization(50),
                ("cpu", None),
                &pods,
                samples(&[("a", 56), ("b", 56)]),
                now(),
            )
            .unwrap();
        assert_eq!(p.replicas, 3);
    }

    #[test]
    fn missing_metrics_damp_a_scale_up_and_a_scale_down() {
        let pods = [
            pod("a", "Running", true, OLD),
            pod("b", "Running", true, OLD),
            pod("c", "Running", true, OLD),
        ];
        // Up: a and b at 200% of a 50% target; c (missing) counts as 0:
        // (100+100+0)/300 = 66% → ratio 1.33 → ceil(1.33 × 3) = 4.
        let p = calc()
            .resource_replicas(
                3,
                Target::Utilization(50),
                ("cpu", None),
                &pods,
                samples(&[("a", 100), ("b", 100)]),
                now(),
            )
            .unwrap();
        assert_eq!(p.replicas, 4);
        assert_eq!(
            p.utilization,
            Some(100),
            "reported from the pods with metrics"
        );
        // Down: a and b at 10%; c counts as 100% of its request:
        // (10+10+100)/300 = 40% of a 50% target → ratio 0.8 → ceil(2.4) = 3:
        // no change, rather than the 1 the two samples alone would give.
        let p = calc()
            .resource_replicas(
                3,
                Target::Utilization(50),
                ("cpu", None),
                &pods,
                samples(&[("a", 10), ("b", 10)]),
                now(),
            )
            .unwrap();
        assert_eq!(p.replicas, 3);
        // When the missing pod flips the direction, nothing changes.
        let p = calc()
            .resource_replicas(
                3,
                Target::Utilization(50),
                ("cpu", None),
                &pods,
                samples(&[("a", 60), ("b", 60)]),
                now(),
            )
            .unwrap();
        assert_eq!(p.replicas, 3);
    }

    #[test]
    fn unready_pods_count_as_idle_on_a_scale_up_and_are_ignored_otherwise() {
        let pods = [
            pod("a", "Running", true, OLD),
            pod("b", "Running", true, OLD),
            // Starting, not ready: its sample is not trusted.
            pod("c", "Running", false, 10),
            pod("d", "Pending", false, 5),
            pod("gone", "Failed", false, OLD),
        ];
        // a, b at 150% of 50%: ratio 3 over 2 ready pods would be 6; with c
        // and d as 0: 300/400 = 75% → ratio 1.5 → ceil(1.5 × 4) = 6 (the same
        // here, though now counted over 4 pods).
        let p = calc()
            .resource_replicas(
                4,
                Target::Utilization(50),
                ("cpu", None),
                &pods,
                samples(&[("a", 150), ("b", 150), ("c", 500)]),
                now(),
            )
            .unwrap();
        assert_eq!(p.replicas, 6);
        assert_eq!(p.utilization, Some(150));
        // Scaling down, unready pods are left out.
        let p = calc()
            .resource_replicas(
                4,
                Target::Utilization(50),
                ("cpu", None),
                &pods,
                samples(&[("a", 10), ("b", 10), ("c", 500)]),
                now(),
            )
            .unwrap();
        assert_eq!(p.replicas, 1);
        // Memory samples are used whatever the readiness.
        let p = calc()
            .resource_replicas(
                4,
                Target::AverageValue(100_000),
                ("memory", None),
                &pods[..3],
                samples(&[("a", 200_000), ("b", 200_000), ("c", 200_000)]),
                now(),
            )
            .unwrap();
        assert_eq!((p.replicas, p.average), (6, 200_000));
    }

    #[test]
    fn a_pod_that_was_ready_once_counts_after_the_initialization_period() {
        // Started long ago, unready only recently: counts (it was ready).
        let mut p = pod("a", "Running", false, OLD);
        p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                now() - SignedDuration::from_secs(60),
            ));
        let g = calc().group(&[p], &samples(&[("a", 1)]), "cpu", now());
        assert_eq!(g.ready, 1);
        // Unready since its start: never ready, so not counted.
        let g = calc().group(
            &[pod("a", "Running", false, OLD)],
            &samples(&[("a", 1)]),
            "cpu",
            now(),
        );
        assert_eq!(g.unready.len(), 1);
    }

    #[test]
    fn errors_name_what_is_missing() {
        let mut p = pod("a", "Running", true, OLD);
        p.spec.as_mut().unwrap().containers[0].resources = None;
        let err = calc()
            .resource_replicas(
                1,
                Target::Utilization(50),
                ("cpu", None),
                &[p],
                samples(&[("a", 1)]),
                now(),
            )
            .unwrap_err();
        assert_eq!(err, "missing request for cpu in container app of Pod a");
        let err = calc()
            .resource_replicas(
                1,
                Target::Utilization(50),
                ("cpu", None),
                &[],
                Samples::new(),
                now(),
            )
            .unwrap_err();
        assert!(err.contains("no pods returned by selector"), "{err}");
        let err = calc()
            .resource_replicas(
                1,
                Target::Utilization(50),
                ("cpu", None),
                &[pod("a", "Pending", false, 1)],
                samples(&[("a", 1)]),
                now(),
            )
            .unwrap_err();
        assert!(err.contains("did not receive metrics"), "{err}");
    }
}
