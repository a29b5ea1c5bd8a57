//! Issue 10, the HTTP side: what a hostile or broken client sends must not stop or
//! hold the server. Each test is named after the finding it keeps fixed; slow
//! clients are raw TCP streams, against short limits set through the library API.

use crate::common::*;
use axum::routing::get;
use nagare::server::auth::UserDirectory;
use nagare::server::conn::{self, Limits};
use nagare::server::error::ApiResult;
use nagare::server::{app, blocking, AppState, Server};
use nagare_engine::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short limits, so that a test waits fractions of a second.
fn short() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        max_connections: 64,
    }
}

fn engine() -> Engine {
    let engine = Engine::builder().in_memory().connectors(nagare_connectors::builtin()).build().unwrap();
    for f in ["processes/expense-approval.yaml", "processes/bench-usertask.yaml"] {
        engine.deploy(f, &std::fs::read_to_string(root().join(f)).unwrap()).unwrap();
    }
    engine
}

/// The whole server (executor included) with `limits`, and its users directory.
async fn serve(limits: Limits) -> (Server, Arc<UserDirectory>) {
    let state = AppState::new(engine(), sample_users()).with_limits(limits);
    let users = state.users.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (Server::start_with(listener, state, std::future::pending()).unwrap(), users)
}

/// Send `bytes` on a new connection and read until the server closes it (at most
/// 3 s); the text read and how long until the close.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> (String, Duration) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    read_to_close(&mut tcp).await
}

async fn read_to_close(tcp: &mut TcpStream) -> (String, Duration) {
    let t = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => {
                panic!("the server still holds the connection after 3 s; read: {}", String::from_utf8_lossy(&out))
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

/// The JSON body of a raw response, checked to be an error `{code, message, details}`.
#[track_caller]
fn raw_error(resp: &str, status: u16, code: &str) -> Value {
    assert!(resp.starts_with(&format!("HTTP/1.1 {status} ")), "expected {status}: {resp}");
    assert!(resp.to_ascii_lowercase().contains("content-type: application/json"), "{resp}");
    let body: Value = serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap_or("")).expect("a JSON body");
    assert_eq!(body["code"], code, "{resp}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()) && body["details"].is_object(), "{body}");
    body
}

async fn send(
    http: &reqwest::Client,
    method: Method,
    url: String,
    auth: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Resp {
    let mut req = http.request(method, url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b);
    }
    let resp = req.send().await.expect("the server answers");
    let status = resp.status();
    let json_type =
        resp.headers().get("content-type").is_some_and(|v| v.to_str().unwrap_or("").starts_with("application/json"));
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(status.is_success() || json_type, "{status} without a JSON content type: {text}");
    Resp { status, body, text }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

// ---------------------------------------------------------------- finding 1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_handler_or_an_engine_call_is_a_500_and_the_server_goes_on() {
    let state = AppState::new(engine(), sample_users());
    let (router, _) = app(state);
    // Routes that panic, added by the test to the real router: one in the async
    // handler, one inside an engine call on the blocking pool.
    let router = router
        .route(
            "/boom",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("handler bug");
                }
                "unreachable"
            }),
        )
        .route(
            "/boom-blocking",
            get(|| async {
                blocking(|| -> ApiResult<()> { panic!("engine bug") }).await?;
                Ok::<_, nagare::server::error::ApiError>("unreachable")
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(conn::serve(listener, router, short(), async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let before = nagare::server::panic::panics();
    for path in ["/boom", "/boom-blocking", "/boom"] {
        let r = send(&http, Method::GET, format!("{url}{path}"), None, None).await;
        let body = r.error(500, "internal");
        assert!(!body["message"].as_str().unwrap().contains("bug"), "the panic text stays in the log: {body}");
    }
    assert!(nagare::server::panic::panics() >= before + 3);
    // The server goes on: health, and a real request with a token.
    send(&http, Method::GET, format!("{url}/health"), None, None).await.expect(200);
    let r = send(&http, Method::GET, format!("{url}/api/v1/tasks"), Some(&bearer(TANAKA)), None).await;
    r.expect(200);
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}

/// A clock the test can make panic: an injected dependency of the engine failing
/// in the middle of an engine call made by a request.
struct TrapClock(std::sync::atomic::AtomicBool);

impl nagare_engine::clock::Clock for TrapClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("clock trap");
        }
        chrono::DateTime::parse_from_rfc3339("2026-11-20T09:00:00Z").unwrap().into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_a_real_engine_call_is_that_requests_500_only() {
    let clock = Arc::new(TrapClock(std::sync::atomic::AtomicBool::new(false)));
    let engine =
        Engine::builder().in_memory().clock(clock.clone()).connectors(nagare_connectors::builtin()).build().unwrap();
    let api = Api::start_with(engine, sample_users()).await;
    let first = api.post(SATO, "/api/v1/instances", json!({ "process": "bench-usertask" })).await.expect(201);
    clock.0.store(true, std::sync::atomic::Ordering::SeqCst);
    api.post(SATO, "/api/v1/instances", json!({ "process": "bench-usertask" })).await.error(500, "internal");
    clock.0.store(false, std::sync::atomic::Ordering::SeqCst);
    // Everyone else goes on: reads, and new writes.
    api.get(SATO, &format!("/api/v1/instances/{}", first["id"])).await.expect(200);
    api.post(SATO, "/api/v1/instances", json!({ "process": "bench-usertask" })).await.expect(201);
    api.finish().await;
}

// ---------------------------------------------------------------- finding 6

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_after_the_header_body_and_idle_timeouts() {
    let (server, _) = serve(short()).await;
    let addr = server.addr;

    // A head that never ends: 408 and closed after the header timeout.
    let (resp, took) = exchange(addr, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    raw_error(&resp, 408, "header-timeout");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");

    // A connection that sends nothing at all: the same.
    let (resp, took) = exchange(addr, b"").await;
    raw_error(&resp, 408, "header-timeout");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // A body announced and never sent in full: 408 and closed after the body timeout.
    let head = format!(
        "POST /api/v1/instances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SATO}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"process\":"
    );
    let (resp, took) = exchange(addr, head.as_bytes()).await;
    raw_error(&resp, 408, "body-timeout");
    assert!(resp.to_ascii_lowercase().contains("connection: close"), "{resp}");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");

    // `Content-Length: 1 GiB` and no body: refused at once, not waited for.
    let head = format!(
        "POST /api/v1/instances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SATO}\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
    );
    let (resp, took) = exchange(addr, head.as_bytes()).await;
    // 413 (not 408 `body-timeout`): refused on its Content-Length, no byte waited for.
    raw_error(&resp, 413, "body-too-large");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A client that sends its whole over-limit body before reading (most do) reads
    // the 413, not a reset: what the handler left unread is read away first, then
    // the connection ends (`Connection: close`). Both a body over the JSON limit
    // (read up to the limit) and one whose Content-Length is refused before a byte
    // is read.
    for size in [1_500_000, 3_000_000] {
        let body = format!("{{\"process\":\"bench-usertask\",\"business_key\":\"{}\"}}", "k".repeat(size));
        let head = format!(
            "POST /api/v1/instances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SATO}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        // In pieces, as a client on a real network sends it: a server that answered
        // and closed without reading would reset the connection under these writes.
        for piece in body.as_bytes().chunks(256 * 1024) {
            tcp.write_all(piece).await.expect("the server reads the whole body, no reset");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (resp, _) = read_to_close(&mut tcp).await;
        raw_error(&resp, 413, "body-too-large");
        assert!(resp.to_ascii_lowercase().contains("connection: close"), "{resp}");
    }

    // The same on a route that reads no body: answered, then the connection ends.
    let head = format!(
        "GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SATO}\r\nContent-Length: 1073741824\r\n\r\n"
    );
    let (resp, took) = exchange(addr, head.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // A kept-alive connection with no next request: closed after the idle timeout,
    // with nothing more written.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 "));
    let (rest, took) = read_to_close(&mut tcp).await;
    assert_eq!(rest, "", "nothing after the response");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");

    // A kept-alive connection that goes on sending requests is served on: the idle
    // timer restarts after each response.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 "));
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_keeps_moving_outlives_the_body_timeout_and_a_trickle_does_not() {
    let (server, _) = serve(short()).await;
    // 256 KiB in four pieces, 150 ms apart: twice the 300 ms body timeout, but each
    // 64 KiB buys a second more.
    let body = format!("{}{{\"process\":\"bench-usertask\"}}", " ".repeat(256 * 1024));
    let head = format!(
        "POST /api/v1/instances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SATO}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    for piece in body.as_bytes().chunks(body.len().div_ceil(4)) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        tcp.write_all(piece).await.unwrap();
    }
    let (resp, _) = read_to_close(&mut tcp).await;
    assert!(resp.starts_with("HTTP/1.1 201 "), "{resp}");
    // A byte every 100 ms buys nothing: 408 after the body timeout.
    let head = format!(
        "POST /api/v1/instances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SATO}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    let resp = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tcp.write_all(b" ").await;
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut buf)).await {
            break String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        assert!(t.elapsed() < Duration::from_secs(3), "still reading a trickle");
    };
    raw_error(&resp, 408, "body-timeout");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_with_503_and_slots_come_back() {
    let limits = Limits { max_connections: 2, header_timeout: Duration::from_secs(2), ..short() };
    let (server, _) = serve(limits).await;
    let addr = server.addr;
    // Two connections in the middle of their heads hold both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        held.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (resp, took) = exchange(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    raw_error(&resp, 503, "busy");
    assert!(resp.to_ascii_lowercase().contains("retry-after: 1"), "{resp}");
    assert!(took < Duration::from_millis(500), "refused at once: {took:?}");
    // One hangs up: its slot serves the next client.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (resp, _) = exchange(addr, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    drop(held);
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------- finding 7

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_stay_bounded_whatever_method_or_path_is_sent() {
    let api = Api::start(sample_users()).await;
    let http = reqwest::Client::new();
    for i in 0..30 {
        let method = Method::from_bytes(format!("X{i}{}", "M".repeat(2000)).as_bytes()).unwrap();
        let path = format!("/api/v1/{}{i}", "p".repeat(500));
        let token = if i % 2 == 0 { Some(bearer(SATO)) } else { None };
        let r = send(&http, method.clone(), format!("{}{path}", api.base), token.as_deref(), None).await;
        assert!([401, 404].contains(&r.status.as_u16()), "{}", r.text);
        let r = send(&http, method, format!("{}/api/v1/instances", api.base), token.as_deref(), None).await;
        assert!([401, 405].contains(&r.status.as_u16()), "{}", r.text);
    }
    let stats = api.http_stats().await;
    let labels: std::collections::BTreeSet<(String, String)> =
        stats.iter().map(|((m, r, _), _)| (m.clone(), r.clone())).collect();
    for (method, route) in &labels {
        assert!(
            ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "OTHER"].contains(&method.as_str()),
            "method label {method}"
        );
        assert!(route == "unmatched" || route.starts_with('/') && route.len() < 100, "route label {route}");
    }
    let other: u64 = stats.iter().filter(|((m, _, _), _)| m == "OTHER").map(|(_, n)| n).sum();
    assert_eq!(other, 60, "every odd method counted as OTHER: {stats:?}");
    assert!(stats.iter().any(|((m, r, s), _)| m == "OTHER" && r == "unmatched" && *s == 401));
    assert!(stats.len() < 20, "a handful of series: {stats:?}");
    api.finish().await;
}

// ---------------------------------------------------------------- finding 8

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_bearer_token_everything_under_api_v1_is_401_before_404_or_405() {
    let api = Api::start(sample_users()).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", api.base);
    let basic = format!("Basic {SATO}");
    for auth in [None, Some("Bearer nope"), Some(basic.as_str())] {
        for (method, path) in [
            (Method::DELETE, "/api/v1/instances"),
            (Method::PUT, "/api/v1/tasks/1-1/claim"),
            (Method::GET, "/api/v1/nope"),
            (Method::POST, "/api/v1/openapi.json"),
            (Method::GET, "/metrics"),
            (Method::GET, "/elsewhere"),
        ] {
            let resp = http.request(method.clone(), url(path));
            let resp = if let Some(a) = auth { resp.header("authorization", a) } else { resp };
            let resp = resp.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {auth:?}");
            assert!(resp.headers().get("allow").is_none(), "no Allow header tells strangers the routes");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["code"], "unauthorized");
        }
    }
    // With a valid token: the real 404 and 405.
    send(&http, Method::GET, url("/api/v1/nope"), Some(&bearer(SATO)), None).await.error(404, "no-route");
    send(&http, Method::DELETE, url("/api/v1/instances"), Some(&bearer(SATO)), None)
        .await
        .error(405, "method-not-allowed");
    // Health stays open.
    send(&http, Method::GET, url("/health"), None, None).await.expect(200);
    api.finish().await;
}

// ---------------------------------------------------------------- finding 9

/// `#/components/schemas/X` → X's definition.
fn schema<'a>(doc: &'a Value, reference: &Value) -> &'a Value {
    let name = reference.as_str().unwrap().rsplit('/').next().unwrap();
    &doc["components"]["schemas"][name]
}

fn body_schema<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    schema(doc, &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_schema_names_are_unique_and_constraints_match_the_handlers() {
    assert_eq!(nagare::server::schema_name_clashes(), Vec::<String>::new());
    let (server, users) = serve(short()).await;
    let base = server.url();
    let http = reqwest::Client::new();
    let doc =
        send(&http, Method::GET, format!("{base}/api/v1/openapi.json"), Some(&bearer(SATO)), None).await.expect(200);

    // The task's complete and the job's complete have their own bodies.
    let task = body_schema(&doc, "/api/v1/tasks/{id}/complete", "post");
    let job = body_schema(&doc, "/api/v1/jobs/{id}/complete", "post");
    assert!(task["properties"]["variables"].is_object() && task["properties"].get("worker").is_none(), "{task}");
    assert!(job["properties"]["output"].is_object() && job["properties"]["worker"].is_object(), "{job}");

    let call = |m: Method, path: &str, token: &str, body: Option<Value>| {
        let http = http.clone();
        let url = format!("{base}{path}");
        let token = bearer(token);
        async move {
            let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
            send(&http, m, url, Some(&token), body).await
        }
    };

    // `limit`: documented 1 to 500 on every list, and so enforced.
    for path in ["/api/v1/instances", "/api/v1/tasks", "/api/v1/incidents"] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let limit = params.iter().find(|p| p["name"] == "limit").unwrap_or_else(|| panic!("{path}: limit"));
        assert_eq!((limit["schema"]["minimum"].as_u64(), limit["schema"]["maximum"].as_u64()), (Some(1), Some(500)));
        assert!(doc["paths"][path]["get"]["responses"]["400"].is_object());
        for bad in [0, 501] {
            call(Method::GET, &format!("{path}?limit={bad}"), ADMIN, None).await.error(400, "bad-query");
        }
        for good in [1, 500] {
            call(Method::GET, &format!("{path}?limit={good}"), ADMIN, None).await.expect(200);
        }
    }
    // Enum values: every documented status is accepted, nothing else is.
    let params = doc["paths"]["/api/v1/instances"]["get"]["parameters"].as_array().unwrap();
    let status = params.iter().find(|p| p["name"] == "status").unwrap();
    let values: Vec<&str> =
        status["schema"]["enum"].as_array().expect("an enum").iter().filter_map(Value::as_str).collect();
    assert_eq!(values.len(), 4, "{status}");
    for v in values {
        call(Method::GET, &format!("/api/v1/instances?status={v}"), ADMIN, None).await.expect(200);
    }
    call(Method::GET, "/api/v1/instances?status=done", ADMIN, None).await.error(400, "bad-query");

    // minLength 1: each documented text field refuses an empty value with 422, and
    // every documented minLength is in this table.
    let inst =
        call(Method::POST, "/api/v1/instances", SATO, Some(json!({ "process": "bench-usertask" }))).await.expect(201);
    let id = inst["id"].as_u64().unwrap();
    let task_id = inst["open_tasks"][0]["id"].as_str().unwrap().to_string();
    let cases: Vec<(&str, &str, Method, String, &str, Value)> = vec![
        ("DeployRequest", "source", Method::POST, "/api/v1/processes".into(), ADMIN, json!({ "source": "" })),
        ("StartRequest", "process", Method::POST, "/api/v1/instances".into(), SATO, json!({ "process": "" })),
        (
            "StartRequest",
            "business_key",
            Method::POST,
            "/api/v1/instances".into(),
            SATO,
            json!({ "process": "bench-usertask", "business_key": " " }),
        ),
        (
            "CancelRequest",
            "reason",
            Method::POST,
            format!("/api/v1/instances/{id}/cancel"),
            ADMIN,
            json!({ "reason": "" }),
        ),
        (
            "SendBackRequest",
            "comment",
            Method::POST,
            format!("/api/v1/tasks/{task_id}/send-back"),
            ADMIN,
            json!({ "comment": "" }),
        ),
        (
            "TaskErrorRequest",
            "code",
            Method::POST,
            format!("/api/v1/tasks/{task_id}/error"),
            ADMIN,
            json!({ "code": "" }),
        ),
        ("MessageRequest", "name", Method::POST, "/api/v1/messages".into(), SATO, json!({ "name": "" })),
        (
            "MigrationRequest",
            "process",
            Method::POST,
            "/api/v1/migrations/plan".into(),
            ADMIN,
            json!({ "process": "", "from": 1, "to": 2 }),
        ),
        ("FailRequest", "message", Method::POST, "/api/v1/jobs/1-1-1/fail".into(), WORKER, json!({ "message": "" })),
        (
            "FailRequest",
            "error_code",
            Method::POST,
            "/api/v1/jobs/1-1-1/fail".into(),
            WORKER,
            json!({ "message": "x", "error_code": "", "retryable": false }),
        ),
        (
            "FailRequest",
            "worker",
            Method::POST,
            "/api/v1/jobs/1-1-1/fail".into(),
            WORKER,
            json!({ "message": "x", "worker": "" }),
        ),
        (
            "JobCompleteRequest",
            "worker",
            Method::POST,
            "/api/v1/jobs/1-1-1/complete".into(),
            WORKER,
            json!({ "worker": "" }),
        ),
        (
            "ActivateRequest",
            "worker",
            Method::POST,
            "/api/v1/jobs/activate".into(),
            WORKER,
            json!({ "connector": "x.y", "worker": "" }),
        ),
        (
            "ActivateRequest",
            "connector",
            Method::POST,
            "/api/v1/jobs/activate".into(),
            WORKER,
            json!({ "connector": "" }),
        ),
    ];
    let mut tabled = std::collections::BTreeSet::new();
    for (name, field, method, path, token, body) in cases {
        let prop = &doc["components"]["schemas"][name]["properties"][field];
        assert_eq!(prop["minLength"], 1, "{name}.{field} documents minLength 1: {prop}");
        let r = call(method, &path, token, Some(body)).await;
        assert_eq!(r.status.as_u16(), 422, "{name}.{field} empty: {}", r.text);
        tabled.insert(format!("{name}.{field}"));
    }
    for (name, s) in doc["components"]["schemas"].as_object().unwrap() {
        for (field, prop) in s["properties"].as_object().into_iter().flatten() {
            if prop.get("minLength").is_some() {
                assert!(tabled.contains(&format!("{name}.{field}")), "{name}.{field} has minLength but no test");
            }
        }
        // A required text field of a request either has minLength or may be empty on purpose.
        if name.ends_with("Request") {
            for field in s["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let prop = &s["properties"][field];
                if prop["type"] == "string" {
                    assert!(prop.get("minLength").is_some(), "{name}.{field} is required text without minLength");
                }
            }
        }
    }

    // 403 on claim and unclaim: documented, and given to a user who may see a task
    // but no longer work it (left the group after completing it).
    for op in ["claim", "unclaim"] {
        assert!(doc["paths"][format!("/api/v1/tasks/{{id}}/{op}")]["post"]["responses"]["403"].is_object(), "{op}");
    }
    let inst =
        call(Method::POST, "/api/v1/instances", SATO, Some(json!({ "process": "bench-usertask" }))).await.expect(201);
    let t = inst["open_tasks"][0]["id"].as_str().unwrap().to_string();
    let done = json!({ "variables": { "approved": true } });
    call(Method::POST, &format!("/api/v1/tasks/{t}/complete"), KATO, Some(done)).await.expect(200);
    let yaml =
        std::fs::read_to_string(root().join("config/users.yaml")).unwrap().replace("groups: [staff]", "groups: []");
    users.replace(nagare::server::auth::Users::from_yaml("users.yaml", &yaml).unwrap());
    for op in ["claim", "unclaim"] {
        call(Method::POST, &format!("/api/v1/tasks/{t}/{op}"), KATO, None).await.error(403, "forbidden");
    }
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------- finding 11

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_in_a_json_body_are_refused_naming_the_key() {
    let api = Api::start(sample_users()).await;
    let body = r#"{"process":"expense-approval","variables":{"件名":"出張","金額":1000,"金額":1000000,"費目":"交通費","利用日":"2026-11-20"}}"#;
    let e = api.post_raw(SATO, "/api/v1/instances", "application/json", body.as_bytes().to_vec()).await;
    let e = e.error(422, "duplicate-key");
    assert_eq!((e["details"]["key"].as_str(), e["details"]["path"].as_str()), (Some("金額"), Some("variables.金額")));
    assert!(e["message"].as_str().unwrap().contains("金額"), "{e}");
    assert_eq!(e["details"]["line"], 1);
    // At the top, and deep inside lists.
    let body = r#"{"process":"a","process":"b"}"#;
    let e = api.post_raw(SATO, "/api/v1/instances", "application/json", body.as_bytes().to_vec()).await;
    assert_eq!(e.error(422, "duplicate-key")["details"]["path"], "process");
    let body = r#"{"process":"bench-usertask","variables":{"明細":[{"a":1},{"b":1,"b":2}]}}"#;
    let e = api.post_raw(SATO, "/api/v1/instances", "application/json", body.as_bytes().to_vec()).await;
    assert_eq!(e.error(422, "duplicate-key")["details"]["path"], "variables.明細[1].b");
    // Nothing was started; the same keys once each still work.
    let list = api.get(ADMIN, "/api/v1/instances").await.expect(200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    api.start_expense(SATO, 1000).await;
    api.finish().await;
}

// ------------------------------------------------------- framework errors as JSON

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_the_framework_answers_has_the_json_error_body() {
    let (server, _) = serve(Limits::default()).await;
    let base = server.url();
    let http = reqwest::Client::new();
    let sato = bearer(SATO);
    let url = |p: &str| format!("{base}{p}");
    // 413: larger than the body limit.
    let big = format!(r#"{{"process":"bench-usertask","variables":{{"x":"{}"}}}}"#, "a".repeat(1_100_000));
    send(&http, Method::POST, url("/api/v1/instances"), Some(&sato), Some(("application/json", big.into_bytes())))
        .await
        .error(413, "body-too-large");
    // 414: a request target over 8 KiB.
    let long = format!("/api/v1/instances?process={}", "p".repeat(9000));
    send(&http, Method::GET, url(&long), Some(&sato), None).await.error(414, "uri-too-long");
    // 431: headers over 16 KiB, or over 100 of them.
    let r = http.get(url("/api/v1/tasks")).header("authorization", &sato).header("x-big", "h".repeat(20_000));
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 431);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "headers-too-large");
    let mut r = http.get(url("/api/v1/tasks")).header("authorization", &sato);
    for i in 0..120 {
        r = r.header(format!("x-h{i}"), "1");
    }
    assert_eq!(r.send().await.unwrap().json::<Value>().await.unwrap()["code"], "headers-too-large");
    // 405, 404.
    send(&http, Method::PATCH, url("/api/v1/tasks"), Some(&sato), None).await.error(405, "method-not-allowed");
    send(&http, Method::GET, url("/api/v1/nothing/here"), Some(&sato), None).await.error(404, "no-route");
    // 400: malformed JSON, a body of the wrong shape, a bad path or query parameter.
    let post = |body: &'static [u8], ct: &'static str| {
        send(&http, Method::POST, url("/api/v1/instances"), Some(&sato), Some((ct, body.to_vec())))
    };
    post(b"{\"process\": ", "application/json").await.error(400, "malformed-json");
    post(b"{\"process\": 5}", "application/json").await.error(400, "invalid-body");
    send(&http, Method::GET, url("/api/v1/instances/x"), Some(&sato), None).await.error(400, "bad-path");
    // 415: not JSON.
    post(b"process=x", "application/x-www-form-urlencoded").await.error(415, "unsupported-media-type");
    // The webhook reads its body with the same limits.
    let big = vec![b' '; 1_100_000];
    send(&http, Method::POST, url("/hooks/kintone/x"), None, Some(("application/json", big)))
        .await
        .error(413, "body-too-large");
    server.shutdown().await.unwrap();
}

// ------------------------------------------------------------ `nagare serve` flags

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_flags_set_the_limits_and_nonsense_values_are_refused() {
    use crate::served::{nagare, Served};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (flag, value) in
        [("--header-timeout", "0s"), ("--body-timeout", "soon"), ("--idle-timeout", "48h"), ("--max-connections", "0")]
    {
        let out = nagare(&data).args(["serve", "--addr", "127.0.0.1:0", flag, value]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag) && err.contains(value), "{flag} {value}: {err}");
    }
    // The flags reach the accept loop: a head never finished is dropped after 300 ms.
    let mut cmd = nagare(&data);
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--header-timeout", "300ms", "--max-connections", "4"]);
    let served = Served::start(cmd).await;
    let addr: std::net::SocketAddr = served.url.trim_start_matches("http://").parse().unwrap();
    let (resp, took) = exchange(addr, b"GET /health HTTP/1.1\r\n").await;
    raw_error(&resp, 408, "header-timeout");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");
    let (exit, log) = served.stop().await;
    assert!(exit.success(), "{log}");
}
