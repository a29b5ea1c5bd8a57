//! The durable state of one instance, and the records projected from it.
//!
//! An [`Instance`] holds everything the runtime needs to decide the next step:
//! variables, the tokens that wait, the joins being collected and open incidents.
//! [`Task`] and [`Job`] records are projections kept in the store for queries and
//! for the executor; the instance stays the source of truth.

use crate::expr::Vars;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub type InstanceId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    /// Running, but at least one token is stopped by an incident.
    Incident,
    Completed,
    Cancelled,
}

impl Status {
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Completed | Status::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Incident => "incident",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "running" => Status::Running,
            "incident" => Status::Incident,
            "completed" => Status::Completed,
            "cancelled" => Status::Cancelled,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub process: String,
    pub version: u32,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    pub vars: Vars,
    pub tokens: Vec<Token>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joins: Vec<JoinWait>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<Incident>,
    /// Multi-instance activations running now (their items and results).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub multis: Vec<Multi>,
    /// Variables local to one item of a multi-instance activation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locals: Vec<Locals>,
    /// Local counter for token, task, job, fork and incident numbers.
    pub seq: u32,
    /// Number of history entries written so far.
    pub history_len: u32,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Users named in the history (started, claimed, completed, sent back,
    /// assigned, cancelled...), in order of first appearance: who may see it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<String>,
    /// What started it, when it was started for an outside record (see [`Trigger`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
}

/// What started an instance for an outside record, e.g. a kintone record seen by a
/// poll: said in the `started` history line, and read back to decide whether a
/// record that matches again starts a new generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// `poll`, `webhook`, `manual`...
    pub via: String,
    /// The record's key without generation, e.g. `kintone:1:5`.
    pub record: String,
    /// 1 for a record's first instance, then 2, 3... for each re-trigger.
    pub generation: u32,
    /// The record's revision when the instance started, if the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

impl Instance {
    /// Add the users `history` names to [`Instance::participants`].
    pub fn note_participants(&mut self, history: &[HistoryEntry]) {
        for user in history.iter().filter_map(|h| h.user.as_ref()) {
            if !self.participants.contains(user) {
                self.participants.push(user.clone());
            }
        }
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// Ids of the user tasks this instance waits on.
    pub fn open_task_ids(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().filter_map(|t| match &t.wait {
            Wait::Task { task, .. } => Some(task.as_str()),
            _ => None,
        })
    }

    /// Position in `tokens` of the token waiting on user task `task`.
    pub fn task_token_index(&self, task: &str) -> Option<usize> {
        self.tokens.iter().position(|t| matches!(&t.wait, Wait::Task { task: id, .. } if id == task))
    }

    /// Position in `tokens` of the token waiting on job `job`.
    pub fn job_token_index(&self, job: &str) -> Option<usize> {
        self.tokens.iter().position(|t| matches!(&t.wait, Wait::Job { job: id, .. } if id == job))
    }

    /// Position in `tokens` of the token that timer job `job` belongs to: a timer
    /// catch, or a timer armed on a task or an event-based gateway.
    pub fn timer_token_index(&self, job: &str) -> Option<usize> {
        self.tokens.iter().position(|t| {
            matches!(&t.wait, Wait::Timer { job: id } if id == job) || t.timers.iter().any(|a| a.job == job)
        })
    }

    /// Messages this instance waits for: (token, name, key).
    pub fn subscriptions(&self) -> impl Iterator<Item = (u32, &str, &str)> {
        self.tokens.iter().flat_map(|t| t.wait.messages().map(move |(n, k)| (t.id, n, k)))
    }

    /// The variables a token in `scope` reads: the instance's, with the locals of
    /// its sub-process runs and multi-instance items on top (innermost last).
    pub fn vars_in(&self, scope: &[Frame]) -> Vars {
        let mut vars = self.vars.clone();
        for f in scope.iter().filter(|f| f.body) {
            if let Some(l) = self.locals.iter().find(|l| l.activation == f.activation && l.branch == f.branch) {
                vars.extend(l.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        vars
    }

    /// The variables the form of task `task` shows ([`Instance::vars_in`] its token).
    pub fn task_vars(&self, task: &str) -> Vars {
        match self.task_token(task) {
            Some(t) => self.vars_in(&t.scope),
            None => self.vars.clone(),
        }
    }

    pub fn task_token(&self, task: &str) -> Option<&Token> {
        self.task_token_index(task).map(|i| &self.tokens[i])
    }
}

/// A token parked at a node, waiting for something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: u32,
    pub node: String,
    pub wait: Wait,
    /// The parallel forks this token is inside, innermost last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<Frame>,
    /// Timers armed while it waits: boundary timers of its task, or the timer
    /// branches of its event-based gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timers: Vec<Armed>,
}

/// A timer job armed for a waiting token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Armed {
    pub job: String,
    /// Index of the boundary event (on a task) or branch (on an event-based gateway).
    pub index: u16,
    pub due: DateTime<Utc>,
    /// How often a repeating timer has fired so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fired: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One message branch of an event-based gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageWait {
    pub branch: u16,
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "lowercase")]
pub enum Wait {
    /// A person: the user task `task`, claimed by `assignee` if set.
    Task {
        task: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignee: Option<String>,
    },
    /// A connector call `job`, on its `attempt`th try.
    Job { job: String, attempt: u32 },
    /// Stopped until an incident is retried.
    Incident { incident: u32 },
    /// An intermediate timer: the timer job `job`.
    Timer { job: String },
    /// An intermediate message catch.
    Message { name: String, key: String },
    /// An event-based gateway: its message branches (its timers are in `Token::timers`).
    Events { messages: Vec<MessageWait> },
    /// The body of a multi-instance node: waits until the items of `activation`
    /// are done (its boundary timers are in `Token::timers`).
    Scope { activation: u32 },
}

impl Wait {
    /// The (name, key) pairs of the messages this wait accepts.
    pub fn messages(&self) -> Box<dyn Iterator<Item = (&str, &str)> + '_> {
        match self {
            Wait::Message { name, key } => Box::new(std::iter::once((name.as_str(), key.as_str()))),
            Wait::Events { messages } => Box::new(messages.iter().map(|m| (m.name.as_str(), m.key.as_str()))),
            _ => Box::new(std::iter::empty()),
        }
    }
}

/// One level of nesting: which branch of which fork activation, or (`body`) which
/// item of which multi-instance activation of node `fork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub fork: String,
    pub activation: u32,
    /// The branch, or the item's position (items: up to [`crate::process::MAX_ITEMS`]).
    pub branch: u16,
    pub width: u16,
    /// An item of a multi-instance body rather than a fork's branch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body: bool,
}

/// A multi-instance activation: node `node` runs once per item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Multi {
    pub activation: u32,
    pub node: String,
    pub total: u32,
    /// Items started so far (all at once when parallel).
    pub started: u32,
    pub done: u32,
    /// Each item's `output` in item order, `null` until it is done; empty without `output`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<Value>,
    /// Sequential only: the items not started yet, next first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Value>,
}

/// The local variables of item `branch` of activation `activation` (its item and index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Locals {
    pub activation: u32,
    pub branch: u16,
    pub vars: Vars,
}

/// Branches of one fork activation that have reached their join so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinWait {
    pub activation: u32,
    pub join: String,
    pub width: u16,
    pub arrived: Vec<u16>,
    /// Scope of the token that leaves the join.
    pub scope: Vec<Frame>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u32,
    pub token: u32,
    pub node: String,
    pub message: String,
    pub at: DateTime<Utc>,
    /// A connector result whose `set` mapping failed: a retry re-applies the mapping
    /// instead of calling the connector again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_output: Option<Value>,
    /// With `pending_output` from a message to an event-based gateway: the branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_branch: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Open,
    Completed,
    Cancelled,
}

/// A user task as the inbox sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub instance: InstanceId,
    pub process: String,
    pub version: u32,
    pub node: String,
    pub title: String,
    pub lane: String,
    pub groups: Vec<String>,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The item of a multi-instance user task this task is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Value>,
    /// Open and past its due date. Computed when the task is read, never stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overdue: bool,
}

/// Work for the executor, due at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub instance: InstanceId,
    pub token: u32,
    pub node: String,
    pub due: DateTime<Utc>,
    pub attempt: u32,
    pub kind: JobKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum JobKind {
    /// Call a connector. The key is the same for every attempt of this call, so the
    /// receiving side can recognise a repeat after a crash.
    Connector { connector: String, input: Value, idempotency_key: String, timeout_ms: u64 },
    /// A timer of a token (catch event, boundary event, event-based branch): fired
    /// through the engine, no connector.
    Timer,
    /// The next scheduled start of a process with a timer start event.
    #[serde(rename = "start_timer")]
    StartTimer { process: String },
    /// The end of a buffered message's time to live.
    #[serde(rename = "message_expiry")]
    MessageExpiry { name: String, key: String, message: u64 },
}

impl JobKind {
    /// Jobs the engine carries out itself (timers), as opposed to connector calls.
    pub fn is_internal(&self) -> bool {
        !matches!(self, JobKind::Connector { .. })
    }
}

/// One line of an instance's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u32,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub event: HistoryEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HistoryEvent {
    Started {
        vars: Vars,
        /// What started it, when not only a user (a watched record's poll or webhook).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trigger: Option<Trigger>,
    },
    ScriptRan {
        changed: Vec<String>,
    },
    Routed {
        to: String,
    },
    Forked {
        branches: Vec<String>,
    },
    Joined,
    TaskOpened {
        task: String,
    },
    TaskClaimed {
        task: String,
    },
    TaskUnclaimed {
        task: String,
    },
    /// Someone (the entry's user) gave the task to `to`, or took it back (`None`).
    TaskAssigned {
        task: String,
        to: Option<String>,
    },
    TaskCompleted {
        task: String,
        outcome: String,
        vars: Vars,
    },
    SentBack {
        task: String,
        to: String,
        comment: String,
    },
    JobScheduled {
        job: String,
        connector: String,
        attempt: u32,
    },
    JobSucceeded {
        job: String,
        set: Vec<String>,
    },
    JobFailed {
        job: String,
        attempt: u32,
        message: String,
        retry_at: Option<DateTime<Utc>>,
    },
    IncidentRaised {
        incident: u32,
        message: String,
    },
    /// Retried by an operator (after optional variable updates).
    IncidentResolved {
        incident: u32,
        vars: Vars,
    },
    /// Resolved by an operator who did the step by hand: the token moved on to `to`.
    IncidentSkipped {
        incident: u32,
        vars: Vars,
        to: String,
    },
    /// A timer was armed to fire at `due`.
    TimerSet {
        job: String,
        due: DateTime<Utc>,
    },
    TimerFired {
        job: String,
    },
    /// A multi-instance node started `total` items (`sequential`: one at a time).
    ItemsStarted {
        total: u32,
        sequential: bool,
    },
    /// A multi-instance node is done: `done` of `total` items finished (fewer when
    /// its `complete_when` held early or a boundary ended it).
    ItemsDone {
        done: u32,
        total: u32,
    },
    /// A sub-process started its run.
    SubProcessStarted,
    /// A sub-process's run ended (done, or ended by a boundary or a cancel).
    SubProcessEnded,
    /// A boundary event ended the step; the token continues at `to`.
    Interrupted {
        to: String,
    },
    MessageWaiting {
        name: String,
        key: String,
    },
    MessageReceived {
        name: String,
        key: String,
        set: Vec<String>,
    },
    /// An error end threw `code`.
    ErrorThrown {
        code: Option<String>,
        message: String,
    },
    /// The boundary of node `by` caught the error (`code` absent: a technical
    /// failure, caught by `error: any`); the token continues at `to`.
    ErrorCaught {
        code: Option<String>,
        by: String,
        to: String,
    },
    Ended,
    Completed,
    Cancelled {
        reason: String,
    },
}

impl HistoryEvent {
    /// Short name used in traces and tables.
    pub fn name(&self) -> &'static str {
        match self {
            HistoryEvent::Started { .. } => "started",
            HistoryEvent::ScriptRan { .. } => "script_ran",
            HistoryEvent::Routed { .. } => "routed",
            HistoryEvent::Forked { .. } => "forked",
            HistoryEvent::Joined => "joined",
            HistoryEvent::TaskOpened { .. } => "task_opened",
            HistoryEvent::TaskClaimed { .. } => "task_claimed",
            HistoryEvent::TaskUnclaimed { .. } => "task_unclaimed",
            HistoryEvent::TaskAssigned { .. } => "task_assigned",
            HistoryEvent::TaskCompleted { .. } => "task_completed",
            HistoryEvent::SentBack { .. } => "sent_back",
            HistoryEvent::JobScheduled { .. } => "job_scheduled",
            HistoryEvent::JobSucceeded { .. } => "job_succeeded",
            HistoryEvent::JobFailed { .. } => "job_failed",
            HistoryEvent::IncidentRaised { .. } => "incident_raised",
            HistoryEvent::IncidentResolved { .. } => "incident_resolved",
            HistoryEvent::IncidentSkipped { .. } => "incident_skipped",
            HistoryEvent::TimerSet { .. } => "timer_set",
            HistoryEvent::TimerFired { .. } => "timer_fired",
            HistoryEvent::ItemsStarted { .. } => "items_started",
            HistoryEvent::ItemsDone { .. } => "items_done",
            HistoryEvent::SubProcessStarted => "sub_process_started",
            HistoryEvent::SubProcessEnded => "sub_process_ended",
            HistoryEvent::Interrupted { .. } => "interrupted",
            HistoryEvent::MessageWaiting { .. } => "message_waiting",
            HistoryEvent::MessageReceived { .. } => "message_received",
            HistoryEvent::ErrorThrown { .. } => "error_thrown",
            HistoryEvent::ErrorCaught { .. } => "error_caught",
            HistoryEvent::Ended => "ended",
            HistoryEvent::Completed => "completed",
            HistoryEvent::Cancelled { .. } => "cancelled",
        }
    }
}
