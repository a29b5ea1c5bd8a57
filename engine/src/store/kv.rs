//! Records on an ordered key-value backend: the one implementation of the key layout.

use super::keys;
use super::*;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicU64, Ordering};

/// A key and a value (`None` deletes the key).
pub type Op = (Vec<u8>, Option<Vec<u8>>);
/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// An ordered key-value backend with atomic, durable batches.
pub trait Kv: Send + Sync {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Pairs whose key starts with `prefix`, in key order, at most `limit`.
    fn scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError>;
    /// Apply all ops atomically and make them durable before returning.
    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;
    /// The last pair whose key starts with `prefix`.
    fn last(&self, prefix: &[u8]) -> Result<Option<KvPair>, StoreError>;
    /// Like [`Kv::scan`], but only keys at or after `from` (paging through an index).
    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        let mut all = self.scan(prefix, usize::MAX)?;
        all.retain(|(k, _)| k.as_slice() >= from);
        all.truncate(limit);
        Ok(all)
    }
    /// Make every applied batch durable (a no-op where `apply` already is).
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// [`Store`] over any [`Kv`] backend.
pub struct KvStore<K: Kv> {
    kv: K,
    /// Last instance id handed out. Restored from the highest stored instance: an id
    /// becomes visible only when its instance is committed, so one handed out to a
    /// start that never committed may safely be handed out again.
    last_id: AtomicU64,
    /// Last message id handed out, restored from the buffered messages.
    last_message: AtomicU64,
    /// See [`Store::incarnation`].
    incarnation: String,
}

/// A job record as stored: the job, and how often the executor started it since the
/// record was last written ([`Store::count_start`]).
#[derive(Serialize, Deserialize)]
struct StoredJob {
    #[serde(flatten)]
    job: Job,
    #[serde(default, skip_serializing_if = "is_zero")]
    starts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// 64 random bits as hex, from the OS-seeded keys of std's `RandomState`: enough
/// to tell openings of stores apart, with no RNG crate.
pub(super) fn random_incarnation() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    format!("{:016x}", h.finish())
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records always serialize")
}

fn dec<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason: e.to_string() })
}

impl<K: Kv> KvStore<K> {
    /// Open over `kv`, checking (or recording) the format version.
    pub fn new(kv: K) -> Result<Self, StoreError> {
        let current = FORMAT_VERSION.to_string().into_bytes();
        match kv.get(keys::FORMAT)? {
            Some(v) if v == current => {}
            // Version 1 lacks the instance indexes: build them, then say so.
            Some(v) if v == b"1" => {
                Self::build_instance_indexes(&kv)?;
                kv.apply(vec![(keys::FORMAT.to_vec(), Some(current))])?;
            }
            Some(v) => {
                let found = String::from_utf8_lossy(&v).into_owned();
                return Err(StoreError::UnknownFormat { found, supported: FORMAT_VERSION });
            }
            None => kv.apply(vec![(keys::FORMAT.to_vec(), Some(current))])?,
        }
        // Archived instances keep their ids: the highest of either is the last one.
        let mut last = 0;
        for prefix in [keys::INSTANCE, keys::ARCHIVED] {
            if let Some((k, _)) = kv.last(prefix)? {
                let id = k[prefix.len()..].try_into().map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason: "bad instance key".into(),
                })?;
                last = last.max(id);
            }
        }
        if kv.get(keys::PARTICIPANT_INDEX_READY)?.is_none() {
            Self::build_participant_index(&kv)?;
        }
        let last_message =
            kv.scan(keys::MESSAGE, usize::MAX)?.iter().filter_map(|(k, _)| keys::message_id_of(k)).max().unwrap_or(0);
        Ok(KvStore {
            kv,
            last_id: AtomicU64::new(last),
            last_message: AtomicU64::new(last_message),
            incarnation: random_incarnation(),
        })
    }

    /// Use `incarnation` instead of a random one (deterministic simulations).
    pub fn with_incarnation(mut self, incarnation: impl Into<String>) -> Self {
        self.incarnation = incarnation.into();
        self
    }

    /// Index the participants of every instance (a store from before the index),
    /// then mark the index complete: in the same write for a small store, in
    /// chunks for a large one (a crash midway rebuilds it at the next open).
    fn build_participant_index(kv: &K) -> Result<(), StoreError> {
        const CHUNK: usize = 1024;
        let mut from = keys::INSTANCE.to_vec();
        let mut ops: Vec<Op> = Vec::new();
        loop {
            let chunk = kv.scan_from(keys::INSTANCE, &from, CHUNK)?;
            for (k, v) in &chunk {
                let i: Instance = dec(k, v)?;
                ops.extend(i.participants.iter().map(|u| (keys::instance_by_participant(u, i.id), Some(Vec::new()))));
            }
            if ops.len() >= CHUNK {
                kv.apply(std::mem::take(&mut ops))?;
            }
            match chunk.last() {
                Some((k, _)) if chunk.len() == CHUNK => from = [k.as_slice(), &[0]].concat(),
                _ => break,
            }
        }
        ops.push((keys::PARTICIPANT_INDEX_READY.to_vec(), Some(Vec::new())));
        kv.apply(ops)
    }

    /// Index every instance by status and process (a version-1 store), in chunks;
    /// a crash midway builds it again at the next open (the format still says 1).
    fn build_instance_indexes(kv: &K) -> Result<(), StoreError> {
        const CHUNK: usize = 1024;
        let mut from = keys::INSTANCE.to_vec();
        loop {
            let chunk = kv.scan_from(keys::INSTANCE, &from, CHUNK)?;
            let mut ops: Vec<Op> = Vec::with_capacity(chunk.len() * 3);
            for (k, v) in &chunk {
                let i: Instance = dec(k, v)?;
                ops.extend(Self::instance_index_puts(&i));
            }
            if !ops.is_empty() {
                kv.apply(ops)?;
            }
            match chunk.last() {
                Some((k, _)) if chunk.len() == CHUNK => from = [k.as_slice(), &[0]].concat(),
                _ => return Ok(()),
            }
        }
    }

    /// The index keys of `i` as it is now (status, status + process, process).
    fn instance_index_puts(i: &Instance) -> [Op; 3] {
        let s = i.status.as_str();
        [
            (keys::indexed_instance(&keys::status_prefix(s), i.id), Some(Vec::new())),
            (keys::indexed_instance(&keys::status_process_prefix(s, &i.process), i.id), Some(Vec::new())),
            (keys::indexed_instance(&keys::process_prefix(&i.process), i.id), Some(Vec::new())),
        ]
    }

    /// Index writes for a committed instance: nothing while its status is indexed
    /// already (one lookup: most commits do not change the status); otherwise the
    /// keys of the status it had (looked up, so a new instance deletes nothing) go
    /// and the current ones are written. Commits of one instance are serialised by
    /// the engine, so the lookups cannot race.
    fn instance_index_ops(&self, i: &Instance, ops: &mut Vec<Op>) -> Result<(), StoreError> {
        let s = i.status.as_str();
        if self.kv.get(&keys::indexed_instance(&keys::status_prefix(s), i.id))?.is_some() {
            return Ok(());
        }
        let mut known = false;
        for other in [Status::Running, Status::Incident, Status::Completed, Status::Cancelled] {
            let o = other.as_str();
            let key = keys::indexed_instance(&keys::status_prefix(o), i.id);
            if other != i.status && self.kv.get(&key)?.is_some() {
                known = true;
                ops.push((key, None));
                ops.push((keys::indexed_instance(&keys::status_process_prefix(o, &i.process), i.id), None));
            }
        }
        let [by_status, by_both, by_process] = Self::instance_index_puts(i);
        ops.push(by_status);
        ops.push(by_both);
        if !known {
            ops.push(by_process);
        }
        Ok(())
    }

    /// Instance ids from an index key under `prefix`.
    fn id_of_index(prefix: &[u8], k: &[u8]) -> Result<InstanceId, StoreError> {
        k.get(prefix.len()..).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(|| {
            StoreError::Corrupt {
                key: String::from_utf8_lossy(k).into_owned(),
                reason: "bad instance index key".into(),
            }
        })
    }

    /// The backend (tests inspect or break it).
    pub fn backend(&self) -> &K {
        &self.kv
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.kv.get(key)?.map(|v| dec(key, &v)).transpose()
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8], limit: usize) -> Result<Vec<T>, StoreError> {
        self.kv.scan(prefix, limit)?.iter().map(|(k, v)| dec(k, v)).collect()
    }

    /// A page of instances: walks the keys under `prefix` from `from` in chunks,
    /// `load`s each into an instance (`None`: skip) and keeps those `f` matches, so
    /// a page stops reading as soon as it is full.
    fn instance_page(
        &self,
        prefix: &[u8],
        mut from: Vec<u8>,
        f: &InstanceFilter,
        load: impl Fn(&[u8], &[u8]) -> Result<Option<Instance>, StoreError>,
    ) -> Result<Vec<Instance>, StoreError> {
        const CHUNK: usize = 256;
        let limit = f.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        loop {
            let chunk = self.kv.scan_from(prefix, &from, CHUNK)?;
            for (k, v) in &chunk {
                let Some(i) = load(k, v)? else { continue };
                if f.after.is_some_and(|a| i.id <= a) || !f.matches(&i) {
                    continue;
                }
                out.push(i);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            match chunk.last() {
                Some((k, _)) if chunk.len() == CHUNK => from = [k.as_slice(), &[0]].concat(),
                _ => return Ok(out),
            }
        }
    }

    fn task_index_keys(t: &Task) -> Vec<Vec<u8>> {
        if t.status != TaskStatus::Open {
            return Vec::new();
        }
        let mut v: Vec<Vec<u8>> = t.groups.iter().map(|g| keys::task_by_group(g, t.due, &t.id)).collect();
        if let Some(a) = &t.assignee {
            v.push(keys::task_by_assignee(a, t.due, &t.id));
        }
        v
    }

    /// Up to `limit` tasks of one index (group or assignee) that pass `keep`, in
    /// index order, after `after`. The index is read in chunks, so a page needs one
    /// short scan unless filters skip many tasks.
    fn tasks_from_index(
        &self,
        prefix: &[u8],
        after: Option<&TaskCursor>,
        limit: usize,
        keep: &dyn Fn(&Task) -> bool,
        out: &mut Vec<Task>,
    ) -> Result<(), StoreError> {
        let chunk = limit.clamp(64, 1024);
        let mut from = match after {
            // The smallest key after the cursor's own index key.
            Some(c) => [keys::index_key(prefix, c.due, &c.id), vec![0]].concat(),
            None => prefix.to_vec(),
        };
        let mut found = 0;
        loop {
            let page = self.kv.scan_from(prefix, &from, chunk)?;
            for (k, _) in &page {
                let id = keys::task_of_index(k, prefix.len());
                if let Some(t) = self.get::<Task>(&[keys::TASK, id].concat())? {
                    if keep(&t) {
                        out.push(t);
                        found += 1;
                        if found >= limit {
                            return Ok(());
                        }
                    }
                }
            }
            match page.last() {
                Some((k, _)) if page.len() == chunk => from = [k.as_slice(), &[0]].concat(),
                _ => return Ok(()),
            }
        }
    }
}

use crate::runtime::TaskStatus;

impl<K: Kv> Store for KvStore<K> {
    fn commit(&self, b: Batch) -> Result<(), StoreError> {
        let mut ops: Vec<Op> = Vec::new();
        for d in &b.definitions {
            ops.push((keys::def(&d.id, d.version), Some(enc(d))));
        }
        for c in &b.configs {
            ops.push((keys::config(&c.process), Some(enc(c))));
        }
        for i in &b.instances {
            ops.push((keys::instance(i.id), Some(enc(i))));
            self.instance_index_ops(i, &mut ops)?;
            // A called instance shows its caller's key but does not own it: a start
            // with that key never finds the called instance.
            if let Some(k) = i.business_key.as_ref().filter(|_| i.parent.is_none()) {
                ops.push((keys::business_key(&i.process, k), Some(i.id.to_be_bytes().to_vec())));
            }
        }
        // One key per commit and instance: the lines one event appended, in order.
        let mut i = 0;
        while i < b.history.len() {
            let id = b.history[i].0;
            let run = b.history[i..].iter().take_while(|(x, _)| *x == id).count();
            let lines: Vec<&HistoryEntry> = b.history[i..i + run].iter().map(|(_, h)| h).collect();
            // Participants are the users of the history (`Instance::note_participants`):
            // index whoever acted in this commit; a user indexed already is rewritten.
            for user in lines.iter().filter_map(|h| h.user.as_ref()) {
                ops.push((keys::instance_by_participant(user, id), Some(Vec::new())));
            }
            ops.push((keys::history(id, lines[0].seq), Some(enc(&lines))));
            i += run;
        }
        for (old, new) in &b.tasks {
            let new_keys = Self::task_index_keys(new);
            for k in old.iter().flat_map(Self::task_index_keys) {
                if !new_keys.contains(&k) {
                    ops.push((k, None));
                }
            }
            for k in new_keys {
                ops.push((k, Some(Vec::new())));
            }
            ops.push((keys::task(&new.id), Some(enc(new))));
        }
        for j in &b.jobs_delete {
            ops.push((keys::job(&j.id), None));
            ops.push((keys::job_due(j.due, &j.id), None));
        }
        for (old, j) in &b.jobs_put {
            if let Some(old) = old {
                ops.push((keys::job_due(old.due, &old.id), None));
            }
            ops.push((keys::job(&j.id), Some(enc(j))));
            ops.push((keys::job_due(j.due, &j.id), Some(Vec::new())));
        }
        for s in &b.subscriptions_delete {
            ops.push((keys::subscription(&s.name, &s.key, s.instance, s.token), None));
        }
        for s in &b.subscriptions_put {
            ops.push((keys::subscription(&s.name, &s.key, s.instance, s.token), Some(enc(s))));
        }
        for m in &b.messages_delete {
            ops.push((keys::message(&m.name, &m.key, m.id), None));
        }
        for m in &b.messages_put {
            ops.push((keys::message(&m.name, &m.key, m.id), Some(enc(m))));
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.kv.apply(ops)
    }

    fn next_instance_id(&self) -> Result<InstanceId, StoreError> {
        Ok(self.last_id.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn definitions(&self) -> Result<Vec<DefinitionRecord>, StoreError> {
        self.scan(keys::DEF, usize::MAX)
    }

    fn configs(&self) -> Result<Vec<ProcessConfig>, StoreError> {
        self.scan(keys::CONFIG, usize::MAX)
    }

    fn instance(&self, id: InstanceId) -> Result<Option<Instance>, StoreError> {
        self.get(&keys::instance(id))
    }

    fn instance_by_key(&self, process: &str, key: &str) -> Result<Option<InstanceId>, StoreError> {
        Ok(self.kv.get(&keys::business_key(process, key))?.and_then(|v| v.try_into().ok()).map(u64::from_be_bytes))
    }

    fn instances(&self, f: &InstanceFilter) -> Result<Vec<Instance>, StoreError> {
        // A user's list reads that user's index only; any other list reads instances.
        if let Some(user) = &f.participant {
            let prefix = keys::participant_prefix(user);
            let from =
                f.after.map_or_else(|| prefix.clone(), |a| keys::instance_by_participant(user, a.saturating_add(1)));
            return self.instance_page(&prefix, from, f, |k, _| {
                let id = k[prefix.len()..].try_into().map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(k).into_owned(),
                    reason: "bad participant index key".into(),
                })?;
                self.instance(id)
            });
        }
        // A status or process filter reads its index: a page costs the same however
        // many other instances the store holds.
        let index = match (f.status, &f.process) {
            (Some(s), Some(p)) => Some(keys::status_process_prefix(s.as_str(), p)),
            (Some(s), None) => Some(keys::status_prefix(s.as_str())),
            (None, Some(p)) => Some(keys::process_prefix(p)),
            (None, None) => None,
        };
        if let Some(prefix) = index {
            let from = f.after.map_or_else(|| prefix.clone(), |a| keys::indexed_instance(&prefix, a.saturating_add(1)));
            return self.instance_page(&prefix, from, f, |k, _| self.instance(Self::id_of_index(&prefix, k)?));
        }
        let from = f.after.map_or_else(|| keys::INSTANCE.to_vec(), |a| keys::instance(a.saturating_add(1)));
        self.instance_page(keys::INSTANCE, from, f, |k, v| dec(k, v).map(Some))
    }

    fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        self.get(&keys::task(id))
    }

    fn open_tasks(&self, q: &TaskQuery) -> Result<Vec<Task>, StoreError> {
        let limit = q.limit.unwrap_or(usize::MAX);
        let after = q.after.as_ref();
        let keep = |t: &Task| {
            t.status == TaskStatus::Open
                && q.assignee.as_ref().is_none_or(|a| t.assignee.as_ref() == Some(a))
                && q.lane.as_ref().is_none_or(|l| *l == t.lane)
                && q.process.as_ref().is_none_or(|p| *p == t.process)
                && q.instance.is_none_or(|i| i == t.instance)
                && q.due_before.is_none_or(|d| t.due.is_some_and(|td| td < d))
                && q.overdue.is_none_or(|o| o == t.overdue)
                && after.is_none_or(|c| (keys::due_ms(t.due), t.id.as_str()) > c.sort_key())
        };
        let mut tasks = Vec::new();
        match (&q.groups, &q.assignee) {
            (Some(groups), _) => {
                for g in groups {
                    self.tasks_from_index(&keys::group_prefix(g), after, limit, &keep, &mut tasks)?;
                }
            }
            (None, Some(a)) => self.tasks_from_index(&keys::assignee_prefix(a), after, limit, &keep, &mut tasks)?,
            (None, None) => {
                tasks = self.scan::<Task>(keys::TASK, usize::MAX)?;
                tasks.retain(keep);
            }
        }
        tasks.sort_by(|a, b| (keys::due_ms(a.due), &a.id).cmp(&(keys::due_ms(b.due), &b.id)));
        tasks.dedup_by(|a, b| a.id == b.id);
        tasks.truncate(limit);
        Ok(tasks)
    }

    fn open_task_count(&self) -> Result<u64, StoreError> {
        // Every open task is in the index of each of its groups (a user task always
        // has a lane, a lane at least one group): count distinct ids, no decoding.
        let mut ids = std::collections::HashSet::new();
        for (k, _) in self.kv.scan(keys::TASK_BY_GROUP, usize::MAX)? {
            let group_end = k[keys::TASK_BY_GROUP.len()..].iter().position(|b| *b == 0).unwrap_or(0);
            ids.insert(keys::task_of_index(&k, keys::TASK_BY_GROUP.len() + group_end + 1).to_vec());
        }
        Ok(ids.len() as u64)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.kv.flush()
    }

    fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.get(&keys::job(id))
    }

    fn count_start(&self, id: &str) -> Result<Option<(Job, u32)>, StoreError> {
        let key = keys::job(id);
        let Some(mut record) = self.get::<StoredJob>(&key)? else { return Ok(None) };
        let before = enc(&record);
        record.starts = record.starts.saturating_add(1);
        if let Err(e) = self.kv.apply(vec![(key.clone(), Some(enc(&record)))]) {
            // The job does not run now. Undo the count where the write reached the
            // store without being made durable (a failed flush), so that a disk full
            // for a while cannot add up to a false "started N times" incident.
            let _ = self.kv.apply(vec![(key, Some(before))]);
            return Err(e);
        }
        Ok(Some((record.job, record.starts)))
    }

    fn incarnation(&self) -> &str {
        &self.incarnation
    }

    fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in self.kv.scan(keys::JOB_DUE, usize::MAX)? {
            let id = &k[keys::JOB_DUE.len() + 8..];
            if let Some(j) = self.get::<Job>(&[keys::JOB, id].concat())? {
                out.push(j);
            }
        }
        Ok(out)
    }

    fn due_after(&self, after: Option<(i64, &str)>, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        let from = match after {
            Some((ms, id)) => keys::job_due_ms(ms, id),
            None => keys::JOB_DUE.to_vec(),
        };
        let mut out = Vec::with_capacity(limit.min(4096));
        // One more than asked: the first may be `after` itself.
        for (k, _) in self.kv.scan_from(keys::JOB_DUE, &from, limit.saturating_add(1))? {
            if after.is_some() && k == from {
                continue;
            }
            match keys::parse_job_due(&k) {
                Some(e) => out.push(e),
                None => {
                    return Err(StoreError::Corrupt {
                        key: String::from_utf8_lossy(&k).into_owned(),
                        reason: "bad due-queue key".into(),
                    })
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn subscriptions(&self, name: &str, key: &str) -> Result<Vec<Subscription>, StoreError> {
        self.scan(&keys::subscription_prefix(name, key), usize::MAX)
    }

    fn buffered(&self, name: &str, key: &str) -> Result<Vec<BufferedMessage>, StoreError> {
        self.scan(&keys::message_prefix(name, key), usize::MAX)
    }

    fn all_buffered(&self) -> Result<Vec<BufferedMessage>, StoreError> {
        self.scan(keys::MESSAGE, usize::MAX)
    }

    fn next_message_id(&self) -> Result<u64, StoreError> {
        Ok(self.last_message.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn history(&self, id: InstanceId) -> Result<Vec<HistoryEntry>, StoreError> {
        let chunks: Vec<Vec<HistoryEntry>> = self.scan(&keys::history_prefix(id), usize::MAX)?;
        Ok(chunks.into_iter().flatten().collect())
    }

    fn archive(&self, summaries: &[ArchivedInstance]) -> Result<(), StoreError> {
        let mut ops: Vec<Op> = Vec::new();
        for a in summaries {
            let Some(inst) = self.instance(a.id)? else { continue };
            ops.push((keys::instance(a.id), None));
            for user in &inst.participants {
                ops.push((keys::instance_by_participant(user, a.id), None));
            }
            for (k, _) in self.kv.scan(&keys::history_prefix(a.id), usize::MAX)? {
                ops.push((k, None));
            }
            for (k, v) in self.kv.scan(&keys::tasks_of(a.id), usize::MAX)? {
                let t: Task = dec(&k, &v)?;
                ops.extend(Self::task_index_keys(&t).into_iter().map(|k| (k, None)));
                ops.push((k, None));
            }
            ops.push((keys::archived(a.id), Some(enc(a))));
        }
        ops.push((keys::ARCHIVE_INTENT.to_vec(), None));
        self.kv.apply(ops)
    }

    fn archived(&self, id: InstanceId) -> Result<Option<ArchivedInstance>, StoreError> {
        self.get(&keys::archived(id))
    }

    fn archive_intent(&self) -> Result<Option<ArchiveIntent>, StoreError> {
        self.get(keys::ARCHIVE_INTENT)
    }

    fn set_archive_intent(&self, intent: Option<&ArchiveIntent>) -> Result<(), StoreError> {
        self.kv.apply(vec![(keys::ARCHIVE_INTENT.to_vec(), intent.map(enc))])
    }

    fn compact_history(&self, id: InstanceId, before: u32, summary: HistoryEntry) -> Result<(), StoreError> {
        let mut ops: Vec<Op> = Vec::new();
        let mut first = None;
        for (k, v) in self.kv.scan(&keys::history_prefix(id), usize::MAX)? {
            let lines: Vec<HistoryEntry> = dec(&k, &v)?;
            let Some(start) = lines.first().map(|l| l.seq) else { continue };
            if start >= before {
                break;
            }
            first = first.or(Some(start));
            ops.push((k, None));
            // A commit's lines share one key: the one that straddles `before` is
            // written again, under the key of its first line kept.
            let kept: Vec<&HistoryEntry> = lines.iter().filter(|l| l.seq >= before).collect();
            if let Some(l) = kept.first() {
                ops.push((keys::history(id, l.seq), Some(enc(&kept))));
            }
        }
        let Some(first) = first else { return Ok(()) };
        let summary = HistoryEntry { seq: first, ..summary };
        ops.retain(|(k, _)| *k != keys::history(id, first));
        ops.push((keys::history(id, first), Some(enc(&vec![&summary]))));
        self.kv.apply(ops)
    }
}
