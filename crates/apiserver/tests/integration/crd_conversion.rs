//! CRD conversion webhooks through a real client (kube-rs), in-process: a
//! CRD whose `spec.conversion.strategy` is Webhook has its objects converted
//! by a test HTTPS webhook (its own CA, given as caBundle) between v1
//! (`spec.size`, a string, the storage version) and v2 (`spec.sizeInt`, an
//! integer) — on get, list and watch in v2, and on writes in v2, which are
//! stored as v1. A webhook that cannot be reached fails reads and writes
//! that need it with upstream's 500, and nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Error};
use serde_json::{Value, json};

async fn start() -> (Client, skiff_apiserver::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = skiff_apiserver::start(skiff_apiserver::Config {
        data_dir: dir.path().to_owned(),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    (Client::try_from(config).unwrap(), server, dir)
}

/// What the test webhook did.
#[derive(Default)]
struct Seen {
    /// ConversionReviews answered.
    reviews: AtomicUsize,
    /// Objects converted to v1 (the storage version).
    to_v1: AtomicUsize,
}

/// The conversion webhook: v1 `spec.size` ("3") ⇄ v2 `spec.sizeInt` (3).
fn convert(review: &Value, seen: &Seen) -> Value {
    let request = &review["request"];
    let desired = request["desiredAPIVersion"].as_str().unwrap().to_owned();
    let converted: Vec<Value> = request["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|obj| {
            let mut obj = obj.clone();
            let spec = obj["spec"].as_object_mut().unwrap();
            if desired == "example.com/v2" {
                let size = spec.remove("size").unwrap();
                spec.insert(
                    "sizeInt".into(),
                    json!(size.as_str().unwrap().parse::<i64>().unwrap()),
                );
            } else {
                seen.to_v1.fetch_add(1, Ordering::SeqCst);
                let size = spec.remove("sizeInt").unwrap();
                spec.insert("size".into(), json!(size.as_i64().unwrap().to_string()));
            }
            obj["apiVersion"] = json!(desired);
            obj
        })
        .collect();
    seen.reviews.fetch_add(1, Ordering::SeqCst);
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "response": {"uid": request["uid"], "convertedObjects": converted, "result": {"status": "Success"}},
    })
}

/// An HTTPS conversion webhook on 127.0.0.1 with a certificate from its own
/// CA. Answers its URL, the CA (base64) and the task accepting connections
/// (aborting it takes the webhook down).
async fn webhook_server(seen: Arc<Seen>) -> (String, String, tokio::task::JoinHandle<()>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            use http_body_util::BodyExt;
                            assert_eq!(req.uri().path(), "/convert");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let review: Value = serde_json::from_slice(&body).unwrap();
                            assert_eq!(review["apiVersion"], "apiextensions.k8s.io/v1");
                            assert_eq!(review["kind"], "ConversionReview");
                            let answer = convert(&review, &seen);
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(
                                    serde_json::to_vec(&answer).unwrap(),
                                )),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (
        format!("https://{addr}/convert"),
        base64::engine::general_purpose::STANDARD.encode(ca_cert.pem()),
        task,
    )
}

fn crd(url: &str, ca: &str) -> CustomResourceDefinition {
    let version = |name: &str, storage: bool, spec: Value| {
        json!({
            "name": name, "served": true, "storage": storage,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": spec},
            }}},
        })
    };
    serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                version("v1", true, json!({"size": {"type": "string"}})),
                version("v2", false, json!({"sizeInt": {"type": "integer"}})),
            ],
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {"url": url, "caBundle": ca},
                    "conversionReviewVersions": ["v1"],
                },
            },
        },
    }))
    .unwrap()
}

fn widgets(client: &Client, version: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "example.com".into(),
        version: version.into(),
        api_version: format!("example.com/{version}"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    Api::namespaced_with(client.clone(), "default", &resource)
}

fn widget(version: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("example.com/{version}"), "kind": "Widget",
        "metadata": {"name": name, "labels": {"app": "demo"}}, "spec": spec,
    }))
    .unwrap()
}

fn api_version(obj: &DynamicObject) -> &str {
    &obj.types.as_ref().unwrap().api_version
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn status(e: Error) -> (u16, String) {
    match e {
        Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversion_webhook_converts_reads_and_writes_between_versions() {
    let (client, server, _dir) = start().await;
    let seen = Arc::new(Seen::default());
    let (url, ca, webhook) = webhook_server(seen.clone()).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd(&url, &ca))
        .await
        .unwrap();
    let (v1, v2) = (widgets(&client, "v1"), widgets(&client, "v2"));
    eventually("both versions are served", || {
        let (a, b) = (v1.clone(), v2.clone());
        async move {
            a.list(&ListParams::default()).await.is_ok()
                && b.list(&ListParams::default()).await.is_ok()
        }
    })
    .await;

    // Created in v1 (the storage version): no conversion.
    let created = v1
        .create(
            &PostParams::default(),
            &widget("v1", "a", json!({"size": "3"})),
        )
        .await
        .unwrap();
    assert_eq!(created.data["spec"], json!({"size": "3"}));
    assert_eq!(seen.reviews.load(Ordering::SeqCst), 0);

    // Read in v2: converted by the webhook, metadata kept.
    let got = v2.get("a").await.unwrap();
    assert_eq!(api_version(&got), "example.com/v2");
    assert_eq!(got.data["spec"], json!({"sizeInt": 3}));
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(got.metadata.labels, created.metadata.labels);
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );

    // Written in v2: stored as v1, answered in v2.
    let written = v2
        .create(
            &PostParams::default(),
            &widget("v2", "b", json!({"sizeInt": 5})),
        )
        .await
        .unwrap();
    assert_eq!(api_version(&written), "example.com/v2");
    assert_eq!(written.data["spec"], json!({"sizeInt": 5}));
    assert_eq!(seen.to_v1.load(Ordering::SeqCst), 1);
    let stored = v1.get("b").await.unwrap();
    assert_eq!(api_version(&stored), "example.com/v1");
    assert_eq!(stored.data["spec"], json!({"size": "5"}));

    // Patched in v2: the patch applies to the v2 form, the result is stored
    // as v1.
    let patched = v2
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"sizeInt": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"], json!({"sizeInt": 7}));
    assert_eq!(
        v1.get("a").await.unwrap().data["spec"],
        json!({"size": "7"})
    );

    // Listed in v2: every item converted, in one review.
    let before = seen.reviews.load(Ordering::SeqCst);
    let listed = v2.list(&ListParams::default()).await.unwrap();
    assert_eq!(seen.reviews.load(Ordering::SeqCst), before + 1);
    let mut specs: Vec<(String, Value)> = listed
        .items
        .iter()
        .map(|o| {
            assert_eq!(api_version(o), "example.com/v2");
            (o.metadata.name.clone().unwrap(), o.data["spec"].clone())
        })
        .collect();
    specs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        specs,
        [
            ("a".to_owned(), json!({"sizeInt": 7})),
            ("b".to_owned(), json!({"sizeInt": 5}))
        ]
    );
    // In v1 nothing needs converting.
    let before = seen.reviews.load(Ordering::SeqCst);
    let listed = v1.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    assert_eq!(seen.reviews.load(Ordering::SeqCst), before);

    // Watched in v2: the initial objects and later changes, converted.
    let mut watch = v2
        .watch(&WatchParams::default().timeout(20), "0")
        .await
        .unwrap()
        .boxed();
    let mut added = Vec::new();
    while added.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), watch.try_next())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the watch goes on")
        {
            WatchEvent::Added(o) => {
                assert_eq!(api_version(&o), "example.com/v2");
                assert!(o.data["spec"]["sizeInt"].is_i64(), "{:?}", o.data);
                added.push(o.metadata.name.unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    v1.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": "9"}})),
    )
    .await
    .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), watch.try_next())
        .await
        .expect("an event in time")
        .unwrap()
        .expect("the watch goes on")
    {
        WatchEvent::Modified(o) => {
            assert_eq!(api_version(&o), "example.com/v2");
            assert_eq!(o.data["spec"], json!({"sizeInt": 9}));
        }
        other => panic!("unexpected {other:?}"),
    }
    drop(watch);

    // The webhook goes down: what needs it fails with upstream's 500; what
    // does not (v1, the storage version) still works.
    webhook.abort();
    let _ = webhook.await;
    let (code, message) = status(v2.get("a").await.unwrap_err());
    assert_eq!(code, 500);
    assert!(
        message.starts_with(&format!(
            "conversion webhook for example.com/v1, Kind=Widget failed: Post \"{url}?timeout=30s\": "
        )),
        "{message}"
    );
    let (code, message) = status(v2.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(code, 500);
    assert!(message.starts_with("conversion webhook for"), "{message}");
    let (code, message) = status(
        v2.create(
            &PostParams::default(),
            &widget("v2", "c", json!({"sizeInt": 1})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 500);
    assert!(
        message.starts_with("conversion webhook for example.com/v2, Kind=Widget failed: "),
        "{message}"
    );
    assert!(
        v1.get("c").await.is_err(),
        "a write that could not be converted is not stored"
    );
    assert_eq!(
        v1.get("a").await.unwrap().data["spec"],
        json!({"size": "7"})
    );
    server.stop().await;
}
