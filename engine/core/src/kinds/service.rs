//! `service:` — a connector call: inputs (`with`), result mapping (`set`), retries,
//! timeout and boundary events; the token waits for the result.

use crate::compile::for_kinds::*;
use crate::process::*;
use crate::runtime::step::for_kinds::*;
use std::time::Duration;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "service",
    summary: "Calls a connector with `with:` inputs and maps its `result` with `set:`; retried with backoff.",
    body: "name the connector: `service: http.request`",
    keys: &["lane", "next", "with", "set", "retry", "timeout", "priority", "boundary", "multi_instance"],
    no_next: "",
    present: |n| n.service.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n, nm) = (nc.id, nc.n, nc.nm);
    let connector = n.service.clone().unwrap_or_default();
    if let Some(known) = &nc.opts.connectors {
        if !known.contains(&connector) {
            nc.cx.err(
                "unknown-connector",
                nc.cx.loc(&["nodes", id, "service"]),
                format!("unknown connector `{connector}`"),
                hint_for(&connector, known.iter().map(String::as_str)),
            );
            nc.ok = false;
        }
    }
    let mut with = Vec::new();
    for (k, v) in n.with.iter().flatten() {
        match v {
            serde_json::Value::String(src) => {
                if let Some(e) = nc.cx.compile_expr(&["nodes", id, "with", k], src, nm.names) {
                    with.push((k.clone(), Input::Expr(e)));
                } else {
                    nc.ok = false;
                }
            }
            other => with.push((k.clone(), Input::Literal(other.clone()))),
        }
    }
    if let (Some(check), Some(inputs)) = (&nc.opts.input_check, &n.with) {
        let written = serde_json::Value::Object(inputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        for issue in (check.0)(&connector, &written) {
            let mut path = vec!["nodes", id, "with"];
            path.extend(issue.path.iter().map(String::as_str));
            nc.cx.err("bad-input", nc.cx.loc(&path), issue.message, issue.hint);
            nc.ok = false;
        }
    }
    let mut set = Vec::new();
    for (var, src) in n.set.iter().flatten() {
        if !nm.vars.contains_key(var) {
            nc.cx.err(
                "undeclared-variable",
                nc.cx.key_loc(&["nodes", id, "set", var]),
                format!("`set` writes `{var}`, which is not a declared variable"),
                undeclared_hint(var, nm.names),
            );
            nc.ok = false;
        } else if let Some(e) = nc.cx.compile_value_for(&["nodes", id, "set", var], src, nm.with_result, var) {
            set.push((var.clone(), e));
        } else {
            nc.ok = false;
        }
    }
    let priority = match &n.priority {
        Some(v) => Some(compile_priority(nc.cx, &["nodes", id, "priority"], v, nm.names, true)?),
        None => None,
    };
    let retry = retry_policy(nc);
    let timeout = timeout(nc);
    let boundary = nc.boundary(true, false);
    let next = nc.next()?;
    Some(NodeKind::Service(ServiceSpec { connector, with, set, retry, timeout, next, boundary: boundary?, priority }))
}

/// `retry:`: attempts (1 to 100) and backoff (`2s..5m`); the default policy otherwise.
fn retry_policy(nc: &mut NodeCx<'_, '_>) -> RetryPolicy {
    let (id, n) = (nc.id, nc.n);
    let mut retry = RetryPolicy::default();
    if let Some(r) = &n.retry {
        if let Some(a) = r.attempts {
            if !(1..=100).contains(&a) {
                nc.cx.err(
                    "bad-retry",
                    nc.cx.loc(&["nodes", id, "retry", "attempts"]),
                    format!("`attempts: {a}` is out of range"),
                    "use 1 to 100 (attempts in all, the first included)",
                );
                nc.ok = false;
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
                    nc.cx.err(
                        "bad-retry",
                        nc.cx.loc(&["nodes", id, "retry", "backoff"]),
                        format!("backoff `{b}` runs backwards"),
                        "write the shorter wait first: `2s..5m`",
                    );
                    nc.ok = false;
                }
                Err(e) => {
                    nc.cx.err(
                        "bad-retry",
                        nc.cx.loc(&["nodes", id, "retry", "backoff"]),
                        e,
                        "write `2s..5m` (first wait .. longest wait)",
                    );
                    nc.ok = false;
                }
            }
        }
    }
    retry
}

/// `timeout:` of one call; 30s when absent.
fn timeout(nc: &mut NodeCx<'_, '_>) -> Duration {
    let (id, n) = (nc.id, nc.n);
    match &n.timeout {
        Some(t) => match parse_duration(t) {
            Ok(d) => d,
            Err(e) => {
                nc.cx.err("bad-duration", nc.cx.loc(&["nodes", id, "timeout"]), e, "write e.g. `timeout: 30s`");
                nc.ok = false;
                Duration::from_secs(30)
            }
        },
        None => Duration::from_secs(30),
    }
}

/// Schedule the connector call as a job; the token waits for its result.
pub(crate) fn exec(run: &mut Run<'_>, mut token: Moving, node: &Node, spec: &ServiceSpec) {
    let here = Some(node.id.clone());
    let mut input = serde_json::Map::new();
    for (k, v) in &spec.with {
        let value = match v {
            Input::Literal(v) => v.clone(),
            Input::Expr(e) => match e.eval(&run.env()) {
                Ok(v) => v,
                Err(err) => {
                    let msg = format!("input `{k}` (`{}`) failed: {err}", e.source.trim());
                    return run.incident(token, msg, None);
                }
            },
        };
        input.insert(k.clone(), value);
    }
    let priority = match &spec.priority {
        None => run.p.priority,
        Some(pr) => match pr.eval(&run.env()) {
            Ok(p) => p,
            Err(msg) => return run.incident(token, msg, None),
        },
    };
    let armings = match run.prepare_boundaries(run.own_boundary(&token, node), None) {
        Ok(a) => a,
        Err(msg) => return run.incident(token, msg, None),
    };
    let seq = run.inst.next_seq();
    let job_id = format!("{}-{}", run.inst.id, seq);
    let job = Job {
        id: job_id.clone(),
        instance: run.inst.id,
        token: token.id,
        node: node.id.clone(),
        due: run.now,
        attempt: 1,
        kind: JobKind::Connector {
            connector: spec.connector.clone(),
            input: Value::Object(input),
            idempotency_key: format!("{}/{}/{}", run.inst.id, node.id, seq),
            timeout_ms: spec.timeout.as_millis() as u64,
        },
        priority,
        process: run.p.id.clone(),
    };
    run.log(
        here,
        None,
        HistoryEvent::JobScheduled { job: job_id.clone(), connector: spec.connector.clone(), attempt: 1 },
    );
    run.out.commands.push(Command::ScheduleJob(job));
    run.arm_token(&mut token, armings);
    run.park(token, Wait::Job { job: job_id, attempt: 1 });
}
