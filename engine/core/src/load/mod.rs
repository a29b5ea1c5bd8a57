//! Loading a process file: text → spanned tree → typed model → compiled process.
//!
//! Each pass adds diagnostics; the first pass that finds errors ends the load, so a
//! designer sees every mistake of one kind at once, with file, line and column.

pub mod schema;
pub mod tree;

use crate::compile::{compile, CompileOptions};
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::model::ProcessDef;
use crate::process::{digest, Process};

/// A process that passed validation, and the warnings it still carries.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub process: Process,
    pub warnings: Diagnostics,
}

/// Load and validate one process file. `file` names it in diagnostics.
pub fn load_str(file: &str, text: &str, opts: &CompileOptions) -> Result<Loaded, Diagnostics> {
    let map = tree::parse(text).map_err(|d| d.finish(file))?;
    let mut diags = Diagnostics::default();
    schema::check(&map.root, &mut diags);
    if diags.has_errors() {
        return Err(diags.finish(file));
    }
    let def: ProcessDef = serde_yaml::from_str(text).map_err(|e| {
        let mut d = Diagnostics::default();
        d.push(serde_diagnostic(&e));
        d.finish(file)
    })?;
    let (mut process, warnings) = compile(&def, &map, opts).map_err(|d| d.finish(file))?;
    process.digest = digest(text);
    process.source = text.to_string();
    Ok(Loaded { process, warnings: warnings.finish(file) })
}

fn serde_diagnostic(e: &serde_yaml::Error) -> Diagnostic {
    let loc = e.location().map(|l| Loc::new(l.line(), l.column())).unwrap_or(Loc::new(1, 1));
    let mut msg = e.to_string();
    if let Some(cut) = msg.find(" at line ") {
        msg.truncate(cut);
    }
    let hint = if let Some(field) = msg.split("missing field `").nth(1).and_then(|s| s.split('`').next()) {
        format!("add `{field}:` here")
    } else if msg.contains("invalid type") {
        "this value has the wrong type; quote text, write numbers bare, lists as [a, b]".to_string()
    } else if msg.contains("unknown variant") {
        "use one of the values listed".to_string()
    } else {
        "see the process format in README.md".to_string()
    };
    Diagnostic::error("bad-value", loc, msg).with_hint(hint)
}
