//! What a step sees of the world besides the instance: the org chart, the
//! process's company days off, the date the org is read on, and the proxy acting
//! for the user of this event.
//!
//! The engine builds an [`Ambient`] per event from data it holds (the loaded org
//! file, its clock) and runs `step`/`start` inside [`within`]. The expression
//! helpers (`manager_of`, `add_business_days`, ...) are registered once on the
//! shared rhai engine and get no per-call context, so they read it here, from a
//! thread-local set for the duration of that one call (like `expr::limits`).
//! No IO: the same ambient and inputs give the same transition. Outside
//! [`within`] (deploy-time checks, the CLI) the org is empty and there are no
//! company days off.

use crate::org::Org;
use chrono::NaiveDate;
use std::cell::RefCell;
use std::sync::Arc;

/// The world one event runs in.
#[derive(Debug, Clone, Default)]
pub struct Ambient {
    pub org: Arc<Org>,
    /// The company days off of the running process's calendar.
    pub days_off: Arc<[NaiveDate]>,
    /// The date the org is read on (the event's time in the process's zone):
    /// effective dates of posts are compared with it.
    pub on: Option<NaiveDate>,
    /// A proxy (代理人) acting for the user of this event: recorded beside the
    /// user on each history line that names one.
    pub proxy: Option<String>,
}

thread_local! {
    static CURRENT: RefCell<Option<Ambient>> = const { RefCell::new(None) };
}

/// Run `f` with `ambient` in force (the previous one is restored after, also on
/// a panic).
pub fn within<R>(ambient: Ambient, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Ambient>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT.with(|c| c.borrow_mut().replace(ambient));
    let _restore = Restore(prev);
    f()
}

/// Read the ambient in force (the default one outside [`within`]).
pub fn with<R>(f: impl FnOnce(&Ambient) -> R) -> R {
    CURRENT.with(|c| match &*c.borrow() {
        Some(a) => f(a),
        None => f(&Ambient::default()),
    })
}

/// The company days off in force.
pub fn days_off() -> Arc<[NaiveDate]> {
    with(|a| a.days_off.clone())
}

/// The proxy acting in this event, if any.
pub fn proxy() -> Option<String> {
    with(|a| a.proxy.clone())
}
