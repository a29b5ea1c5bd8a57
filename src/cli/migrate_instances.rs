//! `nagare migrate plan|apply`: move running instances of one process version to
//! another. `plan` is a dry run (a table, or the plan as JSON with `--json` or
//! `--out FILE`); `apply PLAN.json` migrates instance by instance and may be run
//! again after an interruption (instances already moved are skipped).

use super::{explain, open_existing};
use crate::output::{Out, Table};
use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use nagare_engine::migrate::{LaneChoice, MigrationSpec, TimerChoice};
use nagare_engine::{ApplyOutcome, MigrationPlan};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Largest plan file `apply` reads.
const MAX_PLAN_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Where every running instance of version FROM would land in version TO, and
    /// which cannot move (a dry run: nothing is changed).
    Plan(PlanArgs),
    /// Migrate the instances of a plan written by `plan --out` (each in one commit;
    /// safe to run again).
    Apply(ApplyArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Timers {
    Keep,
    Rearm,
}

#[derive(Clone, Copy, ValueEnum)]
enum Lanes {
    Keep,
    Reassign,
}

#[derive(Args)]
struct PlanArgs {
    #[arg(long)]
    process: String,
    #[arg(long)]
    from: u32,
    #[arg(long)]
    to: u32,
    /// A node renamed or replaced: OLD=NEW (repeatable).
    #[arg(long = "map", value_name = "OLD=NEW")]
    map: Vec<String>,
    /// A variable's new value, an expression over the old values: VAR=EXPR (repeatable).
    #[arg(long = "set", value_name = "VAR=EXPR")]
    set: Vec<String>,
    /// A variable's value when its old one does not fit: VAR=JSON (repeatable; text
    /// that is not JSON is a string).
    #[arg(long = "default", value_name = "VAR=VALUE")]
    defaults: Vec<String>,
    /// Armed timers whose definition changed: keep their due time or re-arm them.
    #[arg(long, value_enum, default_value = "keep")]
    timers: Timers,
    /// Open tasks whose lane has other groups now: keep them or give them to the new groups.
    #[arg(long, value_enum, default_value = "keep")]
    lanes: Lanes,
    /// Write the plan (JSON) here, for `nagare migrate apply`.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value = "cli")]
    user: String,
}

#[derive(Args)]
struct ApplyArgs {
    /// A plan written by `nagare migrate plan --out`.
    plan: PathBuf,
    #[arg(long, default_value = "cli")]
    user: String,
}

pub fn run(out: &Out, data: &Path, a: MigrateArgs) -> anyhow::Result<ExitCode> {
    match a.action {
        Action::Plan(p) => plan(out, data, p),
        Action::Apply(p) => apply(out, data, p),
    }
}

fn pair<'a>(flag: &str, s: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v)),
        _ => bail!("--{flag} `{s}`: write NAME=VALUE"),
    }
}

fn spec_of(p: &PlanArgs) -> anyhow::Result<MigrationSpec> {
    let mut spec = MigrationSpec {
        process: p.process.clone(),
        from: p.from,
        to: p.to,
        timers: match p.timers {
            Timers::Keep => TimerChoice::Keep,
            Timers::Rearm => TimerChoice::Rearm,
        },
        lanes: match p.lanes {
            Lanes::Keep => LaneChoice::Keep,
            Lanes::Reassign => LaneChoice::Reassign,
        },
        ..Default::default()
    };
    for m in &p.map {
        let (k, v) = pair("map", m)?;
        spec.map.insert(k.into(), v.trim().into());
    }
    for m in &p.set {
        let (k, v) = pair("set", m)?;
        spec.set.insert(k.into(), v.into());
    }
    for m in &p.defaults {
        let (k, v) = pair("default", m)?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        spec.defaults.insert(k.into(), value);
    }
    Ok(spec)
}

fn plan(out: &Out, data: &Path, p: PlanArgs) -> anyhow::Result<ExitCode> {
    let engine = open_existing(data)?;
    let spec = spec_of(&p)?;
    let plan = engine.plan_migration(spec, &p.user).map_err(explain)?;
    if let Some(path) = &p.out {
        let text = serde_json::to_string_pretty(&plan)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if out.json {
        out.json(&plan)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_plan(&plan);
    if let Some(path) = &p.out {
        println!("plan written to {}; apply it with: nagare migrate apply {}", path.display(), path.display());
    } else {
        println!("dry run: nothing changed (write the plan with --out FILE, then `nagare migrate apply FILE`)");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(plan: &MigrationPlan) {
    let s = &plan.spec;
    let mut table = Table::new(&["instance", "key", "status", "verdict", "where it lands"]).right(&[0]);
    for i in &plan.instances {
        let lands: Vec<String> = i
            .moves
            .iter()
            .filter(|m| matches!(m.what.as_str(), "token" | "variable"))
            .filter(|m| m.from != m.to || m.note.is_some())
            .map(|m| {
                let note = m.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
                format!("{} {}: {} → {}{note}", m.what, m.id, m.from, m.to)
            })
            .collect();
        let stays: Vec<String> = i
            .moves
            .iter()
            .filter(|m| m.what == "token" && m.from == m.to && m.note.is_none())
            .map(|m| m.to.clone())
            .collect();
        let mut lines = lands;
        if !stays.is_empty() {
            lines.push(format!("same node: {}", stays.join(", ")));
        }
        lines.extend(i.problems.iter().map(|f| format!("✗ {}: {}", f.code, f.message)));
        lines.extend(i.warnings.iter().map(|f| format!("! {}: {}", f.code, f.message)));
        let verdict = if i.is_valid() { "ok" } else { "INVALID" };
        if lines.is_empty() {
            lines.push("(nothing to move)".into());
        }
        // One line per cell: the first carries the instance.
        for (n, line) in lines.into_iter().enumerate() {
            let first = |s: String| if n == 0 { s } else { String::new() };
            table.row(vec![
                first(i.instance.to_string()),
                first(i.business_key.clone().unwrap_or_default()),
                first(i.status.as_str().to_string()),
                first(verdict.to_string()),
                line,
            ]);
        }
    }
    if !table.is_empty() {
        table.print();
    }
    let sm = &plan.summary;
    println!(
        "{} version {} → {}: {} running instances, {} can move ({} with warnings), {} invalid",
        s.process, s.from, s.to, sm.instances, sm.valid, sm.with_warnings, sm.invalid
    );
}

fn apply(out: &Out, data: &Path, a: ApplyArgs) -> anyhow::Result<ExitCode> {
    let meta = std::fs::metadata(&a.plan).with_context(|| format!("reading {}", a.plan.display()))?;
    if meta.len() > MAX_PLAN_BYTES {
        bail!("{}: {} bytes; a plan file is at most {MAX_PLAN_BYTES}", a.plan.display(), meta.len());
    }
    let text = std::fs::read_to_string(&a.plan).with_context(|| format!("reading {}", a.plan.display()))?;
    let plan: MigrationPlan = serde_json::from_str(&text).map_err(|e| {
        anyhow!("{}: not a migration plan ({e}); write one with `nagare migrate plan --out`", a.plan.display())
    })?;
    let engine = open_existing(data)?;
    let total = plan.instances.len();
    let mut n = 0;
    let report = engine
        .apply_migration(&plan, &a.user, |o| {
            n += 1;
            eprintln!("migrate: [{n}/{total}] instance {}: {}", o.instance(), describe(o));
        })
        .map_err(explain)?;
    if out.json {
        out.json(&report)?;
    } else {
        let counts: Vec<String> = report.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("{} version {} → {}: {}", plan.spec.process, plan.spec.from, plan.spec.to, counts.join(", "));
    }
    let failed = report.outcomes.iter().any(|o| matches!(o, ApplyOutcome::Failed { .. }));
    if failed {
        eprintln!("some instances failed; run the same command again to retry them");
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn describe(o: &ApplyOutcome) -> String {
    match o {
        ApplyOutcome::Migrated { .. } => "migrated".into(),
        ApplyOutcome::AlreadyMigrated { .. } => "already on the target version".into(),
        ApplyOutcome::Moved { planned, now, .. } => {
            format!("skipped: it moved since the plan (revision {planned} → {now}); plan again")
        }
        ApplyOutcome::Invalid { problems, .. } => format!("skipped, invalid: {}", problems.join("; ")),
        ApplyOutcome::Gone { .. } => "skipped: finished or gone".into(),
        ApplyOutcome::Failed { error, .. } => format!("FAILED: {error}"),
    }
}
