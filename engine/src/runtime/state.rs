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
}

/// One level of parallel nesting: which branch of which fork activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub fork: String,
    pub activation: u32,
    pub branch: u16,
    pub width: u16,
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
    IncidentResolved {
        incident: u32,
        vars: Vars,
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
            HistoryEvent::Ended => "ended",
            HistoryEvent::Completed => "completed",
            HistoryEvent::Cancelled { .. } => "cancelled",
        }
    }
}
