//! The MQTT driver against a scripted MQTT-over-TLS peer with a private CA: what goes on the
//! wire, reconnecting after a lost connection, and how refusals and TLS failures are reported.
//! (Against the real server: dps-testkit's `tests/mqtt.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dps_attest::sas::{SasToken, SigningKey, verify_device};
use dps_client::device::flow::FlowError;
use dps_client::{Credential, Error, RegisterOptions, Transport, TrustedCa, register};
use dps_proto::mqtt::{
    self, ConnAck, Connect, ConnectReturnCode, Limits, Packet, PacketId, PubAck, Publish, QoS,
    SubAck, SubAckCode,
};
use dps_types::{IdScope, RegistrationId};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const DEVICE_KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";
const ASSIGNED: &[u8] = br#"{"operationId":"5.abc.def","status":"assigned","registrationState":{"registrationId":"dev-1","assignedHub":"hub-a.example.net","deviceId":"dev-1","status":"assigned"}}"#;
const ASSIGNING: &[u8] = br#"{"operationId":"5.abc.def","status":"assigning"}"#;

/// A CA and a server configuration for 127.0.0.1 / localhost signed by it.
struct Pki {
    ca_pem: String,
    acceptor: TlsAcceptor,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dps-client mqtt test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        acceptor: TlsAcceptor::from(Arc::new(server)),
    }
}

/// One accepted connection, spoken to with dps-proto's codec.
struct Peer {
    stream: TlsStream<TcpStream>,
    rx: BytesMut,
}

impl Peer {
    async fn accept(listener: &TcpListener, acceptor: &TlsAcceptor) -> Self {
        let (tcp, _) = listener.accept().await.unwrap();
        let stream = acceptor.accept(tcp).await.unwrap();
        Self {
            stream,
            rx: BytesMut::new(),
        }
    }

    /// The next packet, or `None` once the client closed.
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = mqtt::decode(&mut self.rx, &Limits::default()).unwrap() {
                return Some(p);
            }
            match self.stream.read_buf(&mut self.rx).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn send(&mut self, packets: &[Packet]) {
        let mut buf = BytesMut::new();
        for p in packets {
            p.encode(&mut buf).unwrap();
        }
        self.stream.write_all(&buf).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// CONNECT → CONNACK 0, SUBSCRIBE → SUBACK; returns the CONNECT.
    async fn open(&mut self) -> Connect {
        let Some(Packet::Connect(connect)) = self.recv().await else {
            panic!("CONNECT first");
        };
        self.send(&[Packet::ConnAck(ConnAck::new(ConnectReturnCode::Accepted))])
            .await;
        let Some(Packet::Subscribe(sub)) = self.recv().await else {
            panic!("SUBSCRIBE after CONNACK");
        };
        assert_eq!(sub.filters.len(), 1);
        assert_eq!(sub.filters[0].filter, "$dps/registrations/res/#");
        assert_eq!(sub.filters[0].qos, QoS::AtLeastOnce);
        self.send(&[Packet::SubAck(SubAck {
            packet_id: sub.packet_id,
            codes: vec![SubAckCode::Granted(QoS::AtLeastOnce)],
        })])
        .await;
        connect
    }

    /// The next request PUBLISH (QoS 1).
    async fn request(&mut self) -> Publish {
        let Some(Packet::Publish(p)) = self.recv().await else {
            panic!("a request PUBLISH");
        };
        assert!(p.packet_id().is_some(), "requests go at QoS 1");
        p
    }

    /// PUBACK for `request`, then the response at QoS 1.
    async fn respond(&mut self, request: &Publish, topic: String, id: u16, body: &[u8]) {
        self.send(&[
            Packet::PubAck(PubAck {
                packet_id: request.packet_id().unwrap(),
            }),
            Packet::Publish(Publish::at_least_once(
                topic,
                PacketId::new(id).unwrap(),
                body.to_vec(),
            )),
        ])
        .await;
    }
}

/// `$rid` of a request topic.
fn rid(topic: &str) -> &str {
    let query = topic.split_once("?$rid=").unwrap().1;
    query.split('&').next().unwrap()
}

fn options(port: u16, ca: &str) -> RegisterOptions {
    let mut opts = RegisterOptions::new(
        format!("localhost:{port}"),
        IdScope::new("0ne00000001").unwrap(),
        RegistrationId::new("dev-1").unwrap(),
        Credential::SymmetricKey(DEVICE_KEY.into()),
    );
    opts.transport = Transport::Mqtt;
    opts.ca = Some(TrustedCa::Pem(ca.as_bytes().to_vec()));
    opts.flow.backoff_initial = Duration::from_millis(100);
    opts
}

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[tokio::test]
async fn registers_and_reconnects_after_a_lost_connection() {
    let pki = pki();
    let (l, port) = listener().await;
    let acceptor = pki.acceptor.clone();
    let server = tokio::spawn(async move {
        // First connection: the register goes unanswered and the connection drops.
        let mut first = Peer::accept(&l, &acceptor).await;
        let connect = first.open().await;
        let lost = first.request().await;
        drop(first);
        // Second connection: register, 202 with retry-after, poll, 200.
        let mut second = Peer::accept(&l, &acceptor).await;
        let reconnect = second.open().await;
        let register = second.request().await;
        let topic = format!(
            "$dps/registrations/res/202/?$rid={}&retry-after=1",
            rid(&register.topic)
        );
        second.respond(&register, topic, 7, ASSIGNING).await;
        let Some(Packet::PubAck(ack)) = second.recv().await else {
            panic!("the 202 is acknowledged");
        };
        assert_eq!(ack.packet_id.get(), 7);
        let poll = second.request().await;
        let topic = format!("$dps/registrations/res/200/?$rid={}", rid(&poll.topic));
        second.respond(&poll, topic, 8, ASSIGNED).await;
        let mut tail = Vec::new();
        while let Some(p) = second.recv().await {
            tail.push(p);
        }
        (connect, lost, reconnect, register, poll, tail)
    });
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        register(options(port, &pki.ca_pem)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(result.state.device_id.as_deref(), Some("dev-1"));
    let (connect, lost, reconnect, register, poll, tail) = server.await.unwrap();

    // CONNECT as the SDKs send it, with a SAS token the service accepts.
    assert_eq!(connect.client_id, "dev-1");
    assert!(connect.clean_session);
    assert_eq!(connect.keep_alive, 60);
    let username = connect.username.unwrap();
    assert!(
        username.starts_with(
            "0ne00000001/registrations/dev-1/api-version=2021-06-01&ClientVersion=dps-client%2F"
        ),
        "{username}"
    );
    let password = String::from_utf8(connect.password.unwrap()).unwrap();
    let token = SasToken::parse(&password).unwrap();
    let key = SigningKey::from_base64(DEVICE_KEY).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        verify_device(&token, "0ne00000001", "dev-1", &[&key], now),
        Ok(0)
    );
    assert!(reconnect.password.is_some(), "a fresh token on reconnect");

    // The register, unanswered, is sent again on the new connection.
    assert_eq!(lost.topic, "$dps/registrations/PUT/iotdps-register/?$rid=1");
    assert_eq!(&lost.payload[..], br#"{"registrationId":"dev-1"}"#);
    assert_eq!(register.topic, lost.topic);
    assert_eq!(
        poll.topic,
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=5.abc.def"
    );
    // The 200 is acknowledged, then DISCONNECT.
    assert_eq!(
        tail,
        [
            Packet::PubAck(PubAck {
                packet_id: PacketId::new(8).unwrap()
            }),
            Packet::Disconnect
        ]
    );
}

#[tokio::test]
async fn a_refused_connect_is_a_401() {
    let pki = pki();
    let (l, port) = listener().await;
    let acceptor = pki.acceptor.clone();
    tokio::spawn(async move {
        let mut peer = Peer::accept(&l, &acceptor).await;
        let _ = peer.recv().await;
        peer.send(&[Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::NotAuthorized,
        ))])
        .await;
        let _ = peer.recv().await;
    });
    let err = register(options(port, &pki.ca_pem)).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
    assert!(matches!(
        err,
        Error::Registration(FlowError::Rejected { status: 401, .. })
    ));
}

#[tokio::test]
async fn losses_in_a_row_are_bounded() {
    let pki = pki();
    let (l, port) = listener().await;
    let acceptor = pki.acceptor.clone();
    let server = tokio::spawn(async move {
        let mut connections = 0;
        // Every connection drops as soon as the register arrives.
        while let Ok(Ok((tcp, _))) = tokio::time::timeout(Duration::from_secs(5), l.accept()).await
        {
            connections += 1;
            let mut peer = Peer {
                stream: acceptor.accept(tcp).await.unwrap(),
                rx: BytesMut::new(),
            };
            peer.open().await;
            let _ = peer.request().await;
        }
        connections
    });
    let mut opts = options(port, &pki.ca_pem);
    opts.flow.max_retries = 2;
    let err = tokio::time::timeout(Duration::from_secs(20), register(opts))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert_eq!(server.await.unwrap(), 3, "the first try and two retries");
}

#[tokio::test]
async fn a_server_signed_by_another_ca_is_untrusted() {
    let (server_pki, other) = (pki(), pki());
    let (l, port) = listener().await;
    let acceptor = server_pki.acceptor.clone();
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let err = register(options(port, &other.ca_pem)).await.unwrap_err();
    assert!(err.is_untrusted_server(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("the server certificate of localhost:{port} is not trusted")
    );
}

#[tokio::test]
async fn an_unreachable_server_fails_at_once() {
    let (l, port) = listener().await;
    drop(l);
    let err = register(options(port, &pki().ca_pem)).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot connect to localhost:{port}")
    );
}
