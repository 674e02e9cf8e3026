//! Scale run for the storage backends (not part of the test suite): inserts N individual
//! enrollments and N registration records through the `Store` trait, then measures lookups,
//! resident memory and size on disk.
//!
//! ```text
//! cargo run --release -p dps-benches --bin scale -- --backend memory --count 1000000
//! cargo run --release -p dps-benches --bin scale -- --backend embedded --count 1000000
//! cargo run --release -p dps-benches --bin scale -- --backend postgres \
//!     --database-url postgres://postgres@127.0.0.1:5432/postgres --count 1000000
//! ```
//!
//! Operations are written with one registration per simulated second on one clock shared by all
//! writers (the n-th commit to start is at second n), so the store keeps only the last hour of
//! them and each commit prunes about one expired operation, as a steady-state service would.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use dps_store::{MemoryStore, RegistrationCommit, Store, WriteCondition};
use dps_store_pg::{PgConfig, PgStore};
use dps_types::{
    AttestationKind, DeviceRegistrationState, Etag, HubHostName, IdScope, IndividualEnrollment,
    Operation, OperationId, RegistrationId, RegistrationRecord, RegistrationStatus, Substatus,
    Timestamp,
};

#[derive(Parser)]
struct Args {
    /// memory | embedded | postgres
    #[arg(long, default_value = "memory")]
    backend: String,
    /// Enrollments and registration records to insert (each).
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 32)]
    concurrency: u64,
    /// Lookups to time.
    #[arg(long, default_value_t = 20_000)]
    lookups: u64,
    /// Registration committers (backend postgres; group commit).
    #[arg(long, default_value_t = 4)]
    pg_committers: usize,
    /// Vacuum the operations table this often in seconds while records are inserted, if the
    /// server runs with autovacuum off (backend postgres; 0: never).
    #[arg(long, default_value_t = 60)]
    vacuum_secs: u64,
    /// PostgreSQL URL (backend postgres).
    #[arg(long, env = "DPS_TEST_DATABASE_URL")]
    database_url: Option<String>,
}

fn rid(i: u64) -> RegistrationId {
    // 36 characters, like a GUID-named device.
    RegistrationId::new(&format!("{:08x}-0000-4000-8000-{:012x}", i >> 16, i))
        .unwrap_or_else(|_| unreachable!())
}

fn enrollment(i: u64) -> IndividualEnrollment {
    let mut e: IndividualEnrollment = serde_json::from_value(serde_json::json!({
        "registrationId": rid(i).as_str(),
        "attestation": {"type": "symmetricKey", "symmetricKey": {
            "primaryKey": "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==",
            "secondaryKey": "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg=="}}
    }))
    .unwrap_or_else(|_| unreachable!());
    e.etag = Some(Etag::new(format!("{i:032x}")));
    e
}

/// Commit `i` (record and operation of device `i`) at simulated second `secs`.
fn commit(i: u64, secs: i64) -> RegistrationCommit {
    let t = Timestamp::from_unix_nanos(i128::from(secs) * 1_000_000_000)
        .unwrap_or_else(|| unreachable!());
    let state = DeviceRegistrationState {
        registration_id: rid(i),
        created_date_time_utc: Some(t),
        assigned_hub: HubHostName::new("hub-a.example.net").ok(),
        device_id: Some(rid(i).to_string()),
        status: RegistrationStatus::Assigned,
        substatus: Some(Substatus::InitialAssignment),
        error_code: None,
        error_message: None,
        last_updated_date_time_utc: Some(t),
        etag: Some(Etag::new(format!("{i:032x}"))),
        payload: None,
    };
    RegistrationCommit {
        record: Some(RegistrationRecord {
            state: state.clone(),
            enrollment_group_id: None,
            attestation: AttestationKind::SymmetricKey,
            initial_hub: state.assigned_hub.clone(),
        }),
        operation: Operation {
            operation_id: OperationId::new(&format!("1.{i:016x}"))
                .unwrap_or_else(|_| unreachable!()),
            registration_id: rid(i),
            status: RegistrationStatus::Assigned,
            registration_state: state,
            enrollment_group_id: None,
            attestation: AttestationKind::SymmetricKey,
            created: t,
        },
        meter: Some("deviceRegistration"),
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

async fn insert<S: Store + Clone>(
    store: &S,
    scope: &IdScope,
    args: &Args,
    what: &str,
    registrations: bool,
) -> Result<f64> {
    let started = Instant::now();
    let per = args.count.div_ceil(args.concurrency);
    // The simulated clock all writers share: one registration per second.
    let clock = Arc::new(AtomicI64::new(1_800_000_000));
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let (store, scope, clock) = (store.clone(), scope.clone(), clock.clone());
        let (lo, hi) = (w * per, ((w + 1) * per).min(args.count));
        tasks.push(tokio::spawn(async move {
            for i in lo..hi {
                if registrations {
                    let secs = clock.fetch_add(1, Ordering::Relaxed);
                    store.commit_registration(&scope, commit(i, secs)).await?;
                } else {
                    store
                        .put_enrollment(&scope, enrollment(i), WriteCondition::MustNotExist)
                        .await?;
                }
            }
            Ok::<_, dps_store::StoreError>(())
        }));
    }
    for t in tasks {
        t.await.context("writer task")?.context("store write")?;
    }
    let rate = args.count as f64 / started.elapsed().as_secs_f64();
    println!(
        "{what}: {} inserted in {:.1} s = {rate:.0}/s",
        args.count,
        started.elapsed().as_secs_f64()
    );
    Ok(rate)
}

async fn lookups<S: Store>(store: &S, scope: &IdScope, args: &Args) -> Result<()> {
    let mut enr = Vec::new();
    let mut reg = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..args.lookups {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = rid(x % args.count).key();
        let t = Instant::now();
        if store.enrollment(scope, &key).await?.is_none() {
            bail!("enrollment {key} missing");
        }
        enr.push(t.elapsed());
        let t = Instant::now();
        if store.registration(scope, &key).await?.is_none() {
            bail!("registration {key} missing");
        }
        reg.push(t.elapsed());
    }
    for (what, mut v) in [("enrollment lookup", enr), ("registration lookup", reg)] {
        v.sort();
        let mean = v.iter().sum::<Duration>() / u32::try_from(v.len().max(1)).unwrap_or(1);
        let p99 = v.get(v.len() * 99 / 100).copied().unwrap_or_default();
        println!(
            "{what}: mean {mean:?}, p99 {p99:?} over {} random keys",
            v.len()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let scope = IdScope::new("0neSCALE0001").context("scope")?;
    let rss0 = rss_bytes();
    match args.backend.as_str() {
        "memory" => {
            let s = MemoryStore::new();
            insert(&s, &scope, &args, "enrollments", false).await?;
            insert(&s, &scope, &args, "registration records", true).await?;
            lookups(&s, &scope, &args).await?;
            let rss = rss_bytes();
            println!(
                "resident memory: {} MiB ({:.0} bytes per enrollment + record pair)",
                rss / (1 << 20),
                (rss.saturating_sub(rss0)) as f64 / args.count as f64
            );
        }
        "embedded" => {
            let dir = std::env::temp_dir().join(format!("dps-scale-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("dps.redb");
            let s = dps_store_redb::RedbStore::open(&path)?;
            insert(&s, &scope, &args, "enrollments", false).await?;
            insert(&s, &scope, &args, "registration records", true).await?;
            lookups(&s, &scope, &args).await?;
            println!(
                "on disk: {} MiB",
                std::fs::metadata(&path)?.len() / (1 << 20)
            );
            println!(
                "resident memory of this process: {} MiB",
                rss_bytes() / (1 << 20)
            );
            drop(s);
            std::fs::remove_dir_all(&dir)?;
        }
        "postgres" => {
            let url = args
                .database_url
                .clone()
                .context("--database-url or DPS_TEST_DATABASE_URL")?;
            let mut cfg = PgConfig::new(url);
            cfg.schema = format!("dps_scale_{}", std::process::id());
            // One connection per writer, up to 32 (the server's own limit is 100 by default).
            cfg.max_connections = usize::try_from(args.concurrency.min(32)).unwrap_or(16);
            cfg.committers = args.pg_committers;
            let s = PgStore::connect(&cfg).await?;
            insert(&s, &scope, &args, "enrollments", false).await?;
            // Stand in for autovacuum where the server runs without it (as autovacuum would,
            // clear the expired operations' dead rows about once a minute).
            let vacuums = (args.vacuum_secs > 0 && !s.autovacuum().await?).then(|| {
                let s = s.clone();
                let every = Duration::from_secs(args.vacuum_secs);
                tokio::spawn(async move {
                    let mut n = 0u32;
                    loop {
                        tokio::time::sleep(every).await;
                        if s.vacuum_operations().await.is_ok() {
                            n += 1;
                            println!("vacuumed the operations table ({n})");
                        }
                    }
                })
            });
            let inserted = insert(&s, &scope, &args, "registration records", true).await;
            if let Some(v) = vacuums {
                v.abort();
            }
            inserted?;
            let c = s.commit_stats();
            println!(
                "group commit: {} committers, {} batches of {:.1} commits on average (largest {})",
                cfg.committers,
                c.batches,
                c.commits as f64 / c.batches.max(1) as f64,
                c.largest_batch
            );
            lookups(&s, &scope, &args).await?;
            println!(
                "on disk: {} MiB (tables and indexes)",
                s.disk_bytes().await? / (1 << 20)
            );
            println!(
                "resident memory of this process: {} MiB",
                rss_bytes() / (1 << 20)
            );
            s.drop_schema().await?;
        }
        other => bail!("unknown backend {other:?}"),
    }
    Ok(())
}
