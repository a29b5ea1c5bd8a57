//! Message correlation: deliver a message to exactly one waiting token, start an
//! instance on it, or buffer it for a while.
//!
//! Tokens that wait for a message are indexed in the store by (name, key)
//! (subscriptions, written in the commit that parks the token). A message goes, in
//! this order, to the oldest waiting token; else to a process whose start event
//! listens for it; else into the buffer with a time to live. A token that starts
//! waiting takes a buffered message for it. Both directions hold the (name, key)
//! message lock, so either the message sees the subscription or the token sees the
//! buffered message: a message is never buffered while a token waits, and two
//! messages racing for one token are delivered one, buffered the other.
//!
//! Lock order: message lock, then business-key lock, then instance lock. A commit
//! holding an instance lock never takes a message lock: the messages its tokens
//! started waiting for are settled after the lock is released (`Engine::settle`).

use crate::engine::{lock_index, Engine, EngineError, NewWaits, StartOptions};
use crate::process::StartTrigger;
use crate::runtime::{self, Event, FieldError, InstanceId, Job, JobKind, Rejection};
use crate::schedule;
use crate::store::{Batch, BufferedMessage, Subscription};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// How a message is sent.
#[derive(Debug, Clone, Default)]
pub struct MessageOptions {
    /// How long to keep it when nobody waits yet: `None` the engine's default (one
    /// day unless configured), zero to refuse it instead ([`EngineError::NoReceiver`]).
    /// At most [`MAX_MESSAGE_TTL`]; longer is refused ([`check_ttl`]).
    pub ttl: Option<Duration>,
}

/// Longest time to live of a buffered message: 10 years (3,650 days). A message
/// nobody collects for that long is a mistake, and the cap keeps `expires_at` a
/// valid RFC 3339 date whatever the client sends.
pub const MAX_MESSAGE_TTL: Duration = Duration::from_secs(3_650 * 86_400);

/// A time to live is at most [`MAX_MESSAGE_TTL`]; the error says what was sent and
/// the limit (the API answers it with 422, the CLI exits non-zero).
pub fn check_ttl(ttl: Duration) -> Result<(), String> {
    if ttl > MAX_MESSAGE_TTL {
        return Err(format!(
            "a time to live of {} days is longer than 10 years ({} days), the longest a message is kept",
            ttl.as_secs() / 86_400,
            MAX_MESSAGE_TTL.as_secs() / 86_400
        ));
    }
    Ok(())
}

fn ttl_refused(problem: String) -> EngineError {
    EngineError::Rejected(Rejection::InvalidData(vec![FieldError { field: "ttl".into(), problem }]))
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Correlation {
    /// A waiting token received it.
    Delivered {
        /// The receiving instance.
        instance: InstanceId,
        /// The node that received it.
        node: String,
    },
    /// It started a new instance (a process with a message start event).
    Started {
        /// The new instance.
        instance: InstanceId,
        /// Its process.
        process: String,
    },
    /// Nobody waited: kept until `expires_at` for a token that starts waiting.
    Buffered {
        /// The buffered message's id.
        message: u64,
        /// When it is dropped if nobody takes it.
        expires_at: DateTime<Utc>,
    },
}

fn expiry_job_id(message: u64) -> String {
    format!("message-{message}")
}

impl Engine {
    /// Send message `name` with correlation key `key` (empty for messages without a
    /// key). The payload is mapped into the receiver's variables by the receiving
    /// node's `set:` (reading `payload`), or, without one, its fields named like
    /// declared variables are copied.
    pub fn correlate(
        &self,
        name: &str,
        key: &str,
        payload: Value,
        opts: &MessageOptions,
    ) -> Result<Correlation, EngineError> {
        let _span = tracing::info_span!(
            "engine",
            op = "correlate",
            message = name,
            key,
            instance = tracing::field::Empty,
            process = tracing::field::Empty
        )
        .entered();
        // Refused whether or not someone waits: the same request always gets the same answer.
        if let Some(ttl) = opts.ttl {
            check_ttl(ttl).map_err(ttl_refused)?;
        }
        crate::types::check_nesting(&payload).map_err(|problem| {
            EngineError::Rejected(Rejection::InvalidData(vec![FieldError { field: "payload".into(), problem }]))
        })?;
        let mut pending = NewWaits::new();
        let result = {
            let _m = self.inner.msg_locks[lock_index((name, key))].lock().expect("lock");
            match self.correlate_locked(name, key, &payload, None, &mut pending) {
                Ok(Some(c)) => Ok(c),
                Ok(None) => self.start_or_buffer(name, key, payload, opts, &mut pending),
                Err(e) => Err(e),
            }
        };
        self.settle(pending);
        result
    }

    /// Deliver to the oldest waiting token, if any. `buffered` is the stored message
    /// being delivered (deleted in the same commit).
    fn correlate_locked(
        &self,
        name: &str,
        key: &str,
        payload: &Value,
        buffered: Option<&BufferedMessage>,
        pending: &mut NewWaits,
    ) -> Result<Option<Correlation>, EngineError> {
        for sub in self.inner.store.subscriptions(name, key)? {
            let mut extra = Batch::default();
            if let Some(m) = buffered {
                extra.messages_delete.push(m.clone());
                if let Some(job) = self.inner.store.job(&expiry_job_id(m.id))? {
                    extra.jobs_delete.push(job);
                }
            }
            let event =
                Event::Message { token: sub.token, name: name.into(), key: key.into(), payload: payload.clone() };
            match self.handle_with(sub.instance, event, extra) {
                Ok((_, waits)) => {
                    pending.extend(waits);
                    tracing::info!(message = name, key, instance = sub.instance, node = %sub.node, "message delivered");
                    return Ok(Some(Correlation::Delivered { instance: sub.instance, node: sub.node }));
                }
                Err(EngineError::Conflict(Rejection::NotWaiting { .. }))
                | Err(EngineError::Conflict(Rejection::Finished(_)))
                | Err(EngineError::UnknownInstance(_)) => {
                    // A stale index entry: its token moved on without unsubscribing.
                    self.inner.store.commit(Batch { subscriptions_delete: vec![sub], ..Batch::default() })?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Nobody waits: start an instance on it, or buffer it. Runs under the message lock.
    fn start_or_buffer(
        &self,
        name: &str,
        key: &str,
        payload: Value,
        opts: &MessageOptions,
        pending: &mut NewWaits,
    ) -> Result<Correlation, EngineError> {
        for versions in self.processes() {
            let p = versions.last().expect("a deployed process has a version");
            let StartTrigger::Message { name: start_name, .. } = p.start_trigger() else { continue };
            if start_name != name {
                continue;
            }
            let business_key = (!key.is_empty()).then(|| key.to_string());
            if let Some(k) = &business_key {
                if self.inner.store.instance_by_key(&p.id, k)?.is_some() {
                    continue; // that instance exists: keep the message for it
                }
            }
            let vars = runtime::message_start_vars(p, &payload, self.now()).map_err(EngineError::Rejected)?;
            let opts = StartOptions { by: Some(format!("message:{name}")), business_key };
            let (inst, waits) = self.start_with(p, vars, opts, Batch::default())?;
            pending.extend(waits);
            tracing::info!(message = name, key, instance = inst.id, process = %p.id, "message started an instance");
            return Ok(Correlation::Started { instance: inst.id, process: p.id.clone() });
        }
        // A configured default past the cap is clamped (explicit ones are refused above).
        let ttl = opts.ttl.unwrap_or(self.inner.message_ttl.min(MAX_MESSAGE_TTL));
        if ttl.is_zero() {
            return Err(EngineError::NoReceiver { name: name.into(), key: key.into() });
        }
        check_ttl(ttl).map_err(ttl_refused)?;
        let now = self.now();
        let expires_at = chrono::Duration::from_std(ttl)
            .map_err(|e| e.to_string())
            .and_then(|d| schedule::checked_add(now, d))
            .map_err(ttl_refused)?;
        let id = self.inner.store.next_message_id()?;
        let msg = BufferedMessage { id, name: name.into(), key: key.into(), payload, received_at: now, expires_at };
        let job = Job {
            id: expiry_job_id(id),
            instance: 0,
            token: 0,
            node: String::new(),
            due: expires_at,
            attempt: 1,
            kind: JobKind::MessageExpiry { name: name.into(), key: key.into(), message: id },
            priority: nagare_core::priority::DEFAULT,
            process: String::new(),
        };
        let entry = (job.due, job.id.clone());
        self.inner.store.commit(Batch { messages_put: vec![msg], jobs_put: vec![(None, job)], ..Batch::default() })?;
        self.enqueue(vec![entry], Vec::new());
        tracing::info!(message = name, key, id, %expires_at, "message buffered: nobody waits yet");
        Ok(Correlation::Buffered { message: id, expires_at })
    }

    /// Tokens started waiting for these messages: hand them buffered copies. Runs
    /// until no delivery leads to a new wait that has a buffered message. False
    /// when a delivery failed: its commit may be visible without being durable.
    pub(crate) fn settle(&self, mut pending: NewWaits) -> bool {
        let mut rounds = 0usize;
        let mut all_stored = true;
        while let Some((name, key)) = pending.pop() {
            rounds += 1;
            if rounds > 10_000 {
                tracing::error!("message settling did not end after 10000 deliveries; the rest stays buffered");
                return all_stored;
            }
            if let Err(e) = self.deliver_buffered(&name, &key, &mut pending) {
                tracing::error!(message = %name, key = %key, error = %e, "could not deliver a buffered message");
                all_stored = false;
            }
        }
        all_stored
    }

    fn deliver_buffered(&self, name: &str, key: &str, pending: &mut NewWaits) -> Result<(), EngineError> {
        let _m = self.inner.msg_locks[lock_index((name, key))].lock().expect("lock");
        let now = self.now();
        for m in self.inner.store.buffered(name, key)? {
            if m.expires_at <= now {
                self.drop_buffered(&m)?;
                continue;
            }
            if self.correlate_locked(name, key, &m.payload, Some(&m), pending)?.is_none() {
                break; // nobody (else) waits
            }
        }
        Ok(())
    }

    fn drop_buffered(&self, m: &BufferedMessage) -> Result<(), EngineError> {
        let mut batch = Batch { messages_delete: vec![m.clone()], ..Batch::default() };
        let mut dequeue = Vec::new();
        if let Some(job) = self.inner.store.job(&expiry_job_id(m.id))? {
            dequeue.push((job.due, job.id.clone()));
            batch.jobs_delete.push(job);
        }
        self.inner.store.commit(batch)?;
        self.enqueue(Vec::new(), dequeue);
        tracing::info!(message = %m.name, key = %m.key, id = m.id, "buffered message expired");
        Ok(())
    }

    /// The time to live of buffered message `id` ran out.
    pub(crate) fn expire_message(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::MessageExpiry { name, key, message } = &job.kind else { return Ok(()) };
        let _m = self.inner.msg_locks[lock_index((name.as_str(), key.as_str()))].lock().expect("lock");
        match self.inner.store.buffered(name, key)?.into_iter().find(|m| m.id == *message) {
            Some(m) => self.drop_buffered(&m),
            None => {
                // Delivered meanwhile; the job is an orphan.
                if let Some(j) = self.inner.store.job(&job.id)? {
                    self.inner.store.commit(Batch { jobs_delete: vec![j], ..Batch::default() })?;
                }
                Ok(())
            }
        }
    }

    /// Messages kept for tokens that do not wait yet, oldest first.
    pub fn buffered_messages(&self) -> Result<Vec<BufferedMessage>, EngineError> {
        let mut all = self.inner.store.all_buffered()?;
        all.sort_by_key(|m| m.id);
        Ok(all)
    }

    /// Tokens waiting for message (`name`, `key`).
    pub fn waiting_for(&self, name: &str, key: &str) -> Result<Vec<Subscription>, EngineError> {
        Ok(self.inner.store.subscriptions(name, key)?)
    }
}
