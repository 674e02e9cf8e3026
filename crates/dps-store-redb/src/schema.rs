//! The on-disk layout (format version 3).
//!
//! Every record table is keyed by `(scope key, record key)` tuples, so a scope's records are one
//! contiguous key range in record-key order (redb compares `&str` tuple elements bytewise, the
//! order `BTreeMap<String, _>` and the memory store use). Values are the record's serde JSON
//! (Azure's form, exactly what the service API returns) inside a small envelope holding the
//! fields the writer must see without parsing the document: the bare etag (compare-and-set) and,
//! for registrations, the group key (index maintenance). A 90 KB initial twin is therefore never
//! decoded to check an etag.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | `u64` (`format_version`) |
//! | `enrollments` | (scope, registration key) | (etag, JSON) |
//! | `groups` | (scope, group key) | (etag, JSON) |
//! | `registrations` | (scope, registration key) | (etag, group key, JSON) |
//! | `registrations_by_group` | (scope, group key, registration key) | `()` |
//! | `operations` | (scope, operation id) | (created unix seconds, JSON) |
//! | `operations_by_created` | (scope, created unix seconds, operation id) | `()` |
//! | `meters` | (scope, kind) | `u64` |
//! | `certificates` | (scope, certificate name key) | (etag, JSON) |
//! | `hub_identities` | (hub host name, device ID) | (no etag, JSON) |
//!
//! Version history: 1 = the first format; 2 added `certificates` (a version-1 file is upgraded
//! in place when opened: the new table is created empty); 3 added `hub_identities` (upgraded
//! the same way).
//!
//! A change to any of these bumps [`FORMAT_VERSION`] and adds a step to the (private) `migrate` function; a file
//! with a newer version is refused untouched.

use redb::{Database, ReadableTable, TableDefinition};

use dps_store::StoreError;

use crate::error::{self, Error};

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u64 = 3;

/// The key of the format version in [`META`].
pub(crate) const FORMAT_KEY: &str = "format_version";

pub(crate) type DocKey = (&'static str, &'static str);
/// (etag, JSON).
pub(crate) type DocValue = (Option<&'static str>, &'static [u8]);
/// (etag, group key, JSON).
pub(crate) type RegValue = (Option<&'static str>, Option<&'static str>, &'static [u8]);
pub(crate) type GroupIndexKey = (&'static str, &'static str, &'static str);
/// (created unix seconds, JSON).
pub(crate) type OpValue = (i64, &'static [u8]);
pub(crate) type ExpiryKey = (&'static str, i64, &'static str);

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const ENROLLMENTS: TableDefinition<DocKey, DocValue> =
    TableDefinition::new("enrollments");
pub(crate) const GROUPS: TableDefinition<DocKey, DocValue> = TableDefinition::new("groups");
pub(crate) const REGISTRATIONS: TableDefinition<DocKey, RegValue> =
    TableDefinition::new("registrations");
pub(crate) const REGISTRATIONS_BY_GROUP: TableDefinition<GroupIndexKey, ()> =
    TableDefinition::new("registrations_by_group");
pub(crate) const OPERATIONS: TableDefinition<DocKey, OpValue> = TableDefinition::new("operations");
pub(crate) const OPERATIONS_BY_CREATED: TableDefinition<ExpiryKey, ()> =
    TableDefinition::new("operations_by_created");
pub(crate) const METERS: TableDefinition<DocKey, u64> = TableDefinition::new("meters");
pub(crate) const CERTIFICATES: TableDefinition<DocKey, DocValue> =
    TableDefinition::new("certificates");
/// Not per scope: the first key element is the hub host name.
pub(crate) const HUB_IDENTITIES: TableDefinition<DocKey, DocValue> =
    TableDefinition::new("hub_identities");

/// Creates the tables of a new file, or checks and migrates an existing one, in one durable
/// transaction.
pub(crate) fn prepare(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(error::db)?;
    {
        let mut meta = txn.open_table(META).map_err(error::db)?;
        let found = meta.get(FORMAT_KEY).map_err(error::db)?.map(|v| v.value());
        match found {
            Some(v) if v > FORMAT_VERSION => {
                return Err(StoreError::Backend(Box::new(Error::NewerFormat {
                    found: v,
                    supported: FORMAT_VERSION,
                })));
            }
            Some(v) => migrate(&txn, v)?,
            None => {}
        }
        meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(error::db)?;
    }
    // Opening a table in a write transaction creates it.
    txn.open_table(ENROLLMENTS).map_err(error::db)?;
    txn.open_table(GROUPS).map_err(error::db)?;
    txn.open_table(REGISTRATIONS).map_err(error::db)?;
    txn.open_table(REGISTRATIONS_BY_GROUP).map_err(error::db)?;
    txn.open_table(OPERATIONS).map_err(error::db)?;
    txn.open_table(OPERATIONS_BY_CREATED).map_err(error::db)?;
    txn.open_table(METERS).map_err(error::db)?;
    txn.open_table(CERTIFICATES).map_err(error::db)?;
    txn.open_table(HUB_IDENTITIES).map_err(error::db)?;
    txn.commit().map_err(error::db)
}

/// Brings a file of format `from` up to [`FORMAT_VERSION`], inside the opening transaction.
/// Each version adds an idempotent step here (`if from < N { ... }`).
fn migrate(txn: &redb::WriteTransaction, from: u64) -> Result<(), StoreError> {
    if from < 2 {
        // Version 2 only adds the (empty) certificates table.
        txn.open_table(CERTIFICATES).map_err(error::db)?;
    }
    if from < 3 {
        // Version 3 only adds the (empty) hub identities table.
        txn.open_table(HUB_IDENTITIES).map_err(error::db)?;
    }
    Ok(())
}
