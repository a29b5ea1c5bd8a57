//! The simulation driver: actions, the simulated connector, and the checks.
//!
//! Checked after every step:
//! - [`Instance::check_invariants`] on every stored instance;
//! - task and job records match the tokens (no orphan task or job, none missing);
//! - no acknowledged write lost: an instance an `Ok` answer showed at history
//!   length `n` is still there with at least `n` history lines after a crash;
//! - every engine error is explained by a fault the disk injected;
//! - each idempotency key stands for one call (same instance, node and input).
//!
//! And, less often and after the final drain, over the whole history: each timer
//! armed fires at most once, a message is received at most once per send, history
//! lines are numbered without gaps, nothing is buffered while a token waits for it,
//! and no instance is left running once every task is done and every message sent.

use super::disk::{Disk, FaultRates};
use super::grammar::{self, Generated, BUSINESS_CODE, CONNECTOR, TASK_ERROR};
use super::hostile;
use super::rng::Rng;
use super::{SimFailure, SimOptions, SimReport};
use crate::clock::{Clock, VirtualClock};
use crate::connector::FnConnector;
use crate::engine::{Engine, EngineError};
use crate::expr::Vars;
use crate::messages::MessageOptions;
use crate::runtime::{Failure, HistoryEvent, Instance, Job, JobKind, Outcome, Status, Wait};
use crate::store::{InstanceFilter, KvStore, TaskQuery};
use crate::StartOptions;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Lines of trace kept for a failure report.
const TRACE_TAIL: usize = 40;
/// The executor puts a job whose result could not be stored back this much later.
const STORE_RETRY: Duration = Duration::seconds(5);

type Check = Result<(), String>;

/// A connector answer held back: delivered later, unless the process dies first.
struct Late {
    at: DateTime<Utc>,
    job: Job,
    result: Result<Value, Failure>,
}

pub struct Sim {
    seed: u64,
    opts: SimOptions,
    rng: Rng,
    disk: Disk,
    clock: Arc<VirtualClock>,
    engine: Option<Engine>,
    processes: Vec<Generated>,
    /// Correlation keys given to started instances, with their process.
    keys: Vec<(String, usize)>,
    /// Highest history length an `Ok` answer showed, per instance.
    acked: BTreeMap<u64, u32>,
    /// The receiving side of the connector: idempotency key → the call it stands for.
    calls: BTreeMap<String, (u64, String, Value)>,
    late: Vec<Late>,
    /// Sends per (name, key) that may have been accepted.
    sent: BTreeMap<(String, String), usize>,
    draining: bool,
    start_attempts: usize,
    window: usize,
    /// [`Disk::changes`] at the last check: an unchanged store needs no new one.
    checked_at: Option<u64>,
    trace: Vec<String>,
    step: usize,
    report: SimReport,
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").expect("valid time").with_timezone(&Utc)
}

/// `window`: the due queue's memory window, small so that refills from the
/// store's index happen all the time.
fn open_engine(disk: &Disk, clock: &Arc<VirtualClock>, window: usize) -> Result<Engine, EngineError> {
    let store = KvStore::new(disk.open())?;
    // The driver runs connector jobs itself; the registered one only names it.
    let noop = FnConnector(|_: &crate::Call| Ok(Value::Null));
    Engine::builder().store(store).clock(clock.clone()).queue_window(window).connector(CONNECTOR, noop).build()
}

impl Sim {
    pub fn new(seed: u64, opts: SimOptions) -> Self {
        let mut rng = Rng::new(seed);
        let disk = Disk::new(rng.split());
        let clock = Arc::new(VirtualClock::new(t0()));
        let window = rng.range(2, 12) as usize;
        Sim {
            seed,
            opts,
            rng,
            disk,
            clock,
            engine: None,
            processes: Vec::new(),
            keys: Vec::new(),
            acked: BTreeMap::new(),
            calls: BTreeMap::new(),
            late: Vec::new(),
            sent: BTreeMap::new(),
            draining: false,
            start_attempts: 0,
            window,
            checked_at: None,
            trace: Vec::new(),
            step: 0,
            report: SimReport { seed, ..SimReport::default() },
        }
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("engine open")
    }

    fn log(&mut self, line: String) {
        for d in self.disk.take_log() {
            self.trace.push(format!("    {d}"));
        }
        let at = (self.clock.now() - t0()).num_minutes();
        self.trace.push(format!("#{} +{at}m {line}", self.step));
    }

    fn fail(&mut self, message: String) -> SimFailure {
        self.log(format!("FAILED: {message}"));
        let from = self.trace.len().saturating_sub(TRACE_TAIL);
        // The processes first (a tail may not reach back to them), then the tail.
        let mut trace: Vec<String> =
            self.processes.iter().map(|g| format!("process {}:\n{}", g.id, g.yaml.trim_end())).collect();
        trace.extend(self.trace[from..].iter().filter(|l| !l.contains(" deployed p")).cloned());
        SimFailure { seed: self.seed, step: self.step, message, trace }
    }

    /// Run the seed: set up, random steps, drain, final checks.
    pub fn run(mut self) -> Result<SimReport, SimFailure> {
        let out = catch_unwind(AssertUnwindSafe(|| self.run_inner()));
        let result = match out {
            Ok(r) => r,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "non-text panic".into());
                Err(format!("panic: {msg}"))
            }
        };
        match result {
            Ok(()) => {
                self.report.steps = self.step;
                self.report.faults = self.disk.faults();
                self.report.instances = self.acked.len();
                Ok(self.report)
            }
            Err(m) => Err(self.fail(m)),
        }
    }

    fn run_inner(&mut self) -> Check {
        self.engine = Some(open_engine(&self.disk, &self.clock, self.window).map_err(|e| format!("open: {e}"))?);
        for i in 0..self.opts.processes.max(1) {
            let g = grammar::generate(&mut self.rng, &format!("p{i}"), self.opts.hostile_dates);
            if let Err(e) = self.engine().deploy(&format!("{}.yaml", g.id), &g.yaml) {
                return Err(format!("generated process does not deploy: {e}\n{}", g.yaml));
            }
            self.log(format!("deployed {}:\n{}", g.id, g.yaml));
            self.processes.push(g);
        }
        self.disk.set_faults(self.opts.faults);
        for _ in 0..self.opts.steps {
            self.step += 1;
            self.act()?;
            self.check(self.step % 10 == 0)?;
        }
        self.drain()
    }

    // ------------------------------------------------------------------ actions

    fn act(&mut self) -> Check {
        let faults = self.disk.faults();
        match self.rng.weighted(&[15, 22, 12, 10, 15, 4, 2, 3, 5, 3]) {
            0 => self.start(faults),
            1 => self.complete(faults),
            2 => self.message(faults),
            3 => self.run_due(),
            4 => {
                let minutes = self.rng.range(1, 240) as i64;
                self.advance(Duration::minutes(minutes))
            }
            5 => self.deliver_late(true),
            6 => self.restart(),
            7 => self.cancel(faults),
            8 => self.retry_incident(faults),
            _ => {
                self.disk.background_flush();
                self.log("disk: background flush".into());
                Ok(())
            }
        }
    }

    /// An engine error is fine when it is an answer (conflict, refusal) or follows
    /// an injected fault; anything else is a finding.
    fn judge(&mut self, what: &str, faults_before: u64, e: &EngineError) -> Check {
        self.log(format!("{what} → error: {}", short(&e.to_string())));
        match e {
            EngineError::Conflict(_)
            | EngineError::Rejected(_)
            | EngineError::UnknownTask(_)
            | EngineError::UnknownInstance(_)
            | EngineError::NoReceiver { .. } => Ok(()),
            EngineError::Store(_) if self.disk.faults() > faults_before => Ok(()),
            _ => Err(format!("{what}: unexpected error without an injected fault: {e}")),
        }
    }

    fn ack(&mut self, inst: &Instance) {
        let e = self.acked.entry(inst.id).or_insert(0);
        *e = (*e).max(inst.history_len);
    }

    fn form(&mut self, names: &[&str]) -> Vars {
        let mut vars = Vars::new();
        let n = self.rng.below(names.len() as u64 + 1);
        // Most forms are filled in properly; the others get hostile values and names.
        let hostile = self.rng.chance(350);
        let names = if hostile { names } else { &names[..names.len().min(2)] };
        for _ in 0..n {
            let name = *self.rng.pick(names);
            let v = if hostile && self.rng.chance(600) {
                hostile::value(&mut self.rng)
            } else {
                hostile::ordinary(&mut self.rng, name)
            };
            vars.insert(name.to_string(), v);
        }
        vars
    }

    fn start(&mut self, faults: u64) -> Check {
        let p = self.rng.index(self.processes.len());
        // A fresh key per attempt, also for starts that fail: a call made for a lost
        // start then differs in its input from a later start that reuses its id.
        self.start_attempts += 1;
        let key = format!("k{}", self.start_attempts);
        let mut vars = self.form(&["v0", "v1", "s0", "r0", "unknown", "ｖ０"]);
        if !self.rng.chance(50) {
            vars.insert("k".into(), json!(key));
        }
        let id = self.processes[p].id.clone();
        let what =
            format!("start {id} k={key} {}", short(&Value::Object(vars.clone().into_iter().collect()).to_string()));
        match self.engine().start(&id, vars, StartOptions { by: Some("u".into()), business_key: None }) {
            Ok(inst) => {
                self.log(format!("{what} → instance {} {}", inst.id, inst.status.as_str()));
                self.report.started += 1;
                self.keys.push((key, p));
                self.ack(&inst);
                Ok(())
            }
            Err(e) => self.judge(&what, faults, &e),
        }
    }

    fn complete(&mut self, faults: u64) -> Check {
        let tasks = self.engine().tasks(&TaskQuery::default()).map_err(|e| format!("tasks: {e}"))?;
        if tasks.is_empty() {
            return self.run_due();
        }
        let task = tasks[self.rng.index(tasks.len())].clone();
        let r = match self.rng.below(10) {
            0 => {
                let what = format!("claim {} by alice", task.id);
                match self.engine().claim(&task.id, "alice") {
                    Ok(i) => {
                        self.log(format!("{what} → ok"));
                        self.ack(&i);
                        return Ok(());
                    }
                    Err(e) => return self.judge(&what, faults, &e),
                }
            }
            1 => Outcome::Named("nope".into()),
            2 => {
                let user = task.assignee.clone().unwrap_or_else(|| "u".into());
                let what = format!("fail task {} with {TASK_ERROR}", task.id);
                match self.engine().fail_task(&task.id, &user, TASK_ERROR, "書類不備 🎌") {
                    Ok(i) => {
                        self.log(format!("{what} → {}", i.status.as_str()));
                        self.ack(&i);
                        return Ok(());
                    }
                    Err(e) => return self.judge(&what, faults, &e),
                }
            }
            _ => Outcome::Next,
        };
        let data = self.form(&["v0", "s0", "k", "r0", "unknown"]);
        let user = match (&task.assignee, self.rng.chance(100)) {
            (Some(a), false) => a.clone(),
            (Some(_), true) => "bob".into(),
            (None, _) => "u".into(),
        };
        let what = format!(
            "complete {} by {user} {:?} {}",
            task.id,
            r,
            short(&Value::Object(data.clone().into_iter().collect()).to_string())
        );
        match self.engine().complete(&task.id, &user, data, r) {
            Ok(i) => {
                self.log(format!("{what} → {}", i.status.as_str()));
                self.report.completed_tasks += 1;
                self.ack(&i);
                Ok(())
            }
            Err(e) => self.judge(&what, faults, &e),
        }
    }

    fn message(&mut self, faults: u64) -> Check {
        let (name, key) = match self.keys.is_empty() || self.rng.chance(100) {
            true => ("msg_nobody".to_string(), format!("k{}", self.rng.below(5))),
            false => {
                let (key, p) = self.keys[self.rng.index(self.keys.len())].clone();
                let names = &self.processes[p].messages;
                if names.is_empty() {
                    return self.run_due();
                }
                (names[self.rng.index(names.len())].clone(), key)
            }
        };
        let payload = if self.rng.chance(300) {
            Value::Object(self.form(&["v0", "s0", "k", "unknown"]).into_iter().collect())
        } else {
            json!({ "v0": self.rng.below(10) })
        };
        let ttl = match self.rng.below(4) {
            0 => Some(std::time::Duration::ZERO),
            1 => Some(std::time::Duration::from_secs(3600)),
            _ => None,
        };
        let what = format!("message {name}/{key} ttl={ttl:?} {}", short(&payload.to_string()));
        *self.sent.entry((name.clone(), key.clone())).or_default() += 1;
        match self.engine().correlate(&name, &key, payload, &MessageOptions { ttl }) {
            Ok(c) => {
                self.log(format!("{what} → {c:?}"));
                self.report.delivered += usize::from(matches!(c, crate::Correlation::Delivered { .. }));
                if let crate::Correlation::Delivered { instance, .. } | crate::Correlation::Started { instance, .. } = c
                {
                    // `Ok` acknowledges the delivery; what the store shows now is durable
                    // only if no write failed meanwhile (a follow-up delivery may have).
                    if self.disk.faults() == faults {
                        if let Ok(i) = self.engine().instance(instance) {
                            self.ack(&i);
                        }
                    }
                }
                Ok(())
            }
            Err(e) => self.judge(&what, faults, &e),
        }
    }

    fn cancel(&mut self, faults: u64) -> Check {
        let Some(id) = self.some_instance(|_| true)? else { return Ok(()) };
        let what = format!("cancel {id}");
        match self.engine().cancel(id, "admin", "simulated") {
            Ok(i) => {
                self.log(format!("{what} → ok"));
                self.ack(&i);
                Ok(())
            }
            Err(e) => self.judge(&what, faults, &e),
        }
    }

    fn retry_incident(&mut self, faults: u64) -> Check {
        let Some(id) = self.some_instance(|i| !i.incidents.is_empty())? else { return self.run_due() };
        let inst = self.engine().instance(id).map_err(|e| e.to_string())?;
        let incident = inst.incidents[self.rng.index(inst.incidents.len())].clone();
        let vars = if self.rng.chance(500) { self.form(&["v0", "v1", "s0", "r0"]) } else { Vars::new() };
        let what = format!("retry incident {id}/{} ({})", incident.id, short(&incident.message));
        match self.engine().retry_incident(id, incident.id, vars, "admin") {
            Ok(i) => {
                self.log(format!("{what} → {}", i.status.as_str()));
                self.ack(&i);
                Ok(())
            }
            Err(e) => self.judge(&what, faults, &e),
        }
    }

    fn some_instance(&mut self, f: impl Fn(&Instance) -> bool) -> Result<Option<u64>, String> {
        let all = self.engine().instances(&InstanceFilter::default()).map_err(|e| e.to_string())?;
        let live: Vec<u64> = all.iter().filter(|i| !i.status.is_finished() && f(i)).map(|i| i.id).collect();
        Ok((!live.is_empty()).then(|| live[self.rng.index(live.len())]))
    }

    /// The process dies (unflushed writes are lost, late answers with it) and
    /// starts again on what the disk kept.
    fn restart(&mut self) -> Check {
        self.engine = None;
        self.late.clear();
        let lost = self.disk.unflushed();
        self.disk.crash();
        self.report.crashes += 1;
        self.log(format!("CRASH ({lost} unflushed batch(es) lost); reopening"));
        for attempt in 0..5 {
            match open_engine(&self.disk, &self.clock, self.window) {
                Ok(e) => {
                    self.engine = Some(e);
                    break;
                }
                Err(e) => self.log(format!("reopen attempt {attempt} failed: {e}")),
            }
        }
        if self.engine.is_none() {
            self.disk.set_faults(FaultRates::default());
            let opened = open_engine(&self.disk, &self.clock, self.window);
            self.disk.set_faults(if self.draining { FaultRates::default() } else { self.opts.faults });
            self.engine = Some(opened.map_err(|e| format!("store does not reopen without faults: {e}"))?);
        }
        self.check(true)
    }

    // ---------------------------------------------------------------- executor

    /// Run every job due now, as the executor does, and the jobs they lead to.
    fn run_due(&mut self) -> Check {
        for _ in 0..1000 {
            self.deliver_late(false)?;
            let due = self.engine().take_due(self.clock.now(), 16);
            if due.is_empty() {
                return Ok(());
            }
            for id in due {
                let faults = self.disk.faults();
                // As the executor: count the start durably before running it.
                let job = match self.engine().begin_run(&id) {
                    Ok(Some(j)) => j,
                    Ok(None) => continue,
                    Err(e) => {
                        self.judge(&format!("begin {id}"), faults, &e)?;
                        self.engine().requeue(self.clock.now() + STORE_RETRY, id);
                        continue;
                    }
                };
                if job.kind.is_internal() {
                    let what = format!("fire {} ({} at {})", job.id, job.instance, job.node);
                    match self.engine().fire(&job) {
                        Ok(()) => {
                            self.log(format!("{what} → ok"));
                            self.report.fired += 1;
                            if job.instance != 0 && self.disk.faults() == faults {
                                if let Ok(i) = self.engine().instance(job.instance) {
                                    self.ack(&i);
                                }
                            }
                        }
                        Err(e @ EngineError::Store(_)) => {
                            self.judge(&what, faults, &e)?;
                            self.engine().requeue(self.clock.now() + STORE_RETRY, job.id.clone());
                        }
                        Err(e) => self.judge(&what, faults, &e)?,
                    }
                } else {
                    self.call(job)?;
                }
            }
        }
        Err("the executor keeps finding due jobs (1,000 rounds): a job that never leaves the queue".into())
    }

    /// The simulated connector: the receiving service records the call under its
    /// idempotency key, then answers in one of several ways.
    fn call(&mut self, job: Job) -> Check {
        let JobKind::Connector { input, idempotency_key, .. } = &job.kind else {
            return Err(format!("job {} is not a connector call", job.id));
        };
        self.report.connector_calls += 1;
        let this = (job.instance, job.node.clone(), input.clone());
        match self.calls.get(idempotency_key) {
            Some(prev) if *prev != this => {
                let msg = format!(
                    "idempotency key {idempotency_key} reused for a different call: first {prev:?}, now {this:?}"
                );
                if self.opts.strict_keys {
                    return Err(msg);
                }
                self.log(format!("KNOWN (finding 12): {msg}"));
                self.report.known.push(msg);
            }
            Some(_) => {}
            None => {
                self.calls.insert(idempotency_key.clone(), this);
            }
        }
        let kind = if self.draining { 0 } else { self.rng.weighted(&[50, 8, 12, 8, 4, 8, 10]) };
        let result = match kind {
            0 => Ok(json!({ "value": self.rng.below(100) })),
            1 => Ok(json!({ "value": hostile::value(&mut self.rng) })),
            2 => Err(Failure::Retryable { message: "503 Service Unavailable".into(), retry_after_ms: None }),
            3 => {
                Err(Failure::Business { code: BUSINESS_CODE.into(), message: "申請が却下されました".into() })
            }
            4 => Err(Failure::Fatal { message: "401 bad credentials".into() }),
            5 => Err(Failure::Retryable { message: "no answer within 30s".into(), retry_after_ms: None }),
            _ => {
                let at = self.clock.now() + Duration::minutes(self.rng.range(1, 180) as i64);
                let result = Ok(json!({ "value": self.rng.below(100) }));
                self.log(format!(
                    "call {} key {idempotency_key}: answer comes late, at +{}m",
                    job.id,
                    (at - t0()).num_minutes()
                ));
                self.late.push(Late { at, job, result });
                return Ok(());
            }
        };
        self.report_result(job, result)
    }

    fn report_result(&mut self, job: Job, result: Result<Value, Failure>) -> Check {
        let faults = self.disk.faults();
        let what = format!("job {} attempt {} → {}", job.id, job.attempt, short(&format!("{result:?}")));
        match self.engine().finish_job(&job, result) {
            Ok(i) => {
                self.log(format!("{what} → {}", i.status.as_str()));
                self.ack(&i);
                Ok(())
            }
            Err(e @ EngineError::Store(_)) => {
                self.judge(&what, faults, &e)?;
                self.engine().requeue(self.clock.now() + STORE_RETRY, job.id.clone());
                Ok(())
            }
            Err(e) => self.judge(&what, faults, &e),
        }
    }

    /// Hand over late answers whose time has come (`any`: the oldest one now).
    fn deliver_late(&mut self, any: bool) -> Check {
        loop {
            let now = self.clock.now();
            let pos = match any && !self.late.is_empty() {
                true => Some(0),
                false => self.late.iter().position(|l| l.at <= now),
            };
            let Some(pos) = pos else { return Ok(()) };
            let l = self.late.remove(pos);
            self.report_result(l.job, l.result)?;
            if any {
                return Ok(());
            }
        }
    }

    /// Move the clock forward, stopping at every due time (as `Executor::advance`).
    fn advance(&mut self, by: Duration) -> Check {
        let target = self.clock.now() + by;
        self.log(format!("advance {}m", by.num_minutes()));
        self.run_due()?;
        for _ in 0..10_000 {
            let next_job = self.engine().next_due();
            let next_late = self.late.iter().map(|l| l.at).min();
            let next = [next_job, next_late].into_iter().flatten().min().filter(|d| *d <= target);
            let Some(next) = next else {
                self.clock.set(target);
                return self.run_due();
            };
            if next > self.clock.now() {
                self.clock.set(next);
            }
            let before = self.clock.now();
            self.run_due()?;
            if self.engine().next_due().is_some_and(|d| d <= before) && self.late.iter().all(|l| l.at > before) {
                // The store refused a result or a start count: as `Executor::advance`,
                // do not spin on it; time moves on and the job is tried again later
                // (the drain checks that everything ends).
                self.log(format!("advance: a job due at {before} could not run now; moving on"));
                self.clock.set(target);
                return self.run_due();
            }
        }
        Err("advance did not reach its target in 10,000 stops".into())
    }

    // ------------------------------------------------------------------ drain

    /// Faults off, a restart, then do everything a patient user would: complete
    /// every task, send every awaited message, cancel what is stuck in an incident,
    /// let time pass. Every instance must end.
    fn drain(&mut self) -> Check {
        self.draining = true;
        self.step += 1;
        self.disk.set_faults(FaultRates::default());
        self.log("DRAIN: faults off".into());
        self.restart()?;
        for _ in 0..40 {
            let live: Vec<Instance> = self
                .engine()
                .instances(&InstanceFilter::default())
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|i| !i.status.is_finished())
                .collect();
            if live.is_empty() {
                break;
            }
            for i in &live {
                if i.status == Status::Incident {
                    let faults = self.disk.faults();
                    if let Err(e) = self.engine().cancel(i.id, "admin", "incident at drain") {
                        self.judge(&format!("cancel {}", i.id), faults, &e)?;
                    }
                    continue;
                }
                for t in &i.tokens {
                    match &t.wait {
                        Wait::Task { task, assignee } => {
                            let user = assignee.clone().unwrap_or_else(|| "u".into());
                            if let Err(e) = self.engine().complete(task, &user, Vars::new(), Outcome::Next) {
                                self.judge(&format!("drain: complete {task}"), u64::MAX, &e)?;
                            }
                        }
                        w => {
                            for (name, key) in w.messages() {
                                *self.sent.entry((name.to_string(), key.to_string())).or_default() += 1;
                                if let Err(e) =
                                    self.engine().correlate(name, key, json!({}), &MessageOptions::default())
                                {
                                    self.judge(&format!("drain: message {name}/{key}"), u64::MAX, &e)?;
                                }
                            }
                        }
                    }
                }
            }
            self.advance(Duration::hours(12))?;
            self.check(false)?;
        }
        self.check(true)?;
        let stuck: Vec<String> = self
            .engine()
            .instances(&InstanceFilter::default())
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|i| !i.status.is_finished())
            .map(|i| format!("{} ({}) tokens {:?}", i.id, i.status.as_str(), i.tokens))
            .collect();
        if !stuck.is_empty() {
            return Err(format!("instances still running after the drain: {}", stuck.join("; ")));
        }
        let buffered = self.engine().store().all_buffered().map_err(|e| e.to_string())?;
        for m in buffered {
            let subs = self.engine().store().subscriptions(&m.name, &m.key).map_err(|e| e.to_string())?;
            if !subs.is_empty() {
                return Err(format!("message {}/{} buffered while {} token(s) wait for it", m.name, m.key, subs.len()));
            }
        }
        Ok(())
    }

    // ----------------------------------------------------------------- checks

    fn check(&mut self, full: bool) -> Check {
        let changes = self.disk.changes();
        if !full && self.checked_at == Some(changes) {
            return Ok(());
        }
        self.checked_at = Some(changes);
        let engine = self.engine().clone();
        let store = engine.store();
        let all = engine.instances(&InstanceFilter::default()).map_err(|e| format!("instances: {e}"))?;
        let jobs = store.jobs().map_err(|e| format!("jobs: {e}"))?;
        let mut jobs_by_instance: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for j in &jobs {
            if matches!(j.kind, JobKind::Connector { .. } | JobKind::Timer) {
                jobs_by_instance.entry(j.instance).or_default().insert(j.id.clone());
            }
        }
        let mut tasks_by_instance: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for t in engine.tasks(&TaskQuery::default()).map_err(|e| format!("tasks: {e}"))? {
            tasks_by_instance.entry(t.instance).or_default().insert(t.id);
        }
        let by_id: BTreeMap<u64, &Instance> = all.iter().map(|i| (i.id, i)).collect();
        for (id, len) in &self.acked {
            match by_id.get(id) {
                None => return Err(format!("acknowledged instance {id} (history {len}) is gone")),
                Some(i) if i.history_len < *len => {
                    return Err(format!(
                        "acknowledged write lost: instance {id} was acknowledged at history {len}, the store has {}",
                        i.history_len
                    ))
                }
                Some(_) => {}
            }
        }
        for i in &all {
            let p = engine
                .process(&i.process, i.version)
                .ok_or_else(|| format!("instance {} of unknown process {} v{}", i.id, i.process, i.version))?;
            i.check_invariants(&p).map_err(|e| format!("invariant: {e}"))?;
            let tasks = tasks_by_instance.remove(&i.id).unwrap_or_default();
            let waiting: BTreeSet<String> = i.open_task_ids().map(str::to_string).collect();
            if tasks != waiting {
                return Err(format!(
                    "instance {}: open task records {tasks:?}, tokens wait on {waiting:?}\n{}",
                    i.id,
                    history_tail(&engine, i.id)
                ));
            }
            let mut expected = BTreeSet::new();
            for t in &i.tokens {
                if let Wait::Job { job, .. } | Wait::Timer { job } = &t.wait {
                    expected.insert(job.clone());
                }
                expected.extend(t.timers.iter().map(|a| a.job.clone()));
            }
            for w in &i.forks {
                expected.extend(w.timers.iter().map(|a| a.job.clone()));
            }
            let stored = jobs_by_instance.remove(&i.id).unwrap_or_default();
            if stored != expected {
                let stray: Vec<String> = jobs
                    .iter()
                    .filter(|j| stored.contains(&j.id) && !expected.contains(&j.id))
                    .map(|j| format!("{} at {} ({:?}, attempt {})", j.id, j.node, j.kind.is_internal(), j.attempt))
                    .collect();
                return Err(format!(
                    "instance {} ({}): job records {stored:?}, tokens wait on {expected:?}; stray: {stray:?}\n{}",
                    i.id,
                    i.status.as_str(),
                    history_tail(&engine, i.id)
                ));
            }
            if full {
                self.check_history(&engine, i)?;
            }
        }
        if let Some((id, tasks)) = tasks_by_instance.into_iter().next() {
            return Err(format!("open tasks {tasks:?} of instance {id}, which does not exist"));
        }
        if let Some((id, jobs)) = jobs_by_instance.into_iter().next() {
            return Err(format!("jobs {jobs:?} of instance {id}, which does not exist"));
        }
        if full {
            let mut received: BTreeMap<(String, String), usize> = BTreeMap::new();
            for i in &all {
                for h in engine.history(i.id).map_err(|e| e.to_string())? {
                    if let HistoryEvent::MessageReceived { name, key, .. } = h.event {
                        *received.entry((name, key)).or_default() += 1;
                    }
                }
            }
            for (k, n) in received {
                let sent = self.sent.get(&k).copied().unwrap_or(0);
                if n > sent {
                    return Err(format!("message {}/{} received {n} times, sent {sent} times", k.0, k.1));
                }
            }
        }
        Ok(())
    }

    fn check_history(&self, engine: &Engine, i: &Instance) -> Check {
        let history = engine.history(i.id).map_err(|e| e.to_string())?;
        if history.len() != i.history_len as usize {
            return Err(format!("instance {}: {} history lines, history_len {}", i.id, history.len(), i.history_len));
        }
        if let Some((n, h)) = history.iter().enumerate().find(|(n, h)| h.seq as usize != *n) {
            return Err(format!("instance {}: history line {n} has seq {}", i.id, h.seq));
        }
        let mut set = BTreeSet::new();
        let mut fired = BTreeSet::new();
        for h in &history {
            match &h.event {
                HistoryEvent::TimerSet { job, .. } => {
                    set.insert(job.clone());
                }
                HistoryEvent::TimerFired { job } => {
                    if !set.contains(job) {
                        return Err(format!("instance {}: timer {job} fired but was never set", i.id));
                    }
                    if !fired.insert(job.clone()) {
                        return Err(format!("instance {}: timer {job} fired twice for one arming", i.id));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The last history lines of an instance, for a failure message.
fn history_tail(engine: &Engine, id: u64) -> String {
    let h = engine.history(id).unwrap_or_default();
    let from = h.len().saturating_sub(25);
    let lines: Vec<String> = h[from..]
        .iter()
        .map(|h| {
            format!(
                "    history {} {} {} {}",
                h.seq,
                h.node.as_deref().unwrap_or("-"),
                h.event.name(),
                short(&serde_json::to_string(&h.event).unwrap_or_default())
            )
        })
        .collect();
    format!("  instance {id}, last history lines:\n{}", lines.join("\n"))
}

/// A one-line excerpt of a long text (hostile values are long).
fn short(s: &str) -> String {
    let one: String = s.chars().map(|c| if c.is_control() { '·' } else { c }).collect();
    if one.chars().count() > 160 {
        format!("{}… ({} chars)", one.chars().take(160).collect::<String>(), s.chars().count())
    } else {
        one
    }
}
