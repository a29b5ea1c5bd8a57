//! A YAML tree that remembers where every key and value stands.
//!
//! serde gives typed values but no positions; validation needs positions for every
//! node id, reference and expression. This pass reads the event stream once, builds a
//! small spanned tree, and enforces the limits that protect the engine from hostile
//! files (size, nesting depth, alias expansion, document count) before serde ever sees
//! the text. It is iterative, so a deeply nested file cannot overflow the stack.

use crate::diag::{Diagnostic, Diagnostics, Loc};
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// Largest process file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Deepest nesting of maps and lists accepted.
pub const MAX_DEPTH: usize = 64;
/// Most YAML nodes a file may expand to, counting every alias at its full size.
pub const MAX_NODES: u64 = 200_000;

/// How a scalar was written; expressions in block scalars start on the next line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    Block,
}

#[derive(Debug, Clone)]
pub struct YKey {
    pub text: String,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub enum YKind {
    Scalar(String, Style),
    Seq(Vec<YNode>),
    Map(Vec<(YKey, YNode)>),
}

/// One value with the position where it starts.
#[derive(Debug, Clone)]
pub struct YNode {
    pub loc: Loc,
    pub kind: YKind,
}

impl YNode {
    pub fn as_map(&self) -> Option<&[(YKey, YNode)]> {
        match &self.kind {
            YKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[YNode]> {
        match &self.kind {
            YKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            YKind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&YNode> {
        self.as_map()?.iter().find(|(k, _)| k.text == key).map(|(_, v)| v)
    }

    pub fn key_loc(&self, key: &str) -> Option<Loc> {
        self.as_map()?.iter().find(|(k, _)| k.text == key).map(|(k, _)| k.loc)
    }

    /// Follow a path of map keys and list indexes.
    pub fn at(&self, path: &[&str]) -> Option<&YNode> {
        let mut cur = self;
        for seg in path {
            cur = match &cur.kind {
                YKind::Map(_) => cur.get(seg)?,
                YKind::Seq(items) => items.get(seg.parse::<usize>().ok()?)?,
                YKind::Scalar(..) => return None,
            };
        }
        Some(cur)
    }

    fn size_hint(&self) -> u64 {
        match &self.kind {
            YKind::Scalar(..) => 1,
            YKind::Seq(s) => 1 + s.iter().map(YNode::size_hint).sum::<u64>(),
            YKind::Map(m) => 1 + m.iter().map(|(_, v)| 1 + v.size_hint()).sum::<u64>(),
        }
    }
}

/// Positions of a whole document: the root, plus lookups by path with a fallback.
#[derive(Debug, Clone)]
pub struct SourceMap {
    pub root: YNode,
}

impl SourceMap {
    /// Position of the value at `path`, or of its nearest existing ancestor.
    pub fn loc(&self, path: &[&str]) -> Loc {
        for n in (0..=path.len()).rev() {
            if let Some(node) = self.root.at(&path[..n]) {
                return node.loc;
            }
        }
        self.root.loc
    }

    /// Position of the key that ends `path` (for "this node" findings).
    pub fn key_loc(&self, path: &[&str]) -> Loc {
        if let Some((last, parent)) = path.split_last() {
            if let Some(loc) = self.root.at(parent).and_then(|p| p.key_loc(last)) {
                return loc;
            }
        }
        self.loc(path)
    }

    pub fn node(&self, path: &[&str]) -> Option<&YNode> {
        self.root.at(path)
    }
}

fn loc_of(span: &Span) -> Loc {
    Loc::new(span.start.line(), span.start.col() + 1)
}

/// An open map or list; `parent` is the key it sits under (`-` for a list item), so
/// a finding inside it can say what kind of key is at fault.
enum Frame {
    Seq { loc: Loc, anchor: usize, parent: String, items: Vec<YNode> },
    Map { loc: Loc, anchor: usize, parent: String, entries: Vec<(YKey, YNode)>, key: Option<YKey>, skip_value: bool },
}

impl Frame {
    fn parent(&self) -> &str {
        match self {
            Frame::Seq { parent, .. } | Frame::Map { parent, .. } => parent,
        }
    }
}

/// What to do about a key written twice, in the words of the map it is in: `path`
/// is the keys from the top of the file down to that map.
fn duplicate_hint(path: &[&str], key: &str) -> String {
    match path {
        [] => format!("`{key}` may appear once at the top of the file: keep one"),
        ["nodes"] => "node ids must be unique: rename one of the nodes".into(),
        ["variables"] => "variable names must be unique: rename or remove one".into(),
        ["lanes"] => "lane ids must be unique: rename one of the lanes".into(),
        [.., "outcomes"] => "outcome names of a task must be unique: rename one".into(),
        [.., "form"] => format!("`{key}` is listed twice in this form: keep one"),
        [.., "set"] => format!("`{key}` is set twice here; only one value can win: keep one"),
        [.., "with"] => format!("the input `{key}` is given twice: keep one"),
        _ => format!("`{key}` may appear once in this map: keep one, or merge the two"),
    }
}

/// Parse `text` into a spanned tree, or the diagnostics explaining why not.
pub fn parse(text: &str) -> Result<SourceMap, Diagnostics> {
    let mut diags = Diagnostics::default();
    if text.len() > MAX_FILE_BYTES {
        diags.push(super::input::too_large(text.len()));
        return Err(diags);
    }

    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<YNode> = None;
    let mut anchors: HashMap<usize, YNode> = HashMap::new();
    let mut documents = 0usize;
    let mut expanded: u64 = 0;

    for item in Parser::new_from_str(text) {
        let (event, span) = match item {
            Ok(ev) => ev,
            Err(e) => {
                let m = e.marker();
                if e.info().contains("recursion limit") {
                    diags.push(
                        Diagnostic::error("too-deep", Loc::new(m.line(), m.col() + 1), "nesting is too deep")
                            .with_hint("a process definition never needs this depth; flatten the structure"),
                    );
                    return Err(diags);
                }
                diags.push(
                    Diagnostic::error(
                        "yaml-syntax",
                        Loc::new(m.line(), m.col() + 1),
                        format!("YAML syntax error: {}", e.info()),
                    )
                    .with_hint("check the indentation and quoting near this position; values containing `: ` or `#` need quotes"),
                );
                return Err(diags);
            }
        };
        let loc = loc_of(&span);
        let node = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    diags.push(
                        Diagnostic::error("multiple-documents", loc, "a process file holds exactly one YAML document")
                            .with_hint("remove the `---` separator and put each process in its own file"),
                    );
                    return Err(diags);
                }
                continue;
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    diags.push(
                        Diagnostic::error("too-deep", loc, format!("nesting deeper than {MAX_DEPTH} levels"))
                            .with_hint("a process definition never needs this depth; flatten the structure"),
                    );
                    return Err(diags);
                }
                let parent = match stack.last() {
                    Some(Frame::Map { key: Some(k), .. }) => k.text.clone(),
                    Some(_) => "-".to_string(),
                    None => String::new(),
                };
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq { loc, anchor, parent, items: Vec::new() }
                } else {
                    Frame::Map { loc, anchor, parent, entries: Vec::new(), key: None, skip_value: false }
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match stack.pop() {
                    Some(Frame::Seq { loc, anchor, items, .. }) => (YNode { loc, kind: YKind::Seq(items) }, anchor),
                    Some(Frame::Map { loc, anchor, entries, .. }) => (YNode { loc, kind: YKind::Map(entries) }, anchor),
                    None => continue,
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::Scalar(value, style, anchor, _) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                expanded += 1;
                let node = YNode { loc, kind: YKind::Scalar(value.into_owned(), style) };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::Alias(id) => {
                let Some(target) = anchors.get(&id) else {
                    diags.push(
                        Diagnostic::error("yaml-syntax", loc, "alias refers to an unknown anchor")
                            .with_hint("define the anchor (`&name`) before the alias (`*name`) that uses it"),
                    );
                    return Err(diags);
                };
                expanded = expanded.saturating_add(target.size_hint());
                if expanded > MAX_NODES {
                    diags.push(
                        Diagnostic::error(
                            "alias-bomb",
                            loc,
                            format!("aliases expand this file beyond {MAX_NODES} YAML nodes"),
                        )
                        .with_hint("anchors and aliases may share a block, not multiply it; write the values out"),
                    );
                    return Err(diags);
                }
                target.clone()
            }
            _ => continue,
        };
        expanded += 1;
        if expanded > MAX_NODES {
            diags.push(
                Diagnostic::error("too-many-nodes", loc, format!("file has more than {MAX_NODES} YAML nodes"))
                    .with_hint("split the process into smaller processes, or move data out of the definition"),
            );
            return Err(diags);
        }
        // A key written twice: found before the mutable borrow below, because the hint
        // reads the keys of every open map.
        let duplicate = match (stack.last(), &node.kind) {
            (Some(Frame::Map { entries, key: None, .. }), YKind::Scalar(text, _)) => {
                entries.iter().find(|(k, _)| &k.text == text).map(|(first, _)| {
                    let path: Vec<&str> = stack.iter().skip(1).map(Frame::parent).collect();
                    Diagnostic::error(
                        "duplicate-key",
                        node.loc,
                        format!("duplicate key `{text}` (first defined at line {})", first.loc.line),
                    )
                    .with_hint(duplicate_hint(&path, text))
                })
            }
            _ => None,
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, skip_value, .. }) => match key.take() {
                None => {
                    let YKind::Scalar(text, _) = node.kind else {
                        diags.push(
                            Diagnostic::error("complex-key", node.loc, "map keys must be plain text")
                                .with_hint("write the key as a name such as `review:`"),
                        );
                        return Err(diags);
                    };
                    if let Some(d) = duplicate {
                        diags.push(d);
                        *skip_value = true;
                    }
                    *key = Some(YKey { text, loc: node.loc });
                }
                Some(k) => {
                    if std::mem::take(skip_value) {
                        continue;
                    }
                    entries.push((k, node));
                }
            },
        }
    }
    match root {
        Some(root) if !diags.has_errors() => Ok(SourceMap { root }),
        Some(_) => Err(diags),
        None => {
            diags.push(
                Diagnostic::error("empty-file", Loc::new(1, 1), "the file is empty")
                    .with_hint("a process needs at least `id`, `start` and `nodes`"),
            );
            Err(diags)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let m = parse("id: x\nnodes:\n  a:\n    next: b\n").unwrap();
        assert_eq!(m.loc(&["nodes", "a", "next"]), Loc::new(4, 11));
        assert_eq!(m.key_loc(&["nodes", "a"]), Loc::new(3, 3));
    }

    #[test]
    fn alias_bomb_is_rejected_quickly() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        let err = parse(&s).unwrap_err();
        assert_eq!(err.0[0].code, "alias-bomb");
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let s = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse(&s).unwrap_err();
        assert_eq!(err.0[0].code, "too-deep");
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.0[0].code, "duplicate-key");
        assert_eq!(err.0[0].line, 3);
    }

    fn duplicate_hint_of(text: &str) -> String {
        let err = parse(text).unwrap_err();
        assert_eq!(err.0[0].code, "duplicate-key", "{err}");
        err.0[0].hint.clone().unwrap_or_default()
    }

    #[test]
    fn duplicate_key_hint_names_what_the_key_is() {
        assert!(duplicate_hint_of("nodes:\n  a: {}\n  a: {}\n").contains("node ids"));
        assert!(duplicate_hint_of("variables:\n  x: {}\n  x: {}\n").contains("variable names"));
        let top = duplicate_hint_of("id: p\nid: q\n");
        assert!(top.contains("`id` may appear once at the top") && !top.contains("ids"), "{top}");
        let inner = duplicate_hint_of("nodes:\n  a:\n    next: b\n    next: c\n");
        assert!(inner.contains("`next` may appear once") && !inner.contains("ids"), "{inner}");
        let with = duplicate_hint_of("nodes:\n  a:\n    with: { m: 1, m: 2 }\n");
        assert!(with.contains("input `m`"), "{with}");
        let branch = duplicate_hint_of("nodes:\n  a:\n    exclusive:\n      - { when: x, when: y }\n");
        assert!(branch.contains("`when` may appear once"), "{branch}");
    }
}
