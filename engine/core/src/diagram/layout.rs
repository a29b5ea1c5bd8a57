//! Placing the shapes: lanes are horizontal bands, flows read left to right.
//!
//! 1. Back edges: a depth-first walk from the start (successors in the process's
//!    order) marks the edges that lead back to a node on the walk's stack (loops,
//!    most send-backs). They are left out of the layering.
//! 2. Layers: the longest path from the start over the remaining acyclic graph, so
//!    every forward edge goes at least one column to the right.
//! 3. Rows: in each (lane, layer) cell nodes stack in rows; their order starts as
//!    the walk's and is improved by barycenter sweeps (two forward, two backward)
//!    that move a node towards the rows of its neighbours, reducing crossings.
//! 4. Coordinates: columns as wide as a box plus the longest label leaving that
//!    column; bands as tall as their fullest cell.
//!
//! Everything is integer arithmetic or stable sorts over indices: the same
//! process gives the same picture.

use super::graph::{Edge, Item, Shape};
use super::text;
use crate::process::{NodeIx, Process};

pub const BOX_W: i32 = 132;
pub const BOX_H: i32 = 56;
pub const EVENT_R: i32 = 18;
pub const GATEWAY_R: i32 = 24;
pub const BOUNDARY_R: i32 = 9;
pub const ROW_H: i32 = 124;
pub const BAND_HEAD: i32 = 32;
pub const MARGIN: i32 = 24;
pub const TITLE_H: i32 = 34;
const GAP: i32 = 44;
/// Distance between two vertical runs in one gap.
const RUN_STEP: i32 = 8;
/// Widest edge label before it is cut (pixels).
pub const LABEL_MAX: i32 = 150;
pub const LABEL_SIZE: f64 = 10.0;

/// A lane as drawn: a horizontal band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    /// The lane's key in `lanes:`, `None` for the band of nodes without a lane.
    pub key: Option<String>,
    /// What the band shows: the lane's `name:`, else its key.
    pub title: String,
    pub y: i32,
    pub height: i32,
}

/// A node with its place.
#[derive(Debug, Clone)]
pub struct Placed {
    pub id: String,
    pub label: String,
    pub shape: Shape,
    pub boundaries: Vec<super::graph::BoundaryMark>,
    /// Multi-instance: `Some(sequential)`.
    pub multi: Option<bool>,
    pub band: usize,
    pub layer: usize,
    pub row: usize,
    /// Centre.
    pub x: i32,
    pub y: i32,
    /// Half width and half height of the shape.
    pub hw: i32,
    pub hh: i32,
}

impl Placed {
    /// Where boundary event `i` sits on the lower edge (its centre): from the right
    /// corner leftwards on a box (the left part is where back edges leave), centred
    /// under the point of a gateway.
    pub fn boundary_at(&self, i: usize) -> (i32, i32) {
        let i = i as i32;
        if self.shape.is_box() {
            (self.x + self.hw - 16 - 24 * i, self.y + self.hh)
        } else {
            let n = self.boundaries.len() as i32;
            (self.x - 11 * (n - 1) + 22 * i, self.y + self.hh + BOUNDARY_R / 2)
        }
    }
}

/// A laid-out process.
#[derive(Debug, Clone)]
pub struct Diagram {
    pub title: String,
    pub bands: Vec<Band>,
    /// In the process's node order.
    pub nodes: Vec<Placed>,
    pub edges: Vec<Edge>,
    /// Per edge: whether it goes back (not left to right).
    pub back: Vec<bool>,
    /// Left edge of each column and its width.
    pub columns: Vec<(i32, i32)>,
    /// Per forward edge: the x of its vertical run in the gap after its source's
    /// column; edges to different targets get different runs, so they do not
    /// share a line and become ambiguous.
    pub run_x: Vec<i32>,
    pub width: i32,
    pub height: i32,
}

pub fn layout((items, edges): (Vec<Item>, Vec<Edge>), p: &Process) -> Diagram {
    let lanes: Vec<(String, String)> = p.lanes.iter().map(|(k, l)| (k.clone(), l.name.clone())).collect();
    layout_parts(items, edges, p.start, &lanes, p.name.clone())
}

/// [`layout`] of any shapes and edges: `start` is where the depth-first walk begins,
/// `lanes` the declared lanes (key, name) in order, `title` the diagram's. The BPMN
/// export lays out each sub-process's inside on its own with it.
pub(crate) fn layout_parts(
    items: Vec<Item>,
    edges: Vec<Edge>,
    start: NodeIx,
    declared: &[(String, String)],
    title: String,
) -> Diagram {
    let n = items.len();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (e, edge) in edges.iter().enumerate() {
        out[edge.from].push(e);
    }
    let (back, discovery) = back_edges(n, start, &edges, &out);
    let layer = layers(n, &edges, &back, &discovery);

    // Bands: the nodes without a lane on top (the start is one), then the lanes in
    // the order they are declared; a lane named by a node and not declared (not a
    // compiled process) gets a band of its own rather than none.
    let mut bands: Vec<Band> = Vec::new();
    if items.iter().any(|i| i.lane.is_none()) {
        bands.push(Band { key: None, title: String::new(), y: 0, height: 0 });
    }
    for (key, name) in declared {
        bands.push(Band { key: Some(key.clone()), title: lane_title(key, name), y: 0, height: 0 });
    }
    for item in &items {
        if let Some(l) = &item.lane {
            if !bands.iter().any(|b| b.key.as_deref() == Some(l)) {
                bands.push(Band { key: Some(l.clone()), title: l.clone(), y: 0, height: 0 });
            }
        }
    }
    let band: Vec<usize> =
        items.iter().map(|i| bands.iter().position(|b| b.key == i.lane).expect("every lane has a band")).collect();

    let layers_n = layer.iter().copied().max().map_or(0, |m| m + 1);
    // cells[band][layer]: the nodes there, in row order.
    let mut cells: Vec<Vec<Vec<NodeIx>>> = vec![vec![Vec::new(); layers_n]; bands.len()];
    for &v in &discovery {
        cells[band[v]][layer[v]].push(v);
    }
    order_rows(&mut cells, &edges, &back, &band);

    let rows_in_band: Vec<usize> = cells.iter().map(|b| b.iter().map(Vec::len).max().unwrap_or(0).max(1)).collect();
    let mut row = vec![0usize; n];
    for b in &cells {
        for c in b {
            for (r, &v) in c.iter().enumerate() {
                row[v] = r;
            }
        }
    }

    // Vertical runs: per column, one per target of the forward edges leaving it,
    // ordered by the target's place from the top.
    let global_row = |v: NodeIx| (band[v], row[v], v);
    let mut targets: Vec<Vec<NodeIx>> = vec![Vec::new(); layers_n];
    for (e, edge) in edges.iter().enumerate() {
        if !back[e] && !targets[layer[edge.from]].contains(&edge.to) {
            targets[layer[edge.from]].push(edge.to);
        }
    }
    for t in &mut targets {
        t.sort_by_key(|&v| global_row(v));
    }

    // Columns: a box, the runs, then room for the longest label leaving the column.
    let mut label_w = vec![0i32; layers_n];
    for (e, edge) in edges.iter().enumerate() {
        if let (false, Some(t)) = (back[e], edge.label.as_deref()) {
            let w = text::width(&text::clip(t, LABEL_SIZE, LABEL_MAX as f64), LABEL_SIZE).ceil() as i32;
            label_w[layer[edge.from]] = label_w[layer[edge.from]].max(w);
        }
    }
    let mut columns = Vec::with_capacity(layers_n);
    let mut x = MARGIN + BAND_HEAD + 16;
    for l in 0..layers_n {
        let runs = targets[l].len().saturating_sub(1) as i32 * RUN_STEP;
        let w = BOX_W + GAP + runs + label_w[l];
        columns.push((x, w));
        x += w;
    }
    let width = x + MARGIN - GAP / 2;

    let mut y = MARGIN + TITLE_H;
    for (b, band) in bands.iter_mut().enumerate() {
        band.y = y;
        band.height = rows_in_band[b] as i32 * ROW_H;
        y += band.height;
    }
    let height = y + MARGIN;

    let nodes = items
        .into_iter()
        .enumerate()
        .map(|(v, item)| {
            let (hw, hh) = match item.shape {
                Shape::Start { .. } | Shape::End { .. } | Shape::Catch(_) => (EVENT_R, EVENT_R),
                Shape::Gateway(_) => (GATEWAY_R, GATEWAY_R),
                Shape::Task(_) | Shape::Other(_) => (BOX_W / 2, BOX_H / 2),
            };
            let (cx, _) = columns[layer[v]];
            Placed {
                id: item.id,
                label: item.label,
                shape: item.shape,
                boundaries: item.boundaries,
                multi: item.multi,
                band: band[v],
                layer: layer[v],
                row: row[v],
                x: cx + BOX_W / 2,
                // A little above the row's middle: labels go below events.
                y: bands[band[v]].y + row[v] as i32 * ROW_H + ROW_H / 2 - 8,
                hw,
                hh,
            }
        })
        .collect();

    let run_x = edges
        .iter()
        .enumerate()
        .map(|(e, edge)| {
            if back[e] {
                return 0;
            }
            let l = layer[edge.from];
            let k = targets[l].iter().position(|&t| t == edge.to).expect("every target listed") as i32;
            columns[l].0 + BOX_W + 14 + k * RUN_STEP
        })
        .collect();

    Diagram { title, bands, nodes, edges, back, columns, run_x, width, height }
}

fn lane_title(key: &str, name: &str) -> String {
    if name.is_empty() {
        key.to_string()
    } else {
        name.to_string()
    }
}

/// Back edges of an iterative depth-first walk from `start` (then from every node
/// not reached, in order), and the order nodes were first reached in.
fn back_edges(n: usize, start: NodeIx, edges: &[Edge], out: &[Vec<usize>]) -> (Vec<bool>, Vec<NodeIx>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut back = vec![false; edges.len()];
    let mut mark = vec![Mark::New; n];
    let mut discovery = Vec::with_capacity(n);
    let roots = std::iter::once(start).chain(0..n);
    for root in roots {
        if root >= n || mark[root] != Mark::New {
            continue;
        }
        // (node, next out-edge to look at)
        let mut stack = vec![(root, 0usize)];
        mark[root] = Mark::OnStack;
        discovery.push(root);
        while let Some(top) = stack.last_mut() {
            let (v, i) = *top;
            if i == out[v].len() {
                mark[v] = Mark::Done;
                stack.pop();
                continue;
            }
            top.1 += 1;
            let e = out[v][i];
            let w = edges[e].to;
            match mark[w] {
                Mark::OnStack => back[e] = true,
                Mark::Done => {}
                Mark::New => {
                    mark[w] = Mark::OnStack;
                    discovery.push(w);
                    stack.push((w, 0));
                }
            }
        }
    }
    (back, discovery)
}

/// Longest-path layers over the forward edges (a topological pass in discovery order).
fn layers(n: usize, edges: &[Edge], back: &[bool], discovery: &[NodeIx]) -> Vec<usize> {
    let mut indeg = vec![0usize; n];
    let mut out: Vec<Vec<NodeIx>> = vec![Vec::new(); n];
    for (e, edge) in edges.iter().enumerate() {
        if !back[e] && edge.from != edge.to {
            indeg[edge.to] += 1;
            out[edge.from].push(edge.to);
        }
    }
    let mut layer = vec![0usize; n];
    let mut ready: std::collections::VecDeque<NodeIx> = discovery.iter().copied().filter(|&v| indeg[v] == 0).collect();
    let mut done = 0;
    while let Some(v) = ready.pop_front() {
        done += 1;
        for &w in &out[v] {
            layer[w] = layer[w].max(layer[v] + 1);
            indeg[w] -= 1;
            if indeg[w] == 0 {
                ready.push_back(w);
            }
        }
    }
    // Without back edges the rest is acyclic: every node is reached.
    debug_assert_eq!(done, n, "the forward edges form a cycle");
    layer
}

/// Barycenter sweeps: sort each cell by the mean row (across bands, counted from
/// the top) of the node's neighbours in the previous (forward sweep) or next
/// (backward sweep) layers. Nodes without such neighbours keep their place.
fn order_rows(cells: &mut [Vec<Vec<NodeIx>>], edges: &[Edge], back: &[bool], band: &[usize]) {
    let n = band.len();
    let layers_n = cells.first().map_or(0, Vec::len);
    let mut preds: Vec<Vec<NodeIx>> = vec![Vec::new(); n];
    let mut succs: Vec<Vec<NodeIx>> = vec![Vec::new(); n];
    for (e, edge) in edges.iter().enumerate() {
        if !back[e] && edge.from != edge.to {
            preds[edge.to].push(edge.from);
            succs[edge.from].push(edge.to);
        }
    }
    for sweep in 0..4 {
        let downstream = sweep % 2 == 0;
        // Global row of every node now: rows of the bands above, then its row.
        let mut global = vec![0.0f64; n];
        let mut base = 0usize;
        for b in cells.iter() {
            for c in b {
                for (r, &v) in c.iter().enumerate() {
                    global[v] = (base + r) as f64;
                }
            }
            base += b.iter().map(Vec::len).max().unwrap_or(0).max(1);
        }
        let layer_order: Vec<usize> = if downstream { (1..layers_n).collect() } else { (0..layers_n).rev().collect() };
        for l in layer_order {
            for b in cells.iter_mut() {
                let cell = &mut b[l];
                if cell.len() < 2 {
                    continue;
                }
                let mut keyed: Vec<(f64, usize, NodeIx)> = cell
                    .iter()
                    .enumerate()
                    .map(|(r, &v)| {
                        // Forward edges only: predecessors sit in earlier layers,
                        // successors in later ones.
                        let near = if downstream { &preds[v] } else { &succs[v] };
                        let nb: Vec<f64> = near.iter().map(|&w| global[w]).collect();
                        let key = if nb.is_empty() { global[v] } else { nb.iter().sum::<f64>() / nb.len() as f64 };
                        (key, r, v)
                    })
                    .collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                *cell = keyed.into_iter().map(|(_, _, v)| v).collect();
            }
        }
    }
}
