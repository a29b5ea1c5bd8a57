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
#[non_exhaustive]
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
    /// Boundary timers and messages armed for fork activations whose branches run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forks: Vec<ForkWatch>,
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
    /// Users who completed a task of this instance other than by sending it back,
    /// in order: a user task with `skip: [approved]` skips them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// What started it, when it was started for an outside record (see [`Trigger`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// The instance whose call activity started this one (see [`ParentLink`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
    /// Read tasks of circulations (`circulate:`) not read yet: no token waits on
    /// them; they stay open after the instance completes, until read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<ReadTask>,
}

/// An open read task of a circulation: who must read it, from which node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadTask {
    pub task: String,
    pub node: String,
    pub user: String,
}

/// Where a called instance was called from: the calling instance, its token that
/// waits at the call node, and how deep the call chain is (1 for a child of a top
/// instance), so that a call cycle stops at [`MAX_CALL_DEPTH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    pub instance: InstanceId,
    pub token: u32,
    pub node: String,
    pub depth: u32,
}

/// Most levels of calls below a top instance (a call cycle stops here with an incident
/// on the calling token).
pub const MAX_CALL_DEPTH: u32 = 16;

/// How a called instance ended, as its caller learns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "as", rename_all = "snake_case")]
pub enum CallOutcome {
    /// Reached its end: the caller maps the final variables (`out`).
    Completed,
    /// An error end nothing inside it caught: thrown at the call node.
    Error { code: String, message: String },
    /// Cancelled from outside (not by its caller).
    Cancelled,
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
        for user in history.iter().flat_map(|h| h.user.iter().chain(&h.proxy)) {
            if !self.participants.contains(user) {
                self.participants.push(user.clone());
            }
        }
    }

    /// The next history sequence number; only the step function writes history.
    pub(crate) fn next_seq(&mut self) -> u32 {
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

    /// Position in `tokens` of the token waiting at a call activity whose start job
    /// is `job`.
    pub fn call_token_index(&self, job: &str) -> Option<usize> {
        self.tokens.iter().position(|t| matches!(&t.wait, Wait::Call { job: id, .. } if id == job))
    }

    /// Position in `tokens` of the token waiting for called instance `child`.
    pub fn child_token_index(&self, child: InstanceId) -> Option<usize> {
        self.tokens.iter().position(|t| matches!(&t.wait, Wait::Call { child: Some(c), .. } if *c == child))
    }

    /// The called instances this instance waits for.
    pub fn children(&self) -> impl Iterator<Item = InstanceId> + '_ {
        self.tokens.iter().filter_map(|t| match &t.wait {
            Wait::Call { child, .. } => *child,
            _ => None,
        })
    }

    /// Position in `tokens` of the token that timer job `job` belongs to: a timer
    /// catch, or a timer armed on a task or an event-based gateway. (A fork's
    /// boundary timers belong to no token: [`Instance::fork_timer_index`].)
    pub fn timer_token_index(&self, job: &str) -> Option<usize> {
        self.tokens.iter().position(|t| {
            matches!(&t.wait, Wait::Timer { job: id } if id == job) || t.timers.iter().any(|a| a.job == job)
        })
    }

    /// Position in `forks` of the fork activation whose boundary timer is job `job`.
    pub fn fork_timer_index(&self, job: &str) -> Option<usize> {
        self.forks.iter().position(|w| w.timers.iter().any(|a| a.job == job))
    }

    /// Messages this instance waits for: (subscriber, name, key). The subscriber is a
    /// token id, or a fork activation number for a fork's message boundaries (both
    /// come from [`Instance::seq`], so they never clash).
    pub fn subscriptions(&self) -> impl Iterator<Item = (u32, &str, &str)> {
        let tokens = self.tokens.iter().flat_map(|t| t.messages().map(move |(n, k)| (t.id, n, k)));
        let forks = self
            .forks
            .iter()
            .flat_map(|w| w.listens.iter().map(move |m| (w.activation, m.name.as_str(), m.key.as_str())));
        tokens.chain(forks)
    }

    /// The variables a token in `scope` reads: the instance's, with the locals of
    /// its sub-process runs and multi-instance items on top (innermost last).
    pub fn vars_in(&self, scope: &[Frame]) -> Vars {
        let mut vars = self.vars.clone();
        for l in scope.iter().filter(|f| f.body).filter_map(|f| self.locals_of(f)) {
            vars.extend(l.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        vars
    }

    /// The locals of the item or run that body frame `f` stands for.
    pub fn locals_of(&self, f: &Frame) -> Option<&Locals> {
        self.locals.iter().find(|l| l.is_of(f))
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
    /// Message boundaries of its task it listens for while it waits (`branch`: the
    /// boundary's index). Subscribed like a message catch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listens: Vec<MessageWait>,
}

impl Token {
    /// Every (name, key) this token accepts: its wait's, then its boundaries'.
    pub fn messages(&self) -> impl Iterator<Item = (&str, &str)> {
        self.wait.messages().chain(self.listens.iter().map(|m| (m.name.as_str(), m.key.as_str())))
    }
}

/// The armed boundary timers and messages of one fork activation, kept while its
/// branches run: withdrawn when they all join, or when the activation ends
/// otherwise (an interrupting boundary, an error caught outside, a terminate end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForkWatch {
    /// The activation (its number is also the subscriber id of its messages and
    /// the `token` of its timer jobs).
    pub activation: u32,
    /// The fork node.
    pub fork: String,
    /// The scope outside the fork: where a token leaving by a boundary goes on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<Frame>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timers: Vec<Armed>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listens: Vec<MessageWait>,
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

/// One message branch of an event-based gateway, or one message boundary (`branch`:
/// the boundary's index) a task or fork listens for.
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
    /// A call activity: the job `job` starts the called instance; `child` once started.
    Call {
        job: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        child: Option<InstanceId>,
    },
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

impl Locals {
    /// Whether these are the locals of the item or run of frame `f`.
    pub fn is_of(&self, f: &Frame) -> bool {
        f.body && self.activation == f.activation && self.branch == f.branch
    }
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
    /// With `pending_output` from a message: the event-based gateway's branch, or,
    /// on a task or fork, the message boundary that received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_branch: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TaskStatus {
    Open,
    Completed,
    Cancelled,
}

impl TaskStatus {
    /// The stored and serialised name: `open`, `completed`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Completed => "completed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
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
    /// A circulation's read task: nothing to fill in, completing it records that
    /// the assignee read it; the flow did not wait for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Open and past its due date. Computed when the task is read, never stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overdue: bool,
    /// 0–100, higher first (`priority:`; [`crate::priority::DEFAULT`] when unset).
    #[serde(default = "default_priority")]
    pub priority: u8,
}

fn default_priority() -> u8 {
    crate::priority::DEFAULT
}

fn is_default_priority(p: &u8) -> bool {
    *p == crate::priority::DEFAULT
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
    /// 0–100, higher first: the executor runs a process's due jobs in this order
    /// and gives processes with higher priorities a larger share.
    #[serde(default = "default_priority", skip_serializing_if = "is_default_priority")]
    pub priority: u8,
    /// The process whose fair share the job runs in (the engine fills it in when
    /// the job is committed; empty in records written before priorities).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub process: String,
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
    /// Start the instance a call activity calls (job of the calling instance; token
    /// and node are the call's). Idempotent: the calling token records the child.
    #[serde(rename = "call_start")]
    CallStart {
        process: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
        vars: crate::expr::Vars,
        /// Its business key, when the call gives one; else the caller's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        business_key: Option<String>,
    },
    /// Tell the calling instance (`instance` of the job) that called instance
    /// `child` ended; written in the child's final commit.
    #[serde(rename = "call_end")]
    CallEnd { child: InstanceId, outcome: CallOutcome },
    /// Cancel called instance `instance` of the job: its caller no longer waits.
    #[serde(rename = "call_cancel")]
    CallCancel,
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
    /// The proxy (代理人) who acted in `user`'s name ("tanaka for yamada").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    #[serde(flatten)]
    pub event: HistoryEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HistoryEvent {
    Started {
        vars: Vars,
        /// What started it, when not only a user (a watched record's poll or webhook).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trigger: Option<Trigger>,
        /// The calling instance, for an instance started by a call activity.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<InstanceId>,
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
    /// A call activity started instance `child` of `process` version `version`.
    CallStarted {
        child: InstanceId,
        process: String,
        version: u32,
    },
    /// Called instance `child` ended: its variables mapped into `set` (`out`), or
    /// the error `error` it threw comes out of the call node.
    CallCompleted {
        child: InstanceId,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        set: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A consensus (`approvers:`) is decided: `verdict` (`approved` or `rejected`)
    /// with `approvals` and `rejections` so far, `needed` approvals of `total`.
    ConsensusDecided {
        verdict: String,
        approvals: u32,
        rejections: u32,
        needed: u32,
        total: u32,
    },
    /// A circulation handed read task `task` to `to`; the token did not wait.
    Circulated {
        task: String,
        to: String,
    },
    /// The entry's user read (acknowledged) circulated task `task`.
    TaskRead {
        task: String,
    },
    /// An org expression (`assignee:`/`candidates:`) chose `to` for the task about
    /// to open; `fallback`: nobody was found, the process's fallback lane takes it;
    /// `skipped`: the step was skipped (`applicant` or `approved`) and `to` is the
    /// approver it would have had.
    TaskRouted {
        to: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skipped: Option<String>,
    },
    Ended,
    Completed,
    Cancelled {
        reason: String,
    },
    /// Moved from version `from` to version `to` of its process by an operator's
    /// migration plan; `changes` says what moved (`token 4: 申請 → 申請入力`...).
    Migrated {
        from: u32,
        to: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<String>,
    },
    /// Older lines of a long-running instance, replaced by this one line to keep
    /// its history bounded (`nagare archive --compact`): how many, their time
    /// span, and how many of each event there were.
    Compacted {
        lines: u32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        events: std::collections::BTreeMap<String, u32>,
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
            HistoryEvent::CallStarted { .. } => "call_started",
            HistoryEvent::CallCompleted { .. } => "call_completed",
            HistoryEvent::ConsensusDecided { .. } => "consensus_decided",
            HistoryEvent::Circulated { .. } => "circulated",
            HistoryEvent::TaskRead { .. } => "task_read",
            HistoryEvent::TaskRouted { .. } => "task_routed",
            HistoryEvent::Ended => "ended",
            HistoryEvent::Completed => "completed",
            HistoryEvent::Cancelled { .. } => "cancelled",
            HistoryEvent::Migrated { .. } => "migrated",
            HistoryEvent::Compacted { .. } => "compacted",
        }
    }
}
