//! `multipart/form-data` for the file upload, both ways: the client builds the
//! body, the emulator parses it. Written out here (a page of code) rather than
//! enabling reqwest's and axum's multipart features, which would rebuild both for
//! one endpoint.

/// One part: a text field or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// Quote a header parameter value: `"` and line breaks cannot appear in it.
fn quoted(s: &str) -> String {
    s.chars().map(|c| if matches!(c, '"' | '\r' | '\n') { '_' } else { c }).collect()
}

/// Build a body from `parts` with `boundary`; returns the body and its content type.
pub fn build(boundary: &str, parts: &[Part]) -> (Vec<u8>, String) {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disp = format!("Content-Disposition: form-data; name=\"{}\"", quoted(&p.name));
        if let Some(f) = &p.filename {
            disp.push_str(&format!("; filename=\"{}\"", quoted(f)));
        }
        body.extend_from_slice(disp.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(ct) = &p.content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&p.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

fn param(disp: &str, key: &str) -> Option<String> {
    disp.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Parse a whole body. `Err` says what is malformed.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}");
    let mut pos = find(body, delim.as_bytes(), 0).ok_or("no boundary in the body")?;
    let mut parts = Vec::new();
    loop {
        pos += delim.len();
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err("a boundary is not followed by a line break".into());
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("a part has no end of headers")?;
        let head = std::str::from_utf8(&body[pos..head_end]).map_err(|_| "part headers are not UTF-8")?;
        let next = find(body, format!("\r\n{delim}").as_bytes(), head_end + 4).ok_or("a part is not closed")?;
        let mut part = Part { name: String::new(), filename: None, content_type: None, data: Vec::new() };
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else { continue };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                part.name = param(v, "name").ok_or("a part has no name")?;
                part.filename = param(v, "filename");
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(v.trim().to_string());
            }
        }
        part.data = body[head_end + 4..next].to_vec();
        parts.push(part);
        pos = next + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_binary_content() {
        let parts = vec![
            Part { name: "name".into(), filename: None, content_type: None, data: "契約書.pdf".as_bytes().to_vec() },
            Part {
                name: "uploadfile".into(),
                filename: Some("a\"b.pdf".into()),
                content_type: Some("application/pdf".into()),
                data: b"%PDF-\r\n--x\r\n\x00\xff%%EOF".to_vec(),
            },
        ];
        let (body, ct) = build("nagare-b0undary", &parts);
        let b = boundary(&ct).unwrap();
        let back = parse(&body, &b).unwrap();
        assert_eq!(back[0], parts[0]);
        assert_eq!(back[1].data, parts[1].data);
        assert_eq!(back[1].filename.as_deref(), Some("a_b.pdf"));
        assert!(parse(b"garbage", "x").is_err());
        assert_eq!(boundary("application/json"), None);
    }
}
