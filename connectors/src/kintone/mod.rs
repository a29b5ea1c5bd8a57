//! kintone: the connector (`kintone.get`, `.query`, `.add`, `.update`,
//! `.update_status`), its REST client, field conversion, the query language, the
//! record-change watcher and a local emulator of the API.
//!
//! A connector instance is one app on one domain (settings in the config file,
//! [`crate::config::KintoneConfig`]); a step may name another `app` of the same
//! domain. Inputs (`with:`) and outputs (`result`):
//!
//! | connector | input | result |
//! | --- | --- | --- |
//! | `kintone.get` | `id`, `app`? | `{id, revision, record}` |
//! | `kintone.query` | `query`?, `fields`?, `max`? (10,000), `app`? | `{records, count}` |
//! | `kintone.add` | `record`, `idempotency_field`? or `key`?, `app`? | `{id, revision, created}` |
//! | `kintone.update` | `id`, `record`, `revision`?, `app`? | `{id, revision, conflicts}` |
//! | `kintone.update_status` | `id`, `action`, `assignee`?, `revision`?, `app`? | `{id, revision, conflicts}` |
//!
//! `record` values are plain (see [`fields`]); results are plain too. With a
//! `revision`, an update that meets a newer one (`GAIA_CO02`) re-reads the record's
//! revision and sends the same fields again: fields the step does not send are
//! kept as the other writer left them, so nothing is lost. `kintone.add` with
//! `idempotency_field` writes the call's idempotency key into that field and, on a
//! retry, returns the record an earlier attempt created instead of adding another.
//! `key: {field, value}` does the same with a key of the caller's (a unique field,
//! e.g. CloudSign document + file): the record with that value is looked up first
//! (before any file is uploaded), so any run, not only a retry of one call, finds it.

pub mod client;
#[cfg(feature = "emulators")]
pub mod emulator;
pub mod fields;
pub mod query;
pub mod query_fn;
pub mod trigger;

use crate::cloudsign::files::BlobSource;
use crate::config::KintoneConfig;
use crate::settings::Settings;
use client::{Client, KintoneError};
use nagare_engine::connector::BoxFuture;
use nagare_engine::{Call, Connector, ConnectorError, Registry};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The operations, registered as `<instance>.<operation>`.
pub const OPERATIONS: &[&str] =
    &["get", "query", "add", "update", "update_status", "add_many", "update_many", "delete_many"];

/// Most records of one bulk request, as kintone allows.
pub const MAX_BULK: usize = 100;

/// Most re-reads after revision conflicts in one call.
const MAX_CONFLICTS: u32 = 5;
/// Default and largest `max` of `kintone.query`.
const DEFAULT_MAX: usize = 10_000;
const LARGEST_MAX: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Query,
    Add,
    Update,
    UpdateStatus,
    AddMany,
    UpdateMany,
    DeleteMany,
}

/// One kintone operation of one connector instance.
pub struct KintoneConnector {
    instance: String,
    op: Op,
    settings: Settings<Option<KintoneConfig>>,
    http: reqwest::Client,
    /// Where the content of nagare `file` values comes from (uploaded to FILE fields).
    blobs: Arc<dyn BlobSource>,
}

/// Register every operation of instance `name` (settings `None`: not configured;
/// calls fail with a message saying how to configure it).
pub fn register(
    registry: &mut Registry,
    name: &str,
    settings: Settings<Option<KintoneConfig>>,
    blobs: Arc<dyn BlobSource>,
) {
    let http = crate::http::client();
    for (op_name, op) in [
        ("get", Op::Get),
        ("query", Op::Query),
        ("add", Op::Add),
        ("update", Op::Update),
        ("update_status", Op::UpdateStatus),
        ("add_many", Op::AddMany),
        ("update_many", Op::UpdateMany),
        ("delete_many", Op::DeleteMany),
    ] {
        registry.register(
            format!("{name}.{op_name}"),
            KintoneConnector {
                instance: name.to_string(),
                op,
                settings: settings.clone(),
                http: http.clone(),
                blobs: blobs.clone(),
            },
        );
    }
    let (instance, s) = (name.to_string(), settings);
    registry.register_record_key(
        name,
        Arc::new(move |watch: &serde_json::Map<String, Value>, id: &Value| {
            let cfg = s.get();
            let app = trigger::watch_app(watch, cfg.as_ref().as_ref(), &instance)?;
            let id = whole(id).filter(|n| *n > 0).ok_or_else(|| format!("`{id}` is not a kintone record id"))?;
            Ok(trigger::record_key(app, id as u64))
        }),
    );
}

fn fatal(msg: impl Into<String>) -> ConnectorError {
    ConnectorError::Fatal(msg.into())
}

/// A whole number from a JSON number or numeric text (kintone ids come as text).
fn whole(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn id_input(input: &Map<String, Value>, key: &str) -> Result<u64, ConnectorError> {
    let v = input.get(key).ok_or_else(|| fatal(format!("`{key}` is missing")))?;
    whole(v)
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| fatal(format!("`{key}` must be a positive whole number (a kintone {key}), got {v}")))
}

/// A bulk input list (`records` or `ids`): 1 to [`MAX_BULK`] items, as kintone takes.
fn bulk_list<'a>(input: &'a Map<String, Value>, key: &str) -> Result<&'a Vec<Value>, ConnectorError> {
    match input.get(key) {
        Some(Value::Array(items)) if (1..=MAX_BULK).contains(&items.len()) => Ok(items),
        Some(Value::Array(items)) => Err(fatal(format!(
            "`{key}` has {} items; kintone takes 1 to {MAX_BULK} per request (split the list)",
            items.len()
        ))),
        _ => Err(fatal(format!("`{key}` must be a list of 1 to {MAX_BULK} items"))),
    }
}

/// `key: {field, value}` of `kintone.add`: a unique text field and its value.
fn unique_key(k: &Value) -> Result<(String, String), ConnectorError> {
    let field = k
        .get("field")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty() && !f.contains(char::is_whitespace))
        .ok_or_else(|| fatal("`key` must be `{field: <unique field code>, value: ...}`"))?;
    let value = match k.get("value") {
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 1000 => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(fatal("`key.value` must be a non-empty text (at most 1,000 characters) or a number")),
    };
    Ok((field.to_string(), value))
}

fn record_input(input: &Map<String, Value>) -> Result<Map<String, Value>, ConnectorError> {
    let r = input.get("record").ok_or_else(|| {
        fatal("`record` is missing: the fields to write, e.g. `record: '#{ k_ステータス: q_status }'`")
    })?;
    let r = r.as_object().ok_or_else(|| fatal("`record` must be a map of field code → value"))?;
    fields::plain_to_record(r).map_err(|e| fatal(e.to_string()))
}

/// A nagare `file` value (`{name, content_type, size, sha256, ...}`).
fn is_file_ref(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.contains_key("sha256") && o.contains_key("name") && !o.contains_key("value"))
}

impl KintoneConnector {
    /// Upload the nagare files in `record` (a file, or a list of files, as a field's
    /// value) and put `[{fileKey}]` in their place, for FILE fields.
    async fn upload_files(
        &self,
        client: &Client,
        mut input: Map<String, Value>,
    ) -> Result<Map<String, Value>, ConnectorError> {
        let Some(Value::Object(record)) = input.get_mut("record") else { return Ok(input) };
        for (code, v) in record.iter_mut() {
            let files: Vec<Value> = match &*v {
                f if is_file_ref(f) => vec![f.clone()],
                Value::Array(items) if !items.is_empty() && items.iter().all(is_file_ref) => items.clone(),
                _ => continue,
            };
            let mut keys = Vec::new();
            for f in &files {
                let name = f["name"].as_str().unwrap_or("file");
                let ty = f.get("content_type").and_then(Value::as_str).unwrap_or("application/octet-stream");
                let sha = f["sha256"].as_str().unwrap_or("");
                let bytes =
                    self.blobs.open(sha).map_err(|e| fatal(format!("field `{code}`: the file `{name}`: {e}")))?;
                let key = client.upload_file(name, ty, bytes).await?;
                keys.push(json!({ "fileKey": key }));
            }
            *v = json!({ "value": keys });
        }
        Ok(input)
    }

    /// The id of the record whose unique field `update_key.field` is
    /// `update_key.value` (kintone's updateKey), found by a query so that the
    /// revision-conflict re-read works as with an id.
    async fn id_by_key(client: &Client, app: u64, key: &Value) -> Result<u64, ConnectorError> {
        let field = key
            .get("field")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty() && !f.contains(char::is_whitespace))
            .ok_or_else(|| fatal("`update_key` must be `{field: <unique field code>, value: ...}`"))?;
        let value = match key.get("value") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(fatal("`update_key.value` must be a non-empty text or number")),
        };
        let found = client.query_all(app, &format!("{field} = {}", query::quote(&value)), &[], 2).await?;
        match found.as_slice() {
            [one] => client::record_id(one).ok_or_else(|| fatal("kintone returned a record without `$id`")),
            [] => Err(ConnectorError::Business {
                code: "GAIA_RE20".into(),
                message: format!("no record of app {app} has {field} = {value}"),
            }),
            _ => Err(fatal(format!("`{field}` is not unique: several records have {field} = {value}"))),
        }
    }

    /// The record whose `field` is `value`, as `add` answers it (`created: false`).
    async fn find_by(client: &Client, app: u64, field: &str, value: &str) -> Result<Option<Value>, ConnectorError> {
        let found = client.query_all(app, &format!("{field} = {}", query::quote(value)), &[], 1).await?;
        Ok(found.first().map(|r| {
            json!({
                "id": client::record_id(r).map(|i| i.to_string()),
                "revision": client::record_revision(r).map(|i| i.to_string()),
                "created": false,
            })
        }))
    }

    fn client(&self) -> Result<(Client, Option<u64>), ConnectorError> {
        let cfg = self.settings.get();
        let cfg = cfg.as_ref().as_ref().ok_or_else(|| {
            fatal(format!(
                "the kintone connector `{0}` is not configured: add `connectors: {0}: {{type: kintone, base_url, app, token}}` to the config file (see README, Connectors)",
                self.instance
            ))
        })?;
        Ok((Client::new(cfg, &self.instance, self.http.clone())?, cfg.app))
    }

    fn app(input: &Map<String, Value>, default: Option<u64>) -> Result<u64, ConnectorError> {
        match input.get("app") {
            Some(_) => id_input(input, "app"),
            None => {
                default.ok_or_else(|| fatal("no `app`: give one in the step or as `app:` in the connector settings"))
            }
        }
    }

    async fn run(&self, call: &Call) -> Result<Value, ConnectorError> {
        let input = call.input.as_object().cloned().unwrap_or_default();
        let (client, default_app) = self.client()?;
        let app = Self::app(&input, default_app)?;
        tracing::debug!(connector = %call.connector, app, "kintone call");
        match self.op {
            Op::Get => {
                let id = id_input(&input, "id")?;
                let rec = client.get_record(app, id).await?;
                Ok(json!({
                    "id": id.to_string(),
                    "revision": client::record_revision(&rec).map(|r| r.to_string()),
                    "record": fields::record_to_plain(&rec),
                }))
            }
            Op::Query => {
                let src = input.get("query").and_then(Value::as_str).unwrap_or("");
                let q = query::parse(src).map_err(|e| fatal(format!("`query`: {e}")))?;
                let fields_in: Vec<String> = match input.get("fields") {
                    None => Vec::new(),
                    Some(Value::Array(a)) => a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect(),
                    Some(_) => return Err(fatal("`fields` must be a list of field codes")),
                };
                let max = match input.get("max") {
                    None => DEFAULT_MAX,
                    Some(v) => whole(v)
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|n| (1..=LARGEST_MAX).contains(n))
                        .ok_or_else(|| fatal(format!("`max` must be 1 to {LARGEST_MAX}")))?,
                };
                let cond = condition_text(src);
                let records = if q.order.is_empty() && q.offset.is_none() {
                    let max = q.limit.map(|l| l as usize).unwrap_or(max).min(max);
                    client.query_all(app, &cond, &fields_in, max).await?
                } else {
                    client.query_ordered(app, &q, &cond, &fields_in, max).await?
                };
                let plain: Vec<Value> = records.iter().map(|r| Value::Object(fields::record_to_plain(r))).collect();
                Ok(json!({ "count": plain.len(), "records": plain }))
            }
            Op::Add => {
                // A unique key of the caller's own (e.g. document + file): looked up
                // before anything is uploaded, written with the record.
                let key = match input.get("key") {
                    None | Some(Value::Null) => None,
                    Some(k) => Some(unique_key(k)?),
                };
                if let Some((field, value)) = &key {
                    if let Some(found) = Self::find_by(&client, app, field, value).await? {
                        tracing::info!(connector = %call.connector, app, key = %value, "record with this key already in the app");
                        return Ok(found);
                    }
                }
                let mut input = self.upload_files(&client, input).await?;
                if let (Some((field, value)), Some(Value::Object(r))) = (&key, input.get_mut("record")) {
                    r.insert(field.clone(), json!(value));
                }
                if let Some((field, value)) = &key {
                    let record = record_input(&input)?;
                    return match client.add_record(app, record).await {
                        Ok((id, revision)) => Ok(json!({ "id": id, "revision": revision, "created": true })),
                        // Added meanwhile by an overlapping run: the unique field refused ours.
                        Err(e) if e.code() == Some("CB_VA01") => match Self::find_by(&client, app, field, value).await?
                        {
                            Some(found) => Ok(found),
                            None => Err(KintoneError::into(e)),
                        },
                        Err(e) => Err(KintoneError::into(e)),
                    };
                }
                let mut record = record_input(&input)?;
                if let Some(field) = input.get("idempotency_field") {
                    let field = field.as_str().ok_or_else(|| fatal("`idempotency_field` must be a field code"))?;
                    let cond = format!("{field} = {}", query::quote(&call.idempotency_key));
                    let found = client.query_all(app, &cond, &[], 1).await?;
                    if let Some(r) = found.first() {
                        let id = client::record_id(r).map(|i| i.to_string());
                        let rev = client::record_revision(r).map(|i| i.to_string());
                        tracing::info!(connector = %call.connector, app, id = ?id, "record already added by an earlier attempt");
                        return Ok(json!({ "id": id, "revision": rev, "created": false }));
                    }
                    record.insert(field.to_string(), json!({ "value": call.idempotency_key }));
                }
                let (id, revision) = client.add_record(app, record).await?;
                Ok(json!({ "id": id, "revision": revision, "created": true }))
            }
            Op::AddMany => {
                let mut records = Vec::new();
                for (i, r) in bulk_list(&input, "records")?.iter().enumerate() {
                    let r = r
                        .as_object()
                        .ok_or_else(|| fatal(format!("`records[{i}]` must be a map of field code → value")))?;
                    records.push(Value::Object(
                        fields::plain_to_record(r).map_err(|e| fatal(format!("`records[{i}]`: {e}")))?,
                    ));
                }
                let v = client.bulk(reqwest::Method::POST, json!({ "app": app, "records": records })).await?;
                Ok(json!({ "ids": v["ids"], "revisions": v["revisions"], "count": records.len() }))
            }
            Op::UpdateMany => {
                let mut records = Vec::new();
                for (i, item) in bulk_list(&input, "records")?.iter().enumerate() {
                    let item = item.as_object().ok_or_else(|| {
                        fatal(format!("`records[{i}]` must be `{{id | update_key, record, revision?}}`"))
                    })?;
                    let mut out = Map::new();
                    match (item.get("id"), item.get("update_key")) {
                        (Some(_), None) => {
                            out.insert("id".into(), json!(id_input(item, "id")?));
                        }
                        (None, Some(k)) => {
                            out.insert("updateKey".into(), k.clone());
                        }
                        _ => return Err(fatal(format!("`records[{i}]` needs exactly one of `id` and `update_key`"))),
                    }
                    out.insert(
                        "record".into(),
                        Value::Object(record_input(item).map_err(|e| fatal(format!("`records[{i}]`: {e}")))?),
                    );
                    if let Some(rev) = item.get("revision").filter(|v| !v.is_null()) {
                        out.insert("revision".into(), json!(whole(rev).ok_or_else(|| fatal(format!("`records[{i}].revision` must be a number")))?));
                    }
                    records.push(Value::Object(out));
                }
                let mut body = json!({ "app": app, "records": records });
                if input.get("upsert").and_then(Value::as_bool) == Some(true) {
                    body["upsert"] = json!(true);
                }
                let v = client.bulk(reqwest::Method::PUT, body).await?;
                Ok(json!({ "records": v["records"], "count": records.len() }))
            }
            Op::DeleteMany => {
                let mut ids = Vec::new();
                for (i, id) in bulk_list(&input, "ids")?.iter().enumerate() {
                    let id =
                        whole(id).filter(|n| *n > 0).ok_or_else(|| fatal(format!("`ids[{i}]` must be a record id")))?;
                    ids.push(id);
                }
                client.bulk(reqwest::Method::DELETE, json!({ "app": app, "ids": ids })).await?;
                Ok(json!({ "deleted": ids.len() }))
            }
            Op::Update | Op::UpdateStatus => {
                let input = if self.op == Op::Update { self.upload_files(&client, input).await? } else { input };
                let id = match input.get("update_key") {
                    Some(k) if !input.contains_key("id") => Self::id_by_key(&client, app, k).await?,
                    _ => id_input(&input, "id")?,
                };
                let mut revision = match input.get("revision") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(whole(v).ok_or_else(|| fatal(format!("`revision` must be a number, got {v}")))?),
                };
                let record = if self.op == Op::Update { Some(record_input(&input)?) } else { None };
                let action = match self.op {
                    Op::UpdateStatus => Some(
                        input
                            .get("action")
                            .and_then(Value::as_str)
                            .ok_or_else(|| fatal("`action` is missing"))?
                            .to_string(),
                    ),
                    _ => None,
                };
                let assignee = input.get("assignee").and_then(Value::as_str);
                let mut conflicts = 0;
                loop {
                    let res = match (&record, &action) {
                        (Some(r), _) => client.update_record(app, id, r, revision).await,
                        (None, Some(a)) => client.update_status(app, id, a, assignee, revision).await,
                        _ => unreachable!("update has a record, update_status an action"),
                    };
                    match res {
                        Ok(rev) => return Ok(json!({ "id": id.to_string(), "revision": rev, "conflicts": conflicts })),
                        Err(e) if e.code() == Some("GAIA_CO02") && conflicts < MAX_CONFLICTS => {
                            conflicts += 1;
                            let current = client.get_record(app, id).await?;
                            let now = client::record_revision(&current);
                            tracing::info!(connector = %call.connector, app, id, stale = ?revision, current = ?now, "revision conflict; re-read, sending again");
                            revision = now;
                        }
                        Err(e) if e.code() == Some("GAIA_CO02") => {
                            return Err(ConnectorError::Retryable(format!(
                                "{} — the record kept changing ({conflicts} conflicts in a row)",
                                e.describe()
                            )))
                        }
                        Err(e) => return Err(KintoneError::into(e)),
                    }
                }
            }
        }
    }
}

/// The condition part of a query text (everything before `order by`/`limit`/`offset`),
/// found through the parser so quoted text with those words is left alone.
fn condition_text(src: &str) -> String {
    // Cut at the first top-level keyword outside quotes.
    let mut in_str = false;
    let mut escaped = false;
    let lower = src.to_lowercase();
    let bytes: Vec<(usize, char)> = src.char_indices().collect();
    for (i, c) in &bytes {
        if in_str {
            if escaped {
                escaped = false;
            } else if *c == '\\' {
                escaped = true;
            } else if *c == '"' {
                in_str = false;
            }
            continue;
        }
        if *c == '"' {
            in_str = true;
            continue;
        }
        let rest = &lower[*i..];
        let boundary = *i == 0 || src[..*i].ends_with(char::is_whitespace) || src[..*i].ends_with(')');
        if boundary {
            for kw in ["order by", "limit ", "offset "] {
                if rest.starts_with(kw) {
                    return src[..*i].trim().to_string();
                }
            }
        }
    }
    src.trim().to_string()
}

impl Connector for KintoneConnector {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin(self.run(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_text_cuts_at_clauses_outside_quotes() {
        assert_eq!(condition_text(r#"a = "limit 5" order by $id asc limit 3"#), r#"a = "limit 5""#);
        assert_eq!(condition_text("order by $id"), "");
        assert_eq!(condition_text(r#"k in ("x") limit 10"#), r#"k in ("x")"#);
        assert_eq!(condition_text(r#"(a = "1")limit 2"#), r#"(a = "1")"#);
    }
}
