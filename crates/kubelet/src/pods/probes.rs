//! Liveness, readiness and startup probes (exec, httpGet, tcpSocket, grpc),
//! one task per probe of a running container, with upstream's timing:
//! initialDelaySeconds, periodSeconds, timeoutSeconds, and success/failure
//! thresholds. Liveness and readiness wait until the startup probe passes.
//! A result that flips wakes the pod's worker, which acts on it.

use crate::Kubelet;
use crate::cri::Runtime;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

/// The current result of every probe, by container id.
#[derive(Default)]
pub struct Results {
    map: Mutex<HashMap<(String, Kind), bool>>,
}

impl Results {
    /// The result, or the value before the first probe (liveness passes,
    /// readiness and startup do not).
    pub fn get(&self, container_id: &str, kind: Kind) -> Option<bool> {
        self.map
            .lock()
            .unwrap()
            .get(&(container_id.to_string(), kind))
            .copied()
    }

    fn set(&self, container_id: &str, kind: Kind, ok: bool) -> bool {
        self.map
            .lock()
            .unwrap()
            .insert((container_id.to_string(), kind), ok)
            != Some(ok)
    }

    pub fn forget(&self, container_id: &str) {
        self.map
            .lock()
            .unwrap()
            .retain(|(id, _), _| id != container_id);
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// Starts the probe tasks of a running container; the handles end them.
pub fn start(
    kubelet: &Arc<Kubelet>,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    wake: &Arc<Notify>,
    failed: Arc<Mutex<HashMap<String, String>>>,
    pod_ref: k8s_openapi::api::core::v1::ObjectReference,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    let probes = [
        (Kind::Startup, container.startup_probe.clone()),
        (Kind::Liveness, container.liveness_probe.clone()),
        (Kind::Readiness, container.readiness_probe.clone()),
    ];
    let has_startup = container.startup_probe.is_some();
    for (kind, probe) in probes {
        let Some(probe) = probe else { continue };
        let task = ProbeTask {
            kubelet: kubelet.clone(),
            kind,
            probe,
            container: container.clone(),
            container_id: container_id.to_string(),
            pod_ip: pod_ip.to_string(),
            wake: wake.clone(),
            wait_for_startup: has_startup && kind != Kind::Startup,
            failed: failed.clone(),
            pod_ref: k8s_openapi::api::core::v1::ObjectReference {
                field_path: Some(format!("spec.containers{{{}}}", container.name)),
                ..pod_ref.clone()
            },
        };
        handles.push(tokio::spawn(task.run()));
    }
    handles
}

struct ProbeTask {
    kubelet: Arc<Kubelet>,
    kind: Kind,
    probe: Probe,
    container: Container,
    container_id: String,
    pod_ip: String,
    wake: Arc<Notify>,
    wait_for_startup: bool,
    /// Container name → why its liveness or startup probe failed, for the
    /// worker's Killing event.
    failed: Arc<Mutex<HashMap<String, String>>>,
    pod_ref: k8s_openapi::api::core::v1::ObjectReference,
}

impl ProbeTask {
    async fn run(self) {
        let period = Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64);
        let timeout = Duration::from_secs(self.probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        let success_threshold = self.probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = self.probe.failure_threshold.unwrap_or(3).max(1);
        let results = &self.kubelet.pods.probes;
        if self.wait_for_startup {
            while results.get(&self.container_id, Kind::Startup) != Some(true) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(
            self.probe.initial_delay_seconds.unwrap_or(0).max(0) as u64,
        ))
        .await;
        let (mut successes, mut failures) = (0, 0);
        loop {
            let outcome = match tokio::time::timeout(timeout, self.probe_once(timeout)).await {
                Ok(o) => o,
                Err(_) => Outcome::Failure(format!("probe timed out after {}s", timeout.as_secs())),
            };
            match &outcome {
                Outcome::Success => {
                    successes += 1;
                    failures = 0;
                    if successes >= success_threshold
                        && results.set(&self.container_id, self.kind, true)
                    {
                        self.wake.notify_one();
                    }
                    if self.kind == Kind::Startup && successes >= success_threshold {
                        return;
                    }
                }
                Outcome::Failure(message) => {
                    failures += 1;
                    successes = 0;
                    let kind = match self.kind {
                        Kind::Liveness => "Liveness",
                        Kind::Readiness => "Readiness",
                        Kind::Startup => "Startup",
                    };
                    self.kubelet.events.record(
                        self.pod_ref(),
                        crate::events::Type::Warning,
                        "Unhealthy",
                        format!("{kind} probe failed: {message}"),
                    );
                    if failures >= failure_threshold {
                        if self.kind != Kind::Readiness {
                            self.failed.lock().unwrap().insert(
                                self.container.name.clone(),
                                format!(
                                    "Container {} failed {} probe, will be restarted",
                                    self.container.name,
                                    kind.to_lowercase()
                                ),
                            );
                        }
                        if results.set(&self.container_id, self.kind, false)
                            || self.kind != Kind::Readiness
                        {
                            self.wake.notify_one();
                        }
                        if self.kind != Kind::Readiness {
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    fn pod_ref(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        self.pod_ref.clone()
    }

    async fn probe_once(&self, timeout: Duration) -> Outcome {
        run_handler(
            self.kubelet.runtime.as_ref(),
            &self.container,
            &self.container_id,
            &self.pod_ip,
            Handler {
                exec: self.probe.exec.as_ref().and_then(|e| e.command.clone()),
                http: self.probe.http_get.clone(),
                tcp: self
                    .probe
                    .tcp_socket
                    .as_ref()
                    .map(|t| (t.host.clone(), t.port.clone())),
                grpc: self
                    .probe
                    .grpc
                    .as_ref()
                    .map(|g| (g.port, g.service.clone().unwrap_or_default())),
            },
            timeout,
        )
        .await
    }
}

/// One probe or lifecycle hook action.
pub struct Handler {
    pub exec: Option<Vec<String>>,
    pub http: Option<k8s_openapi::api::core::v1::HTTPGetAction>,
    pub tcp: Option<(Option<String>, IntOrString)>,
    pub grpc: Option<(i32, String)>,
}

/// A named or numbered port of the container.
fn resolve_port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port as u16)
            .or_else(|| name.parse().ok())
            .ok_or_else(|| format!("port {name:?} is not a named port of the container")),
    }
}

/// Runs a probe or hook action against the container.
pub async fn run_handler(
    runtime: &dyn Runtime,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    handler: Handler,
    timeout: Duration,
) -> Outcome {
    if let Some(command) = handler.exec {
        return match runtime
            .exec_sync(container_id, command, timeout.as_secs() as i64)
            .await
        {
            Ok(r) if r.exit_code == 0 => Outcome::Success,
            Ok(r) => Outcome::Failure(format!(
                "command exited with {}: {}",
                r.exit_code,
                String::from_utf8_lossy(if r.stdout.is_empty() {
                    &r.stderr
                } else {
                    &r.stdout
                })
                .trim()
            )),
            Err(err) => Outcome::Failure(err.to_string()),
        };
    }
    if let Some(http) = handler.http {
        let port = match resolve_port(container, &http.port) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        return http_get(
            &host,
            port,
            &path,
            http.scheme.as_deref(),
            http.http_headers.unwrap_or_default(),
        )
        .await;
    }
    if let Some((host, port)) = handler.tcp {
        let port = match resolve_port(container, &port) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let host = host
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        return match tokio::net::TcpStream::connect((host.as_str(), port)).await {
            Ok(_) => Outcome::Success,
            Err(err) => Outcome::Failure(format!("dial tcp {host}:{port}: {err}")),
        };
    }
    if let Some((port, service)) = handler.grpc {
        return grpc_health(pod_ip, port as u16, &service).await;
    }
    Outcome::Failure("probe has no handler".into())
}

async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    scheme: Option<&str>,
    headers: Vec<k8s_openapi::api::core::v1::HTTPHeader>,
) -> Outcome {
    if scheme == Some("HTTPS") {
        // Upstream skips certificate verification for probes; a TCP connect
        // stands in until the kubelet carries a verifier-free TLS client.
        return match tokio::net::TcpStream::connect((host, port)).await {
            Ok(_) => Outcome::Success,
            Err(err) => Outcome::Failure(format!("Get \"https://{host}:{port}{path}\": {err}")),
        };
    }
    let url = format!("http://{host}:{port}{path}");
    let stream = match tokio::net::TcpStream::connect((host, port)).await {
        Ok(s) => s,
        Err(err) => {
            return Outcome::Failure(format!("Get \"{url}\": dial tcp {host}:{port}: {err}"));
        }
    };
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await {
            Ok(x) => x,
            Err(err) => return Outcome::Failure(format!("Get \"{url}\": {err}")),
        };
    tokio::spawn(conn);
    let mut request = http::Request::get(path)
        .header("Host", format!("{host}:{port}"))
        .header("User-Agent", "kube-probe/1.33");
    for h in headers {
        request = request.header(h.name, h.value);
    }
    let request = request
        .body(Full::new(bytes::Bytes::new()))
        .expect("valid request");
    match sender.send_request(request).await {
        Ok(resp) if (200..400).contains(&resp.status().as_u16()) => Outcome::Success,
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string();
            Outcome::Failure(format!(
                "HTTP probe failed with statuscode: {status}{}",
                if text.is_empty() {
                    String::new()
                } else {
                    format!(" ({text})")
                }
            ))
        }
        Err(err) => Outcome::Failure(format!("Get \"{url}\": {err}")),
    }
}

/// The gRPC health protocol (`grpc.health.v1.Health/Check`) over plain HTTP/2.
async fn grpc_health(host: &str, port: u16, service: &str) -> Outcome {
    let target = format!("{host}:{port}");
    let stream = match tokio::net::TcpStream::connect((host, port)).await {
        Ok(s) => s,
        Err(err) => {
            return Outcome::Failure(format!("failed to connect service {target:?}: {err}"));
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    {
        Ok(x) => x,
        Err(err) => {
            return Outcome::Failure(format!("failed to connect service {target:?}: {err}"));
        }
    };
    tokio::spawn(conn);
    // HealthCheckRequest { service = 1 }, in a gRPC length-prefixed frame.
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        message.push(service.len() as u8);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = http::Request::post(format!("http://{target}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(bytes::Bytes::from(frame)))
        .expect("valid request");
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        Err(err) => return Outcome::Failure(format!("health rpc failed: {err}")),
    };
    let collected = match response.into_body().collect().await {
        Ok(c) => c,
        Err(err) => return Outcome::Failure(format!("health rpc failed: {err}")),
    };
    let grpc_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .to_string();
    if grpc_status != "0" {
        return Outcome::Failure(format!("health rpc failed with grpc-status {grpc_status}"));
    }
    let body = collected.to_bytes();
    // HealthCheckResponse { status = 1 }: SERVING is 1.
    let serving = body.len() >= 7 && body[5] == 0x08 && body[6] == 0x01;
    if serving {
        Outcome::Success
    } else {
        Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    }
}
