//! CA certificates registered on a scope: Azure's `certificates/{name}` resource of a DPS
//! instance, which X.509 enrollment groups name in `caReferences`.
//!
//! The shape follows the Azure resource (`name`, `etag`, `properties` with `subject`, `expiry`,
//! `thumbprint`, `isVerified`, `created`, `updated`, `certificate`). Timestamps use this crate's
//! wire form (7-digit UTC ISO 8601) rather than the management API's RFC 1123 dates, like every
//! other record here. Parsing the certificate and minting etags and times is the caller's job;
//! this type only carries them.
//!
//! ```
//! use dps_types::{CaCertificate, Etag};
//!
//! let c: CaCertificate = serde_json::from_str(
//!     r#"{"name":"Root-CA","properties":{"isVerified":false,"certificate":"MIIB"}}"#,
//! ).unwrap();
//! assert_eq!(c.key(), "root-ca");
//! assert!(c.etag.is_none());
//! assert!(CaCertificate::valid_name("Root-CA"));
//! assert!(!CaCertificate::valid_name("a/b"));
//! ```

use serde::{Deserialize, Serialize};

use crate::ids::Etag;
use crate::time::Timestamp;

/// The longest certificate name accepted.
pub const MAX_CERTIFICATE_NAME_LEN: usize = 128;

/// A CA certificate of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCertificate {
    /// The certificate's name within the scope (case-insensitive; see [`CaCertificate::key`]).
    pub name: String,
    /// What the certificate is and whether proof of possession was shown.
    pub properties: CertificateProperties,
    /// The record's etag (minted by the service on every write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<Etag>,
}

/// The `properties` of a [`CaCertificate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateProperties {
    /// The certificate's subject (distinguished name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The certificate's `notAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<Timestamp>,
    /// The certificate's thumbprint (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    /// Whether proof of possession of the private key was verified.
    #[serde(default)]
    pub is_verified: bool,
    /// When the record was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Timestamp>,
    /// When the record was last updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<Timestamp>,
    /// The certificate itself: PEM text, or base64 of the DER bytes, as uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

impl CaCertificate {
    /// The lookup key: the name, ASCII-lower-cased (names are case-insensitive, records keep
    /// the spelling they were written with).
    pub fn key(&self) -> String {
        Self::name_key(&self.name)
    }

    /// The lookup key of a certificate name.
    pub fn name_key(name: &str) -> String {
        name.to_ascii_lowercase()
    }

    /// Whether `name` is an acceptable certificate name: 1 to [`MAX_CERTIFICATE_NAME_LEN`]
    /// ASCII letters, digits, `-`, `.` and `_`.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_CERTIFICATE_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_azure_shape() {
        let json = serde_json::json!({
            "name": "Root",
            "properties": {
                "subject": "CN=Root",
                "expiry": "2030-01-01T00:00:00.0000000Z",
                "thumbprint": "AB01",
                "isVerified": true,
                "created": "2026-01-01T00:00:00.0000000Z",
                "updated": "2026-01-02T00:00:00.0000000Z",
                "certificate": "-----BEGIN CERTIFICATE-----"
            },
            "etag": "\"e1\""
        });
        let c: CaCertificate = serde_json::from_value(json.clone()).unwrap();
        assert!(c.properties.is_verified);
        assert_eq!(c.etag, Some(Etag::new("e1")));
        assert_eq!(c.properties.subject.as_deref(), Some("CN=Root"));
        assert_eq!(serde_json::to_value(&c).unwrap(), json);
    }

    #[test]
    fn names() {
        assert!(CaCertificate::valid_name("ca_1.v-2"));
        for bad in ["", "a b", "a/b", "ä", &"x".repeat(129)] {
            assert!(!CaCertificate::valid_name(bad), "{bad:?}");
        }
        assert_eq!(CaCertificate::name_key("Root-CA"), "root-ca");
    }
}
