//! Bulk operations: each item succeeds or fails alone; the answer lists the failures.

use dps_store::{Store, StoreError};
use dps_types::{Etag, Rejection};
use serde_json::Value;

use super::Admin;
use super::records::{Record, decode_record};
use crate::{HubRegistry, store_err};

/// A bulk mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkMode {
    /// Create; an existing item fails.
    Create,
    /// Create or replace.
    Update,
    /// Replace only if the item's etag matches.
    UpdateIfMatchEtag,
    /// Delete (honouring the item's etag when it carries one).
    Delete,
}

/// One failed item: its ID and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkFailure {
    /// The item's ID (as sent, or empty when it had none).
    pub id: String,
    /// Why.
    pub rejection: Rejection,
}

impl<S: Store, H: HubRegistry> Admin<'_, S, H> {
    /// Runs a bulk operation and returns the failures (empty = complete success).
    pub async fn bulk<R: Record>(
        &self,
        mode: BulkMode,
        items: Vec<Value>,
    ) -> Result<Vec<BulkFailure>, Rejection> {
        let mut failures = Vec::new();
        for item in items {
            let id = item
                .get(R::ID_FIELD)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Err(rejection) = self.bulk_item::<R>(mode, &id, item).await {
                if matches!(rejection, Rejection::Unavailable | Rejection::Internal) {
                    return Err(rejection);
                }
                failures.push(BulkFailure { id, rejection });
            }
        }
        Ok(failures)
    }

    async fn bulk_item<R: Record>(
        &self,
        mode: BulkMode,
        id: &str,
        item: Value,
    ) -> Result<(), Rejection> {
        if id.is_empty() {
            return Err(Rejection::BadRequest(format!(
                "item without {}",
                R::ID_FIELD
            )));
        }
        let etag = item.get("etag").and_then(Value::as_str).map(Etag::parse);
        match mode {
            BulkMode::Delete => {
                let key = R::parse_key(id)?;
                let cond = match etag {
                    Some(e) => dps_store::DeleteCondition::IfMatch(e),
                    None => dps_store::DeleteCondition::Any,
                };
                match R::remove(&*self.svc.store, &self.scope.id_scope, &key, cond).await {
                    Ok(()) => Ok(()),
                    Err(StoreError::NotFound) => Err(R::NOT_FOUND),
                    Err(e) => Err(store_err(e)),
                }
            }
            BulkMode::Create => self
                .write(
                    decode_record::<R>(id, item)?,
                    dps_store::WriteCondition::MustNotExist,
                )
                .await
                .map(drop),
            BulkMode::Update => self
                .write(
                    decode_record::<R>(id, item)?,
                    dps_store::WriteCondition::Any,
                )
                .await
                .map(drop),
            BulkMode::UpdateIfMatchEtag => {
                let e = etag.ok_or(Rejection::PreconditionFailed)?;
                self.write(
                    decode_record::<R>(id, item)?,
                    dps_store::WriteCondition::IfMatch(e),
                )
                .await
                .map(drop)
            }
        }
    }
}
