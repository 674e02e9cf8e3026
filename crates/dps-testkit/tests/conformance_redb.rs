//! The store conformance suite on the redb backend (a fresh file per check in a temporary
//! directory), plus what only a durable store must do: survive close and reopen, keep every
//! acknowledged write, batch concurrent writers into few transactions, survive a SIGKILL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dps_store::{DeleteCondition, Store, StoreError, WriteCondition};
use dps_store_redb::{ReadMode, RedbOptions, RedbStore};
use dps_testkit::conformance::{self, METER, T0, commit, enrollment, group, record, scope};

/// A constructor of fresh stores, each in its own file of one temporary directory (removed when
/// the constructor is dropped, at the end of the test).
///
/// The semantic checks put their files on tmpfs (`/dev/shm`) when there is one: the code path
/// is the same (every commit still calls fsync), the fsync is just free, which keeps this
/// suite fast on a loaded two-core machine. The durability tests below use the real disk.
fn redb_stores(options: RedbOptions) -> impl Fn() -> RedbStore {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let n = AtomicUsize::new(0);
    move || {
        let i = n.fetch_add(1, Ordering::Relaxed);
        RedbStore::open_with(dir.path().join(format!("store-{i}.redb")), options.clone())
            .expect("open redb store")
    }
}

dps_testkit::store_conformance!(redb_stores(RedbOptions::default()));

/// The suite again with every read on the blocking pool, and with every read inline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_in_every_read_mode() {
    for mode in [ReadMode::Blocking, ReadMode::Inline] {
        let mut options = RedbOptions::default();
        options.read_mode = mode;
        conformance::run_all(redb_stores(options)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dps.redb");
    let (a, b) = (scope("0ne00000001"), scope("0ne00000002"));
    {
        let s = RedbStore::open(&path).expect("open");
        s.put_enrollment(&a, enrollment("Dev-1", "1"), WriteCondition::MustNotExist)
            .await
            .expect("put");
        s.put_group(&a, group("G-1", "1"), WriteCondition::MustNotExist)
            .await
            .expect("put");
        assert_eq!(s.groups_snapshot(&a).await.expect("snapshot").len(), 1);
        s.commit_registration(
            &a,
            commit(Some(record("dev-1", Some("g-1"), "1")), "op-1", "dev-1", T0),
        )
        .await
        .expect("commit");
        s.meter(&b, "read", 3).await.expect("meter");
    }
    let s = RedbStore::open(&path).expect("reopen");
    let e = s
        .enrollment(&a, "dev-1")
        .await
        .expect("read")
        .expect("enrollment kept");
    assert_eq!(e, enrollment("Dev-1", "1"));
    assert_eq!(
        s.group(&a, "g-1").await.expect("read"),
        Some(group("G-1", "1"))
    );
    assert_eq!(s.groups_snapshot(&a).await.expect("snapshot").len(), 1);
    assert_eq!(
        s.registration(&a, "dev-1").await.expect("read"),
        Some(record("dev-1", Some("g-1"), "1"))
    );
    assert_eq!(
        s.list_registrations(&a, "g-1", None, 10)
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    assert!(
        s.operation(&a, "op-1", conformance::at(T0))
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(
        s.operation_counts(&a).await.expect("counts").get(METER),
        Some(&1)
    );
    assert_eq!(
        s.operation_counts(&b).await.expect("counts").get("read"),
        Some(&3)
    );
    // And it keeps working: etags written before the restart still guard writes.
    assert!(matches!(
        s.put_enrollment(
            &a,
            enrollment("dev-1", "2"),
            WriteCondition::IfMatch(dps_types::Etag::new("0"))
        )
        .await,
        Err(StoreError::PreconditionFailed)
    ));
    s.delete_enrollment(
        &a,
        "dev-1",
        DeleteCondition::IfMatch(dps_types::Etag::new("1")),
    )
    .await
    .expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_are_present_after_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dps.redb");
    let sc = scope("0ne00000001");
    let s = Arc::new(RedbStore::open(&path).expect("open"));
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let (s, sc) = (s.clone(), sc.clone());
            tokio::spawn(async move {
                let rid = format!("dev-{i}");
                s.commit_registration(
                    &sc,
                    commit(Some(record(&rid, None, "1")), &format!("op-{i}"), &rid, T0),
                )
                .await
                .map(|()| i)
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.expect("task").expect("commit"));
    }
    // Dropped right after the last acknowledgement, without any explicit flush or close.
    drop(s);
    let s = RedbStore::open(&path).expect("reopen");
    for i in acked {
        assert!(
            s.registration(&sc, &format!("dev-{i}"))
                .await
                .expect("read")
                .is_some(),
            "acknowledged registration dev-{i} lost"
        );
        assert!(
            s.operation(&sc, &format!("op-{i}"), conformance::at(T0))
                .await
                .expect("read")
                .is_some()
        );
    }
    assert_eq!(
        s.operation_counts(&sc).await.expect("counts").get(METER),
        Some(&300)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_transactions() {
    const N: usize = 200;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Arc::new(RedbStore::open(dir.path().join("dps.redb")).expect("open"));
    let before = s.writer_stats();
    let sc = scope("0ne00000001");
    // Released together, as a burst of devices would arrive.
    let start = Arc::new(tokio::sync::Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (s, sc, start) = (s.clone(), sc.clone(), start.clone());
            tokio::spawn(async move {
                let rid = format!("dev-{i}");
                start.wait().await;
                s.commit_registration(
                    &sc,
                    commit(Some(record(&rid, None, "1")), &format!("op-{i}"), &rid, T0),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("commit");
    }
    let after = s.writer_stats();
    let txns = after.transactions - before.transactions;
    assert_eq!(after.writes - before.writes, N as u64);
    assert!(
        txns <= (N / 10) as u64,
        "{N} concurrent commits took {txns} transactions"
    );
    assert!(
        after.largest_batch >= 10,
        "largest batch {}",
        after.largest_batch
    );
    eprintln!(
        "{N} concurrent commits: {txns} transactions, largest batch {}",
        after.largest_batch
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dps.redb");
    let first = RedbStore::open(&path).expect("open");
    assert!(matches!(
        RedbStore::open(&path),
        Err(StoreError::Unavailable(_))
    ));
    drop(first);
    RedbStore::open(&path).expect("free again once the first store is dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_snapshot_is_cached_between_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = RedbStore::open(dir.path().join("dps.redb")).expect("open");
    let sc = scope("0ne00000001");
    s.put_group(&sc, group("g-1", "1"), WriteCondition::Any)
        .await
        .expect("put");
    let a = s.groups_snapshot(&sc).await.expect("snapshot");
    let b = s.groups_snapshot(&sc).await.expect("snapshot");
    assert!(
        Arc::ptr_eq(&a, &b),
        "no write in between: the same shared snapshot"
    );
    // Writes elsewhere (enrollments, another scope's groups) keep it valid or rebuild it equal.
    s.put_enrollment(&sc, enrollment("d", "1"), WriteCondition::Any)
        .await
        .expect("put");
    assert!(Arc::ptr_eq(
        &a,
        &s.groups_snapshot(&sc).await.expect("snapshot")
    ));
    s.put_group(&sc, group("g-2", "1"), WriteCondition::Any)
        .await
        .expect("put");
    let c = s.groups_snapshot(&sc).await.expect("snapshot");
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(c.len(), 2);
}

/// Writes and reads also work without any async runtime (dps-service is runtime-agnostic):
/// reads then run inline and writes wait on the writer thread.
#[test]
fn works_without_a_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = RedbStore::open(dir.path().join("dps.redb")).expect("open");
    let sc = scope("0ne00000001");
    dps_store::block_on_ready(s.put_enrollment(&sc, enrollment("d", "1"), WriteCondition::Any))
        .expect("put");
    let page = dps_store::block_on_ready(s.list_enrollments(&sc, None, 10)).expect("list");
    assert_eq!(page.items.len(), 1);
}

/// A child process (this test binary again) commits registrations as fast as it can and prints
/// each acknowledged one; the parent kills it with SIGKILL mid-stream, reopens the file and
/// checks every acknowledged registration is there and every record decodes.
#[test]
fn acknowledged_writes_survive_sigkill() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    if let Ok(path) = std::env::var("DPS_REDB_CRASH_CHILD") {
        crash_child(&path);
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dps.redb");
    let exe = std::env::current_exe().expect("test binary");
    for round in 0..3u32 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "acknowledged_writes_survive_sigkill",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("DPS_REDB_CRASH_CHILD", &path)
            .env("DPS_REDB_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut acked = Vec::new();
        // Kill after a different number of acknowledgements each round.
        let kill_after = 150 + 170 * round as usize;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            if let Some(id) = line.strip_prefix("ack ") {
                acked.push(id.to_owned());
                if acked.len() >= kill_after {
                    break;
                }
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        assert!(
            acked.len() >= kill_after,
            "the child stopped early ({} acks)",
            acked.len()
        );

        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let s = RedbStore::open(&path).expect("reopen after SIGKILL");
            let sc = scope("0ne00000001");
            for id in &acked {
                assert!(
                    s.registration(&sc, id).await.expect("read").is_some(),
                    "round {round}: acknowledged {id} lost"
                );
            }
            // Every record present decodes (no torn record).
            let mut after = None;
            loop {
                let p = s
                    .list_registrations(&sc, "fleet", after.as_deref(), 500)
                    .await
                    .expect("every record decodes");
                if p.next_after.is_none() {
                    break;
                }
                after = p.next_after;
            }
        });
    }
}

fn crash_child(path: &str) {
    use std::io::Write;
    let round = std::env::var("DPS_REDB_CRASH_ROUND").unwrap_or_default();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let s = Arc::new(RedbStore::open(path).expect("open"));
        let sc = scope("0ne00000001");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for w in 0..32 {
            let (s, sc, tx) = (s.clone(), sc.clone(), tx.clone());
            let round = round.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let rid = format!("r{round}-w{w}-{i}");
                    let c = commit(
                        Some(record(&rid, Some("fleet"), "1")),
                        &format!("op-{rid}"),
                        &rid,
                        T0,
                    );
                    s.commit_registration(&sc, c).await.expect("commit");
                    if tx.send(rid).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut out = std::io::stdout().lock();
        while let Some(rid) = rx.recv().await {
            let _ = writeln!(out, "ack {rid}");
            let _ = out.flush();
        }
    });
}
