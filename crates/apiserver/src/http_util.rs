//! HTTP plumbing: bodies, query strings, content negotiation.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use serde_json::Value;

use crate::status::ApiError;

/// Every response body: whole, or streamed (watches).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// The largest request body accepted (upstream: 3 MiB for most writes).
pub const MAX_BODY: usize = 3 << 20;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn response(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, content_type)
        .body(full(body))
        .expect("a response with valid parts")
}

pub fn json(code: u16, value: &Value) -> Response<Body> {
    response(
        code,
        "application/json",
        serde_json::to_vec(value).expect("JSON serializes"),
    )
}

pub fn error(e: &ApiError) -> Response<Body> {
    json(e.code, &e.to_status())
}

/// The decoded query string. Repeated keys keep their last value.
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut map = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(percent_decode(k), percent_decode(v));
        }
        Query(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A non-empty value.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// A boolean parameter, read as Go's strconv.ParseBool reads it (as
    /// upstream does); a bare `?watch` counts as true.
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True" | "")
        )
    }

    pub fn insert(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_owned(), value.to_owned());
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The shape a client asked for in `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Object,
    Table,
    PartialObjectMetadata,
}

/// The encoding of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Yaml,
}

/// What to answer with, from `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    pub shape: Shape,
    pub encoding: Encoding,
}

impl Output {
    /// Picks the first media type in `Accept` the server can produce; 406
    /// when there is none.
    pub fn negotiate(headers: &HeaderMap) -> Result<Output, ApiError> {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        for candidate in accept.split(',') {
            let mut params = candidate.split(';').map(str::trim);
            let media = params.next().unwrap_or("");
            let mut as_ = None;
            let mut group = None;
            for p in params {
                match p.split_once('=') {
                    Some(("as", v)) => as_ = Some(v),
                    Some(("g", v)) => group = Some(v),
                    _ => {}
                }
            }
            let encoding = match media {
                "application/json" | "*/*" | "application/*" | "" => Encoding::Json,
                "application/yaml" => Encoding::Yaml,
                _ => continue,
            };
            let shape = match (as_, group) {
                (None, _) => Shape::Object,
                (Some("Table"), Some("meta.k8s.io")) => Shape::Table,
                (
                    Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                    Some("meta.k8s.io"),
                ) => Shape::PartialObjectMetadata,
                _ => continue,
            };
            return Ok(Output { shape, encoding });
        }
        Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: application/json, application/yaml (got {accept:?})"
        )))
    }

    /// Encodes a whole value.
    pub fn encode(&self, code: u16, value: &Value) -> Response<Body> {
        match self.encoding {
            Encoding::Json => json(code, value),
            Encoding::Yaml => match serde_saphyr::to_string(value) {
                Ok(yaml) => response(code, "application/yaml", yaml),
                Err(e) => error(&ApiError::internal(format!("encoding YAML: {e}"))),
            },
        }
    }
}

/// The media type of a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Yaml,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    ApplyPatch,
    /// Kubernetes protobuf (`k8s\0` + runtime.Unknown), as client-go sends
    /// built-in kinds.
    Protobuf,
}

impl BodyType {
    pub fn of(headers: &HeaderMap) -> Result<BodyType, ApiError> {
        let raw = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        let media = raw.split(';').next().unwrap_or("").trim();
        Ok(match media {
            "application/json" | "" => BodyType::Json,
            "application/yaml" => BodyType::Yaml,
            "application/json-patch+json" => BodyType::JsonPatch,
            "application/merge-patch+json" => BodyType::MergePatch,
            "application/strategic-merge-patch+json" => BodyType::StrategicMergePatch,
            "application/apply-patch+yaml" => BodyType::ApplyPatch,
            "application/vnd.kubernetes.protobuf" => BodyType::Protobuf,
            _ => return Err(ApiError::unsupported_media_type(raw)),
        })
    }
}

/// Decodes a JSON or YAML body into a JSON object; 400 naming the problem
/// otherwise.
pub fn decode_object(body: &[u8], yaml: bool) -> Result<Value, ApiError> {
    let value: Value = if yaml {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=1&limit=500",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert!(
            Query::parse(Some("watch=True")).flag("watch"),
            "Python's client sends True"
        );
        assert!(!Query::parse(Some("watch=false")).flag("watch"));
        assert_eq!(q.get("limit"), Some("500"));
        assert_eq!(Query::parse(Some("a=%zz%4")).get("a"), Some("%zz%4"));
    }

    #[test]
    fn kubectl_get_negotiates_a_table() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(Output::negotiate(&headers).unwrap().shape, Shape::Table);
    }

    #[test]
    fn protobuf_only_is_not_acceptable_but_a_json_fallback_is_taken() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/vnd.kubernetes.protobuf".parse().unwrap(),
        );
        assert_eq!(Output::negotiate(&headers).unwrap_err().code, 406);
        headers.insert(
            header::ACCEPT,
            "application/vnd.kubernetes.protobuf, application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            Output::negotiate(&headers).unwrap().encoding,
            Encoding::Json
        );
    }
}
