//! A process as a Mermaid `flowchart LR`: one subgraph per lane, so it pastes into
//! Markdown (GitHub, GitLab, Backlog, many wikis) and renders there.
//!
//! Node ids are `n0`, `n1` … in the process's order (Mermaid ids must be plain);
//! labels are quoted with Mermaid's entity codes for `"`, `<`, `>`.

use super::graph::{EdgeStyle, GatewayMark, Icon, Shape, TaskType};
use super::layout::Diagram;
use std::fmt::Write;

/// Longest edge label kept, in characters.
const LABEL_CHARS: usize = 60;

/// The Mermaid text of `d`.
pub fn mermaid(d: &Diagram) -> String {
    let mut s = String::from("flowchart LR\n");
    let _ = writeln!(s, "  %% {}", one_line(&d.title));
    for (b, band) in d.bands.iter().enumerate() {
        let members: Vec<usize> = (0..d.nodes.len()).filter(|&v| d.nodes[v].band == b).collect();
        if band.key.is_none() {
            for v in members {
                let _ = writeln!(s, "  {}", node(d, v));
            }
            continue;
        }
        let _ = writeln!(s, "  subgraph lane{b}[\"{}\"]", quote(&band.title));
        for v in members {
            let _ = writeln!(s, "    {}", node(d, v));
        }
        s.push_str("  end\n");
    }
    for e in &d.edges {
        let arrow = match e.style {
            EdgeStyle::SendBack | EdgeStyle::Boundary => "-.->",
            EdgeStyle::Normal | EdgeStyle::Default => "-->",
        };
        match &e.label {
            Some(l) => {
                let l: String = one_line(l).chars().take(LABEL_CHARS).collect();
                let _ = writeln!(s, "  n{} {arrow}|\"{}\"| n{}", e.from, quote(&l), e.to);
            }
            None => {
                let _ = writeln!(s, "  n{} {arrow} n{}", e.from, e.to);
            }
        }
    }
    s
}

fn node(d: &Diagram, v: usize) -> String {
    let p = &d.nodes[v];
    let label = quote(&one_line(&p.label));
    match &p.shape {
        Shape::Start { icon } => format!("n{v}((\"{}{label}\"))", icon_prefix(*icon)),
        Shape::End { error: true, .. } => format!("n{v}(((\"⚡ {label}\")))"),
        Shape::End { .. } => format!("n{v}(((\"{label}\")))"),
        Shape::Catch(icon) => format!("n{v}((\"{}{label}\"))", icon_prefix(Some(*icon))),
        Shape::Task(t) => {
            let mark = match t {
                TaskType::User => "👤",
                TaskType::Service => "⚙",
                TaskType::Script => "📜",
            };
            let multi = match p.multi {
                Some(true) => " ☰",
                Some(false) => " ⦀",
                None => "",
            };
            format!("n{v}(\"{mark} {label}{multi}\")")
        }
        Shape::Gateway(g) => {
            let mark = match g {
                GatewayMark::Exclusive => "×",
                GatewayMark::Parallel => "+",
                GatewayMark::Inclusive => "○",
                GatewayMark::EventBased => "⬠",
            };
            format!("n{v}{{\"{mark} {label}\"}}")
        }
        Shape::Other(kind) => format!("n{v}[\"{kind}: {label}\"]"),
    }
}

fn icon_prefix(icon: Option<Icon>) -> &'static str {
    match icon {
        None => "",
        Some(Icon::Timer) => "⏱ ",
        Some(Icon::Message) => "✉ ",
        Some(Icon::Error) => "⚡ ",
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text inside a quoted Mermaid label.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            c => out.push(c),
        }
    }
    out
}
