//! Expressions and scripts in rhai, compiled once at deploy, run with hard limits.
//!
//! One shared [`rhai::Engine`] is configured so that an expression can neither reach
//! outside the engine (no `eval`, no modules, no file or network functions) nor run
//! without end (operation, depth and size limits). Strict variables make every name
//! an expression uses a declared process variable, checked at compile time.
//!
//! Bounds, and what happens when one is hit (the evaluation fails with a message
//! that names the bound; at run time that is an incident on the one instance):
//! operations ([`MAX_OPERATIONS`]), wall time per step ([`limits::time_limit`]),
//! one string ([`MAX_STRING`]), one array or map ([`MAX_COLLECTION`]), all data a
//! script holds ([`MAX_DATA_GROWTH`] beyond its input), a result's JSON size
//! ([`MAX_VALUE_BYTES`]) and nesting ([`MAX_NESTING`]); `print`/`debug` output is
//! cut to [`MAX_PRINT_BYTES`] a line and [`MAX_PRINT_LINES`] lines an evaluation.

mod dates;
mod limits;
mod org_fns;

pub use limits::{
    set_time_limit, time_limit, EventBudget, DEFAULT_TIME_LIMIT, MAX_DATA_GROWTH, MAX_NESTING, MAX_PRINT_BYTES,
    MAX_PRINT_LINES,
};

use chrono::{DateTime, SecondsFormat, Utc};
use rhai::{Dynamic, Engine, Scope, AST};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Process variables: declared name → JSON value.
pub type Vars = BTreeMap<String, Value>;

/// Most rhai operations one evaluation may take; `loop {}` stops here.
pub const MAX_OPERATIONS: u64 = 200_000;
/// Longest string an expression may build.
pub const MAX_STRING: usize = 1 << 20;
/// Most elements in an array or map an expression may build.
pub const MAX_COLLECTION: usize = 10_000;
/// Largest value (as JSON) an expression may give or `to_json` may build: twice the
/// 1 MiB a variable may hold, so conversion stops early instead of building
/// gigabytes; the variable's own type check then applies the exact limit.
pub const MAX_VALUE_BYTES: usize = 2 * crate::types::MAX_JSON_BYTES;

/// Names every expression may read besides the declared variables: the engine
/// clock and the id of the running instance (so a step can write it to another
/// system, e.g. kintone's `k_Qid`).
pub const BUILTIN_NAMES: &[&str] = &["now", "instance_id", "started_by"];

/// A compile or run failure, with its position inside the expression (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub message: String,
    pub line: usize,
    pub col: usize,
}

/// A compiled expression or script and the source it came from.
#[derive(Debug, Clone)]
pub struct Expr {
    pub source: String,
    ast: Arc<AST>,
    /// Every word of the source (letters, digits, `_`): a superset of the variables
    /// it can read or write. Only those are put in its scope, so a large variable
    /// the expression does not mention costs nothing to evaluate it.
    words: Arc<std::collections::HashSet<String>>,
}

/// The shared, configured rhai engine. Crate-private: rhai's types are not part
/// of nagare's public API (a rhai upgrade must not break apps).
pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(build_engine)
}

fn build_engine() -> Engine {
    let mut e = Engine::new();
    e.set_strict_variables(true);
    e.set_max_operations(MAX_OPERATIONS);
    e.set_max_call_levels(32);
    e.set_max_expr_depths(64, 32);
    e.set_max_string_size(MAX_STRING);
    e.set_max_array_size(MAX_COLLECTION);
    e.set_max_map_size(MAX_COLLECTION);
    e.set_max_functions(64);
    e.set_max_variables(256);
    e.disable_symbol("eval");
    // Wall time and total data: see `limits` (rhai's own limits count per value).
    e.on_progress(limits::on_progress);
    #[allow(deprecated)] // "volatile", not deprecated: rhai is pinned in Cargo.lock
    e.on_var(|_, _, ctx| limits::on_var(ctx.scope()));
    e.on_print(|s| {
        if let Some(line) = limits::admit_print(s) {
            tracing::info!(target: "nagare::script", "{line}");
        }
    });
    e.on_debug(|s, _, pos| {
        if let Some(line) = limits::admit_print(s) {
            tracing::debug!(target: "nagare::script", %pos, "{line}");
        }
    });
    dates::register(&mut e);
    org_fns::register(&mut e);
    e.register_fn("is_blank", |v: Dynamic| {
        v.is_unit() || v.clone().into_immutable_string().map(|s| s.trim().is_empty()).unwrap_or(false)
    });
    // Replaces rhai's own, which builds the whole text before any size check (and
    // writes Rust escapes, not JSON): this one stops at the string limit.
    e.register_fn("to_json", |m: &mut rhai::Map| -> Result<String, Box<rhai::EvalAltResult>> {
        let mut left = MAX_STRING;
        let v = convert_map(m, &mut left, 0).map_err(|e| e.message(MAX_STRING))?;
        Ok(v.to_string())
    });
    e
}

/// Canonical text form of a datetime in variables: RFC 3339, UTC, seconds.
pub fn format_datetime(dt: DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Compile `source` so that it may read exactly `names` (plus the built-ins).
pub fn compile<'a>(source: &str, names: impl IntoIterator<Item = &'a str>) -> Result<Expr, ExprError> {
    let mut scope = Scope::new();
    for n in BUILTIN_NAMES.iter().copied().chain(names) {
        scope.push_dynamic(n.to_string(), Dynamic::UNIT);
    }
    let ast = engine().compile_with_scope(&scope, source).map_err(|e| {
        let pos = e.position();
        ExprError { message: e.err_type().to_string(), line: pos.line().unwrap_or(1), col: pos.position().unwrap_or(1) }
    })?;
    Ok(Expr { source: source.to_string(), ast: Arc::new(ast), words: Arc::new(words_of(source)) })
}

/// The maximal runs of letters, digits and `_` in `source` (Japanese included).
fn words_of(source: &str) -> std::collections::HashSet<String> {
    source.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// The values an expression sees while it runs.
pub struct Env<'a> {
    pub vars: &'a Vars,
    /// Declared variables, so unset ones read as `()` instead of "not found".
    pub declared: &'a [String],
    pub now: DateTime<Utc>,
    /// The running instance (0 where there is none yet, e.g. a start trigger).
    pub instance: u64,
    /// Who started it (`()` for starts by a timer, message or watch): a step can
    /// act in the starter's name, e.g. with their CloudSign credential.
    pub started_by: Option<&'a str>,
    /// Extra read-only values, such as a connector's `result`.
    pub extra: &'a [(&'a str, &'a Value)],
}

impl Env<'_> {
    /// The scope, and the size of the data in it as [`limits`] counts it (measured
    /// while converting, so the baseline of the data bound costs nothing extra).
    fn scope(&self, words: &std::collections::HashSet<String>) -> (Scope<'static>, usize) {
        let mut held = 0;
        let mut scope = Scope::with_capacity(self.declared.len() + 2 + self.extra.len());
        scope.push_constant("now", Dynamic::from(format_datetime(self.now)));
        scope.push_constant("instance_id", Dynamic::from_int(i64::try_from(self.instance).unwrap_or(i64::MAX)));
        scope.push_constant("started_by", self.started_by.map_or(Dynamic::UNIT, |s| Dynamic::from(s.to_string())));
        // Only the variables the expression mentions (a name it does not mention
        // cannot be read or assigned by it).
        for name in self.declared.iter().filter(|n| words.contains(n.as_str())) {
            let v = self.vars.get(name).map(|v| to_dynamic_counting(v, &mut held)).unwrap_or(Dynamic::UNIT);
            held += name.len() + limits::VALUE_COST;
            scope.push_dynamic(name.clone(), v);
        }
        for (name, v) in self.extra {
            held += name.len();
            scope.push_constant_dynamic(name.to_string(), to_dynamic_counting(v, &mut held));
        }
        (scope, held + 64)
    }
}

fn run_error(e: rhai::EvalAltResult, run: &limits::Running) -> ExprError {
    let pos = e.position();
    let message = match e {
        _ if run.stopped().is_some() => run.stopped().unwrap_or_default(),
        rhai::EvalAltResult::ErrorTooManyOperations(_) => {
            format!("expression ran for more than {MAX_OPERATIONS} operations and was stopped (an endless loop?)")
        }
        // A helper's own error (`add_days` out of range...): its text says it all;
        // the position is in `line`/`col`.
        rhai::EvalAltResult::ErrorRuntime(ref v, _) if v.is_string() => v.to_string(),
        ref other => other.to_string(),
    };
    ExprError { message, line: pos.line().unwrap_or(1), col: pos.position().unwrap_or(1) }
}

impl Expr {
    /// The compiled form, for deploy-time checks that read it (static types).
    pub(crate) fn ast(&self) -> &AST {
        &self.ast
    }

    /// Evaluate to a JSON value.
    pub fn eval(&self, env: &Env<'_>) -> Result<Value, ExprError> {
        let (mut scope, held) = env.scope(&self.words);
        let run = limits::Running::start(held);
        let out = engine().eval_ast_with_scope::<Dynamic>(&mut scope, &self.ast).map_err(|e| run_error(*e, &run))?;
        from_dynamic(&out).map_err(|message| ExprError { message, line: 1, col: 1 })
    }

    /// Evaluate a condition; anything but `true` or `false` is an error.
    pub fn eval_bool(&self, env: &Env<'_>) -> Result<bool, ExprError> {
        let (mut scope, held) = env.scope(&self.words);
        let run = limits::Running::start(held);
        let out = engine().eval_ast_with_scope::<Dynamic>(&mut scope, &self.ast).map_err(|e| run_error(*e, &run))?;
        out.as_bool().map_err(|ty| ExprError {
            message: format!("a condition must give true or false, this one gave a {ty}"),
            line: 1,
            col: 1,
        })
    }

    /// Run a script and return the declared variables whose values it changed.
    pub fn run_script(&self, env: &Env<'_>) -> Result<Vec<(String, Value)>, ExprError> {
        let (mut scope, held) = env.scope(&self.words);
        let run = limits::Running::start(held);
        engine().run_ast_with_scope(&mut scope, &self.ast).map_err(|e| run_error(*e, &run))?;
        drop(run);
        let mut changed = Vec::new();
        for name in env.declared {
            let Some(d) = scope.get(name) else { continue };
            let new = from_dynamic(d).map_err(|m| ExprError { message: format!("`{name}`: {m}"), line: 1, col: 1 })?;
            let old = env.vars.get(name).unwrap_or(&Value::Null);
            if &new != old {
                changed.push((name.clone(), new));
            }
        }
        Ok(changed)
    }
}

/// JSON → rhai.
pub fn to_dynamic(v: &Value) -> Dynamic {
    to_dynamic_counting(v, &mut 0)
}

/// JSON → rhai, adding the size of the result (as [`limits`] counts it) to `held`.
fn to_dynamic_counting(v: &Value, held: &mut usize) -> Dynamic {
    *held += limits::VALUE_COST;
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => {
            *held += s.len();
            Dynamic::from(s.clone())
        }
        Value::Array(a) => Dynamic::from_array(a.iter().map(|v| to_dynamic_counting(v, held)).collect()),
        Value::Object(o) => {
            let mut m = rhai::Map::new();
            for (k, v) in o {
                *held += k.len();
                m.insert(k.as_str().into(), to_dynamic_counting(v, held));
            }
            Dynamic::from_map(m)
        }
    }
}

/// rhai → JSON; values with no JSON form (functions, NaN, ...) are refused, and so
/// are values larger than [`MAX_VALUE_BYTES`] of JSON or nested deeper than
/// [`MAX_NESTING`] (checked while building, so a huge value is never built).
pub fn from_dynamic(d: &Dynamic) -> Result<Value, String> {
    from_dynamic_within(d, MAX_VALUE_BYTES)
}

/// [`from_dynamic`] with a size bound of `max_bytes` (estimated JSON bytes).
fn from_dynamic_within(d: &Dynamic, max_bytes: usize) -> Result<Value, String> {
    let mut left = max_bytes;
    convert(d, &mut left, 0).map_err(|e| e.message(max_bytes))
}

enum Convert {
    TooLarge,
    Other(String),
}

impl Convert {
    fn message(self, max_bytes: usize) -> String {
        match self {
            Convert::TooLarge => {
                format!("the value is larger than {} KiB of JSON, more than any variable may hold", max_bytes >> 10)
            }
            Convert::Other(m) => m,
        }
    }
}

impl From<String> for Convert {
    fn from(m: String) -> Self {
        Convert::Other(m)
    }
}

impl From<&str> for Convert {
    fn from(m: &str) -> Self {
        Convert::Other(m.to_string())
    }
}

/// Take `n` estimated bytes from the budget.
fn spend(left: &mut usize, n: usize) -> Result<(), Convert> {
    *left = left.checked_sub(n).ok_or(Convert::TooLarge)?;
    Ok(())
}

fn convert(d: &Dynamic, left: &mut usize, depth: usize) -> Result<Value, Convert> {
    spend(left, 4)?;
    if depth > MAX_NESTING {
        return Err(format!("the value is nested deeper than {MAX_NESTING} levels").into());
    }
    if d.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = d.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = d.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = d.as_float() {
        spend(left, 20)?;
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("the number {f} cannot be stored").into());
    }
    if let Ok(c) = d.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if d.is_string() {
        let s = d.read_lock::<rhai::ImmutableString>().ok_or("string is locked")?;
        spend(left, s.len())?;
        return Ok(Value::String(s.to_string()));
    }
    if d.is_array() {
        let arr = d.read_lock::<rhai::Array>().ok_or("array is locked")?;
        return arr.iter().map(|v| convert(v, left, depth + 1)).collect::<Result<Vec<_>, _>>().map(Value::Array);
    }
    if d.is_map() {
        let map = d.read_lock::<rhai::Map>().ok_or("map is locked")?;
        return convert_map(&map, left, depth);
    }
    Err(format!("a value of type `{}` cannot be stored in a variable", d.type_name()).into())
}

fn convert_map(map: &rhai::Map, left: &mut usize, depth: usize) -> Result<Value, Convert> {
    let mut o = serde_json::Map::new();
    for (k, v) in map.iter() {
        spend(left, k.len() + 3)?;
        o.insert(k.to_string(), convert(v, left, depth + 1)?);
    }
    Ok(Value::Object(o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env<'a>(vars: &'a Vars, declared: &'a [String]) -> Env<'a> {
        Env { vars, declared, now: DateTime::UNIX_EPOCH, instance: 7, started_by: None, extra: &[] }
    }

    #[test]
    fn undeclared_variable_is_a_compile_error() {
        let err = compile("amout > 3", ["amount"]).unwrap_err();
        assert!(err.message.contains("amout"), "{err:?}");
    }

    #[test]
    fn endless_loop_is_stopped() {
        let e = compile("loop {}", []).unwrap();
        let vars = Vars::new();
        let err = e.eval(&env(&vars, &[])).unwrap_err();
        assert!(err.message.contains("endless loop"), "{err:?}");
    }

    #[test]
    fn script_reports_changed_variables() {
        let declared = vec!["count".to_string(), "other".to_string()];
        let e = compile("count += 1;", declared.iter().map(String::as_str)).unwrap();
        let vars: Vars = [("count".to_string(), json!(1)), ("other".to_string(), json!("x"))].into();
        let changed = e.run_script(&env(&vars, &declared)).unwrap();
        assert_eq!(changed, vec![("count".to_string(), json!(2))]);
    }

    #[test]
    fn unset_variable_compares_false() {
        let declared = vec!["s".to_string()];
        let e = compile(r#"s == "対応要""#, declared.iter().map(String::as_str)).unwrap();
        let vars = Vars::new();
        assert!(!e.eval_bool(&env(&vars, &declared)).unwrap());
    }

    #[test]
    fn instance_id_is_readable() {
        let e = compile(r#""Q-" + instance_id"#, []).unwrap();
        let vars = Vars::new();
        assert_eq!(e.eval(&env(&vars, &[])).unwrap(), json!("Q-7"));
    }

    #[test]
    fn date_helpers() {
        let e = compile(r#"add_days("2026-11-23T00:00:00Z", 3)"#, []).unwrap();
        let vars = Vars::new();
        assert_eq!(e.eval(&env(&vars, &[])).unwrap(), json!("2026-11-26T00:00:00Z"));
        assert_eq!(eval_src(r#"add_days("2026-11-30", 1)"#), Ok(json!("2026-12-01")));
        assert_eq!(eval_src(r#"date_in("2026-11-30T20:00:00Z", "Asia/Tokyo")"#), Ok(json!("2026-12-01")));
        assert_eq!(eval_src(r#"date_in("2026-11-30T20:00:00Z", "America/New_York")"#), Ok(json!("2026-11-30")));
        assert_eq!(eval_src(r#"date_jst("2026-11-30T20:00:00Z")"#), Ok(json!("2026-12-01")));
        // The Japanese business calendar: Golden Week, a datetime by its date in Japan.
        assert_eq!(eval_src(r#"add_business_days("2026-05-01", 1)"#), Ok(json!("2026-05-07")));
        assert_eq!(eval_src(r#"is_business_day("2026-05-06T01:00:00Z")"#), Ok(json!(false)));
        assert_eq!(eval_src(r#"next_business_day("2026-05-02")"#), Ok(json!("2026-05-07")));
        assert_eq!(eval_src(r#"holiday_name("2026-09-22")"#), Ok(json!("国民の休日")));
        assert_eq!(eval_src(r#"holiday_name("2026-12-01")"#), Ok(json!(null)));
        assert_eq!(eval_src(r#"wareki("2026-12-01")"#), Ok(json!("令和8年12月1日")));
        assert!(eval_src(r#"add_business_days("2026-05-01", 99999999)"#).is_err());
        assert!(eval_src(r#"date_in("2026-11-30T20:00:00Z", "Mars/Olympus")"#).unwrap_err().contains("IANA"));
    }

    /// Evaluate with `日数` = 100000000 and `MIB`, a string of 1 MiB (the most one
    /// string may hold), as inputs.
    fn eval_src(src: &str) -> Result<Value, String> {
        let declared = vec!["日数".to_string(), "MIB".to_string()];
        let vars: Vars =
            [("日数".to_string(), json!(100_000_000)), ("MIB".to_string(), json!("x".repeat(MAX_STRING)))].into();
        let e = compile(src, declared.iter().map(String::as_str)).map_err(|e| e.message)?;
        e.eval(&Env {
            vars: &vars,
            declared: &declared,
            now: "2026-11-23T00:00:00Z".parse().unwrap(),
            instance: 1,
            started_by: None,
            extra: &[],
        })
        .map_err(|e| e.message)
    }

    /// Finding 2 of issue 10: these panicked (`DateTime + TimeDelta overflowed`) and
    /// ended the server.
    #[test]
    fn date_arithmetic_out_of_range_is_an_error_not_a_panic() {
        for src in [
            "add_days(now, 日数)",
            "add_days(now, 9223372036854775807)",
            "add_hours(now, 9223372036854775807)",
            "add_minutes(now, -9223372036854775808)",
            "add_hours(now, 日数 * 1000)",
            r#"add_days("2026-11-23", 日数)"#,
            r#"add_days("9999-12-31", 1)"#,
            r#"add_minutes("9999-12-31T23:59:00Z", 1)"#,
            r#"add_days("0000-01-01T00:00:00Z", -1)"#,
        ] {
            let err = eval_src(src).unwrap_err();
            assert!(err.contains("outside years 0000") || err.contains("out of range"), "{src}: {err}");
        }
        assert_eq!(eval_src(r#"add_days("9999-12-30", 1)"#), Ok(json!("9999-12-31")));
        assert_eq!(eval_src("add_days(now, 日数 / 100000)"), Ok(json!("2029-08-19T00:00:00Z")));
    }

    /// Finding 5: a 1 MB string copied into 5,000 map entries (5 GB once written out)
    /// passed rhai's per-value checks and aborted the server when stored.
    #[test]
    fn a_big_string_copied_into_many_entries_is_stopped() {
        let src = r#"let big = MIB; let m = #{}; for i in 0..5000 { m["k" + i] = big; } m.len()"#;
        let err = eval_src(src).unwrap_err();
        assert!(err.contains("MiB of data"), "{err}");
        // Distinct strings too, and as map keys (copying megabytes is slow in a debug
        // build on a busy machine, so the deadline may come first: either stops it).
        let src = r#"let k = MIB.sub_string(100); let m = #{}; for i in 0..5000 { m[k + i] = i; } m.len()"#;
        let err = eval_src(src).unwrap_err();
        assert!(err.contains("MiB of data") || err.contains("ran longer than"), "{err}");
        // What stays inside the bound runs.
        let src = r#"let big = MIB.sub_string(0, 100000); let m = #{}; for i in 0..10 { m["k" + i] = big; } m.len()"#;
        assert_eq!(eval_src(src), Ok(json!(10)));
    }

    /// Finding 5: `m.to_json()` built 2.3 GB before any check.
    #[test]
    fn to_json_stops_at_the_string_limit() {
        let src = r#"let s = MIB.sub_string(0, 200000); let m = #{}; for k in ["a", "b", "c", "d", "e", "f"] { m[k] = s; } m.to_json().len()"#;
        let err = eval_src(src).unwrap_err();
        assert!(err.contains("larger than 1024 KiB"), "{err}");
        assert_eq!(
            eval_src(r#"#{a: 1, "b": [true, ()], c: "日本"}.to_json()"#),
            Ok(json!(r#"{"a":1,"b":[true,null],"c":"日本"}"#))
        );
    }

    /// Finding 5: the 1 MiB check ran only after the whole value was serialised.
    #[test]
    fn a_result_is_size_checked_while_it_is_built() {
        let src = r#"let m = #{}; m["a"] = MIB; m["b"] = MIB; m["c"] = MIB; m"#;
        let err = eval_src(src).unwrap_err();
        assert!(err.contains("larger than 2048 KiB"), "{err}");
        let err = eval_src("let a = []; for i in 0..100 { a = [a]; } a").unwrap_err();
        assert!(err.contains("nested deeper than 64"), "{err}");
        let err = eval_src("let a = []; for i in 0..1000 { a = [a]; } 1").unwrap_err();
        assert!(err.contains("nested deeper than 256"), "{err}");
    }

    /// Finding 5: `loop { if m == m {} }` on a 10k-entry map is a few operations a
    /// round, each taking milliseconds: it ran for hours under the operation limit.
    #[test]
    fn a_slow_loop_stops_at_the_deadline() {
        let src = r#"let m = #{}; for i in 0..10000 { m["k" + i] = i; } loop { if m == m {} }"#;
        let t = std::time::Instant::now();
        let err = eval_src(src).unwrap_err();
        let took = t.elapsed();
        assert!(err.contains("ran longer than"), "{err}");
        assert!(took >= time_limit() && took < time_limit() * 3, "took {took:?}");
    }

    /// Every expression of one event shares the script time: the second one has none left.
    #[test]
    fn one_event_shares_one_time_budget() {
        let _event = EventBudget::open();
        // A quick expression leaves the budget almost whole.
        assert_eq!(eval_src("let n = 0; for i in 0..100 { n += i; } n"), Ok(json!(4950)));
        let slow = r#"let m = #{}; for i in 0..10000 { m["k" + i] = i; } loop { if m == m {} }"#;
        assert!(eval_src(slow).unwrap_err().contains("ran longer than"));
        // The slow one spent it: the next expression of the same event stops at once.
        let t = std::time::Instant::now();
        let err = eval_src("let n = 0; for i in 0..100 { n += i; } n").unwrap_err();
        assert!(err.contains("ran longer than"), "{err}");
        assert!(t.elapsed() < std::time::Duration::from_millis(500));
    }

    /// Finding 5: `print(big)` 100 times wrote 100 MB of log.
    #[test]
    fn print_is_cut_and_rate_limited() {
        let _run = limits::Running::start(0);
        let big = "あ".repeat(1_000_000);
        let first = limits::admit_print(&big).unwrap();
        assert!(first.len() < MAX_PRINT_BYTES + 100, "{}", first.len());
        for _ in 1..MAX_PRINT_LINES {
            assert!(limits::admit_print("line").is_some());
        }
        assert!(limits::admit_print("line").unwrap().contains("dropped"));
        assert_eq!(limits::admit_print("line"), None);
        // A script that prints in a loop runs to its end.
        assert_eq!(eval_src(r#"for i in 0..100 { print(MIB); } 1"#), Ok(json!(1)));
    }
}
