//! The README's first command: `dpsd` with no configuration starts a development instance,
//! generates its dev CA, scope and service key under the data directory, prints where they
//! are, keeps them across restarts, and stops cleanly on SIGTERM.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(dir: &Path) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dpsd"))
        .current_dir(dir)
        .env("DPSD_LISTEN_HTTPS", "127.0.0.1:0")
        .env("DPSD_LISTEN_MQTT", "127.0.0.1:0")
        .env_remove("DPSD_CONFIG")
        .env_remove("DPSD_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // The banner has five lines; a dead process ends the read with EOF.
    for _ in 0..5 {
        let mut l = String::new();
        if out.read_line(&mut l).unwrap() == 0 {
            break;
        }
        lines.push(l.trim_end().to_owned());
    }
    (child, lines)
}

fn stop(mut child: Child) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "dpsd exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "dpsd did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn enroll_and_register(port: u16, cs_line: &str, ca: &str) {
    let cs = cs_line.split("service connection string: ").nth(1).unwrap();
    let cs = cs.replace("localhost:8443", &format!("localhost:{port}"));
    let admin = dps_client::ServiceClient::from_connection_string(
        &cs,
        Some(dps_client::TrustedCa::PemFile(ca.into())),
    )
    .unwrap();
    let e: dps_types::IndividualEnrollment = serde_json::from_value(serde_json::json!({
        "registrationId": "persisted-1",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": dps_testkit::DEV1_KEY}}
    }))
    .unwrap();
    admin.create_enrollment(&e).await.unwrap();
}

fn port_of(banner: &[String]) -> u16 {
    banner[0]
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_instance_starts_prints_its_trust_root_and_keeps_its_identity() {
    let dir = std::env::temp_dir().join(format!("dpsd-dev-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let (child, banner) = start(&dir);
    let text = banner.join("\n");
    assert!(
        banner[0].starts_with("dpsd listening on https://127.0.0.1:"),
        "{text}"
    );
    assert!(
        banner
            .iter()
            .any(|l| l.contains("MQTT (TLS): mqtts://127.0.0.1:")),
        "{text}"
    );
    let scope_line = banner
        .iter()
        .find(|l| l.contains("ID scope: 0ne"))
        .expect("ID scope printed");
    let ca_line = banner
        .iter()
        .find(|l| l.contains("trust root (dev CA): "))
        .expect("CA path printed");
    let ca = ca_line.split("trust root (dev CA): ").nth(1).unwrap();
    assert!(Path::new(ca).is_absolute(), "{ca}");
    assert!(
        std::fs::read_to_string(ca)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let cs = banner
        .iter()
        .find(|l| l.contains("service connection string: HostName="))
        .expect("connection string");
    assert!(
        cs.contains("SharedAccessKeyName=provisioningserviceowner;SharedAccessKey="),
        "{cs}"
    );
    for f in [
        "dev-ca.pem",
        "dev-ca-key.pem",
        "server-chain.pem",
        "server-key.pem",
        "dev-scope.toml",
    ] {
        assert!(dir.join("dps-data").join(f).exists(), "{f} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("dps-data/dev-ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the CA key is readable by others");
    }
    // Data written now must survive the restart (the default store is durable).
    let port = port_of(&banner);
    enroll_and_register(port, cs, ca).await;
    let scope_id = scope_line
        .split("ID scope: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let mut opts = dps_client::RegisterOptions::new(
        format!("localhost:{port}"),
        dps_types::IdScope::new(&scope_id).unwrap(),
        dps_types::RegistrationId::new("persisted-1").unwrap(),
        dps_client::Credential::SymmetricKey(dps_testkit::DEV1_KEY.to_owned()),
    );
    opts.ca = Some(dps_client::TrustedCa::PemFile(ca.into()));
    let assigned = dps_client::register_https(opts).await.unwrap();
    stop(child);

    // A restart keeps the scope, the key and the CA.
    let ca_before = std::fs::read(ca).unwrap();
    let (child, again) = start(&dir);
    assert!(again.iter().any(|l| l == scope_line), "{again:?}");
    // Same policy key (the port differs: the OS picks one each time).
    let key_part = cs.split(";SharedAccessKeyName=").nth(1).unwrap();
    assert!(again.iter().any(|l| l.ends_with(key_part)), "{again:?}");
    assert_eq!(std::fs::read(ca).unwrap(), ca_before);
    // ... and the enrollment and the registration record.
    let cs_again = again
        .iter()
        .find(|l| l.contains("service connection string"))
        .unwrap();
    let cs2 = cs_again
        .split("service connection string: ")
        .nth(1)
        .unwrap();
    let admin = dps_client::ServiceClient::from_connection_string(
        cs2,
        Some(dps_client::TrustedCa::PemFile(ca.into())),
    )
    .unwrap();
    let rid = dps_types::RegistrationId::new("persisted-1").unwrap();
    assert!(
        admin.get_enrollment(&rid).await.is_ok(),
        "enrollment lost across a restart"
    );
    let rec = admin.get_registration(&rid).await.unwrap();
    assert_eq!(rec.assigned_hub, assigned.state.assigned_hub);
    stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
