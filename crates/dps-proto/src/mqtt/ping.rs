//! PINGREQ and PINGRESP (MQTT 3.1.1 §3.12, §3.13): two bytes each, no variable header. A
//! device with keep-alive `k` pings when idle; the server closes a connection silent for
//! 1.5 × `k` (§3.1.2.10) and answers each PINGREQ with a PINGRESP.

/// PINGREQ: type 12, remaining length 0.
#[cfg(test)]
pub(crate) const PINGREQ: &[u8] = b"\xc0\x00";

/// PINGRESP: type 13, remaining length 0.
#[cfg(test)]
pub(crate) const PINGRESP: &[u8] = b"\xd0\x00";

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
        for (wire, p) in [(PINGREQ, Packet::PingReq), (PINGRESP, Packet::PingResp)] {
            assert_eq!(decode_one(wire), Ok(Some(p.clone())));
            let mut out = BytesMut::new();
            p.encode(&mut out).unwrap();
            assert_eq!(&out[..], wire);
        }
    }

    #[test]
    fn malformed() {
        assert_eq!(decode_one(b"\xc0\x01\x00"), Err(Error::TrailingBytes));
        assert_eq!(
            decode_one(b"\xd1\x00"),
            Err(Error::InvalidFlags {
                packet_type: 13,
                flags: 1
            })
        );
    }
}
