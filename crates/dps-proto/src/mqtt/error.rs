//! Why a packet did not decode (or could not be encoded). Every variant except
//! [`Error::UnsupportedProtocol`] and an over-long client ID means "close the connection"
//! (MQTT 3.1.1 §4.8); [`Error::connack_code`] tells which of them deserve a CONNACK first.

use std::fmt;

use super::ConnectReturnCode;

/// A malformed, over-limit or unsupported MQTT packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The remaining-length varint runs past 4 bytes or is not minimally encoded.
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    /// The remaining length exceeds [`Limits::max_packet`](super::Limits::max_packet) (or, when
    /// encoding, what the varint can express).
    #[error("packet too large ({len} bytes, limit {max})")]
    PacketTooLarge {
        /// The announced remaining length.
        len: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// A reserved packet type (0, 15) or one of the QoS 2 flow (PUBREC, PUBREL, PUBCOMP).
    #[error("unexpected packet type {0}")]
    UnexpectedPacketType(u8),
    /// Fixed-header flags that MQTT 3.1.1 §2.2.2 reserves (or DUP set on a QoS 0 PUBLISH).
    #[error("invalid flags {flags:#06b} for packet type {packet_type}")]
    InvalidFlags {
        /// The packet type (upper nibble of byte 0).
        packet_type: u8,
        /// The offending flags (lower nibble).
        flags: u8,
    },
    /// A QoS field of 3, or a SUBSCRIBE options byte with reserved bits set.
    #[error("invalid qos {0}")]
    InvalidQos(u8),
    /// A PUBLISH at QoS 2: DPS speaks QoS 0 and 1 only.
    #[error("qos 2 is not supported")]
    UnsupportedQos,
    /// A packet identifier of 0 where one is required (MQTT-2.3.1-1).
    #[error("packet id 0")]
    ZeroPacketId,
    /// A field runs past the end of the packet.
    #[error("truncated packet")]
    Truncated,
    /// Bytes left after the last field of a packet that has no payload.
    #[error("unexpected bytes after the last field")]
    TrailingBytes,
    /// A string that is not UTF-8 or contains U+0000 (MQTT-1.5.3-1, -2).
    #[error("invalid utf-8 string")]
    InvalidUtf8,
    /// A field over its [`Limits`](super::Limits) bound, or over 65,535 bytes when encoding.
    #[error("{field} longer than {max} bytes")]
    TooLong {
        /// Which field.
        field: Field,
        /// The bound it exceeds.
        max: usize,
    },
    /// CONNECT with a protocol name other than `MQTT` or `MQIsdp`: close without CONNACK.
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// CONNECT for a protocol level other than 4 (3.1.1), including MQTT 3.1 (`MQIsdp`) and 5:
    /// answer CONNACK 0x01 and close.
    #[error("unsupported protocol level {level}")]
    UnsupportedProtocol {
        /// The level the client asked for.
        level: u8,
    },
    /// CONNECT flags that break MQTT-3.1.2-3 (reserved bit), -11/-13/-15 (will bits without a
    /// will) or -22 (password without username).
    #[error("invalid connect flags {0:#04x}")]
    InvalidConnectFlags(u8),
    /// CONNACK acknowledge flags with reserved bits, or session-present on a refusal.
    #[error("invalid connack flags {0:#04x}")]
    InvalidConnAckFlags(u8),
    /// A CONNACK or SUBACK return code MQTT 3.1.1 does not define.
    #[error("invalid return code {0:#04x}")]
    InvalidReturnCode(u8),
    /// An empty topic name, or one with a `+`/`#` wildcard (MQTT-3.3.2-2, §4.7.3).
    #[error("invalid topic name")]
    InvalidTopicName,
    /// An empty topic filter or a misplaced wildcard (§4.7.1).
    #[error("invalid topic filter")]
    InvalidTopicFilter,
    /// A SUBSCRIBE or UNSUBSCRIBE without topic filters, or a SUBACK without return codes.
    #[error("no topic filters or return codes")]
    EmptyPayload,
    /// More topic filters (or SUBACK return codes) than
    /// [`Limits::max_filters`](super::Limits::max_filters).
    #[error("more than {max} topic filters")]
    TooManyFilters {
        /// The bound.
        max: usize,
    },
}

impl Error {
    /// The CONNACK a server should send before closing when decoding a CONNECT failed this way:
    /// 0x01 for a protocol level other than 3.1.1, 0x02 for a client ID over the limit. `None`
    /// means close without CONNACK (MQTT-3.1.4-1, -2).
    pub fn connack_code(&self) -> Option<ConnectReturnCode> {
        match self {
            Self::UnsupportedProtocol { .. } => {
                Some(ConnectReturnCode::UnacceptableProtocolVersion)
            }
            Self::TooLong {
                field: Field::ClientId,
                ..
            } => Some(ConnectReturnCode::IdentifierRejected),
            _ => None,
        }
    }
}

/// The length-bounded fields, for [`Error::TooLong`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// CONNECT client identifier.
    ClientId,
    /// CONNECT user name.
    Username,
    /// CONNECT password.
    Password,
    /// CONNECT will topic.
    WillTopic,
    /// CONNECT will message.
    WillPayload,
    /// PUBLISH topic name.
    Topic,
    /// SUBSCRIBE or UNSUBSCRIBE topic filter.
    TopicFilter,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClientId => "client id",
            Self::Username => "username",
            Self::Password => "password",
            Self::WillTopic => "will topic",
            Self::WillPayload => "will payload",
            Self::Topic => "topic",
            Self::TopicFilter => "topic filter",
        })
    }
}
