//! The pure core: `(process, instance, event, now) → transition`.
//!
//! No IO, no clock, no randomness: the same inputs give the same state, commands and
//! history, which is what makes replay, property tests and crash recovery simple.
//! An event is either rejected before anything changes ([`Rejection`]) or applied in
//! full. Failures while running (a bad expression, a failed connector) never reject:
//! they park the token with an [`Incident`] so the rest of the instance carries on.

use super::state::*;
use crate::expr::{Env, Vars};
use crate::model::FieldMode;
use crate::process::{Input, NodeIx, NodeKind, Process};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;

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
}

/// Create an instance and run it to its first wait states.
pub fn start(
    p: &Process,
    id: InstanceId,
    mut vars: Vars,
    by: Option<String>,
    business_key: Option<String>,
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
        seq: 0,
        history_len: 0,
        started_at: now,
        started_by: by.clone(),
        ended_at: None,
        participants: Vec::new(),
    };
    let mut run = Run::new(p, &mut inst, now);
    let vars = run.inst.vars.clone();
    run.log(None, by, HistoryEvent::Started { vars });
    let token = run.new_token("start", Vec::new());
    run.ready.push_back(token);
    let transition = run.finish();
    Ok((inst, transition))
}

/// Apply one event to a running instance.
pub fn step(p: &Process, inst: &mut Instance, event: Event, now: DateTime<Utc>) -> Result<Transition, Rejection> {
    if inst.status.is_finished() {
        return Err(Rejection::Finished(inst.status.as_str()));
    }
    match event {
        Event::Claim { task, user } => {
            let tok = waiting_on_task(inst, &task)?;
            if let Wait::Task { assignee: Some(a), .. } = &inst.tokens[tok].wait {
                if *a == user {
                    return Ok(Transition::default());
                }
                return Err(Rejection::ClaimedByOther { task, assignee: a.clone() });
            }
            let mut run = Run::new(p, inst, now);
            run.inst.tokens[tok].wait = Wait::Task { task: task.clone(), assignee: Some(user.clone()) };
            let node = run.inst.tokens[tok].node.clone();
            run.log(Some(node), Some(user.clone()), HistoryEvent::TaskClaimed { task: task.clone() });
            run.out.commands.push(Command::AssignTask { task, assignee: Some(user) });
            Ok(run.finish())
        }
        Event::Unclaim { task, user, force } => {
            let tok = waiting_on_task(inst, &task)?;
            match &inst.tokens[tok].wait {
                Wait::Task { assignee: None, .. } => return Ok(Transition::default()),
                Wait::Task { assignee: Some(a), .. } if *a != user && !force => {
                    return Err(Rejection::ClaimedByOther { task, assignee: a.clone() })
                }
                _ => {}
            }
            let mut run = Run::new(p, inst, now);
            run.inst.tokens[tok].wait = Wait::Task { task: task.clone(), assignee: None };
            let node = run.inst.tokens[tok].node.clone();
            run.log(Some(node), Some(user), HistoryEvent::TaskUnclaimed { task: task.clone() });
            run.out.commands.push(Command::AssignTask { task, assignee: None });
            Ok(run.finish())
        }
        Event::Complete { task, user, data, outcome } => complete(p, inst, task, user, data, outcome, now),
        Event::Assign { task, assignee, by } => assign(p, inst, task, assignee, by, now),
        Event::JobDone { job, output } => {
            let tok = waiting_on_job(inst, &job)?;
            let mut run = Run::new(p, inst, now);
            let token = run.inst.tokens.remove(tok);
            run.apply_output(token, &job, output);
            Ok(run.finish())
        }
        Event::JobFailed { job, failure } => {
            let tok = waiting_on_job(inst, &job)?;
            let mut run = Run::new(p, inst, now);
            let token = run.inst.tokens.remove(tok);
            run.job_failed(token, &job, failure);
            Ok(run.finish())
        }
        Event::Cancel { by, reason } => {
            let mut run = Run::new(p, inst, now);
            run.clear_all(TaskStatus::Cancelled);
            run.log(None, Some(by), HistoryEvent::Cancelled { reason });
            run.inst.status = Status::Cancelled;
            run.inst.ended_at = Some(now);
            Ok(run.out)
        }
        Event::RetryIncident { incident, vars, by } => {
            let Some(pos) = inst.incidents.iter().position(|i| i.id == incident) else {
                return Err(Rejection::IncidentNotFound(incident));
            };
            let mut errors = Vec::new();
            for (name, v) in &vars {
                match p.vars.get(name) {
                    None => errors.push(FieldError { field: name.clone(), problem: "not a declared variable".into() }),
                    Some(spec) => {
                        if let Err(e) = spec.check(v) {
                            errors.push(FieldError { field: name.clone(), problem: e });
                        }
                    }
                }
            }
            if !errors.is_empty() {
                return Err(Rejection::InvalidData(errors));
            }
            let mut run = Run::new(p, inst, now);
            let inc = run.inst.incidents.remove(pos);
            run.inst.vars.extend(vars.clone());
            run.log(Some(inc.node.clone()), Some(by), HistoryEvent::IncidentResolved { incident, vars });
            if let Some(tpos) = run.inst.tokens.iter().position(|t| t.id == inc.token) {
                let token = run.inst.tokens.remove(tpos);
                match inc.pending_output {
                    Some(output) => run.apply_output(token, "", output),
                    None => run.ready.push_back(token),
                }
            }
            Ok(run.finish())
        }
    }
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

fn complete(
    p: &Process,
    inst: &mut Instance,
    task: String,
    user: String,
    data: Vars,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = waiting_on_task(inst, &task)?;
    if let Wait::Task { assignee: Some(a), .. } = &inst.tokens[tok].wait {
        if *a != user {
            return Err(Rejection::ClaimedByOther { task, assignee: a.clone() });
        }
    }
    let (_, node) = p.node(&inst.tokens[tok].node).expect("token on a node of its process");
    let NodeKind::UserTask(spec) = &node.kind else { unreachable!("tasks are opened by user task nodes only") };
    let (target, outcome_name) = match &outcome {
        Outcome::Next => (spec.next, "next".to_string()),
        Outcome::SendBack { .. } => match spec.send_back {
            Some(t) => (t, "send_back".to_string()),
            None => {
                return Err(Rejection::UnknownOutcome {
                    task,
                    outcome: "send_back".into(),
                    allowed: allowed_outcomes(spec),
                })
            }
        },
        Outcome::Named(name) => match spec.outcomes.iter().find(|(n, _)| n == name) {
            Some((_, t)) => (*t, name.clone()),
            None => {
                return Err(Rejection::UnknownOutcome { task, outcome: name.clone(), allowed: allowed_outcomes(spec) })
            }
        },
    };
    let mut errors = Vec::new();
    for (name, v) in &data {
        match spec.form.iter().find(|f| f.var == *name) {
            None => errors.push(FieldError { field: name.clone(), problem: "not a field of this form".into() }),
            Some(f) if f.mode == FieldMode::Readonly => {
                if inst.vars.get(name).unwrap_or(&Value::Null) != v {
                    errors.push(FieldError { field: name.clone(), problem: "read-only on this form".into() });
                }
            }
            Some(_) => {
                if let Err(e) = p.vars[name].check(v) {
                    errors.push(FieldError { field: name.clone(), problem: e });
                }
            }
        }
    }
    if !matches!(outcome, Outcome::SendBack { .. }) {
        for f in spec.form.iter().filter(|f| f.mode == FieldMode::Required) {
            if is_blank(data.get(&f.var).or(inst.vars.get(&f.var))) && !errors.iter().any(|e| e.field == f.var) {
                errors.push(FieldError { field: f.var.clone(), problem: "required".into() });
            }
        }
    }
    if !errors.is_empty() {
        return Err(Rejection::InvalidData(errors));
    }

    let mut run = Run::new(p, inst, now);
    let mut token = run.inst.tokens.remove(tok);
    run.inst.vars.extend(data.clone());
    let node_id = token.node.clone();
    run.log(
        Some(node_id.clone()),
        Some(user.clone()),
        HistoryEvent::TaskCompleted { task: task.clone(), outcome: outcome_name.clone(), vars: data },
    );
    if let Outcome::SendBack { comment } = &outcome {
        let to = p.nodes[target].id.clone();
        run.log(
            Some(node_id),
            Some(user.clone()),
            HistoryEvent::SentBack { task: task.clone(), to, comment: comment.clone() },
        );
    }
    run.out.commands.push(Command::CloseTask {
        task,
        status: TaskStatus::Completed,
        by: Some(user),
        outcome: Some(outcome_name),
    });
    token.node = p.nodes[target].id.clone();
    run.ready.push_back(token);
    Ok(run.finish())
}

/// Give an open task to `assignee` (or nobody), whoever holds it now.
fn assign(
    p: &Process,
    inst: &mut Instance,
    task: String,
    assignee: Option<String>,
    by: String,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = waiting_on_task(inst, &task)?;
    if matches!(&inst.tokens[tok].wait, Wait::Task { assignee: a, .. } if *a == assignee) {
        return Ok(Transition::default());
    }
    let mut run = Run::new(p, inst, now);
    run.inst.tokens[tok].wait = Wait::Task { task: task.clone(), assignee: assignee.clone() };
    let node = run.inst.tokens[tok].node.clone();
    run.log(Some(node), Some(by), HistoryEvent::TaskAssigned { task: task.clone(), to: assignee.clone() });
    run.out.commands.push(Command::AssignTask { task, assignee });
    Ok(run.finish())
}

fn allowed_outcomes(spec: &crate::process::UserTaskSpec) -> String {
    let mut v = vec!["next".to_string()];
    if spec.send_back.is_some() {
        v.push("send_back".into());
    }
    v.extend(spec.outcomes.iter().map(|(n, _)| n.clone()));
    v.join(", ")
}

/// A token that is moving, not yet parked in the instance.
type Moving = Token;

struct Run<'a> {
    p: &'a Process,
    inst: &'a mut Instance,
    now: DateTime<Utc>,
    ready: VecDeque<Moving>,
    out: Transition,
}

impl<'a> Run<'a> {
    fn new(p: &'a Process, inst: &'a mut Instance, now: DateTime<Utc>) -> Self {
        Run { p, inst, now, ready: VecDeque::new(), out: Transition::default() }
    }

    fn log(&mut self, node: Option<String>, user: Option<String>, event: HistoryEvent) {
        let seq = self.inst.history_len;
        self.inst.history_len += 1;
        self.out.history.push(HistoryEntry { seq, at: self.now, node, user, event });
    }

    fn new_token(&mut self, node: &str, scope: Vec<Frame>) -> Moving {
        let id = self.inst.next_seq();
        Token { id, node: node.to_string(), wait: Wait::Incident { incident: 0 }, scope }
    }

    fn env(&self) -> Env<'_> {
        Env { vars: &self.inst.vars, declared: &self.p.var_names, now: self.now, instance: self.inst.id, extra: &[] }
    }

    /// Move every ready token until it waits, then settle the instance status.
    fn finish(mut self) -> Transition {
        let mut budget = MAX_STEPS_PER_EVENT;
        while let Some(token) = self.ready.pop_front() {
            if budget == 0 {
                let msg = format!("more than {MAX_STEPS_PER_EVENT} steps without waiting; stopped");
                self.incident(token, msg, None);
                continue;
            }
            budget -= 1;
            self.exec(token);
        }
        if !self.inst.status.is_finished() {
            if self.inst.tokens.is_empty() && self.inst.joins.is_empty() {
                self.inst.status = Status::Completed;
                self.inst.ended_at = Some(self.now);
                self.log(None, None, HistoryEvent::Completed);
            } else if self.inst.incidents.is_empty() {
                self.inst.status = Status::Running;
            } else {
                self.inst.status = Status::Incident;
            }
        }
        self.out
    }

    fn go(&mut self, mut token: Moving, to: NodeIx) {
        token.node = self.p.nodes[to].id.clone();
        self.ready.push_back(token);
    }

    fn park(&mut self, mut token: Moving, wait: Wait) {
        token.wait = wait;
        self.inst.tokens.push(token);
    }

    fn incident(&mut self, token: Moving, message: String, pending_output: Option<Value>) {
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
        });
        self.log(Some(node), None, HistoryEvent::IncidentRaised { incident: id, message });
        self.park(token, Wait::Incident { incident: id });
    }

    fn exec(&mut self, token: Moving) {
        let p = self.p;
        let Some((_, node)) = p.node(&token.node) else {
            let msg = format!("node `{}` does not exist in version {}", token.node, p.version);
            return self.incident(token, msg, None);
        };
        let here = Some(node.id.clone());
        match &node.kind {
            NodeKind::Start { next } => self.go(token, *next),
            NodeKind::End { terminate } => {
                self.log(here, None, HistoryEvent::Ended);
                if *terminate {
                    self.ready.clear();
                    self.clear_all(TaskStatus::Cancelled);
                }
            }
            NodeKind::Script { script, next } => match script.run_script(&self.env()) {
                Ok(changed) => {
                    for (name, v) in &changed {
                        if let Err(e) = p.vars[name].check(v) {
                            let msg = format!("script set `{name}`: {e}");
                            return self.incident(token, msg, None);
                        }
                    }
                    let names = changed.iter().map(|(n, _)| n.clone()).collect();
                    self.inst.vars.extend(changed);
                    self.log(here, None, HistoryEvent::ScriptRan { changed: names });
                    self.go(token, *next);
                }
                Err(e) => self.incident(token, format!("script failed: {e}"), None),
            },
            NodeKind::Exclusive { branches, default } => {
                let mut chosen = None;
                for (cond, target) in branches {
                    match cond.eval_bool(&self.env()) {
                        Ok(true) => {
                            chosen = Some(*target);
                            break;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            let msg = format!("condition `{}` failed: {e}", cond.source.trim());
                            return self.incident(token, msg, None);
                        }
                    }
                }
                match chosen.or(*default) {
                    Some(t) => {
                        self.log(here, None, HistoryEvent::Routed { to: p.nodes[t].id.clone() });
                        self.go(token, t);
                    }
                    None => self.incident(token, "no condition holds and there is no `default`".into(), None),
                }
            }
            NodeKind::Parallel { branches } => {
                let activation = self.inst.next_seq();
                let width = branches.len() as u16;
                let names = branches.iter().map(|b| p.nodes[*b].id.clone()).collect();
                self.log(here, None, HistoryEvent::Forked { branches: names });
                for (i, b) in branches.iter().enumerate() {
                    let mut scope = token.scope.clone();
                    scope.push(Frame { fork: node.id.clone(), activation, branch: i as u16, width });
                    let t = self.new_token(&p.nodes[*b].id, scope);
                    self.ready.push_back(t);
                }
            }
            NodeKind::Join { fork, next } => {
                let mut token = token;
                let frame = match token.scope.pop() {
                    Some(f) if f.fork == p.nodes[*fork].id => f,
                    other => {
                        token.scope.extend(other);
                        let msg = format!("token reached join `{}` from outside fork `{}`", node.id, p.nodes[*fork].id);
                        return self.incident(token, msg, None);
                    }
                };
                let pos = match self.inst.joins.iter().position(|j| j.activation == frame.activation) {
                    Some(pos) => pos,
                    None => {
                        self.inst.joins.push(JoinWait {
                            activation: frame.activation,
                            join: node.id.clone(),
                            width: frame.width,
                            arrived: Vec::new(),
                            scope: token.scope.clone(),
                        });
                        self.inst.joins.len() - 1
                    }
                };
                let jw = &mut self.inst.joins[pos];
                if jw.arrived.contains(&frame.branch) {
                    token.scope.push(frame);
                    let msg = format!("a second token of one branch reached join `{}`", node.id);
                    return self.incident(token, msg, None);
                }
                jw.arrived.push(frame.branch);
                if jw.arrived.len() == usize::from(jw.width) {
                    let jw = self.inst.joins.remove(pos);
                    self.log(here, None, HistoryEvent::Joined);
                    let t = self.new_token(&node.id, jw.scope);
                    self.go(t, *next);
                }
            }
            NodeKind::UserTask(spec) => {
                let due = match &spec.due {
                    None => None,
                    Some(e) => match e.eval(&self.env()).map_err(|e| e.to_string()).and_then(|v| parse_due(&v)) {
                        Ok(d) => d,
                        Err(msg) => return self.incident(token, format!("due `{}`: {msg}", e.source.trim()), None),
                    },
                };
                let seq = self.inst.next_seq();
                let task_id = format!("{}-{}", self.inst.id, seq);
                let lane = node.lane.clone().unwrap_or_default();
                let task = Task {
                    id: task_id.clone(),
                    instance: self.inst.id,
                    process: p.id.clone(),
                    version: p.version,
                    node: node.id.clone(),
                    title: spec.title.clone(),
                    groups: p.lane_groups(&lane).to_vec(),
                    lane,
                    status: TaskStatus::Open,
                    assignee: None,
                    created_at: self.now,
                    due,
                    completed_by: None,
                    completed_at: None,
                    outcome: None,
                };
                self.log(here, None, HistoryEvent::TaskOpened { task: task_id.clone() });
                self.out.commands.push(Command::OpenTask(task));
                self.park(token, Wait::Task { task: task_id, assignee: None });
            }
            NodeKind::Service(spec) => {
                let mut input = serde_json::Map::new();
                for (k, v) in &spec.with {
                    let value = match v {
                        Input::Literal(v) => v.clone(),
                        Input::Expr(e) => match e.eval(&self.env()) {
                            Ok(v) => v,
                            Err(err) => {
                                let msg = format!("input `{k}` (`{}`) failed: {err}", e.source.trim());
                                return self.incident(token, msg, None);
                            }
                        },
                    };
                    input.insert(k.clone(), value);
                }
                let seq = self.inst.next_seq();
                let job_id = format!("{}-{}", self.inst.id, seq);
                let job = Job {
                    id: job_id.clone(),
                    instance: self.inst.id,
                    token: token.id,
                    node: node.id.clone(),
                    due: self.now,
                    attempt: 1,
                    kind: JobKind::Connector {
                        connector: spec.connector.clone(),
                        input: Value::Object(input),
                        idempotency_key: format!("{}/{}/{}", self.inst.id, node.id, seq),
                        timeout_ms: spec.timeout.as_millis() as u64,
                    },
                };
                self.log(
                    here,
                    None,
                    HistoryEvent::JobScheduled { job: job_id.clone(), connector: spec.connector.clone(), attempt: 1 },
                );
                self.out.commands.push(Command::ScheduleJob(job));
                self.park(token, Wait::Job { job: job_id, attempt: 1 });
            }
        }
    }

    /// Map a connector's output into variables (`set`), then move on.
    fn apply_output(&mut self, token: Moving, job: &str, output: Value) {
        let p = self.p;
        let Some((_, node)) = p.node(&token.node) else {
            return self.incident(token, "node vanished".into(), None);
        };
        let NodeKind::Service(spec) = &node.kind else {
            return self.incident(token, format!("node `{}` is not a service task", node.id), None);
        };
        let mut values = Vec::with_capacity(spec.set.len());
        for (var, e) in &spec.set {
            let extra = [("result", &output)];
            let env = Env {
                vars: &self.inst.vars,
                declared: &p.var_names,
                now: self.now,
                instance: self.inst.id,
                extra: &extra,
            };
            let v = match e.eval(&env) {
                Ok(v) => v,
                Err(err) => {
                    let msg = format!("`set: {var}` (`{}`) failed: {err}", e.source.trim());
                    return self.incident(token, msg, Some(output));
                }
            };
            if let Err(err) = p.vars[var].check(&v) {
                return self.incident(token, format!("`set: {var}`: {err}"), Some(output));
            }
            values.push((var.clone(), v));
        }
        let names = values.iter().map(|(n, _)| n.clone()).collect();
        self.inst.vars.extend(values);
        self.log(Some(node.id.clone()), None, HistoryEvent::JobSucceeded { job: job.to_string(), set: names });
        self.go(token, spec.next);
    }

    fn job_failed(&mut self, token: Moving, job: &str, failure: Failure) {
        let p = self.p;
        let attempt = match token.wait {
            Wait::Job { attempt, .. } => attempt,
            _ => 1,
        };
        let Some((_, node)) = p.node(&token.node) else {
            return self.incident(token, "node vanished".into(), None);
        };
        let NodeKind::Service(spec) = &node.kind else {
            return self.incident(token, format!("node `{}` is not a service task", node.id), None);
        };
        let message = failure.message();
        if matches!(failure, Failure::Retryable { .. }) && attempt < spec.retry.attempts {
            let salt = u64::from(token.id) << 32 | u64::from(attempt);
            let mut wait = spec.retry.backoff(attempt, salt ^ self.inst.id);
            if let Failure::Retryable { retry_after_ms: Some(ms), .. } = failure {
                // The service's own wait wins when longer, up to an hour.
                wait = wait.max(std::time::Duration::from_millis(ms.min(MAX_RETRY_AFTER_MS)));
            }
            let due = self.now + chrono::Duration::from_std(wait).unwrap_or_default();
            self.log(
                Some(node.id.clone()),
                None,
                HistoryEvent::JobFailed { job: job.to_string(), attempt, message, retry_at: Some(due) },
            );
            self.out.commands.push(Command::RetryJob { job: job.to_string(), due, attempt: attempt + 1 });
            self.park(token, Wait::Job { job: job.to_string(), attempt: attempt + 1 });
            return;
        }
        self.log(
            Some(node.id.clone()),
            None,
            HistoryEvent::JobFailed { job: job.to_string(), attempt, message: message.clone(), retry_at: None },
        );
        let why = match failure {
            Failure::Retryable { .. } => format!("`{}` failed {attempt} times; last error: {message}", spec.connector),
            _ => format!("`{}` failed: {message}", spec.connector),
        };
        self.incident(token, why, None);
    }

    /// Remove every token: close tasks, cancel jobs, forget joins and incidents.
    fn clear_all(&mut self, task_status: TaskStatus) {
        for t in std::mem::take(&mut self.inst.tokens) {
            match t.wait {
                Wait::Task { task, .. } => {
                    self.out.commands.push(Command::CloseTask { task, status: task_status, by: None, outcome: None })
                }
                Wait::Job { job, .. } => self.out.commands.push(Command::CancelJob { job }),
                Wait::Incident { .. } => {}
            }
        }
        self.inst.joins.clear();
        self.inst.incidents.clear();
    }
}

/// A due expression may give a datetime, or a date (due at the end of that day, JST).
fn parse_due(v: &Value) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
                return Ok(Some(dt.with_timezone(&Utc)));
            }
            if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                let end = d.and_hms_opt(23, 59, 59).expect("valid time") - chrono::Duration::hours(9);
                return Ok(Some(end.and_utc()));
            }
            Err(format!("`{s}` is not a date or datetime"))
        }
        other => Err(format!("expected a date or datetime, got {other}")),
    }
}
