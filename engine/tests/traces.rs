//! Golden traces: tests as data.
//!
//! Each directory under `tests/traces/` holds a process (`process.yaml`, or a
//! `process.path` file naming one relative to the workspace root), a list of events
//! (`events.yaml`) and the expected trace (`expected.txt`). The runner drives a real
//! [`Engine`] (in-memory store) on a [`VirtualClock`] that starts at
//! 2026-11-23T00:00:00Z and moves one minute before every event, and renders:
//!
//! * `> <event>` for every event fed in, followed by the history entries it wrote
//!   (`seq node event detail`; entries of instances other than 1 start with `#<id>`),
//!   or `rejected: <message>` when it was refused (the runner also checks that a
//!   refused event changed nothing);
//! * `@ <time>` before entries written at another time than the event's (timers
//!   fired while the clock advanced);
//! * `cancels task|job <id>` for tasks and jobs an event withdrew;
//! * at the end, per instance: the status, the tokens still waiting, the unread
//!   tasks of circulations and the variables; then pending timers and buffered messages.
//!
//! Processes a case calls (`call:`) sit in `called/*.yaml`, deployed first in name order.
//!
//! Run with `UPDATE_EXPECT=1` to rewrite the `expected.txt` files, then review the diff.
//!
//! Events:
//!
//! ```yaml
//! - start: { vars: { 金額: 1000 }, by: u, key: business-key }
//! - claim: { node: review, user: u }
//! - assign: { node: review, to: u, by: admin }     # `to` absent: unassign
//! - complete: { node: review, user: u, vars: {..}, outcome: next | send_back | <name>, comment: .., proxy: p }  # proxy: p acts for u
//! - job_ok: { node: call, output: {..} }
//! - job_fail: { node: call, kind: retryable | fatal | business, message: .., code: .. }
//! - task_error: { node: review, code: 書類不備, message: .. }   # Engine::fail_task
//! - cancel: { by: u, reason: .. }
//! - retry_incident: { node: route, vars: {..} }
//! - resolve_incident: { node: route, vars: {..} }
//! - org: org-2.yaml               # put another org file of the case in force (`org.yaml`: at the start)
//! - advance: 3d                    # the clock walks 3 days, firing each due job at its time
//! - run:                           # run the jobs due now (clock unchanged)
//! - message: { name: 返信, key: K-1, payload: {..}, ttl: 1h }   # ttl: 0s refuses if nobody waits
//! ```
//!
//! `node` is resolved to the task, job or incident currently waiting on that node, in
//! instance 1 unless the event says `instance: N`. Connectors are stubs: their jobs
//! are finished by `job_ok` / `job_fail`; one that the executor runs (during
//! `advance` or `run`) fails with a retryable "no answer".

use chrono::{DateTime, Duration, Utc};
use nagare_engine::compile::CompileOptions;
use nagare_engine::load::load_str;
use nagare_engine::process::NodeKind;
use nagare_engine::runtime::{
    Event, Failure, HistoryEntry, HistoryEvent, Instance, JobKind, Outcome, Status, TaskStatus, Wait,
};
use nagare_engine::store::InstanceFilter;
use nagare_engine::{
    Call, ConnectorError, Engine, EngineError, Executor, FnConnector, MessageOptions, StartOptions, Vars, VirtualClock,
};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod common;
use common::TestStore;

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

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339()
}

/// One line per history entry; details come from the entry and, for tasks and jobs,
/// from their records in the store.
fn render_entry(out: &mut String, engine: &Engine, instance: u64, h: &HistoryEntry) {
    use HistoryEvent as H;
    let node = h.node.as_deref().unwrap_or("-");
    let mut detail = match &h.event {
        H::Started { vars, parent: Some(p), .. } => format!("vars={} parent={p}", json(vars)),
        H::Started { vars, .. } => format!("vars={}", json(vars)),
        H::ScriptRan { changed } => format!("changed=[{}]", changed.join(", ")),
        H::Routed { to } => format!("to={to}"),
        H::Forked { branches } => format!("branches=[{}]", branches.join(", ")),
        H::Joined | H::Ended | H::Completed | H::SubProcessStarted | H::SubProcessEnded => String::new(),
        H::TaskOpened { task } => {
            let mut d = format!("task={task}");
            if let Ok(open) = engine.task(task) {
                write!(d, " title={} lane={} groups=[{}]", open.title, open.lane, open.groups.join(", ")).unwrap();
                if let Some(item) = &open.item {
                    write!(d, " item={}", json(item)).unwrap();
                }
                if let Some(due) = open.due {
                    write!(d, " due={}", due.to_rfc3339()).unwrap();
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
            if let Ok(Some(j)) = engine.store().job(job) {
                if let JobKind::Connector { input, .. } = &j.kind {
                    write!(d, " input={}", json(input)).unwrap();
                }
            }
            d
        }
        H::JobSucceeded { job, set } => format!("job={job} set=[{}]", set.join(", ")),
        H::JobFailed { job, attempt, message, retry_at } => format!(
            "job={job} attempt={attempt} message={message:?} retry_at={}",
            retry_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
        ),
        H::IncidentRaised { incident, message } => format!("incident={incident} message={message:?}"),
        H::IncidentResolved { incident, vars } => format!("incident={incident} vars={}", json(vars)),
        H::IncidentSkipped { incident, vars, to } => format!("incident={incident} vars={} to={to}", json(vars)),
        H::TimerSet { job, due } => format!("job={job} due={}", time(due)),
        H::TimerFired { job } => format!("job={job}"),
        H::Interrupted { to } => format!("to={to}"),
        H::ItemsStarted { total, sequential } => format!("total={total} sequential={sequential}"),
        H::ItemsDone { done, total } => format!("done={done} total={total}"),
        H::MessageWaiting { name, key } => format!("name={name} key={key:?}"),
        H::MessageReceived { name, key, set } => format!("name={name} key={key:?} set=[{}]", set.join(", ")),
        H::CallStarted { child, process, version } => format!("child={child} process={process} version={version}"),
        H::CallCompleted { child, set, error } => match error {
            Some(code) => format!("child={child} error={code}"),
            None => format!("child={child} set=[{}]", set.join(", ")),
        },
        H::ErrorThrown { code, message } => format!("code={} message={message:?}", code.as_deref().unwrap_or("-")),
        H::ErrorCaught { code, by, to } => format!("code={} by={by} to={to}", code.as_deref().unwrap_or("-")),
        H::Cancelled { reason } => format!("reason={reason:?}"),
        H::TaskRouted { to, fallback, skipped } => {
            let mut d = format!("to=[{}]", to.join(", "));
            if let Some(f) = fallback {
                write!(d, " fallback={f}").unwrap();
            }
            if let Some(s) = skipped {
                write!(d, " skipped={s}").unwrap();
            }
            d
        }
        H::Migrated { from, to, changes } => format!("from={from} to={to} changes={changes:?}"),
        H::ConsensusDecided { verdict, approvals, rejections, needed, total } => {
            format!("verdict={verdict} approvals={approvals} rejections={rejections} needed={needed} total={total}")
        }
        H::Circulated { task, to } => format!("task={task} to={to}"),
        H::TaskRead { task } => format!("task={task}"),
        H::Compacted { lines, .. } => format!("lines={lines}"),
        // HistoryEvent is non-exhaustive: an event this renderer does not know yet.
        other => format!("{other:?}"),
    };
    if let Some(u) = &h.user {
        let by = match &h.proxy {
            Some(p) => format!("{p} for {u}"),
            None => u.clone(),
        };
        detail = if detail.is_empty() { format!("by={by}") } else { format!("by={by} {detail}") };
    }
    let prefix = if instance == 1 { String::new() } else { format!("#{instance} ") };
    let line = format!("{prefix}{} {} {} {}", h.seq, node, h.event.name(), detail);
    writeln!(out, "{}", line.trim_end()).unwrap();
}

/// The token currently waiting on `node` (an open task, a pending job, or an
/// incident); on a multi-instance node, the one of item `item` (default: the first).
fn waiting_on<'a>(inst: &'a Instance, node: &str, item: Option<u16>) -> &'a Wait {
    let of_item = |t: &&nagare_engine::runtime::Token| match item {
        None => !matches!(t.wait, Wait::Scope { .. }),
        Some(i) => t.scope.last().is_some_and(|f| f.body && f.branch == i),
    };
    inst.tokens
        .iter()
        .filter(|t| t.node == node)
        .find(of_item)
        .map(|t| &t.wait)
        .unwrap_or_else(|| panic!("nothing waits on node `{node}` (item {item:?}); tokens: {:?}", inst.tokens))
}

/// Tasks and jobs seen so far, by (instance, node): an event may name a task that is
/// no longer open, to show that it is refused.
type Seen = HashMap<(u64, String), String>;

fn task_on(inst: &Instance, seen: &Seen, node: &str, item: Option<u16>) -> String {
    if !inst.tokens.iter().any(|t| t.node == node && matches!(t.wait, Wait::Task { .. })) {
        if let Some(task) = seen.get(&(inst.id, node.to_string())) {
            return task.clone();
        }
    }
    match waiting_on(inst, node, item) {
        Wait::Task { task, .. } => task.clone(),
        other => panic!("node `{node}` waits on {other:?}, not a task"),
    }
}

fn job_on(inst: &Instance, seen: &Seen, node: &str, item: Option<u16>) -> String {
    if !inst.tokens.iter().any(|t| t.node == node && matches!(t.wait, Wait::Job { .. })) {
        if let Some(job) = seen.get(&(inst.id, node.to_string())) {
            return job.clone();
        }
    }
    match waiting_on(inst, node, item) {
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

fn describe(kind: &str, args: &Value) -> String {
    match args {
        Value::Null => format!("> {kind}"),
        Value::Object(o) if o.is_empty() => format!("> {kind}"),
        Value::String(s) => format!("> {kind} {s}"),
        other => format!("> {kind} {}", json(other)),
    }
}

fn parse_duration(s: &str) -> Duration {
    Duration::from_std(humantime::parse_duration(s).unwrap_or_else(|e| panic!("`{s}`: {e}"))).expect("duration")
}

/// Open task ids and pending job ids, across instances.
fn snapshot(engine: &Engine) -> (BTreeSet<String>, BTreeMap<String, u64>) {
    let tasks = engine.tasks(&Default::default()).expect("tasks").into_iter().map(|t| t.id).collect();
    let jobs = engine.store().jobs().expect("jobs").into_iter().map(|j| (j.id, j.instance)).collect();
    (tasks, jobs)
}

/// A connector that never answers in time: traces report results by hand.
fn stub(_: &Call) -> Result<Value, ConnectorError> {
    Err(ConnectorError::Retryable("no answer (trace stub)".into()))
}

struct Case {
    engine: Engine,
    clock: Arc<VirtualClock>,
    exec: Executor,
    rt: tokio::runtime::Runtime,
    seen: Seen,
    /// History entries already printed, per instance.
    printed: BTreeMap<u64, u32>,
    /// The id of the case's own process (`start` starts it).
    main: String,
    dir: PathBuf,
}

/// Put the case's org file `name` (`org.yaml` at the start, `org: <file>` events) in force.
fn load_org(engine: &Engine, dir: &Path, name: &str) {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let org = nagare_engine::org::Org::parse(name, &text, None).unwrap_or_else(|d| panic!("{d}"));
    engine.set_org(org);
}

impl Case {
    fn new(process_text: &str, called: &[String], store: &TestStore, dir: &Path) -> Case {
        let clock = Arc::new(VirtualClock::new(base_time()));
        let mut builder = store.builder().clock(clock.clone());
        for text in called.iter().map(String::as_str).chain([process_text]) {
            let loaded = load_str("process.yaml", text, &CompileOptions::default())
                .unwrap_or_else(|d| panic!("the case's process does not load:\n{d}"));
            for n in &loaded.process.nodes {
                if let NodeKind::Service(s) = &n.kind {
                    builder = builder.connector(s.connector.clone(), FnConnector(stub));
                }
            }
        }
        let engine = builder.build().expect("engine");
        for text in called {
            engine.deploy("called.yaml", text).unwrap_or_else(|e| panic!("deploy a called process: {e}"));
        }
        let main = engine.deploy("process.yaml", process_text).unwrap_or_else(|e| panic!("deploy: {e}")).id;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
        // One job at a time: connector stubs answering concurrently would print in any order.
        let exec = Executor::new(engine.clone()).concurrency(1);
        if dir.join("org.yaml").exists() {
            load_org(&engine, dir, "org.yaml");
        }
        Case { engine, clock, exec, rt, seen: Seen::new(), printed: BTreeMap::new(), main, dir: dir.to_path_buf() }
    }

    fn instance(&self, args: &Map<String, Value>) -> Instance {
        let id = args.get("instance").and_then(Value::as_u64).unwrap_or(1);
        self.engine.instance(id).unwrap_or_else(|e| panic!("instance {id}: {e}"))
    }

    /// Print history written since the last call, every instance in id order.
    /// Print history written since the last call, in time order (instances in id
    /// order within one instant). Returns the entries printed.
    fn print_new(&mut self, out: &mut String, event_time: DateTime<Utc>) -> Vec<HistoryEntry> {
        let all = self.engine.instances(&InstanceFilter::default()).expect("instances");
        let mut new: Vec<(u64, HistoryEntry)> = Vec::new();
        for inst in all {
            let from = self.printed.get(&inst.id).copied().unwrap_or(0);
            let hist = self.engine.history(inst.id).expect("history");
            assert_eq!(hist.len() as u32, inst.history_len, "history_len counts every entry");
            new.extend(hist.into_iter().filter(|h| h.seq >= from).map(|h| (inst.id, h)));
            self.printed.insert(inst.id, inst.history_len);
        }
        new.sort_by_key(|(i, h)| (h.at, *i, h.seq));
        let mut last_time = event_time;
        for (id, h) in &new {
            if h.at != last_time {
                writeln!(out, "@ {}", time(&h.at)).unwrap();
                last_time = h.at;
            }
            match (&h.event, &h.node) {
                (HistoryEvent::TaskOpened { task }, Some(n))
                | (HistoryEvent::JobScheduled { job: task, .. }, Some(n)) => {
                    self.seen.insert((*id, n.clone()), task.clone());
                }
                _ => {}
            }
            render_entry(out, &self.engine, *id, h);
        }
        new.into_iter().map(|(_, h)| h).collect()
    }

    fn apply(&mut self, kind: &str, args: &Value) -> Result<Option<String>, EngineError> {
        let empty = Map::new();
        let map = match args {
            Value::Object(o) => o,
            _ => &empty,
        };
        let node = || str_of(map, "node").unwrap_or_else(|| panic!("`{kind}` needs `node`"));
        let user = || str_of(map, "user").unwrap_or("u").to_string();
        let item = map.get("item").and_then(Value::as_u64).map(|i| i as u16);
        let e = &self.engine;
        match kind {
            "start" => {
                let opts = StartOptions {
                    by: str_of(map, "by").map(str::to_string),
                    business_key: str_of(map, "key").map(str::to_string),
                };
                e.start(&self.main, vars_of(map, "vars"), opts)?;
            }
            "org" => load_org(e, &self.dir, args.as_str().expect("`org: <file>`")),
            "advance" => {
                let by = parse_duration(args.as_str().expect("`advance: 3d`"));
                self.rt.block_on(self.exec.advance(by));
            }
            "run" => {
                self.rt.block_on(self.exec.run_until_idle());
            }
            "message" => {
                let name = str_of(map, "name").expect("`message` needs `name`");
                let key = map.get("key").map(|k| k.as_str().map(str::to_string).unwrap_or_else(|| k.to_string()));
                let payload = map.get("payload").cloned().unwrap_or(Value::Object(Map::new()));
                let ttl = str_of(map, "ttl").map(|t| humantime::parse_duration(t).expect("ttl"));
                let c = e.correlate(name, key.as_deref().unwrap_or(""), payload, &MessageOptions { ttl })?;
                return Ok(Some(format!("-> {}", json(&c))));
            }
            _ => {
                let inst = self.instance(map);
                let seen = &self.seen;
                let event = match kind {
                    "claim" => Event::Claim { task: task_on(&inst, seen, node(), item), user: user() },
                    "unclaim" => Event::Unclaim {
                        task: task_on(&inst, seen, node(), item),
                        user: user(),
                        force: map.get("force").and_then(Value::as_bool).unwrap_or(false),
                    },
                    "assign" => Event::Assign {
                        task: task_on(&inst, seen, node(), item),
                        assignee: str_of(map, "to").map(str::to_string),
                        by: str_of(map, "by").unwrap_or("admin").to_string(),
                    },
                    "complete" => {
                        let outcome = match str_of(map, "outcome").unwrap_or("next") {
                            "next" => Outcome::Next,
                            "send_back" => {
                                Outcome::SendBack { comment: str_of(map, "comment").unwrap_or_default().to_string() }
                            }
                            name => Outcome::Named(name.to_string()),
                        };
                        // A circulation's read task: the one of this user at this node.
                        let read = inst.unread.iter().find(|r| r.node == node() && r.user == user());
                        let task = read.map(|r| r.task.clone()).unwrap_or_else(|| task_on(&inst, seen, node(), item));
                        match str_of(map, "proxy") {
                            Some(proxy) => e.complete_for(&task, &user(), proxy, vars_of(map, "vars"), outcome)?,
                            None => e.complete(&task, &user(), vars_of(map, "vars"), outcome)?,
                        };
                        return Ok(None);
                    }
                    "job_ok" | "job_fail" => {
                        let id = job_on(&inst, seen, node(), item);
                        let job = e.store().job(&id).expect("store").unwrap_or(nagare_engine::runtime::Job {
                            id: id.clone(),
                            instance: inst.id,
                            token: 0,
                            node: node().to_string(),
                            due: self.clock_now(),
                            attempt: 0,
                            kind: JobKind::Timer,
                            priority: 50,
                            process: String::new(),
                        });
                        let result = if kind == "job_ok" {
                            Ok(map.get("output").cloned().unwrap_or(Value::Object(Map::new())))
                        } else {
                            let message = str_of(map, "message").unwrap_or("failed").to_string();
                            Err(match str_of(map, "kind").unwrap_or("retryable") {
                                "retryable" => Failure::Retryable { message, retry_after_ms: None },
                                "fatal" => Failure::Fatal { message },
                                "business" => {
                                    Failure::Business { code: str_of(map, "code").unwrap_or("E").to_string(), message }
                                }
                                other => panic!("unknown failure kind `{other}`"),
                            })
                        };
                        e.finish_job(&job, result)?;
                        return Ok(None);
                    }
                    "task_error" => Event::TaskError {
                        task: task_on(&inst, seen, node(), item),
                        user: user(),
                        code: str_of(map, "code").expect("`task_error` needs `code`").to_string(),
                        message: str_of(map, "message").unwrap_or_default().to_string(),
                    },
                    "cancel" => Event::Cancel {
                        by: str_of(map, "by").unwrap_or("u").to_string(),
                        reason: str_of(map, "reason").unwrap_or("cancelled").to_string(),
                    },
                    "retry_incident" => Event::RetryIncident {
                        incident: incident_on(&inst, str_of(map, "node")),
                        vars: vars_of(map, "vars"),
                        by: user(),
                    },
                    "resolve_incident" => Event::ResolveIncident {
                        incident: incident_on(&inst, str_of(map, "node")),
                        vars: vars_of(map, "vars"),
                        by: user(),
                    },
                    other => panic!("unknown event `{other}`"),
                };
                e.handle(inst.id, event)?;
            }
        }
        Ok(None)
    }

    fn clock_now(&self) -> DateTime<Utc> {
        nagare_engine::Clock::now(self.clock.as_ref())
    }
}

/// Run one case and return its rendered trace.
fn run_case(process_text: &str, called: &[String], events_text: &str, store: &TestStore, dir: &Path) -> String {
    let mut case = Case::new(process_text, called, store, dir);
    let events: Vec<Value> = serde_yaml::from_str(events_text).expect("events.yaml is a YAML list");
    let mut out = String::new();
    for (i, ev) in events.iter().enumerate() {
        let Some((kind, args)) = ev.as_object().and_then(|o| o.iter().next()) else {
            panic!("event {i} is not a one-key map: {ev}");
        };
        if i > 0 && kind != "advance" {
            case.clock.advance(Duration::minutes(1));
        }
        let now = case.clock_now();
        writeln!(out, "{}", describe(kind, args)).unwrap();
        let before_state = case.engine.instances(&InstanceFilter::default()).expect("instances");
        let (tasks_before, jobs_before) = snapshot(&case.engine);
        match case.apply(kind, args) {
            Ok(note) => {
                if let Some(n) = note {
                    writeln!(out, "{n}").unwrap();
                }
                let new = case.print_new(&mut out, now);
                let (tasks_after, jobs_after) = snapshot(&case.engine);
                // Tasks and jobs that existed before or were created by this event.
                let mut tasks = tasks_before.clone();
                let mut jobs: BTreeSet<String> =
                    jobs_before.iter().filter(|(_, i)| **i != 0).map(|(j, _)| j.clone()).collect();
                let mut consumed = BTreeSet::new();
                for h in &new {
                    match &h.event {
                        HistoryEvent::TaskOpened { task } => {
                            tasks.insert(task.clone());
                        }
                        HistoryEvent::JobScheduled { job, .. } | HistoryEvent::TimerSet { job, .. } => {
                            jobs.insert(job.clone());
                        }
                        HistoryEvent::JobSucceeded { job, .. }
                        | HistoryEvent::TimerFired { job }
                        | HistoryEvent::JobFailed { job, retry_at: None, .. } => {
                            consumed.insert(job.clone());
                        }
                        _ => {}
                    }
                }
                for t in tasks.difference(&tasks_after) {
                    if case.engine.task(t).map(|t| t.status == TaskStatus::Cancelled).unwrap_or(false) {
                        writeln!(out, "  cancels task {t}").unwrap();
                    }
                }
                for j in &jobs {
                    if !jobs_after.contains_key(j) && !consumed.contains(j) {
                        writeln!(out, "  cancels job {j}").unwrap();
                    }
                }
            }
            Err(r) => {
                writeln!(out, "rejected: {r}").unwrap();
                let after = case.engine.instances(&InstanceFilter::default()).expect("instances");
                assert_eq!(before_state, after, "a rejected event must not change any instance");
            }
        }
        if kind != "advance" && kind != "run" {
            for inst in case.engine.instances(&InstanceFilter::default()).expect("instances") {
                for h in case.engine.history(inst.id).expect("history") {
                    assert!(h.at <= now, "history from the future");
                }
            }
        }
    }
    render_final(&case, &mut out);
    out
}

fn render_final(case: &Case, out: &mut String) {
    let all = case.engine.instances(&InstanceFilter::default()).expect("instances");
    assert!(!all.is_empty(), "a case starts an instance");
    let many = all.len() > 1;
    for inst in &all {
        if many {
            writeln!(out, "instance {}:", inst.id).unwrap();
        }
        writeln!(out, "status: {}", inst.status.as_str()).unwrap();
        for t in &inst.tokens {
            let mut wait = match &t.wait {
                Wait::Task { task, assignee } => {
                    format!("task {task}{}", assignee.as_ref().map(|a| format!(" claimed by {a}")).unwrap_or_default())
                }
                Wait::Job { job, attempt } => format!("job {job} attempt {attempt}"),
                Wait::Incident { incident } => {
                    let msg =
                        inst.incidents.iter().find(|i| i.id == *incident).map(|i| i.message.as_str()).unwrap_or("?");
                    format!("incident {incident}: {msg}")
                }
                Wait::Timer { job } => format!("timer {job}"),
                Wait::Message { name, key } => format!("message {name} key={key:?}"),
                Wait::Events { messages } => {
                    let m: Vec<String> = messages.iter().map(|m| format!("{} key={:?}", m.name, m.key)).collect();
                    format!("events [{}]", m.join(", "))
                }
                Wait::Call { child: Some(c), .. } => format!("called instance {c}"),
                Wait::Call { job, child: None } => format!("call start {job}"),
                Wait::Scope { activation } => {
                    let m = inst.multis.iter().find(|m| m.activation == *activation);
                    let (done, total) = m.map_or((0, 0), |m| (m.done, m.total));
                    format!("items {done}/{total} done")
                }
            };
            if let Some(f) = t.scope.last().filter(|f| f.body) {
                write!(wait, " (item {})", f.branch).unwrap();
            }
            if !t.timers.is_empty() {
                let ts: Vec<String> = t.timers.iter().map(|a| format!("{}@{}", a.job, time(&a.due))).collect();
                write!(wait, " timers=[{}]", ts.join(", ")).unwrap();
            }
            if !t.listens.is_empty() {
                let ls: Vec<String> = t.listens.iter().map(|m| format!("{} key={:?}", m.name, m.key)).collect();
                write!(wait, " listens=[{}]", ls.join(", ")).unwrap();
            }
            writeln!(out, "waiting: {} {wait}", t.node).unwrap();
        }
        for w in &inst.forks {
            let ts: Vec<String> = w.timers.iter().map(|a| format!("{}@{}", a.job, time(&a.due))).collect();
            let ls: Vec<String> = w.listens.iter().map(|m| format!("{} key={:?}", m.name, m.key)).collect();
            writeln!(
                out,
                "fork: {} activation {} timers=[{}] listens=[{}]",
                w.fork,
                w.activation,
                ts.join(", "),
                ls.join(", ")
            )
            .unwrap();
        }
        for j in &inst.joins {
            writeln!(out, "join: {} arrived {:?} of {}", j.join, j.arrived, j.width).unwrap();
        }
        for r in &inst.unread {
            writeln!(out, "unread: {} task {} for {}", r.node, r.task, r.user).unwrap();
        }
        if inst.status == Status::Completed || inst.status == Status::Cancelled {
            assert!(inst.tokens.is_empty() && inst.incidents.is_empty(), "a finished instance holds nothing");
        }
        writeln!(out, "vars:").unwrap();
        for (k, v) in &inst.vars {
            writeln!(out, "  {k} = {}", json(v)).unwrap();
        }
    }
    for j in case.engine.store().jobs().expect("jobs") {
        if j.kind.is_internal() {
            let what = match &j.kind {
                JobKind::Timer => format!("timer of instance {} at {}", j.instance, j.node),
                JobKind::StartTimer { process } => format!("next start of {process}"),
                JobKind::MessageExpiry { name, .. } => format!("expiry of buffered message {name}"),
                JobKind::CallStart { process, .. } => format!("start of a called {process}"),
                JobKind::CallEnd { child, .. } => format!("end of called instance {child}"),
                JobKind::CallCancel => format!("cancel of called instance {}", j.instance),
                JobKind::Connector { .. } => unreachable!(),
            };
            writeln!(out, "pending: {} {what} due {}", j.id, time(&j.due)).unwrap();
        }
    }
    for m in case.engine.buffered_messages().expect("buffered") {
        writeln!(
            out,
            "buffered: {} {} key={:?} payload={} until {}",
            m.id,
            m.name,
            m.key,
            json(&m.payload),
            time(&m.expires_at)
        )
        .unwrap();
    }
}

/// The processes a case calls: `called/*.yaml`, in name order.
fn case_called(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("called")) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("readable").path()).collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read_to_string(p).expect("readable called process")).collect()
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
        // The same trace on every store.
        for store in TestStore::all(&format!("trace_{name}")) {
            let got = run_case(&case_process(dir), &case_called(dir), &events, &store, dir);
            let path = dir.join("expected.txt");
            if update {
                std::fs::write(&path, &got).expect("write expected.txt");
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if got != want {
                failed.push(format!("--- {name} ({}): expected\n{want}\n--- {name}: got\n{got}", store.name));
            }
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
