//! `http.request` against a local server: bodies, headers, statuses and the error rules.

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{any, get};
use axum::{Json, Router};
use nagare_connectors::{Connectors, ConnectorsConfig};
use nagare_engine::{Call, ConnectorError};
use serde_json::{json, Value};

async fn serve() -> String {
    async fn echo(headers: HeaderMap, body: String) -> Json<Value> {
        let h: serde_json::Map<String, Value> =
            headers.iter().map(|(k, v)| (k.as_str().to_string(), json!(v.to_str().unwrap_or("")))).collect();
        Json(json!({ "headers": h, "body": body }))
    }
    async fn status(Path(code): Path<u16>) -> (StatusCode, HeaderMap, String) {
        let mut h = HeaderMap::new();
        if code == 429 {
            h.insert("retry-after", "12".parse().unwrap());
        }
        (StatusCode::from_u16(code).unwrap(), h, format!("status {code} body"))
    }
    let app = Router::new()
        .route("/echo", any(echo))
        .route("/status/{code}", get(status))
        .route("/text", get(|| async { "plain text" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn call(input: Value) -> Call {
    Call {
        connector: "x.request".into(),
        input,
        idempotency_key: "7/notify/3".into(),
        instance: 7,
        node: "notify".into(),
        attempt: 1,
    }
}

async fn run(c: &Connectors, name: &str, input: Value) -> Result<Value, ConnectorError> {
    let conn = c.registry().get(name).unwrap();
    let call = call(input);
    conn.call(&call).await
}

#[tokio::test]
async fn bodies_headers_and_config_secrets() {
    let base = serve().await;
    std::env::set_var("NAGARE_HTTP_TEST_SECRET", "Bearer s3cret-value");
    let cfg = ConnectorsConfig::from_yaml(&format!(
        "connectors:\n  crm:\n    type: http\n    base_url: {base}/\n    headers:\n      Authorization: {{ env: NAGARE_HTTP_TEST_SECRET }}\n"
    ))
    .unwrap();
    let c = Connectors::new(&cfg);

    let out = run(
        &c,
        "crm.request",
        json!({"method": "POST", "url": "echo", "json": {"氏名": "山田"}, "headers": {"X-Trace": 42}}),
    )
    .await
    .unwrap();
    assert_eq!(out["status"], json!(200));
    let seen = &out["body"];
    assert_eq!(serde_json::from_str::<Value>(seen["body"].as_str().unwrap()).unwrap(), json!({"氏名": "山田"}));
    assert_eq!(seen["headers"]["authorization"], json!("Bearer s3cret-value"), "config header sent");
    assert_eq!(seen["headers"]["x-trace"], json!("42"));
    assert_eq!(seen["headers"]["idempotency-key"], json!("7/notify/3"), "stable key on POST");
    assert_eq!(seen["headers"]["content-type"], json!("application/json"));

    let out =
        run(&c, "crm.request", json!({"method": "PUT", "url": "echo", "form": {"a": 1, "b": "x y"}})).await.unwrap();
    assert_eq!(out["body"]["body"], json!("a=1&b=x+y"));
    assert_eq!(out["body"]["headers"]["content-type"], json!("application/x-www-form-urlencoded"));

    let out = run(&c, "http.request", json!({"url": format!("{base}/text")})).await.unwrap();
    assert_eq!(out["body"], json!("plain text"));
    assert!(out["body"]["headers"].is_null());

    // An error never carries the configured header.
    let e = run(&c, "crm.request", json!({"url": "status/404"})).await.unwrap_err();
    assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
}

#[tokio::test]
async fn statuses_follow_the_error_rules() {
    let base = serve().await;
    let c = Connectors::new(&ConnectorsConfig::default());
    let status = |code: u16| json!({"url": format!("{base}/status/{code}")});

    match run(&c, "http.request", status(404)).await.unwrap_err() {
        ConnectorError::Business { code, message } => {
            assert_eq!(code, "HTTP_404");
            assert!(
                message.contains("GET 127.0.0.1")
                    && message.contains("/status/404: HTTP 404 Not Found: status 404 body"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(run(&c, "http.request", status(401)).await.unwrap_err(), ConnectorError::Fatal(_)));
    assert!(matches!(run(&c, "http.request", status(503)).await.unwrap_err(), ConnectorError::Retryable(_)));
    match run(&c, "http.request", status(429)).await.unwrap_err() {
        ConnectorError::RetryAfter { message, after } => {
            assert!(message.contains("retry after 12s"), "{message}");
            assert_eq!(after, std::time::Duration::from_secs(12));
        }
        other => panic!("{other:?}"),
    }
    // Narrowed business statuses: a 422 not in the list is fatal; accepted statuses are results.
    let mut narrowed = status(422);
    narrowed["business_statuses"] = json!([409]);
    assert!(matches!(run(&c, "http.request", narrowed).await.unwrap_err(), ConnectorError::Fatal(_)));
    let mut accepted = status(404);
    accepted["accept_statuses"] = json!([404]);
    assert_eq!(run(&c, "http.request", accepted).await.unwrap()["status"], json!(404));

    // Nobody listening: retry. Nonsense input: fatal.
    let refused = run(&c, "http.request", json!({"url": "http://127.0.0.1:1/"})).await.unwrap_err();
    assert!(matches!(&refused, ConnectorError::Retryable(m) if m.contains("cannot connect")), "{refused:?}");
    assert!(matches!(run(&c, "http.request", json!({"url": "relative"})).await.unwrap_err(), ConnectorError::Fatal(_)));
    assert!(matches!(
        run(&c, "http.request", json!({"url": format!("{base}/echo"), "json": {}, "body": "x"})).await.unwrap_err(),
        ConnectorError::Fatal(_)
    ));
}

#[tokio::test]
async fn unconfigured_kintone_says_how_to_configure_it() {
    let c = Connectors::new(&ConnectorsConfig::default());
    let e = run(&c, "kintone.get", json!({"id": 1})).await.unwrap_err();
    assert!(
        matches!(&e, ConnectorError::Fatal(m) if m.contains("is not configured") && m.contains("connectors: kintone")),
        "{e:?}"
    );
}

/// Issue 10, finding 12: a node named in Japanese put raw UTF-8 into the header.
#[tokio::test]
async fn idempotency_key_of_a_japanese_node_is_sent_as_ascii() {
    let base = serve().await;
    let cfg =
        ConnectorsConfig::from_yaml(&format!("connectors:\n  crm:\n    type: http\n    base_url: {base}/\n")).unwrap();
    let c = Connectors::new(&cfg);
    let conn = c.registry().get("crm.request").unwrap();
    let call = Call {
        idempotency_key: "9f3a/5/督促/7".into(),
        node: "督促".into(),
        ..call(json!({"method": "POST", "url": "echo", "json": {}}))
    };
    let out = conn.call(&call).await.unwrap();
    assert_eq!(out["body"]["headers"]["idempotency-key"], json!("9f3a/5/%E7%9D%A3%E4%BF%83/7"));
}
