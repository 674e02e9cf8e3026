//! Storage for dps-rs: the [`Store`] trait every backend implements, its portable
//! [`StoreError`] kinds, and [`MemoryStore`], the in-memory backend.
//!
//! A store is deliberately dumb: it keeps records per ID scope, compares etags
//! ([`WriteCondition`]) and pages in key order. It never mints etags, reads a clock or decides
//! anything; `dps-service` does. Every method returns a `Send` future so backends over network
//! databases fit the same trait; the memory backend answers immediately.
//!
//! Keys are the case-folded forms of the identifiers (`RegistrationId::key`), so lookups are
//! case-insensitive while records keep the spelling they were written with.
//!
//! ```
//! use dps_store::{MemoryStore, Store, WriteCondition};
//! use dps_types::{IdScope, IndividualEnrollment, Etag};
//!
//! # futures_lite_block_on(async {
//! let store = MemoryStore::new();
//! let scope = IdScope::new("0ne00000001").unwrap();
//! let mut e: IndividualEnrollment = serde_json::from_str(
//!     r#"{"registrationId":"Dev-1","attestation":{"type":"symmetricKey"}}"#).unwrap();
//! e.etag = Some(Etag::new("v1"));
//! store.put_enrollment(&scope, e, WriteCondition::MustNotExist).await.unwrap();
//! let got = store.enrollment(&scope, "dev-1").await.unwrap().unwrap();
//! assert_eq!(got.registration_id.as_str(), "Dev-1");
//! # });
//! # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     dps_store::block_on_ready(f)
//! # }
//! ```

mod memory;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use dps_types::{
    CaCertificate, EnrollmentGroup, Etag, HubIdentity, IdScope, IndividualEnrollment, Operation,
    RegistrationRecord, Timestamp,
};

pub use memory::{MemoryStore, OPERATION_TTL_SECS, block_on_ready, operation_expired};

/// How a write treats an existing record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Create only; an existing record is a [`StoreError::Conflict`].
    MustNotExist,
    /// Replace only a record whose etag matches; a missing record or another etag is
    /// [`StoreError::PreconditionFailed`].
    IfMatch(Etag),
    /// Create or replace.
    Any,
}

/// How a delete treats the existing record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteCondition {
    /// Delete whatever is there.
    Any,
    /// Delete only if the etag matches.
    IfMatch(Etag),
}

/// Portable error kinds. Every backend maps its failures onto these, so callers decide without
/// knowing the backend: `NotFound`, `Conflict` and `PreconditionFailed` are answers about the
/// data; `Unavailable` is worth retrying later ([`StoreError::is_retryable`]); `Backend` is a
/// fault that retrying will not fix (corrupt data, a refused schema, a bug).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record does not exist.
    #[error("record not found")]
    NotFound,
    /// The record already exists.
    #[error("record already exists")]
    Conflict,
    /// The etag did not match (or the record is gone).
    #[error("etag precondition failed")]
    PreconditionFailed,
    /// The backend is temporarily unavailable; the caller may retry.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Any other backend failure.
    #[error("storage backend error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether retrying the same call later may succeed (only [`StoreError::Unavailable`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

/// One page of a listing, in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The key of the last item when more items follow (the continuation point).
    pub next_after: Option<String>,
}

/// Everything one device registration writes, committed atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationCommit {
    /// The new registration record (none when the attempt changed no record, e.g. disabled).
    pub record: Option<RegistrationRecord>,
    /// The operation the device will poll.
    pub operation: Operation,
    /// The metering kind to count one operation under, if billable.
    pub meter: Option<&'static str>,
}

/// A storage backend. All methods take the scope; nothing crosses scopes.
pub trait Store: Send + Sync + 'static {
    /// An individual enrollment by registration-ID key.
    fn enrollment(
        &self,
        scope: &IdScope,
        key: &str,
    ) -> impl Future<Output = Result<Option<IndividualEnrollment>>> + Send;
    /// Writes an individual enrollment (its etag already minted by the caller).
    fn put_enrollment(
        &self,
        scope: &IdScope,
        e: IndividualEnrollment,
        cond: WriteCondition,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes an individual enrollment.
    fn delete_enrollment(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Enrollments with keys after `after`, at most `limit`.
    fn list_enrollments(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<IndividualEnrollment>>> + Send;

    /// An enrollment group by group-ID key.
    fn group(
        &self,
        scope: &IdScope,
        key: &str,
    ) -> impl Future<Output = Result<Option<EnrollmentGroup>>> + Send;
    /// Writes a group.
    fn put_group(
        &self,
        scope: &IdScope,
        g: EnrollmentGroup,
        cond: WriteCondition,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes a group.
    fn delete_group(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Groups with keys after `after`, at most `limit`.
    fn list_groups(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<EnrollmentGroup>>> + Send;
    /// Every group of the scope, as a shared snapshot (the device path scans it to find the
    /// group whose derived key verifies; backends should cache it between writes).
    fn groups_snapshot(
        &self,
        scope: &IdScope,
    ) -> impl Future<Output = Result<Arc<[EnrollmentGroup]>>> + Send;

    /// A registration record by registration-ID key.
    fn registration(
        &self,
        scope: &IdScope,
        key: &str,
    ) -> impl Future<Output = Result<Option<RegistrationRecord>>> + Send;
    /// Deletes a registration record.
    fn delete_registration(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Records of the members of one group (by group-ID key), keys after `after`.
    fn list_registrations(
        &self,
        scope: &IdScope,
        group_key: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<RegistrationRecord>>> + Send;

    /// Commits what a device registration produced, atomically.
    fn commit_registration(
        &self,
        scope: &IdScope,
        c: RegistrationCommit,
    ) -> impl Future<Output = Result<()>> + Send;
    /// An operation by ID, unless it expired: an operation created more than
    /// [`OPERATION_TTL_SECS`] before `now` is not returned, whether or not a later commit has
    /// pruned it yet.
    fn operation(
        &self,
        scope: &IdScope,
        id: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Operation>>> + Send;

    /// A CA certificate of the scope by name key ([`CaCertificate::key`]).
    fn certificate(
        &self,
        scope: &IdScope,
        key: &str,
    ) -> impl Future<Output = Result<Option<CaCertificate>>> + Send;
    /// Writes a CA certificate (its etag and times already set by the caller).
    fn put_certificate(
        &self,
        scope: &IdScope,
        c: CaCertificate,
        cond: WriteCondition,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes a CA certificate.
    fn delete_certificate(
        &self,
        scope: &IdScope,
        key: &str,
        cond: DeleteCondition,
    ) -> impl Future<Output = Result<()>> + Send;
    /// CA certificates with keys after `after`, at most `limit`.
    fn list_certificates(
        &self,
        scope: &IdScope,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<CaCertificate>>> + Send;

    /// Adds `n` operations of `kind` to the scope's meter.
    fn meter(
        &self,
        scope: &IdScope,
        kind: &'static str,
        n: u64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The scope's operation counters by kind.
    fn operation_counts(
        &self,
        scope: &IdScope,
    ) -> impl Future<Output = Result<BTreeMap<String, u64>>> + Send;

    /// A device identity of a hub DPS hosts, by hub host name (any case) and device ID. Hub
    /// identities are not per scope: a hub may serve several.
    fn hub_identity(
        &self,
        hub: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<HubIdentity>>> + Send;
    /// Creates or replaces a hub identity.
    fn put_hub_identity(&self, id: HubIdentity) -> impl Future<Output = Result<()>> + Send;
    /// Deletes a hub identity; [`StoreError::NotFound`] if there is none.
    fn delete_hub_identity(
        &self,
        hub: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Every hub identity, ordered by (hub, device ID), after the continuation key `after`
    /// ([`HubIdentity::cursor`]), at most `limit`.
    fn list_hub_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<HubIdentity>>> + Send;
}
