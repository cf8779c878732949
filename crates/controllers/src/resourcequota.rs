//! The resource quota controller (upstream's resourcequota): recounts each
//! ResourceQuota's `status.used` from the objects in its namespace and
//! mirrors `spec.hard` into `status.hard`, when a quota changes, when pods
//! of its namespace change, and every `--resource-quota-sync-period`. The
//! API server's quota admission charges and releases usage write by write;
//! this recount corrects whatever drifted (a write that failed after it was
//! charged, objects that existed before the quota). Quotas with scopes are
//! left to admission.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service,
};
use kube::api::{Api, ListParams, PostParams};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};
use skiff_api_types::quantity::{Format, Quantity};
use tracing::{debug, warn};

use crate::cache::{Cache, Changed, Shared};
use crate::framework::{self, Context};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "resourcequota-controller";

type Usage = BTreeMap<String, Quantity>;

fn add(usage: &mut Usage, name: &str, q: &Quantity) {
    let sum = match usage.get(name) {
        Some(have) => have.checked_add(q).unwrap_or(*have),
        None => *q,
    };
    usage.insert(name.to_owned(), sum);
}

fn count(n: usize) -> Quantity {
    Quantity::from_value(n as i128, Format::DecimalSI)
}

/// Whether a pod still counts: not Succeeded or Failed, as upstream.
fn pod_counts(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A pod's requests or limits (`field`: "requests"/"limits"): the larger of
/// its containers' sum and its largest init container, plus its overhead.
pub(crate) fn pod_resources(pod: &Pod, field: &str) -> Usage {
    let Some(spec) = pod.spec.as_ref() else {
        return Usage::new();
    };
    let of = |c: &k8s_openapi::api::core::v1::Container| -> Usage {
        let r = c.resources.as_ref();
        let list = match field {
            "requests" => r.and_then(|r| r.requests.as_ref()),
            _ => r.and_then(|r| r.limits.as_ref()),
        };
        list.into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), Quantity::from_k8s(v).ok()?)))
            .collect()
    };
    let mut sum = Usage::new();
    for c in &spec.containers {
        for (k, v) in of(c) {
            add(&mut sum, &k, &v);
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in of(c) {
            if sum.get(&k).is_none_or(|have| *have < v) {
                sum.insert(k, v);
            }
        }
    }
    for (k, v) in spec.overhead.iter().flatten() {
        if let Ok(v) = Quantity::from_k8s(v) {
            add(&mut sum, k, &v);
        }
    }
    sum
}

/// The pods' share of `status.used`: `pods`, `count/pods`, and requests
/// and limits (`cpu`/`memory` and the like meaning requests).
pub(crate) fn pod_usage(pods: &[&Pod]) -> Usage {
    let mut used = Usage::new();
    let live: Vec<&&Pod> = pods.iter().filter(|p| pod_counts(p)).collect();
    used.insert("pods".into(), count(live.len()));
    used.insert("count/pods".into(), count(live.len()));
    for pod in live {
        for (k, v) in pod_resources(pod, "requests") {
            add(&mut used, &format!("requests.{k}"), &v);
            add(&mut used, &k, &v);
        }
        for (k, v) in pod_resources(pod, "limits") {
            add(&mut used, &format!("limits.{k}"), &v);
        }
    }
    used
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let watch = Shared::<ResourceQuota>::new(Api::all(ctx.client.clone()));
        let (quotas, quota_changes) = watch.subscribe(|c: &Changed<ResourceQuota>| match c {
            Changed::Deleted(_) => None,
            c => c.latest().namespace(),
        });
        let (pods, pod_changes) = ctx
            .informers
            .pods
            .subscribe(|c: &Changed<Pod>| c.latest().namespace());
        let changes = futures::stream::select(quota_changes, pod_changes);
        let stopped = ctx.stopped();
        tokio::pin!(stopped, changes);
        tokio::select! {
            () = async { quotas.ready().await; pods.ready().await } => {}
            () = &mut stopped => return,
        }
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut resync = tokio::time::interval(ctx.settings.infra.resource_quota_sync_period);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                () = &mut stopped => return,
                _ = resync.tick() => dirty.extend(quotas.all().iter().filter_map(|q| q.namespace())),
                Some(ns) = changes.next() => {
                    if !quotas.list(&ns).is_empty() {
                        dirty.insert(ns);
                    }
                }
                _ = tick.tick() => {
                    for ns in std::mem::take(&mut dirty) {
                        if let Err(e) = sync_namespace(&ctx.client, &quotas, &pods, &ns).await {
                            warn!(namespace = %ns, error = %e, "recounting quota usage failed; retrying");
                            dirty.insert(ns);
                        }
                    }
                }
            }
        }
    })
}

async fn sync_namespace(
    client: &Client,
    quotas: &Cache<ResourceQuota>,
    pods: &Cache<Pod>,
    ns: &str,
) -> Result<(), kube::Error> {
    for quota in quotas.list(ns) {
        let spec = quota.spec.clone().unwrap_or_default();
        if spec.scopes.as_ref().is_some_and(|s| !s.is_empty()) || spec.scope_selector.is_some() {
            continue;
        }
        let hard = spec.hard.clone().unwrap_or_default();
        let mut used = Usage::new();
        let in_ns: Vec<std::sync::Arc<Pod>> = pods.list(ns);
        let refs: Vec<&Pod> = in_ns.iter().map(|p| &**p).collect();
        let from_pods = pod_usage(&refs);
        for name in hard.keys() {
            let value = match name.as_str() {
                "services" | "count/services" => {
                    Some(count(list_len::<Service>(client, ns).await?))
                }
                "configmaps" | "count/configmaps" => {
                    Some(count(list_len::<ConfigMap>(client, ns).await?))
                }
                "secrets" | "count/secrets" => Some(count(list_len::<Secret>(client, ns).await?)),
                "persistentvolumeclaims" | "count/persistentvolumeclaims" => {
                    Some(count(list_len::<PersistentVolumeClaim>(client, ns).await?))
                }
                "services.nodeports" | "services.loadbalancers" => {
                    let services: Api<Service> = Api::namespaced(client.clone(), ns);
                    let list = services.list(&ListParams::default()).await?;
                    let n = list.items.iter().filter(|s| {
                        let t = s
                            .spec
                            .as_ref()
                            .and_then(|s| s.type_.as_deref())
                            .unwrap_or("ClusterIP");
                        if name == "services.loadbalancers" {
                            t == "LoadBalancer"
                        } else {
                            t == "NodePort" || t == "LoadBalancer"
                        }
                    });
                    let ports: usize = if name == "services.nodeports" {
                        n.map(|s| {
                            s.spec
                                .as_ref()
                                .and_then(|s| s.ports.as_ref())
                                .map_or(0, Vec::len)
                        })
                        .sum()
                    } else {
                        n.count()
                    };
                    Some(count(ports))
                }
                other if other.starts_with("count/") => count_generic(client, ns, other).await?,
                other => Some(from_pods.get(other).cloned().unwrap_or_else(Quantity::zero)),
            };
            if let Some(v) = value {
                used.insert(name.clone(), v);
            }
        }
        let used_k8s: BTreeMap<_, _> = used.iter().map(|(k, v)| (k.clone(), v.to_k8s())).collect();
        let status = quota.status.clone().unwrap_or_default();
        let same_used = status.used.as_ref().is_some_and(|u| {
            u.len() == used.len()
                && used.iter().all(|(k, v)| {
                    u.get(k).and_then(|q| Quantity::from_k8s(q).ok()).as_ref() == Some(v)
                })
        });
        if same_used && status.hard.as_ref() == Some(&hard) {
            continue;
        }
        debug!(namespace = %ns, quota = %quota.name_any(), ?used, "recounted quota usage");
        let mut updated = (*quota).clone();
        let s = updated.status.get_or_insert_default();
        s.hard = Some(hard);
        s.used = Some(used_k8s);
        let api: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
        match api
            .replace_status(&quota.name_any(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            // Admission charged it meanwhile: count again from the newer one.
            Err(e) if framework::is_conflict(&e) => return Err(e),
            Err(e) if framework::is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn list_len<K>(client: &Client, ns: &str) -> Result<usize, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    Ok(api.list_metadata(&ListParams::default()).await?.items.len())
}

/// `count/<resource>.<group>` (or `count/<resource>` for the core group)
/// for any namespaced resource the API server serves at its preferred
/// version; `None` when it serves no such resource.
async fn count_generic(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<Quantity>, kube::Error> {
    let spec = name.trim_start_matches("count/");
    let (plural, group) = spec.split_once('.').unwrap_or((spec, ""));
    if plural == "pods" {
        return Ok(None);
    }
    let discovery = kube::discovery::Discovery::new(client.clone())
        .filter(&[group])
        .run()
        .await?;
    for g in discovery.groups() {
        for (ar, caps) in g.recommended_resources() {
            if ar.plural == plural && caps.scope == kube::discovery::Scope::Namespaced {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
                let n = api.list_metadata(&ListParams::default()).await?.items.len();
                return Ok(Some(count(n)));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pods_count_requests_limits_init_containers_and_overhead() {
        let a = pod(json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "150m"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "32Mi"}}}],
            "overhead": {"cpu": "10m"},
        }}));
        let done = pod(
            json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "5"}}}]},
                              "status": {"phase": "Succeeded"}}),
        );
        let used = pod_usage(&[&a, &done]);
        let q = |s: &str| Quantity::parse(s).unwrap();
        assert_eq!(used["pods"], q("1"));
        assert_eq!(used["requests.cpu"], q("1010m"));
        assert_eq!(used["cpu"], q("1010m"));
        assert_eq!(used["requests.memory"], q("64Mi"));
        assert_eq!(used["limits.cpu"], q("210m"));
    }
}
