//! `nagare migrate-store --from sled:DIR --to postgres://…`: copy a whole sled
//! store into an empty PostgreSQL database (or schema), then compare both sides
//! table by table (rows and a checksum). Progress goes to stderr, the comparison
//! to stdout.

use crate::output::Out;
use anyhow::bail;
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct MigrateStoreArgs {
    /// The source: `sled:DIR`, a data directory of a stopped nagare.
    #[arg(long)]
    from: String,
    /// The target: a PostgreSQL connection string (as `serve --store`); its
    /// database (or search-path schema) must hold no nagare store yet.
    #[arg(long)]
    to: String,
}

pub fn run(out: &Out, a: MigrateStoreArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = a.from.strip_prefix("sled:") else {
        bail!("--from `{}`: use sled:DIR (the data directory of a stopped nagare)", a.from);
    };
    let dir = std::path::Path::new(dir);
    if !dir.join("conf").exists() && !dir.join("db").exists() {
        bail!("--from {}: no sled store there (a nagare data directory holds `db` and `conf`)", dir.display());
    }
    copy(out, dir, &a.to)
}

#[cfg(feature = "postgres")]
fn copy(out: &Out, dir: &std::path::Path, to: &str) -> anyhow::Result<ExitCode> {
    use nagare_engine::store::pg::migrate::migrate;
    use nagare_engine::store::{Durability, KvStore, PgOptions, PgStore, SledKv};
    let source = KvStore::new(SledKv::open(dir, Durability::Flush).map_err(|e| anyhow::anyhow!("--from: {e}"))?)
        .map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let target = PgOptions::from_store(to).and_then(|o| PgStore::open(&o)).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let started = std::time::Instant::now();
    let report = migrate(&source, &target, &mut |line| eprintln!("migrate-store: {line}"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if out.json {
        let tables: Vec<_> = report
            .iter()
            .map(|(t, s, _)| serde_json::json!({ "table": t, "rows": s.rows, "checksum": format!("{:016x}", s.checksum) }))
            .collect();
        out.json(&serde_json::json!({ "tables": tables, "verified": true }))?;
    } else {
        println!("{:<16} {:>10}  checksum (source = target)", "table", "rows");
        for (t, s, _) in &report {
            println!("{t:<16} {:>10}  {:016x}", s.rows, s.checksum);
        }
        println!(
            "copied and verified in {:.1} s; files of `file` variables stay in {}/blobs: keep --data pointing there",
            started.elapsed().as_secs_f64(),
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "postgres"))]
fn copy(_: &Out, _: &std::path::Path, _: &str) -> anyhow::Result<ExitCode> {
    bail!("this nagare was built without the `postgres` feature")
}
