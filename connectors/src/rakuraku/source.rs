//! Rows from a CSV file variable (`file:` instead of `rows:`), read row by row.
//!
//! A process variable holds at most 1 MiB of JSON, so a large master (100,000
//! employees) cannot travel as `rows`. It travels as a file variable instead (a
//! blob reference); the connector reads the blob, checks the whole file once,
//! then hands out one row object at a time to the check pass and the splitter:
//! memory is the file's text plus one part, never all rows as JSON.

use crate::cloudsign::files::BlobSource;
use nagare_engine::ConnectorError;
use serde_json::{Map, Value};

/// Most bytes of a CSV file a sync reads (the engine's largest file variable).
pub const MAX_SOURCE_BYTES: usize = 100 * 1024 * 1024;

/// A decoded, checked CSV file: its header and how many data rows it has.
pub struct FileRows {
    text: String,
    headers: Vec<String>,
    rows: usize,
}

fn fatal(m: impl Into<String>) -> ConnectorError {
    ConnectorError::Fatal(m.into())
}

fn reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes())
}

impl FileRows {
    /// Read the file a reference (`{name, sha256, ...}`) names, decode it (UTF-8 with
    /// or without BOM, else Shift_JIS / Windows-31J) and check every record parses
    /// and has as many fields as the header.
    pub fn open(file: &Value, blobs: &dyn BlobSource) -> Result<FileRows, ConnectorError> {
        let sha = file
            .get("sha256")
            .and_then(Value::as_str)
            .ok_or_else(|| fatal("`file` must be a file variable (a reference with `sha256`)"))?;
        let name = file.get("name").and_then(Value::as_str).unwrap_or("the file");
        let bytes = blobs.open(sha).map_err(|e| fatal(format!("`file` ({name}): {e}")))?;
        if bytes.len() > MAX_SOURCE_BYTES {
            return Err(fatal(format!("`file` ({name}) has {} bytes; at most {MAX_SOURCE_BYTES}", bytes.len())));
        }
        // Decoded in place where possible: the file's bytes become its text without
        // a second copy (memory is about one file, not two).
        let mut bytes = bytes;
        if bytes.starts_with(b"\xEF\xBB\xBF") {
            bytes.drain(..3);
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => super::csv::decode(e.as_bytes()).ok_or_else(|| ConnectorError::Business {
                code: "RAKURAKU_CSV".into(),
                message: format!("`file` ({name}) is neither UTF-8 nor Shift_JIS; save it as UTF-8 CSV"),
            })?,
        };
        let mut r = reader(&text);
        let headers: Vec<String> =
            r.headers().map_err(|e| bad(name, e))?.iter().map(|h| h.trim().to_string()).collect();
        if headers.iter().all(String::is_empty) {
            return Err(ConnectorError::Business {
                code: "RAKURAKU_CSV".into(),
                message: format!("`file` ({name}) has no header row"),
            });
        }
        let mut rows = 0;
        let mut rec = csv::StringRecord::new();
        while r.read_record(&mut rec).map_err(|e| bad(name, e))? {
            rows += 1;
        }
        Ok(FileRows { text, headers, rows })
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The rows as objects keyed by the header, one at a time.
    pub fn iter(&self) -> impl Iterator<Item = Value> + '_ {
        let r = reader(&self.text);
        let headers = self.headers.clone();
        // `open` read every record without error, so the same text reads the same.
        r.into_records().map_while(Result::ok).map(move |rec| {
            let mut m = Map::with_capacity(headers.len());
            for (h, v) in headers.iter().zip(rec.iter()) {
                m.insert(h.clone(), Value::String(v.to_string()));
            }
            Value::Object(m)
        })
    }
}

fn bad(name: &str, e: csv::Error) -> ConnectorError {
    // The record number counts the header as 0, so it is the data row's number
    // (the row numbers the CSV errors of the import use too).
    let at = e.position().map(|p| format!(", row {}", p.record())).unwrap_or_default();
    ConnectorError::Business { code: "RAKURAKU_CSV".into(), message: format!("`file` ({name}){at}: {e}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudsign::files::MemoryBlobs;
    use serde_json::json;

    fn open(bytes: &[u8]) -> Result<FileRows, ConnectorError> {
        let blobs = MemoryBlobs::default();
        let sha = blobs.put(bytes.to_vec());
        FileRows::open(&json!({"name": "a.csv", "sha256": sha}), &blobs)
    }

    #[test]
    fn utf8_with_bom_and_shift_jis_read_the_same() {
        let text = "社員コード,氏名\r\nE1,佐藤\r\nE2,\"高橋, 一郎\"\r\n";
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(text.as_bytes());
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(text);
        for bytes in [text.as_bytes().to_vec(), bom, sjis.into_owned()] {
            let f = open(&bytes).unwrap();
            assert_eq!(f.len(), 2);
            let rows: Vec<Value> = f.iter().collect();
            assert_eq!(rows[1], json!({"社員コード": "E2", "氏名": "高橋, 一郎"}));
        }
    }

    #[test]
    fn a_short_record_is_named_by_its_line() {
        let e = open("a,b\r\n1,2\r\n3\r\n".as_bytes()).err().unwrap();
        assert!(matches!(&e, ConnectorError::Business { message, .. } if message.contains("row 2")), "{e:?}");
        assert!(open(b"").is_err(), "no header");
        assert!(open(&[0xff, 0xfe, 0x00]).is_err(), "neither UTF-8 nor Shift_JIS");
    }
}
