//! The web inbox and the process console in a real headless Chromium, driven
//! through WebDriver (W3C protocol, plain HTTP + JSON with reqwest) against
//! Debian's `chromedriver` on a free loopback port.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages
//! `chromium` and `chromium-driver`; `.ci/run` installs them when missing).
//! Without them the test prints why and passes locally, but fails under `CI=true`.
//! Screenshots of the main pages go to `target/screenshots/` (not committed).
//! `NAGARE_CHROMEDRIVER` / `NAGARE_CHROMIUM` point elsewhere.

use nagare::server::auth::Users;
use nagare::server::{AppState, Server};
use nagare_engine::Engine;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A process file with two errors, on lines 7 and 9.
const BROKEN: &str = "id: broken\nname: 壊れたプロセス\nstart: { next: a }\nnodes:\n  a:\n    user_task: A\n    colour: red\n    next: b\n  b: { nothing: 1 }\n";

/// A script that divides by a variable: 0 makes an incident.
const DIVIDE: &str = r#"
id: divide
name: 割り算
variables:
  件数: { type: number, required: true }
  結果: { type: number }
start: { next: 計算 }
nodes:
  計算:
    script: 結果 = 100 / 件数;
    next: done
  done: { end: }
"#;

fn tool(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
}

/// The browser tools, or why they are missing (a skip locally, a failure on CI).
fn tools() -> Option<(PathBuf, PathBuf)> {
    let driver = tool("NAGARE_CHROMEDRIVER", "/usr/bin/chromedriver");
    let chromium = tool("NAGARE_CHROMIUM", "/usr/bin/chromium");
    let missing: Vec<_> = [&driver, &chromium].into_iter().filter(|p| !p.exists()).collect();
    if missing.is_empty() {
        return Some((driver, chromium));
    }
    let reason = format!(
        "browser tests skipped: {} not found (apt-get install -y chromium chromium-driver, or run .ci/run)",
        missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{reason}; CI=true requires them");
    }
    eprintln!("{reason}");
    None
}

/// One chromedriver process with one browser session; both end on drop.
struct Driver {
    http: reqwest::Client,
    session: String,
    _child: Group,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Driver {
    async fn start(driver: &Path, chromium: &Path) -> Driver {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // Its own process group, so that the browser it starts can be stopped with
        // it even when the test fails halfway (see `Drop`).
        let child = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Group)
            .expect("chromedriver starts");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await.ok();
            let ready = match ready {
                Some(r) => r.json::<Value>().await.ok().and_then(|v| v["value"]["ready"].as_bool()).unwrap_or(false),
                None => false,
            };
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready on port {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        // Without the background-networking flags Chromium opens connections of
        // its own (updates, sync), refused here, many at a time.
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--lang=ja".into(),
            "--window-size=1600,1100".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
        }}});
        let resp: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = resp["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {resp}")).to_string();
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Driver { http, session: format!("{base}/session/{id}"), _child: child, _profile: profile, shots }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_string()
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.post("/elements", json!({"using": "css selector", "value": css})).await;
        v.as_array()
            .unwrap_or_else(|| panic!("elements {css}: {v}"))
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap_or_else(|| panic!("element {css}: {e}")).to_string())
            .collect()
    }

    async fn find(&self, css: &str) -> String {
        let all = self.find_all(css).await;
        match all.first() {
            Some(e) => e.clone(),
            None => panic!("no element {css} at {}:\n{}", self.url().await, self.text("body").await),
        }
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find_all(css).await;
        match e.first() {
            Some(e) => self.get(&format!("/element/{e}/text")).await.as_str().unwrap_or("").to_string(),
            None => String::new(),
        }
    }

    async fn value(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.get(&format!("/element/{e}/property/value")).await.as_str().unwrap_or("").to_string()
    }

    async fn attr(&self, css: &str, name: &str) -> String {
        let e = self.find(css).await;
        self.get(&format!("/element/{e}/attribute/{name}")).await.as_str().unwrap_or("").to_string()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/click"), json!({})).await;
    }

    /// Click what submits a form or follows a link, and wait for the next page:
    /// the old document's root element gone from the window.
    async fn submit(&self, css: &str) {
        let before = self.find("html").await;
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.find_all("html").await.first() == Some(&before) {
            assert!(Instant::now() < deadline, "no new page after clicking {css} at {}", self.url().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Then until it has loaded.
        while self.call_script("return document.readyState").await != "complete" {
            assert!(Instant::now() < deadline, "the page after {css} did not load");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call_script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []})).await
    }

    /// Clear a field and type into it.
    async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/clear"), json!({})).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": text })).await;
    }

    /// A date input: its text depends on the browser's locale, so set the value.
    async fn set_value(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        self.post(
            "/execute/sync",
            json!({"script": "arguments[0].value = arguments[1];", "args": [{ELEMENT: e}, value]}),
        )
        .await;
    }

    /// Save a screenshot of one element (all of it, scrolled into view).
    async fn screenshot_of(&self, css: &str, name: &str) {
        let e = self.find(css).await;
        let b64 = self.get(&format!("/element/{e}/screenshot")).await;
        let png = base64_decode(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Save a screenshot as `target/screenshots/NAME.png`.
    async fn screenshot(&self, name: &str) {
        let b64 = self.get("/screenshot").await;
        let png = base64_decode(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn sign_in(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/web/login")).await;
        self.fill("#token", token).await;
        self.submit("form[action=\"/web/login\"] button").await;
        assert_eq!(self.url().await, format!("{base}/"), "signed in, at the inbox");
    }

    async fn sign_out(&self) {
        self.submit("form[action=\"/web/logout\"] button").await;
        assert!(self.url().await.ends_with("/web/login"));
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

/// chromedriver, started in its own process group: dropping it stops chromedriver
/// and the Chromium it started (only processes this test started), also after a
/// failed assertion.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Standard base64 (the screenshot), without a dependency for it.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| acc | (val(c) << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// The open task of `instance` at `node`.
fn task_at(engine: &Engine, instance: u64, node: &str) -> String {
    let inst = engine.instance(instance).unwrap();
    let found = inst.open_task_ids().map(|id| engine.task(id).unwrap()).find(|t| t.node == node);
    found.unwrap_or_else(|| panic!("no open task at {node} in instance {instance}")).id
}

async fn serve() -> (Server, Engine, String) {
    let engine = Engine::builder().in_memory().connectors(nagare_connectors::builtin()).build().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("processes/expense-approval.yaml")).unwrap();
    engine.deploy("expense-approval.yaml", &text).unwrap();
    let users = Users::load(&root.join("config/users.yaml")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start_with(listener, AppState::new(engine.clone(), users), std::future::pending()).unwrap();
    let base = server.url();
    (server, engine, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expense_claim_sent_back_and_approved_then_admin_deploys_and_retries_in_chromium() {
    let Some((driver, chromium)) = tools() else { return };
    let (server, engine, base) = serve().await;
    let b = Driver::start(&driver, &chromium).await;

    // ---- 佐藤 starts a 経費精算 with one invalid value ----
    b.sign_in(&base, "demo-sato").await;
    b.screenshot("01-inbox-sato").await;
    b.goto(&format!("{base}/web/start/expense-approval")).await;
    b.fill("[name=\"件名\"]", "大阪出張 交通費").await;
    b.click("select[name=\"費目\"] option[value=\"交通費\"]").await;
    b.fill("[name=\"金額\"]", "一万二千円").await;
    b.set_value("[name=\"利用日\"]", "2026-11-20").await;
    b.submit("form[action=\"/web/start/expense-approval\"] button").await;
    let error = b.text("[name=\"金額\"] ~ .error").await;
    assert!(!error.is_empty(), "the error is shown at 金額:\n{}", b.text("main").await);
    assert_eq!(b.text("[name=\"件名\"] ~ .error").await, "", "no error at the other fields");
    assert_eq!(b.value("[name=\"件名\"]").await, "大阪出張 交通費", "the other values stay");
    assert_eq!(b.value("[name=\"費目\"]").await, "交通費");
    assert_eq!(b.value("[name=\"利用日\"]").await, "2026-11-20");
    assert_eq!(b.value("[name=\"金額\"]").await, "一万二千円", "the wrong value is shown to correct");
    b.screenshot("02-start-form-error").await;
    b.fill("[name=\"金額\"]", "12,000").await;
    b.submit("form[action=\"/web/start/expense-approval\"] button").await;
    let at = b.url().await;
    let id: u64 = at.split("/web/instances/").nth(1).and_then(|r| r.split('?').next()).unwrap().parse().unwrap();
    assert_eq!(engine.instance(id).unwrap().vars.get("金額"), Some(&json!(12000)));
    // Submit the claim: the instance page links its open task.
    let apply = task_at(&engine, id, "申請");
    b.submit(&format!("a[href=\"/web/tasks/{apply}\"]")).await;
    b.screenshot("03-task-form").await;
    b.submit("button[name=\"outcome\"][value=\"next\"]").await;
    assert!(b.url().await.contains("/?done="), "back at the inbox");
    b.sign_out().await;

    // ---- 田中 sends it back with a comment ----
    b.sign_in(&base, "demo-tanaka").await;
    let approve = task_at(&engine, id, "上長承認");
    b.submit(&format!("a[href=\"/web/tasks/{approve}\"]")).await;
    b.fill("#comment", "領収書の日付を確認してください").await;
    b.screenshot("04-approval-send-back").await;
    b.submit("form[action$=\"/send-back\"] button").await;
    b.sign_out().await;

    // ---- 佐藤 resubmits ----
    b.sign_in(&base, "demo-sato").await;
    let again = task_at(&engine, id, "申請");
    b.submit(&format!("a[href=\"/web/tasks/{again}\"]")).await;
    assert_eq!(b.value("[name=\"件名\"]").await, "大阪出張 交通費", "the claim comes back filled in");
    b.submit("button[name=\"outcome\"][value=\"next\"]").await;
    b.sign_out().await;

    // ---- 田中 approves; the instance page shows the path taken ----
    b.sign_in(&base, "demo-tanaka").await;
    let approve = task_at(&engine, id, "上長承認");
    b.submit(&format!("a[href=\"/web/tasks/{approve}\"]")).await;
    b.submit("button[name=\"outcome\"][value=\"next\"]").await;
    b.goto(&format!("{base}/web/instances/{id}")).await;
    let class = |node: &str| format!("svg [data-node=\"{node}\"]");
    for node in ["申請", "上長承認", "承認記録"] {
        assert!(b.attr(&class(node), "class").await.contains("visited"), "{node} is on the path taken");
    }
    assert!(b.attr(&class("領収書確認"), "class").await.contains("current"), "経理 works on it now");
    assert!(!b.attr(&class("部長承認"), "class").await.contains("visited"), "under 50,000 yen: no second approval");
    assert!(!b.find_all("svg path.edge.taken[data-from=\"申請\"][data-to=\"上長承認\"]").await.is_empty());
    assert!(!b.find_all("svg path.send-back.taken").await.is_empty(), "the send-back is drawn as taken");
    b.screenshot("05-instance-page").await;
    b.screenshot_of(".diagram svg", "05-instance-diagram").await;
    b.sign_out().await;

    // ---- admin: a broken YAML, uploaded, shows its diagnostics at their lines ----
    b.sign_in(&base, "demo-admin").await;
    b.submit("a[href=\"/web/admin/processes\"]").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, BROKEN).unwrap();
    let input = b.find("input[type=file][name=yaml]").await;
    b.post(&format!("/element/{input}/value"), json!({ "text": file.display().to_string() })).await;
    b.submit("form.deploy button").await;
    let nagare_engine::EngineError::Invalid(diags) = engine.deploy("broken.yaml", BROKEN).unwrap_err() else {
        panic!("the file is invalid")
    };
    assert_eq!(diags.errors().map(|d| d.line).collect::<Vec<_>>(), [7, 9], "two errors, at lines 7 and 9");
    for d in diags.errors() {
        let row = format!("tr#L{}.has-diag .diag", d.line);
        assert!(b.text(&row).await.contains(&d.message), "{} shown at line {}", d.message, d.line);
    }
    let first = diags.errors().next().unwrap();
    let list = b.text(".diagnostics").await;
    assert!(
        list.contains(&format!("broken.yaml:{}:{}", first.line, first.col)),
        "the list names file:line:col: {list}"
    );
    b.screenshot("06-deploy-diagnostics").await;
    b.goto(&format!("{base}/web/admin/processes/expense-approval")).await;
    assert!(!b.find_all(".diagram svg").await.is_empty() && !b.find_all("tr#L40 td.ln").await.is_empty());
    b.screenshot("07-process-page").await;

    // ---- admin: retry an incident with a corrected variable ----
    engine.deploy("divide.yaml", DIVIDE).unwrap();
    let inst =
        engine.start("divide", [("件数".to_string(), json!(0))].into_iter().collect(), Default::default()).unwrap();
    let n = inst.incidents[0].id;
    b.goto(&format!("{base}/web/admin/incidents")).await;
    b.screenshot("08-incidents").await;
    b.submit(&format!("a[href=\"/web/admin/instances/{}#incident-{n}\"]", inst.id)).await;
    b.fill(&format!("#vars-{n}"), "{\"件数\": 4}").await;
    b.screenshot("09-admin-instance").await;
    b.submit(&format!("#incident-{n} button[value=\"retry\"]")).await;
    assert!(b.text(".notice").await.contains("retried"));
    let done = engine.instance(inst.id).unwrap();
    assert_eq!(done.status.as_str(), "completed");
    assert_eq!(done.vars.get("結果"), Some(&json!(25)));
    b.goto(&format!("{base}/web/admin/instances?status=completed")).await;
    assert!(!b.find_all(&format!("a[href=\"/web/admin/instances/{}\"]", inst.id)).await.is_empty());
    b.screenshot("10-admin-instances").await;

    b.quit().await;
    server.shutdown().await.unwrap();
}

#[test]
fn base64_decodes_padded_and_unpadded() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aA=="), b"h");
}
