//! Who a user task goes to when it opens: `assignee:` (one user) and
//! `candidates:` (users who share it), both expressions that may ask the org
//! chart (`manager_of(started_by)`, `users_in("法務部")`), and `skip:` (the
//! self-approval and already-approved skips). Part of `user_task:`; kept apart
//! so that the task kind's own module stays about opening the task.
//!
//! Evaluated once, when the task opens, and recorded in the history
//! (`task_routed`); an org change afterwards does not move an open task.
//! Nobody found by an org expression: the process's `fallback:` lane, else an
//! incident on the instance.

use crate::compile::for_kinds::*;
use crate::expr::Expr;
use crate::model::SkipWhen;
use crate::process::UserTaskSpec;
use crate::runtime::step::for_kinds::*;

/// Longest user id a task's `assignee:` or `candidates:` may give.
pub const MAX_USER_CHARS: usize = 200;
/// Most users `candidates:` may offer a task to.
pub const MAX_CANDIDATES: usize = 200;
/// Helpers that read the org: an assignee using one must find someone.
const ORG_HELPERS: &[&str] = &["manager_of", "position_in", "users_in", "department_of"];

/// The compiled `candidates:` and `skip:` of a user task.
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub candidates: Option<Expr>,
    pub skip_applicant: bool,
    pub skip_approved: bool,
}

pub(crate) fn compile(nc: &mut NodeCx<'_, '_>) -> Option<Route> {
    let (id, n, nm) = (nc.id, nc.n, nc.nm);
    let candidates = match &n.candidates {
        Some(src) => Some(nc.cx.compile_expr(&["nodes", id, "candidates"], src, nm.names)?),
        None => None,
    };
    let skip = n.skip.clone().unwrap_or_default();
    if !skip.is_empty() && n.assignee.is_none() && n.candidates.is_none() {
        nc.cx.err(
            "skip-without-approver",
            nc.cx.key_loc(&["nodes", id, "skip"]),
            format!("`skip:` of `{id}` compares the approver, but the task has no `assignee:` or `candidates:`"),
            "add `assignee: manager_of(started_by)` (or `candidates:`), or remove `skip:`",
        );
        nc.ok = false;
    }
    Some(Route {
        candidates,
        skip_applicant: skip.contains(&SkipWhen::Applicant),
        skip_approved: skip.contains(&SkipWhen::Approved),
    })
}

/// What to do with a user task about to open.
pub(crate) enum Routing {
    /// Open it: for `assignee`, or offered to `candidates` (instead of the lane's
    /// groups), or in the lane `fallback`.
    Open {
        assignee: Option<String>,
        candidates: Option<Vec<String>>,
        fallback: Option<String>,
    },
    /// Do not open it: the approver was `who`, skipped because of `why`.
    Skip,
    Incident(String),
}

/// Decide who gets the task of `spec`, logging `task_routed` when an org
/// expression or a skip rule was involved.
pub(crate) fn resolve(run: &mut Run<'_>, node: &str, spec: &UserTaskSpec) -> Routing {
    let assignee = match &spec.assignee {
        None => None,
        Some(e) => match e.eval(&run.env()).map_err(|e| e.to_string()).and_then(assignee_of) {
            Ok(a) => a,
            Err(msg) => return Routing::Incident(format!("assignee `{}`: {msg}", e.source.trim())),
        },
    };
    let candidates = match &spec.route.candidates {
        None => None,
        Some(e) => match e.eval(&run.env()).map_err(|e| e.to_string()).and_then(candidates_of) {
            Ok(c) => Some(c),
            Err(msg) => return Routing::Incident(format!("candidates `{}`: {msg}", e.source.trim())),
        },
    };
    let asks_org = spec.assignee.as_ref().is_some_and(|e| ORG_HELPERS.iter().any(|h| e.source.contains(h)));
    let routed = asks_org || candidates.is_some() || spec.route.skip_applicant || spec.route.skip_approved;
    let mut chosen: Vec<String> = assignee.iter().cloned().chain(candidates.iter().flatten().cloned()).collect();
    chosen.dedup();
    let here = Some(node.to_string());

    // Skips: the applicant approving their own request, or someone approving twice.
    let applicant = run.inst.started_by.clone();
    let skipped_for = |u: &String| -> Option<&'static str> {
        if spec.route.skip_applicant && applicant.as_ref() == Some(u) {
            Some("applicant")
        } else if spec.route.skip_approved && run.inst.approvers.contains(u) {
            Some("approved")
        } else {
            None
        }
    };
    if let Some(a) = &assignee {
        if let Some(why) = skipped_for(a) {
            let to = vec![a.clone()];
            run.log(here, None, HistoryEvent::TaskRouted { to: to.clone(), fallback: None, skipped: Some(why.into()) });
            return Routing::Skip;
        }
    }
    let candidates = match candidates {
        Some(all) => {
            let kept: Vec<String> = all.iter().filter(|u| skipped_for(u).is_none()).cloned().collect();
            if kept.is_empty() && !all.is_empty() {
                // Everyone offered is skipped: the step is, too.
                let why = skipped_for(&all[0]).unwrap_or("approved");
                run.log(
                    here,
                    None,
                    HistoryEvent::TaskRouted { to: all.clone(), fallback: None, skipped: Some(why.into()) },
                );
                return Routing::Skip;
            }
            chosen.retain(|u| kept.contains(u) || assignee.as_ref() == Some(u));
            Some(kept)
        }
        None => None,
    };
    let nobody = (asks_org && assignee.is_none() && candidates.is_none())
        || candidates.as_ref().is_some_and(|c| c.is_empty() && assignee.is_none());
    if nobody {
        let what = spec.route.candidates.as_ref().or(spec.assignee.as_ref()).map(|e| e.source.trim()).unwrap_or("");
        return match &run.p.fallback {
            Some(lane) => {
                let fallback = Some(lane.clone());
                run.log(here, None, HistoryEvent::TaskRouted { to: Vec::new(), fallback: fallback.clone(), skipped: None });
                Routing::Open { assignee: None, candidates: None, fallback }
            }
            None => Routing::Incident(format!(
                "`{what}` found nobody in the org on {}: fill the post in the org file (or name a `fallback:` lane in the process), then retry",
                crate::ambient::with(|a| a.on.map(|d| d.to_string()).unwrap_or_else(|| "this date".into()))
            )),
        };
    }
    if routed {
        run.log(here, None, HistoryEvent::TaskRouted { to: chosen, fallback: None, skipped: None });
    }
    Routing::Open { assignee, candidates, fallback: None }
}

/// A user task's `assignee:` value: a user id, or `()`/blank for the lane's groups.
fn assignee_of(v: Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) if s.chars().count() <= MAX_USER_CHARS => Ok(Some(s.trim().to_string())),
        Value::String(_) => Err(format!("a user id is at most {MAX_USER_CHARS} characters")),
        other => Err(format!("expected a user id (text), got {other}")),
    }
}

/// `candidates:` value: a list of user ids (or one id); `()` is nobody.
fn candidates_of(v: Value) -> Result<Vec<String>, String> {
    let items = match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a,
        one @ Value::String(_) => vec![one],
        other => return Err(format!("expected a list of user ids, got {other}")),
    };
    if items.len() > MAX_CANDIDATES {
        return Err(format!("{} candidates; a task may be offered to at most {MAX_CANDIDATES}", items.len()));
    }
    let mut out: Vec<String> = Vec::new();
    for v in items {
        if let Some(u) = assignee_of(v)? {
            if !out.contains(&u) {
                out.push(u);
            }
        }
    }
    Ok(out)
}
