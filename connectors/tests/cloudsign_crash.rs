//! Issue 12: an engine killed between "CloudSign draft created" and the commit that
//! records it does not create a second draft when it runs the step again. The call
//! is re-run with the same idempotency key (it is stored in the job), and
//! `cloudsign.create_draft` finds the draft carrying that key's marker instead of
//! creating another.
//!
//! The test binary re-executes itself as the engine process (`engine_child`, which
//! does nothing unless `NAGARE_CS_CRASH_DIR` is set). The first child creates the
//! draft through the real connector and then aborts the process before the result
//! can be committed, as a `kill -9` at that moment would; the second child reopens
//! the store and runs the step again. The emulator lives in the parent, so it sees
//! both.
#![cfg(unix)]

use nagare_connectors::cloudsign::emulator::Emulator;
use nagare_connectors::{Connectors, ConnectorsConfig};
use nagare_engine::runtime::Status;
use nagare_engine::{Call, Connector, ConnectorError, Engine, Executor, StartOptions, Vars};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

const DIR_ENV: &str = "NAGARE_CS_CRASH_DIR";
const BASE_ENV: &str = "NAGARE_CS_CRASH_BASE";

const YAML: &str = r#"
id: draft
variables:
  文書: { type: string }
start: { next: 下書き }
nodes:
  下書き:
    service: crashing.create_draft
    with:
      user: '"sato"'
      title: '"業務委託契約書"'
      participants: '[#{ email: "signer@example.com", name: "署名 太郎" }]'
    set: { 文書: result.id }
    next: done
  done: { end: }
"#;

/// `cloudsign.create_draft`, and then (once: a marker file says it happened) the
/// process dies before the engine can store the answer.
struct DiesAfterCreating {
    inner: Arc<dyn Connector>,
    marker: PathBuf,
}

impl Connector for DiesAfterCreating {
    fn call<'a>(&'a self, call: &'a Call) -> nagare_engine::connector::BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin(async move {
            let out = self.inner.call(call).await?;
            if !self.marker.exists() {
                std::fs::write(&self.marker, call.idempotency_key.as_bytes()).unwrap();
                std::process::abort();
            }
            Ok(out)
        })
    }
}

fn open(dir: &Path, base: &str) -> Engine {
    let yaml = format!("connectors:\n  cloudsign:\n    type: cloudsign\n    base_url: '{base}'\n    users:\n      sato: demo-client-sato\n");
    let connectors = Connectors::new(&ConnectorsConfig::from_yaml(&yaml).unwrap());
    let registry = connectors.registry();
    let create = registry.get("cloudsign.create_draft").unwrap();
    Engine::builder()
        .data_dir(dir.join("engine"))
        .unwrap()
        .connectors(registry)
        .connector("crashing.create_draft", DiesAfterCreating { inner: create, marker: dir.join("aborted-once") })
        .build()
        .unwrap()
}

#[test]
fn engine_child() {
    let (Some(dir), Ok(base)) = (std::env::var_os(DIR_ENV), std::env::var(BASE_ENV)) else { return };
    let engine = open(Path::new(&dir), &base);
    engine.deploy("draft.yaml", YAML).unwrap();
    if engine.instances(&Default::default()).unwrap().is_empty() {
        engine.start("draft", Vars::new(), StartOptions::default()).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(Executor::new(engine.clone()).run_until_idle());
}

#[test]
fn a_kill_between_draft_created_and_commit_does_not_create_a_second_draft() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::in_memory();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = emu.router();
    rt.spawn(async move { axum::serve(listener, router).await.unwrap() });

    let exe = std::env::current_exe().unwrap();
    let child = || {
        Command::new(&exe)
            .args(["--exact", "engine_child", "--nocapture", "--test-threads=1"])
            .env(DIR_ENV, dir.path())
            .env(BASE_ENV, &base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    assert!(!child().success(), "the first run dies after creating the draft");
    assert!(dir.path().join("aborted-once").exists());
    let drafts = || emu.read(|s| s.documents.values().filter(|d| d.status == 0).count());
    assert_eq!(drafts(), 1, "the draft exists, the engine never recorded it");
    assert!(child().success(), "the second run finishes the step");
    assert_eq!(drafts(), 1, "no second draft");

    let engine = open(dir.path(), &base);
    let inst = engine.instances(&Default::default()).unwrap().remove(0);
    assert_eq!(inst.status, Status::Completed);
    let id = emu.read(|s| s.documents.keys().next().cloned()).unwrap();
    assert_eq!(inst.vars["文書"], json!(id), "the instance recorded the one draft");
}
