//! Proof of possession for a CA certificate: before enrollment groups may reference a CA, its
//! owner shows they hold its private key by signing a certificate whose CN is a code derived
//! from the CA (as Azure DPS's verification certificate, without the server-side nonce store).

use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};

use super::ChainError;
use super::cert::{hex, parse, sha256};

/// The CN a verification certificate for `ca` must carry: `verify-` and the upper-case hex
/// SHA-256 of the CA's DER. Derived from the CA, so a proof made for one CA proves nothing for
/// another, and an ordinary certificate the CA issued is never mistaken for a proof.
#[must_use]
pub fn verification_code(ca: &CertificateDer<'_>) -> String {
    format!("verify-{}", hex(&sha256(ca)))
}

/// Checks that `proof` is signed by `ca`'s key (valid at `now`, unix seconds) and carries
/// [`verification_code`] as its subject CN.
pub fn verify_proof_of_possession(
    ca: &CertificateDer<'_>,
    proof: &CertificateDer<'_>,
    now: u64,
) -> Result<(), ChainError> {
    let cn = parse(proof)?
        .tbs_certificate()
        .subject()
        .common_name()
        .map_err(ChainError::malformed)?
        .map(String::from)
        .ok_or(ChainError::NoCommonName)?;
    if cn != verification_code(ca) {
        return Err(ChainError::CommonNameMismatch);
    }
    let anchor = anchor_from_trusted_cert(ca).map_err(ChainError::malformed)?;
    EndEntityCert::try_from(proof)?.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        UnixTime::since_unix_epoch(Duration::from_secs(now)),
        KeyUsage::client_auth(),
        None,
        None,
    )?;
    Ok(())
}
