//! Embedding nagare in an application.
//!
//! An app opens an engine on its own data directory, registers a connector of its
//! own, deploys a process from a string and starts an instance. The executor runs
//! the service step in the background; the app learns what happens from the
//! engine's events (no polling): it completes the approval task when it opens, as
//! a person would, and stops when the instance completes.
//!
//! From async code it uses [`AsyncEngine`]: every engine call waits for the disk
//! (fsync), so it runs on tokio's blocking pool, not on the app's worker threads.
//!
//! Run: `cargo run --example embed`

use nagare_engine::runtime::{Outcome, Status};
use nagare_engine::{
    AsyncEngine, Call, ConnectorError, Engine, EngineEvent, EventKind, Executor, FnConnector, StartOptions, Vars,
};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

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
    let engine: AsyncEngine = Engine::builder()
        .data_dir(dir.path())?
        .connector("myapp.credit_check", FnConnector(credit_check))
        .build()?
        .asynchronous();

    let deployed = engine.deploy("見積承認.yaml", PROCESS).await?;
    println!("deployed {} v{}", deployed.id, deployed.version);

    // Subscribe before acting: events are sent from now on, once each commit is durable.
    let mut events = engine.subscribe();
    // Service steps run in the executor, in the background until the app stops.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let executor = Executor::new(engine.blocking().clone());
    let running = tokio::spawn(async move { executor.run(async { stopped.await.unwrap_or(()) }).await });

    let vars: Vars = [("顧客".to_string(), json!("株式会社ながれ")), ("金額".to_string(), json!(480_000))].into();
    let inst = engine.start("見積承認", vars, StartOptions { by: Some("app".into()), ..Default::default() }).await?;

    let finished = loop {
        let event: EngineEvent = match events.recv().await {
            Ok(e) => e,
            // Fell behind: the missed events are gone; re-read the instance instead.
            Err(RecvError::Lagged(n)) => {
                println!("missed {n} events; re-reading instance {}", inst.id);
                let now = engine.instance(inst.id).await?;
                if now.status.is_finished() {
                    break (now.status, None);
                }
                continue;
            }
            Err(RecvError::Closed) => return Err("the engine went away".into()),
        };
        if event.instance != inst.id {
            continue;
        }
        println!("event: {} {}", event.kind.name(), serde_json::to_string(&event.kind)?);
        match event.kind {
            EventKind::TaskOpened { task } => {
                println!("open task {}: {}", task.id, task.title);
                let data: Vars = [("承認".to_string(), json!(true))].into();
                engine.complete(task.id, "suzuki", data, Outcome::Next).await?;
            }
            EventKind::InstanceCompleted { status, end_node } => break (status, end_node),
            EventKind::InstanceCancelled { status, .. } => break (status, None),
            EventKind::IncidentRaised { message, .. } => return Err(format!("incident: {message}").into()),
            _ => {}
        }
    };
    let _ = stop.send(());
    running.await?;

    assert_eq!(finished, (Status::Completed, Some("完了".to_string())));
    println!("instance {} is completed at 完了; history:", inst.id);
    for h in engine.history(inst.id).await? {
        println!("  {:>2} {:<10} {}", h.seq, h.node.as_deref().unwrap_or("-"), h.event.name());
    }
    Ok(())
}
