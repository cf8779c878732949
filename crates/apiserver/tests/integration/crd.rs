//! CustomResourceDefinitions through a real client (kube-rs), in-process, on
//! the embedded store: served within moments of creation, schema validation,
//! pruning and defaulting, status and scale subresources, printer columns,
//! selectable fields, conditions, and deletion of the CRD's objects.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Error};
use serde_json::{Value, json};

async fn start() -> (Client, skiff_apiserver::Running, tempfile::TempDir) {
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
    (Client::try_from(config).unwrap(), server, dir)
}

fn widgets_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["color"],
                            "properties": {
                                "color": {"type": "string", "enum": ["red", "blue"]},
                                "size": {"type": "integer", "minimum": 0, "default": 1},
                                "selector": {"type": "string"},
                            },
                        },
                        "status": {"type": "object", "properties": {"size": {"type": "integer"}, "ready": {"type": "boolean"}}},
                    },
                }},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size", "labelSelectorPath": ".spec.selector"}},
                "additionalPrinterColumns": [
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                ],
                "selectableFields": [{"jsonPath": ".spec.color"}],
            }],
        },
    }))
    .unwrap()
}

fn widgets(client: &Client, ns: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})).unwrap()
}

/// Polls until `f` answers true, or panics after a while.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_is_served_validated_and_cleaned_up() {
    let (client, server, _dir) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created_at = Instant::now();
    crds.create(&PostParams::default(), &widgets_crd())
        .await
        .unwrap();
    let w = widgets(&client, "default");
    eventually("the new resource is served", || {
        let w = w.clone();
        async move { w.list(&ListParams::default()).await.is_ok() }
    })
    .await;
    let served_after = created_at.elapsed();
    assert!(
        served_after < Duration::from_secs(1),
        "served after {served_after:?}"
    );

    // Established, names accepted, the cleanup finalizer in place.
    eventually("the CRD is Established", || {
        let crds = crds.clone();
        async move {
            let crd = crds.get("widgets.example.com").await.unwrap();
            crd.status.and_then(|s| s.conditions).is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
        }
    })
    .await;
    let crd = crds.get("widgets.example.com").await.unwrap();
    assert!(
        crd.metadata
            .finalizers
            .unwrap()
            .contains(&"customresourcecleanup.apiextensions.k8s.io".to_owned())
    );

    // Discovery lists it, with its short name.
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let found = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .any(|(r, _)| r.kind == "Widget");
    assert!(found, "discovery lists Widget");

    // Create: unknown fields pruned, defaults filled, generation 1.
    let mut body = widget("w1", json!({"color": "red", "bogus": 1}));
    body.data["spec"]["selector"] = json!("app=w1");
    let w1 = w.create(&PostParams::default(), &body).await.unwrap();
    assert_eq!(
        w1.data["spec"],
        json!({"color": "red", "size": 1, "selector": "app=w1"})
    );
    assert_eq!(w1.metadata.generation, Some(1));

    // Schema violations: 422 naming the field.
    let err = w
        .create(
            &PostParams::default(),
            &widget("bad", json!({"color": "pink"})),
        )
        .await
        .unwrap_err();
    let Error::Api(status) = err else {
        panic!("expected an API error")
    };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("spec.color: Unsupported value: \"pink\""),
        "{}",
        status.message
    );
    let err = w
        .create(&PostParams::default(), &widget("bad", json!({})))
        .await
        .unwrap_err();
    let Error::Api(status) = err else {
        panic!("expected an API error")
    };
    assert!(
        status.message.contains("spec.color: Required value"),
        "{}",
        status.message
    );

    // Strict field validation names the unknown field.
    let request = http::Request::post(
        "/apis/example.com/v1/namespaces/default/widgets?fieldValidation=Strict",
    )
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&widget("strict", json!({"color": "blue", "colour": "x"}))).unwrap())
    .unwrap();
    let err = client.request::<Value>(request).await.unwrap_err();
    let Error::Api(status) = err else {
        panic!("expected an API error")
    };
    assert_eq!(status.code, 400);
    assert!(
        status.message.contains("unknown field \"spec.colour\""),
        "{}",
        status.message
    );

    // The status subresource changes only status; the main resource only spec.
    let patched = w
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"color": "blue"}, "status": {"size": 1, "ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            patched.data["spec"]["color"].clone(),
            patched.data["status"]["ready"].clone()
        ),
        (json!("red"), json!(true))
    );
    let patched = w
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    assert_eq!(patched.data["status"]["ready"], json!(true), "status kept");

    // Scale through the configured paths.
    let scale = w.get_scale("w1").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    let status = scale.status.unwrap();
    assert_eq!(
        (status.replicas, status.selector.as_deref()),
        (1, Some("app=w1"))
    );
    w.patch_scale(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    assert_eq!(w.get("w1").await.unwrap().data["spec"]["size"], json!(5));

    // Selectable fields.
    w.create(
        &PostParams::default(),
        &widget("w2", json!({"color": "blue"})),
    )
    .await
    .unwrap();
    let blue = w
        .list(&ListParams::default().fields("spec.color=blue"))
        .await
        .unwrap();
    let names: Vec<_> = blue
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert_eq!(names, ["w2"]);

    // Printer columns in Table output.
    let request = http::Request::get("/apis/example.com/v1/namespaces/default/widgets")
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let table: Value = client.request(request).await.unwrap();
    let columns: Vec<_> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(columns, [json!("Name"), json!("Color"), json!("Size")]);
    assert_eq!(table["rows"][0]["cells"], json!(["w1", "red", 5]));

    // Deleting the CRD deletes its objects, then the CRD.
    crds.delete("widgets.example.com", &Default::default())
        .await
        .unwrap();
    eventually("the CRD is gone", || {
        let crds = crds.clone();
        async move { crds.get_opt("widgets.example.com").await.unwrap().is_none() }
    })
    .await;
    let not_served = w.list(&ListParams::default()).await.unwrap_err();
    let Error::Api(status) = not_served else {
        panic!("expected an API error")
    };
    assert_eq!(status.code, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = skiff_apiserver::Config {
        data_dir: dir.path().to_owned(),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    };
    let client_of = |server: &skiff_apiserver::Running| {
        let path = server.admin_kubeconfig.clone();
        async move {
            let kubeconfig = Kubeconfig::read_from(&path).unwrap();
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .unwrap();
            Client::try_from(config).unwrap()
        }
    };
    // The first server writes a CRD and an object, in its own runtime so
    // that everything it holds is gone when it ends.
    let first_config = config.clone();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let server = skiff_apiserver::start(first_config).await.unwrap();
                let client = client_of(&server).await;
                let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
                crds.create(&PostParams::default(), &widgets_crd())
                    .await
                    .unwrap();
                let w = widgets(&client, "default");
                eventually("served", || {
                    let w = w.clone();
                    async move { w.list(&ListParams::default()).await.is_ok() }
                })
                .await;
                w.create(
                    &PostParams::default(),
                    &widget("kept", json!({"color": "red"})),
                )
                .await
                .unwrap();
                server.stop().await;
            });
    })
    .join()
    .unwrap();
    let server = skiff_apiserver::start(config).await.unwrap();
    let client = client_of(&server).await;
    let kept = widgets(&client, "default").get("kept").await.unwrap();
    assert_eq!(kept.data["spec"]["color"], json!("red"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_served_version_answers_in_its_own_version() {
    let (client, server, _dir) = start().await;
    let mut crd = serde_json::to_value(widgets_crd()).unwrap();
    let mut beta = crd["spec"]["versions"][0].clone();
    beta["name"] = json!("v1beta1");
    beta["storage"] = json!(false);
    crd["spec"]["versions"].as_array_mut().unwrap().push(beta);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(crd).unwrap(),
    )
    .await
    .unwrap();
    let in_version = |version: &str| {
        let resource = ApiResource {
            group: "example.com".into(),
            version: version.into(),
            api_version: format!("example.com/{version}"),
            kind: "Widget".into(),
            plural: "widgets".into(),
        };
        Api::<DynamicObject>::namespaced_with(client.clone(), "default", &resource)
    };
    let (v1, v1beta1) = (in_version("v1"), in_version("v1beta1"));
    eventually("both versions are served", || {
        let (a, b) = (v1.clone(), v1beta1.clone());
        async move {
            a.list(&ListParams::default()).await.is_ok()
                && b.list(&ListParams::default()).await.is_ok()
        }
    })
    .await;
    let mut body = widget("w", json!({"color": "red"}));
    body.types.as_mut().unwrap().api_version = "example.com/v1beta1".into();
    let created = v1beta1.create(&PostParams::default(), &body).await.unwrap();
    assert_eq!(created.types.unwrap().api_version, "example.com/v1beta1");
    assert_eq!(
        v1.get("w").await.unwrap().types.unwrap().api_version,
        "example.com/v1"
    );
    assert_eq!(
        v1beta1.get("w").await.unwrap().types.unwrap().api_version,
        "example.com/v1beta1"
    );
    let listed = v1beta1.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed.items[0].types.as_ref().unwrap().api_version,
        "example.com/v1beta1"
    );
    let listed = v1.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed.items[0].types.as_ref().unwrap().api_version,
        "example.com/v1"
    );
    server.stop().await;
}

/// What kubectl's client-side validation (on the OpenAPI v2 document) finds
/// wrong with `obj` against the definition `schema` (in `definitions`):
/// fields the schema does not know, and values of the wrong type.
fn v2_errors(definitions: &Value, schema: &Value, obj: &Value, at: &str, out: &mut Vec<String>) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &definitions[r.strip_prefix("#/definitions/").unwrap()],
        None => schema,
    };
    match (schema["type"].as_str(), obj) {
        (Some("object"), Value::Object(fields)) => {
            let Some(properties) = schema["properties"].as_object() else {
                return;
            };
            for (name, value) in fields {
                match properties.get(name) {
                    Some(s) => v2_errors(definitions, s, value, &format!("{at}.{name}"), out),
                    None => out.push(format!("unknown field {at}.{name}")),
                }
            }
        }
        (Some("string"), Value::String(_))
        | (Some("integer"), Value::Number(_))
        | (Some("boolean"), Value::Bool(_))
        | (None, _) => {}
        (Some(t), _) => out.push(format!("{at}: expected {t}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v2_describes_custom_resources_for_client_side_validation() {
    let (client, server, _dir) = start().await;
    let openapi_v2 = || async {
        let request = http::Request::get("/openapi/v2").body(Vec::new()).unwrap();
        serde_json::from_str::<Value>(&client.request_text(request).await.unwrap()).unwrap()
    };
    let before = openapi_v2().await;
    assert!(before["definitions"].get("com.example.v1.Widget").is_none());
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widgets_crd())
        .await
        .unwrap();
    eventually("/openapi/v2 has the CRD", || async {
        openapi_v2().await["definitions"]
            .get("com.example.v1.Widget")
            .is_some()
    })
    .await;
    let doc = openapi_v2().await;
    let definitions = &doc["definitions"];
    assert!(definitions.get("io.k8s.api.apps.v1.Deployment").is_some());

    // As kubectl's openapi.Resources finds a kind's model: by the
    // definitions' x-kubernetes-group-version-kind.
    let gvk = json!({"group": "example.com", "version": "v1", "kind": "Widget"});
    let found: Vec<(&String, &Value)> = definitions
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, d)| {
            d["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|l| l.contains(&gvk))
        })
        .collect();
    assert_eq!(found.len(), 1);
    let (name, widget) = found[0];
    assert_eq!(name, "com.example.v1.Widget");
    assert_eq!(
        widget["properties"]["metadata"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(
        definitions
            .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
            .is_some()
    );
    let mut errors = Vec::new();
    let good = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"color": "red", "size": 2}});
    v2_errors(definitions, widget, &good, "", &mut errors);
    assert_eq!(errors, Vec::<String>::new());
    let bad = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"colour": "red", "size": "big"}});
    v2_errors(definitions, widget, &bad, "", &mut errors);
    assert_eq!(
        errors,
        ["unknown field .spec.colour", ".spec.size: expected integer"]
    );

    // And the paths kubectl reads the verbs and the list kind from.
    let collection = &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets"];
    assert_eq!(
        collection["post"]["x-kubernetes-group-version-kind"],
        json!({"group": "example.com", "kind": "Widget", "version": "v1"})
    );
    assert_eq!(
        collection["get"]["responses"]["200"]["schema"]["$ref"],
        "#/definitions/com.example.v1.WidgetList"
    );
    assert!(definitions.get("com.example.v1.WidgetList").is_some());

    // Deleting the CRD takes it out again.
    crds.delete("widgets.example.com", &Default::default())
        .await
        .unwrap();
    eventually("/openapi/v2 no longer has the CRD", || async {
        openapi_v2().await["definitions"]
            .get("com.example.v1.Widget")
            .is_none()
    })
    .await;
    server.stop().await;
}
