//! The kubelet's HTTPS server on :10250: `/healthz`, `/pods`,
//! `/containerLogs/{ns}/{pod}/{container}` (follow, tailLines, sinceSeconds,
//! timestamps, previous, limitBytes), `/exec`, `/attach` and `/portForward`
//! (the upgrade is proxied byte for byte to the runtime's streaming server,
//! so WebSocket and SPDY both pass), and `/metrics`. Client certificates
//! signed by `--client-ca-file` identify callers; every request but
//! `/healthz` is authorized by a SubjectAccessReview, as upstream's
//! webhook authorization mode does.

use crate::Kubelet;
use crate::cri::{api, labels, pod_uid_selector};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use rustls::pki_types::pem::PemObject;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(text.into()).boxed());
    *r.status_mut() = status;
    r
}

/// Serves until the listener fails.
pub async fn serve(kubelet: Arc<Kubelet>) -> anyhow::Result<()> {
    let tls = Arc::new(tls_config(&kubelet)?);
    let addr = std::net::SocketAddr::new(kubelet.config.address, kubelet.config.port);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "kubelet server listening");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let kubelet = kubelet.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| x509_common_name(c.as_ref()));
            let service = hyper::service::service_fn(move |req| {
                let kubelet = kubelet.clone();
                let user = user.clone();
                async move { Ok::<_, Infallible>(handle(kubelet, user, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn tls_config(kubelet: &Kubelet) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (certs, key) = match (
        &kubelet.config.tls_cert_file,
        &kubelet.config.tls_private_key_file,
    ) {
        (Some(cert), Some(key)) => {
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(cert)?
                .collect::<Result<Vec<_>, _>>()?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)?;
            (certs, key)
        }
        _ => {
            // Upstream self-signs a serving certificate when none is given.
            let names = vec![
                kubelet.config.node_name.clone(),
                kubelet.host_ip.to_string(),
                "localhost".into(),
            ];
            let cert = rcgen::generate_simple_self_signed(names)?;
            (
                vec![cert.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
            )
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &kubelet.config.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
                roots.add(c?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Ok(builder.with_single_cert(certs, key)?)
}

/// The client certificate's subject: CN is the user, O values the groups.
fn x509_common_name(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    Some((cn, groups))
}

fn query(req: &Request<Incoming>) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for pair in req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(decode(k)).or_default().push(decode(v));
    }
    map
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The SubjectAccessReview attributes upstream's kubelet uses for a path.
fn attributes(
    path: &str,
    method: &http::Method,
    node: &str,
) -> (Option<ResourceAttributes>, Option<NonResourceAttributes>) {
    let verb = match *method {
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "get",
    };
    let sub = match path.split('/').nth(1).unwrap_or_default() {
        "stats" => "stats",
        "metrics" => "metrics",
        "logs" => "log",
        "healthz" => {
            return (
                None,
                Some(NonResourceAttributes {
                    path: Some(path.into()),
                    verb: Some(verb.into()),
                }),
            );
        }
        _ => "proxy",
    };
    (
        Some(ResourceAttributes {
            verb: Some(verb.into()),
            resource: Some("nodes".into()),
            subresource: Some(sub.into()),
            name: Some(node.into()),
            ..Default::default()
        }),
        None,
    )
}

async fn authorize(
    kubelet: &Kubelet,
    user: &Option<(String, Vec<String>)>,
    req: &Request<Incoming>,
) -> Result<(), Response<Body>> {
    if req.uri().path() == "/healthz" {
        return Ok(());
    }
    let bearer = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let user = match (user, bearer) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(token)) => token_user(kubelet, token).await,
        (None, None) => None,
    };
    let Some((name, groups)) = &user else {
        return Err(full(StatusCode::UNAUTHORIZED, "Unauthorized"));
    };
    let (resource_attributes, non_resource_attributes) =
        attributes(req.uri().path(), req.method(), &kubelet.config.node_name);
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(name.clone()),
            groups: Some(groups.clone()),
            resource_attributes,
            non_resource_attributes,
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(kubelet.client.clone());
    match api.create(&PostParams::default(), &review).await {
        Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => Ok(()),
        Ok(_) => Err(full(
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden (user={name}, verb={}, resource=nodes, subresource(s)=[proxy])",
                req.method().as_str().to_lowercase()
            ),
        )),
        Err(err) => Err(full(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("authorization failed: {err}"),
        )),
    }
}

/// A bearer token's user, from a TokenReview (upstream's webhook authentication).
async fn token_user(kubelet: &Kubelet, token: String) -> Option<(String, Vec<String>)> {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token),
            audiences: None,
        },
        ..Default::default()
    };
    let api: Api<TokenReview> = Api::all(kubelet.client.clone());
    let status = api
        .create(&PostParams::default(), &review)
        .await
        .ok()?
        .status?;
    if !status.authenticated.unwrap_or(false) {
        return None;
    }
    let user = status.user?;
    Some((user.username?, user.groups.unwrap_or_default()))
}

async fn handle(
    kubelet: Arc<Kubelet>,
    user: Option<(String, Vec<String>)>,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Err(resp) = authorize(&kubelet, &user, &req).await {
        return resp;
    }
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["healthz"] => full(StatusCode::OK, "ok"),
        ["pods"] => pods(&kubelet),
        ["metrics"] => metrics(&kubelet),
        ["stats", "summary"] => stats_summary(&kubelet).await,
        ["containerLogs", ns, pod, container] => {
            container_logs(&kubelet, ns, pod, container, query(&req)).await
        }
        ["exec", ns, pod, container] | ["attach", ns, pod, container] => {
            let kind = parts[0].to_string();
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            stream(&kubelet, req, &kind, &ns, &pod, Some(&container)).await
        }
        ["portForward", ns, pod] => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            stream(&kubelet, req, "portForward", &ns, &pod, None).await
        }
        _ => full(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

fn pods(kubelet: &Kubelet) -> Response<Body> {
    let items: Vec<Pod> = kubelet
        .pods
        .known
        .lock()
        .unwrap()
        .values()
        .map(|p| (**p).clone())
        .collect();
    let list =
        serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
    let mut r = full(
        StatusCode::OK,
        serde_json::to_vec(&list).unwrap_or_default(),
    );
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn metrics(kubelet: &Kubelet) -> Response<Body> {
    let text = format!(
        "# HELP kubelet_running_pods Number of pods that have a running pod sandbox\n# TYPE kubelet_running_pods gauge\nkubelet_running_pods {}\n# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n",
        kubelet.pods.len(),
        crate::sys::own_rss_bytes()
    );
    full(StatusCode::OK, text)
}

/// `/stats/summary` in upstream's shape (what metrics-server reads): node
/// CPU and memory from the host, and each pod's containers from the
/// runtime's container stats.
async fn stats_summary(kubelet: &Kubelet) -> Response<Body> {
    let now = jiff::Timestamp::now().to_string();
    let stats = kubelet
        .runtime
        .list_container_stats()
        .await
        .unwrap_or_default();
    let mut per_pod: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for s in &stats {
        let Some(a) = &s.attributes else { continue };
        let Some(uid) = a.labels.get(labels::POD_UID) else {
            continue;
        };
        let name = a
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let cpu = s.cpu.as_ref();
        let memory = s.memory.as_ref();
        per_pod.entry(uid.clone()).or_default().push(serde_json::json!({
            "name": name,
            "cpu": {
                "time": now,
                "usageNanoCores": cpu.and_then(|c| c.usage_nano_cores.as_ref()).map(|v| v.value).unwrap_or(0),
                "usageCoreNanoSeconds": cpu.and_then(|c| c.usage_core_nano_seconds.as_ref()).map(|v| v.value).unwrap_or(0),
            },
            "memory": {
                "time": now,
                "workingSetBytes": memory.and_then(|m| m.working_set_bytes.as_ref()).map(|v| v.value).unwrap_or(0),
                "usageBytes": memory.and_then(|m| m.usage_bytes.as_ref()).map(|v| v.value).unwrap_or(0),
                "rssBytes": memory.and_then(|m| m.rss_bytes.as_ref()).map(|v| v.value).unwrap_or(0),
            },
        }));
    }
    let known: Vec<Arc<Pod>> = kubelet
        .pods
        .known
        .lock()
        .unwrap()
        .values()
        .cloned()
        .collect();
    let sum = |containers: &[serde_json::Value], path: &[&str]| -> u64 {
        containers
            .iter()
            .map(|c| path.iter().fold(c, |v, k| &v[*k]).as_u64().unwrap_or(0))
            .sum()
    };
    let pods: Vec<serde_json::Value> = known
        .iter()
        .filter_map(|p| {
            let uid = p.metadata.uid.clone()?;
            let containers = per_pod.remove(&uid).unwrap_or_default();
            Some(serde_json::json!({
                "podRef": {"name": p.metadata.name, "namespace": p.metadata.namespace, "uid": uid},
                "startTime": p.status.as_ref().and_then(|s| s.start_time.clone()),
                "cpu": {"time": now, "usageNanoCores": sum(&containers, &["cpu", "usageNanoCores"]), "usageCoreNanoSeconds": sum(&containers, &["cpu", "usageCoreNanoSeconds"])},
                "memory": {"time": now, "workingSetBytes": sum(&containers, &["memory", "workingSetBytes"]), "usageBytes": sum(&containers, &["memory", "usageBytes"])},
                "containers": containers,
            }))
        })
        .collect();
    let (memory_total, memory_available) = crate::sys::memory_bytes();
    let (fs_total, fs_available) =
        crate::sys::filesystem_bytes(&kubelet.config.root_dir).unwrap_or((0, 0));
    let summary = serde_json::json!({
        "node": {
            "nodeName": kubelet.config.node_name,
            "startTime": now,
            "cpu": {"time": now, "usageCoreNanoSeconds": crate::sys::cpu_usage_nanos(), "usageNanoCores": crate::sys::cpu_usage_nano_cores()},
            "memory": {"time": now, "availableBytes": memory_available, "workingSetBytes": memory_total.saturating_sub(memory_available), "usageBytes": memory_total.saturating_sub(memory_available)},
            "fs": {"time": now, "availableBytes": fs_available, "capacityBytes": fs_total, "usedBytes": fs_total.saturating_sub(fs_available)},
        },
        "pods": pods,
    });
    let mut r = full(
        StatusCode::OK,
        serde_json::to_vec(&summary).unwrap_or_default(),
    );
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn find_pod(kubelet: &Kubelet, ns: &str, name: &str) -> Option<Arc<Pod>> {
    kubelet
        .pods
        .known
        .lock()
        .unwrap()
        .values()
        .find(|p| {
            p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name)
        })
        .cloned()
}

/// The pod's containers named `container`, newest first.
async fn containers_named(kubelet: &Kubelet, pod: &Pod, container: &str) -> Vec<api::Container> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let filter = api::ContainerFilter {
        label_selector: pod_uid_selector(&uid),
        ..Default::default()
    };
    let mut list: Vec<api::Container> = kubelet
        .runtime
        .list_containers(Some(filter))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(container))
        .collect();
    list.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.metadata.as_ref().map(|m| m.attempt))));
    list
}

/// One parsed CRI log line.
struct LogLine {
    time: String,
    text: String,
}

fn parse_log_line(line: &str) -> Option<LogLine> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?.to_string();
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let mut text = parts.next().unwrap_or_default().to_string();
    if tag != "P" {
        text.push('\n');
    }
    Some(LogLine { time, text })
}

async fn container_logs(
    kubelet: &Arc<Kubelet>,
    ns: &str,
    name: &str,
    container: &str,
    q: HashMap<String, Vec<String>>,
) -> Response<Body> {
    let get = |k: &str| q.get(k).and_then(|v| v.first()).cloned();
    let flag = |k: &str| get(k).is_some_and(|v| v.is_empty() || v == "true" || v == "1");
    let Some(pod) = find_pod(kubelet, ns, name) else {
        return full(
            StatusCode::NOT_FOUND,
            format!("pod \"{name}\" in namespace \"{ns}\" not found on this node"),
        );
    };
    let containers = containers_named(kubelet, &pod, container).await;
    let pick = if flag("previous") {
        containers.get(1)
    } else {
        containers.first()
    };
    let Some(c) = pick.cloned() else {
        let which = if flag("previous") {
            "previous terminated container"
        } else {
            "container"
        };
        return full(
            StatusCode::BAD_REQUEST,
            format!("{which} \"{container}\" in pod \"{name}\" not found"),
        );
    };
    let status = match kubelet.runtime.container_status(&c.id).await {
        Ok(s) => s,
        Err(err) => return full(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    };
    let log_dir = kubelet
        .config
        .pod_logs_dir
        .join(crate::pods::spec::log_dir_name(&pod));
    let path = if status.log_path.starts_with('/') {
        std::path::PathBuf::from(&status.log_path)
    } else {
        log_dir.join(&status.log_path)
    };
    let tail: Option<usize> = get("tailLines").and_then(|v| v.parse().ok());
    let since: Option<jiff::Timestamp> = get("sinceSeconds")
        .and_then(|v| v.parse::<i64>().ok())
        .map(|s| jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s))
        .or_else(|| get("sinceTime").and_then(|t| t.parse().ok()));
    let timestamps = flag("timestamps");
    let follow = flag("follow");
    let limit: Option<usize> = get("limitBytes").and_then(|v| v.parse().ok());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    let kubelet = kubelet.clone();
    let id = c.id.clone();
    tokio::spawn(async move {
        let Ok(file) = tokio::fs::File::open(&path).await else {
            return;
        };
        let mut reader = tokio::io::BufReader::new(file);
        let mut sent = 0usize;
        let render = |l: &LogLine| {
            if timestamps {
                format!("{} {}", l.time, l.text)
            } else {
                l.text.clone()
            }
        };
        // Existing content, filtered by sinceSeconds and tailLines.
        let mut lines: Vec<LogLine> = Vec::new();
        let mut buf = String::new();
        while reader.read_line(&mut buf).await.unwrap_or(0) > 0 {
            if buf.ends_with('\n')
                && let Some(l) = parse_log_line(buf.trim_end_matches('\n'))
            {
                let keep =
                    since.is_none_or(|s| l.time.parse::<jiff::Timestamp>().is_ok_and(|t| t >= s));
                if keep {
                    lines.push(l);
                }
                buf.clear();
            } else if !buf.ends_with('\n') {
                break;
            }
        }
        if let Some(n) = tail {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        for l in &lines {
            let mut chunk = render(l).into_bytes();
            if let Some(limit) = limit {
                if sent >= limit {
                    return;
                }
                chunk.truncate(limit - sent);
            }
            sent += chunk.len();
            if tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        loop {
            let n = reader.read_line(&mut buf).await.unwrap_or(0);
            if n > 0 && buf.ends_with('\n') {
                if let Some(l) = parse_log_line(buf.trim_end_matches('\n'))
                    && tx
                        .send(Ok(Frame::data(Bytes::from(render(&l)))))
                        .await
                        .is_err()
                {
                    return;
                }
                buf.clear();
                continue;
            }
            let running = kubelet
                .runtime
                .container_status(&id)
                .await
                .is_ok_and(|s| s.state == api::ContainerState::ContainerRunning as i32);
            if !running || tx.is_closed() {
                // Drain what the container wrote before it ended.
                let mut rest = std::mem::take(&mut buf);
                let _ = reader.read_to_string(&mut rest).await;
                for line in rest.lines() {
                    if let Some(l) = parse_log_line(line) {
                        let _ = tx.send(Ok(Frame::data(Bytes::from(render(&l))))).await;
                    }
                }
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    });
    let body = StreamBody::new(tokio_stream_from(rx));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    r
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Exec, attach and port-forward: asks the runtime for a streaming URL and
/// relays the client's upgrade request to it, then splices the connections.
async fn stream(
    kubelet: &Kubelet,
    mut req: Request<Incoming>,
    kind: &str,
    ns: &str,
    name: &str,
    container: Option<&str>,
) -> Response<Body> {
    let Some(pod) = find_pod(kubelet, ns, name) else {
        return full(
            StatusCode::NOT_FOUND,
            format!("pod \"{name}\" in namespace \"{ns}\" not found on this node"),
        );
    };
    let q = query(&req);
    let flag = |k: &str| {
        q.get(k)
            .and_then(|v| v.first())
            .is_some_and(|v| v == "1" || v == "true")
    };
    let url = match (kind, container) {
        ("portForward", _) => {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let sandboxes = kubelet
                .runtime
                .list_pod_sandbox(Some(api::PodSandboxFilter {
                    label_selector: pod_uid_selector(&uid),
                    ..Default::default()
                }))
                .await
                .unwrap_or_default();
            let Some(s) = sandboxes
                .iter()
                .find(|s| s.state == api::PodSandboxState::SandboxReady as i32)
            else {
                return full(StatusCode::BAD_REQUEST, "pod has no running sandbox");
            };
            let ports = q
                .get("port")
                .cloned()
                .unwrap_or_default()
                .iter()
                .flat_map(|p| p.split(','))
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            kubelet
                .runtime
                .port_forward(api::PortForwardRequest {
                    pod_sandbox_id: s.id.clone(),
                    port: ports,
                })
                .await
        }
        (_, Some(container)) => {
            let Some(c) = containers_named(kubelet, &pod, container)
                .await
                .into_iter()
                .find(|c| c.state == api::ContainerState::ContainerRunning as i32)
            else {
                return full(
                    StatusCode::BAD_REQUEST,
                    format!("container {container} is not running"),
                );
            };
            if kind == "exec" {
                kubelet
                    .runtime
                    .exec(api::ExecRequest {
                        container_id: c.id.clone(),
                        cmd: q.get("command").cloned().unwrap_or_default(),
                        tty: flag("tty"),
                        stdin: flag("input") || flag("stdin"),
                        stdout: flag("output") || flag("stdout"),
                        stderr: flag("error") || flag("stderr"),
                    })
                    .await
            } else {
                kubelet
                    .runtime
                    .attach(api::AttachRequest {
                        container_id: c.id.clone(),
                        tty: flag("tty"),
                        stdin: flag("input") || flag("stdin"),
                        stdout: flag("output") || flag("stdout"),
                        stderr: flag("error") || flag("stderr"),
                    })
                    .await
            }
        }
        _ => return full(StatusCode::BAD_REQUEST, "no container"),
    };
    let url = match url {
        Ok(u) => u,
        Err(err) => return full(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    };
    let Ok(target) = url.parse::<http::Uri>() else {
        return full(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("runtime returned a bad URL {url}"),
        );
    };
    let authority = target
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut backend = match tokio::net::TcpStream::connect(&authority).await {
        Ok(s) => s,
        Err(err) => {
            return full(
                StatusCode::BAD_GATEWAY,
                format!("connecting to the runtime's stream server: {err}"),
            );
        }
    };
    // Relay the request head with the upgrade headers.
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {authority}\r\n",
        req.method(),
        target.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    for (k, v) in req.headers() {
        let k = k.as_str();
        if k.eq_ignore_ascii_case("host")
            || k.eq_ignore_ascii_case("authorization")
            || k.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or_default()));
    }
    head.push_str("\r\n");
    if backend.write_all(head.as_bytes()).await.is_err() {
        return full(
            StatusCode::BAD_GATEWAY,
            "writing to the runtime's stream server failed",
        );
    }
    // Read the response head.
    let mut response_bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !response_bytes.ends_with(b"\r\n\r\n") {
        match backend.read(&mut byte).await {
            Ok(1) => response_bytes.push(byte[0]),
            _ => {
                return full(
                    StatusCode::BAD_GATEWAY,
                    "the runtime's stream server closed the connection",
                );
            }
        }
        if response_bytes.len() > 64 * 1024 {
            return full(StatusCode::BAD_GATEWAY, "oversized response head");
        }
    }
    let text = String::from_utf8_lossy(&response_bytes).to_string();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(502);
    let mut response = Response::builder().status(code);
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((k, v)) = line.split_once(':') {
            response = response.header(k.trim(), v.trim());
        }
    }
    if code != 101 {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            backend.read_to_end(&mut rest),
        )
        .await;
        return response
            .body(Full::new(Bytes::from(rest)).boxed())
            .unwrap_or_else(|_| full(StatusCode::BAD_GATEWAY, ""));
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let mut client = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        }
    });
    response
        .body(Full::new(Bytes::new()).boxed())
        .unwrap_or_else(|_| full(StatusCode::BAD_GATEWAY, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines() {
        let l = parse_log_line("2026-11-25T10:00:00.123456789Z stdout F hello world").unwrap();
        assert_eq!(l.text, "hello world\n");
        let p = parse_log_line("2026-11-25T10:00:00Z stderr P part").unwrap();
        assert_eq!(p.text, "part");
        assert!(parse_log_line("garbage").is_none());
    }

    #[test]
    fn query_decoding() {
        assert_eq!(decode("a%20b+c"), "a b c");
        assert_eq!(decode("%2Fbin%2Fsh"), "/bin/sh");
    }
}
