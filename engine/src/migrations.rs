//! Instance migration at the edge: a plan across the store (a dry run), and the
//! apply, instance by instance, each in one commit under its instance lock.
//!
//! The apply trusts nothing in the plan but the operator's choices: every instance
//! is read again and migrated by the same pure function that planned it
//! (`nagare_core::migrate`). An instance already on the target version is skipped
//! (so re-running a plan after a crash resumes it), one whose revision moved since
//! the plan is skipped and reported, one that became invalid is skipped too.

use crate::engine::{lock_index, Engine, EngineError, NewWaits};
use crate::migrate::{InstancePlan, Migrated, Migration, MigrationSpec};
use crate::runtime::{FieldError, Instance, InstanceId, Rejection, Task, Transition, Wait};
use crate::store::{Batch, InstanceFilter, StoreError, Subscription};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Instances read from the store per page while planning.
const PAGE: usize = 500;

/// A migration plan: the operator's spec and, per running instance of the source
/// version, where its state lands and what is invalid. Written as JSON by
/// `nagare migrate plan --json` and read back by `nagare migrate apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationPlan {
    pub spec: MigrationSpec,
    pub planned_at: DateTime<Utc>,
    pub planned_by: String,
    pub summary: PlanSummary,
    pub instances: Vec<InstancePlan>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Running instances of the source version.
    pub instances: usize,
    pub valid: usize,
    pub invalid: usize,
    /// Valid instances with at least one warning.
    pub with_warnings: usize,
}

/// What the apply did with one instance of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ApplyOutcome {
    /// Moved to the target version (one commit, a `migrated` history line).
    Migrated { instance: InstanceId },
    /// Already on the target version (an earlier apply, perhaps interrupted).
    AlreadyMigrated { instance: InstanceId },
    /// Its revision changed since the plan: plan again to include it.
    Moved { instance: InstanceId, planned: u32, now: u32 },
    /// Invalid (in the plan, or on the re-check): not touched.
    Invalid { instance: InstanceId, problems: Vec<String> },
    /// Finished or deleted since the plan.
    Gone { instance: InstanceId },
    /// The store failed for this instance; running the apply again retries it.
    Failed { instance: InstanceId, error: String },
}

impl ApplyOutcome {
    pub fn instance(&self) -> InstanceId {
        match self {
            ApplyOutcome::Migrated { instance }
            | ApplyOutcome::AlreadyMigrated { instance }
            | ApplyOutcome::Moved { instance, .. }
            | ApplyOutcome::Invalid { instance, .. }
            | ApplyOutcome::Gone { instance }
            | ApplyOutcome::Failed { instance, .. } => *instance,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ApplyOutcome::Migrated { .. } => "migrated",
            ApplyOutcome::AlreadyMigrated { .. } => "already_migrated",
            ApplyOutcome::Moved { .. } => "moved",
            ApplyOutcome::Invalid { .. } => "invalid",
            ApplyOutcome::Gone { .. } => "gone",
            ApplyOutcome::Failed { .. } => "failed",
        }
    }
}

/// What an apply did, instance by instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Outcome name → how many.
    pub counts: BTreeMap<String, usize>,
    pub outcomes: Vec<ApplyOutcome>,
}

impl Engine {
    /// The versions and the checked spec, or why the spec cannot be planned (422).
    fn versions(
        &self,
        spec: &MigrationSpec,
    ) -> Result<(std::sync::Arc<crate::process::Process>, std::sync::Arc<crate::process::Process>), EngineError> {
        let get = |v: u32| {
            self.process(&spec.process, v)
                .ok_or_else(|| EngineError::UnknownProcess(format!("{} version {v}", spec.process)))
        };
        Ok((get(spec.from)?, get(spec.to)?))
    }

    /// Plan a migration (a dry run: nothing is written): every running instance of
    /// `spec.from`, in id order.
    pub fn plan_migration(&self, spec: MigrationSpec, by: &str) -> Result<MigrationPlan, EngineError> {
        let (from, to) = self.versions(&spec)?;
        let m = Migration::new(&spec, &from, &to).map_err(spec_errors)?;
        let now = self.now();
        let mut instances = Vec::new();
        let mut filter =
            InstanceFilter { process: Some(spec.process.clone()), limit: Some(PAGE), ..Default::default() };
        loop {
            let page = self.inner.store.instances(&filter)?;
            let Some(last) = page.last().map(|i| i.id) else { break };
            for inst in page.iter().filter(|i| i.version == spec.from && !i.status.is_finished()) {
                let tasks = self.open_task_records(inst)?;
                instances.push(m.instance(inst, &tasks, by, now).0);
            }
            if page.len() < PAGE {
                break;
            }
            filter.after = Some(last);
        }
        let valid = instances.iter().filter(|p| p.is_valid()).count();
        let summary = PlanSummary {
            instances: instances.len(),
            valid,
            invalid: instances.len() - valid,
            with_warnings: instances.iter().filter(|p| p.is_valid() && !p.warnings.is_empty()).count(),
        };
        drop(m);
        Ok(MigrationPlan { spec, planned_at: now, planned_by: by.to_string(), summary, instances })
    }

    /// Apply `plan`: each valid instance in its own commit; `progress` hears of
    /// each outcome as it happens. Safe to run again (after a crash, or to retry
    /// failures): instances already migrated are skipped.
    pub fn apply_migration(
        &self,
        plan: &MigrationPlan,
        by: &str,
        mut progress: impl FnMut(&ApplyOutcome),
    ) -> Result<ApplyReport, EngineError> {
        let (from, to) = self.versions(&plan.spec)?;
        let m = Migration::new(&plan.spec, &from, &to).map_err(spec_errors)?;
        let mut report = ApplyReport::default();
        for p in &plan.instances {
            let outcome = match self.migrate_one(&m, p, by) {
                Ok((o, waits)) => {
                    // A re-subscribed message may have been buffered already
                    // (delivered once the instance lock is released).
                    if !waits.is_empty() {
                        self.settle(waits);
                    }
                    o
                }
                Err(e) => ApplyOutcome::Failed { instance: p.instance, error: e.to_string() },
            };
            progress(&outcome);
            *report.counts.entry(outcome.name().to_string()).or_default() += 1;
            report.outcomes.push(outcome);
        }
        Ok(report)
    }

    fn migrate_one(&self, m: &Migration, p: &InstancePlan, by: &str) -> Result<(ApplyOutcome, NewWaits), EngineError> {
        let id = p.instance;
        let done = |o: ApplyOutcome| Ok((o, NewWaits::new()));
        let _guard = self.inner.locks[lock_index(id)].lock().expect("lock");
        let Some(inst) = self.inner.store.instance(id)? else { return done(ApplyOutcome::Gone { instance: id }) };
        if inst.process == m.spec.process && inst.version == m.spec.to {
            return done(ApplyOutcome::AlreadyMigrated { instance: id });
        }
        if inst.status.is_finished() {
            return done(ApplyOutcome::Gone { instance: id });
        }
        if !p.is_valid() {
            return done(invalid(id, p));
        }
        if inst.history_len != p.revision {
            return done(ApplyOutcome::Moved { instance: id, planned: p.revision, now: inst.history_len });
        }
        let tasks = self.open_task_records(&inst)?;
        let (now_plan, migrated) = m.instance(&inst, &tasks, by, self.now());
        let Some(migrated) = migrated else { return done(invalid(id, &now_plan)) };
        let extra = self.migration_writes(&inst, &migrated, &tasks)?;
        let Migrated { instance, transition, .. } = migrated;
        let part = self.prepare(&instance, transition, None)?;
        match self.commit_parts(vec![part], extra) {
            Ok(waits) => Ok((ApplyOutcome::Migrated { instance: id }, waits)),
            // Another node moved it first (shared store): as if it moved since the plan.
            Err(EngineError::Store(StoreError::Conflict(_))) => {
                let now = self.inner.store.instance(id)?.map_or(0, |i| i.history_len);
                done(ApplyOutcome::Moved { instance: id, planned: p.revision, now })
            }
            Err(e) => Err(e),
        }
    }

    /// The open task records of `inst`, by id.
    fn open_task_records(&self, inst: &Instance) -> Result<BTreeMap<String, Task>, EngineError> {
        let mut out = BTreeMap::new();
        for id in inst.open_task_ids() {
            if let Some(t) = self.inner.store.task(id)? {
                out.insert(id.to_string(), t);
            }
        }
        Ok(out)
    }

    /// The projections a migration rewrites besides what its commands say: open task
    /// records (version, node, title, lane, groups, assignee), the node named by
    /// kept jobs and subscriptions of tokens that changed node.
    fn migration_writes(
        &self,
        old: &Instance,
        migrated: &Migrated,
        tasks: &BTreeMap<String, Task>,
    ) -> Result<Batch, EngineError> {
        let store = &self.inner.store;
        let new = &migrated.instance;
        let mut extra = Batch::default();
        for c in &migrated.tasks {
            let Some(rec) = tasks.get(&c.task) else { continue };
            let mut t = Task {
                version: new.version,
                node: c.node.clone(),
                title: c.title.clone(),
                lane: c.lane.clone(),
                ..rec.clone()
            };
            if let Some(g) = &c.groups {
                t.groups = g.clone();
            }
            if c.unclaim {
                t.assignee = None;
            }
            extra.tasks.push((Some(rec.clone()), t));
        }
        let fresh = fresh_jobs(&migrated.transition);
        let mut jobs: Vec<(&str, &str)> = Vec::new();
        for t in &new.tokens {
            if let Wait::Job { job, .. } | Wait::Timer { job } | Wait::Call { job, .. } = &t.wait {
                jobs.push((job, &t.node));
            }
            jobs.extend(t.timers.iter().map(|a| (a.job.as_str(), t.node.as_str())));
        }
        for w in &new.forks {
            jobs.extend(w.timers.iter().map(|a| (a.job.as_str(), w.fork.as_str())));
        }
        for (job, node) in jobs.into_iter().filter(|(j, _)| !fresh.contains(*j)) {
            if let Some(rec) = store.job(job)? {
                if rec.node != node {
                    let changed = crate::runtime::Job { node: node.to_string(), ..rec.clone() };
                    extra.jobs_put.push((Some(rec), changed));
                }
            }
        }
        let subscribed = fresh_subscriptions(&migrated.transition);
        for t in &new.tokens {
            let was = old.tokens.iter().find(|o| o.id == t.id).map(|o| o.node.as_str());
            if was == Some(t.node.as_str()) {
                continue;
            }
            for (name, key) in t.messages().filter(|(n, k)| !subscribed.contains(&(t.id, n.to_string(), k.to_string())))
            {
                let sub = Subscription {
                    name: name.to_string(),
                    key: key.to_string(),
                    instance: new.id,
                    token: t.id,
                    process: new.process.clone(),
                    node: t.node.clone(),
                };
                // Deletes go before puts in a batch: this rewrites the entry.
                extra.subscriptions_delete.push(sub.clone());
                extra.subscriptions_put.push(sub);
            }
        }
        Ok(extra)
    }
}

/// Jobs the migration's own commands schedule (re-armed timers).
fn fresh_jobs(tr: &Transition) -> HashSet<String> {
    tr.commands
        .iter()
        .filter_map(|c| match c {
            crate::runtime::Command::ScheduleJob(j) => Some(j.id.clone()),
            _ => None,
        })
        .collect()
}

/// Subscriptions the migration's own commands make (re-subscribed messages).
fn fresh_subscriptions(tr: &Transition) -> HashSet<(u32, String, String)> {
    tr.commands
        .iter()
        .filter_map(|c| match c {
            crate::runtime::Command::Subscribe { token, name, key, .. } => Some((*token, name.clone(), key.clone())),
            _ => None,
        })
        .collect()
}

fn invalid(instance: InstanceId, p: &InstancePlan) -> ApplyOutcome {
    ApplyOutcome::Invalid {
        instance,
        problems: p.problems.iter().map(|f| format!("{}: {}", f.code, f.message)).collect(),
    }
}

/// Spec mistakes as a 422 with one field error each.
fn spec_errors(errors: Vec<crate::migrate::SpecError>) -> EngineError {
    EngineError::Rejected(Rejection::InvalidData(
        errors.into_iter().map(|e| FieldError { field: e.field, problem: e.message }).collect(),
    ))
}
