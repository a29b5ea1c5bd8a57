//! Just enough MIME reading for the SMTP sink to show what arrived: headers
//! (unfolded, RFC 2047 encoded words decoded in any charset encoding_rs knows,
//! ISO-2022-JP included), multipart bodies, base64 and quoted-printable, RFC 2231
//! parameters (`filename*0*=utf-8''…`). Lenient: a part it cannot read is kept
//! as raw text rather than failing the whole mail.

use base64::Engine as _;
use serde::Serialize;

/// Deepest nesting of multiparts followed.
const MAX_DEPTH: usize = 8;

/// An attachment as the sink lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttachmentInfo {
    pub name: String,
    pub content_type: String,
    pub size: usize,
    pub content_base64: String,
}

/// A mail, decoded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Parsed {
    pub subject: String,
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub date: String,
    pub message_id: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<AttachmentInfo>,
}

/// Headers and body of an entity.
fn split(raw: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let (head, body) = match find(raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match find(raw, b"\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw, &raw[raw.len()..]),
        },
    };
    let head = String::from_utf8_lossy(head);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (headers, body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Text in a named charset (UTF-8 when unknown).
fn in_charset(bytes: &[u8], charset: &str) -> String {
    match encoding_rs::Encoding::for_label(charset.trim().as_bytes()) {
        Some(enc) => enc.decode_without_bom_handling(bytes).0.into_owned(),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn quoted_printable(s: &[u8], header: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'=' if s.get(i + 1) == Some(&b'\r') && s.get(i + 2) == Some(&b'\n') => i += 3,
            b'=' if s.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if i + 2 < s.len() => {
                match u8::from_str_radix(std::str::from_utf8(&s[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&s[i..i + 3]),
                }
                i += 3;
            }
            b'_' if header => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn base64_lenient(s: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = s.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// Decode RFC 2047 encoded words in a header value.
pub fn decode_words(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, after) = rest.split_at(start);
        let word = parse_word(after);
        match word {
            Some((text, len)) => {
                // Whitespace between two encoded words is not part of the text.
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &after[len..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &after[2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `=?charset?B|Q?text?=` at the start of `s`: (decoded, length).
fn parse_word(s: &str) -> Option<(String, usize)> {
    let inner = &s[2..];
    let q1 = inner.find('?')?;
    let charset = inner[..q1].split('*').next()?; // RFC 2231 language suffix
    let enc = inner.get(q1 + 1..q1 + 2)?;
    if inner.get(q1 + 2..q1 + 3)? != "?" {
        return None;
    }
    let text_start = q1 + 3;
    let end = inner[text_start..].find("?=")? + text_start;
    let text = &inner[text_start..end];
    let bytes = match enc {
        "B" | "b" => base64_lenient(text.as_bytes())?,
        "Q" | "q" => quoted_printable(text.as_bytes(), true),
        _ => return None,
    };
    Some((in_charset(&bytes, charset), 2 + end + 2))
}

/// The value and parameters of a structured header (`text/plain; charset=utf-8`),
/// RFC 2231 continuations and charsets joined and decoded.
fn params(v: &str) -> (String, Vec<(String, String)>) {
    let mut parts = split_params(v).into_iter();
    let value = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let mut simple: Vec<(String, String)> = Vec::new();
    let mut continued: std::collections::BTreeMap<(String, usize), (bool, String)> = Default::default();
    for p in parts {
        let Some((k, v)) = p.split_once('=') else { continue };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim().trim_matches('"').to_string();
        if let Some((name, rest)) = k.split_once('*') {
            let encoded = rest.ends_with('*') || rest.is_empty();
            let n: usize = rest.trim_end_matches('*').parse().unwrap_or(0);
            continued.insert((name.to_string(), n), (encoded, v));
        } else {
            simple.push((k, decode_words(&v)));
        }
    }
    let mut joined: Vec<(String, Vec<u8>, String)> = Vec::new();
    for ((name, n), (encoded, v)) in continued {
        let mut charset = String::new();
        let mut text = v.as_str();
        if encoded && n == 0 {
            let mut it = v.splitn(3, '\'');
            if let (Some(c), Some(_lang), Some(t)) = (it.next(), it.next(), it.next()) {
                charset = c.to_string();
                text = t;
            }
        }
        let bytes = if encoded { percent_decode(text) } else { text.as_bytes().to_vec() };
        match joined.iter_mut().find(|(k, _, _)| *k == name) {
            Some(j) => j.1.extend(bytes),
            None => joined.push((name, bytes, charset)),
        }
    }
    for (k, bytes, charset) in joined {
        let cs = if charset.is_empty() { "utf-8" } else { &charset };
        simple.push((k, in_charset(&bytes, cs)));
    }
    (value, simple)
}

fn split_params(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in v.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                out.last_mut().expect("one").push(c);
            }
            ';' if !quoted => out.push(String::new()),
            _ => out.last_mut().expect("one").push(c),
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(h) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(h);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Addresses of an address header, each decoded (`名前 <a@b>`).
fn addresses(v: Option<&str>) -> Vec<String> {
    let Some(v) = v else { return Vec::new() };
    split_addresses(v).into_iter().map(|a| decode_words(a.trim()).replace('"', "")).filter(|a| !a.is_empty()).collect()
}

fn split_addresses(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let (mut quoted, mut angle) = (false, false);
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        out.last_mut().expect("one").push(c);
    }
    out
}

fn body_bytes(headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    match header(headers, "content-transfer-encoding").map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        Some("base64") => base64_lenient(body).unwrap_or_else(|| body.to_vec()),
        Some("quoted-printable") => quoted_printable(body, false),
        _ => body.to_vec(),
    }
}

fn walk(raw: &[u8], out: &mut Parsed, depth: usize) {
    let (headers, body) = split(raw);
    let (ct, ct_params) = params(header(&headers, "content-type").unwrap_or("text/plain"));
    let param = |ps: &[(String, String)], k: &str| ps.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if ct.starts_with("multipart/") && depth < MAX_DEPTH {
        if let Some(boundary) = param(&ct_params, "boundary") {
            let delim = format!("--{boundary}");
            let text = body;
            let mut positions = Vec::new();
            let mut from = 0;
            while let Some(i) = find(&text[from..], delim.as_bytes()) {
                positions.push(from + i);
                from += i + delim.len();
            }
            for w in positions.windows(2) {
                let mut part = &text[w[0] + delim.len()..w[1]];
                part = part.strip_prefix(b"\r\n").or_else(|| part.strip_prefix(b"\n")).unwrap_or(part);
                part = part.strip_suffix(b"\r\n").or_else(|| part.strip_suffix(b"\n")).unwrap_or(part);
                walk(part, out, depth + 1);
            }
            return;
        }
    }
    let (disp, disp_params) = params(header(&headers, "content-disposition").unwrap_or(""));
    let name = param(&disp_params, "filename").or_else(|| param(&ct_params, "name"));
    let bytes = body_bytes(&headers, body);
    if disp == "attachment" || name.is_some() {
        out.attachments.push(AttachmentInfo {
            name: name.unwrap_or_default(),
            content_type: ct,
            size: bytes.len(),
            content_base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
        });
        return;
    }
    let charset = param(&ct_params, "charset").unwrap_or_else(|| "utf-8".into());
    let text = in_charset(&bytes, &charset);
    let text = text.strip_suffix("\r\n").unwrap_or(&text).replace("\r\n", "\n");
    if ct == "text/html" {
        out.html.get_or_insert(text);
    } else if ct.starts_with("text/") {
        out.text.get_or_insert(text);
    }
}

/// Decode a whole mail.
pub fn parse(raw: &[u8]) -> Parsed {
    let (headers, _) = split(raw);
    let mut p = Parsed {
        subject: decode_words(header(&headers, "subject").unwrap_or("")),
        from: addresses(header(&headers, "from")).into_iter().next().unwrap_or_default(),
        to: addresses(header(&headers, "to")),
        cc: addresses(header(&headers, "cc")),
        date: header(&headers, "date").unwrap_or("").to_string(),
        message_id: header(&headers, "message-id").unwrap_or("").to_string(),
        ..Default::default()
    };
    walk(raw, &mut p, 0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_in_utf8_and_iso_2022_jp() {
        assert_eq!(decode_words("=?utf-8?b?44Oe44K544K/?= =?utf-8?b?5Y+W6L68?="), "マスタ取込");
        assert_eq!(decode_words("=?UTF-8?Q?a_b=E3=81=82?= c"), "a bあ c");
        assert_eq!(decode_words("=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?="), "テスト");
        assert_eq!(decode_words("plain =?bad"), "plain =?bad");
    }

    #[test]
    fn rfc2231_file_names_are_joined_and_decoded() {
        let (v, ps) = params("attachment;\r\n filename*0*=utf-8''%E9%AB%99%E6%A9%8B;\r\n filename*1*=.csv");
        assert_eq!(v, "attachment");
        assert_eq!(ps, vec![("filename".to_string(), "髙橋.csv".to_string())]);
    }

    #[test]
    fn multipart_with_attachment() {
        let raw = b"Subject: s\r\nFrom: a@b\r\nTo: \"x, y\" <c@d>, e@f\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E3=81=82=\r\n=E3=81=84\r\n--B\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"a.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\nYSxi\r\n--B--\r\n";
        let p = parse(raw);
        assert_eq!(p.to, vec!["x, y <c@d>", "e@f"]);
        assert_eq!(p.text.as_deref(), Some("あい"));
        assert_eq!(p.attachments[0].name, "a.csv");
        assert_eq!(p.attachments[0].content_base64, "YSxi");
    }
}
