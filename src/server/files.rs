//! `/api/v1/files` (upload) and `/api/v1/instances/{id}/files/{variable}`
//! (download): the content of `file` variables.
//!
//! An upload names the process and variable it is for, so that the variable's rules
//! (size, content types, PDF shape) are enforced while the body streams in: a file
//! over the limit is refused after reading at most the limit, never buffered whole.
//! The answer is the file reference to put into `variables` when starting an
//! instance or completing a task; the engine checks the reference against the
//! stored content again at that point. Downloads are for those who may see the
//! instance.

use super::auth::Auth;
use super::error::{echo, ApiError, ApiResult, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use super::{blocking, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use nagare_engine::types::{FileRef, MAX_FILE_NAME_CHARS};
use serde::{Deserialize, Serialize};
use std::io::Read;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The process whose variable the file is for (its latest version's rules apply).
    pub process: String,
    /// The `file` variable the file is for.
    pub variable: String,
    /// The file's name as users see it (1 to 255 characters, no `/` or `\`).
    pub name: String,
}

/// A stored file: put this object into `variables` as the variable's value.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    pub created_by: String,
    pub created_at: String,
}

impl From<FileRef> for FileView {
    fn from(f: FileRef) -> Self {
        FileView {
            name: f.name,
            content_type: f.content_type,
            size: f.size,
            sha256: f.sha256,
            created_by: f.created_by,
            created_at: f.created_at,
        }
    }
}

/// Upload a file for a `file` variable; the body is the file's bytes and
/// `Content-Type` its type. Size, type and (for PDF-only variables) the PDF shape
/// are checked while it streams.
#[utoipa::path(post, path = "/api/v1/files", operation_id = "upload_file", tag = "files",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes; send its real type as Content-Type"),
    responses(
        (status = 201, description = "Stored; use the object as the variable's value", body = FileView),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such process", body = ErrorBody),
        (status = 413, description = "Larger than the variable's `max_size`", body = ErrorBody),
        (status = 422, description = "Not a file variable, a bad name, a type the variable does not accept, or not a PDF", body = ErrorBody),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<FileView>)> {
    check_name(&q.name)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|v| v.contains('/') && v.len() <= 255)
        .ok_or_else(|| {
            ApiError::unprocessable("bad-content-type", "send the file's type as `Content-Type`, e.g. application/pdf")
        })?;
    let engine = state.engine.clone();
    let rules = engine.file_rules(&q.process, &q.variable).map_err(|e| ApiError::engine(e, None))?;
    if !rules.allows_type(&content_type) {
        return Err(ApiError::unprocessable(
            "content-type-not-accepted",
            format!(
                "`{}` does not accept files of type `{}`; accepted: {}",
                echo(&q.variable),
                echo(&content_type),
                rules.content_types.join(", ")
            ),
        ));
    }
    let mut writer = engine.file_writer(&rules).map_err(|e| ApiError::engine(e, None))?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            super::extract::body_timeout(&e)
                .unwrap_or_else(|| ApiError::bad_request("body-read-failed", format!("reading the upload: {e}")))
        })?;
        if let Ok(chunk) = frame.into_data() {
            writer.write(&chunk).map_err(|e| ApiError::engine(e.into(), None))?;
        }
    }
    let by = caller.id.clone();
    let file = blocking(move || {
        let stored = writer.finish().map_err(|e| ApiError::engine(e.into(), None))?;
        Ok(engine.file_ref(stored, &q.name, &content_type, &by))
    })
    .await?;
    tracing::info!(sha256 = %file.sha256, size = file.size, by = %caller.id, "file uploaded");
    Ok((StatusCode::CREATED, Json(file.into())))
}

/// Most parts a multipart form may have.
pub const MAX_FORM_PARTS: usize = 64;
/// Largest multipart request: the largest file a variable may take, plus the text.
pub const FORM_BODY_LIMIT: usize = nagare_engine::types::MAX_FILE_BYTES as usize + super::BODY_LIMIT;

/// A `multipart/form-data` start or completion: its text parts, and its file parts
/// already stored (each checked against its variable's rules while it streamed),
/// as variable → file reference.
pub struct Form {
    pub text: std::collections::BTreeMap<String, String>,
    pub files: serde_json::Map<String, serde_json::Value>,
}

impl Form {
    /// The variables: the `variables` part (JSON, as in the JSON body) with the
    /// uploaded files added; a file part and a JSON value for the same variable is
    /// refused.
    pub fn variables(&self) -> ApiResult<super::views::VarsJson> {
        let mut vars: super::views::VarsJson =
            super::extract::parse_json(self.text.get("variables").map_or(&b""[..], |t| t.as_bytes()))?;
        for (name, file) in &self.files {
            if vars.insert(name.clone(), file.clone()).is_some() {
                return Err(ApiError::unprocessable(
                    "duplicate-field",
                    format!("`{}` is given both as a file part and in `variables`", echo(name)),
                ));
            }
        }
        Ok(vars)
    }
}

/// Read a multipart form. Text parts come first where a file's rules depend on them
/// (`rules` gets the text read so far and the file's variable name); each file part
/// is streamed into the blob store under its variable's rules, so an oversized file
/// is refused after reading at most its limit. Only the names in `text_parts` are
/// accepted as text.
pub async fn read_form(
    state: &AppState,
    req: axum::extract::Request,
    text_parts: &[&str],
    rules: impl Fn(&std::collections::BTreeMap<String, String>, &str) -> ApiResult<nagare_engine::types::FileRules>,
    by: &str,
) -> ApiResult<Form> {
    use axum::extract::FromRequest;
    let mut multipart = axum::extract::Multipart::from_request(req, state)
        .await
        .map_err(|e| ApiError::bad_request("bad-multipart", format!("the multipart form could not be read: {e}")))?;
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the form is larger than {FORM_BODY_LIMIT} bytes"),
            );
        }
        super::extract::body_timeout(&e).unwrap_or_else(|| {
            ApiError::bad_request("bad-multipart", format!("the multipart form could not be read: {e}"))
        })
    };
    let mut form = Form { text: Default::default(), files: Default::default() };
    let mut parts = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        parts += 1;
        if parts > MAX_FORM_PARTS {
            return Err(ApiError::unprocessable(
                "too-many-parts",
                format!("a form has at most {MAX_FORM_PARTS} parts"),
            ));
        }
        let name = field.name().unwrap_or_default().to_string();
        match field.file_name().map(str::to_string) {
            None => {
                if !text_parts.contains(&name.as_str()) {
                    return Err(ApiError::unprocessable(
                        "unknown-part",
                        format!("unknown form part `{}`; text parts are {}, files go in parts named like their variable (with a file name)", echo(&name), text_parts.join(", ")),
                    ));
                }
                let mut text = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if text.len() + chunk.len() > super::BODY_LIMIT {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "body-too-large",
                            format!("the part `{}` is larger than {} bytes", echo(&name), super::BODY_LIMIT),
                        ));
                    }
                    text.extend_from_slice(&chunk);
                }
                let text = String::from_utf8(text).map_err(|_| {
                    ApiError::bad_request("bad-multipart", format!("the part `{}` is not UTF-8 text", echo(&name)))
                })?;
                form.text.insert(name, text);
            }
            Some(file_name) => {
                check_name(&file_name)?;
                if form.files.contains_key(&name) {
                    return Err(ApiError::unprocessable("duplicate-field", format!("two files for `{}`", echo(&name))));
                }
                let rules = rules(&form.text, &name)?;
                let content_type = field
                    .content_type()
                    .map(|t| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
                    .filter(|t| t.contains('/') && t.len() <= 255)
                    .unwrap_or_else(|| "application/octet-stream".to_string());
                if !rules.allows_type(&content_type) {
                    return Err(ApiError::unprocessable(
                        "content-type-not-accepted",
                        format!(
                            "`{}` does not accept files of type `{}`; accepted: {}",
                            echo(&name),
                            echo(&content_type),
                            rules.content_types.join(", ")
                        ),
                    ));
                }
                let mut writer = state.engine.file_writer(&rules).map_err(|e| ApiError::engine(e, None))?;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    writer.write(&chunk).map_err(|e| ApiError::engine(e.into(), None))?;
                }
                let (engine, by) = (state.engine.clone(), by.to_string());
                let file = blocking(move || {
                    let stored = writer.finish().map_err(|e| ApiError::engine(e.into(), None))?;
                    Ok(engine.file_ref(stored, &file_name, &content_type, &by))
                })
                .await?;
                form.files.insert(name, serde_json::to_value(file).expect("a file reference serializes"));
            }
        }
    }
    Ok(form)
}

/// The rules of `var` in process `p`, as an API error when it is no file variable.
pub fn rules_in(p: &nagare_engine::process::Process, var: &str) -> ApiResult<nagare_engine::types::FileRules> {
    nagare_engine::Engine::file_rules_in(p, var).map_err(|e| ApiError::engine(e, None))
}

pub(crate) fn check_name(name: &str) -> ApiResult<()> {
    let n = name.chars().count();
    if name.trim().is_empty() || n > MAX_FILE_NAME_CHARS || name.contains(['/', '\\', '\0']) {
        return Err(ApiError::unprocessable(
            "bad-file-name",
            format!("a file name has 1 to {MAX_FILE_NAME_CHARS} characters and no `/`, `\\` or NUL"),
        ));
    }
    Ok(())
}

/// Download the file held by an instance's variable.
#[utoipa::path(get, path = "/api/v1/instances/{id}/files/{variable}", operation_id = "download_file", tag = "files",
    params(
        ("id" = u64, Path, description = "Instance id"),
        ("variable" = String, Path, description = "A `file` variable of the instance"),
    ),
    responses(
        (status = 200, description = "The file's bytes, with its type and name", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such instance (or not one the caller may see), or the variable holds no file", body = ErrorBody),
    ))]
pub async fn download(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, variable)): ApiPath<(u64, String)>,
) -> ApiResult<Response> {
    let engine = state.engine.clone();
    let (file, mut content) = blocking(move || {
        let (inst, _) = super::instances::visible(&engine, &caller, id)?;
        let no_file = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no-file",
                format!("instance {id} holds no file in `{}`", echo(&variable)),
            )
        };
        let value = inst.vars.get(&variable).ok_or_else(no_file)?;
        let file = FileRef::from_value(value).map_err(|_| no_file())?;
        let content = engine.open_file(&file).map_err(|e| ApiError::engine(e, None))?;
        Ok((file, content))
    })
    .await?;
    // Stream from the blocking pool in chunks, so a large file never sits in memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let chunk = match content.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(buf[..n].to_vec()),
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&file.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&file.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

/// `attachment` with an ASCII fallback name and the real (often Japanese) name
/// percent-encoded per RFC 6266 / RFC 5987.
fn content_disposition(name: &str) -> String {
    let fallback: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' { c } else { '_' }).collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_names_are_percent_encoded_with_an_ascii_fallback() {
        assert_eq!(
            content_disposition("契約書 v2.pdf"),
            "attachment; filename=\"____v2.pdf\"; filename*=UTF-8''%E5%A5%91%E7%B4%84%E6%9B%B8%20v2.pdf"
        );
    }
}
