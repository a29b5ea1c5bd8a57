//! The subset of kintone's query language that nagare's processes use.
//!
//! `k_ステータス in ("対応要") and 数量 >= 10 order by $id asc limit 100 offset 0`
//!
//! Supported: `=`, `!=`, `<`, `>`, `<=`, `>=`, `in`, `not in`, `like`, `not like`,
//! `and`, `or`, parentheses, `order by <field> asc|desc, ...`, `limit`, `offset`,
//! and kintone's functions as values (`TODAY()`, `FROM_TODAY(-7, DAYS)`,
//! `THIS_MONTH()`, `LOGINUSER()` ..., see [`super::query_fn`]): checked, passed
//! to kintone as written. The emulator evaluates queries with [`Cond::matches_in`]; the connector and the watcher use the parser to check
//! and compose queries (a watch adds its own `order by $id` and paging). `like` is
//! a case-insensitive substring match here; real kintone matches words.

use super::query_fn::{self, Context, Func, Resolved};
use serde_json::Value;
use std::cmp::Ordering;

/// Largest `limit` kintone accepts.
pub const MAX_LIMIT: u64 = 500;
/// Largest `offset` kintone accepts.
pub const MAX_OFFSET: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Like,
    NotLike,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Ge => ">=",
            Op::Like => "like",
            Op::NotLike => "not like",
        }
    }
}

/// A value in a condition: a literal, or one of kintone's functions.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Lit(String),
    Func(Func),
}

impl From<&str> for Operand {
    fn from(s: &str) -> Self {
        Operand::Lit(s.to_string())
    }
}

/// A condition (the part before `order by`).
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Cmp { field: String, op: Op, value: Operand },
    In { field: String, not: bool, values: Vec<Operand> },
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub cond: Option<Cond>,
    /// (field, ascending)
    pub order: Vec<(String, bool)>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// A query kintone would refuse, with kintone's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[{code}] {message}")]
pub struct QueryError {
    /// `CB_VA01` (syntax, limit, offset), `GAIA_IQ11` (unknown field), `GAIA_IQ03` (operator).
    pub code: &'static str,
    pub message: String,
}

fn syntax(msg: impl Into<String>) -> QueryError {
    QueryError { code: "CB_VA01", message: msg.into() }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Sym(&'static str),
}

fn tokenize(src: &str) -> Result<Vec<Tok>, QueryError> {
    let mut out = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(e) => s.push(e),
                        None => return Err(syntax("the query ends inside a string")),
                    },
                    Some('"') => break,
                    Some(ch) => s.push(ch),
                    None => return Err(syntax("a string in the query is not closed (missing `\"`)")),
                }
            }
            out.push(Tok::Str(s));
        } else if "(),".contains(c) {
            chars.next();
            out.push(Tok::Sym(match c {
                '(' => "(",
                ')' => ")",
                _ => ",",
            }));
        } else if "=!<>".contains(c) {
            chars.next();
            let two = chars.peek() == Some(&'=');
            let sym = match (c, two) {
                ('=', _) => "=",
                ('!', true) => "!=",
                ('<', true) => "<=",
                ('>', true) => ">=",
                ('<', false) => "<",
                ('>', false) => ">",
                _ => return Err(syntax("`!` must be followed by `=`")),
            };
            if two && c != '=' {
                chars.next();
            }
            out.push(Tok::Sym(sym));
        } else {
            let mut w = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || "(),=!<>\"".contains(ch) {
                    break;
                }
                w.push(ch);
                chars.next();
            }
            out.push(Tok::Word(w));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn peek_kw_at(&self, off: usize, kw: &str) -> bool {
        matches!(self.toks.get(self.pos + off), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), QueryError> {
        match self.next() {
            Some(Tok::Sym(x)) if x == s => Ok(()),
            other => Err(syntax(format!("expected `{s}`, found {}", describe(other.as_ref())))),
        }
    }

    fn at_clause_end(&self) -> bool {
        self.peek().is_none() || self.peek_kw("order") || self.peek_kw("limit") || self.peek_kw("offset")
    }

    fn or(&mut self) -> Result<Cond, QueryError> {
        let mut parts = vec![self.and()?];
        while self.peek_kw("or") {
            self.next();
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.pop().expect("one") } else { Cond::Or(parts) })
    }

    fn and(&mut self) -> Result<Cond, QueryError> {
        let mut parts = vec![self.atom()?];
        while self.peek_kw("and") {
            self.next();
            parts.push(self.atom()?);
        }
        Ok(if parts.len() == 1 { parts.pop().expect("one") } else { Cond::And(parts) })
    }

    fn value(&mut self) -> Result<Operand, QueryError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Operand::Lit(s)),
            Some(Tok::Word(w)) if w.parse::<f64>().is_ok() => Ok(Operand::Lit(w)),
            Some(Tok::Word(w)) if self.peek() == Some(&Tok::Sym("(")) => {
                self.next();
                let mut args = Vec::new();
                if self.peek() != Some(&Tok::Sym(")")) {
                    loop {
                        match self.next() {
                            Some(Tok::Word(a)) | Some(Tok::Str(a)) => args.push(a),
                            other => {
                                return Err(syntax(format!(
                                    "expected an argument of `{w}()`, found {}",
                                    describe(other.as_ref())
                                )))
                            }
                        }
                        if self.peek() == Some(&Tok::Sym(",")) {
                            self.next();
                        } else {
                            break;
                        }
                    }
                }
                self.expect_sym(")")?;
                Ok(Operand::Func(query_fn::check(&w, &args)?))
            }
            other => Err(syntax(format!("expected a value in quotes, found {}", describe(other.as_ref())))),
        }
    }

    fn atom(&mut self) -> Result<Cond, QueryError> {
        if self.peek() == Some(&Tok::Sym("(")) {
            self.next();
            let c = self.or()?;
            self.expect_sym(")")?;
            return Ok(c);
        }
        let field = match self.next() {
            Some(Tok::Word(w)) if !is_keyword(&w) => w,
            other => return Err(syntax(format!("expected a field code, found {}", describe(other.as_ref())))),
        };
        if self.peek_kw("in") || (self.peek_kw("not") && self.peek_kw_at(1, "in")) {
            let not = self.peek_kw("not");
            self.pos += if not { 2 } else { 1 };
            self.expect_sym("(")?;
            let mut values = vec![self.value()?];
            while self.peek() == Some(&Tok::Sym(",")) {
                self.next();
                values.push(self.value()?);
            }
            self.expect_sym(")")?;
            return Ok(Cond::In { field, not, values });
        }
        let op = match self.next() {
            Some(Tok::Sym("=")) => Op::Eq,
            Some(Tok::Sym("!=")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">=")) => Op::Ge,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("like") => Op::Like,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("not") && self.peek_kw("like") => {
                self.next();
                Op::NotLike
            }
            other => {
                return Err(syntax(format!("expected an operator after `{field}`, found {}", describe(other.as_ref()))))
            }
        };
        Ok(Cond::Cmp { field, op, value: self.value()? })
    }

    fn number(&mut self, what: &str) -> Result<u64, QueryError> {
        match self.next() {
            Some(Tok::Word(w)) => w.parse().map_err(|_| syntax(format!("`{what}` needs a whole number, not `{w}`"))),
            other => Err(syntax(format!("`{what}` needs a number, found {}", describe(other.as_ref())))),
        }
    }
}

fn is_keyword(w: &str) -> bool {
    ["and", "or", "in", "not", "like", "order", "by", "limit", "offset", "asc", "desc"]
        .iter()
        .any(|k| w.eq_ignore_ascii_case(k))
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "the end".into(),
        Some(Tok::Word(w)) => format!("`{w}`"),
        Some(Tok::Str(s)) => format!("\"{s}\""),
        Some(Tok::Sym(s)) => format!("`{s}`"),
    }
}

/// Parse a whole query (an empty one matches everything).
pub fn parse(src: &str) -> Result<Query, QueryError> {
    let mut p = Parser { toks: tokenize(src)?, pos: 0 };
    let mut q = Query::default();
    if !p.at_clause_end() {
        q.cond = Some(p.or()?);
    }
    if p.peek_kw("order") {
        p.next();
        if !p.peek_kw("by") {
            return Err(syntax("`order` must be followed by `by`"));
        }
        p.next();
        loop {
            let field = match p.next() {
                Some(Tok::Word(w)) if !is_keyword(&w) => w,
                other => {
                    return Err(syntax(format!(
                        "expected a field after `order by`, found {}",
                        describe(other.as_ref())
                    )))
                }
            };
            let asc = if p.peek_kw("asc") {
                p.next();
                true
            } else if p.peek_kw("desc") {
                p.next();
                false
            } else {
                false
            };
            q.order.push((field, asc));
            if p.peek() == Some(&Tok::Sym(",")) {
                p.next();
            } else {
                break;
            }
        }
    }
    if p.peek_kw("limit") {
        p.next();
        let n = p.number("limit")?;
        if n > MAX_LIMIT {
            return Err(QueryError { code: "GAIA_QU01", message: format!("limit must be {MAX_LIMIT} or less") });
        }
        q.limit = Some(n);
    }
    if p.peek_kw("offset") {
        p.next();
        let n = p.number("offset")?;
        if n > MAX_OFFSET {
            return Err(QueryError { code: "GAIA_QU02", message: format!("offset must be {MAX_OFFSET} or less") });
        }
        q.offset = Some(n);
    }
    if let Some(t) = p.peek() {
        return Err(syntax(format!("unexpected {} in the query", describe(Some(t)))));
    }
    Ok(q)
}

/// Parse a condition only: no `order by`, `limit` or `offset` (a watch adds its own).
pub fn parse_condition(src: &str) -> Result<Option<Cond>, QueryError> {
    let q = parse(src)?;
    if !q.order.is_empty() || q.limit.is_some() || q.offset.is_some() {
        return Err(syntax("write only the condition here, without `order by`, `limit` or `offset`"));
    }
    Ok(q.cond)
}

/// Quote a value for a query: `"..."` with `"` and `\` escaped.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Kinds of field as the query language treats them.
fn class(ty: &str) -> &'static str {
    match ty {
        "NUMBER" | "CALC" | "RECORD_NUMBER" | "__ID__" | "__REVISION__" => "number",
        "DATE" | "TIME" | "DATETIME" | "CREATED_TIME" | "UPDATED_TIME" => "time",
        "RADIO_BUTTON" | "DROP_DOWN" | "CHECK_BOX" | "MULTI_SELECT" | "STATUS" => "choice",
        "MULTI_LINE_TEXT" | "RICH_TEXT" => "longtext",
        _ => "text",
    }
}

impl Cond {
    /// Check field codes and operators against the app's fields (`type_of` gives a
    /// field's kintone type), as kintone does before running a query.
    pub fn check(&self, type_of: &dyn Fn(&str) -> Option<String>) -> Result<(), QueryError> {
        match self {
            Cond::And(v) | Cond::Or(v) => v.iter().try_for_each(|c| c.check(type_of)),
            Cond::Cmp { field, op, .. } => {
                let ty = known(field, type_of)?;
                let ok = match class(&ty) {
                    "choice" => false,
                    "longtext" => matches!(op, Op::Like | Op::NotLike),
                    "number" | "time" => !matches!(op, Op::Like | Op::NotLike),
                    _ => !matches!(op, Op::Lt | Op::Gt | Op::Le | Op::Ge),
                };
                if ok {
                    Ok(())
                } else {
                    Err(QueryError {
                        code: "GAIA_IQ03",
                        message: format!("「{}」演算子はフィールド（{field}）には使用できません。", op.text()),
                    })
                }
            }
            Cond::In { field, .. } => {
                let ty = known(field, type_of)?;
                if class(&ty) == "longtext" {
                    return Err(QueryError {
                        code: "GAIA_IQ03",
                        message: format!("「in」演算子はフィールド（{field}）には使用できません。"),
                    });
                }
                Ok(())
            }
        }
    }

    /// Does a record match, with functions evaluated now in JST by nobody?
    pub fn matches(&self, get: &dyn Fn(&str) -> Option<(String, Value)>) -> bool {
        self.matches_in(get, &Context::jst(chrono::Utc::now(), None))
    }

    /// Does a record match? `get` gives a field's `(type, value)`; `cx` is what
    /// functions are evaluated with.
    pub fn matches_in(&self, get: &dyn Fn(&str) -> Option<(String, Value)>, cx: &Context) -> bool {
        match self {
            Cond::And(v) => v.iter().all(|c| c.matches_in(get, cx)),
            Cond::Or(v) => v.iter().any(|c| c.matches_in(get, cx)),
            Cond::In { field, not, values } => {
                let Some((ty, v)) = get(field) else { return *not };
                let hit = match &v {
                    Value::Array(items) => items.iter().any(|i| values.iter().any(|x| eq_operand(&ty, i, x, cx))),
                    _ => values.iter().any(|x| eq_operand(&ty, &v, x, cx)),
                };
                hit != *not
            }
            Cond::Cmp { field, op, value: Operand::Func(f) } => {
                let Some((_, v)) = get(field) else { return matches!(op, Op::Ne | Op::NotLike) };
                match f.resolve(cx) {
                    Resolved::Code(code) => {
                        let hit = code.is_some_and(|c| text(&v) == c);
                        match op {
                            Op::Eq => hit,
                            Op::Ne => !hit,
                            _ => false,
                        }
                    }
                    Resolved::Span(start, end) => {
                        let Some(t) = query_fn::instant(&text(&v), cx) else { return *op == Op::Ne };
                        match op {
                            Op::Eq => start <= t && t < end,
                            Op::Ne => !(start <= t && t < end),
                            Op::Lt => t < start,
                            Op::Le => t < end,
                            Op::Gt => t >= end,
                            Op::Ge => t >= start,
                            Op::Like | Op::NotLike => false,
                        }
                    }
                }
            }
            Cond::Cmp { field, op, value: Operand::Lit(value) } => {
                let Some((ty, v)) = get(field) else { return matches!(op, Op::Ne | Op::NotLike) };
                match op {
                    Op::Eq => eq(&ty, &v, value),
                    Op::Ne => !eq(&ty, &v, value),
                    Op::Like => text(&v).to_lowercase().contains(&value.to_lowercase()),
                    Op::NotLike => !text(&v).to_lowercase().contains(&value.to_lowercase()),
                    Op::Lt | Op::Gt | Op::Le | Op::Ge => {
                        if text(&v).is_empty() {
                            return false;
                        }
                        let ord = compare(&ty, &text(&v), value);
                        match op {
                            Op::Lt => ord == Ordering::Less,
                            Op::Gt => ord == Ordering::Greater,
                            Op::Le => ord != Ordering::Greater,
                            _ => ord != Ordering::Less,
                        }
                    }
                }
            }
        }
    }
}

fn known(field: &str, type_of: &dyn Fn(&str) -> Option<String>) -> Result<String, QueryError> {
    type_of(field).ok_or_else(|| QueryError {
        code: "GAIA_IQ11",
        message: format!("指定したフィールド（{field}）が見つかりません。"),
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Object(o) => o.get("code").and_then(Value::as_str).unwrap_or_default().to_string(),
        other => other.to_string(),
    }
}

fn eq_operand(ty: &str, v: &Value, x: &Operand, cx: &Context) -> bool {
    match x {
        Operand::Lit(x) => eq(ty, v, x),
        Operand::Func(f) => match f.resolve(cx) {
            Resolved::Code(code) => code.is_some_and(|c| text(v) == c),
            Resolved::Span(start, end) => query_fn::instant(&text(v), cx).is_some_and(|t| start <= t && t < end),
        },
    }
}

fn eq(ty: &str, v: &Value, x: &str) -> bool {
    let t = text(v);
    if t.is_empty() || x.is_empty() {
        return t.is_empty() && x.is_empty();
    }
    compare(ty, &t, x) == Ordering::Equal
}

/// Compare a stored value with a query value by the field's kind.
pub fn compare(ty: &str, a: &str, b: &str) -> Ordering {
    match class(ty) {
        "number" => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => a.cmp(b),
        },
        "time" => norm_time(a).cmp(&norm_time(b)),
        _ => a.cmp(b),
    }
}

/// Datetimes to UTC text (`2026-12-01T10:00:00+0900` and `…+09:00` both read).
fn norm_time(s: &str) -> String {
    if let Some(u) = super::fields::utc(s) {
        return u;
    }
    if let Ok(dt) = chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%z") {
        return dt.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec() -> serde_json::Map<String, Value> {
        json!({
            "$id": {"type": "__ID__", "value": "12"},
            "k_ステータス": {"type": "RADIO_BUTTON", "value": "対応要"},
            "k_氏名": {"type": "SINGLE_LINE_TEXT", "value": "山田 太郎"},
            "数量": {"type": "NUMBER", "value": "9"},
            "タグ": {"type": "CHECK_BOX", "value": ["A", "B"]},
            "日時": {"type": "DATETIME", "value": "2026-12-01T01:00:00Z"},
            "メモ": {"type": "MULTI_LINE_TEXT", "value": "至急 対応"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn matches(q: &str) -> bool {
        let r = rec();
        let get = |f: &str| r.get(f).map(|v| (v["type"].as_str().unwrap().to_string(), v["value"].clone()));
        let type_of = |f: &str| r.get(f).map(|v| v["type"].as_str().unwrap().to_string());
        let q = parse(q).unwrap();
        let c = q.cond.unwrap();
        c.check(&type_of).unwrap();
        c.matches(&get)
    }

    #[test]
    fn parses_the_whole_subset() {
        let q = parse(
            r#"k_ステータス in ("対応要", "3_対応中") and $id > 10 order by $id asc, 数量 desc limit 100 offset 20"#,
        )
        .unwrap();
        assert_eq!(
            q,
            Query {
                cond: Some(Cond::And(vec![
                    Cond::In {
                        field: "k_ステータス".into(),
                        not: false,
                        values: vec!["対応要".into(), "3_対応中".into()]
                    },
                    Cond::Cmp { field: "$id".into(), op: Op::Gt, value: "10".into() },
                ])),
                order: vec![("$id".into(), true), ("数量".into(), false)],
                limit: Some(100),
                offset: Some(20),
            }
        );
        assert_eq!(parse("").unwrap(), Query::default());
        assert_eq!(parse("limit 5").unwrap().limit, Some(5));
    }

    #[test]
    fn evaluates() {
        assert!(matches(r#"k_ステータス in ("対応要")"#));
        assert!(!matches(r#"k_ステータス not in ("対応要")"#));
        assert!(matches(r#"k_氏名 = "山田 太郎" and 数量 < 10"#));
        assert!(matches(r#"k_氏名 != "佐藤" and (数量 > 100 or $id = 12)"#));
        assert!(!matches(r#"数量 >= 10"#), "numbers compare as numbers, not text");
        assert!(matches(r#"タグ in ("B")"#));
        assert!(matches(r#"日時 > "2026-12-01T09:59:00+0900""#));
        assert!(matches(r#"メモ like "至急""#));
        assert!(matches(r#"k_氏名 = "say \"hi\"" or 数量 = 9"#));
    }

    #[test]
    fn refuses_what_kintone_refuses() {
        let r = rec();
        let type_of = |f: &str| r.get(f).map(|v| v["type"].as_str().unwrap().to_string());
        let check = |q: &str| parse(q).and_then(|q| q.cond.unwrap().check(&type_of)).unwrap_err();
        assert_eq!(check(r#"k_ステータス = "対応要""#).code, "GAIA_IQ03");
        assert_eq!(check(r#"メモ = "x""#).code, "GAIA_IQ03");
        assert_eq!(check(r#"k_ステ in ("x")"#).code, "GAIA_IQ11");
        assert_eq!(parse("数量 > 1 limit 501").unwrap_err().code, "GAIA_QU01");
        assert_eq!(parse("数量 > 1 offset 10001").unwrap_err().code, "GAIA_QU02");
        for bad in [r#"k_氏名 = "open"#, "数量 >", r#"k_氏名 in "x""#, "and", r#"数量 = TOMORO()"#, "数量 = 1 extra"]
        {
            assert_eq!(parse(bad).unwrap_err().code, "CB_VA01", "{bad}");
        }
        assert!(parse_condition(r#"数量 = 1 order by $id"#).is_err());
    }

    #[test]
    fn quoting_round_trips() {
        let q = parse(&format!("k_氏名 = {}", quote(r#"a "b" \c"#))).unwrap();
        assert_eq!(q.cond, Some(Cond::Cmp { field: "k_氏名".into(), op: Op::Eq, value: r#"a "b" \c"#.into() }));
    }
}
