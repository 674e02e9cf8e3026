//! A real Mosquitto broker with the dynamic-security plugin as a linked hub: a device provisions
//! through dps-server, then connects to the broker with the credential it was given, and loses
//! it when it moves to another hub. Skipped (with a message) only when mosquitto is not
//! installed.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dps_client::{Credential, RegisterOptions, TrustedCa, register_https};
use dps_connect::{
    HubConnector, HubRouter, InProcessHubRegistry, MosquittoConfig, MosquittoHubRegistry,
    RetryPolicy, device_password,
};
use dps_service::admin::Caller;
use dps_service::{Right, Service, ServiceOptions};
use dps_store::MemoryStore;
use dps_testkit::*;
use dps_types::{
    HubHostName, IdScope, IndividualEnrollment, RegistrationId, RegistrationStatus, SymmetricKey,
};
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS};
use serde_json::json;

const BROKER_HUB: &str = "hub-b.example.net";
const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "AdminPass-123";

/// The broker process; killed (by its own PID) when dropped.
struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plugin() -> Option<PathBuf> {
    let out = Command::new("dpkg")
        .args(["-L", "mosquitto"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.ends_with("mosquitto_dynamic_security.so"))
        .map(PathBuf::from)
        .or_else(|| {
            let p = Path::new("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so");
            p.exists().then(|| p.to_path_buf())
        })
}

/// Starts mosquitto on a free loopback port with a fresh dynsec file, or `None` when mosquitto
/// is not installed.
async fn start_broker() -> Option<Broker> {
    let mosquitto = Path::new("/usr/sbin/mosquitto");
    if !mosquitto.exists() {
        return None;
    }
    let plugin = plugin().expect("mosquitto is installed but its dynamic-security plugin is not");
    let dir = tempfile::tempdir().unwrap();
    let dynsec = dir.path().join("dynamic-security.json");
    let init = Command::new("mosquitto_ctrl")
        .args(["dynsec", "init"])
        .arg(&dynsec)
        .args([ADMIN, ADMIN_PASSWORD])
        .stdout(Stdio::null())
        .status()
        .expect("mosquitto_ctrl (package mosquitto) runs");
    assert!(init.success(), "mosquitto_ctrl dynsec init");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "per_listener_settings false\nallow_anonymous false\nlistener {port} 127.0.0.1\n\
             persistence false\nuser root\nplugin {}\nplugin_opt_config_file {}\n\
             log_dest stderr\n",
            plugin.display(),
            dynsec.display()
        ),
    )
    .unwrap();
    let child = Command::new(mosquitto)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let broker = Broker {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(broker);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("mosquitto did not open 127.0.0.1:{port}");
}

/// Connects as `user` with `password` (client ID = user) and publishes once to `topic` at QoS 1.
async fn connect_and_publish(
    port: u16,
    user: &str,
    password: &str,
    topic: &str,
) -> Result<(), String> {
    let mut o = MqttOptions::new(user, "127.0.0.1", port);
    o.set_credentials(user, password)
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(o, 8);
    let run = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .publish(topic, QoS::AtLeastOnce, false, b"21.5".to_vec())
                        .await
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => {
                    return Err(format!("refused: {code:?}"));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let r = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
    let _ = client.try_disconnect();
    r
}

/// Connects and subscribes to `filters`; returns whether each was granted.
async fn subscribe(port: u16, user: &str, password: &str, filters: &[&str]) -> Vec<bool> {
    let mut o = MqttOptions::new(user, "127.0.0.1", port);
    o.set_credentials(user, password)
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(o, 8);
    let run = async {
        loop {
            match events.poll().await.unwrap() {
                Event::Incoming(Packet::ConnAck(_)) => {
                    let subs = filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new((*f).to_owned(), QoS::AtMostOnce));
                    client.subscribe_many(subs).await.unwrap();
                }
                Event::Incoming(Packet::SubAck(ack)) => {
                    return ack
                        .return_codes
                        .iter()
                        .map(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure))
                        .collect();
                }
                _ => {}
            }
        }
    };
    let granted = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap();
    let _ = client.try_disconnect();
    granted
}

fn pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_provisions_into_mosquitto_and_connects_with_its_credential() {
    let Some(broker) = start_broker().await else {
        eprintln!("SKIPPED: /usr/sbin/mosquitto is not installed (package mosquitto)");
        return;
    };
    let mut cfg = MosquittoConfig::new(
        &format!("mqtt://127.0.0.1:{}", broker.port),
        ADMIN,
        ADMIN_PASSWORD,
        None,
    )
    .unwrap();
    cfg.retry = RetryPolicy {
        timeout: Duration::from_secs(5),
        retries: 1,
        ..RetryPolicy::default()
    };
    let embedded = InProcessHubRegistry::default();
    let mut router = HubRouter::new();
    router
        .route(
            HubHostName::new(BROKER_HUB).unwrap(),
            HubConnector::Mosquitto(MosquittoHubRegistry::new(cfg)),
        )
        .route(
            HubHostName::new("hub-a.example.net").unwrap(),
            HubConnector::Embedded(embedded.clone()),
        );
    let svc = Service::builder(MemoryStore::new(), router)
        .scope(fixture_scope(SCOPE, SERVICE_HOST))
        .options(ServiceOptions {
            retry_after_secs: 1,
            ..ServiceOptions::default()
        })
        .build();
    let later = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let tok = service_token(SERVICE_HOST, OWNER, OWNER_KEY, later);
    let admin = svc
        .admin(
            Caller {
                host: Some(SERVICE_HOST),
                authorization: Some(&tok),
            },
            Right::EnrollmentWrite,
        )
        .unwrap();
    let rid = "mq-dev-1";
    let body = json!({
        "registrationId": rid, "allocationPolicy": "static", "iotHubs": [BROKER_HUB],
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": DEV1_KEY}}
    });
    let e: IndividualEnrollment = admin.put(rid, body, None).await.unwrap();

    let (ca, chain, key) = pki();
    let tls = dps_server::tls::server_config(chain.as_bytes(), key.as_bytes()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dps_server::serve(listener, tls, svc.clone(), async {
        let _ = stopped.await;
    }));
    let mut opts = RegisterOptions::new(
        format!("localhost:{port}"),
        IdScope::new(SCOPE).unwrap(),
        RegistrationId::new(rid).unwrap(),
        Credential::SymmetricKey(DEV1_KEY.to_owned()),
    );
    opts.ca = Some(TrustedCa::Pem(ca.into_bytes()));
    let result = tokio::time::timeout(Duration::from_secs(30), register_https(opts.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.state.status, RegistrationStatus::Assigned);
    let hub = result.state.assigned_hub.unwrap();
    assert_eq!(hub.as_str(), BROKER_HUB);
    let device_id = result.state.device_id.unwrap();

    // The device derives its broker password from its own key and connects right away.
    let password = device_password(
        &SymmetricKey::new(DEV1_KEY).unwrap(),
        hub.as_str(),
        &device_id,
    );
    let own_topic = format!("devices/{device_id}/telemetry");
    connect_and_publish(broker.port, &device_id, &password, &own_topic)
        .await
        .unwrap();
    // Its role covers its own topics only.
    let granted = subscribe(
        broker.port,
        &device_id,
        &password,
        &[&format!("devices/{device_id}/#"), "devices/other-device/#"],
    )
    .await;
    assert_eq!(granted, [true, false]);
    let wrong = connect_and_publish(broker.port, &device_id, "not-the-password", &own_topic).await;
    assert!(wrong.is_err(), "a wrong password is refused");

    // Registering again keeps it working (client updated in place, not duplicated).
    let again = tokio::time::timeout(Duration::from_secs(30), register_https(opts.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.state.assigned_hub.unwrap().as_str(), BROKER_HUB);
    connect_and_publish(broker.port, &device_id, &password, &own_topic)
        .await
        .unwrap();

    // Moved to another hub: created there first, then its broker client is gone.
    let mut moved = serde_json::to_value(&e).unwrap();
    moved["iotHubs"] = json!(["hub-a.example.net"]);
    admin
        .put::<IndividualEnrollment>(rid, moved, Some("*"))
        .await
        .unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(30), register_https(opts))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        gone.state.assigned_hub.unwrap().as_str(),
        "hub-a.example.net"
    );
    assert!(embedded.device("hub-a.example.net", &device_id).is_some());
    let refused = connect_and_publish(broker.port, &device_id, &password, &own_topic).await;
    assert!(refused.is_err(), "removed from the broker: {refused:?}");

    stop.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}
