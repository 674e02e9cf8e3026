//! Backend-specific unit tests: schema versioning, corrupt data, injected I/O failures and the
//! writer's in-batch ordering. The shared behaviour is the conformance suite's job
//! (`dps-testkit/tests/conformance_redb.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dps_store::{Store, StoreError, WriteCondition};
use dps_types::{Etag, IdScope, IndividualEnrollment};
use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, StorageBackend};

use super::*;

fn scope() -> IdScope {
    IdScope::new("0ne00000001").unwrap()
}

fn enrollment(id: &str, etag: &str) -> IndividualEnrollment {
    let mut e: IndividualEnrollment = serde_json::from_str(&format!(
        r#"{{"registrationId":"{id}","attestation":{{"type":"symmetricKey"}}}}"#
    ))
    .unwrap();
    e.etag = Some(Etag::new(etag));
    e
}

fn temp_path(name: &str) -> (PathBuf, impl Drop) {
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = std::env::temp_dir().join(format!(
        "dps-store-redb-{}-{name}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    (dir.join("store.redb"), Cleanup(dir))
}

fn source_error(e: &StoreError) -> Option<&Error> {
    std::error::Error::source(e).and_then(|s| s.downcast_ref::<Error>())
}

#[test]
fn a_new_file_gets_the_current_format_and_every_table() {
    let (path, _cleanup) = temp_path("new");
    drop(RedbStore::open(&path).unwrap());
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(schema::META).unwrap();
    assert_eq!(
        meta.get(schema::FORMAT_KEY).unwrap().map(|v| v.value()),
        Some(schema::FORMAT_VERSION)
    );
    let mut names: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| redb::TableHandle::name(&t).to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "certificates",
            "enrollments",
            "groups",
            "hub_identities",
            "meta",
            "meters",
            "operations",
            "operations_by_created",
            "registrations",
            "registrations_by_group"
        ]
    );
}

#[test]
fn a_version_1_file_is_upgraded_and_keeps_its_data() {
    let (path, _cleanup) = temp_path("v1");
    let sc = IdScope::new("0ne00000001").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    {
        let s = RedbStore::open(&path).unwrap();
        rt.block_on(s.put_enrollment(&sc, enrollment("dev-1", "1"), WriteCondition::MustNotExist))
            .unwrap();
    }
    // Make it look like a version-1 file: no certificates or hub identities table, version 1.
    {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(schema::CERTIFICATES).unwrap());
        assert!(txn.delete_table(schema::HUB_IDENTITIES).unwrap());
        txn.open_table(schema::META)
            .unwrap()
            .insert(schema::FORMAT_KEY, 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    assert!(rt.block_on(s.enrollment(&sc, "dev-1")).unwrap().is_some());
    let page = rt.block_on(s.list_certificates(&sc, None, 10)).unwrap();
    assert!(page.items.is_empty());
    drop(s);
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(schema::META).unwrap();
    assert_eq!(
        meta.get(schema::FORMAT_KEY).unwrap().map(|v| v.value()),
        Some(schema::FORMAT_VERSION)
    );
}

#[test]
fn a_version_2_file_gains_hub_identities_and_keeps_its_data() {
    let (path, _cleanup) = temp_path("v2");
    let sc = IdScope::new("0ne00000001").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    {
        let s = RedbStore::open(&path).unwrap();
        rt.block_on(s.put_enrollment(&sc, enrollment("dev-1", "1"), WriteCondition::MustNotExist))
            .unwrap();
    }
    {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(schema::HUB_IDENTITIES).unwrap());
        txn.open_table(schema::META)
            .unwrap()
            .insert(schema::FORMAT_KEY, 2)
            .unwrap();
        txn.commit().unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    assert!(rt.block_on(s.enrollment(&sc, "dev-1")).unwrap().is_some());
    let page = rt.block_on(s.list_hub_identities(None, 10)).unwrap();
    assert!(page.items.is_empty());
    let id: dps_types::HubIdentity = serde_json::from_str(
        r#"{"hub":"h.example.net","deviceId":"d","registrationId":"d","authKind":"sas"}"#,
    )
    .unwrap();
    rt.block_on(s.put_hub_identity(id.clone())).unwrap();
    assert_eq!(
        rt.block_on(s.hub_identity("H.example.net", "d")).unwrap(),
        Some(id)
    );
}

#[test]
fn a_newer_format_is_refused_and_left_alone() {
    let (path, _cleanup) = temp_path("newer");
    drop(RedbStore::open(&path).unwrap());
    {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(schema::META)
            .unwrap()
            .insert(schema::FORMAT_KEY, schema::FORMAT_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(matches!(
        source_error(&err),
        Some(Error::NewerFormat { found, supported })
            if *found == schema::FORMAT_VERSION + 1 && *supported == schema::FORMAT_VERSION
    ));
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(schema::META).unwrap();
    assert_eq!(
        meta.get(schema::FORMAT_KEY).unwrap().map(|v| v.value()),
        Some(schema::FORMAT_VERSION + 1),
        "the refused file is not rewritten"
    );
}

#[test]
fn undecodable_records_and_dangling_index_entries_are_backend_errors() {
    let (path, _cleanup) = temp_path("corrupt");
    drop(RedbStore::open(&path).unwrap());
    {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(schema::ENROLLMENTS)
            .unwrap()
            .insert(("0ne00000001", "bad"), (Some("1"), b"{not json".as_slice()))
            .unwrap();
        txn.open_table(schema::REGISTRATIONS_BY_GROUP)
            .unwrap()
            .insert(("0ne00000001", "g", "ghost"), ())
            .unwrap();
        txn.commit().unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    let sc = scope();
    let err = block_on(s.enrollment(&sc, "bad")).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)));
    assert!(matches!(
        source_error(&err),
        Some(Error::Corrupt { table: "enrollments", key, source: Some(_) }) if key == "bad"
    ));
    assert!(matches!(
        block_on(s.list_enrollments(&sc, None, 10)),
        Err(StoreError::Backend(_))
    ));
    let err = block_on(s.list_registrations(&sc, "g", None, 10)).unwrap_err();
    assert!(matches!(
        source_error(&err),
        Some(Error::Corrupt { source: None, .. })
    ));
    // Other records are unaffected; the bad one can be overwritten (its etag is readable).
    block_on(s.put_enrollment(
        &sc,
        enrollment("bad", "2"),
        WriteCondition::IfMatch(Etag::new("1")),
    ))
    .unwrap();
    assert!(block_on(s.enrollment(&sc, "bad")).unwrap().is_some());
}

/// An in-memory redb backend whose `sync_data` fails on demand.
#[derive(Debug, Default)]
struct FlakyBackend {
    inner: InMemoryBackend,
    fail: Arc<AtomicBool>,
}

impl StorageBackend for FlakyBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write(offset, data)
    }
}

fn flaky_store() -> (RedbStore, Arc<AtomicBool>) {
    let backend = FlakyBackend::default();
    let fail = backend.fail.clone();
    let db = Database::builder().create_with_backend(backend).unwrap();
    let store = RedbStore::start(db, PathBuf::from("memory"), RedbOptions::default()).unwrap();
    (store, fail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_failures_are_unavailable_and_answer_every_writer() {
    let (s, fail) = flaky_store();
    let sc = scope();
    s.put_enrollment(&sc, enrollment("a", "1"), WriteCondition::Any)
        .await
        .unwrap();
    fail.store(true, Ordering::SeqCst);
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (s, sc) = (s.clone(), sc.clone());
            tokio::spawn(async move {
                s.put_enrollment(&sc, enrollment(&format!("d{i}"), "1"), WriteCondition::Any)
                    .await
            })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.downcast_ref::<redb::Error>().is_some(), "{source:?}");
    }
    // The write acknowledged before the failure is still readable.
    assert!(s.enrollment(&sc, "a").await.unwrap().is_some());
}

#[test]
fn writes_in_one_batch_see_each_other_in_order() {
    use writer::{DocTable, WriteOp};
    let db = Database::builder()
        .create_with_backend(InMemoryBackend::new())
        .unwrap();
    schema::prepare(&db).unwrap();
    let put = |etag: &str, cond| WriteOp::PutDoc {
        table: DocTable::Enrollments,
        scope: "s".into(),
        key: "k".into(),
        etag: Some(etag.into()),
        json: serde_json::to_vec(&enrollment("k", etag)).unwrap(),
        cond,
    };
    let ops = [
        put("1", WriteCondition::MustNotExist),
        put("x", WriteCondition::MustNotExist),
        put("2", WriteCondition::IfMatch(Etag::new("1"))),
        put("y", WriteCondition::IfMatch(Etag::new("1"))),
        WriteOp::DeleteDoc {
            table: DocTable::Enrollments,
            scope: "s".into(),
            key: "k".into(),
            cond: dps_store::DeleteCondition::IfMatch(Etag::new("2")),
        },
        put("3", WriteCondition::IfMatch(Etag::new("2"))),
    ];
    let refs: Vec<&WriteOp> = ops.iter().collect();
    let outcomes = writer::commit(&db, &refs, false).unwrap();
    let kinds: Vec<&str> = outcomes
        .iter()
        .map(|o| match o {
            Ok(()) => "ok",
            Err(StoreError::Conflict) => "conflict",
            Err(StoreError::PreconditionFailed) => "precondition",
            Err(_) => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["ok", "conflict", "ok", "precondition", "ok", "precondition"]
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    dps_store::block_on_ready(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_identity_is_durable_once_a_later_write_is() {
    let (path, _cleanup) = temp_path("queued-identity");
    {
        let store = RedbStore::open(&path).unwrap();
        for i in 0..50 {
            let id: dps_types::HubIdentity = serde_json::from_value(serde_json::json!({
                "hub": "hub-a.example.net",
                "deviceId": format!("dev-{i}"),
                "registrationId": format!("dev-{i}"),
                "authKind": "sas",
                "writes": 1,
            }))
            .unwrap();
            store.queue_hub_identity(id).await.unwrap();
        }
        // The awaited write after them: once it is acknowledged, so are they.
        store
            .put_enrollment(&scope(), enrollment("after", "e1"), WriteCondition::Any)
            .await
            .unwrap();
        drop(store);
    }
    let store = RedbStore::open(&path).unwrap();
    for i in 0..50 {
        let id = store
            .hub_identity("hub-a.example.net", &format!("dev-{i}"))
            .await
            .unwrap();
        assert_eq!(
            id.map(|id| id.registration_id.to_string()),
            Some(format!("dev-{i}"))
        );
    }
}
