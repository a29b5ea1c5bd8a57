//! The web inbox end to end: the real server on 127.0.0.1 (a random port), driven
//! like a browser without JavaScript would: GET pages, POST their forms, keep the
//! session cookie. Redirects are followed by hand so that each step is checked.
//!
//! The same flows in a real headless Chromium: `tests/browser.rs`.

use nagare::server::auth::{UserDirectory, Users};
use nagare::server::{AppState, Server};
use nagare::web::WebConfig;
use nagare_engine::Engine;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::StatusCode;
use std::path::Path;
use std::sync::Arc;

const SATO: &str = "demo-sato";
const KATO: &str = "demo-kato";
const TANAKA: &str = "demo-tanaka";
const SUZUKI: &str = "demo-suzuki";

const HOSTILE: &str = "<script>alert(1)</script>";

/// A process whose own texts are hostile too (name, lane, task title, options).
const HOSTILE_PROCESS: &str = r#"
id: hostile-web
name: "<script>alert('name')</script>"
lanes:
  "<b>lane</b>": { groups: [staff] }
variables:
  題: { type: string, label: "<i>label</i>", required: true }
  区分: { type: choice, options: ["<option>x", "b"] }
  一覧: { type: list }
start: { next: 確認 }
nodes:
  確認:
    user_task: "<img src=x onerror=alert(1)>"
    lane: "<b>lane</b>"
    form: { 題: required, 区分: optional, 一覧: optional }
    next: done
  done: { end: }
"#;

const CONTRACT: &str = r#"
id: contract-file
name: 契約書の確認
lanes:
  申請者: { groups: [staff] }
  上長: { groups: [managers] }
variables:
  件名: { type: string, required: true }
  契約書: { type: file, required: true, content_types: [application/pdf], max_size: 1048576 }
start: { groups: [staff], next: 確認 }
nodes:
  確認:
    user_task: 契約書を確認する
    lane: 上長
    form: { 件名: readonly, 契約書: readonly }
    next: done
  done: { end: }
"#;

struct Web {
    server: Option<Server>,
    base: String,
    http: reqwest::Client,
    engine: Engine,
    users: Arc<UserDirectory>,
}

#[derive(Debug)]
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Page {
    #[track_caller]
    fn expect(self, status: u16) -> Page {
        assert_eq!(self.status.as_u16(), status, "unexpected status; page:\n{}", self.text);
        self
    }

    #[track_caller]
    fn redirects_to(&self, prefix: &str) -> String {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "a redirect expected; page:\n{}", self.text);
        let to = self.headers[LOCATION].to_str().unwrap().to_string();
        assert!(to.starts_with(prefix), "redirect to {to}, expected {prefix}…");
        to
    }

    /// The form token in the page.
    #[track_caller]
    fn csrf(&self) -> String {
        let at = self.text.find("name=\"_csrf\" value=\"").expect("a form token in the page") + 20;
        self.text[at..at + 64].to_string()
    }
}

/// A browser: one cookie (the session), no JavaScript.
struct Browser<'a> {
    web: &'a Web,
    cookie: Option<String>,
}

impl Web {
    async fn start() -> Web {
        Self::start_with(WebConfig::default()).await
    }

    async fn start_with(config: WebConfig) -> Web {
        let engine = Engine::builder().in_memory().connectors(nagare_connectors::builtin()).build().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("processes/expense-approval.yaml")).unwrap();
        engine.deploy("expense-approval.yaml", &text).unwrap();
        engine.deploy("hostile.yaml", HOSTILE_PROCESS).unwrap();
        engine.deploy("contract.yaml", CONTRACT).unwrap();
        let users = Users::load(&root.join("config/users.yaml")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = AppState::new(engine.clone(), users).with_web(config);
        let users = state.users.clone();
        let server = Server::start_with(listener, state, std::future::pending()).unwrap();
        let base = server.url();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Web { server: Some(server), base, http, engine, users }
    }

    fn browser(&self) -> Browser<'_> {
        Browser { web: self, cookie: None }
    }

    /// A browser signed in with `token`.
    async fn signed_in(&self, token: &str) -> Browser<'_> {
        let mut b = self.browser();
        b.sign_in(token).await.redirects_to("/");
        assert!(b.cookie.is_some());
        b
    }

    async fn finish(mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
    }
}

impl Browser<'_> {
    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header(COOKIE, c.clone()),
            None => req,
        };
        let resp = req.send().await.expect("the server answers");
        if let Some(set) = resp.headers().get(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
            self.cookie = if pair.ends_with('=') { None } else { Some(pair) };
        }
        Page { status: resp.status(), headers: resp.headers().clone(), text: resp.text().await.unwrap() }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.web.http.get(format!("{}{path}", self.web.base));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.web.http.post(format!("{}{path}", self.web.base)).form(form);
        self.send(req).await
    }

    async fn post_multipart(&mut self, path: &str, form: reqwest::multipart::Form) -> Page {
        let req = self.web.http.post(format!("{}{path}", self.web.base)).multipart(form);
        self.send(req).await
    }

    async fn sign_in(&mut self, token: &str) -> Page {
        self.post("/web/login", &[("token", token)]).await
    }

    /// The form token of the page at `path`.
    async fn csrf(&mut self, path: &str) -> String {
        self.get(path).await.expect(200).csrf()
    }
}

/// Start a 経費精算 through the web start form; its instance id.
async fn start_expense(b: &mut Browser<'_>, subject: &str) -> u64 {
    let csrf = b.csrf("/web/start/expense-approval").await;
    let page = b
        .post(
            "/web/start/expense-approval",
            &[
                ("_csrf", &csrf),
                ("件名", subject),
                ("費目", "交通費"),
                ("金額", "12,000"),
                ("利用日", "2026-11-20"),
                ("領収書あり", "true"),
            ],
        )
        .await;
    let to = page.redirects_to("/web/instances/");
    to.trim_start_matches("/web/instances/").split('?').next().unwrap().parse().unwrap()
}

/// The open task of `instance` at `node`.
fn task_at(web: &Web, instance: u64, node: &str) -> String {
    let inst = web.engine.instance(instance).unwrap();
    for id in inst.open_task_ids() {
        let t = web.engine.task(id).unwrap();
        if t.node == node {
            return t.id;
        }
    }
    panic!("no open task at {node} in instance {instance}");
}

/// The markup of the form field for `name` (from its label to the next field).
fn field_html<'p>(page: &'p str, name: &str) -> &'p str {
    let encoded: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
    let at = page.find(&format!("for=\"f-{encoded}\"")).unwrap_or_else(|| panic!("no field {name} in:\n{page}"));
    let rest = &page[at..];
    let end = rest[1..].find("class=\"field\"").map(|e| e + 1).unwrap_or(rest.len());
    &rest[..end]
}

#[tokio::test]
async fn sign_in_with_a_token_and_out_again() {
    let web = Web::start().await;
    let mut b = web.browser();
    // Not signed in: the inbox sends you to the sign-in page, the API still says 401.
    b.get("/").await.redirects_to("/web/login");
    let login = b.get("/web/login").await.expect(200);
    assert!(login.text.contains("name=\"token\""));
    assert_eq!(login.headers["content-type"], "text/html; charset=utf-8");
    assert!(login.headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));

    // A wrong token: 401, no cookie.
    let wrong = b.sign_in("demo-nobody").await.expect(401);
    assert!(wrong.text.contains("unknown or revoked token"));
    assert!(wrong.headers.get(SET_COOKIE).is_none() && b.cookie.is_none());
    b.sign_in("").await.expect(401);

    // The right one: a session cookie with the safe attributes.
    let ok = b.sign_in(SATO).await;
    ok.redirects_to("/");
    let set = ok.headers[SET_COOKIE].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains(SATO), "the token itself never goes into the cookie");
    let inbox = b.get("/").await.expect(200);
    assert!(inbox.text.contains("佐藤 花子"), "{}", inbox.text);
    assert_eq!(inbox.headers["cache-control"], "no-store");
    // The cookie is no API credential.
    let api = b.get("/api/v1/tasks").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);

    // Sign out needs the form token too; then the old cookie is worth nothing.
    let old = b.cookie.clone();
    b.post("/web/logout", &[]).await.expect(403);
    let csrf = inbox.csrf();
    b.post("/web/logout", &[("_csrf", &csrf)]).await.redirects_to("/web/login");
    assert!(b.cookie.is_none(), "the cookie is cleared");
    b.cookie = old;
    b.get("/").await.redirects_to("/web/login");
    web.finish().await;
}

#[tokio::test]
async fn posts_without_the_form_token_or_from_another_site_are_refused() {
    let web = Web::start().await;
    let mut sato = web.signed_in(SATO).await;
    let mut kato = web.signed_in(KATO).await;
    let id = start_expense(&mut sato, "出張").await;
    let task = task_at(&web, id, "申請");
    let path = format!("/web/tasks/{task}/claim");
    sato.post(&path, &[]).await.expect(403);
    sato.post(&path, &[("_csrf", "0".repeat(64).as_str())]).await.expect(403);
    // Another session's token is no good either.
    let katos = kato.csrf("/").await;
    sato.post(&path, &[("_csrf", &katos)]).await.expect(403);
    // Nor is a form posted from another origin, even with the right token.
    let csrf = sato.csrf(&format!("/web/tasks/{task}")).await;
    let req =
        web.http.post(format!("{}{path}", web.base)).header(ORIGIN, "http://evil.example").form(&[("_csrf", &csrf)]);
    sato.send(req).await.expect(403);
    assert_eq!(web.engine.task(&task).unwrap().assignee, None, "nothing was claimed");
    // The sign-in form refuses other origins too (login CSRF).
    let req =
        web.http.post(format!("{}/web/login", web.base)).header(ORIGIN, "http://evil.example").form(&[("token", SATO)]);
    web.browser().send(req).await.expect(403);

    sato.post(&path, &[("_csrf", &csrf)]).await.redirects_to(&format!("/web/tasks/{task}"));
    assert_eq!(web.engine.task(&task).unwrap().assignee.as_deref(), Some("sato"));
    let page = sato.get(&format!("/web/tasks/{task}")).await.expect(200);
    assert!(page.text.contains("/unclaim"), "the claimer may unclaim");
    sato.post(&format!("/web/tasks/{task}/unclaim"), &[("_csrf", &csrf)]).await.redirects_to("/web/tasks/");
    assert_eq!(web.engine.task(&task).unwrap().assignee, None);
    web.finish().await;
}

#[tokio::test]
async fn the_inbox_shows_only_what_the_user_may_see() {
    let web = Web::start().await;
    let mut sato = web.signed_in(SATO).await;
    let mut tanaka = web.signed_in(TANAKA).await;
    let mut suzuki = web.signed_in(SUZUKI).await;
    let id = start_expense(&mut sato, "大阪出張").await;
    let apply = task_at(&web, id, "申請");
    // The applicant's task is in the staff inbox, not in the managers'.
    assert!(sato.get("/").await.expect(200).text.contains(&format!("/web/tasks/{apply}")));
    assert!(!tanaka.get("/").await.expect(200).text.contains(&format!("/web/tasks/{apply}")));
    tanaka.get(&format!("/web/tasks/{apply}")).await.expect(404);
    // Once completed, the approval is the managers' and not the staff's.
    let csrf = sato.csrf(&format!("/web/tasks/{apply}")).await;
    let done = sato
        .post(
            &format!("/web/tasks/{apply}/complete"),
            &[("_csrf", &csrf), ("件名", "大阪出張"), ("費目", "交通費"), ("金額", "12000"), ("利用日", "2026-11-20")],
        )
        .await;
    done.redirects_to("/?done=");
    let approve = task_at(&web, id, "上長承認");
    let inbox = tanaka.get("/").await.expect(200);
    assert!(inbox.text.contains(&format!("/web/tasks/{approve}")), "{}", inbox.text);
    assert!(!sato.get("/").await.expect(200).text.contains(&format!("/web/tasks/{approve}")));
    assert!(!suzuki.get("/").await.expect(200).text.contains(&format!("/web/tasks/{approve}")));
    suzuki.get(&format!("/web/tasks/{approve}")).await.expect(404);
    suzuki.get(&format!("/web/instances/{id}")).await.expect(404);
    // Filters: another process shows nothing; "assigned to me" only claimed tasks.
    assert!(!tanaka.get("/?process=hostile-web").await.expect(200).text.contains("/web/tasks/"));
    assert!(!tanaka.get("/?view=mine").await.expect(200).text.contains("/web/tasks/"));
    assert!(!tanaka.get("/?overdue=yes").await.expect(200).text.contains("/web/tasks/"));
    assert!(tanaka.get("/?overdue=no").await.expect(200).text.contains(&format!("/web/tasks/{approve}")));
    // The applicant sees the instance and its history.
    let inst = sato.get(&format!("/web/instances/{id}")).await.expect(200);
    assert!(inst.text.contains("task_completed") && inst.text.contains("大阪出張"), "{}", inst.text);
    assert!(sato.get("/web/instances").await.expect(200).text.contains(&format!("/web/instances/{id}")));
    assert!(!suzuki.get("/web/instances").await.expect(200).text.contains(&format!("/web/instances/{id}")));
    web.finish().await;
}

#[tokio::test]
async fn a_task_form_shows_field_errors_saves_nothing_then_completes() {
    let web = Web::start().await;
    let mut sato = web.signed_in(SATO).await;
    // Starting with a bad amount: the error next to the field, no instance.
    let csrf = sato.csrf("/web/start/expense-approval").await;
    let page = sato
        .post(
            "/web/start/expense-approval",
            &[("_csrf", &csrf), ("件名", "出張"), ("費目", "交通費"), ("金額", "たくさん"), ("利用日", "2026-11-20")],
        )
        .await
        .expect(422);
    assert!(field_html(&page.text, "金額").contains("class=\"error\""), "{}", page.text);
    assert!(field_html(&page.text, "金額").contains("value=\"たくさん\""), "the entry is kept");
    assert!(!field_html(&page.text, "件名").contains("class=\"error\""));
    assert!(web.engine.instances(&Default::default()).unwrap().is_empty(), "nothing started");

    let id = start_expense(&mut sato, "出張").await;
    let apply = task_at(&web, id, "申請");
    let form = sato.get(&format!("/web/tasks/{apply}")).await.expect(200);
    // Every type gets its input.
    assert!(field_html(&form.text, "利用日").contains("type=\"date\""));
    assert!(field_html(&form.text, "費目").contains("<select"));
    assert!(field_html(&form.text, "領収書あり").contains("type=\"checkbox\""));
    assert!(field_html(&form.text, "添付ファイル").contains("<textarea"));
    assert!(field_html(&form.text, "上長コメント").contains("—"), "readonly: shown, no input");
    assert!(!field_html(&form.text, "上長コメント").contains("<input"));
    let before = web.engine.instance(id).unwrap().history_len;
    let csrf = form.csrf();
    let bad = sato
        .post(
            &format!("/web/tasks/{apply}/complete"),
            &[
                ("_csrf", &csrf),
                ("件名", ""),
                ("費目", "宇宙旅行"),
                ("金額", "12000"),
                ("利用日", "2026-11-20"),
                ("添付ファイル", "[not json"),
            ],
        )
        .await
        .expect(422);
    for f in ["件名", "費目", "添付ファイル"] {
        assert!(field_html(&bad.text, f).contains("class=\"error\""), "{f}: {}", bad.text);
    }
    assert!(!field_html(&bad.text, "金額").contains("class=\"error\""));
    assert_eq!(web.engine.instance(id).unwrap().history_len, before, "nothing saved");
    assert_eq!(web.engine.task(&apply).unwrap().status, nagare_engine::runtime::TaskStatus::Open);

    let ok = sato
        .post(
            &format!("/web/tasks/{apply}/complete"),
            &[
                ("_csrf", &csrf),
                ("件名", "出張（修正）"),
                ("費目", "宿泊費"),
                ("金額", "12000"),
                ("利用日", "2026-11-21"),
                ("添付ファイル", "[\"r.pdf\"]"),
                ("outcome", "next"),
            ],
        )
        .await;
    ok.redirects_to("/?done=");
    let inst = web.engine.instance(id).unwrap();
    assert_eq!(inst.vars.get("件名").unwrap(), "出張（修正）");
    assert_eq!(inst.vars.get("添付ファイル").unwrap(), &serde_json::json!(["r.pdf"]));
    assert_eq!(inst.vars.get("領収書あり").unwrap(), &serde_json::json!(false), "an unchecked box is false");
    // Completed: read-only now, and a second post is a conflict, not a crash.
    sato.post(&format!("/web/tasks/{apply}/complete"), &[("_csrf", &csrf)]).await.expect(409);
    web.finish().await;
}

#[tokio::test]
async fn send_back_with_a_comment_and_a_named_outcome() {
    let web = Web::start().await;
    let mut sato = web.signed_in(SATO).await;
    let mut tanaka = web.signed_in(TANAKA).await;
    let id = start_expense(&mut sato, "出張").await;
    let apply = task_at(&web, id, "申請");
    let csrf = sato.csrf(&format!("/web/tasks/{apply}")).await;
    sato.post(
        &format!("/web/tasks/{apply}/complete"),
        &[("_csrf", &csrf), ("件名", "出張"), ("費目", "交通費"), ("金額", "12000"), ("利用日", "2026-11-20")],
    )
    .await
    .redirects_to("/");
    let approve = task_at(&web, id, "上長承認");
    let page = tanaka.get(&format!("/web/tasks/{approve}")).await.expect(200);
    assert!(page.text.contains("value=\"reject\""), "the named outcome is a button");
    let csrf = page.csrf();
    // No comment: refused, next to the comment box.
    let bad = tanaka
        .post(&format!("/web/tasks/{approve}/send-back"), &[("_csrf", &csrf), ("comment", " ")])
        .await
        .expect(422);
    assert!(bad.text.contains("role=\"alert\""), "{}", bad.text);
    tanaka
        .post(&format!("/web/tasks/{approve}/send-back"), &[("_csrf", &csrf), ("comment", "領収書を添付してください")])
        .await
        .redirects_to("/");
    let again = task_at(&web, id, "申請");
    assert!(sato.get("/").await.expect(200).text.contains(&format!("/web/tasks/{again}")));
    let history = sato.get(&format!("/web/instances/{id}")).await.expect(200);
    assert!(history.text.contains("領収書を添付してください"), "{}", history.text);

    // Resubmitted, then rejected by the named outcome.
    let csrf = sato.csrf(&format!("/web/tasks/{again}")).await;
    sato.post(
        &format!("/web/tasks/{again}/complete"),
        &[("_csrf", &csrf), ("件名", "出張"), ("費目", "交通費"), ("金額", "12000"), ("利用日", "2026-11-20")],
    )
    .await
    .redirects_to("/");
    let approve = task_at(&web, id, "上長承認");
    let csrf = tanaka.csrf(&format!("/web/tasks/{approve}")).await;
    tanaka
        .post(
            &format!("/web/tasks/{approve}/complete"),
            &[("_csrf", &csrf), ("上長コメント", "対象外"), ("outcome", "reject")],
        )
        .await
        .redirects_to("/");
    assert_eq!(web.engine.task(&approve).unwrap().outcome.as_deref(), Some("reject"));
    web.finish().await;
}

#[tokio::test]
async fn start_respects_start_groups_and_files_upload_and_download() {
    let web = Web::start().await;
    let mut sato = web.signed_in(SATO).await;
    let mut tanaka = web.signed_in(TANAKA).await;
    // `start: groups: [staff]`: not offered to, and refused for, a manager.
    assert!(!tanaka.get("/web/start").await.expect(200).text.contains("/web/start/contract-file"));
    tanaka.get("/web/start/contract-file").await.expect(403);
    let list = sato.get("/web/start").await.expect(200);
    assert!(list.text.contains("/web/start/contract-file"));
    let form = sato.get("/web/start/contract-file").await.expect(200);
    assert!(form.text.contains("enctype=\"multipart/form-data\"") && form.text.contains("type=\"file\""));
    let csrf = form.csrf();
    let part =
        |bytes: Vec<u8>, ty: &str| reqwest::multipart::Part::bytes(bytes).file_name("契約書.pdf").mime_str(ty).unwrap();
    // A file of a type the variable does not take: refused next to the field.
    let bad = reqwest::multipart::Form::new()
        .percent_encode_noop()
        .text("_csrf", csrf.clone())
        .text("件名", "委託")
        .part("契約書", part(b"hello".to_vec(), "text/plain"));
    let page = sato.post_multipart("/web/start/contract-file", bad).await.expect(422);
    assert!(field_html(&page.text, "契約書").contains("class=\"error\""), "{}", page.text);
    let pdf = "%PDF-1.7\n本文\n%%EOF\n".as_bytes().to_vec();
    // A file before the form token (a form not made by the page) is not stored.
    let forged = reqwest::multipart::Form::new()
        .percent_encode_noop()
        .text("件名", "委託")
        .part("契約書", part(pdf.clone(), "application/pdf"))
        .text("_csrf", csrf.clone());
    let page = sato.post_multipart("/web/start/contract-file", forged).await.expect(422);
    assert!(field_html(&page.text, "契約書").contains("form check failed"), "{}", page.text);
    assert!(web.engine.instances(&Default::default()).unwrap().is_empty());
    let good = reqwest::multipart::Form::new()
        .percent_encode_noop()
        .text("_csrf", csrf)
        .text("件名", "委託")
        .part("契約書", part(pdf.clone(), "application/pdf"));
    let to = sato.post_multipart("/web/start/contract-file", good).await.redirects_to("/web/instances/");
    let page = sato.get(&to).await.expect(200);
    let id: u64 = to.trim_start_matches("/web/instances/").split('?').next().unwrap().parse().unwrap();
    let link = format!("/web/instances/{id}/files/%E5%A5%91%E7%B4%84%E6%9B%B8");
    assert!(page.text.contains(&link), "{}", page.text);
    let got = sato.get(&link).await.expect(200);
    assert_eq!(got.headers["content-type"], "application/pdf");
    assert_eq!(got.text.as_bytes(), pdf.as_slice());
    // The manager reaches it from the task; someone else gets 404.
    let task = task_at(&web, id, "確認");
    assert!(tanaka.get(&format!("/web/tasks/{task}")).await.expect(200).text.contains(&link));
    tanaka.get(&link).await.expect(200);
    web.signed_in(KATO).await.get(&link).await.expect(404);
    web.finish().await;
}

#[tokio::test]
async fn a_hostile_value_is_escaped_on_every_page() {
    let web = Web::start().await;
    let mut sato = web.signed_in(SATO).await;
    let mut tanaka = web.signed_in(TANAKA).await;
    // Hostile process texts, a hostile variable, business key and comment.
    let csrf = sato.csrf("/web/start/hostile-web").await;
    let to = sato
        .post(
            "/web/start/hostile-web",
            &[("_csrf", &csrf), ("題", HOSTILE), ("区分", "<option>x"), ("_business_key", HOSTILE)],
        )
        .await
        .redirects_to("/web/instances/");
    let hid: u64 = to.trim_start_matches("/web/instances/").split('?').next().unwrap().parse().unwrap();
    let htask = task_at(&web, hid, "確認");
    let exp = start_expense(&mut sato, HOSTILE).await;
    let apply = task_at(&web, exp, "申請");
    let csrf = sato.csrf(&format!("/web/tasks/{apply}")).await;
    sato.post(
        &format!("/web/tasks/{apply}/complete"),
        &[("_csrf", &csrf), ("件名", HOSTILE), ("費目", "交通費"), ("金額", "1"), ("利用日", "2026-11-20")],
    )
    .await
    .redirects_to("/");
    let approve = task_at(&web, exp, "上長承認");
    let csrf = tanaka.csrf(&format!("/web/tasks/{approve}")).await;
    tanaka
        .post(&format!("/web/tasks/{approve}/send-back"), &[("_csrf", &csrf), ("comment", HOSTILE)])
        .await
        .redirects_to("/");

    let mut pages = Vec::new();
    for path in [
        "/".to_string(),
        "/web/start".into(),
        "/web/start/hostile-web".into(),
        "/web/instances".into(),
        format!("/web/instances/{hid}"),
        format!("/web/instances/{exp}"),
        format!("/web/tasks/{htask}"),
        format!("/web/tasks/{apply}"),
    ] {
        pages.push((path.clone(), sato.get(&path).await.expect(200).text));
    }
    // A form re-rendered after an error shows the submitted hostile values.
    let csrf = sato.csrf(&format!("/web/tasks/{htask}")).await;
    let redo = sato
        .post(&format!("/web/tasks/{htask}/complete"), &[("_csrf", &csrf), ("題", HOSTILE), ("一覧", HOSTILE)])
        .await
        .expect(422);
    pages.push(("422 task form".into(), redo.text));
    let csrf = sato.csrf("/web/start/hostile-web").await;
    let redo = sato
        .post(
            "/web/start/hostile-web",
            &[("_csrf", &csrf), ("題", ""), ("一覧", HOSTILE), ("_business_key", "別の<b>キー")],
        )
        .await
        .expect(422);
    pages.push(("422 start form".into(), redo.text));
    let login = web.browser().sign_in(HOSTILE).await.expect(401).text;
    pages.push(("login".into(), login));

    for (path, text) in &pages {
        for bad in ["<script", "<img", "<b>lane", "<i>label", "<option>x"] {
            assert!(!text.contains(bad), "{path} contains {bad}:\n{text}");
        }
    }
    let escaped = pages.iter().filter(|(_, t)| t.contains("&lt;script&gt;")).count();
    assert!(escaped >= 8, "the hostile texts are shown, escaped, on most pages ({escaped})");
    web.finish().await;
}

#[tokio::test]
async fn a_revoked_token_ends_its_sessions_and_cookies_can_be_secure() {
    let web = Web::start_with(WebConfig { secure_cookie: true, ..WebConfig::default() }).await;
    let mut b = web.browser();
    let ok = b.sign_in(SATO).await;
    ok.redirects_to("/");
    assert!(ok.headers[SET_COOKIE].to_str().unwrap().ends_with("; Secure"));
    b.get("/").await.expect(200);
    // The users file is reloaded without sato's token: the session is over.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config/users.yaml")).unwrap();
    let without: String = text.lines().filter(|l| !l.contains("# demo-sato")).map(|l| format!("{l}\n")).collect();
    web.users.replace(Users::from_yaml("users.yaml", &without).unwrap());
    b.get("/").await.redirects_to("/web/login");
    b.sign_in(SATO).await.expect(401);
    // Web pages are counted per route in /metrics, like the API.
    let metrics = web.http.get(format!("{}/metrics", web.base)).bearer_auth("demo-admin").send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("route=\"/web/login\""), "{text}");
    web.finish().await;
}

#[tokio::test]
async fn the_inbox_pages_by_fifty_and_keeps_the_filters() {
    let web = Web::start().await;
    let by = nagare_engine::StartOptions { by: Some("sato".into()), business_key: None };
    for _ in 0..51 {
        let vars =
            [("件名", "x".into()), ("費目", "交通費".into()), ("金額", 1.into()), ("利用日", "2026-11-20".into())]
                .into_iter()
                .map(|(k, v): (&str, serde_json::Value)| (k.to_string(), v))
                .collect();
        web.engine.start("expense-approval", vars, by.clone()).unwrap();
    }
    let mut sato = web.signed_in(SATO).await;
    let first = sato.get("/?process=expense-approval").await.expect(200);
    assert_eq!(first.text.matches("href=\"/web/tasks/").count(), 50);
    let at = first.text.find("href=\"/?after=").expect("a next-page link") + 6;
    let link = first.text[at..].split('"').next().unwrap().replace("&amp;", "&");
    assert!(link.contains("process=expense-approval"), "the filter is kept: {link}");
    let second = sato.get(&link).await.expect(200);
    assert_eq!(second.text.matches("href=\"/web/tasks/").count(), 1);
    assert!(!second.text.contains("href=\"/?after="), "the last page");
    web.finish().await;
}

/// The instance page draws the process with the path taken and where the instance
/// is now, inline, within the page's CSP (no inline style, no script).
#[tokio::test]
async fn the_instance_page_shows_the_diagram_with_the_path_taken() {
    let web = Web::start().await;
    let mut sato = web.signed_in(SATO).await;
    let id = start_expense(&mut sato, "名古屋出張").await;
    let apply = task_at(&web, id, "申請");
    let csrf = sato.csrf(&format!("/web/tasks/{apply}")).await;
    sato.post(
        &format!("/web/tasks/{apply}/complete"),
        &[("_csrf", &csrf), ("件名", "名古屋出張"), ("費目", "交通費"), ("金額", "12000"), ("利用日", "2026-11-20")],
    )
    .await
    .redirects_to("/?done=");
    let page = sato.get(&format!("/web/instances/{id}")).await.expect(200);
    let t = &page.text;
    let svg = &t[t.find("<svg").expect("an inline SVG")..t.find("</svg>").expect("the SVG ends")];
    assert!(svg.contains("class=\"node task user visited\" data-node=\"申請\""), "{svg}");
    assert!(svg.contains("class=\"node task user visited current\" data-node=\"上長承認\""), "{svg}");
    assert!(svg.contains("class=\"node task user\" data-node=\"部長承認\""), "not reached: plain");
    assert!(svg.contains("class=\"edge taken\" data-from=\"申請\" data-to=\"上長承認\""));
    assert!(!svg.contains("style=") && !svg.contains("<style") && !svg.contains("<script"));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    web.finish().await;
}

// ---- the process console (administrators) ----

const ADMIN: &str = "demo-admin";

/// A script that divides by a variable: 0 makes an incident, retried with a better value.
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

/// A process file with two errors, on lines 7 and 9.
const BROKEN: &str = "id: broken\nname: 壊れた <script>x</script>\nstart: { next: a }\nnodes:\n  a:\n    user_task: A\n    colour: red\n    next: b\n  b: { nothing: 1 }\n";

/// An instance of `divide` stopped at an incident (件数 = 0).
fn divide_incident(web: &Web) -> (u64, u32) {
    web.engine.deploy("divide.yaml", DIVIDE).unwrap();
    let vars = [("件数".to_string(), serde_json::json!(0))].into_iter().collect();
    let inst = web.engine.start("divide", vars, Default::default()).unwrap();
    assert_eq!(inst.incidents.len(), 1, "dividing by zero makes an incident");
    (inst.id, inst.incidents[0].id)
}

fn console_pages(id: u64) -> Vec<String> {
    vec![
        "/web/admin".into(),
        "/web/admin/processes".into(),
        "/web/admin/processes/expense-approval".into(),
        "/web/admin/processes/expense-approval?version=1".into(),
        "/web/admin/instances".into(),
        "/web/admin/instances?status=incident&process=divide".into(),
        format!("/web/admin/instances/{id}"),
        "/web/admin/incidents".into(),
    ]
}

#[tokio::test]
async fn console_pages_need_a_session_and_an_administrator() {
    let web = Web::start().await;
    let (id, n) = divide_incident(&web);
    let mut nobody = web.browser();
    let mut sato = web.signed_in(SATO).await;
    let mut admin = web.signed_in(ADMIN).await;
    for path in console_pages(id) {
        nobody.get(&path).await.redirects_to("/web/login");
        let refused = sato.get(&path).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path} for a participant:\n{}", refused.text);
        assert!(!refused.text.contains("割り算") && !refused.text.contains("100 / 件数"), "{path} shows nothing");
        let page = admin.get(&path).await;
        assert!(page.status == StatusCode::OK || page.status == StatusCode::SEE_OTHER, "{path}: {}", page.status);
    }
    // The console link is in the admin's header only.
    assert!(admin.get("/").await.text.contains("/web/admin/processes"));
    assert!(!sato.get("/").await.text.contains("/web/admin/"));
    // A participant's POSTs to the console are refused too, even with a valid form token.
    let csrf = sato.csrf("/").await;
    for path in [
        format!("/web/admin/instances/{id}/incidents/{n}"),
        format!("/web/admin/instances/{id}/cancel"),
        "/web/admin/processes/divide/start-paused".into(),
        "/web/admin/processes".into(),
    ] {
        let page =
            sato.post(&path, &[("_csrf", &csrf), ("reason", "x"), ("source", DIVIDE), ("action", "retry")]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}:\n{}", page.text);
        nobody.post(&path, &[("reason", "x")]).await.redirects_to("/web/login");
    }
    assert_eq!(web.engine.instance(id).unwrap().incidents.len(), 1, "nothing was retried");
    // An instance that does not exist: 404, as the API.
    admin.get("/web/admin/instances/999999").await.expect(404);
    admin.get("/web/admin/processes/no-such").await.expect(404);
    // The participant view links the console for administrators only.
    let link = format!("href=\"/web/admin/instances/{id}\"");
    assert!(admin.get(&format!("/web/instances/{id}")).await.expect(200).text.contains(&link));
    web.finish().await;
}

#[tokio::test]
async fn console_posts_need_the_form_token() {
    let web = Web::start().await;
    let (id, n) = divide_incident(&web);
    let mut admin = web.signed_in(ADMIN).await;
    let good = admin.csrf("/web/admin/processes").await;
    for token in ["", "0000000000000000000000000000000000000000000000000000000000000000"] {
        for path in [
            format!("/web/admin/instances/{id}/incidents/{n}"),
            format!("/web/admin/instances/{id}/cancel"),
            "/web/admin/processes".into(),
        ] {
            let page =
                admin.post(&path, &[("_csrf", token), ("reason", "x"), ("source", BROKEN), ("action", "retry")]).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path} with token {token:?}:\n{}", page.text);
        }
    }
    // From another site, even with the right token.
    let req = web
        .http
        .post(format!("{}/web/admin/instances/{id}/cancel", web.base))
        .header(ORIGIN, "http://evil.example")
        .form(&[("_csrf", good.as_str()), ("reason", "x")]);
    admin.send(req).await.expect(403);
    let inst = web.engine.instance(id).unwrap();
    assert_eq!(inst.incidents.len(), 1);
    assert!(web.engine.latest("broken").is_none());
    assert_eq!(inst.status.as_str(), "incident", "not cancelled");
    // A process file over the API's deploy limit (2 MiB): 413, nothing deployed.
    let huge = format!("id: huge\n# {}\n", "x".repeat(nagare::server::DEPLOY_BODY_LIMIT));
    let page = admin.post("/web/admin/processes", &[("_csrf", good.as_str()), ("source", huge.as_str())]).await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", &page.text[..page.text.len().min(500)]);
    assert!(web.engine.latest("huge").is_none());
    web.finish().await;
}

#[tokio::test]
async fn console_deploy_shows_diagnostics_at_their_lines_then_deploys() {
    let web = Web::start().await;
    let mut admin = web.signed_in(ADMIN).await;
    let csrf = admin.csrf("/web/admin/processes").await;
    // Pasted, broken: 422, the text kept, each error under its line.
    let page = admin.post("/web/admin/processes", &[("_csrf", &csrf), ("source", BROKEN)]).await.expect(422);
    let err = web.engine.deploy("x.yaml", BROKEN).unwrap_err();
    let nagare_engine::EngineError::Invalid(diags) = err else { panic!("invalid expected: {err}") };
    assert_eq!(diags.errors().map(|d| d.line).collect::<Vec<_>>(), [7, 9], "two errors, at lines 7 and 9");
    for d in diags.errors() {
        let row = format!("<tr id=\"L{}\" class=\"has-diag\">", d.line);
        assert!(page.text.contains(&row), "line {} marked ({}):\n{}", d.line, d.message, page.text);
    }
    assert!(page.text.contains("colour: red"), "the text is kept");
    assert!(!page.text.contains("<script>x"), "escaped");
    // Uploaded as a file (multipart), a good one: deployed, its page shows the diagram and YAML.
    let form = reqwest::multipart::Form::new()
        .text("_csrf", csrf.clone())
        .part("yaml", reqwest::multipart::Part::text(DIVIDE).file_name("divide.yaml").mime_str("text/yaml").unwrap())
        .text("source", "");
    let to = admin.post_multipart("/web/admin/processes", form).await.redirects_to("/web/admin/processes/divide");
    assert!(web.engine.latest("divide").is_some());
    let page = admin.get(&to).await.expect(200);
    assert!(page.text.contains("<svg") && page.text.contains("<td class=\"ln\">10</td>"), "{}", page.text);
    assert!(page.text.contains("deployed version 1"));
    web.finish().await;
}

#[tokio::test]
async fn console_retries_an_incident_with_a_variable_edit_and_cancels() {
    let web = Web::start().await;
    let (id, n) = divide_incident(&web);
    let mut admin = web.signed_in(ADMIN).await;
    let list = admin.get("/web/admin/incidents").await.expect(200);
    assert!(list.text.contains(&format!("/web/admin/instances/{id}#incident-{n}")), "{}", list.text);
    let page = admin.get(&format!("/web/admin/instances/{id}")).await.expect(200);
    assert!(page.text.contains(&format!("incident-{n}")) && page.text.contains("<svg"), "{}", page.text);
    let csrf = page.csrf();
    // Not JSON: refused at the form, the text kept.
    let bad = admin
        .post(
            &format!("/web/admin/instances/{id}/incidents/{n}"),
            &[("_csrf", &csrf), ("action", "retry"), ("vars", "{件数: 4")],
        )
        .await
        .expect(422);
    assert!(bad.text.contains("{件数: 4"), "{}", bad.text);
    // A wrong type: the API's error, nothing saved.
    admin
        .post(
            &format!("/web/admin/instances/{id}/incidents/{n}"),
            &[("_csrf", &csrf), ("action", "retry"), ("vars", "{\"件数\": \"four\"}")],
        )
        .await
        .expect(422);
    assert_eq!(web.engine.instance(id).unwrap().incidents.len(), 1);
    // A good value: retried, the instance completes.
    admin
        .post(
            &format!("/web/admin/instances/{id}/incidents/{n}"),
            &[("_csrf", &csrf), ("action", "retry"), ("vars", "{\"件数\": 4}")],
        )
        .await
        .redirects_to(&format!("/web/admin/instances/{id}?done=retried"));
    let inst = web.engine.instance(id).unwrap();
    assert_eq!(inst.status.as_str(), "completed");
    assert_eq!(inst.vars.get("結果"), Some(&serde_json::json!(25)));
    // Cancel another one; a missing reason is refused first.
    let other = {
        let vars = [("件数".to_string(), serde_json::json!(0))].into_iter().collect();
        web.engine.start("divide", vars, Default::default()).unwrap().id
    };
    admin.post(&format!("/web/admin/instances/{other}/cancel"), &[("_csrf", &csrf), ("reason", "")]).await.expect(422);
    admin
        .post(&format!("/web/admin/instances/{other}/cancel"), &[("_csrf", &csrf), ("reason", "テスト")])
        .await
        .redirects_to(&format!("/web/admin/instances/{other}?done=cancelled"));
    assert_eq!(web.engine.instance(other).unwrap().status.as_str(), "cancelled");
    let filtered = admin.get("/web/admin/instances?status=cancelled").await.expect(200).text;
    assert!(filtered.contains(&format!("#{other}<")) && !filtered.contains(&format!("#{id}<")), "{filtered}");
    web.finish().await;
}

#[tokio::test]
async fn console_instance_page_shows_a_script_value_as_text() {
    let web = Web::start().await;
    let mut sato = web.signed_in(SATO).await;
    let csrf = sato.csrf("/web/start/hostile-web").await;
    let to = sato
        .post("/web/start/hostile-web", &[("_csrf", &csrf), ("題", HOSTILE), ("_business_key", HOSTILE)])
        .await
        .redirects_to("/web/instances/");
    let hid: u64 = to.trim_start_matches("/web/instances/").split('?').next().unwrap().parse().unwrap();
    let mut admin = web.signed_in(ADMIN).await;
    for path in [
        format!("/web/admin/instances/{hid}"),
        "/web/admin/instances".into(),
        "/web/admin/processes".into(),
        "/web/admin/processes/hostile-web".into(),
    ] {
        let text = admin.get(&path).await.expect(200).text;
        for bad in ["<script", "<img", "<b>lane", "<i>label", "<option>x"] {
            assert!(!text.contains(bad), "{path} contains {bad}:\n{text}");
        }
        assert!(text.contains("&lt;script&gt;") || text.contains("&lt;img"), "{path} shows the text, escaped");
    }
    web.finish().await;
}

#[tokio::test]
async fn console_pauses_and_resumes_a_timer_start() {
    let web = Web::start().await;
    let timed = "id: nightly\nname: 夜間処理\nstart: { timer: { cron: \"0 6 * * *\", catch_up: skip }, next: done }\nnodes:\n  done: { end: }\n";
    web.engine.deploy("nightly.yaml", timed).unwrap();
    let mut admin = web.signed_in(ADMIN).await;
    // A process without a timer start has no such form.
    let plain = admin.get("/web/admin/processes/expense-approval").await.expect(200);
    assert!(!plain.text.contains("start-paused"));
    let page = admin.get("/web/admin/processes/nightly").await.expect(200);
    assert!(page.text.contains("name=\"paused\" value=\"true\""), "offers to pause:\n{}", page.text);
    let csrf = page.csrf();
    admin
        .post("/web/admin/processes/nightly/start-paused", &[("_csrf", &csrf), ("paused", "true")])
        .await
        .redirects_to("/web/admin/processes/nightly");
    assert!(web.engine.latest("nightly").unwrap().start_paused);
    let page = admin.get("/web/admin/processes/nightly").await.expect(200);
    assert!(page.text.contains("name=\"paused\" value=\"false\""), "offers to resume");
    admin
        .post("/web/admin/processes/nightly/start-paused", &[("_csrf", &csrf), ("paused", "false")])
        .await
        .redirects_to("/web/admin/processes/nightly");
    assert!(!web.engine.latest("nightly").unwrap().start_paused);
    // Without the token, or by a participant: refused, nothing changed.
    admin.post("/web/admin/processes/nightly/start-paused", &[("paused", "true")]).await.expect(403);
    let mut sato = web.signed_in(SATO).await;
    let csrf = sato.csrf("/").await;
    sato.post("/web/admin/processes/nightly/start-paused", &[("_csrf", &csrf), ("paused", "true")]).await.expect(403);
    assert!(!web.engine.latest("nightly").unwrap().start_paused);
    web.finish().await;
}

/// A circulation (回覧) of `processes/ringi.yaml` in the reader's inbox: marked as a
/// read task, its page shows the fields read-only and one button that records the
/// read, after the instance has already completed. The approver and the reader come
/// from the demo org chart (config/org.yaml).
#[tokio::test]
async fn a_circulated_task_is_read_only_and_marked_as_read() {
    let web = Web::start().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let users = Users::load(&root.join("config/users.yaml")).unwrap();
    web.engine.set_org(nagare::server::org::load_file(&root.join("config/org.yaml"), &users).unwrap());
    web.engine.deploy("ringi.yaml", &std::fs::read_to_string(root.join("processes/ringi.yaml")).unwrap()).unwrap();
    let vars: nagare_engine::Vars =
        [("件名".to_string(), serde_json::json!("ノートPC")), ("金額".to_string(), serde_json::json!(180000))].into();
    let by = nagare_engine::StartOptions { by: Some("sato".into()), ..Default::default() };
    let id = web.engine.start("ringi", vars, by).unwrap().id;
    let manager = task_at(&web, id, "上長承認");
    web.engine.complete(&manager, "tanaka", Default::default(), nagare_engine::runtime::Outcome::Next).unwrap();
    assert_eq!(web.engine.instance(id).unwrap().status, nagare_engine::runtime::Status::Completed);

    let mut suzuki = web.signed_in(SUZUKI).await;
    // Given to one user, outside any group: listed under 自分の担当 (Assigned to me).
    let inbox = suzuki.get("/?view=mine").await.expect(200);
    assert!(inbox.text.contains("（回覧 to read）"), "{}", inbox.text);
    let read = web.engine.instance(id).unwrap().unread[0].task.clone();
    let page = suzuki.get(&format!("/web/tasks/{read}")).await.expect(200);
    assert!(page.text.contains("Mark as read"), "{}", page.text);
    assert!(field_html(&page.text, "金額").contains("180000") && !page.text.contains("<input name=\"金額\""));
    assert!(!page.text.contains("Claim") && !page.text.contains("Unclaim"));
    suzuki
        .post(&format!("/web/tasks/{read}/complete"), &[("_csrf", &page.csrf()), ("outcome", "next")])
        .await
        .redirects_to("/?done=");
    let task = web.engine.task(&read).unwrap();
    assert_eq!(
        (task.status, task.completed_by.as_deref()),
        (nagare_engine::runtime::TaskStatus::Completed, Some("suzuki"))
    );
    assert!(web.engine.instance(id).unwrap().unread.is_empty());
    web.finish().await;
}
