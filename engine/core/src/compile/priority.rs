//! `priority:` at deploy: a literal checked for 0–100 with its line, or an
//! expression compiled like any other (see [`crate::priority`]).

use super::Cx;
use crate::priority::{self, Priority};
use serde_json::Value;

const HINT: &str = "write an integer from 0 (lowest) to 100 (highest), or an expression giving one; 50 is the default";

/// The `priority:` at `path`; `None` after reporting why it is unusable.
/// `exprs: false` (the process's own priority) takes literals only.
pub(crate) fn compile_priority(
    cx: &mut Cx<'_>,
    path: &[&str],
    v: &Value,
    names: &[&str],
    exprs: bool,
) -> Option<Priority> {
    match priority::literal(v) {
        Some(Ok(p)) => return Some(Priority::Fixed(p)),
        Some(Err(why)) => {
            cx.err("bad-priority", cx.loc(path), format!("priority {v} is unusable: {why}"), HINT);
            return None;
        }
        None => {}
    }
    match v {
        Value::String(src) if exprs => cx.compile_expr(path, src, names).map(Priority::Expr),
        _ => {
            let what = if exprs { "an integer or an expression" } else { "an integer (no expression here)" };
            cx.err("bad-priority", cx.loc(path), format!("priority {v} is not {what}"), HINT);
            None
        }
    }
}
