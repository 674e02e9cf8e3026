//! The chain a device presents in TLS, and the two ways an enrollment accepts it: by the leaf's
//! thumbprint (individual enrollments) or by a path to a signing certificate (groups).

use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};
use x509_cert::der::Encode as _;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage as KeyUsageExt};

use super::ChainError;
use super::cert::{parse, sha256};

/// Most certificates of a presented chain that are looked at (leaf included); the rest are
/// ignored, which bounds the work an unauthenticated client can cause.
pub const MAX_CHAIN: usize = 8;

const OID_CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";
const OID_ANY_EKU: &str = "2.5.29.37.0";

/// A device's TLS chain, leaf first, with the leaf already read.
#[derive(Debug)]
pub struct DeviceChain<'a> {
    certs: &'a [CertificateDer<'a>],
    registration_id: String,
    leaf_sha256: [u8; 32],
    not_before: u64,
    not_after: u64,
    usage_ok: bool,
    /// DER of each presented certificate's issuer name, leaf first.
    issuers: Vec<Vec<u8>>,
}

impl<'a> DeviceChain<'a> {
    /// Reads the chain: the leaf must parse and carry a subject CN (the registration ID).
    /// Certificates after [`MAX_CHAIN`] are ignored.
    pub fn parse(certs: &'a [CertificateDer<'a>]) -> Result<Self, ChainError> {
        let certs = &certs[..certs.len().min(MAX_CHAIN)];
        let leaf_der = certs.first().ok_or(ChainError::NoCertificate)?;
        let leaf = parse(leaf_der)?;
        let tbs = leaf.tbs_certificate();
        let registration_id = tbs
            .subject()
            .common_name()
            .map_err(ChainError::malformed)?
            .map(String::from)
            .ok_or(ChainError::NoCommonName)?;
        let validity = tbs.validity();
        let mut issuers = Vec::with_capacity(certs.len());
        for c in certs {
            let issuer = if std::ptr::eq(c, leaf_der) {
                tbs.issuer().to_der()
            } else {
                parse(c)?.tbs_certificate().issuer().to_der()
            };
            issuers.push(issuer.map_err(ChainError::malformed)?);
        }
        Ok(Self {
            certs,
            registration_id,
            leaf_sha256: sha256(leaf_der),
            not_before: validity.not_before.to_unix_duration().as_secs(),
            not_after: validity.not_after.to_unix_duration().as_secs(),
            usage_ok: usage_allows_client_auth(&leaf)?,
            issuers,
        })
    }

    /// The leaf's subject CN: the device's registration ID.
    pub fn registration_id(&self) -> &str {
        &self.registration_id
    }

    /// Refuses the chain unless its CN is `registration_id` (compared ASCII case-insensitively,
    /// as registration IDs are).
    pub fn check_registration_id(&self, registration_id: &str) -> Result<(), ChainError> {
        if self.registration_id.eq_ignore_ascii_case(registration_id) {
            Ok(())
        } else {
            Err(ChainError::CommonNameMismatch)
        }
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'a> {
        &self.certs[0]
    }

    /// SHA-256 of the leaf's DER.
    pub fn leaf_sha256(&self) -> [u8; 32] {
        self.leaf_sha256
    }

    /// How far up the presented chain `signing` sits: 0 if it issued the leaf, 1 if it issued
    /// the first intermediate, and so on; `None` if it issued none of them. Groups are tried
    /// in this order (the closest signing certificate decides), as Azure DPS does.
    pub fn issuer_depth(&self, signing: &CertificateDer<'_>) -> Option<usize> {
        let subject = parse(signing)
            .ok()?
            .tbs_certificate()
            .subject()
            .to_der()
            .ok()?;
        self.issuers.iter().position(|i| *i == subject)
    }

    fn check_leaf(&self, now: u64) -> Result<(), ChainError> {
        if now < self.not_before {
            return Err(ChainError::NotYetValid);
        }
        if now > self.not_after {
            return Err(ChainError::Expired);
        }
        if !self.usage_ok {
            return Err(ChainError::WrongKeyUsage);
        }
        Ok(())
    }
}

/// Individual enrollment: the leaf must be one of the enrolled certificates (by SHA-256
/// thumbprint of the DER), valid at `now` (unix seconds), and usable for client authentication.
/// No chain is built: the enrollment pins the certificate itself, self-signed or not.
pub fn verify_individual(
    chain: &DeviceChain<'_>,
    enrolled_sha256: &[[u8; 32]],
    now: u64,
) -> Result<(), ChainError> {
    let leaf = chain.leaf_sha256();
    let mut found = false;
    for t in enrolled_sha256 {
        found |= crate::ct_eq(t, &leaf);
    }
    if !found {
        return Err(ChainError::NotEnrolled);
    }
    chain.check_leaf(now)
}

/// Enrollment group: a path must lead from the leaf, through the presented intermediates and
/// `stored_intermediates`, to `signing` (a root or an intermediate the group trusts), with
/// every signature, validity period (at `now`, unix seconds), basic constraint and the leaf's
/// client-auth usage checked by rustls-webpki.
pub fn verify_group(
    chain: &DeviceChain<'_>,
    signing: &CertificateDer<'_>,
    stored_intermediates: &[CertificateDer<'_>],
    now: u64,
) -> Result<(), ChainError> {
    let anchor = anchor_from_trusted_cert(signing).map_err(ChainError::malformed)?;
    let leaf = EndEntityCert::try_from(chain.leaf())?;
    let intermediates: Vec<CertificateDer<'_>> = chain.certs[1..]
        .iter()
        .chain(stored_intermediates)
        .map(|c| CertificateDer::from(c.as_ref()))
        .collect();
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &intermediates,
        UnixTime::since_unix_epoch(Duration::from_secs(now)),
        KeyUsage::client_auth(),
        None,
        None,
    )?;
    // webpki checks the extended key usage only; the key usage bits are ours to check.
    chain.check_leaf(now)
}

/// True unless the leaf restricts its key so that it cannot sign a TLS handshake as a client:
/// a key usage without `digitalSignature`, or an extended key usage without `clientAuth` (or
/// `anyExtendedKeyUsage`).
fn usage_allows_client_auth(cert: &x509_cert::Certificate) -> Result<bool, ChainError> {
    let tbs = cert.tbs_certificate();
    if let Some((_, ku)) = tbs
        .get_extension::<KeyUsageExt>()
        .map_err(ChainError::malformed)?
        && !ku.digital_signature()
    {
        return Ok(false);
    }
    if let Some((_, eku)) = tbs
        .get_extension::<ExtendedKeyUsage>()
        .map_err(ChainError::malformed)?
    {
        return Ok(eku
            .0
            .iter()
            .any(|o| o.to_string() == OID_CLIENT_AUTH || o.to_string() == OID_ANY_EKU));
    }
    Ok(true)
}
