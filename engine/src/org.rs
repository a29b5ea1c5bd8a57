//! The org chart at work: the engine holds the loaded [`Org`] (set by the server
//! from the org file, replaced whole on reload or by the admin API) and runs
//! every step inside the [`Ambient`] it makes of it: the org read on the event's
//! date in the process's zone, the process's company days off, and the proxy
//! acting in the event (代理承認, 代理申請).
//!
//! A replaced org applies to tasks that open afterwards; open tasks keep who
//! they were given to (the assignee is stored on the token).

pub use nagare_core::org::*;

use crate::ambient::{self, Ambient};
use crate::engine::{Engine, EngineError, StartOptions};
use crate::expr::Vars;
use crate::process::Process;
use crate::runtime::{Instance, Outcome};
use chrono::{DateTime, Utc};
use std::sync::{Arc, PoisonError};

impl Engine {
    /// Put `org` in force for tasks that open from now on.
    pub fn set_org(&self, org: Org) {
        *self.inner.org.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(org);
    }

    /// The org in force.
    pub fn org(&self) -> Arc<Org> {
        self.inner.org.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The ambient a step of `p` at `now` runs in; a proxy already in force on
    /// this thread (set by [`Engine::complete_for`], [`Engine::start_for`]) stays.
    pub(crate) fn ambient_for(&self, p: &Process, now: DateTime<Utc>) -> Ambient {
        let org = self.org();
        let days_off = org.days_off_for(&p.id);
        let on = Some(now.with_timezone(&p.time_zone).date_naive());
        Ambient { org, days_off, on, proxy: ambient::proxy() }
    }

    /// Complete `task` in `principal`'s name, done by their proxy `proxy`: the
    /// task is checked and closed as the principal's, and every history line of
    /// the event names both (`user: principal, proxy: proxy`). Whether the proxy
    /// relation allows it is the caller's to check.
    pub fn complete_for(
        &self,
        task: &str,
        principal: &str,
        proxy: &str,
        data: Vars,
        outcome: Outcome,
    ) -> Result<Instance, EngineError> {
        ambient::within(as_proxy(proxy), || self.complete(task, principal, data, outcome))
    }

    /// Claim `task` for `principal`, done by their proxy.
    pub fn claim_for(&self, task: &str, principal: &str, proxy: &str) -> Result<Instance, EngineError> {
        ambient::within(as_proxy(proxy), || self.claim(task, principal))
    }

    /// Start `process` on behalf of `opts.by` (代理申請), filed by `proxy`: the
    /// instance's `started_by` is the principal, the `started` line names both.
    pub fn start_for(
        &self,
        process: &str,
        vars: Vars,
        opts: StartOptions,
        proxy: &str,
    ) -> Result<Instance, EngineError> {
        ambient::within(as_proxy(proxy), || self.start(process, vars, opts))
    }
}

fn as_proxy(proxy: &str) -> Ambient {
    Ambient { proxy: Some(proxy.to_string()), ..Ambient::default() }
}
