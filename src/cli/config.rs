//! `nagare config`: show or change a process's settings and pause or resume its
//! timer start, on the data directory (the same as `PUT /api/v1/processes/{id}/config`).

use super::{explain, open};
use crate::output::{Out, Table};
use anyhow::bail;
use clap::Args;
use nagare_engine::Vars;
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;

#[derive(Args)]
pub struct ConfigArgs {
    /// Process id.
    process: String,
    /// Change a setting: name=value; the value is read as JSON when it parses
    /// (numbers, true/false, lists), as text otherwise; `name=null` restores the
    /// default (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Pause the timer start: it starts nothing until resumed (the schedule goes on).
    #[arg(long, conflicts_with = "resume")]
    pause: bool,
    /// Resume a paused timer start.
    #[arg(long)]
    resume: bool,
}

pub fn run(out: &Out, data: &Path, a: ConfigArgs) -> anyhow::Result<ExitCode> {
    let engine = open(data)?;
    let by = "cli";
    if !a.set.is_empty() {
        let mut changes = Vars::new();
        for pair in &a.set {
            let Some((name, text)) = pair.split_once('=') else {
                bail!("--set `{pair}` must look like name=value");
            };
            let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
            changes.insert(name.trim().to_string(), value);
        }
        engine.change_settings(&a.process, changes, by).map_err(explain)?;
    }
    if a.pause || a.resume {
        engine.pause_start(&a.process, a.pause, by).map_err(explain)?;
    }
    let p = engine
        .latest(&a.process)
        .ok_or_else(|| explain(nagare_engine::EngineError::UnknownProcess(a.process.clone())))?;
    let cfg = engine.process_config(&a.process).map_err(explain)?;
    if out.json {
        let settings: serde_json::Map<String, Value> = p.setting_values.iter().cloned().collect();
        out.json(&json!({
            "process": p.id,
            "settings": settings,
            "start_paused": p.start_paused,
            "changed_by": cfg.changed_by,
            "changed_at": cfg.changed_at,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["SETTING", "TYPE", "VALUE", "DEFAULT"]);
    for (name, value) in &p.setting_values {
        let spec = &p.settings[name];
        let default = spec.default.as_ref().map(Value::to_string).unwrap_or_default();
        t.row(vec![name.clone(), spec.ty.name().to_string(), value.to_string(), default]);
    }
    if t.is_empty() {
        println!("{} declares no settings", p.id);
    } else {
        t.print();
    }
    if matches!(p.start_trigger(), nagare_engine::process::StartTrigger::Timer { .. }) {
        println!("timer start: {}", if p.start_paused { "paused" } else { "on" });
    }
    Ok(ExitCode::SUCCESS)
}
