//! `circulate:` — a circulation (回覧): read-only tasks for the users in `to`; the
//! token does not wait for them.
//!
//! Each reader gets a task of their own (assigned to them, no groups, `read_only`),
//! listed in [`Instance::unread`] because no token waits on it. Completing it (with
//! no data) records `task_read` with the reader and the time. An unread task stays
//! in the reader's inbox after the instance completes (a 回覧 is usually read after
//! the decision); cancelling the instance withdraws it.

use super::consensus;
use crate::compile::for_kinds::*;
use crate::model::FieldMode;
use crate::process::*;
use crate::runtime::step::for_kinds::*;
use crate::runtime::step::{FieldError, Outcome, Rejection, Transition};
use crate::Vars;
use chrono::{DateTime, Utc};

pub(crate) const KIND: super::Kind = super::Kind {
    key: "circulate",
    summary:
        "A circulation (回覧): a read-only task for each user in `to`, who acknowledges it; the flow goes on at once.",
    body: "give the read tasks a title: `circulate: 承認済み稟議の回覧`",
    keys: &["lane", "next", "to", "form"],
    no_next: "",
    present: |n| n.circulate.is_some(),
    compile,
};

/// Most readers one circulation hands tasks to (each is a task record and an entry
/// in the instance's state, which is written whole on every commit).
pub const MAX_READERS: usize = 1_000;

/// Most unread tasks one instance holds (a circulation in a loop adds up).
pub const MAX_UNREAD: usize = 10_000;

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n, nm) = (nc.id, nc.n, nc.nm);
    let to = match &n.to {
        Some(users) => compile_users(nc.cx, &["nodes", id, "to"], users, nm.names),
        None => {
            nc.cx.err(
                "missing-users",
                nc.cx.key_loc(&["nodes", id]),
                format!("circulation `{id}` does not say who reads it"),
                "add `to: [suzuki, kato]` or an expression giving a list of user ids, e.g. `to: 経理部員`",
            );
            None
        }
    };
    let mut form = Vec::new();
    for (var, mode) in n.form.iter().flatten() {
        if !nm.vars.contains_key(var) {
            nc.cx.err(
                "undeclared-variable",
                nc.cx.key_loc(&["nodes", id, "form", var]),
                format!("form field `{var}` is not a declared variable"),
                undeclared_hint(var, nm.names),
            );
            nc.ok = false;
        } else if *mode != FieldMode::Readonly {
            nc.cx.err(
                "bad-field-mode",
                nc.cx.loc(&["nodes", id, "form", var]),
                format!("`{var}` on circulation `{id}`: readers only read"),
                format!("write `{var}: readonly`; a step where someone fills in a field is a `user_task`"),
            );
            nc.ok = false;
        } else {
            form.push(FormField { var: var.clone(), mode: *mode });
        }
    }
    let next = nc.next();
    Some(NodeKind::Circulate(CirculateSpec {
        title: n.circulate.clone().unwrap_or_default(),
        to: to?.0,
        form,
        next: next?,
    }))
}

/// Hand a read task to each reader, then move on at once.
pub(crate) fn exec(run: &mut Run<'_>, token: Moving, node: &Node, spec: &CirculateSpec) {
    let p = run.p;
    let readers = match spec.to.eval(&run.env()) {
        Ok(Value::Array(items)) if items.is_empty() => Vec::new(),
        Ok(Value::Array(items)) => match consensus::user_ids(items, "reader") {
            Ok(users) => users,
            Err(msg) => return run.incident(token, format!("`to` of `{}`: {msg}", node.id), None),
        },
        Ok(other) => {
            let msg = format!("`to: {}` gave {other}, not a list of user ids", spec.to.source.trim());
            return run.incident(token, msg, None);
        }
        Err(e) => return run.incident(token, format!("`to: {}` failed: {e}", spec.to.source.trim()), None),
    };
    if readers.len() > MAX_READERS {
        let msg = format!(
            "`to` of `{}` gave {} readers, more than {MAX_READERS}; circulate to a group's representatives",
            node.id,
            readers.len()
        );
        return run.incident(token, msg, None);
    }
    if run.inst.unread.len() + readers.len() > MAX_UNREAD {
        let msg = format!(
            "`{}` would leave more than {MAX_UNREAD} unread circulation tasks on this instance; let them be read first",
            node.id
        );
        return run.incident(token, msg, None);
    }
    let lane = node.lane.clone().unwrap_or_default();
    for user in readers {
        let seq = run.inst.next_seq();
        let task = format!("{}-{}", run.inst.id, seq);
        run.out.commands.push(Command::OpenTask(Task {
            id: task.clone(),
            instance: run.inst.id,
            process: p.id.clone(),
            version: p.version,
            node: node.id.clone(),
            title: spec.title.clone(),
            lane: lane.clone(),
            groups: Vec::new(),
            status: TaskStatus::Open,
            assignee: Some(user.clone()),
            created_at: run.now,
            due: None,
            completed_by: None,
            completed_at: None,
            outcome: None,
            item: None,
            read_only: true,
            overdue: false,
            priority: crate::priority::DEFAULT,
        }));
        run.log(Some(node.id.clone()), None, HistoryEvent::Circulated { task: task.clone(), to: user.clone() });
        run.inst.unread.push(ReadTask { task, node: node.id.clone(), user });
    }
    run.go(token, spec.next);
}

/// Whether `task` is an unread task of a circulation of `inst`.
pub(crate) fn is_unread(inst: &Instance, task: &str) -> bool {
    inst.unread.iter().any(|r| r.task == task)
}

/// The reader acknowledges read task `task` (a completion with no data): recorded
/// in the history with who and when; nothing else moves. Works on a completed
/// instance too.
pub(crate) fn acknowledge(
    inst: &mut Instance,
    task: String,
    user: String,
    data: Vars,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let pos = inst.unread.iter().position(|r| r.task == task).ok_or_else(|| Rejection::TaskNotOpen(task.clone()))?;
    let read = &inst.unread[pos];
    if read.user != user {
        return Err(Rejection::ClaimedByOther { task, assignee: read.user.clone() });
    }
    match &outcome {
        Outcome::Next => {}
        Outcome::Named(n) if n == "read" => {}
        Outcome::Named(n) => {
            return Err(Rejection::UnknownOutcome { task, outcome: n.clone(), allowed: "next, read".into() })
        }
        Outcome::SendBack { .. } => {
            return Err(Rejection::UnknownOutcome { task, outcome: "send_back".into(), allowed: "next, read".into() })
        }
    }
    if !data.is_empty() {
        let errors = data
            .keys()
            .map(|k| FieldError { field: k.clone(), problem: "a read task takes no data (read-only)".into() })
            .collect();
        return Err(Rejection::InvalidData(errors));
    }
    let read = inst.unread.remove(pos);
    let seq = inst.history_len;
    inst.history_len += 1;
    let entry = HistoryEntry {
        seq,
        at: now,
        node: Some(read.node),
        user: Some(user.clone()),
        proxy: None,
        event: HistoryEvent::TaskRead { task: task.clone() },
    };
    let close =
        Command::CloseTask { task, status: TaskStatus::Completed, by: Some(user), outcome: Some("read".into()) };
    Ok(Transition { commands: vec![close], history: vec![entry] })
}

/// The instance is cancelled: its unread tasks are withdrawn.
pub(crate) fn withdraw_unread(run: &mut Run<'_>) {
    for read in std::mem::take(&mut run.inst.unread) {
        run.out.commands.push(Command::CloseTask {
            task: read.task,
            status: TaskStatus::Cancelled,
            by: None,
            outcome: None,
        });
    }
}
