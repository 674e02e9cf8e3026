//! PUBLISH (MQTT 3.1.1 §3.3) in both directions: device requests on
//! `$dps/registrations/{PUT|GET}/…` and DPS responses on `$dps/registrations/res/…` (the topic
//! grammar is in [`topic`](super::topic)). QoS 0 and 1 only: the C and Java SDKs publish at 0,
//! Node, Python and .NET at 1, DPS answers at 1; a QoS 2 PUBLISH is
//! [`Error::UnsupportedQos`](super::Error::UnsupportedQos), refused from its first byte.
//!
//! The payload is a zero-copy slice of the receive buffer. Its 96 KB bound belongs to the body
//! decoder ([`DeviceRegistration::decode`](crate::http::DeviceRegistration::decode) answers 413
//! with the request's `$rid`); the codec only caps the whole packet at
//! [`Limits::max_packet`](super::Limits::max_packet).

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{Reader, check_topic_name, string_len};
use super::{Error, Field, Limits, PacketId};

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Topic name (no wildcards).
    pub topic: String,
    /// Delivery: QoS 0, or QoS 1 with its packet identifier.
    pub qos: PublishQos,
    /// RETAIN flag; DPS never sets it.
    pub retain: bool,
    /// Application message: the DPS JSON, `" "` on Node/Python polls, or empty.
    pub payload: Bytes,
}

/// PUBLISH delivery: QoS 2 is not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishQos {
    /// QoS 0: no packet identifier, no acknowledgement, DUP never set (MQTT-3.3.1-2).
    AtMostOnce,
    /// QoS 1: answered by a PUBACK carrying `packet_id`.
    AtLeastOnce {
        /// Packet identifier.
        packet_id: PacketId,
        /// DUP: this is a redelivery.
        dup: bool,
    },
}

impl Publish {
    /// A QoS 1 PUBLISH, as DPS sends responses.
    pub fn at_least_once(
        topic: impl Into<String>,
        packet_id: PacketId,
        payload: impl Into<Bytes>,
    ) -> Self {
        Self {
            topic: topic.into(),
            qos: PublishQos::AtLeastOnce {
                packet_id,
                dup: false,
            },
            retain: false,
            payload: payload.into(),
        }
    }

    /// A QoS 0 PUBLISH.
    pub fn at_most_once(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            qos: PublishQos::AtMostOnce,
            retain: false,
            payload: payload.into(),
        }
    }

    /// The packet identifier to acknowledge with PUBACK, if QoS 1.
    pub fn packet_id(&self) -> Option<PacketId> {
        match self.qos {
            PublishQos::AtMostOnce => None,
            PublishQos::AtLeastOnce { packet_id, .. } => Some(packet_id),
        }
    }

    /// `flags` were checked by the fixed header: QoS is 0 or 1, DUP only with QoS 1.
    pub(crate) fn read(flags: u8, mut r: Reader, limits: &Limits) -> Result<Self, Error> {
        let topic = r.string(Field::Topic, limits.max_topic)?;
        check_topic_name(&topic)?;
        let qos = match (flags >> 1) & 0b11 {
            0 => PublishQos::AtMostOnce,
            1 => PublishQos::AtLeastOnce {
                packet_id: r.packet_id()?,
                dup: flags & 0b1000 != 0,
            },
            2 => return Err(Error::UnsupportedQos),
            q => return Err(Error::InvalidQos(q)),
        };
        Ok(Self {
            topic,
            qos,
            retain: flags & 1 != 0,
            payload: r.rest(),
        })
    }

    /// Byte 0: type 3, DUP, QoS, RETAIN.
    pub(crate) fn first_byte(&self) -> u8 {
        let qos_dup = match self.qos {
            PublishQos::AtMostOnce => 0,
            PublishQos::AtLeastOnce { dup, .. } => 0b0010 | if dup { 0b1000 } else { 0 },
        };
        0x30 | qos_dup | u8::from(self.retain)
    }

    pub(crate) fn encoded_len(&self) -> Result<usize, Error> {
        check_topic_name(&self.topic)?;
        let id = if self.packet_id().is_some() { 2 } else { 0 };
        Ok(string_len(Field::Topic, &self.topic)? + id + self.payload.len())
    }

    pub(crate) fn write(&self, buf: &mut BytesMut) {
        super::codec::put_binary(buf, self.topic.as_bytes());
        if let Some(id) = self.packet_id() {
            buf.put_u16(id.get());
        }
        buf.put_slice(&self.payload);
    }
}

/// Node SDK register request, symmetric key `dev-1` (sdk-wire-captures.md Appendix A).
#[cfg(test)]
pub(crate) const NODE_REGISTER: &[&[u8]] = &[
    b"\x32\x6f", // PUBLISH, QoS 1, DUP 0, RETAIN 0; remaining length 111
    b"\x00\x51$dps/registrations/PUT/iotdps-register/?$rid=bc7266d3-bab8-4445-ad20-687267ae9668",
    b"\x19\x55",                      // packet id 6485
    br#"{"registrationId":"dev-1"}"#, // payload, 26 bytes
];

/// Python SDK register request: `json.dumps` with `"payload": null`, packet id 2.
#[cfg(test)]
pub(crate) const PYTHON_REGISTER: &[&[u8]] = &[
    b"\x32\x81\x01", // PUBLISH, QoS 1; remaining length 129
    b"\x00\x51$dps/registrations/PUT/iotdps-register/?$rid=a4f5f1f1-6fef-4d91-a554-d914f2823bf3",
    b"\x00\x02", // packet id 2
    br#"{"payload": null, "registrationId": "dev-1"}"#,
];

/// Node SDK poll: `$rid` and `operationId` in the topic, payload one space.
#[cfg(test)]
pub(crate) const NODE_POLL: &[&[u8]] = &[
    b"\x32\xa5\x01", // PUBLISH, QoS 1; remaining length 165
    b"\x00\xa0$dps/registrations/GET/iotdps-get-operationstatus/\
      ?$rid=592acb0b-0a42-43ee-adfa-d0fcd25bda3f\
      &operationId=5.6d933c01ec63ab68.6c96525a-60d4-400f-bc57-3178f2bccdd2", // 160 bytes
    b"\x19\x56",     // packet id 6486
    b" ",
];

/// DPS response to [`NODE_REGISTER`]: QoS 1, packet id 1, `$rid` first, then `retry-after`.
#[cfg(test)]
pub(crate) const RESPONSE_202: &[&[u8]] = &[
    b"\x32\xb8\x01", // PUBLISH, QoS 1; remaining length 184
    b"\x00\x53$dps/registrations/res/202/?$rid=bc7266d3-bab8-4445-ad20-687267ae9668&retry-after=1",
    b"\x00\x01", // packet id 1
    br#"{"operationId": "5.6d933c01ec63ab68.6c96525a-60d4-400f-bc57-3178f2bccdd2", "status": "assigning"}"#,
];

#[cfg(test)]
mod tests {
    use super::super::{Packet, decode};
    use super::*;

    fn decode_one(wire: &[u8]) -> Result<Option<Packet>, Error> {
        decode(&mut BytesMut::from(wire), &Limits::default())
    }

    fn id(v: u16) -> PacketId {
        PacketId::new(v).unwrap()
    }

    #[test]
    fn captures_decode_and_encode_back() {
        let cases = [
            (
                NODE_REGISTER,
                "$dps/registrations/PUT/iotdps-register/?$rid=bc7266d3-bab8-4445-ad20-687267ae9668",
                6485,
                &br#"{"registrationId":"dev-1"}"#[..],
            ),
            (
                PYTHON_REGISTER,
                "",
                2,
                br#"{"payload": null, "registrationId": "dev-1"}"#,
            ),
            (NODE_POLL, "", 6486, b" "),
            (RESPONSE_202, "", 1, b""),
        ];
        for (parts, topic, packet_id, payload) in cases {
            let wire = parts.concat();
            let Ok(Some(Packet::Publish(p))) = decode_one(&wire) else {
                panic!("not a PUBLISH");
            };
            assert_eq!(p.packet_id(), Some(id(packet_id)));
            assert!(!p.retain);
            if !topic.is_empty() {
                assert_eq!(p.topic, topic);
            }
            if !payload.is_empty() {
                assert_eq!(&p.payload[..], payload);
            }
            let mut out = BytesMut::new();
            Packet::Publish(p).encode(&mut out).unwrap();
            assert_eq!(out[..], wire[..]);
        }
    }

    #[test]
    fn response_is_built_as_captured() {
        let topic =
            "$dps/registrations/res/202/?$rid=bc7266d3-bab8-4445-ad20-687267ae9668&retry-after=1";
        let body: &[u8] = RESPONSE_202[3];
        let p = Publish::at_least_once(topic, id(1), Bytes::from_static(body));
        let mut out = BytesMut::new();
        Packet::Publish(p).encode(&mut out).unwrap();
        assert_eq!(out[..], RESPONSE_202.concat()[..]);
    }

    #[test]
    fn qos_flags() {
        // QoS 0, RETAIN, empty payload: no packet id.
        let q0 = b"\x31\x03\x00\x01t";
        let mut expected = Publish::at_most_once("t", Bytes::new());
        expected.retain = true;
        assert_eq!(decode_one(q0), Ok(Some(Packet::Publish(expected))));
        // QoS 1 with DUP.
        let Ok(Some(Packet::Publish(p))) = decode_one(b"\x3a\x05\x00\x01t\x00\x07") else {
            panic!("not a PUBLISH");
        };
        assert_eq!(
            p.qos,
            PublishQos::AtLeastOnce {
                packet_id: id(7),
                dup: true
            }
        );
        // QoS 2 and 3 are refused from the first byte, before the body arrives.
        assert_eq!(decode_one(b"\x34"), Err(Error::UnsupportedQos));
        assert_eq!(decode_one(b"\x3c\x05"), Err(Error::UnsupportedQos));
        assert_eq!(decode_one(b"\x36"), Err(Error::InvalidQos(3)));
        // DUP on QoS 0.
        assert_eq!(
            decode_one(b"\x38\x03\x00\x01t"),
            Err(Error::InvalidFlags {
                packet_type: 3,
                flags: 8
            })
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(
            decode_one(b"\x32\x05\x00\x01t\x00\x00"),
            Err(Error::ZeroPacketId)
        );
        assert_eq!(decode_one(b"\x32\x04\x00\x01t\x00"), Err(Error::Truncated));
        assert_eq!(decode_one(b"\x30\x02\x00\x05"), Err(Error::Truncated));
        assert_eq!(
            decode_one(b"\x30\x02\x00\x00"),
            Err(Error::InvalidTopicName)
        );
        assert_eq!(
            decode_one(b"\x30\x03\x00\x01#"),
            Err(Error::InvalidTopicName)
        );
        assert_eq!(
            decode_one(b"\x30\x04\x00\x02\xff\xfe"),
            Err(Error::InvalidUtf8)
        );
        let limits = Limits {
            max_topic: 8,
            ..Limits::default()
        };
        let long = NODE_REGISTER.concat();
        assert_eq!(
            decode(&mut BytesMut::from(&long[..]), &limits),
            Err(Error::TooLong {
                field: Field::Topic,
                max: 8
            })
        );
        let wild = Publish::at_most_once("a/+", Bytes::new());
        assert_eq!(
            Packet::Publish(wild).encode(&mut BytesMut::new()),
            Err(Error::InvalidTopicName)
        );
    }
}
