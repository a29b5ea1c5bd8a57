//! Connections to PostgreSQL, usable from any thread.
//!
//! The engine calls its [`Store`](crate::store::Store) synchronously: from the
//! blocking pool of the server, from plain threads, and from inside async tests. The
//! sync `postgres` crate cannot serve all of these (it runs its own runtime per
//! client, which panics inside another runtime). So the async client runs on a
//! private two-thread runtime owned by a thread of its own, and a call sends its
//! future there and waits on a channel: that works from any thread, and dropping
//! the store never drops a runtime inside an async context.
//!
//! A small pool of connections: a call takes one (a semaphore bounds them), so one
//! event's transaction has a connection to itself. Each connection caches its
//! prepared statements, so a statement costs one round trip after its first use.

use super::super::StoreError;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

/// A future borrowing a connection, as the closures of [`Pool::run`] return it.
pub type ConnFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// One connection and its prepared statements.
pub struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// Why a statement failed, for the store's error.
pub fn db_error(e: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    let code = e.code().cloned();
    let message = match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
        None => format!("PostgreSQL: {e}"),
    };
    match code {
        // A unique key another writer took first (a history line, a business key),
        // or a transaction the database could not serialise: the loser retries.
        Some(c) if c == SqlState::UNIQUE_VIOLATION || c == SqlState::T_R_SERIALIZATION_FAILURE => {
            StoreError::Conflict(message)
        }
        _ => StoreError::Io(message),
    }
}

impl Conn {
    async fn prepared(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await.map_err(db_error)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub async fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let s = self.prepared(sql).await?;
        self.client.query(&s, params).await.map_err(db_error)
    }

    pub async fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let s = self.prepared(sql).await?;
        self.client.execute(&s, params).await.map_err(db_error)
    }

    /// `BEGIN` and then `stmts`, sent at once without waiting for each answer (one
    /// round trip instead of one per statement), each result checked in order. The
    /// first failure is returned; the transaction is left open either way, for the
    /// caller to commit or roll back.
    pub async fn pipelined(&mut self, stmts: &[super::Stmt<'_>]) -> Result<(), StoreError> {
        let mut prepared = Vec::with_capacity(stmts.len());
        for s in stmts {
            prepared.push(self.prepared(s.sql).await?);
        }
        let client = &self.client;
        let queries = prepared.iter().zip(stmts).map(|(p, s)| client.query(p, &s.params));
        // `join` polls BEGIN first, then the statements in order: that is the order
        // they are sent in.
        let (begun, results) =
            futures_util::future::join(client.batch_execute("BEGIN"), futures_util::future::join_all(queries)).await;
        begun.map_err(db_error)?;
        for (r, s) in results.into_iter().zip(stmts) {
            s.check.verify(&r.map_err(db_error)?)?;
        }
        Ok(())
    }

    /// Statements with no parameters, sent as one simple query (BEGIN, migrations).
    pub async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).await.map_err(db_error)
    }
}

/// How to reach the database.
pub struct Target {
    pub config: Config,
    /// `SET search_path` on every connection (tests use a schema each).
    pub schema: Option<String>,
    /// `SET statement_timeout` on every connection: a statement running longer
    /// fails (the event is not saved, the request answers 500 `store-failed`).
    pub statement_timeout: Option<std::time::Duration>,
    /// TLS for every connection (`sslmode=require`), see [`super::tls`].
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

pub struct Pool {
    runtime: tokio::runtime::Handle,
    /// Dropped with the pool: the runtime's thread then shuts the runtime down.
    _stop: std::sync::mpsc::SyncSender<()>,
    shared: Arc<Shared>,
}

struct Shared {
    target: Target,
    idle: Mutex<Vec<Conn>>,
    permits: tokio::sync::Semaphore,
}

impl Pool {
    /// A pool of at most `size` connections. Connects once now, so that a wrong
    /// address or password is said at start.
    pub fn new(target: Target, size: usize) -> Result<Pool, StoreError> {
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = std::sync::mpsc::sync_channel::<()>(0);
        std::thread::Builder::new()
            .name("nagare-pg".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("nagare-pg-io")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                // Until the pool is dropped (the sender goes away).
                let _ = stop_rx.recv();
                rt.shutdown_background();
            })
            .map_err(|e| StoreError::Io(format!("cannot start the PostgreSQL thread: {e}")))?;
        let runtime = handle_rx
            .recv()
            .map_err(|e| StoreError::Io(e.to_string()))?
            .map_err(|e| StoreError::Io(format!("cannot start the PostgreSQL runtime: {e}")))?;
        let shared = Arc::new(Shared {
            target,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(size.max(1)),
        });
        let pool = Pool { runtime, _stop: stop_tx, shared };
        pool.run(|_| Box::pin(async { Ok(()) }))?;
        Ok(pool)
    }

    /// Run `f` on a connection of the pool and wait for its result. Callable from
    /// any thread, also from inside an async runtime (it blocks that thread, like a
    /// disk write of the sled store does).
    pub fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> ConnFuture<'c, T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let shared = self.shared.clone();
        self.runtime.spawn(async move {
            let _ = tx.send(shared.with_conn(f).await);
        });
        rx.recv().map_err(|_| StoreError::Io("the PostgreSQL runtime stopped".into()))?
    }
}

impl Shared {
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> ConnFuture<'c, T>,
    {
        let _permit = self.permits.acquire().await.map_err(|e| StoreError::Io(e.to_string()))?;
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut conn = match idle {
            Some(c) if !c.client.is_closed() => c,
            _ => self.connect().await?,
        };
        let result = f(&mut conn).await;
        // A connection left inside a transaction (a failed commit whose ROLLBACK
        // failed too) or broken is not reused.
        if !conn.client.is_closed() && !matches!(result, Err(StoreError::Io(_))) {
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        }
        result
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let failed = |e: tokio_postgres::Error| {
            StoreError::Io(format!(
                "cannot connect to PostgreSQL: {e}{}{}",
                e.as_db_error().map_or(String::new(), |d| format!(": {}", d.message())),
                std::error::Error::source(&e)
                    .filter(|_| e.as_db_error().is_none())
                    .map_or(String::new(), |s| format!(" ({s})"))
            ))
        };
        let client = match &self.target.tls {
            None => {
                let (client, connection) = self.target.config.connect(NoTls).await.map_err(failed)?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "PostgreSQL connection closed");
                    }
                });
                client
            }
            Some(tls) => {
                let make = super::tls::MakeRustls(tls.clone());
                let (client, connection) = self.target.config.connect(make).await.map_err(failed)?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "PostgreSQL connection closed");
                    }
                });
                client
            }
        };
        let mut conn = Conn { client, statements: HashMap::new() };
        if let Some(schema) = &self.target.schema {
            conn.batch(&format!("SET search_path TO \"{schema}\"")).await?;
        }
        if let Some(t) = self.target.statement_timeout {
            conn.batch(&format!("SET statement_timeout = {}", t.as_millis())).await?;
        }
        Ok(conn)
    }
}
