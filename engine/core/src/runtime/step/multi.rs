//! Multi-instance nodes: one run of the node per item of a list.
//!
//! The token arriving at the node becomes the *body*: it parks with
//! [`Wait::Scope`] (holding the node's boundary timers and messages) while *item* tokens run
//! the node's kind, each in a [`Frame`] with `body: true` and its own [`Locals`]
//! (the item and its index). An item is done when its token leaves the node
//! ([`Run::go`] and [`Run::apply_output`] call [`Run::item_done`]); its `output` is
//! stored at its position. When every item is done, or `complete_when` holds, the
//! unfinished items are withdrawn, `into` receives the outputs in item order and
//! the body moves on. An error from an item is caught by the node's boundaries
//! through the item's frame ([`Run::throw`]); a boundary timer fires on the body.
//! Either way the items finished so far keep their outputs in `into`.
//!
//! An embedded sub-process runs the same way: its body waits for one run (or one
//! per item), each run a frame with its locals, started at `<id>/start` and done
//! when its last token ends ([`Run::token_ended`]).

use super::*;
use crate::kinds::consensus;
use crate::process::{MultiSpec, Node, SubProcessSpec};

/// Whether `token` is an item of the multi-instance node it stands on.
pub(super) fn is_item(token: &Moving) -> bool {
    token.scope.last().is_some_and(|f| f.body && f.fork == token.node)
}

impl Run<'_> {
    /// A token arrives at multi-instance node `node`: evaluate the list, park the
    /// body, start the items (the first one only when sequential).
    pub(super) fn begin_items(&mut self, mut token: Moving, node: &Node, spec: &MultiSpec) {
        let items = match spec.for_each.eval(&self.env()) {
            Ok(Value::Array(items)) => items,
            Ok(other) => {
                let msg = format!("`for_each: {}` gave {}, not a list", spec.for_each.source.trim(), kind_of(&other));
                return self.incident(token, msg, None);
            }
            Err(e) => {
                let msg = format!("`for_each: {}` failed: {e}", spec.for_each.source.trim());
                return self.incident(token, msg, None);
            }
        };
        let items = match node.consensus() {
            Some(_) => match consensus::approvers(items) {
                Ok(items) => items,
                Err(msg) => return self.incident(token, format!("`approvers` of `{}`: {msg}", node.id), None),
            },
            None => items,
        };
        if let Some(msg) = node.consensus().and_then(|c| consensus::unreachable(c, items.len())) {
            return self.incident(token, format!("`approvers` of `{}`: {msg}", node.id), None);
        }
        if items.len() > spec.limit as usize {
            let msg = format!(
                "`for_each` gave {} items, more than the limit of {} for `{}`; raise `limit:` (at most {}) or split the list",
                items.len(),
                spec.limit,
                node.id,
                crate::process::MAX_ITEMS
            );
            return self.incident(token, msg, None);
        }
        let total = items.len() as u32;
        self.log(Some(node.id.clone()), None, HistoryEvent::ItemsStarted { total, sequential: spec.sequential });
        if total == 0 {
            if let Some(into) = &spec.into {
                self.set_vars([(into.clone(), Value::Array(Vec::new()))]);
            }
            self.log(Some(node.id.clone()), None, HistoryEvent::ItemsDone { done: 0, total: 0 });
            return match node.kind.next() {
                Some(next) => self.go(token, next),
                None => self.incident(token, format!("node `{}` has no way on", node.id), None),
            };
        }
        let armings = match self.prepare_boundaries(node.kind.boundary(), None) {
            Ok(a) => a,
            Err(msg) => return self.incident(token, msg, None),
        };
        let activation = self.inst.next_seq();
        let results = if spec.output.is_some() { vec![Value::Null; items.len()] } else { Vec::new() };
        let mut items = items.into_iter();
        let first: Vec<Value> =
            if spec.sequential { items.next().into_iter().collect() } else { items.by_ref().collect() };
        let pending: Vec<Value> = items.collect();
        self.inst.multis.push(Multi {
            activation,
            node: node.id.clone(),
            total,
            started: 0,
            done: 0,
            results,
            pending,
        });
        let scope = token.scope.clone();
        self.arm_token(&mut token, armings);
        self.park(token, Wait::Scope { activation });
        for item in first {
            self.start_item(&scope, node, spec, activation, item);
        }
    }

    /// Start the next item of `activation`: its token, its locals.
    fn start_item(&mut self, scope: &[Frame], node: &Node, spec: &MultiSpec, activation: u32, item: Value) {
        let Some(m) = self.inst.multis.iter_mut().find(|m| m.activation == activation) else { return };
        let index = m.started;
        m.started += 1;
        self.items_started += 1;
        let (total, branch) = (m.total, index as u16);
        let mut vars = Vars::new();
        vars.insert(spec.item.clone(), item);
        if let Some(name) = &spec.index {
            vars.insert(name.clone(), Value::from(index));
        }
        // An approver's decision and comment are theirs alone, not the last approver's.
        if let Some(c) = node.consensus() {
            for var in std::iter::once(&c.decision).chain(&c.comment) {
                vars.insert(var.clone(), Value::Null);
            }
        }
        self.inst.locals.push(Locals { activation, branch, vars });
        let mut frames = scope.to_vec();
        frames.push(Frame { fork: node.id.clone(), activation, branch, width: total as u16, body: true });
        let t = self.new_token(&node.id, frames);
        self.ready.push_back(t);
    }

    /// Item `token` left its node (or the last token of a sub-process run ended):
    /// keep its output, write the sub-process's `out`, start the next item
    /// (sequential), and end the body when all are done or `complete_when` holds.
    pub(super) fn item_done(&mut self, token: Moving, result: Option<&Value>) {
        let p = self.p;
        let frame = token.scope.last().cloned().expect("an item has its frame");
        let Some((_, node)) = p.node(&frame.fork) else {
            return self.incident(token, format!("node `{}` vanished", frame.fork), None);
        };
        let multi = node.multi.as_ref();
        self.enter(&token.scope);
        let output = match multi.and_then(|m| m.output.as_ref()) {
            None => None,
            Some(e) => match self.eval_extra(e, result.map(|r| ("result", r)).as_slice()) {
                Ok(v) => Some(v),
                Err(err) => {
                    let msg = format!("`output: {}` of item {} failed: {err}", e.source.trim(), frame.branch);
                    return self.incident(token, msg, result.cloned());
                }
            },
        };
        let mut outs = Vec::new();
        if let NodeKind::SubProcess(sub) = &node.kind {
            for (var, e) in &sub.outs {
                let checked = self.eval_extra(e, &[]).and_then(|v| match p.var(var) {
                    Some(spec) => spec.check(&v).map(|_| v),
                    None => Err(format!("`{var}` is not declared")),
                });
                match checked {
                    Ok(v) => outs.push((var.clone(), v)),
                    Err(err) => {
                        let msg = format!("`out: {var}` (`{}`) of `{}` failed: {err}", e.source.trim(), node.id);
                        return self.incident(token, msg, None);
                    }
                }
            }
        }
        let Some(mi) = self.inst.multis.iter().position(|m| m.activation == frame.activation) else {
            return self.incident(token, format!("the items of `{}` are no longer running", node.id), None);
        };
        // The item counts as done with its output from here on; the condition reads that.
        let m = &self.inst.multis[mi];
        let (done, total) = (m.done + 1, m.total);
        let mut results = m.results.clone();
        if let (Some(v), Some(slot)) = (output, results.get_mut(usize::from(frame.branch))) {
            *slot = v;
        }
        let outer = &token.scope[..token.scope.len() - 1];
        self.enter(outer);
        let stop = done == total
            || match multi.map_or(Ok(false), |spec| match node.consensus() {
                Some(c) => Ok(c.verdict(&results, total).is_some()),
                None => self.complete_when_holds(spec, &results, done, total),
            }) {
                Ok(b) => b,
                // The item stays unfinished: a retry runs it again.
                Err(msg) => return self.incident(token, msg, None),
            };
        let m = &mut self.inst.multis[mi];
        m.done = done;
        m.results = results;
        self.inst.locals.retain(|l| !l.is_of(&frame));
        self.set_vars(outs);
        if stop {
            return self.finish_items(frame.activation, node);
        }
        let m = &mut self.inst.multis[mi];
        if let (Some(spec), false) = (multi, m.pending.is_empty()) {
            if spec.sequential {
                let item = m.pending.remove(0);
                self.start_item(outer, node, spec, frame.activation, item);
            }
        }
    }

    /// Whether the early-completion condition holds with `results` after `done` items.
    fn complete_when_holds(&self, spec: &MultiSpec, results: &[Value], done: u32, total: u32) -> Result<bool, String> {
        let Some(cond) = &spec.complete_when else { return Ok(false) };
        let results = Value::Array(results.to_vec());
        let (done, total) = (Value::from(done), Value::from(total));
        let extra = [("results", &results), ("done", &done), ("total", &total)];
        match self.eval_extra(cond, &extra) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("`complete_when: {}` gave {other}, not true or false", cond.source.trim())),
            Err(e) => Err(format!("`complete_when: {}` failed: {e}", cond.source.trim())),
        }
    }

    /// All items of `activation` are done (or enough of them): withdraw the rest,
    /// collect the outputs and move the body on.
    fn finish_items(&mut self, activation: u32, node: &Node) {
        let Some(pos) = self.body_index(activation) else { return };
        // A consensus goes on along `next` or `rejected`, by its verdict.
        let decided = node.consensus().zip(self.inst.multis.iter().find(|m| m.activation == activation));
        let route = decided.map(|(c, m)| consensus::decide(c, &m.results, m.total));
        let body = self.inst.tokens.remove(pos);
        // The remaining items go; `end_items` writes `into` and the history line.
        self.release_wait(&body);
        let mut body = Moving::from(body);
        self.disarm_quietly(&mut body);
        if let Some((to, event)) = route {
            self.log(Some(node.id.clone()), None, event);
            if let Some(to) = to.or(node.kind.next()) {
                return self.go(body, to);
            }
        }
        match node.kind.next() {
            Some(next) => self.go(body, next),
            None => self.incident(body, format!("node `{}` has no way on", node.id), None),
        }
    }

    /// The items of `activation` end, whatever ended them (all done, the condition,
    /// a boundary, a cancel): unfinished ones are withdrawn, finished ones keep their
    /// output in `into`.
    pub(super) fn end_items(&mut self, activation: u32) {
        self.cancel_activation(activation);
        self.inst.locals.retain(|l| l.activation != activation);
        let Some(pos) = self.inst.multis.iter().position(|m| m.activation == activation) else { return };
        let m = self.inst.multis.remove(pos);
        let multi = self.p.node(&m.node).and_then(|(_, n)| n.multi.as_ref());
        if let Some(into) = multi.and_then(|s| s.into.clone()) {
            self.set_vars([(into, Value::Array(m.results))]);
        }
        let event = match multi {
            Some(_) => HistoryEvent::ItemsDone { done: m.done, total: m.total },
            None => HistoryEvent::SubProcessEnded,
        };
        self.log(Some(m.node.clone()), None, event);
    }

    /// Whether `token` is an item of the multi-instance node it stands on.
    pub(crate) fn is_item(&self, token: &Moving) -> bool {
        is_item(token)
    }

    /// A plain sub-process: park the body, start its one run at its own start.
    pub(crate) fn begin_scope(&mut self, mut token: Moving, node: &Node, spec: &SubProcessSpec) {
        let armings = match self.prepare_boundaries(node.kind.boundary(), None) {
            Ok(a) => a,
            Err(msg) => return self.incident(token, msg, None),
        };
        let vars = match self.run_locals(spec) {
            Ok(v) => v,
            Err(msg) => return self.incident(token, msg, None),
        };
        let activation = self.inst.next_seq();
        self.log(Some(node.id.clone()), None, HistoryEvent::SubProcessStarted);
        self.inst.multis.push(Multi {
            activation,
            node: node.id.clone(),
            total: 1,
            started: 1,
            done: 0,
            results: Vec::new(),
            pending: Vec::new(),
        });
        self.inst.locals.push(Locals { activation, branch: 0, vars });
        let mut frames = token.scope.clone();
        frames.push(Frame { fork: node.id.clone(), activation, branch: 0, width: 1, body: true });
        self.arm_token(&mut token, armings);
        self.park(token, Wait::Scope { activation });
        let inner = self.new_token(&self.p.nodes[spec.start].id, frames);
        self.ready.push_back(inner);
    }

    /// An item of a multi-instance sub-process enters its run: its locals get the
    /// declared ones and `in`, and it moves to the sub-process's own start.
    pub(crate) fn enter_run(&mut self, mut token: Moving, node: &Node, spec: &SubProcessSpec) {
        let vars = match self.run_locals(spec) {
            Ok(v) => v,
            Err(msg) => return self.incident(token, msg, None),
        };
        let Some(f) = token.scope.last() else { return self.incident(token, "an item without its frame".into(), None) };
        let (activation, branch) = (f.activation, f.branch);
        if let Some(l) = self.inst.locals.iter_mut().find(|l| l.activation == activation && l.branch == branch) {
            for (k, v) in vars {
                l.vars.entry(k).or_insert(v);
            }
        }
        let _ = node;
        token.node = self.p.nodes[spec.start].id.clone();
        self.ready.push_back(token);
    }

    /// A run's locals: each declared one at its default (or `null`), then `in`
    /// evaluated outside (type-checked).
    fn run_locals(&self, spec: &SubProcessSpec) -> Result<Vars, String> {
        let p = self.p;
        let mut vars = Vars::new();
        for name in &spec.locals {
            let default = p.local_vars.get(name).and_then(|s| s.default.clone()).unwrap_or(Value::Null);
            vars.insert(name.clone(), default);
        }
        for (var, e) in &spec.ins {
            let v =
                self.eval_extra(e, &[]).map_err(|err| format!("`in: {var}` (`{}`) failed: {err}", e.source.trim()))?;
            if let Some(s) = p.local_vars.get(var) {
                s.check(&v).map_err(|err| format!("`in: {var}`: {err}"))?;
            }
            vars.insert(var.clone(), v);
        }
        Ok(vars)
    }

    /// `end: terminate` inside a sub-process run: the run's other tokens end.
    pub(crate) fn cancel_run(&mut self, token: &Moving) {
        let Some(f) = token.scope.last().cloned() else { return };
        self.cancel_inside(|x| same_run(x, &f));
    }

    /// `token` ended inside a sub-process run: when nothing of the run is left
    /// (no token waiting or moving, no join collecting), the run is done.
    pub(crate) fn token_ended(&mut self, token: Moving) {
        let Some(f) = token.scope.last().cloned().filter(|f| f.body) else { return };
        let inside = |scope: &[Frame]| scope.iter().any(|x| same_run(x, &f));
        let busy = self.inst.tokens.iter().any(|t| inside(&t.scope))
            || self.ready.iter().any(|t| inside(&t.scope))
            || self.inst.joins.iter().any(|j| inside(&j.scope));
        if !busy {
            self.item_done(token, None);
        }
    }

    /// Remove the body token of `activation` (an error from an item was caught by the
    /// node's boundary): its timers are withdrawn, its items end.
    pub(super) fn drop_body(&mut self, activation: u32) {
        if let Some(pos) = self.body_index(activation) {
            let body = self.inst.tokens.remove(pos);
            self.release_wait(&body);
        }
    }

    /// The item a token runs for (shown on its task): the item of the innermost
    /// multi-instance node (a task, or a sub-process it is inside) it belongs to.
    pub(crate) fn item_of(&self, token: &Moving, _node: &Node) -> Option<Value> {
        token.scope.iter().rev().filter(|f| f.body).find_map(|f| {
            let spec = self.p.node(&f.fork)?.1.multi.as_ref()?;
            self.inst.locals_of(f)?.vars.get(&spec.item).cloned()
        })
    }

    /// The boundary events a token arms at `node`: none for an item of a
    /// multi-instance node (they are the body's).
    pub(crate) fn own_boundary<'n>(&self, token: &Moving, node: &'n Node) -> &'n [crate::process::Boundary] {
        if is_item(token) {
            &[]
        } else {
            node.kind.boundary()
        }
    }

    fn body_index(&self, activation: u32) -> Option<usize> {
        self.inst.tokens.iter().position(|t| matches!(t.wait, Wait::Scope { activation: a } if a == activation))
    }
}

/// Whether frames `a` and `b` are the same item or sub-process run.
fn same_run(a: &Frame, b: &Frame) -> bool {
    a.body && b.body && a.activation == b.activation && a.branch == b.branch
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::CompileOptions;
    use chrono::TimeZone;

    /// Regression: the step budget of one event (10,000) also counted the items a
    /// multi-instance node starts, so a list at the item limit stopped with an
    /// incident instead of starting every item.
    #[test]
    fn a_list_at_the_item_limit_starts_every_item_in_one_event() {
        let yaml = "id: p\nvariables:\n  items: { type: list }\n  ids: { type: list }\nstart: { next: each }\nnodes:\n  each:\n    service: x.add\n    with: { i: i }\n    multi_instance: { for_each: items, as: i, output: result, into: ids }\n    next: done\n  done: { end: }\n";
        let p = crate::load::load_str("p.yaml", yaml, &CompileOptions::default()).unwrap().process;
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
        let items: Vec<u32> = (0..crate::process::MAX_ITEMS).collect();
        let vars: Vars = [("items".to_string(), serde_json::json!(items))].into();
        let (inst, t) = start(&p, 1, vars, None, None, now).unwrap();
        assert!(inst.incidents.is_empty(), "{:?}", inst.incidents.first());
        let jobs = t.commands.iter().filter(|c| matches!(c, Command::ScheduleJob(_))).count();
        assert_eq!(jobs, crate::process::MAX_ITEMS as usize);
        assert_eq!(inst.tokens.len(), jobs + 1, "one token per item and the body");
        inst.check_invariants(&p).unwrap();
    }
}
