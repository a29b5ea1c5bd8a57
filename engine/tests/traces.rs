//! Golden traces: tests as data.
//!
//! Each directory under `tests/traces/` holds a process (`process.yaml`, or a
//! `process.path` file naming one relative to the workspace root), a list of events
//! (`events.yaml`) and the expected trace (`expected.txt`). The runner drives the pure
//! core ([`runtime::start`] and [`runtime::step`]) directly, with a fixed clock that
//! starts at 2026-11-23T00:00:00Z and advances one minute per event, and renders:
//!
//! * `> <event>` for every event fed in, followed by the history entries it wrote
//!   (`seq node event detail`), or `rejected: <message>` when it was refused (the
//!   runner also checks that a refused event changed nothing);
//! * `cancels task|job <id>` for tasks and jobs an event withdrew;
//! * the final status, the tokens still waiting and the variables.
//!
//! Run with `UPDATE_EXPECT=1` to rewrite the `expected.txt` files, then review the diff.
//!
//! Events:
//!
//! ```yaml
//! - start: { vars: { 金額: 1000 }, by: u }
//! - claim: { node: review, user: u }
//! - assign: { node: review, to: u, by: admin }     # `to` absent: unassign
//! - complete: { node: review, user: u, vars: {..}, outcome: next | send_back | <name>, comment: .. }
//! - job_ok: { node: call, output: {..} }
//! - job_fail: { node: call, kind: retryable | fatal | business, message: .., code: .. }
//! - cancel: { by: u, reason: .. }
//! - retry_incident: { node: route, vars: {..} }
//! ```
//!
//! `node` is resolved to the task, job or incident currently waiting on that node.

use chrono::{DateTime, Duration, Utc};
use nagare_engine::compile::CompileOptions;
use nagare_engine::load::load_str;
use nagare_engine::process::Process;
use nagare_engine::runtime::{
    self, Command, Event, Failure, HistoryEntry, HistoryEvent, Instance, Outcome, Status, Transition, Wait,
};
use nagare_engine::Vars;
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn traces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("traces")
}

fn base_time() -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse().expect("valid time")
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("serialisable")
}

fn vars_of(args: &Map<String, Value>, key: &str) -> Vars {
    match args.get(key) {
        None | Some(Value::Null) => Vars::new(),
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(other) => panic!("`{key}` must be a map, got {other}"),
    }
}

fn str_of<'a>(args: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
}

/// One line per history entry; details come from the entry and, for tasks and jobs,
/// from the command that opened them.
fn render_entry(out: &mut String, h: &HistoryEntry, t: &Transition) {
    use HistoryEvent as H;
    let node = h.node.as_deref().unwrap_or("-");
    let mut detail = match &h.event {
        H::Started { vars } => format!("vars={}", json(vars)),
        H::ScriptRan { changed } => format!("changed=[{}]", changed.join(", ")),
        H::Routed { to } => format!("to={to}"),
        H::Forked { branches } => format!("branches=[{}]", branches.join(", ")),
        H::Joined | H::Ended | H::Completed => String::new(),
        H::TaskOpened { task } => {
            let mut d = format!("task={task}");
            for c in &t.commands {
                if let Command::OpenTask(open) = c {
                    if open.id == *task {
                        write!(d, " title={} lane={} groups=[{}]", open.title, open.lane, open.groups.join(", "))
                            .unwrap();
                        if let Some(due) = open.due {
                            write!(d, " due={}", due.to_rfc3339()).unwrap();
                        }
                    }
                }
            }
            d
        }
        H::TaskClaimed { task } | H::TaskUnclaimed { task } => format!("task={task}"),
        H::TaskAssigned { task, to } => format!("task={task} to={}", to.as_deref().unwrap_or("-")),
        H::TaskCompleted { task, outcome, vars } => format!("task={task} outcome={outcome} vars={}", json(vars)),
        H::SentBack { task, to, comment } => format!("task={task} to={to} comment={comment:?}"),
        H::JobScheduled { job, connector, attempt } => {
            let mut d = format!("job={job} connector={connector} attempt={attempt}");
            for c in &t.commands {
                if let Command::ScheduleJob(j) = c {
                    if j.id == *job {
                        let nagare_engine::runtime::JobKind::Connector { input, .. } = &j.kind;
                        write!(d, " input={}", json(input)).unwrap();
                    }
                }
            }
            d
        }
        H::JobSucceeded { job, set } => format!("job={job} set=[{}]", set.join(", ")),
        H::JobFailed { job, attempt, message, retry_at } => format!(
            "job={job} attempt={attempt} message={message:?} retry_at={}",
            retry_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
        ),
        H::IncidentRaised { incident, message } => {
            format!("incident={incident} message={message:?}")
        }
        H::IncidentResolved { incident, vars } => {
            format!("incident={incident} vars={}", json(vars))
        }
        H::Cancelled { reason } => format!("reason={reason:?}"),
    };
    if let Some(u) = &h.user {
        detail = if detail.is_empty() { format!("by={u}") } else { format!("by={u} {detail}") };
    }
    let line = format!("{} {} {} {}", h.seq, node, h.event.name(), detail);
    writeln!(out, "{}", line.trim_end()).unwrap();
}

/// The token currently waiting on `node` (an open task, a pending job, or an incident).
fn waiting_on<'a>(inst: &'a Instance, node: &str) -> &'a Wait {
    inst.tokens
        .iter()
        .find(|t| t.node == node)
        .map(|t| &t.wait)
        .unwrap_or_else(|| panic!("nothing waits on node `{node}`; tokens: {:?}", inst.tokens))
}

/// Tasks and jobs seen so far, by node: an event may name a task that is no longer
/// open, to show that it is refused.
type Seen = std::collections::HashMap<String, String>;

fn task_on(inst: &Instance, seen: &Seen, node: &str) -> String {
    if !inst.tokens.iter().any(|t| t.node == node && matches!(t.wait, Wait::Task { .. })) {
        if let Some(task) = seen.get(node) {
            return task.clone();
        }
    }
    match waiting_on(inst, node) {
        Wait::Task { task, .. } => task.clone(),
        other => panic!("node `{node}` waits on {other:?}, not a task"),
    }
}

fn job_on(inst: &Instance, seen: &Seen, node: &str) -> String {
    if !inst.tokens.iter().any(|t| t.node == node && matches!(t.wait, Wait::Job { .. })) {
        if let Some(job) = seen.get(node) {
            return job.clone();
        }
    }
    match waiting_on(inst, node) {
        Wait::Job { job, .. } => job.clone(),
        other => panic!("node `{node}` waits on {other:?}, not a job"),
    }
}

fn incident_on(inst: &Instance, node: Option<&str>) -> u32 {
    inst.incidents
        .iter()
        .find(|i| node.is_none_or(|n| i.node == n))
        .map(|i| i.id)
        .unwrap_or_else(|| panic!("no incident on {node:?}; incidents: {:?}", inst.incidents))
}

fn to_event(inst: &Instance, seen: &Seen, kind: &str, args: &Map<String, Value>) -> Event {
    let node = || str_of(args, "node").unwrap_or_else(|| panic!("`{kind}` needs `node`"));
    let user = || str_of(args, "user").unwrap_or("u").to_string();
    match kind {
        "claim" => Event::Claim { task: task_on(inst, seen, node()), user: user() },
        "unclaim" => Event::Unclaim {
            task: task_on(inst, seen, node()),
            user: user(),
            force: args.get("force").and_then(Value::as_bool).unwrap_or(false),
        },
        "assign" => Event::Assign {
            task: task_on(inst, seen, node()),
            assignee: str_of(args, "to").map(str::to_string),
            by: str_of(args, "by").unwrap_or("admin").to_string(),
        },
        "complete" => {
            let outcome = match str_of(args, "outcome").unwrap_or("next") {
                "next" => Outcome::Next,
                "send_back" => Outcome::SendBack { comment: str_of(args, "comment").unwrap_or_default().to_string() },
                name => Outcome::Named(name.to_string()),
            };
            Event::Complete { task: task_on(inst, seen, node()), user: user(), data: vars_of(args, "vars"), outcome }
        }
        "job_ok" => Event::JobDone {
            job: job_on(inst, seen, node()),
            output: args.get("output").cloned().unwrap_or(Value::Object(Map::new())),
        },
        "job_fail" => {
            let message = str_of(args, "message").unwrap_or("failed").to_string();
            let failure = match str_of(args, "kind").unwrap_or("retryable") {
                "retryable" => Failure::Retryable { message, retry_after_ms: None },
                "fatal" => Failure::Fatal { message },
                "business" => Failure::Business { code: str_of(args, "code").unwrap_or("E").to_string(), message },
                other => panic!("unknown failure kind `{other}`"),
            };
            Event::JobFailed { job: job_on(inst, seen, node()), failure }
        }
        "cancel" => Event::Cancel {
            by: str_of(args, "by").unwrap_or("u").to_string(),
            reason: str_of(args, "reason").unwrap_or("cancelled").to_string(),
        },
        "retry_incident" => Event::RetryIncident {
            incident: incident_on(inst, str_of(args, "node")),
            vars: vars_of(args, "vars"),
            by: user(),
        },
        other => panic!("unknown event `{other}`"),
    }
}

fn describe(kind: &str, args: &Map<String, Value>) -> String {
    if args.is_empty() {
        format!("> {kind}")
    } else {
        format!("> {kind} {}", json(args))
    }
}

/// Run one case and return its rendered trace.
fn run_case(process_text: &str, events_text: &str) -> String {
    let loaded = load_str("process.yaml", process_text, &CompileOptions::default())
        .unwrap_or_else(|d| panic!("the case's process does not load:\n{d}"));
    let mut process: Process = loaded.process;
    process.version = 1;
    let events: Vec<Value> = serde_yaml::from_str(events_text).expect("events.yaml is a YAML list");
    let mut out = String::new();
    let mut inst: Option<Instance> = None;
    let mut seen = Seen::new();
    for (i, ev) in events.iter().enumerate() {
        let now = base_time() + Duration::minutes(i as i64);
        let Some((kind, args)) = ev.as_object().and_then(|o| o.iter().next()) else {
            panic!("event {i} is not a one-key map: {ev}");
        };
        let empty = Map::new();
        let args = match args {
            Value::Object(o) => o,
            Value::Null => &empty,
            other => panic!("arguments of `{kind}` must be a map, got {other}"),
        };
        writeln!(out, "{}", describe(kind, args)).unwrap();
        let result = if kind == "start" {
            assert!(inst.is_none(), "`start` must be the first and only start event");
            runtime::start(&process, 1, vars_of(args, "vars"), str_of(args, "by").map(str::to_string), None, now).map(
                |(new, t)| {
                    inst = Some(new);
                    t
                },
            )
        } else {
            let state = inst.as_mut().expect("the first event must be `start`");
            let event = to_event(state, &seen, kind, args);
            let before = state.clone();
            let r = runtime::step(&process, state, event, now);
            if r.is_err() {
                assert_eq!(*state, before, "a rejected event must not change the instance");
            }
            r
        };
        match result {
            Ok(t) => {
                let inst = inst.as_ref().expect("started");
                assert_eq!(
                    t.history.last().map(|h| h.seq + 1).unwrap_or(inst.history_len),
                    inst.history_len,
                    "history_len counts every entry"
                );
                for h in &t.history {
                    assert_eq!(h.at, now);
                    match (&h.event, &h.node) {
                        (HistoryEvent::TaskOpened { task }, Some(n))
                        | (HistoryEvent::JobScheduled { job: task, .. }, Some(n)) => {
                            seen.insert(n.clone(), task.clone());
                        }
                        _ => {}
                    }
                    render_entry(&mut out, h, &t);
                }
                for c in &t.commands {
                    match c {
                        Command::CloseTask { task, status: runtime::TaskStatus::Cancelled, .. } => {
                            writeln!(out, "  cancels task {task}").unwrap()
                        }
                        Command::CancelJob { job } => writeln!(out, "  cancels job {job}").unwrap(),
                        _ => {}
                    }
                }
            }
            Err(r) => writeln!(out, "rejected: {r}").unwrap(),
        }
    }
    let inst = inst.expect("a case starts an instance");
    writeln!(out, "status: {}", inst.status.as_str()).unwrap();
    for t in &inst.tokens {
        let wait = match &t.wait {
            Wait::Task { task, assignee } => {
                format!("task {task}{}", assignee.as_ref().map(|a| format!(" claimed by {a}")).unwrap_or_default())
            }
            Wait::Job { job, attempt } => format!("job {job} attempt {attempt}"),
            Wait::Incident { incident } => {
                let msg = inst.incidents.iter().find(|i| i.id == *incident).map(|i| i.message.as_str()).unwrap_or("?");
                format!("incident {incident}: {msg}")
            }
        };
        writeln!(out, "waiting: {} {wait}", t.node).unwrap();
    }
    for j in &inst.joins {
        writeln!(out, "join: {} arrived {:?} of {}", j.join, j.arrived, j.width).unwrap();
    }
    if inst.status == Status::Completed || inst.status == Status::Cancelled {
        assert!(inst.tokens.is_empty() && inst.incidents.is_empty(), "a finished instance holds nothing");
    }
    writeln!(out, "vars:").unwrap();
    for (k, v) in &inst.vars {
        writeln!(out, "  {k} = {}", json(v)).unwrap();
    }
    out
}

fn case_process(dir: &Path) -> String {
    let direct = dir.join("process.yaml");
    if direct.exists() {
        return std::fs::read_to_string(direct).expect("readable process.yaml");
    }
    let link = std::fs::read_to_string(dir.join("process.path"))
        .unwrap_or_else(|_| panic!("{}: needs process.yaml or process.path", dir.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    std::fs::read_to_string(root.join(link.trim())).unwrap_or_else(|e| panic!("{}: {e}", link.trim()))
}

#[test]
fn golden_traces() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(traces_dir())
        .expect("tests/traces exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 8, "only {} trace cases", dirs.len());
    let mut failed = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let events = std::fs::read_to_string(dir.join("events.yaml")).expect("events.yaml");
        let got = run_case(&case_process(dir), &events);
        let path = dir.join("expected.txt");
        if update {
            std::fs::write(&path, &got).expect("write expected.txt");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            failed.push(format!("--- {name}: expected\n{want}\n--- {name}: got\n{got}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} trace(s) differ (UPDATE_EXPECT=1 rewrites them; review the diff):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// One instance whose condition never ends does not hold up the others: it gets an
/// incident naming the node, and instances started alongside it complete.
#[test]
fn an_endless_condition_fails_only_its_own_instance() {
    const YAML: &str = r#"
id: spin
variables:
  spin: { type: bool, default: false }
  n: { type: number, default: 0 }
start: { next: route }
nodes:
  route:
    exclusive:
      - when: 'if spin { loop {} } else { true }'
        next: count
    default: done
  count:
    script: 'n += 1;'
    next: done
  done: { end: }
"#;
    let engine = nagare_engine::Engine::in_memory();
    engine.deploy("spin.yaml", YAML).expect("deploys");
    let vars = |spin: bool| -> Vars { [("spin".to_string(), Value::Bool(spin))].into() };
    let looping = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.start("spin", vars(true), Default::default()).expect("starts"))
    };
    let normal: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || engine.start("spin", vars(false), Default::default()).expect("starts"))
        })
        .collect();
    for h in normal {
        let inst = h.join().expect("no panic");
        assert_eq!(inst.status, Status::Completed, "{inst:#?}");
        assert_eq!(inst.vars["n"], Value::from(1));
    }
    let stuck = looping.join().expect("no panic");
    assert_eq!(stuck.status, Status::Incident, "{stuck:#?}");
    let hist = engine.history(stuck.id).expect("history");
    let raised = hist
        .iter()
        .find(|h| matches!(h.event, HistoryEvent::IncidentRaised { .. }))
        .expect("an incident is in the history");
    assert_eq!(raised.node.as_deref(), Some("route"));
    let HistoryEvent::IncidentRaised { message, .. } = &raised.event else { unreachable!() };
    assert!(message.contains("endless loop"), "{message}");
    assert!(message.contains("loop {}"), "{message}");
    // After the incident, a new instance still runs normally.
    let after = engine.start("spin", vars(false), Default::default()).expect("starts");
    assert_eq!(after.status, Status::Completed);
}

/// The demo process in `processes/` loads without errors or warnings.
#[test]
fn expense_approval_demo_is_clean() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../processes/expense-approval.yaml");
    let text = std::fs::read_to_string(path).expect("demo exists");
    let loaded = load_str("processes/expense-approval.yaml", &text, &CompileOptions::default())
        .unwrap_or_else(|d| panic!("{d}"));
    assert!(loaded.warnings.0.is_empty(), "{}", loaded.warnings);
}
