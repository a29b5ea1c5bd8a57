//! The emulator's HTTP layer: maintenance, rate limit, token, multipart and
//! Shift_JIS decoding around [`super::State::import`].

use super::{master_def, Emulator, Params, Refusal, Settings, DEMO_ACCOUNT, DEMO_TOKEN};
use crate::rakuraku::csv::decode;
use crate::rakuraku::params::master_name;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// Request bodies read at most (a bit over the 5 MB file limit, so a too-large
/// file gets the service's answer instead of a dropped connection).
const BODY_LIMIT: usize = 8 << 20;

/// The maintenance page: HTTP 200 whose body starts with the status line.
const MAINTENANCE_PAGE: &str = "Status: 503 Maintenance mode\r\nContent-Type: text/html\r\n\r\n<html><head><title>メンテナンス中</title></head><body><p>ただいまメンテナンス中です。しばらくお待ちください。</p></body></html>\r\n";

pub fn router(emu: Emulator) -> Router {
    Router::new()
        .route("/{account}/api/v1/csvimport", post(csv_import))
        .route("/emulator/masters", get(list_masters))
        .route("/emulator/masters/{master}", get(list_rows))
        .route("/emulator/settings", get(get_settings).put(put_settings))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(emu)
}

fn refuse(r: Refusal) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(r.body())).into_response()
}

async fn csv_import(
    State(emu): State<Emulator>,
    Path(account): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    emu.inner.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let settings = emu.settings();
    if settings.maintenance {
        return (StatusCode::OK, [("content-type", "text/html; charset=UTF-8")], MAINTENANCE_PAGE).into_response();
    }
    if account != DEMO_ACCOUNT {
        return refuse(Refusal::new(404, "E_ACCOUNT", format!("アカウント「{account}」は存在しません。")));
    }
    if let Err(wait) = emu.admit() {
        let mut r = refuse(Refusal::new(
            429,
            "E_TOO_MANY_REQUESTS",
            format!(
                "リクエスト数の上限 ({}回/分) を超えました。しばらくしてから再度実行してください。",
                settings.per_minute
            ),
        ));
        r.headers_mut().insert("retry-after", wait.to_string().parse().expect("digits are a header value"));
        return r;
    }
    let token = headers.get("x-rs-apitoken").and_then(|v| v.to_str().ok()).unwrap_or("");
    if token.is_empty() {
        return refuse(Refusal::new(401, "E_AUTH", "X-RS-apitoken ヘッダがありません。"));
    }
    if token != DEMO_TOKEN {
        return refuse(Refusal::new(401, "E_AUTH", "APIトークンが正しくありません。"));
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (params_text, file) = match read_parts(multipart, settings.max_bytes).await {
        Ok(p) => p,
        Err(r) => return refuse(r),
    };
    let params = match Params::parse(&params_text) {
        Ok(p) => p,
        Err(r) => return refuse(r),
    };
    let Some(text) = decode(&file) else {
        let line = first_bad_line(&file);
        let mut r = Refusal::new(400, "E_ENCODING", "uploadFile が Shift_JIS として読めません。");
        r.errors = vec![json!({"row": line, "message": "Shift_JIS でない文字があります。"})];
        return refuse(r);
    };
    let emu2 = emu.clone();
    let max_rows = settings.max_rows;
    // A 50,000-row import is CPU work: keep it off the async workers.
    let done = tokio::task::spawn_blocking(move || emu2.import(key.as_deref(), params, &text, max_rows)).await;
    match done {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(r)) => refuse(r),
        Err(e) => refuse(Refusal::new(500, "E_INTERNAL", format!("the import failed: {e}"))),
    }
}

/// The `json` and `uploadFile` parts.
async fn read_parts(
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
    max_bytes: usize,
) -> Result<(String, Vec<u8>), Refusal> {
    let bad = |m: String| Refusal::new(400, "E_REQUEST", m);
    let mut mp = multipart.map_err(|e| bad(format!("multipart/form-data で送ってください: {e}")))?;
    let (mut params, mut file) = (None, None);
    while let Some(field) = mp.next_field().await.map_err(|e| bad(format!("multipart を読めません: {e}")))? {
        match field.name() {
            Some("json") => {
                params = Some(field.text().await.map_err(|e| bad(format!("json パートを読めません: {e}")))?)
            }
            Some("uploadFile") => {
                let bytes = field.bytes().await.map_err(|e| bad(format!("uploadFile を読めません: {e}")))?;
                if bytes.len() > max_bytes {
                    return Err(Refusal::new(
                        400,
                        "E_FILE_SIZE",
                        format!("ファイルサイズが上限 ({max_bytes} バイト) を超えています: {} バイト", bytes.len()),
                    ));
                }
                file = Some(bytes.to_vec());
            }
            _ => {}
        }
    }
    let params = params.ok_or_else(|| bad("json パートがありません。".into()))?;
    let file = file.ok_or_else(|| bad("uploadFile パートがありません。".into()))?;
    Ok((params, file))
}

/// The 1-based line of the first byte sequence that is not Shift_JIS.
fn first_bad_line(bytes: &[u8]) -> usize {
    let mut line = 1;
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            if decode(&bytes[start..i]).is_none() {
                return line;
            }
            line += 1;
            start = i + 1;
        }
    }
    line
}

async fn list_masters(State(emu): State<Emulator>) -> Json<Value> {
    let list: Vec<Value> = emu.read(|st| {
        st.masters
            .iter()
            .map(|(id, m)| json!({"masterId": id, "name": master_name(*id), "rows": m.rows.len()}))
            .collect()
    });
    Json(json!({ "masters": list }))
}

/// What `GET /emulator/masters/{id}` answers; rows keep their column order.
#[derive(serde::Serialize)]
struct Listing {
    #[serde(rename = "masterId")]
    master_id: u64,
    name: Option<&'static str>,
    columns: Vec<Value>,
    rows: Vec<indexmap::IndexMap<String, String>>,
    categories: std::collections::BTreeSet<String>,
    password_mails: Vec<String>,
}

async fn list_rows(State(emu): State<Emulator>, Path(master): Path<u64>) -> Response {
    let Some(def) = master_def(master) else {
        return refuse(Refusal::new(404, "E_MASTER", format!("masterId {master} はありません。")));
    };
    let listing = emu.read(|st| {
        let m = st.masters.get(&master).cloned().unwrap_or_default();
        Listing {
            master_id: master,
            name: master_name(master),
            columns: def.columns.iter().map(|(c, req)| json!({"header": c, "required": req})).collect(),
            rows: m.rows,
            categories: m.categories,
            password_mails: m.password_mails,
        }
    });
    Json(listing).into_response()
}

async fn get_settings(State(emu): State<Emulator>) -> Json<Settings> {
    Json(emu.settings())
}

async fn put_settings(State(emu): State<Emulator>, Json(s): Json<Settings>) -> Json<Settings> {
    emu.set_settings(s.clone());
    Json(s)
}
