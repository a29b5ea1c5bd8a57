//! `nagare import`: a BPMN 2.0 file (from Camunda Modeler, bpmn.io, Signavio,
//! ...) to nagare YAML, validated like a written process file.

use crate::output::Out;
use anyhow::{bail, Context};
use clap::Args;
use nagare_engine::bpmn::{self, ImportOptions};
use nagare_engine::types::TYPE_NAMES;
use nagare_engine::Engine;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The BPMN 2.0 file.
    pub file: PathBuf,
    /// Write the YAML to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Declare a variable the model does not (BPMN has no declarations): NAME:TYPE,
    /// e.g. approved:bool. It is also put, optional, on the form of every user
    /// task that has no form.
    #[arg(long = "var", value_name = "NAME:TYPE")]
    pub vars: Vec<String>,
}

pub fn import(out: &Out, a: ImportArgs) -> anyhow::Result<ExitCode> {
    let name = a.file.display().to_string();
    let mut opts = ImportOptions::default();
    for v in &a.vars {
        let Some((n, t)) = v.split_once(':') else { bail!("--var {v}: write NAME:TYPE, e.g. approved:bool") };
        if !TYPE_NAMES.contains(&t.trim()) {
            bail!("--var {v}: `{t}` is not a type; use one of {}", TYPE_NAMES.join(", "));
        }
        opts.declare.insert(n.trim().to_string(), t.trim().to_string());
    }
    let bytes = super::files::read_process_file(&a.file).with_context(|| format!("cannot read {name}"))?;
    let result =
        bpmn::decode(&bytes).map_err(|d| d.finish(&name)).and_then(|text| bpmn::import_with(text, &name, &opts));
    let imported = match result {
        Ok(i) => i,
        Err(diags) => return fail(out, &name, &diags),
    };
    // Validate the YAML as a deploy would (connectors included), findings pointed
    // back at the BPMN elements.
    let engine =
        Engine::builder().in_memory().connectors(super::connectors()?.registry()).build().map_err(super::explain)?;
    let mut warnings = imported.warnings.clone();
    match engine.validate(&name, &imported.yaml) {
        Ok(l) => warnings.0.extend(l.warnings.0),
        Err(d) => return fail(out, &name, &bpmn::locate(d, &imported)),
    }
    for w in &warnings.0 {
        eprintln!("{w}");
    }
    if out.json {
        let report = serde_json::json!({
            "file": name, "ok": true, "process": imported.def.id, "yaml": imported.yaml, "diagnostics": warnings.0,
        });
        out.json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    match &a.output {
        Some(p) => {
            std::fs::write(p, &imported.yaml).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("imported {name} → {} (process {})", p.display(), imported.def.id);
        }
        None => print!("{}", imported.yaml),
    }
    Ok(ExitCode::SUCCESS)
}

fn fail(out: &Out, name: &str, diags: &nagare_engine::Diagnostics) -> anyhow::Result<ExitCode> {
    if out.json {
        out.json(&serde_json::json!({ "file": name, "ok": false, "diagnostics": diags.0 }))?;
    } else {
        print!("{diags}");
        eprintln!("{name}: not imported ({} errors)", diags.errors().count());
    }
    Ok(ExitCode::FAILURE)
}
