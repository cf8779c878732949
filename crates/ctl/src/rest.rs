//! Raw REST calls on kube's client, and how their errors read.

use anyhow::Result;
use futures::{Stream, StreamExt, TryStreamExt};
use http::{Method, Request};
use kube::Client;
use serde_json::Value;

/// The `Accept` kubectl sends for tables.
pub const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

/// A query string from pairs, percent-encoded.
pub fn query(pairs: &[(&str, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Sends `method` to `uri` with an optional JSON body of `content_type`
/// and reads the JSON answer.
pub async fn call(
    client: &Client,
    method: Method,
    uri: &str,
    accept: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Value, kube::Error> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = accept {
        req = req.header(http::header::ACCEPT, a);
    }
    let body = match body {
        Some((ct, bytes)) => {
            req = req.header(http::header::CONTENT_TYPE, ct);
            bytes
        }
        None => Vec::new(),
    };
    let req = req.body(body).map_err(kube::Error::HttpError)?;
    client.request::<Value>(req).await
}

pub async fn get(client: &Client, uri: &str) -> Result<Value, kube::Error> {
    call(client, Method::GET, uri, None, None).await
}

pub async fn get_table(client: &Client, uri: &str) -> Result<Value, kube::Error> {
    call(client, Method::GET, uri, Some(TABLE), None).await
}

pub async fn patch(
    client: &Client,
    uri: &str,
    content_type: &str,
    body: &Value,
) -> Result<Value, kube::Error> {
    let bytes = serde_json::to_vec(body).expect("JSON serializes");
    call(
        client,
        Method::PATCH,
        uri,
        None,
        Some((content_type, bytes)),
    )
    .await
}

pub async fn send_json(
    client: &Client,
    method: Method,
    uri: &str,
    body: &Value,
) -> Result<Value, kube::Error> {
    let bytes = serde_json::to_vec(body).expect("JSON serializes");
    call(client, method, uri, None, Some(("application/json", bytes))).await
}

/// A watch's events (`{"type":..., "object":...}`), as JSON.
pub async fn watch(
    client: &Client,
    uri: &str,
    accept: Option<&str>,
) -> Result<impl Stream<Item = Result<Value>> + use<>> {
    let mut req = Request::get(uri);
    if let Some(a) = accept {
        req = req.header(http::header::ACCEPT, a);
    }
    let stream = client.request_stream(req.body(Vec::new())?).await?;
    let lines = futures::io::AsyncBufReadExt::lines(stream);
    Ok(lines
        .map_err(anyhow::Error::from)
        .try_filter(|l| futures::future::ready(!l.trim().is_empty()))
        .and_then(|l| async move { Ok(serde_json::from_str::<Value>(&l)?) })
        .boxed())
}

/// The API's Status behind an error, if the server answered with one.
pub fn status(e: &anyhow::Error) -> Option<&kube::core::Status> {
    e.chain()
        .find_map(|c| match c.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(s)) => Some(&**s),
            _ => None,
        })
}

/// Whether the error is the server's NotFound.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// An error as kubectl prints it: `Error from server (NotFound): ...` for
/// the server's, `error: ...` for the rest.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        if let Some(kube::Error::Api(s)) = cause.downcast_ref::<kube::Error>() {
            let server = server_error(s);
            if parts.is_empty() {
                return server;
            }
            parts.push(server);
            break;
        }
        // Some errors (kube's, hyper's) repeat their source in their own
        // text; keep each piece once.
        let text = cause.to_string();
        if parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    format!("error: {}", parts.join(": "))
}

/// `Error from server (Reason): message`.
pub fn server_error(s: &kube::core::Status) -> String {
    if s.reason.is_empty() {
        format!("Error from server: {}", s.message)
    } else {
        format!("Error from server ({}): {}", s.reason, s.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded_and_empty_values_dropped() {
        assert_eq!(
            query(&[
                ("labelSelector", "app in (a,b)".into()),
                ("fieldSelector", String::new())
            ]),
            "?labelSelector=app%20in%20%28a%2Cb%29"
        );
        assert_eq!(query(&[]), "");
    }

    #[test]
    fn server_errors_read_as_kubectl_prints_them() {
        let s = kube::core::Status::failure("pods \"x\" not found", "NotFound").with_code(404);
        let e = anyhow::Error::from(kube::Error::Api(Box::new(s)));
        assert_eq!(
            error_text(&e),
            "Error from server (NotFound): pods \"x\" not found"
        );
        let e = anyhow::anyhow!("boom").context("reading a.yaml");
        assert_eq!(error_text(&e), "error: reading a.yaml: boom");
        let e = anyhow::Error::from(std::io::Error::other("refused"));
        let e = e.context("connect: refused").context("listing");
        assert_eq!(error_text(&e), "error: listing: connect: refused");
    }
}
