//! The store conformance suite: what every [`Store`] backend must do, written once and run per
//! backend (`tests/conformance_memory.rs`, `tests/conformance_redb.rs`, ...).
//!
//! Each check is an `async fn(store)` that takes a fresh, empty store and panics on the first
//! deviation. [`store_conformance!`](crate::store_conformance) turns the whole list into one
//! `#[tokio::test]` per check (so a failure names the rule); [`run_all`] runs them in sequence.
//! The checks need a tokio runtime (the concurrency checks spawn tasks); the macro provides a
//! multi-threaded one.
//!
//! ```no_run
//! // tests/conformance_mybackend.rs
//! dps_testkit::store_conformance!(|| dps_store::MemoryStore::new());
//! ```
//!
//! The rules are the memory store's behaviour, which is the reference: etag compare-and-set
//! (create-only, if-match, stale, missing, delete conditions), case-folded keys and scopes,
//! scope isolation, key-ordered paging with `next_after` only when more follows, a groups
//! snapshot that follows writes, registrations listed by group, `commit_registration` atomic
//! (record + operation + meter), operations pruned an hour after their `created` time, meters
//! that accumulate without lost updates, compare-and-set under 50 concurrent writers, records
//! that round-trip exactly (including a 90 KB initial twin), operations hidden from reads once
//! older than the TTL at the caller's `now` even when nothing pruned them, and the scope's CA
//! certificates with the same etag rules and paging as enrollments, and the hub identities of
//! hosted hubs (upsert, hub names case-folded, device IDs not, paged by (hub, device ID)).

use std::collections::BTreeMap;
use std::sync::Arc;

use dps_store::{
    DeleteCondition, OPERATION_TTL_SECS, Page, RegistrationCommit, Store, StoreError,
    WriteCondition,
};
use dps_types::{
    AttestationKind, CaCertificate, CertificateProperties, DeviceRegistrationState,
    EnrollmentGroup, EnrollmentGroupId, Etag, HubIdentity, IdScope, IndividualEnrollment,
    Operation, OperationId, RegistrationId, RegistrationRecord, RegistrationStatus, Timestamp,
};
use serde_json::{Value, json};

/// Every check, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[&str] = &[
    "etag_create_only",
    "etag_if_match",
    "delete_conditions",
    "case_insensitive_keys",
    "scope_isolation",
    "paging",
    "paging_groups",
    "groups_snapshot",
    "registrations_by_group",
    "registration_replace",
    "commit_registration_atomic",
    "operation_ttl",
    "operation_expires_by_time",
    "meters_accumulate",
    "concurrent_cas",
    "concurrent_commits",
    "large_values",
    "records_round_trip",
    "missing_reads",
    "certificates_cas",
    "certificates_listing",
    "hub_identities_upsert",
    "hub_identities_listing",
];

/// Generates one `#[tokio::test]` per conformance check in the calling module. The argument is
/// an expression evaluating to a constructor (`Fn() -> S`, `S: Store`); it is evaluated once
/// per test and called once, and lives until the test ends (so it may own a temporary
/// directory). The calling crate needs `tokio` with the `macros` and `rt-multi-thread`
/// features.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@checks $make;
            etag_create_only, etag_if_match, delete_conditions, case_insensitive_keys,
            scope_isolation, paging, paging_groups, groups_snapshot, registrations_by_group,
            registration_replace, commit_registration_atomic, operation_ttl,
            operation_expires_by_time, meters_accumulate, concurrent_cas, concurrent_commits,
            large_values, records_round_trip, missing_reads, certificates_cas,
            certificates_listing, hub_identities_upsert, hub_identities_listing);
    };
    (@checks $make:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let make = $make;
                $crate::conformance::$check(make()).await;
            }
        )+
    };
}

/// Runs every check in sequence, each on a fresh store from `make`.
pub async fn run_all<S: Store, F: Fn() -> S>(make: F) {
    etag_create_only(make()).await;
    etag_if_match(make()).await;
    delete_conditions(make()).await;
    case_insensitive_keys(make()).await;
    scope_isolation(make()).await;
    paging(make()).await;
    paging_groups(make()).await;
    groups_snapshot(make()).await;
    registrations_by_group(make()).await;
    registration_replace(make()).await;
    commit_registration_atomic(make()).await;
    operation_ttl(make()).await;
    operation_expires_by_time(make()).await;
    meters_accumulate(make()).await;
    concurrent_cas(make()).await;
    concurrent_commits(make()).await;
    large_values(make()).await;
    records_round_trip(make()).await;
    missing_reads(make()).await;
    certificates_cas(make()).await;
    certificates_listing(make()).await;
    hub_identities_upsert(make()).await;
    hub_identities_listing(make()).await;
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Seconds since the epoch the fixtures' operations start at.
pub const T0: i64 = 1_800_000_000;
/// The meter kind the fixtures count registrations under.
pub const METER: &str = "DeviceRegistration";

/// A scope.
pub fn scope(s: &str) -> IdScope {
    IdScope::new(s).expect("fixture scopes are valid")
}

/// The lookup key of a registration ID (what callers pass to the store).
pub fn rkey(rid: &str) -> String {
    RegistrationId::new(rid)
        .expect("fixture ids are valid")
        .key()
}

/// The lookup key of a group ID.
pub fn gkey(gid: &str) -> String {
    EnrollmentGroupId::new(gid)
        .expect("fixture ids are valid")
        .key()
}

/// A symmetric-key individual enrollment with etag `etag`.
pub fn enrollment(rid: &str, etag: &str) -> IndividualEnrollment {
    let mut e: IndividualEnrollment = serde_json::from_value(json!({
        "registrationId": rid,
        "attestation": {"type": "symmetricKey", "symmetricKey": {
            "primaryKey": "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==",
            "secondaryKey": "dGVzdC1rZXktZ3JvdXAtMS0wMTIzNDU2Nzg5YWJjZGU="}},
    }))
    .expect("fixture enrollment parses");
    e.etag = Some(Etag::new(etag));
    e
}

/// A symmetric-key enrollment group with etag `etag`.
pub fn group(gid: &str, etag: &str) -> EnrollmentGroup {
    let mut g: EnrollmentGroup = serde_json::from_value(json!({
        "enrollmentGroupId": gid,
        "attestation": {"type": "symmetricKey", "symmetricKey": {
            "primaryKey": "dGVzdC1rZXktZ3JvdXAtMS0wMTIzNDU2Nzg5YWJjZGU=",
            "secondaryKey": "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg=="}},
    }))
    .expect("fixture group parses");
    g.etag = Some(Etag::new(etag));
    g
}

/// A whole-second timestamp.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_nanos(i128::from(secs) * 1_000_000_000).expect("fixture time is valid")
}

fn state(rid: &str, etag: &str) -> DeviceRegistrationState {
    DeviceRegistrationState {
        registration_id: RegistrationId::new(rid).expect("fixture ids are valid"),
        created_date_time_utc: Some(at(T0)),
        assigned_hub: dps_types::HubHostName::new("hub-a.example.net").ok(),
        device_id: Some(rid.to_owned()),
        status: RegistrationStatus::Assigned,
        substatus: Some(dps_types::Substatus::InitialAssignment),
        error_code: None,
        error_message: None,
        last_updated_date_time_utc: Some(at(T0)),
        etag: Some(Etag::new(etag)),
        payload: None,
    }
}

/// A registration record of `rid` (through group `gid`, if any) with etag `etag`.
pub fn record(rid: &str, gid: Option<&str>, etag: &str) -> RegistrationRecord {
    RegistrationRecord {
        state: state(rid, etag),
        enrollment_group_id: gid.map(|g| EnrollmentGroupId::new(g).expect("fixture ids are valid")),
        attestation: AttestationKind::SymmetricKey,
        initial_hub: dps_types::HubHostName::new("hub-a.example.net").ok(),
    }
}

/// An operation `id` of `rid`, created at `created` (seconds since the epoch).
pub fn operation(id: &str, rid: &str, created: i64) -> Operation {
    Operation {
        operation_id: OperationId::new(id).expect("fixture ids are valid"),
        registration_id: RegistrationId::new(rid).expect("fixture ids are valid"),
        status: RegistrationStatus::Assigned,
        registration_state: state(rid, "op"),
        enrollment_group_id: None,
        attestation: AttestationKind::SymmetricKey,
        created: at(created),
    }
}

/// A CA certificate record named `name` with etag `etag`.
pub fn certificate(name: &str, etag: &str) -> CaCertificate {
    CaCertificate {
        name: name.to_owned(),
        properties: CertificateProperties {
            subject: Some(format!("CN={name}")),
            expiry: Some(at(T0 + 86_400 * 365)),
            thumbprint: Some("3F1A9C0B7D2E4F6A8B0C1D2E3F4A5B6C7D8E9F00".to_owned()),
            is_verified: false,
            created: Some(at(T0)),
            updated: Some(at(T0)),
            certificate: Some(
                "-----BEGIN CERTIFICATE-----\nMIIBfixture\n-----END CERTIFICATE-----\n".to_owned(),
            ),
        },
        etag: Some(Etag::new(etag)),
    }
}

/// A registration commit: `record` (if any), operation `op_id` at `created`, one `METER`.
pub fn commit(
    record: Option<RegistrationRecord>,
    op_id: &str,
    rid: &str,
    created: i64,
) -> RegistrationCommit {
    RegistrationCommit {
        record,
        operation: operation(op_id, rid, created),
        meter: Some(METER),
    }
}

fn etag_of(e: &IndividualEnrollment) -> &str {
    e.etag.as_ref().map_or("", Etag::bare)
}

fn group_etag(g: &EnrollmentGroup) -> &str {
    g.etag.as_ref().map_or("", Etag::bare)
}

#[track_caller]
fn assert_err<T: std::fmt::Debug>(r: Result<T, StoreError>, want: &str) {
    let ok = matches!(
        (&r, want),
        (Err(StoreError::Conflict), "Conflict")
            | (Err(StoreError::PreconditionFailed), "PreconditionFailed")
            | (Err(StoreError::NotFound), "NotFound")
    );
    assert!(ok, "expected StoreError::{want}, got {r:?}");
}

async fn put_e<S: Store>(s: &S, sc: &IdScope, e: IndividualEnrollment, c: WriteCondition) {
    s.put_enrollment(sc, e, c).await.expect("put_enrollment");
}

async fn get_e<S: Store>(s: &S, sc: &IdScope, key: &str) -> Option<IndividualEnrollment> {
    s.enrollment(sc, key).await.expect("enrollment")
}

/// Walks every page of a listing with page size `limit`, checking the page invariants; returns
/// the keys in listing order.
async fn walk<T, F, Fut>(limit: usize, key_of: impl Fn(&T) -> String, mut next: F) -> Vec<String>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, StoreError>>,
{
    let mut keys = Vec::new();
    let mut after = None;
    for _ in 0..10_000 {
        let page = next(after.clone()).await.expect("list");
        assert!(
            page.items.len() <= limit,
            "a page holds at most `limit` items"
        );
        let page_keys: Vec<String> = page.items.iter().map(&key_of).collect();
        match &page.next_after {
            Some(n) => {
                assert_eq!(page.items.len(), limit, "a page before the last is full");
                assert_eq!(
                    Some(n),
                    page_keys.last(),
                    "next_after is the last item's key"
                );
            }
            None => assert!(
                !page.items.is_empty() || keys.is_empty(),
                "the last page is not an empty trailer (next_after was set on a complete page)"
            ),
        }
        keys.extend(page_keys);
        match page.next_after {
            Some(n) => after = Some(n),
            None => return keys,
        }
    }
    panic!("paging never ended");
}

// ---------------------------------------------------------------------------------------------
// Checks

/// `MustNotExist` refuses an existing record (whatever the spelling of its ID) with `Conflict`
/// and leaves it unchanged, for enrollments and groups.
pub async fn etag_create_only<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    put_e(
        &s,
        &sc,
        enrollment("Dev-1", "1"),
        WriteCondition::MustNotExist,
    )
    .await;
    let mut again = enrollment("DEV-1", "2");
    again.device_id = dps_types::DeviceId::new("other").ok();
    assert_err(
        s.put_enrollment(&sc, again, WriteCondition::MustNotExist)
            .await,
        "Conflict",
    );
    let got = get_e(&s, &sc, &rkey("dev-1")).await.expect("still there");
    assert_eq!(etag_of(&got), "1");
    assert_eq!(got.registration_id.as_str(), "Dev-1");
    assert_eq!(got.device_id, None);

    s.put_group(&sc, group("Group-1", "1"), WriteCondition::MustNotExist)
        .await
        .expect("put_group");
    assert_err(
        s.put_group(&sc, group("group-1", "2"), WriteCondition::MustNotExist)
            .await,
        "Conflict",
    );
    let g = s
        .group(&sc, &gkey("group-1"))
        .await
        .expect("group")
        .expect("still there");
    assert_eq!(group_etag(&g), "1");
    assert_eq!(g.enrollment_group_id.as_str(), "Group-1");
}

/// `IfMatch` replaces only a record whose etag matches; a stale etag or a missing record is
/// `PreconditionFailed` and changes nothing (a missing record is not created). `Any` creates or
/// replaces.
pub async fn etag_if_match<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let k = rkey("dev-1");
    assert_err(
        s.put_enrollment(
            &sc,
            enrollment("dev-1", "1"),
            WriteCondition::IfMatch(Etag::new("1")),
        )
        .await,
        "PreconditionFailed",
    );
    assert!(
        get_e(&s, &sc, &k).await.is_none(),
        "if-match on a missing record creates nothing"
    );

    put_e(
        &s,
        &sc,
        enrollment("dev-1", "1"),
        WriteCondition::MustNotExist,
    )
    .await;
    assert_err(
        s.put_enrollment(
            &sc,
            enrollment("dev-1", "x"),
            WriteCondition::IfMatch(Etag::new("0")),
        )
        .await,
        "PreconditionFailed",
    );
    assert_eq!(etag_of(&get_e(&s, &sc, &k).await.expect("present")), "1");

    put_e(
        &s,
        &sc,
        enrollment("dev-1", "2"),
        WriteCondition::IfMatch(Etag::new("1")),
    )
    .await;
    assert_eq!(etag_of(&get_e(&s, &sc, &k).await.expect("present")), "2");
    // The old etag is stale now.
    assert_err(
        s.put_enrollment(
            &sc,
            enrollment("dev-1", "y"),
            WriteCondition::IfMatch(Etag::new("1")),
        )
        .await,
        "PreconditionFailed",
    );
    assert_eq!(etag_of(&get_e(&s, &sc, &k).await.expect("present")), "2");
    // An etag as a client sends it (quoted) names the same version.
    put_e(
        &s,
        &sc,
        enrollment("dev-1", "3"),
        WriteCondition::IfMatch(Etag::parse("\"2\"")),
    )
    .await;
    assert_eq!(etag_of(&get_e(&s, &sc, &k).await.expect("present")), "3");
    put_e(&s, &sc, enrollment("dev-1", "4"), WriteCondition::Any).await;
    assert_eq!(etag_of(&get_e(&s, &sc, &k).await.expect("present")), "4");
    put_e(&s, &sc, enrollment("dev-2", "1"), WriteCondition::Any).await;
    assert!(
        get_e(&s, &sc, &rkey("dev-2")).await.is_some(),
        "Any creates"
    );

    // Groups follow the same rules.
    let gk = gkey("g");
    assert_err(
        s.put_group(
            &sc,
            group("g", "1"),
            WriteCondition::IfMatch(Etag::new("1")),
        )
        .await,
        "PreconditionFailed",
    );
    assert!(s.group(&sc, &gk).await.expect("group").is_none());
    s.put_group(&sc, group("g", "1"), WriteCondition::Any)
        .await
        .expect("put_group");
    assert_err(
        s.put_group(
            &sc,
            group("g", "2"),
            WriteCondition::IfMatch(Etag::new("0")),
        )
        .await,
        "PreconditionFailed",
    );
    s.put_group(
        &sc,
        group("g", "2"),
        WriteCondition::IfMatch(Etag::new("1")),
    )
    .await
    .expect("cas");
    let g = s.group(&sc, &gk).await.expect("group").expect("present");
    assert_eq!(group_etag(&g), "2");
}

/// Deleting a missing record is `NotFound`; `IfMatch` with another etag is
/// `PreconditionFailed` and keeps the record; a matching etag or `Any` deletes. For
/// enrollments, groups and registration records.
pub async fn delete_conditions<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let k = rkey("dev-1");
    assert_err(
        s.delete_enrollment(&sc, &k, DeleteCondition::Any).await,
        "NotFound",
    );
    assert_err(
        s.delete_enrollment(&sc, &k, DeleteCondition::IfMatch(Etag::new("1")))
            .await,
        "NotFound",
    );
    put_e(&s, &sc, enrollment("dev-1", "1"), WriteCondition::Any).await;
    assert_err(
        s.delete_enrollment(&sc, &k, DeleteCondition::IfMatch(Etag::new("2")))
            .await,
        "PreconditionFailed",
    );
    assert!(
        get_e(&s, &sc, &k).await.is_some(),
        "a refused delete keeps the record"
    );
    s.delete_enrollment(&sc, &k, DeleteCondition::IfMatch(Etag::new("1")))
        .await
        .expect("delete");
    assert!(get_e(&s, &sc, &k).await.is_none());
    put_e(&s, &sc, enrollment("dev-1", "5"), WriteCondition::Any).await;
    s.delete_enrollment(&sc, &k, DeleteCondition::Any)
        .await
        .expect("delete");
    assert!(get_e(&s, &sc, &k).await.is_none());
    assert_err(
        s.delete_enrollment(&sc, &k, DeleteCondition::Any).await,
        "NotFound",
    );

    let gk = gkey("g");
    assert_err(
        s.delete_group(&sc, &gk, DeleteCondition::Any).await,
        "NotFound",
    );
    s.put_group(&sc, group("g", "1"), WriteCondition::Any)
        .await
        .expect("put_group");
    assert_err(
        s.delete_group(&sc, &gk, DeleteCondition::IfMatch(Etag::new("2")))
            .await,
        "PreconditionFailed",
    );
    assert!(s.group(&sc, &gk).await.expect("group").is_some());
    s.delete_group(&sc, &gk, DeleteCondition::IfMatch(Etag::new("1")))
        .await
        .expect("delete");
    assert!(s.group(&sc, &gk).await.expect("group").is_none());
    assert_err(
        s.delete_group(&sc, &gk, DeleteCondition::Any).await,
        "NotFound",
    );

    let rk = rkey("dev-r");
    assert_err(
        s.delete_registration(&sc, &rk, DeleteCondition::Any).await,
        "NotFound",
    );
    s.commit_registration(
        &sc,
        commit(Some(record("dev-r", None, "r1")), "op-1", "dev-r", T0),
    )
    .await
    .expect("commit");
    assert_err(
        s.delete_registration(&sc, &rk, DeleteCondition::IfMatch(Etag::new("r0")))
            .await,
        "PreconditionFailed",
    );
    assert!(
        s.registration(&sc, &rk)
            .await
            .expect("registration")
            .is_some()
    );
    s.delete_registration(&sc, &rk, DeleteCondition::IfMatch(Etag::new("r1")))
        .await
        .expect("delete");
    assert!(
        s.registration(&sc, &rk)
            .await
            .expect("registration")
            .is_none()
    );
    assert_err(
        s.delete_registration(&sc, &rk, DeleteCondition::Any).await,
        "NotFound",
    );
}

/// Records are found by the case-folded key whatever the spelling they were written with, keep
/// that spelling, and a differently spelled write of the same ID replaces the record. Scopes
/// are case-insensitive too.
pub async fn case_insensitive_keys<S: Store>(s: S) {
    let sc = scope("0ne0000ABCD");
    put_e(
        &s,
        &sc,
        enrollment("Dev-MiXeD", "1"),
        WriteCondition::MustNotExist,
    )
    .await;
    let got = get_e(&s, &sc, &rkey("DEV-mixed"))
        .await
        .expect("found by the folded key");
    assert_eq!(
        got.registration_id.as_str(),
        "Dev-MiXeD",
        "the spelling is kept"
    );
    let same_scope = scope("0NE0000abcd");
    assert!(
        get_e(&s, &same_scope, &rkey("dev-mixed")).await.is_some(),
        "scopes fold case"
    );

    put_e(&s, &sc, enrollment("dev-mixed", "2"), WriteCondition::Any).await;
    let page = s.list_enrollments(&sc, None, 10).await.expect("list");
    assert_eq!(page.items.len(), 1, "one record per folded key");
    assert_eq!(page.items[0].registration_id.as_str(), "dev-mixed");

    s.put_group(&sc, group("Group-A", "1"), WriteCondition::Any)
        .await
        .expect("put_group");
    let g = s
        .group(&sc, &gkey("GROUP-a"))
        .await
        .expect("group")
        .expect("found");
    assert_eq!(g.enrollment_group_id.as_str(), "Group-A");

    let rec = record("Reg-X", Some("Group-A"), "1");
    s.commit_registration(&sc, commit(Some(rec), "op-x", "Reg-X", T0))
        .await
        .expect("commit");
    let r = s
        .registration(&sc, &rkey("REG-x"))
        .await
        .expect("registration")
        .expect("found");
    assert_eq!(r.state.registration_id.as_str(), "Reg-X");
    let listed = s
        .list_registrations(&sc, &gkey("group-A"), None, 10)
        .await
        .expect("list_registrations");
    assert_eq!(listed.items.len(), 1, "listed under the folded group key");
    s.delete_registration(&sc, &rkey("reg-X"), DeleteCondition::Any)
        .await
        .expect("delete");
    assert!(
        s.registration(&sc, &rkey("reg-x"))
            .await
            .expect("registration")
            .is_none()
    );
}

/// Nothing crosses scopes: records, listings, snapshots, registrations, operations and meters
/// of one scope are invisible in another, including a scope whose key is a prefix of another.
pub async fn scope_isolation<S: Store>(s: S) {
    let a = scope("0ne1");
    let b = scope("0ne10");
    put_e(&s, &a, enrollment("dev-1", "a"), WriteCondition::Any).await;
    put_e(&s, &b, enrollment("dev-1", "b"), WriteCondition::Any).await;
    put_e(&s, &b, enrollment("dev-0", "b"), WriteCondition::Any).await;
    assert_eq!(etag_of(&get_e(&s, &a, "dev-1").await.expect("a")), "a");
    assert_eq!(etag_of(&get_e(&s, &b, "dev-1").await.expect("b")), "b");
    assert!(get_e(&s, &a, "dev-0").await.is_none());
    let la = s.list_enrollments(&a, None, 100).await.expect("list");
    assert_eq!(la.items.len(), 1, "listing scope a shows only a's records");
    assert_eq!(etag_of(&la.items[0]), "a");
    let lb = s.list_enrollments(&b, None, 100).await.expect("list");
    assert_eq!(lb.items.len(), 2);
    s.delete_enrollment(&a, "dev-1", DeleteCondition::Any)
        .await
        .expect("delete");
    assert!(
        get_e(&s, &b, "dev-1").await.is_some(),
        "deleting in a leaves b"
    );

    s.put_group(&a, group("g", "a"), WriteCondition::Any)
        .await
        .expect("put_group");
    assert!(s.group(&b, "g").await.expect("group").is_none());
    assert_eq!(s.groups_snapshot(&b).await.expect("snapshot").len(), 0);
    assert_eq!(s.groups_snapshot(&a).await.expect("snapshot").len(), 1);
    assert_eq!(
        s.list_groups(&b, None, 10).await.expect("list").items.len(),
        0
    );

    s.commit_registration(
        &a,
        commit(Some(record("dev-1", Some("g"), "1")), "op-1", "dev-1", T0),
    )
    .await
    .expect("commit");
    assert!(
        s.registration(&b, "dev-1")
            .await
            .expect("registration")
            .is_none()
    );
    assert!(
        s.operation(&b, "op-1", at(T0))
            .await
            .expect("operation")
            .is_none()
    );
    assert!(
        s.operation(&a, "op-1", at(T0))
            .await
            .expect("operation")
            .is_some()
    );
    assert_eq!(
        s.list_registrations(&b, "g", None, 10)
            .await
            .expect("list")
            .items
            .len(),
        0
    );
    assert_eq!(
        s.list_registrations(&a, "g", None, 10)
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    s.meter(&b, "other", 7).await.expect("meter");
    let ca = s.operation_counts(&a).await.expect("counts");
    let cb = s.operation_counts(&b).await.expect("counts");
    assert_eq!(ca, BTreeMap::from([(METER.to_owned(), 1)]));
    assert_eq!(cb, BTreeMap::from([("other".to_owned(), 7)]));
}

/// Enrollment listings come in key (bytewise) order whatever the insertion order; every page
/// size from 1 to n+1 yields each record exactly once; `next_after` is the last item's key on
/// every page but the last and absent on the last; a continuation key need not exist; records
/// added behind the cursor do not reappear.
pub async fn paging<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let ids = ["b", "A:b", "a-b", "z9", "a.b", "0a", "a_b", "ab", "A"];
    for (i, id) in ids.iter().enumerate() {
        put_e(&s, &sc, enrollment(id, &i.to_string()), WriteCondition::Any).await;
    }
    let mut want: Vec<String> = ids.iter().map(|i| rkey(i)).collect();
    want.sort();
    for limit in 1..=ids.len() + 1 {
        let got = walk(
            limit,
            |e: &IndividualEnrollment| e.registration_id.key(),
            |after| {
                let (s, sc) = (&s, &sc);
                async move { s.list_enrollments(sc, after.as_deref(), limit).await }
            },
        )
        .await;
        assert_eq!(got, want, "page size {limit}");
    }
    // A continuation key that is not a record key.
    let p = s.list_enrollments(&sc, Some("a-c"), 2).await.expect("list");
    let keys: Vec<String> = p.items.iter().map(|e| e.registration_id.key()).collect();
    assert_eq!(keys, ["a.b", "a:b"]);
    assert_eq!(p.next_after.as_deref(), Some("a:b"));
    // After the last key: nothing, no continuation.
    let p = s.list_enrollments(&sc, Some("z9"), 5).await.expect("list");
    assert!(p.items.is_empty() && p.next_after.is_none());
    // Records written behind the cursor are not returned again; ones ahead are.
    let p1 = s.list_enrollments(&sc, None, 3).await.expect("list");
    let cursor = p1.next_after.clone().expect("more pages");
    put_e(&s, &sc, enrollment("0", "new"), WriteCondition::Any).await;
    put_e(&s, &sc, enrollment("zz", "new"), WriteCondition::Any).await;
    let rest = walk(
        usize::MAX,
        |e: &IndividualEnrollment| e.registration_id.key(),
        |after| {
            let (s, sc) = (&s, &sc);
            let after = after.or_else(|| Some(cursor.clone()));
            async move { s.list_enrollments(sc, after.as_deref(), usize::MAX).await }
        },
    )
    .await;
    let mut all: Vec<String> = p1.items.iter().map(|e| e.registration_id.key()).collect();
    all.extend(rest);
    let mut want2 = want.clone();
    want2.push("zz".into());
    assert_eq!(
        all, want2,
        "no duplicates, new keys ahead of the cursor included"
    );
    // An empty scope.
    let p = s
        .list_enrollments(&scope("0ne2"), None, 3)
        .await
        .expect("list");
    assert!(p.items.is_empty() && p.next_after.is_none());
}

/// Group listings page like enrollment listings.
pub async fn paging_groups<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let ids = ["g-3", "G-1", "g-5", "g-2", "G-4"];
    for id in ids {
        s.put_group(&sc, group(id, "1"), WriteCondition::Any)
            .await
            .expect("put_group");
    }
    let want = ["g-1", "g-2", "g-3", "g-4", "g-5"];
    for limit in 1..=ids.len() + 1 {
        let got = walk(
            limit,
            |g: &EnrollmentGroup| g.enrollment_group_id.key(),
            |after| {
                let (s, sc) = (&s, &sc);
                async move { s.list_groups(sc, after.as_deref(), limit).await }
            },
        )
        .await;
        assert_eq!(got, want, "page size {limit}");
    }
}

/// The groups snapshot lists the scope's groups in key order and follows every successful
/// group write and delete (and no failed one, and no enrollment write).
pub async fn groups_snapshot<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let ids = |snap: &[EnrollmentGroup]| -> Vec<String> {
        snap.iter()
            .map(|g| format!("{}@{}", g.enrollment_group_id.key(), group_etag(g)))
            .collect()
    };
    assert!(s.groups_snapshot(&sc).await.expect("snapshot").is_empty());
    s.put_group(&sc, group("g2", "1"), WriteCondition::Any)
        .await
        .expect("put_group");
    s.put_group(&sc, group("G1", "1"), WriteCondition::Any)
        .await
        .expect("put_group");
    let first = s.groups_snapshot(&sc).await.expect("snapshot");
    assert_eq!(ids(&first), ["g1@1", "g2@1"]);
    assert_eq!(
        ids(&s.groups_snapshot(&sc).await.expect("snapshot")),
        ["g1@1", "g2@1"]
    );

    s.put_group(
        &sc,
        group("g1", "2"),
        WriteCondition::IfMatch(Etag::new("1")),
    )
    .await
    .expect("cas");
    assert_eq!(
        ids(&s.groups_snapshot(&sc).await.expect("snapshot")),
        ["g1@2", "g2@1"]
    );
    assert_eq!(
        ids(&first),
        ["g1@1", "g2@1"],
        "an earlier snapshot does not change"
    );

    assert!(
        s.put_group(&sc, group("g1", "9"), WriteCondition::MustNotExist)
            .await
            .is_err()
    );
    put_e(&s, &sc, enrollment("g3", "1"), WriteCondition::Any).await;
    assert_eq!(
        ids(&s.groups_snapshot(&sc).await.expect("snapshot")),
        ["g1@2", "g2@1"]
    );

    s.delete_group(&sc, "g2", DeleteCondition::Any)
        .await
        .expect("delete");
    assert_eq!(
        ids(&s.groups_snapshot(&sc).await.expect("snapshot")),
        ["g1@2"]
    );
    s.put_group(&sc, group("g0", "1"), WriteCondition::MustNotExist)
        .await
        .expect("put_group");
    assert_eq!(
        ids(&s.groups_snapshot(&sc).await.expect("snapshot")),
        ["g0@1", "g1@2"]
    );
    s.delete_group(&sc, "g0", DeleteCondition::IfMatch(Etag::new("1")))
        .await
        .expect("delete");
    s.delete_group(&sc, "g1", DeleteCondition::Any)
        .await
        .expect("delete");
    assert!(s.groups_snapshot(&sc).await.expect("snapshot").is_empty());
}

/// `list_registrations` returns the records of one group's members, in key order, paged; it
/// follows records that move to another group, leave their group, or are deleted, and does not
/// confuse a group with one whose key it prefixes.
pub async fn registrations_by_group<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let members = [
        ("r-3", "Group-A"),
        ("R-1", "group-a"),
        ("r-5", "GROUP-A"),
        ("r-2", "group-a"),
        ("r-4", "group-a"),
        ("r-6", "group-b"),
        ("r-7", "group-b"),
        ("r-8", "group-a1"),
    ];
    for (i, (rid, gid)) in members.iter().enumerate() {
        let c = commit(
            Some(record(rid, Some(gid), "1")),
            &format!("op-{i}"),
            rid,
            T0,
        );
        s.commit_registration(&sc, c).await.expect("commit");
    }
    s.commit_registration(
        &sc,
        commit(Some(record("r-9", None, "1")), "op-9", "r-9", T0),
    )
    .await
    .expect("commit");
    let list = |g: &'static str, limit: usize| {
        let (s, sc) = (&s, &sc);
        async move {
            walk(
                limit,
                |r: &RegistrationRecord| r.state.registration_id.key(),
                |after| async move { s.list_registrations(sc, g, after.as_deref(), limit).await },
            )
            .await
        }
    };
    for limit in [1, 2, 5, 6, 100] {
        assert_eq!(
            list("group-a", limit).await,
            ["r-1", "r-2", "r-3", "r-4", "r-5"],
            "limit {limit}"
        );
    }
    assert_eq!(list("group-b", 10).await, ["r-6", "r-7"]);
    assert_eq!(list("group-a1", 10).await, ["r-8"]);
    assert!(list("group-c", 10).await.is_empty());

    // r-1 moves to group-b; r-2 registers without a group; r-3 is deleted.
    s.commit_registration(
        &sc,
        commit(Some(record("r-1", Some("group-b"), "2")), "op-a", "r-1", T0),
    )
    .await
    .expect("commit");
    s.commit_registration(
        &sc,
        commit(Some(record("r-2", None, "2")), "op-b", "r-2", T0),
    )
    .await
    .expect("commit");
    s.delete_registration(&sc, "r-3", DeleteCondition::Any)
        .await
        .expect("delete");
    assert_eq!(list("group-a", 2).await, ["r-4", "r-5"]);
    assert_eq!(list("group-b", 1).await, ["r-1", "r-6", "r-7"]);
    // A commit without a record leaves the listing alone.
    s.commit_registration(&sc, commit(None, "op-c", "r-4", T0))
        .await
        .expect("commit");
    assert_eq!(list("group-a", 10).await, ["r-4", "r-5"]);
    let p = s
        .list_registrations(&sc, "group-a", Some("r-4"), 10)
        .await
        .expect("list");
    assert_eq!(p.items.len(), 1);
    assert_eq!(p.items[0].state.registration_id.as_str(), "r-5");
    assert!(p.next_after.is_none());
}

/// A re-registration replaces the record (no etag condition on commits), and the record's etag
/// then governs deletes.
pub async fn registration_replace<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    s.commit_registration(
        &sc,
        commit(Some(record("dev-1", Some("g"), "1")), "op-1", "dev-1", T0),
    )
    .await
    .expect("commit");
    let mut second = record("Dev-1", Some("g"), "2");
    second.state.assigned_hub = dps_types::HubHostName::new("hub-b.example.net").ok();
    s.commit_registration(&sc, commit(Some(second.clone()), "op-2", "Dev-1", T0 + 5))
        .await
        .expect("commit");
    let got = s
        .registration(&sc, "dev-1")
        .await
        .expect("registration")
        .expect("present");
    assert_eq!(got, second);
    assert_eq!(
        s.list_registrations(&sc, "g", None, 10)
            .await
            .expect("list")
            .items,
        vec![second.clone()]
    );
    assert!(
        s.operation(&sc, "op-1", at(T0))
            .await
            .expect("operation")
            .is_some(),
        "both operations kept"
    );
    assert!(
        s.operation(&sc, "op-2", at(T0))
            .await
            .expect("operation")
            .is_some()
    );
    assert_err(
        s.delete_registration(&sc, "dev-1", DeleteCondition::IfMatch(Etag::new("1")))
            .await,
        "PreconditionFailed",
    );
    s.delete_registration(&sc, "dev-1", DeleteCondition::IfMatch(Etag::new("2")))
        .await
        .expect("delete");
    assert!(
        s.list_registrations(&sc, "g", None, 10)
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

/// `commit_registration` makes the record, the operation and the meter visible together:
/// after it returns all three are there; a commit without a record or meter writes only the
/// operation; and a reader running alongside 100 commits never sees one part without the
/// others.
pub async fn commit_registration_atomic<S: Store>(s: S) {
    let s = Arc::new(s);
    let sc = scope("0ne00000001");
    s.commit_registration(
        &sc,
        commit(Some(record("dev-1", None, "1")), "op-1", "dev-1", T0),
    )
    .await
    .expect("commit");
    assert!(
        s.registration(&sc, "dev-1")
            .await
            .expect("registration")
            .is_some()
    );
    assert_eq!(
        s.operation(&sc, "op-1", at(T0)).await.expect("operation"),
        Some(operation("op-1", "dev-1", T0))
    );
    assert_eq!(
        s.operation_counts(&sc).await.expect("counts").get(METER),
        Some(&1)
    );

    let bare = RegistrationCommit {
        record: None,
        operation: operation("op-2", "dev-2", T0),
        meter: None,
    };
    s.commit_registration(&sc, bare).await.expect("commit");
    assert!(
        s.operation(&sc, "op-2", at(T0))
            .await
            .expect("operation")
            .is_some()
    );
    assert!(
        s.registration(&sc, "dev-2")
            .await
            .expect("registration")
            .is_none()
    );
    assert_eq!(
        s.operation_counts(&sc).await.expect("counts").get(METER),
        Some(&1)
    );

    // A reader alongside a writer: commit i writes record a-i, operation c-i and meter n = i+1.
    let other = scope("0ne00000002");
    const N: usize = 100;
    let writer = {
        let (s, sc) = (s.clone(), other.clone());
        tokio::spawn(async move {
            for i in 0..N {
                let rid = format!("a-{i}");
                let c = commit(Some(record(&rid, None, "1")), &format!("c-{i}"), &rid, T0);
                s.commit_registration(&sc, c).await.expect("commit");
            }
        })
    };
    let mut observed = 0usize;
    loop {
        let done = writer.is_finished();
        let n = s
            .operation_counts(&other)
            .await
            .expect("counts")
            .get(METER)
            .copied()
            .unwrap_or(0);
        let n = usize::try_from(n).expect("small");
        if n > 0 {
            let last = n - 1;
            assert!(
                s.operation(&other, &format!("c-{last}"), at(T0))
                    .await
                    .expect("operation")
                    .is_some(),
                "meter counted commit {last} but its operation is missing"
            );
            assert!(
                s.registration(&other, &format!("a-{last}"))
                    .await
                    .expect("registration")
                    .is_some(),
                "meter counted commit {last} but its record is missing"
            );
        }
        // The reverse direction: the newest visible operation implies its record and meter.
        let probe = n.min(N - 1);
        if s.operation(&other, &format!("c-{probe}"), at(T0))
            .await
            .expect("operation")
            .is_some()
        {
            assert!(
                s.registration(&other, &format!("a-{probe}"))
                    .await
                    .expect("registration")
                    .is_some()
            );
            let m = s
                .operation_counts(&other)
                .await
                .expect("counts")
                .get(METER)
                .copied()
                .unwrap_or(0);
            assert!(
                m > u64::try_from(probe).expect("small"),
                "operation {probe} visible, meter {m}"
            );
        }
        observed = observed.max(n);
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer task");
    assert_eq!(observed, N);
}

/// Operations stay pollable for `OPERATION_TTL_SECS` of their own `created` time: a commit
/// prunes the scope's operations created more than that before its own, and only those
/// (records are kept).
pub async fn operation_ttl<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let ttl = OPERATION_TTL_SECS;
    let c = |rec: bool, id: &str, t: i64| {
        commit(
            rec.then(|| record(&format!("d-{id}"), None, "1")),
            id,
            &format!("d-{id}"),
            t,
        )
    };
    let present = |id: &'static str| {
        let (s, sc) = (&s, &sc);
        async move {
            s.operation(sc, id, at(T0))
                .await
                .expect("operation")
                .is_some()
        }
    };
    s.commit_registration(&sc, c(true, "op-a", T0))
        .await
        .expect("commit");
    s.commit_registration(&sc, c(false, "op-b", T0 + ttl / 2))
        .await
        .expect("commit");
    s.commit_registration(&sc, c(false, "op-c", T0 + ttl))
        .await
        .expect("commit");
    assert!(present("op-a").await, "exactly one TTL old: still pollable");
    s.commit_registration(&sc, c(false, "op-d", T0 + ttl + 1))
        .await
        .expect("commit");
    assert!(!present("op-a").await, "older than the TTL: pruned");
    assert!(present("op-b").await && present("op-c").await && present("op-d").await);
    assert!(
        s.registration(&sc, "d-op-a")
            .await
            .expect("registration")
            .is_some(),
        "pruning removes operations, not records"
    );
    s.commit_registration(&sc, c(false, "op-e", T0 + ttl / 2 + ttl + 1))
        .await
        .expect("commit");
    assert!(!present("op-b").await);
    assert!(present("op-c").await && present("op-d").await && present("op-e").await);
}

/// Meters add up per kind and scope, through `meter` and `commit_registration`, including
/// from 20 concurrent tasks (no lost update).
pub async fn meters_accumulate<S: Store>(s: S) {
    let s = Arc::new(s);
    let sc = scope("0ne00000001");
    assert!(s.operation_counts(&sc).await.expect("counts").is_empty());
    s.meter(&sc, "a", 2).await.expect("meter");
    s.meter(&sc, "a", 3).await.expect("meter");
    s.meter(&sc, "b", 1).await.expect("meter");
    let counts = s.operation_counts(&sc).await.expect("counts");
    assert_eq!(
        counts,
        BTreeMap::from([("a".to_owned(), 5), ("b".to_owned(), 1)])
    );
    let c = RegistrationCommit {
        record: None,
        operation: operation("op-1", "d", T0),
        meter: Some("a"),
    };
    s.commit_registration(&sc, c).await.expect("commit");
    let c = RegistrationCommit {
        record: None,
        operation: operation("op-2", "d", T0),
        meter: None,
    };
    s.commit_registration(&sc, c).await.expect("commit");
    assert_eq!(
        s.operation_counts(&sc).await.expect("counts").get("a"),
        Some(&6)
    );

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (s, sc) = (s.clone(), sc.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    s.meter(&sc, "c", 1).await.expect("meter");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let counts = s.operation_counts(&sc).await.expect("counts");
    assert_eq!(counts.get("c"), Some(&200), "no lost meter update");
    assert_eq!(counts.get("a"), Some(&6));
}

fn counter_of(e: &IndividualEnrollment) -> u64 {
    e.optional_device_information
        .as_ref()
        .and_then(|v| v.get("n"))
        .and_then(Value::as_u64)
        .expect("counter present")
}

fn counter(n: u64, etag: String) -> IndividualEnrollment {
    let mut e = enrollment("counter", "");
    e.etag = Some(Etag::new(etag));
    e.optional_device_information = Some(json!({ "n": n }));
    e
}

/// 50 tasks read the same version of one enrollment and then all compare-and-set it: exactly
/// one wins, the others get `PreconditionFailed`. Then 50 tasks increment it with retries: no
/// increment is lost.
pub async fn concurrent_cas<S: Store>(s: S) {
    const TASKS: usize = 50;
    let s = Arc::new(s);
    let sc = scope("0ne00000001");
    put_e(
        &*s,
        &sc,
        counter(0, "start".into()),
        WriteCondition::MustNotExist,
    )
    .await;

    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (s, sc, barrier) = (s.clone(), sc.clone(), barrier.clone());
            tokio::spawn(async move {
                let e = s
                    .enrollment(&sc, "counter")
                    .await
                    .expect("read")
                    .expect("present");
                let seen = e.etag.clone().expect("etag");
                barrier.wait().await;
                let next = counter(counter_of(&e) + 1, format!("one-{i}"));
                s.put_enrollment(&sc, next, WriteCondition::IfMatch(seen))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => wins += 1,
            Err(StoreError::PreconditionFailed) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(
        wins, 1,
        "all read the same version: exactly one compare-and-set wins"
    );
    let e = s
        .enrollment(&sc, "counter")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(counter_of(&e), 1);

    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (s, sc) = (s.clone(), sc.clone());
            tokio::spawn(async move {
                for attempt in 0..100_000u32 {
                    let e = s
                        .enrollment(&sc, "counter")
                        .await
                        .expect("read")
                        .expect("present");
                    let seen = e.etag.clone().expect("etag");
                    let next = counter(counter_of(&e) + 1, format!("t{i}-{attempt}"));
                    match s
                        .put_enrollment(&sc, next, WriteCondition::IfMatch(seen))
                        .await
                    {
                        Ok(()) => return attempt,
                        Err(StoreError::PreconditionFailed) => tokio::task::yield_now().await,
                        Err(e) => panic!("unexpected error {e:?}"),
                    }
                }
                panic!("task {i} never won");
            })
        })
        .collect();
    let mut retries = 0;
    for t in tasks {
        retries += t.await.expect("task");
    }
    let e = s
        .enrollment(&sc, "counter")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(
        counter_of(&e),
        1 + TASKS as u64,
        "no lost update ({retries} retries)"
    );
}

/// 200 concurrent registration commits (distinct devices, one group) all land: records,
/// operations, index entries and meters.
pub async fn concurrent_commits<S: Store>(s: S) {
    const N: usize = 200;
    let s = Arc::new(s);
    let sc = scope("0ne00000001");
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (s, sc) = (s.clone(), sc.clone());
            tokio::spawn(async move {
                let rid = format!("dev-{i:03}");
                let c = commit(
                    Some(record(&rid, Some("fleet"), "1")),
                    &format!("op-{i}"),
                    &rid,
                    T0,
                );
                s.commit_registration(&sc, c).await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("commit");
    }
    let listed = walk(
        64,
        |r: &RegistrationRecord| r.state.registration_id.key(),
        |after| {
            let (s, sc) = (&s, &sc);
            async move {
                s.list_registrations(sc, "fleet", after.as_deref(), 64)
                    .await
            }
        },
    )
    .await;
    let want: Vec<String> = (0..N).map(|i| format!("dev-{i:03}")).collect();
    assert_eq!(listed, want);
    for i in [0, N / 2, N - 1] {
        assert!(
            s.operation(&sc, &format!("op-{i}"), at(T0))
                .await
                .expect("operation")
                .is_some()
        );
    }
    assert_eq!(
        s.operation_counts(&sc).await.expect("counts").get(METER),
        Some(&(N as u64))
    );
}

/// A twin of at least this many bytes round-trips in [`large_values`].
pub const LARGE_TWIN_BYTES: usize = 90 * 1024;

fn large_twin() -> Value {
    let desired: serde_json::Map<String, Value> = (0..800)
        .map(|i| (format!("property{i:04}"), json!(format!("{i:0>100}"))))
        .collect();
    let twin = json!({"tags": {"site": "plant-7"}, "properties": {"desired": desired}});
    assert!(
        serde_json::to_vec(&twin).expect("encode").len() >= LARGE_TWIN_BYTES,
        "the fixture twin is large enough"
    );
    twin
}

/// A 90 KB initial twin (enrollment and group) and a 90 KB custom payload (registration and
/// operation) round-trip exactly, through point reads and listings.
pub async fn large_values<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let twin: dps_types::InitialTwin = serde_json::from_value(large_twin()).expect("twin");
    let mut e = enrollment("big", "1");
    e.initial_twin = Some(twin.clone());
    put_e(&s, &sc, e.clone(), WriteCondition::MustNotExist).await;
    assert_eq!(get_e(&s, &sc, "big").await.as_ref(), Some(&e));
    assert_eq!(
        s.list_enrollments(&sc, None, 5).await.expect("list").items,
        vec![e.clone()]
    );
    // A compare-and-set on the large record still works.
    let mut e2 = e.clone();
    e2.etag = Some(Etag::new("2"));
    put_e(&s, &sc, e2.clone(), WriteCondition::IfMatch(Etag::new("1"))).await;
    assert_eq!(get_e(&s, &sc, "big").await, Some(e2));

    let mut g = group("big", "1");
    g.initial_twin = Some(twin);
    s.put_group(&sc, g.clone(), WriteCondition::Any)
        .await
        .expect("put_group");
    assert_eq!(s.group(&sc, "big").await.expect("group"), Some(g.clone()));
    assert_eq!(
        s.groups_snapshot(&sc).await.expect("snapshot").to_vec(),
        vec![g]
    );

    let mut r = record("big", Some("big"), "1");
    r.state.payload = Some(large_twin());
    let mut op = operation("op-big", "big", T0);
    op.registration_state = r.state.clone();
    let c = RegistrationCommit {
        record: Some(r.clone()),
        operation: op.clone(),
        meter: None,
    };
    s.commit_registration(&sc, c).await.expect("commit");
    assert_eq!(
        s.registration(&sc, "big").await.expect("registration"),
        Some(r.clone())
    );
    assert_eq!(
        s.operation(&sc, "op-big", at(T0)).await.expect("operation"),
        Some(op)
    );
    assert_eq!(
        s.list_registrations(&sc, "big", None, 5)
            .await
            .expect("list")
            .items,
        vec![r]
    );
}

/// Records with every field set (keys, capabilities, policies, 7-digit timestamps, unknown
/// fields of newer API versions, a group's `registrationIdPattern` extension) come back
/// exactly as written.
pub async fn records_round_trip<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let e: IndividualEnrollment = serde_json::from_value(json!({
        "registrationId": "Full-1",
        "deviceId": "device-1",
        "attestation": {"type": "symmetricKey", "symmetricKey": {
            "primaryKey": "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==",
            "secondaryKey": "dGVzdC1rZXktZ3JvdXAtMS0wMTIzNDU2Nzg5YWJjZGU="}},
        "capabilities": {"iotEdge": true},
        "iotHubHostName": "hub-a.example.net",
        "initialTwin": {"tags": {"a": 1.5, "b": [1, "x", null, {"c": true}]},
                        "properties": {"desired": {"d": {"e": 18446744073709551615u64}}}},
        "etag": "\"e-1\"",
        "provisioningStatus": "disabled",
        "reprovisionPolicy": {"updateHubAssignment": false, "migrateDeviceData": true},
        "createdDateTimeUtc": "2026-11-27T08:02:24.5906160Z",
        "lastUpdatedDateTimeUtc": "2026-11-28T08:02:24.0000001Z",
        "allocationPolicy": "geoLatency",
        "iotHubs": ["hub-a.example.net", "hub-b.example.net"],
        "optionalDeviceInformation": {"model": "ü-ñ-日本", "weight": 0.1},
        "customAllocationDefinition": {"webhookUrl": "https://x.example/alloc?code=s3cr3t",
                                       "apiVersion": "2021-10-01"},
        "someFutureField": {"kept": "verbatim"},
    }))
    .expect("enrollment parses");
    put_e(&s, &sc, e.clone(), WriteCondition::Any).await;
    assert_eq!(get_e(&s, &sc, "full-1").await, Some(e));

    let g: EnrollmentGroup = serde_json::from_value(json!({
        "enrollmentGroupId": "Full-G",
        "attestation": {"type": "symmetricKey", "symmetricKey": {
            "primaryKey": "dGVzdC1rZXktZ3JvdXAtMS0wMTIzNDU2Nzg5YWJjZGU=",
            "secondaryKey": "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg=="}},
        "etag": "g-1",
        "allocationPolicy": "static",
        "iotHubs": ["hub-b.example.net"],
        "createdDateTimeUtc": "2026-11-27T08:02:24.5906160Z",
        "credentialPolicyName": "default",
        "registrationIdPattern": "Line-7-??-*",
    }))
    .expect("group parses");
    assert!(
        g.registration_id_pattern.is_some(),
        "the extension is a typed field"
    );
    s.put_group(&sc, g.clone(), WriteCondition::Any)
        .await
        .expect("put_group");
    assert_eq!(
        s.group(&sc, "full-g").await.expect("group"),
        Some(g.clone())
    );
    assert_eq!(
        s.list_groups(&sc, None, 10).await.expect("list").items,
        vec![g]
    );

    let mut r = record("Full-1", Some("Full-G"), "r-1");
    r.state.created_date_time_utc = Timestamp::parse("2026-11-27T08:02:24.5906160Z");
    r.state.payload = Some(json!({"hello": ["world", 1, 2.25, null]}));
    r.state.status = RegistrationStatus::Failed;
    r.state.error_code = Some(400_209);
    r.state.error_message = Some("custom allocation failed".into());
    let mut op = operation("4.d1a0e5e0a1b2c3d4.5f6e7d8c-9b0a", "Full-1", T0);
    op.registration_state = r.state.clone();
    op.enrollment_group_id = r.enrollment_group_id.clone();
    op.status = RegistrationStatus::Failed;
    let c = RegistrationCommit {
        record: Some(r.clone()),
        operation: op.clone(),
        meter: Some(METER),
    };
    s.commit_registration(&sc, c).await.expect("commit");
    assert_eq!(
        s.registration(&sc, "full-1").await.expect("registration"),
        Some(r)
    );
    assert_eq!(
        s.operation(&sc, op.operation_id.as_str(), at(T0))
            .await
            .expect("operation"),
        Some(op)
    );
}

/// Reads of things that were never written: `None`, empty pages without continuation, an
/// empty snapshot and no counters.
pub async fn missing_reads<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    assert!(get_e(&s, &sc, "nobody").await.is_none());
    assert!(s.group(&sc, "nobody").await.expect("group").is_none());
    assert!(
        s.registration(&sc, "nobody")
            .await
            .expect("registration")
            .is_none()
    );
    assert!(
        s.operation(&sc, "nothing", at(T0))
            .await
            .expect("operation")
            .is_none()
    );
    let p = s.list_enrollments(&sc, None, 10).await.expect("list");
    assert!(p.items.is_empty() && p.next_after.is_none());
    let p = s.list_groups(&sc, Some("x"), 10).await.expect("list");
    assert!(p.items.is_empty() && p.next_after.is_none());
    let p = s
        .list_registrations(&sc, "g", None, 10)
        .await
        .expect("list");
    assert!(p.items.is_empty() && p.next_after.is_none());
    assert!(s.groups_snapshot(&sc).await.expect("snapshot").is_empty());
    assert!(s.operation_counts(&sc).await.expect("counts").is_empty());
}

/// An operation read with a `now` more than `OPERATION_TTL_SECS` after its `created` time is
/// not returned, even though no later commit pruned it; at exactly the TTL it still is, and a
/// `now` before that sees it again (nothing was deleted by the read).
pub async fn operation_expires_by_time<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let ttl = OPERATION_TTL_SECS;
    s.commit_registration(&sc, commit(None, "op-old", "d-1", T0))
        .await
        .expect("commit");
    let read = |now: i64| {
        let (s, sc) = (&s, &sc);
        async move { s.operation(sc, "op-old", at(now)).await.expect("operation") }
    };
    assert!(read(T0).await.is_some());
    assert!(read(T0 + ttl).await.is_some(), "exactly one TTL old");
    assert!(read(T0 + ttl + 1).await.is_none(), "expired by time");
    assert!(read(T0 + 10 * ttl).await.is_none());
    assert_eq!(
        read(T0 + 1).await,
        Some(operation("op-old", "d-1", T0)),
        "a read does not delete"
    );
}

/// CA certificates follow the etag rules of every record: create-only refuses an existing
/// name (whatever its spelling) with `Conflict`; `IfMatch` replaces only on a matching etag
/// (stale or missing: `PreconditionFailed`); `Any` upserts; deletes honour their condition;
/// keys are case-folded while the stored name keeps its spelling; the record round-trips.
pub async fn certificates_cas<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let key = CaCertificate::name_key("Root-CA");
    s.put_certificate(
        &sc,
        certificate("Root-CA", "1"),
        WriteCondition::MustNotExist,
    )
    .await
    .expect("create");
    assert_eq!(
        s.certificate(&sc, &key).await.expect("read"),
        Some(certificate("Root-CA", "1"))
    );
    assert_err(
        s.put_certificate(
            &sc,
            certificate("ROOT-ca", "2"),
            WriteCondition::MustNotExist,
        )
        .await,
        "Conflict",
    );
    assert_err(
        s.put_certificate(
            &sc,
            certificate("Root-CA", "2"),
            WriteCondition::IfMatch(Etag::new("0")),
        )
        .await,
        "PreconditionFailed",
    );
    assert_err(
        s.put_certificate(
            &sc,
            certificate("Other", "1"),
            WriteCondition::IfMatch(Etag::new("1")),
        )
        .await,
        "PreconditionFailed",
    );
    assert!(s.certificate(&sc, "other").await.expect("read").is_none());
    let mut verified = certificate("Root-CA", "2");
    verified.properties.is_verified = true;
    verified.properties.updated = Some(at(T0 + 60));
    s.put_certificate(
        &sc,
        verified.clone(),
        WriteCondition::IfMatch(Etag::new("1")),
    )
    .await
    .expect("if-match update");
    let got = s
        .certificate(&sc, &key)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(got, verified);
    assert!(got.properties.is_verified);
    assert_eq!(got.name, "Root-CA", "the stored spelling is kept");
    assert!(
        s.certificate(&scope("0ne00000002"), &key)
            .await
            .expect("read")
            .is_none(),
        "scopes are isolated"
    );
    s.put_certificate(&sc, certificate("Second", "1"), WriteCondition::Any)
        .await
        .expect("upsert creates");
    s.put_certificate(&sc, certificate("Second", "5"), WriteCondition::Any)
        .await
        .expect("upsert replaces");
    assert_err(
        s.delete_certificate(&sc, &key, DeleteCondition::IfMatch(Etag::new("1")))
            .await,
        "PreconditionFailed",
    );
    assert!(s.certificate(&sc, &key).await.expect("read").is_some());
    s.delete_certificate(&sc, &key, DeleteCondition::IfMatch(Etag::new("2")))
        .await
        .expect("delete");
    assert!(s.certificate(&sc, &key).await.expect("read").is_none());
    assert_err(
        s.delete_certificate(&sc, &key, DeleteCondition::Any).await,
        "NotFound",
    );
    s.delete_certificate(&sc, "second", DeleteCondition::Any)
        .await
        .expect("delete any");
    assert!(
        s.list_certificates(&sc, None, 10)
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

/// CA certificates list in key order, a page at a time, with `next_after` only when more
/// follow, and only the scope's own.
pub async fn certificates_listing<S: Store>(s: S) {
    let sc = scope("0ne00000001");
    let other = scope("0ne000000010");
    for i in (0..25).rev() {
        s.put_certificate(
            &sc,
            certificate(&format!("CA-{i:02}"), "1"),
            WriteCondition::Any,
        )
        .await
        .expect("put");
    }
    s.put_certificate(&other, certificate("CA-99", "1"), WriteCondition::Any)
        .await
        .expect("put");
    let keys = walk(
        10,
        |c: &CaCertificate| c.key(),
        |after| {
            let (s, sc) = (&s, &sc);
            async move { s.list_certificates(sc, after.as_deref(), 10).await }
        },
    )
    .await;
    let want: Vec<String> = (0..25).map(|i| format!("ca-{i:02}")).collect();
    assert_eq!(keys, want);
    let p = s.list_certificates(&sc, None, 25).await.expect("list");
    assert_eq!(p.items.len(), 25);
    assert_eq!(p.next_after, None, "nothing follows an exact last page");
    let p = s.list_certificates(&other, None, 10).await.expect("list");
    assert_eq!(p.items, vec![certificate("CA-99", "1")]);
}

fn hub_identity(hub: &str, device_id: &str, writes: u64) -> HubIdentity {
    serde_json::from_value(json!({
        "hub": hub,
        "deviceId": device_id,
        "registrationId": "reg-1",
        "authKind": "sas",
        "capabilities": {"iotEdge": writes.is_multiple_of(2)},
        "twin": {"tags": {"n": writes}, "properties": {"desired": {"w": writes}}},
        "writes": writes,
    }))
    .expect("valid hub identity")
}

/// A hub identity is created or replaced by a put, read back exactly under any case of the hub
/// name (device IDs stay case-sensitive), and deleted once; a second delete is `NotFound`.
pub async fn hub_identities_upsert<S: Store>(s: S) {
    assert!(
        s.hub_identity("hub-a.example.net", "dev")
            .await
            .expect("read")
            .is_none()
    );
    s.put_hub_identity(hub_identity("Hub-A.example.net", "dev", 1))
        .await
        .expect("create");
    s.put_hub_identity(hub_identity("hub-a.example.net", "Dev", 7))
        .await
        .expect("create another device");
    s.put_hub_identity(hub_identity("hub-a.example.net", "dev", 2))
        .await
        .expect("replace");
    let got = s
        .hub_identity("HUB-A.example.NET", "dev")
        .await
        .expect("read");
    assert_eq!(got, Some(hub_identity("hub-a.example.net", "dev", 2)));
    let other = s
        .hub_identity("hub-a.example.net", "Dev")
        .await
        .expect("read");
    assert_eq!(other, Some(hub_identity("hub-a.example.net", "Dev", 7)));
    assert!(
        s.hub_identity("hub-b.example.net", "dev")
            .await
            .expect("read")
            .is_none()
    );
    s.delete_hub_identity("HUB-A.example.net", "dev")
        .await
        .expect("delete");
    assert!(
        s.hub_identity("hub-a.example.net", "dev")
            .await
            .expect("read")
            .is_none()
    );
    assert_err(
        s.delete_hub_identity("hub-a.example.net", "dev").await,
        "NotFound",
    );
    assert!(
        s.hub_identity("hub-a.example.net", "Dev")
            .await
            .expect("read")
            .is_some()
    );
}

/// Every hub identity lists in (hub, device ID) order, a page at a time, with `next_after`
/// (the last item's [`HubIdentity::cursor`]) only when more follow.
pub async fn hub_identities_listing<S: Store>(s: S) {
    let mut want = Vec::new();
    for hub in ["hub1.example.net", "hub2.example.net", "hub3.example.net"] {
        for i in (0..9).rev() {
            s.put_hub_identity(hub_identity(hub, &format!("d{i}"), i))
                .await
                .expect("put");
        }
        want.extend((0..9).map(|i| format!("{hub}/d{i}")));
    }
    let keys = walk(10, HubIdentity::cursor, |after| {
        let s = &s;
        async move { s.list_hub_identities(after.as_deref(), 10).await }
    })
    .await;
    assert_eq!(keys, want);
    let p = s.list_hub_identities(None, 27).await.expect("list");
    assert_eq!(p.items.len(), 27);
    assert_eq!(p.next_after, None, "nothing follows an exact last page");
    assert_eq!(p.items[9], hub_identity("hub2.example.net", "d0", 0));
}
