//! Where the BPMN export draws things: the layout of `nagare diagram`
//! ([`crate::diagram`]) run over the export's own elements, and its numbers turned
//! into BPMNDI bounds and waypoints (pool and lanes included).
//!
//! The diagram's lane bands become the pool's lanes: a pool header 30 wide at the
//! left margin, a lane header 30 wide inside it, the shapes where the SVG has them.

use crate::diagram::graph::{Edge, Item};
use crate::diagram::layout::{layout_parts, Band, Diagram, BOUNDARY_R};
use crate::diagram::route;
use crate::process::NodeIx;

/// Left edge of the pool.
const POOL_X: i32 = 12;
/// Width of the pool's and of each lane's title strip.
const HEADER: i32 = 30;
/// Boundary events are drawn this large (the SVG draws them smaller; modelers
/// expect something near their 36).
const BOUNDARY_SIZE: i32 = 24;

/// What one plane draws: the layout's input.
pub(super) struct Plane {
    pub items: Vec<Item>,
    /// One per sequence flow, in the flows' order.
    pub edges: Vec<Edge>,
    pub start: NodeIx,
}

/// A laid-out plane.
pub(super) struct LaidOut {
    d: Diagram,
    pub bands: Vec<Band>,
    /// x, y, width, height of the pool.
    pub pool: (i32, i32, i32, i32),
}

/// Lay out `plane` with `lanes` (key, name) as bands.
pub(super) fn lay_out(plane: &Plane, lanes: &[(String, String)], title: String) -> LaidOut {
    let d = layout_parts(plane.items.clone(), plane.edges.clone(), plane.start, lanes, title);
    let top = d.bands.first().map_or(0, |b| b.y);
    let bottom = d.bands.last().map_or(0, |b| b.y + b.height);
    let pool = (POOL_X, top, d.width - 2 * POOL_X, bottom - top);
    LaidOut { bands: d.bands.clone(), d, pool }
}

impl LaidOut {
    /// The band of a lane key (`None`: the band of shapes without a lane).
    pub fn band_of(&self, lane: Option<&str>) -> usize {
        self.bands.iter().position(|b| b.key.as_deref() == lane).unwrap_or(0)
    }

    /// Bounds of lane `b` inside the pool.
    pub fn lane(&self, b: usize) -> (i32, i32, i32, i32) {
        let band = &self.bands[b];
        (self.pool.0 + HEADER, band.y, self.pool.2 - HEADER, band.height)
    }

    /// Bounds of item `i`.
    pub fn bounds(&self, i: usize) -> (i32, i32, i32, i32) {
        let n = &self.d.nodes[i];
        (n.x - n.hw, n.y - n.hh, 2 * n.hw, 2 * n.hh)
    }

    /// Bounds of boundary event `index` of item `item`.
    pub fn boundary_bounds(&self, item: usize, index: usize) -> (i32, i32, i32, i32) {
        let (x, y) = self.d.nodes[item].boundary_at(index);
        let r = BOUNDARY_SIZE / 2;
        (x - r, y - r, BOUNDARY_SIZE, BOUNDARY_SIZE)
    }

    /// Waypoints of edge `e`: the SVG's route, leaving a boundary event at the
    /// bottom of the larger circle drawn here.
    pub fn waypoints(&self, e: usize) -> Vec<(i32, i32)> {
        let mut pts = route(&self.d, e);
        if self.d.edges[e].boundary.is_some() {
            if let Some(first) = pts.first_mut() {
                first.1 += BOUNDARY_SIZE / 2 - BOUNDARY_R;
            }
        }
        pts
    }
}
