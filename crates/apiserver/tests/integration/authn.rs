//! Authentication end to end, on a real server in-process: static tokens,
//! service-account tokens issued through TokenRequest and verified on every
//! request, bootstrap tokens, anonymous requests — driven by kube-rs over
//! HTTPS.
//!
//! "Authenticated" is shown by `GET /api`, which every authenticated user
//! may read (upstream's system:discovery) and a refused credential gets 401.
//!
//! `cargo test --release -p skiff-apiserver --test authn -- --ignored
//! --nocapture` prints the cost of token authentication beside client
//! certificates: GETs per second with each credential, the client and the
//! server in this process (`SKIFF_BENCH_SECONDS`, default 5, per mode).

use std::time::{Duration, Instant};

use base64::Engine;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use skiff_apiserver::{AuthnConfig, DEFAULT_ISSUER};

/// A fixed RSA key (PKCS#1), for `--service-account-signing-key-file`
/// (rcgen cannot make RSA keys with ring).
const RSA_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEApuPqekMus2k/yqz03w9xUEQqsiDMq8SDmTMrvrdkIeJug9GB
RUljTfBJOSzx5/9A9brQgg4Y/dB+GiEo1HfgwhQAGCtnwdQE/NZN3w1FLcgVsj/7
1PyVriJolF8qlhqFHV893CoirS1Wa1HJgypYyptvoCUPjVHFSQIHm/woO8MuCqy5
kgWeSBGmYyv8RZj1hd4StNna5W1EZzxOe0EEyjTIGvTz4eAQO3jBVAXKjYMILviD
kuRaNHOd/RXp8nexwuXgjDYJDqcz3lCXVwquCl33dr7pzwmYZ5Xx+Wo4oOocXZ1b
5FOR9GFVSY2G8MVD2Y6xZoukHFcalyD9McVl6wIDAQABAoIBADtOOM/Tue/Fkga6
6ZWuziyg3K9KGpFblwxE8+GlF+82oOE0/QQbLS/QGKU5xIkV2wa3qUreKaFgir9M
U08VfohZRSNRoWBusIsMuMVv2MqJFLSwKhSo4aPs1E8Ndnu61tz2MGxhiMsTlmcy
vDJhRQZSsBsvsFQe38Wu8/dJZx69DCug3pZmMGfp0wj6lY63xDaywz+N9a8GBcw6
MPGhSxeFgwMGQ5ISpDiMBFxgj4nxkqMFej/AHQm6HpXK/rKWH/wkMUh1mFnk1vNt
QdW//rBYJTab1UiPORPGFKqa01X66ju/QC1sbedAP3h2EFUhsKPOebwOaV+5g955
XDa7aEECgYEA6w2wGgiJYmlVZnYjnhctPryQMDdPvt17PNdXe5tOwY/PrULm6foQ
LcybKeJUlrw2yT8gerWga4JR7Zf21RjVbYYgVb9o0yAqGgTOh/Z1+1tAS2Ao7VRr
XTPCMvfOJ50YJfpV4g7wjDqZGwGuh9tBLpUrRno8GEeTU43hIKj1iQsCgYEAtcM1
9Owh/TZ2ZOUtZ/YPQicc51ABzVv2gWBMGDot/KYDmOA9t4DgsEMXcfS7gM1cghJI
E4kMnEQm2hye59op1uen/XyUvsfQzFQztDfKTXwt6aisWIY4bKgrBS9G/JJETVoK
U5V4h94C2kyPFaYsr4nvec0DlaggTePUQAksYqECgYEAk19XpFrp2Fv2gXFcz4f0
hDsxpClpxF+VHwZdAVDUxiNmsFkb8mMota5tMouHQaLsLq13rbgmxoFE4NTAm8cg
ObU4nMqP7J9kBkAxRanPOzNxUlEOGA8v6ZXEErSv+sJSG62jH0MCqskqqXYaeW+M
pKo+IcgN2aM2ydJQ7mtA1xUCgYBvMUik2H/Cg7rR5lFss96JvZu09gDkPEoEw4BJ
oe3YDUdOEoAu7iyGJ8UD9Y9vMDJTcBOfv8tzHU4XSEL92zyVN4pRTBFC1MIq/afT
q/2agUklFAa68QE7l3UZ6t4mTORz3Y1LrLjbhTmBiixONiZIDL3vaTe0KfH5NFL4
CaSZgQKBgQDCA4o8y3xODQg0r/Hk68yClgP32ZdOnyntMXbtriFy6ukh94TZ4EkH
+1nCuodRl8SMQiSX+HRIUrAz2QKIlM9FR+47gE3/lmg3zCg/WacXUHCZ6ZCYsw+Y
x2pIPaLfrGZWELY5qD52vgh8dQ0UHa/HQ10inUlH5iV23x3G7zzwzA==
-----END RSA PRIVATE KEY-----
";

/// A server on a free port and its admin (client certificate) client.
struct Server {
    admin: Client,
    running: Option<skiff_apiserver::Running>,
    dir: tempfile::TempDir,
}

impl Server {
    async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    fn running(&self) -> &skiff_apiserver::Running {
        self.running.as_ref().expect("running")
    }

    /// A client that sends `token` as its bearer token (none: anonymous).
    async fn client(&self, token: Option<&str>) -> Client {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.running().ca_pem);
        let user = match token {
            Some(t) => format!("{{token: {t:?}}}"),
            None => "{}".to_owned(),
        };
        let yaml = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: skiff\n  cluster:\n    server: https://{}\n    certificate-authority-data: {ca}\n\
             users:\n- name: u\n  user: {user}\n\
             contexts:\n- name: c\n  context:\n    cluster: skiff\n    user: u\n\
             current-context: c\n",
            self.running().addr
        );
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::from_yaml(&yaml).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        Client::try_from(config).unwrap()
    }

    /// The generated service-account signing key.
    fn sa_key_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pki/sa.key")).unwrap()
    }
}

async fn start(authn: AuthnConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir, authn).await
}

async fn start_in(dir: tempfile::TempDir, authn: AuthnConfig) -> Server {
    let config = skiff_apiserver::Config {
        data_dir: dir.path().to_owned(),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        authn,
        ..Default::default()
    };
    let running = skiff_apiserver::start(config)
        .await
        .expect("the server starts");
    let kubeconfig = Kubeconfig::read_from(&running.admin_kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Server {
        admin: Client::try_from(config).unwrap(),
        running: Some(running),
        dir,
    }
}

fn code_of(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The HTTP code of `GET /api`.
async fn discovery(client: &Client) -> u16 {
    let req = http::Request::get("/api").body(Vec::new()).unwrap();
    match client.request_text(req).await {
        Ok(_) => 200,
        Err(e) => code_of(&e),
    }
}

/// Polls `GET /api` until it answers `want` (the watch cache follows writes
/// within milliseconds); the last code.
async fn discovery_becomes(client: &Client, want: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let code = discovery(client).await;
        if code == want || Instant::now() > deadline {
            return code;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, u16> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(
            "content-type",
            if method == "PATCH" {
                "application/merge-patch+json"
            } else {
                "application/json"
            },
        )
        .body(
            body.map(|b| serde_json::to_vec(&b).unwrap())
                .unwrap_or_default(),
        )
        .unwrap();
    client.request::<Value>(req).await.map_err(|e| code_of(&e))
}

async fn create(client: &Client, path: &str, body: Value) -> Value {
    send(client, "POST", path, Some(body))
        .await
        .unwrap_or_else(|code| panic!("creating at {path}: {code}"))
}

async fn service_account(client: &Client, ns: &str, name: &str) -> Value {
    create(
        client,
        &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    )
    .await
}

async fn delete(client: &Client, path: &str) {
    send(
        client,
        "DELETE",
        &format!("{path}?gracePeriodSeconds=0"),
        None,
    )
    .await
    .unwrap_or_else(|code| panic!("deleting {path}: {code}"));
}

/// `POST .../serviceaccounts/{name}/token` with this spec.
async fn token_request(client: &Client, ns: &str, name: &str, spec: Value) -> Result<Value, u16> {
    send(
        client,
        "POST",
        &format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"),
        Some(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
        ),
    )
    .await
}

async fn issue(client: &Client, ns: &str, name: &str, spec: Value) -> String {
    let answer = token_request(client, ns, name, spec)
        .await
        .unwrap_or_else(|code| panic!("TokenRequest for {ns}/{name}: {code}"));
    answer["status"]["token"].as_str().unwrap().to_owned()
}

/// Who the server takes the client for (SelfSubjectReview, as `kubectl
/// auth whoami` asks).
async fn whoami(client: &Client) -> Value {
    let answer = send(
        client,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
    )
    .await
    .unwrap_or_else(|code| panic!("SelfSubjectReview: {code}"));
    answer["status"]["userInfo"].clone()
}

/// TokenReview of `token` for `audiences`, by the admin.
async fn token_review(server: &Server, token: &str, audiences: &[&str]) -> Value {
    let mut spec = json!({"token": token});
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    let answer = send(
        &server.admin,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        Some(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}),
        ),
    )
    .await
    .unwrap_or_else(|code| panic!("TokenReview: {code}"));
    answer["status"].clone()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT's header and claims, unverified.
fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let mut decode = || {
        let part = it.next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    (decode(), decode())
}

/// Signs claims as ES256 with a PKCS#8 P-256 key: a token the server never
/// issued.
fn forge(key_pem: &str, kid: &str, claims: &Value) -> String {
    let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let rng = SystemRandom::new();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_der(), &rng).unwrap();
    let message = format!(
        "{}.{}",
        b64url(json!({"alg": "ES256", "kid": kid}).to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = pair.sign(&rng, message.as_bytes()).unwrap();
    format!("{message}.{}", b64url(signature.as_ref()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_static_token_authenticates_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.csv");
    std::fs::write(&file, "alice-secret-token,alice,1001,\"dev,ops\"\n").unwrap();
    let server = start(AuthnConfig {
        token_auth_file: Some(file),
        ..AuthnConfig::default()
    })
    .await;

    let alice = server.client(Some("alice-secret-token")).await;
    assert_eq!(discovery(&alice).await, 200);
    let me = whoami(&alice).await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["uid"], "1001");
    assert_eq!(me["groups"], json!(["dev", "ops", "system:authenticated"]));
    let admin = whoami(&server.admin).await;
    assert_eq!(admin["username"], "admin");
    assert_eq!(
        admin["groups"],
        json!(["system:masters", "system:authenticated"])
    );
    assert_eq!(
        discovery(&server.client(Some("alice-secret-tokeN")).await).await,
        401
    );
    // A presented but refused token never falls back to anonymous, even
    // where anonymous requests are welcome.
    let wrong = server.client(Some("nope")).await;
    let req = http::Request::get("/healthz").body(Vec::new()).unwrap();
    assert_eq!(code_of(&wrong.request_text(req).await.unwrap_err()), 401);

    let anonymous = server.client(None).await;
    assert_eq!(discovery(&anonymous).await, 401);
    let req = http::Request::get("/healthz").body(Vec::new()).unwrap();
    assert_eq!(anonymous.request_text(req).await.unwrap(), "ok");
    server.stop().await;
}

#[tokio::test]
async fn a_token_request_issues_a_jwt_with_upstreams_claims() {
    let server = start(AuthnConfig::default()).await;
    let sa = service_account(&server.admin, "default", "robot").await;
    let sa_uid = sa["metadata"]["uid"].as_str().unwrap();

    let before = now();
    let answer = token_request(&server.admin, "default", "robot", json!({}))
        .await
        .unwrap();
    assert_eq!(answer["kind"], "TokenRequest");
    assert_eq!(answer["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(answer["metadata"]["name"], "robot");
    assert_eq!(answer["metadata"]["namespace"], "default");
    assert_eq!(answer["spec"]["audiences"], json!([DEFAULT_ISSUER]));
    assert_eq!(answer["spec"]["expirationSeconds"], 3600);
    let expires: jiff::Timestamp = answer["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((expires.as_second() - before - 3600).abs() <= 2);

    let token = answer["status"]["token"].as_str().unwrap();
    let (header, claims) = parts(token);
    // The key id is upstream's: base64url(SHA-256(DER SubjectPublicKeyInfo)).
    let public = std::fs::read_to_string(server.dir.path().join("pki/sa.pub")).unwrap();
    let spki =
        rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(public.as_bytes()).unwrap();
    let kid = b64url(ring::digest::digest(&ring::digest::SHA256, spki.as_ref()).as_ref());
    assert_eq!(header, json!({"alg": "ES256", "kid": kid}));
    assert_eq!(claims["iss"], DEFAULT_ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:default:robot");
    assert_eq!(claims["aud"], json!([DEFAULT_ISSUER]));
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - before).abs() <= 2);
    assert_eq!(claims["nbf"], iat);
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 3600);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 36);
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": "default", "serviceaccount": {"name": "robot", "uid": sa_uid}})
    );

    let robot = server.client(Some(token)).await;
    assert_eq!(discovery(&robot).await, 200);
    let me = whoami(&robot).await;
    assert_eq!(me["username"], "system:serviceaccount:default:robot");
    assert_eq!(me["uid"], sa_uid);
    assert_eq!(
        me["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    assert_eq!(
        me["extra"],
        json!({"authentication.kubernetes.io/credential-id": [format!("JTI={}", claims["jti"].as_str().unwrap())]})
    );

    // Audiences and lifetimes as asked.
    let answer = token_request(
        &server.admin,
        "default",
        "robot",
        json!({"audiences": ["vault", DEFAULT_ISSUER], "expirationSeconds": 7200}),
    )
    .await
    .unwrap();
    let (_, claims) = parts(answer["status"]["token"].as_str().unwrap());
    assert_eq!(claims["aud"], json!(["vault", DEFAULT_ISSUER]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        7200
    );
    server.stop().await;
}

#[tokio::test]
async fn token_requests_are_checked_as_upstream_checks_them() {
    let server = start(AuthnConfig::default()).await;
    let admin = &server.admin;
    service_account(admin, "default", "robot").await;
    service_account(admin, "default", "someone-else").await;
    assert_eq!(
        token_request(admin, "default", "ghost", json!({}))
            .await
            .unwrap_err(),
        404
    );
    assert_eq!(
        token_request(admin, "default", "robot", json!({"expirationSeconds": 599}))
            .await
            .unwrap_err(),
        422
    );
    assert_eq!(
        token_request(
            admin,
            "default",
            "robot",
            json!({"expirationSeconds": 1i64 << 33})
        )
        .await
        .unwrap_err(),
        422
    );
    let wrong_name = send(
        admin,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {"name": "other"}, "spec": {}})),
    )
    .await;
    assert_eq!(wrong_name.unwrap_err(), 422);

    create(
        admin,
        "/api/v1/namespaces/default/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "elsewhere"},
               "spec": {"serviceAccountName": "someone-else", "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let pod_ref = |name: &str, uid: &str| json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": name, "uid": uid}});
    assert_eq!(
        token_request(admin, "default", "robot", pod_ref("elsewhere", ""))
            .await
            .unwrap_err(),
        400,
        "a pod running as another service account"
    );
    assert_eq!(
        token_request(admin, "default", "robot", pod_ref("missing", ""))
            .await
            .unwrap_err(),
        404
    );
    create(
        admin,
        "/api/v1/namespaces/default/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mine"},
               "spec": {"serviceAccountName": "robot", "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    assert_eq!(
        token_request(admin, "default", "robot", pod_ref("mine", "not-its-uid"))
            .await
            .unwrap_err(),
        409
    );
    assert_eq!(
        token_request(
            admin,
            "default",
            "robot",
            json!({"boundObjectRef": {"kind": "Deployment", "apiVersion": "apps/v1", "name": "x"}})
        )
        .await
        .unwrap_err(),
        400
    );
    server.stop().await;
}

#[tokio::test]
async fn a_token_stops_working_when_its_service_account_is_recreated() {
    let server = start(AuthnConfig::default()).await;
    service_account(&server.admin, "default", "ephemeral").await;
    let token = issue(&server.admin, "default", "ephemeral", json!({})).await;
    let client = server.client(Some(&token)).await;
    assert_eq!(discovery(&client).await, 200);

    delete(
        &server.admin,
        "/api/v1/namespaces/default/serviceaccounts/ephemeral",
    )
    .await;
    assert_eq!(discovery_becomes(&client, 401).await, 401);
    // The same name again is another account (another uid).
    service_account(&server.admin, "default", "ephemeral").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(discovery(&client).await, 401);
    let fresh = issue(&server.admin, "default", "ephemeral", json!({})).await;
    assert_eq!(discovery(&server.client(Some(&fresh)).await).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_bound_token_stops_working_when_its_pod_or_secret_is_deleted() {
    let server = start(AuthnConfig::default()).await;
    let admin = &server.admin;
    service_account(admin, "default", "runner").await;
    let pod = create(
        admin,
        "/api/v1/namespaces/default/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker"},
               "spec": {"serviceAccountName": "runner", "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let pod_uid = pod["metadata"]["uid"].as_str().unwrap();
    let token = issue(
        admin,
        "default",
        "runner",
        json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "worker", "uid": pod_uid}}),
    )
    .await;
    let (_, claims) = parts(&token);
    assert_eq!(
        claims["kubernetes.io"]["pod"],
        json!({"name": "worker", "uid": pod_uid})
    );
    let client = server.client(Some(&token)).await;
    assert_eq!(discovery(&client).await, 200);
    let extra = &whoami(&client).await["extra"];
    assert_eq!(
        extra["authentication.kubernetes.io/pod-name"],
        json!(["worker"])
    );
    assert_eq!(
        extra["authentication.kubernetes.io/pod-uid"],
        json!([pod_uid])
    );
    delete(admin, "/api/v1/namespaces/default/pods/worker").await;
    assert_eq!(discovery_becomes(&client, 401).await, 401);

    let secret = create(
        admin,
        "/api/v1/namespaces/default/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "handle"}, "stringData": {"k": "v"}}),
    )
    .await;
    let token = issue(
        admin,
        "default",
        "runner",
        json!({"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "handle"}}),
    )
    .await;
    let (_, claims) = parts(&token);
    assert_eq!(
        claims["kubernetes.io"]["secret"],
        json!({"name": "handle", "uid": secret["metadata"]["uid"]})
    );
    let client = server.client(Some(&token)).await;
    assert_eq!(discovery(&client).await, 200);
    delete(admin, "/api/v1/namespaces/default/secrets/handle").await;
    assert_eq!(discovery_becomes(&client, 401).await, 401);
    server.stop().await;
}

#[tokio::test]
async fn tampered_expired_foreign_and_misdirected_tokens_are_refused() {
    let server = start(AuthnConfig::default()).await;
    let admin = &server.admin;
    let sa = service_account(admin, "default", "robot").await;
    let token = issue(admin, "default", "robot", json!({})).await;
    let (header, claims) = parts(&token);
    let kid = header["kid"].as_str().unwrap();
    assert_eq!(discovery(&server.client(Some(&token)).await).await, 200);

    // Another subject under the same signature.
    let mut pieces: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut other = claims.clone();
    other["sub"] = json!("system:serviceaccount:kube-system:admin");
    other["kubernetes.io"]["namespace"] = json!("kube-system");
    pieces[1] = b64url(other.to_string().as_bytes());
    assert_eq!(
        discovery(&server.client(Some(&pieces.join("."))).await).await,
        401
    );
    // A damaged signature.
    let mut damaged = token.clone();
    let last = if damaged.ends_with('A') { "B" } else { "A" };
    damaged.replace_range(damaged.len() - 1.., last);
    assert_eq!(discovery(&server.client(Some(&damaged)).await).await, 401);

    // Signed with the server's own key: valid claims work, expired ones
    // (beyond the minute of leeway) and not-yet-valid ones do not.
    let key = server.sa_key_pem();
    let claims_at = |iat: i64, exp: i64| {
        json!({
            "aud": [DEFAULT_ISSUER], "iss": DEFAULT_ISSUER, "iat": iat, "nbf": iat, "exp": exp,
            "sub": "system:serviceaccount:default:robot",
            "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "robot", "uid": sa["metadata"]["uid"]}},
        })
    };
    let t = now();
    let valid = forge(&key, kid, &claims_at(t, t + 600));
    assert_eq!(discovery(&server.client(Some(&valid)).await).await, 200);
    let expired = forge(&key, kid, &claims_at(t - 4000, t - 120));
    assert_eq!(discovery(&server.client(Some(&expired)).await).await, 401);
    let future = forge(&key, kid, &claims_at(t + 600, t + 4200));
    assert_eq!(discovery(&server.client(Some(&future)).await).await, 401);
    // Another key, another issuer.
    let stranger = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let foreign = forge(&stranger, kid, &claims_at(t, t + 600));
    assert_eq!(discovery(&server.client(Some(&foreign)).await).await, 401);
    let mut elsewhere = claims_at(t, t + 600);
    elsewhere["iss"] = json!("https://elsewhere.example");
    let elsewhere = forge(&key, kid, &elsewhere);
    assert_eq!(discovery(&server.client(Some(&elsewhere)).await).await, 401);

    // A token for another audience is not a token for this API.
    let vault = issue(admin, "default", "robot", json!({"audiences": ["vault"]})).await;
    assert_eq!(discovery(&server.client(Some(&vault)).await).await, 401);
    server.stop().await;
}

#[tokio::test]
async fn a_bootstrap_token_authenticates_until_its_secret_expires_or_is_deleted() {
    let server = start(AuthnConfig {
        enable_bootstrap_token_auth: true,
        ..AuthnConfig::default()
    })
    .await;
    let admin = &server.admin;
    let secret = |id: &str, extra: Value| {
        let mut data = json!({
            "token-id": id, "token-secret": "0123456789abcdef",
            "usage-bootstrap-authentication": "true",
            "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
        });
        data.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
               "metadata": {"name": format!("bootstrap-token-{id}")}, "stringData": data})
    };
    let secrets = "/api/v1/namespaces/kube-system/secrets";
    let in_an_hour = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    create(
        admin,
        secrets,
        secret("abcdef", json!({"expiration": in_an_hour.to_string()})),
    )
    .await;
    let client = server.client(Some("abcdef.0123456789abcdef")).await;
    assert_eq!(discovery_becomes(&client, 200).await, 200);
    let me = whoami(&client).await;
    assert_eq!(me["username"], "system:bootstrap:abcdef");
    assert_eq!(
        me["groups"],
        json!([
            "system:bootstrappers",
            "system:bootstrappers:kubeadm:default-node-token",
            "system:authenticated"
        ])
    );
    assert_eq!(
        discovery(&server.client(Some("abcdef.0123456789abcdee")).await).await,
        401
    );

    // Expired: the Secret says so.
    let an_hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    send(
        admin,
        "PATCH",
        &format!("{secrets}/bootstrap-token-abcdef"),
        Some(json!({"stringData": {"expiration": an_hour_ago.to_string()}})),
    )
    .await
    .unwrap_or_else(|code| panic!("patching the Secret: {code}"));
    assert_eq!(discovery_becomes(&client, 401).await, 401);

    // Deleted.
    create(admin, secrets, secret("ghijkl", json!({}))).await;
    let client = server.client(Some("ghijkl.0123456789abcdef")).await;
    assert_eq!(discovery_becomes(&client, 200).await, 200);
    delete(admin, &format!("{secrets}/bootstrap-token-ghijkl")).await;
    assert_eq!(discovery_becomes(&client, 401).await, 401);

    // Not for authentication.
    create(
        admin,
        secrets,
        secret("mnopqr", json!({"usage-bootstrap-authentication": "false"})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        discovery(&server.client(Some("mnopqr.0123456789abcdef")).await).await,
        401
    );
    server.stop().await;

    // Without --enable-bootstrap-token-auth the same Secret is no credential.
    let server = start(AuthnConfig::default()).await;
    create(&server.admin, secrets, secret("abcdef", json!({}))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        discovery(&server.client(Some("abcdef.0123456789abcdef")).await).await,
        401
    );
    server.stop().await;
}

#[tokio::test]
async fn a_token_review_names_the_user_and_the_audiences_the_token_is_for() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.csv");
    std::fs::write(&file, "alice-secret-token,alice,1001,dev\n").unwrap();
    let server = start(AuthnConfig {
        token_auth_file: Some(file),
        ..AuthnConfig::default()
    })
    .await;
    service_account(&server.admin, "default", "robot").await;
    let api_token = issue(&server.admin, "default", "robot", json!({})).await;
    let vault_token = issue(
        &server.admin,
        "default",
        "robot",
        json!({"audiences": ["vault"]}),
    )
    .await;

    let review = token_review(&server, &api_token, &[]).await;
    assert_eq!(review["authenticated"], true);
    assert_eq!(
        review["user"]["username"],
        "system:serviceaccount:default:robot"
    );
    assert_eq!(review["audiences"], json!([DEFAULT_ISSUER]));
    // A token is good for its own audiences only.
    let review = token_review(&server, &vault_token, &["vault", "other"]).await;
    assert_eq!(review["authenticated"], true);
    assert_eq!(review["audiences"], json!(["vault"]));
    assert_eq!(
        token_review(&server, &api_token, &["vault"]).await["authenticated"],
        false
    );
    assert_eq!(
        token_review(&server, &vault_token, &[]).await["authenticated"],
        false
    );
    // Static tokens name no audience: good for the API's own only.
    let review = token_review(&server, "alice-secret-token", &[]).await;
    assert_eq!(review["authenticated"], true);
    assert_eq!(review["user"]["username"], "alice");
    assert_eq!(
        token_review(&server, "alice-secret-token", &["vault"]).await["authenticated"],
        false
    );
    assert_eq!(
        token_review(&server, "garbage", &[]).await["authenticated"],
        false
    );
    server.stop().await;
}

#[tokio::test]
async fn without_anonymous_auth_requests_without_credentials_are_refused() {
    let server = start(AuthnConfig {
        anonymous_auth: false,
        ..AuthnConfig::default()
    })
    .await;
    let anonymous = server.client(None).await;
    let req = http::Request::get("/healthz").body(Vec::new()).unwrap();
    assert_eq!(
        code_of(&anonymous.request_text(req).await.unwrap_err()),
        401
    );
    assert_eq!(discovery(&server.admin).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn configured_keys_sign_and_verify_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let signing = dir.path().join("sa-rsa.key");
    std::fs::write(&signing, RSA_KEY).unwrap();
    // A second key trusted for verification only (say, an old one).
    let old = rcgen::KeyPair::generate().unwrap();
    let old_pub = dir.path().join("old.pub");
    std::fs::write(&old_pub, old.public_key_pem()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = start_in(
        data,
        AuthnConfig {
            service_account_signing_key_file: Some(signing),
            service_account_key_files: vec![old_pub],
            service_account_issuers: vec!["https://issuer.example".into()],
            api_audiences: vec!["skiff-api".into()],
            ..AuthnConfig::default()
        },
    )
    .await;
    let sa = service_account(&server.admin, "default", "robot").await;
    let token = issue(&server.admin, "default", "robot", json!({})).await;
    let (header, claims) = parts(&token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], "https://issuer.example");
    assert_eq!(claims["aud"], json!(["skiff-api"]));
    assert_eq!(discovery(&server.client(Some(&token)).await).await, 200);

    let t = now();
    let by_old = forge(
        &old.serialize_pem(),
        "old",
        &json!({
            "aud": ["skiff-api"], "iss": "https://issuer.example", "iat": t, "nbf": t, "exp": t + 600,
            "sub": "system:serviceaccount:default:robot",
            "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "robot", "uid": sa["metadata"]["uid"]}},
        }),
    );
    assert_eq!(discovery(&server.client(Some(&by_old)).await).await, 200);
    server.stop().await;
}

/// CPU time this process (client and server) has used, from
/// `/proc/self/stat` (utime + stime, in clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesized command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// One measurement: requests per second, and CPU time per request.
#[derive(Clone, Copy)]
struct Rate {
    per_second: f64,
    cpu_per_request: Duration,
}

/// `GET path` from 16 tasks for `seconds`, each request with `header` set to
/// one of `values` in turn (none when empty: the client certificate alone).
async fn rate(client: &Client, path: &str, header: &str, values: &[String], seconds: f64) -> Rate {
    const CONCURRENCY: usize = 16;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let cpu = cpu_time();
    let mut tasks = Vec::new();
    for task in 0..CONCURRENCY {
        let client = client.clone();
        let path = path.to_owned();
        let header = header.to_owned();
        let values = values.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < deadline {
                let mut req = http::Request::get(&path);
                if !values.is_empty() {
                    req = req.header(&header, &values[(task + n * CONCURRENCY) % values.len()]);
                }
                client
                    .request_text(req.body(Vec::new()).unwrap())
                    .await
                    .expect("the request succeeds");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    Rate {
        per_second: total as f64 / start.elapsed().as_secs_f64(),
        cpu_per_request: (cpu_time() - cpu) / total.max(1) as u32,
    }
}

/// Tokens issued for the phase where every request brings a new one.
const FRESH_TOKENS: usize = 10_000;
/// Interleaved rounds per mode.
const ROUNDS: usize = 5;

#[tokio::test]
#[ignore = "a benchmark: run with --release -- --ignored --nocapture"]
async fn token_authentication_costs_little_beside_client_certificates() {
    let seconds: f64 = std::env::var("SKIFF_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.csv");
    // A static token about as long as a service-account JWT shows what
    // sending the header costs, apart from checking the token.
    let long_static = "s".repeat(680);
    std::fs::write(
        &file,
        format!("static-bench-token,bench,1,bench\n{long_static},bench,1,bench\n"),
    )
    .unwrap();
    let server = start(AuthnConfig {
        token_auth_file: Some(file),
        enable_bootstrap_token_auth: true,
        ..AuthnConfig::default()
    })
    .await;
    let admin = &server.admin;
    service_account(admin, "default", "bench").await;
    let sa_token = issue(admin, "default", "bench", json!({})).await;
    // Everyone authenticated may read, so every credential gets a 200.
    create(
        admin,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "bench-view"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]}),
    )
    .await;
    create(
        admin,
        "/api/v1/namespaces/kube-system/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
               "metadata": {"name": "bootstrap-token-abcdef"},
               "stringData": {"token-id": "abcdef", "token-secret": "0123456789abcdef", "usage-bootstrap-authentication": "true"}}),
    )
    .await;
    let anonymous = server.client(None).await;
    assert_eq!(
        discovery_becomes(&server.client(Some("abcdef.0123456789abcdef")).await, 200).await,
        200
    );

    let bearer = |t: &str| vec![format!("Bearer {t}")];
    let padding = vec!["p".repeat(sa_token.len() + "Bearer ".len())];
    for path in [
        "/version",
        "/api/v1/namespaces/default/serviceaccounts/bench",
    ] {
        // Each mode runs in short rounds interleaved with the others, and
        // reports its median: drift in the machine's load hits all alike.
        let modes: Vec<(&str, &Client, &str, Vec<String>)> = vec![
            ("client certificate", admin, "", Vec::new()),
            (
                "client certificate + a JWT-sized header",
                admin,
                "x-padding",
                padding.clone(),
            ),
            (
                "static token",
                &anonymous,
                "authorization",
                bearer("static-bench-token"),
            ),
            (
                "static token, JWT-sized",
                &anonymous,
                "authorization",
                bearer(&long_static),
            ),
            (
                "service-account token",
                &anonymous,
                "authorization",
                bearer(&sa_token),
            ),
            (
                "bootstrap token",
                &anonymous,
                "authorization",
                bearer("abcdef.0123456789abcdef"),
            ),
        ];
        let mut rates = vec![Vec::new(); modes.len()];
        for _ in 0..ROUNDS {
            for (i, (_, client, header, values)) in modes.iter().enumerate() {
                rates[i].push(rate(client, path, header, values, seconds / ROUNDS as f64).await);
            }
        }
        let median = |v: &[Rate], key: fn(&Rate) -> f64| {
            let mut v: Vec<f64> = v.iter().map(key).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let throughput: Vec<f64> = rates.iter().map(|r| median(r, |r| r.per_second)).collect();
        let cpu: Vec<f64> = rates
            .iter()
            .map(|r| median(r, |r| r.cpu_per_request.as_secs_f64() * 1e6))
            .collect();
        println!(
            "GET {path}, 16 concurrent, median of {ROUNDS} interleaved rounds \
             (CPU: client and server, per request):"
        );
        for (i, (what, ..)) in modes.iter().enumerate() {
            println!(
                "  {what:<40} {:>7.0} req/s {:+6.1}%   CPU {:>5.1} µs {:+5.1} µs vs certificate, {:+5.1} µs vs padded",
                throughput[i],
                (throughput[i] / throughput[0] - 1.0) * 100.0,
                cpu[i],
                cpu[i] - cpu[0],
                cpu[i] - cpu[1],
            );
        }
        // Every request a new token: the signature is checked each time.
        let mut fresh = Vec::new();
        for _ in 0..FRESH_TOKENS {
            fresh.push(format!(
                "Bearer {}",
                issue(admin, "default", "bench", json!({})).await
            ));
        }
        let r = rate(&anonymous, path, "authorization", &fresh, 0.5).await;
        assert!(
            r.per_second * 0.5 < FRESH_TOKENS as f64,
            "every token is new"
        );
        let r_cpu = r.cpu_per_request.as_secs_f64() * 1e6;
        println!(
            "  {:<40} {:>7.0} req/s {:+6.1}%   CPU {r_cpu:>5.1} µs {:+5.1} µs vs certificate (one round)",
            "service-account token, each one new",
            r.per_second,
            (r.per_second / throughput[0] - 1.0) * 100.0,
            r_cpu - cpu[0],
        );
    }
    server.stop().await;
}
