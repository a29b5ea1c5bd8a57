//! One flow node: its kind, references, expressions and boundaries.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn compile_node(
    cx: &mut Cx,
    id: &str,
    n: &NodeDef,
    lanes: &IndexMap<String, Lane>,
    nm: &Names,
    resolve: &impl Fn(&mut Cx, &str, &[&str], &str) -> Option<NodeIx>,
    opts: &CompileOptions,
) -> Option<NodeKind> {
    let (vars, names, names_with_result) = (nm.vars, nm.names, nm.with_result);
    let here = ["nodes", id];
    let present: Vec<&str> = KIND_KEYS
        .iter()
        .copied()
        .filter(|k| match *k {
            "user_task" => n.user_task.is_some(),
            "service" => n.service.is_some(),
            "script" => n.script.is_some(),
            "exclusive" => n.exclusive.is_some(),
            "inclusive" => n.inclusive.is_some(),
            "parallel" => n.parallel.is_some(),
            "event_based" => n.event_based.is_some(),
            "join" => n.join.is_some(),
            "timer" => n.timer.is_some(),
            "message" => n.message.is_some(),
            "end" => n.end.is_some(),
            _ => false,
        })
        .collect();
    let kind = match present.as_slice() {
        [k] => *k,
        [] => {
            if let Some((key, loc)) = empty_kind_key(cx, &here) {
                cx.err("empty-kind", loc, format!("`{key}:` of node `{id}` is empty"), empty_kind_hint(key));
                return None;
            }
            cx.err(
                "missing-kind",
                cx.key_loc(&here),
                format!("node `{id}` does not say what it is"),
                "add one of: user_task, service, script, exclusive, inclusive, parallel, event_based, join, timer, message, end",
            );
            return None;
        }
        many => {
            cx.err(
                "several-kinds",
                cx.key_loc(&here),
                format!("node `{id}` is at once {}", many.join(" and ")),
                "a node is exactly one kind: split it into two nodes joined by `next`",
            );
            return None;
        }
    };

    // Keys that belong to other kinds.
    let fields: &[(&str, bool, &[&str])] = &[
        ("form", n.form.is_some(), &["user_task"]),
        ("due", n.due.is_some(), &["user_task"]),
        ("assignee", n.assignee.is_some(), &["user_task"]),
        ("send_back", n.send_back.is_some(), &["user_task"]),
        ("outcomes", n.outcomes.is_some(), &["user_task"]),
        ("rules", n.rules.is_some(), &["user_task"]),
        ("with", n.with.is_some(), &["service"]),
        ("set", n.set.is_some(), &["service", "message"]),
        ("retry", n.retry.is_some(), &["service"]),
        ("timeout", n.timeout.is_some(), &["service"]),
        ("default", n.default.is_some(), &["exclusive", "inclusive"]),
        ("key", n.key.is_some(), &["message"]),
        ("boundary", n.boundary.is_some(), &["user_task", "service", "parallel", "inclusive"]),
        ("lane", n.lane.is_some(), &["user_task", "service", "script"]),
        ("next", n.next.is_some(), &["user_task", "service", "script", "join", "timer", "message"]),
    ];
    let mut ok = true;
    for (field, set, kinds) in fields {
        if *set && !kinds.contains(&kind) {
            let hint = if *field == "next" && kind == "exclusive" {
                "an exclusive gateway routes with its branches and `default`".to_string()
            } else if *field == "next" && kind == "parallel" {
                "a parallel fork lists its branches: `parallel: [a, b]`".to_string()
            } else if *field == "next" && (kind == "inclusive" || kind == "event_based") {
                format!("an {kind} gateway routes with its branches")
            } else if *field == "next" && kind == "end" {
                "an end has no `next`".to_string()
            } else {
                format!("`{field}` belongs to {}; remove it here", kinds.join(" or "))
            };
            cx.err(
                "misplaced-key",
                cx.key_loc(&["nodes", id, field]),
                format!("`{field}` does not apply to a {kind} node (`{id}`)"),
                hint,
            );
            ok = false;
        }
    }

    if let Some(lane) = &n.lane {
        if !lanes.contains_key(lane) {
            cx.err(
                "unknown-lane",
                cx.loc(&["nodes", id, "lane"]),
                format!("unknown lane `{lane}`"),
                hint_for(lane, lanes.keys().map(String::as_str)),
            );
            ok = false;
        }
    }

    let next = |cx: &mut Cx| -> Option<NodeIx> {
        match &n.next {
            Some(t) => resolve(cx, t, &["nodes", id, "next"], "next"),
            None => {
                cx.err(
                    "missing-next",
                    cx.key_loc(&here),
                    format!("{kind} node `{id}` has no `next`"),
                    "add `next: <node id>` naming the step that follows",
                );
                None
            }
        }
    };

    let kind = match kind {
        "end" => match &n.end {
            Some(Some(EndDef::Error(e))) => {
                if e.error.trim().is_empty() || e.error == "any" {
                    cx.err(
                        "bad-error",
                        cx.loc(&["nodes", id, "end", "error"]),
                        format!("`{}` cannot be thrown as an error code", e.error),
                        "write the code a boundary catches, e.g. `end: { error: 書類不備 }`",
                    );
                    return None;
                }
                NodeKind::ErrorEnd { code: e.error.clone(), message: e.message.clone() }
            }
            other => NodeKind::End { terminate: matches!(other, Some(Some(EndDef::Kind(EndKind::Terminate)))) },
        },
        "timer" => {
            let when = compile_timer(cx, &["nodes", id, "timer"], n.timer.as_ref()?, nm, false);
            let next = next(cx);
            NodeKind::TimerCatch { when: when?, next: next? }
        }
        "message" => {
            let name = n.message.as_deref().unwrap_or_default();
            let message = compile_message(cx, &["nodes", id, "message"], name, n.key.as_ref(), n.set.as_ref(), nm);
            let next = next(cx);
            NodeKind::MessageCatch { message: message?, next: next? }
        }
        "event_based" => {
            let list = n.event_based.as_deref().unwrap_or_default();
            if list.is_empty() {
                cx.err(
                    "no-outgoing",
                    cx.key_loc(&here),
                    format!("event-based gateway `{id}` has no branches"),
                    "list the events: `- { message: 返信, next: a }` and `- { timer: 7d, next: b }`",
                );
                return None;
            }
            let mut branches = Vec::new();
            for (i, b) in list.iter().enumerate() {
                let i = i.to_string();
                let at = |k: &'static str| -> [&str; 5] { ["nodes", id, "event_based", i.as_str(), k] };
                let target = resolve(cx, &b.next, &at("next"), "next");
                let trigger = match (&b.message, &b.timer) {
                    (Some(name), None) => compile_message(cx, &at("message"), name, b.key.as_ref(), b.set.as_ref(), nm)
                        .map(EventTrigger::Message),
                    (None, Some(t)) => {
                        for (key, set) in [("key", b.key.is_some()), ("set", b.set.is_some())] {
                            if set {
                                cx.err(
                                    "misplaced-key",
                                    cx.key_loc(&at(key)),
                                    format!("`{key}` applies to message branches, not timers"),
                                    "remove it",
                                );
                                ok = false;
                            }
                        }
                        compile_timer(cx, &at("timer"), t, nm, false).map(EventTrigger::Timer)
                    }
                    _ => {
                        cx.err(
                            "bad-event",
                            cx.key_loc(&["nodes", id, "event_based", i.as_str()]),
                            "an event-based branch needs exactly one of `message` and `timer`".into(),
                            "write `- { message: 返信, key: 番号, next: a }` or `- { timer: 7d, next: b }`",
                        );
                        None
                    }
                };
                match (trigger, target) {
                    (Some(t), Some(n)) => branches.push((t, n)),
                    _ => ok = false,
                }
            }
            NodeKind::EventBased { branches }
        }
        "script" => {
            let src = n.script.as_deref().unwrap_or_default();
            let script = cx.compile_expr(&["nodes", id, "script"], src, names);
            let next = next(cx);
            NodeKind::Script { script: script?, next: next? }
        }
        "user_task" => {
            if n.lane.is_none() {
                cx.err(
                    "missing-lane",
                    cx.key_loc(&here),
                    format!("user task `{id}` has no lane, so nobody could work it"),
                    format!(
                        "add `lane: <lane id>`; lanes: {}",
                        lanes.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                    ),
                );
                ok = false;
            }
            let mut form = Vec::new();
            for (var, mode) in n.form.iter().flatten() {
                if vars.contains_key(var) {
                    form.push(FormField { var: var.clone(), mode: *mode });
                } else {
                    cx.err(
                        "undeclared-variable",
                        cx.key_loc(&["nodes", id, "form", var]),
                        format!("form field `{var}` is not a declared variable"),
                        undeclared_hint(var, names),
                    );
                    ok = false;
                }
            }
            let due = match &n.due {
                Some(src) => Some(cx.compile_expr(&["nodes", id, "due"], src, names)?),
                None => None,
            };
            let assignee = match &n.assignee {
                Some(src) => Some(cx.compile_expr(&["nodes", id, "assignee"], src, names)?),
                None => None,
            };
            let send_back = match &n.send_back {
                Some(t) => Some(resolve(cx, t, &["nodes", id, "send_back"], "send_back")?),
                None => None,
            };
            let mut outcomes = Vec::new();
            for (name, t) in n.outcomes.iter().flatten() {
                if name == "next" || name == "send_back" {
                    cx.err(
                        "reserved-outcome",
                        cx.key_loc(&["nodes", id, "outcomes", name]),
                        format!("outcome name `{name}` is reserved"),
                        "pick another name, e.g. `approve` or `reject`",
                    );
                    ok = false;
                }
                outcomes.push((name.clone(), resolve(cx, t, &["nodes", id, "outcomes", name], "outcomes")?));
            }
            let boundary =
                compile_boundary(cx, id, n.boundary.as_deref().unwrap_or_default(), true, due.is_some(), nm, resolve);
            let rules =
                super::compile_rules(cx, &["nodes", id, "rules"], n.rules.as_deref().unwrap_or_default(), vars, names);
            let next = next(cx)?;
            NodeKind::UserTask(UserTaskSpec {
                rules: rules?,
                title: n.user_task.clone().unwrap_or_default(),
                form,
                due,
                assignee,
                send_back,
                outcomes,
                next,
                boundary: boundary?,
            })
        }
        "service" => {
            let connector = n.service.clone().unwrap_or_default();
            if let Some(known) = &opts.connectors {
                if !known.contains(&connector) {
                    cx.err(
                        "unknown-connector",
                        cx.loc(&["nodes", id, "service"]),
                        format!("unknown connector `{connector}`"),
                        hint_for(&connector, known.iter().map(String::as_str)),
                    );
                    ok = false;
                }
            }
            let mut with = Vec::new();
            for (k, v) in n.with.iter().flatten() {
                match v {
                    serde_json::Value::String(src) => {
                        if let Some(e) = cx.compile_expr(&["nodes", id, "with", k], src, names) {
                            with.push((k.clone(), Input::Expr(e)));
                        } else {
                            ok = false;
                        }
                    }
                    other => with.push((k.clone(), Input::Literal(other.clone()))),
                }
            }
            if let (Some(check), Some(inputs)) = (&opts.input_check, &n.with) {
                let written = serde_json::Value::Object(inputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
                for issue in (check.0)(&connector, &written) {
                    let mut path = vec!["nodes", id, "with"];
                    path.extend(issue.path.iter().map(String::as_str));
                    cx.err("bad-input", cx.loc(&path), issue.message, issue.hint);
                    ok = false;
                }
            }
            let mut set = Vec::new();
            for (var, src) in n.set.iter().flatten() {
                if !vars.contains_key(var) {
                    cx.err(
                        "undeclared-variable",
                        cx.key_loc(&["nodes", id, "set", var]),
                        format!("`set` writes `{var}`, which is not a declared variable"),
                        undeclared_hint(var, names),
                    );
                    ok = false;
                } else if let Some(e) = cx.compile_value_for(&["nodes", id, "set", var], src, names_with_result, var) {
                    set.push((var.clone(), e));
                } else {
                    ok = false;
                }
            }
            let mut retry = RetryPolicy::default();
            if let Some(r) = &n.retry {
                if let Some(a) = r.attempts {
                    if !(1..=100).contains(&a) {
                        cx.err(
                            "bad-retry",
                            cx.loc(&["nodes", id, "retry", "attempts"]),
                            format!("`attempts: {a}` is out of range"),
                            "use 1 to 100 (attempts in all, the first included)",
                        );
                        ok = false;
                    }
                    retry.attempts = a.clamp(1, 100);
                }
                if let Some(b) = &r.backoff {
                    let parsed = match b.split_once("..") {
                        Some((lo, hi)) => parse_duration(lo).and_then(|lo| Ok((lo, parse_duration(hi)?))),
                        None => parse_duration(b).map(|d| (d, d)),
                    };
                    match parsed {
                        Ok((lo, hi)) if lo <= hi => {
                            retry.min_backoff = lo;
                            retry.max_backoff = hi;
                        }
                        Ok(_) => {
                            cx.err(
                                "bad-retry",
                                cx.loc(&["nodes", id, "retry", "backoff"]),
                                format!("backoff `{b}` runs backwards"),
                                "write the shorter wait first: `2s..5m`",
                            );
                            ok = false;
                        }
                        Err(e) => {
                            cx.err(
                                "bad-retry",
                                cx.loc(&["nodes", id, "retry", "backoff"]),
                                e,
                                "write `2s..5m` (first wait .. longest wait)",
                            );
                            ok = false;
                        }
                    }
                }
            }
            let timeout = match &n.timeout {
                Some(t) => match parse_duration(t) {
                    Ok(d) => d,
                    Err(e) => {
                        cx.err("bad-duration", cx.loc(&["nodes", id, "timeout"]), e, "write e.g. `timeout: 30s`");
                        ok = false;
                        Duration::from_secs(30)
                    }
                },
                None => Duration::from_secs(30),
            };
            let boundary =
                compile_boundary(cx, id, n.boundary.as_deref().unwrap_or_default(), true, false, nm, resolve);
            let next = next(cx)?;
            NodeKind::Service(ServiceSpec { connector, with, set, retry, timeout, next, boundary: boundary? })
        }
        "exclusive" | "inclusive" => {
            let list = if kind == "exclusive" { n.exclusive.as_deref() } else { n.inclusive.as_deref() };
            let list = list.unwrap_or_default();
            let mut branches = Vec::new();
            for (i, b) in list.iter().enumerate() {
                let i = i.to_string();
                let cond = cx.compile_condition(&["nodes", id, kind, &i, "when"], &b.when, names);
                let target = resolve(cx, &b.next, &["nodes", id, kind, &i, "next"], "next");
                match (cond, target) {
                    (Some(c), Some(t)) => branches.push((c, t)),
                    _ => ok = false,
                }
            }
            let default = match &n.default {
                Some(t) => Some(resolve(cx, t, &["nodes", id, "default"], "default")?),
                None => None,
            };
            if list.is_empty() && default.is_none() {
                cx.err(
                    "no-outgoing",
                    cx.key_loc(&here),
                    format!("{kind} gateway `{id}` has no way out"),
                    "add branches `- when: <condition>` / `next: <node>` and a `default`",
                );
                return None;
            }
            if default.is_none() {
                cx.diags.push(
                    Diagnostic::warning("no-default", cx.key_loc(&here), format!("{kind} gateway `{id}` has no `default`; when no condition holds the instance stops with an incident"))
                        .with_hint("add `default: <node>` for the case no condition matches"),
                );
            }
            if kind == "exclusive" {
                NodeKind::Exclusive { branches, default }
            } else {
                let boundary =
                    compile_boundary(cx, id, n.boundary.as_deref().unwrap_or_default(), false, false, nm, resolve)?;
                NodeKind::Inclusive { branches, default, boundary }
            }
        }
        "parallel" => {
            let list = n.parallel.as_deref().unwrap_or_default();
            if list.is_empty() {
                cx.err(
                    "no-outgoing",
                    cx.key_loc(&here),
                    format!("parallel fork `{id}` has no branches"),
                    "list the branches: `parallel: [a, b]`",
                );
                return None;
            }
            let mut branches = Vec::new();
            for (i, t) in list.iter().enumerate() {
                branches.push(resolve(cx, t, &["nodes", id, "parallel", &i.to_string()], "parallel")?);
            }
            let boundary =
                compile_boundary(cx, id, n.boundary.as_deref().unwrap_or_default(), false, false, nm, resolve)?;
            NodeKind::Parallel { branches, boundary }
        }
        "join" => {
            let fork_id = n.join.as_deref().unwrap_or_default();
            let fork = resolve(cx, fork_id, &["nodes", id, "join"], "join")?;
            let next = next(cx)?;
            NodeKind::Join { fork, next }
        }
        _ => unreachable!("kind keys are listed above"),
    };
    ok.then_some(kind)
}

/// A kind key written with nothing after it (`exclusive:`): serde reads it as absent,
/// but the designer did say what the node is, so the finding names that key.
fn empty_kind_key(cx: &Cx, here: &[&str]) -> Option<(&'static str, Loc)> {
    let node = cx.map.node(here)?;
    KIND_KEYS.iter().copied().find_map(|k| match node.get(k)?.kind {
        YKind::Scalar(ref v, Style::Plain) if matches!(v.as_str(), "" | "~" | "null" | "Null" | "NULL") => {
            Some((k, node.key_loc(k)?))
        }
        _ => None,
    })
}

/// What a kind key needs after it, with an example to copy.
fn empty_kind_hint(key: &str) -> String {
    let body = match key {
        "exclusive" | "inclusive" => {
            "list the branches below it: `- when: 金額 >= 50000` / `  next: <node>`, and add `default: <node>`"
        }
        "parallel" => "list the branches: `parallel: [a, b]`",
        "event_based" => "list the events: `- { message: 返信, next: a }` and `- { timer: 7d, next: b }`",
        "join" => "name the fork it closes: `join: <parallel node id>`",
        "user_task" => "give the task a title: `user_task: 申請内容を確認する`",
        "service" => "name the connector: `service: http.request`",
        "script" => "write the script: `script: 'let 合計 = 金額 + 消費税;'`",
        "timer" => "say how long or until when: `timer: 3d` or `timer: { at: add_days(now, 1) }`",
        "message" => "name the message to wait for: `message: 返信`",
        _ => "write a body after the key",
    };
    format!("`{key}:` needs a body: {body}")
}
