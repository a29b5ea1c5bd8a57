//! Incidents across instances: the operator's list of stopped tokens.
//!
//! An incident lives inside its instance (the instance is the source of truth); this
//! lists them by reading the instances in the `incident` state (an index), in pages. Retry and resolve are
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
        /// Most instances read per store query. Each has at least one incident, so
        /// a query asks for no more than the page still needs: a page costs the
        /// same however many instances the store holds.
        const MAX_CHUNK: usize = 256;
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let chunk = limit.saturating_sub(out.len()).clamp(1, MAX_CHUNK);
            let instances = self.instances(&InstanceFilter {
                process: filter.process.clone(),
                status: Some(Status::Incident),
                after,
                limit: Some(chunk),
                ..InstanceFilter::default()
            })?;
            let full = instances.len() == chunk;
            for inst in instances {
                after = Some(inst.id);
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
            if !full {
                return Ok(out);
            }
        }
    }
}
