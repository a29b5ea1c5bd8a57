//! Unit tests of the migration rewrite (engine-level tests: engine/tests/migrate.rs).
