//! One certificate: what the service API shows of it ([`CertInfo`]), its thumbprints, and the
//! forms an operator may upload it in (PEM, base64 of PEM, base64 of DER).

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use x509_cert::Certificate;
use x509_cert::der::Decode as _;
use x509_cert::name::Name;

use super::ChainError;

/// Largest certificate accepted, in DER bytes (the service API body limit is 96 KB anyway).
pub const MAX_CERT_DER: usize = 16 * 1024;

/// The facts about a certificate that the service API returns as `info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject DN, most specific first: `CN=dev-1, O=Contoso, C=US`.
    pub subject: String,
    /// Issuer DN, same form.
    pub issuer: String,
    /// Upper-case hex SHA-1 of the DER, no separators.
    pub sha1_thumbprint: String,
    /// Upper-case hex SHA-256 of the DER, no separators.
    pub sha256_thumbprint: String,
    /// Start of validity, unix seconds.
    pub not_before: u64,
    /// End of validity, unix seconds.
    pub not_after: u64,
    /// Serial number, upper-case hex without separators.
    pub serial_number: String,
    /// X.509 version: 1, 2 or 3.
    pub version: u8,
}

impl CertInfo {
    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, ChainError> {
        let cert = parse(der)?;
        let tbs = cert.tbs_certificate();
        let validity = tbs.validity();
        Ok(Self {
            subject: dn(tbs.subject()),
            issuer: dn(tbs.issuer()),
            sha1_thumbprint: hex(&Sha1::digest(der)),
            sha256_thumbprint: hex(&sha256(der)),
            not_before: validity.not_before.to_unix_duration().as_secs(),
            not_after: validity.not_after.to_unix_duration().as_secs(),
            serial_number: hex(tbs.serial_number().as_bytes()),
            version: match tbs.version() {
                x509_cert::Version::V1 => 1,
                x509_cert::Version::V2 => 2,
                x509_cert::Version::V3 => 3,
            },
        })
    }
}

/// SHA-256 of a certificate's DER: the thumbprint individual enrollments are matched by.
#[must_use]
pub fn sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Decodes a certificate as the service API receives it: PEM text, base64 of PEM (the C SDK),
/// or base64 of DER (the CLI for binary files). Exactly one certificate must be present.
pub fn decode_uploaded(text: &str) -> Result<CertificateDer<'static>, ChainError> {
    let text = text.trim();
    let der = if text.starts_with("-----BEGIN") {
        from_pem(text.as_bytes())?
    } else {
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = STANDARD
            .decode(compact)
            .map_err(|_| ChainError::Malformed(None))?;
        if bytes.starts_with(b"-----BEGIN") {
            from_pem(&bytes)?
        } else {
            CertificateDer::from(bytes)
        }
    };
    if der.len() > MAX_CERT_DER {
        return Err(ChainError::Malformed(None));
    }
    parse(&der)?;
    Ok(der)
}

fn from_pem(pem: &[u8]) -> Result<CertificateDer<'static>, ChainError> {
    let mut certs = CertificateDer::pem_slice_iter(pem);
    let first = certs
        .next()
        .ok_or(ChainError::Malformed(None))?
        .map_err(ChainError::malformed)?;
    if certs.next().is_some() {
        return Err(ChainError::Malformed(None));
    }
    Ok(first)
}

pub(crate) fn parse(der: &[u8]) -> Result<Certificate, ChainError> {
    Certificate::from_der(der).map_err(ChainError::malformed)
}

/// A DN most specific first, `, `-separated, RFC 4514 escaping per attribute.
pub(crate) fn dn(name: &Name) -> String {
    let mut out = String::new();
    for rdn in name.iter_rdn().collect::<Vec<_>>().into_iter().rev() {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(out, "{rdn}");
    }
    out
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}
