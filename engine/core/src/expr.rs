//! Expressions and scripts in rhai, compiled once at deploy, run with hard limits.
//!
//! One shared [`rhai::Engine`] is configured so that an expression can neither reach
//! outside the engine (no `eval`, no modules, no file or network functions) nor run
//! without end (operation, depth and size limits). Strict variables make every name
//! an expression uses a declared process variable, checked at compile time.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, SecondsFormat, Utc};
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

/// Names every expression may read besides the declared variables: the engine
/// clock and the id of the running instance (so a step can write it to another
/// system, e.g. kintone's `k_Qid`).
pub const BUILTIN_NAMES: &[&str] = &["now", "instance_id"];

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
}

/// The shared, configured rhai engine.
pub fn engine() -> &'static Engine {
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
    e.on_print(|s| tracing::info!(target: "nagare::script", "{s}"));
    e.on_debug(|s, _, pos| tracing::debug!(target: "nagare::script", %pos, "{s}"));
    register_helpers(&mut e);
    e
}

/// Date helpers. Datetimes are RFC 3339 strings (UTC `Z`); dates are `YYYY-MM-DD`.
fn register_helpers(e: &mut Engine) {
    fn shift(s: &str, by: Duration) -> Result<String, Box<rhai::EvalAltResult>> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
            return Ok(format_datetime((dt + by).with_timezone(&Utc)));
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok((d + by).format("%Y-%m-%d").to_string());
        }
        Err(format!("`{s}` is neither a date (YYYY-MM-DD) nor a datetime (RFC 3339)").into())
    }
    e.register_fn("add_days", |s: &str, n: i64| shift(s, Duration::days(n)));
    e.register_fn("add_hours", |s: &str, n: i64| shift(s, Duration::hours(n)));
    e.register_fn("add_minutes", |s: &str, n: i64| shift(s, Duration::minutes(n)));
    // Japan has no daylight saving time, so a fixed offset is exact for Asia/Tokyo.
    e.register_fn("date_jst", |s: &str| -> Result<String, Box<rhai::EvalAltResult>> {
        let dt = DateTime::parse_from_rfc3339(s).map_err(|err| format!("`{s}` is not a datetime: {err}"))?;
        let jst = FixedOffset::east_opt(9 * 3600).expect("valid offset");
        Ok(dt.with_timezone(&jst).format("%Y-%m-%d").to_string())
    });
    e.register_fn("is_blank", |v: Dynamic| {
        v.is_unit() || v.clone().into_immutable_string().map(|s| s.trim().is_empty()).unwrap_or(false)
    });
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
    Ok(Expr { source: source.to_string(), ast: Arc::new(ast) })
}

/// The values an expression sees while it runs.
pub struct Env<'a> {
    pub vars: &'a Vars,
    /// Declared variables, so unset ones read as `()` instead of "not found".
    pub declared: &'a [String],
    pub now: DateTime<Utc>,
    /// The running instance (0 where there is none yet, e.g. a start trigger).
    pub instance: u64,
    /// Extra read-only values, such as a connector's `result`.
    pub extra: &'a [(&'a str, &'a Value)],
}

impl Env<'_> {
    fn scope(&self) -> Scope<'static> {
        let mut scope = Scope::with_capacity(self.declared.len() + 2 + self.extra.len());
        scope.push_constant("now", Dynamic::from(format_datetime(self.now)));
        scope.push_constant("instance_id", Dynamic::from_int(i64::try_from(self.instance).unwrap_or(i64::MAX)));
        for name in self.declared {
            let v = self.vars.get(name).map(to_dynamic).unwrap_or(Dynamic::UNIT);
            scope.push_dynamic(name.clone(), v);
        }
        for (name, v) in self.extra {
            scope.push_constant_dynamic(name.to_string(), to_dynamic(v));
        }
        scope
    }
}

fn run_error(e: rhai::EvalAltResult) -> ExprError {
    let pos = e.position();
    let message = match e {
        rhai::EvalAltResult::ErrorTooManyOperations(_) => {
            format!("expression ran for more than {MAX_OPERATIONS} operations and was stopped (an endless loop?)")
        }
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
        let mut scope = env.scope();
        let out = engine().eval_ast_with_scope::<Dynamic>(&mut scope, &self.ast).map_err(|e| run_error(*e))?;
        from_dynamic(&out).map_err(|message| ExprError { message, line: 1, col: 1 })
    }

    /// Evaluate a condition; anything but `true` or `false` is an error.
    pub fn eval_bool(&self, env: &Env<'_>) -> Result<bool, ExprError> {
        let mut scope = env.scope();
        let out = engine().eval_ast_with_scope::<Dynamic>(&mut scope, &self.ast).map_err(|e| run_error(*e))?;
        out.as_bool().map_err(|ty| ExprError {
            message: format!("a condition must give true or false, this one gave a {ty}"),
            line: 1,
            col: 1,
        })
    }

    /// Run a script and return the declared variables whose values it changed.
    pub fn run_script(&self, env: &Env<'_>) -> Result<Vec<(String, Value)>, ExprError> {
        let mut scope = env.scope();
        engine().run_ast_with_scope(&mut scope, &self.ast).map_err(|e| run_error(*e))?;
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
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(a) => Dynamic::from_array(a.iter().map(to_dynamic).collect()),
        Value::Object(o) => {
            let mut m = rhai::Map::new();
            for (k, v) in o {
                m.insert(k.as_str().into(), to_dynamic(v));
            }
            Dynamic::from_map(m)
        }
    }
}

/// rhai → JSON; values with no JSON form (functions, NaN, ...) are refused.
pub fn from_dynamic(d: &Dynamic) -> Result<Value, String> {
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
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("the number {f} cannot be stored"));
    }
    if let Ok(c) = d.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if d.is_string() {
        return Ok(Value::String(d.clone().into_string().unwrap_or_default()));
    }
    if d.is_array() {
        let arr = d.read_lock::<rhai::Array>().ok_or("array is locked")?;
        return arr.iter().map(from_dynamic).collect::<Result<Vec<_>, _>>().map(Value::Array);
    }
    if d.is_map() {
        let map = d.read_lock::<rhai::Map>().ok_or("map is locked")?;
        let mut o = serde_json::Map::new();
        for (k, v) in map.iter() {
            o.insert(k.to_string(), from_dynamic(v)?);
        }
        return Ok(Value::Object(o));
    }
    Err(format!("a value of type `{}` cannot be stored in a variable", d.type_name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env<'a>(vars: &'a Vars, declared: &'a [String]) -> Env<'a> {
        Env { vars, declared, now: DateTime::UNIX_EPOCH, instance: 7, extra: &[] }
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
    }
}
