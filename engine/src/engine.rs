//! The engine: deploys processes and turns requests into committed transitions.
//!
//! For every event it takes the instance's lock, loads the instance, runs the pure
//! [`runtime::step()`], writes one [`Batch`] (durable before it returns) and only then
//! tells the executor about new jobs. Two requests for one instance are serialised by
//! the lock, so the second sees the first's result: one wins, the other is refused.

use crate::blobs::{BlobError, Blobs};
use crate::clock::{Clock, SystemClock, VirtualClock};
use crate::compile::CompileOptions;
use crate::connector::{Connector, Registry};
use crate::contain;
use crate::diag::Diagnostics;
use crate::due::DueQueue;
use crate::events::{self, EngineEvent};
use crate::expr::Vars;
use crate::load::{load_str, Loaded};
use crate::lock::Lock;
use crate::process::Process;
use crate::runtime::{
    self, Command, Culprit, Event, Failure, HistoryEvent, Instance, InstanceId, Job, JobKind, Outcome, Rejection,
    Status, Task, TaskStatus, Transition, Trigger,
};
use crate::stats::{Stats, StatsSnapshot};
use crate::store::{
    Batch, DefinitionRecord, Durability, InstanceFilter, KvStore, MemKv, SledKv, Store, StoreError, Subscription,
    TaskQuery,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

const LOCK_SHARDS: usize = 256;
/// Due jobs kept in memory at most; the rest wait in the store's `q/` index.
pub const DEFAULT_QUEUE_WINDOW: usize = 10_000;
/// The fair queue of due jobs ([`crate::fair`]) holds this many windows' worth: a
/// backlog of up to 100,000 due jobs (default) is shared out fairly; beyond that,
/// the excess waits in due order until the backlog shrinks.
pub const READY_PER_WINDOW: usize = 10;
/// Due jobs read into the fair queue per [`Engine::take_due`].
const STAGE_BUDGET: usize = 1024;
/// Most times the executor starts a job without its outcome being recorded (the
/// process stopped while running it: a crash, out of memory, a kill); at the next
/// start the job becomes an incident instead of running again.
pub const MAX_JOB_STARTS: u32 = 5;
/// Times an event is applied again after another process sharing the store changed
/// its instance first ([`Engine::handle`]); then the conflict is the answer.
pub const MAX_CONFLICT_RETRIES: u32 = 8;
/// How long a message nobody waits for is kept, unless the sender says otherwise.
pub const DEFAULT_MESSAGE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
/// Why an engine call failed. Matchable: each kind maps to one HTTP status in the
/// server; the enum is non-exhaustive, so match with a wildcard arm.
pub enum EngineError {
    /// The store failed (disk, database): HTTP 500. Transparent: its message once.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the process file has errors:\n{0}")]
    /// The process file has errors (deploy): every diagnostic, with line and column.
    Invalid(Diagnostics),
    #[error("no process `{0}` is deployed")]
    /// No process with this id is deployed (HTTP 404).
    UnknownProcess(String),
    #[error("no instance {0}")]
    /// No instance with this id (HTTP 404).
    UnknownInstance(InstanceId),
    #[error("no task {0}")]
    /// No task with this id (HTTP 404).
    UnknownTask(String),
    /// The request contradicts the current state (task already done, claimed by
    /// someone else, instance finished): HTTP 409.
    #[error("{0}")]
    Conflict(Rejection),
    /// The data sent is wrong (form validation): HTTP 422.
    #[error("{0}")]
    Rejected(Rejection),
    /// A message nobody waits for, sent with a time to live of zero: HTTP 404.
    #[error("no one waits for message `{name}` with key `{key}`, and it was sent with no time to live")]
    NoReceiver {
        /// The message name.
        name: String,
        /// Its correlation key.
        key: String,
    },
    /// The blob store failed (disk) or a file's content is missing: HTTP 500.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A bug (a panic) stopped the request, and no instance could take it as an
    /// incident (a start, a cancel): nothing was changed. HTTP 500.
    #[error("internal error, nothing was changed (a bug in nagare; please report it): {0}")]
    Internal(String),
}

impl EngineError {
    fn from_rejection(r: Rejection) -> Self {
        match r {
            Rejection::InvalidData(_)
            | Rejection::UnknownOutcome { .. }
            | Rejection::IncidentNotFound(_)
            | Rejection::CannotSkip { .. }
            | Rejection::UncaughtTaskError { .. } => EngineError::Rejected(r),
            _ => EngineError::Conflict(r),
        }
    }
}

/// The result of a deploy.
#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    /// The process id.
    pub id: String,
    /// The version now current (the new one, or the same text's).
    pub version: u32,
    /// False when the same text was already deployed (nothing changed).
    pub created: bool,
    /// Problems that do not stop the deploy (unused variables, ...).
    pub warnings: Diagnostics,
}

/// Options for starting an instance.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Who starts it (history, `started_by`, the `initiator` variable).
    pub by: Option<String>,
    /// A start with a key that already has an instance returns that instance.
    pub business_key: Option<String>,
}

/// Builds an [`Engine`] with its store, clock and connectors.
pub struct EngineBuilder {
    store: Option<Box<dyn Store>>,
    clock: Arc<dyn Clock>,
    connectors: Registry,
    queue_window: usize,
    message_ttl: std::time::Duration,
    blobs: Option<Blobs>,
    event_capacity: usize,
    max_job_starts: u32,
}

impl EngineBuilder {
    /// Keep instances in `store` (a [`crate::store::KvStore`] over any backend, PostgreSQL).
    pub fn store(mut self, store: impl Store + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// Durable sled store in `dir`.
    /// The sled store in `dir` (created if missing), every commit fsynced.
    pub fn data_dir(self, dir: impl AsRef<Path>) -> Result<Self, EngineError> {
        self.data_dir_with(dir, Durability::Flush)
    }

    /// The sled store in `dir` with the given durability.
    pub fn data_dir_with(self, dir: impl AsRef<Path>, durability: Durability) -> Result<Self, EngineError> {
        let dir = dir.as_ref();
        let store = KvStore::new(SledKv::open(dir, durability)?)?;
        Ok(self.store(store).blobs(Blobs::in_dir(&dir.join("blobs"))?))
    }

    /// Where the content of `file` variables lives (default: `blobs/` in the data
    /// directory, or memory).
    pub fn blobs(mut self, blobs: Blobs) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// Keep everything in memory: nothing survives the process (tests, trials).
    pub fn in_memory(self) -> Self {
        self.store(KvStore::new(MemKv::default()).expect("memory store opens"))
    }

    /// Read the time from `clock` (a [`VirtualClock`] in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Most due jobs held in memory (default [`DEFAULT_QUEUE_WINDOW`]).
    pub fn queue_window(mut self, n: usize) -> Self {
        self.queue_window = n;
        self
    }

    /// Default time to live of a message nobody waits for yet (default one day).
    pub fn message_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.message_ttl = ttl;
        self
    }

    /// Events kept for slow subscribers ([`Engine::subscribe`]; default
    /// [`crate::events::DEFAULT_EVENT_CAPACITY`], at most
    /// [`crate::events::MAX_EVENT_CAPACITY`], at least 1).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.clamp(1, crate::events::MAX_EVENT_CAPACITY);
        self
    }

    /// Unfinished starts after which a job becomes an incident instead of running
    /// again (default [`MAX_JOB_STARTS`], at least 1). Raise it where the process is
    /// stopped on purpose while jobs run (a kill test, an aggressive autoscaler), so
    /// that stops which are not the job's fault do not add up to a crash loop.
    pub fn max_job_starts(mut self, n: u32) -> Self {
        self.max_job_starts = n.max(1);
        self
    }

    /// Register connector `c` as `name` (service steps say `service: name`).
    pub fn connector(mut self, name: impl Into<String>, c: impl Connector + 'static) -> Self {
        self.connectors.register(name, c);
        self
    }

    /// Use every connector of `registry` (e.g. `nagare_connectors::builtin()`), besides
    /// those registered one by one.
    pub fn connectors(mut self, registry: Registry) -> Self {
        self.connectors.merge(&registry);
        self
    }

    /// Serve connector `name` by external workers ([`Engine::activate_jobs`]).
    pub fn external(mut self, name: impl Into<String>) -> Self {
        self.connectors.register_external(name);
        self
    }

    /// Open the engine: load deployed processes and pending jobs from the store.
    pub fn build(self) -> Result<Engine, EngineError> {
        let store = match self.store {
            Some(s) => s,
            None => Box::new(KvStore::new(MemKv::default())?),
        };
        let inner = Inner {
            store,
            clock: self.clock,
            connectors: self.connectors,
            processes: RwLock::new(HashMap::new()),
            locks: (0..LOCK_SHARDS).map(|_| Lock::new(())).collect(),
            key_locks: (0..LOCK_SHARDS).map(|_| Lock::new(())).collect(),
            msg_locks: (0..LOCK_SHARDS).map(|_| Lock::new(())).collect(),
            queue: Lock::new(DueQueue::unloaded(self.queue_window)),
            ready: Lock::new(crate::fair::FairQueue::new(self.queue_window.saturating_mul(READY_PER_WINDOW))),
            wake: tokio::sync::Notify::new(),
            workers: Lock::new(crate::workers::Pool::default()),
            jobs_ready: tokio::sync::Notify::new(),
            stats: Stats::default(),
            message_ttl: self.message_ttl,
            blobs: self.blobs.unwrap_or_else(Blobs::in_memory),
            events: tokio::sync::broadcast::Sender::new(self.event_capacity),
            org: RwLock::default(),
            max_job_starts: self.max_job_starts,
        };
        let engine = Engine { inner: Arc::new(inner) };
        engine.reload()?;
        let open = engine.inner.store.open_task_count()?;
        engine.inner.stats.tasks_open.store(open as i64, Ordering::Relaxed);
        Ok(engine)
    }
}

pub(crate) struct Inner {
    pub(crate) store: Box<dyn Store>,
    clock: Arc<dyn Clock>,
    connectors: Registry,
    /// id → versions, in order.
    pub(crate) processes: RwLock<HashMap<String, Vec<Arc<Process>>>>,
    /// Instance (and deploy) locks. An instance lock is always taken last.
    pub(crate) locks: Vec<Lock<()>>,
    /// Business-key locks, taken before an instance lock: a separate set, so that a
    /// start never waits on a shard it holds itself (key and new id in one shard) and
    /// two starts never wait on each other crosswise.
    pub(crate) key_locks: Vec<Lock<()>>,
    /// Message (name, key) locks, taken first of all: a correlation and a token that
    /// starts waiting for the same message are serialised, so a message is never
    /// buffered while a token waits for it, and never delivered twice.
    pub(crate) msg_locks: Vec<Lock<()>>,
    /// Jobs to run: a bounded window over the store's due index.
    queue: Lock<DueQueue>,
    /// Due jobs taken off the window, waiting for a free slot in fair turns per
    /// process ([`crate::fair`]). Lock order: `queue`, then `ready`.
    ready: Lock<crate::fair::FairQueue>,
    wake: tokio::sync::Notify,
    /// Due jobs of external connectors, waiting for or leased by workers.
    pub(crate) workers: Lock<crate::workers::Pool>,
    /// Told when a job joins [`Inner::workers`], for long-polling workers.
    pub(crate) jobs_ready: tokio::sync::Notify,
    stats: Stats,
    pub(crate) message_ttl: std::time::Duration,
    pub(crate) blobs: Blobs,
    /// [`EngineBuilder::max_job_starts`].
    max_job_starts: u32,
    /// Told of every durable instance commit ([`crate::events`]).
    events: tokio::sync::broadcast::Sender<EngineEvent>,
    /// The org chart and company days off in force ([`crate::org`]).
    pub(crate) org: RwLock<Arc<crate::org::Org>>,
}

/// A workflow engine. Cheap to clone; all clones share one state.
///
/// **Every call blocks.** A call that changes an instance takes the instance's lock
/// and returns only once its commit is durable (the store's fsync: about 1 to 10 ms
/// on sled); reads wait for the store. From async code use
/// [`Engine::asynchronous`] ([`crate::AsyncEngine`]), which runs each call on
/// tokio's blocking pool, or wrap calls in [`tokio::task::spawn_blocking`]. To learn
/// what happens without polling, [`Engine::subscribe`] to its events.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

/// The store writes of one step, before they are committed ([`Engine::prepare`]).
pub(crate) struct Prepared {
    batch: Batch,
    enqueue: Vec<(DateTime<Utc>, String)>,
    dequeue: Vec<(DateTime<Utc>, String)>,
    waits: NewWaits,
    tasks_opened: i64,
}

/// Messages that tokens started waiting for in a commit: buffered copies may now be
/// delivered (done after the instance lock is released, see [`crate::messages`]).
pub(crate) type NewWaits = Vec<(String, String)>;

/// A queue entry at the store index's precision.
pub(crate) fn due_entry(due: DateTime<Utc>, id: &str) -> crate::due::Entry {
    (due.timestamp_millis(), id.to_string())
}

pub(crate) fn lock_index(key: impl Hash) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % LOCK_SHARDS
}

impl Engine {
    /// Start configuring an engine: store, clock, connectors.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            store: None,
            clock: Arc::new(SystemClock),
            connectors: Registry::default(),
            queue_window: DEFAULT_QUEUE_WINDOW,
            message_ttl: DEFAULT_MESSAGE_TTL,
            blobs: None,
            event_capacity: crate::events::DEFAULT_EVENT_CAPACITY,
            max_job_starts: MAX_JOB_STARTS,
        }
    }

    /// A durable engine on `dir` with the system clock and no connectors.
    pub fn open(dir: &Path) -> Result<Engine, EngineError> {
        Engine::builder().data_dir(dir)?.build()
    }

    /// An engine in memory with no connectors (tests).
    pub fn in_memory() -> Engine {
        Engine::builder().in_memory().build().expect("memory engine opens")
    }

    /// The engine's clock's current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The engine's clock as a [`VirtualClock`], when it runs on one.
    pub fn virtual_clock(&self) -> Option<&VirtualClock> {
        self.inner.clock.as_virtual()
    }

    /// Internal: see [`crate::internals::store`].
    #[doc(hidden)]
    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The connectors this engine calls.
    pub fn connectors(&self) -> &Registry {
        &self.inner.connectors
    }

    /// Be told what happens from now on: instances started, completed, cancelled;
    /// tasks opened, claimed, completed; incidents; messages delivered; failed
    /// connector calls. Each event is sent once its commit is durable, in commit
    /// order per instance; a receiver that falls behind gets `Lagged(n)` and should
    /// re-read the state it follows. See [`crate::events`].
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// Counters since this engine opened: instances, open tasks, commit latency.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Make every commit durable now. Commits are durable when acknowledged on a
    /// flushing store anyway; this matters for a `Relaxed` one, at shutdown.
    pub fn flush(&self) -> Result<(), EngineError> {
        Ok(self.inner.store.flush()?)
    }

    fn compile_options(&self) -> CompileOptions {
        CompileOptions {
            connectors: Some(self.inner.connectors.names()),
            input_check: Some(self.inner.connectors.input_check()),
            callees: Some(Arc::new(self.callees())),
            ..CompileOptions::default()
        }
    }

    fn reload(&self) -> Result<(), EngineError> {
        let mut defs = self.inner.store.definitions()?;
        defs.sort_by(|a, b| (&a.id, a.version).cmp(&(&b.id, b.version)));
        let configs = self.inner.store.configs()?;
        let mut map: HashMap<String, Vec<Arc<Process>>> = HashMap::new();
        for d in defs {
            // Deployed definitions were valid; check connectors lazily at call time so
            // that an app that stopped registering one can still open its store.
            match load_str(&d.file, &d.source, &CompileOptions::stored()) {
                Ok(Loaded { mut process, .. }) => {
                    process.version = d.version;
                    process.digest = d.digest.clone();
                    let cfg = configs.iter().find(|c| c.process == d.id);
                    let process = crate::settings::configured(&process, cfg);
                    map.entry(d.id.clone()).or_default().push(Arc::new(process));
                }
                Err(diags) => {
                    tracing::error!(process = %d.id, version = d.version, "stored definition no longer loads:\n{diags}")
                }
            }
        }
        *self.inner.processes.write().unwrap_or_else(PoisonError::into_inner) = map;
        self.refill_queue()?;
        // A token may have started waiting just before a crash, with its message
        // already buffered: deliver such messages now.
        let mut pairs: Vec<(String, String)> =
            self.inner.store.all_buffered()?.into_iter().map(|m| (m.name, m.key)).collect();
        pairs.dedup();
        self.settle(pairs);
        Ok(())
    }

    /// Load the due window from the store if it runs low.
    fn refill_queue(&self) -> Result<(), StoreError> {
        let mut q = self.inner.queue.lock().expect("queue lock");
        if let Some(((ms, id), n)) = q.needs_refill().then(|| q.refill_request()).flatten() {
            let loaded = self.inner.store.due_after(Some((ms, &id)), n)?;
            // The scan also sees jobs of commits still waiting for their flush (group
            // commit): make them durable before any of them can run, so that no call
            // ever leaves for a commit a crash could still undo.
            if !loaded.is_empty() {
                self.inner.store.flush()?;
            }
            q.refill(loaded, n);
        }
        Ok(())
    }

    /// On a store other processes write too: put the earliest stored jobs on the
    /// due window again, also those other nodes scheduled (a node that died leaves
    /// its jobs to the others: their leases run out). Jobs already queued, running
    /// or done meanwhile are harmless: `begin_run` finds them leased or gone.
    pub(crate) fn rescan_due(&self) -> Result<(), StoreError> {
        let cap = self.inner.queue.lock().expect("queue lock").cap();
        let loaded = self.inner.store.due_after(None, cap)?;
        let mut q = self.inner.queue.lock().expect("queue lock");
        for e in loaded {
            q.insert(e);
        }
        drop(q);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Validate a process file against this engine's connectors, without deploying.
    pub fn validate(&self, file: &str, text: &str) -> Result<Loaded, Diagnostics> {
        // A BPMN file is imported to YAML first; the YAML is what gets stored.
        if crate::bpmn::looks_like_bpmn(text) {
            return crate::bpmn::load_bpmn(file, text, &self.compile_options());
        }
        load_str(file, text, &self.compile_options())
    }

    /// Deploy a process file. The same text again is a no-op; a changed text becomes
    /// a new version, and running instances keep the version they started on.
    pub fn deploy(&self, file: &str, text: &str) -> Result<Deployed, EngineError> {
        let _span = tracing::info_span!("engine", op = "deploy", file).entered();
        let Loaded { mut process, warnings } = self.validate(file, text).map_err(EngineError::Invalid)?;
        let _guard = self.inner.locks[lock_index(("deploy", &process.id))].lock().expect("lock");
        if let Some(latest) = self.latest(&process.id) {
            if latest.digest == process.digest {
                return Ok(Deployed { id: process.id, version: latest.version, created: false, warnings });
            }
            process.version = latest.version + 1;
        } else {
            process.version = 1;
        }
        let record = DefinitionRecord {
            id: process.id.clone(),
            version: process.version,
            digest: process.digest.clone(),
            file: file.to_string(),
            // BPMN is stored as the YAML it imported to, so a restart loads YAML.
            source: if crate::bpmn::looks_like_bpmn(text) { process.source.clone() } else { text.to_string() },
            deployed_at: self.now(),
        };
        let process = crate::settings::configured(&process, self.stored_config(&process.id)?.as_ref());
        let mut batch = Batch { definitions: vec![record], ..Batch::default() };
        let (timer_batch, (enq, deq)) = self.schedule_start_timer(&process)?;
        batch.extend(timer_batch);
        self.inner.store.commit(batch)?;
        self.enqueue(enq, deq);
        tracing::info!(process = %process.id, version = process.version, "deployed");
        let out = Deployed { id: process.id.clone(), version: process.version, created: true, warnings };
        self.inner
            .processes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(process.id.clone())
            .or_default()
            .push(Arc::new(process));
        Ok(out)
    }

    /// The latest deployed version of process `id`.
    pub fn latest(&self, id: &str) -> Option<Arc<Process>> {
        self.inner.processes.read().unwrap_or_else(PoisonError::into_inner).get(id).and_then(|v| v.last().cloned())
    }

    /// Version `version` of process `id`, if deployed.
    pub fn process(&self, id: &str, version: u32) -> Option<Arc<Process>> {
        let map = self.inner.processes.read().unwrap_or_else(PoisonError::into_inner);
        map.get(id)?.iter().find(|p| p.version == version).cloned()
    }

    /// Every deployed process, each with all its versions (oldest first).
    pub fn processes(&self) -> Vec<Vec<Arc<Process>>> {
        let map = self.inner.processes.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| a[0].id.cmp(&b[0].id));
        v
    }

    /// Start an instance of the latest version of `process`.
    /// A start without a business key of a watched process whose record variable is
    /// given takes the watch's record key ([`Engine::start_record`]), however it is
    /// started.
    pub fn start(&self, process: &str, vars: Vars, opts: StartOptions) -> Result<Instance, EngineError> {
        let span = crate::spans::call("start");
        span.record("process", process);
        let _span = span.entered();
        let p = self.latest(process).ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        if opts.business_key.is_none() {
            if let Some(record) = self.record_key_of(&p, &vars)? {
                let o = crate::records::RecordStartOptions { by: opts.by, via: "manual".into(), ..Default::default() };
                return Ok(self.start_record(process, &record, vars, o)?.into_instance());
            }
        }
        self.check_files(&p, &vars)?;
        let (inst, waits) = self.start_with(&p, vars, opts, Batch::default())?;
        self.settle_for(inst, waits)
    }

    /// Hand buffered messages to the waits just created; the instance as it is after.
    pub(crate) fn settle_for(&self, inst: Instance, waits: NewWaits) -> Result<Instance, EngineError> {
        if waits.is_empty() {
            return Ok(inst);
        }
        // A delivery whose commit failed may be visible but not durable: answer
        // with the state this event's own (durable) commit left.
        if !self.settle(waits) {
            return Ok(inst);
        }
        self.reload_if_changed(inst)
    }

    /// Start an instance of `p`, committing `extra` in the same batch. Returns the
    /// existing instance when the business key is taken (and then commits nothing).
    pub(crate) fn start_with(
        &self,
        p: &Process,
        vars: Vars,
        opts: StartOptions,
        extra: Batch,
    ) -> Result<(Instance, NewWaits), EngineError> {
        let _guard =
            opts.business_key.as_ref().map(|k| self.inner.key_locks[lock_index((&p.id, k))].lock().expect("lock"));
        if let Some(key) = &opts.business_key {
            if let Some(id) = self.inner.store.instance_by_key(&p.id, key)? {
                if !extra.is_empty() {
                    let enq = extra.jobs_put.iter().map(|(_, j)| (j.due, j.id.clone())).collect();
                    let deq = extra.jobs_delete.iter().map(|j| (j.due, j.id.clone())).collect();
                    self.inner.store.commit(extra)?;
                    self.enqueue(enq, deq);
                }
                return Ok((self.keyed_instance(id)?, Vec::new()));
            }
        }
        let Some(key) = opts.business_key.clone() else { return self.start_new(p, vars, opts, None, extra) };
        let again = extra.clone();
        match self.start_new(p, vars, opts, None, extra) {
            // Another process sharing the store started one with this key first:
            // answer as if it had been seen above.
            Err(EngineError::Store(StoreError::Conflict(why))) => {
                let id = self.inner.store.instance_by_key(&p.id, &key)?.ok_or(StoreError::Conflict(why))?;
                if !again.is_empty() {
                    let enq = again.jobs_put.iter().map(|(_, j)| (j.due, j.id.clone())).collect();
                    let deq = again.jobs_delete.iter().map(|j| (j.due, j.id.clone())).collect();
                    self.inner.store.commit(again)?;
                    self.enqueue(enq, deq);
                }
                Ok((self.keyed_instance(id)?, Vec::new()))
            }
            other => other,
        }
    }

    /// Start a new instance of `p`; the caller holds the business key's lock and
    /// has checked the key is free.
    pub(crate) fn start_new(
        &self,
        p: &Process,
        vars: Vars,
        opts: StartOptions,
        trigger: Option<Trigger>,
        extra: Batch,
    ) -> Result<(Instance, NewWaits), EngineError> {
        let id = self.inner.store.next_instance_id()?;
        tracing::Span::current().record("instance", id);
        let now = self.now();
        let started = contain::catch(|| {
            #[cfg(test)]
            contain::provoke::maybe_panic_in_start();
            let ambient = self.ambient_for(p, now);
            crate::ambient::within(ambient, || runtime::start(p, id, vars, opts.by, opts.business_key, now))
        });
        let (mut inst, mut tr) = match started {
            Ok(r) => r.map_err(EngineError::from_rejection)?,
            Err(panic) => {
                // No instance exists yet to carry an incident: refuse the start.
                tracing::error!(process = %p.id, version = p.version, panic = %panic, "a start panicked; nothing was started");
                return Err(EngineError::Internal(panic));
            }
        };
        if let Some(t) = trigger {
            if let Some(HistoryEvent::Started { trigger: line, .. }) = tr.history.first_mut().map(|h| &mut h.event) {
                *line = Some(t.clone());
            }
            inst.trigger = Some(t);
        }
        if p.has_sensitive() {
            p.scrub_texts(&mut inst, &mut tr.history);
        }
        inst.note_participants(&tr.history);
        debug_assert_invariants(p, &inst);
        let _ilock = self.inner.locks[lock_index(id)].lock().expect("lock");
        let waits = self.commit_with(&inst, tr, None, extra)?;
        self.inner.stats.instances_started.fetch_add(1, Ordering::Relaxed);
        self.count_finish(Status::Running, inst.status);
        tracing::debug!(instance = id, process = %p.id, version = p.version, status = inst.status.as_str(), "started");
        Ok((inst, waits))
    }

    /// `inst` as stored now, if a message delivery may have moved it since.
    fn reload_if_changed(&self, inst: Instance) -> Result<Instance, EngineError> {
        match self.inner.store.instance(inst.id)? {
            Some(now) if now.history_len != inst.history_len => Ok(now),
            _ => Ok(inst),
        }
    }

    /// Apply `event` to instance `id`, commit, and return the new state.
    /// Internal: see [`crate::internals::handle`].
    #[doc(hidden)]
    pub fn handle(&self, id: InstanceId, event: Event) -> Result<Instance, EngineError> {
        let (inst, waits) = self.handle_with(id, event, Batch::default())?;
        self.settle_for(inst, waits)
    }

    /// Apply `event` and commit it together with `extra`. The caller settles the
    /// returned waits once it holds no lock.
    ///
    /// A store shared with other processes (PostgreSQL) refuses a commit when another
    /// process changed the instance since it was read: the event is then applied
    /// again to the instance as it is now, where it may well be refused (the task is
    /// done: 409), exactly as if it had come second on one node.
    pub(crate) fn handle_with(
        &self,
        id: InstanceId,
        event: Event,
        extra: Batch,
    ) -> Result<(Instance, NewWaits), EngineError> {
        let mut tries = 0;
        loop {
            match self.handle_once(id, event.clone(), extra.clone()) {
                Err(EngineError::Store(StoreError::Conflict(why))) if tries < MAX_CONFLICT_RETRIES => {
                    tries += 1;
                    tracing::debug!(instance = id, tries, why = %why, "another process changed the instance; applying the event again");
                }
                other => return other,
            }
        }
    }

    fn handle_once(&self, id: InstanceId, event: Event, extra: Batch) -> Result<(Instance, NewWaits), EngineError> {
        let _guard = self.inner.locks[lock_index(id)].lock().expect("lock");
        let mut inst = self.inner.store.instance(id)?.ok_or(EngineError::UnknownInstance(id))?;
        crate::spans::record_instance(id, &inst.process);
        let p = self
            .process(&inst.process, inst.version)
            .ok_or_else(|| EngineError::UnknownProcess(format!("{} version {}", inst.process, inst.version)))?;
        let consumed_job = match &event {
            Event::JobDone { job, .. }
            | Event::JobFailed { job, .. }
            | Event::TimerFired { job }
            | Event::CallEnded { job, .. } => Some(job.clone()),
            _ => None,
        };
        let before = inst.status;
        let culprit = Culprit::of(&event);
        let now = self.now();
        let stepped = contain::catch(|| {
            #[cfg(test)]
            contain::provoke::maybe_panic_in_step();
            crate::ambient::within(self.ambient_for(&p, now), || runtime::step(&p, &mut inst, event, now))
        });
        let mut tr = match stepped {
            Ok(r) => r.map_err(EngineError::from_rejection)?,
            Err(panic) => {
                tracing::error!(instance = id, panic = %panic, "a step panicked; the event becomes an incident");
                // The event is dropped: start again from the instance as stored.
                inst = self.inner.store.instance(id)?.ok_or(EngineError::UnknownInstance(id))?;
                let message = format!("internal error (a bug in nagare; please report it): {panic}");
                culprit
                    .and_then(|c| contain::catch(|| runtime::raise_incident(&p, &mut inst, &c, message, now)).ok())
                    .flatten()
                    .ok_or(EngineError::Internal(panic))?
            }
        };
        if p.has_sensitive() {
            p.scrub_texts(&mut inst, &mut tr.history);
        }
        inst.note_participants(&tr.history);
        debug_assert_invariants(&p, &inst);
        let waits = self.commit_with(&inst, tr, consumed_job, extra)?;
        self.count_finish(before, inst.status);
        Ok((inst, waits))
    }

    /// Stop the token `culprit` names on instance `id` with an incident (a job that
    /// keeps stopping the engine). `None` when no token waits for it any more.
    pub(crate) fn raise_incident(
        &self,
        id: InstanceId,
        culprit: &Culprit,
        message: String,
        consumed_job: Option<String>,
    ) -> Result<Option<Instance>, EngineError> {
        let _guard = self.inner.locks[lock_index(id)].lock().expect("lock");
        let Some(mut inst) = self.inner.store.instance(id)? else { return Ok(None) };
        let Some(p) = self.process(&inst.process, inst.version) else { return Ok(None) };
        let before = inst.status;
        let Some(mut tr) = runtime::raise_incident(&p, &mut inst, culprit, message, self.now()) else {
            return Ok(None);
        };
        if p.has_sensitive() {
            p.scrub_texts(&mut inst, &mut tr.history);
        }
        self.commit_with(&inst, tr, consumed_job, Batch::default())?;
        self.count_finish(before, inst.status);
        Ok(Some(inst))
    }

    /// Count a called instance just started (and finished, if it ended at once).
    pub(crate) fn count_start(&self, p: &Process, status: Status) {
        self.inner.stats.instances_started.fetch_add(1, Ordering::Relaxed);
        self.count_finish(Status::Running, status);
        tracing::debug!(process = %p.id, version = p.version, status = status.as_str(), "called instance started");
    }

    fn count_finish(&self, before: Status, after: Status) {
        if before.is_finished() {
            return;
        }
        match after {
            Status::Completed => self.inner.stats.instances_completed.fetch_add(1, Ordering::Relaxed),
            Status::Cancelled => self.inner.stats.instances_cancelled.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    fn commit_with(
        &self,
        inst: &Instance,
        tr: Transition,
        consumed_job: Option<String>,
        extra: Batch,
    ) -> Result<NewWaits, EngineError> {
        let part = self.prepare(inst, tr, consumed_job)?;
        self.commit_parts(vec![part], extra)
    }

    /// The store writes for `inst` after transition `tr` (not committed yet).
    pub(crate) fn prepare(
        &self,
        inst: &Instance,
        tr: Transition,
        consumed_job: Option<String>,
    ) -> Result<Prepared, EngineError> {
        let store = &self.inner.store;
        let now = self.now();
        let mut batch = Batch { instances: vec![inst.clone()], ..Batch::default() };
        let mut waits = NewWaits::new();
        // Nodes a send back in this event goes to: their task is announced as sent back.
        let sent_back_to: HashSet<String> = tr
            .history
            .iter()
            .filter_map(|h| match &h.event {
                runtime::HistoryEvent::SentBack { to, .. } => Some(to.clone()),
                _ => None,
            })
            .collect();
        batch.history = tr.history.into_iter().map(|h| (inst.id, h)).collect();
        let mut retried = HashSet::new();
        let mut enqueue = Vec::new();
        let mut dequeue = Vec::new();
        let mut task_cache: HashMap<String, Task> = HashMap::new();
        let mut tasks_opened: i64 = 0;
        let mut load_task = |id: &str, batch: &Batch| -> Result<Option<Task>, StoreError> {
            if let Some(t) = batch.tasks.iter().rev().find(|(_, t)| t.id == id) {
                return Ok(Some(t.1.clone()));
            }
            if let Some(t) = task_cache.get(id) {
                return Ok(Some(t.clone()));
            }
            let t = store.task(id)?;
            if let Some(t) = &t {
                task_cache.insert(id.to_string(), t.clone());
            }
            Ok(t)
        };
        for c in tr.commands {
            match c {
                Command::OpenTask(t) => {
                    tasks_opened += 1;
                    for j in self.notifications(&t, sent_back_to.contains(&t.node), now) {
                        enqueue.push((j.due, j.id.clone()));
                        batch.jobs_put.push((None, j));
                    }
                    batch.tasks.push((None, t))
                }
                Command::AssignTask { task, assignee } => {
                    if let Some(old) = load_task(&task, &batch)? {
                        let new = Task { assignee, ..old.clone() };
                        batch.tasks.push((Some(old), new));
                    }
                }
                Command::CloseTask { task, status, by, outcome } => {
                    if let Some(old) = load_task(&task, &batch)? {
                        tasks_opened -= i64::from(old.status == TaskStatus::Open);
                        let new = Task { status, completed_by: by, completed_at: Some(now), outcome, ..old.clone() };
                        batch.tasks.push((Some(old), new));
                    }
                }
                Command::ScheduleJob(mut j) => {
                    if let JobKind::Connector { idempotency_key, .. } = &mut j.kind {
                        // Unique forever: `<incarnation>/<instance>/<node>/<seq>`.
                        *idempotency_key = format!("{}/{idempotency_key}", store.incarnation());
                    }
                    enqueue.push((j.due, j.id.clone()));
                    batch.jobs_put.push((None, j));
                }
                Command::RetryJob { job, due, attempt } => {
                    if let Some(old) = store.job(&job)? {
                        retried.insert(job.clone());
                        dequeue.push((old.due, old.id.clone()));
                        enqueue.push((due, job.clone()));
                        let new = Job { due, attempt, ..old.clone() };
                        batch.jobs_put.push((Some(old), new));
                    }
                }
                Command::CancelJob { job } => {
                    if let Some(pos) = batch.jobs_put.iter().position(|(old, j)| old.is_none() && j.id == job) {
                        // Scheduled and withdrawn by one event (a branch ended by an error
                        // thrown in the same step): never stored, never run.
                        batch.jobs_put.remove(pos);
                        enqueue.retain(|(_, id)| *id != job);
                    } else if let Some(old) = store.job(&job)? {
                        dequeue.push((old.due, old.id.clone()));
                        batch.jobs_delete.push(old);
                    }
                }
                Command::Subscribe { token, node, name, key } => {
                    waits.push((name.clone(), key.clone()));
                    batch.subscriptions_put.push(Subscription {
                        name,
                        key,
                        instance: inst.id,
                        token,
                        process: inst.process.clone(),
                        node,
                    });
                }
                Command::CancelChild { child } => {
                    // Durable: the cancel reaches the child even if the engine stops now.
                    let j = crate::calls::cancel_job(child, now);
                    enqueue.push((j.due, j.id.clone()));
                    batch.jobs_put.push((None, j));
                }
                Command::Unsubscribe { token, name, key } => {
                    let same = |s: &Subscription| s.token == token && s.name == name && s.key == key;
                    if let Some(pos) = batch.subscriptions_put.iter().position(same) {
                        // Subscribed and withdrawn by one event (a fork joined or ended in
                        // the step that armed its message boundary): never stored. The
                        // store applies deletes before puts, so both would leave it behind.
                        batch.subscriptions_put.remove(pos);
                        continue;
                    }
                    batch.subscriptions_delete.push(Subscription {
                        name,
                        key,
                        instance: inst.id,
                        token,
                        process: inst.process.clone(),
                        node: String::new(),
                    });
                }
            }
        }
        if let Some(job) = consumed_job.filter(|j| !retried.contains(j)) {
            if let Some(old) = store.job(&job)? {
                dequeue.push((old.due, old.id.clone()));
                batch.jobs_delete.push(old);
            }
        }
        Ok(Prepared { batch, enqueue, dequeue, waits, tasks_opened })
    }

    /// Commit prepared writes (of one instance, or of a caller and the instance it
    /// calls) and `extra` as one batch; then put new jobs on the due window.
    pub(crate) fn commit_parts(&self, parts: Vec<Prepared>, extra: Batch) -> Result<NewWaits, EngineError> {
        let store = &self.inner.store;
        let mut batch = Batch::default();
        let (mut enqueue, mut dequeue, mut waits, mut tasks_opened) = (Vec::new(), Vec::new(), NewWaits::new(), 0);
        for p in parts {
            batch.extend(p.batch);
            enqueue.extend(p.enqueue);
            dequeue.extend(p.dequeue);
            waits.extend(p.waits);
            tasks_opened += p.tasks_opened;
        }
        for j in &extra.jobs_put {
            enqueue.push((j.1.due, j.1.id.clone()));
            if let Some(old) = &j.0 {
                dequeue.push((old.due, old.id.clone()));
            }
        }
        for j in &extra.jobs_delete {
            dequeue.push((j.due, j.id.clone()));
        }
        batch.extend(extra);
        let hints = crate::fair::hints_of(&batch.jobs_put, self.now(), |j| match &j.kind {
            JobKind::Connector { connector, .. } => self.connectors().is_external(connector),
            _ => false,
        });
        // Derived before the batch moves into the store, sent only once it is
        // durable; skipped when nobody listens.
        let events = if self.inner.events.receiver_count() > 0 { events::of_batch(&batch) } else { Vec::new() };
        let t = Instant::now();
        store.commit(batch)?;
        self.inner.stats.record_commit(t.elapsed());
        for e in events {
            // An error only means every receiver went away meanwhile.
            let _ = self.inner.events.send(e);
        }
        self.inner.stats.tasks_open.fetch_add(tasks_opened, Ordering::Relaxed);
        if !hints.is_empty() {
            let mut ready = self.inner.ready.lock().expect("ready lock");
            for (id, process, priority, due) in hints {
                ready.hint(id, process, priority, due);
            }
        }
        self.enqueue(enqueue, dequeue);
        Ok(waits)
    }

    /// After a commit: put new jobs on the due window and drop removed ones.
    pub(crate) fn enqueue(&self, enqueue: Vec<(DateTime<Utc>, String)>, dequeue: Vec<(DateTime<Utc>, String)>) {
        if enqueue.is_empty() && dequeue.is_empty() {
            return;
        }
        let mut q = self.inner.queue.lock().expect("queue lock");
        let mut ready = self.inner.ready.lock().expect("ready lock");
        for (due, id) in dequeue {
            q.remove(&due_entry(due, &id));
            ready.remove(&id);
        }
        drop(ready);
        for (due, id) in enqueue {
            q.insert(due_entry(due, &id));
        }
        drop(q);
        self.inner.wake.notify_one();
    }

    fn task_event(&self, task: &str, event: Event) -> Result<Instance, EngineError> {
        let op = match &event {
            Event::Claim { .. } => "claim",
            Event::Unclaim { .. } => "unclaim",
            Event::Complete { .. } => "complete",
            Event::Assign { .. } => "assign",
            Event::TaskError { .. } => "fail_task",
            _ => "task_event",
        };
        let span = crate::spans::call(op);
        span.record("task", task);
        let _span = span.entered();
        let t = self.inner.store.task(task)?.ok_or_else(|| EngineError::UnknownTask(task.to_string()))?;
        tracing::Span::current().record("node", t.node.as_str()); // instance and process: by handle
        self.handle(t.instance, event)
    }

    /// `user` takes open task `task`: it leaves the others' inboxes. Claiming a task
    /// one already holds changes nothing; a task someone else holds is a conflict.
    ///
    /// Permissions: the engine does not check that `user` may work the task (its
    /// lane's groups); the caller does, with [`crate::may_work`] (see
    /// [`crate::permissions`]). Blocks on the disk until the commit is durable.
    pub fn claim(&self, task: &str, user: &str) -> Result<Instance, EngineError> {
        self.task_event(task, Event::Claim { task: task.into(), user: user.into() })
    }

    /// `user` gives task `task` back to its groups; `force` (an administrator): whoever
    /// holds it. A task held by someone else without `force` is a conflict.
    pub fn unclaim(&self, task: &str, user: &str, force: bool) -> Result<Instance, EngineError> {
        self.task_event(task, Event::Unclaim { task: task.into(), user: user.into(), force })
    }

    /// `user` completes task `task` with form `data` and `outcome` (the way on, or
    /// sending it back); the instance runs on to its next waits before this returns.
    /// Data is checked against the task's form (a 422 with every field error).
    ///
    /// Permissions: only the assignee, when the task is claimed, is checked (anyone
    /// else: [`EngineError::Conflict`]). An unclaimed task can be completed by any
    /// `user`: check [`crate::may_work`] first ([`crate::permissions`]). Blocks on
    /// the disk until the commit is durable.
    pub fn complete(&self, task: &str, user: &str, data: Vars, outcome: Outcome) -> Result<Instance, EngineError> {
        self.check_task_files(task, &data)?;
        self.task_event(task, Event::Complete { task: task.into(), user: user.into(), data, outcome })
    }

    /// Give an open task to `assignee` (`None`: nobody), whoever holds it; `by` is
    /// recorded in the history. Permission checks are the caller's.
    pub fn assign(&self, task: &str, assignee: Option<&str>, by: &str) -> Result<Instance, EngineError> {
        let event = Event::Assign { task: task.into(), assignee: assignee.map(Into::into), by: by.into() };
        self.task_event(task, event)
    }

    /// End a task with business error `code`: an error boundary of the task (or of a
    /// fork around it) takes over. Refused (422) when nothing would catch it.
    pub fn fail_task(&self, task: &str, user: &str, code: &str, message: &str) -> Result<Instance, EngineError> {
        let event =
            Event::TaskError { task: task.into(), user: user.into(), code: code.into(), message: message.into() };
        self.task_event(task, event)
    }

    /// Cancel instance `id` (its tasks close, its jobs are dropped); `by` and
    /// `reason` go to the history. Permission checks are the caller's.
    pub fn cancel(&self, id: InstanceId, by: &str, reason: &str) -> Result<Instance, EngineError> {
        let _span = crate::spans::call("cancel").entered();
        self.handle(id, Event::Cancel { by: by.into(), reason: reason.into() })
    }

    /// Run the step of incident `incident` again, after writing `vars` (e.g. a
    /// corrected address); the incident is resolved when the step is started again.
    pub fn retry_incident(&self, id: InstanceId, incident: u32, vars: Vars, by: &str) -> Result<Instance, EngineError> {
        let _span = crate::spans::call("retry_incident").entered();
        self.handle(id, Event::RetryIncident { incident, vars, by: by.into() })
    }

    /// Resolve an incident by hand: the operator did the failed step outside the
    /// engine. `vars` are written (type-checked) and the token moves on along the
    /// node's `next`, as if the step had succeeded; an error end's token just ends.
    /// Gateways and joins cannot be skipped (retry them instead).
    pub fn resolve_incident(
        &self,
        id: InstanceId,
        incident: u32,
        vars: Vars,
        by: &str,
    ) -> Result<Instance, EngineError> {
        let _span = crate::spans::call("resolve_incident").entered();
        self.handle(id, Event::ResolveIncident { incident, vars, by: by.into() })
    }

    /// Report a job's result. A result for an attempt that is no longer awaited
    /// (already reported, cancelled, retried since) is refused as a conflict.
    pub fn finish_job(&self, job: &Job, result: Result<Value, Failure>) -> Result<Instance, EngineError> {
        let span = crate::spans::call("finish_job");
        span.record("node", job.node.as_str());
        let _span = span.entered();
        let current = self.inner.store.job(&job.id)?;
        if current.as_ref().is_none_or(|c| c.attempt != job.attempt) {
            return Err(EngineError::Conflict(Rejection::StaleJob(job.id.clone())));
        }
        let event = match result {
            Ok(output) => Event::JobDone { job: job.id.clone(), output },
            Err(failure) => Event::JobFailed { job: job.id.clone(), failure },
        };
        self.handle(job.instance, event)
    }

    /// Instance `id` as stored now. Blocks on the store.
    pub fn instance(&self, id: InstanceId) -> Result<Instance, EngineError> {
        self.inner.store.instance(id)?.ok_or(EngineError::UnknownInstance(id))
    }

    /// Instances passing `filter`, in id order. Blocks on the store.
    pub fn instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>, EngineError> {
        Ok(self.inner.store.instances(filter)?)
    }

    /// The history of instance `id`, oldest first. Blocks on the store.
    pub fn history(&self, id: InstanceId) -> Result<Vec<runtime::HistoryEntry>, EngineError> {
        Ok(self.inner.store.history(id)?)
    }

    /// One task; `overdue` is computed against the engine clock.
    pub fn task(&self, id: &str) -> Result<Task, EngineError> {
        let mut t = self.inner.store.task(id)?.ok_or_else(|| EngineError::UnknownTask(id.to_string()))?;
        t.overdue = is_overdue(&t, self.now());
        Ok(t)
    }

    /// Open tasks, with `overdue` set (and filtered on, when the query asks).
    pub fn tasks(&self, q: &TaskQuery) -> Result<Vec<Task>, EngineError> {
        if crate::task_order::needs_engine(q) {
            return crate::task_order::tasks(self, q);
        }
        let now = self.now();
        let unfiltered =
            TaskQuery { overdue: None, limit: if q.overdue.is_some() { None } else { q.limit }, ..q.clone() };
        let mut tasks = self.inner.store.open_tasks(&unfiltered)?;
        for t in &mut tasks {
            t.overdue = is_overdue(t, now);
        }
        if let Some(o) = q.overdue {
            tasks.retain(|t| t.overdue == o);
            tasks.truncate(q.limit.unwrap_or(usize::MAX));
        }
        Ok(tasks)
    }

    /// Jobs due at `now` or earlier, taken off the queue (the caller runs them), at
    /// most `max`, in fair turns per process ([`crate::fair`]).
    pub(crate) fn take_due(&self, now: DateTime<Utc>, max: usize) -> Vec<String> {
        if max == 0 {
            return Vec::new();
        }
        self.stage_due(now);
        let mut ready = self.inner.ready.lock().expect("ready lock");
        std::iter::from_fn(|| ready.pop()).take(max).map(|(_, id)| id).collect()
    }

    /// Move due jobs from the window to the fair queue while it has room, reading
    /// each job's process and priority; jobs of external connectors go to the
    /// workers' pool instead. At most [`STAGE_BUDGET`] per call, so that a burst is
    /// read a slice at a time between runs instead of all before the first.
    fn stage_due(&self, now: DateTime<Utc>) {
        let now_ms = now.timestamp_millis();
        for _ in 0..STAGE_BUDGET {
            if self.inner.ready.lock().expect("ready lock").is_full() {
                return;
            }
            if let Err(e) = self.refill_queue() {
                tracing::error!(error = %e, "could not load due jobs from the store");
                return;
            }
            let mut q = self.inner.queue.lock().expect("queue lock");
            let entry = match q.first() {
                Some((due, _)) if *due <= now_ms => q.pop_first().expect("non-empty"),
                _ => return,
            };
            drop(q);
            let hint = self.inner.ready.lock().expect("ready lock").take_hint(&entry);
            if let Some((process, priority)) = hint {
                // Jobs of external connectors are never hinted: they go by the store.
                self.inner.ready.lock().expect("ready lock").push(&process, priority, entry);
                continue;
            }
            let job = match self.inner.store.job(&entry.1) {
                Ok(Some(job)) => job,
                // Gone: done or cancelled meanwhile.
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(job = %entry.1, error = %e, "could not read a due job; will try again");
                    self.requeue(now + chrono::Duration::seconds(5), entry.1);
                    return;
                }
            };
            if due_entry(job.due, &job.id) != entry && job.due.timestamp_millis() > now_ms {
                // Moved to a later time (a retry) since it was queued: its new entry waits.
                continue;
            }
            if self.offer_job_to_workers(&entry, &job) {
                continue;
            }
            let mut ready = self.inner.ready.lock().expect("ready lock");
            ready.push(&job.process, job.priority, entry);
        }
    }

    /// Count a start of job `id` in the store, durably, before running it. `None`:
    /// do not run it: it is gone, or it was started [`EngineBuilder::max_job_starts`] times already
    /// without an outcome and is now an incident.
    pub(crate) fn begin_run(&self, id: &str) -> Result<Option<Job>, EngineError> {
        let Some(job) = self.inner.store.job(id)? else { return Ok(None) };
        // The lock every other writer of this job record holds.
        let shard = match &job.kind {
            // Only removes a buffered message, runs no process code: not counted.
            // Several nodes: leased all the same, so that one node expires it.
            JobKind::MessageExpiry { .. } if self.inner.store.shared() => {
                return Ok(self.inner.store.count_start(id)?.map(|(job, _)| job))
            }
            JobKind::MessageExpiry { .. } => return Ok(Some(job)),
            JobKind::StartTimer { process } => lock_index(("deploy", process)),
            JobKind::Connector { .. }
            | JobKind::Timer
            | JobKind::CallStart { .. }
            | JobKind::CallEnd { .. }
            | JobKind::CallCancel => lock_index(job.instance),
        };
        let guard = self.inner.locks[shard].lock().expect("lock");
        let Some((job, starts)) = self.inner.store.count_start(id)? else { return Ok(None) };
        drop(guard);
        if starts <= self.inner.max_job_starts {
            return Ok(Some(job));
        }
        self.give_up(&job, starts - 1)?;
        Ok(None)
    }

    /// A job that stopped the engine every time it ran: an incident on its token
    /// (a scheduled start skips to its next time).
    fn give_up(&self, job: &Job, starts: u32) -> Result<(), EngineError> {
        tracing::error!(job = %job.id, instance = job.instance, starts, "a job was started again and again without finishing; not running it again");
        let message = format!(
            "job {} was started {starts} times without finishing: the engine stopped while running it each time \
             (a crash, out of memory?), so it is not run again by itself; retry the incident to run the step once more",
            job.id
        );
        if crate::notify::is_notification(&job.id) {
            // A notification is nobody's step: dropped, never an incident.
            return self.drop_notification(job);
        }
        let culprit = match &job.kind {
            JobKind::Connector { .. } => Culprit::Job(job.id.clone()),
            JobKind::Timer => Culprit::Timer(job.id.clone()),
            JobKind::StartTimer { process } => return self.skip_start(job, process),
            JobKind::MessageExpiry { .. } => return Ok(()),
            JobKind::CallStart { .. } => Culprit::Call(job.id.clone()),
            JobKind::CallEnd { child, .. } => Culprit::Child(*child),
            JobKind::CallCancel => {
                // The called instance stays as it is; an operator cancels it by hand.
                self.inner.store.commit(Batch { jobs_delete: vec![job.clone()], ..Batch::default() })?;
                return Ok(());
            }
        };
        if self.raise_incident(job.instance, &culprit, message, Some(job.id.clone()))?.is_none() {
            // Nobody waits for it any more: drop the orphan.
            self.inner.store.commit(Batch { jobs_delete: vec![job.clone()], ..Batch::default() })?;
        }
        Ok(())
    }

    /// Put a job back on the queue (after a run that could not report).
    pub(crate) fn requeue(&self, due: DateTime<Utc>, id: String) {
        self.inner.queue.lock().expect("queue lock").insert(due_entry(due, &id));
        self.inner.wake.notify_one();
    }

    pub(crate) fn next_due(&self) -> Option<DateTime<Utc>> {
        if let Err(e) = self.refill_queue() {
            tracing::error!(error = %e, "could not load due jobs from the store");
        }
        let q = self.inner.queue.lock().expect("queue lock");
        let ready = self.inner.ready.lock().expect("ready lock").earliest();
        let first = q.first().map(|(ms, _)| *ms);
        first.into_iter().chain(ready).min().and_then(DateTime::from_timestamp_millis)
    }

    pub(crate) fn queued(&self) -> usize {
        let q = self.inner.queue.lock().expect("queue lock");
        q.len() + self.inner.ready.lock().expect("ready lock").len()
    }

    pub(crate) async fn woken(&self) {
        self.inner.wake.notified().await
    }
}

/// After every step in debug builds: the instance is still consistent
/// ([`Instance::check_invariants`]). Release builds skip it.
pub(crate) fn debug_assert_invariants(p: &Process, inst: &Instance) {
    if cfg!(debug_assertions) {
        if let Err(e) = inst.check_invariants(p) {
            panic!("invariant broken after a step: {e}\n{inst:#?}");
        }
    }
}

pub(crate) fn is_overdue(t: &Task, now: DateTime<Utc>) -> bool {
    t.status == runtime::TaskStatus::Open && t.due.is_some_and(|d| d < now)
}

#[cfg(test)]
mod error_tests {
    use crate::store::StoreError;
    use crate::EngineError;

    /// Regression: `Store(#[from])` with `#[error("{0}")]` was both the message and
    /// its source, so an error chain (anyhow's `{:#}`) printed it twice.
    #[test]
    fn wrapped_store_errors_print_their_message_once_in_a_chain() {
        let e = EngineError::from(StoreError::Io("disk full".into()));
        let mut chain = vec![e.to_string()];
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push(s.to_string());
            source = s.source();
        }
        assert_eq!(chain, ["storage I/O failed: disk full"]);
    }

    /// Regression: `BlobError::Io(#[from])` with `"blob store: {0}"` printed the
    /// I/O error twice in a chain (once in the message, once as the source).
    #[test]
    fn blob_io_errors_print_their_message_once_in_a_chain() {
        let e = EngineError::from(crate::blobs::BlobError::from(std::io::Error::other("disk full")));
        let mut chain = vec![e.to_string()];
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push(s.to_string());
            source = s.source();
        }
        assert_eq!(chain, ["blob store: disk full"]);
    }
}
