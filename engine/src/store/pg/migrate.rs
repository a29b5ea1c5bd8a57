//! Copy a whole sled (key-value) store into an empty PostgreSQL store
//! (`nagare migrate-store`), then prove the copy: per table, the number of rows
//! and an order-independent checksum of the records, read back from both sides.
//!
//! The copy goes through the store's own `commit`, one batch per 100 instances
//! (each instance with its whole history, tasks, jobs and subscriptions), so the
//! PostgreSQL side builds its indexes, business keys and participants exactly as
//! if the engine had written them. The source is only read.

use super::super::kv::{Kv, KvStore};
use super::super::*;
use super::{unkey, PgStore};
use crate::runtime::{HistoryEntry, Instance, Task};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};

/// Instances (with everything that belongs to them) per commit.
const PAGE: usize = 100;

/// Why a migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    /// The source or target store failed.
    Store(#[from] StoreError),
    #[error("the target database already holds a nagare store ({what}); migrate into an empty database or schema")]
    /// The target already holds a store: nothing was copied.
    TargetNotEmpty {
        /// What was found there.
        what: String,
    },
    #[error("the copy differs from the source in table {table}: source {source_rows} rows (checksum {source_sum:016x}), target {target_rows} rows (checksum {target_sum:016x})")]
    /// The copy does not match the source (checked after copying).
    Mismatch {
        /// The table.
        table: &'static str,
        /// Rows in the source.
        source_rows: u64,
        /// Checksum of the source.
        source_sum: u64,
        /// Rows in the target.
        target_rows: u64,
        /// Checksum of the target.
        target_sum: u64,
    },
}

/// Rows of one table and the wrapping sum of each record's FNV-1a hash of its JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSum {
    /// Rows.
    pub rows: u64,
    /// Wrapping sum of the rows' hashes.
    pub checksum: u64,
}

impl TableSum {
    fn add<T: Serialize>(&mut self, record: &T) {
        let bytes = serde_json::to_vec(record).expect("records always serialize");
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.rows += 1;
        self.checksum = self.checksum.wrapping_add(h);
    }
}

/// Per table (in a fixed order): the source's sum and the target's.
pub type Report = Vec<(&'static str, TableSum, TableSum)>;

/// Everything a store holds, read once (the store fits in memory the way the
/// engine's own start-up scan of jobs assumes; see the README for sizes).
#[derive(Default)]
struct Content {
    definitions: Vec<DefinitionRecord>,
    configs: Vec<ProcessConfig>,
    instances: Vec<Instance>,
    history: BTreeMap<InstanceId, Vec<HistoryEntry>>,
    tasks: Vec<Task>,
    jobs: Vec<Job>,
    subscriptions: Vec<Subscription>,
    messages: Vec<BufferedMessage>,
    business_keys: Vec<(String, String, InstanceId)>,
}

impl Content {
    fn sums(&self) -> Vec<(&'static str, TableSum)> {
        fn sum<T: Serialize>(items: impl IntoIterator<Item = T>) -> TableSum {
            let mut s = TableSum::default();
            items.into_iter().for_each(|i| s.add(&i));
            s
        }
        vec![
            ("definitions", sum(&self.definitions)),
            ("process_configs", sum(&self.configs)),
            ("instances", sum(&self.instances)),
            ("history", sum(self.history.iter().flat_map(|(id, h)| h.iter().map(move |e| (id, e))))),
            ("tasks", sum(&self.tasks)),
            ("jobs", sum(&self.jobs)),
            ("subscriptions", sum(&self.subscriptions)),
            ("messages", sum(&self.messages)),
            ("business_keys", sum(&self.business_keys)),
        ]
    }
}

/// Every record of `prefix`, read in chunks.
fn scan_all<K: Kv, T: DeserializeOwned>(kv: &K, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
    const CHUNK: usize = 1024;
    let mut out = Vec::new();
    let mut from = prefix.to_vec();
    loop {
        let page = kv.scan_from(prefix, &from, CHUNK)?;
        for (k, v) in &page {
            out.push(serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(k).into_owned(),
                reason: e.to_string(),
            })?);
        }
        match page.last() {
            Some((k, _)) if page.len() == CHUNK => {
                from = k.clone();
                from.push(0);
            }
            _ => return Ok(out),
        }
    }
}

fn all_instances(s: &dyn Store) -> Result<Vec<Instance>, StoreError> {
    let mut out: Vec<Instance> = Vec::new();
    loop {
        let f = InstanceFilter { after: out.last().map(|i| i.id), limit: Some(1000), ..Default::default() };
        let page = s.instances(&f)?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

fn read_common(s: &dyn Store) -> Result<Content, StoreError> {
    let instances = all_instances(s)?;
    let mut history = BTreeMap::new();
    for i in &instances {
        history.insert(i.id, s.history(i.id)?);
    }
    let mut c = Content {
        definitions: s.definitions()?,
        configs: s.configs()?,
        jobs: s.jobs()?,
        messages: s.all_buffered()?,
        history,
        instances,
        ..Default::default()
    };
    c.definitions.sort_by(|a, b| (&a.id, a.version).cmp(&(&b.id, b.version)));
    Ok(c)
}

fn read_kv<K: Kv>(s: &KvStore<K>) -> Result<Content, StoreError> {
    let mut c = read_common(s)?;
    c.tasks = scan_all(s.backend(), keys::TASK)?;
    c.subscriptions = scan_all(s.backend(), keys::SUBSCRIPTION)?;
    c.business_keys = c
        .instances
        .iter()
        .filter_map(|i| i.business_key.as_ref().map(|k| (i.process.clone(), k.clone(), i.id)))
        .collect();
    c.business_keys.sort();
    Ok(c)
}

impl PgStore {
    fn read_pg(&self) -> Result<Content, StoreError> {
        let mut c = read_common(self)?;
        c.tasks = self.records("SELECT record::text FROM tasks ORDER BY instance, id", (), "tasks")?;
        c.subscriptions = self.records("SELECT record::text FROM subscriptions", (), "subscriptions")?;
        c.business_keys = self.pool.run(|c| {
            Box::pin(async move {
                let rows = c.query("SELECT process, key, instance FROM business_keys", &[]).await?;
                Ok(rows
                    .iter()
                    .map(|r| (r.get::<_, String>(0), unkey(r.get::<_, String>(1)), r.get::<_, i64>(2) as u64))
                    .collect::<Vec<_>>())
            })
        })?;
        c.business_keys.sort();
        Ok(c)
    }

    /// What makes this store not empty, if anything.
    fn holds(&self) -> Result<Option<String>, StoreError> {
        let n = self.pool.run(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT (SELECT count(*) FROM definitions), (SELECT count(*) FROM instances),
                                (SELECT count(*) FROM jobs), (SELECT count(*) FROM messages)",
                        &[],
                    )
                    .await?;
                Ok((0..4).map(|i| rows[0].get::<_, i64>(i)).collect::<Vec<_>>())
            })
        })?;
        let names = ["definitions", "instances", "jobs", "messages"];
        let held: Vec<String> =
            n.iter().zip(names).filter(|(n, _)| **n > 0).map(|(n, what)| format!("{n} {what}")).collect();
        Ok((!held.is_empty()).then(|| held.join(", ")))
    }

    /// Make the id sequences hand out ids above the copied ones.
    fn advance_sequences(&self, last_instance: u64, last_message: u64) -> Result<(), StoreError> {
        let (i, m) =
            (i64::try_from(last_instance).unwrap_or(i64::MAX), i64::try_from(last_message).unwrap_or(i64::MAX));
        self.pool.run(move |c| {
            Box::pin(async move {
                if i > 0 {
                    c.query("SELECT setval('instance_ids', $1)", &[&i]).await?;
                }
                if m > 0 {
                    c.query("SELECT setval('message_ids', $1)", &[&m]).await?;
                }
                Ok(())
            })
        })
    }
}

/// Copy `from` into the empty `to`, telling `progress` how far it got, then
/// compare both sides table by table.
pub fn migrate<K: Kv>(from: &KvStore<K>, to: &PgStore, progress: &mut dyn FnMut(&str)) -> Result<Report, MigrateError> {
    if let Some(what) = to.holds()? {
        return Err(MigrateError::TargetNotEmpty { what });
    }
    progress("reading the source store");
    let src = read_kv(from)?;
    let mut tasks: HashMap<InstanceId, Vec<Task>> = HashMap::new();
    for t in &src.tasks {
        tasks.entry(t.instance).or_default().push(t.clone());
    }
    let mut jobs: HashMap<InstanceId, Vec<Job>> = HashMap::new();
    for j in &src.jobs {
        jobs.entry(j.instance).or_default().push(j.clone());
    }
    let mut subs: HashMap<InstanceId, Vec<Subscription>> = HashMap::new();
    for s in &src.subscriptions {
        subs.entry(s.instance).or_default().push(s.clone());
    }
    to.commit(Batch { definitions: src.definitions.clone(), configs: src.configs.clone(), ..Default::default() })?;
    progress(&format!("definitions: {}, process configs: {}", src.definitions.len(), src.configs.len()));
    let total = src.instances.len();
    for (n, page) in src.instances.chunks(PAGE).enumerate() {
        let mut b = Batch::default();
        for i in page {
            b.instances.push(i.clone());
            let h = src.history.get(&i.id).map(Vec::as_slice).unwrap_or_default();
            b.history.extend(h.iter().map(|e| (i.id, e.clone())));
            b.tasks.extend(tasks.remove(&i.id).unwrap_or_default().into_iter().map(|t| (None, t)));
            b.jobs_put.extend(jobs.remove(&i.id).unwrap_or_default().into_iter().map(|j| (None, j)));
            b.subscriptions_put.extend(subs.remove(&i.id).unwrap_or_default());
        }
        to.commit(b)?;
        progress(&format!("instances: {} of {total}", (n * PAGE + page.len())));
    }
    // What belongs to no copied instance: scheduled starts, buffered messages, and
    // (in a damaged store) records of a missing instance, copied as they are.
    let rest = Batch {
        tasks: tasks.into_values().flatten().map(|t| (None, t)).collect(),
        jobs_put: jobs.into_values().flatten().map(|j| (None, j)).collect(),
        subscriptions_put: subs.into_values().flatten().collect(),
        messages_put: src.messages.clone(),
        ..Default::default()
    };
    progress(&format!("jobs: {}, buffered messages: {}", src.jobs.len(), src.messages.len()));
    to.commit(rest)?;
    let last_instance = src.instances.iter().map(|i| i.id).max().unwrap_or(0);
    let last_message = src.messages.iter().map(|m| m.id).max().unwrap_or(0);
    to.advance_sequences(last_instance, last_message)?;
    progress("verifying: rows and checksums per table");
    let target = to.read_pg()?.sums();
    let mut report = Report::new();
    for ((table, s), (_, t)) in src.sums().into_iter().zip(target) {
        if s != t {
            return Err(MigrateError::Mismatch {
                table,
                source_rows: s.rows,
                source_sum: s.checksum,
                target_rows: t.rows,
                target_sum: t.checksum,
            });
        }
        report.push((table, s, t));
    }
    Ok(report)
}

#[cfg(test)]
#[path = "migrate_tests.rs"]
mod tests;
