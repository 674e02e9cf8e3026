//! UNSUBACK (MQTT 3.1.1 §3.11): DPS's answer to the Node SDK's UNSUBSCRIBE before it
//! disconnects.

use bytes::{BufMut, BytesMut};

use super::codec::Reader;
use super::{Error, PacketId};

/// An UNSUBACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsubAck {
    /// The identifier of the UNSUBSCRIBE being acknowledged.
    pub packet_id: PacketId,
}

impl UnsubAck {
    pub(crate) fn read(mut r: Reader) -> Result<Self, Error> {
        let packet_id = r.packet_id()?;
        r.finish()?;
        Ok(Self { packet_id })
    }

    pub(crate) fn write(&self, buf: &mut BytesMut) {
        buf.put_u16(self.packet_id.get());
    }
}

/// Answer to the Node SDK's UNSUBSCRIBE, packet id 6488.
#[cfg(test)]
pub(crate) const NODE_UNSUBACK: &[u8] = b"\xb0\x02\x19\x58"; // UNSUBACK, length 2, id 6488

#[cfg(test)]
mod tests {
    use super::super::{Limits, Packet, decode};
    use super::*;

    fn decode_one(wire: &[u8]) -> Result<Option<Packet>, Error> {
        decode(&mut BytesMut::from(wire), &Limits::default())
    }

    #[test]
    fn capture_round_trips() {
        let p = Packet::UnsubAck(UnsubAck {
            packet_id: PacketId::new(6488).unwrap(),
        });
        assert_eq!(decode_one(NODE_UNSUBACK), Ok(Some(p.clone())));
        let mut out = BytesMut::new();
        p.encode(&mut out).unwrap();
        assert_eq!(&out[..], NODE_UNSUBACK);
    }

    #[test]
    fn malformed() {
        assert_eq!(decode_one(b"\xb0\x02\x00\x00"), Err(Error::ZeroPacketId));
        assert_eq!(decode_one(b"\xb0\x00"), Err(Error::Truncated));
        assert_eq!(
            decode_one(b"\xb0\x03\x00\x01\x00"),
            Err(Error::TrailingBytes)
        );
        assert_eq!(
            decode_one(b"\xb2\x02\x00\x01"),
            Err(Error::InvalidFlags {
                packet_type: 11,
                flags: 2
            })
        );
    }
}
