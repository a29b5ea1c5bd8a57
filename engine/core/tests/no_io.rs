//! The core does no IO, structurally: its manifest may only name pure crates, and
//! its source may not reach for files, sockets, processes, the environment or the
//! wall clock. A new dependency must be added to `PURE` here on purpose, after
//! checking that it does no IO (see ARCHITECTURE.md, "The engine core does no IO").

use std::path::{Path, PathBuf};

/// Crates the core may depend on: parsing, data structures, time arithmetic,
/// expressions, errors and logging facades. Nothing that opens files or sockets.
const PURE: &[&str] = &[
    "serde",
    "serde_json",
    "serde_yaml",
    "saphyr-parser",
    "petgraph",
    "rhai",
    "chrono",
    "chrono-tz",
    "croner",
    "thiserror",
    "tracing",
    "indexmap",
    "strsim",
    "humantime",
    "quick-xml",
];

/// Paths in source that mean IO or a hidden input.
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "tokio",
    "sled",
    "reqwest",
    "Utc::now",
    "SystemTime",
    "thread_rng",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Names of the `[dependencies]` (and target-specific dependencies) of a manifest.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]" || (line.starts_with("[target.") && line.ends_with(".dependencies]"));
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            names.push(name.to_string());
        }
    }
    names
}

#[test]
fn core_manifest_names_only_pure_crates() {
    let manifest = std::fs::read_to_string(manifest_dir().join("Cargo.toml")).expect("read Cargo.toml");
    let deps = dependencies(&manifest);
    assert!(deps.iter().any(|d| d == "rhai"), "the manifest parser found no dependencies: {deps:?}");
    let impure: Vec<_> = deps.iter().filter(|d| !PURE.contains(&d.as_str())).collect();
    assert!(
        impure.is_empty(),
        "nagare-core may not depend on {impure:?}: the core does no IO (add to PURE only after checking)"
    );
}

#[test]
fn the_manifest_check_catches_an_io_crate() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nrhai.workspace = true\ntokio = { version = \"1\" }\n";
    let deps = dependencies(manifest);
    assert_eq!(deps, ["rhai", "tokio"]);
    assert!(!PURE.contains(&"tokio"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_source_reaches_for_no_io() {
    let mut files = Vec::new();
    rust_files(&manifest_dir().join("src"), &mut files);
    assert!(files.len() > 10, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN {
                if code.contains(word) {
                    found.push(format!("{}:{}: {word}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "IO in the core:\n{}", found.join("\n"));
}
