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
