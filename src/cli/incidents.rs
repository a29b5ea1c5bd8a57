//! `nagare incidents`: the incident list across instances, retry and resolve.

use super::instances::report;
use super::{explain, open_existing, parse_vars, run_jobs};
use crate::output::{self, Out, Table};
use anyhow::anyhow;
use clap::{Args, Subcommand};
use nagare_engine::store::IncidentFilter;
use nagare_engine::Engine;
use std::path::Path;
use std::process::ExitCode;

#[derive(Args)]
pub struct IncidentsArgs {
    #[command(subcommand)]
    action: Option<Action>,
    /// Only incidents of this process.
    #[arg(long)]
    process: Option<String>,
    /// Only incidents at this node.
    #[arg(long)]
    node: Option<String>,
    /// At most this many.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Subcommand)]
enum Action {
    /// Run the failed step again, optionally after correcting variables.
    Retry(IncidentTarget),
    /// The step was done by hand: write the variables and move the token on past it.
    Resolve(IncidentTarget),
}

#[derive(Args)]
pub struct IncidentTarget {
    /// Instance id.
    instance: u64,
    /// Incident id (see `nagare incidents`).
    incident: u32,
    /// A variable, typed by its declaration: name=value (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    #[arg(long, default_value = "cli")]
    user: String,
}

pub fn run(out: &Out, data: &Path, a: IncidentsArgs) -> anyhow::Result<ExitCode> {
    let engine = open_existing(data)?;
    let (t, retry) = match a.action {
        None => {
            let filter = IncidentFilter { process: a.process, node: a.node, limit: a.limit };
            let list = engine.incidents(&filter).map_err(explain)?;
            if out.json {
                out.json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                println!("no incidents");
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = Table::new(&["instance", "incident", "process", "node", "since", "message"]).right(&[0, 1]);
            for i in &list {
                table.row(vec![
                    i.instance.to_string(),
                    i.incident.id.to_string(),
                    format!("{}@{}", i.process, i.version),
                    i.incident.node.clone(),
                    output::time(&i.incident.at),
                    i.incident.message.clone(),
                ]);
            }
            table.print();
            return Ok(ExitCode::SUCCESS);
        }
        Some(Action::Retry(t)) => (t, true),
        Some(Action::Resolve(t)) => (t, false),
    };
    fix(out, &engine, t, retry)
}

/// `nagare retry`: the same as `nagare incidents retry`.
pub fn retry(out: &Out, data: &Path, t: IncidentTarget) -> anyhow::Result<ExitCode> {
    let engine = open_existing(data)?;
    fix(out, &engine, t, true)
}

/// Retry (`retry`) or resolve an incident after writing the given variables, run
/// the jobs that follow, and report the instance.
fn fix(out: &Out, engine: &Engine, t: IncidentTarget, retry: bool) -> anyhow::Result<ExitCode> {
    let inst = engine.instance(t.instance).map_err(explain)?;
    let process = engine
        .process(&inst.process, inst.version)
        .ok_or_else(|| anyhow!("process {} version {} is not loaded", inst.process, inst.version))?;
    let vars = parse_vars(&process, &t.vars, None)?;
    if retry {
        engine.retry_incident(t.instance, t.incident, vars, &t.user).map_err(explain)?;
    } else {
        engine.resolve_incident(t.instance, t.incident, vars, &t.user).map_err(explain)?;
    }
    let n = run_jobs(engine)?;
    let inst = engine.instance(t.instance).map_err(explain)?;
    report(out, engine, inst, Some(n))
}
