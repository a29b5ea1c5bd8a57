//! Forms from form definitions: one input per field by its variable type, and the
//! way back from submitted text to the JSON values the API takes.
//!
//! The web layer converts, it does not validate: a number that does not parse, or
//! a list that is not JSON, is passed on as the text it is, and the engine's
//! validation (the same as for API calls) names the field and what it expects.

use super::html::{html, Markup};
use super::FORM_LIMIT;
use crate::server::error::{ApiError, ApiResult};
use crate::server::views::{FormField, VarsJson};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use chrono::{DateTime, NaiveDateTime, TimeZone};
use nagare_engine::types::FileRef;
use nagare_engine::Engine;
use serde_json::Value;
use std::collections::HashMap;

/// What a form sent: text fields (in order; a name may repeat), and the files it
/// uploaded by variable (stored already), or why an upload was refused.
#[derive(Debug, Default)]
pub struct Submitted {
    pub fields: Vec<(String, String)>,
    pub files: Vec<(String, Result<Value, String>)>,
}

impl Submitted {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Where uploads of a form go: the process whose `file` variables they fill, and
/// who uploads.
pub struct UploadTo<'a> {
    pub engine: &'a Engine,
    pub process: &'a str,
    pub by: &'a str,
    /// The session whose form token must come (as `_csrf`, the form's first field)
    /// before any file is stored: a forged form stores nothing.
    pub session: &'a super::session::Session,
}

/// Read a form body, urlencoded or multipart. Text is bounded by [`FORM_LIMIT`]
/// in total; files stream into the blob store under their variable's rules.
pub async fn read_form(req: Request, upload: Option<UploadTo<'_>>) -> ApiResult<Submitted> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if ct.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request("bad-form", format!("the form could not be read: {e}")))?;
        read_multipart(&mut mp, upload).await
    } else {
        let bytes = axum::body::to_bytes(req.into_body(), FORM_LIMIT).await.map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the form is larger than {} KiB", FORM_LIMIT / 1024),
            )
        })?;
        Ok(Submitted { fields: form_urlencoded::parse(&bytes).into_owned().collect(), files: Vec::new() })
    }
}

async fn read_multipart(mp: &mut Multipart, upload: Option<UploadTo<'_>>) -> ApiResult<Submitted> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request("bad-form", format!("the form could not be read: {e}"))
    };
    let mut out = Submitted::default();
    let mut text_bytes = 0usize;
    while let Some(mut field) = mp.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        if let Some(file_name) = field.file_name().map(str::to_string) {
            if file_name.is_empty() {
                // An empty file input: nothing chosen, the variable keeps its value.
                while field.chunk().await.map_err(bad)?.is_some() {}
                continue;
            }
            let ct = field.content_type().unwrap_or("application/octet-stream").to_ascii_lowercase();
            let result = match &upload {
                Some(to) if !to.session.csrf_ok(out.get("_csrf").unwrap_or("")) => {
                    Err("フォームの確認に失敗しました / form check failed".to_string())
                }
                Some(to) => store_file(to, &name, &file_name, &ct, &mut field).await,
                None => Err("このフォームではファイルを受け付けません / this form takes no files".to_string()),
            };
            out.files.push((name, result));
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            text_bytes += chunk.len();
            if text_bytes > FORM_LIMIT {
                return Err(ApiError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    format!("the form's text is larger than {} KiB", FORM_LIMIT / 1024),
                ));
            }
            value.extend_from_slice(&chunk);
        }
        out.fields.push((name, String::from_utf8_lossy(&value).into_owned()));
    }
    Ok(out)
}

/// Store one uploaded file with the same engine calls as `POST /api/v1/files`
/// (rules of the variable, name check, type check, size and PDF shape while it
/// streams); the file reference, or why it was refused.
async fn store_file(
    to: &UploadTo<'_>,
    var: &str,
    name: &str,
    content_type: &str,
    field: &mut axum::extract::multipart::Field<'_>,
) -> Result<Value, String> {
    let rules = to.engine.file_rules(to.process, var).map_err(|e| ApiError::engine(e, None).message)?;
    crate::server::files::check_name(name).map_err(|e| e.message)?;
    if !rules.allows_type(content_type) {
        return Err(format!(
            "ファイルの種類 {content_type} は受け付けません; accepted: {}",
            rules.content_types.join(", ")
        ));
    }
    let mut writer = to.engine.file_writer(&rules).map_err(|e| ApiError::engine(e, None).message)?;
    let mut failed = None;
    while let Some(chunk) = field.chunk().await.map_err(|e| e.to_string())? {
        if failed.is_none() {
            if let Err(e) = writer.write(&chunk) {
                failed = Some(ApiError::engine(e.into(), None).message);
            }
        }
    }
    if let Some(f) = failed {
        return Err(f);
    }
    let engine = to.engine.clone();
    let (name, ct, by) = (name.to_string(), content_type.to_string(), to.by.to_string());
    let file = crate::server::blocking(move || {
        let stored = writer.finish().map_err(|e| ApiError::engine(e.into(), None))?;
        Ok(engine.file_ref(stored, &name, &ct, &by))
    })
    .await
    .map_err(|e| e.message)?;
    serde_json::to_value(&file).map_err(|e| e.to_string())
}

/// Field errors of an API error (`details.errors`), by field.
pub fn field_errors(e: &ApiError) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for item in e.details.get("errors").and_then(Value::as_array).into_iter().flatten() {
        if let (Some(f), Some(p)) = (item["field"].as_str(), item["problem"].as_str()) {
            out.entry(f.to_string()).or_insert_with(|| p.to_string());
        }
    }
    out
}

/// The values to send for the editable fields of `fields`. Readonly fields are
/// never sent; a cleared field is sent as `null` (unset); a file input left empty
/// keeps the variable's file.
pub fn collect<Z: TimeZone>(fields: &[FormField], sub: &Submitted, tz: &Z) -> VarsJson {
    let mut vars = VarsJson::new();
    for f in fields.iter().filter(|f| f.mode != "readonly") {
        let value = match f.ty.as_str() {
            "bool" => Some(Value::Bool(sub.get(&f.name).is_some_and(|v| v == "true" || v == "on"))),
            "file" => match sub.files.iter().find(|(n, _)| *n == f.name) {
                Some((_, Ok(v))) => Some(v.clone()),
                _ => None,
            },
            ty => sub.get(&f.name).map(|text| from_text(ty, text, tz)),
        };
        if let Some(v) = value {
            vars.insert(f.name.clone(), v);
        }
    }
    vars
}

/// One submitted text as the JSON value of a variable of type `ty`.
fn from_text<Z: TimeZone>(ty: &str, text: &str, tz: &Z) -> Value {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Value::Null;
    }
    let raw = || Value::String(text.to_string());
    match ty {
        "number" => {
            let plain = trimmed.replace([',', '，'], "");
            if let Ok(i) = plain.parse::<i64>() {
                Value::from(i)
            } else {
                plain.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or_else(raw)
            }
        }
        "datetime" => NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M")
            .or_else(|_| NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M:%S"))
            .ok()
            .and_then(|n| tz.from_local_datetime(&n).earliest())
            .map(|d| Value::String(d.fixed_offset().to_rfc3339()))
            .unwrap_or_else(raw),
        "list" | "object" => serde_json::from_str(trimmed).unwrap_or_else(|_| raw()),
        "string" | "text" | "choice" | "date" => raw(),
        _ => raw(),
    }
}

/// A value as the text an input shows.
fn to_text<Z: TimeZone>(ty: &str, v: &Value, tz: &Z) -> String
where
    Z::Offset: std::fmt::Display,
{
    match (ty, v) {
        (_, Value::Null) => String::new(),
        ("datetime", Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(tz).format("%Y-%m-%dT%H:%M").to_string())
            .unwrap_or_else(|_| s.clone()),
        ("list" | "object", v) if !v.is_string() => serde_json::to_string_pretty(v).unwrap_or_default(),
        (_, Value::String(s)) => s.clone(),
        (_, v) => v.to_string(),
    }
}

/// A value for reading (readonly fields, instance pages).
pub fn show(v: &Value, download: Option<String>) -> Markup {
    if let Ok(file) = FileRef::from_value(v) {
        return match download {
            Some(url) => html!("<a href=\"{}\">{}</a> ({} bytes)", url, file.name, file.size),
            None => html!("{} ({} bytes)", file.name, file.size),
        };
    }
    match v {
        Value::Null => Markup::raw("—"),
        Value::String(s) => html!("{}", s),
        Value::Bool(true) => Markup::raw("はい ✓"),
        Value::Bool(false) => Markup::raw("いいえ"),
        Value::Array(_) | Value::Object(_) => {
            html!("<pre>{}</pre>", serde_json::to_string_pretty(v).unwrap_or_default())
        }
        v => html!("{}", v.to_string()),
    }
}

/// One field: label, input by type (or the value, when readonly), and its error.
/// `download` makes a link of a file value.
pub fn render<Z: TimeZone>(f: &FormField, error: Option<&str>, tz: &Z, download: Option<String>) -> Markup
where
    Z::Offset: std::fmt::Display,
{
    let label = f.label.clone().unwrap_or_else(|| f.name.clone());
    let id = format!("f-{}", super::html::url_part(&f.name));
    let mut m = html!("<div class=\"field\"><label for=\"{}\">{}", id, label);
    if f.mode == "required" {
        m.push(Markup::raw(" <span class=\"req\" title=\"必須 required\">*</span>"));
    }
    m.push(Markup::raw("</label>"));
    let text = to_text(&f.ty, &f.value, tz);
    let req =
        if f.mode == "required" && f.ty != "bool" && f.ty != "file" { Markup::raw(" required") } else { Markup::new() };
    let maxlen = match f.max_length {
        Some(n) => html!(" maxlength=\"{}\"", n),
        None => Markup::new(),
    };
    if f.mode == "readonly" {
        html!(m, "<div id=\"{}\">{}</div>", id, show(&f.value, download));
    } else {
        match f.ty.as_str() {
            "text" => html!(m, "<textarea id=\"{}\" name=\"{}\"{}{}>{}</textarea>", id, f.name, maxlen, req, text),
            "list" | "object" => html!(
                m,
                "<textarea id=\"{}\" name=\"{}\" placeholder=\"{}\"{}>{}</textarea><small>JSON</small>",
                id,
                f.name,
                if f.ty == "list" { "[]" } else { "{}" },
                req,
                text
            ),
            "number" => html!(
                m,
                "<input type=\"text\" inputmode=\"decimal\" id=\"{}\" name=\"{}\" value=\"{}\"{}>",
                id,
                f.name,
                text,
                req
            ),
            "date" => html!(m, "<input type=\"date\" id=\"{}\" name=\"{}\" value=\"{}\"{}>", id, f.name, text, req),
            "datetime" => {
                html!(m, "<input type=\"datetime-local\" id=\"{}\" name=\"{}\" value=\"{}\"{}>", id, f.name, text, req)
            }
            "bool" => {
                let checked = if f.value == Value::Bool(true) { Markup::raw(" checked") } else { Markup::new() };
                html!(m, "<input type=\"checkbox\" id=\"{}\" name=\"{}\" value=\"true\"{}>", id, f.name, checked)
            }
            "choice" => {
                html!(m, "<select id=\"{}\" name=\"{}\"{}><option value=\"\">—</option>", id, f.name, req);
                for o in f.options.iter().flatten() {
                    let sel = if *o == text { Markup::raw(" selected") } else { Markup::new() };
                    html!(m, "<option value=\"{}\"{}>{}</option>", o, sel, o);
                }
                m.push(Markup::raw("</select>"));
            }
            "file" => {
                if !f.value.is_null() {
                    html!(m, "<div>現在 Current: {}</div>", show(&f.value, download));
                }
                html!(m, "<input type=\"file\" id=\"{}\" name=\"{}\">", id, f.name)
            }
            _ => {
                html!(m, "<input type=\"text\" id=\"{}\" name=\"{}\" value=\"{}\"{}{}>", id, f.name, text, maxlen, req)
            }
        }
    }
    if let Some(e) = error {
        html!(m, "<span class=\"error\" role=\"alert\">{}</span>", e);
    }
    m.push(Markup::raw("</div>"));
    m
}

/// Whether a form needs `multipart/form-data` (an editable file field).
pub fn has_upload(fields: &[FormField]) -> bool {
    fields.iter().any(|f| f.ty == "file" && f.mode != "readonly")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn text_becomes_the_declared_type_or_stays_text_for_the_engine_to_refuse() {
        assert_eq!(from_text("number", "12,000", &Utc), Value::from(12000));
        assert_eq!(from_text("number", "1.5", &Utc), serde_json::json!(1.5));
        assert_eq!(from_text("number", "abc", &Utc), Value::from("abc"));
        assert_eq!(from_text("list", "[1, 2]", &Utc), serde_json::json!([1, 2]));
        assert_eq!(from_text("object", "{", &Utc), Value::from("{"));
        assert_eq!(from_text("string", "  ", &Utc), Value::Null);
        let tokyo = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
        assert_eq!(from_text("datetime", "2026-11-23T09:00", &tokyo), Value::from("2026-11-23T09:00:00+09:00"));
        assert_eq!(to_text("datetime", &Value::from("2026-11-23T00:00:00Z"), &tokyo), "2026-11-23T09:00");
    }
}
