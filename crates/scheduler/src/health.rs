//! `/healthz`, `/livez`, `/readyz` and `/metrics` over HTTPS on
//! `--secure-port` (10259), as kube-scheduler serves them (here readable
//! without credentials), with a self-signed certificate for localhost unless
//! `--tls-cert-file` names one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Where `/healthz` is served.
#[derive(Clone, Debug)]
pub struct Serving {
    /// `--secure-port` (10259; 0 serves nothing).
    pub secure_port: u16,
    /// `--bind-address`.
    pub bind_address: std::net::IpAddr,
    /// `--tls-cert-file` / `--tls-private-key-file`.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
}

impl Default for Serving {
    fn default() -> Self {
        Serving {
            secure_port: 10259,
            bind_address: std::net::IpAddr::from([0, 0, 0, 0]),
            tls_cert_file: None,
            tls_private_key_file: None,
        }
    }
}

/// Why `/healthz` could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--tls-cert-file and --tls-private-key-file go together")]
    HalfPair,
    #[error("the serving certificate or key: {0}")]
    Pem(String),
    #[error("making a self-signed serving certificate")]
    SelfSigned(#[source] rcgen::Error),
    #[error("configuring TLS")]
    Tls(#[source] rustls::Error),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The running server; stops when dropped.
pub struct HealthServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn read(path: &PathBuf) -> Result<String, ServeError> {
    std::fs::read_to_string(path).map_err(|source| ServeError::Read {
        path: path.clone(),
        source,
    })
}

/// Binds and serves until dropped.
pub async fn start(serving: &Serving) -> Result<HealthServer, ServeError> {
    let (cert, key) = match (&serving.tls_cert_file, &serving.tls_private_key_file) {
        (Some(c), Some(k)) => (read(c)?, read(k)?),
        (None, None) => {
            let c =
                rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                    .map_err(ServeError::SelfSigned)?;
            (c.cert.pem(), c.signing_key.serialize_pem())
        }
        _ => return Err(ServeError::HalfPair),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(ServeError::Pem("no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| ServeError::Pem(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ServeError::Tls)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(ServeError::Tls)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let addr = SocketAddr::new(serving.bind_address, serving.secure_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    tracing::info!(%addr, "serving /healthz over HTTPS");
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service_fn(answer))
                    .await;
            });
        }
    });
    Ok(HealthServer { addr, task })
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (code, body) = match req.uri().path() {
        "/healthz" | "/livez" | "/readyz" | "/healthz/ping" | "/livez/ping" | "/readyz/ping" => {
            (StatusCode::OK, "ok")
        }
        "/metrics" => {
            return Ok(Response::builder()
                .header(
                    "content-type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(Full::new(Bytes::from(crate::metrics::get().encode())))
                .expect("a response"));
        }
        _ => (StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    Ok(Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("a response"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn healthz_answers_ok_over_tls() {
        let dir = tempfile::tempdir().unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        let server = start(&Serving {
            secure_port: 0,
            bind_address: "127.0.0.1".parse().unwrap(),
            tls_cert_file: Some(cert),
            tls_private_key_file: Some(key),
        })
        .await
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(c.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        tls.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("ok"), "{reply}");
    }
}
