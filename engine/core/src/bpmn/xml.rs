//! Hardened XML reading with positions: text → a small element tree.
//!
//! BPMN files come from anywhere (a modeler, a mail attachment, an API call), so
//! the reader is bounded like the YAML loader: at most [`MAX_XML_BYTES`] bytes,
//! [`MAX_XML_DEPTH`] levels, [`MAX_XML_ELEMENTS`] elements. A `<!DOCTYPE>` is
//! refused outright: BPMN never needs one, and it is where entity expansion
//! attacks (billion laughs, external entities) live. Only the five predefined
//! entities and character references are read. Every element keeps its 1-based
//! line:col so that import diagnostics point into the XML.

use crate::diag::{Diagnostic, Diagnostics, Loc};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Largest BPMN file accepted, bytes (diagram interchange makes BPMN files
/// several times larger than the YAML of the same process).
pub const MAX_XML_BYTES: usize = 4 * 1024 * 1024;
/// Deepest element nesting accepted.
pub const MAX_XML_DEPTH: usize = 64;
/// Most elements accepted in one file.
pub const MAX_XML_ELEMENTS: usize = 100_000;
/// Most attributes on one element.
pub const MAX_XML_ATTRIBUTES: usize = 256;

/// One XML element: namespace URI (empty when unbound), local name, attributes,
/// children and the text directly inside it.
#[derive(Debug, Clone, Default)]
pub struct Element {
    pub ns: String,
    pub name: String,
    /// The name as written (`bpmn:task`), for messages.
    pub qname: String,
    /// (namespace URI or empty, local name, value).
    pub attrs: Vec<(String, String, String)>,
    pub children: Vec<Element>,
    pub text: String,
    pub loc: Loc,
}

impl Element {
    /// An attribute without a namespace (the usual BPMN attributes).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(ns, n, _)| ns.is_empty() && n == name).map(|(_, _, v)| v.as_str())
    }

    /// An attribute in namespace `ns`.
    pub fn attr_ns(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n_ns, n, _)| n_ns == ns && n == name).map(|(_, _, v)| v.as_str())
    }

    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// Children in namespace `ns` called `name`.
    pub fn children_named<'a>(&'a self, ns: &'a str, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    /// All descendants (depth first), without recursion.
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = Vec::new();
        let mut stack: Vec<&Element> = self.children.iter().rev().collect();
        while let Some(e) = stack.pop() {
            out.push(e);
            stack.extend(e.children.iter().rev());
        }
        out
    }

    /// The text inside, trimmed.
    pub fn trimmed(&self) -> &str {
        self.text.trim()
    }
}

/// Byte offset → line:col, columns counted in characters like an editor does.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
        Lines { text, starts }
    }

    fn loc(&self, offset: usize) -> Loc {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|s| *s <= offset) - 1;
        let start = self.starts[line];
        let col = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        Loc::new(line + 1, col + 1)
    }
}

fn err(code: &'static str, loc: Loc, msg: impl Into<String>, hint: &str) -> Diagnostics {
    let mut d = Diagnostics::default();
    d.push(Diagnostic::error(code, loc, msg).with_hint(hint));
    d
}

/// Parse `text` into its root element, refusing hostile or malformed XML.
pub fn parse(text: &str) -> Result<Element, Diagnostics> {
    if text.len() > MAX_XML_BYTES {
        return Err(err(
            "file-too-large",
            Loc::new(1, 1),
            format!("the BPMN file has {} bytes; the limit is {MAX_XML_BYTES} bytes (4 MiB)", text.len()),
            "split the model into several processes (call activities), or remove embedded data",
        ));
    }
    let offset_bom = text.len() - text.trim_start_matches('\u{feff}').len();
    let lines = Lines::new(text);
    let body = &text[offset_bom..];
    let mut reader = NsReader::from_str(body);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let at = offset_bom + usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => {
                let pos = offset_bom + usize::try_from(reader.error_position()).unwrap_or(0);
                return Err(err(
                    "bad-xml",
                    lines.loc(pos),
                    format!("the XML is not well-formed: {e}"),
                    "open the file in a modeler and save it again, or fix the XML by hand",
                ));
            }
        };
        match event {
            Event::DocType(_) => {
                return Err(err(
                    "xml-doctype",
                    lines.loc(at),
                    "a <!DOCTYPE> is not accepted in a BPMN file (entity declarations are refused)",
                    "remove the DOCTYPE: BPMN files from modelers have none",
                ));
            }
            Event::Start(e) | Event::Empty(e) if root.is_some() && stack.is_empty() => {
                let _ = e;
                return Err(err("bad-xml", lines.loc(at), "more than one root element", "keep one <definitions>"));
            }
            Event::Start(e) => {
                count += 1;
                if stack.len() >= MAX_XML_DEPTH {
                    return Err(err(
                        "too-deep",
                        lines.loc(at),
                        format!("elements nested deeper than {MAX_XML_DEPTH} levels"),
                        "BPMN models need a handful of levels; this file is not a plausible model",
                    ));
                }
                let el = element(&reader, &e, lines.loc(at))?;
                stack.push(el);
            }
            Event::Empty(e) => {
                count += 1;
                let el = element(&reader, &e, lines.loc(at))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().expect("check_end_names pairs every end with a start");
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s =
                    t.decode().map_err(|e| err("bad-xml", lines.loc(at), e.to_string(), "save the file as UTF-8"))?;
                push_text(&mut stack, &s, &lines, at)?;
            }
            Event::CData(t) => {
                let s =
                    t.decode().map_err(|e| err("bad-xml", lines.loc(at), e.to_string(), "save the file as UTF-8"))?;
                push_text(&mut stack, &s, &lines, at)?;
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        let name = r.decode().map(|c| c.into_owned()).unwrap_or_default();
                        match name.as_str() {
                            "lt" => '<',
                            "gt" => '>',
                            "amp" => '&',
                            "apos" => '\'',
                            "quot" => '"',
                            _ => {
                                return Err(err(
                                    "xml-entity",
                                    lines.loc(at),
                                    format!("entity `&{name};` is not defined (only the five XML entities are read)"),
                                    "write the character itself, or &#NNNN;",
                                ))
                            }
                        }
                    }
                    Err(e) => return Err(err("bad-xml", lines.loc(at), e.to_string(), "fix the character reference")),
                };
                push_text(&mut stack, c.encode_utf8(&mut [0; 4]), &lines, at)?;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
        if count > MAX_XML_ELEMENTS {
            return Err(err(
                "too-many-elements",
                lines.loc(at),
                format!("more than {MAX_XML_ELEMENTS} elements"),
                "split the model into several processes",
            ));
        }
    }
    if let Some(open) = stack.last() {
        return Err(err(
            "bad-xml",
            open.loc,
            format!("<{}> is never closed", open.qname),
            "the file is cut short; save it again from the modeler",
        ));
    }
    root.ok_or_else(|| {
        err("bad-xml", Loc::new(1, 1), "the file has no XML element", "a BPMN file starts with <definitions>")
    })
}

fn push_text(stack: &mut [Element], s: &str, lines: &Lines<'_>, at: usize) -> Result<(), Diagnostics> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(err("bad-xml", lines.loc(at), "text outside the root element", "remove it")),
    }
}

fn element(reader: &NsReader<&[u8]>, e: &BytesStart<'_>, loc: Loc) -> Result<Element, Diagnostics> {
    let bad = |msg: String| err("bad-xml", loc, msg, "fix the element's attributes");
    let (res, local) = reader.resolver().resolve_element(e.name());
    let ns = namespace(res);
    let qname = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    if let Some(p) = unknown_prefix(reader, e) {
        return Err(bad(format!("<{qname}> uses the namespace prefix `{p}` that is not declared")));
    }
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|x| bad(format!("bad attribute on <{qname}>: {x}")))?;
        if attrs.len() >= MAX_XML_ATTRIBUTES {
            return Err(bad(format!("<{qname}> has more than {MAX_XML_ATTRIBUTES} attributes")));
        }
        let key = a.key;
        if key.as_ref() == b"xmlns" || key.as_ref().starts_with(b"xmlns:") {
            continue;
        }
        let (res, aname) = reader.resolver().resolve_attribute(key);
        let value = a.normalized_value(quick_xml::XmlVersion::Implicit1_0).map_err(|x| {
            err(
                "xml-entity",
                loc,
                format!("attribute `{}` on <{qname}>: {x}", String::from_utf8_lossy(key.as_ref())),
                "only the five XML entities and &#NNNN; are read",
            )
        })?;
        attrs.push((namespace(res), String::from_utf8_lossy(aname.as_ref()).into_owned(), value.into_owned()));
    }
    Ok(Element {
        ns,
        name: String::from_utf8_lossy(local.as_ref()).into_owned(),
        qname,
        attrs,
        children: Vec::new(),
        text: String::new(),
        loc,
    })
}

fn unknown_prefix(reader: &NsReader<&[u8]>, e: &BytesStart<'_>) -> Option<String> {
    match reader.resolver().resolve_element(e.name()).0 {
        ResolveResult::Unknown(p) => Some(String::from_utf8_lossy(&p).into_owned()),
        _ => None,
    }
}

fn namespace(res: ResolveResult<'_>) -> String {
    match res {
        ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_keep_namespaces_text_and_positions() {
        let x = "<?xml version=\"1.0\"?>\n<b:definitions xmlns:b=\"urn:b\" id=\"d\">\n  <b:script>x &gt; 5 &amp;&amp; y &#60; 3</b:script>\n</b:definitions>";
        let root = parse(x).unwrap();
        assert_eq!((root.ns.as_str(), root.name.as_str(), root.attr("id")), ("urn:b", "definitions", Some("d")));
        assert_eq!(root.loc, Loc::new(2, 1));
        let s = root.child("urn:b", "script").unwrap();
        assert_eq!(s.text, "x > 5 && y < 3");
        assert_eq!(s.loc, Loc::new(3, 3));
    }

    #[test]
    fn billion_laughs_doctype_is_refused() {
        let x = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]>\n<definitions>&lol2;</definitions>";
        let e = parse(x).unwrap_err();
        assert_eq!((e.0[0].code, e.0[0].line), ("xml-doctype", 2), "{e}");
    }

    #[test]
    fn undefined_entities_are_refused() {
        let e = parse("<definitions>&xxe;</definitions>").unwrap_err();
        assert_eq!(e.0[0].code, "xml-entity", "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let x = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        let e = parse(&x).unwrap_err();
        assert_eq!(e.0[0].code, "too-deep", "{e}");
    }

    #[test]
    fn huge_files_are_refused_before_parsing() {
        let x = format!("<definitions>{}</definitions>", " ".repeat(MAX_XML_BYTES));
        assert_eq!(parse(&x).unwrap_err().0[0].code, "file-too-large");
    }

    #[test]
    fn malformed_xml_points_at_the_problem() {
        let e = parse("<a>\n  <b></c>\n</a>").unwrap_err();
        assert_eq!((e.0[0].code, e.0[0].line), ("bad-xml", 2), "{e}");
        assert_eq!(parse("<a><b/>").unwrap_err().0[0].code, "bad-xml");
    }
}
