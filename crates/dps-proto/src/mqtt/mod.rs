//! The MQTT binding of the device API: an MQTT 3.1.1 packet codec and the `$dps/registrations`
//! topic and user-name grammar, shared by the server and the client (one codec, not two).
//!
//! Sans-I/O: [`decode`] takes bytes from a [`BytesMut`] the caller filled from its socket and
//! returns `Ok(None)` until a whole packet is there; [`Packet::encode`] appends to one. The
//! `tokio_util::codec` adapter is a few lines in dps-server / dps-client. What this module does
//! **not** do: sessions, keep-alive timers, packet-id bookkeeping or the ordering rules of
//! reference §4.4 (CONNACK, then SUBACK, then PUBACK before each response) — those belong to the
//! connection state machines that call it.
//!
//! Start from [`decode`] and [`Packet`]; one file per packet ([`Connect`], [`Publish`], …)
//! holds its type and the annotated bytes of the SDK captures; [`topic`] parses request topics
//! and builds response topics; [`username`] parses the CONNECT user name.
//!
//! Decisions: QoS 2 is refused ([`Error::UnsupportedQos`]); only protocol level 4 is accepted
//! (see [`Connect`]); untrusted input is bounded by [`Limits`], checked as early as possible
//! (type, flags and size before the body arrives).
//!
//! ```
//! use bytes::BytesMut;
//! use dps_proto::mqtt::{self, Limits, Packet, PacketId, PubAck, Publish, topic};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limits = Limits::default();
//! // A register PUBLISH (QoS 1, packet id 0x1955, payload `{}`) arriving in two reads.
//! let wire = b"\x32\x35\x00\x2f$dps/registrations/PUT/iotdps-register/?$rid=42\x19\x55{}";
//! let mut rx = BytesMut::from(&wire[..20]);
//! assert_eq!(mqtt::decode(&mut rx, &limits)?, None); // need more bytes, nothing consumed
//! rx.extend_from_slice(&wire[20..]);
//! let Some(Packet::Publish(request)) = mqtt::decode(&mut rx, &limits)? else {
//!     return Err("expected a PUBLISH".into());
//! };
//! let topic::Request::Register { rid } = topic::Request::parse(&request.topic)? else {
//!     return Err("expected a register request".into());
//! };
//!
//! // PUBACK first, then the response at QoS 1 with `$rid` echoed first.
//! let mut tx = BytesMut::new();
//! let packet_id = request.packet_id().ok_or("QoS 0 request")?;
//! Packet::PubAck(PubAck { packet_id }).encode(&mut tx)?;
//! let response = topic::response_topic(202, &rid, Some(3));
//! assert_eq!(response, "$dps/registrations/res/202/?$rid=42&retry-after=3");
//! let body = &br#"{"operationId":"5.abc.def","status":"assigning"}"#[..];
//! Packet::Publish(Publish::at_least_once(response, PacketId::MIN, body)).encode(&mut tx)?;
//! assert_eq!(&tx[..4], b"\x40\x02\x19\x55");
//! # Ok(())
//! # }
//! ```

mod codec;
mod connack;
mod connect;
mod disconnect;
mod error;
mod ping;
mod puback;
mod publish;
mod suback;
mod subscribe;
#[cfg(test)]
mod tests;
pub mod topic;
mod unsuback;
mod unsubscribe;
pub mod username;

use bytes::{Buf, BytesMut};

pub use codec::{MAX_REMAINING_LENGTH, PacketId, QoS};
pub use connack::{ConnAck, ConnectReturnCode};
pub use connect::{Connect, Will};
pub use error::{Error, Field};
pub use puback::PubAck;
pub use publish::{Publish, PublishQos};
pub use suback::{SubAck, SubAckCode};
pub use subscribe::{Subscribe, Subscription};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

use codec::{FixedHeader, Reader, kind};

/// Default bound on topic names and filters, in bytes.
pub const DEFAULT_MAX_TOPIC: usize = 512;

/// Bounds applied while decoding untrusted input. The defaults fit every DPS SDK with room to
/// spare; a client decoding a trusted server may raise them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest remaining length (all of a packet but its 2-5 header bytes). Default: a 96 KB
    /// PUBLISH payload ([`MAX_BODY_BYTES`](crate::http::MAX_BODY_BYTES)) plus a
    /// [`DEFAULT_MAX_TOPIC`] topic, its length prefix and a packet id: 98,820.
    pub max_packet: usize,
    /// Longest topic name or filter (PUBLISH, SUBSCRIBE, UNSUBSCRIBE, will). Default 512.
    pub max_topic: usize,
    /// Longest CONNECT client ID. Default 128, the longest registration ID.
    pub max_client_id: usize,
    /// Longest CONNECT user name. Default 1,024 (Python's, the longest seen, is 177).
    pub max_username: usize,
    /// Longest CONNECT password. Default 4,096, dps-attest's `MAX_TOKEN_LEN` for SAS tokens.
    pub max_password: usize,
    /// Most topic filters in one SUBSCRIBE / UNSUBSCRIBE (and return codes in a SUBACK).
    /// Default 8; every SDK sends one.
    pub max_filters: usize,
}

impl Limits {
    /// The defaults, as a constant.
    pub const DEFAULT: Self = Self {
        max_packet: crate::http::MAX_BODY_BYTES + 2 + DEFAULT_MAX_TOPIC + 2,
        max_topic: DEFAULT_MAX_TOPIC,
        max_client_id: 128,
        max_username: 1024,
        max_password: 4096,
        max_filters: 8,
    };

    /// Only the bounds of the format itself (256 MB packets, 64 KB fields): for trusted peers
    /// and tests.
    pub const UNBOUNDED: Self = Self {
        max_packet: MAX_REMAINING_LENGTH,
        max_topic: usize::MAX,
        max_client_id: usize::MAX,
        max_username: usize::MAX,
        max_password: usize::MAX,
        max_filters: usize::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// An MQTT 3.1.1 control packet, without the QoS 2 flow (PUBREC, PUBREL, PUBCOMP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Client → server: open the session.
    Connect(Connect),
    /// Server → client: CONNECT verdict.
    ConnAck(ConnAck),
    /// Either way: application message at QoS 0 or 1.
    Publish(Publish),
    /// Either way: QoS 1 acknowledgement.
    PubAck(PubAck),
    /// Client → server.
    Subscribe(Subscribe),
    /// Server → client.
    SubAck(SubAck),
    /// Client → server.
    Unsubscribe(Unsubscribe),
    /// Server → client.
    UnsubAck(UnsubAck),
    /// Client → server keep-alive.
    PingReq,
    /// Server → client keep-alive answer.
    PingResp,
    /// Client → server: clean close.
    Disconnect,
}

/// Decodes one packet from the front of `buf`.
///
/// * `Ok(None)`: not a whole packet yet; `buf` is untouched, read more and call again.
/// * `Ok(Some(packet))`: the packet's bytes have been removed from `buf` (more may follow).
/// * `Err(_)`: a protocol violation; close the connection (§4.8), after a CONNACK if
///   [`Error::connack_code`] says so. Errors in the fixed header (type, flags, size) are found
///   from the first bytes and leave `buf` untouched; errors in the body remove the packet.
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Packet>, Error> {
    let Some(h) = FixedHeader::parse(buf, limits)? else {
        return Ok(None);
    };
    let total = h.header_len + h.remaining;
    if buf.len() < total {
        return Ok(None);
    }
    let mut body = buf.split_to(total).freeze();
    body.advance(h.header_len);
    let r = Reader::new(body);
    let packet = match h.packet_type {
        kind::CONNECT => Packet::Connect(Connect::read(r, limits)?),
        kind::CONNACK => Packet::ConnAck(ConnAck::read(r)?),
        kind::PUBLISH => Packet::Publish(Publish::read(h.flags, r, limits)?),
        kind::PUBACK => Packet::PubAck(PubAck::read(r)?),
        kind::SUBSCRIBE => Packet::Subscribe(Subscribe::read(r, limits)?),
        kind::SUBACK => Packet::SubAck(SubAck::read(r, limits)?),
        kind::UNSUBSCRIBE => Packet::Unsubscribe(Unsubscribe::read(r, limits)?),
        kind::UNSUBACK => Packet::UnsubAck(UnsubAck::read(r)?),
        kind::PINGREQ => r.finish().map(|()| Packet::PingReq)?,
        kind::PINGRESP => r.finish().map(|()| Packet::PingResp)?,
        kind::DISCONNECT => r.finish().map(|()| Packet::Disconnect)?,
        t => return Err(Error::UnexpectedPacketType(t)),
    };
    Ok(Some(packet))
}

/// Appends `packet` to `buf`; see [`Packet::encode`].
pub fn encode(packet: &Packet, buf: &mut BytesMut) -> Result<(), Error> {
    packet.encode(buf)
}

impl Packet {
    /// Appends the packet's bytes to `buf`. Refuses (writing nothing) what [`decode`] would
    /// refuse structurally: fields over 65,535 bytes or packets over [`MAX_REMAINING_LENGTH`],
    /// strings with U+0000, wildcards in topic names, misplaced wildcards in filters, empty
    /// filter lists, a password without a user name, session-present on a refusal. [`Limits`]
    /// are the receiver's business and are not applied.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), Error> {
        use bytes::BufMut;
        let (first, len) = match self {
            Self::Connect(p) => (0x10, p.encoded_len()?),
            Self::ConnAck(p) => (0x20, p.encoded_len()?),
            Self::Publish(p) => (p.first_byte(), p.encoded_len()?),
            Self::PubAck(_) => (0x40, 2),
            Self::Subscribe(p) => (0x82, p.encoded_len()?),
            Self::SubAck(p) => (0x90, p.encoded_len()?),
            Self::Unsubscribe(p) => (0xa2, p.encoded_len()?),
            Self::UnsubAck(_) => (0xb0, 2),
            Self::PingReq => (0xc0, 0),
            Self::PingResp => (0xd0, 0),
            Self::Disconnect => (0xe0, 0),
        };
        if len > MAX_REMAINING_LENGTH {
            return Err(Error::PacketTooLarge {
                len,
                max: MAX_REMAINING_LENGTH,
            });
        }
        buf.reserve(1 + codec::varint_len(len) + len);
        buf.put_u8(first);
        codec::put_varint(buf, len);
        match self {
            Self::Connect(p) => p.write(buf),
            Self::ConnAck(p) => p.write(buf),
            Self::Publish(p) => p.write(buf),
            Self::PubAck(p) => p.write(buf),
            Self::Subscribe(p) => p.write(buf),
            Self::SubAck(p) => p.write(buf),
            Self::Unsubscribe(p) => p.write(buf),
            Self::UnsubAck(p) => p.write(buf),
            Self::PingReq | Self::PingResp | Self::Disconnect => {}
        }
        Ok(())
    }
}
