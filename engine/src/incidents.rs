//! Incidents across instances: the operator's list of stopped tokens.
//!
//! An incident lives inside its instance (the instance is the source of truth); this
//! lists them by scanning instances in the `incident` state. Retry and resolve are
//! events on the instance ([`Engine::retry_incident`], [`Engine::resolve_incident`]).

use crate::engine::{Engine, EngineError};
use crate::runtime::{Incident, InstanceId, Status};
use crate::store::{IncidentFilter, InstanceFilter};
use serde::Serialize;

/// An incident with the instance it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentView {
    /// The instance.
    pub instance: InstanceId,
    /// Its process id.
    pub process: String,
    /// Its process version.
    pub version: u32,
    #[serde(flatten)]
    /// The incident.
    pub incident: Incident,
}

impl Engine {
    /// Open incidents, oldest instance first.
    pub fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<IncidentView>, EngineError> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let instances = self.instances(&InstanceFilter {
            process: filter.process.clone(),
            status: Some(Status::Incident),
            ..InstanceFilter::default()
        })?;
        let mut out = Vec::new();
        for inst in instances {
            for i in &inst.incidents {
                if filter.node.as_ref().is_some_and(|n| *n != i.node) {
                    continue;
                }
                out.push(IncidentView {
                    instance: inst.id,
                    process: inst.process.clone(),
                    version: inst.version,
                    incident: i.clone(),
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}
