//! PUBACK (MQTT 3.1.1 §3.4). Ordering matters to .NET: after a QoS 1 request DPS sends the
//! PUBACK **before** the response PUBLISH, and the device PUBACKs every response (reference
//! §4.4).

use bytes::{BufMut, BytesMut};

use super::codec::Reader;
use super::{Error, PacketId};

/// A PUBACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubAck {
    /// The identifier of the QoS 1 PUBLISH being acknowledged.
    pub packet_id: PacketId,
}

impl PubAck {
    pub(crate) fn read(mut r: Reader) -> Result<Self, Error> {
        let packet_id = r.packet_id()?;
        r.finish()?;
        Ok(Self { packet_id })
    }

    pub(crate) fn write(&self, buf: &mut BytesMut) {
        buf.put_u16(self.packet_id.get());
    }
}

/// DPS acknowledging the Node register PUBLISH, packet id 6485.
#[cfg(test)]
pub(crate) const NODE_REGISTER_ACK: &[u8] = b"\x40\x02\x19\x55"; // PUBACK, length 2, id 6485

#[cfg(test)]
mod tests {
    use super::super::{Limits, Packet, decode};
    use super::*;

    fn decode_one(wire: &[u8]) -> Result<Option<Packet>, Error> {
        decode(&mut BytesMut::from(wire), &Limits::default())
    }

    #[test]
    fn capture_round_trips() {
        let p = Packet::PubAck(PubAck {
            packet_id: PacketId::new(6485).unwrap(),
        });
        assert_eq!(decode_one(NODE_REGISTER_ACK), Ok(Some(p.clone())));
        let mut out = BytesMut::new();
        p.encode(&mut out).unwrap();
        assert_eq!(&out[..], NODE_REGISTER_ACK);
    }

    #[test]
    fn malformed() {
        assert_eq!(decode_one(b"\x40\x02\x00\x00"), Err(Error::ZeroPacketId));
        assert_eq!(decode_one(b"\x40\x01\x01"), Err(Error::Truncated));
        assert_eq!(
            decode_one(b"\x40\x03\x00\x01\x00"),
            Err(Error::TrailingBytes)
        );
        assert_eq!(
            decode_one(b"\x42\x02\x00\x01"),
            Err(Error::InvalidFlags {
                packet_type: 4,
                flags: 2
            })
        );
        // The QoS 2 flow (PUBREC, PUBREL, PUBCOMP) is refused outright.
        for t in [0x50, 0x62, 0x70] {
            assert_eq!(
                decode_one(&[t, 2, 0, 1]),
                Err(Error::UnexpectedPacketType(t >> 4))
            );
        }
    }
}
