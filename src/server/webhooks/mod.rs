//! Outgoing webhooks: the engine's events ([`nagare_engine::events`]) posted to
//! configured endpoints ([`config`], the `webhooks:` section of the config file),
//! signed ([`sign`]) and retried.
//!
//! Each endpoint has its own subscription, a bounded queue and one sender, so a
//! slow or failing endpoint delays only itself: never the engine (which does not
//! wait for subscribers) nor the other endpoints or SSE streams.
//!
//! - Body: the event as JSON, the same as the `data:` of `GET /api/v1/events`
//!   (tasks in their inbox form), `Content-Type: application/json`.
//! - Headers: `X-Nagare-Event` (the type), `X-Nagare-Delivery` (an id, the same
//!   on each attempt of one event), `X-Nagare-Timestamp` (unix seconds) and
//!   `X-Nagare-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! - Order: one delivery at a time per endpoint, in the order the events came, so
//!   the events of one instance arrive in commit order (a delivery that was given
//!   up is skipped, not sent later).
//! - Retries: any answer but 2xx, a timeout or a refused connection is tried
//!   again after `backoff`, doubling up to [`config::MAX_BACKOFF`], `attempts`
//!   times in all; then the event is dropped and logged.
//! - Lag: when more than `queue` events wait, the oldest are dropped; the endpoint
//!   then receives a `lagged` event (`{"type":"lagged","missed":n}`) before the
//!   next one, and a warning is logged. A receiver re-reads the state it keeps.
//! - Shutdown: queued events are still sent for a short grace time; what is left
//!   is logged as not delivered. The queue is in memory: events are delivered at
//!   most once per attempt sequence, never replayed after a restart.

pub mod config;
pub mod sign;

use crate::server::events::event_json;
use config::Webhook;
use nagare_engine::{Engine, EngineEvent};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Counters of one endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events the endpoint acknowledged (2xx).
    pub delivered: AtomicU64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: AtomicU64,
    /// Events given up after their last attempt, or left at shutdown.
    pub given_up: AtomicU64,
    /// Events never tried: dropped from a full queue (told to the endpoint as `lagged`).
    pub missed: AtomicU64,
}

impl Stats {
    /// The events of the endpoint by outcome (`delivered`, `given_up`, `missed`):
    /// each event it was sent ends in exactly one of them, or is still queued.
    pub fn events(&self) -> [(&'static str, u64); 3] {
        [
            ("delivered", self.delivered.load(Ordering::Relaxed)),
            ("given_up", self.given_up.load(Ordering::Relaxed)),
            ("missed", self.missed.load(Ordering::Relaxed)),
        ]
    }
}

/// The running webhook senders of a server.
pub struct Webhooks {
    stop: watch::Sender<Option<Instant>>,
    endpoints: Vec<(String, Arc<Stats>)>,
    tasks: Vec<JoinHandle<()>>,
}

/// One event ready to send.
struct Delivery {
    id: String,
    event: String,
    body: Vec<u8>,
}

/// Events waiting for one endpoint, and how many were dropped since the last
/// `lagged` notice.
#[derive(Default)]
struct Pending {
    items: VecDeque<Delivery>,
    missed: u64,
}

struct Queue {
    pending: Mutex<Pending>,
    ready: Notify,
    cap: usize,
    /// The follower stopped: nothing more will be queued.
    closed: std::sync::atomic::AtomicBool,
}

impl Queue {
    fn push(&self, d: Delivery, stats: &Stats) {
        let mut p = self.pending.lock().expect("webhook queue lock");
        if p.items.len() >= self.cap {
            p.items.pop_front();
            p.missed += 1;
            stats.missed.fetch_add(1, Ordering::Relaxed);
        }
        p.items.push_back(d);
        drop(p);
        self.ready.notify_one();
    }

    fn missed(&self, n: u64, stats: &Stats) {
        self.pending.lock().expect("webhook queue lock").missed += n;
        stats.missed.fetch_add(n, Ordering::Relaxed);
        self.ready.notify_one();
    }

    /// The next thing to send: a `lagged` notice first when events were dropped.
    fn next(&self, ids: &Ids) -> Option<Delivery> {
        let mut p = self.pending.lock().expect("webhook queue lock");
        if p.missed > 0 {
            let missed = std::mem::take(&mut p.missed);
            let body = serde_json::json!({ "type": "lagged", "missed": missed }).to_string().into_bytes();
            return Some(Delivery { id: ids.next(), event: "lagged".into(), body });
        }
        p.items.pop_front()
    }

    fn len(&self) -> usize {
        self.pending.lock().expect("webhook queue lock").items.len()
    }
}

/// Delivery ids: random per server start, then a counter.
struct Ids {
    boot: u64,
    n: AtomicU64,
}

impl Ids {
    fn new() -> Ids {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b); // without randomness ids are still unique per run
        Ids { boot: u64::from_le_bytes(b), n: AtomicU64::new(0) }
    }

    fn next(&self) -> String {
        format!("{:016x}-{}", self.boot, self.n.fetch_add(1, Ordering::Relaxed))
    }
}

impl Webhooks {
    /// Subscribe to `engine` and post its events to each endpoint (inside a tokio
    /// runtime). Events committed before this call are not sent.
    pub fn start(engine: &Engine, hooks: Vec<Webhook>) -> Webhooks {
        let (stop, _) = watch::channel(None);
        let ids = Arc::new(Ids::new());
        let mut endpoints = Vec::new();
        let mut tasks = Vec::new();
        for hook in hooks {
            let hook = Arc::new(hook);
            let stats = Arc::new(Stats::default());
            let queue = Arc::new(Queue {
                pending: Mutex::default(),
                ready: Notify::new(),
                cap: hook.queue,
                closed: Default::default(),
            });
            let client = reqwest::Client::builder()
                .timeout(hook.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("nagare-webhook/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default();
            let sender =
                Sender { hook: hook.clone(), queue: queue.clone(), client, stats: stats.clone(), ids: ids.clone() };
            tasks.push(tokio::spawn(follow(
                engine.subscribe(),
                hook.clone(),
                queue,
                stats.clone(),
                ids.clone(),
                stop.subscribe(),
            )));
            tasks.push(tokio::spawn(sender.run(stop.subscribe())));
            tracing::info!(url = %label(&hook.url), events = ?hook.events, processes = ?hook.processes, "webhook");
            endpoints.push((hook.url.clone(), stats));
        }
        Webhooks { stop, endpoints, tasks }
    }

    /// Each endpoint's URL and counters.
    pub fn stats(&self) -> &[(String, Arc<Stats>)] {
        &self.endpoints
    }

    /// Stop: events already committed are still sent for up to `grace`; then the
    /// rest is logged as not delivered.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.send_replace(Some(Instant::now() + grace));
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "webhook task failed");
            }
        }
    }
}

/// Move the endpoint's events from the engine's channel to its queue, quickly, so
/// that the channel never lags because the endpoint is slow.
async fn follow(
    mut rx: Receiver<EngineEvent>,
    hook: Arc<Webhook>,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
    ids: Arc<Ids>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let take = |e: EngineEvent| {
        let name = e.kind.name();
        if hook.wants(name, &e.process) {
            let body = event_json(&e).to_string().into_bytes();
            queue.push(Delivery { id: ids.next(), event: name.to_string(), body }, &stats);
        }
    };
    loop {
        let got = tokio::select! {
            got = rx.recv() => got,
            _ = stop.wait_for(Option::is_some) => {
                // What was committed before the stop is still queued.
                loop {
                    match rx.try_recv() {
                        Ok(e) => take(e),
                        Err(TryRecvError::Lagged(n)) => queue.missed(n, &stats),
                        Err(_) => break,
                    }
                }
                queue.closed.store(true, Ordering::SeqCst);
                queue.ready.notify_one();
                return;
            }
        };
        match got {
            Ok(e) => take(e),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(url = %label(&hook.url), missed = n, "webhook fell behind the engine's events");
                queue.missed(n, &stats);
            }
            Err(RecvError::Closed) => {
                queue.closed.store(true, Ordering::SeqCst);
                queue.ready.notify_one();
                return;
            }
        }
    }
}

/// Sends one endpoint's queue, one delivery at a time.
struct Sender {
    hook: Arc<Webhook>,
    queue: Arc<Queue>,
    client: reqwest::Client,
    stats: Arc<Stats>,
    ids: Arc<Ids>,
}

/// Why an attempt failed.
enum Failure {
    Status(u16),
    Transport(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "answered HTTP {s}"),
            Failure::Transport(e) => f.write_str(e),
        }
    }
}

impl Sender {
    async fn run(self, mut stop: watch::Receiver<Option<Instant>>) {
        loop {
            let deadline = *stop.borrow();
            if let Some(deadline) = deadline {
                if Instant::now() >= deadline {
                    let left = self.queue.len() as u64;
                    if left > 0 {
                        self.stats.given_up.fetch_add(left, Ordering::Relaxed);
                        tracing::warn!(url = %label(&self.hook.url), left, "webhook events not delivered at shutdown");
                    }
                    return;
                }
            }
            match self.queue.next(&self.ids) {
                Some(d) => self.deliver(d, deadline).await,
                None if deadline.is_some() => {
                    if self.queue.closed.load(Ordering::SeqCst) && self.queue.len() == 0 {
                        return; // everything committed before the stop was sent
                    }
                    // Stopping: wait for the follower's last events, until the deadline.
                    let until = deadline.unwrap_or_else(Instant::now);
                    if tokio::time::timeout_at(until, self.queue.ready.notified()).await.is_err() {
                        return;
                    }
                }
                None => {
                    tokio::select! {
                        _ = self.queue.ready.notified() => {}
                        stopping = stop.wait_for(Option::is_some) => {
                            if stopping.is_err() {
                                return; // the `Webhooks` handle was dropped without a shutdown
                            }
                        }
                    }
                }
            }
        }
    }

    /// Send `d` until it is acknowledged, out of attempts, or past `deadline`.
    async fn deliver(&self, d: Delivery, deadline: Option<Instant>) {
        let span = tracing::info_span!("webhook", url = %label(&self.hook.url), delivery = %d.id, event = %d.event);
        let _enter = span.enter();
        if d.event == "lagged" {
            tracing::warn!("webhook endpoint missed events (queue full); telling it with a `lagged` event");
        }
        for attempt in 1..=self.hook.attempts {
            let failure = match self.attempt(&d).await {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(attempt, "webhook delivered");
                    return;
                }
                Err(f) => f,
            };
            self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            if attempt == self.hook.attempts {
                self.stats.given_up.fetch_add(1, Ordering::Relaxed);
                tracing::error!(attempt, error = %failure, "webhook delivery given up: the endpoint misses this event");
                return;
            }
            let wait = backoff(self.hook.backoff, attempt);
            let until = Instant::now() + wait;
            if deadline.is_some_and(|dl| until > dl) {
                self.stats.given_up.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(attempt, error = %failure, "webhook delivery failed at shutdown; not retried");
                return;
            }
            tracing::warn!(attempt, error = %failure, retry_in = ?wait, "webhook delivery failed; retrying");
            tokio::time::sleep_until(until).await;
        }
    }

    async fn attempt(&self, d: &Delivery) -> Result<(), Failure> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let resp = self
            .client
            .post(&self.hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(sign::EVENT_HEADER, &d.event)
            .header(sign::DELIVERY_HEADER, &d.id)
            .header(sign::TIMESTAMP_HEADER, now.to_string())
            .header(sign::SIGNATURE_HEADER, sign::signature(&self.hook.secret, now, &d.body))
            .body(d.body.clone())
            .send()
            .await
            .map_err(|e| Failure::Transport(e.without_url().to_string()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Failure::Status(resp.status().as_u16()))
        }
    }
}

/// The wait after failed attempt `attempt` (1-based): `first`, doubling, at most
/// [`config::MAX_BACKOFF`].
fn backoff(first: Duration, attempt: u32) -> Duration {
    first.saturating_mul(1 << (attempt - 1).min(16)).min(config::MAX_BACKOFF)
}

/// The URL as logged: without its query (which may carry a token).
fn label(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests;
