//! SUBACK (MQTT 3.1.1 §3.9). DPS must send it before any response PUBLISH (.NET's state
//! machine waits for it), granting QoS 1 to the response filter and `0x80` to anything else.

use bytes::{BufMut, BytesMut};

use super::codec::Reader;
use super::{Error, Limits, PacketId, QoS};

/// A SUBACK packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The identifier of the SUBSCRIBE being acknowledged.
    pub packet_id: PacketId,
    /// One return code per filter, in the SUBSCRIBE's order.
    pub codes: Vec<SubAckCode>,
}

/// A SUBACK return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubAckCode {
    /// 0x00-0x02: subscribed with this maximum QoS.
    Granted(QoS),
    /// 0x80: refused.
    Failure,
}

impl SubAckCode {
    fn from_u8(v: u8) -> Result<Self, Error> {
        match v {
            0x80 => Ok(Self::Failure),
            v => QoS::from_u8(v)
                .map(Self::Granted)
                .ok_or(Error::InvalidReturnCode(v)),
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Granted(q) => q as u8,
            Self::Failure => 0x80,
        }
    }
}

impl SubAck {
    pub(crate) fn read(mut r: Reader, limits: &Limits) -> Result<Self, Error> {
        let packet_id = r.packet_id()?;
        let mut codes = Vec::new();
        while !r.is_empty() {
            if codes.len() == limits.max_filters {
                return Err(Error::TooManyFilters {
                    max: limits.max_filters,
                });
            }
            codes.push(SubAckCode::from_u8(r.u8()?)?);
        }
        if codes.is_empty() {
            return Err(Error::EmptyPayload);
        }
        Ok(Self { packet_id, codes })
    }

    pub(crate) fn encoded_len(&self) -> Result<usize, Error> {
        if self.codes.is_empty() {
            return Err(Error::EmptyPayload);
        }
        Ok(2 + self.codes.len())
    }

    pub(crate) fn write(&self, buf: &mut BytesMut) {
        buf.put_u16(self.packet_id.get());
        for c in &self.codes {
            buf.put_u8(c.to_u8());
        }
    }
}

/// Answer to the Node SDK's SUBSCRIBE (packet id 6484): QoS 1 granted.
#[cfg(test)]
pub(crate) const NODE_SUBACK: &[u8] = b"\x90\x03\x19\x54\x01"; // SUBACK, length 3, id, [1]

#[cfg(test)]
mod tests {
    use super::super::{Packet, decode};
    use super::*;

    fn decode_one(wire: &[u8]) -> Result<Option<Packet>, Error> {
        decode(&mut BytesMut::from(wire), &Limits::default())
    }

    #[test]
    fn capture_round_trips() {
        let p = Packet::SubAck(SubAck {
            packet_id: PacketId::new(6484).unwrap(),
            codes: vec![SubAckCode::Granted(QoS::AtLeastOnce)],
        });
        assert_eq!(decode_one(NODE_SUBACK), Ok(Some(p.clone())));
        let mut out = BytesMut::new();
        p.encode(&mut out).unwrap();
        assert_eq!(&out[..], NODE_SUBACK);
    }

    #[test]
    fn failure_and_malformed() {
        let Ok(Some(Packet::SubAck(s))) = decode_one(b"\x90\x04\x00\x02\x80\x00") else {
            panic!("not a SUBACK");
        };
        assert_eq!(
            s.codes,
            [SubAckCode::Failure, SubAckCode::Granted(QoS::AtMostOnce)]
        );
        assert_eq!(
            decode_one(b"\x90\x03\x00\x01\x03"),
            Err(Error::InvalidReturnCode(3))
        );
        assert_eq!(
            decode_one(b"\x90\x03\x00\x01\x81"),
            Err(Error::InvalidReturnCode(0x81))
        );
        assert_eq!(decode_one(b"\x90\x02\x00\x01"), Err(Error::EmptyPayload));
        assert_eq!(
            decode_one(b"\x90\x03\x00\x00\x01"),
            Err(Error::ZeroPacketId)
        );
    }
}
