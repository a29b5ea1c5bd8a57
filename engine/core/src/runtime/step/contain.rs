//! Incidents for failures the step itself could not report: a panic inside a step,
//! or a job that stopped the engine process every time it ran. The engine calls
//! [`raise_incident`] on the instance as stored *before* the failed event, so the
//! event has no effect but this incident.

use super::*;

/// The waiting token an event or a job is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Culprit {
    /// The token waiting on user task `0`.
    Task(String),
    /// The token waiting on connector job `0`.
    Job(String),
    /// The token timer job `0` belongs to.
    Timer(String),
    /// Token `0` (a message for it).
    Token(u32),
    /// The token stopped by incident `0` (a retry or resolve that failed).
    Incident(u32),
    /// The token at a call activity whose start job is `0`.
    Call(String),
    /// The token waiting for called instance `0`.
    Child(InstanceId),
}

impl Culprit {
    /// Which token `event` is about; `None` for events about the whole instance.
    pub fn of(event: &Event) -> Option<Culprit> {
        Some(match event {
            Event::Claim { task, .. }
            | Event::Unclaim { task, .. }
            | Event::Assign { task, .. }
            | Event::Complete { task, .. }
            | Event::TaskError { task, .. } => Culprit::Task(task.clone()),
            Event::JobDone { job, .. } | Event::JobFailed { job, .. } => Culprit::Job(job.clone()),
            Event::TimerFired { job } => Culprit::Timer(job.clone()),
            Event::Message { token, .. } => Culprit::Token(*token),
            Event::RetryIncident { incident, .. } | Event::ResolveIncident { incident, .. } => {
                Culprit::Incident(*incident)
            }
            Event::CallStarted { job, .. } | Event::CallRefused { job, .. } => Culprit::Call(job.clone()),
            Event::CallEnded { child, .. } => Culprit::Child(*child),
            Event::Cancel { .. } => return None,
        })
    }
}

/// Stop the token `culprit` names with an incident saying `message`. What it
/// waited on is withdrawn (its task cancelled, its job and timers cancelled, its
/// subscriptions dropped); retrying the incident runs its node again. `None` when
/// no such token waits (or the instance has ended): nothing changed.
pub fn raise_incident(
    p: &Process,
    inst: &mut Instance,
    culprit: &Culprit,
    message: String,
    now: DateTime<Utc>,
) -> Option<Transition> {
    if inst.status.is_finished() {
        return None;
    }
    if let Culprit::Timer(job) = culprit {
        if let Some(w) = inst.fork_timer_index(job).filter(|_| inst.timer_token_index(job).is_none()) {
            // A fork's boundary timer belongs to no token to stop: it is withdrawn,
            // and the fork's branches go on without it.
            tracing::error!(instance = inst.id, job = %job, %message, "fork boundary timer withdrawn");
            let mut run = Run::new(p, inst, now);
            let watch = &mut run.inst.forks[w];
            let armed: Vec<Armed> = watch.timers.iter().filter(|a| a.job == *job).cloned().collect();
            watch.timers.retain(|a| a.job != *job);
            let owner = watch.activation;
            run.withdraw(owner, &armed, &[]);
            return Some(run.finish());
        }
    }
    let pos = match culprit {
        Culprit::Task(task) => inst.task_token_index(task),
        Culprit::Job(job) => inst.job_token_index(job),
        Culprit::Timer(job) => inst.timer_token_index(job),
        Culprit::Token(id) => inst.tokens.iter().position(|t| t.id == *id),
        Culprit::Incident(id) => {
            let token = inst.incidents.iter().find(|i| i.id == *id)?.token;
            inst.tokens.iter().position(|t| t.id == token)
        }
        Culprit::Call(job) => inst.call_token_index(job),
        Culprit::Child(child) => inst.child_token_index(*child),
    }?;
    // A connector result waiting for its mapping stays with the new incident, so a
    // retry does not call the service again.
    let pending = match &inst.tokens[pos].wait {
        Wait::Incident { incident } => {
            inst.incidents.iter().find(|i| i.id == *incident).map(|i| (i.pending_output.clone(), i.pending_branch))
        }
        _ => None,
    };
    let (pending_output, pending_branch) = pending.unwrap_or((None, None));
    let mut run = Run::new(p, inst, now);
    let token = run.inst.tokens.remove(pos);
    run.release_wait(&token);
    let mut token = Moving::from(token);
    run.disarm_quietly(&mut token);
    run.incident_with(token, message, pending_output, pending_branch);
    Some(run.finish())
}
