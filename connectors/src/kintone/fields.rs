//! kintone field values ⇄ process variable values.
//!
//! kintone sends every field as `{type, value}` with numbers as strings and empty
//! values as `""`. Processes want typed values: a `number` variable holds a number,
//! a `choice` holds one of its options or nothing. Reading uses the field's `type`;
//! writing has no types at hand, so it follows the JSON value: numbers become
//! strings, datetimes are sent in UTC, lists stay lists.
//!
//! | kintone type | variable value |
//! | --- | --- |
//! | NUMBER, CALC (numeric) | number (`""` → null) |
//! | SINGLE_LINE_TEXT, MULTI_LINE_TEXT, RICH_TEXT, LINK | string |
//! | RADIO_BUTTON, DROP_DOWN, STATUS | string, for a `choice` (`""`/null → null) |
//! | DATE, TIME | string `YYYY-MM-DD` / `HH:MM` (`""` → null) |
//! | DATETIME, CREATED_TIME, UPDATED_TIME | RFC 3339 UTC `…Z` (`""` → null) |
//! | CHECK_BOX, MULTI_SELECT, CATEGORY | list of strings |
//! | USER_SELECT, ORGANIZATION_SELECT, GROUP_SELECT, CREATOR, MODIFIER, FILE | as kintone gives them |
//! | SUBTABLE | list of rows, each a map of converted cells plus `$id` (the row id) |
//! | `$id`, `$revision`, RECORD_NUMBER | string |

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// A kintone record (`{code: {type, value}}`) as plain, typed values.
pub fn record_to_plain(record: &Map<String, Value>) -> Map<String, Value> {
    record.iter().map(|(code, field)| (code.clone(), field_to_plain(field))).collect()
}

/// One `{type, value}` as a plain value.
pub fn field_to_plain(field: &Value) -> Value {
    let ty = field.get("type").and_then(Value::as_str).unwrap_or("");
    let value = field.get("value").cloned().unwrap_or(Value::Null);
    value_to_plain(ty, value)
}

fn empty_to_null(v: Value) -> Value {
    match v {
        Value::String(s) if s.is_empty() => Value::Null,
        other => other,
    }
}

fn value_to_plain(ty: &str, value: Value) -> Value {
    match ty {
        "NUMBER" | "CALC" => match &value {
            Value::String(s) if s.trim().is_empty() => Value::Null,
            Value::String(s) => number(s).unwrap_or(value),
            _ => value,
        },
        "RADIO_BUTTON" | "DROP_DOWN" | "STATUS" | "DATE" | "TIME" => empty_to_null(value),
        "DATETIME" | "CREATED_TIME" | "UPDATED_TIME" => match empty_to_null(value) {
            Value::String(s) => Value::String(utc(&s).unwrap_or(s)),
            other => other,
        },
        "SUBTABLE" => match value {
            Value::Array(rows) => Value::Array(
                rows.into_iter()
                    .map(|row| {
                        let mut out = Map::new();
                        if let Some(id) = row.get("id") {
                            out.insert("$id".into(), id.clone());
                        }
                        if let Some(Value::Object(cells)) = row.get("value") {
                            out.extend(record_to_plain(cells));
                        }
                        Value::Object(out)
                    })
                    .collect(),
            ),
            other => other,
        },
        _ => value,
    }
}

/// kintone's number text as a JSON number: integers stay integers.
pub fn number(s: &str) -> Option<Value> {
    let t = s.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f: f64 = t.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Some(Value::from(f as i64));
    }
    serde_json::Number::from_f64(f).map(Value::Number)
}

/// An RFC 3339 datetime in kintone's form: UTC, `Z`, seconds.
pub fn utc(s: &str) -> Option<String> {
    let dt = DateTime::parse_from_rfc3339(s).ok()?;
    Some(dt.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// A problem converting a value for kintone, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct WriteError {
    pub field: String,
    pub problem: String,
}

/// Plain values (from a step's `record:` input) as a kintone record to send:
/// `{code: {value}}`.
pub fn plain_to_record(plain: &Map<String, Value>) -> Result<Map<String, Value>, WriteError> {
    let mut out = Map::new();
    for (code, v) in plain {
        if code.starts_with('$') {
            continue; // `$id`, `$revision`: not writable, dropped so a fetched record can be sent back
        }
        let field = plain_to_field(v).map_err(|problem| WriteError { field: code.clone(), problem })?;
        out.insert(code.clone(), field);
    }
    Ok(out)
}

fn plain_to_field(v: &Value) -> Result<Value, String> {
    if let Value::Object(o) = v {
        if o.contains_key("value") {
            // Already kintone's shape (`{value: ...}`, maybe with `type`): sent as is.
            let mut o = o.clone();
            o.remove("type");
            return Ok(Value::Object(o));
        }
    }
    Ok(serde_json::json!({ "value": plain_to_value(v)? }))
}

fn plain_to_value(v: &Value) -> Result<Value, String> {
    Ok(match v {
        Value::Null => Value::String(String::new()),
        Value::Bool(_) => {
            return Err("kintone has no true/false field; use a choice (RADIO_BUTTON) or a CHECK_BOX list".into())
        }
        Value::Number(n) => Value::String(n.to_string()),
        Value::String(s) => match s.contains('T').then(|| utc(s)).flatten() {
            Some(u) => Value::String(u),
            None => Value::String(s.clone()),
        },
        Value::Array(items) => {
            let is_entity = |i: &Value| {
                i.as_object().is_some_and(|o| {
                    o.contains_key("code") && o.keys().all(|k| k == "code" || k == "name" || k == "type")
                })
            };
            if items.iter().all(|i| i.is_string() || is_entity(i)) {
                v.clone() // CHECK_BOX texts, or users/organizations/groups `[{code}]`
            } else if items.iter().all(Value::is_object) {
                // SUBTABLE rows: `[{$id?, cell: value, ...}]`
                let rows = items
                    .iter()
                    .map(|row| {
                        let o = row.as_object().expect("checked");
                        let mut out = Map::new();
                        if let Some(id) = o.get("$id") {
                            out.insert("id".into(), Value::String(plain_text(id)));
                        }
                        let cells = plain_to_record(o).map_err(|e| e.to_string())?;
                        out.insert("value".into(), Value::Object(cells));
                        Ok(Value::Object(out))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Value::Array(rows)
            } else {
                return Err("a list must hold only texts (CHECK_BOX), users `{code}` or table rows (maps)".into());
            }
        }
        Value::Object(_) => return Err("a map is only accepted as `{value: ...}` (kintone's own form)".into()),
    })
}

fn plain_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_typed_values() {
        let record = json!({
            "$id": {"type": "__ID__", "value": "14"},
            "$revision": {"type": "__REVISION__", "value": "3"},
            "k_氏名": {"type": "SINGLE_LINE_TEXT", "value": "山田 太郎"},
            "数量": {"type": "NUMBER", "value": "42"},
            "単価": {"type": "NUMBER", "value": "1.5"},
            "空の数": {"type": "NUMBER", "value": ""},
            "k_プラン": {"type": "RADIO_BUTTON", "value": "スタンダード"},
            "区分": {"type": "DROP_DOWN", "value": null},
            "k_構築希望日時": {"type": "DATETIME", "value": "2026-12-01T01:00:00Z"},
            "納期": {"type": "DATE", "value": ""},
            "タグ": {"type": "CHECK_BOX", "value": ["A", "B"]},
            "明細": {"type": "SUBTABLE", "value": [
                {"id": "368", "value": {"品名": {"type": "SINGLE_LINE_TEXT", "value": "りんご"}, "数": {"type": "NUMBER", "value": "3"}}}
            ]}
        });
        let plain = record_to_plain(record.as_object().unwrap());
        assert_eq!(
            Value::Object(plain),
            json!({
                "$id": "14", "$revision": "3", "k_氏名": "山田 太郎", "数量": 42, "単価": 1.5, "空の数": null,
                "k_プラン": "スタンダード", "区分": null, "k_構築希望日時": "2026-12-01T01:00:00Z", "納期": null,
                "タグ": ["A", "B"], "明細": [{"$id": "368", "品名": "りんご", "数": 3}]
            })
        );
    }

    #[test]
    fn writes_kintone_values() {
        let plain = json!({
            "$id": "14",
            "k_Qid": 12,
            "金額": 1500.5,
            "k_ステータス": "3_対応中",
            "k_構築希望日時": "2026-12-01T10:00:00+09:00",
            "メモ": null,
            "タグ": ["A"],
            "担当": [{"code": "sato"}],
            "明細": [{"$id": 368, "品名": "りんご", "数": 3}],
            "生": {"value": "as is", "type": "SINGLE_LINE_TEXT"}
        });
        let rec = plain_to_record(plain.as_object().unwrap()).unwrap();
        assert_eq!(
            Value::Object(rec),
            json!({
                "k_Qid": {"value": "12"},
                "金額": {"value": "1500.5"},
                "k_ステータス": {"value": "3_対応中"},
                "k_構築希望日時": {"value": "2026-12-01T01:00:00Z"},
                "メモ": {"value": ""},
                "タグ": {"value": ["A"]},
                "担当": {"value": [{"code": "sato"}]},
                "明細": {"value": [{"id": "368", "value": {"品名": {"value": "りんご"}, "数": {"value": "3"}}}]},
                "生": {"value": "as is"}
            })
        );
    }

    #[test]
    fn refuses_what_kintone_cannot_hold() {
        let e = plain_to_record(json!({"承認": true}).as_object().unwrap()).unwrap_err();
        assert_eq!(e.field, "承認");
        assert!(e.problem.contains("no true/false"));
        assert!(plain_to_record(json!({"x": {"a": 1}}).as_object().unwrap()).is_err());
    }

    #[test]
    fn round_trip_of_a_fetched_record() {
        let fetched = json!({
            "$id": {"type": "__ID__", "value": "1"},
            "数量": {"type": "NUMBER", "value": "42"},
            "日時": {"type": "DATETIME", "value": "2026-12-01T01:00:00Z"}
        });
        let plain = record_to_plain(fetched.as_object().unwrap());
        let back = plain_to_record(&plain).unwrap();
        assert_eq!(Value::Object(back), json!({"数量": {"value": "42"}, "日時": {"value": "2026-12-01T01:00:00Z"}}));
    }
}
