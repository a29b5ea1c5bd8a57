//! The harness: start a server, call it as a user, check the document at the end.

use nagare::server::auth::{Caller, Users};
use nagare::server::Server;
use nagare_engine::store::Durability;
use nagare_engine::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The demo tokens of `config/users.yaml`.
pub const ADMIN: &str = "demo-admin";
pub const SATO: &str = "demo-sato";
pub const KATO: &str = "demo-kato";
pub const TANAKA: &str = "demo-tanaka";
pub const YAMADA: &str = "demo-yamada";
pub const SUZUKI: &str = "demo-suzuki";
pub const WORKER: &str = "demo-worker";

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample_users() -> Users {
    Users::load(&root().join("config/users.yaml")).expect("config/users.yaml loads")
}

/// `n` users `u00`.. in `groups`, each with the token `token-uNN`; and `admin`.
pub fn many_users(n: usize, groups: &[&str]) -> Users {
    let mut list: Vec<(Caller, Vec<String>)> = (0..n)
        .map(|i| {
            let id = format!("u{i:02}");
            let caller = Caller {
                id: id.clone(),
                name: None,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                admin: false,
                acting_for: vec![],
            };
            (caller, vec![format!("token-{id}")])
        })
        .collect();
    list.push((
        Caller { id: "admin".into(), name: None, groups: vec![], admin: true, acting_for: vec![] },
        vec![ADMIN.into()],
    ));
    Users::from_callers(list)
}

pub struct Api {
    pub server: Option<Server>,
    pub base: String,
    pub http: reqwest::Client,
    pub engine: Engine,
    pub _dir: Option<tempfile::TempDir>,
}

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// Assert the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        self.body
    }

    /// Assert the status; the body as text.
    #[track_caller]
    pub fn expect_text(self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        self.text
    }

    /// Assert an error response: status, code, and the `{code, message, details}` shape.
    #[track_caller]
    pub fn error(self, status: u16, code: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(body["code"], code, "error code; body: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "a message: {body}");
        assert!(body["details"].is_object(), "details object: {body}");
        body
    }
}

impl Api {
    /// A server over an in-memory engine with processes/expense-approval.yaml and
    /// bench-usertask.yaml deployed.
    pub async fn start(users: Users) -> Api {
        let engine = Engine::builder().in_memory().connectors(nagare_connectors::builtin()).build().unwrap();
        Self::with_engine(engine, users, None).await
    }

    /// A server over a durable engine in `dir`.
    pub async fn start_durable(users: Users, dir: tempfile::TempDir) -> Api {
        let engine = Engine::builder()
            .data_dir_with(dir.path(), Durability::Flush)
            .unwrap()
            .connectors(nagare_connectors::builtin())
            .build()
            .unwrap();
        Self::with_engine(engine, users, Some(dir)).await
    }

    /// A server over `engine` (built by the test, e.g. with external connectors),
    /// with the same processes deployed as [`Api::start`].
    pub async fn start_with(engine: Engine, users: Users) -> Api {
        Self::with_engine(engine, users, None).await
    }

    async fn with_engine(engine: Engine, users: Users, dir: Option<tempfile::TempDir>) -> Api {
        for f in ["processes/expense-approval.yaml", "processes/bench-usertask.yaml"] {
            let text = std::fs::read_to_string(root().join(f)).unwrap();
            engine.deploy(f, &text).unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::start(listener, engine.clone(), users, std::future::pending()).unwrap();
        let base = server.url();
        Api { server: Some(server), base, http: reqwest::Client::new(), engine, _dir: dir }
    }

    pub async fn call(&self, method: Method, token: Option<&str>, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text }
    }

    pub async fn get(&self, token: &str, path: &str) -> Resp {
        self.call(Method::GET, Some(token), path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Resp {
        self.call(Method::POST, Some(token), path, Some(body)).await
    }

    /// A raw body with a content type.
    pub async fn post_raw(&self, token: &str, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Resp { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    }

    /// Start a 経費精算 as `token` for `amount` yen; returns the instance.
    pub async fn start_expense(&self, token: &str, amount: u64) -> Value {
        let vars = json!({ "件名": "大阪出張", "費目": "交通費", "金額": amount, "利用日": "2026-11-20" });
        self.post(token, "/api/v1/instances", json!({ "process": "expense-approval", "variables": vars }))
            .await
            .expect(201)
    }

    /// The open task of `instance` at `node`, as the admin sees it.
    pub async fn task_at(&self, instance: u64, node: &str) -> String {
        let inst = self.get(ADMIN, &format!("/api/v1/instances/{instance}")).await.expect(200);
        inst["open_tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["node"] == node)
            .unwrap_or_else(|| panic!("no open task at {node}: {inst}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Poll the instance until `done` holds (the executor runs service calls in the
    /// background); bounded.
    pub async fn wait_for(&self, instance: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.get(ADMIN, &format!("/api/v1/instances/{instance}")).await.expect(200);
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "instance {instance} did not get there: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Check every (method, route, status) served so far is documented, then stop.
    pub async fn finish(mut self) {
        let doc = self.get(ADMIN, "/api/v1/openapi.json").await.expect(200);
        for ((method, route, status), _) in self.http_stats().await {
            if route == "unmatched" || status == 405 {
                continue; // fallbacks, documented in the info text, not per operation
            }
            let op = &doc["paths"][&route][method.to_lowercase()];
            assert!(op.is_object(), "{method} {route} answered but is not in the document");
            assert!(
                op["responses"][status.to_string()].is_object(),
                "{method} {route} answered {status}, which its document entry does not list: {}",
                op["responses"]
            );
        }
        self.server.take().unwrap().shutdown().await.expect("clean shutdown");
    }

    /// The server's request counters, parsed back from `/metrics`.
    pub async fn http_stats(&self) -> Vec<((String, String, u16), u64)> {
        let text = self.get(ADMIN, "/metrics").await.expect_text(200);
        let mut out = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("nagare_http_requests_total{")) {
            let labels = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
            let get = |k: &str| {
                let start = labels.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
                labels[start..].split('"').next().unwrap().to_string()
            };
            let count = line.rsplit(' ').next().unwrap().parse().unwrap();
            out.push(((get("method"), get("route"), get("status").parse().unwrap()), count));
        }
        out
    }
}
