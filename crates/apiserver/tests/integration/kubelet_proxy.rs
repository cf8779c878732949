//! The subresources the API server serves through a node's kubelet — pod
//! logs, exec (an HTTP upgrade relayed byte for byte) and the node proxy —
//! end to end: a real server in-process, and a fake kubelet (HTTPS with a
//! self-signed certificate, client certificates checked against the cluster
//! CA) that records what reaches it, behind a Node whose status points at it;
//! and the resource metrics API, read from that kubelet's `/stats/summary`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{AsyncBufReadExt, TryStreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, LogParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Error};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// One request the fake kubelet received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    /// The CN of the client certificate presented.
    user: Option<String>,
    headers: http::HeaderMap,
}

/// An HTTPS "kubelet": `/containerLogs/...` answers two lines (with
/// `follow`, one line, then a second once released); `/exec/...` switches
/// protocols and echoes; `/stats/summary` reports the pod whose uid is in
/// `summary_uid`; anything else says what it saw.
struct FakeKubelet {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<Notify>,
    summary_uid: Arc<Mutex<String>>,
}

type FakeBody = BoxBody<Bytes, Infallible>;

/// A server, a fake kubelet behind Node `n1`, Pod `web` (one container,
/// `app`) bound to it, and the admin's client.
struct Setup {
    admin: Client,
    kubelet: FakeKubelet,
    server: Option<skiff_apiserver::Running>,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl FakeKubelet {
    async fn start(client_ca_pem: &str) -> FakeKubelet {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert =
            rcgen::generate_simple_self_signed(vec!["n1".into(), "127.0.0.1".into()]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
            roots.add(ca.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.cert.der().clone()],
                PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let summary_uid = Arc::new(Mutex::new(String::new()));
        let (seen2, release2, uid2) = (seen.clone(), release.clone(), summary_uid.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let (seen, release, uid) = (seen2.clone(), release2.clone(), uid2.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let user = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| common_name(c.as_ref()));
                    let service = hyper::service::service_fn(move |req| {
                        let (seen, release, user, uid) =
                            (seen.clone(), release.clone(), user.clone(), uid.clone());
                        async move { Ok::<_, Infallible>(kubelet(req, user, seen, release, uid).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        FakeKubelet {
            port,
            seen,
            release,
            summary_uid,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the kubelet saw a request")
    }
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    Some(cn.as_str().ok()?.to_owned())
}

fn whole(code: u16, text: impl Into<Bytes>) -> Response<FakeBody> {
    let mut r = Response::new(Full::new(text.into()).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
    r
}

async fn kubelet(
    mut req: Request<Incoming>,
    user: Option<String>,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<Notify>,
    summary_uid: Arc<Mutex<String>>,
) -> Response<FakeBody> {
    let uri = req.uri().to_string();
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        uri: uri.clone(),
        user,
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_owned();
    if path == "/stats/summary" {
        let uid = summary_uid.lock().unwrap().clone();
        let at = "2026-11-26T00:00:00Z";
        let summary = json!({
            "node": {"nodeName": "n1",
                "cpu": {"time": at, "usageNanoCores": 1_500_000_000u64},
                "memory": {"time": at, "workingSetBytes": 4u64 << 30}},
            "pods": [{
                "podRef": {"name": "web", "namespace": "default", "uid": uid},
                "containers": [{"name": "app",
                    "cpu": {"time": at, "usageNanoCores": 2_000_000u64},
                    "memory": {"time": at, "workingSetBytes": 8u64 << 20}}],
            }],
        });
        let mut r = whole(200, summary.to_string());
        r.headers_mut()
            .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        return r;
    }
    if path == "/containerLogs/default/two/b" {
        return whole(
            400,
            "container \"b\" in pod \"two\" is waiting to start: ContainerCreating",
        );
    }
    if path.starts_with("/containerLogs/") {
        if !uri.contains("follow=true") {
            return whole(200, "one\ntwo\n");
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            let _ = tx.send(Ok(Frame::data(Bytes::from("first\n")))).await;
            release.notified().await;
            let _ = tx.send(Ok(Frame::data(Bytes::from("second\n")))).await;
        });
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        return Response::new(BodyExt::boxed(body));
    }
    if path.starts_with("/exec/") {
        let Some(protocol) = req.headers().get(header::UPGRADE).cloned() else {
            return whole(400, "upgrade required");
        };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = whole(101, "");
        r.headers_mut().remove(header::CONTENT_TYPE);
        r.headers_mut()
            .insert(header::CONNECTION, "Upgrade".parse().unwrap());
        r.headers_mut().insert(header::UPGRADE, protocol);
        r.headers_mut().insert(
            "x-stream-protocol-version",
            "v4.channel.k8s.io".parse().unwrap(),
        );
        *r.body_mut() = Empty::new().boxed();
        return r;
    }
    let method = req.method().to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    whole(
        200,
        format!(
            "kubelet saw {method} {uri} {}",
            String::from_utf8_lossy(&body)
        ),
    )
}

impl Setup {
    async fn start() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let server = skiff_apiserver::start(skiff_apiserver::Config {
            data_dir: tmp.path().to_owned(),
            secure_port: 0,
            bind_address: "127.0.0.1".parse().unwrap(),
            ..Default::default()
        })
        .await
        .expect("the server starts");
        let admin = client_from(Kubeconfig::read_from(&server.admin_kubeconfig).unwrap()).await;
        let kubelet = FakeKubelet::start(&server.ca_pem).await;
        let nodes: Api<Node> = Api::all(admin.clone());
        let node = json!({
            "metadata": {"name": "n1"},
            "status": {
                "addresses": [
                    {"type": "Hostname", "address": "n1.invalid"},
                    {"type": "InternalIP", "address": "127.0.0.1"},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
            },
        });
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(node).unwrap(),
            )
            .await
            .unwrap();
        let setup = Setup {
            admin,
            kubelet,
            server: Some(server),
            dir: tmp.path().to_owned(),
            _tmp: tmp,
        };
        setup.pod("web", Some("n1"), &["app"]).await;
        setup
    }

    async fn pod(&self, name: &str, node: Option<&str>, containers: &[&str]) {
        let containers: Vec<_> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "busybox"}))
            .collect();
        let mut pod = json!({"metadata": {"name": name}, "spec": {"containers": containers}});
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        self.pods()
            .create(
                &PostParams::default(),
                &serde_json::from_value(pod).unwrap(),
            )
            .await
            .unwrap();
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), "default")
    }

    fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().addr
    }

    /// A client with a certificate signed by the cluster CA, CN = `name`.
    async fn client_for(&self, name: &str) -> Client {
        let ca_cert = std::fs::read_to_string(self.pki().join("ca.crt")).unwrap();
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(self.pki().join("ca.key")).unwrap())
                .unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_cert, ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let url = format!("https://{}", self.addr());
        let yaml =
            skiff_apiserver::pki::kubeconfig(&url, &ca_cert, &cert.pem(), &key.serialize_pem());
        client_from(Kubeconfig::from_yaml(&yaml).unwrap()).await
    }

    /// A raw HTTP/1.1 connection to the server as the admin, as kubectl
    /// opens one for exec.
    async fn raw_admin_connection(&self) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
        raw_connection(&self.pki(), self.addr()).await
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

async fn raw_connection(
    pki: &Path,
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let read = |name: &str| std::fs::read(pki.join(name)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&read("ca.crt")) {
        roots.add(ca.unwrap()).unwrap();
    }
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&read("admin.crt"))
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(&read("admin.key")).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    sender
}

async fn client_from(kubeconfig: Kubeconfig) -> Client {
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn status(e: &Error) -> (u16, String) {
    match e {
        Error::Api(s) => (s.code, s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn logs_reach_the_kubelet_with_the_path_and_query_upstream_writes() {
    let s = Setup::start().await;
    let params = LogParams {
        tail_lines: Some(2),
        timestamps: true,
        ..Default::default()
    };
    let text = s.pods().logs("web", &params).await.unwrap();
    assert_eq!(text, "one\ntwo\n");
    let seen = s.kubelet.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.uri,
        "/containerLogs/default/web/app?tailLines=2&timestamps=true"
    );
    assert_eq!(
        seen.user.as_deref(),
        Some("kube-apiserver-kubelet-client"),
        "the server presents its kubelet client certificate"
    );
    assert!(
        !seen.headers.contains_key(header::AUTHORIZATION),
        "the caller's credentials stay with the API server"
    );

    // The kubelet would ask whether that user may use its API: it may.
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {
            "user": "kube-apiserver-kubelet-client",
            "resourceAttributes": {"verb": "get", "resource": "nodes", "subresource": "proxy", "name": "n1"},
        },
    }))
    .unwrap();
    let answer = Api::<SubjectAccessReview>::all(s.admin.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    assert!(answer.status.unwrap().allowed);

    // Options upstream refuses are refused before any kubelet is asked.
    let before = s.kubelet.seen().len();
    let bad = LogParams {
        tail_lines: Some(-1),
        ..Default::default()
    };
    let err = s.pods().logs("web", &bad).await.unwrap_err();
    assert_eq!(status(&err).0, 422);
    assert_eq!(s.kubelet.seen().len(), before);
    s.stop().await;
}

#[tokio::test]
async fn following_logs_streams_each_line_as_the_kubelet_writes_it() {
    let s = Setup::start().await;
    let params = LogParams {
        follow: true,
        ..Default::default()
    };
    let mut lines = s.pods().log_stream("web", &params).await.unwrap().lines();
    let first = tokio::time::timeout(WAIT, lines.try_next()).await;
    assert_eq!(
        first
            .expect("the first line arrives before the stream ends")
            .unwrap(),
        Some("first".to_owned())
    );
    assert_eq!(
        s.kubelet.last().uri,
        "/containerLogs/default/web/app?follow=true"
    );
    s.kubelet.release.notify_one();
    let second = tokio::time::timeout(WAIT, lines.try_next()).await.unwrap();
    assert_eq!(second.unwrap(), Some("second".to_owned()));
    let end = tokio::time::timeout(WAIT, lines.try_next()).await.unwrap();
    assert_eq!(end.unwrap(), None);
    s.stop().await;
}

#[tokio::test]
async fn exec_upgrades_through_to_the_kubelet_and_bytes_echo_both_ways() {
    let s = Setup::start().await;
    for (method, protocol) in [("POST", "SPDY/3.1"), ("GET", "websocket")] {
        let mut sender = s.raw_admin_connection().await;
        let request = Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/default/pods/web/exec?command=cat&command=-u&stdin=true&stdout=true&tty=false")
            .header(header::HOST, s.addr().to_string())
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, protocol)
            .header("X-Stream-Protocol-Version", "v4.channel.k8s.io")
            .header("Sec-WebSocket-Protocol", "v5.channel.k8s.io")
            .body(Empty::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()[header::UPGRADE], protocol);
        assert_eq!(
            response.headers()["x-stream-protocol-version"],
            "v4.channel.k8s.io"
        );

        let seen = s.kubelet.last();
        assert_eq!(seen.method, method);
        assert_eq!(
            seen.uri,
            "/exec/default/web/app?command=cat&command=-u&input=1&output=1"
        );
        assert_eq!(seen.headers[header::UPGRADE], protocol);
        assert_eq!(seen.headers["sec-websocket-protocol"], "v5.channel.k8s.io");
        assert_eq!(
            seen.headers["x-stream-protocol-version"],
            "v4.channel.k8s.io"
        );

        let upgraded = tokio::time::timeout(WAIT, hyper::upgrade::on(response))
            .await
            .unwrap()
            .unwrap();
        let mut io = TokioIo::new(upgraded);
        for message in [&b"hello"[..], b", kubelet"] {
            io.write_all(message).await.unwrap();
            let mut echoed = vec![0; message.len()];
            tokio::time::timeout(WAIT, io.read_exact(&mut echoed))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(echoed, message);
        }
    }

    // Without an upgrade there is nothing to relay.
    let mut sender = s.raw_admin_connection().await;
    let plain = Request::post("/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=1")
        .header(header::HOST, s.addr().to_string())
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(plain).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn a_container_must_be_named_when_there_are_several_and_a_pod_must_be_scheduled() {
    let s = Setup::start().await;
    s.pod("two", Some("n1"), &["a", "b"]).await;
    let before = s.kubelet.seen().len();
    let err = s
        .pods()
        .logs("two", &LogParams::default())
        .await
        .unwrap_err();
    assert_eq!(
        status(&err),
        (
            400,
            "a container name must be specified for pod two, choose one of: [a b]".to_owned()
        )
    );
    assert_eq!(s.kubelet.seen().len(), before, "the kubelet is not asked");

    // A named container goes through, and the kubelet's refusal comes back.
    let err = s
        .pods()
        .logs(
            "two",
            &LogParams {
                container: Some("b".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        status(&err),
        (
            400,
            "container \"b\" in pod \"two\" is waiting to start: ContainerCreating".to_owned()
        )
    );
    assert_eq!(s.kubelet.last().uri, "/containerLogs/default/two/b");

    // An unscheduled pod has no logs yet, and nothing to exec into.
    s.pod("pending", None, &["app"]).await;
    let text = s
        .pods()
        .logs("pending", &LogParams::default())
        .await
        .unwrap();
    assert_eq!(text, "");
    let mut sender = s.raw_admin_connection().await;
    let exec = Request::post("/api/v1/namespaces/default/pods/pending/exec?command=ls&stdout=1")
        .header(header::HOST, s.addr().to_string())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(exec).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["message"], "pod pending does not have a host assigned");
    s.stop().await;
}

#[tokio::test]
async fn the_node_proxy_forwards_method_path_query_and_body() {
    let s = Setup::start().await;
    let get = Request::get("/api/v1/nodes/n1/proxy/metrics/cadvisor?x=1&y=a%20b")
        .body(Vec::new())
        .unwrap();
    let text = s.admin.request_text(get).await.unwrap();
    assert_eq!(text, "kubelet saw GET /metrics/cadvisor?x=1&y=a%20b ");
    assert_eq!(
        s.kubelet.last().user.as_deref(),
        Some("kube-apiserver-kubelet-client")
    );

    let post = Request::post("/api/v1/nodes/n1/proxy/")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(b"ping".to_vec())
        .unwrap();
    let text = s.admin.request_text(post).await.unwrap();
    assert_eq!(text, "kubelet saw POST / ping");

    // `name:port` naming the kubelet's own port is the kubelet.
    let port = s.kubelet.port;
    let get = Request::get(format!("/api/v1/nodes/n1:{port}/proxy/healthz"))
        .body(Vec::new())
        .unwrap();
    let text = s.admin.request_text(get).await.unwrap();
    assert_eq!(text, "kubelet saw GET /healthz ");

    let missing = Request::get("/api/v1/nodes/n2/proxy/healthz")
        .body(Vec::new())
        .unwrap();
    let err = s.admin.request_text(missing).await.unwrap_err();
    assert_eq!(status(&err), (404, "nodes \"n2\" not found".to_owned()));
    s.stop().await;
}

#[tokio::test]
async fn a_user_without_pods_log_permission_is_forbidden_and_the_kubelet_never_asked() {
    let s = Setup::start().await;
    let before = s.kubelet.seen().len();
    let bob = s.client_for("bob").await;
    let err = Api::<Pod>::namespaced(bob.clone(), "default")
        .logs("web", &LogParams::default())
        .await
        .unwrap_err();
    let (code, message) = status(&err);
    assert_eq!(code, 403);
    assert!(
        message.contains("cannot get resource \"pods/log\""),
        "{message}"
    );
    let proxy = Request::get("/api/v1/nodes/n1/proxy/metrics")
        .body(Vec::new())
        .unwrap();
    let err = bob.request_text(proxy).await.unwrap_err();
    assert_eq!(status(&err).0, 403);
    assert_eq!(s.kubelet.seen().len(), before);
    s.stop().await;
}

#[tokio::test]
async fn the_metrics_api_reads_node_and_pod_usage_from_the_kubelet() {
    let s = Setup::start().await;
    let web = s.pods().get("web").await.unwrap();
    *s.kubelet.summary_uid.lock().unwrap() = web.metadata.uid.clone().unwrap();
    s.pods()
        .patch_status(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    let get = |path: &str| {
        let (client, path) = (s.admin.clone(), path.to_owned());
        async move {
            let req = Request::get(path).body(Vec::new()).unwrap();
            client.request::<serde_json::Value>(req).await
        }
    };

    // Discovery lists the group and both resources, as metrics-server's.
    let resources = get("/apis/metrics.k8s.io/v1beta1").await.unwrap();
    let names: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nodes", "pods"]);

    let nodes = get("/apis/metrics.k8s.io/v1beta1/nodes").await.unwrap();
    assert_eq!(nodes["kind"], "NodeMetricsList");
    assert_eq!(nodes["items"][0]["metadata"]["name"], "n1");
    assert_eq!(
        nodes["items"][0]["usage"],
        json!({"cpu": "1500000000n", "memory": "4194304Ki"})
    );
    let pod = get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web")
        .await
        .unwrap();
    assert_eq!(pod["kind"], "PodMetrics");
    assert_eq!(
        pod["containers"],
        json!([{"name": "app", "usage": {"cpu": "2000000n", "memory": "8192Ki"}}])
    );
    let pods = get("/apis/metrics.k8s.io/v1beta1/pods").await.unwrap();
    assert_eq!(pods["items"].as_array().unwrap().len(), 1);
    let none = get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dnone")
        .await
        .unwrap();
    assert_eq!(none["items"], json!([]));

    let err = get("/apis/metrics.k8s.io/v1beta1/nodes/n2")
        .await
        .unwrap_err();
    assert_eq!(
        status(&err),
        (404, "nodes.metrics.k8s.io \"n2\" not found".to_owned())
    );
    let err = get("/apis/metrics.k8s.io/v1beta1/nodes?watch=true")
        .await
        .unwrap_err();
    assert_eq!(status(&err).0, 405);
    s.stop().await;
}
