//! CONNACK (MQTT 3.1.1 §3.2). DPS always answers session-present 0: .NET fails otherwise and
//! DPS keeps no sessions (reference §4.2). A wrong SAS key may be refused here with 0x05
//! (Python raises `CredentialError` at once) or accepted and failed later with a 401 response.

use bytes::{BufMut, BytesMut};

use super::Error;
use super::codec::Reader;

/// A CONNACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    /// Session present; must be false with a refusal (MQTT-3.2.2-4), and DPS never sets it.
    pub session_present: bool,
    /// The verdict.
    pub code: ConnectReturnCode,
}

/// CONNACK return codes (§3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectReturnCode {
    /// 0x00 connection accepted.
    Accepted = 0,
    /// 0x01 the server does not support the requested protocol level.
    UnacceptableProtocolVersion = 1,
    /// 0x02 the client identifier is not allowed.
    IdentifierRejected = 2,
    /// 0x03 the service is unavailable.
    ServerUnavailable = 3,
    /// 0x04 malformed user name or password.
    BadUsernameOrPassword = 4,
    /// 0x05 not authorized.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// From the wire byte; `None` for the reserved 6-255.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUsernameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }
}

impl ConnAck {
    /// The CONNACK DPS sends: session-present 0 and `code`.
    pub const fn new(code: ConnectReturnCode) -> Self {
        Self {
            session_present: false,
            code,
        }
    }

    pub(crate) fn read(mut r: Reader) -> Result<Self, Error> {
        let flags = r.u8()?;
        let code = r.u8()?;
        r.finish()?;
        let code = ConnectReturnCode::from_u8(code).ok_or(Error::InvalidReturnCode(code))?;
        let session_present = flags == 1;
        if flags > 1 || (session_present && code != ConnectReturnCode::Accepted) {
            return Err(Error::InvalidConnAckFlags(flags));
        }
        Ok(Self {
            session_present,
            code,
        })
    }

    pub(crate) fn encoded_len(&self) -> Result<usize, Error> {
        if self.session_present && self.code != ConnectReturnCode::Accepted {
            return Err(Error::InvalidConnAckFlags(1));
        }
        Ok(2)
    }

    pub(crate) fn write(&self, buf: &mut BytesMut) {
        buf.put_u8(u8::from(self.session_present));
        buf.put_u8(self.code as u8);
    }
}

/// Accepted, session-present 0: what every SDK in the captures received.
#[cfg(test)]
pub(crate) const ACCEPTED: &[u8] = b"\x20\x02\x00\x00"; // CONNACK, length 2, SP 0, code 0

/// Python SDK with a wrong key: refused with 0x05 (sdk-wire-captures.md Appendix A).
#[cfg(test)]
pub(crate) const NOT_AUTHORIZED: &[u8] = b"\x20\x02\x00\x05";

#[cfg(test)]
mod tests {
    use super::super::{Limits, Packet, decode};
    use super::*;

    fn decode_one(wire: &[u8]) -> Result<Option<Packet>, Error> {
        decode(&mut BytesMut::from(wire), &Limits::default())
    }

    #[test]
    fn captures_round_trip() {
        for (wire, code) in [
            (ACCEPTED, ConnectReturnCode::Accepted),
            (NOT_AUTHORIZED, ConnectReturnCode::NotAuthorized),
        ] {
            let p = Packet::ConnAck(ConnAck::new(code));
            assert_eq!(decode_one(wire), Ok(Some(p.clone())));
            let mut out = BytesMut::new();
            p.encode(&mut out).unwrap();
            assert_eq!(&out[..], wire);
        }
        let resumed = ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        };
        assert_eq!(
            decode_one(b"\x20\x02\x01\x00"),
            Ok(Some(Packet::ConnAck(resumed)))
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(
            decode_one(b"\x20\x02\x00\x06"),
            Err(Error::InvalidReturnCode(6))
        );
        assert_eq!(
            decode_one(b"\x20\x02\x02\x00"),
            Err(Error::InvalidConnAckFlags(2))
        );
        assert_eq!(
            decode_one(b"\x20\x02\x01\x05"),
            Err(Error::InvalidConnAckFlags(1))
        );
        assert_eq!(decode_one(b"\x20\x01\x00"), Err(Error::Truncated));
        assert_eq!(
            decode_one(b"\x20\x03\x00\x00\x00"),
            Err(Error::TrailingBytes)
        );
        assert_eq!(
            decode_one(b"\x21\x02\x00\x00"),
            Err(Error::InvalidFlags {
                packet_type: 2,
                flags: 1
            })
        );
        let bad = ConnAck {
            session_present: true,
            code: ConnectReturnCode::NotAuthorized,
        };
        assert!(Packet::ConnAck(bad).encode(&mut BytesMut::new()).is_err());
    }
}
