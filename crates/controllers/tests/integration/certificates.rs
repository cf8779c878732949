//! The CSR approving and signing controllers against a real API server with
//! bootstrap-token authentication on: a joining kubelet's request, made
//! with a bootstrap token, is approved and signed by the cluster CA.

use std::time::Duration;

use crate::common::{Manager, SOON, eventually};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::json;

fn request_pem(cn: &str, org: &str) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, org);
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// A CSR created by `client` (the API server records it as the requester).
async fn create_csr(client: &Client, name: &str, signer: &str, pem: &str, usages: &[&str]) {
    use base64::Engine;
    let spec = json!({"signerName": signer, "usages": usages,
                      "request": base64::engine::general_purpose::STANDARD.encode(pem)});
    let csr: CertificateSigningRequest =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    Api::<CertificateSigningRequest>::all(client.clone())
        .create(&PostParams::default(), &csr)
        .await
        .unwrap();
}

fn condition(csr: &CertificateSigningRequest, type_: &str) -> Option<String> {
    csr.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.clone().unwrap_or_default())
}

/// The joining kubelet's own request, made with its bootstrap token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_token_csr_is_approved_and_signed_by_the_cluster_ca() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("apiserver");
    let mut config = skiff_apiserver::Config {
        data_dir: data_dir.clone(),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    };
    config.authn.enable_bootstrap_token_auth = true;
    let server = skiff_apiserver::start(config)
        .await
        .expect("the API server starts");
    let kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
    let admin = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(admin.clone()).unwrap();

    // A bootstrap token, as `kubeadm token create` writes it.
    let token: Secret = serde_json::from_value(json!({
        "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {"token-id": "abcdef", "token-secret": "0123456789abcdef",
                       "usage-bootstrap-authentication": "true"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &token)
        .await
        .unwrap();
    let mut bootstrap = admin.clone();
    bootstrap.auth_info = AuthInfo {
        token: Some("abcdef.0123456789abcdef".to_string().into()),
        ..AuthInfo::default()
    };
    let bootstrap = Client::try_from(bootstrap).unwrap();

    let mut cm = skiff_controllers::Config {
        controllers: vec!["csrapproving".into(), "csrsigning".into()],
        leader_election: None,
        serving: None,
        root_ca_file: None,
        ..skiff_controllers::Config::new(admin.clone())
    };
    cm.infra.cluster_signing_cert_file = Some(data_dir.join("pki/ca.crt"));
    cm.infra.cluster_signing_key_file = Some(data_dir.join("pki/ca.key"));
    cm.infra.cluster_signing_duration = Duration::from_secs(3600);
    let manager = Manager::start(cm);

    let client_usages = ["digital signature", "client auth"];
    let signer = "kubernetes.io/kube-apiserver-client-kubelet";
    create_csr(
        &bootstrap,
        "node-csr-good",
        signer,
        &request_pem("system:node:node-1", "system:nodes"),
        &client_usages,
    )
    .await;
    create_csr(
        &bootstrap,
        "node-csr-masters",
        signer,
        &request_pem("system:node:node-1", "system:masters"),
        &client_usages,
    )
    .await;

    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let good = csrs.get("node-csr-good").await.unwrap();
    assert_eq!(
        good.spec.username.as_deref(),
        Some("system:bootstrap:abcdef"),
        "the API server records who asked"
    );

    let signed = eventually("node-csr-good approved and signed", SOON, || async {
        let csr = csrs.get("node-csr-good").await.unwrap();
        csr.status.as_ref()?.certificate.as_ref()?;
        Some(csr)
    })
    .await;
    assert_eq!(
        condition(&signed, "Approved").as_deref(),
        Some("AutoApproved")
    );
    let cert_pem = String::from_utf8(signed.status.unwrap().certificate.unwrap().0).unwrap();
    let cert_der = pem_der(&cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    let ca_der = pem_der(&server.ca_pem);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    cert.verify_signature(Some(ca.public_key()))
        .expect("the certificate verifies against the cluster CA");
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(
        lifetime,
        3600 + 300,
        "--cluster-signing-duration plus the 5 minute backdate"
    );
    let orgs: Vec<&str> = cert
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(orgs, ["system:nodes"]);

    // Not a kubelet client request: left for a human to decide.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let masters = csrs.get("node-csr-masters").await.unwrap();
    assert_eq!(condition(&masters, "Approved"), None);
    assert!(masters.status.and_then(|s| s.certificate).is_none());

    // An API client certificate an administrator approves is signed too.
    create_csr(
        &client,
        "alice",
        "kubernetes.io/kube-apiserver-client",
        &request_pem("alice", "dev"),
        &["client auth"],
    )
    .await;
    let mut alice = csrs.get("alice").await.unwrap();
    alice.status.get_or_insert_default().conditions = Some(vec![serde_json::from_value(json!({
        "type": "Approved", "status": "True", "reason": "KubectlApprove", "message": "by the test"}))
    .unwrap()]);
    approve(&csrs, &alice).await;
    eventually("alice signed", SOON, || async {
        let csr = csrs.get("alice").await.unwrap();
        csr.status.as_ref()?.certificate.as_ref()?;
        Some(())
    })
    .await;

    // A serving request without a name fails its signer's checks.
    create_csr(
        &client,
        "serving-bad",
        "kubernetes.io/kubelet-serving",
        &request_pem("system:node:node-1", "system:nodes"),
        &["digital signature", "server auth"],
    )
    .await;
    let mut bad = csrs.get("serving-bad").await.unwrap();
    bad.status.get_or_insert_default().conditions = Some(vec![
        serde_json::from_value(json!({
        "type": "Approved", "status": "True", "reason": "KubectlApprove"}))
        .unwrap(),
    ]);
    approve(&csrs, &bad).await;
    let reason = eventually("serving-bad failed", SOON, || async {
        condition(&csrs.get("serving-bad").await.unwrap(), "Failed")
    })
    .await;
    assert_eq!(reason, "SignerValidationFailure");

    manager.stop().await;
    server.stop().await;
}

/// As `kubectl certificate approve`: through the approval subresource, or
/// status where the API server lacks it (405).
async fn approve(csrs: &Api<CertificateSigningRequest>, csr: &CertificateSigningRequest) {
    let name = csr.metadata.name.clone().unwrap();
    match csrs
        .replace_subresource("approval", &name, &PostParams::default(), csr)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 405 => {
            csrs.replace_status(&name, &PostParams::default(), csr)
                .await
                .unwrap();
        }
        Err(e) => panic!("approving {name}: {e}"),
    }
}
