//! Instance migration, pure: where the state of a running instance of version V
//! lands in version W of the same process, what cannot land, and the rewrite.
//!
//! A [`MigrationSpec`] is what an operator writes (node mapping, variable
//! conversions, what to do with changed timers and lanes); [`Migration::new`]
//! checks it against both versions once; [`Migration::instance`] computes one
//! instance's [`InstancePlan`] and, when nothing is invalid, the migrated
//! instance and the commands (timers re-armed, messages re-subscribed) the engine
//! commits with it. The dry run and the apply call the same function, so what the
//! plan promises is what the apply does; the apply calls it again on the instance
//! as stored then (re-checked, never trusted from the plan file).

mod compare;
mod rewrite;

use crate::expr::{self, Expr};
use crate::process::Process;
use crate::runtime::{Instance, InstanceId, Status, Task, Transition};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Most node mappings a plan may hold.
pub const MAX_MAPPINGS: usize = 1_000;
/// Most variable conversions (and defaults) a plan may hold.
pub const MAX_CONVERSIONS: usize = 200;
/// Longest conversion expression, in bytes.
pub const MAX_CONVERSION_BYTES: usize = 4_096;

/// Armed timers whose definition changed between the versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerChoice {
    /// Keep the due time armed under the old definition (default: nothing fires
    /// earlier or later than people were told).
    #[default]
    Keep,
    /// Withdraw it and arm the new definition, counted from the migration.
    Rearm,
}

/// Open tasks whose lane has other groups in the new version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneChoice {
    /// The task stays with the groups (and assignee) it has (default).
    #[default]
    Keep,
    /// The task goes to the new lane's groups, unclaimed.
    Reassign,
}

/// What an operator asks for: move the running instances of `process` from
/// version `from` to version `to`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSpec {
    pub process: String,
    pub from: u32,
    pub to: u32,
    /// Old node id → new node id, for nodes renamed or replaced; any other node
    /// keeps its id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub map: BTreeMap<String, String>,
    /// Variable → expression computing its new value; it reads the instance's
    /// variables as they are (old types), e.g. `to_string(金額)`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Variable → value used when its old value does not fit the new type and no
    /// conversion is given, or the conversion fails.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: BTreeMap<String, Value>,
    #[serde(default)]
    pub timers: TimerChoice,
    #[serde(default)]
    pub lanes: LaneChoice,
}

/// A mistake in the spec itself (not in one instance): nothing is planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Where: `map.<old>`, `set.<var>`, `defaults.<var>`, `to`...
    pub field: String,
    pub message: String,
}

/// One thing found about one instance: a `problem` makes it invalid (it is not
/// migrated), a `warning` is migrated as the plan says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code: `node-gone`, `wait-mismatch`, `scope-changed`, `branch-gone`,
    /// `type-changed`, `conversion-failed`, `gateway-changed`, `local-gone`,
    /// `rearm-failed`, `invariant`, `not-running`, `wrong-version`; warnings
    /// `lane-groups-changed`, `timer-changed`, `message-changed`,
    /// `variable-dropped`, `call-changed`.
    pub code: String,
    pub message: String,
}

/// Where one piece of state lands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// `token`, `task`, `timer`, `message`, `incident`, `body`, `join`, `fork`, `variable`.
    pub what: String,
    /// The token, task, job, incident or activation id; the variable's name.
    pub id: String,
    pub from: String,
    pub to: String,
    /// What else happens to it (`re-armed, due …`, `kept`, `converted`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The plan for one instance: where everything lands, and whether it may move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePlan {
    pub instance: InstanceId,
    /// The instance's revision (history length) when planned: the apply skips an
    /// instance that moved since.
    pub revision: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    pub status: Status,
    /// Empty in a trimmed plan: the apply recomputes them.
    #[serde(default)]
    pub moves: Vec<Move>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Finding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Finding>,
}

impl InstancePlan {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// An open task record rewritten for the new version.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskChange {
    pub task: String,
    pub node: String,
    pub title: String,
    pub lane: String,
    /// New groups, or `None` to keep the record's.
    pub groups: Option<Vec<String>>,
    /// The task goes back to its groups, unclaimed.
    pub unclaim: bool,
}

/// A migrated instance, ready to commit: the instance on the new version, the
/// history line and commands (timers, subscriptions), and task records to rewrite.
#[derive(Debug, Clone)]
pub struct Migrated {
    pub instance: Instance,
    pub transition: Transition,
    pub tasks: Vec<TaskChange>,
}

/// A spec checked against both versions, ready to plan and apply.
pub struct Migration<'a> {
    pub spec: &'a MigrationSpec,
    pub from: &'a Process,
    pub to: &'a Process,
    conversions: Vec<(String, Expr)>,
    /// The names conversions may read: V's variables, then W's new ones.
    names: Vec<String>,
    /// W's node index → the forks and sub-processes it sits in at compile time.
    scopes: Vec<Option<Vec<usize>>>,
}

impl<'a> Migration<'a> {
    /// Check `spec` against versions `from` and `to`: every problem at once.
    pub fn new(spec: &'a MigrationSpec, from: &'a Process, to: &'a Process) -> Result<Self, Vec<SpecError>> {
        let mut errors = Vec::new();
        let mut err = |field: String, message: String| errors.push(SpecError { field, message });
        if from.id != spec.process || to.id != spec.process {
            err("process".into(), format!("versions of `{}` expected", spec.process));
        }
        if spec.from == spec.to {
            err("to".into(), format!("is the same version as `from` ({})", spec.from));
        }
        if spec.map.len() > MAX_MAPPINGS {
            err("map".into(), format!("{} mappings; at most {MAX_MAPPINGS}", spec.map.len()));
        }
        if spec.set.len() + spec.defaults.len() > MAX_CONVERSIONS {
            err("set".into(), format!("more than {MAX_CONVERSIONS} conversions and defaults"));
        }
        for (old, new) in &spec.map {
            if from.node(old).is_none() {
                err(format!("map.{old}"), format!("`{old}` is not a node of version {}", from.version));
            }
            if to.node(new).is_none() {
                let hint = crate::diag::suggest(new, to.index.keys().map(String::as_str))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                err(format!("map.{old}"), format!("`{new}` is not a node of version {}{hint}", to.version));
            }
        }
        let mut names: Vec<&str> = from.var_names.iter().map(String::as_str).collect();
        names.extend(to.var_names.iter().map(String::as_str).filter(|n| !from.var_names.iter().any(|v| v == n)));
        let mut conversions = Vec::new();
        for (var, src) in &spec.set {
            if to.vars.get(var).is_none() {
                err(format!("set.{var}"), format!("`{var}` is not a variable of version {}", to.version));
                continue;
            }
            if src.len() > MAX_CONVERSION_BYTES {
                err(format!("set.{var}"), format!("{} bytes; at most {MAX_CONVERSION_BYTES}", src.len()));
                continue;
            }
            match expr::compile(src, names.iter().copied()) {
                Ok(e) => conversions.push((var.clone(), e)),
                Err(e) => err(format!("set.{var}"), format!("`{src}` at {}:{}: {}", e.line, e.col, e.message)),
            }
        }
        for (var, v) in &spec.defaults {
            match to.vars.get(var) {
                None => err(format!("defaults.{var}"), format!("`{var}` is not a variable of version {}", to.version)),
                Some(s) => {
                    if let Err(e) = s.check(v) {
                        err(format!("defaults.{var}"), e);
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let names = names.into_iter().map(str::to_string).collect();
        Ok(Migration { spec, from, to, conversions, names, scopes: compare::scope_stacks(to) })
    }

    /// The node id `old` (of V) becomes in W.
    pub fn target<'s>(&'s self, old: &'s str) -> &'s str {
        self.spec.map.get(old).map(String::as_str).unwrap_or(old)
    }

    /// Plan instance `inst` (and migrate it when it may move): `tasks` are its open
    /// task records (their due dates and groups), `by` the operator.
    pub fn instance(
        &self,
        inst: &Instance,
        tasks: &BTreeMap<String, Task>,
        by: &str,
        now: DateTime<Utc>,
    ) -> (InstancePlan, Option<Migrated>) {
        rewrite::instance(self, inst, tasks, by, now)
    }
}

#[cfg(test)]
mod tests;
