//! The schema, as numbered migrations applied in order at start.
//!
//! `nagare_schema` holds the version reached. A database with a higher version than
//! this nagare knows was written by a newer nagare and is refused (like the sled
//! format version). Migrations run in one transaction under an advisory lock, so
//! several nodes starting at once apply each migration once.
//!
//! Records are stored as `json` (the same serde encoding as the sled store; `json`
//! and not `jsonb`, which refuses the `\u0000` a user may put in a value), next to
//! the columns that queries filter and sort on. Text keys use the "C" collation:
//! byte order, the order of the sled keys and of Rust strings, which the engine's
//! due window and the inbox cursors rely on. Where a row belongs to an instance,
//! its key starts with the instance id, so the tables can later be distributed by
//! instance (see ARCHITECTURE: what would change for Citus).

use super::pool::Conn;
use crate::store::StoreError;

/// The schema version this nagare writes: the number of the last migration.
pub const SCHEMA_VERSION: i32 = 4;

/// Migration `n` is `MIGRATIONS[n - 1]`. Never edit a released one: add another.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE definitions (
    process text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (process, version)
);
CREATE TABLE process_configs (
    process text COLLATE "C" PRIMARY KEY,
    record json NOT NULL
);
CREATE TABLE instances (
    id bigint PRIMARY KEY,
    process text COLLATE "C" NOT NULL,
    status text NOT NULL,
    -- History lines written so far: the revision a commit checks and advances.
    history_len bigint NOT NULL,
    started_at timestamptz NOT NULL,
    started_by text COLLATE "C",
    record json NOT NULL
);
CREATE INDEX instances_by_process ON instances (process, id);
CREATE TABLE business_keys (
    process text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    instance bigint NOT NULL,
    PRIMARY KEY (process, key)
);
CREATE TABLE participants (
    instance bigint NOT NULL,
    user_name text COLLATE "C" NOT NULL,
    PRIMARY KEY (instance, user_name)
);
CREATE INDEX participants_by_user ON participants (user_name, instance);
-- Append-only: one row per history line.
CREATE TABLE history (
    instance bigint NOT NULL,
    seq bigint NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (instance, seq)
);
CREATE TABLE tasks (
    instance bigint NOT NULL,
    id text COLLATE "C" NOT NULL,
    status text NOT NULL,
    assignee text COLLATE "C",
    -- Due date in ms since the epoch; undated: the largest bigint (sorts last).
    due_ms bigint NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (instance, id)
);
CREATE INDEX tasks_by_id ON tasks (id);
CREATE INDEX tasks_open_by_assignee ON tasks (assignee, due_ms, id) WHERE status = 'open';
CREATE INDEX tasks_open_by_due ON tasks (due_ms, id) WHERE status = 'open';
-- The inbox index: one row per group of each open task.
CREATE TABLE task_groups (
    instance bigint NOT NULL,
    task text COLLATE "C" NOT NULL,
    grp text COLLATE "C" NOT NULL,
    due_ms bigint NOT NULL,
    PRIMARY KEY (instance, task, grp)
);
CREATE INDEX task_groups_inbox ON task_groups (grp, due_ms, task);
CREATE TABLE jobs (
    instance bigint NOT NULL,
    id text COLLATE "C" NOT NULL,
    due_ms bigint NOT NULL,
    -- Starts counted since the job was last written (Store::count_start).
    starts integer NOT NULL DEFAULT 0,
    -- For several nodes (not used yet): who runs it, until when.
    lease_owner text,
    lease_until timestamptz,
    record json NOT NULL,
    PRIMARY KEY (instance, id)
);
CREATE UNIQUE INDEX jobs_by_id ON jobs (id);
CREATE INDEX jobs_due ON jobs (due_ms, id);
CREATE TABLE subscriptions (
    instance bigint NOT NULL,
    token bigint NOT NULL,
    name text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (instance, token, name, key)
);
CREATE INDEX subscriptions_by_message ON subscriptions (name, key, instance, token);
CREATE TABLE messages (
    id bigint PRIMARY KEY,
    name text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    record json NOT NULL
);
CREATE INDEX messages_by_message ON messages (name, key, id);
CREATE SEQUENCE instance_ids;
CREATE SEQUENCE message_ids;
"#,
    // 2: external workers' leases, shared by every node (Store::lease_to_worker).
    r#"
ALTER TABLE jobs ADD COLUMN worker text, ADD COLUMN worker_attempt integer, ADD COLUMN worker_until timestamptz;
"#,
    // 3: archived instances' summaries and the archiver's intent (crate::archive).
    r#"
CREATE TABLE archived (
    id bigint PRIMARY KEY,
    process text COLLATE "C" NOT NULL,
    record json NOT NULL
);
CREATE TABLE archive_intent (
    one integer PRIMARY KEY CHECK (one = 1),
    record json NOT NULL
);
"#,
    // 4: an admin's status filter and the incident list read an index, in id order
    // (a page costs the same at any number of instances).
    r#"
CREATE INDEX instances_by_status ON instances (status, id);
CREATE INDEX instances_by_status_process ON instances (status, process, id);
"#,
];

/// Bring the schema to [`SCHEMA_VERSION`], or refuse a newer one.
pub async fn migrate(c: &mut Conn, schema: Option<&str>) -> Result<(), StoreError> {
    c.batch("BEGIN").await?;
    let result = migrate_in_transaction(c, schema).await;
    match result {
        Ok(()) => c.batch("COMMIT").await,
        Err(e) => {
            let _ = c.batch("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn migrate_in_transaction(c: &mut Conn, schema: Option<&str>) -> Result<(), StoreError> {
    // One migrating node at a time (the key is arbitrary but fixed: "nagare" in ASCII).
    c.batch("SELECT pg_advisory_xact_lock(110971103114101)").await?;
    if let Some(s) = schema {
        c.batch(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\"")).await?;
    }
    c.batch("CREATE TABLE IF NOT EXISTS nagare_schema (version integer NOT NULL)").await?;
    let rows = c.query("SELECT version FROM nagare_schema", &[]).await?;
    let found: i32 = match rows.first() {
        Some(r) => r.get(0),
        None => {
            c.execute("INSERT INTO nagare_schema (version) VALUES (0)", &[]).await?;
            0
        }
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::UnknownFormat {
            found: format!("PostgreSQL schema {found}"),
            supported: SCHEMA_VERSION as u32,
        });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        c.batch(sql).await?;
        tracing::info!(version = n + 1, "PostgreSQL schema migrated");
    }
    c.execute("UPDATE nagare_schema SET version = $1", &[&SCHEMA_VERSION]).await?;
    Ok(())
}
