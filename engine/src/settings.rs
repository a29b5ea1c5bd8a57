//! What administrators change of a deployed process at run time, without a
//! redeploy: its settings (`settings:` in the YAML) and whether its timer start is
//! paused.
//!
//! The changes are one [`ProcessConfig`] record per process id in the store. The
//! engine applies it to every loaded version of the process (a version that does not
//! declare a setting ignores it), so running instances see new setting values from
//! their next step on, and new versions start with the values in force.

use crate::engine::{lock_index, Engine, EngineError};
use crate::expr::Vars;
use crate::process::Process;
use crate::runtime::{FieldError, Rejection};
use crate::store::{Batch, ProcessConfig};
use serde_json::Value;
use std::sync::Arc;

impl Engine {
    /// The stored run-time configuration of `process` (default when never changed).
    pub fn process_config(&self, process: &str) -> Result<ProcessConfig, EngineError> {
        self.latest(process).ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        Ok(self
            .stored_config(process)?
            .unwrap_or_else(|| ProcessConfig { process: process.into(), ..Default::default() }))
    }

    pub(crate) fn stored_config(&self, process: &str) -> Result<Option<ProcessConfig>, EngineError> {
        Ok(self.inner.store.configs()?.into_iter().find(|c| c.process == process))
    }

    /// Change setting values of `process` (`null` restores a default). Every value is
    /// checked against the latest version's declaration; all problems come back at
    /// once (422) and nothing changes.
    pub fn change_settings(&self, process: &str, changes: Vars, by: &str) -> Result<Arc<Process>, EngineError> {
        self.change_config(process, by, |latest, cfg| {
            latest.with_settings(&changes).map_err(|errors| {
                let errors = errors.into_iter().map(|(field, problem)| FieldError { field, problem }).collect();
                EngineError::Rejected(Rejection::InvalidData(errors))
            })?;
            for (name, value) in changes {
                if value.is_null() {
                    cfg.settings.remove(&name);
                } else {
                    cfg.settings.insert(name, value);
                }
            }
            Ok(())
        })
    }

    /// Pause or resume the timer start of `process`: while paused it starts nothing,
    /// and its schedule goes on (no burst of starts on resume).
    pub fn pause_start(&self, process: &str, paused: bool, by: &str) -> Result<Arc<Process>, EngineError> {
        self.change_config(process, by, |_, cfg| {
            cfg.start_paused = paused;
            Ok(())
        })
    }

    fn change_config(
        &self,
        process: &str,
        by: &str,
        change: impl FnOnce(&Process, &mut ProcessConfig) -> Result<(), EngineError>,
    ) -> Result<Arc<Process>, EngineError> {
        // The deploy lock: a deploy in between would miss the change.
        let _guard = self.inner.locks[lock_index(("deploy", process))].lock().expect("lock");
        let latest = self.latest(process).ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        let mut cfg = self.process_config(process)?;
        change(&latest, &mut cfg)?;
        cfg.changed_by = Some(by.to_string());
        cfg.changed_at = Some(self.now());
        self.inner.store.commit(Batch { configs: vec![cfg.clone()], ..Batch::default() })?;
        let mut map = self.inner.processes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(versions) = map.get_mut(process) {
            for v in versions.iter_mut() {
                *v = Arc::new(configured(v, Some(&cfg)));
            }
        }
        tracing::info!(process, by, settings = ?cfg.settings, start_paused = cfg.start_paused, "process configuration changed");
        let now = map.get(process).and_then(|v| v.last().cloned()).expect("the process is loaded");
        Ok(now)
    }
}

/// `p` with `cfg` applied over its declared defaults. A stored value this version
/// does not declare, or declares with another type, is left out (with a warning):
/// the default stays in force for it.
pub(crate) fn configured(p: &Process, cfg: Option<&ProcessConfig>) -> Process {
    let defaults: Vars =
        p.settings.iter().map(|(name, spec)| (name.clone(), spec.default.clone().unwrap_or(Value::Null))).collect();
    let mut out = p.with_settings(&defaults).unwrap_or_else(|_| p.clone());
    out.start_paused = cfg.is_some_and(|c| c.start_paused);
    for (name, value) in cfg.map(|c| &c.settings).into_iter().flatten() {
        if !p.settings.contains_key(name) {
            continue;
        }
        let one: Vars = [(name.clone(), value.clone())].into();
        match out.with_settings(&one) {
            Ok(next) => out = next,
            Err(e) => {
                tracing::warn!(process = %p.id, version = p.version, setting = %name, problem = ?e, "stored setting does not fit this version; its default applies")
            }
        }
    }
    out
}
