//! UNSUBSCRIBE (MQTT 3.1.1 §3.10): sent by the Node SDK for `$dps/registrations/res/#` before
//! DISCONNECT; answered with UNSUBACK.

use bytes::{BufMut, BytesMut};

use super::codec::{Reader, check_topic_filter, put_binary, string_len};
use super::{Error, Field, Limits, PacketId};

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier, echoed in the UNSUBACK.
    pub packet_id: PacketId,
    /// One or more topic filters.
    pub filters: Vec<String>,
}

impl Unsubscribe {
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
            filters.push(filter);
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
        for f in &self.filters {
            check_topic_filter(f)?;
            len += string_len(Field::TopicFilter, f)?;
        }
        Ok(len)
    }

    pub(crate) fn write(&self, buf: &mut BytesMut) {
        buf.put_u16(self.packet_id.get());
        for f in &self.filters {
            put_binary(buf, f.as_bytes());
        }
    }
}

/// Node SDK, after the final response (packet id 6488).
#[cfg(test)]
pub(crate) const NODE_UNSUBSCRIBE: &[&[u8]] = &[
    b"\xa2\x1c", // UNSUBSCRIBE, flags 0b0010 (required), remaining length 28
    b"\x19\x58", // packet id 6488
    b"\x00\x18$dps/registrations/res/#",
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
        let wire = NODE_UNSUBSCRIBE.concat();
        let p = Packet::Unsubscribe(Unsubscribe {
            packet_id: PacketId::new(6488).unwrap(),
            filters: vec!["$dps/registrations/res/#".into()],
        });
        assert_eq!(decode_one(&wire), Ok(Some(p.clone())));
        let mut out = BytesMut::new();
        p.encode(&mut out).unwrap();
        assert_eq!(out[..], wire[..]);
    }

    #[test]
    fn malformed() {
        assert_eq!(
            decode_one(b"\xa0\x05\x00\x01\x00\x01a"),
            Err(Error::InvalidFlags {
                packet_type: 10,
                flags: 0
            })
        );
        assert_eq!(
            decode_one(b"\xa2\x05\x00\x00\x00\x01a"),
            Err(Error::ZeroPacketId)
        );
        assert_eq!(decode_one(b"\xa2\x02\x00\x01"), Err(Error::EmptyPayload));
        assert_eq!(
            decode_one(b"\xa2\x04\x00\x01\x00\x01"),
            Err(Error::Truncated)
        );
        assert_eq!(
            decode_one(b"\xa2\x06\x00\x01\x00\x02a+"),
            Err(Error::InvalidTopicFilter)
        );
        let limits = Limits {
            max_filters: 1,
            ..Limits::default()
        };
        assert_eq!(
            decode(
                &mut BytesMut::from(&b"\xa2\x08\x00\x01\x00\x01a\x00\x01b"[..]),
                &limits
            ),
            Err(Error::TooManyFilters { max: 1 })
        );
    }
}
