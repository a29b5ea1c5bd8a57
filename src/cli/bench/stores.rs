//! The store of one durable bench run: a fresh sled directory (fsync on every
//! commit, group commit) or a fresh schema on PostgreSQL, removed when the run ends;
//! and, on PostgreSQL, more engines ("nodes") on the same schema.

use super::measure::{temp_dir, TempDir};
use crate::cli::explain;
use anyhow::anyhow;
#[cfg(not(feature = "postgres"))]
use anyhow::bail;
use nagare_engine::store::Durability;
use nagare_engine::{Engine, EngineBuilder};
use std::path::Path;

/// What a durable run holds until it ends (dropping it removes the data; the
/// fields are only read by their `Drop`).
#[allow(dead_code)]
pub enum Held {
    Dir(TempDir),
    Pg(PgSchema),
}

/// `builder` on a fresh durable store: sled under `temp_root`, or a schema of its
/// own on the PostgreSQL database `pg` with a pool sized for `c` threads.
pub fn durable(
    builder: EngineBuilder,
    temp_root: &Path,
    pg: Option<&str>,
    name: &str,
    c: usize,
) -> anyhow::Result<(EngineBuilder, Held, Option<PgNodes>)> {
    match pg {
        Some(url) => {
            let (b, schema, nodes) = pg_bench_store(builder, url, name, c)?;
            Ok((b, Held::Pg(schema), Some(nodes)))
        }
        None => {
            let dir = temp_dir(temp_root, name)?;
            let b = builder.data_dir_with(&dir.0, Durability::Flush).map_err(explain)?;
            Ok((b, Held::Dir(dir), None))
        }
    }
}

/// Drops a PostgreSQL bench run's schema when the run ends, also on error.
pub struct PgSchema {
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    url: String,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        #[cfg(feature = "postgres")]
        if let Err(e) = nagare_engine::store::PgStore::drop_schema(&self.url, &self.name) {
            eprintln!("warning: could not drop bench schema {}: {e}", self.name);
        }
    }
}

#[cfg(feature = "postgres")]
fn pg_bench_store(
    builder: EngineBuilder,
    url: &str,
    case: &str,
    c: usize,
) -> anyhow::Result<(EngineBuilder, PgSchema, PgNodes)> {
    use nagare_engine::store::pg::MAX_POOL_SIZE;
    use nagare_engine::store::{PgOptions, PgStore};
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let name = format!("bench_{}_{case}_{}", std::process::id(), stamp.as_millis());
    let schema = PgSchema { url: url.to_string(), name: name.clone() };
    let given = PgOptions::from_store(url).map_err(|e| anyhow!("--store: {e}"))?;
    let pool_size = if url.contains("pool_size=") { given.pool_size } else { c.clamp(1, MAX_POOL_SIZE) };
    let opts = PgOptions { pool_size, ..given.schema(name) };
    let store = PgStore::open(&opts).map_err(|e| anyhow!("{e}"))?;
    Ok((builder.store(store), schema, PgNodes(opts)))
}

/// How to open more nodes on a bench run's schema.
#[cfg(feature = "postgres")]
pub struct PgNodes(nagare_engine::store::PgOptions);

#[cfg(feature = "postgres")]
impl PgNodes {
    /// One more engine (node) on the run's schema, built from `builder`.
    pub fn engine(&self, builder: EngineBuilder) -> anyhow::Result<Engine> {
        let store = nagare_engine::store::PgStore::open(&self.0).map_err(|e| anyhow!("{e}"))?;
        builder.store(store).build().map_err(explain)
    }
}

#[cfg(not(feature = "postgres"))]
pub struct PgNodes;

#[cfg(not(feature = "postgres"))]
impl PgNodes {
    pub fn engine(&self, _: EngineBuilder) -> anyhow::Result<Engine> {
        bail!("--nodes: this nagare was built without the `postgres` feature")
    }
}

#[cfg(not(feature = "postgres"))]
fn pg_bench_store(_: EngineBuilder, _: &str, _: &str, _: usize) -> anyhow::Result<(EngineBuilder, PgSchema, PgNodes)> {
    bail!("--store: this nagare was built without the `postgres` feature")
}
