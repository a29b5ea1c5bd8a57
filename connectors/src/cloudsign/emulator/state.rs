//! The emulator's data: client ids and their users, access tokens, documents with
//! participants, files and attributes, and the rules CloudSign applies to them.
//! Pure data and logic (time is passed in); HTTP is in `http.rs`, persistence and
//! the webhook in `mod.rs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Most participants on a document, the sender included (CloudSign's limit).
pub const MAX_PARTICIPANTS: usize = 128;
/// Most files on a document.
pub const MAX_FILES: usize = 100;
/// Documents per page of `GET /documents`.
pub const PAGE: usize = 100;

/// An answer CloudSign would give: status, `error` kind, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }
    pub fn not_found() -> Self {
        Self::new(404, "not_found", "指定されたリソースが見つかりません。")
    }
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(403, "not_acceptable", message)
    }
}

/// The CloudSign user behind a client id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub user_id: String,
    pub email: String,
    pub name: String,
    /// Without the Web API option every API call answers 403 `webapi_option_required`.
    #[serde(default = "yes")]
    pub web_api: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub client_id: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub id: String,
    pub email: String,
    pub name: String,
    pub organization: String,
    pub order: u32,
    /// CloudSign's participant status: 2 draft, 6 sent, 8 signed, 9 declined.
    pub status: u32,
    pub language_code: String,
    #[serde(default)]
    pub processed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    pub id: String,
    pub name: String,
    pub order: u32,
    pub size: u64,
    /// Where the content is kept ([`super::Emulator`]'s file store).
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub note: String,
    pub message: String,
    /// 0 draft, 1 in progress, 2 concluded, 3 declined.
    pub status: u32,
    pub can_transfer: bool,
    pub private: bool,
    pub sent_at: Option<String>,
    pub last_processed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub participants: Vec<Participant>,
    pub files: Vec<StoredFile>,
    pub attribute: Map<String, Value>,
    #[serde(default)]
    pub decline_comment: Option<String>,
}

impl Document {
    /// The documentModel CloudSign answers with.
    pub fn model(&self) -> Value {
        json!({
            "id": self.id, "user_id": self.user_id, "title": self.title, "note": self.note,
            "message": self.message, "status": self.status, "can_transfer": self.can_transfer,
            "private": self.private, "sent_at": self.sent_at, "last_processed_at": self.last_processed_at,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "participants": self.participants.iter().map(|p| json!({
                "id": p.id, "email": p.email, "name": p.name, "organization": p.organization,
                "order": p.order, "status": p.status, "language_code": p.language_code,
                "processed_at": p.processed_at,
            })).collect::<Vec<_>>(),
            "files": self.files.iter().map(|f| json!({
                "id": f.id, "name": f.name, "order": f.order, "total_pages": 1, "widgets": [],
            })).collect::<Vec<_>>(),
            "reportees": [],
            "decline_comment": self.decline_comment,
        })
    }
}

/// `from`/`to` of `GET /documents`: the last-processed time range.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessedRange {
    pub from: Option<DateTime<chrono::FixedOffset>>,
    pub to: Option<DateTime<chrono::FixedOffset>>,
}

/// A document put straight into a state (emulator only: tests, demos, benches).
#[derive(Debug, Clone)]
pub struct SeedDocument {
    pub title: String,
    /// 0 draft, 1 in progress, 2 concluded, 3 declined.
    pub status: u32,
    /// `(name, sha256, size)` of each file, already stored.
    pub files: Vec<(String, String, u64)>,
    pub attribute: Map<String, Value>,
    /// When it was last processed (concluded, declined); `None` for a draft.
    pub processed_at: Option<DateTime<Utc>>,
}

/// A status change the webhook reports: `(document, status, account)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub document: String,
    pub status: u32,
    pub title: String,
    pub user_id: String,
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Client id → the account it acts for.
    pub clients: BTreeMap<String, Account>,
    pub tokens: BTreeMap<String, IssuedToken>,
    pub documents: BTreeMap<String, Document>,
    /// Counter behind ids.
    pub next_id: u64,
    /// Lifetime of an access token, in seconds (CloudSign: 3600).
    pub token_ttl_secs: u64,
    /// Where status changes are posted.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// The seeded client ids: one per demo user of `config/users.yaml`, and one whose
/// account lacks the Web API option (its calls answer 403).
pub const DEMO_CLIENTS: &[(&str, &str, &str, &str)] = &[
    ("demo-client-sato", "sato", "sato@example.com", "佐藤"),
    ("demo-client-tanaka", "tanaka", "tanaka@example.com", "田中"),
    ("demo-client-kato", "kato", "kato@example.com", "加藤"),
    ("demo-client-no-option", "nooption", "nooption@example.com", "オプションなし"),
];

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl State {
    pub fn seed() -> State {
        let clients = DEMO_CLIENTS
            .iter()
            .map(|(cid, uid, email, name)| {
                let web_api = *uid != "nooption";
                (
                    cid.to_string(),
                    Account { user_id: uid.to_string(), email: email.to_string(), name: name.to_string(), web_api },
                )
            })
            .collect();
        State {
            clients,
            tokens: BTreeMap::new(),
            documents: BTreeMap::new(),
            next_id: 1,
            token_ttl_secs: 3600,
            webhook_url: None,
        }
    }

    /// A fresh id in CloudSign's UUID shape.
    pub fn new_id(&mut self, salt: u64) -> String {
        let n = self.next_id;
        self.next_id += 1;
        let x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (x >> 32) as u32,
            (x >> 16) as u16,
            n & 0xfff,
            (x >> 4) & 0xfff,
            n
        )
    }

    /// `POST /token`: the valid token of this client again, or a new one.
    pub fn issue_token(
        &mut self,
        client_id: &str,
        fresh: String,
        now: DateTime<Utc>,
    ) -> Result<(String, i64), ApiError> {
        if client_id.is_empty() {
            return Err(ApiError::new(400, "invalid_request", "client_id は必須です。"));
        }
        if !self.clients.contains_key(client_id) {
            return Err(ApiError::new(400, "invalid_client", "client_id が正しくありません。"));
        }
        self.tokens.retain(|_, t| t.expires_at > now);
        if let Some((tok, t)) = self.tokens.iter().find(|(_, t)| t.client_id == client_id) {
            return Ok((tok.clone(), (t.expires_at - now).num_seconds()));
        }
        let ttl = self.token_ttl_secs as i64;
        self.tokens.insert(
            fresh.clone(),
            IssuedToken { client_id: client_id.into(), expires_at: now + chrono::Duration::seconds(ttl) },
        );
        Ok((fresh, ttl))
    }

    /// The account of a valid token.
    pub fn account(&self, token: &str, now: DateTime<Utc>) -> Result<Account, ApiError> {
        let unauthorized = || ApiError::new(401, "unauthorized", "アクセストークンが無効です。");
        let t = self.tokens.get(token).filter(|t| t.expires_at > now).ok_or_else(unauthorized)?;
        let a = self.clients.get(&t.client_id).ok_or_else(unauthorized)?;
        if !a.web_api {
            return Err(ApiError::new(403, "webapi_option_required", "Web API オプションのご契約が必要です。"));
        }
        Ok(a.clone())
    }

    /// A document of the caller: 404 when there is none, 403 `forbidden` when it is
    /// someone else's (as CloudSign answers).
    pub fn document(&self, a: &Account, id: &str) -> Result<&Document, ApiError> {
        let d = self.documents.get(id).ok_or_else(ApiError::not_found)?;
        if d.user_id != a.user_id {
            return Err(forbidden());
        }
        Ok(d)
    }

    fn document_mut(&mut self, a: &Account, id: &str) -> Result<&mut Document, ApiError> {
        let d = self.documents.get_mut(id).ok_or_else(ApiError::not_found)?;
        if d.user_id != a.user_id {
            return Err(forbidden());
        }
        Ok(d)
    }

    fn draft_mut(&mut self, a: &Account, id: &str) -> Result<&mut Document, ApiError> {
        let d = self.document_mut(a, id)?;
        if d.status != 0 {
            return Err(ApiError::not_acceptable("下書き以外の書類は変更できません。"));
        }
        Ok(d)
    }

    /// `POST /documents`.
    pub fn create(&mut self, a: &Account, form: &Map<String, Value>, now: DateTime<Utc>) -> Result<Value, ApiError> {
        let s = |k: &str| form.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let title = s("title");
        if title.chars().count() > 500 {
            return Err(ApiError::bad_request("title は500文字以内で入力してください。"));
        }
        if s("message").chars().count() > 16_000 {
            return Err(ApiError::bad_request("message は16000文字以内で入力してください。"));
        }
        let id = self.new_id(0xC10D);
        let sender_id = self.new_id(0x5E4D);
        let d = Document {
            id: id.clone(),
            user_id: a.user_id.clone(),
            title,
            note: s("note"),
            message: s("message"),
            status: 0,
            can_transfer: truthy(form.get("can_transfer")),
            private: truthy(form.get("private")),
            sent_at: None,
            last_processed_at: None,
            created_at: stamp(now),
            updated_at: stamp(now),
            participants: vec![Participant {
                id: sender_id,
                email: a.email.clone(),
                name: a.name.clone(),
                organization: String::new(),
                order: 0,
                status: 2,
                language_code: "ja".into(),
                processed_at: None,
            }],
            files: Vec::new(),
            attribute: Map::new(),
            decline_comment: None,
        };
        let model = d.model();
        self.documents.insert(id, d);
        Ok(model)
    }

    /// `GET /documents`: newest first, 100 a page; `from`/`to` keep documents last
    /// processed within the range (both ends included; a document never processed
    /// has no such time and is left out).
    pub fn list(&self, a: &Account, status: Option<u32>, page: usize, range: ProcessedRange) -> Value {
        let in_range = |d: &Document| {
            if range.from.is_none() && range.to.is_none() {
                return true;
            }
            let Some(t) = d.last_processed_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
                return false;
            };
            range.from.is_none_or(|f| t >= f) && range.to.is_none_or(|x| t <= x)
        };
        let mut docs: Vec<&Document> = self
            .documents
            .values()
            .filter(|d| d.user_id == a.user_id && status.is_none_or(|s| d.status == s) && in_range(d))
            .collect();
        docs.sort_by(|x, y| y.created_at.cmp(&x.created_at).then(y.id.cmp(&x.id)));
        let total = docs.len();
        let start = page.saturating_sub(1).saturating_mul(PAGE);
        let page_docs: Vec<Value> = docs.iter().skip(start).take(PAGE).map(|d| d.model()).collect();
        json!({ "total": total, "page": page.max(1), "documents": page_docs })
    }

    /// Put a document of the account of `client_id` in place, as if it had been
    /// created, sent and answered (emulator only).
    pub fn seed_document(&mut self, client_id: &str, d: SeedDocument, now: DateTime<Utc>) -> Result<String, ApiError> {
        let a = self
            .clients
            .get(client_id)
            .cloned()
            .ok_or_else(|| ApiError::new(400, "invalid_client", "client_id が正しくありません。"))?;
        let id = self.new_id(0x5EED);
        let sender = self.new_id(0x5E4D);
        let signer = self.new_id(0xFA47);
        let processed = d.processed_at.map(stamp);
        let mut files = Vec::new();
        for (i, (name, sha, size)) in d.files.into_iter().enumerate() {
            files.push(StoredFile { id: self.new_id(0xF11E), name, order: i as u32 + 1, size, sha256: sha });
        }
        let signer_status = match d.status {
            2 => 8,
            3 => 9,
            1 => 6,
            _ => 2,
        };
        let doc = Document {
            id: id.clone(),
            user_id: a.user_id.clone(),
            title: d.title,
            note: String::new(),
            message: String::new(),
            status: d.status,
            can_transfer: false,
            private: false,
            sent_at: if d.status == 0 { None } else { processed.clone() },
            last_processed_at: processed.clone(),
            created_at: stamp(now),
            updated_at: processed.clone().unwrap_or_else(|| stamp(now)),
            participants: vec![
                Participant {
                    id: sender,
                    email: a.email.clone(),
                    name: a.name.clone(),
                    organization: String::new(),
                    order: 0,
                    status: if d.status == 0 { 2 } else { 6 },
                    language_code: "ja".into(),
                    processed_at: None,
                },
                Participant {
                    id: signer,
                    email: "signer@example.com".into(),
                    name: "先方 担当者".into(),
                    organization: "取引先".into(),
                    order: 1,
                    status: signer_status,
                    language_code: "ja".into(),
                    processed_at: processed,
                },
            ],
            files,
            attribute: d.attribute,
            decline_comment: None,
        };
        self.documents.insert(id.clone(), doc);
        Ok(id)
    }

    /// `POST /documents/{id}/participants`.
    pub fn add_participant(
        &mut self,
        a: &Account,
        id: &str,
        form: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let s = |k: &str| form.get(k).and_then(Value::as_str).unwrap_or("").trim().to_string();
        let (email, name) = (s("email"), s("name"));
        if name.is_empty() {
            return Err(ApiError::bad_request("name は必須です。"));
        }
        if name.chars().count() > 64 || s("organization").chars().count() > 64 {
            return Err(ApiError::bad_request("name と organization は64文字以内で入力してください。"));
        }
        if !email.contains('@') {
            return Err(ApiError::bad_request("email の形式が正しくありません。"));
        }
        let lang = Some(s("language_code")).filter(|l| !l.is_empty()).unwrap_or_else(|| "ja".into());
        if !["ja", "en", "zh-CHS", "zh-CHT"].contains(&lang.as_str()) {
            return Err(ApiError::bad_request("language_code が正しくありません。"));
        }
        let pid = self.new_id(0xFA47);
        let d = self.draft_mut(a, id)?;
        if d.participants.len() >= MAX_PARTICIPANTS {
            return Err(ApiError::new(409, "conflict", "宛先の上限に達しています。"));
        }
        let order = d.participants.len() as u32;
        d.participants.push(Participant {
            id: pid,
            email,
            name,
            organization: s("organization"),
            order,
            status: 2,
            language_code: lang,
            processed_at: None,
        });
        d.updated_at = stamp(now);
        Ok(d.model())
    }

    /// `POST /documents/{id}/files`, after the HTTP layer checked the content.
    pub fn add_file(
        &mut self,
        a: &Account,
        id: &str,
        name: &str,
        sha256: &str,
        size: u64,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let fid = self.new_id(0xF11E);
        let d = self.draft_mut(a, id)?;
        if d.files.len() >= MAX_FILES {
            return Err(ApiError::new(409, "conflict", "ファイル数の上限に達しています。"));
        }
        let order = d.files.len() as u32 + 1;
        d.files.push(StoredFile { id: fid, name: name.into(), order, size, sha256: sha256.into() });
        d.updated_at = stamp(now);
        Ok(d.model())
    }

    /// `PUT /documents/{id}/attribute`: the given keys replaced, others kept.
    pub fn set_attribute(
        &mut self,
        a: &Account,
        id: &str,
        body: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        const KEYS: &[&str] = &[
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
        if let Some(k) = body.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!("{k} は指定できません。")));
        }
        if let Some(v) = body.get("amount").filter(|v| !v.is_null() && !v.is_i64()) {
            return Err(ApiError::bad_request(format!("amount は整数で指定してください: {v}")));
        }
        let d = self.document_mut(a, id)?;
        for (k, v) in body {
            d.attribute.insert(k.clone(), v.clone());
        }
        d.updated_at = stamp(now);
        Ok(Value::Object(d.attribute.clone()))
    }

    /// `POST /documents/{id}`: send a draft (or remind, when in progress).
    pub fn send(&mut self, a: &Account, id: &str, now: DateTime<Utc>) -> Result<(Value, Option<Change>), ApiError> {
        let d = self.document_mut(a, id)?;
        match d.status {
            0 => {
                if d.participants.len() < 2 {
                    return Err(ApiError::bad_request("宛先を1人以上追加してください。"));
                }
                if d.files.is_empty() {
                    return Err(ApiError::bad_request("ファイルを1つ以上追加してください。"));
                }
                d.status = 1;
                d.sent_at = Some(stamp(now));
                d.updated_at = stamp(now);
                d.participants[0].status = 6;
                d.participants[1].status = 6;
                for p in d.participants.iter_mut().skip(2) {
                    p.status = 3;
                }
                let change = change(d, a);
                Ok((d.model(), Some(change)))
            }
            1 => Ok((d.model(), None)),
            _ => Err(ApiError::not_acceptable("この書類は送信できません。")),
        }
    }

    /// `DELETE /documents/{id}`: drafts only.
    pub fn delete(&mut self, a: &Account, id: &str) -> Result<Vec<String>, ApiError> {
        if self.document(a, id)?.status != 0 {
            return Err(ApiError::bad_request("下書きの書類のみ削除できます。"));
        }
        let d = self.documents.remove(id).expect("found above");
        Ok(d.files.into_iter().map(|f| f.sha256).collect())
    }

    /// The signer's answer (emulator only): the next participant in order agrees or
    /// declines. The last agreement concludes the document.
    pub fn answer(
        &mut self,
        id: &str,
        agree: bool,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<(Value, Option<Change>), ApiError> {
        let d = self.documents.get_mut(id).ok_or_else(ApiError::not_found)?;
        if d.status != 1 {
            return Err(ApiError::not_acceptable("先方確認中の書類ではありません。"));
        }
        let i = d
            .participants
            .iter()
            .skip(1)
            .position(|p| p.status != 8)
            .map(|i| i + 1)
            .expect("an in-progress document has someone to sign");
        d.participants[i].processed_at = Some(stamp(now));
        d.updated_at = stamp(now);
        d.last_processed_at = Some(stamp(now));
        let owner = Account {
            user_id: d.user_id.clone(),
            email: d.participants[0].email.clone(),
            name: d.participants[0].name.clone(),
            web_api: true,
        };
        if agree {
            d.participants[i].status = 8;
            if let Some(next) = d.participants.get_mut(i + 1) {
                next.status = 6;
                return Ok((d.model(), None));
            }
            d.status = 2;
        } else {
            d.participants[i].status = 9;
            d.status = 3;
            d.decline_comment = Some(comment.chars().take(1000).collect());
        }
        let c = change(d, &owner);
        Ok((d.model(), Some(c)))
    }
}

fn change(d: &Document, a: &Account) -> Change {
    Change {
        document: d.id.clone(),
        status: d.status,
        title: d.title.clone(),
        user_id: a.user_id.clone(),
        email: a.email.clone(),
        name: a.name.clone(),
    }
}

/// CloudSign's form booleans: true, 1, t, T, TRUE, True (anything else is false).
fn truthy(v: Option<&Value>) -> bool {
    matches!(v.and_then(Value::as_str), Some("true" | "1" | "t" | "T" | "TRUE" | "True"))
}

fn forbidden() -> ApiError {
    ApiError::new(403, "forbidden", "書類にアクセスする権限がありません。")
}
