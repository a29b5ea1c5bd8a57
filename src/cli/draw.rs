//! `nagare diagram` and `nagare schema`: a process file drawn as SVG or Mermaid,
//! and the JSON Schema of process files for editors. Neither opens the data
//! directory: they read the file (or nothing) and print text.

use crate::output::Out;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use nagare_engine::compile::CompileOptions;
use nagare_engine::{diagram, load, schema};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Svg,
    Mermaid,
}

#[derive(Debug, Args)]
pub struct DiagramArgs {
    /// The process file (YAML, or BPMN 2.0: drawn as the process it imports to).
    pub file: PathBuf,
    /// svg (the default) or mermaid (a `flowchart LR` for Markdown).
    #[arg(long, value_enum, default_value = "svg")]
    pub format: Format,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Draw a process file. A file that does not validate is not drawn: its
/// diagnostics are printed, as `nagare validate` prints them.
pub fn diagram(_out: &Out, a: DiagramArgs) -> anyhow::Result<ExitCode> {
    let name = a.file.display().to_string();
    let bytes = super::files::read_process_file(&a.file).with_context(|| format!("cannot read {name}"))?;
    // A BPMN file is drawn as the process it imports to.
    let loaded = if super::files::is_bpmn_path(&a.file) {
        nagare_engine::bpmn::decode(&bytes)
            .map_err(|d| d.finish(&name))
            .and_then(|text| nagare_engine::bpmn::load_bpmn(&name, text, &CompileOptions::default()))
    } else {
        load::load_bytes(&name, &bytes, &CompileOptions::default())
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(diags) => {
            for d in &diags.0 {
                eprintln!("{d}");
            }
            bail!("{name} has errors; fix them to draw it (`nagare validate {name}`)");
        }
    };
    let d = diagram::diagram(&loaded.process);
    let text = match a.format {
        Format::Svg => diagram::svg(&d, &diagram::Highlight::default()),
        Format::Mermaid => diagram::mermaid(&d),
    };
    write_out(a.output.as_deref(), &text)?;
    Ok(ExitCode::SUCCESS)
}

/// Print the JSON Schema of process files.
pub fn schema(_out: &Out, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    write_out(output, &schema::schema_text())?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn write_out(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display())),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(text.as_bytes()).context("cannot write to standard output")
        }
    }
}
