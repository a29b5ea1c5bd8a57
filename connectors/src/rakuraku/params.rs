//! The inputs of `rakuraku.import` and their rules, checked without IO.
//!
//! The parameters are spelled as the API spells them (`masterId`, `duplicateKey`,
//! `sendPasswordEmail`, `createCategory`, seed 003) so a designer recognises them.
//! [`check_params`] is pure: the engine's deploy-time check calls it on a step's
//! `with:` map (string values there are expressions and are skipped; the
//! connector checks them again at run time), and the connector calls it on the
//! evaluated input before building any CSV.
//!
//! | input | rule |
//! | --- | --- |
//! | `masterId` | required; 0 employees, 1 departments, 2 positions, 3 payees, 4 projects, 18 approver settings, 81–85 generic masters 1–5 |
//! | `duplicateKey` | 0 skip existing (default) / 1 update; approver settings (18) only 1 (default 1) |
//! | `sendPasswordEmail` | 0 (default) / 1; employees (0) only |
//! | `createCategory` | 0 error on an unknown category (default) / 1 create; payees, projects and generic masters only |
//! | `rows` | a list of objects (or a result with `records`); or instead: |
//! | `file` | a CSV file variable (header row; UTF-8, with or without BOM, or Shift_JIS), read row by row |
//! | `columns` | required, literal: `[社員コード, {header: 氏名, key: name}]`, 1–500 columns |
//! | `csv` | optional, literal: `{charset: shift_jis \| windows-31j, unmappable: {map: {髙: 高}, replace: "?"}}` |

use super::csv::{Charset, Column, CsvSpec, Unmappable};
use serde_json::{Map, Value};

/// A problem: the path under `with:`, what is wrong, how to fix it.
pub type ParamIssue = (Vec<String>, String, String);

/// Every master the import API takes, with its name.
pub const MASTERS: &[(u64, &str)] = &[
    (0, "employees (社員マスタ)"),
    (1, "departments (部門マスタ)"),
    (2, "positions (役職マスタ)"),
    (3, "payees (支払先マスタ)"),
    (4, "projects (プロジェクトマスタ)"),
    (18, "approver settings (承認者の設定)"),
    (81, "generic master 1 (汎用マスタ1)"),
    (82, "generic master 2 (汎用マスタ2)"),
    (83, "generic master 3 (汎用マスタ3)"),
    (84, "generic master 4 (汎用マスタ4)"),
    (85, "generic master 5 (汎用マスタ5)"),
];

/// Most columns in one file.
pub const MAX_COLUMNS: usize = 500;

const KEYS: &[&str] =
    &["masterId", "duplicateKey", "sendPasswordEmail", "createCategory", "rows", "file", "columns", "csv"];

/// Masters whose import settings may carry a category.
pub fn takes_category(master: u64) -> bool {
    matches!(master, 3 | 4 | 81..=85)
}

pub fn master_name(master: u64) -> Option<&'static str> {
    MASTERS.iter().find(|(m, _)| *m == master).map(|(_, n)| *n)
}

/// The API parameters, defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportParams {
    pub master_id: u64,
    pub duplicate_key: u8,
    pub send_password_email: u8,
    pub create_category: u8,
}

impl ImportParams {
    /// The `json` part of the request.
    pub fn to_json(self) -> Value {
        serde_json::json!({
            "masterId": self.master_id,
            "duplicateKey": self.duplicate_key,
            "sendPasswordEmail": self.send_password_email,
            "createCategory": self.create_category,
        })
    }
}

fn issue(path: &[&str], message: impl Into<String>, hint: impl Into<String>) -> ParamIssue {
    (path.iter().map(|s| s.to_string()).collect(), message.into(), hint.into())
}

/// A literal whole number, `Err(())` for anything else; strings (expressions at
/// deploy time) are `Ok(None)`.
fn literal_number(v: &Value) -> Result<Option<u64>, ()> {
    match v {
        Value::String(_) => Ok(None),
        Value::Number(n) => n.as_u64().map(Some).ok_or(()),
        _ => Err(()),
    }
}

/// Check a step's `with:` map (or a call's evaluated input). Empty: nothing wrong
/// that can be known now.
pub fn check_params(with: &Value) -> Vec<ParamIssue> {
    let mut out = Vec::new();
    let Some(with) = with.as_object() else {
        return vec![issue(&[], "`with:` must be a map", "give at least `masterId`, `rows` and `columns`")];
    };
    for k in with.keys() {
        if !KEYS.contains(&k.as_str()) {
            let near = KEYS.iter().find(|c| c.eq_ignore_ascii_case(k) || c.to_lowercase() == k.replace('_', ""));
            let hint = match near {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("the inputs are {}", KEYS.join(", ")),
            };
            out.push(issue(&[k], format!("`{k}` is not an input of rakuraku.import"), hint));
        }
    }
    let master = match with.get("masterId") {
        None => {
            out.push(issue(
                &["masterId"],
                "`masterId` is missing",
                "say which master to import, e.g. `masterId: 0` (employees)",
            ));
            None
        }
        Some(v) => match literal_number(v) {
            Ok(Some(m)) if master_name(m).is_some() => Some(m),
            Ok(None) => None,
            _ => {
                out.push(issue(
                    &["masterId"],
                    format!("`masterId` {v} is not a master the import API takes"),
                    "use 0 employees, 1 departments, 2 positions, 3 payees, 4 projects, 18 approver settings, 81–85 generic masters 1–5",
                ));
                None
            }
        },
    };
    let zero_one = |key: &str, out: &mut Vec<ParamIssue>| -> Option<u64> {
        let v = with.get(key)?;
        match literal_number(v) {
            Ok(Some(n)) if n <= 1 => Some(n),
            Ok(None) => None,
            _ => {
                out.push(issue(&[key], format!("`{key}` must be 0 or 1, got {v}"), "write 0 or 1"));
                None
            }
        }
    };
    let dup = zero_one("duplicateKey", &mut out);
    zero_one("sendPasswordEmail", &mut out);
    zero_one("createCategory", &mut out);
    if let Some(m) = master {
        if m == 18 && dup == Some(0) {
            out.push(issue(
                &["duplicateKey"],
                "approver settings (masterId 18) can only be imported with `duplicateKey: 1` (update)",
                "write `duplicateKey: 1` or leave it out (it defaults to 1 for masterId 18)",
            ));
        }
        if m != 0 && with.contains_key("sendPasswordEmail") && with["sendPasswordEmail"] != Value::Number(0.into()) {
            out.push(issue(
                &["sendPasswordEmail"],
                format!(
                    "`sendPasswordEmail` applies only to employees (masterId 0), not to {}",
                    master_name(m).unwrap_or("?")
                ),
                "remove `sendPasswordEmail`",
            ));
        }
        if !takes_category(m)
            && with.contains_key("createCategory")
            && with["createCategory"] != Value::Number(0.into())
        {
            out.push(issue(
                &["createCategory"],
                format!(
                    "`createCategory` applies only to payees (3), projects (4) and generic masters (81–85), not to {}",
                    master_name(m).unwrap_or("?")
                ),
                "remove `createCategory`",
            ));
        }
    }
    if with.contains_key("rows") && with.contains_key("file") {
        out.push(issue(&["file"], "give `rows` or `file`, not both", "remove one of them"));
    } else if !with.contains_key("rows") && !with.contains_key("file") {
        out.push(issue(
            &["rows"],
            "`rows` is missing",
            "give the rows to import, e.g. `rows: employees` (a list of objects), or `file: csv_file` (a CSV file variable)",
        ));
    } else if let Some(v) = with.get("rows").filter(|v| !v.is_string()) {
        if rows_of(v).is_none() {
            out.push(issue(&["rows"], "`rows` must be a list of objects", "give a list variable or a query result"));
        }
    }
    match with.get("columns") {
        None => out.push(issue(
            &["columns"],
            "`columns` is missing",
            "list the CSV columns in order, e.g. `columns: [社員コード, {header: 氏名, key: name}]`",
        )),
        Some(v) => {
            if let Err((path, msg)) = columns(v) {
                let path: Vec<&str> = std::iter::once("columns").chain(path.iter().map(String::as_str)).collect();
                out.push(issue(&path, msg, "each column is a header text, or `{header: 見出し, key: field}`"));
            }
        }
    }
    if let Some(v) = with.get("csv") {
        if let Err((path, msg)) = csv_options(v, &mut CsvSpec::with_headers(&[])) {
            let path: Vec<&str> = std::iter::once("csv").chain(path.iter().map(String::as_str)).collect();
            out.push(issue(
                &path,
                msg,
                "write `csv: {charset: shift_jis | windows-31j, unmappable: {map: {髙: 高}, replace: \"?\"}}`",
            ));
        }
    }
    out
}

/// The rows of a `rows` value: a list, or a result carrying `records`.
pub fn rows_of(v: &Value) -> Option<&Vec<Value>> {
    match v {
        Value::Array(a) => Some(a),
        Value::Object(o) => o.get("records").and_then(Value::as_array),
        _ => None,
    }
}

type PathErr = (Vec<String>, String);

/// The columns of a `columns` literal.
pub fn columns(v: &Value) -> Result<Vec<Column>, PathErr> {
    let list = v.as_array().ok_or((vec![], "`columns` must be a list (a literal, not an expression)".to_string()))?;
    if list.is_empty() || list.len() > MAX_COLUMNS {
        return Err((vec![], format!("`columns` must list 1 to {MAX_COLUMNS} columns")));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let at = |m: String| (vec![i.to_string()], m);
        let col = match c {
            Value::String(h) if !h.trim().is_empty() => Column { key: h.clone(), header: h.clone() },
            Value::Object(o) => {
                let header = o.get("header").and_then(Value::as_str).filter(|h| !h.trim().is_empty());
                let header = header.ok_or_else(|| at("a column needs a `header` text".into()))?;
                let key = o.get("key").and_then(Value::as_str).unwrap_or(header);
                if let Some(k) = o.keys().find(|k| *k != "header" && *k != "key") {
                    return Err(at(format!("`{k}` is not a column setting (header, key)")));
                }
                Column { key: key.to_string(), header: header.to_string() }
            }
            other => return Err(at(format!("{other} is not a column"))),
        };
        if out.iter().any(|o: &Column| o.header == col.header) {
            return Err(at(format!("the header `{}` appears twice", col.header)));
        }
        out.push(col);
    }
    Ok(out)
}

/// Apply a `csv:` literal (charset, unmappable policy) to `spec`.
pub fn csv_options(v: &Value, spec: &mut CsvSpec) -> Result<(), PathErr> {
    let o = v.as_object().ok_or((vec![], "`csv` must be a map".to_string()))?;
    for (k, v) in o {
        match k.as_str() {
            "charset" => {
                spec.charset = match v.as_str().map(|s| s.to_ascii_lowercase().replace('_', "-")) {
                    Some(s) if s == "shift-jis" || s == "sjis" => Charset::ShiftJis,
                    Some(s) if s == "windows-31j" || s == "cp932" || s == "ms932" => Charset::Windows31j,
                    _ => return Err((vec![k.clone()], format!("unknown charset {v}; use shift_jis or windows-31j"))),
                }
            }
            "unmappable" => {
                let u = v.as_object().ok_or((vec![k.clone()], "`unmappable` must be a map".to_string()))?;
                let mut pol = Unmappable::default();
                for (uk, uv) in u {
                    let at = |m: String| (vec![k.clone(), uk.clone()], m);
                    match uk.as_str() {
                        "replace" => {
                            pol.replace = Some(uv.as_str().ok_or_else(|| at("`replace` must be a text".into()))?.into())
                        }
                        "map" => {
                            for (from, to) in uv.as_object().ok_or_else(|| at("`map` must be a map".into()))? {
                                let mut cs = from.chars();
                                let (Some(c), None) = (cs.next(), cs.next()) else {
                                    return Err(at(format!("`{from}`: map one character at a time")));
                                };
                                let to = to.as_str().ok_or_else(|| at(format!("`{from}` must map to a text")))?;
                                pol.map.insert(c, to.to_string());
                            }
                        }
                        other => return Err(at(format!("`{other}` is not an unmappable setting (map, replace)"))),
                    }
                }
                spec.unmappable = pol;
            }
            other => {
                return Err((vec![other.to_string()], format!("`{other}` is not a csv setting (charset, unmappable)")))
            }
        }
    }
    Ok(())
}

/// The API parameters of an evaluated input, defaults filled in; the issues when
/// the rules are broken.
pub fn import_params(input_value: &Value) -> Result<ImportParams, Vec<ParamIssue>> {
    let issues = check_params(input_value);
    let empty = Map::new();
    let input = input_value.as_object().unwrap_or(&empty);
    let n = |k: &str| input.get(k).and_then(Value::as_u64);
    let master_id = n("masterId");
    let mut issues = issues;
    if master_id.is_none() && issues.is_empty() {
        issues.push(issue(&["masterId"], "`masterId` must be a number", "e.g. `masterId: 0`"));
    }
    for k in ["duplicateKey", "sendPasswordEmail", "createCategory"] {
        if input.get(k).is_some_and(|v| !v.is_u64()) && !issues.iter().any(|i| i.0 == [k]) {
            issues.push(issue(&[k], format!("`{k}` must be 0 or 1"), "write 0 or 1"));
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    let master_id = master_id.expect("checked above");
    Ok(ImportParams {
        master_id,
        duplicate_key: n("duplicateKey").unwrap_or(if master_id == 18 { 1 } else { 0 }) as u8,
        send_password_email: n("sendPasswordEmail").unwrap_or(0) as u8,
        create_category: n("createCategory").unwrap_or(0) as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(v: Value) -> Vec<String> {
        check_params(&v).into_iter().map(|(p, _, _)| p.join(".")).collect()
    }

    fn ok(extra: Value) -> Value {
        let mut base = json!({"rows": "employees", "columns": ["社員コード", {"header": "氏名", "key": "name"}]});
        base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        base
    }

    #[test]
    fn every_master_id_is_known_and_others_are_refused() {
        for (m, _) in MASTERS {
            assert!(paths(ok(json!({"masterId": m}))).is_empty(), "{m}");
        }
        for bad in [json!(5), json!(17), json!(19), json!(80), json!(86), json!(-1), json!(1.5), json!(true)] {
            assert_eq!(paths(ok(json!({"masterId": bad}))), vec!["masterId"], "{bad}");
        }
        assert_eq!(paths(ok(json!({}))), vec!["masterId"]);
        assert!(paths(ok(json!({"masterId": "q_master"}))).is_empty(), "an expression is checked at run time");
    }

    #[test]
    fn duplicate_key_0_is_refused_for_approver_settings_only() {
        assert_eq!(paths(ok(json!({"masterId": 18, "duplicateKey": 0}))), vec!["duplicateKey"]);
        assert!(paths(ok(json!({"masterId": 18, "duplicateKey": 1}))).is_empty());
        assert!(paths(ok(json!({"masterId": 1, "duplicateKey": 0}))).is_empty());
        assert_eq!(paths(ok(json!({"masterId": 1, "duplicateKey": 2}))), vec!["duplicateKey"]);
        let issues = check_params(&ok(json!({"masterId": 18, "duplicateKey": 0})));
        assert!(issues[0].1.contains("masterId 18") && issues[0].2.contains("duplicateKey: 1"), "{issues:?}");
    }

    #[test]
    fn send_password_email_is_for_employees_only() {
        assert!(paths(ok(json!({"masterId": 0, "sendPasswordEmail": 1}))).is_empty());
        for m in [1, 2, 3, 4, 18, 81] {
            assert_eq!(paths(ok(json!({"masterId": m, "sendPasswordEmail": 1}))), vec!["sendPasswordEmail"], "{m}");
        }
        assert!(paths(ok(json!({"masterId": 2, "sendPasswordEmail": 0}))).is_empty(), "0 is the default everywhere");
    }

    #[test]
    fn create_category_is_for_payees_projects_and_generic_masters() {
        for m in [3, 4, 81, 82, 83, 84, 85] {
            assert!(paths(ok(json!({"masterId": m, "createCategory": 1}))).is_empty(), "{m}");
        }
        for m in [0, 1, 2, 18] {
            assert_eq!(paths(ok(json!({"masterId": m, "createCategory": 1}))), vec!["createCategory"], "{m}");
        }
    }

    #[test]
    fn columns_csv_options_and_unknown_keys() {
        assert_eq!(paths(ok(json!({"masterId": 0, "columns": []}))), vec!["columns"]);
        assert_eq!(paths(ok(json!({"masterId": 0, "columns": ["a", {"key": "b"}]}))), vec!["columns.1"]);
        assert_eq!(paths(ok(json!({"masterId": 0, "columns": ["a", "a"]}))), vec!["columns.1"]);
        assert_eq!(paths(ok(json!({"masterId": 0, "csv": {"charset": "utf-8"}}))), vec!["csv.charset"]);
        assert_eq!(
            paths(ok(json!({"masterId": 0, "csv": {"unmappable": {"map": {"髙橋": "x"}}}}))),
            vec!["csv.unmappable.map"]
        );
        let issues = check_params(&ok(json!({"masterId": 0, "masterid": 1})));
        assert_eq!(issues.len(), 1);
        assert!(issues[0].2.contains("`masterId`"), "{issues:?}");
    }

    #[test]
    fn defaults_follow_the_seed() {
        let p = import_params(&ok(json!({"masterId": 18}))).unwrap();
        assert_eq!((p.duplicate_key, p.send_password_email, p.create_category), (1, 0, 0));
        let p = import_params(&ok(json!({"masterId": 0}))).unwrap();
        assert_eq!(p.duplicate_key, 0);
        assert_eq!(p.to_json(), json!({"masterId": 0, "duplicateKey": 0, "sendPasswordEmail": 0, "createCategory": 0}));
        assert!(import_params(&ok(json!({"masterId": "0"}))).is_err());
    }
}
