//! CoreDNS's HTTP endpoints: `/health` (the process is up), `/ready` (the
//! watches have synced), `/metrics` (Prometheus text format).

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::index::Index;
use crate::metrics::Metrics;

#[derive(Clone, Copy)]
pub(crate) enum Route {
    Health,
    Ready,
    Metrics,
}

pub(crate) async fn serve(
    listener: TcpListener,
    route: Route,
    index: Arc<Index>,
    metrics: Arc<Metrics>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let index = index.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let reply = respond(route, req.uri().path(), &index, &metrics);
                async move { Ok::<_, Infallible>(reply) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(route: Route, path: &str, index: &Index, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match (route, path) {
        (Route::Health, "/health") => (StatusCode::OK, "OK".to_string(), "text/plain"),
        (Route::Ready, "/ready") if index.synced() => (StatusCode::OK, "OK".into(), "text/plain"),
        (Route::Ready, "/ready") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "kubernetes: watches not synced yet".into(),
            "text/plain",
        ),
        (Route::Metrics, "/metrics") => (
            StatusCode::OK,
            metrics.render(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "404 page not found".into(),
            "text/plain",
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_waits_for_both_watches() {
        let index = Index::new("cluster.local");
        let metrics = Metrics::new();
        assert_eq!(
            respond(Route::Ready, "/ready", &index, &metrics).status(),
            503
        );
        index.mark_services_synced();
        assert_eq!(
            respond(Route::Ready, "/ready", &index, &metrics).status(),
            503
        );
        index.mark_slices_synced();
        assert_eq!(
            respond(Route::Ready, "/ready", &index, &metrics).status(),
            200
        );
        assert_eq!(
            respond(Route::Health, "/health", &index, &metrics).status(),
            200
        );
        assert_eq!(
            respond(Route::Health, "/ready", &index, &metrics).status(),
            404
        );
    }
}
