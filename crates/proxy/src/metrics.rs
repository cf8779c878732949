//! The proxy's Prometheus metrics, under upstream kube-proxy's names.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::render::Rendered;

/// See the module documentation.
pub struct Metrics {
    pub registry: Registry,
    sync_duration: Histogram,
    full_sync_duration: Histogram,
    partial_sync_duration: Histogram,
    network_programming: Histogram,
    rules: Family<Vec<(String, String)>, Gauge>,
    no_local_endpoints: Family<Vec<(String, String)>, Gauge>,
    last_sync: Gauge<f64, AtomicU64>,
    pub(crate) restore_failures: Counter,
    pub(crate) endpoint_changes: Counter,
    pub(crate) service_changes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let sync_buckets = || Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let sync_duration = sync_buckets();
        let full_sync_duration = sync_buckets();
        let partial_sync_duration = sync_buckets();
        // Upstream's buckets: 0.25 s steps to 1 s, then doubling to ~5 min.
        let network_programming = Histogram::new(
            [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0]
                .into_iter()
                .chain(exponential_buckets(2.0, 2.0, 8)),
        );
        let rules = Family::default();
        let no_local_endpoints = Family::default();
        let last_sync = Gauge::default();
        let restore_failures = Counter::default();
        let endpoint_changes = Counter::default();
        let service_changes = Counter::default();
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            full_sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            partial_sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            network_programming.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_iptables_total",
            "Total number of iptables rules owned by kube-proxy",
            rules.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "Number of services with a Local traffic policy and no endpoints",
            no_local_endpoints.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            last_sync.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_iptables_restore_failures",
            "Cumulative proxy iptables restore failures",
            restore_failures.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules Endpoint changes",
            endpoint_changes.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            service_changes.clone(),
        );
        Metrics {
            registry,
            sync_duration,
            full_sync_duration,
            partial_sync_duration,
            network_programming,
            rules,
            no_local_endpoints,
            last_sync,
            restore_failures,
            endpoint_changes,
            service_changes,
        }
    }

    pub(crate) fn observe_sync(
        &self,
        full: bool,
        duration: Duration,
        rendered: &Rendered,
        latencies: &[Duration],
    ) {
        let secs = duration.as_secs_f64();
        self.sync_duration.observe(secs);
        if full {
            self.full_sync_duration.observe(secs);
        } else {
            self.partial_sync_duration.observe(secs);
        }
        for l in latencies {
            self.network_programming.observe(l.as_secs_f64());
        }
        let label = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        self.rules
            .get_or_create(&label("table", "nat"))
            .set(rendered.nat_rules as i64);
        self.rules
            .get_or_create(&label("table", "filter"))
            .set(rendered.filter_rules as i64);
        self.no_local_endpoints
            .get_or_create(&label("traffic_policy", "internal"))
            .set(rendered.no_local_endpoints_internal as i64);
        self.no_local_endpoints
            .get_or_create(&label("traffic_policy", "external"))
            .set(rendered.no_local_endpoints_external as i64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_sync.set(now.as_secs_f64());
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
