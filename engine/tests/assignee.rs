//! `assignee:` on a user task: the task opens already given to the user an
//! expression names (typically `started_by`), so only that user may complete it;
//! `()` leaves it to the lane's groups; anything but a user id is an incident.

use nagare_engine::runtime::{HistoryEvent, Outcome, Rejection, Status};
use nagare_engine::store::TaskQuery;
use nagare_engine::{Engine, EngineError, StartOptions, Vars};
use serde_json::json;

const PROCESS: &str = r#"
id: own-task
lanes: { 申請者: { groups: [staff] } }
variables:
  担当: { type: string }
  番号: { type: number }
start: { next: 分岐 }
nodes:
  分岐:
    exclusive:
      - { when: '番号 == 1', next: 数値 }
    default: 取り下げ
  取り下げ:
    user_task: 取り下げる
    lane: 申請者
    assignee: 'if 担当 == () { started_by } else { 担当 }'
    next: done
  数値:
    user_task: 数値の担当
    lane: 申請者
    assignee: 番号
    next: done
  done: { end: }
"#;

fn engine() -> Engine {
    let e = Engine::builder().in_memory().build().unwrap();
    e.deploy("own.yaml", PROCESS).unwrap();
    e
}

fn start(e: &Engine, vars: serde_json::Value, by: &str) -> u64 {
    let vars: Vars = vars.as_object().unwrap().clone().into_iter().collect();
    e.start("own-task", vars, StartOptions { by: Some(by.into()), ..Default::default() }).unwrap().id
}

#[test]
fn the_task_opens_given_to_the_starter_and_only_they_complete_it() {
    let e = engine();
    let id = start(&e, json!({}), "sato");
    let tasks = e.tasks(&TaskQuery::default()).unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].assignee.as_deref(), Some("sato"));
    let task = tasks[0].id.clone();
    // A colleague in the same group may neither complete nor claim it.
    let err = e.complete(&task, "kato", Vars::new(), Outcome::Next).unwrap_err();
    assert!(matches!(err, EngineError::Conflict(Rejection::ClaimedByOther { .. })), "{err:?}");
    assert!(e.claim(&task, "kato").is_err());
    let done = e.complete(&task, "sato", Vars::new(), Outcome::Next).unwrap();
    assert_eq!(done.status, Status::Completed);
    let assigned = e
        .history(id)
        .unwrap()
        .into_iter()
        .any(|h| matches!(h.event, HistoryEvent::TaskAssigned { to: Some(ref u), .. } if u == "sato"));
    assert!(assigned, "the history says who the task went to");
}

#[test]
fn an_expression_picks_the_user_and_a_non_user_id_is_an_incident() {
    let e = engine();
    start(&e, json!({ "担当": "kato" }), "sato");
    assert_eq!(e.tasks(&TaskQuery::default()).unwrap()[0].assignee.as_deref(), Some("kato"));
    let id = start(&e, json!({ "番号": 1 }), "sato");
    let inst = e.instance(id).unwrap();
    assert_eq!(inst.status, Status::Incident);
    assert!(inst.incidents[0].message.contains("expected a user id"), "{}", inst.incidents[0].message);
}

#[test]
fn assignee_belongs_to_user_tasks_only() {
    let e = Engine::builder().in_memory().build().unwrap();
    let bad = "id: x\nstart: { next: s }\nnodes:\n  s: { script: 'let a = 1;', assignee: started_by, next: d }\n  d: { end: }\n";
    let err = e.deploy("x.yaml", bad).unwrap_err().to_string();
    assert!(err.contains("assignee"), "{err}");
}
