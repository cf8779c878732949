//! Prometheus metrics, under CoreDNS's names so its dashboards apply.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub proto: &'static str,
    #[prometheus(flatten)]
    pub kind: TypeLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TypeLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResponseLabels {
    pub rcode: String,
}

/// The server's metrics and the registry that exposes them.
pub(crate) struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub responses: Family<ResponseLabels, Counter>,
    pub duration: Family<TypeLabel, Histogram, fn() -> Histogram>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("coredns_dns");
        let requests = Family::<RequestLabels, Counter>::default();
        let responses = Family::<ResponseLabels, Counter>::default();
        let duration = Family::<TypeLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_025, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "requests",
            "DNS requests by transport and query type",
            requests.clone(),
        );
        registry.register(
            "responses",
            "DNS responses by response code",
            responses.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a DNS request, by query type",
            duration.clone(),
        );
        Metrics {
            registry,
            requests,
            responses,
            duration,
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, proto: &'static str, qtype: String, rcode: String, seconds: f64) {
        let kind = TypeLabel { r#type: qtype };
        self.requests
            .get_or_create(&RequestLabels {
                proto,
                kind: kind.clone(),
            })
            .inc();
        self.responses
            .get_or_create(&ResponseLabels { rcode })
            .inc();
        self.duration.get_or_create(&kind).observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
