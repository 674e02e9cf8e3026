//! Framing shared by every packet (MQTT 3.1.1 §1.5, §2): the fixed header with its
//! remaining-length varint, length-prefixed strings and binaries, topic name and filter rules,
//! and the two small value types several packets carry ([`QoS`], [`PacketId`]).

use std::num::NonZeroU16;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{Error, Field, Limits};

/// Largest remaining length a 4-byte varint can express (§2.2.3).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Largest string or binary field: its length prefix is a `u16`.
const MAX_FIELD: usize = u16::MAX as usize;

/// A quality-of-service level as requested in SUBSCRIBE, granted in SUBACK or set on a will.
/// PUBLISH uses [`PublishQos`](super::PublishQos), which cannot express QoS 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QoS {
    /// 0: fire and forget.
    AtMostOnce = 0,
    /// 1: acknowledged by PUBACK.
    AtLeastOnce = 1,
    /// 2: four-way handshake; DPS grants QoS 1 instead.
    ExactlyOnce = 2,
}

impl QoS {
    /// From the two-bit wire value; `None` for 3.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }
}

/// A packet identifier. Never zero (MQTT-2.3.1-1), so zero is unrepresentable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// Packet identifier 1, where a fresh sender starts.
    pub const MIN: Self = Self(NonZeroU16::MIN);

    /// `None` for 0.
    pub const fn new(v: u16) -> Option<Self> {
        match NonZeroU16::new(v) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// The wire value.
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The identifier after this one, wrapping from 65,535 to 1.
    #[must_use]
    pub const fn next(self) -> Self {
        match NonZeroU16::new(self.0.get().wrapping_add(1)) {
            Some(v) => Self(v),
            None => Self::MIN,
        }
    }
}

/// Packet type (upper nibble of byte 0).
pub(crate) mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
}

/// A fixed header whose flags have been checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FixedHeader {
    pub packet_type: u8,
    pub flags: u8,
    /// Byte 0 plus the varint.
    pub header_len: usize,
    pub remaining: usize,
}

impl FixedHeader {
    /// Reads a fixed header from the front of `buf` without consuming it. Type and flags are
    /// checked as soon as byte 0 is there, the size as soon as the varint is complete.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Self>, Error> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let (packet_type, flags) = (first >> 4, first & 0x0f);
        check_flags(packet_type, flags)?;
        let Some((remaining, varint_len)) = read_varint(&buf[1..])? else {
            return Ok(None);
        };
        let max = limits.max_packet.min(MAX_REMAINING_LENGTH);
        if remaining > max {
            return Err(Error::PacketTooLarge {
                len: remaining,
                max,
            });
        }
        Ok(Some(Self {
            packet_type,
            flags,
            header_len: 1 + varint_len,
            remaining,
        }))
    }
}

/// §2.2.2: the flags each packet type must carry; PUBLISH's encode DUP, QoS and RETAIN.
fn check_flags(packet_type: u8, flags: u8) -> Result<(), Error> {
    let expected = match packet_type {
        kind::PUBLISH => {
            return match (flags >> 1) & 0b11 {
                0 if flags & 0b1000 != 0 => Err(Error::InvalidFlags { packet_type, flags }),
                0 | 1 => Ok(()),
                2 => Err(Error::UnsupportedQos),
                q => Err(Error::InvalidQos(q)),
            };
        }
        kind::SUBSCRIBE | kind::UNSUBSCRIBE => 0b0010,
        kind::CONNECT
        | kind::CONNACK
        | kind::PUBACK
        | kind::SUBACK
        | kind::UNSUBACK
        | kind::PINGREQ
        | kind::PINGRESP
        | kind::DISCONNECT => 0,
        _ => return Err(Error::UnexpectedPacketType(packet_type)),
    };
    if flags == expected {
        Ok(())
    } else {
        Err(Error::InvalidFlags { packet_type, flags })
    }
}

/// `Ok(None)` while the varint is incomplete; at most 4 bytes, minimally encoded.
fn read_varint(buf: &[u8]) -> Result<Option<(usize, usize)>, Error> {
    let mut value = 0usize;
    for (i, &b) in buf.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(Error::MalformedRemainingLength);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(Error::MalformedRemainingLength)
    } else {
        Ok(None)
    }
}

/// Bytes the varint for `n` takes.
pub(crate) fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a remaining length; `n` must be at most [`MAX_REMAINING_LENGTH`].
pub(crate) fn put_varint(buf: &mut BytesMut, mut n: usize) {
    loop {
        let digit = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf.put_u8(digit);
            return;
        }
        buf.put_u8(digit | 0x80);
    }
}

/// Cursor over one packet's variable header and payload.
pub(crate) struct Reader(Bytes);

impl Reader {
    pub fn new(body: Bytes) -> Self {
        Self(body)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn u8(&mut self) -> Result<u8, Error> {
        self.0.try_get_u8().map_err(|_| Error::Truncated)
    }

    pub fn u16(&mut self) -> Result<u16, Error> {
        self.0.try_get_u16().map_err(|_| Error::Truncated)
    }

    pub fn packet_id(&mut self) -> Result<PacketId, Error> {
        PacketId::new(self.u16()?).ok_or(Error::ZeroPacketId)
    }

    /// `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<Bytes, Error> {
        if self.0.len() < n {
            return Err(Error::Truncated);
        }
        Ok(self.0.split_to(n))
    }

    /// A `u16`-length-prefixed binary of at most `max` bytes.
    pub fn binary(&mut self, field: Field, max: usize) -> Result<Bytes, Error> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(Error::TooLong { field, max });
        }
        self.take(n)
    }

    /// A `u16`-length-prefixed UTF-8 string of at most `max` bytes without U+0000.
    pub fn string(&mut self, field: Field, max: usize) -> Result<String, Error> {
        let raw = self.binary(field, max)?;
        let s = std::str::from_utf8(&raw).map_err(|_| Error::InvalidUtf8)?;
        if s.contains('\0') {
            return Err(Error::InvalidUtf8);
        }
        Ok(s.to_owned())
    }

    /// Everything left (the PUBLISH payload).
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.0)
    }

    /// For packets without a payload: nothing may follow the last field.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes)
        }
    }
}

/// Encoded size of a string field (prefix included), refusing what the decoder would refuse.
pub(crate) fn string_len(field: Field, s: &str) -> Result<usize, Error> {
    if s.contains('\0') {
        return Err(Error::InvalidUtf8);
    }
    binary_len(field, s.as_bytes())
}

/// Encoded size of a binary field (prefix included).
pub(crate) fn binary_len(field: Field, b: &[u8]) -> Result<usize, Error> {
    if b.len() > MAX_FIELD {
        return Err(Error::TooLong {
            field,
            max: MAX_FIELD,
        });
    }
    Ok(2 + b.len())
}

/// Writes a field already sized by [`binary_len`] or [`string_len`].
pub(crate) fn put_binary(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u16(u16::try_from(b.len()).unwrap_or(u16::MAX));
    buf.put_slice(b);
}

/// §4.7.3: at least one character, no wildcards.
pub(crate) fn check_topic_name(topic: &str) -> Result<(), Error> {
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(Error::InvalidTopicName);
    }
    Ok(())
}

/// §4.7.1: `#` only as the whole last level, `+` only as a whole level.
pub(crate) fn check_topic_filter(filter: &str) -> Result<(), Error> {
    if filter.is_empty() {
        return Err(Error::InvalidTopicFilter);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let bad_hash = level.contains('#') && (level != "#" || levels.peek().is_some());
        let bad_plus = level.contains('+') && level != "+";
        if bad_hash || bad_plus {
            return Err(Error::InvalidTopicFilter);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries_round_trip() {
        // §2.2.3 table: 0, 127 | 128, 16 383 | 16 384, 2 097 151 | 2 097 152, 268 435 455.
        let cases: [(usize, &[u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xff, 0xff, 0x7f]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (MAX_REMAINING_LENGTH, &[0xff, 0xff, 0xff, 0x7f]),
        ];
        for (n, wire) in cases {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, n);
            assert_eq!(&buf[..], wire, "{n}");
            assert_eq!(varint_len(n), wire.len());
            assert_eq!(read_varint(wire), Ok(Some((n, wire.len()))));
            for cut in 0..wire.len() {
                assert_eq!(read_varint(&wire[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn varint_rejects_five_bytes_and_padding() {
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(Error::MalformedRemainingLength)
        );
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80]),
            Err(Error::MalformedRemainingLength)
        );
        // Non-minimal: 0 as two bytes, 127 as three.
        assert_eq!(
            read_varint(&[0x80, 0x00]),
            Err(Error::MalformedRemainingLength)
        );
        assert_eq!(
            read_varint(&[0xff, 0x80, 0x00]),
            Err(Error::MalformedRemainingLength)
        );
    }

    #[test]
    fn topic_rules() {
        for ok in [
            "$dps/registrations/res/#",
            "#",
            "+",
            "a/+/b",
            "+/+",
            "a//b",
            "/",
        ] {
            assert_eq!(check_topic_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a#", "#/a", "a/#/b", "a+", "a/b+/c", "##"] {
            assert_eq!(
                check_topic_filter(bad),
                Err(Error::InvalidTopicFilter),
                "{bad}"
            );
        }
        assert_eq!(
            check_topic_name("$dps/registrations/res/200/?$rid=1"),
            Ok(())
        );
        for bad in ["", "a/#", "a/+/b"] {
            assert_eq!(check_topic_name(bad), Err(Error::InvalidTopicName), "{bad}");
        }
    }

    #[test]
    fn packet_ids_skip_zero() {
        assert_eq!(PacketId::new(0), None);
        let last = PacketId::new(u16::MAX).map(PacketId::next);
        assert_eq!(last.map(PacketId::get), Some(1));
        assert_eq!(PacketId::new(6484).map(|p| p.next().get()), Some(6485));
    }
}
