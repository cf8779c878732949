//! The scheduler's Prometheus metrics, served at `/metrics` on the secure
//! port as kube-scheduler serves them (a subset of upstream's names).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Attempt {
    /// `scheduled`, `unschedulable` or `error`.
    pub result: &'static str,
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Queue {
    /// `active`, `backoff` or `unschedulable`.
    pub queue: &'static str,
}

pub struct Metrics {
    registry: Registry,
    attempts: Family<Attempt, Counter>,
    attempt_duration: Family<Attempt, Histogram>,
    pending: Family<Queue, Gauge>,
    preemption_attempts: Counter,
    preemption_victims: Histogram,
}

/// The process's metrics (one scheduler per process, as upstream's
/// global registry).
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let attempts = Family::<Attempt, Counter>::default();
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result.",
            attempts.clone(),
        );
        let attempt_duration = Family::<Attempt, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding).",
            attempt_duration.clone(),
        );
        let pending = Family::<Queue, Gauge>::default();
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type.",
            pending.clone(),
        );
        let preemption_attempts = Counter::default();
        registry.register(
            "scheduler_preemption_attempts",
            "Total preemption attempts in the cluster till now.",
            preemption_attempts.clone(),
        );
        let preemption_victims = Histogram::new(exponential_buckets(1.0, 2.0, 7));
        registry.register(
            "scheduler_preemption_victims",
            "Number of selected preemption victims.",
            preemption_victims.clone(),
        );
        Metrics {
            registry,
            attempts,
            attempt_duration,
            pending,
            preemption_attempts,
            preemption_victims,
        }
    }

    /// One scheduling attempt of a pod of `profile`, ending in `result`.
    pub fn attempt(&self, result: &'static str, profile: &str, took: Duration) {
        let labels = Attempt {
            result,
            profile: profile.to_string(),
        };
        self.attempts.get_or_create(&labels).inc();
        self.attempt_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A preemption that chose `victims` pods.
    pub fn preemption(&self, victims: usize) {
        self.preemption_attempts.inc();
        self.preemption_victims.observe(victims as f64);
    }

    /// The queue's sizes now.
    pub fn queue_sizes(&self, active: usize, backoff: usize, unschedulable: usize) {
        for (queue, n) in [
            ("active", active),
            ("backoff", backoff),
            ("unschedulable", unschedulable),
        ] {
            self.pending.get_or_create(&Queue { queue }).set(n as i64);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_and_queue_sizes_are_exposed_under_upstreams_names() {
        let m = Metrics::new();
        m.attempt("scheduled", "default-scheduler", Duration::from_millis(3));
        m.attempt(
            "unschedulable",
            "default-scheduler",
            Duration::from_millis(1),
        );
        m.queue_sizes(1, 2, 3);
        m.preemption(3);
        let text = m.encode();
        assert!(text.contains(
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1"
        ));
        assert!(text.contains("scheduler_pending_pods{queue=\"unschedulable\"} 3"));
        assert!(text.contains("scheduler_preemption_attempts_total 1"));
        assert!(text.contains("scheduler_scheduling_attempt_duration_seconds_count{result=\"unschedulable\",profile=\"default-scheduler\"} 1"));
    }
}
