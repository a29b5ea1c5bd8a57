//! Org helpers for expressions (`assignee:`, `candidates:`, scripts): they read
//! the org chart in force ([`crate::ambient`]) on the event's date.
//!
//! - `department_of(user)` — the department of the user's main post, or `()`;
//! - `manager_of(user)` — the nearest senior up the tree (vacant levels
//!   skipped), or `()`;
//! - `position_in(department, position)` — the first holder of the position in
//!   the department or, when it is vacant, in the nearest ancestor holding one;
//!   `()` when nobody up to the root does;
//! - `users_in(department)` — everyone with a post (concurrent ones too) in it.
//!
//! A user that is `()` (a start by a timer) gives `()`; a department the org
//! does not have is an error (a typo in the process, or an org file not loaded).

use crate::ambient;
use rhai::{Array, Dynamic, Engine, EvalAltResult};

type Res<T> = Result<T, Box<EvalAltResult>>;

pub(super) fn register(e: &mut Engine) {
    e.register_fn("department_of", |user: Dynamic| -> Res<Dynamic> {
        let Some(user) = user_of(user)? else { return Ok(Dynamic::UNIT) };
        Ok(ambient::with(|a| a.org.department_of(&user, on(a)).map(|d| d.to_string()))
            .map_or(Dynamic::UNIT, Into::into))
    });
    e.register_fn("manager_of", |user: Dynamic| -> Res<Dynamic> {
        let Some(user) = user_of(user)? else { return Ok(Dynamic::UNIT) };
        Ok(ambient::with(|a| a.org.manager_of(&user, on(a)).map(str::to_string)).map_or(Dynamic::UNIT, Into::into))
    });
    e.register_fn("position_in", |dept: Dynamic, position: &str| -> Res<Dynamic> {
        let Some(dept) = user_of(dept)? else { return Ok(Dynamic::UNIT) };
        ambient::with(|a| {
            known(a, &dept)?;
            Ok(a.org.position_in(&dept, position, on(a)).map_or(Dynamic::UNIT, |u| u.to_string().into()))
        })
    });
    e.register_fn("users_in", |dept: &str| -> Res<Array> {
        ambient::with(|a| {
            known(a, dept)?;
            Ok(a.org.users_in(dept, on(a)).into_iter().map(|u| Dynamic::from(u.to_string())).collect())
        })
    });
}

/// The date the org is read on; without one (deploy-time checks), the posts in
/// effect at the earliest date count.
fn on(a: &ambient::Ambient) -> chrono::NaiveDate {
    a.on.unwrap_or(chrono::NaiveDate::MIN)
}

fn known(a: &ambient::Ambient, dept: &str) -> Res<()> {
    if a.org.has_department(dept) {
        return Ok(());
    }
    if a.org.is_empty() {
        return Err(format!("no org file is loaded, so department `{dept}` is unknown").into());
    }
    Err(format!("the org has no department `{dept}`").into())
}

/// A user id or department name given as text; `()` or blank is nobody.
fn user_of(v: Dynamic) -> Res<Option<String>> {
    if v.is_unit() {
        return Ok(None);
    }
    match v.into_immutable_string() {
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(t) => Err(format!("expected a user id or department (text), got {t}").into()),
    }
}
