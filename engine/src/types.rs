//! Declared variable types and the check every write goes through.

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest `string` accepted unless the variable sets `max_length`.
pub const MAX_STRING_CHARS: usize = 4_000;
/// Longest `text` accepted unless the variable sets `max_length`.
pub const MAX_TEXT_CHARS: usize = 200_000;
/// Largest `list` or `object` accepted, in bytes of JSON.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// Deepest nesting of lists and objects accepted in a variable, a message payload
/// or a connector's answer. Records are stored as JSON and serde_json reads at most
/// 128 levels back: a deeper value inside an instance or a buffered message would
/// be written but never read again (the store would refuse to open).
pub const MAX_JSON_DEPTH: usize = 32;

/// How deeply lists and objects nest in `v` (a scalar is 0).
pub fn json_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// `Err` with a message when `v` nests deeper than [`MAX_JSON_DEPTH`].
pub fn check_json_depth(v: &Value) -> Result<(), String> {
    let depth = json_depth(v);
    if depth > MAX_JSON_DEPTH {
        return Err(format!("nested {depth} levels deep, at most {MAX_JSON_DEPTH} allowed"));
    }
    Ok(())
}

/// The type names a designer may write after `type:`.
pub const TYPE_NAMES: &[&str] = &["string", "text", "number", "bool", "date", "datetime", "choice", "list", "object"];

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
            (VarType::Date, Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|_| ())
                .map_err(|_| format!("expected a date like 2026-11-23, got `{s}`")),
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
                check_json_depth(v)?;
                let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
                if size > MAX_JSON_BYTES {
                    Err(format!("too large: {size} bytes of JSON, at most {MAX_JSON_BYTES} allowed"))
                } else {
                    Ok(())
                }
            }
            (VarType::List, _) => want("a list"),
            (VarType::Object, _) => want("an object"),
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
            VarType::List | VarType::Object => {
                serde_json::from_str(text).map_err(|e| format!("expected JSON {}: {e}", self.name()))?
            }
            _ => Value::String(text.to_string()),
        };
        self.check(&v, None)?;
        Ok(v)
    }
}
