//! Attestation mechanisms as stored on enrollments: symmetric key, X.509 and TPM.
//!
//! On the wire an attestation is `{"type": "...", "symmetricKey"|"x509"|"tpm": {...}}`; here it is
//! an enum, so a record with a mismatched or missing member cannot exist.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A base64 symmetric key that decodes to 16-64 bytes. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SymmetricKey(String);

/// Why a symmetric key was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not valid base64.
    #[error("symmetric key is not valid base64")]
    NotBase64,
    /// Decodes to fewer than 16 or more than 64 bytes.
    #[error("symmetric key must decode to 16-64 bytes, got {0}")]
    BadLength(usize),
}

impl SymmetricKey {
    /// Parses a base64 key.
    pub fn new(b64: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(b64.trim())
            .map_err(|_| KeyError::NotBase64)?;
        if !(16..=64).contains(&bytes.len()) {
            return Err(KeyError::BadLength(bytes.len()));
        }
        Ok(Self(b64.trim().to_owned()))
    }
    /// Encodes raw key bytes (16-64 of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if !(16..=64).contains(&bytes.len()) {
            return Err(KeyError::BadLength(bytes.len()));
        }
        Ok(Self(STANDARD.encode(bytes)))
    }
    /// The base64 text. Handle with care: this is a secret.
    pub fn expose_base64(&self) -> &str {
        &self.0
    }
    /// The decoded key bytes.
    pub fn decode(&self) -> Vec<u8> {
        // Validated at construction.
        STANDARD.decode(&self.0).unwrap_or_default()
    }
}
impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey(<redacted>)")
    }
}
impl TryFrom<String> for SymmetricKey {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        Self::new(&s)
    }
}
impl From<SymmetricKey> for String {
    fn from(k: SymmetricKey) -> String {
        k.0
    }
}

/// Symmetric-key attestation. Keys are optional on input (the service generates missing ones)
/// and absent from masked output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyAttestation {
    /// Primary key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<SymmetricKey>,
    /// Secondary key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<SymmetricKey>,
}

impl SymmetricKeyAttestation {
    /// The keys that are set, primary first.
    pub fn keys(&self) -> impl Iterator<Item = &SymmetricKey> {
        self.primary_key.iter().chain(self.secondary_key.iter())
    }
}

/// TPM attestation (individual enrollments only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmAttestation {
    /// base64 of the EK's public part.
    pub endorsement_key: String,
    /// base64 of the SRK's public part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_root_key: Option<String>,
}

/// What the service derives from an uploaded certificate (`info`); all members are required on
/// the wire (.NET v1 throws when the validity or version is missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateInfo {
    /// Subject DN, most specific first (`CN=dev-1, O=Contoso`).
    pub subject_name: String,
    /// Upper-case hex SHA-1 of the DER.
    pub sha1_thumbprint: String,
    /// Upper-case hex SHA-256 of the DER.
    pub sha256_thumbprint: String,
    /// Issuer DN.
    pub issuer_name: String,
    /// Start of validity.
    pub not_before_utc: crate::Timestamp,
    /// End of validity.
    pub not_after_utc: crate::Timestamp,
    /// Serial number, upper-case hex.
    pub serial_number: String,
    /// X.509 version (3 for any modern certificate).
    pub version: u8,
}

/// One certificate of an X.509 attestation: the certificate as uploaded (never returned) and
/// the `info` the service derives from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateWithInfo {
    /// PEM, base64(PEM) or base64(DER) as uploaded. Removed by masking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Derived certificate information (subject, thumbprints, validity, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
}

/// Primary and optional secondary certificate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Certificates {
    /// Primary certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<X509CertificateWithInfo>,
    /// Secondary certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<X509CertificateWithInfo>,
}

/// Names of scope-level CA certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CaReferences {
    /// Primary CA name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Secondary CA name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
}

/// X.509 attestation: exactly one of the three members is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Attestation {
    /// Device certificates (individual enrollments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<X509Certificates>,
    /// Signing (CA or intermediate) certificates (groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificates: Option<X509Certificates>,
    /// References to scope-level CA certificates (groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_references: Option<X509CaReferences>,
}

impl X509Certificates {
    /// The certificates that are set, primary first.
    pub fn iter(&self) -> impl Iterator<Item = &X509CertificateWithInfo> {
        self.primary.iter().chain(self.secondary.iter())
    }
}

impl X509CaReferences {
    /// The names that are set, primary first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.primary
            .iter()
            .chain(self.secondary.iter())
            .map(String::as_str)
    }
}

impl X509Attestation {
    fn members(&self) -> usize {
        usize::from(self.client_certificates.is_some())
            + usize::from(self.signing_certificates.is_some())
            + usize::from(self.ca_references.is_some())
    }
}

/// How a device proves who it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AttestationWire", into = "AttestationWire")]
pub enum AttestationMechanism {
    /// Shared symmetric keys (SAS tokens).
    SymmetricKey(SymmetricKeyAttestation),
    /// X.509 certificates over mutual TLS.
    X509(Box<X509Attestation>),
    /// TPM endorsement key.
    Tpm(TpmAttestation),
}

/// The kind of an attestation, without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttestationKind {
    /// Symmetric key.
    SymmetricKey,
    /// X.509.
    X509,
    /// TPM.
    Tpm,
}

impl AttestationMechanism {
    /// The kind.
    pub fn kind(&self) -> AttestationKind {
        match self {
            Self::SymmetricKey(_) => AttestationKind::SymmetricKey,
            Self::X509(_) => AttestationKind::X509,
            Self::Tpm(_) => AttestationKind::Tpm,
        }
    }
    /// The symmetric-key attestation, if that is the kind.
    pub fn symmetric_key(&self) -> Option<&SymmetricKeyAttestation> {
        match self {
            Self::SymmetricKey(s) => Some(s),
            _ => None,
        }
    }
    /// A copy without uploaded certificates (their `info` kept), symmetric keys untouched: what
    /// the attestation-mechanism call returns, since the service never returns a certificate.
    pub fn without_certificates(&self) -> Self {
        match self {
            Self::X509(_) => self.masked(),
            other => other.clone(),
        }
    }
    /// The X.509 attestation, if that is the kind.
    pub fn x509(&self) -> Option<&X509Attestation> {
        match self {
            Self::X509(x) => Some(x),
            _ => None,
        }
    }
    /// A copy without secrets, as GET and query return it: symmetric keys removed, uploaded
    /// certificates removed (their `info` kept). TPM public keys are not secret and stay.
    pub fn masked(&self) -> Self {
        match self {
            Self::SymmetricKey(_) => Self::SymmetricKey(SymmetricKeyAttestation::default()),
            Self::X509(x) => {
                let strip = |c: &Option<X509Certificates>| {
                    c.as_ref().map(|c| X509Certificates {
                        primary: c.primary.as_ref().map(|p| X509CertificateWithInfo {
                            certificate: None,
                            info: p.info.clone(),
                        }),
                        secondary: c.secondary.as_ref().map(|p| X509CertificateWithInfo {
                            certificate: None,
                            info: p.info.clone(),
                        }),
                    })
                };
                Self::X509(Box::new(X509Attestation {
                    client_certificates: strip(&x.client_certificates),
                    signing_certificates: strip(&x.signing_certificates),
                    ca_references: x.ca_references.clone(),
                }))
            }
            Self::Tpm(t) => Self::Tpm(t.clone()),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttestationWire {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tpm: Option<TpmAttestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x509: Option<X509Attestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    symmetric_key: Option<SymmetricKeyAttestation>,
}

impl TryFrom<AttestationWire> for AttestationMechanism {
    type Error = String;
    fn try_from(w: AttestationWire) -> Result<Self, String> {
        match w.kind.to_ascii_lowercase().as_str() {
            "symmetrickey" => Ok(Self::SymmetricKey(w.symmetric_key.unwrap_or_default())),
            "x509" => {
                let x = w.x509.ok_or("x509 attestation requires the x509 member")?;
                if x.members() != 1 {
                    return Err("x509 attestation needs exactly one of clientCertificates, \
                                signingCertificates or caReferences"
                        .into());
                }
                Ok(Self::X509(Box::new(x)))
            }
            "tpm" => Ok(Self::Tpm(
                w.tpm.ok_or("tpm attestation requires the tpm member")?,
            )),
            "none" => Err("attestation type 'none' is not supported".into()),
            other => Err(format!("unknown attestation type '{other}'")),
        }
    }
}

impl From<AttestationMechanism> for AttestationWire {
    fn from(a: AttestationMechanism) -> Self {
        let mut w = AttestationWire {
            kind: String::new(),
            tpm: None,
            x509: None,
            symmetric_key: None,
        };
        match a {
            AttestationMechanism::SymmetricKey(s) => {
                w.kind = "symmetricKey".into();
                // Masked records read `{"type":"symmetricKey"}`, as Azure serialises them.
                w.symmetric_key = Some(s).filter(|s| s.keys().next().is_some());
            }
            AttestationMechanism::X509(x) => {
                w.kind = "x509".into();
                w.x509 = Some(*x);
            }
            AttestationMechanism::Tpm(t) => {
                w.kind = "tpm".into();
                w.tpm = Some(t);
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";

    #[test]
    fn key_length_rules() {
        assert!(SymmetricKey::new(K).is_ok());
        assert_eq!(SymmetricKey::new("AAAA"), Err(KeyError::BadLength(3)));
        assert_eq!(SymmetricKey::new("not base64!"), Err(KeyError::NotBase64));
        assert!(SymmetricKey::from_bytes(&[7u8; 64]).is_ok());
        assert_eq!(
            SymmetricKey::from_bytes(&[7u8; 65]),
            Err(KeyError::BadLength(65))
        );
        assert!(!format!("{:?}", SymmetricKey::new(K).unwrap()).contains(K));
    }

    #[test]
    fn wire_round_trip_and_masking() {
        let json = format!(
            r#"{{"type":"symmetricKey","symmetricKey":{{"primaryKey":"{K}","secondaryKey":"{K}"}}}}"#
        );
        let a: AttestationMechanism = serde_json::from_str(&json).unwrap();
        assert_eq!(a.kind(), AttestationKind::SymmetricKey);
        assert_eq!(serde_json::to_string(&a).unwrap(), json);
        let masked = serde_json::to_string(&a.masked()).unwrap();
        assert_eq!(masked, r#"{"type":"symmetricKey"}"#);
        assert!(!masked.contains(K));
    }

    #[test]
    fn type_without_member() {
        let a: AttestationMechanism = serde_json::from_str(r#"{"type":"symmetricKey"}"#).unwrap();
        assert_eq!(a.symmetric_key().unwrap().keys().count(), 0);
        assert!(serde_json::from_str::<AttestationMechanism>(r#"{"type":"tpm"}"#).is_err());
        assert!(serde_json::from_str::<AttestationMechanism>(r#"{"type":"none"}"#).is_err());
        assert!(
            serde_json::from_str::<AttestationMechanism>(r#"{"type":"x509","x509":{}}"#).is_err()
        );
        let x: AttestationMechanism = serde_json::from_str(
            r#"{"type":"x509","x509":{"clientCertificates":{"primary":{"certificate":"PEM","info":{"subjectName":"CN=a"}}}}}"#,
        )
        .unwrap();
        let m = serde_json::to_string(&x.masked()).unwrap();
        assert!(!m.contains("PEM") && m.contains("CN=a"), "{m}");
    }
}
