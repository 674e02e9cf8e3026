//! A test PKI made at run time with rcgen: root -> intermediate -> device chains in ECDSA P-256
//! or RSA-2048, TLS server certificates, and CA proof-of-possession certificates. Nothing here
//! is committed: every key lives only as long as the test that made it.

use dps_attest::x509::verification_code;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize,
};
use rustls_pki_types::CertificateDer;

/// The key type of a generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// ECDSA P-256 with SHA-256.
    P256,
    /// RSA-2048 with PKCS#1 v1.5 SHA-256.
    Rsa2048,
}

impl KeyAlg {
    fn generate(self) -> KeyPair {
        let k = match self {
            Self::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
            Self::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        };
        k.expect("the crypto provider generates keys")
    }
}

fn params(cn: &str, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("no names to check");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "dps-rs test PKI");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    p
}

/// A certificate authority (root or intermediate) that can issue certificates.
pub struct TestCa {
    /// Its certificate.
    pub cert: CertificateDer<'static>,
    /// Its certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
    alg: KeyAlg,
}

/// A device's certificate and private key.
pub struct TestDevice {
    /// The leaf certificate.
    pub cert: CertificateDer<'static>,
    /// The leaf, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl TestDevice {
    /// The leaf followed by `intermediates`, PEM: what the device presents in TLS.
    pub fn chain_pem(&self, intermediates: &[&TestCa]) -> String {
        let mut s = self.cert_pem.clone();
        for i in intermediates {
            s.push_str(&i.pem);
        }
        s
    }
}

impl TestCa {
    /// A self-signed root.
    pub fn root(cn: &str, alg: KeyAlg) -> Self {
        let key = alg.generate();
        let p = params(cn, true);
        let cert = p.self_signed(&key).expect("rcgen signs");
        Self {
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(p, key),
            alg,
        }
    }

    /// An intermediate CA signed by this one, with the same key type.
    pub fn intermediate(&self, cn: &str) -> Self {
        let key = self.alg.generate();
        let p = params(cn, true);
        let cert = p.signed_by(&key, &self.issuer).expect("rcgen signs");
        Self {
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(p, key),
            alg: self.alg,
        }
    }

    /// A device certificate with subject CN `cn` (the registration ID), client-auth usage.
    pub fn device(&self, cn: &str) -> TestDevice {
        issue(&params(cn, false), self.alg, &self.issuer)
    }

    /// A TLS server certificate for `localhost` and 127.0.0.1: (chain PEM, key PEM).
    pub fn server(&self) -> (String, String) {
        let p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("valid names");
        let d = issue(&p, self.alg, &self.issuer);
        (d.cert_pem, d.key_pem)
    }

    /// A certificate signed with this CA's key whose CN is the CA's verification code: the
    /// proof of possession dpsd accepts for `[[scope.ca]] proof_pem`.
    pub fn proof_of_possession(&self) -> TestDevice {
        self.device(&verification_code(&self.cert))
    }
}

fn issue(p: &CertificateParams, alg: KeyAlg, issuer: &Issuer<'_, KeyPair>) -> TestDevice {
    let key = alg.generate();
    let cert = p.signed_by(&key, issuer).expect("rcgen signs");
    TestDevice {
        cert_pem: cert.pem(),
        cert: cert.der().clone(),
        key_pem: key.serialize_pem(),
    }
}

/// A self-signed device certificate (individual enrollments pin it by thumbprint).
pub fn self_signed_device(cn: &str, alg: KeyAlg) -> TestDevice {
    let key = alg.generate();
    let cert = params(cn, false).self_signed(&key).expect("rcgen signs");
    TestDevice {
        cert_pem: cert.pem(),
        cert: cert.der().clone(),
        key_pem: key.serialize_pem(),
    }
}
