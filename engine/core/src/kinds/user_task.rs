//! `user_task:` — work for a person: a task in the inbox of its lane's groups, with
//! a form, a due date, send-back, named outcomes and boundary events.

use super::route::Routing;
use crate::compile::for_kinds::*;
use crate::process::*;
use crate::runtime::step::for_kinds::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "user_task",
    summary: "A task for a person in the lane's groups: a form over declared variables, a due date, send-back and named outcomes.",
    body: "give the task a title: `user_task: 申請内容を確認する`",
    keys: &["lane", "next", "form", "due", "assignee", "candidates", "skip", "send_back", "outcomes", "rules", "priority", "boundary", "multi_instance", "approvers"],
    no_next: "",
    present: |n| n.user_task.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n, nm) = (nc.id, nc.n, nc.nm);
    if n.lane.is_none() {
        nc.cx.err(
            "missing-lane",
            nc.cx.key_loc(&["nodes", id]),
            format!("user task `{id}` has no lane, so nobody could work it"),
            format!(
                "add `lane: <lane id>`; lanes: {}",
                nc.lanes.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            ),
        );
        nc.ok = false;
    }
    let mut form = Vec::new();
    for (var, mode) in n.form.iter().flatten() {
        if nm.vars.contains_key(var) {
            form.push(FormField { var: var.clone(), mode: *mode });
        } else {
            nc.cx.err(
                "undeclared-variable",
                nc.cx.key_loc(&["nodes", id, "form", var]),
                format!("form field `{var}` is not a declared variable"),
                undeclared_hint(var, nm.names),
            );
            nc.ok = false;
        }
    }
    let due = match &n.due {
        Some(src) => {
            let src = due_shorthand(src).unwrap_or_else(|| src.clone());
            Some(nc.cx.compile_expr(&["nodes", id, "due"], &src, nm.names)?)
        }
        None => None,
    };
    let assignee = match &n.assignee {
        Some(src) => Some(nc.cx.compile_expr(&["nodes", id, "assignee"], src, nm.names)?),
        None => None,
    };
    let route = super::route::compile(nc);
    let send_back = match &n.send_back {
        Some(t) => Some(nc.resolve(t, &["nodes", id, "send_back"], "send_back")?),
        None => None,
    };
    let mut outcomes = Vec::new();
    for (name, t) in n.outcomes.iter().flatten() {
        if name == "next" || name == "send_back" {
            nc.cx.err(
                "reserved-outcome",
                nc.cx.key_loc(&["nodes", id, "outcomes", name]),
                format!("outcome name `{name}` is reserved"),
                "pick another name, e.g. `approve` or `reject`",
            );
            nc.ok = false;
        }
        outcomes.push((name.clone(), nc.resolve(t, &["nodes", id, "outcomes", name], "outcomes")?));
    }
    let priority = match &n.priority {
        Some(v) => Some(compile_priority(nc.cx, &["nodes", id, "priority"], v, nm.names, true)?),
        None => None,
    };
    let boundary = nc.boundary(true, due.is_some());
    let rules =
        compile_rules(nc.cx, &["nodes", id, "rules"], n.rules.as_deref().unwrap_or_default(), nm.vars, nm.names);
    let next = nc.next()?;
    Some(NodeKind::UserTask(UserTaskSpec {
        rules: rules?,
        title: n.user_task.clone().unwrap_or_default(),
        form,
        due,
        assignee,
        send_back,
        outcomes,
        next,
        boundary: boundary?,
        consensus: None,
        route: route?,
        priority,
    }))
}

/// Open the task (due date, boundary timers and message keys first: a failure
/// opens nothing), then arm its boundaries.
pub(crate) fn exec(run: &mut Run<'_>, mut token: Moving, node: &Node, spec: &UserTaskSpec) {
    let p = run.p;
    let here = Some(node.id.clone());
    let due = match &spec.due {
        None => None,
        Some(e) => match e.eval(&run.env()).map_err(|e| e.to_string()).and_then(|v| parse_due(&v, p.time_zone)) {
            Ok(d) => d,
            Err(msg) => return run.incident(token, format!("due `{}`: {msg}", e.source.trim()), None),
        },
    };
    let (assignee, candidates, fallback) = match super::route::resolve(run, &node.id, spec) {
        Routing::Open { assignee, candidates, fallback } => (assignee, candidates, fallback),
        Routing::Skip => return run.go(token, spec.next),
        Routing::Incident(msg) => return run.incident(token, msg, None),
    };
    let priority = match &spec.priority {
        None => crate::priority::DEFAULT,
        Some(pr) => match pr.eval(&run.env()) {
            Ok(p) => p,
            Err(msg) => return run.incident(token, msg, None),
        },
    };
    let armings = match run.prepare_boundaries(run.own_boundary(&token, node), due) {
        Ok(a) => a,
        Err(msg) => return run.incident(token, msg, None),
    };
    let seq = run.inst.next_seq();
    let task_id = format!("{}-{}", run.inst.id, seq);
    let lane = fallback.unwrap_or_else(|| node.lane.clone().unwrap_or_default());
    let groups = match candidates {
        Some(c) => c.iter().map(|u| crate::org::candidate_group(u)).collect(),
        None => p.lane_groups(&lane).to_vec(),
    };
    let task = Task {
        id: task_id.clone(),
        instance: run.inst.id,
        process: p.id.clone(),
        version: p.version,
        node: node.id.clone(),
        title: spec.title.clone(),
        groups,
        lane,
        status: TaskStatus::Open,
        assignee: assignee.clone(),
        created_at: run.now,
        due,
        completed_by: None,
        completed_at: None,
        outcome: None,
        item: run.item_of(&token, node),
        read_only: false,
        overdue: false,
        priority,
    };
    run.log(here.clone(), None, HistoryEvent::TaskOpened { task: task_id.clone() });
    if assignee.is_some() {
        run.log(here, None, HistoryEvent::TaskAssigned { task: task_id.clone(), to: assignee.clone() });
    }
    run.out.commands.push(Command::OpenTask(task));
    run.arm_token(&mut token, armings);
    run.park(token, Wait::Task { task: task_id, assignee });
}

/// `due: 3bd` / `2d` / `4h`: a span from when the task opens, short for
/// `add_business_days(now, 3)` (the end of the third business day, the process's
/// calendar and company days off included), `add_days(now, 2)`, `add_hours(now, 4)`.
/// Anything else is an expression.
fn due_shorthand(src: &str) -> Option<String> {
    let s = src.trim();
    let (digits, helper) = [("bd", "add_business_days"), ("d", "add_days"), ("h", "add_hours")]
        .into_iter()
        .find_map(|(unit, helper)| s.strip_suffix(unit).map(|n| (n, helper)))?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("{helper}(now, {digits})"))
}

#[cfg(test)]
mod due_tests {
    use super::due_shorthand;

    #[test]
    fn spans_in_due_are_short_for_the_date_helpers() {
        assert_eq!(due_shorthand("3bd").as_deref(), Some("add_business_days(now, 3)"));
        assert_eq!(due_shorthand(" 2d ").as_deref(), Some("add_days(now, 2)"));
        assert_eq!(due_shorthand("4h").as_deref(), Some("add_hours(now, 4)"));
        for expr in ["add_days(now, 2)", "bd", "d", "x3d", "1.5d", "期限", "123456d"] {
            assert_eq!(due_shorthand(expr), None, "{expr}");
        }
    }
}
