//! The stores the conformance tests run on: sled always, and PostgreSQL when
//! `NAGARE_TEST_PG` holds a connection string (each test in a schema of its own,
//! dropped at the end, so tests run in parallel). Without the variable the
//! PostgreSQL half is skipped with a note on stderr.
#![allow(dead_code)]

use nagare_engine::store::Durability;
use nagare_engine::{Engine, EngineBuilder};
use tempfile::TempDir;

pub mod child;

/// One store a test runs on. Open it with [`TestStore::builder`]; calling it again
/// reopens the same store (drop the previous engine first: sled locks its files).
pub struct TestStore {
    pub name: &'static str,
    dir: TempDir,
    /// (connection string, schema)
    pg: Option<(String, String)>,
}

impl TestStore {
    /// sled, then PostgreSQL when `NAGARE_TEST_PG` is set.
    pub fn all(test: &str) -> Vec<TestStore> {
        let mut v = vec![TestStore { name: "sled", dir: tempfile::tempdir().unwrap(), pg: None }];
        match std::env::var("NAGARE_TEST_PG") {
            Ok(url) if !url.is_empty() => {
                if cfg!(feature = "postgres") {
                    v.push(TestStore {
                        name: "postgres",
                        dir: tempfile::tempdir().unwrap(),
                        pg: Some((url, schema_for(test))),
                    });
                } else {
                    eprintln!(
                        "note: {test}: NAGARE_TEST_PG is set but nagare-engine is built without the `postgres` feature"
                    );
                }
            }
            _ => {
                eprintln!("note: {test}: PostgreSQL half skipped (set NAGARE_TEST_PG to a connection string to run it)")
            }
        }
        v
    }

    pub fn builder(&self) -> EngineBuilder {
        self.builder_with(Durability::Relaxed)
    }

    /// With sled's `durability` (a PostgreSQL commit is always durable).
    pub fn builder_with(&self, durability: Durability) -> EngineBuilder {
        eprintln!("store: {}", self.name);
        match &self.pg {
            None => Engine::builder().data_dir_with(self.dir.path(), durability).expect("sled store opens"),
            Some((url, schema)) => pg_builder(url, schema, self.dir.path()),
        }
    }

    /// Whether several engines may open this store at once (several nodes).
    pub fn shared(&self) -> bool {
        self.pg.is_some()
    }

    pub fn engine(&self) -> Engine {
        self.builder().build().expect("engine opens")
    }
}

#[cfg(feature = "postgres")]
fn pg_builder(url: &str, schema: &str, dir: &std::path::Path) -> EngineBuilder {
    use nagare_engine::blobs::Blobs;
    use nagare_engine::store::{PgOptions, PgStore};
    let store = PgStore::open(&PgOptions::new(url).schema(schema)).expect("PostgreSQL store opens");
    Engine::builder().store(store).blobs(Blobs::in_dir(&dir.join("blobs")).expect("blob dir"))
}

#[cfg(not(feature = "postgres"))]
fn pg_builder(_: &str, _: &str, _: &std::path::Path) -> EngineBuilder {
    unreachable!("PostgreSQL stores are only made with the feature")
}

/// A schema name unique to this test and run: letters, digits and `_`.
fn schema_for(test: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let clean: String =
        test.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(36).collect();
    format!("t_{clean}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

impl Drop for TestStore {
    fn drop(&mut self) {
        #[cfg(feature = "postgres")]
        if let Some((url, schema)) = &self.pg {
            if let Err(e) = nagare_engine::store::PgStore::drop_schema(url, schema) {
                eprintln!("could not drop test schema {schema}: {e}");
            }
        }
    }
}
