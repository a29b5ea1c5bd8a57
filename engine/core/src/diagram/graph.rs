//! The process as a drawing sees it: one shape per node, one labelled edge per
//! flow. The only part of the diagram code that matches on [`NodeKind`]; a kind
//! added later and not taught here is drawn as a plain box named after its kind,
//! with its flows from [`NodeKind::flow_successors`] and [`NodeKind::boundary`].

use crate::process::{BoundaryTrigger, EventTrigger, NodeIx, NodeKind, Process, StartTrigger, TimerWhen};
use crate::schedule::Span;

/// The BPMN-like shape of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Thin circle; a clock or an envelope inside for timer and message starts.
    Start { icon: Option<Icon> },
    /// Thick circle; `terminate` fills it, `error` draws a bolt inside.
    End { terminate: bool, error: bool },
    /// Rounded rectangle with a small type marker in its corner.
    Task(TaskType),
    /// Diamond with its mark.
    Gateway(GatewayMark),
    /// Double circle with its icon (timer or message catch).
    Catch(Icon),
    /// A kind the diagram does not know: a plain rectangle, the kind key as marker.
    Other(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icon {
    Timer,
    Message,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskType {
    User,
    Service,
    Script,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayMark {
    /// Exclusive: X.
    Exclusive,
    /// Parallel: +.
    Parallel,
    /// Inclusive: O.
    Inclusive,
    /// Event-based: a pentagon in a double circle.
    EventBased,
}

impl Shape {
    /// Tasks and unknown kinds are boxes with the label inside; events and gateways
    /// are small, with the label below.
    pub fn is_box(&self) -> bool {
        matches!(self, Shape::Task(_) | Shape::Other(_))
    }

    /// The CSS class naming the shape (`task user`, `gateway exclusive` ...).
    pub fn class(&self) -> &'static str {
        match self {
            Shape::Start { .. } => "event start",
            Shape::End { .. } => "event end",
            Shape::Task(TaskType::User) => "task user",
            Shape::Task(TaskType::Service) => "task service",
            Shape::Task(TaskType::Script) => "task script",
            Shape::Gateway(GatewayMark::Exclusive) => "gateway exclusive",
            Shape::Gateway(GatewayMark::Parallel) => "gateway parallel",
            Shape::Gateway(GatewayMark::Inclusive) => "gateway inclusive",
            Shape::Gateway(GatewayMark::EventBased) => "gateway event-based",
            Shape::Catch(Icon::Timer) => "event catch timer",
            Shape::Catch(_) => "event catch message",
            Shape::Other(_) => "other",
        }
    }
}

/// A boundary event drawn on its task's lower edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundaryMark {
    pub icon: Icon,
    /// Non-interrupting timers are drawn dashed.
    pub interrupting: bool,
}

/// How an edge is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeStyle {
    /// A sequence flow.
    Normal,
    /// A gateway's default flow (a slash at its start).
    Default,
    /// A user task's send-back: dashed.
    SendBack,
    /// Out of a boundary event.
    Boundary,
}

/// One flow between two nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: NodeIx,
    pub to: NodeIx,
    /// The boundary event of `from` it leaves from (index into the node's marks).
    pub boundary: Option<usize>,
    pub label: Option<String>,
    pub style: EdgeStyle,
}

/// A node as drawn, before it is placed.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub label: String,
    pub lane: Option<String>,
    pub shape: Shape,
    pub boundaries: Vec<BoundaryMark>,
    /// Multi-instance: `Some(true)` one item after another (three bars lying),
    /// `Some(false)` all at once (three bars standing).
    pub multi: Option<bool>,
}

/// Shapes and edges of `p`, nodes in the process's order.
pub fn read(p: &Process) -> (Vec<Item>, Vec<Edge>) {
    let mut items = Vec::with_capacity(p.nodes.len());
    let mut edges = Vec::new();
    for (ix, node) in p.nodes.iter().enumerate() {
        let shape = shape(p, &node.kind);
        let mut flow = |to: NodeIx, label: Option<String>, style: EdgeStyle| {
            edges.push(Edge { from: ix, to, boundary: None, label, style });
        };
        match &node.kind {
            NodeKind::UserTask(u) => {
                flow(u.next, None, EdgeStyle::Normal);
                for (outcome, to) in &u.outcomes {
                    flow(*to, Some(outcome.clone()), EdgeStyle::Normal);
                }
                if let Some(to) = u.send_back {
                    flow(to, Some("差し戻し send back".to_string()), EdgeStyle::SendBack);
                }
                if let Some(c) = &u.consensus {
                    flow(c.rejected, Some(format!("否決 rejected (rule {})", c.rule.label())), EdgeStyle::Normal);
                }
            }
            NodeKind::Exclusive { branches, default } | NodeKind::Inclusive { branches, default, .. } => {
                for (when, to) in branches {
                    flow(*to, Some(when.source.trim().to_string()), EdgeStyle::Normal);
                }
                if let Some(to) = default {
                    flow(*to, Some("default".to_string()), EdgeStyle::Default);
                }
            }
            NodeKind::EventBased { branches } => {
                for (trigger, to) in branches {
                    let label = match trigger {
                        EventTrigger::Message(m) => format!("message {}", m.name),
                        EventTrigger::Timer(w) => format!("timer {}", timer_text(w)),
                    };
                    flow(*to, Some(label), EdgeStyle::Normal);
                }
            }
            other => {
                for to in other.flow_successors() {
                    flow(to, None, EdgeStyle::Normal);
                }
            }
        }
        let mut boundaries = Vec::new();
        for (i, b) in node.kind.boundary().iter().enumerate() {
            let (mark, label) = match &b.trigger {
                BoundaryTrigger::Timer { when, interrupting, every, .. } => {
                    let mut label = format!("timer {}", timer_text(when));
                    if let Some(every) = every {
                        label.push_str(&format!(", every {}", span_text(every)));
                    }
                    (BoundaryMark { icon: Icon::Timer, interrupting: *interrupting }, label)
                }
                BoundaryTrigger::Error { code } => (
                    BoundaryMark { icon: Icon::Error, interrupting: true },
                    format!("error {}", code.as_deref().unwrap_or("any")),
                ),
                // A trigger added later (message boundaries): drawn as a message
                // event until it gets its own arm here.
                #[allow(unreachable_patterns)]
                _ => (BoundaryMark { icon: Icon::Message, interrupting: true }, "event".to_string()),
            };
            boundaries.push(mark);
            edges.push(Edge {
                from: ix,
                to: b.next,
                boundary: Some(i),
                label: Some(label),
                style: EdgeStyle::Boundary,
            });
        }
        items.push(Item {
            id: node.id.clone(),
            label: node.label().to_string(),
            lane: node.lane.clone(),
            shape,
            boundaries,
            multi: node.multi.as_ref().map(|m| m.sequential),
        });
    }
    (items, edges)
}

fn shape(p: &Process, kind: &NodeKind) -> Shape {
    match kind {
        NodeKind::Start { trigger, .. } => Shape::Start {
            icon: match trigger {
                StartTrigger::None => None,
                StartTrigger::Timer { .. } => Some(Icon::Timer),
                StartTrigger::Message { .. } => Some(Icon::Message),
                #[allow(unreachable_patterns)]
                _ => None,
            },
        },
        NodeKind::End { terminate } => Shape::End { terminate: *terminate, error: false },
        NodeKind::ErrorEnd { .. } => Shape::End { terminate: false, error: true },
        NodeKind::UserTask(_) => Shape::Task(TaskType::User),
        NodeKind::Service(_) => Shape::Task(TaskType::Service),
        NodeKind::Script { .. } => Shape::Task(TaskType::Script),
        NodeKind::Exclusive { .. } => Shape::Gateway(GatewayMark::Exclusive),
        NodeKind::Inclusive { .. } => Shape::Gateway(GatewayMark::Inclusive),
        NodeKind::Parallel { .. } => Shape::Gateway(GatewayMark::Parallel),
        NodeKind::EventBased { .. } => Shape::Gateway(GatewayMark::EventBased),
        // A join merges what its fork split: the fork's mark.
        NodeKind::Join { fork, .. } => match p.nodes.get(*fork).map(|n| &n.kind) {
            Some(NodeKind::Inclusive { .. }) => Shape::Gateway(GatewayMark::Inclusive),
            _ => Shape::Gateway(GatewayMark::Parallel),
        },
        NodeKind::TimerCatch { .. } => Shape::Catch(Icon::Timer),
        NodeKind::MessageCatch { .. } => Shape::Catch(Icon::Message),
        #[allow(unreachable_patterns)]
        other => Shape::Other(other.name()),
    }
}

/// A timer as a short label: `3d`, `due`, the date, or the expression.
pub fn timer_text(w: &TimerWhen) -> String {
    match w {
        TimerWhen::After(span) => span_text(span),
        TimerWhen::Date(at) => at.format("%Y-%m-%d %H:%M UTC").to_string(),
        TimerWhen::At(expr) => expr.source.trim().to_string(),
        TimerWhen::Due => "due".to_string(),
    }
}

/// A span as a designer would write it: `1mo 3d`, `2h`, `90s`.
pub fn span_text(s: &Span) -> String {
    let mut parts = Vec::new();
    if s.months > 0 {
        parts.push(format!("{}mo", s.months));
    }
    if s.days > 0 {
        parts.push(format!("{}d", s.days));
    }
    let secs = s.exact.num_seconds();
    if secs > 0 || parts.is_empty() {
        parts.push(match secs {
            0 => format!("{}ms", s.exact.num_milliseconds()),
            s if s % 86_400 == 0 => format!("{}d", s / 86_400),
            s if s % 3_600 == 0 => format!("{}h", s / 3_600),
            s if s % 60 == 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
        });
    }
    parts.join(" ")
}
