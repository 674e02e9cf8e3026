//! Crash safety: dpsd runs under concurrent registration load, is killed with SIGKILL at a
//! random moment, and restarted on the same storage; every registration a device saw
//! acknowledged (`assigned`) must be there, readable, and the group's record listing must hold
//! them all. Run for each durable backend: the embedded store (dpsd's default), and PostgreSQL
//! when `DPS_TEST_DATABASE_URL` is set (the database keeps running; dpsd dies).
//!
//! `DPS_CRASH_CYCLES` sets how many kill/restart cycles one run does (default 2).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dps_client::{
    Credential, FlowConfig, RegisterOptions, ServiceClient, TrustedCa, register_https,
};
use dps_testkit::{GROUP_KEY, OWNER, OWNER_KEY, SCOPE};
use dps_types::{EnrollmentGroup, EnrollmentGroupId, IdScope, RegistrationId, RegistrationStatus};

struct Dpsd {
    child: Child,
    port: u16,
}

fn write_config(dir: &Path, storage: &str) -> PathBuf {
    let cfg = format!(
        r#"
[listen]
https = "127.0.0.1:0"

[storage]
{storage}
data_dir = "{data}"

[service]
retry_after_secs = 0

[[scope]]
id_scope = "{SCOPE}"
service_host_name = "localhost"

[[scope.hub]]
host_name = "hub-a.example.net"

[[scope.hub]]
host_name = "hub-b.example.net"

[[scope.policy]]
name = "{OWNER}"
primary_key = "{OWNER_KEY}"
rights = ["ServiceConfig"]
"#,
        data = dir.join("data").display()
    );
    let path = dir.join("dpsd.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn start(config: &Path) -> Dpsd {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dpsd"))
        .arg("--config")
        .arg(config)
        .env_remove("DPSD_LISTEN_HTTPS")
        .env_remove("DPSD_LISTEN_MQTT")
        .env_remove("DPSD_DATA_DIR")
        .env_remove("DPSD_STORAGE_KIND")
        .env("DPSD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port = first
        .split("https://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no listening line from dpsd: {first:?}"));
    Dpsd { child, port }
}

fn kill9(mut d: Dpsd) {
    Command::new("kill")
        .arg("-KILL")
        .arg(d.child.id().to_string())
        .status()
        .unwrap();
    d.child.wait().unwrap();
}

fn ca(dir: &Path) -> Option<TrustedCa> {
    Some(TrustedCa::PemFile(dir.join("data").join("dev-ca.pem")))
}

fn admin(dir: &Path, port: u16) -> ServiceClient {
    let cs = format!(
        "HostName=localhost:{port};SharedAccessKeyName={OWNER};SharedAccessKey={OWNER_KEY}"
    );
    ServiceClient::from_connection_string(&cs, ca(dir)).unwrap()
}

/// A cheap deterministic "random" delay per cycle, so a failing run can be repeated.
fn kill_after(cycle: u64) -> Duration {
    let seed = std::process::id() as u64 ^ cycle.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Duration::from_millis(300 + (seed.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 54) % 900)
}

async fn run_cycles(dir: &Path, storage: &str) {
    let config = write_config(dir, storage);
    let cycles: u64 = std::env::var("DPS_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();

    let d = start(&config);
    let group: EnrollmentGroup = serde_json::from_value(serde_json::json!({
        "enrollmentGroupId": "crash-group",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}}
    }))
    .unwrap();
    admin(dir, d.port)
        .create_enrollment_group(&group)
        .await
        .unwrap();
    let mut dpsd = d;

    for cycle in 0..cycles {
        let port = dpsd.port;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut workers = Vec::new();
        for w in 0..6 {
            let (acked, stop, dir) = (acked.clone(), stop.clone(), dir.to_path_buf());
            workers.push(tokio::spawn(async move {
                for n in 0u32.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let rid = format!("crash-{cycle}-{w}-{n}");
                    let mut o = RegisterOptions::new(
                        format!("localhost:{port}"),
                        IdScope::new(SCOPE).unwrap(),
                        RegistrationId::new(&rid).unwrap(),
                        Credential::GroupKey(GROUP_KEY.to_owned()),
                    );
                    o.ca = ca(&dir);
                    let mut flow = FlowConfig::default();
                    flow.min_retry_after = Duration::ZERO;
                    flow.max_retries = 0;
                    o.flow = flow;
                    match register_https(o).await {
                        Ok(r) if r.state.status == RegistrationStatus::Assigned => {
                            acked.lock().unwrap().push(rid)
                        }
                        // Refused or cut off by the kill: not acknowledged, nothing to check.
                        _ => break,
                    }
                }
            }));
        }
        tokio::time::sleep(kill_after(cycle)).await;
        kill9(dpsd);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in workers {
            let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
        }
        dpsd = start(&config);
        let svc = admin(dir, dpsd.port);
        let acked_now = acked.lock().unwrap().clone();
        assert!(
            !acked_now.is_empty(),
            "cycle {cycle}: no registration completed before the kill"
        );
        for rid in &acked_now {
            let rec = svc
                .get_registration(&RegistrationId::new(rid).unwrap())
                .await;
            let rec = rec.unwrap_or_else(|e| {
                panic!("cycle {cycle}: acknowledged {rid} lost after SIGKILL: {e:?}")
            });
            assert_eq!(rec.status, RegistrationStatus::Assigned, "{rid}");
        }
        let listed = svc
            .list_registrations(&EnrollmentGroupId::new("crash-group").unwrap())
            .await
            .unwrap();
        let listed: std::collections::HashSet<String> = listed
            .iter()
            .map(|r| r.registration_id.to_string())
            .collect();
        assert!(
            acked_now.iter().all(|r| listed.contains(r)),
            "cycle {cycle}: listing misses records"
        );
        eprintln!(
            "crash cycle {cycle}: {} acknowledged registrations survived SIGKILL",
            acked_now.len()
        );
    }
    let started = Instant::now();
    Command::new("kill")
        .arg("-TERM")
        .arg(dpsd.child.id().to_string())
        .status()
        .unwrap();
    dpsd.child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dpsd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_every_acknowledged_registration_across_sigkill() {
    let dir = temp_dir("crash-embedded");
    run_cycles(&dir, "kind = \"embedded\"").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_acknowledged_registration_across_sigkill() {
    let Ok(url) = std::env::var("DPS_TEST_DATABASE_URL") else {
        eprintln!("SKIPPED: DPS_TEST_DATABASE_URL is not set (PostgreSQL crash test)");
        return;
    };
    let dir = temp_dir("crash-pg");
    let schema = format!("dps_crash_{}", std::process::id());
    run_cycles(
        &dir,
        &format!("kind = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\""),
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    drop_schema(&url, &schema);
}

fn drop_schema(url: &str, schema: &str) {
    // Best effort: psql is on the CI machine; a leftover schema only costs disk.
    let _ = Command::new("psql")
        .arg(url)
        .arg("-qc")
        .arg(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
