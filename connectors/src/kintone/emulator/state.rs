//! The emulator's data: apps, their fields, API tokens and records, and the rules
//! kintone applies when reading and writing them. Pure data and logic; the HTTP
//! layer is in `http.rs`, persistence in `mod.rs`.

use crate::kintone::query::{self, Cond};
use crate::kintone::query_fn::Context;
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// An error kintone would answer with: HTTP status, code, message, `errors`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub errors: Option<Value>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), errors: None }
    }

    /// `CB_VA01` with `errors: {key: {messages: [...]}}`.
    pub fn invalid(errors: Vec<(String, String)>) -> Self {
        let mut map = Map::new();
        for (k, m) in errors {
            let entry = map.entry(k).or_insert_with(|| json!({ "messages": [] }));
            entry["messages"].as_array_mut().expect("messages is a list").push(Value::String(m));
        }
        ApiError {
            status: 400,
            code: "CB_VA01",
            message: "入力内容が正しくありません。".into(),
            errors: Some(Value::Object(map)),
        }
    }

    pub fn required(param: &str) -> Self {
        Self::invalid(vec![(param.to_string(), "必須です。".to_string())])
    }
}

impl From<query::QueryError> for ApiError {
    fn from(e: query::QueryError) -> Self {
        match e.code {
            "CB_VA01" => {
                ApiError::invalid(vec![("query".into(), format!("クエリ記法が間違っています。({})", e.message))])
            }
            "GAIA_QU01" | "GAIA_QU02" => ApiError::new(400, e.code, e.message),
            _ => ApiError::new(400, e.code, e.message),
        }
    }
}

/// A field definition (the subset of `app/form/fields.json` the emulator needs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDef {
    #[serde(rename = "type")]
    pub ty: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub unique: bool,
    /// The value a new record gets when it does not give one. A RADIO_BUTTON
    /// always has one in kintone (its first option when not set).
    #[serde(default, rename = "defaultValue", skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Value>,
}

impl FieldDef {
    /// The default a new record takes for this field, if any.
    pub fn effective_default(&self) -> Option<Value> {
        match (&self.default_value, self.ty.as_str(), &self.options) {
            (Some(v), _, _) => Some(v.clone()),
            (None, "RADIO_BUTTON", Some(o)) => o.first().map(|f| Value::String(f.clone())),
            _ => None,
        }
    }
}

/// Rights of an API token on its app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    pub token: String,
    #[serde(default)]
    pub view: bool,
    #[serde(default)]
    pub add: bool,
    #[serde(default)]
    pub edit: bool,
}

/// Process management (ステータス): states in order and the actions between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessManagement {
    pub states: Vec<String>,
    pub actions: Vec<Action>,
    /// States whose assignee is "pick one user" (作業者から1人を選択): an action
    /// into them needs an `assignee`, one of the users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pick_one: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// A status action on a record, with the assignee it picks (if the next status
/// picks one).
#[derive(Debug, Clone, Copy)]
pub struct StatusChange<'a> {
    pub action: &'a str,
    pub assignee: Option<&'a str>,
}

/// A stored record: user field values (kintone value shapes) plus system data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub id: u64,
    pub revision: u64,
    pub values: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The status's assignee (作業者), when the status picks one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: String,
    pub updated_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub id: u64,
    pub name: String,
    pub fields: IndexMap<String, FieldDef>,
    pub tokens: Vec<ApiToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessManagement>,
    pub records: BTreeMap<u64, StoredRecord>,
    pub next_id: u64,
    /// The guest space the app lives in: it answers only under `/k/guest/{space}/v1/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_space: Option<u64>,
}

/// Everything the emulator stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Format of this file, for future changes.
    pub format: u32,
    pub apps: BTreeMap<u64, App>,
    /// Users for password authentication: login → password.
    pub users: BTreeMap<String, String>,
    /// The domain's Basic authentication (login, password), when it has one: every
    /// request must also send `Authorization: Basic ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<(String, String)>,
    /// Uploaded and attached files by fileKey ([`super::bulk`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, super::bulk::StoredFile>,
}

/// Who is asking, after authentication.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// A user (password auth): may do everything.
    User(String),
    /// API tokens (one header may carry several, comma-separated).
    Tokens(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    View,
    Add,
    Edit,
}

/// The record-number field code of every app.
pub const RECORD_NUMBER: &str = "レコード番号";

fn now_text(now: DateTime<Utc>) -> String {
    // kintone keeps datetimes to the minute.
    now.format("%Y-%m-%dT%H:%M:00Z").to_string()
}

impl App {
    fn record(&self, id: u64) -> Result<&StoredRecord, ApiError> {
        self.records
            .get(&id)
            .ok_or_else(|| ApiError::new(404, "GAIA_RE01", format!("指定したレコード（id: {id}）が見つかりません。")))
    }

    /// A record as kintone returns it: every field `{type, value}` plus system fields.
    pub fn render(&self, r: &StoredRecord, only: &[String]) -> Map<String, Value> {
        let mut out = Map::new();
        let want = |code: &str| only.is_empty() || only.iter().any(|f| f == code);
        for (code, def) in &self.fields {
            if !want(code) {
                continue;
            }
            let value = r.values.get(code).cloned().unwrap_or_else(|| empty_value(&def.ty));
            out.insert(code.clone(), json!({ "type": def.ty, "value": value }));
        }
        let sys = [
            (RECORD_NUMBER, "RECORD_NUMBER", json!(r.id.to_string())),
            ("$id", "__ID__", json!(r.id.to_string())),
            ("$revision", "__REVISION__", json!(r.revision.to_string())),
            ("作成日時", "CREATED_TIME", json!(r.created_at)),
            ("更新日時", "UPDATED_TIME", json!(r.updated_at)),
            ("作成者", "CREATOR", json!({ "code": r.created_by, "name": r.created_by })),
            ("更新者", "MODIFIER", json!({ "code": r.updated_by, "name": r.updated_by })),
        ];
        for (code, ty, value) in sys {
            if want(code) || code == "$id" || code == "$revision" {
                out.insert(code.into(), json!({ "type": ty, "value": value }));
            }
        }
        if let Some(s) = &r.status {
            if want("ステータス") {
                out.insert("ステータス".into(), json!({ "type": "STATUS", "value": s }));
            }
            if want("作業者") {
                let who: Vec<Value> = r.assignee.iter().map(|a| json!({ "code": a, "name": a })).collect();
                out.insert("作業者".into(), json!({ "type": "STATUS_ASSIGNEE", "value": who }));
            }
        }
        out
    }

    /// The type of a field as the query language sees it (system fields included).
    pub fn type_of(&self, code: &str) -> Option<String> {
        if let Some(f) = self.fields.get(code) {
            return Some(f.ty.clone());
        }
        Some(
            match code {
                "$id" => "__ID__",
                "$revision" => "__REVISION__",
                RECORD_NUMBER => "RECORD_NUMBER",
                "作成日時" => "CREATED_TIME",
                "更新日時" => "UPDATED_TIME",
                "作成者" => "CREATOR",
                "更新者" => "MODIFIER",
                "ステータス" if self.process.is_some() => "STATUS",
                _ => return None,
            }
            .to_string(),
        )
    }

    /// Check and normalise values about to be written; `current` for updates.
    fn validate(
        &self,
        incoming: &Map<String, Value>,
        current: Option<&StoredRecord>,
    ) -> Result<Map<String, Value>, ApiError> {
        let mut values = current.map(|r| r.values.clone()).unwrap_or_default();
        let mut errors = Vec::new();
        for (code, field) in incoming {
            let Some(def) = self.fields.get(code) else {
                return Err(ApiError::new(
                    400,
                    "GAIA_FC01",
                    format!("指定したフィールド（code: {code}）が見つかりません。"),
                ));
            };
            let Some(v) = field.get("value") else {
                errors.push((format!("record.{code}.value"), "必須です。".to_string()));
                continue;
            };
            let key = format!("record.{code}.value");
            let v = match (def.ty.as_str(), v) {
                (_, Value::Null) => empty_value(&def.ty),
                ("NUMBER", Value::String(s)) if s.trim().is_empty() => Value::String(String::new()),
                ("NUMBER", Value::String(s)) => match crate::kintone::fields::number(s) {
                    Some(n) => Value::String(n.to_string()),
                    None => {
                        errors.push((format!("record[{code}].value"), "数字でなければなりません。".into()));
                        continue;
                    }
                },
                ("NUMBER", Value::Number(n)) => Value::String(n.to_string()),
                ("RADIO_BUTTON" | "DROP_DOWN", Value::String(s)) => {
                    let opts = def.options.as_deref().unwrap_or_default();
                    if !s.is_empty() && !opts.iter().any(|o| o == s) {
                        errors.push((key, format!("\"{s}\"は選択肢にありません。")));
                        continue;
                    }
                    v.clone()
                }
                ("CHECK_BOX" | "MULTI_SELECT", Value::Array(items)) => {
                    let opts = def.options.as_deref().unwrap_or_default();
                    let mut ok = true;
                    for (i, item) in items.iter().enumerate() {
                        let s = item.as_str().unwrap_or_default();
                        if !opts.iter().any(|o| o == s) {
                            errors.push((
                                format!("record.{code}.values[{i}].value"),
                                format!("\"{s}\"は選択肢にありません。"),
                            ));
                            ok = false;
                        }
                    }
                    if !ok {
                        continue;
                    }
                    v.clone()
                }
                ("DATETIME", Value::String(s)) if !s.is_empty() => match crate::kintone::fields::utc(s) {
                    // kintone keeps minutes: seconds are dropped.
                    Some(u) => Value::String(format!("{}:00Z", &u[..16])),
                    None => {
                        errors.push((key, "日時の形式が正しくありません。".into()));
                        continue;
                    }
                },
                ("DATE", Value::String(s)) if !s.is_empty() => {
                    if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err() {
                        errors.push((key, "日付の形式が正しくありません。".into()));
                        continue;
                    }
                    v.clone()
                }
                (
                    "SINGLE_LINE_TEXT" | "MULTI_LINE_TEXT" | "RICH_TEXT" | "LINK" | "DATE" | "DATETIME" | "TIME",
                    Value::String(_),
                ) => v.clone(),
                ("USER_SELECT" | "ORGANIZATION_SELECT" | "GROUP_SELECT" | "FILE" | "SUBTABLE", Value::Array(_)) => {
                    v.clone()
                }
                (ty, _) => {
                    errors.push((key, format!("{ty} のフィールドには指定できない値です。")));
                    continue;
                }
            };
            values.insert(code.clone(), v);
        }
        for (code, def) in &self.fields {
            let v = values.get(code);
            let empty = v.is_none_or(|v| v.is_null() || v == "" || v.as_array().is_some_and(|a| a.is_empty()));
            if def.required && empty && (current.is_none() || incoming.contains_key(code)) {
                let suffix =
                    if matches!(def.ty.as_str(), "CHECK_BOX" | "MULTI_SELECT" | "FILE") { "values" } else { "value" };
                errors.push((format!("record.{code}.{suffix}"), "必須です。".into()));
            }
            if def.unique && !empty {
                let dup = self.records.values().any(|r| Some(r.id) != current.map(|c| c.id) && r.values.get(code) == v);
                if dup {
                    errors.push((format!("record.{code}.value"), "値がほかのレコードと重複しています。".into()));
                }
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(errors));
        }
        Ok(values)
    }
}

/// The empty value of a field type, as kintone stores it.
pub fn empty_value(ty: &str) -> Value {
    match ty {
        "CHECK_BOX"
        | "MULTI_SELECT"
        | "USER_SELECT"
        | "ORGANIZATION_SELECT"
        | "GROUP_SELECT"
        | "FILE"
        | "SUBTABLE"
        | "CATEGORY" => json!([]),
        "DROP_DOWN" => Value::Null,
        _ => json!(""),
    }
}

fn check_revision(r: &StoredRecord, revision: Option<i64>) -> Result<(), ApiError> {
    match revision {
        Some(rev) if rev != -1 && rev != r.revision as i64 => Err(ApiError::new(
            409,
            "GAIA_CO02",
            format!(
                "指定したリビジョン（{rev}）は最新ではありません。ほかのユーザーがレコードを更新した可能性があります。最新のリビジョンは {} です。",
                r.revision
            ),
        )),
        _ => Ok(()),
    }
}

impl State {
    pub fn app(&self, id: u64) -> Result<&App, ApiError> {
        self.apps.get(&id).ok_or_else(|| {
            ApiError::new(
                404,
                "GAIA_AP01",
                format!("指定したアプリ（id: {id}）が見つかりません。削除されている可能性があります。"),
            )
        })
    }

    pub(super) fn app_mut(&mut self, id: u64) -> Result<&mut App, ApiError> {
        self.app(id)?;
        Ok(self.apps.get_mut(&id).expect("checked"))
    }

    /// May `caller` do `right` on app `app`? kintone's answers when not.
    pub fn authorize(&self, caller: &Caller, app: u64, right: Right) -> Result<(), ApiError> {
        match caller {
            Caller::User(_) => {
                self.app(app)?;
                Ok(())
            }
            Caller::Tokens(tokens) => {
                let a = self.app(app)?;
                let mine: Vec<&ApiToken> =
                    tokens.iter().filter_map(|t| a.tokens.iter().find(|at| &at.token == t)).collect();
                if mine.is_empty() {
                    return Err(ApiError::new(
                        520,
                        "GAIA_IA02",
                        "指定したAPIトークンは、アプリで生成されたトークンと異なります。アプリのAPIトークンの設定を確認してください。",
                    ));
                }
                let ok = mine.iter().any(|t| match right {
                    Right::View => t.view,
                    Right::Add => t.add,
                    Right::Edit => t.edit,
                });
                if ok {
                    Ok(())
                } else {
                    Err(ApiError::new(403, "GAIA_NO01", "このAPIトークンでは、指定したAPIを実行できません。"))
                }
            }
        }
    }

    pub fn get_record(&self, app: u64, id: u64) -> Result<Map<String, Value>, ApiError> {
        let a = self.app(app)?;
        Ok(a.render(a.record(id)?, &[]))
    }

    /// Records matching `query`, and the total count of matches.
    pub fn get_records(
        &self,
        app: u64,
        query_text: &str,
        fields: &[String],
    ) -> Result<(Vec<Map<String, Value>>, usize), ApiError> {
        self.get_records_as(app, query_text, fields, &Context::jst(Utc::now(), None))
    }

    /// [`State::get_records`] with query functions evaluated in `cx` (the time,
    /// the user's zone, the caller's login name).
    pub fn get_records_as(
        &self,
        app: u64,
        query_text: &str,
        fields: &[String],
        cx: &Context,
    ) -> Result<(Vec<Map<String, Value>>, usize), ApiError> {
        let a = self.app(app)?;
        let q = query::parse(query_text)?;
        let type_of = |f: &str| a.type_of(f);
        if let Some(c) = &q.cond {
            c.check(&type_of)?;
        }
        for (f, _) in &q.order {
            if a.type_of(f).is_none() {
                return Err(ApiError::new(400, "GAIA_IQ11", format!("指定したフィールド（{f}）が見つかりません。")));
            }
        }
        // Each record's fields are rendered one at a time as the condition asks for
        // them, and whole records only for the page answered: a query stays linear
        // in the records with a small constant (the contract import asks one per file).
        let one = |r: &StoredRecord, f: &str| match a.fields.get(f) {
            // A user field as `render` gives it, without rendering the rest.
            Some(def) => Some((def.ty.clone(), r.values.get(f).cloned().unwrap_or_else(|| empty_value(&def.ty)))),
            None => field(&a.render(r, &[f.to_string()]), f),
        };
        let mut hits: Vec<&StoredRecord> = a
            .records
            .values()
            .filter(|r| q.cond.as_ref().is_none_or(|c: &Cond| c.matches_in(&|f| one(r, f), cx)))
            .collect();
        let order = if q.order.is_empty() { vec![("$id".to_string(), false)] } else { q.order.clone() };
        hits.sort_by(|x, y| {
            for (f, asc) in &order {
                let ty = a.type_of(f).unwrap_or_default();
                let vx = one(x, f).map(|(_, v)| sort_text(&v)).unwrap_or_default();
                let vy = one(y, f).map(|(_, v)| sort_text(&v)).unwrap_or_default();
                let o = query::compare(&ty, &vx, &vy);
                let o = if *asc { o } else { o.reverse() };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
        let total = hits.len();
        let offset = q.offset.unwrap_or(0) as usize;
        let limit = q.limit.unwrap_or(100) as usize;
        let page = hits
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|r| a.render(r, &[]))
            .map(|r| {
                if fields.is_empty() {
                    r
                } else {
                    r.iter()
                        .filter(|(k, _)| fields.iter().any(|f| f == *k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                }
            })
            .collect();
        Ok((page, total))
    }

    pub fn add_record(
        &mut self,
        app: u64,
        record: &Map<String, Value>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(u64, u64), ApiError> {
        let a = self.app_mut(app)?;
        // Fields the new record does not give take their default value.
        let mut record = record.clone();
        for (code, def) in &a.fields {
            if !record.contains_key(code) {
                if let Some(d) = def.effective_default() {
                    record.insert(code.clone(), json!({ "value": d }));
                }
            }
        }
        let values = a.validate(&record, None)?;
        let id = a.next_id;
        a.next_id += 1;
        let status = a.process.as_ref().and_then(|p| p.states.first().cloned());
        let t = now_text(now);
        a.records.insert(
            id,
            StoredRecord {
                id,
                revision: 1,
                values,
                status,
                assignee: None,
                created_at: t.clone(),
                updated_at: t,
                created_by: by.into(),
                updated_by: by.into(),
            },
        );
        Ok((id, 1))
    }

    pub fn update_record(
        &mut self,
        app: u64,
        id: u64,
        record: &Map<String, Value>,
        revision: Option<i64>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, ApiError> {
        let a = self.app_mut(app)?;
        let current = a.record(id)?.clone();
        check_revision(&current, revision)?;
        let values = a.validate(record, Some(&current))?;
        let r = a.records.get_mut(&id).expect("checked");
        r.values = values;
        r.revision += 1;
        r.updated_at = now_text(now);
        r.updated_by = by.into();
        Ok(r.revision)
    }

    pub fn update_status(
        &mut self,
        app: u64,
        id: u64,
        StatusChange { action, assignee }: StatusChange<'_>,
        revision: Option<i64>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, ApiError> {
        let a = self.app_mut(app)?;
        let Some(pm) = a.process.clone() else {
            return Err(ApiError::new(400, "GAIA_ST02", "操作に失敗しました。プロセス管理機能が無効化されています。"));
        };
        let current = a.record(id)?.clone();
        check_revision(&current, revision)?;
        let from = current.status.clone().unwrap_or_default();
        let Some(act) = pm.actions.iter().find(|x| x.name == action && x.from == from) else {
            return Err(ApiError::new(
                400,
                "GAIA_IL03",
                "ステータスの変更に失敗しました。ほかのユーザーがステータス、またはステータスの設定を変更した可能性があります。",
            ));
        };
        let picked = match assignee {
            _ if !pm.pick_one.contains(&act.to) => None,
            None => return Err(ApiError::new(400, "GAIA_SA01", "作業者を指定してください。")),
            Some(u) if !self.users.contains_key(u) => {
                return Err(ApiError::invalid(vec![("assignee".into(), format!("ユーザー（{u}）が見つかりません。"))]))
            }
            Some(u) => Some(u.to_string()),
        };
        let a = self.app_mut(app)?;
        let r = a.records.get_mut(&id).expect("checked");
        r.status = Some(act.to.clone());
        r.assignee = picked;
        // kintone counts an action as two revisions.
        r.revision += 2;
        r.updated_at = now_text(now);
        r.updated_by = by.into();
        Ok(r.revision)
    }

    /// The sample data: the contract ledger of the order-to-delivery process (app 1,
    /// no process management; its status is the radio field `k_ステータス`) and an
    /// inquiry app with process management (app 2).
    pub fn seed(now: DateTime<Utc>) -> State {
        let text = |label: &str| FieldDef {
            ty: "SINGLE_LINE_TEXT".into(),
            label: label.into(),
            options: None,
            required: false,
            unique: false,
            default_value: None,
        };
        let radio = |label: &str, opts: &[&str]| FieldDef {
            ty: "RADIO_BUTTON".into(),
            label: label.into(),
            options: Some(opts.iter().map(|s| s.to_string()).collect()),
            required: false,
            unique: false,
            default_value: None,
        };
        let mut fields = IndexMap::new();
        fields.insert("k_id".to_string(), FieldDef { unique: true, ..text("ID") });
        fields.insert("k_氏名".to_string(), text("氏名"));
        fields.insert("k_メールアドレス".to_string(), text("メールアドレス"));
        fields.insert("k_プラン".to_string(), radio("プラン", &["ライト", "スタンダード", "プレミアム"]));
        fields.insert(
            "k_構築希望日時".to_string(),
            FieldDef {
                ty: "DATETIME".into(),
                label: "構築希望日時".into(),
                options: None,
                required: false,
                unique: false,
                default_value: None,
            },
        );
        fields.insert("k_マニュアル送付希望".to_string(), radio("マニュアル送付希望", &["希望する", "希望しない"]));
        fields.insert("k_Qid".to_string(), text("Questetra処理ID"));
        // The signed contract (seed 001's contract ledger keeps files).
        fields.insert("k_契約書".to_string(), FieldDef { ty: "FILE".into(), ..text("契約書") });
        fields
            .insert("k_ステータス".to_string(), radio("処理ステータス", &["未対応", "対応要", "3_対応中", "4_対応済"]));
        let t = now_text(now);
        let rows = [
            (
                "C-0001",
                "山田 太郎",
                "taro.yamada@example.jp",
                "スタンダード",
                "2026-12-01T01:00:00Z",
                "希望する",
                "",
                "未対応",
            ),
            (
                "C-0002",
                "佐藤 花子",
                "hanako.sato@example.jp",
                "プレミアム",
                "2026-12-03T05:30:00Z",
                "希望しない",
                "",
                "未対応",
            ),
            (
                "C-0003",
                "鈴木 一郎",
                "ichiro.suzuki@example.jp",
                "ライト",
                "2026-11-20T00:00:00Z",
                "希望する",
                "7",
                "4_対応済",
            ),
        ];
        let mut records = BTreeMap::new();
        for (i, (kid, name, mail, plan, when, manual, qid, status)) in rows.iter().enumerate() {
            let id = i as u64 + 1;
            let mut values = Map::new();
            for (code, v) in [
                ("k_id", kid),
                ("k_氏名", name),
                ("k_メールアドレス", mail),
                ("k_プラン", plan),
                ("k_構築希望日時", when),
                ("k_マニュアル送付希望", manual),
                ("k_Qid", qid),
                ("k_ステータス", status),
            ] {
                values.insert(code.into(), json!(v));
            }
            records.insert(
                id,
                StoredRecord {
                    id,
                    revision: 1,
                    values,
                    status: None,
                    assignee: None,
                    created_at: t.clone(),
                    updated_at: t.clone(),
                    created_by: "demo".into(),
                    updated_by: "demo".into(),
                },
            );
        }
        let ledger = App {
            id: 1,
            name: "契約台帳".into(),
            fields,
            tokens: vec![ApiToken { token: DEMO_TOKEN.into(), view: true, add: true, edit: true }],
            process: None,
            records,
            next_id: 4,
            guest_space: None,
        };
        let mut inquiry_fields = IndexMap::new();
        inquiry_fields.insert("件名".to_string(), FieldDef { required: true, ..text("件名") });
        inquiry_fields.insert(
            "内容".to_string(),
            FieldDef {
                ty: "MULTI_LINE_TEXT".into(),
                label: "内容".into(),
                options: None,
                required: false,
                unique: false,
                default_value: None,
            },
        );
        let inquiry = App {
            id: 2,
            name: "問い合わせ管理".into(),
            fields: inquiry_fields,
            tokens: vec![ApiToken { token: DEMO_INQUIRY_TOKEN.into(), view: true, add: true, edit: true }],
            process: Some(ProcessManagement {
                states: vec!["未処理".into(), "処理中".into(), "完了".into()],
                actions: vec![
                    Action { name: "処理開始".into(), from: "未処理".into(), to: "処理中".into() },
                    Action { name: "完了にする".into(), from: "処理中".into(), to: "完了".into() },
                ],
                pick_one: vec!["処理中".into()],
            }),
            records: BTreeMap::new(),
            next_id: 1,
            guest_space: None,
        };
        let contracts = contract_ledger();
        State {
            format: 1,
            apps: [(1, ledger), (2, inquiry), (CONTRACT_LEDGER_APP, contracts)].into(),
            users: [("demo".to_string(), "demo-password".to_string())].into(),
            basic_auth: None,
            files: BTreeMap::new(),
        }
    }
}

/// The app of the CloudSign contract ledger (seed 001, `processes/contract-import.yaml`).
pub const CONTRACT_LEDGER_APP: u64 = 3;
/// Its API token.
pub const DEMO_CONTRACT_TOKEN: &str = "demo-contract-ledger-token";

/// The contract ledger the CloudSign import fills: one record per contract file,
/// the seed's fields, the PDF, and the unique import key (document:file).
fn contract_ledger() -> App {
    let def = |ty: &str, label: &str| FieldDef {
        ty: ty.into(),
        label: label.into(),
        options: None,
        required: false,
        unique: false,
        default_value: None,
    };
    let choice = |ty: &str, label: &str, opts: &[&str]| FieldDef {
        options: Some(opts.iter().map(|s| s.to_string()).collect()),
        ..def(ty, label)
    };
    let mut fields = IndexMap::new();
    for (code, f) in [
        ("契約書タイトル", def("SINGLE_LINE_TEXT", "契約書タイトル")),
        ("取引先", def("SINGLE_LINE_TEXT", "取引先")),
        ("契約締結日", def("DATE", "契約締結日")),
        ("契約開始日", def("DATE", "契約開始日")),
        ("契約終了日", def("DATE", "契約終了日")),
        ("金額", def("NUMBER", "金額")),
        ("契約自動更新", choice("DROP_DOWN", "契約自動更新", &["あり", "なし", "未設定"])),
        ("解約通知期限日", def("DATE", "解約通知期限日")),
        ("ファイル名", def("SINGLE_LINE_TEXT", "ファイル名")),
        ("稟議番号等", def("SINGLE_LINE_TEXT", "稟議番号等")),
        ("契約書", def("FILE", "契約書")),
        ("公開範囲", choice("DROP_DOWN", "公開範囲", &["全社", "部署", "関係者のみ"])),
        ("担当者", def("SINGLE_LINE_TEXT", "担当者")),
        ("管理ID", def("SINGLE_LINE_TEXT", "連携の管理ID")),
        ("取込キー", FieldDef { unique: true, ..def("SINGLE_LINE_TEXT", "取込キー (書類ID:ファイルID)") }),
    ] {
        fields.insert(code.to_string(), f);
    }
    App {
        id: CONTRACT_LEDGER_APP,
        name: "契約書台帳 (クラウドサイン連携)".into(),
        fields,
        tokens: vec![ApiToken { token: DEMO_CONTRACT_TOKEN.into(), view: true, add: true, edit: true }],
        process: None,
        records: BTreeMap::new(),
        next_id: 1,
        guest_space: None,
    }
}

/// The API token of the seeded contract ledger (app 1).
pub const DEMO_TOKEN: &str = "demo-ledger-token";
/// The API token of the seeded inquiry app (app 2).
pub const DEMO_INQUIRY_TOKEN: &str = "demo-inquiry-token";

/// `(type, value)` of a field in a rendered record.
fn field(r: &Map<String, Value>, code: &str) -> Option<(String, Value)> {
    let f = r.get(code)?;
    Some((f.get("type")?.as_str()?.to_string(), f.get("value").cloned().unwrap_or(Value::Null)))
}

fn sort_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> State {
        State::seed(DateTime::UNIX_EPOCH)
    }

    #[test]
    fn seeded_ledger_reads_like_kintone() {
        let s = st();
        let r = s.get_record(1, 1).unwrap();
        assert_eq!(r["$id"], json!({"type": "__ID__", "value": "1"}));
        assert_eq!(r["$revision"], json!({"type": "__REVISION__", "value": "1"}));
        assert_eq!(r["k_ステータス"], json!({"type": "RADIO_BUTTON", "value": "未対応"}));
        assert_eq!(r[RECORD_NUMBER]["type"], "RECORD_NUMBER");
        assert!(!r.contains_key("ステータス"), "no process management on the ledger");
        assert_eq!(s.get_record(1, 99).unwrap_err().code, "GAIA_RE01");
        assert_eq!(s.get_record(9, 1).unwrap_err().code, "GAIA_AP01");
    }

    #[test]
    fn query_filters_orders_and_pages() {
        let s = st();
        let (rows, total) =
            s.get_records(1, r#"k_ステータス in ("未対応") order by $id asc limit 1 offset 1"#, &[]).unwrap();
        assert_eq!(total, 2);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["$id"]["value"], "2");
        let (rows, _) = s.get_records(1, "", &[]).unwrap();
        assert_eq!(rows[0]["$id"]["value"], "3", "no order by: $id desc");
        let (rows, _) = s.get_records(1, "", &["k_氏名".to_string()]).unwrap();
        assert_eq!(rows[0].keys().collect::<Vec<_>>(), ["k_氏名"], "only the fields asked for");
        assert_eq!(s.get_records(1, r#"k_ステータス = "未対応""#, &[]).unwrap_err().code, "GAIA_IQ03");
    }

    #[test]
    fn writes_validate_and_bump_revisions() {
        let mut s = st();
        let now = DateTime::UNIX_EPOCH;
        let bad = json!({"k_プラン": {"value": "ゴールド"}, "k_id": {"value": "C-0001"}});
        let e = s.add_record(1, bad.as_object().unwrap(), "t", now).unwrap_err();
        assert_eq!(e.code, "CB_VA01");
        let errs = e.errors.unwrap();
        assert_eq!(errs["record.k_プラン.value"]["messages"][0], "\"ゴールド\"は選択肢にありません。");
        assert_eq!(errs["record.k_id.value"]["messages"][0], "値がほかのレコードと重複しています。");
        let unknown = json!({"k_なし": {"value": "x"}});
        assert_eq!(s.add_record(1, unknown.as_object().unwrap(), "t", now).unwrap_err().code, "GAIA_FC01");

        let upd =
            json!({"k_ステータス": {"value": "対応要"}, "k_構築希望日時": {"value": "2026-12-01T10:00:30+09:00"}});
        assert_eq!(s.update_record(1, 1, upd.as_object().unwrap(), Some(1), "t", now).unwrap(), 2);
        let e = s.update_record(1, 1, upd.as_object().unwrap(), Some(1), "t", now).unwrap_err();
        assert_eq!((e.status, e.code), (409, "GAIA_CO02"));
        let r = s.get_record(1, 1).unwrap();
        assert_eq!(r["k_構築希望日時"]["value"], "2026-12-01T01:00:00Z");
        assert_eq!(r["k_氏名"]["value"], "山田 太郎", "fields not sent are kept");
    }

    #[test]
    fn status_actions() {
        let mut s = st();
        let now = DateTime::UNIX_EPOCH;
        let (id, _) = s.add_record(2, json!({"件名": {"value": "故障"}}).as_object().unwrap(), "t", now).unwrap();
        assert_eq!(s.get_record(2, id).unwrap()["ステータス"]["value"], "未処理");
        assert_eq!(
            s.update_status(2, id, StatusChange { action: "処理開始", assignee: Some("demo") }, None, "t", now)
                .unwrap(),
            3
        );
        assert_eq!(
            s.update_status(2, id, StatusChange { action: "処理開始", assignee: Some("demo") }, None, "t", now)
                .unwrap_err()
                .code,
            "GAIA_IL03"
        );
        assert_eq!(
            s.update_status(1, 1, StatusChange { action: "処理開始", assignee: None }, None, "t", now)
                .unwrap_err()
                .code,
            "GAIA_ST02"
        );
        let e = s.add_record(2, json!({}).as_object().unwrap(), "t", now).unwrap_err();
        assert_eq!(e.errors.unwrap()["record.件名.value"]["messages"][0], "必須です。");
    }

    #[test]
    fn token_rights() {
        let s = st();
        let tok = |t: &str| Caller::Tokens(vec![t.to_string()]);
        assert!(s.authorize(&tok(DEMO_TOKEN), 1, Right::Edit).is_ok());
        assert_eq!(s.authorize(&tok(DEMO_TOKEN), 2, Right::View).unwrap_err().code, "GAIA_IA02");
        assert_eq!(s.authorize(&tok("wrong"), 1, Right::View).unwrap_err().status, 520);
        let both = Caller::Tokens(vec!["x".into(), DEMO_INQUIRY_TOKEN.into()]);
        assert!(s.authorize(&both, 2, Right::Add).is_ok());
    }
}
