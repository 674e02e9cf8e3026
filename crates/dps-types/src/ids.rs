//! Identifier newtypes. Each one is parsed once at the edge (`new` / `FromStr` / serde) so an
//! invalid value cannot be represented further in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The value is empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// The value is longer than allowed.
    #[error("{kind} is longer than {max} characters")]
    TooLong {
        /// Which identifier.
        kind: &'static str,
        /// The limit.
        max: usize,
    },
    /// The value holds a character outside the allowed set, or ends with a forbidden one.
    #[error("{0} contains an invalid character")]
    InvalidChar(&'static str),
}

fn check(
    kind: &'static str,
    s: &str,
    max: usize,
    ok: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty(kind));
    }
    if s.chars().count() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if !s.chars().all(ok) {
        return Err(IdError::InvalidChar(kind));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The ID scope of a DPS instance (tenant), e.g. `0ne00000001`. Azure's grammar is not
    /// documented; observed values are `0ne` + 8 hex digits. We accept 1-64 ASCII alphanumerics
    /// and compare case-insensitively (see [`IdScope::key`]).
    IdScope
);
impl IdScope {
    /// Parses an ID scope.
    pub fn new(s: &str) -> Result<Self, IdError> {
        check("id scope", s, 64, |c| c.is_ascii_alphanumeric())?;
        Ok(Self(s.to_owned()))
    }
    /// The case-folded form used as a lookup key.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

pub(crate) fn registration_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':')
}

string_id!(
    /// A registration ID: case-insensitive, 1-128 characters of ASCII alphanumerics and
    /// `- . _ :`, the last one alphanumeric or `-`. Stored as first written; compared and looked
    /// up by [`RegistrationId::key`].
    RegistrationId
);
impl RegistrationId {
    /// Parses a registration ID.
    pub fn new(s: &str) -> Result<Self, IdError> {
        check("registration id", s, 128, registration_char)?;
        match s.chars().last() {
            Some(c) if c.is_ascii_alphanumeric() || c == '-' => Ok(Self(s.to_owned())),
            _ => Err(IdError::InvalidChar("registration id")),
        }
    }
    /// The case-folded form used as a lookup key.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
    /// True when both name the same registration (ASCII case-insensitive).
    pub fn matches(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

string_id!(
    /// An enrollment group ID: same grammar as a registration ID, case-insensitive.
    EnrollmentGroupId
);
impl EnrollmentGroupId {
    /// Parses an enrollment group ID.
    pub fn new(s: &str) -> Result<Self, IdError> {
        RegistrationId::new(s)
            .map(|r| Self(r.0))
            .map_err(|e| match e {
                IdError::Empty(_) => IdError::Empty("enrollment group id"),
                IdError::TooLong { max, .. } => IdError::TooLong {
                    kind: "enrollment group id",
                    max,
                },
                _ => IdError::InvalidChar("enrollment group id"),
            })
    }
    /// The case-folded form used as a lookup key.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

string_id!(
    /// An IoT Hub device ID: case-sensitive, 1-128 ASCII characters of alphanumerics and
    /// `- : . + % _ # * ? ! ( ) , = @ ; $ '`.
    DeviceId
);
impl DeviceId {
    /// Parses a device ID.
    pub fn new(s: &str) -> Result<Self, IdError> {
        check("device id", s, 128, |c| {
            c.is_ascii_alphanumeric() || "-:.+%_#*?!(),=@;$'".contains(c)
        })?;
        Ok(Self(s.to_owned()))
    }
}

string_id!(
    /// An opaque operation ID minted by the service per registration attempt. Kept URL- and
    /// topic-safe: 1-128 characters of ASCII alphanumerics and `- . _`.
    OperationId
);
impl OperationId {
    /// Parses an operation ID.
    pub fn new(s: &str) -> Result<Self, IdError> {
        check("operation id", s, 128, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
        })?;
        Ok(Self(s.to_owned()))
    }
}

string_id!(
    /// The host name of a linked IoT hub, e.g. `hub-a.azure-devices.net` (DNS name, optional
    /// `:port`). Stored lower-case: host names are case-insensitive.
    HubHostName
);
impl HubHostName {
    /// Parses a hub host name.
    pub fn new(s: &str) -> Result<Self, IdError> {
        check("hub host name", s, 253, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':')
        })?;
        Ok(Self(s.to_ascii_lowercase()))
    }
}

/// An entity tag. Held without surrounding quotes; emitted on the wire quoted (`"\"…\""`), as
/// Azure does. Comparison ignores one layer of quotes and a `W/` prefix on either side.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Etag(String);

impl Etag {
    /// Builds an etag from its bare value (no quotes).
    pub fn new(bare: impl Into<String>) -> Self {
        Self(bare.into())
    }
    /// Parses an etag as a client sends it (`"abc"`, `abc`, `W/"abc"`).
    pub fn parse(s: &str) -> Self {
        Self(strip_etag(s).to_owned())
    }
    /// The bare value.
    pub fn bare(&self) -> &str {
        &self.0
    }
    /// The quoted wire form.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
    /// True when `header` (an `If-Match` value, possibly quoted) names this etag.
    pub fn matches(&self, header: &str) -> bool {
        strip_etag(header) == self.0
    }
}

fn strip_etag(s: &str) -> &str {
    let s = s.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

impl fmt::Debug for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Etag({:?})", self.0)
    }
}
impl fmt::Display for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}
impl Serialize for Etag {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.quoted())
    }
}
impl<'de> Deserialize<'de> for Etag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Etag::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_id_grammar() {
        assert!(RegistrationId::new("dev-1").is_ok());
        assert!(RegistrationId::new("a.b_c:d-").is_ok());
        assert!(RegistrationId::new(&"a".repeat(128)).is_ok());
        assert_eq!(
            RegistrationId::new(&"a".repeat(129)),
            Err(IdError::TooLong {
                kind: "registration id",
                max: 128
            })
        );
        assert_eq!(
            RegistrationId::new(""),
            Err(IdError::Empty("registration id"))
        );
        for bad in ["dev.", "dev_", "dev:", "dev 1", "dev/1", "dév", "dev%2f"] {
            assert!(RegistrationId::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn registration_id_is_case_insensitive_but_kept_as_written() {
        let id = RegistrationId::new("Dev-ABC").unwrap();
        assert_eq!(id.as_str(), "Dev-ABC");
        assert_eq!(id.key(), "dev-abc");
        assert!(id.matches("DEV-abc"));
        assert!(!id.matches("dev-abd"));
    }

    #[test]
    fn etag_matching_ignores_quotes_and_weak_prefix() {
        let e = Etag::new("a1b2");
        assert!(e.matches("\"a1b2\""));
        assert!(e.matches("a1b2"));
        assert!(e.matches("W/\"a1b2\""));
        assert!(!e.matches("\"a1b3\""));
        assert_eq!(e.quoted(), "\"a1b2\"");
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#""\"a1b2\"""#);
        let back: Etag = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn other_ids() {
        assert!(IdScope::new("0ne00000001").is_ok());
        assert!(IdScope::new("0ne/0001").is_err());
        assert_eq!(IdScope::new("0NE0000ABC").unwrap().key(), "0ne0000abc");
        assert!(DeviceId::new("dev$1(a)").is_ok());
        assert!(DeviceId::new("dev 1").is_err());
        assert!(OperationId::new("5.ab.c0-ff").is_ok());
        assert!(OperationId::new("5/ab").is_err());
        assert_eq!(
            HubHostName::new("Hub-A.example.net").unwrap().as_str(),
            "hub-a.example.net"
        );
        assert!(EnrollmentGroupId::new("group-1").is_ok());
        assert!(EnrollmentGroupId::new("group-1.").is_err());
    }

    #[test]
    fn serde_rejects_invalid_ids() {
        assert!(serde_json::from_str::<RegistrationId>(r#""bad id""#).is_err());
        let ok: RegistrationId = serde_json::from_str(r#""good-id""#).unwrap();
        assert_eq!(ok.as_str(), "good-id");
    }
}
