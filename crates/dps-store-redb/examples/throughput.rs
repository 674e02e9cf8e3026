//! Quick numbers for the embedded store, in one run: concurrent `commit_registration` calls per
//! second on the memory store and on redb (with and without quick-repair), the latency of one
//! lone durable commit, and point reads inline vs on tokio's blocking pool.
//!
//! ```sh
//! cargo run --release -p dps-store-redb --example throughput -- [commits] [concurrency]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_store::{MemoryStore, RegistrationCommit, Store};
use dps_store_redb::{ReadMode, RedbOptions, RedbStore};
use dps_types::{
    AttestationKind, DeviceRegistrationState, EnrollmentGroupId, Etag, HubHostName, IdScope,
    Operation, OperationId, RegistrationId, RegistrationRecord, RegistrationStatus, Timestamp,
};

fn commit(i: usize) -> RegistrationCommit {
    let rid = RegistrationId::new(&format!("device-{i:07}")).expect("valid id");
    let now = Timestamp::from_unix_nanos(1_800_000_000_000_000_000).expect("valid time");
    let state = DeviceRegistrationState {
        registration_id: rid.clone(),
        created_date_time_utc: Some(now),
        assigned_hub: HubHostName::new("hub-a.example.net").ok(),
        device_id: Some(rid.to_string()),
        status: RegistrationStatus::Assigned,
        substatus: None,
        error_code: None,
        error_message: None,
        last_updated_date_time_utc: Some(now),
        etag: Some(Etag::new(format!("e{i}"))),
        payload: None,
    };
    RegistrationCommit {
        record: Some(RegistrationRecord {
            state: state.clone(),
            enrollment_group_id: EnrollmentGroupId::new("fleet").ok(),
            attestation: AttestationKind::SymmetricKey,
            initial_hub: HubHostName::new("hub-a.example.net").ok(),
        }),
        operation: Operation {
            operation_id: OperationId::new(&format!("op-{i}")).expect("valid id"),
            registration_id: rid,
            status: RegistrationStatus::Assigned,
            registration_state: state,
            enrollment_group_id: None,
            attestation: AttestationKind::SymmetricKey,
            created: now,
        },
        meter: Some("DeviceRegistration"),
    }
}

/// CPU time (user + system) this process has used, from `/proc/self/stat` (Linux; zero
/// elsewhere). Wall-clock rates depend on what else runs on the machine; CPU per operation
/// much less so.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are the 12th and
            // 13th of them.
            let rest = s.rsplit_once(") ")?.1.to_owned();
            let f: Vec<u64> = rest
                .split(' ')
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            Some(f.iter().sum::<u64>())
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// `n` commits from `concurrency` tasks; returns commits per second.
async fn commits<S: Store>(store: Arc<S>, n: usize, concurrency: usize) -> f64 {
    let scope = IdScope::new("0ne00000001").expect("valid scope");
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (store, scope) = (store.clone(), scope.clone());
            tokio::spawn(async move {
                for i in (t..n).step_by(concurrency) {
                    store
                        .commit_registration(&scope, commit(i))
                        .await
                        .expect("commit");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `n` point reads of existing records from `concurrency` tasks; returns reads per second.
async fn reads<S: Store>(store: Arc<S>, n: usize, existing: usize, concurrency: usize) -> f64 {
    let scope = IdScope::new("0ne00000001").expect("valid scope");
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (store, scope) = (store.clone(), scope.clone());
            tokio::spawn(async move {
                for i in (t..n).step_by(concurrency) {
                    let key = format!("device-{:07}", (i * 7919) % existing);
                    let r = store.registration(&scope, &key).await.expect("read");
                    assert!(r.is_some());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn per_op(cpu: Duration, n: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / n as f64
}

fn redb(dir: &std::path::Path, name: &str, quick_repair: bool, mode: ReadMode) -> Arc<RedbStore> {
    let mut o = RedbOptions::default();
    o.quick_repair = quick_repair;
    o.read_mode = mode;
    Arc::new(RedbStore::open_with(dir.join(name), o).expect("open"))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let dir = std::env::temp_dir().join(format!("dps-redb-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("{n} commit_registration calls, {concurrency} concurrent tasks");

    let mem = Arc::new(MemoryStore::new());
    let cpu = cpu_time();
    let rate = commits(mem, n, concurrency).await;
    println!(
        "memory                      {rate:>10.0} commits/s  cpu {:>6.1} us/commit",
        per_op(cpu_time() - cpu, n)
    );

    for quick_repair in [true, false] {
        let s = redb(
            &dir,
            &format!("c-{quick_repair}.redb"),
            quick_repair,
            ReadMode::Mixed,
        );
        let cpu = cpu_time();
        let rate = commits(s.clone(), n, concurrency).await;
        let cpu = cpu_time() - cpu;
        let st = s.writer_stats();
        println!(
            "redb quick_repair={quick_repair:<5}     {rate:>10.0} commits/s  cpu {:>6.1} us/commit  ({} transactions, {:.1} writes each, largest {})",
            per_op(cpu, n),
            st.transactions,
            st.writes as f64 / st.transactions as f64,
            st.largest_batch
        );
    }

    for quick_repair in [true, false] {
        let s = redb(
            &dir,
            &format!("l-{quick_repair}.redb"),
            quick_repair,
            ReadMode::Mixed,
        );
        let k = 50;
        let start = Instant::now();
        commits(s, k, 1).await;
        let each: Duration = start.elapsed() / k as u32;
        println!("redb quick_repair={quick_repair:<5} one lone commit: {each:?}");
    }

    let reads_n = n * 5;
    let mem = Arc::new(MemoryStore::new());
    commits(mem.clone(), n, concurrency).await;
    let cpu = cpu_time();
    let rate = reads(mem, reads_n, n, 64).await;
    println!(
        "memory point reads          {rate:>10.0} reads/s    cpu {:>6.1} us/read",
        per_op(cpu_time() - cpu, reads_n)
    );
    for mode in [ReadMode::Inline, ReadMode::Blocking] {
        let s = redb(&dir, &format!("r-{mode:?}.redb"), true, mode);
        commits(s.clone(), n, concurrency).await;
        let cpu = cpu_time();
        let rate = reads(s, reads_n, n, 64).await;
        println!(
            "redb point reads {:<10} {rate:>10.0} reads/s    cpu {:>6.1} us/read",
            format!("{mode:?}"),
            per_op(cpu_time() - cpu, reads_n)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
