//! Task commands: `tasks`, `claim`, `complete`.

use super::instances::{report, task_table};
use super::{explain, open_existing, parse_vars, run_jobs};
use crate::output::Out;
use anyhow::anyhow;
use clap::Args;
use nagare_engine::runtime::Outcome;
use nagare_engine::store::TaskQuery;
use std::path::Path;
use std::process::ExitCode;

#[derive(Args)]
pub struct ListArgs {
    /// Only tasks of this lane.
    #[arg(long)]
    pub(crate) lane: Option<String>,
    /// Tasks any of these groups may work (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub(crate) groups: Vec<String>,
    /// Only tasks claimed by this user.
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// Only tasks of this process.
    #[arg(long)]
    pub(crate) process: Option<String>,
    /// Only tasks past their due date.
    #[arg(long)]
    pub(crate) overdue: bool,
}

#[derive(Args)]
pub struct CompleteArgs {
    /// Task id.
    pub(crate) task: String,
    #[arg(long)]
    pub(crate) user: String,
    /// A form field, typed by its declaration: name=value (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub(crate) vars: Vec<String>,
    /// Leave by a named outcome (e.g. reject) instead of `next`.
    #[arg(long, conflicts_with = "send_back")]
    pub(crate) outcome: Option<String>,
    /// Send the work back (needs --comment).
    #[arg(long, requires = "comment")]
    pub(crate) send_back: bool,
    /// Why it is sent back.
    #[arg(long, requires = "send_back")]
    pub(crate) comment: Option<String>,
    /// End the task with this error code instead, for an error boundary to catch.
    #[arg(long, value_name = "CODE", conflicts_with_all = ["outcome", "send_back"])]
    pub(crate) error: Option<String>,
    /// The error's message (with --error).
    #[arg(long, requires = "error", value_name = "TEXT")]
    pub(crate) error_message: Option<String>,
}

pub fn list(out: &Out, data: &Path, a: ListArgs) -> anyhow::Result<ExitCode> {
    let engine = open_existing(data)?;
    let q = TaskQuery {
        groups: if a.groups.is_empty() { None } else { Some(a.groups) },
        assignee: a.user,
        lane: a.lane,
        process: a.process,
        overdue: a.overdue.then_some(true),
        ..TaskQuery::default()
    };
    let tasks = engine.tasks(&q).map_err(explain)?;
    let mut notes = Vec::new();
    for t in &tasks {
        if let Some(n) = engine.send_back_of(t).map_err(explain)? {
            notes.push((t.id.clone(), n));
        }
    }
    if out.json {
        // Each task as stored, plus `sent_back` when someone sent the work back to it.
        let items: Vec<serde_json::Value> = tasks
            .iter()
            .map(|t| {
                let mut v = serde_json::to_value(t).unwrap_or_default();
                if let Some((_, n)) = notes.iter().find(|(id, _)| *id == t.id) {
                    v["sent_back"] = serde_json::to_value(n).unwrap_or_default();
                }
                v
            })
            .collect();
        out.json(&items)?;
    } else if tasks.is_empty() {
        println!("no open tasks");
    } else {
        task_table(&tasks).print();
        for (id, n) in &notes {
            let at = n.at.format("%Y-%m-%d %H:%M");
            println!("{id}: sent back by {} at {at}: {}", n.by.as_deref().unwrap_or("-"), n.comment);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn claim(out: &Out, data: &Path, task: &str, user: &str) -> anyhow::Result<ExitCode> {
    let engine = open_existing(data)?;
    let inst = engine.claim(task, user).map_err(explain)?;
    report(out, &engine, inst, None)
}

pub fn complete(out: &Out, data: &Path, a: CompleteArgs) -> anyhow::Result<ExitCode> {
    let engine = open_existing(data)?;
    let task = engine.task(&a.task).map_err(explain)?;
    let process = engine
        .process(&task.process, task.version)
        .ok_or_else(|| anyhow!("process {} version {} is not loaded", task.process, task.version))?;
    let vars = parse_vars(&process, &a.vars, None)?;
    if let Some(code) = &a.error {
        if !vars.is_empty() {
            anyhow::bail!("--error ends the task without its form; leave out --var");
        }
        let inst =
            engine.fail_task(&a.task, &a.user, code, a.error_message.as_deref().unwrap_or("")).map_err(explain)?;
        let n = run_jobs(&engine)?;
        let inst = engine.instance(inst.id).map_err(explain)?;
        return report(out, &engine, inst, Some(n));
    }
    let outcome = match (a.outcome, a.send_back) {
        (Some(name), _) => Outcome::Named(name),
        (None, true) => Outcome::SendBack { comment: a.comment.unwrap_or_default() },
        (None, false) => Outcome::Next,
    };
    let inst = engine.complete(&a.task, &a.user, vars, outcome).map_err(explain)?;
    let n = run_jobs(&engine)?;
    let inst = engine.instance(inst.id).map_err(explain)?;
    report(out, &engine, inst, Some(n))
}
