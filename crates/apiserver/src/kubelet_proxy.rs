//! The subresources upstream serves by going to a node's kubelet: `pods/log`
//! (streamed back as the kubelet writes it), `pods/exec`, `pods/attach` and
//! `pods/portforward` (HTTP upgrades — SPDY or WebSocket — relayed byte for
//! byte once the kubelet switches protocols, without reading the protocol),
//! and `nodes/proxy` (any method, any path), as upstream's
//! pkg/registry/core/pod/rest and pkg/registry/core/node/rest.
//!
//! A kubelet is found from its Node: the first of `status.addresses` in
//! `--kubelet-preferred-address-types` order, at
//! `status.daemonEndpoints.kubeletEndpoint.Port` (10250 when unset). It is
//! reached over TLS with the client certificate of
//! `--kubelet-client-certificate` (by default the generated one of user
//! `kube-apiserver-kubelet-client`, bound to `system:kubelet-api-admin`); its
//! serving certificate is verified against `--kubelet-certificate-authority`
//! when one is given, and not at all otherwise (kubelets self-sign by
//! default), as upstream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use skiff_api_types::registry::ResourceInfo;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::Api;
use crate::http_util::{self, Body, Query};
use crate::request::RequestInfo;
use crate::rest::Target;
use crate::status::{ApiError, GroupResource};

/// The kubelet's port when a Node does not report one (upstream's
/// `--kubelet-port` default).
const DEFAULT_KUBELET_PORT: u16 = 10250;

/// How much of a failed kubelet response is read into the error (upstream's
/// `maxReadLength`).
const MAX_ERROR_BODY: usize = 50_000;

/// The annotation naming the container `kubectl` picks when none is given.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// A subresource served by a kubelet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Log,
    Exec,
    Attach,
    PortForward,
    NodeProxy,
}

/// Errors building the TLS configuration used towards kubelets.
#[derive(Debug, thiserror::Error)]
pub enum KubeletClientError {
    #[error("no certificate found in the kubelet client certificate PEM")]
    NoCertificate,
    #[error("the kubelet client key is not a usable PEM private key")]
    Key(#[source] rustls::pki_types::pem::Error),
    #[error("the kubelet certificate authority is not usable")]
    Ca(#[source] rustls::Error),
    #[error("building the kubelet client TLS configuration")]
    Config(#[source] rustls::Error),
}

/// How the API server reaches kubelets.
pub(crate) struct KubeletClient {
    /// The client certificate; the kubelet's serving certificate checked
    /// against `--kubelet-certificate-authority`, or unchecked without one.
    tls: Arc<rustls::ClientConfig>,
    /// The client certificate, the serving certificate unchecked
    /// (`insecureSkipTLSVerifyBackend`).
    insecure: Arc<rustls::ClientConfig>,
    /// No client certificate, unchecked: `nodes/<name>:<port>/proxy` to a
    /// port other than the kubelet's.
    anonymous: Arc<rustls::ClientConfig>,
    /// `--kubelet-preferred-address-types`.
    preferred_address_types: Vec<String>,
    /// `--kubelet-timeout`: connecting and the TLS handshake.
    timeout: Duration,
}

/// How to talk to an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Kubelet,
    KubeletInsecure,
    AnonymousTls,
    Plain,
}

/// Where one request goes.
#[derive(Clone, Debug)]
struct Endpoint {
    host: String,
    port: u16,
    transport: Transport,
}

/// Accepts any serving certificate, still checking the handshake signature
/// (upstream's `InsecureSkipVerify`).
#[derive(Debug)]
struct AnyServerCertificate(Arc<CryptoProvider>);

/// A connection to a kubelet: TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// `pods/log` query parameters (upstream's PodLogOptions).
#[derive(Debug, Default, PartialEq)]
struct LogOptions {
    container: Option<String>,
    follow: bool,
    previous: bool,
    timestamps: bool,
    since_seconds: Option<i64>,
    since_time: Option<jiff::Timestamp>,
    tail_lines: Option<i64>,
    limit_bytes: Option<i64>,
    insecure_skip_tls_verify_backend: bool,
}

/// A query string's pairs, decoded, in order; keys may repeat.
struct Params(Vec<(String, String)>);

impl Route {
    /// The kubelet-backed subresource a resource request names, if any.
    pub fn of(resource: &ResourceInfo, info: &RequestInfo) -> Option<Route> {
        if !resource.group.is_empty() || info.name.is_none() {
            return None;
        }
        match (resource.plural, info.subresource.as_deref()?) {
            ("pods", "log") => Some(Route::Log),
            ("pods", "exec") => Some(Route::Exec),
            ("pods", "attach") => Some(Route::Attach),
            ("pods", "portforward") => Some(Route::PortForward),
            ("nodes", "proxy") => Some(Route::NodeProxy),
            _ => None,
        }
    }
}

impl KubeletClient {
    /// A client presenting `cert_pem`/`key_pem`, checking kubelets' serving
    /// certificates against `ca_pem` when given.
    pub fn new(
        cert_pem: &str,
        key_pem: &str,
        ca_pem: Option<&str>,
        preferred_address_types: Vec<String>,
        timeout: Duration,
    ) -> Result<KubeletClient, KubeletClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .filter_map(Result::ok)
                .collect();
        if certs.is_empty() {
            return Err(KubeletClientError::NoCertificate);
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(KubeletClientError::Key)?;
        let builder = || {
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(KubeletClientError::Config)
        };
        let unchecked = Arc::new(AnyServerCertificate(provider.clone()));
        let insecure = builder()?
            .dangerous()
            .with_custom_certificate_verifier(unchecked.clone())
            .with_client_auth_cert(certs.clone(), key.clone_key())
            .map_err(KubeletClientError::Config)?;
        let anonymous = builder()?
            .dangerous()
            .with_custom_certificate_verifier(unchecked)
            .with_no_client_auth();
        let tls = match ca_pem {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca.as_bytes()).filter_map(Result::ok) {
                    roots.add(cert).map_err(KubeletClientError::Ca)?;
                }
                Arc::new(
                    builder()?
                        .with_root_certificates(roots)
                        .with_client_auth_cert(certs, key)
                        .map_err(KubeletClientError::Config)?,
                )
            }
            None => Arc::new(insecure.clone()),
        };
        Ok(KubeletClient {
            tls,
            insecure: Arc::new(insecure),
            anonymous: Arc::new(anonymous),
            preferred_address_types,
            timeout,
        })
    }

    /// Where a node's kubelet listens: upstream's NodeConnectionInfoGetter.
    async fn locate(&self, api: &Api, node_name: &str) -> Result<Endpoint, ApiError> {
        let nodes = skiff_api_types::registry::lookup("", "v1", "nodes")
            .expect("nodes are a built-in kind");
        let node = match api.cache.get(nodes, &nodes.key(None, node_name)) {
            Some(cached) => cached.value(),
            None => {
                let target = Target {
                    resource: nodes,
                    namespace: None,
                    name: Some(node_name),
                    subresource: None,
                };
                crate::rest::load(api, &target).await?.0
            }
        };
        let host = preferred_address(&node, &self.preferred_address_types).ok_or_else(|| {
            let known: Vec<String> = node["status"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    format!(
                        "{{{} {}}}",
                        a["type"].as_str().unwrap_or_default(),
                        a["address"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            unknown(
                500,
                format!(
                    "no preferred addresses found; known addresses: [{}]",
                    known.join(" ")
                ),
            )
        })?;
        let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_KUBELET_PORT);
        Ok(Endpoint {
            host,
            port,
            transport: Transport::Kubelet,
        })
    }

    /// GETs `path` from a node's kubelet and parses the JSON it answers
    /// (for the metrics API's `/stats/summary` reads).
    pub(crate) async fn get_json(
        &self,
        api: &Api,
        node_name: &str,
        path: &str,
    ) -> Result<Value, String> {
        let endpoint = self.locate(api, node_name).await.map_err(|e| e.message)?;
        let fetch = async {
            let mut sender = self
                .open::<Empty<Bytes>>(&endpoint)
                .await
                .map_err(|e| e.to_string())?;
            let request = Request::get(path)
                .header(header::HOST, endpoint.authority())
                .body(Empty::new())
                .map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = Limited::new(response.into_body(), 64 << 20)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&body).trim()
                ));
            }
            serde_json::from_slice(&body).map_err(|e| e.to_string())
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| format!("Get {:?}: i/o timeout", endpoint.url(path)))?
    }

    /// Connects to an endpoint and starts an HTTP/1.1 client connection on
    /// it (with upgrades).
    async fn open<B>(&self, endpoint: &Endpoint) -> Result<SendRequest<B>, std::io::Error>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let config = match endpoint.transport {
            Transport::Kubelet => Some(&self.tls),
            Transport::KubeletInsecure => Some(&self.insecure),
            Transport::AnonymousTls => Some(&self.anonymous),
            Transport::Plain => None,
        };
        let connect = async {
            let tcp =
                tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = match config {
                None => Box::new(tcp),
                Some(config) => {
                    let name = ServerName::try_from(endpoint.host.clone())
                        .map_err(std::io::Error::other)?;
                    let connector = tokio_rustls::TlsConnector::from(config.clone());
                    Box::new(connector.connect(name, tcp).await?)
                }
            };
            Ok::<_, std::io::Error>(io)
        };
        let io = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "i/o timeout"))??;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                debug!(error = %e, "kubelet connection ended with an error");
            }
        });
        Ok(sender)
    }
}

impl Endpoint {
    /// `host:port`, an IPv6 address bracketed.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        let scheme = if self.transport == Transport::Plain {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}{path_and_query}", self.authority())
    }
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl LogOptions {
    /// Reads the query as upstream converts it into PodLogOptions.
    fn parse(params: &Params) -> Result<LogOptions, ApiError> {
        let int = |key: &str| -> Result<Option<i64>, ApiError> {
            match params.first(key).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|_| {
                    ApiError::bad_request(format!(
                        "strconv.ParseInt: parsing {v:?}: invalid syntax"
                    ))
                }),
            }
        };
        let since_time = match params
            .first("sinceTime")
            .filter(|v| !v.is_empty() && *v != "null")
        {
            None => None,
            Some(v) => Some(v.parse::<jiff::Timestamp>().map_err(|e| {
                ApiError::bad_request(format!("parsing time {v:?} as RFC3339: {e}"))
            })?),
        };
        Ok(LogOptions {
            container: params
                .first("container")
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            follow: params.flag("follow"),
            previous: params.flag("previous"),
            timestamps: params.flag("timestamps"),
            since_seconds: int("sinceSeconds")?,
            since_time,
            tail_lines: int("tailLines")?,
            limit_bytes: int("limitBytes")?,
            insecure_skip_tls_verify_backend: params.flag("insecureSkipTLSVerifyBackend"),
        })
    }

    /// Upstream's ValidatePodLogOptions.
    fn validate(&self, pod: &str) -> Result<(), ApiError> {
        use skiff_api_types::validation::{FieldError, FieldErrors, Path};
        let mut errors = FieldErrors::new();
        if let Some(n) = self.tail_lines.filter(|n| *n < 0) {
            errors.0.push(FieldError::invalid(
                &Path::new("tailLines"),
                n,
                "must be greater than or equal to 0",
            ));
        }
        if let Some(n) = self.limit_bytes.filter(|n| *n < 1) {
            errors.0.push(FieldError::invalid(
                &Path::new("limitBytes"),
                n,
                "must be greater than 0",
            ));
        }
        match (self.since_seconds, self.since_time) {
            (Some(_), Some(_)) => errors.0.push(FieldError::forbidden(
                &Path::new(""),
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            )),
            (Some(n), None) if n < 1 => errors.0.push(FieldError::invalid(
                &Path::new("sinceSeconds"),
                n,
                "must be greater than 0",
            )),
            _ => {}
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid("", "PodLogOptions", pod, &errors))
        }
    }

    /// The kubelet's query, as upstream's LogLocation writes it.
    fn kubelet_query(&self) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let t = || "true".to_owned();
        if self.follow {
            pairs.push(("follow", t()));
        }
        if self.previous {
            pairs.push(("previous", t()));
        }
        if self.timestamps {
            pairs.push(("timestamps", t()));
        }
        if let Some(n) = self.since_seconds {
            pairs.push(("sinceSeconds", n.to_string()));
        }
        if let Some(ts) = self.since_time {
            pairs.push(("sinceTime", ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
        }
        if let Some(n) = self.tail_lines {
            pairs.push(("tailLines", n.to_string()));
        }
        if let Some(n) = self.limit_bytes {
            pairs.push(("limitBytes", n.to_string()));
        }
        encode(pairs)
    }
}

impl Params {
    fn parse(query: Option<&str>) -> Params {
        // `Query` decodes one pair as upstream's url.ParseQuery does.
        let decode = |s: &str| {
            Query::parse(Some(&format!("v={s}")))
                .get("v")
                .unwrap_or_default()
                .to_owned()
        };
        Params(
            query
                .unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    fn all<'a, 'k>(&'a self, key: &'k str) -> impl Iterator<Item = &'a str> + use<'a, 'k> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn first(&self, key: &str) -> Option<&str> {
        self.all(key).next()
    }

    /// A boolean option as upstream converts query parameters: present and
    /// neither `0` nor `false` is true.
    fn flag(&self, key: &str) -> bool {
        self.first(key)
            .is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
    }
}

/// Serves a kubelet-backed subresource.
pub(crate) async fn serve(
    api: &Api,
    req: Request<Incoming>,
    info: &RequestInfo,
    route: Route,
) -> Response<Body> {
    let result = match route {
        Route::Log => log(api, req, info).await,
        Route::Exec | Route::Attach | Route::PortForward => stream(api, req, info, route).await,
        Route::NodeProxy => node_proxy(api, req, info).await,
    };
    result.unwrap_or_else(|e| http_util::error(&e))
}

/// `pods/log`: the kubelet's `/containerLogs`, streamed.
async fn log(
    api: &Api,
    req: Request<Incoming>,
    info: &RequestInfo,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let name = info.name.as_deref().unwrap_or_default();
    let namespace = info.namespace.as_deref().unwrap_or_default();
    let options = LogOptions::parse(&Params::parse(req.uri().query()))?;
    options.validate(name)?;
    let pod = load_pod(api, namespace, name).await?;
    let container = container_of(&pod, name, options.container.as_deref())?;
    let Some(node) = node_of(&pod) else {
        // Upstream answers an unscheduled pod's log with no content.
        return Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(http_util::full(Bytes::new()))
            .expect("a valid response"));
    };
    let mut endpoint = api.kubelet.locate(api, node).await?;
    if options.insecure_skip_tls_verify_backend {
        endpoint.transport = Transport::KubeletInsecure;
    }
    let query = options.kubelet_query();
    let path = format!(
        "/containerLogs/{namespace}/{name}/{container}{}{query}",
        if query.is_empty() { "" } else { "?" }
    );
    debug!(node.name = node, path, "fetching logs from the kubelet");
    let failed =
        |e: &dyn std::fmt::Display| unknown(500, format!("Get {:?}: {e}", endpoint.url(&path)));
    let mut sender = api
        .kubelet
        .open::<Empty<Bytes>>(&endpoint)
        .await
        .map_err(|e| failed(&e))?;
    let request = Request::get(path.as_str())
        .header(header::HOST, endpoint.authority())
        .body(Empty::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
    let status = response.status().as_u16();
    if !(200..=206).contains(&status) {
        return Err(kubelet_error(response, name).await);
    }
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(response.into_body().map_err(std::io::Error::other).boxed())
        .expect("a valid response"))
}

/// `pods/exec`, `pods/attach`, `pods/portforward`: the client's upgrade,
/// relayed to the kubelet's `/exec`, `/attach` or `/portForward`.
async fn stream(
    api: &Api,
    req: Request<Incoming>,
    info: &RequestInfo,
    route: Route,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    let name = info.name.as_deref().unwrap_or_default();
    let namespace = info.namespace.as_deref().unwrap_or_default();
    let params = Params::parse(req.uri().query());
    let pod = load_pod(api, namespace, name).await?;
    let path = if route == Route::PortForward {
        let mut ports = Vec::new();
        for value in params.all("ports") {
            for port in value.split(',').filter(|p| !p.is_empty()) {
                let port: u16 = port.trim().parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "strconv.ParseInt: parsing {port:?}: invalid syntax"
                    ))
                })?;
                // One `port` each: upstream's kubelet also splits commas.
                ports.push(("port", port.to_string()));
            }
        }
        let query = encode(ports);
        format!(
            "/portForward/{namespace}/{name}{}{query}",
            if query.is_empty() { "" } else { "?" }
        )
    } else {
        let container = container_of(&pod, name, params.first("container"))?;
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (option, kubelet) in [
            ("stdin", "input"),
            ("stdout", "output"),
            ("stderr", "error"),
            ("tty", "tty"),
        ] {
            if params.flag(option) {
                pairs.push((kubelet, "1".to_owned()));
            }
        }
        if route == Route::Exec {
            pairs.extend(params.all("command").map(|c| ("command", c.to_owned())));
        }
        let query = encode(pairs);
        let kind = if route == Route::Exec {
            "exec"
        } else {
            "attach"
        };
        format!(
            "/{kind}/{namespace}/{name}/{container}{}{query}",
            if query.is_empty() { "" } else { "?" }
        )
    };
    let Some(node) = node_of(&pod) else {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let endpoint = api.kubelet.locate(api, node).await?;
    debug!(node.name = node, path, "relaying a stream to the kubelet");
    relay(api, req, &endpoint, &path, true, |e| {
        unknown(500, format!("error dialing backend: {e}"))
    })
    .await
}

/// `nodes/{name}/proxy/{path}`: any request, to the kubelet (or to another
/// port of the node with `{name}:{port}` or `{scheme}:{name}:{port}`).
async fn node_proxy(
    api: &Api,
    req: Request<Incoming>,
    info: &RequestInfo,
) -> Result<Response<Body>, ApiError> {
    if !matches!(
        *req.method(),
        Method::GET
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::HEAD
            | Method::OPTIONS
    ) {
        return Err(ApiError::method_not_allowed());
    }
    let id = info.name.as_deref().unwrap_or_default();
    let (scheme, node, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid node request {id:?}")))?;
    let mut endpoint = api.kubelet.locate(api, node).await?;
    if let Some(port) = port.filter(|p| *p != endpoint.port) {
        endpoint.port = port;
        endpoint.transport = if scheme == "https" {
            Transport::AnonymousTls
        } else {
            Transport::Plain
        };
    }
    // What follows `/proxy`, from the raw path (trailing slashes kept).
    let raw = req.uri().path();
    let marker = format!("/nodes/{id}/proxy");
    let rest = raw
        .find(&marker)
        .map(|at| &raw[at + marker.len()..])
        .unwrap_or_default();
    let mut path = if rest.is_empty() {
        "/".to_owned()
    } else {
        rest.to_owned()
    };
    if let Some(query) = req.uri().query() {
        path.push('?');
        path.push_str(query);
    }
    debug!(node.name = node, path, "proxying to the node");
    relay(api, req, &endpoint, &path, false, |e| {
        unknown(500, format!("error trying to reach service: {e}"))
    })
    .await
}

/// Sends the client's request to `path` at `endpoint` and answers with the
/// endpoint's response; when that switches protocols, splices the two
/// upgraded connections together, byte for byte, both ways. With
/// `upgrade_required`, a request that does not ask to upgrade is refused;
/// `unreachable` says what failed when the endpoint cannot be reached.
async fn relay(
    api: &Api,
    mut req: Request<Incoming>,
    endpoint: &Endpoint,
    path: &str,
    upgrade_required: bool,
    unreachable: impl FnOnce(std::io::Error) -> ApiError,
) -> Result<Response<Body>, ApiError> {
    let upgrade = wants_upgrade(req.headers());
    if upgrade_required && !upgrade {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut out = Request::builder()
        .method(parts.method)
        .uri(path)
        .body(body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    forward_request_headers(&parts.headers, out.headers_mut(), upgrade);
    if let Ok(host) = HeaderValue::from_str(&endpoint.authority()) {
        out.headers_mut().insert(header::HOST, host);
    }
    let mut sender = match api.kubelet.open::<Incoming>(endpoint).await {
        Ok(sender) => sender,
        Err(e) => return Err(unreachable(e)),
    };
    let mut response = match sender.send_request(out).await {
        Ok(response) => response,
        Err(e) => return Err(unreachable(std::io::Error::other(e))),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_side) = client_side
    {
        let backend_side = hyper::upgrade::on(&mut response);
        tokio::spawn(splice(client_side, backend_side));
        let mut switched = Response::new(http_util::full(Bytes::new()));
        *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *switched.headers_mut() = response.headers().clone();
        return Ok(switched);
    }
    let (parts, body) = response.into_parts();
    let mut answer = Response::new(body.map_err(std::io::Error::other).boxed());
    *answer.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name.as_str()) {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(answer)
}

/// Copies bytes both ways between the client's and the kubelet's upgraded
/// connections until both ends close.
async fn splice(client: hyper::upgrade::OnUpgrade, backend: hyper::upgrade::OnUpgrade) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(error = %e, "an upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        Ok((up, down)) => debug!(up, down, "stream closed"),
        Err(e) => debug!(error = %e, "stream ended with an error"),
    }
}

/// Whether a request asks to switch protocols (`Connection: Upgrade` and an
/// `Upgrade` header).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Headers that describe one connection, not the request.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The client's headers for the kubelet: its credentials and impersonation
/// dropped (upstream removes them once they have been used), hop-by-hop
/// headers dropped, `Connection: Upgrade` and `Upgrade` kept for an upgrade.
fn forward_request_headers(from: &HeaderMap, to: &mut HeaderMap, upgrade: bool) {
    let named_by_connection: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in from {
        let n = name.as_str();
        let dropped = n == "host"
            || n == "authorization"
            || n.starts_with("impersonate-")
            || is_hop_by_hop(n)
            || named_by_connection.iter().any(|t| t == n);
        if !dropped {
            to.append(name.clone(), value.clone());
        }
    }
    if upgrade {
        to.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        for value in from.get_all(header::UPGRADE) {
            to.append(header::UPGRADE, value.clone());
        }
    }
}

/// The pod, read from storage.
async fn load_pod(api: &Api, namespace: &str, name: &str) -> Result<Value, ApiError> {
    let pods =
        skiff_api_types::registry::lookup("", "v1", "pods").expect("pods are a built-in kind");
    let target = Target {
        resource: pods,
        namespace: Some(namespace),
        name: Some(name),
        subresource: None,
    };
    Ok(crate::rest::load(api, &target).await?.0)
}

fn node_of(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

/// The container a request is for, as upstream's validateContainer picks it:
/// the one named (which must exist), else the pod's only container. With
/// several, the `kubectl.kubernetes.io/default-container` annotation names
/// one when it names an existing container; otherwise the request must name
/// one.
fn container_of(pod: &Value, name: &str, requested: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let containers = names("containers");
    // Upstream's VisitContainers order: init, regular, ephemeral.
    let mut all = names("initContainers");
    all.extend(containers.iter().cloned());
    all.extend(names("ephemeralContainers"));
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if all.iter().any(|n| n == c) => Ok(c.to_owned()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None if containers.is_empty() => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        ))),
        None => {
            let annotated = pod["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION]
                .as_str()
                .filter(|c| all.iter().any(|n| n == c));
            match annotated {
                Some(c) => Ok(c.to_owned()),
                None => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    all.join(" ")
                ))),
            }
        }
    }
}

/// The first of a Node's addresses in `preferred` type order (upstream's
/// GetPreferredNodeAddress: a missing `Hostname` address falls back to the
/// `kubernetes.io/hostname` label).
fn preferred_address(node: &Value, preferred: &[String]) -> Option<String> {
    let addresses = node["status"]["addresses"].as_array();
    for kind in preferred {
        let found = addresses.into_iter().flatten().find_map(|a| {
            (a["type"].as_str() == Some(kind.as_str()))
                .then(|| a["address"].as_str())
                .flatten()
                .filter(|s| !s.is_empty())
        });
        if let Some(address) = found {
            return Some(address.to_owned());
        }
        if kind == "Hostname"
            && let Some(label) = node["metadata"]["labels"]["kubernetes.io/hostname"]
                .as_str()
                .filter(|s| !s.is_empty())
        {
            return Some(label.to_owned());
        }
    }
    None
}

/// `name`, `name:port` or `scheme:name:port` (upstream's SplitSchemeNamePort).
fn split_scheme_name_port(id: &str) -> Option<(&str, &str, Option<u16>)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    if name.is_empty() || !matches!(scheme, "" | "http" | "https") {
        return None;
    }
    let port = if port.is_empty() {
        None
    } else {
        Some(port.parse().ok()?)
    };
    Some((scheme, name, port))
}

/// A kubelet's failed log response as an API error (upstream's
/// GenericHttpResponseChecker).
async fn kubelet_error(response: Response<Incoming>, pod: &str) -> ApiError {
    let code = response.status().as_u16();
    let body = match Limited::new(response.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => String::new(),
        Err(e) => return ApiError::internal(e.to_string()),
    };
    match code {
        500 => ApiError::internal(body),
        400 => ApiError::bad_request(body),
        _ => generic_server_response(code, pod, &body),
    }
}

/// Upstream's NewGenericServerResponse for `pods/log` (no verb).
fn generic_server_response(code: u16, pod: &str, server_message: &str) -> ApiError {
    let (reason, message) = match code {
        409 => ("Conflict", "the server reported a conflict".to_owned()),
        404 => (
            "NotFound",
            "the server could not find the requested resource".to_owned(),
        ),
        400 => (
            "BadRequest",
            "the server rejected our request for an unknown reason".to_owned(),
        ),
        401 => (
            "Unauthorized",
            "the server has asked for the client to provide credentials".to_owned(),
        ),
        403 => ("Forbidden", server_message.to_owned()),
        406 => (
            "NotAcceptable",
            "the server was unable to respond with a content type that the client supports"
                .to_owned(),
        ),
        415 => (
            "UnsupportedMediaType",
            "the server was unable to respond with a content type that the client supports"
                .to_owned(),
        ),
        405 => (
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".to_owned(),
        ),
        422 => (
            "Invalid",
            "the server rejected our request due to an error in our request".to_owned(),
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".to_owned(),
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request"
                .to_owned(),
        ),
        429 => (
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later"
                .to_owned(),
        ),
        c if c >= 500 => (
            "InternalError",
            format!(
                "an error on the server ({server_message:?}) has prevented the request from succeeding"
            ),
        ),
        c => (
            "",
            format!("the server responded with the status code {c} but did not return more information"),
        ),
    };
    let gr = GroupResource {
        group: "",
        resource: "pods/log",
    };
    ApiError {
        code,
        reason,
        message: format!("{message} ( {} {pod})", gr.qualified()),
        details: Some(serde_json::json!({"name": pod, "kind": gr.resource})),
    }
}

/// An error upstream reports without a reason (an error that is not an API
/// status): `Error from server: <message>` in kubectl.
fn unknown(code: u16, message: String) -> ApiError {
    ApiError {
        code,
        reason: "",
        message,
        details: None,
    }
}

/// A query string as Go's url.Values.Encode writes it: keys sorted (values
/// of one key in order), escaped as url.QueryEscape.
fn encode(mut pairs: Vec<(&str, String)>) -> String {
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_only_container_is_the_default_and_several_need_a_name() {
        let one = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(container_of(&one, "p", None).unwrap(), "app");
        let two = json!({"spec": {
            "initContainers": [{"name": "setup"}],
            "containers": [{"name": "a"}, {"name": "b"}],
        }});
        assert_eq!(
            container_of(&two, "p", None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [setup a b]"
        );
        assert_eq!(container_of(&two, "p", Some("setup")).unwrap(), "setup");
        assert_eq!(
            container_of(&two, "p", Some("c")).unwrap_err().message,
            "container c is not valid for pod p"
        );
        let mut annotated = two.clone();
        annotated["metadata"] = json!({"annotations": {DEFAULT_CONTAINER_ANNOTATION: "b"}});
        assert_eq!(container_of(&annotated, "p", None).unwrap(), "b");
    }

    #[test]
    fn log_options_are_validated_and_passed_on_as_upstream_writes_them() {
        let parse = |q: &str| LogOptions::parse(&Params::parse(Some(q))).unwrap();
        let o = parse(
            "container=app&follow=true&tailLines=10&timestamps=1&sinceTime=2024-05-01T10:00:00.5Z",
        );
        assert_eq!(
            o.kubelet_query(),
            "follow=true&sinceTime=2024-05-01T10%3A00%3A00Z&tailLines=10&timestamps=true"
        );
        assert!(!parse("follow=false&previous=0").follow);
        assert_eq!(parse("tailLines=-1").validate("p").unwrap_err().code, 422);
        assert_eq!(
            parse("sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z")
                .validate("p")
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            LogOptions::parse(&Params::parse(Some("tailLines=x")))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn the_preferred_address_type_wins() {
        let node = json!({
            "metadata": {"labels": {"kubernetes.io/hostname": "n1"}},
            "status": {"addresses": [
                {"type": "Hostname", "address": "n1.local"},
                {"type": "InternalIP", "address": "10.0.0.5"},
            ]},
        });
        let types = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            preferred_address(&node, &types(&["InternalIP", "Hostname"])).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            preferred_address(&node, &types(&["ExternalIP", "Hostname"])).as_deref(),
            Some("n1.local")
        );
        let bare = json!({"metadata": {"labels": {"kubernetes.io/hostname": "n1"}}});
        assert_eq!(
            preferred_address(&bare, &types(&["InternalIP", "Hostname"])).as_deref(),
            Some("n1")
        );
        assert_eq!(preferred_address(&bare, &types(&["InternalIP"])), None);
    }

    #[test]
    fn node_names_may_carry_a_scheme_and_a_port() {
        assert_eq!(split_scheme_name_port("n1"), Some(("", "n1", None)));
        assert_eq!(
            split_scheme_name_port("n1:8080"),
            Some(("", "n1", Some(8080)))
        );
        assert_eq!(
            split_scheme_name_port("https:n1:443"),
            Some(("https", "n1", Some(443)))
        );
        assert_eq!(split_scheme_name_port("ftp:n1:21"), None);
        assert_eq!(split_scheme_name_port("n1:x"), None);
    }

    #[test]
    fn upgrade_headers_survive_and_credentials_do_not() {
        let mut from = HeaderMap::new();
        from.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        from.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        from.insert("sec-websocket-key", HeaderValue::from_static("k"));
        from.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v5.channel.k8s.io"),
        );
        from.insert(
            "x-stream-protocol-version",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        from.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        from.insert("impersonate-user", HeaderValue::from_static("bob"));
        assert!(wants_upgrade(&from));
        let mut to = HeaderMap::new();
        forward_request_headers(&from, &mut to, true);
        assert_eq!(to[header::CONNECTION], "Upgrade");
        assert_eq!(to[header::UPGRADE], "websocket");
        assert_eq!(to["sec-websocket-protocol"], "v5.channel.k8s.io");
        assert_eq!(to["x-stream-protocol-version"], "v4.channel.k8s.io");
        assert!(!to.contains_key(header::AUTHORIZATION));
        assert!(!to.contains_key("impersonate-user"));
    }
}
