//! Registration-ID patterns, an extension beyond Azure DPS: an enrollment group may name the
//! registration IDs it accepts (`registrationIdPattern` in its JSON), so that a device's first
//! registration, which does not say which group it belongs to, is checked against only the
//! groups that could hold it.
//!
//! The grammar is a glob kept deliberately small: 1-128 characters, each a registration-ID
//! character (ASCII letters and digits, `- . _ :`) or a wildcard, `*` for any run of characters
//! (also none) and `?` for exactly one. The last character must be one a registration ID may end
//! with (a letter, a digit or `-`) or a wildcard, so that a pattern can match something.
//! Matching ignores ASCII case, as registration IDs do. The literal text before the first
//! wildcard ([`RegistrationIdPattern::literal_prefix`]) lets a caller index many patterns.
//!
//! ```
//! use dps_types::RegistrationIdPattern;
//!
//! let p = RegistrationIdPattern::new("Sensor-??-*").unwrap();
//! assert!(p.is_match("sensor-01-basement"));
//! assert!(!p.is_match("sensor-1-basement"));
//! assert_eq!(p.literal_prefix(), "Sensor-");
//! assert!(RegistrationIdPattern::new("sensor/*").is_err());
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest pattern accepted, as for a registration ID.
const MAX_LEN: usize = 128;

/// Why a pattern was rejected. The text names the field, so that it can be the whole message of
/// a 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is empty.
    #[error("registrationIdPattern is empty")]
    Empty,
    /// The pattern is longer than a registration ID may be.
    #[error("registrationIdPattern is longer than {MAX_LEN} characters")]
    TooLong,
    /// A character that is neither a registration-ID character nor a wildcard.
    #[error(
        "registrationIdPattern contains {0:?}: only ASCII letters, digits, '-', '.', '_', ':' \
         and the wildcards '*' and '?' are allowed"
    )]
    InvalidChar(char),
    /// The pattern ends with a character no registration ID ends with, so it matches nothing.
    #[error(
        "registrationIdPattern ends with {0:?}, which no registration ID ends with: end it with \
         a letter, a digit, '-' or a wildcard"
    )]
    InvalidEnd(char),
}

/// A glob over registration IDs (`*`, `?`), ASCII case-insensitive. See the module header.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegistrationIdPattern(String);

fn is_wildcard(c: char) -> bool {
    matches!(c, '*' | '?')
}

impl RegistrationIdPattern {
    /// Parses a pattern.
    pub fn new(s: &str) -> Result<Self, PatternError> {
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        if s.chars().count() > MAX_LEN {
            return Err(PatternError::TooLong);
        }
        if let Some(c) = s
            .chars()
            .find(|&c| !(crate::ids::registration_char(c) || is_wildcard(c)))
        {
            return Err(PatternError::InvalidChar(c));
        }
        match s.chars().last() {
            Some(c) if c.is_ascii_alphanumeric() || c == '-' || is_wildcard(c) => {
                Ok(Self(s.to_owned()))
            }
            Some(c) => Err(PatternError::InvalidEnd(c)),
            None => Err(PatternError::Empty),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The literal text before the first wildcard (all of it when there is none), as written:
    /// every matching registration ID starts with it, ignoring ASCII case.
    pub fn literal_prefix(&self) -> &str {
        let end = self.0.find(is_wildcard).unwrap_or(self.0.len());
        &self.0[..end]
    }

    /// Whether `registration_id` matches, ignoring ASCII case. Linear in the usual case and
    /// at most the product of both lengths (both are at most 128 characters).
    pub fn is_match(&self, registration_id: &str) -> bool {
        glob(self.0.as_bytes(), registration_id.as_bytes())
    }
}

/// Glob matching with single-star backtracking: on a mismatch, the last `*` takes one more
/// byte. Both inputs are ASCII by construction of a pattern; a non-ASCII byte in `s` matches
/// only `*` or `?` (and `?` one byte of it, which is harmless: registration IDs are ASCII).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    // The position after the last `*` seen, and the input position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&s[si]) => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((after, tried)) => {
                    pi = after;
                    si = tried + 1;
                    star = Some((after, tried + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl fmt::Display for RegistrationIdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RegistrationIdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistrationIdPattern({:?})", self.0)
    }
}

impl TryFrom<String> for RegistrationIdPattern {
    type Error = PatternError;
    fn try_from(s: String) -> Result<Self, PatternError> {
        Self::new(&s)
    }
}

impl From<RegistrationIdPattern> for String {
    fn from(p: RegistrationIdPattern) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use super::*;

    fn m(p: &str, s: &str) -> bool {
        RegistrationIdPattern::new(p).unwrap().is_match(s)
    }

    #[test]
    fn literals_match_whole_ids_ignoring_case() {
        assert!(m("dev-1", "dev-1"));
        assert!(m("DEV-1", "dev-1"));
        assert!(!m("dev-1", "dev-10"));
        assert!(!m("dev-10", "dev-1"));
    }

    #[test]
    fn wildcards() {
        assert!(m("*", "a"));
        assert!(m("sensor-*", "sensor-"));
        assert!(m("sensor-*", "Sensor-42"));
        assert!(!m("sensor-*", "actuator-42"));
        assert!(m("*-eu", "plant-7-eu"));
        assert!(!m("*-eu", "plant-7-us"));
        assert!(m("a*b*c", "aXXbYYbZc"));
        assert!(!m("a*b*c", "aXXbYYbZ"));
        assert!(m("??-*", "ab-"));
        assert!(!m("??-*", "a-b"));
        assert!(m("a**b", "ab"));
        assert!(m("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaa"));
        assert!(!m("?", ""));
        assert!(!m("a?", "a"));
    }

    #[test]
    fn literal_prefix_stops_at_the_first_wildcard() {
        let p = |s| RegistrationIdPattern::new(s).unwrap();
        assert_eq!(p("Line-3-*").literal_prefix(), "Line-3-");
        assert_eq!(p("line-?-*").literal_prefix(), "line-");
        assert_eq!(p("*-eu").literal_prefix(), "");
        assert_eq!(p("dev-1").literal_prefix(), "dev-1");
    }

    #[test]
    fn bad_patterns_are_rejected_with_the_reason() {
        assert_eq!(RegistrationIdPattern::new(""), Err(PatternError::Empty));
        assert_eq!(
            RegistrationIdPattern::new(&"a".repeat(129)),
            Err(PatternError::TooLong)
        );
        assert!(RegistrationIdPattern::new(&"a".repeat(128)).is_ok());
        for (bad, c) in [("a b", ' '), ("dev/*", '/'), ("[ab]*", '['), ("dév*", 'é')] {
            assert_eq!(
                RegistrationIdPattern::new(bad),
                Err(PatternError::InvalidChar(c)),
                "{bad}"
            );
        }
        assert_eq!(
            RegistrationIdPattern::new("dev."),
            Err(PatternError::InvalidEnd('.'))
        );
        let e = RegistrationIdPattern::new("dev/*").unwrap_err().to_string();
        assert!(e.starts_with("registrationIdPattern contains '/'"), "{e}");
    }

    #[test]
    fn serde_round_trip_and_refusal() {
        let p: RegistrationIdPattern = serde_json::from_str(r#""Sensor-*""#).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), r#""Sensor-*""#);
        assert!(serde_json::from_str::<RegistrationIdPattern>(r#""a b""#).is_err());
    }
}
