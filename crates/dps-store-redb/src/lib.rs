//! The embedded durable storage backend of dps-rs: [`RedbStore`] implements
//! [`dps_store::Store`] over one [redb](https://docs.rs/redb) file, the default for a single
//! dpsd node (`storage.kind = "embedded"`).
//!
//! What it guarantees:
//! - **Durability.** A write's future resolves only after the transaction holding it was
//!   committed with `Durability::Immediate` (fsync'd). An acknowledged enrollment, registration,
//!   operation or meter survives a crash or power loss (as far as the disk honours fsync).
//! - **Group commit.** Writes go to one writer thread, which applies every queued write in one
//!   transaction (each with its own compare-and-set outcome, in arrival order) and commits once,
//!   so N concurrent registrations cost about one fsync, not N. [`RedbStore::writer_stats`]
//!   shows the batching.
//! - **Atomicity.** `commit_registration` writes the record, its group-index entry, the
//!   operation and the meter in one transaction; readers see all of it or none.
//! - **Consistent reads.** Every read runs in a redb MVCC read transaction (a snapshot); reads
//!   never wait for the writer.
//! - **Off the async workers.** Transactions, fsyncs and index upkeep run on the writer thread;
//!   callers only encode JSON and wait on a channel. Listings run on tokio's blocking pool,
//!   point reads inline (they are cheaper than the hand-off; see [`ReadMode`]).
//! - **Cached groups.** `groups_snapshot` is built once per scope and shared until a group
//!   write in that scope commits (invalidated before the write is acknowledged).
//! - **Single process.** redb locks the file: a second [`RedbStore::open`] of the same file,
//!   in this or another process, fails with `StoreError::Unavailable` until the first store is
//!   dropped. Several processes on one file are not supported (the groups snapshot cache would
//!   not see another process's writes anyway); scale out with PostgreSQL instead.
//!
//! What it does not do: mint etags, read a clock or decide anything (the service does), or
//! expire operations on a timer: an expired operation is hidden from reads (the caller passes
//! `now`) and deleted by a later registration commit of the same scope, as in the memory store. A write whose future is dropped after it was
//! queued may still be applied. [`RedbStore::open`] and dropping the last handle (which waits
//! for queued writes and releases the file) block briefly: do both outside hot paths.
//!
//! Start from [`RedbStore::open`]; [`RedbOptions`] tunes the cache, batching and read mode.
//! The file layout is in [`schema`]; failures this crate detects itself are an [`Error`] inside
//! the `StoreError`'s source.
//!
//! ```
//! use dps_store::{Store, WriteCondition};
//! use dps_store_redb::RedbStore;
//! use dps_types::{Etag, IdScope, IndividualEnrollment};
//!
//! # let dir = std::env::temp_dir().join(format!("dps-redb-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("dps.redb");
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! rt.block_on(async {
//!     let store = RedbStore::open(&path).unwrap();
//!     let scope = IdScope::new("0ne00000001").unwrap();
//!     let mut e: IndividualEnrollment = serde_json::from_str(
//!         r#"{"registrationId":"Dev-1","attestation":{"type":"symmetricKey"}}"#).unwrap();
//!     e.etag = Some(Etag::new("v1"));
//!     // Resolves once the write is on disk.
//!     store.put_enrollment(&scope, e, WriteCondition::MustNotExist).await.unwrap();
//!     drop(store);
//!
//!     // Reopened (as after a restart), the enrollment is still there.
//!     let store = RedbStore::open(&path).unwrap();
//!     let got = store.enrollment(&scope, "dev-1").await.unwrap().unwrap();
//!     assert_eq!(got.registration_id.as_str(), "Dev-1");
//! });
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

mod error;
mod hub_identities;
pub mod schema;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use dps_store::{
    DeleteCondition, Page, RegistrationCommit, Result, Store, StoreError, WriteCondition,
};
use dps_types::{
    CaCertificate, EnrollmentGroup, HubIdentity, IdScope, IndividualEnrollment, Operation,
    RegistrationRecord, Timestamp,
};
use redb::{Database, ReadableDatabase};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

pub use error::Error;

use writer::{DocTable, RecordWrite, Request, WriteOp};

/// Which reads leave the calling task for tokio's blocking pool.
///
/// A point read is a B-tree descent plus a JSON decode: a few microseconds of CPU when the
/// pages are in redb's cache (one disk read per missing page otherwise). Sending it through
/// `spawn_blocking` costs far more than the read itself: the `throughput` example measured
/// about 4 µs of CPU per inline `registration()` read against 20-27 µs through
/// `spawn_blocking`, and 500 000 against 80 000-95 000 reads per second (64 concurrent
/// readers, 20 000 records, 2 cores). So by default point reads run inline, while listings and
/// the groups snapshot rebuild, whose length depends on the data, go to the blocking pool.
/// Choose [`ReadMode::Blocking`] when the database is much larger than the page cache and the
/// disk is slow, so cache misses would stall async workers. Without a tokio runtime every read
/// runs inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadMode {
    /// Point reads (one record, one operation, the meters) inline; listings and the groups
    /// snapshot rebuild on the blocking pool.
    #[default]
    Mixed,
    /// Every read inline on the calling task.
    Inline,
    /// Every read on the blocking pool.
    Blocking,
}

/// Tuning for [`RedbStore::open_with`]. Build from `Default` and set fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedbOptions {
    /// redb's page cache, in bytes (default 256 MiB).
    pub cache_size: usize,
    /// The most writes one transaction (one fsync) carries (default 1024).
    pub max_batch: usize,
    /// Writes that may wait for the writer thread before callers wait to enqueue (default 4096).
    pub queue_depth: usize,
    /// Where reads run (default [`ReadMode::Mixed`]).
    pub read_mode: ReadMode,
    /// redb quick-repair (default `true`): each commit also saves the allocator state and
    /// commits in two phases, so reopening after a crash takes milliseconds instead of a walk
    /// over the whole file. Measured after SIGKILL with 200 000 registrations (285 MB): 57 ms
    /// with, 2.2 s without (and growing with the file). The price is a second fsync per
    /// transaction, which group commit shares across the batch (10-25 % of commit throughput
    /// in the `throughput` example). Durability is the same either way.
    pub quick_repair: bool,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            cache_size: 256 * 1024 * 1024,
            max_batch: 1024,
            queue_depth: 4096,
            read_mode: ReadMode::Mixed,
            quick_repair: true,
        }
    }
}

/// Counters of the writer thread (diagnostics; they reset when the store is opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriterStats {
    /// Committed write transactions (one durable commit each: one fsync, two with
    /// quick-repair).
    pub transactions: u64,
    /// Writes carried by them.
    pub writes: u64,
    /// The most writes one transaction carried.
    pub largest_batch: u64,
}

/// The redb store. Cloning shares the database, the writer thread and the caches; the file is
/// closed (after the queued writes are committed) when the last clone is dropped.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: Arc<Database>,
    read_mode: ReadMode,
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

/// State shared with the writer thread.
pub(crate) struct Shared {
    transactions: AtomicU64,
    writes: AtomicU64,
    largest_batch: AtomicU64,
    groups: Mutex<GroupsCache>,
}

/// Groups snapshots per scope key. `generation` moves on every invalidation, so a reader that
/// loaded a snapshot from a read transaction older than a group write never caches it.
#[derive(Default)]
struct GroupsCache {
    generation: u64,
    scopes: HashMap<String, Arc<[EnrollmentGroup]>>,
}

impl Shared {
    pub(crate) fn invalidate_groups<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) {
        let mut cache = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        cache.generation += 1;
        for s in scopes {
            cache.scopes.remove(s);
        }
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.inner.path)
            .field("read_mode", &self.inner.read_mode)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and exit; joining it means
        // the file is released when the last handle is gone (so it can be reopened at once).
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[derive(Clone, Copy)]
enum ReadKind {
    Point,
    Scan,
}

impl RedbStore {
    /// Opens (or creates) the database file at `path` with default [`RedbOptions`]: creates the
    /// tables of a new file, checks the format version of an existing one (a newer one is
    /// refused with `StoreError::Backend` holding [`Error::NewerFormat`]), and starts the writer
    /// thread. Blocking: call it before serving, or from `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, RedbOptions::default())
    }

    /// [`RedbStore::open`] with options.
    pub fn open_with(path: impl AsRef<Path>, options: RedbOptions) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let db = Database::builder()
            .set_cache_size(options.cache_size)
            .create(&path)
            .map_err(error::db)?;
        Self::start(db, path, options)
    }

    /// Prepares the schema of an opened database and starts the writer thread.
    fn start(db: Database, path: PathBuf, options: RedbOptions) -> Result<Self> {
        schema::prepare(&db)?;
        let db = Arc::new(db);
        let shared = Arc::new(Shared {
            transactions: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
            groups: Mutex::new(GroupsCache::default()),
        });
        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let writer = {
            let (db, shared) = (db.clone(), shared.clone());
            let (max_batch, quick_repair) = (options.max_batch, options.quick_repair);
            std::thread::Builder::new()
                .name("dps-redb-writer".into())
                .spawn(move || writer::run(db, rx, shared, max_batch, quick_repair))
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?
        };
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                db,
                read_mode: options.read_mode,
                shared,
                tx: Some(tx),
                writer: Some(writer),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// What the writer thread has done since the store was opened.
    pub fn writer_stats(&self) -> WriterStats {
        let s = &self.inner.shared;
        WriterStats {
            transactions: s.transactions.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            largest_batch: s.largest_batch.load(Ordering::Relaxed),
        }
    }

    /// Queues a write and waits until it is committed (or refused).
    async fn write(&self, op: WriteOp) -> Result<()> {
        let tx = self.inner.tx.as_ref().ok_or_else(error::writer_stopped)?;
        let (reply, answer) = oneshot::channel();
        tx.send(Request { op, reply })
            .await
            .map_err(|_| error::writer_stopped())?;
        answer.await.map_err(|_| error::writer_stopped())?
    }

    /// Queues a write behind the writes queued before it without waiting for its commit.
    async fn queue(&self, op: WriteOp) -> Result<()> {
        let tx = self.inner.tx.as_ref().ok_or_else(error::writer_stopped)?;
        // Nobody waits for the answer: the writer's reply goes nowhere.
        let (reply, _) = oneshot::channel();
        tx.send(Request { op, reply })
            .await
            .map_err(|_| error::writer_stopped())
    }

    /// Runs `f` on a snapshot, inline or on the blocking pool as [`ReadMode`] says.
    async fn read<T, F>(&self, kind: ReadKind, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let offload = match (self.inner.read_mode, kind) {
            (ReadMode::Inline, _) | (ReadMode::Mixed, ReadKind::Point) => false,
            (ReadMode::Blocking, _) | (ReadMode::Mixed, ReadKind::Scan) => true,
        };
        if offload && let Ok(rt) = tokio::runtime::Handle::try_current() {
            let db = self.inner.db.clone();
            return match rt.spawn_blocking(move || f(&db)).await {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(StoreError::Unavailable(Box::new(e))),
            };
        }
        f(&self.inner.db)
    }

    async fn get_doc<T: DeserializeOwned + Send + 'static>(
        &self,
        table: DocTable,
        scope: &IdScope,
        key: &str,
    ) -> Result<Option<T>> {
        let (scope, key) = (scope.key(), key.to_owned());
        self.read(ReadKind::Point, move |db| {
            let txn = db.begin_read().map_err(error::db)?;
            let t = txn.open_table(table.def()).map_err(error::db)?;
            let Some(v) = t.get((scope.as_str(), key.as_str())).map_err(error::db)? else {
                return Ok(None);
            };
            decode(table.name(), &key, v.value().1).map(Some)
        })
        .await
    }

    async fn list_docs<T: DeserializeOwned + Send + 'static>(
        &self,
        table: DocTable,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<T>> {
        let (scope, after) = (scope.key(), after.map(str::to_owned));
        self.read(ReadKind::Scan, move |db| {
            let txn = db.begin_read().map_err(error::db)?;
            let t = txn.open_table(table.def()).map_err(error::db)?;
            let end = format!("{scope}\0");
            let start = match &after {
                Some(a) => Bound::Excluded((scope.as_str(), a.as_str())),
                None => Bound::Included((scope.as_str(), "")),
            };
            let range = t
                .range((start, Bound::Excluded((end.as_str(), ""))))
                .map_err(error::db)?;
            let mut items = Vec::new();
            let mut last: Option<String> = None;
            for entry in range {
                let (k, v) = entry.map_err(error::db)?;
                if items.len() == limit {
                    return Ok(Page {
                        items,
                        next_after: last,
                    });
                }
                let key = k.value().1;
                items.push(decode(table.name(), key, v.value().1)?);
                last = Some(key.to_owned());
            }
            Ok(Page {
                items,
                next_after: None,
            })
        })
        .await
    }

    fn doc_write(
        table: DocTable,
        scope: &IdScope,
        key: String,
        etag: Option<&dps_types::Etag>,
        json: Vec<u8>,
        cond: WriteCondition,
    ) -> WriteOp {
        WriteOp::PutDoc {
            table,
            scope: scope.key(),
            key,
            etag: etag.map(|e| e.bare().to_owned()),
            json,
            cond,
        }
    }
}

fn decode<T: DeserializeOwned>(table: &'static str, key: &str, json: &[u8]) -> Result<T> {
    serde_json::from_slice(json).map_err(|e| error::corrupt(table, key, e))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(error::encode)
}

impl Store for RedbStore {
    async fn enrollment(&self, scope: &IdScope, key: &str) -> Result<Option<IndividualEnrollment>> {
        self.get_doc(DocTable::Enrollments, scope, key).await
    }

    async fn put_enrollment(
        &self,
        scope: &IdScope,
        e: IndividualEnrollment,
        cond: WriteCondition,
    ) -> Result<()> {
        let json = encode(&e)?;
        let op = Self::doc_write(
            DocTable::Enrollments,
            scope,
            e.registration_id.key(),
            e.etag.as_ref(),
            json,
            cond,
        );
        self.write(op).await
    }

    async fn delete_enrollment(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Result<()> {
        self.write(WriteOp::DeleteDoc {
            table: DocTable::Enrollments,
            scope: scope.key(),
            key: key.to_owned(),
            cond,
        })
        .await
    }

    async fn list_enrollments(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<IndividualEnrollment>> {
        self.list_docs(DocTable::Enrollments, scope, after, limit)
            .await
    }

    async fn group(&self, scope: &IdScope, key: &str) -> Result<Option<EnrollmentGroup>> {
        self.get_doc(DocTable::Groups, scope, key).await
    }

    async fn put_group(
        &self,
        scope: &IdScope,
        g: EnrollmentGroup,
        cond: WriteCondition,
    ) -> Result<()> {
        let json = encode(&g)?;
        let op = Self::doc_write(
            DocTable::Groups,
            scope,
            g.enrollment_group_id.key(),
            g.etag.as_ref(),
            json,
            cond,
        );
        self.write(op).await
    }

    async fn delete_group(&self, scope: &IdScope, key: &str, cond: DeleteCondition) -> Result<()> {
        self.write(WriteOp::DeleteDoc {
            table: DocTable::Groups,
            scope: scope.key(),
            key: key.to_owned(),
            cond,
        })
        .await
    }

    async fn list_groups(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<EnrollmentGroup>> {
        self.list_docs(DocTable::Groups, scope, after, limit).await
    }

    async fn groups_snapshot(&self, scope: &IdScope) -> Result<Arc<[EnrollmentGroup]>> {
        let skey = scope.key();
        let generation = {
            let cache = self
                .inner
                .shared
                .groups
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(s) = cache.scopes.get(&skey) {
                return Ok(s.clone());
            }
            cache.generation
        };
        // Loaded after reading the generation: if a group write commits meanwhile, the
        // generation moves and this (possibly older) snapshot is returned but not cached.
        let snapshot: Arc<[EnrollmentGroup]> = self
            .list_docs::<EnrollmentGroup>(DocTable::Groups, scope, None, usize::MAX)
            .await?
            .items
            .into();
        let mut cache = self
            .inner
            .shared
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.generation == generation {
            cache.scopes.insert(skey, snapshot.clone());
        }
        Ok(snapshot)
    }

    async fn registration(&self, scope: &IdScope, key: &str) -> Result<Option<RegistrationRecord>> {
        let (scope, key) = (scope.key(), key.to_owned());
        self.read(ReadKind::Point, move |db| {
            let txn = db.begin_read().map_err(error::db)?;
            let t = txn.open_table(schema::REGISTRATIONS).map_err(error::db)?;
            let Some(v) = t.get((scope.as_str(), key.as_str())).map_err(error::db)? else {
                return Ok(None);
            };
            decode("registrations", &key, v.value().2).map(Some)
        })
        .await
    }

    async fn delete_registration(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Result<()> {
        self.write(WriteOp::DeleteRegistration {
            scope: scope.key(),
            key: key.to_owned(),
            cond,
        })
        .await
    }

    async fn list_registrations(
        &self,
        scope: &IdScope,
        group_key: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<RegistrationRecord>> {
        let (scope, group) = (scope.key(), group_key.to_owned());
        let after = after.map(str::to_owned);
        self.read(ReadKind::Scan, move |db| {
            let txn = db.begin_read().map_err(error::db)?;
            let index = txn
                .open_table(schema::REGISTRATIONS_BY_GROUP)
                .map_err(error::db)?;
            let records = txn.open_table(schema::REGISTRATIONS).map_err(error::db)?;
            let (s, g) = (scope.as_str(), group.as_str());
            let end = format!("{group}\0");
            let start = match &after {
                Some(a) => Bound::Excluded((s, g, a.as_str())),
                None => Bound::Included((s, g, "")),
            };
            let range = index
                .range((start, Bound::Excluded((s, end.as_str(), ""))))
                .map_err(error::db)?;
            let mut items = Vec::new();
            let mut last: Option<String> = None;
            for entry in range {
                let (k, _) = entry.map_err(error::db)?;
                if items.len() == limit {
                    return Ok(Page {
                        items,
                        next_after: last,
                    });
                }
                let rid = k.value().2;
                let v = records
                    .get((s, rid))
                    .map_err(error::db)?
                    .ok_or_else(|| error::dangling("registrations_by_group", rid))?;
                items.push(decode("registrations", rid, v.value().2)?);
                last = Some(rid.to_owned());
            }
            Ok(Page {
                items,
                next_after: None,
            })
        })
        .await
    }

    async fn commit_registration(&self, scope: &IdScope, c: RegistrationCommit) -> Result<()> {
        let record = match &c.record {
            Some(r) => Some(RecordWrite {
                key: r.state.registration_id.key(),
                etag: r.state.etag.as_ref().map(|e| e.bare().to_owned()),
                group: r.enrollment_group_id.as_ref().map(|g| g.key()),
                json: encode(r)?,
            }),
            None => None,
        };
        self.write(WriteOp::Commit {
            scope: scope.key(),
            record,
            op_id: c.operation.operation_id.to_string(),
            created: c.operation.created.unix_seconds(),
            op_json: encode(&c.operation)?,
            meter: c.meter,
        })
        .await
    }

    async fn operation(
        &self,
        scope: &IdScope,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<Operation>> {
        let (scope, id) = (scope.key(), id.to_owned());
        self.read(ReadKind::Point, move |db| {
            let txn = db.begin_read().map_err(error::db)?;
            let t = txn.open_table(schema::OPERATIONS).map_err(error::db)?;
            let Some(v) = t.get((scope.as_str(), id.as_str())).map_err(error::db)? else {
                return Ok(None);
            };
            let (created, json) = v.value();
            if dps_store::operation_expired(created, now) {
                return Ok(None);
            }
            decode("operations", &id, json).map(Some)
        })
        .await
    }

    async fn certificate(&self, scope: &IdScope, key: &str) -> Result<Option<CaCertificate>> {
        self.get_doc(DocTable::Certificates, scope, key).await
    }

    async fn put_certificate(
        &self,
        scope: &IdScope,
        c: CaCertificate,
        cond: WriteCondition,
    ) -> Result<()> {
        let json = encode(&c)?;
        let op = Self::doc_write(
            DocTable::Certificates,
            scope,
            c.key(),
            c.etag.as_ref(),
            json,
            cond,
        );
        self.write(op).await
    }

    async fn delete_certificate(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Result<()> {
        self.write(WriteOp::DeleteDoc {
            table: DocTable::Certificates,
            scope: scope.key(),
            key: key.to_owned(),
            cond,
        })
        .await
    }

    async fn list_certificates(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<CaCertificate>> {
        self.list_docs(DocTable::Certificates, scope, after, limit)
            .await
    }

    async fn meter(&self, scope: &IdScope, kind: &'static str, n: u64) -> Result<()> {
        self.write(WriteOp::Meter {
            scope: scope.key(),
            kind,
            n,
        })
        .await
    }

    async fn operation_counts(&self, scope: &IdScope) -> Result<BTreeMap<String, u64>> {
        let scope = scope.key();
        self.read(ReadKind::Point, move |db| {
            let txn = db.begin_read().map_err(error::db)?;
            let t = txn.open_table(schema::METERS).map_err(error::db)?;
            let end = format!("{scope}\0");
            let range = t
                .range((scope.as_str(), "")..(end.as_str(), ""))
                .map_err(error::db)?;
            let mut counts = BTreeMap::new();
            for entry in range {
                let (k, v) = entry.map_err(error::db)?;
                counts.insert(k.value().1.to_owned(), v.value());
            }
            Ok(counts)
        })
        .await
    }

    async fn hub_identity(&self, hub: &str, device_id: &str) -> Result<Option<HubIdentity>> {
        self.get_hub_identity(hub, device_id).await
    }

    async fn put_hub_identity(&self, id: HubIdentity) -> Result<()> {
        self.write_hub_identity(id).await
    }

    async fn delete_hub_identity(&self, hub: &str, device_id: &str) -> Result<()> {
        self.remove_hub_identity(hub, device_id).await
    }

    async fn list_hub_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<HubIdentity>> {
        self.page_hub_identities(after, limit).await
    }
}

#[cfg(test)]
mod tests;
