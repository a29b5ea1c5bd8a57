//! `priority:` of user tasks, service tasks and processes: an integer from 0 to
//! 100, higher first, 50 when absent.
//!
//! A literal (`priority: 80`, or `"80"`) is checked at deploy (`bad-priority`, with
//! its line). An expression is evaluated when the task opens or the call is
//! scheduled; a value that is not an integer in 0–100 is an incident on that token,
//! never clamped: a silently clamped priority would hide a wrong expression (a
//! score of 0–1000, a string) behind plausible ordering.

use crate::expr::{Env, Expr};
use serde_json::Value;

/// Lowest priority.
pub const MIN: u8 = 0;
/// Highest priority.
pub const MAX: u8 = 100;
/// The priority of a task, job or timer that sets none.
pub const DEFAULT: u8 = 50;

/// A compiled `priority:`.
#[derive(Debug, Clone)]
pub enum Priority {
    Fixed(u8),
    Expr(Expr),
}

impl Priority {
    /// The priority now: a fixed one, or the expression's value checked.
    pub fn eval(&self, env: &Env<'_>) -> Result<u8, String> {
        match self {
            Priority::Fixed(p) => Ok(*p),
            Priority::Expr(e) => {
                let v = e.eval(env).map_err(|err| format!("priority `{}` failed: {err}", e.source.trim()))?;
                of_value(&v).map_err(|why| format!("priority `{}` {why}", e.source.trim()))
            }
        }
    }
}

/// An integer in 0–100, or why not (as the end of a sentence starting with what).
pub fn of_value(v: &Value) -> Result<u8, String> {
    match v.as_i64() {
        Some(n) if (i64::from(MIN)..=i64::from(MAX)).contains(&n) => Ok(n as u8),
        Some(n) => Err(format!("gave {n}, outside {MIN}–{MAX}")),
        None => Err(format!("gave {v}, not an integer from {MIN} to {MAX}")),
    }
}

/// A literal written in YAML: an integer, or a string holding only one.
pub fn literal(v: &Value) -> Option<Result<u8, String>> {
    match v {
        Value::Number(_) => Some(of_value(v)),
        Value::String(s) => s.trim().parse::<i64>().ok().map(|n| of_value(&Value::from(n))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_in_range_only() {
        assert_eq!(literal(&Value::from(0)), Some(Ok(0)));
        assert_eq!(literal(&Value::from(100)), Some(Ok(100)));
        assert_eq!(literal(&Value::from(" 80 ")), Some(Ok(80)));
        assert!(literal(&Value::from(101)).unwrap().is_err());
        assert!(literal(&Value::from(-1)).unwrap().is_err());
        assert!(literal(&Value::from(2.5)).unwrap().is_err());
        assert!(literal(&Value::from("urgent ? 90 : 50")).is_none(), "an expression");
        assert!(literal(&Value::Bool(true)).is_none());
    }
}
