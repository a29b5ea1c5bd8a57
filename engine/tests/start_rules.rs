//! A refused start lists every reason at once: the start form's rules are checked
//! even when fields are missing or wrong, with those fields read as unset.

use nagare_engine::runtime::Rejection;
use nagare_engine::{Engine, EngineError, StartOptions, Vars};
use serde_json::json;

const PROCESS: &str = r#"
id: every-reason
lanes: { 担当: { groups: [staff] } }
variables:
  件名: { type: string, required: true }
  金額: { type: number }
  契約書: { type: string }
start:
  rules:
    - { when: '契約書 == ()', field: 契約書, message: 契約書を添付してください }
    - { when: '金額 != () && 金額 < 0', field: 金額, message: 金額は0以上 }
    - { when: '金額 == ()', message: 金額がありません }
  next: 確認
nodes:
  確認: { user_task: 確認, lane: 担当, next: done }
  done: { end: }
"#;

fn refused(vars: serde_json::Value) -> Vec<(String, String)> {
    let e = Engine::builder().in_memory().build().unwrap();
    e.deploy("r.yaml", PROCESS).unwrap();
    let vars: Vars = vars.as_object().unwrap().clone().into_iter().collect();
    match e.start("every-reason", vars, StartOptions::default()).unwrap_err() {
        EngineError::Rejected(Rejection::InvalidData(errors)) => {
            errors.into_iter().map(|f| (f.field, f.problem)).collect()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_start_with_missing_fields_also_reports_the_broken_rules() {
    let got = refused(json!({}));
    let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["件名", "契約書", "_form"], "{got:?}");
}

#[test]
fn a_wrong_field_reads_as_unset_and_its_own_rules_are_not_repeated() {
    // 金額 is text: its type error only; the rule reading it sees `()`.
    let got = refused(json!({ "件名": "x", "金額": "abc" }));
    let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["金額", "契約書", "_form"], "{got:?}");
    assert!(!got.iter().any(|(_, p)| p.contains("0以上")), "{got:?}");
}
