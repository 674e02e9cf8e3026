//! `dps load` end to end: the `dps` binary against dps-server in this process (HTTPS and MQTT
//! on 127.0.0.1:0, the memory store, `Retry-After: 0`), with X.509 devices: certificates
//! issued by the fleet's CA, a group trusting it (uploaded, or as a verified scope CA) or
//! individual enrollments pinning each certificate. Every registration must succeed and the
//! `--json` report must say so.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use dps_connect::InProcessHubRegistry;
use dps_service::{ScopeCa, Service, ServiceOptions};
use dps_store::MemoryStore;
use dps_testkit::pki::{KeyAlg, TestCa};
use dps_testkit::{OWNER, OWNER_KEY, SCOPE, SERVICE_HOST, fixture_scope};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

const DEVICES: u64 = 20;

/// dps-server on HTTPS and MQTT ports; stops when dropped.
struct Server {
    https: u16,
    mqtt: u16,
    ca_file: PathBuf,
    _stop: watch::Sender<bool>,
}

impl Server {
    async fn start(dir: &Path, scope_ca: Option<&str>) -> Self {
        let server_ca = TestCa::root("server CA", KeyAlg::P256);
        let (chain, key) = server_ca.server();
        let ca_file = dir.join("server-ca.pem");
        std::fs::write(&ca_file, &server_ca.pem).unwrap();
        let mut scope = fixture_scope(SCOPE, SERVICE_HOST);
        if let Some(pem) = scope_ca {
            scope.cas = vec![ScopeCa {
                name: "load-ca".into(),
                der: CertificateDer::from_pem_slice(pem.as_bytes()).unwrap(),
                verified: true,
            }];
        }
        let svc = Service::builder(MemoryStore::new(), InProcessHubRegistry::default())
            .scope(scope)
            .options(ServiceOptions {
                retry_after_secs: 0,
                ..ServiceOptions::default()
            })
            .build();
        let tls = dps_server::tls::server_config(chain.as_bytes(), key.as_bytes()).unwrap();
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mqtt = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ports = (
            https.local_addr().unwrap().port(),
            mqtt.local_addr().unwrap().port(),
        );
        let (stop, stopped) = watch::channel(false);
        let until = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::spawn(dps_server::serve(
            https,
            tls.clone(),
            svc.clone(),
            until(stopped.clone()),
        ));
        tokio::spawn(dps_server::serve_mqtt(mqtt, tls, svc, until(stopped)));
        Self {
            https: ports.0,
            mqtt: ports.1,
            ca_file,
            _stop: stop,
        }
    }

    fn connection_string(&self) -> String {
        format!(
            "HostName=localhost:{};SharedAccessKeyName={OWNER};SharedAccessKey={OWNER_KEY}",
            self.https
        )
    }
}

/// Runs `dps --json load …` (bounded: 60 s per pass at most) and returns its JSON report.
async fn dps_load(server: Option<&Server>, args: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dps"));
    cmd.args(["--json", "load", "--threads", "2", "--duration", "60"])
        .args(["--concurrency", "4", "--devices", &DEVICES.to_string()])
        .args(args)
        .env_remove("DPS_CONNECTION_STRING")
        .env_remove("DPS_CA");
    if let Some(s) = server {
        cmd.arg("--ca").arg(&s.ca_file);
        cmd.args(["--connection-string", &s.connection_string()]);
    }
    let shown = format!("{args:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dps load {shown} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "dps load {shown}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Every one of the `DEVICES` registrations succeeded, with register and total latencies.
fn assert_all_registered(what: &str, pass: &Value) {
    assert_eq!(pass["ok"], DEVICES, "{what}: {pass}");
    assert_eq!(pass["failed"], 0, "{what}: {pass}");
    assert_eq!(pass["errors"], serde_json::json!({}), "{what}: {pass}");
    assert_eq!(pass["register_us"]["samples"], DEVICES, "{what}: {pass}");
    assert_eq!(
        pass["provisioning_us"]["samples"], DEVICES,
        "{what}: {pass}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_fleets_register_over_https_and_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None).await;
    let scope = ["--scope", SCOPE];
    let https = format!("127.0.0.1:{}", server.https);
    let mqtt = format!("127.0.0.1:{}", server.mqtt);

    // A group trusting the uploaded CA, over HTTPS, next to the baseline with the same devices.
    let r = dps_load(
        Some(&server),
        &[
            &scope[..],
            &["--host", &https, "--attestation", "x509", "--baseline"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(r["x509"]["certificates"], DEVICES, "{r}");
    assert_eq!(r["setup"]["items"], 1, "one group: {r}");
    assert_all_registered("baseline", &r["baseline"]);
    assert_all_registered("https", &r["passes"][0]);
    assert!(r["passes"][0]["ratio_to_baseline"].as_f64().unwrap() > 0.0);

    // The same devices (the CA comes from the same --secret) over MQTT, twice: re-registration.
    let r = dps_load(
        Some(&server),
        &[
            &scope[..],
            &[
                "--host",
                &mqtt,
                "--transport",
                "mqtt",
                "--attestation",
                "x509",
            ],
            &["--no-setup", "--passes", "2"],
        ]
        .concat(),
    )
    .await;
    assert!(r.get("setup").is_none(), "{r}");
    assert_all_registered("mqtt pass 1", &r["passes"][0]);
    assert_all_registered("mqtt pass 2", &r["passes"][1]);

    // Individual enrollments pinning each device's certificate, over both transports.
    for (host, transport) in [(&https, "https"), (&mqtt, "mqtt")] {
        let prefix = format!("ind-{transport}");
        let r = dps_load(
            Some(&server),
            &[
                &scope[..],
                &["--host", host, "--transport", transport],
                &["--attestation", "x509-individual", "--prefix", &prefix],
            ]
            .concat(),
        )
        .await;
        assert_eq!(r["setup"]["items"], DEVICES, "{r}");
        assert_all_registered(transport, &r["passes"][0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x509_group_can_trust_the_fleet_ca_as_a_verified_scope_ca() {
    let dir = tempfile::tempdir().unwrap();
    // The CA certificate comes from --secret; the baseline alone needs no DPS.
    let ca_file = dir.path().join("load-ca.pem");
    let ca_arg = ca_file.to_str().unwrap();
    let r = dps_load(
        None,
        &[
            "--baseline-only",
            "--attestation",
            "x509",
            "--x509-ca-pem",
            ca_arg,
        ],
    )
    .await;
    assert_all_registered("baseline", &r["baseline"]);
    let ca = std::fs::read_to_string(&ca_file).unwrap();

    let server = Server::start(dir.path(), Some(&ca)).await;
    let https = format!("127.0.0.1:{}", server.https);
    let args = ["--scope", SCOPE, "--host", &https, "--attestation", "x509"];
    let by_name = ["--x509-ca-name", "load-ca"];
    let r = dps_load(Some(&server), &[&args[..], &by_name].concat()).await;
    assert_all_registered("caReferences", &r["passes"][0]);
    // A name dpsd does not know is refused at set-up.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dps"));
    cmd.arg("--ca").arg(&server.ca_file);
    cmd.args(["--connection-string", &server.connection_string()]);
    cmd.args(["load", "--devices", "2"]).args(args);
    cmd.args(["--x509-ca-name", "nope"]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bulk"),
        "{out:?}"
    );
}
