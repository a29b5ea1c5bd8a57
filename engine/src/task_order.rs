//! Task lists the store's indexes do not answer: sorted by priority, or filtered by
//! a least priority. The store's index is by group and due date, so such a list
//! reads every open task the query's groups may see, then filters, sorts and pages
//! in memory: O(open tasks of those groups) per page. That is fine for an inbox
//! (thousands of tasks); an index by priority would double every task write.

use crate::engine::{is_overdue, Engine, EngineError};
use crate::runtime::Task;
use crate::store::{keys_due_ms, TaskQuery, TaskSort};
use std::cmp::Reverse;

/// Whether `q` needs this module rather than the store's order.
pub(crate) fn needs_engine(q: &TaskQuery) -> bool {
    q.sort == TaskSort::Priority || q.min_priority.is_some()
}

/// The sort key of a task sorted by priority: highest first, then due (undated last), then id.
fn priority_key(priority: u8, due_ms: u64, id: &str) -> (Reverse<u8>, u64, &str) {
    (Reverse(priority), due_ms, id)
}

pub(crate) fn tasks(engine: &Engine, q: &TaskQuery) -> Result<Vec<Task>, EngineError> {
    let now = engine.now();
    let unpaged = TaskQuery {
        overdue: None,
        limit: None,
        min_priority: None,
        sort: TaskSort::Due,
        after: if q.sort == TaskSort::Due { q.after.clone() } else { None },
        ..q.clone()
    };
    let mut tasks = engine.store().open_tasks(&unpaged)?;
    for t in &mut tasks {
        t.overdue = is_overdue(t, now);
    }
    tasks.retain(|t| q.overdue.is_none_or(|o| t.overdue == o) && q.min_priority.is_none_or(|m| t.priority >= m));
    if q.sort == TaskSort::Priority {
        tasks.sort_by(|a, b| {
            priority_key(a.priority, keys_due_ms(a.due), &a.id).cmp(&priority_key(
                b.priority,
                keys_due_ms(b.due),
                &b.id,
            ))
        });
        if let Some(c) = &q.after {
            let after = priority_key(c.priority.unwrap_or(u8::MAX), keys_due_ms(c.due), &c.id);
            tasks.retain(|t| priority_key(t.priority, keys_due_ms(t.due), &t.id) > after);
        }
    }
    tasks.truncate(q.limit.unwrap_or(usize::MAX));
    Ok(tasks)
}
