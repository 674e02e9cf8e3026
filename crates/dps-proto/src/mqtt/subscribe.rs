//! SUBSCRIBE (MQTT 3.1.1 §3.8). Every SDK subscribes once, to `$dps/registrations/res/#` at
//! QoS 1 ([`topic::is_response_filter`](super::topic::is_response_filter)); DPS serves no other
//! filter and grants QoS 1 for a QoS 2 request (reference §4.3). The number of filters per
//! packet is capped by [`Limits::max_filters`](super::Limits::max_filters).

use bytes::{BufMut, BytesMut};

use super::codec::{Reader, check_topic_filter, put_binary, string_len};
use super::{Error, Field, Limits, PacketId, QoS};

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier, echoed in the SUBACK.
    pub packet_id: PacketId,
    /// One or more filters with their requested QoS.
    pub filters: Vec<Subscription>,
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Topic filter (wildcards allowed).
    pub filter: String,
    /// Requested maximum QoS.
    pub qos: QoS,
}

impl Subscribe {
    pub(crate) fn read(mut r: Reader, limits: &Limits) -> Result<Self, Error> {
        let packet_id = r.packet_id()?;
        let mut filters = Vec::new();
        while !r.is_empty() {
            if filters.len() == limits.max_filters {
                return Err(Error::TooManyFilters {
                    max: limits.max_filters,
                });
            }
            let filter = r.string(Field::TopicFilter, limits.max_topic)?;
            check_topic_filter(&filter)?;
            let options = r.u8()?;
            let qos = QoS::from_u8(options).ok_or(Error::InvalidQos(options))?;
            filters.push(Subscription { filter, qos });
        }
        if filters.is_empty() {
            return Err(Error::EmptyPayload);
        }
        Ok(Self { packet_id, filters })
    }

    pub(crate) fn encoded_len(&self) -> Result<usize, Error> {
        if self.filters.is_empty() {
            return Err(Error::EmptyPayload);
        }
        let mut len = 2;
        for s in &self.filters {
            check_topic_filter(&s.filter)?;
            len += string_len(Field::TopicFilter, &s.filter)? + 1;
        }
        Ok(len)
    }

    pub(crate) fn write(&self, buf: &mut BytesMut) {
        buf.put_u16(self.packet_id.get());
        for s in &self.filters {
            put_binary(buf, s.filter.as_bytes());
            buf.put_u8(s.qos as u8);
        }
    }
}

/// Node SDK (packet id 6484; Python sends the same with packet id 1).
#[cfg(test)]
pub(crate) const NODE_SUBSCRIBE: &[&[u8]] = &[
    b"\x82\x1d", // SUBSCRIBE, flags 0b0010 (required), remaining length 29
    b"\x19\x54", // packet id 6484
    b"\x00\x18$dps/registrations/res/#", // filter, 24 bytes
    b"\x01",     // requested QoS 1
];

#[cfg(test)]
mod tests {
    use super::super::{Packet, decode};
    use super::*;

    fn decode_one(wire: &[u8]) -> Result<Option<Packet>, Error> {
        decode(&mut BytesMut::from(wire), &Limits::default())
    }

    #[test]
    fn capture_round_trips() {
        let wire = NODE_SUBSCRIBE.concat();
        let p = Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(6484).unwrap(),
            filters: vec![Subscription {
                filter: "$dps/registrations/res/#".into(),
                qos: QoS::AtLeastOnce,
            }],
        });
        assert_eq!(decode_one(&wire), Ok(Some(p.clone())));
        let mut out = BytesMut::new();
        p.encode(&mut out).unwrap();
        assert_eq!(out[..], wire[..]);
    }

    #[test]
    fn malformed() {
        // Fixed-header flags must be 0b0010.
        assert_eq!(
            decode_one(b"\x80\x06\x00\x01\x00\x01a\x01"),
            Err(Error::InvalidFlags {
                packet_type: 8,
                flags: 0
            })
        );
        assert_eq!(
            decode_one(b"\x82\x06\x00\x00\x00\x01a\x01"),
            Err(Error::ZeroPacketId)
        );
        assert_eq!(decode_one(b"\x82\x02\x00\x01"), Err(Error::EmptyPayload));
        assert_eq!(
            decode_one(b"\x82\x05\x00\x01\x00\x01a"),
            Err(Error::Truncated)
        );
        assert_eq!(
            decode_one(b"\x82\x06\x00\x01\x00\x01a\x03"),
            Err(Error::InvalidQos(3))
        );
        assert_eq!(
            decode_one(b"\x82\x06\x00\x01\x00\x01a\x41"),
            Err(Error::InvalidQos(0x41))
        );
        assert_eq!(
            decode_one(b"\x82\x07\x00\x01\x00\x02a#\x01"),
            Err(Error::InvalidTopicFilter)
        );
        assert_eq!(
            decode_one(b"\x82\x05\x00\x01\x00\x00\x01"),
            Err(Error::InvalidTopicFilter)
        );
        let limits = Limits {
            max_filters: 2,
            ..Limits::default()
        };
        let three = b"\x82\x0e\x00\x01\x00\x01a\x01\x00\x01b\x01\x00\x01c\x01";
        assert_eq!(
            decode(&mut BytesMut::from(&three[..]), &limits),
            Err(Error::TooManyFilters { max: 2 })
        );
        let empty = Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            filters: vec![],
        };
        assert_eq!(
            Packet::Subscribe(empty).encode(&mut BytesMut::new()),
            Err(Error::EmptyPayload)
        );
    }
}
