//! The CertificateSigningRequest controllers: [`approver`] approves kubelet
//! client certificates that an authorized bootstrap token or node asks for
//! (upstream's csrapproving), [`signer`] signs approved requests for the
//! built-in kubelet and API-client signers with the cluster CA (upstream's
//! csrsigning). What both check of a request is here.

pub(crate) mod approver;
pub(crate) mod signer;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

pub(crate) const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub(crate) const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub(crate) const API_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// What a request asks for, from its PKCS#10 body.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Request {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: usize,
    pub emails: usize,
    pub uris: usize,
}

/// Parses `spec.request` (PEM, one CERTIFICATE REQUEST block) and checks
/// its signature.
pub(crate) fn parse(pem: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the request is not PEM".to_owned())?;
    let der = pem_block(text, "CERTIFICATE REQUEST")
        .ok_or_else(|| "no CERTIFICATE REQUEST PEM block in the request".to_owned())?;
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| format!("the request does not parse: {e}"))?;
    csr.verify_signature()
        .map_err(|_| "the request's signature does not verify".to_owned())?;
    let subject = &csr.certification_request_info.subject;
    let text_of = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        a.as_str().map(str::to_owned).unwrap_or_default()
    };
    let mut r = Request {
        common_name: subject
            .iter_common_name()
            .next()
            .map(text_of)
            .unwrap_or_default(),
        organizations: subject.iter_organization().map(text_of).collect(),
        ..Request::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => r.dns_names.push((*d).to_owned()),
                    GeneralName::IPAddress(_) => r.ip_addresses += 1,
                    GeneralName::RFC822Name(_) => r.emails += 1,
                    GeneralName::URI(_) => r.uris += 1,
                    _ => {}
                }
            }
        }
    }
    Ok(r)
}

/// The DER of the first PEM block labelled `label`.
pub(crate) fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn has_only(usages: &[String], allowed: &[&str]) -> bool {
    usages.iter().all(|u| allowed.contains(&u.as_str()))
}

/// Upstream's kubelet client certificate check (ValidateKubeletClientCSR):
/// O exactly `system:nodes`, CN `system:node:<name>`, no SANs, usages
/// client auth and digital signature (key encipherment allowed).
pub(crate) fn check_kubelet_client(r: &Request, usages: &[String]) -> Result<(), String> {
    if r.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if !r.common_name.starts_with("system:node:") || r.common_name.len() == "system:node:".len() {
        return Err("subject common name does not begin with system:node:".into());
    }
    if !r.dns_names.is_empty() || r.ip_addresses > 0 || r.emails > 0 || r.uris > 0 {
        return Err("subject alternative names are not allowed".into());
    }
    if !has_only(
        usages,
        &["digital signature", "key encipherment", "client auth"],
    ) || !usages.iter().any(|u| u == "client auth")
        || !usages.iter().any(|u| u == "digital signature")
    {
        return Err(
            "usages must be client auth and digital signature (key encipherment allowed)".into(),
        );
    }
    Ok(())
}

/// Upstream's kubelet serving certificate check: O `system:nodes`, CN
/// `system:node:<name>`, at least one DNS or IP SAN and no other, usages
/// server auth and digital signature (key encipherment allowed).
pub(crate) fn check_kubelet_serving(r: &Request, usages: &[String]) -> Result<(), String> {
    if r.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if !r.common_name.starts_with("system:node:") || r.common_name.len() == "system:node:".len() {
        return Err("subject common name does not begin with system:node:".into());
    }
    if r.dns_names.is_empty() && r.ip_addresses == 0 {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if r.emails > 0 || r.uris > 0 {
        return Err("email and URI subjectAltNames are not allowed".into());
    }
    if !has_only(
        usages,
        &["digital signature", "key encipherment", "server auth"],
    ) || !usages.iter().any(|u| u == "server auth")
        || !usages.iter().any(|u| u == "digital signature")
    {
        return Err(
            "usages must be server auth and digital signature (key encipherment allowed)".into(),
        );
    }
    Ok(())
}

/// The API client signer's check: client auth among its usages, none for
/// servers.
pub(crate) fn check_api_client(usages: &[String]) -> Result<(), String> {
    if !usages.iter().any(|u| u == "client auth") {
        return Err("usages must include client auth".into());
    }
    if !has_only(
        usages,
        &["digital signature", "key encipherment", "client auth"],
    ) {
        return Err(
            "usages may only be client auth, digital signature and key encipherment".into(),
        );
    }
    Ok(())
}

/// Whether the request carries a condition of `type_` that is True.
pub(crate) fn has_condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    /// A PEM request for `cn` in organizations `orgs` with DNS SANs `dns`.
    pub(crate) fn request(cn: &str, orgs: &[&str], dns: &[&str]) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = dns
            .iter()
            .map(|d| SanType::DnsName((*d).try_into().unwrap()))
            .collect();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn usages(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn requests_parse_with_their_subject_and_names() {
        let r = parse(request("system:node:n1", &["system:nodes"], &["n1.example"]).as_bytes())
            .unwrap();
        assert_eq!(r.common_name, "system:node:n1");
        assert_eq!(r.organizations, ["system:nodes"]);
        assert_eq!(r.dns_names, ["n1.example"]);
        assert!(parse(b"nonsense").is_err());
    }

    #[test]
    fn kubelet_client_requests_are_checked_as_upstream() {
        let client = usages(&["digital signature", "client auth"]);
        let ok = parse(request("system:node:n1", &["system:nodes"], &[]).as_bytes()).unwrap();
        assert!(check_kubelet_client(&ok, &client).is_ok());
        assert!(
            check_kubelet_client(
                &ok,
                &usages(&["key encipherment", "digital signature", "client auth"])
            )
            .is_ok()
        );
        assert!(check_kubelet_client(&ok, &usages(&["digital signature", "server auth"])).is_err());
        let other_org =
            parse(request("system:node:n1", &["system:masters"], &[]).as_bytes()).unwrap();
        assert!(check_kubelet_client(&other_org, &client).is_err());
        let two_orgs =
            parse(request("system:node:n1", &["system:nodes", "x"], &[]).as_bytes()).unwrap();
        assert!(check_kubelet_client(&two_orgs, &client).is_err());
        let bad_cn = parse(request("admin", &["system:nodes"], &[]).as_bytes()).unwrap();
        assert!(check_kubelet_client(&bad_cn, &client).is_err());
        let with_san =
            parse(request("system:node:n1", &["system:nodes"], &["x"]).as_bytes()).unwrap();
        assert!(check_kubelet_client(&with_san, &client).is_err());
    }

    #[test]
    fn serving_requests_need_a_name_and_server_auth() {
        let serving = usages(&["digital signature", "key encipherment", "server auth"]);
        let ok = parse(request("system:node:n1", &["system:nodes"], &["n1"]).as_bytes()).unwrap();
        assert!(check_kubelet_serving(&ok, &serving).is_ok());
        let no_san = parse(request("system:node:n1", &["system:nodes"], &[]).as_bytes()).unwrap();
        assert!(check_kubelet_serving(&no_san, &serving).is_err());
        assert!(
            check_kubelet_serving(&ok, &usages(&["digital signature", "client auth"])).is_err()
        );
        assert!(check_api_client(&usages(&["client auth"])).is_ok());
        assert!(check_api_client(&usages(&["client auth", "server auth"])).is_err());
    }
}
