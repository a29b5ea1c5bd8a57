//! The seam between the engine and the outside world: connectors.
//!
//! A service task names a connector (`kintone.get`, `http.request`, ...). The
//! engine hands it the evaluated input and an idempotency key that stays the same
//! for every attempt of one call, and maps its answer back into variables. The
//! engine itself implements none: they live in `nagare-connectors` or in the
//! embedding app, which registers them by name.

use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One call of a connector.
#[derive(Debug, Clone)]
pub struct Call {
    pub connector: String,
    pub input: Value,
    /// Same for every retry of this call; send it to the service if it dedups.
    pub idempotency_key: String,
    pub instance: u64,
    pub node: String,
    pub attempt: u32,
}

/// How a call failed, which decides what the engine does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// Try again later (timeouts, 5xx, 429, connection refused).
    #[error("{0}")]
    Retryable(String),
    /// Try again, not before `after` (the service's `Retry-After`; the step's
    /// backoff still applies when it is longer).
    #[error("{message}")]
    RetryAfter { message: String, after: std::time::Duration },
    /// The service refused for a business reason the process may handle.
    #[error("[{code}] {message}")]
    Business { code: String, message: String },
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
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>>;
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

/// Connectors by name.
#[derive(Clone, Default)]
pub struct Registry {
    map: BTreeMap<String, Arc<dyn Connector>>,
}

impl Registry {
    pub fn register(&mut self, name: impl Into<String>, c: impl Connector + 'static) {
        self.map.insert(name.into(), Arc::new(c));
    }

    pub fn register_arc(&mut self, name: impl Into<String>, c: Arc<dyn Connector>) {
        self.map.insert(name.into(), c);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Connector>> {
        self.map.get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }
}
