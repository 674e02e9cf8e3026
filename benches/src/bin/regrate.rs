//! Registrations per second through dps-service (no network), for each storage backend in one
//! run, so the backends are compared on the same machine at the same moment:
//!
//! ```text
//! cargo run --release -p dps-benches --bin regrate -- --count 20000 --concurrency 64
//! DPS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --release -p dps-benches --bin regrate
//! ```
//!
//! Each registration is a group member registering for the first time (SAS verification, key
//! derivation, allocation, the hub write, the durable commit of record + operation + meter).

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use dps_connect::InProcessHubRegistry;
use dps_service::{DeviceCredential, RegisterRequest, Service};
use dps_store::{MemoryStore, Store};
use dps_testkit::{
    FakeClock, GROUP_KEY, SCOPE, SERVICE_HOST, SeqEntropy, fixture_scope, group_device_token,
};
use dps_types::{EnrollmentGroup, RegistrationStatus};

#[derive(Parser)]
struct Args {
    /// Registrations per backend.
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Concurrent devices.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// Registration committers of the PostgreSQL store (group commit).
    #[arg(long, default_value_t = 4)]
    pg_committers: usize,
    /// PostgreSQL URL (optional).
    #[arg(long, env = "DPS_TEST_DATABASE_URL")]
    database_url: Option<String>,
}

async fn rate<S: Store + Clone>(name: &str, store: S, args: &Args) -> Result<f64> {
    let svc = Service::builder(store, InProcessHubRegistry::default())
        .scope(fixture_scope(SCOPE, SERVICE_HOST))
        .clock(FakeClock::at_unix(1_800_000_000))
        .entropy(SeqEntropy::default())
        .build();
    let group: serde_json::Value = serde_json::json!({
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}}
    });
    svc.admin_for_scope(SCOPE)?
        .put::<EnrollmentGroup>("rate-group", group, None)
        .await?;
    let per = args.count.div_ceil(args.concurrency);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let rid = format!("rate-{w}-{i}");
                let token = group_device_token(SCOPE, &rid, GROUP_KEY, 4_000_000_000);
                let op = svc
                    .register(RegisterRequest {
                        id_scope: SCOPE,
                        registration_id: &rid,
                        credential: DeviceCredential::Sas(&token),
                        payload: None,
                        legacy_api: false,
                        source: None,
                    })
                    .await?;
                if op.status != RegistrationStatus::Assigned {
                    return Err(anyhow::anyhow!("{rid}: {:?}", op.status));
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await.context("task")??;
    }
    let r = (per * args.concurrency) as f64 / started.elapsed().as_secs_f64();
    println!("{name:<10} {r:>10.0} registrations/s");
    Ok(r)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "{} registrations per backend, {} concurrent, through dps-service:",
        args.count, args.concurrency
    );
    let mem = rate("memory", MemoryStore::new(), &args).await?;
    let dir = std::env::temp_dir().join(format!("dps-regrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for quick_repair in [true, false] {
        let mut options = dps_store_redb::RedbOptions::default();
        options.quick_repair = quick_repair;
        let path = dir.join(format!("dps-{quick_repair}.redb"));
        let store = dps_store_redb::RedbStore::open_with(&path, options)?;
        let name = if quick_repair {
            "embedded"
        } else {
            "embedded-no-qr"
        };
        let r = rate(name, store.clone(), &args).await?;
        let w = store.writer_stats();
        println!(
            "{:<10} {} transactions, {:.1} writes each (largest {}), {:.0} bytes on disk per registration",
            "",
            w.transactions,
            w.writes as f64 / w.transactions.max(1) as f64,
            w.largest_batch,
            std::fs::metadata(&path)?.len() as f64 / args.count as f64
        );
        println!("{name} / memory = {:.2}", r / mem);
    }
    std::fs::remove_dir_all(&dir)?;
    if let Some(url) = &args.database_url {
        // Group commit as configured, then one registration per transaction (batches of one on
        // as many committers as connections) as the same-run baseline.
        let rows = [
            ("postgres", args.pg_committers, 256),
            ("pg-unbatched", 32, 1),
        ];
        for (name, committers, max_batch) in rows {
            let mut cfg = dps_store_pg::PgConfig::new(url.clone());
            cfg.schema = format!("dps_regrate_{}_{max_batch}", std::process::id());
            cfg.max_connections = 32;
            cfg.committers = committers;
            cfg.max_batch = max_batch;
            let pg = dps_store_pg::PgStore::connect(&cfg).await?;
            let r = rate(name, pg.clone(), &args).await;
            pg.drop_schema().await?;
            let r = r?;
            let c = pg.commit_stats();
            println!(
                "{:<10} {committers} committers: {} batches, {:.1} commits each (largest {}), {} replayed one by one",
                "",
                c.batches,
                c.commits as f64 / c.batches.max(1) as f64,
                c.largest_batch,
                c.replayed_batches
            );
            println!("{name} / memory = {:.2}", r / mem);
        }
    }
    Ok(())
}
