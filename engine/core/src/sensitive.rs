//! Sensitive variables (`sensitive: true`): who may read their values.
//!
//! A sensitive value is shown only to members of the lanes whose user-task forms
//! show the variable (any mode): they type it in or need it for their work.
//! Everyone else, administrators included, sees [`MASK`] in the history,
//! instance views and task forms; logs never carry it. The engine keeps the real
//! value (expressions and connectors use it); masking is done where values leave.

use crate::process::{NodeKind, Process};
use crate::runtime::{HistoryEntry, HistoryEvent, Instance};
use serde_json::Value;

/// What a masked value reads as.
pub const MASK: &str = "********";

impl Process {
    /// Whether any declared variable is sensitive.
    pub fn has_sensitive(&self) -> bool {
        self.vars.values().any(|v| v.sensitive)
    }

    /// Whether `var` is sensitive.
    pub fn is_sensitive(&self, var: &str) -> bool {
        self.var(var).is_some_and(|v| v.sensitive)
    }

    /// Whether a member of `groups` may read `var`'s value: always for a variable
    /// that is not sensitive; for a sensitive one, when a lane of one of `groups`
    /// has a user task whose form shows it.
    pub fn may_read(&self, var: &str, groups: &[String]) -> bool {
        if !self.is_sensitive(var) {
            return true;
        }
        self.nodes.iter().any(|n| {
            let NodeKind::UserTask(spec) = &n.kind else { return false };
            spec.form.iter().any(|f| f.var == var)
                && n.lane
                    .as_ref()
                    .and_then(|l| self.lanes.get(l))
                    .is_some_and(|lane| lane.groups.iter().any(|g| groups.contains(g)))
        })
    }

    /// Replace the values a member of `groups` may not read with [`MASK`] (a null
    /// stays null: that it is unset is no secret).
    pub fn mask<'a>(&self, vars: impl IntoIterator<Item = (&'a String, &'a mut Value)>, groups: &[String]) {
        for (name, v) in vars {
            if !v.is_null() && !self.may_read(name, groups) {
                *v = Value::String(MASK.to_string());
            }
        }
    }

    /// Replace every sensitive value with [`MASK`] (for logs and texts nobody in
    /// particular reads).
    pub fn mask_all<'a>(&self, vars: impl IntoIterator<Item = (&'a String, &'a mut Value)>) {
        for (name, v) in vars {
            if !v.is_null() && self.is_sensitive(name) {
                *v = Value::String(MASK.to_string());
            }
        }
    }

    /// A history line with every sensitive value masked (for operators' views and logs).
    pub fn mask_history(&self, h: &mut HistoryEntry) {
        match &mut h.event {
            HistoryEvent::Started { vars, .. }
            | HistoryEvent::TaskCompleted { vars, .. }
            | HistoryEvent::IncidentResolved { vars, .. } => self.mask_all(vars.iter_mut()),
            _ => {}
        }
    }

    /// Remove sensitive values from the free texts of `inst`'s incidents and of
    /// `history`'s failure lines (a connector or an expression may quote a value):
    /// incident texts never carry them. Values shorter than [`MIN_SCRUB_CHARS`]
    /// are left alone (they would mask ordinary words).
    pub fn scrub_texts(&self, inst: &mut Instance, history: &mut [HistoryEntry]) {
        let secrets: Vec<String> = self
            .vars
            .iter()
            .filter(|(_, spec)| spec.sensitive)
            .filter_map(|(name, _)| inst.vars.get(name))
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .filter(|s| s.chars().count() >= MIN_SCRUB_CHARS)
            .collect();
        if secrets.is_empty() {
            return;
        }
        let scrub = |text: &mut String| {
            for s in &secrets {
                if text.contains(s.as_str()) {
                    *text = text.replace(s.as_str(), MASK);
                }
            }
        };
        for i in &mut inst.incidents {
            scrub(&mut i.message);
        }
        for h in history {
            match &mut h.event {
                HistoryEvent::IncidentRaised { message, .. } | HistoryEvent::JobFailed { message, .. } => {
                    scrub(message)
                }
                _ => {}
            }
        }
    }
}

/// Shortest sensitive value scrubbed out of texts.
pub const MIN_SCRUB_CHARS: usize = 3;
