//! `rakuraku.import` against the emulator: the parameter rules, characters outside
//! Shift_JIS, a round trip through Shift_JIS, skip vs. update, maintenance,
//! the rate limit and splitting large syncs.

use nagare_connectors::rakuraku::emulator::{Emulator, Settings as EmuSettings, DEMO_ACCOUNT, DEMO_TOKEN};
use nagare_connectors::rakuraku::limiter::{Limiter, ManualClock};
use nagare_connectors::rakuraku::{ImportConnector, RakurakuConfig};
use nagare_connectors::settings::Settings;
use nagare_connectors::{Connectors, ConnectorsConfig};
use nagare_engine::{Call, Connector, ConnectorError};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

async fn serve(emu: &Emulator) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let e = emu.clone();
    tokio::spawn(async move { e.serve(listener, std::future::pending()).await.unwrap() });
    format!("http://{addr}")
}

fn config(base: &str, extra: &str) -> RakurakuConfig {
    serde_yaml::from_str(&format!("{{ base_url: '{base}', account: {DEMO_ACCOUNT}, token: {DEMO_TOKEN} {extra} }}"))
        .unwrap()
}

/// A connector on its own limiter (a fresh real clock: tests do not share slots).
fn connector(base: &str, extra: &str) -> ImportConnector {
    let clock = Arc::new(ManualClock::default());
    ImportConnector::new("rakuraku", Settings::new(Some(config(base, extra))), Arc::new(Limiter::new(clock)))
}

async fn run(c: &(impl Connector + ?Sized), key: &str, input: Value) -> Result<Value, ConnectorError> {
    let call = Call {
        connector: "rakuraku.import".into(),
        input,
        idempotency_key: key.into(),
        instance: 1,
        node: "n".into(),
        attempt: 1,
    };
    c.call(&call).await
}

fn employees(rows: Value) -> Value {
    let mut input = json!({
        "masterId": 0,
        "columns": ["社員コード", {"header": "氏名", "key": "name"}, {"header": "メールアドレス", "key": "mail"}],
    });
    // Moved in, not through `json!` (which would copy 100,000 rows).
    input["rows"] = rows;
    input
}

async fn listed(base: &str, master: u64) -> Value {
    reqwest::get(format!("{base}/emulator/masters/{master}")).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn rules_are_checked_before_anything_is_sent() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connector(&base, "");
    let cases = [
        (json!({"masterId": 18, "duplicateKey": 0}), "duplicateKey"),
        (json!({"masterId": 7}), "masterId"),
        (json!({"masterId": 1, "sendPasswordEmail": 1}), "sendPasswordEmail"),
        (json!({"masterId": 2, "createCategory": 1}), "createCategory"),
        (json!({"masterId": 0, "duplicateKey": 2}), "duplicateKey"),
    ];
    for (params, key) in cases {
        let mut input = json!({"rows": [], "columns": ["a"]});
        input.as_object_mut().unwrap().extend(params.as_object().unwrap().clone());
        let e = run(&c, "k", input).await.unwrap_err();
        assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains(&format!("with.{key}"))), "{params}: {e:?}");
    }
    assert_eq!(emu.requests(), 0);
    // The emulator enforces the rule on approver settings itself too.
    let form = reqwest::multipart::Form::new()
        .text("json", r#"{"masterId":18,"duplicateKey":0}"#)
        .part("uploadFile", reqwest::multipart::Part::bytes(b"a\r\n".to_vec()).file_name("a.csv"));
    let resp = reqwest::Client::new()
        .post(format!("{base}/{DEMO_ACCOUNT}/api/v1/csvimport"))
        .header("X-RS-apitoken", DEMO_TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "E_PARAM");
}

#[tokio::test]
async fn takahashi_is_reported_with_row_and_column_and_nothing_is_sent() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connector(&base, "");
    let rows = json!([
        {"社員コード": "E1", "name": "佐藤 花子"},
        {"社員コード": "E2", "name": "髙橋 一郎"},
        {"社員コード": "E3", "name": "鈴木"},
        {"社員コード": "E4", "name": "髙木"},
    ]);
    // Split in two so the second bad row is in a later part: still nothing is sent.
    let split = connector(&base, ", max_rows_per_file: 2");
    let e = run(&split, "k", employees(rows.clone())).await.unwrap_err();
    let ConnectorError::Business { code, message } = &e else { panic!("{e:?}") };
    assert_eq!(code, "RAKURAKU_CSV");
    assert!(message.contains("row 2, column `氏名` (key `name`): the character `髙` (U+9AD9)"), "{message}");
    assert!(message.contains("row 4, column `氏名`"), "{message}");
    assert!(message.starts_with("2 row(s)") && message.contains("nothing was imported"), "{message}");
    assert_eq!(emu.requests(), 0);
    // With a mapping, the row goes in as 高橋.
    let mut input = employees(rows);
    input["csv"] = json!({"unmappable": {"map": {"髙": "高"}}});
    run(&c, "k2", input).await.unwrap();
    assert_eq!(emu.rows(0)[1]["氏名"], "高橋 一郎");
}

#[tokio::test]
async fn imported_rows_are_listed_identically() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connector(&base, "");
    let rows = json!([
        {"社員コード": "E001", "name": "佐藤 花子", "mail": "sato@example.com"},
        {"社員コード": "E002", "name": "ﾔﾏﾀﾞ ﾀﾛｳ", "mail": ""},
        {"社員コード": "E003", "name": "渡辺, \"なべ\"\n二行目", "mail": "watanabe@example.com"},
        {"社員コード": 4, "name": "斎藤・齋藤〒①", "mail": null},
    ]);
    // ① is NEC row 13: refused as Shift_JIS, accepted as Windows-31J.
    assert!(run(&c, "k", employees(rows.clone())).await.is_err());
    let mut input = employees(rows.clone());
    input["csv"] = json!({"charset": "windows-31j"});
    let r = run(&c, "k", input).await.unwrap();
    assert_eq!((r["parts"].as_u64(), r["inserted"].as_u64(), r["rows"].as_u64()), (Some(1), Some(4), Some(4)));
    let listed = listed(&base, 0).await;
    let expected: Vec<Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            json!({"社員コード": text(&r["社員コード"]), "氏名": text(&r["name"]), "メールアドレス": text(&r["mail"])})
        })
        .collect();
    assert_eq!(listed["rows"], Value::Array(expected));
}

#[tokio::test]
async fn duplicate_key_0_skips_and_1_updates() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connector(&base, "");
    let input = |name: &str, dup: u64| {
        let mut i = json!({
            "masterId": 1,
            "rows": [{"部門コード": "D1", "部門名": name}, {"部門コード": "D2", "部門名": "経理部"}],
            "columns": ["部門コード", "部門名"],
        });
        if dup == 1 {
            i["duplicateKey"] = json!(1);
        }
        i
    };
    run(&c, "a", input("総務部", 0)).await.unwrap();
    let r = run(&c, "b", input("総務・人事部", 0)).await.unwrap();
    assert_eq!((r["inserted"].as_u64(), r["skipped"].as_u64(), r["updated"].as_u64()), (Some(0), Some(2), Some(0)));
    assert_eq!(emu.rows(1)[0]["部門名"], "総務部", "skipped");
    let r = run(&c, "c", input("総務・人事部", 1)).await.unwrap();
    assert_eq!(r["updated"], 2);
    assert_eq!(emu.rows(1)[0]["部門名"], "総務・人事部", "updated");
    assert_eq!(emu.rows(1).len(), 2);
}

#[tokio::test]
async fn unknown_categories_are_errors_unless_created() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connector(&base, "");
    let mut input = json!({
        "masterId": 4,
        "rows": [{"code": "P1", "name": "基幹刷新", "cat": "受託"}, {"code": "P2", "name": "研究", "cat": "研究開発"}],
        "columns": [{"header": "プロジェクトコード", "key": "code"}, {"header": "プロジェクト名", "key": "name"}, {"header": "カテゴリ", "key": "cat"}],
    });
    let e = run(&c, "a", input.clone()).await.unwrap_err();
    assert!(
        matches!(&e, ConnectorError::Business { code, message } if code == "RAKURAKU_E_ROW" && message.contains("研究開発") && message.contains("\"row\":3")),
        "{e:?}"
    );
    assert!(emu.rows(4).is_empty(), "all or nothing");
    input["createCategory"] = json!(1);
    let r = run(&c, "b", input).await.unwrap();
    assert_eq!(r["imports"][0]["response"]["categoriesCreated"], json!(["研究開発"]));
    assert_eq!(emu.rows(4).len(), 2);
}

#[tokio::test]
async fn maintenance_is_retryable_and_never_success() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connector(&base, "");
    emu.set_maintenance(true);
    let input = employees(json!([{"社員コード": "E1", "name": "佐藤"}]));
    let e = run(&c, "k", input.clone()).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Retryable(m) if m.contains("maintenance")), "{e:?}");
    assert!(emu.rows(0).is_empty());
    emu.set_maintenance(false);
    assert_eq!(run(&c, "k", input).await.unwrap()["inserted"], 1);
}

#[tokio::test]
async fn the_rate_limiter_waits_instead_of_meeting_429s() {
    // One virtual clock for the client's limiter and the emulator's limit.
    let clock = Arc::new(ManualClock::default());
    let emu = Emulator::in_memory_with_clock(clock.clone());
    let base = serve(&emu).await;
    let c =
        ImportConnector::new("rakuraku", Settings::new(Some(config(&base, ""))), Arc::new(Limiter::new(clock.clone())));
    for i in 0..25 {
        let input = employees(json!([{"社員コード": format!("E{i}"), "name": "佐藤"}]));
        run(&c, &format!("k{i}"), input).await.unwrap_or_else(|e| panic!("import {i}: {e}"));
    }
    assert_eq!(emu.rows(0).len(), 25);
    assert_eq!(clock.slept(), Duration::from_secs(60), "the 21st import waited for the window");
    // Without the limiter, the emulator answers the 21st request of a minute with 429.
    let emu = Emulator::in_memory_with_clock(Arc::new(ManualClock::default()));
    let base = serve(&emu).await;
    let c = connector(&base, "");
    let mut statuses = Vec::new();
    for _ in 0..21 {
        let form = reqwest::multipart::Form::new().text("json", r#"{"masterId":2}"#).part(
            "uploadFile",
            reqwest::multipart::Part::bytes(
                b"\x96\xf0\x90\x45\x83\x52\x81\x5b\x83\x68,\x96\xf0\x90\x45\x96\xbc\r\n".to_vec(),
            ),
        );
        let resp = reqwest::Client::new()
            .post(format!("{base}/{DEMO_ACCOUNT}/api/v1/csvimport"))
            .header("X-RS-apitoken", DEMO_TOKEN)
            .multipart(form)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses[..20], [200; 20], "{statuses:?}");
    assert_eq!(statuses[20], 429);
    let e = run(&c, "x", employees(json!([]))).await.unwrap_err();
    assert!(matches!(e, ConnectorError::RetryAfter { .. }), "a 429 is retried after its Retry-After: {e:?}");
}

#[tokio::test]
async fn large_syncs_are_split_in_order_each_part_idempotent() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connector(&base, ", max_rows_per_file: 3");
    let rows: Vec<Value> =
        (1..=7).map(|i| json!({"社員コード": format!("E{i:02}"), "name": format!("社員{i}")})).collect();
    let r = run(&c, "9/sync/1", employees(json!(rows))).await.unwrap();
    let parts: Vec<(u64, u64, u64)> = r["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["part"].as_u64().unwrap(), p["first_row"].as_u64().unwrap(), p["last_row"].as_u64().unwrap()))
        .collect();
    assert_eq!(parts, vec![(1, 1, 3), (2, 4, 6), (3, 7, 7)]);
    let codes: Vec<String> = emu.rows(0).iter().map(|r| r["社員コード"].clone()).collect();
    assert_eq!(codes, (1..=7).map(|i| format!("E{i:02}")).collect::<Vec<_>>(), "in order");
    // A retry of the same call: every part is answered from its key, nothing twice.
    let again = run(&c, "9/sync/1", employees(json!(rows))).await.unwrap();
    assert!(again["imports"].as_array().unwrap().iter().all(|p| p["response"]["replayed"] == json!(true)));
    assert_eq!(emu.rows(0).len(), 7);
    // The emulator refuses a file over its size limit; a client split to fit is accepted.
    emu.set_settings(EmuSettings { max_bytes: 60, ..EmuSettings::default() });
    let e = run(&c, "big", employees(json!(rows))).await.unwrap_err();
    assert!(
        matches!(&e, ConnectorError::Business { code, message } if code == "RAKURAKU_E_FILE_SIZE" && message.starts_with("part 1 (rows 1–3)")),
        "{e:?}"
    );
    let small = connector(&base, ", max_bytes_per_file: 60");
    let r = run(&small, "small", employees(json!(rows))).await.unwrap();
    assert!(r["parts"].as_u64().unwrap() > 3, "{r}");
    assert!(r["imports"].as_array().unwrap().iter().all(|p| p["bytes"].as_u64().unwrap() <= 60));
}

#[tokio::test]
async fn a_failure_mid_sync_names_what_was_imported() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connector(&base, ", max_rows_per_file: 2");
    // Row 3 has no name: the emulator refuses part 2 after part 1 went in.
    let rows = json!([
        {"社員コード": "E1", "name": "a"}, {"社員コード": "E2", "name": "b"},
        {"社員コード": "E3", "name": ""}, {"社員コード": "E4", "name": "d"},
    ]);
    let e = run(&c, "k", employees(rows)).await.unwrap_err();
    let ConnectorError::Business { code, message } = &e else { panic!("{e:?}") };
    assert_eq!(code, "RAKURAKU_E_ROW");
    assert!(message.starts_with("part 2 (rows 3–4)") && message.contains("parts 1–1, rows 1–2"), "{message}");
    assert_eq!(emu.rows(0).len(), 2);
}

#[tokio::test]
async fn a_wrong_token_is_fatal_and_an_unconfigured_instance_says_how() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let cfg = ConnectorsConfig::from_yaml(&format!(
        "connectors:\n  seisan: {{ type: rakuraku, base_url: '{base}', account: {DEMO_ACCOUNT}, token: wrong }}\n"
    ))
    .unwrap();
    let connectors = Connectors::new(&cfg);
    let reg = connectors.registry();
    let e = run(&*reg.get("seisan.import").unwrap(), "k", employees(json!([]))).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains("E_AUTH") && m.contains("X-RS-apitoken")), "{e:?}");
    let e = run(&*reg.get("rakuraku.import").unwrap(), "k", employees(json!([]))).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains("type: rakuraku")), "{e:?}");
    // The deploy-time check: a process with `duplicateKey: 0` for approver settings
    // (18) is refused at deploy, naming the line of `duplicateKey`.
    let engine = nagare_engine::Engine::builder().in_memory().connectors(reg.clone()).build().unwrap();
    let process = "id: sync\nvariables:\n  rows: { type: list }\nstart: { next: push }\nnodes:\n  push:\n    service: seisan.import\n    with:\n      masterId: 18\n      duplicateKey: 0\n      rows: rows\n      columns: [a]\n    next: done\n  done: { end: }\n";
    let err = engine.deploy("sync.yaml", process).unwrap_err();
    let nagare_engine::EngineError::Invalid(diags) = err else { panic!("{err:?}") };
    let d = diags.errors().next().expect("one error");
    assert_eq!((d.code, d.line), ("bad-input", 10), "{diags}");
    assert!(d.message.contains("duplicateKey"), "{diags}");
    engine.deploy("sync.yaml", &process.replace("duplicateKey: 0", "duplicateKey: 1")).unwrap();
    let bad = ConnectorsConfig::from_yaml(
        "connectors:\n  r: { type: rakuraku, base_url: 'http://x', account: a, token: t, requests_per_minute: 30 }\n",
    );
    assert!(bad.unwrap_err().to_string().contains("1 to 20"));
}

#[tokio::test]
async fn the_emulator_checks_account_token_parts_and_encoding() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let post = |account: &str, token: Option<&str>, json: Option<&str>, file: Option<&[u8]>| {
        let mut form = reqwest::multipart::Form::new();
        if let Some(j) = json {
            form = form.text("json", j.to_string());
        }
        if let Some(f) = file {
            form = form.part("uploadFile", reqwest::multipart::Part::bytes(f.to_vec()).file_name("m.csv"));
        }
        let mut req = reqwest::Client::new().post(format!("{base}/{account}/api/v1/csvimport")).multipart(form);
        if let Some(t) = token {
            req = req.header("X-RS-apitoken", t);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    // 部門コード,部門名 / D1,<a lead byte followed by CR>
    let header = b"\x95\x94\x96\xe5\x83\x52\x81\x5b\x83\x68,\x95\x94\x96\xe5\x96\xbc\r\n";
    let mut broken = header.to_vec();
    broken.extend_from_slice(b"D1,\x82\r\n");
    let json = Some(r#"{"masterId":1}"#);
    let (s, b) = post(DEMO_ACCOUNT, Some(DEMO_TOKEN), json, Some(&broken)).await;
    assert_eq!((s, b["code"].as_str(), b["errors"][0]["row"].as_u64()), (400, Some("E_ENCODING"), Some(2)));
    let (s, b) = post(DEMO_ACCOUNT, None, json, Some(header)).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("E_AUTH")));
    let (s, b) = post(DEMO_ACCOUNT, Some(DEMO_TOKEN), None, Some(header)).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("E_REQUEST")));
    let (s, b) = post(DEMO_ACCOUNT, Some(DEMO_TOKEN), json, None).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("E_REQUEST")));
    let (s, _) = post("other", Some(DEMO_TOKEN), json, Some(header)).await;
    assert_eq!(s, 404);
    // A wrong account through the connector: fix the settings, not a business error.
    let c = ImportConnector::new(
        "rakuraku",
        Settings::new(Some(
            serde_yaml::from_str(&format!("{{ base_url: '{base}', account: other, token: {DEMO_TOKEN} }}")).unwrap(),
        )),
        Arc::new(Limiter::new(Arc::new(ManualClock::default()))),
    );
    let e = run(&c, "k", employees(json!([]))).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains("`account`")), "{e:?}");
}

/// 100,000 employees through the emulator, for the README's figures:
/// `cargo test --workspace --test rakuraku -- --ignored --nocapture hundred_thousand`
/// under `/usr/bin/time -v`. With `NAGARE_RAKURAKU_URL` (a running `nagare emulate
/// rakuraku`) the emulator is another process and the peak RSS is the sync's own.
#[tokio::test]
#[ignore]
async fn hundred_thousand_rows() {
    let local = Emulator::in_memory();
    let base = match std::env::var("NAGARE_RAKURAKU_URL") {
        Ok(url) => url,
        Err(_) => serve(&local).await,
    };
    let c = connector(&base, "");
    let rows: Vec<Value> = (0..100_000)
        .map(|i| json!({"社員コード": format!("E{i:06}"), "name": format!("山田 太郎{i}"), "mail": format!("u{i}@example.com")}))
        .collect();
    println!("rows built: {}", memory());
    let t = std::time::Instant::now();
    let r = run(&c, "big", employees(Value::Array(rows))).await.unwrap();
    println!(
        "100,000 rows: {} parts in {:?}; inserted {}, skipped {}; {}",
        r["parts"],
        t.elapsed(),
        r["inserted"],
        r["skipped"],
        memory()
    );
    assert_eq!(r["inserted"].as_u64().unwrap() + r["skipped"].as_u64().unwrap(), 100_000);
}

/// `VmRSS` and `VmHWM` (peak) of this process, Linux only.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let pick = |k: &str| {
        status.lines().find(|l| l.starts_with(k)).unwrap_or("").split_whitespace().nth(1).unwrap_or("?").to_string()
    };
    format!("rss {} kB, peak {} kB", pick("VmRSS:"), pick("VmHWM:"))
}

/// The CSV builder alone on 100,000 rows made one at a time: memory stays at one
/// part (≤ 5 MB) however many rows go through.
/// `cargo test --workspace --test rakuraku -- --ignored --nocapture csv_builder_streams`
#[test]
#[ignore]
fn csv_builder_streams_100000_rows_in_bounded_memory() {
    use nagare_connectors::rakuraku::csv::{CsvSpec, PartLimits, Splitter};
    let rows = (0..100_000u32).map(|i| json!({"社員コード": format!("E{i:06}"), "氏名": format!("山田 太郎{i}")}));
    let limits = PartLimits { max_bytes: 5 * 1024 * 1024, max_rows: 50_000 };
    let mut parts = Splitter::new(CsvSpec::with_headers(&["社員コード", "氏名"]), limits, rows).unwrap();
    let t = std::time::Instant::now();
    let (mut n, mut bytes) = (0, 0);
    while let Some(p) = parts.next_part() {
        let p = p.unwrap();
        n += p.rows();
        bytes += p.bytes.len();
        println!("part {}: rows {}–{}, {} bytes", p.index, p.first_row, p.last_row, p.bytes.len());
    }
    println!("{n} rows, {bytes} bytes of Shift_JIS in {:?}", t.elapsed());
    assert_eq!(n, 100_000);
}
