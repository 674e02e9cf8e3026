//! The writer thread: group commit.
//!
//! Every write is a [`Request`] on one channel. The thread takes the first waiting request,
//! drains whatever else is queued (up to `max_batch`), applies them in arrival order inside one
//! write transaction (each with its own compare-and-set outcome, seeing the effects of the ones
//! before it), commits once with [`Durability::Immediate`] (one fsync for the batch), and only
//! then answers every request. So an answer always means "durable", and concurrent writers share
//! an fsync instead of queueing for one each.
//!
//! If the batch's transaction fails (an I/O error, a full disk), nothing of it is committed and
//! each request is retried alone in a transaction of its own, so one bad write cannot fail its
//! neighbours; whatever still fails is answered with that error. As with any database, a write
//! answered with an I/O error may or may not have reached the disk (a failed fsync leaves it
//! unknown); after one, redb refuses further writes until the store is reopened, so nothing is
//! applied twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use dps_store::{DeleteCondition, OPERATION_TTL_SECS, StoreError, WriteCondition};
use redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::{mpsc, oneshot};

use crate::Shared;
use crate::error;
use crate::schema::{self, DocKey, DocValue, ExpiryKey, GroupIndexKey, OpValue, RegValue};

/// At most this many expired operations of a scope are removed per transaction, so one commit
/// after a long idle period does not turn into an unbounded delete; the backlog drains at this
/// rate per transaction (which adds at most `max_batch` operations; reads hide expired
/// operations meanwhile).
pub(crate) const PRUNE_PER_COMMIT: usize = 256;

/// A write and where to send its outcome.
pub(crate) struct Request {
    pub(crate) op: WriteOp,
    pub(crate) reply: oneshot::Sender<Result<(), StoreError>>,
}

/// Which document table a [`WriteOp::PutDoc`] or [`WriteOp::DeleteDoc`] targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocTable {
    Enrollments,
    Groups,
    Certificates,
    HubIdentities,
}

impl DocTable {
    pub(crate) fn def(self) -> redb::TableDefinition<'static, DocKey, DocValue> {
        match self {
            DocTable::Enrollments => schema::ENROLLMENTS,
            DocTable::Groups => schema::GROUPS,
            DocTable::Certificates => schema::CERTIFICATES,
            DocTable::HubIdentities => schema::HUB_IDENTITIES,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            DocTable::Enrollments => "enrollments",
            DocTable::Groups => "groups",
            DocTable::Certificates => "certificates",
            DocTable::HubIdentities => "hub_identities",
        }
    }
}

/// A registration record, encoded.
pub(crate) struct RecordWrite {
    pub(crate) key: String,
    pub(crate) etag: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) json: Vec<u8>,
}

/// One write, fully encoded by the caller (serialization runs on the caller's task, in
/// parallel, not on the single writer thread).
pub(crate) enum WriteOp {
    PutDoc {
        table: DocTable,
        scope: String,
        key: String,
        etag: Option<String>,
        json: Vec<u8>,
        cond: WriteCondition,
    },
    DeleteDoc {
        table: DocTable,
        scope: String,
        key: String,
        cond: DeleteCondition,
    },
    DeleteRegistration {
        scope: String,
        key: String,
        cond: DeleteCondition,
    },
    Commit {
        scope: String,
        record: Option<RecordWrite>,
        op_id: String,
        created: i64,
        op_json: Vec<u8>,
        meter: Option<&'static str>,
    },
    Meter {
        scope: String,
        kind: &'static str,
        n: u64,
    },
}

impl WriteOp {
    /// The scope whose groups snapshot this write invalidates when it succeeds.
    fn groups_scope(&self) -> Option<&str> {
        match self {
            WriteOp::PutDoc {
                table: DocTable::Groups,
                scope,
                ..
            }
            | WriteOp::DeleteDoc {
                table: DocTable::Groups,
                scope,
                ..
            } => Some(scope),
            _ => None,
        }
    }
}

/// The writer thread's loop; returns when every sender is gone and the queue is drained.
pub(crate) fn run(
    db: Arc<Database>,
    mut rx: mpsc::Receiver<Request>,
    shared: Arc<Shared>,
    max_batch: usize,
    quick_repair: bool,
) {
    let max_batch = max_batch.max(1);
    let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        process(&db, &mut batch, &shared, quick_repair);
    }
}

/// Applies, commits and answers one batch (leaving `batch` empty).
fn process(db: &Database, batch: &mut Vec<Request>, shared: &Shared, quick_repair: bool) {
    let ops: Vec<&WriteOp> = batch.iter().map(|r| &r.op).collect();
    match commit(db, &ops, quick_repair) {
        Ok(outcomes) => {
            finish(shared, &ops, &outcomes);
            drop(ops);
            for (req, outcome) in batch.drain(..).zip(outcomes) {
                let _ = req.reply.send(outcome);
            }
        }
        Err(e) if ops.len() == 1 => {
            drop(ops);
            if let Some(req) = batch.pop() {
                let _ = req.reply.send(Err(e));
            }
        }
        Err(_) => {
            drop(ops);
            for req in batch.drain(..) {
                let outcome = match commit(db, &[&req.op], quick_repair) {
                    Ok(mut outcomes) => {
                        finish(shared, &[&req.op], &outcomes);
                        outcomes.pop().unwrap_or(Ok(()))
                    }
                    Err(e) => Err(e),
                };
                let _ = req.reply.send(outcome);
            }
        }
    }
}

/// After a successful commit: count it and invalidate the groups snapshots it changed (before
/// anyone is answered, so an acknowledged group write is never followed by a stale snapshot).
fn finish(shared: &Shared, ops: &[&WriteOp], outcomes: &[Result<(), StoreError>]) {
    shared.transactions.fetch_add(1, Ordering::Relaxed);
    shared.writes.fetch_add(ops.len() as u64, Ordering::Relaxed);
    shared
        .largest_batch
        .fetch_max(ops.len() as u64, Ordering::Relaxed);
    let scopes: HashSet<&str> = ops
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| o.is_ok())
        .filter_map(|(op, _)| op.groups_scope())
        .collect();
    if !scopes.is_empty() {
        shared.invalidate_groups(scopes);
    }
}

/// One durable transaction applying `ops` in order. The outer error means nothing was
/// committed; the inner results are each write's own outcome (compare-and-set failures).
pub(crate) fn commit(
    db: &Database,
    ops: &[&WriteOp],
    quick_repair: bool,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut txn = db.begin_write().map_err(error::db)?;
    txn.set_durability(Durability::Immediate)
        .map_err(error::db)?;
    txn.set_quick_repair(quick_repair);
    let outcomes = {
        let mut t = Tables::open(&txn)?;
        let mut deferred = Deferred::default();
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            outcomes.push(t.apply(op, &mut deferred).map_err(error::db)?);
        }
        t.flush(deferred).map_err(error::db)?;
        outcomes
    };
    txn.commit().map_err(error::db)?;
    Ok(outcomes)
}

type DocTableHandle<'t> = Table<'t, DocKey, DocValue>;

/// Work a batch does once at its end instead of once per write: meter increments summed per
/// (scope, kind), and one pruning pass per scope up to the latest cutoff any of its commits
/// asked for. Nothing else in the transaction reads meters or expired operations, and readers
/// only ever see the committed whole, so the outcome is the same as doing it write by write
/// (minus a B-tree update per registration for the meter and a range scan for the pruning).
#[derive(Default)]
struct Deferred<'o> {
    meters: HashMap<(&'o str, &'o str), u64>,
    prune: HashMap<&'o str, i64>,
}

/// Every table, open for the length of one transaction.
struct Tables<'t> {
    enrollments: DocTableHandle<'t>,
    groups: DocTableHandle<'t>,
    registrations: Table<'t, DocKey, RegValue>,
    by_group: Table<'t, GroupIndexKey, ()>,
    operations: Table<'t, DocKey, OpValue>,
    by_created: Table<'t, ExpiryKey, ()>,
    meters: Table<'t, DocKey, u64>,
    certificates: DocTableHandle<'t>,
    hub_identities: DocTableHandle<'t>,
}

/// A compare-and-set outcome (`Ok` = go ahead).
type Outcome = Result<(), StoreError>;

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            enrollments: txn.open_table(schema::ENROLLMENTS).map_err(error::db)?,
            groups: txn.open_table(schema::GROUPS).map_err(error::db)?,
            registrations: txn.open_table(schema::REGISTRATIONS).map_err(error::db)?,
            by_group: txn
                .open_table(schema::REGISTRATIONS_BY_GROUP)
                .map_err(error::db)?,
            operations: txn.open_table(schema::OPERATIONS).map_err(error::db)?,
            by_created: txn
                .open_table(schema::OPERATIONS_BY_CREATED)
                .map_err(error::db)?,
            meters: txn.open_table(schema::METERS).map_err(error::db)?,
            certificates: txn.open_table(schema::CERTIFICATES).map_err(error::db)?,
            hub_identities: txn.open_table(schema::HUB_IDENTITIES).map_err(error::db)?,
        })
    }

    fn doc_table(&mut self, t: DocTable) -> &mut DocTableHandle<'t> {
        match t {
            DocTable::Enrollments => &mut self.enrollments,
            DocTable::Groups => &mut self.groups,
            DocTable::Certificates => &mut self.certificates,
            DocTable::HubIdentities => &mut self.hub_identities,
        }
    }

    /// Applies the batch's deferred work.
    fn flush(&mut self, deferred: Deferred<'_>) -> Result<(), redb::StorageError> {
        for ((scope, kind), n) in deferred.meters {
            self.add_meter(scope, kind, n)?;
        }
        for (scope, cutoff) in deferred.prune {
            self.prune_operations(scope, cutoff)?;
        }
        Ok(())
    }

    fn apply<'o>(
        &mut self,
        op: &'o WriteOp,
        deferred: &mut Deferred<'o>,
    ) -> Result<Outcome, redb::StorageError> {
        match op {
            WriteOp::PutDoc {
                table,
                scope,
                key,
                etag,
                json,
                cond,
            } => {
                let t = self.doc_table(*table);
                let existing = t.get((scope.as_str(), key.as_str()))?;
                let outcome = check_write(existing.as_ref().map(|g| g.value().0), cond);
                drop(existing);
                if outcome.is_ok() {
                    t.insert(
                        (scope.as_str(), key.as_str()),
                        (etag.as_deref(), json.as_slice()),
                    )?;
                }
                Ok(outcome)
            }
            WriteOp::DeleteDoc {
                table,
                scope,
                key,
                cond,
            } => {
                let t = self.doc_table(*table);
                let existing = t.get((scope.as_str(), key.as_str()))?;
                let outcome = check_delete(existing.as_ref().map(|g| g.value().0), cond);
                drop(existing);
                if outcome.is_ok() {
                    t.remove((scope.as_str(), key.as_str()))?;
                }
                Ok(outcome)
            }
            WriteOp::DeleteRegistration { scope, key, cond } => {
                let existing = self.registrations.get((scope.as_str(), key.as_str()))?;
                let (outcome, group) = match existing.as_ref().map(|g| g.value()) {
                    Some((etag, group, _)) => {
                        (check_delete(Some(etag), cond), group.map(str::to_owned))
                    }
                    None => (check_delete(None, cond), None),
                };
                drop(existing);
                if outcome.is_ok() {
                    self.registrations.remove((scope.as_str(), key.as_str()))?;
                    if let Some(g) = group {
                        self.by_group
                            .remove((scope.as_str(), g.as_str(), key.as_str()))?;
                    }
                }
                Ok(outcome)
            }
            WriteOp::Commit {
                scope,
                record,
                op_id,
                created,
                op_json,
                meter,
            } => {
                let scope = scope.as_str();
                if let Some(rec) = record {
                    self.put_registration(scope, rec)?;
                }
                let cutoff = created.saturating_sub(OPERATION_TTL_SECS);
                let latest = deferred.prune.entry(scope).or_insert(cutoff);
                *latest = (*latest).max(cutoff);
                let old = self
                    .operations
                    .insert((scope, op_id.as_str()), (*created, op_json.as_slice()))?
                    .map(|g| g.value().0);
                if let Some(old_created) = old
                    && old_created != *created
                {
                    self.by_created
                        .remove((scope, old_created, op_id.as_str()))?;
                }
                self.by_created
                    .insert((scope, *created, op_id.as_str()), ())?;
                if let Some(kind) = meter {
                    let m = deferred.meters.entry((scope, kind)).or_default();
                    *m = m.saturating_add(1);
                }
                Ok(Ok(()))
            }
            WriteOp::Meter { scope, kind, n } => {
                let m = deferred.meters.entry((scope.as_str(), kind)).or_default();
                *m = m.saturating_add(*n);
                Ok(Ok(()))
            }
        }
    }

    /// Replaces the record unconditionally (a registration always writes its outcome) and
    /// moves its group-index entry when the group changed.
    fn put_registration(
        &mut self,
        scope: &str,
        rec: &RecordWrite,
    ) -> Result<(), redb::StorageError> {
        let key = rec.key.as_str();
        let old_group = self
            .registrations
            .insert(
                (scope, key),
                (
                    rec.etag.as_deref(),
                    rec.group.as_deref(),
                    rec.json.as_slice(),
                ),
            )?
            .and_then(|g| g.value().1.map(str::to_owned));
        if let Some(old) = old_group
            && rec.group.as_deref() != Some(old.as_str())
        {
            self.by_group.remove((scope, old.as_str(), key))?;
        }
        if let Some(g) = &rec.group {
            self.by_group.insert((scope, g.as_str(), key), ())?;
        }
        Ok(())
    }

    /// Removes the scope's operations created before `cutoff` (at most [`PRUNE_PER_COMMIT`]).
    fn prune_operations(&mut self, scope: &str, cutoff: i64) -> Result<(), redb::StorageError> {
        let expired = self
            .by_created
            .range((scope, i64::MIN, "")..(scope, cutoff, ""))?
            .take(PRUNE_PER_COMMIT)
            .map(|entry| {
                entry.map(|(k, _)| {
                    let (_, created, id) = k.value();
                    (created, id.to_owned())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (created, id) in expired {
            self.by_created.remove((scope, created, id.as_str()))?;
            self.operations.remove((scope, id.as_str()))?;
        }
        Ok(())
    }

    fn add_meter(&mut self, scope: &str, kind: &str, n: u64) -> Result<(), redb::StorageError> {
        let current = self.meters.get((scope, kind))?.map_or(0, |g| g.value());
        self.meters
            .insert((scope, kind), current.saturating_add(n))?;
        Ok(())
    }
}

/// `existing`: `None` = no record, `Some(etag)` = a record with that bare etag.
fn check_write(existing: Option<Option<&str>>, cond: &WriteCondition) -> Outcome {
    match (cond, existing) {
        (WriteCondition::MustNotExist, Some(_)) => Err(StoreError::Conflict),
        (WriteCondition::IfMatch(_), None) => Err(StoreError::PreconditionFailed),
        (WriteCondition::IfMatch(want), Some(have)) if have != Some(want.bare()) => {
            Err(StoreError::PreconditionFailed)
        }
        _ => Ok(()),
    }
}

fn check_delete(existing: Option<Option<&str>>, cond: &DeleteCondition) -> Outcome {
    match (cond, existing) {
        (_, None) => Err(StoreError::NotFound),
        (DeleteCondition::IfMatch(want), Some(have)) if have != Some(want.bare()) => {
            Err(StoreError::PreconditionFailed)
        }
        _ => Ok(()),
    }
}
