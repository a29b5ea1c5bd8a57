//! `call:` — a call activity: starts an instance of another deployed process with
//! `in:` variables, waits for it to end, maps its final variables back with `out:`.
//!
//! The core stays pure: arriving, the token schedules a `call_start` job and waits
//! ([`Wait::Call`]); the engine carries the job out (child start and the parent's
//! record of the child in one commit), and tells the caller with
//! [`crate::runtime::Event::CallEnded`] from a `call_end` job written in the child's
//! final commit. An error end nothing inside the child catches ends the child and is
//! thrown here, at the call node.

use crate::compile::for_kinds::*;
use crate::expr::{Env, Vars};
use crate::process::*;
use crate::runtime::step::for_kinds::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "call",
    summary: "Starts an instance of another deployed process (`in:` its variables from ours), waits for it to end and maps its final variables back (`out:`); its uncaught error ends come out of this node to `boundary:`.",
    body: "the called process's id: `call: common-approval`",
    keys: &["next", "version", "in", "out", "key", "boundary", "multi_instance"],
    no_next: "",
    present: |n| n.call.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n, nm) = (nc.id, nc.n, nc.nm);
    let process = n.call.clone().unwrap_or_default().trim().to_string();
    if process.is_empty() {
        nc.cx.err(
            "empty-kind",
            nc.cx.loc(&["nodes", id, "call"]),
            format!("`call:` of node `{id}` names no process"),
            "write the called process's id: `call: common-approval`",
        );
        return None;
    }
    let callee = callee(nc, &process);
    let mut inputs = Vec::new();
    for (var, src) in n.call_in.iter().flatten() {
        if let Some(c) = &callee {
            if !c.vars.contains_key(var) {
                let names: Vec<&str> = c.vars.keys().map(String::as_str).collect();
                nc.cx.err(
                    "undeclared-variable",
                    nc.cx.key_loc(&["nodes", id, "in", var]),
                    format!("`in` writes `{var}`, which is not a declared variable of `{process}`"),
                    hint_for(var, names.iter().copied()),
                );
                nc.ok = false;
                continue;
            }
            // A bare variable passed on: its declared types must agree.
            if let (Some(ours), Some(theirs)) = (nm.vars.get(src.trim()), c.vars.get(var)) {
                mismatch(nc, &["nodes", id, "in", var], src.trim(), &ours.ty, var, &theirs.ty);
            }
        }
        match nc.cx.compile_expr(&["nodes", id, "in", var], src, nm.names) {
            Some(e) => inputs.push((var.clone(), e)),
            None => nc.ok = false,
        }
    }
    if let Some(c) = &callee {
        for (name, spec) in &c.vars {
            let given = n.call_in.as_ref().is_some_and(|m| m.contains_key(name));
            if spec.required && spec.default.is_none() && !given {
                nc.cx.err(
                    "missing-input",
                    nc.cx.key_loc(&["nodes", id, "call"]),
                    format!("`{process}` requires `{name}`, and `in:` does not give it"),
                    format!("add `in: {{ {name}: <expression> }}`"),
                );
                nc.ok = false;
            }
        }
    }
    let mut outputs = Vec::new();
    for (var, src) in n.out.iter().flatten() {
        if !nm.vars.contains_key(var) {
            nc.cx.err(
                "undeclared-variable",
                nc.cx.key_loc(&["nodes", id, "out", var]),
                format!("`out` writes `{var}`, which is not a declared variable"),
                undeclared_hint(var, nm.names),
            );
            nc.ok = false;
            continue;
        }
        let path = ["nodes", id, "out", var];
        let compiled = match &callee {
            Some(c) => {
                if let (Some(theirs), Some(ours)) = (c.vars.get(src.trim()), nm.vars.get(var)) {
                    mismatch(nc, &path, src.trim(), &theirs.ty, var, &ours.ty);
                }
                let names: Vec<&str> = c.vars.keys().map(String::as_str).collect();
                nc.cx.compile_expr(&path, src, &names).map(|e| (e, c.vars.keys().cloned().collect()))
            }
            // The called process is unknown here: read whatever names the expression uses.
            None => match lenient(src) {
                Ok(found) => Some(found),
                Err(names) => {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    nc.cx.compile_expr(&path, src, &names).map(|e| (e, Vec::new()))
                }
            },
        };
        match compiled {
            Some((expr, reads)) => outputs.push(CallOut { var: var.clone(), expr, reads }),
            None => nc.ok = false,
        }
    }
    let key = match &n.key {
        Some(src) => Some(nc.cx.compile_expr(&["nodes", id, "key"], src, nm.names)?),
        None => None,
    };
    let boundary = nc.boundary(true, false);
    let next = nc.next()?;
    Some(NodeKind::Call(CallSpec { process, version: n.version, key, inputs, outputs, next, boundary: boundary? }))
}

/// The deployed version of `process` the call would start, when the caller knows the
/// deployed processes; reports an unknown id or version, and call cycles.
fn callee(nc: &mut NodeCx<'_, '_>, process: &str) -> Option<Callee> {
    let id = nc.id;
    let known = nc.opts.callees.clone()?;
    let Some(versions) = known.processes.get(process).filter(|_| process != nc.cx.process) else {
        if process == nc.cx.process {
            nc.cx.warn(
                "call-cycle",
                nc.cx.loc(&["nodes", id, "call"]),
                format!("`{process}` calls itself; each call nests one level deeper"),
                format!("a chain of calls deeper than {MAX_CALL_DEPTH} stops with an incident"),
            );
            return None;
        }
        nc.cx.warn(
            "unknown-process",
            nc.cx.loc(&["nodes", id, "call"]),
            format!("no process `{process}` is deployed yet"),
            format!(
                "{} until it is deployed, this step stops with an incident; deploy `{process}` first to have `in:`/`out:` checked",
                match crate::diag::suggest(process, known.processes.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "deployed: {};",
                        known.processes.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                    ),
                }
            ),
        );
        return None;
    };
    let chosen = match nc.n.version {
        Some(v) => match versions.iter().find(|c| c.version == v) {
            Some(c) => c.clone(),
            None => {
                nc.cx.err(
                    "unknown-version",
                    nc.cx.loc(&["nodes", id, "version"]),
                    format!("`{process}` has no version {v}"),
                    format!(
                        "deployed versions: {}; or leave `version:` out for the latest",
                        versions.iter().map(|c| c.version.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                );
                nc.ok = false;
                return None;
            }
        },
        None => versions.last()?.clone(),
    };
    if let Some(path) = cycle(&known, process, &nc.cx.process) {
        nc.cx.warn(
            "call-cycle",
            nc.cx.loc(&["nodes", id, "call"]),
            format!("call cycle: {} → {}", nc.cx.process, path.join(" → ")),
            format!("each call nests one level deeper; a chain deeper than {MAX_CALL_DEPTH} stops with an incident"),
        );
    }
    Some(chosen)
}

/// A chain of calls (latest versions) from `from` back to `to`, if there is one.
fn cycle(known: &crate::compile::Callees, from: &str, to: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().expect("paths are not empty").clone();
        if last == to {
            return Some(path);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in known.processes.get(&last).and_then(|v| v.last()).map(|c| c.calls.as_slice()).unwrap_or(&[]) {
            let mut p = path.clone();
            p.push(next.clone());
            stack.push(p);
        }
    }
    None
}

/// A variable passed as it is between two declared types that cannot agree.
fn mismatch(
    nc: &mut NodeCx<'_, '_>,
    path: &[&str],
    from: &str,
    from_ty: &crate::types::VarType,
    to: &str,
    to_ty: &crate::types::VarType,
) {
    if Ty::of_var(from_ty) != Ty::of_var(to_ty) {
        nc.cx.err(
            "type-mismatch",
            nc.cx.loc(path),
            format!("`{from}` is a {} and `{to}` a {}", from_ty.name(), to_ty.name()),
            "pass a value of the declared type, or convert it in the expression",
        );
        nc.ok = false;
    }
}

/// Compile an `out:` expression whose readable names are not known (the called
/// process is not deployed yet): the names it reads, found by compiling again
/// with each undefined one added. `Err(names found)` when it has another error.
fn lenient(src: &str) -> Result<(crate::expr::Expr, Vec<String>), Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for _ in 0..64 {
        match crate::expr::compile(src, names.iter().map(String::as_str)) {
            Ok(e) => return Ok((e, names)),
            Err(e) if e.message.contains("Undefined variable") || e.message.contains("Variable not found") => {
                let name = e.message.rsplit(':').next().map(str::trim).unwrap_or("").to_string();
                if name.is_empty() || names.contains(&name) {
                    break;
                }
                names.push(name);
            }
            Err(_) => break,
        }
    }
    Err(names)
}

/// Longest business key a call gives its child (`key:`).
pub const MAX_CALL_KEY_CHARS: usize = 200;

/// Evaluate `in:`, schedule the job that starts the called instance, and wait.
pub(crate) fn exec(run: &mut Run<'_>, mut token: Moving, node: &Node, spec: &CallSpec) {
    let depth = run.inst.parent.as_ref().map_or(0, |p| p.depth);
    if depth >= MAX_CALL_DEPTH {
        let msg = format!(
            "calls nest {} levels deep here, more than the limit of {MAX_CALL_DEPTH} (a call cycle?); `{}` is not started",
            depth + 1,
            spec.process
        );
        return run.incident(token, msg, None);
    }
    let mut vars = Vars::new();
    for (var, e) in &spec.inputs {
        match e.eval(&run.env()) {
            Ok(v) => {
                vars.insert(var.clone(), v);
            }
            Err(err) => {
                let msg = format!("`in: {var}` (`{}`) failed: {err}", e.source.trim());
                return run.incident(token, msg, None);
            }
        }
    }
    let business_key = match spec.key.as_ref().map(|e| e.eval(&run.env())) {
        None | Some(Ok(Value::Null)) => None,
        Some(Ok(Value::String(s))) if s.trim().is_empty() => None,
        Some(Ok(Value::String(s))) => Some(s),
        Some(Ok(v @ Value::Number(_))) => Some(v.to_string()),
        Some(Ok(other)) => return run.incident(token, format!("`key` gave {other}, not a text or number"), None),
        Some(Err(err)) => return run.incident(token, format!("`key` failed: {err}"), None),
    };
    if business_key.as_ref().is_some_and(|k| k.chars().count() > MAX_CALL_KEY_CHARS) {
        return run.incident(token, format!("`key` is longer than {MAX_CALL_KEY_CHARS} characters"), None);
    }
    // Message boundaries on a call are armed like a task's (timers and messages).
    let armings = match run.prepare_boundaries(run.own_boundary(&token, node), None) {
        Ok(a) => a,
        Err(msg) => return run.incident(token, msg, None),
    };
    let seq = run.inst.next_seq();
    let job_id = format!("{}-{}", run.inst.id, seq);
    run.out.commands.push(Command::ScheduleJob(Job {
        id: job_id.clone(),
        instance: run.inst.id,
        token: token.id,
        node: node.id.clone(),
        due: run.now,
        attempt: 1,
        kind: JobKind::CallStart { process: spec.process.clone(), version: spec.version, vars, business_key },
        priority: run.p.priority,
        process: run.p.id.clone(),
    }));
    run.arm_token(&mut token, armings);
    run.park(token, Wait::Call { job: job_id, child: None });
}

/// The called instance `child` started: the token now waits for it.
pub(crate) fn started(run: &mut Run<'_>, tok: usize, child: InstanceId, process: &str, version: u32) {
    let Wait::Call { job, .. } = &run.inst.tokens[tok].wait else { return };
    run.inst.tokens[tok].wait = Wait::Call { job: job.clone(), child: Some(child) };
    let node = run.inst.tokens[tok].node.clone();
    run.log(Some(node), None, HistoryEvent::CallStarted { child, process: process.to_string(), version });
}

/// The called instance ended: map `out:` and go on, throw its error here, or stop
/// with an incident when it was cancelled from outside.
pub(crate) fn ended(run: &mut Run<'_>, token: Token, child: InstanceId, outcome: CallOutcome, vars: Vars) {
    let token = Moving::from(token);
    match outcome {
        CallOutcome::Completed => apply_output(run, token, child, vars),
        CallOutcome::Error { code, message } => {
            let node = token.node.clone();
            run.log(
                Some(node),
                None,
                HistoryEvent::CallCompleted { child, set: Vec::new(), error: Some(code.clone()) },
            );
            let why = if message.is_empty() {
                format!("called instance {child} threw error `{code}` and no boundary catches it")
            } else {
                format!("called instance {child} threw error `{code}` and no boundary catches it: {message}")
            };
            run.throw(token, Some(&code), &message, true, why);
        }
        CallOutcome::Cancelled => {
            let msg = format!("called instance {child} was cancelled; retry to call again");
            run.incident(token, msg, None);
        }
    }
}

/// `out:` over the called instance's final variables (`vars`), then `next`. A
/// failed mapping keeps the variables with the incident: a retry maps them again
/// instead of calling again.
pub(crate) fn apply_output(run: &mut Run<'_>, token: Moving, child: InstanceId, vars: Vars) {
    let p = run.p;
    let Some((_, node)) = p.node(&token.node) else {
        return run.incident(token, "node vanished".into(), None);
    };
    let NodeKind::Call(spec) = &node.kind else {
        return run.incident(token, format!("node `{}` is not a call", node.id), None);
    };
    // Where `out:` writes: a local of the sub-process around the call, else ours.
    run.enter(&token.scope);
    let pending = || Some(serde_json::json!({ "child": child, "vars": vars }));
    let settings = p.setting_env();
    let mut values = Vec::with_capacity(spec.outputs.len());
    for out in &spec.outputs {
        let env = Env {
            vars: &vars,
            declared: &out.reads,
            now: run.now,
            instance: run.inst.id,
            started_by: run.inst.started_by.as_deref(),
            extra: &settings,
        };
        let v = match out.expr.eval(&env) {
            Ok(v) => v,
            Err(err) => {
                let msg = format!("`out: {}` (`{}`) failed: {err}", out.var, out.expr.source.trim());
                return run.incident(token, msg, pending());
            }
        };
        let Some(var) = p.var(&out.var) else {
            return run.incident(token, format!("`out: {}`: not a declared variable", out.var), pending());
        };
        if let Err(err) = var.check(&v) {
            return run.incident(token, format!("`out: {}`: {err}", out.var), pending());
        }
        values.push((out.var.clone(), v));
    }
    let names = values.iter().map(|(n, _)| n.clone()).collect();
    run.set_vars(values);
    run.log(Some(node.id.clone()), None, HistoryEvent::CallCompleted { child, set: names, error: None });
    run.go(token, spec.next);
}

/// A retried incident of a failed `out:` mapping: the kept result, read back.
pub(crate) fn apply_pending(run: &mut Run<'_>, token: Moving, output: Value) {
    let child = output.get("child").and_then(Value::as_u64).unwrap_or(0);
    let vars = match output.get("vars") {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => Vars::new(),
    };
    apply_output(run, token, child, vars)
}
