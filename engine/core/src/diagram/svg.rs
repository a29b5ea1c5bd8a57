//! A laid-out [`Diagram`] as SVG text.
//!
//! Self-contained: presentation attributes only (no `<style>`, no `style=`, no
//! script, no external font), so the same text works as a file, in Markdown, and
//! inline in a page whose Content-Security-Policy forbids inline styles. Classes
//! (`node`, `task user`, `visited`, `current`, `edge`, `taken`, `lane`) and
//! `data-node` / `data-lane` attributes are there for a page's stylesheet and tests.

use super::graph::{EdgeStyle, GatewayMark, Icon, Shape, TaskType};
use super::layout::{Diagram, Placed, BAND_HEAD, BOUNDARY_R, LABEL_MAX, LABEL_SIZE, MARGIN, ROW_H};
use super::text::{clip, wrap, xml};
use super::Highlight;
use std::fmt::Write;

/// Japanese first, then the common sans-serif faces; no web font is fetched.
pub const FONT_FAMILY: &str = "'Hiragino Kaku Gothic ProN','Hiragino Sans','Yu Gothic UI','Yu Gothic','Meiryo','Noto Sans CJK JP','Noto Sans JP','IPAexGothic','IPAGothic','Source Han Sans JP',system-ui,sans-serif";

const INK: &str = "#333333";
const VISITED: &str = "#1a7f37";
const VISITED_FILL: &str = "#e9f6ec";
const CURRENT: &str = "#d9480f";
const CURRENT_FILL: &str = "#fff0e0";

/// Colours of one node.
struct Paint {
    stroke: &'static str,
    fill: &'static str,
    width: f64,
}

fn paint(hl: &Highlight, id: &str) -> Paint {
    if hl.current.contains(id) {
        Paint { stroke: CURRENT, fill: CURRENT_FILL, width: 3.0 }
    } else if hl.visited.contains(id) {
        Paint { stroke: VISITED, fill: VISITED_FILL, width: 2.0 }
    } else {
        Paint { stroke: INK, fill: "#ffffff", width: 1.5 }
    }
}

/// A number as SVG wants it: at most one decimal, no trailing `.0`.
fn n(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// The SVG of `d`, with `hl`'s path and current nodes marked (nothing marked when
/// it is empty).
pub fn svg(d: &Diagram, hl: &Highlight) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"nagare-diagram\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"{FONT_FAMILY}\" font-size=\"12\" role=\"img\" aria-label=\"{t}\">\n<title>{t}</title>\n",
        w = d.width,
        h = d.height,
        t = xml(&d.title)
    );
    s.push_str("<defs>");
    for (id, color) in [("nagare-arrow", INK), ("nagare-arrow-taken", VISITED)] {
        let _ = write!(
            s,
            "<marker id=\"{id}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{color}\"/></marker>"
        );
    }
    s.push_str("</defs>\n");
    let _ = writeln!(s, "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>", d.width, d.height);
    let _ = writeln!(
        s,
        "<text class=\"title\" x=\"{MARGIN}\" y=\"{}\" font-size=\"16\" font-weight=\"bold\" fill=\"{INK}\">{}</text>",
        MARGIN + 12,
        xml(&d.title)
    );
    bands(&mut s, d);
    let mut labels = String::new();
    for e in 0..d.edges.len() {
        edge_svg(&mut s, &mut labels, d, e, hl);
    }
    for node in &d.nodes {
        node_svg(&mut s, node, hl);
    }
    s.push_str(&labels);
    s.push_str("</svg>\n");
    s
}

fn bands(s: &mut String, d: &Diagram) {
    let w = d.width - 2 * MARGIN;
    for (i, b) in d.bands.iter().enumerate() {
        let fill = if i % 2 == 0 { "#f7f8fa" } else { "#ffffff" };
        let key = b.key.as_deref().unwrap_or("");
        let _ = write!(
            s,
            "<g class=\"lane\" data-lane=\"{}\"><title>{}</title><rect x=\"{MARGIN}\" y=\"{}\" width=\"{w}\" height=\"{}\" fill=\"{fill}\" stroke=\"#b0b4ba\"/>",
            xml(key),
            xml(&b.title),
            b.y,
            b.height
        );
        let _ = write!(
            s,
            "<rect x=\"{MARGIN}\" y=\"{}\" width=\"{BAND_HEAD}\" height=\"{}\" fill=\"#e8ebef\" stroke=\"#b0b4ba\"/>",
            b.y, b.height
        );
        if !b.title.is_empty() {
            let cx = MARGIN + BAND_HEAD / 2;
            let cy = b.y + b.height / 2;
            let title = clip(&b.title, 13.0, (b.height - 12) as f64);
            let _ = write!(
                s,
                "<text x=\"{cx}\" y=\"{cy}\" transform=\"rotate(-90 {cx} {cy})\" text-anchor=\"middle\" dominant-baseline=\"central\" font-size=\"13\" font-weight=\"bold\" fill=\"{INK}\">{}</text>",
                xml(&title)
            );
        }
        s.push_str("</g>\n");
    }
}

/// The points of edge `e`, an orthogonal path: forward edges leave a shape's right
/// side (a boundary event's bottom), run down or up in their column gap and enter
/// the target's left side; back edges leave the bottom, run below both shapes in a
/// channel (staggered, so several do not lie on each other) and enter the target's
/// bottom.
pub fn route(d: &Diagram, e: usize) -> Vec<(i32, i32)> {
    route_and_label(d, e).0
}

/// Where an edge's label goes: (x, y, text-anchor).
type LabelAt = (i32, i32, &'static str);

fn route_and_label(d: &Diagram, e: usize) -> (Vec<(i32, i32)>, LabelAt) {
    let k = d.back[..e].iter().filter(|b| **b).count();
    let edge = &d.edges[e];
    let (sn, tn) = (&d.nodes[edge.from], &d.nodes[edge.to]);
    let mut pts = Vec::with_capacity(6);
    let label;
    if !d.back[e] {
        let mx = d.run_x[e];
        match edge.boundary {
            Some(i) => {
                let (bx, by) = sn.boundary_at(i);
                let drop = by + BOUNDARY_R + 12;
                pts.extend([(bx, by + BOUNDARY_R), (bx, drop), (mx, drop)]);
            }
            None => pts.extend([(sn.x + sn.hw, sn.y), (mx, sn.y)]),
        }
        // A flow over several columns whose target's row holds a shape on the way
        // would run through it: it runs along the top of the row instead and drops
        // in just before the target.
        let blocked =
            d.nodes.iter().any(|n| n.band == tn.band && n.row == tn.row && n.layer > sn.layer && n.layer < tn.layer);
        if blocked {
            let top = d.bands[tn.band].y + tn.row as i32 * ROW_H + 6 + 4 * (e % 3) as i32;
            let rx = tn.x - tn.hw - 14;
            pts.extend([(mx, top), (rx, top), (rx, tn.y), (tn.x - tn.hw, tn.y)]);
            label = (mx + 5, top + 11, "start");
        } else {
            pts.extend([(mx, tn.y), (tn.x - tn.hw, tn.y)]);
            label = (mx + 5, tn.y - 5, "start");
        }
    } else {
        let start = match edge.boundary {
            Some(i) => {
                let (bx, by) = sn.boundary_at(i);
                (bx, by + BOUNDARY_R)
            }
            None if sn.shape.is_box() => (sn.x - sn.hw / 2, sn.y + sn.hh),
            None => (sn.x, sn.y + sn.hh),
        };
        let end = (tn.x, tn.y + tn.hh);
        let channel = start.1.max(end.1) + 18 + 6 * (k % 3) as i32;
        pts.extend([start, (start.0, channel), (end.0, channel), end]);
        label = ((start.0 + end.0) / 2, channel - 4, "middle");
    }
    (simplify(pts), label)
}

/// Without repeated points and without middle points of straight runs.
fn simplify(mut pts: Vec<(i32, i32)>) -> Vec<(i32, i32)> {
    pts.dedup();
    let mut out: Vec<(i32, i32)> = Vec::with_capacity(pts.len());
    for p in pts {
        if out.len() >= 2 {
            let (a, b) = (out[out.len() - 2], out[out.len() - 1]);
            if (a.0 == b.0 && b.0 == p.0) || (a.1 == b.1 && b.1 == p.1) {
                out.pop();
            }
        }
        out.push(p);
    }
    out
}

fn edge_svg(s: &mut String, labels: &mut String, d: &Diagram, e: usize, hl: &Highlight) {
    let edge = &d.edges[e];
    let (from, to) = (&d.nodes[edge.from], &d.nodes[edge.to]);
    let (pts, (x, y, anchor)) = route_and_label(d, e);
    let taken = hl.taken(&from.id, &to.id, edge.style);
    let (color, width, marker) = if taken { (VISITED, 2.0, "nagare-arrow-taken") } else { (INK, 1.2, "nagare-arrow") };
    let dash = match edge.style {
        EdgeStyle::SendBack => " stroke-dasharray=\"6 4\"",
        _ => "",
    };
    let class = match edge.style {
        EdgeStyle::Normal => "edge",
        EdgeStyle::Default => "edge default",
        EdgeStyle::SendBack => "edge send-back",
        EdgeStyle::Boundary => "edge boundary",
    };
    let path: Vec<String> =
        pts.iter().enumerate().map(|(i, (x, y))| format!("{}{x},{y}", if i == 0 { "M" } else { " L" })).collect();
    let _ = writeln!(
        s,
        "<path class=\"{class}{}\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{}\"{dash} marker-end=\"url(#{marker})\"/>",
        if taken { " taken" } else { "" },
        xml(&from.id),
        xml(&to.id),
        path.concat(),
        n(width)
    );
    if edge.style == EdgeStyle::Default && !d.back[e] {
        // The default flow's slash, just after it leaves the gateway.
        let (x, y) = pts[0];
        let _ = writeln!(
            s,
            "<path d=\"M{},{} L{},{}\" stroke=\"{color}\" stroke-width=\"1.5\"/>",
            x + 5,
            y + 5,
            x + 11,
            y - 5
        );
    }
    let Some(label) = edge.label.as_deref() else { return };
    let label = clip(label, LABEL_SIZE, LABEL_MAX as f64);
    let _ = writeln!(
        labels,
        "<text class=\"edge-label\" x=\"{x}\" y=\"{y}\" text-anchor=\"{anchor}\" font-size=\"{}\" fill=\"{}\" stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>",
        n(LABEL_SIZE),
        if taken { VISITED } else { "#444444" },
        xml(&label)
    );
}

fn node_svg(s: &mut String, p: &Placed, hl: &Highlight) {
    let paint = paint(hl, &p.id);
    let mut class = format!("node {}", p.shape.class());
    if hl.visited.contains(&p.id) {
        class.push_str(" visited");
    }
    if hl.current.contains(&p.id) {
        class.push_str(" current");
    }
    let _ = write!(s, "<g class=\"{class}\" data-node=\"{}\"><title>{}</title>", xml(&p.id), xml(&p.id));
    let (x, y) = (p.x as f64, p.y as f64);
    let (st, fi, sw) = (paint.stroke, paint.fill, n(paint.width));
    match &p.shape {
        Shape::Task(_) | Shape::Other(_) => {
            let rx = if matches!(p.shape, Shape::Task(_)) { 10 } else { 0 };
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"{rx}\" fill=\"{fi}\" stroke=\"{st}\" stroke-width=\"{sw}\"/>",
                p.x - p.hw,
                p.y - p.hh,
                2 * p.hw,
                2 * p.hh
            );
            let (mx, my) = (x - p.hw as f64 + 6.0, y - p.hh as f64 + 5.0);
            match &p.shape {
                Shape::Task(TaskType::User) => user_marker(s, mx, my),
                Shape::Task(TaskType::Service) => service_marker(s, mx, my),
                Shape::Task(TaskType::Script) => script_marker(s, mx, my),
                Shape::Other(kind) => {
                    let _ = write!(
                        s,
                        "<text x=\"{}\" y=\"{}\" font-size=\"9\" fill=\"#666666\">{}</text>",
                        n(mx),
                        n(my + 8.0),
                        xml(kind)
                    );
                }
                _ => {}
            }
            // Narrower than the box: the type marker sits in the top left corner.
            // Two lines, a little higher, over a multi-instance marker.
            let (most, lift) = if p.multi.is_some() { (2, 6.0) } else { (3, 0.0) };
            let lines = wrap(&p.label, 12.0, (2 * p.hw - 32) as f64, most);
            text_lines(s, &lines, x, y + 7.0 - lift - (lines.len() as f64 - 1.0) * 7.0, 12.0, 14.0);
        }
        Shape::Start { icon } => {
            circle(s, x, y, p.hw as f64, fi, st, 1.5, "");
            if let Some(icon) = icon {
                icon_svg(s, *icon, x, y, 10.0);
            }
        }
        Shape::End { terminate, error } => {
            circle(s, x, y, p.hw as f64 - 1.5, fi, st, 4.0, "");
            if *terminate {
                circle(s, x, y, 9.0, st, st, 1.0, "");
            }
            if *error {
                icon_svg(s, Icon::Error, x, y, 10.0);
            }
        }
        Shape::Catch(icon) => {
            circle(s, x, y, p.hw as f64, fi, st, 1.5, "");
            circle(s, x, y, p.hw as f64 - 4.0, "none", st, 1.2, "");
            icon_svg(s, *icon, x, y, 9.0);
        }
        Shape::Gateway(mark) => {
            let r = p.hw as f64;
            let _ = write!(
                s,
                "<path d=\"M{},{} L{},{} L{},{} L{},{} z\" fill=\"{fi}\" stroke=\"{st}\" stroke-width=\"{sw}\"/>",
                n(x),
                n(y - r),
                n(x + r),
                n(y),
                n(x),
                n(y + r),
                n(x - r),
                n(y)
            );
            gateway_mark(s, *mark, x, y, st);
        }
    }
    if let Some(sequential) = p.multi {
        multi_marker(s, x, y + p.hh as f64 - 12.0, sequential, st);
    }
    for (i, b) in p.boundaries.iter().enumerate() {
        let (bx, by) = p.boundary_at(i);
        let dash = if b.interrupting { "" } else { " stroke-dasharray=\"3 2\"" };
        let r = BOUNDARY_R as f64;
        circle(s, bx as f64, by as f64, r, "#ffffff", st, 1.2, dash);
        circle(s, bx as f64, by as f64, r - 2.5, "none", st, 1.0, dash);
        icon_svg(s, b.icon, bx as f64, by as f64, 4.5);
    }
    if !p.shape.is_box() {
        let lines = wrap(&p.label, 11.0, 120.0, 2);
        let below = if p.boundaries.is_empty() { 14.0 } else { 14.0 + 2.0 * BOUNDARY_R as f64 };
        text_lines(s, &lines, x, y + p.hh as f64 + below, 11.0, 13.0);
    }
    s.push_str("</g>\n");
}

#[allow(clippy::too_many_arguments)]
fn circle(s: &mut String, x: f64, y: f64, r: f64, fill: &str, stroke: &str, width: f64, extra: &str) {
    let _ = write!(
        s,
        "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"{}\"{extra}/>",
        n(x),
        n(y),
        n(r),
        n(width)
    );
}

fn text_lines(s: &mut String, lines: &[String], x: f64, first_y: f64, size: f64, step: f64) {
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{}\" fill=\"{INK}\">",
        n(x),
        n(first_y),
        n(size)
    );
    for (i, line) in lines.iter().enumerate() {
        if i == 0 {
            let _ = write!(s, "<tspan x=\"{}\">{}</tspan>", n(x), xml(line));
        } else {
            let _ = write!(s, "<tspan x=\"{}\" dy=\"{}\">{}</tspan>", n(x), n(step), xml(line));
        }
    }
    s.push_str("</text>");
}

fn icon_svg(s: &mut String, icon: Icon, x: f64, y: f64, r: f64) {
    match icon {
        Icon::Timer => {
            let _ = write!(
                s,
                "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"#ffffff\" stroke=\"{INK}\" stroke-width=\"1\"/><path d=\"M{},{} L{},{} L{},{}\" fill=\"none\" stroke=\"{INK}\" stroke-width=\"1\"/>",
                n(x),
                n(y),
                n(r),
                n(x),
                n(y - r * 0.75),
                n(x),
                n(y),
                n(x + r * 0.55),
                n(y)
            );
        }
        Icon::Message => {
            let (w, h) = (r * 1.1, r * 0.75);
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#ffffff\" stroke=\"{INK}\" stroke-width=\"1\"/><path d=\"M{},{} L{},{} L{},{}\" fill=\"none\" stroke=\"{INK}\" stroke-width=\"1\"/>",
                n(x - w),
                n(y - h),
                n(2.0 * w),
                n(2.0 * h),
                n(x - w),
                n(y - h),
                n(x),
                n(y + h * 0.2),
                n(x + w),
                n(y - h)
            );
        }
        Icon::Error => {
            let p = [(-0.5, 0.8), (-0.2, -0.6), (0.1, 0.1), (0.5, -0.8), (0.2, 0.6), (-0.1, -0.1)];
            let pts: Vec<String> = p.iter().map(|(dx, dy)| format!("{},{}", n(x + dx * r), n(y + dy * r))).collect();
            let _ = write!(
                s,
                "<polygon points=\"{}\" fill=\"none\" stroke=\"{INK}\" stroke-width=\"1\" stroke-linejoin=\"round\"/>",
                pts.join(" ")
            );
        }
    }
}

fn gateway_mark(s: &mut String, mark: GatewayMark, x: f64, y: f64, stroke: &str) {
    match mark {
        GatewayMark::Exclusive => {
            let d = 7.0;
            let _ = write!(
                s,
                "<path d=\"M{},{} L{},{} M{},{} L{},{}\" stroke=\"{stroke}\" stroke-width=\"3\" stroke-linecap=\"round\"/>",
                n(x - d),
                n(y - d),
                n(x + d),
                n(y + d),
                n(x + d),
                n(y - d),
                n(x - d),
                n(y + d)
            );
        }
        GatewayMark::Parallel => {
            let d = 10.0;
            let _ = write!(
                s,
                "<path d=\"M{},{} L{},{} M{},{} L{},{}\" stroke=\"{stroke}\" stroke-width=\"3\" stroke-linecap=\"round\"/>",
                n(x),
                n(y - d),
                n(x),
                n(y + d),
                n(x - d),
                n(y),
                n(x + d),
                n(y)
            );
        }
        GatewayMark::Inclusive => circle(s, x, y, 9.0, "none", stroke, 3.0, ""),
        GatewayMark::EventBased => {
            circle(s, x, y, 12.0, "none", stroke, 1.0, "");
            circle(s, x, y, 9.5, "none", stroke, 1.0, "");
            let pts: Vec<String> = (0..5)
                .map(|i| {
                    let a = -std::f64::consts::FRAC_PI_2 + i as f64 * 2.0 * std::f64::consts::PI / 5.0;
                    format!("{},{}", n(x + 6.0 * a.cos()), n(y + 6.0 * a.sin()))
                })
                .collect();
            let _ = write!(
                s,
                "<polygon points=\"{}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"1.2\"/>",
                pts.join(" ")
            );
        }
    }
}

/// BPMN's multi-instance marker at the bottom middle of a task: three bars,
/// standing for parallel, lying for sequential.
fn multi_marker(s: &mut String, x: f64, y: f64, sequential: bool, stroke: &str) {
    let mut d = String::new();
    for i in -1..=1 {
        let o = i as f64 * 3.5;
        if sequential {
            let _ = write!(d, "M{},{} h10 ", n(x - 5.0), n(y + o));
        } else {
            let _ = write!(d, "M{},{} v10 ", n(x + o), n(y - 5.0));
        }
    }
    let _ = write!(s, "<path class=\"multi\" d=\"{}\" stroke=\"{stroke}\" stroke-width=\"1.5\"/>", d.trim_end());
}

fn user_marker(s: &mut String, x: f64, y: f64) {
    let _ = write!(
        s,
        "<g class=\"marker\"><circle cx=\"{}\" cy=\"{}\" r=\"2.8\" fill=\"none\" stroke=\"{INK}\" stroke-width=\"1\"/><path d=\"M{},{} Q{},{} {},{} z\" fill=\"none\" stroke=\"{INK}\" stroke-width=\"1\"/></g>",
        n(x + 6.0),
        n(y + 3.5),
        n(x + 1.0),
        n(y + 13.0),
        n(x + 6.0),
        n(y + 3.0),
        n(x + 11.0),
        n(y + 13.0)
    );
}

fn service_marker(s: &mut String, x: f64, y: f64) {
    let _ = write!(
        s,
        "<g class=\"marker\"><circle cx=\"{c}\" cy=\"{d}\" r=\"4.5\" fill=\"none\" stroke=\"{INK}\" stroke-width=\"2.5\" stroke-dasharray=\"2 1.5\"/><circle cx=\"{c}\" cy=\"{d}\" r=\"1.8\" fill=\"none\" stroke=\"{INK}\" stroke-width=\"1\"/></g>",
        c = n(x + 6.0),
        d = n(y + 7.0)
    );
}

fn script_marker(s: &mut String, x: f64, y: f64) {
    let _ = write!(
        s,
        "<g class=\"marker\"><rect x=\"{}\" y=\"{}\" width=\"10\" height=\"12\" fill=\"none\" stroke=\"{INK}\" stroke-width=\"1\"/><path d=\"M{},{} h6 M{},{} h6 M{},{} h6\" stroke=\"{INK}\" stroke-width=\"1\"/></g>",
        n(x + 1.0),
        n(y + 1.0),
        n(x + 3.0),
        n(y + 4.5),
        n(x + 3.0),
        n(y + 7.5),
        n(x + 3.0),
        n(y + 10.5)
    );
}
