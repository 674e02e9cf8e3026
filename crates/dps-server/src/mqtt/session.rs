//! One MQTT connection of a device: CONNECT, SUBSCRIBE, then register / poll requests answered
//! through the same `dps-service` calls as HTTPS, so every rule is identical.
//!
//! Ordering (reference §4.4): CONNACK (session-present 0, whatever clean-session said) before
//! anything else; SUBACK in the order SUBSCRIBEs arrive; for a QoS 1 request its PUBACK before
//! its response; responses at QoS 1 on `$dps/registrations/res/{status}/?$rid=…`. Credentials
//! are checked when the device registers, not at CONNECT: a bad token gets its 401 on the
//! response topic, then the connection closes once the client has left (UNSUBSCRIBE answered,
//! DISCONNECT) or after [`REFUSED_LINGER`].
//!
//! Bounds: the first packet must arrive within [`CONNECT_TIMEOUT`]; afterwards the connection
//! closes after 1.5 × keep-alive of silence (or [`MAX_IDLE`] with keep-alive 0); packets are
//! bounded by the codec's `Limits`, so a connection holds at most one packet of input; QoS 1
//! responses are not retransmitted (clean sessions), so nothing accumulates per connection.

use std::time::Duration;

use bytes::BytesMut;
use dps_proto::WireError;
use dps_proto::api_version;
use dps_proto::http::{DeviceRegistration, RegistrationOperationStatus};
use dps_proto::mqtt::topic::{Request, Rid, is_response_filter, response_topic};
use dps_proto::mqtt::username::Username;
use dps_proto::mqtt::{
    self, ConnAck, ConnectReturnCode, Limits, Packet, PacketId, PubAck, Publish, QoS, SubAck,
    SubAckCode, UnsubAck,
};
use dps_service::{DeviceCredential, HubRegistry, RegisterRequest, Service};
use dps_store::Store;
use dps_types::Rejection;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Time allowed for the CONNECT packet.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence tolerated when the client asked for no keep-alive.
pub const MAX_IDLE: Duration = Duration::from_secs(300);
/// Time allowed to write one batch of packets to a client that stopped reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests to unknown topics tolerated before the connection is closed.
pub const MAX_UNKNOWN_TOPICS: u32 = 8;
/// After a 401, how long the client gets to leave on its own (UNSUBSCRIBE, DISCONNECT) before
/// the connection is closed.
pub const REFUSED_LINGER: Duration = Duration::from_secs(5);

/// Why a session ended (for the debug log).
#[derive(Debug)]
pub(crate) enum End {
    Closed,
    Timeout,
    /// Input that does not decode; kept typed so CONNECT errors can pick their CONNACK.
    Malformed(#[allow(dead_code)] mqtt::Error),
    Protocol(#[allow(dead_code)] String),
    Io(#[allow(dead_code)] std::io::Error),
    Refused,
}

struct Device {
    id_scope: String,
    registration_id: String,
    credential: Option<String>,
    legacy_api: bool,
    /// The TLS client chain (X.509 devices connect without a password) and address.
    peer: crate::Peer,
}

struct Conn<IO> {
    io: IO,
    rx: BytesMut,
    tx: BytesMut,
    limits: Limits,
    next_id: PacketId,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    async fn read(&mut self, idle: Duration) -> Result<Packet, End> {
        loop {
            match mqtt::decode(&mut self.rx, &self.limits) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(End::Malformed(e)),
            }
            match tokio::time::timeout(idle, self.io.read_buf(&mut self.rx)).await {
                Err(_) => return Err(End::Timeout),
                Ok(Ok(0)) => return Err(End::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(End::Io(e)),
            }
        }
    }

    fn queue(&mut self, p: &Packet) -> Result<(), End> {
        p.encode(&mut self.tx)
            .map_err(|e| End::Protocol(format!("encoding a reply: {e}")))
    }

    async fn flush(&mut self) -> Result<(), End> {
        let w = async {
            self.io.write_all(&self.tx).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, w).await {
            Err(_) => Err(End::Timeout),
            Ok(Err(e)) => Err(End::Io(e)),
            Ok(Ok(())) => {
                self.tx.clear();
                Ok(())
            }
        }
    }

    fn respond(
        &mut self,
        status: u16,
        rid: &Rid,
        retry_after: Option<u32>,
        body: Vec<u8>,
    ) -> Result<(), End> {
        let id = self.next_id;
        self.next_id = id.next();
        self.queue(&Packet::Publish(Publish::at_least_once(
            response_topic(status, rid, retry_after),
            id,
            body,
        )))
    }
}

/// Runs one connection to its end.
pub(crate) async fn run<S: Store, H: HubRegistry, IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    svc: &Service<S, H>,
    peer: crate::Peer,
) -> End {
    let mut c = Conn {
        io,
        rx: BytesMut::with_capacity(1024),
        tx: BytesMut::with_capacity(1024),
        limits: Limits::default(),
        next_id: PacketId::MIN,
    };
    let (device, idle) = match connect(&mut c, peer).await {
        Ok(d) => d,
        Err(e) => return e,
    };
    let mut unknown = 0;
    loop {
        let packet = match c.read(idle).await {
            Ok(p) => p,
            Err(e) => return e,
        };
        let outcome = match packet {
            Packet::Subscribe(s) => {
                let codes = s
                    .filters
                    .iter()
                    .map(|f| {
                        if is_response_filter(&f.filter) {
                            SubAckCode::Granted(if f.qos == QoS::AtMostOnce {
                                QoS::AtMostOnce
                            } else {
                                QoS::AtLeastOnce
                            })
                        } else {
                            SubAckCode::Failure
                        }
                    })
                    .collect();
                c.queue(&Packet::SubAck(SubAck {
                    packet_id: s.packet_id,
                    codes,
                }))
            }
            Packet::Unsubscribe(u) => c.queue(&Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
            })),
            Packet::PingReq => c.queue(&Packet::PingResp),
            Packet::PubAck(_) => Ok(()),
            Packet::Disconnect => return End::Closed,
            Packet::Publish(p) => {
                if let Some(packet_id) = p.packet_id()
                    && let Err(e) = c.queue(&Packet::PubAck(PubAck { packet_id }))
                {
                    return e;
                }
                match Request::parse(&p.topic) {
                    Ok(req) => match request(&mut c, svc, &device, req, &p.payload).await {
                        Ok(true) => Ok(()),
                        Ok(false) => {
                            if c.flush().await.is_ok() {
                                linger(&mut c).await;
                            }
                            return End::Refused;
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => {
                        unknown += 1;
                        tracing::debug!(topic = %p.topic, error = %e, "mqtt publish to an unknown topic");
                        if unknown > MAX_UNKNOWN_TOPICS {
                            Err(End::Protocol("too many publishes to unknown topics".into()))
                        } else {
                            Ok(())
                        }
                    }
                }
            }
            other => Err(End::Protocol(format!(
                "unexpected packet from a client: {other:?}"
            ))),
        };
        if let Err(e) = outcome {
            return e;
        }
        if let Err(e) = c.flush().await {
            return e;
        }
    }
}

/// After a refusal: answer the client's teardown for at most [`REFUSED_LINGER`], then let the
/// caller close. The Node SDK unsubscribes before it disconnects, and mqtt.js never completes
/// its `end()` (so `register()` never settles) if the connection closes with the UNSUBSCRIBE
/// unanswered; Python and .NET just DISCONNECT. Anything else ends the wait.
async fn linger<IO: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<IO>) {
    let deadline = tokio::time::Instant::now() + REFUSED_LINGER;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let reply = match c.read(left).await {
            Ok(Packet::Unsubscribe(u)) => Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
            }),
            Ok(Packet::PingReq) => Packet::PingResp,
            Ok(Packet::PubAck(_)) => continue,
            _ => return,
        };
        if c.queue(&reply).is_err() || c.flush().await.is_err() {
            return;
        }
    }
}

/// Reads and answers CONNECT. Returns the device and the idle limit.
async fn connect<IO: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<IO>,
    peer: crate::Peer,
) -> Result<(Device, Duration), End> {
    let first = match c.read(CONNECT_TIMEOUT).await {
        Ok(p) => p,
        Err(End::Malformed(e)) => {
            // A wrong protocol level is answered with CONNACK 0x01 before closing. (The
            // decoder has already consumed a CONNECT whose body failed, so the typed error is
            // all there is to go on.)
            if let Some(code) = e.connack_code() {
                let _ = c.queue(&Packet::ConnAck(ConnAck {
                    session_present: false,
                    code,
                }));
                let _ = c.flush().await;
            }
            return Err(End::Malformed(e));
        }
        Err(e) => return Err(e),
    };
    let Packet::Connect(connect) = first else {
        return Err(End::Protocol("the first packet is not CONNECT".into()));
    };
    let refuse = |code| {
        Packet::ConnAck(ConnAck {
            session_present: false,
            code,
        })
    };
    let parsed = connect.username.as_deref().map(Username::parse);
    let user = match parsed {
        Some(Ok(u)) if u.registration_id.eq_ignore_ascii_case(&connect.client_id) => u,
        Some(Ok(_)) => {
            c.queue(&refuse(ConnectReturnCode::IdentifierRejected))?;
            let _ = c.flush().await;
            return Err(End::Protocol(
                "client id differs from the user name's registration id".into(),
            ));
        }
        _ => {
            c.queue(&refuse(ConnectReturnCode::BadUsernameOrPassword))?;
            let _ = c.flush().await;
            return Err(End::Protocol("missing or malformed user name".into()));
        }
    };
    let version = match api_version::device(user.api_version.as_deref().or(Some("2019-03-31"))) {
        Ok(v) => v,
        Err(_) => {
            c.queue(&refuse(ConnectReturnCode::BadUsernameOrPassword))?;
            let _ = c.flush().await;
            return Err(End::Protocol("unsupported api-version".into()));
        }
    };
    let credential = match connect.password {
        Some(p) => match String::from_utf8(p) {
            Ok(s) => Some(s),
            Err(_) => {
                c.queue(&refuse(ConnectReturnCode::BadUsernameOrPassword))?;
                let _ = c.flush().await;
                return Err(End::Protocol("password is not UTF-8".into()));
            }
        },
        None => None,
    };
    c.queue(&Packet::ConnAck(ConnAck {
        session_present: false,
        code: ConnectReturnCode::Accepted,
    }))?;
    c.flush().await?;
    let idle = match connect.keep_alive {
        0 => MAX_IDLE,
        k => Duration::from_millis(u64::from(k) * 1500),
    };
    let device = Device {
        id_scope: user.id_scope,
        registration_id: user.registration_id,
        credential,
        legacy_api: version.is_legacy_sticky(),
        peer,
    };
    Ok((device, idle))
}

/// Answers one request. `Ok(false)` means the credentials were refused: close after the reply.
async fn request<S: Store, H: HubRegistry, IO: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<IO>,
    svc: &Service<S, H>,
    d: &Device,
    req: Request,
    payload: &[u8],
) -> Result<bool, End> {
    let credential = match d.credential.as_deref() {
        Some(token) => DeviceCredential::Sas(token),
        None if !d.peer.certs.is_empty() => DeviceCredential::X509(&d.peer.certs),
        None => DeviceCredential::None,
    };
    let retry_after = svc.options().retry_after_secs;
    let result: Result<(u16, Option<u32>, Vec<u8>), Rejection> = async {
        match &req {
            Request::Register { .. } => {
                let body = DeviceRegistration::decode(payload)?;
                body.check_id(&d.registration_id)?;
                let op = svc
                    .register(RegisterRequest {
                        id_scope: &d.id_scope,
                        registration_id: &d.registration_id,
                        credential,
                        payload: body.payload,
                        legacy_api: d.legacy_api,
                        source: d.peer.addr.map(|a| a.ip()),
                    })
                    .await?;
                let json = serde_json::to_vec(&RegistrationOperationStatus::accepted(&op))
                    .map_err(|_| Rejection::Internal)?;
                Ok((202, Some(retry_after), json))
            }
            Request::Poll { operation_id, .. } => {
                let op = svc
                    .operation_status(&d.id_scope, &d.registration_id, operation_id, credential)
                    .await?;
                let (code, body) = RegistrationOperationStatus::poll(&op);
                let json = serde_json::to_vec(&body).map_err(|_| Rejection::Internal)?;
                Ok((code, (code == 202).then_some(retry_after), json))
            }
        }
    }
    .await;
    let rid = req.rid();
    match result {
        Ok((status, retry, body)) => {
            c.respond(status, rid, retry, body)?;
            Ok(true)
        }
        Err(r) => {
            let w = WireError::from_rejection(&r);
            if let Rejection::Unauthorized(reason) = &r {
                tracing::info!(registration_id = %d.registration_id, %reason, "mqtt device unauthorized");
            }
            let tracking = uuid::Uuid::new_v4().to_string();
            let body = serde_json::to_vec(&w.body(&tracking, svc.now()))
                .map_err(|_| End::Protocol("encoding an error".into()))?;
            c.respond(w.status, rid, w.retry_after, body)?;
            Ok(w.status != 401)
        }
    }
}
