//! What happened, told to subscribers once it is durable ([`Engine::subscribe`]).
//!
//! Events are derived in one place, from the batch of one commit (its history
//! entries and task records), and sent only after the store acknowledged that
//! commit: a subscriber never hears of a state that a crash could take back, and
//! a refused request (a 409, a 422) sends nothing.
//!
//! Ordering: the events of one instance arrive in commit order (they are sent
//! while the instance's lock is held), and within a commit in history order.
//! Events of different instances interleave. Only commits made by this engine are
//! told; other nodes sharing a PostgreSQL store tell their own subscribers.
//!
//! The channel is a bounded [`tokio::sync::broadcast`]: a subscriber that falls
//! more than [`DEFAULT_EVENT_CAPACITY`] events behind (see
//! [`crate::EngineBuilder::event_capacity`]) gets
//! [`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError::Lagged) with the
//! number it missed, then the oldest events still kept. It should then re-read the
//! state it cares about ([`Engine::instance`], [`Engine::tasks`]): the engine never
//! waits for a slow subscriber.
//!
//! [`Engine::subscribe`]: crate::Engine::subscribe
//! [`Engine::instance`]: crate::Engine::instance
//! [`Engine::tasks`]: crate::Engine::tasks

use crate::runtime::{HistoryEvent, InstanceId, Status, Task, TaskStatus};
use crate::store::Batch;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashSet;

/// Events kept for subscribers that have not read them yet (per engine). A
/// subscriber further behind is told it lagged.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Largest capacity [`crate::EngineBuilder::event_capacity`] accepts (the channel
/// keeps this many events in memory).
pub const MAX_EVENT_CAPACITY: usize = 1 << 20;

/// One thing that happened to an instance, after its commit is durable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineEvent {
    /// The instance it happened to.
    pub instance: InstanceId,
    /// Its process id and version.
    pub process: String,
    /// The process version.
    pub version: u32,
    /// When it happened (the engine clock at the step).
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened ([`EngineEvent::kind`]). Serialised with a `type` tag in
/// snake case (`instance_started`, `task_opened`, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A new instance (by a person, an app, a timer, a record, or a call activity:
    /// then `parent` is the calling instance).
    InstanceStarted {
        #[serde(skip_serializing_if = "Option::is_none")]
        /// The business key it was started with.
        business_key: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        /// Who started it (absent: a timer or message).
        started_by: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        /// The calling instance (a call activity).
        parent: Option<InstanceId>,
    },
    /// Every token ended. `end_node`: the end event reached last, when one was.
    InstanceCompleted {
        /// `completed`.
        status: Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        /// The end event reached last.
        end_node: Option<String>,
    },
    /// Cancelled by `by` (absent: by the engine, e.g. its caller was cancelled).
    InstanceCancelled {
        /// `cancelled`.
        status: Status,
        /// Why, as given to the cancel.
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        /// Who cancelled it.
        by: Option<String>,
    },
    /// A user task opened (the task as the inbox sees it).
    TaskOpened {
        /// The task opened.
        task: Task,
    },
    /// A task was claimed by, or given to, `task.assignee`.
    TaskClaimed {
        /// The task as claimed.
        task: Task,
    },
    /// A task was given back: it has no assignee now.
    TaskUnclaimed {
        /// The task as given back.
        task: Task,
    },
    /// A task was completed (also when sent back), by `task.completed_by`.
    TaskCompleted {
        /// The task as completed.
        task: Task,
    },
    /// A task closed without being done (a boundary, a cancel, a terminate end).
    TaskCancelled {
        /// The task as cancelled.
        task: Task,
    },
    /// A token stopped with an incident at `node`.
    IncidentRaised {
        /// Its number within the instance.
        incident: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        /// Where the token stopped.
        node: Option<String>,
        /// What went wrong.
        message: String,
    },
    /// An operator retried (`skipped: false`) or resolved by hand (`true`) an incident.
    IncidentResolved {
        /// Its number within the instance.
        incident: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        /// Where the token stopped.
        node: Option<String>,
        /// `true`: resolved by hand (the step was done outside); `false`: retried.
        skipped: bool,
    },
    /// A waiting token received message `name` with key `key`.
    MessageDelivered {
        /// The message name.
        name: String,
        /// Its correlation key.
        key: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        /// The receiving node.
        node: Option<String>,
    },
    /// A connector call failed; `retry_at` when it will be tried again (absent:
    /// given up, an incident or an error boundary follows).
    JobFailed {
        /// The job's id.
        job: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        /// The service task's node.
        node: Option<String>,
        /// Which attempt failed (from 1).
        attempt: u32,
        /// What the connector said.
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        /// When it is tried again.
        retry_at: Option<DateTime<Utc>>,
    },
}

impl EventKind {
    /// Every `type` tag [`EventKind::name`] gives, for filters that name events
    /// (webhooks) and must refuse a misspelt one.
    pub const NAMES: &'static [&'static str] = &[
        "instance_started",
        "instance_completed",
        "instance_cancelled",
        "task_opened",
        "task_claimed",
        "task_unclaimed",
        "task_completed",
        "task_cancelled",
        "incident_raised",
        "incident_resolved",
        "message_delivered",
        "job_failed",
    ];

    /// The `type` tag: `instance_started`, `task_opened`, ...
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::InstanceStarted { .. } => "instance_started",
            EventKind::InstanceCompleted { .. } => "instance_completed",
            EventKind::InstanceCancelled { .. } => "instance_cancelled",
            EventKind::TaskOpened { .. } => "task_opened",
            EventKind::TaskClaimed { .. } => "task_claimed",
            EventKind::TaskUnclaimed { .. } => "task_unclaimed",
            EventKind::TaskCompleted { .. } => "task_completed",
            EventKind::TaskCancelled { .. } => "task_cancelled",
            EventKind::IncidentRaised { .. } => "incident_raised",
            EventKind::IncidentResolved { .. } => "incident_resolved",
            EventKind::MessageDelivered { .. } => "message_delivered",
            EventKind::JobFailed { .. } => "job_failed",
        }
    }

    /// The task this event is about, for task events.
    pub fn task(&self) -> Option<&Task> {
        match self {
            EventKind::TaskOpened { task }
            | EventKind::TaskClaimed { task }
            | EventKind::TaskUnclaimed { task }
            | EventKind::TaskCompleted { task }
            | EventKind::TaskCancelled { task } => Some(task),
            _ => None,
        }
    }
}

/// The events of one commit, in order: per instance of the batch (in the order
/// its history was written), its history's events; task closures that wrote no
/// history of their own (cancelled tasks) just before the instance ends.
pub(crate) fn of_batch(batch: &Batch) -> Vec<EngineEvent> {
    let mut out = Vec::new();
    let mut seen: Vec<InstanceId> = Vec::new();
    for (id, _) in &batch.history {
        if !seen.contains(id) {
            seen.push(*id);
        }
    }
    for id in seen {
        of_instance(batch, id, &mut out);
    }
    out
}

fn of_instance(batch: &Batch, id: InstanceId, out: &mut Vec<EngineEvent>) {
    let Some(inst) = batch.instances.iter().rev().find(|i| i.id == id) else { return };
    // A task as this commit left it (a task changed twice: its last record).
    let task = |tid: &str| batch.tasks.iter().rev().find(|(_, t)| t.id == tid).map(|(_, t)| t.clone());
    let mut told_closed: HashSet<&str> = HashSet::new();
    let mut last_end: Option<String> = None;
    let mut flushed = false;
    let event = |at, kind| EngineEvent { instance: id, process: inst.process.clone(), version: inst.version, at, kind };
    // Tasks of this instance closed in this commit without a history entry saying so.
    let unlogged_closures = |told: &HashSet<&str>| -> Vec<(DateTime<Utc>, EventKind)> {
        batch
            .tasks
            .iter()
            .filter(|(old, new)| {
                new.instance == id
                    && new.status != TaskStatus::Open
                    && old.as_ref().is_some_and(|o| o.status == TaskStatus::Open)
                    && !told.contains(new.id.as_str())
            })
            .map(|(_, t)| {
                let at = t.completed_at.unwrap_or(t.created_at);
                let kind = match t.status {
                    TaskStatus::Completed => EventKind::TaskCompleted { task: t.clone() },
                    _ => EventKind::TaskCancelled { task: t.clone() },
                };
                (at, kind)
            })
            .collect()
    };
    for (_, h) in batch.history.iter().filter(|(i, _)| *i == id) {
        let node = h.node.clone();
        let kind = match &h.event {
            HistoryEvent::Started { parent, .. } => Some(EventKind::InstanceStarted {
                business_key: inst.business_key.clone(),
                started_by: inst.started_by.clone(),
                parent: *parent,
            }),
            HistoryEvent::TaskOpened { task: t } => task(t).map(|task| EventKind::TaskOpened { task }),
            HistoryEvent::TaskClaimed { task: t } | HistoryEvent::TaskAssigned { task: t, to: Some(_) } => {
                task(t).map(|task| EventKind::TaskClaimed { task })
            }
            HistoryEvent::TaskUnclaimed { task: t } | HistoryEvent::TaskAssigned { task: t, to: None } => {
                task(t).map(|task| EventKind::TaskUnclaimed { task })
            }
            HistoryEvent::TaskCompleted { task: t, .. } | HistoryEvent::SentBack { task: t, .. } => {
                told_closed.insert(t.as_str());
                task(t).map(|task| EventKind::TaskCompleted { task })
            }
            HistoryEvent::IncidentRaised { incident, message } => {
                Some(EventKind::IncidentRaised { incident: *incident, node, message: message.clone() })
            }
            HistoryEvent::IncidentResolved { incident, .. } => {
                Some(EventKind::IncidentResolved { incident: *incident, node, skipped: false })
            }
            HistoryEvent::IncidentSkipped { incident, .. } => {
                Some(EventKind::IncidentResolved { incident: *incident, node, skipped: true })
            }
            HistoryEvent::MessageReceived { name, key, .. } => {
                Some(EventKind::MessageDelivered { name: name.clone(), key: key.clone(), node })
            }
            HistoryEvent::JobFailed { job, attempt, message, retry_at } => Some(EventKind::JobFailed {
                job: job.clone(),
                node,
                attempt: *attempt,
                message: message.clone(),
                retry_at: *retry_at,
            }),
            HistoryEvent::Ended => {
                last_end = node;
                None
            }
            HistoryEvent::Completed | HistoryEvent::Cancelled { .. } => {
                if !flushed {
                    flushed = true;
                    for (at, kind) in unlogged_closures(&told_closed) {
                        out.push(event(at, kind));
                    }
                }
                Some(match &h.event {
                    HistoryEvent::Completed => {
                        EventKind::InstanceCompleted { status: Status::Completed, end_node: last_end.clone() }
                    }
                    HistoryEvent::Cancelled { reason } => EventKind::InstanceCancelled {
                        status: Status::Cancelled,
                        reason: reason.clone(),
                        by: h.user.clone(),
                    },
                    _ => unreachable!("matched above"),
                })
            }
            _ => None,
        };
        if let Some(kind) = kind {
            out.push(event(h.at, kind));
        }
    }
    if !flushed {
        for (at, kind) in unlogged_closures(&told_closed) {
            out.push(event(at, kind));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sim::disk::{Disk, FaultRates};
    use crate::store::KvStore;
    use crate::Engine;
    use tokio::sync::broadcast::error::TryRecvError;

    const ONE_TASK: &str = "id: s\nlanes:\n  l: { groups: [g] }\nstart: { next: t }\nnodes:\n  t: { user_task: T, lane: l, next: e }\n  e: { end: }\n";

    #[test]
    fn nothing_is_emitted_when_the_commit_fails() {
        let disk = Disk::new(crate::sim::rng::Rng::new(7));
        let engine = Engine::builder().store(KvStore::new(disk.open()).unwrap()).build().unwrap();
        engine.deploy("s.yaml", ONE_TASK).unwrap();
        let mut rx = engine.subscribe();
        disk.set_faults(FaultRates { apply_fails: 1000, flush_fails: 0 });
        assert!(engine.start("s", Default::default(), Default::default()).is_err());
        assert_eq!(rx.try_recv().map(|e| e.kind.name()), Err(TryRecvError::Empty));
        disk.set_faults(FaultRates::default());
        engine.start("s", Default::default(), Default::default()).unwrap();
        let names: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).map(|e| e.kind.name()).collect();
        assert_eq!(names, ["instance_started", "task_opened"]);
    }
}
