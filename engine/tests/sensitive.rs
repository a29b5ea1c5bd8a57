//! Issue 15.5: `sensitive: true` variables. Who may read them (the lanes whose
//! forms show them), and incident texts never carry them.

use nagare_engine::runtime::HistoryEvent;
use nagare_engine::sensitive::MASK;
use nagare_engine::{ConnectorError, Engine, Executor, FnConnector, StartOptions, Vars};
use serde_json::json;

const YAML: &str = r#"
id: secret
lanes:
  build: { groups: [build] }
  ship: { groups: [shipping] }
variables:
  pw: { type: string, sensitive: true }
  note: { type: string }
  born: { type: date, sensitive: true }
start: { next: enter }
nodes:
  enter:
    user_task: Enter the password
    lane: build
    form: { pw: required, note: optional }
    next: ship
  ship:
    user_task: Ship
    lane: ship
    form: { note: readonly }
    next: call
  call: { service: test.leak, with: { pw: pw }, next: done }
  done: { end: }
"#;

#[tokio::test]
async fn sensitive_values_are_for_the_lanes_whose_forms_show_them_and_never_in_incidents() {
    let engine = Engine::builder()
        .in_memory()
        .connector(
            "test.leak",
            // A service that quotes what it was sent in its error, as some do.
            FnConnector(|c: &nagare_engine::Call| {
                Err(ConnectorError::Fatal(format!("password {} refused", c.input["pw"].as_str().unwrap_or(""))))
            }),
        )
        .build()
        .unwrap();
    engine.deploy("secret.yaml", YAML).unwrap();
    let p = engine.latest("secret").unwrap();
    let (build, ship) = (vec!["build".to_string()], vec!["shipping".to_string()]);
    assert!(p.may_read("pw", &build));
    assert!(!p.may_read("pw", &ship));
    assert!(!p.may_read("pw", &[]), "administrators too");
    assert!(p.may_read("note", &ship), "not sensitive");

    let inst = engine.start("secret", Vars::new(), StartOptions::default()).unwrap();
    let task = engine.tasks(&Default::default()).unwrap()[0].id.clone();
    let data: Vars = [("pw".to_string(), json!("s3cret-pw")), ("note".to_string(), json!("n"))].into();
    engine.complete(&task, "ito", data, nagare_engine::runtime::Outcome::Next).unwrap();
    let task = engine.tasks(&Default::default()).unwrap()[0].id.clone();
    engine.complete(&task, "ueda", Vars::new(), nagare_engine::runtime::Outcome::Next).unwrap();
    Executor::new(engine.clone()).run_until_idle().await;

    let inst = engine.instance(inst.id).unwrap();
    assert_eq!(inst.vars["pw"], json!("s3cret-pw"), "the engine keeps the value for its steps");
    assert_eq!(inst.incidents.len(), 1, "{inst:?}");
    assert!(inst.incidents[0].message.ends_with(&format!("password {MASK} refused")), "{:?}", inst.incidents);
    let history = engine.history(inst.id).unwrap();
    let text = serde_json::to_string(
        &history.iter().filter(|h| !matches!(h.event, HistoryEvent::TaskCompleted { .. })).collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!text.contains("s3cret-pw"), "failure lines are scrubbed: {text}");

    // Views for people: masked unless their lane's form shows it.
    let mut vars = inst.vars.clone();
    p.mask(vars.iter_mut(), &ship);
    assert_eq!((vars["pw"].clone(), vars["note"].clone()), (json!(MASK), json!("n")));
    let mut vars = inst.vars.clone();
    p.mask(vars.iter_mut(), &build);
    assert_eq!(vars["pw"], json!("s3cret-pw"));
    let mut done = history.iter().find(|h| matches!(h.event, HistoryEvent::TaskCompleted { .. })).unwrap().clone();
    p.mask_history(&mut done);
    let HistoryEvent::TaskCompleted { vars, .. } = &done.event else { unreachable!() };
    assert_eq!(vars["pw"], json!(MASK));

    // A refused sensitive value is not quoted back either.
    let e = p.vars["born"].check(&json!("1990-13-45x")).unwrap_err();
    assert!(!e.contains("1990-13-45x") && e.contains(MASK), "{e}");
}
