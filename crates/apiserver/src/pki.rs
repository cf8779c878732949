//! The cluster's certificates: on first start with an empty data directory,
//! a CA, the server's serving certificate and an admin client certificate
//! (group `system:masters`), and `admin.kubeconfig` beside them — as k3s writes
//! `k3s.yaml`. Later starts reuse them, reissuing only a serving certificate
//! that lacks a name the server now needs.
//!
//! Layout under the data directory:
//! `pki/ca.{crt,key}`, `pki/apiserver.{crt,key}`, `pki/admin.{crt,key}`,
//! `pki/apiserver-kubelet-client.{crt,key}` (user
//! `kube-apiserver-kubelet-client`, what the server presents to kubelets),
//! `pki/sa.{key,pub}` (the ECDSA P-256 key that signs service-account
//! tokens), `admin.kubeconfig`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Errors while creating or loading the cluster's certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("reading or writing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating a certificate for {what}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{path} is not a usable PEM certificate or key")]
    Parse { path: PathBuf },
}

/// The certificates the server runs with.
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca_cert_pem: String,
    /// The serving certificate chain and key, PEM.
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    /// Where `admin.kubeconfig` was written.
    pub admin_kubeconfig: PathBuf,
    /// The service-account signing key (`pki/sa.key`), PEM.
    pub service_account_key_pem: String,
    /// The client certificate and key the server presents to kubelets, PEM.
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

/// The user of the generated kubelet client certificate (kubeadm's name),
/// bound to `system:kubelet-api-admin` by the default policy.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// The names and addresses the serving certificate must hold.
#[derive(Clone, Debug, Default)]
pub struct ServingNames {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl ServingNames {
    /// localhost, the host's name and addresses, the in-cluster names of the
    /// `kubernetes` Service and its ClusterIP, and `extra` addresses (such as
    /// `--advertise-address`).
    pub fn for_host(service_ip: Option<IpAddr>, extra: &[IpAddr]) -> Self {
        let mut names = ServingNames::default();
        for dns in [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ] {
            names.dns.insert(dns.to_owned());
        }
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let host = host.trim();
            if !host.is_empty() {
                names.dns.insert(host.to_owned());
            }
        }
        names.ips.insert(IpAddr::from([127, 0, 0, 1]));
        names
            .ips
            .insert(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        names.ips.extend(local_ipv4_addresses());
        names.ips.extend(service_ip);
        names.ips.extend(extra.iter().copied());
        names
    }
}

/// Creates what is missing under `data_dir` and loads the rest. `server_url`
/// goes into the kubeconfig.
pub fn ensure(data_dir: &Path, names: &ServingNames, server_url: &str) -> Result<Pki, PkiError> {
    let pki = data_dir.join("pki");
    std::fs::create_dir_all(&pki).map_err(|source| PkiError::Io {
        path: pki.clone(),
        source,
    })?;

    let (ca_cert_pem, ca_key_pem) = match read_pair(&pki, "ca")? {
        Some(pair) => pair,
        None => {
            let pair = new_ca()?;
            write_pair(&pki, "ca", &pair)?;
            pair
        }
    };
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|_| PkiError::Parse {
        path: pki.join("ca.key"),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key).map_err(|_| PkiError::Parse {
        path: pki.join("ca.crt"),
    })?;

    let serving = match read_pair(&pki, "apiserver")? {
        Some(pair) if covers(&pair.0, names) => pair,
        _ => {
            let pair = new_leaf(&issuer, "kube-apiserver", &[], Some(names))?;
            write_pair(&pki, "apiserver", &pair)?;
            pair
        }
    };
    let admin = match read_pair(&pki, "admin")? {
        Some(pair) => pair,
        None => {
            let pair = new_leaf(&issuer, "admin", &["system:masters"], None)?;
            write_pair(&pki, "admin", &pair)?;
            pair
        }
    };

    let kubelet_client = match read_pair(&pki, "apiserver-kubelet-client")? {
        Some(pair) => pair,
        None => {
            let pair = new_leaf(&issuer, KUBELET_CLIENT_USER, &[], None)?;
            write_pair(&pki, "apiserver-kubelet-client", &pair)?;
            pair
        }
    };

    let service_account_key_pem = service_account_key(&pki)?;

    let admin_kubeconfig = data_dir.join("admin.kubeconfig");
    let kubeconfig = kubeconfig(server_url, &ca_cert_pem, &admin.0, &admin.1);
    write_private(&admin_kubeconfig, &kubeconfig)?;

    Ok(Pki {
        ca_cert_pem,
        serving_cert_pem: serving.0,
        serving_key_pem: serving.1,
        admin_kubeconfig,
        service_account_key_pem,
        kubelet_client_cert_pem: kubelet_client.0,
        kubelet_client_key_pem: kubelet_client.1,
    })
}

/// The service-account signing key: `pki/sa.key`, created with its public
/// half `pki/sa.pub` when missing.
fn service_account_key(pki: &Path) -> Result<String, PkiError> {
    let path = pki.join("sa.key");
    if path.exists() {
        return std::fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source });
    }
    let key = KeyPair::generate().map_err(|source| PkiError::Generate {
        what: "the service account signing key".into(),
        source,
    })?;
    let pem = key.serialize_pem();
    write_private(&path, &pem)?;
    let public = pki.join("sa.pub");
    std::fs::write(&public, key.public_key_pem()).map_err(|source| PkiError::Io {
        path: public,
        source,
    })?;
    Ok(pem)
}

/// A kubeconfig for one user of the cluster at `server_url`.
pub fn kubeconfig(server_url: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: skiff\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\n\
         users:\n\
         - name: admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n\
         contexts:\n\
         - name: skiff\n  context:\n    cluster: skiff\n    user: admin\n\
         current-context: skiff\n\
         preferences: {{}}\n",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

fn new_ca() -> Result<(String, String), PkiError> {
    let generate = |source| PkiError::Generate {
        what: "the cluster CA".into(),
        source,
    };
    let key = KeyPair::generate().map_err(generate)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name("skiff-ca", &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let (y, m, d) = years_from_now(10);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A certificate signed by the CA: a serving certificate when `serving` names
/// are given, else a client certificate for user `cn` in `groups`.
fn new_leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    groups: &[&str],
    serving: Option<&ServingNames>,
) -> Result<(String, String), PkiError> {
    let generate = |source| PkiError::Generate {
        what: cn.to_owned(),
        source,
    };
    let key = KeyPair::generate().map_err(generate)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn, groups);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let (y, m, d) = years_from_now(1);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    match serving {
        Some(names) => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            for dns in &names.dns {
                if let Ok(dns) = dns.clone().try_into() {
                    params.subject_alt_names.push(SanType::DnsName(dns));
                }
            }
            for ip in &names.ips {
                params.subject_alt_names.push(SanType::IpAddress(*ip));
            }
        }
        None => params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
    }
    let cert = params.signed_by(&key, issuer).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn name(cn: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    for o in organizations {
        dn.push(DnType::OrganizationName, *o);
    }
    dn
}

/// (year, month, day) `years` from today, in UTC.
fn years_from_now(years: i16) -> (i32, u8, u8) {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let day = now.day().min(28);
    ((now.year() + years).into(), now.month() as u8, day as u8)
}

/// Whether a serving certificate holds every name and address in `names`.
fn covers(cert_pem: &str, names: &ServingNames) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    for general in &san.value.general_names {
        match general {
            x509_parser::extensions::GeneralName::DNSName(d) => {
                dns.insert(d.to_string());
            }
            x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                if let Ok(b) = <[u8; 4]>::try_from(*bytes) {
                    ips.insert(IpAddr::from(b));
                } else if let Ok(b) = <[u8; 16]>::try_from(*bytes) {
                    ips.insert(IpAddr::from(b));
                }
            }
            _ => {}
        }
    }
    names.dns.is_subset(&dns) && names.ips.is_subset(&ips)
}

fn read_pair(dir: &Path, name: &str) -> Result<Option<(String, String)>, PkiError> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    if !cert.exists() || !key.exists() {
        return Ok(None);
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| PkiError::Io {
            path: path.to_owned(),
            source,
        })
    };
    Ok(Some((read(&cert)?, read(&key)?)))
}

fn write_pair(dir: &Path, name: &str, (cert, key): &(String, String)) -> Result<(), PkiError> {
    write_private(&dir.join(format!("{name}.key")), key)?;
    let path = dir.join(format!("{name}.crt"));
    std::fs::write(&path, cert).map_err(|source| PkiError::Io { path, source })
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)
}

/// The host's first non-loopback IPv4 address, if it has one.
pub fn first_host_address() -> Option<IpAddr> {
    local_ipv4_addresses()
        .into_iter()
        .find(|ip| !ip.is_loopback())
}

/// The host's own IPv4 addresses, from the kernel's routing trie.
fn local_ipv4_addresses() -> Vec<IpAddr> {
    let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return Vec::new();
    };
    let mut found = BTreeSet::new();
    let mut last: Option<IpAddr> = None;
    for line in trie.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            last = addr.parse().ok();
        } else if line.contains("/32 host LOCAL") {
            found.extend(last);
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_start_reuses_the_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let names = ServingNames::for_host(None, &[]);
        let first = ensure(dir.path(), &names, "https://127.0.0.1:6443").unwrap();
        let second = ensure(dir.path(), &names, "https://127.0.0.1:6443").unwrap();
        assert_eq!(first.ca_cert_pem, second.ca_cert_pem);
        assert_eq!(first.serving_cert_pem, second.serving_cert_pem);
        assert_eq!(
            first.service_account_key_pem,
            second.service_account_key_pem
        );
        assert!(dir.path().join("pki/sa.pub").exists());
        assert!(covers(&first.serving_cert_pem, &names));
        let kubeconfig = std::fs::read_to_string(&first.admin_kubeconfig).unwrap();
        assert!(kubeconfig.contains("server: https://127.0.0.1:6443"));
    }

    #[test]
    fn a_new_address_reissues_the_serving_certificate_under_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(
            dir.path(),
            &ServingNames::for_host(None, &[]),
            "https://127.0.0.1:6443",
        )
        .unwrap();
        let wider = ServingNames::for_host(None, &["192.0.2.10".parse().unwrap()]);
        assert!(!covers(&first.serving_cert_pem, &wider));
        let second = ensure(dir.path(), &wider, "https://127.0.0.1:6443").unwrap();
        assert_eq!(first.ca_cert_pem, second.ca_cert_pem);
        assert!(covers(&second.serving_cert_pem, &wider));
    }

    #[test]
    fn the_admin_certificate_names_the_masters_group() {
        let dir = tempfile::tempdir().unwrap();
        ensure(
            dir.path(),
            &ServingNames::for_host(None, &[]),
            "https://127.0.0.1:6443",
        )
        .unwrap();
        let pem = std::fs::read_to_string(dir.path().join("pki/admin.crt")).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let orgs: Vec<_> = cert
            .subject()
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .collect();
        assert_eq!(orgs, ["system:masters"]);
    }

    #[test]
    fn the_kubelet_client_certificate_names_its_user_and_no_group() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(
            dir.path(),
            &ServingNames::for_host(None, &[]),
            "https://127.0.0.1:6443",
        )
        .unwrap();
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(first.kubelet_client_cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), KUBELET_CLIENT_USER);
        assert_eq!(cert.subject().iter_organization().count(), 0);
        let second = ensure(
            dir.path(),
            &ServingNames::for_host(None, &[]),
            "https://127.0.0.1:6443",
        )
        .unwrap();
        assert_eq!(
            first.kubelet_client_cert_pem,
            second.kubelet_client_cert_pem
        );
    }
}
