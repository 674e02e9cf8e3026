//! One MQTT connection carrying a [`RegistrationFlow`], as a sans-I/O state machine: packets
//! and time in, packets and an [`End`] out. The driver owns the socket and the codec
//! (`dps_proto::mqtt::decode` / `Packet::encode`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dps_proto::http::DeviceRegistrationResult;
use dps_proto::mqtt::topic::{self, RESPONSE_FILTER, Response, Rid};
use dps_proto::mqtt::username::Username;
use dps_proto::mqtt::{
    Connect, ConnectReturnCode, Packet, PacketId, PubAck, Publish, QoS, SubAckCode, Subscribe,
    Subscription,
};

use crate::device::flow::{FlowError, RegistrationFlow, Request};

/// The keep-alive announced in CONNECT (60 s, as the Python SDK). A PINGREQ goes out after this
/// long without sending anything.
pub const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// How long the server gets to answer CONNECT.
pub const CONNACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server gets to answer SUBSCRIBE.
pub const SUBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server gets to answer a register or poll request (the HTTPS request timeout),
/// or a PINGREQ.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the connection was waiting for when its time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Waiting {
    /// The CONNACK.
    ConnAck,
    /// The SUBACK of the response subscription.
    SubAck,
    /// The response to a register or poll request.
    Response,
    /// The PINGRESP to a keep-alive PINGREQ.
    PingResp,
}

/// How a [`Connection`] ended, from [`Connection::poll_end`].
#[derive(Debug)]
#[non_exhaustive]
// Handed out once per connection, so the size of the result variant costs nothing worth a box
// (which would also spoil pattern matching on the outcome).
#[allow(clippy::large_enum_variant)]
pub enum End {
    /// The registration is over and DISCONNECT was the last packet handed out: close the
    /// connection and report the outcome.
    Finished(Result<DeviceRegistrationResult, FlowError>),
    /// The server refused the CONNECT with this return code.
    Refused(ConnectReturnCode),
    /// The connection closed (or failed) before the registration ended. A request in flight
    /// was reported to the flow as a transport error; reconnect with
    /// [`into_flow`](Connection::into_flow) when the flow has something due.
    Closed,
    /// The server did not answer in time; handled like [`End::Closed`].
    TimedOut(Waiting),
    /// The server broke the protocol (an undecodable packet, a packet a server never sends, a
    /// refused subscription): retrying will not help.
    Violation(String),
}

#[derive(Debug)]
enum Phase {
    /// CONNECT sent.
    ConnAck { deadline: Instant },
    /// SUBSCRIBE sent.
    SubAck {
        packet_id: PacketId,
        deadline: Instant,
    },
    /// Subscribed: requests may go out.
    Ready,
}

/// The request whose response is awaited.
#[derive(Debug)]
struct InFlight {
    rid: Rid,
    deadline: Instant,
}

/// One MQTT connection of a registering device, without I/O.
///
/// On the wire, as the official SDKs do it (device protocol reference §4, wire captures §5):
///
/// ```text
/// >>> CONNECT    client id {registrationId}, clean session, keep-alive 60,
///                user name {idScope}/registrations/{registrationId}/api-version={v}&ClientVersion=dps-client%2F…,
///                password  SharedAccessSignature sr=…&sig=…&se=…&skn=registration
/// <<< CONNACK    0
/// >>> SUBSCRIBE  $dps/registrations/res/# QoS 1
/// <<< SUBACK
/// >>> PUBLISH    QoS 1 $dps/registrations/PUT/iotdps-register/?$rid=1   {"registrationId":…}
/// <<< PUBACK
/// <<< PUBLISH    QoS 1 $dps/registrations/res/202/?$rid=1&retry-after=3   {"operationId":…,"status":"assigning"}
/// >>> PUBACK
///     … retry-after …
/// >>> PUBLISH    QoS 1 $dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=…   (empty)
/// <<< PUBACK, PUBLISH $dps/registrations/res/200/?$rid=2 {…"status":"assigned"…}
/// >>> PUBACK, DISCONNECT
/// ```
///
/// `$rid` is a counter; a response is matched to the request in flight by it, and responses
/// to anything else are acknowledged and dropped. The status in the topic, its `retry-after`
/// and the payload go to [`RegistrationFlow::handle_response`] unchanged, so retries,
/// throttling and errors follow exactly the HTTPS rules.
///
/// Calling order, like the flow's: after creating it and after every `handle_*`, take every
/// packet from [`poll_transmit`](Self::poll_transmit) and write them; then check
/// [`poll_end`](Self::poll_end); otherwise wait for input or
/// [`poll_timeout`](Self::poll_timeout) and feed [`handle_packet`](Self::handle_packet),
/// [`handle_close`](Self::handle_close), [`handle_decode_error`](Self::handle_decode_error) or
/// [`handle_timeout`](Self::handle_timeout).
///
/// ```
/// use std::time::Instant;
/// use dps_client::device::flow::RegistrationFlow;
/// use dps_client::device::mqtt::Connection;
/// use dps_proto::mqtt::{ConnAck, ConnectReturnCode, Packet, SubAck, SubAckCode, QoS};
/// use dps_types::{IdScope, RegistrationId};
///
/// let flow = RegistrationFlow::new(
///     IdScope::new("0ne00000001").unwrap(),
///     RegistrationId::new("dev-1").unwrap(),
///     None,
/// );
/// let now = Instant::now();
/// let mut conn = Connection::new(flow, "2021-06-01", "SharedAccessSignature sr=…".into(), now);
/// assert!(matches!(conn.poll_transmit(now), Some(Packet::Connect(_))));
/// conn.handle_packet(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Accepted)), now);
/// let Some(Packet::Subscribe(sub)) = conn.poll_transmit(now) else { panic!() };
/// conn.handle_packet(Packet::SubAck(SubAck { packet_id: sub.packet_id, codes: vec![SubAckCode::Granted(QoS::AtLeastOnce)] }), now);
/// let Some(Packet::Publish(register)) = conn.poll_transmit(now) else { panic!() };
/// assert_eq!(register.topic, "$dps/registrations/PUT/iotdps-register/?$rid=1");
/// ```
#[derive(Debug)]
#[must_use]
pub struct Connection {
    flow: RegistrationFlow,
    phase: Phase,
    connected: bool,
    answered: bool,
    /// Packets to hand out before anything else (SUBSCRIBE, PUBACKs), in order.
    queue: VecDeque<Packet>,
    next_packet_id: PacketId,
    next_rid: u64,
    in_flight: Option<InFlight>,
    /// When the PINGRESP to an outstanding PINGREQ is due.
    ping_deadline: Option<Instant>,
    /// When a packet was last handed out (for keep-alive).
    last_sent: Instant,
    /// Set once; handed out once by `poll_end`.
    end: Option<End>,
    ended: bool,
}

impl Connection {
    /// A connection that opens with CONNECT for `flow`'s device: client ID = registration ID,
    /// the DPS user name with `api_version` and this crate's user agent, `sas_token` as the
    /// password. `now` is when the connection was established.
    pub fn new(flow: RegistrationFlow, api_version: &str, sas_token: String, now: Instant) -> Self {
        Self::with_password(flow, api_version, Some(sas_token), now)
    }

    /// As [`Connection::new`], with the password optional: X.509 devices authenticate with
    /// their TLS client certificate and send no password.
    pub fn with_password(
        flow: RegistrationFlow,
        api_version: &str,
        sas_token: Option<String>,
        now: Instant,
    ) -> Self {
        let username = Username {
            id_scope: flow.id_scope().to_string(),
            registration_id: flow.registration_id().to_string(),
            api_version: Some(api_version.to_owned()),
            client_version: Some(crate::USER_AGENT.to_owned()),
        };
        let connect = Connect {
            client_id: flow.registration_id().to_string(),
            clean_session: true,
            keep_alive: u16::try_from(KEEP_ALIVE.as_secs()).unwrap_or(u16::MAX),
            username: Some(username.to_string()),
            password: sas_token.map(String::into_bytes),
            will: None,
        };
        Self {
            flow,
            phase: Phase::ConnAck {
                deadline: now + CONNACK_TIMEOUT,
            },
            connected: false,
            answered: false,
            queue: VecDeque::from([Packet::Connect(connect)]),
            next_packet_id: PacketId::MIN,
            next_rid: 1,
            in_flight: None,
            ping_deadline: None,
            last_sent: now,
            end: None,
            ended: false,
        }
    }

    /// True once the server accepted the CONNECT. A connection that ends before that never
    /// reached the service: the driver reports it as a connection failure.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// True once a response to one of this connection's requests arrived.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// The flow back, to carry on over a new connection after [`End::Closed`] or
    /// [`End::TimedOut`].
    pub fn into_flow(self) -> RegistrationFlow {
        self.flow
    }

    /// The next packet to write, if any: queued packets first, then the flow's next request
    /// once subscribed, DISCONNECT when the flow is over, PINGREQ after [`KEEP_ALIVE`] of
    /// silence.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Packet> {
        if self.ended {
            return None;
        }
        let packet = self.next_packet(now)?;
        self.last_sent = now;
        Some(packet)
    }

    fn next_packet(&mut self, now: Instant) -> Option<Packet> {
        if let Some(p) = self.queue.pop_front() {
            return Some(p);
        }
        if !matches!(self.phase, Phase::Ready) {
            return None;
        }
        if self.in_flight.is_none() {
            if let Some(outcome) = self.flow.poll_outcome() {
                self.finish(End::Finished(outcome));
                return Some(Packet::Disconnect);
            }
            if let Some(request) = self.flow.poll_transmit(now) {
                return Some(self.publish(request, now));
            }
            if self.flow.poll_timeout().is_none() {
                // Not reachable with a correct flow: nothing due, nothing in flight, no outcome.
                self.finish(End::Finished(Err(FlowError::Protocol(
                    "the registration flow stalled".into(),
                ))));
                return Some(Packet::Disconnect);
            }
        }
        if self.ping_deadline.is_none() && now >= self.last_sent + KEEP_ALIVE {
            self.ping_deadline = Some(now + RESPONSE_TIMEOUT);
            return Some(Packet::PingReq);
        }
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next: the deadline of what
    /// is awaited, the flow's next request, or the keep-alive. `None` once the connection ended.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        match self.phase {
            Phase::ConnAck { deadline } | Phase::SubAck { deadline, .. } => Some(deadline),
            Phase::Ready => [
                Some(self.last_sent + KEEP_ALIVE),
                self.ping_deadline,
                self.in_flight.as_ref().map(|f| f.deadline),
                self.in_flight
                    .is_none()
                    .then(|| self.flow.poll_timeout())
                    .flatten(),
            ]
            .into_iter()
            .flatten()
            .min(),
        }
    }

    /// How the connection ended, once: after [`End::Finished`] nothing is left to write.
    #[must_use]
    pub fn poll_end(&mut self) -> Option<End> {
        self.end.take()
    }

    /// Feeds a packet from the server.
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) {
        if self.ended {
            return;
        }
        if let Phase::ConnAck { .. } = self.phase {
            return match packet {
                Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Accepted => {
                    self.connected = true;
                    let packet_id = self.packet_id();
                    self.queue.push_back(Packet::Subscribe(Subscribe {
                        packet_id,
                        filters: vec![Subscription {
                            filter: RESPONSE_FILTER.into(),
                            qos: QoS::AtLeastOnce,
                        }],
                    }));
                    self.phase = Phase::SubAck {
                        packet_id,
                        deadline: now + SUBACK_TIMEOUT,
                    };
                }
                Packet::ConnAck(ack) => self.finish(End::Refused(ack.code)),
                other => self.violation(format!("{} before CONNACK", kind(&other))),
            };
        }
        match packet {
            Packet::SubAck(ack) if matches!(self.phase, Phase::SubAck { packet_id, .. } if packet_id == ack.packet_id) => {
                if let [SubAckCode::Granted(_)] = ack.codes.as_slice() {
                    self.phase = Phase::Ready;
                } else {
                    self.violation(format!(
                        "the server refused the subscription to {RESPONSE_FILTER}"
                    ));
                }
            }
            Packet::Publish(p) => {
                if let Some(packet_id) = p.packet_id() {
                    self.queue.push_back(Packet::PubAck(PubAck { packet_id }));
                }
                // Anything but the response to the request in flight (a late answer to a
                // request that timed out, another topic) is acknowledged and dropped.
                let Ok(response) = Response::parse(&p.topic) else {
                    return;
                };
                if self
                    .in_flight
                    .as_ref()
                    .is_some_and(|f| f.rid == response.rid)
                {
                    self.in_flight = None;
                    self.answered = true;
                    let retry_after = response
                        .retry_after
                        .map(|s| Duration::from_secs(u64::from(s)));
                    self.flow
                        .handle_response(response.status, retry_after, &p.payload, now);
                }
            }
            // The PUBACK of a request only says it arrived; its response is what counts.
            Packet::PubAck(_) | Packet::UnsubAck(_) => {}
            Packet::PingResp => self.ping_deadline = None,
            other => self.violation(format!("unexpected {} from the server", kind(&other))),
        }
    }

    /// Reports that the connection closed or failed (end of stream, I/O error, write timeout).
    pub fn handle_close(&mut self, now: Instant) {
        if !self.ended {
            self.lose(End::Closed, now);
        }
    }

    /// Reports bytes from the server that do not decode as an MQTT packet.
    pub fn handle_decode_error(&mut self, error: &dps_proto::mqtt::Error) {
        if !self.ended {
            self.violation(format!("malformed packet from the server: {error}"));
        }
    }

    /// Checks the deadlines at `now`: a missing CONNACK, SUBACK, response or PINGRESP ends the
    /// connection with [`End::TimedOut`]. (Timers that only make something due — the flow's
    /// next request, the keep-alive — are acted on by [`poll_transmit`](Self::poll_transmit).)
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        let expired = |deadline: Instant| now >= deadline;
        let waiting = match self.phase {
            Phase::ConnAck { deadline } if expired(deadline) => Some(Waiting::ConnAck),
            Phase::SubAck { deadline, .. } if expired(deadline) => Some(Waiting::SubAck),
            _ if self.in_flight.as_ref().is_some_and(|f| expired(f.deadline)) => {
                Some(Waiting::Response)
            }
            _ if self.ping_deadline.is_some_and(expired) => Some(Waiting::PingResp),
            _ => None,
        };
        if let Some(w) = waiting {
            self.lose(End::TimedOut(w), now);
        }
    }

    /// The register or poll PUBLISH for a flow request, now in flight.
    fn publish(&mut self, request: Request, now: Instant) -> Packet {
        let rid = Rid::new(&self.next_rid.to_string()).expect("a decimal number is a valid $rid");
        self.next_rid += 1;
        let (topic, payload) = match request {
            Request::Register { body } => (
                topic::Request::Register { rid: rid.clone() },
                // Serialising a struct of strings and JSON values cannot fail.
                serde_json::to_vec(&body).unwrap_or_default(),
            ),
            // The poll payload is ignored by DPS; .NET and Embedded C send it empty.
            Request::Poll { operation_id } => (
                topic::Request::Poll {
                    rid: rid.clone(),
                    operation_id,
                },
                Vec::new(),
            ),
        };
        self.in_flight = Some(InFlight {
            rid,
            deadline: now + RESPONSE_TIMEOUT,
        });
        let packet_id = self.packet_id();
        Packet::Publish(Publish::at_least_once(
            topic.to_string(),
            packet_id,
            payload,
        ))
    }

    fn packet_id(&mut self) -> PacketId {
        let id = self.next_packet_id;
        self.next_packet_id = id.next();
        id
    }

    /// Ends the connection; a request in flight becomes a transport error of the flow.
    fn lose(&mut self, end: End, now: Instant) {
        if self.in_flight.take().is_some() {
            self.flow.handle_transport_error(now);
        }
        self.finish(end);
    }

    fn violation(&mut self, what: String) {
        self.finish(End::Violation(what));
    }

    fn finish(&mut self, end: End) {
        self.queue.clear();
        self.end = Some(end);
        self.ended = true;
    }
}

/// The packet's name, for messages (its `Debug` would include the payload).
fn kind(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dps_proto::mqtt::{ConnAck, SubAck};
    use dps_types::{IdScope, RegistrationId, RegistrationStatus};

    const ASSIGNING: &[u8] = br#"{"operationId":"5.abc.def","status":"assigning"}"#;
    const ASSIGNED: &[u8] = br#"{"operationId":"5.abc.def","status":"assigned","registrationState":{"registrationId":"dev-1","assignedHub":"hub-a.example.net","deviceId":"dev-1","status":"assigned"}}"#;
    const TOKEN: &str =
        "SharedAccessSignature sr=0ne00000001%2Fregistrations%2Fdev-1&sig=x&se=1&skn=registration";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn flow() -> RegistrationFlow {
        RegistrationFlow::new(
            IdScope::new("0ne00000001").unwrap(),
            RegistrationId::new("dev-1").unwrap(),
            None,
        )
    }

    fn all(conn: &mut Connection, now: Instant) -> Vec<Packet> {
        std::iter::from_fn(|| conn.poll_transmit(now)).collect()
    }

    fn response(topic: &str, packet_id: u16, body: &[u8]) -> Packet {
        Packet::Publish(Publish::at_least_once(
            topic,
            PacketId::new(packet_id).unwrap(),
            body.to_vec(),
        ))
    }

    fn puback(id: u16) -> Packet {
        Packet::PubAck(PubAck {
            packet_id: PacketId::new(id).unwrap(),
        })
    }

    /// A connection past CONNACK and SUBACK at `t0`, with its register PUBLISH taken.
    fn subscribed(t0: Instant) -> (Connection, Publish) {
        let mut c = Connection::new(flow(), "2021-06-01", TOKEN.into(), t0);
        let _ = all(&mut c, t0);
        c.handle_packet(
            Packet::ConnAck(ConnAck::new(ConnectReturnCode::Accepted)),
            t0,
        );
        let Some(Packet::Subscribe(s)) = c.poll_transmit(t0) else {
            panic!("expected SUBSCRIBE");
        };
        c.handle_packet(
            Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                codes: vec![SubAckCode::Granted(QoS::AtLeastOnce)],
            }),
            t0,
        );
        let Some(Packet::Publish(p)) = c.poll_transmit(t0) else {
            panic!("expected the register PUBLISH");
        };
        (c, p)
    }

    #[test]
    fn a_registration_on_the_wire() {
        let t0 = Instant::now();
        let mut c = Connection::new(flow(), "2021-06-01", TOKEN.into(), t0);
        let Some(Packet::Connect(connect)) = c.poll_transmit(t0) else {
            panic!("CONNECT first");
        };
        assert_eq!(connect.client_id, "dev-1");
        assert!(connect.clean_session);
        assert_eq!(connect.keep_alive, 60);
        assert_eq!(
            connect.username.as_deref(),
            Some(concat!(
                "0ne00000001/registrations/dev-1/api-version=2021-06-01&ClientVersion=dps-client%2F",
                env!("CARGO_PKG_VERSION")
            ))
        );
        assert_eq!(connect.password.as_deref(), Some(TOKEN.as_bytes()));
        assert_eq!(connect.will, None);
        assert_eq!(c.poll_transmit(t0), None, "nothing before CONNACK");
        assert_eq!(c.poll_timeout(), Some(t0 + CONNACK_TIMEOUT));
        assert!(!c.is_connected());

        c.handle_packet(
            Packet::ConnAck(ConnAck::new(ConnectReturnCode::Accepted)),
            t0,
        );
        assert!(c.is_connected());
        let Some(Packet::Subscribe(sub)) = c.poll_transmit(t0) else {
            panic!("SUBSCRIBE after CONNACK");
        };
        assert_eq!(
            sub.filters,
            [Subscription {
                filter: "$dps/registrations/res/#".into(),
                qos: QoS::AtLeastOnce
            }]
        );
        assert_eq!(c.poll_transmit(t0), None, "no request before SUBACK");
        c.handle_packet(
            Packet::SubAck(SubAck {
                packet_id: sub.packet_id,
                codes: vec![SubAckCode::Granted(QoS::AtLeastOnce)],
            }),
            t0,
        );
        let Some(Packet::Publish(register)) = c.poll_transmit(t0) else {
            panic!("register after SUBACK");
        };
        assert_eq!(
            register.topic,
            "$dps/registrations/PUT/iotdps-register/?$rid=1"
        );
        assert_eq!(&register.payload[..], br#"{"registrationId":"dev-1"}"#);
        let register_id = register.packet_id().unwrap();
        assert_ne!(register_id, sub.packet_id);
        assert_eq!(c.poll_transmit(t0), None, "one request at a time");
        assert_eq!(c.poll_timeout(), Some(t0 + RESPONSE_TIMEOUT));

        c.handle_packet(puback(register_id.get()), t0);
        c.handle_packet(
            response(
                "$dps/registrations/res/202/?$rid=1&retry-after=3",
                1,
                ASSIGNING,
            ),
            t0,
        );
        assert_eq!(
            all(&mut c, t0),
            [puback(1)],
            "only the PUBACK until retry-after"
        );
        assert_eq!(c.poll_timeout(), Some(t0 + secs(3)));

        let t1 = t0 + secs(3);
        let Some(Packet::Publish(poll)) = c.poll_transmit(t1) else {
            panic!("poll after retry-after");
        };
        assert_eq!(
            poll.topic,
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=5.abc.def"
        );
        assert!(poll.payload.is_empty());
        c.handle_packet(
            response("$dps/registrations/res/200/?$rid=2", 2, ASSIGNED),
            t1,
        );
        assert_eq!(all(&mut c, t1), [puback(2), Packet::Disconnect]);
        let Some(End::Finished(Ok(result))) = c.poll_end() else {
            panic!("finished");
        };
        assert_eq!(result.state.status, RegistrationStatus::Assigned);
        assert!(c.poll_end().is_none(), "the end is handed out once");
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.poll_transmit(t1 + secs(100)), None);
    }

    #[test]
    fn responses_are_matched_by_rid() {
        let t0 = Instant::now();
        let (mut c, _) = subscribed(t0);
        // A stale answer and a foreign topic: acknowledged, not fed to the flow.
        c.handle_packet(
            response("$dps/registrations/res/200/?$rid=7", 5, ASSIGNED),
            t0,
        );
        c.handle_packet(response("devices/x/messages", 6, b"{}"), t0);
        c.handle_packet(
            Packet::Publish(Publish::at_most_once(
                "$dps/registrations/res/200/?$rid=8",
                ASSIGNED.to_vec(),
            )),
            t0,
        );
        assert_eq!(all(&mut c, t0), [puback(5), puback(6)]);
        assert!(c.poll_end().is_none());
        c.handle_packet(
            response("$dps/registrations/res/200/?$rid=1", 9, ASSIGNED),
            t0,
        );
        assert_eq!(all(&mut c, t0), [puback(9), Packet::Disconnect]);
        assert!(matches!(c.poll_end(), Some(End::Finished(Ok(_)))));
    }

    #[test]
    fn unauthorized_ends_the_registration() {
        let t0 = Instant::now();
        let (mut c, _) = subscribed(t0);
        let body = br#"{"errorCode":401002,"trackingId":"t","message":"Unauthorized","timestampUtc":"2020-04-10T05:24:22.4718526Z"}"#;
        c.handle_packet(response("$dps/registrations/res/401/?$rid=1", 1, body), t0);
        assert_eq!(all(&mut c, t0), [puback(1), Packet::Disconnect]);
        let Some(End::Finished(Err(e))) = c.poll_end() else {
            panic!("finished");
        };
        assert!(matches!(
            e,
            FlowError::Rejected {
                status: 401,
                error_code: Some(401_002),
                ..
            }
        ));
        // The server closing right after is no news.
        c.handle_close(t0);
        assert!(c.poll_end().is_none());
    }

    #[test]
    fn throttling_is_retried_on_the_same_connection() {
        let t0 = Instant::now();
        let (mut c, _) = subscribed(t0);
        c.handle_packet(
            response("$dps/registrations/res/429/?$rid=1&retry-after=5", 1, b"{}"),
            t0,
        );
        assert_eq!(all(&mut c, t0), [puback(1)]);
        assert_eq!(c.poll_timeout(), Some(t0 + secs(5)));
        let Some(Packet::Publish(again)) = c.poll_transmit(t0 + secs(5)) else {
            panic!("the register again");
        };
        assert_eq!(
            again.topic,
            "$dps/registrations/PUT/iotdps-register/?$rid=2"
        );
    }

    #[test]
    fn refused_connect() {
        let t0 = Instant::now();
        let mut c = Connection::new(flow(), "2021-06-01", TOKEN.into(), t0);
        let _ = all(&mut c, t0);
        c.handle_packet(
            Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized)),
            t0,
        );
        assert_eq!(all(&mut c, t0), []);
        assert!(matches!(
            c.poll_end(),
            Some(End::Refused(ConnectReturnCode::NotAuthorized))
        ));
        assert!(!c.is_connected());
    }

    #[test]
    fn deadlines() {
        let t0 = Instant::now();
        let mut c = Connection::new(flow(), "2021-06-01", TOKEN.into(), t0);
        let _ = all(&mut c, t0);
        c.handle_timeout(t0 + secs(9));
        assert!(c.poll_end().is_none());
        c.handle_timeout(t0 + CONNACK_TIMEOUT);
        assert!(matches!(
            c.poll_end(),
            Some(End::TimedOut(Waiting::ConnAck))
        ));

        // No response: the flow counts a transport error and schedules the retry.
        let (mut c, _) = subscribed(t0);
        c.handle_timeout(t0 + RESPONSE_TIMEOUT);
        assert!(matches!(
            c.poll_end(),
            Some(End::TimedOut(Waiting::Response))
        ));
        let mut f = c.into_flow();
        assert!(f.poll_outcome().is_none());
        assert!(f.poll_timeout().unwrap() > t0 + RESPONSE_TIMEOUT);
    }

    #[test]
    fn keep_alive() {
        let t0 = Instant::now();
        let (mut c, _) = subscribed(t0);
        c.handle_packet(
            response(
                "$dps/registrations/res/202/?$rid=1&retry-after=50",
                1,
                ASSIGNING,
            ),
            t0 + secs(1),
        );
        assert_eq!(all(&mut c, t0 + secs(1)), [puback(1)]);
        // The PUBACK was the last packet out; the poll is due before the keep-alive.
        assert_eq!(c.poll_timeout(), Some(t0 + secs(51)));

        // A flow allowed to wait longer than the keep-alive pings in between.
        let patient = || {
            RegistrationFlow::with_config(
                IdScope::new("0ne00000001").unwrap(),
                RegistrationId::new("dev-1").unwrap(),
                None,
                crate::device::flow::FlowConfig {
                    max_retry_after: secs(600),
                    ..Default::default()
                },
            )
        };
        for answered in [true, false] {
            let mut c = Connection::new(patient(), "2021-06-01", TOKEN.into(), t0);
            let _ = all(&mut c, t0);
            c.handle_packet(
                Packet::ConnAck(ConnAck::new(ConnectReturnCode::Accepted)),
                t0,
            );
            let Some(Packet::Subscribe(s)) = c.poll_transmit(t0) else {
                panic!("SUBSCRIBE");
            };
            c.handle_packet(
                Packet::SubAck(SubAck {
                    packet_id: s.packet_id,
                    codes: vec![SubAckCode::Granted(QoS::AtLeastOnce)],
                }),
                t0,
            );
            let _ = all(&mut c, t0);
            c.handle_packet(
                response("$dps/registrations/res/503/?$rid=1&retry-after=200", 1, b""),
                t0,
            );
            assert_eq!(all(&mut c, t0), [puback(1)]);
            let ping_at = t0 + KEEP_ALIVE;
            assert_eq!(c.poll_timeout(), Some(ping_at));
            assert_eq!(c.poll_transmit(ping_at), Some(Packet::PingReq));
            assert_eq!(c.poll_transmit(ping_at), None, "one ping outstanding");
            assert_eq!(c.poll_timeout(), Some(ping_at + RESPONSE_TIMEOUT));
            if answered {
                c.handle_packet(Packet::PingResp, ping_at + secs(1));
                c.handle_timeout(ping_at + RESPONSE_TIMEOUT);
                assert!(c.poll_end().is_none(), "answered");
                assert_eq!(c.poll_timeout(), Some(ping_at + KEEP_ALIVE));
            } else {
                c.handle_timeout(ping_at + RESPONSE_TIMEOUT);
                assert!(matches!(
                    c.poll_end(),
                    Some(End::TimedOut(Waiting::PingResp))
                ));
            }
        }
    }

    #[test]
    fn closed_while_in_flight_is_a_transport_error() {
        let t0 = Instant::now();
        let (mut c, _) = subscribed(t0);
        c.handle_close(t0);
        assert!(matches!(c.poll_end(), Some(End::Closed)));
        assert_eq!(c.poll_transmit(t0), None);
        let mut f = c.into_flow();
        assert!(f.poll_outcome().is_none());
        assert_eq!(f.poll_timeout(), Some(t0 + secs(1)), "first back-off");
    }

    #[test]
    fn protocol_violations() {
        let t0 = Instant::now();
        let mut c = Connection::new(flow(), "2021-06-01", TOKEN.into(), t0);
        let _ = all(&mut c, t0);
        c.handle_packet(Packet::PingResp, t0);
        let Some(End::Violation(what)) = c.poll_end() else {
            panic!("violation");
        };
        assert_eq!(what, "PINGRESP before CONNACK");

        let (mut c, _) = subscribed(t0);
        c.handle_packet(Packet::PingReq, t0);
        assert!(matches!(c.poll_end(), Some(End::Violation(_))));

        let mut c = Connection::new(flow(), "2021-06-01", TOKEN.into(), t0);
        let _ = all(&mut c, t0);
        c.handle_packet(
            Packet::ConnAck(ConnAck::new(ConnectReturnCode::Accepted)),
            t0,
        );
        let Some(Packet::Subscribe(s)) = c.poll_transmit(t0) else {
            panic!("SUBSCRIBE");
        };
        c.handle_packet(
            Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                codes: vec![SubAckCode::Failure],
            }),
            t0,
        );
        let Some(End::Violation(what)) = c.poll_end() else {
            panic!("violation");
        };
        assert!(what.contains("refused the subscription"), "{what}");

        let (mut c, _) = subscribed(t0);
        c.handle_decode_error(&dps_proto::mqtt::Error::MalformedRemainingLength);
        assert!(matches!(c.poll_end(), Some(End::Violation(_))));
    }
}
