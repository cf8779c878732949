//! The kubelet's credentials on the server: a client certificate for
//! `system:node:<name>` in group `system:nodes`, signed by the cluster CA the
//! API server generated, so the Node authorizer decides what it may do.

use crate::config::{self, Credential, Layout, Settings};
use anyhow::Context as _;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A client certificate and key (PEM) for `cn` in `groups`, signed by the CA.
pub fn client_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    cn: &str,
    groups: &[&str],
) -> anyhow::Result<(String, String)> {
    let ca_key = KeyPair::from_pem(ca_key_pem).context("parsing the CA key")?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).context("parsing the CA")?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(cn, groups);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub fn subject(cn: &str, groups: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for g in groups {
        dn.push(DnType::OrganizationName, *g);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

/// Writes `kubelet.kubeconfig` unless one signed by the current CA is there.
pub fn ensure_node_kubeconfig(l: &Layout, s: &Settings) -> anyhow::Result<()> {
    let ca = std::fs::read_to_string(l.ca_cert()).context("reading the cluster CA")?;
    let path = l.kubelet_kubeconfig();
    if let Ok(existing) = std::fs::read_to_string(&path) {
        use base64::Engine;
        let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca.as_bytes());
        if existing.contains(&ca_b64) && existing.contains(&format!(":{}\n", s.secure_port)) {
            return Ok(());
        }
    }
    let ca_key = std::fs::read_to_string(l.ca_key()).context("reading the cluster CA key")?;
    let (cert, key) = client_cert(
        &ca,
        &ca_key,
        &format!("system:node:{}", s.node_name),
        &["system:nodes"],
    )?;
    let text = config::kubeconfig(
        &format!("https://127.0.0.1:{}", s.secure_port),
        Some(&ca),
        "kubelet",
        Credential::Certificate {
            cert: &cert,
            key: &key,
        },
    );
    write_private(&path, &text)
}

pub fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = subject("test-ca", &[]);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn the_node_certificate_names_the_node_user_and_group() {
        let (ca_cert, ca_key) = ca();
        let (cert, key) =
            client_cert(&ca_cert, &ca_key, "system:node:vm", &["system:nodes"]).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"system:node:vm"));
        assert!(has(b"system:nodes"));
        // Signed by the CA: the issuer's name is in it.
        assert!(has(b"test-ca"));
    }

    use rustls::pki_types::pem::PemObject;

    #[test]
    fn the_kubeconfig_is_written_once_per_ca() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path()).unwrap();
        std::fs::create_dir_all(l.apiserver().join("pki")).unwrap();
        let (ca_cert, ca_key) = ca();
        std::fs::write(l.ca_cert(), &ca_cert).unwrap();
        std::fs::write(l.ca_key(), &ca_key).unwrap();
        let mut s = crate::config::tests_settings();
        s.secure_port = 16443;
        ensure_node_kubeconfig(&l, &s).unwrap();
        let first = std::fs::read_to_string(l.kubelet_kubeconfig()).unwrap();
        assert!(first.contains("server: https://127.0.0.1:16443"));
        ensure_node_kubeconfig(&l, &s).unwrap();
        assert_eq!(
            std::fs::read_to_string(l.kubelet_kubeconfig()).unwrap(),
            first
        );
        // A new CA (the API server's data was deleted) means a new certificate.
        let (ca_cert, ca_key) = ca();
        std::fs::write(l.ca_cert(), &ca_cert).unwrap();
        std::fs::write(l.ca_key(), &ca_key).unwrap();
        ensure_node_kubeconfig(&l, &s).unwrap();
        assert_ne!(
            std::fs::read_to_string(l.kubelet_kubeconfig()).unwrap(),
            first
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(l.kubelet_kubeconfig())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
