//! DISCONNECT (MQTT 3.1.1 §3.14): the device's last packet (Node and Python send it after the
//! final response). Two bytes, no variable header; the server then closes without a will.

/// DISCONNECT: type 14, remaining length 0.
#[cfg(test)]
pub(crate) const DISCONNECT: &[u8] = b"\xe0\x00";

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::super::{Error, Limits, Packet, decode};
    use super::*;

    fn decode_one(wire: &[u8]) -> Result<Option<Packet>, Error> {
        decode(&mut BytesMut::from(wire), &Limits::default())
    }

    #[test]
    fn round_trip() {
        assert_eq!(decode_one(DISCONNECT), Ok(Some(Packet::Disconnect)));
        let mut out = BytesMut::new();
        Packet::Disconnect.encode(&mut out).unwrap();
        assert_eq!(&out[..], DISCONNECT);
    }

    #[test]
    fn malformed() {
        assert_eq!(decode_one(b"\xe0\x02\x00\x00"), Err(Error::TrailingBytes));
        assert_eq!(
            decode_one(b"\xe8\x00"),
            Err(Error::InvalidFlags {
                packet_type: 14,
                flags: 8
            })
        );
    }
}
