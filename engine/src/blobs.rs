//! The blob store: content of `file` variables, kept outside instance state.
//!
//! Content is addressed by its SHA-256 (`<dir>/<first two hex digits>/<sha256>`), so
//! the same PDF attached twice is stored once, and a reference can be checked
//! against the content it names. A blob is written to a temporary file, fsynced,
//! renamed into place and its directory fsynced *before* anyone gets a reference
//! to it; so a commit that references a blob never outlives the blob (a kill -9
//! during an upload leaves at most a temporary file, removed on the next
//! collection). Blobs no instance references are collected after a grace period
//! (uploads wait there until the start or completion that uses them).

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    #[error("the file is larger than {limit} bytes")]
    /// The content is larger than the variable's limit (HTTP 413).
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    #[error("the file is not a PDF: {0}")]
    /// The variable takes PDFs and the content is not one: what is wrong with it.
    NotPdf(&'static str),
    #[error("no stored file with SHA-256 {0}")]
    /// No content with this SHA-256 is stored (never uploaded, or collected).
    Missing(String),
    /// The disk failed. The message includes the I/O error's, so it is not also
    /// given as the source (an error chain would print it twice).
    #[error("blob store: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for BlobError {
    fn from(e: std::io::Error) -> Self {
        BlobError::Io(e)
    }
}

/// The content's address and size, known once it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The content's address: hex SHA-256 of its bytes.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What a writer checks while the bytes stream in, before anything is stored.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimits {
    /// Largest content accepted, in bytes.
    pub max_size: u64,
    /// The content must start with `%PDF-` and end with `%%EOF` (trailing
    /// whitespace allowed), as CloudSign and the seed processes require.
    pub pdf: bool,
}

/// Where blobs live: a directory, or memory (tests, in-memory engines).
#[derive(Clone)]
pub struct Blobs {
    inner: Arc<Backend>,
}

enum Backend {
    Dir(PathBuf),
    Memory(Mutex<BTreeMap<String, Arc<Vec<u8>>>>),
}

/// Temporary file names are unique within the process; the directory is the
/// engine's own (the data directory is locked by one process).
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);
const TEMP_PREFIX: &str = "upload-";

impl Blobs {
    /// Blobs under `dir` (created if missing).
    pub fn in_dir(dir: &Path) -> Result<Blobs, BlobError> {
        fs::create_dir_all(dir)?;
        Ok(Blobs { inner: Arc::new(Backend::Dir(dir.to_path_buf())) })
    }

    /// A store in memory, for tests and `Engine::builder().in_memory()`.
    pub fn in_memory() -> Blobs {
        Blobs { inner: Arc::new(Backend::Memory(Mutex::new(BTreeMap::new()))) }
    }

    /// The file a blob lives in (directory store only).
    fn path_of(dir: &Path, sha256: &str) -> PathBuf {
        dir.join(&sha256[..2]).join(sha256)
    }

    /// Start writing a blob. Dropping the writer without [`BlobWriter::finish`]
    /// removes what was written.
    pub fn writer(&self, limits: WriteLimits) -> Result<BlobWriter, BlobError> {
        let sink = match &*self.inner {
            Backend::Dir(dir) => {
                let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
                let path = dir.join(format!("{TEMP_PREFIX}{}-{seq}", std::process::id()));
                let file = File::create(&path)?;
                Sink::File { file, path }
            }
            Backend::Memory(_) => Sink::Memory(Vec::new()),
        };
        Ok(BlobWriter { blobs: self.clone(), sink: Some(sink), hash: Sha256::new(), limits, shape: Shape::default() })
    }

    /// Store a whole reader (connectors that download a file, tests).
    pub fn put(&self, mut from: impl Read, limits: WriteLimits) -> Result<Stored, BlobError> {
        let mut w = self.writer(limits)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n])?;
        }
        w.finish()
    }

    /// Whether the blob exists.
    pub fn contains(&self, sha256: &str) -> bool {
        if !nagare_core::types::is_sha256_hex(sha256) {
            return false;
        }
        match &*self.inner {
            Backend::Dir(dir) => Self::path_of(dir, sha256).is_file(),
            Backend::Memory(m) => m.lock().unwrap_or_else(|p| p.into_inner()).contains_key(sha256),
        }
    }

    /// Read a blob.
    pub fn open(&self, sha256: &str) -> Result<Box<dyn Read + Send>, BlobError> {
        if !nagare_core::types::is_sha256_hex(sha256) {
            return Err(BlobError::Missing(sha256.to_string()));
        }
        match &*self.inner {
            Backend::Dir(dir) => match File::open(Self::path_of(dir, sha256)) {
                Ok(f) => Ok(Box::new(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::Missing(sha256.to_string())),
                Err(e) => Err(e.into()),
            },
            Backend::Memory(m) => {
                let data = m.lock().unwrap_or_else(|p| p.into_inner()).get(sha256).cloned();
                let data = data.ok_or_else(|| BlobError::Missing(sha256.to_string()))?;
                Ok(Box::new(std::io::Cursor::new(data.as_ref().clone())))
            }
        }
    }

    /// Remove every blob not in `keep` that is older than `grace` (by its file
    /// time; memory blobs have none and are kept unless `grace` is zero), and
    /// temporary files of interrupted uploads older than `grace`. Returns how many
    /// blobs were removed.
    pub fn collect(&self, keep: &HashSet<String>, grace: Duration) -> Result<usize, BlobError> {
        match &*self.inner {
            Backend::Memory(m) => {
                if !grace.is_zero() {
                    return Ok(0);
                }
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let before = m.len();
                m.retain(|k, _| keep.contains(k));
                Ok(before - m.len())
            }
            Backend::Dir(dir) => {
                let old_enough = |path: &Path| -> bool {
                    let modified = fs::metadata(path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                    // The file's own time, not the engine clock: this is about the disk.
                    #[allow(clippy::disallowed_methods)]
                    let age = SystemTime::now().duration_since(modified).unwrap_or_default();
                    age >= grace
                };
                let mut removed = 0;
                for entry in fs::read_dir(dir)? {
                    let path = entry?.path();
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                    if name.starts_with(TEMP_PREFIX) && old_enough(&path) {
                        fs::remove_file(&path)?;
                        continue;
                    }
                    if !path.is_dir() {
                        continue;
                    }
                    for blob in fs::read_dir(&path)? {
                        let blob = blob?.path();
                        let sha = blob.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                        if !keep.contains(sha) && old_enough(&blob) {
                            fs::remove_file(&blob)?;
                            removed += 1;
                        }
                    }
                }
                Ok(removed)
            }
        }
    }
}

enum Sink {
    File { file: File, path: PathBuf },
    Memory(Vec<u8>),
}

/// What is known of content as it streams by: its size and enough of both ends
/// to tell a PDF (`%PDF-` first, `%%EOF` last, trailing whitespace allowed).
#[derive(Debug, Default)]
pub struct Shape {
    /// Bytes seen so far.
    pub size: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
}

const PDF_HEAD: &[u8] = b"%PDF-";
const PDF_TAIL: usize = 1024;

impl Shape {
    /// Take the next bytes of the content into account.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        let take = PDF_HEAD.len().saturating_sub(self.head.len()).min(bytes.len());
        self.head.extend_from_slice(&bytes[..take]);
        self.tail.extend_from_slice(&bytes[bytes.len().saturating_sub(PDF_TAIL)..]);
        let excess = self.tail.len().saturating_sub(PDF_TAIL);
        self.tail.drain(..excess);
    }

    /// False as soon as the first bytes rule a PDF out.
    fn may_be_pdf(&self) -> bool {
        PDF_HEAD.starts_with(&self.head)
    }

    /// Why the whole content is not a PDF, if it is not.
    pub fn pdf_problem(&self) -> Option<&'static str> {
        if self.head != PDF_HEAD {
            return Some("it does not start with %PDF-");
        }
        let end = self.tail.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
        if !self.tail[..end].ends_with(b"%%EOF") {
            return Some("it does not end with %%EOF (cut short?)");
        }
        None
    }
}

/// A blob being written: hashes and checks as bytes arrive, so that a file over
/// the limit is refused while it streams, not after it has been buffered.
pub struct BlobWriter {
    blobs: Blobs,
    sink: Option<Sink>,
    hash: Sha256,
    limits: WriteLimits,
    shape: Shape,
}

impl BlobWriter {
    /// Write the next bytes; refused as soon as the content breaks its limits.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.shape.feed(bytes);
        if self.shape.size > self.limits.max_size {
            return Err(BlobError::TooLarge { limit: self.limits.max_size });
        }
        if self.limits.pdf && !self.shape.may_be_pdf() {
            return Err(BlobError::NotPdf("it does not start with %PDF-"));
        }
        self.hash.update(bytes);
        match self.sink.as_mut() {
            Some(Sink::File { file, .. }) => file.write_all(bytes)?,
            Some(Sink::Memory(v)) => v.extend_from_slice(bytes),
            None => unreachable!("a finished writer is consumed"),
        }
        Ok(())
    }

    /// Check the whole content, make it durable and give its address.
    pub fn finish(mut self) -> Result<Stored, BlobError> {
        if let Some(problem) = self.limits.pdf.then(|| self.shape.pdf_problem()).flatten() {
            return Err(BlobError::NotPdf(problem));
        }
        let sha256 = hex(&std::mem::take(&mut self.hash).finalize());
        let stored = Stored { sha256: sha256.clone(), size: self.shape.size };
        match (self.sink.take(), &*self.blobs.inner) {
            (Some(Sink::File { file, path }), Backend::Dir(dir)) => {
                let result = (|| -> Result<(), BlobError> {
                    file.sync_all()?;
                    drop(file);
                    let target = Blobs::path_of(dir, &sha256);
                    let parent = target.parent().expect("blob paths have a parent");
                    fs::create_dir_all(parent)?;
                    fs::rename(&path, &target)?;
                    // The rename is durable only once its directory is.
                    File::open(parent)?.sync_all()?;
                    Ok(())
                })();
                if result.is_err() {
                    let _ = fs::remove_file(&path);
                }
                result?;
            }
            (Some(Sink::Memory(v)), Backend::Memory(m)) => {
                m.lock().unwrap_or_else(|p| p.into_inner()).insert(sha256, Arc::new(v));
            }
            _ => unreachable!("a writer's sink matches its store"),
        }
        Ok(stored)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(Sink::File { path, .. }) = self.sink.take() {
            let _ = fs::remove_file(path);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: WriteLimits = WriteLimits { max_size: 1 << 20, pdf: false };
    const PDF: WriteLimits = WriteLimits { max_size: 1 << 20, pdf: true };

    fn stores() -> Vec<(Blobs, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        vec![(Blobs::in_dir(dir.path()).unwrap(), Some(dir)), (Blobs::in_memory(), None)]
    }

    #[test]
    fn content_is_addressed_by_its_sha256_and_read_back() {
        for (blobs, _dir) in stores() {
            let s = blobs.put(&b"hello"[..], ANY).unwrap();
            assert_eq!(s.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
            assert_eq!(s.size, 5);
            assert!(blobs.contains(&s.sha256));
            let mut back = Vec::new();
            blobs.open(&s.sha256).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, b"hello");
            assert!(matches!(blobs.open(&"0".repeat(64)), Err(BlobError::Missing(_))));
            assert!(matches!(blobs.open("../../etc/passwd"), Err(BlobError::Missing(_))));
        }
    }

    #[test]
    fn too_large_is_refused_while_streaming_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::in_dir(dir.path()).unwrap();
        let mut w = blobs.writer(WriteLimits { max_size: 10, pdf: false }).unwrap();
        w.write(b"0123456789").unwrap();
        assert!(matches!(w.write(b"x"), Err(BlobError::TooLarge { limit: 10 })));
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "the temporary file is removed");
    }

    #[test]
    fn pdfs_are_checked_at_both_ends() {
        for (blobs, _dir) in stores() {
            assert!(blobs.put(&b"%PDF-1.7\n...\n%%EOF\n"[..], PDF).is_ok());
            assert!(matches!(blobs.put(&b"PK\x03\x04zip"[..], PDF), Err(BlobError::NotPdf(_))));
            assert!(matches!(blobs.put(&b"%PDF-1.7\n...cut"[..], PDF), Err(BlobError::NotPdf(_))));
            assert!(matches!(blobs.put(&b"%PD"[..], PDF), Err(BlobError::NotPdf(_))));
        }
    }

    #[test]
    fn an_interrupted_upload_leaves_no_blob() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::in_dir(dir.path()).unwrap();
        let mut w = blobs.writer(ANY).unwrap();
        w.write(b"half a file").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn collection_keeps_referenced_and_young_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::in_dir(dir.path()).unwrap();
        let a = blobs.put(&b"a"[..], ANY).unwrap();
        let b = blobs.put(&b"b"[..], ANY).unwrap();
        let keep: HashSet<String> = [a.sha256.clone()].into();
        assert_eq!(blobs.collect(&keep, Duration::from_secs(3600)).unwrap(), 0, "b is still in its grace period");
        assert_eq!(blobs.collect(&keep, Duration::ZERO).unwrap(), 1);
        assert!(blobs.contains(&a.sha256));
        assert!(!blobs.contains(&b.sha256));
    }
}
