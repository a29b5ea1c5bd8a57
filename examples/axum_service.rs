//! An axum service embedding nagare, told by the engine's events what happened.
//!
//! Orders are instances of a small process whose service step reserves stock
//! through the app's own connector. `POST /orders` starts one; `GET /orders/{id}`
//! answers from the app's own table of orders, which a listener keeps up to date
//! from [`Engine::subscribe`] events: the instance finishes inside the executor,
//! in the background, and the app hears of it without polling anything
//! (`?wait=true` holds the answer until the order is no longer pending).
//!
//! It survives a restart: the warehouse is closed at first, so the reservation
//! keeps failing and is retried; the service stops with the order pending; it
//! starts again on the same data directory, rebuilds its table from the store
//! (subscribing *before* reading, so nothing falls between the two), the
//! executor retries the due call, and the order becomes `reserved`.
//!
//! All engine calls go through [`AsyncEngine`] (the blocking pool), never on the
//! runtime's worker threads.
//!
//! Run: `cargo run --example axum_service`

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use nagare_engine::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

const PROCESS: &str = r#"
id: order
variables:
  item: { type: string, required: true }
  reservation: { type: string }
start: { next: reserve }
nodes:
  reserve:
    service: shop.reserve
    with: { item: item }
    set: { reservation: result.reservation }
    retry: { attempts: 50, backoff: 100ms..400ms }
    next: done
  done: { end: }
"#;

/// The app's connector: reserves stock while the warehouse is open.
struct Reserve {
    open: Arc<AtomicBool>,
}

impl Connector for Reserve {
    fn call<'a>(&'a self, call: &'a Call) -> nagare_engine::connector::BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin(async move {
            if !self.open.load(Ordering::SeqCst) {
                return Err(ConnectorError::Retryable("the warehouse is closed".into()));
            }
            let item = call.input["item"].as_str().unwrap_or("?");
            Ok(json!({ "reservation": format!("R-{}-{item}", call.instance) }))
        })
    }
}

/// What the service knows of its orders: kept from events, rebuilt at start.
struct App {
    engine: AsyncEngine,
    orders: Mutex<HashMap<InstanceId, String>>,
    /// Bumped whenever an order changes, for `?wait=true`.
    changed: watch::Sender<u64>,
}

impl App {
    fn set(&self, id: InstanceId, state: impl Into<String>) {
        self.orders.lock().unwrap().insert(id, state.into());
        self.changed.send_modify(|n| *n += 1);
    }

    fn state(&self, id: InstanceId) -> Option<String> {
        self.orders.lock().unwrap().get(&id).cloned()
    }

    /// Read every order from the store (at start, and after falling behind).
    async fn reload(&self) -> Result<(), EngineError> {
        let filter = InstanceFilter { process: Some("order".into()), ..Default::default() };
        for inst in self.engine.instances(filter).await? {
            self.set(inst.id, state_of(&inst));
        }
        Ok(())
    }
}

fn state_of(inst: &Instance) -> String {
    match inst.status {
        Status::Completed => {
            format!("reserved {}", inst.vars.get("reservation").and_then(Value::as_str).unwrap_or(""))
        }
        Status::Running => "pending".into(),
        Status::Cancelled => "cancelled".into(),
        Status::Incident => "needs attention".into(),
        _ => "unknown".into(),
    }
}

/// Keep the table up to date from the engine's events.
async fn follow(app: Arc<App>, mut events: broadcast::Receiver<EngineEvent>) {
    loop {
        match events.recv().await {
            Ok(e) if e.process == "order" => match e.kind {
                EventKind::InstanceStarted { .. } => app.set(e.instance, "pending"),
                EventKind::InstanceCompleted { .. } | EventKind::InstanceCancelled { .. } => {
                    // The event says that it finished; the instance says with what.
                    match app.engine.instance(e.instance).await {
                        Ok(inst) => app.set(e.instance, state_of(&inst)),
                        Err(err) => eprintln!("cannot read order {}: {err}", e.instance),
                    }
                }
                EventKind::IncidentRaised { message, .. } => app.set(e.instance, format!("needs attention: {message}")),
                _ => {}
            },
            Ok(_) => {}
            // Missed some: re-read the state instead.
            Err(RecvError::Lagged(_)) => {
                if let Err(err) = app.reload().await {
                    eprintln!("cannot re-read orders: {err}");
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
}

async fn create(State(app): State<Arc<App>>, Json(o): Json<NewOrder>) -> Result<Json<Value>, (StatusCode, String)> {
    let vars: Vars = [("item".to_string(), json!(o.item))].into();
    let opts = StartOptions { by: Some("shop".into()), ..Default::default() };
    let inst = app.engine.start("order", vars, opts).await.map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Json(json!({ "id": inst.id })))
}

#[derive(Deserialize)]
struct Wait {
    #[serde(default)]
    wait: bool,
}

async fn show(
    State(app): State<Arc<App>>,
    Path(id): Path<InstanceId>,
    Query(w): Query<Wait>,
) -> Result<Json<Value>, StatusCode> {
    let mut changed = app.changed.subscribe();
    let mut state = app.state(id).ok_or(StatusCode::NOT_FOUND)?;
    if w.wait {
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            while state == "pending" {
                if changed.changed().await.is_err() {
                    break;
                }
                state = app.state(id).unwrap_or_default();
            }
        });
        let _ = waited.await;
        state = app.state(id).unwrap_or_default();
    }
    Ok(Json(json!({ "id": id, "state": state })))
}

/// One run of the service on `dir`: engine, executor, listener and HTTP server.
struct Service {
    url: String,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    listener: tokio::task::JoinHandle<()>,
}

impl Service {
    async fn start(
        dir: &std::path::Path,
        warehouse_open: Arc<AtomicBool>,
    ) -> Result<Service, Box<dyn std::error::Error>> {
        let engine = Engine::builder()
            .data_dir(dir)?
            .connector("shop.reserve", Reserve { open: warehouse_open })
            .build()?
            .asynchronous();
        engine.deploy("order.yaml", PROCESS).await?;
        let app = Arc::new(App { engine: engine.clone(), orders: Mutex::default(), changed: watch::channel(0).0 });
        // Subscribe first, then read: an order that finishes in between is in both.
        let events = engine.subscribe();
        app.reload().await?;
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let executor = Executor::new(engine.blocking().clone());
        let mut tasks = vec![tokio::spawn({
            let until = until_stopped(stopped.clone());
            async move { executor.run(until).await }
        })];
        let listener = tokio::spawn(follow(app.clone(), events));
        let router = Router::new().route("/orders", post(create)).route("/orders/{id}", get(show)).with_state(app);
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", tcp.local_addr()?);
        let until = until_stopped(stopped);
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(tcp, router).with_graceful_shutdown(until).await;
            if let Err(e) = served {
                eprintln!("server error: {e}");
            }
        }));
        Ok(Service { url, stop, tasks, listener })
    }

    /// Stop the server and the executor and let go of the data directory.
    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // The listener holds the app (and its engine handle) until it ends.
        self.listener.abort();
        let _ = self.listener.await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let open = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::new();

    // First run: the warehouse is closed, the reservation is retried and the order stays pending.
    let service = Service::start(dir.path(), open.clone()).await?;
    let created: Value =
        http.post(format!("{}/orders", service.url)).json(&json!({ "item": "茶碗" })).send().await?.json().await?;
    let id = created["id"].as_u64().ok_or("no id")?;
    let shown: Value = http.get(format!("{}/orders/{id}", service.url)).send().await?.json().await?;
    println!("order {id}: {}", shown["state"]);
    assert_eq!(shown["state"], "pending");
    service.stop().await;
    println!("service stopped with order {id} pending");

    // Second run on the same data: the warehouse opens, the executor retries the
    // call, the instance finishes, and the app hears it from the events.
    open.store(true, Ordering::SeqCst);
    let service = Service::start(dir.path(), open).await?;
    let shown: Value = http.get(format!("{}/orders/{id}?wait=true", service.url)).send().await?.json().await?;
    println!("after the restart, order {id}: {}", shown["state"]);
    assert_eq!(shown["state"], format!("reserved R-{id}-茶碗"));
    service.stop().await;
    Ok(())
}
