//! The CloudSign side of the contract import (seed 001): concluded documents and
//! their files, visible to one client id, into a ledger, once per file.
//!
//! | connector | input | result |
//! | --- | --- | --- |
//! | `cloudsign.import_begin` | `user`? | `{management_id, first, since, at_mark, retry, busy, holder}` |
//! | `cloudsign.concluded` | `since`?, `exclude`?, `page`? (1), `offset`? (0), `max_documents`? (100), `documents`?, `count_only`?, `user`? | see below |
//! | `cloudsign.fetch_file` | `document`, `file`, `name`?, `user`? | `{file: {name, content_type, size, sha256}}` |
//! | `cloudsign.import_commit` | `mark`?, `at_mark`?, `failed`?, `user`? | `{management_id, mark, failed}` |
//!
//! `concluded` lists concluded documents last processed at or after `since`
//! (`GET /documents?status=2&from=`), `max_documents` (≤ 100) of them from
//! `offset` of page `page`, fetches each one's contract attributes and answers one
//! **entry per file**: `{key, document, file, file_name, title, counterparty,
//! concluded_on, starts, ends, amount, auto_renewal, notice_deadline, local_id,
//! processed_at}` with `next` (`{page, offset}` of the next part, null after the
//! last), `mark` (the latest `processed_at` seen) and `at_mark` (the
//! documents processed exactly then). `since` is inclusive; `exclude` leaves out
//! the documents at the old mark that the last run handled. With
//! `documents: [id...]` it answers the entries of those documents instead (the
//! retry of last run's failures; a document no longer concluded or visible is
//! left out and named in `gone`). `count_only: true` counts documents and files
//! over every page without fetching attributes: `{documents, files}`.
//!
//! `fetch_file` streams the PDF into the blob store (never whole in memory;
//! ≤ 10 MB, PDF checked as it arrives) and answers a `file` reference. The same
//! file fetched twice is stored once (content addressed).
//!
//! `import_begin` / `import_commit` keep the integration's state
//! ([`super::import_state`]): the management id, the high-water mark (moved only
//! by a commit, after the files are stored), the documents to retry, and the
//! lease that makes overlapping runs of one integration take turns.

use super::client::{seg, Client, CsError};
use super::import_state::{Marks, StateError};
use crate::cloudsign::files::{BlobError, BlobSource};
use chrono::{DateTime, FixedOffset, Utc};
use nagare_engine::{Call, ConnectorError};
use serde_json::{json, Map, Value};

/// Most documents one `documents:` retry list may name.
pub const MAX_RETRY_DOCUMENTS: usize = 1_000;
/// Most pages `count_only` walks (100 documents each): 1,000,000 documents.
const MAX_COUNT_PAGES: usize = 10_000;
/// Contract dates are dates in Japan.
fn jst() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).expect("+09:00 is a valid offset")
}

fn fatal(msg: impl Into<String>) -> ConnectorError {
    ConnectorError::Fatal(msg.into())
}

fn state_error(e: StateError) -> ConnectorError {
    match e {
        StateError::Io { .. } => ConnectorError::Retryable(e.to_string()),
        StateError::NotHolder { .. } => ConnectorError::Business { code: "not_holder".into(), message: e.to_string() },
        StateError::TooManyFailed(_) => fatal(e.to_string()),
    }
}

/// The date part of an RFC 3339 time, in Japan.
fn date_jst(stamp: &str) -> Option<String> {
    let t = DateTime::parse_from_rfc3339(stamp).ok()?;
    Some(t.with_timezone(&jst()).format("%Y-%m-%d").to_string())
}

fn text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Value::String(s.clone()),
        Some(Value::Number(n)) => Value::String(n.to_string()),
        _ => Value::Null,
    }
}

/// The ledger entries of one concluded document: one per file, with the
/// attributes CloudSign keeps for contract management (the seed's mapping).
pub fn entries(doc: &Value, attr: &Value) -> Vec<Value> {
    let id = doc["id"].as_str().unwrap_or_default();
    let processed = doc
        .get("last_processed_at")
        .and_then(Value::as_str)
        .or_else(|| doc.get("updated_at").and_then(Value::as_str))
        .unwrap_or_default();
    let title =
        text(attr.get("title")).as_str().map(str::to_string).or_else(|| doc["title"].as_str().map(str::to_string));
    let concluded_on = text(attr.get("contract_at")).as_str().map(str::to_string).or_else(|| date_jst(processed));
    let auto_renewal = match attr.get("auto_update").and_then(Value::as_u64) {
        Some(1) => "あり",
        Some(2) => "なし",
        _ => "未設定",
    };
    let amount = attr.get("amount").filter(|a| a.is_number()).cloned().unwrap_or(Value::Null);
    doc["files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let fid = f["id"].as_str().unwrap_or_default();
            json!({
                "key": format!("{id}:{fid}"),
                "document": id,
                "file": fid,
                "file_name": f["name"],
                "title": title,
                "counterparty": text(attr.get("counterparty")),
                "concluded_on": concluded_on,
                "starts": text(attr.get("validity_start_at")),
                "ends": text(attr.get("validity_end_at")),
                "notice_deadline": text(attr.get("validity_end_notice_at")),
                "amount": amount,
                "auto_renewal": auto_renewal,
                "local_id": text(attr.get("local_id")),
                "processed_at": processed,
            })
        })
        .collect()
}

fn since_input(input: &Map<String, Value>) -> Result<Option<String>, ConnectorError> {
    match input.get("since") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => {
            DateTime::parse_from_rfc3339(s)
                .map_err(|e| fatal(format!("`since` must be an RFC 3339 time (the mark of import_begin): {e}")))?;
            Ok(Some(s.clone()))
        }
        Some(v) => Err(fatal(format!("`since` must be an RFC 3339 time, got {v}"))),
    }
}

fn later(a: Option<String>, b: &str) -> Option<String> {
    let Ok(tb) = DateTime::parse_from_rfc3339(b) else { return a };
    match a.as_deref().map(DateTime::parse_from_rfc3339) {
        Some(Ok(ta)) if ta >= tb => a,
        _ => Some(b.to_string()),
    }
}

/// Entries of `docs`, the latest last-processed time among them and the
/// documents processed exactly then.
async fn with_entries(client: &Client, docs: &[Value]) -> Result<(Vec<Value>, Option<String>, Vec<String>), CsError> {
    let mut out = Vec::new();
    let mut mark = None;
    for d in docs {
        let id = seg(d["id"].as_str().unwrap_or_default());
        if id.is_empty() {
            continue;
        }
        let attr = client
            .json(reqwest::Method::GET, &format!("documents/{id}/attribute"), &[], &super::client::Body::None)
            .await?;
        out.extend(entries(d, &attr));
        if let Some(p) = d.get("last_processed_at").and_then(Value::as_str) {
            mark = later(mark, p);
        }
    }
    let at = |d: &&Value| -> bool {
        let p = d.get("last_processed_at").and_then(Value::as_str).and_then(|p| DateTime::parse_from_rfc3339(p).ok());
        let m = mark.as_deref().and_then(|m| DateTime::parse_from_rfc3339(m).ok());
        p.is_some() && p == m
    };
    let at_mark = docs.iter().filter(at).filter_map(|d| d["id"].as_str().map(str::to_string)).collect();
    Ok((out, mark, at_mark))
}

/// Whether `exclude` (documents at the mark an earlier run handled) names `d`.
fn excluded(input: &Map<String, Value>, d: &Value) -> bool {
    let id = d["id"].as_str().unwrap_or_default();
    input.get("exclude").and_then(Value::as_array).is_some_and(|a| a.iter().any(|x| x.as_str() == Some(id)))
}

fn page_query(since: &Option<String>, page: usize, files: bool) -> Vec<(&'static str, String)> {
    let mut q = vec![
        ("status", "2".to_string()),
        ("page", page.to_string()),
        ("with_participants", "n".into()),
        ("with_files", if files { "y" } else { "n" }.into()),
    ];
    if let Some(s) = since {
        q.push(("from", s.clone()));
    }
    q
}

/// `cloudsign.concluded`.
pub async fn concluded(client: &Client, input: &Map<String, Value>) -> Result<Value, ConnectorError> {
    let since = since_input(input)?;
    let count_only = input.get("count_only").and_then(Value::as_bool).unwrap_or(false);
    if let Some(list) = input.get("documents").filter(|v| !v.is_null()) {
        let ids: Vec<String> = list
            .as_array()
            .ok_or_else(|| fatal("`documents` must be a list of document ids"))?
            .iter()
            .filter_map(|v| v.as_str().map(seg))
            .filter(|s| !s.is_empty())
            .collect();
        if ids.len() > MAX_RETRY_DOCUMENTS {
            return Err(fatal(format!("`documents` names {} documents; at most {MAX_RETRY_DOCUMENTS}", ids.len())));
        }
        let mut docs = Vec::new();
        let mut gone = Vec::new();
        for id in ids {
            match client.document(&id).await {
                Ok(d) if d["status"].as_u64() == Some(2) => docs.push(d),
                Ok(_) => gone.push(json!(id)),
                Err(e) if matches!(e.status(), Some(403 | 404)) => gone.push(json!(id)),
                Err(e) => return Err(e.into()),
            }
        }
        if count_only {
            let files: usize = docs.iter().map(|d| d["files"].as_array().map_or(0, Vec::len)).sum();
            return Ok(json!({ "documents": docs.len(), "files": files, "gone": gone }));
        }
        let (entries, _, _) = with_entries(client, &docs).await?;
        // A retry does not move the mark: these were listed by an earlier run.
        return Ok(
            json!({ "entries": entries, "count": entries.len(), "documents": docs.len(), "next": null, "mark": null, "at_mark": [], "gone": gone }),
        );
    }
    if count_only {
        let (mut documents, mut files) = (0usize, 0usize);
        for page in 1..=MAX_COUNT_PAGES {
            let v = client
                .json(reqwest::Method::GET, "documents", &page_query(&since, page, true), &super::client::Body::None)
                .await?;
            let all = v["documents"].as_array().cloned().unwrap_or_default();
            let full = all.len() >= super::client::PAGE;
            let docs: Vec<&Value> = all.iter().filter(|d| !excluded(input, d)).collect();
            documents += docs.len();
            files += docs.iter().map(|d| d["files"].as_array().map_or(0, Vec::len)).sum::<usize>();
            if !full {
                break;
            }
        }
        return Ok(json!({ "documents": documents, "files": files }));
    }
    let page = match input.get("page") {
        None | Some(Value::Null) => 1,
        Some(v) => {
            v.as_u64()
                .filter(|p| (1..=MAX_COUNT_PAGES as u64).contains(p))
                .ok_or_else(|| fatal(format!("`page` must be 1 to {MAX_COUNT_PAGES}, got {v}")))? as usize
        }
    };
    let offset = match input.get("offset") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .filter(|o| *o < super::client::PAGE as u64)
            .ok_or_else(|| fatal(format!("`offset` must be 0 to {}, got {v}", super::client::PAGE - 1)))?
            as usize,
    };
    let max = match input.get("max_documents") {
        None | Some(Value::Null) => super::client::PAGE,
        Some(v) => v
            .as_u64()
            .filter(|m| (1..=super::client::PAGE as u64).contains(m))
            .ok_or_else(|| fatal(format!("`max_documents` must be 1 to {}, got {v}", super::client::PAGE)))?
            as usize,
    };
    let v = client
        .json(reqwest::Method::GET, "documents", &page_query(&since, page, true), &super::client::Body::None)
        .await?;
    let all = v["documents"].as_array().cloned().unwrap_or_default();
    // A part of the page: the caller's instance holds a few documents' entries at a
    // time (offsets count the page as CloudSign answered it, before any filter).
    let next = if offset + max < all.len() {
        json!({ "page": page, "offset": offset + max })
    } else if all.len() >= super::client::PAGE {
        json!({ "page": page + 1, "offset": 0 })
    } else {
        Value::Null
    };
    let docs: Vec<Value> = all.into_iter().skip(offset).take(max).collect();
    // Documents of another status slipping in (a service ignoring `status`) are never
    // imported; documents at the mark that an earlier run handled are left out.
    let docs: Vec<Value> =
        docs.into_iter().filter(|d| d["status"].as_u64() == Some(2) && !excluded(input, d)).collect();
    let (entries, mark, at_mark) = with_entries(client, &docs).await?;
    Ok(json!({
        "entries": entries,
        "count": entries.len(),
        "documents": docs.len(),
        "page": page,
        "next": next,
        "mark": mark,
        "at_mark": at_mark,
        "total": v["total"],
    }))
}

/// `cloudsign.fetch_file`: the PDF streamed into the blob store.
pub async fn fetch_file(
    client: &Client,
    blobs: &dyn BlobSource,
    input: &Map<String, Value>,
) -> Result<Value, ConnectorError> {
    let id_of = |k: &str| -> Result<String, ConnectorError> {
        let s = input.get(k).and_then(Value::as_str).ok_or_else(|| fatal(format!("`{k}` is missing (an id)")))?;
        let id = seg(s);
        if id.is_empty() || id.len() != s.len() || id.len() > 100 {
            return Err(fatal(format!("`{k}` is not a CloudSign id")));
        }
        Ok(id)
    };
    let (doc, fid) = (id_of("document")?, id_of("file")?);
    let name = match input.get("name").and_then(Value::as_str).filter(|n| !n.trim().is_empty()) {
        Some(n) => n.to_string(),
        None => {
            let d = client.document(&doc).await?;
            d["files"]
                .as_array()
                .and_then(|a| a.iter().find(|f| f["id"].as_str() == Some(fid.as_str())))
                .and_then(|f| f["name"].as_str())
                .unwrap_or("contract.pdf")
                .to_string()
        }
    };
    let mut sink = blobs.create().map_err(|e| match e {
        BlobError::Unavailable => fatal("no file store: cloudsign.fetch_file needs the engine's data directory"),
        other => ConnectorError::Retryable(other.to_string()),
    })?;
    let mut refused = None;
    let res = client
        .download(&format!("documents/{doc}/files/{fid}"), &mut |chunk: &[u8]| match sink.write(chunk) {
            Ok(()) => true,
            Err(e) => {
                refused = Some(e);
                false
            }
        })
        .await;
    if let Some(e) = refused {
        return Err(match e {
            BlobError::Refused(why) => ConnectorError::Business {
                code: "invalid_file".into(),
                message: format!("document {doc} file {fid} ({name}): {why}"),
            },
            other => ConnectorError::Retryable(other.to_string()),
        });
    }
    res?;
    let (sha256, size) = sink.finish().map_err(|e| match e {
        BlobError::Refused(why) => ConnectorError::Business {
            code: "invalid_file".into(),
            message: format!("document {doc} file {fid} ({name}): {why}"),
        },
        other => ConnectorError::Retryable(other.to_string()),
    })?;
    #[allow(clippy::disallowed_methods)]
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(json!({ "file": { "name": name, "content_type": "application/pdf", "size": size, "sha256": sha256,
        "created_by": "cloudsign", "created_at": now } }))
}

/// `cloudsign.import_begin`.
pub fn begin(client: &Client, marks: &Marks, call: &Call) -> Result<Value, ConnectorError> {
    #[allow(clippy::disallowed_methods)]
    let now = Utc::now();
    let b = marks.begin(&client.identity(), call.instance, now).map_err(state_error)?;
    let s = b.state;
    if let Some(holder) = b.busy_with {
        tracing::info!(management_id = %s.management_id, holder, instance = call.instance, "another run holds the integration; this one does nothing");
    }
    Ok(json!({
        "management_id": s.management_id,
        "first": s.mark.is_none(),
        "since": s.mark,
        "at_mark": s.at_mark,
        "retry": s.failed,
        "busy": b.busy_with.is_some(),
        "holder": b.busy_with,
    }))
}

/// `cloudsign.import_commit`.
pub fn commit(
    client: &Client,
    marks: &Marks,
    call: &Call,
    input: &Map<String, Value>,
) -> Result<Value, ConnectorError> {
    let mark = match input.get("mark") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(fatal(format!("`mark` must be an RFC 3339 time, got {v}"))),
    };
    let ids = |k: &str| -> Result<Vec<String>, ConnectorError> {
        match input.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => {
                Ok(a.iter().filter_map(|v| v.as_str().map(seg)).filter(|s| !s.is_empty()).collect())
            }
            Some(_) => Err(fatal(format!("`{k}` must be a list of document ids"))),
        }
    };
    let (failed, at_mark) = (ids("failed")?, ids("at_mark")?);
    #[allow(clippy::disallowed_methods)]
    let now = Utc::now();
    let s = marks.commit(&client.identity(), call.instance, mark, at_mark, failed, now).map_err(state_error)?;
    Ok(json!({ "management_id": s.management_id, "mark": s.mark, "failed": s.failed, "runs": s.runs }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_file_with_the_seed_mapping() {
        let doc = json!({
            "id": "d1", "title": "業務委託契約", "status": 2, "last_processed_at": "2026-11-30T16:30:00Z",
            "files": [{"id": "f1", "name": "本体.pdf"}, {"id": "f2", "name": "別紙.pdf"}],
        });
        let attr = json!({"amount": 1200000, "auto_update": 1, "local_id": "R-7", "validity_start_at": "2026-12-01"});
        let e = entries(&doc, &attr);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1]["key"], "d1:f2");
        assert_eq!(e[1]["file_name"], "別紙.pdf");
        assert_eq!(e[0]["title"], "業務委託契約", "the document's title when the attribute has none");
        assert_eq!(e[0]["concluded_on"], "2026-12-01", "the concluding day in Japan");
        assert_eq!((e[0]["amount"].clone(), e[0]["auto_renewal"].clone()), (json!(1200000), json!("あり")));
        assert_eq!((e[0]["starts"].clone(), e[0]["ends"].clone()), (json!("2026-12-01"), Value::Null));
        assert_eq!(e[0]["local_id"], "R-7");
        assert!(entries(&json!({"id": "d", "files": []}), &json!({})).is_empty());
    }

    #[test]
    fn the_mark_is_the_latest_time_seen() {
        let m = later(None, "2026-12-01T00:00:00Z");
        let m = later(m, "2026-11-01T00:00:00+09:00");
        assert_eq!(later(m, "2026-12-01T08:00:00+09:00").as_deref(), Some("2026-12-01T00:00:00Z"));
    }
}
