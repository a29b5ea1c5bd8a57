//! The broken-file corpus: every file in `tests/invalid/` must fail to load with
//! exactly the diagnostics its header announces.
//!
//! Each file starts with directive comments:
//!
//! ```yaml
//! # expect: unknown-node 9:11 unknown node `buid`
//! # hint: did you mean `build`?
//! ```
//!
//! `# expect: <code> <line>:<col> <text>` pins one diagnostic: its code, its exact
//! position and a piece of its message. A following `# hint: <text>` pins a piece of
//! that diagnostic's hint. The expectations are exhaustive for errors: a file may not
//! produce an error nobody announced. Files named `warn-*.yaml` must load (they carry
//! warnings only) and their expectations are matched against the warnings.
//!
//! Files are read as bytes and loaded with `load_bytes`, as the CLI does, so the
//! corpus can hold files that are not UTF-8 or that start with a byte-order mark.

use nagare_engine::compile::CompileOptions;
use nagare_engine::diag::{Diagnostic, Diagnostics};
use nagare_engine::load::{load_bytes, load_str};
use std::path::{Path, PathBuf};

#[derive(Debug)]
struct Expect {
    code: String,
    line: usize,
    col: usize,
    message: String,
    hint: Option<String>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("invalid")
}

fn parse_expectations(name: &str, text: &str) -> Vec<Expect> {
    let mut out: Vec<Expect> = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("# expect: ") {
            let mut parts = rest.splitn(3, ' ');
            let code = parts.next().unwrap_or_default().to_string();
            let pos = parts.next().unwrap_or_else(|| panic!("{name}: `# expect:` needs a line:col"));
            let (l, c) = pos.split_once(':').unwrap_or_else(|| panic!("{name}: bad position `{pos}`"));
            let message = parts.next().unwrap_or_default().trim().to_string();
            assert!(!message.is_empty(), "{name}: `# expect:` needs a message substring");
            out.push(Expect {
                code,
                line: l.parse().unwrap_or_else(|_| panic!("{name}: bad line in `{pos}`")),
                col: c.parse().unwrap_or_else(|_| panic!("{name}: bad column in `{pos}`")),
                message,
                hint: None,
            });
        } else if let Some(rest) = line.strip_prefix("# hint: ") {
            let last = out.last_mut().unwrap_or_else(|| panic!("{name}: `# hint:` before any `# expect:`"));
            last.hint = Some(rest.trim().to_string());
        }
    }
    out
}

fn matches(d: &Diagnostic, e: &Expect) -> bool {
    d.code == e.code
        && d.line == e.line
        && d.col == e.col
        && d.message.contains(&e.message)
        && e.hint.as_ref().is_none_or(|h| d.hint.as_deref().is_some_and(|dh| dh.contains(h.as_str())))
}

/// Check one file; returns a description of every mismatch.
fn check_file(name: &str, bytes: &[u8]) -> Vec<String> {
    let expects = parse_expectations(name, &String::from_utf8_lossy(bytes));
    let mut problems = Vec::new();
    if expects.is_empty() {
        problems.push(format!("{name}: no `# expect:` line"));
        return problems;
    }
    let file = format!("tests/invalid/{name}");
    let diags: Diagnostics = if name.starts_with("warn-") {
        match load_bytes(&file, bytes, &CompileOptions::default()) {
            Ok(loaded) => {
                assert!(!loaded.warnings.has_errors());
                loaded.warnings
            }
            Err(d) => {
                problems.push(format!("{name}: a warn-* file must load, but:\n{d}"));
                return problems;
            }
        }
    } else {
        match load_bytes(&file, bytes, &CompileOptions::default()) {
            Ok(_) => {
                problems.push(format!("{name}: loaded without errors"));
                return problems;
            }
            Err(d) => d,
        }
    };
    let shown = diags.to_string();
    for e in &expects {
        if !diags.0.iter().any(|d| matches(d, e)) {
            problems.push(format!("{name}: expected {e:?}\n  got:\n{shown}"));
        }
    }
    for d in &diags.0 {
        if d.is_error() && !expects.iter().any(|e| matches(d, e)) {
            problems.push(format!("{name}: unexpected diagnostic\n{d}"));
        }
        if d.hint.as_deref().is_none_or(|h| h.trim().is_empty()) {
            problems.push(format!("{name}: diagnostic without a hint\n{d}"));
        }
        let display = d.to_string();
        let head = format!("{file}:{}:{}: ", d.line, d.col);
        if !display.starts_with(&head) || !display.contains("\n  hint: ") {
            problems.push(format!("{name}: Display is not `file:line:col: ... hint:`\n{display}"));
        }
        assert!(d.line >= 1 && d.col >= 1, "{name}: positions are 1-based: {d}");
    }
    problems
}

#[test]
fn every_broken_file_fails_with_the_announced_diagnostics() {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("tests/invalid exists")
        .map(|e| e.expect("readable entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 25, "the corpus shrank to {} files", names.len());
    let mut problems = Vec::new();
    for name in &names {
        let bytes = std::fs::read(corpus_dir().join(name)).expect("readable file");
        problems.extend(check_file(name, &bytes));
    }
    assert!(problems.is_empty(), "{} problem(s):\n\n{}", problems.len(), problems.join("\n\n"));
}

#[test]
fn warning_files_still_load() {
    let text = std::fs::read_to_string(corpus_dir().join("warn-no-default.yaml")).unwrap();
    let loaded =
        load_str("warn-no-default.yaml", &text, &CompileOptions::default()).expect("warnings do not stop a load");
    let w: Vec<&Diagnostic> = loaded.warnings.warnings().collect();
    assert_eq!(w.len(), 1, "{}", loaded.warnings);
    assert_eq!(w[0].code, "no-default");
}

#[test]
fn a_file_over_one_mebibyte_is_refused_before_parsing() {
    let mut text = String::from("# expect: file-too-large 1:1 the limit for a process file is\nid: p\nstart: { next: done }\nnodes:\n  done: { end: }\n");
    let filler = format!("# {}\n", "x".repeat(1021));
    while text.len() <= nagare_engine::load::tree::MAX_FILE_BYTES {
        text.push_str(&filler);
    }
    let problems = check_file("file-too-large.yaml", text.as_bytes());
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn unknown_connector_is_reported_when_the_connectors_are_known() {
    let text = "id: p\nstart: { next: call }\nnodes:\n  call:\n    service: ecko\n    next: done\n  done: { end: }\n";
    let opts = CompileOptions { connectors: Some(vec!["echo".into(), "http".into()]), ..CompileOptions::default() };
    let err = load_str("c.yaml", text, &opts).unwrap_err();
    let d = &err.0[0];
    assert_eq!((d.code, d.line, d.col), ("unknown-connector", 5, 14), "{err}");
    assert!(d.message.contains("unknown connector `ecko`"), "{err}");
    assert_eq!(d.hint.as_deref(), Some("did you mean `echo`?"));
    assert!(
        load_str("c.yaml", text, &CompileOptions::default()).is_ok(),
        "offline validation does not know connectors"
    );
}

/// Definitions deployed before the static type checks existed still load from the
/// store (their findings become warnings), so an upgrade does not drop them.
#[test]
fn stored_definitions_with_type_findings_still_load() {
    let text = std::fs::read_to_string(corpus_dir().join("type-mismatch-comparison.yaml")).unwrap();
    assert!(load_str("t.yaml", &text, &CompileOptions::default()).is_err());
    let loaded = load_str("t.yaml", &text, &CompileOptions::stored()).expect("a stored definition reloads");
    let codes: Vec<&str> = loaded.warnings.warnings().map(|d| d.code).collect();
    assert_eq!(codes, ["type-mismatch", "type-mismatch"], "{}", loaded.warnings);
}
