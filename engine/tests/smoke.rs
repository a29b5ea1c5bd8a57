use nagare_engine::runtime::{Outcome, Status};
use nagare_engine::store::TaskQuery;
use nagare_engine::{Engine, Executor, FnConnector, StartOptions, Vars};
use serde_json::json;

mod common;
use common::TestStore;

const YAML: &str = r#"
id: 受注
lanes:
  担当: { groups: [staff] }
variables:
  金額: { type: number, required: true }
  結果: { type: string }
  承認: { type: bool }
start: { next: 取得 }
nodes:
  取得:
    service: test.double
    with: { x: 金額 }
    set: { 金額: result.y }
    next: 分岐
  分岐:
    parallel: [確認, 計算]
  確認:
    user_task: 金額の確認
    lane: 担当
    form: { 承認: required, 金額: readonly }
    next: 合流
  計算:
    script: '結果 = "計算済 " + 金額;'
    next: 合流
  合流: { join: 分岐, next: 完了 }
  完了: { end: }
"#;

#[tokio::test]
async fn service_fork_user_task_join() {
    for store in TestStore::all("service_fork_user_task_join") {
        service_fork_user_task_join_on(&store).await;
    }
}

async fn service_fork_user_task_join_on(store: &TestStore) {
    let engine = store
        .builder()
        .connector(
            "test.double",
            FnConnector(|c: &nagare_engine::Call| Ok(json!({ "y": c.input["x"].as_i64().unwrap() * 2 }))),
        )
        .build()
        .unwrap();
    let d = engine.deploy("受注.yaml", YAML).unwrap();
    assert_eq!(d.version, 1);
    let vars: Vars = [("金額".to_string(), json!(21))].into();
    let inst = engine.start("受注", vars, StartOptions::default()).unwrap();
    assert_eq!(inst.status, Status::Running);
    assert_eq!(Executor::new(engine.clone()).run_until_idle().await, 1);
    let tasks = engine.tasks(&TaskQuery { groups: Some(vec!["staff".into()]), ..Default::default() }).unwrap();
    assert_eq!(tasks.len(), 1);
    let bad = engine.complete(&tasks[0].id, "sato", Vars::new(), Outcome::Next).unwrap_err();
    assert!(bad.to_string().contains("承認: required"), "{bad}");
    let done =
        engine.complete(&tasks[0].id, "sato", [("承認".to_string(), json!(true))].into(), Outcome::Next).unwrap();
    assert_eq!(done.status, Status::Completed, "{done:#?}");
    assert_eq!(done.vars["金額"], json!(42));
    assert_eq!(done.vars["結果"], json!("計算済 42"));
    let again = engine.complete(&tasks[0].id, "sato", Vars::new(), Outcome::Next).unwrap_err();
    assert!(matches!(again, nagare_engine::EngineError::Conflict(_)), "{again}");
    let hist: Vec<&str> = engine.history(inst.id).unwrap().iter().map(|h| h.event.name()).collect();
    assert_eq!(hist.first(), Some(&"started"));
    assert_eq!(hist.last(), Some(&"completed"));
    assert_eq!(hist.iter().filter(|h| **h == "joined").count(), 1);
}

/// An async closure serves a connector (`AsyncFnConnector`), and `data_dir` takes
/// any path-like value.
#[tokio::test]
async fn an_async_closure_is_a_connector() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .data_dir(dir.path().join("data"))
        .unwrap()
        .connector(
            "test.double",
            nagare_engine::AsyncFnConnector(|c: nagare_engine::Call| async move {
                tokio::task::yield_now().await;
                Ok(json!({ "y": c.input["x"].as_i64().unwrap_or(0) * 2 }))
            }),
        )
        .build()
        .unwrap();
    let yaml = "id: p\nvariables:\n  y: { type: number }\nstart: { next: call }\nnodes:\n  call: { service: test.double, with: { x: 21 }, set: { y: result.y }, next: done }\n  done: { end: }\n";
    engine.deploy("p.yaml", yaml).unwrap();
    let inst = engine.start("p", Vars::new(), StartOptions::default()).unwrap();
    Executor::new(engine.clone()).run_until_idle().await;
    let done = engine.instance(inst.id).unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.vars["y"], json!(42));
}
