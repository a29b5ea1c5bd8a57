//! Starts for outside records (a watched kintone record): at most one *running*
//! instance per record, and a new generation when the record matches again after
//! its instance ended.
//!
//! A record's instances carry the business keys `<record>` (generation 1),
//! `<record>#2`, `<record>#3`... Every start for a record holds the lock of the
//! record's key while it finds the last generation and decides, so a poll and a
//! webhook that see the same change at once start it once: the second finds the
//! generation the first just committed, running.

use crate::engine::{lock_index, Engine, EngineError, StartOptions};
use crate::expr::Vars;
use crate::model::OnRetrigger;
use crate::process::Process;
use crate::runtime::{Instance, Trigger};
use crate::store::Batch;

/// Most generations (re-triggered instances) of one record.
pub const MAX_GENERATIONS: u32 = 100_000;

/// How a record start was asked for.
#[derive(Debug, Clone)]
pub struct RecordStartOptions {
    /// Who (or what) asked for the start, for the history.
    pub by: Option<String>,
    /// Which trigger: `poll`, `webhook`, `manual`... (said in the history).
    pub via: String,
    /// What to do when the record's last instance has ended.
    pub on_retrigger: OnRetrigger,
    /// The record's revision now, if the source has one. A record whose revision
    /// is not above the one its last instance started from has not changed since:
    /// it does not start again (so a process that ends leaving its record in the
    /// watch condition does not start over and over).
    pub revision: Option<u64>,
}

impl Default for RecordStartOptions {
    fn default() -> Self {
        RecordStartOptions { by: None, via: "manual".into(), on_retrigger: OnRetrigger::New, revision: None }
    }
}

/// What a record start did.
#[derive(Debug, Clone)]
pub enum RecordStart {
    /// A new instance (generation 1, or the next one).
    Started(Instance),
    /// The record's instance is still running: nothing started.
    Running(Instance),
    /// The record's last instance ended and it does not start again: why.
    Ended {
        /// The last instance of the record.
        last: Instance,
        /// Why no new one starts.
        reason: String,
    },
}

impl RecordStart {
    /// The instance started, or the record's last one.
    pub fn into_instance(self) -> Instance {
        match self {
            RecordStart::Started(i) | RecordStart::Running(i) | RecordStart::Ended { last: i, .. } => i,
        }
    }
}

/// Business key of generation `g` of `record`.
pub fn generation_key(record: &str, g: u32) -> String {
    if g <= 1 {
        record.to_string()
    } else {
        format!("{record}#{g}")
    }
}

impl Engine {
    /// The record key of a start of watched process `p` with `vars`: `Some` when
    /// the watch's record variable is given and its source keys records.
    pub(crate) fn record_key_of(&self, p: &Process, vars: &Vars) -> Result<Option<String>, EngineError> {
        let Some(w) = &p.watch else { return Ok(None) };
        let Some(var) = &w.record_var else { return Ok(None) };
        let Some(id) = vars.get(var).filter(|v| !v.is_null()) else { return Ok(None) };
        let Some(rule) = self.connectors().record_key(&w.source) else { return Ok(None) };
        rule(&w.settings, id).map(Some).map_err(|why| {
            EngineError::Rejected(crate::runtime::Rejection::InvalidData(vec![crate::runtime::FieldError {
                field: var.clone(),
                problem: format!("names the watched record, but no record key can be made: {why}"),
            }]))
        })
    }

    /// The last generation of `record` for process `p`: (generation, instance id).
    fn last_generation(&self, p: &str, record: &str) -> Result<Option<(u32, u64)>, EngineError> {
        let store = &self.inner.store;
        let at = |g: u32| store.instance_by_key(p, &generation_key(record, g));
        let Some(first) = at(1)? else { return Ok(None) };
        // Generations are contiguous: gallop, then bisect (log n lookups).
        let (mut lo, mut lo_id) = (1u32, first);
        let mut hi = 2u32;
        loop {
            match at(hi)? {
                Some(id) if hi < MAX_GENERATIONS => {
                    (lo, lo_id) = (hi, id);
                    hi = hi.saturating_mul(2).min(MAX_GENERATIONS);
                }
                Some(id) => return Ok(Some((hi, id))),
                None => break,
            }
        }
        // `lo` is taken, `hi` is free.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match at(mid)? {
                Some(id) => (lo, lo_id) = (mid, id),
                None => hi = mid,
            }
        }
        Ok(Some((lo, lo_id)))
    }

    /// Start an instance of `process` for outside record `record` (its key without
    /// generation, e.g. `kintone:1:5`), unless one is running: generation 1 the
    /// first time, the next generation when the last one ended (by `on_retrigger`).
    pub fn start_record(
        &self,
        process: &str,
        record: &str,
        vars: Vars,
        o: RecordStartOptions,
    ) -> Result<RecordStart, EngineError> {
        let span = crate::spans::call("start_record");
        span.record("process", process);
        let _span = span.entered();
        let p = self.latest(process).ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        self.check_files(&p, &vars)?;
        let _guard = self.inner.key_locks[lock_index((&p.id, record))].lock().expect("lock");
        let generation = match self.last_generation(&p.id, record)? {
            None => 1,
            Some((g, id)) => {
                let last = self.instance(id)?;
                if !last.status.is_finished() {
                    return Ok(RecordStart::Running(last));
                }
                if o.on_retrigger == OnRetrigger::Ignore {
                    let reason =
                        format!("instance {id} of the record ended, and the watch says `on_retrigger: ignore`");
                    return Ok(RecordStart::Ended { last, reason });
                }
                let before = last.trigger.as_ref().and_then(|t| t.revision);
                if let (Some(now), Some(before)) = (o.revision, before) {
                    if now <= before {
                        let reason = format!(
                            "instance {id} of the record ended, and the record has not changed since it started"
                        );
                        return Ok(RecordStart::Ended { last, reason });
                    }
                }
                if g >= MAX_GENERATIONS {
                    let reason =
                        format!("the record has had {MAX_GENERATIONS} instances, the most one record may have");
                    return Ok(RecordStart::Ended { last, reason });
                }
                g + 1
            }
        };
        let trigger = Trigger { via: o.via, record: record.to_string(), generation, revision: o.revision };
        let opts = StartOptions { by: o.by, business_key: Some(generation_key(record, generation)) };
        let (inst, waits) = self.start_new(&p, vars, opts, Some(trigger), Batch::default())?;
        drop(_guard);
        Ok(RecordStart::Started(self.settle_for(inst, waits)?))
    }
}
