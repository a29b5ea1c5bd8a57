//! Embedding nagare in an application.
//!
//! An app opens an engine on its own data directory, registers a connector of its
//! own, deploys a process from a string, starts an instance, lets the executor run
//! the service step, and completes the user task as a person would.
//!
//! Run: `cargo run --example embed`

use nagare_engine::runtime::{Outcome, Status};
use nagare_engine::{Call, ConnectorError, Engine, Executor, FnConnector, StartOptions, Vars};
use serde_json::json;

const PROCESS: &str = r#"
id: 見積承認
name: 見積承認 (embedding example)
lanes:
  営業部長: { groups: [sales-managers] }
variables:
  顧客: { type: string, required: true }
  金額: { type: number, required: true }
  与信: { type: choice, options: [OK, NG] }
  承認: { type: bool }
start: { next: 与信確認 }
nodes:
  与信確認:
    service: myapp.credit_check        # the app's own connector
    with: { customer: 顧客, amount: 金額 }
    set: { 与信: result.rating }
    next: 判定
  判定:
    exclusive:
      - when: 与信 == "OK"
        next: 部長承認
    default: 却下
  部長承認:
    user_task: 見積の承認
    lane: 営業部長
    form: { 承認: required, 金額: readonly }
    next: 完了
  却下: { end: }
  完了: { end: }
"#;

/// The app's own connector: any function (or async type implementing `Connector`).
fn credit_check(call: &Call) -> Result<serde_json::Value, ConnectorError> {
    let amount = call.input["amount"].as_f64().ok_or_else(|| ConnectorError::Fatal("amount missing".into()))?;
    Ok(json!({ "rating": if amount <= 1_000_000.0 { "OK" } else { "NG" } }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let engine =
        Engine::builder().data_dir(dir.path())?.connector("myapp.credit_check", FnConnector(credit_check)).build()?;

    let deployed = engine.deploy("見積承認.yaml", PROCESS)?;
    println!("deployed {} v{}", deployed.id, deployed.version);

    let vars: Vars = [("顧客".to_string(), json!("株式会社ながれ")), ("金額".to_string(), json!(480_000))].into();
    let inst = engine.start("見積承認", vars, StartOptions { by: Some("app".into()), ..Default::default() })?;

    // Service steps run in the executor; a server would keep `Executor::run` going.
    Executor::new(engine.clone()).run_until_idle().await;

    let inst = engine.instance(inst.id)?;
    let task = inst.open_task_ids().next().ok_or("expected the approval task to be open")?.to_string();
    println!("open task {task}: {}", engine.task(&task)?.title);

    let done = engine.complete(&task, "suzuki", [("承認".to_string(), json!(true))].into(), Outcome::Next)?;
    assert_eq!(done.status, Status::Completed);
    println!("instance {} is {}; history:", done.id, done.status.as_str());
    for h in engine.history(done.id)? {
        println!("  {:>2} {:<10} {}", h.seq, h.node.as_deref().unwrap_or("-"), h.event.name());
    }
    Ok(())
}
