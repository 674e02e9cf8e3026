//! `dps_store::Store` for [`PgStore`]: etag compare-and-set in SQL, key-ordered paging;
//! registration commits are handed to the group committers (see `commit`).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use dps_store::{
    DeleteCondition, Page, RegistrationCommit, Result, Store, StoreError, WriteCondition,
};
use dps_types::{
    CaCertificate, EnrollmentGroup, Etag, HubIdentity, IdScope, IndividualEnrollment, Operation,
    RegistrationRecord, Timestamp,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::commit::{Item, next_shard};
use crate::{Fail, PgStore};

const ENROLLMENTS: &str = "enrollments";
const GROUPS: &str = "enrollment_groups";
const CERTIFICATES: &str = "ca_certificates";

fn encode<T: Serialize>(v: &T) -> std::result::Result<Vec<u8>, Fail> {
    serde_json::to_vec(v).map_err(|e| Fail::Store(StoreError::Backend(Box::new(e))))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> std::result::Result<T, Fail> {
    serde_json::from_slice(b).map_err(|e| Fail::Store(StoreError::Backend(Box::new(e))))
}

fn bare(e: Option<&Etag>) -> String {
    e.map(|e| e.bare().to_owned()).unwrap_or_default()
}

impl PgStore {
    async fn get_doc<T: DeserializeOwned>(
        &self,
        table: &str,
        scope: &IdScope,
        key: &str,
    ) -> Result<Option<T>> {
        let sql = format!(
            "SELECT doc FROM {} WHERE scope = $1 AND key = $2",
            self.table(table)
        );
        let scope = scope.key();
        self.retry(|| async {
            let c = self.pool.get().await?;
            let stmt = c.prepare_cached(&sql).await?;
            match c.query_opt(&stmt, &[&scope, &key]).await? {
                Some(row) => Ok(Some(decode(row.get::<_, &[u8]>(0))?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put_doc(
        &self,
        table: &str,
        scope: &IdScope,
        key: &str,
        etag: &str,
        doc: &[u8],
        cond: &WriteCondition,
    ) -> Result<()> {
        let bump_groups = table == GROUPS;
        let t = self.table(table);
        let sql = match cond {
            WriteCondition::MustNotExist => {
                format!(
                    "INSERT INTO {t} (scope, key, etag, doc) VALUES ($1, $2, $3, $4) ON CONFLICT (scope, key) DO NOTHING"
                )
            }
            WriteCondition::IfMatch(_) => {
                format!(
                    "UPDATE {t} SET etag = $3, doc = $4 WHERE scope = $1 AND key = $2 AND etag = $5"
                )
            }
            WriteCondition::Any => format!(
                "INSERT INTO {t} (scope, key, etag, doc) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (scope, key) DO UPDATE SET etag = EXCLUDED.etag, doc = EXCLUDED.doc"
            ),
        };
        let bump = format!(
            "INSERT INTO {} (scope, version) VALUES ($1, 1) ON CONFLICT (scope) DO UPDATE SET version = {}.version + 1",
            self.table("group_versions"),
            self.table("group_versions")
        );
        let scope = scope.key();
        let expected = match cond {
            WriteCondition::IfMatch(e) => e.bare().to_owned(),
            _ => String::new(),
        };
        self.retry(|| async {
            let mut c = self.pool.get().await?;
            let tx = c.transaction().await?;
            let stmt = tx.prepare_cached(&sql).await?;
            let n = match cond {
                WriteCondition::IfMatch(_) => {
                    tx.execute(&stmt, &[&scope, &key, &etag, &doc, &expected])
                        .await?
                }
                _ => tx.execute(&stmt, &[&scope, &key, &etag, &doc]).await?,
            };
            if n == 0 {
                return Err(Fail::Store(match cond {
                    WriteCondition::MustNotExist => StoreError::Conflict,
                    _ => StoreError::PreconditionFailed,
                }));
            }
            if bump_groups {
                let b = tx.prepare_cached(&bump).await?;
                tx.execute(&b, &[&scope]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn delete_doc(
        &self,
        table: &str,
        scope: &IdScope,
        key: &str,
        cond: &DeleteCondition,
    ) -> Result<()> {
        // Group writes bump the scope's group version, which invalidates every node's snapshot.
        let bump_groups = table == GROUPS;
        let t = self.table(table);
        let del = match cond {
            DeleteCondition::Any => format!("DELETE FROM {t} WHERE scope = $1 AND key = $2"),
            DeleteCondition::IfMatch(_) => {
                format!("DELETE FROM {t} WHERE scope = $1 AND key = $2 AND etag = $3")
            }
        };
        let exists = format!("SELECT 1 FROM {t} WHERE scope = $1 AND key = $2");
        let bump = format!(
            "INSERT INTO {} (scope, version) VALUES ($1, 1) ON CONFLICT (scope) DO UPDATE SET version = {}.version + 1",
            self.table("group_versions"),
            self.table("group_versions")
        );
        let scope = scope.key();
        self.retry(|| async {
            let mut c = self.pool.get().await?;
            let tx = c.transaction().await?;
            let stmt = tx.prepare_cached(&del).await?;
            let n = match cond {
                DeleteCondition::Any => tx.execute(&stmt, &[&scope, &key]).await?,
                DeleteCondition::IfMatch(e) => {
                    tx.execute(&stmt, &[&scope, &key, &e.bare()]).await?
                }
            };
            if n == 0 {
                let found = tx
                    .query_opt(&tx.prepare_cached(&exists).await?, &[&scope, &key])
                    .await?
                    .is_some();
                return Err(Fail::Store(if found {
                    StoreError::PreconditionFailed
                } else {
                    StoreError::NotFound
                }));
            }
            if bump_groups {
                tx.execute(&tx.prepare_cached(&bump).await?, &[&scope])
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn list_docs<T: DeserializeOwned>(
        &self,
        table: &str,
        scope: &IdScope,
        group: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<T>> {
        let t = self.table(table);
        let sql = match group {
            None => format!(
                "SELECT key, doc FROM {t} WHERE scope = $1 AND key > $2 ORDER BY key LIMIT $3"
            ),
            Some(_) => format!(
                "SELECT key, doc FROM {t} WHERE scope = $1 AND key > $2 AND group_key = $4 ORDER BY key LIMIT $3"
            ),
        };
        let scope = scope.key();
        let after = after.unwrap_or("").to_owned();
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        self.retry(|| async {
            let c = self.pool.get().await?;
            let stmt = c.prepare_cached(&sql).await?;
            let rows = match group {
                None => c.query(&stmt, &[&scope, &after, &fetch]).await?,
                Some(g) => c.query(&stmt, &[&scope, &after, &fetch, &g]).await?,
            };
            let more = rows.len() > limit;
            let mut items = Vec::with_capacity(rows.len().min(limit));
            let mut last = None;
            for row in rows.iter().take(limit) {
                items.push(decode(row.get::<_, &[u8]>(1))?);
                last = Some(row.get::<_, String>(0));
            }
            Ok(Page {
                items,
                next_after: if more { last } else { None },
            })
        })
        .await
    }
}

impl Store for PgStore {
    async fn enrollment(&self, scope: &IdScope, key: &str) -> Result<Option<IndividualEnrollment>> {
        self.get_doc(ENROLLMENTS, scope, key).await
    }

    async fn put_enrollment(
        &self,
        scope: &IdScope,
        e: IndividualEnrollment,
        cond: WriteCondition,
    ) -> Result<()> {
        let doc = encode(&e).map_err(fail_to_store)?;
        self.put_doc(
            ENROLLMENTS,
            scope,
            &e.registration_id.key(),
            &bare(e.etag.as_ref()),
            &doc,
            &cond,
        )
        .await
    }

    async fn delete_enrollment(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Result<()> {
        self.delete_doc(ENROLLMENTS, scope, key, &cond).await
    }

    async fn list_enrollments(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<IndividualEnrollment>> {
        self.list_docs(ENROLLMENTS, scope, None, after, limit).await
    }

    async fn group(&self, scope: &IdScope, key: &str) -> Result<Option<EnrollmentGroup>> {
        self.get_doc(GROUPS, scope, key).await
    }

    async fn put_group(
        &self,
        scope: &IdScope,
        g: EnrollmentGroup,
        cond: WriteCondition,
    ) -> Result<()> {
        let doc = encode(&g).map_err(fail_to_store)?;
        self.put_doc(
            GROUPS,
            scope,
            &g.enrollment_group_id.key(),
            &bare(g.etag.as_ref()),
            &doc,
            &cond,
        )
        .await
    }

    async fn delete_group(&self, scope: &IdScope, key: &str, cond: DeleteCondition) -> Result<()> {
        self.delete_doc(GROUPS, scope, key, &cond).await
    }

    async fn list_groups(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<EnrollmentGroup>> {
        self.list_docs(GROUPS, scope, None, after, limit).await
    }

    async fn groups_snapshot(&self, scope: &IdScope) -> Result<Arc<[EnrollmentGroup]>> {
        // One cheap query for the version; the groups are reloaded only when it moved (any
        // node's group write bumps it), so the cache is never stale.
        let version_sql = format!(
            "SELECT version FROM {} WHERE scope = $1",
            self.table("group_versions")
        );
        let list_sql = format!(
            "SELECT doc FROM {} WHERE scope = $1 ORDER BY key",
            self.table(GROUPS)
        );
        let skey = scope.key();
        self.retry(|| async {
            let c = self.pool.get().await?;
            let v = c
                .query_opt(&c.prepare_cached(&version_sql).await?, &[&skey])
                .await?;
            let version = v.map_or(0, |r| r.get::<_, i64>(0));
            if let Some((have, snap)) = self
                .groups
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&skey)
                && *have == version
            {
                return Ok(snap.clone());
            }
            let rows = c
                .query(&c.prepare_cached(&list_sql).await?, &[&skey])
                .await?;
            let groups = rows
                .iter()
                .map(|r| decode(r.get::<_, &[u8]>(0)))
                .collect::<std::result::Result<Vec<EnrollmentGroup>, _>>()?;
            let snap: Arc<[EnrollmentGroup]> = groups.into();
            self.groups
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(skey.clone(), (version, snap.clone()));
            Ok(snap)
        })
        .await
    }

    async fn registration(&self, scope: &IdScope, key: &str) -> Result<Option<RegistrationRecord>> {
        self.get_doc("registrations", scope, key).await
    }

    async fn delete_registration(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Result<()> {
        self.delete_doc("registrations", scope, key, &cond).await
    }

    async fn list_registrations(
        &self,
        scope: &IdScope,
        group_key: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<RegistrationRecord>> {
        self.list_docs("registrations", scope, Some(group_key), after, limit)
            .await
    }

    async fn commit_registration(&self, scope: &IdScope, c: RegistrationCommit) -> Result<()> {
        let (key, group, etag, doc) = match &c.record {
            Some(r) => (
                Some(r.state.registration_id.key()),
                r.enrollment_group_id.as_ref().map(|g| g.key()),
                Some(bare(r.state.etag.as_ref())),
                Some(encode(r).map_err(fail_to_store)?),
            ),
            None => (None, None, None, None),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let item = Item {
            scope: scope.key(),
            key,
            group,
            etag,
            doc,
            op_id: c.operation.operation_id.to_string(),
            created: c.operation.created.unix_seconds(),
            op_doc: encode(&c.operation).map_err(fail_to_store)?,
            kind: c.meter,
            reply,
        };
        if self.commits.send(item).await.is_err() {
            return Err(StoreError::Unavailable(
                "the registration committers stopped".into(),
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the registration committers stopped".into(),
            ))
        })
    }

    async fn operation(
        &self,
        scope: &IdScope,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<Operation>> {
        let sql = format!(
            "SELECT doc FROM {} WHERE scope = $1 AND id = $2 AND created >= $3",
            self.table("operations")
        );
        let skey = scope.key();
        let horizon = now
            .unix_seconds()
            .saturating_sub(dps_store::OPERATION_TTL_SECS);
        self.retry(|| async {
            let c = self.pool.get().await?;
            match c
                .query_opt(&c.prepare_cached(&sql).await?, &[&skey, &id, &horizon])
                .await?
            {
                Some(row) => Ok(Some(decode(row.get::<_, &[u8]>(0))?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn certificate(&self, scope: &IdScope, key: &str) -> Result<Option<CaCertificate>> {
        self.get_doc(CERTIFICATES, scope, key).await
    }

    async fn put_certificate(
        &self,
        scope: &IdScope,
        c: CaCertificate,
        cond: WriteCondition,
    ) -> Result<()> {
        let doc = encode(&c).map_err(fail_to_store)?;
        self.put_doc(
            CERTIFICATES,
            scope,
            &c.key(),
            &bare(c.etag.as_ref()),
            &doc,
            &cond,
        )
        .await
    }

    async fn delete_certificate(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Result<()> {
        self.delete_doc(CERTIFICATES, scope, key, &cond).await
    }

    async fn list_certificates(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<CaCertificate>> {
        self.list_docs(CERTIFICATES, scope, None, after, limit)
            .await
    }

    async fn meter(&self, scope: &IdScope, kind: &'static str, n: u64) -> Result<()> {
        let sql = format!(
            "INSERT INTO {t} (scope, kind, shard, count) VALUES ($1, $2, $4, $3) \
             ON CONFLICT (scope, kind, shard) DO UPDATE SET count = {t}.count + EXCLUDED.count",
            t = self.table("meter_shards")
        );
        let skey = scope.key();
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let shard = next_shard();
        self.retry(|| async {
            let c = self.pool.get().await?;
            c.execute(&c.prepare_cached(&sql).await?, &[&skey, &kind, &n, &shard])
                .await?;
            Ok(())
        })
        .await
    }

    async fn operation_counts(&self, scope: &IdScope) -> Result<BTreeMap<String, u64>> {
        // Version-1 counts stay in `meters`; everything since goes to `meter_shards`.
        let sql = format!(
            "SELECT kind, SUM(count)::BIGINT FROM (SELECT kind, count FROM {} WHERE scope = $1 \
             UNION ALL SELECT kind, count FROM {} WHERE scope = $1) AS m GROUP BY kind",
            self.table("meters"),
            self.table("meter_shards")
        );
        let skey = scope.key();
        self.retry(|| async {
            let c = self.pool.get().await?;
            let rows = c.query(&c.prepare_cached(&sql).await?, &[&skey]).await?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                    )
                })
                .collect())
        })
        .await
    }

    async fn hub_identity(&self, hub: &str, device_id: &str) -> Result<Option<HubIdentity>> {
        self.get_hub_identity(hub, device_id).await
    }

    async fn put_hub_identity(&self, id: HubIdentity) -> Result<()> {
        self.write_hub_identity(&id).await
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

fn fail_to_store(f: Fail) -> StoreError {
    match f {
        Fail::Store(e) => e,
        Fail::Retry(e) => StoreError::Backend(e),
    }
}
