//! The emulator's bulk record APIs (`/k/v1/records.json` POST, PUT with `upsert`,
//! DELETE; at most 100 records, all or nothing), `updateKey`, and files
//! (`/k/v1/file.json` upload and download, FILE fields).

use super::state::{ApiError, State};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Most records one bulk request may carry (kintone's limit).
pub const MAX_BULK: usize = 100;
/// Largest file the emulator takes, bytes (kintone's limit is 1 GB; the emulator
/// keeps files in its state file).
pub const MAX_FILE_BYTES: usize = 8 << 20;

/// A file: uploaded (waiting to be attached, `attached: false`) or in a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    pub name: String,
    #[serde(rename = "contentType")]
    pub content_type: String,
    /// The content, base64.
    pub content: String,
    pub attached: bool,
}

impl StoredFile {
    pub fn bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(&self.content).unwrap_or_default()
    }
}

/// What one record of a bulk update did.
pub struct Updated {
    pub id: u64,
    pub revision: u64,
    /// `INSERT` or `UPDATE` (with `upsert`).
    pub operation: &'static str,
}

/// Re-key errors of record `i` as kintone does in bulk answers (`records[i].…`).
fn in_bulk(mut e: ApiError, i: usize) -> ApiError {
    if let Some(Value::Object(m)) = e.errors.take() {
        let rekeyed: Map<String, Value> = m
            .into_iter()
            .map(|(k, v)| (format!("records[{i}].{}", k.strip_prefix("record.").unwrap_or(&k)), v))
            .collect();
        e.errors = Some(Value::Object(rekeyed));
    }
    e
}

fn count_ok(n: usize, what: &str) -> Result<(), ApiError> {
    if n == 0 || n > MAX_BULK {
        return Err(ApiError::invalid(vec![(
            what.to_string(),
            format!("1以上{MAX_BULK}以下の件数を指定してください。"),
        )]));
    }
    Ok(())
}

impl State {
    /// The id of the record whose `updateKey` field has `value`. The field must be
    /// unique and a SINGLE_LINE_TEXT or NUMBER, as in kintone.
    pub fn find_by_key(&self, app: u64, key: &Value) -> Result<Option<u64>, ApiError> {
        let a = self.app(app)?;
        let field = key.get("field").and_then(Value::as_str).ok_or_else(|| ApiError::required("updateKey.field"))?;
        let value = match key.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(ApiError::required("updateKey.value")),
        };
        let def = a.fields.get(field).ok_or_else(|| {
            ApiError::new(400, "GAIA_FC01", format!("指定したフィールド（code: {field}）が見つかりません。"))
        })?;
        if !def.unique || !matches!(def.ty.as_str(), "SINGLE_LINE_TEXT" | "NUMBER") {
            return Err(ApiError::invalid(vec![(
                "updateKey.field".into(),
                "重複禁止が設定された文字列（1行）または数値フィールドを指定してください。".into(),
            )]));
        }
        Ok(a.records
            .values()
            .find(|r| r.values.get(field).and_then(Value::as_str) == Some(value.as_str()))
            .map(|r| r.id))
    }

    /// Upload a file: its temporary `fileKey`.
    pub fn upload_file(
        &mut self,
        name: &str,
        content_type: &str,
        bytes: &[u8],
        key: String,
    ) -> Result<String, ApiError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(ApiError::new(
                400,
                "CB_VA01",
                format!("ファイルが大きすぎます（{MAX_FILE_BYTES} バイトまで）。"),
            ));
        }
        let content = base64::engine::general_purpose::STANDARD.encode(bytes);
        let f = StoredFile { name: name.into(), content_type: content_type.into(), content, attached: false };
        self.files.insert(key.clone(), f);
        Ok(key)
    }

    pub fn file(&self, key: &str) -> Result<&StoredFile, ApiError> {
        self.files.get(key).ok_or_else(|| {
            ApiError::new(404, "GAIA_BL01", "指定したファイル（id: ".to_string() + key + "）が見つかりません。")
        })
    }

    /// Replace FILE values `[{fileKey}]` of `record` with the stored file objects:
    /// an uploaded key is attached (under a new key, as kintone hands out download
    /// keys), a key already in the record is kept.
    pub fn attach_files(
        &mut self,
        app: u64,
        record: &Map<String, Value>,
        new_key: &mut dyn FnMut() -> String,
    ) -> Result<Map<String, Value>, ApiError> {
        let a = self.app(app)?;
        let file_fields: Vec<String> =
            record.keys().filter(|c| a.fields.get(*c).is_some_and(|d| d.ty == "FILE")).cloned().collect();
        let mut out = record.clone();
        for code in file_fields {
            let Some(Value::Array(items)) = record[&code].get("value") else { continue };
            let mut files = Vec::new();
            for it in items {
                let key = it.get("fileKey").and_then(Value::as_str).unwrap_or("");
                let f = self.file(key).map_err(|_| {
                    ApiError::invalid(vec![(
                        format!("record.{code}.value"),
                        format!("ファイル（fileKey: {key}）が見つかりません。"),
                    )])
                })?;
                let (key, f) = if f.attached {
                    (key.to_string(), f.clone())
                } else {
                    let mut f = self.files.remove(key).expect("found");
                    f.attached = true;
                    let k = new_key();
                    self.files.insert(k.clone(), f.clone());
                    (k, f)
                };
                files.push(json!({ "contentType": f.content_type, "fileKey": key, "name": f.name, "size": f.bytes().len().to_string() }));
            }
            out.insert(code, json!({ "value": files }));
        }
        Ok(out)
    }

    /// `POST /k/v1/records.json`: add 1–100 records, all or nothing.
    pub fn add_records(
        &mut self,
        app: u64,
        records: &[Map<String, Value>],
        by: &str,
        now: DateTime<Utc>,
        new_key: &mut dyn FnMut() -> String,
    ) -> Result<Vec<(u64, u64)>, ApiError> {
        count_ok(records.len(), "records")?;
        let mut copy = self.clone();
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let r = copy.attach_files(app, r, new_key).map_err(|e| in_bulk(e, i))?;
            out.push(copy.add_record(app, &r, by, now).map_err(|e| in_bulk(e, i))?);
        }
        *self = copy;
        Ok(out)
    }

    /// `PUT /k/v1/records.json`: update 1–100 records by `id` or `updateKey`, all or
    /// nothing; with `upsert`, a record not found is added.
    pub fn update_records(
        &mut self,
        app: u64,
        items: &[Value],
        upsert: bool,
        by: &str,
        now: DateTime<Utc>,
        new_key: &mut dyn FnMut() -> String,
    ) -> Result<Vec<Updated>, ApiError> {
        count_ok(items.len(), "records")?;
        let mut copy = self.clone();
        let mut out = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let step = |copy: &mut State, new_key: &mut dyn FnMut() -> String| -> Result<Updated, ApiError> {
                let record = it.get("record").and_then(Value::as_object).cloned().unwrap_or_default();
                let record = copy.attach_files(app, &record, new_key)?;
                let revision = it.get("revision").and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
                let id = match (it.get("id"), it.get("updateKey")) {
                    (Some(id), _) => id.as_u64().or_else(|| id.as_str()?.parse().ok()),
                    (None, Some(k)) => copy.find_by_key(app, k)?,
                    (None, None) => return Err(ApiError::required("id")),
                };
                match id {
                    Some(id) if copy.app(app)?.records.contains_key(&id) => {
                        let revision = copy.update_record(app, id, &record, revision, by, now)?;
                        Ok(Updated { id, revision, operation: "UPDATE" })
                    }
                    _ if upsert => {
                        let mut record = record;
                        if let Some(k) = it.get("updateKey") {
                            let field = k.get("field").and_then(Value::as_str).unwrap_or_default().to_string();
                            record.insert(field, json!({ "value": k.get("value").cloned().unwrap_or(Value::Null) }));
                        }
                        let (id, revision) = copy.add_record(app, &record, by, now)?;
                        Ok(Updated { id, revision, operation: "INSERT" })
                    }
                    Some(id) => {
                        Err(ApiError::new(404, "GAIA_RE01", format!("指定したレコード（id: {id}）が見つかりません。")))
                    }
                    None => Err(ApiError::new(404, "GAIA_RE20", "指定したレコード（updateKey）が見つかりません。")),
                }
            };
            out.push(step(&mut copy, new_key).map_err(|e| in_bulk(e, i))?);
        }
        *self = copy;
        Ok(out)
    }

    /// `DELETE /k/v1/records.json`: delete 1–100 records, all or nothing.
    pub fn delete_records(&mut self, app: u64, ids: &[u64]) -> Result<(), ApiError> {
        count_ok(ids.len(), "ids")?;
        let a = self.app(app)?;
        if let Some(missing) = ids.iter().find(|id| !a.records.contains_key(id)) {
            return Err(ApiError::new(
                404,
                "GAIA_RE01",
                format!("指定したレコード（id: {missing}）が見つかりません。"),
            ));
        }
        let a = self.apps.get_mut(&app).expect("checked");
        for id in ids {
            a.records.remove(id);
        }
        Ok(())
    }
}
