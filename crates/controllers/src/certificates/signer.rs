//! The CSR signing controller (upstream's csrsigning): an approved request
//! for `kubernetes.io/kube-apiserver-client-kubelet`,
//! `kubernetes.io/kubelet-serving` or `kubernetes.io/kube-apiserver-client`
//! that passes its signer's checks is signed with the cluster CA
//! (`--cluster-signing-cert-file`/`--cluster-signing-key-file`) for
//! `--cluster-signing-duration` (or the shorter `spec.expirationSeconds`),
//! never past the CA's own expiry; one that fails them gets a Failed
//! condition. Without a CA the controller signs nothing.

use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use tracing::{error, info, warn};

use super::{
    API_CLIENT, KUBELET_CLIENT, KUBELET_SERVING, check_api_client, check_kubelet_client,
    check_kubelet_serving, has_condition, parse,
};
use crate::cache::Changed;
use crate::framework::{self, Context};

/// The controller's name in `--controllers`.
pub(crate) const NAME: &str = "certificatesigningrequest-signing-controller";

/// How far back a certificate's validity starts, for clocks a little
/// behind (upstream's backdate).
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The cluster CA, ready to sign.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// When the CA certificate expires (Unix seconds).
    not_after: i64,
}

impl Ca {
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, String> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("the CA key: {e}"))?;
        let der =
            super::pem_block(cert_pem, "CERTIFICATE").ok_or("no CERTIFICATE in the CA file")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("the CA certificate: {e}"))?;
        let not_after = cert.validity().not_after.timestamp();
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| format!("the CA: {e}"))?;
        Ok(Ca { issuer, not_after })
    }
}

/// Checks the request against its signer: `Ok(None)` for a signer this
/// controller does not run, `Err` for a request its signer refuses.
pub(crate) fn check(csr: &CertificateSigningRequest) -> Result<Option<()>, String> {
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let signer = csr.spec.signer_name.as_str();
    if ![KUBELET_CLIENT, KUBELET_SERVING, API_CLIENT].contains(&signer) {
        return Ok(None);
    }
    let request = parse(&csr.spec.request.0)?;
    match signer {
        KUBELET_CLIENT => check_kubelet_client(&request, &usages)?,
        KUBELET_SERVING => check_kubelet_serving(&request, &usages)?,
        _ => check_api_client(&usages)?,
    }
    Ok(Some(()))
}

/// Signs the PEM request for `usages`, valid from `now` less the backdate
/// for `ttl`, capped at the CA's expiry; the certificate, PEM.
pub(crate) fn sign(
    ca: &Ca,
    request_pem: &[u8],
    usages: &[String],
    ttl: Duration,
    now: Timestamp,
) -> Result<String, String> {
    let text = std::str::from_utf8(request_pem).map_err(|_| "the request is not PEM")?;
    let mut req =
        CertificateSigningRequestParams::from_pem(text).map_err(|e| format!("the request: {e}"))?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now_s = now.as_second();
    let start = (now_s - BACKDATE.as_secs() as i64).max(0);
    let end = now_s
        .saturating_add(ttl.as_secs() as i64)
        .min(ca.not_after)
        .max(start);
    let p = &mut req.params;
    p.not_before = epoch + Duration::from_secs(start as u64);
    p.not_after = epoch + Duration::from_secs(end as u64);
    p.is_ca = IsCa::NoCa;
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.use_authority_key_identifier_extension = true;
    p.key_usages = usages
        .iter()
        .filter_map(|u| match u.as_str() {
            "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            _ => None,
        })
        .collect();
    p.extended_key_usages = usages
        .iter()
        .filter_map(|u| match u.as_str() {
            "client auth" => Some(ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => Some(ExtendedKeyUsagePurpose::ServerAuth),
            _ => None,
        })
        .collect();
    let cert = req
        .signed_by(&ca.issuer)
        .map_err(|e| format!("signing: {e}"))?;
    Ok(cert.pem())
}

/// Runs the controller until the controller manager stops.
pub(crate) fn start(ctx: Context) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let f = &ctx.settings.infra;
        let (Some(cert), Some(key)) = (&f.cluster_signing_cert_file, &f.cluster_signing_key_file)
        else {
            info!("no --cluster-signing-cert-file and --cluster-signing-key-file; signing nothing");
            ctx.stopped().await;
            return;
        };
        let loaded = std::fs::read_to_string(cert)
            .map_err(|e| format!("{}: {e}", cert.display()))
            .and_then(|c| {
                Ok((
                    c,
                    std::fs::read_to_string(key).map_err(|e| format!("{}: {e}", key.display()))?,
                ))
            })
            .and_then(|(c, k)| Ca::load(&c, &k));
        let ca = match loaded {
            Ok(ca) => ca,
            Err(e) => {
                error!(error = %e, "cannot load the cluster signing CA; signing nothing");
                ctx.stopped().await;
                return;
            }
        };
        let duration = f.cluster_signing_duration;
        let (_cache, changes) = ctx.informers.certificate_signing_requests.subscribe(
            |c: &Changed<CertificateSigningRequest>| match c {
                Changed::Deleted(_) => None,
                c => Some(c.latest().clone()),
            },
        );
        let stopped = ctx.stopped();
        tokio::pin!(stopped, changes);
        loop {
            tokio::select! {
                () = &mut stopped => return,
                Some(csr) = changes.next() => {
                    if let Err(e) = handle(&ctx.client, &ca, duration, &csr).await {
                        warn!(csr = %csr.name_any(), error = %e, "signing the request failed");
                    }
                }
            }
        }
    })
}

async fn handle(
    client: &Client,
    ca: &Ca,
    duration: Duration,
    csr: &CertificateSigningRequest,
) -> Result<(), kube::Error> {
    if !has_condition(csr, "Approved")
        || has_condition(csr, "Failed")
        || csr
            .status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_some_and(|c| !c.0.is_empty())
    {
        return Ok(());
    }
    let name = csr.name_any();
    let mut updated = csr.clone();
    match check(csr) {
        Ok(None) => return Ok(()),
        Ok(Some(())) => {
            let ttl = match csr.spec.expiration_seconds {
                Some(s) if s > 0 => duration.min(Duration::from_secs(s as u64)),
                _ => duration,
            };
            let usages = csr.spec.usages.clone().unwrap_or_default();
            match sign(ca, &csr.spec.request.0, &usages, ttl, Timestamp::now()) {
                Ok(pem) => {
                    updated.status.get_or_insert_default().certificate =
                        Some(ByteString(pem.into_bytes()))
                }
                Err(e) => failed(&mut updated, "SignerValidationFailure", &e),
            }
        }
        Err(e) => failed(&mut updated, "SignerValidationFailure", &e),
    }
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    match api
        .replace_status(&name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => {
            if has_condition(&updated, "Failed") {
                info!(csr = %name, "the signer refused the request");
            } else {
                info!(csr = %name, signer = %csr.spec.signer_name, "signed the certificate");
            }
            Ok(())
        }
        Err(e) if framework::is_conflict(&e) || framework::is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn failed(csr: &mut CertificateSigningRequest, reason: &str, message: &str) {
    csr.status
        .get_or_insert_default()
        .conditions
        .get_or_insert_default()
        .push(CertificateSigningRequestCondition {
            type_: "Failed".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_update_time: Some(Time(Timestamp::now())),
            last_transition_time: Some(Time(Timestamp::now())),
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::tests::request;
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType};

    fn ca() -> (Ca, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "test-ca");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        (Ca::load(&cert.pem(), &key.serialize_pem()).unwrap(), der)
    }

    #[test]
    fn a_signed_certificate_verifies_against_the_ca_with_the_requested_usages() {
        let (ca, ca_der) = ca();
        let pem = request("system:node:n1", &["system:nodes"], &[]);
        let usages = vec!["digital signature".to_string(), "client auth".to_string()];
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let cert = sign(&ca, pem.as_bytes(), &usages, Duration::from_secs(3600), now).unwrap();
        let der = super::super::pem_block(&cert, "CERTIFICATE").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "system:node:n1"
        );
        assert_eq!(
            cert.validity().not_before.timestamp(),
            now.as_second() - 300
        );
        assert_eq!(
            cert.validity().not_after.timestamp(),
            now.as_second() + 3600
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(!cert.is_ca());
        // Never past the CA's own expiry.
        let late = sign(
            &ca,
            pem.as_bytes(),
            &usages,
            Duration::from_secs(20 * 365 * 86400),
            now,
        )
        .unwrap();
        let der = super::super::pem_block(&late, "CERTIFICATE").unwrap();
        let (_, late) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(late.validity().not_after, ca_cert.validity().not_after);
    }
}
