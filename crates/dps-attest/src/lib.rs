//! Attestation primitives for dps-rs: proving who a device (or a service caller) is.
//!
//! # What this crate owns
//!
//! * [`sas`]: Shared Access Signature tokens as the Azure IoT SDKs send them (device
//!   registration tokens and service API tokens), symmetric keys with precomputed HMAC state,
//!   and enrollment-group key derivation.
//! * [`x509`]: X.509 device chains: the registration ID from the leaf's CN, individual
//!   enrollments by certificate thumbprint, groups by a verified path to their signing
//!   certificate, each refusal a typed [`x509::ChainError`]; certificate `info` for the
//!   service API.
//! * [`ct_eq`]: a constant-time byte comparison for other crates that compare secrets.
//!
//! The TPM nonce challenge (`tpm`) will live here too, as a sibling module.
//!
//! # What it deliberately does not do
//!
//! No I/O, no clock, no randomness, no enrollment lookup. Callers pass the current time as unix
//! seconds (`now`), and the candidate keys they found for the registration or policy. Mapping a
//! failure to a 401 is the transport's job.
//!
//! # Where to start
//!
//! Parse the `Authorization` header (or MQTT password / SASL PLAIN password) with
//! [`sas::SasToken::parse`], decode the enrollment keys once with [`sas::SigningKey::from_base64`],
//! then call [`sas::verify_device`] or [`sas::verify_service`].
//!
//! ```
//! use dps_attest::sas::{SasToken, SigningKey, verify_device};
//!
//! // Captured from the Node.js device SDK (HTTP transport).
//! let header = "SharedAccessSignature sr=0ne00000001/registrations/dev-1\
//!     &sig=jFfflPGD%2F46OqssgLa1p2lQJewa99l7oFYFW9vj8WWQ%3D&skn=registration&se=1795769664";
//! let primary = SigningKey::from_base64("dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==")?;
//! let secondary = SigningKey::from_bytes(b"some other key");
//!
//! let token = SasToken::parse(header)?;
//! let now = 1_795_766_064; // passed in by the caller, never read from a clock here
//! let matched = verify_device(&token, "0ne00000001", "dev-1", &[&secondary, &primary], now)?;
//! assert_eq!(matched, 1); // the index of the key that signed it
//! # Ok::<(), dps_attest::sas::SasError>(())
//! ```

pub mod sas;
pub mod x509;

use subtle::ConstantTimeEq;

/// Compares two byte strings in time that depends only on their lengths, not their contents.
///
/// Slices of different lengths compare unequal (the length is not treated as secret).
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
    }
}
