//! Settings, form rules and a paused timer start through the whole engine: changed
//! at run time without a redeploy, kept across restarts and new versions, seen by
//! running instances from their next step on.

use chrono::{DateTime, Duration, Utc};
use nagare_engine::runtime::{Outcome, Rejection};
use nagare_engine::store::{InstanceFilter, TaskQuery};
use nagare_engine::{Engine, EngineError, Executor, StartOptions, Vars, VirtualClock};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

fn engine_on(dir: &Path, clock: &Arc<VirtualClock>) -> Engine {
    Engine::builder().data_dir(dir).expect("store").clock(clock.clone()).build().expect("engine")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio")
}

fn vars(v: serde_json::Value) -> Vars {
    v.as_object().unwrap().clone().into_iter().collect()
}

const RULES: &str = r#"
id: rules
lanes: { 上長: { groups: [managers] } }
settings:
  mode: { type: choice, options: ["off", optional, required], default: optional }
  上限: { type: number, default: 100 }
variables:
  送付先: { type: list }
  金額: { type: number }
  記録: { type: string }
start:
  rules:
    - when: 'mode == "required" && (送付先 == () || 送付先.len() == 0)'
      field: 送付先
      message: 送付先を1人以上入力してください
    - when: '金額 != () && 金額 > 上限'
      field: 金額
      message: 上限を超えています
  next: 承認
nodes:
  承認:
    user_task: 承認する
    lane: 上長
    form: { 金額: optional }
    rules:
      - { when: '金額 == ()', field: 金額, message: 金額を入力してください }
    next: 記録する
  記録する: { script: '記録 = mode + "/" + 上限;', next: done }
  done: { end: }
"#;

fn field_errors(e: EngineError) -> Vec<(String, String)> {
    match e {
        EngineError::Rejected(Rejection::InvalidData(errors)) => {
            errors.into_iter().map(|e| (e.field, e.problem)).collect()
        }
        other => panic!("expected field errors, got {other:?}"),
    }
}

#[test]
fn start_rules_follow_the_settings_in_force_and_report_every_broken_rule() {
    let clock = Arc::new(VirtualClock::new(t("2026-12-01T09:00:00+09:00")));
    let engine = Engine::builder().in_memory().clock(clock).build().unwrap();
    engine.deploy("rules.yaml", RULES).unwrap();
    // optional: no recipients is fine.
    engine.start("rules", Vars::new(), StartOptions::default()).unwrap();
    engine.change_settings("rules", vars(json!({ "mode": "required", "上限": 50 })), "admin").unwrap();
    let err = engine.start("rules", vars(json!({ "金額": 80 })), StartOptions::default()).unwrap_err();
    let errors = field_errors(err);
    assert_eq!(
        errors,
        [
            ("送付先".to_string(), "送付先を1人以上入力してください".to_string()),
            ("金額".to_string(), "上限を超えています".to_string())
        ]
    );
    engine.start("rules", vars(json!({ "送付先": ["佐藤"], "金額": 50 })), StartOptions::default()).unwrap();
    // null restores the default.
    engine.change_settings("rules", vars(json!({ "上限": null })), "admin").unwrap();
    engine.start("rules", vars(json!({ "送付先": ["佐藤"], "金額": 80 })), StartOptions::default()).unwrap();
}

#[test]
fn a_bad_change_is_refused_whole() {
    let engine = Engine::in_memory();
    engine.deploy("rules.yaml", RULES).unwrap();
    let err =
        engine.change_settings("rules", vars(json!({ "mode": "maybe", "上限": 5, "nosuch": 1 })), "admin").unwrap_err();
    let fields: Vec<String> = field_errors(err).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["mode", "nosuch"]);
    let p = engine.latest("rules").unwrap();
    assert_eq!(
        p.setting_values,
        [("mode".to_string(), json!("optional")), ("上限".to_string(), json!(100))],
        "nothing changed"
    );
    assert!(matches!(engine.change_settings("nope", Vars::new(), "admin"), Err(EngineError::UnknownProcess(_))));
}

#[test]
fn task_rules_and_running_instances_see_changed_settings() {
    let engine = Engine::in_memory();
    engine.deploy("rules.yaml", RULES).unwrap();
    let inst = engine.start("rules", Vars::new(), StartOptions::default()).unwrap();
    let task = engine.tasks(&TaskQuery { instance: Some(inst.id), ..Default::default() }).unwrap().remove(0);
    let err = engine.complete(&task.id, "tanaka", Vars::new(), Outcome::Next).unwrap_err();
    assert_eq!(field_errors(err), [("金額".to_string(), "金額を入力してください".to_string())]);
    // Changed while the instance waits: its script sees the new values.
    engine.change_settings("rules", vars(json!({ "mode": "off", "上限": 7 })), "admin").unwrap();
    let done = engine.complete(&task.id, "tanaka", vars(json!({ "金額": 3 })), Outcome::Next).unwrap();
    assert_eq!(done.vars["記録"], json!("off/7"));
}

#[test]
fn settings_survive_a_restart_and_carry_over_to_new_versions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(VirtualClock::new(t("2026-12-01T09:00:00+09:00")));
    {
        let engine = engine_on(dir.path(), &clock);
        engine.deploy("rules.yaml", RULES).unwrap();
        engine.change_settings("rules", vars(json!({ "上限": 7 })), "admin").unwrap();
    }
    let engine = engine_on(dir.path(), &clock);
    assert_eq!(engine.latest("rules").unwrap().setting_values[1].1, json!(7));
    let cfg = engine.process_config("rules").unwrap();
    assert_eq!(cfg.changed_by.as_deref(), Some("admin"));
    // A new version keeps the value; one whose `上限` is a string ignores it.
    engine.deploy("rules.yaml", &RULES.replace("default: 100", "default: 200")).unwrap();
    assert_eq!(engine.latest("rules").unwrap().setting_values[1].1, json!(7));
    let retyped = RULES.replace("上限: { type: number, default: 100 }", "上限: { type: string, default: \"x\" }");
    let retyped = retyped.replace("金額 > 上限", "金額 > 0");
    engine.deploy("rules.yaml", &retyped).unwrap();
    assert_eq!(engine.latest("rules").unwrap().setting_values[1].1, json!("x"), "the default applies");
}

const DAILY: &str = r#"
id: daily
start:
  timer: { cron: "0 9 * * *" }
  next: done
nodes:
  done: { end: }
"#;

/// A paused timer start starts nothing while its schedule goes on, so resuming
/// starts no burst of missed instances; the pause survives a restart.
#[test]
fn a_paused_timer_start_starts_nothing_and_resumes_on_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(VirtualClock::new(t("2026-12-01T12:00:00+09:00")));
    let count = |e: &Engine| e.instances(&InstanceFilter::default()).unwrap().len();
    {
        let engine = engine_on(dir.path(), &clock);
        engine.deploy("daily.yaml", DAILY).unwrap();
        rt().block_on(Executor::new(engine.clone()).advance(Duration::days(1)));
        assert_eq!(count(&engine), 1);
        engine.pause_start("daily", true, "admin").unwrap();
        rt().block_on(Executor::new(engine.clone()).advance(Duration::days(1)));
        assert_eq!(count(&engine), 1, "paused");
    }
    let engine = engine_on(dir.path(), &clock);
    assert!(engine.latest("daily").unwrap().start_paused, "the pause is stored");
    rt().block_on(Executor::new(engine.clone()).advance(Duration::days(2)));
    assert_eq!(count(&engine), 1, "still paused after a restart");
    engine.pause_start("daily", false, "admin").unwrap();
    rt().block_on(Executor::new(engine.clone()).advance(Duration::hours(12)));
    assert_eq!(count(&engine), 1, "no burst of the missed starts on resume");
    rt().block_on(Executor::new(engine.clone()).advance(Duration::days(1)));
    assert_eq!(count(&engine), 2, "the next scheduled start runs");
}
