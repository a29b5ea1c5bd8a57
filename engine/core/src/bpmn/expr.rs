//! Expressions in BPMN files (FEEL, JUEL, Python, JavaScript) → rhai.
//!
//! Modelers store conditions and scripts in whatever language their engine runs:
//! Zeebe writes FEEL (`=amount > 1000`), Camunda 7 JUEL (`${amount > 1000}`),
//! SpiffWorkflow Python (`amount > 1000 and not urgent`), bpmn-engine
//! JavaScript (`next(null, environment.variables.amount > 1000)`). Only the
//! common subset is translated, the same in every language: literals (numbers,
//! strings, booleans, null), variables and `a.b` fields, comparison, boolean
//! (`and`/`or`/`not`, `&&`/`||`/`!`) and arithmetic (`+ - * / %`) operators and
//! parentheses; scripts are assignments `x = expr`, `x += expr` (`-=`, `*=`,
//! `/=`) separated by `;` or new lines. Anything else (function calls, lists,
//! FEEL ranges and `in`, lambdas, loops) is refused with a reason: a guessed
//! translation would run a different process than the one drawn.

use std::fmt::Write;

/// The language an expression is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Zeebe FEEL (`=` is equality).
    Feel,
    /// Camunda 7 JUEL (`${...}`, `eq`, `ne`, `lt`, `gt`, `le`, `ge`).
    Juel,
    Python,
    JavaScript,
    /// rhai already (nagare's own export): taken verbatim.
    Rhai,
    /// No language named: the common subset, `=` refused as ambiguous.
    Plain,
}

impl Lang {
    /// The language for a `language`/`scriptFormat`/`expressionLanguage` value.
    pub fn from_name(name: &str) -> Option<Lang> {
        let n = name.trim().to_ascii_lowercase();
        Some(match n.as_str() {
            "feel" | "http://www.omg.org/spec/feel/20140401" | "https://www.omg.org/spec/dmn/20191111/feel/" => {
                Lang::Feel
            }
            "juel" | "el" | "http://www.w3.org/1999/xpath-el" => Lang::Juel,
            "python" | "python3" | "text/x-python" => Lang::Python,
            "javascript" | "js" | "ecmascript" | "text/javascript" | "application/javascript" => Lang::JavaScript,
            "rhai" => Lang::Rhai,
            _ if n.contains("feel") => Lang::Feel,
            _ if n.contains("python") => Lang::Python,
            _ if n.contains("javascript") || n.contains("ecmascript") => Lang::JavaScript,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Lang::Feel => "FEEL",
            Lang::Juel => "JUEL",
            Lang::Python => "Python",
            Lang::JavaScript => "JavaScript",
            Lang::Rhai => "rhai",
            Lang::Plain => "expression",
        }
    }
}

/// Why an expression was not translated, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    pub message: String,
    pub hint: String,
}

fn refuse<T>(message: impl Into<String>) -> Result<T, Untranslatable> {
    Err(Untranslatable {
        message: message.into(),
        hint: "the translated subset is literals, variables, `a.b`, comparisons, and/or/not and + - * / %; \
               rewrite the expression in that subset, or write the node in nagare YAML after import"
            .into(),
    })
}

/// The type a literal or expression evidently has, for declaring variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guess {
    Number,
    String,
    Bool,
}

/// A translated expression: rhai text, the variables it reads (first path
/// segment) and, where evident, the type of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translated {
    pub rhai: String,
    pub reads: Vec<(String, Option<Guess>)>,
    /// The evident type of the value.
    pub guess: Option<Guess>,
}

/// A translated script: rhai statements, variables written (with the evident
/// type of what is assigned) and read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    pub rhai: String,
    pub writes: Vec<(String, Option<Guess>)>,
    pub reads: Vec<(String, Option<Guess>)>,
}

// ---- lexing -----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(String),
    Str(String),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
    Dot,
    Comma,
    Semi,
    Newline,
    Other(char),
}

const OPS: &[&str] = &[
    "===", "!==", "**", "==", "!=", "<=", ">=", "&&", "||", "+=", "-=", "*=", "/=", "<", ">", "=", "!", "+", "-", "*",
    "/", "%",
];

fn lex(src: &str) -> Result<Vec<Tok>, Untranslatable> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            out.push(Tok::Newline);
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '_') {
                i += 1;
            }
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Tok::Num(chars[start..i].iter().filter(|c| **c != '_').collect()));
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return refuse("a string is not closed"),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        let e = chars.get(i + 1).copied();
                        s.push(match e {
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some(x @ ('\\' | '"' | '\'')) => x,
                            _ => return refuse("a string uses an escape other than \\n, \\t, \\\\, \\\" or \\'"),
                        });
                        i += 1;
                    }
                    Some(&x) => s.push(x),
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
            if let Some(op) = OPS.iter().find(|op| rest.starts_with(*op)) {
                out.push(Tok::Op(op));
                i += op.chars().count();
                continue;
            }
            out.push(match c {
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                '.' => Tok::Dot,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                other => Tok::Other(other),
            });
            i += 1;
        }
    }
    Ok(out)
}

// ---- parsing ----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Ast {
    Num(String),
    Str(String),
    Bool(bool),
    Null,
    Path(Vec<String>),
    Not(Box<Ast>),
    Neg(Box<Ast>),
    Bin(&'static str, Box<Ast>, Box<Ast>),
}

/// Binary operators as rhai writes them, loosest first.
const LEVELS: &[&[&str]] = &[&["||"], &["&&"], &["==", "!="], &["<", "<=", ">", ">="], &["+", "-"], &["*", "/", "%"]];

fn level(op: &str) -> usize {
    LEVELS.iter().position(|l| l.contains(&op)).expect("every operator has a level")
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    lang: Lang,
    depth: usize,
}

/// Nesting of parentheses and operators accepted (the rhai engine has its own
/// limit too; this keeps the translator's recursion bounded).
const MAX_DEPTH: usize = 32;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    /// The binary operator at the cursor in rhai spelling, if any.
    fn bin_op(&self) -> Option<&'static str> {
        Some(match self.peek()? {
            Tok::Op("===") | Tok::Op("==") => "==",
            Tok::Op("!==") | Tok::Op("!=") => "!=",
            Tok::Op("=") if self.lang == Lang::Feel => "==",
            Tok::Op("&&") => "&&",
            Tok::Op("||") => "||",
            Tok::Op(op @ ("<" | "<=" | ">" | ">=" | "+" | "-" | "*" | "/" | "%")) => op,
            Tok::Ident(w) => match (w.as_str(), self.lang) {
                ("and", Lang::Feel | Lang::Juel | Lang::Python | Lang::Plain) => "&&",
                ("or", Lang::Feel | Lang::Juel | Lang::Python | Lang::Plain) => "||",
                ("eq", Lang::Juel) => "==",
                ("ne", Lang::Juel) => "!=",
                ("lt", Lang::Juel) => "<",
                ("gt", Lang::Juel) => ">",
                ("le", Lang::Juel) => "<=",
                ("ge", Lang::Juel) => ">=",
                _ => return None,
            },
            _ => return None,
        })
    }

    fn expr(&mut self, min: usize) -> Result<Ast, Untranslatable> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return refuse(format!("nested more than {MAX_DEPTH} levels"));
        }
        let mut lhs = self.unary()?;
        while let Some(op) = self.bin_op() {
            let l = level(op);
            if l < min {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(l + 1)?;
            lhs = Ast::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Ast, Untranslatable> {
        match self.peek() {
            Some(Tok::Op("!")) => {
                self.pos += 1;
                Ok(Ast::Not(Box::new(self.unary()?)))
            }
            Some(Tok::Op("-")) => {
                self.pos += 1;
                Ok(Ast::Neg(Box::new(self.unary()?)))
            }
            Some(Tok::Ident(w)) if w == "not" && self.lang != Lang::JavaScript => {
                self.pos += 1;
                // FEEL writes not(x); Python and JUEL `not x`.
                Ok(Ast::Not(Box::new(self.unary()?)))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Ast, Untranslatable> {
        let t = self.next();
        match t {
            Some(Tok::Num(n)) => Ok(Ast::Num(n)),
            Some(Tok::Str(s)) => Ok(Ast::Str(s)),
            Some(Tok::LParen) => {
                let e = self.expr(0)?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => refuse("a `(` is not closed"),
                }
            }
            Some(Tok::Ident(w)) => {
                match w.as_str() {
                    "true" | "True" => return Ok(Ast::Bool(true)),
                    "false" | "False" => return Ok(Ast::Bool(false)),
                    "null" | "None" | "undefined" => return Ok(Ast::Null),
                    _ => {}
                }
                let mut path = vec![w];
                while self.peek() == Some(&Tok::Dot) {
                    self.pos += 1;
                    match self.next() {
                        Some(Tok::Ident(f)) => path.push(f),
                        _ => return refuse("a `.` is not followed by a field name"),
                    }
                }
                if self.peek() == Some(&Tok::LParen) {
                    return refuse(format!(
                        "the function call `{}(...)` is outside the translated subset",
                        path.join(".")
                    ));
                }
                // bpmn-engine scripts read variables as environment.variables.x.
                let path = strip_js_env(path);
                if path.is_empty() {
                    return refuse("`environment.variables` is read as a whole");
                }
                if let Some(w) = path.first().filter(|w| is_keyword(w, self.lang)) {
                    return refuse(format!("`{w}` is outside the translated subset"));
                }
                Ok(Ast::Path(path))
            }
            Some(Tok::Op(op)) => refuse(format!("the operator `{op}` is outside the translated subset")),
            Some(Tok::Other(c)) => refuse(format!("`{c}` is outside the translated subset (lists, ranges, indexing)")),
            Some(other) => refuse(format!("unexpected {}", describe(&other))),
            None => refuse("the expression ends too early"),
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Comma => "`,`".into(),
        Tok::Semi => "`;`".into(),
        Tok::Newline => "a new line".into(),
        Tok::RParen => "`)`".into(),
        Tok::Dot => "`.`".into(),
        Tok::Ident(w) => format!("`{w}`"),
        Tok::Op(o) => format!("`{o}`"),
        Tok::Other(c) => format!("`{c}`"),
        other => format!("{other:?}"),
    }
}

/// Words that are operators or statements in some language, never variables.
fn is_keyword(w: &str, lang: Lang) -> bool {
    let common = ["in", "if", "then", "else", "for", "return", "some", "every", "satisfies", "function", "var", "let"];
    common.contains(&w)
        || matches!(
            (w, lang),
            ("is" | "lambda", Lang::Python) | ("empty", Lang::Juel) | ("between" | "instance", Lang::Feel)
        )
}

fn strip_js_env(path: Vec<String>) -> Vec<String> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let skip = match p.as_slice() {
        ["this", "environment", "variables", ..] => 3,
        ["environment", "variables", ..] => 2,
        ["execution", "variables", ..] => 2,
        _ => 0,
    };
    path.into_iter().skip(skip).collect()
}

// ---- emitting ---------------------------------------------------------------

fn emit(a: &Ast, out: &mut String) {
    match a {
        Ast::Num(n) => out.push_str(n),
        Ast::Str(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Ast::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Ast::Null => out.push_str("()"),
        Ast::Path(p) => out.push_str(&p.join(".")),
        Ast::Not(e) => {
            out.push('!');
            emit_operand(e, usize::MAX, out);
        }
        Ast::Neg(e) => {
            out.push('-');
            emit_operand(e, usize::MAX, out);
        }
        Ast::Bin(op, l, r) => {
            let lv = level(op);
            emit_operand(l, lv, out);
            let _ = write!(out, " {op} ");
            emit_operand(r, lv + 1, out);
        }
    }
}

/// An operand, in parentheses when its operator binds looser than `min` needs.
fn emit_operand(a: &Ast, min: usize, out: &mut String) {
    let needs = match a {
        Ast::Bin(op, ..) => level(op) < min,
        _ => false,
    };
    if needs {
        out.push('(');
    }
    emit(a, out);
    if needs {
        out.push(')');
    }
}

/// The evident type of an expression, from its operators and literals.
fn guess(a: &Ast) -> Option<Guess> {
    match a {
        Ast::Num(_) | Ast::Neg(_) => Some(Guess::Number),
        Ast::Str(_) => Some(Guess::String),
        Ast::Bool(_) | Ast::Not(_) => Some(Guess::Bool),
        Ast::Bin(op, l, r) => match *op {
            "&&" | "||" | "==" | "!=" | "<" | "<=" | ">" | ">=" => Some(Guess::Bool),
            "+" => guess(l).or_else(|| guess(r)),
            _ => Some(Guess::Number),
        },
        Ast::Null | Ast::Path(_) => None,
    }
}

/// Variables read, each with the type evident from where it is used: compared
/// with a literal, in arithmetic, or alone under `!`/`&&`/`||`.
fn reads(a: &Ast, out: &mut Vec<(String, Option<Guess>)>) {
    fn add(out: &mut Vec<(String, Option<Guess>)>, a: &Ast, g: Option<Guess>) {
        match a {
            Ast::Path(p) => {
                // `a.b` reads a record: only its root is a variable, of unknown type.
                let g = if p.len() > 1 { None } else { g };
                out.push((p[0].clone(), g));
            }
            // Arithmetic where a number is wanted: its operands are numbers too.
            Ast::Bin(op @ ("+" | "-" | "*" | "/" | "%"), l, r)
                if g == Some(Guess::Number) && guess(a) != Some(Guess::String) =>
            {
                let _ = op;
                add(out, l, g);
                add(out, r, g);
            }
            _ => reads(a, out),
        }
    }
    match a {
        Ast::Path(_) => add(out, a, None),
        Ast::Not(e) => add(out, e, Some(Guess::Bool)),
        Ast::Neg(e) => add(out, e, Some(Guess::Number)),
        Ast::Bin(op, l, r) => {
            let (gl, gr) = match *op {
                "&&" | "||" => (Some(Guess::Bool), Some(Guess::Bool)),
                "-" | "*" | "/" | "%" | "<" | "<=" | ">" | ">=" => {
                    let other = guess(l).or_else(|| guess(r)).filter(|g| *g != Guess::Bool);
                    (other.or(Some(Guess::Number)), other.or(Some(Guess::Number)))
                }
                "==" | "!=" => (guess(r), guess(l)),
                "+" => {
                    let g = guess(l).or_else(|| guess(r));
                    (g, g)
                }
                _ => (None, None),
            };
            add(out, l, gl);
            add(out, r, gr);
        }
        _ => {}
    }
}

fn prefix_paths(a: &mut Ast, record: &str) {
    match a {
        Ast::Path(p) => p.insert(0, record.to_string()),
        Ast::Not(e) | Ast::Neg(e) => prefix_paths(e, record),
        Ast::Bin(_, l, r) => {
            prefix_paths(l, record);
            prefix_paths(r, record);
        }
        _ => {}
    }
}

// ---- entry points -----------------------------------------------------------

/// Remove a language's wrapper: `${...}`/`#{...}` (JUEL), a leading `=` (FEEL),
/// `next(null, ...)` (bpmn-engine JavaScript). Returns the language the wrapper
/// shows when none was named.
fn unwrap(src: &str, lang: Lang) -> (String, Lang) {
    let s = src.trim();
    if let Some(inner) = s.strip_prefix("${").or_else(|| s.strip_prefix("#{")).and_then(|r| r.strip_suffix('}')) {
        return (inner.to_string(), if lang == Lang::Plain { Lang::Juel } else { lang });
    }
    if let Some(inner) = s.strip_prefix('=').filter(|_| matches!(lang, Lang::Feel | Lang::Plain)) {
        return (inner.to_string(), Lang::Feel);
    }
    let t = s.trim_end_matches(';').trim();
    if let Some(inner) = t.strip_prefix("next(null,").and_then(|r| r.strip_suffix(')')) {
        return (inner.to_string(), Lang::JavaScript);
    }
    if lang == Lang::JavaScript {
        if let Some(inner) = t.strip_prefix("return ") {
            return (inner.to_string(), lang);
        }
    }
    (s.to_string(), lang)
}

/// Translate a condition (or any value expression) written in `lang`.
pub fn condition(src: &str, lang: Lang) -> Result<Translated, Untranslatable> {
    translate(src, lang, None)
}

/// Translate a value whose variables are fields of `record` (an output mapping
/// reads the job's result: `=total` becomes `result.total`).
pub fn condition_over(src: &str, lang: Lang, record: &str) -> Result<Translated, Untranslatable> {
    translate(src, lang, Some(record))
}

fn translate(src: &str, lang: Lang, record: Option<&str>) -> Result<Translated, Untranslatable> {
    if lang == Lang::Rhai {
        return Ok(Translated { rhai: src.trim().to_string(), reads: Vec::new(), guess: None });
    }
    let (body, lang) = unwrap(src, lang);
    let toks: Vec<Tok> = lex(&body)?.into_iter().filter(|t| *t != Tok::Newline).collect();
    if toks.is_empty() {
        return refuse("the expression is empty");
    }
    if lang == Lang::Plain && toks.contains(&Tok::Op("=")) {
        return refuse(
            "`=` is equality in FEEL but assignment elsewhere; name the language (language=\"feel\") or write `==`",
        );
    }
    let mut p = Parser { toks, pos: 0, lang, depth: 0 };
    let mut ast = p.expr(0)?;
    if let Some(t) = p.peek() {
        return refuse(format!("unexpected {} after a complete {} expression", describe(t), lang.name()));
    }
    if let Some(r) = record {
        prefix_paths(&mut ast, r);
    }
    let mut rhai = String::new();
    emit(&ast, &mut rhai);
    let mut r = Vec::new();
    reads(&ast, &mut r);
    Ok(Translated { rhai, reads: r, guess: guess(&ast) })
}

/// Translate a script task's body: assignments only.
pub fn script(src: &str, lang: Lang) -> Result<Script, Untranslatable> {
    if lang == Lang::Rhai {
        return Ok(Script { rhai: src.trim().to_string(), ..Script::default() });
    }
    let toks = lex(src)?;
    let mut out = Script::default();
    // Statements: split at `;` and new lines outside parentheses.
    let mut stmts: Vec<Vec<Tok>> = vec![Vec::new()];
    let mut depth = 0i32;
    for t in toks {
        match t {
            Tok::LParen => depth += 1,
            Tok::RParen => depth -= 1,
            _ => {}
        }
        if depth == 0 && matches!(t, Tok::Semi | Tok::Newline) {
            stmts.push(Vec::new());
        } else {
            stmts.last_mut().expect("never empty").push(t);
        }
    }
    for stmt in stmts.into_iter().filter(|s| !s.is_empty()) {
        // bpmn-engine scripts end with `next()`: the callback, not work.
        if lang == Lang::JavaScript
            && matches!(stmt.as_slice(), [Tok::Ident(n), Tok::LParen, Tok::RParen] if n == "next")
        {
            continue;
        }
        // Camunda 7 Groovy/JavaScript: execution.setVariable("x", expr).
        let stmt = match stmt.as_slice() {
            [Tok::Ident(e), Tok::Dot, Tok::Ident(m), Tok::LParen, Tok::Str(name), Tok::Comma, rest @ .., Tok::RParen]
                if e == "execution" && m == "setVariable" =>
            {
                let mut v = vec![Tok::Ident(name.clone()), Tok::Op("=")];
                v.extend(rest.iter().cloned());
                v
            }
            _ => stmt,
        };
        let eq = stmt.iter().position(|t| matches!(t, Tok::Op("=" | "+=" | "-=" | "*=" | "/=")));
        let Some(eq) = eq else {
            return refuse("only assignments (`x = expr`, `x += expr`) are translated in scripts");
        };
        let mut target: Vec<String> = Vec::new();
        for (i, t) in stmt[..eq].iter().enumerate() {
            match (i % 2, t) {
                (0, Tok::Ident(w)) => target.push(w.clone()),
                (1, Tok::Dot) => {}
                _ => return refuse("the left of `=` must be a variable name"),
            }
        }
        if stmt[..eq].len() % 2 == 0 {
            return refuse("the left of `=` must be a variable name");
        }
        let target = strip_js_env(target);
        if target.len() != 1 || matches!(target[0].as_str(), "var" | "let" | "const") {
            return refuse("the left of `=` must be one process variable (`x`, or environment.variables.x)");
        }
        let op = match &stmt[eq] {
            Tok::Op(op) => *op,
            _ => unreachable!("found as an operator"),
        };
        let rhs_lang = if lang == Lang::Feel { Lang::Plain } else { lang };
        let mut p = Parser { toks: stmt[eq + 1..].to_vec(), pos: 0, lang: rhs_lang, depth: 0 };
        let ast = p.expr(0)?;
        if let Some(t) = p.peek() {
            return refuse(format!("unexpected {} in an assignment", describe(t)));
        }
        let name = target[0].clone();
        let mut rhs = String::new();
        emit(&ast, &mut rhs);
        let _ = writeln!(out.rhai, "{name} {op} {rhs};");
        reads(&ast, &mut out.reads);
        let g = if op == "=" { guess(&ast) } else { Some(Guess::Number) };
        let g = g.or_else(|| match &ast {
            Ast::Path(p) if p.len() == 1 => out.writes.iter().find(|(n, _)| *n == p[0]).and_then(|(_, g)| *g),
            _ => None,
        });
        if op != "=" {
            out.reads.push((name.clone(), Some(Guess::Number)));
        }
        out.writes.push((name, g));
    }
    if out.writes.is_empty() {
        return refuse("the script does nothing nagare can translate");
    }
    out.rhai = out.rhai.trim_end().to_string();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(src: &str, lang: Lang) -> String {
        condition(src, lang).map(|t| t.rhai).unwrap_or_else(|e| format!("ERR {}", e.message))
    }

    #[test]
    fn conditions_translate_in_each_language() {
        assert_eq!(c("=amount > 1000 and not(urgent)", Lang::Plain), "amount > 1000 && !urgent");
        assert_eq!(c("=status = \"ok\"", Lang::Feel), "status == \"ok\"");
        assert_eq!(c("${amount gt 10 && approved}", Lang::Plain), "amount > 10 && approved");
        assert_eq!(c("x > 5", Lang::Python), "x > 5");
        assert!(c("a == 'A' or b is None", Lang::Python).contains("unexpected `is`"));
        assert_eq!(c("next(null, environment.variables.x > 5);", Lang::JavaScript), "x > 5");
        assert_eq!(c("this.environment.variables.s === 'y'", Lang::JavaScript), "s == \"y\"");
        assert_eq!(c("(a + b) * 2 >= limit - 1", Lang::Plain), "(a + b) * 2 >= limit - 1");
        assert_eq!(c("a - (b - c)", Lang::Plain), "a - (b - c)");
        assert_eq!(c("order.total > 10", Lang::Feel), "order.total > 10");
        assert_eq!(c("x == null", Lang::Python), "x == ()");
    }

    #[test]
    fn outside_the_subset_is_refused_with_a_reason() {
        assert!(c("=contains(name, \"x\")", Lang::Feel).contains("function call `contains(...)`"));
        assert!(c("=x in [1,2]", Lang::Feel).starts_with("ERR"));
        assert!(c("x = 5", Lang::Plain).contains("name the language"));
        assert!(c("${empty list}", Lang::Juel).starts_with("ERR"));
        assert!(c("a >", Lang::Plain).contains("ends too early"));
        assert!(c(&"(".repeat(100), Lang::Plain).contains("nested"));
    }

    #[test]
    fn reads_carry_the_evident_types() {
        let t = condition("amount > 10 and status == 'ok' and not urgent", Lang::Python).unwrap();
        assert_eq!(
            t.reads,
            vec![
                ("amount".into(), Some(Guess::Number)),
                ("status".into(), Some(Guess::String)),
                ("urgent".into(), Some(Guess::Bool))
            ]
        );
    }

    #[test]
    fn scripts_translate_assignments() {
        let s = script("count = count + 1", Lang::Python).unwrap();
        assert_eq!(s.rhai, "count = count + 1;");
        assert_eq!(s.writes, vec![("count".into(), Some(Guess::Number))]);
        let s = script("environment.variables.branch = 'A'; next();", Lang::JavaScript).unwrap();
        assert_eq!((s.rhai.as_str(), s.writes[0].1), ("branch = \"A\";", Some(Guess::String)));
        let s = script("total += price * 2\nok = True", Lang::Python).unwrap();
        assert_eq!(s.rhai, "total += price * 2;\nok = true;");
        let s = script("execution.setVariable(\"total\", price * 2)", Lang::Plain).unwrap();
        assert_eq!(s.rhai, "total = price * 2;");
        assert!(script("for i in range(3): x += i", Lang::Python).is_err());
        assert!(script("print(x)", Lang::Python).is_err());
        assert!(script("var y = 1", Lang::JavaScript).is_err());
    }
}
