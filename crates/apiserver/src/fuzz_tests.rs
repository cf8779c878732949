//! Property tests over the request decoding path: whatever a client sends
//! — bodies, content types, paths, query strings, selectors, patches — the
//! server answers with an error `Status` and never panics.

use http::{HeaderMap, HeaderValue, Method, header};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::http_util::{BodyType, Output, Query, decode_object};
use crate::patch::{self, PatchKind};
use crate::request::RequestInfo;
use crate::rest::Selectors;

fn pods() -> &'static skiff_api_types::registry::ResourceInfo {
    skiff_api_types::registry::lookup("", "v1", "pods").unwrap()
}

fn deployments() -> &'static skiff_api_types::registry::ResourceInfo {
    skiff_api_types::registry::lookup("apps", "v1", "deployments").unwrap()
}

/// JSON-ish text: valid JSON, broken JSON, and random bytes.
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "[{}\\[\\]\":,a-z0-9 \\-.$]{0,200}".prop_map(String::into_bytes),
        arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9$/.~-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("metadata".to_owned()),
                    Just("spec".to_owned()),
                    Just("containers".to_owned()),
                    Just("$patch".to_owned()),
                    Just("$setElementOrder/containers".to_owned()),
                    Just("name".to_owned()),
                    Just("op".to_owned()),
                    Just("path".to_owned()),
                    "[a-z$/]{1,10}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_body_decodes_or_is_a_bad_request(body in bodies(), yaml in any::<bool>()) {
        match decode_object(&body, yaml) {
            Ok(v) => prop_assert!(v.is_object()),
            Err(e) => prop_assert_eq!(e.code, 400),
        }
    }

    #[test]
    fn any_content_type_or_accept_header_is_read_or_refused(value in "[ -~]{0,80}") {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(header::CONTENT_TYPE, v.clone());
            headers.insert(header::ACCEPT, v);
        }
        if let Err(e) = BodyType::of(&headers) {
            prop_assert_eq!(e.code, 415);
        }
        if let Err(e) = Output::negotiate(&headers) {
            prop_assert_eq!(e.code, 406);
        }
    }

    #[test]
    fn any_selector_parses_or_is_a_bad_request(labels in "[ -~]{0,60}", fields in "[ -~]{0,60}") {
        let mut query = Query::default();
        query.insert("labelSelector", &labels);
        query.insert("fieldSelector", &fields);
        if let Err(e) = Selectors::from_query(pods(), &query) {
            prop_assert_eq!(e.code, 400);
        }
    }

    #[test]
    fn any_path_and_query_is_read_without_panicking(path in "(/[ -~]{0,20}){0,8}", query in "[ -~]{0,80}", method in 0usize..6) {
        let method = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD][method].clone();
        let q = Query::parse(Some(&query));
        let info = RequestInfo::parse(&method, &path, q.flag("watch"));
        prop_assert!(!info.verb.is_empty() || method == Method::HEAD || !info.is_resource_request);
    }

    #[test]
    fn any_patch_applies_or_is_refused_with_a_client_error(body in bodies(), kind in 0usize..3) {
        let kind = [PatchKind::Json, PatchKind::Merge, PatchKind::Strategic][kind];
        let current = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a/b"]},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "i", "ports": [{"containerPort": 80}]}]}}},
        });
        if let Err(e) = patch::patch(kind, deployments(), &current, &body) {
            prop_assert!((400..500).contains(&e.code), "{e}");
        }
    }

    #[test]
    fn any_applied_configuration_applies_or_is_refused_with_a_client_error(applied in arb_json(), force in any::<bool>()) {
        let mut applied = applied;
        if let Some(o) = applied.as_object_mut() {
            o.insert("apiVersion".into(), json!("apps/v1"));
            o.insert("kind".into(), json!("Deployment"));
        } else {
            return Ok(());
        }
        if let Err(e) = patch::apply_subresource(deployments(), None, None, &applied, "fuzz", force, "2026-01-01T00:00:00Z") {
            prop_assert!((400..500).contains(&e.code), "{e}");
        }
    }
}
