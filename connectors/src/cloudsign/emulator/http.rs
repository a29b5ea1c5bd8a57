//! The emulator's HTTP layer: tokens, faults, form / multipart / JSON bodies and
//! CloudSign's `{error, message}` answers around [`super::state`].

use super::state::{Account, ApiError};
use super::{fresh_token, Emulator, Faults, MAX_BODY_BYTES};
use crate::cloudsign::files::{looks_like_pdf, sha256_hex};
use crate::cloudsign::multipart;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::time::Duration;

type Params = Query<Vec<(String, String)>>;

pub fn router(emu: Emulator) -> Router {
    let api = Router::new()
        .route("/token", post(token))
        .route("/documents", get(list).post(create))
        .route("/documents/{id}", get(document).post(send).delete(delete))
        .route("/documents/{id}/files", post(upload))
        .route("/documents/{id}/files/{file}", get(download))
        .route("/documents/{id}/participants", post(participant))
        .route("/documents/{id}/attribute", get(get_attribute).put(put_attribute))
        .layer(middleware::from_fn_with_state(emu.clone(), faults));
    Router::new()
        .merge(api)
        .route("/emulator/documents", post(seed))
        .route("/emulator/documents/{id}/agree", post(agree))
        .route("/emulator/documents/{id}/decline", post(decline))
        .route("/emulator/faults", get(get_faults).put(put_faults))
        .route("/emulator/webhook", put(put_webhook))
        .route("/emulator/webhooks", get(webhooks))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1024 * 1024))
        .with_state(emu)
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "error": e.kind, "message": e.message }))).into_response()
}

fn respond(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e),
    }
}

async fn not_found() -> Response {
    error(ApiError::not_found())
}

async fn faults(State(emu): State<Emulator>, req: Request, next: Next) -> Response {
    let (latency, hit) = emu.take_fault();
    if req.uri().path() == "/token" {
        emu.inner.token_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    match hit {
        Some((429, retry_after)) => {
            let mut r = error(ApiError::new(429, "too_many_requests", "リクエスト数が上限を超えました。"));
            if let Some(s) = retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, s.to_string().parse().expect("digits are a header value"));
            }
            r
        }
        Some(_) => error(ApiError::new(500, "internal_server_error", "エミュレーターが注入した障害です。")),
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

async fn put_webhook(State(emu): State<Emulator>, Json(v): Json<Value>) -> Json<Value> {
    let url = v.get("url").and_then(Value::as_str).map(str::to_string);
    emu.set_webhook(url.clone());
    Json(json!({ "url": url }))
}

async fn webhooks(State(emu): State<Emulator>) -> Json<Value> {
    Json(json!(emu.deliveries()))
}

/// An `application/x-www-form-urlencoded` body as a map (the last value of a key wins).
fn form(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !body.is_empty() && !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            "application/x-www-form-urlencoded で送信してください。",
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("本文が UTF-8 ではありません。"))?;
    let url = reqwest::Url::parse(&format!("http://form/?{text}"))
        .map_err(|_| ApiError::bad_request("本文を読めません。"))?;
    Ok(url.query_pairs().map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect())
}

fn account(emu: &Emulator, headers: &HeaderMap) -> Result<Account, ApiError> {
    let v = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    let token = v.strip_prefix("Bearer ").unwrap_or(v).trim();
    if token.is_empty() {
        return Err(ApiError::new(401, "unauthorized", "アクセストークンが必要です。"));
    }
    let now = emu.now();
    emu.read(|st| st.account(token, now))
}

async fn token(State(emu): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    let r = (|| {
        let f = form(&headers, &body)?;
        let cid = f.get("client_id").and_then(Value::as_str).unwrap_or("").to_string();
        let now = emu.now();
        let (tok, secs) = emu.write(|st| st.issue_token(&cid, fresh_token(), now))?;
        Ok(json!({ "access_token": tok, "expires_in": secs, "token_type": "Bearer" }))
    })();
    respond(r)
}

async fn list(State(emu): State<Emulator>, headers: HeaderMap, Query(p): Params) -> Response {
    let r = (|| {
        let a = account(&emu, &headers)?;
        let get = |k: &str| p.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let page = match get("page") {
            None => 1,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::bad_request("page が正しくありません。"))?,
        };
        let status = match get("status") {
            None | Some("") => None,
            Some("-1") => None,
            Some(s) => Some(s.parse::<u32>().map_err(|_| ApiError::bad_request("status が正しくありません。"))?),
        };
        let time = |k: &str| -> Result<Option<chrono::DateTime<chrono::FixedOffset>>, ApiError> {
            match get(k) {
                None | Some("") => Ok(None),
                Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                    .map(Some)
                    .map_err(|_| ApiError::bad_request(format!("{k} は RFC3339 形式で指定してください。"))),
            }
        };
        let range = super::state::ProcessedRange { from: time("from")?, to: time("to")? };
        let mut v = emu.read(|st| st.list(&a, status, page, range));
        // `with_files` / `with_participants`: anything but `y` leaves them out.
        for (param, key) in [("with_files", "files"), ("with_participants", "participants")] {
            if get(param).is_some_and(|x| x != "y") {
                for d in v["documents"].as_array_mut().into_iter().flatten() {
                    if let Some(m) = d.as_object_mut() {
                        m.remove(key);
                    }
                }
            }
        }
        Ok(v)
    })();
    respond(r)
}

async fn create(State(emu): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    let r = (|| {
        let a = account(&emu, &headers)?;
        let f = form(&headers, &body)?;
        let now = emu.now();
        emu.write(|st| st.create(&a, &f, now))
    })();
    respond(r)
}

async fn document(State(emu): State<Emulator>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = (|| {
        let a = account(&emu, &headers)?;
        emu.read(|st| st.document(&a, &id).map(|d| d.model()))
    })();
    respond(r)
}

async fn send(State(emu): State<Emulator>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = (|| {
        let a = account(&emu, &headers)?;
        let now = emu.now();
        emu.write(|st| st.send(&a, &id, now))
    })();
    match r {
        Ok((model, change)) => {
            if let Some(c) = change {
                let e = emu.clone();
                tokio::spawn(async move { e.notify(c).await });
            }
            Json(model).into_response()
        }
        Err(e) => error(e),
    }
}

async fn delete(State(emu): State<Emulator>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = (|| {
        let a = account(&emu, &headers)?;
        emu.write(|st| st.delete(&a, &id))
    })();
    match r {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

async fn upload(State(emu): State<Emulator>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let r = (|| {
        let a = account(&emu, &headers)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(413, "too_large_request", "リクエストのサイズが上限を超えています。"));
        }
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let boundary = multipart::boundary(ct)
            .ok_or_else(|| ApiError::new(415, "unsupported_media_type", "multipart/form-data で送信してください。"))?;
        let parts = multipart::parse(&body, &boundary)
            .map_err(|e| ApiError::bad_request(format!("multipart を読めません: {e}")))?;
        let file = parts
            .iter()
            .find(|p| p.name == "uploadfile")
            .ok_or_else(|| ApiError::bad_request("uploadfile は必須です。"))?;
        let name = parts
            .iter()
            .find(|p| p.name == "name")
            .and_then(|p| String::from_utf8(p.data.clone()).ok())
            .or_else(|| file.filename.clone())
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request("name は必須です。"))?;
        if file
            .content_type
            .as_deref()
            .is_some_and(|c| !c.starts_with("application/pdf") && !c.starts_with("application/octet-stream"))
        {
            return Err(ApiError::new(415, "unsupported_media_type", "PDF ファイルのみアップロードできます。"));
        }
        if !looks_like_pdf(&file.data) {
            return Err(ApiError::bad_request("PDF ファイルの形式が正しくありません。"));
        }
        // Check the document before keeping the bytes.
        emu.read(|st| st.document(&a, &id).map(|_| ()))?;
        let sha = sha256_hex(&file.data);
        let size = file.data.len() as u64;
        emu.put_blob(&sha, file.data.clone())?;
        let now = emu.now();
        emu.write(|st| st.add_file(&a, &id, &name, &sha, size, now))
    })();
    respond(r)
}

async fn download(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    Path((id, fid)): Path<(String, String)>,
) -> Response {
    let r = (|| {
        let a = account(&emu, &headers)?;
        let sha = emu.read(|st| {
            let d = st.document(&a, &id)?;
            d.files.iter().find(|f| f.id == fid).map(|f| f.sha256.clone()).ok_or_else(ApiError::not_found)
        })?;
        emu.blob(&sha).ok_or_else(|| ApiError::new(500, "internal_server_error", "ファイルの内容がありません。"))
    })();
    match r {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/pdf")], bytes).into_response(),
        Err(e) => error(e),
    }
}

async fn participant(State(emu): State<Emulator>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let r = (|| {
        let a = account(&emu, &headers)?;
        let f = form(&headers, &body)?;
        let now = emu.now();
        emu.write(|st| st.add_participant(&a, &id, &f, now))
    })();
    respond(r)
}

async fn get_attribute(State(emu): State<Emulator>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = (|| {
        let a = account(&emu, &headers)?;
        emu.read(|st| st.document(&a, &id).map(|d| Value::Object(d.attribute.clone())))
    })();
    respond(r)
}

async fn put_attribute(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = (|| {
        let a = account(&emu, &headers)?;
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(ApiError::new(415, "unsupported_media_type", "application/json で送信してください。"));
        }
        let b = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => m,
            _ => return Err(ApiError::bad_request("JSON の形式が正しくありません。")),
        };
        let now = emu.now();
        emu.write(|st| st.set_attribute(&a, &id, &b, now))
    })();
    respond(r)
}

async fn agree(State(emu): State<Emulator>, Path(id): Path<String>) -> Response {
    respond(emu.answer(&id, true, "").await)
}

async fn decline(State(emu): State<Emulator>, Path(id): Path<String>, body: Bytes) -> Response {
    let comment = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("comment").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    respond(emu.answer(&id, false, &comment).await)
}

/// `POST /emulator/documents` (emulator only): put a document in place for a client
/// id, `{client_id, title, status? (2), files: [{name, content_base64}],
/// attribute?, processed_at? (RFC 3339)}` → `{id}`. Files must be PDFs.
async fn seed(State(emu): State<Emulator>, Json(v): Json<Value>) -> Response {
    use base64::Engine as _;
    let r = (|| {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let status = v.get("status").and_then(Value::as_u64).unwrap_or(2);
        if ![0, 1, 2, 3].contains(&status) {
            return Err(ApiError::bad_request("status は 0〜3 で指定してください。"));
        }
        let mut files = Vec::new();
        for f in v.get("files").and_then(Value::as_array).into_iter().flatten() {
            let name = f.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(f.get("content_base64").and_then(Value::as_str).unwrap_or(""))
                .map_err(|_| ApiError::bad_request("content_base64 が正しくありません。"))?;
            if name.trim().is_empty() || !looks_like_pdf(&bytes) {
                return Err(ApiError::bad_request("files には name と PDF の content_base64 が必要です。"));
            }
            files.push((name, bytes));
        }
        let attribute = v.get("attribute").and_then(Value::as_object).cloned().unwrap_or_default();
        let processed_at = match v.get("processed_at").and_then(Value::as_str) {
            None => None,
            Some(t) => Some(
                chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|_| ApiError::bad_request("processed_at は RFC3339 形式で指定してください。"))?
                    .with_timezone(&chrono::Utc),
            ),
        };
        let id = emu.seed_document(&s("client_id"), &s("title"), status as u32, files, attribute, processed_at)?;
        Ok(json!({ "id": id }))
    })();
    respond(r)
}
