//! One function per event of [`step`]: preconditions first (a [`Rejection`],
//! nothing changed), then the change.

use super::*;

/// `user` takes task `task` (again: nothing happens).
pub(super) fn claim(
    p: &Process,
    inst: &mut Instance,
    task: String,
    user: String,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = waiting_on_task(inst, &task)?;
    if let Wait::Task { assignee: Some(a), .. } = &inst.tokens[tok].wait {
        if *a == user {
            return Ok(Transition::default());
        }
        return Err(Rejection::ClaimedByOther { task, assignee: a.clone() });
    }
    let mut run = Run::new(p, inst, now);
    run.inst.tokens[tok].wait = Wait::Task { task: task.clone(), assignee: Some(user.clone()) };
    let node = run.inst.tokens[tok].node.clone();
    run.log(Some(node), Some(user.clone()), HistoryEvent::TaskClaimed { task: task.clone() });
    run.out.commands.push(Command::AssignTask { task, assignee: Some(user) });
    Ok(run.finish())
}

/// `user` gives task `task` back (`force`: an administrator, whoever holds it).
pub(super) fn unclaim(
    p: &Process,
    inst: &mut Instance,
    task: String,
    user: String,
    force: bool,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = waiting_on_task(inst, &task)?;
    match &inst.tokens[tok].wait {
        Wait::Task { assignee: None, .. } => return Ok(Transition::default()),
        Wait::Task { assignee: Some(a), .. } if *a != user && !force => {
            return Err(Rejection::ClaimedByOther { task, assignee: a.clone() })
        }
        _ => {}
    }
    let mut run = Run::new(p, inst, now);
    run.inst.tokens[tok].wait = Wait::Task { task: task.clone(), assignee: None };
    let node = run.inst.tokens[tok].node.clone();
    run.log(Some(node), Some(user), HistoryEvent::TaskUnclaimed { task: task.clone() });
    run.out.commands.push(Command::AssignTask { task, assignee: None });
    Ok(run.finish())
}

/// A connector job of a waiting token succeeded: map its result and move on.
pub(super) fn job_done(
    p: &Process,
    inst: &mut Instance,
    job: String,
    output: Value,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = waiting_on_job(inst, &job)?;
    let mut run = Run::new(p, inst, now);
    let token = run.inst.tokens.remove(tok);
    // Kept with an incident if `set` fails: too deep to store is a failure.
    match crate::types::check_nesting(&output) {
        Ok(()) => run.apply_output(token.into(), &job, output),
        Err(e) => run.job_failed(token, &job, Failure::Fatal { message: format!("the result is {e}") }),
    }
    Ok(run.finish())
}

/// A connector job of a waiting token failed: retry, catch or incident.
pub(super) fn job_failed(
    p: &Process,
    inst: &mut Instance,
    job: String,
    failure: Failure,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = waiting_on_job(inst, &job)?;
    let mut run = Run::new(p, inst, now);
    let token = run.inst.tokens.remove(tok);
    run.job_failed(token, &job, failure);
    Ok(run.finish())
}

/// End the instance: every task closed, every job and timer withdrawn.
pub(super) fn cancel(
    p: &Process,
    inst: &mut Instance,
    by: String,
    reason: String,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let mut run = Run::new(p, inst, now);
    run.clear_all(TaskStatus::Cancelled);
    crate::kinds::circulate::withdraw_unread(&mut run);
    // No user: the engine itself (a caller withdrawing its call); never a participant.
    let by = Some(by).filter(|b| !b.is_empty());
    run.log(None, by, HistoryEvent::Cancelled { reason });
    run.inst.status = Status::Cancelled;
    run.inst.ended_at = Some(now);
    run.tell_caller(CallOutcome::Cancelled);
    Ok(run.out)
}

/// The engine started called instance `child` for the call whose start job is `job`.
pub(super) fn call_started(
    p: &Process,
    inst: &mut Instance,
    job: String,
    child: InstanceId,
    process: String,
    version: u32,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = waiting_for_child_start(inst, job)?;
    let mut run = Run::new(p, inst, now);
    kinds::call::started(&mut run, tok, child, &process, version);
    Ok(run.finish())
}

/// The called instance could not be started: an incident on the calling token.
pub(super) fn call_refused(
    p: &Process,
    inst: &mut Instance,
    job: String,
    message: String,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = waiting_for_child_start(inst, job)?;
    let mut run = Run::new(p, inst, now);
    let token = run.inst.tokens.remove(tok);
    run.incident(token.into(), message, None);
    Ok(run.finish())
}

/// Called instance `child` ended with `outcome` (`vars`: its final variables).
pub(super) fn call_ended(
    p: &Process,
    inst: &mut Instance,
    job: String,
    child: InstanceId,
    outcome: CallOutcome,
    vars: Vars,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = inst.child_token_index(child).ok_or(Rejection::StaleJob(job))?;
    let mut run = Run::new(p, inst, now);
    let token = run.inst.tokens.remove(tok);
    kinds::call::ended(&mut run, token, child, outcome, vars);
    Ok(run.finish())
}

/// Run the step of an incident again (a pending result is mapped again instead).
pub(super) fn retry_incident(
    p: &Process,
    inst: &mut Instance,
    incident: u32,
    vars: Vars,
    by: String,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let pos = incident_pos(p, inst, incident, &vars)?;
    let mut run = Run::new(p, inst, now);
    let inc = run.inst.incidents.remove(pos);
    run.inst.vars.extend(vars.clone());
    run.log(Some(inc.node.clone()), Some(by), HistoryEvent::IncidentResolved { incident, vars });
    if let Some(tpos) = run.inst.tokens.iter().position(|t| t.id == inc.token) {
        let token = run.inst.tokens.remove(tpos);
        match inc.pending_output {
            Some(output) => run.apply_pending(token.into(), output, inc.pending_branch),
            None => run.ready.push_back(token.into()),
        }
    }
    Ok(run.finish())
}

/// The operator did the step by hand: write `vars` and move the token past it.
pub(super) fn resolve_incident(
    p: &Process,
    inst: &mut Instance,
    incident: u32,
    vars: Vars,
    by: String,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let pos = incident_pos(p, inst, incident, &vars)?;
    let inc = &inst.incidents[pos];
    let node = p.node(&inc.node).map(|(_, n)| n);
    // A message boundary whose payload mapping failed: skipping it follows the boundary.
    let boundary = inc.pending_branch.and_then(|b| node?.kind.boundary().get(usize::from(b)));
    let to = match node.map(|n| &n.kind) {
        _ if boundary.is_some_and(|b| b.message().is_some()) => boundary.map(|b| b.next),
        Some(NodeKind::Service(s)) => Some(s.next),
        Some(NodeKind::UserTask(u)) => Some(u.next),
        Some(NodeKind::Call(c)) => Some(c.next),
        Some(NodeKind::Script { next, .. })
        | Some(NodeKind::TimerCatch { next, .. })
        | Some(NodeKind::MessageCatch { next, .. }) => Some(*next),
        Some(NodeKind::ErrorEnd { .. }) => None,
        _ => {
            return Err(Rejection::CannotSkip {
                incident,
                node: inc.node.clone(),
                why: "a gateway or join has no single way on; retry it after correcting the variables".into(),
            })
        }
    };
    let mut run = Run::new(p, inst, now);
    let inc = run.inst.incidents.remove(pos);
    run.inst.vars.extend(vars.clone());
    let to_name = to.map(|t| p.nodes[t].id.clone()).unwrap_or_else(|| "(end)".into());
    run.log(Some(inc.node.clone()), Some(by), HistoryEvent::IncidentSkipped { incident, vars, to: to_name });
    if let Some(tpos) = run.inst.tokens.iter().position(|t| t.id == inc.token) {
        let token = run.inst.tokens.remove(tpos);
        match to {
            Some(t) => run.go(token.into(), t),
            // A skipped error end ends its token like a plain end.
            None => run.log(Some(inc.node.clone()), None, HistoryEvent::Ended),
        }
    }
    Ok(run.finish())
}

/// `user` ends task `task` with business error `code`, for a boundary that catches it.
pub(super) fn task_error(
    p: &Process,
    inst: &mut Instance,
    task: String,
    user: String,
    code: String,
    message: String,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = waiting_on_task(inst, &task)?;
    if let Wait::Task { assignee: Some(a), .. } = &inst.tokens[tok].wait {
        if *a != user {
            return Err(Rejection::ClaimedByOther { task, assignee: a.clone() });
        }
    }
    let mut run = Run::new(p, inst, now);
    let (node, scope) = (&run.inst.tokens[tok].node, &run.inst.tokens[tok].scope);
    if run.catcher(node, scope, Some(&code), true).is_none() {
        return Err(Rejection::UncaughtTaskError { task, code });
    }
    let token = run.inst.tokens.remove(tok);
    let outcome = format!("error:{code}");
    run.log(
        Some(token.node.clone()),
        Some(user.clone()),
        HistoryEvent::TaskCompleted { task: task.clone(), outcome: outcome.clone(), vars: Vars::new() },
    );
    run.out.commands.push(Command::CloseTask {
        task,
        status: TaskStatus::Completed,
        by: Some(user),
        outcome: Some(outcome),
    });
    let why = format!("error `{code}` from the task");
    run.throw(token.into(), Some(&code), &message, true, why);
    Ok(run.finish())
}

/// A timer job of this instance is due.
pub(super) fn timer_fired(
    p: &Process,
    inst: &mut Instance,
    job: String,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let (tok, fork) = (inst.timer_token_index(&job), inst.fork_timer_index(&job));
    if tok.is_none() && fork.is_none() {
        return Err(Rejection::StaleJob(job));
    }
    let mut run = Run::new(p, inst, now);
    match (tok, fork) {
        (Some(tok), _) => run.timer_fired(tok, &job),
        (None, Some(w)) => run.fork_timer_fired(w, &job),
        (None, None) => unreachable!("checked above"),
    }
    Ok(run.finish())
}

/// A correlated message for subscriber `token`, which waits for it: a token's
/// message catch, event-based branch or message boundary, or a fork activation's
/// message boundary.
pub(super) fn message(
    p: &Process,
    inst: &mut Instance,
    token: u32,
    name: String,
    key: String,
    payload: Value,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let matches = |m: &MessageWait| m.name == name && m.key == key;
    let tok = inst.tokens.iter().position(|t| t.id == token && t.messages().any(|(n, k)| n == name && k == key));
    let fork = || inst.forks.iter().position(|w| w.activation == token && w.listens.iter().any(matches));
    if tok.is_none() && fork().is_none() {
        return Err(Rejection::NotWaiting { token, name: name.clone(), key: key.clone() });
    }
    let fork = fork();
    let mut run = Run::new(p, inst, now);
    match (tok, fork) {
        (Some(tok), _) => {
            let t = &run.inst.tokens[tok];
            match t
                .listens
                .iter()
                .find(|m| matches(m))
                .filter(|_| !t.wait.messages().any(|(n, k)| n == name && k == key))
            {
                Some(m) => {
                    let b = m.branch;
                    run.boundary_message(tok, b, &key, payload);
                }
                None => {
                    let token = run.inst.tokens.remove(tok);
                    run.message_received(token, &name, &key, payload);
                }
            }
        }
        (None, Some(w)) => {
            let b = run.inst.forks[w].listens.iter().find(|m| matches(m)).expect("found above").branch;
            run.fork_message(w, b, &key, payload);
        }
        (None, None) => unreachable!("checked above"),
    }
    Ok(run.finish())
}

/// The token whose `call_start` job is `job` and whose child has not started yet
/// (anything else: the job is stale, a repeat after a crash).
fn waiting_for_child_start(inst: &Instance, job: String) -> Result<usize, Rejection> {
    match inst.call_token_index(&job) {
        Some(tok) if matches!(inst.tokens[tok].wait, Wait::Call { child: None, .. }) => Ok(tok),
        _ => Err(Rejection::StaleJob(job)),
    }
}
