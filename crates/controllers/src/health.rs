//! `/healthz` (and `/livez`, `/readyz`) over HTTPS on `--secure-port`, as
//! kube-controller-manager serves them: readable without credentials, with a
//! self-signed certificate for localhost unless `--tls-cert-file` names one.

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
use tracing::{debug, info};

use crate::Serving;

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
    #[error("no certificate in the serving certificate PEM")]
    NoCertificate,
    #[error("the serving key PEM")]
    Key(#[source] rustls::pki_types::pem::Error),
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

/// The health server; it stops when dropped.
pub(crate) struct HealthServer {
    #[cfg(test)]
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `--bind-address:--secure-port` and serves until dropped.
pub(crate) async fn start(serving: &Serving) -> Result<HealthServer, ServeError> {
    let (cert, key) = match (&serving.tls_cert_file, &serving.tls_private_key_file) {
        (Some(c), Some(k)) => (read(c)?, read(k)?),
        (None, None) => self_signed()?,
        _ => return Err(ServeError::HalfPair),
    };
    let tls = tls_config(&cert, &key)?;
    let addr = SocketAddr::new(serving.bind_address, serving.secure_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    info!(%addr, "serving /healthz over HTTPS");
    let task = tokio::spawn(serve(listener, TlsAcceptor::from(Arc::new(tls))));
    Ok(HealthServer {
        #[cfg(test)]
        addr,
        task,
    })
}

fn read(path: &PathBuf) -> Result<String, ServeError> {
    std::fs::read_to_string(path).map_err(|source| ServeError::Read {
        path: path.clone(),
        source,
    })
}

/// A certificate and key (PEM) for `localhost` and 127.0.0.1, made now.
pub(crate) fn self_signed() -> Result<(String, String), ServeError> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .map_err(ServeError::SelfSigned)?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

fn tls_config(cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig, ServeError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(ServeError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(ServeError::Key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ServeError::Tls)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(ServeError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let result = async {
                let tls = acceptor.accept(tcp).await?;
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(tls),
                        service_fn(|req: Request<Incoming>| async move {
                            Ok::<_, std::convert::Infallible>(respond(req.uri().path()))
                        }),
                    )
                    .await
            };
            if let Err(e) = result.await {
                debug!(%peer, error = %e, "health connection ended with an error");
            }
        });
    }
}

/// The answer to a GET of `path`.
fn respond(path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" | "/livez" | "/readyz" => (StatusCode::OK, "ok"),
        "/healthz/ping" | "/livez/ping" | "/readyz/ping" => (StatusCode::OK, "ok"),
        _ => (StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a static response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn healthz_answers_ok_and_other_paths_404() {
        assert_eq!(respond("/healthz").status(), StatusCode::OK);
        assert_eq!(respond("/readyz").status(), StatusCode::OK);
        assert_eq!(respond("/metrics-nope").status(), StatusCode::NOT_FOUND);
        let body = futures::executor::block_on(respond("/healthz").into_body().collect())
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"ok");
    }

    #[tokio::test]
    async fn healthz_is_served_over_tls_with_the_given_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed().unwrap();
        let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_file, &cert).unwrap();
        std::fs::write(&key_file, &key).unwrap();
        let server = start(&Serving {
            secure_port: 0,
            bind_address: "127.0.0.1".parse().unwrap(),
            tls_cert_file: Some(cert_file),
            tls_private_key_file: Some(key_file),
        })
        .await
        .unwrap();

        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(cert.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
    }
}
