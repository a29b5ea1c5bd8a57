//! From the bytes of a process file to its text: size, encoding and byte-order mark.
//!
//! Whoever reads a process file (the CLI, the processes directory, an embedding app)
//! reads at most [`READ_LIMIT`] bytes and hands them here, so a hostile path such as
//! `/dev/zero` is refused after 1 MiB instead of filling memory. Text that arrives as
//! a string (the API's JSON body) starts at [`strip_bom`].

use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::tree::MAX_FILE_BYTES;

/// How many bytes a reader should take from a process file: one more than the limit,
/// so that a file over the limit is told apart from one exactly at it.
pub const READ_LIMIT: u64 = MAX_FILE_BYTES as u64 + 1;

/// The UTF-8 byte-order mark that Windows editors (Notepad, Excel's CSV-to-text) put
/// before the first character.
const BOM: char = '\u{feff}';

/// The text without leading byte-order marks (tools that concatenate files can write
/// two). An editor does not show the mark and does not count it in its columns, so
/// neither do diagnostics.
pub fn strip_bom(text: &str) -> &str {
    text.trim_start_matches(BOM)
}

/// The diagnostic for a file over [`MAX_FILE_BYTES`]; `len` is what was read, which is
/// at most [`READ_LIMIT`] when the reader was bounded.
pub fn too_large(len: usize) -> Diagnostic {
    debug_assert!(len > MAX_FILE_BYTES);
    Diagnostic::error(
        "file-too-large",
        Loc::new(1, 1),
        format!(
            "file has more than {MAX_FILE_BYTES} bytes; the limit for a process file is {MAX_FILE_BYTES} bytes (1 MiB)"
        ),
    )
    .with_hint("split the process into smaller processes, or move data out of the definition")
}

/// Check the size and encoding of a file's bytes and return its text (a leading
/// byte-order mark is kept here and skipped by the loader).
pub fn decode(bytes: &[u8]) -> Result<&str, Diagnostics> {
    let mut diags = Diagnostics::default();
    if bytes.len() > MAX_FILE_BYTES {
        diags.push(too_large(bytes.len()));
        return Err(diags);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            diags.push(not_utf8(bytes, e.valid_up_to()));
            Err(diags)
        }
    }
}

/// "not UTF-8", pointing at the first bad byte the way an editor would count it.
fn not_utf8(bytes: &[u8], valid_up_to: usize) -> Diagnostic {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Diagnostic::error("invalid-utf8", Loc::new(1, 1), "the file is UTF-16; process files are UTF-8")
            .with_hint("save the file as UTF-8 (in Notepad: Save as… → Encoding: UTF-8)");
    }
    // Everything before `valid_up_to` is valid UTF-8 by definition.
    let good = std::str::from_utf8(&bytes[..valid_up_to]).unwrap_or_default();
    let good = strip_bom(good);
    let line = 1 + good.matches('\n').count();
    let col = 1 + good.rsplit('\n').next().unwrap_or_default().chars().count();
    let byte = bytes[valid_up_to];
    Diagnostic::error(
        "invalid-utf8",
        Loc::new(line, col),
        format!("the file is not valid UTF-8: byte 0x{byte:02X} at line {line}, column {col}"),
    )
    .with_hint(
        "save the file as UTF-8; a file written as Shift_JIS (CP932) can be converted with `iconv -f CP932 -t UTF-8`",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_points_at_the_first_bad_byte() {
        let mut bytes = "id: p\nname: 経費\u{3000}".as_bytes().to_vec();
        bytes.extend_from_slice(&[0x82, 0xA0, b'\n']);
        let d = &decode(&bytes).unwrap_err().0[0];
        assert_eq!((d.code, d.line, d.col), ("invalid-utf8", 2, 10), "{d}");
        assert!(d.message.contains("0x82"), "{d}");
        assert!(d.hint.as_deref().unwrap_or_default().contains("iconv"), "{d}");
    }

    #[test]
    fn invalid_utf8_after_a_bom_counts_columns_without_it() {
        let mut bytes = "\u{feff}ab".as_bytes().to_vec();
        bytes.push(0xC0);
        let d = &decode(&bytes).unwrap_err().0[0];
        assert_eq!((d.line, d.col), (1, 3), "{d}");
    }

    #[test]
    fn utf16_is_named() {
        let d = &decode(&[0xFF, 0xFE, b'i', 0, b'd', 0]).unwrap_err().0[0];
        assert_eq!((d.code, d.line, d.col), ("invalid-utf8", 1, 1));
        assert!(d.message.contains("UTF-16"), "{d}");
    }

    #[test]
    fn more_than_the_limit_is_refused_whatever_the_bytes() {
        let zeros = vec![0u8; READ_LIMIT as usize];
        let d = &decode(&zeros).unwrap_err().0[0];
        assert_eq!(d.code, "file-too-large");
        assert!(decode(&zeros[..MAX_FILE_BYTES]).is_ok(), "exactly the limit is allowed");
    }

    #[test]
    fn leading_boms_are_stripped() {
        assert_eq!(strip_bom("\u{feff}id: p"), "id: p");
        assert_eq!(strip_bom("\u{feff}\u{feff}id: p"), "id: p");
        assert_eq!(strip_bom("id: \u{feff}"), "id: \u{feff}");
        assert_eq!(strip_bom("id: p"), "id: p");
    }
}
