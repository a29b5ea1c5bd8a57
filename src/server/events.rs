//! `GET /api/v1/events`: the engine's events ([`nagare_engine::events`]) as
//! server-sent events, so that web pages and outside apps need not poll.
//!
//! Each event is sent once its commit is durable, as `event: <type>` with the
//! event as JSON `data:` (tasks in the inbox's [`TaskView`] form). What a caller
//! receives is what it may see elsewhere in the API: an administrator gets every
//! event; anyone else task events of tasks they may see ([`Caller::may_see_task`])
//! and the other events of instances they may see ([`Caller::may_see_instance`],
//! checked against the instance as stored when the event is sent).
//!
//! A connection that falls behind by more than the engine's event capacity gets
//! one `lagged` event (`{"missed": n}`) and then continues with the newest events:
//! re-read what it shows. A comment line every [`KEEP_ALIVE`] keeps proxies (and
//! the server's own idle timeout) from closing a quiet stream. The stream ends when
//! the server shuts down; clients reconnect (EventSource does so by itself).

use super::auth::{Auth, Caller};
use super::error::ErrorBody;
use super::instances::open_tasks;
use super::views::TaskView;
use super::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use nagare_engine::{Engine, EngineEvent, EventKind};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use utoipa::ToSchema;

/// How often a quiet stream gets a keep-alive comment (below the idle timeout).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event as sent in `data:` (documentation of the wire form).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct EventData {
    /// `instance_started`, `instance_completed`, `instance_cancelled`,
    /// `task_opened`, `task_claimed`, `task_unclaimed`, `task_completed`,
    /// `task_cancelled`, `incident_raised`, `incident_resolved`,
    /// `message_delivered`, `job_failed`; or `lagged` (then only `missed`).
    #[serde(rename = "type")]
    kind: String,
    instance: u64,
    process: String,
    version: u32,
    /// When it happened.
    at: chrono::DateTime<chrono::Utc>,
    /// Task events: the task as the inbox shows it.
    task: Option<TaskView>,
    /// Instance completed or cancelled: `completed` or `cancelled`.
    status: Option<String>,
    /// Instance completed: the end event reached last.
    end_node: Option<String>,
    /// Instance started: its business key, starter and calling instance.
    business_key: Option<String>,
    started_by: Option<String>,
    parent: Option<u64>,
    /// Instance cancelled: why and by whom.
    reason: Option<String>,
    by: Option<String>,
    /// Incidents: the incident number, the node, the message; `skipped` when an
    /// operator resolved it by hand.
    incident: Option<u32>,
    node: Option<String>,
    message: Option<String>,
    skipped: Option<bool>,
    /// Message delivered: its name and key.
    name: Option<String>,
    key: Option<String>,
    /// Job failed: the job, its attempt, and when it is retried (absent: given up).
    job: Option<String>,
    attempt: Option<u32>,
    retry_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `lagged`: events this connection missed.
    missed: Option<u64>,
}

/// Follow what happens, as server-sent events (`text/event-stream`).
#[utoipa::path(get, path = "/api/v1/events", operation_id = "events", tag = "events",
    responses(
        (status = 200, description = "A stream of server-sent events: `event: <type>`, `data: <EventData as JSON>`; \
            keep-alive comments every 15 s; the events the caller may see, each sent once its commit is durable, \
            in commit order per instance", body = EventData, content_type = "text/event-stream"),
        (status = 401, description = "No valid token", body = ErrorBody),
    ))]
pub async fn events(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let follow = Follow {
        rx: state.engine.subscribe(),
        stopping: state.stopping.subscribe(),
        engine: state.engine.clone(),
        caller,
        known: HashSet::new(),
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let event = f.next().await?;
        Some((Ok(event), f))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// One connection's subscription.
struct Follow {
    rx: Receiver<EngineEvent>,
    stopping: tokio::sync::watch::Receiver<bool>,
    engine: Engine,
    caller: Arc<Caller>,
    /// Instances this caller started or acted on: visible for good (participants
    /// only grow), so their events need no store read. Bounded by [`KNOWN_MAX`].
    known: HashSet<u64>,
}

/// Most instances one connection remembers as visible for good (then it forgets
/// them all and reads again).
const KNOWN_MAX: usize = 10_000;

impl Follow {
    /// The next event this caller may see; `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            let got = tokio::select! {
                got = self.rx.recv() => got,
                _ = self.stopping.wait_for(|s| *s) => return None,
            };
            match got {
                Ok(e) => {
                    let visible = self.may_see(&e).await;
                    if matches!(e.kind, EventKind::InstanceCompleted { .. } | EventKind::InstanceCancelled { .. }) {
                        self.known.remove(&e.instance); // nothing more will come
                    }
                    if visible {
                        return Some(to_sse(e));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    return Some(
                        Event::default()
                            .event("lagged")
                            .data(serde_json::json!({ "type": "lagged", "missed": n }).to_string()),
                    )
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    async fn may_see(&mut self, e: &EngineEvent) -> bool {
        if self.caller.admin {
            return true;
        }
        if let Some(task) = e.kind.task() {
            return self.caller.may_see_task(task);
        }
        if self.known.contains(&e.instance) {
            return true;
        }
        let (engine, caller, id) = (self.engine.clone(), self.caller.clone(), e.instance);
        let seen = super::blocking(move || {
            let inst = engine.instance(id)?;
            let tasks = open_tasks(&engine, &inst)?;
            let own = inst.started_by.as_deref() == Some(&caller.id) || inst.participants.contains(&caller.id);
            Ok((caller.may_see_instance(&inst, &tasks), own))
        })
        .await;
        let (visible, own) = seen.unwrap_or((false, false));
        if own {
            if self.known.len() >= KNOWN_MAX {
                self.known.clear();
            }
            self.known.insert(e.instance);
        }
        visible
    }
}

/// The event on the wire: its JSON, with tasks in their inbox form.
fn to_sse(e: EngineEvent) -> Event {
    Event::default().event(e.kind.name()).data(event_json(&e).to_string())
}

/// An event as JSON for outside readers (SSE `data:`, webhook bodies): the engine
/// event with tasks in their inbox form ([`TaskView`]).
pub fn event_json(e: &EngineEvent) -> Value {
    let mut data = serde_json::to_value(e).unwrap_or(Value::Null);
    if let (Some(task), Some(obj)) = (e.kind.task(), data.as_object_mut()) {
        obj.insert("task".into(), serde_json::to_value(TaskView::from(task.clone())).unwrap_or(Value::Null));
    }
    data
}
