//! The store conformance suite on PostgreSQL, when `DPS_TEST_DATABASE_URL` is set (CI sets it).
//! Every check gets a fresh schema of its own, dropped at the end, so runs never collide.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use dps_store_pg::{PgConfig, PgStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_postgres() {
    let Ok(url) = std::env::var("DPS_TEST_DATABASE_URL") else {
        eprintln!("SKIPPED: DPS_TEST_DATABASE_URL is not set (PostgreSQL conformance)");
        return;
    };
    let created: Mutex<Vec<PgStore>> = Mutex::default();
    let n = AtomicU32::new(0);
    let make = || {
        let mut cfg = PgConfig::new(url.clone());
        cfg.schema = format!(
            "dps_conf_{}_{}",
            std::process::id(),
            n.fetch_add(1, Ordering::SeqCst)
        );
        let store = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(PgStore::connect(&cfg))
        })
        .unwrap();
        created.lock().unwrap().push(store.clone());
        store
    };
    dps_testkit::conformance::run_all(make).await;
    let stores = std::mem::take(&mut *created.lock().unwrap());
    assert!(stores.len() >= 18, "every check ran on its own schema");
    for s in stores {
        assert_eq!(
            s.schema_version().await.unwrap(),
            dps_store_pg::schema::CURRENT
        );
        s.drop_schema().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_database() {
    let Ok(url) = std::env::var("DPS_TEST_DATABASE_URL") else {
        eprintln!("SKIPPED: DPS_TEST_DATABASE_URL is not set (PostgreSQL scale-out)");
        return;
    };
    let mut cfg = PgConfig::new(url);
    cfg.schema = format!("dps_nodes_{}", std::process::id());
    // Two pools = two stateless nodes; both migrate at start, concurrently.
    let (a, b) = tokio::join!(PgStore::connect(&cfg), PgStore::connect(&cfg));
    let (a, b) = (a.unwrap(), b.unwrap());
    let scope = dps_testkit::conformance::scope("0neNODES0001");
    // A group written through node A is seen by node B's (cached) snapshot.
    assert!(
        dps_store::Store::groups_snapshot(&b, &scope)
            .await
            .unwrap()
            .is_empty()
    );
    dps_store::Store::put_group(
        &a,
        &scope,
        dps_testkit::conformance::group("g1", "e1"),
        dps_store::WriteCondition::MustNotExist,
    )
    .await
    .unwrap();
    assert_eq!(
        dps_store::Store::groups_snapshot(&b, &scope)
            .await
            .unwrap()
            .len(),
        1
    );
    // An operation committed on A is polled on B.
    let c = dps_testkit::conformance::commit(None, "op-1", "d1", dps_testkit::conformance::T0);
    dps_store::Store::commit_registration(&a, &scope, c)
        .await
        .unwrap();
    assert!(
        dps_store::Store::operation(
            &b,
            &scope,
            "op-1",
            dps_testkit::conformance::at(dps_testkit::conformance::T0)
        )
        .await
        .unwrap()
        .is_some()
    );
    a.drop_schema().await.unwrap();
}

/// Registration commits queued together are written as one batch, and each caller still gets
/// its own outcome: a commit the database refuses (an etag with a NUL byte, which `TEXT` cannot
/// hold) fails alone, two commits of one registration ID in a batch do not collide, two scopes
/// are metered apart, and a replayed operation (same ID, as after a retried commit) is metered
/// once.
#[tokio::test]
async fn group_commit_answers_each_caller_alone() {
    use dps_store::Store as _;
    use dps_testkit::conformance::{METER, T0, commit, record, scope};
    let Ok(url) = std::env::var("DPS_TEST_DATABASE_URL") else {
        eprintln!("SKIPPED: DPS_TEST_DATABASE_URL is not set (PostgreSQL group commit)");
        return;
    };
    let mut cfg = PgConfig::new(url);
    cfg.schema = format!("dps_batch_{}", std::process::id());
    cfg.committers = 1;
    let s = PgStore::connect(&cfg).await.unwrap();
    let (a, b) = (scope("0neBATCH0001"), scope("0neBATCH0002"));
    let sc = |i: usize| {
        if i.is_multiple_of(2) {
            a.clone()
        } else {
            b.clone()
        }
    };
    const N: usize = 40;
    const BAD: usize = 25;
    // On this single-threaded runtime all 40 tasks queue their commit before the committer
    // runs, so they form one batch. Commits 30..40 re-register devices 0..10.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let (s, sc) = (s.clone(), sc(i));
        tasks.spawn(async move {
            let etag = if i == BAD { "bad\0etag" } else { "1" };
            let rid = format!("dev-{}", i % 30);
            let c = commit(Some(record(&rid, None, etag)), &format!("op-{i}"), &rid, T0);
            (i, s.commit_registration(&sc, c).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, r) = joined.unwrap();
        if i == BAD {
            let e = r.unwrap_err();
            assert!(!e.is_retryable(), "refused for good: {e}");
        } else {
            r.unwrap();
        }
    }
    let stats = s.commit_stats();
    assert_eq!((stats.commits, stats.largest_batch), (N as u64, N as u64));
    assert_eq!(stats.replayed_batches, 1, "the failed batch was replayed");
    for i in 0..N {
        let rid = format!("dev-{}", i % 30);
        let rec = s.registration(&sc(i), &rid).await.unwrap();
        let op = s
            .operation(&sc(i), &format!("op-{i}"), dps_testkit::conformance::at(T0))
            .await
            .unwrap();
        assert_eq!(rec.is_some(), i != BAD, "record of commit {i}");
        assert_eq!(op.is_some(), i != BAD, "operation of commit {i}");
    }
    let count = |c: std::collections::BTreeMap<String, u64>| c.get(METER).copied();
    assert_eq!(count(s.operation_counts(&a).await.unwrap()), Some(20));
    assert_eq!(count(s.operation_counts(&b).await.unwrap()), Some(19));

    let again = commit(Some(record("dev-0", None, "1")), "op-0", "dev-0", T0);
    s.commit_registration(&a, again).await.unwrap();
    assert_eq!(
        count(s.operation_counts(&a).await.unwrap()),
        Some(20),
        "a replayed operation is metered once"
    );
    s.drop_schema().await.unwrap();
}
