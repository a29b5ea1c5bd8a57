//! `nagare export FILE --format bpmn`: a process file as BPMN 2.0 XML with its
//! diagram, for Camunda Modeler, bpmn.io and other modelers. Reads the file only.

use crate::output::Out;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use nagare_engine::compile::CompileOptions;
use nagare_engine::model::ProcessDef;
use nagare_engine::{bpmn, load};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// BPMN 2.0 XML with diagram interchange (shapes, edges, pool and lanes).
    Bpmn,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The process file (YAML).
    pub file: PathBuf,
    /// bpmn: BPMN 2.0 XML.
    #[arg(long, value_enum, default_value = "bpmn")]
    pub format: ExportFormat,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Export a process file. A file that does not validate is not exported: its
/// diagnostics are printed, as `nagare validate` prints them.
pub fn export(_out: &Out, a: ExportArgs) -> anyhow::Result<ExitCode> {
    let name = a.file.display().to_string();
    let bytes = super::files::read_process_file(&a.file).with_context(|| format!("cannot read {name}"))?;
    let loaded = match load::load_bytes(&name, &bytes, &CompileOptions::default()) {
        Ok(l) => l,
        Err(diags) => {
            for d in &diags.0 {
                eprintln!("{d}");
            }
            bail!("{name} has errors; fix them to export it (`nagare validate {name}`)");
        }
    };
    let def: ProcessDef = serde_yaml::from_str(&loaded.process.source)
        .with_context(|| format!("{name} validated but does not read back as a process definition"))?;
    let text = match a.format {
        ExportFormat::Bpmn => bpmn::export(&def),
    };
    super::draw::write_out(a.output.as_deref(), &text)?;
    Ok(ExitCode::SUCCESS)
}
