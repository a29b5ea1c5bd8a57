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
/// a fork. This is what makes "a join fires exactly once" hold at run time.
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
        // Boundary events: on a task, the same scope (interrupting) or a side path;
        // on a fork, the scope outside the fork.
        for b in nodes[i].kind.boundary() {
            let target_stack = if nodes[i].kind.is_fork() || matches!(nodes[i].kind, NodeKind::SubProcess(_)) {
                stack.clone()
            } else if matches!(b.trigger, BoundaryTrigger::Timer { interrupting: false, .. }) {
                let mut side = stack.clone();
                side.push(SIDE);
                side
            } else {
                stack.clone()
            };
            queue.push_back((b.next, target_stack));
        }
        match &nodes[i].kind {
            NodeKind::Parallel { .. } | NodeKind::Inclusive { .. } => {
                let mut inner = stack.clone();
                inner.push(i);
                for b in nodes[i].kind.flow_successors() {
                    queue.push_back((b, inner.clone()));
                }
            }
            NodeKind::SubProcess(sub) => {
                // Its run is a scope of its own; the body goes on outside.
                let mut inner = stack.clone();
                inner.push(i);
                queue.push_back((sub.start, inner));
                queue.push_back((sub.next, stack.clone()));
            }
            NodeKind::Join { fork, next } => {
                if stack.last() != Some(fork) {
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
                let mut outer = stack.clone();
                outer.pop();
                queue.push_back((*next, outer));
            }
            NodeKind::End { terminate: false }
                if !stack.is_empty()
                    && stack.last() != Some(&SIDE)
                    && !matches!(stack.last().map(|&f| &nodes[f].kind), Some(NodeKind::SubProcess(_))) =>
            {
                if !reported[i] {
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
            kind => {
                for s in kind.flow_successors() {
                    queue.push_back((s, stack.clone()));
                }
            }
        }
    }
    let _ = reached;
}
