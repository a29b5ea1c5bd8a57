//! Archival on PostgreSQL: the `archived` summaries, the archiver's intent, and
//! history compaction (see [`crate::archive`]). Each write is one transaction.

use super::pool::Conn;
use super::{enc, id64, PgStore};
use crate::runtime::{HistoryEntry, InstanceId};
use crate::store::{ArchiveIntent, ArchivedInstance, StoreError};

/// End the transaction `BEGIN` opened: committed after `Ok`, rolled back otherwise.
async fn finish<T>(c: &mut Conn, out: Result<T, StoreError>) -> Result<T, StoreError> {
    match out {
        Ok(v) => {
            c.batch("COMMIT").await?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.batch("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn archive_in(c: &mut Conn, ids: &[i64], processes: &[String], records: &[String]) -> Result<(), StoreError> {
    // Only instances still live: a summary is never written twice.
    let gone = c.query("DELETE FROM instances WHERE id = ANY($1::bigint[]) RETURNING id", &[&ids]).await?;
    let gone: Vec<i64> = gone.iter().map(|r| r.get(0)).collect();
    for sql in [
        "DELETE FROM history WHERE instance = ANY($1::bigint[])",
        "DELETE FROM task_groups WHERE instance = ANY($1::bigint[])",
        "DELETE FROM tasks WHERE instance = ANY($1::bigint[])",
        "DELETE FROM participants WHERE instance = ANY($1::bigint[])",
    ] {
        c.execute(sql, &[&gone]).await?;
    }
    c.execute(
        "INSERT INTO archived (id, process, record)
         SELECT i, p, r::json FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(i, p, r)
         WHERE i = ANY($4::bigint[])
         ON CONFLICT (id) DO NOTHING",
        &[&ids, &processes, &records, &gone],
    )
    .await?;
    c.execute("DELETE FROM archive_intent", &[]).await?;
    Ok(())
}

async fn compact_in(c: &mut Conn, id: i64, before: i64, summary: HistoryEntry) -> Result<(), StoreError> {
    let rows = c.query("DELETE FROM history WHERE instance = $1 AND seq < $2 RETURNING seq", &[&id, &before]).await?;
    let Some(first) = rows.iter().map(|r| r.get::<_, i64>(0)).min() else { return Ok(()) };
    let record = enc(&HistoryEntry { seq: first as u32, ..summary });
    c.execute("INSERT INTO history (instance, seq, record) VALUES ($1, $2, $3::text::json)", &[&id, &first, &record])
        .await?;
    Ok(())
}

impl PgStore {
    pub(super) fn archive_summaries(&self, summaries: &[ArchivedInstance]) -> Result<(), StoreError> {
        let ids: Vec<i64> = summaries.iter().map(|a| id64(a.id)).collect();
        let records: Vec<String> = summaries.iter().map(enc).collect();
        let processes: Vec<String> = summaries.iter().map(|a| super::key(&a.process)).collect();
        self.pool.run(move |c| {
            Box::pin(async move {
                c.batch("BEGIN").await?;
                let out = archive_in(c, &ids, &processes, &records).await;
                finish(c, out).await
            })
        })
    }

    pub(super) fn archived_summary(&self, id: InstanceId) -> Result<Option<ArchivedInstance>, StoreError> {
        let mut v: Vec<ArchivedInstance> =
            self.records("SELECT record::text FROM archived WHERE id = $1", (id64(id),), "archived")?;
        Ok(v.pop())
    }

    pub(super) fn intent(&self) -> Result<Option<ArchiveIntent>, StoreError> {
        let mut v: Vec<ArchiveIntent> =
            self.records("SELECT record::text FROM archive_intent", (), "archive_intent")?;
        Ok(v.pop())
    }

    pub(super) fn write_intent(&self, intent: Option<&ArchiveIntent>) -> Result<(), StoreError> {
        let record = intent.map(enc);
        self.pool.run(move |c| {
            Box::pin(async move {
                match record {
                    Some(r) => {
                        c.execute(
                            "INSERT INTO archive_intent (one, record) VALUES (1, $1::text::json)
                             ON CONFLICT (one) DO UPDATE SET record = EXCLUDED.record",
                            &[&r],
                        )
                        .await?
                    }
                    None => c.execute("DELETE FROM archive_intent", &[]).await?,
                };
                Ok(())
            })
        })
    }

    pub(super) fn compact(&self, id: InstanceId, before: u32, summary: HistoryEntry) -> Result<(), StoreError> {
        let (id, before) = (id64(id), i64::from(before));
        self.pool.run(move |c| {
            Box::pin(async move {
                c.batch("BEGIN").await?;
                let out = compact_in(c, id, before, summary).await;
                finish(c, out).await
            })
        })
    }
}
