//! Log lines carry what they are about: engine calls run in `engine` spans with
//! their instance, process and node, a job run in a `job` span, and the
//! "connector call failed" warning is emitted inside its job's span (issue 22: it
//! used to come after the span closed, without instance or job fields).

use nagare_engine::prelude::*;
#[path = "../../tests/support/log_capture.rs"]
mod log_capture;

const PROCESS: &str = "
id: spans
lanes: { staff: {} }
start: { next: check }
nodes:
  check: { user_task: Check, lane: staff, next: call }
  call: { service: app.down, next: done }
  done: { end: }
";

#[tokio::test]
async fn the_connector_call_failed_warning_is_inside_its_job_span_and_engine_calls_have_spans() {
    // A global subscriber, not a per-test one: the executor runs engine calls on
    // tokio blocking threads too (see tests/support/log_capture.rs).
    let log = log_capture::install();
    let mark = log.mark();
    let engine = Engine::builder()
        .in_memory()
        .connector("app.down", FnConnector(|_c: &Call| Err(ConnectorError::Fatal("the service is down".into()))))
        .build()
        .unwrap();
    engine.deploy("spans.yaml", PROCESS).unwrap();
    let inst = engine.start("spans", Vars::new(), StartOptions::default()).unwrap();
    let task = engine.tasks(&Default::default()).unwrap().remove(0);
    engine.complete(&task.id, "sato", Vars::new(), Outcome::Next).unwrap();
    Executor::new(engine.clone()).run_until_idle().await;
    assert_eq!(engine.instance(inst.id).unwrap().status, Status::Incident);

    let text = log.since(mark);
    let id = format!("instance={}", inst.id);
    let warning = text.lines().find(|l| l.contains("connector call failed")).unwrap_or_else(|| panic!("{text}"));
    for field in ["job{", id.as_str(), "node=call", "connector=\"app.down\"", "attempt=1"] {
        assert!(warning.contains(field), "`{field}` missing from the warning: {warning}");
    }
    let closed = |op: &str| {
        text.lines()
            .find(|l| l.contains("engine{") && l.contains(&format!("op=\"{op}\"")) && l.contains(" close time.busy="))
            .unwrap_or_else(|| panic!("no closed `{op}` span in\n{text}"))
            .to_string()
    };
    let start = closed("start");
    assert!(start.contains(&id) && start.contains("process=\"spans\""), "{start}");
    let complete = closed("complete");
    for field in [id.as_str(), "process=\"spans\"", "node=\"check\"", &format!("task=\"{}\"", task.id)] {
        assert!(complete.contains(field), "`{field}` missing from {complete}");
    }
}
