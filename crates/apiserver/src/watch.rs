//! Client watches: a stream of newline-delimited JSON events (`ADDED`,
//! `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`) served from the watch cache,
//! with upstream's semantics for resourceVersion, selectors (an object that
//! stops matching is seen as DELETED, one that starts matching as ADDED),
//! bookmarks, `sendInitialEvents` and timeouts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;
use skiff_api_types::registry::ResourceInfo;
use tokio::sync::{broadcast, mpsc};

use crate::cache::{CachedEvent, CachedObject, EventType, WatchError};
use crate::http_util::{self, Body, Output, Shape};
use crate::rest::{Call, Selectors, partial_metadata, store_error, table};
use crate::status::ApiError;

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

pub(crate) async fn serve(call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let t = &call.target;
    let resource = t.resource;
    let selectors = Selectors::from_query(resource, call.query)?;
    let prefix = resource.key_prefix(if resource.namespaced {
        t.namespace
    } else {
        None
    });
    let rv = call.query.non_empty("resourceVersion");
    let send_initial = call.query.get("sendInitialEvents").map(|v| v == "true");
    let bookmarks = call.query.flag("allowWatchBookmarks");
    if send_initial == Some(true) && call.query.get("resourceVersionMatch") != Some("NotOlderThan")
    {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            &skiff_api_types::validation::FieldErrors(vec![
                skiff_api_types::validation::FieldError {
                    kind: skiff_api_types::validation::ErrorType::Forbidden,
                    field: "resourceVersionMatch".into(),
                    value: None,
                    detail:
                        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                            .into(),
                },
            ]),
        ));
    }
    let timeout = match call.query.non_empty("timeoutSeconds") {
        Some(s) => Duration::from_secs(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {s:?}")))?,
        ),
        // Upstream spreads watch lifetimes between the minimum request
        // timeout and twice it, so clients reconnect at different times.
        None => Duration::from_secs(1800 + rand::random_range(0..1800)),
    };
    let cache = &call.api.cache;
    // Where to start: the current state (as ADDED events), or after a
    // resourceVersion.
    let after = match (rv, send_initial) {
        (_, Some(true)) | (None | Some("0"), None) => {
            let rv = match rv {
                Some(rv) if rv != "0" => Some(parse_rv(rv)?),
                _ => None,
            };
            match rv {
                Some(rv) if !cache.wait_for(rv, crate::cache::CONSISTENT_READ_WAIT).await => {
                    return Err(ApiError::new_timeout(format!(
                        "Too large resource version: {rv}, current: {}",
                        cache.revision()
                    )));
                }
                Some(_) => {}
                None if call.query.get("resourceVersion").is_none_or(str::is_empty) => {
                    cache.sync().await.map_err(store_error)?;
                }
                None => {}
            }
            None
        }
        (None | Some("0"), Some(false)) => Some(cache.revision()),
        (Some(rv), _) => Some(parse_rv(rv)?),
    };
    let start = match cache.watch(resource, after).await {
        Ok(start) => start,
        // As upstream's watch cache does: the watch opens, and its one event
        // is an ERROR carrying 410 Gone; the client relists.
        Err(e @ WatchError::TooOld { .. }) => {
            let status = ApiError::expired(e.to_string()).to_status();
            let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": status}))
                .expect("serializes");
            line.push(b'\n');
            return Ok(stream_response(http_util::full(line)));
        }
        Err(e @ WatchError::TooNew { .. }) => return Err(ApiError::new_timeout(e.to_string())),
    };

    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    let stream = Stream {
        resource,
        custom_columns: call.api.crds.served(resource).map(|s| s.columns),
        crds: call.api.crds.clone(),
        cache: call.api.cache.clone(),
        selectors,
        prefix,
        output: call.output,
        include_object: call.query.get("includeObject").map(str::to_owned),
        tx,
    };
    let initial_end = (send_initial == Some(true)).then_some(start.revision);
    tokio::spawn(stream.run(start.backlog, start.live, initial_end, bookmarks, timeout));
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed();
    Ok(stream_response(body))
}

fn stream_response(body: Body) -> Response<Body> {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .expect("valid response parts")
}

fn parse_rv(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version {rv:?}")))
}

/// One client's watch, running in its own task.
struct Stream {
    resource: &'static ResourceInfo,
    /// A custom resource's printer columns.
    custom_columns: Option<std::sync::Arc<Vec<crate::crd::PrinterColumn>>>,
    /// To convert custom resources stored in another version.
    crds: Arc<crate::crd::Crds>,
    cache: crate::cache::Cache,
    selectors: Selectors,
    prefix: String,
    output: Output,
    include_object: Option<String>,
    tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
}

impl Stream {
    async fn run(
        self,
        backlog: Vec<Arc<CachedEvent>>,
        mut live: broadcast::Receiver<Arc<CachedEvent>>,
        initial_end: Option<i64>,
        bookmarks: bool,
        timeout: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = 0;
        for event in &backlog {
            last = last.max(event.revision);
            if !self.deliver(event).await {
                return;
            }
        }
        if let Some(revision) = initial_end {
            last = last.max(revision);
            if !self.bookmark(last, true).await {
                return;
            }
        }
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = self.tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if last > 0 && !self.bookmark(last, false).await {
                        return;
                    }
                }
                received = live.recv() => match received {
                    Ok(event) => {
                        if event.revision <= last {
                            continue;
                        }
                        last = event.revision;
                        if !self.deliver(&event).await {
                            return;
                        }
                    }
                    // Too slow: end the watch; the client resumes from its
                    // last resourceVersion (or relists on 410).
                    Err(_) => return,
                },
            }
        }
    }

    fn visible(&self, obj: &CachedObject) -> bool {
        obj.key.starts_with(&self.prefix) && self.selectors.matches(obj)
    }

    /// Sends an event as the client sees it through its selectors; false
    /// once the client is gone.
    async fn deliver(&self, event: &CachedEvent) -> bool {
        let now = event.kind != EventType::Deleted && self.visible(&event.object);
        let before = match event.kind {
            EventType::Added => false,
            _ => event.prev.as_deref().is_some_and(|p| self.visible(p)),
        };
        let kind = match (event.kind, before, now) {
            (EventType::Added, _, true) => "ADDED",
            (EventType::Modified, true, true) => "MODIFIED",
            (EventType::Modified, false, true) => "ADDED",
            (EventType::Modified, true, false) => "DELETED",
            (EventType::Deleted, true, _) => "DELETED",
            _ => return true,
        };
        let object = match self.in_version(&event.object).await {
            Ok(object) => object,
            Err(e) => {
                // As a watch whose events cannot be encoded: an ERROR event,
                // then the end.
                let mut line =
                    serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()}))
                        .expect("serializes");
                line.push(b'\n');
                let _ = self.tx.send(Ok(Frame::data(Bytes::from(line)))).await;
                return false;
            }
        };
        let line = self.encode(kind, &object);
        self.tx.send(Ok(Frame::data(line))).await.is_ok()
    }

    /// An object as the watched version shows it: a custom resource or a
    /// built-in kind stored in another version converted (metadata-only
    /// watches need no conversion).
    async fn in_version(&self, obj: &Arc<CachedObject>) -> Result<Arc<CachedObject>, ApiError> {
        if self.output.shape == Shape::PartialObjectMetadata {
            return Ok(obj.clone());
        }
        if self.custom_columns.is_none() {
            let mut converted = crate::crd::builtin_in_version(self.resource, vec![obj.clone()]);
            return Ok(converted.pop().expect("as many objects out as in"));
        }
        let Some(served) = self.crds.served(self.resource) else {
            return Ok(obj.clone());
        };
        let mut converted =
            crate::crd::cached_in_version(&self.cache, &served, self.resource, vec![obj.clone()])
                .await?;
        Ok(converted.pop().expect("as many objects out as in"))
    }

    fn encode(&self, kind: &str, obj: &CachedObject) -> Bytes {
        let mut line = Vec::with_capacity(obj.raw.len() + 32);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        match self.output.shape {
            Shape::Object => line.extend_from_slice(&obj.raw),
            Shape::PartialObjectMetadata => {
                serde_json::to_writer(&mut line, &partial_metadata(&obj.value()))
                    .expect("serializes")
            }
            Shape::Table => {
                let mut query = crate::http_util::Query::default();
                if let Some(include) = &self.include_object {
                    query.insert("includeObject", include);
                }
                let rv = obj.revision.to_string();
                let custom = self.custom_columns.as_deref().map(Vec::as_slice);
                let t = table(self.resource, custom, &[obj.value()], &rv, None, &query);
                serde_json::to_writer(&mut line, &t).expect("serializes")
            }
        }
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    async fn bookmark(&self, revision: i64, initial_events_end: bool) -> bool {
        let mut object = json!({
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": { "resourceVersion": revision.to_string() },
        });
        if initial_events_end {
            object["metadata"]["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        if self.output.shape != Shape::Object {
            object = json!({
                "kind": if self.output.shape == Shape::Table { "Table" } else { "PartialObjectMetadata" },
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object["metadata"].clone(),
            });
        }
        let line = serde_json::to_vec(&json!({ "type": "BOOKMARK", "object": object }))
            .expect("serializes");
        let mut line = line;
        line.push(b'\n');
        self.tx
            .send(Ok(Frame::data(Bytes::from(line))))
            .await
            .is_ok()
    }
}
