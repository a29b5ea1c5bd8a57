//! The instance indexes by status and process (store format 2): filtered instance
//! lists and the incident list read them instead of every instance, give the same
//! answers as a full scan through every status change, and a version-1 store gets
//! them built when opened.

use nagare_engine::runtime::{Outcome, Status};
use nagare_engine::store::{IncidentFilter, InstanceFilter};
use nagare_engine::{Engine, StartOptions, Vars};
use serde_json::json;

mod common;
use common::TestStore;

fn process(id: &str) -> String {
    format!(
        r#"
id: {id}
lanes:
  staff: {{ groups: [staff] }}
variables:
  fail: {{ type: bool, default: false }}
start: {{ next: check }}
nodes:
  check: {{ script: 'if fail {{ throw "boom" }}', next: wait }}
  wait: {{ user_task: Wait, lane: staff, next: done }}
  done: {{ end: }}
"#
    )
}

/// 200 instances over processes `a` and `b`: some with an incident, some
/// completed, some cancelled, the rest waiting.
fn fill(engine: &Engine) {
    engine.deploy("a.yaml", &process("a")).unwrap();
    engine.deploy("b.yaml", &process("b")).unwrap();
    for i in 0..200u64 {
        let p = if i % 2 == 0 { "a" } else { "b" };
        let vars: Vars = [("fail".to_string(), json!(i % 7 == 0))].into();
        let inst = engine.start(p, vars, StartOptions::default()).unwrap();
        if i % 7 == 0 {
            assert_eq!(inst.status, Status::Incident);
            continue;
        }
        if i % 3 == 0 {
            let task = inst.open_task_ids().next().unwrap().to_string();
            engine.complete(&task, "sato", Vars::new(), Outcome::Next).unwrap();
        } else if i % 11 == 0 {
            engine.cancel(inst.id, "admin", "test").unwrap();
        }
    }
}

/// Every filter of status and process, read in pages of 7, against a full scan.
fn lists_match_a_full_scan(engine: &Engine) {
    let all = engine.instances(&InstanceFilter::default()).unwrap();
    assert_eq!(all.len(), 200);
    let statuses =
        [None, Some(Status::Running), Some(Status::Incident), Some(Status::Completed), Some(Status::Cancelled)];
    for status in statuses {
        for process in [None, Some("a"), Some("b")] {
            let filter = InstanceFilter { status, process: process.map(String::from), ..Default::default() };
            let want: Vec<u64> = all.iter().filter(|i| filter.matches(i)).map(|i| i.id).collect();
            let mut got = Vec::new();
            let mut after = None;
            loop {
                let page = engine.instances(&InstanceFilter { after, limit: Some(7), ..filter.clone() }).unwrap();
                got.extend(page.iter().map(|i| i.id));
                after = page.last().map(|i| i.id);
                if page.len() < 7 {
                    break;
                }
            }
            assert_eq!(got, want, "status {status:?}, process {process:?}");
            if status.is_some() {
                assert!(!want.is_empty(), "every status occurs: {status:?} {process:?}");
            }
        }
    }
    for process in [None, Some("a")] {
        let want: Vec<u64> = all
            .iter()
            .filter(|i| i.status == Status::Incident && process.is_none_or(|p| i.process == p))
            .map(|i| i.id)
            .collect();
        let f = IncidentFilter { process: process.map(String::from), ..Default::default() };
        let got: Vec<u64> = engine.incidents(&f).unwrap().iter().map(|v| v.instance).collect();
        assert_eq!(got, want);
        let first = engine.incidents(&IncidentFilter { limit: Some(3), ..f }).unwrap();
        assert_eq!(first.iter().map(|v| v.instance).collect::<Vec<_>>(), want[..3]);
    }
}

#[test]
fn filtered_instance_lists_and_incidents_read_the_indexes_and_agree_with_a_full_scan() {
    for store in TestStore::all("filtered_lists_indexes") {
        let engine = store.engine();
        fill(&engine);
        lists_match_a_full_scan(&engine);
        // An incident retried after fixing its variable leaves the incident index.
        let inc = engine.incidents(&IncidentFilter::default()).unwrap();
        let first = &inc[0];
        let vars: Vars = [("fail".to_string(), json!(false))].into();
        engine.retry_incident(first.instance, first.incident.id, vars, "admin").unwrap();
        let running = InstanceFilter { status: Some(Status::Running), ..Default::default() };
        assert!(engine.instances(&running).unwrap().iter().any(|i| i.id == first.instance));
        let incident = InstanceFilter { status: Some(Status::Incident), ..Default::default() };
        assert!(!engine.instances(&incident).unwrap().iter().any(|i| i.id == first.instance));
    }
}

/// Wait for sled's directory lock, released from a background thread after an
/// engine is dropped.
fn open_sled(dir: &std::path::Path) -> sled::Db {
    (0..100)
        .find_map(|_| {
            sled::open(dir).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                None
            })
        })
        .expect("sled opens once the engine has let go of it")
}

#[test]
fn a_version_1_store_gets_the_instance_indexes_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Engine::builder().data_dir(dir.path()).unwrap().build().unwrap();
    {
        let engine = open();
        fill(&engine);
    }
    // Make it a version-1 store: no instance indexes, format 1.
    {
        let db = open_sled(dir.path());
        let tree = db.open_tree("nagare").unwrap();
        let mut removed = 0;
        for prefix in [&b"xs/"[..], b"xsp/", b"xp/"] {
            let index: Vec<_> = tree.scan_prefix(prefix).keys().map(Result::unwrap).collect();
            removed += index.len();
            for k in index {
                tree.remove(k).unwrap();
            }
        }
        assert_eq!(removed, 600, "three index keys per instance");
        assert_eq!(tree.get(b"m/format").unwrap().as_deref(), Some(&b"2"[..]));
        tree.insert(b"m/format", &b"1"[..]).unwrap();
        db.flush().unwrap();
    }
    {
        let engine = open();
        lists_match_a_full_scan(&engine);
    }
    let db = open_sled(dir.path());
    let tree = db.open_tree("nagare").unwrap();
    assert_eq!(tree.get(b"m/format").unwrap().as_deref(), Some(&b"2"[..]), "upgraded to format 2");
    assert_eq!(tree.scan_prefix(b"xs/").count(), 200);
}
