//! Plain-HTTP endpoints, as kube-proxy serves them: `/healthz` and `/livez`
//! on the healthz address (10256), `/metrics` on the metrics address (10249).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::jiff::Timestamp;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::proxier::Proxier;

/// What the endpoints answer from.
#[derive(Clone)]
pub(crate) struct Endpoints {
    pub proxier: Arc<Proxier>,
    pub metrics: Arc<Metrics>,
    /// A change waiting longer than this makes the proxy unhealthy
    /// (upstream: twice the sync period).
    pub health_timeout: Duration,
}

/// Binds `addr` and serves until the task is dropped; returns the bound address.
pub(crate) async fn start(
    addr: SocketAddr,
    endpoints: Endpoints,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(tcp),
                        service_fn(move |req: Request<Incoming>| {
                            let response = respond(&endpoints, req.uri().path());
                            async move { Ok::<_, std::convert::Infallible>(response) }
                        }),
                    )
                    .await;
            });
        }
    });
    Ok((local, task))
}

fn respond(endpoints: &Endpoints, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/healthz" | "/livez" => {
            let (last, fresh, eligible) = endpoints.proxier.health(endpoints.health_timeout);
            // /livez ignores whether the node is going away; /healthz does
            // not, and answers 200 only once the rules have been written.
            let healthy = fresh && (path == "/livez" || (eligible && last.is_some()));
            let last = last
                .map(|t| t.to_string())
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
            let mut body = format!(
                "{{\"lastUpdated\": \"{last}\",\"currentTime\": \"{}\"",
                Timestamp::now()
            );
            if path == "/healthz" {
                body.push_str(&format!(", \"nodeEligible\": {eligible}"));
            }
            body.push('}');
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, "application/json", body)
        }
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            endpoints.metrics.encode(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found\n".to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-content-type-options", "nosniff")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}
