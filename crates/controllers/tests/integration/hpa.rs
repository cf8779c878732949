//! The HorizontalPodAutoscaler controller against a real API server: the
//! API server's metrics.k8s.io reads a fake kubelet's `/stats/summary`
//! (HTTPS, behind the Node's InternalIP and kubelet port), which reports
//! every pod on the node at a set CPU usage.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{AgentOptions, Cluster, Manager, NodeAgent, SOON, eventually};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

/// A kubelet that answers `/stats/summary` for the pods bound to its node,
/// each container using `cpu_nanocores`.
struct FakeKubelet {
    port: u16,
    cpu_nanocores: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn summary(client: &Client, node: &str, cpu: u64) -> Value {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let now = Timestamp::now().to_string();
    let stats = |cpu: u64| {
        json!({"cpu": {"time": now, "usageNanoCores": cpu},
                                  "memory": {"time": now, "workingSetBytes": 64u64 << 20}})
    };
    let pods: Vec<Value> = list
        .iter()
        .map(|p| {
            let containers: Vec<Value> = p
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .map(|c| {
                    let mut s = stats(cpu);
                    s["name"] = json!(c.name);
                    s
                })
                .collect();
            json!({"podRef": {"name": p.metadata.name, "namespace": p.metadata.namespace, "uid": p.metadata.uid},
                   "containers": containers})
        })
        .collect();
    json!({"node": {"nodeName": node, "cpu": stats(cpu)["cpu"], "memory": stats(cpu)["memory"]}, "pods": pods})
}

impl FakeKubelet {
    async fn start(client: Client, node: &'static str) -> FakeKubelet {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cpu_nanocores = Arc::new(AtomicU64::new(0));
        let cpu = cpu_nanocores.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, client, cpu) = (acceptor.clone(), client.clone(), cpu.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (client, cpu) = (client.clone(), cpu.clone());
                            async move {
                                let body = if req.uri().path() == "/stats/summary" {
                                    summary(&client, node, cpu.load(Ordering::SeqCst))
                                        .await
                                        .to_string()
                                } else {
                                    String::new()
                                };
                                let mut r = Response::new(Full::new(Bytes::from(body)));
                                r.headers_mut()
                                    .insert("content-type", "application/json".parse().unwrap());
                                Ok::<_, Infallible>(r)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakeKubelet {
            port,
            cpu_nanocores,
            task,
        }
    }
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "busybox",
                    "resources": {"requests": {"cpu": "100m"}}}]},
            },
        },
    }))
    .unwrap()
}

fn hpa(name: &str, metrics: Value) -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": metrics,
        },
    }))
    .unwrap()
}

fn condition<'a>(h: &'a HorizontalPodAutoscaler, type_: &str) -> Option<(&'a str, &'a str)> {
    let c = h
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.as_str(), c.reason.as_deref().unwrap_or("")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_scales_a_deployment_up_on_high_cpu_and_reports_why() {
    let c = Cluster::start().await;
    let kubelet = FakeKubelet::start(c.client.clone(), "n1").await;
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "n1"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
        },
    }))
    .unwrap();
    Api::<Node>::all(c.client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();

    let mut config = c.config(&[
        "deployment-controller",
        "replicaset-controller",
        "horizontal-pod-autoscaler-controller",
    ]);
    config.horizontal_pod_autoscaler_sync_period = Duration::from_secs(1);
    // The simulated pods turn ready the moment they run, and the kubelet
    // reports a sample taken now: without this the first 5 minutes'
    // samples, less than one window after readiness, are not trusted.
    config.horizontal_pod_autoscaler_cpu_initialization_period = Duration::ZERO;
    // As the controller manager's user: its writes are checked against
    // the RBAC roles a real cluster gives it.
    config.kube.auth_info.impersonate = Some("system:kube-controller-manager".into());
    let manager = Manager::start(config);
    c.namespace("auto").await;
    let _agent = NodeAgent::start(
        &c.client,
        AgentOptions {
            nodes: vec!["n1".into()],
            ..AgentOptions::default()
        },
    );
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "auto");
    deployments
        .create(&PostParams::default(), &deployment("web"))
        .await
        .unwrap();
    deployments
        .create(&PostParams::default(), &deployment("ext"))
        .await
        .unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(c.client.clone(), "auto");

    // Idle: 20% of request against a 50% target; at minReplicas already.
    kubelet.cpu_nanocores.store(20_000_000, Ordering::SeqCst);
    let cpu = json!([{"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 50}}}]);
    hpas.create(&PostParams::default(), &hpa("web", cpu))
        .await
        .unwrap();
    let h = eventually("the HPA active at 20%", SOON, || async {
        let h = hpas.get("web").await.unwrap();
        (condition(&h, "ScalingActive") == Some(("True", "ValidMetricFound"))).then_some(h)
    })
    .await;
    let status = h.status.clone().unwrap();
    assert_eq!(
        (status.current_replicas, status.desired_replicas),
        (Some(1), 1)
    );
    let current = status.current_metrics.unwrap()[0]
        .resource
        .clone()
        .unwrap()
        .current;
    assert_eq!(current.average_utilization, Some(20));
    assert_eq!(current.average_value.unwrap().0, "20m");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        condition(&h, "AbleToScale"),
        Some(("True", "ReadyForNewScale"))
    );
    assert_eq!(
        condition(&h, "ScalingLimited"),
        Some(("False", "DesiredWithinRange"))
    );

    // Busy: 200% against 50% asks for 4 replicas.
    kubelet.cpu_nanocores.store(200_000_000, Ordering::SeqCst);
    eventually("the deployment scaled to 4", SOON, || async {
        let d = deployments.get("web").await.unwrap();
        (d.spec.unwrap().replicas == Some(4)).then_some(())
    })
    .await;
    let h = eventually("the HPA status after the rescale", SOON, || async {
        let h = hpas.get("web").await.unwrap();
        (h.status.as_ref()?.desired_replicas == 4).then_some(h)
    })
    .await;
    assert!(h.status.as_ref().unwrap().last_scale_time.is_some());
    let events: Api<Event> = Api::namespaced(c.client.clone(), "auto");
    let rescale = eventually("a SuccessfulRescale event", SOON, || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SuccessfulRescale"))
    })
    .await;
    assert_eq!(
        rescale.note.as_deref(),
        Some("New size: 4; reason: cpu resource utilization (percentage of request) above target")
    );
    assert_eq!(rescale.regarding.unwrap().name.as_deref(), Some("web"));

    // Idle again, with a behavior: no stabilization window, but at most one
    // pod removed per minute.
    kubelet.cpu_nanocores.store(10_000_000, Ordering::SeqCst);
    hpas.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}}}),
        ),
    )
    .await
    .unwrap();
    let h = eventually("a scale-down by one pod", SOON, || async {
        let h = hpas.get("web").await.unwrap();
        (condition(&h, "ScalingLimited") == Some(("True", "ScaleDownLimit"))).then_some(h)
    })
    .await;
    assert_eq!(h.status.as_ref().unwrap().observed_generation, Some(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        deployments.get("web").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );

    // No external metrics API: the HPA is not active, and scales nothing.
    let external = json!([{"type": "External", "external": {"metric": {"name": "queue_depth"},
        "target": {"type": "AverageValue", "averageValue": "30"}}}]);
    hpas.create(&PostParams::default(), &hpa("ext", external))
        .await
        .unwrap();
    let h = eventually("the external-metric HPA inactive", SOON, || async {
        let h = hpas.get("ext").await.unwrap();
        (condition(&h, "ScalingActive") == Some(("False", "FailedGetExternalMetric"))).then_some(h)
    })
    .await;
    assert_eq!(
        condition(&h, "AbleToScale"),
        Some(("True", "SucceededGetScale"))
    );
    assert_eq!(
        deployments.get("ext").await.unwrap().spec.unwrap().replicas,
        Some(1)
    );

    manager.stop().await;
    c.stop().await;
}
