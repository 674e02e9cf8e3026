//! The load fleet's X.509 PKI: a CA whose key is derived from `--secret` ([`LoadCa`]), so a
//! later run (`--no-setup`) issues device certificates that the enrollment group created by an
//! earlier run still trusts, and one leaf per device with CN = registration ID, issued before
//! the timed phase. Nothing is written to disk unless `--x509-ca-pem` asks for the CA
//! certificate (for dpsd's `[[scope.ca]]`).
//!
//! The CA key is the P-256 scalar `HMAC-SHA256(secret, "x509-ca")`; the CA certificate's
//! subject is fixed, so certificates re-made from the same secret name the same issuer with
//! the same key, and chains verify against the certificate an earlier run uploaded (only the
//! CA certificate's own signature bytes differ between runs). Device keys are random: devices
//! in a group need no stable key, and individual X.509 enrollments (which pin each device's
//! certificate) are re-created on every run.

use anyhow::{Context as _, Result, bail};
use dps_attest::sas::SigningKey;
use dps_client::ClientIdentity;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{PrivateKeyDer, PrivateSec1KeyDer};

/// The CA's subject common name.
const CA_NAME: &str = "dps load CA";

/// RFC 5915 `ECPrivateKey` for P-256 around a 32-byte scalar, without the optional public key
/// (the crypto provider computes it): `SEQUENCE { version 1, OCTET STRING scalar,
/// [0] namedCurve prime256v1 }`.
fn sec1_p256(scalar: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(scalar);
    der.extend_from_slice(&[
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ]);
    der
}

fn subject(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "dps-rs load");
    dn.push(DnType::CommonName, cn);
    dn
}

/// The fleet's certificate authority.
pub struct LoadCa {
    /// Its self-signed certificate, PEM: what enrollment groups trust.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LoadCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadCa").finish_non_exhaustive()
    }
}

impl LoadCa {
    /// The CA whose key is derived from `secret`.
    pub fn from_secret(secret: &SigningKey) -> Result<Self> {
        let der = sec1_p256(&secret.sign(b"x509-ca"));
        let key = PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der));
        let key = KeyPair::from_der_and_sign_algo(&key, &PKCS_ECDSA_P256_SHA256)
            .context("deriving the X.509 CA key from --secret (try another secret)")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = subject(CA_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A new P-256 device certificate with subject CN `registration_id`, for client
    /// authentication: its PEM, and the device's identity, parsed and ready for TLS.
    pub fn issue(&self, registration_id: &str) -> Result<(String, ClientIdentity)> {
        if registration_id.len() > 64 {
            bail!("registration ID '{registration_id}' is longer than a certificate CN may be");
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = subject(registration_id);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        let pem = cert.pem();
        let identity = ClientIdentity::from_pem(pem.clone(), key.serialize_pem());
        identity
            .prepare()
            .with_context(|| format!("the certificate issued to {registration_id}"))?;
        Ok((pem, identity))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_key_follows_the_secret() {
        let a = LoadCa::from_secret(&SigningKey::from_bytes(b"one")).unwrap();
        let b = LoadCa::from_secret(&SigningKey::from_bytes(b"one")).unwrap();
        let c = LoadCa::from_secret(&SigningKey::from_bytes(b"two")).unwrap();
        let spki = |ca: &LoadCa| ca.issuer.key().public_key_pem();
        assert_eq!(spki(&a), spki(&b));
        assert_ne!(spki(&a), spki(&c));
    }

    #[test]
    fn a_device_certificate_chains_to_a_ca_made_earlier_from_the_same_secret() {
        use dps_attest::x509::{DeviceChain, verify_group};
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;
        let secret = SigningKey::from_bytes(b"s");
        let earlier = LoadCa::from_secret(&secret).unwrap();
        let (pem, device) = LoadCa::from_secret(&secret)
            .unwrap()
            .issue("load-0000001")
            .unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let certs = device.chain().unwrap();
        let chain = DeviceChain::parse(&certs).unwrap();
        assert_eq!(chain.registration_id(), "load-0000001");
        let ca = CertificateDer::from_pem_slice(earlier.cert_pem.as_bytes()).unwrap();
        let now = 1_800_000_000;
        verify_group(&chain, &ca, &[], now).unwrap();
        let other = LoadCa::from_secret(&SigningKey::from_bytes(b"other")).unwrap();
        let other = CertificateDer::from_pem_slice(other.cert_pem.as_bytes()).unwrap();
        assert!(verify_group(&chain, &other, &[], now).is_err());
        assert!(
            LoadCa::from_secret(&secret)
                .unwrap()
                .issue(&"x".repeat(65))
                .is_err()
        );
    }
}
