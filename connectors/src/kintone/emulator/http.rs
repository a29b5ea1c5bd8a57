//! The emulator's HTTP layer: authentication, faults, parameters and kintone's
//! error bodies around [`super::state`].

use super::state::{ApiError, Caller, Right, StatusChange};
use super::{now, Emulator, Faults};
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::time::Duration;

type Params = Query<Vec<(String, String)>>;

/// The API under `prefix` (`/k/v1` or a guest space's `/k/guest/{space}/v1`).
fn api(prefix: &str) -> Router<Emulator> {
    Router::new()
        .route(&format!("{prefix}/record.json"), get(get_record).post(add_record).put(update_record))
        .route(
            &format!("{prefix}/records.json"),
            get(get_records).post(add_records).put(update_records).delete(delete_records),
        )
        .route(&format!("{prefix}/file.json"), get(download_file).post(upload_file))
        .route(&format!("{prefix}/record/status.json"), axum::routing::put(update_status))
        .route(&format!("{prefix}/app/form/fields.json"), get(form_fields))
}

pub fn router(emu: Emulator) -> Router {
    let api = api("/k/v1")
        .merge(api("/k/guest/{space}/v1"))
        .layer(middleware::from_fn_with_state(emu.clone(), domain))
        .layer(middleware::from_fn(language))
        .layer(middleware::from_fn_with_state(emu.clone(), faults));
    Router::new()
        .merge(api)
        .route("/emulator/faults", get(get_faults).put(put_faults))
        .fallback(not_found)
        .with_state(emu)
}

fn error(emu: &Emulator, e: ApiError) -> Response {
    let mut body = json!({ "code": e.code, "id": emu.request_id(), "message": e.message });
    if let Some(errs) = e.errors {
        body["errors"] = errs;
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

async fn not_found(State(emu): State<Emulator>) -> Response {
    error(&emu, ApiError::new(404, "CB_NF01", "指定したAPIが見つかりません。"))
}

/// Most bytes of a request body the emulator reads.
const MAX_BODY: usize = 8 << 20;

/// The domain's rules before any API: its Basic authentication, and guest-space
/// apps answering only under their space's path (and others only outside one).
async fn domain(State(emu): State<Emulator>, req: Request, next: Next) -> Response {
    let basic = emu.read(|st| st.basic_auth.clone());
    if let Some((login, password)) = basic {
        let expected = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
        let sent = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        if sent.strip_prefix("Basic ").map(str::trim) != Some(expected.as_str()) {
            // kintone's front door answers Basic auth failures before the API, without a JSON body.
            return (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Basic realm=\"cybozu.com\"")],
                "401 Unauthorized",
            )
                .into_response();
        }
    }
    let space: Option<u64> = req.uri().path().strip_prefix("/k/guest/").and_then(|r| r.split('/').next()?.parse().ok());
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error(&emu, ApiError::new(413, "CB_VA01", "リクエストが大きすぎます。"));
    };
    let from_query = parts.uri.query().and_then(|q| url_param(q, "app").and_then(|v| v.parse::<u64>().ok()));
    let from_body = || {
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|b| b.get("app").and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())))
    };
    if let Some(app) = from_query.or_else(from_body) {
        let home = emu.read(|st| st.apps.get(&app).map(|a| a.guest_space));
        match home {
            Some(Some(s)) if space != Some(s) => {
                return error(&emu, ApiError::new(520, "GAIA_IL23", "ゲストスペース内のアプリを操作する場合は、リクエストの送信先を「/k/guest/（ゲストスペースのID）/v1/...」にします。"));
            }
            Some(None) if space.is_some() => {
                return error(
                    &emu,
                    ApiError::new(
                        404,
                        "GAIA_AP01",
                        format!("指定したアプリ（id: {app}）が見つかりません。削除されている可能性があります。"),
                    ),
                );
            }
            _ => {}
        }
    }
    if parts.method != axum::http::Method::GET && !bytes.is_empty() {
        // A body must say what it is: JSON, or multipart for a file upload.
        let ct = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let want = if parts.uri.path().ends_with("/file.json") { "multipart/form-data" } else { "application/json" };
        if !ct.trim_start().starts_with(want) {
            let e = ApiError::new(415, "CB_IJ01", format!("Content-Type は {want} を指定してください。"));
            return error(&emu, e);
        }
    }
    if parts.method == axum::http::Method::GET && !bytes.is_empty() {
        // kintone reads a GET's parameters from a JSON body too (long queries).
        let mut parts = parts;
        match body_as_query(&parts.uri, &bytes) {
            Ok(uri) => {
                parts.method = axum::http::Method::GET;
                parts.uri = uri;
                parts.headers.remove("content-length");
                return next.run(Request::from_parts(parts, axum::body::Body::empty())).await;
            }
            Err(e) => return error(&emu, e),
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// `uri` with the parameters of a JSON body added to its query (`fields: [a, b]`
/// as `fields[0]=a&fields[1]=b`, as kintone reads them).
fn body_as_query(uri: &axum::http::Uri, body: &[u8]) -> Result<axum::http::Uri, ApiError> {
    let Ok(Value::Object(params)) = serde_json::from_slice::<Value>(body) else {
        return Err(ApiError::new(400, "CB_IJ01", "不正なJSON文字列です。"));
    };
    let mut url = reqwest::Url::parse(&format!("http://emulator{uri}"))
        .map_err(|_| ApiError::new(400, "CB_VA01", "不正なURLです。"))?;
    {
        let mut q = url.query_pairs_mut();
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for (k, v) in &params {
            match v {
                Value::Array(items) => {
                    for (i, it) in items.iter().enumerate() {
                        q.append_pair(&format!("{k}[{i}]"), &text(it));
                    }
                }
                other => {
                    q.append_pair(k, &text(other));
                }
            }
        }
    }
    let pq = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    pq.parse().map_err(|_| ApiError::new(400, "CB_VA01", "不正なURLです。"))
}

/// The first value of `name` in a query string.
fn url_param(query: &str, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://emulator/?{query}")).ok()?;
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

async fn faults(State(emu): State<Emulator>, req: Request, next: Next) -> Response {
    let (latency, hit) = emu.take_fault();
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    match hit {
        Some((429, retry_after)) => {
            let mut r = error(
                &emu,
                ApiError::new(
                    429,
                    "EMU_TOO_MANY_REQUESTS",
                    "同時に実行できるリクエストの上限を超えました。しばらくしてから再度実行してください。",
                ),
            );
            if let Some(s) = retry_after {
                r.headers_mut().insert("retry-after", s.to_string().parse().expect("digits are a header value"));
            }
            r
        }
        Some(_) => error(&emu, ApiError::new(500, "EMU_FAULT", "エミュレーターが注入した障害です。")),
        None => next.run(req).await,
    }
}

async fn get_faults(State(emu): State<Emulator>) -> Json<Faults> {
    Json(emu.faults())
}

async fn put_faults(State(emu): State<Emulator>, Json(f): Json<Faults>) -> Json<Faults> {
    emu.set_faults(f.clone());
    Json(f)
}

/// Who is calling: API tokens or a user; kintone's answers when neither works.
fn caller(emu: &Emulator, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let tokens: Vec<String> = headers
        .get_all("x-cybozu-api-token")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if !tokens.is_empty() {
        return Ok(Caller::Tokens(tokens));
    }
    if let Some(v) = headers.get("x-cybozu-authorization") {
        let bad = || {
            ApiError::new(
                401,
                "CB_WA01",
                "ユーザーのパスワード認証に失敗しました。「X-Cybozu-Authorization」ヘッダーの値が正しくありません。",
            )
        };
        let decoded = v
            .to_str()
            .ok()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        let (login, password) = decoded.split_once(':').ok_or_else(bad)?;
        let ok = emu.read(|st| st.users.get(login).is_some_and(|p| p == password));
        return if ok { Ok(Caller::User(login.to_string())) } else { Err(bad()) };
    }
    Err(ApiError::new(401, "CB_AU01", "ログインしてください。"))
}

fn who(c: &Caller) -> String {
    match c {
        Caller::User(u) => u.clone(),
        Caller::Tokens(_) => "Administrator".into(),
    }
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn number_param(v: Option<&Value>, key: &str) -> Result<u64, ApiError> {
    let n = match v {
        None | Some(Value::Null) => return Err(ApiError::required(key)),
        Some(Value::Number(n)) => n.as_u64().filter(|n| *n >= 1),
        Some(Value::String(s)) => s.trim().parse().ok().filter(|n: &u64| *n >= 1),
        _ => None,
    };
    n.ok_or_else(|| ApiError::invalid(vec![(key.to_string(), "最小でも1以上です。".to_string())]))
}

fn query_number(params: &[(String, String)], key: &str) -> Result<u64, ApiError> {
    number_param(param(params, key).map(|s| Value::String(s.into())).as_ref(), key)
}

fn body_json(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::new(400, "CB_IJ01", "不正なJSON文字列です。")),
    }
}

fn revision(body: &Map<String, Value>) -> Result<Option<i64>, ApiError> {
    match body.get("revision") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64()),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(vec![("revision".into(), "数字でなければなりません。".into())])),
        Some(_) => Err(ApiError::invalid(vec![("revision".into(), "数字でなければなりません。".into())])),
    }
}

fn respond(emu: &Emulator, r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(emu, e),
    }
}

async fn get_record(State(emu): State<Emulator>, headers: HeaderMap, Query(p): Params) -> Response {
    let r = (|| {
        let c = caller(&emu, &headers)?;
        let app = query_number(&p, "app")?;
        let id = query_number(&p, "id")?;
        emu.read(|st| {
            st.authorize(&c, app, Right::View)?;
            Ok(json!({ "record": st.get_record(app, id)? }))
        })
    })();
    respond(&emu, r)
}

async fn get_records(State(emu): State<Emulator>, headers: HeaderMap, Query(p): Params) -> Response {
    let r = (|| {
        let c = caller(&emu, &headers)?;
        let app = query_number(&p, "app")?;
        let query = param(&p, "query").unwrap_or("");
        let mut fields: Vec<(usize, String)> = p
            .iter()
            .filter_map(|(k, v)| {
                let i = k.strip_prefix("fields[")?.strip_suffix(']')?.parse().ok()?;
                Some((i, v.clone()))
            })
            .collect();
        fields.sort();
        let fields: Vec<String> = fields.into_iter().map(|(_, f)| f).collect();
        let total_count = param(&p, "totalCount") == Some("true");
        emu.read(|st| {
            st.authorize(&c, app, Right::View)?;
            let login = match &c {
                Caller::User(u) => Some(u.clone()),
                Caller::Tokens(_) => None,
            };
            let cx = crate::kintone::query_fn::Context::jst(now(), login);
            let (records, total) = st.get_records_as(app, query, &fields, &cx)?;
            Ok(json!({
                "records": records,
                "totalCount": if total_count { Value::String(total.to_string()) } else { Value::Null },
            }))
        })
    })();
    respond(&emu, r)
}

async fn add_record(State(emu): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    match as_get(&headers, &body) {
        Some(Ok(p)) => return get_record(State(emu), headers, Query(p)).await,
        Some(Err(e)) => return error(&emu, e),
        None => {}
    }
    let r = (|| {
        let c = caller(&emu, &headers)?;
        let b = body_json(&body)?;
        let app = number_param(b.get("app"), "app")?;
        let record = b.get("record").and_then(Value::as_object).cloned().unwrap_or_default();
        emu.write(|st| {
            st.authorize(&c, app, Right::Add)?;
            let record = st.attach_files(app, &record, &mut random_key)?;
            let (id, rev) = st.add_record(app, &record, &who(&c), now())?;
            Ok(json!({ "id": id.to_string(), "revision": rev.to_string() }))
        })
    })();
    respond(&emu, r)
}

async fn update_record(State(emu): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    let r = (|| {
        let c = caller(&emu, &headers)?;
        let b = body_json(&body)?;
        let app = number_param(b.get("app"), "app")?;
        let rev = revision(&b)?;
        let record = b.get("record").and_then(Value::as_object).cloned().unwrap_or_default();
        emu.write(|st| {
            st.authorize(&c, app, Right::Edit)?;
            let id = match b.get("updateKey") {
                Some(k) if !b.contains_key("id") => st.find_by_key(app, k)?.ok_or_else(|| {
                    ApiError::new(404, "GAIA_RE20", "指定したレコード（updateKey）が見つかりません。")
                })?,
                _ => number_param(b.get("id"), "id")?,
            };
            let record = st.attach_files(app, &record, &mut random_key)?;
            let new = st.update_record(app, id, &record, rev, &who(&c), now())?;
            Ok(json!({ "revision": new.to_string() }))
        })
    })();
    respond(&emu, r)
}

async fn update_status(State(emu): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    let r = (|| {
        let c = caller(&emu, &headers)?;
        let b = body_json(&body)?;
        let app = number_param(b.get("app"), "app")?;
        let id = number_param(b.get("id"), "id")?;
        let action = b.get("action").and_then(Value::as_str).ok_or_else(|| ApiError::required("action"))?.to_string();
        let rev = revision(&b)?;
        let assignee = b.get("assignee").and_then(Value::as_str).map(str::to_string);
        emu.write(|st| {
            st.authorize(&c, app, Right::Edit)?;
            let new = st.update_status(
                app,
                id,
                StatusChange { action: &action, assignee: assignee.as_deref() },
                rev,
                &who(&c),
                now(),
            )?;
            Ok(json!({ "revision": new.to_string() }))
        })
    })();
    respond(&emu, r)
}

async fn form_fields(State(emu): State<Emulator>, headers: HeaderMap, Query(p): Params) -> Response {
    let r = (|| {
        let c = caller(&emu, &headers)?;
        let app = query_number(&p, "app")?;
        emu.read(|st| {
            st.authorize(&c, app, Right::View)?;
            let a = st.app(app)?;
            let mut props = Map::new();
            for (code, f) in &a.fields {
                let mut v =
                    json!({ "type": f.ty, "code": code, "label": f.label, "required": f.required, "unique": f.unique });
                v["defaultValue"] = match (f.effective_default(), f.ty.as_str()) {
                    (Some(d), _) => d,
                    (None, "CHECK_BOX" | "MULTI_SELECT" | "FILE" | "USER_SELECT") => json!([]),
                    (None, _) => json!(""),
                };
                if let Some(o) = &f.options {
                    let opts: Map<String, Value> = o
                        .iter()
                        .enumerate()
                        .map(|(i, name)| (name.clone(), json!({ "label": name, "index": i.to_string() })))
                        .collect();
                    v["options"] = Value::Object(opts);
                }
                props.insert(code.clone(), v);
            }
            Ok(json!({ "properties": props, "revision": "1" }))
        })
    })();
    respond(&emu, r)
}

/// A random key (file keys), 32 hex digits.
pub(super) fn random_key() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS has randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn records_param(b: &Map<String, Value>) -> Result<Vec<Value>, ApiError> {
    match b.get("records") {
        Some(Value::Array(a)) => Ok(a.clone()),
        _ => Err(ApiError::required("records")),
    }
}

/// `X-HTTP-Method-Override: GET` on a POST: the body's parameters as a GET's.
fn as_get(headers: &HeaderMap, body: &Bytes) -> Option<Result<Vec<(String, String)>, ApiError>> {
    let m = headers.get("x-http-method-override")?.to_str().ok()?;
    if !m.eq_ignore_ascii_case("GET") {
        return None;
    }
    Some(body_as_query(&"/".parse().expect("a path"), body).map(|uri| {
        let q = uri.query().unwrap_or("");
        reqwest::Url::parse(&format!("http://emulator/?{q}"))
            .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
            .unwrap_or_default()
    }))
}

async fn add_records(State(emu): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    match as_get(&headers, &body) {
        Some(Ok(p)) => return get_records(State(emu), headers, Query(p)).await,
        Some(Err(e)) => return error(&emu, e),
        None => {}
    }
    let r = (|| {
        let c = caller(&emu, &headers)?;
        let b = body_json(&body)?;
        let app = number_param(b.get("app"), "app")?;
        let records: Vec<Map<String, Value>> =
            records_param(&b)?.into_iter().map(|r| r.as_object().cloned().unwrap_or_default()).collect();
        emu.write(|st| {
            st.authorize(&c, app, Right::Add)?;
            let done = st.add_records(app, &records, &who(&c), now(), &mut random_key)?;
            Ok(json!({
                "ids": done.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>(),
                "revisions": done.iter().map(|(_, r)| r.to_string()).collect::<Vec<_>>(),
            }))
        })
    })();
    respond(&emu, r)
}

async fn update_records(State(emu): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    let r = (|| {
        let c = caller(&emu, &headers)?;
        let b = body_json(&body)?;
        let app = number_param(b.get("app"), "app")?;
        let items = records_param(&b)?;
        let upsert = b.get("upsert").and_then(Value::as_bool).unwrap_or(false);
        emu.write(|st| {
            st.authorize(&c, app, Right::Edit)?;
            if upsert {
                st.authorize(&c, app, Right::Add)?;
            }
            let done = st.update_records(app, &items, upsert, &who(&c), now(), &mut random_key)?;
            let records: Vec<Value> = done
                .iter()
                .map(|u| {
                    let mut v = json!({ "id": u.id.to_string(), "revision": u.revision.to_string() });
                    if upsert {
                        v["operation"] = json!(u.operation);
                    }
                    v
                })
                .collect();
            Ok(json!({ "records": records }))
        })
    })();
    respond(&emu, r)
}

async fn delete_records(State(emu): State<Emulator>, headers: HeaderMap, Query(p): Params, body: Bytes) -> Response {
    let r = (|| {
        let c = caller(&emu, &headers)?;
        // `?app=1&ids[0]=5&ids[1]=6`, or the same as a JSON body.
        let (app, ids) = if body.is_empty() {
            let app = query_number(&p, "app")?;
            let ids: Vec<u64> =
                p.iter().filter(|(k, _)| k.starts_with("ids[")).filter_map(|(_, v)| v.parse().ok()).collect();
            (app, ids)
        } else {
            let b = body_json(&body)?;
            let app = number_param(b.get("app"), "app")?;
            let ids: Vec<u64> = b
                .get("ids")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())).collect())
                .unwrap_or_default();
            (app, ids)
        };
        emu.write(|st| {
            // kintone asks for the delete right; the emulator's tokens have edit.
            st.authorize(&c, app, Right::Edit)?;
            st.delete_records(app, &ids)?;
            Ok(json!({}))
        })
    })();
    respond(&emu, r)
}

async fn upload_file(State(emu): State<Emulator>, headers: HeaderMap, mut form: axum::extract::Multipart) -> Response {
    let r = async {
        let _c = caller(&emu, &headers)?;
        while let Ok(Some(field)) = form.next_field().await {
            if field.name() != Some("file") {
                continue;
            }
            let name = field.file_name().unwrap_or("file").to_string();
            let ty = field.content_type().unwrap_or("application/octet-stream").to_string();
            let bytes = field.bytes().await.map_err(|e| ApiError::new(400, "CB_VA01", e.to_string()))?;
            let key = emu.write(|st| st.upload_file(&name, &ty, &bytes, random_key()))?;
            return Ok(json!({ "fileKey": key }));
        }
        Err(ApiError::required("file"))
    }
    .await;
    respond(&emu, r)
}

async fn download_file(State(emu): State<Emulator>, headers: HeaderMap, Query(p): Params) -> Response {
    let r = (|| {
        let _c = caller(&emu, &headers)?;
        let key = param(&p, "fileKey").ok_or_else(|| ApiError::required("fileKey"))?.to_string();
        emu.read(|st| st.file(&key).map(|f| (f.content_type.clone(), f.bytes())))
    })();
    match r {
        Ok((ty, bytes)) => ([("content-type", ty)], bytes).into_response(),
        Err(e) => error(&emu, e),
    }
}

/// kintone answers in Japanese unless the request says `Accept-Language: en`.
async fn language(req: Request, next: Next) -> Response {
    let english = req
        .headers()
        .get("accept-language")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("en"));
    let resp = next.run(req).await;
    if !english || resp.status().is_success() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "response too large").into_response();
    };
    let Ok(Value::Object(mut v)) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    if let Some(m) = v.get("code").and_then(Value::as_str).and_then(english_message) {
        v.insert("message".into(), Value::String(m.into()));
    }
    if let Some(Value::Object(errors)) = v.get_mut("errors") {
        for e in errors.values_mut() {
            if let Some(Value::Array(ms)) = e.get_mut("messages") {
                for m in ms.iter_mut() {
                    if let Some(en) = m.as_str().and_then(english_field_message) {
                        *m = Value::String(en.into());
                    }
                }
            }
        }
    }
    let mut resp = Json(Value::Object(v)).into_response();
    *resp.status_mut() = parts.status;
    resp
}

/// kintone's English messages by code (the general text; ids in the Japanese
/// message are not repeated).
fn english_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "CB_VA01" => "Missing or invalid input.",
        "CB_IJ01" => "Invalid JSON string.",
        "CB_NF01" => "The API does not exist.",
        "CB_WA01" => "Password authentication failed.",
        "CB_AU01" => "Please login.",
        "GAIA_RE01" => "The specified record is not found.",
        "GAIA_RE20" => "The record specified by updateKey is not found.",
        "GAIA_AP01" => "The app does not exist. It may have been deleted.",
        "GAIA_FC01" => "The specified field is not found.",
        "GAIA_CO02" => "The revision is not the latest. Someone may update a record.",
        "GAIA_IQ11" => "The specified field is not found in the query.",
        "GAIA_IQ03" => "The operator cannot be used for this field.",
        "GAIA_QU01" => "The limit must be 500 or less.",
        "GAIA_QU02" => "The offset must be 10000 or less.",
        "GAIA_ST02" => "Process management is disabled.",
        "GAIA_IL03" => "Failed to update the status. The settings or the status may have been changed by someone.",
        "GAIA_IL23" => "To use an app in a guest space, send the request to /k/guest/(guest space id)/v1/...",
        "GAIA_BL01" => "The specified file is not found.",
        "GAIA_NO01" => "Using this API token, you cannot run the specified API.",
        "GAIA_IA02" => "The specified API token does not match the API token generated via the app.",
        _ => return None,
    })
}

fn english_field_message(m: &str) -> Option<&'static str> {
    Some(match m {
        "必須です。" => "Required field.",
        "値がほかのレコードと重複しています。" => "This value already exists in another record.",
        "数字でなければなりません。" => "Only numbers are allowed.",
        "最小でも1以上です。" => "The value must be 1 or more.",
        "日付の形式が正しくありません。" => "Invalid date format.",
        _ => return None,
    })
}
