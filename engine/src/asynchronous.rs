//! [`AsyncEngine`]: the engine for async code, which must not block its runtime.
//!
//! Every [`Engine`] call that writes waits for the disk (a lock, then the store's
//! commit and its fsync: about 1 to 10 ms on sled), and reads wait for the store.
//! Called straight from an async task, that stalls every other task of the worker
//! thread. [`AsyncEngine`] runs each call on tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]) and awaits it; the call runs to its end even
//! if the future is dropped, so a commit is never cut in half.

use crate::engine::{Deployed, Engine, EngineError, StartOptions};
use crate::events::EngineEvent;
use crate::expr::Vars;
use crate::messages::{Correlation, MessageOptions};
use crate::runtime::{HistoryEntry, Instance, InstanceId, Outcome, Task};
use crate::store::{InstanceFilter, TaskQuery};
use serde_json::Value;

/// An [`Engine`] whose calls are `async`: each runs on tokio's blocking pool. Cheap
/// to clone; get one with [`Engine::asynchronous`]. Needs a tokio runtime.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use nagare_engine::{Engine, StartOptions};
/// let engine = Engine::in_memory().asynchronous();
/// engine.deploy("hello.yaml", "id: hello\nstart: { next: done }\nnodes:\n  done: { end: }\n").await?;
/// let inst = engine.start("hello", Default::default(), StartOptions::default()).await?;
/// assert!(inst.status.is_finished());
/// # Ok::<(), nagare_engine::EngineError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct AsyncEngine {
    engine: Engine,
}

impl Engine {
    /// This engine for async code: the same engine (shared state), every call run on
    /// tokio's blocking pool.
    pub fn asynchronous(&self) -> AsyncEngine {
        AsyncEngine { engine: self.clone() }
    }
}

impl AsyncEngine {
    /// The blocking engine (for calls this handle does not wrap; from async code,
    /// run them in [`tokio::task::spawn_blocking`]).
    pub fn blocking(&self) -> &Engine {
        &self.engine
    }

    /// Run `f` on the blocking pool. A panic inside becomes [`EngineError::Internal`].
    pub async fn run<T, F>(&self, f: F) -> Result<T, EngineError>
    where
        F: FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
        T: Send + 'static,
    {
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || f(&engine)).await {
            Ok(r) => r,
            Err(e) => Err(EngineError::Internal(format!("an engine call did not finish: {e}"))),
        }
    }

    /// Events from now on ([`Engine::subscribe`]; receiving does not block).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<EngineEvent> {
        self.engine.subscribe()
    }

    /// [`Engine::deploy`].
    pub async fn deploy(&self, file: impl Into<String>, text: impl Into<String>) -> Result<Deployed, EngineError> {
        let (file, text) = (file.into(), text.into());
        self.run(move |e| e.deploy(&file, &text)).await
    }

    /// [`Engine::start`].
    pub async fn start(
        &self,
        process: impl Into<String>,
        vars: Vars,
        opts: StartOptions,
    ) -> Result<Instance, EngineError> {
        let process = process.into();
        self.run(move |e| e.start(&process, vars, opts)).await
    }

    /// [`Engine::claim`].
    pub async fn claim(&self, task: impl Into<String>, user: impl Into<String>) -> Result<Instance, EngineError> {
        let (task, user) = (task.into(), user.into());
        self.run(move |e| e.claim(&task, &user)).await
    }

    /// [`Engine::complete`].
    pub async fn complete(
        &self,
        task: impl Into<String>,
        user: impl Into<String>,
        data: Vars,
        outcome: Outcome,
    ) -> Result<Instance, EngineError> {
        let (task, user) = (task.into(), user.into());
        self.run(move |e| e.complete(&task, &user, data, outcome)).await
    }

    /// [`Engine::cancel`].
    pub async fn cancel(
        &self,
        id: InstanceId,
        by: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<Instance, EngineError> {
        let (by, reason) = (by.into(), reason.into());
        self.run(move |e| e.cancel(id, &by, &reason)).await
    }

    /// [`Engine::correlate`].
    pub async fn correlate(
        &self,
        name: impl Into<String>,
        key: impl Into<String>,
        payload: Value,
        opts: MessageOptions,
    ) -> Result<Correlation, EngineError> {
        let (name, key) = (name.into(), key.into());
        self.run(move |e| e.correlate(&name, &key, payload, &opts)).await
    }

    /// [`Engine::instance`].
    pub async fn instance(&self, id: InstanceId) -> Result<Instance, EngineError> {
        self.run(move |e| e.instance(id)).await
    }

    /// [`Engine::instances`].
    pub async fn instances(&self, filter: InstanceFilter) -> Result<Vec<Instance>, EngineError> {
        self.run(move |e| e.instances(&filter)).await
    }

    /// [`Engine::history`].
    pub async fn history(&self, id: InstanceId) -> Result<Vec<HistoryEntry>, EngineError> {
        self.run(move |e| e.history(id)).await
    }

    /// [`Engine::task`].
    pub async fn task(&self, id: impl Into<String>) -> Result<Task, EngineError> {
        let id = id.into();
        self.run(move |e| e.task(&id)).await
    }

    /// [`Engine::tasks`].
    pub async fn tasks(&self, query: TaskQuery) -> Result<Vec<Task>, EngineError> {
        self.run(move |e| e.tasks(&query)).await
    }
}
