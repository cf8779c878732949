//! ValidatingAdmissionPolicy and webhook matchConditions on a real server
//! in-process, driven by kube-rs: CEL validations with their actions,
//! messages, variables, match conditions and selectors, failure policies,
//! expressions checked when a policy is created, and webhooks skipped by
//! their matchConditions.

use std::time::Duration;

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Error};
use serde_json::{Value, json};

const POLICIES: &str = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies";
const BINDINGS: &str = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings";

/// A server on a free port and its admin client.
struct Cluster {
    client: Client,
    server: Option<skiff_apiserver::Running>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let config = skiff_apiserver::Config {
            data_dir: dir.path().to_owned(),
            secure_port: 0,
            bind_address: "127.0.0.1".parse().unwrap(),
            ..Default::default()
        };
        let server = skiff_apiserver::start(config)
            .await
            .expect("the server starts");
        let kubeconfig = Kubeconfig::read_from(&server.admin_kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        Cluster {
            client: Client::try_from(config).unwrap(),
            server: Some(server),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// POSTs `obj` to `path` as the admin; the created object.
    async fn post(&self, path: &str, obj: Value) -> Result<Value, Error> {
        let request = http::Request::post(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&obj).unwrap())
            .unwrap();
        self.client.request(request).await
    }

    /// POSTs `obj` to `path`: the status code and the `Warning` headers.
    async fn post_raw(&self, path: &str, obj: Value) -> (u16, Vec<String>) {
        let request = http::Request::post(path)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(serde_json::to_vec(&obj).unwrap()))
            .unwrap();
        let response = self.client.send(request).await.unwrap();
        let warnings = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        (response.status().as_u16(), warnings)
    }

    async fn delete(&self, path: &str) -> Result<Value, Error> {
        let request = http::Request::delete(path).body(Vec::new()).unwrap();
        self.client.request(request).await
    }

    /// Creates a namespace with these labels.
    async fn namespace(&self, name: &str, labels: Value) {
        self.post(
            "/api/v1/namespaces",
            json!({"metadata": {"name": name, "labels": labels}}),
        )
        .await
        .unwrap();
    }

    /// Creates a policy and a binding to it.
    async fn policy(&self, policy: Value, binding: Value) {
        self.post(POLICIES, policy).await.unwrap();
        self.post(BINDINGS, binding).await.unwrap();
    }

    /// Creates `make(i)` at `path` for i = 0, 1, ... until one is refused
    /// (the policy just created reaches the watch cache in a moment): the
    /// refusal.
    async fn until_refused(&self, path: &str, make: impl Fn(usize) -> Value) -> Error {
        for i in 0..150 {
            match self.post(path, make(i)).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return e,
            }
        }
        panic!("nothing created at {path} was refused");
    }
}

fn status(e: &Error) -> (u16, String, String) {
    match e {
        Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
        },
    })
}

/// A policy on creating and updating deployments.
fn policy(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["matchConstraints"] = json!({"resourceRules": [{
        "apiGroups": ["apps"], "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"], "resources": ["deployments"],
    }]});
    json!({"metadata": {"name": name}, "spec": spec})
}

fn binding(name: &str, policy: &str, actions: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": {"policyName": policy, "validationActions": actions}})
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn a_policy_denies_six_replicas_with_upstreams_message_and_allows_three() {
    let c = Cluster::start().await;
    c.policy(
        policy(
            "max-replicas",
            json!({"validations": [{"expression": "object.spec.replicas <= 5"}]}),
        ),
        binding("max-replicas-binding", "max-replicas", json!(["Deny"])),
    )
    .await;
    let e = c
        .until_refused(DEPLOYMENTS, |i| deployment(&format!("big-{i}"), 6))
        .await;
    let (code, reason, message) = status(&e);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.starts_with("deployments.apps \"big-")
            && message.ends_with(
                "\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: failed expression: object.spec.replicas <= 5"
            ),
        "{message}"
    );
    if let Error::Api(s) = &e {
        let details = s.details.as_ref().expect("details");
        assert_eq!(details.kind, "deployments");
        assert_eq!(
            details.causes[0].message,
            "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: failed expression: object.spec.replicas <= 5"
        );
    }
    c.post(DEPLOYMENTS, deployment("small", 3)).await.unwrap();
    // Updates are validated too, with oldObject set.
    let request = http::Request::patch(format!("{DEPLOYMENTS}/small"))
        .header("content-type", "application/merge-patch+json")
        .body(serde_json::to_vec(&json!({"spec": {"replicas": 9}})).unwrap())
        .unwrap();
    let e = c.client.request::<Value>(request).await.unwrap_err();
    assert_eq!(status(&e).0, 422);
    // Other kinds are not matched.
    c.post(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "cm"}}),
    )
    .await
    .unwrap();
    c.stop().await;
}

#[tokio::test]
async fn warn_and_audit_actions_admit_with_a_warning_header() {
    let c = Cluster::start().await;
    c.policy(
        policy(
            "max-replicas",
            json!({"validations": [{"expression": "object.spec.replicas <= 5", "message": "at most five replicas"}]}),
        ),
        binding("warn", "max-replicas", json!(["Warn", "Audit"])),
    )
    .await;
    let mut warned = None;
    for i in 0..150 {
        let (code, warnings) = c
            .post_raw(DEPLOYMENTS, deployment(&format!("big-{i}"), 6))
            .await;
        assert_eq!(code, 201, "Warn admits the write");
        if !warnings.is_empty() {
            warned = Some(warnings);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let warnings = warned.expect("the policy warns");
    assert_eq!(
        warnings,
        [
            "299 - \"Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'warn': at most five replicas\""
        ]
    );
    let (code, warnings) = c.post_raw(DEPLOYMENTS, deployment("small", 2)).await;
    assert_eq!((code, warnings.len()), (201, 0));
    c.stop().await;
}

#[tokio::test]
async fn match_conditions_variables_and_message_expressions_shape_the_verdict() {
    let c = Cluster::start().await;
    c.policy(
        policy(
            "limits",
            json!({
                "matchConditions": [
                    {"name": "not-exempt", "expression": "!object.metadata.name.startsWith('exempt-')"},
                ],
                "variables": [
                    {"name": "replicas", "expression": "object.spec.replicas"},
                    {"name": "limit", "expression": "has(object.metadata.labels) && 'tier' in object.metadata.labels && object.metadata.labels.tier == 'big' ? 10 : 5"},
                    {"name": "images", "expression": "object.spec.template.spec.containers.map(c, c.image)"},
                ],
                "validations": [
                    {
                        "expression": "variables.replicas <= variables.limit",
                        "messageExpression": "'replicas ' + string(variables.replicas) + ' exceed ' + string(variables.limit) + ' for ' + request.userInfo.username",
                        "reason": "Forbidden",
                    },
                    {
                        "expression": "variables.images.all(i, !i.endsWith(':latest'))",
                        "message": "no latest images",
                    },
                ],
            }),
        ),
        binding("limits", "limits", json!(["Deny"])),
    )
    .await;
    let e = c
        .until_refused(DEPLOYMENTS, |i| deployment(&format!("d-{i}"), 7))
        .await;
    let (code, reason, message) = status(&e);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert!(
        message.ends_with(
            "ValidatingAdmissionPolicy 'limits' with binding 'limits' denied request: replicas 7 exceed 5 for admin"
        ),
        "{message}"
    );
    // The matchCondition leaves these out.
    c.post(DEPLOYMENTS, deployment("exempt-web", 7))
        .await
        .unwrap();
    // A variable raises the limit.
    let mut big = deployment("big-tier", 7);
    big["metadata"]["labels"]["tier"] = json!("big");
    c.post(DEPLOYMENTS, big).await.unwrap();
    // The second validation has a static message.
    let mut latest = deployment("latest", 1);
    latest["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:latest");
    let e = c.post(DEPLOYMENTS, latest).await.unwrap_err();
    let (code, reason, message) = status(&e);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.ends_with("denied request: no latest images"),
        "{message}"
    );
    c.stop().await;
}

#[tokio::test]
async fn parameters_come_from_the_object_the_binding_refers_to() {
    let c = Cluster::start().await;
    let mut p = policy(
        "param-limit",
        json!({
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "validations": [{
                "expression": "object.spec.replicas <= int(params.data.max)",
                "messageExpression": "'at most ' + params.data.max + ' replicas'",
            }],
        }),
    );
    p["spec"]["failurePolicy"] = json!("Fail");
    let mut b = binding("param-limit", "param-limit", json!(["Deny"]));
    b["spec"]["paramRef"] = json!({"name": "limits", "parameterNotFoundAction": "Deny"});
    c.policy(p, b).await;
    // Without its parameters, a binding that says Deny refuses.
    let e = c
        .until_refused(DEPLOYMENTS, |i| deployment(&format!("early-{i}"), 1))
        .await;
    let (code, _, message) = status(&e);
    assert_eq!(code, 422);
    assert!(
        message.ends_with(
            "ValidatingAdmissionPolicy 'param-limit' with binding 'param-limit' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
        ),
        "{message}"
    );
    c.post(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "limits"}, "data": {"max": "4"}}),
    )
    .await
    .unwrap();
    // Once the parameters are cached, they decide.
    let mut verdict = None;
    for i in 0..150 {
        match c.post(DEPLOYMENTS, deployment(&format!("d-{i}"), 5)).await {
            Err(e) if status(&e).2.contains("no params found") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => {
                verdict = Some(other);
                break;
            }
        }
    }
    let e = verdict.expect("the parameters arrive").unwrap_err();
    assert!(
        status(&e).2.ends_with("denied request: at most 4 replicas"),
        "{e:?}"
    );
    c.post(DEPLOYMENTS, deployment("small", 4)).await.unwrap();
    c.stop().await;
}

#[tokio::test]
async fn a_binding_applies_only_to_the_namespaces_it_selects() {
    let c = Cluster::start().await;
    c.namespace("prod", json!({"env": "prod"})).await;
    c.namespace("dev", json!({"env": "dev"})).await;
    let mut bound = binding("prod-only", "max-replicas", json!(["Deny"]));
    bound["spec"]["matchResources"] =
        json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}});
    c.policy(
        policy(
            "max-replicas",
            json!({"validations": [{"expression": "object.spec.replicas <= 5 || namespaceObject.metadata.labels.env != 'prod'"}]}),
        ),
        bound,
    )
    .await;
    let e = c
        .until_refused("/apis/apps/v1/namespaces/prod/deployments", |i| {
            deployment(&format!("big-{i}"), 6)
        })
        .await;
    assert_eq!(status(&e).0, 422);
    c.post(
        "/apis/apps/v1/namespaces/dev/deployments",
        deployment("big", 6),
    )
    .await
    .unwrap();
    c.stop().await;
}

#[tokio::test]
async fn evaluation_errors_follow_the_failure_policy() {
    let c = Cluster::start().await;
    // Deployments labelled `strict` meet a policy that fails closed,
    // `lenient` ones one that fails open; both expressions fail at runtime.
    for (name, failure) in [("strict", "Fail"), ("lenient", "Ignore")] {
        let mut p = policy(
            name,
            json!({"failurePolicy": failure, "validations": [{"expression": "object.spec.nonexistent == 1"}]}),
        );
        p["spec"]["matchConstraints"]["objectSelector"] = json!({"matchLabels": {"mode": name}});
        c.policy(p, binding(name, name, json!(["Deny"]))).await;
    }
    let labelled = |name: String, mode: &str| {
        let mut d = deployment(&name, 1);
        d["metadata"]["labels"]["mode"] = json!(mode);
        d
    };
    let e = c
        .until_refused(DEPLOYMENTS, |i| labelled(format!("strict-{i}"), "strict"))
        .await;
    let (code, reason, message) = status(&e);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.ends_with(
            "ValidatingAdmissionPolicy 'strict' with binding 'strict' denied request: expression 'object.spec.nonexistent == 1' resulted in error: no such key: nonexistent"
        ),
        "{message}"
    );
    // Give the lenient policy time to arrive too: it still admits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.post(DEPLOYMENTS, labelled("lenient".into(), "lenient"))
        .await
        .unwrap();
    c.stop().await;
}

#[tokio::test]
async fn deletions_see_the_stored_object_as_old_object() {
    let c = Cluster::start().await;
    c.policy(
        json!({"metadata": {"name": "keep"}, "spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["DELETE"], "resources": ["configmaps"]}]},
            "validations": [{
                "expression": "request.operation == 'DELETE' && object == null && !(has(oldObject.metadata.labels) && oldObject.metadata.labels['protected'] == 'yes')",
                "message": "protected",
            }],
        }}),
        binding("keep", "keep", json!(["Deny"])),
    )
    .await;
    let configmaps = "/api/v1/namespaces/default/configmaps";
    c.post(configmaps, json!({"metadata": {"name": "plain"}}))
        .await
        .unwrap();
    let mut refused = None;
    for i in 0..150 {
        let name = format!("kept-{i}");
        c.post(
            configmaps,
            json!({"metadata": {"name": name, "labels": {"protected": "yes"}}}),
        )
        .await
        .unwrap();
        match c.delete(&format!("{configmaps}/{name}")).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                refused = Some(status(&e));
                break;
            }
        }
    }
    let (code, _, message) = refused.expect("protected configmaps are kept");
    assert_eq!(code, 422);
    assert!(
        message.starts_with("configmaps \"kept-")
            && message.ends_with(
                "\" is forbidden: ValidatingAdmissionPolicy 'keep' with binding 'keep' denied request: protected"
            ),
        "{message}"
    );
    c.delete(&format!("{configmaps}/plain")).await.unwrap();
    c.stop().await;
}

#[tokio::test]
async fn expressions_that_do_not_compile_are_refused_at_create() {
    let c = Cluster::start().await;
    let e = c
        .post(
            POLICIES,
            policy(
                "broken",
                json!({"validations": [{"expression": "object.spec.replicas <="}]}),
            ),
        )
        .await
        .unwrap_err();
    let (code, reason, message) = status(&e);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.contains(
            "\"broken\" is invalid: spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed: ERROR: <input>:1:"
        ),
        "{message}"
    );
    let mut hook = webhook("w.example.com", "https://127.0.0.1:1/", "", "Fail");
    hook["matchConditions"] =
        json!([{"name": "c", "expression": "object.metadata.name.startsWith("}]);
    let e = c
        .post(
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
            json!({"metadata": {"name": "broken"}, "webhooks": [hook]}),
        )
        .await
        .unwrap_err();
    let (code, _, message) = status(&e);
    assert_eq!(code, 422);
    assert!(
        message.contains("webhooks[0].matchConditions[0].expression: Invalid value: \"object.metadata.name.startsWith(\": compilation failed:"),
        "{message}"
    );
    let e = c
        .post(BINDINGS, binding("b", "p", json!(["Deny", "Warn"])))
        .await
        .unwrap_err();
    assert!(
        status(&e)
            .2
            .contains("spec.validationActions: Invalid value"),
        "{e:?}"
    );
    c.stop().await;
}

/// A webhook server on 127.0.0.1 with a certificate from its own CA that
/// refuses every AdmissionReview. Answers its base URL and the CA, base64.
async fn refusing_webhook() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        use http_body_util::BodyExt;
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap();
                        let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
                            "uid": review["request"]["uid"],
                            "allowed": false,
                            "status": {"code": 403, "reason": "Forbidden", "message": "checked and refused"},
                        }});
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(
                                serde_json::to_vec(&answer).unwrap(),
                            )),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (
        format!("https://{addr}"),
        base64::engine::general_purpose::STANDARD.encode(ca_cert.pem()),
    )
}

fn webhook(name: &str, url: &str, ca: &str, failure: &str) -> Value {
    json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "failurePolicy": failure,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    })
}

#[tokio::test]
async fn webhooks_are_called_only_when_their_match_conditions_hold() {
    let c = Cluster::start().await;
    let (url, ca) = refusing_webhook().await;
    let mut checked = webhook(
        "checked.example.com",
        &format!("{url}/validate"),
        &ca,
        "Fail",
    );
    checked["matchConditions"] = json!([
        {"name": "checked-only", "expression": "object.metadata.name.startsWith('checked-')"},
        {"name": "by-admin", "expression": "request.userInfo.username == 'admin' && 'system:masters' in request.userInfo.groups"},
    ]);
    // Errors: fail closed for `broken-`, skip for `lenient-` names.
    let mut broken = webhook(
        "broken.example.com",
        &format!("{url}/validate"),
        &ca,
        "Fail",
    );
    broken["matchConditions"] = json!([
        {"name": "broken", "expression": "object.metadata.name.startsWith('broken-') && object.data.nope == 'x'"},
    ]);
    let mut lenient = webhook(
        "lenient.example.com",
        &format!("{url}/validate"),
        &ca,
        "Ignore",
    );
    lenient["matchConditions"] = json!([
        {"name": "lenient", "expression": "object.metadata.name.startsWith('lenient-') && object.data.nope == 'x'"},
    ]);
    c.post(
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        json!({"metadata": {"name": "conditional"}, "webhooks": [checked, broken, lenient]}),
    )
    .await
    .unwrap();
    let configmaps = "/api/v1/namespaces/default/configmaps";
    let e = c
        .until_refused(
            configmaps,
            |i| json!({"metadata": {"name": format!("checked-{i}")}}),
        )
        .await;
    let (code, _, message) = status(&e);
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "admission webhook \"checked.example.com\" denied the request: checked and refused"
    );
    // Names the conditions leave out never reach the webhook.
    c.post(configmaps, json!({"metadata": {"name": "other"}}))
        .await
        .unwrap();
    let e = c
        .post(
            configmaps,
            json!({"metadata": {"name": "broken-1"}, "data": {"k": "v"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status(&e),
        (
            403,
            "Forbidden".into(),
            "configmaps \"broken-1\" is forbidden: expression 'object.metadata.name.startsWith('broken-') && object.data.nope == 'x'' resulted in error: no such key: nope".into()
        )
    );
    c.post(
        configmaps,
        json!({"metadata": {"name": "lenient-1"}, "data": {"k": "v"}}),
    )
    .await
    .unwrap();
    c.stop().await;
}
