//! The pure core: `(process, instance, event, now) → transition`.
//!
//! No IO, no clock, no randomness: the same inputs give the same state, commands and
//! history, which is what makes replay, property tests and crash recovery simple.
//! An event is either rejected before anything changes ([`Rejection`]) or applied in
//! full. Failures while running (a bad expression, a failed connector) never reject:
//! they park the token with an [`Incident`] so the rest of the instance carries on.

use super::state::*;
use crate::expr::{Env, Expr, Vars};
use crate::kinds;
use crate::model::FieldMode;
use crate::process::{BoundaryTrigger, EventTrigger, MessageSpec, NodeIx, NodeKind, Process, TimerWhen};
use crate::schedule;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;

mod contain;
mod errors;
mod events;
mod multi;
mod tasks;
mod waits;

pub use contain::{raise_incident, Culprit};

/// What the run steps of the node kinds ([`crate::kinds`]) work with.
pub(crate) mod for_kinds {
    pub(crate) use super::{parse_due, Command, Moving, Run};
    pub(crate) use crate::runtime::state::*;
    pub(crate) use serde_json::Value;
}

use events::{
    call_ended, call_refused, call_started, cancel, claim, job_done, job_failed, message, resolve_incident,
    retry_incident, task_error, timer_fired, unclaim,
};
use tasks::{assign, complete};

/// Most node executions one event may cause; validation rules out loops without
/// a wait state, so this is a safety net, not a limit a process should meet.
pub const MAX_STEPS_PER_EVENT: usize = 10_000;

/// Which way a user completes a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The normal way on: `next`.
    Next,
    /// Back to the designer's `send_back` node, with a comment.
    SendBack { comment: String },
    /// A named outcome from `outcomes:`.
    Named(String),
}

/// How a connector call went wrong, as the process sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    /// Worth trying again (timeouts, 5xx, 429), not before `retry_after_ms` if the
    /// service said so (HTTP `Retry-After`).
    Retryable {
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The service said no for a business reason, with its code.
    Business { code: String, message: String },
    /// Will not get better by retrying (bad credentials, bad request).
    Fatal { message: String },
}

impl Failure {
    pub fn message(&self) -> String {
        match self {
            Failure::Retryable { message, .. } | Failure::Fatal { message } => message.clone(),
            Failure::Business { code, message } => format!("[{code}] {message}"),
        }
    }
}

/// Longest `Retry-After` honoured; a longer one waits this long.
pub const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// Something that happened to an existing instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Claim {
        task: String,
        user: String,
    },
    Unclaim {
        task: String,
        user: String,
        force: bool,
    },
    /// `by` (an administrator) gives the task to `assignee`, or unassigns it.
    Assign {
        task: String,
        assignee: Option<String>,
        by: String,
    },
    Complete {
        task: String,
        user: String,
        data: Vars,
        outcome: Outcome,
    },
    JobDone {
        job: String,
        output: Value,
    },
    JobFailed {
        job: String,
        failure: Failure,
    },
    Cancel {
        by: String,
        reason: String,
    },
    RetryIncident {
        incident: u32,
        vars: Vars,
        by: String,
    },
    /// A person ends task `task` with business error `code`, for an error boundary.
    TaskError {
        task: String,
        user: String,
        code: String,
        message: String,
    },
    /// An operator did the failed step by hand: move the token past it.
    ResolveIncident {
        incident: u32,
        vars: Vars,
        by: String,
    },
    /// A timer job of this instance is due.
    TimerFired {
        job: String,
    },
    /// A correlated message for token `token`.
    Message {
        token: u32,
        name: String,
        key: String,
        payload: Value,
    },
    /// The engine started called instance `child` for the call whose start job is `job`.
    CallStarted {
        job: String,
        child: InstanceId,
        process: String,
        version: u32,
    },
    /// The called instance of start job `job` could not be started (`message` says why).
    CallRefused {
        job: String,
        message: String,
    },
    /// Called instance `child` ended; `job` is the `call_end` job telling it, `vars`
    /// the child's final variables.
    CallEnded {
        job: String,
        child: InstanceId,
        outcome: CallOutcome,
        vars: Vars,
    },
}

/// Effects for the edge to carry out after the commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    OpenTask(Task),
    /// Set or clear the assignee of an open task.
    AssignTask {
        task: String,
        assignee: Option<String>,
    },
    CloseTask {
        task: String,
        status: TaskStatus,
        by: Option<String>,
        outcome: Option<String>,
    },
    ScheduleJob(Job),
    /// Run the same call again (same input and idempotency key) at `due`.
    RetryJob {
        job: String,
        due: DateTime<Utc>,
        attempt: u32,
    },
    CancelJob {
        job: String,
    },
    /// Token `token` now waits for message (`name`, `key`).
    Subscribe {
        token: u32,
        node: String,
        name: String,
        key: String,
    },
    /// Token `token` no longer waits for message (`name`, `key`).
    Unsubscribe {
        token: u32,
        name: String,
        key: String,
    },
    /// Cancel called instance `child` (and what it called): its caller no longer waits.
    CancelChild {
        child: InstanceId,
    },
}

/// What an event did: commands to carry out and history to append.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transition {
    pub commands: Vec<Command>,
    pub history: Vec<HistoryEntry>,
}

/// One problem with one form field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

/// Why an event was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    #[error("task {0} is not open")]
    TaskNotOpen(String),
    #[error("task {task} is claimed by {assignee}")]
    ClaimedByOther { task: String, assignee: String },
    #[error("invalid data: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.problem)).collect::<Vec<_>>().join("; "))]
    InvalidData(Vec<FieldError>),
    #[error("task {task} has no outcome `{outcome}`; allowed: {allowed}")]
    UnknownOutcome { task: String, outcome: String, allowed: String },
    #[error("job {0} is not awaited (already done or cancelled)")]
    StaleJob(String),
    #[error("instance is {0}")]
    Finished(&'static str),
    #[error("incident {0} not found")]
    IncidentNotFound(u32),
    #[error("no token {token} waits for message `{name}` with key `{key}`")]
    NotWaiting { token: u32, name: String, key: String },
    #[error("no boundary catches error `{code}` from task {task}; complete it normally or with an outcome")]
    UncaughtTaskError { task: String, code: String },
    #[error("incident {incident} at `{node}` cannot be resolved by skipping the step: {why}")]
    CannotSkip { incident: u32, node: String, why: String },
}

/// Create an instance and run it to its first wait states.
pub fn start(
    p: &Process,
    id: InstanceId,
    vars: Vars,
    by: Option<String>,
    business_key: Option<String>,
    now: DateTime<Utc>,
) -> Result<(Instance, Transition), Rejection> {
    start_called(p, id, vars, by, business_key, None, now)
}

/// [`start`] an instance called by a call activity of `parent` (`None`: a top instance).
pub fn start_called(
    p: &Process,
    id: InstanceId,
    mut vars: Vars,
    by: Option<String>,
    business_key: Option<String>,
    parent: Option<ParentLink>,
    now: DateTime<Utc>,
) -> Result<(Instance, Transition), Rejection> {
    let mut errors = Vec::new();
    for (name, v) in &vars {
        match p.vars.get(name) {
            None => errors
                .push(FieldError { field: name.clone(), problem: "not a declared variable of this process".into() }),
            Some(spec) => {
                if let Err(e) = spec.check(v) {
                    errors.push(FieldError { field: name.clone(), problem: e });
                }
            }
        }
    }
    for (name, spec) in &p.vars {
        if !vars.contains_key(name) {
            if let Some(d) = &spec.default {
                vars.insert(name.clone(), d.clone());
            }
        }
        if spec.required && is_blank(vars.get(name)) {
            errors.push(FieldError { field: name.clone(), problem: "required".into() });
        }
    }
    if errors.is_empty() {
        errors = broken_rules(p, &p.start_rules, &vars, id, by.as_deref(), now);
    } else {
        let more = rules_beside_field_errors(p, &p.start_rules, &vars, &errors, id, by.as_deref(), now);
        errors.extend(more);
    }
    if !errors.is_empty() {
        return Err(Rejection::InvalidData(errors));
    }
    let mut inst = Instance {
        id,
        process: p.id.clone(),
        version: p.version,
        status: Status::Running,
        business_key,
        vars,
        tokens: Vec::new(),
        joins: Vec::new(),
        incidents: Vec::new(),
        forks: Vec::new(),
        multis: Vec::new(),
        locals: Vec::new(),
        seq: 0,
        history_len: 0,
        started_at: now,
        started_by: by.clone(),
        ended_at: None,
        participants: Vec::new(),
        approvers: Vec::new(),
        trigger: None,
        parent: parent.clone(),
        unread: Vec::new(),
    };
    let mut run = Run::new(p, &mut inst, now);
    let vars = run.inst.vars.clone();
    let parent = parent.map(|l| l.instance);
    run.log(None, by, HistoryEvent::Started { vars, trigger: None, parent });
    let token = run.new_token("start", Vec::new());
    run.ready.push_back(token);
    let transition = run.finish();
    Ok((inst, transition))
}

/// Apply one event to a running instance.
pub fn step(p: &Process, inst: &mut Instance, event: Event, now: DateTime<Utc>) -> Result<Transition, Rejection> {
    // A circulation's read task is acknowledged even after the instance completed.
    if let Event::Complete { task, user, data, outcome } = &event {
        if kinds::circulate::is_unread(inst, task) {
            let (task, user, data, outcome) = (task.clone(), user.clone(), data.clone(), outcome.clone());
            return kinds::circulate::acknowledge(inst, task, user, data, outcome, now);
        }
    }
    if inst.status.is_finished() {
        return Err(Rejection::Finished(inst.status.as_str()));
    }
    match event {
        Event::Claim { task, user } => claim(p, inst, task, user, now),
        Event::Unclaim { task, user, force } => unclaim(p, inst, task, user, force, now),
        Event::Complete { task, user, data, outcome } => complete(p, inst, task, user, data, outcome, now),
        Event::Assign { task, assignee, by } => assign(p, inst, task, assignee, by, now),
        Event::JobDone { job, output } => job_done(p, inst, job, output, now),
        Event::JobFailed { job, failure } => job_failed(p, inst, job, failure, now),
        Event::Cancel { by, reason } => cancel(p, inst, by, reason, now),
        Event::RetryIncident { incident, vars, by } => retry_incident(p, inst, incident, vars, by, now),
        Event::ResolveIncident { incident, vars, by } => resolve_incident(p, inst, incident, vars, by, now),
        Event::TaskError { task, user, code, message } => task_error(p, inst, task, user, code, message, now),
        Event::TimerFired { job } => timer_fired(p, inst, job, now),
        Event::Message { token, name, key, payload } => message(p, inst, token, name, key, payload, now),
        Event::CallStarted { job, child, process, version } => call_started(p, inst, job, child, process, version, now),
        Event::CallRefused { job, message } => call_refused(p, inst, job, message, now),
        Event::CallEnded { job, child, outcome, vars } => call_ended(p, inst, job, child, outcome, vars, now),
    }
}

/// The incident to retry or resolve, after checking the variables sent with it.
fn incident_pos(p: &Process, inst: &Instance, incident: u32, vars: &Vars) -> Result<usize, Rejection> {
    let Some(pos) = inst.incidents.iter().position(|i| i.id == incident) else {
        return Err(Rejection::IncidentNotFound(incident));
    };
    check_vars(p, vars)?;
    Ok(pos)
}

fn check_vars(p: &Process, vars: &Vars) -> Result<(), Rejection> {
    let mut errors = Vec::new();
    for (name, v) in vars {
        match p.vars.get(name) {
            None => errors.push(FieldError { field: name.clone(), problem: "not a declared variable".into() }),
            Some(spec) => {
                if let Err(e) = spec.check(v) {
                    errors.push(FieldError { field: name.clone(), problem: e });
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Rejection::InvalidData(errors))
    }
}

/// The form rules that `vars` break, as field errors (a rule whose condition
/// cannot be evaluated counts as broken, with the reason: nothing is saved either way).
pub(super) fn broken_rules(
    p: &Process,
    rules: &[crate::process::Rule],
    vars: &Vars,
    instance: InstanceId,
    started_by: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<FieldError> {
    let extra = p.setting_env();
    let env = Env { vars, declared: &p.var_names, now, instance, started_by, extra: &extra };
    let mut errors = Vec::new();
    for rule in rules {
        let field = rule.field.clone().unwrap_or_else(|| "_form".to_string());
        match rule.when.eval_bool(&env) {
            Ok(false) => {}
            Ok(true) => errors.push(FieldError { field, problem: rule.message.clone() }),
            Err(e) => errors.push(FieldError {
                field,
                problem: format!("{} (the rule `{}` could not be checked: {e})", rule.message, rule.when.source.trim()),
            }),
        }
    }
    errors
}

/// The start rules broken besides field errors already found, so that one refusal
/// lists every reason (a requester sees the missing title and the missing contract
/// at once). Fields in error read as unset; a rule on a field already refused, or
/// one that cannot be evaluated, is left out: the start is refused anyway.
fn rules_beside_field_errors(
    p: &Process,
    rules: &[crate::process::Rule],
    vars: &Vars,
    errors: &[FieldError],
    instance: InstanceId,
    started_by: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<FieldError> {
    let refused = |f: &str| errors.iter().any(|e| e.field == f);
    let mut sound = vars.clone();
    sound.retain(|k, _| !refused(k));
    let extra = p.setting_env();
    let env = Env { vars: &sound, declared: &p.var_names, now, instance, started_by, extra: &extra };
    rules
        .iter()
        .filter(|r| !r.field.as_deref().is_some_and(refused))
        .filter(|r| matches!(r.when.eval_bool(&env), Ok(true)))
        .map(|r| FieldError {
            field: r.field.clone().unwrap_or_else(|| "_form".to_string()),
            problem: r.message.clone(),
        })
        .collect()
}

/// Variables of an instance started by a message: the start event's `set` mapping
/// over `payload`, or the payload fields named like declared variables.
pub fn message_start_vars(p: &Process, payload: &Value, now: DateTime<Utc>) -> Result<Vars, Rejection> {
    let set = match p.start_trigger() {
        crate::process::StartTrigger::Message { set, .. } => set.as_slice(),
        _ => &[],
    };
    map_payload(p, set, None, payload, "payload", now)
        .map_err(|e| Rejection::InvalidData(vec![FieldError { field: "payload".into(), problem: e }]))
}

/// Evaluate a `set` mapping over `value` (read as `extra_name`), or, with no mapping,
/// copy the fields of `value` that are declared variables. Every value is type-checked.
/// The mapping reads the variables of `inst` (none yet for a message start).
fn map_payload(
    p: &Process,
    set: &[(String, Expr)],
    inst: Option<&Instance>,
    value: &Value,
    extra_name: &str,
    now: DateTime<Utc>,
) -> Result<Vars, String> {
    let mut out = Vars::new();
    if set.is_empty() {
        if let Value::Object(fields) = value {
            for (k, v) in fields {
                if let Some(spec) = p.vars.get(k) {
                    spec.check(v).map_err(|e| format!("`{k}`: {e}"))?;
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        return Ok(out);
    }
    let empty = Vars::new();
    let (vars, instance, started_by) = match inst {
        Some(i) => (&i.vars, i.id, i.started_by.as_deref()),
        None => (&empty, 0, None),
    };
    for (var, e) in set {
        let mut extra = p.setting_env();
        extra.push((extra_name, value));
        let env = Env { vars, declared: &p.var_names, now, instance, started_by, extra: &extra };
        let v = e.eval(&env).map_err(|err| format!("`set: {var}` (`{}`) failed: {err}", e.source.trim()))?;
        p.var(var)
            .ok_or_else(|| format!("`set: {var}`: not declared"))?
            .check(&v)
            .map_err(|err| format!("`set: {var}`: {err}"))?;
        out.insert(var.clone(), v);
    }
    Ok(out)
}

fn waiting_on_task(inst: &Instance, task: &str) -> Result<usize, Rejection> {
    inst.task_token_index(task).ok_or_else(|| Rejection::TaskNotOpen(task.to_string()))
}

fn waiting_on_job(inst: &Instance, job: &str) -> Result<usize, Rejection> {
    inst.job_token_index(job).ok_or_else(|| Rejection::StaleJob(job.to_string()))
}

fn is_blank(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

/// A token in flight within one event: it left its last wait state and has not
/// reached the next. It has no [`Wait`], so it cannot pass for a parked token, and
/// it is never stored: [`Run::park`] and [`Run::incident`] turn it into a [`Token`].
#[derive(Debug, Clone)]
pub(crate) struct Moving {
    pub(crate) id: u32,
    pub(crate) node: String,
    pub(crate) scope: Vec<Frame>,
    /// Timers armed for the wait it is about to enter, or still armed from the
    /// wait it left (withdrawn by [`Run::go`]).
    pub(crate) timers: Vec<Armed>,
    /// Message boundaries subscribed for the wait it is about to enter, or still
    /// subscribed from the wait it left (withdrawn by [`Run::go`]).
    pub(crate) listens: Vec<MessageWait>,
}

impl Moving {
    fn parked(self, wait: Wait) -> Token {
        Token { id: self.id, node: self.node, wait, scope: self.scope, timers: self.timers, listens: self.listens }
    }
}

/// A parked token taken out of the instance to move: what it waited on is the
/// caller's to release ([`Run::release_wait`]) or to have consumed (a completed task).
impl From<Token> for Moving {
    fn from(t: Token) -> Self {
        Moving { id: t.id, node: t.node, scope: t.scope, timers: t.timers, listens: t.listens }
    }
}

pub(crate) struct Run<'a> {
    pub(crate) p: &'a Process,
    /// The process's settings, as every expression sees them.
    settings: Vec<(&'a str, &'a Value)>,
    pub(crate) inst: &'a mut Instance,
    pub(crate) now: DateTime<Utc>,
    pub(crate) ready: VecDeque<Moving>,
    pub(crate) out: Transition,
    /// What the token being moved reads: the instance's variables with the locals
    /// of its multi-instance items on top, and their names; `None` when it is in
    /// no item (the instance's variables are read as they are). See [`Run::enter`].
    scoped: Option<(Vars, Vec<String>)>,
    /// The scope [`Run::enter`] was last given: where [`Run::set_vars`] writes.
    cur_scope: Vec<Frame>,
    /// Multi-instance items started during this event: each may take its steps
    /// beyond [`MAX_STEPS_PER_EVENT`] (10,000 items start in one event).
    items_started: usize,
    /// Every expression of this event shares one script time limit, so a cancel
    /// waiting for the instance lock waits at most about that long.
    _scripts: crate::expr::EventBudget,
    /// A called instance ended by an error end nothing inside it caught: (code,
    /// message) for its caller.
    pub(crate) call_error: Option<(String, String)>,
}

/// Where an error goes: the boundary that catches it, found from the thrower outwards.
enum Catcher {
    /// A boundary of the node the token is on (index into its `boundary`).
    Own(usize),
    /// A boundary of the fork of the token's scope frame `frame`.
    Fork { frame: usize, boundary: usize },
}

impl<'a> Run<'a> {
    pub(crate) fn new(p: &'a Process, inst: &'a mut Instance, now: DateTime<Utc>) -> Self {
        Run {
            p,
            settings: p.setting_env(),
            inst,
            now,
            ready: VecDeque::new(),
            out: Transition::default(),
            scoped: None,
            cur_scope: Vec::new(),
            items_started: 0,
            _scripts: crate::expr::EventBudget::open(),
            call_error: None,
        }
    }

    pub(crate) fn log(&mut self, node: Option<String>, user: Option<String>, event: HistoryEvent) {
        let seq = self.inst.history_len;
        self.inst.history_len += 1;
        // A proxy acting in this event stands beside every user the event names.
        let proxy = user.as_ref().and_then(|_| crate::ambient::proxy());
        self.out.history.push(HistoryEntry { seq, at: self.now, node, user, proxy, event });
    }

    pub(crate) fn new_token(&mut self, node: &str, scope: Vec<Frame>) -> Moving {
        let id = self.inst.next_seq();
        Moving { id, node: node.to_string(), scope, timers: Vec::new(), listens: Vec::new() }
    }

    /// Evaluate `e` as [`Run::env`] reads, with `more` read-only names beside the
    /// settings (a connector's `result`, a condition's counts).
    pub(crate) fn eval_extra(&self, e: &Expr, more: &[(&str, &Value)]) -> Result<Value, String> {
        let mut extra = self.p.setting_env();
        extra.extend_from_slice(more);
        let env = Env { extra: &extra, ..self.env() };
        e.eval(&env).map_err(|err| err.to_string())
    }

    pub(crate) fn env(&self) -> Env<'_> {
        let (vars, declared) = match &self.scoped {
            Some((vars, names)) => (vars, names.as_slice()),
            None => (&self.inst.vars, self.p.var_names.as_slice()),
        };
        Env {
            vars,
            declared,
            now: self.now,
            instance: self.inst.id,
            started_by: self.inst.started_by.as_deref(),
            extra: &self.settings,
        }
    }

    /// Move every ready token until it waits, then settle the instance status.
    fn finish(mut self) -> Transition {
        let mut spent = 0usize;
        while let Some(token) = self.ready.pop_front() {
            if spent >= MAX_STEPS_PER_EVENT + self.items_started {
                let msg = format!("more than {MAX_STEPS_PER_EVENT} steps without waiting; stopped");
                self.incident(token, msg, None);
                continue;
            }
            spent += 1;
            self.exec(token);
        }
        if !self.inst.status.is_finished() {
            if self.inst.tokens.is_empty() && self.inst.joins.is_empty() {
                self.inst.status = Status::Completed;
                self.inst.ended_at = Some(self.now);
                self.log(None, None, HistoryEvent::Completed);
                let outcome = match self.call_error.take() {
                    Some((code, message)) => CallOutcome::Error { code, message },
                    None => CallOutcome::Completed,
                };
                self.tell_caller(outcome);
            } else if self.inst.incidents.is_empty() {
                self.inst.status = Status::Running;
            } else {
                self.inst.status = Status::Incident;
            }
        }
        self.out
    }

    /// A called instance ended: a `call_end` job for its caller, in this same commit,
    /// so the caller learns it even if the engine stops right after.
    pub(crate) fn tell_caller(&mut self, outcome: CallOutcome) {
        let Some(parent) = &self.inst.parent else { return };
        self.out.commands.push(Command::ScheduleJob(Job {
            id: format!("call-end:{}", self.inst.id),
            instance: parent.instance,
            token: parent.token,
            node: parent.node.clone(),
            due: self.now,
            attempt: 1,
            kind: JobKind::CallEnd { child: self.inst.id, outcome },
            priority: self.p.priority,
            process: self.p.id.clone(),
        }));
    }

    /// Move a token on to `to`. Timers it had armed where it waited are withdrawn.
    /// An item of a multi-instance node leaving it is that item done instead.
    pub(crate) fn go(&mut self, mut token: Moving, to: NodeIx) {
        self.disarm(&mut token);
        if multi::is_item(&token) {
            return self.item_done(token, None);
        }
        token.node = self.p.nodes[to].id.clone();
        self.ready.push_back(token);
    }

    /// Read variables as a token in `scope` does from now on ([`Run::env`]).
    pub(crate) fn enter(&mut self, scope: &[Frame]) {
        self.cur_scope = scope.to_vec();
        let mut frames = scope.iter().filter(|f| f.body).peekable();
        if frames.peek().is_none() {
            self.scoped = None;
            return;
        }
        let mut names = self.p.var_names.clone();
        for k in frames.filter_map(|f| self.inst.locals_of(f)).flat_map(|l| l.vars.keys()) {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
        self.scoped = Some((self.inst.vars_in(scope), names));
    }

    /// Write variables as the token last [`Run::enter`]ed: a name local to one of
    /// its items goes there (innermost first), any other to the instance.
    pub(crate) fn set_vars(&mut self, values: impl IntoIterator<Item = (String, Value)>) {
        let mut local = false;
        for (k, v) in values {
            let slot = self
                .cur_scope
                .iter()
                .rev()
                .filter(|f| f.body)
                .find_map(|f| self.inst.locals.iter().position(|l| l.is_of(f) && l.vars.contains_key(&k)));
            match slot {
                Some(i) => {
                    self.inst.locals[i].vars.insert(k, v);
                    local = true;
                }
                None => {
                    if let Some((vars, _)) = &mut self.scoped {
                        vars.insert(k.clone(), v.clone());
                    }
                    self.inst.vars.insert(k, v);
                }
            }
        }
        if local {
            let scope = std::mem::take(&mut self.cur_scope);
            self.enter(&scope);
        }
    }

    /// Withdraw the boundary timers and message subscriptions a token armed.
    fn disarm(&mut self, token: &mut Moving) {
        let (timers, listens) = (std::mem::take(&mut token.timers), std::mem::take(&mut token.listens));
        self.withdraw(token.id, &timers, &listens);
    }

    /// Cancel timer jobs and drop message subscriptions of subscriber `owner`.
    pub(crate) fn withdraw(&mut self, owner: u32, timers: &[Armed], listens: &[MessageWait]) {
        for a in timers {
            self.out.commands.push(Command::CancelJob { job: a.job.clone() });
        }
        for m in listens {
            self.out.commands.push(Command::Unsubscribe { token: owner, name: m.name.clone(), key: m.key.clone() });
        }
    }

    pub(crate) fn park(&mut self, token: Moving, wait: Wait) {
        self.inst.tokens.push(token.parked(wait));
    }

    pub(crate) fn incident(&mut self, token: Moving, message: String, pending_output: Option<Value>) {
        self.incident_with(token, message, pending_output, None);
    }

    /// Park `token` stopped by a new incident (`branch`: see [`Incident::pending_branch`]).
    fn incident_with(
        &mut self,
        mut token: Moving,
        message: String,
        pending_output: Option<Value>,
        branch: Option<u16>,
    ) {
        self.disarm(&mut token);
        let id = self.inst.next_seq();
        let node = token.node.clone();
        tracing::warn!(instance = self.inst.id, node = %node, incident = id, %message, "incident");
        self.inst.incidents.push(Incident {
            id,
            token: token.id,
            node: node.clone(),
            message: message.clone(),
            at: self.now,
            pending_output,
            pending_branch: branch,
        });
        self.log(Some(node), None, HistoryEvent::IncidentRaised { incident: id, message });
        self.inst.tokens.push(token.parked(Wait::Incident { incident: id }));
    }

    /// A token arrives at its node: the node's kind ([`crate::kinds`]) says what it does.
    fn exec(&mut self, token: Moving) {
        let p = self.p;
        let Some((_, node)) = p.node(&token.node) else {
            let msg = format!("node `{}` does not exist in version {}", token.node, p.version);
            return self.incident(token, msg, None);
        };
        self.enter(&token.scope);
        if let Some(spec) = &node.multi {
            if !multi::is_item(&token) {
                return self.begin_items(token, node, spec);
            }
        }
        match &node.kind {
            NodeKind::Start { next, .. } => self.go(token, *next),
            NodeKind::End { terminate } => kinds::end::exec(self, token, node, *terminate),
            NodeKind::ErrorEnd { code, message } => kinds::end::exec_error(self, token, node, code, message),
            NodeKind::Script { script, next } => kinds::script::exec(self, token, node, script, *next),
            NodeKind::Exclusive { branches, default } => kinds::exclusive::exec(self, token, node, branches, *default),
            NodeKind::Inclusive { branches, default, .. } => {
                kinds::inclusive::exec(self, token, node, branches, *default)
            }
            NodeKind::Parallel { branches, .. } => kinds::parallel::exec(self, token, node, branches),
            NodeKind::Join { fork, next } => kinds::join::exec(self, token, node, *fork, *next),
            NodeKind::UserTask(spec) => kinds::user_task::exec(self, token, node, spec),
            NodeKind::Service(spec) => kinds::service::exec(self, token, node, spec),
            NodeKind::TimerCatch { when, .. } => kinds::timer::exec(self, token, node, when),
            NodeKind::MessageCatch { message, .. } => kinds::message::exec(self, token, node, message),
            NodeKind::EventBased { branches } => kinds::event_based::exec(self, token, node, branches),
            NodeKind::Call(spec) => kinds::call::exec(self, token, node, spec),
            NodeKind::SubProcess(spec) => kinds::sub_process::exec(self, token, node, spec),
            NodeKind::Circulate(spec) => kinds::circulate::exec(self, token, node, spec),
        }
    }

    /// Fork `token` into one token per branch in `targets`; the join waits for all.
    /// The fork's boundary timers and messages are armed for the activation (a
    /// failure to evaluate one forks nothing: an incident).
    pub(crate) fn fork(&mut self, token: Moving, fork_id: &str, targets: &[NodeIx]) {
        let p = self.p;
        let boundary = p.node(fork_id).map(|(_, n)| n.kind.boundary()).unwrap_or_default();
        let armings = match self.prepare_boundaries(boundary, None) {
            Ok(a) => a,
            Err(msg) => return self.incident(token, msg, None),
        };
        let activation = self.inst.next_seq();
        let width = targets.len() as u16;
        let names = targets.iter().map(|b| p.nodes[*b].id.clone()).collect();
        self.log(Some(fork_id.to_string()), None, HistoryEvent::Forked { branches: names });
        if !armings.is_empty() {
            let (timers, listens) = self.arm_prepared(activation, fork_id, armings);
            let scope = token.scope.clone();
            self.inst.forks.push(ForkWatch { activation, fork: fork_id.to_string(), scope, timers, listens });
        }
        for (i, b) in targets.iter().enumerate() {
            let mut scope = token.scope.clone();
            scope.push(Frame { fork: fork_id.to_string(), activation, branch: i as u16, width, body: false });
            let t = self.new_token(&p.nodes[*b].id, scope);
            self.ready.push_back(t);
        }
    }

    /// Re-apply a result whose mapping failed (connector output or message payload).
    fn apply_pending(&mut self, token: Moving, output: Value, branch: Option<u16>) {
        let kind = self.p.node(&token.node).map(|(_, n)| &n.kind);
        if let Some(b) = branch.filter(|b| kind.is_some_and(|k| k.boundary().get(usize::from(*b)).is_some())) {
            return self.apply_boundary_message(token, b, "", output);
        }
        match kind {
            Some(NodeKind::Service(_)) => self.apply_output(token, "", output),
            Some(NodeKind::Call(_)) => kinds::call::apply_pending(self, token, output),
            Some(NodeKind::MessageCatch { message, .. }) => {
                let name = message.name.clone();
                self.apply_message(token, None, &name, "", output)
            }
            Some(NodeKind::EventBased { branches }) => {
                let name = match branch.and_then(|b| branches.get(usize::from(b))) {
                    Some((EventTrigger::Message(m), _)) => m.name.clone(),
                    _ => String::new(),
                };
                self.apply_message(token, branch, &name, "", output)
            }
            _ => self.ready.push_back(token),
        }
    }

    /// Map a connector's output into variables (`set`), then move on.
    fn apply_output(&mut self, mut token: Moving, job: &str, output: Value) {
        let p = self.p;
        let Some((_, node)) = p.node(&token.node) else {
            return self.incident(token, "node vanished".into(), None);
        };
        let NodeKind::Service(spec) = &node.kind else {
            return self.incident(token, format!("node `{}` is not a service task", node.id), None);
        };
        self.enter(&token.scope);
        let mut values = Vec::with_capacity(spec.set.len());
        for (var, e) in &spec.set {
            let v = match self.eval_extra(e, &[("result", &output)]) {
                Ok(v) => v,
                Err(err) => {
                    let msg = format!("`set: {var}` (`{}`) failed: {err}", e.source.trim());
                    return self.incident(token, msg, Some(output));
                }
            };
            if let Err(err) = p.var(var).map_or(Ok(()), |spec| spec.check(&v)) {
                return self.incident(token, format!("`set: {var}`: {err}"), Some(output));
            }
            values.push((var.clone(), v));
        }
        let names = values.iter().map(|(n, _)| n.clone()).collect();
        self.set_vars(values);
        self.log(Some(node.id.clone()), None, HistoryEvent::JobSucceeded { job: job.to_string(), set: names });
        if multi::is_item(&token) {
            self.disarm(&mut token);
            return self.item_done(token, Some(&output));
        }
        self.go(token, spec.next);
    }

    /// End every branch of fork activation `activation`: its tokens (parked and
    /// moving), nested joins and incidents.
    fn cancel_activation(&mut self, activation: u32) {
        let inside = |scope: &[Frame]| scope.iter().any(|f| f.activation == activation);
        self.cancel_inside(|f| f.activation == activation);
        self.inst.joins.retain(|j| j.activation != activation);
        let (gone, keep): (Vec<ForkWatch>, Vec<ForkWatch>) = std::mem::take(&mut self.inst.forks)
            .into_iter()
            .partition(|w| w.activation == activation || inside(&w.scope));
        self.inst.forks = keep;
        for w in gone {
            self.withdraw(w.activation, &w.timers, &w.listens);
        }
    }

    /// End every token (parked and moving) and join whose scope has a frame that
    /// `frame` picks: a fork activation's branches, or one sub-process run.
    pub(crate) fn cancel_inside(&mut self, frame: impl Fn(&Frame) -> bool) {
        let inside = |scope: &[Frame]| scope.iter().any(&frame);
        let (gone, keep): (Vec<Token>, Vec<Token>) =
            std::mem::take(&mut self.inst.tokens).into_iter().partition(|t| inside(&t.scope));
        self.inst.tokens = keep;
        for t in &gone {
            self.release_wait(t);
        }
        self.ready.retain(|t| !inside(&t.scope));
        self.inst.joins.retain(|j| !inside(&j.scope));
    }

    /// The branches of fork activation `activation` have all joined: its boundary
    /// timers and messages are withdrawn.
    pub(crate) fn unwatch(&mut self, activation: u32) {
        if let Some(pos) = self.inst.forks.iter().position(|w| w.activation == activation) {
            let w = self.inst.forks.remove(pos);
            self.withdraw(w.activation, &w.timers, &w.listens);
        }
    }

    /// Remove every token: close tasks, cancel jobs and timers, drop subscriptions,
    /// forget joins and incidents.
    pub(crate) fn clear_all(&mut self, task_status: TaskStatus) {
        for t in std::mem::take(&mut self.inst.tokens) {
            match &t.wait {
                Wait::Task { task, .. } => self.out.commands.push(Command::CloseTask {
                    task: task.clone(),
                    status: task_status,
                    by: None,
                    outcome: None,
                }),
                _ => self.release_wait(&t),
            }
            if matches!(t.wait, Wait::Task { .. }) {
                self.withdraw(t.id, &t.timers, &t.listens);
            }
        }
        for w in std::mem::take(&mut self.inst.forks) {
            self.withdraw(w.activation, &w.timers, &w.listens);
        }
        self.inst.joins.clear();
        self.inst.incidents.clear();
        self.inst.multis.clear();
        self.inst.locals.clear();
    }
}

/// A due expression may give a datetime, or a date: due at the end of that day
/// (23:59:59) on the wall clock of the process's `time_zone`. Years 0000–9999 only.
pub(crate) fn parse_due(v: &Value, tz: chrono_tz::Tz) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
                return schedule::in_range(dt.with_timezone(&Utc)).map(Some);
            }
            if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                return schedule::end_of_day(d, tz).map(Some);
            }
            Err(format!("`{s}` is not a date or datetime"))
        }
        other => Err(format!("expected a date or datetime, got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::CompileOptions;
    use chrono::TimeZone;

    const TASK: &str = "id: p\nlanes: { staff: {} }\nstart: { next: check }\nnodes:\n  check: { user_task: Check, lane: staff, next: done }\n  done: { end: }\n";

    fn started() -> (Process, Instance, DateTime<Utc>) {
        let p = crate::load::load_str("p.yaml", TASK, &CompileOptions::default()).unwrap().process;
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
        let (inst, _) = start(&p, 1, Vars::new(), None, None, now).unwrap();
        (p, inst, now)
    }

    /// Regression: completing a task whose node is missing from the process panicked
    /// (`expect`); it now stops the token with an incident.
    #[test]
    fn a_task_whose_node_is_missing_is_an_incident_not_a_panic() {
        let (p, mut inst, now) = started();
        let task = inst.open_task_ids().next().unwrap().to_string();
        inst.tokens[0].node = "gone".into();
        let event =
            Event::Complete { task: task.clone(), user: "sato".into(), data: Vars::new(), outcome: Outcome::Next };
        let t = step(&p, &mut inst, event, now).unwrap();
        assert_eq!(inst.status, Status::Incident);
        assert!(inst.incidents[0].message.contains("`gone`"), "{}", inst.incidents[0].message);
        assert!(matches!(inst.tokens[0].wait, Wait::Incident { incident } if incident == inst.incidents[0].id));
        assert!(t
            .commands
            .iter()
            .any(|c| matches!(c, Command::CloseTask { task: id, status: TaskStatus::Cancelled, .. } if *id == task)));
    }

    /// A retried token whose node is missing runs into an incident again, never a panic.
    #[test]
    fn a_moving_token_whose_node_is_missing_is_an_incident() {
        let (p, mut inst, now) = started();
        let task = inst.open_task_ids().next().unwrap().to_string();
        let culprit = Culprit::Task(task);
        raise_incident(&p, &mut inst, &culprit, "stop".into(), now).unwrap();
        inst.tokens[0].node = "gone".into();
        let first = inst.incidents[0].id;
        let event = Event::RetryIncident { incident: first, vars: Vars::new(), by: "admin".into() };
        step(&p, &mut inst, event, now).unwrap();
        assert_eq!(inst.incidents.len(), 1);
        assert_ne!(inst.incidents[0].id, first);
        assert!(inst.incidents[0].message.contains("does not exist"), "{}", inst.incidents[0].message);
    }
}
