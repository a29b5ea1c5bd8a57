//! Process diagrams: a compiled [`Process`] in, SVG or Mermaid text out.
//!
//! Pure and deterministic (same process, same bytes): the CLI (`nagare diagram`)
//! and the web inbox's instance page draw with the same code. Three steps:
//! `graph` reads the process into shapes and labelled edges (the only place that
//! knows the node kinds; a kind it does not know becomes a plain box), `layout`
//! places them in lanes and layers, and [`svg`] / [`mermaid`] write text.
//! [`Highlight`] marks an instance's path and its current nodes in the SVG.

pub(crate) mod graph;
pub(crate) mod layout;
mod mermaid;
mod svg;
mod text;

pub use graph::{BoundaryMark, Edge, EdgeStyle, Shape, TaskType};
pub use layout::{Band, Diagram, Placed};
pub use mermaid::mermaid;
pub use svg::{route, svg};

use crate::process::Process;
use std::collections::BTreeSet;

/// Lay out `process`: the diagram the writers draw.
pub fn diagram(process: &Process) -> Diagram {
    layout::layout(graph::read(process), process)
}

/// The SVG of `process`, unhighlighted.
pub fn to_svg(process: &Process) -> String {
    svg(&diagram(process), &Highlight::default())
}

/// What an instance has done, for drawing it on its process: the nodes it passed
/// through (its history) and the nodes its tokens wait at now.
#[derive(Debug, Clone, Default)]
pub struct Highlight {
    pub visited: BTreeSet<String>,
    pub current: BTreeSet<String>,
    /// Tasks that were sent back: their send-back flow was taken.
    pub sent_back: BTreeSet<String>,
}

impl Highlight {
    /// From node ids: those named in the history and those of the current tokens.
    /// The start event counts as visited as soon as anything was.
    pub fn new<'a>(
        history: impl IntoIterator<Item = &'a str>,
        current: impl IntoIterator<Item = &'a str>,
    ) -> Highlight {
        let mut visited: BTreeSet<String> = history.into_iter().map(str::to_string).collect();
        let current: BTreeSet<String> = current.into_iter().map(str::to_string).collect();
        visited.extend(current.iter().cloned());
        if !visited.is_empty() {
            visited.insert("start".to_string());
        }
        Highlight { visited, current, sent_back: BTreeSet::new() }
    }

    /// The tasks the history shows sent back (`sent_back` entries' nodes).
    pub fn with_sent_back<'a>(mut self, tasks: impl IntoIterator<Item = &'a str>) -> Highlight {
        self.sent_back = tasks.into_iter().map(str::to_string).collect();
        self
    }

    pub fn is_empty(&self) -> bool {
        self.visited.is_empty() && self.current.is_empty()
    }

    /// Whether the flow from `from` to `to` was taken: both ends were visited, and
    /// for a send-back, the task was sent back. (The history names nodes, not
    /// flows: two visited nodes joined by a flow that was not taken, such as an
    /// outcome beside the one chosen that leads to a node reached another way, are
    /// marked too.)
    pub fn taken(&self, from: &str, to: &str, style: EdgeStyle) -> bool {
        let both = self.visited.contains(from) && self.visited.contains(to);
        match style {
            EdgeStyle::SendBack => both && self.sent_back.contains(from),
            _ => both,
        }
    }
}

#[cfg(test)]
mod tests;
