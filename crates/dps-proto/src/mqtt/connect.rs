//! CONNECT (MQTT 3.1.1 §3.1): the device's first packet. DPS reads the registration from the
//! user name (see [`Username`](super::username::Username)), a SAS token from the password
//! (absent for X.509), and ignores the will and the clean-session flag.
//!
//! Protocol levels: only `MQTT` level 4 (3.1.1) is accepted; every SDK sends it (reference §4.1).
//! `MQTT` with any other level (5, …) and `MQIsdp` (3.1) give
//! [`Error::UnsupportedProtocol`], which the server answers with CONNACK 0x01; that check comes
//! before any other field, as §3.1.2.2 asks. Other names give [`Error::InvalidProtocolName`].

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{Reader, binary_len, check_topic_name, put_binary, string_len};
use super::{Error, Field, Limits, QoS};

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Client identifier: the registration ID for every DPS SDK. May be empty (§3.1.3.1).
    pub client_id: String,
    /// Node and .NET send 1, Python 0; DPS keeps no session either way.
    pub clean_session: bool,
    /// Seconds; 0 disables keep-alive (the C SDK).
    pub keep_alive: u16,
    /// The DPS user name `{idScope}/registrations/{registrationId}/api-version=…`.
    pub username: Option<String>,
    /// The SAS token for symmetric-key devices; absent for X.509.
    pub password: Option<Vec<u8>>,
    /// Last will; no DPS SDK sets one.
    pub will: Option<Will>,
}

/// A CONNECT last-will message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Will topic (a topic name: no wildcards).
    pub topic: String,
    /// Will message.
    pub payload: Bytes,
    /// Will QoS (0-2).
    pub qos: QoS,
    /// Will retain flag.
    pub retain: bool,
}

const PROTOCOL_NAME: &[u8] = b"MQTT";
const LEVEL_3_1_1: u8 = 4;

mod flag {
    pub const CLEAN_SESSION: u8 = 0x02;
    pub const WILL: u8 = 0x04;
    pub const WILL_QOS_SHIFT: u8 = 3;
    pub const WILL_RETAIN: u8 = 0x20;
    pub const PASSWORD: u8 = 0x40;
    pub const USERNAME: u8 = 0x80;
}

impl Connect {
    pub(crate) fn read(mut r: Reader, limits: &Limits) -> Result<Self, Error> {
        let name_len = usize::from(r.u16()?);
        if name_len > 6 {
            return Err(Error::InvalidProtocolName);
        }
        let name = r.take(name_len)?;
        let level = r.u8()?;
        match (&name[..], level) {
            (PROTOCOL_NAME, LEVEL_3_1_1) => {}
            (PROTOCOL_NAME | b"MQIsdp", level) => return Err(Error::UnsupportedProtocol { level }),
            _ => return Err(Error::InvalidProtocolName),
        }
        let flags = r.u8()?;
        let has_will = flags & flag::WILL != 0;
        let will_qos = (flags >> flag::WILL_QOS_SHIFT) & 0b11;
        let will_bits = flags & (0b11 << flag::WILL_QOS_SHIFT | flag::WILL_RETAIN);
        if flags & 0x01 != 0
            || (!has_will && will_bits != 0)
            || (flags & flag::PASSWORD != 0 && flags & flag::USERNAME == 0)
        {
            return Err(Error::InvalidConnectFlags(flags));
        }
        let keep_alive = r.u16()?;
        let client_id = r.string(Field::ClientId, limits.max_client_id)?;
        let will = if has_will {
            let qos = QoS::from_u8(will_qos).ok_or(Error::InvalidQos(will_qos))?;
            let topic = r.string(Field::WillTopic, limits.max_topic)?;
            check_topic_name(&topic)?;
            let payload = r.binary(Field::WillPayload, limits.max_packet)?;
            let retain = flags & flag::WILL_RETAIN != 0;
            Some(Will {
                topic,
                payload,
                qos,
                retain,
            })
        } else {
            None
        };
        let username = if flags & flag::USERNAME != 0 {
            Some(r.string(Field::Username, limits.max_username)?)
        } else {
            None
        };
        let password = if flags & flag::PASSWORD != 0 {
            Some(r.binary(Field::Password, limits.max_password)?.to_vec())
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            client_id,
            clean_session: flags & flag::CLEAN_SESSION != 0,
            keep_alive,
            username,
            password,
            will,
        })
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_session {
            flags |= flag::CLEAN_SESSION;
        }
        if let Some(w) = &self.will {
            flags |= flag::WILL | (w.qos as u8) << flag::WILL_QOS_SHIFT;
            if w.retain {
                flags |= flag::WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= flag::USERNAME;
        }
        if self.password.is_some() {
            flags |= flag::PASSWORD;
        }
        flags
    }

    pub(crate) fn encoded_len(&self) -> Result<usize, Error> {
        if self.password.is_some() && self.username.is_none() {
            return Err(Error::InvalidConnectFlags(self.flags()));
        }
        let mut len = 2 + PROTOCOL_NAME.len() + 1 + 1 + 2;
        len += string_len(Field::ClientId, &self.client_id)?;
        if let Some(w) = &self.will {
            check_topic_name(&w.topic)?;
            len += string_len(Field::WillTopic, &w.topic)?;
            len += binary_len(Field::WillPayload, &w.payload)?;
        }
        if let Some(u) = &self.username {
            len += string_len(Field::Username, u)?;
        }
        if let Some(p) = &self.password {
            len += binary_len(Field::Password, p)?;
        }
        Ok(len)
    }

    pub(crate) fn write(&self, buf: &mut BytesMut) {
        put_binary(buf, PROTOCOL_NAME);
        buf.put_u8(LEVEL_3_1_1);
        buf.put_u8(self.flags());
        buf.put_u16(self.keep_alive);
        put_binary(buf, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            put_binary(buf, w.topic.as_bytes());
            put_binary(buf, &w.payload);
        }
        if let Some(u) = &self.username {
            put_binary(buf, u.as_bytes());
        }
        if let Some(p) = &self.password {
            put_binary(buf, p);
        }
    }
}

/// Node SDK 1.8.1 (mqtt.js 4.3.8), symmetric key `dev-1`: the CONNECT of
/// sdk-wire-captures.md Appendix A, laid out as MQTT 3.1.1 §3.1 encodes those fields.
#[cfg(test)]
pub(crate) const NODE_SAS: &[&[u8]] = &[
    b"\x10\x8d\x02",     // CONNECT, remaining length 269 (varint 0x8d 0x02)
    b"\x00\x04MQTT\x04", // protocol name "MQTT", level 4 (3.1.1)
    b"\xc2",             // flags: username, password, clean session; no will
    b"\x00\xb4",         // keep alive 180 s
    b"\x00\x05dev-1",    // client id = registration id
    b"\x00\x6a0ne00000001/registrations/dev-1/api-version=2019-03-31\
      &ClientVersion=azure-iot-provisioning-device%2F1.9.1", // username, 106 bytes
    b"\x00\x8eSharedAccessSignature sr=0ne00000001/registrations/dev-1\
      &sig=2pBi5VZ1nAW0Wow2pG%2FU4dp5rcn4YwXd3DWL3n%2BQU3Q%3D&skn=registration&se=1795769672",
];

/// Python SDK 2.14.0 (paho 1.6.1), symmetric key `dev-1`: clean session 0, keep-alive 60.
#[cfg(test)]
pub(crate) const PYTHON_SAS: &[&[u8]] = &[
    b"\x10\xc3\x02", // CONNECT, remaining length 323
    b"\x00\x04MQTT\x04",
    b"\xc0",     // flags: username, password; clean session 0
    b"\x00\x3c", // keep alive 60 s
    b"\x00\x05dev-1",
    b"\x00\xb10ne00000001/registrations/dev-1/api-version=2019-03-31&ClientVersion=\
      azure-iot-device-provisioning-py%2F2.14.0%283.11.7%3BLinux%20%231%20SMP%20\
      PREEMPT_DYNAMIC%20%400%3Bx86_64%29", // username, 177 bytes
    b"\x00\x7dSharedAccessSignature sr=0ne00000001%2Fregistrations%2Fdev-1\
      &sig=k5J2ASGu0qvKHN8t2Z7JDovqfpsdfX4gXq91AGo2rOE%3D&se=1795769679", // 125 bytes
];

/// Node SDK, X.509 `dev-x509-1`: username without password (flags 0x82).
#[cfg(test)]
pub(crate) const NODE_X509: &[&[u8]] = &[
    b"\x10\x87\x01", // CONNECT, remaining length 135
    b"\x00\x04MQTT\x04",
    b"\x82", // flags: username, clean session
    b"\x00\xb4",
    b"\x00\x0adev-x509-1",
    b"\x00\x6f0ne00000001/registrations/dev-x509-1/api-version=2019-03-31\
      &ClientVersion=azure-iot-provisioning-device%2F1.9.1", // 111 bytes
];

#[cfg(test)]
mod tests {
    use super::super::{Packet, decode};
    use super::*;

    fn decode_one(wire: &[u8]) -> Result<Option<Packet>, Error> {
        decode(&mut BytesMut::from(wire), &Limits::default())
    }

    fn connect(wire: &[u8]) -> Connect {
        match decode_one(wire) {
            Ok(Some(Packet::Connect(c))) => c,
            other => panic!("not a CONNECT: {other:?}"),
        }
    }

    fn round_trip(wire: &[u8]) {
        let mut out = BytesMut::new();
        Packet::Connect(connect(wire)).encode(&mut out).unwrap();
        assert_eq!(&out[..], wire);
    }

    #[test]
    fn node_sas_capture() {
        let wire = NODE_SAS.concat();
        let c = connect(&wire);
        assert_eq!(c.client_id, "dev-1");
        assert!(c.clean_session);
        assert_eq!(c.keep_alive, 180);
        assert!(c.username.as_deref().unwrap().ends_with("%2F1.9.1"));
        assert!(
            c.password
                .unwrap()
                .starts_with(b"SharedAccessSignature sr=")
        );
        assert_eq!(c.will, None);
        round_trip(&wire);
    }

    #[test]
    fn python_sas_and_node_x509_captures() {
        let py = PYTHON_SAS.concat();
        let c = connect(&py);
        assert!(!c.clean_session);
        assert_eq!(c.keep_alive, 60);
        assert_eq!(c.password.as_ref().map(Vec::len), Some(125));
        round_trip(&py);

        let x509 = NODE_X509.concat();
        let c = connect(&x509);
        assert_eq!(c.client_id, "dev-x509-1");
        assert!(c.username.is_some());
        assert_eq!(c.password, None);
        round_trip(&x509);
    }

    #[test]
    fn will_decodes() {
        let wire = b"\x10\x1a\x00\x04MQTT\x04\x2e\x00\x00\x00\x01c\x00\x05w/top\x00\x04gone";
        let c = connect(wire);
        assert_eq!(
            c.will,
            Some(Will {
                topic: "w/top".into(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: true,
            })
        );
        round_trip(wire);
    }

    #[test]
    fn protocol_level_is_checked_first() {
        // MQTT 5 CONNECT (level 5, then properties this codec does not know).
        let v5 = b"\x10\x11\x00\x04MQTT\x05\x02\x00\x3c\x03\x21\x00\x14\x00\x01c";
        assert_eq!(decode_one(v5), Err(Error::UnsupportedProtocol { level: 5 }));
        let v31 = b"\x10\x0f\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01c";
        let err = decode_one(v31).unwrap_err();
        assert_eq!(err, Error::UnsupportedProtocol { level: 3 });
        assert_eq!(
            err.connack_code(),
            Some(super::super::ConnectReturnCode::UnacceptableProtocolVersion)
        );
        for bad in [
            &b"\x10\x0d\x00\x04MQTX\x04\x02\x00\x3c\x00\x01c"[..],
            b"\x10\x09\x00\x07MQIsdpx",
            b"\x10\x0d\x00\x04mqtt\x04\x02\x00\x3c\x00\x01c",
        ] {
            assert_eq!(decode_one(bad), Err(Error::InvalidProtocolName));
        }
    }

    #[test]
    fn flag_rules() {
        let with = |flags: u8| {
            let mut w = b"\x10\x0d\x00\x04MQTT\x04".to_vec();
            w.extend_from_slice(&[flags, 0, 60, 0, 1, b'c']);
            decode_one(&w)
        };
        assert!(matches!(with(0x02), Ok(Some(Packet::Connect(_)))));
        assert!(matches!(with(0x00), Ok(Some(Packet::Connect(_)))));
        for bad in [0x03, 0x08, 0x10, 0x20, 0x40, 0x42] {
            assert_eq!(with(bad), Err(Error::InvalidConnectFlags(bad)), "{bad:#x}");
        }
        // Will QoS 3.
        let w = b"\x10\x11\x00\x04MQTT\x04\x1e\x00\x00\x00\x00\x00\x01w\x00\x00";
        assert_eq!(decode_one(w), Err(Error::InvalidQos(3)));
    }

    #[test]
    fn strings_are_bounded_and_checked() {
        // Username length says 0x0a but only 3 bytes follow.
        let short = b"\x10\x12\x00\x04MQTT\x04\x82\x00\x3c\x00\x01c\x00\x0aabc";
        assert_eq!(decode_one(short), Err(Error::Truncated));
        let bad_utf8 = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02\xc3\x28";
        assert_eq!(decode_one(bad_utf8), Err(Error::InvalidUtf8));
        let nul = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02a\x00";
        assert_eq!(decode_one(nul), Err(Error::InvalidUtf8));
        let trailing = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x01cx";
        assert_eq!(decode_one(trailing), Err(Error::TrailingBytes));

        let limits = Limits {
            max_client_id: 4,
            ..Limits::default()
        };
        let err = decode(&mut BytesMut::from(&NODE_X509.concat()[..]), &limits).unwrap_err();
        assert_eq!(
            err,
            Error::TooLong {
                field: Field::ClientId,
                max: 4
            }
        );
        assert_eq!(
            err.connack_code(),
            Some(super::super::ConnectReturnCode::IdentifierRejected)
        );
    }

    #[test]
    fn encode_refuses_password_without_username() {
        let c = Connect {
            client_id: "c".into(),
            clean_session: true,
            keep_alive: 0,
            username: None,
            password: Some(b"p".to_vec()),
            will: None,
        };
        let mut out = BytesMut::new();
        assert_eq!(
            Packet::Connect(c).encode(&mut out),
            Err(Error::InvalidConnectFlags(0x42))
        );
        assert!(out.is_empty());
    }
}
