//! Work on a user task: complete (form checks, outcomes, send-back) and assign.

use super::*;

pub(super) fn complete(
    p: &Process,
    inst: &mut Instance,
    task: String,
    user: String,
    data: Vars,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = waiting_on_task(inst, &task)?;
    if let Wait::Task { assignee: Some(a), .. } = &inst.tokens[tok].wait {
        if *a != user {
            return Err(Rejection::ClaimedByOther { task, assignee: a.clone() });
        }
    }
    let Some(NodeKind::UserTask(spec)) = p.node(&inst.tokens[tok].node).map(|(_, n)| &n.kind) else {
        // Only a user task opens a task, so its node is gone from this version (a
        // corrupt or hand-edited store): the token stops with an incident, no panic.
        let message = format!(
            "task {task} waits at `{}`, which is not a user task of version {}",
            inst.tokens[tok].node, p.version
        );
        return Ok(raise_incident(p, inst, &Culprit::Task(task), message, now).unwrap_or_default());
    };
    let (target, outcome_name) = match &outcome {
        Outcome::Next => (spec.next, "next".to_string()),
        Outcome::SendBack { .. } => match spec.send_back {
            Some(t) => (t, "send_back".to_string()),
            None => {
                return Err(Rejection::UnknownOutcome {
                    task,
                    outcome: "send_back".into(),
                    allowed: allowed_outcomes(spec),
                })
            }
        },
        Outcome::Named(name) => match spec.outcomes.iter().find(|(n, _)| n == name) {
            Some((_, t)) => (*t, name.clone()),
            None => {
                return Err(Rejection::UnknownOutcome { task, outcome: name.clone(), allowed: allowed_outcomes(spec) })
            }
        },
    };
    // What the form shows: the instance's variables with the task's locals on top.
    let shown = inst.vars_in(&inst.tokens[tok].scope);
    let mut errors = Vec::new();
    for (name, v) in &data {
        match spec.form.iter().find(|f| f.var == *name) {
            None => errors.push(FieldError { field: name.clone(), problem: "not a field of this form".into() }),
            Some(f) if f.mode == FieldMode::Readonly => {
                if shown.get(name).unwrap_or(&Value::Null) != v {
                    errors.push(FieldError { field: name.clone(), problem: "read-only on this form".into() });
                }
            }
            Some(_) => match p.var(name) {
                Some(spec) => {
                    if let Err(e) = spec.check(v) {
                        errors.push(FieldError { field: name.clone(), problem: e });
                    }
                }
                None => errors.push(FieldError { field: name.clone(), problem: "not a declared variable".into() }),
            },
        }
    }
    if !matches!(outcome, Outcome::SendBack { .. }) {
        for f in spec.form.iter().filter(|f| f.mode == FieldMode::Required) {
            if is_blank(data.get(&f.var).or(shown.get(&f.var))) && !errors.iter().any(|e| e.field == f.var) {
                errors.push(FieldError { field: f.var.clone(), problem: "required".into() });
            }
        }
        if errors.is_empty() && !spec.rules.is_empty() {
            let mut merged = shown.clone();
            merged.extend(data.clone());
            errors = broken_rules(p, &spec.rules, &merged, inst.id, inst.started_by.as_deref(), now);
        }
    }
    if !errors.is_empty() {
        return Err(Rejection::InvalidData(errors));
    }

    let mut run = Run::new(p, inst, now);
    let token = run.inst.tokens.remove(tok);
    run.enter(&token.scope);
    run.set_vars(data.clone());
    if !matches!(outcome, Outcome::SendBack { .. }) && !run.inst.approvers.contains(&user) {
        run.inst.approvers.push(user.clone());
    }
    let node_id = token.node.clone();
    run.log(
        Some(node_id.clone()),
        Some(user.clone()),
        HistoryEvent::TaskCompleted { task: task.clone(), outcome: outcome_name.clone(), vars: data },
    );
    if let Outcome::SendBack { comment } = &outcome {
        let to = p.nodes[target].id.clone();
        run.log(
            Some(node_id),
            Some(user.clone()),
            HistoryEvent::SentBack { task: task.clone(), to, comment: comment.clone() },
        );
    }
    run.out.commands.push(Command::CloseTask {
        task,
        status: TaskStatus::Completed,
        by: Some(user),
        outcome: Some(outcome_name),
    });
    run.go(token.into(), target);
    Ok(run.finish())
}

/// Give an open task to `assignee` (or nobody), whoever holds it now.
pub(super) fn assign(
    p: &Process,
    inst: &mut Instance,
    task: String,
    assignee: Option<String>,
    by: String,
    now: DateTime<Utc>,
) -> Result<Transition, Rejection> {
    let tok = waiting_on_task(inst, &task)?;
    if matches!(&inst.tokens[tok].wait, Wait::Task { assignee: a, .. } if *a == assignee) {
        return Ok(Transition::default());
    }
    let mut run = Run::new(p, inst, now);
    run.inst.tokens[tok].wait = Wait::Task { task: task.clone(), assignee: assignee.clone() };
    let node = run.inst.tokens[tok].node.clone();
    run.log(Some(node), Some(by), HistoryEvent::TaskAssigned { task: task.clone(), to: assignee.clone() });
    run.out.commands.push(Command::AssignTask { task, assignee });
    Ok(run.finish())
}

pub(super) fn allowed_outcomes(spec: &crate::process::UserTaskSpec) -> String {
    let mut v = vec!["next".to_string()];
    if spec.send_back.is_some() {
        v.push("send_back".into());
    }
    v.extend(spec.outcomes.iter().map(|(n, _)| n.clone()));
    v.join(", ")
}
