//! UTC timestamps in the form Azure DPS emits: `2022-08-31T22:02:50.5163352Z` (seven fractional
//! digits, `Z`). Parsing accepts RFC 3339 with 0-9 fractional digits.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// A UTC instant, formatted the .NET way on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

const WIRE: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z");

impl Timestamp {
    /// Wraps an instant (converted to UTC).
    pub fn new(t: OffsetDateTime) -> Self {
        // Truncated to the 100 ns the wire form carries, so a timestamp reads back equal after
        // any store serialises it.
        let t = t.to_offset(UtcOffset::UTC);
        let ns = t.nanosecond();
        Self(t.replace_nanosecond(ns - ns % 100).unwrap_or(t))
    }
    /// From nanoseconds since the Unix epoch (truncated to 100 ns).
    pub fn from_unix_nanos(nanos: i128) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .map(Self::new)
    }
    /// The instant.
    pub fn as_offset(&self) -> OffsetDateTime {
        self.0
    }
    /// Whole seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.0.unix_timestamp()
    }
    /// Parses RFC 3339 (any offset, 0-9 fractional digits).
    pub fn parse(s: &str) -> Option<Self> {
        OffsetDateTime::parse(s, &Rfc3339).ok().map(Self::new)
    }
    /// The wire form with seven fractional digits and `Z`.
    pub fn to_wire(&self) -> String {
        // Formatting a valid UTC OffsetDateTime with this description cannot fail for years
        // 0..=9999; fall back to RFC 3339 for anything exotic.
        self.0
            .format(WIRE)
            .or_else(|_| self.0.format(&Rfc3339))
            .unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_wire())
    }
}
impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_wire())
    }
}
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| serde::de::Error::custom("invalid RFC 3339 timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_digits_and_z() {
        let t = Timestamp::from_unix_nanos(1_661_983_370_516_335_200).unwrap();
        assert_eq!(t.to_wire(), "2022-08-31T22:02:50.5163352Z");
        let whole = Timestamp::from_unix_nanos(1_661_983_370_000_000_000).unwrap();
        assert_eq!(whole.to_wire(), "2022-08-31T22:02:50.0000000Z");
    }

    #[test]
    fn truncated_to_what_the_wire_carries() {
        let t = Timestamp::from_unix_nanos(1_661_983_370_516_335_299).unwrap();
        assert_eq!(t.to_wire(), "2022-08-31T22:02:50.5163352Z");
        assert_eq!(Timestamp::parse(&t.to_wire()), Some(t));
    }

    #[test]
    fn parses_variants() {
        let a = Timestamp::parse("2022-08-31T22:02:50.5163352Z").unwrap();
        assert_eq!(a.to_wire(), "2022-08-31T22:02:50.5163352Z");
        let b = Timestamp::parse("2020-09-23T10:58:31.62286Z").unwrap();
        assert_eq!(b.to_wire(), "2020-09-23T10:58:31.6228600Z");
        let c = Timestamp::parse("2022-08-01T22:57:47+02:00").unwrap();
        assert_eq!(c.to_wire(), "2022-08-01T20:57:47.0000000Z");
        assert!(Timestamp::parse("yesterday").is_none());
    }
}
