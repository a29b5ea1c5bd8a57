//! Who may work a task: the permission model, and [`may_work`] to apply it.
//!
//! The engine checks only what the state itself says: a task claimed by (or
//! assigned to) someone can be completed, failed, sent back or given back only by
//! that person ([`Rejection::ClaimedByOther`](crate::runtime::Rejection), a 409).
//! It does **not** check lanes or groups: [`Engine::claim`](crate::Engine::claim)
//! and [`Engine::complete`](crate::Engine::complete) take the user's word for who
//! they are and what they may do. That check belongs to the app, which knows its
//! users: call [`may_work`] before letting a user claim or complete a task (the
//! HTTP server does, adding that administrators may work any task).
//!
//! Why not in the engine: the engine has no user directory, and apps differ in
//! where groups come from (a users file, SSO claims, an org chart).

use crate::runtime::Task;

/// Whether `user`, a member of `groups`, may work (claim, complete, send back)
/// `task`: the task is assigned to them, one of its groups (its lane's) is one
/// of theirs, or it is offered to them as a candidate (`candidates:`, group
/// `user:<id>`). Administrators and other overrides are the app's to add.
pub fn may_work<G: AsRef<str>>(task: &Task, user: &str, groups: &[G]) -> bool {
    task.assignee.as_deref() == Some(user)
        || task.groups.iter().any(|g| groups.iter().any(|m| m.as_ref() == g) || *g == crate::org::candidate_group(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_TASK: &str = "id: s\nlanes:\n  l: { groups: [g] }\nstart: { next: t }\nnodes:\n  t: { user_task: T, lane: l, next: e }\n  e: { end: }\n";

    #[test]
    fn group_members_and_the_assignee_may_work_a_task_others_may_not() {
        let engine = crate::Engine::in_memory();
        engine.deploy("s.yaml", ONE_TASK).unwrap();
        engine.start("s", Default::default(), Default::default()).unwrap();
        let mut task = engine.tasks(&Default::default()).unwrap().remove(0);
        assert!(may_work(&task, "sato", &["g"]));
        assert!(!may_work(&task, "sato", &["other"]));
        assert!(!may_work::<&str>(&task, "sato", &[]));
        task.assignee = Some("kato".into());
        assert!(may_work::<String>(&task, "kato", &[]), "the assignee, whatever their groups");
    }
}
