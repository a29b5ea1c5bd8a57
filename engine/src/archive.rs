//! History archival: finished instances older than their process's `retention:`
//! move out of the live store into JSON Lines files, and a summary stays behind.
//!
//! One run ([`Engine::archive`]) works in chunks. For each chunk:
//! 1. an [`ArchiveIntent`] (file, its length now, the ids) is written durably;
//! 2. one line per instance (`{"archived": summary, "instance": …, "history": […]}`)
//!    is appended to the current file, which is fsynced (and its directory, when
//!    the file is new);
//! 3. one store write deletes the instances (record, tasks and their index
//!    entries, history, participant entries), keeps their summaries and clears the
//!    intent.
//!
//! A crash before 3 leaves the intent: the next run first cuts the file back to
//! the recorded length (the chunk's lines, whole or torn, go) and the instances,
//! still live, are archived again. A crash after 3 has lost nothing. So a kill at
//! any point loses no instance and writes none twice. Only one archiver may run
//! on a store at a time (one `nagare serve`, or `nagare archive` on a stopped
//! server's data directory; on a shared PostgreSQL store, one node).
//!
//! Files are `archive-<YYYYMMDD>-<NNNN>.jsonl` (the run's date by the engine clock),
//! a new one when the current one would pass `max_file_bytes`.
//!
//! Long-running instances: [`ArchiveOptions::compact_over`] replaces the oldest
//! history lines of a running instance with more than that many lines by one
//! `compacted` line (counts per event, time span), keeping the newest half.

use crate::engine::{Engine, EngineError};
use crate::runtime::{HistoryEntry, HistoryEvent, Instance, InstanceId, Status};
use crate::store::{ArchiveIntent, ArchivedInstance, InstanceFilter, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Default size at which a new archive file is started.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Instances per chunk (one intent, one fsync, one store write).
pub const DEFAULT_CHUNK: usize = 500;
/// The fewest history lines `compact_over` may keep (smaller is refused).
pub const MIN_COMPACT_OVER: usize = 100;

/// Why an archive run stopped (what it had finished stays finished).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The store or the engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An archive file could not be written, synced or cut back.
    #[error("archive file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The options make no sense (e.g. `compact_over` below [`MIN_COMPACT_OVER`]).
    #[error("{0}")]
    Invalid(String),
}

impl From<StoreError> for ArchiveError {
    fn from(e: StoreError) -> Self {
        ArchiveError::Engine(e.into())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.display().to_string(), source }
}

/// What one run does.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Where the JSON Lines files go (created if missing).
    pub dir: PathBuf,
    /// Archive every finished instance that ended before this, whatever its
    /// process's retention (and also those of processes without one).
    pub before: Option<DateTime<Utc>>,
    /// Only count what would move.
    pub dry_run: bool,
    /// A file is rotated once it is this large (default [`DEFAULT_MAX_FILE_BYTES`]).
    pub max_file_bytes: u64,
    /// Instances appended and deleted per commit (default [`DEFAULT_CHUNK`]).
    pub chunk: usize,
    /// At most this many instances in this run.
    pub limit: Option<usize>,
    /// Compact the history of running instances with more lines than this.
    pub compact_over: Option<usize>,
}

impl ArchiveOptions {
    /// Archive into `dir` with the defaults: by retention, not dry, no limit.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ArchiveOptions {
            dir: dir.into(),
            before: None,
            dry_run: false,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            chunk: DEFAULT_CHUNK,
            limit: None,
            compact_over: None,
        }
    }
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveReport {
    /// Nothing was moved: the counts say what would have been.
    pub dry_run: bool,
    /// Finished instances old enough, by process.
    pub by_process: BTreeMap<String, usize>,
    /// Instances archived (moved out of the live store).
    pub archived: usize,
    /// Bytes appended to archive files.
    pub bytes: u64,
    /// Files written to (names within the directory).
    pub files: Vec<String>,
    /// Instances whose lines an interrupted run had left and this run cut off.
    pub recovered: usize,
    /// Running instances whose history was compacted, and the lines removed.
    pub compacted: usize,
    /// History lines folded into `compacted` summary lines.
    pub compacted_lines: usize,
}

/// One line of an archive file.
#[derive(Serialize)]
struct Line<'a> {
    archived: &'a ArchivedInstance,
    instance: &'a Instance,
    history: &'a [HistoryEntry],
}

/// An instance found by id or business key, live or archived.
#[derive(Debug, Clone)]
pub enum Found {
    /// Still in the live store.
    Live(Box<Instance>),
    /// Archived: its summary (the full record is in its archive file).
    Archived(ArchivedInstance),
}

impl Engine {
    /// The summary of an archived instance.
    pub fn archived(&self, id: InstanceId) -> Result<Option<ArchivedInstance>, EngineError> {
        Ok(self.store().archived(id)?)
    }

    /// The instance holding business key `key` of `process`, live or archived.
    pub fn find_by_key(&self, process: &str, key: &str) -> Result<Option<Found>, EngineError> {
        let Some(id) = self.store().instance_by_key(process, key)? else { return Ok(None) };
        self.find(id)
    }

    /// Instance `id`, live or archived.
    pub fn find(&self, id: InstanceId) -> Result<Option<Found>, EngineError> {
        if let Some(i) = self.store().instance(id)? {
            return Ok(Some(Found::Live(Box::new(i))));
        }
        Ok(self.store().archived(id)?.map(Found::Archived))
    }

    /// The live instance holding a business key; an archived one is finished: a
    /// start with its key is refused as for a finished instance (the key stays taken).
    pub(crate) fn keyed_instance(&self, id: InstanceId) -> Result<Instance, EngineError> {
        match self.find(id)? {
            Some(Found::Live(i)) => Ok(*i),
            Some(Found::Archived(a)) => {
                Err(EngineError::Conflict(crate::runtime::Rejection::Finished(a.status.as_str())))
            }
            None => Err(EngineError::UnknownInstance(id)),
        }
    }

    /// Archive finished instances past their retention (see the module doc).
    pub fn archive(&self, opts: &ArchiveOptions) -> Result<ArchiveReport, ArchiveError> {
        if opts.chunk == 0 || opts.max_file_bytes == 0 {
            return Err(ArchiveError::Invalid("chunk and max file size must be positive".into()));
        }
        if opts.compact_over.is_some_and(|n| n < MIN_COMPACT_OVER) {
            return Err(ArchiveError::Invalid(format!("compact_over must be at least {MIN_COMPACT_OVER} lines")));
        }
        let mut report = ArchiveReport { dry_run: opts.dry_run, ..ArchiveReport::default() };
        if !opts.dry_run {
            report.recovered = self.recover_archive()?;
        }
        let now = self.now();
        let candidates = self.archive_candidates(opts, now)?;
        for i in &candidates {
            *report.by_process.entry(i.clone().1).or_default() += 1;
        }
        if !opts.dry_run && !candidates.is_empty() {
            std::fs::create_dir_all(&opts.dir).map_err(io(&opts.dir))?;
            for chunk in candidates.chunks(opts.chunk) {
                let ids: Vec<InstanceId> = chunk.iter().map(|(id, _)| *id).collect();
                self.archive_chunk(opts, &ids, now, &mut report)?;
            }
        }
        if let Some(over) = opts.compact_over {
            self.compact_running(over, opts.dry_run, now, &mut report)?;
        }
        Ok(report)
    }

    /// An intent left by a run cut short: cut its file back, forget the intent.
    /// Returns how many instances the cut-off lines were for.
    fn recover_archive(&self) -> Result<usize, ArchiveError> {
        let Some(intent) = self.store().archive_intent()? else { return Ok(0) };
        let path = PathBuf::from(&intent.path);
        match OpenOptions::new().write(true).open(&path) {
            Ok(f) => {
                let len = f.metadata().map_err(io(&path))?.len();
                if len > intent.offset {
                    f.set_len(intent.offset).map_err(io(&path))?;
                    f.sync_all().map_err(io(&path))?;
                }
            }
            // Never created: nothing to cut.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        tracing::warn!(file = %intent.path, offset = intent.offset, instances = intent.ids.len(), "an archive run was cut short; its file was cut back and the instances stay live until archived again");
        self.store().set_archive_intent(None)?;
        Ok(intent.ids.len())
    }

    /// Finished instances ended before their cut-off, in id order: (id, process).
    fn archive_candidates(
        &self,
        opts: &ArchiveOptions,
        now: DateTime<Utc>,
    ) -> Result<Vec<(InstanceId, String)>, ArchiveError> {
        // Retention per process, from its latest version.
        let retention: BTreeMap<String, chrono::Duration> = self
            .processes()
            .iter()
            .filter_map(|versions| versions.last())
            .filter_map(|p| p.retention.map(|r| (p.id.clone(), r)))
            .collect();
        let limit = opts.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page =
                self.store().instances(&InstanceFilter { after, limit: Some(1024), ..InstanceFilter::default() })?;
            for i in &page {
                // Instances of a watched record stay: the record's next start reads
                // the last one's trigger (generation, revision).
                if !matches!(i.status, Status::Completed | Status::Cancelled) || i.trigger.is_some() {
                    continue;
                }
                let ended = i.ended_at.unwrap_or(i.started_at);
                let cutoff = match (opts.before, retention.get(&i.process)) {
                    (Some(b), _) => Some(b),
                    (None, Some(r)) => now.checked_sub_signed(*r),
                    (None, None) => None,
                };
                if cutoff.is_some_and(|c| ended < c) {
                    out.push((i.id, i.process.clone()));
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            match page.last() {
                Some(l) if page.len() == 1024 => after = Some(l.id),
                _ => return Ok(out),
            }
        }
    }

    fn archive_chunk(
        &self,
        opts: &ArchiveOptions,
        ids: &[InstanceId],
        now: DateTime<Utc>,
        report: &mut ArchiveReport,
    ) -> Result<(), ArchiveError> {
        // The lines first, to know their size (and so the file they go to).
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(inst) = self.store().instance(*id)? else { continue };
            let history = self.store().history(*id)?;
            rows.push((inst, history));
        }
        if rows.is_empty() {
            return Ok(());
        }
        let draft: Vec<u8> = encode(&rows, "", now)?;
        let (name, path, offset) = current_file(&opts.dir, now, draft.len() as u64, opts.max_file_bytes)?;
        let bytes = encode(&rows, &name, now)?;
        let summaries: Vec<ArchivedInstance> = rows.iter().map(|(i, _)| ArchivedInstance::of(i, &name, now)).collect();
        let intent =
            ArchiveIntent { path: path.display().to_string(), offset, ids: summaries.iter().map(|s| s.id).collect() };
        self.store().set_archive_intent(Some(&intent))?;
        fault::at(fault::AFTER_INTENT);
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        if fault::armed(fault::TORN_WRITE) {
            // Half the lines and a few bytes more: a line cut in the middle.
            let _ = f.write_all(&bytes[..(bytes.len() / 2 + 7).min(bytes.len() - 1)]).and_then(|()| f.sync_all());
            fault::at(fault::TORN_WRITE);
        }
        f.write_all(&bytes).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        if offset == 0 {
            sync_dir(&opts.dir)?;
        }
        fault::at(fault::AFTER_FSYNC);
        self.store().archive(&summaries)?;
        fault::chunk_done();
        report.archived += summaries.len();
        report.bytes += bytes.len() as u64;
        if !report.files.contains(&name) {
            report.files.push(name);
        }
        Ok(())
    }

    /// Compact the history of running instances with more than `over` lines.
    fn compact_running(
        &self,
        over: usize,
        dry_run: bool,
        now: DateTime<Utc>,
        report: &mut ArchiveReport,
    ) -> Result<(), ArchiveError> {
        let mut after = None;
        loop {
            let page =
                self.store().instances(&InstanceFilter { after, limit: Some(1024), ..InstanceFilter::default() })?;
            for i in page.iter().filter(|i| !matches!(i.status, Status::Completed | Status::Cancelled)) {
                // Cheap test first: lines written, not lines kept.
                if (i.history_len as usize) <= over {
                    continue;
                }
                let history = self.store().history(i.id)?;
                if history.len() <= over {
                    continue;
                }
                // Keep the newest half; the rest becomes one line.
                let cut = history.len() - over / 2;
                let old = &history[..cut];
                let before = history[cut].seq;
                let mut events = BTreeMap::new();
                let mut lines = 0u32;
                for h in old {
                    match &h.event {
                        // An earlier summary's counts carry over.
                        HistoryEvent::Compacted { lines: n, events: e, .. } => {
                            lines += n;
                            for (k, v) in e {
                                *events.entry(k.clone()).or_insert(0) += v;
                            }
                        }
                        e => {
                            lines += 1;
                            *events.entry(e.name().to_string()).or_insert(0) += 1;
                        }
                    }
                }
                report.compacted += 1;
                report.compacted_lines += old.len().saturating_sub(1);
                if dry_run {
                    continue;
                }
                let summary = HistoryEntry {
                    seq: old[0].seq,
                    at: now,
                    node: None,
                    user: None,
                    proxy: None,
                    event: HistoryEvent::Compacted { lines, from: old[0].at, to: old[old.len() - 1].at, events },
                };
                let _guard = self.inner.locks[crate::engine::lock_index(i.id)].lock().expect("lock");
                self.store().compact_history(i.id, before, summary)?;
            }
            match page.last() {
                Some(l) if page.len() == 1024 => after = Some(l.id),
                _ => return Ok(()),
            }
        }
    }
}

fn encode(rows: &[(Instance, Vec<HistoryEntry>)], file: &str, now: DateTime<Utc>) -> Result<Vec<u8>, ArchiveError> {
    let mut out = Vec::new();
    for (inst, history) in rows {
        let archived = ArchivedInstance::of(inst, file, now);
        serde_json::to_writer(&mut out, &Line { archived: &archived, instance: inst, history })
            .map_err(|e| ArchiveError::Invalid(format!("instance {} does not encode: {e}", inst.id)))?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The file the next `adding` bytes go to: today's last one, or a new one when
/// they would not fit (a chunk larger than the limit still gets a file of its
/// own). (name, path, its current length).
fn current_file(dir: &Path, now: DateTime<Utc>, adding: u64, max: u64) -> Result<(String, PathBuf, u64), ArchiveError> {
    let prefix = format!("archive-{}-", now.format("%Y%m%d"));
    let mut last: Option<u32> = None;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let name = entry.map_err(io(dir))?.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".jsonl")).and_then(|n| n.parse().ok())
        {
            last = last.max(Some(n));
        }
    }
    let name_of = |n: u32| format!("{prefix}{n:04}.jsonl");
    if let Some(n) = last {
        let path = dir.join(name_of(n));
        let len = std::fs::metadata(&path).map_err(io(&path))?.len();
        if len == 0 || len + adding <= max {
            return Ok((name_of(n), path, len));
        }
        return Ok((name_of(n + 1), dir.join(name_of(n + 1)), 0));
    }
    Ok((name_of(1), dir.join(name_of(1)), 0))
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    // Directories cannot be opened for sync on every platform; best effort there.
    match File::open(dir) {
        Ok(d) => d.sync_all().or_else(|e| if cfg!(unix) { Err(e) } else { Ok(()) }).map_err(io(dir)),
        Err(e) => Err(io(dir)(e)),
    }
}

/// Read the archived instance ids of an archive file (for checks and tests).
pub fn ids_in_file(path: &Path) -> Result<Vec<InstanceId>, ArchiveError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .map_err(|e| ArchiveError::Invalid(format!("{}: a bad line: {e}", path.display())))?;
            v["archived"]["id"]
                .as_u64()
                .ok_or_else(|| ArchiveError::Invalid(format!("{}: a line without an id", path.display())))
        })
        .collect()
}

/// Crash injection for the crash tests: abort the process (as a `kill -9` would
/// stop it: no destructor, no flush) at one point of one chunk. Off unless armed.
#[doc(hidden)]
pub mod fault {
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

    pub const AFTER_INTENT: u32 = 1;
    /// Half the chunk's bytes written and fsynced, then abort.
    pub const TORN_WRITE: u32 = 2;
    pub const AFTER_FSYNC: u32 = 3;

    static POINT: AtomicU32 = AtomicU32::new(0);
    static CHUNK: AtomicUsize = AtomicUsize::new(0);

    /// Abort at `point` of the chunk after `chunks_done` complete chunks.
    pub fn arm(point: u32, chunks_done: usize) {
        CHUNK.store(chunks_done, Ordering::SeqCst);
        POINT.store(point, Ordering::SeqCst);
    }

    pub(crate) fn armed(point: u32) -> bool {
        POINT.load(Ordering::SeqCst) == point && CHUNK.load(Ordering::SeqCst) == 0
    }

    pub(crate) fn at(point: u32) {
        if armed(point) {
            std::process::abort();
        }
    }

    pub(crate) fn chunk_done() {
        let _ = CHUNK.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}
