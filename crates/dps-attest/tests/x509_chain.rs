//! X.509 chain checks against real certificates made with rcgen: root -> intermediate ->
//! device, RSA-2048 and ECDSA P-256, and one certificate per `ChainError` variant.

#![allow(clippy::unwrap_used)]

use dps_attest::x509::{
    CertInfo, ChainError, DeviceChain, decode_uploaded, sha256, verification_code, verify_group,
    verify_individual, verify_proof_of_possession,
};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_RSA_SHA256, RsaKeySize,
};
use rustls_pki_types::CertificateDer;
use time::macros::datetime;

/// 2026-11-27T00:00:00Z, inside every certificate's validity unless a test says otherwise.
const NOW: u64 = 1_795_737_600;

#[derive(Clone, Copy)]
enum Alg {
    P256,
    Rsa2048,
}

fn key(alg: Alg) -> KeyPair {
    match alg {
        Alg::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        Alg::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap(),
    }
}

fn params(cn: Option<&str>, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "dps-rs tests");
    if let Some(cn) = cn {
        dn.push(DnType::CommonName, cn);
    }
    p.distinguished_name = dn;
    p.not_before = datetime!(2025-01-01 0:00 UTC);
    p.not_after = datetime!(2030-01-01 0:00 UTC);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    p
}

struct Ca {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn root(alg: Alg, cn: &str) -> Ca {
    let k = key(alg);
    let p = params(Some(cn), true);
    let der = p.self_signed(&k).unwrap().der().clone();
    Ca {
        der,
        issuer: Issuer::new(p, k),
    }
}

fn intermediate(alg: Alg, cn: &str, parent: &Ca) -> Ca {
    let k = key(alg);
    let p = params(Some(cn), true);
    let der = p.signed_by(&k, &parent.issuer).unwrap().der().clone();
    Ca {
        der,
        issuer: Issuer::new(p, k),
    }
}

fn leaf_with(alg: Alg, p: CertificateParams, parent: &Ca) -> CertificateDer<'static> {
    p.signed_by(&key(alg), &parent.issuer)
        .unwrap()
        .der()
        .clone()
}

fn leaf(alg: Alg, cn: &str, parent: &Ca) -> CertificateDer<'static> {
    leaf_with(alg, params(Some(cn), false), parent)
}

fn group_err(
    chain: &[CertificateDer<'_>],
    anchor: &CertificateDer<'_>,
    stored: &[CertificateDer<'_>],
    now: u64,
) -> ChainError {
    let c = DeviceChain::parse(chain).unwrap();
    verify_group(&c, anchor, stored, now).unwrap_err()
}

#[test]
fn depth_two_and_three_chains_verify_for_both_algorithms() {
    for alg in [Alg::P256, Alg::Rsa2048] {
        let r = root(alg, "Root");
        let i = intermediate(alg, "Intermediate", &r);
        // Depth 2: root -> device.
        let d2 = [leaf(alg, "dev-2", &r)];
        let c = DeviceChain::parse(&d2).unwrap();
        assert_eq!(c.registration_id(), "dev-2");
        verify_group(&c, &r.der, &[], NOW).unwrap();
        // Depth 3: root -> intermediate -> device, the intermediate presented.
        let d3 = [leaf(alg, "dev-3", &i), i.der.clone()];
        let c = DeviceChain::parse(&d3).unwrap();
        verify_group(&c, &r.der, &[], NOW).unwrap();
        // The intermediate itself as the group's signing certificate.
        verify_group(&c, &i.der, &[], NOW).unwrap();
        // The intermediate stored instead of presented.
        let alone = [d3[0].clone()];
        let c = DeviceChain::parse(&alone).unwrap();
        verify_group(&c, &r.der, std::slice::from_ref(&i.der), NOW).unwrap();
        // ... and neither: no path.
        assert!(matches!(
            verify_group(&c, &r.der, &[], NOW),
            Err(ChainError::UnknownIssuer)
        ));
    }
}

#[test]
fn issuer_depth_orders_signing_certificates_from_the_leaf_up() {
    let r = root(Alg::P256, "Root");
    let i = intermediate(Alg::P256, "Intermediate", &r);
    let other = root(Alg::P256, "Other");
    let chain = [leaf(Alg::P256, "dev-1", &i), i.der.clone()];
    let c = DeviceChain::parse(&chain).unwrap();
    assert_eq!(c.issuer_depth(&i.der), Some(0));
    assert_eq!(c.issuer_depth(&r.der), Some(1));
    assert_eq!(c.issuer_depth(&other.der), None);
}

#[test]
fn individual_enrollment_matches_by_thumbprint() {
    let r = root(Alg::P256, "Root");
    let chain = [leaf(Alg::P256, "dev-1", &r)];
    let c = DeviceChain::parse(&chain).unwrap();
    let other = sha256(leaf(Alg::P256, "dev-1", &r).as_ref());
    // Primary differs, secondary matches.
    verify_individual(&c, &[other, sha256(&chain[0])], NOW).unwrap();
    assert!(matches!(
        verify_individual(&c, &[other], NOW),
        Err(ChainError::NotEnrolled)
    ));
    // A self-signed device certificate is fine for an individual enrollment.
    let k = key(Alg::Rsa2048);
    let own = [params(Some("dev-self"), false)
        .self_signed(&k)
        .unwrap()
        .der()
        .clone()];
    let c = DeviceChain::parse(&own).unwrap();
    verify_individual(&c, &[sha256(&own[0])], NOW).unwrap();
}

#[test]
fn each_chain_error_variant_from_a_real_certificate() {
    let alg = Alg::P256;
    let r = root(alg, "Root");
    let i = intermediate(alg, "Intermediate", &r);

    // NoCertificate and Malformed.
    assert!(matches!(
        DeviceChain::parse(&[]),
        Err(ChainError::NoCertificate)
    ));
    let mut truncated = leaf(alg, "dev-1", &r).to_vec();
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        DeviceChain::parse(&[CertificateDer::from(truncated)]),
        Err(ChainError::Malformed(_))
    ));

    // NoCommonName.
    let no_cn = [leaf_with(alg, params(None, false), &r)];
    assert!(matches!(
        DeviceChain::parse(&no_cn),
        Err(ChainError::NoCommonName)
    ));

    // CommonNameMismatch (case does not matter, the name does).
    let good = [leaf(alg, "Dev-1", &i), i.der.clone()];
    let c = DeviceChain::parse(&good).unwrap();
    c.check_registration_id("dev-1").unwrap();
    assert!(matches!(
        c.check_registration_id("dev-2"),
        Err(ChainError::CommonNameMismatch)
    ));

    // NotEnrolled: see individual_enrollment_matches_by_thumbprint; here by its Display.
    assert_eq!(
        ChainError::NotEnrolled.to_string(),
        "certificate does not match the enrollment"
    );

    // UnknownIssuer: a CA of another tenant.
    let stranger = root(alg, "Stranger");
    assert!(matches!(
        group_err(&good, &stranger.der, &[], NOW),
        ChainError::UnknownIssuer
    ));

    // Expired and NotYetValid: the leaf's validity, for groups and individual enrollments.
    let mut p = params(Some("dev-old"), false);
    p.not_before = datetime!(2020-01-01 0:00 UTC);
    p.not_after = datetime!(2021-01-01 0:00 UTC);
    let old = [leaf_with(alg, p, &r)];
    assert!(matches!(
        group_err(&old, &r.der, &[], NOW),
        ChainError::Expired
    ));
    let c = DeviceChain::parse(&old).unwrap();
    assert!(matches!(
        verify_individual(&c, &[sha256(&old[0])], NOW),
        Err(ChainError::Expired)
    ));
    let mut p = params(Some("dev-new"), false);
    p.not_before = datetime!(2029-01-01 0:00 UTC);
    let young = [leaf_with(alg, p, &r)];
    assert!(matches!(
        group_err(&young, &r.der, &[], NOW),
        ChainError::NotYetValid
    ));
    let c = DeviceChain::parse(&young).unwrap();
    assert!(matches!(
        verify_individual(&c, &[sha256(&young[0])], NOW),
        Err(ChainError::NotYetValid)
    ));
    // An expired intermediate breaks the path too (now after 2030 for a long-lived leaf).
    let mut p = params(Some("dev-long"), false);
    p.not_after = datetime!(2040-01-01 0:00 UTC);
    let long = [leaf_with(alg, p, &i), i.der.clone()];
    assert!(matches!(
        group_err(&long, &r.der, &[], 2_000_000_000),
        ChainError::Expired
    ));

    // BadSignature: an impostor CA with the root's name signed the leaf.
    let impostor = root(alg, "Root");
    let forged = [leaf(alg, "dev-1", &impostor)];
    assert!(matches!(
        group_err(&forged, &r.der, &[], NOW),
        ChainError::BadSignature
    ));

    // WrongKeyUsage: server-auth-only EKU (webpki), and a key usage without digitalSignature.
    let mut p = params(Some("dev-server"), false);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = [leaf_with(alg, p, &r)];
    assert!(matches!(
        group_err(&server, &r.der, &[], NOW),
        ChainError::WrongKeyUsage
    ));
    let mut p = params(Some("dev-ku"), false);
    p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    let ku = [leaf_with(alg, p, &r)];
    assert!(matches!(
        group_err(&ku, &r.der, &[], NOW),
        ChainError::WrongKeyUsage
    ));
    let c = DeviceChain::parse(&ku).unwrap();
    assert!(matches!(
        verify_individual(&c, &[sha256(&ku[0])], NOW),
        Err(ChainError::WrongKeyUsage)
    ));

    // BasicConstraints: a CA certificate as the device, and a device certificate as issuer.
    let ca_leaf = [intermediate(alg, "dev-ca", &r).der];
    assert!(matches!(
        group_err(&ca_leaf, &r.der, &[], NOW),
        ChainError::BasicConstraints
    ));
    let k = key(alg);
    let p = params(Some("not-a-ca"), false);
    let not_ca_der = p.signed_by(&k, &r.issuer).unwrap().der().clone();
    let not_ca = Ca {
        der: not_ca_der,
        issuer: Issuer::new(p, k),
    };
    let under = [leaf(alg, "dev-under", &not_ca), not_ca.der.clone()];
    assert!(matches!(
        group_err(&under, &r.der, &[], NOW),
        ChainError::BasicConstraints
    ));

    // UnsupportedAlgorithm: the leaf claims ecdsa-with-SHA224 (both algorithm fields agree).
    let mut bytes = leaf(alg, "dev-224", &r).to_vec();
    let sha256_oid = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    let mut replaced = 0;
    for at in 0..bytes.len() - sha256_oid.len() {
        if bytes[at..at + sha256_oid.len()] == sha256_oid {
            bytes[at + sha256_oid.len() - 1] = 0x01;
            replaced += 1;
        }
    }
    assert_eq!(replaced, 2);
    let sha224 = [CertificateDer::from(bytes)];
    assert!(matches!(
        group_err(&sha224, &r.der, &[], NOW),
        ChainError::UnsupportedAlgorithm
    ));

    // Rejected: an unknown critical extension.
    let mut p = params(Some("dev-crit"), false);
    let mut ext = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
    ext.set_criticality(true);
    p.custom_extensions = vec![ext];
    let crit = [leaf_with(alg, p, &r)];
    let e = group_err(&crit, &r.der, &[], NOW);
    assert!(matches!(e, ChainError::Rejected(_)), "{e:?}");
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn cert_info_describes_the_certificate() {
    let r = root(Alg::Rsa2048, "Root");
    let mut p = params(Some("dev-info"), false);
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
    let der = leaf_with(Alg::Rsa2048, p, &r);
    let info = CertInfo::from_der(&der).unwrap();
    assert_eq!(info.subject, "CN=dev-info, O=dps-rs tests");
    assert_eq!(info.issuer, "CN=Root, O=dps-rs tests");
    assert_eq!(info.serial_number, "0ABC");
    assert_eq!(info.version, 3);
    assert_eq!(info.not_before, 1_735_689_600);
    assert_eq!(info.not_after, 1_893_456_000);
    assert_eq!(info.sha256_thumbprint.len(), 64);
    assert_eq!(info.sha1_thumbprint.len(), 40);
    assert!(
        info.sha256_thumbprint
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
    );
}

#[test]
fn uploads_in_pem_base64_pem_and_base64_der() {
    use base64::Engine as _;
    let r = root(Alg::P256, "Root");
    let der = r.der.clone();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let pem_text = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
    let b64_pem = base64::engine::general_purpose::STANDARD.encode(&pem_text);
    for form in [pem_text.as_str(), b64_pem.as_str(), b64.as_str()] {
        assert_eq!(decode_uploaded(form).unwrap(), der);
    }
    assert!(matches!(
        decode_uploaded("not a cert"),
        Err(ChainError::Malformed(_))
    ));
    let two = format!("{pem_text}{pem_text}");
    assert!(matches!(
        decode_uploaded(&two),
        Err(ChainError::Malformed(_))
    ));
}

#[test]
fn proof_of_possession_needs_the_ca_key_and_the_code() {
    let r = root(Alg::P256, "Root");
    let proof = leaf(Alg::P256, &verification_code(&r.der), &r);
    verify_proof_of_possession(&r.der, &proof, NOW).unwrap();
    // The right code signed by someone else.
    let impostor = root(Alg::P256, "Root");
    let forged = leaf(Alg::P256, &verification_code(&r.der), &impostor);
    assert!(verify_proof_of_possession(&r.der, &forged, NOW).is_err());
    // A certificate the CA issued for something else is no proof.
    let ordinary = leaf(Alg::P256, "dev-1", &r);
    assert!(matches!(
        verify_proof_of_possession(&r.der, &ordinary, NOW),
        Err(ChainError::CommonNameMismatch)
    ));
}
