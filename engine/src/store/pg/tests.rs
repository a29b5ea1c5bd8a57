//! What the PostgreSQL store guarantees beyond one process's locks: a stale
//! instance write, a second consumption of a buffered message and a second owner
//! of a business key are refused by the database. Run when `NAGARE_TEST_PG` holds
//! a connection string (each test in a schema of its own), skipped otherwise.

use super::*;
use crate::runtime::{HistoryEntry, HistoryEvent};
use crate::{Engine, StartOptions, Vars};

const YAML: &str = r#"
id: approve
lanes: { boss: { groups: [bosses] } }
start: { next: decide }
nodes:
  decide: { user_task: Decide, lane: boss, next: done }
  done: { end: }
"#;

/// A schema for one test, dropped when it ends.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(test: &str) -> Option<Schema> {
        let Ok(url) = std::env::var("NAGARE_TEST_PG") else {
            eprintln!("note: {test}: skipped (set NAGARE_TEST_PG to a PostgreSQL connection string to run it)");
            return None;
        };
        Some(Schema { url, name: format!("u_{test}_{}", std::process::id()) })
    }

    fn open(&self) -> Result<PgStore, StoreError> {
        PgStore::open(&PgOptions::new(&self.url).schema(&self.name))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = PgStore::drop_schema(&self.url, &self.name);
    }
}

/// An instance waiting on its task, as stored, on an engine over a second handle.
fn started(schema: &Schema, key: Option<&str>) -> Instance {
    let engine = Engine::builder().store(schema.open().unwrap()).build().unwrap();
    engine.deploy("approve.yaml", YAML).unwrap_or_else(|e| panic!("{e}"));
    let opts = StartOptions { business_key: key.map(Into::into), ..Default::default() };
    engine.start("approve", Vars::new(), opts).unwrap()
}

/// `inst` one history line further, as an event would commit it.
fn one_more_line(inst: &Instance, user: &str) -> Batch {
    let mut next = inst.clone();
    let line = HistoryEntry {
        proxy: None,
        seq: next.history_len,
        at: next.started_at,
        node: None,
        user: Some(user.into()),
        event: HistoryEvent::Joined,
    };
    next.history_len += 1;
    next.note_participants(std::slice::from_ref(&line));
    Batch { instances: vec![next], history: vec![(inst.id, line)], ..Batch::default() }
}

#[test]
fn a_write_of_an_instance_read_before_another_write_is_a_conflict() {
    let Some(schema) = Schema::new("stale_write") else { return };
    let inst = started(&schema, None);
    // Two nodes read the same revision; the first to commit wins.
    let (a, b) = (schema.open().unwrap(), schema.open().unwrap());
    a.commit(one_more_line(&inst, "sato")).unwrap();
    let err = b.commit(one_more_line(&inst, "kato")).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    // Nothing of the loser's batch was written.
    let history = b.history(inst.id).unwrap();
    assert_eq!(history.len() as u32, inst.history_len + 1);
    assert_eq!(history.last().unwrap().user.as_deref(), Some("sato"));
    assert_eq!(b.instance(inst.id).unwrap().unwrap().history_len, inst.history_len + 1);
    let kato = InstanceFilter { participant: Some("kato".into()), ..Default::default() };
    assert!(b.instances(&kato).unwrap().is_empty());
    // Re-read and re-applied, the loser's event goes through.
    let now = b.instance(inst.id).unwrap().unwrap();
    b.commit(one_more_line(&now, "kato")).unwrap();
    assert_eq!(a.instances(&kato).unwrap().len(), 1);
}

#[test]
fn a_buffered_message_is_consumed_once() {
    let Some(schema) = Schema::new("message_once") else { return };
    let (a, b) = (schema.open().unwrap(), schema.open().unwrap());
    let id = a.next_message_id().unwrap();
    assert!(b.next_message_id().unwrap() > id, "message ids come from one sequence");
    let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let m = BufferedMessage {
        id,
        name: "reply".into(),
        key: "R\u{0}キー".into(),
        payload: serde_json::json!({ "text": "\u{0}" }),
        received_at: at,
        expires_at: at,
    };
    a.commit(Batch { messages_put: vec![m.clone()], ..Batch::default() }).unwrap();
    assert_eq!(b.buffered("reply", "R\u{0}キー").unwrap(), vec![m.clone()]);
    a.commit(Batch { messages_delete: vec![m.clone()], ..Batch::default() }).unwrap();
    let err = b.commit(Batch { messages_delete: vec![m], ..Batch::default() }).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
}

#[test]
fn a_business_key_has_one_instance_across_stores() {
    let Some(schema) = Schema::new("business_key") else { return };
    let first = started(&schema, Some("record-1"));
    let b = schema.open().unwrap();
    // Another node, not seeing the first start, starts one with the same key.
    let mut other = first.clone();
    other.id = b.next_instance_id().unwrap();
    assert!(other.id > first.id, "instance ids come from one sequence");
    other.history_len = 0;
    let err = b.commit(Batch { instances: vec![other.clone()], ..Batch::default() }).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(b.instance(other.id).unwrap(), None, "the losing start left nothing");
    assert_eq!(b.instance_by_key("approve", "record-1").unwrap(), Some(first.id));
}

#[test]
fn a_schema_written_by_a_newer_nagare_is_refused() {
    let Some(schema) = Schema::new("newer_schema") else { return };
    let store = schema.open().unwrap();
    store.pool.run(|c| Box::pin(async move { c.batch("UPDATE nagare_schema SET version = 99").await })).unwrap();
    let err = schema.open().err().expect("refused");
    assert!(matches!(err, StoreError::UnknownFormat { .. }), "{err}");
    assert!(err.to_string().contains("99"), "{err}");
}

#[test]
fn bad_options_are_refused_with_what_to_do() {
    let bad_schema = PgStore::open(&PgOptions::new("host=/nonexistent").schema("x; DROP TABLE y"));
    assert!(bad_schema.err().unwrap().to_string().contains("letters, digits and `_`"));
    let bad_pool = PgStore::open(&PgOptions { pool_size: 0, ..PgOptions::new("host=/nonexistent") });
    assert!(bad_pool.err().unwrap().to_string().contains("pool size 0"));
    let unreachable = PgStore::open(&PgOptions::new("host=/nonexistent port=1 connect_timeout=1"));
    assert!(unreachable.err().unwrap().to_string().contains("cannot connect to PostgreSQL"));
}

#[test]
fn keys_with_nul_are_stored_and_read_back_unchanged() {
    for s in ["", "plain", "a\u{0}b", "\u{FFFF}0", "\u{FFFF}", "\u{0}\u{FFFF}\u{0}", "申請\u{0}"] {
        assert!(!key(s).contains('\0'), "{s:?}");
        assert_eq!(unkey(key(s)), s, "{s:?}");
    }
    assert_eq!(key("1-2"), "1-2", "ids without NUL are stored as they are");
}

#[test]
fn a_started_job_is_leased_to_one_store_until_written_or_expired() {
    let Some(schema) = Schema::new("job_lease") else { return };
    let (a, b) = (schema.open().unwrap(), schema.open().unwrap());
    let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let job = Job {
        id: "7-3".into(),
        instance: 7,
        token: 1,
        node: "call".into(),
        due: at,
        attempt: 1,
        kind: crate::runtime::JobKind::Connector {
            connector: "x".into(),
            input: serde_json::json!({}),
            idempotency_key: "k".into(),
            timeout_ms: 30_000,
        },
        priority: nagare_core::priority::DEFAULT,
        process: String::new(),
    };
    a.commit(Batch { jobs_put: vec![(None, job.clone())], ..Batch::default() }).unwrap();
    assert_eq!(a.count_start("7-3").unwrap(), Some((job.clone(), 1)));
    let err = b.count_start("7-3").unwrap_err();
    assert!(matches!(err, StoreError::Leased { ref job } if job == "7-3"), "{err}");
    assert!(matches!(a.count_start("7-3"), Err(StoreError::Leased { .. })), "not twice at once on one node either");
    // The lease covers the call's timeout (30 s) and JOB_LEASE.
    let ahead: f64 = a
        .pool
        .run(|c| {
            Box::pin(async move {
                let r = c.query("SELECT extract(epoch FROM lease_until - now())::float8 FROM jobs", &[]).await?;
                Ok(r[0].get(0))
            })
        })
        .unwrap();
    assert!((JOB_LEASE.as_secs_f64() + 25.0..=JOB_LEASE.as_secs_f64() + 31.0).contains(&ahead), "{ahead}");
    // A holder that died: its lease runs out and another store takes the job.
    a.pool
        .run(|c| Box::pin(async move { c.batch("UPDATE jobs SET lease_until = now() - interval '1 second'").await }))
        .unwrap();
    assert_eq!(b.count_start("7-3").unwrap(), Some((job.clone(), 2)));
    assert!(matches!(a.count_start("7-3"), Err(StoreError::Leased { .. })));
    // A written job (a retry, a new due time) is free again, its starts counted anew.
    a.commit(Batch { jobs_put: vec![(Some(job.clone()), job.clone())], ..Batch::default() }).unwrap();
    assert_eq!(a.count_start("7-3").unwrap(), Some((job.clone(), 1)));
    a.commit(Batch { jobs_delete: vec![job], ..Batch::default() }).unwrap();
    assert_eq!(b.count_start("7-3").unwrap(), None, "gone: not leased, not there");
}

#[test]
fn options_in_the_store_string_set_the_statement_timeout_and_the_job_lease() {
    let Some(schema) = Schema::new("store_options") else { return };
    let sep = if schema.url.starts_with("postgres") {
        if schema.url.contains('?') {
            "&"
        } else {
            "?"
        }
    } else {
        " "
    };
    let joined = |opts: &str| format!("{}{sep}{}", schema.url, opts.replace('&', if sep == " " { " " } else { "&" }));
    let opts = PgOptions::from_store(&joined("statement_timeout=100ms&job_lease=7s&pool_size=2")).unwrap();
    assert_eq!((opts.pool_size, opts.job_lease.as_secs()), (2, 7));
    let store = PgStore::open(&opts.schema(&schema.name)).unwrap();
    let slow = store.pool.run(|c| Box::pin(async move { c.batch("SELECT pg_sleep(1)").await }));
    assert!(slow.unwrap_err().to_string().contains("statement timeout"), "a statement over 100 ms is cancelled");
    // The job lease: 7 s beyond the call's timeout (30 s).
    let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let job = Job {
        id: "9-1".into(),
        instance: 9,
        token: 1,
        node: "call".into(),
        due: at,
        attempt: 1,
        kind: crate::runtime::JobKind::Connector {
            connector: "x".into(),
            input: serde_json::json!({}),
            idempotency_key: "k".into(),
            timeout_ms: 30_000,
        },
        priority: nagare_core::priority::DEFAULT,
        process: String::new(),
    };
    store.commit(Batch { jobs_put: vec![(None, job)], ..Batch::default() }).unwrap();
    store.count_start("9-1").unwrap();
    let ahead: f64 = store
        .pool
        .run(|c| {
            Box::pin(async move {
                let r = c.query("SELECT extract(epoch FROM lease_until - now())::float8 FROM jobs", &[]).await?;
                Ok(r[0].get(0))
            })
        })
        .unwrap();
    assert!((35.0..=37.5).contains(&ahead), "{ahead}");
}

#[test]
fn a_buffered_message_expiry_is_leased_to_one_node() {
    let Some(schema) = Schema::new("expiry_lease") else { return };
    let a = Engine::builder().store(schema.open().unwrap()).build().unwrap();
    let b = Engine::builder().store(schema.open().unwrap()).build().unwrap();
    let sent = a.correlate("reply", "nobody", serde_json::json!({}), &crate::MessageOptions::default()).unwrap();
    assert!(matches!(sent, crate::Correlation::Buffered { .. }), "{sent:?}");
    let job = a.store().jobs().unwrap().pop().expect("the expiry job");
    assert!(matches!(job.kind, crate::runtime::JobKind::MessageExpiry { .. }));
    assert!(a.begin_run(&job.id).unwrap().is_some(), "a takes it");
    let err = b.begin_run(&job.id).unwrap_err();
    assert!(matches!(err, crate::EngineError::Store(StoreError::Leased { .. })), "{err}");
}
