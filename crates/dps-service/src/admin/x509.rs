//! X.509 attestation on the service API: on every write the uploaded certificates are decoded
//! (PEM, base64 of PEM or base64 of DER), their `info` derived, and `caReferences` checked
//! against the scope's verified CA certificates. Certificates are stored as base64 of DER and
//! never returned: GET, query and the attestation-mechanism call show only `info`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dps_attest::x509::{self, CertInfo};
use dps_types::{
    AttestationMechanism, Rejection, Timestamp, X509Attestation, X509CertificateInfo,
    X509CertificateWithInfo, X509Certificates,
};

use crate::config::ScopeConfig;

fn bad(msg: impl Into<String>) -> Rejection {
    Rejection::BadRequest(msg.into())
}

fn timestamp(unix: u64) -> Result<Timestamp, Rejection> {
    Timestamp::from_unix_nanos(i128::from(unix) * 1_000_000_000)
        .ok_or_else(|| bad("certificate validity is out of range"))
}

/// The service API's `info` for a certificate.
pub(crate) fn info(i: &CertInfo) -> Result<X509CertificateInfo, Rejection> {
    Ok(X509CertificateInfo {
        subject_name: i.subject.clone(),
        sha1_thumbprint: i.sha1_thumbprint.clone(),
        sha256_thumbprint: i.sha256_thumbprint.clone(),
        issuer_name: i.issuer.clone(),
        not_before_utc: timestamp(i.not_before)?,
        not_after_utc: timestamp(i.not_after)?,
        serial_number: i.serial_number.clone(),
        version: i.version,
    })
}

/// One certificate slot: a new upload is decoded and described; a slot without a certificate
/// (a GET -> modify -> PUT round trip) keeps the stored one.
fn complete_slot(
    what: &str,
    slot: &mut X509CertificateWithInfo,
    stored: Option<&X509CertificateWithInfo>,
) -> Result<(), Rejection> {
    let text = match (
        &slot.certificate,
        stored.and_then(|s| s.certificate.as_ref()),
    ) {
        (Some(t), _) | (None, Some(t)) => t.clone(),
        (None, None) => return Err(bad(format!("{what}: a certificate is required"))),
    };
    let der = x509::decode_uploaded(&text).map_err(|e| bad(format!("{what}: {e}")))?;
    let i = CertInfo::from_der(&der).map_err(|e| bad(format!("{what}: {e}")))?;
    slot.certificate = Some(STANDARD.encode(&der));
    slot.info = Some(serde_json::to_value(info(&i)?).map_err(|_| Rejection::Internal)?);
    Ok(())
}

fn complete_certs(
    what: &str,
    certs: &mut X509Certificates,
    stored: Option<&X509Certificates>,
) -> Result<(), Rejection> {
    let Some(primary) = certs.primary.as_mut() else {
        return Err(bad(format!("{what}: the primary certificate is required")));
    };
    complete_slot(
        &format!("{what} primary"),
        primary,
        stored.and_then(|s| s.primary.as_ref()),
    )?;
    if let Some(secondary) = certs.secondary.as_mut() {
        complete_slot(
            &format!("{what} secondary"),
            secondary,
            stored.and_then(|s| s.secondary.as_ref()),
        )?;
    }
    Ok(())
}

/// Validates and completes an X.509 attestation before it is stored. `group` says which
/// members are allowed: individual enrollments take `clientCertificates`, groups
/// `signingCertificates` or `caReferences` (naming verified CAs of this scope only).
pub(crate) fn complete(
    scope: &ScopeConfig,
    group: bool,
    attestation: &mut AttestationMechanism,
    existing: Option<&AttestationMechanism>,
) -> Result<(), Rejection> {
    let AttestationMechanism::X509(x) = attestation else {
        return Ok(());
    };
    let old: Option<&X509Attestation> = existing.and_then(AttestationMechanism::x509);
    match (group, x.as_mut()) {
        (
            false,
            X509Attestation {
                client_certificates: Some(c),
                ..
            },
        ) => complete_certs(
            "clientCertificates",
            c,
            old.and_then(|o| o.client_certificates.as_ref()),
        ),
        (false, _) => Err(bad("individual enrollments take x509 clientCertificates")),
        (
            true,
            X509Attestation {
                signing_certificates: Some(c),
                ..
            },
        ) => complete_certs(
            "signingCertificates",
            c,
            old.and_then(|o| o.signing_certificates.as_ref()),
        ),
        (
            true,
            X509Attestation {
                ca_references: Some(r),
                ..
            },
        ) => {
            if r.primary.is_none() {
                return Err(bad("caReferences: the primary CA name is required"));
            }
            for name in r.iter() {
                if scope.verified_ca(name).is_none() {
                    return Err(bad(format!(
                        "caReferences: no verified CA certificate named '{name}' in this scope"
                    )));
                }
            }
            Ok(())
        }
        (true, _) => Err(bad(
            "enrollment groups take x509 signingCertificates or caReferences",
        )),
    }
}
