//! The seam between the engine and the outside world: connectors.
//!
//! A service task names a connector (`kintone.get`, `http.request`, ...). The
//! engine hands it the evaluated input and an idempotency key that stays the same
//! for every attempt of one call, and maps its answer back into variables. The
//! engine itself implements none: they live in `nagare-connectors` or in the
//! embedding app, which registers them by name.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The future a [`Connector`] returns: boxed, so the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One call of a connector.
#[derive(Debug, Clone)]
pub struct Call {
    /// The registered name called (`kintone.get`, `app.rate`).
    pub connector: String,
    /// The step's `with:`, evaluated.
    pub input: Value,
    /// Same for every retry of this call; send it to the service if it dedups.
    pub idempotency_key: String,
    /// The instance whose step this is.
    pub instance: u64,
    /// The service task's node id.
    pub node: String,
    /// Starts at 1; each retry has the next number.
    pub attempt: u32,
}

/// How a call failed, which decides what the engine does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// Try again later (timeouts, 5xx, 429, connection refused).
    #[error("{0}")]
    Retryable(String),
    /// Try again, not before `after` (the service's `Retry-After`; the step's
    /// backoff still applies when it is longer).
    #[error("{message}")]
    RetryAfter {
        /// What went wrong.
        message: String,
        /// The earliest time to try again, from now.
        after: std::time::Duration,
    },
    /// The service refused for a business reason the process may handle.
    #[error("[{code}] {message}")]
    Business {
        /// The error code an error boundary of the step may catch (`HTTP_404`, `not_found`).
        code: String,
        /// What went wrong, for the incident or the process.
        message: String,
    },
    /// Retrying will not help (bad input, bad credentials).
    #[error("{0}")]
    Fatal(String),
}

impl From<ConnectorError> for crate::runtime::Failure {
    fn from(e: ConnectorError) -> Self {
        use crate::runtime::Failure;
        match e {
            ConnectorError::Retryable(message) => Failure::Retryable { message, retry_after_ms: None },
            ConnectorError::RetryAfter { message, after } => Failure::Retryable {
                message,
                retry_after_ms: Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
            },
            ConnectorError::Business { code, message } => Failure::Business { code, message },
            ConnectorError::Fatal(message) => Failure::Fatal { message },
        }
    }
}

/// A service step implementation.
pub trait Connector: Send + Sync {
    /// Run the call. Runs on the executor's tokio runtime; blocking work belongs on
    /// `spawn_blocking`. The error's kind decides retry, error boundary or incident.
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>>;

    /// Problems with a step's `with:` (as written; string values are expressions,
    /// unknown until run time) that can be known at deploy: a designer sees them
    /// with line and column instead of as an incident later. None by default.
    fn check_input(&self, _with: &Value) -> Vec<crate::compile::InputIssue> {
        Vec::new()
    }
}

/// A connector from a plain (synchronous, quick) function.
pub struct FnConnector<F>(pub F);

impl<F> Connector for FnConnector<F>
where
    F: Fn(&Call) -> Result<Value, ConnectorError> + Send + Sync,
{
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>> {
        let out = (self.0)(call);
        Box::pin(async move { out })
    }
}

/// A connector from an async closure: `AsyncFnConnector(|call: Call| async move { ... })`.
/// The closure gets its own copy of the call, so the future may outlive the borrow.
pub struct AsyncFnConnector<F>(pub F);

impl<F, Fut> Connector for AsyncFnConnector<F>
where
    F: Fn(Call) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<Value, ConnectorError>> + Send + 'static,
{
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin((self.0)(call.clone()))
    }
}

/// How a watch `source` names a record: the business key (without generation) of
/// the record whose id is `record_id`, for a process whose watch has `settings`.
/// The kintone connector answers `kintone:<app>:<id>`. An `Err` says why no key
/// can be made (no app configured, not an id).
pub type RecordKeyFn = Arc<dyn Fn(&serde_json::Map<String, Value>, &Value) -> Result<String, String> + Send + Sync>;

/// Connectors by name: in-process ones, and names served by external workers.
#[derive(Clone, Default)]
pub struct Registry {
    map: BTreeMap<String, Arc<dyn Connector>>,
    /// Served out of process: the executor leaves their jobs to workers that
    /// activate them over the API ([`crate::workers`]).
    external: BTreeSet<String>,
    /// Record keys of watch sources, by source (connector instance) name.
    record_keys: BTreeMap<String, RecordKeyFn>,
}

impl Registry {
    /// Register connector `c` as `name`, replacing one of the same name.
    pub fn register(&mut self, name: impl Into<String>, c: impl Connector + 'static) {
        self.register_arc(name, Arc::new(c));
    }

    /// Like [`Registry::register`], for a connector already shared.
    pub fn register_arc(&mut self, name: impl Into<String>, c: Arc<dyn Connector>) {
        let name = name.into();
        self.external.remove(&name);
        self.map.insert(name, c);
    }

    /// Declare `name` as served by external workers: processes may use it, and its
    /// jobs wait for a worker to activate them instead of running in process.
    /// Replaces an in-process connector of the same name.
    pub fn register_external(&mut self, name: impl Into<String>) {
        let name = name.into();
        self.map.remove(&name);
        self.external.insert(name);
    }

    /// How watch source `source` keys its records: starts of a watched process, by
    /// hand too, take that key ([`crate::records`]).
    pub fn register_record_key(&mut self, source: impl Into<String>, f: RecordKeyFn) {
        self.record_keys.insert(source.into(), f);
    }

    /// The record key function of watch source `source`, if one is registered.
    pub fn record_key(&self, source: &str) -> Option<RecordKeyFn> {
        self.record_keys.get(source).cloned()
    }

    /// Whether `name` is served by external workers ([`Registry::register_external`]).
    pub fn is_external(&self, name: &str) -> bool {
        self.external.contains(name)
    }

    /// Whether any connector is served by external workers.
    pub fn has_external(&self) -> bool {
        !self.external.is_empty()
    }

    /// Add every connector (in-process and external) of `other`, replacing same names.
    pub fn merge(&mut self, other: &Registry) {
        for (name, c) in &other.map {
            self.register_arc(name.clone(), c.clone());
        }
        for name in &other.external {
            self.register_external(name.clone());
        }
        for (source, f) in &other.record_keys {
            self.record_keys.insert(source.clone(), f.clone());
        }
    }

    /// The in-process connector registered as `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Connector>> {
        self.map.get(name).cloned()
    }

    /// The deploy-time input checks of the registered connectors.
    pub fn input_check(&self) -> crate::compile::InputCheck {
        let map = self.map.clone();
        crate::compile::InputCheck(Arc::new(move |name: &str, with: &Value| {
            map.get(name).map(|c| c.check_input(with)).unwrap_or_default()
        }))
    }

    /// Every name a process may use: in-process and external, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.map.keys().chain(&self.external).cloned().collect();
        names.sort();
        names
    }
}
