//! Settings a running connector reads on every call, replaceable while it runs.
//!
//! Fixing a wrong credential must not need a restart of a server with instances in
//! flight: the app replaces the settings ([`crate::Connectors::reload`]) and retries
//! the incident, and the next call sees the new values.

use std::sync::{Arc, RwLock};

/// Shared, replaceable settings of one connector instance.
#[derive(Debug)]
pub struct Settings<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Settings<T> {
    fn clone(&self) -> Self {
        Settings(self.0.clone())
    }
}

impl<T> Settings<T> {
    pub fn new(value: T) -> Self {
        Settings(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The settings now (a snapshot: one call uses one version throughout).
    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}
