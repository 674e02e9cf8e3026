//! MQTT end to end over real TLS sockets: dps-server's MQTT listener on 127.0.0.1:0 (and MQTT
//! over WebSocket on its HTTPS listener) against
//!
//! * dps-client's MQTT transport (individual and group devices, a wrong key);
//! * rumqttc, an MQTT client that shares no code with ours, doing the DPS exchange by hand, so
//!   a bug shared by both ends of our codec cannot hide;
//! * fifty misbehaving connections while a good device provisions;
//! * dps-client's sans-I/O MQTT connection over a WebSocket (tokio-tungstenite).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use dps_client::device::flow::FlowError;
use dps_client::device::mqtt::{Connection, End};
use dps_client::{
    Credential, Error, RegisterOptions, RegistrationFlow, ServiceClient, Transport, TrustedCa,
    register, register_mqtt,
};
use dps_connect::InProcessHubRegistry;
use dps_proto::mqtt::{self, Limits};
use dps_service::{Service, ServiceOptions};
use dps_store::MemoryStore;
use dps_testkit::*;
use dps_types::{
    EnrollmentGroup, IdScope, IndividualEnrollment, RegistrationId, RegistrationStatus,
};
use futures_util::{SinkExt as _, StreamExt as _};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const RESPONSE_FILTER: &str = "$dps/registrations/res/#";
/// Generous bound for one registration (the service answers with retry-after 1).
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);

struct Pki {
    ca_pem: String,
    chain_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "mqtt test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        chain_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

/// A rustls client configuration trusting only the test CA (for rumqttc and raw sockets).
fn client_tls(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// dps-server with MQTT and HTTPS listeners on one service (memory store, real clock,
/// retry-after 1 s), and an admin client on the HTTPS port.
struct Server {
    mqtt_port: u16,
    https_port: u16,
    hubs: InProcessHubRegistry,
    ca_pem: String,
    admin: ServiceClient,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start() -> Self {
        let pki = pki();
        let hubs = InProcessHubRegistry::default();
        let svc = Service::builder(MemoryStore::new(), hubs.clone())
            .scope(fixture_scope(SCOPE, SERVICE_HOST))
            .options(ServiceOptions {
                retry_after_secs: 1,
                ..ServiceOptions::default()
            })
            .build();
        let tls = dps_server::tls::server_config(pki.chain_pem.as_bytes(), pki.key_pem.as_bytes())
            .unwrap();
        let mqtt = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mqtt_port, https_port) = (
            mqtt.local_addr().unwrap().port(),
            https.local_addr().unwrap().port(),
        );
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let tasks = vec![
            tokio::spawn(dps_server::serve_mqtt(
                mqtt,
                tls.clone(),
                svc.clone(),
                until_stopped(stopped.clone()),
            )),
            tokio::spawn(dps_server::serve(https, tls, svc, until_stopped(stopped))),
        ];
        let cs = format!(
            "HostName=localhost:{https_port};SharedAccessKeyName={OWNER};SharedAccessKey={OWNER_KEY}"
        );
        let ca = TrustedCa::Pem(pki.ca_pem.clone().into_bytes());
        let admin = ServiceClient::from_connection_string(&cs, Some(ca)).unwrap();
        Self {
            mqtt_port,
            https_port,
            hubs,
            ca_pem: pki.ca_pem,
            admin,
            stop,
            tasks,
        }
    }

    /// Options of dps-client's MQTT transport for `rid`.
    fn options(&self, rid: &str, credential: Credential) -> RegisterOptions {
        let mut opts = RegisterOptions::new(
            format!("localhost:{}", self.mqtt_port),
            IdScope::new(SCOPE).unwrap(),
            RegistrationId::new(rid).unwrap(),
            credential,
        );
        opts.transport = Transport::Mqtt;
        opts.ca = Some(TrustedCa::Pem(self.ca_pem.clone().into_bytes()));
        opts
    }

    async fn enroll(&self, rid: &str, key: &str) {
        let e: IndividualEnrollment = serde_json::from_value(serde_json::json!({
            "registrationId": rid,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
        }))
        .unwrap();
        self.admin.create_enrollment(&e).await.unwrap();
    }

    async fn enroll_group(&self, id: &str, key: &str) {
        let g: EnrollmentGroup = serde_json::from_value(serde_json::json!({
            "enrollmentGroupId": id,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
        }))
        .unwrap();
        self.admin.create_enrollment_group(&g).await.unwrap();
    }

    /// The device twin the hub got, proving the registration reached the hub registry.
    fn assert_provisioned(&self, hub: &str, device_id: &str) {
        assert!(
            self.hubs.device(hub, device_id).is_some(),
            "{device_id} is not on {hub}"
        );
    }

    /// Stops both listeners; both must return `Ok` within the drain timeout.
    async fn stop(self) {
        self.stop.send(true).unwrap();
        for task in self.tasks {
            timeout(Duration::from_secs(15), task)
                .await
                .expect("the server stops")
                .expect("the server did not panic")
                .expect("the server returned Ok");
        }
    }
}

fn assert_assigned(r: &dps_client::DeviceRegistrationResult, device_id: &str) -> String {
    assert_eq!(r.state.status, RegistrationStatus::Assigned);
    assert_eq!(r.state.device_id.as_deref(), Some(device_id));
    let hub = r.state.assigned_hub.clone().unwrap().as_str().to_owned();
    assert!(
        hub == "hub-a.example.net" || hub == "hub-b.example.net",
        "{hub}"
    );
    hub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_registers_individual_and_group_devices() {
    let server = Server::start().await;
    server.enroll("mqtt-dev-1", DEV1_KEY).await;
    server.enroll_group("mqtt-group-1", GROUP_KEY).await;

    // Through the one entry point, choosing MQTT.
    let opts = server.options("mqtt-dev-1", Credential::SymmetricKey(DEV1_KEY.into()));
    let r = timeout(REGISTRATION_TIMEOUT, register(opts))
        .await
        .unwrap()
        .unwrap();
    let first_hub = assert_assigned(&r, "mqtt-dev-1");
    server.assert_provisioned(&first_hub, "mqtt-dev-1");

    // A group device with the key derived from the group key, with a payload.
    let mut opts = server.options("mqtt-group-dev-7", Credential::GroupKey(GROUP_KEY.into()));
    opts.payload = Some(serde_json::json!({"modelId": "dtmi:example:thermostat;1"}));
    let r = timeout(REGISTRATION_TIMEOUT, register_mqtt(opts))
        .await
        .unwrap()
        .unwrap();
    let hub = assert_assigned(&r, "mqtt-group-dev-7");
    server.assert_provisioned(&hub, "mqtt-group-dev-7");

    // Registering again: still assigned, to the same hub.
    let opts = server.options("mqtt-dev-1", Credential::SymmetricKey(DEV1_KEY.into()));
    let again = timeout(REGISTRATION_TIMEOUT, register_mqtt(opts))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(assert_assigned(&again, "mqtt-dev-1"), first_hub);

    // MQTT registrations are metered like HTTPS ones: the same service path.
    let ops = server.admin.operations().await.unwrap();
    assert_eq!(ops["operations"]["deviceRegistration"], 3, "{ops}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_gets_401_and_the_server_closes() {
    let server = Server::start().await;
    server.enroll("mqtt-dev-1", DEV1_KEY).await;

    // dps-client: the 401 and its Azure error body come back as the error.
    let opts = server.options("mqtt-dev-1", Credential::SymmetricKey(GROUP_KEY.into()));
    let err = timeout(REGISTRATION_TIMEOUT, register_mqtt(opts))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
    assert!(
        matches!(
            err,
            Error::Registration(FlowError::Rejected {
                status: 401,
                error_code: Some(401_002),
                ..
            })
        ),
        "{err:?}"
    );
    // No enrollment at all: refused the same way (Azure cannot tell the two apart).
    let opts = server.options("mqtt-nobody", Credential::SymmetricKey(DEV1_KEY.into()));
    let err = timeout(REGISTRATION_TIMEOUT, register_mqtt(opts))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err.status(), Some(401 | 404)), "{err:?}");

    // rumqttc, leaving like the Node SDK: the CONNECT is accepted, the register answered 401
    // on its $rid, and the UNSUBSCRIBE that follows still gets its UNSUBACK (mqtt.js never
    // finishes `end()` otherwise), then DISCONNECT.
    let token = device_token(SCOPE, "mqtt-dev-1", GROUP_KEY, unix_now() + 3600);
    let (client, mut ev) = rumqtt(&server, "mqtt-dev-1", &token, true);
    client
        .subscribe(RESPONSE_FILTER, QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .publish(
            "$dps/registrations/PUT/iotdps-register/?$rid=41",
            QoS::AtLeastOnce,
            false,
            br#"{"registrationId":"mqtt-dev-1"}"#.to_vec(),
        )
        .await
        .unwrap();
    let response = loop {
        if let Packet::Publish(p) = next_incoming(&mut ev).await {
            break p;
        }
    };
    assert_eq!(response.topic, "$dps/registrations/res/401/?$rid=41");
    assert_eq!(response.qos, QoS::AtLeastOnce);
    let body: Value = serde_json::from_slice(&response.payload).unwrap();
    assert_eq!(body["errorCode"], 401_002, "{body}");
    client.unsubscribe(RESPONSE_FILTER).await.unwrap();
    assert!(matches!(next_incoming(&mut ev).await, Packet::UnsubAck(_)));
    client.disconnect().await.unwrap();
    timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap();

    // A client that stays after its 401 is disconnected after REFUSED_LINGER.
    let (client, mut ev) = rumqtt(&server, "mqtt-dev-1", &token, true);
    client
        .subscribe(RESPONSE_FILTER, QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .publish(
            "$dps/registrations/PUT/iotdps-register/?$rid=42",
            QoS::AtLeastOnce,
            false,
            br#"{"registrationId":"mqtt-dev-1"}"#.to_vec(),
        )
        .await
        .unwrap();
    // Everything up to the close. rumqttc may report the close before handing out a packet
    // that arrived in the same read, so its buffered events count too.
    let mut published = Vec::new();
    let mut refused_at = None;
    let linger = dps_server::mqtt::REFUSED_LINGER;
    let closed = timeout(linger + Duration::from_secs(5), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    refused_at = Some(Instant::now());
                    published.push(p);
                }
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("the server closes the connection after a 401");
    published.extend(ev.state.events.drain(..).filter_map(|e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p),
        _ => None,
    }));
    let [response] = published.as_slice() else {
        panic!("expected exactly the 401 before the close ({closed}): {published:?}");
    };
    assert_eq!(response.topic, "$dps/registrations/res/401/?$rid=42");
    if let Some(at) = refused_at {
        assert!(
            at.elapsed() + Duration::from_secs(1) >= linger,
            "closed too early"
        );
    }
    server.stop().await;
}

/// rumqttc against the MQTT listener, TLS with the test CA, SAS token as password.
fn rumqtt(
    server: &Server,
    rid: &str,
    token: &str,
    clean_session: bool,
) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(rid, "localhost", server.mqtt_port);
    o.set_keep_alive(Duration::from_secs(60));
    o.set_clean_session(clean_session);
    o.set_credentials(
        format!("{SCOPE}/registrations/{rid}/api-version=2019-03-31&ClientVersion=rumqttc%2F0.25"),
        token,
    );
    o.set_transport(rumqttc::Transport::tls_with_config(
        TlsConfiguration::Rustls(Arc::new(client_tls(&server.ca_pem))),
    ));
    AsyncClient::new(o, 10)
}

/// The next packet from the server (outgoing events skipped).
async fn next_incoming(ev: &mut EventLoop) -> Packet {
    timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await.unwrap() {
                Event::Incoming(p) => return p,
                Event::Outgoing(_) => {}
            }
        }
    })
    .await
    .expect("the server answers within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_client_does_the_exchange_by_hand() {
    let server = Server::start().await;
    server.enroll("raw-dev-1", DEV1_KEY).await;
    let token = device_token(SCOPE, "raw-dev-1", DEV1_KEY, unix_now() + 3600);
    // clean-session 0, as the Python SDK sends it: still session-present 0.
    let (client, mut ev) = rumqtt(&server, "raw-dev-1", &token, false);

    let Packet::ConnAck(ack) = next_incoming(&mut ev).await else {
        panic!("CONNACK first");
    };
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    assert!(!ack.session_present);

    client
        .subscribe(RESPONSE_FILTER, QoS::AtLeastOnce)
        .await
        .unwrap();
    let Packet::SubAck(sub) = next_incoming(&mut ev).await else {
        panic!("SUBACK before anything else");
    };
    assert_eq!(
        sub.return_codes,
        [rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    // Register: PUBACK first, then the 202 on the same $rid, at QoS 1, `$rid` first.
    client
        .publish(
            "$dps/registrations/PUT/iotdps-register/?$rid=1",
            QoS::AtLeastOnce,
            false,
            br#"{"registrationId":"raw-dev-1"}"#.to_vec(),
        )
        .await
        .unwrap();
    assert!(
        matches!(next_incoming(&mut ev).await, Packet::PubAck(_)),
        "PUBACK before the response"
    );
    let Packet::Publish(accepted) = next_incoming(&mut ev).await else {
        panic!("the register response");
    };
    assert_eq!(
        accepted.topic,
        "$dps/registrations/res/202/?$rid=1&retry-after=1"
    );
    assert_eq!(accepted.qos, QoS::AtLeastOnce);
    assert_ne!(accepted.pkid, 0);
    let body: Value = serde_json::from_slice(&accepted.payload).unwrap();
    assert_eq!(body["status"], "assigning", "{body}");
    let operation_id = body["operationId"].as_str().unwrap().to_owned();
    assert!(!operation_id.is_empty());

    // Poll (Node style: a UUID $rid, payload " ") until assigned; the rid comes back verbatim.
    let mut assigned = None;
    for n in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rid = format!("bc7266d3-bab8-4445-ad20-68726{n:07}");
        client
            .publish(
                format!(
                    "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={operation_id}"
                ),
                QoS::AtLeastOnce,
                false,
                b" ".to_vec(),
            )
            .await
            .unwrap();
        assert!(matches!(next_incoming(&mut ev).await, Packet::PubAck(_)));
        let Packet::Publish(status) = next_incoming(&mut ev).await else {
            panic!("the poll response");
        };
        let body: Value = serde_json::from_slice(&status.payload).unwrap();
        if status.topic == format!("$dps/registrations/res/202/?$rid={rid}&retry-after=1") {
            assert_eq!(body["status"], "assigning", "{body}");
            continue;
        }
        assert_eq!(
            status.topic,
            format!("$dps/registrations/res/200/?$rid={rid}")
        );
        assigned = Some(body);
        break;
    }
    let body = assigned.expect("assigned within 10 polls");
    assert_eq!(body["status"], "assigned", "{body}");
    assert_eq!(body["operationId"], operation_id.as_str());
    let state = &body["registrationState"];
    assert_eq!(state["registrationId"], "raw-dev-1");
    assert_eq!(state["deviceId"], "raw-dev-1");
    let hub = state["assignedHub"].as_str().unwrap();
    server.assert_provisioned(hub, "raw-dev-1");

    // A clean DISCONNECT.
    client.disconnect().await.unwrap();
    timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap();
    server.stop().await;
}

// --- misbehaving clients -------------------------------------------------------------------

/// Panics anywhere in this test binary, counted by a hook that keeps the default output.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// A hand-made CONNECT (deliberately not our codec).
fn raw_connect(level: u8, client_id: &str, username: &str, password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    let put = |b: &mut Vec<u8>, s: &[u8]| {
        b.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
        b.extend_from_slice(s);
    };
    put(&mut body, b"MQTT");
    body.push(level);
    body.push(0xc2); // user name, password, clean session
    body.extend_from_slice(&60u16.to_be_bytes());
    put(&mut body, client_id.as_bytes());
    put(&mut body, username.as_bytes());
    put(&mut body, password.as_bytes());
    framed(0x10, &body)
}

/// A hand-made PUBLISH: QoS from `first` (0x30, 0x32, 0x34).
fn raw_publish(first: u8, topic: &str, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(topic.len()).unwrap().to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    if first & 0x06 != 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    framed(first, &body)
}

fn framed(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    let mut n = body.len();
    loop {
        let digit = u8::try_from(n % 128).unwrap();
        n /= 128;
        p.push(if n > 0 { digit | 0x80 } else { digit });
        if n == 0 {
            break;
        }
    }
    p.extend_from_slice(body);
    p
}

/// Reads until the server closes (end of stream or an error such as a reset); returns what
/// arrived. Fails if the connection is still open after `limit`.
async fn until_closed(
    s: &mut (impl AsyncRead + Unpin),
    limit: Duration,
) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    timeout(limit, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .map_err(|_| format!("still open after {limit:?} (received {got:02x?})"))?;
    Ok(got)
}

#[derive(Debug, Clone, Copy)]
enum Bad {
    /// Random bytes after the TLS handshake.
    Garbage,
    /// A PUBLISH header announcing 268 MB.
    Oversized,
    /// CONNECT with protocol level 3: CONNACK 0x01, then close.
    Level3,
    /// CONNECT whose client ID differs from the user name's registration ID: CONNACK 0x02.
    WrongClientId,
    /// PINGREQ as the first packet.
    NotConnectFirst,
    /// Publishes to topics DPS does not serve, more than the server tolerates.
    UnknownTopics,
    /// A QoS 2 PUBLISH.
    Qos2,
    /// Half a CONNECT, then the TCP connection is dropped (no close_notify).
    AbruptMidConnect,
    /// A good CONNECT, half a PUBLISH, then the TCP connection is dropped.
    AbruptMidPublish,
    /// TLS, then silence: disconnected after `CONNECT_TIMEOUT`.
    Silent,
    /// Not TLS at all.
    PlainText,
}

async fn misbehave(port: u16, tls: TlsConnector, bad: Bad, n: usize) -> Result<(), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    if let Bad::PlainText = bad {
        let mut tcp = tcp;
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        until_closed(&mut tcp, Duration::from_secs(15)).await?;
        return Ok(());
    }
    let name = ServerName::try_from("localhost").unwrap();
    let mut s = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let rid = format!("bad-{n}");
    let user = format!("{SCOPE}/registrations/{rid}/api-version=2019-03-31");
    let good_connect = raw_connect(4, &rid, &user, "SharedAccessSignature sr=x&sig=y&se=1");
    let expect_connack = |got: &[u8], code: u8| {
        if got.starts_with(&[0x20, 0x02, 0x00, code]) {
            Ok(())
        } else {
            Err(format!("{bad:?}: expected CONNACK {code}, got {got:02x?}"))
        }
    };
    let limit = Duration::from_secs(15);
    match bad {
        Bad::Garbage => {
            let mut x: u32 = 0x9e37_79b9 ^ u32::try_from(n).unwrap();
            let junk: Vec<u8> = (0..300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x.to_le_bytes()[0] | 0xf0 // reserved packet type 15 first
                })
                .collect();
            let _ = s.write_all(&junk).await;
            until_closed(&mut s, limit).await?;
        }
        Bad::Oversized => {
            let _ = s.write_all(&[0x30, 0xff, 0xff, 0xff, 0x7f]).await;
            until_closed(&mut s, limit).await?;
        }
        Bad::Level3 => {
            let _ = s.write_all(&raw_connect(3, &rid, &user, "x")).await;
            let got = until_closed(&mut s, limit).await?;
            expect_connack(&got, 0x01)?;
            if got.len() != 4 {
                return Err(format!("Level3: more than a CONNACK: {got:02x?}"));
            }
        }
        Bad::WrongClientId => {
            let _ = s
                .write_all(&raw_connect(4, "someone-else", &user, "x"))
                .await;
            let got = until_closed(&mut s, limit).await?;
            expect_connack(&got, 0x02)?;
        }
        Bad::NotConnectFirst => {
            let _ = s.write_all(&[0xc0, 0x00]).await;
            let got = until_closed(&mut s, limit).await?;
            if !got.is_empty() {
                return Err(format!("NotConnectFirst: answered {got:02x?}"));
            }
        }
        Bad::UnknownTopics => {
            let mut out = good_connect;
            for i in 1..=20 {
                out.extend(raw_publish(0x32, "devices/bad/messages/events/", i, b"{}"));
            }
            let _ = s.write_all(&out).await;
            let got = until_closed(&mut s, limit).await?;
            expect_connack(&got, 0x00)?;
            // PUBACKs (0x40) for some, and no PUBLISH (0x3x) answers: unknown topics have
            // no $rid to answer on.
            if got.len() < 8 || got[4] != 0x40 {
                return Err(format!("UnknownTopics: {got:02x?}"));
            }
        }
        Bad::Qos2 => {
            let mut out = good_connect;
            out.extend(raw_publish(
                0x34,
                "$dps/registrations/PUT/iotdps-register/?$rid=1",
                1,
                b"{}",
            ));
            let _ = s.write_all(&out).await;
            let got = until_closed(&mut s, limit).await?;
            expect_connack(&got, 0x00)?;
        }
        Bad::AbruptMidConnect => {
            let _ = s.write_all(&good_connect[..good_connect.len() / 2]).await;
            let _ = s.flush().await;
            let (tcp, _) = s.into_inner();
            drop(tcp);
        }
        Bad::AbruptMidPublish => {
            let mut out = good_connect;
            let publish = raw_publish(
                0x32,
                "$dps/registrations/PUT/iotdps-register/?$rid=1",
                7,
                &[b' '; 500],
            );
            out.extend_from_slice(&publish[..publish.len() / 2]);
            let _ = s.write_all(&out).await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (tcp, _) = s.into_inner();
            drop(tcp);
        }
        Bad::Silent => {
            let t0 = Instant::now();
            until_closed(
                &mut s,
                dps_server::mqtt::CONNECT_TIMEOUT + Duration::from_secs(5),
            )
            .await?;
            let waited = t0.elapsed();
            if waited + Duration::from_secs(1) < dps_server::mqtt::CONNECT_TIMEOUT {
                return Err(format!("Silent: closed too early, after {waited:?}"));
            }
        }
        Bad::PlainText => unreachable!("handled above"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_bad_connections_do_not_disturb_a_good_device() {
    count_panics();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let server = Server::start().await;
    server.enroll("good-dev-1", DEV1_KEY).await;
    server.enroll("good-dev-2", DEV1_KEY).await;

    let mut kinds = vec![
        Bad::Garbage,
        Bad::Oversized,
        Bad::Level3,
        Bad::WrongClientId,
        Bad::NotConnectFirst,
        Bad::UnknownTopics,
        Bad::Qos2,
        Bad::AbruptMidConnect,
        Bad::AbruptMidPublish,
        Bad::PlainText,
    ];
    // The silent client waits for the server's CONNECT timeout: only when that keeps the test
    // short.
    if dps_server::mqtt::CONNECT_TIMEOUT <= Duration::from_secs(10) {
        kinds.push(Bad::Silent);
    }
    let tls = TlsConnector::from(Arc::new(client_tls(&server.ca_pem)));
    let mut bad = tokio::task::JoinSet::new();
    for n in 0..50 {
        let kind = kinds[n % kinds.len()];
        bad.spawn(misbehave(server.mqtt_port, tls.clone(), kind, n));
    }
    // Meanwhile, a good device provisions.
    let opts = server.options("good-dev-1", Credential::SymmetricKey(DEV1_KEY.into()));
    let r = timeout(REGISTRATION_TIMEOUT, register_mqtt(opts))
        .await
        .unwrap()
        .unwrap();
    let hub = assert_assigned(&r, "good-dev-1");
    server.assert_provisioned(&hub, "good-dev-1");

    let mut failures = Vec::new();
    while let Some(result) = bad.join_next().await {
        if let Err(e) = result.unwrap() {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // The server is still fine afterwards, and nothing panicked.
    let opts = server.options("good-dev-2", Credential::SymmetricKey(DEV1_KEY.into()));
    let r = timeout(REGISTRATION_TIMEOUT, register_mqtt(opts))
        .await
        .unwrap()
        .unwrap();
    assert_assigned(&r, "good-dev-2");
    server.stop().await;
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        panics_before,
        "a panic happened"
    );
}

// --- MQTT over WebSocket -------------------------------------------------------------------

/// One registration by dps-client's sans-I/O [`Connection`] over a WebSocket on the HTTPS port,
/// binary frames carrying MQTT packets.
async fn register_over_websocket(server: &Server, path: &str, protocol: &str, rid: &str) -> End {
    let tls = TlsConnector::from(Arc::new(client_tls(&server.ca_pem)));
    let tcp = TcpStream::connect(("127.0.0.1", server.https_port))
        .await
        .unwrap();
    let stream = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut request = format!("wss://localhost:{}{path}", server.https_port)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let chosen = response.headers()["sec-websocket-protocol"]
        .to_str()
        .unwrap();
    assert!(chosen.eq_ignore_ascii_case("mqtt"), "{chosen}");

    let flow = RegistrationFlow::new(
        IdScope::new(SCOPE).unwrap(),
        RegistrationId::new(rid).unwrap(),
        None,
    );
    let token = device_token(SCOPE, rid, DEV1_KEY, unix_now() + 3600);
    let mut conn = Connection::new(flow, "2021-06-01", token, Instant::now());
    let (mut sink, mut stream) = ws.split();
    let mut rx = BytesMut::new();
    let end = timeout(REGISTRATION_TIMEOUT, async {
        loop {
            let now = Instant::now();
            let mut tx = BytesMut::new();
            while let Some(p) = conn.poll_transmit(now) {
                p.encode(&mut tx).unwrap();
            }
            if !tx.is_empty() && sink.send(Message::Binary(tx.freeze())).await.is_err() {
                conn.handle_close(Instant::now());
            }
            if let Some(end) = conn.poll_end() {
                return end;
            }
            let wake = conn.poll_timeout().unwrap();
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        rx.extend_from_slice(&b);
                        while let Some(p) = mqtt::decode(&mut rx, &Limits::default()).unwrap() {
                            conn.handle_packet(p, Instant::now());
                        }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => conn.handle_close(Instant::now()),
                    Some(Ok(_)) => {}
                },
                () = tokio::time::sleep_until(wake.into()) => conn.handle_timeout(Instant::now()),
            }
        }
    })
    .await
    .unwrap();
    let _ = sink.close().await;
    end
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_websocket_on_the_https_port() {
    let server = Server::start().await;
    server.enroll("ws-dev-1", DEV1_KEY).await;
    server.enroll("ws-dev-2", DEV1_KEY).await;
    // Node, Python and C: `/$iothub/websocket`; .NET: `/`; the C SDK says `MQTT`.
    for (path, protocol, rid) in [
        ("/$iothub/websocket", "mqtt", "ws-dev-1"),
        ("/", "MQTT", "ws-dev-2"),
    ] {
        let end = register_over_websocket(&server, path, protocol, rid).await;
        let End::Finished(Ok(r)) = end else {
            panic!("{path}: {end:?}");
        };
        let hub = assert_assigned(&r, rid);
        server.assert_provisioned(&hub, rid);
    }
    server.stop().await;
}
