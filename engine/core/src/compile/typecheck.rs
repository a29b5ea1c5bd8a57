//! Static types of expressions, checked at deploy.
//!
//! rhai is dynamically typed: `日数 >= "5"` on a number is simply false at run time,
//! so a branch silently goes to its default. The compiler knows every variable's
//! declared type, so a small inference over the rhai AST finds such mistakes before
//! the process runs: comparisons between values of different types, and conditions
//! (or `&&`, `||`, `!` operands, `if`/`while` guards) that cannot be true or false.
//!
//! The rule that keeps this honest: whatever the inference cannot be sure of is
//! [`Ty::Any`], and `Any` never causes a finding. Literals, declared variables, the
//! engine's helpers and a few operators are typed; a name a script assigns or binds
//! (`let`, `for`, `catch`, `x = ...`) is `Any` everywhere in that script, and so is
//! anything reached through an index, a property or a function the script defines.

use crate::types::VarType;
use rhai::{ASTNode, Dynamic, Expr, FnCallExpr, Position, Stmt, AST};
use std::collections::HashSet;

/// What an expression gives at run time, as far as can be known before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    /// Unknown: never an error.
    Any,
    /// `()`: equal only to itself, but a fine thing to compare an unset variable with.
    Unit,
    Bool,
    /// rhai integers and floats compare with each other.
    Number,
    /// Text, and so also dates, datetimes and choices (held as text).
    Str,
    Array,
    Map,
}

impl Ty {
    /// The run-time form of a declared variable type.
    pub(crate) fn of_var(t: &VarType) -> Ty {
        match t {
            VarType::String | VarType::Text | VarType::Date | VarType::Datetime | VarType::Choice { .. } => Ty::Str,
            VarType::Number => Ty::Number,
            VarType::Bool => Ty::Bool,
            VarType::List => Ty::Array,
            // A file is held as a reference object (`{id, name, size, ...}`).
            VarType::Object | VarType::File(_) => Ty::Map,
        }
    }

    fn of_dynamic(d: &Dynamic) -> Ty {
        if d.is_unit() {
            Ty::Unit
        } else if d.is_bool() {
            Ty::Bool
        } else if d.is_int() || d.is_float() {
            Ty::Number
        } else if d.is_string() {
            Ty::Str
        } else if d.is_array() {
            Ty::Array
        } else if d.is_map() {
            Ty::Map
        } else {
            Ty::Any
        }
    }

    /// Known well enough to call a comparison with another type a mistake.
    fn is_concrete(self) -> bool {
        !matches!(self, Ty::Any | Ty::Unit)
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Any => "a value",
            Ty::Unit => "nothing `()`",
            Ty::Bool => "true/false",
            Ty::Number => "a number",
            Ty::Str => "text",
            Ty::Array => "a list",
            Ty::Map => "an object",
        }
    }
}

/// One finding, positioned inside the expression (1-based, as rhai counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub code: &'static str,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: String,
}

/// Names the engine puts in scope itself, typed.
fn builtin(name: &str) -> Option<Ty> {
    match name {
        "now" => Some(Ty::Str),
        "instance_id" => Some(Ty::Number),
        _ => None,
    }
}

/// Result types of the functions every expression may call (the engine's helpers in
/// [`crate::expr`] and rhai's own), by name and number of arguments, methods counting
/// the object as the first argument.
fn function(name: &str, args: usize) -> Ty {
    match (name, args) {
        ("add_days" | "add_hours" | "add_minutes" | "add_business_days", 2)
        | ("date_jst" | "to_string" | "type_of" | "next_business_day" | "wareki", 1) => Ty::Str,
        ("is_blank" | "is_empty" | "is_business_day", 1) | ("contains" | "starts_with" | "ends_with", 2) => Ty::Bool,
        ("len" | "parse_int" | "parse_float" | "to_int" | "to_float", 1) => Ty::Number,
        ("users_in", 1) => Ty::Array,
        _ => Ty::Any,
    }
}

const COMPARISONS: &[&str] = &["==", "!=", "<", "<=", ">", ">="];

/// What the value of a whole expression must be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Want<'a> {
    /// Anything (a script, a `with:` input, a due date checked at run time).
    Any,
    /// True or false: a branch's `when:`.
    Bool,
    /// A value written to the declared variable named here, of this type (`set:`).
    Var(&'a str, Ty),
}

/// Check a compiled expression or script. `types` gives a declared variable's type
/// (`Any` for names it does not know); `want` says what the whole must give.
pub(crate) fn check(ast: &AST, types: &dyn Fn(&str) -> Ty, want: Want) -> Vec<Finding> {
    let mut cx = Checker {
        types,
        rebound: HashSet::new(),
        script_fns: ast.iter_functions().map(|f| f.name.to_string()).collect(),
        findings: Vec::new(),
    };
    // Function bodies see only their parameters and locals: leave them out.
    let main = ast.clone_statements_only();
    main.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(s)) = path.last() {
            cx.note_binding(s);
        }
        true
    });
    main.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(s)) => cx.check_stmt(s),
            Some(ASTNode::Expr(e)) => cx.check_expr(e),
            _ => {}
        }
        true
    });
    if let Some(last) = main.statements().last() {
        match want {
            Want::Any => {}
            Want::Bool => cx.check_condition(last),
            Want::Var(name, ty) => cx.check_assigned(last, name, ty),
        }
    }
    cx.findings.sort_by_key(|f| (f.line, f.col));
    cx.findings.dedup();
    cx.findings
}

struct Checker<'a> {
    types: &'a dyn Fn(&str) -> Ty,
    /// Names the script binds or assigns: their type can change, so they are `Any`.
    rebound: HashSet<String>,
    /// Functions the script defines; a call to one is `Any` whatever its name.
    script_fns: HashSet<String>,
    findings: Vec<Finding>,
}

fn at(pos: Position) -> (usize, usize) {
    (pos.line().unwrap_or(1), pos.position().unwrap_or(1))
}

/// Where an expression starts: rhai places a binary operator call at the operator,
/// and a reader looks for the left operand.
fn start(e: &Expr) -> Position {
    match e {
        Expr::FnCall(fc, pos) => call_start(fc, *pos),
        Expr::And(list, _) | Expr::Or(list, _) | Expr::Coalesce(list, _) => list.first().map_or(e.position(), start),
        Expr::Dot(x, ..) | Expr::Index(x, ..) => start(&x.lhs),
        _ => e.start_position(),
    }
}

fn call_start(fc: &FnCallExpr, pos: Position) -> Position {
    let operator = !fc.name.chars().any(|c| c.is_alphanumeric() || c == '_');
    match fc.args.as_slice() {
        [lhs, _] if operator => start(lhs),
        _ => pos,
    }
}

fn variable_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Variable(x, ..) => Some(x.1.as_str()),
        _ => None,
    }
}

/// A short rendering of an operand for messages: a name or a literal, else nothing.
fn show(e: &Expr) -> Option<String> {
    match e {
        Expr::Variable(x, ..) => Some(x.1.to_string()),
        Expr::StringConstant(s, _) => Some(format!("{:?}", s.as_str())),
        Expr::IntegerConstant(i, _) => Some(i.to_string()),
        Expr::FloatConstant(f, _) => Some(f.to_string()),
        Expr::BoolConstant(b, _) => Some(b.to_string()),
        Expr::Unit(_) => Some("()".into()),
        _ => None,
    }
}

impl Checker<'_> {
    fn note_binding(&mut self, s: &Stmt) {
        match s {
            Stmt::Var(x, ..) => {
                self.rebound.insert(x.0.name.to_string());
            }
            Stmt::For(x, ..) => {
                self.rebound.insert(x.0.name.to_string());
                if let Some(counter) = &x.1 {
                    self.rebound.insert(counter.name.to_string());
                }
            }
            Stmt::Assignment(x) => {
                if let Some(name) = variable_name(&x.1.lhs) {
                    self.rebound.insert(name.to_string());
                }
            }
            Stmt::TryCatch(x, ..) => {
                if let Some(name) = variable_name(&x.expr) {
                    self.rebound.insert(name.to_string());
                }
            }
            _ => {}
        }
    }

    fn infer(&self, e: &Expr) -> Ty {
        match e {
            Expr::DynamicConstant(d, _) => Ty::of_dynamic(d),
            Expr::BoolConstant(..) => Ty::Bool,
            Expr::IntegerConstant(..) | Expr::FloatConstant(..) => Ty::Number,
            Expr::StringConstant(..) | Expr::InterpolatedString(..) => Ty::Str,
            Expr::Array(..) => Ty::Array,
            Expr::Map(..) => Ty::Map,
            Expr::Unit(_) => Ty::Unit,
            Expr::Variable(x, ..) => {
                let name = x.1.as_str();
                if self.rebound.contains(name) {
                    Ty::Any
                } else {
                    builtin(name).unwrap_or_else(|| (self.types)(name))
                }
            }
            Expr::And(..) | Expr::Or(..) => Ty::Bool,
            Expr::Coalesce(list, _) => {
                let first = list.first().map_or(Ty::Any, |e| self.infer(e));
                if list.iter().all(|e| self.infer(e) == first) {
                    first
                } else {
                    Ty::Any
                }
            }
            Expr::FnCall(fc, _) => self.infer_call(fc, None),
            Expr::Dot(x, ..) => match &x.rhs {
                Expr::MethodCall(fc, _) => self.infer_call(fc, Some(&x.lhs)),
                _ => Ty::Any,
            },
            _ => Ty::Any,
        }
    }

    /// A function or operator call; `object` is the receiver of a method call.
    fn infer_call(&self, fc: &FnCallExpr, object: Option<&Expr>) -> Ty {
        let name = fc.name.as_str();
        let args: Vec<Ty> = object.into_iter().chain(fc.args.iter()).map(|a| self.infer(a)).collect();
        if object.is_none() {
            match (name, args.as_slice()) {
                (op, [_, _]) if COMPARISONS.contains(&op) => return Ty::Bool,
                ("!", [_]) => return Ty::Bool,
                ("-", [Ty::Number]) => return Ty::Number,
                ("+", [Ty::Str, b]) | ("+", [b, Ty::Str]) if b.is_concrete() => return Ty::Str,
                ("+" | "-" | "*" | "/" | "%" | "**", [Ty::Number, Ty::Number]) => return Ty::Number,
                ("+", [Ty::Array, Ty::Array]) => return Ty::Array,
                ("+", [Ty::Map, Ty::Map]) => return Ty::Map,
                _ => {}
            }
        }
        if self.script_fns.contains(name) {
            return Ty::Any;
        }
        function(name, args.len())
    }

    fn find(&mut self, code: &'static str, pos: Position, message: String, hint: String) {
        let (line, col) = at(pos);
        self.findings.push(Finding { code, line, col, message, hint });
    }

    fn check_stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::FnCall(fc, pos) => self.check_call(fc, *pos),
            Stmt::If(x, _) => self.must_be_bool(&x.expr, "an `if` condition"),
            Stmt::While(x, _) => self.must_be_bool(&x.expr, "a `while` condition"),
            Stmt::Do(x, ..) => self.must_be_bool(&x.expr, "a `do` loop condition"),
            _ => {}
        }
    }

    fn check_expr(&mut self, e: &Expr) {
        match e {
            Expr::FnCall(fc, pos) => self.check_call(fc, *pos),
            Expr::And(list, _) => list.iter().for_each(|x| self.must_be_bool(x, "each side of `&&`")),
            Expr::Or(list, _) => list.iter().for_each(|x| self.must_be_bool(x, "each side of `||`")),
            _ => {}
        }
    }

    fn check_call(&mut self, fc: &FnCallExpr, pos: Position) {
        let name = fc.name.as_str();
        match fc.args.as_slice() {
            [a, b] if COMPARISONS.contains(&name) => self.check_comparison(name, a, b, pos),
            [a] if name == "!" => self.must_be_bool(a, "the operand of `!`"),
            _ => {}
        }
    }

    fn check_comparison(&mut self, op: &str, a: &Expr, b: &Expr, pos: Position) {
        let (ta, tb) = (self.infer(a), self.infer(b));
        if !ta.is_concrete() || !tb.is_concrete() || ta == tb {
            return;
        }
        let side = |e: &Expr, t: Ty| match show(e) {
            Some(s) => format!("`{s}` ({})", t.name()),
            None => t.name().to_string(),
        };
        let outcome = if op == "!=" { "always true" } else { "always false" };
        let message = format!(
            "`{op}` compares {} with {}: values of different types are never equal or ordered, so this is {outcome}",
            side(a, ta),
            side(b, tb)
        );
        let hint = comparison_hint(op, (a, ta), (b, tb));
        let pos = if start(a).is_none() { pos } else { start(a) };
        self.find("type-mismatch", pos, message, hint);
    }

    fn must_be_bool(&mut self, e: &Expr, what: &str) {
        // `loop {}` is a `while` whose guard is `()`: only concrete types are wrong.
        let t = self.infer(e);
        if t.is_concrete() && t != Ty::Bool {
            let message = format!("{what} must be true or false, but {} is {}", shown_or(e, "this"), t.name());
            self.find("not-bool", start(e), message, bool_hint(e, t));
        }
    }

    /// The whole expression is a condition: its last statement gives the value.
    fn check_condition(&mut self, last: &Stmt) {
        let (t, pos, shown) = match last {
            Stmt::Expr(e) => (self.infer(e), start(e), shown_or(e, "this expression")),
            Stmt::FnCall(fc, pos) => (self.infer_call(fc, None), call_start(fc, *pos), "this expression".to_string()),
            _ => return,
        };
        if !t.is_concrete() || t == Ty::Bool {
            return;
        }
        let message = format!("a condition must be true or false, but {shown} is {}", t.name());
        let hint = match last {
            Stmt::Expr(e) => bool_hint(e, t),
            _ => bool_hint(&Expr::Unit(Position::NONE), t),
        };
        self.find("not-bool", pos, message, hint);
    }
}

impl Checker<'_> {
    /// The value written to `var` (declared as `want`): another concrete type would
    /// fail the write at run time and stop the instance with an incident.
    fn check_assigned(&mut self, last: &Stmt, var: &str, want: Ty) {
        let (t, pos, e) = match last {
            Stmt::Expr(e) => (self.infer(e), start(e), Some(&**e)),
            Stmt::FnCall(fc, pos) => (self.infer_call(fc, None), call_start(fc, *pos), None),
            _ => return,
        };
        if !t.is_concrete() || !want.is_concrete() || t == want {
            return;
        }
        let shown = e.map_or_else(|| "this expression".to_string(), |e| shown_or(e, "this expression"));
        let message = format!("`{var}` holds {}, but {shown} is {}", want.name(), t.name());
        let hint = match e.and_then(|e| retype(e, want)) {
            Some(f) => format!("write `{f}`"),
            None => format!("give `{var}` {} (or change its declared type)", want.name()),
        };
        self.find("type-mismatch", pos, message, hint);
    }
}

/// A literal written as the type `want` (`"5"` as `5`, `5` as `"5"`), when that is
/// plainly what was meant.
fn retype(lit: &Expr, want: Ty) -> Option<String> {
    match (lit, want) {
        (Expr::StringConstant(s, _), Ty::Number) if s.trim().parse::<f64>().is_ok() => Some(s.trim().to_string()),
        (Expr::StringConstant(s, _), Ty::Bool) if matches!(s.trim(), "true" | "false") => Some(s.trim().to_string()),
        (Expr::IntegerConstant(i, _), Ty::Str) => Some(format!("\"{i}\"")),
        (Expr::FloatConstant(f, _), Ty::Str) => Some(format!("\"{f}\"")),
        (Expr::BoolConstant(v, _), Ty::Str) => Some(format!("\"{v}\"")),
        _ => None,
    }
}

fn shown_or(e: &Expr, otherwise: &str) -> String {
    show(e).map_or_else(|| otherwise.to_string(), |s| format!("`{s}`"))
}

/// What to write instead of a comparison of two types: the literal re-typed when the
/// intent is plain (`"5"` against a number), else the conversions.
fn comparison_hint(op: &str, (a, ta): (&Expr, Ty), (b, tb): (&Expr, Ty)) -> String {
    let left = show(a);
    let right = show(b);
    if let (Some(l), Some(fixed)) = (&left, retype(b, ta)) {
        return format!("write `{l} {op} {fixed}`");
    }
    if let (Some(fixed), Some(r)) = (retype(a, tb), &right) {
        return format!("write `{fixed} {op} {r}`");
    }
    "compare values of the same type: a number with a number, text with text (dates are text `YYYY-MM-DD`); convert with `parse_int(...)`, `parse_float(...)` or `.to_string()`".into()
}

/// How to make a condition out of a value of type `t`.
fn bool_hint(e: &Expr, t: Ty) -> String {
    let name = variable_name(e);
    match (t, name) {
        (Ty::Number, Some(n)) => format!("compare it, e.g. `{n} > 0`"),
        (Ty::Str, Some(n)) => format!("compare it, e.g. `{n} == \"はい\"`, or test it with `!is_blank({n})`"),
        (Ty::Array | Ty::Map, Some(n)) => format!("test it, e.g. `{n}.len() > 0`"),
        (Ty::Str, None) if matches!(e, Expr::StringConstant(..)) => {
            "a quoted text is not a condition: write a comparison such as `区分 == \"はい\"`, or `true`".into()
        }
        _ => "write a comparison such as `金額 >= 50000` or `区分 == \"はい\"`".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(name: &str) -> Ty {
        match name {
            "日数" | "金額" => Ty::Number,
            "区分" | "期限" => Ty::Str,
            "承認" => Ty::Bool,
            "明細" => Ty::Array,
            _ => Ty::Any,
        }
    }

    fn run(src: &str, condition: bool) -> Vec<Finding> {
        let names = ["日数", "金額", "区分", "期限", "承認", "明細", "result"];
        let e = crate::expr::compile(src, names).unwrap_or_else(|e| panic!("{src}: {e}"));
        check(e.ast(), &types, if condition { Want::Bool } else { Want::Any })
    }

    fn codes(src: &str, condition: bool) -> Vec<(&'static str, usize, usize)> {
        run(src, condition).iter().map(|f| (f.code, f.line, f.col)).collect()
    }

    #[test]
    fn comparison_of_a_number_with_text_is_found() {
        let f = run(r#"日数 >= "5""#, true);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].code, f[0].line, f[0].col), ("type-mismatch", 1, 1));
        assert!(f[0].message.contains("`日数` (a number) with `\"5\"` (text)"), "{}", f[0].message);
        assert_eq!(f[0].hint, "write `日数 >= 5`");
        assert_eq!(codes(r#"金額 > 0 && 区分 == 1"#, true), vec![("type-mismatch", 1, 11)]);
        assert_eq!(run(r#"区分 == 1"#, true)[0].hint, "write `区分 == \"1\"`");
        assert_eq!(codes(r#"承認 == "true""#, true), vec![("type-mismatch", 1, 1)]);
        assert_eq!(codes(r#"add_days(期限, 1) < 3"#, true), vec![("type-mismatch", 1, 1)]);
        assert_eq!(codes(r#"明細.len() == "0""#, true), vec![("type-mismatch", 1, 1)]);
        assert_eq!(codes(r#"(金額 + 1) != "x""#, true).len(), 1);
    }

    #[test]
    fn a_condition_that_is_not_bool_is_found() {
        assert_eq!(codes("金額", true), vec![("not-bool", 1, 1)]);
        assert_eq!(codes(r#""yes""#, true), vec![("not-bool", 1, 1)]);
        assert_eq!(codes("区分", true), vec![("not-bool", 1, 1)]);
        assert_eq!(codes("金額 + 1", true), vec![("not-bool", 1, 1)]);
        assert_eq!(codes("承認 && 金額", true), vec![("not-bool", 1, 7)]);
        assert_eq!(codes("!区分", true), vec![("not-bool", 1, 2)]);
        assert!(run("金額", true)[0].hint.contains("`金額 > 0`"));
        assert!(codes("金額", false).is_empty(), "a value is fine where a value is wanted");
    }

    #[test]
    fn scripts_check_their_guards_and_comparisons() {
        assert_eq!(codes("if 金額 { 区分 = \"a\"; }", false), vec![("not-bool", 1, 4)]);
        assert_eq!(codes("let x = 日数 == \"3\";", false), vec![("type-mismatch", 1, 9)]);
        assert_eq!(codes("let a = 1;\nwhile 区分 { break; }", false), vec![("not-bool", 2, 7)]);
        assert!(codes("loop { break; }", false).is_empty(), "`loop` is a while with a `()` guard");
        assert!(codes("if 承認 { loop {} } else { true }", true).is_empty());
    }

    /// The message says a mismatched comparison is always false (true for `!=`):
    /// check that rhai agrees, so the finding describes what would really happen.
    #[test]
    fn the_runtime_answers_mismatched_comparisons_as_the_message_says() {
        use crate::expr::{Env, Vars};
        let vars: Vars = [
            ("日数".to_string(), serde_json::json!(5)),
            ("区分".to_string(), serde_json::json!("1")),
            ("承認".to_string(), serde_json::json!(true)),
        ]
        .into();
        let declared: Vec<String> = vars.keys().cloned().collect();
        let env = Env {
            vars: &vars,
            declared: &declared,
            now: chrono::DateTime::UNIX_EPOCH,
            instance: 1,
            started_by: None,
            extra: &[],
        };
        for (src, holds) in [
            (r#"日数 >= "5""#, false),
            (r#"日数 == "5""#, false),
            (r#"日数 < "9""#, false),
            (r#"区分 == 1"#, false),
            (r#"区分 != 1"#, true),
            (r#"承認 == "true""#, false),
        ] {
            assert_eq!(run(src, true).len(), 1, "{src} is found");
            let names = declared.iter().map(String::as_str);
            let e = crate::expr::compile(src, names).unwrap();
            assert_eq!(e.eval_bool(&env), Ok(holds), "{src}");
            let f = &run(src, true)[0];
            assert!(f.message.contains(if holds { "always true" } else { "always false" }), "{}", f.message);
        }
        // And what `not-bool` refuses fails at run time, whatever the values.
        for src in ["承認 && 日数", "日数 || 承認", "!区分", "if 日数 { 1 } else { 2 }", "日数"] {
            assert!(!run(src, true).is_empty(), "{src} is found");
            let names = declared.iter().map(String::as_str);
            let e = crate::expr::compile(src, names).unwrap();
            assert!(e.eval_bool(&env).is_err(), "{src}: {:?}", e.eval_bool(&env));
        }
    }

    #[test]
    fn a_value_of_another_type_for_a_variable_is_found() {
        let assign = |src: &str, var: &str, ty: Ty| {
            let e = crate::expr::compile(src, ["日数", "金額", "区分", "result"]).unwrap();
            check(e.ast(), &types, Want::Var(var, ty))
        };
        let f = assign(r#""5""#, "日数", Ty::Number);
        assert_eq!((f[0].code, f[0].line, f[0].col), ("type-mismatch", 1, 1), "{f:?}");
        assert_eq!(f[0].message, "`日数` holds a number, but `\"5\"` is text");
        assert_eq!(f[0].hint, "write `5`");
        assert_eq!(assign("金額 > 0", "区分", Ty::Str)[0].code, "type-mismatch");
        assert_eq!(assign("add_days(now, 1)", "日数", Ty::Number).len(), 1);
        for (src, ty) in [("result.x", Ty::Number), ("()", Ty::Number), ("金額 + 1", Ty::Number), ("\"a\"", Ty::Str)]
        {
            assert!(assign(src, "v", ty).is_empty(), "{src}");
        }
    }

    /// No false positives: everything the inference cannot be sure of passes.
    #[test]
    fn what_cannot_be_known_is_never_an_error() {
        for src in [
            "金額 >= 50000",
            "金額 >= 1.5",
            "区分 == \"出張\" || 承認",
            "期限 < now",
            "期限 <= add_days(now, 3)",
            "金額 == ()",
            "区分 != ()",
            "result == 5",
            "result.status == \"ok\"",
            "明細[0] == \"x\"",
            "明細 == []",
            "is_blank(区分)",
            "!is_blank(区分)",
            "区分 in [\"a\", \"b\"]",
            "\"a\" in 区分",
            "金額 ?? 0 > 5",
            "instance_id > 0",
            "区分 + 1 == \"x1\"",
            "type_of(金額) == \"i64\"",
            "金額.to_string() == \"5\"",
            "'a' == 区分",
        ] {
            assert!(run(src, true).is_empty(), "{src}: {:?}", run(src, true));
        }
        for src in [
            "let 金額 = \"a\"; 金額 == \"a\"",
            "金額 = \"x\"; if 金額 == \"x\" { }",
            "for 区分 in 0..3 { if 区分 > 1 { } }",
            "try { throw 1; } catch (金額) { if 金額 == \"x\" {} }",
            "fn len(x) { \"n\" } if 明細.len() == \"n\" { }",
            "fn f(金額) { 金額 == \"a\" } f(\"a\");",
            "let v = if 承認 { 1 } else { \"a\" }; v == 1",
            "switch 区分 { \"a\" => 1, _ => 2 }",
            "let m = #{a: 1}; m.a == \"x\"",
        ] {
            assert!(run(src, false).is_empty(), "{src}: {:?}", run(src, false));
        }
    }
}
