//! Loading a process file: text → spanned tree → typed model → compiled process.
//!
//! Each pass adds diagnostics; the first pass that finds errors ends the load, so a
//! designer sees every mistake of one kind at once, with file, line and column.

pub mod input;
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

/// Load and validate the bytes of one process file (read with at most
/// [`input::READ_LIMIT`] bytes): size and UTF-8 are checked first.
pub fn load_bytes(file: &str, bytes: &[u8], opts: &CompileOptions) -> Result<Loaded, Diagnostics> {
    let text = input::decode(bytes).map_err(|d| d.finish(file))?;
    load_str(file, text, opts)
}

/// Load and validate one process file. `file` names it in diagnostics. A leading
/// byte-order mark is skipped; the stored source and its digest are the text after it.
pub fn load_str(file: &str, text: &str, opts: &CompileOptions) -> Result<Loaded, Diagnostics> {
    let text = input::strip_bom(text);
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

pub(crate) fn serde_diagnostic(e: &serde_yaml::Error) -> Diagnostic {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "id: p\nstart: { next: done }\nnodes:\n  done: { end: }\n";

    #[test]
    fn bom_before_the_first_key_is_accepted() {
        let with_bom = format!("\u{feff}{SMALL}");
        let loaded = load_str("bom.yaml", &with_bom, &CompileOptions::default()).expect("a BOM is not an error");
        let plain = load_str("plain.yaml", SMALL, &CompileOptions::default()).unwrap();
        assert_eq!(loaded.process.id, "p");
        assert_eq!(loaded.process.digest, plain.process.digest, "the mark is not part of the process");
        assert!(!loaded.process.source.starts_with('\u{feff}'));
        let from_bytes = load_bytes("bom.yaml", with_bom.as_bytes(), &CompileOptions::default()).unwrap();
        assert_eq!(from_bytes.process.digest, plain.process.digest);
    }

    #[test]
    fn bom_does_not_shift_positions_on_the_first_line() {
        let text = "\u{feff}id: a b\nstart: { next: done }\nnodes:\n  done: { end: }\n";
        let err = load_str("bom.yaml", text, &CompileOptions::default()).unwrap_err();
        let d = &err.0[0];
        assert_eq!((d.code, d.line, d.col), ("bad-id", 1, 5), "{err}");
    }

    #[test]
    fn invalid_utf8_is_a_diagnostic_with_file_and_position() {
        let mut bytes = SMALL.as_bytes().to_vec();
        bytes.splice(28..28, [0x8C, 0x6F]); // Shift_JIS 経 at the start of line 3
        let err = load_bytes("sjis.yaml", &bytes, &CompileOptions::default()).unwrap_err();
        let d = &err.0[0];
        assert_eq!((d.code, d.file.as_str(), d.line, d.col), ("invalid-utf8", "sjis.yaml", 3, 1), "{err}");
    }
}
