//! `join:` — closes the fork it names: waits for every branch of one activation.

use crate::compile::for_kinds::*;
use crate::process::*;
use crate::runtime::step::for_kinds::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "join",
    summary: "Closes the fork it names: waits for exactly the branches that fork started, then moves on once.",
    body: "name the fork it closes: `join: <parallel node id>`",
    keys: &["next"],
    no_next: "",
    present: |n| n.join.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n) = (nc.id, nc.n);
    let fork_id = n.join.as_deref().unwrap_or_default();
    let fork = nc.resolve(fork_id, &["nodes", id, "join"], "join")?;
    let next = nc.next()?;
    Some(NodeKind::Join { fork, next })
}

/// Count the token's branch in; the last branch of the activation moves on.
pub(crate) fn exec(run: &mut Run<'_>, mut token: Moving, node: &Node, fork: NodeIx, next: NodeIx) {
    let p = run.p;
    let here = Some(node.id.clone());
    let frame = match token.scope.pop() {
        Some(f) if f.fork == p.nodes[fork].id => f,
        other => {
            token.scope.extend(other);
            let msg = format!("token reached join `{}` from outside fork `{}`", node.id, p.nodes[fork].id);
            return run.incident(token, msg, None);
        }
    };
    let pos = match run.inst.joins.iter().position(|j| j.activation == frame.activation) {
        Some(pos) => pos,
        None => {
            run.inst.joins.push(JoinWait {
                activation: frame.activation,
                join: node.id.clone(),
                width: frame.width,
                arrived: Vec::new(),
                scope: token.scope.clone(),
            });
            run.inst.joins.len() - 1
        }
    };
    let jw = &mut run.inst.joins[pos];
    if jw.arrived.contains(&frame.branch) {
        token.scope.push(frame);
        let msg = format!("a second token of one branch reached join `{}`", node.id);
        return run.incident(token, msg, None);
    }
    jw.arrived.push(frame.branch);
    if jw.arrived.len() == usize::from(jw.width) {
        let jw = run.inst.joins.remove(pos);
        run.log(here, None, HistoryEvent::Joined);
        // Every branch is in: the fork's boundary timers and messages are withdrawn.
        run.unwatch(frame.activation);
        let t = run.new_token(&node.id, jw.scope);
        run.go(t, next);
    }
}
