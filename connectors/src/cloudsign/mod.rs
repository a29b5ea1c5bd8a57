//! CloudSign (e-signature): the connector (`cloudsign.*`), its Web API client, and
//! a local emulator of the API.
//!
//! A connector instance is one CloudSign host ([`crate::config::CloudsignConfig`]);
//! each call acts as one nagare user, whose CloudSign client id the config maps by
//! reference (`users:`), falling back to the instance's `client_id`. The step names
//! the user with `user:` (typically the instance's starter); a user without a
//! credential is a business error `no_credential`.
//!
//! | connector | input | result |
//! | --- | --- | --- |
//! | `cloudsign.create_draft` | `title`, `note`?, `message`?, `files`?, `participants`?, `attributes`?, `user`? | document (+ `created`) |
//! | `cloudsign.upload` | `document`, `file`, `user`? | document (+ `file_id`) |
//! | `cloudsign.add_participants` | `document`, `participants`, `user`? | document |
//! | `cloudsign.set_attributes` | `document`, `attributes`, `user`? | `{document, attributes}` |
//! | `cloudsign.send` | `document`, `user`? | document (+ `sent`) |
//! | `cloudsign.get` | `document`, `user`? | document |
//! | `cloudsign.list` | `status`?, `max`? (1,000; ≤ 10,000), `user`? | `{documents, count, total}` |
//! | `cloudsign.download` | `document`, `file`? (id; default the first), `user`? | `{name, content_base64, size, sha256}` |
//! | `cloudsign.delete` | `document`, `user`? | `{document, deleted}` |
//! | `cloudsign.import_begin`, `.concluded`, `.fetch_file`, `.import_commit` | see [`import`] | |
//!
//! A document in a result is `{id, title, status, status_name, participants, files,
//! sent_at, updated_at}`; `status_name` is `draft`, `in_progress`, `concluded`,
//! `declined`, `template` or `imported`.
//!
//! Every operation can be retried safely: `create_draft` writes the call's
//! idempotency key into the draft's note and first looks for a draft carrying it,
//! and adds only the files and participants the draft does not have yet; `send`
//! sends only a draft; `delete` of a document already gone answers `deleted: false`.
//! Files are checked (PDF, ≤ 10 MB) before any request ([`files`]).

pub mod client;
#[cfg(feature = "emulators")]
pub mod emulator;
pub mod files;
pub mod import;
pub mod import_state;
pub mod limiter;
pub mod multipart;

use crate::config::CloudsignConfig;
use crate::settings::Settings;
use client::{seg, Body, Client, CsError, Shared};
use files::{BlobSource, FileError, PdfFile};
use multipart::Part;
use nagare_engine::connector::BoxFuture;
use nagare_engine::{Call, Connector, ConnectorError, Registry};
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// The operations, registered as `<instance>.<operation>`.
pub const OPERATIONS: &[&str] = &[
    "create_draft",
    "upload",
    "add_participants",
    "set_attributes",
    "send",
    "get",
    "list",
    "download",
    "delete",
    "import_begin",
    "concluded",
    "fetch_file",
    "import_commit",
];

/// Most participants CloudSign takes on one document, the sender included.
pub const MAX_PARTICIPANTS: usize = 128;
/// Most files on one document.
pub const MAX_FILES: usize = 100;
/// Default and largest `max` of `cloudsign.list`.
const DEFAULT_LIST_MAX: usize = 1_000;
const LARGEST_LIST_MAX: usize = 10_000;
/// Drafts searched for an earlier attempt's draft (pages of 100).
const MARKER_SEARCH_MAX: usize = 2_000;
/// Longest title (CloudSign's limit) and message.
const MAX_TITLE_CHARS: usize = 500;
const MAX_MESSAGE_CHARS: usize = 16_000;
/// Keys of `PUT /documents/{id}/attribute`.
const ATTRIBUTE_KEYS: &[&str] = &[
    "title",
    "counterparty",
    "contract_at",
    "validity_start_at",
    "validity_end_at",
    "validity_end_notice_at",
    "auto_update",
    "local_id",
    "amount",
    "options",
];

/// The marker of a call in a draft's note: finds the draft again after a crash.
pub fn marker(idempotency_key: &str) -> String {
    format!("[nagare:{idempotency_key}]")
}

/// Document status names by CloudSign's number.
pub fn status_name(status: u64) -> &'static str {
    match status {
        0 => "draft",
        1 => "in_progress",
        2 => "concluded",
        3 => "declined",
        4 => "template",
        13 => "imported",
        _ => "unknown",
    }
}

fn status_number(name: &str) -> Option<u8> {
    Some(match name {
        "draft" | "0" => 0,
        "in_progress" | "1" => 1,
        "concluded" | "2" => 2,
        "declined" | "3" => 3,
        "template" | "4" => 4,
        "imported" | "13" => 13,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    CreateDraft,
    Upload,
    AddParticipants,
    SetAttributes,
    Send,
    Get,
    List,
    Download,
    Delete,
    ImportBegin,
    Concluded,
    FetchFile,
    ImportCommit,
}

/// One CloudSign operation of one connector instance.
pub struct CloudsignConnector {
    instance: String,
    op: Op,
    settings: Settings<Option<CloudsignConfig>>,
    http: reqwest::Client,
    shared: Arc<Shared>,
    blobs: Arc<dyn BlobSource>,
    /// The import integrations' state (shared by the operations of this instance).
    marks: Arc<import_state::Marks>,
}

/// Register every operation of instance `name`, reading file references through
/// `blobs` (settings `None`: not configured; calls say how to configure it).
pub fn register(
    registry: &mut Registry,
    name: &str,
    settings: Settings<Option<CloudsignConfig>>,
    blobs: Arc<dyn BlobSource>,
) {
    let http = crate::http::client();
    let rate = settings.get().as_ref().as_ref().and_then(|c| c.rate_per_minute).unwrap_or(limiter::MAX_PER_MINUTE);
    let shared = Arc::new(Shared::new(rate));
    let marks = Arc::new(import_state::Marks::new(blobs.state_dir()));
    for (op_name, op) in [
        ("create_draft", Op::CreateDraft),
        ("upload", Op::Upload),
        ("add_participants", Op::AddParticipants),
        ("set_attributes", Op::SetAttributes),
        ("send", Op::Send),
        ("get", Op::Get),
        ("list", Op::List),
        ("download", Op::Download),
        ("delete", Op::Delete),
        ("import_begin", Op::ImportBegin),
        ("concluded", Op::Concluded),
        ("fetch_file", Op::FetchFile),
        ("import_commit", Op::ImportCommit),
    ] {
        registry.register(
            format!("{name}.{op_name}"),
            CloudsignConnector {
                instance: name.to_string(),
                op,
                settings: settings.clone(),
                http: http.clone(),
                shared: shared.clone(),
                blobs: blobs.clone(),
                marks: marks.clone(),
            },
        );
    }
}

fn fatal(msg: impl Into<String>) -> ConnectorError {
    ConnectorError::Fatal(msg.into())
}

fn file_error(e: FileError) -> ConnectorError {
    if e.transient {
        ConnectorError::Retryable(e.to_string())
    } else {
        ConnectorError::Business { code: "invalid_file".into(), message: e.to_string() }
    }
}

fn text_input<'a>(input: &'a Map<String, Value>, key: &str, max: usize) -> Result<Option<&'a str>, ConnectorError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s)),
        Some(Value::String(_)) => Err(fatal(format!("`{key}` is longer than {max} characters"))),
        Some(v) => Err(fatal(format!("`{key}` must be text, got {v}"))),
    }
}

fn document_input(input: &Map<String, Value>) -> Result<String, ConnectorError> {
    let v = input
        .get("document")
        .ok_or_else(|| fatal("`document` is missing: the CloudSign document id (`id` of create_draft's result)"))?;
    let s = v.as_str().ok_or_else(|| fatal(format!("`document` must be a document id, got {v}")))?;
    let id = seg(s);
    if id.is_empty() || id.len() != s.len() || id.len() > 100 {
        return Err(fatal(format!(
            "`document` `{}` is not a CloudSign document id",
            s.chars().take(100).collect::<String>()
        )));
    }
    Ok(id)
}

/// A participant to add: CloudSign's form fields, checked.
fn participants_input(input: &Map<String, Value>) -> Result<Vec<Vec<(String, String)>>, ConnectorError> {
    let Some(v) = input.get("participants") else { return Ok(Vec::new()) };
    let list =
        v.as_array().ok_or_else(|| fatal("`participants` must be a list of {email, name, ...} in send order"))?;
    if list.len() >= MAX_PARTICIPANTS {
        return Err(fatal(format!("`participants`: CloudSign takes at most {} recipients", MAX_PARTICIPANTS - 1)));
    }
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let p =
            p.as_object().ok_or_else(|| fatal(format!("`participants[{i}]` must be a map with `email` and `name`")))?;
        let mut form = Vec::new();
        for key in ["email", "name"] {
            let v = p.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
            form.push((
                key.to_string(),
                v.ok_or_else(|| fatal(format!("`participants[{i}].{key}` is missing")))?.trim().to_string(),
            ));
        }
        for key in ["organization", "language_code", "tel", "recipient_id", "access_code"] {
            if let Some(v) = p.get(key).and_then(Value::as_str) {
                form.push((key.to_string(), v.to_string()));
            }
        }
        out.push(form);
    }
    Ok(out)
}

fn attributes_input(input: &Map<String, Value>) -> Result<Option<Map<String, Value>>, ConnectorError> {
    let Some(v) = input.get("attributes").filter(|v| !v.is_null()) else { return Ok(None) };
    let m = v.as_object().ok_or_else(|| fatal("`attributes` must be a map (title, counterparty, amount, ...)"))?;
    if let Some(k) = m.keys().find(|k| !ATTRIBUTE_KEYS.contains(&k.as_str())) {
        return Err(fatal(format!(
            "`attributes.{k}` is not a CloudSign attribute; known: {}",
            ATTRIBUTE_KEYS.join(", ")
        )));
    }
    Ok(Some(m.clone()))
}

/// The document as a result: what a process needs, in plain shape.
pub fn summary(doc: &Value) -> Value {
    let status = doc.get("status").and_then(Value::as_u64).unwrap_or(0);
    let participants: Vec<Value> = doc
        .get("participants")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| json!({ "id": p["id"], "email": p["email"], "name": p["name"], "order": p["order"], "status": p["status"] }))
                .collect()
        })
        .unwrap_or_default();
    let files: Vec<Value> = doc
        .get("files")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|f| json!({ "id": f["id"], "name": f["name"], "order": f["order"] })).collect())
        .unwrap_or_default();
    json!({
        "id": doc["id"],
        "title": doc["title"],
        "status": status,
        "status_name": status_name(status),
        "participants": participants,
        "files": files,
        "sent_at": doc.get("sent_at").cloned().unwrap_or(Value::Null),
        "updated_at": doc.get("updated_at").cloned().unwrap_or(Value::Null),
    })
}

fn with(mut v: Value, key: &str, x: Value) -> Value {
    v[key] = x;
    v
}

impl CloudsignConnector {
    /// The client of the call's user: `user`'s client id, or the instance's.
    fn client(&self, input: &Map<String, Value>) -> Result<Client, ConnectorError> {
        let cfg = self.settings.get();
        let cfg = cfg.as_ref().as_ref().ok_or_else(|| {
            fatal(format!(
                "the CloudSign connector `{0}` is not configured: add `connectors: {0}: {{type: cloudsign, base_url, users}}` to the config file (see README, CloudSign)",
                self.instance
            ))
        })?;
        let user = match input.get("user") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) if !u.trim().is_empty() => Some(u.trim()),
            Some(v) => return Err(fatal(format!("`user` must be a user id, got {v}"))),
        };
        let no_credential = |why: String| ConnectorError::Business { code: "no_credential".into(), message: why };
        let (secret, what) = match user.and_then(|u| cfg.users.get(u).map(|s| (s, u))) {
            Some((s, u)) => (s, format!("connectors.{}.users.{u}", self.instance)),
            None => match &cfg.client_id {
                Some(s) => (s, format!("connectors.{}.client_id", self.instance)),
                None => {
                    return Err(no_credential(match user {
                        Some(u) => format!(
                            "user `{u}` has no CloudSign client id: add it to the config as `connectors.{}.users.{u}: {{ env: ... }}`",
                            self.instance
                        ),
                        None => format!(
                            "no `user` given and `connectors.{}` has no `client_id`: pass the sending user as `user:` in the step",
                            self.instance
                        ),
                    }))
                }
            },
        };
        let client_id = secret.reveal(&what).map_err(|e| no_credential(e.to_string()))?;
        let base = reqwest::Url::parse(&cfg.base_url)
            .map_err(|e| fatal(format!("connectors.{}.base_url: {e}", self.instance)))?;
        let timeout = cfg.timeout.unwrap_or(Duration::from_secs(30));
        Ok(Client::new(base, client_id, timeout, self.http.clone(), self.shared.clone()))
    }

    /// Read and check the files before any request: reading a blob is file IO.
    /// `indexed`: a list field (`files[0]`), otherwise one file (`file`).
    async fn files(&self, field: &str, values: Vec<Value>, indexed: bool) -> Result<Vec<PdfFile>, ConnectorError> {
        if values.len() > MAX_FILES {
            return Err(fatal(format!("`{field}`: CloudSign takes at most {MAX_FILES} files per document")));
        }
        let blobs = self.blobs.clone();
        let field = field.to_string();
        tokio::task::spawn_blocking(move || {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let name = if indexed { format!("{field}[{i}]") } else { field.clone() };
                    files::resolve(&name, v, blobs.as_ref()).map_err(file_error)
                })
                .collect()
        })
        .await
        .map_err(|e| ConnectorError::Retryable(format!("reading the files failed: {e}")))?
    }

    async fn upload(client: &Client, doc: &str, f: &PdfFile) -> Result<Value, CsError> {
        let parts = vec![
            Part { name: "name".into(), filename: None, content_type: None, data: f.name.clone().into_bytes() },
            Part {
                name: "uploadfile".into(),
                filename: Some(f.name.clone()),
                content_type: Some("application/pdf".into()),
                data: f.bytes.clone(),
            },
        ];
        client.json(Method::POST, &format!("documents/{doc}/files"), &[], &Body::Multipart(parts)).await
    }

    /// Add the participants the document does not have yet (by email), in order.
    async fn add_participants(
        client: &Client,
        doc: &str,
        mut current: Value,
        list: Vec<Vec<(String, String)>>,
    ) -> Result<Value, CsError> {
        for form in list {
            let email = &form[0].1;
            let present = current["participants"]
                .as_array()
                .is_some_and(|a| a.iter().skip(1).any(|p| p["email"].as_str() == Some(email.as_str())));
            if !present {
                current =
                    client.json(Method::POST, &format!("documents/{doc}/participants"), &[], &Body::Form(form)).await?;
            }
        }
        Ok(current)
    }

    /// A draft an earlier attempt of this call created, found by its marker.
    async fn find_draft(client: &Client, mark: &str) -> Result<Option<Value>, CsError> {
        let (drafts, _) = client.list(Some(0), MARKER_SEARCH_MAX, true).await?;
        Ok(drafts.into_iter().find(|d| d["note"].as_str().is_some_and(|n| n.contains(mark))))
    }

    async fn run(&self, call: &Call) -> Result<Value, ConnectorError> {
        let input = call.input.as_object().cloned().unwrap_or_default();
        tracing::debug!(connector = %call.connector, "cloudsign call");
        match self.op {
            Op::CreateDraft => {
                let title = text_input(&input, "title", MAX_TITLE_CHARS)?
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| fatal("`title` is missing: the document's title (at most 500 characters)"))?;
                let note = text_input(&input, "note", MAX_MESSAGE_CHARS)?.unwrap_or("");
                let message = text_input(&input, "message", MAX_MESSAGE_CHARS)?;
                let files_in = match input.get("files") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a.clone(),
                    Some(_) => return Err(fatal("`files` must be a list of files")),
                };
                let files = self.files("files", files_in, true).await?;
                let participants = participants_input(&input)?;
                let attributes = attributes_input(&input)?;
                let client = self.client(&input)?;
                let mark = marker(&call.idempotency_key);
                let (mut doc, created) = match Self::find_draft(&client, &mark).await? {
                    Some(d) => {
                        tracing::info!(connector = %call.connector, document = ?d["id"], "draft already created by an earlier attempt");
                        let id = seg(d["id"].as_str().unwrap_or_default());
                        (client.document(&id).await?, false)
                    }
                    None => {
                        let note = if note.is_empty() { mark.clone() } else { format!("{note}\n{mark}") };
                        let mut form = vec![("title".to_string(), title.to_string()), ("note".to_string(), note)];
                        if let Some(m) = message {
                            form.push(("message".into(), m.to_string()));
                        }
                        (client.json(Method::POST, "documents", &[], &Body::Form(form)).await?, true)
                    }
                };
                let id = seg(doc["id"].as_str().unwrap_or_default());
                if id.is_empty() {
                    return Err(ConnectorError::Retryable("CloudSign answered POST /documents without an id".into()));
                }
                for f in &files {
                    let present = doc["files"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["name"].as_str() == Some(f.name.as_str())));
                    if !present {
                        doc = Self::upload(&client, &id, f).await?;
                    }
                }
                doc = Self::add_participants(&client, &id, doc, participants).await?;
                if let Some(a) = attributes {
                    client
                        .json(Method::PUT, &format!("documents/{id}/attribute"), &[], &Body::Json(Value::Object(a)))
                        .await?;
                }
                Ok(with(summary(&doc), "created", json!(created)))
            }
            Op::Upload => {
                let doc = document_input(&input)?;
                let f = input.get("file").cloned().ok_or_else(|| fatal("`file` is missing"))?;
                let mut checked = self.files("file", vec![f], false).await?;
                let f = checked.pop().expect("one file in, one out");
                let client = self.client(&input)?;
                let before = client.document(&doc).await?;
                if let Some(existing) = before["files"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["name"].as_str() == Some(f.name.as_str())))
                {
                    let fid = existing["id"].clone();
                    return Ok(with(summary(&before), "file_id", fid));
                }
                let after = Self::upload(&client, &doc, &f).await?;
                let fid = after["files"]
                    .as_array()
                    .and_then(|a| a.iter().rev().find(|x| x["name"].as_str() == Some(f.name.as_str())))
                    .map(|x| x["id"].clone())
                    .unwrap_or(Value::Null);
                Ok(with(summary(&after), "file_id", fid))
            }
            Op::AddParticipants => {
                let doc = document_input(&input)?;
                let list = participants_input(&input)?;
                if list.is_empty() {
                    return Err(fatal("`participants` is missing or empty"));
                }
                let client = self.client(&input)?;
                let current = client.document(&doc).await?;
                Ok(summary(&Self::add_participants(&client, &doc, current, list).await?))
            }
            Op::SetAttributes => {
                let doc = document_input(&input)?;
                let a = attributes_input(&input)?.ok_or_else(|| fatal("`attributes` is missing"))?;
                let client = self.client(&input)?;
                let v = client
                    .json(Method::PUT, &format!("documents/{doc}/attribute"), &[], &Body::Json(Value::Object(a)))
                    .await?;
                Ok(json!({ "document": doc, "attributes": v }))
            }
            Op::Send => {
                let doc = document_input(&input)?;
                let client = self.client(&input)?;
                let current = client.document(&doc).await?;
                if current["status"].as_u64() != Some(0) {
                    // Sent by an earlier attempt (or by hand): POST again would remind the signer.
                    return Ok(with(summary(&current), "sent", json!(false)));
                }
                let after = client.json(Method::POST, &format!("documents/{doc}"), &[], &Body::None).await?;
                Ok(with(summary(&after), "sent", json!(true)))
            }
            Op::Get => {
                let doc = document_input(&input)?;
                Ok(summary(&self.client(&input)?.document(&doc).await?))
            }
            Op::List => {
                let status = match input.get("status") {
                    None | Some(Value::Null) => None,
                    Some(v) => {
                        let s = match v {
                            Value::Number(n) => n.to_string(),
                            Value::String(s) => s.clone(),
                            _ => String::new(),
                        };
                        Some(status_number(&s).ok_or_else(|| {
                            fatal(format!(
                                "`status` {v} is not one of draft, in_progress, concluded, declined (or 0-3)"
                            ))
                        })?)
                    }
                };
                let max = match input.get("max") {
                    None => DEFAULT_LIST_MAX,
                    Some(v) => v
                        .as_u64()
                        .map(|n| n as usize)
                        .filter(|n| (1..=LARGEST_LIST_MAX).contains(n))
                        .ok_or_else(|| fatal(format!("`max` must be 1 to {LARGEST_LIST_MAX}")))?,
                };
                let (docs, total) = self.client(&input)?.list(status, max, false).await?;
                let docs: Vec<Value> = docs.iter().map(summary).collect();
                Ok(json!({ "count": docs.len(), "total": total, "documents": docs }))
            }
            Op::Download => {
                use base64::Engine as _;
                let doc = document_input(&input)?;
                let client = self.client(&input)?;
                let d = client.document(&doc).await?;
                let files = d["files"].as_array().cloned().unwrap_or_default();
                let file = match input.get("file").and_then(Value::as_str) {
                    Some(fid) => files.iter().find(|f| f["id"].as_str() == Some(fid)),
                    None => files.first(),
                }
                .ok_or_else(|| ConnectorError::Business {
                    code: "not_found".into(),
                    message: format!("document {doc} has no such file"),
                })?;
                let fid = seg(file["id"].as_str().unwrap_or_default());
                let bytes = client.raw(Method::GET, &format!("documents/{doc}/files/{fid}"), &[], &Body::None).await?;
                if bytes.len() as u64 > files::MAX_FILE_BYTES * 2 {
                    return Err(fatal(format!("the file is {} bytes, more than a result may hold", bytes.len())));
                }
                Ok(json!({
                    "id": fid,
                    "name": file["name"],
                    "content_type": "application/pdf",
                    "size": bytes.len(),
                    "sha256": files::sha256_hex(&bytes),
                    "content_base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
                }))
            }
            Op::ImportBegin => import::begin(&self.client(&input)?, &self.marks, call),
            Op::Concluded => import::concluded(&self.client(&input)?, &input).await,
            Op::FetchFile => import::fetch_file(&self.client(&input)?, self.blobs.as_ref(), &input).await,
            Op::ImportCommit => import::commit(&self.client(&input)?, &self.marks, call, &input),
            Op::Delete => {
                let doc = document_input(&input)?;
                let client = self.client(&input)?;
                match client.raw(Method::DELETE, &format!("documents/{doc}"), &[], &Body::None).await {
                    Ok(_) => Ok(json!({ "document": doc, "deleted": true })),
                    // Gone already (an earlier attempt, or deleted by hand): the goal is met.
                    Err(e) if e.status() == Some(404) => Ok(json!({ "document": doc, "deleted": false })),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

impl Connector for CloudsignConnector {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin(self.run(call))
    }
}
