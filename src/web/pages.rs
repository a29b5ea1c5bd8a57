//! The pages and their actions. Each action calls the `/api/v1` handler that does
//! the same thing, with the signed-in user as its caller.

use super::form::{self, Submitted, UploadTo};
use super::html::{html, url_part, Markup};
use super::{check_post, csrf_field, error_page, layout, redirect, respond, session, Ctx, WebState};
use crate::server::auth::{token_digest, Auth};
use crate::server::error::ApiError;
use crate::server::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::views::{FormField, InstanceView, TaskDetail, VarsJson};
use crate::server::{files, instances, tasks, views};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use nagare_engine::types::FileRef;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

type Page = Result<Response, Response>;

// ---- sign in / out ----

pub async fn login_form(State(web): State<WebState>, headers: HeaderMap) -> Response {
    if web.ctx(&headers).is_ok() {
        return redirect("/");
    }
    login_page(StatusCode::OK, None)
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let mut body = Markup::new();
    if let Some(e) = error {
        html!(body, "<p class=\"error\" role=\"alert\">{}</p>", e);
    }
    body.push(Markup::raw(
        "<form method=\"post\" action=\"/web/login\"><div class=\"field\"><label for=\"token\">APIトークン API token</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required></div>\
         <button>ログイン Sign in</button></form>\
         <p><small>トークンは管理者が <code>nagare token</code> で発行します。 Your administrator makes tokens with <code>nagare token</code>.</small></p>",
    ));
    respond(status, layout("ログイン / Sign in", None, body))
}

pub async fn login(State(web): State<WebState>, headers: HeaderMap, req: Request) -> Response {
    if !super::same_origin(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("別のサイトからの送信は受け付けません / cross-site form refused"),
        );
    }
    let sub = match form::read_form(req, None).await {
        Ok(s) => s,
        Err(e) => return login_page(e.status, Some(&e.message)),
    };
    let token = sub.get("token").unwrap_or("").trim();
    let digest = token_digest(token);
    if token.is_empty() || web.app.users.current().authenticate_digest(&digest).is_none() {
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("トークンが正しくないか、無効です / unknown or revoked token"),
        );
    }
    let id = web.sessions.create(digest);
    let mut r = redirect("/");
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id, &web.app.web)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub async fn logout(State(web): State<WebState>, headers: HeaderMap, req: Request) -> Page {
    let ctx = web.ctx(&headers)?;
    let sub = read(&ctx, req, None).await?;
    check_post(&ctx, &headers, sub.get("_csrf").unwrap_or(""))?;
    if let Some(id) = session::session_id(&headers) {
        web.sessions.remove(&id);
    }
    let mut r = redirect("/web/login");
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(&web.app.web)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

async fn read(ctx: &Ctx, req: Request, upload: Option<UploadTo<'_>>) -> Result<Submitted, Response> {
    form::read_form(req, upload).await.map_err(|e| error_page(ctx, &e))
}

// ---- inbox ----

#[derive(Debug, Default, Deserialize)]
pub struct InboxParams {
    process: Option<String>,
    lane: Option<String>,
    overdue: Option<String>,
    /// `priority`: highest priority first (default: due date).
    sort: Option<String>,
    /// `mine`: only tasks assigned to me.
    view: Option<String>,
    after: Option<String>,
    /// A task just completed (a notice on top).
    done: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub async fn inbox(State(web): State<WebState>, headers: HeaderMap, Query(p): Query<InboxParams>) -> Page {
    let ctx = web.ctx(&headers)?;
    let mine = p.view.as_deref() == Some("mine");
    let q = tasks::InboxQuery {
        group: None,
        lane: non_empty(&p.lane),
        assignee: if mine { Some(ctx.caller.id.clone()) } else { None },
        process: non_empty(&p.process),
        due_before: None,
        overdue: match p.overdue.as_deref() {
            Some("yes") => Some(true),
            Some("no") => Some(false),
            _ => None,
        },
        after: non_empty(&p.after),
        limit: None,
        min_priority: None,
        sort: non_empty(&p.sort).filter(|s| s == "priority"),
    };
    let page = tasks::inbox(State(web.app.clone()), Auth(ctx.caller.clone()), ApiQuery(q))
        .await
        .map_err(|e| error_page(&ctx, &e))?
        .0;
    let mut body = Markup::new();
    if let Some(done) = non_empty(&p.done) {
        html!(body, "<p class=\"notice\" role=\"status\">タスク {} を処理しました / task {} done</p>", done, done);
    }
    let sel = |on: bool| if on { Markup::raw(" selected") } else { Markup::new() };
    html!(
        body,
        "<form method=\"get\" action=\"/\" class=\"filters\"><label>表示 Show<select name=\"view\"><option value=\"\">グループのタスク Group tasks</option><option value=\"mine\"{}>自分の担当 Assigned to me</option></select></label>\
         <label>プロセス Process<input type=\"text\" name=\"process\" value=\"{}\"></label>\
         <label>レーン Lane<input type=\"text\" name=\"lane\" value=\"{}\"></label>\
         <label>期限 Due<select name=\"overdue\"><option value=\"\">すべて All</option><option value=\"yes\"{}>期限切れ Overdue</option><option value=\"no\"{}>期限内 Not overdue</option></select></label>\
         <label>並び順 Sort<select name=\"sort\"><option value=\"\">期限順 By due date</option><option value=\"priority\"{}>優先度順 By priority</option></select></label>\
         <button>絞り込む Filter</button></form>",
        sel(mine),
        p.process.clone().unwrap_or_default(),
        p.lane.clone().unwrap_or_default(),
        sel(p.overdue.as_deref() == Some("yes")),
        sel(p.overdue.as_deref() == Some("no")),
        sel(p.sort.as_deref() == Some("priority")),
    );
    if page.items.is_empty() {
        body.push(Markup::raw("<p>タスクはありません。 No tasks.</p>"));
    } else {
        body.push(Markup::raw("<table><thead><tr><th>優先度 Priority</th><th>期限 Due</th><th>タスク Task</th><th>プロセス Process</th><th>レーン Lane</th><th>案件 Instance</th><th>担当 Assignee</th></tr></thead><tbody>"));
        for t in &page.items {
            let due = match t.due {
                Some(d) if t.overdue => {
                    html!("<span class=\"overdue\">{} 期限切れ</span>", d.format("%Y-%m-%d %H:%M").to_string())
                }
                Some(d) => html!("{}", d.format("%Y-%m-%d %H:%M").to_string()),
                None => Markup::raw("—"),
            };
            html!(
                body,
                "<tr><td>{}</td><td>{}</td><td><a href=\"/web/tasks/{}\">{}</a></td><td>{}</td><td>{}</td><td><a href=\"/web/instances/{}\">#{}</a></td><td>{}</td></tr>",
                t.priority.to_string(),
                due,
                url_part(&t.id),
                match &t.item {
                    Some(item) => format!("{} — {}", t.title, item_text(item)),
                    None if t.read_only => format!("{} （回覧 to read）", t.title),
                    None => t.title.clone(),
                },
                t.process,
                t.lane,
                t.instance,
                t.instance,
                t.assignee.clone().unwrap_or_else(|| "—".into())
            );
        }
        body.push(Markup::raw("</tbody></table>"));
    }
    if let Some(next) = &page.next {
        let mut link = format!("/?after={}", url_part(next));
        for (k, v) in
            [("view", &p.view), ("process", &p.process), ("lane", &p.lane), ("overdue", &p.overdue), ("sort", &p.sort)]
        {
            if let Some(v) = non_empty(v) {
                link.push_str(&format!("&{k}={}", url_part(&v)));
            }
        }
        html!(body, "<p><a href=\"{}\">次のページ Next page →</a></p>", link);
    }
    Ok(respond(StatusCode::OK, layout("受信箱 / Inbox", Some(&ctx), body)))
}

// ---- one task ----

/// What a re-rendered task form shows: the submitted values and the errors.
#[derive(Default)]
struct Feedback {
    values: VarsJson,
    fields: HashMap<String, String>,
    top: Option<String>,
    send_back: Option<String>,
    comment: String,
}

impl Feedback {
    fn from_error(e: &ApiError, values: VarsJson) -> Self {
        let fields = form::field_errors(e);
        Feedback { top: Some(e.message.clone()), fields, values, ..Feedback::default() }
    }
}

pub async fn task(State(web): State<WebState>, headers: HeaderMap, Path(id): Path<String>) -> Page {
    let ctx = web.ctx(&headers)?;
    task_page(&web, &ctx, &id, StatusCode::OK, Feedback::default()).await
}

async fn task_page(web: &WebState, ctx: &Ctx, id: &str, status: StatusCode, fb: Feedback) -> Page {
    let detail = tasks::get(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id.to_string()))
        .await
        .map_err(|e| error_page(ctx, &e))?
        .0;
    let engine = web.app.engine.clone();
    let (tid, caller) = (id.to_string(), ctx.caller.clone());
    let (may_work, tz) = crate::server::blocking(move || {
        let t = engine.task(&tid)?;
        let tz = engine.process(&t.process, t.version).map(|p| p.time_zone);
        Ok((caller.may_work(&t), tz))
    })
    .await
    .map_err(|e| error_page(ctx, &e))?;
    let page = match tz {
        Some(tz) => render_task(ctx, &detail, may_work, &tz, fb),
        None => render_task(ctx, &detail, may_work, &chrono::Utc, fb),
    };
    Ok(respond(status, page))
}

fn render_task<Z: chrono::TimeZone>(ctx: &Ctx, d: &TaskDetail, may_work: bool, tz: &Z, fb: Feedback) -> Markup
where
    Z::Offset: std::fmt::Display,
{
    let t = &d.task;
    let tid = url_part(&t.id);
    let mut body = Markup::new();
    if let Some(top) = &fb.top {
        html!(body, "<p class=\"error\" role=\"alert\">{}</p>", top);
    }
    html!(
        body,
        "<table><tr><th>プロセス Process</th><td>{} (v{})</td></tr><tr><th>案件 Instance</th><td><a href=\"/web/instances/{}\">#{}</a></td></tr><tr><th>レーン Lane</th><td>{}</td></tr><tr><th>状態 Status</th><td>{}</td></tr><tr><th>担当 Assignee</th><td>{}</td></tr><tr><th>期限 Due</th><td>{}</td></tr></table>",
        t.process,
        t.version,
        t.instance,
        t.instance,
        t.lane,
        t.status,
        t.assignee.clone().unwrap_or_else(|| "—".into()),
        t.due.map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(|| "—".into())
    );
    if let Some(item) = &t.item {
        html!(body, "<p class=\"item\">対象 Item: {}</p>", item_text(item));
    }
    let open = t.status == "open";
    let download = |name: &str| Some(format!("/web/instances/{}/files/{}", t.instance, url_part(name)));
    if open && may_work && t.read_only {
        // A circulation (回覧): the fields to read, and one button that records it.
        for f in &d.form {
            body.push(form::render(f, None, tz, download(&f.name)));
        }
        html!(
            body,
            "<form method=\"post\" action=\"/web/tasks/{}/complete\">{}<div class=\"actions\"><button name=\"outcome\" value=\"next\">確認しました Mark as read</button></div></form>",
            tid,
            csrf_field(ctx)
        );
    } else if open && may_work {
        body.push(Markup::raw("<div class=\"actions\">"));
        if t.assignee.is_none() {
            html!(
                body,
                "<form method=\"post\" action=\"/web/tasks/{}/claim\">{}<button>引き受ける Claim</button></form>",
                tid,
                csrf_field(ctx)
            );
        } else if t.assignee.as_deref() == Some(&ctx.caller.id) || ctx.caller.admin {
            html!(
                body,
                "<form method=\"post\" action=\"/web/tasks/{}/unclaim\">{}<button>担当を外す Unclaim</button></form>",
                tid,
                csrf_field(ctx)
            );
        }
        body.push(Markup::raw("</div>"));
        let enctype =
            if form::has_upload(&d.form) { Markup::raw(" enctype=\"multipart/form-data\"") } else { Markup::new() };
        html!(body, "<form method=\"post\" action=\"/web/tasks/{}/complete\"{}>{}", tid, enctype, csrf_field(ctx));
        for f in &d.form {
            let shown = with_value(f, &fb.values);
            body.push(form::render(&shown, fb.fields.get(&f.name).map(String::as_str), tz, download(&f.name)));
        }
        for (f, e) in fb.fields.iter().filter(|(f, _)| !d.form.iter().any(|x| &x.name == *f)) {
            html!(body, "<p class=\"error\">{}: {}</p>", f, e);
        }
        body.push(Markup::raw("<div class=\"actions\">"));
        for o in &d.outcomes {
            let label = if o == "next" { "完了 Complete".to_string() } else { o.clone() };
            html!(body, "<button name=\"outcome\" value=\"{}\">{}</button>", o, label);
        }
        body.push(Markup::raw("</div></form>"));
        if let Some(to) = &d.send_back_to {
            html!(
                body,
                "<h2>差し戻し Send back ({})</h2><form method=\"post\" action=\"/web/tasks/{}/send-back\">{}<div class=\"field\"><label for=\"comment\">コメント Comment <span class=\"req\">*</span></label><textarea id=\"comment\" name=\"comment\" maxlength=\"{}\" required>{}</textarea>",
                to,
                tid,
                csrf_field(ctx),
                tasks::MAX_COMMENT_CHARS,
                fb.comment
            );
            if let Some(e) = &fb.send_back {
                html!(body, "<span class=\"error\" role=\"alert\">{}</span>", e);
            }
            body.push(Markup::raw("</div><button>差し戻す Send back</button></form>"));
        }
    } else {
        for f in &d.form {
            let ro = FormField { mode: "readonly".into(), ..clone_field(f) };
            body.push(form::render(&ro, None, tz, download(&f.name)));
        }
    }
    layout(&t.title, Some(ctx), body)
}

fn clone_field(f: &FormField) -> FormField {
    FormField {
        name: f.name.clone(),
        label: f.label.clone(),
        ty: f.ty.clone(),
        mode: f.mode.clone(),
        options: f.options.clone(),
        max_length: f.max_length,
        value: f.value.clone(),
    }
}

/// The field showing a submitted value instead of the stored one (after an error).
fn with_value(f: &FormField, values: &VarsJson) -> FormField {
    let mut out = clone_field(f);
    if f.mode != "readonly" && f.ty != "file" {
        if let Some(v) = values.get(&f.name) {
            out.value = v.clone();
        }
    }
    out
}

pub async fn claim(State(web): State<WebState>, headers: HeaderMap, Path(id): Path<String>, req: Request) -> Page {
    let ctx = web.ctx(&headers)?;
    let sub = read(&ctx, req, None).await?;
    check_post(&ctx, &headers, sub.get("_csrf").unwrap_or(""))?;
    match tasks::claim(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id.clone())).await {
        Ok(_) => Ok(redirect(&format!("/web/tasks/{}", url_part(&id)))),
        Err(e) => task_or_error(&web, &ctx, &id, e).await,
    }
}

pub async fn unclaim(State(web): State<WebState>, headers: HeaderMap, Path(id): Path<String>, req: Request) -> Page {
    let ctx = web.ctx(&headers)?;
    let sub = read(&ctx, req, None).await?;
    check_post(&ctx, &headers, sub.get("_csrf").unwrap_or(""))?;
    match tasks::unclaim(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id.clone())).await {
        Ok(_) => Ok(redirect(&format!("/web/tasks/{}", url_part(&id)))),
        Err(e) => task_or_error(&web, &ctx, &id, e).await,
    }
}

/// A refused action on a visible task: the task page with the reason on top; on
/// an invisible one, the error page (404, as the API).
async fn task_or_error(web: &WebState, ctx: &Ctx, id: &str, e: ApiError) -> Page {
    if e.status == StatusCode::NOT_FOUND {
        return Err(error_page(ctx, &e));
    }
    task_page(web, ctx, id, e.status, Feedback { top: Some(e.message), ..Feedback::default() }).await
}

pub async fn complete(State(web): State<WebState>, headers: HeaderMap, Path(id): Path<String>, req: Request) -> Page {
    let ctx = web.ctx(&headers)?;
    let detail = tasks::get(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id.clone()))
        .await
        .map_err(|e| error_page(&ctx, &e))?
        .0;
    let engine = web.app.engine.clone();
    let upload = UploadTo { engine: &engine, process: &detail.task.process, by: &ctx.caller.id, session: &ctx.session };
    let sub = read(&ctx, req, Some(upload)).await?;
    check_post(&ctx, &headers, sub.get("_csrf").unwrap_or(""))?;
    let tz = engine.process(&detail.task.process, detail.task.version).map(|p| p.time_zone);
    let vars = match tz {
        Some(tz) => form::collect(&detail.form, &sub, &tz),
        None => form::collect(&detail.form, &sub, &chrono::Utc),
    };
    let upload_errors: HashMap<String, String> =
        sub.files.iter().filter_map(|(n, r)| r.as_ref().err().map(|e| (n.clone(), e.clone()))).collect();
    if !upload_errors.is_empty() {
        let fb = Feedback {
            top: Some("ファイルを保存できませんでした; nothing was saved / a file was refused".into()),
            fields: upload_errors,
            values: vars,
            ..Feedback::default()
        };
        return task_page(&web, &ctx, &id, StatusCode::UNPROCESSABLE_ENTITY, fb).await;
    }
    let outcome = sub.get("outcome").map(str::to_string).filter(|o| o != "next");
    let req = tasks::CompleteRequest { variables: vars.clone(), outcome };
    match tasks::complete_with(web.app.clone(), ctx.caller.clone(), id.clone(), req).await {
        Ok(done) => Ok(after_done(&id, &done.0)),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(error_page(&ctx, &e)),
        Err(e) => task_page(&web, &ctx, &id, e.status, Feedback::from_error(&e, vars)).await,
    }
}

/// After completing: the next task of the same instance if the user may work it,
/// else the inbox with a notice.
fn after_done(id: &str, done: &views::CompletionView) -> Response {
    match done.next_tasks.first() {
        Some(next) => redirect(&format!("/web/tasks/{}", url_part(&next.id))),
        None => redirect(&format!("/?done={}", url_part(id))),
    }
}

pub async fn send_back(State(web): State<WebState>, headers: HeaderMap, Path(id): Path<String>, req: Request) -> Page {
    let ctx = web.ctx(&headers)?;
    let sub = read(&ctx, req, None).await?;
    check_post(&ctx, &headers, sub.get("_csrf").unwrap_or(""))?;
    let comment = sub.get("comment").unwrap_or("").to_string();
    let req = tasks::SendBackRequest { comment: comment.clone(), variables: VarsJson::new() };
    match tasks::send_back(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id.clone()), ApiJson(req)).await {
        Ok(done) => Ok(after_done(&id, &done.0)),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(error_page(&ctx, &e)),
        Err(e) => {
            let fb = Feedback { send_back: Some(e.message.clone()), comment, ..Feedback::default() };
            task_page(&web, &ctx, &id, e.status, fb).await
        }
    }
}

// ---- start a process ----

pub async fn start_list(State(web): State<WebState>, headers: HeaderMap) -> Page {
    let ctx = web.ctx(&headers)?;
    let mut body = Markup::new();
    let startable: Vec<_> = web
        .app
        .engine
        .processes()
        .into_iter()
        .filter_map(|versions| versions.last().cloned())
        .filter(|p| ctx.caller.may_start(p))
        .collect();
    if startable.is_empty() {
        body.push(Markup::raw("<p>開始できるプロセスはありません。 No process you may start.</p>"));
    } else {
        body.push(Markup::raw("<ul>"));
        for p in &startable {
            html!(body, "<li><a href=\"/web/start/{}\">{}</a> <small>({})</small></li>", url_part(&p.id), p.name, p.id);
        }
        body.push(Markup::raw("</ul>"));
    }
    Ok(respond(StatusCode::OK, layout("申請する / Start", Some(&ctx), body)))
}

/// The start form's fields: every declared variable, required as declared.
fn start_fields(p: &nagare_engine::process::Process) -> Vec<FormField> {
    p.vars
        .iter()
        .map(|(name, spec)| FormField {
            name: name.clone(),
            label: spec.label.clone(),
            ty: spec.ty.name().to_string(),
            mode: if spec.required { "required" } else { "optional" }.to_string(),
            options: match &spec.ty {
                nagare_engine::types::VarType::Choice { options } => Some(options.clone()),
                _ => None,
            },
            max_length: views::effective_max_length(spec),
            value: spec.default.clone().unwrap_or(Value::Null),
        })
        .collect()
}

fn startable(web: &WebState, ctx: &Ctx, id: &str) -> Result<std::sync::Arc<nagare_engine::process::Process>, Response> {
    let not_found =
        || error_page(ctx, &ApiError::engine(nagare_engine::EngineError::UnknownProcess(id.to_string()), None));
    let p = web.app.engine.latest(id).ok_or_else(not_found)?;
    if !ctx.caller.may_start(&p) {
        return Err(error_page(
            ctx,
            &ApiError::forbidden(format!("only members of {} may start `{}`", p.start_groups.join(", "), p.id)),
        ));
    }
    Ok(p)
}

pub async fn start_form(State(web): State<WebState>, headers: HeaderMap, Path(id): Path<String>) -> Page {
    let ctx = web.ctx(&headers)?;
    let p = startable(&web, &ctx, &id)?;
    Ok(respond(StatusCode::OK, render_start(&ctx, &p, Feedback::default(), "")))
}

fn render_start(ctx: &Ctx, p: &nagare_engine::process::Process, fb: Feedback, key: &str) -> Markup {
    let fields = start_fields(p);
    let mut body = Markup::new();
    if let Some(top) = &fb.top {
        html!(body, "<p class=\"error\" role=\"alert\">{}</p>", top);
    }
    let enctype =
        if form::has_upload(&fields) { Markup::raw(" enctype=\"multipart/form-data\"") } else { Markup::new() };
    html!(body, "<form method=\"post\" action=\"/web/start/{}\"{}>{}", url_part(&p.id), enctype, csrf_field(ctx));
    for f in &fields {
        body.push(form::render(
            &with_value(f, &fb.values),
            fb.fields.get(&f.name).map(String::as_str),
            &p.time_zone,
            None,
        ));
    }
    html!(
        body,
        "<div class=\"field\"><label for=\"business_key\">業務キー Business key <small>(任意 optional)</small></label><input type=\"text\" id=\"business_key\" name=\"_business_key\" value=\"{}\" maxlength=\"{}\"></div><button>開始 Start</button></form>",
        key,
        instances::MAX_KEY_CHARS
    );
    layout(&p.name, Some(ctx), body)
}

pub async fn start(State(web): State<WebState>, headers: HeaderMap, Path(id): Path<String>, req: Request) -> Page {
    let ctx = web.ctx(&headers)?;
    let p = startable(&web, &ctx, &id)?;
    let engine = web.app.engine.clone();
    let sub =
        read(&ctx, req, Some(UploadTo { engine: &engine, process: &p.id, by: &ctx.caller.id, session: &ctx.session }))
            .await?;
    check_post(&ctx, &headers, sub.get("_csrf").unwrap_or(""))?;
    let fields = start_fields(&p);
    let mut vars = form::collect(&fields, &sub, &p.time_zone);
    // An instance starts with what was filled in; empty fields stay unset.
    vars.retain(|_, v| !v.is_null());
    let key = sub.get("_business_key").unwrap_or("").trim().to_string();
    let upload_errors: HashMap<String, String> =
        sub.files.iter().filter_map(|(n, r)| r.as_ref().err().map(|e| (n.clone(), e.clone()))).collect();
    if !upload_errors.is_empty() {
        let fb = Feedback {
            top: Some("ファイルを保存できませんでした / a file was refused".into()),
            fields: upload_errors,
            values: vars,
            ..Feedback::default()
        };
        return Ok(respond(StatusCode::UNPROCESSABLE_ENTITY, render_start(&ctx, &p, fb, &key)));
    }
    let req = instances::StartRequest {
        process: p.id.clone(),
        variables: vars.clone(),
        business_key: if key.is_empty() { None } else { Some(key.clone()) },
    };
    match instances::start_with(web.app.clone(), ctx.caller.clone(), req).await {
        Ok((_, view)) => Ok(redirect(&format!("/web/instances/{}?started=1", view.0.summary.id))),
        Err(e) => Ok(respond(e.status, render_start(&ctx, &p, Feedback::from_error(&e, vars), &key))),
    }
}

// ---- instances ----

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    after: Option<u64>,
}

pub async fn instances(State(web): State<WebState>, headers: HeaderMap, Query(lp): Query<ListParams>) -> Page {
    let ctx = web.ctx(&headers)?;
    let q = instances::ListQuery {
        process: None,
        status: None,
        started_by: None,
        started_after: None,
        started_before: None,
        after: lp.after,
        limit: None,
    };
    let page = instances::list(State(web.app.clone()), Auth(ctx.caller.clone()), ApiQuery(q))
        .await
        .map_err(|e| error_page(&ctx, &e))?
        .0;
    let mut body = Markup::new();
    if page.items.is_empty() {
        body.push(Markup::raw("<p>案件はありません。 No instances.</p>"));
    } else {
        body.push(Markup::raw("<table><thead><tr><th>#</th><th>プロセス Process</th><th>業務キー Key</th><th>状態 Status</th><th>開始 Started</th><th>開始者 By</th></tr></thead><tbody>"));
        for i in &page.items {
            html!(
                body,
                "<tr><td><a href=\"/web/instances/{}\">#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                i.id,
                i.id,
                i.process,
                i.business_key.clone().unwrap_or_default(),
                i.status,
                i.started_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                i.started_by.clone().unwrap_or_default()
            );
        }
        body.push(Markup::raw("</tbody></table>"));
    }
    if let Some(next) = &page.next {
        html!(body, "<p><a href=\"/web/instances?after={}\">次のページ Next page →</a></p>", next);
    }
    Ok(respond(StatusCode::OK, layout("案件 / Instances", Some(&ctx), body)))
}

#[derive(Debug, Default, Deserialize)]
pub struct InstanceParams {
    /// Just started from the start form (a notice on top).
    started: Option<String>,
}

pub async fn instance(
    State(web): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(ip): Query<InstanceParams>,
) -> Page {
    let ctx = web.ctx(&headers)?;
    let view = instances::get(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id))
        .await
        .map_err(|e| error_page(&ctx, &e))?
        .0;
    let history = instances::history(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath(id))
        .await
        .map_err(|e| error_page(&ctx, &e))?
        .0;
    let labels = web.app.engine.process(&view.summary.process, view.summary.version);
    let mut page = Markup::new();
    if ip.started.is_some() {
        page.push(Markup::raw("<p class=\"notice\" role=\"status\">開始しました / started</p>"));
    }
    if ctx.caller.admin {
        html!(page, "<p><a href=\"/web/admin/instances/{}\">管理画面で開く Open in the console</a></p>", id);
    }
    page.push(render_instance(&view, &history, labels.as_deref()));
    Ok(respond(StatusCode::OK, layout(&format!("案件 #{id} / Instance"), Some(&ctx), page)))
}

pub(super) fn render_instance(
    v: &InstanceView,
    history: &[views::HistoryItem],
    process: Option<&nagare_engine::process::Process>,
) -> Markup {
    let s = &v.summary;
    let mut body = html!(
        "<table><tr><th>プロセス Process</th><td>{} (v{})</td></tr><tr><th>業務キー Key</th><td>{}</td></tr><tr><th>状態 Status</th><td>{}</td></tr><tr><th>開始 Started</th><td>{} {}</td></tr></table>",
        s.process,
        s.version,
        s.business_key.clone().unwrap_or_default(),
        s.status,
        s.started_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        s.started_by.clone().unwrap_or_default()
    );
    if !v.open_tasks.is_empty() {
        body.push(Markup::raw("<h2>未完了のタスク Open tasks</h2><ul>"));
        for t in &v.open_tasks {
            html!(body, "<li><a href=\"/web/tasks/{}\">{}</a> ({})</li>", url_part(&t.id), t.title, t.lane);
        }
        body.push(Markup::raw("</ul>"));
    }
    if let Some(p) = process {
        body.push(Markup::raw("<h2>フロー Flow</h2>"));
        body.push(diagram_of(p, v, history));
    }
    body.push(Markup::raw("<h2>変数 Variables</h2><table>"));
    for (name, value) in &v.variables {
        let label =
            process.and_then(|p| p.var(name)).and_then(|spec| spec.label.clone()).unwrap_or_else(|| name.clone());
        let link = FileRef::from_value(value).ok().map(|_| format!("/web/instances/{}/files/{}", s.id, url_part(name)));
        html!(body, "<tr><th>{}</th><td>{}</td></tr>", label, form::show(value, link));
    }
    body.push(Markup::raw("</table><h2>履歴 History</h2><table><thead><tr><th>#</th><th>日時 At</th><th>出来事 Event</th><th>ノード Node</th><th>誰 Who</th><th>詳細 Details</th></tr></thead><tbody>"));
    for h in history {
        let details =
            if h.details.is_empty() { String::new() } else { serde_json::to_string(&h.details).unwrap_or_default() };
        html!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            h.seq,
            h.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            h.event,
            h.node.clone().unwrap_or_default(),
            h.user.clone().unwrap_or_default(),
            details
        );
    }
    body.push(Markup::raw("</tbody></table>"));
    body
}

/// The process diagram with the path this instance took (the nodes its history
/// names) and where its tokens are now. Inline SVG drawn with presentation
/// attributes only, so the page's CSP (no inline styles, no scripts) holds; every
/// label in it is escaped by the renderer.
fn diagram_of(p: &nagare_engine::process::Process, v: &InstanceView, history: &[views::HistoryItem]) -> Markup {
    use nagare_engine::diagram;
    let hl = diagram::Highlight::new(
        history.iter().filter_map(|h| h.node.as_deref()),
        v.waiting.iter().map(|w| w.node.as_str()),
    )
    .with_sent_back(history.iter().filter(|h| h.event == "sent_back").filter_map(|h| h.node.as_deref()));
    let svg = diagram::svg(&diagram::diagram(p), &hl);
    let mut m = Markup::raw("<div class=\"diagram\" role=\"figure\" aria-label=\"フロー図 / process diagram\">");
    m.push(Markup::diagram_svg(svg));
    m.push(Markup::raw("<p class=\"legend\"><span class=\"visited\">■</span> 通過 done <span class=\"current\">■</span> 現在 now</p></div>"));
    m
}

pub async fn download(State(web): State<WebState>, headers: HeaderMap, Path((id, var)): Path<(u64, String)>) -> Page {
    let ctx = web.ctx(&headers)?;
    files::download(State(web.app.clone()), Auth(ctx.caller.clone()), ApiPath((id, var)))
        .await
        .map_err(|e| error_page(&ctx, &e))
}

/// A multi-instance task's item as one line: text as it is, anything else as JSON.
fn item_text(item: &serde_json::Value) -> String {
    match item {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
