//! `nagare archive`: move finished instances past their retention (or before
//! `--before`) out of the live store into JSON Lines files; `--dry-run` counts.

use super::open_on;
use crate::output::{Out, Table};
use anyhow::{anyhow, bail};
use chrono::{DateTime, NaiveDate, Utc};
use nagare_engine::archive::{ArchiveOptions, ArchiveReport, DEFAULT_CHUNK, DEFAULT_MAX_FILE_BYTES};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ArchiveArgs {
    /// Only show what would move (per process), write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Archive every finished instance that ended before this date (`2026-06-30`,
    /// midnight UTC) or time (RFC 3339), whatever its process's `retention:`.
    #[arg(long, value_parser = parse_before)]
    before: Option<DateTime<Utc>>,
    /// Where the archive files go (default: `<data>/archive`).
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// Start a new file past this size, in MiB (1–4096).
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_BYTES / (1024 * 1024), value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_file_mib: u64,
    /// At most this many instances in this run.
    #[arg(long)]
    limit: Option<usize>,
    /// Also compact the history of running instances with more than this many
    /// lines (at least 100): the oldest become one `compacted` line.
    #[arg(long, value_name = "LINES")]
    compact_over: Option<usize>,
    /// The store (as `serve --store`): `sled` (default) or a PostgreSQL connection string.
    #[arg(long, env = "NAGARE_STORE")]
    store: Option<String>,
}

fn parse_before(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| format!("`{s}` is not a date (2026-06-30) or an RFC 3339 time"))
}

pub fn run(out: &Out, data: &Path, a: ArchiveArgs) -> anyhow::Result<ExitCode> {
    if a.store.as_deref().is_none_or(|s| s.trim().is_empty() || s == "sled") && !data.exists() {
        bail!("no data directory at {} (pass --data DIR)", data.display());
    }
    let (engine, _) = open_on(data, a.store.as_deref())?;
    let opts = ArchiveOptions {
        before: a.before,
        dry_run: a.dry_run,
        max_file_bytes: a.max_file_mib * 1024 * 1024,
        chunk: DEFAULT_CHUNK,
        limit: a.limit,
        compact_over: a.compact_over,
        ..ArchiveOptions::new(a.to.unwrap_or_else(|| data.join("archive")))
    };
    let report = engine.archive(&opts).map_err(|e| anyhow!("{e}"))?;
    print(out, &report)?;
    Ok(ExitCode::SUCCESS)
}

pub fn print(out: &Out, r: &ArchiveReport) -> anyhow::Result<()> {
    if out.json {
        return out.json(r);
    }
    let mut t =
        Table::new(&["process", if r.dry_run { "would archive" } else { "finished, past retention" }]).right(&[1]);
    for (p, n) in &r.by_process {
        t.row(vec![p.clone(), n.to_string()]);
    }
    if t.is_empty() {
        println!("nothing to archive");
    } else {
        t.print();
    }
    if !r.dry_run {
        println!("archived {} instance(s), {} bytes, into {}", r.archived, r.bytes, r.files.join(", "));
    }
    if r.recovered > 0 {
        println!("an earlier run was cut short: its file was cut back ({} instance(s) archived again)", r.recovered);
    }
    if r.compacted > 0 {
        let verb = if r.dry_run { "would compact" } else { "compacted" };
        println!("{verb} the history of {} running instance(s) ({} lines)", r.compacted, r.compacted_lines);
    }
    Ok(())
}
