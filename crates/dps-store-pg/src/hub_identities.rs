//! Hub identities in the `hub_identities` table (schema version 3): keyed by (hub host name,
//! device ID) rather than by scope, listed in key order with a row-value cursor.

use dps_store::{Page, Result, StoreError};
use dps_types::HubIdentity;

use crate::{Fail, PgStore};

const TABLE: &str = "hub_identities";

fn encode(id: &HubIdentity) -> Result<Vec<u8>> {
    serde_json::to_vec(id).map_err(|e| StoreError::Backend(Box::new(e)))
}

fn decode(b: &[u8]) -> std::result::Result<HubIdentity, Fail> {
    serde_json::from_slice(b).map_err(|e| Fail::Store(StoreError::Backend(Box::new(e))))
}

impl PgStore {
    pub(crate) async fn get_hub_identity(
        &self,
        hub: &str,
        device_id: &str,
    ) -> Result<Option<HubIdentity>> {
        let sql = format!(
            "SELECT doc FROM {} WHERE hub = $1 AND device_id = $2",
            self.table(TABLE)
        );
        let hub = hub.to_ascii_lowercase();
        self.retry(|| async {
            let c = self.pool.get().await?;
            let stmt = c.prepare_cached(&sql).await?;
            match c.query_opt(&stmt, &[&hub, &device_id]).await? {
                Some(row) => Ok(Some(decode(row.get::<_, &[u8]>(0))?)),
                None => Ok(None),
            }
        })
        .await
    }

    pub(crate) async fn write_hub_identity(&self, id: &HubIdentity) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (hub, device_id, doc) VALUES ($1, $2, $3) \
             ON CONFLICT (hub, device_id) DO UPDATE SET doc = EXCLUDED.doc",
            self.table(TABLE)
        );
        let hub = id.hub.as_str();
        let doc = encode(id)?;
        self.retry(|| async {
            let c = self.pool.get().await?;
            let stmt = c.prepare_cached(&sql).await?;
            c.execute(&stmt, &[&hub, &id.device_id, &doc]).await?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn remove_hub_identity(&self, hub: &str, device_id: &str) -> Result<()> {
        let sql = format!(
            "DELETE FROM {} WHERE hub = $1 AND device_id = $2",
            self.table(TABLE)
        );
        let hub = hub.to_ascii_lowercase();
        self.retry(|| async {
            let c = self.pool.get().await?;
            let stmt = c.prepare_cached(&sql).await?;
            match c.execute(&stmt, &[&hub, &device_id]).await? {
                0 => Err(Fail::Store(StoreError::NotFound)),
                _ => Ok(()),
            }
        })
        .await
    }

    pub(crate) async fn page_hub_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<HubIdentity>> {
        let sql = format!(
            "SELECT doc FROM {} WHERE (hub, device_id) > ($1, $2) ORDER BY hub, device_id LIMIT $3",
            self.table(TABLE)
        );
        // No cursor starts before every row: ("", "") sorts first and no hub name is empty.
        let (hub, device) = after
            .map(|a| HubIdentity::split_cursor(a).unwrap_or((a, "")))
            .unwrap_or(("", ""));
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        self.retry(|| async {
            let c = self.pool.get().await?;
            let stmt = c.prepare_cached(&sql).await?;
            let rows = c.query(&stmt, &[&hub, &device, &fetch]).await?;
            let more = rows.len() > limit;
            let mut items = Vec::with_capacity(rows.len().min(limit));
            for row in rows.iter().take(limit) {
                items.push(decode(row.get::<_, &[u8]>(0))?);
            }
            let next_after = if more {
                items.last().map(HubIdentity::cursor)
            } else {
                None
            };
            Ok(Page { items, next_after })
        })
        .await
    }
}
