//! The JSON Schema of process files (`nagare schema`) accepts every process we ship
//! and every valid fixture, and refuses files the loader refuses for their shape
//! (an unknown key, two kinds, no kind, an unknown type, a bad duration).
//!
//! The validator here is small and knows exactly the keywords the generator
//! emits; a test fails if the schema starts using one it does not know, so a
//! constraint is never silently skipped.

use nagare_core::schema::schema;
use regex_automata::dfa::regex::Regex;
use serde_json::Value;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const KEYWORDS: &[&str] = &[
    "$schema",
    "$defs",
    "$ref",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "pattern",
    "oneOf",
    "anyOf",
    "minimum",
    "maximum",
    "minLength",
];

/// The keywords of every subschema are ones [`validate`] checks.
fn check_keywords(s: &Value, path: &str) {
    let Some(o) = s.as_object() else { return };
    for (k, v) in o {
        assert!(KEYWORDS.contains(&k.as_str()), "{path}: keyword `{k}` is not checked by the test's validator");
        match k.as_str() {
            "$defs" | "properties" => {
                for (name, sub) in v.as_object().unwrap() {
                    check_keywords(sub, &format!("{path}/{name}"));
                }
            }
            "items" | "additionalProperties" => check_keywords(v, &format!("{path}/{k}")),
            "oneOf" | "anyOf" => {
                for (i, sub) in v.as_array().unwrap().iter().enumerate() {
                    check_keywords(sub, &format!("{path}/{k}/{i}"));
                }
            }
            _ => {}
        }
    }
}

struct Validator<'a> {
    root: &'a Value,
}

impl Validator<'_> {
    /// Problems of `v` against `s`, each with its JSON path.
    fn validate(&self, s: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
        let Some(o) = s.as_object() else { return };
        if let Some(r) = o.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix("#/$defs/").expect("local refs only");
            let target = &self.root["$defs"][name];
            assert!(target.is_object(), "unknown $ref {r}");
            self.validate(target, v, path, errs);
        }
        if let Some(t) = o.get("type") {
            let types: Vec<&str> = match t {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => panic!("bad type {t}"),
            };
            if !types.iter().any(|t| type_ok(t, v)) {
                errs.push(format!("{path}: expected {}, got {v}", types.join(" or ")));
                return;
            }
        }
        if let Some(e) = o.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                errs.push(format!("{path}: {v} is not one of {}", Value::Array(e.clone())));
            }
        }
        if let (Some(p), Some(text)) = (o.get("pattern").and_then(Value::as_str), v.as_str()) {
            let re = Regex::new(p).unwrap_or_else(|e| panic!("pattern {p}: {e}"));
            if !re.is_match(text) {
                errs.push(format!("{path}: `{text}` does not match {p}"));
            }
        }
        if let (Some(min), Some(n)) = (o.get("minimum").and_then(Value::as_f64), v.as_f64()) {
            if n < min {
                errs.push(format!("{path}: {n} < {min}"));
            }
        }
        if let (Some(max), Some(n)) = (o.get("maximum").and_then(Value::as_f64), v.as_f64()) {
            if n > max {
                errs.push(format!("{path}: {n} > {max}"));
            }
        }
        if let (Some(min), Some(text)) = (o.get("minLength").and_then(Value::as_u64), v.as_str()) {
            if (text.chars().count() as u64) < min {
                errs.push(format!("{path}: shorter than {min}"));
            }
        }
        if let Some(map) = v.as_object() {
            let props = o.get("properties").and_then(Value::as_object);
            for req in o.get("required").and_then(Value::as_array).into_iter().flatten() {
                if !map.contains_key(req.as_str().unwrap()) {
                    errs.push(format!("{path}: missing `{}`", req.as_str().unwrap()));
                }
            }
            for (k, val) in map {
                let sub = format!("{path}/{k}");
                match (props.and_then(|p| p.get(k)), o.get("additionalProperties")) {
                    (Some(ps), _) => self.validate(ps, val, &sub, errs),
                    (None, Some(Value::Bool(false))) => errs.push(format!("{sub}: unknown key `{k}`")),
                    (None, Some(extra)) => self.validate(extra, val, &sub, errs),
                    (None, None) => {}
                }
            }
        }
        if let (Some(items), Some(list)) = (o.get("items"), v.as_array()) {
            for (i, item) in list.iter().enumerate() {
                self.validate(items, item, &format!("{path}/{i}"), errs);
            }
        }
        if let Some(one_of) = o.get("oneOf").and_then(Value::as_array) {
            let ok = one_of.iter().filter(|s| self.errors(s, v, path).is_empty()).count();
            if ok != 1 {
                errs.push(format!("{path}: matches {ok} of the oneOf alternatives, not exactly one"));
            }
        }
        if let Some(any_of) = o.get("anyOf").and_then(Value::as_array) {
            if !any_of.iter().any(|s| self.errors(s, v, path).is_empty()) {
                errs.push(format!("{path}: matches none of the anyOf alternatives"));
            }
        }
    }

    fn errors(&self, s: &Value, v: &Value, path: &str) -> Vec<String> {
        let mut errs = Vec::new();
        self.validate(s, v, path, &mut errs);
        errs
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        other => panic!("unknown type {other}"),
    }
}

fn errors_of(yaml: &str) -> Vec<String> {
    let schema = schema();
    let v: Value = serde_yaml::from_str(yaml).expect("YAML");
    Validator { root: &schema }.errors(&schema, &v, "")
}

fn valid_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo().join("processes")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            files.push(p);
        }
    }
    for entry in std::fs::read_dir(repo().join("engine/tests/traces")).unwrap() {
        let p = entry.unwrap().path().join("process.yaml");
        if p.exists() {
            files.push(p);
        }
    }
    files.sort();
    files
}

#[test]
fn the_schema_uses_only_keywords_the_validator_checks() {
    let s = schema();
    check_keywords(&s, "#");
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
}

#[test]
fn every_process_and_valid_fixture_passes_the_schema() {
    let files = valid_files();
    assert!(files.len() > 10);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let errs = errors_of(&text);
        assert!(errs.is_empty(), "{}: {errs:#?}", f.display());
    }
}

#[test]
fn shape_errors_are_refused() {
    let base = "id: p\nlanes: { a: { groups: [g] } }\nstart: { next: t }\nnodes:\n";
    let cases = [
        ("unknown node key", "  t: { user_task: x, lane: a, nxet: e }\n  e: { end: }\n", "unknown key `nxet`"),
        ("two kinds", "  t: { user_task: x, script: y, lane: a, next: e }\n  e: { end: }\n", "oneOf"),
        ("no kind", "  t: { lane: a, next: e }\n  e: { end: }\n", "oneOf"),
        ("bad duration", "  t: { timer: soon, next: e }\n  e: { end: }\n", "oneOf"),
        ("bad end", "  t: { user_task: x, lane: a, next: e }\n  e: { end: stop }\n", "oneOf"),
        ("bad form mode", "  t: { user_task: x, lane: a, form: { v: hidden }, next: e }\n  e: { end: }\n", "hidden"),
        ("bad timeout", "  t: { service: echo, timeout: fast, next: e }\n  e: { end: }\n", "timeout"),
    ];
    for (what, nodes, expect) in cases {
        let errs = errors_of(&format!("{base}{nodes}"));
        assert!(errs.iter().any(|e| e.contains(expect)), "{what}: {errs:?}");
    }
    // The same file with the mistake fixed passes: the cases fail for their mistake.
    assert_eq!(
        errors_of(&format!("{base}  t: {{ user_task: x, lane: a, next: e }}\n  e: {{ end: }}\n")),
        Vec::<String>::new()
    );
    let top = errors_of("id: p\nstart: { next: e }\nnodes: { e: { end: } }\nlane: {}\n");
    assert!(top.iter().any(|e| e.contains("unknown key `lane`")), "{top:?}");
    let var = errors_of("id: p\nvariables: { v: { type: money } }\nstart: { next: e }\nnodes: { e: { end: } }\n");
    assert!(var.iter().any(|e| e.contains("money")), "{var:?}");
    let notify = errors_of(
        "id: p\nlanes: { a: { groups: [g], notify: { on: [opened] } } }\nstart: { next: e }\nnodes: { e: { end: } }\n",
    );
    assert!(notify.iter().any(|e| e.contains("opened")), "{notify:?}");
}

/// Fixtures the loader refuses for their shape are refused by the schema too.
#[test]
fn invalid_fixtures_with_shape_errors_are_refused() {
    for name in ["unknown-key", "several-kinds", "missing-kind", "unknown-type", "unsupported-element"] {
        let text = std::fs::read_to_string(repo().join(format!("tests/invalid/{name}.yaml"))).unwrap();
        assert!(!errors_of(&text).is_empty(), "{name}.yaml passes the schema");
    }
}

#[test]
fn durations_match_the_pattern() {
    let re = Regex::new(nagare_core::schema::DURATION_PATTERN).unwrap();
    for ok in ["30s", "5m", "2h", "3d", "1w", "1h 30m", "1h30m", "P3D", "PT2H", "P1Y2M3DT4H5M6S", "P2W"] {
        assert!(re.is_match(ok), "{ok}");
        nagare_core::schedule::parse_span(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in ["", "soon", "3", "d3", "-1d", "3d!"] {
        assert!(!re.is_match(bad), "{bad}");
    }
}
