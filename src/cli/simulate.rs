//! `nagare simulate`: the seeded fault simulation of the engine, for many seeds.
//!
//! The simulation itself lives in the engine (`nagare_engine::sim`); this prints
//! progress and, on a failure, the seed, the command that replays it and the end
//! of the trace.

use crate::output::Out;
use anyhow::bail;
use clap::Args;
use nagare_engine::sim::{run_seed, SimOptions, SimReport};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Args)]
pub struct SimulateArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// First seed (a failure prints the seed that replays it).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Random steps per seed before the final drain.
    #[arg(long, default_value_t = SimOptions::default().steps)]
    steps: usize,
    /// Leave out task due dates computed from form values (`add_days(now, v1)`
    /// with hostile numbers).
    #[arg(long)]
    no_hostile_dates: bool,
    /// Count an idempotency key reused for a different call (issue 10, finding 12)
    /// instead of failing on it.
    #[arg(long)]
    lenient_keys: bool,
}

/// Where the last panic happened: the simulation catches panics (they are
/// findings), the location makes them easy to find.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

pub fn run(out: &Out, a: SimulateArgs) -> anyhow::Result<ExitCode> {
    let opts = SimOptions {
        steps: a.steps,
        hostile_dates: !a.no_hostile_dates,
        strict_keys: !a.lenient_keys,
        ..SimOptions::default()
    };
    // Panics are caught and reported with their seed; keep them quiet meanwhile.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }));
    let t = Instant::now();
    let mut total = SimReport::default();
    let mut known = 0;
    let end = a.start.saturating_add(a.seeds);
    let mut failure = None;
    for seed in a.start..end {
        match run_seed(seed, &opts) {
            Ok(r) => {
                total.started += r.started;
                total.completed_tasks += r.completed_tasks;
                total.delivered += r.delivered;
                total.fired += r.fired;
                total.connector_calls += r.connector_calls;
                total.crashes += r.crashes;
                total.faults += r.faults;
                known += r.known.len();
                let done = seed - a.start + 1;
                if !out.json && (done % 100 == 0 || seed + 1 == end) {
                    eprintln!("{done}/{} seeds ok ({:.1?})", a.seeds, t.elapsed());
                }
            }
            Err(f) => {
                failure = Some(f);
                break;
            }
        }
    }
    std::panic::set_hook(previous);
    if let Some(f) = failure {
        let at = LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut text = f.to_string();
        if let (true, Some(at)) = (f.message.starts_with("panic:"), at) {
            text.push_str(&format!("panic location: {at}\n"));
        }
        bail!("{text}");
    }
    let summary = serde_json::json!({
        "seeds": a.seeds,
        "start": a.start,
        "seconds": t.elapsed().as_secs_f64(),
        "instances_started": total.started,
        "tasks_completed": total.completed_tasks,
        "messages_delivered": total.delivered,
        "timers_fired": total.fired,
        "connector_calls": total.connector_calls,
        "crashes": total.crashes,
        "disk_faults": total.faults,
        "known_finding_hits": known,
    });
    if out.json {
        out.json(&summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} seeds ({}..{end}) passed in {:.1?}: {} instances, {} tasks completed, {} messages delivered, {} timers fired, {} connector calls, {} crashes, {} disk faults{}",
        a.seeds,
        a.start,
        t.elapsed(),
        total.started,
        total.completed_tasks,
        total.delivered,
        total.fired,
        total.connector_calls,
        total.crashes,
        total.faults,
        if known > 0 { format!(", {known} idempotency keys reused (--lenient-keys)") } else { String::new() }
    );
    Ok(ExitCode::SUCCESS)
}
