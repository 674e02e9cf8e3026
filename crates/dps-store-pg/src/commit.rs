//! Group commit of registration commits: concurrent `commit_registration` calls are queued on
//! a channel and a few committer tasks each take everything queued (up to a bound) and write it
//! with one multi-row statement, so one transaction and one WAL flush serve many
//! registrations.
//!
//! - **Answers.** Every caller is answered only after the statement holding its commit
//!   returned (committed). A batch that fails for a reason retrying will not fix is replayed
//!   one commit at a time, so one bad commit fails alone.
//! - **Retries.** Transient failures (lost connection, deadlock, serialization failure) retry
//!   the whole batch with backoff, as every other statement of the store does; a batch that
//!   still fails answers each caller `Unavailable`.
//! - **Metering once.** The meter counts the batch's operations that were not in the table
//!   before the statement, so a retried batch whose first attempt did commit (e.g. the
//!   connection dropped while the commit was acknowledged) is not counted twice. Operation IDs
//!   are minted per registration attempt, so a repeated ID is always such a replay.
//! - **Ordering.** Within a batch the last commit for a registration ID wins, as if the
//!   commits had run one after another in arrival order. Rows are written in key order, so
//!   two concurrent batches never deadlock on each other's rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use deadpool_postgres::Pool;
use dps_store::{Result, StoreError};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{Fail, retry};

/// One queued registration commit, encoded for the statement.
pub(crate) struct Item {
    pub(crate) scope: String,
    /// The record's registration-ID key; none when the commit writes no record.
    pub(crate) key: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) etag: Option<String>,
    pub(crate) doc: Option<Vec<u8>>,
    pub(crate) op_id: String,
    pub(crate) created: i64,
    pub(crate) op_doc: Vec<u8>,
    pub(crate) kind: Option<&'static str>,
    pub(crate) reply: oneshot::Sender<Result<()>>,
}

/// What the committers need: the pool, the statement and the retry budget.
pub(crate) struct Committers {
    pub(crate) pool: Pool,
    pub(crate) sql: String,
    pub(crate) max_attempts: u32,
    pub(crate) max_batch: usize,
    pub(crate) stats: Arc<Counters>,
}

/// How the committers have batched so far (see [`CommitStats`]).
#[derive(Default)]
pub(crate) struct Counters {
    batches: AtomicU64,
    commits: AtomicU64,
    largest: AtomicU64,
    replayed: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CommitStats {
        CommitStats {
            batches: self.batches.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            largest_batch: self.largest.load(Ordering::Relaxed),
            replayed_batches: self.replayed.load(Ordering::Relaxed),
        }
    }
}

/// Batching of registration commits since the store was connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitStats {
    /// Batches written (each one statement, one transaction).
    pub batches: u64,
    /// Registration commits in them.
    pub commits: u64,
    /// The most commits one batch held.
    pub largest_batch: u64,
    /// Batches that failed for good and were replayed one commit at a time.
    pub replayed_batches: u64,
}

impl Committers {
    /// Starts `n` committer tasks on the current runtime and returns the queue they serve.
    /// They stop when every sender is dropped.
    pub(crate) fn spawn(self, n: usize) -> mpsc::Sender<Item> {
        let (tx, rx) = mpsc::channel(self.max_batch.saturating_mul(n.max(1)).max(1));
        let rx = Arc::new(Mutex::new(rx));
        let this = Arc::new(self);
        for _ in 0..n.max(1) {
            tokio::spawn(this.clone().run(rx.clone()));
        }
        tx
    }

    async fn run(self: Arc<Self>, rx: Arc<Mutex<mpsc::Receiver<Item>>>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            // One committer gathers at a time; the others are writing their batches meanwhile,
            // so whatever arrives during a write is the next batch.
            let got = rx.lock().await.recv_many(&mut batch, self.max_batch).await;
            if got == 0 {
                return;
            }
            let n = u64::try_from(got).unwrap_or(u64::MAX);
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            self.stats.commits.fetch_add(n, Ordering::Relaxed);
            self.stats.largest.fetch_max(n, Ordering::Relaxed);
            self.commit(&mut batch).await;
        }
    }

    /// Writes `batch` and answers every caller in it (the batch is left empty).
    async fn commit(&self, batch: &mut Vec<Item>) {
        match self.write(batch).await {
            Err(e) if !e.is_retryable() && batch.len() > 1 => {
                // Replay one by one: each caller gets its own commit's outcome.
                self.stats.replayed.fetch_add(1, Ordering::Relaxed);
                for item in batch.drain(..) {
                    let r = self.write(std::slice::from_ref(&item)).await;
                    let _ = item.reply.send(r);
                }
            }
            Ok(()) => {
                for item in batch.drain(..) {
                    let _ = item.reply.send(Ok(()));
                }
            }
            Err(e) => {
                let (retryable, e): (bool, Arc<dyn std::error::Error + Send + Sync>) = match e {
                    StoreError::Unavailable(e) => (true, Arc::from(e)),
                    StoreError::Backend(e) => (false, Arc::from(e)),
                    other => (false, Arc::new(other)),
                };
                for item in batch.drain(..) {
                    let shared = Box::new(Shared(e.clone()));
                    let _ = item.reply.send(Err(if retryable {
                        StoreError::Unavailable(shared)
                    } else {
                        StoreError::Backend(shared)
                    }));
                }
            }
        }
    }

    async fn write(&self, batch: &[Item]) -> Result<()> {
        let scope: Vec<&str> = batch.iter().map(|i| i.scope.as_str()).collect();
        let key: Vec<Option<&str>> = batch.iter().map(|i| i.key.as_deref()).collect();
        let group: Vec<Option<&str>> = batch.iter().map(|i| i.group.as_deref()).collect();
        let etag: Vec<Option<&str>> = batch.iter().map(|i| i.etag.as_deref()).collect();
        let doc: Vec<Option<&[u8]>> = batch.iter().map(|i| i.doc.as_deref()).collect();
        let op_id: Vec<&str> = batch.iter().map(|i| i.op_id.as_str()).collect();
        let created: Vec<i64> = batch.iter().map(|i| i.created).collect();
        let op_doc: Vec<&[u8]> = batch.iter().map(|i| i.op_doc.as_slice()).collect();
        let kind: Vec<Option<&str>> = batch.iter().map(|i| i.kind).collect();
        // Expired operations deleted per scope: at least twice what the batch adds, so a
        // backlog drains while no single statement grows large.
        let prune = i32::try_from(batch.len().saturating_mul(2).max(64)).unwrap_or(i32::MAX);
        let ttl = dps_store::OPERATION_TTL_SECS;
        let shard = next_shard();
        retry(self.max_attempts, || async {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(&self.sql).await?;
            client
                .execute(
                    &stmt,
                    &[
                        &scope, &key, &group, &etag, &doc, &op_id, &created, &op_doc, &kind,
                        &shard, &ttl, &prune,
                    ],
                )
                .await?;
            Ok::<_, Fail>(())
        })
        .await
    }
}

/// One error answered to every caller of a failed batch.
#[derive(Debug)]
struct Shared(Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Meter rows per (scope, kind): concurrent writers add to different rows instead of queueing
/// on one row lock held until each transaction's WAL flush. A batch adds its whole count to
/// one row; reading the counts sums at most this many rows per kind.
pub(crate) const METER_SHARDS: i32 = 1024;

/// The next meter row to count in: round robin over [`METER_SHARDS`].
pub(crate) fn next_shard() -> i32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    i32::try_from(NEXT.fetch_add(1, Ordering::Relaxed) % METER_SHARDS.unsigned_abs()).unwrap_or(0)
}

/// A batch of registration commits as one statement (one round trip, one implicit
/// transaction). `$1..$9` are parallel arrays, one element per commit: scope, record key (null:
/// no record), group key, etag, record JSON, operation ID, operation time, operation JSON,
/// meter kind (null: not billable); `$10` the meter shard, `$11` the operation TTL in seconds,
/// `$12` the most expired operations to delete per scope.
///
/// - Records and operations are upserted, the last commit of a key in the batch winning.
/// - The meter counts, per scope and kind, the distinct operations that did not exist before
///   the statement (all CTEs see the same snapshot), into one shard row.
/// - Pruning deletes each scope's oldest operations older than the TTL before the batch's
///   newest operation, skipping rows another transaction holds (so concurrent batches never
///   wait on each other for it) and the batch's own operations. `ORDER BY created` makes it an
///   ordered scan of `operations_by_created` that stops after `$12` rows (a bitmap scan, which
///   the planner picks for the bare range when the table has no statistics, reads every dead
///   row in the range on every commit).
pub(crate) fn batch_sql(schema: &str) -> String {
    format!(
        "WITH input AS (\
           SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BYTEA[], \
             $6::TEXT[], $7::BIGINT[], $8::BYTEA[], $9::TEXT[]) \
           WITH ORDINALITY AS t(scope, key, group_key, etag, doc, op_id, created, op_doc, kind, ord)), \
         existing AS (\
           SELECT o.scope, o.id FROM {s}.operations o JOIN input i ON o.scope = i.scope AND o.id = i.op_id), \
         reg AS (\
           INSERT INTO {s}.registrations (scope, key, group_key, etag, doc) \
           SELECT DISTINCT ON (scope, key) scope, key, group_key, etag, doc FROM input \
           WHERE key IS NOT NULL ORDER BY scope, key, ord DESC \
           ON CONFLICT (scope, key) DO UPDATE SET group_key = EXCLUDED.group_key, \
           etag = EXCLUDED.etag, doc = EXCLUDED.doc RETURNING 1), \
         op AS (\
           INSERT INTO {s}.operations (scope, id, created, doc) \
           SELECT DISTINCT ON (scope, op_id) scope, op_id, created, op_doc FROM input \
           ORDER BY scope, op_id, ord DESC \
           ON CONFLICT (scope, id) DO UPDATE SET created = EXCLUDED.created, doc = EXCLUDED.doc RETURNING 1), \
         meter AS (\
           INSERT INTO {s}.meter_shards (scope, kind, shard, count) \
           SELECT i.scope, i.kind, $10::INT, count(DISTINCT i.op_id) FROM input i \
           WHERE i.kind IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM existing e WHERE e.scope = i.scope AND e.id = i.op_id) \
           GROUP BY i.scope, i.kind ORDER BY i.scope, i.kind \
           ON CONFLICT (scope, kind, shard) DO UPDATE SET count = {s}.meter_shards.count + EXCLUDED.count RETURNING 1), \
         horizon AS (\
           SELECT scope, max(created) - $11::BIGINT AS h FROM input GROUP BY scope), \
         expired AS (\
           SELECT x.scope, x.id FROM horizon, LATERAL (\
             SELECT o.scope, o.id FROM {s}.operations o \
             WHERE o.scope = horizon.scope AND o.created < horizon.h \
               AND NOT EXISTS (SELECT 1 FROM input i WHERE i.scope = o.scope AND i.op_id = o.id) \
             ORDER BY o.created LIMIT $12::INT FOR UPDATE SKIP LOCKED) x), \
         pruned AS (\
           DELETE FROM {s}.operations o USING expired e WHERE o.scope = e.scope AND o.id = e.id RETURNING 1) \
         SELECT (SELECT count(*) FROM reg) + (SELECT count(*) FROM op) + (SELECT count(*) FROM meter) \
           + (SELECT count(*) FROM pruned)",
        s = schema
    )
}
