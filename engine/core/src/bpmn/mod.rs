//! BPMN 2.0 XML in and out.
//!
//! Import ([`import()`]) turns a BPMN file drawn in any modeler into a nagare
//! [`ProcessDef`] and its YAML text, which then goes through the ordinary loader
//! and compiler ([`load_bpmn`]), so an imported process is validated exactly like
//! a written one. What import cannot map is a diagnostic with the element id,
//! its type and the line:col in the XML; expressions outside the translated
//! subset are diagnostics too, never a guess. Export (`export*.rs`) writes a
//! nagare process as BPMN with diagram interchange.
//!
//! # The nagare extension (the round-trip contract between export and import)
//!
//! nagare-only details travel in `<bpmn:extensionElements>` in the [`NAGARE_NS`]
//! namespace (prefix `nagare`), as JSON text (the serde form of the model types):
//!
//! - `<nagare:process>` inside `<bpmn:process>`'s extension elements: a JSON
//!   object with any of the [`ProcessDef`] keys other than `start` and `nodes`
//!   (`name`, `version`, `description`, `time_zone`, `lanes`, `variables`,
//!   `settings`). Keys present win over what import infers (e.g. variables).
//! - `<nagare:node>` inside a flow node's extension elements (start event,
//!   tasks, gateways, events, sub-processes): a JSON object with [`NodeDef`]
//!   keys (for the start event: [`crate::model::StartDef`] keys). Keys describing
//!   the *flow* are always taken from the BPMN structure ([`FLOW_KEYS`]), so a
//!   flow re-wired in a modeler wins; every other key present wins over what
//!   import derives (so `form`, `with`, `set`, `retry`, `due`, ... survive).
//!   For a sub-process, `sub_process.start`/`sub_process.nodes` come from the
//!   structure, its other keys (`variables`, `in`, `out`) from the extension.
//! - Conditions and scripts written with `language="rhai"` (conditionExpression)
//!   or `scriptFormat="rhai"` (scriptTask) are taken verbatim.
//! - Element ids are the nagare node ids; the start event may carry any id
//!   (nagare calls it `start`).

pub mod export;
mod export_json;
mod export_layout;
pub mod expr;
pub mod import;
pub mod xml;

pub use export::export;

use crate::compile::CompileOptions;
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::Loaded;
use crate::model::ProcessDef;
use std::collections::HashMap;

#[allow(unused_imports)]
use crate::model::NodeDef;

/// BPMN 2.0 semantic model.
pub const BPMN_NS: &str = "http://www.omg.org/spec/BPMN/20100524/MODEL";
/// BPMN diagram interchange.
pub const BPMNDI_NS: &str = "http://www.omg.org/spec/BPMN/20100524/DI";
/// Diagram common (bounds, points).
pub const DC_NS: &str = "http://www.omg.org/spec/DD/20100524/DC";
/// Diagram interchange (waypoints).
pub const DI_NS: &str = "http://www.omg.org/spec/DD/20100524/DI";
/// XML Schema instance (`xsi:type` on expressions).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// Camunda 7 (Camunda Modeler "Camunda Platform") extensions.
pub const CAMUNDA_NS: &str = "http://camunda.org/schema/1.0/bpmn";
/// Camunda 8 / Zeebe extensions.
pub const ZEEBE_NS: &str = "http://camunda.org/schema/zeebe/1.0";
/// Camunda Modeler's own attributes (execution platform), ignored on import.
pub const MODELER_NS: &str = "http://camunda.org/schema/modeler/1.0";
/// SpiffWorkflow (spiff-arena) extensions.
pub const SPIFF_NS: &str = "http://spiffworkflow.org/bpmn/schema/1.0/core";
/// Signavio's extension namespace (metadata only, ignored on import).
pub const SIGNAVIO_NS: &str = "http://www.signavio.com";
/// nagare's own extension elements (see the module docs).
pub const NAGARE_NS: &str = "https://nagare.dev/schema/bpmn/1.0";

/// [`NodeDef`] keys taken from the BPMN structure, never from `<nagare:node>`.
pub const FLOW_KEYS: &[&str] =
    &["next", "exclusive", "inclusive", "parallel", "event_based", "join", "default", "boundary"];

/// The result of importing one BPMN file.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The process as the YAML model.
    pub def: ProcessDef,
    /// The same, as YAML text a designer can read and keep (`nagare import -o`).
    pub yaml: String,
    /// Findings that do not stop the import (ignored diagram details, ...).
    pub warnings: Diagnostics,
    /// Node id → line:col of its element in the XML, to point compile findings
    /// on the generated YAML back into the BPMN file.
    pub locs: HashMap<String, Loc>,
}

/// Import a BPMN 2.0 file: `file` names it in diagnostics, whose positions are
/// line:col in the XML. Errors: hostile or malformed XML, elements nagare does
/// not run (`unsupported-element`), expressions outside the translated subset.
pub fn import(xml: &str, file: &str) -> Result<Imported, Diagnostics> {
    import::import(xml, file)
}

/// [`import()`] with choices the file cannot express (variables to declare).
pub fn import_with(xml: &str, file: &str, opts: &ImportOptions) -> Result<Imported, Diagnostics> {
    import::import_with(xml, file, opts)
}

pub use import::ImportOptions;

/// Import a BPMN file and load the result like a YAML process file: the stored
/// source of the process is the generated YAML.
pub fn load_bpmn(file: &str, xml: &str, opts: &CompileOptions) -> Result<Loaded, Diagnostics> {
    let imported = import(xml, file)?;
    let mut loaded = crate::load::load_str(file, &imported.yaml, opts).map_err(|d| locate(d, &imported))?;
    let mut warnings = imported.warnings;
    warnings.0.append(&mut loaded.warnings.0);
    loaded.warnings = warnings.finish(file);
    Ok(loaded)
}

/// Findings on the generated YAML, pointed back at the BPMN element of the node
/// they are about (the nearest node key above the YAML line), so a designer sees
/// where in the model to fix it; the message names the YAML position too.
pub fn locate(d: Diagnostics, imported: &Imported) -> Diagnostics {
    let lines: Vec<&str> = imported.yaml.lines().collect();
    let mut out = Diagnostics::default();
    for mut diag in d.0 {
        let upto = diag.line.min(lines.len());
        let node = lines[..upto].iter().rev().find_map(|l| {
            let key = l.trim_start().strip_suffix(':')?;
            imported.locs.get(key).map(|loc| (key, *loc))
        });
        let (yl, yc) = (diag.line, diag.col);
        match node {
            Some((id, loc)) => {
                diag.message = format!("{} (element `{id}`; line {yl}:{yc} of the imported YAML)", diag.message);
                diag.line = loc.line;
                diag.col = loc.col;
            }
            None => {
                diag.message = format!("{} (line {yl}:{yc} of the imported YAML)", diag.message);
                diag.line = 1;
                diag.col = 1;
            }
        }
        out.push(diag);
    }
    out
}

/// Check the size and encoding of a BPMN file's bytes (read with at most
/// [`xml::MAX_XML_BYTES`] + 1 bytes) and return its text.
pub fn decode(bytes: &[u8]) -> Result<&str, Diagnostics> {
    let mut d = Diagnostics::default();
    if bytes.len() > xml::MAX_XML_BYTES {
        d.push(
            Diagnostic::error(
                "file-too-large",
                Loc::new(1, 1),
                format!("the BPMN file has more than {} bytes (4 MiB), the limit", xml::MAX_XML_BYTES),
            )
            .with_hint("split the model into several processes (call activities)"),
        );
        return Err(d);
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let upto = &bytes[..e.valid_up_to()];
        let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
        let col = String::from_utf8_lossy(&upto[upto.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)..])
            .chars()
            .count()
            + 1;
        d.push(
            Diagnostic::error("invalid-utf8", Loc::new(line, col), "the BPMN file is not UTF-8 here")
                .with_hint("save it as UTF-8 (modelers do by default)"),
        );
        d
    })
}

/// Whether `text` looks like BPMN XML rather than YAML: starts (after a BOM and
/// blank space) with `<?xml` or with a `definitions` element.
pub fn looks_like_bpmn(text: &str) -> bool {
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with("<?xml") {
        return true;
    }
    let Some(rest) = t.strip_prefix('<') else { return false };
    let name: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/').collect();
    name == "definitions" || name.ends_with(":definitions")
}
