//! The OpenAPI document: structurally valid OpenAPI 3, and exactly the routes the
//! server serves (every documented operation answers; no other method does).

use crate::common::*;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;

/// Every `$ref` in the document.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// Resolve a local JSON pointer (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    doc.pointer(r.strip_prefix('#')?)
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_openapi_3_and_matches_the_router() {
    let api = Api::start(sample_users()).await;
    let doc = api.get(SATO, "/api/v1/openapi.json").await.expect(200);

    // Structure.
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let paths = doc["paths"].as_object().unwrap();
    let mut operation_ids = BTreeSet::new();
    let mut operations = Vec::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        let templated: Vec<&str> = path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
        for (method, op) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: no responses"));
            assert!(!responses.is_empty(), "{method} {path}: no responses");
            for (code, r) in responses {
                assert!(code.len() == 3 && code.parse::<u16>().is_ok(), "{method} {path}: status {code}");
                assert!(r["description"].is_string(), "{method} {path} {code}: a description");
            }
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: operationId"));
            assert!(operation_ids.insert(id.to_string()), "duplicate operationId {id}");
            let params: Vec<&Value> = op["parameters"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
            for name in &templated {
                assert!(
                    params.iter().any(|p| p["name"] == *name && p["in"] == "path" && p["required"] == true),
                    "{method} {path}: path parameter {name} not declared"
                );
            }
            for p in &params {
                assert!(["path", "query", "header", "cookie"].contains(&p["in"].as_str().unwrap()));
                if p["in"] == "path" {
                    assert!(templated.contains(&p["name"].as_str().unwrap()), "{method} {path}: stray {p}");
                }
            }
            let public = path == "/health" || path == "/ready" || path.starts_with("/hooks/");
            if public {
                assert_eq!(op["security"], serde_json::json!([{}]), "{path} needs no token");
            } else {
                assert!(op.get("security").is_none(), "{method} {path} inherits the bearer requirement");
                assert!(responses.contains_key("401"), "{method} {path} documents 401");
            }
            operations.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut all_refs = Vec::new();
    refs(&doc, &mut all_refs);
    assert!(!all_refs.is_empty());
    for r in &all_refs {
        assert!(resolve(&doc, r).is_some(), "unresolved $ref {r}");
    }

    // Every documented operation is served: with real path parameters, none of the
    // router's fallbacks (`no-route`, `method-not-allowed`) answers.
    let inst = api.start_expense(SATO, 1_000).await;
    let id = inst["id"].as_u64().unwrap().to_string();
    let task = inst["open_tasks"][0]["id"].as_str().unwrap().to_string();
    for (method, path) in &operations {
        let concrete = path.replace(
            "{id}",
            if path.starts_with("/api/v1/tasks") {
                &task
            } else if path.starts_with("/api/v1/processes") {
                "bench-usertask"
            } else {
                &id
            },
        );
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let op = &doc["paths"][path][method.to_lowercase()];
        if op["responses"]["200"]["content"]["text/event-stream"].is_object() {
            // A stream never ends by itself: its head answers, then it is dropped.
            let r = api.http.request(m.clone(), format!("{}{concrete}", api.base)).bearer_auth(ADMIN).send().await;
            assert_eq!(r.unwrap().status().as_u16(), 200, "{method} {path} streams");
        } else {
            let r = api.call(m.clone(), Some(ADMIN), &concrete, Some(serde_json::json!({}))).await;
            assert!(
                !(r.body["code"] == "no-route" || r.body["code"] == "method-not-allowed"),
                "{method} {path} is documented but not served: {}",
                r.text
            );
            assert_ne!(r.status.as_u16(), 500, "{method} {concrete}: {}", r.text);
        }
        // And no undocumented method on a documented path.
        for other in METHODS {
            if other.eq_ignore_ascii_case(method) || doc["paths"][path][other].is_object() {
                continue;
            }
            let m = Method::from_bytes(other.to_uppercase().as_bytes()).unwrap();
            api.call(m, Some(ADMIN), &concrete, None).await.error(405, "method-not-allowed");
        }
    }

    // The router served nothing the document does not name (route templates from
    // the server's own request counters, as in every test's `finish`).
    for ((_, route, _), _) in api.http_stats().await {
        assert!(route == "unmatched" || paths.contains_key(&route), "served {route}, not documented");
    }
    api.finish().await;
}
