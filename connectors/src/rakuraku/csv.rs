//! Shift_JIS CSV files from JSON rows, split into parts a service accepts.
//!
//! Japanese back-office systems read CSV as Shift_JIS. A character Shift_JIS cannot
//! hold (`髙`, `﨑`, emoji) must never turn into `?` or mojibake behind the user's
//! back: it is an error naming the row, the column and the character, unless the
//! caller gives a [`Unmappable`] policy (a mapping `髙 → 高`, and/or one
//! replacement for the rest).
//!
//! Two character sets: [`Charset::ShiftJis`] (the default) is JIS X 0208 proper,
//! so the vendor extensions of Windows-31J (NEC row 13 `①` `㈱`, the IBM kanji
//! `髙` `﨑`) are refused as "not in Shift_JIS"; [`Charset::Windows31j`] accepts
//! them for a receiver known to read CP932.
//!
//! The output is streamed: [`Splitter`] pulls rows one at a time and fills one
//! part (header + rows) up to `max_bytes` and `max_rows`, hands it out, then
//! starts the next; memory holds one part, never the whole file. Lines end in
//! CRLF; fields are quoted only when needed (the csv crate; Shift_JIS bytes never
//! collide with `"`, `,` or line breaks, since its trail bytes are ≥ 0x40).

use encoding_rs::{EncoderResult, SHIFT_JIS};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The largest cell, in characters (bounds one row's memory).
pub const MAX_CELL_CHARS: usize = 65_536;

/// One column: where its value comes from and what the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Key in each row object.
    pub key: String,
    /// Text of the header row.
    pub header: String,
}

/// Which characters count as encodable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Charset {
    /// JIS X 0208 (plus ASCII and half-width katakana): no vendor extensions.
    #[default]
    ShiftJis,
    /// Windows-31J / CP932: also NEC and IBM extensions (`①`, `髙`).
    Windows31j,
}

/// What to do with a character the charset cannot hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unmappable {
    /// Specific substitutes (`髙 → 高`), tried first.
    pub map: BTreeMap<char, String>,
    /// Substitute for any other such character; `None`: it is an error.
    pub replace: Option<String>,
}

/// How to build the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvSpec {
    pub columns: Vec<Column>,
    pub charset: Charset,
    pub unmappable: Unmappable,
}

/// Where a part must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartLimits {
    /// Bytes per file, header included.
    pub max_bytes: usize,
    /// Data rows per file (the header not counted).
    pub max_rows: usize,
}

/// A CSV that cannot be built, said so the user can fix the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("row {row}, column `{header}` (key `{key}`): the character `{ch}` (U+{code:04X}) is not in {charset}; change the data or give a replacement (`unmappable: {{map: {{{ch}: …}}}}` or `{{replace: \"?\"}}`)", code = *ch as u32)]
    Unmappable { row: usize, key: String, header: String, ch: char, charset: &'static str },
    #[error("row {row}, column `{header}` (key `{key}`): {reason}")]
    BadValue { row: usize, key: String, header: String, reason: String },
    #[error("row {row} is not an object (a map of column key → value)")]
    NotAnObject { row: usize },
    #[error("the header `{header}`: the character `{ch}` is not in {charset}")]
    Header { header: String, ch: char, charset: &'static str },
    #[error("row {row} alone is {bytes} bytes with the header, more than the {max} bytes a file may have")]
    RowTooLarge { row: usize, bytes: usize, max: usize },
    #[error("a replacement `{0}` is itself not encodable")]
    BadReplacement(String),
}

impl Charset {
    fn name(self) -> &'static str {
        match self {
            Charset::ShiftJis => "Shift_JIS (JIS X 0208)",
            Charset::Windows31j => "Windows-31J",
        }
    }

    /// Whether the Windows-31J bytes of one character are allowed. Lead bytes 0x87
    /// (NEC row 13) and 0xED..=0xFC (NEC-selected IBM, user-defined, IBM) are the
    /// vendor extensions outside JIS X 0208.
    fn allows(self, bytes: &[u8]) -> bool {
        match self {
            Charset::Windows31j => true,
            Charset::ShiftJis => bytes.len() == 1 || !matches!(bytes[0], 0x87 | 0xED..=0xFC),
        }
    }
}

/// Encode one character, or `None` when the charset cannot hold it.
fn encode_char(c: char, charset: Charset, out: &mut Vec<u8>) -> bool {
    let mut enc = SHIFT_JIS.new_encoder();
    let mut buf = [0u8; 8];
    let mut tmp = [0u8; 4];
    let (res, _, written) = enc.encode_from_utf8_without_replacement(c.encode_utf8(&mut tmp), &mut buf, true);
    if res != EncoderResult::InputEmpty || !charset.allows(&buf[..written]) {
        return false;
    }
    out.extend_from_slice(&buf[..written]);
    true
}

/// Whether Windows-31J bytes hold a vendor extension (lead byte 0x87 or 0xED..=0xFC).
fn has_vendor_extension(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0x87 | 0xED..=0xFC => return true,
            0x81..=0x9F | 0xE0..=0xEC => i += 2,
            _ => i += 1,
        }
    }
    false
}

/// Encode a whole text; the first character that cannot be held is returned.
fn encode_text(s: &str, charset: Charset, out: &mut Vec<u8>) -> Result<(), char> {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
        return Ok(());
    }
    // Fast path: the whole text in one go (at most 2 bytes per character).
    let start = out.len();
    out.resize(start + s.len() * 2, 0);
    let mut enc = SHIFT_JIS.new_encoder();
    let (res, read, written) = enc.encode_from_utf8_without_replacement(s, &mut out[start..], true);
    if res == EncoderResult::InputEmpty
        && read == s.len()
        && (charset == Charset::Windows31j || !has_vendor_extension(&out[start..start + written]))
    {
        out.truncate(start + written);
        return Ok(());
    }
    // Slow path: character by character, to find the one that cannot be held.
    out.truncate(start);
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c as u8);
        } else if !encode_char(c, charset, out) {
            return Err(c);
        }
    }
    Ok(())
}

impl CsvSpec {
    /// Columns from a list of header names (the key is the header).
    pub fn with_headers(headers: &[&str]) -> CsvSpec {
        CsvSpec {
            columns: headers.iter().map(|h| Column { key: h.to_string(), header: h.to_string() }).collect(),
            charset: Charset::default(),
            unmappable: Unmappable::default(),
        }
    }

    /// Check the replacements once, so a bad policy fails before any row.
    fn check(&self) -> Result<(), CsvError> {
        for r in self.unmappable.map.values().chain(self.unmappable.replace.iter()) {
            if encode_text(r, self.charset, &mut Vec::new()).is_err() {
                return Err(CsvError::BadReplacement(r.clone()));
            }
        }
        Ok(())
    }

    /// The text of one cell.
    fn cell_text(v: Option<&Value>) -> Result<String, String> {
        Ok(match v {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => (if *b { "1" } else { "0" }).to_string(),
            Some(Value::Array(_)) | Some(Value::Object(_)) => {
                return Err("a list or map cannot be a CSV cell; pick one value".into())
            }
        })
    }

    /// Encode one cell with the policy; errors name the row (1-based) and column.
    fn encode_cell(&self, row: usize, col: &Column, text: &str, out: &mut Vec<u8>) -> Result<(), CsvError> {
        if text.chars().count() > MAX_CELL_CHARS {
            return Err(CsvError::BadValue {
                row,
                key: col.key.clone(),
                header: col.header.clone(),
                reason: format!("more than {MAX_CELL_CHARS} characters"),
            });
        }
        let mut rest = text;
        loop {
            match encode_text(rest, self.charset, out) {
                Ok(()) => return Ok(()),
                Err(c) => {
                    // encode_text wrote everything before `c`.
                    let at = rest.find(c).expect("the failing character is in the text");
                    let sub = self.unmappable.map.get(&c).or(self.unmappable.replace.as_ref()).ok_or_else(|| {
                        CsvError::Unmappable {
                            row,
                            key: col.key.clone(),
                            header: col.header.clone(),
                            ch: c,
                            charset: self.charset.name(),
                        }
                    })?;
                    encode_text(sub, self.charset, out).map_err(|_| CsvError::BadReplacement(sub.clone()))?;
                    rest = &rest[at + c.len_utf8()..];
                }
            }
        }
    }

    /// The encoded header fields.
    fn header_fields(&self) -> Result<Vec<Vec<u8>>, CsvError> {
        self.columns
            .iter()
            .map(|c| {
                let mut b = Vec::new();
                encode_text(&c.header, self.charset, &mut b).map_err(|ch| CsvError::Header {
                    header: c.header.clone(),
                    ch,
                    charset: self.charset.name(),
                })?;
                Ok(b)
            })
            .collect()
    }

    /// The encoded fields of data row `row` (1-based).
    fn row_fields(&self, row: usize, value: &Value) -> Result<Vec<Vec<u8>>, CsvError> {
        let obj: &Map<String, Value> = value.as_object().ok_or(CsvError::NotAnObject { row })?;
        self.columns
            .iter()
            .map(|c| {
                let text = Self::cell_text(obj.get(&c.key)).map_err(|reason| CsvError::BadValue {
                    row,
                    key: c.key.clone(),
                    header: c.header.clone(),
                    reason,
                })?;
                let mut b = Vec::with_capacity(text.len());
                self.encode_cell(row, c, &text, &mut b)?;
                Ok(b)
            })
            .collect()
    }
}

/// One file of a split: its bytes and the (1-based, inclusive) rows it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based number of the part.
    pub index: usize,
    pub first_row: usize,
    pub last_row: usize,
    pub bytes: Vec<u8>,
}

impl Part {
    pub fn rows(&self) -> usize {
        if self.first_row == 0 {
            0
        } else {
            self.last_row + 1 - self.first_row
        }
    }
}

/// CSV lines as bytes (CRLF, minimal quoting).
struct LineWriter(csv::WriterBuilder);

impl LineWriter {
    fn new() -> Self {
        let mut b = csv::WriterBuilder::new();
        b.terminator(csv::Terminator::CRLF).buffer_capacity(1024);
        LineWriter(b)
    }

    /// The bytes of one record, with its line ending.
    fn line(&mut self, fields: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 1).sum::<usize>() + 2);
        {
            let mut w = self.0.from_writer(&mut out);
            // Writing into a Vec cannot fail.
            w.write_record(fields).expect("writing CSV into memory");
            w.flush().expect("flushing CSV into memory");
        }
        out
    }
}

/// Pulls rows and hands out parts that respect [`PartLimits`], in order.
pub struct Splitter<I: Iterator> {
    spec: CsvSpec,
    limits: PartLimits,
    rows: std::iter::Peekable<std::iter::Enumerate<I>>,
    header: Vec<u8>,
    writer: LineWriter,
    /// A row encoded but not yet placed (it did not fit the previous part).
    pending: Option<(usize, Vec<u8>)>,
    parts: usize,
    done: bool,
}

impl<I, R> Splitter<I>
where
    I: Iterator<Item = R>,
    R: std::borrow::Borrow<Value>,
{
    pub fn new(spec: CsvSpec, limits: PartLimits, rows: I) -> Result<Self, CsvError> {
        assert!(limits.max_rows > 0 && limits.max_bytes > 0, "part limits must be positive");
        spec.check()?;
        let mut writer = LineWriter::new();
        let header = writer.line(&spec.header_fields()?);
        Ok(Splitter {
            spec,
            limits,
            rows: rows.enumerate().peekable(),
            header,
            writer,
            pending: None,
            parts: 0,
            done: false,
        })
    }

    /// The next part, `None` after the last. An empty input gives one part with
    /// only the header (the service then imports nothing).
    pub fn next_part(&mut self) -> Option<Result<Part, CsvError>> {
        if self.done {
            return None;
        }
        let mut bytes = self.header.clone();
        let (mut first, mut last) = (0, 0);
        loop {
            let (row, line) = match self.pending.take() {
                Some(p) => p,
                None => match self.rows.next() {
                    None => break,
                    Some((i, r)) => {
                        let row = i + 1;
                        match self.spec.row_fields(row, r.borrow()) {
                            Ok(f) => (row, self.writer.line(&f)),
                            Err(e) => {
                                self.done = true;
                                return Some(Err(e));
                            }
                        }
                    }
                },
            };
            if self.header.len() + line.len() > self.limits.max_bytes {
                self.done = true;
                return Some(Err(CsvError::RowTooLarge {
                    row,
                    bytes: self.header.len() + line.len(),
                    max: self.limits.max_bytes,
                }));
            }
            let rows_in = if first == 0 { 0 } else { last + 1 - first };
            if rows_in > 0 && (bytes.len() + line.len() > self.limits.max_bytes || rows_in >= self.limits.max_rows) {
                self.pending = Some((row, line));
                break;
            }
            bytes.extend_from_slice(&line);
            if first == 0 {
                first = row;
            }
            last = row;
        }
        if first == 0 && self.parts > 0 {
            self.done = true;
            return None;
        }
        if self.pending.is_none() && self.rows.peek().is_none() {
            self.done = true;
        }
        self.parts += 1;
        debug_assert!(bytes.len() <= self.limits.max_bytes);
        Some(Ok(Part { index: self.parts, first_row: first, last_row: if first == 0 { 0 } else { last }, bytes }))
    }
}

/// Check every row without keeping any output, so a sync can refuse bad data
/// before its first part is sent: the first `max` problems and how many rows
/// have one.
pub fn check_rows<R: std::borrow::Borrow<Value>>(
    spec: &CsvSpec,
    limits: PartLimits,
    rows: impl IntoIterator<Item = R>,
    max: usize,
) -> (Vec<CsvError>, usize) {
    let mut lw = LineWriter::new();
    let header = match spec.check().and_then(|()| spec.header_fields()) {
        Ok(h) => lw.line(&h).len(),
        Err(e) => return (vec![e], 1),
    };
    let (mut shown, mut total) = (Vec::new(), 0);
    for (i, r) in rows.into_iter().enumerate() {
        let problem = match spec.row_fields(i + 1, r.borrow()) {
            Err(e) => Some(e),
            Ok(f) => {
                let bytes = header + lw.line(&f).len();
                (bytes > limits.max_bytes).then_some(CsvError::RowTooLarge { row: i + 1, bytes, max: limits.max_bytes })
            }
        };
        if let Some(e) = problem {
            total += 1;
            if shown.len() < max {
                shown.push(e);
            }
        }
    }
    (shown, total)
}

/// Write every row as one file into `w` (no splitting), row by row.
pub fn write_all<W: std::io::Write, R: std::borrow::Borrow<Value>>(
    spec: &CsvSpec,
    rows: impl IntoIterator<Item = R>,
    mut w: W,
) -> Result<usize, std::io::Error> {
    spec.check().map_err(std::io::Error::other)?;
    let mut lw = LineWriter::new();
    w.write_all(&lw.line(&spec.header_fields().map_err(std::io::Error::other)?))?;
    let mut n = 0;
    for (i, r) in rows.into_iter().enumerate() {
        let f = spec.row_fields(i + 1, r.borrow()).map_err(std::io::Error::other)?;
        w.write_all(&lw.line(&f))?;
        n += 1;
    }
    Ok(n)
}

/// Decode Shift_JIS (Windows-31J) bytes; `None` if a byte sequence is malformed.
pub fn decode(bytes: &[u8]) -> Option<String> {
    let (text, had_errors) = SHIFT_JIS.decode_without_bom_handling(bytes);
    (!had_errors).then(|| text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> CsvSpec {
        CsvSpec {
            columns: vec![
                Column { key: "code".into(), header: "社員コード".into() },
                Column { key: "name".into(), header: "氏名".into() },
            ],
            charset: Charset::ShiftJis,
            unmappable: Unmappable::default(),
        }
    }

    const BIG: PartLimits = PartLimits { max_bytes: 5 * 1024 * 1024, max_rows: 50_000 };

    fn one(spec: CsvSpec, rows: &[Value]) -> Result<Part, CsvError> {
        let mut s = Splitter::new(spec, BIG, rows.iter())?;
        let p = s.next_part().unwrap();
        assert!(p.is_err() || s.next_part().is_none());
        p
    }

    #[test]
    fn header_and_rows_in_shift_jis_with_crlf() {
        let p =
            one(spec(), &[json!({"code": "E001", "name": "佐藤, 花子"}), json!({"code": 2, "name": null})]).unwrap();
        assert_eq!(decode(&p.bytes).unwrap(), "社員コード,氏名\r\nE001,\"佐藤, 花子\"\r\n2,\r\n");
        assert_eq!(&p.bytes[..2], &[0x8E, 0xD0], "社 in Shift_JIS");
        assert_eq!((p.first_row, p.last_row), (1, 2));
    }

    #[test]
    fn a_character_outside_shift_jis_names_row_and_column() {
        let rows = [json!({"code": "E1", "name": "佐藤"}), json!({"code": "E2", "name": "髙橋"})];
        let e = one(spec(), &rows).unwrap_err();
        assert!(matches!(&e, CsvError::Unmappable { row: 2, key, ch: '髙', .. } if key == "name"), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("row 2") && text.contains("氏名") && text.contains("U+9AD9"), "{text}");
        // NEC row 13 too, and emoji.
        assert!(one(spec(), &[json!({"name": "①"})]).is_err());
        assert!(one(spec(), &[json!({"name": "🙂"})]).is_err());
    }

    #[test]
    fn windows_31j_accepts_vendor_extensions() {
        let mut s = spec();
        s.charset = Charset::Windows31j;
        let p = one(s, &[json!({"name": "髙橋①"})]).unwrap();
        assert!(decode(&p.bytes).unwrap().contains("髙橋①"));
    }

    #[test]
    fn replacement_policy_maps_then_replaces() {
        let mut s = spec();
        s.unmappable.map.insert('髙', "高".into());
        let p = one(s.clone(), &[json!({"name": "髙橋🙂"})]);
        assert!(matches!(p, Err(CsvError::Unmappable { ch: '🙂', .. })));
        s.unmappable.replace = Some("?".into());
        let p = one(s.clone(), &[json!({"name": "髙橋🙂さん"})]).unwrap();
        assert!(decode(&p.bytes).unwrap().ends_with(",高橋?さん\r\n"));
        s.unmappable.replace = Some("🙂".into());
        assert!(matches!(Splitter::new(s, BIG, std::iter::empty::<Value>()), Err(CsvError::BadReplacement(_))));
    }

    #[test]
    fn check_rows_reports_every_bad_row_up_to_a_bound() {
        let rows: Vec<Value> =
            ["髙橋", "佐藤", "山﨑", "🙂", "x"].iter().map(|n| json!({"code": "E", "name": n})).collect();
        let (shown, total) = check_rows(&spec(), BIG, rows.iter(), 2);
        assert_eq!(total, 3);
        let at: Vec<(usize, char)> = shown
            .iter()
            .map(|e| match e {
                CsvError::Unmappable { row, ch, .. } => (*row, *ch),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(at, vec![(1, '髙'), (3, '﨑')]);
        let (_, total) = check_rows(&spec(), PartLimits { max_bytes: 30, max_rows: 9 }, rows[1..2].iter(), 2);
        assert_eq!(total, 0);
        let (shown, _) = check_rows(&spec(), PartLimits { max_bytes: 20, max_rows: 9 }, rows[1..2].iter(), 2);
        assert!(matches!(shown[..], [CsvError::RowTooLarge { row: 1, .. }]));
    }

    #[test]
    fn lists_are_not_cells() {
        let e = one(spec(), &[json!({"name": ["a"]})]).unwrap_err();
        assert!(matches!(e, CsvError::BadValue { row: 1, .. }));
        assert!(matches!(one(spec(), &[json!(3)]).unwrap_err(), CsvError::NotAnObject { row: 1 }));
    }

    #[test]
    fn splits_by_rows_then_by_bytes_repeating_the_header() {
        let rows: Vec<Value> = (1..=7).map(|i| json!({"code": format!("E{i}"), "name": "名前"})).collect();
        let mut s = Splitter::new(spec(), PartLimits { max_bytes: 1 << 20, max_rows: 3 }, rows.iter()).unwrap();
        let parts: Vec<Part> = std::iter::from_fn(|| s.next_part()).map(Result::unwrap).collect();
        let ranges: Vec<_> = parts.iter().map(|p| (p.index, p.first_row, p.last_row)).collect();
        assert_eq!(ranges, vec![(1, 1, 3), (2, 4, 6), (3, 7, 7)]);
        assert!(parts.iter().all(|p| decode(&p.bytes).unwrap().starts_with("社員コード,氏名\r\n")));

        let sjis_len = |t: &str| {
            let mut b = Vec::new();
            encode_text(t, Charset::ShiftJis, &mut b).unwrap();
            b.len()
        };
        let (header, line) = (sjis_len("社員コード,氏名\r\n"), sjis_len("E1,名前\r\n"));
        assert_eq!((header, line), (17, 9));
        let max = header + 2 * line + 1;
        let mut s = Splitter::new(spec(), PartLimits { max_bytes: max, max_rows: 50 }, rows.iter()).unwrap();
        let parts: Vec<Part> = std::iter::from_fn(|| s.next_part()).map(Result::unwrap).collect();
        assert_eq!(parts.len(), 4);
        assert!(parts.iter().all(|p| p.bytes.len() <= max && p.rows() <= 2));
        assert_eq!(parts.iter().map(Part::rows).sum::<usize>(), 7);
    }

    #[test]
    fn a_row_larger_than_a_file_is_an_error() {
        let rows = [json!({"name": "x".repeat(100)})];
        let mut s = Splitter::new(spec(), PartLimits { max_bytes: 50, max_rows: 5 }, rows.iter()).unwrap();
        assert!(matches!(s.next_part(), Some(Err(CsvError::RowTooLarge { row: 1, .. }))));
        assert!(s.next_part().is_none());
    }

    #[test]
    fn the_service_limits_split_50001_rows_in_two() {
        let rows = (0..50_001).map(|i| json!({"code": i, "name": "山田"}));
        let mut s = Splitter::new(spec(), BIG, rows).unwrap();
        let a = s.next_part().unwrap().unwrap();
        let b = s.next_part().unwrap().unwrap();
        assert_eq!((a.rows(), b.rows(), b.first_row), (50_000, 1, 50_001));
        assert!(s.next_part().is_none());
    }

    #[test]
    fn empty_input_is_one_header_only_part() {
        let mut s = Splitter::new(spec(), BIG, std::iter::empty::<Value>()).unwrap();
        let p = s.next_part().unwrap().unwrap();
        assert_eq!((p.first_row, p.rows()), (0, 0));
        assert!(s.next_part().is_none());
    }

    #[test]
    fn write_all_streams_into_a_writer() {
        let mut out = Vec::new();
        let n = write_all(&spec(), [json!({"code": "a", "name": "ｱｲｳ"})], &mut out).unwrap();
        assert_eq!(n, 1);
        assert_eq!(decode(&out).unwrap(), "社員コード,氏名\r\na,ｱｲｳ\r\n");
        assert_eq!(out.len(), 17 + 2 + 3 + 2, "half-width kana are one byte each");
    }
}
