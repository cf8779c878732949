//! The HorizontalPodAutoscaler controller (autoscaling/v2): every
//! `--horizontal-pod-autoscaler-sync-period` each HPA reads its target's
//! `scale` subresource (any kind that has one, found through discovery),
//! the pods its selector picks and their resource usage from
//! `metrics.k8s.io/v1beta1`, computes the replicas its metrics ask for
//! ([`replicas`]), bounds them ([`normalize`]), scales, and reports status,
//! conditions and events as upstream's does. No custom or external
//! metrics API is served, so Pods, Object and External metrics make the HPA
//! inactive with upstream's reasons.

pub(crate) mod normalize;
pub(crate) mod replicas;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::core::ApiResource;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_api_types::quantity::{Format, Quantity};
use skiff_api_types::selector::LabelSelector;
use tracing::{info, warn};

use crate::cache::Cache;
use crate::framework::Context;
use normalize::History;
use replicas::{Calculator, Proposal, Sample, Samples, Target};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "horizontal-pod-autoscaler-controller";
/// The component its events are reported by, as upstream.
const COMPONENT: &str = "horizontal-pod-autoscaler";

struct Ctx {
    client: Client,
    pods: Cache<Pod>,
    calc: Calculator,
    downscale_window: Duration,
    histories: Mutex<HashMap<String, History>>,
    /// Scalable kinds found through discovery, by (apiVersion, kind).
    resources: Mutex<HashMap<(String, String), ApiResource>>,
    recorder: Recorder,
}

/// A metric that could not be computed: the condition's reason and the
/// error.
struct MetricError {
    reason: &'static str,
    message: String,
}

/// The conditions an HPA reports, kept in upstream's order.
#[derive(Default)]
struct Conditions(Vec<HorizontalPodAutoscalerCondition>);

impl Conditions {
    /// Sets a condition, keeping its transition time if the status stays.
    fn set(
        &mut self,
        old: &[HorizontalPodAutoscalerCondition],
        type_: &str,
        status: bool,
        reason: &str,
        message: String,
    ) {
        let status = if status { "True" } else { "False" }.to_string();
        let since = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| Time(Timestamp::now()));
        let c = HorizontalPodAutoscalerCondition {
            type_: type_.into(),
            status,
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(since),
        };
        match self.0.iter_mut().find(|x| x.type_ == type_) {
            Some(x) => *x = c,
            None => self.0.push(c),
        }
    }
}

fn hpa_key(hpa: &HorizontalPodAutoscaler) -> String {
    format!("{}/{}", hpa.namespace().unwrap_or_default(), hpa.name_any())
}

/// Finds the resource of the target's kind, with a `scale` subresource.
async fn resolve(ctx: &Ctx, api_version: &str, kind: &str) -> Result<ApiResource, String> {
    let key = (api_version.to_owned(), kind.to_owned());
    if let Some(ar) = ctx.resources.lock().expect("resources lock").get(&key) {
        return Ok(ar.clone());
    }
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, _) = kube::discovery::pinned_kind(&ctx.client, &gvk)
        .await
        .map_err(|e| format!("unable to determine resource for scale target reference: {e}"))?;
    ctx.resources
        .lock()
        .expect("resources lock")
        .insert(key, ar.clone());
    Ok(ar)
}

/// The pods' resource usage from the metrics API, by pod name: the sum of
/// their containers', or one container's.
async fn resource_samples(
    ctx: &Ctx,
    namespace: &str,
    selector: &str,
    resource: &str,
    container: Option<&str>,
) -> Result<Samples, String> {
    let url = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods?labelSelector={}",
        encode(selector)
    );
    let req = hyper::Request::get(url)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let list: Value = ctx
        .client
        .request(req)
        .await
        .map_err(|e| format!("unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: {e}"))?;
    let mut out = Samples::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let Some(name) = item["metadata"]["name"].as_str() else {
            continue;
        };
        let timestamp = item["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .unwrap_or_else(Timestamp::now);
        let window = item["window"]
            .as_str()
            .and_then(|w| crate::framework::parse_go_duration(w).ok())
            .unwrap_or_default();
        let mut total = 0i64;
        let mut found = false;
        for c in item["containers"].as_array().into_iter().flatten() {
            if container.is_some_and(|want| c["name"].as_str() != Some(want)) {
                continue;
            }
            if let Some(q) = c["usage"][resource]
                .as_str()
                .and_then(|q| Quantity::parse(q).ok())
            {
                total += q.milli_value() as i64;
                found = true;
            }
        }
        if found {
            out.insert(
                name.to_owned(),
                Sample {
                    value: total,
                    timestamp,
                    window,
                },
            );
        }
    }
    if out.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    Ok(out)
}

/// Percent-encodes a label selector for a query string.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The name upstream gives a metric in messages and events.
fn metric_name(m: &MetricSpec) -> String {
    let describe = |name: &str, target_type: &str, container: bool| {
        let what = if container {
            "container resource"
        } else {
            "resource"
        };
        if target_type == "Utilization" {
            format!("{name} {what} utilization (percentage of request)")
        } else {
            format!("{name} {what}")
        }
    };
    match m.type_.as_str() {
        "Resource" => m
            .resource
            .as_ref()
            .map(|r| describe(&r.name, &r.target.type_, false))
            .unwrap_or_default(),
        "ContainerResource" => m
            .container_resource
            .as_ref()
            .map(|r| describe(&r.name, &r.target.type_, true))
            .unwrap_or_default(),
        "Pods" => m
            .pods
            .as_ref()
            .map(|p| format!("pods metric {}", p.metric.name))
            .unwrap_or_default(),
        "Object" => m
            .object
            .as_ref()
            .map(|o| format!("{} metric {}", o.described_object.kind, o.metric.name))
            .unwrap_or_default(),
        "External" => m
            .external
            .as_ref()
            .map(|e| format!("external metric {}", e.metric.name))
            .unwrap_or_default(),
        other => format!("{other} metric"),
    }
}

/// The default metric of an HPA that names none: 80% CPU.
fn default_metrics() -> Vec<MetricSpec> {
    vec![
        serde_json::from_value(json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 80}}}))
        .expect("a valid metric"),
    ]
}

fn milli_quantity(m: i64) -> k8s_openapi::apimachinery::pkg::api::resource::Quantity {
    Quantity::from_milli(i128::from(m), Format::DecimalSI).to_k8s()
}

/// One metric's proposal and status.
async fn compute_metric(
    ctx: &Ctx,
    m: &MetricSpec,
    current: i32,
    namespace: &str,
    selector: &str,
    pods: &[Pod],
) -> Result<(Proposal, MetricStatus), MetricError> {
    let (resource, target, container) = match m.type_.as_str() {
        "Resource" | "ContainerResource" => {
            let (name, t, container, reason) = match (&m.resource, &m.container_resource) {
                (Some(r), _) if m.type_ == "Resource" => {
                    (r.name.clone(), &r.target, None, "FailedGetResourceMetric")
                }
                (_, Some(c)) if m.type_ == "ContainerResource" => (
                    c.name.clone(),
                    &c.target,
                    Some(c.container.clone()),
                    "FailedGetContainerResourceMetric",
                ),
                _ => {
                    return Err(MetricError {
                        reason: "InvalidMetricSourceType",
                        message: format!("invalid metric source: {} without its source", m.type_),
                    });
                }
            };
            let target = match (t.type_.as_str(), t.average_utilization, &t.average_value) {
                ("Utilization", Some(u), _) => Target::Utilization(u),
                ("AverageValue", _, Some(v)) => Target::AverageValue(
                    Quantity::from_k8s(v)
                        .map(|q| q.milli_value() as i64)
                        .unwrap_or(0),
                ),
                _ => {
                    return Err(MetricError {
                        reason,
                        message: format!(
                            "invalid resource metric source: neither a utilization target nor a value target was set for {name}"
                        ),
                    });
                }
            };
            (name, (target, reason), container)
        }
        "Pods" => {
            return Err(unavailable(
                "FailedGetPodsMetric",
                m,
                "custom.metrics.k8s.io",
            ));
        }
        "Object" => {
            return Err(unavailable(
                "FailedGetObjectMetric",
                m,
                "custom.metrics.k8s.io",
            ));
        }
        "External" => {
            return Err(unavailable(
                "FailedGetExternalMetric",
                m,
                "external.metrics.k8s.io",
            ));
        }
        other => {
            return Err(MetricError {
                reason: "InvalidMetricSourceType",
                message: format!("unknown metric source type {other:?}"),
            });
        }
    };
    let (target, reason) = target;
    let what = match target {
        Target::Utilization(_) => format!("failed to get {resource} utilization"),
        Target::AverageValue(_) => format!("failed to get {resource} usage"),
    };
    let fail = |e: String| MetricError {
        reason,
        message: format!("the HPA was unable to compute the replica count: {what}: {e}"),
    };
    let samples = resource_samples(ctx, namespace, selector, &resource, container.as_deref())
        .await
        .map_err(fail)?;
    let proposal = ctx
        .calc
        .resource_replicas(
            current,
            target,
            (&resource, container.as_deref()),
            pods,
            samples,
            Timestamp::now(),
        )
        .map_err(fail)?;
    let mut current_value = json!({"averageValue": milli_quantity(proposal.average)});
    if let Some(u) = proposal.utilization {
        current_value["averageUtilization"] = json!(u);
    }
    let status = match &container {
        None => {
            json!({"type": "Resource", "resource": {"name": resource, "current": current_value}})
        }
        Some(c) => {
            json!({"type": "ContainerResource", "containerResource": {"name": resource, "container": c, "current": current_value}})
        }
    };
    Ok((
        proposal,
        serde_json::from_value(status).expect("a valid metric status"),
    ))
}

fn unavailable(reason: &'static str, m: &MetricSpec, api: &str) -> MetricError {
    MetricError {
        reason,
        message: format!(
            "the HPA was unable to compute the replica count: unable to get {}: no metrics API {api} is registered",
            metric_name(m)
        ),
    }
}

async fn event(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
    warning: bool,
    reason: &str,
    note: String,
) {
    crate::volume::record(&ctx.recorder, hpa, warning, reason, note).await;
}

/// One sync of one HPA.
async fn sync(ctx: &Ctx, hpa: &HorizontalPodAutoscaler) -> Result<(), kube::Error> {
    let key = hpa_key(hpa);
    let ns = hpa.namespace().unwrap_or_default();
    let Some(spec) = hpa.spec.as_ref() else {
        return Ok(());
    };
    let old_status = hpa.status.clone().unwrap_or_default();
    let old_conditions = old_status.conditions.clone().unwrap_or_default();
    let mut conditions = Conditions(old_conditions.clone());
    let target = &spec.scale_target_ref;
    let api_version = target.api_version.clone().unwrap_or_default();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &ns);
    // Written only when it changed, as upstream.
    let write_status = |status: HorizontalPodAutoscalerStatus| {
        let hpas = hpas.clone();
        let name = hpa.name_any();
        let unchanged = hpa.status.as_ref() == Some(&status);
        async move {
            if unchanged {
                return Ok(());
            }
            // An update, not a patch: what the HPA controller's RBAC role
            // allows.
            let mut updated = hpa.clone();
            updated.status = Some(status);
            hpas.replace_status(&name, &PostParams::default(), &updated)
                .await
                .map(|_| ())
        }
    };

    let scale = match resolve(ctx, &api_version, &target.kind).await {
        Ok(ar) => {
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ar);
            api.get_scale(&target.name)
                .await
                .map(|s| (api, s))
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    let (scale_api, scale) = match scale {
        Ok(s) => s,
        Err(e) => {
            event(ctx, hpa, true, "FailedGetScale", e.clone()).await;
            conditions.set(
                &old_conditions,
                "AbleToScale",
                false,
                "FailedGetScale",
                format!("the HPA controller was unable to get the target's current scale: {e}"),
            );
            let status = HorizontalPodAutoscalerStatus {
                conditions: Some(conditions.0),
                observed_generation: hpa.metadata.generation,
                ..old_status
            };
            return write_status(status).await;
        }
    };
    conditions.set(
        &old_conditions,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale".into(),
    );
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let metrics = spec
        .metrics
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(default_metrics);
    let mut current_metrics: Vec<MetricStatus> = Vec::new();
    let desired;
    let reason;
    if current == 0 && min != 0 {
        desired = 0;
        reason = String::new();
        conditions.set(
            &old_conditions,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".into(),
        );
    } else if current > max {
        desired = max;
        reason = "Current number of replicas above Spec.MaxReplicas".to_string();
    } else if current < min {
        desired = min;
        reason = "Current number of replicas below Spec.MinReplicas".to_string();
    } else {
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let parsed = if selector.is_empty() {
            None
        } else {
            LabelSelector::parse(&selector).ok()
        };
        let Some(parsed) = parsed else {
            let (reason, message) = if selector.is_empty() {
                ("SelectorRequired", "selector is required".to_string())
            } else {
                (
                    "InvalidSelector",
                    format!(
                        "couldn't convert selector into a corresponding internal selector object: {selector}"
                    ),
                )
            };
            event(ctx, hpa, true, reason, message.clone()).await;
            conditions.set(
                &old_conditions,
                "ScalingActive",
                false,
                "InvalidSelector",
                "the HPA target's scale is missing a selector".into(),
            );
            let status = HorizontalPodAutoscalerStatus {
                current_replicas: Some(current),
                desired_replicas: old_status.desired_replicas,
                conditions: Some(conditions.0),
                observed_generation: hpa.metadata.generation,
                ..old_status
            };
            return write_status(status).await;
        };
        ctx.pods.ready().await;
        let pods: Vec<Pod> = ctx
            .pods
            .list(&ns)
            .into_iter()
            .filter(|p| parsed.matches(&p.labels().clone()))
            .map(|p| (*p).clone())
            .collect();
        let mut best: Option<(i32, String)> = None;
        let mut invalid: Vec<MetricError> = Vec::new();
        for m in &metrics {
            match compute_metric(ctx, m, current, &ns, &selector, &pods).await {
                Ok((p, status)) => {
                    current_metrics.push(status);
                    if best.as_ref().is_none_or(|(r, _)| p.replicas > *r) {
                        best = Some((p.replicas, metric_name(m)));
                    }
                }
                Err(e) => {
                    event(ctx, hpa, true, e.reason, e.message.clone()).await;
                    invalid.push(e);
                }
            }
        }
        let failed = match &best {
            None => true,
            Some((r, _)) => !invalid.is_empty() && *r < current,
        };
        if failed {
            let first = &invalid[0];
            conditions.set(
                &old_conditions,
                "ScalingActive",
                false,
                first.reason,
                first.message.clone(),
            );
            event(
                ctx,
                hpa,
                true,
                "FailedComputeMetricsReplicas",
                format!(
                    "invalid metrics ({} invalid out of {}), first error is: {}",
                    invalid.len(),
                    metrics.len(),
                    first.message
                ),
            )
            .await;
            let status = HorizontalPodAutoscalerStatus {
                current_replicas: Some(current),
                desired_replicas: old_status.desired_replicas,
                current_metrics: Some(current_metrics),
                conditions: Some(conditions.0),
                observed_generation: hpa.metadata.generation,
                ..old_status
            };
            return write_status(status).await;
        }
        let (proposed, name) = best.expect("a metric succeeded");
        conditions.set(
            &old_conditions,
            "ScalingActive",
            true,
            "ValidMetricFound",
            format!("the HPA was able to successfully calculate a replica count from {name}"),
        );
        reason = if proposed > current {
            format!("{name} above target")
        } else {
            "All metrics below target".to_string()
        };
        let now = Instant::now();
        let mut histories = ctx.histories.lock().expect("histories lock");
        let history = histories.entry(key.clone()).or_default();
        let decision = match &spec.behavior {
            None => history.normalize(current, proposed, min, max, ctx.downscale_window, now),
            Some(b) => {
                let (up, down) = normalize::behavior_rules(b, ctx.downscale_window);
                history.normalize_with_behavior(current, proposed, min, max, &up, &down, now)
            }
        };
        drop(histories);
        conditions.set(
            &old_conditions,
            "AbleToScale",
            true,
            decision.able_reason,
            decision.able_message.into(),
        );
        conditions.set(
            &old_conditions,
            "ScalingLimited",
            decision.limited,
            decision.limit_reason,
            decision.limit_message.into(),
        );
        desired = decision.replicas;
    }

    let mut last_scale_time = old_status.last_scale_time.clone();
    if desired != current {
        let mut updated = scale.clone();
        updated.spec.get_or_insert_with(Default::default).replicas = Some(desired);
        match scale_api
            .replace_scale(&target.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {
                info!(hpa = %key, from = current, to = desired, %reason, "rescaled");
                event(
                    ctx,
                    hpa,
                    false,
                    "SuccessfulRescale",
                    format!("New size: {desired}; reason: {reason}"),
                )
                .await;
                conditions.set(
                    &old_conditions,
                    "AbleToScale",
                    true,
                    "SucceededRescale",
                    format!("the HPA controller was able to update the target scale to {desired}"),
                );
                last_scale_time = Some(Time(Timestamp::now()));
                let (up, down) = normalize::behavior_rules(
                    &spec.behavior.clone().unwrap_or_default(),
                    ctx.downscale_window,
                );
                let keep = normalize::longest_period(&up, &down);
                if let Some(h) = ctx.histories.lock().expect("histories lock").get_mut(&key) {
                    h.scaled(current, desired, keep, Instant::now());
                }
            }
            Err(e) => {
                event(
                    ctx,
                    hpa,
                    true,
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {e}"),
                )
                .await;
                conditions.set(
                    &old_conditions,
                    "AbleToScale",
                    false,
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {e}"),
                );
                let status = HorizontalPodAutoscalerStatus {
                    current_replicas: Some(current),
                    desired_replicas: old_status.desired_replicas,
                    current_metrics: Some(current_metrics),
                    conditions: Some(conditions.0),
                    observed_generation: hpa.metadata.generation,
                    ..old_status
                };
                return write_status(status).await;
            }
        }
    }
    let status = HorizontalPodAutoscalerStatus {
        current_replicas: Some(current),
        desired_replicas: desired,
        current_metrics: Some(current_metrics),
        conditions: Some(conditions.0),
        last_scale_time,
        observed_generation: hpa.metadata.generation,
    };
    write_status(status).await
}

/// Runs the controller until the controller manager stops: every sync
/// period, every HPA, at most `--concurrent-horizontal-pod-autoscaler-syncs`
/// at once.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let client = ctx.client.clone();
        let s = &ctx.settings;
        let (pods, _) = ctx.informers.pods.subscribe(|_| Vec::<()>::new());
        let (hpas, writer): (Store<HorizontalPodAutoscaler>, _) = reflector::store();
        let watch = watcher(
            Api::<HorizontalPodAutoscaler>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(crate::framework::drop_managed_fields)
        .reflect(writer)
        .for_each(|_| async {});
        let state = Arc::new(Ctx {
            client: client.clone(),
            pods,
            calc: Calculator {
                tolerance: s.horizontal_pod_autoscaler_tolerance,
                cpu_initialization_period: s.horizontal_pod_autoscaler_cpu_initialization_period,
                initial_readiness_delay: s.horizontal_pod_autoscaler_initial_readiness_delay,
            },
            downscale_window: s.horizontal_pod_autoscaler_downscale_stabilization,
            histories: Mutex::default(),
            resources: Mutex::default(),
            recorder: crate::volume::recorder(&client, COMPONENT),
        });
        let period = s
            .horizontal_pod_autoscaler_sync_period
            .max(Duration::from_millis(100));
        let concurrency = usize::from(s.concurrent_horizontal_pod_autoscaler_syncs.max(1));
        let work = async move {
            if hpas.wait_until_ready().await.is_err() {
                return;
            }
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let all = hpas.state();
                let live: BTreeMap<String, ()> = all.iter().map(|h| (hpa_key(h), ())).collect();
                state
                    .histories
                    .lock()
                    .expect("histories lock")
                    .retain(|k, _| live.contains_key(k));
                futures::stream::iter(all)
                    .for_each_concurrent(concurrency, |hpa| {
                        let state = state.clone();
                        async move {
                            if let Err(error) = sync(&state, &hpa).await {
                                warn!(hpa = %hpa_key(&hpa), %error, "writing status failed");
                            }
                        }
                    })
                    .await;
            }
        };
        tokio::select! {
            () = watch => {}
            () = work => {}
            () = ctx.stopped() => {}
        }
    })
}
