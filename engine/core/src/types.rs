//! Declared variable types and the check every write goes through.

use chrono::{DateTime, Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest `string` accepted unless the variable sets `max_length`.
pub const MAX_STRING_CHARS: usize = 4_000;
/// Longest `text` accepted unless the variable sets `max_length`.
pub const MAX_TEXT_CHARS: usize = 200_000;
/// Largest `list` or `object` accepted, in bytes of JSON.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// Deepest nesting of lists and objects in a value the engine keeps (variables,
/// message payloads, connector results). Instances are stored as JSON, and the
/// JSON reader stops at 128 levels: a deeper value would make its instance
/// unreadable.
pub const MAX_NESTING: usize = 64;

/// How deeply lists and objects nest in `v` (a scalar is 0), counted without
/// recursion so any depth is safe to measure.
pub fn nesting(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, depth + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, depth + 1))),
            _ => {}
        }
    }
    deepest
}

/// An error if `v` nests deeper than [`MAX_NESTING`].
pub fn check_nesting(v: &Value) -> Result<(), String> {
    let n = nesting(v);
    if n > MAX_NESTING {
        return Err(format!("nested {n} levels deep, at most {MAX_NESTING} allowed"));
    }
    Ok(())
}

/// Largest file a `file` variable may hold unless it sets `max_size`.
pub const DEFAULT_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Largest `max_size` a process may declare: uploads are streamed to disk, but a
/// bound keeps one user from filling it.
pub const MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// Longest file name kept, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 255;

/// The type names a designer may write after `type:`.
pub const TYPE_NAMES: &[&str] =
    &["string", "text", "number", "bool", "date", "datetime", "choice", "list", "object", "file"];

/// The value of a `file` variable: a reference to content kept outside the
/// instance, in the content-addressed blob store, so that instance state and
/// history stay small. The content is identified by its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content: the blob's address.
    pub sha256: String,
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
}

impl FileRef {
    /// Read a variable value as a file reference, checking its shape.
    pub fn from_value(v: &Value) -> Result<FileRef, String> {
        let f: FileRef = serde_json::from_value(v.clone())
            .map_err(|e| format!("expected a file (name, content_type, size, sha256, created_by, created_at): {e}"))?;
        if f.name.trim().is_empty() || f.name.chars().count() > MAX_FILE_NAME_CHARS {
            return Err(format!("a file name must have 1 to {MAX_FILE_NAME_CHARS} characters"));
        }
        if f.name.contains(['/', '\\', '\0']) {
            return Err(format!("the file name `{}` may not contain `/`, `\\` or NUL", f.name));
        }
        if !is_sha256_hex(&f.sha256) {
            return Err("`sha256` must be 64 lower-case hex digits".into());
        }
        if f.content_type.is_empty() || f.content_type.len() > 255 || !f.content_type.contains('/') {
            return Err(format!("`{}` is not a content type like application/pdf", f.content_type));
        }
        DateTime::parse_from_rfc3339(&f.created_at).map_err(|_| "`created_at` must be an RFC 3339 datetime")?;
        Ok(f)
    }
}

/// 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a `file` variable accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRules {
    /// Largest content accepted, in bytes.
    pub max_size: u64,
    /// Accepted content types (`application/pdf`); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_types: Vec<String>,
}

impl FileRules {
    /// Whether the content type may be stored here (parameters such as
    /// `; charset=` are ignored, case-insensitively).
    pub fn allows_type(&self, content_type: &str) -> bool {
        let bare = content_type.split(';').next().unwrap_or_default().trim();
        self.content_types.is_empty() || self.content_types.iter().any(|t| t.eq_ignore_ascii_case(bare))
    }

    /// Whether the content must be a PDF (checked for `%PDF-` ... `%%EOF`).
    pub fn wants_pdf(&self) -> bool {
        !self.content_types.is_empty() && self.content_types.iter().all(|t| t.eq_ignore_ascii_case("application/pdf"))
    }

    /// Check a file's metadata against the rules.
    pub fn check(&self, f: &FileRef) -> Result<(), String> {
        if f.size > self.max_size {
            return Err(format!("the file is too large: {} bytes, at most {} allowed", f.size, self.max_size));
        }
        if !self.allows_type(&f.content_type) {
            return Err(format!(
                "a file of type `{}` is not accepted here; accepted: {}",
                f.content_type,
                self.content_types.join(", ")
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum VarType {
    String,
    Text,
    Number,
    Bool,
    /// `YYYY-MM-DD`
    Date,
    /// RFC 3339, e.g. `2026-11-23T09:00:00+09:00`
    Datetime,
    Choice {
        options: Vec<String>,
    },
    List,
    Object,
    /// A [`FileRef`] to content in the blob store.
    File(FileRules),
}

impl VarType {
    pub fn name(&self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Text => "text",
            VarType::Number => "number",
            VarType::Bool => "bool",
            VarType::Date => "date",
            VarType::Datetime => "datetime",
            VarType::Choice { .. } => "choice",
            VarType::List => "list",
            VarType::Object => "object",
            VarType::File(_) => "file",
        }
    }

    /// Check a value about to be written. `null` (unset) is always allowed.
    pub fn check(&self, v: &Value, max_length: Option<usize>) -> Result<(), String> {
        let got = || match v {
            Value::Null => "nothing",
            Value::Bool(_) => "a bool",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        };
        let want = |what: &str| Err(format!("expected {what}, got {}", got()));
        match (self, v) {
            (_, Value::Null) => Ok(()),
            (VarType::String | VarType::Text, Value::String(s)) => {
                let limit =
                    max_length.unwrap_or(if *self == VarType::String { MAX_STRING_CHARS } else { MAX_TEXT_CHARS });
                let n = s.chars().count();
                if n > limit {
                    Err(format!("too long: {n} characters, at most {limit} allowed"))
                } else {
                    Ok(())
                }
            }
            (VarType::String | VarType::Text, _) => want("a string"),
            (VarType::Number, Value::Number(_)) => Ok(()),
            (VarType::Number, _) => want("a number"),
            (VarType::Bool, Value::Bool(_)) => Ok(()),
            (VarType::Bool, _) => want("true or false"),
            // Years 0000–9999 only (chrono also reads `+10000-01-01`), like every time
            // the engine computes.
            (VarType::Date, Value::String(s)) => match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                Ok(d) if (0..=9999).contains(&d.year()) => Ok(()),
                Ok(_) => Err(format!("`{s}` is outside years 0000–9999")),
                Err(_) => Err(format!("expected a date like 2026-11-23, got `{s}`")),
            },
            (VarType::Date, _) => want("a date like 2026-11-23"),
            (VarType::Datetime, Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|_| ())
                .map_err(|_| format!("expected a datetime like 2026-11-23T09:00:00+09:00, got `{s}`")),
            (VarType::Datetime, _) => want("a datetime like 2026-11-23T09:00:00+09:00"),
            (VarType::Choice { options }, Value::String(s)) => {
                if options.iter().any(|o| o == s) {
                    Ok(())
                } else {
                    Err(format!("`{s}` is not one of the options: {}", options.join(", ")))
                }
            }
            (VarType::Choice { options }, _) => want(&format!("one of: {}", options.join(", "))),
            (VarType::List, Value::Array(_)) | (VarType::Object, Value::Object(_)) => {
                check_nesting(v)?;
                let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
                if size > MAX_JSON_BYTES {
                    Err(format!("too large: {size} bytes of JSON, at most {MAX_JSON_BYTES} allowed"))
                } else {
                    Ok(())
                }
            }
            (VarType::List, _) => want("a list"),
            (VarType::Object, _) => want("an object"),
            (VarType::File(rules), Value::Object(_)) => rules.check(&FileRef::from_value(v)?),
            (VarType::File(_), _) => want("a file (upload it first: POST /api/v1/files)"),
        }
    }

    /// Read a command-line `--var name=text` value as this type.
    pub fn parse_text(&self, text: &str) -> Result<Value, String> {
        let v = match self {
            VarType::Number => {
                if let Ok(i) = text.parse::<i64>() {
                    Value::from(i)
                } else {
                    let f: f64 = text.parse().map_err(|_| format!("expected a number, got `{text}`"))?;
                    serde_json::Number::from_f64(f).map(Value::Number).ok_or("not a finite number")?
                }
            }
            VarType::Bool => match text {
                "true" | "yes" | "1" => Value::Bool(true),
                "false" | "no" | "0" => Value::Bool(false),
                _ => return Err(format!("expected true or false, got `{text}`")),
            },
            VarType::List | VarType::Object | VarType::File(_) => {
                serde_json::from_str(text).map_err(|e| format!("expected JSON {}: {e}", self.name()))?
            }
            _ => Value::String(text.to_string()),
        };
        self.check(&v, None)?;
        Ok(v)
    }
}
