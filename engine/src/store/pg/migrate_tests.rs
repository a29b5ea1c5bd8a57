//! `migrate`: a sled store with instances in every state, copied into PostgreSQL,
//! and an engine on PostgreSQL carrying them on. Runs when `NAGARE_TEST_PG` holds
//! a connection string, skipped otherwise.

use super::super::super::{Durability, SledKv};
use super::*;
use crate::runtime::{Outcome, Status};
use crate::{Correlation, Engine, MessageOptions, StartOptions, Vars};
use serde_json::json;

const FLOW: &str = r#"
id: flow
lanes: { boss: { groups: [bosses] } }
variables: { k: { type: string } }
start: { next: decide }
nodes:
  decide: { user_task: Decide, lane: boss, next: wait }
  wait: { message: reply, key: k, next: pause }
  pause: { timer: 1h, next: done }
  done: { end: }
"#;

const QUICK: &str = "id: quick\nstart: { next: done }\nnodes:\n  done: { end: }\n";

fn vars(k: &str) -> Vars {
    Vars::from([("k".to_string(), json!(k))])
}

fn keyed(k: &str) -> StartOptions {
    StartOptions { business_key: Some(k.into()), ..Default::default() }
}

fn open_task(engine: &Engine, id: u64) -> String {
    let q = TaskQuery { instance: Some(id), ..Default::default() };
    engine.tasks(&q).unwrap().pop().expect("an open task").id
}

struct Schema(String, String);

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = PgStore::drop_schema(&self.0, &self.1);
    }
}

#[test]
fn a_sled_store_migrated_to_postgres_is_carried_on_by_an_engine_there() {
    let Ok(url) = std::env::var("NAGARE_TEST_PG") else {
        eprintln!("note: migrate: skipped (set NAGARE_TEST_PG to a PostgreSQL connection string to run it)");
        return;
    };
    let schema = Schema(url.clone(), format!("u_migrate_{}", std::process::id()));
    let dir = tempfile::tempdir().unwrap();
    // The sled store: one instance in each state.
    let (waiting_task, waiting_message, at_timer, cancelled, completed) = {
        let engine = Engine::builder().data_dir(dir.path()).unwrap().build().unwrap();
        engine.deploy("flow.yaml", FLOW).unwrap();
        engine.deploy("quick.yaml", QUICK).unwrap();
        let a = engine.start("flow", vars("a"), keyed("A")).unwrap();
        let b = engine.start("flow", vars("b"), keyed("B")).unwrap();
        engine.complete(&open_task(&engine, b.id), "tanaka", Vars::new(), Outcome::Next).unwrap();
        let c = engine.start("flow", vars("c"), keyed("C")).unwrap();
        engine.complete(&open_task(&engine, c.id), "tanaka", Vars::new(), Outcome::Next).unwrap();
        let sent = engine.correlate("reply", "c", json!({}), &MessageOptions::default()).unwrap();
        assert!(matches!(sent, Correlation::Delivered { .. }), "{sent:?}");
        let d = engine.start("flow", vars("d"), keyed("D")).unwrap();
        engine.cancel(d.id, "admin", "no longer needed").unwrap();
        let e = engine.start("quick", Vars::new(), keyed("E")).unwrap();
        assert_eq!(e.status, Status::Completed);
        // A message nobody waits for yet: buffered.
        let early = engine.correlate("reply", "later", json!({}), &MessageOptions::default()).unwrap();
        assert!(matches!(early, Correlation::Buffered { .. }), "{early:?}");
        (a.id, b.id, c.id, d.id, e.id)
    };
    let source = KvStore::new(SledKv::open(dir.path(), Durability::Flush).unwrap()).unwrap();
    let target = PgStore::open(&PgOptions::new(&url).schema(&schema.1)).unwrap();
    let mut lines = Vec::new();
    let report = migrate(&source, &target, &mut |l| lines.push(l.to_string())).unwrap();
    let rows = |t: &str| report.iter().find(|r| r.0 == t).unwrap().1.rows;
    assert_eq!(rows("instances"), 5);
    assert_eq!(rows("definitions"), 2);
    assert_eq!(rows("business_keys"), 5);
    assert_eq!(rows("messages"), 1);
    assert_eq!(rows("subscriptions"), 1, "b waits for its reply");
    assert!(rows("jobs") >= 2, "c's timer and the buffered message's expiry");
    assert!(rows("history") > 10 && rows("tasks") == 4);
    assert!(lines.iter().any(|l| l.contains("instances: 5 of 5")), "{lines:?}");
    // A second migration into the same database is refused.
    let err = migrate(&source, &target, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("already holds a nagare store (2 definitions, 5 instances"), "{err}");
    drop((source, target));

    // An engine on PostgreSQL carries every instance on.
    let store = PgStore::open(&PgOptions::new(&url).schema(&schema.1)).unwrap();
    let engine = Engine::builder().store(store).build().unwrap();
    assert_eq!(engine.instance(cancelled).unwrap().status, Status::Cancelled);
    assert_eq!(engine.instance(completed).unwrap().status, Status::Completed);
    assert_eq!(engine.store().instance_by_key("flow", "A").unwrap(), Some(waiting_task));
    engine.complete(&open_task(&engine, waiting_task), "tanaka", Vars::new(), Outcome::Next).unwrap();
    let got = engine.correlate("reply", "b", json!({}), &MessageOptions::default()).unwrap();
    assert!(matches!(got, Correlation::Delivered { instance, .. } if instance == waiting_message), "{got:?}");
    let timer = engine.store().jobs().unwrap().into_iter().find(|j| j.instance == at_timer);
    assert!(timer.is_some(), "c's timer is still scheduled");
    // The buffered message is there for a token that starts waiting now; new ids
    // come after the copied ones.
    let f = engine.start("flow", vars("later"), keyed("F")).unwrap();
    assert!(f.id > completed, "{} after {completed}", f.id);
    engine.complete(&open_task(&engine, f.id), "tanaka", Vars::new(), Outcome::Next).unwrap();
    let f = engine.instance(f.id).unwrap();
    assert!(engine.store().buffered("reply", "later").unwrap().is_empty(), "consumed by f: {f:?}");
    // A business key copied still belongs to its instance.
    let again = engine.start("flow", vars("a"), keyed("A")).unwrap();
    assert_eq!(again.id, waiting_task);
}
