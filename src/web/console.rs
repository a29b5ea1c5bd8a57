//! The process console for administrators, under `/web/admin/…`: processes and
//! their versions (YAML with line numbers, the diagram), deploy by upload with the
//! diagnostics shown at their lines, instances with filters, an instance page with
//! incidents to retry or resolve (with variable edits) and cancel, incidents across
//! instances, and pausing a timer start.
//!
//! Like the inbox, every action calls the `/api/v1` handler doing the same thing,
//! so the checks are those of the API (one implementation). The pages themselves
//! answer 403 to anyone who is not an administrator, as the API's admin routes do.

use super::html::{html, url_part, Markup};
use super::pages::render_instance;
use super::{check_post, csrf_field, error_page, layout, redirect, respond, Ctx, WebState};
use crate::server::auth::Auth;
use crate::server::config::{self, ConfigChange};
use crate::server::error::ApiError;
use crate::server::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::incidents::{self, FixRequest, IncidentQuery};
use crate::server::instances::{self, CancelRequest, ListQuery};
use crate::server::processes::{self, DeployRequest, VersionQuery};
use crate::server::views::{InstanceView, VarsJson};
use crate::server::DEPLOY_BODY_LIMIT;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

type Page = Result<Response, Response>;

/// The signed-in administrator, or a 403 page (a redirect to sign in without a session).
fn admin(web: &WebState, headers: &HeaderMap) -> Result<Ctx, Response> {
    let ctx = web.ctx(headers)?;
    if let Err(e) = ctx.caller.require_admin("use the process console") {
        return Err(error_page(&ctx, &e));
    }
    Ok(ctx)
}

fn api<T>(ctx: &Ctx, r: Result<T, ApiError>) -> Result<T, Response> {
    r.map_err(|e| error_page(ctx, &e))
}

/// The console's own sub-navigation.
fn tabs() -> Markup {
    Markup::raw(
        "<nav class=\"tabs\"><a href=\"/web/admin/processes\">プロセス Processes</a><a href=\"/web/admin/instances\">案件 Instances</a><a href=\"/web/admin/incidents\">インシデント Incidents</a></nav>",
    )
}

fn page(ctx: &Ctx, status: StatusCode, title: &str, body: Markup) -> Response {
    let mut m = tabs();
    m.push(body);
    respond(status, layout(title, Some(ctx), m))
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

// ---- processes and deploy ----

pub async fn home(State(web): State<WebState>, headers: HeaderMap) -> Page {
    admin(&web, &headers)?;
    Ok(redirect("/web/admin/processes"))
}

pub async fn processes(State(web): State<WebState>, headers: HeaderMap) -> Page {
    let ctx = admin(&web, &headers)?;
    Ok(processes_page(&web, &ctx, StatusCode::OK, None).await)
}

/// A failed deploy, shown under the upload form: the text with its diagnostics.
struct Rejected {
    file: String,
    source: String,
    message: String,
    diagnostics: Vec<Value>,
}

async fn processes_page(web: &WebState, ctx: &Ctx, status: StatusCode, rejected: Option<Rejected>) -> Response {
    let list = processes::list(State(web.app.clone()), Auth(ctx.caller.clone())).await.0;
    let mut body = Markup::new();
    if list.is_empty() {
        body.push(Markup::raw("<p>デプロイされたプロセスはありません。 No process is deployed.</p>"));
    } else {
        body.push(Markup::raw(
            "<table><thead><tr><th>ID</th><th>名前 Name</th><th>版 Versions</th></tr></thead><tbody>",
        ));
        for p in &list {
            let mut versions = Markup::new();
            for v in &p.versions {
                html!(
                    versions,
                    "<a href=\"/web/admin/processes/{}?version={}\">v{}</a> ",
                    url_part(&p.id),
                    v.version,
                    v.version
                );
            }
            html!(
                body,
                "<tr><td><a href=\"/web/admin/processes/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                url_part(&p.id),
                p.id,
                p.name,
                versions
            );
        }
        body.push(Markup::raw("</tbody></table>"));
    }
    let (file, source) = rejected.as_ref().map(|r| (r.file.clone(), r.source.clone())).unwrap_or_default();
    html!(
        body,
        "<h2>デプロイ Deploy</h2><form method=\"post\" action=\"/web/admin/processes\" enctype=\"multipart/form-data\" class=\"deploy\">{}\
         <div class=\"field\"><label for=\"yaml\">YAML ファイル File</label><input type=\"file\" id=\"yaml\" name=\"yaml\" accept=\".yaml,.yml,text/yaml\"></div>\
         <div class=\"field\"><label for=\"source\">または貼り付け Or paste the YAML</label><textarea id=\"source\" name=\"source\" rows=\"8\">{}</textarea></div>\
         <input type=\"hidden\" name=\"file\" value=\"{}\"><button>デプロイ Deploy</button></form>",
        csrf_field(ctx),
        source,
        file
    );
    if let Some(r) = rejected {
        html!(body, "<div class=\"rejected\"><p class=\"error\" role=\"alert\">{}</p>", r.message);
        if !r.diagnostics.is_empty() {
            body.push(Markup::raw("<ul class=\"diagnostics\">"));
            for d in &r.diagnostics {
                html!(body, "<li><a href=\"#L{}\">{}</a> {}</li>", line_of(d), diag_place(&r.file, d), diag_text(d));
            }
            body.push(Markup::raw("</ul>"));
        }
        body.push(source_listing(&r.source, &r.diagnostics));
        body.push(Markup::raw("</div>"));
    }
    page(ctx, status, "プロセス / Processes", body)
}

fn line_of(d: &Value) -> u64 {
    d.get("line").and_then(Value::as_u64).unwrap_or(0)
}

fn diag_place(file: &str, d: &Value) -> String {
    format!("{file}:{}:{}", line_of(d), d.get("col").and_then(Value::as_u64).unwrap_or(0))
}

/// `error [code]: message (hint)`.
fn diag_text(d: &Value) -> String {
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
    let mut t = format!("{} [{}]: {}", s("severity"), s("code"), s("message"));
    if !s("hint").is_empty() {
        t.push_str(&format!(" — {}", s("hint")));
    }
    t
}

/// The YAML text with line numbers (`#L12` anchors); the diagnostics of a line
/// right under it (those without a line, on top).
fn source_listing(source: &str, diagnostics: &[Value]) -> Markup {
    let mut by_line: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for d in diagnostics {
        by_line.entry(line_of(d)).or_default().push(d);
    }
    let mut m = Markup::raw("<table class=\"source\"><tbody>");
    let lines: Vec<&str> = source.lines().collect();
    for d in
        by_line.range(..1).flat_map(|(_, ds)| ds).chain(by_line.range(lines.len() as u64 + 1..).flat_map(|(_, ds)| ds))
    {
        html!(m, "<tr class=\"has-diag\"><td class=\"ln\"></td><td><p class=\"diag\">{}</p></td></tr>", diag_text(d));
    }
    for (i, line) in lines.iter().enumerate() {
        let n = i as u64 + 1;
        let diags = by_line.get(&n);
        let class = if diags.is_some() { Markup::raw(" class=\"has-diag\"") } else { Markup::new() };
        html!(m, "<tr id=\"L{}\"{}><td class=\"ln\">{}</td><td><pre>{}</pre>", n, class, n, line);
        for d in diags.into_iter().flatten() {
            let col = d.get("col").and_then(Value::as_u64).unwrap_or(0);
            html!(m, "<p class=\"diag\">{}:{} {}</p>", n, col, diag_text(d));
        }
        m.push(Markup::raw("</td></tr>"));
    }
    m.push(Markup::raw("</tbody></table>"));
    m
}

/// The deploy form's fields: the uploaded file wins over the pasted text.
#[derive(Default)]
struct DeployForm {
    csrf: String,
    file: String,
    uploaded: Option<(String, String)>,
    pasted: String,
}

/// Read the deploy form (multipart or urlencoded), at most [`DEPLOY_BODY_LIMIT`]
/// bytes in all, as the API's deploy route.
async fn read_deploy(req: Request) -> Result<DeployForm, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the form is larger than {} KiB", DEPLOY_BODY_LIMIT / 1024),
        )
    };
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut out = DeployForm::default();
    if !ct.starts_with("multipart/form-data") {
        let bytes = axum::body::to_bytes(req.into_body(), DEPLOY_BODY_LIMIT).await.map_err(|_| too_large())?;
        for (k, v) in form_urlencoded::parse(&bytes).into_owned() {
            match k.as_str() {
                "_csrf" => out.csrf = v,
                "source" => out.pasted = v,
                "file" => out.file = v,
                _ => {}
            }
        }
        return Ok(out);
    }
    let bad = |e: &dyn std::fmt::Display| ApiError::bad_request("bad-form", format!("the form could not be read: {e}"));
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| bad(&e))?;
    let mut total = 0usize;
    while let Some(mut field) = mp.next_field().await.map_err(|e| bad(&e))? {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| bad(&e))? {
            total += chunk.len();
            if total > DEPLOY_BODY_LIMIT {
                return Err(too_large());
            }
            value.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(value)
            .map_err(|_| ApiError::unprocessable("bad-encoding", format!("`{name}` is not UTF-8 text")))?;
        match (name.as_str(), file_name) {
            ("yaml", Some(f)) if !f.is_empty() => out.uploaded = Some((f, text)),
            ("_csrf", None) => out.csrf = text,
            ("source", None) => out.pasted = text,
            ("file", None) => out.file = text,
            _ => {}
        }
    }
    Ok(out)
}

pub async fn deploy(State(web): State<WebState>, headers: HeaderMap, req: Request) -> Page {
    let ctx = admin(&web, &headers)?;
    let form = api(&ctx, read_deploy(req).await)?;
    check_post(&ctx, &headers, &form.csrf)?;
    let (file, source) = match form.uploaded {
        Some((name, text)) => (name, text),
        None if !form.file.trim().is_empty() => (form.file.trim().to_string(), form.pasted),
        None => ("web.yaml".to_string(), form.pasted),
    };
    // Browsers send textarea lines with CRLF; the diagnostics count lines either way.
    let source = source.replace("\r\n", "\n");
    if source.trim().is_empty() {
        let r = Rejected {
            file,
            source,
            message: "YAML を選ぶか貼り付けてください / choose or paste a YAML file".into(),
            diagnostics: vec![],
        };
        return Ok(processes_page(&web, &ctx, StatusCode::UNPROCESSABLE_ENTITY, Some(r)).await);
    }
    let req = DeployRequest { source: source.clone(), file: Some(file.clone()) };
    match processes::deploy_file(State(web.app.clone()), Auth(ctx.caller.clone()), ApiJson(req)).await {
        Ok((_, done)) => {
            let d = done.0;
            let what = if d.created { "deployed" } else { "unchanged" };
            Ok(redirect(&format!(
                "/web/admin/processes/{}?version={}&{what}=1&warnings={}",
                url_part(&d.id),
                d.version,
                d.warnings.len()
            )))
        }
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let diagnostics = e.details.get("diagnostics").and_then(Value::as_array).cloned().unwrap_or_default();
            let r = Rejected { file, source, message: e.message.clone(), diagnostics };
            Ok(processes_page(&web, &ctx, e.status, Some(r)).await)
        }
        Err(e) => Err(error_page(&ctx, &e)),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ProcessParams {
    version: Option<u32>,
    deployed: Option<String>,
    unchanged: Option<String>,
    warnings: Option<usize>,
}

pub async fn process(
    State(web): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(pp): Query<ProcessParams>,
) -> Page {
    let ctx = admin(&web, &headers)?;
    let q = VersionQuery { version: pp.version };
    let d = api(
        &ctx,
        processes::get(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id.clone()), ApiQuery(q)).await,
    )?
    .0;
    let cfg = api(&ctx, config::get(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id.clone())).await)?.0;
    let mut body = Markup::new();
    if pp.deployed.is_some() {
        html!(
            body,
            "<p class=\"notice\" role=\"status\">v{} をデプロイしました / deployed version {}</p>",
            d.version,
            d.version
        );
    } else if pp.unchanged.is_some() {
        html!(body, "<p class=\"notice\" role=\"status\">同じ内容の v{} がデプロイ済みです / the same text is version {} already</p>", d.version, d.version);
    }
    if let Some(n) = pp.warnings.filter(|n| *n > 0) {
        html!(body, "<p class=\"error\">警告 {} 件 / {} warning(s): <code>nagare validate</code></p>", n, n);
    }
    let mut versions = Markup::new();
    for v in &d.versions {
        if v.version == d.version {
            html!(versions, "<strong>v{}</strong> ", v.version);
        } else {
            html!(
                versions,
                "<a href=\"/web/admin/processes/{}?version={}\">v{}</a> ",
                url_part(&d.id),
                v.version,
                v.version
            );
        }
    }
    html!(
        body,
        "<table><tr><th>ID</th><td>{}</td></tr><tr><th>版 Versions</th><td>{}</td></tr><tr><th>案件 Instances</th><td><a href=\"/web/admin/instances?process={}\">一覧 list</a></td></tr></table>",
        d.id,
        versions,
        url_part(&d.id)
    );
    if cfg.has_timer_start {
        let (state, action, value) = if cfg.start_paused {
            ("停止中 paused", "再開 Resume", "false")
        } else {
            ("動作中 running", "一時停止 Pause", "true")
        };
        html!(
            body,
            "<h2>タイマー開始 Timer start</h2><form method=\"post\" action=\"/web/admin/processes/{}/start-paused\" class=\"timer-start\">{}<span class=\"state\">{}</span> <input type=\"hidden\" name=\"paused\" value=\"{}\"><button>{}</button></form>",
            url_part(&d.id),
            csrf_field(&ctx),
            state,
            value,
            action
        );
    }
    if let Some(p) = web.app.engine.process(&d.id, d.version) {
        body.push(Markup::raw(
            "<h2>フロー Flow</h2><div class=\"diagram\" role=\"figure\" aria-label=\"フロー図 / process diagram\">",
        ));
        body.push(Markup::diagram_svg(nagare_engine::diagram::to_svg(&p)));
        body.push(Markup::raw("</div>"));
    }
    html!(body, "<h2>YAML (v{})</h2>", d.version);
    body.push(source_listing(&d.source, &[]));
    Ok(page(&ctx, StatusCode::OK, &format!("{} / {}", d.name, d.id), body))
}

pub async fn start_paused(
    State(web): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Request,
) -> Page {
    let ctx = admin(&web, &headers)?;
    let sub = api(&ctx, super::form::read_form(req, None).await)?;
    check_post(&ctx, &headers, sub.get("_csrf").unwrap_or(""))?;
    let paused = sub.get("paused") == Some("true");
    let change = ConfigChange { settings: None, start_paused: Some(paused) };
    let _view = api(
        &ctx,
        config::change(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id.clone()), ApiJson(change)).await,
    )?;
    Ok(redirect(&format!("/web/admin/processes/{}", url_part(&id))))
}

// ---- instances ----

#[derive(Debug, Default, Deserialize)]
pub struct InstancesParams {
    process: Option<String>,
    status: Option<String>,
    after: Option<u64>,
}

pub async fn instances(State(web): State<WebState>, headers: HeaderMap, Query(p): Query<InstancesParams>) -> Page {
    let ctx = admin(&web, &headers)?;
    let q = ListQuery {
        process: non_empty(&p.process),
        status: non_empty(&p.status),
        started_by: None,
        started_after: None,
        started_before: None,
        after: p.after,
        limit: None,
    };
    let list = api(&ctx, instances::list(State(web.app.clone()), Auth(ctx.caller.clone()), ApiQuery(q)).await)?.0;
    let processes = processes::list(State(web.app.clone()), Auth(ctx.caller.clone())).await.0;
    let mut body = Markup::raw("<form method=\"get\" action=\"/web/admin/instances\" class=\"filters\"><label>プロセス Process<select name=\"process\"><option value=\"\">すべて All</option>");
    for pr in &processes {
        let sel = if p.process.as_deref() == Some(pr.id.as_str()) { Markup::raw(" selected") } else { Markup::new() };
        html!(body, "<option value=\"{}\"{}>{} ({})</option>", pr.id, sel, pr.name, pr.id);
    }
    body.push(Markup::raw(
        "</select></label><label>状態 Status<select name=\"status\"><option value=\"\">すべて All</option>",
    ));
    for (s, label) in [
        ("running", "進行中 running"),
        ("incident", "インシデント incident"),
        ("completed", "完了 completed"),
        ("cancelled", "取消 cancelled"),
    ] {
        let sel = if p.status.as_deref() == Some(s) { Markup::raw(" selected") } else { Markup::new() };
        html!(body, "<option value=\"{}\"{}>{}</option>", s, sel, label);
    }
    body.push(Markup::raw("</select></label><button>絞り込む Filter</button></form>"));
    if list.items.is_empty() {
        body.push(Markup::raw("<p>案件はありません。 No instances.</p>"));
    } else {
        body.push(Markup::raw("<table class=\"instances\"><thead><tr><th>#</th><th>プロセス Process</th><th>業務キー Key</th><th>状態 Status</th><th>開始 Started</th><th>開始者 By</th></tr></thead><tbody>"));
        for i in &list.items {
            html!(
                body,
                "<tr><td><a href=\"/web/admin/instances/{}\">#{}</a></td><td>{} v{}</td><td>{}</td><td class=\"status-{}\">{}</td><td>{}</td><td>{}</td></tr>",
                i.id,
                i.id,
                i.process,
                i.version,
                i.business_key.clone().unwrap_or_default(),
                i.status,
                i.status,
                i.started_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                i.started_by.clone().unwrap_or_default()
            );
        }
        body.push(Markup::raw("</tbody></table>"));
    }
    if let Some(next) = &list.next {
        let mut link = format!("/web/admin/instances?after={}", url_part(next));
        for (k, v) in [("process", &p.process), ("status", &p.status)] {
            if let Some(v) = non_empty(v) {
                link.push_str(&format!("&{k}={}", url_part(&v)));
            }
        }
        html!(body, "<p><a href=\"{}\">次のページ Next page →</a></p>", link);
    }
    Ok(page(&ctx, StatusCode::OK, "案件 / Instances (admin)", body))
}

#[derive(Debug, Default, Deserialize)]
pub struct InstanceParams {
    done: Option<String>,
}

/// What a re-rendered instance page shows after a refused action.
#[derive(Default)]
struct Refusal {
    message: String,
    /// The incident whose form was sent (its variables stay in the textarea).
    incident: Option<u32>,
    vars: String,
    reason: String,
}

pub async fn instance(
    State(web): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(ip): Query<InstanceParams>,
) -> Page {
    let ctx = admin(&web, &headers)?;
    let notice = non_empty(&ip.done);
    instance_page(&web, &ctx, id, StatusCode::OK, notice, None).await
}

async fn instance_page(
    web: &WebState,
    ctx: &Ctx,
    id: u64,
    status: StatusCode,
    notice: Option<String>,
    refusal: Option<Refusal>,
) -> Page {
    let view = api(ctx, instances::get(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id)).await)?.0;
    let history = api(ctx, instances::history(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id)).await)?.0;
    let process = web.app.engine.process(&view.summary.process, view.summary.version);
    let mut body = Markup::new();
    if let Some(n) = notice {
        let text = match n.as_str() {
            "retried" => "再実行しました / retried",
            "resolved" => "解決済みにしました / resolved",
            "cancelled" => "取り消しました / cancelled",
            _ => "完了 / done",
        };
        html!(body, "<p class=\"notice\" role=\"status\">{}</p>", text);
    }
    let refusal = refusal.unwrap_or_default();
    if !refusal.message.is_empty() {
        html!(body, "<p class=\"error\" role=\"alert\">{}</p>", refusal.message);
    }
    body.push(incidents_section(ctx, &view, &refusal));
    body.push(tokens_section(web, &view));
    if view.summary.status == "running" || view.summary.status == "incident" {
        html!(
            body,
            "<h2>取消 Cancel</h2><form method=\"post\" action=\"/web/admin/instances/{}/cancel\" class=\"cancel\">{}<div class=\"field\"><label for=\"reason\">理由 Reason <span class=\"req\">*</span></label><input type=\"text\" id=\"reason\" name=\"reason\" maxlength=\"1000\" required value=\"{}\"></div><button>案件を取り消す Cancel the instance</button></form>",
            id,
            csrf_field(ctx),
            refusal.reason
        );
    }
    body.push(render_instance(&view, &history, process.as_deref()));
    Ok(respond(
        status,
        layout(&format!("案件 #{id} / Instance (admin)"), Some(ctx), {
            let mut m = tabs();
            m.push(body);
            m
        }),
    ))
}

fn incidents_section(ctx: &Ctx, view: &InstanceView, refusal: &Refusal) -> Markup {
    if view.incidents.is_empty() {
        return Markup::new();
    }
    let id = view.summary.id;
    let mut m = Markup::raw("<h2>インシデント Incidents</h2>");
    for i in &view.incidents {
        let vars = if refusal.incident == Some(i.id) { refusal.vars.clone() } else { "{}".to_string() };
        html!(
            m,
            "<div class=\"incident\" id=\"incident-{}\"><p><strong>#{} {}</strong> <small>{}</small></p><pre class=\"error\">{}</pre>\
             <form method=\"post\" action=\"/web/admin/instances/{}/incidents/{}\">{}\
             <div class=\"field\"><label for=\"vars-{}\">変数の変更 Variables to change (JSON)</label><textarea id=\"vars-{}\" name=\"vars\" rows=\"3\">{}</textarea></div>\
             <div class=\"actions\"><button name=\"action\" value=\"retry\">再実行 Retry</button><button name=\"action\" value=\"resolve\">解決済みにする Resolve (skip)</button></div></form></div>",
            i.id,
            i.id,
            i.node,
            i.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            i.message,
            id,
            i.id,
            csrf_field(ctx),
            i.id,
            i.id,
            vars
        );
    }
    m
}

/// Where the tokens wait, and their armed timers with due times.
fn tokens_section(web: &WebState, view: &InstanceView) -> Markup {
    let mut m = Markup::new();
    if view.waiting.is_empty() {
        return m;
    }
    m.push(Markup::raw("<h2>トークン Tokens</h2><table class=\"tokens\"><thead><tr><th>ノード Node</th><th>待ち Waiting on</th></tr></thead><tbody>"));
    for w in &view.waiting {
        html!(m, "<tr><td>{}</td><td><code>{}</code></td></tr>", w.node, w.wait.to_string());
    }
    m.push(Markup::raw("</tbody></table>"));
    let Ok(inst) = web.app.engine.instance(view.summary.id) else { return m };
    let timers: Vec<_> = inst.tokens.iter().flat_map(|t| t.timers.iter().map(move |a| (&t.node, a))).collect();
    let waits: Vec<_> = inst
        .tokens
        .iter()
        .filter_map(|t| match &t.wait {
            nagare_engine::runtime::Wait::Timer { job } => Some((&t.node, job)),
            _ => None,
        })
        .collect();
    if !timers.is_empty() || !waits.is_empty() {
        m.push(Markup::raw("<h2>タイマー Timers</h2><table class=\"timers\"><thead><tr><th>ノード Node</th><th>ジョブ Job</th><th>期限 Due</th></tr></thead><tbody>"));
        for (node, job) in waits {
            html!(m, "<tr><td>{}</td><td>{}</td><td>—</td></tr>", node, job);
        }
        for (node, a) in timers {
            html!(
                m,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                node,
                a.job,
                a.due.format("%Y-%m-%d %H:%M:%S UTC").to_string()
            );
        }
        m.push(Markup::raw("</tbody></table>"));
    }
    m
}

pub async fn fix_incident(
    State(web): State<WebState>,
    headers: HeaderMap,
    Path((id, incident)): Path<(u64, u32)>,
    req: Request,
) -> Page {
    let ctx = admin(&web, &headers)?;
    let sub = api(&ctx, super::form::read_form(req, None).await)?;
    check_post(&ctx, &headers, sub.get("_csrf").unwrap_or(""))?;
    let text = sub.get("vars").unwrap_or("").trim().to_string();
    let refuse =
        |message: String| Refusal { message, incident: Some(incident), vars: text.clone(), reason: String::new() };
    let vars: VarsJson = if text.is_empty() {
        VarsJson::new()
    } else {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                let r = refuse(
                    "変数は JSON オブジェクトで / variables must be a JSON object such as {\"金額\": 1200}".into(),
                );
                return instance_page(&web, &ctx, id, StatusCode::UNPROCESSABLE_ENTITY, None, Some(r)).await;
            }
            Err(e) => {
                let r = refuse(format!("変数の JSON が読めません / the variables are not JSON: {e}"));
                return instance_page(&web, &ctx, id, StatusCode::UNPROCESSABLE_ENTITY, None, Some(r)).await;
            }
        }
    };
    let retry = sub.get("action") != Some("resolve");
    let (st, auth, path, body) =
        (State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath((id, incident)), ApiJson(FixRequest { vars }));
    let result = if retry {
        incidents::retry(st, auth, path, body).await
    } else {
        incidents::resolve(st, auth, path, body).await
    };
    match result {
        Ok(_) => {
            Ok(redirect(&format!("/web/admin/instances/{id}?done={}", if retry { "retried" } else { "resolved" })))
        }
        Err(e) if e.status == StatusCode::NOT_FOUND && e.code == "unknown-instance" => Err(error_page(&ctx, &e)),
        Err(e) => {
            let mut message = e.message.clone();
            for (field, err) in super::form::field_errors(&e) {
                message.push_str(&format!("; {field}: {err}"));
            }
            instance_page(&web, &ctx, id, e.status, None, Some(refuse(message))).await
        }
    }
}

pub async fn cancel(State(web): State<WebState>, headers: HeaderMap, Path(id): Path<u64>, req: Request) -> Page {
    let ctx = admin(&web, &headers)?;
    let sub = api(&ctx, super::form::read_form(req, None).await)?;
    check_post(&ctx, &headers, sub.get("_csrf").unwrap_or(""))?;
    let reason = sub.get("reason").unwrap_or("").trim().to_string();
    let req = CancelRequest { reason: reason.clone() };
    match instances::cancel(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id), ApiJson(req)).await {
        Ok(_) => Ok(redirect(&format!("/web/admin/instances/{id}?done=cancelled"))),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(error_page(&ctx, &e)),
        Err(e) => {
            let r = Refusal { message: e.message.clone(), reason, ..Refusal::default() };
            instance_page(&web, &ctx, id, e.status, None, Some(r)).await
        }
    }
}

// ---- incidents across instances ----

#[derive(Debug, Default, Deserialize)]
pub struct IncidentParams {
    process: Option<String>,
}

pub async fn incidents(State(web): State<WebState>, headers: HeaderMap, Query(p): Query<IncidentParams>) -> Page {
    let ctx = admin(&web, &headers)?;
    let q = IncidentQuery { process: non_empty(&p.process), node: None, limit: None };
    let list = api(&ctx, incidents::list(State(web.app.clone()), Auth(ctx.caller.clone()), ApiQuery(q)).await)?.0;
    let mut body = Markup::new();
    if list.is_empty() {
        body.push(Markup::raw("<p>未解決のインシデントはありません。 No open incidents.</p>"));
    } else {
        body.push(Markup::raw("<table class=\"incidents\"><thead><tr><th>案件 Instance</th><th>プロセス Process</th><th>ノード Node</th><th>内容 Message</th><th>日時 At</th><th></th></tr></thead><tbody>"));
        for i in &list {
            html!(
                body,
                "<tr><td><a href=\"/web/admin/instances/{}#incident-{}\">#{}</a></td><td>{} v{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/web/admin/instances/{}/incidents/{}\">{}<button name=\"action\" value=\"retry\">再実行 Retry</button></form></td></tr>",
                i.instance,
                i.incident,
                i.instance,
                i.process,
                i.version,
                i.node,
                i.message,
                i.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                i.instance,
                i.incident,
                csrf_field(&ctx)
            );
        }
        body.push(Markup::raw("</tbody></table>"));
    }
    Ok(page(&ctx, StatusCode::OK, "インシデント / Incidents", body))
}
