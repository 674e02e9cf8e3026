//! PostgreSQL storage for dps-rs: [`PgStore`] implements `dps_store::Store` over tokio-postgres
//! with a deadpool connection pool, so several stateless dpsd nodes can share one database (an
//! operation started on node A can be polled on node B; concurrent enrollment updates resolve
//! by etag compare-and-set in SQL).
//!
//! - The schema lives in a PostgreSQL schema of its own (default `dps`), created and migrated at
//!   [`PgStore::connect`] (versioned, idempotent, no advisory locks: see [`schema`]).
//! - Records are stored as their JSON (`BYTEA`) next to the columns queries need (scope, key,
//!   etag, group). Every statement is prepared once per connection.
//! - Transient failures (serialization failures, deadlocks, lost connections, an exhausted pool)
//!   are retried with exponential backoff; what remains is `StoreError::Unavailable`.
//! - Expired operations are deleted by later registration commits, so the operations table
//!   relies on autovacuum (PostgreSQL's default) to clear its dead rows; on a server without
//!   it, call [`PgStore::vacuum_operations`] now and then.
//! - TLS to the database is optional ([`PgTls`]: `disable`, `require`, `verify-full` with a CA
//!   file), over rustls; see [`tls`](crate::PgTls) for what each mode checks.
//! - Registration commits are group-committed: concurrent `commit_registration` calls are
//!   gathered by a few committer tasks into one multi-row statement each (records, operations,
//!   meters and pruning in CTEs), so one transaction and one WAL flush serve many registrations;
//!   each caller is answered once its batch committed (see [`PgConfig::committers`]). Meters
//!   are sharded over several rows so concurrent batches never queue on one row lock.
//!
//! ```no_run
//! # async fn run() -> Result<(), dps_store::StoreError> {
//! use dps_store_pg::{PgConfig, PgStore};
//!
//! let store = PgStore::connect(&PgConfig::new("postgres://postgres@127.0.0.1:5432/postgres")).await?;
//! # let _ = store; Ok(()) }
//! ```

mod commit;
mod hub_identities;
pub mod schema;
mod store;
mod tls;

pub use commit::CommitStats;
pub use tls::PgTls;

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use dps_store::StoreError;
use dps_types::EnrollmentGroup;
use tokio_postgres::config::SslMode;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// A libpq-style URL or key=value string.
    pub url: String,
    /// The PostgreSQL schema holding the tables (lower-case letters, digits, `_`).
    pub schema: String,
    /// Pool size.
    pub max_connections: usize,
    /// Attempts for a transient failure before giving up.
    pub max_attempts: u32,
    /// TLS to the server (default [`PgTls::Disable`]). An `sslmode` in `url` is ignored; this
    /// setting decides.
    pub tls: PgTls,
    /// Registration committer tasks, each writing one batch at a time on its own pooled
    /// connection (at least 1).
    pub committers: usize,
    /// The most registration commits one batch (one statement) holds (at least 1).
    pub max_batch: usize,
}

impl PgConfig {
    /// Defaults: schema `dps`, 16 connections, 5 attempts, 4 committers of batches up to 256.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "dps".into(),
            max_connections: 16,
            max_attempts: 5,
            tls: PgTls::Disable,
            committers: 4,
            max_batch: 256,
        }
    }
}

/// The PostgreSQL store. Cloning shares the pool and the committers; they stop when the last
/// clone is dropped.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    schema: Arc<str>,
    max_attempts: u32,
    groups: Arc<Mutex<GroupCache>>,
    commits: tokio::sync::mpsc::Sender<commit::Item>,
    commit_stats: Arc<commit::Counters>,
}

/// Per scope key: the group version seen and the groups at that version.
type GroupCache = HashMap<String, (i64, Arc<[EnrollmentGroup]>)>;

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// A failure inside one attempt: retry it, or give up with this error.
pub(crate) enum Fail {
    Retry(Box<dyn std::error::Error + Send + Sync>),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let transient = e.is_closed()
            || e.code().is_some_and(|c| {
                *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
                    // Concurrent `CREATE ... IF NOT EXISTS` from nodes starting together.
                    || *c == SqlState::UNIQUE_VIOLATION
            })
            || e.code().is_none();
        if transient {
            Self::Retry(Box::new(e))
        } else {
            Self::Store(StoreError::Backend(Box::new(e)))
        }
    }
}

impl From<deadpool_postgres::PoolError> for Fail {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Retry(Box::new(e))
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl PgStore {
    /// Connects, creates the schema if needed and applies pending migrations.
    pub async fn connect(cfg: &PgConfig) -> Result<Self, StoreError> {
        if !schema::valid_schema_name(&cfg.schema) {
            return Err(StoreError::Backend(
                format!("invalid schema name {:?}", cfg.schema).into(),
            ));
        }
        let mut pg = tokio_postgres::Config::from_str(&cfg.url)
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let mgr = match tls::client_config(&cfg.tls).map_err(|e| StoreError::Backend(e.into()))? {
            None => {
                pg.ssl_mode(SslMode::Disable);
                Manager::from_config(pg, tokio_postgres::NoTls, manager_config)
            }
            Some(config) => {
                pg.ssl_mode(SslMode::Require);
                Manager::from_config(pg, tls::MakeRustls(config), manager_config)
            }
        };
        let pool = Pool::builder(mgr)
            .max_size(cfg.max_connections.max(1))
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let max_attempts = cfg.max_attempts.max(1);
        let commit_stats = Arc::new(commit::Counters::default());
        let commits = commit::Committers {
            pool: pool.clone(),
            sql: commit::batch_sql(&cfg.schema),
            max_attempts,
            max_batch: cfg.max_batch.max(1),
            stats: commit_stats.clone(),
        }
        .spawn(cfg.committers.max(1));
        let store = Self {
            pool,
            schema: cfg.schema.clone().into(),
            max_attempts,
            groups: Arc::default(),
            commits,
            commit_stats,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The schema version found in the database after migration.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let sql = format!(
            "SELECT v FROM {}.dps_meta WHERE k = 'schema_version'",
            self.schema
        );
        self.retry(|| async {
            let c = self.pool.get().await?;
            let row = c.query_one(sql.as_str(), &[]).await?;
            Ok(row.get::<_, i64>(0))
        })
        .await
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let s = self.schema.clone();
        self.retry(|| async {
            let mut c = self.pool.get().await?;
            for stmt in schema::bootstrap(&s) {
                c.batch_execute(&stmt).await?;
            }
            let tx = c.transaction().await?;
            let row = tx
                .query_one(
                    &format!("SELECT v FROM {s}.dps_meta WHERE k = 'schema_version' FOR UPDATE"),
                    &[],
                )
                .await?;
            let have: i64 = row.get(0);
            if have > schema::CURRENT {
                return Err(Fail::Store(StoreError::Backend(
                    format!(
                        "the database schema is version {have}, newer than this build ({})",
                        schema::CURRENT
                    )
                    .into(),
                )));
            }
            for (version, steps) in schema::MIGRATIONS.iter().filter(|(v, _)| *v > have) {
                for step in *steps {
                    tx.batch_execute(&step.replace("{s}", &s)).await?;
                }
                tx.execute(
                    &format!("UPDATE {s}.dps_meta SET v = $1 WHERE k = 'schema_version'"),
                    &[version],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Runs `f`, retrying transient failures with exponential backoff (10 ms, 20 ms, ...).
    pub(crate) async fn retry<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Fail>>,
    {
        retry(self.max_attempts, f).await
    }

    pub(crate) fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }
}

/// Runs `f` up to `max_attempts` times, retrying transient failures with exponential backoff
/// (10 ms, 20 ms, ... up to 1 s); the last transient failure becomes `Unavailable`.
pub(crate) async fn retry<T, F, Fut>(max_attempts: u32, mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Fail>>,
{
    let mut delay = Duration::from_millis(10);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(Fail::Store(e)) => return Err(e),
            Err(Fail::Retry(e)) if attempt >= max_attempts => {
                return Err(StoreError::Unavailable(e));
            }
            Err(Fail::Retry(_)) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
                attempt += 1;
            }
        }
    }
}

impl PgStore {
    /// Bytes the schema's tables and indexes take on disk (`pg_total_relation_size`).
    pub async fn disk_bytes(&self) -> Result<i64, StoreError> {
        let sql = "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT FROM pg_class c \
                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'";
        let schema = self.schema.to_string();
        self.retry(|| async {
            let c = self.pool.get().await?;
            Ok(c.query_one(sql, &[&schema]).await?.get::<_, i64>(0))
        })
        .await
    }

    /// How registration commits have been batched so far by this store's committers.
    pub fn commit_stats(&self) -> CommitStats {
        self.commit_stats.snapshot()
    }

    /// Whether this store's connections to the server are encrypted (`pg_stat_ssl` of one
    /// pooled connection).
    pub async fn tls_in_use(&self) -> Result<bool, StoreError> {
        let sql =
            "SELECT COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)";
        self.retry(|| async {
            let c = self.pool.get().await?;
            Ok(c.query_one(sql, &[]).await?.get::<_, bool>(0))
        })
        .await
    }

    /// The server's `ssl` setting (on or off) and its `ssl_cert_file`.
    pub async fn server_tls_settings(&self) -> Result<(bool, String), StoreError> {
        self.retry(|| async {
            let c = self.pool.get().await?;
            let on = c.query_one("SHOW ssl", &[]).await?.get::<_, String>(0) == "on";
            let file = c
                .query_one("SHOW ssl_cert_file", &[])
                .await?
                .get::<_, String>(0);
            Ok((on, file))
        })
        .await
    }

    /// Whether the server runs autovacuum (`SHOW autovacuum`); see [`Self::vacuum_operations`].
    pub async fn autovacuum(&self) -> Result<bool, StoreError> {
        self.retry(|| async {
            let c = self.pool.get().await?;
            Ok(c.query_one("SHOW autovacuum", &[])
                .await?
                .get::<_, String>(0)
                == "on")
        })
        .await
    }

    /// Vacuums and analyzes the operations table, the one table rows are steadily deleted
    /// from (expired operations). Autovacuum, on by default, does this by itself; call it
    /// periodically only on a server that runs with `autovacuum = off`, where dead rows would
    /// otherwise pile up and every registration commit's pruning would walk over them.
    pub async fn vacuum_operations(&self) -> Result<(), StoreError> {
        let sql = format!("VACUUM (ANALYZE) {}", self.table("operations"));
        self.retry(|| async {
            let c = self.pool.get().await?;
            c.batch_execute(&sql).await?;
            Ok(())
        })
        .await
    }

    /// Drops the schema and everything in it (tests and scale runs clean up with it).
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        self.retry(|| async {
            let c = self.pool.get().await?;
            c.batch_execute(&sql).await?;
            Ok(())
        })
        .await
    }
}
