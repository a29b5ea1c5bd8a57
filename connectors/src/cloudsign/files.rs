//! Files a CloudSign step uploads: a reference to a stored blob, or small inline
//! content, checked before any request is made.
//!
//! The engine keeps file contents outside instance state, content-addressed by
//! SHA-256 under the data directory; a variable holds only the reference
//! `{name, content_type, size, sha256}`. The connector is given a [`BlobSource`]
//! when it is built and reads the bytes through it, so neither the connector nor the
//! process handles paths. Small files may instead come inline as
//! `{name, content_base64}` (at most [`MAX_INLINE_BYTES`]).

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The seed's cap on one contract file (CloudSign itself takes about 20 MB a request).
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Largest inline (`content_base64`) file, decoded.
pub const MAX_INLINE_BYTES: usize = 1024 * 1024;
/// Longest file name CloudSign shows, in characters.
pub const MAX_NAME_CHARS: usize = 255;

/// A blob could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("no stored file has SHA-256 {0}")]
    Missing(String),
    #[error("`{0}` is not a SHA-256 (64 hex digits)")]
    BadHash(String),
    #[error("cannot read the stored file {sha256}: {reason}")]
    Io { sha256: String, reason: String },
    #[error("no file store is configured for this connector")]
    Unavailable,
    /// The content was refused while it streamed in (too large, not a PDF).
    #[error("the file was refused: {0}")]
    Refused(String),
}

/// Where the bytes of a file reference come from (and where downloaded files go).
pub trait BlobSource: Send + Sync {
    /// The whole content of the blob with this SHA-256 (lowercase hex).
    fn open(&self, sha256: &str) -> Result<Vec<u8>, BlobError>;

    /// Start storing a new blob, streamed: a connector that downloads a file
    /// writes it chunk by chunk and hands the process only the reference. Contract
    /// files: at most [`MAX_FILE_BYTES`], PDF checked as the bytes arrive.
    fn create(&self) -> Result<Box<dyn BlobSink>, BlobError> {
        Err(BlobError::Unavailable)
    }

    /// A directory where connectors keep their own small durable state (the
    /// CloudSign import's high-water marks), or `None`: keep it in memory.
    fn state_dir(&self) -> Option<PathBuf> {
        None
    }
}

/// A blob being written. Dropping it without [`BlobSink::finish`] stores nothing.
pub trait BlobSink: Send {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError>;
    /// Make the content durable: `(sha256, size)`.
    fn finish(self: Box<Self>) -> Result<(String, u64), BlobError>;
}

/// The limits of a downloaded contract file.
fn contract_limits() -> nagare_engine::blobs::WriteLimits {
    nagare_engine::blobs::WriteLimits { max_size: MAX_FILE_BYTES, pdf: true }
}

fn engine_error(e: nagare_engine::blobs::BlobError) -> BlobError {
    use nagare_engine::blobs::BlobError as E;
    match e {
        E::TooLarge { .. } | E::NotPdf(_) => BlobError::Refused(e.to_string()),
        E::Missing(s) => BlobError::Missing(s),
        E::Io(io) => BlobError::Io { sha256: String::new(), reason: io.to_string() },
        other => BlobError::Io { sha256: String::new(), reason: other.to_string() },
    }
}

/// The engine's blob writer as a [`BlobSink`].
struct EngineSink(nagare_engine::blobs::BlobWriter);

impl BlobSink for EngineSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.0.write(bytes).map_err(engine_error)
    }
    fn finish(self: Box<Self>) -> Result<(String, u64), BlobError> {
        let s = self.0.finish().map_err(engine_error)?;
        Ok((s.sha256, s.size))
    }
}

fn check_hash(sha256: &str) -> Result<(), BlobError> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(BlobError::BadHash(sha256.chars().take(80).collect()))
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Blobs in `<data>/blobs/<sha256[0..2]>/<sha256>`, the engine's layout.
#[derive(Debug, Clone)]
pub struct FsBlobs {
    root: PathBuf,
}

impl FsBlobs {
    /// Blobs of the data directory `data` (the store is `data/blobs`).
    pub fn new(data: impl Into<PathBuf>) -> FsBlobs {
        FsBlobs { root: data.into().join("blobs") }
    }
}

impl BlobSource for FsBlobs {
    fn open(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        check_hash(sha256)?;
        let path = self.root.join(&sha256[..2]).join(sha256);
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BlobError::Missing(sha256.to_string()),
            _ => BlobError::Io { sha256: sha256.to_string(), reason: e.to_string() },
        })
    }

    fn create(&self) -> Result<Box<dyn BlobSink>, BlobError> {
        let blobs = nagare_engine::blobs::Blobs::in_dir(&self.root).map_err(engine_error)?;
        Ok(Box::new(EngineSink(blobs.writer(contract_limits()).map_err(engine_error)?)))
    }

    fn state_dir(&self) -> Option<PathBuf> {
        self.root.parent().map(|data| data.join("connectors"))
    }
}

/// Blobs in memory, for tests and embedding apps.
#[derive(Debug, Clone, Default)]
pub struct MemoryBlobs(Arc<Mutex<HashMap<String, Vec<u8>>>>);

impl MemoryBlobs {
    /// Store `bytes`; returns their SHA-256.
    pub fn put(&self, bytes: Vec<u8>) -> String {
        let h = sha256_hex(&bytes);
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(h.clone(), bytes);
        h
    }
}

impl BlobSource for MemoryBlobs {
    fn open(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        check_hash(sha256)?;
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(sha256).cloned().ok_or(BlobError::Missing(sha256.into()))
    }

    fn create(&self) -> Result<Box<dyn BlobSink>, BlobError> {
        Ok(Box::new(MemorySink { blobs: self.clone(), bytes: Vec::new() }))
    }
}

struct MemorySink {
    blobs: MemoryBlobs,
    bytes: Vec<u8>,
}

impl BlobSink for MemorySink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        if (self.bytes.len() + bytes.len()) as u64 > MAX_FILE_BYTES {
            return Err(BlobError::Refused(format!("the file is larger than {MAX_FILE_BYTES} bytes")));
        }
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<(String, u64), BlobError> {
        if !looks_like_pdf(&self.bytes) {
            return Err(BlobError::Refused("the file is not a PDF".into()));
        }
        let size = self.bytes.len() as u64;
        Ok((self.blobs.put(self.bytes), size))
    }
}

/// No file store: references fail with a clear message (inline files still work).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBlobs;

impl BlobSource for NoBlobs {
    fn open(&self, _: &str) -> Result<Vec<u8>, BlobError> {
        Err(BlobError::Unavailable)
    }
}

/// Why a file input was refused: the field it came from and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`{}: {reason}", name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default())]
pub struct FileError {
    pub field: String,
    pub name: Option<String>,
    pub reason: String,
    /// A problem of the file store rather than of the file (worth a retry).
    pub transient: bool,
}

/// A file ready to upload.
#[derive(Clone, PartialEq, Eq)]
pub struct PdfFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for PdfFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PdfFile({}, {} bytes)", self.name, self.bytes.len())
    }
}

/// Whether `bytes` look like a whole PDF: `%PDF-` at the start, `%%EOF` at the end
/// (trailing line breaks and spaces allowed), as CloudSign checks.
pub fn looks_like_pdf(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map(|i| i + 1).unwrap_or(0);
    bytes.starts_with(b"%PDF-") && bytes[..end].ends_with(b"%%EOF")
}

/// Read a file input (`field` names it in errors): a reference read through
/// `blobs`, or inline `content_base64`. Checks the name, the declared and real size
/// (≤ [`MAX_FILE_BYTES`]), the SHA-256, the content type and the PDF markers,
/// and refuses the size from the reference before reading anything.
pub fn resolve(field: &str, v: &serde_json::Value, blobs: &dyn BlobSource) -> Result<PdfFile, FileError> {
    use base64::Engine as _;
    let name = v.get("name").and_then(|n| n.as_str()).map(str::to_string);
    let err = |reason: String| FileError { field: field.to_string(), name: name.clone(), reason, transient: false };
    let obj = v.as_object().ok_or_else(|| {
        err("must be a file: `{name, content_type, size, sha256}` or `{name, content_base64}`".into())
    })?;
    let name_s = name.clone().filter(|n| !n.trim().is_empty()).ok_or_else(|| err("has no `name`".into()))?;
    if name_s.chars().count() > MAX_NAME_CHARS || name_s.chars().any(char::is_control) {
        return Err(err(format!("the name must be at most {MAX_NAME_CHARS} characters without control characters")));
    }
    if let Some(ct) = obj.get("content_type").and_then(|c| c.as_str()) {
        if !ct.trim().eq_ignore_ascii_case("application/pdf") {
            return Err(err(format!("is `{}`, but CloudSign takes PDF files only (application/pdf)", snip(ct))));
        }
    }
    let too_big =
        |n: u64| err(format!("is {n} bytes; a contract file may have at most {MAX_FILE_BYTES} bytes (10 MB)"));
    let bytes = if let Some(b64) = obj.get("content_base64") {
        let b64 = b64.as_str().ok_or_else(|| err("`content_base64` must be text".into()))?;
        if b64.len() > MAX_INLINE_BYTES.div_ceil(3) * 4 + 4 {
            return Err(err(format!(
                "inline content is limited to {MAX_INLINE_BYTES} bytes; pass a stored file reference instead"
            )));
        }
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| err(format!("`content_base64` is not base64: {e}")))?
    } else {
        let sha = obj
            .get("sha256")
            .and_then(|s| s.as_str())
            .ok_or_else(|| err("has neither `sha256` (a stored file) nor `content_base64` (inline content)".into()))?;
        if let Some(size) = obj.get("size") {
            let size = size.as_u64().ok_or_else(|| err("`size` must be a number of bytes".into()))?;
            if size > MAX_FILE_BYTES {
                return Err(too_big(size));
            }
        }
        let bytes = blobs
            .open(sha)
            .map_err(|e| FileError { transient: matches!(e, BlobError::Io { .. }), ..err(e.to_string()) })?;
        if sha256_hex(&bytes) != sha {
            return Err(FileError { transient: false, ..err("the stored content does not match its SHA-256".into()) });
        }
        bytes
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    if !looks_like_pdf(&bytes) {
        return Err(err("is not a PDF (it must start with `%PDF-` and end with `%%EOF`)".into()));
    }
    Ok(PdfFile { name: name_s, bytes })
}

fn snip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n";

    #[test]
    fn references_are_read_and_checked() {
        let blobs = MemoryBlobs::default();
        let sha = blobs.put(PDF.to_vec());
        let f = resolve(
            "file",
            &json!({"name": "a.pdf", "content_type": "application/pdf", "size": PDF.len(), "sha256": sha}),
            &blobs,
        )
        .unwrap();
        assert_eq!(f.bytes, PDF);
        let e = resolve("file", &json!({"name": "a.pdf", "sha256": "0".repeat(64)}), &blobs).unwrap_err();
        assert!(e.to_string().starts_with("`file` (a.pdf): no stored file"), "{e}");
        let e = resolve("x", &json!({"name": "a.pdf", "size": 12_000_000, "sha256": "zz"}), &NoBlobs).unwrap_err();
        assert!(e.reason.contains("at most 10485760"), "the declared size is refused before reading: {e}");
    }

    #[test]
    fn non_pdfs_and_bad_inline_content_are_refused() {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        assert!(resolve("f", &json!({"name": "a.pdf", "content_base64": b64(PDF)}), &NoBlobs).is_ok());
        let e = resolve("f", &json!({"name": "a.txt", "content_base64": b64(b"hello")}), &NoBlobs).unwrap_err();
        assert!(e.reason.contains("not a PDF"), "{e}");
        let e =
            resolve("f", &json!({"name": "a.png", "content_type": "image/png", "content_base64": b64(PDF)}), &NoBlobs)
                .unwrap_err();
        assert!(e.reason.contains("PDF files only"), "{e}");
        let e = resolve("f", &json!({"name": "a.pdf", "content_base64": "***"}), &NoBlobs).unwrap_err();
        assert!(e.reason.contains("not base64"), "{e}");
        assert!(!looks_like_pdf(b"%PDF-1.4 truncated"));
    }

    #[test]
    fn fs_blobs_use_the_engine_layout() {
        let dir = tempfile::tempdir().unwrap();
        let sha = sha256_hex(PDF);
        std::fs::create_dir_all(dir.path().join("blobs").join(&sha[..2])).unwrap();
        std::fs::write(dir.path().join("blobs").join(&sha[..2]).join(&sha), PDF).unwrap();
        assert_eq!(FsBlobs::new(dir.path()).open(&sha).unwrap(), PDF);
        assert_eq!(FsBlobs::new(dir.path()).open("../etc"), Err(BlobError::BadHash("../etc".into())));
    }
}
