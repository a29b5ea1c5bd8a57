//! Graph properties with petgraph: reachability, a way to an end, loops without a
//! wait state, parallel fork/join scopes.

use super::*;

/// Graph properties: every node reachable, an end reachable from every node, no
/// loop without a wait state, and parallel forks and joins properly nested.
pub(super) fn check_graph(cx: &mut Cx, nodes: &[Node]) {
    let mut g: DiGraph<NodeIx, ()> = DiGraph::with_capacity(nodes.len(), nodes.len() * 2);
    let ix: Vec<NodeIndex> = (0..nodes.len()).map(|i| g.add_node(i)).collect();
    for (i, n) in nodes.iter().enumerate() {
        for s in n.kind.successors() {
            g.update_edge(ix[i], ix[s], ());
        }
    }
    let node_path = |i: NodeIx| -> Vec<&str> {
        if i == 0 {
            vec!["start"]
        } else {
            vec!["nodes", nodes[i].id.as_str()]
        }
    };

    let mut reached = vec![false; nodes.len()];
    let mut bfs = Bfs::new(&g, ix[0]);
    while let Some(v) = bfs.next(&g) {
        reached[g[v]] = true;
    }
    for (i, n) in nodes.iter().enumerate() {
        if !reached[i] {
            cx.err(
                "unreachable",
                cx.key_loc(&node_path(i)),
                format!("node `{}` can never be reached: no flow leads to it", n.id),
                "add it as the `next` of an earlier step, or delete it",
            );
        }
    }

    let ends: Vec<NodeIx> = (0..nodes.len())
        .filter(|&i| matches!(nodes[i].kind, NodeKind::End { .. } | NodeKind::ErrorEnd { .. }))
        .collect();
    if ends.is_empty() {
        cx.err(
            "no-end",
            cx.loc(&["nodes"]),
            "the process has no end node".into(),
            "add `done: { end: }` and lead the last step to it",
        );
        return;
    }
    let mut finishes = vec![false; nodes.len()];
    let rev = Reversed(&g);
    for &e in &ends {
        let mut bfs = Bfs::new(rev, ix[e]);
        while let Some(v) = bfs.next(rev) {
            finishes[g[v]] = true;
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        if reached[i] && !finishes[i] {
            cx.err(
                "no-way-to-end",
                cx.key_loc(&node_path(i)),
                format!("from node `{}` no end can be reached", n.id),
                "every path must eventually lead to an `end` node; add a way out of this loop",
            );
        }
    }

    for scc in petgraph::algo::tarjan_scc(&g) {
        let is_loop = scc.len() > 1 || g.contains_edge(scc[0], scc[0]);
        if !is_loop || scc.iter().any(|v| nodes[g[*v]].kind.is_wait_state()) {
            continue;
        }
        let mut members: Vec<NodeIx> = scc.iter().map(|v| g[*v]).collect();
        members.sort_unstable();
        let names: Vec<&str> = members.iter().map(|&i| nodes[i].id.as_str()).collect();
        cx.err(
            "loop-without-wait",
            cx.key_loc(&node_path(members[0])),
            format!("the loop {} has no wait state and would spin forever", names.join(" → ")),
            "a loop must pass a wait state: a user_task, service, timer or message step (e.g. a send-back for correction)",
        );
    }

    check_parallel_scopes(cx, nodes, &reached, &node_path);
}

/// Tokens carry a stack of the forks they are inside. Every node must be reached with
/// one stack only, a join must close the innermost fork, and no token may end inside
/// a fork. This is what makes "a join fires exactly once" hold at run time. The
/// walk itself (which stack a token carries to each next node) is
/// [`scoped_successors`]; this function adds the findings.
///
/// Paths of non-interrupting boundary events run beside the flow: they are marked
/// with [`SIDE`] on the stack and must end on their own, without reaching a join.
/// Error ends are checked against the boundaries that could catch them.
pub(super) fn check_parallel_scopes<'n>(
    cx: &mut Cx,
    nodes: &'n [Node],
    reached: &[bool],
    node_path: &dyn Fn(NodeIx) -> Vec<&'n str>,
) {
    for n in nodes {
        if let NodeKind::Join { fork, .. } = n.kind {
            if !nodes[fork].kind.is_fork() {
                cx.err(
                    "join-mismatch",
                    cx.loc(&["nodes", &n.id, "join"]),
                    format!("join `{}` names `{}`, which is not a parallel or inclusive fork", n.id, nodes[fork].id),
                    "write the id of the `parallel:` or `inclusive:` node whose branches this join waits for",
                );
                return;
            }
        }
    }
    let mut scope: Vec<Option<Vec<NodeIx>>> = vec![None; nodes.len()];
    let mut queue = std::collections::VecDeque::from([(0usize, Vec::<NodeIx>::new())]);
    let mut reported = vec![false; nodes.len()];
    let describe = |s: &Vec<NodeIx>| match s.last() {
        Some(&SIDE) => "on the path of a non-interrupting boundary event".to_string(),
        Some(f) if matches!(nodes[*f].kind, NodeKind::SubProcess(_)) => {
            format!("inside sub-process `{}`", nodes[*f].id)
        }
        Some(f) => format!("inside fork `{}`", nodes[*f].id),
        None => "outside any fork".to_string(),
    };
    while let Some((i, stack)) = queue.pop_front() {
        match &scope[i] {
            Some(seen) if *seen == stack => continue,
            Some(seen) => {
                if !reported[i] {
                    reported[i] = true;
                    cx.err(
                        "join-mismatch",
                        cx.key_loc(&node_path(i)),
                        format!("node `{}` is reached both {} and {}", nodes[i].id, describe(seen), describe(&stack)),
                        "each parallel branch must end at the `join` of its own fork before flows merge, and the path of a non-interrupting boundary event must end at its own `end`",
                    );
                }
                continue;
            }
            None => scope[i] = Some(stack.clone()),
        }
        match &nodes[i].kind {
            NodeKind::Join { fork, .. } if stack.last() != Some(fork) => {
                if !reported[i] {
                    reported[i] = true;
                    let msg = match stack.last() {
                        Some(&SIDE) => format!(
                            "join `{}` is reached from the path of a non-interrupting boundary event",
                            nodes[i].id
                        ),
                        Some(f) => format!(
                            "join `{}` closes fork `{}`, but tokens arrive from inside fork `{}`",
                            nodes[i].id, nodes[*fork].id, nodes[*f].id
                        ),
                        None => format!(
                            "join `{}` closes fork `{}`, but tokens arrive from outside it",
                            nodes[i].id, nodes[*fork].id
                        ),
                    };
                    let hint = if stack.last() == Some(&SIDE) {
                        "a reminder path runs beside the task: end it with its own `end:`"
                    } else {
                        "a join must name the fork whose branches lead into it; close inner forks first"
                    };
                    cx.err("join-mismatch", cx.key_loc(&node_path(i)), msg, hint);
                }
                continue;
            }
            NodeKind::End { terminate: false }
                if !reported[i]
                    && !stack.is_empty()
                    && stack.last() != Some(&SIDE)
                    && !matches!(stack.last().map(|&f| &nodes[f].kind), Some(NodeKind::SubProcess(_))) =>
            {
                reported[i] = true;
                let f = stack.last().copied().unwrap_or_default();
                cx.err(
                    "join-mismatch",
                    cx.key_loc(&node_path(i)),
                    format!(
                        "a branch of fork `{}` reaches end `{}` without passing its join",
                        nodes[f].id, nodes[i].id
                    ),
                    format!(
                        "lead the branch into the `join: {}` node; use `end: terminate` to stop everything",
                        nodes[f].id
                    ),
                );
            }
            NodeKind::ErrorEnd { code, .. } => {
                let caught = stack
                    .iter()
                    .rev()
                    .filter(|&&f| f != SIDE)
                    .any(|&f| nodes[f].kind.boundary().iter().any(|b| b.catches(Some(code))));
                if !caught && !reported[i] {
                    reported[i] = true;
                    cx.diags.push(
                        Diagnostic::warning(
                            "uncaught-error",
                            cx.key_loc(&node_path(i)),
                            format!("no boundary catches error `{code}` thrown by `{}`; reaching it raises an incident", nodes[i].id),
                        )
                        .with_hint(format!(
                            "put the error end inside a fork with `boundary: [{{ error: {code}, next: <node> }}]`, or use a plain `end:`"
                        )),
                    );
                }
            }
            _ => {}
        }
        queue.extend(scoped_successors(i, &nodes[i].kind, &stack));
    }
    let _ = reached;
}

/// Where a token at node `i`, inside the forks and sub-processes of `stack`
/// (outermost first), can go next, each with the stack it carries there. The one
/// scope walk that both the compiler's check ([`check_parallel_scopes`]) and
/// migration's scope comparison (`migrate::compare::scope_stacks`) follow, so the
/// two cannot disagree on what a node's scope is.
///
/// - boundary events: the scope the task or fork is in (for a fork, the scope
///   outside it); the path of a non-interrupting timer or message gets [`SIDE`]
///   on top, as it runs beside the flow;
/// - a fork's branches: one frame deeper (the fork);
/// - a sub-process: its start one frame deeper (its run is a scope of its own),
///   its `next` in the same scope (the body goes on outside);
/// - a join's `next`: one frame out. The caller has made sure the join closes the
///   innermost frame (the compiler reports it when not, and a compiled process
///   always does);
/// - every other flow: the same scope.
///
/// Boundary targets come first, then the flows in [`NodeKind::flow_successors`]
/// order, so a breadth-first walk meets the nodes in the same order as before.
pub(crate) fn scoped_successors(i: NodeIx, kind: &NodeKind, stack: &[NodeIx]) -> Vec<(NodeIx, Vec<NodeIx>)> {
    let with = |frame: Option<NodeIx>| {
        let mut s = stack.to_vec();
        s.extend(frame);
        s
    };
    let mut next: Vec<(NodeIx, Vec<NodeIx>)> =
        kind.boundary().iter().map(|b| (b.next, with(b.is_side().then_some(SIDE)))).collect();
    match kind {
        NodeKind::Parallel { .. } | NodeKind::Inclusive { .. } => {
            next.extend(kind.flow_successors().into_iter().map(|b| (b, with(Some(i)))));
        }
        NodeKind::SubProcess(sub) => {
            next.push((sub.start, with(Some(i))));
            next.push((sub.next, stack.to_vec()));
        }
        NodeKind::Join { next: after, .. } => {
            next.push((*after, stack[..stack.len().saturating_sub(1)].to_vec()));
        }
        kind => next.extend(kind.flow_successors().into_iter().map(|s| (s, stack.to_vec()))),
    }
    next
}
