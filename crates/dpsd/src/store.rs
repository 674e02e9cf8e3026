//! The storage backend dpsd runs on, chosen by `[storage] kind`: an enum over the concrete
//! stores (no `dyn` on the hot path), delegating every call. It is also the journal of the
//! `embedded` hub registry: hub identities are written through to it and loaded back at start.

use std::collections::BTreeMap;
use std::sync::Arc;

use dps_connect::{IdentityJournal, JournalFuture};
use dps_store::{
    DeleteCondition, MemoryStore, Page, RegistrationCommit, Result, Store, StoreError,
    WriteCondition,
};
use dps_store_pg::PgStore;
use dps_store_redb::RedbStore;
use dps_types::HubHostName;
use dps_types::{
    CaCertificate, EnrollmentGroup, HubIdentity, IdScope, IndividualEnrollment, Operation,
    RegistrationRecord, Timestamp,
};

/// One of the supported backends.
#[derive(Clone)]
pub enum AnyStore {
    /// In memory (`kind = "memory"`): fast, lost on restart.
    Memory(MemoryStore),
    /// The embedded durable store (`kind = "embedded"`, the default): one file under the data
    /// directory, one dpsd process.
    Embedded(RedbStore),
    /// PostgreSQL (`kind = "postgres"`): shared by several dpsd nodes.
    Postgres(PgStore),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($s) => $call.await,
            AnyStore::Embedded($s) => $call.await,
            AnyStore::Postgres($s) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn enrollment(&self, scope: &IdScope, key: &str) -> Result<Option<IndividualEnrollment>> {
        delegate!(self, s => s.enrollment(scope, key))
    }
    async fn put_enrollment(
        &self,
        scope: &IdScope,
        e: IndividualEnrollment,
        cond: WriteCondition,
    ) -> Result<()> {
        delegate!(self, s => s.put_enrollment(scope, e, cond))
    }
    async fn delete_enrollment(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Result<()> {
        delegate!(self, s => s.delete_enrollment(scope, key, cond))
    }
    async fn list_enrollments(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<IndividualEnrollment>> {
        delegate!(self, s => s.list_enrollments(scope, after, limit))
    }
    async fn group(&self, scope: &IdScope, key: &str) -> Result<Option<EnrollmentGroup>> {
        delegate!(self, s => s.group(scope, key))
    }
    async fn put_group(
        &self,
        scope: &IdScope,
        g: EnrollmentGroup,
        cond: WriteCondition,
    ) -> Result<()> {
        delegate!(self, s => s.put_group(scope, g, cond))
    }
    async fn delete_group(&self, scope: &IdScope, key: &str, cond: DeleteCondition) -> Result<()> {
        delegate!(self, s => s.delete_group(scope, key, cond))
    }
    async fn list_groups(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<EnrollmentGroup>> {
        delegate!(self, s => s.list_groups(scope, after, limit))
    }
    async fn groups_snapshot(&self, scope: &IdScope) -> Result<Arc<[EnrollmentGroup]>> {
        delegate!(self, s => s.groups_snapshot(scope))
    }
    async fn registration(&self, scope: &IdScope, key: &str) -> Result<Option<RegistrationRecord>> {
        delegate!(self, s => s.registration(scope, key))
    }
    async fn delete_registration(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Result<()> {
        delegate!(self, s => s.delete_registration(scope, key, cond))
    }
    async fn list_registrations(
        &self,
        scope: &IdScope,
        group_key: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<RegistrationRecord>> {
        delegate!(self, s => s.list_registrations(scope, group_key, after, limit))
    }
    async fn commit_registration(&self, scope: &IdScope, c: RegistrationCommit) -> Result<()> {
        delegate!(self, s => s.commit_registration(scope, c))
    }
    async fn operation(
        &self,
        scope: &IdScope,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<Operation>> {
        delegate!(self, s => s.operation(scope, id, now))
    }
    async fn certificate(&self, scope: &IdScope, key: &str) -> Result<Option<CaCertificate>> {
        delegate!(self, s => s.certificate(scope, key))
    }
    async fn put_certificate(
        &self,
        scope: &IdScope,
        c: CaCertificate,
        cond: WriteCondition,
    ) -> Result<()> {
        delegate!(self, s => s.put_certificate(scope, c, cond))
    }
    async fn delete_certificate(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> Result<()> {
        delegate!(self, s => s.delete_certificate(scope, key, cond))
    }
    async fn list_certificates(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<CaCertificate>> {
        delegate!(self, s => s.list_certificates(scope, after, limit))
    }
    async fn meter(&self, scope: &IdScope, kind: &'static str, n: u64) -> Result<()> {
        delegate!(self, s => s.meter(scope, kind, n))
    }
    async fn operation_counts(&self, scope: &IdScope) -> Result<BTreeMap<String, u64>> {
        delegate!(self, s => s.operation_counts(scope))
    }
    async fn hub_identity(&self, hub: &str, device_id: &str) -> Result<Option<HubIdentity>> {
        delegate!(self, s => s.hub_identity(hub, device_id))
    }
    async fn put_hub_identity(&self, id: HubIdentity) -> Result<()> {
        delegate!(self, s => s.put_hub_identity(id))
    }
    async fn delete_hub_identity(&self, hub: &str, device_id: &str) -> Result<()> {
        delegate!(self, s => s.delete_hub_identity(hub, device_id))
    }
    async fn list_hub_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<HubIdentity>> {
        delegate!(self, s => s.list_hub_identities(after, limit))
    }
}

impl AnyStore {
    /// Every stored hub identity, read a page at a time.
    pub async fn hub_identities(&self) -> Result<Vec<HubIdentity>> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_hub_identities(after.as_deref(), 500).await?;
            all.extend(page.items);
            match page.next_after {
                Some(n) => after = Some(n),
                None => return Ok(all),
            }
        }
    }
}

impl IdentityJournal for AnyStore {
    /// The embedded store queues the identity instead of waiting for its own commit: the
    /// registration record that follows it (and that the device waits for) is committed in the
    /// same transaction or a later one, so an acknowledged registration never lacks its
    /// identity. Other stores write through.
    fn save(&self, identity: HubIdentity) -> JournalFuture<'_> {
        Box::pin(async move {
            match self {
                Self::Embedded(s) => Ok(s.queue_hub_identity(identity).await?),
                _ => Ok(self.put_hub_identity(identity).await?),
            }
        })
    }

    fn remove(&self, hub: HubHostName, device_id: String) -> JournalFuture<'_> {
        Box::pin(async move {
            match self.delete_hub_identity(hub.as_str(), &device_id).await {
                Ok(()) | Err(StoreError::NotFound) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }
}
