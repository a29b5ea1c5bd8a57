//! An embedding app with a connector of its own, next to nagare's built-in ones.
//!
//! `myapp.reserve` reserves stock in the app's own inventory. It shows what a
//! connector has to get right:
//! - it is async (`Connector::call` returns a future), so it may await a database;
//! - it is idempotent: the engine may run a call again after a crash or timeout with
//!   the same `idempotency_key`, and the connector returns the first answer;
//! - it classifies failures: `Business` (out of stock, a code the process routes on
//!   or sees in the incident), `Retryable` (the store is busy), `Fatal` (bad input).
//!
//! Run: `cargo run --example custom_connector` (CI runs it; it checks its results).

use nagare_engine::connector::BoxFuture;
use nagare_engine::runtime::{Outcome, Status};
use nagare_engine::{Call, Connector, ConnectorError, Engine, Executor, StartOptions, Vars};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const PROCESS: &str = r#"
id: 出荷依頼
name: 出荷依頼 (custom connector example)
lanes:
  倉庫: { groups: [warehouse] }
variables:
  品番: { type: string, required: true }
  数量: { type: number, required: true }
  引当番号: { type: string }
  出荷済: { type: bool }
start: { next: 在庫引当 }
nodes:
  在庫引当:
    service: myapp.reserve              # the app's own connector
    with: { sku: 品番, qty: 数量 }
    set: { 引当番号: result.reservation }
    retry: { attempts: 3, backoff: 1s..10s }
    next: 出荷
  出荷:
    user_task: 出荷作業
    lane: 倉庫
    form: { 引当番号: readonly, 出荷済: required }
    next: 完了
  完了: { end: }
"#;

/// The app's inventory: stock per SKU and the reservations made, by idempotency key.
#[derive(Default)]
struct Inventory {
    stock: HashMap<String, i64>,
    reservations: HashMap<String, String>,
}

/// `myapp.reserve`: `{sku, qty}` → `{reservation}`.
struct Reserve {
    inventory: Arc<Mutex<Inventory>>,
}

impl Reserve {
    async fn reserve(&self, call: &Call) -> Result<Value, ConnectorError> {
        let sku = call.input["sku"].as_str().ok_or_else(|| ConnectorError::Fatal("`sku` is missing".into()))?;
        let qty = call.input["qty"].as_i64().filter(|q| *q > 0).ok_or_else(|| {
            ConnectorError::Fatal(format!("`qty` must be a positive whole number, got {}", call.input["qty"]))
        })?;
        // A real connector would await its database or service here.
        tokio::task::yield_now().await;
        let mut inv = self.inventory.lock().map_err(|_| ConnectorError::Retryable("inventory is busy".into()))?;
        if let Some(done) = inv.reservations.get(&call.idempotency_key) {
            return Ok(json!({ "reservation": done })); // the same call again: same answer
        }
        let have = inv.stock.get(sku).copied().unwrap_or(0);
        if have < qty {
            return Err(ConnectorError::Business {
                code: "OUT_OF_STOCK".into(),
                message: format!("{sku}: {have} in stock, {qty} wanted"),
            });
        }
        inv.stock.insert(sku.to_string(), have - qty);
        let id = format!("R-{}", inv.reservations.len() + 1);
        inv.reservations.insert(call.idempotency_key.clone(), id.clone());
        Ok(json!({ "reservation": id }))
    }
}

impl Connector for Reserve {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin(self.reserve(call))
    }
}

fn vars(pairs: &[(&str, Value)]) -> Vars {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let inventory = Arc::new(Mutex::new(Inventory::default()));
    inventory.lock().expect("fresh").stock.insert("NG-001".into(), 5);

    // nagare's own connectors (echo, http.request, kintone.*) plus the app's.
    let mut registry = nagare_connectors::builtin();
    registry.register("myapp.reserve", Reserve { inventory: inventory.clone() });
    let dir = tempfile::tempdir()?;
    let engine = Engine::builder().data_dir(dir.path())?.connectors(registry).build()?;
    engine.deploy("出荷依頼.yaml", PROCESS)?;
    let exec = Executor::new(engine.clone());

    // 3 of 5 in stock: reserved, then shipped.
    let a =
        engine.start("出荷依頼", vars(&[("品番", json!("NG-001")), ("数量", json!(3))]), StartOptions::default())?;
    exec.run_until_idle().await;
    let a = engine.instance(a.id)?;
    assert_eq!(a.vars["引当番号"], json!("R-1"));
    let task = a.open_task_ids().next().ok_or("the shipping task is open")?.to_string();
    let a = engine.complete(&task, "yamamoto", vars(&[("出荷済", json!(true))]), Outcome::Next)?;
    assert_eq!(a.status, Status::Completed);
    println!("instance {}: reserved {} and shipped", a.id, a.vars["引当番号"]);

    // 4 more: only 2 left, a business error. It stops this instance with an incident
    // carrying the code; after restocking, a retry goes on.
    let b =
        engine.start("出荷依頼", vars(&[("品番", json!("NG-001")), ("数量", json!(4))]), StartOptions::default())?;
    exec.run_until_idle().await;
    let b = engine.instance(b.id)?;
    assert_eq!(b.status, Status::Incident);
    let incident = &b.incidents[0];
    assert!(incident.message.contains("[OUT_OF_STOCK] NG-001: 2 in stock, 4 wanted"), "{}", incident.message);
    println!("instance {}: incident: {}", b.id, incident.message);
    inventory.lock().expect("not poisoned").stock.insert("NG-001".into(), 10);
    engine.retry_incident(b.id, incident.id, Vars::new(), "admin")?;
    exec.run_until_idle().await;
    let b = engine.instance(b.id)?;
    assert_eq!(b.vars["引当番号"], json!("R-2"));
    assert_eq!(inventory.lock().expect("not poisoned").stock["NG-001"], 6);
    println!("instance {}: restocked, retried, reserved {}", b.id, b.vars["引当番号"]);
    Ok(())
}
