//! `nagare validate` and `nagare deploy`: process files in, diagnostics out.

use crate::output::Out;
use nagare_engine::bpmn;
use nagare_engine::load::input;
use nagare_engine::{Diagnostic, Engine, EngineError};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Serialize)]
struct FileReport {
    file: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    diagnostics: Vec<Diagnostic>,
}

impl FileReport {
    fn new(file: &str) -> Self {
        FileReport {
            file: file.to_string(),
            ok: false,
            process: None,
            nodes: None,
            version: None,
            created: None,
            error: None,
            diagnostics: Vec::new(),
        }
    }
}

/// Read at most [`input::READ_LIMIT`] bytes of a process file: enough to tell that a
/// file is over the limit, and never more (`nagare validate /dev/zero` stops at 1 MiB).
pub fn read_process_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let limit = if is_bpmn_path(path) { bpmn::xml::MAX_XML_BYTES as u64 + 1 } else { input::READ_LIMIT };
    std::fs::File::open(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `.bpmn` (and `.xml`) files are BPMN: read with the larger XML limit.
pub fn is_bpmn_path(path: &Path) -> bool {
    path.extension().is_some_and(|x| x.eq_ignore_ascii_case("bpmn") || x.eq_ignore_ascii_case("xml"))
}

/// The text of a process file's bytes: size and UTF-8 checked by the rules of
/// its format (BPMN files may be larger, diagrams included).
pub fn decode<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, nagare_engine::Diagnostics> {
    if is_bpmn_path(path) {
        bpmn::decode(bytes)
    } else {
        input::decode(bytes)
    }
}

/// The text of a process file, or why not: an IO error goes to `report.error`,
/// a file too large or not UTF-8 to its diagnostics.
fn read(path: &Path, report: &mut FileReport) -> Option<String> {
    let bytes = match read_process_file(path) {
        Ok(b) => b,
        Err(e) => {
            report.error = Some(format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    match decode(path, &bytes) {
        Ok(text) => Some(text.to_string()),
        Err(diags) => {
            report.diagnostics = diags.finish(&report.file).0;
            None
        }
    }
}

/// Diagnostics are the report of these commands, so they go to stdout.
fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        println!("{d}");
    }
}

pub fn validate(out: &Out, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let engine =
        Engine::builder().in_memory().connectors(super::connectors()?.registry()).build().map_err(super::explain)?;
    let mut reports = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let mut r = FileReport::new(&name);
        if let Some(text) = read(path, &mut r) {
            match engine.validate(&name, &text) {
                Ok(loaded) => {
                    r.ok = true;
                    r.process = Some(loaded.process.id.clone());
                    r.nodes = Some(loaded.process.nodes.len());
                    r.diagnostics = loaded.warnings.0;
                }
                Err(diags) => {
                    r.ok = !diags.has_errors();
                    r.diagnostics = diags.0;
                }
            }
        }
        if !out.json {
            print_diagnostics(&r.diagnostics);
            if let Some(e) = &r.error {
                eprintln!("error: {e}");
            } else if r.ok {
                println!(
                    "ok: {name} (process {}, {} nodes)",
                    r.process.as_deref().unwrap_or("?"),
                    r.nodes.unwrap_or(0)
                );
            }
        }
        reports.push(r);
    }
    finish(out, &reports)
}

fn finish(out: &Out, reports: &[FileReport]) -> anyhow::Result<ExitCode> {
    if out.json {
        out.json(reports)?;
    }
    let failed = reports.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        if !out.json && reports.len() > 1 {
            eprintln!("{failed} of {} files have errors", reports.len());
        }
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

pub fn deploy(out: &Out, data: &Path, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let engine = super::open(data)?;
    let mut reports = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let mut r = FileReport::new(&name);
        if let Some(text) = read(path, &mut r) {
            match engine.deploy(&name, &text) {
                Ok(d) => {
                    r.ok = true;
                    r.process = Some(d.id.clone());
                    r.version = Some(d.version);
                    r.created = Some(d.created);
                    r.diagnostics = d.warnings.0;
                }
                Err(EngineError::Invalid(diags)) => r.diagnostics = diags.0,
                Err(e) => r.error = Some(super::explain(e).to_string()),
            }
        }
        if !out.json {
            print_diagnostics(&r.diagnostics);
            if let Some(e) = &r.error {
                eprintln!("error: {e}");
            } else if r.ok {
                let word = if r.created == Some(true) { "deployed" } else { "unchanged" };
                println!("{word} {} version {}", r.process.as_deref().unwrap_or("?"), r.version.unwrap_or(0));
            }
        }
        reports.push(r);
    }
    finish(out, &reports)
}
