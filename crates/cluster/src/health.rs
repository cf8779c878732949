//! Asking a local component whether it is healthy: one GET over HTTPS or
//! HTTP, and a DNS query for skiff-dns.

use anyhow::Context as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client certificate (PEM) to present, e.g. the admin's: the kubelet
/// authorizes /healthz, and the API server's /readyz wants a user.
#[derive(Clone)]
pub struct ClientCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl ClientCert {
    /// The client certificate of a kubeconfig's (first) user: the
    /// `client-certificate-data` and `client-key-data` lines the API server
    /// and skiffctl write.
    pub fn from_kubeconfig(path: &std::path::Path) -> Option<ClientCert> {
        use base64::Engine;
        let text = std::fs::read_to_string(path).ok()?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .and_then(|v| {
                    base64::engine::general_purpose::STANDARD
                        .decode(v.trim())
                        .ok()
                })
        };
        Some(ClientCert {
            cert_pem: field("client-certificate-data:")?,
            key_pem: field("client-key-data:")?,
        })
    }
}

/// The local components serve self-signed certificates (the controller
/// manager, scheduler and kubelet make their own): a health probe to
/// 127.0.0.1 checks liveness, not identity, so it does not verify them.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(client: Option<&ClientCert>) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    Ok(match client {
        Some(c) => {
            let certs = CertificateDer::pem_slice_iter(&c.cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .context("client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(&c.key_pem).context("client key")?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    })
}

/// GETs `path` from 127.0.0.1:`port` and gives the status code and body.
pub async fn get(
    scheme: &str,
    port: u16,
    path: &str,
    client: Option<&ClientCert>,
) -> anyhow::Result<(u16, String)> {
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        let mut raw = Vec::new();
        if scheme == "https" {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(client)?));
            let name = ServerName::try_from("127.0.0.1")?.to_owned();
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(request.as_bytes()).await?;
            // A peer that closes without close_notify is fine here.
            let _ = tls.read_to_end(&mut raw).await;
        } else {
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes()).await?;
            tcp.read_to_end(&mut raw).await?;
        }
        parse_response(&raw)
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .context("no answer in 3 s")?
}

/// The status code and body of an HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP response")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A DNS query (type A, recursion desired) for `name` with id `id`.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Whether a DNS server on 127.0.0.1:`port` answers `name` with at least one
/// record (response code NOERROR, answer count > 0).
pub async fn dns_answers(server: &str, port: u16, name: &str) -> anyhow::Result<()> {
    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
    socket.connect((server, port)).await?;
    socket.send(&dns_query(0x5c1f, name)).await?;
    let mut buf = [0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
        .await
        .context("no DNS answer in 2 s")??;
    let reply = &buf[..n];
    anyhow::ensure!(
        n >= 12 && reply[0..2] == [0x5c, 0x1f],
        "not a reply to our query"
    );
    let rcode = reply[3] & 0x0f;
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    anyhow::ensure!(rcode == 0, "response code {rcode}");
    anyhow::ensure!(answers > 0, "no answer records");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_query_is_laid_out_as_rfc_1035_says() {
        let q = dns_query(0x1234, "kubernetes.default.svc.cluster.local.");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[4..6], &[0, 1]);
        assert_eq!(q[12], 10);
        assert_eq!(&q[13..23], b"kubernetes");
        assert_eq!(&q[q.len() - 5..], &[0, 0, 1, 0, 1]);
    }

    #[test]
    fn http_responses_give_their_code_and_body() {
        let (code, body) =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((code, body.as_str()), (200, "ok"));
        assert!(parse_response(b"garbage").is_err());
    }

    #[tokio::test]
    async fn a_plain_http_probe_reads_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\nnot yet")
                .await
                .unwrap();
        });
        let (code, body) = get("http", port, "/healthz", None).await.unwrap();
        assert_eq!((code, body.as_str()), (503, "not yet"));
    }
}
