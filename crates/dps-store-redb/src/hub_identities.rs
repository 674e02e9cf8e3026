//! Hub identities in the `hub_identities` table: keyed by (hub host name, device ID) rather
//! than by scope, written through the same writer thread as every other record.

use std::ops::Bound;

use dps_store::{DeleteCondition, Page, Result, WriteCondition};
use dps_types::HubIdentity;
use redb::ReadableDatabase;

use crate::writer::{DocTable, WriteOp};
use crate::{ReadKind, RedbStore, decode, encode, error};

impl RedbStore {
    pub(crate) async fn get_hub_identity(
        &self,
        hub: &str,
        device_id: &str,
    ) -> Result<Option<HubIdentity>> {
        let (hub, key) = (hub.to_ascii_lowercase(), device_id.to_owned());
        self.read(ReadKind::Point, move |db| {
            let txn = db.begin_read().map_err(error::db)?;
            let t = txn
                .open_table(DocTable::HubIdentities.def())
                .map_err(error::db)?;
            let Some(v) = t.get((hub.as_str(), key.as_str())).map_err(error::db)? else {
                return Ok(None);
            };
            decode(DocTable::HubIdentities.name(), &key, v.value().1).map(Some)
        })
        .await
    }

    pub(crate) async fn write_hub_identity(&self, id: HubIdentity) -> Result<()> {
        self.write(put_op(id)?).await
    }

    /// Queues a hub identity write without waiting for its commit: it is committed in the same
    /// transaction as the writes queued with it, or an earlier one, so once any write queued
    /// after it has been acknowledged (awaited through this store), the identity is durable too.
    ///
    /// For a write-through journal whose change is acknowledged only together with a later
    /// write: dpsd's `embedded` hubs write a device's identity before its registration record,
    /// and the device hears of neither until the record is committed. This saves waiting for a
    /// second commit per registration. An error here means the writer has stopped; a failure of
    /// the commit itself is not reported to this caller (the later write reports it).
    pub async fn queue_hub_identity(&self, id: HubIdentity) -> Result<()> {
        self.queue(put_op(id)?).await
    }

    pub(crate) async fn remove_hub_identity(&self, hub: &str, device_id: &str) -> Result<()> {
        self.write(WriteOp::DeleteDoc {
            table: DocTable::HubIdentities,
            scope: hub.to_ascii_lowercase(),
            key: device_id.to_owned(),
            cond: DeleteCondition::Any,
        })
        .await
    }

    pub(crate) async fn page_hub_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<HubIdentity>> {
        let after = after.map(|a| {
            let (h, d) = HubIdentity::split_cursor(a).unwrap_or((a, ""));
            (h.to_owned(), d.to_owned())
        });
        self.read(ReadKind::Scan, move |db| {
            let txn = db.begin_read().map_err(error::db)?;
            let t = txn
                .open_table(DocTable::HubIdentities.def())
                .map_err(error::db)?;
            let start = match &after {
                Some((h, d)) => Bound::Excluded((h.as_str(), d.as_str())),
                None => Bound::Unbounded,
            };
            let mut items: Vec<HubIdentity> = Vec::new();
            for entry in t.range((start, Bound::Unbounded)).map_err(error::db)? {
                if items.len() == limit {
                    let next_after = items.last().map(HubIdentity::cursor);
                    return Ok(Page { items, next_after });
                }
                let (k, v) = entry.map_err(error::db)?;
                items.push(decode(
                    DocTable::HubIdentities.name(),
                    k.value().1,
                    v.value().1,
                )?);
            }
            Ok(Page {
                items,
                next_after: None,
            })
        })
        .await
    }
}

/// The unconditional write of `id`, keyed by (hub, device ID).
fn put_op(id: HubIdentity) -> Result<WriteOp> {
    let json = encode(&id)?;
    Ok(WriteOp::PutDoc {
        table: DocTable::HubIdentities,
        scope: id.hub.to_string(),
        key: id.device_id,
        etag: None,
        json,
        cond: WriteCondition::Any,
    })
}
