//! Instance commands: `start`, `instances`, `show`, `cancel`, `retry`.

use super::{explain, open, open_existing, parse_vars, run_jobs};
use crate::output::{self, Out, Table};
use anyhow::anyhow;
use clap::Args;
use nagare_engine::runtime::{HistoryEntry, HistoryEvent, Instance, Status, Task, Wait};
use nagare_engine::store::InstanceFilter;
use nagare_engine::{Engine, StartOptions};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct StartArgs {
    /// Process id.
    pub(crate) process: String,
    /// A variable, typed by its declaration: name=value (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub(crate) vars: Vec<String>,
    /// A JSON object of variables (applied before --var).
    #[arg(long, value_name = "FILE")]
    pub(crate) vars_file: Option<PathBuf>,
    /// Business key: starting again with the same key returns the existing instance.
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// Who starts the instance.
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// Do not run service jobs inline (leave them to `nagare run`).
    #[arg(long)]
    pub(crate) no_run: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// running, incident, completed or cancelled.
    #[arg(long)]
    status: Option<String>,
    /// Only instances of this process.
    #[arg(long)]
    process: Option<String>,
    /// At most this many.
    #[arg(long)]
    limit: Option<usize>,
}

/// An instance with its open tasks, as printed after a command changed it.
#[derive(Serialize)]
pub struct InstanceView {
    #[serde(flatten)]
    pub instance: Instance,
    pub open_tasks: Vec<Task>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs_run: Option<usize>,
}

/// The open tasks of `inst`, from its tokens.
pub fn open_tasks(engine: &Engine, inst: &Instance) -> Vec<Task> {
    inst.open_task_ids().filter_map(|task| engine.task(task).ok()).collect()
}

/// Print the state after a change: status, open tasks, incidents.
pub fn report(out: &Out, engine: &Engine, inst: Instance, jobs_run: Option<usize>) -> anyhow::Result<ExitCode> {
    let tasks = open_tasks(engine, &inst);
    if out.json {
        out.json(&InstanceView { instance: inst, open_tasks: tasks, jobs_run })?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("instance {}  {}@{}  {}", inst.id, inst.process, inst.version, inst.status.as_str());
    if let Some(n) = jobs_run.filter(|n| *n > 0) {
        println!("  ran {n} service job(s)");
    }
    for t in &tasks {
        let who = t.assignee.as_deref().map(|a| format!(", claimed by {a}")).unwrap_or_default();
        println!("  open task {}  {}  (lane {}: {}{who})", t.id, t.title, t.lane, t.groups.join(","));
    }
    for i in &inst.incidents {
        println!("  incident {} at {}: {}", i.id, i.node, i.message);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn start(out: &Out, data: &Path, a: StartArgs) -> anyhow::Result<ExitCode> {
    let engine = open(data)?;
    let process = engine.latest(&a.process).ok_or_else(|| {
        let known: Vec<String> = engine.processes().iter().map(|v| v[0].id.clone()).collect();
        anyhow!(
            "no process `{}` is deployed; deployed: {}",
            a.process,
            if known.is_empty() { "(none)".into() } else { known.join(", ") }
        )
    })?;
    let vars = parse_vars(&process, &a.vars, a.vars_file.as_deref())?;
    let inst = engine.start(&a.process, vars, StartOptions { by: a.user, business_key: a.key }).map_err(explain)?;
    let (inst, ran) = if a.no_run {
        (inst, None)
    } else {
        let n = run_jobs(&engine)?;
        (engine.instance(inst.id).map_err(explain)?, Some(n))
    };
    report(out, &engine, inst, ran)
}

pub fn list(out: &Out, data: &Path, a: ListArgs) -> anyhow::Result<ExitCode> {
    let status = match &a.status {
        Some(s) => Some(
            Status::parse(s)
                .ok_or_else(|| anyhow!("unknown status `{s}`; use running, incident, completed or cancelled"))?,
        ),
        None => None,
    };
    let engine = open_existing(data)?;
    let list = engine
        .instances(&InstanceFilter { process: a.process, status, limit: a.limit, ..InstanceFilter::default() })
        .map_err(explain)?;
    if out.json {
        out.json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["id", "process", "status", "started", "ended"]).right(&[0]);
    for i in &list {
        t.row(vec![
            i.id.to_string(),
            format!("{}@{}", i.process, i.version),
            i.status.as_str().into(),
            output::time(&i.started_at),
            output::opt_time(&i.ended_at),
        ]);
    }
    if t.is_empty() {
        println!("no instances");
    } else {
        t.print();
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct ShowView {
    #[serde(flatten)]
    instance: Instance,
    open_tasks: Vec<Task>,
    history: Vec<HistoryEntry>,
}

pub fn show(out: &Out, data: &Path, id: u64) -> anyhow::Result<ExitCode> {
    show_with(out, &open_existing(data)?, id)
}

/// `show` on an engine that is already open.
pub fn show_with(out: &Out, engine: &Engine, id: u64) -> anyhow::Result<ExitCode> {
    let mut inst = engine.instance(id).map_err(explain)?;
    let mut history = engine.history(id).map_err(explain)?;
    // Sensitive values are for the lanes whose forms show them, not for operators.
    if let Some(p) = engine.process(&inst.process, inst.version).filter(|p| p.has_sensitive()) {
        p.mask_all(inst.vars.iter_mut());
        history.iter_mut().for_each(|h| p.mask_history(h));
    }
    let tasks = open_tasks(engine, &inst);
    if out.json {
        out.json(&ShowView { instance: inst, open_tasks: tasks, history })?;
        return Ok(ExitCode::SUCCESS);
    }
    let title = engine.process(&inst.process, inst.version).map(|p| p.name.clone()).unwrap_or_default();
    println!("instance     {}", inst.id);
    if title.is_empty() || title == inst.process {
        println!("process      {}", inst.process);
    } else {
        println!("process      {} ({title})", inst.process);
    }
    println!("version      {}", inst.version);
    println!("status       {}", inst.status.as_str());
    println!("business key {}", inst.business_key.as_deref().unwrap_or("-"));
    let by = inst.started_by.as_deref().map(|u| format!(" by {u}")).unwrap_or_default();
    println!("started      {}{by}", output::time(&inst.started_at));
    println!("ended        {}", output::opt_time(&inst.ended_at));
    if let Some(l) = &inst.parent {
        let status = engine.instance(l.instance).map(|p| p.status.as_str()).unwrap_or("?");
        println!("called by    {} at {} ({status})", l.instance, l.node);
    }
    for c in inst.children() {
        let status = engine.instance(c).map(|c| c.status.as_str()).unwrap_or("?");
        println!("calls        {c} ({status})");
    }
    if let Some(line) = progress_line(&inst.vars) {
        println!("progress     {line}");
    }

    println!("\nvariables");
    if inst.vars.is_empty() {
        println!("  (none)");
    }
    let w = inst.vars.keys().map(|k| output::width(k)).max().unwrap_or(0);
    for (k, v) in &inst.vars {
        println!("  {k}{}  {}", " ".repeat(w - output::width(k)), output::value(v));
    }

    println!("\ntokens");
    if inst.tokens.is_empty() {
        println!("  (none)");
    }
    for t in &inst.tokens {
        let wait = match &t.wait {
            Wait::Task { task, assignee: Some(a) } => format!("task {task} (claimed by {a})"),
            Wait::Task { task, assignee: None } => format!("task {task}"),
            Wait::Job { job, attempt } => format!("job {job} (attempt {attempt})"),
            Wait::Incident { incident } => format!("incident {incident}"),
            Wait::Timer { job } => format!("timer {job}"),
            Wait::Message { name, key } => format!("message {name} (key {key:?})"),
            Wait::Events { messages } => {
                let m: Vec<String> = messages.iter().map(|m| format!("{} (key {:?})", m.name, m.key)).collect();
                format!("the first of: messages [{}]", m.join(", "))
            }
            Wait::Call { child: Some(c), .. } => format!("called instance {c}"),
            Wait::Call { job, child: None } => format!("the start of a called instance (job {job})"),
            Wait::Scope { activation } => match inst.multis.iter().find(|m| m.activation == *activation) {
                Some(m) => format!("its items: {} of {} done", m.done, m.total),
                None => "its items".to_string(),
            },
        };
        let wait = match t.scope.last().filter(|f| f.body) {
            Some(f) => format!("{wait} (item {} of {})", f.branch, f.width),
            None => wait,
        };
        let wait = if t.timers.is_empty() {
            wait
        } else {
            let ts: Vec<String> = t.timers.iter().map(|a| format!("{} at {}", a.job, output::time(&a.due))).collect();
            format!("{wait}; timers {}", ts.join(", "))
        };
        let wait = if t.listens.is_empty() {
            wait
        } else {
            let ms: Vec<String> = t.listens.iter().map(|m| format!("{} (key {:?})", m.name, m.key)).collect();
            format!("{wait}; messages {}", ms.join(", "))
        };
        println!("  #{}  at {}  waits on {wait}", t.id, t.node);
    }
    for w in &inst.forks {
        let mut armed: Vec<String> =
            w.timers.iter().map(|a| format!("timer {} at {}", a.job, output::time(&a.due))).collect();
        armed.extend(w.listens.iter().map(|m| format!("message {} (key {:?})", m.name, m.key)));
        println!("  fork {} (activation {})  boundaries {}", w.fork, w.activation, armed.join(", "));
    }

    if !tasks.is_empty() {
        println!("\nopen tasks");
        let mut t = Table::new(&["id", "title", "lane", "groups", "assignee", "due"]);
        for task in &tasks {
            t.row(task_row(task));
        }
        for l in t.render().lines() {
            println!("  {l}");
        }
    }

    if !inst.incidents.is_empty() {
        println!("\nincidents");
        for i in &inst.incidents {
            println!("  {}  at {}  {}  {}", i.id, i.node, output::time(&i.at), i.message);
        }
    }

    println!("\nhistory");
    let mut t = Table::new(&["seq", "time", "node", "event", "detail"]).right(&[0]);
    for h in &history {
        t.row(vec![
            h.seq.to_string(),
            output::time(&h.at),
            h.node.clone().unwrap_or_else(|| "-".into()),
            h.event.name().into(),
            detail(h),
        ]);
    }
    for l in t.render().lines() {
        println!("  {l}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A long-running instance's `progress` variable (`{done, total, ...}`, e.g. the
/// contract import's files) as one line: `3 / 5 (60%) — imported 2, failed 1`.
fn progress_line(vars: &nagare_engine::Vars) -> Option<String> {
    let p = vars.get("progress")?.as_object()?;
    let (done, total) = (p.get("done")?.as_u64()?, p.get("total")?.as_u64()?);
    let pct = done.saturating_mul(100).checked_div(total).unwrap_or(100);
    let rest: Vec<String> = p
        .iter()
        .filter(|(k, _)| *k != "done" && *k != "total")
        .filter_map(|(k, v)| v.as_u64().map(|n| format!("{k} {n}")))
        .collect();
    let rest = if rest.is_empty() { String::new() } else { format!(" — {}", rest.join(", ")) };
    Some(format!("{done} / {total} ({pct}%){rest}"))
}

fn task_row(t: &Task) -> Vec<String> {
    vec![
        t.id.clone(),
        t.title.clone(),
        t.lane.clone(),
        t.groups.join(","),
        t.assignee.clone().unwrap_or_else(|| "-".into()),
        output::opt_time(&t.due),
    ]
}

fn vars_text(v: &nagare_engine::Vars) -> String {
    v.iter().map(|(k, v)| format!("{k}={}", output::value(v))).collect::<Vec<_>>().join(" ")
}

/// The details of one history line: user, task, outcome, message…
fn detail(h: &HistoryEntry) -> String {
    let mut parts = Vec::new();
    match (&h.user, &h.proxy) {
        (Some(u), Some(p)) => parts.push(format!("user={u} proxy={p}")),
        (Some(u), None) => parts.push(format!("user={u}")),
        _ => {}
    }
    match &h.event {
        HistoryEvent::Started { vars, .. } | HistoryEvent::IncidentResolved { vars, .. } if !vars.is_empty() => {
            if let HistoryEvent::IncidentResolved { incident, .. } = &h.event {
                parts.push(format!("incident={incident}"));
            }
            parts.push(vars_text(vars));
        }
        HistoryEvent::IncidentResolved { incident, .. } => parts.push(format!("incident={incident}")),
        HistoryEvent::ScriptRan { changed } if !changed.is_empty() => {
            parts.push(format!("changed={}", changed.join(",")))
        }
        HistoryEvent::Routed { to } => parts.push(format!("to={to}")),
        HistoryEvent::Forked { branches } => parts.push(format!("branches={}", branches.join(","))),
        HistoryEvent::TaskOpened { task }
        | HistoryEvent::TaskClaimed { task }
        | HistoryEvent::TaskUnclaimed { task } => parts.push(format!("task={task}")),
        HistoryEvent::TaskCompleted { task, outcome, vars } => {
            parts.push(format!("task={task} outcome={outcome}"));
            if !vars.is_empty() {
                parts.push(vars_text(vars));
            }
        }
        HistoryEvent::TaskRouted { to, fallback, skipped } => {
            parts.push(format!("to={}", to.join(",")));
            if let Some(f) = fallback {
                parts.push(format!("fallback={f}"));
            }
            if let Some(s) = skipped {
                parts.push(format!("skipped={s}"));
            }
        }
        HistoryEvent::TaskAssigned { task, to } => {
            parts.push(format!("task={task} to={}", to.as_deref().unwrap_or("(nobody)")))
        }
        HistoryEvent::SentBack { task, to, comment } => parts.push(format!("task={task} to={to} comment={comment}")),
        HistoryEvent::JobScheduled { job, connector, attempt } => {
            parts.push(format!("job={job} connector={connector} attempt={attempt}"))
        }
        HistoryEvent::JobSucceeded { job, set } => {
            parts.push(format!("job={job}"));
            if !set.is_empty() {
                parts.push(format!("set={}", set.join(",")));
            }
        }
        HistoryEvent::JobFailed { job, attempt, message, retry_at } => {
            parts.push(format!("job={job} attempt={attempt}"));
            if let Some(r) = retry_at {
                parts.push(format!("retry_at={}", output::time(r)));
            }
            parts.push(format!("message={message}"));
        }
        HistoryEvent::IncidentRaised { incident, message } => {
            parts.push(format!("incident={incident} message={message}"))
        }
        HistoryEvent::Cancelled { reason } => parts.push(format!("reason={reason}")),
        HistoryEvent::Migrated { from, to, changes } => {
            parts.push(format!("version {from} → {to}"));
            parts.extend(changes.iter().cloned());
        }
        HistoryEvent::IncidentSkipped { incident, vars, to } => {
            parts.push(format!("incident={incident} to={to}"));
            if !vars.is_empty() {
                parts.push(vars_text(vars));
            }
        }
        HistoryEvent::TimerSet { job, due } => parts.push(format!("job={job} due={}", output::time(due))),
        HistoryEvent::TimerFired { job } => parts.push(format!("job={job}")),
        HistoryEvent::Interrupted { to } => parts.push(format!("to={to}")),
        HistoryEvent::MessageWaiting { name, key } => parts.push(format!("message={name} key={key}")),
        HistoryEvent::MessageReceived { name, key, set } => {
            parts.push(format!("message={name} key={key}"));
            if !set.is_empty() {
                parts.push(format!("set={}", set.join(",")));
            }
        }
        HistoryEvent::ErrorThrown { code, message } => {
            parts.push(format!("code={} message={message}", code.as_deref().unwrap_or("-")))
        }
        HistoryEvent::ErrorCaught { code, by, to } => {
            parts.push(format!("code={} by={by} to={to}", code.as_deref().unwrap_or("-")))
        }
        _ => {}
    }
    parts.join(" ")
}

pub fn cancel(out: &Out, data: &Path, id: u64, user: &str, reason: &str) -> anyhow::Result<ExitCode> {
    let engine = open_existing(data)?;
    let inst = engine.cancel(id, user, reason).map_err(explain)?;
    report(out, &engine, inst, None)
}

/// Rows for the task table (shared with `nagare tasks`).
pub fn task_table(tasks: &[Task]) -> Table {
    let mut t = Table::new(&["id", "title", "lane", "groups", "assignee", "due", "instance"]);
    for task in tasks {
        let mut row = task_row(task);
        row.push(task.instance.to_string());
        t.row(row);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_variable_is_shown_as_one_line() {
        let vars: nagare_engine::Vars =
            [("progress".to_string(), serde_json::json!({"done": 3, "total": 5, "failed": 1}))].into();
        assert_eq!(progress_line(&vars).as_deref(), Some("3 / 5 (60%) — failed 1"));
        let none: nagare_engine::Vars = [("progress".to_string(), serde_json::json!("half"))].into();
        assert_eq!(progress_line(&none), None);
    }
}
