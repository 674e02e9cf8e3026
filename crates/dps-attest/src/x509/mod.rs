//! X.509 attestation: a device proves its identity with a TLS client certificate.
//!
//! * The registration ID is the leaf's subject CN ([`DeviceChain::registration_id`]).
//! * An individual enrollment pins the leaf itself: [`verify_individual`] compares the SHA-256
//!   thumbprint of its DER with the enrollment's primary and secondary certificates.
//! * An enrollment group trusts a signing certificate (a root or an intermediate):
//!   [`verify_group`] builds a path from the leaf through the presented and stored
//!   intermediates to it with rustls-webpki (signatures, validity at `now`, basic constraints,
//!   client-auth usage).
//! * [`CertInfo`] is what the service API shows of an uploaded certificate (which it never
//!   returns); [`decode_uploaded`] accepts the three upload forms.
//!
//! Every refusal is a typed [`ChainError`]. Like the rest of this crate, nothing here reads a
//! clock: `now` is unix seconds from the caller.
//!
//! ```
//! use dps_attest::x509::{ChainError, DeviceChain};
//! use rustls_pki_types::CertificateDer;
//!
//! // A client that sent no certificate, and one that sent garbage.
//! assert!(matches!(DeviceChain::parse(&[]), Err(ChainError::NoCertificate)));
//! let junk = [CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01])];
//! assert!(matches!(DeviceChain::parse(&junk), Err(ChainError::Malformed(_))));
//! ```

mod cert;
mod chain;
mod error;
mod proof;

pub use cert::{CertInfo, MAX_CERT_DER, decode_uploaded, sha256};
pub use chain::{DeviceChain, MAX_CHAIN, verify_group, verify_individual};
pub use error::ChainError;
pub use proof::{verification_code, verify_proof_of_possession};
