//! Malformed requests against a real server: random bodies under every
//! content type, random selectors and patch bodies. Every answer is a
//! `Status` with a 4xx code, and the server keeps serving.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Error};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "text/plain",
];

fn random_body(rng: &mut impl Rng) -> Vec<u8> {
    let len = rng.random_range(0..200);
    match rng.random_range(0..4) {
        0 => (0..len).map(|_| rng.random()).collect(),
        1 => {
            let alphabet = br#"{}[]":,ak8s0 -.$/"#;
            (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect()
        }
        2 => {
            let mut v = b"k8s\0".to_vec();
            v.extend((0..len).map(|_| rng.random::<u8>()));
            v
        }
        _ => br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","labels":{"a":{"b":1}}},"data":[1,2]}"#.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_status_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = skiff_apiserver::start(skiff_apiserver::Config {
        data_dir: dir.path().to_owned(),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let targets = [
        ("POST", "/api/v1/namespaces/default/configmaps"),
        ("PUT", "/api/v1/namespaces/default/configmaps/x"),
        ("PATCH", "/api/v1/namespaces/default/configmaps/x"),
        ("POST", "/apis/apps/v1/namespaces/default/deployments"),
        ("DELETE", "/api/v1/namespaces/default/configmaps/x"),
        ("POST", "/api/v1/namespaces/default/pods/p/binding"),
    ];
    // Something to patch.
    let cm = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"b"}}"#;
    let request = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(cm.to_vec())
        .unwrap();
    let _: Value = client.request(request).await.unwrap();

    for i in 0..300 {
        let (method, path) = targets[i % targets.len()];
        let content_type = CONTENT_TYPES[rng.random_range(0..CONTENT_TYPES.len())];
        let body = random_body(&mut rng);
        let selector: String = (0..rng.random_range(0..20))
            .map(|_| char::from(rng.random_range(0x20u8..0x7f)))
            .collect();
        let query = format!("?labelSelector={}&fieldManager=fuzz", urlencode(&selector));
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{path}{query}"))
            .header("content-type", content_type)
            .body(body.clone())
            .unwrap();
        match client.request::<Value>(request).await {
            // Some random bodies are valid requests (a delete with no body).
            Ok(_) => {}
            Err(Error::Api(status)) => assert!(
                (400..500).contains(&status.code),
                "{method} {path} ({content_type}, {} bytes) answered {}: {}",
                body.len(),
                status.code,
                status.message
            ),
            Err(other) => panic!("{method} {path} ({content_type}): not a Status: {other}"),
        }
        // Lists with random selectors.
        let request = http::Request::get(format!("/api/v1/namespaces/default/configmaps{query}"))
            .body(Vec::new())
            .unwrap();
        match client.request::<Value>(request).await {
            Ok(list) => assert_eq!(list["kind"], "ConfigMapList"),
            Err(Error::Api(status)) => assert_eq!(status.code, 400, "{}", status.message),
            Err(other) => panic!("list with selector {selector:?}: not a Status: {other}"),
        }
    }
    assert!(
        client.apiserver_version().await.is_ok(),
        "the server still serves"
    );
    server.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
